"""Training: one :class:`System` that owns the model, optimiser, loss and data, and the
split-train-evaluate cycle repeated over several seeds (the seed's ``ExecTimes``).

Every architecture trains through the same :class:`System` and the same loop over runs
(:func:`train`); what differs is the data of a run, which the trainer that the architecture's
registry entry names prepares: :class:`ChunkTrainer` (a whole network on the store's log-mel
chunks) or :class:`EmbeddingTrainer` (a head on cached embeddings of a frozen pretrained model).

The default optimiser is the student project's: SGD with learning rate 0.001, momentum 0.9,
Nesterov, and Keras-style inverse-time decay of the learning rate by 1e-5 per step
(``lr / (1 + decay * step)``). Early stopping watches the validation loss and restores the best
weights. Runs are deterministic on the CPU for a given seed.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same code trains with DistributedDataParallel
(:mod:`genrify.learn.ddp`): every rank draws the same split and batch order, trains on every N-th batch,
and sums its validation figures with those of the other ranks, so all ranks stop at the same epoch
with the same weights; each rank's batch is ``batch_size`` chunks, so a step sees N times as many.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genrify.audio.features import FeatureParams
from genrify.core.devices import autocast, module_device, resolve_device
from genrify.errors import ParameterError, TrainingError
from genrify.learn import ddp
from genrify.learn.config import TrainConfig
from genrify.learn.data import Batches, ChunkDataset
from genrify.learn.ddp import DistInfo
from genrify.learn.embeddings import EmbeddingSet, ShuffledBatches, ensure_embeddings
from genrify.learn.evaluation import Evaluation, evaluate_dataset, evaluate_probabilities
from genrify.learn.splits import Split, check_tracks, make_split, song_keys, split_from_file
from genrify.models import CHUNKS, EMBEDDINGS
from genrify.models.modelfile import GenreModel
from genrify.models.normalization import Normalization
from genrify.store.store import FeatureStore, StoredTrack

#: One batch of a loader: inputs, genre indices, and the index of each item's song.
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
#: A set of songs' items that evaluation reads (``batch``, ``track_ids``, ``track_labels``, ``paths``).
Items = ChunkDataset | EmbeddingSet


@dataclass
class EpochStats:
    """One epoch's figures."""

    epoch: int
    train_loss: float
    train_accuracy: float
    valid_loss: float
    valid_accuracy: float
    lr: float
    seconds: float  #: the whole epoch, validation included
    train_seconds: float  #: the training loop alone
    data_seconds: float  #: time the training loop waited for batches
    chunks_per_second: float  #: training chunks per second of the training loop


@dataclass
class RunResult:
    """One split-train-evaluate cycle."""

    seed: int
    split: Split
    history: list[EpochStats]
    best_epoch: int
    best_valid_loss: float
    evaluation: Evaluation
    network: nn.Module  #: a GenreNetwork: normalisation and architecture
    normalization: Normalization

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures of this run (for the report and the model file)."""
        return {
            "seed": self.seed,
            "split": {"method": self.split.method, **self.split.sizes(), "unmatched": len(self.split.unmatched),
                      "without_artist": self.split.alone},
            "epochs": len(self.history),
            "best_epoch": self.best_epoch,
            "best_valid_loss": self.best_valid_loss,
            **self.evaluation.summary(),
            "history": [asdict(h) for h in self.history],
        }


class System:
    """Model, optimiser, learning-rate schedule and loss, with one training step and one epoch.

    Parameters
    ----------
    network
        The model to train (logits out).
    config
        Optimiser and schedule settings.
    device
        Where to train; the network is moved there.
    dist
        This process's place in a distributed run (:func:`genrify.learn.ddp.init_from_env`), or ``None``.
        Training steps then go through ``DistributedDataParallel``; :attr:`network` stays the bare
        module (its weights are what is saved), and the epoch's figures are summed over the ranks.
    """

    def __init__(
        self, network: nn.Module, config: TrainConfig, device: torch.device | None = None, *, dist: DistInfo | None = None
    ) -> None:
        self.device = device or (dist.device if dist is not None else torch.device("cpu"))
        self.network = network.to(self.device)
        self.dist = dist
        #: what the training steps call: the network itself, or its DistributedDataParallel wrapper
        self.model = ddp.wrap(self.network, dist)
        self.config = config
        params = [p for p in network.parameters() if p.requires_grad]
        if config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0,
                weight_decay=config.weight_decay,
            )
        elif config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay or 1e-2)
        decay = config.decay
        # Keras' "decay": lr_t = lr / (1 + decay * t), t counting optimiser steps.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0 / (1.0 + decay * step))
        self.loss = nn.CrossEntropyLoss()
        self._mixup = torch.distributions.Beta(config.augment.mixup, config.augment.mixup) if config.augment.mixup > 0 else None

    def train_epoch(self, loader: Iterable[Batch]) -> tuple[float, float, float, int]:
        """One pass over the training data: (mean loss, accuracy, seconds waiting for data, chunks).

        Distributed, the loss, accuracy and chunks are over every rank's batches.
        """
        self.model.train()
        total_loss = 0.0
        correct = 0
        seen = 0
        waiting = 0.0
        batches = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                x, y, _track = next(batches)
            except StopIteration:
                break
            waiting += time.perf_counter() - t0
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            logits, loss = self.step(x, y)
            if not math.isfinite(loss):
                raise TrainingError(
                    f"training diverged (loss {loss}) after {seen} chunks; try a lower --lr or check the features"
                )
            total_loss += loss * y.numel()
            correct += int((logits.argmax(dim=1) == y).sum())
            seen += y.numel()
        if self.dist is not None:
            total_loss, correct, seen = ddp.all_sum([total_loss, correct, seen], self.dist)
            correct, seen = round(correct), round(seen)
            # Each rank's batch-norm statistics followed its own batches: take rank 0's everywhere,
            # so that validation, the kept weights and the test figures agree on every rank.
            ddp.broadcast_buffers(self.network, self.dist)
        return total_loss / max(seen, 1), correct / max(seen, 1), waiting, seen

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        """One optimiser step on a batch already on the device: (detached logits, loss)."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device):
            if self._mixup is not None:
                lam = float(self._mixup.sample())
                order = torch.randperm(x.shape[0]).to(self.device)
                x = x.float()
                logits = self.model(lam * x + (1 - lam) * x[order])
                loss = lam * self.loss(logits, y) + (1 - lam) * self.loss(logits, y[order])
            else:
                logits = self.model(x)
                loss = self.loss(logits, y)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return logits.detach(), float(loss.detach())

    @torch.inference_mode()
    def validate(self, loader: Iterable[Batch]) -> tuple[float, float]:
        """Mean loss and accuracy over chunks, in evaluation mode (over every rank's chunks)."""
        self.network.eval()
        total_loss = 0.0
        correct = 0
        seen = 0
        for x, y, _track in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with autocast(self.device):
                logits = self.network(x).float()
            total_loss += float(self.loss(logits, y)) * y.numel()
            correct += int((logits.argmax(dim=1) == y).sum())
            seen += y.numel()
        if self.dist is not None:
            total_loss, correct, seen = ddp.all_sum([total_loss, correct, seen], self.dist)
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def fit(
        self,
        train: Iterable[Batch],
        valid: Iterable[Batch],
        *,
        on_epoch: Callable[[EpochStats], None] | None = None,
    ) -> tuple[list[EpochStats], int, float]:
        """Train with early stopping on the validation loss; the best weights are restored.

        Parameters
        ----------
        train, valid
            Loaders: iterables of ``(x, y, track)`` batches, read once per epoch (a
            :class:`~genrify.learn.data.Batches` over chunks, a :class:`~genrify.learn.embeddings.ShuffledBatches`
            over embeddings, a list). Before each epoch the training loader's ``set_epoch(epoch)``
            is called, or its dataset's where the loader has none, so that shuffles and
            augmentation change every epoch and repeat for a seed. Distributed, each rank's loaders
            give its share of the batches.
        on_epoch
            Called with each epoch's figures.

        Returns
        -------
        (history, best_epoch, best_valid_loss)

        Raises
        ------
        TrainingError
            A loss that is not a finite number (the training diverged).
        """
        cfg = self.config
        history: list[EpochStats] = []
        best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(self.network.state_dict())
        for epoch in range(1, cfg.epochs + 1):
            started = time.perf_counter()
            _start_epoch(train, epoch)
            train_loss, train_acc, waiting, seen = self.train_epoch(train)
            trained = time.perf_counter() - started
            valid_loss, valid_acc = self.validate(valid)
            if not math.isfinite(valid_loss):
                raise TrainingError(f"training diverged (validation loss {valid_loss}) in epoch {epoch}; try a lower --lr")
            stats = EpochStats(
                epoch=epoch, train_loss=train_loss, train_accuracy=train_acc, valid_loss=valid_loss,
                valid_accuracy=valid_acc, lr=float(self.scheduler.get_last_lr()[0]),
                seconds=time.perf_counter() - started, train_seconds=trained, data_seconds=waiting,
                chunks_per_second=seen / trained if trained > 0 else 0.0,
            )
            history.append(stats)
            if on_epoch:
                on_epoch(stats)
            if valid_loss < best_loss - 1e-6:
                best_loss, best_epoch = valid_loss, epoch
                best_state = copy.deepcopy(self.network.state_dict())
            elif epoch - best_epoch >= cfg.patience:
                break
        self.network.load_state_dict(best_state)
        return history, best_epoch, best_loss


def _start_epoch(loader: Iterable[Batch], epoch: int) -> None:
    """Tell a loader, or else the dataset it reads, which epoch starts (new shuffle and augmentation)."""
    for target in (loader, getattr(loader, "dataset", None)):
        set_epoch = getattr(target, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
            return


def seed_everything(seed: int) -> None:
    """Make a CPU run repeatable: torch's and numpy's generators, deterministic kernels."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)


@torch.inference_mode()
def _evaluate(network: nn.Module, dataset: Items, genres: Sequence[str], dist: DistInfo | None) -> Evaluation:
    """:func:`~genrify.learn.evaluation.evaluate_dataset`; distributed, each rank classifies its share."""
    if dist is None:
        return evaluate_dataset(network, dataset, genres)  # type: ignore[arg-type]
    network.eval()
    device = module_device(network)
    loader = Batches(dataset, 256, shuffle=False, rank=dist.rank, world_size=dist.world_size, even=False)  # type: ignore[arg-type]
    mine = []
    for idx, (x, _y, _t) in zip(loader.slices(), loader, strict=True):
        with autocast(device):
            logits = network(x.to(device, non_blocking=True))
        mine.append((idx, torch.softmax(logits.float(), dim=1).cpu().numpy()))
    probs = np.zeros((len(dataset), len(genres)), dtype=np.float32)
    for part in ddp.all_gather(mine, dist):
        for idx, p in part:  # type: ignore[union-attr]
            probs[idx] = p
    return evaluate_probabilities(probs, dataset.track_ids, dataset.track_labels, dataset.paths, genres)


@dataclass
class RunData:
    """What one run trains and evaluates: made by an architecture's trainer for one split.

    Attributes
    ----------
    trained
        The module whose weights the run fits: the whole network, or a head on frozen features.
    train, valid
        Loaders of ``(x, y, track)`` batches for ``trained`` (see :meth:`System.fit`).
    test
        The test songs' items for ``trained`` (a :class:`~genrify.learn.data.ChunkDataset` or a
        :class:`~genrify.learn.embeddings.EmbeddingSet`): evaluated with the best weights.
    network
        The :class:`~genrify.models.GenreNetwork` the run keeps; it holds ``trained``.
    normalization
        The network's input normalisation (saved in the model file).
    """

    trained: nn.Module
    train: Iterable[Batch]
    valid: Iterable[Batch]
    test: Items
    network: nn.Module
    normalization: Normalization


def fit_run(
    data: RunData,
    genres: Sequence[str],
    split: Split,
    config: TrainConfig,
    *,
    seed: int,
    on_epoch: Callable[[EpochStats], None] | None = None,
    device: torch.device | None = None,
    dist: DistInfo | None = None,
) -> RunResult:
    """Train one run's module through :class:`System` and evaluate it on the test songs.

    The network returned is on the CPU, in evaluation mode. With ``dist`` (a distributed run),
    every rank calls this alike and gets the same result.
    """
    if dist is not None and dist.rank:
        # Rank 0's weights reach every rank through DDP; dropout and mixup draw anew on each rank.
        torch.manual_seed(seed + 1_000_003 * dist.rank)
    system = System(data.trained, dataclasses.replace(config, seed=seed), device, dist=dist)
    history, best_epoch, best_loss = system.fit(data.train, data.valid, on_epoch=on_epoch)
    evaluation = _evaluate(data.trained, data.test, genres, dist)
    network = data.network.cpu().eval()
    return RunResult(
        seed=seed, split=split, history=history, best_epoch=best_epoch, best_valid_loss=best_loss,
        evaluation=evaluation, network=network, normalization=data.normalization,
    )


class ChunkTrainer:
    """The CNN trainer: a whole network on a store's log-mel chunks.

    Each run normalises per band with its training songs' statistics, cuts chunks (overlapping,
    augmented for training) and trains the network in front of its normalisation. Distributed
    training (``dist``) gives each rank its share of the batches.

    Parameters
    ----------
    store
        The open feature store.
    tracks, genres
        Its tracks and genre names.
    config
        The training settings.
    dist
        This process's place in a distributed run, or ``None``.
    jobs, on_prepare
        Unused (nothing to prepare): the trainers share one signature.
    """

    distributed = True
    what = "a network on the store's chunks"

    def __init__(
        self,
        store: FeatureStore,
        tracks: Sequence[StoredTrack],
        genres: Sequence[str],
        config: TrainConfig,
        *,
        dist: DistInfo | None = None,
        jobs: int | None = None,
        on_prepare: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.store, self.genres, self.config, self.dist = store, list(genres), config, dist
        self.params: FeatureParams = store.params
        self.chunk_frames = config.chunk_frames

    def run_data(self, split: Split, seed: int) -> RunData:
        """The data and network of one run on ``split`` (call after :func:`seed_everything`)."""
        from genrify.models import GenreNetwork, build

        store, config, genres = self.store, self.config, self.genres
        normalization = Normalization.fit(store, split.train)
        make = lambda paths, augment, hop: ChunkDataset(
            store, paths, genres, normalization, chunk_frames=config.chunk_frames, hop_frames=hop, augment=augment, seed=seed
        )
        train_ds = make(split.train, config.augment, config.hop_frames)
        valid_ds = make(split.valid, None, config.chunk_frames)
        test_ds = make(split.test, None, config.chunk_frames)
        body = build(config.arch, n_mels=store.params.n_mels, n_genres=len(genres), **config.arch_config)
        network = GenreNetwork(body, *normalization.tensors())
        rank, world = (self.dist.rank, self.dist.world_size) if self.dist is not None else (0, 1)
        return RunData(
            trained=network,
            train=Batches(train_ds, config.batch_size, shuffle=True, seed=seed, rank=rank, world_size=world),
            valid=Batches(valid_ds, 256, shuffle=False, rank=rank, world_size=world, even=False),
            test=test_ds, network=network, normalization=normalization,
        )


class EmbeddingTrainer:
    """The transfer trainer: a head on the embeddings of a frozen pretrained model.

    The network (built from the registry) names the model whose embeddings its ``head`` reads
    (``embedding_source``); they are computed once per track from the audio and cached in the
    store (:func:`genrify.learn.embeddings.ensure_embeddings`), so each run trains only the head, on the
    architecture's own feature parameters (:attr:`genrify.models.Architecture.params`), whatever
    the store's. One process only.

    Parameters
    ----------
    store, tracks, genres, config, dist
        As :class:`ChunkTrainer`.
    jobs
        Worker processes computing missing embeddings (default: one per core).
    on_prepare
        Called with ``("embedding (once per track)", done, total)`` as tracks are embedded.

    Raises
    ------
    TrainingError
        A track whose audio can no longer be read.
    """

    distributed = False
    what = "a small head on cached embeddings"

    def __init__(
        self,
        store: FeatureStore,
        tracks: Sequence[StoredTrack],
        genres: Sequence[str],
        config: TrainConfig,
        *,
        dist: DistInfo | None = None,
        jobs: int | None = None,
        on_prepare: Callable[[str, int, int], None] | None = None,
    ) -> None:
        from genrify.models import architecture

        entry = architecture(config.arch)
        if entry.params is None or entry.chunk_frames is None:
            raise ParameterError(f"architecture {config.arch!r} trains on embeddings but declares no feature parameters of its own")
        self.params, self.chunk_frames = entry.params, entry.chunk_frames
        self.genres, self.config = list(genres), config
        self.genre_of = {t.path: t.genre for t in tracks}
        source = str(self._build().embedding_source)  # the network says whose embeddings it reads
        progress = None
        if on_prepare is not None:
            progress = lambda done, total: on_prepare("embedding (once per track)", done, total)
        files, failures = ensure_embeddings(store, tracks, source, jobs=jobs, on_progress=progress)
        if failures:
            shown = "; ".join(e for _, e in failures[:3])
            raise TrainingError(f"{len(failures)} tracks could not be embedded (is their audio still there?): {shown}")
        self.files = files

    def _build(self) -> nn.Module:
        from genrify.models import build

        return build(self.config.arch, n_mels=self.params.n_mels, n_genres=len(self.genres), **self.config.arch_config)

    def run_data(self, split: Split, seed: int) -> RunData:
        """The data and network of one run on ``split`` (call after :func:`seed_everything`)."""
        from genrify.models import GenreNetwork

        body = self._build()
        dim = body.head.mean.numel()  # type: ignore[union-attr]
        make = lambda paths: EmbeddingSet(self.files, paths, self.genres, self.genre_of, dim)
        train_set, valid_set, test_set = make(split.train), make(split.valid), make(split.test)
        body.head.set_statistics(train_set.x)  # type: ignore[union-attr,operator]  # the training split's only
        # The tagger reads its own features as they come: the network's normalisation is the identity.
        n_mels = self.params.n_mels
        identity = Normalization(np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32))
        return RunData(
            trained=body.head,  # type: ignore[arg-type]
            train=ShuffledBatches(train_set, self.config.batch_size, seed),
            valid=Batches(valid_set, 256, shuffle=False),  # type: ignore[arg-type]
            test=test_set, network=GenreNetwork(body, *identity.tensors()), normalization=identity,
        )


#: Each trainer a registry entry may declare (:attr:`genrify.models.Architecture.trainer`).
TRAINERS: dict[str, type[ChunkTrainer | EmbeddingTrainer]] = {CHUNKS: ChunkTrainer, EMBEDDINGS: EmbeddingTrainer}


def summarize(runs: Sequence[RunResult]) -> dict[str, Any]:
    """Mean and standard deviation over runs of the headline figures.

    The standard deviation is the sample's (``ddof=1``: a few runs are a sample of the runs the
    seed could give); 0 for a single run, where no spread is measured.
    """
    out: dict[str, Any] = {"runs": len(runs)}
    for key in ("song_accuracy", "chunk_accuracy", "vote_accuracy", "macro_f1"):
        values = np.array([r.evaluation.summary()[key] for r in runs], dtype=float)
        out[f"{key}_mean"] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


@dataclass
class TrainResult:
    """All runs, and the model kept (the run with the lowest validation loss)."""

    runs: list[RunResult]
    model: GenreModel
    config: TrainConfig

    def summary(self) -> dict[str, Any]:
        """Mean and standard deviation over runs of the headline figures."""
        return summarize(self.runs)


def train(
    store_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    runs: int = 1,
    split_file: str | Path | None = None,
    jobs: int | None = None,
    on_run: Callable[[int, Split], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_prepare: Callable[[str, int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> TrainResult:
    """Split, train and evaluate ``runs`` times on a feature store; keep the best model.

    Every architecture trains here: its registry entry (:func:`genrify.models.architecture`)
    names its trainer (:data:`TRAINERS`: a network on the store's chunks, or a head on cached
    embeddings of a pretrained model) and, for a model that reads audio, its own feature
    parameters, which the model file then records.

    Parameters
    ----------
    store_dir
        The feature store.
    config
        Training settings (defaults: the seed's network and optimiser).
    runs
        Repetitions with seeds ``config.seed``, ``config.seed + 1``, ...: new random splits each
        time (a split file gives the same split to every run; only the initialisation changes).
    split_file
        Fixed splits instead of random ones (see :func:`genrify.learn.splits.read_split_file`).
    jobs
        Worker processes for what a trainer prepares once (embeddings; default: one per core).
    on_run, on_epoch
        Progress callbacks.
    on_prepare
        Called with ``(what, done, total)`` while a trainer prepares (embedding the tracks).
    notify
        Called with one line of news (the CPU used because CUDA is missing).

    Raises
    ------
    StoreError, SplitError, TrainingError, ParameterError
        Bad store, impossible split, bad features or unreadable audio, bad settings (among them a
        trainer that runs in one process only, under ``torchrun``).

    Notes
    -----
    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) this joins the process group
    (:func:`genrify.learn.ddp.init_from_env`) and trains with DistributedDataParallel: every rank returns
    the same result, the callbacks are called on rank 0 only, and only rank 0 should write files
    (check :func:`genrify.learn.ddp.is_main`). The process group is left before returning.
    """
    from genrify.models import architecture

    config = config or TrainConfig()
    if runs < 1:
        raise ParameterError(f"runs must be at least 1, not {runs}")
    trainer = TRAINERS[architecture(config.arch).trainer]
    if not trainer.distributed and ddp.world_size() > 1:
        raise ParameterError(f"--arch {config.arch} trains in one process ({trainer.what}); run it without torchrun")
    dist = ddp.init_from_env(config.device, notify=notify)
    try:
        return _train(store_dir, config, runs, split_file, trainer, jobs, on_run, on_epoch, on_prepare, notify, dist)
    finally:
        if dist is not None:
            ddp.shutdown()


def _train(
    store_dir: str | Path,
    config: TrainConfig,
    runs: int,
    split_file: str | Path | None,
    trainer_type: type[ChunkTrainer | EmbeddingTrainer],
    jobs: int | None,
    on_run: Callable[[int, Split], None] | None,
    on_epoch: Callable[[EpochStats], None] | None,
    on_prepare: Callable[[str, int, int], None] | None,
    notify: Callable[[str], None] | None,
    dist: DistInfo | None,
) -> TrainResult:
    """The runs and the result, whatever the trainer: the one loop over runs and model assembly."""
    if dist is not None:
        device = dist.device
        if not dist.is_main:  # one rank reports; the others would only repeat it
            on_run = on_epoch = on_prepare = notify = None
    else:
        device = resolve_device(config.device, notify=notify)
    results: list[RunResult] = []
    with FeatureStore.open(store_dir) as store:
        tracks = store.tracks()
        genres = check_tracks(tracks, str(store_dir))
        keys = song_keys(tracks)
        # Every run's split is made before the trainer prepares its data (a transfer trainer embeds
        # every song first): a split that cannot be made is refused before that work, not after.
        if split_file is not None:
            splits = [split_from_file(tracks, split_file)] * runs
        else:
            splits = [make_split(tracks, valid=config.valid, test=config.test, seed=config.seed + r,
                                 group_by=config.group_by) for r in range(runs)]  # type: ignore[arg-type]
        trainer = trainer_type(store, tracks, genres, config, dist=dist, jobs=jobs, on_prepare=on_prepare)
        for r, split in enumerate(splits):
            seed = config.seed + r
            if on_run:
                on_run(r, split)
            seed_everything(seed)
            data = trainer.run_data(split, seed)
            results.append(fit_run(data, genres, split, config, seed=seed, on_epoch=on_epoch, device=device, dist=dist))
    best = min(results, key=lambda r: r.best_valid_loss)
    model = GenreModel(
        network=best.network,
        genres=list(genres),
        params=trainer.params,
        normalization=best.normalization,
        architecture=config.arch,
        architecture_config=dict(config.arch_config),
        chunk_frames=trainer.chunk_frames,
        info={
            "config": config.to_dict(),
            "summary": summarize(results),
            "kept_run": results.index(best),
            "runs": [r.summary() for r in results],
            "test_tracks": [keys[p] for p in best.split.test],
            "store": str(Path(store_dir).resolve()),
            **_distributed_info(config, dist),
        },
    )
    return TrainResult(runs=results, model=model, config=config)


def _distributed_info(config: TrainConfig, dist: DistInfo | None) -> dict[str, Any]:
    """What the model file records of a distributed run (nothing for a single process)."""
    if dist is None:
        return {}
    return {"distributed": {"world_size": dist.world_size, "backend": dist.backend,
                            "chunks_per_step": config.batch_size * dist.world_size}}
