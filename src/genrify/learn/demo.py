"""What ``genrify demo`` measures: a transfer head cross-validated over every song of a small library.

A demo library is small, and one held-out split of it tests a handful of songs: "4 of 4 right" is
consistent with a true accuracy anywhere from 51 % to 100 % (95 % Wilson interval), and it can sit
right beside a validation figure of 0.71 without either being wrong. So the demo cross-validates:
each genre's songs are dealt into ``K`` folds, and ``K`` heads are trained, head ``k`` tested on
fold ``k``, stopped early on the next fold and trained on the rest. Every song is tested exactly
once, by a head that never heard it, and the closing figure is the count of songs named right out
of all of them, with its 95 % interval (:func:`wilson_interval`).

The folds are ordinary split files (``path<TAB>split``), written beside the demo's other output,
so any of them can be rerun with ``genrify train STORE --split-file FOLD``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrify.errors import ParameterError

if TYPE_CHECKING:
    from genrify.learn.config import TrainConfig
    from genrify.learn.training import EpochStats, TrainResult
    from genrify.store.store import StoredTrack

#: The normal quantile of a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson_interval(right: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``right / n`` (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 and ``n`` right
    (``scipy.stats.binomtest(right, n).proportion_ci(method="wilson")`` gives the same).

    Raises
    ------
    ParameterError
        ``n`` below 1, or ``right`` outside ``0..n``.
    """
    if n < 1 or not 0 <= right <= n:
        raise ParameterError(f"need 0 <= right <= n and n >= 1, not right={right}, n={n}")
    p = right / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def closing_line(right: int, songs: int, *, genres: int, folds: int) -> str:
    """The demo's figure in words: songs named right of all tested, the share, its 95 % interval.

    Percentages are whole; the interval is rounded outwards (never narrower than it is), and a share
    short of all (or above none) never shows as 100% (0%).

    >>> closing_line(37, 40, genres=4, folds=5)
    'test songs: 37/40 named right (92%, 95% interval 80-98%; chance 25%), each by one of 5 heads that never heard it'
    """
    low, high = wilson_interval(right, songs)
    share = right / songs
    shown = min(max(math.floor(share * 100 + 1e-9), 1 if right else 0), 100 if right == songs else 99)
    return (
        f"test songs: {right}/{songs} named right ({shown}%, 95% interval "
        f"{math.floor(low * 100 + 1e-9)}-{math.ceil(high * 100 - 1e-9)}%; chance {round(100 / genres)}%), "
        f"each by one of {folds} heads that never heard it"
    )


def fold_lists(tracks: Sequence[StoredTrack], folds: int, seed: int = 0) -> list[list[StoredTrack]]:
    """Deal each genre's songs, shuffled with ``seed``, into ``folds`` folds (stratified by genre).

    Raises
    ------
    ParameterError
        Fewer than 3 folds (each fold's head needs a test, a validation and a training fold), or a
        genre with fewer songs than folds (a fold without it would test nothing of that genre).
    """
    if folds < 3:
        raise ParameterError(f"cross-validation needs at least 3 folds (test, validation, training), not {folds}")
    by_genre: dict[str, list[StoredTrack]] = defaultdict(list)
    for t in sorted(tracks, key=lambda t: t.path):
        by_genre[t.genre].append(t)
    short = {g: len(ts) for g, ts in sorted(by_genre.items()) if len(ts) < folds}
    if short:
        counts = ", ".join(f"{g} {n}" for g, n in short.items())
        raise ParameterError(f"{folds} folds need at least {folds} songs per genre; too few in {counts}")
    rng = np.random.default_rng(seed)
    dealt: list[list[StoredTrack]] = [[] for _ in range(folds)]
    offset = 0
    for genre in sorted(by_genre):
        songs = by_genre[genre]
        for i, j in enumerate(rng.permutation(len(songs))):
            dealt[(offset + i) % folds].append(songs[j])
        offset += len(songs)  # a genre whose count is no multiple of K starts where the last one stopped
    return dealt


def write_fold_files(tracks: Sequence[StoredTrack], folder: str | Path, folds: int, seed: int = 0) -> list[Path]:
    """One ``path<TAB>split`` file per fold in ``folder``: fold ``k`` tested, fold ``k+1`` validating."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dealt = fold_lists(tracks, folds, seed)
    files = []
    for k in range(folds):
        role = {j: "train" for j in range(folds)} | {k: "test", (k + 1) % folds: "valid"}
        lines = [f"{t.genre}/{Path(t.path).name}\t{role[j]}" for j in range(folds) for t in dealt[j]]
        file = folder / f"fold-{k + 1}.tsv"
        file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(file)
    return files


@dataclass
class CrossValidation:
    """``K`` heads, one per fold, and their pooled test figures."""

    results: list[TrainResult]  #: one per fold, in fold order
    genres: list[str]

    @property
    def folds(self) -> int:
        return len(self.results)

    @property
    def confusion(self) -> np.ndarray:
        """Song counts, rows true genre, columns named: every song once."""
        return np.sum([r.runs[0].evaluation.confusion for r in self.results], axis=0)

    @property
    def songs(self) -> int:
        return int(self.confusion.sum())

    @property
    def right(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def kept(self) -> int:
        """The fold whose head had the lowest validation loss (the one the demo saves)."""
        return min(range(self.folds), key=lambda k: self.results[k].runs[0].best_valid_loss)

    def line(self) -> str:
        return closing_line(self.right, self.songs, genres=len(self.genres), folds=self.folds)

    def summary(self) -> dict[str, Any]:
        """The report's headline figures: the pooled count and interval, and means over folds."""
        from genrify.learn.training import summarize

        low, high = wilson_interval(self.right, self.songs)
        return {
            **summarize([r.runs[0] for r in self.results]),
            "folds": self.folds,
            "songs": self.songs,
            "songs_right": self.right,
            "song_accuracy": self.right / self.songs,
            "song_accuracy_ci95": [low, high],
        }


def cross_validate(
    store: str | Path,
    folder: str | Path,
    config: TrainConfig,
    *,
    folds: int = 5,
    jobs: int | None = None,
    on_fold: Callable[[int, int, Any], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_prepare: Callable[[str, int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> CrossValidation:
    """Train and test one head per fold of a store's songs (fold files go into ``folder``).

    ``on_fold(k, folds, split)`` is called as fold ``k`` (from 0) starts. The embeddings are
    computed once, as the first fold starts, and read from the store by the others.

    Raises
    ------
    ParameterError, StoreError, SplitError, TrainingError
        As :func:`fold_lists` and :func:`genrify.learn.training.train`.
    """
    from genrify.learn.splits import check_tracks
    from genrify.learn.training import train
    from genrify.store.store import FeatureStore

    with FeatureStore.open(store) as opened:
        tracks = opened.tracks()
    genres = check_tracks(tracks, str(store))
    files = write_fold_files(tracks, folder, folds, seed=config.seed)
    results = []
    for k, file in enumerate(files):
        on_run = (lambda _r, split, k=k: on_fold(k, folds, split)) if on_fold else None
        results.append(train(store, config, runs=1, split_file=file, jobs=jobs, on_run=on_run, on_epoch=on_epoch,
                             on_prepare=on_prepare, notify=notify))
    return CrossValidation(results=results, genres=list(genres))
