"""The built-in genre model: genre answers out of the box, from the pretrained musicnn taggers and a
genre head learned from real music.

Two sources of evidence are combined for every 3-second patch:

- **The taggers' genre tags.** ``MSD_musicnn`` (Million Song Dataset, tags from Last.fm listeners)
  and ``MTT_musicnn`` (MagnaTagATune) each give 50 tag probabilities; some tags are genres, named
  differently in each vocabulary. :data:`GENRE_TAGS` merges them into 15 genres: each tagger scores
  a genre by the largest probability among its tags for it, a genre's score is the mean over the
  taggers that know it, and the scores are normalised to sum to 1 (``S``).
- **A genre head** (:class:`GenreHead`) learned from real labelled recordings (GTZAN excerpts, see
  ``NOTICE``): one logistic regression per genre ("this genre or not") on ``MSD_musicnn``'s
  200-dimensional penultimate embedding. It knows genres the tags do not (reggae, disco) and
  separates ones the tags confuse (country and pop, metal and rock).

The head's evidence enters as a log likelihood ratio (its log-odds minus the log-odds of the genre's
share of its training songs), so the tags act as the prior and the head moves them as far as its
data supports: a genre the head was not trained on keeps its tag score, and a patch unlike any of
the head's genres leaves the tags in charge. Per patch,
``a_g = prior_weight * log S_g + cap * tanh(LLR_g / cap)``: the evidence is bounded (``cap`` nats),
because a linear head fitted on a few hundred excerpts extrapolates on music unlike them. Reggae and
disco, which have no tags, start from an even share (:data:`EVEN_SHARE`).

The head never heard the genres it did not learn (electronic, dance, folk, punk, soul/rnb, funk,
ambient for the packaged head), so its evidence says which of its *learned* genres a patch is, not
whether it is one of them: the total probability the tags give the unlearned genres is kept, but for
a share ``mobility`` of the change the head would make to it (:func:`keep_unlearned_mass`); the
learned genres share the rest as the evidence says. The logits are ``log`` of those probabilities
divided by ``temperature``. The song's answer is the mean of its patches' softmax, as for any genrify
model; asking for a few genres (``--genres``) renormalises the same logits over them.

A head may hold any vocabulary: ``genrify learn`` makes one from a library's own genres with the
same learner (:mod:`genrify.learn.learner`), each genre taking as prior the tag score of the built-in
genre it means (:func:`builtin_genre`), if any. The packaged head is one such head, made by
``scripts/train_builtin_head.py`` from the 294 GTZAN excerpts: its settings (regularisation, prior
weight, bound, temperature, unsure threshold, near-tie margin) chosen by artist-grouped nested
cross-validation, its report stored in it; ``benchmarks/builtin_accuracy.py`` measures it against
the tags alone.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrify import __version__
from genrify.audio.features import FeatureParams
from genrify.collection.genremap import GenreMap, genre_key
from genrify.core.devices import module_device
from genrify.core.numeric import logsumexp, softmax
from genrify.errors import DependencyError, ModelFileError, ParameterError

if TYPE_CHECKING:  # torch is needed only for the taggers' torch networks (training, GPUs, no ONNX)
    import torch
    from torch import nn

#: Each genre's tags in each tagger's vocabulary.
GENRE_TAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "rock": {"MSD_musicnn": ("rock", "alternative", "alternative rock", "indie rock", "classic rock", "hard rock",
                             "Progressive rock"), "MTT_musicnn": ("rock",)},
    "pop": {"MSD_musicnn": ("pop", "indie pop"), "MTT_musicnn": ("pop",)},
    "electronic": {"MSD_musicnn": ("electronic", "electronica", "electro"), "MTT_musicnn": ("electronic", "techno", "synth")},
    "dance": {"MSD_musicnn": ("dance", "House"), "MTT_musicnn": ("dance", "techno")},
    "hip-hop": {"MSD_musicnn": ("Hip-Hop",)},
    "jazz": {"MSD_musicnn": ("jazz",)},
    "blues": {"MSD_musicnn": ("blues",)},
    "classical": {"MTT_musicnn": ("classical", "classic", "strings", "violin", "cello", "harpsichord", "opera", "choral")},
    "country": {"MSD_musicnn": ("country",), "MTT_musicnn": ("country",)},
    "folk": {"MSD_musicnn": ("folk",)},
    "metal": {"MSD_musicnn": ("metal", "heavy metal"), "MTT_musicnn": ("metal",)},
    "punk": {"MSD_musicnn": ("punk",)},
    "soul/rnb": {"MSD_musicnn": ("soul", "rnb")},
    "funk": {"MSD_musicnn": ("funk",)},
    "ambient": {"MSD_musicnn": ("ambient", "chillout"), "MTT_musicnn": ("ambient", "new age")},
}
#: Genres no tagger has a tag for: only the head knows them.
HEAD_ONLY_GENRES: tuple[str, ...] = ("reggae", "disco")
#: The vocabulary, in output order.
GENRES: tuple[str, ...] = (*GENRE_TAGS, *HEAD_ONLY_GENRES)
#: Other names people use for the same genres (GTZAN's among them).
ALIASES: dict[str, str] = {
    "hiphop": "hip-hop", "hip hop": "hip-hop", "rap": "hip-hop", "soul": "soul/rnb", "rnb": "soul/rnb",
    "r&b": "soul/rnb", "edm": "dance", "house": "dance", "techno": "electronic", "electronica": "electronic",
    "heavy metal": "metal", "new age": "ambient", "ska": "reggae", "dub": "reggae",
}
# Every spelling of a built-in genre, by key: its name and its aliases.
_BUILTIN_KEYS: dict[str, str] = {**{genre_key(a): g for a, g in ALIASES.items()}, **{genre_key(g): g for g in GENRES}}
#: The taggers the model runs.
TAGGER_NAMES = ("MSD_musicnn", "MTT_musicnn")
#: The head's input: this tagger's output of this name.
EMBEDDING = ("MSD_musicnn", "penultimate")
NAME = "genrify-musicnn"
#: Where the packaged head lives.
HEAD_PATH = Path(__file__).resolve().parent / "pretrained" / "genre_head.safetensors"
HEAD_FORMAT = "genrify-genre-head"
#: 2: any vocabulary, each genre with an optional tag prior, the near-tie margin (1: the 17 genres).
HEAD_FORMAT_VERSION = 2
#: The tagger outputs a head may read (``tagger/output``), with their widths.
HEAD_FEATURES: dict[str, int] = {
    "MSD_musicnn/penultimate": 200, "MSD_musicnn/taggram": 50, "MTT_musicnn/penultimate": 200, "MTT_musicnn/taggram": 50,
}
#: What a head reads unless told otherwise: :data:`EMBEDDING`.
DEFAULT_HEAD_FEATURES: tuple[str, ...] = ("/".join(EMBEDDING),)
#: The prior of a genre no tag scores (reggae, disco, a library's own genres): an even share of the
#: tag genres' probability, so that it starts level with a tag genre the tags are unsure about.
EVEN_SHARE = 1.0 / len(GENRE_TAGS)
#: Bounds on what a head file may hold: a head is a few hundred kB; a file beyond these is not one.
MAX_HEAD_GENRES = 1000
MAX_HEAD_BYTES = 64 << 20
# Tag scores below this are clipped before the log: a tag's absence is evidence, not certainty.
_SCORE_FLOOR = 1e-4


def builtin_genre(name: str, genre_map: GenreMap | None = None) -> str | None:
    """The genre of :data:`GENRES` that ``name`` means, or ``None``.

    Names are compared as :func:`genrify.collection.genremap.genre_key` compares them (``Hip Hop`` is
    ``hip-hop``), through :data:`ALIASES` (``rap``, ``r&b``) and, given a genre map, through its
    spellings (a map that spells ``soul/rnb`` as ``R&B`` makes ``R&B`` mean it).
    """
    key = genre_key(name)
    found = _BUILTIN_KEYS.get(key)
    if found is not None or genre_map is None or not key:
        return found
    spelled = genre_map.name(name)
    if spelled is None:
        return None
    for other, genre in _BUILTIN_KEYS.items():
        mapped = genre_map.name(other)
        if mapped is not None and genre_key(mapped) == genre_key(spelled):
            return genre
    return None


def resolve_genres(names: Sequence[str] | None, vocabulary: Sequence[str] = GENRES) -> list[tuple[str, str]]:
    """``(shown name, vocabulary genre)`` for each name asked for (all genres for ``None``).

    Parameters
    ----------
    names
        Genres asked for, as a person spells them.
    vocabulary
        The genres the model answers with: :data:`GENRES` for the built-in model, or a learned
        head's. A name matches a genre of the same :func:`~genrify.collection.genremap.genre_key`, or one that
        means the same built-in genre (:func:`builtin_genre`: ``rap`` finds ``Hip-Hop``).

    Raises
    ------
    ParameterError
        A name that is neither a genre nor an alias, or the same genre twice.
    """
    if names is None:
        return [(g, g) for g in vocabulary]
    by_key = {genre_key(g): g for g in vocabulary}
    by_builtin: dict[str, str] = {}
    for g in vocabulary:
        meant = builtin_genre(g)
        if meant is not None:
            by_builtin.setdefault(meant, g)
    out: list[tuple[str, str]] = []
    for raw in names:
        name = raw.strip()
        meant = builtin_genre(name)
        genre = by_key.get(genre_key(name)) or (by_builtin.get(meant) if meant is not None else None)
        if genre is None:
            known = ", ".join(vocabulary)
            others = sorted(a for a, g in ALIASES.items() if g in by_builtin)
            hint = _did_you_mean(name, [*vocabulary, *others])
            if tuple(vocabulary) == GENRES:
                raise ParameterError(f"the built-in model knows no genre {name!r}{hint}; it knows {known}"
                                     f" (and {', '.join(sorted(ALIASES))} as other names)")
            raise ParameterError(f"the model knows no genre {name!r}{hint}; it knows {known}")
        if genre in {g for _, g in out}:
            raise ParameterError(f"genre {name!r} is asked for twice (as {genre})")
        out.append((name, genre))
    if not out:
        raise ParameterError("no genres asked for")
    return out


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
    """`` (did you mean 'jazz'?)`` for the candidates closest to a mistyped ``name``, or ``""``.

    Names are compared by :func:`~genrify.collection.genremap.genre_key` (``Hip Hop`` is ``hiphop``), with
    :func:`difflib.get_close_matches`: at most three, closest first.

    Examples
    --------
    >>> _did_you_mean("jaz", ["rock", "jazz"])
    " (did you mean 'jazz'?)"
    >>> _did_you_mean("polka", ["rock", "jazz"])
    ''
    """
    import difflib

    by_key: dict[str, str] = {}
    for c in candidates:
        by_key.setdefault(genre_key(c), c)
    close = [by_key[k] for k in difflib.get_close_matches(genre_key(name), list(by_key), n=3, cutoff=0.7)]
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)"


@dataclass
class GenreHead:
    """A genre head: one logistic regression per genre on tagger outputs, and how it joins the tags.

    Any vocabulary: the packaged head's (the 17 genres, GTZAN's ten learned) or a library's own
    (``genrify learn``). Each genre may have a tag genre as its prior (:attr:`priors`); per patch,

    ``a_g = prior_weight * log S_prior(g) + cap * tanh(LLR_g / cap)``

    where ``S`` are the tag scores (:func:`tag_scores`; a genre without a prior takes
    :data:`EVEN_SHARE`) and ``LLR_g`` the head's log-odds for the genre minus those of its share of
    the training songs. A genre the head did not learn (:attr:`learned`) has no evidence, and the
    unlearned genres together keep the probability their priors give them but for a share
    :attr:`mobility` of the change the evidence would make (:func:`keep_unlearned_mass`); the
    logits are those log probabilities divided by :attr:`temperature`.

    Attributes
    ----------
    genres
        The answer's genres, in output order.
    priors
        Each genre's tag genre (a key of :data:`GENRE_TAGS`), or ``None`` for an even share.
    mean, std
        Standardisation of the input ``(dim,)``.
    weight, bias
        ``(dim, genres)`` and ``(genres,)``: each genre's log-odds (zero for a genre not learned).
    prior_logit
        Log-odds of each genre's share of the training songs (removed to leave the evidence).
    features
        The tagger outputs read, concatenated in this order (keys of :data:`HEAD_FEATURES`).
    learned
        The genres with evidence of their own (the others answer from their prior alone).
    prior_weight
        Weight of the tags' log-score against the head's evidence (0: the head alone).
    cap
        Bound of the evidence (``cap * tanh(llr / cap)``, in nats): a linear model fitted on a few
        hundred songs extrapolates wildly on music unlike them, and must not overrule the tags.
    temperature
        Divides the combined logits (calibration).
    mobility
        Share (0 to 1) of the change the evidence would make to the unlearned genres' total
        probability that it may make (0: they keep what their priors give them; 1: no rule). A head
        has no evidence about genres it never heard, so it should not take their probability.
    threshold
        Top probability under which an answer is flagged as unsure.
    margin
        Near-tie margin: an answer whose two most probable genres are closer than this is flagged
        as unsure (0: never).
    info
        What it learned from, how it was made, and its cross-validated report.
    """

    genres: list[str]
    priors: list[str | None]
    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    prior_logit: np.ndarray
    features: list[str] = field(default_factory=lambda: list(DEFAULT_HEAD_FEATURES))
    learned: list[str] = field(default_factory=list)
    prior_weight: float = 1.0
    cap: float = 2.0
    temperature: float = 1.0
    threshold: float = 0.3
    margin: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    mobility: float = 1.0

    def inputs(self, outputs: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
        """The head's input ``(n, dim)`` from the taggers' outputs ``{tagger: {output: (n, width)}}``."""
        parts = []
        for feature in self.features:
            tagger, output = feature.split("/")
            parts.append(np.asarray(outputs[tagger][output], dtype=np.float64))
        return np.concatenate(parts, axis=1)

    def evidence(self, x: np.ndarray) -> np.ndarray:
        """The head's bounded log likelihood ratios ``(n, genres)`` for inputs ``(n, dim)``."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        return self.cap * np.tanh((z @ self.weight + self.bias - self.prior_logit) / self.cap)

    def unlearned(self) -> np.ndarray:
        """``(genres,)`` bool: the genres without evidence of their own (their mass is kept, see
        :attr:`mobility`)."""
        learned = set(self.learned)
        return np.array([g not in learned for g in self.genres], dtype=bool)

    def prior_columns(self) -> list[int]:
        """Each genre's column in the tag table ``[S, even share]`` (:func:`prior_table`)."""
        tags = list(GENRE_TAGS)
        return [tags.index(p) if p is not None else len(tags) for p in self.priors]

    def save(self, path: str | Path) -> Path:
        """Write the head as a safetensors file (plain arrays; the metadata is JSON)."""
        from safetensors.numpy import save_file

        from genrify.core.fsutil import atomic_path

        meta = {
            "format": HEAD_FORMAT, "version": HEAD_FORMAT_VERSION, "genres": list(self.genres),
            "priors": list(self.priors), "features": list(self.features), "learned": list(self.learned),
            "prior_weight": float(self.prior_weight), "cap": float(self.cap), "temperature": float(self.temperature),
            "threshold": float(self.threshold), "margin": float(self.margin), "mobility": float(self.mobility),
            "info": self.info,
        }
        tensors = {k: np.ascontiguousarray(getattr(self, k), dtype=np.float32) for k in _HEAD_TENSORS}
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"genrify": json.dumps(meta, allow_nan=False)})
        return path

    @classmethod
    def load(cls, path: str | Path = HEAD_PATH) -> GenreHead:
        """Read a head written by :meth:`save`; every field is checked, no code is run.

        Raises
        ------
        ModelFileError
            Missing, unreadable, too big, or a field missing, of the wrong type or inconsistent
            (one line, naming the file).
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            if path == HEAD_PATH:
                raise ModelFileError(f"{path}: the built-in model's genre head is missing; reinstall genrify")
            raise ModelFileError(f"{path}: the genre head file is missing")
        if path.stat().st_size > MAX_HEAD_BYTES:
            raise ModelFileError(f"{path}: too big for a genre head ({path.stat().st_size} bytes)")
        try:
            with safe_open(str(path), framework="numpy") as f:
                raw = (f.metadata() or {}).get("genrify")
                names = sorted(f.keys())
                if names != sorted(_HEAD_TENSORS):
                    raise ModelFileError(f"{path}: not a genre head's arrays ({', '.join(names[:8]) or 'none'})")
                tensors = {k: f.get_tensor(k) for k in names}
            meta = json.loads(raw or "null", parse_constant=_refuse_constant)
        except ModelFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - safetensors and json raise several types
            raise ModelFileError(f"{path}: not a readable genre head ({type(exc).__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != HEAD_FORMAT:
            raise ModelFileError(f"{path}: not a genrify genre head")
        if meta.get("version") != HEAD_FORMAT_VERSION:
            raise ModelFileError(f"{path}: a genre head of format version {meta.get('version')!r}; this genrify reads "
                                 f"version {HEAD_FORMAT_VERSION} (learn it again, or reinstall genrify)")
        try:
            head = cls(
                genres=_names(meta["genres"], "genres"), priors=_priors(meta["priors"]),
                features=_names(meta["features"], "features"), learned=_names(meta["learned"], "learned", empty=True),
                prior_weight=_number(meta["prior_weight"], "prior_weight"), cap=_number(meta["cap"], "cap"),
                temperature=_number(meta["temperature"], "temperature"), threshold=_number(meta["threshold"], "threshold"),
                margin=_number(meta["margin"], "margin"), info=_mapping(meta.get("info", {}), "info"),
                # Heads made before the rule have none: 1 answers as they always did.
                mobility=_number(meta.get("mobility", 1.0), "mobility"),
                **{k: _array(tensors[k], k) for k in _HEAD_TENSORS},
            )
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise ModelFileError(f"{path}: the genre head is incomplete or invalid ({reason})") from None
        problem = head.problem()
        if problem is not None:
            raise ModelFileError(f"{path}: the genre head's arrays or settings are inconsistent ({problem})")
        return head

    def problem(self) -> str | None:
        """What makes this head unusable, or ``None``: shapes, values and names are all checked."""
        n = len(self.genres)
        if not 0 < n <= MAX_HEAD_GENRES or len({genre_key(g) for g in self.genres}) != n:
            return "genres empty, too many or repeated"
        if len(self.priors) != n or any(p is not None and p not in GENRE_TAGS for p in self.priors):
            return "priors"
        if not self.features or len(set(self.features)) != len(self.features) or any(f not in HEAD_FEATURES for f in self.features):
            return "features"
        if len(set(self.learned)) != len(self.learned) or not set(self.learned) <= set(self.genres):
            return "learned genres"
        dim = sum(HEAD_FEATURES[f] for f in self.features)
        if (self.mean.shape != (dim,) or self.std.shape != (dim,) or self.weight.shape != (dim, n)
                or self.bias.shape != (n,) or self.prior_logit.shape != (n,)):
            return "array shapes"
        if not all(np.isfinite(getattr(self, k)).all() for k in _HEAD_TENSORS) or not (self.std > 0).all():
            return "array values"
        others = [j for j, g in enumerate(self.genres) if g not in self.learned]
        if np.any(self.weight[:, others]) or np.any(self.bias[others]) or np.any(self.prior_logit[others]):
            return "evidence for a genre not learned"
        if not (0 <= self.prior_weight <= 100 and 0 < self.cap <= 100 and 0.01 <= self.temperature <= 100
                and 0 <= self.threshold <= 1 and 0 <= self.margin <= 1 and 0 <= self.mobility <= 1):
            return "settings out of bounds"
        return None


_HEAD_TENSORS = ("mean", "std", "weight", "bias", "prior_logit")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _names(value: Any, what: str, *, empty: bool = False) -> list[str]:
    if not isinstance(value, list) or (not value and not empty) or len(value) > MAX_HEAD_GENRES:
        raise ValueError(f"{what} must be a list of names")
    if not all(isinstance(v, str) and v.strip() and len(v) <= 200 and "\n" not in v for v in value):
        raise ValueError(f"{what} must be non-empty one-line names")
    return list(value)


def _priors(value: Any) -> list[str | None]:
    if not isinstance(value, list) or not all(v is None or isinstance(v, str) for v in value):
        raise ValueError("priors must be a list of tag genres or nulls")
    return list(value)


def _number(value: Any, what: str) -> float:
    # bool is an int to Python, but never a setting: a file saying ``true`` is not a head's.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    return float(value)


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object")
    return dict(value)


def _array(value: np.ndarray, what: str) -> np.ndarray:
    if value.dtype != np.float32:
        raise ValueError(f"{what} must be float32, not {value.dtype}")
    return value.astype(np.float64)


def tagger_tags() -> dict[str, list[str]]:
    """Each tagger of :data:`TAGGER_NAMES`'s 50 tag names, in output order (read from the packaged
    weights' metadata, without loading them)."""
    return {name: list(meta[0]) for name, meta in _tagger_meta().items()}


def tagger_params() -> FeatureParams:
    """The taggers' input parameters (musicnn's), read from the packaged weights' metadata without
    loading them (or torch).

    Raises
    ------
    ModelFileError
        A weight file is unreadable, or the taggers ask for different input.
    """
    found = {name: meta[1] for name, meta in _tagger_meta().items()}
    first = next(iter(found.values()))
    if any(p != first for p in found.values()):
        raise ModelFileError(f"the taggers {', '.join(found)} ask for different input; reinstall genrify")
    return first


@functools.cache
def _tagger_meta() -> dict[str, tuple[tuple[str, ...], FeatureParams]]:
    from genrify.models.taggers import read_tags

    out = {}
    for name in TAGGER_NAMES:
        tags, meta = read_tags(name)
        out[name] = (tuple(tags), FeatureParams.from_dict(meta["features"]))
    return out


def tag_scores(taggrams: dict[str, np.ndarray] | dict[str, torch.Tensor], tags: dict[str, list[str]]) -> Any:
    """The 15 tag genres' normalised scores ``(n, 15)`` from the taggers' taggrams ``(n, 50)``.

    Works on numpy arrays and torch tensors alike (the network and the benchmarks share it); only
    tensors import torch.
    """
    first = next(iter(taggrams.values()))
    xp_torch = _is_tensor(first)
    if xp_torch:
        import torch
    total = torch.zeros(first.shape[0], len(GENRE_TAGS)) if xp_torch else np.zeros((first.shape[0], len(GENRE_TAGS)))
    counts = np.zeros(len(GENRE_TAGS))
    for name, taggram in taggrams.items():
        index = {t: i for i, t in enumerate(tags[name])}
        for j, genre in enumerate(GENRE_TAGS):
            wanted = [index[t] for t in GENRE_TAGS[genre].get(name, ())]
            if wanted:
                total[:, j] += taggram[:, wanted].max(1)[0] if xp_torch else taggram[:, wanted].max(1)
                counts[j] += 1
    scores = total / (torch.from_numpy(np.maximum(counts, 1)).float() if xp_torch else np.maximum(counts, 1))
    return scores / (scores.sum(1, keepdim=True) if xp_torch else scores.sum(1, keepdims=True)).clip(min=1e-12)


def prior_table(scores: np.ndarray) -> np.ndarray:
    """``log [S, even share]`` ``(n, 16)``: each tag genre's log-score and, last, :data:`EVEN_SHARE`'s
    (the prior of a genre without tags); a head's :meth:`GenreHead.prior_columns` index it."""
    even = np.full((scores.shape[0], 1), EVEN_SHARE)
    return np.log(np.maximum(np.concatenate([np.asarray(scores, dtype=np.float64), even], axis=1), _SCORE_FLOOR))


def keep_unlearned_mass(combined: Any, prior: Any, unlearned: Any, mobility: float) -> Any:
    """Log probabilities in which the unlearned genres keep the total their priors give them, but for
    a share ``mobility`` of the change the evidence would make to it.

    With ``p = softmax(combined)`` (prior and evidence) and ``q = softmax(prior)``, the unlearned
    genres' total becomes ``m = q_U + mobility * (p_U - q_U)``: shared among them as ``p`` shares it
    (their evidence is zero, so as their priors do), and the learned genres share ``1 - m`` as ``p``
    does. Works on numpy arrays and torch tensors alike, rows ``(n, genres)``; ``unlearned`` is a
    bool mask ``(genres,)`` (or one per row, ``(n, genres)``, the same number of genres in each).
    With ``mobility`` 1, without unlearned genres or without learned ones, ``combined`` itself.
    """
    if isinstance(combined, np.ndarray):
        mask = np.broadcast_to(np.asarray(unlearned, dtype=bool), combined.shape)
        count = int(mask[0].sum()) if len(mask) else 0
        if mobility >= 1 or count in (0, combined.shape[1]):
            return combined

        def lse(v: np.ndarray, keep: np.ndarray) -> np.ndarray:
            return logsumexp(np.where(keep, v, -np.inf), axis=1)

        log_sigmoid = lambda v: -np.logaddexp(0.0, -v)
        log, log1p, exp, where = np.log, np.log1p, np.exp, np.where
    else:
        import torch  # a tensor came in, so torch is loaded already

        mask = torch.as_tensor(unlearned, dtype=torch.bool, device=combined.device).expand_as(combined)
        count = int(mask[0].sum()) if len(mask) else 0
        if mobility >= 1 or count in (0, combined.shape[1]):
            return combined

        def lse(v: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
            return torch.logsumexp(v.masked_fill(~keep, float("-inf")), dim=1)

        log_sigmoid, log, log1p, exp, where = (torch.nn.functional.logsigmoid, torch.log, torch.log1p, torch.exp,
                                               torch.where)
    a_u, a_l = lse(combined, mask), lse(combined, ~mask)
    p_u, q_u = exp(log_sigmoid(a_u - a_l)), exp(log_sigmoid(lse(prior, mask) - lse(prior, ~mask)))
    m = (q_u + mobility * (p_u - q_u)).clip(1e-12, 1 - 1e-12)
    return where(mask, combined - a_u[:, None] + log(m)[:, None], combined - a_l[:, None] + log1p(-m)[:, None])


def _is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch for a numpy array."""
    return type(value).__module__.split(".")[0] == "torch"


def combine(scores: np.ndarray, evidence: np.ndarray | None, head: GenreHead | None) -> np.ndarray:
    """The logits ``(n, genres)`` of the head's vocabulary (of :data:`GENRES` without a head) from
    tag scores ``(n, 15)`` and the head's evidence (:meth:`GenreHead.evidence`)."""
    table = prior_table(scores)
    if head is None:
        return table[:, _TAG_ONLY_COLUMNS]
    prior = head.prior_weight * table[:, head.prior_columns()]
    if evidence is None:
        return prior / head.temperature
    return keep_unlearned_mass(prior + evidence, prior, head.unlearned(), head.mobility) / head.temperature


# The tags alone: the tag genres score themselves, reggae and disco take an even share.
_TAG_ONLY_COLUMNS = [list(GENRE_TAGS).index(g) if g in GENRE_TAGS else len(GENRE_TAGS) for g in GENRES]


@functools.cache
def _network_class() -> type:
    """:class:`BuiltinGenreNetwork`, defined on first use: it is a :class:`torch.nn.Module`, and this
    module must import without torch (classification runs the taggers on ONNX Runtime in numpy)."""
    import torch
    from torch import nn

    class BuiltinGenreNetwork(nn.Module):
        """Two pretrained taggers, the tag-to-genre map and the genre head: musicnn patches in, logits out.

        Takes ``(batch, 96, 187)`` (bands, frames) as genrify's prediction cuts segments, and returns
        the logits of the genres asked for (a softmax over them is the answer): :func:`combine` in
        torch. :meth:`BuiltinGenreModel.logits` computes the same in numpy without torch.
        """

        def __init__(self, taggers: dict[str, nn.Module], tags: dict[str, list[str]], head: GenreHead | None,
                     genres: Sequence[str], onnx: dict[str, Any] | None = None, reference: GenreHead | None = None,
                     reference_columns: Sequence[int] = ()) -> None:
            super().__init__()
            self.taggers = nn.ModuleDict(taggers)
            # The same taggers on ONNX Runtime (about twice as fast on a CPU), used for input on the CPU.
            self.onnx = dict(onnx or {})
            self.tags = {name: list(tags[name]) for name in taggers}
            self.head = head
            vocabulary = list(head.genres) if head is not None else list(GENRES)
            self.register_buffer("chosen", torch.tensor([vocabulary.index(g) for g in genres]), persistent=False)
            columns = head.prior_columns() if head is not None else _TAG_ONLY_COLUMNS
            self.register_buffer("prior_columns", torch.tensor(columns), persistent=False)
            for prefix, one in (("head", head), ("ref", reference)):
                if one is not None:
                    for key in _HEAD_TENSORS:
                        self.register_buffer(f"{prefix}_{key}", torch.from_numpy(getattr(one, key)).float(),
                                             persistent=False)
                    self.register_buffer(f"{prefix}_unlearned", torch.from_numpy(one.unlearned()), persistent=False)
            # BuiltinGenreModel.reference: the packaged head, whose belief in a learned head's genres
            # (these columns) flags a song of none of them.
            self.reference = reference
            self.reference_columns = list(reference_columns)
            if reference is not None:
                self.register_buffer("ref_prior_columns", torch.tensor(reference.prior_columns()), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.forward_with_embedding(x)[0]

        def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """The logits and :data:`EMBEDDING` of each patch (the taggers compute the embedding anyway;
            ``tests/test_embedcache.py`` checks the embedding cache against it)."""
            logits, embedding = self.forward_all(x)
            return logits[:, self.chosen], embedding

        def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """:meth:`forward_with_embedding` with the logits of every genre of the vocabulary, asked
            for or not (at :attr:`chosen`: the genres asked for)."""
            logits, embedding, _ = self._forward(x, reference=False)
            return logits, embedding

        def forward_with_reference(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            """The logits of every genre of the vocabulary, and the :attr:`reference` head's (``None``:
            none), from the same tagger outputs: :meth:`BuiltinGenreModel.asked_probabilities` in torch."""
            logits, _, ref = self._forward(x, reference=True)
            return logits, ref

        def _forward(self, x: torch.Tensor, *, reference: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
            patches = x.transpose(1, 2).float()  # (batch, frames, bands), the taggers' layout
            if self.onnx and x.device.type == "cpu":
                outputs = {name: self.onnx[name](patches) for name in self.taggers}
            else:
                outputs = {name: tagger(patches) for name, tagger in self.taggers.items()}
            scores = tag_scores({n: o["taggram"] for n, o in outputs.items()}, self.tags).to(x.device)
            even = torch.full((x.shape[0], 1), EVEN_SHARE, device=x.device)
            tag_logits = torch.log(torch.cat([scores, even], dim=1).clamp(min=_SCORE_FLOOR))
            logits = self._head_logits("head", self.head, tag_logits[:, self.prior_columns], outputs)
            ref = None
            if reference and self.reference is not None:
                ref = self._head_logits("ref", self.reference, tag_logits[:, self.ref_prior_columns], outputs)
            return logits, outputs[EMBEDDING[0]][EMBEDDING[1]], ref

        def _head_logits(self, prefix: str, head: GenreHead | None, logits: torch.Tensor,
                         outputs: dict[str, Any]) -> torch.Tensor:
            """:func:`combine` in torch: a head (its buffers under ``prefix``) on the tags' logits."""
            if head is None:
                return logits
            weights = {key: getattr(self, f"{prefix}_{key}") for key in (*_HEAD_TENSORS, "unlearned")}
            parts = [outputs[f.split("/")[0]][f.split("/")[1]].float() for f in head.features]
            z = (torch.cat(parts, dim=1) - weights["mean"]) / weights["std"]
            evidence = z @ weights["weight"] + weights["bias"] - weights["prior_logit"]
            evidence = head.cap * torch.tanh(evidence / head.cap)
            prior = head.prior_weight * logits
            return keep_unlearned_mass(prior + evidence, prior, weights["unlearned"], head.mobility) / head.temperature

    # Found by pickle (and documentation) under this module's name, through __getattr__ below.
    BuiltinGenreNetwork.__module__ = __name__
    BuiltinGenreNetwork.__qualname__ = "BuiltinGenreNetwork"
    return BuiltinGenreNetwork


def __getattr__(name: str) -> Any:
    # ``BuiltinGenreNetwork`` is made when first asked for, so that importing this module needs no torch.
    if name == "BuiltinGenreNetwork":
        return _network_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def split_asked(logits: np.ndarray, columns: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Logits over every genre ``(n, genres)`` to the probabilities among ``columns`` (the genres
    asked for) and the share of all the probability those hold ``(n,)``.

    Each softmax starts from its own largest logit, so that a share of 1e-300 never turns the
    answer among the genres asked into 0/0.
    """
    full = np.asarray(logits, dtype=np.float64)
    asked = full[:, list(columns)]
    return softmax(asked, axis=1), np.exp(logsumexp(asked, axis=1) - logsumexp(full, axis=1))


@dataclass
class BuiltinGenreModel:
    """The built-in model, usable wherever a trained genre model is (a ``predict.Classifier``).

    :meth:`logits` and :meth:`probabilities` answer in numpy: with the taggers on ONNX Runtime they
    never import torch. :attr:`network` is the same model as a :class:`torch.nn.Module` (for a GPU,
    and for callers that run modules), built on first use.
    """

    genres: list[str]
    params: FeatureParams
    chunk_frames: int
    name: str = NAME
    info: dict[str, Any] = field(default_factory=dict)
    #: Top probability under which the answer is flagged as unsure (set by measurement, see the head).
    confidence_threshold: float = 0.3
    #: An answer whose two most probable genres are closer than this is flagged as unsure (0: never).
    near_tie_margin: float = 0.0
    #: Patches per forward pass of the torch network (a GPU's batches).
    batch_size: int = 8
    #: Patches per ONNX Runtime call. The taggers' front ends hold tens of MB of activations per
    #: patch and the runtime's arena keeps its peak: one patch a call kept a classification near
    #: 170 MB (807 MB at 8), and on one thread it was no slower (0.208 against 0.224 CPU s a song).
    onnx_batch_size: int = 1
    #: The genre head (``None``: the tags alone).
    head: GenreHead | None = None
    #: Each tagger's 50 tag names, in output order.
    tags: dict[str, list[str]] = field(default_factory=dict)
    #: The vocabulary's genres answered, as :attr:`genres` names them (the head's, or :data:`GENRES`).
    chosen: list[str] = field(default_factory=list)
    #: The taggers on ONNX Runtime (:class:`genrify.models.onnx.TaggerGraph`), by name; empty: PyTorch.
    onnx: dict[str, Any] = field(default_factory=dict)
    #: For a head learned from a library whose every genre the packaged head knows: the packaged
    #: head, whose share of belief in those genres flags a song of none of them (``other genre``,
    #: as ``--genres`` does); ``None`` otherwise.
    reference: GenreHead | None = None
    #: The learned genres' columns among :attr:`reference`'s genres.
    reference_columns: list[int] = field(default_factory=list)
    # The torch network, made by :attr:`network` when first asked for.
    _network: Any = field(default=None, repr=False, compare=False)

    @property
    def genrify_version(self) -> str | None:
        """The genrify that made its head: this one for the packaged head (it ships with it), the
        version a learned head records (``None`` where it records none), ``None`` for the tags alone."""
        if self.head is None:
            return None
        version = self.head.info.get("genrify_version")
        if version is None and "learned_from" not in self.head.info:  # the packaged head (a learned one says whence)
            return __version__
        return str(version) if version is not None else None

    @property
    def architecture(self) -> str:
        """What it is, as a model file's ``architecture`` says it: :data:`NAME` (the taggers and a
        genre head, packaged or learned), for the web page's model list."""
        return NAME

    @property
    def network(self) -> nn.Module:
        """The model as a :class:`torch.nn.Module` (``BuiltinGenreNetwork``), built (the taggers'
        torch networks loaded, torch imported) the first time it is asked for: only a GPU, or a
        caller that wants torch, asks; :meth:`probabilities` answers in numpy."""
        return self.build_network()

    def build_network(self) -> nn.Module:
        """:attr:`network`, built now (the taggers' torch networks loaded, torch imported)."""
        if self._network is None:
            from genrify.models.musicnn import load_tagger

            taggers = {name: load_tagger(name) for name in TAGGER_NAMES}
            self._network = _network_class()(
                {n: t.network for n, t in taggers.items()}, {n: t.tags for n, t in taggers.items()}, self.head,
                self.chosen, onnx=self.onnx or None, reference=self.reference,
                reference_columns=self.reference_columns,
            ).eval()
        return self._network

    def tagger_outputs(self, patches: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Each tagger's ``taggram`` and ``penultimate`` for patches ``(n, 187, 96)`` (frames, bands),
        in numpy: on ONNX Runtime where it runs them, else on the torch networks."""
        if self.onnx:
            return {name: self.onnx[name].run(patches) for name in TAGGER_NAMES}
        import torch

        x = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32))
        network = self.build_network()
        with torch.inference_mode():
            return {name: {k: v.float().cpu().numpy() for k, v in tagger(x.to(module_device(tagger))).items()}
                    for name, tagger in network.taggers.items()}

    @property
    def restricted(self) -> bool:
        """The model answers among some genres only: some of its own (``--genres``), or a learned
        head's, which are some of the packaged head's (:attr:`reference`). Its answers then carry
        the share of belief those genres hold (:meth:`asked_probabilities`)."""
        return len(self.chosen) < len(self._vocabulary) or self.reference is not None

    @property
    def _vocabulary(self) -> list[str]:
        return list(self.head.genres) if self.head is not None else list(GENRES)

    @property
    def _chosen_columns(self) -> list[int]:
        """The columns of :attr:`chosen` among :attr:`_vocabulary`'s."""
        vocabulary = self._vocabulary
        return [vocabulary.index(g) for g in self.chosen]

    def logits(self, segments: np.ndarray) -> np.ndarray:
        """The logits ``(n, genres)`` of segments ``(n, 96, 187)`` (bands, frames), as
        :attr:`network` gives them, computed in numpy (float64): :func:`tag_scores`,
        :meth:`GenreHead.evidence` and :func:`combine`. Never imports torch where the taggers run on
        ONNX Runtime; the segments go through :attr:`onnx_batch_size` (on PyTorch :attr:`batch_size`) at a time."""
        return self._all_logits(segments)[0][:, self._chosen_columns]

    def _all_logits(self, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`logits` over every genre of the vocabulary, asked for or not; and the
        :attr:`reference` head's over its genres, from the same tagger outputs (``None``: none)."""
        segments = np.asarray(segments)
        if segments.ndim != 3 or segments.shape[1:] != (self.params.n_mels, self.chunk_frames):
            raise ParameterError(f"expected segments of shape (n, {self.params.n_mels}, {self.chunk_frames}), "
                                 f"got {segments.shape}")
        out = np.empty((segments.shape[0], len(self._vocabulary)), dtype=np.float64)
        ref = self.reference
        ref_out = np.empty((segments.shape[0], len(ref.genres)), dtype=np.float64) if ref is not None else None
        step = max(1, self.onnx_batch_size if self.onnx else self.batch_size)
        for start in range(0, segments.shape[0], step):
            batch = segments[start : start + step]
            patches = np.ascontiguousarray(batch.transpose(0, 2, 1), dtype=np.float32)  # the taggers' layout
            outputs = self.tagger_outputs(patches)
            scores = tag_scores({n: np.asarray(o["taggram"], dtype=np.float64) for n, o in outputs.items()}, self.tags)
            evidence = self.head.evidence(self.head.inputs(outputs)) if self.head is not None else None
            out[start : start + batch.shape[0]] = combine(scores, evidence, self.head)
            if ref is not None and ref_out is not None:
                ref_out[start : start + batch.shape[0]] = combine(scores, ref.evidence(ref.inputs(outputs)), ref)
        return out, ref_out

    def probabilities(self, segments: np.ndarray) -> np.ndarray:
        """Each segment's genre probabilities ``(n, genres)``: the softmax of :meth:`logits`."""
        return self.asked_probabilities(segments)[0]

    def asked_probabilities(self, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`probabilities`, and the share of each segment's probability over every genre of
        the vocabulary that the genres asked for hold ``(n,)`` (1 where all are asked for): a song
        whose share is small is most likely none of them, whatever the answer among them says.

        For a learned head with a :attr:`reference`, the share is also the packaged head's belief in
        the learned genres (times the share of those asked for among them): a song of a genre the
        library never taught is then flagged as the built-in model flags one outside ``--genres``.
        """
        full, ref = self._all_logits(segments)
        answer, share = split_asked(full, self._chosen_columns)
        if ref is not None:
            share = share * split_asked(ref, self.reference_columns)[1]
        return answer, share


def load_builtin(
    genres: Sequence[str] | None = None, *, head: GenreHead | str | Path | None | bool = True, runtime: str = "auto"
) -> BuiltinGenreModel:
    """The built-in genre model, over its head's genres (:data:`GENRES` for the packaged head and
    the tags alone) or the ones asked for.

    With the taggers on ONNX Runtime (``auto`` where it is installed) building the model reads the
    packaged head and the taggers' tag names only, and imports no torch; the taggers' torch networks
    are loaded when :attr:`BuiltinGenreModel.network` is first asked for.

    Parameters
    ----------
    genres
        Restrict the answer to these genres (or aliases); the probabilities are renormalised over
        them.
    head
        The genre head: ``True`` for the packaged one, a :class:`GenreHead` or the path of a head
        file (one ``genrify learn`` wrote: it answers over its own genres), or ``False``/``None``
        for the tags alone over :data:`GENRES` (reggae and disco then only ever get an even share).
    runtime
        How the taggers run on a CPU: ``auto`` (ONNX Runtime where it is installed, see
        :mod:`genrify.models.onnx`; else PyTorch), ``onnx`` or ``torch``. On a GPU they run on PyTorch.

    Raises
    ------
    ParameterError
        An unknown genre.
    ModelFileError
        The packaged weights are missing or damaged.
    """
    from genrify.models import onnx

    if runtime not in ("auto", "onnx", "torch"):
        raise ParameterError(f"unknown runtime {runtime!r}; choose auto, onnx or torch")
    if isinstance(head, (str, Path)):
        head = GenreHead.load(head)
    genre_head = GenreHead.load() if head is True else (head or None)
    chosen = resolve_genres(genres, genre_head.genres if genre_head is not None else GENRES)
    onnx_ready = all(onnx.available(n) for n in TAGGER_NAMES)
    use_onnx = runtime == "onnx" or (runtime == "auto" and onnx_ready)
    if use_onnx and not onnx_ready:
        raise DependencyError("ONNX Runtime is not installed (pip install onnxruntime) or the taggers' graphs are missing")
    params = tagger_params()  # also checks that the weights are there and readable
    info: dict[str, Any] = {
        "description": "genres from the pretrained musicnn taggers (MSD_musicnn and MTT_musicnn) and a genre head "
                       "learned from real music, no training needed",
        "taggers": list(TAGGER_NAMES),
        "runtime": "onnxruntime" if use_onnx else "torch",
        "licence": "musicnn weights: ISC, Jordi Pons and Xavier Serra (see NOTICE)",
    }
    if genre_head is not None:
        info["head"] = genre_head.info
    reference, reference_columns = reference_head(genre_head)
    model = BuiltinGenreModel(
        genres=[shown for shown, _ in chosen],
        params=params,
        chunk_frames=onnx.PATCH_SHAPE[0],
        info=info,
        confidence_threshold=genre_head.threshold if genre_head is not None else 0.3,
        near_tie_margin=genre_head.margin if genre_head is not None else 0.0,
        head=genre_head,
        tags=tagger_tags(),
        chosen=[g for _, g in chosen],
        onnx={n: onnx.tagger_graph(n) for n in TAGGER_NAMES} if use_onnx else {},
        reference=reference,
        reference_columns=reference_columns,
    )
    if not use_onnx:
        model.build_network()  # the torch taggers are the only runtime: load them (and fail) now
    return model


def other_genre_check(genres: Sequence[str], info: Any) -> list[str] | None:
    """What each genre of a learned head means among :data:`GENRES`, where the built-in model's
    belief can flag a song of none of them (``other genre``): every genre it learned is one the
    packaged head knows (the head's own record, ``info["builtin_genres"]``, made with the genre map
    it was learned with; else its name) and they are not all of them. ``None`` otherwise, and for
    the packaged head (whose ``info`` names no library it was learned from)."""
    if not isinstance(info, dict) or "learned_from" not in info:
        return None
    names = [_meant(genre, info) for genre in genres]
    if any(name is None for name in names) or set(names) == set(GENRES):
        return None
    return [str(name) for name in names]


def unknown_genres(genres: Sequence[str], info: Any) -> list[str]:
    """The genres of a learned head that mean none of :data:`GENRES` (as :func:`other_genre_check`
    reads them): while there are any, nothing flags a song of a genre the head did not learn."""
    return [genre for genre in genres if _meant(genre, info if isinstance(info, dict) else {}) is None]


def _meant(genre: str, info: dict[str, Any]) -> str | None:
    """What a learned head's genre means among :data:`GENRES`: its own record, else its name."""
    recorded = info.get("builtin_genres")
    name = (recorded.get(genre) if isinstance(recorded, dict) else None) or builtin_genre(genre)
    return name if name in GENRES else None


def reference_head(head: GenreHead | None) -> tuple[GenreHead | None, list[int]]:
    """The packaged head and the columns of a learned head's genres among its genres, where
    :func:`other_genre_check` finds a check; else ``(None, [])``: a genre of the library's own
    ("shoegaze") has no share the packaged head could give."""
    meant = other_genre_check(head.genres, head.info) if head is not None else None
    if meant is None:
        return None, []
    reference = GenreHead.load()
    return reference, sorted({reference.genres.index(name) for name in meant})
