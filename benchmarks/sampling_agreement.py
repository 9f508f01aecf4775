"""How many sampled segments give the answer of every segment: the default of ``--max-segments``.

Run from the repository root::

    .venv/bin/python benchmarks/sampling_agreement.py            # real songs need ../shared
    .venv/bin/python benchmarks/sampling_agreement.py --quick

Songs of 1 to 10 minutes, real and synthetic:

- synthetic: ``genrify synth`` songs of every genre at 1, 3 and 10 minutes;
- real: the music clips of ``../shared/data/real/cc-excerpts`` of 45 s or more, and medleys of the
  24 clips of ``real/genre-samples`` joined by family (four jazz clips, four electronic ones, ...),
  1.5 to 2.5 minutes each (harder than one song: their parts differ on purpose).

For each song the built-in model classifies every segment once; a sample of K segments spread
evenly over the song (as :func:`genrify.audio.segments.segment_starts` picks them) is answered from the
same segments' probabilities. Printed: for each K, the share of songs whose sampled top genre is the
all-segments top genre. Then the default (:data:`genrify.defaults.DEFAULT_MAX_SEGMENTS`) is checked
end to end: ``genrify.classify.predict.classify`` with seeking and decoding of the sampled segments only,
against every segment, on the same songs. Results go to ``bench-output/sampling_agreement.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
SAMPLES = (2, 4, 6, 8, 12, 16, 24)
MEDLEYS = {
    "jazz": ("bop", "swing", "contemporary_jazz", "bossa_nova"),
    "electronic": ("electro", "techno", "trance", "house"),
    "rock": ("heavy_metal", "punk", "indie_rock"),
    "soul": ("soul", "funk", "gospel", "doo_wop"),
    "latin": ("salsa", "cumbia", "samba", "bolero"),
    "dance": ("disco", "europop", "afrobeat"),
    "calm": ("ambient", "dub"),
}
TARGET = 0.97
MUSIC_CLIPS = (
    "Kevin_MacLeod_-_Vibe_Ace", "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy",
    "Karissa_Hobbs_-_Lets_Go_Fishin", "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)",
    "442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime", "147793__setuniman__sweet-waltz-0i-22mi",
    "admiralbob77_-_Choice_-_Drum-bass",
)


def songs(folder: Path, quick: bool) -> list[tuple[str, Path]]:
    """(kind, path) of every song to measure, written into ``folder`` where made here."""
    import soundfile as sf

    from genrify.audio import decode as audio
    from genrify.audio.synth import GENRES, SynthSpec, write_dataset

    out: list[tuple[str, Path]] = []
    minutes = (1, 3) if quick else (1, 3, 10)
    for m in minutes:
        spec = SynthSpec(genres=GENRES if not quick else GENRES[:4], per_genre=1,
                         seconds=60.0 * m, seed=m, fmt="mp3", sample_rate=22050, channels=1)
        out += [("synthetic", p) for p in write_dataset(folder / f"synth-{m}min", spec)]
    if REAL.is_dir():
        for name in MUSIC_CLIPS:
            clip = REAL / "cc-excerpts" / f"{name}.hq.ogg"
            if clip.is_file() and audio.info(clip).duration >= 45:
                out.append(("real", clip))
        for family, names in MEDLEYS.items():
            parts = [audio.load(REAL / "genre-samples" / f"{n}.mp3", 22050) for n in names]
            path = folder / f"medley-{family}.flac"
            sf.write(path, np.concatenate(parts), 22050)
            out.append(("real medley", path))
    return out


def uncertain_sample(sampled: np.ndarray, total: int, z: float = 2.0) -> bool:
    """Whether a sample of segment probabilities leaves its top genre in doubt.

    The lead of the sample's top genre over its runner-up, segment by segment, has a mean (the
    sampled answer's margin) and a standard error (with the finite-population correction: a sample
    of every segment has none); the sample is in doubt where the mean is within ``z`` standard
    errors of zero, the usual two-sided 95 % test, no parameter fitted here.
    """
    n = sampled.shape[0]
    if n >= total or n < 2:
        return False
    order = np.argsort(-sampled.mean(axis=0))
    lead = sampled[:, order[0]] - sampled[:, order[1]]
    error = lead.std(ddof=1) / np.sqrt(n) * np.sqrt((total - n) / max(total - 1, 1))
    return bool(lead.mean() < z * error)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter songs")
    args = parser.parse_args()
    import torch

    from genrify.audio.segments import segment_starts
    from genrify.classify.predict import classify
    from genrify.defaults import DEFAULT_MAX_SEGMENTS
    from genrify.models.builtin import load_builtin

    torch.set_num_threads(2)
    model = load_builtin()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        todo = songs(Path(tmp), args.quick)
        print(f"{len(todo)} songs: {sum(k == 'synthetic' for k, _ in todo)} synthetic, "
              f"{sum(k != 'synthetic' for k, _ in todo)} real")
        started = time.perf_counter()
        for kind, path in todo:
            every = classify(path, model, max_segments=0)
            probs = every.segment_probabilities
            row = {"song": path.name, "kind": kind, "minutes": round(every.duration / 60, 1), "segments": every.segments,
                   "genre": every.genre, "confidence": every.confidence, "unsure": every.low_confidence, "sampled": {}}
            for k in SAMPLES:
                picked = segment_starts(probs.shape[0], 1, 1, k)  # the same spread over segment indices
                row["sampled"][k] = every.genres[int(np.argmax(probs[picked].mean(axis=0)))]
            row["second_look"] = {}
            for k in SAMPLES:
                picked = segment_starts(probs.shape[0], 1, 1, k)
                doubtful = uncertain_sample(probs[picked], probs.shape[0])
                answer = probs.mean(axis=0) if doubtful else probs[picked].mean(axis=0)
                row["second_look"][k] = {"genre": every.genres[int(np.argmax(answer))], "doubtful": bool(doubtful)}
            seek = time.perf_counter()
            sampled = classify(path, model, max_segments=DEFAULT_MAX_SEGMENTS)
            row["end_to_end"] = sampled.genre
            row["end_to_end_seconds"] = round(time.perf_counter() - seek, 3)
            rows.append(row)
            print(f"  {kind:12s} {row['minutes']:5.1f} min {path.name[:40]:40s} all {every.genre:10s} "
                  f"K={DEFAULT_MAX_SEGMENTS}: {sampled.genre}", flush=True)
        wall = time.perf_counter() - started
    unsure = sum(r["unsure"] for r in rows)
    print(f"\nshare of songs whose sampled top genre is the all-segments one ({len(rows)} songs, {wall:.0f} s; "
          f"{unsure} of them get an unsure answer from every segment, a near-tie that any sample may flip):")
    summary: dict[str, object] = {"songs": len(rows), "by_k": {}}
    for k in SAMPLES:
        same = np.mean([r["sampled"][k] == r["genre"] for r in rows])
        real = [r["sampled"][k] == r["genre"] for r in rows if r["kind"] != "synthetic"]
        sure = [r["sampled"][k] == r["genre"] for r in rows if not r["unsure"]]
        summary["by_k"][k] = {"all": float(same), "real": float(np.mean(real)) if real else None,  # type: ignore[index]
                              "sure": float(np.mean(sure)) if sure else None}
        mark = " <- default" if k == DEFAULT_MAX_SEGMENTS else ""
        print(f"  K={k:2d}: {same:.1%}" + (f" · real songs {np.mean(real):.1%}" if real else "")
              + (f" · songs whose every-segment answer is not unsure {np.mean(sure):.1%} ({len(sure)})" if sure else "")
              + mark)
    print("with a second look (every segment) where the sample's lead is within two standard errors:")
    for k in SAMPLES:
        same = np.mean([r["second_look"][k]["genre"] == r["genre"] for r in rows])
        looked = [r for r in rows if r["second_look"][k]["doubtful"]]
        synth = [r for r in rows if r["kind"] == "synthetic"]
        share_synth = np.mean([r["second_look"][k]["doubtful"] for r in synth]) if synth else 0.0
        real = [r for r in rows if r["kind"] != "synthetic"]
        share_real = np.mean([r["second_look"][k]["doubtful"] for r in real]) if real else 0.0
        summary.setdefault("second_look", {})[k] = {"all": float(same), "looked": len(looked)}  # type: ignore[union-attr]
        print(f"  K={k:2d}: {same:.1%} · a second look for {len(looked)} of {len(rows)} songs "
              f"(synthetic {share_synth:.0%}, real {share_real:.0%})")
    end = float(np.mean([r["end_to_end"] == r["genre"] for r in rows]))
    summary["end_to_end"] = end
    print(f"end to end, seeking and decoding only the K={DEFAULT_MAX_SEGMENTS} sampled segments: {end:.1%} "
          f"(target {TARGET:.0%})")
    out = REPO / "bench-output" / "sampling_agreement.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "songs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
