"""``--genres``: where the genres asked for hold too little of the built-in model's belief to trust its answer.

Run from the repository root (needs ``../shared/data/gtzan-excerpts``)::

    .venv/bin/python benchmarks/asked_share.py

Asked for some of its genres, the built-in model answers with the best of them, and also says
what share of its probability over all its genres they hold (``asked_share``). A song of another
genre still gets one of those asked for; a small share is the sign of it. Where the share is under
:data:`genrify.classify.predict.ASKED_SHARE_MIN`, the answer is flagged unsure (``other genre``).

That edge is chosen as the learner chooses its unsure threshold: the share under which answers are
right at most half the time (isotonic regression of right/wrong on the share, the smallest share at
which it passes one half, rounded down to a hundredth). The answers are the learner's nested,
artist-grouped cross-validated answers on the 294 GTZAN excerpts (the shipped head's own call,
``scripts/train_builtin_head.py``), each excerpt answered by a head that never heard its artist.
The askings: each of GTZAN's ten genres left out of ``--genres`` in turn, the other nine asked for,
every excerpt answered each time; the excerpts of the genre left out have no right answer among
those asked. Printed: the edge, and at it and at 0.5, how many answers it flags, how many of the
excerpts of the genre left out it catches, how many of the others it flags, and how often the
flagged and the other answers are right; then the same with all ten asked (nothing to catch: what
it costs). Results go to ``bench-output/asked_share.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-output" / "asked_share.json"
GTZAN = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def main() -> int:
    sys.path.insert(0, str(REPO / "scripts"))
    from sklearn.isotonic import IsotonicRegression
    from train_builtin_head import EXCERPTS, FOLDS, SEED, load_excerpts

    from genrify.classify.predict import ASKED_SHARE_MIN
    from genrify.learn.learner import learn_head
    from genrify.models.builtin import GENRES, builtin_genre, split_asked

    if not EXCERPTS.is_dir():
        print(f"{EXCERPTS}: the GTZAN excerpts are missing")
        return 1
    songs, labels, groups = load_excerpts()
    head, report = learn_head(songs, labels, groups, folds=FOLDS, seed=SEED, genres=list(GENRES), builtin=False)
    ten = [builtin_genre(g) for g in GTZAN]
    truth = [builtin_genre(y[0]) for y in labels]

    def ask(asked: list[str]) -> tuple[np.ndarray, np.ndarray]:
        columns = [list(head.genres).index(g) for g in asked]
        shares, right = [], []
        for answer, genre in zip(report.answers, truth, strict=True):
            probabilities, share = split_asked(answer, columns)
            shares.append(float(share.mean()))
            right.append(asked[int(np.argmax(probabilities.mean(axis=0)))] == genre)
        return np.array(shares), np.array(right)

    parts = [ask([g for g in ten if g != left]) for left in ten]
    share = np.concatenate([p[0] for p in parts])
    right = np.concatenate([p[1] for p in parts])
    outside = np.concatenate([[t == left for t in truth] for left in ten])
    fitted = IsotonicRegression(out_of_bounds="clip").fit(share, right.astype(float)).predict(share)
    edge = float(np.floor(share[fitted > 0.5].min() * 100) / 100)

    def figures(at: float, share: np.ndarray, right: np.ndarray, outside: np.ndarray) -> dict[str, float]:
        flagged = share < at
        return {"edge": at, "flagged": float(flagged.mean()),
                "caught": float(flagged[outside].mean()) if outside.any() else float("nan"),
                "others_flagged": float(flagged[~outside].mean()),
                "flagged_right": float(right[flagged].mean()) if flagged.any() else float("nan"),
                "kept_right": float(right[~flagged].mean())}

    all_share, all_right = ask(ten)
    results = {
        "edge": edge, "shipped": ASKED_SHARE_MIN,
        "one_left_out": {f"{at:g}": figures(at, share, right, outside) for at in (edge, 0.5)},
        "all_ten": {f"{at:g}": figures(at, all_share, all_right, np.zeros(len(all_share), bool)) for at in (edge, 0.5)},
    }
    print(f"{len(truth)} excerpts, each genre of the ten left out of --genres in turn ({len(share)} answers)")
    print(f"edge (answers under it right at most half the time): {edge:.2f}; genrify's ASKED_SHARE_MIN {ASKED_SHARE_MIN:.2f}"
          f" ({'the same' if abs(edge - ASKED_SHARE_MIN) < 1e-9 else 'DIFFERENT'})")
    for name, rows in (("one of the ten left out", results["one_left_out"]), ("all ten asked", results["all_ten"])):
        for at, f in rows.items():
            caught = f" catches {f['caught']:.1%} of the genre left out," if name != "all ten asked" else ""
            print(f"  {name}, edge {float(at):.2f}: flags {f['flagged']:.1%} of the answers;{caught} flags "
                  f"{f['others_flagged']:.1%} of the others; flagged right {f['flagged_right']:.2f}, "
                  f"the rest {f['kept_right']:.2f}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
