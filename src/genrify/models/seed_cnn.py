"""``seed-cnn``: the student project's network, in PyTorch.

Mel bands are channels and time is the Conv1D axis: three blocks of convolution, batch norm, ReLU and
max pooling; then global max pooling and global mean pooling over time, concatenated; two dense ReLU
layers with dropout; one output per genre (softmax is applied by the loss and by prediction).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from genrify.models import register

# An even kernel with padding="same" pads one side by one more frame; torch says so on every call.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel", category=UserWarning)


@register("seed-cnn")
class SeedCNN(nn.Module):
    """The seed's Conv1D network.

    Parameters
    ----------
    n_mels
        Input bands (the Conv1D channels).
    n_genres
        Output classes.
    channels
        Filters of the three convolution blocks.
    kernel_size
        Convolution width in frames (8 frames, about 0.2 s: an onset with its attack and decay).
    pools
        Max-pooling factors after each block.
    dense
        Widths of the two dense layers.
    dropout
        Dropout before each dense layer.
    """

    def __init__(
        self,
        *,
        n_mels: int,
        n_genres: int,
        channels: tuple[int, int, int] = (128, 128, 256),
        kernel_size: int = 8,
        pools: tuple[int, int, int] = (4, 2, 2),
        dense: tuple[int, int] = (256, 128),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = n_mels
        for out, pool in zip(channels, pools, strict=True):
            blocks += [
                nn.Conv1d(width, out, kernel_size, padding="same"),
                nn.BatchNorm1d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(pool),
            ]
            width = out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * width, dense[0]),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense[0], dense[1]),
            nn.ReLU(inplace=True),
            nn.Linear(dense[1], n_genres),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the dense layers, ``(batch, 2 * channels[-1])``."""
        h = self.features(x)
        return torch.cat([h.amax(dim=-1), h.mean(dim=-1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
