"""The exceptions genrify raises, and what each kind means to the command line and the web app.

Every error a user can cause derives from :class:`GenrifyError`, so a caller (the CLI, the web app)
can catch one type and print one line. The message always names the file or object concerned and
what is wrong with it. The kind of error, not its message, decides the CLI's exit status and the web
app's HTTP status: :data:`STATUS` maps each class to both, and :func:`exit_code` and
:func:`http_status` look an error up in it (a subclass inherits its nearest listed ancestor's row).

- :class:`UsageError`: a bad option value (exit 2, as a mistyped command; HTTP 422).
- :class:`GenrifyIOError`: the system refused to read or write something that is not audio (an
  output file, a folder, a socket): exit 1; HTTP 507, the server's storage, not the client's input.
- :class:`DependencyError`: an optional package, a GPU or a cluster that is not there: exit 1;
  HTTP 503, the service cannot answer now.
- Every other :class:`GenrifyError`: bad input (exit 1; HTTP 422).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path


class GenrifyError(Exception):
    """Base class of every error caused by bad input, a bad request or a missing part of the environment."""


class ParameterError(GenrifyError, ValueError):
    """An argument is out of range or inconsistent with another.

    A settings object that checks itself (:class:`genrify.collection.tagpolicy.TagPolicy`,
    :class:`genrify.classify.service.ClassifyOptions`) names the setting at fault, so that a front
    end can say the same thing in its own words (the CLI names its option and exits 2) without
    checking the value again.

    Parameters
    ----------
    message
        The whole message, naming the setting as the Python API does (``min_probability``).
    field
        The setting at fault (a dataclass field's name), where one is.
    problem
        What is wrong, said after the setting's name (``"must be between 0 and 1, not 2"``); other
        settings it mentions are written as ``{field_name}`` placeholders (:meth:`said_of` fills them).
    """

    def __init__(self, message: str, *, field: str | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem

    def said_of(self, names: Callable[[str], str]) -> str:
        """The message with each setting called by ``names`` (a field name -> e.g. a CLI option).

        ``"<name of field> <problem>"`` where both are known; ``"<name of field>: <message>"``
        where only the field is; the message itself otherwise.
        """
        if self.field is None:
            return str(self)
        if self.problem is None:
            return f"{names(self.field)}: {self}"
        # Checks that name another setting quote no text the user typed (numbers at most), so a
        # {name} in a problem is a placeholder.
        problem = re.sub(r"\{([a-z_]+)\}", lambda m: names(m.group(1)), self.problem)
        return f"{names(self.field)} {problem}"


class UsageError(ParameterError):
    """A command-line option has a bad value (``--top-k 0``, ``--port 70000``): the command was
    mistyped, as when an option is missing, so the CLI exits 2 before any work."""


class GenrifyIOError(GenrifyError):
    """A file or folder that is not audio cannot be read or written (an output file, a report, the
    upload directory), or an address cannot be listened on: the operating system said no."""


class DependencyError(GenrifyError):
    """Something genrify needs from its environment is missing: an optional package (ONNX Runtime,
    Dask), a CUDA device, a reachable Dask scheduler."""


class AudioError(GenrifyError):
    """An audio file cannot be decoded: unreadable, empty, truncated or unsupported."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AudioTooLongError(AudioError):
    """An audio file is longer than the caller's limit (``max_duration``, ``--max-duration``): it
    may be fine audio, refused for its length alone."""


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


class LabelError(LibraryError):
    """A library's genre tags (or genre folders) cannot teach a model: no file has a genre, or
    only one genre is left to learn."""


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


class UntaggableError(TagError):
    """A file whose format holds no genre tag genrify reads or writes (wma, aac, ac3...): its
    answer stands, its tags are left alone, and runs count it apart from failures."""


class GenreMapError(ParameterError):
    """A genre map file (TOML) cannot be used: missing, unreadable, bad TOML, an unknown section or
    key, a name that is not a string, an alias claimed by two genres, a cycle of parent genres.

    A bad file is bad input, not a mistyped command: it takes :class:`GenrifyError`'s row in
    :data:`STATUS` (exit 1, HTTP 422), as a :class:`ParameterError` does.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class OrganizeError(GenrifyError):
    """A library cannot be sorted into folders as asked (e.g. the destination lies inside a source)."""


#: For each kind of error, the CLI's exit status and the web app's HTTP status.
STATUS: dict[type[BaseException], tuple[int, int]] = {
    GenrifyError: (1, 422),
    UsageError: (2, 422),
    GenrifyIOError: (1, 507),
    DependencyError: (1, 503),
}
#: What anything else gets: an unexpected exception is a bug (a traceback, or HTTP 500).
_UNEXPECTED = (1, 500)


def _status(error: BaseException | type[BaseException]) -> tuple[int, int]:
    kind = error if isinstance(error, type) else type(error)
    # The nearest listed class along the MRO: a subclass of UsageError is a usage error even if it
    # also derives from another listed class further up.
    return next((STATUS[cls] for cls in kind.__mro__ if cls in STATUS), _UNEXPECTED)


def exit_code(error: BaseException | type[BaseException]) -> int:
    """The ``genrify`` command's exit status for an error (or an error class).

    Parameters
    ----------
    error
        The exception, or its class.

    Returns
    -------
    int
        2 for a :class:`UsageError`, 1 for every other error.
    """
    return _status(error)[0]


def http_status(error: BaseException | type[BaseException]) -> int:
    """The web app's HTTP status for an error (or an error class).

    Parameters
    ----------
    error
        The exception, or its class.

    Returns
    -------
    int
        503 for a :class:`DependencyError`, 507 for a :class:`GenrifyIOError`, 422 for any other
        :class:`GenrifyError` (bad input), 500 for anything else (a bug).
    """
    return _status(error)[1]
