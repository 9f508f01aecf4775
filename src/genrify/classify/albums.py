"""Album mode: group tracks into albums and give every track of an album the album's genre.

A model judges each song alone, and on a whole album it makes a few mistakes that a listener would
not: one track of a rock album heard as metal, an intro heard as classical. Taggers are asked
again and again for "the same genre for every track of an album". This module:

1. groups tracks into albums (:func:`group_albums`): by the album and album-artist tags where a
   track has them, else by its folder;
2. pools the tracks' probabilities into the album's (:func:`pool_album`);
3. hands every track its album's answer (:func:`album_answers`), and ranks the genres to write for
   a track (:func:`track_ranking`): the album's ranking, optionally with the track's own genre
   added where the track alone is sure of a different one.

The pooling rule was chosen by measurement (``benchmarks/album_mode.py``: synthetic albums with
outliers, classified by a model trained on other synthetic songs; 3000 random albums of 2 to 10 of
111 classified tracks): the arithmetic mean of the tracks' probabilities, 0.864 of the tracks right,
against 0.855 for the geometric mean (mean of log-probabilities; -0.0095 +- 0.0057, paired) and
0.859 for the mean weighted by duration (-0.0055 +- 0.0042); on the 20 album folders themselves the
mean and the duration weighting named 19 albums right, the geometric mean 18. The geometric mean
lets one track that is sure of another genre veto the album's (a probability near 0 dominates a
mean of logs); weighting by duration gives a long track's mistakes more say, and a song's length
says little about how right its answer is.

Nothing here reads audio or writes tags; :func:`group_albums` reads only the album tags.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from genrify.classify.predict import Prediction, RankedGenres
from genrify.collection import tags
from genrify.core.numeric import softmax
from genrify.errors import ParameterError

__all__ = [
    "DEFAULT_POOLING",
    "POOLING_RULES",
    "Album",
    "AlbumAnswer",
    "album_answers",
    "group_albums",
    "pool_album",
    "track_choice",
    "track_ranking",
]

#: The smallest probability the geometric mean takes the log of. Softmax outputs are never 0, but
#: answers rebuilt from the results cache are rounded to 6 places and can be; without a floor a
#: single 0 would make that genre impossible for the whole album.
GEOMETRIC_FLOOR = 1e-6


@dataclass(frozen=True)
class Album:
    """Tracks that belong together.

    Attributes
    ----------
    key
        What identifies the album: ``("tags", artist, album)`` from the tags (compared casefolded,
        with runs of whitespace as one space), ``("tags", "", album, folder)`` for an album tag
        without any artist (a name like "Greatest Hits" alone must not join folders), or
        ``("folder", folder)`` for tracks without an album tag.
    tracks
        The tracks' paths, in the order they were given.
    name
        A readable name for messages: "Artist - Album", "Album", or the folder as given.
    """

    key: tuple[str, ...]
    tracks: tuple[str, ...]
    name: str = field(default="", compare=False)


def _norm(text: str) -> str:
    # Tags of one album disagree in case and spacing more often than in anything else
    # ("The Wall" / "the wall ", "AC/DC" / "AC/DC "), so the key ignores both.
    return " ".join(text.split()).casefold()


def group_albums(paths: Sequence[str | os.PathLike[str]]) -> list[Album]:
    """Group tracks into albums: by album and album-artist tags where present, else by folder.

    Parameters
    ----------
    paths
        Audio files. Their tags are read with :func:`genrify.collection.tags.read_album`, which never
        raises: an unreadable file counts as untagged.

    Returns
    -------
    list of Album
        In the order of each album's first track. A folder holding several tagged albums splits
        into them; a tagged album spread over several folders (CD1/, CD2/) is one album when its
        artist is known; the tracks of a folder without an album tag form one album together
        (they never join a tagged album of the same folder: a "Downloads" folder with one tagged
        album and loose songs is common). A path given twice counts once.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    names: dict[tuple[str, ...], str] = {}
    for raw in paths:
        path = os.fspath(raw)
        folder = os.path.dirname(os.path.abspath(path))
        artist, album = tags.read_album(path)
        artist = (artist or "").strip()
        album = (album or "").strip()
        key: tuple[str, ...]
        if album and artist:
            key, name = ("tags", _norm(artist), _norm(album)), f"{artist} - {album}"
        elif album:
            key, name = ("tags", "", _norm(album), folder), album
        else:
            key, name = ("folder", folder), os.path.dirname(path) or "."
        tracks = groups.setdefault(key, [])
        names.setdefault(key, name)
        if path not in tracks:
            tracks.append(path)
    return [Album(key=key, tracks=tuple(tracks), name=names[key]) for key, tracks in groups.items()]


@dataclass
class AlbumAnswer(RankedGenres):
    """An album's genres: its tracks' probabilities pooled (``genre``, ``confidence`` and ``top``
    as a song's :class:`~genrify.classify.predict.Prediction` has them).

    Attributes
    ----------
    album
        The album.
    genres
        The model's genres, in its output order.
    probabilities
        The pooled probability of each genre (sums to 1).
    tracks
        How many of the album's tracks were pooled (tracks that failed to classify are not).
    confidence_threshold
        The model's threshold below which an answer is flagged as unsure (as
        :attr:`genrify.classify.predict.Prediction.confidence_threshold`).
    asked_share
        With a model asked for some of its genres: the mean of the tracks'
        :attr:`~genrify.classify.predict.Prediction.asked_share`, else ``None``.
    """

    album: Album
    genres: list[str]
    probabilities: np.ndarray
    tracks: int = 0
    confidence_threshold: float = 0.5
    asked_share: float | None = None

    @property
    def low_confidence(self) -> bool:
        """True where the pooled answer is below the model's threshold (the tracks disagree, or
        each is unsure), or the album is most likely of none of the genres asked for (as a song's
        :attr:`~genrify.classify.predict.Prediction.other_genre`). NaN counts as unsure, as in
        :class:`~genrify.classify.predict.Prediction`."""
        from genrify.classify.predict import ASKED_SHARE_MIN

        other = self.asked_share is not None and not self.asked_share >= ASKED_SHARE_MIN
        return other or not self.confidence >= self.confidence_threshold


def _mean(probs: np.ndarray, durations: np.ndarray) -> np.ndarray:
    return probs.mean(axis=0)


def _geometric(probs: np.ndarray, durations: np.ndarray) -> np.ndarray:
    logs = np.log(np.maximum(probs, GEOMETRIC_FLOOR))
    # A softmax of the mean log (it subtracts the maximum): long albums of sure tracks would otherwise underflow.
    return softmax(logs.mean(axis=0))


def _duration(probs: np.ndarray, durations: np.ndarray) -> np.ndarray:
    weights = np.where(np.isfinite(durations) & (durations > 0), durations, 0.0)
    if weights.sum() <= 0:  # no usable duration at all: every track counts the same
        return probs.mean(axis=0)
    return (weights[:, None] * probs).sum(axis=0) / weights.sum()


#: Each pooling rule :func:`pool_album` knows, by name: ``mean`` (arithmetic mean of the tracks'
#: probabilities), ``geometric`` (mean of log-probabilities, renormalised) and ``duration`` (mean
#: weighted by each track's length).
POOLING_RULES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean": _mean,
    "geometric": _geometric,
    "duration": _duration,
}
#: The rule album mode uses (chosen by ``benchmarks/album_mode.py``, see the module docstring).
DEFAULT_POOLING = "mean"


def pool_album(predictions: Sequence[Prediction], *, rule: str = DEFAULT_POOLING) -> np.ndarray:
    """Pool the answers of an album's tracks into the album's probabilities.

    Parameters
    ----------
    predictions
        The album's tracks' answers, all from one model (same genres in the same order).
    rule
        One of :data:`POOLING_RULES`; the default is the one measured best.

    Returns
    -------
    numpy.ndarray
        One probability per genre, in the model's order, summing to 1.

    Raises
    ------
    ParameterError
        No predictions, predictions from different models, or an unknown rule.
    """
    if rule not in POOLING_RULES:
        raise ParameterError(f"unknown pooling rule {rule!r}; expected one of {', '.join(POOLING_RULES)}")
    if not predictions:
        raise ParameterError("an album needs at least one classified track to pool")
    genres = list(predictions[0].genres)
    for p in predictions[1:]:
        if list(p.genres) != genres:
            raise ParameterError(f"{p.path or 'a track'}: its genres differ from the album's first track's "
                                 "(the tracks of one album must be classified by one model)")
    probs = np.stack([np.asarray(p.probabilities, dtype=np.float64) for p in predictions])
    durations = np.array([p.duration for p in predictions], dtype=np.float64)
    pooled = POOLING_RULES[rule](probs, durations)
    return pooled / pooled.sum()


def album_answers(
    predictions: Sequence[Prediction], albums: Sequence[Album], *, rule: str = DEFAULT_POOLING
) -> dict[str, AlbumAnswer]:
    """Each track's album answer.

    Parameters
    ----------
    predictions
        The tracks' answers; each is matched to an album track by its ``path`` (as given to
        :func:`group_albums`).
    albums
        From :func:`group_albums`.
    rule
        The pooling rule (see :func:`pool_album`).

    Returns
    -------
    dict
        Path -> its album's answer (one :class:`AlbumAnswer` object shared by the album's tracks).
        A track without a prediction (it failed) is left out and does not count in the pooling; so
        is a prediction whose path is in no album, and an album none of whose tracks was
        classified.

    Raises
    ------
    ParameterError
        As :func:`pool_album`.
    """
    by_path = {p.path: p for p in predictions if p.path is not None}
    out: dict[str, AlbumAnswer] = {}
    for album in albums:
        present = [by_path[t] for t in album.tracks if t in by_path]
        if not present:
            continue
        shares = [p.asked_share for p in present]
        asked_share = float(np.mean(shares)) if all(x is not None for x in shares) else None  # type: ignore[arg-type]
        answer = AlbumAnswer(album=album, genres=list(present[0].genres), probabilities=pool_album(present, rule=rule),
                             tracks=len(present), confidence_threshold=present[0].confidence_threshold,
                             asked_share=asked_share)
        for p in present:
            out[p.path] = answer  # type: ignore[index]  # present holds only predictions with a path
    return out


def track_ranking(
    prediction: Prediction, answer: AlbumAnswer, *, own_genre_above: float | None = None
) -> list[tuple[str, float]]:
    """The genres to write for one track in album mode, most important first.

    Parameters
    ----------
    prediction
        The track's own answer.
    answer
        Its album's answer.
    own_genre_above
        ``None``: the album's ranking only (every track of an album gets the same genres). A
        probability: where the track's own top genre differs from the album's and the track gives
        it more than this, that genre is placed second, right after the album's genre, with the
        track's own probability (the album ranking's other genres follow; it is not repeated).
        An album of rock with one sure reggae track then tags that track "Rock; Reggae".

    Returns
    -------
    list of (str, float)
        Every genre once. Hand it to :meth:`genrify.collection.tagpolicy.TagPolicy.genres_for`; note that
        with a policy ``count`` of 1 only the album genre is written, so the own genre needs a
        count of at least 2.

    Raises
    ------
    ParameterError
        ``own_genre_above`` outside [0, 1], or a prediction from another model than the answer's.
    """
    if list(prediction.genres) != list(answer.genres):
        raise ParameterError(f"{prediction.path or 'a track'}: its genres differ from its album's answer's")
    ranking = answer.top(len(answer.genres))
    if own_genre_above is None:
        return ranking
    # ``not 0 <= x <= 1`` also refuses NaN.
    number = isinstance(own_genre_above, (int, float)) and not isinstance(own_genre_above, bool)
    if not number or not 0.0 <= own_genre_above <= 1.0:
        raise ParameterError(f"own_genre_above must be a probability between 0 and 1, got {own_genre_above!r}")
    own, own_probability = prediction.genre, prediction.confidence
    if own == ranking[0][0] or not own_probability > own_genre_above:
        return ranking
    return [ranking[0], (own, own_probability), *(item for item in ranking[1:] if item[0] != own)]


def track_choice(
    prediction: Prediction, answer: AlbumAnswer | None, *, own_genre_above: float | None = None
) -> tuple[list[tuple[str, float]], bool]:
    """What a tag writer weighs for one track: its ranking, and whether that answer is unsure.

    In album mode (``answer`` given) both are the album's: a track the model is unsure of, on an
    album it is sure of, gets the album's genre (that is what album mode is for), and the tracks of
    an album the model is unsure of are all left alone together. Without an album, the track's own.
    A track that is not music (:attr:`~genrify.classify.predict.Prediction.not_music`) gets an empty
    ranking, so no genre is ever written for it, whatever its album or ``--tag-unsure`` say.
    The CLI's tag writer and the beets plugin both decide through this.

    Parameters
    ----------
    prediction
        The track's own answer.
    answer
        Its album's answer (:func:`album_answers`), or ``None`` outside album mode.
    own_genre_above
        See :func:`track_ranking`.

    Returns
    -------
    (ranking, unsure)
        ``(genre, probability)`` pairs, most important first, for
        :meth:`genrify.collection.tagpolicy.TagPolicy.genres_for`, and its ``unsure`` argument.
    """
    if prediction.not_music:
        return [], True
    if answer is None:
        return prediction.top(len(prediction.genres)), prediction.low_confidence
    return track_ranking(prediction, answer, own_genre_above=own_genre_above), answer.low_confidence
