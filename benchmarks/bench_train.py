"""Training throughput, data-loading share and memory.

Run from the repository root::

    .venv/bin/python benchmarks/bench_train.py           # 200 and 2000 tracks
    .venv/bin/python benchmarks/bench_train.py --quick   # 60 and 240 tracks

It builds feature stores of synthetic 30 s tracks (random log-mel arrays written through the store's
own API: the network's speed does not depend on what the numbers mean), then measures, for
``seed-cnn`` and ``short-res`` on all cores:

- training throughput in chunks per second (128-frame chunks, batch 32, one epoch);
- the share of the training loop spent waiting for data (target <= 5 %);
- the peak RSS of a whole ``train`` process on the large store over the small one (target <= 1.2).

Results go to ``bench-output/train.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def make_store(path: Path, tracks: int, frames: int = 1292) -> Path:
    from genrify.store.store import FeatureStore, write_array

    if (path / "manifest.sqlite").exists():
        with FeatureStore.open(path) as store:
            if len(store) == tracks:
                return path
    rng = np.random.default_rng(0)
    with FeatureStore.create(path) as store:
        for i in range(tracks):
            genre = GENRES[i % len(GENRES)]
            # band means that differ by genre, so that training has something to learn
            mel = rng.normal(-40 + 2 * (i % len(GENRES)), 12, size=(128, frames)).astype(np.float32)
            track = f"/bench/{genre}/{genre}.{i:05d}.wav"
            store.record_done(path=track, genre=genre, size=1, mtime_ns=1, artist=None, duration=30.0,
                              frames=frames, array=write_array(store.root, track, mel))
    return path


def run_epoch(store: str, arch: str) -> None:
    """One epoch of training, as ``genrify train`` runs it; prints the epoch's figures as JSON."""
    from genrify.learn.config import TrainConfig
    from genrify.learn.training import train

    stats = []
    train(store, TrainConfig(arch=arch, epochs=1), on_epoch=stats.append)
    e = stats[0]
    print(json.dumps({"chunks_per_second": e.chunks_per_second, "data_share": e.data_seconds / e.train_seconds,
                      "train_seconds": e.train_seconds}))


def measured_run(store: Path, arch: str) -> dict[str, float]:
    import psutil

    proc = subprocess.Popen([sys.executable, __file__, "--run-epoch", str(store), "--arch", arch],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                peak = max(peak, p.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = peak / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-output")
    parser.add_argument("--run-epoch", help=argparse.SUPPRESS)
    parser.add_argument("--arch", default="seed-cnn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_epoch:
        return run_epoch(args.run_epoch, args.arch)
    if args.quick:
        args.small, args.large = 60, 240
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    small = make_store(work / f"train-store-{args.small}", args.small)
    large = make_store(work / f"train-store-{args.large}", args.large)
    print(f"stores of {args.small} and {args.large} synthetic 30 s tracks ready in {time.perf_counter() - t:.1f} s")
    results: dict[str, object] = {}
    for arch in ("seed-cnn", "short-res"):
        r = measured_run(small, arch)
        results[arch] = r
        print(f"[{arch}] {r['chunks_per_second']:.0f} chunks/s · waiting for data {r['data_share']:.1%} of the"
              f" training loop (target <= 5 %: {'PASS' if r['data_share'] <= 0.05 else 'FAIL'})"
              f" · peak RSS {r['peak_rss_mb']:.0f} MB ({args.small} tracks)")
    big = measured_run(large, "seed-cnn")
    ratio = big["peak_rss_mb"] / results["seed-cnn"]["peak_rss_mb"]  # type: ignore[index]
    results["seed-cnn-large"] = big
    results["rss_ratio"] = ratio
    print(f"[seed-cnn] {args.large} tracks: {big['chunks_per_second']:.0f} chunks/s, peak RSS {big['peak_rss_mb']:.0f} MB;"
          f" ratio to {args.small} tracks {ratio:.2f} (target <= 1.2: {'PASS' if ratio <= 1.2 else 'FAIL'})")
    (work / "train.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {work / 'train.json'}")


if __name__ == "__main__":
    main()
