"""The web page for trying models on songs, and its REST API (``genrify serve``).

>>> from genrify.web import serve
>>> serve(["genres.safetensors"], port=8000)        # doctest: +SKIP
genrify: serving 1 model on http://127.0.0.1:8000 (Ctrl-C to stop)

The package, one concern a module:

- :mod:`~genrify.web.catalogue`: :class:`ModelEntry`, the models an app offers, and :func:`describe`.
- :mod:`~genrify.web.upload`: one song's multipart body streamed to a private file, with limits.
- :mod:`~genrify.web.images`: the spectrogram PNG the page shows.
- :mod:`~genrify.web.samples`: the example recordings the page offers as one-click samples.
- :mod:`~genrify.web.responses`: strict JSON answers and :class:`~genrify.web.responses.ClientError`.
- :mod:`~genrify.web.security`: the page's security headers.
- :mod:`~genrify.web.app`: :func:`create_app`, the routes over the others.
- :mod:`~genrify.web.server`: :func:`serve` and :func:`make_server` (uvicorn).
"""

from __future__ import annotations

from genrify.web.app import create_app
from genrify.web.catalogue import ModelEntry, describe
from genrify.web.server import make_server, serve

__all__ = ["ModelEntry", "create_app", "describe", "make_server", "serve"]
