"""The converters' user-facing error: one line that the CLI prints before exiting with code 2.

Bad model files, bad representative sets, unwritable outputs and models the TFLite converter cannot
take all end as `ConvertError`; the CLI prints `convert: error: <message>` and exits 2, never a
traceback.
"""

from __future__ import annotations


class ConvertError(ValueError):
    """Something about the user's model, data or options that they must fix (one line)."""
