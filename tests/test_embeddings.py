"""Transfer learning on pretrained musicnn embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrify.learn.config import TrainConfig
from genrify.models import modelfile
from genrify.learn.embeddings import (
    EmbeddingSet,
    ShuffledBatches,
    embedding_file,
    ensure_embeddings,
)
from genrify.classify.predict import classify
from genrify.learn.evaluation import evaluate_model
from genrify.learn.training import train
from genrify.store.store import FeatureStore


@pytest.fixture(scope="module")
def trained(small_store, tmp_path_factory):
    # the one training entry: the registry entry sends this architecture to the embeddings trainer
    result = train(small_store, TrainConfig(arch="musicnn-transfer", optimizer="adam", epochs=30), jobs=1)
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


def test_a_track_that_cannot_be_embedded_is_a_failure_naming_it(small_store, trained, tmp_path):
    import dataclasses

    from genrify.core.runner import LocalRunner
    from genrify.errors import ParameterError

    with FeatureStore.open(small_store) as store:
        gone = dataclasses.replace(store.tracks()[0], path=str(tmp_path / "gone.wav"))
        files, failures = ensure_embeddings(store, [gone], "MSD_musicnn", runner=LocalRunner(1))
        with pytest.raises(ParameterError, match="runner or jobs"):
            ensure_embeddings(store, [gone], "MSD_musicnn", runner=LocalRunner(1), jobs=1)
    assert files == {} and [p for p, _ in failures] == [gone.path]
    assert "gone.wav" in failures[0][1]


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


def test_the_model_file_records_the_architectures_own_input(trained):
    result, path = trained
    from genrify.models import architecture

    entry = architecture("musicnn-transfer")
    model = modelfile.load(path)
    assert entry.reads_audio and model.params == entry.params and model.chunk_frames == entry.chunk_frames
    assert result.model.info["runs"][0]["history"] and result.model.info["test_tracks"]


def test_embedding_sets_serve_batches_like_chunk_datasets(small_store, trained):
    with FeatureStore.open(small_store) as store:
        tracks = store.tracks()[:4]
        files = {t.path: embedding_file(store.root, "MSD_musicnn", t) for t in tracks}
        genres = sorted({t.genre for t in tracks})
        data = EmbeddingSet(files, [t.path for t in tracks], genres, {t.path: t.genre for t in tracks}, 1506)
    counts = [len(np.load(files[t.path])) for t in tracks]
    assert len(data) == sum(counts) and data.track_ids.tolist() == [i for i, c in enumerate(counts) for _ in range(c)]
    x, y, track = data.batch(np.array([0, len(data) - 1]))
    assert x.shape == (2, 1506) and x.dtype == torch.float32 and track.tolist() == [0, 3]
    assert y.tolist() == [genres.index(tracks[0].genre), genres.index(tracks[3].genre)]
    # every pass a new order, the same orders for the same seed
    loader = ShuffledBatches(data, 5, seed=3)
    orders = [[t.tolist() for _, _, t in loader] for _ in range(2)]
    a, b = ShuffledBatches(data, 5, seed=7), ShuffledBatches(data, 5, seed=7)
    first = [y.tolist() for _, y, _ in a]
    assert first == [y.tolist() for _, y, _ in b] and len(first) == len(a) == -(-len(data) // 5)
    assert orders[0] != orders[1], "a new order every pass"
    assert sorted(t for batch in orders[0] for t in batch) == sorted(data.track_ids.tolist())
    empty = EmbeddingSet(files, [], genres, {}, 1506)
    assert len(empty) == 0 and empty.x.shape == (0, 1506)


def test_embeddings_train_in_one_process_only(small_store, monkeypatch):
    from genrify.errors import ParameterError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ParameterError, match="trains in one process"):
        train(small_store, TrainConfig(arch="musicnn-transfer"))
