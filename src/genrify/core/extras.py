"""How to add an optional extra to this install, said the way genrify was installed.

The core install has no PyTorch, scipy or scikit-learn; a command that needs one names the extra
that brings it. ``pip install 'genrify[train]'`` is right for an install from a package index, but
from a checkout it would fetch a different genrify from the index. An install from a folder (pip
records it in ``direct_url.json``) is told to install that folder again with the extra, editable
where it was, and with the checkout's ``constraints.txt`` where it has one: that file keeps pip on
the CPU build of PyTorch instead of a multi-GB CUDA one.

>>> install_command("train")                     # doctest: +SKIP
"pip install -c /src/genrify/constraints.txt -e '/src/genrify[train]'"
"""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["install_command", "installed_from"]


@functools.lru_cache(maxsize=1)
def installed_from() -> tuple[Path | None, bool]:
    """The folder genrify was installed from (``None``: an index, or unknown), and whether editable."""
    from importlib import metadata

    try:
        recorded = metadata.distribution("genrify").read_text("direct_url.json")
        found = json.loads(recorded) if recorded else {}
    except (metadata.PackageNotFoundError, ValueError, OSError):
        return None, False
    url = urlparse(str(found.get("url", "")))
    if url.scheme != "file" or "dir_info" not in found:
        return None, False
    folder = Path(unquote(url.path))
    editable = bool((found.get("dir_info") or {}).get("editable"))
    return (folder, editable) if (folder / "pyproject.toml").is_file() else (None, False)


def install_command(extra: str) -> str:
    """The ``pip install`` command that adds ``extra`` (``"train"``, ``"learn"``, ``"dask"``...) here."""
    folder, editable = installed_from()
    if folder is None:
        return f"pip install 'genrify[{extra}]'"
    constraints = folder / "constraints.txt"
    pinned = f"-c {shlex.quote(str(constraints))} " if constraints.is_file() else ""
    return f"pip install {pinned}{'-e ' if editable else ''}{shlex.quote(f'{folder}[{extra}]')}"
