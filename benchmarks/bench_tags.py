"""Genre tag writing on a whole library: throughput, and its share of a classify-and-tag run.

Run from the repository root::

    .venv/bin/python benchmarks/bench_tags.py             # 1,000 files
    .venv/bin/python benchmarks/bench_tags.py --quick     # 200 files

Measured in one run, on the same files (short synthetic songs in mp3, flac and ogg, copied to make a
library; each copy is its own file to tag):

1. Classification with the built-in model (``genrify.classify.service.classify_library``, every core, no
   cache): files per second.
2. Tag writing (``genrify.classify.tagging.tag_results``: two genres per file, replace mode, provenance
   record, each file rewritten as a checked copy and renamed): files per second, and its share of
   the time of classifying and tagging.
3. The reference, on a second copy of the same library: mutagen alone setting the genre and saving
   in place (no check, no copy, no provenance: what a bare tagging script does). The ratio says
   what genrify's safety costs.
4. A second tag run over the tagged library (what a resumed or repeated run does): every file is
   read and found right, none rewritten.

Results go to ``bench-output/tags.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-output"
FORMATS = ("mp3", "flac", "ogg")


def make_library(folder: Path, n: int, seconds: float) -> list[Path]:
    """``n`` files, copies of a few synthetic songs per format, ten per album folder."""
    from genrify.audio.synth import GENRES, SynthSpec, song_paths, write_dataset

    sources: list[Path] = []
    for fmt in FORMATS:
        spec = SynthSpec(genres=GENRES[:4], per_genre=2, seconds=seconds, seed=7, fmt=fmt, sample_rate=22050)
        write_dataset(folder / "sources" / fmt, spec)
        sources += [p for p, _g, _i in song_paths(folder / "sources" / fmt, spec)]
    library = folder / "library"
    if library.exists():
        shutil.rmtree(library)
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        dst = library / f"album{i // 10:04d}" / f"{i:05d}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        paths.append(dst)
    return paths


def bare_mutagen(paths: list[Path], genres: dict[str, list[str]]) -> None:
    """The reference: set the genre with mutagen's easy interface and save in place."""
    import mutagen

    for path in paths:
        tagged = mutagen.File(path, easy=True)
        if tagged.tags is None:
            tagged.add_tags()
        tagged["genre"] = genres[path.name]
        tagged.save()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 files")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each song")
    parser.add_argument("--work", type=Path, default=OUT / "tags-work")
    args = parser.parse_args()
    n = 200 if args.quick else args.files

    from genrify.classify.modelref import ModelRef
    from genrify.classify.service import classify_library
    from genrify.classify.tagging import tag_results
    from genrify.collection.tagpolicy import TagPolicy

    args.work.mkdir(parents=True, exist_ok=True)
    print(f"making a library of {n} files ...", flush=True)
    paths = make_library(args.work, n, args.seconds)

    ref = ModelRef.builtin()
    started = time.perf_counter()
    run = classify_library([args.work / "library"], ref)
    classify_s = time.perf_counter() - started
    predictions = run.predictions
    print(f"classified {len(predictions)} in {classify_s:.1f} s", flush=True)

    policy = TagPolicy(count=2, mode="replace", skip_unsure=False)
    started = time.perf_counter()
    report = tag_results(predictions, policy, model=ref.name)
    tag_s = time.perf_counter() - started
    started = time.perf_counter()
    again = tag_results(predictions, policy, model=ref.name)
    again_s = time.perf_counter() - started

    # The reference writes the same genres into a fresh copy of the library.
    written = {Path(c.path).name: list(c.new) for c in report.changes}
    reference = args.work / "reference"
    if reference.exists():
        shutil.rmtree(reference)
    shutil.copytree(args.work / "library", reference)
    # The copy already holds genrify's tags; the reference only sets the genre again and saves.
    ref_paths = [reference / p.relative_to(args.work / "library") for p in paths if p.name in written]
    started = time.perf_counter()
    bare_mutagen(ref_paths, written)
    bare_s = time.perf_counter() - started

    result = {
        "files": n,
        "classify_s": classify_s, "classify_files_per_s": n / classify_s,
        "tag_s": tag_s, "tag_files_per_s": n / tag_s,
        "tag_share_of_classify_and_tag": tag_s / (classify_s + tag_s),
        "written": report.count("written"), "unchanged": report.count("unchanged"), "failed": len(report.failures),
        "second_run_s": again_s, "second_run_files_per_s": n / again_s,
        "second_run_written": again.count("written"), "second_run_unchanged": again.count("unchanged"),
        "bare_mutagen_s": bare_s, "bare_mutagen_files_per_s": len(ref_paths) / bare_s,
        "genrify_over_bare_mutagen": (tag_s / n) / (bare_s / max(1, len(ref_paths))),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "tags.json").write_text(json.dumps(result, indent=2))
    print(f"\n{n} files ({', '.join(FORMATS)}; {args.seconds:g} s songs), 2 genres each, replace mode:")
    print(f"  classification (built-in model)   {result['classify_files_per_s']:8.1f} files/s")
    print(f"  tag writing (checked copy+rename) {result['tag_files_per_s']:8.1f} files/s "
          f"({report.count('written')} written, {len(report.failures)} failed)")
    print(f"  tag writing's share of classify+tag  {100 * result['tag_share_of_classify_and_tag']:5.1f} %")
    print(f"  reference, bare mutagen in place  {result['bare_mutagen_files_per_s']:8.1f} files/s "
          f"-> genrify / bare = {result['genrify_over_bare_mutagen']:.2f} x the time per file")
    print(f"  second run (all right already)    {result['second_run_files_per_s']:8.1f} files/s "
          f"({again.count('written')} rewritten, {again.count('unchanged')} unchanged)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
