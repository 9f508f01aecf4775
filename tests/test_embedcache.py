"""Song embeddings for learning: the segments classify samples, cached per file, safe against kill -9."""

from __future__ import annotations

import dataclasses

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import tone

from genrify.learn.embedcache import (
    APPLICATION_ID,
    EmbedFailure,
    Embedder,
    EmbeddingCache,
    SongEmbedding,
    decode,
    embed_songs,
    encode,
    segment_plan,
)
from genrify.classify.results import ResultCache
from genrify.errors import ParameterError


class CountingEmbedder(Embedder):
    """The real taggers, counting the songs they embed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def embed(self, song, path):
        self.calls.append(Path(path).name)
        return super().embed(song, path)


@pytest.fixture(scope="module")
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


def songs(folder: Path, n: int, seconds: float = 2.0, first: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(first, first + n):
        path = folder / f"s{i}.wav"
        sf.write(path, tone(seconds, freq=220.0 + 40 * i, seed=i), 22050)
        out.append(path)
    return out


def test_the_embedding_is_the_one_classify_computes_on_the_same_segments(tmp_path, embedder):
    import torch

    from genrify.models.builtin import load_builtin

    (path,) = songs(tmp_path, 1, seconds=40.0)  # more than 8 segments: sampled as classify samples them
    (result,) = embed_songs([path], jobs=1, embedder=embedder)
    assert isinstance(result, SongEmbedding) and not result.short
    plan = segment_plan()
    song = plan.segments(path)
    assert result.embedding.shape == (8, 200) == (song.segments.shape[0], 200)
    assert set(result.taggrams) == {"MSD_musicnn", "MTT_musicnn"} and result.taggrams["MTT_musicnn"].shape == (8, 50)
    network = load_builtin(head=False).network  # the embedding does not depend on the head
    with torch.inference_mode():
        _logits, embedding = network.forward_with_embedding(torch.from_numpy(song.segments))
    np.testing.assert_allclose(result.embedding, embedding.numpy(), atol=1e-5)


def test_a_short_song_is_filled_and_flagged_as_classify_does(tmp_path, embedder):
    (path,) = songs(tmp_path, 1, seconds=1.0)
    (result,) = embed_songs([path], jobs=1, embedder=embedder)
    assert result.short and result.embedding.shape == (1, 200)


def test_a_second_run_embeds_only_new_and_changed_files(tmp_path, embedder):
    paths = songs(tmp_path / "lib", 3)
    cache_path = tmp_path / "emb.sqlite"
    embedder.calls.clear()
    with EmbeddingCache(cache_path) as cache:
        first = {r.path: r for r in embed_songs(paths, cache=cache, jobs=1, embedder=embedder)}
    assert sorted(embedder.calls) == ["s0.wav", "s1.wav", "s2.wav"]
    # Two new songs, and one retagged (its modification time changes, as a tag write's does).
    paths += songs(tmp_path / "lib", 2, first=3)
    os.utime(paths[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    embedder.calls.clear()
    with EmbeddingCache(cache_path) as cache:
        second = {r.path: r for r in embed_songs(paths, cache=cache, jobs=1, embedder=embedder)}
        assert cache.hits == 2
    assert sorted(embedder.calls) == ["s0.wav", "s3.wav", "s4.wav"]
    np.testing.assert_array_equal(first[str(paths[1])].embedding, second[str(paths[1])].embedding)
    assert second[str(paths[1])].taggrams["MSD_musicnn"].dtype == np.float32


def test_unreadable_files_fail_alone(tmp_path, embedder):
    good = songs(tmp_path, 2)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00not audio" * 100)
    results = list(embed_songs([good[0], bad, good[1]], jobs=1, embedder=embedder))
    failures = [r for r in results if isinstance(r, EmbedFailure)]
    assert [f.path for f in failures] == [str(bad)] and "\n" not in failures[0].reason
    assert sum(isinstance(r, SongEmbedding) for r in results) == 2


def test_encoding_round_trips_and_damaged_rows_are_misses():
    song = SongEmbedding("x", np.ones((2, 200), np.float32), {"MSD_musicnn": np.zeros((2, 50), np.float32),
                                                              "MTT_musicnn": np.zeros((2, 50), np.float32)}, True)
    back = decode(encode(song), "y")
    assert back.path == "y" and back.short and np.array_equal(back.embedding, song.embedding)
    assert decode(b"garbage") is None and decode(encode(song)[:-20]) is None
    nan = SongEmbedding("x", np.full((2, 200), np.nan, np.float32), song.taggrams, False)
    assert decode(encode(nan)) is None
    assert back.not_music is None  # what a song embedded before the music check reads as
    speech = dataclasses.replace(song, not_music="speech")
    assert decode(encode(speech)).not_music == "speech"


def test_the_embedding_carries_the_music_check_classify_makes(tmp_path):
    """Silence is flagged as genrify classify flags it with the built-in model; a song is not."""
    import soundfile as sf

    from genrify.audio.synth import synthesize_song
    from genrify.classify.predict import classify
    from genrify.models.builtin import load_builtin

    sf.write(tmp_path / "silence.wav", np.zeros(22050 * 10, np.float32), 22050)
    sf.write(tmp_path / "song.wav", synthesize_song("jazz", 10.0, seed=2), 22050)
    found = {Path(r.path).name: r for r in embed_songs([tmp_path / "silence.wav", tmp_path / "song.wav"], jobs=1)}
    model = load_builtin()
    for name in ("silence.wav", "song.wav"):
        assert found[name].not_music == classify(tmp_path / name, model).not_music
    assert found["silence.wav"].not_music is not None and found["song.wav"].not_music is None


def test_a_damaged_cache_is_set_aside_and_another_kind_of_cache_is_refused(tmp_path):
    path = tmp_path / "emb.sqlite"
    (song,) = songs(tmp_path, 1)
    stored = SongEmbedding(str(song), np.ones((1, 200), np.float32),
                           {"MSD_musicnn": np.zeros((1, 50), np.float32), "MTT_musicnn": np.zeros((1, 50), np.float32)}, True)
    with EmbeddingCache(path) as cache:
        cache.put(song, stored)
    assert int.from_bytes(path.read_bytes()[68:72], "big") == APPLICATION_ID
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)
    path.write_bytes(data)
    lines: list[str] = []
    with EmbeddingCache(path, notify=lines.append) as cache:
        assert cache.enabled and cache.get(song) is None
    assert len(lines) == 1 and "embedding cache" in lines[0] and "set it aside" in lines[0]
    assert list(tmp_path.glob("emb.sqlite.damaged*"))
    # A results cache is genrify's too, but not this kind: refused, left as it was.
    results = tmp_path / "results.sqlite"
    with ResultCache(results, "m", {}) as r:
        r.put(song, {"genre": "rock"})
    before = results.read_bytes()
    with pytest.raises(ParameterError, match="genrify's results cache, not a genrify embedding cache"):
        EmbeddingCache(results)
    assert results.read_bytes() == before
    fresh = tmp_path / "fresh.sqlite"
    with EmbeddingCache(fresh) as cache:
        cache.put(song, stored)
    with pytest.raises(ParameterError, match="genrify's embedding cache, not a genrify results cache"):
        ResultCache(fresh, "m", {})
    with pytest.raises(ParameterError, match=r"a folder, not a genrify embedding cache; give a file name such as .*/embeddings\.sqlite$"):
        EmbeddingCache(tmp_path)


_KILLED_RUN = textwrap.dedent("""
    import sys
    from genrify.learn.embedcache import EmbeddingCache, embed_songs

    if __name__ == "__main__":
        cache = EmbeddingCache(sys.argv[1])
        for result in embed_songs(sys.argv[2:], cache=cache, jobs=2):
            print("stored", result.path, flush=True)
""")


def test_kill_9_while_embedding_loses_no_embedding_already_stored(tmp_path):
    paths = songs(tmp_path / "lib", 12, seconds=3.0)
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN)
    cache_path = tmp_path / "emb.sqlite"
    proc = subprocess.Popen([sys.executable, str(script), str(cache_path), *map(str, paths)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    stored = []
    try:
        for line in proc.stdout:
            stored.append(line.split(" ", 1)[1].strip())
            if len(stored) == 3:
                os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, mid-run
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and len(stored) == 3
    lines: list[str] = []
    with EmbeddingCache(cache_path, notify=lines.append) as cache:
        found = [p for p in map(str, paths) if cache.get(p) is not None]
    assert not lines  # not damaged
    assert set(stored) <= set(found) and len(found) < len(paths)
