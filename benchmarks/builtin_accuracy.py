"""The built-in genre model on real music: artist-grouped 5-fold cross-validation against the tags alone.

Run from the repository root (needs ``../shared/data/gtzan-excerpts``; ``real/genre-samples`` too
for the out-of-domain line)::

    .venv/bin/python benchmarks/builtin_accuracy.py

The shipped head is made by ``scripts/train_builtin_head.py``: one call of genrify's learner on all
294 GTZAN excerpts, five folds that never share an artist (``SOURCES.tsv``'s), settings chosen by
nested cross-validation (:mod:`genrify.learn.learner`). This benchmark makes the same call (same folds,
same seed) and measures its cross-validated answers: each excerpt answered by a head that never
heard its artist, with settings chosen without it. Beside them, on the same excerpts, the tag map
(genrify's built-in model before any head: the taggers' 15 tag genres, no reggae, disco answered
as dance). Printed:

- top-1 and macro recall among all of the model's 17 genres, and asked for GTZAN's ten
  (``genrify classify --genres ...``; the tag map then among its nine with dance standing for disco),
  with the per-genre recall of each;
- the unsure threshold and near-tie margin chosen by the cross-validation, and how many answers
  they flag;
- the leave-genres-out check (nested): each GTZAN genre the tags know, left out of each fold's
  training, answered with it unlearned; the share of its excerpts still answered with their own
  genre, by that head and by the tags alone (how much the head pulls a genre it never heard into
  the ones it learned);
- out of domain, the shipped head's acceptable first answers on ``real/genre-samples`` (the clips
  and accepted genres of ``benchmarks/genre_map.py``, every segment, computed from cached
  embeddings; ``genre_map.py`` gives the same through ``genrify classify``);
- the issue's targets, each with PASS or FAIL.

Results go to ``bench-output/builtin_accuracy.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "scripts"))
SHARED = REPO.parent / "shared" / "data"
GTZAN = ("blues", "classical", "country", "disco", "hip-hop", "jazz", "metal", "pop", "reggae", "rock")
#: The targets: gain over the tag map in top-1 and macro recall, and the out-of-domain count.
GAIN = 0.08
GENRE_SAMPLES_TARGET = 15


def recall_table(answers: list[str], truth: list[str]) -> tuple[float, float, dict[str, float]]:
    """Top-1, macro recall over GTZAN's ten, and each genre's recall."""
    a, t = np.array(answers), np.array(truth)
    per = {g: float((a[t == g] == g).mean()) for g in GTZAN}
    return float((a == t).mean()), float(np.mean(list(per.values()))), per


def tag_map_answers(songs: list, columns: list[str]) -> list[str]:
    """The tag map's answer among ``columns`` (tag genres; ``dance`` read as disco) for each song."""
    from genrify.learn.learner import song_probabilities
    from genrify.models.builtin import GENRE_TAGS, tag_scores, tagger_tags

    tags = tagger_tags()
    index = [list(GENRE_TAGS).index(c) for c in columns]
    out = []
    for song in songs:
        scores = tag_scores({n: np.asarray(song.taggrams[n], dtype=np.float64) for n in tags}, tags)
        p = song_probabilities(np.log(np.maximum(scores[:, index], 1e-4)))
        answer = columns[int(np.argmax(p))]
        out.append("disco" if answer == "dance" else answer)
    return out


def head_answers(logits: list[np.ndarray], genres: list[str], columns: list[str]) -> list[str]:
    """Answers among ``columns`` from each song's cross-validated logits (renormalised as ``--genres``)."""
    from genrify.learn.learner import song_probabilities

    index = [genres.index(c) for c in columns]
    return [columns[int(np.argmax(song_probabilities(lg[:, index])))] for lg in logits]


def genre_samples(head) -> tuple[int, int, list[str]] | None:  # noqa: ANN001 - a GenreHead
    """Acceptable first answers of ``head`` on the genre samples (every segment), or ``None`` without them."""
    from genre_map import ACCEPTED, CLIPS

    from genrify.learn.embedcache import EmbedFailure, EmbeddingCache, embed_songs, segment_plan
    from genrify.learn.learner import predict_songs

    clips = [c for c in sorted(CLIPS.glob("*.mp3")) if c.stem in ACCEPTED]
    if not clips:
        return None
    cache = EmbeddingCache(REPO / "bench-output" / "genre_samples_embeddings.sqlite", segment_plan(0))
    found = {r.path: r for r in embed_songs([str(c) for c in clips], cache=cache) if not isinstance(r, EmbedFailure)}
    songs = [found[str(c)] for c in clips if str(c) in found]
    first = [head.genres[i] for i in predict_songs(head, songs).argmax(axis=1)]
    misses = [f"{c.stem} -> {f}" for c, f in zip(clips, first, strict=True) if f not in ACCEPTED[c.stem]]
    return len(clips) - len(misses), len(clips), misses


def main() -> int:
    from train_builtin_head import EXCERPTS, learn, load_excerpts

    from genrify.models.builtin import GENRE_TAGS, HEAD_PATH, GenreHead

    if not EXCERPTS.is_dir():
        print(f"no excerpts at {EXCERPTS}")
        return 1
    started = time.perf_counter()
    songs, labels, _groups = load_excerpts()
    head, report = learn()
    truth = [g for (g,) in labels]
    print(f"{len(songs)} excerpts of {report.artists} artists, {report.folds} artist-grouped folds, "
          f"learned and cross-validated in {report.seconds:.1f} s (all told {time.perf_counter() - started:.0f} s)")

    tags15 = list(GENRE_TAGS)
    tags_ten = [g for g in GTZAN if g in GENRE_TAGS] + ["dance"]  # no reggae tag; dance stands for disco
    new = {"all": recall_table(head_answers(report.answers, head.genres, head.genres), truth),
           "ten": recall_table(head_answers(report.answers, head.genres, list(GTZAN)), truth)}
    base = {"all": recall_table(tag_map_answers(songs, tags15), truth),
            "ten": recall_table(tag_map_answers(songs, tags_ten), truth)}

    def show(title: str, key: str) -> None:
        n, b = new[key], base[key]
        print(f"\n{title}\n  {'':10s} {'head':>6s} {'tags':>6s}")
        print(f"  {'top-1':10s} {n[0]:6.3f} {b[0]:6.3f}   ({n[0] - b[0]:+.3f})")
        print(f"  {'macro rec.':10s} {n[1]:6.3f} {b[1]:6.3f}   ({n[1] - b[1]:+.3f})")
        for g in GTZAN:
            print(f"  {g:10s} {n[2][g]:6.2f} {b[2][g]:6.2f}")

    show("among all of the model's 17 genres (the tag map: its 15, disco as dance)", "all")
    show("asked for GTZAN's ten genres (--genres blues,classical,...; the tag map: its nine, disco as dance)", "ten")

    settings = report.settings
    print(f"\nchosen over all excerpts: C={settings['C']}, prior weight {settings['prior_weight']}, bound "
          f"{settings['cap']} nats, mobility {settings['mobility']}, temperature {settings['temperature']}; each fold "
          "chose: " + "; ".join(f"C={s['C']} w={s['prior_weight']} cap={s['cap']} mobility={s['mobility']}"
                                for s in report.fold_settings))
    unsure = report.unsure
    from genrify.learn.learner import song_probabilities

    margins = []
    for lg in report.answers:
        p = np.sort(song_probabilities(lg)[0])
        margins.append(p[-1] - p[-2])
    near_ties = int(np.sum(np.array(margins) < settings["margin"]))
    print(f"unsure: top probability under {unsure['threshold']:.2f} or top two within {unsure['margin']:.2f} (near tie); "
          f"the folds' own rules flagged {unsure['flagged']:.0%} of the cross-validated answers (right "
          f"{unsure['flagged_top1']:.0%} of the time, the others {unsure['kept_top1']:.0%}); "
          f"{near_ties} answers are near ties under the final margin")

    held = report.held_out
    if held is not None:
        print("genres left out of training (nested, each fold's head without the genre, its excerpts of the fold): "
              f"own genre kept {held['kept']:.3f} (tags alone {held['tags_kept']:.3f}); "
              + ", ".join(f"{g} {e['kept']:.2f} ({e['tags_kept']:.2f})" for g, e in held["genres"].items()))
    shipped = GenreHead.load(HEAD_PATH)
    same = shipped.genres == head.genres and shipped.info.get("report", {}).get("settings") == report.settings
    print(f"the packaged head {'is' if same else 'is NOT'} this learner's (settings {shipped.info.get('report', {}).get('settings')})")
    samples = genre_samples(shipped)
    if samples is not None:
        print(f"\nout of domain, real/genre-samples (first answer acceptable, every segment): {samples[0]}/{samples[1]}"
              f"; misses: {', '.join(samples[2]) or 'none'}")

    checks = [
        ("all genres: top-1 gain >= 0.08", new["all"][0] - base["all"][0] >= GAIN),
        ("all genres: macro recall gain >= 0.08", new["all"][1] - base["all"][1] >= GAIN),
        ("GTZAN's ten: top-1 gain >= 0.08", new["ten"][0] - base["ten"][0] >= GAIN),
        ("GTZAN's ten: macro recall gain >= 0.08", new["ten"][1] - base["ten"][1] >= GAIN),
        ("no GTZAN genre has recall 0 (all genres and ten)", min(min(new[k][2].values()) for k in new) > 0),
        ("a near-tie margin chosen by cross-validation flags near ties", settings["margin"] > 0),
    ]
    if samples is not None:
        checks.append((f"genre samples: at least {GENRE_SAMPLES_TARGET} of {samples[1]} acceptable first answers",
                       samples[0] >= GENRE_SAMPLES_TARGET))
    print("\ntargets")
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    summary = {
        "excerpts": len(songs), "artists": report.artists, "folds": report.folds, "settings": settings,
        "fold_settings": report.fold_settings, "unsure": unsure, "near_ties": near_ties, "held_out": held,
        "head": {k: {"top1": v[0], "macro_recall": v[1], "recall": v[2]} for k, v in new.items()},
        "tag_map": {k: {"top1": v[0], "macro_recall": v[1], "recall": v[2]} for k, v in base.items()},
        "genre_samples": None if samples is None else {"acceptable": samples[0], "clips": samples[1], "misses": samples[2]},
        "targets": {name: ok for name, ok in checks}, "packaged_head_is_this": same,
    }
    out = REPO / "bench-output" / "builtin_accuracy.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
