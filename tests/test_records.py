"""genrify.collection.records: songs kept as records in another program's database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genrify.collection.records import RecordFields
from genrify.collection.tagpolicy import Provenance


class DictFields(RecordFields):
    """Records as plain dicts: ``path``, ``genres``, ``mine`` (genres genrify set) and ``artist``."""

    def path_of(self, record: dict[str, Any]) -> str:
        return record["path"]

    def genres_of(self, record: dict[str, Any]) -> list[str]:
        return list(record.get("genres", []))

    def provenance_of(self, record: dict[str, Any]) -> Provenance | None:
        mine = record.get("mine")
        return None if mine is None else Provenance(genres=tuple(mine), model="m", version="")

    def artist_of(self, record: dict[str, Any]) -> str:
        return record.get("artist", "")


def test_labels_are_the_genres_a_person_set():
    fields = DictFields()
    assert fields.labels_of({"genres": ["Jazz", "Soul"]}) == ["Jazz", "Soul"]
    assert fields.labels_of({"genres": ["Jazz", "Soul"], "mine": ["Soul"]}) == ["Jazz"]
    assert fields.labels_of({"genres": ["Soul"], "mine": ["Soul"]}) == []


def test_files_keep_one_record_per_file_and_warn_of_missing_ones(tmp_path: Path):
    a, b = tmp_path / "a.flac", tmp_path / "b.flac"
    a.write_bytes(b"x")
    first, twice, missing = {"path": str(a), "n": 1}, {"path": str(a), "n": 2}, {"path": str(b)}
    warned: list[str] = []
    assert DictFields().files([first, twice, missing], warned.append) == {str(a): first}
    assert warned == [f"{b}: the file is missing, left out"]


def test_learn_records_groups_by_artist_else_by_folder_and_checks_min_songs_first(tmp_path: Path, monkeypatch):
    import genrify.learn.labels as labels
    from genrify.errors import ParameterError
    from genrify.learn.learning import learn_records

    songs = []
    for folder, artist in (("x", "The Band"), ("y", "")):
        (tmp_path / folder).mkdir()
        (path := tmp_path / folder / "s.flac").write_bytes(b"x")
        songs.append({"path": str(path), "genres": ["Jazz"], "artist": artist})
    seen: list[Any] = []

    class Seen(Exception):
        pass

    def capture(entries: Any, **kwargs: Any) -> None:
        seen.extend(entries)
        raise Seen

    monkeypatch.setattr(labels, "labels_from_values", capture)
    with pytest.raises(Seen):
        learn_records(songs, DictFields(), tmp_path / "m.safetensors", what="record", cache=False, say=lambda _: None)
    assert seen == [(songs[0]["path"], ["Jazz"], "artist:the band"),
                    (songs[1]["path"], ["Jazz"], f"folder:{tmp_path / 'y'}")]
    with pytest.raises(ParameterError) as info:  # before any file is looked at
        learn_records([{"path": "/nowhere"}], DictFields(), "m.safetensors", what="record", min_songs=0)
    assert info.value.field == "min_songs"
