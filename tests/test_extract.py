from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import tone

from genrify.audio.features import FeatureParams, log_mel
from genrify.errors import ParameterError
from genrify.store.extract import extract, extract_track
from genrify.store.store import ARRAYS_DIR, FeatureStore


def _stored(store: Path) -> dict[str, int]:
    with FeatureStore.open(store) as fs:
        return {os.path.basename(t.path): t.frames for t in fs.tracks()}


def test_extracts_every_track_and_matches_the_transform(make_library, tmp_path):
    music = make_library({"blues": ["a.wav", "b.wav"], "metal": ["c.wav"]}, seconds=2.0)
    summary = extract(music, tmp_path / "store", jobs=1)
    assert (summary.done, summary.unchanged, summary.failed, summary.total) == (3, 0, [], 3)
    assert summary.audio_seconds == pytest.approx(6.0, abs=0.01)
    with FeatureStore.open(tmp_path / "store") as fs:
        row = fs.get(str(music / "metal" / "c.wav"))
        assert row.genre == "metal" and row.duration == pytest.approx(2.0)
        y, _ = sf.read(row.path, dtype="float32")
        expected = log_mel(y, fs.params)
        stored = fs.load(row)
        assert stored.shape == expected.shape == (128, row.frames)
        # float16 keeps about three significant digits of values up to ~100 dB.
        np.testing.assert_allclose(stored.astype(np.float32), expected, atol=0.05)


def test_rerun_skips_unchanged_redoes_changed_and_forgets_removed(make_library, tmp_path):
    music = make_library({"pop": ["a.wav", "b.wav", "c.wav"]}, seconds=1.0)
    store = tmp_path / "store"
    extract(music, store, jobs=1)
    again = extract(music, store, jobs=1)
    assert (again.done, again.unchanged) == (0, 3)

    sf.write(music / "pop" / "b.wav", tone(3.0, freq=300.0), 22050)  # changed: longer
    (music / "pop" / "c.wav").unlink()
    third = extract(music, store, jobs=1)
    assert (third.done, third.unchanged, third.removed) == (1, 1, 1)
    assert _stored(store) == {"a.wav": 44, "b.wav": 130}

    forced = extract(music, store, jobs=1, force=True)
    assert (forced.done, forced.unchanged) == (2, 0)


def test_bad_files_are_reported_and_do_not_stop_the_run(make_library, tmp_path):
    music = make_library({"rock": ["good1.wav", "good2.wav"], "jazz": ["good3.wav"]}, seconds=1.0)
    (music / "rock" / "empty.mp3").touch()
    (music / "rock" / "text.mp3").write_text("not audio at all\n" * 50)
    good = music / "jazz" / "good3.wav"
    (music / "jazz" / "cut.wav").write_bytes(good.read_bytes()[:3000])
    summary = extract(music, tmp_path / "store", jobs=2)
    failed = {os.path.basename(p): reason for p, reason in summary.failed}
    assert set(failed) == {"empty.mp3", "text.mp3", "cut.wav"}
    assert "empty" in failed["empty.mp3"] and "truncated" in failed["cut.wav"]
    assert summary.done == 3 and summary.stored == 3
    with FeatureStore.open(tmp_path / "store") as fs:
        assert {os.path.basename(t.path) for t in fs.tracks(status="failed")} == set(failed)


def test_short_and_silent_tracks_are_stored_and_flagged(tmp_path):
    music = tmp_path / "music"
    (music / "ambient").mkdir(parents=True)
    sf.write(music / "ambient" / "blip.wav", tone(0.5), 22050)
    sf.write(music / "ambient" / "quiet.wav", np.zeros(22050 * 8, dtype=np.float32), 22050)
    summary = extract(music, tmp_path / "store", jobs=1)
    flags = {os.path.basename(p): f for p, f in summary.flagged}
    assert flags == {"blip.wav": ("short",), "quiet.wav": ("silent",)}
    with FeatureStore.open(tmp_path / "store") as fs:
        quiet = fs.load(str(music / "ambient" / "quiet.wav"))
        assert np.isfinite(quiet.astype(np.float32)).all() and quiet.shape[1] > 300
        assert fs.get(str(music / "ambient" / "blip.wav")).flags == ("short",)


def test_artist_is_read_from_tags(write_audio, tmp_path):
    from mutagen.flac import FLAC

    path = write_audio("music/folk/song.flac", seconds=1.0)
    tagged = FLAC(path)
    tagged["artist"] = "Nick Drake"
    tagged.save()
    extract(tmp_path / "music", tmp_path / "store", jobs=1)
    with FeatureStore.open(tmp_path / "store") as fs:
        assert fs.get(str(path)).artist == "Nick Drake"


def test_store_parameters_follow_the_store(make_library, tmp_path):
    music = make_library({"pop": ["a.wav"]}, seconds=1.0)
    extract(music, tmp_path / "store", jobs=1, params=FeatureParams(n_mels=40))
    extract(music, tmp_path / "store", jobs=1, force=True)  # no params: the store's are used
    with FeatureStore.open(tmp_path / "store") as fs:
        assert fs.load(fs.tracks()[0]).shape[0] == 40


def test_pool_and_single_process_give_identical_arrays(make_library, tmp_path):
    music = make_library({"a": ["1.wav", "2.wav", "3.wav"], "b": ["4.wav", "5.wav"]}, seconds=1.5)
    extract(music, tmp_path / "one", jobs=1)
    extract(music, tmp_path / "two", jobs=2)
    with FeatureStore.open(tmp_path / "one") as one, FeatureStore.open(tmp_path / "two") as two:
        assert [t.path for t in one.tracks()] == [t.path for t in two.tracks()]
        for t in one.tracks():
            np.testing.assert_array_equal(one.load(t), two.load(t.path))


def _run_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "genrify.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so the kill reaches every worker
        **kwargs,
    )


def _rows(store: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{store / 'manifest.sqlite'}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM tracks").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet


def _arrays(store: Path) -> int:
    return sum(1 for p in (store / ARRAYS_DIR).rglob("*.npy") if not p.name.startswith("."))


def test_sigkill_at_any_moment_then_resume_stores_every_track_once(tmp_path):
    music = tmp_path / "music"
    rng = np.random.default_rng(0)
    names = []
    for i in range(30):
        genre = ("blues", "jazz", "rock")[i % 3]
        path = music / genre / f"song {i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(15.0 + rng.random(), freq=200.0 + 20 * i, seed=i), 22050)
        names.append(path.name)
    store = tmp_path / "store"
    # Kill the whole process tree (parent, forkserver, workers) at several moments: during start-up,
    # and as soon as workers have written 1, 9 and 20 arrays, with more being written.
    kills = []
    for target in (None, 1, 9, 20):
        proc = _run_cli("extract", str(music), "--store", str(store), "--jobs", "2")
        deadline = time.monotonic() + 120
        if target is None:
            time.sleep(0.5)
        else:
            while _arrays(store) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(_rows(store))
    assert proc.returncode == -signal.SIGKILL and kills[-1] < len(names), f"a kill came too late: {kills}"
    done = subprocess.run(
        [sys.executable, "-m", "genrify.cli", "extract", str(music), "--store", str(store), "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"unchanged {kills[-1]}" in done.stdout
    stored = _stored(store)
    assert sorted(stored) == sorted(names)
    arrays = [p for p in (store / ARRAYS_DIR).rglob("*") if p.is_file()]
    assert len(arrays) == len(names), "every track stored exactly once, no temporaries"
    with FeatureStore.open(store) as fs:
        for t in fs.tracks():
            full = np.load(fs.root / ARRAYS_DIR / t.array)  # not memory-mapped: reads every byte
            assert full.shape == (t.frames, 128) and np.isfinite(full.astype(np.float32)).all()


def test_a_crashing_decoder_costs_only_its_own_file(make_library, tmp_path):
    from crashing_worker import CRASHING_EXTRACTOR

    from genrify.core.runner import CRASHED, LocalRunner

    music = make_library({"rock": [f"ok{i}.wav" for i in range(12)] + ["crash.wav", "crash2.wav"]}, seconds=0.5)
    results = []
    summary = extract(music, tmp_path / "store", runner=LocalRunner(2), processor=CRASHING_EXTRACTOR,
                      on_result=results.append)
    by_name = {os.path.basename(r.track.path): r for r in results}
    assert len(results) == 14 and len(by_name) == 14, "every track reported exactly once"
    assert by_name["crash.wav"].error == by_name["crash2.wav"].error == CRASHED == "the decoder crashed on this file"
    assert all(r.ok for name, r in by_name.items() if not name.startswith("crash"))
    assert summary.done == 12 and sorted(os.path.basename(p) for p, _ in summary.failed) == ["crash.wav", "crash2.wav"]


def test_extract_takes_a_runner_or_jobs_not_both(make_library, tmp_path):
    from genrify.core.runner import LocalRunner

    music = make_library({"pop": ["a.wav"]}, seconds=0.5)
    with pytest.raises(ParameterError, match="runner or jobs"):
        extract(music, tmp_path / "store", runner=LocalRunner(1), jobs=2)
    with pytest.raises(ParameterError, match="jobs must be at least 1"):
        extract(music, tmp_path / "store", jobs=0)


def test_a_bad_file_is_a_failure_record_from_extract_track(tmp_path):
    from genrify.collection.library import Track

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + os.urandom(100))
    (tmp_path / "store").mkdir()
    result = extract_track(Track(str(bad), "rock", bad.stat().st_size, 0), str(tmp_path / "store"), FeatureParams())
    assert not result.ok and result.error and result.array is None


def test_arrays_deleted_or_cut_behind_the_manifest_are_redone(make_library, tmp_path):
    music = make_library({"pop": ["a.wav", "b.wav", "c.wav"]}, seconds=1.0)
    store = tmp_path / "store"
    extract(music, store, jobs=1)
    with FeatureStore.open(store) as fs:
        files = {t.name: fs.array_file(t) for t in fs.tracks()}
    files["a.wav"].unlink()
    files["b.wav"].write_bytes(files["b.wav"].read_bytes()[:200])
    again = extract(music, store, jobs=1)
    assert (again.done, again.unchanged) == (2, 1)
    repaired = {os.path.basename(p): r for p, r in again.repaired}
    assert set(repaired) == {"a.wav", "b.wav"}
    assert repaired["a.wav"] == "array file missing" and "truncated" in repaired["b.wav"]
    with FeatureStore.open(store) as fs:
        assert fs.damaged(full=True) == []
    assert extract(music, store, jobs=1).repaired == []


def test_file_names_that_are_not_utf8(tmp_path):
    music = tmp_path / "music"
    folder = os.path.join(os.fsencode(music), b"r\xf6ck")
    os.makedirs(folder)
    for name in (b"bad\xff.wav", b"fine.wav"):
        sf.write(os.path.join(folder, name), tone(1.0), 22050)  # bytes: soundfile cannot encode the name
    first = extract(music, tmp_path / "store", jobs=2)
    assert (first.done, first.failed) == (2, [])
    again = extract(music, tmp_path / "store", jobs=1)
    assert (again.done, again.unchanged, again.removed) == (0, 2, 0)
    with FeatureStore.open(tmp_path / "store") as fs:
        assert sorted(os.fsencode(os.path.basename(t.path)) for t in fs.tracks()) == [b"bad\xff.wav", b"fine.wav"]
        assert {os.fsencode(g) for g in fs.counts()} == {b"r\xf6ck"}


def test_cli_reports_odd_names_damage_and_paths_passed_over(tmp_path):
    from typer.testing import CliRunner

    from genrify.cli import app

    music = tmp_path / "music"
    (music / "jazz").mkdir(parents=True)
    sf.write(os.path.join(os.fsencode(music / "jazz"), b"caf\xe9.wav"), tone(1.0), 22050)
    sf.write(music / "jazz" / "ok.wav", tone(1.0), 22050)
    (music / "jazz" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (music / "jazz" / "loop.wav").symlink_to(music / "jazz" / "loop.wav")
    store = tmp_path / "store"
    runner = CliRunner()
    first = runner.invoke(app, ["extract", str(music), "--store", str(store), "--jobs", "1"])
    assert first.exit_code == 0, first.output
    assert "Extracted 2 tracks" in first.output and "passed over 2" in first.output
    assert "gone.wav" not in first.output  # listed only with -v
    verbose = runner.invoke(app, ["extract", str(music), "--store", str(store), "--jobs", "1", "-v"])
    assert verbose.exit_code == 0, verbose.output
    assert "gone.wav: dangling symbolic link" in verbose.output and "loop.wav: symbolic link loop" in verbose.output

    with FeatureStore.open(store) as fs:
        cafe = next(t for t in fs.tracks() if t.name != "ok.wav")
        fs.array_file(cafe).unlink()
    checked = runner.invoke(app, ["inspect", str(store), "--check"])
    assert checked.exit_code == 1
    assert "damaged" in checked.output and "caf\\xe9.wav: array file missing" in checked.output
    redo = runner.invoke(app, ["extract", str(music), "--store", str(store), "--jobs", "1"])
    assert redo.exit_code == 0 and "Extracted 1 tracks" in redo.output and "repaired 1" in redo.output
    assert runner.invoke(app, ["inspect", str(store), "--check"]).exit_code == 0


def _overwrite_with_nan(file: Path) -> None:
    """Overwrite an array in place with NaN: same size, valid header, as a disk fault might."""
    size = file.stat().st_size
    np.save(file, np.full(np.load(file, mmap_mode="r").shape, np.nan, dtype=np.float16))
    assert file.stat().st_size == size


def test_values_overwritten_in_place_are_redone_by_verify(make_library, tmp_path):
    music = make_library({"pop": ["a.wav", "b.wav"]}, seconds=1.0)
    store = tmp_path / "store"
    extract(music, store, jobs=1)
    with FeatureStore.open(store) as fs:
        _overwrite_with_nan(fs.array_file(next(t for t in fs.tracks() if t.name == "a.wav")))
    quick = extract(music, store, jobs=1)  # a stat and a header read cannot see it
    assert (quick.done, quick.unchanged, quick.repaired) == (0, 2, [])
    verified = extract(music, store, jobs=1, verify=True)
    assert (verified.done, verified.unchanged) == (1, 1)
    assert [(os.path.basename(p), r) for p, r in verified.repaired] == [("a.wav", "array holds non-finite values")]
    with FeatureStore.open(store) as fs:
        assert fs.damaged(full=True) == []


def test_cli_extract_redoes_what_inspect_check_found(make_library, tmp_path):
    from typer.testing import CliRunner

    from genrify.cli import app

    music = make_library({"pop": ["a.wav", "b.wav"]}, seconds=1.0)
    store = tmp_path / "store"
    runner = CliRunner()
    assert runner.invoke(app, ["extract", str(music), "--store", str(store), "--jobs", "1"]).exit_code == 0
    with FeatureStore.open(store) as fs:
        _overwrite_with_nan(fs.array_file(next(t for t in fs.tracks() if t.name == "b.wav")))
    assert runner.invoke(app, ["inspect", str(store)]).exit_code == 0  # sizes alone look sound
    checked = runner.invoke(app, ["inspect", str(store), "--check"])
    assert checked.exit_code == 1
    assert "b.wav: array holds non-finite values" in checked.output and "redoes them" in checked.output
    # Recorded in the manifest: a plain inspect now says so too, and extract redoes it.
    assert runner.invoke(app, ["inspect", str(store)]).exit_code == 1
    redo = runner.invoke(app, ["extract", str(music), "--store", str(store), "--jobs", "1", "-v"])
    assert redo.exit_code == 0, redo.output
    assert "Extracted 1 tracks" in redo.output and "repaired 1" in redo.output
    assert "b.wav: array holds non-finite values" in redo.output
    assert runner.invoke(app, ["inspect", str(store), "--check"]).exit_code == 0
    again = runner.invoke(app, ["extract", str(music), "--store", str(store), "--jobs", "1"])
    assert "Nothing new to extract" in again.output


def test_cli_links_to_folders_are_passed_over_unless_followed(make_library, tmp_path):
    from typer.testing import CliRunner

    from genrify.cli import app

    music = make_library({"pop": ["a.wav"]}, seconds=1.0)
    outside = make_library({"x": ["b.wav"]}, seconds=1.0, root="elsewhere") / "x"
    (music / "rock").symlink_to(outside)
    (music / "system").symlink_to(tmp_path)  # a folder above the library, as "/" once was
    store = tmp_path / "store"
    runner = CliRunner()
    plain = runner.invoke(app, ["extract", str(music), "--store", str(store), "--jobs", "1", "-v"])
    assert plain.exit_code == 0, plain.output
    assert "Extracted 1 tracks" in plain.output and "passed over 2" in plain.output
    assert "rock: symbolic link to a folder (not followed" in plain.output
    followed = runner.invoke(app, ["extract", str(music), "--store", str(store), "--jobs", "1", "-v", "--follow-links"])
    assert followed.exit_code == 0, followed.output
    assert "Extracted 1 tracks" in followed.output and "passed over 1" in followed.output
    assert "system: symbolic link to a folder above it (a loop; never followed)" in followed.output
    with FeatureStore.open(store) as fs:
        assert fs.counts() == {"pop": 1, "rock": 1}


def test_inspect_check_on_a_store_it_cannot_write_points_to_verify(make_library, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from genrify.cli import app
    from genrify.errors import StoreError

    music = make_library({"pop": ["a.wav"]}, seconds=1.0)
    store = tmp_path / "store"
    extract(music, store, jobs=1)
    with FeatureStore.open(store) as fs:
        _overwrite_with_nan(fs.array_file(fs.tracks()[0]))

    def read_only(self, *args, **kwargs):
        raise StoreError(f"{self.root}: cannot record the damaged arrays: attempt to write a readonly database")

    monkeypatch.setattr(FeatureStore, "record_damaged", read_only)
    checked = CliRunner().invoke(app, ["inspect", str(store), "--check"])
    assert checked.exit_code == 1
    assert "a.wav: array holds non-finite values" in checked.output and "--verify` redoes them" in checked.output
