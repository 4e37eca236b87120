"""Keep secrets out of what people see: URLs with their password replaced by `***`."""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(//[^/@:\s]*:)[^/@\s]*@")


def redact_url(text: str) -> str:
    """`text` with the password of every `scheme://user:pass@host` URL in it shown as `***`."""
    return _CREDENTIALS.sub(r"\1***@", text)
