"""Transfer learning's data: pretrained musicnn embeddings, computed once per track and cached.

``genrify train STORE --arch musicnn-transfer`` reads each track's audio (from the path the store
recorded), computes the tagger's embedding of every 3-second patch, and caches it in the store under
``embeddings/<tagger>/``: one float16 array per track, written atomically and named after the
track's path, size and modification time, so a second run (or a run after an interruption) computes
only what is missing or changed. :class:`EmbeddingSet` serves them like a chunk dataset, so the
head trains through the one :class:`~genrify.learn.training.System` in seconds (the embeddings trainer of
:mod:`genrify.learn.training`); its model file is a normal genrify model file
(:class:`genrify.models.transfer.MusicnnTransfer`) that ``classify``, ``evaluate`` and ``serve``
use like any other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from genrify.core.runner import LocalRunner, Processor, Runner
from genrify.errors import ParameterError
from genrify.store.store import FeatureStore, StoredTrack, save_array

EMBEDDINGS_DIR = "embeddings"
_TAGGERS: dict[str, object] = {}


def embedding_file(store_root: str | Path, tagger: str, track: StoredTrack) -> Path:
    """Where a track's embeddings are cached: changes when the file changes."""
    digest = hashlib.sha1(track.path.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return Path(store_root) / EMBEDDINGS_DIR / tagger / digest[:2] / f"{digest}-{track.size}-{track.mtime_ns}.npy"


def _embed(item: tuple[str, str], tagger_name: str) -> tuple[str, str | None]:
    """Worker: embed one track ``(path, target file)``, writing its array atomically; ``(path, None)``."""
    from genrify.classify.musicnn_tags import preprocess_file
    from genrify.models.musicnn import load_tagger
    from genrify.models.transfer import EMBEDDING

    path, target = item
    tagger = _TAGGERS.get(tagger_name)
    if tagger is None:
        tagger = _TAGGERS[tagger_name] = load_tagger(tagger_name)
    outputs = tagger.run(preprocess_file(path), features=True)  # type: ignore[attr-defined]
    embedding = np.concatenate([outputs[k] for k in EMBEDDING], axis=1).astype(np.float16)
    save_array(target, embedding)
    return (path, None)


def _embed_failed(item: tuple[str, str], reason: str) -> tuple[str, str | None]:
    return (item[0], f"{item[0]}: {reason}")


def _embed_setup(tagger_name: str) -> None:
    torch.set_num_threads(1)  # one process per core: threads inside would only contend


#: Embedding of one track for any runner: ``_EMBEDDER((path, target file), tagger)``.
_EMBEDDER: Processor[tuple[str, str], tuple[str, str | None]] = Processor(_embed, _embed_failed, setup=_embed_setup)


def ensure_embeddings(
    store: FeatureStore,
    tracks: Sequence[StoredTrack],
    tagger: str = "MSD_musicnn",
    *,
    runner: Runner | None = None,
    jobs: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """Compute the embeddings a store's tracks lack; returns their files and the failures.

    Parameters
    ----------
    store
        The feature store (its tracks' audio must still be where extraction found it).
    tracks
        The tracks to embed.
    tagger
        ``MSD_musicnn`` or ``MTT_musicnn``.
    runner
        Where the tracks are embedded (:mod:`genrify.core.runner`). Default: ``LocalRunner(jobs)``.
    jobs
        Without ``runner``: worker processes (default: one per core; 1 computes here).
    on_progress
        Called with (done, total) as tracks finish.

    Raises
    ------
    ParameterError
        Both ``runner`` and ``jobs`` given, or ``jobs`` below 1.
    """
    if runner is not None and jobs is not None:
        raise ParameterError("give either a runner or jobs, not both")
    files = {t.path: embedding_file(store.root, tagger, t) for t in tracks}
    todo = [(t.path, str(files[t.path])) for t in tracks if not files[t.path].exists()]
    done = len(tracks) - len(todo)
    failures: list[tuple[str, str]] = []
    if on_progress:
        on_progress(done, len(tracks))
    for path, error in (runner or LocalRunner(jobs)).run(_EMBEDDER, todo, tagger):
        done += 1
        if error is not None:
            failures.append((path, error))
        if on_progress:
            on_progress(done, len(tracks))
    failed = {p for p, _ in failures}
    ok = {p: f for p, f in files.items() if p not in failed}
    return ok, failures


class EmbeddingSet:
    """The cached embeddings of some tracks, in memory, served like a :class:`~genrify.learn.data.ChunkDataset`.

    One item is one patch's embedding; :meth:`batch` gives ``(x, y, track)`` as the chunk datasets
    do, so the same loaders, :class:`~genrify.learn.training.System` and evaluation serve both.

    Parameters
    ----------
    files
        Each track's embedding file (:func:`ensure_embeddings`).
    paths
        The tracks of this set, in order (their index is the ``track`` of their patches).
    genres
        Genre names; a track's label is its genre's index.
    genre_of
        Each track's genre.
    dim
        Width of an embedding (the shape of an empty set).
    """

    def __init__(
        self,
        files: Mapping[str, Path],
        paths: Sequence[str],
        genres: Sequence[str],
        genre_of: Mapping[str, str],
        dim: int,
    ) -> None:
        index = {g: i for i, g in enumerate(genres)}
        self.paths = list(paths)
        self.genres = list(genres)
        self.epoch = 0
        self.track_labels = np.array([index[genre_of[p]] for p in self.paths], dtype=np.int64)
        arrays = [np.load(files[p]).astype(np.float32) for p in self.paths]
        counts = [len(a) for a in arrays]
        self.track_ids = np.repeat(np.arange(len(self.paths), dtype=np.int64), counts)
        self.x = torch.from_numpy(np.concatenate(arrays)) if arrays else torch.zeros(0, dim)
        self.y = torch.from_numpy(self.track_labels[self.track_ids])
        self._tracks = torch.from_numpy(self.track_ids)

    def __len__(self) -> int:
        return len(self.y)

    def set_epoch(self, epoch: int) -> None:
        """Nothing is drawn per epoch (no augmentation); kept for the loaders."""
        self.epoch = epoch

    def batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embeddings ``(n, dim)`` float32, labels and track indices ``(n,)`` int64 of some patches."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64)) if not isinstance(indices, torch.Tensor) else indices
        return self.x[idx], self.y[idx], self._tracks[idx]


class ShuffledBatches:
    """Batches of an in-memory set in a new order every pass, drawn from one seeded torch generator.

    Each pass over the loader draws the next permutation, so a run repeats exactly for a seed (and
    the head's batches are those it always had).

    Parameters
    ----------
    dataset
        Anything with ``len`` and ``batch(indices)`` (an :class:`EmbeddingSet`).
    batch_size
        Items per batch (the last batch may be smaller).
    seed
        Seed of the orders.
    """

    def __init__(self, dataset: EmbeddingSet, batch_size: int, seed: int) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.dataset), generator=self.generator)
        for i in range(0, len(order), self.batch_size):
            yield self.dataset.batch(order[i : i + self.batch_size])
