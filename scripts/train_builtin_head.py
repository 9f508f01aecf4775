"""Make the built-in model's genre head, ``src/genrify/models/pretrained/genre_head.safetensors``.

Needs the GTZAN excerpts at ``../shared/data/gtzan-excerpts`` (see ``NOTICE``)::

    .venv/bin/python scripts/train_builtin_head.py [--out PATH]

One call of genrify's learner (:func:`genrify.learn.learner.learn_head`, what ``genrify learn`` runs on a
library): the 294 excerpts, their folders as labels (GTZAN's ``hiphop`` is the built-in
``hip-hop``), the artists ``SOURCES.tsv`` names as groups (an excerpt of unknown artist is its own),
five artist-grouped folds, settings chosen by nested cross-validation (with the learner's
leave-genres-out check: GTZAN's genres the tags know, each left out of training in turn, should keep
their own answer). The head answers over all 17 built-in genres: GTZAN's ten learned, the seven
others from their tags alone, keeping the probability the tags give them but for the share
``mobility`` the cross-validation allows. Its report (stored in
the file, printed here) compares it with the tags alone on the same excerpts; the packaged head
cannot be the comparison, as it learned from them. ``benchmarks/builtin_accuracy.py`` measures it
against the accuracy targets.

The excerpts' embeddings are cached in ``bench-output/gtzan_embeddings.sqlite`` (an embedding cache
of :mod:`genrify.learn.embedcache`).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXCERPTS = REPO.parent / "shared" / "data" / "gtzan-excerpts"
CACHE = REPO / "bench-output" / "gtzan_embeddings.sqlite"
SEED = 0
FOLDS = 5


def load_excerpts(excerpts: Path = EXCERPTS, cache: Path = CACHE) -> tuple[list, list[tuple[str, ...]], list[str]]:
    """Every excerpt's embedding, genres and artist group, in ``SOURCES.tsv``'s order.

    Raises
    ------
    SystemExit
        An excerpt cannot be embedded.
    """
    from genrify.learn.embedcache import EmbedFailure, EmbeddingCache, embed_songs
    from genrify.models.builtin import builtin_genre

    rows = list(csv.DictReader((excerpts / "SOURCES.tsv").read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    paths = [str(excerpts / r["file"]) for r in rows]
    cache.parent.mkdir(exist_ok=True)
    found = {}
    for result in embed_songs(paths, cache=EmbeddingCache(cache)):
        if isinstance(result, EmbedFailure):
            raise SystemExit(f"{result.path}: {result.reason}")
        found[result.path] = result
    labels = []
    for r in rows:
        genre = builtin_genre(r["file"].split("/")[0])
        if genre is None:
            raise SystemExit(f"{r['file']}: its folder names no built-in genre")
        labels.append((genre,))
    # SOURCES.tsv leaves 4 artists unknown: each such excerpt is its own artist.
    groups = [r["artist"].strip() or f"unknown artist: {r['file']}" for r in rows]
    return [found[p] for p in paths], labels, groups


def learn(excerpts: Path = EXCERPTS, cache: Path = CACHE, progress=None):  # noqa: ANN001, ANN201 - a script
    """The packaged head and its report, as :func:`genrify.learn.learner.learn_head` makes them here."""
    from genrify.learn.learner import learn_head
    from genrify.models.builtin import GENRES

    songs, labels, groups = load_excerpts(excerpts, cache)
    info = {
        "trained_on": f"{len(songs)} GTZAN excerpts of 2-3 s (Tzanetakis and Cook 2002; clips of the fault-filtered "
                      "train and valid lists, see NOTICE), artists from SOURCES.tsv",
        "made_by": "scripts/train_builtin_head.py (genrify.learn.learner.learn_head)",
    }
    return learn_head(songs, labels, groups, folds=FOLDS, seed=SEED, genres=list(GENRES), builtin=False, info=info,
                      progress=progress)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "src" / "genrify" / "models" / "pretrained" / "genre_head.safetensors")
    args = parser.parse_args()
    if not EXCERPTS.is_dir():
        print(f"no excerpts at {EXCERPTS}")
        return 1
    head, report = learn(progress=print)
    print("\n".join(report.lines()))
    head.save(args.out)
    print(f"wrote the head ({len(head.genres)} genres, {len(head.learned)} learned) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
