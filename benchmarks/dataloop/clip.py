"""The camera at the new door: a 640x480 video of held-in face-mask-ilc-dev photos, and its truth.

The photos are the ilc-dev photos in neither list of benchmarks/holdout/ (the held-out test list,
which this benchmark reads once at the end, and the validation list on which the default
detector's threshold was chosen), so nothing the loop collects comes from a photo it is scored
on. The clip is the tracking benchmark's seeded `held` clip (benchmarks/tracking/clips.py: each
photo letterboxed into the frame, held `hold` frames with a little pan and zoom, sensor noise, a
hard cut between photos), rendered frame by frame into a video file that `edge run --source`
plays like any other. Its ground truth, the annotated face boxes moved with the view, is written
beside it as `truth.jsonl`: one line per frame, `{"frame": i, "faces": [{"identity", "box",
"label"}...]}`, which is what the simulated person looks at when labelling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from benchmarks.holdout_split import ILC_TEST_LIST, ILC_VAL_LIST
from benchmarks.tracking.clips import HOLD_FRAMES, LABEL_MAP, HeldClip, PhotoPool, make_held
from edge.core.fileio import atomic_path, write_text_atomic
from edge.core.labelmap import LabelMap
from edge.core.voc import load_voc, read_name_list
from edge.sinks.outputs import FOURCC

ILC = Path("datasets") / "face-mask-ilc-dev"
VIDEO_NAME = "collect.mp4"
TRUTH_NAME = "truth.jsonl"
CLIP_SEED = 32  # issue 32: any fixed number; the clip is the same on every run


@dataclass(frozen=True)
class Video:
    """What the collect step plays: the file, its truth file and how it was made."""

    path: Path
    truth: Path
    info: dict[str, Any]


def held_in_pool(shared: Path) -> PhotoPool:
    """The annotated ilc-dev photos in neither held-out list (module docstring)."""
    leave_out = read_name_list(ILC_TEST_LIST) | read_name_list(ILC_VAL_LIST)
    photos = tuple(p for p in load_voc(shared / ILC, label_map=LabelMap.parse(LABEL_MAP),
                                       exclude=leave_out) if p.annotations)
    return PhotoPool("held-in", photos, {"face-mask-ilc-dev": len(photos)})


def make_collect_video(shared: Path, folder: Path, photos: int | None,
                       hold: int = HOLD_FRAMES) -> Video:
    """Render the held clip of `photos` held-in photos (None: all) into folder/VIDEO_NAME and its
    truth into folder/TRUTH_NAME; both written atomically, the truth last (its presence means
    the step is done)."""
    pool = held_in_pool(shared)
    shots = make_held(pool, photos or len(pool.photos), CLIP_SEED).shots
    clip = HeldClip(shots, CLIP_SEED, hold=hold)
    folder.mkdir(parents=True, exist_ok=True)
    video, truth = folder / VIDEO_NAME, folder / TRUTH_NAME
    lines = []
    with atomic_path(video) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*FOURCC[video.suffix]),
                                 clip.fps, clip.size)
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot encode {video.suffix} video here")
        try:
            for i in range(len(clip)):
                writer.write(cv2.cvtColor(clip.frame(i), cv2.COLOR_RGB2BGR))
                faces = [{"identity": t.identity, "box": [round(v, 1) for v in t.box],
                          "label": t.label} for t in clip.truth(i)]
                lines.append(json.dumps({"frame": i, "faces": faces}))
        finally:
            writer.release()
    info = {"photos": len(clip.shots), "held_in_photos": len(pool.photos), "frames": len(clip),
            "hold": clip.hold, "fps": clip.fps, "size": f"{clip.size[0]}x{clip.size[1]}",
            "seed": CLIP_SEED, "faces": sum(len(s.photo.annotations) for s in clip.shots),
            "photo_names": sorted(s.photo.path.name for s in clip.shots)}
    write_text_atomic(folder / "video.json", json.dumps(info, indent=1) + "\n")
    write_text_atomic(truth, "\n".join(lines) + "\n")
    return Video(video, truth, info)


def existing_video(folder: Path) -> Video | None:
    """The video an earlier run made in `folder`, when its truth was written (the step ended)."""
    video, truth, info = folder / VIDEO_NAME, folder / TRUTH_NAME, folder / "video.json"
    if video.is_file() and truth.is_file() and info.is_file():
        return Video(video, truth, json.loads(info.read_text()))
    return None


def read_truth(path: Path) -> dict[int, list[dict[str, Any]]]:
    """Frame index -> its ground-truth faces, from a `truth.jsonl`."""
    out: dict[int, list[dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out[int(row["frame"])] = row["faces"]
    return out
