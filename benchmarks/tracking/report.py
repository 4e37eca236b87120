"""RESULTS.md's tracking section from `tracking.json` (`python -m benchmarks.tracking`).

Pure functions from the results dict to Markdown lines (no measurement, no models), so
`python -m benchmarks.run --render-only` can re-render the section from the JSON alone: one table
per split (held-in, held-out) with a row per tracker variant and clip kind, the held-out photos
played as a folder in a table of their own, and what every column means.
"""

from __future__ import annotations

from typing import Any

from benchmarks.tables import fmt, pct, table

PHOTOS = "photos"
KIND_TEXT = {
    "held": "photos held 12 frames each, hard cuts between them, slight pan and zoom",
    "moving": "face sprites moving over face-free backgrounds (speeds, crossings, faces leaving "
              "and coming back), hard cuts between scenes",
    "dropped": "the moving clip with about half the frames dropped (jittered stride 1-3), as "
               "`edge run --realtime` on a slow device",
    "masked": "a moving clip of with_mask faces only: every alert is false",
}
SPLIT_TEXT = {
    "held-in": "photos in neither held-out list (the 3-class model trained on their faces)",
    "held-out": "the face-mask-ilc-dev held-out photos only (no model trained on them)",
}


def _short(label: str) -> str:
    return label.replace("mask_weared_incorrect", "incorrect").replace("_mask", "")


def _pair(a: Any, b: Any, as_pct: bool = False) -> str:
    if a is None and b is None:
        return "-"
    return f"{pct(a)} / {pct(b)}" if as_pct else f"{fmt(a)} / {fmt(b)}"


def _f1_cells(row: dict[str, Any], labels: list[str]) -> list[str]:
    reported, raw = row.get("f1_reported") or {}, row.get("f1_raw") or {}
    return [_pair(reported.get(c), raw.get(c)) for c in labels]


def _clip_row(row: dict[str, Any], labels: list[str]) -> list[str]:
    joins = row.get("joins")
    share = row.get("join_share")
    return [f"`{row['variant']}`", row["kind"], fmt(row.get("frames")),
            f"{fmt(row.get('people_true'))} / {fmt(row.get('people_counted'))}",
            _breakdown(row), fmt(row.get("idf1"), 3), fmt(row.get("id_switches")),
            fmt(row.get("mota"), 3),
            f"{fmt(joins)} ({pct(share, 0)})" if joins is not None else "-",
            fmt(row.get("tracks_across_cuts")),
            _pair(row.get("accuracy_reported"), row.get("accuracy_raw"), as_pct=True),
            *_f1_cells(row, labels),
            f"{fmt(row.get('alerts'))} ({fmt(row.get('false_alerts'))})",
            fmt(row.get("false_alerts_per_hour"), 0), fmt(row.get("fps"), 1)]


def _breakdown(row: dict[str, Any]) -> str:
    keys = ("counted_true", "counted_extra", "counted_small", "counted_unannotated")
    if any(row.get(k) is None for k in keys):
        return "-"
    return " / ".join(fmt(row[k]) for k in keys)


def _photo_row(row: dict[str, Any], labels: list[str]) -> list[str]:
    carried, share = row.get("faces_with_earlier_track"), row.get("share_with_earlier_track")
    return [f"`{row['variant']}`", fmt(row.get("frames")), fmt(row.get("truth_faces")),
            fmt(row.get("matched_faces")), fmt(row.get("faces")),
            f"{fmt(carried)} ({pct(share, 0)})" if carried is not None else "-",
            fmt(row.get("matched_with_earlier_track")),
            _pair(row.get("accuracy_reported"), row.get("accuracy_raw"), as_pct=True),
            *_f1_cells(row, labels), fmt(row.get("people_counted")), fmt(row.get("fps"), 1)]


def _order(rows: list[dict[str, Any]], variants: list[str]) -> list[dict[str, Any]]:
    """Rows by kind (clip kinds in their order), then variant (in VARIANTS order)."""
    kinds = [*KIND_TEXT, PHOTOS]
    return sorted(rows, key=lambda r: (kinds.index(r["kind"]) if r["kind"] in kinds else 99,
                                       variants.index(r["variant"])
                                       if r["variant"] in variants else 99))


def _clips_text(clips: dict[str, Any]) -> str:
    parts = [f"{kind} {fmt(c.get('frames'))} frames / {fmt(c.get('seconds'), 0)} s, "
             f"{fmt(c.get('identities'))} identities, {fmt(c.get('cuts'))} cuts"
             for kind, c in clips.items()]
    return "; ".join(parts)


def _split_section(name: str, split: dict[str, Any], r: dict[str, Any]) -> list[str]:
    labels = list(r.get("labels", []))
    variants = list(r.get("variants", {}))
    photos = ", ".join(f"{k} {fmt(v)}" for k, v in split.get("photos", {}).items())
    lines = [f"### {name}: {SPLIT_TEXT.get(name, '')}", "",
             f"Photos available: {photos or '-'}. Clips: {_clips_text(split.get('clips', {}))}. "
             f"Measured in {fmt(split.get('seconds'), 0)} s.", ""]
    rows = _order(split.get("rows", []), variants)
    clip_rows = [_clip_row(x, labels) for x in rows if x["kind"] != PHOTOS]
    if clip_rows:
        lines += table(["variant", "kind", "frames", "people true / counted",
                        "counted: true / extra / small / unannotated", "IDF1", "ID sw",
                        "MOTA", "joins (share)", "across cuts", "accuracy reported / raw",
                        *(f"F1 {_short(c)} rep / raw" for c in labels), "alerts (false)",
                        "false / h", "FPS"], clip_rows)
    photo_rows = [_photo_row(x, labels) for x in rows if x["kind"] == PHOTOS]
    if photo_rows:
        lines += ["", f"The {fmt(split.get('photos_as_folder'))} held-out photos as a folder of "
                  "independent images (`edge run --source DIR`, a temporary folder of symlinks): "
                  "every photo shows other people, so no face should carry a track id of "
                  "another photo.", ""]
        lines += table(["variant", "photos", "annotated faces >= 16 px", "matched", "faces found",
                        "faces with an earlier photo's track", "of them matched",
                        "accuracy reported / raw", *(f"F1 {_short(c)} rep / raw" for c in labels),
                        "people counted", "FPS"], photo_rows)
    return [*lines, ""]


def _keywords(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def _legend(r: dict[str, Any]) -> list[str]:
    variants = "; ".join(f"`{k}` = `TrackerOptions({_keywords(v)})`"
                         for k, v in r.get("variants", {}).items() if k != BEFORE)
    if BEFORE in r.get("variants", {}):
        variants = (f"`{BEFORE}` = edge/ of commit a12937b, before the scene cuts, the appearance "
                    "test and the count rule, on the same clips (`benchmarks/results/"
                    "tracking_before.json`: `python -m benchmarks.tracking --variant default` run "
                    "with that commit's edge/ first on PYTHONPATH; with the model named in that "
                    f"file, {r.get('before_model') or 'see it'}); " + variants)
    kinds = "; ".join(f"{k}: {v}" for k, v in KIND_TEXT.items())
    return [
        f"Variants: {variants or '-'} (defaults: {r.get('tracker_defaults', {})}). Kinds: {kinds}.",
        "",
        f"Columns: people true / counted = identities visible at >= {r.get('min_face', 16)} px in "
        "at least 3 played frames / the run summary's people total; counted: the tracks counted "
        "as people (the count rule replayed on the records), as true people found / extra "
        "tracks of a person already found / tracks on faces too small to count / tracks that "
        "match no annotated face (faces the annotations miss, or false detections); IDF1, ID sw "
        "(switches) and "
        f"MOTA from py-motmetrics (IoU >= {r.get('match_iou', 0.5)}; smaller, mostly covered or "
        "mostly outside faces are don't-care); joins = tracks matched to two or more "
        "identities (share of the tracks matched to any); across cuts = tracks seen on both "
        "sides of a cut; accuracy and F1 on the faces matched to a counted face, reported = the "
        "tracker's smoothed `label`, raw = the classifier's `raw_label` of that frame; alerts "
        f"after {r.get('alert_after')} frames of {', '.join(r.get('alert_labels', []))} (false = "
        "not on a face of an alert class), false / h per hour of clip time at "
        f"{fmt(r.get('fps_nominal'), 0)} FPS; FPS = processed frames per second of the run with "
        "the real models" + (" (later variants replay the first's model outputs)"
                             if r.get("replay") else "") + "."]


BEFORE = "before (a12937b)"


def with_before(r: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """`r` with the `default` rows of `before` (the same benchmark run on the tracker before
    this redesign: `tracking_before.json`) added to each split as variant BEFORE."""
    if not before:
        return r
    merged = {**r, "splits": {}, "variants": {BEFORE: {}, **r.get("variants", {})},
              "before_model": f"`{before['model']}`" if before.get("model") else None}
    for name, split in r.get("splits", {}).items():
        old = before.get("splits", {}).get(name, {}).get("rows", [])
        rows = [{**x, "variant": BEFORE} for x in old if x.get("variant") == "default"]
        merged["splits"][name] = {**split, "rows": [*rows, *split.get("rows", [])]}
    return merged


def render_tracking(r: dict[str, Any]) -> list[str]:
    """RESULTS.md's tracking section from `tracking.json`."""
    lines = ["## Tracking: people, labels and alerts against ground truth", "",
             f"From `{r.get('command', 'python -m benchmarks.tracking')}` (started "
             f"{r.get('started', '?')}, {fmt(r.get('seconds'), 0)} s"
             + (", quick" if r.get("quick") else "") + "). Synthetic clips with known "
             "identities (`benchmarks/tracking/clips.py`) played through the device loop "
             "(`FrameGrabber`, `Pipeline`, `run_loop` with `edge run`'s defaults: detector "
             f"{r.get('detector', '?')}, detect every {r.get('detect_every', '?')} frames, "
             f"classify every {r.get('classify_every', '?')}) with `{r.get('model', '?')}`. "
             "Held-in = clips made only of photos outside both held-out lists; held-out = clips "
             "made only of the face-mask-ilc-dev held-out photos.", ""]
    for name, split in r.get("splits", {}).items():
        lines += _split_section(name, split, r)
    return [*lines, *_legend(r)]
