"""How well the built-in genre model names the genres of real clips, against the naive tag map.

Run from the repository root (needs ``../shared/data/real/genre-samples``)::

    .venv/bin/python benchmarks/genre_map.py

Each clip is named by its genre (``bossa_nova.mp3``); :data:`ACCEPTED` says which genres of the
built-in vocabulary count as right for it (a house track is dance and electronic). Clips whose genre
has no counterpart in the vocabulary (bolero, cumbia, salsa, samba) are left out. Three answers are
compared on the same clips (none of which the genre head was trained on):

- naive: each genre scored by the largest time-averaged probability of any of its tags, in either
  tagger;
- tag map: genrify's built-in model before the genre head (the taggers' genre tags averaged per
  patch, its 15 genres);
- built-in: what ``genrify classify FILE`` answers now (tags and the genre head, 17 genres, see
  :mod:`genrify.models.builtin`), every segment.

Printed: top-1 and top-3 hits of each. Results go to ``bench-output/genre_map.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "real" / "genre-samples"
ACCEPTED: dict[str, set[str]] = {
    "afrobeat": {"funk", "soul/rnb"}, "ambient": {"ambient", "electronic"}, "bop": {"jazz"}, "bossa_nova": {"jazz"},
    "contemporary_jazz": {"jazz"}, "disco": {"disco", "dance", "funk", "pop"}, "dub": {"reggae"}, "doo_wop": {"soul/rnb", "pop"},
    "electro": {"electronic", "dance"}, "europop": {"pop", "dance"}, "funk": {"funk", "soul/rnb"},
    "gospel": {"soul/rnb"}, "heavy_metal": {"metal", "rock"}, "house": {"dance", "electronic"},
    "indie_rock": {"rock"}, "punk": {"punk", "rock"}, "soul": {"soul/rnb", "funk"}, "swing": {"jazz"},
    "techno": {"electronic", "dance"}, "trance": {"electronic", "dance"},
}


def naive_scores(taggrams: dict[str, np.ndarray], tags: dict[str, list[str]]) -> np.ndarray:
    from genrify.models.builtin import GENRE_TAGS

    scores = []
    for genre in GENRE_TAGS:
        best = 0.0
        for tagger, names in GENRE_TAGS[genre].items():
            mean = taggrams[tagger].mean(axis=0)
            best = max(best, max(float(mean[tags[tagger].index(t)]) for t in names))
        scores.append(best)
    return np.array(scores)


def main() -> int:
    if not CLIPS.is_dir():
        print(f"no clips at {CLIPS}")
        return 1
    from genrify.classify.predict import classify, expected_accuracy
    from genrify.models.builtin import GENRE_TAGS, TAGGER_NAMES, load_builtin
    from genrify.classify.musicnn_tags import preprocess_file
    from genrify.models.musicnn import load_tagger

    taggers = {n: load_tagger(n) for n in TAGGER_NAMES}
    tags = {n: t.tags for n, t in taggers.items()}
    builtin = load_builtin()
    tag_map = load_builtin(list(GENRE_TAGS), head=False)
    rows = []
    for clip in sorted(CLIPS.glob("*.mp3")):
        if clip.stem not in ACCEPTED:
            continue
        batch = preprocess_file(clip)
        taggrams = {n: t.run(batch, features=False)["taggram"] for n, t in taggers.items()}
        naive = [list(GENRE_TAGS)[i] for i in np.argsort(-naive_scores(taggrams, tags), kind="stable")]
        old = [g for g, _ in classify(clip, tag_map, max_segments=0).top(3)]
        answer = classify(clip, builtin, max_segments=0)
        ours = [g for g, _ in answer.top(3)]
        rows.append({"clip": clip.stem, "accepted": sorted(ACCEPTED[clip.stem]), "naive": naive[:3], "tag_map": old,
                     "builtin": ours, "builtin_confidence": answer.confidence})
        print(f"{clip.stem:18s} tag map {', '.join(old):30s} built-in {', '.join(ours)}")
    n = len(rows)
    summary = {}
    for key in ("naive", "tag_map", "builtin"):
        top1 = sum(r[key][0] in r["accepted"] for r in rows)
        top3 = sum(bool(set(r[key]) & set(r["accepted"])) for r in rows)
        summary[key] = {"top1": top1, "top3": top3, "clips": n}
        print(f"{key:8s} top-1 {top1}/{n}  top-3 {top3}/{n}")
    # The built-in model is calibrated: its mean confidence is the share it expects right
    # (what classify's summary says), here against the share of acceptable first answers.
    expected = expected_accuracy(r["builtin_confidence"] for r in rows)
    summary["builtin"]["expected_accuracy"] = expected
    print(f"built-in expects {expected:.2f} right (its mean confidence); acceptable first answers "
          f"{summary['builtin']['top1'] / n:.2f}")
    out = REPO / "bench-output" / "genre_map.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "clips": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
