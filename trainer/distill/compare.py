"""Compare distillation settings by 5-fold cross-validation on held-in photos:
`python -m trainer.distill.compare [--only NAME ...] [--out JSON]`.

Every setting changes one thing against `BASE` (phase 1, the head on cached features, unless it
says otherwise) and is scored on each fold's labelled faces as the device frames them: the shipped
detector's boxes matched to annotations, and the annotated boxes. The held-out photos (both
`benchmarks/holdout/*-test.txt` lists) are left out of the face table itself, so no setting is
chosen on them. Folds already computed (for any run with the same faces, views and setting) are
read back from the cache, so an interrupted comparison continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from edge.core.console import say
from edge.core.fileio import write_text_atomic
from trainer.distill.run import DistillConfig, prepare_data
from trainer.distill.train import Setting
from trainer.distill.views import ViewSpec

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
HOLDOUT = REPO / "benchmarks" / "holdout"
EXCLUDE = (HOLDOUT / "face-mask-ilc-dev-test.txt", HOLDOUT / "face-mask-voc-test.txt")
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_no_top.weights.h5"
#: The views every setting draws from: 6 per face + 1 mixup (a setting may use fewer).
VIEWS = ViewSpec(views=6, mix=1)
BASE = Setting(name="128 kd 6v+mix", input_size=128, views=6, mix=True)
#: A short phase 2 (all 154 backbone layers, BatchNorm frozen, 1 epoch over 3 views per face,
#: Adam 1e-4 on a cosine to 0): phase 1 alone stays far below the targets, so the choices that
#: matter are made with the backbone training too. ~25 min per setting on this 2-core CPU.
SHORT_FT = {"views": 3, "mix": False, "ft_layers": 154, "ft_epochs": 1, "ft_lr": 1e-4}
PHASE2: tuple[tuple[Setting, str], ...] = (
    (dataclasses.replace(BASE, name="128 kd 3v +ft1", **SHORT_FT),
     "phase 2: 1 epoch over 3 views per face, all layers"),
    (dataclasses.replace(BASE, name="128 kd+ce0.5 3v +ft1", ce_weight=0.5, **SHORT_FT),
     "phase 2, + cross-entropy on labelled faces (half the target)"),
)
#: (setting, what it changes against BASE). Pruned to what a 2-core CPU shared with other work
#: runs in about an hour: the base (phase 1) and the phase-2 variants. The other rows (labels
#: only, 1/3/6 views, no close-ups, 160 px, the nose band) are the next comparisons to run, as
#: `--extra` settings.
SETTINGS: tuple[tuple[Setting, str], ...] = (
    (BASE, "the base: 128 px, teacher's probabilities only, 6 views + 1 mixup per face, "
           "close-ups and unmatched detections as unlabelled faces"),
    *PHASE2,
)


def data_config(out: Path, setting: Setting, cache_dir: Path) -> DistillConfig:
    """The comparison's data: face-mask-voc + face-mask-ilc-dev held-in photos, face-mask-2c
    close-ups unlabelled, the shipped ensemble as teacher."""
    from trainer.distill.command import default_teacher

    datasets = SHARED / "datasets"
    return DistillConfig(data=(datasets / "face-mask-voc", datasets / "face-mask-ilc-dev"),
                         out=out, teacher=default_teacher(), weights=str(WEIGHTS),
                         closeups=(datasets / "face-mask-2c",), exclude_lists=EXCLUDE,
                         setting=setting, views=VIEWS, cache_dir=cache_dir)


def compare(settings: list[tuple[Setting, str]], cache_dir: Path, folds: int = 5,
            progress: bool = True) -> list[dict[str, Any]]:
    """Cross-validate each setting; one entry per setting (with what it changes)."""
    from trainer.distill.cv import cross_validate

    entries = []
    data = None
    for setting, change in settings:
        config = data_config(cache_dir / "unused", setting, cache_dir)
        if data is None:
            data = prepare_data(config, progress)
        data.store.prepare((setting.input_size,), progress)
        say(f"setting {setting.name}", progress)
        result = cross_validate(data, setting, folds, cache_dir / "cv", progress)
        entries.append({**result, "change": change})
    return entries


def main(argv: list[str] | None = None) -> None:
    from trainer.distill.cv import format_cv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="setting names to run (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" /
                        "distill_cv.json", help="results JSON (RESULTS.md renders it)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/work/runs/cache"))
    parser.add_argument("--extra", type=Path, help="JSON list of more settings to run: "
                        "[{\"change\": ..., \"setting\": {...Setting fields}}]")
    args = parser.parse_args(argv)
    chosen = [s for s in SETTINGS if not args.only or s[0].name in args.only]
    if args.extra:
        chosen += [(Setting(**e["setting"]), e["change"])
                   for e in json.loads(args.extra.read_text())]
    entries = compare(chosen, args.cache_dir)
    table = format_cv(entries)
    write_text_atomic(args.out, json.dumps({"table": table.splitlines(), "entries": entries},
                                           indent=1))
    print(table)


if __name__ == "__main__":
    main()
