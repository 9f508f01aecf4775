"""The results cache: never touches what genrify did not make; any file name; never a crash."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from genrify.errors import ParameterError
from genrify.results import APPLICATION_ID, ResultCache


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
