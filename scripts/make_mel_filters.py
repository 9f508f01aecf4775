"""Regenerate ``src/genrify/audio/mel_filters.npz``: librosa's mel filter banks for common parameters.

Extraction workers load these instead of importing librosa (about 0.75 s per process, a large part
of a short run). ``tests/test_features.py`` checks that every bank equals librosa's output.

    .venv/bin/python scripts/make_mel_filters.py
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np

from genrify.audio.features import FeatureParams
from genrify.audio.transforms import filter_bank_key

COMMON = [
    FeatureParams(),  # genrify's defaults
    FeatureParams(sample_rate=16000, n_fft=512, hop_length=256, n_mels=96),  # musicnn's front end
]


def main() -> None:
    banks = {}
    for p in COMMON:
        banks[filter_bank_key(p)] = librosa.filters.mel(
            sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax, htk=False, norm="slaney",
            dtype=np.float32,
        )
    out = Path(__file__).resolve().parents[1] / "src" / "genrify" / "audio" / "mel_filters.npz"
    np.savez_compressed(out, **banks)
    print(f"wrote {out}: {', '.join(banks)}")


if __name__ == "__main__":
    main()
