"""Discovery of declarations: backends, runtimes, frontends and heads each declare
themselves once, in their own module, and their package collects them here
(docs/ARCHITECTURE.md, "The registry"). Declaring modules import no ML framework at
module level, so the parent process can read every declaration.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Iterable


def discover(package: str, path: Iterable[str], attr: str, key: Callable) -> list:
    """Every `attr` (one declaration or a tuple of them) of the modules of `package`, in
    module-name order; a name declared twice is a bug in deployer."""
    found, seen = [], {}
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        module = importlib.import_module(f"{package}.{info.name}")
        value = getattr(module, attr, None)
        for item in (value if isinstance(value, tuple) else (value,)) if value is not None else ():
            name = key(item)
            if name in seen:
                raise RuntimeError(f"'{name}' is declared twice: in {seen[name]} and {module.__name__}")
            seen[name] = module.__name__
            found.append(item)
    return found


def resolve(reference: str):
    """The object a 'package.module:attribute' reference names (imports the module)."""
    module, _, attr = reference.partition(":")
    return getattr(importlib.import_module(module), attr)
