"""The web page for trying models on songs, and its REST API (``genrify serve``).

>>> from genrify.web import serve
>>> serve(["genres.safetensors"], port=8000)        # doctest: +SKIP
genrify: serving 1 model on http://127.0.0.1:8000 (Ctrl-C to stop)

See :mod:`genrify.web.app` for :func:`create_app` and :class:`ModelEntry`, and
:mod:`genrify.web.server` for :func:`serve` and :func:`make_server`.
"""

from __future__ import annotations

from genrify.web.app import ModelEntry, create_app, describe
from genrify.web.server import make_server, serve

__all__ = ["ModelEntry", "create_app", "describe", "make_server", "serve"]
