"""The built-in genre model's speed and memory on whole songs and libraries.

Run from the repository root::

    .venv/bin/python benchmarks/bench_builtin.py            # the full protocol
    .venv/bin/python benchmarks/bench_builtin.py --quick    # 20 songs, a 10-minute long file

Measured in one run, on the same files (synthetic songs written as 44.1 kHz stereo mp3):

a. One 4-minute song, warm process: the built-in model's classification (sampled segments, decoded
   by seeking) against decoding and resampling the whole file alone (``genrify.audio.decode.load`` at the
   model's 16 kHz), median of 5. Target: at most 3 x.
b. Peak RSS of ``genrify classify`` (a fresh process, the whole process tree) on a one-hour file
   against a 30 s file. Target: at most 1.3 x.
c. 100 four-minute songs with ``genrify classify`` (fresh process, no cache): the default against
   every segment (``--max-segments 0``, what genrify did before). Target: at least 5 x the
   throughput.
d. ``genrify tags``' work on the 4-minute song (both taggers, warm process) against decoding it
   (as a.). Target: at most 4 x. The command's wall time, start-up included, is printed too.
e. Where one song's time goes (one process, one thread, mean over up to 10 songs of the library):
   decoding, resampling, the log-mel features, the two taggers (ONNX Runtime), the genre head and
   the music check, as shares of the whole classification.

(c) also has an absolute target: at least 3 songs/s on 2 cores (10,000 songs within the hour).

Results go to ``bench-output/builtin.json``.
"""

from __future__ import annotations

import argparse
import os
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_extract import run_measured, timed_process

REPO = HERE.parent
GENRIFY = [sys.executable, "-m", "genrify"]


def songs(folder: Path, n: int, seconds: float, seed: int, distinct: int = 20) -> list[Path]:
    """``n`` songs of ``seconds`` as 44.1 kHz stereo mp3 (kept between runs): ``distinct`` synthetic
    songs (``genrify synth``: about 10 s of compute each for 4 minutes), and the rest made from them,
    each a synthetic song started at another point (rotated by a different number of seconds) and encoded
    again, so that every file holds different audio and costs a whole decode."""
    import numpy as np
    import soundfile as sf

    from genrify.audio.synth import GENRES, SynthSpec, song_paths, write_dataset

    made = min(n, distinct)
    spec = SynthSpec(genres=GENRES, per_genre=max(1, -(-made // len(GENRES))), seconds=seconds, seed=seed, fmt="mp3",
                     sample_rate=44100, channels=2)
    write_dataset(folder, spec, jobs=os.cpu_count() or 1)
    sources = [p for p, _g, _i in song_paths(folder, spec)][:made]
    out = list(sources)
    for i in range(made, n):
        path = folder / "rotated" / f"song-{i:04d}.mp3"
        if not path.exists():
            audio, rate = sf.read(sources[i % made], dtype="float32")
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_suffix(".part.mp3")
            sf.write(part, np.roll(audio, int(rate * (7 + 13 * i) % len(audio)), axis=0), rate, format="MP3")
            part.rename(path)
        out.append(path)
    return out


def median_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm up: imports, filter banks, first-call allocations
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def stages(paths: list[Path], model: object) -> dict[str, float]:
    """Seconds per song of each stage of ``classify`` (one process, one thread), from a profile."""
    import cProfile
    import pstats

    from genrify.audio import melspec
    from genrify.classify.predict import classify
    from genrify.models import onnx

    threads = melspec.compute_threads
    melspec.compute_threads = onnx.compute_threads = lambda: 1  # type: ignore[assignment]
    try:
        classify(paths[0], model)  # warm: sessions, filter banks
        profile = cProfile.Profile()
        profile.enable()
        for path in paths:
            classify(path, model)
        profile.disable()
    finally:
        melspec.compute_threads = onnx.compute_threads = threads  # type: ignore[assignment]
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]

    def cumulative(module: str, name: str) -> float:
        return sum(v[3] for (file, _line, fn), v in stats.items() if file.endswith(module) and fn == name)

    n = len(paths)
    decode = cumulative("audio/decode.py", "_soundfile_blocks") + cumulative("audio/decode.py", "_av_blocks")
    resample = cumulative("audio/decode.py", "_resample_blocks") - decode
    taggers = cumulative("models/onnx.py", "run")
    head = cumulative("models/builtin.py", "logits") - taggers
    return {
        "whole": cumulative("classify/predict.py", "classify") / n,
        "decode": decode / n,
        "resample": max(resample, 0.0) / n,
        "features": cumulative("audio/melspec.py", "power_mel") / n,
        "taggers": taggers / n,
        "head": max(head, 0.0) / n,
        "music check": cumulative("classify/musicness.py", "check_song") / n,
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=100)
    parser.add_argument("--hour-seconds", type=float, default=3600.0)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-output")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.songs, args.hour_seconds = 20, 600.0
    import torch

    from genrify.audio import decode as audio
    from genrify.classify.predict import classify
    from genrify.models.builtin import TAGGER_NAMES, load_builtin
    from genrify.classify.musicnn_tags import tag_song
    from genrify.models.musicnn import load_tagger
    from genrify.models.taggers import MUSICNN_PARAMS

    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"songs": args.songs, "threads": torch.get_num_threads()}
    library = songs(work / "builtin-4min-mp3", args.songs, 240.0, seed=11)
    song = library[0]
    print(f"built-in model benchmark: {len(library)} songs of 4 min (44.1 kHz stereo mp3)")

    model = load_builtin()
    decode = median_seconds(lambda: audio.load(song, MUSICNN_PARAMS.sample_rate))
    answer = median_seconds(lambda: classify(song, model))
    results.update(decode_s=decode, classify_s=answer, a_ratio=answer / decode)
    print(f"a. 4-minute mp3: decode + resample {decode:.3f} s, built-in classification {answer:.3f} s")
    print(f"   ratio = {answer / decode:.2f}  (target <= 3.00: {verdict(answer / decode <= 3)})")

    taggers = [load_tagger(n) for n in TAGGER_NAMES]
    tagging = median_seconds(lambda: tag_song(taggers, song))
    tags_cli = timed_process([*GENRIFY, "tags", str(song), "--format", "json"])
    results.update(tags_s=tagging, d_ratio=tagging / decode, tags_command_s=tags_cli)
    print(f"d. genrify tags' work on it {tagging:.3f} s (the command, start-up included: {tags_cli:.2f} s)")
    print(f"   ratio = {tagging / decode:.2f}  (target <= 4.00: {verdict(tagging / decode <= 4)})")

    short = songs(work / "builtin-30s-mp3", 1, 30.0, seed=12)[0]
    hour = work / f"builtin-{args.hour_seconds:g}s.mp3"
    if not hour.exists():
        import numpy as np
        import soundfile as sf

        clip = audio.load(song, 44100)
        part = hour.with_suffix(".part.mp3")
        with sf.SoundFile(part, "w", samplerate=44100, channels=2, format="MP3") as f:
            for _ in range(int(np.ceil(args.hour_seconds * 44100 / clip.size))):
                f.write(np.stack([clip, clip], axis=1))
        part.rename(hour)
    cmd = [*GENRIFY, "classify", "--no-cache", "--format", "json", "--output", str(work / "builtin-rss.json")]
    short_rss = run_measured([*cmd, str(short)], interval=0.02)[1]
    long_rss = run_measured([*cmd, str(hour)], interval=0.02)[1]
    results.update(rss_30s_mb=short_rss / 2**20, rss_hour_mb=long_rss / 2**20, b_ratio=long_rss / short_rss)
    print(f"b. peak RSS of genrify classify: 30 s {short_rss / 2**20:.0f} MB, {args.hour_seconds:g} s "
          f"{long_rss / 2**20:.0f} MB")
    print(f"   ratio = {long_rss / short_rss:.2f}  (target <= 1.30: {verdict(long_rss / short_rss <= 1.3)})")

    folder = work / "builtin-4min-mp3"
    base = [*GENRIFY, "classify", *map(str, library), "--no-cache", "--format", "json", "--output"]
    sampled = timed_process([*base, str(work / "builtin-lib.json")])
    every = timed_process([*base, str(work / "builtin-lib-all.json"), "--max-segments", "0"])
    same = [a["genre"] == b["genre"] for a, b in zip(json.loads((work / "builtin-lib.json").read_text()),
                                                      json.loads((work / "builtin-lib-all.json").read_text()), strict=True)]
    results.update(library_s=sampled, library_all_segments_s=every, c_ratio=every / sampled,
                   library_same_top_genre=sum(same) / len(same))
    print(f"c. {len(library)} songs ({folder.name}): default {sampled:.1f} s ({len(library) / sampled:.2f} songs/s), "
          f"every segment {every:.1f} s ({len(library) / every:.2f} songs/s); same top genre for {sum(same)}/{len(same)}")
    print(f"   throughput ratio = {every / sampled:.2f}  (target >= 5.00: {verdict(every / sampled >= 5)})")
    print(f"   {len(library) / sampled:.2f} songs/s  (target >= 3.00: {verdict(len(library) / sampled >= 3)})")
    shares = stages(library[:10], model)
    results.update(stages_s_per_song=shares)
    whole = shares.pop("whole")
    print(f"e. one song, one thread: {whole:.3f} s; " + ", ".join(
        f"{name} {seconds:.3f} s ({seconds / whole:.0%})" for name, seconds in shares.items()))
    (work / "builtin.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {work / 'builtin.json'}")


if __name__ == "__main__":
    main()
