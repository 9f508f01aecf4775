"""A small SQLite cache of classification results, so a library is classified once per model.

A result is keyed by the file's resolved path, size and modification time, the model's content
hash and the segment settings: a second ``genrify classify`` over an unchanged library with the
same model reads every answer from here, and a file that changed, or another model, is classified
anew. The cache only ever speeds a run up: a damaged or locked cache is set aside, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Self

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    path TEXT NOT NULL,
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
    return Path(base) / "genrify" / "results.sqlite"


def file_digest(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (the identity of a model file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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
    """

    def __init__(self, path: str | Path, model: str, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        self.model = model
        self.settings = json.dumps(settings, sort_keys=True)
        self.hits = 0
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            self._db = db
        except sqlite3.DatabaseError:
            self._set_aside()
        except OSError:
            self._db = None  # no writable cache folder: run without a cache
        self._pending = 0
        self._last_commit = time.monotonic()

    @property
    def enabled(self) -> bool:
        """False where the cache could not be opened (the run goes on without it)."""
        return self._db is not None

    def _set_aside(self) -> None:
        # A damaged cache holds nothing worth keeping: move it away and start afresh.
        try:
            self.path.replace(self.path.with_name(self.path.name + ".damaged"))
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            db.execute(_SCHEMA)
            self._db = db
        except (OSError, sqlite3.DatabaseError):
            self._db = None

    @staticmethod
    def _identity(path: str | Path) -> tuple[str, int, int] | None:
        try:
            resolved = Path(path).resolve()
            st = resolved.stat()
        except OSError:
            return None
        return str(resolved), st.st_size, st.st_mtime_ns

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
        self.hits += 1
        return json.loads(row[2])

    def put(self, path: str | Path, result: dict[str, Any]) -> None:
        """Store ``result`` for ``path`` as the file is now."""
        ident = self._identity(path)
        if self._db is None or ident is None:
            return
        try:
            if self._pending == 0:
                self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*ident, self.model, self.settings, json.dumps(result), time.time()),
            )
            self._pending += 1
            # Commits grouped about once a second: fast, and a killed run loses a second's work.
            if time.monotonic() - self._last_commit > 1.0:
                self.commit()
        except sqlite3.DatabaseError:
            self._pending = 0

    def commit(self) -> None:
        """Make stored results durable."""
        if self._db is not None and self._pending:
            try:
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError:
                pass
            self._pending = 0
        self._last_commit = time.monotonic()

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
