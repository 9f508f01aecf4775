"""The models a web app offers: :class:`ModelEntry` and what the page shows about each.

>>> from genrify.web.catalogue import ModelEntry
>>> entry = ModelEntry.from_file("genres.safetensors")   # doctest: +SKIP
>>> entry.to_dict()["genres"]                            # doctest: +SKIP
['blues', 'metal', 'pop', 'rock']
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrify.errors import ParameterError

if TYPE_CHECKING:
    from genrify.classify.predict import Classifier


@dataclass(frozen=True)
class ModelEntry:
    """A model the app offers: the classifier, the name the page shows, and what to tell about it.

    Attributes
    ----------
    name
        Shown in the page and passed as ``model`` to the API; unique within an app.
    model
        Anything with ``genres``, ``params``, ``chunk_frames`` and ``probabilities`` or ``network``
        (:class:`genrify.classify.predict.Classifier`), e.g. a :class:`genrify.models.modelfile.GenreModel`.
    metadata
        JSON-ready facts for ``GET /api/models``: ``architecture``, ``genres``, ``song_accuracy``
        (the training report's mean song accuracy, or ``None``), ``learned`` (a model made by
        ``genrify learn``: its cross-validated ``top1``, ``macro_recall`` and ``songs``, or ``None``),
        ``features``, ``segment_seconds``, ``card`` (the model card, :func:`genrify.models.modelcard.model_card`
        as :meth:`~genrify.models.modelcard.ModelCard.to_dict`), ... (:func:`describe` makes them from a model).
    description
        One line for people, e.g. where the model comes from.
    """

    name: str
    model: Classifier
    metadata: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 100:
            raise ParameterError(f"a model's name must be 1 to 100 characters, not {self.name!r}")
        if any(unicodedata.category(c).startswith("C") for c in self.name):
            raise ParameterError(f"a model's name must not hold control characters: {self.name!r}")
        for attr in ("genres", "params", "chunk_frames"):
            if not hasattr(self.model, attr):
                raise ParameterError(f"model {self.name!r} has no {attr!r}: not a genre classifier")
        # A model answers in numpy (`probabilities`) or through its torch network; asked in that
        # order, since asking a numpy model for its network would build it (and import torch).
        if not hasattr(self.model, "probabilities") and not hasattr(self.model, "network"):
            raise ParameterError(f"model {self.name!r} has no 'probabilities' or 'network': not a genre classifier")

    @classmethod
    def from_model(cls, name: str, model: Classifier, *, description: str = "", **extra: Any) -> ModelEntry:
        """An entry whose metadata :func:`describe` reads from the model (``extra`` is added to it)."""
        return cls(name=name, model=model, metadata={**describe(model), **extra}, description=description)

    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None, *, description: str = "") -> ModelEntry:
        """Load a model file (:meth:`genrify.classify.modelref.ModelRef.load`: once per process); the name
        defaults to the file's stem.

        Raises
        ------
        ModelFileError
            The file cannot be loaded.
        """
        from genrify.classify.modelref import ModelRef

        path = Path(path)
        return cls.from_model(name or path.stem, ModelRef.file(path).load(), description=description, file=path.name)

    @classmethod
    def builtin(cls, name: str = "built-in (musicnn)", genres: Sequence[str] | None = None) -> ModelEntry:
        """The built-in pretrained model (:meth:`genrify.classify.modelref.ModelRef.builtin`), loaded once per process.

        Raises
        ------
        ParameterError
            An unknown genre.
        ModelFileError
            The packaged weights are missing or damaged.
        """
        from genrify.classify.modelref import ModelRef

        # No description: its model card (genrify.models.modelcard) says what it is.
        return cls.from_model(name, ModelRef.builtin(genres).load())

    def to_dict(self) -> dict[str, Any]:
        """What ``GET /api/models`` says about this model."""
        return {"name": self.name, "description": self.description, **self.metadata}


def describe(model: Classifier) -> dict[str, Any]:
    """The facts about a model that the page shows: its model card, architecture, genres, the mean
    test song accuracy over its training runs (the card gives the run the file holds), features."""
    from genrify.models.modelcard import model_card

    info = getattr(model, "info", None) or {}
    summary = (info.get("summary") or {}) if isinstance(info, Mapping) else {}
    params = model.params
    return {
        "architecture": getattr(model, "architecture", None),
        "genres": list(model.genres),
        "song_accuracy": finite_number(summary.get("song_accuracy_mean")),
        "song_accuracy_std": finite_number(summary.get("song_accuracy_std")),
        "runs": summary.get("runs"),
        "features": params.to_dict(),
        "chunk_frames": int(model.chunk_frames),
        "segment_seconds": round(model.chunk_frames * params.seconds_per_frame, 4),
        "genrify_version": getattr(model, "genrify_version", None),
        "learned": _learned(info),
        "card": model_card(model).to_dict(),
    }


def _learned(info: Any) -> dict[str, Any] | None:
    """A learned head's cross-validated figures (``genrify learn``'s report), for the page; else ``None``."""
    report = info.get("learned") if isinstance(info, Mapping) else None
    if not isinstance(report, Mapping):
        return None
    songs = report.get("songs")
    return {"top1": finite_number(report.get("cv_top1")), "macro_recall": finite_number(report.get("cv_macro_recall")),
            "songs": songs if isinstance(songs, int) and not isinstance(songs, bool) else None}



def finite_number(value: Any) -> float | None:
    """A finite float, or ``None``: NaN has no place in strict JSON (``GET /api/models`` would fail)."""
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def entries_by_name(models: Sequence[ModelEntry] | Mapping[str, Classifier]) -> dict[str, ModelEntry]:
    """The app's models by name, in the order given (the first is the default).

    Parameters
    ----------
    models
        :class:`ModelEntry` objects, or a mapping from names to classifiers.

    Raises
    ------
    ParameterError
        No models, something that is not a :class:`ModelEntry`, or two models of one name.
    """
    if isinstance(models, Mapping):
        entries = [m if isinstance(m, ModelEntry) else ModelEntry.from_model(n, m) for n, m in models.items()]
    else:
        entries = list(models)
    if not entries:
        raise ParameterError("the web app needs at least one model")
    out: dict[str, ModelEntry] = {}
    for entry in entries:
        if not isinstance(entry, ModelEntry):
            raise ParameterError(f"expected ModelEntry objects, got {type(entry).__name__}")
        if entry.name in out:
            raise ParameterError(f"two models are named {entry.name!r}; names must be unique")
        out[entry.name] = entry
    return out
