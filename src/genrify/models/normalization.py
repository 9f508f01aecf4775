"""Per-band input normalisation of log-mel features: fitted on a training split, carried in the model.

Shared by training (:mod:`genrify.learn.training`, which fits it on the training split alone) and model
files (:mod:`genrify.models.modelfile`, which store it beside the weights), so that neither borrows from
the other's module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from genrify.errors import TrainingError

if TYPE_CHECKING:
    import torch

    from genrify.store.store import FeatureStore


@dataclass(frozen=True)
class Normalization:
    """Per-band mean and standard deviation of log-mel values (dB)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, store: FeatureStore, paths: Sequence[str]) -> Normalization:
        """Statistics over every frame of the given tracks, streamed one track at a time.

        Raises
        ------
        TrainingError
            A track's features hold NaN or infinite values.
        """
        n_mels = store.params.n_mels
        total = np.zeros(n_mels)
        squares = np.zeros(n_mels)
        count = 0
        for path in paths:
            frames = np.asarray(store.load(path, time_major=True), dtype=np.float64)
            if not np.isfinite(frames).all():
                raise TrainingError(f"{path}: its stored features hold NaN or infinite values; re-extract it with --force")
            total += frames.sum(axis=0)
            squares += np.square(frames).sum(axis=0)
            count += frames.shape[0]
        if count == 0:
            raise TrainingError("no frames to compute normalisation statistics from")
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 1e-6))
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation as float32 tensors ``(n_mels,)``."""
        import torch

        return (
            torch.from_numpy(np.asarray(self.mean, dtype=np.float32).copy()),
            torch.from_numpy(np.asarray(self.std, dtype=np.float32).copy()),
        )
