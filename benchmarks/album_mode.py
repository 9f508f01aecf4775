"""What album mode changes: per-track accuracy on synthetic albums, with and without it.

Run from the repository root::

    .venv/bin/python benchmarks/album_mode.py            # 20 albums, ~120 tracks: about 3 minutes on 2 cores
    .venv/bin/python benchmarks/album_mode.py --quick    # 10 albums, ~60 shorter tracks: about 1 minute

1. A model: a ``musicnn-transfer`` head trained on 10 genres of ``genrify synth`` songs (seed 101),
   which names about 4 in 5 unseen synthetic songs right: imperfect on purpose, or album mode would
   have nothing to fix.
2. Albums: other synthetic songs (seed 202, never heard in training), one folder per album, each
   album one genre (every genre in turn), 4 to 8 tracks of 10 to 40 s; every other album has one
   outlier, a track of another genre at a random place.
3. Every track is classified alone, the tracks are grouped by :func:`genrify.classify.albums.group_albums`
   (by folder: the files carry no album tags) and each pooling rule of
   :data:`genrify.classify.albums.POOLING_RULES` gives the album answers.

Printed, per rule: the share of all tracks whose (first) genre is right; the same for the tracks of
the album's genre and for the outliers alone; albums named right; outliers that flipped their album
(the album's answer differs with the outlier left out). "album + own" writes the album genre and,
where the track alone gives another genre more than ``--own-above``, that genre too: a track counts
as right when its genre is among those written, and the extra genres that are wrong are counted.

A second table pools many random albums (2 to 10 tracks, half with one outlier) drawn from the same
classified tracks, so that the rules are compared on thousands of albums, small ones included,
where they differ most; the difference to the mean rule is paired (same albums) with a 95%
interval. Results go to ``bench-output/album_mode.json``.

Synthetic songs of one genre are independent draws; the tracks of a real album share an artist's
sound, so their mistakes agree more often and album mode fixes fewer of them than here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN_SEED, ALBUM_SEED = 101, 202


@dataclasses.dataclass(frozen=True)
class Track:
    path: str
    genre: str  #: the truth
    album: int
    outlier: bool


def train_model(work: Path, per_genre: int, seconds: float, jobs: int) -> Path:
    """Train (once; reused on later runs) a musicnn-transfer head on synthetic songs of ``TRAIN_SEED``."""
    from genrify.audio.synth import GENRES, SynthSpec, write_dataset
    from genrify.core.runner import LocalRunner
    from genrify.learn.config import TrainConfig
    from genrify.learn.training import train
    from genrify.models import modelfile
    from genrify.store.extract import extract

    base = work / f"train-{per_genre}x{seconds:g}"
    model = base / "model.safetensors"
    if model.exists():
        return model
    write_dataset(base / "music", SynthSpec(genres=GENRES, per_genre=per_genre, seconds=seconds, seed=TRAIN_SEED, fmt="wav"),
                  jobs=jobs)
    extract(base / "music", base / "store", runner=LocalRunner(jobs, in_process=False))
    config = TrainConfig(arch="musicnn-transfer", optimizer="adam", seed=0, group_by="song", device="cpu")
    result = train(base / "store", config, runs=1, jobs=jobs)
    print(f"model trained: song accuracy {result.runs[0].evaluation.song_accuracy:.2f} on its "
          f"{len(result.runs[0].split.test)} test songs", flush=True)
    modelfile.save(result.model, model)
    return model


def _write(args: tuple[str, str, int, float]) -> None:
    from genrify.audio.synth import SynthSpec, write_song

    path, genre, index, seconds = args
    if not Path(path).exists():
        spec = SynthSpec(genres=(genre,), per_genre=1, seconds=seconds, seed=ALBUM_SEED, fmt="wav")
        write_song(Path(path), genre, index, spec)


def make_albums(root: Path, n_albums: int, sizes: tuple[int, int], durations: tuple[float, float], jobs: int) -> list[Track]:
    """Write the album folders (songs already there are kept) and return their tracks with the truth."""
    from genrify.audio.synth import GENRES

    rng = np.random.default_rng(ALBUM_SEED)
    next_index = dict.fromkeys(GENRES, 0)  # a new song for every track: indexes count per genre
    tracks: list[Track] = []
    jobs_args: list[tuple[str, str, int, float]] = []
    for a in range(n_albums):
        genre = GENRES[a % len(GENRES)]
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        outlier_at = int(rng.integers(size)) if a % 2 == 1 else -1
        other = str(rng.choice([g for g in GENRES if g != genre]))
        for t in range(size):
            g = other if t == outlier_at else genre
            seconds = round(float(rng.uniform(*durations)), 1)
            path = root / f"album-{a:02d}" / f"{t + 1:02d}.wav"
            jobs_args.append((str(path), g, next_index[g], seconds))
            next_index[g] += 1
            tracks.append(Track(str(path), g, a, t == outlier_at))
    with ProcessPoolExecutor(jobs) as pool:
        list(pool.map(_write, jobs_args))
    return tracks


def folder_table(tracks: list[Track], preds: dict, own_above: float) -> tuple[list[tuple[str, dict]], dict]:
    """Every row of the first table: track mode, album mode per rule, album + own genre per rule."""
    from genrify.classify.albums import POOLING_RULES, album_answers, group_albums, pool_album, track_ranking

    albums = group_albums([t.path for t in tracks])
    truth = {t.path: t for t in tracks}
    album_genre = {t.album: t.genre for t in tracks if not t.outlier}
    inliers = [t for t in tracks if not t.outlier]
    outliers = [t for t in tracks if t.outlier]

    def share(hit, among: list[Track]) -> float:
        return sum(bool(hit(t)) for t in among) / max(len(among), 1)

    rows: list[tuple[str, dict]] = []
    own = lambda t: preds[t.path].genre == t.genre
    rows.append(("track mode (no album mode)", {"all": share(own, tracks), "inliers": share(own, inliers),
                                                "outliers": share(own, outliers), "albums": None, "flipped": None}))
    for rule in POOLING_RULES:
        answers = album_answers(list(preds.values()), albums, rule=rule)
        right_albums = sum(answers[a.tracks[0]].genre == album_genre[truth[a.tracks[0]].album] for a in albums)
        flipped = 0
        for a in albums:  # would the album say something else without its outlier?
            without = [preds[p] for p in a.tracks if not truth[p].outlier]
            if len(without) < len(a.tracks):
                pooled = pool_album(without, rule=rule)
                flipped += answers[a.tracks[0]].genre != preds[a.tracks[0]].genres[int(np.argmax(pooled))]
        album = lambda t: answers[t.path].genre == t.genre
        rows.append((f"album mode, {rule}", {"all": share(album, tracks), "inliers": share(album, inliers),
                                             "outliers": share(album, outliers), "albums": right_albums,
                                             "flipped": flipped}))
        # the own genre was added where the ranking differs from the album's own ranking
        added = {}
        for t in tracks:
            ranked = track_ranking(preds[t.path], answers[t.path], own_genre_above=own_above)
            if ranked != track_ranking(preds[t.path], answers[t.path]):
                added[t.path] = ranked[1][0]
        both = lambda t: t.genre == answers[t.path].genre or added.get(t.path) == t.genre
        rows.append((f"album + own > {own_above:g}, {rule}", {
            "all": share(both, tracks), "inliers": share(both, inliers), "outliers": share(both, outliers),
            "albums": right_albums, "flipped": flipped, "added": len(added),
            "added_wrong": sum(g != truth[p].genre for p, g in added.items())}))
    meta = {"tracks": len(tracks), "albums": len(albums), "outliers": len(outliers)}
    return rows, meta


def own_sweep(tracks: list[Track], preds: dict, thresholds: list[float]) -> dict[float, dict]:
    """Album + own genre with the default rule, for several thresholds: what the extra genre costs."""
    from genrify.classify.albums import album_answers, group_albums, track_ranking

    answers = album_answers(list(preds.values()), group_albums([t.path for t in tracks]))
    out = {}
    for above in thresholds:
        added = {}
        for t in tracks:
            ranked = track_ranking(preds[t.path], answers[t.path], own_genre_above=above)
            if ranked != track_ranking(preds[t.path], answers[t.path]):
                added[t.path] = (ranked[1][0], t)
        out[above] = {"right": sum(t.genre == answers[t.path].genre or added.get(t.path, ("",))[0] == t.genre
                                   for t in tracks) / len(tracks),
                      "outliers_kept": sum(g == t.genre for g, t in added.values() if t.outlier),
                      "added": len(added), "added_wrong": sum(g != t.genre for g, t in added.values())}
    return out


def resampled(tracks: list[Track], preds: dict, n: int, seed: int) -> dict[str, dict]:
    """Per-track accuracy of each rule on ``n`` random albums drawn from the classified tracks."""
    from genrify.classify.albums import POOLING_RULES, pool_album

    rng = np.random.default_rng(seed)
    by_genre: dict[str, list[Track]] = {}
    for t in tracks:
        by_genre.setdefault(t.genre, []).append(t)
    genres = sorted(by_genre)
    rules = ["track mode", *POOLING_RULES]  # track mode: each track's own answer, for reference
    hits: dict[str, list[float]] = {rule: [] for rule in rules}  # per album: share of its tracks right
    small: dict[str, list[float]] = {rule: [] for rule in rules}
    for _ in range(n):
        g = genres[rng.integers(len(genres))]
        size = int(rng.integers(2, 11))
        n_out = int(size >= 3 and rng.random() < 0.5)  # 1 of 2 is no outlier, it is a split album
        size = min(size, len(by_genre[g]) + n_out)
        chosen = [by_genre[g][i] for i in rng.choice(len(by_genre[g]), size - n_out, replace=False)]
        if n_out:
            others = [t for t in tracks if t.genre != g]
            chosen.append(others[rng.integers(len(others))])
        album_preds = [preds[t.path] for t in chosen]
        for rule in rules:
            if rule == "track mode":
                share = sum(preds[t.path].genre == t.genre for t in chosen) / len(chosen)
            else:
                answer = album_preds[0].genres[int(np.argmax(pool_album(album_preds, rule=rule)))]
                share = sum(answer == t.genre for t in chosen) / len(chosen)
            hits[rule].append(share)
            if size <= 4:
                small[rule].append(share)
    out = {}
    ref = np.array(hits["mean"])
    for rule in rules:
        h = np.array(hits[rule])
        diff = h - ref
        half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        out[rule] = {"accuracy": float(h.mean()), "small_albums": float(np.mean(small[rule])) if small[rule] else float("nan"),
                     "vs_mean": float(diff.mean()), "vs_mean_ci": float(half),
                     "albums_differ": int(np.count_nonzero(diff))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 albums of shorter songs, a smaller model")
    parser.add_argument("--albums", type=int, help="albums to make (default 20, quick 10)")
    parser.add_argument("--own-above", type=float, default=0.5, help="album + own: the track's own probability to exceed")
    parser.add_argument("--resample", type=int, default=3000, help="random albums for the second table")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: one per core)")
    parser.add_argument("--work", type=Path, default=REPO / "bench-output" / "album-work")
    parser.add_argument("--out", type=Path, default=REPO / "bench-output" / "album_mode.json")
    args = parser.parse_args()

    import torch

    from genrify.classify.albums import DEFAULT_POOLING
    from genrify.classify.modelref import ModelRef
    from genrify.classify.predict import Prediction
    from genrify.classify.service import classify_library
    from genrify.core.runner import LocalRunner, default_jobs

    jobs = args.jobs or default_jobs()
    torch.set_num_threads(jobs)
    t0 = time.perf_counter()
    if args.quick:
        per_genre, train_seconds, n_albums, durations = 4, 10.0, args.albums or 10, (8.0, 20.0)
    else:
        per_genre, train_seconds, n_albums, durations = 6, 15.0, args.albums or 20, (10.0, 40.0)
    model_path = train_model(args.work, per_genre, train_seconds, jobs)
    t_model = time.perf_counter() - t0
    root = args.work / f"albums-{n_albums}-{durations[0]:g}-{durations[1]:g}"
    tracks = make_albums(root, n_albums, (4, 8), durations, jobs)
    t_albums = time.perf_counter() - t0 - t_model
    run = classify_library([t.path for t in tracks], ModelRef.file(model_path), runner=LocalRunner(jobs))
    preds: dict[str, Prediction] = {}
    for track, result in zip(tracks, run.results, strict=True):  # the results come in input order
        if not isinstance(result, Prediction):
            print(f"failed: {result.path}: {result.error}")
            return 1
        preds[track.path] = result
    t_classify = time.perf_counter() - t0 - t_model - t_albums

    rows, meta = folder_table(tracks, preds, args.own_above)
    print(f"\n{meta['tracks']} tracks in {meta['albums']} albums ({meta['outliers']} with one outlier), "
          f"musicnn-transfer head trained on {10 * per_genre} other synthetic songs")
    print(f"{'':34s} {'tracks right':>12s} {'album-genre':>11s} {'outliers':>9s} {'albums':>7s} {'outlier':>8s}  extra genre")
    print(f"{'':34s} {'(all)':>12s} {'tracks':>11s} {'right':>9s} {'right':>7s} {'flipped':>8s}  (wrong)")
    for name, r in rows:
        albums = "-" if r["albums"] is None else f"{r['albums']}/{meta['albums']}"
        flipped = "-" if r["flipped"] is None else f"{r['flipped']}/{meta['outliers']}"
        extra = f"{r['added']} ({r['added_wrong']})" if "added" in r else ""
        print(f"{name:34s} {r['all']:12.3f} {r['inliers']:11.3f} {r['outliers']:9.3f} {albums:>7s} {flipped:>8s}  {extra}")

    sweep = own_sweep(tracks, preds, [0.5, 0.7, 0.8, 0.9])
    print(f"\nalbum + own genre ({DEFAULT_POOLING}) by threshold: tracks right, outliers kept, extra genres written (wrong)")
    for above, r in sweep.items():
        print(f"  own > {above:<4g} {r['right']:6.3f}   {r['outliers_kept']:2d}/{meta['outliers']}"
              f"   {r['added']:3d} ({r['added_wrong']})")

    rs = resampled(tracks, preds, args.resample, seed=1)
    print(f"\n{args.resample} random albums of 2-10 of these tracks, half with one outlier: per-track accuracy")
    print(f"{'rule':12s} {'all albums':>10s} {'2-4 tracks':>10s} {'vs mean (95% CI)':>20s} {'albums it changes':>18s}")
    for rule, r in rs.items():
        print(f"{rule:12s} {r['accuracy']:10.3f} {r['small_albums']:10.3f} "
              f"{r['vs_mean']:+11.4f} ± {r['vs_mean_ci']:.4f} {r['albums_differ']:18d}")
    print(f"\nmodel {t_model:.0f} s, albums {t_albums:.0f} s, classification {t_classify:.0f} s, "
          f"total {time.perf_counter() - t0:.0f} s ({jobs} processes)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "meta": meta,
                                    "folder_albums": dict(rows), "own_genre": sweep,
                                    "resampled": rs}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
