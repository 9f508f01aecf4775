"""One rule for samples that are no audio: every consumer refuses them the same way.

A float WAV may hold any float32; samples far outside [-1, 1] (or NaN) are damage. Before the rule,
extraction and trained models refused such a file (their features overflowed) while the built-in
model quietly classified it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import tone

from genrify import audio
from genrify.errors import AudioError, ParameterError


def _float_wav(path: Path, samples: np.ndarray, sr: int = 22050) -> Path:
    sf.write(path, samples.astype(np.float32), sr, subtype="FLOAT")
    return path


@pytest.fixture
def huge(tmp_path) -> Path:
    """A finite float WAV whose samples reach 3e29."""
    samples = tone(4.0)
    return _float_wav(tmp_path / "huge.wav", samples / np.abs(samples).max() * np.float32(3e29))


def test_samples_far_outside_full_scale_are_refused(huge):
    with pytest.raises(AudioError, match=r"huge.wav: samples far outside \[-1, 1\] \(peak 3e\+29\): not valid audio"):
        audio.load(huge)
    # at any target rate: the check runs on what the caller gets
    with pytest.raises(AudioError, match="far outside"):
        audio.load(huge, sr=16000)


def test_nan_samples_are_refused(tmp_path):
    samples = tone(2.0)
    samples[5000] = np.nan
    path = _float_wav(tmp_path / "nan.wav", samples)
    with pytest.raises(AudioError, match=r"nan.wav: non-finite samples \(NaN or infinity\)"):
        audio.load(path)


def test_float_audio_a_little_over_full_scale_is_accepted(tmp_path):
    path = _float_wav(tmp_path / "hot.wav", tone(2.0) * 3.0)  # peaks near 1.4: clipping, not damage
    assert np.abs(audio.load(path)).max() > 1.0


def test_the_builtin_model_refuses_what_extraction_refuses(huge, tmp_path):
    from genrify.extract import extract
    from genrify.models.builtin import load_builtin
    from genrify.predict import Failure, classify, classify_paths

    builtin = load_builtin(["jazz", "metal"])
    with pytest.raises(AudioError, match="far outside"):
        classify(huge, builtin)
    (result,) = classify_paths([str(huge)], builtin, jobs=1)
    assert isinstance(result, Failure) and "far outside" in result.error
    # a waveform passed directly follows the same rule
    with pytest.raises(ParameterError, match="far outside"):
        classify(tone(2.0) * np.float32(1e6), builtin, sample_rate=22050)

    music = tmp_path / "music" / "rock"
    music.mkdir(parents=True)
    os.replace(huge, music / "huge.wav")
    sf.write(music / "fine.wav", tone(1.0), 22050)
    summary = extract(tmp_path / "music", tmp_path / "store", jobs=1)
    failed = {os.path.basename(p): reason for p, reason in summary.failed}
    assert set(failed) == {"huge.wav"} and "far outside" in failed["huge.wav"]
