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
share of its training data), so the tags act as the prior and the head moves them as far as its
data supports: a genre the head was not trained on keeps its tag score, and a patch unlike any of
the head's genres leaves the tags in charge. Per patch,
``logit_g = (log S_g + beta * cap * tanh(LLR_g / cap)) / temperature``: the evidence is bounded
(``cap`` = 2 nats, a factor of at most 7.4 on a genre's odds), because a linear head fitted on a few
hundred GTZAN excerpts extrapolates wildly on music unlike them (unbounded, it cost 5 of the 20
out-of-domain clips of ``real/genre-samples``; bounded, 2). Reggae and disco, which have no tags,
start from an even share. The song's answer is the mean of its patches' softmax, as for any genrify model;
asking for a few genres (``--genres``) renormalises the same logits over them.

``beta``, the head's regularisation and the temperature were chosen by fitting on one
artist-disjoint half of the excerpts and measuring on the other, then swapping; the unsure threshold
by measurement on real music against speech and animal sounds. ``scripts/train_builtin_head.py``
makes the packaged head, and ``benchmarks/builtin_accuracy.py`` repeats the cross-check against the
tags alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genrify.errors import DependencyError, ModelFileError, ParameterError
from genrify.features import FeatureParams

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
#: The taggers the model runs.
TAGGER_NAMES = ("MSD_musicnn", "MTT_musicnn")
#: The head's input: this tagger's output of this name.
EMBEDDING = ("MSD_musicnn", "penultimate")
NAME = "genrify-musicnn"
#: Where the packaged head lives.
HEAD_PATH = Path(__file__).resolve().parents[1] / "pretrained" / "genre_head.safetensors"
HEAD_FORMAT = "genrify-genre-head"
HEAD_FORMAT_VERSION = 1
# Tag scores below this are clipped before the log: a tag's absence is evidence, not certainty.
_SCORE_FLOOR = 1e-4


def resolve_genres(names: Sequence[str] | None) -> list[tuple[str, str]]:
    """``(shown name, vocabulary genre)`` for each name asked for (all genres for ``None``).

    Raises
    ------
    ParameterError
        A name that is neither a genre nor an alias, or the same genre twice.
    """
    if names is None:
        return [(g, g) for g in GENRES]
    out: list[tuple[str, str]] = []
    for raw in names:
        name = raw.strip()
        key = name.lower()
        genre = key if key in GENRES else ALIASES.get(key)
        if genre is None:
            raise ParameterError(
                f"the built-in model knows no genre {name!r}; it knows {', '.join(GENRES)}"
                f" (and {', '.join(sorted(ALIASES))} as other names)"
            )
        if genre in {g for _, g in out}:
            raise ParameterError(f"genre {name!r} is asked for twice (as {genre})")
        out.append((name, genre))
    if not out:
        raise ParameterError("no genres asked for")
    return out


@dataclass
class GenreHead:
    """One logistic regression per genre on a tagger embedding, and how it joins the tags.

    Attributes
    ----------
    genres
        The vocabulary genres it was trained on, in column order.
    mean, std
        Standardisation of the embedding ``(dim,)``.
    weight, bias
        ``(dim, genres)`` and ``(genres,)``: each genre's log-odds.
    prior_logit
        Log-odds of each genre's share of the training data (removed to leave the evidence).
    beta
        Weight of the head's evidence against the tags'.
    cap
        Bound of the evidence (``cap * tanh(llr / cap)``, in nats): a linear model fitted on a few
        hundred excerpts extrapolates wildly on music unlike them, and must not overrule the tags.
    temperature
        Divides the combined logits (calibration).
    threshold
        Top probability under which an answer is flagged as unsure.
    info
        What it was trained on and measured with (shown by ``genrify info``-like displays).
    """

    genres: list[str]
    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    prior_logit: np.ndarray
    beta: float = 1.0
    cap: float = 2.0
    temperature: float = 1.0
    threshold: float = 0.3
    info: dict[str, Any] = field(default_factory=dict)

    def evidence(self, embedding: np.ndarray) -> np.ndarray:
        """The head's bounded log likelihood ratios ``(n, genres)`` for embeddings ``(n, dim)``."""
        z = (np.asarray(embedding, dtype=np.float64) - self.mean) / self.std
        return self.cap * np.tanh((z @ self.weight + self.bias - self.prior_logit) / self.cap)

    def save(self, path: str | Path) -> Path:
        """Write the head as a safetensors file (plain arrays; the metadata is JSON)."""
        from safetensors.numpy import save_file

        from genrify.fsutil import atomic_path

        meta = {
            "format": HEAD_FORMAT, "version": HEAD_FORMAT_VERSION, "genres": self.genres,
            "embedding": list(EMBEDDING), "beta": self.beta, "cap": self.cap, "temperature": self.temperature,
            "threshold": self.threshold, "info": self.info,
        }
        tensors = {k: np.ascontiguousarray(getattr(self, k), dtype=np.float32)
                   for k in ("mean", "std", "weight", "bias", "prior_logit")}
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"genrify": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | Path = HEAD_PATH) -> GenreHead:
        """Read a head written by :meth:`save`; every field is checked, no code is run.

        Raises
        ------
        ModelFileError
            Missing, unreadable or inconsistent.
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: the built-in model's genre head is missing; reinstall genrify")
        try:
            with safe_open(str(path), framework="numpy") as f:
                raw = (f.metadata() or {}).get("genrify")
                tensors = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}  # noqa: SIM118
            meta = json.loads(raw or "null")
        except Exception as exc:  # noqa: BLE001 - safetensors and json raise several types
            raise ModelFileError(f"{path}: not a readable genre head ({type(exc).__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != HEAD_FORMAT:
            raise ModelFileError(f"{path}: not a genrify genre head")
        try:
            genres = [str(g) for g in meta["genres"]]
            head = cls(genres=genres, mean=tensors["mean"], std=tensors["std"], weight=tensors["weight"],
                       bias=tensors["bias"], prior_logit=tensors["prior_logit"], beta=float(meta["beta"]),
                       cap=float(meta["cap"]), temperature=float(meta["temperature"]), threshold=float(meta["threshold"]),
                       info=dict(meta.get("info") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: the genre head is incomplete ({type(exc).__name__}: {exc})") from None
        dim, n = head.weight.shape if head.weight.ndim == 2 else (0, 0)
        if (not genres or len(set(genres)) != len(genres) or any(g not in GENRES for g in genres) or n != len(genres)
                or head.mean.shape != (dim,) or head.std.shape != (dim,) or head.bias.shape != (n,)
                or head.prior_logit.shape != (n,) or not all(np.isfinite(t).all() for t in tensors.values())
                or not (head.std > 0).all() or not head.temperature > 0 or not np.isfinite(head.beta) or not head.cap > 0
                or not 0 <= head.threshold <= 1):
            raise ModelFileError(f"{path}: the genre head's arrays or settings are inconsistent")
        return head


def fit_head(
    embedding: np.ndarray,
    labels: Sequence[str],
    *,
    C: float = 0.03,
    beta: float = 1.0,
    cap: float = 2.0,
    info: dict[str, Any] | None = None,
) -> GenreHead:
    """Fit a :class:`GenreHead`: one L2-regularised logistic regression per genre in ``labels``.

    Parameters
    ----------
    embedding
        ``(n, dim)`` tagger embeddings (:data:`EMBEDDING`), one row per patch.
    labels
        Each row's vocabulary genre.
    C
        Inverse regularisation strength (scikit-learn's).
    beta
        Weight of the head's evidence against the tags'.
    cap
        Bound of the evidence in nats (see :class:`GenreHead`).
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(embedding, dtype=np.float64)
    y = np.asarray(labels)
    genres = [g for g in GENRES if (y == g).any()]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    weight = np.zeros((x.shape[1], len(genres)))
    bias = np.zeros(len(genres))
    prior = np.zeros(len(genres))
    for j, genre in enumerate(genres):
        target = (y == genre).astype(int)
        share = target.mean()
        prior[j] = np.log(share / (1 - share)) if share < 1 else 0.0
        if share == 1:  # one genre only: no evidence to learn
            continue
        model = LogisticRegression(C=C, max_iter=5000).fit(z, target)
        weight[:, j], bias[j] = model.coef_[0], model.intercept_[0]
    return GenreHead(genres, mean, std, weight, bias, prior, beta=beta, cap=cap, info=dict(info or {}))


def fit_temperature(logits: np.ndarray, targets: Sequence[int]) -> float:
    """The temperature that makes softmax(logits / T) best predict ``targets`` (least log loss).

    ``logits`` must come from a model that did not learn from these examples (held-out answers),
    or the temperature only measures how well it remembers them. Searched on a log grid from 0.2
    to 5.
    """
    z0 = np.asarray(logits, dtype=np.float64)
    rows = np.arange(z0.shape[0])
    target = np.asarray(targets)

    def loss(t: float) -> float:
        z = z0 / t
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[rows, target] - np.log(np.exp(z).sum(axis=1))).mean())

    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 161))
    return float(grid[int(np.argmin([loss(t) for t in grid]))])


def tag_scores(taggrams: dict[str, np.ndarray] | dict[str, torch.Tensor], tags: dict[str, list[str]]) -> Any:
    """The 15 tag genres' normalised scores ``(n, 15)`` from the taggers' taggrams ``(n, 50)``.

    Works on numpy arrays and torch tensors alike (the network and the benchmarks share it).
    """
    first = next(iter(taggrams.values()))
    xp_torch = isinstance(first, torch.Tensor)
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


def combine(scores: np.ndarray, evidence: np.ndarray | None, head: GenreHead | None) -> np.ndarray:
    """The vocabulary's logits ``(n, len(GENRES))`` from tag scores ``(n, 15)`` and head evidence."""
    n = scores.shape[0]
    even = np.full((n, len(HEAD_ONLY_GENRES)), 1.0 / len(GENRE_TAGS))
    logits = np.log(np.maximum(np.concatenate([scores, even], axis=1), _SCORE_FLOOR))
    if head is not None and evidence is not None:
        columns = [GENRES.index(g) for g in head.genres]
        logits[:, columns] += head.beta * evidence
        logits /= head.temperature
    return logits


class BuiltinGenreNetwork(nn.Module):
    """Two pretrained taggers, the tag-to-genre map and the genre head: musicnn patches in, logits out.

    Takes ``(batch, 96, 187)`` (bands, frames) as genrify's prediction cuts segments, and returns
    the logits of the genres asked for (a softmax over them is the answer).
    """

    def __init__(self, taggers: dict[str, nn.Module], tags: dict[str, list[str]], head: GenreHead | None,
                 genres: Sequence[str], onnx: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.taggers = nn.ModuleDict(taggers)
        # The same taggers on ONNX Runtime (about twice as fast on a CPU), used for input on the CPU.
        self.onnx = dict(onnx or {})
        self.tags = {name: list(tags[name]) for name in taggers}
        self.head = head
        self.register_buffer("chosen", torch.tensor([GENRES.index(g) for g in genres]), persistent=False)
        if head is not None:
            for key in ("mean", "std", "weight", "bias", "prior_logit"):
                self.register_buffer(f"head_{key}", torch.from_numpy(getattr(head, key)).float(), persistent=False)
            self.register_buffer("head_columns", torch.tensor([GENRES.index(g) for g in head.genres]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = x.transpose(1, 2).float()  # (batch, frames, bands), the taggers' layout
        if self.onnx and x.device.type == "cpu":
            outputs = {name: self.onnx[name](patches) for name in self.taggers}
        else:
            outputs = {name: tagger(patches) for name, tagger in self.taggers.items()}
        scores = tag_scores({n: o["taggram"] for n, o in outputs.items()}, self.tags)
        even = torch.full((x.shape[0], len(HEAD_ONLY_GENRES)), 1.0 / len(GENRE_TAGS), device=x.device)
        logits = torch.log(torch.cat([scores.to(x.device), even], dim=1).clamp(min=_SCORE_FLOOR))
        if self.head is not None:
            z = (outputs[EMBEDDING[0]][EMBEDDING[1]] - self.head_mean) / self.head_std
            evidence = z @ self.head_weight + self.head_bias - self.head_prior_logit
            evidence = self.head.cap * torch.tanh(evidence / self.head.cap)
            logits = logits.index_add(1, self.head_columns, self.head.beta * evidence)
            logits = logits / self.head.temperature
        return logits[:, self.chosen]


@dataclass
class BuiltinGenreModel:
    """The built-in model, usable wherever a trained genre model is (a ``predict.Classifier``)."""

    network: nn.Module
    genres: list[str]
    params: FeatureParams
    chunk_frames: int
    name: str = NAME
    info: dict[str, Any] = field(default_factory=dict)
    #: Top probability under which the answer is flagged as unsure (set by measurement, see the head).
    confidence_threshold: float = 0.3
    #: Patches per forward pass: the taggers' front ends hold about 15 MB per patch.
    batch_size: int = 8


def load_builtin(
    genres: Sequence[str] | None = None, *, head: GenreHead | None | bool = True, runtime: str = "auto"
) -> BuiltinGenreModel:
    """The built-in genre model, over all of :data:`GENRES` or the ones asked for.

    Parameters
    ----------
    genres
        Restrict the answer to these genres (or aliases); the probabilities are renormalised over
        them.
    head
        The genre head: ``True`` for the packaged one, a :class:`GenreHead`, or ``False``/``None``
        for the tags alone (reggae and disco then only ever get an even share).
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
    from genrify.models.musicnn import MUSICNN_PARAMS, PATCH_FRAMES, load_tagger

    if runtime not in ("auto", "onnx", "torch"):
        raise ParameterError(f"unknown runtime {runtime!r}; choose auto, onnx or torch")
    chosen = resolve_genres(genres)
    taggers = {name: load_tagger(name) for name in TAGGER_NAMES}
    genre_head = GenreHead.load() if head is True else (head or None)
    use_onnx = runtime == "onnx" or (runtime == "auto" and all(onnx.available(n) for n in TAGGER_NAMES))
    if use_onnx and not all(onnx.available(n) for n in TAGGER_NAMES):
        raise DependencyError("ONNX Runtime is not installed (pip install onnxruntime) or the taggers' graphs are missing")
    network = BuiltinGenreNetwork(
        {n: t.network for n, t in taggers.items()}, {n: t.tags for n, t in taggers.items()}, genre_head,
        [g for _, g in chosen], onnx={n: onnx.OnnxTagger(n) for n in TAGGER_NAMES} if use_onnx else None,
    ).eval()
    info: dict[str, Any] = {
        "description": "genres from the pretrained musicnn taggers (MSD_musicnn and MTT_musicnn) and a genre head "
                       "learned from real music, no training needed",
        "taggers": list(TAGGER_NAMES),
        "runtime": "onnxruntime" if use_onnx else "torch",
        "licence": "musicnn weights: ISC, Jordi Pons and Xavier Serra (see NOTICE)",
    }
    if genre_head is not None:
        info["head"] = genre_head.info
    return BuiltinGenreModel(
        network=network,
        genres=[shown for shown, _ in chosen],
        params=MUSICNN_PARAMS,
        chunk_frames=PATCH_FRAMES,
        info=info,
        confidence_threshold=genre_head.threshold if genre_head is not None else 0.3,
    )
