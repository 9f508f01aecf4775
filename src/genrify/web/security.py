"""Who may talk to the server, and the headers that protect the page.

- :class:`SecurityHeaders`: a strict content security policy and friends for the page and its files.
- :class:`HostAndOriginCheck`: answers only requests whose ``Host`` header names this server (so a web
  page cannot reach a server on localhost through a DNS name it rebinds to 127.0.0.1), and refuses a
  POST sent by another site's page (its ``Origin`` header names another site).
  :func:`allowed_hosts_for` is the policy ``genrify serve`` applies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import urlsplit

from genrify.errors import UsageError
from genrify.web.responses import StrictJSONResponse

#: The names of this machine a ``Host`` header may give when the server listens on loopback only.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: Methods that change nothing: a page of another site may send them (it cannot read the answer).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Pages and files that get the strict content security policy (Swagger UI at /docs loads its own
#: scripts and is left alone).
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


class SecurityHeaders:
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
                    headers.setdefault("Content-Security-Policy", CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_name(value: str) -> str | None:
    """The host a ``Host`` header (or ``--allowed-host`` value) names, lower-cased, without its port
    or a trailing dot: ``"[::1]:8000"`` is ``"::1"``. ``None`` where it names none."""
    value = value.strip().lower()
    if value.startswith("["):  # an IPv6 literal, with or without a port
        end = value.find("]")
        name, rest = (value[1:end], value[end + 1:]) if end > 0 else ("", "")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
    elif value.count(":") > 1:  # a bare IPv6 address (never valid in a Host header, fine as a name)
        name = value
    else:
        name, _, port = value.partition(":")
        if port and not port.isdigit():
            return None
    name = name.rstrip(".")
    if not name or any(c.isspace() or c in "/\\@?#" for c in name):
        return None
    return _normal_address(name)


def _normal_address(name: str) -> str:
    """An IP address in its one normal spelling (``0:0::1`` is ``::1``); any other name as given.

    One address has many spellings in a URL (``[0:0:0:0:0:0:0:1]``, ``[::1]``): compared as
    written, the address the server listens on would not match the ``Host`` a client sends for it.
    """
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def is_loopback(host: str) -> bool:
    """True where the address ``host`` (as given to ``--host``) reaches this machine only."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(bind_host: str, allowed: Iterable[str] = ()) -> frozenset[str] | None:
    """The ``Host`` names a server listening on ``bind_host`` answers to (``None``: any).

    Parameters
    ----------
    bind_host
        The address the server listens on.
    allowed
        Names given with ``--allowed-host`` (a port, if any, is ignored); ``"*"`` allows any.

    Returns
    -------
    frozenset of str or None
        ``allowed`` plus this machine's own names (:data:`LOCAL_HOSTS`) where any is given; else
        the local names alone for a server on loopback (a page cannot reach it through a rebound
        DNS name); else ``None``: a server reachable from the network answers to any name. A
        server on loopback answers to the address it listens on too (``127.0.0.2``, ``[0:0::1]``:
        the address ``genrify serve`` prints), IP addresses compared in their normal spelling.

    Raises
    ------
    UsageError
        A value that names no host (``genrify serve`` exits 2).
    """
    names: set[str] = set()
    for value in allowed:
        if value.strip() == "*":
            return None
        name = host_name(value)
        if name is None:
            raise UsageError(f"--allowed-host must be a host name or address, not {value!r}")
        names.add(name)
    own = set(LOCAL_HOSTS)
    if is_loopback(bind_host):
        # The address it listens on is the one it prints: 127.0.0.2 or 0:0::1 must reach it too.
        bound = host_name(bind_host)
        if bound is not None:
            own.add(bound)
    elif not names:
        return None
    return frozenset(names | own)


class HostAndOriginCheck:
    """ASGI middleware: refuses a request whose ``Host`` is not one of ``allowed_hosts`` (400), and
    a POST whose ``Origin`` is another site (403).

    Parameters
    ----------
    app
        The app it guards.
    allowed_hosts
        The host names a ``Host`` header may give (compared as :func:`host_name` gives them: lower
        case, no port); ``None``: any.

    Notes
    -----
    A POST's ``Origin`` passes when it names the host and port the request was sent to (its
    ``Host``; a ``Host`` without a port is not compared on ports, so a proxy that adds TLS in
    front still passes) or a host in ``allowed_hosts`` other than this machine's own names
    (``localhost`` and loopback addresses; a proxy that rewrites ``Host``). A request without ``Origin`` (curl, scripts) is not a browser's
    cross-site request and passes; ``Origin: null`` (a sandboxed or local file page) does not.
    """

    def __init__(self, app: Any, allowed_hosts: Collection[str] | None = None) -> None:
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else frozenset(host_name(h) or h for h in allowed_hosts)
        # This machine's own names are never a proxy's: a page on another port of loopback is
        # another site, and its POST must name this server's port.
        self._origin_hosts = frozenset() if self.allowed_hosts is None else frozenset(
            h for h in self.allowed_hosts if not is_loopback(h))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import Headers

        headers = Headers(scope=scope)
        host = headers.get("host", "")
        refusal = None
        if self.allowed_hosts is not None and host_name(host) not in self.allowed_hosts:
            shown = host[:100] or "(none)"
            refusal = (400, f"this server does not answer to the host {shown!r} (genrify serve "
                            "--allowed-host NAME lets it)")
        elif scope["method"] not in _SAFE_METHODS and "origin" in headers:
            origin = headers["origin"]
            if not self._same_origin(origin, host):
                refusal = (403, f"requests from another site's page are refused (origin {origin[:100]!r})")
        if refusal is None:
            await self.app(scope, receive, send)
            return
        # The body (if any) is never read: the connection cannot carry another request.
        response = StrictJSONResponse({"detail": refusal[1]}, status_code=refusal[0], headers={"Connection": "close"})
        await response(scope, receive, send)

    def _same_origin(self, origin: str, host: str) -> bool:
        try:
            parts = urlsplit(origin.strip())
            origin_host, origin_port = _normal_address((parts.hostname or "").rstrip(".")), parts.port
        except ValueError:  # a port out of range
            return False
        if parts.scheme not in ("http", "https") or not origin_host:
            return False
        if origin_host in self._origin_hosts:
            return True
        name = host_name(host)
        try:
            host_port = urlsplit(f"//{host.strip()}").port
        except ValueError:
            return False
        if name != origin_host:
            return False
        # An origin always has a port (browsers leave out only the scheme's default); a Host
        # header without one came through a proxy or on a default port, and is not compared.
        return host_port is None or host_port == (origin_port or (443 if parts.scheme == "https" else 80))
