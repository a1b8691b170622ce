"""The head registry: every module in this package that declares `HEAD` (heads/base.py)."""

from __future__ import annotations

from functools import cache

from deployer.heads.base import HeadType
from deployer.registry import discover


@cache
def registry() -> dict[str, HeadType]:
    return {h.name: h for h in discover(__name__, __path__, "HEAD", lambda h: h.name)}
