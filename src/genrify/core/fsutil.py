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

A file that must keep its identity (several hard links, an owner, group or extended attributes the
writer cannot give a new file) is rewritten in place instead, through a journal:
:func:`write_in_place` first renames the complete, checked new content to a
:data:`JOURNAL_PATTERN` name beside the name the write goes through, which records that name, the
file's device, inode and size and the content's checksum, and removes it only once the file is
verified to hold that content; signals that would end the process wait until then
(:func:`deferred_signals`). A journal left by a ``kill -9`` or a power cut is finished by
:func:`recover_in_place`, which the next write through a name in that folder runs, but only into
the file it was made for: the same name, device and inode, a size between the old and the new
one, and no change later than the journal's last stamp (see :func:`write_in_place`). A file
deleted, replaced or changed since (an inode handed to a new file, a copy or a tagger writing over
it) is left alone and reported.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from genrify.errors import GenrifyIOError

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
    r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]{1,64})\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX),
    re.DOTALL,  # a file's name may hold a newline: its temporaries must still be known for ours
)
# Older genrify temporaries: tempfile.mkstemp's ".NAME.XXXXXXXX.genrify-tmp|part" (tags, organize)
# and write_text_atomic's ".NAME.PID.HEX8.genrify-part".
# The one with a pid comes first: its names match the mkstemp pattern too.
_LEGACY_PATTERNS = (
    re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}\.genrify-part", re.DOTALL),
    re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?:\.genrify-tmp|\.genrify-part)", re.DOTALL),
)


def host_name() -> str:
    """This machine's name as it appears in temporary names (only letters, digits, ``-``, ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"


def _name_part(name: str, limit: int = _NAME_BYTES) -> str:
    """The target's name as kept inside a temporary name (cut to ``limit`` bytes)."""
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    return raw[:limit].decode("utf-8", "ignore") or "file"


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
def scratch_path(path: str | Path, *, like: os.stat_result | None = None) -> Iterator[Path]:
    """Give a temporary file beside ``path`` that is deleted when the block ends, whatever happens.

    For work copies that may or may not be used: a tagged copy is handed on to
    :func:`replace_with` or :func:`write_in_place`, which consume it, or else it is deleted. Same
    name pattern and mode as :func:`atomic_path`, so a killed process's scratch file is cleaned up
    by :func:`remove_leftovers` like any other leftover.

    Parameters
    ----------
    path
        The file the scratch file stands beside.
    like
        The stat of the file whose content will be copied in: the scratch file, still empty, gets
        no permission bit that file lacks (:func:`limit_mode`), so that a copy a ``kill -9``
        leaves behind (or a journal made of it) is no more readable than the original.
    """
    tmp = _create_temp(Path(path))
    try:
        if like is not None:
            # A filesystem that refuses chmod (FAT, some network shares) gives every file the
            # mount's mode, the original's too: nothing to take away there.
            with contextlib.suppress(OSError):
                limit_mode(tmp, like)
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def limit_mode(path: str | Path, like: os.stat_result) -> None:
    """Take from ``path`` every permission bit that the file of stat ``like`` lacks.

    The owner keeps read and write (the copy is the writer's own, and must stay writable to it).
    Group bits go entirely where ``path``'s group is not ``like``'s: they would let another group
    read it. Set-id and sticky bits go. For a new, still empty file: its content comes after.

    Raises
    ------
    OSError
        The mode cannot be changed.
    """
    st = os.stat(path)
    allowed = stat.S_IMODE(like.st_mode) & 0o777
    if st.st_gid != like.st_gid:
        allowed &= ~0o070
    mode = (stat.S_IMODE(st.st_mode) & allowed) | stat.S_IRUSR | stat.S_IWUSR
    if mode != stat.S_IMODE(st.st_mode):
        os.chmod(path, mode)


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


# --- in-place rewrites through a journal -----------------------------------------------------

JOURNAL_SUFFIX = ".genrify-journal"
# The target's name is cut shorter in a journal name than in a temporary name: the journal name
# also carries the device, the inode, the old size and the checksum, and must stay under 255 bytes
# (at most 1+80+1+64+1+10+1+20+1+20+1+20+1+16 bytes and the 16 of the suffix: 253).
_JOURNAL_NAME_BYTES = 80
#: A journal made by :func:`write_in_place` (matched on the whole name): the complete new content
#: of the file called ``name`` beside it (cut as in temporary names), of that device and inode,
#: whose size was ``size`` before the write; its SHA-256 starts with ``digest``.
JOURNAL_PATTERN = re.compile(
    r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]{1,64})\.(?P<pid>[0-9]{1,10})"
    r"\.(?P<dev>[0-9]{1,20})-(?P<ino>[0-9]{1,20})\.(?P<size>[0-9]{1,20})\.(?P<digest>[0-9a-f]{16})"
    + re.escape(JOURNAL_SUFFIX),
    re.DOTALL,  # as TEMP_PATTERN: a name holding a newline
)
#: The signals whose default action ends the process, held back while a file is rewritten in place.
DEFERRED_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
# Journals this process is working on now: another thread's write in progress is not a leftover,
# but a journal of this pid that is not here is (an earlier write in this process failed).
_ACTIVE_JOURNALS: set[str] = set()
_ACTIVE_LOCK = threading.Lock()
# How much later than its journal's modification time the file of an interrupted write may have
# last changed (its ctime). The journal is stamped right before each change of the file, so the
# file changed at most one write call after the stamp (a slow disk may stall one call for a
# while); a file changed later was changed by someone else after the interruption, or is new.
_STAMP_SLACK_NS = 5 * 10**9
# The journal names found in each folder, by the folder's identity and times (see journal_names):
# a check before each file's write then costs one stat, not a listing of the whole folder, which
# made tagging a flat folder of N files read N names N times.
_LISTINGS: dict[str, tuple[tuple[int, int, int, int], tuple[str, ...]]] = {}
_LISTINGS_LOCK = threading.Lock()
_LISTINGS_KEPT = 1024
# A listing is reused only where the folder last changed this long before it was taken: a change
# within the same tick of the filesystem's clock (2 s on FAT) would leave the folder's times as
# they were, and the kept listing would miss it.
_RACY_NS = 3 * 10**9


def content_digest(path: str | Path) -> str:
    """The first 16 hex digits of the SHA-256 of a file's content (what a journal name records)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def journal_name(target_name: str, st: os.stat_result, digest: str) -> str:
    """The journal name for new content ``digest`` of the file ``target_name`` whose stat, before
    the write, is ``st`` (see :data:`JOURNAL_PATTERN`)."""
    return (f".{_name_part(target_name, _JOURNAL_NAME_BYTES)}.{host_name()}.{os.getpid()}"
            f".{st.st_dev}-{st.st_ino}.{st.st_size}.{digest}{JOURNAL_SUFFIX}")


def journal_names(folder: str | Path) -> tuple[str, ...]:
    """The names in ``folder`` that are journals (:data:`JOURNAL_PATTERN`); none where it cannot be listed.

    The listing is kept and reused while the folder's device, inode, modification and change
    times stay the same (adding, removing or renaming a name changes both times), provided those
    times were a few seconds old when it was taken, so that checking each file of a large folder
    before writing it costs one ``stat`` of the folder. On a network share whose client caches a
    folder's attributes (NFS, up to a minute by default) a journal another machine made in that
    time may be seen late; a library run lists each folder afresh up front.
    """
    key = os.fspath(folder)
    try:
        st = os.stat(key)
    except OSError:
        return ()
    state = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    with _LISTINGS_LOCK:
        kept = _LISTINGS.get(key)
    if kept is not None and kept[0] == state:
        return kept[1]
    started = time.time_ns()
    try:
        names = tuple(n for n in os.listdir(key) if n.endswith(JOURNAL_SUFFIX) and JOURNAL_PATTERN.fullmatch(n))
    except OSError:
        return ()
    if st.st_mtime_ns < started - _RACY_NS:
        with _LISTINGS_LOCK:
            _LISTINGS.pop(key, None)
            _LISTINGS[key] = (state, names)
            while len(_LISTINGS) > _LISTINGS_KEPT:  # the oldest first: dicts keep insertion order
                del _LISTINGS[next(iter(_LISTINGS))]
    return names


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold back :data:`DEFERRED_SIGNALS` (Ctrl-C, ``kill``, a closed terminal) until the block ends.

    A signal that arrives meanwhile is delivered again when the block ends, to the handler that
    was there before (so Ctrl-C still raises :class:`KeyboardInterrupt`, and SIGTERM still ends
    the process), once the block's work is whole. Python lets only the main thread set handlers:
    elsewhere the block runs unprotected (the journal of :func:`write_in_place` still covers it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, _frame: Any) -> None:
        pending.append(signum)

    previous: dict[int, Any] = {}
    try:
        for signum in DEFERRED_SIGNALS:
            previous[signum] = signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            # None: a handler set outside Python, which cannot be put back; the default is closest.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        # Every signal that came, each once, even where the first one's handler raises.
        raised: BaseException | None = None
        for signum in dict.fromkeys(pending):
            try:
                signal.raise_signal(signum)
            except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt and whatever handlers raise
                raised = raised or exc
        if raised is not None:
            raise raised


@contextlib.contextmanager
def _working_on(journal: Path) -> Iterator[None]:
    with _ACTIVE_LOCK:
        _ACTIVE_JOURNALS.add(str(journal))
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE_JOURNALS.discard(str(journal))


def _overwrite(source: Path, target: Path, touched: Callable[[], None]) -> None:
    """Make ``target``'s bytes those of ``source`` (its journal) without replacing it.

    ``touched()`` is called once ``target`` may have changed. Right before each change of
    ``target`` the journal's modification time is stamped, so that for as long as the file may be
    half-written its last change (ctime) is at most one write call later than the journal's
    mtime: what :func:`recover_in_place` checks before it writes into a file.
    """
    size = source.stat().st_size
    with open(source, "rb") as src, open(target, "r+b") as dst:

        def stamp() -> None:
            # Best effort: a journal this user may not stamp (another user's, being recovered)
            # only makes a later recovery of it more careful, never less.
            with contextlib.suppress(OSError, NotImplementedError):
                os.utime(src.fileno() if os.utime in os.supports_fd else source)

        old_size = os.fstat(dst.fileno()).st_size
        if size > old_size and hasattr(os, "posix_fallocate"):
            # Reserve the room first, so that a full disk fails before any byte changes.
            stamp()
            try:
                os.posix_fallocate(dst.fileno(), 0, size)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(dst.fileno(), old_size)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise
            else:
                touched()  # the file grew (zeros at its end)
        offset = 0
        while True:
            new = src.read(1 << 20)
            if not new:
                break
            dst.seek(offset)
            # Unchanged blocks (the audio, when the tag block kept its size) are not rewritten, so
            # an interruption can only touch the blocks that differ.
            if dst.read(len(new)) != new:
                touched()
                stamp()
                dst.seek(offset)
                dst.write(new)
            offset += len(new)
        if os.fstat(dst.fileno()).st_size != offset:
            touched()
            stamp()
            dst.truncate(offset)
        dst.flush()
        os.fsync(dst.fileno())


def write_in_place(source: str | Path, target: str | Path) -> None:
    """Give ``target`` the content of ``source`` in place (same inode: its hard links, owner, group,
    mode and extended attributes stay), so that a crash at any moment loses nothing.

    ``source`` (complete and checked by the caller, in ``target``'s folder) is flushed and renamed
    to a journal (:data:`JOURNAL_PATTERN`) beside ``target``, named after it and recording its
    device, inode and size; ``target`` is overwritten from it (only the blocks that differ, the
    journal's modification time stamped before each), flushed and read back, and only then is the
    journal removed. SIGINT, SIGTERM and SIGHUP wait until the end (:func:`deferred_signals`).
    After a ``kill -9`` or a power cut, the journal holds the whole new content and
    :func:`recover_in_place` over ``target``'s folder finishes the write.

    Parameters
    ----------
    source
        The new content; it is consumed (renamed to the journal, then removed).
    target
        The file to rewrite; it must be writable. The journal lies beside this name: a write
        through a hard link in another folder is finished only by a recovery of that folder.

    Raises
    ------
    GenrifyIOError
        The rewrite failed. Where ``target`` was not changed yet, the journal is removed and the
        message says the file is unchanged; otherwise the journal stays, so that the next
        :func:`recover_in_place` (the next write through a name in that folder) finishes the
        file, and the message names it.
    """
    source, target = Path(source), Path(target)
    st = os.stat(target)
    fsync_file(source)
    digest = content_digest(source)
    journal = target.with_name(journal_name(target.name, st, digest))
    changed = False

    def touched() -> None:
        nonlocal changed
        changed = True

    with deferred_signals(), _working_on(journal):
        os.rename(source, journal)
        try:
            fsync_dir(target.parent)  # the journal is on disk before the file's first byte changes
            _overwrite(journal, target, touched)
            if content_digest(target) != digest:
                raise OSError(errno.EIO, "the file did not read back as written")
        except BaseException as exc:
            if not changed:
                with contextlib.suppress(OSError):
                    os.unlink(journal)
                if isinstance(exc, OSError):
                    raise GenrifyIOError(f"{target}: could not rewrite it in place, file left unchanged "
                                         f"({exc.strerror or exc})") from exc
            elif isinstance(exc, Exception):
                raise GenrifyIOError(
                    f"{target}: rewriting it in place failed ({getattr(exc, 'strerror', None) or exc}); its "
                    f"complete new content is kept in {journal.name}, and the next write there puts it back"
                ) from exc
            raise
        # The file is whole and verified: a journal that cannot be removed now is harmless (the
        # next recovery sees the file already holds its content, and only removes it).
        with contextlib.suppress(OSError):
            os.unlink(journal)
        fsync_dir(target.parent)


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover_in_place` did with one journal.

    Attributes
    ----------
    journal
        The journal file.
    target
        The file it belongs to (the name it records, of its device and inode; the caller's name
        for it where :func:`recover_in_place` was given one), or ``None`` where none is there.
    finished
        The file now holds the journal's content and the journal is gone (or, in a dry run,
        would be so).
    reason
        Why it was not finished, where it was not; the journal is then kept.
    """

    journal: Path
    target: Path | None
    finished: bool
    reason: str = ""


def _journal_owner_live(match: re.Match[str], journal: Path) -> bool | None:
    """True: a live writer's journal; False: its writer is gone; None: another machine's."""
    if match["host"] != host_name():
        return None
    pid = int(match["pid"])
    if pid == os.getpid():
        with _ACTIVE_LOCK:
            return str(journal) in _ACTIVE_JOURNALS
    return _pid_alive(pid)


def recover_in_place(folder: str | Path, target: str | Path | None = None, *, dry_run: bool = False) -> list[Recovery]:
    """Finish the in-place writes into ``folder``'s files that a killed process left half-done.

    Each journal whose writer is gone is checked (its content against the checksum in its name)
    and copied into its file in place (with signals held back), read back and removed. Its file
    must be the one the interrupted write left: the name the journal records, in ``folder``, of
    the device and inode it records, with a size between the old one it records and the new one,
    last changed (ctime) no later than the journal's last stamp and a few seconds
    (:func:`write_in_place`). A file deleted, replaced or renamed since (its inode handed to a
    new file, say) or changed since (copied over, tagged by another program, given a new link) is
    never written: the journal is kept and reported, to restore by hand if wanted. So is one whose
    content is damaged, and another machine's. A file that already holds the journal's content
    only has the journal removed. A live writer's journal is passed over.

    Parameters
    ----------
    folder
        The folder to look in (not its sub-folders). A missing or unreadable folder is fine. Its
        journals are listed once and the listing reused while the folder is unchanged
        (:func:`journal_names`), so a check before each write into a large folder costs little.
    target
        Only the journals of this file, named as it lies in ``folder``: those of its device and
        inode (written through any of its names in ``folder``; a journal lies beside the name the
        write went through, so a write through a link in another folder is finished only from
        there), and another machine's journal for any of its names in ``folder``, whose device
        numbers cannot be compared, so that it is at least reported.
    dry_run
        Check, but write nothing: what would be finished is reported as finished.

    Returns
    -------
    list of Recovery
        One per journal found (live writers' left out).
    """
    folder = Path(folder)
    wanted = None
    if target is not None:
        try:
            tst = os.stat(target)
        except OSError:
            return []
        wanted = (tst.st_dev, tst.st_ino)
    done: list[Recovery] = []
    for name in journal_names(folder):
        match = JOURNAL_PATTERN.fullmatch(name)
        if match is None:  # journal_names gives only matching names
            continue
        ident = (int(match["dev"]), int(match["ino"]))
        if wanted is not None and ident != wanted:
            # Another machine numbers devices its own way: its journal is this file's where the
            # name it records is one of this file's names here.
            if match["host"] == host_name() or _file_of(folder, wanted, match["name"]) is None:
                continue
        journal = folder / name
        try:
            if not stat.S_ISREG(os.lstat(journal).st_mode):
                continue
        except OSError:  # finished meanwhile, by another genrify
            continue
        live = _journal_owner_live(match, journal)
        if live:
            continue
        if live is None:
            done.append(Recovery(journal, None, False, f"left by genrify on another machine ({match['host']}), "
                                                        "which finishes it on its next write there"))
            continue
        found = _file_of(folder, ident, match["name"])
        if found is None:
            done.append(Recovery(journal, None, False, "the file it belongs to is gone or was replaced"))
            continue
        done.append(_finish(journal, found, match, dry_run, Path(target) if target is not None else found))
    return done


def _file_of(folder: Path, ident: tuple[int, int], recorded: str) -> Path | None:
    """The regular file in ``folder`` under the name a journal records (cut as in its name), of
    device and inode ``ident``; ``None`` where no such name is that file any more."""
    candidates = [folder / recorded]
    if len(os.fsencode(recorded)) > _JOURNAL_NAME_BYTES - 4:
        # The name may have been cut to fit the journal's name: any name it begins is a candidate.
        with contextlib.suppress(OSError):
            candidates += [folder / n for n in os.listdir(folder)
                           if n != recorded and _name_part(n, _JOURNAL_NAME_BYTES) == recorded]
    for path in candidates:
        if path.name.endswith(JOURNAL_SUFFIX) or is_temp_name(path.name):
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == ident:
            return path
    return None


def _unchanged_since(journal_st: os.stat_result, file_st: os.stat_result, match: re.Match[str]) -> bool:
    """Whether the file of stat ``file_st`` can still be the one its journal's write left.

    While :func:`write_in_place` writes, the file's size stays between its old size (in the
    journal's name) and the new one (the journal's), and the file changes at most one write call
    after the journal's modification time, stamped before each change. A file changed later than
    that (or made later: a new file given a freed inode) was changed by someone else since.
    """
    old, new = int(match["size"]), journal_st.st_size
    if not min(old, new) <= file_st.st_size <= max(old, new):
        return False
    return file_st.st_ctime_ns <= journal_st.st_mtime_ns + _STAMP_SLACK_NS


def _finish(journal: Path, found: Path, match: re.Match[str], dry_run: bool, shown: Path) -> Recovery:
    """Copy a checked journal into its file ``found`` in place, read it back, remove the journal.

    ``shown`` is the file's name as the caller knows it, for the report.
    """
    digest = match["digest"]
    try:
        journal_st = os.stat(journal)  # before a write here stamps it
        if content_digest(journal) != digest:
            return Recovery(journal, shown, False, "its content does not match its checksum (damaged)")
        file_st = os.stat(found)
        if content_digest(found) == digest:
            # Already whole (the write was done but for removing the journal): nothing is written,
            # so nothing is lost whatever happened to the file since.
            if not dry_run:
                with deferred_signals(), _working_on(journal):
                    _remove_journal(journal)
            return Recovery(journal, shown, True)
        if not _unchanged_since(journal_st, file_st, match):
            return Recovery(journal, shown, False, f"its file {shown} changed since the interrupted write "
                                                   "(restore it by hand if wanted)")
        if dry_run:
            return Recovery(journal, shown, True)
        with deferred_signals(), _working_on(journal):
            _overwrite(journal, found, lambda: None)
            if content_digest(found) != digest:
                return Recovery(journal, shown, False, "the file did not read back as written")
            _remove_journal(journal)
    except OSError as exc:
        return Recovery(journal, shown, False, f"could not put it back ({exc.strerror or exc})")
    return Recovery(journal, shown, True)


def _remove_journal(journal: Path) -> None:
    try:
        os.unlink(journal)
    except FileNotFoundError:  # another genrify finished it at the same moment
        pass
    fsync_dir(journal.parent)


def replace_with(tmp: str | Path, path: str | Path) -> None:
    """Flush ``tmp`` and rename it over ``path`` (same folder), then flush the folder."""
    _commit(Path(tmp), Path(path), overwrite=True)
