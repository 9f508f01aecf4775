"""Running the web app: uvicorn with deadlines for slow clients, and a clean stop on any signal.

``serve`` loads model files, builds the app (:func:`genrify.web.app.create_app`) and runs it until
Ctrl-C, SIGTERM or SIGHUP; however it stops, the upload directory is removed before it returns.
``make_server`` is the uvicorn server it runs, for callers that bring their own sockets (tests,
benchmarks).

uvicorn gives a connection no deadline for its request headers (its keep-alive timer stops at the
first byte), so a client that connects and sends nothing, or half a header, would hold a connection
(and a place under ``limit_concurrency``) for ever. The protocol here closes a connection that has no
request in progress after the app's ``request_timeout``; the app drops uploads that stall or
trickle on the same clock (:class:`genrify.web.upload.Upload`).
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrify.defaults import MAX_DURATION
from genrify.errors import GenrifyIOError, ParameterError, UsageError
from genrify.web.app import DEFAULT_UPLOADS_PER_CLIENT, create_app
from genrify.web.catalogue import ModelEntry
from genrify.web.security import allowed_hosts_for, is_loopback
from genrify.web.upload import DEFAULT_REQUEST_TIMEOUT

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

#: Seconds an idle keep-alive connection stays open between requests.
DEFAULT_KEEP_ALIVE = 5
#: Connections beyond the app's own upload and queue limits (the page, its files, health checks,
#: idle keep-alive connections); past the total uvicorn answers 503 itself.
_SPARE_CONNECTIONS = 64


def _protocol(header_timeout: float) -> type:
    """uvicorn's HTTP/1.1 protocol (h11) with a deadline for each request's headers."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DeadlineH11Protocol(H11Protocol):
        """Closes a connection that has no request in progress ``header_timeout`` seconds after it
        opened or after its last response: its headers (or the rest of a body the app did not read)
        never came. A request being answered is the app's to time (the upload's read timeout)."""

        _deadline: Any = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

        def _arm_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(header_timeout, self._deadline_passed)

        def _deadline_passed(self) -> None:
            self._deadline = None
            idle = self.cycle is None or self.cycle.response_complete
            if idle and not self.transport.is_closing():
                self.transport.close()

    return DeadlineH11Protocol


def make_server(
    app: FastAPI, *, keep_alive: int = DEFAULT_KEEP_ALIVE, limit_concurrency: int | None = None
) -> uvicorn.Server:
    """The uvicorn server ``serve`` runs for ``app`` (made by :func:`genrify.web.create_app`).

    Parameters
    ----------
    app
        The app; its ``state.request_timeout`` is also the deadline for a request's headers.
    keep_alive
        Seconds an idle connection is kept open between requests.
    limit_concurrency
        Connections and requests at once beyond which uvicorn answers 503 (default: the app's
        upload and queue limits plus room for the page and health checks).

    Returns
    -------
    uvicorn.Server
        Not started: call ``run(sockets=[...])``.
    """
    import uvicorn

    state = app.state
    timeout = float(getattr(state, "request_timeout", DEFAULT_REQUEST_TIMEOUT))
    if limit_concurrency is None:
        limit_concurrency = getattr(state, "max_uploads", 32) + getattr(state, "max_pending", 16) + _SPARE_CONNECTIONS
    # proxy_headers=False: uvicorn would otherwise take a client's address from X-Forwarded-For
    # whenever the connection comes from 127.0.0.1, so any local client could name itself anyone
    # and sidestep the per-client upload limit. The address is always the connection's own.
    config = uvicorn.Config(
        app, http=_protocol(timeout), lifespan="off", log_level="warning", access_log=False, server_header=False,
        limit_concurrency=limit_concurrency, timeout_keep_alive=keep_alive, timeout_graceful_shutdown=5,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    # The upload reader asks it whether a cancellation is the server stopping (said to the client
    # in JSON) or another's, which must go on as a cancellation.
    state.server = server
    return server


@contextmanager
def _stop_on_signals(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM ends the process through ``SystemExit`` (so ``finally`` blocks and atexit run) and
    SIGHUP stops the server gracefully, as SIGINT does.

    While it runs, uvicorn catches SIGINT and SIGTERM itself, shuts down gracefully, then raises the
    signal again to the handler it found: without this one, SIGTERM's default action would end the
    process there, before any clean-up.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are only ever delivered to the main thread
        return

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    def hang_up(_signum: int, _frame: Any) -> None:
        server.should_exit = True

    wanted: dict[int, Callable[[int, Any], None]] = {signal.SIGTERM: terminate}
    if hasattr(signal, "SIGHUP"):
        wanted[signal.SIGHUP] = hang_up
    previous = {sig: signal.signal(sig, handler) for sig, handler in wanted.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    model_paths: Sequence[str | Path],
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = 100,
    workers: int | None = None,
    extra_models: Sequence[ModelEntry] | None = None,
    *,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    allowed_hosts: Sequence[str] = (),
    uploads_per_client: int | None = DEFAULT_UPLOADS_PER_CLIENT,
    max_duration: float | None = MAX_DURATION,
    echo: Any = print,
) -> None:
    """Load model files and serve the page and the API until interrupted (Ctrl-C, SIGTERM, SIGHUP).

    Parameters
    ----------
    model_paths
        ``.safetensors`` model files, named in the page by their stems; the first is the default.
    host, port
        Where to listen (port 0: any free port). The default serves this machine only.
    max_upload_mb
        Largest song accepted, in MB (2**20 bytes).
    workers
        Songs classified at once (default: one per core, at most 4).
    extra_models
        More models (e.g. a built-in pretrained one), offered after the files'.
    request_timeout
        Seconds a client may stay silent while it sends its request headers or its upload before
        it is dropped (see :func:`genrify.web.create_app`).
    allowed_hosts
        Names the ``Host`` header may give besides this machine's own (``"*"``: any). None given:
        only ``localhost``, ``127.0.0.1``, ``[::1]`` and ``host`` itself when ``host`` is a loopback
        address (no page can reach the server through a DNS name rebound to it), any name otherwise
        (:func:`genrify.web.security.allowed_hosts_for`).
    uploads_per_client
        Uploads one client address may be sending at once (``None``: no limit, e.g. behind a proxy).
    max_duration
        Songs holding more audio than this many seconds are refused (``None``: no limit).
    echo
        Where the one line saying where the server listens goes.

    Raises
    ------
    ModelFileError
        A model file cannot be loaded.
    UsageError
        A setting out of range (a :class:`ParameterError`: ``genrify serve`` exits 2).
    ParameterError
        No models.
    GenrifyIOError
        The address cannot be listened on (in use, or not this machine's).
    SystemExit
        On SIGTERM (status 143), after the server has stopped and its upload directory is removed.
    """
    from genrify.core.devices import set_threads

    if not (0 <= int(port) <= 65535):
        raise UsageError(f"port must be 0 to 65535, not {port}")
    if not max_upload_mb > 0:
        raise UsageError(f"the upload limit must be more than 0 MB, not {max_upload_mb}")
    if not request_timeout > 0:
        raise UsageError(f"the request timeout must be more than 0 seconds, not {request_timeout}")
    if uploads_per_client is not None and uploads_per_client < 1:
        raise UsageError(f"uploads per client must be at least 1, not {uploads_per_client}")
    hosts = allowed_hosts_for(host, allowed_hosts)
    from genrify.core.runner import default_jobs

    cores = default_jobs()
    workers = workers if workers is not None else max(1, min(4, cores))
    if workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}")
    entries = [ModelEntry.from_file(p) for p in model_paths]
    taken = {e.name for e in entries}
    for i, entry in enumerate(entries):  # two files with one stem: tell them apart
        if sum(e.name == entry.name for e in entries[:i]):
            n = 2
            while f"{entry.name}-{n}" in taken:
                n += 1
            entries[i] = ModelEntry(f"{entry.name}-{n}", entry.model, entry.metadata, entry.description)
            taken.add(entries[i].name)
    entries += list(extra_models or [])
    if not entries:
        raise ParameterError("no model to serve: name one or more model files (genrify train makes them)")

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP; without
    # it every response waits ~40 ms for a delayed ACK between its headers and its body.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise GenrifyIOError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    app = None
    try:
        # Each worker thread gets its share of the cores; set once for the process, never per request.
        set_threads(max(1, cores // workers))  # numpy, ONNX Runtime, and torch where a model loads it
        app = create_app(entries, max_upload_bytes=int(max_upload_mb * 2**20), workers=workers,
                         request_timeout=request_timeout, uploads_per_client=uploads_per_client,
                         allowed_hosts=hosts, max_duration=max_duration)
        server = make_server(app)
        with _stop_on_signals(server):
            sock.listen(128)
            bound = sock.getsockname()[1]
            shown = f"[{host}]" if family == socket.AF_INET6 else host
            count = f"{len(entries)} model{'s' if len(entries) != 1 else ''}"
            echo(f"genrify: serving {count} on http://{shown}:{bound} (Ctrl-C to stop)")
            if not is_loopback(host):
                echo("genrify: warning: the page has no login; anyone who can reach this address can upload songs")
            server.run(sockets=[sock])
    finally:
        sock.close()
        if app is not None:
            app.state.close()  # now: a signal ending the process next would skip the collector
