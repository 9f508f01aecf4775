"""genrify: sort music into genres with deep learning."""

from __future__ import annotations

__version__ = "0.1.0"

from genrify.errors import AudioError, GenrifyError, LibraryError, ParameterError, StoreError

__all__ = [
    "AudioError",
    "GenrifyError",
    "LibraryError",
    "ParameterError",
    "StoreError",
    "__version__",
]
