"""Convert musicnn's TensorFlow checkpoints into genrify's packaged ``.safetensors`` weight files.

Reads ``<weights>/<NAME>.npz`` (every checkpoint variable of musicnn 0.1.0's ``MTT_musicnn``,
``MSD_musicnn``, ``MTT_vgg`` and ``MSD_vgg``, keyed by TensorFlow variable name, in TensorFlow layout)
and writes ``src/genrify/models/pretrained/<NAME>.safetensors`` (through the weight port in
``scripts/musicnn_port.py``): float32 tensors in the layout of
:mod:`genrify.models.musicnn`'s modules, and metadata naming the tags (JSON), the architecture, the
preprocessing parameters, the source and the licence (one JSON document under the metadata key
``genrify``, as genrify's model files have). Each file is checked to load into its module
before it is written. Running it twice gives byte-identical files.

    .venv/bin/python scripts/convert_musicnn.py                  # weights from ../shared/musicnn/weights
    .venv/bin/python scripts/convert_musicnn.py --weights DIR    # or from DIR
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from genrify.models import musicnn, taggers

# The weight port sits beside this script (only the conversion needs it); put its folder on the path
# however the script was started (``python scripts/convert_musicnn.py``, or loaded by a test).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from musicnn_port import convert_tf_variables, tf_variable_map

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO.parent / "shared" / "musicnn" / "weights"

# The tag lists of musicnn 0.1.0's configuration.py (MTT_LABELS, MSD_LABELS), in output order,
# spelled as the original spells them.
MTT_TAGS = [
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
]  # fmt: skip
MSD_TAGS = [
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock", "jazz",
    "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s",
    "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy",
    "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
]  # fmt: skip
DATASETS = {"MTT": "MagnaTagATune", "MSD": "Million Song Dataset (Last.fm tags)"}
# Parameter counts of the checkpoints (weights/variables.txt), BN moving statistics included.
PARAMETERS = {"musicnn": 792_079, "vgg": 607_030}
SOURCE = "musicnn 0.1.0 (https://github.com/jordipons/musicnn, PyPI musicnn==0.1.0), by Jordi Pons and Xavier Serra"
LICENCE = "ISC"
COPYRIGHT = (
    "Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. Code developed by Jordi Pons "
    "(www.jordipons.me). Distributed under the ISC licence; see genrify's NOTICE file."
)
CITATION = "Jordi Pons and Xavier Serra, musicnn: pre-trained convolutional neural networks for music audio tagging, ISMIR 2019 LBD"


def metadata(name: str) -> dict[str, Any]:
    """The metadata document of one tagger (saved as JSON under the file's ``genrify`` key)."""
    dataset, architecture = name.split("_")
    config = (
        {"n_mels": 96, "frontend_filters": 1.6, "midend_filters": 64, "backend_units": 200}
        if architecture == "musicnn"
        else {"filters": 128}
    )
    return {
        "format": taggers.FORMAT,
        "version": taggers.FORMAT_VERSION,
        "name": name,
        "architecture": architecture,
        "architecture_config": config,
        "tags": MTT_TAGS if dataset == "MTT" else MSD_TAGS,
        "trained_on": DATASETS[dataset],
        "features": taggers.MUSICNN_PARAMS.to_dict(),
        "patch_frames": taggers.PATCH_FRAMES,
        "preprocessing": (
            "librosa.load(sr=16000, soxr_hq), mono mean; melspectrogram(n_fft=512, hop_length=256, n_mels=96, "
            "center=True zero-padded, Slaney mel, power 2); float16 round trip; log10(10000 x + 1) in float32; "
            "non-overlapping 187-frame patches, remainder dropped; input (patch, frame, mel)"
        ),
        "source": SOURCE,
        "licence": LICENCE,
        "copyright": COPYRIGHT,
        "citation": CITATION,
        "converted_by": "genrify scripts/convert_musicnn.py, from the TensorFlow checkpoint variables",
        "tf_variables": tf_variable_map(architecture),
    }


def check_tags(name: str, tags: list[str], reference: Path) -> None:
    """Compare the tag list with the one the original wrote into a reference file, where present."""
    for path in sorted(reference.glob(f"{name}__*.npz"))[:1]:
        with np.load(path) as ref:
            if [str(t) for t in ref["tags"]] != tags:
                sys.exit(f"{name}: the tag list differs from the original's in {path}")


def convert(name: str, weights: Path, out_dir: Path) -> Path:
    """Convert one checkpoint; returns the written file."""
    source = weights / f"{name}.npz"
    if not source.is_file():
        sys.exit(f"{source}: not found (need musicnn's checkpoint variables as .npz; see --weights)")
    with np.load(source) as npz:
        variables = {key: npz[key] for key in npz.files}
    meta = metadata(name)
    architecture = meta["architecture"]
    n_parameters = sum(v.size for v in variables.values())
    if n_parameters != PARAMETERS[architecture]:
        sys.exit(f"{source}: {n_parameters} parameters, expected {PARAMETERS[architecture]} for {architecture}")
    state = {k: torch.from_numpy(v) for k, v in convert_tf_variables(architecture, variables).items()}
    tags = meta["tags"]
    check_tags(name, tags, weights.parent / "reference")
    # The module must take every tensor, and nothing but training counters may be left unset.
    network = musicnn.ARCHITECTURES[architecture](n_tags=len(tags), **meta["architecture_config"])
    missing, unexpected = network.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        sys.exit(f"{name}: converted weights do not fit the module (missing {missing}, unexpected {unexpected})")
    out = out_dir / f"{name}.safetensors"
    out_dir.mkdir(parents=True, exist_ok=True)
    # One metadata key holding sorted JSON: safetensors writes several keys in a random order,
    # and a re-run should give the same bytes.
    save_file(dict(sorted(state.items())), str(out), metadata={"genrify": json.dumps(meta, sort_keys=True)})
    out.chmod(0o644)  # safetensors creates files readable by their owner only; a package file is for everyone
    return out


#: The taggers the built-in genre model runs, whose ONNX graphs ship too.
BUILTIN_TAGGERS = ("MSD_musicnn", "MTT_musicnn")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="folder of <NAME>.npz checkpoint variables")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "genrify" / "models" / "pretrained", help="folder to write <NAME>.safetensors to")
    parser.add_argument("names", nargs="*", default=list(taggers.TAGGERS), help="taggers to convert (default: all four)")
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in taggers.TAGGERS:
            parser.error(f"unknown tagger {name!r}; choose from {', '.join(taggers.TAGGERS)}")
        out = convert(name, args.weights, args.out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
        if name in BUILTIN_TAGGERS:  # the built-in model runs these on ONNX Runtime
            if importlib.util.find_spec("onnx") is None:  # torch's exporter needs it; genrify does not
                print(f"not exporting {name}.onnx: `pip install onnx` to export the ONNX graph")
                continue
            from genrify.models.onnx import export

            graph = export(musicnn.load_tagger(name, out).network, args.out / f"{name}.onnx")
            print(f"wrote {graph} ({graph.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
