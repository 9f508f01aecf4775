"""Speed of the musicnn port per 30-second clip, against the original musicnn (TensorFlow).

For each model architecture (musicnn, vgg) and each torch thread count (1, 2), times per clip:
decoding + resampling + log-mel + patching (``preprocess_file``), the network on every patch
(``Tagger.run``), and their sum, as wall and CPU seconds; and, once, a fresh process's import +
weight loading. Clips are the
30-second mp3s of ``../shared/data/real/genre-samples`` (the original was timed on the same 24 and 10
GTZAN excerpts), or, where that folder is absent, generated songs. The original's figures are read
from ``../shared/musicnn/timing.txt`` when it exists (they are for ``MSD_musicnn``; the original was
not timed with vgg), and the ratio port / original is printed beside each figure.

    .venv/bin/python benchmarks/bench_musicnn.py              # about 1-2 minutes on 2 cores
    .venv/bin/python benchmarks/bench_musicnn.py --clips 3    # a smoke run
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from genrify.classify.musicnn_tags import preprocess_file
from genrify.models.musicnn import load_tagger

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TIMING = SHARED / "musicnn" / "timing.txt"
CLIPS = SHARED / "data" / "real" / "genre-samples"
MODELS = ("MSD_musicnn", "MSD_vgg")  # MSD_musicnn is the model the original was timed with


def original_figures(path: Path) -> dict[str, float]:
    """The original's seconds per clip from timing.txt (empty where absent or unreadable)."""
    if not path.is_file():
        return {}
    text = path.read_text()
    patterns = {
        "preprocessing": r"preprocessing batch_data[^\n]*?median ([\d.]+) s",
        "model": r"inference, [^\n]*?median ([\d.]+) s",
        "extractor": r"extract_features=False[^\n]*?then median ([\d.]+) s",
        "load": r"import \+ load model: ([\d.]+) s",
    }
    figures = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, text)
        if match:
            figures[key] = float(match.group(1))
    if "preprocessing" in figures and "model" in figures:
        figures["total"] = figures["preprocessing"] + figures["model"]
    return figures


def generated_clips(n: int, folder: Path) -> list[Path]:
    """``n`` generated 30-second songs at 44.1 kHz stereo (as the mp3s are), written as wav."""
    import numpy as np
    import soundfile as sf

    from genrify.audio.synth import GENRES, synthesize_song

    paths = []
    for i in range(n):
        mono = synthesize_song(GENRES[i % len(GENRES)], 30.0, seed=i, sample_rate=44100)
        path = folder / f"song{i}.wav"
        sf.write(path, np.stack([mono, 0.8 * mono], axis=1), 44100)
        paths.append(path)
    return paths


def load_seconds(model: str) -> float:
    """Wall time of a fresh process that imports genrify's musicnn and loads ``model``."""
    code = f"from genrify.models.musicnn import load_tagger; load_tagger({model!r})"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def time_model(model: str, clips: list[Path], threads: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per clip: preprocessing, network, and both (after a warm-up clip)."""
    torch.set_num_threads(threads)
    tagger = load_tagger(model)
    tagger.run(preprocess_file(clips[0]), features=False)  # warm-up: allocator, oneDNN primitives
    times: dict[str, list[tuple[float, float]]] = {"preprocessing": [], "model": [], "total": []}
    for clip in clips:
        start = time.perf_counter(), time.process_time()
        batch = preprocess_file(clip)
        middle = time.perf_counter(), time.process_time()
        tagger.run(batch, features=False)
        end = time.perf_counter(), time.process_time()
        for part, (a, b) in {"preprocessing": (start, middle), "model": (middle, end), "total": (start, end)}.items():
            times[part].append((b[0] - a[0], b[1] - a[1]))
    return {part: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for part, t in times.items()}


def ratio(port: float, original: float | None) -> str:
    if original is None:
        return ""
    return f"{port / original:5.2f} x original ({original:.3f} s)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=None, help="time at most this many clips")
    parser.add_argument("--timing", type=Path, default=TIMING, help="the original's timing.txt")
    args = parser.parse_args(argv)

    original = original_figures(args.timing)
    with tempfile.TemporaryDirectory() as tmp:
        if CLIPS.is_dir():
            clips = sorted(CLIPS.glob("*.mp3"))[: args.clips]
            source = f"{len(clips)} mp3 clips of {CLIPS} (44.1 kHz stereo, 29.7 s, 9 patches)"
        else:
            clips = generated_clips(args.clips or 6, Path(tmp))
            source = f"{len(clips)} generated 30 s songs (wav, 44.1 kHz stereo, 10 patches)"
        print(f"musicnn port: seconds per clip, median over {source}")
        start_load = os.getloadavg()[0]
        print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, load average {start_load:.1f} at start")
        if original:
            print(f"original: {args.timing} (MSD_musicnn, TensorFlow; 'total' = its batch_data + inference breakdown)")
        else:
            print(f"original: no figures ({args.timing} absent); the port's figures only")
        print()
        print(f"{'model':<12} {'threads':>7} {'part':<14} {'wall (s)':>9} {'cpu (s)':>8}   wall ratio")
        for model in MODELS:
            compared = model.endswith("musicnn")
            for threads in (1, 2):
                figures = time_model(model, clips, threads)
                for part in ("preprocessing", "model", "total"):
                    theirs = original.get(part) if compared else None
                    wall, cpu = figures[part]
                    print(f"{model:<12} {threads:>7} {part:<14} {wall:9.3f} {cpu:8.3f}   {ratio(wall, theirs)}")
            if compared and "extractor" in original:
                wall, cpu = figures["total"]
                print(f"{'':<12} {'':>7} {'(vs extractor)':<14} {wall:9.3f} {cpu:8.3f}   "
                      f"{ratio(wall, original['extractor'])}  [its extractor() call per clip, 2 threads]")
        torch.set_num_threads(2)
        load = load_seconds("MSD_musicnn")
        print(f"{'MSD_musicnn':<12} {'-':>7} {'import+load':<14} {load:9.3f} {'':>8}   {ratio(load, original.get('load'))}")
        end_load = os.getloadavg()[0]
        print(f"\nload average {end_load:.1f} at the end", end="")
        if max(start_load, end_load) > (os.cpu_count() or 1) - 0.5:
            # Other processes take cores: the wall times grow, the 2-thread ones most (each parallel
            # step waits for its slowest thread); 1-thread CPU seconds are the steadiest figure.
            print(": other work shared the cores, so the wall times are inflated (1-thread CPU time is the steadiest figure)")
        else:
            print()


if __name__ == "__main__":
    main()
