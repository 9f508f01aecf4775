"""A model named, not loaded: a model file, or the built-in model over some genres.

Two kinds answer one interface (:class:`ModelRef`):

- :class:`ModelFile`: a model file made by ``genrify train`` (its genres, feature parameters and
  segment length come from the file's metadata, read without the weights);
- :class:`BuiltinModel`: the built-in pretrained model (:mod:`genrify.models.builtin`), answering
  among some of its genres (its parameters are the musicnn taggers' constants).

Either knows its name, genres, feature parameters and results-cache key without loading the model,
loads it once per process (:meth:`ModelRef.load`, shared by the CLI, the web app and every worker),
and pickles as a small value (a path, or genre names): what a remote worker needs to load the
model itself. Make one with :meth:`ModelRef.file` or :meth:`ModelRef.builtin`.

>>> from genrify.classify.modelref import ModelRef
>>> ref = ModelRef.builtin(["rock", "jazz"])                 # doctest: +SKIP
>>> ref.genres, ref.is_builtin                               # doctest: +SKIP
(['rock', 'jazz'], True)
"""

from __future__ import annotations

import abc
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from genrify.errors import ModelFileError

if TYPE_CHECKING:
    from genrify.audio.features import FeatureParams


class ModelRef(abc.ABC):
    """What the classification service needs of a model before (and for) loading it.

    The two kinds are :class:`ModelFile` and :class:`BuiltinModel`; :meth:`file` and
    :meth:`builtin` make them. Every kind is a frozen, picklable value.

    Attributes
    ----------
    is_builtin
        True for the built-in model.
    """

    is_builtin: ClassVar[bool]

    @staticmethod
    def file(path: str | Path) -> ModelFile:
        """A model file made by ``genrify train`` (checked when first read, not here)."""
        return ModelFile(os.fspath(path))

    @staticmethod
    def builtin(genres: Sequence[str] | None = None) -> BuiltinModel:
        """The built-in pretrained model, answering among ``genres`` (names or aliases; ``None``: all).

        Raises
        ------
        ParameterError
            An unknown genre, or one asked for twice.
        """
        from genrify.models.builtin import resolve_genres

        chosen = tuple(g.strip() for g in genres if g.strip()) if genres else None
        resolve_genres(chosen)  # an unknown genre fails here, once, never on every worker
        return BuiltinModel(chosen or None)

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """What tables and summaries call the model: the file's name, or the built-in model's."""

    @property
    def metadata(self) -> dict[str, Any]:
        """A model file's validated genrify metadata; empty for the built-in model."""
        return {}

    @property
    @abc.abstractmethod
    def genres(self) -> list[str]:
        """The genres the model answers with, in its output order (without loading it)."""

    @property
    @abc.abstractmethod
    def params(self) -> FeatureParams:
        """The model's feature parameters (without loading it)."""

    @property
    @abc.abstractmethod
    def chunk_frames(self) -> int:
        """Frames per segment the model reads (without loading it)."""

    @property
    @abc.abstractmethod
    def cache_key(self) -> str:
        """The model's identity in the results cache (:class:`genrify.classify.results.ResultCache`)."""

    def check(self) -> None:
        """Fail now, with one line, where the model cannot be used (a missing or bad file, unknown
        genres), before any work.

        Raises
        ------
        ModelFileError, ParameterError
        """
        self.genres  # noqa: B018 - reads and validates the metadata (or the built-in genres)

    def for_workers(self) -> ModelRef:
        """This reference as workers that run elsewhere, in other folders, need it."""
        return self

    @property
    def worker_files(self) -> tuple[str, ...]:
        """The files a worker must see to load the model (none for the built-in model, which is
        packaged with genrify)."""
        return ()

    @abc.abstractmethod
    def _identity(self) -> tuple[Hashable, ...]:
        """The key of the loaded model in this process: a new key loads it again. Its first item
        names the model (a file's absolute path), so that an older version of it is dropped."""

    @abc.abstractmethod
    def _build(self) -> Any:
        """Load the model from scratch."""

    @property
    def calibrated(self) -> bool:
        """Whether the model's probabilities were calibrated on songs it never heard: a learned genre
        head (the built-in model's, answering among all its genres, or a file from ``genrify learn``
        learned from songs of enough artists), whose temperature the learner chose by
        artist-grouped cross-validation. Then the mean of the
        answers' top probabilities estimates the share of them that are right
        (:func:`genrify.classify.predict.expected_accuracy`). A network from ``genrify train`` was not
        calibrated; neither is the built-in model asked for some of its genres only (a song of
        another genre gets one of those anyway)."""
        return False

    @property
    @abc.abstractmethod
    def answers_in_numpy(self) -> bool:
        """Whether the model answers in numpy on this machine's CPU (ONNX Runtime, no torch): then
        it is cheap to load in every worker of a local pool. Told without loading it."""

    def load(self) -> Any:
        """The model, loaded once per process (in eval mode) while its file is unchanged.

        The CLI, the web app and every worker share it; loading is safe
        (:func:`genrify.models.modelfile.load` never runs code from the file).

        Raises
        ------
        ModelFileError
            The file is missing or not a genrify model.
        """
        key = self._identity()
        with _MODELS_LOCK:
            model = _MODELS.get(key)
            if model is not None:
                _MODELS.move_to_end(key)
                return model
            model = self._build()
            if not hasattr(model, "probabilities"):
                # A torch model (a model file made before graphs, on PyTorch). The numpy models
                # (a graph on ONNX Runtime, the built-in model) have no train mode; asking for
                # their network would import torch.
                model.network.eval()
            for old in [k for k in _MODELS if k[0] == key[0]]:  # an older version of the same file
                del _MODELS[old]
            _MODELS[key] = model
            while len(_MODELS) > _MODELS_KEPT:
                _MODELS.popitem(last=False)
            return model


@dataclass(frozen=True)
class ModelFile(ModelRef):
    """A model file made by ``genrify train``; its genres, parameters and segment length are in its
    metadata.

    Attributes
    ----------
    path
        The model file as given.
    """

    path: str

    is_builtin: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return Path(self.path).name

    @cached_property
    def metadata(self) -> dict[str, Any]:  # type: ignore[override]
        """The file's validated genrify metadata (:func:`genrify.models.modelfile.read_metadata`),
        read without the weights.

        Raises
        ------
        ModelFileError
            The file is missing or not a genrify model.
        """
        from genrify.models import modelfile

        return modelfile.read_metadata(self.path)

    @property
    def genres(self) -> list[str]:
        return list(self.metadata["genres"])

    @property
    def params(self) -> FeatureParams:
        from genrify.audio.features import FeatureParams

        return FeatureParams.from_dict(self.metadata["features"])

    @property
    def chunk_frames(self) -> int:
        return int(self.metadata["chunk_frames"])

    @property
    def cache_key(self) -> str:
        """The file's SHA-256 (the key earlier versions wrote: their caches stay valid); a learned
        head that flags songs of other genres (:func:`genrify.models.builtin.other_genre_check`)
        adds ``:other-genre``, since answers cached before carried no share to flag them by.

        Raises
        ------
        ModelFileError
            The file cannot be read.
        """
        from genrify.classify.results import file_digest
        from genrify.models.builtin import other_genre_check

        try:
            digest = file_digest(self.path)
        except OSError as exc:
            raise ModelFileError(f"{self.path}: model file cannot be read ({exc.strerror or exc})") from None
        flags = other_genre_check(self.metadata["genres"], self.metadata.get("info"))
        return digest + (":other-genre" if flags is not None else "")

    @property
    def calibrated(self) -> bool:
        from genrify.models.modelfile import is_calibrated_head

        return is_calibrated_head(self.path)

    def for_workers(self) -> ModelFile:
        """This reference with an absolute path: workers run elsewhere, in other folders."""
        return ModelFile(os.path.abspath(self.path))

    @property
    def worker_files(self) -> tuple[str, ...]:
        """The model file."""
        return (self.path,)

    def _identity(self) -> tuple[Hashable, ...]:
        path = os.path.abspath(self.path)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ModelFileError(f"{self.path}: model file not found ({exc.strerror or exc})") from None
        return (path, st.st_size, st.st_mtime_ns)

    def check(self) -> None:
        """Fail now, with one line, where the file cannot be used: missing, not a model, or a file
        made before genrify stored ONNX graphs where PyTorch is not installed (the line says how to
        convert it: ``genrify export``). Reads the header only.

        Raises
        ------
        ModelFileError
        """
        from genrify.models import modelfile

        self.genres  # noqa: B018 - reads and validates the metadata
        problem = modelfile.not_runnable(self.path)
        if problem is not None:
            raise ModelFileError(problem)

    def _build(self) -> Any:
        from genrify.models import modelfile

        # Its ONNX graph on ONNX Runtime where the file has one (no torch), else the torch network.
        return modelfile.load(self.path)

    @property
    def answers_in_numpy(self) -> bool:
        """A learned head (numpy), or a network whose file holds its graph where ONNX Runtime is
        installed; from the header alone."""
        from genrify.models import modelfile

        return modelfile.runtime_for(self.path) in ("head", "onnx")


@dataclass(frozen=True)
class BuiltinModel(ModelRef):
    """The built-in pretrained model (:mod:`genrify.models.builtin`) over some of its genres.

    Made directly, nothing is imported or checked (the beets plugin's default costs nothing until
    used); :meth:`ModelRef.builtin` checks the genres first.

    Attributes
    ----------
    chosen
        The genres asked for, names or aliases (``None``: all of them).
    """

    chosen: tuple[str, ...] | None = None

    is_builtin: ClassVar[bool] = True

    @property
    def name(self) -> str:
        from genrify.models.builtin import NAME

        return NAME

    @property
    def calibrated(self) -> bool:
        return self.chosen is None

    @property
    def genres(self) -> list[str]:
        from genrify.models.builtin import resolve_genres

        return [shown for shown, _ in resolve_genres(self.chosen)]

    @property
    def params(self) -> FeatureParams:
        from genrify.models.taggers import MUSICNN_PARAMS

        return MUSICNN_PARAMS

    @property
    def chunk_frames(self) -> int:
        from genrify.models.taggers import PATCH_FRAMES

        return PATCH_FRAMES

    @property
    def cache_key(self) -> str:
        """The built-in model's name, genrify's version (which fixes its weights) and the genres;
        some genres only: ``:asked-share`` too (answers cached before they carried
        :attr:`~genrify.classify.predict.Prediction.asked_share` are not reused)."""
        from genrify import __version__

        return f"builtin:{self.name}:{__version__}:{','.join(self.genres)}" + (":asked-share" if self.chosen else "")

    def _identity(self) -> tuple[Hashable, ...]:
        return ("builtin", self.chosen)

    def _build(self) -> Any:
        from genrify.models.builtin import load_builtin

        return load_builtin(list(self.chosen) if self.chosen else None)

    @property
    def answers_in_numpy(self) -> bool:
        """Its taggers' graphs ship with genrify: wherever ONNX Runtime is installed."""
        from genrify.models import onnx
        from genrify.models.builtin import TAGGER_NAMES

        return all(onnx.available(name) for name in TAGGER_NAMES)


#: Models loaded in this process by :meth:`ModelRef.load`. Keys: ``(absolute path, size, mtime)``
#: for a model file, ``("builtin", genres)`` for the built-in model.
_MODELS: OrderedDict[tuple[Hashable, ...], Any] = OrderedDict()
_MODELS_LOCK = threading.Lock()
_MODELS_KEPT = 2


def loaded_models() -> list[tuple[Any, ...]]:
    """The keys of the models :meth:`ModelRef.load` holds in this process, oldest first."""
    with _MODELS_LOCK:
        return list(_MODELS)


__all__ = ["BuiltinModel", "ModelFile", "ModelRef", "loaded_models"]
