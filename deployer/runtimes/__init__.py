"""The runtime registry: every `RUNTIMES` declared by a module of this package, and the
reference runtimes declared beside their frontends (runtimes/base.py for the contract)."""

from __future__ import annotations

from functools import cache

import deployer.frontends
from deployer.errors import UserError
from deployer.registry import discover, resolve
from deployer.runtimes.base import Runtime


@cache
def registry() -> dict[str, Runtime]:
    """Runtime name -> declaration."""
    found = discover(__name__, __path__, "RUNTIMES", lambda r: r.name)
    found += discover(deployer.frontends.__name__, deployer.frontends.__path__, "RUNTIMES", lambda r: r.name)
    return {r.name: r for r in found}


def get(name: str) -> Runtime:
    runtimes = registry()
    if name not in runtimes:
        raise UserError(f"unknown runtime '{name}' (known: {', '.join(runtimes)})")
    return runtimes[name]


def runner_class(name: str):
    return resolve(get(name).runner)


def spread_families() -> frozenset:
    """Families whose workers may run side by side (Runtime.spread)."""
    return frozenset(r.family for r in registry().values() if r.spread)
