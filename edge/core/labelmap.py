"""Class-name maps between data sources: `FROM=TO` renames a class, `FROM=` leaves it out.

One parser for every stage (`trainer fit / evaluate`, `edge evaluate`), so a source that calls its
classes `no_mask` or `with_incorrect_mask` is read the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class LabelMapError(ValueError):
    """A `--label-map` entry that is not `FROM=TO` (one-line message)."""


@dataclass(frozen=True)
class LabelMap:
    """Rename (`FROM=TO`) or drop (`FROM=`) class names; names not listed pass unchanged."""

    renames: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, entries: Iterable[str] | None) -> LabelMap:
        renames: dict[str, str | None] = {}
        for entry in entries or ():
            source, sep, target = entry.partition("=")
            source, target = source.strip(), target.strip()
            if not sep or not source:
                raise LabelMapError(f"--label-map takes FROM=TO (or FROM= to leave a class out), "
                                    f"got {entry!r}")
            if source in renames and renames[source] != (target or None):
                raise LabelMapError(f"--label-map gives {source!r} two targets: "
                                    f"{renames[source]!r} and {target or None!r}")
            renames[source] = target or None
        return cls(renames)

    def __call__(self, name: str) -> str | None:
        """The mapped name, or None when the class is left out."""
        return self.renames.get(name, name)

    def __bool__(self) -> bool:
        return bool(self.renames)

    def as_args(self) -> list[str]:
        return [f"{k}={v or ''}" for k, v in self.renames.items()]
