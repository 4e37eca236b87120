"""The annotated frame reads well: labels inside the frame, never on each other or the banner,
and no FPS figure before there is one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import edge.sinks.draw
from edge.inference.pipeline import FaceResult
from edge.sinks.draw import _text_size, annotate, place_labels

WIDTH, HEIGHT = 320, 240


def face(box: tuple[float, float, float, float], label: str = "without_mask") -> FaceResult:
    return FaceResult(box, label, 0.93, (0.07, 0.93), 0.9)


def label_size(text: str = "#12 without_mask 0.93") -> tuple[int, int]:
    _, w, h = _text_size(text, 0.4, WIDTH)
    return w, h


def overlaps(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check(spots: list, reserved: tuple[int, int, int, int]) -> list:
    placed = [s for s in spots if s is not None]
    for x1, y1, x2, y2 in placed:
        assert 0 <= x1 < x2 <= WIDTH and 0 <= y1 < y2 <= HEIGHT, (x1, y1, x2, y2)
        assert not overlaps((x1, y1, x2, y2), reserved)
    for a, b in itertools.combinations(placed, 2):
        assert not overlaps(a, b), (a, b)
    return placed


@pytest.mark.parametrize("seed", range(5))
def test_labels_of_a_crowd_stay_inside_and_apart(seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(25):
        x, y, s = rng.uniform(-20, WIDTH), rng.uniform(-20, HEIGHT), rng.uniform(12, 60)
        boxes.append((x, y, min(WIDTH, x + s), min(HEIGHT, y + s)))
    banner = (4, 4, 60, 18)
    spots = place_labels(boxes, [label_size()] * len(boxes), (WIDTH, HEIGHT), [banner])
    placed = check(spots, banner)
    assert len(placed) >= 12  # crowded: most still get a label


def test_labels_at_the_edges_flip_below_and_shift_left() -> None:
    w, h = label_size()
    boxes = [(WIDTH - 30, 0, WIDTH, 30),  # top-right corner: no room above, cut at the right
             (0, HEIGHT - 30, 30, HEIGHT),  # bottom-left corner: above it
             (WIDTH - 20, HEIGHT - 20, WIDTH, HEIGHT)]  # bottom-right corner
    spots = place_labels(boxes, [(w, h)] * 3, (WIDTH, HEIGHT))
    check(spots, (0, 0, 0, 0))
    top_right, bottom_left, bottom_right = spots
    assert top_right is not None and top_right[1] >= 30 and top_right[2] == WIDTH
    assert bottom_left is not None and bottom_left[3] <= HEIGHT - 30
    assert bottom_right is not None and bottom_right[2] == WIDTH


def test_side_by_side_faces_get_labels_that_do_not_cover_each_other() -> None:
    boxes = [(10 + 25 * i, 100, 30 + 25 * i, 120) for i in range(8)]  # a row, 5 px apart
    spots = place_labels(boxes, [label_size()] * 8, (WIDTH, HEIGHT))
    assert all(s is not None for s in spots)
    check(spots, (0, 0, 0, 0))


def test_annotate_draws_no_fps_before_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    texts: list[str] = []
    real = edge.sinks.draw.cv2.putText

    def put_text(image: np.ndarray, text: str, *args: object, **kwargs: object) -> None:
        texts.append(text)
        real(image, text, *args, **kwargs)

    monkeypatch.setattr(edge.sinks.draw.cv2, "putText", put_text)
    rgb = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    faces = [face((250, 0, 320, 60)), face((0, 200, 40, 240), "with_mask")]
    for fps in (0.0, float("nan")):
        texts.clear()
        annotate(rgb, faces, fps=fps)
        assert "2 faces" in texts and not any("FPS" in t for t in texts), texts
    texts.clear()
    annotate(rgb, faces, fps=12.5)
    assert "12.5 FPS  2 faces" in [t.strip() for t in texts]
    texts.clear()
    annotate(rgb, faces)  # no fps at all: no banner
    assert len(texts) == 2 and not any("faces" in t for t in texts)


def test_annotate_keeps_labels_inside_a_small_frame() -> None:
    """A label wider than the frame is drawn smaller, not cut at the edge."""
    rgb = np.zeros((48, 64, 3), np.uint8)
    bgr = annotate(rgb, [face((40, 0, 64, 20), "mask_weared_incorrect")], fps=30.0)
    assert bgr.shape == rgb.shape
    scale, w, _ = _text_size("mask_weared_incorrect 0.93", 0.4, 64)
    assert w <= 64 and scale < 0.4
