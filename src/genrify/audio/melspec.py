"""Log-mel spectrograms in numpy: the values of :class:`genrify.audio.transforms.LogMelSpectrogram`,
without torch.

Classification must run where PyTorch is not installed (only training needs it), so the front end
that :func:`genrify.audio.features.log_mel` and :func:`~genrify.audio.features.log_mel_stream` use by
default lives here. It computes exactly what the torch module computes, step for step and in the same
precision: a periodic Hann window, frames centred with zero padding (or not, for callers that pad
themselves), a real FFT (float32, or float64 stored as complex64 for musicnn's ``"log10p"`` scale,
see :class:`~genrify.audio.features.FeatureParams`), power ``re^2 + im^2``, the packaged Slaney mel
filter bank, and the same log compression. The two agree to float32 rounding (``tests/test_melspec.py``).

Frames are computed in blocks of :data:`BLOCK_FRAMES`, each block's frames a strided view of the
signal copied once (with the window applied), so memory beyond the result stays a few MB whatever the
song's length, and the FFT and the mel product work on blocks that fit the CPU's caches. The FFT is
``scipy.fft``'s where scipy is installed (pocketfft in float32, with worker threads), about four
times faster than ``numpy.fft`` on these sizes and faster than torch's on two cores; the core install
has no scipy, and there ``numpy.fft`` (pocketfft too, in float64, one thread) computes the same values
to float32 rounding (:func:`rfft`; ``tests/test_melspec.py`` compares the two).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrify.core.devices import compute_threads
from genrify.errors import ParameterError

if TYPE_CHECKING:  # parameters flow in: this module never imports features at run time
    from genrify.audio.features import FeatureParams

#: Frames per FFT call: 512 frames of 2048 samples are 4 MB of float32, which keeps the block's
#: frames, spectrum and power in cache and the peak memory of an hour-long file at the result's size.
BLOCK_FRAMES = 512
# float16's largest finite value: musicnn's float16 rounding would turn larger powers into inf.
FLOAT16_MAX = float(np.finfo(np.float16).max)


def filter_bank_key(params: FeatureParams) -> str:
    """Name of a parameter set's filter bank in the packaged ``mel_filters.npz``."""
    return f"sr{params.sample_rate}_nfft{params.n_fft}_mels{params.n_mels}_fmin{params.fmin:g}_fmax{params.fmax}"


@lru_cache(maxsize=1)
def _scipy_fft() -> Any:
    """``scipy.fft`` where scipy imports, else ``None`` (asked once per process)."""
    try:
        import scipy.fft  # deferred: the parameters' users (the extraction's parent) compute nothing
    except ImportError:
        return None
    return scipy.fft


def rfft(frames: np.ndarray, *, use_scipy: bool | None = None) -> np.ndarray:
    """The real FFT of each row of ``frames`` (which it may overwrite), in their precision.

    ``scipy.fft`` where it is installed (float32 stays float32, on :func:`compute_threads` threads);
    otherwise ``numpy.fft``, which computes in float64: its result is rounded to complex64 for
    float32 frames, so both give the same values to float32 rounding.

    Parameters
    ----------
    frames
        ``(n, n_fft)`` float32 or float64.
    use_scipy
        ``None``: scipy where it imports; ``False``: numpy (the core install's path, for tests).
    """
    fft = _scipy_fft() if use_scipy is not False else None
    if fft is not None:
        return fft.rfft(frames, axis=1, overwrite_x=True, workers=compute_threads())
    if use_scipy:
        raise ImportError("scipy is not installed")
    spec = np.fft.rfft(frames, axis=1)
    return spec.astype(np.complex64) if frames.dtype == np.float32 else spec


@lru_cache(maxsize=8)
def mel_filter_bank(params: FeatureParams) -> np.ndarray:
    """The Slaney-style mel filter bank, shape ``(n_mels, 1 + n_fft // 2)``, from librosa.

    Banks for common parameters ship with genrify (made by ``scripts/make_mel_filters.py`` and
    tested equal to librosa's), which spares each extraction worker importing librosa.
    """
    key = filter_bank_key(params)
    with np.load(Path(__file__).with_name("mel_filters.npz")) as packaged:
        if key in packaged.files:
            return packaged[key]
    try:
        import librosa.filters  # deferred: librosa pulls in numba and scipy.signal (about 1 s)
    except ImportError:  # librosa is a test reference, not a dependency: only packaged banks come without it
        raise ParameterError(f"no packaged mel filter bank for {key}; computing one needs librosa "
                             "(pip install librosa)") from None

    return librosa.filters.mel(
        sr=params.sample_rate,
        n_fft=params.n_fft,
        n_mels=params.n_mels,
        fmin=params.fmin,
        fmax=params.fmax,
        htk=False,
        norm="slaney",
        dtype=np.float32,
    )


class MelFrontEnd:
    """Waveform to log-mel ``(n_mels, frames)`` in numpy, as :class:`~genrify.audio.transforms.LogMelSpectrogram`.

    Parameters
    ----------
    params
        The feature parameters.
    center
        Centre frames on ``t * hop_length`` with zero padding (librosa's default). Block-wise
        callers (:func:`genrify.audio.features.log_mel_stream`) pad themselves and pass ``False``.
    block_frames
        Frames per FFT call (bounds the working memory; see :data:`BLOCK_FRAMES`).
    """

    def __init__(self, params: FeatureParams, *, center: bool = True, block_frames: int = BLOCK_FRAMES) -> None:
        if block_frames < 1:
            raise ParameterError(f"block_frames must be positive, not {block_frames}")
        self.params = params
        self.center = center
        self.block_frames = block_frames
        # As the torch module: musicnn's numpy 1.x computed its FFT in float64 and stored it as
        # complex64; doing the same keeps its float16 rounding on the original's side.
        self.fft_dtype = np.dtype(np.float64 if params.scale == "log10p" else np.float32)
        n = np.arange(params.n_fft, dtype=np.float64)
        # torch.hann_window(periodic=True): 0.5 - 0.5 cos(2 pi n / N), computed in float64 and then
        # rounded, which is within one ulp of torch's float32 values.
        self.window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / params.n_fft)).astype(self.fft_dtype)
        # Transposed and contiguous: the product is power (frames, bins) @ (bins, n_mels), one BLAS call.
        # It sums in float64 and rounds to float32: a float32 product's last bits depend on how many
        # frames a call holds (BLAS picks other kernels for a block's tail), so streamed, whole and
        # distributed extraction would store different values (and musicnn's float16 rounding would
        # turn that bit into a 4e-4 step); rounded from float64, every block size gives the same
        # float32. It costs nothing measurable: the FFT dominates (benchmarks/bench_melspec.py).
        self.product_dtype = np.dtype(np.float64)
        self.mel_basis_t = np.ascontiguousarray(mel_filter_bank(params).T, dtype=self.product_dtype)

    def n_frames(self, n_samples: int) -> int:
        """Frames for ``n_samples`` samples, by torch.stft's rule (so odd ``n_fft`` agrees too)."""
        n_fft, hop = self.params.n_fft, self.params.hop_length
        padded = n_samples + (2 * (n_fft // 2) if self.center else 0)
        if padded < n_fft:
            raise ParameterError(f"{n_samples} samples are too few for one frame of {n_fft}")
        return 1 + (padded - n_fft) // hop

    def power_mel(self, waveform: np.ndarray) -> np.ndarray:
        """Mel power spectrogram ``(n_mels, frames)``, float32, of a 1-D waveform (before the log)."""
        p = self.params
        y = np.asarray(waveform)
        if y.ndim != 1:
            raise ParameterError(f"expected a 1-D mono waveform, got shape {y.shape}")
        y = y.astype(np.float32, copy=False)
        frames = self.n_frames(y.size)
        if self.center:
            half = p.n_fft // 2
            y = np.concatenate([np.zeros(half, np.float32), y, np.zeros(half, np.float32)])
        # Each frame a row of a strided view: no copy of the signal per frame.
        view = np.lib.stride_tricks.sliding_window_view(y, p.n_fft)[:: p.hop_length][:frames]
        # Frame-major while computing (each FFT row contiguous), transposed once at the end.
        out = np.empty((frames, p.n_mels), dtype=np.float32)
        for start in range(0, frames, self.block_frames):
            stop = min(start + self.block_frames, frames)
            out[start:stop] = self._block(view[start:stop])
        return out.T

    def _block(self, frames: np.ndarray) -> np.ndarray:
        """Mel power ``(n, n_mels)`` of frames ``(n, n_fft)``."""
        # The product makes the one copy of the frames, in the FFT's dtype (float64 for log10p).
        windowed = np.multiply(frames, self.window, dtype=self.fft_dtype)
        spec = rfft(windowed)
        if spec.dtype != np.complex64:
            spec = spec.astype(np.complex64)  # as torch's .to(torch.complex64): power in float32
        if self.params.power == 2.0:
            # re^2 + im^2 skips the square root that abs() takes (as the torch module does).
            power = np.square(spec.real)
            power += np.square(spec.imag)
        else:
            power = np.abs(spec) ** np.float32(self.params.power)
        return (power.astype(self.product_dtype) @ self.mel_basis_t).astype(np.float32)

    def to_log(self, mel: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """Power to the log scale, as :meth:`~genrify.audio.transforms.LogMelSpectrogram.to_db`
        (in place where ``mel`` is float32: the power is not needed afterwards)."""
        p = self.params
        mel = np.asarray(mel, dtype=np.float32)
        if p.scale == "log10p":
            # musicnn casts the power to float16, then (numpy 1.x promotion) computes the rest in
            # float32 on the rounded values; clipping first keeps anything from becoming inf.
            np.minimum(mel, FLOAT16_MAX, out=mel)
            rounded = mel.astype(np.float16).astype(np.float32)
            rounded *= np.float32(p.gain)
            rounded += np.float32(1.0)
            return np.log10(rounded, out=rounded)
        np.maximum(mel, np.float32(p.amin), out=mel)
        db = np.log10(mel, out=mel)
        db *= np.float32(10.0)
        db -= np.float32(10.0 * float(np.log10(max(p.amin, p.ref))))
        if clip and p.top_db is not None and db.size:
            np.maximum(db, db.max() - np.float32(p.top_db), out=db)
        return db

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """Log-mel ``(n_mels, frames)`` float32 of a 1-D waveform."""
        return self.to_log(self.power_mel(waveform))


@lru_cache(maxsize=4)
def front_end(params: FeatureParams, center: bool) -> MelFrontEnd:
    """The numpy front end for ``params``, built once per process (it holds the window and the mel
    filters, which the packaged bank is read for)."""
    return MelFrontEnd(params, center=center)
