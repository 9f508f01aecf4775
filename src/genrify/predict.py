"""Classify songs: cut a song's log-mel spectrogram into segments, run the model, combine.

The seed's ``test.py`` sampled segments of a song, classified each and printed the share of
segments won by each genre. :func:`classify` gives that vote vector and, as the answer, the mean of
the segments' probabilities (a soft vote, which uses how sure each segment is); optionally the
per-segment probabilities with their start times (a timeline).

A song is decoded block by block and its features are computed as it arrives
(:func:`genrify.features.log_mel_stream`), so memory is bounded by the features, about 40 MB for
an hour of audio in float16, never by the decoded audio. The features are exactly those that
extraction stores, so a song gets the same answer here as in :mod:`genrify.evaluation`.

:func:`classify_paths` classifies many files: decoding and features run in a pool of processes
(both cores busy), the model runs in the calling process in batches, a file that cannot be read
becomes a failed result and the run goes on.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from genrify.errors import AudioError, ParameterError

if TYPE_CHECKING:
    import torch

    from genrify.features import FeatureParams
    from genrify.results import ResultCache


class Classifier(Protocol):
    """What prediction needs of a model (a :class:`genrify.modelfile.GenreModel` is one)."""

    network: torch.nn.Module  #: dB chunks ``(batch, n_mels, frames)`` in, logits out
    genres: list[str]
    params: FeatureParams
    chunk_frames: int
    # optional: ``confidence_threshold`` (float), below which an answer is flagged as unsure


@dataclass
class Prediction:
    """A song's genres.

    Attributes
    ----------
    genres
        The model's genres, in its output order.
    probabilities
        Mean over segments of each genre's probability (sums to 1): the answer.
    votes
        Share of segments whose most probable genre is each genre (the seed's vote vector).
    segments
        Segments classified.
    duration
        The song's length in seconds.
    path
        The file, where the song came from one.
    segment_starts
        Start time of each segment in seconds.
    segment_probabilities
        ``(segments, genres)`` probabilities of each segment (the timeline).
    """

    genres: list[str]
    probabilities: np.ndarray
    votes: np.ndarray
    segments: int
    duration: float
    path: str | None = None
    segment_starts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    segment_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    confidence_threshold: float = 0.5  #: below this top probability the answer is flagged as unsure

    @property
    def low_confidence(self) -> bool:
        """True where the model is unsure: its top probability is below its threshold (speech,
        animals, silence and music between genres land here)."""
        return self.confidence < self.confidence_threshold

    @property
    def genre(self) -> str:
        """The most probable genre."""
        return self.genres[int(np.argmax(self.probabilities))]

    @property
    def confidence(self) -> float:
        """The most probable genre's probability."""
        return float(np.max(self.probabilities))

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable genres with their probabilities, most probable first."""
        order = np.argsort(-self.probabilities, kind="stable")[: max(k, 1)]
        return [(self.genres[i], float(self.probabilities[i])) for i in order]

    def to_dict(self, *, top_k: int | None = None, timeline: bool = False) -> dict[str, Any]:
        """The JSON object of ``genrify classify --format json`` (and of the web API).

        ``probabilities`` holds every genre (summing to 1); ``top`` the ``top_k`` best.
        """
        out: dict[str, Any] = {
            "path": self.path,
            "genre": self.genre,
            "confidence": round(self.confidence, 6),
            "low_confidence": self.low_confidence,
            "probabilities": {g: round(float(p), 6) for g, p in zip(self.genres, self.probabilities, strict=True)},
            "votes": {g: round(float(v), 6) for g, v in zip(self.genres, self.votes, strict=True)},
            "top": [{"genre": g, "probability": round(p, 6)} for g, p in self.top(top_k or len(self.genres))],
            "segments": self.segments,
            "duration": round(self.duration, 3),
            "confidence_threshold": self.confidence_threshold,
        }
        if timeline:
            out["timeline"] = [
                {"start": round(float(t), 3), "genre": self.genres[int(np.argmax(p))],
                 "probabilities": {g: round(float(v), 6) for g, v in zip(self.genres, p, strict=True)}}
                for t, p in zip(self.segment_starts, self.segment_probabilities, strict=True)
            ]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        """Rebuild a prediction from :meth:`to_dict` (with ``timeline=True`` for the segments)."""
        genres = list(data["probabilities"])
        timeline = data.get("timeline") or []
        return cls(
            genres=genres,
            confidence_threshold=float(data.get("confidence_threshold", 0.5)),
            probabilities=np.array([data["probabilities"][g] for g in genres], dtype=np.float64),
            votes=np.array([data["votes"][g] for g in genres], dtype=np.float64),
            segments=int(data["segments"]),
            duration=float(data["duration"]),
            path=data.get("path"),
            segment_starts=np.array([s["start"] for s in timeline], dtype=np.float64),
            segment_probabilities=np.array(
                [[s["probabilities"][g] for g in genres] for s in timeline], dtype=np.float64
            ).reshape(len(timeline), len(genres)),
        )


@dataclass(frozen=True)
class Failure:
    """A file that could not be classified."""

    path: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error}


def segment_starts(
    frames: int, chunk_frames: int, hop_frames: int | None = None, max_segments: int | None = None
) -> np.ndarray:
    """Start frames of the segments of a song of ``frames`` frames.

    Segments lie wholly inside the song every ``hop_frames`` (default: ``chunk_frames``, no
    overlap); a song shorter than one segment gives one segment at 0, padded. With
    ``max_segments``, that many are taken, spread evenly over the song (the first and the last
    included), so a long song is covered from start to end at a fixed cost.
    """
    from genrify.data import chunk_starts

    if max_segments is not None and max_segments < 1:
        raise ParameterError(f"max_segments must be at least 1, not {max_segments}")
    starts = chunk_starts(frames, chunk_frames, hop_frames)
    if max_segments is not None and starts.size > max_segments:
        starts = starts[np.unique(np.linspace(0, starts.size - 1, max_segments).round().astype(np.int64))]
    return starts


def _feature_dtype(params: FeatureParams) -> type:
    # Decibels are stored as float16 by extraction: the same here gives the same answers as
    # evaluation. Pretrained taggers' inputs keep float32, the precision they were made with.
    return np.float16 if params.scale == "db" else np.float32


def song_features(path: str | Path, params: FeatureParams) -> tuple[np.ndarray, float]:
    """A file's log-mel spectrogram ``(n_mels, frames)``, and its length in seconds.

    Decibel features are float16, as the store keeps them (an hour takes about 40 MB).

    Raises
    ------
    AudioError
        The file cannot be decoded, or decodes to non-finite values.
    """
    from genrify import audio
    from genrify.features import log_mel_stream

    samples = 0

    def counted(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal samples
        for block in blocks:
            samples += block.size
            yield block

    features = log_mel_stream(counted(audio.stream(path, params.sample_rate)), params, dtype=_feature_dtype(params))
    if not np.isfinite(features).all():
        raise AudioError(path, "decoded to non-finite values")
    return features, samples / params.sample_rate


def predict_features(
    features: np.ndarray,
    model: Classifier,
    *,
    duration: float | None = None,
    hop_frames: int | None = None,
    max_segments: int | None = None,
    batch_size: int = 64,
    path: str | None = None,
) -> Prediction:
    """Classify a song from its log-mel spectrogram ``(n_mels, frames)`` in dB.

    Parameters
    ----------
    features
        The spectrogram, made with ``model.params``.
    model
        The classifier.
    duration
        The song's length in seconds (from the frame count when ``None``).
    hop_frames, max_segments
        Which segments (see :func:`segment_starts`).
    batch_size
        Segments per forward pass: bounds memory for long songs.
    path
        Recorded in the prediction.
    """
    import torch

    from genrify.data import pad_chunk
    from genrify.devices import autocast, module_device

    if features.ndim != 2 or features.shape[0] != model.params.n_mels:
        raise ParameterError(f"expected features of shape ({model.params.n_mels}, frames), got {features.shape}")
    chunk = model.chunk_frames
    starts = segment_starts(features.shape[1], chunk, hop_frames, max_segments)
    network = model.network.eval()
    device = module_device(network)
    probabilities = np.empty((starts.size, len(model.genres)), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, starts.size, batch_size):
            batch = np.stack([pad_chunk(features[:, s : s + chunk], chunk) for s in starts[i : i + batch_size]])
            with autocast(device):
                logits = network(torch.from_numpy(batch).to(device))
            probabilities[i : i + batch.shape[0]] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    mean = probabilities.mean(axis=0, dtype=np.float64)
    mean /= mean.sum()
    votes = np.bincount(probabilities.argmax(axis=1), minlength=len(model.genres)) / starts.size
    return Prediction(
        genres=list(model.genres),
        probabilities=mean,
        votes=votes.astype(np.float64),
        segments=int(starts.size),
        duration=float(duration if duration is not None else features.shape[1] * model.params.seconds_per_frame),
        path=path,
        confidence_threshold=float(getattr(model, "confidence_threshold", 0.5)),
        segment_starts=starts * model.params.seconds_per_frame,
        segment_probabilities=probabilities.astype(np.float64),
    )


def classify(
    source: str | Path | np.ndarray,
    model: Classifier,
    *,
    sample_rate: int | None = None,
    hop_seconds: float | None = None,
    max_segments: int | None = None,
) -> Prediction:
    """Classify one song, from a file or a waveform.

    Parameters
    ----------
    source
        An audio file, or a mono float waveform (then ``sample_rate`` is required).
    model
        A loaded model (:func:`genrify.modelfile.load`).
    sample_rate
        The waveform's rate in Hz; it is resampled to the model's.
    hop_seconds
        Time between segment starts (default: one segment's length, no overlap); shorter
        overlaps segments for a finer timeline.
    max_segments
        Classify at most this many segments, spread evenly over the song (faster on long songs).

    Raises
    ------
    AudioError
        The file cannot be decoded.
    ParameterError
        A bad waveform or setting.

    Examples
    --------
    >>> from genrify import modelfile, predict
    >>> model = modelfile.load("model.safetensors")          # doctest: +SKIP
    >>> predict.classify("song.mp3", model).top(3)           # doctest: +SKIP
    [('jazz', 0.81), ('blues', 0.12), ('rock', 0.04)]
    """
    params = model.params
    hop_frames = _hop_frames(hop_seconds, params)
    if isinstance(source, np.ndarray):
        if sample_rate is None or sample_rate <= 0:
            raise ParameterError("a waveform needs its sample_rate")
        waveform = np.asarray(source, dtype=np.float32)
        if waveform.ndim == 2:  # (channels, samples) as librosa gives it
            waveform = waveform.mean(axis=0)
        if waveform.ndim != 1 or waveform.size == 0:
            raise ParameterError(f"expected a non-empty mono waveform, got shape {source.shape}")
        if not np.isfinite(waveform).all():
            raise ParameterError("the waveform holds NaN or infinite samples")
        if sample_rate != params.sample_rate:
            import soxr

            waveform = soxr.resample(waveform, sample_rate, params.sample_rate, quality="HQ").astype(np.float32)
        from genrify.features import log_mel_stream

        features = log_mel_stream([waveform], params, dtype=_feature_dtype(params))
        duration = waveform.size / params.sample_rate
        path = None
    else:
        features, duration = song_features(source, params)
        path = str(source)
    return predict_features(features, model, duration=duration, hop_frames=hop_frames, max_segments=max_segments, path=path)


def _hop_frames(hop_seconds: float | None, params: FeatureParams) -> int | None:
    if hop_seconds is None:
        return None
    if not hop_seconds > 0 or not math.isfinite(hop_seconds):
        raise ParameterError(f"segment hop must be a positive number of seconds, not {hop_seconds}")
    return max(1, round(hop_seconds / params.seconds_per_frame))


def _features_task(paths: Sequence[str], params: FeatureParams) -> list[tuple[str, np.ndarray | None, float, str | None]]:
    """Worker: features of a few files; a file that fails carries its error instead."""
    import torch

    torch.set_num_threads(1)  # one process per core: threads inside would only contend
    out: list[tuple[str, np.ndarray | None, float, str | None]] = []
    for path in paths:
        try:
            features, duration = song_features(path, params)
            out.append((path, features, duration, None))
        except AudioError as exc:
            out.append((path, None, 0.0, exc.reason))
        except Exception as exc:  # noqa: BLE001 - one strange file must not end a library's run
            out.append((path, None, 0.0, f"{type(exc).__name__}: {exc}"))
    return out


def classify_paths(
    paths: Iterable[str | Path],
    model: Classifier,
    *,
    jobs: int | None = None,
    hop_seconds: float | None = None,
    max_segments: int | None = None,
    files_per_task: int = 2,
    client: Any = None,
    model_path: str | Path | None = None,
) -> Iterator[Prediction | Failure]:
    """Classify many files; yields each file's result as soon as it is ready (in any order).

    Decoding and features run in ``jobs`` worker processes (default: one per core; 1 runs
    everything in this process); the model runs here. A file that cannot be decoded yields a
    :class:`Failure` and the rest go on. If a decoder crashes a worker outright, the files it
    held are retried one per task, so only the file that crashes it fails.
    """
    params = model.params
    hop_frames = _hop_frames(hop_seconds, params)
    todo = [str(p) for p in paths]
    if client is not None:  # on a Dask cluster: the workers load the model, decode and classify
        from genrify.distributed import classify_on_dask
        from genrify.models.builtin import BuiltinGenreModel

        builtin = model_path is None and isinstance(model, BuiltinGenreModel)
        if model_path is None and not builtin:
            raise ParameterError("classifying on a Dask cluster needs the model's file (model_path)")
        yield from classify_on_dask(todo, None if builtin else str(model_path), client,
                                    genres=list(model.genres) if builtin else None,
                                    hop_seconds=hop_seconds, max_segments=max_segments)
        return
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))

    def predictions(results: list[tuple[str, np.ndarray | None, float, str | None]]) -> Iterator[Prediction | Failure]:
        for path, features, duration, error in results:
            if features is None:
                yield Failure(path, error or "could not be read")
            else:
                yield predict_features(features, model, duration=duration, hop_frames=hop_frames,
                                       max_segments=max_segments, path=path)

    if jobs == 1:
        for path in todo:
            yield from predictions(_features_task([path], params))
        return

    import torch

    # The model shares the cores with the decoding workers; one thread avoids oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield from _pooled(todo, params, jobs, files_per_task, predictions)
    finally:
        torch.set_num_threads(threads)


def _pooled(
    todo: list[str],
    params: FeatureParams,
    jobs: int,
    files_per_task: int,
    predictions: Callable[[list[tuple[str, np.ndarray | None, float, str | None]]], Iterator[Prediction | Failure]],
    task: Callable[..., list[tuple[str, np.ndarray | None, float, str | None]]] = _features_task,
) -> Iterator[Prediction | Failure]:
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("forkserver")
    queue = [todo[i : i + files_per_task] for i in range(0, len(todo), files_per_task)][::-1]
    suspects: list[str] = []  # files in flight when a worker died
    while queue:
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            pending: dict[Future, list[str]] = {}
            # A bounded number of tasks in flight keeps finished features from piling up in memory.
            while queue or pending:
                while queue and len(pending) < 2 * jobs:
                    files = queue.pop()
                    pending[pool.submit(task, files, params)] = files
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    files = pending.pop(future)
                    try:
                        results = future.result()
                    except BrokenProcessPool:
                        suspects += files
                        broken = True
                        continue
                    yield from predictions(results)
                if broken:  # every task still in flight died with the pool; the queue goes to a new one
                    for files in pending.values():
                        suspects += files
                    break
    # Each suspect alone in its own worker: only the file that kills its worker fails.
    for path in suspects:
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            try:
                results = pool.submit(task, [path], params).result()
            except BrokenProcessPool:
                yield Failure(path, "the decoder crashed on this file")
                continue
        yield from predictions(results)


def classify_files(
    files: Sequence[str],
    model: Classifier,
    *,
    cache: ResultCache | None = None,
    jobs: int | None = None,
    hop_seconds: float | None = None,
    max_segments: int | None = None,
    on_result: Callable[[Prediction | Failure, bool], None] | None = None,
    client: Any = None,
    model_path: str | Path | None = None,
) -> list[Prediction | Failure]:
    """Classify files, reusing cached answers; results in the order of ``files``.

    Parameters
    ----------
    files
        Audio files.
    model
        The classifier.
    cache
        Results of earlier runs with the same model and settings (see :mod:`genrify.results`);
        new answers are added to it.
    jobs, hop_seconds, max_segments
        As :func:`classify_paths`.
    on_result
        Called with each result and whether it came from the cache, as it arrives.
    """
    found: dict[str, Prediction | Failure] = {}
    todo: list[str] = []
    for path in files:
        hit = cache.get(path) if cache is not None else None
        if hit is not None:
            prediction = Prediction.from_dict(hit)
            prediction.path = path
            found[path] = prediction
            if on_result:
                on_result(prediction, True)
        else:
            todo.append(path)
    try:
        for result in classify_paths(todo, model, jobs=jobs, hop_seconds=hop_seconds, max_segments=max_segments,
                                     client=client, model_path=model_path):
            found[result.path] = result  # type: ignore[index]
            if cache is not None and isinstance(result, Prediction):
                cache.put(result.path, result.to_dict(timeline=True))  # type: ignore[arg-type]
            if on_result:
                on_result(result, False)
    finally:
        if cache is not None:
            cache.commit()
    return [found[p] for p in files]
