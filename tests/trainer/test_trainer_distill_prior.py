"""trainer.distill.prior: the decision offset chosen by nested cross-validation."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.distill.prior import GRID, best_offset, decide, nested

LABELS = ("mask_weared_incorrect", "with_mask", "without_mask")


def folds_leaning_away_from_rare(seed: int = 0, folds: int = 5) -> list[tuple[np.ndarray,
                                                                              np.ndarray]]:
    """Folds whose model under-calls class 0: its true faces get 0.3, the rest 0.05."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(folds):
        y = rng.choice(3, size=300, p=[0.1, 0.6, 0.3])
        probs = np.full((len(y), 3), 0.05)
        probs[np.arange(len(y)), y] = 0.6
        rare = y == 0
        probs[rare, 0] = 0.3
        probs[rare, 1] = 0.6 + rng.uniform(-0.1, 0.1, rare.sum())
        probs /= probs.sum(1, keepdims=True)
        out.append((y, probs))
    return out


def test_decide_adds_the_offset_to_one_logit() -> None:
    probs = np.array([[0.3, 0.7, 0.0], [0.1, 0.2, 0.7]])
    assert decide(probs, 0, 0.0).tolist() == [1, 2]
    assert decide(probs, 0, 1.0).tolist() == [0, 2]  # 0.3 e > 0.7; 0.1 e < 0.7
    assert 0.0 in GRID and min(GRID) < 0 < max(GRID)


def test_offset_is_found_and_nested_estimate_beats_none() -> None:
    outputs = folds_leaning_away_from_rare()
    b = best_offset(outputs, 0, LABELS)
    assert 0.7 <= b <= 1.4  # log(0.6 / 0.3) = 0.69 plus the spread: the rare class wins again
    result = nested(outputs, LABELS)
    weak = "f1_mask_weared_incorrect"
    assert result["without_offset"][weak]["mean"] < 0.2
    assert result["nested"][weak]["mean"] > 0.9
    assert len(result["per_fold_offsets"]) == 5 and result["offset"] == b
    assert result["faces"] == 1500


def test_no_offset_when_the_model_is_already_right() -> None:
    rng = np.random.default_rng(1)
    y = rng.choice(3, size=200)
    probs = np.full((200, 3), 0.1)
    probs[np.arange(200), y] = 0.8
    assert best_offset([(y, probs)], 0, LABELS) == pytest.approx(0.0)
