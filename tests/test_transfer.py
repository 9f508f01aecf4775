"""Transfer learning on pretrained musicnn embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrify import modelfile
from genrify.config import TrainConfig
from genrify.evaluation import evaluate_model
from genrify.predict import classify
from genrify.store import FeatureStore
from genrify.transfer import embedding_file, ensure_embeddings, train_transfer


@pytest.fixture(scope="module")
def trained(small_store, tmp_path_factory):
    result = train_transfer(small_store, TrainConfig(arch="musicnn-transfer", optimizer="adam", epochs=30), jobs=1)
    path = modelfile.save(result.model, tmp_path_factory.mktemp("transfer") / "t.safetensors")
    return result, path


def test_embeddings_are_cached_in_the_store_and_reused(small_store, trained):
    with FeatureStore.open(small_store) as store:
        tracks = store.tracks()
        files = [embedding_file(store.root, "MSD_musicnn", t) for t in tracks]
        assert all(f.exists() for f in files)
        stamps = [f.stat().st_mtime_ns for f in files]
        progress = []
        ensure_embeddings(store, tracks, "MSD_musicnn", jobs=1, on_progress=lambda d, t: progress.append((d, t)))
    assert progress == [(len(tracks), len(tracks))]  # nothing left to compute
    assert [f.stat().st_mtime_ns for f in files] == stamps
    first = np.load(files[0])
    assert first.dtype == np.float16 and first.shape[1] == 1506


def test_the_head_learns_and_the_model_file_works_like_any_other(small_store, trained):
    result, path = trained
    assert result.runs[0].evaluation.song_accuracy >= 2 / 3  # 3 genres, 3 test songs; chance is 1/3
    model = modelfile.load(path)
    assert model.architecture == "musicnn-transfer" and model.params.sample_rate == 16000
    song = result.runs[0].split.test[0]
    # classify from the audio == the head on the cached embeddings of the same patches
    with FeatureStore.open(small_store) as store:
        track = next(t for t in store.tracks() if t.path == song)
        cached = np.load(embedding_file(store.root, "MSD_musicnn", track)).astype(np.float32)
    body = model.network.body
    with torch.inference_mode():
        from_cache = torch.softmax(body.head(torch.from_numpy(cached)), dim=1).numpy()
    prediction = classify(song, model)
    assert prediction.segments == len(cached)
    np.testing.assert_allclose(prediction.segment_probabilities, from_cache, atol=2e-3)


def test_evaluate_reads_the_audio(small_store, trained):
    result, path = trained
    evaluation = evaluate_model(path, small_store)
    assert evaluation.songs == len(result.runs[0].split.test)
    assert evaluation.evaluation.song_accuracy == pytest.approx(result.runs[0].evaluation.song_accuracy)
