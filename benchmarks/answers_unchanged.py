"""Does the built-in model still give the answers it gave before it ran without PyTorch?

Run from the repository root (needs ``../shared/data/real``)::

    .venv/bin/python benchmarks/answers_unchanged.py
    .venv/bin/python benchmarks/answers_unchanged.py --genrify /tmp/genrify-core/bin/genrify   # a core install

Classifies the shared real clips (music, speech, birds, a whale, a dog) with ``genrify classify``
and compares each answer with ``reference/builtin-answers-before-19.json``, which genrify gave at
commit fd1d01c, when the log-mel front end and the genre head ran on PyTorch. Target: the same top
genre for every clip and every probability within 1e-4.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REFERENCE = HERE / "reference" / "builtin-answers-before-19.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data" / "real")
    parser.add_argument("--genrify", default=None, help="the genrify command to measure (default: this venv's)")
    args = parser.parse_args()
    reference = json.loads(REFERENCE.read_text())["clips"]
    clips = [args.shared / r["clip"] for r in reference]
    missing = [c for c in clips if not c.is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} reference clips missing under {args.shared} (e.g. {missing[0]})")
    command = [args.genrify] if args.genrify else [sys.executable, "-m", "genrify"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "answers.json"
        subprocess.run([*command, "classify", *map(str, clips), "--no-cache", "--format", "json", "-o", str(out)],
                       check=True, stderr=subprocess.DEVNULL)
        answers = json.loads(out.read_text())
    worst, differ = 0.0, []
    for ref, now in zip(reference, answers, strict=True):
        gap = max(abs(p - now["probabilities"][g]) for g, p in ref["probabilities"].items())
        worst = max(worst, gap)
        if now["genre"] != ref["genre"]:
            differ.append(f"{ref['clip']}: {ref['genre']} -> {now['genre']}")
    print(f"{len(reference)} real clips: top genre changed for {len(differ)}; largest probability change {worst:.1e} "
          f"(the reference rounds to 1e-6)")
    for line in differ:
        print(f"  {line}")
    ok = not differ and worst <= 1e-4
    print(f"target: same genre, within 1e-4: {'PASS' if ok else 'FAIL'}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
