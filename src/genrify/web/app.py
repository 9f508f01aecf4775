"""The web app: a page for trying models on songs, and the REST API behind it.

``create_app`` builds a FastAPI app over one or more loaded models; ``serve`` loads model files and
runs it with uvicorn (``genrify serve``). The page (``static/``) is plain HTML, CSS and JavaScript
with no external assets; everything it shows comes from the API:

- ``POST /api/classify``: one song as the multipart field ``file``; answers the JSON object of
  ``genrify classify --format json`` (:meth:`genrify.predict.Prediction.to_dict`) plus the model's
  name, and optionally the song's log-mel spectrogram as a PNG data URL.
- ``GET /api/models``: the loaded models with their genres, architecture, training accuracy and
  feature parameters; ``GET /api/health``.

Uploads are streamed to a private directory (mode 0700) under a name the server chooses, counted as
they arrive and refused with 413 at the size limit, dropped with 408 when the client stalls or
trickles (a read timeout and a minimum rate), decoded to check that they are audio (the client's
file name only lends a whitelisted extension, which the decoders use), and removed when the request
ends, however it ends. Only a fully received song queues for inference, which runs in a bounded pool
of threads (torch releases the GIL), so the event loop keeps answering while songs are classified.
Every answer, errors included, is strict JSON ``{"detail": "..."}`` (no NaN). :mod:`genrify.web.server`
runs the app with uvicorn.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import time
import unicodedata
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from genrify import __version__
from genrify.audio import AUDIO_EXTENSIONS
from genrify.errors import AudioError, GenrifyError, ParameterError

if TYPE_CHECKING:
    from genrify.predict import Classifier

log = logging.getLogger("genrify.web")

STATIC = Path(__file__).resolve().parent / "static"
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
_FORM_OVERHEAD = 256 * 2**10
#: Largest value of one form field (model name, top_k, flags).
_MAX_FIELD_BYTES = 1024
_MAX_FIELDS = 16
#: Widest spectrogram image sent to the page, in pixels (one column per frame below that).
SPECTROGRAM_MAX_WIDTH = 1200
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
#: Pages and files that get the strict content security policy (Swagger UI at /docs loads its own
#: scripts and is left alone).
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


# --- models ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """A model the app offers: the classifier, the name the page shows, and what to tell about it.

    Attributes
    ----------
    name
        Shown in the page and passed as ``model`` to the API; unique within an app.
    model
        Anything with ``network``, ``genres``, ``params`` and ``chunk_frames``
        (:class:`genrify.predict.Classifier`), e.g. a :class:`genrify.modelfile.GenreModel`.
    metadata
        JSON-ready facts for ``GET /api/models``: ``architecture``, ``genres``, ``song_accuracy``
        (the training report's mean song accuracy, or ``None``), ``features``, ``segment_seconds``,
        ... (:func:`describe` makes them from a model).
    description
        One line for people, e.g. where the model comes from.
    """

    name: str
    model: Classifier
    metadata: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 100:
            raise ParameterError(f"a model's name must be 1 to 100 characters, not {self.name!r}")
        if any(unicodedata.category(c).startswith("C") for c in self.name):
            raise ParameterError(f"a model's name must not hold control characters: {self.name!r}")
        for attr in ("network", "genres", "params", "chunk_frames"):
            if not hasattr(self.model, attr):
                raise ParameterError(f"model {self.name!r} has no {attr!r}: not a genre classifier")

    @classmethod
    def from_model(cls, name: str, model: Classifier, *, description: str = "", **extra: Any) -> ModelEntry:
        """An entry whose metadata :func:`describe` reads from the model (``extra`` is added to it)."""
        return cls(name=name, model=model, metadata={**describe(model), **extra}, description=description)

    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None, *, description: str = "") -> ModelEntry:
        """Load a model file (:func:`genrify.modelfile.load`); the name defaults to the file's stem.

        Raises
        ------
        ModelFileError
            The file cannot be loaded.
        """
        from genrify import modelfile

        path = Path(path)
        model = modelfile.load(path)
        return cls.from_model(name or path.stem, model, description=description, file=path.name)

    def to_dict(self) -> dict[str, Any]:
        """What ``GET /api/models`` says about this model."""
        return {"name": self.name, "description": self.description, **self.metadata}


def describe(model: Classifier) -> dict[str, Any]:
    """The facts about a model that the page shows: architecture, genres, training accuracy, features."""
    info = getattr(model, "info", None) or {}
    summary = (info.get("summary") or {}) if isinstance(info, Mapping) else {}
    params = model.params
    return {
        "architecture": getattr(model, "architecture", None),
        "genres": list(model.genres),
        "song_accuracy": _number(summary.get("song_accuracy_mean")),
        "song_accuracy_std": _number(summary.get("song_accuracy_std")),
        "runs": summary.get("runs"),
        "features": params.to_dict(),
        "chunk_frames": int(model.chunk_frames),
        "segment_seconds": round(model.chunk_frames * params.seconds_per_frame, 4),
        "genrify_version": getattr(model, "genrify_version", None),
    }


def _number(value: Any) -> float | None:
    """A finite float, or ``None``: NaN has no place in strict JSON (``GET /api/models`` would fail)."""
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _entries(models: Sequence[ModelEntry] | Mapping[str, Classifier]) -> dict[str, ModelEntry]:
    if isinstance(models, Mapping):
        entries = [m if isinstance(m, ModelEntry) else ModelEntry.from_model(n, m) for n, m in models.items()]
    else:
        entries = list(models)
    if not entries:
        raise ParameterError("the web app needs at least one model")
    out: dict[str, ModelEntry] = {}
    for entry in entries:
        if not isinstance(entry, ModelEntry):
            raise ParameterError(f"expected ModelEntry objects, got {type(entry).__name__}")
        if entry.name in out:
            raise ParameterError(f"two models are named {entry.name!r}; names must be unique")
        out[entry.name] = entry
    return out


# --- helpers -----------------------------------------------------------------------------------


class _ClientError(Exception):
    """A request the app refuses: the status code and one line for the client."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def display_name(filename: str | None) -> str:
    """A client's file name made safe to show: its last component, printable, at most 200 characters.

    Only ever displayed and returned; never used as a path.
    """
    name = re.split(r"[\\/]", filename or "")[-1]
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


def _parse_bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return default if text == "" else False
    raise _ClientError(422, f"{name} must be true or false, not {value!r}")


def _parse_top_k(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        k = int(value.strip())
    except ValueError:
        raise _ClientError(422, f"top_k must be a whole number of genres (1 or more), not {value!r}") from None
    if k < 1:
        raise _ClientError(422, f"top_k must be at least 1, not {k}")
    return k


def spectrogram_png(
    features: np.ndarray, max_width: int = SPECTROGRAM_MAX_WIDTH, top_db: float = 80.0, scale: str = "db"
) -> str:
    """A log-mel spectrogram ``(n_mels, frames)`` as a ``data:image/png;base64,...`` URL.

    One pixel row per mel band (low bands at the bottom), one column per frame up to ``max_width``
    columns (longer songs are averaged down). Colours span ``top_db`` below the peak for decibels;
    other compressions (musicnn's ``log10p``, 0 for silence) span their whole range.
    """
    from matplotlib import (
        image,  # pyplot is never imported: no GUI backend, safe in threads
    )

    frames = features.shape[1]
    if frames > max_width:
        # Column means, a block of columns at a time: a long song's float16 features are never
        # copied whole to float32.
        edges = np.linspace(0, frames, max_width + 1).round().astype(np.int64)
        db = np.empty((features.shape[0], max_width), dtype=np.float32)
        for i in range(0, max_width, 64):
            j = min(i + 64, max_width)
            block = np.asarray(features[:, edges[i] : edges[j]], dtype=np.float32)
            db[:, i:j] = np.add.reduceat(block, edges[i:j] - edges[i], axis=1) / np.diff(edges[i : j + 1])
    else:
        db = np.asarray(features, dtype=np.float32)
    peak = float(db.max()) if db.size else 0.0
    floor = peak - top_db if scale == "db" else (float(db.min()) if db.size else 0.0)
    buffer = io.BytesIO()
    image.imsave(buffer, db, cmap="magma", vmin=floor, vmax=max(peak, floor + 1e-6), origin="lower", format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- upload --------------------------------------------------------------------------------------


class _Upload:
    """One request's multipart body, streamed: the file part to disk, the small fields to memory."""

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
            raise _ClientError(422, f"too many form fields (at most {_MAX_FIELDS})")
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
        if b"filename" in options:
            if name != "file":
                self._part = "skip"  # a file under another name: not ours, read past it
                return
            if self.path is not None:
                raise _ClientError(422, "send one file per request")
            self.filename = options[b"filename"].decode("utf-8", "replace")
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
                raise _ClientError(413, _too_large(self.max_bytes))
            view = memoryview(data)[start:end]
            while view:
                written = os.write(self._fd, view)  # type: ignore[arg-type]
                view = view[written:]
        elif self._part == "field":
            self._field_value += data[start:end]
            if len(self._field_value) > _MAX_FIELD_BYTES:
                raise _ClientError(422, f"form field {self._field_name!r} is too long")

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
        """Read the whole body, or raise :class:`_ClientError` (with ``Connection: close``: the rest of
        a refused body is never read, so the connection cannot serve another request)."""
        try:
            await self._receive(request)
        except _ClientError as exc:
            exc.headers = {**(exc.headers or {}), "Connection": "close"}
            raise

    async def _receive(self, request: Request) -> None:
        import anyio
        from python_multipart.exceptions import MultipartParseError
        from python_multipart.multipart import MultipartParser, parse_options_header
        from starlette.requests import ClientDisconnect

        kind, options = parse_options_header(request.headers.get("content-type", ""))
        if kind != b"multipart/form-data":
            raise _ClientError(415, "send the song as multipart/form-data, in the field 'file'")
        boundary = options.get(b"boundary")
        if not boundary:
            raise _ClientError(422, "the multipart body has no boundary")
        callbacks = {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
            "on_part_data", "on_part_end", "on_end")}
        try:
            parser = MultipartParser(boundary, callbacks, **_PARSER_LIMITS)  # type: ignore[arg-type]
        except (ValueError, MultipartParseError) as exc:  # e.g. a boundary over 256 bytes
            raise _ClientError(422, f"the multipart body's boundary is unusable ({exc})") from None
        limit = self.max_bytes + _FORM_OVERHEAD
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
                    raise _ClientError(408, f"the upload stalled: nothing arrived for {self.timeout:g} s")
                total += len(chunk)
                elapsed = time.monotonic() - start
                if elapsed > self.timeout and total < self.min_rate * elapsed:
                    raise _ClientError(408, f"the upload is too slow ({_size(total / elapsed)}/s; this server "
                                            f"needs at least {_size(self.min_rate)}/s)")
                if total > limit:
                    raise _ClientError(413, _too_large(self.max_bytes))
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError:
            raise _ClientError(422, "the multipart body is malformed") from None
        except ClientDisconnect:
            raise _ClientError(400, "the upload was interrupted") from None
        except OSError as exc:  # the disk is full, or the upload directory went away
            log.error("cannot store an upload: %s", exc)
            raise _ClientError(507, "the server has no room to store this upload now") from None
        finally:
            self._close()
        if not self.ended:
            raise _ClientError(422, "the upload ended before the multipart body was complete")

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


def _too_large(limit: int) -> str:
    return f"the file is larger than this server accepts ({_size(limit)})"


def _size(n: float) -> str:
    return f"{n / 2**20:.3g} MB" if n >= 2**20 else f"{n / 2**10:.3g} KB"


# --- inference ---------------------------------------------------------------------------------


def strict_json(content: Any) -> bytes:
    """``content`` as strict JSON (RFC 8259: no NaN or Infinity, which browsers' ``JSON.parse`` refuses).

    Raises
    ------
    ValueError
        ``content`` holds a non-finite float.
    """
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


class StrictJSONResponse(JSONResponse):
    """The app's JSON responses: strict JSON; a NaN is an error (answered as JSON 500), never sent."""

    def render(self, content: Any) -> bytes:
        return strict_json(content)


def _classify_file(
    entry: ModelEntry, path: Path, name: str, top_k: int | None, timeline: bool, spectrogram: bool
) -> bytes:
    """Decode once, classify, draw the spectrogram from the same features, and render the answer as
    strict JSON (in a worker thread: a large spectrogram is not encoded on the event loop)."""
    from genrify import predict

    features = None
    try:
        if spectrogram:  # the picture needs the whole song: decode it once, classify its sampled segments
            features, duration = predict.song_features(path, entry.model.params)
            prediction = predict.predict_features(features, entry.model, duration=duration, path=name)
        else:  # only the sampled segments are decoded (the same answer `genrify classify` gives)
            prediction = predict.classify(path, entry.model)
            prediction.path = name
    except AudioError as exc:
        # The reason may quote the server's file name; the client only ever sees its own.
        reason = exc.reason.replace(str(path), name).replace(str(path.parent), "")
        raise _ClientError(422, f"{name}: could not be read as audio ({reason})") from None
    except GenrifyError as exc:
        raise _ClientError(422, f"{name}: {str(exc).replace(str(path), name)}") from None
    out: dict[str, Any] = {"model": entry.name, **prediction.to_dict(top_k=top_k, timeline=timeline)}
    if features is not None:
        out["spectrogram_png"] = spectrogram_png(features, scale=entry.model.params.scale)
    try:
        return strict_json(out)
    except ValueError:
        # A broken model (NaN weights) or features it cannot handle: there is no answer to give, and
        # a NaN must never reach the client (strict JSON parsers refuse the whole answer).
        raise _ClientError(422, f"{name}: could not be classified (the model's probabilities are not "
                                "finite numbers)") from None


# --- the app -----------------------------------------------------------------------------------


class _SecurityHeaders:
    """ASGI middleware: a strict content security policy and friends for the page and its files."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(("/docs", "/redoc")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                from starlette.datastructures import MutableHeaders

                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
                if not scope["path"].startswith("/api/"):
                    headers.setdefault("Content-Security-Policy", _CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)


_CLASSIFY_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "The song (any format genrify decodes)."},
                    "model": {"type": "string", "description": "Model name (default: the first in GET /api/models)."},
                    "top_k": {"type": "integer", "minimum": 1, "description": "Genres in `top` (default: all)."},
                    "timeline": {"type": "boolean", "description": "Add the per-segment timeline."},
                    "spectrogram": {"type": "boolean",
                                    "description": "Add `spectrogram_png`, the log-mel spectrogram as a PNG data URL."},
                },
            }
        }
    },
}


def _error_doc(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"example": {"detail": text}}}}


def create_app(
    models: Sequence[ModelEntry] | Mapping[str, Classifier],
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    workers: int = 2,
    max_pending: int | None = None,
    upload_dir: str | Path | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    min_upload_rate: float = DEFAULT_MIN_UPLOAD_RATE,
    max_uploads: int | None = None,
) -> FastAPI:
    """The web app over ``models`` (the first is the default).

    Parameters
    ----------
    models
        :class:`ModelEntry` objects, or a mapping from names to classifiers.
    max_upload_bytes
        Largest song accepted; a larger one is refused with 413 while it arrives.
    workers
        Songs classified at once (threads); more requests wait their turn.
    max_pending
        Received songs waiting for or in inference at once, beyond which the app answers 503
        (default: ``8 * workers``, at least 16). Only a fully received upload takes a place, so
        clients that stall mid-upload cannot lock others out.
    upload_dir
        Where the app makes its private upload directory (default: the system's temporary
        directory). ``app.state.upload_dir`` is that directory; it is removed with the app, or at
        once by ``app.state.close()``.
    request_timeout
        Seconds an upload may stay silent before it is dropped with 408 (and its partial file
        removed); :mod:`genrify.web.server` gives a request's headers the same time.
    min_upload_rate
        Slowest upload kept, in bytes per second, averaged from its start once ``request_timeout``
        has passed; a slower one is dropped with 408.
    max_uploads
        Uploads being received at once, beyond which the app answers 503 (default:
        ``2 * max_pending``, at least 32). With ``max_pending`` it bounds the disk uploads use.

    Raises
    ------
    ParameterError
        No models, duplicate names, or a limit out of range.
    """
    import anyio
    from fastapi.staticfiles import StaticFiles

    entries = _entries(models)
    if not isinstance(max_upload_bytes, int) or max_upload_bytes < 1:
        raise ParameterError(f"max_upload_bytes must be a positive number of bytes, not {max_upload_bytes!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers must be at least 1, not {workers!r}")
    pending_limit = max_pending if max_pending is not None else max(16, 8 * workers)
    if not isinstance(pending_limit, int) or pending_limit < 1:
        raise ParameterError(f"max_pending must be at least 1, not {max_pending!r}")
    upload_limit = max_uploads if max_uploads is not None else max(32, 2 * pending_limit)
    if not isinstance(upload_limit, int) or upload_limit < 1:
        raise ParameterError(f"max_uploads must be at least 1, not {max_uploads!r}")
    if not (isinstance(request_timeout, (int, float)) and 0 < request_timeout < math.inf):
        raise ParameterError(f"request_timeout must be a positive number of seconds, not {request_timeout!r}")
    if not (isinstance(min_upload_rate, (int, float)) and 0 <= min_upload_rate < math.inf):
        raise ParameterError(f"min_upload_rate must be 0 or more bytes per second, not {min_upload_rate!r}")
    default = next(iter(entries))

    app = FastAPI(
        title="genrify",
        version=__version__,
        description="Classify songs into genres. The page is at `/`; `POST /api/classify` takes one song.",
        default_response_class=StrictJSONResponse,
    )
    directory = Path(tempfile.mkdtemp(prefix="genrify-web-", dir=upload_dir))
    os.chmod(directory, 0o700)
    limiter = anyio.CapacityLimiter(workers)
    app.state.models = entries
    app.state.upload_dir = directory
    # Removes the upload directory: at once when called (serve() does, however it stops), else when
    # the app is collected or the interpreter exits. Runs once.
    app.state.close = weakref.finalize(app, shutil.rmtree, str(directory), True)
    app.state.max_upload_bytes = max_upload_bytes
    app.state.workers = workers
    app.state.limiter = limiter
    app.state.request_timeout = float(request_timeout)
    app.state.max_uploads = upload_limit
    app.state.max_pending = pending_limit
    state = {"uploading": 0, "pending": 0}

    @app.exception_handler(_ClientError)
    async def client_error(_request: Request, exc: _ClientError) -> JSONResponse:
        return StrictJSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's default is a plain-text 500; the page and API clients expect JSON everywhere.
        # (Starlette logs the exception after this handler answers.)
        return StrictJSONResponse({"detail": "internal server error"}, status_code=500)

    @app.get("/api/health", summary="Is the server up")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "models": len(entries),
            "workers": workers,
            "busy": int(limiter.borrowed_tokens),
            "waiting": max(0, state["pending"] - int(limiter.borrowed_tokens)),
            "uploading": state["uploading"],
        }

    @app.get("/api/models", summary="The models this server offers")
    async def list_models() -> dict[str, Any]:
        return {
            "default": default,
            "max_upload_bytes": max_upload_bytes,
            "models": [entry.to_dict() for entry in entries.values()],
        }

    @app.post(
        "/api/classify",
        summary="Classify one song",
        openapi_extra={"requestBody": _CLASSIFY_BODY},
        responses={
            408: _error_doc("the upload stalled: nothing arrived for 30 s"),
            413: _error_doc("the file is larger than this server accepts (100 MB)"),
            415: _error_doc("send the song as multipart/form-data, in the field 'file'"),
            422: _error_doc("song.mp3: could not be read as audio (not a recognised audio format (cannot decode))"),
            500: _error_doc("internal server error"),
            503: _error_doc("the server is busy; try again shortly"),
            507: _error_doc("the server has no room to store this upload now"),
        },
    )
    async def classify(
        request: Request,
        model: str | None = Query(None, description="Model name (default: the first); a form field of the same name wins."),
        top_k: str | None = Query(None, description="Genres in `top`, 1 or more (default: all)."),
        timeline: str | None = Query(None, description="true: add the per-segment timeline."),
        spectrogram: str | None = Query(None, description="true: add `spectrogram_png`, a PNG data URL."),
    ) -> JSONResponse:
        """The song's genres: the JSON object of `genrify classify --format json`, with `model`
        (the model's name) and, when asked, `timeline` and `spectrogram_png`. `path` is the client's
        file name, for display."""
        # Refuse what can be refused before reading a byte of the body.
        options = _options({"model": model, "top_k": top_k, "timeline": timeline, "spectrogram": spectrogram}, entries)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_upload_bytes + _FORM_OVERHEAD:
            raise _ClientError(413, _too_large(max_upload_bytes), headers={"Connection": "close"})
        # The inference queue is full: say so now rather than after the upload.
        if state["pending"] >= pending_limit or state["uploading"] >= upload_limit:
            raise _ClientError(503, "the server is busy; try again shortly",
                               headers={"Retry-After": "5", "Connection": "close"})
        upload = _Upload(directory, max_upload_bytes, request_timeout, min_upload_rate)
        queued = False
        state["uploading"] += 1
        try:
            try:
                await upload.receive(request)
            finally:
                state["uploading"] -= 1
            if upload.path is None:
                raise _ClientError(422, "no file: send the song in the multipart field 'file'")
            fields = {k: v for k, v in upload.fields.items() if k in ("model", "top_k", "timeline", "spectrogram")}
            if fields:
                options = _options({"model": model, "top_k": top_k, "timeline": timeline,
                                       "spectrogram": spectrogram, **fields}, entries)
            entry, k, with_timeline, with_spectrogram = options
            # Only a song received whole takes a place in the queue (an upload that stalls is
            # dropped by its timeout without ever holding one).
            if state["pending"] >= pending_limit:
                raise _ClientError(503, "the server is busy; try again shortly", headers={"Retry-After": "5"})
            state["pending"] += 1
            queued = True
            name = display_name(upload.filename)
            work = partial(_classify_file, entry, upload.path, name, k, with_timeline, with_spectrogram)
            try:
                body = await anyio.to_thread.run_sync(work, limiter=limiter)
            except _ClientError:
                raise
            except Exception:
                log.exception("classifying %s failed", name)
                raise _ClientError(500, f"{name}: classification failed on the server") from None
            return Response(body, media_type="application/json")
        finally:
            upload.remove()
            if queued:
                state["pending"] -= 1

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(_SecurityHeaders)
    return app


def _options(values: Mapping[str, str | None], entries: Mapping[str, ModelEntry]) -> tuple[ModelEntry, int | None, bool, bool]:
    name = values.get("model")
    if name is None or name == "":
        entry = next(iter(entries.values()))
    elif name in entries:
        entry = entries[name]
    else:
        known = ", ".join(repr(n) for n in entries)
        raise _ClientError(422, f"unknown model {name[:100]!r}; this server has {known}")
    return (
        entry,
        _parse_top_k(values.get("top_k")),
        _parse_bool("timeline", values.get("timeline"), False),
        _parse_bool("spectrogram", values.get("spectrogram"), False),
    )
