"""The feature store: a SQLite manifest and one float16 ``.npy`` array per track.

Layout of a store directory::

    STORE/
      manifest.sqlite     tracks (path, genre, artist, duration, size, mtime, frames, status, ...)
                          and meta (feature parameters, format version)
      arrays/ab/<hash>.npy  log-mel of one track, float16, stored time-major: (frames, n_mels)

Safety rests on two rules. Arrays are written under a temporary name and renamed into place, so an
array file is always whole; and a manifest row marks a track done only after its array is in place.
A run killed at any moment therefore leaves at worst a stray temporary file or an array without a
row, both cleaned up and redone by the next run; the array's name derives from the track's path, so
a track is never stored twice. Only one process (the extraction's parent) writes the manifest.

Arrays can also be damaged behind the manifest's back. A stat and a header read (:meth:`FeatureStore.check`)
find an array deleted or cut short; values overwritten in place (NaN where music was) only a full
read finds. What a full read finds (``genrify inspect --check``) is recorded in the manifest's
``damaged`` table (:meth:`FeatureStore.record_damaged`), so that the next extraction redoes those
tracks without reading every array again; a track stored anew leaves the table.

Arrays can be read memory-mapped (:meth:`FeatureStore.load`) or chunk by chunk (training reads with
positioned reads): a run over a store of any size holds only the chunks it uses.
They are stored time-major, so that a chunk of consecutive frames is one contiguous block of the
file (a few pages) rather than one short run per mel band; :meth:`FeatureStore.load` presents them
as ``(n_mels, frames)``, like every other spectrogram in genrify.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrify import __version__
from genrify.audio.features import FeatureParams
from genrify.core.fsutil import atomic_write, is_temp_name
from genrify.errors import StoreError

MANIFEST_NAME = "manifest.sqlite"
ARRAYS_DIR = "arrays"
FORMAT_VERSION = 1
# Temporary names of older versions (".tmp-HOST-PID-NAME"); still cleaned up by FeatureStore.clean.
_TMP_PREFIX = ".tmp-"

DONE = "done"
FAILED = "failed"
# Rows are committed in groups at most this far apart: one commit per track would cost more than the
# track's own bookkeeping, and a killed run only redoes the tracks of its last uncommitted group.
_COMMIT_INTERVAL_S = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    path      TEXT PRIMARY KEY,
    genre     TEXT NOT NULL,
    artist    TEXT,
    duration  REAL,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    frames    INTEGER,
    status    TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error     TEXT,
    array     TEXT,
    flags     TEXT NOT NULL DEFAULT '',
    updated   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tracks_status_genre ON tracks (status, genre);
"""
# Tracks whose array a full check found damaged, for the next extraction to redo. Its own table, made
# by writers only: stores made before it stay readable (and on a read-only disk, openable) as they were.
_DAMAGED_SCHEMA = """
CREATE TABLE IF NOT EXISTS damaged (path PRIMARY KEY, problem TEXT NOT NULL, found REAL NOT NULL);
"""


@dataclass(frozen=True)
class StoredTrack:
    """One row of the manifest."""

    path: str
    genre: str
    artist: str | None
    duration: float | None
    size: int
    mtime_ns: int
    frames: int | None
    status: str
    error: str | None
    array: str | None
    flags: tuple[str, ...]

    @property
    def name(self) -> str:
        """The file name without folders, e.g. ``blues.00012.wav``."""
        return os.path.basename(self.path)


def array_name(track_path: str) -> str:
    """Store-relative file name of a track's array: derived from its path, so stable across runs."""
    digest = hashlib.sha1(track_path.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return f"{digest[:2]}/{digest}.npy"


def save_array(final: str | Path, array: np.ndarray) -> None:
    """Save a ``.npy`` file whole or not at all: written under a temporary name, then renamed.

    The temporary name (:func:`genrify.core.fsutil.atomic_write`) carries the host and process, so
    writers on several machines sharing the store's filesystem (a Dask cluster) never write into
    the same temporary file.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # No flush to disk per array (it cost a third of a wav library's extraction): a kill never
    # leaves a half-written array, and the empty file a power cut might leave is caught by the next
    # extraction, which checks every array's header and size and redoes the damaged ones.
    with atomic_write(final, "wb", durable=False) as fh:
        np.save(fh, array, allow_pickle=False)


def write_array(store_dir: str | Path, track_path: str, features: np.ndarray) -> str:
    """Write a track's ``(n_mels, frames)`` features into the store atomically; returns the name.

    Safe to call from any process that sees the store's directory (extraction workers do): the array
    appears under its final name whole or not at all.
    """
    name = array_name(track_path)
    save_array(Path(store_dir) / ARRAYS_DIR / name, np.ascontiguousarray(np.asarray(features).T, dtype=np.float16))
    return name


class FeatureStore:
    """A feature store directory. Use :meth:`open` or :meth:`create`, ideally as a context manager.

    Parameters
    ----------
    root
        The store's directory.
    connection
        An open connection to its manifest.
    params
        The feature parameters the store was made with.
    """

    def __init__(self, root: Path, connection: sqlite3.Connection, params: FeatureParams) -> None:
        self.root = root
        self._db = connection
        self.params = params
        self._lock_fd: int | None = None
        self._last_commit = time.monotonic()

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def create(cls, root: str | Path, params: FeatureParams | None = None) -> FeatureStore:
        """Open the store at ``root`` for writing, creating it if needed.

        Parameters
        ----------
        root
            Store directory (created if missing).
        params
            Feature parameters. ``None`` means the store's own (or the defaults for a new store);
            parameters that differ from an existing store's are refused.

        Raises
        ------
        StoreError
            ``root`` is not a store, or was made with other parameters.
        """
        root = Path(root).expanduser()
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root}: exists and is not a folder")
        manifest = root / MANIFEST_NAME
        if root.exists() and not manifest.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise StoreError(f"{root}: folder is not empty and holds no genrify store ({MANIFEST_NAME} missing)")
        try:
            (root / ARRAYS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{root}: cannot create the store: {exc.strerror or exc}") from None
        db = _connect(manifest)
        stored = _read_params(db, root)
        if stored is None:
            params = params or FeatureParams()
            with db:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("params", params.to_json()), ("format", str(FORMAT_VERSION)), ("created_by", __version__)],
                )
        else:
            params = _check_params(root, stored, params)
        try:
            db.executescript(_DAMAGED_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{manifest}: cannot write the manifest: {exc}") from None
        return cls(root, db, params)

    @classmethod
    def open(cls, root: str | Path, params: FeatureParams | None = None) -> FeatureStore:
        """Open an existing store (for reading, or writing by its single writer).

        Raises
        ------
        StoreError
            No store at ``root``, or its parameters differ from ``params``.
        """
        root = Path(root).expanduser()
        manifest = root / MANIFEST_NAME
        if not manifest.is_file():
            raise StoreError(f"{root}: no feature store here (run `genrify extract MUSIC_DIR --store {root}` first)")
        db = _connect(manifest)
        stored = _read_params(db, root)
        if stored is None:
            raise StoreError(f"{root}: the manifest records no feature parameters; the store is incomplete")
        return cls(root, db, _check_params(root, stored, params))

    def commit(self) -> None:
        """Make the rows recorded so far durable (they are also committed every half second)."""
        self._db.commit()
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commit, close the manifest and release the writer's lock."""
        self.commit()
        self._db.close()
        self.unlock()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the single writer ----------------------------------------------------------------

    def lock(self) -> None:
        """Take the store's writer lock, so that two extractions never fill one store at once.

        Raises
        ------
        StoreError
            Another process holds it.
        """
        if self._lock_fd is not None:
            return
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.root}: another genrify process is writing this store") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the writer lock (no-op where not held)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def clean(self) -> int:
        """Remove what an interrupted run left: temporary files and arrays no done row points to.

        Call only while holding :meth:`lock`. Returns the number of files removed.
        """
        referenced = {row[0] for row in self._db.execute("SELECT array FROM tracks WHERE status = 'done'")}
        removed = 0
        arrays = self.root / ARRAYS_DIR
        for dirpath, _dirs, files in os.walk(arrays):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), arrays)
                # Every temporary goes, whoever wrote it: the writer lock says no writer is left.
                temporary = is_temp_name(name) or name.startswith(_TMP_PREFIX)
                if temporary or (name.endswith(".npy") and rel not in referenced):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
        return removed

    def record_done(
        self,
        *,
        path: str,
        genre: str,
        size: int,
        mtime_ns: int,
        artist: str | None,
        duration: float,
        frames: int,
        array: str,
        flags: Iterable[str] = (),
    ) -> None:
        """Mark a track done; its array must already be in place (see :func:`write_array`)."""
        self._upsert(path, genre, artist, duration, size, mtime_ns, frames, DONE, None, array, ",".join(flags))

    def record_failed(self, *, path: str, genre: str, size: int, mtime_ns: int, error: str) -> None:
        """Mark a track failed with its reason; a previous array of it is removed."""
        old = self.get(path)
        self._upsert(path, genre, None, None, size, mtime_ns, None, FAILED, error, None, "")
        if old is not None and old.array:
            self.commit()  # no committed row may ever point to a deleted array
            (self.root / ARRAYS_DIR / old.array).unlink(missing_ok=True)

    def _upsert(
        self, path: str, genre: str, artist: str | None, duration: float | None, size: int, mtime_ns: int,
        frames: int | None, status: str, error: str | None, array: str | None, flags: str,
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO tracks (path, genre, artist, duration, size, mtime_ns, frames, status,"
            " error, array, flags, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (_to_db(path), _to_db(genre), _text(artist), duration, size, mtime_ns, frames, status, _text(error),
             array, flags, time.time()),
        )
        self._forget_damage(path)  # stored anew (or failed): whatever was recorded is gone
        if time.monotonic() - self._last_commit > _COMMIT_INTERVAL_S:
            self.commit()

    def remove(self, paths: Iterable[str]) -> int:
        """Forget tracks (rows and arrays). Returns how many were removed."""
        arrays = []
        for path in paths:
            old = self.get(path)
            if old is None:
                continue
            self._db.execute("DELETE FROM tracks WHERE path = ?", (_to_db(path),))
            self._forget_damage(path)
            arrays.append(old.array)
        self.commit()  # rows go first: no committed row may ever point to a deleted array
        for array in arrays:
            if array:
                (self.root / ARRAYS_DIR / array).unlink(missing_ok=True)
        return len(arrays)

    # --- reading --------------------------------------------------------------------------

    def get(self, path: str) -> StoredTrack | None:
        """The manifest row of one track, or ``None``."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM tracks WHERE path = ?", (_to_db(path),)).fetchone()
        return _row(row) if row else None

    def tracks(self, status: str | None = DONE, under: str | None = None) -> list[StoredTrack]:
        """Manifest rows sorted by path: done ones by default, ``status=None`` for all.

        ``under`` keeps the tracks whose path lies below that folder.
        """
        query = f"SELECT {_COLUMNS} FROM tracks"
        clauses, args = [], []
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        if under is not None:
            prefix = under.rstrip(os.sep) + os.sep
            raw = os.fsencode(prefix)
            # A name that is not UTF-8 is a BLOB (see _to_db), where substr counts bytes.
            if isinstance(_to_db(prefix), str):
                clauses.append("((typeof(path) = 'text' AND substr(path, 1, ?) = ?) OR substr(path, 1, ?) = ?)")
                args += [len(prefix), prefix, len(raw), raw]
            else:
                clauses.append("substr(path, 1, ?) = ?")
                args += [len(raw), raw]
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        return [_row(r) for r in self._db.execute(query + " ORDER BY path", args)]

    def __iter__(self) -> Iterator[StoredTrack]:
        return iter(self.tracks())

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM tracks WHERE status = 'done'").fetchone()[0])

    def counts(self) -> dict[str, int]:
        """Number of done tracks per genre, sorted by genre."""
        rows = self._db.execute(
            "SELECT genre, count(*) FROM tracks WHERE status = 'done' GROUP BY genre ORDER BY genre"
        )
        return {_from_db(g): int(n) for g, n in rows}

    def load(self, track: StoredTrack | str, *, mmap: bool = True, time_major: bool = False) -> np.ndarray:
        """A done track's log-mel array, float16 ``(n_mels, frames)``, memory-mapped by default.

        ``time_major=True`` gives the array as stored, ``(frames, n_mels)``.

        Raises
        ------
        StoreError
            The track is not done in this store, or its array is missing or damaged.
        """
        file = self.array_file(track)
        try:
            stored = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{file}: cannot read the features of {track if isinstance(track, str) else track.path}: {exc}") from None
        return stored if time_major else stored.T

    def array_file(self, track: StoredTrack | str) -> Path:
        """Where a done track's array lies (reading it needs no manifest, from any thread).

        Raises
        ------
        StoreError
            The track is not done in this store.
        """
        row = self.get(track) if isinstance(track, str) else track
        if row is None or row.status != DONE or not row.array:
            name = track if isinstance(track, str) else track.path
            raise StoreError(f"{name}: no features for this track in {self.root}")
        return self.root / ARRAYS_DIR / row.array

    def check(self, track: StoredTrack, *, full: bool = False) -> str | None:
        """What is wrong with a done track's array, or ``None`` where it is sound.

        Arrays can be deleted, cut short or overwritten behind the manifest's back (a full disk, a
        careless clean-up, a copy interrupted half-way).

        Parameters
        ----------
        track
            A done row of this store.
        full
            ``False`` (quick, for every track of every extraction run): the file exists, its
            ``.npy`` header says float16 ``(frames, n_mels)`` with the manifest's frames, and its
            size is what that header promises; a stat and one small read. ``True``: also read
            every value and require each to be finite.

        Returns
        -------
        str or None
            The problem, in a few words, or ``None``.
        """
        file = self.array_file(track)
        expected = (track.frames, self.params.n_mels)
        try:
            with open(file, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                size = os.fstat(fh.fileno()).st_size
                data_start = fh.tell()
        except FileNotFoundError:
            return "array file missing"
        except OSError as exc:
            return f"array file unreadable: {exc.strerror or exc}"
        except ValueError:
            return "array file damaged (not a .npy array)"
        if dtype != np.float16 or fortran or tuple(shape) != expected:
            return f"array holds {dtype} {tuple(shape)}, not float16 {expected}"
        want = data_start + int(np.prod(shape)) * dtype.itemsize
        if size != want:
            return f"array file is {size} bytes, not {want} (truncated or damaged)"
        if full:
            try:
                values = np.load(file, allow_pickle=False)  # every byte read, not memory-mapped
            except (OSError, ValueError) as exc:
                return f"array file damaged: {exc}"
            if not np.isfinite(values).all():
                return "array holds non-finite values"
        return None

    def damaged(self, tracks: Iterable[StoredTrack] | None = None, *, full: bool = False) -> list[tuple[StoredTrack, str]]:
        """The done tracks whose array fails :meth:`check`, with the problem (all done tracks by default).

        Without ``full``, a track whose array passes the quick check but was recorded damaged by an
        earlier full check (:meth:`recorded_damage`) is listed with the recorded problem: it stays
        damaged until extracted again. With ``full``, the full read decides.
        """
        recorded = {} if full else self.recorded_damage()
        found = []
        for track in self.tracks() if tracks is None else tracks:
            problem = self.check(track, full=full) or recorded.get(track.path)
            if problem is not None:
                found.append((track, problem))
        return found

    def recorded_damage(self) -> dict[str, str]:
        """Path -> problem of the done tracks recorded damaged (:meth:`record_damaged`)."""
        try:
            rows = self._db.execute(
                "SELECT d.path, d.problem FROM damaged d JOIN tracks t ON t.path = d.path WHERE t.status = 'done'"
            ).fetchall()
        except sqlite3.OperationalError:  # a store no writer has opened since the table was added
            return {}
        return {_from_db(path): problem for path, problem in rows}

    def record_damaged(self, found: Iterable[tuple[StoredTrack, str]], *, replace: bool = False) -> None:
        """Record tracks whose array is damaged, for the next extraction to redo them.

        Parameters
        ----------
        found
            ``(track, problem)`` pairs, as :meth:`damaged` gives them.
        replace
            ``found`` is all there is (a full check of every done track): what was recorded
            before is forgotten.

        Raises
        ------
        StoreError
            The manifest cannot be written (a read-only store).
        """
        try:
            self._db.executescript(_DAMAGED_SCHEMA)
            with self._db:
                if replace:
                    self._db.execute("DELETE FROM damaged")
                self._db.executemany(
                    "INSERT OR REPLACE INTO damaged (path, problem, found) VALUES (?, ?, ?)",
                    [(_to_db(track.path), problem, time.time()) for track, problem in found],
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.root / MANIFEST_NAME}: cannot record the damaged arrays: {exc}") from None

    def _forget_damage(self, path: str) -> None:
        try:
            self._db.execute("DELETE FROM damaged WHERE path = ?", (_to_db(path),))
        except sqlite3.OperationalError:  # no such table: nothing was ever recorded
            pass


_COLUMNS = "path, genre, artist, duration, size, mtime_ns, frames, status, error, array, flags"


def _row(row: tuple) -> StoredTrack:
    values = list(row)
    values[0], values[1] = _from_db(values[0]), _from_db(values[1])
    values[-1] = tuple(f for f in (values[-1] or "").split(",") if f)
    return StoredTrack(*values)


# File names are kept faithfully. A name that is valid UTF-8 (nearly all) is TEXT, as it always was,
# so stores made before stay readable; one that is not (bytes from another system, which Python
# carries as lone surrogates, e.g. "bad\udcff.wav") cannot be SQLite TEXT and is stored as a BLOB of
# its bytes (os.fsencode). A BLOB never equals a TEXT, so the two never collide. Genres (folder
# names) follow the same rule.
def _to_db(name: str) -> str | bytes:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def _from_db(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _text(value: str | None) -> str | None:
    """Free text (an error message, an artist tag) as valid UTF-8: a name quoted in it, readably."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        from genrify.collection.library import display_path

        return display_path(value)
    return value


def _connect(manifest: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(manifest, timeout=30)
        # WAL: readers (a training run) never block the writer, and a killed writer leaves the last
        # committed state. NORMAL sync is durable across process kills, which is what we guard.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{manifest}: not a readable genrify manifest: {exc}") from None
    return db


def _read_params(db: sqlite3.Connection, root: Path) -> FeatureParams | None:
    row = db.execute("SELECT value FROM meta WHERE key = 'params'").fetchone()
    if row is None:
        return None
    try:
        return FeatureParams.from_dict(json.loads(row[0]))
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{root}: the manifest's feature parameters are unreadable: {exc}") from None


def _check_params(root: Path, stored: FeatureParams, wanted: FeatureParams | None) -> FeatureParams:
    if wanted is not None and wanted != stored:
        diff = "; ".join(stored.differences(wanted))
        raise StoreError(f"{root}: this store was made with other feature parameters: {diff}")
    return stored
