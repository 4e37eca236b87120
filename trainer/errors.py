"""The trainer's user-facing error: bad data, bad options, nothing to train on.

The CLI turns `UserError` (and the model/weights errors of `trainer.model` and `trainer.artifacts`)
into one line on stderr and exit code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Something about the user's data or options that they must fix (one line message)."""
