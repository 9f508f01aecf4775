from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from genrify import modelfile
from genrify.config import Augment, TrainConfig
from genrify.data import Batches, ChunkDataset, Normalization, chunk_starts
from genrify.errors import ModelFileError, ParameterError, SplitError, TrainingError
from genrify.evaluation import evaluate_model, write_report
from genrify.extract import extract
from genrify.features import FeatureParams
from genrify.store import FeatureStore, write_array
from genrify.synth import SynthSpec, write_dataset
from genrify.training import System, train


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    """3 synthetic genres x 6 songs x 6 s, extracted."""
    root = tmp_path_factory.mktemp("small")
    write_dataset(root / "music", SynthSpec(genres=("classical", "hiphop", "metal"), per_genre=6, seconds=6.0, seed=0, fmt="wav"))
    extract(root / "music", root / "store", jobs=1)
    return root / "store"


FAST = TrainConfig(epochs=2, batch_size=16, patience=2, augment=Augment(time_masks=1, freq_masks=1, pitch_shift=2, mixup=0.2))


def test_chunk_starts():
    assert chunk_starts(1292).tolist() == list(range(0, 1292 - 128 + 1, 128))
    assert chunk_starts(300, 128, 64).tolist() == [0, 64, 128]
    assert chunk_starts(20).tolist() == [0]  # a short clip: one padded chunk


def test_dataset_reads_chunks_from_the_store(small_store):
    with FeatureStore.open(small_store) as store:
        paths = [t.path for t in store.tracks()]
        norm = Normalization.fit(store, paths)
        ds = ChunkDataset(store, paths, ["classical", "hiphop", "metal"], norm)
        x, y, t = ds.batch([0, len(ds) - 1])
        assert x.shape == (2, 128, 128) and x.dtype == torch.float16
        first = np.asarray(store.load(paths[0])[:, :128], dtype=np.float32)
        np.testing.assert_array_equal(x[0].float().numpy(), first)
        assert y.tolist() == [0, 2] and t.tolist() == [0, len(paths) - 1]
        # normalisation statistics: per band, over every frame
        all_frames = np.concatenate([np.asarray(store.load(p), dtype=np.float64) for p in paths], axis=1)
        np.testing.assert_allclose(norm.mean, all_frames.mean(axis=1), rtol=1e-4)


def test_augmented_batches_repeat_for_a_seed_and_change_with_the_epoch(small_store):
    with FeatureStore.open(small_store) as store:
        paths = [t.path for t in store.tracks()]
        norm = Normalization.fit(store, paths)
        make = lambda: ChunkDataset(store, paths, ["classical", "hiphop", "metal"], norm, hop_frames=64,  # noqa: E731
                                    augment=FAST.augment, seed=1)
        a, b = make(), make()
        batches_a = [x for x, _, _ in Batches(a, 8, shuffle=True, seed=1)]
        batches_b = [x for x, _, _ in Batches(b, 8, shuffle=True, seed=1, prefetch=0)]
        assert all(torch.equal(p, q) for p, q in zip(batches_a, batches_b, strict=True))
        a.set_epoch(1)
        assert not torch.equal(next(iter(Batches(a, 8, shuffle=True, seed=1)))[0], batches_a[0])


def test_nan_features_are_refused_with_the_track(small_store, tmp_path):
    with FeatureStore.create(tmp_path / "s") as store:
        for i, genre in enumerate(["a", "a", "a", "b", "b", "b"]):
            arr = np.zeros((128, 200), dtype=np.float32)
            if i == 4:
                arr[3, 7] = np.nan
            path = f"/m/{genre}/{i}.wav"
            store.record_done(path=path, genre=genre, size=1, mtime_ns=1, artist=None, duration=1.0, frames=200,
                              array=write_array(store.root, path, arr))
    with pytest.raises(TrainingError, match=r"/m/b/4.wav: its stored features hold NaN"):
        with FeatureStore.open(tmp_path / "s") as store:
            Normalization.fit(store, [t.path for t in store.tracks()])


def test_system_uses_the_seeds_optimiser_and_decay():
    net = torch.nn.Linear(4, 2)
    system = System(net, TrainConfig())
    opt = system.optimizer
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] and group["initial_lr"] == 1e-3
    for _ in range(1000):
        system._step(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    assert system.scheduler.get_last_lr()[0] == pytest.approx(1e-3 / (1 + 1e-5 * 1000))


def test_train_save_load_and_evaluate(small_store, tmp_path):
    result = train(small_store, FAST, runs=2)
    assert len(result.runs) == 2 and all(1 <= len(r.history) <= 2 for r in result.runs)
    summary = result.summary()
    assert summary["runs"] == 2 and 0.0 <= summary["song_accuracy_mean"] <= 1.0
    model_path = modelfile.save(result.model, tmp_path / "m.safetensors")
    model = modelfile.load(model_path, params=FeatureParams())
    assert model.genres == ["classical", "hiphop", "metal"] and model.architecture == "seed-cnn"
    x = torch.randn(2, 128, 128) * 10 - 30
    torch.testing.assert_close(model.network(x), result.model.network.eval()(x))
    # the model remembers its test songs: evaluating on the same store reproduces the kept run
    kept = result.runs[result.model.info["kept_run"]].evaluation
    again = evaluate_model(model_path, small_store)
    assert again.selection == "the model's test songs" and again.songs == len(kept.paths)
    assert again.evaluation.song_accuracy == pytest.approx(kept.song_accuracy)
    report = write_report(model_path, genres=model.genres, summary=summary, runs=model.info["runs"])
    data = json.loads((report / "report.json").read_text())
    assert {"song_accuracy_mean", "song_accuracy_std", "chunk_accuracy_mean"} <= set(data["summary"])
    assert len(data["runs"]) == 2 and data["runs"][0]["history"]
    assert (report / "curves.png").stat().st_size > 10_000 and (report / "confusion.png").stat().st_size > 10_000


def test_training_is_deterministic_for_a_seed(small_store):
    a = train(small_store, FAST)
    b = train(small_store, FAST)
    assert [h.train_loss for h in a.runs[0].history] == [h.train_loss for h in b.runs[0].history]
    for p, q in zip(a.model.network.parameters(), b.model.network.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_genre_with_too_few_songs(tmp_path):
    write_dataset(tmp_path / "music", SynthSpec(genres=("jazz", "pop"), per_genre=2, seconds=2.0, seed=0, fmt="wav"))
    extract(tmp_path / "music", tmp_path / "store", jobs=1)
    with pytest.raises(SplitError, match="each genre needs at least 3 songs"):
        train(tmp_path / "store", FAST)


def test_bad_settings():
    with pytest.raises(ParameterError, match="unknown optimiser 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ParameterError):
        TrainConfig(epochs=0)


# --- model files -----------------------------------------------------------------------------


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
