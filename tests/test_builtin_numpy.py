"""The built-in model in numpy (:meth:`BuiltinGenreModel.logits`) against its torch network, and its
promise: with the taggers on ONNX Runtime, building and running it needs no torch."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from helpers import NO_TORCH

from genrify.models import onnx
from genrify.models.builtin import (
    GENRES,
    HEAD_FEATURES,
    TAGGER_NAMES,
    BuiltinGenreModel,
    GenreHead,
    load_builtin,
    tagger_params,
    tagger_tags,
)

needs_onnx = pytest.mark.skipif(not all(onnx.available(n) for n in TAGGER_NAMES), reason="ONNX Runtime or graphs missing")


def random_outputs(n: int, head: GenreHead | None, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Tagger outputs as the taggers give them: probabilities, and embeddings on the head's scale."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in TAGGER_NAMES:
        taggram = 1 / (1 + np.exp(-rng.normal(-2.0, 2.0, (n, 50))))
        penultimate = np.abs(rng.normal(0.0, 1.0, (n, 200)))
        out[name] = {"taggram": taggram.astype(np.float32), "penultimate": penultimate.astype(np.float32)}
    if head is not None:  # around the head's training data, and far from it (the cap then matters)
        start = 0
        for feature in head.features:
            tagger, output = feature.split("/")
            width = HEAD_FEATURES[feature]
            mean, std = head.mean[start : start + width], head.std[start : start + width]
            z = rng.normal(0.0, 1.0, (n, width)) * rng.choice([1.0, 4.0], (n, 1))
            out[tagger][output] = (mean + std * z).astype(np.float32)
            start += width
    return out


class _FixedTaggers:
    """Stands for an ONNX tagger: the given outputs, row after row, whatever the patches."""

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs
        self.done = 0

    def run(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        assert patches.shape[1:] == onnx.PATCH_SHAPE and patches.dtype == np.float32
        rows = slice(self.done, self.done + patches.shape[0])
        self.done += patches.shape[0]
        return {k: v[rows] for k, v in self.outputs.items()}


def torch_logits(outputs: dict[str, dict[str, np.ndarray]], head: GenreHead | None, chosen: list[str]) -> np.ndarray:
    """The torch network's logits for these tagger outputs (its taggers replaced by fixed outputs)."""
    torch = pytest.importorskip("torch")
    from genrify.models.builtin import BuiltinGenreNetwork

    class Fixed(torch.nn.Module):
        def __init__(self, values: dict[str, np.ndarray]) -> None:
            super().__init__()
            self.values = {k: torch.from_numpy(v) for k, v in values.items()}

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {k: v[: x.shape[0]] for k, v in self.values.items()}

    network = BuiltinGenreNetwork({n: Fixed(outputs[n]) for n in TAGGER_NAMES}, tagger_tags(), head, chosen).eval()
    n = next(iter(outputs.values()))["taggram"].shape[0]
    with torch.inference_mode():
        return network(torch.zeros(n, 96, 187)).double().numpy()


def numpy_model(outputs: dict[str, dict[str, np.ndarray]], head: GenreHead | None, chosen: list[str]) -> BuiltinGenreModel:
    params = tagger_params()
    return BuiltinGenreModel(genres=list(chosen), params=params, chunk_frames=onnx.PATCH_SHAPE[0], head=head,
                             tags=tagger_tags(), chosen=list(chosen), onnx_batch_size=5,
                             onnx={n: _FixedTaggers(outputs[n]) for n in TAGGER_NAMES})


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("case", ["packaged", "no-head", "few-genres", "kept-mass", "two-features"])
def test_numpy_head_equals_torch_head_on_random_embeddings(case):
    head: GenreHead | None = GenreHead.load()
    chosen = list(head.genres)
    if case == "no-head":
        head, chosen = None, list(GENRES)
    elif case == "few-genres":
        chosen = ["jazz", "reggae", "hip-hop"]
    elif case == "kept-mass":  # unlearned genres keep most of their prior's mass
        head = replace(head, mobility=0.2, learned=head.learned[:6],
                       weight=np.where(np.isin(head.genres, head.learned[:6]), head.weight, 0.0),
                       bias=np.where(np.isin(head.genres, head.learned[:6]), head.bias, 0.0),
                       prior_logit=np.where(np.isin(head.genres, head.learned[:6]), head.prior_logit, 0.0))
        assert head.problem() is None
    elif case == "two-features":
        rng = np.random.default_rng(1)
        dim, k = 250, len(head.genres)
        head = replace(head, features=["MSD_musicnn/penultimate", "MTT_musicnn/taggram"], mean=rng.normal(0, 1, dim),
                       std=rng.uniform(0.5, 2, dim), weight=rng.normal(0, 0.3, (dim, k)) * ~head.unlearned(),
                       bias=rng.normal(0, 1, k) * ~head.unlearned(), prior_logit=np.zeros(k))
        assert head.problem() is None
    outputs = random_outputs(23, head)
    ours = numpy_model(outputs, head, chosen).logits(np.zeros((23, 96, 187), np.float32))
    theirs = torch_logits(outputs, head, chosen)
    assert ours.shape == theirs.shape == (23, len(chosen))
    # torch computes in float32, numpy in float64: the probabilities agree to float32 rounding.
    np.testing.assert_allclose(softmax(ours), softmax(theirs), atol=1e-5)


def test_probabilities_are_the_softmax_of_the_logits():
    head = GenreHead.load()
    outputs = random_outputs(4, head)
    segments = np.zeros((4, 96, 187), np.float32)
    probabilities = numpy_model(outputs, head, list(head.genres)).probabilities(segments)
    model = numpy_model(outputs, head, list(head.genres))
    np.testing.assert_allclose(probabilities, softmax(model.logits(segments)), rtol=1e-12)
    with pytest.raises(Exception, match="shape"):
        model.logits(np.zeros((4, 187, 96), np.float32))


def test_a_model_asked_for_some_genres_says_what_share_of_its_belief_they_hold():
    head = GenreHead.load()
    outputs = random_outputs(4, head, seed=3)
    segments = np.zeros((4, 96, 187), np.float32)
    asked = ["jazz", "metal"]

    def every() -> object:  # a fresh model each time: the stand-in taggers give their rows once
        return numpy_model(outputs, head, list(head.genres))

    def few() -> object:
        return numpy_model(outputs, head, asked)

    assert few().restricted and not every().restricted
    full = every().probabilities(segments)
    probabilities, share = few().asked_probabilities(segments)
    columns = [list(head.genres).index(g) for g in asked]
    np.testing.assert_allclose(share, full[:, columns].sum(axis=1), rtol=1e-9)
    np.testing.assert_allclose(probabilities, full[:, columns] / share[:, None], rtol=1e-9)
    np.testing.assert_allclose(few().probabilities(segments), probabilities, rtol=1e-12)
    np.testing.assert_allclose(every().asked_probabilities(segments)[1], 1.0, rtol=1e-12)
    # A share far below float64's smallest number still gives a finite answer among the genres asked.
    model = few()
    tiny, _ = model._all_logits(segments)
    tiny[:, columns] -= 2000.0
    model._all_logits = lambda _segments: (tiny.copy(), None)  # type: ignore[method-assign]
    probabilities, share = model.asked_probabilities(segments)
    assert np.isfinite(probabilities).all() and np.allclose(probabilities.sum(axis=1), 1) and (share == 0).all()


def test_the_constants_repeated_without_an_import_are_the_taggers():
    from genrify.models import taggers

    assert tagger_params() == taggers.MUSICNN_PARAMS
    assert onnx.PATCH_SHAPE == (taggers.PATCH_FRAMES, taggers.MUSICNN_PARAMS.n_mels)
    assert onnx.GRAPHS_DIR == taggers.PRETRAINED_DIR


@needs_onnx
def test_onnx_tagger_gives_back_what_it_is_given():
    torch = pytest.importorskip("torch")
    tagger = onnx.TaggerGraph("MSD_musicnn")
    x = np.random.default_rng(0).uniform(0, 3, (2, *onnx.PATCH_SHAPE)).astype(np.float32)
    as_numpy = tagger(x)
    assert all(isinstance(v, np.ndarray) for v in as_numpy.values())
    assert as_numpy["taggram"].shape == (2, 50) and as_numpy["penultimate"].shape == (2, 200)
    as_torch = tagger(torch.from_numpy(x))
    assert all(isinstance(v, torch.Tensor) for v in as_torch.values())
    np.testing.assert_array_equal(as_torch["taggram"].numpy(), as_numpy["taggram"])


@needs_onnx
def test_the_models_numpy_answer_equals_its_network(tmp_path):
    torch = pytest.importorskip("torch")
    from genrify.audio.segments import song_segments
    from genrify.audio.synth import synthesize_song

    model = load_builtin()
    assert model._network is None  # noqa: SLF001 - nothing torch was built
    import soundfile as sf

    path = tmp_path / "song.wav"
    sf.write(path, synthesize_song("jazz", 10.0, seed=5), 22050)
    segments = song_segments(path, model.params, model.chunk_frames).segments
    with torch.inference_mode():
        theirs = torch.softmax(model.network(torch.from_numpy(np.ascontiguousarray(segments))), dim=1).numpy()
    np.testing.assert_allclose(model.probabilities(segments), theirs, atol=1e-5)
    # The network's class is made on first use, and pickles by name like any other.
    again = pickle.loads(pickle.dumps(model.network))
    assert type(again) is type(model.network)


# Run in a child where torch cannot be imported, as in the core install.
_WITHOUT_TORCH = NO_TORCH + r"""
import numpy as np
from genrify.audio.segments import song_segments
from genrify.models.builtin import load_builtin

model = load_builtin()
segments = song_segments(sys.argv[1], model.params, model.chunk_frames).segments
probabilities = model.probabilities(segments)
assert "torch" not in sys.modules
print(json.dumps({"genres": model.genres, "probabilities": probabilities.tolist()}))
"""


@needs_onnx
def test_building_and_running_the_builtin_model_needs_no_torch(tmp_path):
    import soundfile as sf

    from genrify.audio.synth import synthesize_song

    path = tmp_path / "song.wav"
    sf.write(path, synthesize_song("rock", 8.0, seed=6), 22050)
    run = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    child = json.loads(run.stdout.strip().splitlines()[-1])
    torch = pytest.importorskip("torch")
    from genrify.audio.segments import song_segments

    model = load_builtin()
    segments = song_segments(path, model.params, model.chunk_frames).segments
    with torch.inference_mode():
        theirs = torch.softmax(model.network(torch.from_numpy(np.ascontiguousarray(segments))), dim=1).numpy()
    assert child["genres"] == model.genres
    np.testing.assert_allclose(np.array(child["probabilities"]), theirs, atol=1e-5)


@needs_onnx
def test_every_user_of_a_tagger_shares_its_graph_and_sessions():
    # A session per call cost `genrify tags` a graph load per song; a model per genre choice held
    # another copy of the taggers' memory.
    from genrify.models.taggers import load_onnx

    few, every = load_builtin(["rock", "jazz"]), load_builtin()
    assert all(few.onnx[n] is every.onnx[n] is onnx.tagger_graph(n) for n in TAGGER_NAMES)
    tagger = load_onnx("MSD_musicnn")
    assert tagger.tag_patches(np.zeros((1, 187, 96), np.float32)).taggram.shape == (1, 50)
    assert tagger._graph is onnx.tagger_graph("MSD_musicnn")
