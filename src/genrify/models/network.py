"""The network a trained model file holds: an architecture behind its input normalisation.

Apart from :mod:`genrify.models` because it is a torch module, and importing the registry must not
import torch (classification runs without it); ``genrify.models.GenreNetwork`` still names it.
"""

from __future__ import annotations

import torch


class GenreNetwork(torch.nn.Module):
    """An architecture with its input normalisation: log-mel chunks in dB in, logits out.

    Parameters
    ----------
    body
        The architecture (normalised ``(batch, n_mels, frames)`` in, logits out).
    mean, std
        Per-band statistics of the training data, ``(n_mels,)``. They are buffers that are not part
        of ``state_dict``: the model file keeps them apart, as ``norm.mean`` and ``norm.std``.
    """

    def __init__(self, body: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("mean", mean.reshape(1, -1, 1).float(), persistent=False)
        self.register_buffer("std", std.reshape(1, -1, 1).float(), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """float32, normalised per band; accepts float16 and transposed views (as the store gives)."""
        return (x.float() - self.mean) / self.std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The body's pooled embedding of dB chunks."""
        return self.body.embed(self.normalize(x))  # type: ignore[operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))
