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

from genrify.audio import decode as audio
from genrify.audio.features import FeatureParams
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
    from genrify.classify.modelref import ModelRef
    from genrify.classify.predict import Failure, classify
    from genrify.classify.service import classify_library
    from genrify.core.runner import LocalRunner
    from genrify.models.builtin import load_builtin
    from genrify.store.extract import extract

    builtin = load_builtin(["jazz", "metal"])
    with pytest.raises(AudioError, match="far outside"):
        classify(huge, builtin)
    (result,) = classify_library([str(huge)], ModelRef.builtin(["jazz", "metal"]), runner=LocalRunner(1)).results
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


# --- decompression bombs: what a file claims never decides what it costs ---------------------------


def _silent_flac(path: Path, seconds: float, sr: int = 8000) -> Path:
    """Digital silence as flac, written 10 minutes at a time: ten hours take under 1 MB."""
    block = np.zeros(sr * 600, dtype=np.int16)
    left = int(seconds * sr)
    with sf.SoundFile(path, "w", sr, 1, "PCM_16") as f:
        while left > 0:
            f.write(block[: min(left, block.size)])
            left -= block.size
    return path


def _without_length(path: Path) -> Path:
    """Zero a flac's STREAMINFO sample count: "length unknown", as a live encoder writes it."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    # Bytes 18-25 end with the 36-bit total sample count (after rate, channels, bits per sample).
    head = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
    data[18:26] = head.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def ten_hours(tmp_path_factory) -> Path:
    return _silent_flac(tmp_path_factory.mktemp("bombs") / "ten hours.flac", 10 * 3600)


def test_a_file_declaring_more_than_the_limit_is_refused_before_a_sample_is_decoded(ten_hours):
    assert ten_hours.stat().st_size < 1_000_000
    blocks = audio.stream(ten_hours)
    with pytest.raises(AudioError) as caught:
        next(blocks)  # before the first block: nothing of the ten hours is decoded
    assert str(caught.value) == f"{ten_hours}: declares 10 h of audio, over the 6 h limit (--max-duration)"
    assert "\n" not in str(caught.value)
    # Raised, the limit lets it through, still block by block.
    first = next(audio.stream(ten_hours, max_duration=11 * 3600))
    assert 0 < first.size <= 20 * 22050 and not first.any()  # one block (less the resampler's delay)


def test_segments_of_a_long_file_are_read_by_seeking_once_the_limit_allows_it(ten_hours):
    from genrify.audio.segments import picture_features, song_segments

    params = FeatureParams()
    with pytest.raises(AudioError, match="declares 10 h of audio, over the 6 h limit"):
        song_segments(ten_hours, params, 128)
    song = song_segments(ten_hours, params, 128, max_duration=11 * 3600)
    assert song.segments.shape == (8, params.n_mels, 128) and song.duration == 36000
    # The page's picture of a song over an hour is not drawn (its header says so: nothing decoded).
    assert picture_features(ten_hours, params, max_duration=11 * 3600) is None


@pytest.mark.parametrize("rate", [1, 1_000_000])
def test_a_sample_rate_no_music_has_is_refused(tmp_path, rate):
    # 1 Hz: each stored sample would become 22050 decoded ones (this 2 MB file, 88 GB).
    path = tmp_path / f"rate{rate}.wav"
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        f.write(np.zeros(1_000_000, dtype=np.int16))
    with pytest.raises(AudioError) as caught:
        next(audio.stream(path))
    assert str(caught.value) == f"{path}: sample rate {rate} Hz: not music audio (genrify decodes 2000 Hz to 768000 Hz)"


def test_a_file_that_declares_no_length_is_read_whole_and_stopped_at_the_limit(tmp_path):
    path = _without_length(_silent_flac(tmp_path / "live.flac", 600))
    assert audio.info(path).frames == 0  # not libsndfile's 2**63 - 1
    # Read to its end (libsndfile alone lost its last block and called it truncated) ...
    assert sum(block.size for block in audio.stream(path)) == 600 * 22050
    # ... but no further than the limit, whatever it holds.
    with pytest.raises(AudioError, match=r"live.flac: more than 60 s of audio, over the limit \(--max-duration\)"):
        for _ in audio.stream(path, max_duration=60):
            pass


def test_the_picture_of_a_song_is_drawn_up_to_its_limit(tmp_path):
    from genrify.audio.segments import picture_features, song_features

    path = _without_length(_silent_flac(tmp_path / "live.flac", 90))
    params = FeatureParams()
    features, seconds = picture_features(path, params)
    expected, _ = song_features(path, params)
    assert seconds == 90 and np.array_equal(features, expected)
    assert picture_features(path, params, limit=60) is None  # stopped while decoding: no length declared


def test_durations_are_parsed_and_checked():
    assert [audio.parse_duration(t) for t in ("6h", "90m", "2 min", "45s", "3600", "1.5h")] == [
        21600, 5400, 120, 45, 3600, 5400]
    for text in ("0", "-1h", "six hours", "inf", "1e999", ""):
        with pytest.raises(ParameterError, match="not a duration"):
            audio.parse_duration(text)
    for bad in (0, -5, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="max_duration"):
            audio.check_max_duration(bad)
    audio.check_max_duration(None)
