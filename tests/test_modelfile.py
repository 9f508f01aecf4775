from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from genrify.audio.features import FeatureParams
from genrify.errors import ModelFileError
from genrify.learn.config import TrainConfig
from genrify.learn.training import train
from genrify.models import modelfile


@pytest.fixture(scope="module")
def saved_model(small_store, tmp_path_factory) -> Path:
    result = train(small_store, TrainConfig(epochs=1, batch_size=16))
    return modelfile.save(result.model, tmp_path_factory.mktemp("model") / "model.safetensors")


def test_model_file_refuses_other_feature_parameters(saved_model):
    with pytest.raises(ModelFileError, match=r"other feature parameters than the model's: n_mels=128 \(not 96\)"):
        modelfile.load(saved_model, params=FeatureParams(n_mels=96))


def test_truncated_model_file(saved_model, tmp_path):
    cut = tmp_path / "cut.safetensors"
    data = saved_model.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.safetensors: the model file is damaged|not a safetensors"):
        modelfile.load(cut)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 a zip, perhaps a pickle", b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}"])
def test_not_a_model_file(tmp_path, content):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=r"x.safetensors: not a"):
        modelfile.load(path)


def test_safetensors_without_genrify_metadata(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelFileError, match="not a genrify model"):
        modelfile.load(tmp_path / "other.safetensors")


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        modelfile.load(tmp_path / "nope.safetensors")
    with pytest.raises(ModelFileError, match="a folder, not a model file"):
        modelfile.load(tmp_path)


def test_save_leaves_no_temporary_file(saved_model):
    assert [p.name for p in saved_model.parent.iterdir() if p.name.startswith(".")] == []
    assert os.path.getsize(saved_model) > 100_000


def test_a_model_file_gets_the_umask_mode_like_any_output(saved_model, tmp_path):
    import stat

    model = modelfile.load(saved_model)
    old = os.umask(0o022)
    try:
        path = modelfile.save(model, tmp_path / "shared.safetensors")
    finally:
        os.umask(old)
    # safetensors alone makes 0600 files, which a server running as another user cannot read.
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["shared.safetensors"]


# --- hostile and damaged files: every field is checked on load, with one line naming it ---------


def _tiny_model_file(path: Path) -> Path:
    """A small, valid, untrained model file, made without training (fast)."""
    import numpy as np

    from genrify.models import GenreNetwork, build
    from genrify.models.normalization import Normalization

    params = FeatureParams(n_mels=16)
    config = {"channels": [4, 4, 4], "dense": [8, 8]}
    body = build("seed-cnn", n_mels=16, n_genres=3, **config)
    mean, std = np.zeros(16, dtype=np.float32), np.ones(16, dtype=np.float32)
    model = modelfile.GenreModel(
        network=GenreNetwork(body, torch.from_numpy(mean), torch.from_numpy(std)), genres=["jazz", "metal", "pop"],
        params=params, normalization=Normalization(mean, std), architecture="seed-cnn",
        architecture_config=config, chunk_frames=32,
    )
    return modelfile.save(model, path)


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    return _tiny_model_file(tmp_path / "tiny.safetensors")


def _rewrite(path: Path, *, meta=None, raw: str | None = None, tensors=None) -> Path:
    """Write ``path`` again with changed metadata (``meta`` changes fields; ``raw`` replaces the
    JSON text) or tensors (``tensors`` changes some), as a hostile or damaged file would hold."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        current = json.loads(f.metadata()["genrify"])
    body = load_file(str(path))
    body.update(tensors or {})
    text = raw if raw is not None else json.dumps({**current, **(meta or {})})
    out = path.with_name("hostile.safetensors")
    save_file(body, str(out), metadata={"genrify": text})
    return out


def test_a_tiny_model_file_loads(tiny_model):
    model = modelfile.load(tiny_model)
    assert model.genres == ["jazz", "metal", "pop"] and model.chunk_frames == 32


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        ({"chunk_frames": 1e12}, "chunk_frames"),
        ({"chunk_frames": 10**12}, "chunk_frames"),
        ({"chunk_frames": "128"}, "chunk_frames"),
        ({"chunk_frames": 0}, "chunk_frames"),
        ({"genres": ["jazz", "jazz", "pop"]}, "genres"),
        ({"genres": ["jazz", "", "pop"]}, "genres"),
        ({"genres": ["jazz", "  ", "pop"]}, "genres"),
        ({"genres": ["jazz", 3, "pop"]}, "genres"),
        ({"genres": ["jazz", "metal\nrock", "pop"]}, "genres"),
        ({"genres": ["jazz"]}, "genres"),
        ({"genres": "jazz,metal,pop"}, "genres"),
        ({"genres": [f"g{i}" for i in range(1001)]}, "genres"),
        ({"features": None}, "features"),
        ({"features": {**FeatureParams(n_mels=16).to_dict(), "sample_rate": 22050.5}}, "features"),
        ({"features": {**FeatureParams(n_mels=16).to_dict(), "n_fft": 10**9}}, "features"),
        ({"features": {**FeatureParams(n_mels=16).to_dict(), "sample_rate": "fast"}}, "features"),
        ({"features": {**FeatureParams(n_mels=16).to_dict(), "n_mels": 10**7}}, "features"),
        ({"architecture": "no-such-net"}, "architecture"),
        ({"architecture": ["seed-cnn"]}, "architecture"),
        ({"architecture_config": None}, "architecture_config"),
        ({"architecture_config": {"channels": [10**9, 4, 4]}}, "architecture_config"),
        ({"architecture_config": {"channels": {"a": 1}}}, "architecture_config"),
        ({"version": "1"}, "version"),
        ({"version": 0}, "version"),
        ({"genrify_version": {"x": 1}}, "genrify_version"),
        ({"info": []}, "info"),
        ({"info": {"summary": {"song_accuracy_mean": 0.5}}}, "info.summary"),
        ({"info": {"summary": "great"}}, "info.summary"),
        ({"info": {"config": [1]}}, "info.config"),
    ],
)
def test_hostile_metadata_is_refused_naming_the_field(tiny_model, meta, field):
    bad = _rewrite(tiny_model, meta=meta)
    for read in (modelfile.read_metadata, modelfile.load):
        with pytest.raises(ModelFileError) as caught:
            read(bad)
        message = str(caught.value)
        assert message.startswith(f"{bad}: bad model metadata: {field}") and "\n" not in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("null", "not a JSON object"), ("[1, 2]", "not a JSON object"), ('"model"', "not a JSON object"),
     ("[" * 100_000, "not valid JSON"), ('{"chunk_frames": NaN}', "not valid JSON")],
)
def test_metadata_that_is_no_json_object(tiny_model, raw, expected):
    bad = _rewrite(tiny_model, raw=raw)
    with pytest.raises(ModelFileError, match=expected):
        modelfile.read_metadata(bad)


def test_nan_weights_and_zero_spread_are_refused_on_load(tiny_model):
    # The torch network's checks (a file without a graph, or a GPU run); a graph is checked by its
    # own dry run (tests/test_model_onnx.py).
    from safetensors.torch import load_file

    tensors = load_file(str(tiny_model))
    name = next(k for k in tensors if k.startswith("model.") and tensors[k].is_floating_point())
    poisoned = tensors[name].clone()
    poisoned.view(-1)[0] = float("nan")
    with pytest.raises(ModelFileError, match=rf"hostile.safetensors: tensor {name} holds NaN or infinite"):
        modelfile.load(runtime="torch", path=_rewrite(tiny_model, tensors={name: poisoned}))
    infinite = tensors["norm.mean"].clone()
    infinite[3] = float("inf")
    with pytest.raises(ModelFileError, match="tensor norm.mean holds NaN or infinite"):
        modelfile.load(runtime="torch", path=_rewrite(tiny_model, tensors={"norm.mean": infinite}))
    for spread in (0.0, -1.0):
        std = tensors["norm.std"].clone()
        std[5] = spread
        with pytest.raises(ModelFileError, match=r"tensor norm.std holds values <= 0"):
            modelfile.load(runtime="torch", path=_rewrite(tiny_model, tensors={"norm.std": std}))


def test_options_that_do_not_match_the_weights_are_refused_before_building(tiny_model):
    # Options within bounds that describe a bigger network than the file holds: the shapes are
    # compared on the meta device, so nothing of the (possibly huge) network is allocated.
    bad = _rewrite(tiny_model, meta={"architecture_config": {"channels": [100_000, 100_000, 100_000], "dense": [8, 8]}})
    with pytest.raises(ModelFileError, match="hostile.safetensors: the weights do not fit architecture 'seed-cnn'"):
        modelfile.load(bad, runtime="torch")
    # Options and a chunk length the network cannot process fail on load, not on the first song.
    for meta in ({"architecture_config": {"channels": [4, 4, 4], "dense": [8, 8], "pools": [0, 0, 0]}},
                 {"chunk_frames": 1}):
        with pytest.raises(ModelFileError, match="hostile.safetensors: bad model metadata: architecture_config and chunk_frames"):
            modelfile.load(_rewrite(tiny_model, meta=meta), runtime="torch")


def test_info_shows_a_hostile_file_as_one_line(tiny_model):
    import subprocess
    import sys

    def info(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "genrify.cli", "info", str(path)],
                              capture_output=True, text=True, timeout=120)

    result = info(_rewrite(tiny_model, raw="null"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "not a JSON object" in lines[0]
    # A training config with fewer settings than genrify writes is shown as it is.
    result = info(_rewrite(tiny_model, meta={"info": {"config": {"lr": 0.1}}}))
    assert result.returncode == 0 and "lr=0.1" in result.stdout, result.stderr


def test_is_model_file_knows_genrifys_models_from_everything_else(tmp_path):
    import json

    from helpers import untrained_model
    from safetensors.torch import save_file

    model = modelfile.save(untrained_model(["a", "b"]), tmp_path / "m.safetensors")
    assert modelfile.is_model_file(model)
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"genrify": json.dumps({"format": "something-else"})})
    (tmp_path / "song.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe")  # must not block
    for name in ("other.safetensors", "song.wav", "notes.txt", "empty", "pipe", "missing", ""):
        assert not modelfile.is_model_file(tmp_path / name), name


def test_runtime_for_tells_from_the_header_how_a_file_will_run(tiny_model, tmp_path, monkeypatch):
    from genrify.models import onnx
    from genrify.models.modelfile import not_runnable, runtime_for

    assert runtime_for(tiny_model) == "onnx" and not_runnable(tiny_model) is None  # saved with its graph
    bare = modelfile.save(modelfile.load(tiny_model, runtime="torch"), tmp_path / "bare.safetensors", graph=False)
    assert runtime_for(bare) == "torch"
    monkeypatch.setattr(modelfile, "torch_installed", lambda: False)
    assert runtime_for(bare) is None and "genrify export" in not_runnable(bare)
    monkeypatch.setattr(onnx, "runtime_available", lambda: False)
    assert runtime_for(tiny_model) is None and "needs ONNX Runtime" in not_runnable(tiny_model)
