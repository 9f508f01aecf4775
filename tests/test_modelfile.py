from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from genrify import modelfile
from genrify.config import TrainConfig
from genrify.errors import ModelFileError
from genrify.features import FeatureParams
from genrify.training import train


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


def test_save_leaves_no_temporary_file(saved_model):
    assert [p.name for p in saved_model.parent.iterdir() if p.name.startswith(".")] == []
    assert os.path.getsize(saved_model) > 100_000
