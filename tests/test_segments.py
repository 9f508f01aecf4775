"""Where segments lie, how short audio fills one, and decoding only the sampled segments."""

from __future__ import annotations

import numpy as np
import pytest

from genrify.audio import decode as audio
from genrify.audio.features import FeatureParams
from genrify.errors import ParameterError
from genrify.models.taggers import MUSICNN_PARAMS, PATCH_FRAMES
from genrify.audio.segments import (
    DEFAULT_MAX_SEGMENTS,
    chunk_starts,
    cut_segments,
    fill_chunk,
    segment_starts,
    song_features,
    song_segments,
)
from genrify.audio.synth import SynthSpec, write_dataset


def test_a_short_chunk_is_filled_by_repeating_it():
    chunk = np.arange(6).reshape(2, 3)  # (bands, frames)
    filled = fill_chunk(chunk, 8)
    assert filled.tolist() == [[0, 1, 2, 0, 1, 2, 0, 1], [3, 4, 5, 3, 4, 5, 3, 4]]
    assert fill_chunk(chunk.T, 5, axis=0)[:, 0].tolist() == [0, 1, 2, 0, 1]
    assert fill_chunk(chunk, 3) is chunk and fill_chunk(chunk[:, :0], 8).shape == (2, 0)


def test_segments_spread_over_the_song_and_zero_takes_every_one():
    assert chunk_starts(20).tolist() == [0]
    every = segment_starts(1000, 100)
    assert every.tolist() == list(range(0, 901, 100))
    assert segment_starts(1000, 100, max_segments=0).tolist() == every.tolist()
    picked = segment_starts(1000, 100, max_segments=3)
    assert picked.tolist() == [0, 400, 900]  # the first, the middle (rounded half to even) and the last
    with pytest.raises(ParameterError):
        segment_starts(1000, 100, max_segments=-1)


@pytest.fixture(scope="module")
def long_songs(tmp_path_factory):
    """A 60 s song (20 musicnn patches) in the formats synth writes, 44.1 kHz stereo."""
    root = tmp_path_factory.mktemp("long")
    return {fmt: write_dataset(root / fmt, SynthSpec(genres=("rock",), per_genre=1, seconds=60.0, seed=3, fmt=fmt,
                                                    sample_rate=44100, channels=2))[0]
            for fmt in ("wav", "flac", "mp3", "ogg")}


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_sampled_segments_are_decoded_by_seeking_and_match_the_whole_song(long_songs, fmt, monkeypatch):
    path = long_songs[fmt]
    whole_features, duration = song_features(path, MUSICNN_PARAMS)
    whole = cut_segments(whole_features, MUSICNN_PARAMS, PATCH_FRAMES, duration=duration, max_segments=4)
    decoded: list[float] = []
    real_stream = audio.stream

    def counting(*args, **kwargs):
        for block in real_stream(*args, **kwargs):
            decoded.append(block.size / MUSICNN_PARAMS.sample_rate)
            yield block

    monkeypatch.setattr(audio, "stream", counting)
    sampled = song_segments(path, MUSICNN_PARAMS, PATCH_FRAMES, max_segments=4)
    assert sampled.segments.shape == (4, 96, PATCH_FRAMES) and not sampled.short
    np.testing.assert_allclose(sampled.starts, whole.starts)
    # The same features up to the codec's and resampler's rounding (values span about 0-4).
    assert np.abs(sampled.segments - whole.segments).max() < 0.05
    assert sum(decoded) < 4 * 3.5  # four segments and their context, not the whole minute
    assert sampled.duration == pytest.approx(duration, abs=0.1)


def test_a_song_of_few_segments_is_read_whole_and_default_sampling_is_bounded(long_songs):
    path = long_songs["wav"]
    every = song_segments(path, FeatureParams(), 128, max_segments=0)
    assert every.segments.shape[0] == 20  # 2584 frames of 60 s: 20 whole segments of 128
    default = song_segments(path, FeatureParams(), 128)
    assert default.segments.shape[0] == DEFAULT_MAX_SEGMENTS < every.segments.shape[0]
