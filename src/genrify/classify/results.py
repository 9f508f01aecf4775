"""A small SQLite cache of classification results, so a library is classified once per model.

A result is keyed by the file's resolved path, size and modification time, the model's content
hash and the segment settings: a second ``genrify classify`` over an unchanged library with the
same model reads every answer from here, and a file that changed, or another model, is classified
anew. The cache only ever speeds a run up: a locked or unwritable cache means a run without one
(with a one-line warning, before any work where the system can tell: a read-only file or folder),
a cache that stops taking writes during a run (a full disk) is warned about once and read only from
then on, and a damaged genrify cache is set aside under a fresh name (with a warning). A cache
that cannot be written is never taken for a damaged one.

Nothing genrify did not make is ever renamed or replaced: a cache path that is a folder, a file
that is not SQLite, or another program's database is an error (:class:`ParameterError`). A
genrify cache carries :data:`APPLICATION_ID` in its SQLite header. Paths are keyed by their bytes
(:func:`os.fsencode`), so a name that is not valid UTF-8 is cached like any other.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from genrify.collection.library import display_path
from genrify.errors import ParameterError

#: ``PRAGMA application_id`` of a genrify results cache ("Gnrf"). It sits in the file's 100-byte
#: header, so a cache is recognised as genrify's even when the rest of the file is damaged.
APPLICATION_ID = 0x476E7266
_SCHEMA_VERSION = 2  # PRAGMA user_version; 2: paths are keyed by their bytes
_SQLITE_MAGIC = b"SQLite format 3\x00"
_COLUMNS = ["path", "size", "mtime_ns", "model", "settings", "result", "created"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    path BLOB NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    model TEXT NOT NULL,
    settings TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (path, model, settings)
)
"""


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/genrify/results.sqlite`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genrify" / ResultCache.FILE_NAME


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (the identity of a model file)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class _NotOurs(Exception):
    """A healthy SQLite database that is not this kind of genrify cache (``app_id``: its
    application id, where it has one)."""

    def __init__(self, message: str, *, app_id: int | None = None) -> None:
        super().__init__(message)
        self.app_id = app_id


#: ``PRAGMA application_id`` of genrify's embedding cache ("Gnre", :mod:`genrify.learn.embedcache`).
EMBEDDING_APPLICATION_ID = 0x476E7265
#: Application id -> what each kind of genrify cache is, so that one given for another is named.
_GENRIFY_CACHES: dict[int, str] = {APPLICATION_ID: "results cache", EMBEDDING_APPLICATION_ID: "embedding cache"}


def _busy(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _recognise(path: Path, app_id: int = APPLICATION_ID, what: str = "results cache",
               file_name: str = "results.sqlite") -> bool | None:
    """Whether an existing cache file is genrify's by its header.

    Returns ``None`` where there is nothing yet (or an empty file), ``True`` where the header
    carries ``app_id``, ``False`` for another SQLite file (decided by its tables later).
    ``what`` names the kind of cache in messages, and ``file_name`` its usual file name.

    Raises
    ------
    ParameterError
        ``path`` is a folder, not a regular file, a broken link, or not a SQLite file.
    OSError
        It cannot be read.
    """
    shown = display_path(path)
    leave = "genrify leaves it alone: choose another --cache-file"
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise ParameterError(f"{shown}: a dangling symbolic link, not a genrify {what}; {leave}") from None
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ParameterError(f"{shown}: cannot be a {what} ({exc.strerror}); {leave}") from None
        raise
    if stat.S_ISDIR(st.st_mode):
        raise ParameterError(f"{shown}: a folder, not a genrify {what}; give a file name such as "
                             f"{display_path(path / file_name)}")
    if not stat.S_ISREG(st.st_mode):
        raise ParameterError(f"{shown}: not a regular file, not a genrify {what}; {leave}")
    if st.st_size == 0:
        return None
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(_SQLITE_MAGIC):
        raise ParameterError(f"{shown}: not a SQLite file, so not a genrify {what}; {leave}")
    return int.from_bytes(header[68:72], "big") == app_id


def _damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite's error says the file itself is damaged, rather than that it cannot be opened
    or written now (read-only, a full disk, no permission): only damage sets a cache aside."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return not isinstance(exc, sqlite3.OperationalError)


def _unwritable(path: Path) -> str | None:
    """Why the system would refuse to write a cache at ``path``, or ``None`` where it would not.

    SQLite opens a read-only file without complaint and fails only at the first write, after the
    work: the file and the folder (its ``-wal`` and ``-shm`` files go there) are checked first.
    """
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        return "the file is read-only"
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:  # made on first use
        folder = folder.parent
    if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {display_path(folder)} is not writable"
    return None


def _set_aside(path: Path) -> Path:
    """Move a damaged cache (and its ``-wal``/``-shm`` files) to the first free ``.damaged`` name."""
    for n in itertools.count():
        aside = path.with_name(f"{path.name}.damaged" + (f"-{n}" if n else ""))
        if any(os.path.lexists(f"{aside}{end}") for end in ("", "-wal", "-shm")):
            continue
        try:
            os.link(path, aside)  # fails rather than replace a file that appeared meanwhile
        except FileExistsError:
            continue
        except OSError:  # no hard links here: the check above has to do
            os.rename(path, aside)
        else:
            os.unlink(path)
        for end in ("-wal", "-shm"):
            if os.path.lexists(f"{path}{end}"):
                os.rename(f"{path}{end}", f"{aside}{end}")
        return aside
    raise AssertionError("unreachable")


class ResultCache:
    """Classification results keyed by file identity, model and settings.

    Parameters
    ----------
    path
        The SQLite file (made, with its folder, on first use).
    model
        The model's identity (e.g. :func:`file_digest` of its file).
    settings
        Everything else that changes an answer (segment hop, maximum segments), JSON-ready.
    notify
        Called with one line when the cache cannot be used (the run goes on without it) or a
        damaged genrify cache was set aside.

    Raises
    ------
    ParameterError
        ``path`` is not a genrify cache: a folder, another kind of file, another program's
        database; it is left untouched.

    Notes
    -----
    Another kind of per-file cache (:class:`genrify.learn.embedcache.EmbeddingCache`) is a subclass that
    sets :attr:`APPLICATION_ID`, :attr:`WHAT` and :attr:`COMMIT_SECONDS` and overrides
    :meth:`encode` and :meth:`decode`: the same table, the same rules for damaged, locked and
    foreign files.
    """

    #: ``PRAGMA application_id`` that marks a file as this kind of cache.
    APPLICATION_ID: int = APPLICATION_ID
    #: What messages call this kind of cache.
    WHAT: str = "results cache"
    #: The file's name where none is given (:func:`default_cache_path`), suggested for a folder.
    FILE_NAME: str = "results.sqlite"
    #: Stored rows are committed at least this often (seconds); 0 commits every row at once.
    COMMIT_SECONDS: float = 1.0

    def __init__(
        self,
        path: str | Path,
        model: str,
        settings: dict[str, Any],
        *,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.model = model
        self.settings = json.dumps(settings, sort_keys=True, allow_nan=False)
        self.hits = 0
        self._notify = notify or (lambda line: None)
        self._db: sqlite3.Connection | None = None
        self._writable = True  # False once a write failed: answers are still read, no longer stored
        self._pending = 0
        self._last_commit = time.monotonic()
        shown = display_path(self.path)
        try:
            ours = _recognise(self.path, self.APPLICATION_ID, self.WHAT, self.FILE_NAME)
        except OSError as exc:  # e.g. no permission to read it: the run goes on without a cache
            self._notify(f"cannot read the {self.WHAT} {shown} ({exc.strerror or exc}); running without it")
            return
        why = _unwritable(self.path)
        if why is not None:  # said now, before the work, not after it at the first store
            self._db = self._open_read_only() if ours else None
            if self._db is not None:  # what it holds still saves the work: read, store nothing new
                self._writable = False
                self._notify(f"cannot write the {self.WHAT} {shown} ({why}); reading it, storing nothing new")
            else:
                self._notify(f"cannot write the {self.WHAT} {shown} ({why}); running without it")
            return
        try:
            self._db = self._connect()
        except _NotOurs as exc:
            other = _GENRIFY_CACHES.get(exc.app_id) if exc.app_id is not None else None
            whose = f"genrify's {other}" if other else f"a SQLite database of another program ({exc})"
            raise ParameterError(
                f"{shown}: {whose}, not a genrify {self.WHAT}; "
                "genrify leaves it alone: choose another --cache-file"
            ) from None
        except sqlite3.DatabaseError as exc:
            self._damaged(exc, ours)
        except OSError as exc:  # no writable cache folder: run without a cache
            self._notify(f"cannot create the {self.WHAT} {shown} ({exc.strerror or exc}); running without it")

    def _damaged(self, exc: sqlite3.DatabaseError, ours: bool | None) -> None:
        shown = display_path(self.path)
        if _busy(exc):  # another run holds it: never a reason to set a good cache aside
            self._notify(f"the {self.WHAT} {shown} is busy ({exc}); running without it")
            return
        if ours is None:  # nothing was there: the folder is not writable, say
            self._notify(f"cannot create the {self.WHAT} {shown} ({exc}); running without it")
            return
        if not _damage(exc):  # read-only, a full disk: the file is fine, and must stay where it is
            self._notify(f"cannot use the {self.WHAT} {shown} ({exc}); running without it")
            return
        if not ours:
            raise ParameterError(
                f"{shown}: a damaged SQLite file that genrify did not make ({exc}), not a genrify {self.WHAT}; "
                "genrify leaves it alone: choose another --cache-file"
            ) from None
        # Ours (our application id is in its header) but unreadable: it holds nothing worth keeping,
        # yet a person may want to look at it, so it is moved to a fresh name, never over another.
        try:
            aside = _set_aside(self.path)
            self._db = self._connect()
        except (OSError, sqlite3.DatabaseError) as again:
            self._notify(f"the {self.WHAT} {shown} is damaged ({exc}) and could not be replaced ({again}); "
                         "running without it")
            self._db = None
            return
        self._notify(f"the {self.WHAT} {shown} was damaged ({exc}); set it aside as {display_path(aside)} "
                     "and started a new one")

    def _open_read_only(self) -> sqlite3.Connection | None:
        """The cache opened only to read, or ``None`` where it cannot be read or is of another version.

        Opened as immutable: SQLite then reads the database file alone and makes no ``-shm`` or
        ``-wal`` file beside it (a read-only folder could not hold them, and a writable one should
        not be left with them). Rows still in another writer's log are missed, and each row is
        checked against its file's size and time, so a missed row costs work, never a wrong answer.
        """
        db = None
        try:
            db = sqlite3.connect(f"{Path(os.path.abspath(self.path)).as_uri()}?immutable=1", uri=True,
                                 isolation_level=None)
            ids = (db.execute("PRAGMA application_id").fetchone()[0], db.execute("PRAGMA user_version").fetchone()[0])
            db.execute("SELECT 1 FROM results LIMIT 1").fetchall()
        except sqlite3.Error:
            ids = None
        if ids == (self.APPLICATION_ID, _SCHEMA_VERSION):
            return db
        if db is not None:
            db.close()
        return None

    def _connect(self) -> sqlite3.Connection:
        """Open (or make) the cache, checking first that an existing database is ours."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if app_id != self.APPLICATION_ID:
                # Adopt an empty database, or one of an older genrify (same table, no id yet); refuse
                # anything else, whatever its name says.
                columns = [row[1] for row in db.execute("PRAGMA table_info(results)")] if "results" in tables else []
                if app_id != 0 or not tables <= {"results"} or (tables and columns != _COLUMNS):
                    raise _NotOurs(f"tables: {', '.join(sorted(tables)) or 'none'}" if app_id == 0
                                   else f"application id {app_id:#x}", app_id=app_id or None)
            if tables and version < _SCHEMA_VERSION:
                db.execute("DROP TABLE IF EXISTS results")  # keys of version 1 were text: start afresh
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA application_id = {self.APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    @property
    def enabled(self) -> bool:
        """False where the cache could not be opened (the run goes on without it)."""
        return self._db is not None

    @staticmethod
    def _identity(path: str | Path) -> tuple[bytes, int, int] | None:
        # The key is the real path's bytes: names that are not UTF-8 are stored as they are, and
        # a link loop or a vanished file is simply not cached (it fails later, with a message).
        try:
            resolved = os.path.realpath(path)
            st = os.stat(resolved)
            key = os.fsencode(resolved)
        except (OSError, RuntimeError, ValueError):
            return None
        return key, st.st_size, st.st_mtime_ns

    def get(self, path: str | Path) -> dict[str, Any] | None:
        """The stored result for ``path`` if the file is unchanged, else ``None``."""
        ident = self._identity(path)
        if self._db is None or ident is None:
            return None
        try:
            row = self._db.execute(
                "SELECT size, mtime_ns, result FROM results WHERE path = ? AND model = ? AND settings = ?",
                (ident[0], self.model, self.settings),
            ).fetchone()
        except sqlite3.DatabaseError:
            return None
        if row is None or (row[0], row[1]) != ident[1:]:
            return None
        result = self.decode(row[2])
        if result is None:
            return None
        self.hits += 1
        return result

    def encode(self, result: Any) -> str | bytes | None:
        """What is stored for a result (JSON text here); ``None``: not worth keeping.

        A subclass storing other values overrides this and :meth:`decode`.
        """
        try:
            return json.dumps(result, allow_nan=False)
        except ValueError:  # a non-finite number is no answer worth keeping
            return None

    def decode(self, stored: Any) -> Any:
        """The result :meth:`encode` stored, or ``None`` where the stored value cannot be read."""
        try:
            return json.loads(stored)
        except (TypeError, ValueError):
            return None

    def put(self, path: str | Path, result: dict[str, Any]) -> None:
        """Store ``result`` for ``path`` as the file is now."""
        ident = self._identity(path)
        if self._db is None or ident is None or not self._writable:
            return
        text = self.encode(result)
        if text is None:
            return
        try:
            if self._pending == 0:
                self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*ident, self.model, self.settings, text, time.time()),
            )
            self._pending += 1
            # Commits grouped about once a second: fast, and a killed run loses a second's work
            # (a cache whose rows are dear to make commits each one: COMMIT_SECONDS 0).
            if time.monotonic() - self._last_commit >= self.COMMIT_SECONDS:
                self.commit()
        except sqlite3.DatabaseError as exc:
            self._write_failed(exc)

    def commit(self) -> None:
        """Make stored results durable."""
        if self._db is not None and self._pending:
            try:
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._write_failed(exc)
            self._pending = 0
        self._last_commit = time.monotonic()

    @property
    def writable(self) -> bool:
        """False where the cache is not open, or a write to it failed during this run."""
        return self._db is not None and self._writable

    def _write_failed(self, exc: sqlite3.DatabaseError) -> None:
        """Stop storing (a full disk fails every later write too) and say so, once."""
        self._pending = 0
        if self._db is not None:
            with contextlib.suppress(sqlite3.DatabaseError):
                self._db.execute("ROLLBACK")  # SQLite may have ended the transaction itself
        if self._writable:
            self._writable = False
            self._notify(f"cannot write to the {self.WHAT} {display_path(self.path)} ({exc}); "
                         "the answers of the rest of this run are not stored")

    def close(self) -> None:
        """Commit and close."""
        self.commit()
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
