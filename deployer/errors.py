"""Error types shared by the CLI, the pipeline and the workers.

A `UserError` is something the user can fix (a bad spec, a missing file, a corrupt
model): the CLI prints its message and exits with status 2, never a traceback.
A `StageError` is a stage of one target that failed; it fails that target only.
"""


class DeployerError(Exception):
    """Base class of every error deployer raises on purpose."""


class UserError(DeployerError):
    """Bad input: the message names the file, field or op and what to do."""


class StageError(DeployerError):
    """A build or verification stage failed for one target."""
