"""``timbre-temporal``: a musically motivated CNN after musicnn's design, trained from scratch.

Pons et al. ("End-to-end learning for music audio tagging at scale", ISMIR 2018) showed that with
little training data, filters shaped by what music is beat generic ones: *timbral* filters that
are short in time and tall in frequency (an instrument's spectral envelope, found wherever it
sits in pitch by max-pooling over frequency), and *temporal* filters one band tall and long in
time (rhythm and tempo). A 1D mid-end with residual connections looks at how these evolve, and the
back-end pools over time, mean and max, as the seed's network does. Sizes are scaled to genrify's
128-band, 128-frame chunks.
"""

from __future__ import annotations

import torch
from torch import nn

from genrify.models import register


class _Branch(nn.Module):
    """One front-end filter shape: conv, ReLU, batch norm, max over the frequency axis."""

    def __init__(self, filters: int, bands: int, frames: int, band_stride: int = 1) -> None:
        super().__init__()
        # even lengths pad one more frame at the end, so the output keeps the input's length
        self.pad = nn.ZeroPad2d((0, 0, (frames - 1) // 2, frames // 2))
        self.conv = nn.Conv2d(1, filters, (frames, bands), stride=(1, band_stride))
        self.norm = nn.BatchNorm2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, 1, frames, bands)
        h = self.norm(torch.relu(self.conv(self.pad(x))))
        return h.amax(dim=3)  # (batch, filters, frames)


@register("timbre-temporal")
class TimbreTemporalCNN(nn.Module):
    """Timbral and temporal front-end filters, a residual 1D mid-end, mean and max pooling.

    Parameters
    ----------
    n_mels
        Input bands.
    n_genres
        Output classes.
    timbral
        Filters per timbral shape (two shapes: 40 % and 70 % of the bands tall, 7 frames long).
    timbral_stride
        Step in bands between timbral filter positions; 2 halves their cost, and a spectral
        envelope tens of bands tall hardly changes from one band to the next.
    temporal
        Filters per temporal shape (one band tall; 64, 32 and 16 frames long: 1.5, 0.75, 0.4 s).
    midend
        Channels of the three mid-end layers.
    dense
        Width of the back-end's hidden layer.
    dropout
        Dropout in the back-end.
    """

    def __init__(
        self,
        *,
        n_mels: int,
        n_genres: int,
        timbral: int = 32,
        timbral_stride: int = 2,
        temporal: int = 16,
        midend: int = 64,
        dense: int = 200,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        shapes = [(timbral, max(1, int(0.4 * n_mels)), 7, timbral_stride), (timbral, max(1, int(0.7 * n_mels)), 7, timbral_stride)]
        shapes += [(temporal, 1, frames, 1) for frames in (64, 32, 16)]
        self.frontend = nn.ModuleList(_Branch(*shape) for shape in shapes)
        front = sum(shape[0] for shape in shapes)
        self.mid = nn.ModuleList(
            nn.Sequential(nn.Conv1d(width, midend, 7, padding=3), nn.ReLU(inplace=True), nn.BatchNorm1d(midend))
            for width in (front, midend, midend)
        )
        width = front + 3 * midend
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * width, dense),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(dense),
            nn.Dropout(dropout),
            nn.Linear(dense, n_genres),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Mean and max over time of every front- and mid-end map, ``(batch, 2 * maps)``."""
        image = x.transpose(1, 2).unsqueeze(1)  # (batch, 1, frames, bands)
        front = torch.cat([branch(image) for branch in self.frontend], dim=1)
        h1 = self.mid[0](front)
        h2 = self.mid[1](h1) + h1
        h3 = self.mid[2](h2) + h2
        maps = torch.cat([front, h1, h2, h3], dim=1)
        return torch.cat([maps.amax(dim=-1), maps.mean(dim=-1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
