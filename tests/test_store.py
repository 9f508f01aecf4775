from __future__ import annotations

import numpy as np
import pytest

from genrify.audio.features import FeatureParams
from genrify.errors import StoreError
from genrify.store.store import ARRAYS_DIR, FeatureStore, array_name, write_array


def _done(store: FeatureStore, path: str, genre: str = "rock", frames: int = 10) -> None:
    name = write_array(store.root, path, np.full((128, frames), 1.5, dtype=np.float32))
    store.record_done(path=path, genre=genre, size=1, mtime_ns=2, artist="A", duration=1.0, frames=frames, array=name)


def test_create_record_and_load_memory_mapped(tmp_path):
    with FeatureStore.create(tmp_path / "s") as store:
        _done(store, "/music/rock/a.wav")
        _done(store, "/music/jazz/b.wav", genre="jazz", frames=7)
        store.record_failed(path="/music/jazz/c.wav", genre="jazz", size=1, mtime_ns=2, error="bad")
    with FeatureStore.open(tmp_path / "s") as store:
        assert len(store) == 2
        assert store.counts() == {"jazz": 1, "rock": 1}
        arr = store.load("/music/jazz/b.wav")
        assert isinstance(arr, np.memmap) and arr.dtype == np.float16 and arr.shape == (128, 7)
        assert float(arr[0, 0]) == 1.5
        failed = store.tracks(status="failed")
        assert [(t.path, t.error) for t in failed] == [("/music/jazz/c.wav", "bad")]
        with pytest.raises(StoreError, match="no features for this track"):
            store.load("/music/jazz/c.wav")


def test_parameters_are_recorded_and_enforced(tmp_path):
    FeatureStore.create(tmp_path / "s", FeatureParams(n_mels=64)).close()
    with FeatureStore.open(tmp_path / "s") as store:
        assert store.params.n_mels == 64
    with pytest.raises(StoreError, match=r"other feature parameters: n_mels=64 \(not 128\)"):
        FeatureStore.open(tmp_path / "s", FeatureParams())
    with pytest.raises(StoreError, match="other feature parameters"):
        FeatureStore.create(tmp_path / "s", FeatureParams(hop_length=256, n_mels=64))


def test_open_missing_store(tmp_path):
    with pytest.raises(StoreError, match="no feature store here"):
        FeatureStore.open(tmp_path / "nothing")


def test_refuses_a_folder_holding_other_things(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.pdf").write_bytes(b"%PDF")
    with pytest.raises(StoreError, match="holds no genrify store"):
        FeatureStore.create(tmp_path / "docs")


def test_array_names_are_stable_and_distinct():
    assert array_name("/a/b.wav") == array_name("/a/b.wav")
    assert array_name("/a/b.wav") != array_name("/a/c.wav")


def test_write_array_leaves_no_temporary_file(tmp_path):
    name = write_array(tmp_path, "/x.wav", np.zeros((4, 3)))
    files = [p.name for p in (tmp_path / ARRAYS_DIR).rglob("*") if p.is_file()]
    assert files == [name.split("/")[1]]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("genrify.store.store.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_array(tmp_path, "/x.wav", np.zeros((4, 3)))
    assert not [p for p in (tmp_path / ARRAYS_DIR).rglob("*") if p.is_file()]


def test_clean_removes_temporaries_and_orphans_but_keeps_done_arrays(tmp_path):
    with FeatureStore.create(tmp_path / "s") as store:
        _done(store, "/m/rock/kept.wav")
        orphan = write_array(store.root, "/m/rock/orphan.wav", np.zeros((128, 3)))
        tmp = store.root / ARRAYS_DIR / "ab" / ".tmp-123-x.npy"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"half")
        store.lock()
        assert store.clean() == 2
        assert not (store.root / ARRAYS_DIR / orphan).exists() and not tmp.exists()
        assert store.load("/m/rock/kept.wav").shape == (128, 10)


def test_one_writer_at_a_time(tmp_path):
    with FeatureStore.create(tmp_path / "s") as a, FeatureStore.open(tmp_path / "s") as b:
        a.lock()
        with pytest.raises(StoreError, match="another genrify process is writing"):
            b.lock()
        a.unlock()
        b.lock()


def test_remove_forgets_row_and_array(tmp_path):
    with FeatureStore.create(tmp_path / "s") as store:
        _done(store, "/m/rock/a.wav")
        row = store.get("/m/rock/a.wav")
        assert store.remove(["/m/rock/a.wav", "/m/rock/never.wav"]) == 1
        assert store.get("/m/rock/a.wav") is None
        assert not (store.root / ARRAYS_DIR / row.array).exists()


def test_tracks_under_a_folder(tmp_path):
    with FeatureStore.create(tmp_path / "s") as store:
        _done(store, "/m/rock/a.wav")
        _done(store, "/m2/rock/b.wav")
        _done(store, "/m-other/rock/c.wav")
        assert [t.path for t in store.tracks(under="/m")] == ["/m/rock/a.wav"]


def test_check_finds_missing_truncated_and_reshaped_arrays(tmp_path):
    with FeatureStore.create(tmp_path / "s") as store:
        for name in ("ok", "gone", "cut", "other", "nan"):
            _done(store, f"/music/rock/{name}.wav", frames=50)
        rows = {t.name.removesuffix(".wav"): t for t in store.tracks()}
        files = {n: store.array_file(t) for n, t in rows.items()}
        files["gone"].unlink()
        files["cut"].write_bytes(files["cut"].read_bytes()[:-10])
        np.save(files["other"], np.zeros((49, 128), dtype=np.float16))  # a whole file of the wrong shape
        bad = np.full((50, 128), 1.5, dtype=np.float16)
        bad[3, 4] = np.nan
        np.save(files["nan"], bad)  # right size, wrong values: only a full read sees it
        quick = {t.name: p for t, p in store.damaged()}
        assert set(quick) == {"gone.wav", "cut.wav", "other.wav"}
        assert "missing" in quick["gone.wav"] and "truncated" in quick["cut.wav"] and "(49, 128)" in quick["other.wav"]
        full = {t.name: p for t, p in store.damaged(full=True)}
        assert set(full) == {"gone.wav", "cut.wav", "other.wav", "nan.wav"} and "non-finite" in full["nan.wav"]
        assert store.check(rows["ok"], full=True) is None


def test_damage_found_by_a_full_check_is_recorded_until_the_track_is_stored_anew(tmp_path):
    with FeatureStore.create(tmp_path / "s") as store:
        for name in ("ok", "nan", "gone"):
            _done(store, f"/music/rock/{name}.wav", frames=20)
        rows = {t.name.removesuffix(".wav"): t for t in store.tracks()}
        bad = np.full((20, 128), np.nan, dtype=np.float16)
        np.save(store.array_file(rows["nan"]), bad)  # same size, valid header: the quick check passes
        assert store.damaged() == [] and store.recorded_damage() == {}
        found = store.damaged(full=True)
        assert [t.name for t, _ in found] == ["nan.wav"]
        store.record_damaged(found, replace=True)
    with FeatureStore.open(tmp_path / "s") as store:  # recorded in the manifest, for the next extraction
        assert store.recorded_damage() == {"/music/rock/nan.wav": "array holds non-finite values"}
        assert [(t.name, p) for t, p in store.damaged()] == [("nan.wav", "array holds non-finite values")]
    with FeatureStore.create(tmp_path / "s") as store:
        _done(store, "/music/rock/nan.wav", frames=20)  # stored anew: no longer damaged
        assert store.recorded_damage() == {} and store.damaged(full=True) == []
        store.record_damaged([(rows["gone"], "array file missing")])
        store.remove(["/music/rock/gone.wav"])  # forgotten with its track
        assert store.recorded_damage() == {}
        store.record_damaged([(rows["ok"], "array holds non-finite values")])
        store.record_damaged([], replace=True)  # a later full check found every array sound
        assert store.recorded_damage() == {}


def test_a_store_made_before_damage_was_recorded_still_opens(tmp_path):
    import sqlite3

    with FeatureStore.create(tmp_path / "s") as store:
        _done(store, "/music/rock/a.wav")
    db = sqlite3.connect(tmp_path / "s" / "manifest.sqlite")
    db.execute("DROP TABLE damaged")
    db.commit()
    db.close()
    with FeatureStore.open(tmp_path / "s") as store:  # readers add nothing: a read-only store stays openable
        assert store.recorded_damage() == {} and store.damaged() == []
    db = sqlite3.connect(tmp_path / "s" / "manifest.sqlite")
    assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'damaged'").fetchall()
    db.close()
    with FeatureStore.create(tmp_path / "s") as store:  # a writer adds the table
        _done(store, "/music/rock/b.wav")
        assert store.recorded_damage() == {}


def test_names_that_are_not_utf8_are_stored_faithfully(tmp_path):
    import os

    odd = os.fsdecode(b"/music/r\xf6ck/bad\xff.wav")  # Latin-1 bytes, as another system wrote them
    genre = os.fsdecode(b"r\xf6ck")
    with FeatureStore.create(tmp_path / "s") as store:
        _done(store, odd, genre=genre)
        _done(store, "/music/rock/fine.wav")
        worse = os.fsdecode(b"worse\xfe.wav")
        store.record_failed(path="/music/rock/" + worse, genre="rock", size=1, mtime_ns=2, error=f"cannot decode {worse}")
    with FeatureStore.open(tmp_path / "s") as store:
        row = store.get(odd)
        assert row is not None and row.path == odd and row.genre == genre
        assert os.fsencode(row.path) == b"/music/r\xf6ck/bad\xff.wav"
        assert store.counts() == {"rock": 1, genre: 1}
        assert [t.path for t in store.tracks(under="/music")] == ["/music/rock/fine.wav", odd]
        assert [t.path for t in store.tracks(under=os.fsdecode(b"/music/r\xf6ck"))] == [odd]
        assert store.load(odd).shape == (128, 10)
        (failed,) = store.tracks(status="failed")
        assert failed.error == "cannot decode worse\\xfe.wav"
        assert store.remove([odd]) == 1 and store.get(odd) is None
