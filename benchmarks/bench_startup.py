"""What one ``genrify classify`` costs a user: start-up, memory and the install's size.

Run from the repository root::

    .venv/bin/python benchmarks/bench_startup.py            # everything but the fresh install
    .venv/bin/python benchmarks/bench_startup.py --venv     # also a fresh core venv (about 2 min)

Measured in one run, each against a reference measured in the same run (a fresh Python that
imports numpy and does nothing: the floor any numpy program pays):

a. ``genrify classify SONG`` answered from the results cache, fresh process, median of 5.
   Target: at most 0.8 s wall.
b. A 30 s clip classified in a fresh process (no cache), median of 3. Target: at most 1.5 s.
c. Peak RSS of ``genrify classify`` (the whole process tree) on a 4-minute song, a 30 s clip and a
   one-hour file. Target: at most 350 MB each.
d. With ``--venv``: ``pip install`` of this checkout without extras into a fresh venv, its size on
   disk (target at most 400 MB), and ``genrify classify examples/`` there, with torch absent.
e. Where beets is installed: what loading the beets plugin adds to every ``beet`` command (beets
   imports each configured plugin at start), against beets' own imports in the same run, median of 7.

The songs are synthetic 44.1 kHz stereo mp3s (``genrify synth``), kept in ``bench-output/`` between
runs. Results go to ``bench-output/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_builtin import songs  # noqa: E402
from bench_extract import run_measured, timed_process  # noqa: E402

REPO = HERE.parent
GENRIFY = [sys.executable, "-m", "genrify"]
MB = 2**20


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def median_process(args: list[str], repeats: int) -> float:
    return statistics.median(timed_process(args) for _ in range(repeats))


def hour_file(work: Path, song: Path, seconds: float) -> Path:
    """A long mp3 made of ``song`` repeated (written once, kept)."""
    hour = work / f"startup-{seconds:g}s.mp3"
    if not hour.exists():
        import numpy as np
        import soundfile as sf

        from genrify.audio.decode import load

        clip = load(song, 44100)
        part = hour.with_suffix(".part.mp3")
        with sf.SoundFile(part, "w", samplerate=44100, channels=2, format="MP3") as f:
            for _ in range(int(np.ceil(seconds * 44100 / clip.size))):
                f.write(np.stack([clip, clip], axis=1))
        part.rename(hour)
    return hour


def du(path: Path) -> int:
    """Bytes on disk, as ``du`` counts them (allocated blocks, each hard-linked file once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for p in path.rglob("*"):
        st = p.lstat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def fresh_core_venv(results: dict[str, object]) -> None:
    """Install this checkout's core into a fresh venv, measure it and classify ``examples/`` there."""
    with tempfile.TemporaryDirectory(prefix="genrify-core-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        started = time.perf_counter()
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        install = time.perf_counter() - started
        size = du(venv)
        listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "freeze"], check=True,
                                capture_output=True, text=True).stdout
        torch_absent = "torch==" not in listed
        wall, rss, _ = run_measured([str(venv / "bin" / "genrify"), "classify", str(REPO / "examples"),
                                     "--no-cache", "--format", "json"])
    results.update(venv_mb=size / MB, venv_install_s=install, venv_torch_absent=torch_absent,
                   venv_examples_s=wall, venv_examples_rss_mb=rss / MB)
    print(f"d. core install: {size / MB:.0f} MB in a fresh venv (pip install {install:.0f} s), torch "
          f"{'absent' if torch_absent else 'PRESENT'}; classify examples/ there {wall:.2f} s, {rss / MB:.0f} MB")
    print(f"   target <= 400 MB: {verdict(size / MB <= 400 and torch_absent)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-output")
    parser.add_argument("--hour-seconds", type=float, default=3600.0)
    parser.add_argument("--venv", action="store_true", help="also measure a fresh core install (about 2 min)")
    args = parser.parse_args()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    song = songs(work / "builtin-4min-mp3", 1, 240.0, seed=11)[0]
    clip = songs(work / "builtin-30s-mp3", 1, 30.0, seed=12)[0]
    hour = hour_file(work, song, args.hour_seconds)
    results: dict[str, object] = {}

    floor = [sys.executable, "-c", "import numpy"]
    floor_s = median_process(floor, 5)
    floor_rss = run_measured(floor, interval=0.01)[1]
    results.update(floor_s=floor_s, floor_rss_mb=floor_rss / MB)
    print(f"reference: a fresh python importing numpy: {floor_s:.3f} s, {floor_rss / MB:.0f} MB")

    with tempfile.TemporaryDirectory(prefix="genrify-cache-") as tmp:
        cached = [*GENRIFY, "classify", str(song), "--cache-file", str(Path(tmp) / "results.sqlite")]
        timed_process(cached)  # fills the cache
        hit = median_process(cached, 5)
    results.update(cached_s=hit, a_ratio=hit / floor_s)
    print(f"a. classify from the cache: {hit:.3f} s ({hit / floor_s:.1f} x the reference)  "
          f"(target <= 0.8 s: {verdict(hit <= 0.8)})")

    fresh = median_process([*GENRIFY, "classify", str(clip), "--no-cache"], 3)
    results.update(clip_s=fresh, b_ratio=fresh / floor_s)
    print(f"b. a 30 s clip in a fresh process: {fresh:.3f} s ({fresh / floor_s:.1f} x the reference)  "
          f"(target <= 1.5 s: {verdict(fresh <= 1.5)})")

    base = [*GENRIFY, "classify", "--no-cache", "--format", "json"]
    peaks = {name: run_measured([*base, str(path)], interval=0.02)[1] / MB
             for name, path in (("4-minute song", song), ("30 s clip", clip), (f"{args.hour_seconds:g} s file", hour))}
    results.update(rss_mb=peaks)
    print("c. peak RSS of genrify classify: " + ", ".join(f"{k} {v:.0f} MB" for k, v in peaks.items())
          + f" (reference {floor_rss / MB:.0f} MB)")
    print(f"   target <= 350 MB each: {verdict(max(peaks.values()) <= 350)}")

    beets = "import confuse, beets.ui, beets.library, beets.plugins"
    try:
        alone = median_process([sys.executable, "-c", beets], 7)
        plugin = median_process([sys.executable, "-c", beets + "; import beetsplug.genrify"], 7)
    except subprocess.CalledProcessError:
        print("e. skipped: beets is not installed")
    else:
        results.update(beets_s=alone, beets_plugin_s=plugin)
        print(f"e. beets' own imports {alone:.3f} s; with genrify's plugin {plugin:.3f} s: it adds "
              f"{plugin - alone:.3f} s ({(plugin - alone) / alone:.0%} of beets' own) to every beet command")

    if args.venv:
        if shutil.which("pip") is None and not (Path(sys.executable).parent / "pip").exists():
            print("d. skipped: no pip here")
        else:
            fresh_core_venv(results)
    (work / "startup.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {work / 'startup.json'}")


if __name__ == "__main__":
    main()
