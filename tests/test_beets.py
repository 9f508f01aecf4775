"""The beets plugin (src/beetsplug/genrify.py) in a real beets: a temporary library made with
``beet import -A`` from synthetic songs, ``beet genrify`` run as a user runs it, the database read
back with beets' own library API (and ``beet ls``), the files' tags with mutagen and mediafile.

The built-in model's answer for a synthetic song is not asserted; what is asserted is that the plugin
sets exactly what genrify's own API answers for the same file, through the same tag policy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("beets", reason="beets is not installed (pip install genrify[beets])")
mediafile = pytest.importorskip("mediafile")
import mutagen  # noqa: E402

from genrify.classify.predict import Prediction  # noqa: E402
from genrify.classify.modelref import ModelRef  # noqa: E402
from genrify.classify.service import classify_library  # noqa: E402
from genrify.collection.tagpolicy import TagPolicy  # noqa: E402
from genrify.core.runner import LocalRunner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BEET = Path(sys.executable).parent / "beet"
if not BEET.exists():  # pragma: no cover - beets importable without its script
    pytest.skip(f"no beet command at {BEET}", allow_module_level=True)

#: The test collection: (folder, file, synthetic genre, song index); each folder is one album.
SONGS = [
    ("Alpha", "a1.mp3", "metal", 0),
    ("Alpha", "a2.mp3", "metal", 1),
    ("Alpha", "a3.mp3", "classical", 0),  # an outlier: album mode outvotes it
    ("Beta", "b1.flac", "classical", 1),
    ("Beta", "b2.flac", "jazz", 0),
]
SECONDS = 4.0
#: Settings every test library shares: answers are set even where the model is unsure, so each
#: test sees every item changed; one process classifies (no pool to start for five songs).
BASE = {"jobs": 1, "skip_unsure": False}


@pytest.fixture(scope="module", autouse=True)
def beets_config_here(tmp_path_factory):
    """beets in this process (the library API reading the database back) reads its configuration
    from a folder of the tests, never from (or into) the home folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEETSDIR", str(tmp_path_factory.mktemp("beets-in-process")))
        yield


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    """The synthetic songs, tagged with an artist, album and title (as a collection has them)."""
    from genrify.audio.synth import SynthSpec, write_song

    root = tmp_path_factory.mktemp("songs")
    for folder, name, genre, index in SONGS:
        path = root / folder / name
        spec = SynthSpec(genres=(genre,), per_genre=1, seconds=SECONDS, seed=3, fmt=path.suffix[1:])
        write_song(path, genre, index, spec)
        f = mediafile.MediaFile(str(path))
        f.artist, f.albumartist, f.album, f.title = "Synth Band", "Synth Band", folder, path.stem
        f.save()
    return root


@pytest.fixture(scope="module")
def reference(songs) -> dict[str, Prediction]:
    """genrify's own answer for each song (relative path -> prediction): what the plugin must set."""
    run = classify_library([songs], ModelRef.builtin(), runner=LocalRunner(1))
    assert not run.failures
    return {Path(p.path).relative_to(songs).as_posix(): p for p in run.predictions}  # type: ignore[arg-type]


def expected(prediction: Prediction, **policy: Any) -> list[str]:
    """The genres the plugin's settings give for one answer (the default map)."""
    settings = {k: v for k, v in {**BASE, **policy}.items() if k in TagPolicy.__dataclass_fields__}
    return TagPolicy(**settings).genres_for(prediction.top(len(prediction.genres)), unsure=prediction.low_confidence)


def album_expected(predictions: Sequence[Prediction], **policy: Any) -> list[str]:
    """The genres album mode gives every track of an album: the pooled answer through the policy."""
    from genrify.classify.albums import pool_album

    pooled = pool_album(predictions)
    genres = predictions[0].genres
    ranked = [(genres[i], float(pooled[i])) for i in np.argsort(-pooled, kind="stable")]
    settings = {k: v for k, v in {**BASE, **policy}.items() if k in TagPolicy.__dataclass_fields__}
    return TagPolicy(**settings).genres_for(ranked)


class BeetsLibrary:
    """A beets library in a temporary folder: its own BEETSDIR, config.yaml, library.db and a copy
    of the songs, driven through the real ``beet`` command."""

    def __init__(self, root: Path, songs: Path) -> None:
        self.root = root
        self.dir = root / "beetsdir"
        self.dir.mkdir()
        self.music = root / "music"
        shutil.copytree(songs, self.music)
        self.db = self.dir / "library.db"

    def configure(self, *, write: bool = True, copy: bool = False, **genrify: Any) -> None:
        """Write config.yaml (JSON is YAML): no autotagging; files stay where they are, or with
        ``copy`` are copied into the library's ``collection`` folder."""
        config = {
            "directory": str(self.root / "collection"),
            "library": str(self.db),
            "plugins": ["genrify"],
            "import": {"write": write, "copy": copy, "move": False, "autotag": False, "resume": False,
                       "incremental": False},
            "genrify": {**BASE, **genrify},
        }
        (self.dir / "config.yaml").write_text(json.dumps(config, indent=1))

    def beet(self, *args: str, ok: bool = True, timeout: float = 300,
             before: str = "") -> subprocess.CompletedProcess[str]:
        """Run ``beet ARGS`` against this library; with ``ok``, fail the test unless it exits 0. ``before``:
        Python run first in beets' process (``beets.ui.main`` then runs the command), to stand in for
        what a test cannot do as root (a file that refuses writing)."""
        # genrify's results cache goes where XDG says: here, never into the home folder.
        env = {**os.environ, "BEETSDIR": str(self.dir), "XDG_CACHE_HOME": str(self.root / "cache")}
        main = "import beets.ui, sys; beets.ui.main(sys.argv[1:])"
        command = [sys.executable, "-c", f"{before}\n{main}"] if before else [str(BEET)]
        done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if ok:
            assert done.returncode == 0, f"beet {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def import_songs(self) -> None:
        self.beet("import", "-A", "-q", str(self.music))
        assert len(self.items()) == len(SONGS)

    def items(self) -> dict[str, dict[str, Any]]:
        """Relative path -> the item's genres and genrify's attributes, read with beets' library API."""
        from beets.library import Library

        lib = Library(str(self.db))
        try:
            out = {}
            for item in lib.items():
                rel = Path(os.fsdecode(item.path)).relative_to(self.music).as_posix()
                out[rel] = {
                    "genres": list(item.get("genres") or []),
                    "genrify_genres": item.get("genrify_genres"),
                    "genrify_model": item.get("genrify_model"),
                    "genrify_confidence": item.get("genrify_confidence"),
                    "album_id": item.get("album_id"),
                }
            return out
        finally:
            lib._close()

    def paths(self) -> dict[str, Path]:
        """Relative source path (album/title.ext, as in SONGS) -> the item's file, wherever beets put it."""
        from beets.library import Library

        lib = Library(str(self.db), directory=str(self.root / "collection"))  # beets keeps its paths relative to it
        try:
            return {f"{item.album}/{item.title}.{item.format.lower()}": Path(os.fsdecode(item.path))
                    for item in lib.items()}
        finally:
            lib._close()

    def album_genres(self) -> dict[str, list[str]]:
        """Album name -> the beets album's own genres."""
        from beets.library import Library

        lib = Library(str(self.db))
        try:
            return {album.album: list(album.get("genres") or []) for album in lib.albums()}
        finally:
            lib._close()


@pytest.fixture
def library(tmp_path, songs) -> BeetsLibrary:
    lib = BeetsLibrary(tmp_path, songs)
    lib.configure()
    return lib


def file_genres(path: Path) -> list[str]:
    """The genres in a file's tags as mutagen reads them (ID3 TCON values, Vorbis GENRE fields),
    checked against mediafile (beets' own reader)."""
    f = mutagen.File(path)
    if path.suffix == ".mp3":
        found = list(f.tags["TCON"].text) if f.tags is not None and "TCON" in f.tags else []
    else:
        found = list(f.tags.get("genre", [])) if f.tags is not None else []
    assert list(mediafile.MediaFile(str(path)).genres or []) == found
    return found


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- packaging -------------------------------------------------------------------------------------


def test_loading_the_plugin_loads_neither_numpy_nor_the_service():
    # beets imports every configured plugin at every command (`beet ls` too): genrify's share of
    # that must stay small, its numpy and models loaded only when a genrify command runs.
    code = ("import sys, beetsplug.genrify; "
            "print(sorted(m for m in ('numpy', 'genrify.classify.service', 'genrify.classify.albums') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_beets_finds_the_plugin_in_the_beetsplug_namespace(library):
    import importlib.util

    import beetsplug
    import beetsplug.genrify

    assert Path(beetsplug.genrify.__file__).resolve() == REPO / "src" / "beetsplug" / "genrify.py"
    # beets' own plugins are still found: the namespace is shared, not shadowed.
    own = importlib.util.find_spec("beetsplug.lastgenre")
    assert own is not None and Path(own.origin).resolve().parents[1] != REPO / "src" / "beetsplug"
    assert len(list(beetsplug.__path__)) >= 2
    # beets' layout: no __init__.py, or it would hide beets' own plugins; setuptools packs it as a
    # namespace package (the default of [tool.setuptools.packages.find] in pyproject.toml).
    assert not (REPO / "src" / "beetsplug" / "__init__.py").exists()
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find.get("namespaces", True) is True and find["where"] == ["src"]
    from setuptools import find_namespace_packages

    assert "beetsplug" in find_namespace_packages(where=str(REPO / "src"))
    assert "genrify" in library.beet("version").stdout.splitlines()[-1]


# --- beet genrify --------------------------------------------------------------------------------


def right(*predictions: Any) -> str:
    """What the run says of the items changed: the built-in model is calibrated, and each item's
    first genre is its answer's top genre, so the share to expect right is their mean confidence."""
    return f"expect about {np.mean([p.confidence for p in predictions]):.0%} right"


def test_beet_genrify_sets_genres_in_the_library_and_the_files(library, reference):
    library.import_songs()
    before = library.items()
    assert all(not v["genres"] and v["genrify_model"] is None for v in before.values())

    # -p shows before -> after per item and changes nothing, in the library or the files.
    files, db = digest(library.music), library.db.read_bytes()
    out = library.beet("genrify", "-p").stdout
    lines = [line for line in out.splitlines() if " -> " in line]
    assert len(lines) == len(SONGS)
    for rel, prediction in reference.items():
        assert any(Path(rel).stem in line and line.endswith(f"(none) -> {'; '.join(expected(prediction))}")
                   for line in lines)
    assert f"{len(SONGS)} would change ({right(*reference.values())})" in out
    assert digest(library.music) == files and library.db.read_bytes() == db

    out = library.beet("genrify").stdout
    n = len(SONGS)  # the pretend run's answers were kept in genrify's results cache
    assert (f"genrify: {n} classified ({n} from cache), {n} changed ({n} written; {right(*reference.values())}), "
            "0 unchanged, 0 kept, 0 skipped, 0 failed") in out
    items = library.items()
    for rel, prediction in reference.items():
        want = expected(prediction)
        assert want, rel
        assert items[rel]["genres"] == want, rel
        assert items[rel]["genrify_genres"] == "; ".join(want)
        assert items[rel]["genrify_model"] == ModelRef.builtin().name
        assert float(items[rel]["genrify_confidence"]) == pytest.approx(prediction.confidence, abs=2e-3)
        assert file_genres(library.music / rel) == want  # import.write: yes
        # The file carries genrify's record too (beets writes it as a media field), so genrify's own
        # commands know these genres for genrify's guesses, not a person's.
        from genrify.collection.tags import read_provenance

        record = read_provenance(library.music / rel)
        assert record is not None and list(record.genres) == want and record.model == ModelRef.builtin().name
    # What a user sees: beet ls with the multi-valued field and the flexible attributes.
    listed = library.beet("ls", "-f", "$path|$genres|$genrify_model", "genrify_model:genrify").stdout.splitlines()
    assert sorted(listed) == sorted(
        f"{library.music / rel}|{'; '.join(expected(p))}|{ModelRef.builtin().name}" for rel, p in reference.items())
    # The flexible confidence is typed: a numeric query works.
    assert len(library.beet("ls", "genrify_confidence:0..1").stdout.splitlines()) == n
    # An album whose tracks now share their genres has them too (beets keeps genres by album: its
    # `update` gives every track the album's); one whose tracks differ keeps its own (none).
    by_album: dict[str, set[tuple[str, ...]]] = {}
    for folder, name, _, _ in SONGS:
        by_album.setdefault(folder, set()).add(tuple(items[f"{folder}/{name}"]["genres"]))
    albums = dict(line.split("|") for line in library.beet("ls", "-a", "-f", "$album|$genres").stdout.splitlines())
    assert albums == {a: "; ".join(next(iter(g))) if len(g) == 1 else "" for a, g in by_album.items()}

    # A second run passes over what is done; -f redoes it (same answers: nothing changes).
    again = library.beet("genrify").stdout
    assert f"genrify: 0 classified, 0 changed (0 written), 0 unchanged, 0 kept, {n} skipped ({n} done before)" in again
    forced = library.beet("genrify", "-f", "album:Beta").stdout  # answers from genrify's results cache
    assert ("genrify: 2 classified (2 from cache), 0 changed (0 written), 2 unchanged, 0 kept, 0 skipped, "
            "0 failed") in forced
    assert library.items() == items


def test_keep_merge_and_replace_respect_a_persons_genre(library, reference):
    library.configure(write=False)  # import.write: no - only -w writes files
    library.import_songs()
    library.beet("modify", "-y", "-W", "title:a1", "genres=Polka")
    files = digest(library.music)
    a1, want = "Alpha/a1.mp3", expected(reference["Alpha/a1.mp3"])

    # keep (the default): the person's genre stays, the rest get genrify's; no file written.
    out = library.beet("genrify").stdout
    others = [p for rel, p in reference.items() if rel != a1]
    assert f"4 changed (0 written; {right(*others)}), 0 unchanged, 1 kept" in out
    items = library.items()
    assert items[a1]["genres"] == ["Polka"] and items[a1]["genrify_genres"] is None
    assert items[a1]["genrify_model"] == ModelRef.builtin().name  # done: a later run passes it over
    assert all(items[rel]["genres"] == expected(p) for rel, p in reference.items() if rel != a1)
    assert digest(library.music) == files

    # merge: the person's genre first, genrify's after it, and only genrify's recorded as genrify's.
    library.configure(write=False, mode="merge")
    out = library.beet("genrify", "-f").stdout
    assert f"5 classified (5 from cache), 1 changed (0 written; {right(reference[a1])}), 4 unchanged, 0 kept" in out
    items = library.items()
    assert items[a1]["genres"] == ["Polka", *want] and items[a1]["genrify_genres"] == "; ".join(want)

    # replace, with -w: genrify's answer only, written to the file.
    library.configure(write=False, mode="replace")
    out = library.beet("genrify", "-f", "-w", "title:a1").stdout
    assert f"1 changed (1 written; {right(reference[a1])})" in out
    assert library.items()[a1]["genres"] == want
    assert file_genres(library.music / a1) == want


def test_album_mode_gives_every_track_of_an_album_the_albums_genre(library, reference):
    library.configure(album_mode=True)
    library.import_songs()
    # A track that cannot be decoded is reported and left out; its album is pooled from the others.
    broken = library.music / "Alpha" / "a3.mp3"
    broken.write_bytes(b"ID3" + bytes(range(256)) * 8)
    done = library.beet("genrify")
    assert f"genrify: {len(SONGS) - 1} classified, {len(SONGS) - 1} changed" in done.stdout
    assert "1 failed" in done.stdout and "a3.mp3" in done.stderr
    items = library.items()
    assert items["Alpha/a3.mp3"]["genrify_model"] is None and not items["Alpha/a3.mp3"]["genres"]  # tried again later
    albums = library.album_genres()
    for album in ("Alpha", "Beta"):
        rels = [f"{album}/{name}" for folder, name, _, _ in SONGS if folder == album and name != "a3.mp3"]
        want = album_expected([reference[rel] for rel in rels])
        assert [items[rel]["genres"] for rel in rels] == [want] * len(rels), album
        assert [file_genres(library.music / rel) for rel in rels] == [want] * len(rels)
        if album == "Beta":
            assert albums[album] == want  # the beets album agrees with its tracks (Alpha's do not all agree)


#: Run in beets' process first: the file named FILE refuses writing as an immutable one (``chattr +i``) does,
#: which root (these tests' user in a container) cannot be refused otherwise.
REFUSE_WRITING = """
import beets.library as lib
write = lib.Item.write
def refuse(item, *args, **kwargs):
    if item.path.endswith(b"/FILE"):
        raise lib.WriteError(item.path, PermissionError(1, "Operation not permitted", item.path.decode()))
    return write(item, *args, **kwargs)
lib.Item.write = refuse
"""


def test_a_file_that_cannot_be_written_is_a_change_not_written_and_said_so(library, reference):
    # It was counted changed and failed too (classified + failed overran the items) and nothing said
    # that the database holds the change, which `beet write` puts in the file.
    library.import_songs()
    n, locked = len(SONGS), "Beta/b2.flac"
    done = library.beet("genrify", before=REFUSE_WRITING.replace("FILE", Path(locked).name))
    assert f"{n} changed ({n - 1} written, 1 not written; {right(*reference.values())}), " in done.stdout
    assert done.stdout.rstrip().endswith(", 0 failed")
    said = [line for line in _error_lines(done) if "writ" in line]
    assert len(said) == 2 and said[0].startswith(f"error writing {library.music / locked}"), said  # beets' own line
    assert said[1] == ("genrify: 1 file not written: the database holds the new genres; run `beet write` once it "
                       "can be written")
    items, want = library.items(), expected(reference[locked])
    assert items[locked]["genres"] == want and items[locked]["genrify_model"] == ModelRef.builtin().name
    assert file_genres(library.music / locked) == []
    library.beet("write")  # the file can be written now
    assert file_genres(library.music / locked) == want


def test_an_item_whose_file_is_now_a_folder_is_said_and_failed(library, reference):
    # It was dropped without a word (and the folder's own audio file classified in its stead).
    library.import_songs()
    item = library.music / "Alpha" / "a1.mp3"
    item.unlink()
    item.mkdir()
    shutil.copy(library.music / "Alpha" / "a2.mp3", item / "inside.mp3")
    done = library.beet("genrify", "-p")
    assert f"{len(SONGS) - 1} classified" in done.stdout and done.stdout.rstrip().endswith(", 1 failed")
    assert [line for line in _error_lines(done) if "a1" in line] == [f"genrify: {item}: a folder, not an audio file"]


def test_hop_seconds_and_max_duration_are_read(library):
    # Known keys (no warning) that were never read: a longest song of 1 s refuses every 4 s song.
    library.configure(max_duration=1)
    library.import_songs()
    done = library.beet("genrify", "-p")
    assert done.stdout.rstrip().endswith(f"genrify: 0 classified, 0 would change, 0 unchanged, 0 kept, 0 skipped, "
                                         f"{len(SONGS)} failed")
    library.configure(hop_seconds=1.5)
    assert f"{len(SONGS)} would change" in library.beet("genrify", "-p").stdout


def test_the_import_stage_classifies_new_items(tmp_path, songs, reference):
    library = BeetsLibrary(tmp_path, songs)
    library.configure(auto=True, jobs=None)  # the import stage's default: the files decoded in-process
    out = library.beet("import", "-A", "-q", str(library.music))
    assert "Traceback" not in out.stderr
    items = library.items()
    assert len(items) == len(SONGS)
    for rel, prediction in reference.items():
        assert items[rel]["genres"] == expected(prediction), rel
        assert items[rel]["genrify_model"] == ModelRef.builtin().name
        assert file_genres(library.music / rel) == expected(prediction)  # as-is import, import.write: yes
    assert f"{len(SONGS)} skipped ({len(SONGS)} done before)" in library.beet("genrify").stdout


def test_the_import_stage_never_writes_the_source_files_of_a_copying_import(tmp_path, songs, reference):
    # Import stages run before beets copies the files: genrify must write the library's copies
    # (as beets does), never the files the import was given.
    library = BeetsLibrary(tmp_path, songs)
    library.configure(auto=True, copy=True)  # import.write: yes
    sources = digest(library.music)
    out = library.beet("import", "-A", "-q", str(library.music))
    assert "Traceback" not in out.stderr
    assert digest(library.music) == sources  # byte for byte
    assert all(file_genres(library.music / rel) == [] for rel in reference)
    paths = library.paths()
    assert sorted(paths) == sorted(reference)
    collection = tmp_path / "collection"
    for rel, prediction in reference.items():
        assert paths[rel].is_relative_to(collection), paths[rel]
        assert expected(prediction)
        assert file_genres(paths[rel]) == expected(prediction), rel
    # The copies' answers are in genrify's results cache under their own paths (the sources' under theirs).
    n = len(SONGS)
    forced = library.beet("genrify", "-f").stdout
    assert f"genrify: {n} classified ({n} from cache), 0 changed (0 written), {n} unchanged" in forced
    assert digest(library.music) == sources


@pytest.mark.parametrize(("settings", "says"), [
    ({"mode": "sideways"}, "mode"),
    ({"count": 0}, "count"),
    ({"count": "many"}, "count"),
    ({"min_confidence": 2}, "min_confidence"),
    ({"separator": ""}, "separator"),
    ({"jobs": 0}, "jobs"),
    ({"own_genre_above": 1.5}, "own_genre_above"),
    ({"own_genre_above": 0.5}, "own_genre_above goes with album_mode"),
    # with count 1 the track's own genre would never be written
    ({"own_genre_above": 0.5, "album_mode": True}, "own_genre_above needs count 2 or more"),
    ({"map": "no-such-map.toml"}, "no-such-map.toml"),
    ({"model": "no-such-model.safetensors"}, "no-such-model.safetensors"),
    ({"genres": ["rock", "polka-step"]}, "polka-step"),
    # Read as the plugin loads: once a traceback and "unknown command 'genrify'".
    ({"auto": "maybe"}, "genrify.auto: must be a bool"),
    ({"parents": "maybe"}, "parents"),
    ({"hop_seconds": 0}, "hop_seconds must be a positive number of seconds"),
    ({"max_duration": -1}, "max_duration must be a positive number of seconds (none: no limit), not -1"),
])
def test_a_bad_config_value_is_one_line_naming_it(library, settings, says):
    library.configure(**settings)
    done = library.beet("genrify", ok=False)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0] and "genrify" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def _error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines beets wrote to stderr, after checking there is no traceback among them."""
    assert "Traceback" not in done.stderr and "unknown command" not in done.stderr, done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


def test_a_bad_auto_stops_an_import_before_it_imports_anything(library):
    library.configure(auto="maybe")
    done = library.beet("import", "-A", "-q", str(library.music), ok=False)
    assert done.returncode == 1
    assert _error_lines(done) == ["error: genrify: genrify.auto: must be a bool, not str"]
    assert library.items() == {}
    # Commands that do not use genrify are not stopped.
    assert library.beet("ls").returncode == 0


def test_a_genrify_section_that_is_not_a_table_is_one_line(library):
    (library.dir / "config.yaml").write_text(json.dumps({"library": str(library.db), "plugins": ["genrify"],
                                                         "genrify": True}))
    done = library.beet("genrify", ok=False)
    assert done.returncode == 1
    assert _error_lines(done) == ["error: genrify: genrify must be a collection, not bool"]


def test_unknown_keys_are_warned_about_one_line_each(library):
    from beetsplug.genrify import _defaults

    # genre_map is the CLI's and the settings' name; beets' key is `map`, so it is not silently taken.
    library.configure(min_confidense=0.5, colour="red", genre_map="x.toml")  # an empty library
    done = library.beet("genrify")
    assert "genrify: 0 classified" in done.stdout
    known = ", ".join(_defaults())
    assert "map" in _defaults() and "genre_map" not in _defaults()
    assert sorted(_error_lines(done)) == [
        f"genrify: unknown key 'colour' in the genrify configuration, ignored (known: {known})",
        f"genrify: unknown key 'genre_map' in the genrify configuration, ignored (known: {known})",
        f"genrify: unknown key 'min_confidense' in the genrify configuration, ignored (known: {known})",
    ]
    library.configure()  # and none for a configuration of known keys
    assert _error_lines(library.beet("genrify")) == []


def test_a_hostile_map_is_one_line(library):
    # Each was a hang (a FIFO), a RecursionError traceback (deep TOML, a long chain of parents) or
    # an "Invalid statement" (a byte order mark, which is accepted now).
    os.mkfifo(library.dir / "pipe.toml")
    (library.dir / "deep.toml").write_text('[genres]\n"Rock" = ' + "[" * 5000 + "]" * 5000 + "\n")
    (library.dir / "chain.toml").write_text(
        "[parents]\n" + "".join(f'"g{i}" = ["g{i + 1}"]\n' for i in range(10_000)))
    (library.dir / "bom.toml").write_bytes(b"\xef\xbb\xbf[genres]\n\"Hip-Hop\" = [\"rap\"]\n")
    for name, says in [("pipe.toml", "a named pipe (FIFO), not a genre map file"),
                       ("deep.toml", "TOML nested too deeply"),
                       ("chain.toml", "'g0' has more than 100 generations of parent genres")]:
        library.configure(map=name)
        done = library.beet("genrify", ok=False, timeout=60)
        assert done.returncode == 1, name
        lines = _error_lines(done)
        assert len(lines) == 1 and lines[0].startswith(f"error: genrify: {library.dir / name}: "), lines
        assert says in lines[0], lines
    library.configure(map="bom.toml")
    assert "genrify: 0 classified" in library.beet("genrify").stdout


def test_a_beets_without_the_multi_valued_field_gets_joined_genres(monkeypatch):
    import beetsplug.genrify as plugin
    from beets.library import Item

    monkeypatch.setattr(plugin, "GENRE_FIELD", "genre")
    item, fields = Item(), plugin.ItemFields(" / ")
    fields.set_field(item, ["Jazz", "Blues"])
    assert item["genre"] == "Jazz / Blues"
    assert fields.genres_of(item) == ["Jazz", "Blues"]


# --- beet genrify-learn and --suggest -------------------------------------------------------------

#: A library to learn from: (artist, file, synthetic genre, song index); four artists.
LEARN_SONGS = [(f"Artist {k % 4}", f"{genre}{k}.flac", genre, k) for genre in ("metal", "classical") for k in range(6)]


@pytest.fixture(scope="module")
def learn_songs(tmp_path_factory) -> Path:
    from genrify.audio.synth import SynthSpec, write_song

    root = tmp_path_factory.mktemp("learn-songs")
    for artist, name, genre, index in LEARN_SONGS:
        path = root / artist / name
        spec = SynthSpec(genres=(genre,), per_genre=1, seconds=3.5, seed=11, fmt="flac")
        write_song(path, genre, index, spec)
        f = mediafile.MediaFile(str(path))
        f.artist, f.albumartist, f.album, f.title = artist, artist, artist, path.stem
        f.save()
    return root


def test_genrify_learn_learns_from_the_databases_genres_and_suggests(tmp_path, learn_songs):
    library = BeetsLibrary(tmp_path, learn_songs)
    library.configure(write=False)
    library.beet("import", "-A", "-q", str(library.music))
    # People's genres, in the database only (-W: the files keep none): four of each genre are labels;
    # metal5 carries a genre genrify set (its provenance says so), which must never teach.
    for genre, spelled in (("metal", "Metal"), ("classical", "Classical")):
        for k in range(4):
            library.beet("modify", "-y", "-W", f"title:{genre}{k}", f"genres={spelled}")
    library.beet("modify", "-y", "-W", "title:metal5", "genres=Metal", "genrify_genres=Metal", "genrify_model=x")
    assert not any(file_genres(p) for p in library.music.rglob("*.flac"))

    model = tmp_path / "mine.safetensors"
    done = library.beet("genrify-learn", "--out", str(model), "--min-songs", "3")
    assert "learned 2 genres from 8 songs" in done.stdout and "cross-validated" in done.stdout, done.stdout
    assert "4 without a genre" in done.stdout and model.is_file()
    assert (tmp_path / "cache" / "genrify" / "embeddings.sqlite").is_file()  # the cache `genrify learn` uses
    from genrify.models.modelfile import read_metadata

    learned_from = read_metadata(model)["info"]["learned_from"]
    assert learned_from["labels"] == "beets" and learned_from["artists_from"] == {"tags": 8, "folders": 0, "none": 0}
    # Learning again embeds nothing: the embeddings come from the cache.
    # A relative --out: the model: line to set names the file absolutely (beets reads model: from its
    # config's folder, not from where the command ran).
    again = library.beet("genrify-learn", "--out", os.path.relpath(model), "--min-songs", "3").stdout
    assert "0 embedded, 8 from cache" in again and f"set `model: {model}` in the genrify section" in again

    # --suggest on the learned model: items without a person's genre only, with the model's guess; a
    # placeholder (Unknown) is no genre, as for tagging and learning.
    library.configure(write=False, model=str(model))
    library.beet("modify", "-y", "-W", "title:classical5", "genres=Unknown")
    before = library.items()
    listed = library.beet("genrify", "--suggest", "2").stdout
    rows = [line.split(" | ") for line in listed.splitlines() if " | " in line]
    assert len(rows) == 2, listed
    assert "right now" not in listed, listed  # a head of so few artists promises no share right
    untagged = {"metal4", "metal5", "classical4", "classical5"}
    assert all(Path(path).stem in untagged and guess in ("Metal", "Classical") and 0 < float(p) <= 1
               for _item, path, guess, p in rows)
    assert library.items() == before  # --suggest changes nothing

    # model: takes the learned file; beet genrify answers in the library's own genres.
    out = library.beet("genrify", "title:metal4", ",", "title:classical4").stdout
    assert "genrify: 2 classified" in out, out
    items = library.items()
    for rel in ("Artist 0/metal4.flac", "Artist 0/classical4.flac"):
        assert items[rel]["genrify_model"] == "mine.safetensors"
        assert set(items[rel]["genres"]) <= {"Metal", "Classical"} and items[rel]["genres"]

    # Artists come from albumartist, then artist (learn_records groups an item without one by its folder).
    from beets.library import Item
    from beetsplug.genrify import ItemFields

    fields = ItemFields(", ")
    assert fields.artist_of(Item(albumartist="The Band", artist="Someone", path=b"/m/a/x.flac")) == "The Band"
    assert fields.artist_of(Item(artist="Someone", path=b"/m/a/x.flac")) == "Someone"
    assert fields.artist_of(Item(path=b"/m/a/x.flac")) == ""


def test_genrify_learn_refuses_bad_options_and_too_few_genres_in_one_line(library):
    library.import_songs()  # no item has a genre
    for args, says in [((), "needs --out MODEL"),
                       (("--out", "m.safetensors", "--min-songs", "0"), "--min-songs must be at least 1"),
                       (("--out", "m.safetensors"), "none of the 5 has a genre"),
                       (("artist:nobody", "--out", "m.safetensors"), "no beets item with a file to learn from (none matched")]:
        done = library.beet("genrify-learn", *args, ok=False)
        assert done.returncode == 1
        lines = _error_lines(done)
        assert len(lines) == 1 and says in lines[0] and lines[0].startswith("error: genrify: "), lines
    done = library.beet("genrify", "--suggest", "0", ok=False)
    assert _error_lines(done) == ["error: genrify: --suggest must be at least 1, not 0"]


def test_an_older_beets_learns_from_the_joined_genre_field(monkeypatch):
    import beetsplug.genrify as plugin
    from beets.library import Item

    monkeypatch.setattr(plugin, "GENRE_FIELD", "genre")
    item, fields = Item(genre="Jazz, Blues, Soul"), plugin.ItemFields(", ")
    assert fields.labels_of(item) == ["Jazz", "Blues", "Soul"]
    item["genrify_genres"] = "Soul"  # genrify set Soul: not a label
    assert fields.labels_of(item) == ["Jazz", "Blues"]
