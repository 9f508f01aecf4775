"""The web app: a page for trying models on songs, and the REST API behind it.

``create_app`` builds a FastAPI app over one or more loaded models (:mod:`genrify.web.catalogue`);
``serve`` (:mod:`genrify.web.server`) loads model files and runs it with uvicorn (``genrify serve``). The page (``static/``) is plain HTML, CSS and JavaScript
with no external assets; everything it shows comes from the API:

- ``POST /api/classify``: one song as the multipart field ``file``; answers the JSON object of
  ``genrify classify --format json`` (:meth:`genrify.classify.predict.Prediction.to_dict`) plus the model's
  name, and optionally the song's log-mel spectrogram as a PNG data URL.
- ``GET /api/models``: the loaded models with their model cards (:mod:`genrify.models.modelcard`), genres,
  architecture, training accuracy and feature parameters; ``GET /api/health``.
- ``GET /api/samples``: the example recordings the page offers as one-click samples, each served
  read-only by ``GET /api/samples/{name}`` (:mod:`genrify.web.samples`: names from a fixed list).

Uploads are streamed to a private directory (mode 0700) by :mod:`genrify.web.upload` (limits on
size and time), decoded to check that they are audio, and removed when the request ends, however it
ends. Only a fully received song queues for inference, which runs in a bounded pool
of threads (torch releases the GIL), so the event loop keeps answering while songs are classified.
Every answer, errors included, is strict JSON ``{"detail": "..."}`` (no NaN,
:mod:`genrify.web.responses`); a library error's status follows from its kind
(:func:`genrify.errors.http_status`). The page gets strict security headers
(:mod:`genrify.web.security`) and spectrograms drawn by :mod:`genrify.web.images`.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import weakref
from collections.abc import Collection, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from genrify import __version__
from genrify.audio.decode import check_max_duration
from genrify.defaults import MAX_DURATION
from genrify.errors import AudioError, AudioTooLongError, GenrifyError, ParameterError
from genrify.web.catalogue import ModelEntry, describe, entries_by_name
from genrify.web.images import spectrogram_png
from genrify.web.responses import ClientError, StrictJSONResponse, strict_json
from genrify.web.samples import available_samples, find_sample
from genrify.web.security import HostAndOriginCheck, SecurityHeaders
from genrify.web.upload import (
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_MIN_UPLOAD_RATE,
    DEFAULT_REQUEST_TIMEOUT,
    FORM_OVERHEAD,
    Upload,
    display_name,
    make_upload_dir,
    remove_upload_dir,
    too_large,
)

if TYPE_CHECKING:
    from genrify.classify.predict import Classifier

__all__ = ["ModelEntry", "create_app", "describe"]

log = logging.getLogger("genrify.web")

STATIC = Path(__file__).resolve().parent / "static"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
#: Uploads one client address may be sending at once.
DEFAULT_UPLOADS_PER_CLIENT = 4


def client_key(host: str | None) -> str:
    """The client an address counts as for the per-client upload limit.

    An IPv6 client counts by its /64 network (one host is usually given a whole /64, so its
    addresses are not separate clients); an IPv4-mapped address as its IPv4 address.
    """
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or ""  # a Unix socket or a test client: one client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def _parse_bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return default if text == "" else False
    raise ClientError(422, f"{name} must be true or false, not {value!r}")


def _parse_top_k(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        k = int(value.strip())
    except ValueError:
        raise ClientError(422, f"top_k must be a whole number of genres (1 or more), not {value!r}") from None
    if k < 1:
        raise ClientError(422, f"top_k must be at least 1, not {k}")
    return k


def _classify_file(
    entry: ModelEntry, path: Path, name: str, top_k: int | None, timeline: bool, spectrogram: bool,
    max_duration: float | None = MAX_DURATION,
) -> bytes:
    """Classify through the classification service (the answer `genrify classify` gives for the
    file), draw the spectrogram if asked, and render the answer as strict JSON (in a worker thread:
    a large spectrogram is not encoded on the event loop)."""
    from genrify.audio.segments import picture_features
    from genrify.classify.service import ClassifyOptions, classify_song

    features = None
    try:
        # The picture needs the whole song; the answer reuses it where the library run would read
        # the song whole too, and decodes only its sampled segments where that would seek. A song
        # longer than PICTURE_MAX_DURATION gets no picture: drawing it would cost a worker minutes.
        whole = picture_features(path, entry.model.params, max_duration=max_duration) if spectrogram else None
        features = whole[0] if whole is not None else None
        prediction = classify_song(path, entry.model, ClassifyOptions(max_duration=max_duration), name=name,
                                   whole=whole)
    except AudioError as exc:
        # The reason may quote the server's file name; the client only ever sees its own. It is
        # joined with a colon, not wrapped in brackets: reasons carry brackets of their own.
        reason = exc.reason.replace(str(path), name).replace(str(path.parent), "")
        if isinstance(exc, AudioTooLongError):  # fine audio, refused for its length (not the CLI's option)
            reason = reason.replace(" (--max-duration)", "")
            raise ClientError.from_error(exc, f"{name}: too long for this server: {reason}") from None
        raise ClientError.from_error(exc, f"{name}: could not be read as audio: {reason}") from None
    except GenrifyError as exc:
        # Bad input is 422; a missing dependency 503, storage 507 (genrify.errors.STATUS).
        raise ClientError.from_error(exc, f"{name}: {str(exc).replace(str(path), name)}") from None
    out: dict[str, Any] = {"model": entry.name, **prediction.to_dict(top_k=top_k, timeline=timeline)}
    if features is not None:
        out["spectrogram_png"] = spectrogram_png(features, scale=entry.model.params.scale)
    try:
        return strict_json(out)
    except ValueError:
        # A broken model (NaN weights) or features it cannot handle: there is no answer to give, and
        # a NaN must never reach the client (strict JSON parsers refuse the whole answer).
        raise ClientError(422, f"{name}: could not be classified (the model's probabilities are not "
                                "finite numbers)") from None


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
    uploads_per_client: int | None = DEFAULT_UPLOADS_PER_CLIENT,
    allowed_hosts: Collection[str] | None = None,
    max_duration: float | None = MAX_DURATION,
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
        once by ``app.state.close()``. Directories that killed servers left there are removed
        first (:func:`genrify.web.upload.make_upload_dir`).
    request_timeout
        Seconds an upload may stay silent before it is dropped with 408 (and its partial file
        removed); :mod:`genrify.web.server` gives a request's headers the same time.
    min_upload_rate
        Slowest upload kept, in bytes per second, averaged from its start once ``request_timeout``
        has passed; a slower one is dropped with 408.
    max_uploads
        Uploads being received at once, beyond which the app answers 503 (default:
        ``2 * max_pending``, at least 32). With ``max_pending`` it bounds the disk uploads use.
    uploads_per_client
        Uploads one client address (an IPv6 /64) may be sending at once; beyond it the app answers
        429 at once, so one client's stalled uploads cannot take every place. ``None``: no limit
        (behind a reverse proxy every client has the proxy's address). The address is the ASGI
        server's ``client``: :func:`genrify.web.make_server` gives the connection's own and never
        reads ``X-Forwarded-For``, which any client can send.
    allowed_hosts
        Host names (lower case, no port) the ``Host`` header may give; others get 400. ``None``:
        any (:func:`genrify.web.security.allowed_hosts_for` is ``genrify serve``'s policy). In
        any case a POST whose ``Origin`` names another site gets 403
        (:class:`genrify.web.security.HostAndOriginCheck`).
    max_duration
        A song holding more audio than this many seconds is refused with 422, by its header before
        it is decoded (``None``: no limit; see :func:`genrify.audio.segments.song_segments`).

    Raises
    ------
    ParameterError
        No models, duplicate names, or a limit out of range.
    """
    import anyio
    from fastapi.staticfiles import StaticFiles

    entries = entries_by_name(models)
    check_max_duration(max_duration)
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
    if uploads_per_client is not None and (not isinstance(uploads_per_client, int) or uploads_per_client < 1):
        raise ParameterError(f"uploads_per_client must be at least 1, not {uploads_per_client!r}")
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
    directory, marker = make_upload_dir(upload_dir)
    limiter = anyio.CapacityLimiter(workers)
    app.state.models = entries
    app.state.upload_dir = directory
    # Removes the upload directory: at once when called (serve() does, however it stops), else when
    # the app is collected or the interpreter exits. Runs once.
    app.state.close = weakref.finalize(app, remove_upload_dir, str(directory), str(marker))
    app.state.max_upload_bytes = max_upload_bytes
    app.state.workers = workers
    app.state.max_duration = max_duration
    app.state.limiter = limiter
    app.state.request_timeout = float(request_timeout)
    app.state.max_uploads = upload_limit
    app.state.max_pending = pending_limit
    app.state.uploads_per_client = uploads_per_client
    app.state.allowed_hosts = None if allowed_hosts is None else frozenset(allowed_hosts)
    state = {"uploading": 0, "pending": 0}
    # Uploads being received, by client (client_key); a client leaves when its last one ends.
    uploading_by_client: dict[str, int] = {}

    @app.exception_handler(ClientError)
    async def client_error(_request: Request, exc: ClientError) -> JSONResponse:
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
            400: _error_doc("this server does not answer to the host 'example.com' (genrify serve --allowed-host NAME lets it)"),
            403: _error_doc("requests from another site's page are refused (origin 'https://example.com')"),
            408: _error_doc("the upload stalled: nothing arrived for 30 s"),
            413: _error_doc("the file is larger than this server accepts (100 MB)"),
            415: _error_doc("send the song as multipart/form-data, in the field 'file'"),
            422: _error_doc("song.mp3: could not be read as audio: not a recognised audio format, or damaged (cannot decode)"),
            429: _error_doc("this client is already sending 4 uploads; send the next when one has arrived"),
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
        if length is not None and length.isdigit() and int(length) > max_upload_bytes + FORM_OVERHEAD:
            raise ClientError(413, too_large(max_upload_bytes), headers={"Connection": "close"})
        # The inference queue is full: say so now rather than after the upload.
        who = client_key(request.client.host if request.client else None)
        mine = uploading_by_client.get(who, 0)
        # A client over its share is refused at once, before its upload takes a place: clients
        # that stall (and reconnect when dropped) from one address cannot hold every place.
        if uploads_per_client is not None and mine >= uploads_per_client:
            raise ClientError(429, f"this client is already sending {mine} uploads; send the next when one "
                                   "has arrived", headers={"Retry-After": "1", "Connection": "close"})
        if state["pending"] >= pending_limit or state["uploading"] >= upload_limit:
            raise ClientError(503, "the server is busy; try again shortly",
                               headers={"Retry-After": "5", "Connection": "close"})
        upload = Upload(directory, max_upload_bytes, request_timeout, min_upload_rate)
        queued = False
        state["uploading"] += 1
        uploading_by_client[who] = mine + 1
        try:
            try:
                await upload.receive(request)
            finally:
                state["uploading"] -= 1
                left = uploading_by_client[who] - 1
                if left:
                    uploading_by_client[who] = left
                else:
                    del uploading_by_client[who]
            if upload.path is None:
                raise ClientError(422, "no file: send the song in the multipart field 'file'")
            fields = {k: v for k, v in upload.fields.items() if k in ("model", "top_k", "timeline", "spectrogram")}
            if fields:
                options = _options({"model": model, "top_k": top_k, "timeline": timeline,
                                       "spectrogram": spectrogram, **fields}, entries)
            entry, k, with_timeline, with_spectrogram = options
            # Only a song received whole takes a place in the queue (an upload that stalls is
            # dropped by its timeout without ever holding one).
            if state["pending"] >= pending_limit:
                raise ClientError(503, "the server is busy; try again shortly", headers={"Retry-After": "5"})
            state["pending"] += 1
            queued = True
            name = display_name(upload.filename)
            work = partial(_classify_file, entry, upload.path, name, k, with_timeline, with_spectrogram,
                           max_duration)
            try:
                body = await anyio.to_thread.run_sync(work, limiter=limiter)
            except ClientError:
                raise
            except Exception:
                log.exception("classifying %s failed", name)
                raise ClientError(500, f"{name}: classification failed on the server") from None
            return Response(body, media_type="application/json")
        finally:
            upload.remove()
            if queued:
                state["pending"] -= 1

    @app.get("/api/samples", summary="Example recordings to try")
    async def list_samples() -> dict[str, Any]:
        """Short excerpts of real recordings (CC BY 3.0 or public domain, credited) that travel with
        genrify; the page offers them as one-click samples, classified like any upload."""
        return {"samples": [s.to_dict() for s in available_samples()]}

    @app.get("/api/samples/{name}", summary="One example recording", response_class=FileResponse,
             responses={404: _error_doc("no sample named 'x.ogg'")})
    async def sample(name: str) -> FileResponse:
        """The recording's file (Ogg Vorbis), read-only. Only names that ``GET /api/samples`` lists."""
        found = find_sample(name)  # compared with a fixed list: the name never reaches the file system
        if found is None:
            raise ClientError(404, f"no sample named {name[:100]!r}")
        return FileResponse(found.path, media_type="audio/ogg", filename=found.file,
                            content_disposition_type="inline", headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Added first, so inside SecurityHeaders: its refusals get the security headers too.
    app.add_middleware(HostAndOriginCheck, allowed_hosts=allowed_hosts)
    app.add_middleware(SecurityHeaders)
    return app


def _options(values: Mapping[str, str | None], entries: Mapping[str, ModelEntry]) -> tuple[ModelEntry, int | None, bool, bool]:
    name = values.get("model")
    if name is None or name == "":
        entry = next(iter(entries.values()))
    elif name in entries:
        entry = entries[name]
    else:
        # The name its card gives it works too, where one model has it: "genrify-musicnn" (what
        # `genrify info` and `classify` call the built-in model) for "built-in (musicnn)".
        named = [e for e in entries.values() if (e.metadata.get("card") or {}).get("name") == name]
        known = ", ".join(repr(n) for n in entries)
        if len(named) > 1:
            raise ClientError(422, f"{len(named)} models are called {name[:100]!r} by their cards; name one of {known}")
        if not named:
            raise ClientError(422, f"unknown model {name[:100]!r}; this server has {known}")
        entry = named[0]
    return (
        entry,
        _parse_top_k(values.get("top_k")),
        _parse_bool("timeline", values.get("timeline"), False),
        _parse_bool("spectrogram", values.get("spectrogram"), False),
    )
