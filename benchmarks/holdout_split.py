"""The held-out photos of face-mask-ilc-dev: `python -m benchmarks.holdout_split [DATA]`.

Both the 3-class classifier and the detector settings are tuned on the rest of face-mask-ilc-dev
and reported on these photos only. Photos are grouped by near-duplicate (`trainer.data.dedup`,
whole-photo thumbnails) and the groups split by the trainer's own stratified, seeded splitter
(faces as samples, so every class, mask_weared_incorrect included, is held out in about the
same share). Of the rest, a fifth (grouped the same way) is the validation list on which a
trained detector's score threshold is chosen. The lists are committed
(`benchmarks/holdout/face-mask-ilc-dev-{test,val}.txt`, one image file name a line) so every
stage holds out the same photos.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from edge.core.fileio import write_text_atomic
from edge.core.voc import load_voc
from trainer.data.dedup import group_samples
from trainer.data.split import assign_splits

HOLDOUT_DIR = Path(__file__).resolve().parent / "holdout"
ILC_TEST_LIST = HOLDOUT_DIR / "face-mask-ilc-dev-test.txt"
ILC_VAL_LIST = HOLDOUT_DIR / "face-mask-ilc-dev-val.txt"
TEST_FRACTION = 0.35
VAL_FRACTION = 0.2  # of the photos left after the test photos: detector threshold choice
SEED = 0


def _thumb(path: Path) -> np.ndarray:
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def held_out_photos(root: Path, test_fraction: float = TEST_FRACTION,
                    seed: int = SEED, exclude: set[str] | None = None) -> list[str]:
    """File names of the held-out photos of a VOC folder (none of `exclude`)."""
    images = [item for item in load_voc(root, exclude=exclude) if item.annotations]
    grouping = group_samples(np.stack([_thumb(item.path) for item in images]),
                             [item.path.name for item in images])
    labels, groups, owner = [], [], []
    for i, item in enumerate(images):
        for ann in item.annotations:
            labels.append(ann.label)
            groups.append(grouping.groups[i])
            owner.append(item.path.name)
    splits = assign_splits(labels, np.array(groups), seed, 0.0, test_fraction)
    return sorted({name for name, split in zip(owner, splits, strict=True) if split == "test"})


def main(argv: list[str]) -> None:
    root = Path(argv[0]) if argv else Path("../shared/datasets/face-mask-ilc-dev")
    names = held_out_photos(root)
    write_text_atomic(ILC_TEST_LIST, "".join(f"{n}\n" for n in names))
    print(f"{len(names)} held-out photos -> {ILC_TEST_LIST}")
    val = held_out_photos(root, VAL_FRACTION, exclude=set(names))
    write_text_atomic(ILC_VAL_LIST, "".join(f"{n}\n" for n in val))
    print(f"{len(val)} validation photos (detector threshold) -> {ILC_VAL_LIST}")


if __name__ == "__main__":
    main(sys.argv[1:])
