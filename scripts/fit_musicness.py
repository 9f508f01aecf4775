"""Regenerate the music check's packaged file, ``src/genrify/models/pretrained/music_density.safetensors``.

Needs the GTZAN excerpts at ``../shared/data/gtzan-excerpts`` (see ``NOTICE``) and ``espeak-ng`` for
the synthetic speech (``apt-get install espeak-ng``; genrify itself never needs it)::

    .venv/bin/python scripts/fit_musicness.py

The fitting lives with its measurement in ``benchmarks/not_music.py`` (so that what ships is what is
measured): the signal rules' thresholds beyond the 0.5 % most extreme music segments; the segment
classifier (multinomial logistic regression) on the GTZAN excerpts, genrify's synthetic songs and
synthetic sparse music against generated signals and ``espeak-ng`` speech (seeds no measurement
uses), its threshold at the 2nd percentile of the GTZAN segments' out-of-fold probability of music
(five artist-grouped folds); and the (unused) density of ``MSD_musicnn`` embeddings. No recording of
non-music is used to fit.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    target = REPO / "src" / "genrify" / "models" / "pretrained" / "music_density.safetensors"
    sys.argv = [str(REPO / "benchmarks" / "not_music.py"), "--write", str(target), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
