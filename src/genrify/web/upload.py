"""Receiving one song: a multipart body streamed to a private file, with limits on size and time.

:class:`Upload` parses the body with python-multipart as it arrives: the file part goes to the
app's private directory under a name the server chooses (the client's file name only lends a
whitelisted extension, which the decoders use), counted as it arrives and refused with 413 at the
size limit, dropped with 408 when the client stalls or trickles (a read timeout and a minimum
rate); small form fields stay in memory. :meth:`Upload.remove` deletes the file however the
request ends.

:func:`make_upload_dir` makes a server's private directory, with a marker beside it named as
:mod:`genrify.core.fsutil` names a temporary file (it carries the host and the server's pid); a server
killed with ``kill -9`` cannot remove its directory, so the next one started in the same place
removes it, once :func:`genrify.core.fsutil.remove_leftovers` finds that its marker's process is gone.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from genrify.audio.decode import AUDIO_EXTENSIONS
from genrify.core import fsutil
from genrify.errors import GenrifyIOError, http_status
from genrify.web.responses import ClientError

if TYPE_CHECKING:
    from fastapi import Request

log = logging.getLogger("genrify.web")

#: Default largest upload, in bytes.
DEFAULT_MAX_UPLOAD_BYTES = 100 * 2**20
#: Longest a client may stay silent while it sends a request (its headers, or any part of an upload).
DEFAULT_REQUEST_TIMEOUT = 30.0
#: Slowest upload accepted, in bytes per second, averaged from the start once ``request_timeout`` has
#: passed (64 kbit/s: any real connection beats it; a trickling client cannot hold a slot for hours).
DEFAULT_MIN_UPLOAD_RATE = 8 * 2**10
#: Largest header line of one multipart part: a long client file name (5000 characters, UTF-8 or
#: percent-encoded) must fit; python-multipart's own default (4 KB) refuses it as "malformed".
_MAX_PART_HEADER_BYTES = 64 * 2**10
#: Room for the multipart framing, part headers and the small form fields around the file.
FORM_OVERHEAD = 256 * 2**10
#: Largest value of one form field (model name, top_k, flags).
_MAX_FIELD_BYTES = 1024
_MAX_FIELDS = 16
#: How every server's upload directory is named (``tempfile.mkdtemp`` adds a random part).
UPLOAD_DIR_PREFIX = "genrify-web-"


def display_name(filename: str | None) -> str:
    """A client's file name made safe to show: its last component, printable, at most 200 characters.

    Only ever displayed and returned; never used as a path. A browser writes ``"``, CR and LF in a
    multipart file name as ``%22``, ``%0D`` and ``%0A`` (the HTML standard's form encoding): those
    three are read back, so that the name shown is the one the user chose.
    """
    name = re.sub("%22|%0D|%0A", lambda m: {"%22": '"', "%0D": "\r", "%0A": "\n"}[m.group()], filename or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c for c in unicodedata.normalize("NFC", name) if not unicodedata.category(c).startswith("C"))
    name = name.strip()
    if name.strip(".") == "":  # "." and ".." name nothing
        name = ""
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 190] + "…" + dot + ext) if dot and len(ext) <= 8 else name[:200]
    return name or "upload"


def safe_extension(filename: str | None) -> str:
    """The client name's extension where it is a known audio extension (lower-cased), else ``""``."""
    suffix = os.path.splitext(display_name(filename))[1].lower()
    return suffix if suffix in AUDIO_EXTENSIONS else ""


class Upload:
    """One request's multipart body, streamed: the file part to disk, the small fields to memory.

    Parameters
    ----------
    directory
        The app's private upload directory; the file is created there under a random name.
    max_bytes
        Largest file accepted; a larger one is refused with 413 while it arrives.
    timeout
        Seconds the client may stay silent before the upload is dropped with 408.
    min_rate
        Slowest upload kept, in bytes per second, averaged from its start once ``timeout`` has passed.

    Attributes
    ----------
    path
        Where the file part was written (``None`` until one arrives).
    filename
        The client's file name, as sent (display it through :func:`display_name` only); ``None``
        where it sent none.
    fields
        The small form fields, by name.
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
        min_rate: float = DEFAULT_MIN_UPLOAD_RATE,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.min_rate = min_rate
        self.path: Path | None = None
        self.filename: str | None = None
        self.size = 0
        self.fields: dict[str, str] = {}
        self.ended = False
        self._fd: int | None = None
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._part: str | None = None  # "file", "field", or "skip"
        self._field_name = ""
        self._field_value = bytearray()
        self._parts = 0

    # python-multipart callbacks ------------------------------------------------------------
    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > _MAX_FIELDS:
            raise ClientError(422, f"too many form fields (at most {_MAX_FIELDS})")
        self._headers = {}
        self._part = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _kind, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        # The field 'file' is the song even without a file name (curl -F 'file=<song.mp3', some
        # HTTP libraries): it is decoded by its content, as any upload is.
        if b"filename" in options or name == "file":
            if name != "file":
                self._part = "skip"  # a file under another name: not ours, read past it
                return
            if self.path is not None:
                raise ClientError(422, "send one file per request")
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace") or None
            # The server chooses the name; the client's name lends only a known audio extension.
            self.path = self.directory / f"upload-{secrets.token_hex(12)}{safe_extension(self.filename)}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
            self._fd = os.open(self.path, flags, 0o600)
            self._part = "file"
        else:
            self._part = "field"
            self._field_name = name
            self._field_value = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "file":
            self.size += end - start
            if self.size > self.max_bytes:
                raise ClientError(413, too_large(self.max_bytes))
            view = memoryview(data)[start:end]
            while view:
                written = os.write(self._fd, view)  # type: ignore[arg-type]
                view = view[written:]
        elif self._part == "field":
            self._field_value += data[start:end]
            if len(self._field_value) > _MAX_FIELD_BYTES:
                raise ClientError(422, f"form field {self._field_name!r} is too long")

    def on_part_end(self) -> None:
        if self._part == "file":
            self._close()
        elif self._part == "field":
            self.fields[self._field_name] = self._field_value.decode("utf-8", "replace")
        self._part = None

    def on_end(self) -> None:
        self.ended = True

    # --------------------------------------------------------------------------------------
    async def receive(self, request: Request) -> None:
        """Read the whole body, or raise :class:`ClientError` (with ``Connection: close``: the rest of
        a refused body is never read, so the connection cannot serve another request)."""
        try:
            await self._receive(request)
        except ClientError as exc:
            exc.headers = {**(exc.headers or {}), "Connection": "close"}
            raise

    async def _receive(self, request: Request) -> None:
        import anyio
        from python_multipart.exceptions import MultipartParseError
        from python_multipart.multipart import MultipartParser, parse_options_header
        from starlette.requests import ClientDisconnect

        kind, options = parse_options_header(request.headers.get("content-type", ""))
        if kind != b"multipart/form-data":
            raise ClientError(415, "send the song as multipart/form-data, in the field 'file'")
        boundary = options.get(b"boundary")
        if not boundary:
            raise ClientError(422, "the multipart body has no boundary")
        callbacks = {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
            "on_part_data", "on_part_end", "on_end")}
        try:
            parser = MultipartParser(boundary, callbacks, **_PARSER_LIMITS)  # type: ignore[arg-type]
        except (ValueError, MultipartParseError) as exc:  # e.g. a boundary over 256 bytes
            raise ClientError(422, f"the multipart body's boundary is unusable ({exc})") from None
        limit = self.max_bytes + FORM_OVERHEAD
        total = 0
        start = time.monotonic()
        chunks = request.stream().__aiter__()
        try:
            while True:
                # A client that stops sending is dropped, and one that trickles too: each would
                # otherwise hold a connection and a partial file for as long as it likes.
                with anyio.move_on_after(self.timeout) as waited:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                if waited.cancelled_caught:
                    raise ClientError(408, f"the upload stalled: nothing arrived for {self.timeout:g} s")
                total += len(chunk)
                elapsed = time.monotonic() - start
                if elapsed > self.timeout and total < self.min_rate * elapsed:
                    raise ClientError(408, f"the upload is too slow ({_size(total / elapsed)}/s; this server "
                                            f"needs at least {_size(self.min_rate)}/s)")
                if total > limit:
                    raise ClientError(413, too_large(self.max_bytes))
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError:
            raise ClientError(422, "the multipart body is malformed") from None
        except ClientDisconnect:
            raise ClientError(400, "the upload was interrupted") from None
        except asyncio.CancelledError:
            server = getattr(request.app.state, "server", None)
            if server is None or not getattr(server, "should_exit", False):
                raise  # not the server stopping: the cancellation goes on (the partial file goes below)
            # The server is stopping and its grace period ran out mid-upload: the client is told so
            # in JSON (uvicorn would answer a plain-text 500 and log a traceback); the partial file
            # is removed as for any failed upload.
            raise ClientError(503, "the server is stopping; send the file again once it is back") from None
        except OSError as exc:  # the disk is full, or the upload directory went away
            log.error("cannot store an upload: %s", exc)
            raise ClientError(http_status(GenrifyIOError), "the server has no room to store this upload now") from None
        finally:
            self._close()
        if not self.ended:
            raise ClientError(422, "the upload ended before the multipart body was complete")

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self._close()
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def _parser_limits() -> dict[str, int]:
    """python-multipart's part-header limit raised to fit long file names (where it has one)."""
    from python_multipart.multipart import MultipartParser

    accepted = inspect.signature(MultipartParser.__init__).parameters
    return {"max_header_size": _MAX_PART_HEADER_BYTES} if "max_header_size" in accepted else {}


_PARSER_LIMITS = _parser_limits()


def too_large(limit: int) -> str:
    """The line a client gets for a file over ``limit`` bytes."""
    return f"the file is larger than this server accepts ({_size(limit)})"


def _size(n: float) -> str:
    return f"{n / 2**20:.3g} MB" if n >= 2**20 else f"{n / 2**10:.3g} KB"


# --- the upload directory ----------------------------------------------------------------------


def make_upload_dir(parent: str | Path | None = None) -> tuple[Path, Path]:
    """A new private upload directory (mode 0700) in ``parent``, after removing dead servers' ones.

    Parameters
    ----------
    parent
        Where to make it (default: the system's temporary directory).

    Returns
    -------
    directory, marker
        The directory, and the empty marker file beside it that says which process owns it
        (:func:`genrify.core.fsutil.temp_name` of the directory's name). Remove both with
        :func:`remove_upload_dir`.

    Raises
    ------
    OSError
        ``parent`` is missing or not writable.
    """
    parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    remove_dead_upload_dirs(parent)
    directory = Path(tempfile.mkdtemp(prefix=UPLOAD_DIR_PREFIX, dir=parent))
    os.chmod(directory, 0o700)
    marker = parent / fsutil.temp_name(directory.name)
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
    except OSError:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory, marker


def remove_upload_dir(directory: str | Path, marker: str | Path) -> None:
    """Remove a server's upload directory and its marker (a missing one is fine)."""
    shutil.rmtree(directory, ignore_errors=True)
    # The marker goes last: a server killed between the two still leaves its directory marked.
    try:
        os.unlink(marker)
    except FileNotFoundError:
        pass


def remove_dead_upload_dirs(parent: str | Path) -> list[Path]:
    """Remove the upload directories in ``parent`` of servers that were killed (``kill -9``).

    A directory goes only when its marker is one :func:`genrify.core.fsutil.remove_leftovers` removes:
    made on this machine by a process that is gone. A live server's directory, another machine's
    (a shared folder), another user's, and one without a marker (made by an older genrify) are left
    alone.

    Parameters
    ----------
    parent
        The folder the servers made their directories in (not searched below).

    Returns
    -------
    list of Path
        The directories removed.
    """
    parent = Path(parent)
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    uid = getattr(os, "getuid", lambda: None)()
    removed: list[Path] = []
    for name in names:
        match = fsutil.TEMP_PATTERN.fullmatch(name)
        if match is None or not match["name"].startswith(UPLOAD_DIR_PREFIX):
            continue
        target = match["name"]
        if not fsutil.remove_leftovers(parent, target):
            continue  # its server still runs, or the marker is not this user's to remove
        directory = parent / target
        try:
            info = os.lstat(directory)
        except OSError:
            continue
        # Only a real directory of this user's (never through a link another user planted).
        if stat.S_ISDIR(info.st_mode) and (uid is None or info.st_uid == uid):
            shutil.rmtree(directory, ignore_errors=True)
            log.info("removed the upload directory %s of a server that was killed", directory)
            removed.append(directory)
    return removed
