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


def test_suggest_records_offers_only_records_no_person_tagged_with_their_records(tmp_path: Path, monkeypatch):
    import genrify.learn.suggest as suggest
    from genrify.errors import ParameterError
    from genrify.learn.suggest import Suggestion, Suggestions, suggest_records

    paths = []
    for name in ("tagged", "mine", "bare"):
        (path := tmp_path / f"{name}.flac").write_bytes(b"x")
        paths.append(str(path))
    records = [{"path": paths[0], "genres": ["Jazz"]},
               {"path": paths[1], "genres": ["Soul"], "mine": ["Soul"]},  # only genrify's guess: untagged
               {"path": paths[2]},
               {"path": str(tmp_path / "gone.flac")}]
    asked: list[list[str]] = []

    def fake(model: Any, candidates: list[str], n: int, **kwargs: Any) -> Suggestions:
        asked.append(list(candidates))
        return Suggestions([Suggestion(path=candidates[-1], guess="Jazz", probability=0.4, margin=0.1)], 2, 0.55)

    monkeypatch.setattr(suggest, "suggest_from_model", fake)
    warned: list[str] = []
    untagged, found, picks = suggest_records(None, records, DictFields(), 1, cache=False, say=lambda _: None,
                                             warn=warned.append)
    assert asked == [[paths[1], paths[2]]] and untagged == 2 and (found.candidates, found.expected_accuracy) == (2, 0.55)
    assert picks == [(records[2], Suggestion(path=paths[2], guess="Jazz", probability=0.4, margin=0.1))]
    assert warned == [f"{tmp_path / 'gone.flac'}: the file is missing, left out"]
    assert suggest_records(None, records[:1], DictFields(), 1, cache=False, say=lambda _: None) == (0, Suggestions([], 0, None), [])
    with pytest.raises(ParameterError):  # before any file is looked at
        suggest_records(None, [{"path": "/nowhere"}], DictFields(), 0)


def test_a_record_holding_only_placeholders_has_no_genre():
    # One rule with tagging (keep fills such a record) and learning: Other, Unknown name no genre.
    fields = DictFields()
    for genres in ([], ["Unknown"], ["Other", "Unknown"], ["Other; Unknown"], [" "], ["Jazz"], ["Other; Jazz"]):
        assert fields.has_genre({"genres": genres}) is any("Jazz" in g for g in genres), genres
    assert not fields.has_genre({"genres": ["Soul", "Unknown"], "mine": ["Soul"]})  # genrify's guess and a placeholder


def test_a_records_path_that_is_a_folder_is_said_to_be_one(tmp_path: Path):
    (folder := tmp_path / "song.flac").mkdir()
    warned: list[str] = []
    assert DictFields().files([{"path": str(folder)}], warned.append) == {}
    assert warned == [f"{folder}: a folder, not an audio file, left out"]


def test_suggest_records_offers_records_holding_only_placeholders(tmp_path: Path, monkeypatch):
    # `beet genrify --suggest` counted "Unknown" as a genre, where tagging, learning and
    # `genrify learn --suggest` count it as none.
    from genrify.learn import suggest
    from genrify.learn.suggest import Suggestions, suggest_records

    records = []
    for name, genres in (("unknown", ["Unknown"]), ("both", ["Other; Unknown"]), ("jazz", ["Other", "Jazz"])):
        (path := tmp_path / f"{name}.flac").write_bytes(b"x")
        records.append({"path": str(path), "genres": genres})
    asked: list[list[str]] = []
    monkeypatch.setattr(suggest, "suggest_from_model",
                        lambda model, candidates, n, **kwargs: asked.append(candidates) or Suggestions([], 2, None))
    untagged, _found, _picks = suggest_records(None, records, DictFields(), 1, cache=False, say=lambda _: None)
    assert untagged == 2 and asked == [[records[0]["path"], records[1]["path"]]]


def test_a_compilations_album_artist_groups_no_one():
    from genrify.collection.records import grouping_artist

    assert grouping_artist("Various Artists", "Cher") == "Cher"
    assert grouping_artist("  v.a. ", "Cher") == "Cher"
    assert grouping_artist("Queen", "Freddie Mercury") == "Queen"
    assert grouping_artist(None, "Cher") == "Cher" and grouping_artist("Various", None) == ""
