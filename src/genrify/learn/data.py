"""Chunks of stored log-mel spectrograms, as a torch Dataset, and their batches.

A song is cut into chunks of ``chunk_frames`` frames (128 by default, about 3 s) every
``hop_frames``; chunks are read from the store's arrays when a batch asks for them (one positioned
read per chunk), so memory does not grow with the store. Inputs are normalised per mel band with statistics of the
training split alone (statistics that include test songs would leak them into training); the
network applies them (:class:`genrify.models.GenreNetwork`).

Augmentation for training: random chunk offsets (each epoch sees other cuts of each song),
SpecAugment-style time and frequency masks, and mixup (applied to batches by the training system).
"""

from __future__ import annotations

import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrify.audio.segments import CHUNK_FRAMES, chunk_starts, fill_chunk
from genrify.errors import ParameterError, TrainingError
from genrify.learn.config import Augment
from genrify.models.normalization import Normalization
from genrify.store.store import FeatureStore


class _ChunkReader:
    """Reads runs of frames from the store's time-major arrays with positioned reads.

    A chunk is one contiguous block of its file, read with one ``preadv`` straight into the batch's
    buffer. Unlike memory maps, reads leave no file pages mapped into the process, so its resident
    memory does not grow with the number of tracks a run touches; the operating system's page
    cache still keeps hot data in memory. Open files are kept in a small LRU, and the calls are
    thread-safe (positioned reads share no file offset).
    """

    def __init__(self, files: Sequence[Path], n_mels: int, capacity: int = 128) -> None:
        self.files = list(files)
        self.n_mels = n_mels
        self.row_bytes = 2 * n_mels  # float16
        self.capacity = capacity
        self._open: OrderedDict[int, tuple[int, int, int]] = OrderedDict()  # track -> (fd, offset, rows)
        self._lock = threading.Lock()

    def _handle(self, track: int) -> tuple[int, int, int]:
        with self._lock:
            handle = self._open.get(track)
            if handle is not None:
                self._open.move_to_end(track)
                return handle
            file = self.files[track]
            try:
                with open(file, "rb") as fh:
                    major, _minor = np.lib.format.read_magic(fh)
                    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shape, fortran, dtype = read_header(fh)
                    offset = fh.tell()
                fd = os.open(file, os.O_RDONLY)
            except (OSError, ValueError) as exc:
                raise TrainingError(f"{file}: cannot read stored features: {exc}") from None
            if fortran or dtype != np.dtype("<f2") or len(shape) != 2 or shape[1] != self.n_mels:
                os.close(fd)
                raise TrainingError(f"{file}: not a genrify feature array (shape {shape}, dtype {dtype})")
            handle = (fd, offset, int(shape[0]))
            self._open[track] = handle
            if len(self._open) > self.capacity:
                old_fd, _, _ = self._open.popitem(last=False)[1]
                os.close(old_fd)
            return handle

    def read_into(self, out: np.ndarray, track: int, start: int) -> int:
        """Fill ``out`` (rows x n_mels, float16, contiguous) from frame ``start``; returns rows read."""
        fd, offset, rows = self._handle(track)
        count = max(0, min(out.shape[0], rows - start))
        if count:
            view = memoryview(out[:count]).cast("B")
            got = os.preadv(fd, [view], offset + start * self.row_bytes)
            if got != count * self.row_bytes:
                raise TrainingError(f"{self.files[track]}: stored features end early (truncated array)")
        return count

    def close(self) -> None:
        with self._lock:
            for fd, _, _ in self._open.values():
                os.close(fd)
            self._open.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class ChunkDataset(torch.utils.data.Dataset):
    """Chunks of some tracks of a store, with their genre labels.

    Item ``i`` is ``(chunk, label, track_index)``: the chunk as stored, in dB, float16
    ``(n_mels, chunk_frames)``; the genre's index; and the index of the chunk's track in ``paths``.
    The network normalises its input itself (:class:`genrify.models.GenreNetwork`), so that the
    conversion to float32 runs in the model's threads and the same statistics travel in the model
    file.

    Parameters
    ----------
    store
        An open feature store.
    paths
        The tracks (paths of done tracks of the store).
    genres
        The genre vocabulary; a track's label is its genre's index in it.
    normalization
        Per-band statistics (from the training split): masks are filled with the band's mean.
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
        index = {g: i for i, g in enumerate(self.genres)}
        track_ids, starts, labels, frames, files = [], [], [], [], []
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
            files.append(store.array_file(row))  # read time-major, straight from the file
        if not self.paths:
            raise TrainingError("no tracks to make chunks from")
        self.track_labels = np.asarray(labels, dtype=np.int64)
        self.track_ids = np.concatenate(track_ids)
        self.starts = np.concatenate(starts)
        self.frames = np.asarray(frames, dtype=np.int64)
        self._reader = _ChunkReader(files, store.params.n_mels)
        self._fill = np.asarray(normalization.mean, dtype=np.float16)
        if self._fill.size != store.params.n_mels:
            raise TrainingError(f"normalisation has {self._fill.size} bands, the store {store.params.n_mels}")

    def __len__(self) -> int:
        return int(self.starts.size)

    def set_epoch(self, epoch: int) -> None:
        """Draw new random offsets and masks for this epoch (deterministic for seed and epoch)."""
        self.epoch = epoch

    def _shift(self, stored: np.ndarray, rng: np.random.Generator) -> None:
        """Move each time-major chunk up or down the mel axis; the bands uncovered repeat the edge."""
        limit = self.augment.pitch_shift  # type: ignore[union-attr]
        for x, k in zip(stored, rng.integers(-limit, limit + 1, size=len(stored)).tolist(), strict=True):
            if k > 0:
                x[:, k:] = x[:, :-k].copy()
                x[:, :k] = x[:, k : k + 1]
            elif k < 0:
                x[:, :k] = x[:, -k:].copy()
                x[:, k:] = x[:, k - 1 : k]

    def _mask(self, stored: np.ndarray, rng: np.random.Generator) -> None:
        """SpecAugment on time-major chunks: spans of frames and of bands set to the band means."""
        aug = self.augment
        assert aug is not None
        frames, n_mels = stored.shape[1], stored.shape[2]
        for x in stored:
            for _ in range(aug.time_masks):
                w = int(rng.integers(0, aug.time_mask_width + 1))
                t0 = int(rng.integers(0, max(1, frames - w)))
                x[t0 : t0 + w, :] = self._fill
            for _ in range(aug.freq_masks):
                w = int(rng.integers(0, aug.freq_mask_width + 1))
                f0 = int(rng.integers(0, max(1, n_mels - w)))
                x[:, f0 : f0 + w] = self._fill[f0 : f0 + w]

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Chunks, labels and track indices of several items at once.

        Returns ``(x, y, track)``: float16 dB ``(n, n_mels, chunk_frames)`` (a transposed view of
        time-major memory), int64 ``(n,)``, int64 ``(n,)``. Only numpy work and no torch kernel, so
        it runs well in a reader thread beside training. Random draws depend on the seed, the epoch
        and the items, so a run repeats exactly.
        """
        idx = np.asarray(indices, dtype=np.int64)
        tracks = self.track_ids[idx]
        starts = self.starts[idx]
        cf = self.chunk_frames
        rng = None
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(idx[0]) if idx.size else 0, idx.size])
            if self.augment.random_offsets:
                # Jitter each chunk within its hop, staying inside its track.
                jitter = rng.integers(0, self.hop_frames, size=idx.size)
                starts = np.minimum(starts + jitter, np.maximum(self.frames[tracks] - cf, 0))
        # Time-major, as stored: each chunk is one contiguous block of its file.
        stored = np.empty((idx.size, cf, self._fill.size), dtype=np.float16)
        for k, (t, start) in enumerate(zip(tracks.tolist(), starts.tolist(), strict=True)):
            got = self._reader.read_into(stored[k], t, start)
            if got < cf:  # a track shorter than a chunk: repeated to fill it
                stored[k] = fill_chunk(stored[k][:got], cf, axis=0)
        if not np.isfinite(stored).all():
            self._refuse_non_finite(stored, tracks)
        if rng is not None and self.augment.pitch_shift:  # type: ignore[union-attr]
            self._shift(stored, rng)
        if rng is not None and (self.augment.time_masks or self.augment.freq_masks):  # type: ignore[union-attr]
            self._mask(stored, rng)
        x = torch.from_numpy(stored).transpose(1, 2)
        return x, torch.from_numpy(self.track_labels[tracks]), torch.from_numpy(tracks)

    def _refuse_non_finite(self, stored: np.ndarray, tracks: np.ndarray) -> None:
        """Name the first track of a batch whose chunk holds NaN or infinity, as an error.

        An array overwritten in place (same size, valid header) reads as NaN: a network fed with
        it answers NaN, which argmax turns into a confident first genre, and figures computed from
        it look plausible. Each batch is checked as read (one pass over memory just filled), so
        evaluation, validation and test sets never silently use such features.

        Raises
        ------
        TrainingError
            Always.
        """
        bad = int(np.flatnonzero(~np.isfinite(stored).reshape(len(stored), -1).all(axis=1))[0])
        path = self.paths[int(tracks[bad])]
        raise TrainingError(
            f"{path}: its stored features hold NaN or infinite values;"
            f" `genrify extract MUSIC_DIR --store {self.store.root} --verify` redoes it"
        )

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x, y, t = self.batch([i])
        return x[0], int(y[0]), int(t[0])


class Batches:
    """Batches of a dataset, read one batch ahead in a background thread.

    Reading chunks from memory maps is numpy work, so the next batch is read while the model trains
    on this one. The order is drawn from ``seed`` and the epoch: runs repeat exactly.

    Parameters
    ----------
    dataset
        The chunks.
    batch_size
        Chunks per batch (the last batch may be smaller).
    shuffle
        Draw a new order every epoch (:meth:`ChunkDataset.set_epoch`).
    seed
        Seed of the order.
    prefetch
        Batches read ahead (0 reads in the calling thread).
    rank, world_size
        Distributed training (:mod:`genrify.learn.ddp`): this process is ``rank`` of ``world_size`` and
        takes batches ``rank``, ``rank + world_size``, ... of the epoch's order, which every rank
        draws alike from ``seed``. Together the ranks cover every batch of a single-process epoch.
    even
        With ``world_size > 1``: give every rank the same number of batches, the last ranks
        repeating the epoch's first batches where the count does not divide evenly (as torch's
        ``DistributedSampler`` pads), so that no rank waits for a gradient that never comes.
        Training needs it; evaluation (``even=False``) sees each batch exactly once.
    """

    def __init__(
        self,
        dataset: ChunkDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        prefetch: int = 2,
        rank: int = 0,
        world_size: int = 1,
        even: bool = True,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ParameterError(f"rank {rank} of world size {world_size} is impossible")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.prefetch = prefetch
        self.rank = rank
        self.world_size = world_size
        self.even = even

    def _total(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __len__(self) -> int:
        """Batches this rank yields per epoch."""
        total, n = self._total(), self.world_size
        if n == 1:
            return total
        if self.even:
            return (total + n - 1) // n
        return len(range(self.rank, total, n))

    def _order(self) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.dataset.epoch]).permutation(n)

    def slices(self) -> list[np.ndarray]:
        """Item indices of each batch this rank yields this epoch, in order."""
        order = self._order()
        slices = [order[i : i + self.batch_size] for i in range(0, order.size, self.batch_size)]
        n = self.world_size
        if n == 1 or not slices:
            return slices
        if self.even:
            padded = -(-len(slices) // n) * n
            slices = [slices[i % len(slices)] for i in range(padded)]
        return slices[self.rank :: n]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        slices = self.slices()
        if self.prefetch <= 0:
            for idx in slices:
                yield self.dataset.batch(idx)
            return
        ahead: queue.Queue[Any] = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce() -> None:
            try:
                for idx in slices:
                    batch = self.dataset.batch(idx)
                    while not stop.is_set():
                        try:
                            ahead.put(batch, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                ahead.put(None)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
                ahead.put(exc)

        reader = threading.Thread(target=produce, name="genrify-batches", daemon=True)
        reader.start()
        try:
            while True:
                item = ahead.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            reader.join()
