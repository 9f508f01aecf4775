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
    from genrify.extract import extract_track
    from genrify.features import FeatureParams
    from genrify.library import Track
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
    from genrify.models.builtin import load_builtin
    from genrify.predict import classify
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
