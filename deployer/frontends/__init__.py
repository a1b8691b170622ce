"""The frontend registry: every module in this package that declares `FRONTEND` (frontends/base.py)."""

from __future__ import annotations

from functools import cache

from deployer.frontends.base import Frontend
from deployer.registry import discover


@cache
def registry() -> dict[str, Frontend]:
    return {f.kind: f for f in discover(__name__, __path__, "FRONTEND", lambda f: f.kind)}
