"""Does every model flag what is not music? The music check (:mod:`genrify.classify.musicness`) measured.

Run from the repository root (needs ``../shared/data``; without it, only the generated clips)::

    .venv/bin/python benchmarks/not_music.py

Measured, for the built-in model's segments (musicnn's features) and for a trained model's (genrify's
default decibel features), with the signal rules and the segment classifier (what genrify does;
``--density`` adds the ``MSD_musicnn`` density, switched off in genrify, as ``+density``: the built-in
model's own embeddings; for a trained model, the same segments decoded again and embedded, timed):

- **non-music flagged**: generated silence, near-silence, sines, square waves, white, pink and brown
  noise, random samples and click trains at random levels, rates and lengths (seeds that no fitting
  used), and the six real non-music clips of ``real/cc-excerpts`` (three LibriSpeech readers, a
  robin, a humpback whale, a dog); target at least 95 %;
- **GTZAN excerpts flagged**, each judged by a check fitted without its artist (artist-grouped folds;
  the threshold set inside the fitting folds by their own out-of-fold scores); target at most 5 %;
- **real music flagged**: the other clips of ``real/cc-excerpts`` and the 24 ``real/genre-samples``,
  never used for fitting; target 0;
- the time the check adds per song for a trained model (decoding the segments again and embedding them).

What the check is fitted on (never on a recording measured here): the GTZAN excerpts, genrify's
synthetic songs and synthetic sparse music (:func:`sparse_music_clip`: solo lines, plucked tunes,
ambient pads) as music; as non-music, the generator below with :data:`FIT_SEED` and
speech synthesised by ``espeak-ng`` (:func:`synthetic_speech`: random voices, languages, speeds and
pitches reading sentences of Python's own documentation, with room echo, band limits and background
noise added at random), :data:`SPEECH_CLIPS` clips. ``espeak-ng`` is needed to fit (``apt-get
install espeak-ng``), not to measure once the fitting set's features are cached.

``--write`` fits the shipped file on every GTZAN excerpt (``scripts/fit_musicness.py`` calls it).
Results go to ``bench-output/not_music.json``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SHARED = REPO.parent / "shared" / "data"
EXCERPTS = SHARED / "gtzan-excerpts"
CC = SHARED / "real" / "cc-excerpts"
SAMPLES = SHARED / "real" / "genre-samples"
NON_MUSIC = ("198-209-0000", "3436-172162-0000", "5703-47212-0000", "456440__inspectorj__bird-whistling-robin-single-13",
             "glacier-bay-humpback", "pibble")
#: Seeds of the generated non-music: fitting never sees the measuring ones.
FIT_SEED, MEASURE_SEED = 1_000, 2_000
#: Generated clips of each kind in the fitting set.
FIT_PER_KIND = 40
#: Seed and number of the synthetic speech clips (fitting only).
SPEECH_SEED, SPEECH_CLIPS = 3_000, 200
#: Seed and songs per genre of genrify's synthetic music (fitting only; the tests use other seeds).
SYNTH_SEED, SYNTH_PER_GENRE = 11, 3
#: Seed and clips per style of the sparse music (solo lines, plucked tunes, ambient pads; fitting only).
SPARSE_SEED, SPARSE_PER_STYLE = 4_000, 40
#: What each generated kind teaches the classifier (silence is the level rule's alone).
CLASS_OF = {"sine": "tone", "square": "tone", "white": "noise", "pink": "noise", "brown": "noise",
            "random-samples": "noise", "clicks": "clicks"}
#: The classifier's regularisation (scikit-learn's ``C``, on standardised inputs).
CLASSIFIER_C = 1.0
#: The classifier's threshold: this percentile of held-out GTZAN segments' probability of music.
CLASSIFIER_PERCENTILE = 2.0
KINDS = ("silence", "near-silence", "sine", "square", "white", "pink", "brown", "random-samples", "clicks")
EXPECTED = {"silence": "silence", "near-silence": "silence", "sine": "tone", "square": "tone", "white": "noise",
            "pink": "noise", "brown": "noise", "random-samples": "noise", "clicks": "clicks"}
#: Folds of the GTZAN excerpts, grouped by artist.
FOLDS = 5
#: The threshold: this percentile of held-out music's log densities.
PERCENTILE = 2.5
#: The rules: each measurement beyond this percentile of music segments.
RULE_PERCENTILE = 0.5
CACHE = REPO / "bench-output" / "not_music_cache.npz"


# --- the density's embedding and fit (benchmark only: genrify does not use the density) -------------

def fit_density(embedding: np.ndarray, *, components: int = 32, shrinkage: float | None = None) -> Any:
    """Fit a :class:`genrify.classify.musicness.MusicDensity` (threshold left at ``-inf``) on music
    embeddings ``(n, dim)``.

    The embeddings are projected on their ``components`` principal directions (a few hundred
    excerpts cannot fill 200 dimensions) and the covariance is shrunk towards a scaled identity
    (Ledoit-Wolf where ``shrinkage`` is ``None``).
    """
    from sklearn.covariance import LedoitWolf, ShrunkCovariance

    from genrify.classify.musicness import MusicDensity

    x = np.asarray(embedding, dtype=np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[: min(components, vt.shape[0])].T
    z = (x - mean) @ basis
    cov = (LedoitWolf() if shrinkage is None else ShrunkCovariance(shrinkage=shrinkage)).fit(z).covariance_
    _, logdet = np.linalg.slogdet(cov)
    return MusicDensity(mean=mean, components=basis, precision=np.linalg.inv(cov), logdet=float(logdet),
                        threshold=-np.inf)


def embed_file_segments(path: str | Path, song: Any) -> np.ndarray | None:
    """The density's embedding of a file's audio at each of ``song``'s segment starts (musicnn's
    3-second patches), or ``None`` where the file cannot be read again (the rules judge alone)."""
    from genrify.audio.segments import segment_at
    from genrify.errors import GenrifyError
    from genrify.models.taggers import MUSICNN_PARAMS, PATCH_FRAMES

    hop = MUSICNN_PARAMS.seconds_per_frame
    try:
        # No length limit here: the file passed it when the model's segments were read.
        patches = np.stack([segment_at(path, MUSICNN_PARAMS, round(float(s) / hop), PATCH_FRAMES, None)
                            for s in song.starts])
    except (GenrifyError, OSError, ValueError):
        return None
    return embed_patches(patches)


def embed_patches(patches: np.ndarray) -> np.ndarray:
    """The density's embedding (:data:`genrify.classify.musicness.EMBEDDING`) of musicnn patches
    ``(n, 96, 187)`` (bands, frames), on the packaged ONNX graph."""
    from genrify.classify.musicness import EMBEDDING
    from genrify.models import onnx

    x = np.ascontiguousarray(patches.transpose(0, 2, 1), dtype=np.float32)
    return np.asarray(onnx.tagger_graph(EMBEDDING[0]).run(x)[EMBEDDING[1]], dtype=np.float64)


# --- generated non-music ---------------------------------------------------------------------------


def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum 1/f**exponent, unit peak."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return x / np.max(np.abs(x))


def generate(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, int, dict[str, Any]]:
    """One generated non-music clip of ``kind``: ``(waveform, sample_rate, parameters)``."""
    sr = int(rng.choice([16000, 22050, 44100, 48000]))
    seconds = float(np.exp(rng.uniform(np.log(1.5), np.log(40.0))))
    n = int(seconds * sr)
    level = float(rng.uniform(-50.0, 0.0))  # peak dBFS
    t = np.arange(n) / sr
    info: dict[str, Any] = {"kind": kind, "sr": sr, "seconds": round(seconds, 2), "level": round(level, 1)}
    if kind == "silence":
        x = np.zeros(n)
        level = 0.0
    elif kind == "near-silence":
        level = float(rng.uniform(-110.0, -80.0))
        x = rng.standard_normal(n) / 4
    elif kind == "sine":
        freq = float(np.exp(rng.uniform(np.log(30.0), np.log(min(8000.0, sr / 2.5)))))
        x = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
        info["freq"] = round(freq, 1)
    elif kind == "square":
        freq = float(np.exp(rng.uniform(np.log(30.0), np.log(2000.0))))
        x = np.sign(np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)))
        info["freq"] = round(freq, 1)
    elif kind == "white":
        x = rng.standard_normal(n) / 4
    elif kind == "pink":
        x = _coloured(rng, n, 1.0)
    elif kind == "brown":
        x = _coloured(rng, n, 2.0)
    elif kind == "random-samples":
        x = rng.uniform(-1.0, 1.0, n)
    elif kind == "clicks":
        rate = float(np.exp(rng.uniform(np.log(0.5), np.log(20.0))))
        width = int(rng.integers(1, 8))
        x = np.zeros(n)
        jitter = rng.uniform(0, 0.3)
        for start in np.arange(rng.uniform(0, 1 / rate), seconds, 1 / rate):
            i = int((start + rng.uniform(-jitter, jitter) / rate) * sr)
            if 0 <= i < n - width:
                x[i : i + width] = rng.choice([-1.0, 1.0])
        info.update(rate=round(rate, 2), width=width)
    else:
        raise ValueError(kind)
    x = x / max(np.max(np.abs(x)), 1e-12) * 10 ** (level / 20) if kind != "silence" else x
    return x.astype(np.float32), sr, info


def generated(seed: int, per_kind: int) -> Iterator[tuple[str, np.ndarray, int, dict[str, Any]]]:
    """``per_kind`` clips of every kind: ``(name, waveform, rate, parameters)``."""
    rng = np.random.default_rng(seed)
    for kind in KINDS:
        for i in range(per_kind):
            x, sr, info = generate(kind, rng)
            yield f"{kind}-{seed}-{i}", x, sr, info


def write_generated(folder: Path, seed: int, per_kind: int) -> list[tuple[Path, dict[str, Any]]]:
    """Write the generated clips as float WAV files (so that quiet levels survive)."""
    import soundfile as sf

    out = []
    for name, x, sr, info in generated(seed, per_kind):
        path = folder / f"{name}.wav"
        sf.write(path, x, sr, subtype="FLOAT")
        out.append((path, info))
    return out


# --- synthetic speech (fitting only) ---------------------------------------------------------------

#: Modules whose documentation espeak-ng reads aloud: plain English prose of many kinds.
_TEXT_MODULES = ("json", "collections", "email", "argparse", "textwrap", "csv", "difflib", "string", "random",
                 "logging", "unittest", "pathlib", "subprocess", "threading", "decimal", "fractions", "heapq",
                 "bisect", "shutil", "tarfile", "zipfile", "http.client", "urllib.request", "smtplib", "calendar",
                 "datetime", "pickle", "copy", "typing", "dataclasses", "functools", "itertools", "os", "re")
#: Languages (their letter-to-sound rules and intonation) and voice variants espeak-ng reads with.
_LANGUAGES = ("en",) * 6 + ("en-us",) * 4 + ("en-gb-scotland", "en-gb-x-rp", "en-029", "fr", "de", "es", "it", "nl",
                                               "pt", "pl", "sv", "ru")
_VARIANTS = ("adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris",
             "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2", "gustave", "Henrique",
             "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee", "linda", "marcelo",
             "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike", "Mr", "Nguyen", "pablo", "paul",
             "pedro", "quincy", "rob", "robert", "steph", "steph2", "steph3", "Storm", "zac", "anika", "AnxiousAndy",
             "f1", "f2", "f3", "f4", "f5", "grandpa", "grandma", "klatt", "klatt2", "klatt3", "klatt4", "klatt5",
             "klatt6", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "norbert", "sandro", "shelby", "travis",
             "victor", "croak", "whisper", "whisperf")


def _sentences() -> list[str]:
    """Sentences of 4 to 40 words from the standard library's documentation."""
    import importlib
    import pydoc
    import re

    out = []
    for name in _TEXT_MODULES:
        for sentence in re.split(r"(?<=[.!?])\s+", pydoc.getdoc(importlib.import_module(name))):
            words = re.findall(r"[A-Za-z']+", sentence)
            if 4 <= len(words) <= 40:
                out.append(" ".join(words))
    return out


def espeak_version() -> str | None:
    """The installed espeak-ng's version line, or ``None`` where it is missing."""
    import shutil
    import subprocess

    if shutil.which("espeak-ng") is None:
        return None
    return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout.strip()


def speech_clip(rng: np.random.Generator, texts: list[str], tmp: Path) -> tuple[np.ndarray, int]:
    """One synthetic speech clip: 1-4 utterances in random voices with pauses, 3-25 s, then at random
    a room's echo, a band limit (telephone, old or 16 kHz recordings) and background noise, at a
    random level."""
    import subprocess

    import soundfile as sf

    sr = 22050  # espeak-ng's rate
    parts = []
    for _ in range(int(rng.integers(1, 5))):
        cmd = ["espeak-ng", "-v", f"{rng.choice(_LANGUAGES)}+{rng.choice(_VARIANTS)}",
               "-s", str(int(rng.uniform(110, 230))), "-p", str(int(rng.uniform(15, 85))), "-a", "150",
               "-g", str(int(rng.integers(0, 8))), "-w", str(tmp / "u.wav"), str(rng.choice(texts))]
        subprocess.run(cmd, check=True, capture_output=True)
        x, rate = sf.read(tmp / "u.wav", dtype="float64")
        if rate != sr:
            raise RuntimeError(f"espeak-ng wrote {rate} Hz, expected {sr}")
        parts += [x, np.zeros(int(rng.uniform(0.1, 0.9) * sr))]
    x = np.concatenate(parts)[: int(rng.uniform(3.0, 25.0) * sr)]
    if rng.random() < 0.5:
        rt60 = rng.uniform(0.1, 0.8)
        t = np.arange(int(rt60 * sr)) / sr
        ir = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
        ir[0] = 0.0
        x = x + np.convolve(x, ir * rng.uniform(0.1, 0.7) / np.sqrt((ir**2).sum()))[: x.size]
    if rng.random() < 0.3:
        spectrum = np.fft.rfft(x)
        f = np.fft.rfftfreq(x.size, 1 / sr)
        spectrum[(f > rng.uniform(3000, 8000)) | (f < rng.uniform(0, 300))] = 0
        x = np.fft.irfft(spectrum, x.size)
    if rng.random() < 0.5:
        noise = _coloured(rng, x.size, 1.0) if rng.random() < 0.5 else rng.standard_normal(x.size)
        noise /= np.std(noise)
        x = x + noise * np.sqrt(np.mean(x**2)) * 10 ** (-rng.uniform(10, 40) / 20)
    x = x / np.max(np.abs(x)) * 10 ** (rng.uniform(-35, -1) / 20)
    return x.astype(np.float32), sr


def synthetic_speech(cache: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The features of the :data:`SPEECH_CLIPS` speech clips, cached by their recipe (seed, number,
    espeak-ng's version, the features' names)."""
    import soundfile as sf

    version = espeak_version()
    keys = [f"speech/{SPEECH_SEED}/{i}/{_feature_key()}/{version}" for i in range(SPEECH_CLIPS)]
    if not all(f"{k}/{name}" in cache for k in keys for name in models()):
        if version is None:
            sys.exit("fitting needs espeak-ng for its synthetic speech: apt-get install espeak-ng")
        rng = np.random.default_rng(SPEECH_SEED)
        texts = _sentences()
        with tempfile.TemporaryDirectory() as tmp:
            for key in keys:
                x, sr = speech_clip(rng, texts, Path(tmp))
                path = Path(tmp) / "speech.wav"
                sf.write(path, x, sr, subtype="FLOAT")
                for name, f in features_of(path).items():
                    cache[f"{key}/{name}"] = f
    return [{name: cache[f"{k}/{name}"] for name in models()} for k in keys]


def synthetic_music(cache: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Features of genrify's synthetic songs (20 s, :data:`SYNTH_PER_GENRE` per genre), cached."""
    from genrify.audio.features import log_mel
    from genrify.audio.segments import cut_segments
    from genrify.audio.synth import GENRES, synthesize_song
    from genrify.classify import musicness

    out = []
    for genre in GENRES:
        for i in range(SYNTH_PER_GENRE):
            row = {}
            for name, (params, chunk) in models().items():
                key = f"synth/{SYNTH_SEED}/{genre}/{i}/{_feature_key()}/{name}"
                if key not in cache:
                    wave = synthesize_song(genre, 20.0, seed=SYNTH_SEED, index=i, sample_rate=params.sample_rate)
                    song = cut_segments(log_mel(wave, params), params, chunk, duration=20.0)
                    cache[key] = musicness.segment_features(song.segments, params)
                row[name] = cache[key]
            out.append(row)
    return out


# --- sparse music (fitting only) -------------------------------------------------------------------

SPARSE_STYLES = ("solo", "plucked", "ambient")


def sparse_music_clip(style: str, rng: np.random.Generator, sr: int = 22050) -> np.ndarray:
    """Music of a kind the GTZAN excerpts (dense, mixed, loud) hardly hold, so that the classifier
    does not learn "sparse" as "not music": ``solo`` a monophonic line (brass, reed or flute-like
    harmonics, vibrato, rests and breaths), ``plucked`` decaying notes and chords with silences,
    ``ambient`` slowly changing sustained pads with a quiet noise texture; 8-20 s, in a room."""
    seconds = float(rng.uniform(8.0, 20.0))
    n = int(seconds * sr)
    x = np.zeros(n)
    tonic = float(rng.uniform(45, 64))
    scale = np.array([0, 2, 3, 5, 7, 8, 10, 12]) if rng.random() < 0.5 else np.array([0, 2, 4, 5, 7, 9, 11, 12])

    def tone(f0: float, dur: float, tilt: float, vib: float, decay: float | None) -> np.ndarray:
        t = np.arange(int(dur * sr)) / sr
        phase = 2 * np.pi * f0 * (t + vib * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t) / (2 * np.pi * 5.5))
        k = np.arange(1, max(2, min(30, int(sr / 2.2 / f0))))
        y = (np.sin(np.outer(phase, k)) * k ** -tilt).sum(axis=1)
        env = np.minimum(1.0, t / rng.uniform(0.005, 0.08)) * np.minimum(1.0, (t[-1] - t) / 0.05 + 1e-3)
        if decay is not None:
            env *= np.exp(-t / decay)
        return y * env

    if style in ("solo", "plucked"):
        t = 0.0
        tilt = rng.uniform(0.6, 2.0)
        while t < seconds - 0.2:
            dur = float(rng.choice([0.15, 0.25, 0.5, 0.75, 1.0, 1.5]) * rng.uniform(0.9, 1.1))
            if rng.random() < 0.2:
                t += dur  # a rest
                continue
            degrees = [int(rng.integers(0, 8))] if style == "solo" or rng.random() < 0.6 else [0, 2, 4]
            for d in degrees:
                f0 = 440 * 2 ** ((tonic + scale[(d + int(rng.integers(0, 3))) % 8] - 69) / 12)
                y = tone(f0, dur if style == "solo" else min(dur * 2, seconds - t), tilt,
                         rng.uniform(0, 0.01) if style == "solo" else 0.0, None if style == "solo" else rng.uniform(0.2, 1.0))
                i = int(t * sr)
                x[i : i + y.size] += y[: n - i] / len(degrees)
            t += dur
    else:
        t = 0.0
        while t < seconds:
            dur = float(rng.uniform(2.0, 8.0))
            root = tonic + float(rng.choice([0, 3, 5, 7, 8, 10])) - 12
            for interval in (0, 7, 12, 16 if rng.random() < 0.5 else 15):
                y = tone(440 * 2 ** ((root + interval - 69) / 12) * rng.uniform(0.997, 1.003), dur + 1.0,
                         rng.uniform(1.5, 3.0), 0.0, None)
                y *= np.sin(np.pi * np.arange(y.size) / y.size)  # swell in and out
                i = int(t * sr)
                x[i : i + y.size] += y[: n - i]
            t += dur
        noise = _coloured(rng, n, rng.uniform(0.5, 1.5))
        x = x / np.max(np.abs(x)) + noise * 10 ** (-rng.uniform(15, 30) / 20)
    rt60 = rng.uniform(0.2, 2.5 if style == "ambient" else 1.2)
    tt = np.arange(int(rt60 * sr)) / sr
    ir = rng.standard_normal(tt.size) * np.exp(-6.9 * tt / rt60)
    ir[0] = 0.0
    x = x + np.convolve(x, ir * rng.uniform(0.1, 0.6) / np.sqrt((ir**2).sum()))[:n]
    return (x / np.max(np.abs(x)) * 10 ** (rng.uniform(-30, -1) / 20)).astype(np.float32)


def sparse_music(cache: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Features of :data:`SPARSE_PER_STYLE` :func:`sparse_music_clip` of each style, cached by recipe."""
    import soundfile as sf

    out = []
    rng = np.random.default_rng(SPARSE_SEED)
    keys = [f"sparse/{SPARSE_SEED}/{style}/{i}/{_feature_key()}" for style in SPARSE_STYLES
            for i in range(SPARSE_PER_STYLE)]
    if not all(f"{k}/{name}" in cache for k in keys for name in models()):
        with tempfile.TemporaryDirectory() as tmp:
            for key in keys:
                path = Path(tmp) / "sparse.wav"
                sf.write(path, sparse_music_clip(key.split("/")[2], rng), 22050, subtype="FLOAT")
                for name, f in features_of(path).items():
                    cache[f"{key}/{name}"] = f
    for k in keys:
        out.append({name: cache[f"{k}/{name}"] for name in models()})
    return out


# --- what the check reads ---------------------------------------------------------------------------


def models() -> dict[str, tuple[Any, int]]:
    """The two kinds of segments: the built-in model's and a default trained model's."""
    from genrify.audio.features import FeatureParams
    from genrify.defaults import CHUNK_FRAMES
    from genrify.models.taggers import MUSICNN_PARAMS, PATCH_FRAMES

    return {"builtin": (MUSICNN_PARAMS, PATCH_FRAMES), "trained": (FeatureParams(), CHUNK_FRAMES)}


@lru_cache(maxsize=1)
def _feature_key() -> str:
    """Names the feature set in cache keys: the features' names and revision, and the features of a
    fixed probe file as :func:`measure` computes them (decoding, resampling, segment choice, log-mel
    front end, features), so that a change anywhere on that path never reuses stale cached values."""
    import soundfile as sf

    from genrify.audio.segments import song_segments
    from genrify.classify import musicness

    rate = 44100
    t = np.arange(40 * rate) / rate
    noise = np.random.default_rng(0).standard_normal(t.size)
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise) * (t % 1 < 0.6)  # a tone, noise, pauses
    probe = []
    with tempfile.TemporaryDirectory(prefix="genrify-probe-") as tmp:
        path = Path(tmp) / "probe.wav"
        sf.write(str(path), wave.astype(np.float32), rate, subtype="PCM_16")
        for params, chunk in models().values():
            song = song_segments(path, params, chunk)
            probe.append(np.round(musicness.segment_features(song.segments, params), 4).tobytes())
    return hashlib.sha1(repr((musicness.FEATURES, FEATURE_REVISION)).encode() + b"".join(probe)).hexdigest()[:10]


#: Bump when :func:`genrify.classify.musicness.segment_features` computes differently under the same names.
FEATURE_REVISION = 1


def features_of(path: Path) -> dict[str, np.ndarray]:
    """The signal features of a file's segments for each kind of model."""
    from genrify.audio.segments import song_segments
    from genrify.classify import musicness

    out = {}
    for name, (params, chunk) in models().items():
        song = song_segments(path, params, chunk)
        out[name] = musicness.segment_features(song.segments, params)
    return out


def measure(path: Path, cache: dict[str, np.ndarray], density: bool = False) -> dict[str, np.ndarray]:
    """Signal features of the segments for each kind of model and, with ``density``, the embedding of
    each set of segments (for the built-in model: of its own segments; for a trained one: of its
    segments decoded again at musicnn's rate, timed), cached by content."""
    from genrify.audio.segments import song_segments
    from genrify.classify import musicness

    key = hashlib.sha1(path.read_bytes()).hexdigest()
    fkey = _feature_key()
    out = {}
    for name, (params, chunk) in models().items():
        # Every entry is keyed by the feature key: the embeddings come from the same segments.
        stem = f"{key}/{name}/{fkey}"
        if f"{stem}/features" not in cache or (density and f"{stem}/embedding" not in cache):
            song = song_segments(path, params, chunk)
            cache[f"{stem}/features"] = musicness.segment_features(song.segments, params)
            if density and name == "builtin":
                cache[f"{stem}/embedding"] = embed_patches(song.segments)
            elif density:
                t0 = time.perf_counter()
                cache[f"{stem}/embedding"] = embed_file_segments(path, song)
                cache[f"{stem}/seconds"] = np.array(time.perf_counter() - t0)
        out[f"{name}/features"] = cache[f"{stem}/features"]
        for what in ("embedding", "seconds"):
            if density and f"{stem}/{what}" in cache:
                out[f"{name}/{what}"] = cache[f"{stem}/{what}"]
    return out


def gtzan() -> list[tuple[Path, str]]:
    """Every GTZAN excerpt with its artist (``SOURCES.tsv``)."""
    with open(EXCERPTS / "SOURCES.tsv", newline="") as f:
        return [(EXCERPTS / row["file"], row["artist"] or row["file"]) for row in csv.DictReader(f, delimiter="\t")]


def artist_folds(artists: list[str], folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """A fold number for each item, no artist in two folds (largest artists first, to the emptiest fold)."""
    counts = Counter(artists)
    rng = np.random.default_rng(seed)
    order = sorted(counts, key=lambda a: (-counts[a], rng.random()))
    size = np.zeros(folds)
    fold_of = {}
    for a in order:
        fold_of[a] = int(np.argmin(size))
        size[fold_of[a]] += counts[a]
    return np.array([fold_of[a] for a in artists])


# --- fitting ----------------------------------------------------------------------------------------


class FittingSet:
    """What the check is fitted on besides the GTZAN excerpts: synthetic music, and synthetic
    non-music with the class each teaches (``{model name: features}`` per clip)."""

    def __init__(self, cache: dict[str, np.ndarray]) -> None:
        self.music = synthetic_music(cache) + sparse_music(cache)
        self.non_music: list[tuple[str, dict[str, np.ndarray]]] = [
            ("speech", f) for f in synthetic_speech(cache)]
        with tempfile.TemporaryDirectory() as tmp:
            for path, info in write_generated(Path(tmp), FIT_SEED, FIT_PER_KIND):
                if info["kind"] in CLASS_OF:
                    m = measure(path, cache)
                    self.non_music.append((CLASS_OF[info["kind"]], {n: m[f"{n}/features"] for n in models()}))


def fit_classifier(gtzan_features: list[dict[str, np.ndarray]], artists: list[str], extra: FittingSet,
                   threshold: bool = True) -> Any:
    """The segment classifier: a multinomial logistic regression (balanced classes, standardised
    :func:`genrify.classify.musicness.classifier_inputs`) on every kind of model's segments pooled; its
    threshold at :data:`CLASSIFIER_PERCENTILE` of the GTZAN segments' out-of-fold probability of
    music (artist-grouped folds, each fold's classifier fitted without those artists)."""
    from sklearn.linear_model import LogisticRegression

    from genrify.classify import musicness

    names = list(models())
    xs, ys = [], []
    for f in gtzan_features + extra.music:
        for n in names:
            xs.append(f[n])
            ys += ["music"] * len(f[n])
    for cls, f in extra.non_music:
        for n in names:
            xs.append(f[n])
            ys += [cls] * len(f[n])
    x = musicness.classifier_inputs(np.concatenate(xs))
    y = np.array(ys)
    center, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-9)
    lr = LogisticRegression(C=CLASSIFIER_C, max_iter=10_000, class_weight="balanced").fit((x - center) / scale, y)
    classifier = musicness.SegmentClassifier(classes=tuple(str(c) for c in lr.classes_), center=center, scale=scale,
                                             coef=lr.coef_.copy(), intercept=lr.intercept_.copy(), threshold=0.0)
    if threshold:
        folds = artist_folds(artists)
        held = []
        for k in range(FOLDS):
            inside = [i for i in range(len(artists)) if folds[i] != k]
            inner = fit_classifier([gtzan_features[i] for i in inside], [artists[i] for i in inside], extra,
                                   threshold=False)
            music = inner.classes.index("music")
            held += [inner.probabilities(gtzan_features[i][n])[:, music] for i in np.flatnonzero(folds == k)
                     for n in names]
        classifier.threshold = float(np.percentile(np.concatenate(held), CLASSIFIER_PERCENTILE))
    return classifier


def fit(embeddings: list[np.ndarray] | None, features: dict[str, list[np.ndarray]], artists: list[str],
        extra: FittingSet) -> Any:
    """Fit the check: the rules' thresholds beyond what any of the music does (see
    :func:`fit_rules`), the segment classifier (:func:`fit_classifier`) and, where ``embeddings``
    are given, the density on every segment's embedding, its threshold at :data:`PERCENTILE` of
    the songs' out-of-fold scores (artist-grouped folds)."""
    from genrify.classify import musicness

    if embeddings is not None:
        folds = artist_folds(artists)
        held = np.empty(len(embeddings))
        for k in range(FOLDS):
            inside = [e for e, f in zip(embeddings, folds, strict=True) if f != k]
            density = fit_density(np.concatenate(inside))
            for i in np.flatnonzero(folds == k):
                held[i] = np.median(density.score(embeddings[i]))
        density = fit_density(np.concatenate(embeddings))
        density.threshold = float(np.percentile(held, PERCENTILE))
    else:
        # The shipped file always carries a density; where it is not measured, the packaged one stays.
        packaged = musicness.MusicDensity.load()
        density = musicness.MusicDensity(mean=packaged.mean, components=packaged.components,
                                         precision=packaged.precision, logdet=packaged.logdet,
                                         threshold=packaged.threshold)
    density.rules = fit_rules({name: np.concatenate(f) for name, f in features.items()})
    per_song = [{name: features[name][i] for name in features} for i in range(len(artists))]
    density.classifier = fit_classifier(per_song, artists, extra)
    return density


def fit_rules(music: dict[str, np.ndarray]) -> Any:
    """The rules' thresholds from music segments' features (pooled over the kinds of model): each
    rule fires only beyond the most extreme :data:`RULE_PERCENTILE` % of music on each of its
    measurements (two per rule), so that music is left alone by construction."""
    from genrify.classify import musicness

    allf = np.concatenate(list(music.values()))
    col = {n: allf[:, i] for i, n in enumerate(musicness.FEATURES)}
    q = RULE_PERCENTILE
    return musicness.SignalRules(
        # Below anything music does, and never above -60 dB: quiet music must stay music.
        silence_level=float(min(np.percentile(col["level"], q) - 20.0, -60.0)),
        steady_spread=float(np.percentile(col["level_spread"], q)),
        steady_change=float(np.percentile(col["change"], q)),
        tone_peak_share=0.5,  # only names the reason (tone or noise) of a steady segment
        # Coherence alone sets music apart from noise; memory (under music's median) only keeps a
        # segment of a sustained chord, whose bands also move apart, from passing for noise.
        noise_memory=float(np.percentile(col["memory"], 50)),
        noise_coherence=float(np.percentile(col["coherence"], q)),
        clicks_quiet_share=float(np.percentile(col["quiet_share"], 100 - q)),
        clicks_burst=float(np.percentile(col["burst"], 100 - q)),
    )


def verdict(density: Any, m: dict[str, np.ndarray], name: str) -> str | None:
    """The song's reason (or ``None``) for one kind of model's segments (``name`` ending in
    ``+density``: with the density's judgement too)."""
    from genrify.classify import musicness

    name, _, with_density = name.partition("+")
    reasons = musicness.judge_features(m[f"{name}/features"], density)
    emb = m.get(f"{name}/embedding")
    if with_density and emb is not None and emb.ndim == 2:
        unlike = density.unlike(emb)
        reasons = [r if r is not None or not u else "unlike-music" for r, u in zip(reasons, unlike, strict=True)]
    return musicness.song_verdict(reasons)


def fit_on(music: list[dict[str, np.ndarray]], artists: list[str], extra: FittingSet, density: bool = False) -> Any:
    """:func:`fit` from measured songs (the density, with ``density``, on the built-in model's own
    embeddings)."""
    return fit([m["builtin/embedding"] for m in music] if density else None,
               {name: [m[f"{name}/features"] for m in music] for name in models()}, artists, extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=20, help="generated clips of each kind")
    parser.add_argument("--write", type=Path, help="fit on every GTZAN excerpt and write the check's file here")
    parser.add_argument("--density", action="store_true", help="also measure with the MSD_musicnn density")
    args = parser.parse_args()
    if not EXCERPTS.is_dir():
        sys.exit(f"needs the GTZAN excerpts at {EXCERPTS}")
    cache = dict(np.load(CACHE, allow_pickle=False)) if CACHE.is_file() else {}
    rows = gtzan()
    artists = [a for _, a in rows]
    music = [measure(p, cache, args.density) for p, _ in rows]
    real = [(p, measure(p, cache, args.density)) for p in sorted(CC.glob("*.ogg")) + sorted(SAMPLES.glob("*.mp3"))]
    with tempfile.TemporaryDirectory() as tmp:
        made = [(info, measure(p, cache, args.density))
                for p, info in write_generated(Path(tmp), MEASURE_SEED, args.per_kind)]
    extra = FittingSet(cache)
    CACHE.parent.mkdir(exist_ok=True)
    np.savez(CACHE, **cache)

    shipped = fit_on(music, artists, extra, args.density)
    if args.write:
        from genrify.models.taggers import MUSICNN_PARAMS

        classes = Counter(c for c, _ in extra.non_music)
        shipped.info = {
            "fitted_on": "294 GTZAN excerpts (../shared/data/gtzan-excerpts, see NOTICE) and "
                         f"{len(extra.music)} synthetic songs and sparse pieces as music; synthetic non-music: "
                         + ", ".join(f"{n} {c}" for c, n in classes.items())
                         + " clips (generated signals; espeak-ng speech)",
            "threshold": f"{PERCENTILE} th percentile of songs' out-of-fold median log densities, {FOLDS} artist-grouped folds",
            "rules": f"each measurement beyond the {RULE_PERCENTILE} % most extreme music segment",
            "classifier": f"multinomial logistic regression, C={CLASSIFIER_C}, balanced classes; threshold at the "
                          f"{CLASSIFIER_PERCENTILE} th percentile of GTZAN segments' out-of-fold probability of music "
                          f"({FOLDS} artist-grouped folds)",
            "params": MUSICNN_PARAMS.to_dict(),
        }
        shipped.save(args.write)
        print(f"wrote {args.write}")

    report: dict[str, Any] = {"rules": shipped.rules.to_dict(), "classifier_threshold": shipped.classifier.threshold}
    folds = artist_folds(artists)
    names = [*models(), *(f"{n}+density" for n in models() if args.density)]
    held_out = {}
    for k in range(FOLDS):
        inside = [i for i in range(len(music)) if folds[i] != k]
        held_out[k] = fit_on([music[i] for i in inside], [artists[i] for i in inside], extra, args.density)
    for name in names:
        # GTZAN: every excerpt judged by a check fitted without its artist.
        flagged_gtzan: list[str] = []
        for k in range(FOLDS):
            for i in np.flatnonzero(folds == k):
                v = verdict(held_out[k], music[i], name)
                if v:
                    flagged_gtzan.append(f"{rows[i][0].parent.name}/{rows[i][0].name}: {v}")
        by_kind: dict[str, list[str | None]] = defaultdict(list)
        for info, m in made:
            by_kind[info["kind"]].append(verdict(shipped, m, name))
        real_nm = {p.name: verdict(shipped, m, name) for p, m in real if p.name.split(".")[0] in NON_MUSIC}
        real_music = {p.name: verdict(shipped, m, name) for p, m in real if p.name.split(".")[0] not in NON_MUSIC}
        n_nm = sum(len(v) for v in by_kind.values()) + len(real_nm)
        caught = sum(v is not None for vs in by_kind.values() for v in vs) + sum(v is not None for v in real_nm.values())
        secs = [float(m[f"{name.split('+')[0]}/seconds"]) for _, m in real
                if name.endswith("+density") and f"{name.split('+')[0]}/seconds" in m]
        r = {
            "non_music_flagged": f"{caught}/{n_nm} = {caught / n_nm:.1%}",
            "generated": {k: f"{sum(v is not None for v in vs)}/{len(vs)} "
                             + ", ".join(f"{r} {c}" for r, c in Counter(map(str, vs)).most_common()) for k, vs in by_kind.items()},
            "real_non_music": real_nm,
            "gtzan_flagged": f"{len(flagged_gtzan)}/{len(music)} = {len(flagged_gtzan) / len(music):.1%}",
            "gtzan_flagged_list": flagged_gtzan,
            "real_music_flagged": f"{sum(v is not None for v in real_music.values())}/{len(real_music)}",
            "real_music_flagged_list": {k: v for k, v in real_music.items() if v},
        }
        if secs:
            r["extra_seconds_per_real_song"] = {"median": round(float(np.median(secs)), 3), "max": round(max(secs), 3)}
        report[name] = r
        print(f"== {name} model's segments" + ("" if "+" in name else " (rules and classifier: what genrify does)"))
        print(f"  non-music flagged: {r['non_music_flagged']}   (target >= 95 %)")
        for k, v in r["generated"].items():
            print(f"    {k:15s} {v}")
        for k, v in real_nm.items():
            print(f"    real {k[:40]:40s} {v}")
        print(f"  GTZAN excerpts flagged (artist-held-out): {r['gtzan_flagged']}   (target <= 5 %)")
        for line in flagged_gtzan:
            print(f"    {line}")
        print(f"  real music flagged: {r['real_music_flagged']}   (target 0) {r['real_music_flagged_list'] or ''}")
        if secs:
            print(f"  check's extra time per real song (decode again + embed): {r['extra_seconds_per_real_song']}")
    out = REPO / "bench-output" / "not_music.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"results in {out}")


if __name__ == "__main__":
    main()
