"""The numpy log-mel front end (:mod:`genrify.audio.melspec`) against the torch module, and its
promise: computing features never imports torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import real_clips, tone

from genrify.audio.features import FeatureParams, log_mel, log_mel_stream
from genrify.audio.melspec import MelFrontEnd
from genrify.errors import ParameterError

MUSICNN_LIKE = FeatureParams(sample_rate=16000, n_mels=96, n_fft=512, hop_length=256, scale="log10p", top_db=None)
PARAMS = {"db": FeatureParams(), "log10p": MUSICNN_LIKE}


def signals(sr: int) -> dict[str, np.ndarray]:
    from genrify.audio.synth import synthesize_song

    rng = np.random.default_rng(0)
    t = np.arange(2 * sr) / sr
    return {
        "tone": tone(3.0, sr=sr),
        "noise": (0.3 * rng.standard_normal(sr * 2)).astype(np.float32),
        "quiet-noise": (1e-4 * rng.standard_normal(sr)).astype(np.float32),
        "chirp": (0.5 * np.sin(2 * np.pi * (50 + 2000 * t) * t)).astype(np.float32),
        "rock-song": synthesize_song("rock", 8.0, seed=3, sample_rate=sr),
        "jazz-song": synthesize_song("jazz", 8.0, seed=4, sample_rate=sr),
        "odd-length": tone(1.2345, sr=sr),
        "shorter-than-a-frame": tone(0.01, sr=sr),
    }


def assert_close_to_torch(ours: np.ndarray, theirs: np.ndarray, params: FeatureParams) -> None:
    """Equal to float32 rounding: the two FFTs round differently, by a share of each frame's energy,
    which in dB is below 1e-4 within 40 dB of the frame's loudest band and grows in the bands far
    below it (a pure chirp's); on the log10p scale it
    moves musicnn's float16 rounding by one step (about 4.2e-4) in a few bins in 10,000."""
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.float32
    diff = np.abs(ours - theirs)
    if params.scale == "db":
        loud = theirs > theirs.max(axis=0, keepdims=True) - 40
        assert diff[loud].max(initial=0) < 1e-4
        assert diff.max() < 2e-3
    else:
        assert diff.max() < 4.3e-4
        assert (diff > 1e-5).mean() < 1e-3


@pytest.mark.parametrize("scale", list(PARAMS))
@pytest.mark.parametrize("name", list(signals(16000)))
def test_numpy_equals_torch_centred_and_streamed(scale, name):
    pytest.importorskip("torch")
    params = PARAMS[scale]
    y = signals(params.sample_rate)[name]
    ours = log_mel(y, params)
    assert ours.shape == (params.n_mels, params.n_frames(y.size))
    assert_close_to_torch(ours, log_mel(y, params, backend="torch"), params)
    blocks = np.array_split(y, 5)
    streamed = log_mel_stream(blocks, params, frames_per_call=37)
    assert_close_to_torch(streamed, log_mel_stream(blocks, params, frames_per_call=37, backend="torch"), params)
    # Streaming changes nothing but the blocks: the same numpy arithmetic on the same frames.
    np.testing.assert_allclose(streamed, ours, atol=1e-5)


@pytest.mark.parametrize("scale", list(PARAMS))
@pytest.mark.parametrize("clip", real_clips()[:3], ids=lambda p: p.name)
def test_numpy_equals_torch_on_real_audio(scale, clip):
    pytest.importorskip("torch")
    from genrify.audio import decode as audio

    params = PARAMS[scale]
    y = audio.load(clip, sr=params.sample_rate)
    assert_close_to_torch(log_mel(y, params), log_mel(y, params, backend="torch"), params)


def test_numpy_is_as_close_to_exact_as_torch():
    """Against a float64 computation, numpy's float32 errs no more than torch's (within a factor)."""
    pytest.importorskip("torch")
    params = PARAMS["db"]
    y = signals(params.sample_rate)["rock-song"]
    front = MelFrontEnd(params)
    half = params.n_fft // 2
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y.astype(np.float64), half), params.n_fft)[:: params.hop_length]
    spec = np.fft.rfft(frames * front.window.astype(np.float64), axis=1)
    exact = 10 * np.log10(np.maximum((np.abs(spec) ** 2) @ front.mel_basis_t.astype(np.float64), params.amin)).T
    loud = exact > exact.max() - 80
    ours = np.abs(log_mel(y, params) - exact)[loud].max()
    theirs = np.abs(log_mel(y, params, backend="torch") - exact)[loud].max()
    assert ours < 2 * theirs + 1e-5, (ours, theirs)


def test_power_other_than_two_and_other_bank():
    pytest.importorskip("torch")
    params = FeatureParams(sample_rate=16000, n_mels=40, n_fft=1024, hop_length=160, fmin=30.0, fmax=7000.0, power=1.0)
    y = signals(16000)["jazz-song"]
    assert_close_to_torch(log_mel(y, params), log_mel(y, params, backend="torch"), params)


def test_bad_backend_and_block_size():
    with pytest.raises(ParameterError, match="backend"):
        log_mel(tone(0.1), backend="jax")
    with pytest.raises(ParameterError, match="backend"):
        log_mel_stream([tone(0.1)], backend="jax")
    with pytest.raises(ParameterError, match="block_frames"):
        MelFrontEnd(FeatureParams(), block_frames=0)
    with pytest.raises(ParameterError, match="1-D"):
        MelFrontEnd(FeatureParams())(np.zeros((2, 100), np.float32))


@pytest.mark.parametrize("scale", list(PARAMS))
def test_blocks_and_threads_do_not_change_the_values(scale, monkeypatch):
    """Bit for bit: a store must not depend on where (or in how many pieces) it was extracted."""
    from genrify.audio import melspec

    params = PARAMS[scale]
    y = signals(params.sample_rate)["rock-song"]
    whole = MelFrontEnd(params, block_frames=100_000)(y)
    np.testing.assert_array_equal(MelFrontEnd(params, block_frames=7)(y), whole)
    np.testing.assert_array_equal(log_mel_stream(np.array_split(y, 11), params, frames_per_call=37), whole)
    monkeypatch.setattr(melspec, "compute_threads", lambda: 1)
    np.testing.assert_array_equal(MelFrontEnd(params, block_frames=37)(y), whole)


def test_features_and_musicnn_input_never_import_torch():
    """Classification must run without PyTorch installed: computing features never loads it."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from genrify.audio.features import FeatureParams, log_mel, log_mel_stream\n"
        "from genrify.audio.synth import synthesize_song\n"
        "y = synthesize_song('rock', 4.0, seed=1)\n"
        "log_mel(y)\n"
        "log_mel_stream(np.array_split(y, 3))\n"
        "p = FeatureParams(sample_rate=16000, n_mels=96, n_fft=512, hop_length=256, scale='log10p', top_db=None)\n"
        "log_mel(y, p)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("scale", list(PARAMS))
@pytest.mark.parametrize("name", ["noise", "chirp", "rock-song", "odd-length"])
def test_numpy_fft_equals_scipy_fft(scale, name, monkeypatch):
    """The core install has no scipy: its numpy FFT (float64, rounded) gives scipy's float32 values
    to float32 rounding, the same tolerance as against torch."""
    from genrify.audio import melspec

    params = PARAMS[scale]
    y = signals(params.sample_rate)[name]
    with_scipy = MelFrontEnd(params)(y)
    monkeypatch.setattr(melspec, "_scipy_fft", lambda: None)
    with_numpy = MelFrontEnd(params)(y)
    assert_close_to_torch(with_numpy, with_scipy, params)
    frames = np.random.default_rng(0).standard_normal((5, params.n_fft)).astype(np.float32)
    assert melspec.rfft(frames.copy(), use_scipy=False).dtype == np.complex64
    np.testing.assert_allclose(melspec.rfft(frames.copy(), use_scipy=False), melspec.rfft(frames.copy()),
                               rtol=0, atol=1e-4)
