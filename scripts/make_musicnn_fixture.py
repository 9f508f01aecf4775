"""Regenerate ``tests/data/musicnn_fixture.npz``: one input patch and the original musicnn's outputs on it.

The fixture lets ``tests/test_musicnn.py`` check the port against the original even where
``../shared`` is absent. It is cut from ``../shared/musicnn/reference``: the first patch of Kevin
MacLeod's "Dance of the Sugar Plum Fairy" (CC-BY 3.0), and what musicnn 0.1.0's ``MTT_musicnn`` and
``MTT_vgg`` made of it. The input is stored as its float16 mel power, which is what musicnn
quantises to before ``log10(10000 x + 1)``, so the float32 input is recovered exactly at half the size.

    .venv/bin/python scripts/make_musicnn_fixture.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "musicnn" / "reference"
CLIP = "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.hq"
EXPECTED = {"MTT_musicnn": ("taggram", "mean_pool", "max_pool", "penultimate"), "MTT_vgg": ("taggram", "flat_pool5")}


def main() -> None:
    batch = np.load(REFERENCE / f"input__{CLIP}.npz")["input_batch"][:1]
    # Invert log10(10000 x + 1); the float16 grid is coarse enough that rounding recovers x exactly.
    power = ((np.power(np.float32(10), batch) - 1) / np.float32(10000)).astype(np.float16)
    if not np.array_equal(np.log10(10000 * power.astype(np.float32) + 1), batch):
        raise SystemExit("the float16 power does not reproduce the input exactly")
    arrays: dict[str, np.ndarray] = {"power16": power}
    for model, keys in EXPECTED.items():
        with np.load(REFERENCE / f"{model}__{CLIP}.npz") as ref:
            arrays |= {f"{model}/{key}": ref[key][:1] for key in keys}
            arrays[f"{model}/tags"] = ref["tags"]
    arrays["source"] = np.array(
        f"{CLIP}.ogg, patch 0 (from librosa/data; 'Dance of the Sugar Plum Fairy' by Kevin MacLeod, CC-BY 3.0); "
        "outputs of musicnn 0.1.0 (Jordi Pons and Xavier Serra, ISC licence)"
    )
    out = REPO / "tests" / "data" / "musicnn_fixture.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.1f} kB)")


if __name__ == "__main__":
    main()
