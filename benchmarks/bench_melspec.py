"""Is the numpy log-mel front end as fast as the torch one, and as equal as float32 allows?

For genrify's default parameters (22.05 kHz, 2048-point FFT, 128 bands, dB) and musicnn's (16 kHz,
512-point, 96 bands, ``log10p``), on a synthesized 4-minute song, times
:func:`genrify.audio.features.log_mel` (the whole waveform) and
:func:`~genrify.audio.features.log_mel_stream` (60 blocks) with ``backend="numpy"`` and
``backend="torch"``, round-robin (one call of each in turn, so that other load hits them alike),
after a warm-up; the figure is the median of the repeats in seconds. It also prints the largest
difference between the two backends' values and how many bins differ by more than 1e-4.

Then the peak memory (``tracemalloc``, numpy's allocations) of the numpy ``log_mel_stream`` of a
synthesized hour at musicnn's parameters, against the result's own size.

    .venv/bin/python benchmarks/bench_melspec.py            # ~1 minute on 2 cores
    .venv/bin/python benchmarks/bench_melspec.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads and FFT workers")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--no-hour", action="store_true", help="skip the hour-long memory check")
    args = parser.parse_args()

    import os

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)  # the numpy front end follows torch's count when torch is loaded

    from genrify.audio.features import FeatureParams, log_mel, log_mel_stream
    from genrify.audio.synth import synthesize_song
    from genrify.models.taggers import MUSICNN_PARAMS

    print(f"threads {args.threads}, {args.seconds:g} s of synthesized rock, median of {args.repeats}")
    for params in (FeatureParams(), MUSICNN_PARAMS):
        y = synthesize_song("rock", args.seconds, seed=1, sample_rate=params.sample_rate)
        blocks = np.array_split(y, 60)
        calls = {
            f"log_mel/{b}": (lambda b=b: log_mel(y, params, backend=b)) for b in ("numpy", "torch")
        } | {
            f"stream/{b}": (lambda b=b: log_mel_stream(blocks, params, backend=b)) for b in ("numpy", "torch")
        }
        results = {name: call() for name, call in calls.items()}  # warm-up, and the values compared
        times: dict[str, list[float]] = {name: [] for name in calls}
        names = list(calls)
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:
                start = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - start)
        for kind in ("log_mel", "stream"):
            a, b = results[f"{kind}/numpy"], results[f"{kind}/torch"]
            diff = np.abs(a - b)
            tn, tt = statistics.median(times[f"{kind}/numpy"]), statistics.median(times[f"{kind}/torch"])
            print(f"{params.scale:7s} {kind:8s} numpy {tn:.3f} s  torch {tt:.3f} s  numpy/torch {tn / tt:.2f}  "
                  f"max|diff| {diff.max():.2e}  bins >1e-4: {int((diff > 1e-4).sum())} of {diff.size}")

    if not args.no_hour:
        import tracemalloc

        rate = MUSICNN_PARAMS.sample_rate
        minute = synthesize_song("rock", 60.0, seed=2, sample_rate=rate)
        hour_blocks = (minute[i : i + rate * 10] for _ in range(60) for i in range(0, minute.size, rate * 10))
        tracemalloc.start()
        out = log_mel_stream(hour_blocks, MUSICNN_PARAMS, dtype=np.float16)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"an hour at musicnn's parameters, streamed: result {out.nbytes / 2**20:.1f} MB, "
              f"peak {peak / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
