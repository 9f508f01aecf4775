"""Tests of genrify.audio.synth: procedurally synthesised songs and the datasets made of them."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from genrify.audio import synth
from genrify.core.runner import LocalRunner
from genrify.errors import ParameterError
from genrify.audio.synth import (
    FORMATS,
    GENRES,
    SynthSpec,
    resolve_genres,
    song_paths,
    synthesize_song,
    write_dataset,
    write_song,
)

SR = 22050


def _spec(**kw: object) -> SynthSpec:
    args: dict[str, object] = {"genres": ("rock", "jazz"), "per_genre": 2, "seconds": 1.0, "seed": 3, "fmt": "wav"}
    args.update(kw)
    return SynthSpec(**args)  # type: ignore[arg-type]


def _log_bands(y: np.ndarray, sr: int = SR, bands: int = 32) -> np.ndarray:
    """Log power in log-spaced frequency bands over time: a crude log-mel spectrogram."""
    _, _, z = signal.stft(y, fs=sr, nperseg=1024, noverlap=512)
    power = np.abs(z) ** 2
    edges = np.unique(np.geomspace(2, power.shape[0] - 1, bands + 1).astype(int))
    return 10 * np.log10(np.add.reduceat(power, edges[:-1], axis=0) + 1e-10)


def _centroid(y: np.ndarray, sr: int = SR) -> float:
    freqs, _, z = signal.stft(y, fs=sr, nperseg=1024, noverlap=512)
    mag = np.abs(z)
    frames = (freqs[:, None] * mag).sum(0) / np.maximum(mag.sum(0), 1e-12)
    return float(frames.mean())


# --- synthesize_song -------------------------------------------------------------------------


def test_same_arguments_give_identical_audio() -> None:
    a = synthesize_song("jazz", 3.0, seed=5, index=2)
    b = synthesize_song("jazz", 3.0, seed=5, index=2)
    assert np.array_equal(a, b)
    for other in (
        synthesize_song("jazz", 3.0, seed=5, index=3),
        synthesize_song("jazz", 3.0, seed=6, index=2),
        synthesize_song("blues", 3.0, seed=5, index=2),
    ):
        assert other.shape == a.shape
        assert not np.allclose(other, a, atol=1e-3)


def test_stereo_is_deterministic_too() -> None:
    a = synthesize_song("reggae", 2.0, seed=1, index=4, sample_rate=16000, channels=2)
    b = synthesize_song("reggae", 2.0, seed=1, index=4, sample_rate=16000, channels=2)
    assert np.array_equal(a, b)


@pytest.mark.parametrize(("sample_rate", "channels", "seconds"), [(22050, 1, 2.5), (16000, 2, 2.0), (44100, 2, 0.5)])
def test_shape_dtype_and_level(sample_rate: int, channels: int, seconds: float) -> None:
    y = synthesize_song("pop", seconds, seed=0, index=1, sample_rate=sample_rate, channels=channels)
    n = round(seconds * sample_rate)
    assert y.dtype == np.float32
    assert y.shape == ((n,) if channels == 1 else (n, channels))
    assert np.isfinite(y).all()
    peak = float(np.abs(y).max())
    assert 0.3 - 1e-6 <= peak <= 0.95 + 1e-6
    assert float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) > 0.01
    if channels == 2:
        # Instruments are panned and the reverb differs per side, so the channels differ.
        assert not np.allclose(y[:, 0], y[:, 1], atol=1e-3)


@pytest.mark.parametrize("genre", GENRES)
def test_every_genre_renders_in_range(genre: str) -> None:
    peaks = []
    for index in range(3):
        y = synthesize_song(genre, 2.0, seed=11, index=index)
        assert np.isfinite(y).all()
        assert np.abs(y).max() <= 1.0
        peaks.append(float(np.abs(y).max()))
    assert all(0.3 - 1e-6 <= p <= 0.95 + 1e-6 for p in peaks)
    assert len(set(peaks)) == 3  # the peak level is drawn per song


def test_genres_are_learnable_from_spectra() -> None:
    # A nearest-centroid classifier on time-averaged log band energies (and their spread) must do
    # clearly better than chance on songs it has not seen: the genres differ in timbre and rhythm.
    feats, labels, train = [], [], []
    for g, genre in enumerate(GENRES):
        for index in range(8):
            bands = _log_bands(synthesize_song(genre, 4.0, seed=21, index=index))
            bands -= bands.mean()  # ignore overall loudness
            feats.append(np.concatenate([bands.mean(1), bands.std(1)]))
            labels.append(g)
            train.append(index < 4)
    x, y, is_train = np.array(feats), np.array(labels), np.array(train)
    mu, sd = x[is_train].mean(0), x[is_train].std(0) + 1e-9
    x = (x - mu) / sd
    centroids = np.array([x[is_train & (y == g)].mean(0) for g in range(len(GENRES))])
    test = ~is_train
    pred = np.argmin(((x[test][:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = float((pred == y[test]).mean())
    assert accuracy >= 2.0 / len(GENRES), accuracy


def test_loudness_and_brightness_alone_do_not_separate_classical_from_metal() -> None:
    # By design the furthest apart in loudness and brightness (quiet, dark strings vs distorted
    # guitars and cymbals); random peak level, master drive, filters and noise make them overlap.
    stats: dict[str, tuple[list[float], list[float]]] = {}
    for genre in ("classical", "metal"):
        rms, centroid = [], []
        for index in range(8):
            y = synthesize_song(genre, 5.0, seed=2, index=index)
            rms.append(float(np.sqrt(np.mean(y.astype(np.float64) ** 2))))
            centroid.append(_centroid(y))
        stats[genre] = (rms, centroid)
    for k in range(2):
        a, b = stats["classical"][k], stats["metal"][k]
        assert max(a) > min(b) and max(b) > min(a), (a, b)
    # ... while the songs are not all alike: the genres' mean brightness differs.
    assert np.mean(stats["metal"][1]) > np.mean(stats["classical"][1])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("genre", "polka"),
        ("genre", 3),
        ("seconds", 0),
        ("seconds", -2.5),
        ("seconds", 3600.5),
        ("seconds", math.nan),
        ("seconds", "5"),
        ("sample_rate", 7999),
        ("sample_rate", 192001),
        ("sample_rate", 22050.5),
        ("channels", 3),
        ("seed", -1),
        ("index", -4),
    ],
)
def test_bad_arguments_name_the_value(name: str, value: object) -> None:
    args: dict[str, object] = {"genre": "rock", "seconds": 1.0, name: value}
    genre = args.pop("genre")
    with pytest.raises(ParameterError) as info:
        synthesize_song(genre, **args)  # type: ignore[arg-type]
    assert name in str(info.value)
    assert f"{value!r}" in str(info.value)


def test_unknown_genre_lists_the_known_ones() -> None:
    with pytest.raises(ParameterError) as info:
        synthesize_song("polka")
    assert "polka" in str(info.value)
    assert all(g in str(info.value) for g in GENRES)


# --- resolve_genres, SynthSpec, song_paths ----------------------------------------------------


def test_resolve_genres() -> None:
    assert resolve_genres(3) == ("blues", "classical", "country")
    assert resolve_genres(10) == GENRES
    assert resolve_genres(["rock", "jazz", "rock"]) == ("rock", "jazz")
    for bad in (0, 11):
        with pytest.raises(ParameterError, match=str(bad)):
            resolve_genres(bad)
    with pytest.raises(ParameterError) as info:
        resolve_genres(["rock", "Jazz"])
    assert "'Jazz'" in str(info.value) and "jazz" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"per_genre": 0}, "per_genre must be >= 1, got 0"),
        ({"fmt": "aiff"}, "'aiff'"),
        ({"genres": ("rock", "zydeco")}, "'zydeco'"),
        ({"genres": ()}, "genres"),
        ({"seconds": 4000}, "got 4000"),
        ({"channels": 0}, "got 0"),
        ({"fmt": "mp3", "sample_rate": 96000}, "96000"),
        ({"fmt": "mixed", "sample_rate": 88200}, "88200"),
    ],
)
def test_bad_spec(kwargs: dict[str, object], shown: str) -> None:
    with pytest.raises(ParameterError) as info:
        _spec(**kwargs)
    assert shown in str(info.value)


def test_song_paths_layout(tmp_path: Path) -> None:
    rows = song_paths(tmp_path, _spec(per_genre=3))
    assert rows[0] == (tmp_path / "rock" / "rock.00000.wav", "rock", 0)
    assert [r[1:] for r in rows] == [("rock", 0), ("rock", 1), ("rock", 2), ("jazz", 0), ("jazz", 1), ("jazz", 2)]
    mixed = song_paths(tmp_path, _spec(genres=("pop",), per_genre=6, fmt="mixed"))
    assert [p.name for p, _, _ in mixed] == [
        "pop.00000.wav", "pop.00001.flac", "pop.00002.mp3", "pop.00003.ogg", "pop.00004.wav", "pop.00005.flac",
    ]


# --- write_song ----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips(tmp_path: Path, fmt: str, channels: int) -> None:
    spec = _spec(fmt=fmt, seconds=1.5, channels=channels)
    path = write_song(tmp_path / "blues" / f"blues.00007.{fmt}", "blues", 7, spec)
    assert path == tmp_path / "blues" / f"blues.00007.{fmt}"
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == SR
    assert data.shape[1] == channels
    expected = round(1.5 * SR)
    slack = 2 * 1152 if fmt == "mp3" else 0  # encoder padding may add a frame or two
    assert abs(data.shape[0] - expected) <= slack
    assert np.abs(data).max() > 0.1
    if fmt in ("wav", "flac"):
        # Lossless: the file holds the synthesised song, to 16-bit precision.
        song = synthesize_song("blues", 1.5, seed=3, index=7, channels=channels).reshape(expected, channels)
        assert np.abs(data - song).max() <= 1.5 / 32768
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_write_song_rejects_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"\.aiff"):
        write_song(tmp_path / "x.aiff", "rock", 0, _spec())
    assert not list(tmp_path.iterdir())


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []

    class BrokenFile:  # the disk fills up after the first bytes
        def __init__(self, file: object, *args: object, **kwargs: object) -> None:
            seen.append(Path(str(file)))
            Path(str(file)).write_bytes(b"partial")

        def __enter__(self) -> BrokenFile:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def write(self, data: object) -> None:
            raise OSError("disk full")

    monkeypatch.setattr(synth.sf, "SoundFile", BrokenFile)
    target = tmp_path / "rock.00000.wav"
    with pytest.raises(OSError, match="disk full"):
        write_song(target, "rock", 0, _spec())
    assert seen and seen[0].parent == tmp_path and seen[0].name.startswith(".")
    assert not list(tmp_path.iterdir())


# --- write_dataset -----------------------------------------------------------------------------


def test_write_dataset_writes_and_resumes(tmp_path: Path) -> None:
    spec = _spec()
    progress: list[Path] = []
    written = write_dataset(tmp_path / "out", spec, on_progress=progress.append)
    expected = [p for p, _, _ in song_paths(tmp_path / "out", spec)]
    assert written == expected
    assert progress == expected
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["jazz", "rock"]
    assert all(p.is_file() and p.parent.name == p.name.split(".")[0] for p in expected)

    # A second run skips what exists; after a deletion it writes only the missing song.
    stamps = {p: p.stat().st_mtime_ns for p in expected}
    assert write_dataset(tmp_path / "out", spec, on_progress=progress.append) == []
    expected[1].unlink()
    assert write_dataset(tmp_path / "out", spec) == [expected[1]]
    assert all(p.stat().st_mtime_ns == stamps[p] for p in expected if p != expected[1])
    assert not [p for p in (tmp_path / "out").rglob(".*")]


def test_parallel_dataset_has_the_same_bytes(tmp_path: Path) -> None:
    spec = _spec(genres=("disco", "metal", "hiphop"), per_genre=2, seconds=1.0)
    one = write_dataset(tmp_path / "one", spec, jobs=1)
    progress: list[tuple[int, Path]] = []
    two = write_dataset(tmp_path / "two", spec, jobs=2, on_progress=lambda p: progress.append((os.getpid(), p)))
    assert [p.relative_to(tmp_path / "two") for p in two] == [p.relative_to(tmp_path / "one") for p in one]
    assert sorted(p for _, p in progress) == sorted(two)
    assert {pid for pid, _ in progress} == {os.getpid()}  # called in this process
    for a, b in zip(one, two):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_write_dataset_rejects_bad_jobs(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="0"):
        write_dataset(tmp_path, _spec(), jobs=0)
    assert not list(tmp_path.iterdir())


class _PoolAsIfRemote(LocalRunner):
    """Workers treated as remote ones (absolute paths, a folder check), in a local pool."""

    remote = True


def test_write_dataset_through_any_runner_makes_the_same_files(tmp_path: Path, monkeypatch) -> None:
    spec = _spec(genres=("disco", "metal"), per_genre=2, seconds=1.0, fmt="mixed")
    one = write_dataset(tmp_path / "one", spec, jobs=1)
    pooled = write_dataset(tmp_path / "pool", spec, runner=LocalRunner(2, in_process=False))
    monkeypatch.chdir(tmp_path)
    progress: list[Path] = []
    remote = write_dataset("remote", spec, runner=_PoolAsIfRemote(2, in_process=False), on_progress=progress.append)
    assert [p.relative_to(tmp_path / "pool") for p in pooled] == [p.relative_to(tmp_path / "one") for p in one]
    # paths as given (relative here), though the workers were handed absolute ones
    assert remote == [Path("remote") / p.relative_to(tmp_path / "one") for p in one] and sorted(progress) == sorted(remote)
    for a, b, c in zip(one, pooled, remote, strict=True):
        assert a.read_bytes() == b.read_bytes() == (tmp_path / c).read_bytes(), a.name
    with pytest.raises(ParameterError, match="runner or jobs"):
        write_dataset(tmp_path / "both", spec, jobs=2, runner=LocalRunner(2))


@pytest.mark.parametrize("jobs", [1, 2])
def test_write_dataset_raises_a_songs_error_as_it_was_raised(tmp_path: Path, jobs: int) -> None:
    (tmp_path / "rock").write_text("a file where the genre's folder goes")
    with pytest.raises(FileExistsError):
        write_dataset(tmp_path, _spec(per_genre=3), jobs=jobs)
