"""Classification speed and memory: a library, one long song, one very long file.

Run from the repository root::

    .venv/bin/python benchmarks/bench_classify.py            # the full protocol
    .venv/bin/python benchmarks/bench_classify.py --quick    # 40 clips, a 60 s song, a 10 min file

Measured in one run, on the same files:

1. Throughput on 200 synthetic 30 s mp3 clips (44.1 kHz stereo): ``genrify classify`` (a fresh
   process, start-up included, no cache, decoding in a process pool) against a plain reference, a
   per-file loop of ``librosa.load`` + melspectrogram + the same model in one process.
   Target: the reference takes at least 1.7 x as long.
2. One 4-minute mp3 end to end (decode, features, model, answer) against decoding it and computing
   its features alone, in one warm process, median of 5. Target: at most 1.3 x.
3. Peak RSS of ``genrify classify`` on a one-hour file against a 30 s file. Target: at most 1.5 x.

The model is a freshly initialised ``seed-cnn``: its speed does not depend on what it has learnt.
Results go to ``bench-output/classify.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_extract import run_measured, synthesise, timed_process

REPO = HERE.parent
GENRIFY = [sys.executable, "-m", "genrify"]


def make_model(path: Path) -> Path:
    import torch

    from genrify.audio.features import FeatureParams
    from genrify.audio.synth import GENRES
    from genrify.models import modelfile
    from genrify.models import GenreNetwork, build
    from genrify.models.normalization import Normalization

    torch.manual_seed(0)
    params = FeatureParams()
    norm = Normalization(np.full(params.n_mels, -40.0, np.float32), np.full(params.n_mels, 15.0, np.float32))
    network = GenreNetwork(build("seed-cnn", n_mels=params.n_mels, n_genres=len(GENRES)), *norm.tensors())
    model = modelfile.GenreModel(network=network.eval(), genres=list(GENRES), params=params, normalization=norm,
                                 architecture="seed-cnn", architecture_config={}, chunk_frames=128)
    return modelfile.save(model, path)


def run_reference(paths: list[str], model_path: str) -> None:
    """The plain loop a user would write: librosa features, the model on 128-frame chunks."""
    import librosa
    import torch

    from genrify.models import modelfile

    model = modelfile.load(model_path)
    for p in paths:
        y, sr = librosa.load(p, sr=22050)
        mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128), ref=1.0)
        chunks = [mel[:, s : s + 128] for s in range(0, mel.shape[1] - 127, 128)]
        with torch.inference_mode():
            probs = torch.softmax(model.network(torch.from_numpy(np.stack(chunks))), dim=1).mean(dim=0)
        _ = model.genres[int(probs.argmax())]


def long_song_ratio(song: Path, model_path: Path, repeats: int = 5) -> tuple[float, float]:
    """Median seconds of (decode + features) and of the whole classification of one file."""
    from genrify.audio.segments import song_features
    from genrify.classify import predict
    from genrify.models import modelfile

    model = modelfile.load(model_path)
    predict.classify(song, model)  # warm up: imports, filter bank, first-call allocations
    feat, full = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        song_features(song, model.params)
        feat.append(time.perf_counter() - t)
        t = time.perf_counter()
        predict.classify(song, model)
        full.append(time.perf_counter() - t)
    return statistics.median(feat), statistics.median(full)


def peak_rss(args: list[str]) -> int:
    """Peak RSS in bytes of a command's whole process tree, sampled every 20 ms."""
    return run_measured(args, interval=0.02)[1]


def long_file(path: Path, source: Path, seconds: float) -> Path:
    """An mp3 of ``seconds``: a synthetic clip repeated (encoding is done once and kept)."""
    import soundfile as sf

    from genrify.audio import decode as audio

    if path.exists():
        return path
    clip = audio.load(source, 22050)
    reps = int(np.ceil(seconds * 22050 / clip.size))
    tmp = path.with_suffix(".part.mp3")
    with sf.SoundFile(tmp, "w", samplerate=22050, channels=1, format="MP3") as f:
        for _ in range(reps):
            f.write(clip)
    tmp.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--long-seconds", type=float, default=240.0)
    parser.add_argument("--hour-seconds", type=float, default=3600.0)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-output")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--run-reference", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_reference:
        return run_reference(args.run_reference.read_text().split("\n"), str(args.model))
    if args.quick:
        args.clips, args.long_seconds, args.hour_seconds = 40, 60.0, 600.0

    from genrify.core.runner import default_jobs

    jobs = default_jobs()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    model = make_model(work / "bench-model.safetensors")
    results: dict[str, object] = {"clips": args.clips, "jobs": jobs}
    print(f"genrify classification benchmark: {args.clips} clips of 30 s, {jobs} cores")

    music = work / f"music-mp3-44k-stereo-{args.clips}x30"
    paths = synthesise(music, args.clips, 30.0, "mp3", 44100, 2, jobs)
    listing = work / "classify-files.txt"
    listing.write_text("\n".join(map(str, paths)))
    b = timed_process([*GENRIFY, "classify", str(music), "--model", str(model), "--no-cache", "--format", "json",
                       "--output", str(work / "classify-out.json")])
    c = timed_process([sys.executable, __file__, "--run-reference", str(listing), "--model", str(model)])
    done = json.loads((work / "classify-out.json").read_text())
    assert len(done) == len(paths) and all("genre" in o for o in done), "every clip classified"
    results.update({"genrify_s": b, "reference_s": c, "reference_over_genrify": c / b})
    print(f"1. genrify classify {b:7.2f} s ({len(paths) / b:5.1f} files/s)   reference loop {c:7.2f} s"
          f" ({len(paths) / c:5.1f} files/s)")
    print(f"   reference / genrify = {c / b:.2f}  (target >= 1.70: {'PASS' if c / b >= 1.7 else 'FAIL'})")

    song = long_file(work / f"song-{args.long_seconds:g}s.mp3", paths[0], args.long_seconds)
    feat, full = long_song_ratio(song, model)
    results.update({"long_song_s": args.long_seconds, "features_s": feat, "classify_s": full, "long_ratio": full / feat})
    print(f"2. {args.long_seconds:g} s mp3: decode + features {feat:.3f} s, whole classification {full:.3f} s")
    print(f"   ratio = {full / feat:.2f}  (target <= 1.30: {'PASS' if full / feat <= 1.3 else 'FAIL'})")

    hour = long_file(work / f"song-{args.hour_seconds:g}s.mp3", paths[0], args.hour_seconds)
    cmd = [*GENRIFY, "classify", "--model", str(model), "--no-cache", "--format", "json", "--output", str(work / "classify-rss-out.json")]
    short_rss = peak_rss([*cmd, str(paths[0])])
    long_rss = peak_rss([*cmd, str(hour)])
    results.update({"rss_30s_mb": short_rss / 2**20, "rss_long_mb": long_rss / 2**20, "rss_ratio": long_rss / short_rss,
                    "hour_seconds": args.hour_seconds})
    print(f"3. peak RSS: 30 s file {short_rss / 2**20:.0f} MB, {args.hour_seconds:g} s file {long_rss / 2**20:.0f} MB")
    print(f"   ratio = {long_rss / short_rss:.2f}  (target <= 1.50: {'PASS' if long_rss / short_rss <= 1.5 else 'FAIL'})")
    (work / "classify.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {work / 'classify.json'}")


if __name__ == "__main__":
    main()
