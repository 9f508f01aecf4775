"""The pretrained musicnn taggers on audio files: a file decoded into their input, and tagged.

:mod:`genrify.models.musicnn` holds the networks and their weights, and tags what it is handed (a
waveform, or patches); here files are read for them, with genrify's own decoding
(:mod:`genrify.audio.decode`) and segment sampling (:mod:`genrify.audio.segments`), as
classification reads them (:mod:`genrify.classify.predict`):

- :func:`preprocess_file`: a whole file's patches, block by block;
- :func:`tag_file`: one tagger on a whole file;
- :func:`tag_song`: several taggers on the sampled patches of one decoding (``genrify tags``).

>>> from genrify.models.musicnn import load_tagger
>>> from genrify.classify.musicnn_tags import tag_file
>>> result = tag_file(load_tagger("MSD_musicnn"), "song.mp3")   # doctest: +SKIP
>>> result.top(3)                                              # doctest: +SKIP
[('rock', 0.61), ('alternative', 0.25), ('indie', 0.21)]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genrify.audio.features import log_mel_stream
from genrify.defaults import DEFAULT_MAX_SEGMENTS
from genrify.errors import ParameterError
from genrify.models.taggers import MUSICNN_PARAMS, PATCH_FRAMES, TagResult, patch_hop, patches

if TYPE_CHECKING:
    from genrify.audio.segments import SongSegments
    from genrify.models.musicnn import Tagger
    from genrify.models.taggers import OnnxTagger


def preprocess_file(path: str | Path, *, hop_seconds: float | None = None) -> np.ndarray:
    """musicnn's input batch from an audio file, decoded by genrify's :mod:`~genrify.audio.decode` at 16 kHz.

    The same values as :func:`genrify.models.taggers.preprocess` of :func:`genrify.audio.decode.load`'s
    waveform, computed block by block (:func:`genrify.audio.features.log_mel_stream`), so that an
    hour-long file costs its patches (about 90 MB) rather than its decoded audio and a whole-file
    STFT (over 1 GB).

    Raises
    ------
    AudioError
        The file cannot be decoded.
    ParameterError
        As :func:`genrify.models.taggers.preprocess`.
    """
    from genrify.audio import decode as audio

    hop = patch_hop(hop_seconds)
    blocks = audio.stream(path, sr=MUSICNN_PARAMS.sample_rate)
    spectrogram = log_mel_stream(blocks, MUSICNN_PARAMS).T
    try:
        return patches(spectrogram, hop)
    except ParameterError as exc:
        raise ParameterError(f"{path}: {exc}") from None


def tag_file(tagger: Tagger, path: str | Path, *, hop_seconds: float | None = None, features: bool = False) -> TagResult:
    """Tag an audio file whole (decoded by :func:`genrify.audio.decode.stream`); ``features`` keeps
    the embeddings too.

    Raises
    ------
    AudioError
        The file cannot be decoded.
    ParameterError
        As :func:`preprocess_file`.
    """
    batch = preprocess_file(path, hop_seconds=hop_seconds)
    return tagger.tag_patches(batch, hop_seconds=hop_seconds, features=features)


def tag_song(
    taggers: Sequence[Tagger | OnnxTagger],
    path: str | Path,
    *,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    features: bool = False,
) -> tuple[dict[str, TagResult], SongSegments]:
    """Tag a file with several taggers from one decoding: ``{name: result}`` and the patches read.

    Parameters
    ----------
    taggers
        Loaded taggers (:func:`genrify.models.taggers.load_onnx`, on ONNX Runtime without torch where
        they can; :func:`genrify.models.musicnn.load_tagger`); they share musicnn's input.
    path
        The audio file.
    max_segments
        Tag at most this many patches, spread evenly over the song (only those are decoded where
        the format can seek), as classification samples them; ``None`` or 0 tags every patch.
    features
        Keep each tagger's embeddings too (then every tagger runs on PyTorch; without them each
        runs on ONNX Runtime where it can, the same taggram about twice as fast).

    Raises
    ------
    AudioError
        The file cannot be decoded.
    """
    from genrify.audio.segments import song_segments

    song = song_segments(path, MUSICNN_PARAMS, PATCH_FRAMES, max_segments=max_segments)
    batch = np.ascontiguousarray(song.segments.transpose(0, 2, 1))  # (n, 187, 96), the taggers' layout
    out = {}
    for tagger in taggers:
        result = tagger.tag_patches(batch, features=features, fast=True)
        result.short = song.short
        out[tagger.name] = result
    return out, song


__all__ = ["preprocess_file", "tag_file", "tag_song"]
