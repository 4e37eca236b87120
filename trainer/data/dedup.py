"""Near-duplicate grouping: the same picture re-encoded, resized or recompressed is one group.

Each sample gets a 64-bit perceptual hash (DCT of a 32x32 grayscale thumbnail, the 8x8 lowest
frequencies against their median), and one of its mirror image. Pairs within `max_distance` bits
(vectorised Hamming distance, direct or mirrored) are candidates; a candidate is a near-duplicate
when the two thumbnails also differ by at most `max_pixel_diff` grey levels on average (this
rejects different frames of one video, which a 64-bit hash alone confuses). Near-duplicates and
samples sharing a source (the faces of one VOC photo) are joined with union-find. The splitter
keeps every group in one split, so a test image never has a twin -- or a mirrored twin -- in
training.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Hamming distance (of 64 bits) at or below which two images are near-duplicate candidates.
DEFAULT_MAX_DISTANCE = 8
#: Mean absolute grey-level difference of the 32x32 thumbnails at or below which a candidate pair
#: is the same picture. Measured on face-mask-2c: re-encoded/resized twins differ by 0-8.
DEFAULT_MAX_PIXEL_DIFF = 10.0


@dataclass(frozen=True)
class Grouping:
    """Group id per sample (0..G-1, in order of first appearance) and how many merges happened."""

    groups: np.ndarray  # (N,) int64
    near_duplicate_pairs: int  # pairs of samples found within max_distance (different sources)
    merged_groups: int  # groups holding more than one source because of near-duplicates
    samples_in_merged_groups: int


def phash(thumbs: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes (N,) uint64 of (N, 32, 32) grayscale thumbnails."""
    bits = np.zeros((len(thumbs), 64), dtype=bool)
    for i, thumb in enumerate(thumbs):
        low = cv2.dct(np.asarray(thumb, np.float32))[:8, :8].reshape(-1)
        bits[i] = low > np.median(low[1:])
    weights = (np.uint64(1) << np.arange(64, dtype=np.uint64))
    return (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


#: Distances computed at once (block rows x all hashes): bounds memory (~32 MB) at any N.
DISTANCE_BLOCK_ELEMENTS = 1 << 22


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int, others: np.ndarray | None = None,
                         block: int | None = None) -> list[tuple[int, int]]:
    """Pairs i < j with Hamming(hashes[i], others[j]) <= max_distance (others: hashes itself)."""
    hashes = np.asarray(hashes, np.uint64)
    others = hashes if others is None else np.asarray(others, np.uint64)
    if block is None:  # up to 2048 rows, fewer when there are many hashes
        block = max(1, min(2048, DISTANCE_BLOCK_ELEMENTS // max(1, len(others))))
    pairs: set[tuple[int, int]] = set()
    for start in range(0, len(hashes), block):
        rows = hashes[start:start + block]
        dist = np.bitwise_count(rows[:, None] ^ others[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + start
        pairs.update((min(a, b), max(a, b)) for a, b in zip(ii.tolist(), jj.tolist(), strict=True)
                     if a != b)
    return sorted(pairs)


def _same_picture(thumbs: np.ndarray, pairs: list[tuple[int, int]],
                  max_pixel_diff: float) -> list[tuple[int, int]]:
    """Keep candidate pairs whose thumbnails match directly or mirrored."""
    kept = []
    for a, b in pairs:
        ta, tb = thumbs[a].astype(np.float32), thumbs[b].astype(np.float32)
        diff = min(float(np.abs(ta - tb).mean()), float(np.abs(ta - tb[:, ::-1]).mean()))
        if diff <= max_pixel_diff:
            kept.append((a, b))
    return kept


#: Candidate pairs whose thumbnails are compared at once (~16 MB of float32 thumbnails).
PAIR_BATCH = 4096


def confirmed_pairs(hashes: np.ndarray, mirrored: np.ndarray, thumbs: np.ndarray,
                    max_distance: int, max_pixel_diff: float) -> list[tuple[int, int]]:
    """`_same_picture` of every candidate pair (direct or mirrored hash within max_distance),
    block by block: only confirmed pairs are ever held, so memory stays bounded however many
    candidates there are (similar-looking pictures make them grow with N squared)."""
    hashes, mirrored = np.asarray(hashes, np.uint64), np.asarray(mirrored, np.uint64)
    block = max(1, min(2048, DISTANCE_BLOCK_ELEMENTS // max(1, len(hashes))))
    kept: set[tuple[int, int]] = set()
    for start in range(0, len(hashes), block):
        rows = hashes[start:start + block, None]
        near = ((np.bitwise_count(rows ^ hashes[None, :]) <= max_distance)
                | (np.bitwise_count(rows ^ mirrored[None, :]) <= max_distance))
        ii, jj = np.nonzero(near)
        ii = ii + start
        a, b = np.minimum(ii, jj), np.maximum(ii, jj)
        a, b = a[a != b], b[a != b]
        for k in range(0, len(a), PAIR_BATCH):
            pa, pb = a[k:k + PAIR_BATCH], b[k:k + PAIR_BATCH]
            ta = np.asarray(thumbs[pa], np.float32)
            tb = np.asarray(thumbs[pb], np.float32)
            diff = np.minimum(np.abs(ta - tb).mean(axis=(1, 2)),
                              np.abs(ta - tb[:, :, ::-1]).mean(axis=(1, 2)))
            ok = diff <= max_pixel_diff
            kept.update(zip(pa[ok].tolist(), pb[ok].tolist(), strict=True))
    return sorted(kept)


def group_samples(thumbs: np.ndarray, sources: list[str],
                  max_distance: int = DEFAULT_MAX_DISTANCE,
                  max_pixel_diff: float = DEFAULT_MAX_PIXEL_DIFF) -> Grouping:
    """Group samples that share a source or whose thumbnails are near-duplicates."""
    n = len(sources)
    uf = _UnionFind(n)
    first: dict[str, int] = {}
    for i, src in enumerate(sources):
        if src in first:
            uf.union(first[src], i)
        else:
            first[src] = i
    # Hash each source once: faces of one VOC photo share the photo's thumbnail.
    reps = list(first.values())
    pairs: list[tuple[int, int]] = []
    if n:
        rep_thumbs = np.asarray(thumbs)[reps]  # float32 or uint8 (streaming): same values
        hashes, mirrored = phash(rep_thumbs), phash(rep_thumbs[:, :, ::-1])
        pairs = confirmed_pairs(hashes, mirrored, rep_thumbs, max_distance, max_pixel_diff)
    for a, b in pairs:
        uf.union(reps[a], reps[b])
    roots = np.array([uf.find(i) for i in range(n)], dtype=np.int64)
    _, groups = np.unique(roots, return_inverse=True)
    # Renumber in order of first appearance, so ids do not depend on np.unique's sort.
    order: dict[int, int] = {}
    ids = np.array([order.setdefault(int(g), len(order)) for g in groups], dtype=np.int64)
    rep_groups = ids[reps]
    sources_per_group = np.bincount(rep_groups, minlength=len(order)) if reps else np.zeros(0)
    merged = np.nonzero(sources_per_group > 1)[0]
    in_merged = int(np.isin(ids, merged).sum())
    return Grouping(groups=ids, near_duplicate_pairs=len(pairs), merged_groups=len(merged),
                    samples_in_merged_groups=in_merged)
