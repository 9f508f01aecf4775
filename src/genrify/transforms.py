"""Feature transforms as :class:`torch.nn.Module` objects (batched, differentiable, GPU-ready)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from genrify.features import FeatureParams, mel_filter_bank


class LogMelSpectrogram(torch.nn.Module):
    """Waveform ``(..., samples)`` to log-mel ``(..., n_mels, frames)`` in dB.

    Parameters
    ----------
    params
        The feature parameters.
    center
        Centre frames on ``t * hop_length`` with zero padding (librosa's default). Block-wise
        callers pad themselves and pass ``center=False``.
    """

    def __init__(self, params: FeatureParams | None = None, *, center: bool = True) -> None:
        super().__init__()
        self.params = params or FeatureParams()
        self.center = center
        self.register_buffer("window", torch.hann_window(self.params.n_fft, periodic=True), persistent=False)
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
        )
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
        """Power to decibels against the fixed reference, then (``clip``) the ``top_db`` floor."""
        p = self.params
        db = 10.0 * torch.log10(torch.clamp(mel, min=p.amin)) - 10.0 * float(np.log10(max(p.amin, p.ref)))
        if clip and p.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - p.top_db)
        return db

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.power_mel(waveform))
