"""Durable file writes: whole or not at all, even if the machine stops half-way.

Shared by everything that writes a user's files (tags, organised copies, playlists, outputs, model
files, reports, feature arrays, generated songs): the content goes to a temporary file beside the
target, is flushed to disk, and is renamed over the target; the folder is then flushed so that the
rename itself survives a crash. :func:`atomic_write` hands out an open file, :func:`atomic_path` a
path for libraries that write by name (mutagen, safetensors, matplotlib, soundfile).

Every temporary file has one name pattern, :data:`TEMP_PATTERN`::

    .{target name}.{host}.{pid}.{8 hex digits}.genrify-tmp

so that a later run can tell its own leftovers (a ``kill -9`` half-way through a write) from a
user's files, and a live writer's temporary from a dead one's: :func:`remove_leftovers`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".genrify-tmp"
#: Suffix of the copies older versions made while organising (mkstemp names); cleaned up too.
_LEGACY_PART_SUFFIX = ".genrify-part"
# The target's name is cut to this many bytes inside the temporary name, so that the temporary
# name stays under the usual 255-byte limit however long the target's name is.
_NAME_BYTES = 160
# Older versions' temporary names carry no host (or no pid at all): those are removed only once
# nobody has touched them for this long, since their writer cannot be checked.
_LEGACY_MIN_AGE_S = 3600.0

#: A temporary name made by :func:`atomic_write` / :func:`atomic_path` (matched on the whole name).
TEMP_PATTERN = re.compile(
    r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]{1,64})\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX)
)
# Older genrify temporaries: tempfile.mkstemp's ".NAME.XXXXXXXX.genrify-tmp|part" (tags, organize)
# and write_text_atomic's ".NAME.PID.HEX8.genrify-part".
# The one with a pid comes first: its names match the mkstemp pattern too.
_LEGACY_PATTERNS = (
    re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}\.genrify-part"),
    re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?:\.genrify-tmp|\.genrify-part)"),
)


def host_name() -> str:
    """This machine's name as it appears in temporary names (only letters, digits, ``-``, ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"


def _name_part(name: str) -> str:
    """The target's name as kept inside a temporary name (cut to :data:`_NAME_BYTES` bytes)."""
    raw = os.fsencode(name)
    if len(raw) <= _NAME_BYTES:
        return name
    return raw[:_NAME_BYTES].decode("utf-8", "ignore") or "file"


def temp_name(target_name: str) -> str:
    """A fresh temporary name for a file called ``target_name`` (see :data:`TEMP_PATTERN`)."""
    return f".{_name_part(target_name)}.{host_name()}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def fsync_file(path: str | Path) -> None:
    """Flush a file's content to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | Path) -> None:
    """Make renames in ``folder`` durable; a system that cannot open folders (Windows) is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_special(path: Path) -> bool:
    """``path`` exists and is not a regular file (``/dev/null``, a named pipe): write into it."""
    return path.exists() and not path.is_file()


def _create_temp(path: Path) -> Path:
    """Create an empty temporary file beside ``path``, with the mode the umask gives a new file."""
    while True:
        tmp = path.with_name(temp_name(path.name))
        try:
            # 0o666 through the umask, as for any file the user creates (mkstemp would give 0600,
            # which a media server running as another user cannot read).
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # 32 random bits collided: draw again
            continue
        return tmp


def _commit(tmp: Path, path: Path, *, overwrite: bool, durable: bool = True) -> None:
    """Flush ``tmp`` (where ``durable``) and put it at ``path`` in one step, then flush the folder."""
    if durable:
        fsync_file(tmp)
    if overwrite:
        os.replace(tmp, path)
    else:
        # A hard link fails rather than replace, with no window between check and rename; where
        # the filesystem has no hard links (FAT, some network shares), check right before renaming.
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "target appeared while writing", str(path)) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV, errno.ENOSYS):
                raise
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, "target appeared while writing", str(path)) from None
            os.replace(tmp, path)
        else:
            os.unlink(tmp)
    if durable:
        fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(
    path: str | Path, *, overwrite: bool = True, keep_mode: bool = False, durable: bool = True
) -> Iterator[Path]:
    """Give a temporary path to write ``path``'s new content to; it becomes ``path`` on success.

    For libraries that write by file name. The temporary file already exists (empty, with the mode
    the umask gives a new file); whatever the block writes there is flushed to disk and renamed to
    ``path`` when the block ends without an exception. On any exception (interrupts included) the
    temporary file is deleted and ``path`` is left as it was.

    Parameters
    ----------
    path
        The file to write. Where it exists and is not a regular file (``/dev/null``, a named pipe),
        it is handed out itself and written directly: renaming over it would replace the device.
    overwrite
        ``False``: never replace an existing ``path``; :class:`FileExistsError` if one appeared
        while writing (the temporary file is then deleted).
    keep_mode
        Keep the mode the block gave the file (a copy of a song keeps the song's mode). By default
        the file gets the mode the umask gives a new file, even where the library that wrote it
        chose another (safetensors makes 0600 files).
    durable
        Flush the file and its folder to disk (default). ``False``: see :func:`atomic_write`.

    Yields
    ------
    Path
        The temporary file (in ``path``'s folder, named after :data:`TEMP_PATTERN`). Libraries
        that guess the format from the extension must be told the format.

    Raises
    ------
    OSError
        The file cannot be written; nothing is left behind.
    """
    path = Path(path)
    if _is_special(path):
        if not overwrite:
            raise FileExistsError(errno.EEXIST, "File exists", str(path))
        yield path
        return
    tmp = _create_temp(path)
    try:
        umask_mode = stat.S_IMODE(tmp.stat().st_mode)
        yield tmp
        if not keep_mode and stat.S_IMODE(tmp.stat().st_mode) != umask_mode:
            os.chmod(tmp, umask_mode)
        _commit(tmp, path, overwrite=overwrite, durable=durable)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def scratch_path(path: str | Path) -> Iterator[Path]:
    """Give a temporary file beside ``path`` that is deleted when the block ends, whatever happens.

    For work copies that are never renamed into place (e.g. a checked copy written back into a
    hard-linked file). Same name pattern and mode as :func:`atomic_path`, so a killed process's
    scratch file is cleaned up by :func:`remove_leftovers` like any other leftover.
    """
    tmp = _create_temp(Path(path))
    try:
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_write(
    path: str | Path,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    overwrite: bool = True,
    durable: bool = True,
) -> Iterator[IO[Any]]:
    """Open a file for writing whose content appears at ``path`` whole or not at all.

    Parameters
    ----------
    path
        The file to write (see :func:`atomic_path`, which this builds on).
    mode
        ``"wb"`` or ``"w"`` (text, UTF-8 unless ``encoding`` says otherwise).
    encoding, newline
        As for :func:`open`, text mode only.
    overwrite
        ``False``: never replace an existing ``path`` (see :func:`atomic_path`).
    durable
        ``False`` skips the flushes to disk: a kill still never leaves a half-written ``path``, but
        a power cut may leave an empty one. For files whose reader checks them (the store's arrays).

    Yields
    ------
    file object
        Open on the temporary file; flushed and closed before the rename.

    Examples
    --------
    >>> with atomic_write(folder / "report.json", "w") as f:  # doctest: +SKIP
    ...     f.write(text)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path, overwrite=overwrite, durable=durable) as tmp, open(tmp, mode, encoding=encoding, newline=newline) as f:
        yield f
        f.flush()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically (see :func:`atomic_write`).

    A path that exists and is not a regular file (``/dev/stdout``, a named pipe) is written into
    directly. The new file's mode is left to the umask, as for any file the user creates, so a
    media server running as another user can read a playlist.

    Raises
    ------
    OSError
        The file cannot be written; nothing is left behind.
    """
    with atomic_write(path, "w", newline="") as f:
        f.write(text)


# --- leftovers -------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's live process (or a pid we cannot check): leave it alone
    return True


def is_temp_name(name: str) -> bool:
    """True where ``name`` is, as a whole, a temporary name that genrify makes (or made)."""
    return bool(TEMP_PATTERN.fullmatch(name) or any(p.fullmatch(name) for p in _LEGACY_PATTERNS))


def _stale(folder: Path, name: str, target_part: str | None) -> bool:
    """``name`` is a genrify temporary (of ``target_part`` where given) whose writer is gone."""
    match = TEMP_PATTERN.fullmatch(name)
    if match:
        if target_part is not None and match["name"] != target_part:
            return False
        # Another machine's process (a shared folder) cannot be checked from here: leave it.
        return match["host"] == host_name() and not _pid_alive(int(match["pid"]))
    for pattern in _LEGACY_PATTERNS:
        legacy = pattern.fullmatch(name)
        if legacy and (target_part is None or legacy["name"] == target_part):
            pid = legacy.groupdict().get("pid")
            if pid is not None and _pid_alive(int(pid)):
                return False
            try:
                age = time.time() - os.lstat(folder / name).st_mtime
            except OSError:
                return False
            return age >= _LEGACY_MIN_AGE_S
    return False


def remove_leftovers(folder: str | Path, target_name: str | None = None) -> list[Path]:
    """Delete the temporary files that genrify's killed writers left in ``folder``.

    Only regular files whose whole name matches genrify's temporary-name pattern are considered,
    and only those whose writer is gone: made on this machine by a process that no longer runs.
    A temporary file of a live process, or of another machine sharing the folder, is left alone.
    Temporaries of older genrify versions (whose names carry no host) go once untouched for an hour.

    Parameters
    ----------
    folder
        The folder to clean (not its sub-folders). A missing or unreadable folder is fine.
    target_name
        Only the leftovers of writes to this file name (cheaper checks before writing one file).

    Returns
    -------
    list of Path
        The files removed. Files that cannot be removed (permissions) are skipped silently.
    """
    folder = Path(folder)
    target_part = None if target_name is None else _name_part(target_name)
    prefix = None if target_part is None else f".{target_part}."
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or (prefix is not None and not name.startswith(prefix)):
            continue
        if not (name.endswith(TEMP_SUFFIX) or name.endswith(_LEGACY_PART_SUFFIX)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        if _stale(folder, name, target_part):
            try:
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed
