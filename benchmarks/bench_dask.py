"""Extraction on a Dask cluster against genrify's own process pool, on the same machine, in one run.

Run from the repository root::

    .venv/bin/python benchmarks/bench_dask.py            # 400 synthetic 30 s clips (wav, 22.05 kHz mono)
    .venv/bin/python benchmarks/bench_dask.py --quick    # 40 clips, a smoke run

Arms, alternated ``--repeat`` times so that a change in the machine's load hits both alike:

(a) ``genrify.store.extract.extract(..., runner=LocalRunner(W, in_process=False))``: the built-in forkserver pool of W
    processes, start-up included (as every run pays it);
(b) the same work through ``extract(..., runner=DaskRunner(client))`` on a Dask ``LocalCluster`` of
    W single-threaded worker processes, started once (its start-up is reported apart: a cluster's
    workers live across runs); this process records the results in the manifest, as
    ``genrify extract --scheduler`` does.

Both write a fresh store each time. Reported: tracks per second of each arm, the ratio (b)/(a)
(target >= 0.85), the cost of one track in worker-seconds, the client's own CPU per track (the
scheduler runs inside it here), and what those figures mean for 1 million tracks on 50 workers.
Results are printed and written to ``bench-output/dask.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_extract import synthesise


def cpu_seconds() -> float:
    """CPU time of this process (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_pool(music: Path, store: Path, workers: int) -> tuple[float, int, float]:
    """(a): wall seconds, tracks done, audio seconds.

    In a process of its own: a Dask nanny leaves variables in its parent's environment
    (``MALLOC_TRIM_THRESHOLD_``, ``OMP_NUM_THREADS``) that the pool's workers would inherit.
    Only ``extract()`` itself is timed, start-up of its pool included.
    """
    import subprocess

    shutil.rmtree(store, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS",
                                                             "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    done = subprocess.run([sys.executable, __file__, "--run-pool", str(music), str(store), str(workers)],
                          capture_output=True, text=True, check=True, env=env)
    wall, tracks, audio = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, tracks, audio


def _pool_main(music: str, store: str, workers: int) -> None:
    from genrify.store.extract import extract

    started = time.perf_counter()
    from genrify.core.runner import LocalRunner

    summary = extract(music, store, runner=LocalRunner(workers, in_process=False))
    print(json.dumps([time.perf_counter() - started, summary.done, summary.audio_seconds]))


def run_dask(music: Path, store: Path, client, batch_size: int) -> tuple[float, int, float, float]:
    """(b): wall seconds, tracks done, audio seconds, CPU seconds of this process (client + scheduler)."""
    from genrify.core.distributed import DaskRunner
    from genrify.store.extract import extract

    shutil.rmtree(store, ignore_errors=True)
    cpu0 = cpu_seconds()
    started = time.perf_counter()
    summary = extract(music, store, runner=DaskRunner(client, batch_size=batch_size))
    return time.perf_counter() - started, summary.done, summary.audio_seconds, cpu_seconds() - cpu0


def plan(per_track_s: float, cpu_per_task_s: float, seconds: float, batch_size: int, tracks: int = 1_000_000,
         workers: int = 50) -> dict[str, float]:
    """What the measured costs mean for ``tracks`` clips of ``seconds`` on ``workers`` single-core workers."""
    compute_h = tracks * per_track_s / 3600
    wall_h = compute_h / workers
    frames = int(seconds * 22050 / 512) + 1
    tracks_per_s = workers / per_track_s
    return {
        "tracks": tracks,
        "workers": workers,
        "clip_seconds": seconds,
        "batch_size": batch_size,
        "worker_hours": compute_h,
        "wall_hours_ideal": wall_h,
        "tracks_per_second": tracks_per_s,
        "tasks_per_second": tracks_per_s / batch_size,
        "task_seconds": per_track_s * batch_size,
        # client and scheduler together, of one core (they run in one process in this benchmark)
        "client_cpu_share": tracks_per_s / batch_size * cpu_per_task_s,
        "store_gb": tracks * frames * 128 * 2 / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="alternate the arms this many times")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-output")
    parser.add_argument("--quick", action="store_true", help="40 clips, 2 repeats: a smoke run")
    parser.add_argument("--run-pool", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_pool:
        return _pool_main(args.run_pool[0], args.run_pool[1], int(args.run_pool[2]))
    if args.quick:
        args.clips, args.repeat = 40, 2

    import distributed

    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    # The same folder name as bench_extract.py's wav set: the clips are shared where both have run.
    music = work / f"music-wav-22k-mono-{args.clips}x{args.seconds:g}"
    t = time.perf_counter()
    paths = synthesise(music, args.clips, args.seconds, "wav", 22050, 1, args.workers)
    print(f"{len(paths)} clips x {args.seconds:g} s ready in {time.perf_counter() - t:.1f} s ({music})")
    load_before = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
          " (1, 5, 15 min) before the run")

    t = time.perf_counter()
    # A cluster as the brief's users start one (`dask worker`), Dask's defaults untouched: the
    # workers' heap settings are genrify's business (genrify.core.distributed._tune_worker).
    cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    client.wait_for_workers(args.workers)
    cluster_start = time.perf_counter() - t
    print(f"Dask LocalCluster of {args.workers} single-threaded workers started in {cluster_start:.1f} s")
    # The scheduler and the nannies run in this process: their CPU while idle is a baseline per
    # second, apart from the CPU each task costs.
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    time.sleep(3.0)
    idle_cpu_per_s = (cpu_seconds() - cpu0) / (time.perf_counter() - t0)

    pool_runs: list[tuple[float, int, float]] = []
    dask_runs: list[tuple[float, int, float, float]] = []
    try:
        for i in range(args.repeat):
            pool_runs.append(run_pool(music, work / "store-pool", args.workers))
            dask_runs.append(run_dask(music, work / "store-dask", client, args.batch_size))
            (wa, na, _), (wb, nb, _, cpu) = pool_runs[-1], dask_runs[-1]
            first = " (first: Dask workers import torch)" if i == 0 else ""
            print(f"  round {i + 1}: pool {wa:6.2f} s {na / wa:6.1f} tracks/s | dask {wb:6.2f} s {nb / wb:6.1f} tracks/s"
                  f" | client CPU {cpu:.2f} s{first}")
            if na != len(paths) or nb != len(paths):
                raise SystemExit(f"a run did not extract every clip: pool {na}, dask {nb} of {len(paths)}")
    finally:
        client.close()
        cluster.close()
    load_after = os.getloadavg()

    # The first Dask round includes the workers' first imports (torch); steady state is the rest.
    steady = dask_runs[1:] or dask_runs
    pool_tps = statistics.median(n / w for w, n, _ in pool_runs)
    dask_tps = statistics.median(n / w for w, n, _, _ in steady)
    dask_first_tps = dask_runs[0][1] / dask_runs[0][0]
    ratio = dask_tps / pool_tps
    # One track's cost in worker-seconds: the wall time of a steady run times the workers, per track.
    per_track = statistics.median(w * args.workers / n for w, n, _, _ in steady)
    client_cpu = statistics.median(c / n for _w, n, _, c in steady)
    tasks = -(-len(paths) // args.batch_size)
    cpu_per_task = statistics.median(max(0.0, c - idle_cpu_per_s * w) / tasks for w, _n, _, c in steady)
    audio_s = dask_runs[0][2]
    clip = audio_s / len(paths)
    plans = [plan(per_track, cpu_per_task, clip, args.batch_size), plan(per_track, cpu_per_task, clip, 32),
             plan(per_track * 240 / clip, cpu_per_task, 240.0, args.batch_size)]
    print()
    print(f"(a) built-in pool, {args.workers} processes:       {pool_tps:7.1f} tracks/s (median of {len(pool_runs)})")
    print(f"(b) Dask, {args.workers} single-threaded workers: {dask_tps:7.1f} tracks/s (median of {len(steady)} warm runs;"
          f" first run {dask_first_tps:.1f})")
    print(f"(b)/(a) = {ratio:.2f}  (target >= 0.85: {'PASS' if ratio >= 0.85 else 'FAIL'})")
    print(f"(b) first run / (a) = {dask_first_tps / pool_tps:.2f} (Dask workers importing torch, like the pool's start-up)")
    print(f"cost of one {clip:.0f} s clip: {per_track * 1000:.1f} ms of one worker core"
          f" ({clip / per_track:.0f}x real time per core)")
    print(f"client + scheduler CPU: {cpu_per_task * 1000:.2f} ms per task of {args.batch_size} tracks,"
          f" plus {idle_cpu_per_s:.1%} of a core while idle ({client_cpu * 1000:.2f} ms per track all told)")
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    for p in plans:
        print(f"plan: {p['tracks']:,} clips of {p['clip_seconds']:.0f} s on {p['workers']} workers, batches of"
              f" {p['batch_size']}: {p['worker_hours']:.1f} worker-hours, {p['wall_hours_ideal']:.2f} h wall at full use,"
              f" {p['tracks_per_second']:.0f} tracks/s, {p['tasks_per_second']:.0f} tasks/s of {p['task_seconds']:.2f} s"
              f" (client + scheduler {p['client_cpu_share']:.0%} of a core), store {p['store_gb']:.0f} GB")
    out = {
        "clips": len(paths), "clip_seconds": audio_s / len(paths), "workers": args.workers,
        "batch_size": args.batch_size, "cluster_start_s": cluster_start,
        "pool_runs_s": [w for w, _, _ in pool_runs], "dask_runs_s": [w for w, _, _, _ in dask_runs],
        "pool_tracks_per_s": pool_tps, "dask_tracks_per_s": dask_tps, "dask_first_tracks_per_s": dask_first_tps,
        "ratio": ratio, "per_track_worker_s": per_track, "client_cpu_per_track_s": client_cpu,
        "client_cpu_per_task_s": cpu_per_task, "client_idle_cpu_per_s": idle_cpu_per_s,
        "load_before": load_before, "load_after": load_after, "plans": plans,
    }
    (work / "dask.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {work / 'dask.json'}")


if __name__ == "__main__":
    main()
