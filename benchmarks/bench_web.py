"""Web API latency: one client, then eight at once, against ``genrify.web.serve`` on loopback.

Run from the repository root::

    .venv/bin/python benchmarks/bench_web.py                 # 40 requests per phase
    .venv/bin/python benchmarks/bench_web.py --requests 16   # quicker

The server runs in its own process (``genrify.web.serve``, its defaults: as many worker threads as
cores, at most 4) with a freshly initialised ``seed-cnn`` (its speed does not depend on what it has
learnt). Each request POSTs one synthetic 30 s mp3 (44.1 kHz stereo) to ``/api/classify`` with the
timeline, as the page does, and waits for the answer. Phases, after two warm-up requests:

1. one client, requests one after another;
2. eight clients at once (threads, one connection each), sharing the same number of requests, while
   a ninth pings ``/api/health`` to see whether the server stays responsive.

Targets: p95 with eight clients at most 8 x the p50 with one (requests queue for the worker pool;
beyond that something serialises or thrashes), and no errors. Results go to ``bench-output/web.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_classify import make_model

REPO = HERE.parent
SERVER = (
    "import sys; from genrify.web import serve; "
    "serve([sys.argv[1]], port=0, workers=int(sys.argv[2]) if sys.argv[2] != 'auto' else None)"
)


def song(path: Path, seconds: float) -> Path:
    """A synthetic song as a 44.1 kHz stereo mp3 (made once and kept)."""
    import soundfile as sf

    from genrify.audio.synth import synthesize_song

    if not path.exists():
        tmp = path.with_suffix(".part.mp3")
        sf.write(tmp, synthesize_song("rock", seconds, seed=11, sample_rate=44100, channels=2), 44100, format="MP3")
        tmp.rename(path)
    return path


def start_server(model: Path, workers: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(model), workers], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO)
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.search(r"on (http://\S+) ", line)
        if found:
            print(f"server: {line.strip()}")
            # Keep reading what the server prints (decoder warnings), so that its pipe never fills.
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, found.group(1)
    proc.kill()
    raise SystemExit(f"the server did not start: {proc.stdout.read() if proc.stdout else ''}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_phase(url: str, content: bytes, requests: int, clients: int) -> tuple[list[float], list[str], float]:
    """``requests`` POSTs shared by ``clients`` threads; latencies, errors, wall time."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    remaining = [requests]

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                started = time.perf_counter()
                try:
                    response = http.post("/api/classify", files={"file": ("song.mp3", content, "audio/mpeg")},
                                         params={"timeline": "true"})
                    ok = response.status_code == 200 and "genre" in response.json()
                    problem = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - started
                with lock:
                    if problem:
                        errors.append(problem)
                    else:
                        latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - started


def ping_while(url: str, stop: threading.Event, out: list[float]) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            started = time.perf_counter()
            http.get("/api/health")
            out.append(time.perf_counter() - started)
            stop.wait(0.1)


def parallel_speedup(threads: int) -> float:
    """How much faster ``threads`` threads hash than one (about ``threads`` on a quiet machine).

    The latency ratio below depends on free cores: printed beside it, this tells a busy machine
    from a slow server.
    """
    import hashlib

    data = os.urandom(16 * 2**20)

    def rate(k: int) -> float:
        def work() -> None:
            for _ in range(4):
                hashlib.sha256(data).digest()

        ts = [threading.Thread(target=work) for _ in range(k)]
        started = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return 4 * k / (time.perf_counter() - started)

    return rate(threads) / rate(1)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    a = np.asarray(values)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40, help="requests per phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the song")
    parser.add_argument("--workers", default="auto", help="server worker threads (default: serve's own)")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-output")
    args = parser.parse_args()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    model = make_model(work / "bench-model.safetensors")
    mp3 = song(work / f"web-song-{args.seconds:g}s.mp3", args.seconds)
    content = mp3.read_bytes()
    print(f"genrify web benchmark: {args.seconds:g} s mp3 ({len(content) / 2**20:.2f} MB), {os.cpu_count()} cores, "
          f"{args.requests} requests per phase")
    cores = os.cpu_count() or 1
    speedup = parallel_speedup(cores)
    print(f"CPU check: {cores} threads hash {speedup:.2f}x as fast as 1 (a quiet machine: about {cores})")
    proc, url = start_server(model, args.workers)
    try:
        import httpx

        workers = httpx.get(f"{url}/api/health").json()["workers"]
        warm, warm_errors, _ = run_phase(url, content, 2, 1)
        if warm_errors:
            raise SystemExit(f"warm-up failed: {warm_errors[0]}")
        one, one_errors, one_wall = run_phase(url, content, args.requests, 1)
        pings: list[float] = []
        stop = threading.Event()
        pinger = threading.Thread(target=ping_while, args=(url, stop, pings))
        pinger.start()
        many, many_errors, many_wall = run_phase(url, content, args.requests, args.clients)
        stop.set()
        pinger.join()
    finally:
        stop_server(proc)
    a, b, h = percentiles(one), percentiles(many), percentiles(pings)
    ratio = b["p95"] / a["p50"]
    errors = len(one_errors) + len(many_errors)
    print(f"server workers: {workers}")
    print(f"1 client : p50 {a['p50'] * 1000:6.0f} ms  p95 {a['p95'] * 1000:6.0f} ms  "
          f"{len(one) / one_wall:5.2f} songs/s  ({len(one)} ok, {len(one_errors)} errors)")
    print(f"{args.clients} clients: p50 {b['p50'] * 1000:6.0f} ms  p95 {b['p95'] * 1000:6.0f} ms  "
          f"{len(many) / many_wall:5.2f} songs/s  ({len(many)} ok, {len(many_errors)} errors)")
    print(f"/api/health under load: p50 {h['p50'] * 1000:.1f} ms, p95 {h['p95'] * 1000:.1f} ms, max {h['max'] * 1000:.1f} ms"
          f" ({len(pings)} pings)")
    print(f"p95({args.clients} clients) / p50(1 client) = {ratio:.2f}  (target <= 8: {'PASS' if ratio <= 8 else 'FAIL'})")
    print(f"errors = {errors}  (target 0: {'PASS' if errors == 0 else 'FAIL'})")
    for e in (one_errors + many_errors)[:5]:
        print(f"  {e}")
    results = {"song_seconds": args.seconds, "song_bytes": len(content), "requests": args.requests,
               "clients": args.clients, "workers": workers, "cores": cores, "cpu_parallel_speedup": speedup,
               "one_client": {**a, "songs_per_s": len(one) / one_wall},
               "many_clients": {**b, "songs_per_s": len(many) / many_wall},
               "health_under_load": h, "ratio_p95_many_over_p50_one": ratio, "errors": errors}
    (work / "web.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {work / 'web.json'}")
    if ratio > 8 or errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
