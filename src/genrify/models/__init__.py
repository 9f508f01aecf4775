"""Genre models for log-mel chunks, by name.

Every architecture takes a batch of normalised log-mel chunks ``(batch, n_mels, frames)`` and
returns logits ``(batch, n_genres)``. Each lives in its own module and registers itself here, so a
model file names its architecture and the registry rebuilds it: no code is ever loaded from a file.
:class:`GenreNetwork` puts the input normalisation in front of an architecture, so that a network
takes chunks in dB as they come from the store or from a song.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from genrify.errors import ParameterError

Builder = Callable[..., torch.nn.Module]
_REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Class decorator: make an architecture buildable by ``name``."""

    def decorate(builder: Builder) -> Builder:
        _REGISTRY[name] = builder
        return builder

    return decorate


def architectures() -> list[str]:
    """Names of the registered architectures."""
    _load_builtin()
    return sorted(_REGISTRY)


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
    _load_builtin()
    if name not in _REGISTRY:
        raise ParameterError(f"unknown architecture {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](n_mels=n_mels, n_genres=n_genres, **config)
    except TypeError as exc:
        raise ParameterError(f"architecture {name!r}: {exc}") from None


class GenreNetwork(torch.nn.Module):
    """An architecture with its input normalisation: log-mel chunks in dB in, logits out.

    Parameters
    ----------
    body
        The architecture (normalised ``(batch, n_mels, frames)`` in, logits out).
    mean, std
        Per-band statistics of the training data, ``(n_mels,)``. They are buffers that are not part
        of ``state_dict``: the model file keeps them apart, as ``norm.mean`` and ``norm.std``.
    """

    def __init__(self, body: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("mean", mean.reshape(1, -1, 1).float(), persistent=False)
        self.register_buffer("std", std.reshape(1, -1, 1).float(), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """float32, normalised per band; accepts float16 and transposed views (as the store gives)."""
        return (x.float() - self.mean) / self.std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The body's pooled embedding of dB chunks."""
        return self.body.embed(self.normalize(x))  # type: ignore[operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators.
    from genrify.models import resnet, seed_cnn, timbre_temporal, transfer  # noqa: F401
