from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import real_clips, tone

from genrify.audio import decode as audio
from genrify.audio.features import FeatureParams, log_mel, log_mel_stream
from genrify.audio.transforms import LogMelSpectrogram
from genrify.errors import ParameterError

librosa = pytest.importorskip("librosa")


def librosa_log_mel(y: np.ndarray, p: FeatureParams) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y, sr=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop_length, n_mels=p.n_mels, power=p.power
    )
    return librosa.power_to_db(mel, ref=1.0)


def synthetic_signals() -> dict[str, np.ndarray]:
    from genrify.audio.synth import synthesize_song

    rng = np.random.default_rng(0)
    return {
        "tone": tone(3.0),
        "noise": (0.3 * rng.standard_normal(22050 * 2)).astype(np.float32),
        "chirp": librosa.chirp(fmin=50, fmax=10000, sr=22050, duration=2.0).astype(np.float32),
        "rock-song": synthesize_song("rock", 6.0, seed=3),
        "jazz-song": synthesize_song("jazz", 6.0, seed=4),
        "odd-length": tone(1.2345),
    }


@pytest.mark.parametrize("name", list(synthetic_signals()))
def test_matches_librosa_on_synthetic_audio(name):
    y = synthetic_signals()[name]
    p = FeatureParams()
    ours = log_mel(y, p)
    theirs = librosa_log_mel(y, p)
    assert ours.shape == theirs.shape == (128, p.n_frames(y.size))
    assert np.abs(ours - theirs).max() < 0.01


@pytest.mark.parametrize("clip", real_clips(), ids=lambda p: p.name)
def test_matches_librosa_on_real_audio(clip):
    y = audio.load(clip)
    p = FeatureParams()
    assert np.abs(log_mel(y, p) - librosa_log_mel(y, p)).max() < 0.01


def test_matches_librosa_with_other_parameters():
    p = FeatureParams(sample_rate=16000, n_mels=96, n_fft=1024, hop_length=256, fmin=30.0, fmax=7000.0, top_db=None)
    y = tone(2.0, sr=16000)
    theirs = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=256, n_mels=96, fmin=30.0, fmax=7000.0),
        ref=1.0,
        top_db=None,
    )
    ours = log_mel(y, p)
    # Without the top_db clip the floor is rounding noise; compare what lies within 80 dB of the peak.
    audible = theirs > theirs.max() - 80
    assert np.abs(ours - theirs)[audible].max() < 0.01
    assert ours.min() >= -100.0 - 1e-4


def test_reference_is_fixed_not_per_track_maximum():
    y = tone(2.0)
    loud, quiet = log_mel(y), log_mel(0.1 * y)
    # A tenth of the amplitude is 20 dB less everywhere within the top_db range.
    assert np.median(loud - quiet) == pytest.approx(20.0, abs=0.01)


def test_stream_equals_whole_for_any_block_size():
    y = synthetic_signals()["rock-song"]
    whole = log_mel(y)
    for block in (1000, 4096, 22050, 100_000):
        blocks = [y[i : i + block] for i in range(0, y.size, block)]
        streamed = log_mel_stream(blocks, frames_per_call=37)
        assert streamed.shape == whole.shape
        np.testing.assert_allclose(streamed, whole, atol=1e-3)


def test_stream_of_nothing_gives_one_floor_frame():
    out = log_mel_stream([])
    assert out.shape == (128, 1)


def test_stream_to_float16():
    out = log_mel_stream([tone(1.0)], dtype=np.float16)
    assert out.dtype == np.float16 and np.isfinite(out).all()


def test_module_batches_and_runs_under_torch():
    module = LogMelSpectrogram(FeatureParams())
    batch = torch.from_numpy(np.stack([tone(1.0), tone(1.0, freq=880.0)]))
    out = module(batch)
    assert out.shape == (2, 128, FeatureParams().n_frames(22050))
    np.testing.assert_allclose(out[1].numpy(), log_mel(tone(1.0, freq=880.0)), atol=1e-4)


def test_params_round_trip_and_compare():
    p = FeatureParams(n_mels=64)
    assert FeatureParams.from_dict(p.to_dict()) == p
    assert p.differences(FeatureParams()) == ["n_mels=64 (not 128)"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.n_mels = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [{"n_mels": 0}, {"hop_length": 0}, {"hop_length": 4096}, {"fmax": 20000.0}, {"fmin": 500.0, "fmax": 400.0},
     {"top_db": -1.0}, {"sample_rate": 10}, {"scale": "ln"}, {"gain": 0.0}, {"gain": float("nan")},
     {"scale": "log10p"}],  # log10p with the default top_db of 80 dB
)
def test_bad_parameters(kwargs):
    with pytest.raises(ParameterError):
        FeatureParams(**kwargs)


def test_unknown_saved_parameter():
    with pytest.raises(ParameterError, match="colour"):
        FeatureParams.from_dict({**FeatureParams().to_dict(), "colour": "red"})


def test_log_mel_rejects_stereo():
    with pytest.raises(ParameterError, match="mono"):
        log_mel(np.zeros((100, 2), dtype=np.float32))


def test_packaged_filter_banks_equal_librosa():
    from genrify.audio.transforms import filter_bank_key, mel_filter_bank

    path = Path(__file__).resolve().parents[1] / "src" / "genrify" / "audio" / "mel_filters.npz"
    with np.load(path) as packaged:
        keys = packaged.files
    assert filter_bank_key(FeatureParams()) in keys
    for key in keys:
        sr, n_fft, n_mels, fmin, fmax = re.fullmatch(r"sr(\d+)_nfft(\d+)_mels(\d+)_fmin([\d.]+)_fmax(\S+)", key).groups()
        p = FeatureParams(sample_rate=int(sr), n_fft=int(n_fft), hop_length=int(n_fft) // 4, n_mels=int(n_mels),
                          fmin=float(fmin), fmax=None if fmax == "None" else float(fmax))
        assert filter_bank_key(p) == key
        expected = librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax)
        np.testing.assert_array_equal(mel_filter_bank(p), expected)


MUSICNN_LIKE = FeatureParams(sample_rate=16000, n_mels=96, n_fft=512, hop_length=256, scale="log10p", top_db=None)


def test_log10p_scale_is_musicnns_compression():
    y = synthetic_signals()["jazz-song"]
    y16 = librosa.resample(y, orig_sr=22050, target_sr=16000, res_type="soxr_hq")
    mel = librosa.feature.melspectrogram(y=y16, sr=16000, n_fft=512, hop_length=256, n_mels=96)
    # musicnn: the power rounded to float16, then log10(10000 x + 1) in float32.
    theirs = np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)
    ours = log_mel(y16, MUSICNN_LIKE)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    diff = np.abs(ours - theirs)
    # Float rounding in the STFT moves the float16 rounding by one step (4.2e-4 here) in a few bins.
    assert diff.max() < 4.3e-4 and (diff > 1e-5).mean() < 1e-3
    assert not log_mel(np.zeros(1000, np.float32), MUSICNN_LIKE).any()  # silence is 0, no floor


def test_log10p_stream_equals_whole():
    y = synthetic_signals()["rock-song"][:40000]
    blocks = [y[i : i + 7000] for i in range(0, y.size, 7000)]
    np.testing.assert_allclose(log_mel_stream(blocks, MUSICNN_LIKE, frames_per_call=50), log_mel(y, MUSICNN_LIKE), atol=1e-6)


def test_params_saved_before_the_scale_existed_still_load():
    saved = {k: v for k, v in FeatureParams().to_dict().items() if k not in ("scale", "gain")}
    assert FeatureParams.from_dict(saved) == FeatureParams()
    assert FeatureParams().scale == "db"


@pytest.mark.parametrize(
    ("waveform", "said"),
    [
        (np.full(4000, np.nan, np.float32), "NaN"),
        (np.array([0.0, np.inf, 0.0] * 1000, np.float64), "non-finite"),
        (np.zeros(4000, np.int16), "int16"),
        (np.zeros(4000, np.int32), "int32"),
        (np.zeros(0, np.float32), "empty"),
    ],
)
def test_log_mel_refuses_what_is_not_valid_audio_as_librosa_does(waveform, said):
    # NaN gave all-NaN features, int16 was read as floats 32768 times too loud, and an empty array
    # gave one frame of -100 dB: each a silent wrong answer.
    with pytest.raises(ParameterError, match=said):
        log_mel(waveform)


def test_check_waveform_averages_channels_only_where_the_axis_is_clear():
    from genrify.audio.features import check_waveform

    y = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    both = np.stack([y, -y])
    np.testing.assert_array_equal(check_waveform(both, channels=True), np.zeros(1000, np.float32))
    np.testing.assert_array_equal(check_waveform(both.T, channels=True), np.zeros(1000, np.float32))
    with pytest.raises(ParameterError, match="mono"):  # a 2-D array only where channels are asked for
        check_waveform(both)
    with pytest.raises(ParameterError, match=re.escape("(2, 2)")):
        check_waveform(np.zeros((2, 2), np.float32), channels=True)
    assert check_waveform(y.astype(np.float64)).dtype == np.float32
