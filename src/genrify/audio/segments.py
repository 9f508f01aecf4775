"""Where a song's segments lie, and how a song shorter than one segment fills it.

Shared by training (:mod:`genrify.learn.data`), prediction (:mod:`genrify.classify.predict`) and the pretrained
taggers (:mod:`genrify.models.musicnn`), so that a segment means the same everywhere: segments lie
wholly inside the song, and audio shorter than one segment is repeated until it fills it. Repeating
keeps the segment music-like (rhythm, timbre, level) where padding would add silence that no
training segment has: on 294 real GTZAN excerpts of 2-3 s, the musicnn taggers' genre tags named
49 % right from repeated patches against 39 % from padded ones (``benchmarks/builtin_accuracy.py``
measures the built-in model on them). Such songs are flagged ``short`` wherever they are answered.

What a song costs is bounded by what the model needs, never by what the file claims: a long song has
only its sampled segments decoded, a song is read whole only up to ``max_duration``
(:data:`genrify.audio.decode.MAX_DURATION` by default; a longer one is an :class:`~genrify.errors.AudioError`
for that file), and the spectrogram drawn for a page (:func:`picture_features`) only up to
:data:`PICTURE_MAX_DURATION`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genrify.defaults import CHUNK_FRAMES, DEFAULT_MAX_SEGMENTS, MAX_DURATION
from genrify.errors import AudioError, ParameterError, PredictionError

if TYPE_CHECKING:
    from genrify.audio.features import FeatureParams


def chunk_starts(frames: int, chunk_frames: int = CHUNK_FRAMES, hop_frames: int | None = None) -> np.ndarray:
    """Start frames of the chunks of a track of ``frames`` frames.

    Chunks lie wholly inside the track, every ``hop_frames`` (default: no overlap); a track shorter
    than one chunk gives one chunk at 0, filled by :func:`fill_chunk`.
    """
    hop = hop_frames or chunk_frames
    if hop < 1 or chunk_frames < 1:
        raise ParameterError(f"chunk and hop must be positive, not {chunk_frames} and {hop}")
    if frames <= chunk_frames:
        return np.zeros(1, dtype=np.int64)
    return np.arange(0, frames - chunk_frames + 1, hop, dtype=np.int64)


def fill_chunk(chunk: np.ndarray, chunk_frames: int, *, axis: int = -1) -> np.ndarray:
    """Repeat a chunk shorter than ``chunk_frames`` along time (``axis``) until it is that long.

    An empty chunk cannot be filled and is returned as it is (the caller reports "no audio").
    """
    have = chunk.shape[axis]
    if have >= chunk_frames or have == 0:
        return chunk
    reps = -(-chunk_frames // have)
    tiled = np.concatenate([chunk] * reps, axis=axis)
    return np.take(tiled, np.arange(chunk_frames), axis=axis)


# Frames decoded on each side of a sampled segment, so that the STFT window and the resampler's
# filter see the same audio as when the whole song is decoded.
_SEGMENT_MARGIN_FRAMES = 8
# Seeking costs a decoder open and a seek per segment: it pays only where the sampled segments are a
# small part of the song (under a third of it); a shorter song is decoded whole and then sampled.
_SEEK_FACTOR = 3
#: Longest song whose whole spectrogram :func:`picture_features` computes, in seconds. An hour takes
#: about 5 s of one core and 40-90 MB (float16 decibels, float32 musicnn input) while it is drawn; a
#: web worker must not spend the minutes and gigabytes of a whole --max-duration on a picture.
PICTURE_MAX_DURATION = 3600.0


def segment_starts(
    frames: int, chunk_frames: int, hop_frames: int | None = None, max_segments: int | None = None
) -> np.ndarray:
    """Start frames of the segments of a song of ``frames`` frames.

    Segments lie wholly inside the song every ``hop_frames`` (default: ``chunk_frames``, no
    overlap); a song shorter than one segment gives one segment at 0, filled by repetition. With
    ``max_segments``, that many are taken, spread evenly over the song (the first and the last
    included), so a long song is covered from start to end at a fixed cost; ``None`` or 0 takes
    every segment.
    """
    if max_segments is not None and max_segments < 0:
        raise ParameterError(f"max_segments must be 0 (every segment) or more, not {max_segments}")
    starts = chunk_starts(frames, chunk_frames, hop_frames)
    if max_segments and starts.size > max_segments:
        starts = starts[np.unique(np.linspace(0, starts.size - 1, max_segments).round().astype(np.int64))]
    return starts


def feature_dtype(params: FeatureParams) -> type:
    # Decibels are stored as float16 by extraction: the same here gives the same answers as
    # evaluation. Pretrained taggers' inputs keep float32, the precision they were made with.
    return np.float16 if params.scale == "db" else np.float32


def song_features(
    path: str | Path, params: FeatureParams, *, max_duration: float | None = MAX_DURATION
) -> tuple[np.ndarray, float]:
    """A file's whole log-mel spectrogram ``(n_mels, frames)``, and its length in seconds.

    Decibel features are float16, as the store keeps them (an hour takes about 40 MB).

    Parameters
    ----------
    path
        The audio file.
    params
        Feature parameters.
    max_duration
        Refuse a file longer than this many seconds (:func:`genrify.audio.decode.stream`); ``None``: no
        limit.

    Raises
    ------
    AudioError
        The file cannot be decoded, decodes to non-finite values, or is longer than
        ``max_duration``.
    """
    from genrify.audio import decode as audio
    from genrify.audio.features import log_mel_stream

    samples = 0

    def counted(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal samples
        for block in blocks:
            samples += block.size
            yield block

    blocks = audio.stream(path, params.sample_rate, max_duration=max_duration)
    features = log_mel_stream(counted(blocks), params, dtype=feature_dtype(params))
    if not np.isfinite(features).all():
        raise AudioError(path, "decoded to non-finite values")
    return features, samples / params.sample_rate


class _PastPicture(Exception):
    """A song turned out longer than the picture's limit while it was decoded."""


def picture_features(
    path: str | Path,
    params: FeatureParams,
    *,
    limit: float = PICTURE_MAX_DURATION,
    max_duration: float | None = MAX_DURATION,
) -> tuple[np.ndarray, float] | None:
    """:func:`song_features` for a picture of the song, or ``None`` where the song is longer than
    ``limit`` seconds (no picture; the song can still be classified from its sampled segments).

    The result can be handed to :func:`song_segments` as ``whole``. A header that declares more than
    ``limit`` costs nothing; a file that declares no length is decoded up to ``limit`` at most.

    Raises
    ------
    AudioError
        The file cannot be decoded (or is longer than ``max_duration``, as :func:`song_features`).
    """
    from genrify.audio import decode as audio
    from genrify.audio.features import log_mel_stream

    head = audio.info(path)
    audio.check_header(head, max_duration)
    if head.duration > limit:
        return None
    most = int(limit * params.sample_rate)
    samples = 0

    def capped(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal samples
        for block in blocks:
            samples += block.size
            if samples > most:
                raise _PastPicture
            yield block

    try:
        blocks = audio.stream(path, params.sample_rate, max_duration=max_duration)
        features = log_mel_stream(capped(blocks), params, dtype=feature_dtype(params))
    except _PastPicture:
        return None
    if not np.isfinite(features).all():
        raise AudioError(path, "decoded to non-finite values")
    return features, samples / params.sample_rate


@dataclass
class SongSegments:
    """The segments of one song that a model will see.

    Attributes
    ----------
    segments
        ``(n, n_mels, chunk_frames)`` features, one row per segment.
    starts
        Start of each segment in seconds.
    duration
        The song's length in seconds.
    short
        The song is shorter than one segment (its only segment is filled by repetition).
    """

    segments: np.ndarray
    starts: np.ndarray
    duration: float
    short: bool = False


def cut_segments(
    features: np.ndarray,
    params: FeatureParams,
    chunk_frames: int,
    *,
    duration: float | None = None,
    hop_frames: int | None = None,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
) -> SongSegments:
    """Cut a whole song's features ``(n_mels, frames)`` into the segments to classify.

    Raises
    ------
    PredictionError
        No frames at all.
    ParameterError
        A bad hop or segment count.
    """
    if features.ndim != 2 or features.shape[0] != params.n_mels:
        raise ParameterError(f"expected features of shape ({params.n_mels}, frames), got {features.shape}")
    if features.shape[1] == 0:
        raise PredictionError("(features)", "no audio: nothing to classify")
    starts = segment_starts(features.shape[1], chunk_frames, hop_frames, max_segments)
    segments = np.stack([fill_chunk(features[:, s : s + chunk_frames], chunk_frames) for s in starts])
    return SongSegments(
        segments=segments,
        starts=starts * params.seconds_per_frame,
        duration=float(duration if duration is not None else features.shape[1] * params.seconds_per_frame),
        short=bool(features.shape[1] < chunk_frames),
    )


def song_segments(
    path: str | Path,
    params: FeatureParams,
    chunk_frames: int,
    *,
    hop_frames: int | None = None,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    whole: tuple[np.ndarray, float] | None = None,
    max_duration: float | None = MAX_DURATION,
) -> SongSegments:
    """Decode the segments of a file that a model will see, and only those where that is cheaper.

    A song with more than three times ``max_segments`` segments (by its header's length) has just
    its sampled segments decoded, each with a few frames of context, by seeking (libsndfile and ffmpeg both seek
    in every common format): a 4-minute song costs 8 x 3 s of decoding instead of 240 s, and an
    hour-long file no more. Everything else, and any file whose header does not say its length or
    whose sampled part cannot be read, is decoded whole block by block (memory bounded by its
    features). The features equal those of the whole song up to the STFT and resampler edges,
    which the context frames keep out of the segments.

    ``whole`` is the song's whole features and length (:func:`song_features`) where the caller has
    them already (the web page draws them): a song that is read whole is then not read again.

    A file whose header declares more than ``max_duration`` seconds (``None``: no limit), or a
    sample rate that is no music's (:func:`genrify.audio.decode.check_header`), is refused before anything
    is decoded, even where its sampled segments could be read: the same file fails the same way in
    extraction, classification and the web app. A file read whole is stopped at ``max_duration``.

    Raises
    ------
    AudioError
        The file cannot be decoded, or is longer than ``max_duration``.
    PredictionError
        No audio at all.
    """
    from genrify.audio import decode as audio

    if max_segments:
        head = audio.info(path)
        audio.check_header(head, max_duration)
        frames = params.n_frames(int(head.duration * params.sample_rate)) if head.duration > 0 else 0
        starts = segment_starts(frames, chunk_frames, hop_frames, None) if frames else np.zeros(0)
        if starts.size > _SEEK_FACTOR * max_segments:
            chosen = segment_starts(frames, chunk_frames, hop_frames, max_segments)
            try:
                segments = np.stack([segment_at(path, params, int(s), chunk_frames, max_duration) for s in chosen])
            except AudioError:
                pass  # a header that overstates the length: decoding it whole says what is wrong
            else:
                return SongSegments(segments, chosen * params.seconds_per_frame, head.duration, short=False)
    features, duration = whole if whole is not None else song_features(path, params, max_duration=max_duration)
    try:
        return cut_segments(features, params, chunk_frames, duration=duration, hop_frames=hop_frames,
                            max_segments=max_segments)
    except PredictionError as exc:
        raise PredictionError(path, exc.reason) from None


def segment_at(
    path: str | Path, params: FeatureParams, start: int, chunk_frames: int, max_duration: float | None = MAX_DURATION
) -> np.ndarray:
    """One segment's features ``(n_mels, chunk_frames)`` from frame ``start``, decoded by seeking with a
    few frames of context (the same values as the whole song's features there).

    Raises
    ------
    AudioError
        The file cannot be decoded there, or is longer than ``max_duration`` seconds by its header.
    """
    from genrify.audio import decode as audio
    from genrify.audio.features import log_mel_stream
    first = max(0, start - _SEGMENT_MARGIN_FRAMES)
    hop_seconds = params.hop_length / params.sample_rate
    blocks = audio.stream(path, params.sample_rate, offset=first * hop_seconds,
                          duration=(start - first + chunk_frames + _SEGMENT_MARGIN_FRAMES) * hop_seconds,
                          max_duration=max_duration)
    features = log_mel_stream(blocks, params, dtype=feature_dtype(params))
    if not np.isfinite(features).all():
        raise AudioError(path, "decoded to non-finite values")
    return fill_chunk(features[:, start - first : start - first + chunk_frames], chunk_frames)
