"""The web app's answers: strict JSON everywhere, and the one error a request handler raises.

Every answer, errors included, is strict JSON ``{"detail": "..."}`` (no NaN). A handler refuses a
request by raising :class:`ClientError` with its status; a :class:`~genrify.errors.GenrifyError`
becomes one through :meth:`ClientError.from_error`, whose status follows from the error's kind
(:func:`genrify.errors.http_status`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse

from genrify.errors import http_status


class ClientError(Exception):
    """A request the app refuses: the status code and one line for the client.

    Parameters
    ----------
    status
        The HTTP status.
    detail
        The one line the client gets as ``{"detail": ...}``.
    headers
        Extra response headers (``Retry-After``, ``Connection: close``).
    """

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers

    @classmethod
    def from_error(cls, error: BaseException, detail: str, headers: dict[str, str] | None = None) -> ClientError:
        """The refusal of a request that ``error`` ended, with the status of its kind.

        Parameters
        ----------
        error
            What went wrong; :func:`genrify.errors.http_status` gives the status (422 for bad
            input, 503 for a missing dependency, 507 for storage, 500 for anything unexpected).
        detail
            The line for the client (the caller words it: it must not reveal server paths).
        headers
            Extra response headers.
        """
        return cls(http_status(error), detail, headers)


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
