"""The exceptions genrify raises.

Every error a user can cause derives from :class:`GenrifyError`, so a caller (the CLI, the web app)
can catch one type and print one line. The message always names the file or object concerned and
what is wrong with it.
"""

from __future__ import annotations

from pathlib import Path


class GenrifyError(Exception):
    """Base class of every error caused by bad input or a bad request."""


class ParameterError(GenrifyError, ValueError):
    """An argument is out of range or inconsistent with another."""


class AudioError(GenrifyError):
    """An audio file cannot be decoded: unreadable, empty, truncated or unsupported."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class PredictionError(GenrifyError):
    """A model cannot give a usable answer for one song (e.g. non-finite probabilities).

    Like :class:`AudioError`, it concerns one file: a library run reports it and goes on.
    """

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class LibraryError(GenrifyError):
    """A music folder cannot be scanned (missing, empty, or not laid out by genre)."""


class StoreError(GenrifyError):
    """A feature store cannot be opened or does not match the requested parameters."""


class SplitError(GenrifyError):
    """Tracks cannot be split into train, validation and test sets as asked."""


class ModelFileError(GenrifyError):
    """A model file is missing, damaged, not a genrify model, or made for other features."""


class TrainingError(GenrifyError):
    """Training cannot start or cannot go on (bad features, diverging loss)."""


class TagError(GenrifyError):
    """A file's tags cannot be read or written: unsupported format, damaged tags, read-only file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class OrganizeError(GenrifyError):
    """A library cannot be sorted into folders as asked (e.g. the destination lies inside a source)."""
