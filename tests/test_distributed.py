"""Extraction and classification on a real Dask cluster: a scheduler and two worker processes on
loopback, started here and torn down at the end."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from genrify.audio.features import FeatureParams
from genrify.classify.modelref import ModelRef
from genrify.classify.predict import Failure, Prediction
from genrify.classify.service import ClassifyOptions, classify_library
from genrify.collection.library import scan
from genrify.core import distributed as gd
from genrify.core.runner import CRASHED, LocalRunner, Processor
from genrify.errors import DependencyError, ModelFileError, ParameterError
from genrify.store.extract import EXTRACTOR, ExtractSummary, extract, extract_track, extract_tracks
from genrify.store.store import ARRAYS_DIR, FeatureStore

GENRES = ("classical", "hiphop", "metal")


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes and a scheduler, on 127.0.0.1 only."""
    environ = dict(os.environ)  # Dask's nannies set OMP_NUM_THREADS & co. here; later tests must not inherit them
    started = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        silence_logs=50,  # the nanny's notes on the workers killed on purpose below
    )
    client = distributed.Client(started, timeout=60)
    try:
        client.wait_for_workers(2, timeout=60)
        yield started, client
    finally:
        client.close(timeout=30)
        started.close(timeout=30)
        os.environ.clear()
        os.environ.update(environ)


@pytest.fixture
def client(cluster):
    _cluster, c = cluster
    c.wait_for_workers(2, timeout=60)  # a worker killed by an earlier test has been restarted
    return c


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """3 synthetic genres x 4 songs x 3 s, and its local extraction (the reference)."""
    from genrify.audio.synth import SynthSpec, write_dataset

    root = tmp_path_factory.mktemp("dask")
    write_dataset(root / "music", SynthSpec(genres=GENRES, per_genre=4, seconds=3.0, seed=3, fmt="wav"))
    extract(root / "music", root / "local", jobs=1)
    return root


def dask_extract(music: Path, store_dir: Path, client, processor: Processor = EXTRACTOR,
                 **options) -> tuple[ExtractSummary, list]:
    """What ``genrify extract --scheduler`` does: the workers extract, this process records."""
    results: list = []
    summary = extract(music, store_dir, runner=gd.DaskRunner(client, **options), processor=processor,
                      on_result=results.append)
    return summary, results


def assert_same_store(a: Path, b: Path) -> None:
    with FeatureStore.open(a) as one, FeatureStore.open(b) as two:
        rows_a, rows_b = one.tracks(status=None), two.tracks(status=None)
        assert [r.path for r in rows_a] == [r.path for r in rows_b]
        for ra, rb in zip(rows_a, rows_b, strict=True):
            assert (ra.status, ra.frames, ra.duration, ra.flags, ra.artist, ra.array) == (
                rb.status, rb.frames, rb.duration, rb.flags, rb.artist, rb.array)
            if ra.status == "done":
                np.testing.assert_array_equal(one.load(ra, mmap=False), two.load(rb, mmap=False))


def arrays_in(store: Path) -> list[Path]:
    return [p for p in (store / ARRAYS_DIR).rglob("*.npy") if not p.name.startswith(".")]


# --- extraction --------------------------------------------------------------------------------


def test_extraction_on_dask_equals_the_local_run(library, client, tmp_path):
    summary, results = dask_extract(library / "music", tmp_path / "store", client, batch_size=3)
    assert summary.done == 12 and not summary.failed
    assert sorted(r.track.path for r in results) == sorted(t.path for t in scan(library / "music").tracks)
    assert_same_store(library / "local", tmp_path / "store")
    assert len(arrays_in(tmp_path / "store")) == 12


def _slow_extract(track, store_dir, params):
    time.sleep(0.4)
    return extract_track(track, store_dir, params)


def _flaky_setup(store_dir, params):
    marker = Path(store_dir) / ".attempted-setup"
    if not marker.exists():
        marker.touch()
        raise OSError("stale NFS file handle")


#: The real task, slowed down so that a worker can be killed while it holds a batch.
SLOW = Processor(_slow_extract, EXTRACTOR.failed)
#: A task whose first attempt fails (a filesystem hiccup) before it reaches any track, then works.
FLAKY = Processor(EXTRACTOR.process, EXTRACTOR.failed, setup=_flaky_setup)


def test_a_task_that_raises_is_retried(library, client, tmp_path):
    summary, results = dask_extract(library / "music", tmp_path / "store", client, FLAKY, batch_size=4)
    assert summary.done == 12 and len(results) == 12
    for marker in tmp_path.joinpath("store").glob(".attempted-*"):
        marker.unlink()
    assert_same_store(library / "local", tmp_path / "store")
    with pytest.raises(OSError, match="stale NFS"):
        dask_extract(library / "music", tmp_path / "again", client, FLAKY, batch_size=4, retries=0)


def test_workers_that_cannot_see_the_store_fail_early(library, client, tmp_path):
    tracks = scan(library / "music").tracks
    with pytest.raises(ParameterError, match="shared filesystem"):
        list(extract_tracks(tracks, str(tmp_path / "nowhere"), FeatureParams(), gd.DaskRunner(client)))


def test_a_worker_killed_mid_run_costs_nothing(library, client, tmp_path):
    pids = client.run(os.getpid)
    first = threading.Event()
    killed: list[int] = []

    def kill_a_busy_worker() -> None:
        if not first.wait(60):
            return
        busy = [w for w, keys in client.processing().items() if keys and w in pids] or sorted(pids)
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed.append(pids[busy[0]])

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    library_tracks = scan(library / "music").tracks
    results = []
    started = time.monotonic()

    def on_result(result) -> None:
        first.set()
        results.append(result)

    summary = extract(library / "music", tmp_path / "store", runner=gd.DaskRunner(client, batch_size=2), processor=SLOW,
                      on_result=on_result)
    killer.join(10)
    assert killed, "a worker was killed"
    assert time.monotonic() - started < 90
    assert sorted(r.track.path for r in results) == sorted(t.path for t in library_tracks), "each track once"
    assert all(r.ok for r in results) and summary.done == 12
    assert_same_store(library / "local", tmp_path / "store")
    assert len(arrays_in(tmp_path / "store")) == 12
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in client.run(os.getpid).values(), "the killed worker was replaced"


def test_a_crashing_decoder_costs_only_its_own_file(make_library, cluster, client, tmp_path, monkeypatch):
    from crashing_worker import CRASHING_EXTRACTOR

    music = make_library({"rock": [f"ok{i}.wav" for i in range(6)] + ["crash.wav"]}, seconds=0.5)
    local_cluster, _ = cluster
    # Dask gives a task that kills its worker 3 more tries by default; one keeps the test short.
    monkeypatch.setattr(local_cluster.scheduler, "allowed_failures", 0)
    summary, results = dask_extract(music, tmp_path / "store", client, CRASHING_EXTRACTOR, batch_size=4)
    by_name = {os.path.basename(r.track.path): r for r in results}
    assert len(results) == 7 and len(by_name) == 7, "every track reported exactly once"
    assert by_name["crash.wav"].error == "the decoder crashed on this file"
    assert all(r.ok for name, r in by_name.items() if name != "crash.wav")
    assert summary.done == 6 and summary.failed == [(str(music / "rock" / "crash.wav"), CRASHED)]


# --- classification ----------------------------------------------------------------------------


def classified(files, ref, runner, **options) -> list:
    """The classification service's results: on the cluster with a Dask runner, here with a local one."""
    return classify_library(files, ref, runner=runner, options=ClassifyOptions(**options)).results


def test_classification_on_dask_equals_the_local_run(small_store, model_file, client, tmp_path):
    songs = sorted(str(p) for p in (small_store.parent / "music").rglob("*.wav"))[:7]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF" + os.urandom(200))
    files = [*songs, str(bad)]
    ref = ModelRef.file(model_file)
    local = {r.path: r for r in classified(files, ref, LocalRunner(1), hop_seconds=1.5)}
    remote = classified(files, ref, gd.DaskRunner(client, batch_size=3), hop_seconds=1.5)
    assert sorted(r.path for r in remote) == sorted(files)
    for r in remote:
        want = local[r.path]
        assert type(r) is type(want)
        if isinstance(r, Failure):
            assert r.error == want.error
            continue
        assert isinstance(r, Prediction) and r.genres == want.genres
        np.testing.assert_allclose(r.probabilities, want.probabilities, atol=1e-6)
        np.testing.assert_allclose(r.segment_probabilities, want.segment_probabilities, atol=1e-6)
        np.testing.assert_array_equal(r.votes, want.votes)
        np.testing.assert_array_equal(r.segment_starts, want.segment_starts)
        assert (r.segments, r.duration) == (want.segments, want.duration)


def test_the_built_in_model_on_dask_equals_the_local_run(small_store, client):
    songs = sorted(str(p) for p in (small_store.parent / "music").rglob("*.wav"))[:3]
    chosen = ["rock", "jazz", "hiphop"]
    local = {r.path: r for r in classified(songs, ModelRef.builtin(chosen), LocalRunner(1), max_segments=2)}
    # the workers load the built-in model over the same genres
    remote = classified(songs, ModelRef.builtin(chosen), gd.DaskRunner(client), max_segments=2)
    assert sorted(r.path for r in remote) == songs
    for r in remote:
        assert isinstance(r, Prediction) and r.genres == chosen == local[r.path].genres
        np.testing.assert_allclose(r.probabilities, local[r.path].probabilities, atol=1e-6)
    with pytest.raises(ParameterError):
        ModelRef.builtin(["polka-core"])  # refused here, before any worker


def test_each_worker_loads_the_model_once(small_store, model_file, client):
    songs = sorted(str(p) for p in (small_store.parent / "music").rglob("*.wav"))
    classified(songs, ModelRef.file(model_file), gd.DaskRunner(client, batch_size=1), max_segments=1)

    def loaded() -> list:
        from genrify.classify.modelref import loaded_models

        return [key[0] for key in loaded_models()]

    assert all(paths.count(str(model_file)) <= 1 for paths in client.run(loaded).values())


def test_a_bad_model_file_fails_once_on_the_client(client, tmp_path):
    fake = tmp_path / "m.safetensors"
    fake.write_bytes(b"not a model")
    song = tmp_path / "a.wav"
    song.write_bytes(b"RIFF")

    class NoWorkers(gd.DaskRunner):  # the model is checked before any work reaches the cluster
        def run(self, *args, **kwargs):
            raise AssertionError("no task for the workers")

    with pytest.raises(ModelFileError):
        classified([str(song)], ModelRef.file(fake), NoWorkers(client))


# --- connecting ---------------------------------------------------------------------------------


def test_connect_local_starts_and_closes_its_own_cluster():
    before = dict(os.environ)
    with gd.connect("local", n_workers=1, host="127.0.0.1", timeout=60) as client:
        assert dict(os.environ) == before, "the nanny's variables do not stay in this process"
        cluster = client.cluster
        assert len(client.nthreads()) == 1 and list(client.nthreads().values()) == [1]
        assert client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
    assert cluster.status.name == "closed"


def test_connect_refuses_bad_addresses():
    with pytest.raises(ParameterError, match="not a Dask scheduler address"):
        gd.connect("tcp://nowhere")
    with pytest.raises(DependencyError, match="cannot reach the Dask scheduler"):
        gd.connect("tcp://127.0.0.1:9", timeout=2)
    with pytest.raises(ParameterError, match="no Dask scheduler file"):
        gd.connect("/nonexistent/scheduler.json")


def test_without_dask_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    from genrify.core.extras import install_command

    with pytest.raises(DependencyError, match=re.escape(install_command("dask"))):
        gd.connect("local")
