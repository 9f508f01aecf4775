"""The results cache: never touches what genrify did not make; any file name; never a crash."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from genrify.classify.results import APPLICATION_ID, ResultCache
from genrify.errors import ParameterError


def _damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # the header (with our id) stays, the schema is gone
    path.write_bytes(data)


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("kind", ["folder", "text file", "other program's database", "damaged foreign sqlite"])
def test_a_path_that_is_not_a_genrify_cache_is_an_error_and_left_alone(tmp_path, kind):
    path = tmp_path / "cache.sqlite"
    if kind == "folder":
        path.mkdir()
        (path / "keep.txt").write_text("mine")
    elif kind == "text file":
        path.write_text("my notes\n" * 100)
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE contacts (name TEXT)")
        db.execute("INSERT INTO contacts VALUES ('Ada')")
        db.commit()
        db.close()
        if kind == "damaged foreign sqlite":
            _damage(path)
    before = _tree(tmp_path)
    with pytest.raises(ParameterError, match="not a genrify results cache") as info:
        ResultCache(path, "m", {})
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert _tree(tmp_path) == before  # nothing renamed, replaced or added


def test_a_damaged_genrify_cache_is_set_aside_under_a_fresh_name_each_time(tmp_path):
    path = tmp_path / "cache.sqlite"
    song = tmp_path / "song.wav"
    song.write_bytes(b"x")
    lines: list[str] = []
    with ResultCache(path, "m", {}) as cache:
        cache.put(song, {"genre": "rock"})
    assert int.from_bytes(path.read_bytes()[68:72], "big") == APPLICATION_ID
    asides = []
    for _ in range(2):
        _damage(path)
        damaged = path.read_bytes()
        with ResultCache(path, "m", {}, notify=lines.append) as cache:
            assert cache.enabled and cache.get(song) is None
            cache.put(song, {"genre": "jazz"})
        aside = sorted(set(tmp_path.glob("cache.sqlite.damaged*")) - set(asides))
        assert len(aside) == 1 and aside[0].read_bytes() == damaged  # the earlier one is kept as it was
        asides += aside
    assert len(lines) == 2 and all("set it aside as" in line for line in lines)
    with ResultCache(path, "m", {}) as cache:
        assert cache.get(song) == {"genre": "jazz"}


def test_names_that_are_not_utf8_are_cached_by_their_bytes(tmp_path):
    song = Path(os.fsdecode(os.fsencode(tmp_path) + b"/bad\xff.wav"))
    song.write_bytes(b"x")
    with ResultCache(tmp_path / "c.sqlite", "m", {}) as cache:
        cache.put(song, {"path": str(song)})
    with ResultCache(tmp_path / "c.sqlite", "m", {}) as cache:
        assert cache.get(song) == {"path": str(song)}
    keys = sqlite3.connect(tmp_path / "c.sqlite").execute("SELECT path FROM results").fetchall()
    assert keys == [(os.fsencode(song),)]


def test_link_loops_and_non_finite_results_are_simply_not_cached(tmp_path):
    os.symlink(tmp_path / "b.wav", tmp_path / "a.wav")
    os.symlink(tmp_path / "a.wav", tmp_path / "b.wav")
    song = tmp_path / "song.wav"
    song.write_bytes(b"x")
    with ResultCache(tmp_path / "c.sqlite", "m", {}) as cache:
        cache.put(tmp_path / "a.wav", {"genre": "rock"})
        assert cache.get(tmp_path / "a.wav") is None
        cache.put(song, {"confidence": float("nan")})
        assert cache.get(song) is None


def test_an_empty_file_or_an_older_cache_is_adopted(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with ResultCache(empty, "m", {}) as cache:
        assert cache.enabled
    old = tmp_path / "old.sqlite"  # version 1: the same table, text keys, no application id
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE results (path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
               "model TEXT NOT NULL, settings TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL, "
               "PRIMARY KEY (path, model, settings))")
    db.commit()
    db.close()
    with ResultCache(old, "m", {}) as cache:
        assert cache.enabled
    assert not list(tmp_path.glob("*.damaged*"))


def test_a_read_only_cache_location_is_said_at_once_and_left_as_it_is(tmp_path, monkeypatch):
    song = tmp_path / "song.wav"
    song.write_bytes(b"x")
    kept = tmp_path / "kept" / "c.sqlite"
    with ResultCache(kept, "m", {}) as cache:
        cache.put(song, {"genre": "rock"})
    before = _tree(tmp_path)
    # As root every permission is granted, so the system's answer is what is simulated here.
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if "kept" in str(p) or "ro" in Path(p).parts
                        else real(p, mode, **kw))
    # A read-only cache is still read: what it holds saves the work, and nothing new is stored.
    lines: list[str] = []
    with ResultCache(kept, "m", {}, notify=lines.append) as cache:
        assert cache.enabled and not cache.writable and cache.get(song) == {"genre": "rock"}
        cache.put(tmp_path / "song.wav", {"genre": "jazz"})
    assert lines == [f"cannot write the results cache {kept} (the file is read-only); reading it, storing nothing new"]
    new = tmp_path / "ro" / "new" / "c.sqlite"
    (tmp_path / "ro").mkdir()
    lines = []
    with ResultCache(new, "m", {}, notify=lines.append) as cache:
        assert not cache.enabled and not cache.writable and cache.get(song) is None
        cache.put(song, {"genre": "jazz"})
    assert lines == [f"cannot write the results cache {new} (its folder {tmp_path / 'ro'} is not writable); running without it"]
    assert {k: v for k, v in _tree(tmp_path).items() if not k.startswith("ro")} == before


def test_a_cache_that_sqlite_finds_read_only_is_never_taken_for_a_damaged_one(tmp_path, monkeypatch):
    path = tmp_path / "c.sqlite"
    song = tmp_path / "song.wav"
    song.write_bytes(b"x")
    with ResultCache(path, "m", {}) as cache:
        cache.put(song, {"genre": "rock"})
    before = _tree(tmp_path)
    real = sqlite3.connect
    # What a read-only file or file system does to SQLite (root ignores file modes, so simulated).
    monkeypatch.setattr(sqlite3, "connect", lambda p, **kw: real(f"file:{p}?mode=ro", uri=True, **kw))
    lines: list[str] = []
    with ResultCache(path, "m", {}, notify=lines.append) as cache:
        assert not cache.enabled
    assert len(lines) == 1 and lines[0].startswith(f"cannot use the results cache {path} (attempt to write a readonly")
    assert not list(tmp_path.glob("*.damaged*")) and _tree(tmp_path)["c.sqlite"] == before["c.sqlite"]


class _FullDisk:
    """A connection whose statements starting with ``fails`` fail as on a full disk (reads work)."""

    def __init__(self, db: sqlite3.Connection, fails: str) -> None:
        self.db, self.fails = db, fails

    def execute(self, sql: str, *args):
        if sql.startswith(self.fails):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def close(self) -> None:
        self.db.close()


@pytest.mark.parametrize("fails", ["INSERT", "COMMIT"])
def test_a_cache_that_stops_taking_writes_says_so_once_and_still_answers(tmp_path, fails):
    songs = [tmp_path / f"{i}.wav" for i in range(3)]
    for song in songs:
        song.write_bytes(b"x")
    with ResultCache(tmp_path / "c.sqlite", "m", {}) as cache:
        cache.put(songs[0], {"genre": "rock"})
    lines: list[str] = []
    with ResultCache(tmp_path / "c.sqlite", "m", {}, notify=lines.append) as cache:
        cache._db = _FullDisk(cache._db, fails)  # type: ignore[arg-type, assignment]
        for song in songs[1:]:
            cache.put(song, {"genre": "jazz"})
            cache.commit()
        assert cache.get(songs[0]) == {"genre": "rock"} and not cache.writable
    assert lines == [f"cannot write to the results cache {tmp_path / 'c.sqlite'} (database or disk is full); "
                     "the answers of the rest of this run are not stored"]
    with ResultCache(tmp_path / "c.sqlite", "m", {}) as cache:
        assert [cache.get(song) for song in songs] == [{"genre": "rock"}, None, None]


def test_the_embedding_cache_given_as_a_results_cache_is_named_without_importing_learn(tmp_path):
    import sqlite3 as db

    from genrify.classify.results import EMBEDDING_APPLICATION_ID

    path = tmp_path / "embeddings.sqlite"
    con = db.connect(path)
    con.execute(f"PRAGMA application_id = {EMBEDDING_APPLICATION_ID}")
    con.execute("CREATE TABLE results (x)")
    con.commit()
    con.close()
    with pytest.raises(ParameterError, match="genrify's embedding cache, not a genrify results cache"):
        ResultCache(path, "m", {})
