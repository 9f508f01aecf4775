"""Feature transforms as :class:`torch.nn.Module` objects (batched, differentiable, GPU-ready).

The same log-mel in numpy, for classification without torch, is :mod:`genrify.audio.melspec`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

# The filter bank and the float16 bound are shared with the numpy front end, which must not import
# torch; re-exported here, where training code has always found them.
from genrify.audio.melspec import FLOAT16_MAX as _FLOAT16_MAX
from genrify.audio.melspec import filter_bank_key, mel_filter_bank

if TYPE_CHECKING:  # parameters flow in: this module never imports features at run time
    from genrify.audio.features import FeatureParams

__all__ = ["LogMelSpectrogram", "filter_bank_key", "mel_filter_bank"]


class LogMelSpectrogram(torch.nn.Module):
    """Waveform ``(..., samples)`` to log-mel ``(..., n_mels, frames)``, in dB or as ``params.scale`` says.

    Parameters
    ----------
    params
        The feature parameters.
    center
        Centre frames on ``t * hop_length`` with zero padding (librosa's default). Block-wise
        callers pad themselves and pass ``center=False``.
    """

    def __init__(self, params: FeatureParams, *, center: bool = True) -> None:
        super().__init__()
        self.params = params
        self.center = center
        # musicnn (numpy 1.x) computed its FFT in float64 and stored it as complex64. Doing the same
        # for its scale puts the float16 rounding of the power on the original's side in all but
        # about 1 bin in 13,000 (1 in 1,600 with a float32 FFT); the window's dtype sets the FFT's.
        fft_dtype = torch.float64 if self.params.scale == "log10p" else torch.float32
        window = torch.hann_window(self.params.n_fft, periodic=True, dtype=fft_dtype)
        self.register_buffer("window", window, persistent=False)
        with warnings.catch_warnings():
            # "Sparse CSR support is in beta": the matrix product used here is long stable.
            warnings.simplefilter("ignore", UserWarning)
            # About 2 of every 128 filter weights are non-zero: a sparse product is 3x faster.
            mel_basis = torch.from_numpy(mel_filter_bank(self.params)).to_sparse_csr()
        self.register_buffer("mel_basis", mel_basis, persistent=False)

    def power_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram (before decibels)."""
        p = self.params
        shape = waveform.shape
        flat = waveform.reshape(-1, shape[-1]).to(self.window.dtype)
        spec = torch.stft(
            flat,
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            window=self.window,
            center=self.center,
            pad_mode="constant",
            return_complex=True,
        ).to(torch.complex64)
        if p.power == 2.0:
            # re^2 + im^2 skips the square root that abs() takes, and comes out contiguous,
            # which the sparse product below needs to be fast.
            power = spec.real.square().addcmul_(spec.imag, spec.imag)
        else:
            power = spec.abs().pow(p.power)
        batch, bins, frames = power.shape
        by_bin = power[0] if batch == 1 else power.transpose(0, 1).reshape(bins, batch * frames)
        mel = (self.mel_basis @ by_bin).reshape(p.n_mels, batch, frames).transpose(0, 1)
        return mel.reshape(*shape[:-1], p.n_mels, frames)

    def to_db(self, mel: torch.Tensor, *, clip: bool = True) -> torch.Tensor:
        """Power to the log scale: decibels against the fixed reference, then (``clip``) the ``top_db`` floor.

        With ``params.scale == "log10p"`` this is musicnn's ``log10(gain * power + 1)`` instead,
        computed the way musicnn computes it (see :class:`~genrify.audio.features.FeatureParams`).
        """
        p = self.params
        if p.scale == "log10p":
            # musicnn casts the power to float16, then (numpy 1.x promotion) computes the rest in
            # float32 on the rounded values; we do the same, clipping first so nothing becomes inf.
            rounded = mel.clamp(max=_FLOAT16_MAX).to(torch.float16).to(mel.dtype)
            return torch.log10(rounded * p.gain + 1.0)
        db = 10.0 * torch.log10(torch.clamp(mel, min=p.amin)) - 10.0 * float(np.log10(max(p.amin, p.ref)))
        if clip and p.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - p.top_db)
        return db

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.power_mel(waveform))
