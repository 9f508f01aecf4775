"""The genre map: canonical spellings, aliases, whitelist, parents, case, and its file's errors."""

from __future__ import annotations

import contextlib
import os
import pickle
import stat
import subprocess
import sys
import textwrap
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from genrify.audio import synth
from genrify.errors import GenreMapError, ParameterError, exit_code
from genrify.collection.genremap import (
    DEFAULT_MAP_PATH,
    MAX_ANCESTORS,
    MAX_DEPTH,
    MAX_MAP_BYTES,
    MAX_PARENTS,
    GenreMap,
    genre_key,
)


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
    from genrify.classify.modelref import ModelRef

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
    assert DEFAULT_MAP_PATH.name == "genre_map.toml" and DEFAULT_MAP_PATH.parent.name == "collection"


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


# --- hostile maps: every one a line, fast, in little memory ------------------------------------


def _chain(n: int) -> str:
    """``[parents]`` with a chain of ``n`` genres, each the parent of the one before."""
    return "[parents]\n" + "".join(f'"g{i}" = ["g{i + 1}"]\n' for i in range(n - 1))


def _one_line(info: pytest.ExceptionInfo[GenreMapError], path: Path | str) -> str:
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 400, message
    return message


@contextlib.contextmanager
def _unblocking(fifo: Path, after: float = 5.0) -> Iterator[None]:
    """If something opens ``fifo`` to read and waits for a writer, a writer comes after ``after``
    seconds and goes at once: a reader that would hang reads an empty file instead (and the test
    fails on what it read, rather than hanging the suite)."""
    done = threading.Event()

    def writer() -> None:
        if done.wait(after):
            return
        while not done.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until a reader is there
            except OSError:
                done.wait(0.05)
                continue
            os.close(fd)
            return

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_a_chain_of_ten_thousand_parents_is_one_line_not_a_recursion_error(tmp_path):
    path = _write(tmp_path, _chain(10_000))
    with pytest.raises(GenreMapError, match=rf"'g0' has more than {MAX_DEPTH} generations of parent genres") as info:
        GenreMap.load(path)
    _one_line(info, path)


def test_the_depth_limit_counts_generations_exactly():
    # g0 -> g1 -> ... -> g{MAX_DEPTH}: MAX_DEPTH generations above g0, allowed; one more is not.
    deepest = GenreMap.from_dict({"parents": {f"g{i}": [f"g{i + 1}"] for i in range(MAX_DEPTH)}})
    assert deepest.ancestors("g0") == [f"g{i}" for i in range(1, MAX_DEPTH + 1)]  # spelled as written
    with pytest.raises(GenreMapError, match="'g0' has more than"):
        GenreMap.from_dict({"parents": {f"g{i}": [f"g{i + 1}"] for i in range(MAX_DEPTH + 1)}})
    # The same chain written top first: found by the walk's bookkeeping, not its path.
    with pytest.raises(GenreMapError, match="'g0' has more than"):
        GenreMap.from_dict({"parents": {f"g{i}": [f"g{i + 1}"] for i in reversed(range(MAX_DEPTH + 1))}})


def test_a_long_cycle_is_one_short_line():
    with pytest.raises(GenreMapError, match=r"cycle: g0 -> g1 -> g2 -> g3 -> \.\.\. \(\d+ more\) -> g49 -> g0") as info:
        GenreMap.from_dict({"parents": {f"g{i}": [f"g{(i + 1) % 50}"] for i in range(50)}}, source="m")
    _one_line(info, "m")


def test_a_genre_with_fifty_thousand_parents_is_refused_at_once():
    # Once quadratic (every parent compared with the row so far): over 300 s.
    parents = [f"p{i}" for i in range(50_000)]
    with pytest.raises(GenreMapError, match=rf"'child' has 50000 parent genres; at most {MAX_PARENTS}") as info:
        GenreMap.from_dict({"parents": {"child": parents}}, source="m")
    _one_line(info, "m")
    # At the limit it is a map, repeats (by key) counted once.
    most = GenreMap.from_dict({"parents": {"child": parents[:MAX_PARENTS] + ["P0", "p 1"]}})
    assert len(most.ancestors("child")) == MAX_PARENTS


def test_too_many_ancestors_and_too_many_links_are_refused():
    # 100 parents with 10 parents each: 1,100 ancestors.
    wide = {"child": [f"p{i}" for i in range(100)]} | {f"p{i}": [f"q{i}-{j}" for j in range(10)] for i in range(100)}
    with pytest.raises(GenreMapError, match=rf"'child' has 1100 ancestor genres.*at most {MAX_ANCESTORS}"):
        GenreMap.from_dict({"parents": wide})
    # 20 layers of 20 genres, each genre's parents the whole layer above: under every per-genre
    # limit (380 ancestors, 19 generations, 20 parents), but resolving all of it takes 1.4 million steps.
    layers = {f"l{k}/{i}": [f"l{k + 1}/{j}" for j in range(20)] for k in range(19) for i in range(20)}
    with pytest.raises(GenreMapError, match=r"\[parents\] relate too many genres: .*more than 1,000,000 steps"):
        GenreMap.from_dict({"parents": layers})
    # Half of it is a map, with each genre's ancestors nearest first.
    half = {key: row for key, row in layers.items() if int(key[1:].split("/")[0]) >= 10}
    genre_map = GenreMap.from_dict({"parents": half})
    found = genre_map.ancestors("l10/0")
    assert len(found) == 9 * 20 and found[:20] == [f"l11/{j}" for j in range(20)]
    assert genre_map.ancestors("l10/0") == found  # from the memo, a fresh list
    found.clear()
    assert len(genre_map.ancestors("l10/0")) == 180


def test_a_deeply_nested_toml_array_is_one_line_not_a_recursion_error(tmp_path):
    for text in ('[genres]\n"Rock" = ' + "[" * 5000 + "]" * 5000 + "\n",
                 '[options]\ncase = ' + "{a = " * 3000 + "1" + "}" * 3000 + "\n"):
        path = _write(tmp_path, text)
        with pytest.raises(GenreMapError, match="TOML nested too deeply") as info:
            GenreMap.load(path)
        _one_line(info, path)
    # Nesting that parses is reported as what it is, the value cut short.
    path = _write(tmp_path, '[genres]\n"Rock" = ' + "[" * 50 + "]" * 50 + "\n")
    with pytest.raises(GenreMapError, match=r"a genre name must be a string, not list \[\[\[\[\.\.\.\]\]\]\]") as info:
        GenreMap.load(path)
    _one_line(info, path)


def test_a_long_value_is_cut_short_in_the_message(tmp_path):
    path = _write(tmp_path, f'[genres]\n"Rock" = "{"x" * 100_000}"\n[options]\n')
    with pytest.raises(GenreMapError, match=r"aliases must be a list of strings.*not 'xxx.*\.\.\..*xxx'") as info:
        GenreMap.load(path)
    _one_line(info, path)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.encode())
    assert GenreMap.load(path) == GenreMap.from_dict(tomllib.loads(EXAMPLE), source=str(path))
    assert GenreMap.load(path).ancestors("deep house") == ["House", "Electronic"]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "map.toml"
    os.mkfifo(fifo)
    with _unblocking(fifo), pytest.raises(GenreMapError, match=r"a named pipe \(FIFO\), not a genre map file") as info:
        GenreMap.load(fifo)
    _one_line(info, fifo)


def test_a_file_swapped_for_a_fifo_after_the_check_is_refused_without_waiting(tmp_path, monkeypatch):
    # The race: the path is a regular file when checked and a FIFO when opened. Opening without
    # blocking, then checking what was opened, refuses it instead of waiting for a writer.
    import genrify.collection.genremap as genremap

    fifo, regular = tmp_path / "map.toml", _write(tmp_path, EXAMPLE, "regular.toml")
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(genremap.os, "stat",
                        lambda p, *a, **k: real_stat(regular if str(p) == str(fifo) else p, *a, **k))
    with _unblocking(fifo), pytest.raises(GenreMapError, match=r"a named pipe \(FIFO\)"):
        GenreMap.load(fifo)


def test_a_device_is_refused_before_it_is_read(tmp_path):
    # /dev/zero was read until memory ran out: here in a child process with its memory capped, so
    # a regression fails this test instead of taking the machine down.
    link = tmp_path / "map.toml"
    link.symlink_to("/dev/zero")
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from genrify.collection.genremap import GenreMap
        from genrify.errors import GenreMapError
        for path in ("/dev/zero", {str(link)!r}):
            try:
                GenreMap.load(path)
            except GenreMapError as exc:
                print(exc)
            else:
                sys.exit("read a device")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["/dev/zero: a device, not a genre map file (only a regular file is read)",
                                        f"{link}: a device, not a genre map file (only a regular file is read)"]


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(MAX_MAP_BYTES + 1)  # sparse: no disk, no time
    with pytest.raises(GenreMapError, match=r"larger than 1 MiB: too large for a genre map") as info:
        GenreMap.load(big)
    _one_line(info, big)
    # At the limit it is read (and is then judged as TOML).
    at_limit = tmp_path / "at_limit.toml"
    at_limit.write_bytes(b"#" * (MAX_MAP_BYTES - 1) + b"\n")
    assert GenreMap.load(at_limit) == GenreMap(source=str(at_limit))


def test_a_file_larger_than_its_size_says_is_cut_at_the_limit(tmp_path, monkeypatch):
    # Files under /proc report a size of 0: the limit is on the bytes read, not on st_size.
    import genrify.collection.genremap as genremap

    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (MAX_MAP_BYTES + 10) + b"\n")
    real_stat, real_fstat = os.stat, os.fstat

    def zero(st: os.stat_result) -> os.stat_result:
        fields = list(st)
        fields[stat.ST_SIZE] = 0
        return os.stat_result(fields)

    monkeypatch.setattr(genremap.os, "stat", lambda p, *a, **k: zero(real_stat(p, *a, **k)))
    monkeypatch.setattr(genremap.os, "fstat", lambda fd: zero(real_fstat(fd)))
    with pytest.raises(GenreMapError, match="larger than 1 MiB"):
        GenreMap.load(big)
