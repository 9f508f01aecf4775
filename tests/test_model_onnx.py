"""Model files hold their network's ONNX graph and classify on ONNX Runtime, without PyTorch.

Every architecture is trained for one epoch on the small synthetic store, saved, and its graph's
probabilities compared with its torch network's on a real song's segments (same genre, within
1e-4). Children with torch blocked load the files as classification does (``ModelRef``) and must
never import torch; a file made before graphs says there how to convert it, and ``genrify export``
converts it, changing nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import NO_TORCH

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from typer.testing import CliRunner  # noqa: E402

from genrify.cli import app  # noqa: E402
from genrify.errors import ModelFileError  # noqa: E402
from genrify.models import modelfile  # noqa: E402

TOLERANCE = 1e-4

# A child without torch: a finder refuses every torch import, and the registry package
# (genrify/models/__init__.py, which defines the trainable networks with torch) is bypassed, as in
# tests/test_builtin_numpy.py, so the child sees exactly what loading and running a graph imports.
# It loads each file named on the command line as classification does and prints one JSON line per
# file: the probabilities of the song's segments, or the error.
_WITHOUT_TORCH = NO_TORCH + r"""
from genrify.audio.segments import song_segments
from genrify.classify.modelref import ModelRef
from genrify.errors import ModelFileError

song = sys.argv[1]
for path in sys.argv[2:]:
    ref = ModelRef.file(path)
    try:
        ref.check()
        model = ref.load()
        segments = song_segments(song, model.params, model.chunk_frames).segments
        answer = {"kind": type(model).__name__, "genres": model.genres,
                  "probabilities": model.probabilities(segments).tolist()}
    except ModelFileError as exc:
        answer = {"error": str(exc)}
    print(json.dumps(answer))
assert "torch" not in sys.modules, "torch was imported"
"""


def _without_torch(song: Path, *models: Path) -> list[dict]:
    run = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(song), *map(str, models)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return [json.loads(line) for line in run.stdout.strip().splitlines()[-len(models):]]


def _torch_probabilities(path: Path, song: Path) -> tuple[np.ndarray, list[str]]:
    """The torch network's probabilities on the song's segments, as classification computed them
    before graphs."""
    from genrify.audio.segments import song_segments

    model = modelfile.load(path, runtime="torch")
    assert isinstance(model, modelfile.GenreModel)
    segments = song_segments(song, model.params, model.chunk_frames).segments
    with torch.inference_mode():
        logits = model.network(torch.from_numpy(np.ascontiguousarray(segments)))
    return torch.softmax(logits.float(), dim=1).numpy(), model.genres


def _same_answers(ours: np.ndarray, theirs: np.ndarray) -> None:
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=TOLERANCE, rtol=0)
    np.testing.assert_array_equal(ours.argmax(axis=1), theirs.argmax(axis=1))  # each segment's genre
    assert ours.mean(axis=0).argmax() == theirs.mean(axis=0).argmax()  # the song's genre


@pytest.fixture(scope="module")
def song(small_store) -> Path:
    """A song of the small store's music (the store's features carry the audio path)."""
    from genrify.store.store import FeatureStore

    with FeatureStore.open(small_store) as store:
        return Path(store.tracks()[0].path)


@pytest.fixture(scope="module")
def trained_files(small_store, model_file, tmp_path_factory) -> dict[str, Path]:
    """One model file per architecture: the tests' seed-cnn, the others trained for one epoch."""
    from genrify.learn.config import TrainConfig
    from genrify.learn.training import train
    from genrify.models import architecture, architectures

    out = tmp_path_factory.mktemp("archs")
    files = {}
    for name in architectures():
        if name == "seed-cnn":
            files[name] = model_file
            continue
        optimizer = "adam" if architecture(name).trainer == "embeddings" else "sgd"
        result = train(small_store, TrainConfig(arch=name, epochs=1, optimizer=optimizer), jobs=1)
        files[name] = modelfile.save(result.model, out / f"{name}.safetensors")
    return files


@pytest.fixture
def old_file(model_file, tmp_path) -> Path:
    """The tests' model saved as genrify saved models before graphs."""
    path = tmp_path / "old.safetensors"
    modelfile.save(modelfile.load(model_file, runtime="torch"), path, graph=False)
    return path


def test_every_architecture_saves_a_graph_that_answers_as_its_network(trained_files, song):
    from genrify.audio.segments import song_segments

    for name, path in trained_files.items():
        described = modelfile.graph_info(path)
        assert described is not None, name
        assert described["input"] == "x" and described["outputs"] == ["logits"] and described["opset"] == 17
        model = modelfile.load(path)
        assert isinstance(model, modelfile.GraphModel), name
        theirs, genres = _torch_probabilities(path, song)
        assert model.genres == genres
        segments = song_segments(song, model.params, model.chunk_frames).segments
        _same_answers(model.probabilities(segments), theirs)
        # and in batches smaller than the song: the same answers
        model.batch_size = 3
        _same_answers(model.probabilities(segments), theirs)


def test_a_graph_classifies_in_a_child_without_torch(trained_files, song):
    names = sorted(trained_files)
    answers = _without_torch(song, *(trained_files[n] for n in names))
    for name, answer in zip(names, answers, strict=True):
        assert answer.get("kind") == "GraphModel", (name, answer)
        theirs, genres = _torch_probabilities(trained_files[name], song)
        assert answer["genres"] == genres
        _same_answers(np.array(answer["probabilities"]), theirs)


def test_a_file_made_before_graphs_keeps_the_torch_path_and_says_how_to_convert_without_torch(old_file, song):
    assert modelfile.graph_info(old_file) is None
    assert isinstance(modelfile.load(old_file), modelfile.GenreModel)  # torch here: as before
    (answer,) = _without_torch(song, old_file)
    message = answer["error"]
    assert "\n" not in message and str(old_file) in message
    assert f"genrify export {old_file}" in message and "ONNX" in message


def test_export_adds_the_graph_and_changes_nothing_else(old_file, song):
    from safetensors import safe_open

    def contents(path: Path) -> tuple[dict, dict]:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118

    meta_before, before = contents(old_file)
    result = CliRunner().invoke(app, ["export", str(old_file)])
    assert result.exit_code == 0, result.output
    assert "graph added" in result.output and len(result.output.strip().splitlines()) == 1
    meta_after, after = contents(old_file)
    graph = after.pop(modelfile.GRAPH_TENSOR)
    assert graph.dtype == np.uint8 and graph.size > 1000
    assert set(after) == set(before)
    for key, value in before.items():
        assert after[key].dtype == value.dtype and after[key].tobytes() == value.tobytes(), key
    assert meta_after.pop(modelfile.GRAPH_KEY) and meta_after == meta_before

    # a second export keeps the file as it is; --check compares the graph with the network
    stored = old_file.read_bytes()
    again = CliRunner().invoke(app, ["export", str(old_file)])
    assert again.exit_code == 0 and "already" in again.output and old_file.read_bytes() == stored
    checked = CliRunner().invoke(app, ["export", str(old_file), "--check"])
    assert checked.exit_code == 0 and "answers as the network" in checked.output
    assert old_file.read_bytes() == stored

    (answer,) = _without_torch(song, old_file)
    assert answer.get("kind") == "GraphModel", answer
    theirs, _ = _torch_probabilities(old_file, song)
    _same_answers(np.array(answer["probabilities"]), theirs)


@pytest.mark.parametrize("kind", ["text", "head", "safetensors"])
def test_export_refuses_what_is_not_a_network_model_and_leaves_it_as_it_was(kind, tmp_path):
    import shutil

    from safetensors.numpy import save_file

    from genrify.models.builtin import HEAD_PATH

    path = tmp_path / "not-a-model.safetensors"
    if kind == "text":
        path.write_text("genres: rock, jazz\n")
    elif kind == "head":
        shutil.copyfile(HEAD_PATH, path)
    else:
        save_file({"w": np.zeros(3, np.float32)}, str(path), metadata={"other": "program"})
    stored = path.read_bytes()
    result = CliRunner().invoke(app, ["export", str(path)])
    assert result.exit_code == 1
    assert "error:" in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert path.read_bytes() == stored
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind


def test_saving_without_the_onnx_package_warns_once_and_still_saves(model_file, tmp_path, monkeypatch):
    model = modelfile.load(model_file, runtime="torch")
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    monkeypatch.setattr(modelfile, "_WARNED", set())
    said: list[str] = []
    for name in ("a", "b"):
        modelfile.save(model, tmp_path / f"{name}.safetensors", warn=said.append)
    assert len(said) == 1 and "\n" not in said[0] and "genrify export" in said[0] and "onnx" in said[0]
    for name in ("a", "b"):
        path = tmp_path / f"{name}.safetensors"
        assert modelfile.graph_info(path) is None
        assert isinstance(modelfile.load(path), modelfile.GenreModel)


def test_a_damaged_graph_is_refused_in_one_line(model_file, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(model_file), framework="numpy") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    tensors[modelfile.GRAPH_TENSOR] = np.frombuffer(b"not a graph at all", dtype=np.uint8).copy()
    path = tmp_path / "damaged.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ModelFileError, match="ONNX graph") as caught:
        modelfile.load(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    # the torch network is still there for `genrify export --force`
    assert isinstance(modelfile.load(path, runtime="torch"), modelfile.GenreModel)
    del metadata[modelfile.GRAPH_KEY]  # a graph without its description
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ModelFileError, match="damaged"):
        modelfile.load(path)


def test_a_graph_model_is_loaded_once_and_gives_its_torch_network_on_demand(model_file):
    from genrify.classify.modelref import ModelRef

    ref = ModelRef.file(model_file)
    ref.check()
    model = ref.load()
    assert isinstance(model, modelfile.GraphModel) and ref.load() is model
    assert model.name == model_file.name and model.info == modelfile.read_metadata(model_file)["info"]
    network = model.network  # the same file's weights, on torch, for a GPU
    assert not network.training
    x = np.random.default_rng(0).normal(-40, 15, (4, model.params.n_mels, model.chunk_frames)).astype(np.float32)
    with torch.inference_mode():
        theirs = network(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.logits(x), theirs, atol=TOLERANCE, rtol=0)

