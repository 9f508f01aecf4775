"""Shared fixtures: small generated audio, and the real clips of ../shared where present."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile as sf
from helpers import (  # noqa: F401
    AUDIO_SUFFIXES,
    REAL,
    REPO,
    SHARED,
    real_clips,
    synth_store,
    tone,
    trained_model_file,
    write_with_av,
)


@pytest.fixture
def real_clip_paths() -> list[Path]:
    clips = real_clips()
    if not clips:
        pytest.skip(f"no real clips at {REAL}")
    return clips




@pytest.fixture
def write_audio(tmp_path: Path) -> Callable[..., Path]:
    """write_audio(name, seconds=2, sr=22050, channels=1, freq=440) -> path under tmp_path."""

    def _write(name: str, seconds: float = 2.0, sr: int = 22050, channels: int = 1, freq: float = 440.0) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = tone(seconds, sr, channels, freq)
        if path.suffix in (".m4a", ".opus"):
            write_with_av(path, data, sr)
        else:
            sf.write(path, data, sr)
        return path

    return _write




@pytest.fixture
def make_library(tmp_path: Path) -> Callable[..., Path]:
    """make_library(layout={genre: [names]}, seconds=3) -> a small MUSIC_DIR of generated tones."""

    def _make(layout: dict[str, list[str]], seconds: float = 3.0, root: str = "music") -> Path:
        music = tmp_path / root
        for g, (genre, names) in enumerate(sorted(layout.items())):
            for i, name in enumerate(names):
                path = music / genre / name
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, tone(seconds, freq=220.0 * (g + 1) + 10 * i, seed=i), 22050)
        return music

    return _make




@pytest.fixture(scope="session")
def small_store(tmp_path_factory) -> Path:
    """3 synthetic genres x 6 songs x 6 s, extracted."""
    return synth_store(tmp_path_factory.mktemp("small"), ("classical", "hiphop", "metal"), per_genre=6, seconds=6.0)


@pytest.fixture(scope="session")
def model_file(small_store, tmp_path_factory) -> Path:
    """A seed-cnn trained for two epochs on the small synthetic store, saved once for every test."""
    return trained_model_file(small_store, tmp_path_factory.mktemp("model") / "m.safetensors")


@pytest.fixture(scope="module")
def model(model_file):
    """The trained model of :func:`model_file`, loaded (a module may define its own ``model``)."""
    from genrify.models import modelfile

    return modelfile.load(model_file)


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has ended."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
