"""genrify: sort music into genres with deep learning."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    # pyproject.toml holds the one version; the installed metadata carries it here.
    __version__ = version("genrify")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

from genrify.errors import (
    AudioError,
    AudioTooLongError,
    DependencyError,
    GenreMapError,
    GenrifyError,
    GenrifyIOError,
    LabelError,
    LibraryError,
    ModelFileError,
    OrganizeError,
    ParameterError,
    PredictionError,
    SplitError,
    StoreError,
    TagError,
    TrainingError,
    UntaggableError,
    UsageError,
)

__all__ = [
    "AudioError",
    "AudioTooLongError",
    "DependencyError",
    "GenreMapError",
    "GenrifyError",
    "GenrifyIOError",
    "LabelError",
    "LibraryError",
    "ModelFileError",
    "OrganizeError",
    "ParameterError",
    "PredictionError",
    "SplitError",
    "StoreError",
    "TagError",
    "TrainingError",
    "UntaggableError",
    "UsageError",
    "__version__",
]
