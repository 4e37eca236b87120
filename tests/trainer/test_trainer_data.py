"""trainer data handling on real images: formats, messy files, decoding (no TensorFlow)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_VOC
from PIL import Image
from support.builders import make_messy_folder, real_jpegs, save

from trainer.data.datasets import discover, require_two_classes
from trainer.data.images import BadImage, decode_image
from trainer.data.pixels import load_pixels
from trainer.errors import UserError

SIZE = (64, 64)


@pytest.fixture(scope="module")
def face() -> Image.Image:
    """A real face photo, RGB, not square."""
    img = Image.open(real_jpegs("with_mask", 1)[0]).convert("RGB")
    w, h = img.size
    return img.crop((0, 0, w, int(h * 0.75)))


def test_decode_handles_every_colour_mode(tmp_path: Path, face: Image.Image) -> None:
    rgb = np.asarray(face)
    cases = {
        "rgba.png": face.convert("RGBA"),
        "palette.png": face.convert("P", palette=Image.Palette.ADAPTIVE),
        "gray.jpg": face.convert("L"),
        "cmyk.jpg": face.convert("CMYK"),
        "la.png": face.convert("LA"),
        "bw.png": face.convert("1"),
    }
    for name, img in cases.items():
        out = decode_image(save(img, tmp_path / name)).pixels
        assert out.dtype == np.uint8 and out.shape == rgb.shape, name
    gray = decode_image(tmp_path / "gray.jpg").pixels
    assert np.array_equal(gray[..., 0], gray[..., 1])
    cmyk = decode_image(tmp_path / "cmyk.jpg").pixels.astype(float)
    assert np.abs(cmyk - rgb).mean() < 12  # colours survive the CMYK round trip
    # transparent pixels are composited, not left black
    rgba = face.convert("RGBA")
    rgba.putalpha(0)
    assert decode_image(save(rgba, tmp_path / "clear.png")).pixels.mean() > 100


def test_decode_16bit_png_keeps_contrast(tmp_path: Path, face: Image.Image) -> None:
    gray8 = np.asarray(face.convert("L")).astype(np.uint16)
    img16 = Image.fromarray((gray8 * 257).astype(np.uint16))
    path = save(img16, tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    out = decode_image(path).pixels
    assert np.abs(out[..., 0].astype(int) - gray8).max() <= 1  # not clipped to white


def test_decode_applies_exif_rotation(tmp_path: Path, face: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(face, tmp_path / "rotated.jpg", exif=exif.tobytes())
    w, h = face.size
    assert decode_image(path).pixels.shape == (w, h, 3)


def test_decode_huge_photo_uses_draft(tmp_path: Path, face: Image.Image) -> None:
    big = face.resize((5000, 3750))
    path = save(big, tmp_path / "huge.jpg", quality=90)
    full = decode_image(path).pixels
    small = decode_image(path, min_side=224).pixels
    assert full.shape == (3750, 5000, 3)
    assert min(small.shape[:2]) >= 224 and small.shape[1] <= 5000 // 4  # decoded at 1/8 or 1/4


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.jpg", b"", "empty"),
    ("notes.jpg", b"these are my notes, not a photo\n" * 20, "not an image"),
    ("truncated.jpg", None, "truncated"),
])
def test_decode_bad_files_give_a_reason(tmp_path: Path, name: str, content: bytes | None,
                                        reason: str) -> None:
    if content is None:
        data = real_jpegs("without_mask", 1)[0].read_bytes()
        content = data[: len(data) // 2]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadImage, match=reason):
        decode_image(path)


def test_messy_folder_is_handled_or_skipped_with_reasons(tmp_path: Path,
                                                         face: Image.Image) -> None:
    expect = make_messy_folder(tmp_path / "data", face)
    dataset = discover(tmp_path / "data")
    assert dataset.format == "folders" and dataset.labels == ("with_mask", "without_mask")
    assert len(dataset.samples) == expect["good"] + expect["bad"]  # hidden files ignored
    loaded = load_pixels(dataset.root, dataset.format, dataset.samples, SIZE)
    assert loaded.images.shape == (expect["good"], *SIZE, 3)
    reasons = {Path(s.path).name: s.reason for s in loaded.skipped}
    assert set(reasons) == {"zero.jpg", "cut.jpg", "text.png"}
    assert "empty" in reasons["zero.jpg"] and "truncated" in reasons["cut.jpg"]
    assert "not an image" in reasons["text.png"]
    assert len(set(loaded.digests)) == len(loaded.digests)


def test_arrays_with_int_and_string_labels(tmp_path: Path) -> None:
    photos = real_jpegs("with_mask", 4) + real_jpegs("without_mask", 4)
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((48, 48)))
                       for p in photos])
    for kind, labels, expected in [
        ("ints", np.array([1, 1, 1, 1, 0, 0, 10, 10]), ("0", "1", "10")),
        ("strings", np.array(["with_mask"] * 4 + ["without_mask"] * 4),
         ("with_mask", "without_mask")),
    ]:
        root = tmp_path / kind
        root.mkdir()
        np.save(root / "dataset.npy", images)
        np.save(root / "labels.npy", labels)
        dataset = discover(root)
        assert dataset.format == "arrays" and dataset.labels == expected
        loaded = load_pixels(root, "arrays", dataset.samples, SIZE)
        assert loaded.images.shape == (8, *SIZE, 3) and not loaded.skipped
        assert [s.label for s in loaded.samples] == [str(v) for v in labels]
    # floats in [0, 1] are scaled to 0-255
    root = tmp_path / "floats"
    root.mkdir()
    np.save(root / "dataset.npy", images.astype(np.float32) / 255.0)
    np.save(root / "labels.npy", np.array([0, 1] * 4))
    loaded = load_pixels(root, "arrays", discover(root).samples, (48, 48))
    assert np.abs(loaded.images.astype(int) - images).max() <= 1


def test_arrays_mismatch_is_a_user_error(tmp_path: Path) -> None:
    np.save(tmp_path / "dataset.npy", np.zeros((3, 8, 8, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.array([0, 1]))
    with pytest.raises(UserError, match=r"3 images but labels\.npy has 2"):
        discover(tmp_path)


def write_voc(root: Path, photos: list[Path], boxes: list[list[tuple[str, tuple]]]) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for photo, objects in zip(photos, boxes, strict=True):
        (root / "images" / photo.name).write_bytes(photo.read_bytes())
        ann = ET.Element("annotation")
        ET.SubElement(ann, "filename").text = photo.name
        for name, (x1, y1, x2, y2) in objects:
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = name
            bnd = ET.SubElement(obj, "bndbox")
            for key, v in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2), strict=True):
                ET.SubElement(bnd, key).text = str(v)
        ET.ElementTree(ann).write(root / "annotations" / (photo.stem + ".xml"))


def test_voc_crops_faces_and_drops_small_ones(tmp_path: Path) -> None:
    photos = sorted((DATA_VOC / "images").glob("*.jpg"))[:3]
    boxes = [[("with_mask", (10, 10, 60, 70)), ("without_mask", (80, 20, 88, 28))],
             [("without_mask", (5, 5, 45, 50))],
             [("mask_weared_incorrect", (30, 30, 80, 90)), ("with_mask", (0, 0, 12, 30))]]
    write_voc(tmp_path, photos, boxes)
    (tmp_path / "annotations" / "broken.xml").write_text("<annotation><object>")
    dataset = discover(tmp_path, min_face=16)
    assert dataset.format == "voc"
    assert dataset.labels == ("mask_weared_incorrect", "with_mask", "without_mask")
    assert len(dataset.samples) == 3  # the 8 px and 12 px boxes are dropped
    assert dataset.notes["faces_below_min_face"] == {"with_mask": 1, "without_mask": 1}
    assert [s.path for s in dataset.skipped] == ["annotations/broken.xml"]
    assert len(discover(tmp_path, min_face=4).samples) == 5
    loaded = load_pixels(tmp_path, "voc", dataset.samples, SIZE)
    assert loaded.images.shape == (3, *SIZE, 3)
    # the crop is the face box with a margin, from edge.core.imageops
    from edge.core.imageops import crop_face, resize_to_input
    photo = decode_image(tmp_path / dataset.samples[0].path).pixels
    expected = resize_to_input(crop_face(photo, dataset.samples[0].box), SIZE)
    assert np.array_equal(loaded.images[0], expected)


def test_real_voc_set_is_three_class() -> None:
    dataset = discover(DATA_VOC)
    assert dataset.labels == ("mask_weared_incorrect", "with_mask", "without_mask")
    assert sum(dataset.notes["faces_below_min_face"].values()) > 0


@pytest.mark.parametrize("layout", ["one_class", "empty", "loose_files"])
def test_unusable_folders_are_user_errors(tmp_path: Path, layout: str) -> None:
    if layout == "one_class":
        (tmp_path / "with_mask").mkdir()
        for p in real_jpegs("with_mask", 2):
            (tmp_path / "with_mask" / p.name).write_bytes(p.read_bytes())
        dataset = discover(tmp_path)
        with pytest.raises(UserError, match="at least two classes"):
            require_two_classes([s.label for s in dataset.samples], tmp_path)
        return
    if layout == "loose_files":
        for p in real_jpegs("with_mask", 2):
            (tmp_path / p.name).write_bytes(p.read_bytes())
    with pytest.raises(UserError):
        discover(tmp_path)


def test_bytes_of_a_real_photo_survive_png_reencoding(tmp_path: Path) -> None:
    src = real_jpegs("with_mask", 1)[0]
    buf = io.BytesIO()
    Image.open(src).save(buf, format="PNG")
    (tmp_path / "copy.png").write_bytes(buf.getvalue())
    a = decode_image(src).pixels.astype(int)
    b = decode_image(tmp_path / "copy.png").pixels.astype(int)
    assert np.array_equal(a, b)
