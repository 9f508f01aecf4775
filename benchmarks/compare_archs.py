"""Compare architectures on the same splits of a `genrify synth` collection.

Run from the repository root::

    .venv/bin/python benchmarks/compare_archs.py                      # 10 genres x 30 songs, 3 seeds
    .venv/bin/python benchmarks/compare_archs.py --per-genre 60 --seeds 5 --parallel 4 --device cuda

Every variant is trained once per seed, and a seed fixes the split (by song, stratified) for all
variants, so the per-seed differences are paired: a variant is compared with the reference on the
very same test songs. Each variant is ``ARCH[,key=value...]``; keys are training settings
(``optimizer``, ``lr``, ``epochs``, ...) or, prefixed with ``arch.``, the architecture's own
(``arch.widths=32:64:96:128``). ``musicnn-transfer`` trains a head on pretrained embeddings (computed
once per track and cached in the store). The first variant is the reference. Results go to
``bench-output/compare.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VARIANTS = ("seed-cnn", "short-res,optimizer=adam")


def parse_variant(text: str) -> tuple[str, dict, dict]:
    """``ARCH,key=value,...`` -> (arch, training overrides, architecture options)."""
    arch, *pairs = text.split(",")
    train_over: dict = {}
    arch_over: dict = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        value: object
        if ":" in raw:
            value = tuple(int(v) for v in raw.split(":"))
        else:
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        if key.startswith("arch."):
            arch_over[key[5:]] = value
        else:
            train_over[key] = value
    return arch, train_over, arch_over


def prepare(work: Path, genres: int, per_genre: int, seconds: float, jobs: int) -> Path:
    from genrify.audio.synth import GENRES, SynthSpec, write_dataset
    from genrify.store.extract import extract

    music, store = work / "music", work / "store"
    write_dataset(music, SynthSpec(genres=GENRES[:genres], per_genre=per_genre, seconds=seconds, seed=1, fmt="wav"), jobs=jobs)
    from genrify.core.runner import LocalRunner

    extract(music, store, runner=LocalRunner(jobs, in_process=False))
    return store


def run_one(store: str, variant: str, seed: int, device: str, threads: int) -> dict:
    import torch

    from genrify.learn.config import TrainConfig
    from genrify.learn.training import train

    torch.set_num_threads(threads)
    arch, train_over, arch_over = parse_variant(variant)
    config = dataclasses.replace(TrainConfig(arch=arch, arch_config=arch_over), **train_over)
    started = time.perf_counter()
    # every architecture through the one entry; its registry entry picks the trainer
    config = dataclasses.replace(config, seed=seed, group_by="song", device=device)
    run = train(store, config, runs=1, jobs=1).runs[0]
    split = run.split
    ev = run.evaluation
    return {
        "variant": variant, "seed": seed, "song_accuracy": ev.song_accuracy, "chunk_accuracy": ev.chunk_accuracy,
        "macro_f1": ev.macro_f1, "epochs": len(run.history), "best_epoch": run.best_epoch,
        "seconds": time.perf_counter() - started, "test_songs": len(split.test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--genres", type=int, default=10)
    parser.add_argument("--per-genre", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variant", action="append", help="ARCH[,key=value...]; repeat; the first is the reference")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (each in its own process)")
    parser.add_argument("--work", type=Path, default=REPO / "bench-output" / "compare-work")
    parser.add_argument("--out", type=Path, default=REPO / "bench-output" / "compare.json")
    args = parser.parse_args()
    variants = args.variant or list(DEFAULT_VARIANTS)
    from genrify.core.runner import default_jobs

    jobs = default_jobs()
    work = args.work / f"{args.genres}x{args.per_genre}x{args.seconds:g}"
    t0 = time.perf_counter()
    store = prepare(work, args.genres, args.per_genre, args.seconds, jobs)
    print(f"data ready in {time.perf_counter() - t0:.0f} s: {store}", flush=True)
    threads = max(1, jobs // args.parallel)
    tasks = [(str(store), v, seed, args.device, threads) for seed in range(args.seeds) for v in variants]
    results: list[dict] = []
    if args.parallel > 1:
        # spawn: a forked child cannot use CUDA once the parent has touched it
        with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            for r in pool.map(run_one, *zip(*tasks)):
                print(json.dumps(r), flush=True)
                results.append(r)
    else:
        for task in tasks:
            r = run_one(*task)
            print(json.dumps(r), flush=True)
            results.append(r)

    ref = variants[0]
    by = {(r["variant"], r["seed"]): r for r in results}
    print(f"\n{args.genres} genres x {args.per_genre} songs of {args.seconds:g} s, {args.seeds} seeds, device {args.device}")
    print(f"{'variant':48s} {'song acc':>16s} {'chunk acc':>16s} {'vs ' + ref[:12]:>18s} {'s/run':>7s}")
    summary = {}
    for v in variants:
        song = np.array([by[(v, s)]["song_accuracy"] for s in range(args.seeds)])
        chunk = np.array([by[(v, s)]["chunk_accuracy"] for s in range(args.seeds)])
        diff = song - np.array([by[(ref, s)]["song_accuracy"] for s in range(args.seeds)])
        secs = np.mean([by[(v, s)]["seconds"] for s in range(args.seeds)])
        summary[v] = {"song_mean": song.mean(), "song_std": song.std(), "chunk_mean": chunk.mean(),
                      "chunk_std": chunk.std(), "paired_diff_mean": diff.mean(), "paired_diff_std": diff.std(),
                      "seconds_per_run": secs}
        print(f"{v:48s} {song.mean():.3f} ± {song.std():.3f}    {chunk.mean():.3f} ± {chunk.std():.3f}"
              f"    {diff.mean():+.3f} ± {diff.std():.3f} {secs:7.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": results,
                                    "summary": summary}, indent=2, default=float))
    print(f"written {args.out}")


if __name__ == "__main__":
    sys.exit(main())
