"""The trainer's user-facing errors: bad data, bad options, nothing to train on, bad model files.

The CLI turns `UserError`, `WeightsError` and `ModelFileError` into one line on stderr,
`trainer: error: ...`, and exit code 2. Anything else is a bug and keeps its traceback. The three
live here, in a module without Keras, so the CLI knows them before TensorFlow loads.
"""

from __future__ import annotations


class UserError(ValueError):
    """Something about the user's data or options that they must fix (one line message)."""


class WeightsError(ValueError):
    """The --weights value is neither 'imagenet', 'none' nor a readable file."""


class ModelFileError(ValueError):
    """A model path is missing, unreadable, truncated, or not a maskedge Keras model."""


class ClusterError(RuntimeError):
    """A worker of a multi-worker cluster stopped mid-run; the others cannot go on without it.

    Not the user's mistake (exit 1, not 2): every worker is restarted with the same command and
    the run resumes from its last finished epoch (`--resume`).
    """
