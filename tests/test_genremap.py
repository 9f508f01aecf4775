"""The genre map: canonical spellings, aliases, whitelist, parents, case, and its file's errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from genrify import synth
from genrify.errors import GenreMapError, ParameterError, exit_code
from genrify.genremap import DEFAULT_MAP_PATH, GenreMap, genre_key


def _write(tmp_path: Path, text: str, name: str = "map.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


EXAMPLE = """
[genres]
"Hip-Hop" = ["hip hop", "rap"]
"R&B" = ["rnb", "soul/rnb"]

[parents]
"House" = ["Electronic"]
"Deep House" = ["house"]

[options]
whitelist = false
case = "title"
"""


# --- the default map ---------------------------------------------------------------------------


def _builtin_genres() -> tuple[str, ...]:
    from genrify.classify import ModelRef

    return tuple(ModelRef.builtin().genres)


def test_the_default_map_spells_every_genre_the_models_use():
    default = GenreMap.default()
    model_genres = (*_builtin_genres(), *synth.GENRES)
    missing = [g for g in model_genres if g not in default]
    assert missing == []  # spelled by the map, not by the title-case fallback
    expected = {"hip-hop": "Hip-Hop", "hiphop": "Hip-Hop", "soul/rnb": "R&B", "rock": "Rock",
                "electronic": "Electronic", "disco": "Disco", "metal": "Metal", "classical": "Classical"}
    assert {g: default.name(g) for g in expected} == expected
    # No two of the built-in model's genres collapse into one tag.
    builtin = _builtin_genres()
    assert len({default.name(g) for g in builtin}) == len(builtin)
    assert not default.whitelist and default.case == "title"


def test_the_default_map_is_the_shipped_file_read_once():
    assert GenreMap.default() is GenreMap.default()
    assert GenreMap.load(DEFAULT_MAP_PATH) == GenreMap.default()
    assert DEFAULT_MAP_PATH.name == "genre_map.toml" and DEFAULT_MAP_PATH.parent.name == "genrify"


@pytest.mark.parametrize(
    ("child", "ancestors"),
    [
        ("house", ["Electronic"]),
        ("Techno", ["Electronic"]),
        ("trance", ["Electronic"]),
        ("deep house", ["House", "Electronic"]),
        ("Heavy Metal", ["Metal"]),
        ("folk rock", ["Folk", "Rock"]),
        ("Rock", []),
        ("Metal", []),  # metal's own family is argued about: no parent
        ("something new", []),
    ],
)
def test_the_default_parents_are_the_widely_agreed_ones(child, ancestors):
    assert GenreMap.default().ancestors(child) == ancestors


def test_a_map_pickles_for_worker_processes():
    default = GenreMap.default()
    again = pickle.loads(pickle.dumps(default))
    assert again == default and again.name("hip hop") == "Hip-Hop"
    hash(default)  # usable as part of a frozen policy


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["Hip Hop", "hiphop", "HIP-HOP", "hip_hop", "hip.hop", " hip  hop ", "rap", "Rap"])
def test_aliases_and_spellings_give_the_canonical_name(tmp_path, spelling):
    genre_map = GenreMap.load(_write(tmp_path, EXAMPLE))
    assert genre_map.name(spelling) == "Hip-Hop"
    assert spelling in genre_map


def test_the_key_ignores_case_space_hyphen_underscore_and_dot_only():
    assert genre_key("Hip Hop") == genre_key("hip-hop") == genre_key("HIP_HOP") == genre_key("hip.hop") == "hiphop"
    assert genre_key("R&B") != genre_key("RB")
    assert genre_key("Drum & Bass") != genre_key("Drum and Bass")


def test_names_maps_drops_repeats_and_keeps_order(tmp_path):
    genre_map = GenreMap.load(_write(tmp_path, EXAMPLE))
    assert genre_map.names(["rap", "rnb", "Hip Hop", "", "  ", "soul/rnb", "jazz"]) == ["Hip-Hop", "R&B", "Jazz"]
    assert genre_map.names([]) == []


def test_parent_genres_come_after_all_the_genres_transitively(tmp_path):
    genre_map = GenreMap.load(_write(tmp_path, EXAMPLE))
    assert genre_map.names(["deep house", "rap"]) == ["Deep House", "Hip-Hop"]
    assert genre_map.names(["deep house", "rap"], parents=True) == ["Deep House", "Hip-Hop", "House", "Electronic"]
    # A parent already among the genres is not repeated, and keeps its place.
    assert genre_map.names(["Electronic", "House"], parents=True) == ["Electronic", "House"]
    # "house" in [parents] takes the spelling the map gives "House".
    assert genre_map.ancestors("DEEP-HOUSE") == ["House", "Electronic"]


def test_a_whitelist_refuses_names_the_map_does_not_know(tmp_path):
    genre_map = GenreMap.load(_write(tmp_path, EXAMPLE.replace("whitelist = false", "whitelist = true")))
    assert genre_map.whitelist
    assert genre_map.name("polka") is None
    assert genre_map.name("RAP") == "Hip-Hop"
    assert genre_map.name("electronic") == "Electronic"  # named in [parents]: allowed
    assert genre_map.names(["polka", "house", "jazz"], parents=True) == ["House", "Electronic"]
    assert genre_map.names(["polka", "jazz"]) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("title", ["Death Metal", "K-Pop", "UK Garage", "Rock'n'roll", "Shoegaze", "EBM", "Drum & Bass"]),
        ("lower", ["death metal", "k-pop", "uk garage", "rock'n'roll", "shoegaze", "ebm", "drum & bass"]),
        ("keep", ["death  metal".replace("  ", " "), "k-pop", "UK garage", "rock'n'roll", "SHOEGAZE", "EBM", "drum & bass"]),
    ],
)
def test_names_the_map_does_not_know_are_cased_as_the_map_says(case, expected):
    genre_map = GenreMap.from_dict({"options": {"case": case}})
    given = [" death  metal ", "k-pop", "UK garage", "rock'n'roll", "SHOEGAZE", "EBM", "drum & bass"]
    assert [genre_map.name(g) for g in given] == expected


def test_the_map_spelling_wins_over_the_case_rule():
    genre_map = GenreMap.from_dict({"genres": {"hip-hop": [], "R&B": []}, "options": {"case": "title"}})
    assert genre_map.name("Hip Hop") == "hip-hop"  # the owner's spelling, even lower case
    assert genre_map.name("r&b") == "R&B"


def test_an_empty_map_only_tidies_and_title_cases():
    genre_map = GenreMap()
    assert genre_map.name("  hip   hop ") == "Hip Hop"
    assert genre_map.name("") is None and genre_map.name("   ") is None
    assert "rock" not in genre_map and 3 not in genre_map
    assert genre_map.ancestors("house") == []


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[genres]\n"Rock" = ["a" "b"]\n', r"TOML syntax error: .*line 2"),
        ('[genres]\n"Rock" = []\n"Pop" == []\n', r"TOML syntax error: .*line 3"),
        ("[genre]\n", r"unknown section \[genre\]"),
        ("[options]\nwhitelists = true\n", r"unknown key 'whitelists' in \[options\]"),
        ("[options]\nwhitelist = \"yes\"\n", r"whitelist must be true or false"),
        ("[options]\ncase = \"upper\"\n", r"case must be one of 'title', 'lower', 'keep'"),
        ('[genres]\n"Rock" = [1]\n', r"\[genres\] 'Rock' aliases: a genre name must be a string, not int 1"),
        ('[genres]\n"Rock" = "rock music"\n', r"aliases must be a list of strings"),
        ('[parents]\n"House" = [["Electronic"]]\n', r"a genre name must be a string, not list"),
        ('[genres]\n"Rock" = [""]\n', r"empty genre name"),
        ('[genres]\n"Hip-Hop" = ["rap"]\n"Rap" = []\n', r"'Rap' is already a name of 'Hip-Hop'"),
        ('[genres]\n"A" = ["x"]\n"B" = ["x"]\n', r"'x' is already a name of 'A'"),
        ('genres = 3\n', r"\[genres\] must be a table"),
        ('[parents]\n"House" = ["Electronic"]\n"Electronic" = ["house"]\n', r"cycle: (House -> Electronic -> House|Electronic -> House -> Electronic)"),
        ('[parents]\n"Deep House" = ["House"]\n"House" = ["Techno"]\n"Techno" = ["deep house"]\n', r"cycle: .*Deep House.*House.*Techno"),
        ('[parents]\n"House" = ["house"]\n', r"cycle: House -> House"),
    ],
)
def test_a_bad_map_file_is_one_line_naming_the_file_and_the_problem(tmp_path, text, problem):
    path = _write(tmp_path, text)
    with pytest.raises(GenreMapError, match=problem) as info:
        GenreMap.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert info.value.path == str(path)
    assert isinstance(info.value, ParameterError) and exit_code(info.value) == 1


def test_missing_unreadable_and_binary_map_files(tmp_path):
    with pytest.raises(GenreMapError, match="genre map file not found"):
        GenreMap.load(tmp_path / "nope.toml")
    with pytest.raises(GenreMapError, match="is a folder"):
        GenreMap.load(tmp_path)
    binary = tmp_path / "map.toml"
    binary.write_bytes(b"[genres]\n\xff\xfe = []\n")
    with pytest.raises(GenreMapError, match="not a UTF-8 text file"):
        GenreMap.load(binary)


def test_an_empty_file_is_an_empty_map(tmp_path):
    assert GenreMap.load(_write(tmp_path, "")) == GenreMap(source=str(tmp_path / "map.toml"))


def test_a_bad_case_in_code_is_refused_too():
    with pytest.raises(GenreMapError, match="case must be one of"):
        GenreMap(case="UPPER")
