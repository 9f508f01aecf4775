"""Classify songs: cut a song's log-mel spectrogram into segments, run the model, combine.

The seed's ``test.py`` sampled segments of a song, classified each and printed the share of
segments won by each genre. :func:`classify` gives that vote vector and, as the answer, the mean of
the segments' probabilities (a soft vote, which uses how sure each segment is); optionally the
per-segment probabilities with their start times (a timeline).

A song is decoded block by block and its features are computed as it arrives
(:func:`genrify.audio.features.log_mel_stream`), so memory is bounded by the features, about 40 MB for
an hour of audio in float16, never by the decoded audio. The features are exactly those that
extraction stores, so a song gets the same answer here as in :mod:`genrify.learn.evaluation`.

Everything here answers for one song. Many files (a local process pool that decodes while the model
runs in the calling process, or a Dask cluster whose workers load the model themselves, with a
results cache) are classified by :func:`genrify.classify.service.classify_library`, which hands
:data:`SEGMENTER` (one song's decoding and features) to its runner.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from genrify.audio.segments import (
    DEFAULT_MAX_SEGMENTS,
    SongSegments,
    cut_segments,
    feature_dtype,
    song_segments,
)
from genrify.core.runner import LocalRunner, Processor, Runner
from genrify.defaults import MAX_DURATION
from genrify.errors import ParameterError, PredictionError

if TYPE_CHECKING:
    from genrify.audio.features import FeatureParams


class Classifier(Protocol):
    """What prediction needs of a model: its genres and input, and one way to answer.

    The way to answer is ``probabilities(segments)`` (numpy ``(n, n_mels, frames)`` float32 in,
    ``(n, genres)`` out, no torch: the built-in model, a model file's ONNX graph, a learned head)
    wherever the model has it, else ``network`` (a torch module: dB chunks in, logits out; a model
    file without its graph, where torch is installed), and ``network`` on a GPU. Optional:
    ``confidence_threshold`` and ``near_tie_margin`` (when an answer is flagged unsure),
    ``batch_size``.
    """

    genres: list[str]
    params: FeatureParams
    chunk_frames: int


class RankedGenres:
    """What an answer over a model's genres offers: the top genre, its probability, a ranking.

    Shared by a song's :class:`Prediction` and an album's pooled answer
    (:class:`genrify.classify.albums.AlbumAnswer`); the class using it has ``genres`` (the model's genres,
    in its output order) and ``probabilities`` (one per genre).
    """

    genres: list[str]
    probabilities: np.ndarray

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


#: Asked for some of its genres, a model that gives them together less than this share of its
#: probability says the song is likely none of them: its answer among them is flagged as unsure
#: (:attr:`Prediction.other_genre`). Chosen as the learner chooses its unsure threshold, the share
#: under which answers are right at most half the time, on the built-in model's cross-validated
#: GTZAN answers with each of the ten genres left out of those asked for in turn
#: (``benchmarks/asked_share.py``): it flags 71 % of the excerpts of the genre left out and 3.8 % of
#: the others (right 20 % of the time, the rest 70 %); with all ten asked, 0.7 %.
ASKED_SHARE_MIN = 0.35


def expected_accuracy(confidences: Iterable[float]) -> float | None:
    """The share of a calibrated model's answers expected to be right: the mean of their top
    probabilities (``None`` for no answers).

    Only a model whose probabilities were calibrated on songs it never heard
    (:attr:`genrify.classify.modelref.ModelRef.calibrated`: a temperature chosen by cross-validation
    for the least log loss) means this. It is an estimate for the very songs answered, known before
    any of them is checked; the learner's cross-validated top-1 is one for songs in general.
    ``benchmarks/learn_library.py`` measures both against the accuracy realised on a library's
    untagged songs. It can be too high on music unlike what the model learned from (genres it never
    heard).

    Examples
    --------
    >>> expected_accuracy([0.9, 0.6, 0.3])
    0.6
    """
    values = [float(c) for c in confidences]
    return round(sum(values) / len(values), 12) if values else None


def expectation_words(accuracy: float | None) -> str:
    """:func:`expected_accuracy` as every summary says it (``""`` for ``None``).

    >>> expectation_words(0.5678)
    'expect about 57% right'
    """
    return f"expect about {accuracy:.0%} right" if accuracy is not None else ""


@dataclass
class Prediction(RankedGenres):
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
    short
        The song is shorter than one segment: its only segment was padded, so the answer rests on
        less audio than the model was made for and is flagged as unsure.
    not_music
        Why the song is not music (``silence``, ``tone``, ``noise``, ``clicks`` or ``speech``,
        see :mod:`genrify.classify.musicness`), or ``None``: an answer for what is not music is flagged as
        unsure, whatever the model's confidence.
    near_tie_margin
        The model's near-tie margin: an answer whose two most probable genres are closer than this
        is flagged as unsure (0: never; a learned head chooses it by cross-validation).
    asked_share
        With a model asked for some of its genres only (the built-in model with ``--genres``): the
        share of its probability over all its genres that the genres asked for held (the mean over
        segments), else ``None``. Under :data:`ASKED_SHARE_MIN` the song is likely none of them, and
        the answer (the best of them) is flagged as unsure: ``other genre``.
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
    short: bool = False
    not_music: str | None = None
    near_tie_margin: float = 0.0
    asked_share: float | None = None

    @property
    def low_confidence(self) -> bool:
        """True where the answer is unsure: the song is shorter than one segment, is not music
        (:attr:`not_music`), is most likely of a genre not asked for (:attr:`asked_share`), the
        model's top probability is below its threshold (music between genres lands here), or its
        two best genres are a near tie (:attr:`near_tie`)."""
        # ``not >=`` rather than ``<``: a NaN confidence (an answer rebuilt from a damaged cache)
        # counts as unsure, never as sure.
        return (self.short or self.not_music is not None or self.other_genre
                or not self.confidence >= self.confidence_threshold or self.near_tie)

    @property
    def other_genre(self) -> bool:
        """Asked for some of its genres, the model put most of its probability on the others."""
        return self.asked_share is not None and not self.asked_share >= ASKED_SHARE_MIN

    @property
    def near_tie(self) -> bool:
        """The two most probable genres are closer than :attr:`near_tie_margin`."""
        if self.near_tie_margin <= 0 or len(self.probabilities) < 2:
            return False
        first, second = np.sort(self.probabilities)[-2:][::-1]
        return bool(first - second < self.near_tie_margin)

    @property
    def unsure_reason(self) -> str | None:
        """Why the answer is unsure (``short``, ``not music``, ``other genre``, ``low probability``
        or ``near tie``, the first that holds), or ``None``."""
        if self.short:
            return "short"
        if self.not_music is not None:
            return "not music"
        if self.other_genre:
            return "other genre"
        if not self.confidence >= self.confidence_threshold:
            return "low probability"
        return "near tie" if self.near_tie else None

    def to_dict(self, *, top_k: int | None = None, timeline: bool = False) -> dict[str, Any]:
        """The JSON object of ``genrify classify --format json`` (and of the web API).

        ``probabilities`` holds every genre (summing to 1); ``top`` the ``top_k`` best.
        """
        out: dict[str, Any] = {
            "path": self.path,
            "genre": self.genre,
            "confidence": round(self.confidence, 6),
            "low_confidence": self.low_confidence,
            "short": self.short,
            "not_music": self.not_music,
            "probabilities": {g: round(float(p), 6) for g, p in zip(self.genres, self.probabilities, strict=True)},
            "votes": {g: round(float(v), 6) for g, v in zip(self.genres, self.votes, strict=True)},
            "top": [{"genre": g, "probability": round(p, 6)} for g, p in self.top(top_k or len(self.genres))],
            "segments": self.segments,
            "duration": round(self.duration, 3),
            "confidence_threshold": self.confidence_threshold,
            "near_tie_margin": self.near_tie_margin,
            "near_tie": self.near_tie,
            "asked_share": None if self.asked_share is None else round(self.asked_share, 6),
            "unsure_reason": self.unsure_reason,
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
            short=bool(data.get("short", False)),
            not_music=str(data["not_music"]) if data.get("not_music") else None,
            near_tie_margin=float(data.get("near_tie_margin", 0.0)),
            asked_share=float(data["asked_share"]) if data.get("asked_share") is not None else None,
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
        """The JSON object of a file without an answer (``genrify classify --format json``)."""
        return {"path": self.path, "error": self.error}


def predict_segments(
    song: SongSegments,
    model: Classifier,
    *,
    batch_size: int | None = None,
    path: str | None = None,
    music_check: bool = True,
    device: Any = None,
) -> Prediction:
    """Classify a song from its segments (:func:`song_segments`, :func:`cut_segments`).

    Parameters
    ----------
    song
        The segments, made with ``model.params`` and ``model.chunk_frames``.
    model
        The classifier.
    batch_size
        Segments per forward pass of the torch network (default: the model's ``batch_size``, else
        64): bounds memory. A model answering in numpy batches itself.
    path
        Recorded in the prediction.
    music_check
        Judge whether the song is music at all (:attr:`Prediction.not_music`).
    device
        ``None``: the model answers where it was loaded, through its numpy ``probabilities`` where it
        has them (no torch), else its torch network. A torch device (a GPU): the torch network, which
        the caller has moved there.

    Raises
    ------
    PredictionError
        The model gives non-finite probabilities (for this song).
    """
    n = song.segments.shape[0]
    numpy_probabilities = getattr(model, "probabilities", None) if device is None else None
    asked_share = None
    if numpy_probabilities is not None:
        # The model batches itself (the built-in model by its batch_size); numpy in, numpy out.
        segments = np.ascontiguousarray(song.segments, dtype=np.float32)
        if getattr(model, "restricted", False):
            # Asked for some of its genres: how much of its belief they hold says whether the song is one of them.
            answer, share = model.asked_probabilities(segments)  # type: ignore[attr-defined]
            probabilities, asked_share = np.asarray(answer, dtype=np.float32), float(np.mean(share))
        else:
            probabilities = np.asarray(numpy_probabilities(segments), dtype=np.float32)
    else:
        batch_size = batch_size or int(getattr(model, "batch_size", 64))
        probabilities, asked_share = _network_probabilities(song.segments, model, batch_size)
    if not np.isfinite(probabilities).all() or (asked_share is not None and not np.isfinite(asked_share)):
        # NaN would pass for an answer (argmax picks the first genre) and could end up in tags.
        raise PredictionError(path, "the model gave non-finite probabilities")
    mean = probabilities.mean(axis=0, dtype=np.float64)
    mean /= mean.sum()
    votes = np.bincount(probabilities.argmax(axis=1), minlength=len(model.genres)) / n
    not_music = None
    if music_check:
        from genrify.classify import musicness

        not_music = musicness.check_song(song, model.params)
    return Prediction(
        genres=list(model.genres),
        probabilities=mean,
        votes=votes.astype(np.float64),
        segments=int(n),
        duration=float(song.duration),
        path=path,
        confidence_threshold=float(getattr(model, "confidence_threshold", 0.5)),
        # One rule for every model: less audio than one segment is filled and flagged.
        short=song.short,
        not_music=not_music,
        near_tie_margin=float(getattr(model, "near_tie_margin", 0.0)),
        asked_share=asked_share,
        segment_starts=np.asarray(song.starts, dtype=np.float64),
        segment_probabilities=probabilities.astype(np.float64),
    )


def _network_probabilities(segments: np.ndarray, model: Classifier, batch_size: int) -> tuple[np.ndarray, float | None]:
    """Each segment's probabilities from the model's torch network, on the device it lives on, and
    (a model asked for some of its genres: ``restricted``) the song's :attr:`Prediction.asked_share`."""
    import torch

    from genrify.core.devices import autocast, module_device
    from genrify.models.builtin import split_asked

    network = model.network.eval()
    device = module_device(network)
    n = segments.shape[0]
    probabilities = np.empty((n, len(model.genres)), dtype=np.float32)
    restricted = bool(getattr(model, "restricted", False))
    shares = np.empty(n, dtype=np.float64)
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(segments[i : i + batch_size]))
            reference = None
            with autocast(device):
                if restricted:  # every genre's logits: the share of the genres asked for needs them all
                    logits, reference = network.forward_with_reference(batch.to(device))
                else:
                    logits = network(batch.to(device))
            if restricted:
                answer, share = split_asked(logits.float().cpu().numpy(), network.chosen.tolist())
                if reference is not None:  # a learned head: the packaged head's belief in its genres too
                    share = share * split_asked(reference.float().cpu().numpy(), network.reference_columns)[1]
                probabilities[i : i + batch.shape[0]], shares[i : i + batch.shape[0]] = answer, share
            else:
                probabilities[i : i + batch.shape[0]] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    return probabilities, float(shares.mean()) if restricted else None


def predict_features(
    features: np.ndarray,
    model: Classifier,
    *,
    duration: float | None = None,
    hop_frames: int | None = None,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    batch_size: int | None = None,
    path: str | None = None,
) -> Prediction:
    """Classify a song from its whole log-mel spectrogram ``(n_mels, frames)``.

    Parameters
    ----------
    features
        The spectrogram, made with ``model.params``.
    model
        The classifier.
    duration
        The song's length in seconds (from the frame count when ``None``).
    hop_frames, max_segments
        Which segments (see :func:`genrify.audio.segments.segment_starts`); ``max_segments`` 0 or ``None`` takes all.
    batch_size
        Segments per forward pass: bounds memory for long songs.
    path
        Recorded in the prediction.

    Raises
    ------
    PredictionError
        No frames at all, or the model gives non-finite probabilities (for this song).
    ParameterError
        Features of the wrong shape.
    """
    try:
        song = cut_segments(features, model.params, model.chunk_frames, duration=duration, hop_frames=hop_frames,
                            max_segments=max_segments)
    except PredictionError as exc:
        raise PredictionError(path, exc.reason) from None
    return predict_segments(song, model, batch_size=batch_size, path=path)


def predict_or_fail(song: SongSegments, model: Classifier, *, path: str, device: Any = None) -> Prediction | Failure:
    """:func:`predict_segments` for one file of a library run: a file the model cannot answer for
    (non-finite probabilities) becomes a :class:`Failure`, and the run goes on."""
    try:
        return predict_segments(song, model, path=path, device=device)
    except PredictionError as exc:
        return Failure(path, exc.reason)


def classify(
    source: str | Path | np.ndarray,
    model: Classifier,
    *,
    sample_rate: int | None = None,
    hop_seconds: float | None = None,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    whole: tuple[np.ndarray, float] | None = None,
    max_duration: float | None = MAX_DURATION,
) -> Prediction:
    """Classify one song, from a file or a waveform.

    Parameters
    ----------
    source
        An audio file, or a float waveform (then ``sample_rate`` is required): mono ``(samples,)``,
        or two-dimensional in either common layout, ``(channels, samples)`` as librosa gives it or
        ``(samples, channels)`` as soundfile does, whose channels are averaged. The channel axis is
        the short one, of at most :data:`genrify.audio.features.MAX_CHANNELS` channels; a shape
        where that is not clear, an integer array (PCM of unknown scale), no samples or non-finite
        ones are refused (:func:`genrify.audio.features.check_waveform`).
    model
        A loaded model (:func:`genrify.models.modelfile.load`, or
        :meth:`genrify.classify.modelref.ModelRef.load`), not a path or a model reference.
    sample_rate
        The waveform's rate in Hz; it is resampled to the model's.
    hop_seconds
        Time between the possible segment starts (default: one segment's length, no overlap). With
        ``max_segments=0``, shorter overlaps the segments for a finer timeline; with
        ``max_segments`` N, the N segments are spread among those starts, so it barely matters.
    max_segments
        Classify at most this many segments, spread evenly over the song (only those are decoded
        where the format can seek); 0 or ``None`` classifies every segment.
    whole
        The file's whole features and length, where the caller has them (see
        :func:`genrify.audio.segments.song_segments`).
    max_duration
        Refuse a file longer than this many seconds (by its header, or while it is read whole);
        ``None``: no limit.

    Raises
    ------
    AudioError
        The file cannot be decoded.
    PredictionError
        No audio, or the model gives non-finite probabilities.
    ParameterError
        A bad waveform or setting, or ``model`` is not a loaded model.

    Examples
    --------
    >>> from genrify.classify import predict
    >>> from genrify.models import modelfile
    >>> model = modelfile.load("model.safetensors")          # doctest: +SKIP
    >>> predict.classify("song.mp3", model).top(3)           # doctest: +SKIP
    [('jazz', 0.81), ('blues', 0.12), ('rock', 0.04)]
    """
    _check_loaded(model)
    params = model.params
    hop_frames = segment_hop(hop_seconds, params)
    if isinstance(source, np.ndarray):
        if sample_rate is None or sample_rate <= 0:
            raise ParameterError("a waveform needs its sample_rate")
        from genrify.audio.features import check_waveform, log_mel_stream

        # One rule with log_mel's and decoded files' (genrify.audio.decode.sample_problem): float
        # samples, finite, some at all; a 2-D array only where its channel axis is unambiguous.
        waveform = check_waveform(source, channels=True)
        if sample_rate != params.sample_rate:
            import soxr

            waveform = soxr.resample(waveform, sample_rate, params.sample_rate, quality="HQ").astype(np.float32)
        features = log_mel_stream([waveform], params, dtype=feature_dtype(params))
        return predict_features(features, model, duration=waveform.size / params.sample_rate, hop_frames=hop_frames,
                                max_segments=max_segments)
    song = song_segments(source, params, model.chunk_frames, hop_frames=hop_frames, max_segments=max_segments,
                         whole=whole, max_duration=max_duration)
    return predict_segments(song, model, path=str(source))


def _check_loaded(model: object) -> None:
    """Refuse, in one line, what names a model rather than being one (a path, a :class:`ModelRef`):
    either would otherwise fail deep inside with an ``AttributeError``."""
    from genrify.classify.modelref import ModelRef

    if isinstance(model, (str, os.PathLike)):
        raise ParameterError(
            f"model must be a loaded model, not a path ({os.fspath(model)!r}): load it first with "
            "genrify.models.modelfile.load(path) (or ModelRef.file(path).load())"
        )
    if isinstance(model, ModelRef):
        raise ParameterError(f"model must be a loaded model, not a model reference ({model!r}): pass its .load()")


def segment_hop(hop_seconds: float | None, params: FeatureParams) -> int | None:
    """Frames between segment starts for a hop of ``hop_seconds`` (``None``: one segment's length).

    Raises
    ------
    ParameterError
        The hop is not a positive, finite number of seconds.
    """
    if hop_seconds is None:
        return None
    if not hop_seconds > 0 or not math.isfinite(hop_seconds):
        raise ParameterError(f"segment hop must be a positive number of seconds, not {hop_seconds}")
    return max(1, round(hop_seconds / params.seconds_per_frame))


@dataclass(frozen=True)
class SegmentPlan:
    """Which segments of each song a model sees: what a decoding worker needs to know."""

    params: FeatureParams
    chunk_frames: int
    hop_frames: int | None = None
    max_segments: int | None = DEFAULT_MAX_SEGMENTS
    #: Longest file accepted, in seconds (``None``: no limit); see :func:`song_segments`.
    max_duration: float | None = MAX_DURATION

    @classmethod
    def for_model(cls, model: Classifier, hop_seconds: float | None = None,
                  max_segments: int | None = DEFAULT_MAX_SEGMENTS,
                  max_duration: float | None = MAX_DURATION) -> SegmentPlan:
        """The plan of ``model``'s input, with the hop in seconds (see :func:`segment_hop`)."""
        return cls(model.params, model.chunk_frames, segment_hop(hop_seconds, model.params), max_segments,
                   max_duration)

    def segments(self, path: str | Path) -> SongSegments:
        """The segments of one file (:func:`song_segments`)."""
        return song_segments(path, self.params, self.chunk_frames, hop_frames=self.hop_frames,
                             max_segments=self.max_segments, max_duration=self.max_duration)


#: What a decoding worker sends back for one file: ``(path, segments, None)`` or ``(path, None, error)``.
Segmented = tuple[str, SongSegments | None, str | None]


def _segments(path: str, plan: SegmentPlan) -> Segmented:
    return (path, plan.segments(path), None)


def _segments_failed(path: str, reason: str) -> Segmented:
    return (path, None, reason)


def _one_thread(*_args: Any) -> None:
    from genrify.core.devices import set_threads

    set_threads(1)  # one process per core: threads inside would only contend


#: Decoding and features of one file, for a runner whose results come back to this process (the
#: model runs here): ``SEGMENTER(path, plan)``.
SEGMENTER: Processor[str, Segmented] = Processor(_segments, _segments_failed, setup=_one_thread)


@contextlib.contextmanager
def beside_workers(runner: Runner, files: int) -> Iterator[None]:
    """The model in this process on one thread (ONNX Runtime, numpy, torch where loaded) while
    ``runner`` decodes ``files`` files in worker processes here (a local pool): the model shares the
    cores with them, and more threads would only contend. The thread count is put back on leaving;
    other runners change nothing.
    """
    from genrify.core.devices import set_threads

    if not (isinstance(runner, LocalRunner) and not runner.runs_here(files)):
        yield
        return
    threads = set_threads(1)
    try:
        yield
    finally:
        set_threads(threads)

