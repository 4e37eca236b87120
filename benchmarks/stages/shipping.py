"""The 3-class ablation's shipping rules: which measured rows may ship, and in what order.

`python -m benchmarks.stages.threeclass` ships the best candidate whose int8 conversion passes
the gate; benchmarks/stages/threeclass_report.py states the same rules in RESULTS.md. The rules
were fixed before any held-out number existed:

- seed rows (`is_seed_row`: the same recipe again with another `--seed`) never ship: picking one
  would pick a seed on the test set;
- a `--flip` row (each face read mirrored too) ships only when `flip_wins`: reading the mirror has
  the better accuracy + mask_weared_incorrect F1 on held-in faces (the TAU choice's grids);
- candidates rank by `score`: mask_weared_incorrect F1 on held-out ilc-dev, then accuracy.
"""

from __future__ import annotations

from typing import Any

WEAK = "mask_weared_incorrect"


def is_seed_row(row: dict[str, Any]) -> bool:
    """A 3-class row that only repeats another with a different `--seed` (a seed row)."""
    return "seed" in row.get("options", {})


def best_held_in(choice: dict[str, Any]) -> dict[bool, dict[str, float]]:
    """The chosen TAU's held-in grid point, without (False) and with (True) the mirror."""
    return {flip: next(g for g in choice["grid_flip" if flip else "grid"]
                       if g["tau"] == choice["chosen_flip" if flip else "chosen"])
            for flip in (False, True)}


def flip_wins(choice: dict[str, Any]) -> bool:
    """Whether reading the mirror too (`--flip`) has the better held-in accuracy + F1: the rule
    that lets a `--flip` row ship, fixed before its held-out numbers existed."""
    if not choice.get("grid_flip"):
        return False
    best = best_held_in(choice)
    return sum(best[True][k] for k in ("accuracy", "f1")) > sum(
        best[False][k] for k in ("accuracy", "f1"))


def score(row: dict[str, Any]) -> tuple[float, float]:
    """Ranking key: incorrect-mask F1 on held-out ilc-dev, then its accuracy (seed rows last)."""
    if is_seed_row(row):
        return -1.0, -1.0
    ilc = row["keras"]["ilc-dev held-out"]
    return ilc["per_class"].get(WEAK, {}).get("f1", 0.0), ilc["accuracy"]


def candidates(results: list[dict[str, Any]], tau_choice: dict[str, Any] | None
               ) -> list[dict[str, Any]]:
    """The rows that may ship, best first: no seed rows; `--flip` rows only when the mirror
    wins on held-in faces."""
    mirror = flip_wins(tau_choice or {})
    allowed = [r for r in results if not is_seed_row(r)
               and (mirror or not r.get("options", {}).get("flip"))]
    return sorted(allowed, key=score, reverse=True)
