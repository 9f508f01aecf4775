"""Tag policy: which genres to write, the provenance record, and how new genres meet old ones."""

from __future__ import annotations

import json
import pickle

import pytest

import genrify
from genrify.collection.genremap import GenreMap
from genrify.collection.tagpolicy import TAG_MODES, Provenance, TagPolicy, human_genres, provenance_for, resolve
from genrify.errors import ParameterError

# --- provenance ----------------------------------------------------------------------------------


def test_provenance_is_one_line_of_compact_json_and_reads_back_equal():
    record = Provenance(genres=("Hip-Hop", "Musique Concrète"), model="genrify-musicnn", version="1.2.3",
                        probabilities={"Hip-Hop": 0.71234, "Musique Concrète": 0.2})
    text = record.to_text()
    assert "\n" not in text and ", " not in text and ": " not in text
    assert "Musique Concrète" in text  # readable in a tagger, not \u escapes
    data = json.loads(text)
    assert data == {"by": "genrify", "version": "1.2.3", "model": "genrify-musicnn",
                    "genres": ["Hip-Hop", "Musique Concrète"],
                    "probabilities": {"Hip-Hop": 0.712, "Musique Concrète": 0.2}}
    assert Provenance.from_text(text) == record
    assert Provenance.from_text(text.encode("utf-8")) == record
    assert record.probabilities == {"Hip-Hop": 0.712, "Musique Concrète": 0.2}  # rounded to 3 places
    hash(record)
    assert pickle.loads(pickle.dumps(record)) == record


def test_a_later_versions_record_with_more_members_still_reads():
    text = json.dumps({"by": "genrify", "version": "9", "model": "m", "genres": ["Rock"], "probabilities": {},
                       "album": "x", "mode": "merge"})
    assert Provenance.from_text(text) == Provenance(genres=("Rock",), model="m", version="9", probabilities={})


@pytest.mark.parametrize(
    "text",
    [
        None, "", "   ", "Rock", "{}", "[1, 2]", "null", '"genrify"', "{not json",
        '{"by": "picard", "genres": ["Rock"], "model": "m", "version": "1"}',
        '{"genres": ["Rock"], "model": "m", "version": "1"}',
        '{"by": "genrify", "genres": "Rock", "model": "m", "version": "1"}',
        '{"by": "genrify", "genres": [1], "model": "m", "version": "1"}',
        '{"by": "genrify", "genres": ["Rock"], "model": 3, "version": "1"}',
        '{"by": "genrify", "genres": ["Rock"], "model": "m"}',
        '{"by": "genrify", "genres": ["Rock"], "model": "m", "version": "1", "probabilities": [0.5]}',
        '{"by": "genrify", "genres": ["Rock"], "model": "m", "version": "1", "probabilities": {"Rock": "high"}}',
        '{"by": "genrify", "genres": ["Rock"], "model": "m", "version": "1", "probabilities": {"Rock": true}}',
        b"\xff\xfe\x00",
        "[" * 100000,
    ],
)
def test_anything_not_genrifys_record_is_none_never_an_error(text):
    assert Provenance.from_text(text) is None


def test_provenance_for_stamps_this_version_and_keeps_the_written_genres_probabilities():
    record = provenance_for(["Rock", "Rock & Roll"], {"Rock": 0.61, "Pop": 0.2}, model="my.safetensors")
    assert record == Provenance(genres=("Rock", "Rock & Roll"), model="my.safetensors",
                                version=genrify.__version__, probabilities={"Rock": 0.61})
    joined = record.with_genres(["Rock; Rock & Roll"])
    assert joined.genres == ("Rock; Rock & Roll",) and joined.probabilities == {} and joined.model == "my.safetensors"


# --- resolve -------------------------------------------------------------------------------------

OURS = Provenance(genres=("Rock", "Pop"), model="m", version="1", probabilities={})

RESOLVE_CASES = [
    # existing, previous, new, mode -> result
    ((), None, ("Jazz",), "replace", ("Jazz",)),
    ((), None, ("Jazz",), "merge", ("Jazz",)),
    ((), None, ("Jazz",), "keep", ("Jazz",)),
    # No record: every existing genre is a person's.
    (("Rock",), None, ("Jazz",), "replace", ("Jazz",)),
    (("Rock",), None, ("Jazz", "Blues"), "merge", ("Rock", "Jazz", "Blues")),
    (("Rock",), None, ("Jazz",), "keep", None),
    (("rock",), None, ("Rock", "Jazz"), "merge", ("rock", "Jazz")),  # the person's spelling stays
    # Only genrify's genres: keep and merge may replace them.
    (("Rock", "Pop"), OURS, ("Jazz",), "replace", ("Jazz",)),
    (("Rock", "Pop"), OURS, ("Jazz",), "merge", ("Jazz",)),
    (("Rock", "Pop"), OURS, ("Jazz",), "keep", ("Jazz",)),
    (("ROCK", "pop"), OURS, ("Jazz",), "keep", ("Jazz",)),  # compared case-insensitively
    (("Rock", "Pop"), OURS, ("Pop", "Rock"), "merge", ("Pop", "Rock")),
    # A person added a genre to genrify's: merge keeps it first and drops genrify's stale ones.
    (("Rock", "Shoegaze"), OURS, ("Jazz", "Rock"), "merge", ("Shoegaze", "Jazz", "Rock")),
    (("Rock", "Shoegaze"), OURS, ("Jazz",), "keep", None),
    (("Rock", "Shoegaze"), OURS, ("Jazz",), "replace", ("Jazz",)),
    # A person replaced genrify's genre with their own.
    (("Shoegaze",), OURS, ("Rock",), "merge", ("Shoegaze", "Rock")),
    (("Shoegaze",), OURS, ("Rock",), "keep", None),
]


@pytest.mark.parametrize(("existing", "previous", "new", "mode", "expected"), RESOLVE_CASES)
def test_resolve_by_mode_and_provenance(existing, previous, new, mode, expected):
    assert resolve(existing, previous, new, mode) == expected


def test_human_genres_are_the_ones_genrify_did_not_write():
    assert human_genres(["Rock", "Shoegaze", "POP"], OURS) == ["Shoegaze"]
    assert human_genres(["Rock"], None) == ["Rock"]
    assert human_genres([], OURS) == []


@pytest.mark.parametrize("name", ["Folk, World, & Country", "Soul/Funk", "Rock; Pop"])
def test_genrifys_own_genre_with_a_comma_or_slash_in_its_name_is_genrifys(name):
    # A genre map's (or a trained model's) name holding a join mark: its parts are not genrify's
    # genres, but the whole value is, so keep and merge still treat it as genrify's guess.
    ours = Provenance(genres=(name,), model="m", version="0.1.0", probabilities={name: 0.6})
    assert human_genres([name], ours) == []
    assert resolve((name,), ours, ("Jazz",), "keep") == ("Jazz",)
    assert resolve((name,), ours, ("Jazz",), "merge") == ("Jazz",)


def test_resolve_refuses_an_unknown_mode():
    with pytest.raises(ParameterError, match="tag mode must be one of replace, merge, keep"):
        resolve((), None, ("Rock",), "overwrite")
    assert TAG_MODES == ("replace", "merge", "keep")


# --- the policy ----------------------------------------------------------------------------------


def test_the_default_policy():
    policy = TagPolicy()
    assert (policy.count, policy.mode, policy.separator, policy.id3v23, policy.parents, policy.skip_unsure) == (
        1, "keep", None, False, False, True)
    assert policy.genre_map is GenreMap.default()
    hash(policy)
    assert pickle.loads(pickle.dumps(policy)) == policy


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"mode": "overwrite"}, "tag mode must be one of"),
        ({"count": 0}, "count .* at least 1"),
        ({"count": 1.5}, "count .* whole number"),
        ({"count": True}, "count"),
        ({"min_confidence": 1.5}, "min_confidence must be a probability between 0 and 1"),
        ({"min_confidence": -0.1}, "min_confidence"),
        ({"min_probability": float("nan")}, "min_probability"),
        ({"min_probability": "0.2"}, "min_probability"),
        ({"separator": ""}, "separator must be a non-empty string"),
        ({"genre_map": {"genres": {}}}, "genre_map must be a GenreMap"),
    ],
)
def test_bad_policy_values_are_one_line_errors(kwargs, problem):
    with pytest.raises(ParameterError, match=problem) as info:
        TagPolicy(**kwargs)
    assert "\n" not in str(info.value)


RANKED = [("hip-hop", 0.5), ("soul/rnb", 0.3), ("house", 0.12), ("rock", 0.05), ("jazz", 0.03)]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["Hip-Hop"]),
        ({"count": 2}, ["Hip-Hop", "R&B"]),
        ({"count": 3}, ["Hip-Hop", "R&B", "House"]),
        ({"count": 5}, ["Hip-Hop", "R&B", "House"]),  # rock and jazz are below min_probability
        ({"count": 5, "min_probability": 0.0}, ["Hip-Hop", "R&B", "House", "Rock", "Jazz"]),
        ({"count": 3, "min_probability": 0.3}, ["Hip-Hop", "R&B"]),
        ({"min_confidence": 0.5}, ["Hip-Hop"]),
        ({"min_confidence": 0.51}, []),
        ({"count": 3, "parents": True}, ["Hip-Hop", "R&B", "House", "Electronic"]),
    ],
)
def test_genres_for_picks_by_count_and_thresholds_in_canonical_spelling(kwargs, expected):
    assert TagPolicy(**kwargs).genres_for(RANKED) == expected


def test_unsure_answers_are_skipped_unless_asked():
    assert TagPolicy().genres_for(RANKED, unsure=True) == []
    assert TagPolicy(skip_unsure=False).genres_for(RANKED, unsure=True) == ["Hip-Hop"]
    assert TagPolicy().genres_for([]) == []


def test_names_mapping_to_one_genre_count_once_and_refused_ones_are_skipped():
    genre_map = GenreMap.from_dict({"genres": {"Electronic": ["dance", "electronic"], "Rock": []},
                                    "options": {"whitelist": True}})
    policy = TagPolicy(count=2, genre_map=genre_map, min_probability=0.0)
    ranked = [("dance", 0.4), ("electronic", 0.3), ("polka", 0.2), ("rock", 0.1)]
    assert policy.genres_for(ranked) == ["Electronic", "Rock"]
    assert policy.probabilities_for(ranked) == {"Electronic": 0.4, "Rock": 0.1}
    # An answer the whitelist refuses is left alone, never handed to a less likely genre: a song 90 %
    # jazz is not tagged with its 3 % of Electronic, whatever the thresholds.
    for policy in (TagPolicy(genre_map=genre_map), TagPolicy(genre_map=genre_map, count=3, min_probability=0.0)):
        assert policy.genres_for([("jazz", 0.9), ("electronic", 0.03), ("rock", 0.02)]) == []
        assert policy.genres_for([("polka", 0.6), ("rock", 0.35)]) == []


def test_merge_treats_spellings_of_one_genre_as_one():
    from genrify.collection.tagpolicy import resolve

    assert resolve(("Hip Hop",), None, ("Hip-Hop",), "merge") == ("Hip Hop",)
    assert resolve(("hiphop", "RnB"), None, ("Hip-Hop", "Jazz"), "merge") == ("hiphop", "RnB", "Jazz")


def test_merge_adds_no_genre_a_persons_value_names_by_an_alias_of_the_genre_map():
    # The default map spells "rap" Hip-Hop: a person's rap already says what genrify would add.
    policy = TagPolicy(mode="merge", count=2, min_probability=0.0)
    ranked = [("hip-hop", 0.7), ("soul/rnb", 0.2)]
    decision = policy.decide(("rap",), None, ranked, model="m")
    assert decision.genres == ("rap", "R&B")
    assert decision.provenance is not None and decision.provenance.genres == ("R&B",)
    assert policy.decide(("Rap; R&B",), None, ranked, model="m").status == "unchanged"
    # Without the map (the plain function), an alias is another genre.
    assert resolve(("rap",), None, ("Hip-Hop",), "merge") == ("rap", "Hip-Hop")


def test_a_value_genrify_joined_stays_genrifys_when_the_join_is_dropped():
    from genrify.collection.tagpolicy import Provenance, human_genres, resolve

    before = Provenance(genres=("Rock", "Pop"), model="m", version="0")
    assert human_genres(("Rock; Pop",), before) == []
    assert resolve(("Rock; Pop",), before, ("Jazz",), "keep") == ("Jazz",)
    # A joined value with a part genrify never wrote is a person's.
    assert human_genres(("Rock; Shoegaze",), before) == ["Rock; Shoegaze"]


# --- one reading of a file's genres, for tagging and learning -------------------------------------


@pytest.mark.parametrize(
    ("existing", "new", "merged"),
    [
        (("Swing; Jazz",), ("Jazz",), ("Swing; Jazz",)),  # joined as taggers join them: kept as written
        (("Swing;Jazz",), ("Jazz",), ("Swing;Jazz",)),
        (("Swing, Jazz",), ("Jazz", "Blues"), ("Swing, Jazz", "Blues")),
        (("8",), ("Jazz",), ("8",)),  # ID3v1 genre numbers, bare or in parentheses
        (("(8)",), ("Jazz", "Blues"), ("(8)", "Blues")),
        (("(0)",), ("Jazz", "Blues"), ("(0)", "Jazz")),
        (("(8)(0)",), ("Blues", "Jazz", "Rock"), ("(8)(0)", "Rock")),
    ],
)
def test_merge_adds_no_genre_a_persons_joined_or_numbered_value_already_names(existing, new, merged):
    assert resolve(existing, None, new, "merge") == merged
    assert resolve(existing, None, new, "keep") is None


@pytest.mark.parametrize("placeholders", [("Other",), ("Unknown",), ("",), ("  ",), ("Other", "unknown genre"),
                                          ("(255)",), ("Other; N/A",)])
def test_values_that_name_no_genre_are_no_ones_genre(placeholders):
    # keep fills the file; merge and replace replace the placeholders rather than keep them beside genres.
    assert resolve(placeholders, None, ("Classical", "Folk"), "keep") == ("Classical", "Folk")
    assert resolve(placeholders, None, ("Classical", "Folk"), "merge") == ("Classical", "Folk")
    assert resolve(placeholders, None, ("Classical",), "replace") == ("Classical",)
    # Beside a person's genre the placeholder goes; the genre stays and keep keeps the file.
    assert resolve((*placeholders, "Rock"), None, ("Jazz",), "merge") == ("Rock", "Jazz")
    assert resolve((*placeholders, "Rock"), None, ("Jazz",), "keep") is None
    # A value naming a genre beside a placeholder is the person's, as written.
    assert resolve(("Rock; Other",), None, ("Jazz",), "merge") == ("Rock; Other", "Jazz")


def test_what_names_no_genre():
    from genrify.collection import tagpolicy

    assert tagpolicy.names_a_genre("Rock") and tagpolicy.names_a_genre("Other; Jazz") and tagpolicy.names_a_genre("(8)")
    assert not any(tagpolicy.names_a_genre(v) for v in ("Other", "", "(255)", "Unknown; N/A", "(RX)", "(CR)"))


def test_a_persons_genre_genrify_proposes_too_stays_theirs_inside_a_joined_value():
    from genrify.collection.tagpolicy import decide_genres

    def record(ours):
        return Provenance(genres=tuple(ours), model="m", version="1")

    decision = decide_genres(("Swing; Jazz",), None, ("Jazz", "Blues"), "replace", record)
    assert decision.genres == ("Jazz", "Blues") and decision.provenance.genres == ("Blues",)
    decision = decide_genres(("(8)",), None, ("Jazz", "Blues"), "merge", record)
    assert decision.genres == ("(8)", "Blues") and decision.provenance.genres == ("Blues",)


# --- the separator genrify joined its genres with ---------------------------------------------------


def test_the_separator_is_recorded_only_where_set_and_old_records_still_read():
    joined = Provenance(genres=("Classical", "Jazz"), model="m", version="1", separator=" | ")
    assert json.loads(joined.to_text())["separator"] == " | "
    assert Provenance.from_text(joined.to_text()) == joined
    plain = Provenance(genres=("Classical", "Jazz"), model="m", version="1")
    assert "separator" not in json.loads(plain.to_text())  # records as before
    assert plain.joined_with(" | ") == joined and joined.joined_with(None) == plain
    assert joined.with_genres(["Jazz"]).separator == " | "
    bad = json.loads(joined.to_text())
    for wrong in (3, "", ["|"]):
        assert Provenance.from_text(json.dumps({**bad, "separator": wrong})) is None


@pytest.mark.parametrize("separator", [" | ", " & ", " + ", "|", " // "])
def test_a_value_genrify_joined_with_any_separator_is_genrifys(separator):
    record = Provenance(genres=("Classical", "Jazz"), model="m", version="1", separator=separator)
    value = separator.join(record.genres)
    assert human_genres((value,), record) == []
    assert resolve((value,), record, ("Blues",), "keep") == ("Blues",)
    assert resolve((value,), record, ("Classical",), "merge") == ("Classical",)
    # A record from before separators were recorded: the genres in its order, joined by one separator.
    old = Provenance(genres=("Classical", "Jazz"), model="m", version="1")
    assert human_genres((value,), old) == []
    assert human_genres((separator.join(("Jazz", "Shoegaze")),), old) == [separator.join(("Jazz", "Shoegaze"))]


def test_a_separator_inside_a_genre_name_still_reads_genrifys_value():
    record = Provenance(genres=("R&B", "Soul"), model="m", version="1", separator="&")
    assert human_genres(("R&B&Soul",), record) == []
    # a merge joined a person's Funk before genrify's genres (the record keeps it): Funk is the person's
    merged = Provenance(genres=("R&B", "Soul"), model="m", version="1", separator="&", kept=("Funk",))
    assert human_genres(("Funk&R&B&Soul",), merged) == ["Funk"]
    assert human_genres(("R&B&Funk",), record) == ["R&B&Funk"]  # not what genrify writes: the person's
    # a person's value holding the separator but none of genrify's genres is not split
    assert human_genres(("R&B",), Provenance(genres=("Soul",), model="m", version="1", separator="&")) == ["R&B"]


def test_a_persons_value_holding_genrifys_separator_and_genre_stays_whole():
    record = Provenance(genres=("Rock",), model="m", version="1", separator=" & ")
    assert human_genres(("Rock & Roll",), record) == ["Rock & Roll"]
    assert resolve(("Rock & Roll",), record, ("Blues",), "merge") == ("Rock & Roll", "Blues")
    bass = Provenance(genres=("Electronic", "Bass"), model="m", version="1", separator=" & ")
    assert human_genres(("Drum & Bass",), bass) == ["Drum & Bass"]
    # the person's genres a merge joined before genrify's are given back one by one
    swing = Provenance(genres=("Classical",), model="m", version="1", separator="|", kept=("Swing", "Bebop"))
    assert resolve(("Swing|Bebop|Classical",), swing, ("Blues",), "merge") == ("Swing", "Bebop", "Blues")
    # the mirror: a value ending with genrify's genre, that genrify did not write so, is the person's
    blues = Provenance(genres=("Blues",), model="m", version="1", separator=" & ")
    assert human_genres(("Rhythm & Blues",), blues) == ["Rhythm & Blues"]
    # a genre a person added after genrify's, in the same value: kept whole, nothing repeated
    record = Provenance(genres=("Classical",), model="m", version="1", separator=" | ")
    assert resolve(("Classical | Swing",), record, ("Classical", "Blues"), "merge") == ("Classical | Swing", "Blues")


def test_words_of_one_genre_are_never_taken_for_genrifys_joined_genres():
    # genrify wrote Pop and Rock as two values (no separator); a person then typed one genre
    old = Provenance(genres=("Pop", "Rock"), model="m", version="1")
    for persons in ("Pop Rock", "Pop-Rock", "Pop and Rock"):
        assert human_genres((persons,), old) == [persons]
        assert resolve((persons,), old, ("Jazz",), "keep") is None
    assert human_genres(("Pop | Rock",), old) == []  # joined by an older genrify with " | "
    # "N/A" is a placeholder even where genrify's separator is "/" (never split a person's value)
    assert resolve(("N/A",), Provenance(genres=("Jazz",), model="m", version="1", separator="/"), ("Jazz",),
                   "keep") == ("Jazz",)


def test_merge_repeats_no_genre_genrify_joined_into_a_persons_value():
    # A merge with " | " joined a person's "Swing" and genrify's "Classical" into one value.
    record = Provenance(genres=("Classical",), model="m", version="1", separator=" | ", kept=("Swing",))
    assert Provenance.from_text(record.to_text()) == record  # the kept genres are stored
    assert human_genres(("Swing | Classical",), record) == ["Swing"]
    assert resolve(("Swing | Classical",), record, ("Classical",), "merge") == ("Swing", "Classical")
    assert resolve(("Swing | Classical",), record, ("Classical",), "keep") is None
    # the model changed its mind: its earlier guess goes, the person's Swing stays
    assert resolve(("Swing | Classical",), record, ("Blues",), "merge") == ("Swing", "Blues")
