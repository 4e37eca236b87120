"""Builders of test inputs: a run folder in seconds, a folder of real photos and bad files.

`make_tiny_run` (an untrained one-layer model with a real split, for the fault tests),
`make_messy_folder` (real face-mask-2c photos plus one of every kind of odd or broken file, for
the trainer's data and fit tests), and the two helpers it builds on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import DATA_2C
from PIL import Image


def make_tiny_run(root: Path) -> Path:
    """A run folder in seconds in `root`: a one-conv-layer maskedge model (untrained) and a split
    of 24 real face-mask-2c images (12 per class); returns `root`."""
    import keras

    from edge.core.contract import ModelContract
    from trainer.data.datasets import discover
    from trainer.data.split import make_manifest, write_manifest
    from trainer.fit.artifacts import save_keras_model

    dataset = discover(DATA_2C)
    samples = [s for label in dataset.labels
               for s in [x for x in dataset.samples if x.label == label][:12]]
    manifest = make_manifest(dataset.root, dataset.format, dataset.labels, samples,
                             np.arange(len(samples)), seed=0, fractions=(0.25, 0.25))
    write_manifest(manifest, root / "split.json")
    contract = ModelContract.for_labels(dataset.labels, 32,
                                        source={"split_manifest": "split.json"})
    keras.utils.set_random_seed(0)
    pixels = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(pixels)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    save_keras_model(keras.Model(pixels, out), contract, root)
    return root



def real_jpegs(label: str, n: int) -> list[Path]:
    files = sorted(p for p in (DATA_2C / label).iterdir() if p.suffix.lower() == ".jpg")
    return [p for p in files if Image.open(p).size[0] >= 120][:n]



def save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path



def make_messy_folder(root: Path, face: Image.Image) -> dict[str, int]:
    """Two classes of real photos plus one of every kind of bad or odd file."""
    for label in ("with_mask", "without_mask"):
        (root / label).mkdir(parents=True)
        for p in real_jpegs(label, 6):
            (root / label / p.name).write_bytes(p.read_bytes())
    odd = root / "with_mask"
    save(face.convert("RGBA"), odd / "rgba.png")
    save(face.convert("P"), odd / "palette.png")
    save(face.convert("L"), odd / "gray.jpg")
    save(face.convert("CMYK"), odd / "cmyk.jpg")
    save(Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 200),
         odd / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    save(face, odd / "exif.jpg", exif=exif.tobytes())
    save(face.resize((5000, 3750)), odd / "huge.jpg", quality=85)
    bad = root / "without_mask"
    (bad / "zero.jpg").write_bytes(b"")
    data = real_jpegs("without_mask", 1)[0].read_bytes()
    (bad / "cut.jpg").write_bytes(data[: len(data) // 3])
    (bad / "text.png").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0\1")
    (bad / ".hidden.jpg").write_bytes(b"")
    return {"good": 12 + 7, "bad": 3}
