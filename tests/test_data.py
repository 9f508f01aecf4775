from __future__ import annotations

import numpy as np
import pytest
import torch

from genrify.audio.segments import chunk_starts
from genrify.errors import TrainingError
from genrify.learn.config import Augment
from genrify.learn.data import Batches, ChunkDataset
from genrify.models.normalization import Normalization
from genrify.store.store import FeatureStore, write_array

AUG = Augment(time_masks=1, freq_masks=1, pitch_shift=2)


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
        make = lambda: ChunkDataset(store, paths, ["classical", "hiphop", "metal"], norm, hop_frames=64,
                                    augment=AUG, seed=1)
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
