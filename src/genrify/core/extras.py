"""How to add an optional extra to this install, said the way genrify was installed.

The core install has no PyTorch, scipy or scikit-learn; a command that needs one names the extra
that brings it. ``pip install 'genrify[train]'`` is right for an install from a package index, but
after an install from a checkout, a git URL or a downloaded archive it would fetch a different
genrify from the index. pip records where an install came from (``direct_url.json``, PEP 610), so:

- from a folder (a checkout): that folder again with the extra, editable where it was, with the
  checkout's ``constraints.txt`` where it has one (the versions the tests ran with);
- from a git URL or an archive: the same source as a direct reference (``genrify[train] @ URL``);
- otherwise: ``genrify[X]`` from the index.

>>> install_command("train")                     # doctest: +SKIP
"pip install -c /src/genrify/constraints.txt -e '/src/genrify[train]'"
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = ["install_command", "installed_from"]


@functools.lru_cache(maxsize=1)
def installed_from() -> dict[str, Any]:
    """What pip recorded of where genrify came from (``direct_url.json``; ``{}``: an index, or unknown)."""
    from importlib import metadata

    try:
        recorded = metadata.distribution("genrify").read_text("direct_url.json")
        found = json.loads(recorded) if recorded else {}
    except (metadata.PackageNotFoundError, ValueError, OSError):
        return {}
    return found if isinstance(found, dict) and isinstance(found.get("url"), str) else {}


def _quoted(*words: str) -> str:
    """``words`` as one command line for this system's shell."""
    return subprocess.list2cmdline(words) if os.name == "nt" else " ".join(shlex.quote(w) for w in words)


def _pip() -> list[str]:
    """``pip`` inside the active virtual environment genrify runs in (the shell's ``pip`` is then
    that environment's); else this Python's ``-m pip``. ``.venv/bin/genrify`` run without
    activating its environment would otherwise be told a ``pip`` that installs somewhere else."""
    import sys

    active = os.environ.get("VIRTUAL_ENV")
    if sys.prefix != sys.base_prefix and active and os.path.normcase(os.path.abspath(active)) == os.path.normcase(
            os.path.abspath(sys.prefix)):
        return ["pip"]
    return [sys.executable, "-m", "pip"]


def install_command(extra: str) -> str:
    """The ``pip install`` command that adds ``extra`` (``"train"``, ``"learn"``, ``"dask"``...) here."""
    found = installed_from()
    url = urlparse(found.get("url", ""))
    if "dir_info" in found and url.scheme == "file":
        from urllib.request import url2pathname  # here, not at start-up: it costs the CLI about 9 ms

        folder = Path(url2pathname(url.path))
        if (folder / "pyproject.toml").is_file():
            constraints = folder / "constraints.txt"
            pinned = ["-c", str(constraints)] if constraints.is_file() else []
            editable = ["-e"] if (found.get("dir_info") or {}).get("editable") else []
            return _quoted(*_pip(), "install", *pinned, *editable, f"{folder}[{extra}]")
    vcs = found.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") and vcs.get("commit_id"):
        return _quoted(*_pip(), "install", f"genrify[{extra}] @ {vcs['vcs']}+{found['url']}@{vcs['commit_id']}")
    if "archive_info" in found and url.scheme in ("file", "http", "https"):
        return _quoted(*_pip(), "install", f"genrify[{extra}] @ {found['url']}")
    return _quoted(*_pip(), "install", f"genrify[{extra}]")
