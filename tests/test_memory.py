"""Memory stays bounded for long files: an hour costs little more than a minute."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf

PROBE = textwrap.dedent(
    """
    import os, resource, sys
    from genrify.audio.features import FeatureParams
    from genrify.collection.library import Track
    from genrify.store.extract import extract_track
    path, store = sys.argv[1], sys.argv[2]
    st = os.stat(path)
    result = extract_track(Track(path, "x", st.st_size, st.st_mtime_ns), store, FeatureParams())
    assert result.error is None, result.error
    print(result.frames, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """
)


def _write_noise(path: Path, seconds: int) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", 22050, 1, "PCM_16") as f:
        for _ in range(seconds // 60):
            f.write((0.1 * rng.standard_normal(22050 * 60)).astype(np.float32))


def _peak_mb(path: Path, store: Path) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(store)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    frames, peak = out.stdout.split()
    return int(frames), int(peak)


def test_one_hour_file_costs_little_more_memory_than_one_minute(tmp_path):
    hour, minute = tmp_path / "hour.wav", tmp_path / "minute.wav"
    _write_noise(hour, 3600)
    _write_noise(minute, 60)
    frames_hour, peak_hour = _peak_mb(hour, tmp_path / "s1")
    frames_minute, peak_minute = _peak_mb(minute, tmp_path / "s2")
    assert frames_hour == 1 + 3600 * 22050 // 512 and frames_minute == 1 + 60 * 22050 // 512
    # Decoding the hour at once would hold 317 MB of float32 samples (more before mixing and
    # resampling); block-wise decoding holds a few MB of audio plus the 40 MB float16 result.
    assert peak_hour - peak_minute < 150, (peak_hour, peak_minute)


BUILTIN_PROBE = textwrap.dedent(
    """
    import resource, sys
    from genrify.classify.predict import classify
    from genrify.models.builtin import load_builtin
    prediction = classify(sys.argv[1], load_builtin())
    print(prediction.segments, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """
)


def test_the_builtin_model_on_an_hour_costs_what_it_costs_on_a_minute(tmp_path):
    """Before segments were sampled and decoded by seeking, an hour took 1.65 GB against 0.33 GB."""
    hour, minute = tmp_path / "hour.wav", tmp_path / "minute.wav"
    _write_noise(hour, 3600)
    _write_noise(minute, 60)
    peaks = []
    for path in (hour, minute):
        out = subprocess.run([sys.executable, "-c", BUILTIN_PROBE, str(path)], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        segments, peak = map(int, out.stdout.split())
        assert segments == 8
        peaks.append(peak)
    assert peaks[0] - peaks[1] < 60, peaks


# --- decompression bombs, under an address-space cap ---------------------------------------------

#: Address space allowed to a probe: the built-in model's process peaks near 2.5 GB of it. Before
#: the limits, the 1 Hz wav alone wanted tens of GB (the cap turns that into a MemoryError).
BOMB_CAP_MB = 4096

BOMB_PROBE = textwrap.dedent(
    """
    import os, resource, sys
    cap = int(sys.argv[1]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    what, folder, limit = sys.argv[2], sys.argv[3], float(sys.argv[4])
    if what == "extract":
        from genrify.store.extract import extract
        summary = extract(folder, folder + ".store", jobs=1, max_duration=limit)
        for path, reason in sorted(summary.failed):
            print("failed", os.path.basename(path), reason)
        print("done", summary.done)
    else:
        from genrify.classify.modelref import ModelRef
        from genrify.classify.predict import Failure
        from genrify.classify.service import ClassifyOptions, classify_library
        from genrify.core.runner import LocalRunner
        files = sorted(os.path.join(folder, name) for name in os.listdir(folder))
        run = classify_library(files, ModelRef.builtin(), options=ClassifyOptions(max_duration=limit),
                               runner=LocalRunner(1))
        for r in sorted(run.results, key=lambda r: r.path):
            name = os.path.basename(r.path)
            print(f"failed {name} {r.error}" if isinstance(r, Failure) else f"answered {name} {r.segments}")
    """
)


def _bombs(folder: Path) -> Path:
    """Ten hours of flac silence (917 KB), a 2 MB wav at 1 Hz (11.6 days), and a real minute."""
    folder.mkdir(parents=True)
    block = np.zeros(8000 * 600, dtype=np.int16)
    with sf.SoundFile(folder / "ten hours.flac", "w", 8000, 1, "PCM_16") as f:
        for _ in range(60):
            f.write(block)
    with sf.SoundFile(folder / "one hertz.wav", "w", 1, 1, "PCM_16") as f:
        f.write(np.zeros(1_000_000, dtype=np.int16))
    _write_noise(folder / "minute.wav", 60)
    return folder


def _probe(what: str, folder: Path, limit: float) -> list[str]:
    out = subprocess.run([sys.executable, "-c", BOMB_PROBE, str(BOMB_CAP_MB), what, str(folder), str(limit)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.splitlines()


def test_extraction_refuses_bombs_with_one_line_each_and_goes_on(tmp_path):
    _bombs(tmp_path / "music" / "rock")
    assert _probe("extract", tmp_path / "music", 6 * 3600) == [
        "failed one hertz.wav sample rate 1 Hz: not music audio (genrify decodes 2000 Hz to 768000 Hz)",
        "failed ten hours.flac declares 10 h of audio, over the 6 h limit (--max-duration)",
        "done 1",
    ]
    # The limit is the caller's: a minute fails under a 30 s one, and is extracted under 2 minutes.
    (tmp_path / "short" / "rock").mkdir(parents=True)
    _write_noise(tmp_path / "short" / "rock" / "minute.wav", 60)
    assert _probe("extract", tmp_path / "short", 30) == [
        "failed minute.wav declares 60 s of audio, over the 30 s limit (--max-duration)", "done 0"]
    assert _probe("extract", tmp_path / "short", 120) == ["done 1"]


def test_classification_of_bombs_stays_within_a_memory_cap(tmp_path):
    folder = _bombs(tmp_path / "songs")
    assert _probe("classify", folder, 6 * 3600) == [
        "answered minute.wav 8",
        "failed one hertz.wav sample rate 1 Hz: not music audio (genrify decodes 2000 Hz to 768000 Hz)",
        "failed ten hours.flac declares 10 h of audio, over the 6 h limit (--max-duration)",
    ]
    # Allowed, the ten hours cost 8 sampled segments decoded by seeking, not ten hours of decoding.
    assert "answered ten hours.flac 8" in _probe("classify", folder, 11 * 3600)
