"""Transfer learning: pretrained musicnn embeddings, computed once per track, and a head trained on them.

``genrify train STORE --arch musicnn-transfer`` reads each track's audio (from the path the store
recorded), computes the tagger's embedding of every 3-second patch, and caches it in the store under
``embeddings/<tagger>/``: one float16 array per track, written atomically and named after the
track's path, size and modification time, so a second run (or a run after an interruption) computes
only what is missing or changed. The head then trains on the cached embeddings in seconds; its
model file is a normal genrify model file (:class:`genrify.models.transfer.MusicnnTransfer`) that
``classify``, ``evaluate`` and ``serve`` use like any other.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genrify.config import TrainConfig
from genrify.data import Normalization
from genrify.errors import ParameterError, TrainingError
from genrify.evaluation import evaluate_probabilities
from genrify.modelfile import GenreModel
from genrify.splits import Split, check_tracks, make_split, split_from_file
from genrify.store import FeatureStore, StoredTrack, save_array
from genrify.training import (
    EpochStats,
    RunResult,
    TrainResult,
    seed_everything,
    summarize,
)

EMBEDDINGS_DIR = "embeddings"
_TAGGERS: dict[str, object] = {}


def embedding_file(store_root: str | Path, tagger: str, track: StoredTrack) -> Path:
    """Where a track's embeddings are cached: changes when the file changes."""
    digest = hashlib.sha1(track.path.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return Path(store_root) / EMBEDDINGS_DIR / tagger / digest[:2] / f"{digest}-{track.size}-{track.mtime_ns}.npy"


def _embed(items: list[tuple[str, str]], tagger_name: str) -> list[tuple[str, str | None]]:
    """Worker: embed a few tracks, writing each array atomically; ``(path, error or None)``."""
    from genrify.errors import GenrifyError
    from genrify.models.musicnn import load_tagger, preprocess_file
    from genrify.models.transfer import EMBEDDING

    torch.set_num_threads(1)
    tagger = _TAGGERS.get(tagger_name)
    if tagger is None:
        tagger = _TAGGERS[tagger_name] = load_tagger(tagger_name)
    out: list[tuple[str, str | None]] = []
    for path, target in items:
        try:
            outputs = tagger.run(preprocess_file(path), features=True)  # type: ignore[attr-defined]
            embedding = np.concatenate([outputs[k] for k in EMBEDDING], axis=1).astype(np.float16)
            save_array(target, embedding)
            out.append((path, None))
        except GenrifyError as exc:
            out.append((path, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one bad file must not end the run
            out.append((path, f"{path}: {type(exc).__name__}: {exc}"))
    return out


def ensure_embeddings(
    store: FeatureStore,
    tracks: Sequence[StoredTrack],
    tagger: str = "MSD_musicnn",
    *,
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
    jobs
        Worker processes (default: one per core; 1 computes here).
    on_progress
        Called with (done, total) as tracks finish.
    """
    files = {t.path: embedding_file(store.root, tagger, t) for t in tracks}
    todo = [(t.path, str(files[t.path])) for t in tracks if not files[t.path].exists()]
    done = len(tracks) - len(todo)
    failures: list[tuple[str, str]] = []
    if on_progress:
        on_progress(done, len(tracks))
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    batches = [todo[i : i + 4] for i in range(0, len(todo), 4)]
    if jobs == 1:
        results = (_embed(b, tagger) for b in batches)
        pool = None
    else:
        from genrify.runner import process_pool  # workers that die with this process, however it ends

        pool = process_pool(jobs)
        results = pool.map(_embed, batches, [tagger] * len(batches))
    try:
        for batch in results:
            for path, error in batch:
                done += 1
                if error is not None:
                    failures.append((path, error))
                if on_progress:
                    on_progress(done, len(tracks))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    ok = {p: f for p, f in files.items() if p not in {q for q, _ in failures}}
    return ok, failures


def _patches(files: dict[str, Path], paths: Sequence[str], genre_index: dict[str, int], genre_of: dict[str, str]):
    xs, ys, ids = [], [], []
    for i, path in enumerate(paths):
        e = np.load(files[path]).astype(np.float32)
        xs.append(e)
        ys.append(np.full(len(e), genre_index[genre_of[path]]))
        ids.append(np.full(len(e), i))
    if not xs:
        return torch.zeros(0, 1506), torch.zeros(0, dtype=torch.long), np.zeros(0, dtype=np.int64)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)).long(), np.concatenate(ids)


def _fit_head(
    head: nn.Module, train: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig, seed: int, on_epoch: Callable[[EpochStats], None] | None,
) -> tuple[list[EpochStats], int, float]:
    from genrify.training import System

    system = System(head, dataclasses.replace(config, seed=seed))
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    x, y = train
    history: list[EpochStats] = []
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(head.state_dict())
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        head.train()
        order = torch.randperm(len(y), generator=generator)
        total = correct = 0.0
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            logits, loss = system.step(x[idx], y[idx])
            total += loss * len(idx)
            correct += float((logits.argmax(1) == y[idx]).sum())
        trained = time.perf_counter() - started
        head.eval()
        with torch.inference_mode():
            logits = head(valid[0])
            valid_loss = float(loss_fn(logits, valid[1]))
            valid_acc = float((logits.argmax(1) == valid[1]).float().mean())
        if not math.isfinite(valid_loss):
            raise TrainingError(f"training diverged (validation loss {valid_loss}); try a lower --lr")
        stats = EpochStats(epoch=epoch, train_loss=total / len(y), train_accuracy=correct / len(y), valid_loss=valid_loss,
                           valid_accuracy=valid_acc, lr=float(system.scheduler.get_last_lr()[0]),
                           seconds=time.perf_counter() - started, train_seconds=trained, data_seconds=0.0,
                           chunks_per_second=len(y) / trained if trained > 0 else 0.0)
        history.append(stats)
        if on_epoch:
            on_epoch(stats)
        if valid_loss < best_loss - 1e-6:
            best_loss, best_epoch, best_state = valid_loss, epoch, copy.deepcopy(head.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    head.load_state_dict(best_state)
    return history, best_epoch, best_loss


def train_transfer(
    store_dir: str | Path,
    config: TrainConfig,
    *,
    runs: int = 1,
    split_file: str | Path | None = None,
    jobs: int | None = None,
    on_run: Callable[[int, Split], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_embed: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``musicnn-transfer`` heads on a store's tracks (embeddings computed once, cached).

    The same splits as any architecture (by song or artist, seeded, or a split file), the
    optimiser of ``config``, early stopping on the validation loss. Options of the architecture
    (``tagger``, ``hidden``) come from ``config.arch_config``.

    Raises
    ------
    StoreError, SplitError, TrainingError, ParameterError
        As :func:`genrify.training.train`; and a track whose audio can no longer be read.
    """
    from genrify.models import GenreNetwork, build
    from genrify.models.musicnn import MUSICNN_PARAMS, PATCH_FRAMES

    if runs < 1:
        raise ParameterError(f"runs must be at least 1, not {runs}")
    tagger = str(config.arch_config.get("tagger", "MSD_musicnn"))
    with FeatureStore.open(store_dir) as store:
        tracks = store.tracks()
        genres = check_tracks(tracks, str(store_dir))
        files, failures = ensure_embeddings(store, tracks, tagger, jobs=jobs, on_progress=on_embed)
        if failures:
            shown = "; ".join(e for _, e in failures[:3])
            raise TrainingError(f"{len(failures)} tracks could not be embedded (is their audio still there?): {shown}")
        fixed = split_from_file(tracks, split_file) if split_file is not None else None
        genre_of = {t.path: t.genre for t in tracks}
    genre_index = {g: i for i, g in enumerate(genres)}
    identity = Normalization(np.zeros(MUSICNN_PARAMS.n_mels, np.float32), np.ones(MUSICNN_PARAMS.n_mels, np.float32))
    results: list[RunResult] = []
    for r in range(runs):
        seed = config.seed + r
        split = fixed or make_split(tracks, valid=config.valid, test=config.test, seed=seed, group_by=config.group_by)  # type: ignore[arg-type]
        if on_run:
            on_run(r, split)
        seed_everything(seed)
        body = build("musicnn-transfer", n_mels=MUSICNN_PARAMS.n_mels, n_genres=len(genres), **config.arch_config)
        x_train, y_train, _ = _patches(files, split.train, genre_index, genre_of)
        x_valid, y_valid, _ = _patches(files, split.valid, genre_index, genre_of)
        x_test, _, test_ids = _patches(files, split.test, genre_index, genre_of)
        body.head.mean.copy_(x_train.mean(0))  # statistics of the training split only
        body.head.std.copy_(x_train.std(0).clamp(min=1e-3))
        history, best_epoch, best_loss = _fit_head(body.head, (x_train, y_train), (x_valid, y_valid), config, seed, on_epoch)
        body.head.eval()
        with torch.inference_mode():
            probs = torch.softmax(body.head(x_test), dim=1).numpy()
        labels = np.array([genre_index[genre_of[p]] for p in split.test])
        evaluation = evaluate_probabilities(probs, test_ids, labels, list(split.test), genres)
        network = GenreNetwork(body, *identity.tensors()).eval()
        results.append(RunResult(seed=seed, split=split, history=history, best_epoch=best_epoch,
                                 best_valid_loss=best_loss, evaluation=evaluation, network=network,
                                 normalization=identity))
    best = min(results, key=lambda run: run.best_valid_loss)
    model = GenreModel(
        network=best.network, genres=list(genres), params=MUSICNN_PARAMS, normalization=identity,
        architecture="musicnn-transfer", architecture_config=dict(config.arch_config), chunk_frames=PATCH_FRAMES,
        info={
            "config": config.to_dict(), "summary": summarize(results), "kept_run": results.index(best),
            "runs": [run.summary() for run in results],
            "test_tracks": [f"{genre_of[p]}/{Path(p).name}" for p in best.split.test],
            "store": str(Path(store_dir).resolve()),
        },
    )
    return TrainResult(runs=results, model=model, config=config)
