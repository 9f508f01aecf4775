"""Tagging: TagPolicy.decide (the one decision) and TagListener (grouping by track or album) with a
fake sink, so that what is decided when is seen without any file."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from genrify.classify.predict import Failure, Prediction
from genrify.classify.tagging import TagListener, TagPlan
from genrify.collection.library import AudioSearch
from genrify.collection.tagpolicy import Provenance, TagDecision, TagPolicy
from genrify.errors import ParameterError

GENRES = ["rock", "jazz", "pop"]


def _pred(probs: list[float], path: str) -> Prediction:
    p = np.array(probs, dtype=np.float64)
    return Prediction(genres=list(GENRES), probabilities=p, votes=p.copy(), segments=8, duration=30.0, path=path)


# --- TagPolicy.decide ------------------------------------------------------------------------------

SURE_ROCK = [("rock", 0.8), ("jazz", 0.15), ("pop", 0.05)]


def test_decide_writes_new_genres_with_a_provenance_naming_only_genrifys():
    decision = TagPolicy(mode="merge", count=2).decide(("Shoegaze",), None, SURE_ROCK, model="m")
    assert decision.status == "write" and decision.genres == ("Shoegaze", "Rock", "Jazz")
    assert decision.provenance.genres == ("Rock", "Jazz") and decision.provenance.model == "m"
    assert decision.provenance.probabilities == {"Rock": 0.8, "Jazz": 0.15}
    assert decision.sets


def test_decide_keeps_a_persons_genre_and_leaves_unsure_answers_alone():
    keep = TagPolicy()
    assert keep.decide(("Shoegaze",), None, SURE_ROCK) == TagDecision("kept", ("Shoegaze",))
    assert keep.decide((), None, SURE_ROCK, unsure=True) == TagDecision("left_alone", ())
    # A genre genrify wrote earlier is not a person's: keep mode replaces it.
    ours = Provenance(genres=("Jazz",), model="old", version="0")
    assert keep.decide(("Jazz",), ours, SURE_ROCK).genres == ("Rock",)
    assert not keep.decide(("Shoegaze",), None, SURE_ROCK).sets


def test_a_genre_only_spelled_otherwise_is_left_as_written():
    # A person retyped genrify's "Metal" as "metal": the same genre, so the file is not rewritten.
    ours = Provenance(genres=("Metal",), model="m", version="0")
    ranked = [("metal", 0.9), ("rock", 0.05), ("pop", 0.05)]
    for mode in ("keep", "replace", "merge"):
        decision = TagPolicy(mode=mode).decide(("metal",), ours, ranked, model="m")
        assert decision.status == "unchanged" and decision.genres == ("metal",), mode
    assert TagPolicy(mode="replace").decide(("Rock",), ours, ranked).genres == ("Metal",)
    # What genrify wrote itself is re-spelled when its genre map spells the genre otherwise now.
    assert TagPolicy(mode="replace").decide(("metal",), Provenance(genres=("metal",), model="m", version="0"),
                                            ranked).genres == ("Metal",)


def test_decide_says_unchanged_where_the_field_already_holds_the_genres():
    decision = TagPolicy(mode="replace").decide(("Rock",), None, SURE_ROCK)
    assert decision.status == "unchanged" and decision.genres == ("Rock",) and decision.sets
    # A person's "Rock" (no provenance) that genrify proposes too stays a person's.
    assert decision.provenance.genres == ()


@pytest.mark.parametrize(("kwargs", "field", "said"), [
    ({"own_genre_above": 0.5}, "own_genre_above", "own_genre_above goes with album_mode"),
    ({"own_genre_above": 0.5, "album_mode": True}, "own_genre_above", "own_genre_above needs a count of 2 or more"),
    ({"own_genre_above": 1.5, "album_mode": True, "count": 2}, "own_genre_above", "between 0 and 1"),
    ({"separator": "\n"}, "separator", "control characters"),
    ({"min_probability": 2}, "min_probability", "min_probability must be a probability between 0 and 1"),
])
def test_policy_errors_name_their_field(kwargs, field, said):
    with pytest.raises(ParameterError, match=said) as info:
        TagPolicy(**kwargs)
    assert info.value.field == field


def test_an_error_is_said_in_a_front_ends_names():
    with pytest.raises(ParameterError) as info:
        TagPolicy(own_genre_above=0.5, album_mode=True)
    names = {"own_genre_above": "--track-genre-above", "count": "--tag-genres"}
    assert info.value.said_of(names.__getitem__) == (
        "--track-genre-above needs --tag-genres 2 or more: a track's own genre is written after the album's")
    with pytest.raises(ParameterError) as info:
        TagPolicy(mode="sideways")
    assert info.value.said_of(lambda f: "--" + f) == "--mode: unknown mode 'sideways': tag mode must be one of replace, merge, keep"


# --- TagListener with a fake sink ----------------------------------------------------------------


class FakeSink:
    """Records what it is handed, and when, instead of writing anything."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def write(self, plan: TagPlan, *, dry_run: bool) -> None:
        self.events.append(("write", (plan.path, plan.decide((), None).genres)))

    def group_done(self, paths: Sequence[str]) -> None:
        self.events.append(("group", tuple(paths)))

    def finish(self) -> None:
        self.events.append(("finish", None))


def _written(sink: FakeSink) -> list[str]:
    return [e[1][0] for e in sink.events if e[0] == "write"]


def test_outside_album_mode_each_answer_is_tagged_as_it_arrives():
    sink = FakeSink()
    listener = TagListener(TagPolicy(skip_unsure=False), sink)
    listener.on_start(AudioSearch(["a", "b"], [], []))
    listener.on_result(_pred([0.9, 0.05, 0.05], "a"), False)
    assert _written(sink) == ["a"]
    listener.on_result(Failure("b", "unreadable"), False)
    assert _written(sink) == ["a"] and listener.report.total == 1


def test_each_change_is_told_as_soon_as_it_is_written():
    from pathlib import Path

    from genrify.collection.tags import TagChange

    class ChangingSink(FakeSink):
        def write(self, plan: TagPlan, *, dry_run: bool) -> TagChange:
            super().write(plan, dry_run=dry_run)
            return TagChange(Path(plan.path), (), ("Rock",), True, dry_run, "written")

    told: list[str] = []
    listener = TagListener(TagPolicy(skip_unsure=False), ChangingSink(), on_change=lambda c: told.append(str(c.path)))
    listener.on_start(AudioSearch(["a", "b"], [], []))
    listener.on_result(_pred([0.9, 0.05, 0.05], "a"), False)
    assert told == ["a"]  # before the next answer, not at the end of the run
    listener.on_result(_pred([0.1, 0.85, 0.05], "b"), False)
    assert told == ["a", "b"]


def test_an_album_is_decided_only_when_its_last_track_has_its_outcome():
    sink = FakeSink()
    policy = TagPolicy(skip_unsure=False, album_mode=True)
    listener = TagListener(policy, sink, groups=[["a1", "a2", "a3"], ["b1"]])
    listener.on_start(AudioSearch(["a1", "a2", "a3", "b1"], [], []))
    listener.on_result(_pred([0.9, 0.05, 0.05], "a1"), False)
    listener.on_result(_pred([0.2, 0.7, 0.1], "a2"), False)
    assert sink.events == []  # a3 has not answered yet
    listener.on_result(_pred([0.1, 0.1, 0.8], "b1"), True)
    assert sink.events == [("write", ("b1", ("Pop",))), ("group", ("b1",))]
    # A failure is an outcome too: it releases its album, which the other two tracks decide.
    listener.on_result(Failure("a3", "unreadable"), False)
    pooled = ("Rock",)  # mean of (0.9, 0.2) beats mean of (0.05, 0.7)
    assert sink.events[2:] == [("write", ("a1", pooled)), ("write", ("a2", pooled)), ("group", ("a1", "a2"))]
    listener.finish()
    assert sink.events[-1] == ("finish", None) and listener.report.albums == 2


def test_an_album_the_run_never_finished_is_decided_at_the_end():
    sink = FakeSink()
    listener = TagListener(TagPolicy(skip_unsure=False, album_mode=True), sink, groups=[["a1", "a2"]])
    listener.on_start(AudioSearch(["a1", "a2"], [], []))
    listener.on_result(_pred([0.9, 0.05, 0.05], "a1"), False)
    assert sink.events == []
    listener.finish()
    assert _written(sink) == ["a1"] and sink.events[-1] == ("finish", None)


def test_a_missing_track_does_not_hold_its_album_back():
    sink = FakeSink()
    listener = TagListener(TagPolicy(skip_unsure=False, album_mode=True), sink, groups=[["a1", "gone"]])
    listener.on_start(AudioSearch(["a1"], [("gone", "no such file")], []))
    listener.on_result(_pred([0.9, 0.05, 0.05], "a1"), False)
    assert _written(sink) == ["a1"]


def test_a_plans_chance_right_is_the_tracks_own_probability_of_the_genre_written_first():
    from genrify.collection.genremap import GenreMap

    answer = _pred([0.5, 0.3, 0.2], "t")
    ranked = tuple(answer.top(3))
    assert TagPlan(answer, ranked, False, 0.5, TagPolicy()).chance_right == pytest.approx(0.5)
    # A whitelist that refuses rock, the answer: nothing is written, so nothing can be right.
    only = GenreMap.from_dict({"genres": {"Jazz": [], "Pop": []}, "options": {"whitelist": True}})
    assert TagPlan(answer, ranked, False, 0.5, TagPolicy(genre_map=only)).chance_right == 0.0
    # Two of the model's genres spelled as one: either being right makes the genre written right.
    merged = GenreMap.from_dict({"genres": {"Rock": ["pop"], "Jazz": []}})
    assert TagPlan(answer, ranked, False, 0.5, TagPolicy(genre_map=merged)).chance_right == pytest.approx(0.7)
    # Album mode: the album's genre (pop), how likely it fits this track by the track's own answer.
    album_ranked = (("pop", 0.6), ("rock", 0.3), ("jazz", 0.1))
    assert TagPlan(answer, album_ranked, False, 0.6, TagPolicy()).chance_right == pytest.approx(0.2)
    assert TagPlan(answer, ranked, True, 0.5, TagPolicy()).chance_right == 0.0  # unsure: nothing proposed


def test_the_tag_report_expects_right_only_the_files_written_and_only_when_calibrated():
    from genrify.classify.service import RunSummary
    from genrify.classify.tagging import TagReport
    from genrify.collection.tags import TagChange

    class Writes(FakeSink):
        def write(self, plan: TagPlan, *, dry_run: bool) -> TagChange | None:
            genres = plan.decide((), None).genres
            return TagChange(plan.path, (), genres, True, dry_run, "written") if genres else None

    class Run:
        def __init__(self, expected: float | None) -> None:
            self.summary = RunSummary(3, 0, 0, 0, 1.0, expected_accuracy=expected)

    for expected in (0.7, None):
        listener = TagListener(TagPolicy(min_confidence=0.5), Writes(), dry_run=True)
        listener.on_start(AudioSearch(["a", "b", "c"], [], []))
        for path, probs in (("a", [0.9, 0.05, 0.05]), ("b", [0.1, 0.6, 0.3]), ("c", [0.4, 0.35, 0.25])):
            listener.on_result(_pred(probs, path), False)
        listener.on_finish(Run(expected))  # c is below the confidence asked for: not written
        if expected is None:
            assert listener.report.expected_accuracy is None and "expect" not in listener.report.line
        else:
            assert listener.report.expected_accuracy == pytest.approx((0.9 + 0.6) / 2)
            assert listener.report.line.startswith("genre tags: would write 2 (expect about 75% right), ")
    assert TagReport(calibrated=True).expected_accuracy is None  # nothing written: no figure


def test_album_mode_says_how_many_tracks_its_unsure_albums_left_alone():
    from genrify.collection.tags import TagChange

    class Writes(FakeSink):
        def write(self, plan: TagPlan, *, dry_run: bool) -> TagChange | None:
            genres = plan.decide((), None).genres
            return TagChange(plan.path, (), genres, True, dry_run, "written") if genres else None

    listener = TagListener(TagPolicy(album_mode=True), Writes(), groups=[["a1", "a2", "a3"], ["b1", "b2"]], dry_run=True)
    listener.on_start(AudioSearch(["a1", "a2", "a3", "b1", "b2"], [], []))
    # Album a: three sure tracks of three genres pool to an unsure answer; album b agrees with itself.
    for path, probs in (("a1", [0.9, 0.05, 0.05]), ("a2", [0.05, 0.9, 0.05]), ("a3", [0.05, 0.05, 0.9]),
                        ("b1", [0.9, 0.05, 0.05]), ("b2", [0.8, 0.1, 0.1])):
        listener.on_result(_pred(probs, path), False)
    listener.finish()
    report = listener.report
    assert (report.count("written"), report.left_alone, report.left_with_album) == (2, 3, 3)
    assert "3 unsure or below confidence (3 with an album the model is unsure of as a whole)," in report.line


@pytest.mark.parametrize(("values", "field"), [
    ({"jobs": 0}, "jobs"), ({"cache": 3}, "cache"), ({"count": 0}, "count"),
    ({"model": "m.safetensors", "genres": ["rock"]}, "genres"),
])
def test_classify_settings_name_the_value_they_refuse(values, field):
    from genrify.classify.settings import ClassifySettings
    from genrify.errors import ParameterError

    with pytest.raises(ParameterError) as refused:
        ClassifySettings.from_values(**values)
    assert refused.value.field == field


def test_classify_settings_defaults_import_no_model():
    from genrify.classify.modelref import BuiltinModel
    from genrify.classify.settings import ClassifySettings

    settings = ClassifySettings.from_values(cache=False)
    assert isinstance(settings.ref, BuiltinModel) and settings.cache is None and settings.model_file is None


# --- RecordSink: genres in database records --------------------------------------------------------


class _Record:
    def __init__(self, name: str, genres: Sequence[str] = ()) -> None:
        self.name, self.genres, self.provenance, self.model, self.stored = name, list(genres), None, "", 0

    def __str__(self) -> str:
        return self.name


def _record_sink(records: dict[str, list[_Record]], lines: list[str], *, pretend: bool, write: bool = False,
                 **kwargs):
    from genrify.classify.tagging import RecordSink

    class Sink(RecordSink):
        def path_of(self, record):
            return f"/{record.name}.mp3"

        def write_file(self, record):
            record.written = not record.name.startswith("locked")  # a locked file refuses, as a chattr +i one
            return record.written

        def genres_of(self, record):
            return list(record.genres)

        def provenance_of(self, record):
            return record.provenance

        def set_genres(self, record, genres, provenance):
            record.genres, record.provenance = list(genres), provenance

        def mark(self, record, model, confidence):
            record.model = model

        def store(self, record):
            record.stored += 1

    sink = Sink("m", pretend=pretend, write=write, say=lines.append, info=lines.append, warn=lines.append, **kwargs)
    sink.records.update(records)  # as RecordSink.tag fills it
    return sink


def _plan(path: str) -> TagPlan:
    return TagPlan(_pred([0.8, 0.15, 0.05], path), tuple(SURE_ROCK), False, 0.8, TagPolicy(), "m")


def test_a_record_sink_decides_counts_and_stores_each_record():
    new, persons, unsure = _Record("new"), _Record("persons", ["Shoegaze"]), _Record("unsure")
    lines: list[str] = []
    sink = _record_sink({"/a.mp3": [new], "/b.mp3": [persons], "/c.mp3": [unsure]}, lines, pretend=False)
    assert sink.write(_plan("/a.mp3"), dry_run=False).status == "written"
    assert sink.write(_plan("/b.mp3"), dry_run=False).status == "kept"
    plan = TagPlan(_pred([0.4, 0.35, 0.25], "/c.mp3"), tuple(SURE_ROCK), True, 0.4, TagPolicy(), "m")
    assert sink.write(plan, dry_run=False) is None
    assert new.genres == ["Rock"] and new.provenance.genres == ("Rock",) and new.model == "m"
    assert persons.genres == ["Shoegaze"] and unsure.genres == []
    assert (new.stored, persons.stored, unsure.stored) == (1, 1, 1)
    assert sink.changed == [(new, sink.changed[0][1])] and lines == ["new: (none) -> Rock"]
    assert sink.line == "3 classified, 1 changed (0 written), 0 unchanged, 1 kept, 1 skipped (1 unsure), 0 failed"


def test_a_pretending_record_sink_says_each_record_and_stores_nothing():
    new, persons = _Record("new"), _Record("persons", ["Shoegaze"])
    lines: list[str] = []
    sink = _record_sink({"/a.mp3": [new], "/b.mp3": [persons]}, lines, pretend=True)
    sink.write(_plan("/a.mp3"), dry_run=True)
    sink.write(_plan("/b.mp3"), dry_run=True)
    assert lines == ["new: (none) -> Rock", "persons: kept (Shoegaze)"]
    assert new.genres == [] and new.stored == persons.stored == 0 and not sink.changed
    assert sink.line.startswith("2 classified, 1 would change, 0 unchanged, 1 kept")


def test_a_pretending_record_sink_says_a_record_without_a_genre_in_one_pair_of_parentheses():
    bare = _Record("bare")
    lines: list[str] = []
    sink = _record_sink({"/a.mp3": [bare]}, lines, pretend=True)
    plan = TagPlan(_pred([0.4, 0.35, 0.25], "/a.mp3"), tuple(SURE_ROCK), True, 0.4, TagPolicy(), "m")
    assert sink.write(plan, dry_run=True) is None
    assert lines == ["bare: unsure (no genre)"]


def test_a_file_not_written_is_a_change_kept_in_the_database_counted_apart_and_noted_once():
    # A file beets cannot write (immutable, read-only): its record is changed, stored and marked done all
    # the same (the database holds the change; `beet write` syncs the file later). It was counted as
    # changed and as failed too, so that classified + failed overran the records, and nothing said why.
    ok, locked, locked2 = _Record("ok"), _Record("locked"), _Record("locked2")
    lines: list[str] = []
    sink = _record_sink({"/a.mp3": [ok], "/b.mp3": [locked]}, lines, pretend=False, write=True,
                        write_later="run `beet write`")
    for path in ("/a.mp3", "/b.mp3"):
        assert sink.write(_plan(path), dry_run=False).status == "written"
    assert locked.genres == ["Rock"] and locked.model == "m" and locked.stored == 1 and not locked.written
    assert [record for record, _ in sink.changed] == [ok, locked]
    sink.finish()
    assert lines[-1] == "1 file not written: the database holds the new genres; run `beet write` once it can be written"
    assert sink.line == "2 classified, 2 changed (1 written, 1 not written), 0 unchanged, 0 kept, 0 skipped, 0 failed"
    sink.finish()  # said once
    assert sum("not written:" in line for line in lines) == 1

    # Written later (an import's files, once in place): the note says so there too, in the plural.
    from genrify.classify.settings import ClassifySettings

    later: list[str] = []
    sink = _record_sink({}, later, pretend=False, write=False)
    sink.changed = [(locked, None), (locked2, None)]
    sink.write_changed(ClassifySettings.from_values(cache=False))
    assert later == ["2 files not written: the database holds the new genres; write them again once they can be written"]


def test_a_run_by_track_gives_the_albums_of_the_records_changed_to_sync_group_once():
    # beets keeps genres by album (its `update` gives every track the album's): a run by track too
    # gives each album the genres its tracks now share, through sync_group.
    a, b, kept = _Record("a"), _Record("b"), _Record("kept", ["Shoegaze"])
    synced: list[list[_Record]] = []
    sink = _record_sink({"/a.mp3": [a], "/b.mp3": [b], "/kept.mp3": [kept]}, [], pretend=False)
    sink.sync_group = synced.append  # type: ignore[method-assign]
    for path in ("/a.mp3", "/b.mp3", "/kept.mp3"):
        sink.write(_plan(path), dry_run=False)
    sink.finish()
    assert synced == [[a, b]]
    pretending = _record_sink({"/a.mp3": [_Record("a")]}, [], pretend=True)
    pretending.sync_group = synced.append  # type: ignore[method-assign]
    pretending.write(_plan("/a.mp3"), dry_run=True)
    pretending.finish()
    assert synced == [[a, b]]  # a pretend run stores nothing


def test_a_records_path_that_is_a_folder_is_said_and_failed_never_searched(tmp_path, monkeypatch):
    # A record's file replaced by a folder: find_audio searched it, classified what it held (no record's
    # file) and the record vanished from the counts; a missing file was said and failed all along.
    from genrify.classify import service
    from genrify.classify.settings import ClassifySettings
    from genrify.collection.records import FOLDER

    folder, missing = tmp_path / "song.mp3", tmp_path / "gone.mp3"
    folder.mkdir()
    (folder / "inside.mp3").write_bytes(b"ID3")
    classified: list[object] = []
    monkeypatch.setattr(service, "classify_library", lambda found, *a, **k: classified.append(found))
    lines: list[str] = []
    sink = _record_sink({}, lines, pretend=True)
    sink.path_of = lambda record: str(record.name)  # type: ignore[method-assign]
    sink.classified_before = lambda record: False  # type: ignore[method-assign]
    sink.tag([_Record(str(folder)), _Record(str(missing))], ClassifySettings.from_values(cache=False))
    assert classified == []
    assert lines == [f"{missing}: does not exist", f"{folder}: {FOLDER}"]
    assert sink.counts["failed"] == 2 and sink.line.endswith(", 2 failed")
