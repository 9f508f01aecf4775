"""Which songs to tag next: active learning for ``genrify learn --suggest N``.

After ``genrify learn``, the songs without a genre are the ones a person could tag next. Some would
teach the model far more than others: a song the model already names confidently adds little, and
twenty versions of the same uncertain sound teach what one of them teaches. :func:`suggest` picks
``n`` songs that are both **uncertain** and **unlike each other**:

1. Each candidate is answered by the learned head (:func:`genrify.learn.learner.predict_songs`, from the
   cached embeddings: no decoding, no taggers). Its *margin* is the gap between its two most
   probable genres (margin sampling): a small margin is a song on the boundary between two genres,
   where a label moves the boundary most.
2. The candidates' song-mean embeddings (``MSD_musicnn``'s 200 dimensions, centred) are
   clustered into ``n`` clusters (scikit-learn's :class:`~sklearn.cluster.KMeans`), each candidate
   weighing ``1 - margin``, so the clusters gather where the uncertain songs are.
3. From each cluster the song of smallest margin is suggested; the suggestions come most uncertain
   first.

So the ``n`` suggestions spread over the kinds of music the model is unsure of, instead of being
the ``n`` most uncertain near-duplicates (one album the model cannot place). Clusters may form among
songs the model is already sure of (their weight is small, but k-means still places ``n`` centres);
their least certain song is then suggested, which spreads the labels over the library too.

``benchmarks/learn_library.py`` compares the schemes (:data:`METHODS`) on GTZAN excerpts: from 3
tagged songs per genre, 20 songs added, 40 seeds, on artists that the reported figure does not use,
the mean gains in top-1 accuracy were: margin alone +0.069, plain clusters +0.065, weighted clusters
+0.064, cluster centres +0.056, the most uncertain clustered +0.048, random songs +0.043. On the
other artists (the reported figure, 40 seeds) the suggested songs gained +0.097 and random ones
+0.076: 1.28 times as much, 0.021 +- 0.011 more seed by seed (``benchmarks/RESULTS.md``).

>>> from genrify.learn.suggest import suggest
>>> for s in suggest(head, untagged_embeddings, 20):              # doctest: +SKIP
...     print(s.path, s.guess, f"{s.probability:.2f}")
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrify.collection.library import display_path
from genrify.collection.organize import PLAYLIST_MARK, is_genrify_playlist, playlist_entry
from genrify.core.fsutil import write_text_atomic
from genrify.defaults import DEFAULT_MAX_SEGMENTS
from genrify.errors import ParameterError, UsageError

if TYPE_CHECKING:
    from genrify.collection.records import RecordFields
    from genrify.learn.embedcache import EmbeddingCache, EmbedFailure, SongEmbedding
    from genrify.models.builtin import GenreHead

#: The selection schemes :func:`suggest` knows (the benchmark compares them): ``"weighted-clusters"``
#: (the default; see the module's text); ``"clusters"`` (the same, every candidate weighing the
#: same); ``"uncertain-clusters"`` (only the :data:`POOL` x ``n`` most uncertain candidates are
#: clustered); ``"centroids"`` (weighted clusters, each giving its song nearest its centre: the most
#: typical rather than the most uncertain); ``"margin"`` (the ``n`` smallest margins, no spreading:
#: plain margin sampling); ``"random"`` (``n`` candidates drawn at random).
METHODS = ("weighted-clusters", "clusters", "uncertain-clusters", "centroids", "margin", "random")
#: The default scheme: the best of :data:`METHODS` on the benchmark's development artists.
DEFAULT_METHOD = "weighted-clusters"
#: ``"uncertain-clusters"`` clusters only the ``POOL * n`` most uncertain candidates.
POOL = 4
# Restarts of k-means: a few cost little on a few thousand songs and avoid one bad start.
_N_INIT = 3


@dataclass(frozen=True)
class Suggestion:
    """A song whose genre would teach the model much.

    Attributes
    ----------
    path
        The file (as given in its :class:`~genrify.learn.embedcache.SongEmbedding`).
    guess
        The model's current answer: its most probable genre.
    probability
        The answer's probability.
    margin
        Its lead over the second most probable genre (small: the model hesitates between two).
    """

    path: str
    guess: str
    probability: float
    margin: float


def check_count(n: int) -> None:
    """Refuse a number of songs to suggest below 1 (a :class:`~genrify.errors.ParameterError` naming
    the setting, ``suggest``)."""
    if n < 1:
        raise ParameterError(f"the number of songs to suggest must be at least 1, not {n}", field="suggest",
                             problem=f"must be at least 1, not {n}")


def margins(prob: np.ndarray) -> np.ndarray:
    """Each row's gap between its two largest probabilities ``(songs,)``; a row of one genre has
    margin 1 (nothing to hesitate between)."""
    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim != 2:
        raise ParameterError(f"probabilities must be (songs, genres), not of shape {prob.shape}")
    if prob.shape[1] < 2:
        return np.ones(prob.shape[0])
    top = np.sort(prob, axis=1)
    return top[:, -1] - top[:, -2]


def song_means(songs: Sequence[SongEmbedding]) -> np.ndarray:
    """Each song's mean embedding over its segments, centred and scaled to unit mean square over
    the songs ``(songs, 200)``: what the clusters are made of.

    The dimensions keep their own scales: standardising each would make the many dimensions in
    which songs hardly differ weigh as much as those in which they do, and the clusters would
    follow noise.
    """
    x = np.stack([np.asarray(s.embedding, dtype=np.float64).mean(axis=0) for s in songs])
    x -= x.mean(axis=0)
    scale = float(np.sqrt((x**2).sum(axis=1).mean()))
    return x / scale if scale > 1e-12 else x


def choose(prob: np.ndarray, features: np.ndarray, n: int, *, method: str = DEFAULT_METHOD, seed: int = 0) -> list[int]:
    """The indices of the ``n`` candidates to suggest, most uncertain first (see the module's text).

    Parameters
    ----------
    prob
        The model's answers ``(candidates, genres)``.
    features
        What "alike" means ``(candidates, dim)`` (:func:`song_means`).
    n
        How many; all candidates where there are no more than ``n``.
    method
        One of :data:`METHODS`.
    seed
        k-means' starts (and the draw, for ``"random"``).

    Raises
    ------
    ParameterError
        ``n`` below 1, an unknown method, or shapes that do not match.
    """
    check_count(n)
    if method not in METHODS:
        raise ParameterError(f"unknown suggestion method {method!r}; choose among {', '.join(METHODS)}")
    if len(prob) != len(features):
        raise ParameterError(f"{len(prob)} answers for {len(features)} songs")
    margin = margins(prob)
    # Ties (duplicates) by position, so a run is repeatable.
    order = np.lexsort((np.arange(len(margin)), margin))
    if len(margin) <= n:
        return [int(i) for i in order]
    if method == "margin":
        return [int(i) for i in order[:n]]
    if method == "random":
        drawn = set(np.random.default_rng(seed).choice(len(margin), size=n, replace=False).tolist())
        return [int(i) for i in order if int(i) in drawn]

    from sklearn.cluster import KMeans

    # Candidates: all, or (uncertain-clusters) only the most uncertain, so that no cluster forms
    # among songs the model is sure of; clusters then spread the picks over the uncertain kinds.
    pool = order[: POOL * n] if method == "uncertain-clusters" else order
    weight = np.clip(1.0 - margin[pool], 1e-3, None) if method != "clusters" else None
    with warnings.catch_warnings():
        # Fewer distinct songs than clusters (copies of one file): the rest is filled below.
        warnings.simplefilter("ignore")
        x = np.asarray(features, dtype=np.float64)[pool]
        kmeans = KMeans(n_clusters=n, n_init=_N_INIT, random_state=seed).fit(x, sample_weight=weight)
        labels = kmeans.labels_
    if method == "centroids":  # each cluster's most typical song: the nearest its (uncertainty-weighted) centre
        nearest = np.argsort(((x - kmeans.cluster_centers_[labels]) ** 2).sum(axis=1), kind="stable")
        pool, labels = pool[nearest], labels[nearest]
    picked: list[int] = []
    taken: set[int] = set()
    for i, label in zip(pool, labels, strict=True):  # the first of each cluster: its smallest margin
        if int(label) not in taken:
            taken.add(int(label))
            picked.append(int(i))
    if len(picked) < n:  # empty clusters: the most uncertain songs not yet chosen
        chosen = set(picked)
        picked.extend(int(i) for i in order if int(i) not in chosen)
    return sorted(picked[:n], key=lambda i: (margin[i], i))


def suggest(head: GenreHead, untagged: Sequence[SongEmbedding], n: int, *, seed: int = 0,
            method: str = DEFAULT_METHOD) -> list[Suggestion]:
    """The ``n`` songs without a genre whose genres would teach ``head`` most, most uncertain first.

    Parameters
    ----------
    head
        The learned head (``genrify learn``'s model file, :meth:`GenreHead.load`).
    untagged
        The candidates' embeddings (:func:`genrify.learn.embedcache.embed_songs`).
    n
        How many songs to suggest (all candidates where there are no more).
    seed
        k-means' starts: the same seed, the same suggestions.
    method
        The scheme (:data:`METHODS`); the default is the one measured best.

    Returns
    -------
    list[Suggestion]
        At most ``n``, smallest margin first; empty without candidates.

    Raises
    ------
    ParameterError
        ``n`` below 1 or an unknown method.
    """
    check_count(n)
    if not untagged:
        return []
    from genrify.learn.learner import predict_songs

    return _picks(head, untagged, predict_songs(head, untagged), n, seed=seed, method=method)


def _picks(head: GenreHead, untagged: Sequence[SongEmbedding], prob: np.ndarray, n: int, *, seed: int = 0,
           method: str = DEFAULT_METHOD) -> list[Suggestion]:
    """:func:`suggest` with the candidates' answers ``prob`` already made."""
    margin = margins(prob)
    out = []
    for i in choose(prob, song_means(untagged), n, method=method, seed=seed):
        best = int(np.argmax(prob[i]))
        out.append(Suggestion(path=untagged[i].path, guess=head.genres[best], probability=float(prob[i, best]),
                              margin=float(margin[i])))
    return out


@dataclass(frozen=True)
class Suggestions:
    """What :func:`suggest_files` found among the songs without a genre.

    Attributes
    ----------
    picks
        The songs to tag next (:func:`suggest`).
    candidates
        The songs without a genre that were answered (those that could be decoded).
    expected_accuracy
        The share of the candidates the model is expected to name right, were it to tag them now:
        the mean of its answers' top probabilities (:func:`genrify.classify.predict.expected_accuracy`;
        a learned head's probabilities are calibrated by its cross-check). ``None`` without candidates.
    failed
        The candidates that could not be decoded (left out).
    not_music
        The candidates flagged not music (speech, silence, a tone...), as ``genrify classify``
        flags them: neither suggested nor in :attr:`candidates` and the figure, since classify
        leaves them untagged and a genre for them teaches nothing about music.
    other_genre
        Of the candidates, those the built-in model finds of none of the head's genres (classify
        flags them ``other genre`` and leaves them untagged): out of :attr:`expected_accuracy`,
        which is of the songs it would tag.
    """

    picks: list[Suggestion]
    candidates: int
    expected_accuracy: float | None
    failed: list[EmbedFailure] = field(default_factory=list)
    not_music: int = 0
    other_genre: int = 0

    def expectation(self, what: str = "songs") -> str:
        """:attr:`expected_accuracy` in words, e.g. ``"of the 90 readable songs without a genre, the
        model would tag about 70% right now"``, with ``" (2 files not music left out)"`` after "genre"
        where there are such, and the songs of other genres said apart; empty without candidates."""
        left = f" ({self.not_music} file{'s' if self.not_music != 1 else ''} not music left out)" if self.not_music else ""
        if self.other_genre and self.other_genre == self.candidates:
            return (f"of the {self.candidates} readable {what} without a genre{left}, the built-in model finds every "
                    "one of other genres: the model would leave them untagged")
        if self.expected_accuracy is None:
            return ""
        if self.other_genre:
            return (f"of the {self.candidates} readable {what} without a genre{left}, {self.other_genre} are of other "
                    f"genres by the built-in model's check (left untagged); the model would tag the other "
                    f"{self.candidates - self.other_genre} about {self.expected_accuracy:.0%} right now")
        return (f"of the {self.candidates} readable {what} without a genre{left}, the model would tag about "
                f"{self.expected_accuracy:.0%} right now")


# --- from files, and into a playlist ----------------------------------------------------------------

#: The mark line (second line) of a suggestions playlist: :data:`genrify.collection.organize.PLAYLIST_MARK`
#: makes it genrify's (:func:`genrify.collection.organize.is_genrify_playlist`), so the next ``--suggest`` may
#: replace it; the rest tells a person how to keep it.
PLAYLIST_MARK_LINE = (f"{PLAYLIST_MARK}written by genrify learn --suggest and rewritten by each run; "
                      "delete this line to keep the list as yours")


def suggest_files(
    head: GenreHead,
    paths: Sequence[str],
    n: int,
    *,
    cache: EmbeddingCache | None = None,
    jobs: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
) -> Suggestions:
    """:func:`suggest` among audio files: each is embedded (from ``cache`` where it is there already:
    ``genrify learn`` embeds only the labelled songs, so the untagged ones are embedded here once).

    Parameters
    ----------
    head
        The learned head.
    paths
        The candidates (the songs without a genre, :attr:`genrify.learn.labels.LibraryLabels.untagged`).
    n
        How many to suggest.
    cache, jobs, progress, max_segments
        As :func:`genrify.learn.embedcache.embed_songs` takes them.
    seed
        k-means' starts.

    Returns
    -------
    Suggestions
        The picks, how many songs were answered, the share of them expected right, and the files
        that could not be decoded (left out).

    Raises
    ------
    ParameterError
        ``n`` below 1.
    """
    from genrify.classify.predict import ASKED_SHARE_MIN, expected_accuracy
    from genrify.learn.embedcache import EmbedFailure, embed_songs
    from genrify.learn.learner import other_genre_shares, predict_songs

    check_count(n)
    found: dict[str, SongEmbedding] = {}
    failed: list[EmbedFailure] = []
    for result in embed_songs(paths, cache=cache, jobs=jobs, progress=progress, max_segments=max_segments):
        if isinstance(result, EmbedFailure):
            failed.append(result)
        else:
            found[result.path] = result
    # The order given, not the order decoded: the same library gives the same suggestions.
    readable = [found[p] for p in map(str, paths) if p in found]
    songs = [s for s in readable if s.not_music is None]
    not_music = len(readable) - len(songs)
    if not songs:
        return Suggestions([], 0, None, failed, not_music)
    prob = predict_songs(head, songs)
    # A head learned from too few artists was not calibrated: its confidence promises no share right.
    report = (head.info or {}).get("report") if isinstance(head.info, dict) else None
    calibrated = not (isinstance(report, dict) and report.get("calibrated") is False)
    # Songs the built-in model finds of none of its genres are left untagged, as classify flags them.
    shares = other_genre_shares(head, songs)
    other = shares < ASKED_SHARE_MIN if shares is not None else np.zeros(len(songs), dtype=bool)
    expected = expected_accuracy(prob.max(axis=1)[~other]) if calibrated else None
    return Suggestions(_picks(head, songs, prob, n, seed=seed), len(songs), expected, failed, not_music,
                       other_genre=int(other.sum()))


def suggest_from_model(
    model: str | Path | None,
    paths: Sequence[str],
    n: int,
    *,
    cache: EmbeddingCache | None = None,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
) -> Suggestions:
    """:func:`suggest_files` with the head of a model file (``None``: the built-in model's head).

    Raises
    ------
    UsageError
        ``model`` is a network from ``genrify train``, not a head learned from a library.
    """
    from genrify.models.builtin import GenreHead
    from genrify.models.modelfile import is_head_file

    check_count(n)
    if model is not None and not is_head_file(model):
        raise UsageError(f"--suggest needs a model learned by genrify learn or beet genrify-learn (or the built-in "
                         f"one); {display_path(model)} is a network from `genrify train`")
    head = GenreHead.load() if model is None else GenreHead.load(model)
    return suggest_files(head, paths, n, cache=cache, jobs=jobs, progress=progress, max_segments=max_segments)


def check_playlist(path: str | Path) -> None:
    """Refuse, before any work, a playlist that would replace a file genrify did not write.

    Raises
    ------
    UsageError
        ``path`` exists and is not a playlist genrify wrote (a person's own list, a song, a folder,
        a symbolic link), or its folder does not exist.
    """
    if os.path.lexists(path) and not is_genrify_playlist(path):
        raise UsageError(f"--playlist {display_path(path)}: exists and genrify did not write it; "
                         "choose another name (genrify replaces only its own playlists)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--playlist {display_path(path)}: the folder {display_path(folder)} does not exist")


def playlist_text(suggestions: Sequence[Suggestion], path: str | Path) -> str:
    """An extended M3U playlist of the suggestions, in order, for the playlist file ``path``.

    UTF-8, ``#EXTM3U``, genrify's mark (:data:`PLAYLIST_MARK_LINE`), a ``#PLAYLIST:`` title and one
    ``#EXTINF`` line per song naming the model's guess (what a player shows), each file relative to
    the playlist's folder (absolute on another Windows drive), as ``genrify classify --playlists``
    writes them. A file whose name cannot be a playlist line (a line break in it, not UTF-8) is left out.
    """
    base = os.path.dirname(os.path.abspath(path))
    lines = ["#EXTM3U", PLAYLIST_MARK_LINE, "#PLAYLIST:genrify: songs to tag next"]
    for s in suggestions:
        entry, _ = playlist_entry(s.path, base)
        if entry is None:
            continue
        title = " ".join(f"{Path(s.path).stem} (genrify guesses {s.guess}, {s.probability:.2f})".split())
        lines += [f"#EXTINF:-1,{title}", entry]
    return "\n".join(lines) + "\n"


def write_playlist(path: str | Path, suggestions: Sequence[Suggestion]) -> Path:
    """Write the suggestions as a playlist (:func:`playlist_text`), atomically; only a missing file
    or a playlist genrify wrote is replaced (:func:`check_playlist`, checked again here).

    Raises
    ------
    UsageError
        ``path`` is a file genrify did not write.
    OSError
        It cannot be written; an earlier playlist stays as it was.
    """
    check_playlist(path)
    write_text_atomic(path, playlist_text(suggestions, path))
    return Path(path)


def suggest_records(
    model: str | Path | None,
    records: Iterable[Any],
    fields: RecordFields,
    n: int,
    *,
    cache: bool = True,
    jobs: int | None = None,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
    every: float = 10.0,
) -> tuple[int, Suggestions, list[tuple[Any, Suggestion]]]:
    """:func:`suggest_from_model` on the records of another program's database that no person gave a
    genre (:meth:`~genrify.collection.records.RecordFields.has_genre`: ``Unknown`` or ``Other`` is none;
    the beets plugin's ``--suggest``), with the embedding cache ``genrify learn`` uses, progress
    said as lines (at most every ``every`` seconds) and the files that could not be embedded or are
    missing warned about (default ``say``).

    Parameters
    ----------
    model, n, jobs, max_segments
        As for :func:`suggest_from_model`.
    records, fields
        The records, and how the database keeps a song (:class:`~genrify.collection.records.RecordFields`).
    cache
        Use the embedding cache.
    say, warn, every
        Where progress lines and warnings go.

    Returns
    -------
    tuple[int, Suggestions, list[tuple[Any, Suggestion]]]
        How many records with a file have no genre; what :func:`suggest_from_model` found among them
        (nothing where none is without a genre); its picks with their records.
    """
    from genrify.core.runner import progress_lines
    from genrify.learn.embedcache import open_cache

    check_count(n)
    warn, progress = warn or say, progress_lines(say, every)
    untagged = {path: record for path, record in fields.files(records, warn).items() if not fields.has_genre(record)}
    if not untagged:
        return 0, Suggestions([], 0, None), []
    with open_cache(enabled=cache, max_segments=max_segments, notify=warn) as store:
        found = suggest_from_model(model, list(untagged), n, cache=store, jobs=jobs, max_segments=max_segments,
                                   progress=lambda done, total: progress("embedding", done, total))
    for failure in found.failed:
        warn(f"{failure.path}: {failure.reason}")
    return len(untagged), found, [(untagged[s.path], s) for s in found.picks]
