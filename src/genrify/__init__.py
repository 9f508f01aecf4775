"""genrify: sort music into genres with deep learning."""

from __future__ import annotations

__version__ = "0.1.0"

from genrify.errors import (
    AudioError,
    GenrifyError,
    LibraryError,
    ModelFileError,
    ParameterError,
    SplitError,
    StoreError,
    TrainingError,
)

__all__ = [
    "AudioError",
    "GenrifyError",
    "LibraryError",
    "ModelFileError",
    "ParameterError",
    "SplitError",
    "StoreError",
    "TrainingError",
    "__version__",
]
