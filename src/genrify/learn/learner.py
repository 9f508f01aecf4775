"""Learn a genre head from labelled songs, with settings and figures by artist-grouped cross-validation.

``genrify learn`` (and ``scripts/train_builtin_head.py``, which makes the packaged head) call
:func:`learn_head` with every labelled song's tagger outputs (:class:`genrify.learn.embedcache.SongEmbedding`),
its genres and its artist. What comes back is a :class:`~genrify.models.builtin.GenreHead` over the
songs' genres, which the built-in model runs in place of its packaged head, and a
:class:`LearnReport` of how well it does on songs of artists it never heard.

The model
---------
One L2-regularised logistic regression per genre ("this genre or not": one-vs-rest, so a song with
several genres is a positive for each of them) on the standardised tagger outputs of each segment,
every song weighing the same whatever its length. Where a genre is one the taggers' tags know
(through :data:`~genrify.models.builtin.ALIASES` and the genre map), the tags' score for it is the
prior and the regression's log likelihood ratio, bounded, moves it
(:class:`~genrify.models.builtin.GenreHead` has the formula); other genres start from an even share.
The song's answer is the mean of its segments' softmax, as for every genrify model.

Genres of the vocabulary that no song teaches (the packaged head's electronic, dance, folk, punk,
soul/rnb, funk and ambient) answer from their tag prior alone. The head never heard them, so its
evidence says which of the *learned* genres a song is, not that it is none of the others: the
unlearned genres together keep the probability their priors give them, but for a share
``mobility`` of the change the evidence would make to it
(:func:`~genrify.models.builtin.keep_unlearned_mass`), and the learned genres share the rest. Where
every genre is learned (a library's own vocabulary), the rule has nothing to keep and changes
nothing.

Its settings are the regularisation ``C``, the prior weight (0: the head alone), the bound ``cap``
of the evidence, the mobility, the temperature, the unsure threshold and the near-tie margin.

Honest figures: nested, artist-grouped cross-validation
-------------------------------------------------------
Songs are split into ``folds`` folds that never share an artist (:func:`group_folds`: scikit-learn's
``StratifiedGroupKFold``, stratified by each song's rarest genre). For each outer fold, the settings
are chosen by a second, inner artist-grouped cross-validation on the other folds only (:data:`INNER_FOLDS`
folds); a head with those settings is fitted on the other folds and answers the outer fold. The
report's figures are those answers: every song is answered by a head that never heard its artist,
whose settings were chosen without it. The shipped head's settings are chosen the same way over all
songs (by the outer folds' answers for every setting), and it is fitted on all songs.

How each setting is chosen, on held-out answers only:

- ``C``, prior weight, bound, mobility, over the grid :data:`GRID_C` x :data:`GRID_PRIOR_WEIGHT` x
  :data:`GRID_CAP` x :data:`GRID_MOBILITY`, by two measures:

  *in vocabulary*, the mean of top-1 accuracy and macro recall of the songs answered by the inner
  folds (heads that never heard their artists);

  *out of vocabulary* (only where some genre is unlearned), the leave-genres-out check: each learned
  genre the tags know is left out in turn (its songs and every song of their artists), a head is
  fitted on the rest, and the genre's songs are answered with it unlearned, as a song of a genre
  the head never heard is; the measure is the mean over those genres of the share of their songs
  still answered with their own genre (through the tags), rather than pulled into a learned one.

  The objective, fixed before any out-of-domain test: among the settings whose in-vocabulary
  measure is within one standard error of the best (``sqrt(s (1 - s) / songs)`` for the best
  ``s``: settings the songs cannot tell apart from the best), the one with the best
  out-of-vocabulary measure (ties: the better in-vocabulary measure, then the first tried). So the
  head gives up no in-vocabulary accuracy the songs can show, and of what they cannot tell apart,
  takes the setting that leaves genres it never heard their due. Where every genre is learned, the
  best in-vocabulary measure alone;
- temperature: least log loss of the songs' answers (the probability given to the song's genres);
- unsure threshold: the largest top probability under which the answers are right at most half the
  time (flagged answers are more often wrong than right);
- near-tie margin: the largest gap between the two most probable genres under which the answers are
  right at most half the time (a near-tie is a coin toss).

A song's answer counts as right (top-1) when it is any of its genres. A genre's recall is the share
of its songs answered with it, so a sub-genre always tagged beside its parent ("Classical;
Baroque") earns no recall from answers of the parent. The confusion matrix has a row per genre of
each song and a column per answer, so each row sums to the genre's song count.

The report's leave-genres-out figure (:attr:`LearnReport.held_out`) is nested as the others: in
each outer fold, the heads fitted without each genre on the other folds answer the fold's songs of
that genre with the fold's settings.

Cost: the regressions of all genres are fitted together (one L-BFGS problem, warm-started along
the ``C`` grid), at most :data:`FIT_SEGMENTS` segments per song; the other settings need no
refitting. 1,000 songs of 8 segments and 20 genres take a few seconds on two cores; the
leave-genres-out check adds a fit per held-out genre and fold (the packaged head: about 7 s in all).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from genrify import __version__
from genrify.core.numeric import softmax
from genrify.errors import ParameterError
from genrify.models.builtin import (
    DEFAULT_HEAD_FEATURES,
    GENRE_TAGS,
    GENRES,
    HEAD_FEATURES,
    GenreHead,
    builtin_genre,
    combine,
    keep_unlearned_mass,
    prior_table,
    resolve_genres,
    tag_scores,
    tagger_tags,
)

if TYPE_CHECKING:
    from genrify.collection.genremap import GenreMap
    from genrify.learn.embedcache import SongEmbedding

#: The regularisation tried (scikit-learn's ``C``: larger, weaker).
GRID_C: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1)
#: The weights of the tags' prior tried (0: the head alone); only 0 where no genre has tags.
GRID_PRIOR_WEIGHT: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
#: The bounds of the head's evidence tried, in nats.
GRID_CAP: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
#: The shares of the change to the unlearned genres' total probability the evidence may make
#: (:func:`~genrify.models.builtin.keep_unlearned_mass`; 0: none). Only 1 where every genre is learned.
GRID_MOBILITY: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
#: Temperatures tried (a log grid).
GRID_TEMPERATURE = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61))
#: Folds of the inner cross-validation that chooses the settings for each outer fold.
INNER_FOLDS = 3
#: Segments of a song that enter a fit (evenly chosen): a song's variety at a fraction of the cost.
FIT_SEGMENTS = 4
#: Fewest answers on which the unsure threshold or the near-tie margin may be decided.
MIN_RULE_SONGS = 5
#: Fewest artists whose cross-checked answers can calibrate the head's probabilities: with fewer,
#: the temperature and the unsure rules rest on a handful of held-out artists, so the head says
#: so (:attr:`LearnReport.calibrated`) and ``classify`` does not turn its confidence into a share
#: of answers to expect right. Two artists for each of the five outer folds.
MIN_CALIBRATION_ARTISTS = 10
#: How far ahead of a learned head (top-1 on the songs whose genres it knows) the built-in model must
#: be for the report to say so in a note: more than the noise of a few dozen songs' top-1.
BUILTIN_AHEAD = 0.05
#: The settings used where too few artists leave nothing to cross-validate on (the unlearned genres'
#: mass kept whole: nothing shows the head knows them).
FALLBACK = {"C": 0.03, "prior_weight": 1.0, "cap": 2.0, "mobility": 0.0, "temperature": 1.0, "threshold": 0.0,
            "margin": 0.0}


@dataclass
class LearnReport:
    """How well a learned head names genres, by artist-grouped cross-validation (JSON-able).

    Attributes
    ----------
    songs, artists, folds
        What was cross-validated, and in how many folds.
    genres
        The answer's genres, in the head's order.
    learned
        The genres the songs taught (the others, if any, answer from their tag prior alone).
    cv_top1, cv_macro_recall
        Share of songs answered right (the answer is one of its genres), and the mean over learned
        genres of each genre's recall.
    per_genre
        ``{genre: {"recall": r, "songs": n}}`` for each learned genre.
    confusion
        ``{"genres": [...], "matrix": [[...]]}``: rows the songs' genres, columns the answers.
    unsure
        ``{"threshold", "margin"}`` in effect (the final head's), and over the cross-validated
        answers: the share flagged unsure and the top-1 of flagged and of other answers.
    builtin
        The built-in model's figures on the songs its vocabulary covers, beside the learned head's
        on the same songs, or ``None`` where it covers none.
    settings
        The final head's settings.
    fold_settings
        The settings each outer fold chose (how stable the choice is).
    notes
        Caveats (a genre of one artist cannot be cross-validated, ...).
    seconds
        Time taken.
    answers
        Each song's cross-validated logits ``(segments, genres)`` (not stored in files; for the
        benchmarks).
    calibrated
        Whether the songs are of enough artists (:data:`MIN_CALIBRATION_ARTISTS`) for the
        cross-checked temperature to make the probabilities say how often answers are right.
    held_out
        The leave-genres-out check, nested like the rest (``None`` where every genre is learned):
        each learned genre the tags know, left out of the training of each outer fold's head (which
        then never heard it, as it never heard the unlearned genres), and its songs of the fold
        answered with the fold's settings: ``{"kept", "tags_kept", "genres": {genre: {"kept",
        "tags_kept", "songs"}}}``, the share of its songs still answered right by that head and by
        the tags alone (``kept``, ``tags_kept``: the means over the genres).
    """

    songs: int
    artists: int
    folds: int
    genres: list[str]
    learned: list[str]
    cv_top1: float
    cv_macro_recall: float
    per_genre: dict[str, dict[str, float]]
    confusion: dict[str, Any]
    unsure: dict[str, float]
    builtin: dict[str, Any] | None
    settings: dict[str, float]
    fold_settings: list[dict[str, float]]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    answers: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)
    held_out: dict[str, Any] | None = None
    calibrated: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data: every field but :attr:`answers`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "answers"}

    def lines(self) -> list[str]:
        """The report as text, a line each (what ``genrify learn`` prints)."""
        out = [
            (f"cross-validated on {self.songs} songs of {self.artists} artists ({self.folds} folds, no artist on both "
             "sides; settings chosen without the songs they answer):"),
            f"  top-1 {self.cv_top1:.3f}, macro recall {self.cv_macro_recall:.3f}",
        ]
        width = max((len(g) for g in self.per_genre), default=5)
        for genre, row in sorted(self.per_genre.items(), key=lambda kv: (-kv[1]["songs"], kv[0])):
            n = int(row["songs"])
            out.append(f"  {genre:{width}s}  recall {row['recall']:.2f}  ({n} song{'s' if n != 1 else ''})")
        b = self.builtin
        if b is not None:
            out.append(f"built-in model ({b['model']}) on the {b['songs']} songs its genres cover: top-1 {b['top1']:.3f}, "
                       f"macro recall {b['macro_recall']:.3f}; this head on the same songs: top-1 {b['learned_top1']:.3f}, "
                       f"macro recall {b['learned_macro_recall']:.3f}")
        u = self.unsure
        if u["threshold"] <= 0 and u["margin"] <= 0:
            out.append("unsure: no rule (no top probability or near tie under which the cross-validated answers "
                       f"were more often wrong than right; they were right {u['kept_top1']:.0%} of the time)")
        else:
            # Only the parts of the rule that were chosen: "under 0.00" would read as a fault.
            rule = " or ".join([*([f"top probability under {u['threshold']:.2f}"] if u["threshold"] > 0 else []),
                                *([f"top two within {u['margin']:.2f}"] if u["margin"] > 0 else [])])
            if u["flagged"] <= 0:  # "right 0% of the time" would describe no answer at all
                out.append(f"unsure: {rule}; it flagged none of the cross-validated answers "
                           f"(right {u['kept_top1']:.0%} of the time)")
            else:
                # Every answer flagged leaves no others whose share right could be said.
                others = f", the others {u['kept_top1']:.0%}" if u["flagged"] < 1 else ""
                out.append(f"unsure: {rule}; flagged {u['flagged']:.0%} of the cross-validated answers "
                           f"(right {u['flagged_top1']:.0%} of the time{others})")
        h = self.held_out
        if h is not None:
            out.append(f"genres it never heard (each learned genre the tags know, left out of training in turn): "
                       f"answered right {h['kept']:.0%} of the time, the tags alone {h['tags_kept']:.0%}")
        s = self.settings
        out.append(f"settings: C={s['C']:g}, prior weight {s['prior_weight']:g}, bound {s['cap']:g} nats, "
                   f"unlearned genres' mass movable {s['mobility']:g}, temperature {s['temperature']:.2f}")
        out.extend(f"note: {n}" for n in self.notes)
        return out


# --- the data -------------------------------------------------------------------------------------


@dataclass
class _Data:
    """Every song's segments in one array, and what the songs are."""

    x: np.ndarray  # (segments, dim) the head's input
    table: np.ndarray  # (segments, genres) each genre's log prior (its column of prior_table)
    starts: np.ndarray  # (songs + 1,) each song's first segment
    truth: np.ndarray  # (songs, genres) bool: the song's genres among the vocabulary
    groups: np.ndarray  # (songs,) artist group index

    def rows(self, songs: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Segment rows of ``songs`` (at most ``limit`` per song, evenly chosen) and each row's weight
        (1 / the song's rows, so that every song weighs the same)."""
        rows, weights = [], []
        for s in songs:
            a, b = int(self.starts[s]), int(self.starts[s + 1])
            picked = np.arange(a, b)
            if b - a > limit:
                picked = a + np.round(np.linspace(0, b - a - 1, limit)).astype(int)
            rows.append(picked)
            weights.append(np.full(len(picked), 1.0 / len(picked)))
        return np.concatenate(rows), np.concatenate(weights)


def _features(song: SongEmbedding, features: Sequence[str]) -> np.ndarray:
    """The head's input ``(segments, width)``: the song's tagger outputs named by ``features``
    (keys of :data:`~genrify.models.builtin.HEAD_FEATURES`), side by side.

    Raises
    ------
    ParameterError
        The song's embedding does not hold one of them.
    """
    parts = []
    for feature in features:
        tagger, output = feature.split("/")
        if feature == "MSD_musicnn/penultimate":
            parts.append(np.asarray(song.embedding, dtype=np.float64))
        elif output == "taggram" and tagger in song.taggrams:
            parts.append(np.asarray(song.taggrams[tagger], dtype=np.float64))
        else:
            raise ParameterError(f"a song embedding holds no {feature}")
    return np.concatenate(parts, axis=1)


def _prepare(songs: Sequence[SongEmbedding], features: Sequence[str],
             tags: dict[str, list[str]] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, table, starts)`` for all songs' segments; ``table`` is constant without ``tags``."""
    xs, tables, starts = [], [], [0]
    for song in songs:
        x = _features(song, features)
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != sum(HEAD_FEATURES[f] for f in features) or not np.isfinite(x).all():
            raise ParameterError(f"{song.path}: its embedding is not (segments, width) finite values")
        if tags is not None:
            grams = {name: np.asarray(song.taggrams[name], dtype=np.float64) for name in tags}
            if any(g.shape != (x.shape[0], len(tags[n])) or not np.isfinite(g).all() for n, g in grams.items()):
                raise ParameterError(f"{song.path}: its taggrams do not match its embedding")
            tables.append(prior_table(tag_scores(grams, tags)))
        else:
            tables.append(prior_table(np.full((x.shape[0], len(GENRE_TAGS)), 1.0 / len(GENRE_TAGS))))
        xs.append(x)
        starts.append(starts[-1] + x.shape[0])
    return np.concatenate(xs), np.concatenate(tables), np.array(starts)


# --- folds ----------------------------------------------------------------------------------------


def group_folds(strata: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Artist-grouped folds: ``(train, test)`` song indices, no group on both sides of any fold.

    ``StratifiedGroupKFold`` keeps each stratum's share alike in every fold as far as the groups allow.
    With fewer groups than ``folds``, there are as many folds as groups.

    Raises
    ------
    ParameterError
        Fewer than two groups: nothing can be held out.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ParameterError("cross-validation needs songs of at least two artists")
    n_splits = min(folds, n_groups)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A genre with fewer songs than folds cannot be in every fold; that is expected, not an error.
        warnings.simplefilter("ignore", UserWarning)
        try:
            return [(train, test) for train, test in splitter.split(np.zeros(len(groups)), strata, groups)]
        except ValueError:
            # Every genre has fewer songs than folds (a small library, ``--min-songs 3``): scikit-learn
            # refuses to stratify at all, so the folds only keep artists apart.
            plain = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            return [(train, test) for train, test in plain.split(np.zeros(len(groups)), strata, groups)]


# --- fitting --------------------------------------------------------------------------------------


@dataclass
class _Fit:
    """One fitted head's arrays (for every genre of the vocabulary; zero where not learned)."""

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    prior_logit: np.ndarray

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Unbounded log likelihood ratios ``(n, genres)``."""
        return ((x - self.mean) / self.std) @ self.weight + self.bias - self.prior_logit


def fit_path(data: _Data, songs: np.ndarray, Cs: Sequence[float], learnable: np.ndarray) -> list[_Fit]:
    """Fit every genre's regression on ``songs``, once per ``C`` (ascending, warm-started).

    One-vs-rest: each genre's targets are its songs (a song of several genres is a positive for each).
    The loss is scikit-learn's (``C`` x the weighted log loss + half the squared weights; the
    intercepts are not penalised), for all genres at once.
    """
    rows, weights = data.rows(songs, FIT_SEGMENTS)
    x = data.x[rows]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    y = data.truth[np.repeat(songs, np.diff(data.starts)[songs].clip(max=FIT_SEGMENTS))].astype(np.float64)
    k = y.shape[1]
    share = data.truth[songs].mean(axis=0)
    # A genre with no song here (or every song) has nothing to learn: no evidence, prior alone.
    active = learnable & (share > 0) & (share < 1)
    prior = np.where(active, np.log(np.clip(share, 1e-12, None) / np.clip(1 - share, 1e-12, None)), 0.0)
    cols = np.flatnonzero(active)
    fits = []
    for C, (w, b) in zip(sorted(Cs), fit_one_vs_rest(z, y[:, cols], weights, sorted(Cs)), strict=True):
        weight = np.zeros((z.shape[1], k))
        bias = np.zeros(k)
        weight[:, cols], bias[cols] = w, b
        fits.append((C, _Fit(mean, std, weight, bias, prior)))
    by_c = dict(fits)
    return [by_c[C] for C in Cs]


def fit_one_vs_rest(z: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                    Cs: Sequence[float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One L2-regularised logistic regression per column of ``targets``, for each ``C`` in turn.

    The loss is scikit-learn's ``LogisticRegression(C=C)`` with sample weights (``C`` x the weighted
    log loss + half the squared coefficients; intercepts not penalised), so the answers are its
    answers; all columns are fitted together as one problem, each ``C`` starting from the previous
    one's solution (give them in increasing order: weaker regularisation follows stronger).

    Parameters
    ----------
    z
        ``(n, dim)`` inputs (standardised).
    targets
        ``(n, genres)`` 0/1: each row's genres.
    weights
        ``(n,)`` each row's weight.
    Cs
        Inverse regularisation strengths.

    Returns
    -------
    list of (weight, bias)
        ``(dim, genres)`` and ``(genres,)`` for each ``C``.
    """
    d, k = z.shape[1], targets.shape[1]
    y = np.asarray(targets, dtype=np.float64)
    params = np.zeros((d + 1) * k)
    out = []
    for C in Cs:
        sw = (np.asarray(weights, dtype=np.float64) * C)[:, None]

        def loss(p: np.ndarray, sw: np.ndarray = sw) -> tuple[float, np.ndarray]:
            w = p[: d * k].reshape(d, k)
            logit = z @ w + p[d * k :]
            value = float((sw * (np.logaddexp(0.0, logit) - y * logit)).sum() + 0.5 * (w * w).sum())
            g = sw * (0.5 * (1.0 + np.tanh(0.5 * logit)) - y)  # the sigmoid, without overflow
            return value, np.concatenate([(z.T @ g + w).ravel(), g.sum(axis=0)])

        if k:
            params = _lbfgs(loss, params)
        out.append((params[: d * k].reshape(d, k).copy(), params[d * k :].copy()))
    return out


def _lbfgs(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray, *, iterations: int = 500,
           gtol: float = 1e-4, ftol: float = 1e-9, memory: int = 10) -> np.ndarray:
    """Minimise a smooth convex ``fun`` (value and gradient) by L-BFGS with a backtracking line search.

    SciPy's L-BFGS-B costs about 0.6 ms a step on a few thousand parameters in its own bookkeeping,
    more than the regressions' arithmetic; this is the same method in a few numpy vector operations.
    Stops when the largest gradient entry is under ``gtol``, the value improves by less than
    ``ftol`` of itself, or after ``iterations`` steps.
    """
    f, g = fun(x)
    steps: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(iterations):
        if np.abs(g).max() <= gtol:
            break
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(steps):
            a = rho * (s @ q)
            q -= a * y
            alphas.append(a)
        if steps:
            s, y, _rho = steps[-1]
            q *= (s @ y) / (y @ y)
        else:
            q /= max(1.0, float(np.linalg.norm(g)))
        for (s, y, rho), a in zip(steps, reversed(alphas), strict=True):
            q += s * (a - rho * (y @ q))
        direction = -q
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction (rounding): start again from the gradient
            steps.clear()
            direction, slope = -g, -float(g @ g)
        step = 1.0
        while True:
            candidate = x + step * direction
            fc, gc = fun(candidate)
            if fc <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s, y = candidate - x, gc - g
        if s @ y > 1e-12:
            steps.append((s, y, 1.0 / (s @ y)))
            del steps[:-memory]
        done = f - fc <= ftol * max(abs(fc), 1.0)
        x, f, g = candidate, fc, gc
        if done:
            break
    return x


# --- answers and figures --------------------------------------------------------------------------


def _logits(raw: np.ndarray, table: np.ndarray, prior_weight: float, cap: float, temperature: float,
            mobility: float, unlearned: np.ndarray) -> np.ndarray:
    """The head's logits (:class:`~genrify.models.builtin.GenreHead`'s formula) from unbounded evidence."""
    prior = prior_weight * table
    return keep_unlearned_mass(prior + cap * np.tanh(raw / cap), prior, unlearned, mobility) / temperature


def song_probabilities(logits: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """Songs' answers from their segments' logits: the mean of each song's segments' softmax, as
    every genrify model answers.

    Parameters
    ----------
    logits
        ``(segments, genres)``, the songs' segments one after another.
    starts
        Each song's first row, then the number of rows (``None``: all rows are one song).

    Returns
    -------
    numpy.ndarray
        ``(songs, genres)``, each row summing to 1 (one row where ``starts`` is ``None``).
    """
    if starts is None:
        starts = np.array([0, len(logits)])
    p = softmax(logits, axis=1)
    return np.add.reduceat(p, starts[:-1], axis=0) / np.diff(starts)[:, None]


def _scores(prob: np.ndarray, truth: np.ndarray, learned: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``(top-1, macro recall, per-genre recall)``: top-1 right where the answer is one of the song's
    genres; a genre's recall, the share of its songs answered with it (so a song tagged "Classical;
    Baroque" and answered Classical counts for Classical, not for Baroque: a sub-genre always tagged
    beside its parent earns no recall from its parent's answers)."""
    answer = prob.argmax(axis=1)
    right = truth[np.arange(len(prob)), answer]
    counts = truth.sum(axis=0)
    named = truth & (np.arange(truth.shape[1]) == answer[:, None])
    recall = np.where(counts > 0, named.sum(axis=0) / np.maximum(counts, 1), np.nan)
    macro = float(np.nanmean(recall[learned])) if np.isfinite(recall[learned]).any() else 0.0
    return float(right.mean()), macro, recall


def _coin_toss_edge(values: np.ndarray, right: np.ndarray) -> float:
    """The edge under which held-out answers are right at most half the time, as ``values`` say.

    How often an answer is right is estimated as a non-decreasing function of ``values`` (isotonic
    regression of right/wrong on them); the edge is the smallest value at which that estimate
    passes 1/2, so that an answer under it is, on songs like these, more likely wrong than right
    (0 where every value passes, above the largest value where none does). Fewer than
    :data:`MIN_RULE_SONGS` answers decide nothing (0).
    """
    from sklearn.isotonic import IsotonicRegression

    if len(values) < MIN_RULE_SONGS:
        return 0.0
    fitted = IsotonicRegression(out_of_bounds="clip").fit(values, right.astype(float)).predict(values)
    passing = values[fitted > 0.5]
    if not len(passing):
        return float(min(1.0, np.ceil(values.max() * 100 + 1e-9) / 100))
    if not (values < passing.min()).any():
        return 0.0
    # Rounded down to a hundredth: a setting a person can read, never flagging an answer that passes.
    return float(np.floor(passing.min() * 100) / 100)


def _unsure_rules(prob: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The unsure threshold and the near-tie margin from held-out answers.

    Threshold: the top probability under which an answer is more likely wrong than right.
    Margin: among answers whose genre is the first or the second most probable, the gap between
    the two under which the first is right no more often than the second (a coin toss between them).
    """
    if prob.shape[1] < 2:
        return 0.0, 0.0
    rows = np.arange(len(prob))
    order = np.argsort(prob, axis=1)
    first, second = order[:, -1], order[:, -2]
    right = truth[rows, first]
    threshold = _coin_toss_edge(prob[rows, first], right)
    gap = prob[rows, first] - prob[rows, second]
    either = right | truth[rows, second]
    return threshold, _coin_toss_edge(gap[either], right[either])


def _flags(prob: np.ndarray, threshold: float, margin: float) -> np.ndarray:
    """Which answers ``(songs, genres)`` are unsure: top probability under ``threshold``, or the top
    two within ``margin``."""
    ordered = np.sort(prob, axis=1)
    gap = ordered[:, -1] - ordered[:, -2] if prob.shape[1] > 1 else np.ones(len(prob))
    return (ordered[:, -1] < threshold) | (gap < margin)


def _local_starts(data: _Data, songs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``songs`` (in order, all segments) and their song boundaries within those rows."""
    lengths = np.diff(data.starts)[songs]
    rows = np.concatenate([np.arange(data.starts[s], data.starts[s + 1]) for s in songs])
    return rows, np.concatenate([[0], np.cumsum(lengths)])


@dataclass
class _HeldOut:
    """Songs of genres held out of a head's training, answered by it: the leave-genres-out check.

    Each genre ``g`` of :attr:`genres` was left out in turn (its songs, and every song of their
    artists, out of the training songs), so that for that fit it is a genre the head never heard,
    as the unlearned genres are; its songs are answered with it unlearned.
    """

    rows: np.ndarray  # (segments,) the answered songs' rows, song after song
    starts: np.ndarray  # (songs + 1,) their boundaries within ``rows``
    songs: np.ndarray  # (songs,) the answered songs
    genre: np.ndarray  # (songs,) the genre held out when each was answered
    unlearned: np.ndarray  # (segments, genres) each row's unlearned genres (the held-out genre among them)
    raws: list[np.ndarray]  # per GRID_C, the rows' unbounded evidence from the fit without the genre
    fits: dict[int, list[_Fit]]  # the fits, per held-out genre (to answer other songs)

    def kept(self, prob: np.ndarray, truth: np.ndarray) -> float:
        """Mean over the held-out genres of the share of their songs answered right."""
        right = truth[np.arange(len(prob)), prob.argmax(axis=1)]
        return float(np.mean([right[self.genre == g].mean() for g in np.unique(self.genre)]))


def _leave_genres_out(data: _Data, songs: np.ndarray, learned: np.ndarray,
                      candidates: Sequence[int]) -> _HeldOut | None:
    """Fit a head without each of ``candidates`` in turn (on ``songs``) and answer that genre's songs.

    A genre is held out with every song of its artists (no artist on both sides); it is skipped
    where fewer than two other genres, or fewer than two artists, would be left to learn from.
    ``None`` where no genre could be held out.
    """
    parts: list[tuple[int, np.ndarray, list[np.ndarray], list[_Fit]]] = []
    for g in candidates:
        has = data.truth[songs, g]
        if not has.any():
            continue
        train = songs[~np.isin(data.groups[songs], data.groups[songs[has]])]
        others = learned.copy()
        others[g] = False
        if (data.truth[train][:, others].sum(axis=0) > 0).sum() < 2 or len(np.unique(data.groups[train])) < 2:
            continue
        fits = fit_path(data, train, GRID_C, others)
        rows, _ = _local_starts(data, songs[has])
        parts.append((g, songs[has], [fit.raw(data.x[rows]) for fit in fits], fits))
    if not parts:
        return None
    answered = np.concatenate([p[1] for p in parts])
    rows, starts = _local_starts(data, answered)
    genre = np.concatenate([np.full(len(p[1]), p[0]) for p in parts])
    unlearned = np.repeat(~learned[None, :], len(rows), axis=0)
    unlearned[np.arange(len(rows)), np.repeat(genre, np.diff(starts))] = True
    raws = [np.concatenate([p[2][i] for p in parts]) for i in range(len(GRID_C))]
    return _HeldOut(rows, starts, answered, genre, unlearned, raws, {p[0]: p[3] for p in parts})


def _choose(data: _Data, songs: np.ndarray, raws: list[np.ndarray], learned: np.ndarray,
            weights: Sequence[float], held: _HeldOut | None = None) -> dict[str, float]:
    """The settings chosen on held-out answers; then the temperature, unsure threshold and near-tie
    margin on the same answers.

    ``raws[i]`` are the rows of ``songs`` answered by folds that never heard them, per ``GRID_C[i]``;
    their score is the mean of top-1 and macro recall. Without ``held``, the best score wins. With
    ``held`` (:func:`_leave_genres_out`), among the settings whose score is within one standard error
    of the best (``sqrt(s (1 - s) / songs)``), the one that keeps most of the held-out genres' songs
    right wins (see the module's text).
    """
    rows, starts = _local_starts(data, songs)
    table, truth = data.table[rows], data.truth[songs]
    unlearned = ~learned
    mobilities = GRID_MOBILITY if unlearned.any() else (1.0,)
    if held is not None:
        held_table, held_truth = data.table[held.rows], data.truth[held.songs]
    tried: list[tuple[float, float, dict[str, float]]] = []  # (in-vocabulary score, held-out genres kept, settings)
    for i, C in enumerate(GRID_C):
        for cap in GRID_CAP:
            bounded = cap * np.tanh(raws[i] / cap)
            held_bounded = cap * np.tanh(held.raws[i] / cap) if held is not None else None
            for w in weights:
                prior = w * table
                for mobility in mobilities:
                    prob = song_probabilities(keep_unlearned_mass(prior + bounded, prior, unlearned, mobility), starts)
                    top1, macro, _ = _scores(prob, truth, learned)
                    kept = 0.0
                    if held is not None:
                        held_prior = w * held_table
                        logits = keep_unlearned_mass(held_prior + held_bounded, held_prior, held.unlearned, mobility)
                        kept = held.kept(song_probabilities(logits, held.starts), held_truth)
                    settings = {"C": C, "prior_weight": w, "cap": cap, "mobility": mobility}
                    tried.append(((top1 + macro) / 2, kept, settings))
    scores = np.array([t[0] for t in tried])
    kept_all = np.array([t[1] for t in tried])
    # Ties go to the first tried: the strongest regularisation, the tightest bound, the least mobility.
    if held is None:
        best = int(np.argmax(scores > scores.max() - 1e-9))
    else:
        top = scores.max()
        near = scores >= top - np.sqrt(top * (1 - top) / len(songs)) - 1e-9
        kept_near = np.where(near, kept_all, -1.0)
        finalist_scores = np.where(kept_near > kept_near.max() - 1e-9, scores, -1.0)
        best = int(np.argmax(finalist_scores > finalist_scores.max() - 1e-9))
    chosen = tried[best][2]
    raw = raws[GRID_C.index(chosen["C"])]
    logits = _logits(raw, table, chosen["prior_weight"], chosen["cap"], 1.0, chosen["mobility"], unlearned)
    losses = []
    for t in GRID_TEMPERATURE:
        prob = song_probabilities(logits / t, starts)
        losses.append(-np.log(np.clip((prob * truth).sum(axis=1), 1e-12, None)).mean())
    temperature = float(GRID_TEMPERATURE[int(np.argmin(losses))])
    threshold, margin = _unsure_rules(song_probabilities(logits / temperature, starts), truth)
    return {**chosen, "temperature": temperature, "threshold": threshold, "margin": margin}


def _cross_raws(data: _Data, songs: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                learnable: np.ndarray) -> list[np.ndarray]:
    """Held-out unbounded evidence of ``songs``' rows, per ``C``: each fold answered by a fit on the others."""
    rows, _ = _local_starts(data, songs)
    where = np.empty(data.x.shape[0], dtype=np.int64)
    where[rows] = np.arange(len(rows))
    out = [np.zeros((len(rows), data.truth.shape[1])) for _ in GRID_C]
    for train, test in folds:
        fits = fit_path(data, songs[train], GRID_C, learnable)
        test_rows, _ = _local_starts(data, songs[test])
        for i, fit in enumerate(fits):
            out[i][where[test_rows]] = fit.raw(data.x[test_rows])
    return out


def _strata(truth: np.ndarray) -> np.ndarray:
    """Each song's rarest genre: what the folds keep balanced."""
    counts = truth.sum(axis=0)
    return np.array([int(np.flatnonzero(row)[np.argmin(counts[row])]) for row in truth])


def _confusion(prob: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rows the songs' genres (a song counts in each of its genres' rows), columns the answers."""
    k = truth.shape[1]
    matrix = np.zeros((k, k), dtype=np.int64)
    for row, a in zip(truth, prob.argmax(axis=1), strict=True):
        matrix[np.flatnonzero(row), a] += 1
    return matrix


# --- the learner ----------------------------------------------------------------------------------


def learn_head(
    songs: Sequence[SongEmbedding],
    labels: Sequence[tuple[str, ...]],
    groups: Sequence[str],
    *,
    genre_map: GenreMap | None = None,
    folds: int = 5,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    genres: Sequence[str] | None = None,
    features: Sequence[str] = DEFAULT_HEAD_FEATURES,
    builtin: GenreHead | bool | None = True,
    info: dict[str, Any] | None = None,
) -> tuple[GenreHead, LearnReport]:
    """Learn a genre head from labelled songs and measure it honestly (see the module's text).

    Parameters
    ----------
    songs
        Each song's tagger outputs (:class:`genrify.learn.embedcache.SongEmbedding`).
    labels
        Each song's genres (at least one; a song with several teaches each of them).
    groups
        Each song's artist (album artist, else artist, else its folder): no artist is ever on both
        sides of a fold.
    genre_map
        Used to find the built-in genre (and so the tag prior) a genre name means.
    folds
        Outer cross-validation folds (fewer where there are fewer artists).
    seed
        The folds' shuffle.
    progress
        Called with a line of text at each step.
    genres
        The answer's genres in order: every genre of ``labels``, and perhaps built-in genres the
        songs do not teach, which answer from their tag prior alone (the packaged head keeps all of
        :data:`~genrify.models.builtin.GENRES` so). ``None``: the labels' genres, most songs first.
    features
        The tagger outputs the head reads (keys of :data:`~genrify.models.builtin.HEAD_FEATURES` a
        :class:`~genrify.learn.embedcache.SongEmbedding` holds).
    builtin
        The model the report compares with, on the songs whose genres it knows: ``True`` the
        packaged head, a :class:`~genrify.models.builtin.GenreHead`, ``False``/``None`` the tags alone.
    info
        Added to the head's ``info`` (what it learned from, ...).

    Returns
    -------
    (GenreHead, LearnReport)
        The head, fitted on all songs with the settings chosen by cross-validation over all songs;
        its ``info["report"]`` is the report's :meth:`~LearnReport.to_dict`.

    Raises
    ------
    ParameterError
        Mismatched lengths, a song without genres, fewer than two genres or two artists, an
        unusable embedding, or a genre in ``genres`` without a tag prior that no song teaches.
    """
    started = time.perf_counter()
    say = progress or (lambda _line: None)
    if not len(songs) == len(labels) == len(groups):
        raise ParameterError(f"{len(songs)} songs, {len(labels)} labels and {len(groups)} groups: one of each per song")
    if any(not tuple(genres_of) for genres_of in labels):
        raise ParameterError("every song needs at least one genre")
    counts: dict[str, int] = {}
    for genres_of in labels:
        for g in dict.fromkeys(genres_of):
            counts[g] = counts.get(g, 0) + 1
    taught = sorted(counts, key=lambda g: (-counts[g], g))
    vocabulary = list(genres) if genres is not None else taught
    if len(set(vocabulary)) != len(vocabulary) or not set(taught) <= set(vocabulary):
        raise ParameterError("genres must name every genre of the labels, once each")
    if len(taught) < 2:
        raise ParameterError(f"learning needs songs of at least two genres (only {', '.join(taught)} here)")
    priors = [_tag_prior(g, genre_map) for g in vocabulary]
    untaught = [g for g, p in zip(vocabulary, priors, strict=True) if g not in counts and p is None]
    if untaught:
        raise ParameterError(f"no song teaches {', '.join(untaught)} and no tag scores it")
    bad = [f for f in features if f not in HEAD_FEATURES]
    if bad or not features:
        raise ParameterError(f"unknown head features {bad}; choose among {', '.join(HEAD_FEATURES)}")
    tags = tagger_tags() if any(p is not None for p in priors) else None
    x, table, starts = _prepare(songs, list(features), tags)
    index = {g: j for j, g in enumerate(vocabulary)}
    truth = np.zeros((len(songs), len(vocabulary)), dtype=bool)
    for i, genres_of in enumerate(labels):
        truth[i, [index[g] for g in genres_of]] = True
    group_names, group_index = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    columns = [list(GENRE_TAGS).index(p) if p is not None else len(GENRE_TAGS) for p in priors]
    table = table[:, columns]  # each genre's log prior, per segment
    data = _Data(x, table, starts, truth, group_index)
    learned = np.array([g in counts for g in vocabulary])
    weights = GRID_PRIOR_WEIGHT if tags is not None else (0.0,)
    strata = _strata(truth)
    unlearned = ~learned
    everyone = np.arange(len(songs))
    # The leave-genres-out check: only where some genre is unlearned (the rule has something to keep),
    # over the learned genres the tags know (held out, they can still be answered right).
    candidates = [j for j, p in enumerate(priors) if learned[j] and p is not None] if unlearned.any() else []
    # The nested check's answers, per held-out genre: right or not, by the head and by the tags alone.
    head_right: dict[int, list[np.ndarray]] = {j: [] for j in candidates}
    tags_right: dict[int, list[np.ndarray]] = {j: [] for j in candidates}

    with _one_blas_thread():
        outer = group_folds(strata, group_index, folds, seed)
        raws_all = [np.zeros((x.shape[0], len(vocabulary))) for _ in GRID_C]
        nested = np.zeros((x.shape[0], len(vocabulary)))
        flagged = np.zeros(len(songs), dtype=bool)
        fold_settings = []
        for k, (train, test) in enumerate(outer):
            say(f"cross-validating: fold {k + 1} of {len(outer)}")
            train_songs = everyone[train]
            held = _leave_genres_out(data, train_songs, learned, candidates) if candidates else None
            try:
                inner = group_folds(strata[train], group_index[train], INNER_FOLDS, seed + 1 + k)
                settings = _choose(data, train_songs, _cross_raws(data, train_songs, inner, learned), learned, weights,
                                   held)
            except ParameterError:  # one artist left: nothing to choose on
                settings = dict(FALLBACK)
            fold_settings.append(settings)
            fits = fit_path(data, train_songs, GRID_C, learned)
            rows, local = _local_starts(data, everyone[test])
            for i, fit in enumerate(fits):
                raws_all[i][rows] = fit.raw(x[rows])
            raw = raws_all[GRID_C.index(settings["C"])][rows]
            nested[rows] = _logits(raw, table[rows], settings["prior_weight"], settings["cap"], settings["temperature"],
                                   settings["mobility"], unlearned)
            flagged[test] = _flags(song_probabilities(nested[rows], local), settings["threshold"], settings["margin"])
            for g, g_fits in (held.fits if held is not None else {}).items():
                # The fold's genre-held-out fit, with the fold's settings, on the fold's songs of that genre.
                of_g = everyone[test][truth[test, g]]
                if not len(of_g):
                    continue
                g_rows, g_local = _local_starts(data, of_g)
                mask = unlearned.copy()
                mask[g] = True
                logits = _logits(g_fits[GRID_C.index(settings["C"])].raw(x[g_rows]), table[g_rows],
                                 settings["prior_weight"], settings["cap"], 1.0, settings["mobility"], mask)
                head_right[g].append(truth[of_g, song_probabilities(logits, g_local).argmax(axis=1)])
                tags_right[g].append(truth[of_g, song_probabilities(table[g_rows], g_local).argmax(axis=1)])
        say("choosing the settings over all songs")
        held_all = _leave_genres_out(data, everyone, learned, candidates) if candidates else None
        final = _choose(data, everyone, raws_all, learned, weights, held_all)
        say(f"fitting the head on all {len(songs)} songs")
        fit = fit_path(data, everyone, [final["C"]], learned)[0]

    prob = song_probabilities(nested, starts)
    top1, macro, recall = _scores(prob, truth, learned)
    right = truth[everyone, prob.argmax(axis=1)]
    notes = []
    for g, prior in zip(vocabulary, priors, strict=True):
        if g in counts and len(np.unique(group_index[truth[:, index[g]]])) < 2:
            # Held out, the genre is unlearned: only a tag prior can still name it.
            fate = "what recall it has comes from the tags alone" if prior is not None else "recall 0 expected"
            notes.append(f"every song of {g} is by one artist: held out, it is never heard in training ({fate})")
    calibrated = len(group_names) >= MIN_CALIBRATION_ARTISTS
    if not calibrated:
        notes.append(f"only {len(group_names)} artists: too few to choose the settings or measure the model well, so "
                     "take these figures as rough and its probabilities as no promise of how often it is right "
                     f"(classify will not say how many answers to expect right); tag songs of at least "
                     f"{MIN_CALIBRATION_ARTISTS} artists")
    held_out = None
    if any(head_right.values()):
        each = {}
        for g, parts in head_right.items():
            if parts:
                by_head, by_tags = np.concatenate(parts), np.concatenate(tags_right[g])
                each[vocabulary[g]] = {"kept": float(by_head.mean()), "tags_kept": float(by_tags.mean()),
                                       "songs": len(by_head)}
        held_out = {"kept": float(np.mean([e["kept"] for e in each.values()])),
                    "tags_kept": float(np.mean([e["tags_kept"] for e in each.values()])), "genres": each}
    compared = _builtin_figures(builtin, songs, labels, vocabulary, prob, truth, genre_map)
    if compared is not None and compared["top1"] >= compared["learned_top1"] + BUILTIN_AHEAD:
        notes.append(f"on the {compared['songs']} songs whose genres the built-in model knows, it named more right "
                     f"than this head (top-1 {compared['top1']:.2f} against {compared['learned_top1']:.2f}): for those "
                     "genres it may serve you better (classify without --model, asked for them with --genres); "
                     "it learned from GTZAN's excerpts, so on those it scores songs it has heard")
    report = LearnReport(
        songs=len(songs), artists=len(group_names), folds=len(outer), genres=list(vocabulary),
        learned=[g for g in vocabulary if g in counts], cv_top1=top1, cv_macro_recall=macro,
        per_genre={g: {"recall": float(recall[index[g]]), "songs": counts[g]} for g in vocabulary if g in counts},
        confusion={"genres": list(vocabulary), "matrix": _confusion(prob, truth).tolist()},
        unsure={"threshold": final["threshold"], "margin": final["margin"], "flagged": float(flagged.mean()),
                "flagged_top1": float(right[flagged].mean()) if flagged.any() else 0.0,
                "kept_top1": float(right[~flagged].mean()) if (~flagged).any() else 0.0},
        builtin=compared,
        settings={k: round(float(v), 4) for k, v in final.items()},
        fold_settings=[{k: round(float(v), 4) for k, v in s.items()} for s in fold_settings],
        notes=notes,
        answers=[nested[starts[i] : starts[i + 1]] for i in range(len(songs))],
        held_out=held_out,
        calibrated=calibrated,
    )
    report.seconds = round(time.perf_counter() - started, 2)
    head = GenreHead(
        genres=list(vocabulary), priors=priors, mean=fit.mean, std=fit.std, weight=fit.weight, bias=fit.bias,
        prior_logit=fit.prior_logit, features=list(features), learned=list(report.learned),
        prior_weight=final["prior_weight"], cap=final["cap"], temperature=final["temperature"],
        threshold=final["threshold"], margin=final["margin"], mobility=final["mobility"],
        info={**(info or {}), "songs": len(songs), "artists": len(group_names), "report": report.to_dict(),
              "genrify_version": __version__,
              # What each genre means to the built-in model, through the genre map it was learned with.
              "builtin_genres": {g: b for g in vocabulary if (b := builtin_genre(g, genre_map)) is not None}},
    )
    return head, report


def _tag_prior(genre: str, genre_map: GenreMap | None) -> str | None:
    """The tag genre whose score is ``genre``'s prior, or ``None`` (no tags for it)."""
    meant = builtin_genre(genre, genre_map)
    return meant if meant in GENRE_TAGS else None


def _one_blas_thread() -> Any:
    """BLAS on one thread while learning: its matrices are small, and threads spinning on busy cores
    cost several times the work (measured: 5 to 8 times slower on two loaded cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it, BLAS keeps its own setting
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _builtin_figures(builtin: GenreHead | bool | None, songs: Sequence[SongEmbedding], labels: Sequence[tuple[str, ...]],
                     vocabulary: list[str], prob: np.ndarray, truth: np.ndarray,
                     genre_map: GenreMap | None) -> dict[str, Any] | None:
    """The built-in model's figures on the songs it covers (answering among the genres of the
    vocabulary it knows, as ``--genres`` would), beside the learned head's cross-validated ones."""
    reference = GenreHead.load() if builtin is True else (builtin or None)
    known = reference.genres if reference is not None else list(GENRES)
    meant: dict[str, str] = {}  # each genre of the vocabulary the reference knows -> its genre there
    for g in vocabulary:
        builtin_name = builtin_genre(g, genre_map)
        if builtin_name is None:
            continue
        try:
            meant[g] = resolve_genres([builtin_name], known)[0][1]
        except ParameterError:  # a built-in genre the reference does not answer with
            continue
    columns = sorted(set(meant.values()), key=known.index)
    covered = [i for i, genres_of in enumerate(labels) if any(g in meant for g in genres_of)]
    if len(columns) < 2 or not covered:
        return None
    model = "the tags alone" if reference is None else ("tags and packaged head" if builtin is True else "tags and a given head")
    answers = np.zeros((len(covered), len(columns)))
    tags = tagger_tags()
    for row, i in enumerate(covered):
        try:
            logits = _segment_logits(songs[i], reference, tags)
        except ParameterError:  # the head reads what the songs' embeddings do not hold
            return None
        answers[row] = song_probabilities(logits[:, [known.index(c) for c in columns]])[0]
    own = np.zeros((len(covered), len(columns)), dtype=bool)
    for row, i in enumerate(covered):
        for g in labels[i]:
            if g in meant:
                own[row, columns.index(meant[g])] = True
    b_top1, b_macro, b_recall = _scores(answers, own, own.any(axis=0))
    covered_truth = truth[covered]
    l_top1, l_macro, _ = _scores(prob[covered], covered_truth, covered_truth.any(axis=0))
    return {
        "model": model, "songs": len(covered), "genres": columns, "top1": b_top1, "macro_recall": b_macro,
        "per_genre": {c: float(r) for c, r in zip(columns, b_recall, strict=True) if np.isfinite(r)},
        "learned_top1": l_top1, "learned_macro_recall": l_macro,
    }


def other_genre_shares(head: GenreHead, songs: Sequence[SongEmbedding]) -> np.ndarray | None:
    """Each song's share of the packaged head's belief that the head's genres hold, from its
    embedding: the :attr:`~genrify.classify.predict.Prediction.asked_share` classifying it with
    the head gives (the mean over its segments), without decoding it again. ``None`` where the head
    has no such check (:func:`~genrify.models.builtin.reference_head`)."""
    from genrify.models.builtin import reference_head, split_asked

    reference, columns = reference_head(head)
    if reference is None:
        return None
    tags = tagger_tags()
    return np.array([split_asked(_segment_logits(song, reference, tags), columns)[1].mean() for song in songs])


def _segment_logits(song: SongEmbedding, head: GenreHead | None, tags: dict[str, list[str]]) -> np.ndarray:
    """A head's logits for each of a song's segments from its embedding (the tags alone where
    ``head`` is ``None``), as :meth:`~genrify.models.builtin.BuiltinGenreModel.logits` gives them
    from the audio. Raises :class:`ParameterError` where the embedding lacks what the head reads."""
    scores = tag_scores({n: np.asarray(song.taggrams[n], dtype=np.float64) for n in tags}, tags)
    return combine(scores, head.evidence(_features(song, head.features)) if head is not None else None, head)


def predict_songs(head: GenreHead, songs: Sequence[SongEmbedding]) -> np.ndarray:
    """Each song's answer ``(songs, genres)`` from its embedding: the mean of its segments' softmax
    (what classification answers with the head, without decoding or running the taggers again)."""
    if not songs:
        return np.zeros((0, len(head.genres)))
    tags = tagger_tags() if any(p is not None for p in head.priors) else None
    x, table, starts = _prepare(songs, head.features, tags)
    prior = head.prior_weight * table[:, head.prior_columns()]
    logits = keep_unlearned_mass(prior + head.evidence(x), prior, head.unlearned(), head.mobility) / head.temperature
    return song_probabilities(logits, starts)
