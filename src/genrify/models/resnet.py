"""``short-res``: a short-chunk 2D CNN with residual blocks.

After Won et al., "Evaluation of CNN-based automatic music tagging models" (SMC 2020), whose
short-chunk ResNet was the strongest of the mel-input models they compared; narrowed here so that it
trains at a useful speed on a CPU. 2D convolutions see the spectrogram as an image, so a pattern is
recognised wherever it sits in pitch as well as in time, which the seed's Conv1D (one filter per
band) cannot do.
"""

from __future__ import annotations

import torch
from torch import nn

from genrify.errors import ParameterError
from genrify.models import register


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.skip(x))


@register("short-res")
class ShortChunkResNet(nn.Module):
    """Residual 2D CNN over (bands x frames).

    Parameters
    ----------
    n_mels
        Input bands.
    n_genres
        Output classes.
    widths
        Channels of the residual stages; each stage halves both axes.
    dropout
        Dropout before the classifier.
    freq_pool
        How the last stage's few frequency rows become one vector per frame: ``"max"`` keeps
        whether a pattern is present anywhere in pitch; ``"flatten"`` keeps where (low, middle,
        high), which matters when genres differ by register and timbre as much as by pattern.
    """

    def __init__(
        self,
        *,
        n_mels: int,
        n_genres: int,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        dropout: float = 0.3,
        freq_pool: str = "max",
    ) -> None:
        super().__init__()
        if freq_pool not in ("max", "flatten"):
            raise ParameterError(f"freq_pool must be 'max' or 'flatten', not {freq_pool!r}")
        self.freq_pool = freq_pool
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        width = widths[0]
        for out in widths:
            stages.append(_Residual(width, out, stride=2))
            width = out
        self.stages = nn.Sequential(*stages)
        if freq_pool == "flatten":
            rows = n_mels
            for _ in range(len(widths) + 1):  # the stem and every stage halve the bands
                rows = (rows + 1) // 2
            self.mix = nn.Sequential(nn.Conv1d(width * rows, width, 1, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True))
        self.head = nn.Sequential(
            nn.Linear(2 * width, width),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(width, n_genres),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the classifier, ``(batch, 2 * widths[-1])``."""
        h = self.stages(self.stem(x.unsqueeze(1)))
        if self.freq_pool == "max":
            h = h.amax(dim=2)  # over frequency: where in pitch a pattern sits matters less than that it is there
        else:
            h = self.mix(h.flatten(1, 2))
        return torch.cat([h.amax(dim=-1), h.mean(dim=-1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
