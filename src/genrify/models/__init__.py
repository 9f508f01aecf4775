"""Genre models by name: each architecture registers itself with what it reads and how it trains.

Every architecture takes a batch of normalised log-mel chunks ``(batch, n_mels, frames)`` and
returns logits ``(batch, n_genres)``. Each lives in its own module and registers itself here, so a
model file names its architecture and the registry rebuilds it: no code is ever loaded from a file.
The entry (:class:`Architecture`) also declares the model's input (a feature store's chunks, or
audio turned into features at the model's own parameters) and its trainer (:data:`CHUNKS` or
:data:`EMBEDDINGS`): training, evaluation and the CLI ask the entry, never compare names.
:class:`GenreNetwork` puts the input normalisation in front of an architecture, so that a network
takes chunks in dB as they come from the store or from a song.

Importing this package needs no PyTorch (classification runs without it): the names of the
architectures are :data:`genrify.defaults.ARCHITECTURES`, the architectures' modules (which define
torch modules) are imported when an entry is first asked for, and :class:`GenreNetwork` lives in
:mod:`genrify.models.network`, made available here when first asked for.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genrify.errors import ParameterError

# The CNNs' 'same' padding with even kernels makes torch warn once per process that it copies the
# input. Set here, not only where seed_cnn is imported: the architectures' modules are now first
# imported while a model file is built, inside a warnings.catch_warnings() block that would drop it.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel", category=UserWarning)

if TYPE_CHECKING:
    import torch

    from genrify.audio.features import FeatureParams

Builder = Callable[..., "torch.nn.Module"]

#: Trainer of a whole network on a feature store's log-mel chunks (:mod:`genrify.learn.training`).
CHUNKS = "chunks"
#: Trainer of a head on embeddings that a frozen pretrained model computes once per track from the
#: audio and caches in the store (:mod:`genrify.learn.embeddings`); the network must have a ``head``.
EMBEDDINGS = "embeddings"
TRAINERS = (CHUNKS, EMBEDDINGS)


@dataclass(frozen=True)
class Architecture:
    """A registry entry: how to build an architecture, what it reads and how it trains.

    Attributes
    ----------
    name
        The name model files and ``--arch`` use.
    builder
        Called with ``n_mels``, ``n_genres`` and the architecture's options.
    params
        ``None``: the model reads a feature store's log-mel chunks, at whatever parameters the
        store has (they are then saved in the model file). Otherwise the model reads audio, turned
        into features with these parameters of its own (a pretrained model's), whatever a store
        holds.
    chunk_frames
        With ``params``: the frames of one segment the model reads; ``None`` takes the training
        settings' chunk length.
    trainer
        :data:`CHUNKS` or :data:`EMBEDDINGS`.
    """

    name: str
    builder: Builder
    params: FeatureParams | None = None
    chunk_frames: int | None = None
    trainer: str = CHUNKS

    @property
    def reads_audio(self) -> bool:
        """Whether the model reads audio at its own feature parameters rather than a store's features."""
        return self.params is not None


_REGISTRY: dict[str, Architecture] = {}


def register(
    name: str,
    *,
    params: FeatureParams | None = None,
    chunk_frames: int | None = None,
    trainer: str = CHUNKS,
) -> Callable[[Builder], Builder]:
    """Class decorator: make an architecture buildable by ``name`` (see :class:`Architecture`)."""
    if trainer not in TRAINERS:
        raise ParameterError(f"architecture {name!r}: unknown trainer {trainer!r}; choose one of {', '.join(TRAINERS)}")

    def decorate(builder: Builder) -> Builder:
        _REGISTRY[name] = Architecture(name, builder, params=params, chunk_frames=chunk_frames, trainer=trainer)
        return builder

    return decorate


def unregister(name: str) -> None:
    """Forget an architecture registered by :func:`register` (a test's or a plugin's); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def architectures() -> list[str]:
    """Names of the registered architectures: genrify's own (:data:`genrify.defaults.ARCHITECTURES`,
    named without importing their modules, which need torch) and any registered since."""
    from genrify.defaults import ARCHITECTURES

    return sorted(set(ARCHITECTURES) | set(_REGISTRY))


def architecture(name: str) -> Architecture:
    """The registry entry of an architecture.

    Raises
    ------
    ParameterError
        Unknown name.
    """
    _load_builtin()
    if name not in _REGISTRY:
        raise ParameterError(f"unknown architecture {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build(name: str, *, n_mels: int, n_genres: int, **config: Any) -> torch.nn.Module:
    """Build an architecture by name.

    Parameters
    ----------
    name
        A registered architecture (see :func:`architectures`).
    n_mels, n_genres
        Input bands and output classes.
    **config
        The architecture's own options (widths, dropout, ...).

    Raises
    ------
    ParameterError
        Unknown name or options.
    """
    entry = architecture(name)
    try:
        return entry.builder(n_mels=n_mels, n_genres=n_genres, **config)
    except TypeError as exc:
        raise ParameterError(f"architecture {name!r}: {exc}") from None


def __getattr__(name: str) -> Any:
    # GenreNetwork is a torch module: its module (and torch) is imported when it is first asked for,
    # so that importing the registry costs nothing where torch is not installed.
    if name == "GenreNetwork":
        from genrify.models.network import GenreNetwork

        return GenreNetwork
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators.
    from genrify.models import resnet, seed_cnn, timbre_temporal, transfer  # noqa: F401
