"""Extraction speed and memory against the compute floor and a plain librosa loop.

Run from the repository root::

    .venv/bin/python benchmarks/bench_extract.py            # full protocol (200 + 2000 clips)
    .venv/bin/python benchmarks/bench_extract.py --quick    # 40 clips, a smoke run

For each data set (44.1 kHz stereo mp3, the common case in real collections; 22.05 kHz mono wav,
the GTZAN case) it measures, in the same run on the same files:

(a) the compute floor: decode + resample + log-mel of every file in a bare loop spread over the same
    number of processes, results discarded;
(b) ``genrify extract`` into a fresh store (the real command, start-up included);
(c) a plain reference: ``librosa.load(sr=22050)`` + melspectrogram + power_to_db in one process.

Each is timed as a fresh process, start-up and imports included, as a user would run it.

Targets: (b) <= 1.2 x (a); (b) >= 1.8 x faster than (c) on 2 cores; and the peak RSS of the whole
``genrify extract`` process tree over 10 x as many clips at most 1.15 x its peak over the base set.
Results are printed and written to ``bench-output/extract.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GENRIFY = [sys.executable, "-m", "genrify.cli"]


def synthesise(out: Path, n: int, seconds: float, fmt: str, sample_rate: int, channels: int, jobs: int) -> list[Path]:
    from genrify.audio.synth import GENRES, SynthSpec, song_paths, write_dataset

    spec = SynthSpec(genres=GENRES, per_genre=max(1, n // len(GENRES)), seconds=seconds, seed=7, fmt=fmt,
                     sample_rate=sample_rate, channels=channels)
    write_dataset(out, spec, jobs=jobs)  # writes only what a previous run did not
    return [path for path, _genre, _index in song_paths(out, spec)]


def _floor_init() -> None:
    import torch

    torch.set_num_threads(1)


def _floor_one(path: str) -> int:
    from genrify.audio import decode as audio, features

    return features.log_mel(audio.load(path)).shape[1]


def run_floor(paths: list[str], jobs: int) -> None:
    """(a): decode + resample + log-mel in a bare process pool, results discarded."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_floor_init) as pool:
        for _ in pool.map(_floor_one, paths, chunksize=4):
            pass


def run_reference(paths: list[str]) -> None:
    """(c): the plain librosa loop a user would write, in one process."""
    import librosa

    for p in paths:
        y, sr = librosa.load(p, sr=22050)
        librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128), ref=1.0)


def timed_process(args: list[str]) -> float:
    """Wall seconds of a fresh process, start-up and imports included, like a user's command."""
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def floor(paths: list[Path], jobs: int, listing: Path) -> float:
    listing.write_text("\n".join(map(str, paths)))
    return timed_process([sys.executable, __file__, "--run-floor", str(listing), "--jobs", str(jobs)])


def reference(paths: list[Path], listing: Path) -> float:
    listing.write_text("\n".join(map(str, paths)))
    return timed_process([sys.executable, __file__, "--run-reference", str(listing)])


def tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_measured(args: list[str], interval: float = 0.05) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes, whole process tree, sampled) and stdout of a command.

    Raises
    ------
    SystemExit
        The command failed.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(proc.pid))
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{output}")
    return wall, peak, output


def genrify_extract(music: Path, store: Path, jobs: int) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes, whole process tree) of one ``genrify extract`` run."""
    shutil.rmtree(store, ignore_errors=True)
    wall, peak, _ = run_measured([*GENRIFY, "extract", str(music), "--store", str(store), "--jobs", str(jobs)])
    return wall, peak


def replicate(music: Path, out: Path, copies: int) -> Path:
    """A library of ``copies`` x the clips, as hard links (distinct tracks, no extra disk)."""
    if out.exists():
        shutil.rmtree(out)
    for c in range(copies):
        for src in music.rglob("*.*"):
            dest = out / src.parent.name / f"copy{c:02d}" / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dest)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--scale", type=int, default=10, help="RSS check: this many times the clips (0 skips it)")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-output")
    parser.add_argument("--quick", action="store_true", help="40 clips of 10 s, RSS over 4x: a smoke run")
    parser.add_argument("--run-floor", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-reference", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_floor:
        return run_floor(args.run_floor.read_text().split("\n"), args.jobs)
    if args.run_reference:
        return run_reference(args.run_reference.read_text().split("\n"))
    if args.quick:
        args.clips, args.seconds, args.scale = 40, 10.0, 4
    from genrify.store.extract import default_jobs

    jobs = args.jobs or default_jobs()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"clips": args.clips, "seconds": args.seconds, "jobs": jobs, "sets": {}}
    print(f"genrify extraction benchmark: {args.clips} clips x {args.seconds:g} s, {jobs} processes")
    sets = {
        "mp3-44k-stereo": ("mp3", 44100, 2),
        "wav-22k-mono": ("wav", 22050, 1),
    }
    for name, (fmt, rate, channels) in sets.items():
        music = work / f"music-{name}-{args.clips}x{args.seconds:g}"
        t = time.perf_counter()
        paths = synthesise(music, args.clips, args.seconds, fmt, rate, channels, jobs)
        print(f"\n[{name}] {len(paths)} clips ready in {time.perf_counter() - t:.1f} s ({music})")
        listing = work / "files.txt"
        a = floor(paths, jobs, listing)
        b, rss = genrify_extract(music, work / "store", jobs)
        c = reference(paths, listing)
        audio_h = len(paths) * args.seconds / 3600
        row = {"floor_s": a, "extract_s": b, "reference_s": c, "extract_over_floor": b / a,
               "reference_over_extract": c / b, "peak_rss_mb": rss / 2**20, "audio_hours": audio_h}
        print(f"  (a) floor     {a:7.2f} s   {len(paths) * args.seconds / a:6.0f}x real time")
        print(f"  (b) extract   {b:7.2f} s   {len(paths) * args.seconds / b:6.0f}x real time   peak RSS {rss / 2**20:.0f} MB")
        print(f"  (c) librosa   {c:7.2f} s   {len(paths) * args.seconds / c:6.0f}x real time (1 process)")
        print(f"  (b)/(a) = {b / a:.2f}  (target <= 1.20: {'PASS' if b / a <= 1.2 else 'FAIL'})")
        print(f"  (c)/(b) = {c / b:.2f}  (target >= 1.80: {'PASS' if c / b >= 1.8 else 'FAIL'})")
        if args.scale and name == "wav-22k-mono":
            big = replicate(music, work / f"music-{name}-x{args.scale}", args.scale)
            b_big, rss_big = genrify_extract(big, work / "store-big", jobs)
            big_paths = sorted(big.rglob("*.*"))
            c_big = reference(big_paths, listing)
            row.update({"scaled_clips": len(big_paths), "scaled_extract_s": b_big, "scaled_reference_s": c_big,
                        "scaled_peak_rss_mb": rss_big / 2**20, "rss_ratio": rss_big / rss})
            print(f"  (b) over {len(big_paths)} clips: {b_big:.1f} s, peak RSS {rss_big / 2**20:.0f} MB;"
                  f" ratio {rss_big / rss:.2f} (target <= 1.15: {'PASS' if rss_big / rss <= 1.15 else 'FAIL'})")
            print(f"  (c) over {len(big_paths)} clips: {c_big:.1f} s; (c)/(b) = {c_big / b_big:.2f}"
                  " (start-up amortised over more work)")
            shutil.rmtree(big, ignore_errors=True)
            shutil.rmtree(work / "store-big", ignore_errors=True)
        results["sets"][name] = row  # type: ignore[index]
    (work / "extract.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {work / 'extract.json'}")


if __name__ == "__main__":
    main()
