"""Durable file writes: whole or not at all, even if the machine stops half-way.

Shared by everything that writes a user's files (tags, organised copies, playlists, outputs): the
content goes to a temporary file beside the target, is flushed to disk, and is renamed over the
target; the folder is then flushed so that the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TEMP_SUFFIX = ".genrify-part"


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


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically.

    A path that exists and is not a regular file (``/dev/stdout``, a named pipe) is written into
    directly: renaming over it would replace the device. The new file's mode is left to the umask
    (not mkstemp's 0600), as for any file the user creates, so a media server running as another
    user can read a playlist.

    Raises
    ------
    OSError
        The file cannot be written; nothing is left behind.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
