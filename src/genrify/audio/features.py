"""Log-mel spectrograms: the parameters as one frozen object, and functions over numpy waveforms.

The transform matches ``librosa.feature.melspectrogram`` followed by ``librosa.power_to_db(ref=1.0)``:
a Hann-windowed STFT centred with zero padding, the Slaney mel filter bank (taken from librosa
itself), power 2, and decibels against a fixed reference, so one track's values do not depend on its
own loudest moment. ``scale="log10p"`` swaps the decibels for musicnn's compression, so the
pretrained taggers of :mod:`genrify.models.musicnn` get their input from the same code.

It exists twice, with the same values to float32 rounding: in numpy
(:class:`genrify.audio.melspec.MelFrontEnd`), which :func:`log_mel` and :func:`log_mel_stream` use by
default so that classification runs without PyTorch, and as a small :class:`torch.nn.Module`
(:class:`genrify.audio.transforms.LogMelSpectrogram`), batched and GPU-ready, for code that
computes features in torch (``backend="torch"`` here). genrify itself trains on features from the
store, made in numpy; the torch module is what the numpy front end is tested against.

:func:`log_mel_stream` computes the same frames from a waveform that arrives in blocks, keeping
memory bounded for hour-long files. This module imports torch only when the torch backend is asked
for, so the parameters are cheap to use in processes that compute nothing (the extraction's parent).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from genrify import defaults
from genrify.errors import ParameterError

if TYPE_CHECKING:
    from genrify.audio.transforms import LogMelSpectrogram


#: The log compressions :class:`FeatureParams` knows (its ``scale``).
SCALES = ("db", "log10p")
#: Where :func:`log_mel` and :func:`log_mel_stream` compute: numpy (the default, no torch needed) or
#: torch (:class:`~genrify.audio.transforms.LogMelSpectrogram`; the same values to float32 rounding).
BACKENDS = ("numpy", "torch")


@dataclass(frozen=True)
class FeatureParams:
    """Everything that determines a log-mel spectrogram.

    Saved in every feature store and every model file: features made with other parameters are
    refused, never silently mixed.

    Attributes
    ----------
    sample_rate
        Rate the audio is resampled to before the transform, in Hz.
    n_mels
        Number of mel bands.
    n_fft
        FFT size (and window length) in samples.
    hop_length
        Samples between successive frames.
    fmin, fmax
        Frequency range of the mel filter bank in Hz; ``fmax=None`` means ``sample_rate / 2``.
    power
        Exponent of the magnitude spectrogram (2 for power).
    ref
        Fixed reference power for decibels (0 dB).
    amin
        Floor on power before the logarithm (-100 dB for 1e-10).
    top_db
        Clip each track to ``top_db`` below its own maximum, as ``librosa.power_to_db`` does by
        default; ``None`` keeps only the fixed ``amin`` floor. The clip matters: within 80 dB of the
        peak a float32 STFT agrees with librosa to about 0.001 dB, while bins near the -100 dB floor
        are rounding noise that differs between FFT libraries by a tenth of a dB.
    scale
        The log compression: ``"db"`` (decibels, as above, using ``ref``, ``amin`` and ``top_db``) or
        ``"log10p"``, musicnn's ``log10(gain * power + 1)``, which needs no floor because it is 0 for
        silence. ``"log10p"`` first rounds the power to float16 and back, as musicnn's own
        preprocessing does (its models were trained on such values); powers above float16's largest
        value (65504) are clipped to it rather than becoming infinite. To land that rounding where
        musicnn's does, it also computes the STFT in float64 (stored as complex64), as musicnn's
        numpy 1.x did. It ignores ``ref`` and ``amin`` and needs ``top_db=None``.
    gain
        The multiplier of the ``"log10p"`` scale (musicnn's 10000); unused by ``"db"``.
    """

    sample_rate: int = defaults.SAMPLE_RATE
    n_mels: int = defaults.N_MELS
    n_fft: int = defaults.N_FFT
    hop_length: int = defaults.HOP_LENGTH
    fmin: float = 0.0
    fmax: float | None = None
    power: float = 2.0
    ref: float = 1.0
    amin: float = 1e-10
    top_db: float | None = 80.0
    scale: str = "db"
    gain: float = 10000.0

    def __post_init__(self) -> None:
        import math
        import numbers

        # Parameters also come from files (stores, model files): a wrong type or an absurd size is
        # refused here, before it sizes an allocation or fails deep inside a transform.
        for name, most in (("sample_rate", 768_000), ("n_mels", 1024), ("n_fft", 65_536), ("hop_length", 65_536)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value > most:
                raise ParameterError(f"{name} must be an integer up to {most}, not {value!r}")
        for name in ("fmin", "fmax", "power", "ref", "amin", "top_db", "gain"):
            value = getattr(self, name)
            if value is None and name in ("fmax", "top_db"):
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ParameterError(f"{name} must be a finite number, not {value!r}")
        if self.sample_rate < 1000:
            raise ParameterError(f"sample_rate must be at least 1000 Hz, not {self.sample_rate}")
        if self.n_mels < 1:
            raise ParameterError(f"n_mels must be positive, not {self.n_mels}")
        if self.n_fft < 16:
            raise ParameterError(f"n_fft must be at least 16, not {self.n_fft}")
        if not 0 < self.hop_length <= self.n_fft:
            raise ParameterError(f"hop_length must be in 1..n_fft ({self.n_fft}), not {self.hop_length}")
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= nyquist:
            raise ParameterError(f"need 0 <= fmin < fmax <= {nyquist:g} Hz, not fmin={self.fmin}, fmax={self.fmax}")
        if self.power <= 0:
            raise ParameterError(f"power must be positive, not {self.power}")
        if self.ref <= 0 or self.amin <= 0:
            raise ParameterError("ref and amin must be positive")
        if self.top_db is not None and self.top_db <= 0:
            raise ParameterError(f"top_db must be positive or None, not {self.top_db}")
        if self.scale not in SCALES:
            raise ParameterError(f"scale must be one of {', '.join(SCALES)}, not {self.scale!r}")
        if not (np.isfinite(self.gain) and self.gain > 0):
            raise ParameterError(f"gain must be positive, not {self.gain}")
        if self.scale == "log10p" and self.top_db is not None:
            # The clip is a dB notion; refusing it beats silently ignoring a value the caller set.
            raise ParameterError("top_db applies to the 'db' scale only; pass top_db=None with scale='log10p'")

    @property
    def seconds_per_frame(self) -> float:
        """Time between successive frames in seconds."""
        return self.hop_length / self.sample_rate

    def n_frames(self, n_samples: int) -> int:
        """Number of frames the transform yields for ``n_samples`` samples (centred frames)."""
        return 1 + n_samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every parameter."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The parameters as canonical JSON (sorted keys), for storing and comparing."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureParams:
        """Rebuild parameters saved with :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ParameterError(f"unknown feature parameters: {', '.join(sorted(unknown))}")
        return cls(**dict(data))

    def differences(self, other: FeatureParams) -> list[str]:
        """Human-readable list of the parameters in which ``other`` differs from this one."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}={mine[k]!r} (not {theirs[k]!r})" for k in mine if mine[k] != theirs[k]]


@lru_cache(maxsize=4)
def cached_transform(params: FeatureParams, center: bool) -> LogMelSpectrogram:
    """The log-mel transform for ``params``, built once per process and shared (it holds the mel
    filters and the STFT window, costly to rebuild per song).

    Parameters
    ----------
    params
        Feature parameters.
    center
        Whether frames are centred (padded by ``n_fft // 2`` at both ends), as :func:`log_mel`
        computes them; :func:`log_mel_stream` pads itself and asks for ``False``.

    Returns
    -------
    LogMelSpectrogram
        In eval mode; call it under ``torch.inference_mode()``.
    """
    from genrify.audio.transforms import LogMelSpectrogram

    return LogMelSpectrogram(params, center=center).eval()



def log_mel(waveform: np.ndarray, params: FeatureParams | None = None, *, backend: str = "numpy") -> np.ndarray:
    """Log-mel spectrogram of a whole mono waveform.

    Parameters
    ----------
    waveform
        1-D float waveform at ``params.sample_rate``.
    params
        Feature parameters; the defaults when ``None``.
    backend
        ``"numpy"`` (:class:`genrify.audio.melspec.MelFrontEnd`; never imports torch) or ``"torch"``
        (:class:`genrify.audio.transforms.LogMelSpectrogram`); the values agree to float32 rounding.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(n_mels, params.n_frames(len(waveform)))``.

    Raises
    ------
    ParameterError
        A waveform :func:`check_waveform` refuses (not 1-D, not floating-point, empty, non-finite
        or absurdly loud samples), or an unknown backend.
    """
    params = params or FeatureParams()
    _check_backend(backend)
    waveform = check_waveform(waveform)
    if backend == "numpy":
        from genrify.audio.melspec import front_end

        return front_end(params, True)(waveform)
    import torch

    with torch.inference_mode():
        return cached_transform(params, True)(torch.from_numpy(waveform)).numpy()


#: Most channels a 2-D waveform may have (:func:`check_waveform` with ``channels=True``): its
#: channel axis is the short one, and more than a handful of channels is no song's layout but a
#: mistake (a batch of clips, a spectrogram), too easily averaged into a wrong answer.
MAX_CHANNELS = 8


def check_waveform(waveform: np.ndarray, *, channels: bool = False, name: str = "waveform") -> np.ndarray:
    """A waveform as the transforms take it (1-D float32), or one clear error saying what is wrong.

    The rule librosa's ``valid_audio`` applies, and the one decoded files follow
    (:func:`genrify.audio.decode.sample_problem`): floating-point samples (an integer array is PCM
    whose scale is unknown here: read as floats it would be tens of thousands of times too loud), at
    least one of them, all finite and not absurdly far outside [-1, 1].

    Parameters
    ----------
    waveform
        A 1-D float waveform; with ``channels``, also a 2-D one in either common layout:
        ``(channels, samples)`` as librosa gives it or ``(samples, channels)`` as soundfile does.
    channels
        Accept a 2-D waveform and average its channels. The channel axis is recognised only when
        that is unambiguous: the shorter axis, of at most :data:`MAX_CHANNELS`, with the other
        longer; any other 2-D shape (``(2, 2)``, ``(100, 50)``) is refused rather than guessed.
    name
        What the message calls the array.

    Returns
    -------
    numpy.ndarray
        The mono waveform, float32, 1-D (the input itself where it already was one).

    Raises
    ------
    ParameterError
        A shape, dtype or sample value as above; the message names the shape or dtype.

    Examples
    --------
    >>> check_waveform(np.zeros((4410, 2), np.float32), channels=True).shape
    (4410,)
    >>> check_waveform(np.zeros(10, np.int16))
    Traceback (most recent call last):
    ...
    genrify.errors.ParameterError: waveform must hold floating-point samples, not int16 (scale integer PCM to [-1, 1] first, e.g. samples / 32768)
    """
    from genrify.audio.decode import sample_problem

    waveform = np.asarray(waveform)
    if not np.issubdtype(waveform.dtype, np.floating):
        raise ParameterError(f"{name} must hold floating-point samples, not {waveform.dtype} "
                             "(scale integer PCM to [-1, 1] first, e.g. samples / 32768)")
    shape = waveform.shape
    if channels and waveform.ndim == 2:
        short = int(np.argmin(shape))
        if not (shape[short] <= MAX_CHANNELS and shape[1 - short] > shape[short]):
            raise ParameterError(
                f"{name} of shape {shape}: cannot tell its channel axis; expected (samples,) or "
                f"(channels, samples) or (samples, channels) with at most {MAX_CHANNELS} channels and more samples")
    elif waveform.ndim != 1:
        layouts = "a 1-D mono waveform or a 2-D one with a channel axis" if channels else "a 1-D mono waveform"
        raise ParameterError(f"expected {layouts}, got {name} of shape {shape}")
    if waveform.size == 0:
        raise ParameterError(f"{name} of shape {shape} is empty: no samples")
    # Checked before any cast or average: float64 samples beyond float32's range would become inf,
    # and a NaN in one channel must not hide in a mean.
    problem = sample_problem(waveform)
    if problem is not None:
        raise ParameterError(f"{name} holds {problem}")
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=short, dtype=np.float64)
    return waveform.astype(np.float32, copy=False)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ParameterError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")


def log_mel_stream(
    blocks: Iterable[np.ndarray],
    params: FeatureParams | None = None,
    *,
    frames_per_call: int = 2048,
    dtype: np.dtype | type = np.float32,
    backend: str = "numpy",
) -> np.ndarray:
    """Log-mel spectrogram of a waveform that arrives block by block.

    Gives the same frames as :func:`log_mel` on the concatenated waveform, while holding at most
    one block and ``frames_per_call`` frames of audio at a time, so memory is bounded by the output
    (about 0.6 MB per minute at the defaults, in float16) rather than by the decoded audio.

    Parameters
    ----------
    blocks
        Consecutive 1-D float32 pieces of the waveform at ``params.sample_rate``.
    params
        Feature parameters; the defaults when ``None``.
    frames_per_call
        Frames computed per transform call.
    dtype
        dtype of the result (e.g. ``numpy.float16`` for the store).
    backend
        ``"numpy"`` (the default; never imports torch) or ``"torch"``, as for :func:`log_mel`.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(n_mels, frames)``.
    """
    params = params or FeatureParams()
    _check_backend(backend)
    if frames_per_call < 1:
        raise ParameterError(f"frames_per_call must be positive, not {frames_per_call}")
    n_fft, hop = params.n_fft, params.hop_length
    log_mel_of = _uncentred(params, backend)
    pad = np.zeros(n_fft // 2, dtype=np.float32)
    # Zero padding at both ends reproduces centred frames: frame t covers [t*hop - n_fft/2, ...).
    buffer = pad
    total = 0
    pieces: list[np.ndarray] = []
    peak = -np.inf

    def flush(buf: np.ndarray, final: bool) -> np.ndarray:
        nonlocal peak
        while True:
            available = 0 if buf.size < n_fft else 1 + (buf.size - n_fft) // hop
            if available == 0 or (available < frames_per_call and not final):
                return buf
            take = min(available, frames_per_call)
            span = n_fft + (take - 1) * hop
            # The top_db floor needs the whole track's peak: clip once at the end instead.
            db = log_mel_of(buf[:span])
            peak = max(peak, float(db.max()))
            pieces.append(db.astype(dtype, copy=False))
            buf = buf[take * hop :]

    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        total += block.size
        buffer = flush(np.concatenate([buffer, block]), final=False)
    flush(np.concatenate([buffer, pad]), final=True)
    result = np.concatenate(pieces, axis=-1)
    pieces.clear()  # free the pieces before the caller keeps the result
    expected = params.n_frames(total)
    if result.shape[-1] != expected:  # pragma: no cover - guards the frame arithmetic above
        raise AssertionError(f"streamed {result.shape[-1]} frames, expected {expected}")
    if params.top_db is not None:
        np.maximum(result, peak - params.top_db, out=result, casting="unsafe")
    return result


def _uncentred(params: FeatureParams, backend: str) -> Callable[[np.ndarray], np.ndarray]:
    """Log-mel without the ``top_db`` clip of uncentred frames, on ``backend``: what
    :func:`log_mel_stream` computes per call."""
    if backend == "numpy":
        from genrify.audio.melspec import front_end

        numpy_front = front_end(params, False)
        return lambda y: numpy_front.to_log(numpy_front.power_mel(y), clip=False)
    import torch

    transform = cached_transform(params, False)

    def run(y: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return transform.to_db(transform.power_mel(torch.from_numpy(y)), clip=False).numpy()

    return run
