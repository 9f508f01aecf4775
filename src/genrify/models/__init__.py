"""Genre models for log-mel chunks, by name.

Every architecture takes a batch of normalised log-mel chunks ``(batch, n_mels, frames)`` and
returns logits ``(batch, n_genres)``. Each lives in its own module and registers itself here, so a
model file names its architecture and the registry rebuilds it: no code is ever loaded from a file.
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


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators.
    from genrify.models import resnet, seed_cnn  # noqa: F401
