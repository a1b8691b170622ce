"""Declared options: what a backend accepts in a profile's `options` and what a runtime
accepts in `runtime_settings`, with types, defaults and the precisions they apply to.

A profile is checked against these declarations when it is loaded, so a misspelled or
misplaced option is an error naming the file and the field before any work starts
(docs/ARCHITECTURE.md, "Adding a backend").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    name: str
    kind: type                      # bool, int, float, str or list (of `item`)
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    item: type = str                # element type of a list option
    precisions: tuple[str, ...] = ()   # the precisions it applies to; () = every precision

    def describe(self) -> str:
        if self.choices:
            return f"one of {', '.join(map(str, self.choices))}"
        if self.kind is list:
            return f"a list of {self.item.__name__}"
        text = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[self.kind]
        bounds = [f">= {self.minimum:g}"] if self.minimum is not None else []
        bounds += [f"<= {self.maximum:g}"] if self.maximum is not None else []
        return " ".join([text, " and ".join(bounds)]) if bounds else text


def read_options(reader, declared: tuple[Option, ...], precision: str | None, owner: str,
                 noun: str = "option") -> dict:
    """Validate the table under `reader` against `declared`; returns every declared option
    that applies, with defaults filled in (an option whose default is `...` is required).
    `owner` names who declares them in messages."""
    known = {o.name: o for o in declared}
    applicable = {n: o for n, o in known.items() if precision is None or not o.precisions or precision in o.precisions}
    for key in reader.table:
        if key not in known:
            names = ", ".join(applicable) or "none"
            what = f"{owner} {precision}" if precision else owner
            raise reader.unknown(key, f"unknown {noun} for {what} (known: {names})")
        if key not in applicable:
            raise reader.unknown(key, f"applies to {owner} {', '.join(known[key].precisions)} only, "
                                      f"not {precision}")
    values = {}
    for name, opt in applicable.items():
        if opt.default is ... and name not in reader.table:
            raise reader.unknown(name, f"missing ({opt.help}: {opt.describe()})")
        value = reader.get(name, opt.kind, opt.describe(), opt.default,
                           choices=opt.choices or None)
        if opt.kind is list and not all(isinstance(v, opt.item) for v in value):
            raise reader.fail(name, opt.describe(), value)
        if (opt.minimum is not None and value < opt.minimum) or (opt.maximum is not None and value > opt.maximum):
            raise reader.fail(name, opt.describe(), value)
        values[name] = list(value) if isinstance(value, list) else value
    return values
