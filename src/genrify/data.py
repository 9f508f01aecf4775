"""Chunks of stored log-mel spectrograms, as a torch Dataset.

A song is cut into chunks of ``chunk_frames`` frames (128 by default, about 3 s) every
``hop_frames``; chunks are read from the store's memory-mapped arrays when a batch asks for them,
so memory does not grow with the store. Inputs are normalised per mel band with statistics of the
training split alone (statistics that include test songs would leak them into training).

Augmentation for training: random chunk offsets (each epoch sees other cuts of each song),
SpecAugment-style time and frequency masks, and mixup (applied to batches by the training system).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from genrify.errors import ParameterError, TrainingError
from genrify.store import FeatureStore

CHUNK_FRAMES = 128


def chunk_starts(frames: int, chunk_frames: int = CHUNK_FRAMES, hop_frames: int | None = None) -> np.ndarray:
    """Start frames of the chunks of a track of ``frames`` frames.

    Chunks lie wholly inside the track, every ``hop_frames`` (default: no overlap); a track shorter
    than one chunk gives one chunk at 0, padded when read.
    """
    hop = hop_frames or chunk_frames
    if hop < 1 or chunk_frames < 1:
        raise ParameterError(f"chunk and hop must be positive, not {chunk_frames} and {hop}")
    if frames <= chunk_frames:
        return np.zeros(1, dtype=np.int64)
    return np.arange(0, frames - chunk_frames + 1, hop, dtype=np.int64)


def pad_chunk(chunk: np.ndarray, chunk_frames: int) -> np.ndarray:
    """Pad a chunk shorter than ``chunk_frames`` on the right with its own floor value."""
    missing = chunk_frames - chunk.shape[-1]
    if missing <= 0:
        return chunk
    floor = float(chunk.min()) if chunk.size else -100.0
    return np.pad(chunk, ((0, 0), (0, missing)), constant_values=floor)


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
            mel = np.asarray(store.load(path), dtype=np.float64)
            if not np.isfinite(mel).all():
                raise TrainingError(f"{path}: its stored features hold NaN or infinite values; re-extract it with --force")
            total += mel.sum(axis=1)
            squares += np.square(mel).sum(axis=1)
            count += mel.shape[1]
        if count == 0:
            raise TrainingError("no frames to compute normalisation statistics from")
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 1e-6))
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def apply(self, chunk: np.ndarray) -> np.ndarray:
        """Normalise a ``(n_mels, frames)`` chunk (or a batch of them)."""
        return (chunk - self.mean[:, None]) / self.std[:, None]


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation.

    Attributes
    ----------
    random_offsets
        Shift each chunk by a random part of the hop, anew every epoch.
    time_masks, freq_masks
        Number of SpecAugment masks per chunk along time and frequency.
    time_mask_width, freq_mask_width
        Largest width of a mask, in frames and bands.
    mixup
        Mixup's Beta(alpha, alpha) parameter; 0 disables it (applied per batch in training).
    """

    random_offsets: bool = True
    time_masks: int = 0
    freq_masks: int = 0
    time_mask_width: int = 16
    freq_mask_width: int = 16
    mixup: float = 0.0


class _MemmapCache:
    """The most recently used memory-mapped arrays: bounded, since each map holds a descriptor."""

    def __init__(self, store: FeatureStore, capacity: int = 256) -> None:
        self.store = store
        self.capacity = capacity
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, path: str) -> np.ndarray:
        arr = self._maps.get(path)
        if arr is None:
            arr = self.store.load(path)
            self._maps[path] = arr
            if len(self._maps) > self.capacity:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(path)
        return arr


class ChunkDataset(torch.utils.data.Dataset):
    """Normalised chunks of some tracks of a store, with their genre labels.

    Item ``i`` is ``(chunk, label, track_index)``: a float32 tensor ``(n_mels, chunk_frames)``, the
    genre's index, and the index of the chunk's track in ``paths``.

    Parameters
    ----------
    store
        An open feature store.
    paths
        The tracks (paths of done tracks of the store).
    genres
        The genre vocabulary; a track's label is its genre's index in it.
    normalization
        Per-band statistics (from the training split).
    chunk_frames, hop_frames
        Chunk length and hop in frames (hop defaults to the chunk length: no overlap).
    augment
        Training augmentation, or ``None`` for evaluation.
    seed
        Seed of the random offsets and masks (with the epoch set by :meth:`set_epoch`).
    """

    def __init__(
        self,
        store: FeatureStore,
        paths: Sequence[str],
        genres: Sequence[str],
        normalization: Normalization,
        *,
        chunk_frames: int = CHUNK_FRAMES,
        hop_frames: int | None = None,
        augment: Augment | None = None,
        seed: int = 0,
    ) -> None:
        self.store = store
        self.paths = list(paths)
        self.genres = list(genres)
        self.normalization = normalization
        self.chunk_frames = chunk_frames
        self.hop_frames = hop_frames or chunk_frames
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._cache = _MemmapCache(store)
        index = {g: i for i, g in enumerate(self.genres)}
        track_ids, starts, labels, frames = [], [], [], []
        for i, path in enumerate(self.paths):
            row = store.get(path)
            if row is None or row.status != "done" or row.frames is None:
                raise TrainingError(f"{path}: not a done track of {store.root}")
            if row.genre not in index:
                raise TrainingError(f"{path}: genre {row.genre!r} is not one of the model's genres")
            s = chunk_starts(row.frames, chunk_frames, self.hop_frames)
            track_ids.append(np.full(s.size, i, dtype=np.int64))
            starts.append(s)
            labels.append(index[row.genre])
            frames.append(row.frames)
        if not self.paths:
            raise TrainingError("no tracks to make chunks from")
        self.track_labels = np.asarray(labels, dtype=np.int64)
        self.track_ids = np.concatenate(track_ids)
        self.starts = np.concatenate(starts)
        self.frames = np.asarray(frames, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.starts.size)

    def set_epoch(self, epoch: int) -> None:
        """Draw new random offsets and masks for this epoch (deterministic for seed and epoch)."""
        self.epoch = epoch

    def chunk(self, i: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """The normalised (and, with ``rng``, augmented) chunk ``i`` as float32."""
        t = int(self.track_ids[i])
        start = int(self.starts[i])
        frames = int(self.frames[t])
        aug = self.augment
        if rng is not None and aug is not None and aug.random_offsets and frames > self.chunk_frames:
            start = min(start + int(rng.integers(0, self.hop_frames)), frames - self.chunk_frames)
        raw = np.asarray(self._cache.get(self.paths[t])[:, start : start + self.chunk_frames], dtype=np.float32)
        x = self.normalization.apply(pad_chunk(raw, self.chunk_frames)).astype(np.float32, copy=False)
        if rng is not None and aug is not None:
            for _ in range(aug.time_masks):
                w = int(rng.integers(0, aug.time_mask_width + 1))
                t0 = int(rng.integers(0, max(1, self.chunk_frames - w)))
                x[:, t0 : t0 + w] = 0.0
            for _ in range(aug.freq_masks):
                w = int(rng.integers(0, aug.freq_mask_width + 1))
                f0 = int(rng.integers(0, max(1, x.shape[0] - w)))
                x[f0 : f0 + w, :] = 0.0
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.augment is not None else None
        x = self.chunk(i, rng)
        t = int(self.track_ids[i])
        return torch.from_numpy(x), int(self.track_labels[t]), t


def make_loader(dataset: ChunkDataset, batch_size: int, *, shuffle: bool, seed: int = 0) -> torch.utils.data.DataLoader:
    """Batches of a dataset; shuffled reproducibly from ``seed`` and the dataset's epoch."""
    generator = torch.Generator().manual_seed(seed)
    # In-process loading: a chunk is a slice of a memory map, cheaper than shipping it from a worker.
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0)
