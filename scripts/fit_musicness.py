"""Regenerate the music check's packaged file, ``src/genrify/pretrained/music_density.safetensors``.

Needs the GTZAN excerpts at ``../shared/data/gtzan-excerpts`` (see ``NOTICE``)::

    .venv/bin/python scripts/fit_musicness.py

The fitting lives with its measurement in ``benchmarks/not_music.py`` (so that what ships is what is
measured): the density of ``MSD_musicnn`` embeddings is fitted on every excerpt, its threshold set at
the 2.5th percentile of the excerpts' out-of-fold scores (five artist-grouped folds), and the signal
rules' thresholds beyond the 0.5 % most extreme music segments. Only music is used to fit.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    target = REPO / "src" / "genrify" / "pretrained" / "music_density.safetensors"
    sys.argv = [str(REPO / "benchmarks" / "not_music.py"), "--write", str(target), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
