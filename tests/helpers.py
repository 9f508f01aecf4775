"""Helpers the tests share: small generated audio, the real clips of ../shared where present, and a
synthetic feature store. Plain functions and constants (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from genrify.models.modelfile import GenreModel

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENRIFY_SHARED", REPO.parent / "shared"))
REAL = SHARED / "data" / "real"
AUDIO_SUFFIXES = {".mp3", ".ogg", ".wav", ".flac"}


def real_clips() -> list[Path]:
    """Every real clip in ../shared/data/real (empty where that folder is absent)."""
    if not REAL.is_dir():
        return []
    return sorted(p for p in REAL.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


def tone(seconds: float, sr: int = 22050, channels: int = 1, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A tone with a little noise: audible, deterministic, not trivially periodic."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    mono = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
    if channels == 1:
        return mono.astype(np.float32)
    return np.stack([mono * (1 - 0.3 * c) for c in range(channels)], axis=1).astype(np.float32)


def write_with_av(path: Path, data: np.ndarray, sr: int) -> None:
    """Encode with ffmpeg (PyAV): MP3 in .mp3, AAC in .m4a or Opus in .opus."""
    import av

    codec = {".m4a": "aac", ".mp3": "libmp3lame"}.get(path.suffix, "libopus")
    rate = 48000 if codec == "libopus" else sr
    if rate != sr:
        import soxr

        data = soxr.resample(data, sr, rate)
    mono = data if data.ndim == 1 else data.mean(axis=1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame_size = {"aac": 1024, "libmp3lame": 1152}.get(codec, 960)
        for start in range(0, mono.size, frame_size):
            chunk = np.ascontiguousarray(mono[start : start + frame_size], dtype=np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def synth_store(root: Path, genres: tuple[str, ...], per_genre: int, seconds: float, seed: int = 0) -> Path:
    """Synthesise ``root/music`` and extract it into ``root/store``; returns the store."""
    from genrify.audio.synth import SynthSpec, write_dataset
    from genrify.store.extract import extract

    write_dataset(root / "music", SynthSpec(genres=genres, per_genre=per_genre, seconds=seconds, seed=seed, fmt="wav"))
    extract(root / "music", root / "store", jobs=1)
    return root / "store"


def trained_model_file(store: Path, out: Path) -> Path:
    """A seed-cnn trained for two epochs on ``store``, saved to ``out`` (the tests' trained model)."""
    from genrify.learn.config import TrainConfig
    from genrify.learn.training import train
    from genrify.models import modelfile

    return modelfile.save(train(store, TrainConfig(epochs=2)).model, out)


def tone_file(path: Path, seconds: float = 1.0, sr: int = 22050) -> Path:
    """A tone written to ``path`` in the format its suffix names (mp3, m4a and opus through PyAV)."""
    import soundfile as sf

    data = tone(seconds, sr)
    if path.suffix[1:] in ("mp3", "m4a", "opus"):
        write_with_av(path, data, sr)
    else:
        sf.write(path, data, sr)
    return path


def untrained_model(genres: list[str], seed: int = 0) -> GenreModel:
    """A freshly initialised seed-cnn (what it answers is arbitrary but deterministic)."""
    import torch

    from genrify.audio.features import FeatureParams
    from genrify.models import GenreNetwork, build
    from genrify.models.modelfile import GenreModel
    from genrify.models.normalization import Normalization

    torch.manual_seed(seed)
    params = FeatureParams()
    norm = Normalization(np.full(params.n_mels, -40.0, np.float32), np.full(params.n_mels, 15.0, np.float32))
    network = GenreNetwork(build("seed-cnn", n_mels=params.n_mels, n_genres=len(genres)), *norm.tensors())
    return GenreModel(network=network.eval(), genres=list(genres), params=params, normalization=norm,
                                architecture="seed-cnn", architecture_config={}, chunk_frames=128)


@contextmanager
def running_server(app, backlog: int = 128) -> Iterator[tuple[str, int]]:
    """Serve ``app`` as ``genrify serve`` does (:func:`genrify.web.make_server`) on a free loopback
    port in a background thread; yields its URL and port."""
    from genrify.web import make_server

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY, as in serve()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    port = sock.getsockname()[1]
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def write_wav_with_info_genre(path: Path, data: np.ndarray, sr: int, genre: str, *, after_audio: bool = False) -> Path:
    """A 16-bit wav whose RIFF ``LIST``/``INFO`` chunk holds ``genre`` (``IGNR``) and no ID3 tag, as
    Windows, Audacity or libsndfile leave it. libsndfile puts the chunk before the audio; with
    ``after_audio`` it is appended after it instead, as some editors do."""
    import struct

    import soundfile as sf

    if not after_audio:
        with sf.SoundFile(path, "w", samplerate=sr, channels=1 if data.ndim == 1 else data.shape[1], subtype="PCM_16") as f:
            f.genre = genre
            f.write(data)
        return path
    sf.write(path, data, sr, subtype="PCM_16")
    text = genre.encode("utf-8") + b"\x00"
    info = b"INFO" + b"IGNR" + struct.pack("<I", len(text)) + text + b"\x00" * (len(text) % 2)  # even-sized chunks
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(b"LIST" + struct.pack("<I", len(info)) + info)
        size = f.tell() - 8
        f.seek(4)
        f.write(struct.pack("<I", size))
    return path


def write_wav_with_info_fields(path: Path, data: np.ndarray, sr: int, fields: list[tuple[bytes, bytes]], *,
                               list_size: int | None = None) -> Path:
    """A 16-bit wav with a RIFF ``LIST``/``INFO`` chunk after its audio holding ``fields`` (id, raw
    value bytes) exactly as given: text in any encoding, as other programs write it. ``list_size``
    declares another size for the ``LIST`` chunk than its real one (a damaged or hostile file)."""
    import struct

    import soundfile as sf

    sf.write(path, data, sr, subtype="PCM_16")
    info = b"INFO" + b"".join(key + struct.pack("<I", len(value)) + value + b"\x00" * (len(value) % 2)
                              for key, value in fields)
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(b"LIST" + struct.pack("<I", len(info) if list_size is None else list_size) + info)
        size = f.tell() - 8
        f.seek(4)
        f.write(struct.pack("<I", size))
    return path


def song(seconds: float, sr: int = 22050, *, index: int = 0, genre: str = "rock") -> np.ndarray:
    """A short synthesised song (drums, bass, chords, lead): music, where a test needs an answer that
    can be tagged. A bare tone is flagged "not music" and never tagged (see genrify.classify.musicness)."""
    from genrify.audio.synth import synthesize_song

    return synthesize_song(genre, seconds, index=index, sample_rate=sr).astype(np.float32)


#: The start of a child's program in which ``import torch`` fails, as where PyTorch is not installed
#: (genrify's own modules then import what the core install has); the rest of the program follows.
NO_TORCH = r"""
import importlib.abc, json, sys
from pathlib import Path

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is not installed ({name})")
        return None

sys.meta_path.insert(0, NoTorch())
"""


def nan_answer_for(path: str, monkeypatch: Any) -> None:
    """Make ``predict.predict_or_fail`` answer NaN for the file ``path`` (in this process only)."""
    from genrify.classify import predict

    real = predict.predict_or_fail

    def with_a_nan(song: Any, model: Any, *, path: str, **options: Any) -> Any:
        result = real(song, model, path=path, **options)
        if result.path == first:
            result.probabilities = result.probabilities * float("nan")
        return result

    first = path
    monkeypatch.setattr(predict, "predict_or_fail", with_a_nan)
