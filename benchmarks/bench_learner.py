"""The learner's speed: :func:`genrify.learn.learner.learn_head` on 1,000 synthetic songs.

Run from the repository root::

    .venv/bin/python benchmarks/bench_learner.py

1,000 songs of 8 segments, 20 genres around random centres in the 200-dimensional embedding space,
15 artists per genre, no tag prior (``builtin=False``): the whole nested, artist-grouped
cross-validation and the final fit. Target: under 10 s (the learner's module text says "a few
seconds on two cores"). The reference, measured in the same run: the learner on the first 100 of
the songs; their ratio says how it scales (10 would be linear in the songs).
"""

from __future__ import annotations

import time

import numpy as np

TARGET_SECONDS = 10.0
DIM = 200


def main() -> int:
    from genrify.learn.embedcache import SongEmbedding
    from genrify.learn.learner import learn_head

    rng = np.random.default_rng(0)
    names = [f"genre {k}" for k in range(20)]
    centres = {n: rng.normal(scale=0.5, size=DIM) / np.sqrt(DIM) * 10 for n in names}
    songs, labels, groups = [], [], []
    for i in range(1000):
        g = names[i % 20]
        x = centres[g] + rng.normal(size=(8, DIM))
        grams = {n: rng.uniform(size=(8, 50)).astype(np.float32) for n in ("MSD_musicnn", "MTT_musicnn")}
        songs.append(SongEmbedding(f"{i}.mp3", x.astype(np.float32), grams, False))
        labels.append((g,))
        groups.append(f"{g} {rng.integers(0, 15)}")
    started = time.perf_counter()
    learn_head(songs[:100], labels[:100], groups[:100], builtin=False)
    reference = time.perf_counter() - started
    started = time.perf_counter()
    _head, report = learn_head(songs, labels, groups, builtin=False)
    seconds = time.perf_counter() - started
    ok = seconds < TARGET_SECONDS
    print(f"learn_head on {len(songs)} songs of 8 segments, 20 genres: {seconds:.1f} s (target < {TARGET_SECONDS:g} s) "
          f"{'ok' if ok else 'MISSED'}; on the first 100 (the reference): {reference:.1f} s, ratio "
          f"{seconds / reference:.1f} for 10 x the songs; cross-validated top-1 {report.cv_top1:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
