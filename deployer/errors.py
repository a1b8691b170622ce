"""Error types shared by the CLI, the pipeline and the workers (docs/ARCHITECTURE.md, "Errors").

A `UserError` is something the user can fix (a bad spec, a missing file, a corrupt
model): the CLI prints its message and exits with status 2, never a traceback.
A `StageError` is a stage of one target that failed; it fails that target only.
`OutputMismatch` is a runtime whose outputs do not fit the source model's (a missing
output, a wrong shape): that run fails its verdict. `CannotVerify` is a runtime that
cannot execute this artifact here (an op its interpreter lacks): that run is
`unverified`, never a pass by omission.
Anything else raised in deployer's own code is a bug and surfaces as one.
"""

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """A third-party exception's first non-empty line for a message: without the terminal
    colour codes some libraries put in (torch's exporter), the type's name when it has no
    text, at most `limit` characters."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


class DeployerError(Exception):
    """Base class of every error deployer raises on purpose."""


class UserError(DeployerError):
    """Bad input: the message names the file, field or op and what to do."""


class StageError(DeployerError):
    """A build or verification stage failed for one target."""


class OutputMismatch(StageError):
    """An artifact's inputs or outputs, as its runtime gives them, do not fit the source model's
    (names, count or shapes): that run fails."""


class Interrupted(Exception):
    """A target cut short by Ctrl-C or SIGTERM: it does not land (pipeline.build)."""


class CannotVerify(DeployerError):
    """This runtime cannot execute this artifact here; the message names what is missing."""


# How each error crosses the worker boundary (worker.py): kind in the result file -> type.
# Order matters: the first matching class wins (OutputMismatch is a StageError).
KINDS = {"user": UserError, "mismatch": OutputMismatch, "stage": StageError, "unverifiable": CannotVerify}


def kind_of(exc: BaseException) -> str | None:
    """The result-file kind of an error raised on purpose, or None for anything else (a bug)."""
    for kind, cls in KINDS.items():
        if isinstance(exc, cls):
            return kind
    return None
