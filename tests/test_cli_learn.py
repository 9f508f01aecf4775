"""``genrify learn``: from a tagged library (or genre folders) to a model file that classify takes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genrify.audio.synth import SynthSpec, song_paths, write_dataset
from genrify.cli import app
from genrify.collection import tags

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


# Spellings a person's library mixes: they must count as one genre each.
SPELLINGS = {"hiphop": ["Hip Hop", "hip-hop", "Hip-Hop"], "classical": ["Classical", "classical"], "metal": ["Metal"]}


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Path, list[Path], list[Path]]:
    """Synthetic songs of three genres, flat in one folder: 5 of each tagged by a person (mixed
    spellings, mp3 as ID3v2.3 joined values too), 2 of each without a genre."""
    root = tmp_path_factory.mktemp("learn")
    spec = SynthSpec(genres=tuple(SPELLINGS), per_genre=7, seconds=4.0, seed=3, fmt="mixed")
    write_dataset(root / "made", spec)
    lib = root / "lib"
    tagged, untagged = [], []
    for path, genre, index in song_paths(root / "made", spec):
        # No artist tags: each "artist" keeps their songs in a folder of their own, as most libraries do.
        dest = lib / f"artist{index}" / f"{genre}-{index}{path.suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        if index < 5:
            spelling = SPELLINGS[genre][index % len(SPELLINGS[genre])]
            tags.write_genre(dest, [spelling], id3v23=index == 1)
            tagged.append(dest)
        else:
            untagged.append(dest)
    return lib, tagged, untagged


def test_learn_then_classify_fills_exactly_the_songs_without_a_genre(tmp_path, library):
    pytest.importorskip("genrify.learn.learner")
    lib, tagged, untagged = library
    work = tmp_path / "lib"
    shutil.copytree(lib, work)
    model, cache = tmp_path / "mine.safetensors", tmp_path / "emb.sqlite"
    result = run("learn", work, "--out", model, "--cache-file", cache, "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert "cross-validated" in result.output and "top-1" in result.output
    assert "learned 3 genres from 15 songs" in result.output and "15 embedded, 0 from cache" in result.output
    for genre in ("Hip-Hop", "Classical", "Metal"):
        assert genre in result.output
    assert (f"next: genrify classify {work} --model {model} --write-tags gives the 6 songs without a genre one where "
            "its answer is not unsure (--tag-unsure writes those too), and leaves yours alone") in " ".join(result.output.split())
    said = " ".join(result.output.split())
    # Songs without a genre may be of genres nobody tagged: how they are flagged, and how often the
    # same check flags the songs tagged (synthetic songs: often; the figure is the run's own).
    assert ("note: it answers only in its 3 genres; where the built-in model finds a song of none of them, the answer "
            "is flagged unsure (other genre)") in said
    import re

    found = re.search(r"that check also finds (\d+) of the 15 songs you tagged of none of these genres \(their "
                      r"cross-checked answers right (\d+)% of the time\)", said)
    assert found is None or 0 < int(found.group(1)) <= 15

    info = run("info", model)
    assert info.exit_code == 0 and "cross-validated" in info.output and "Hip-Hop" in info.output

    # Learning again embeds nothing: every embedding comes from the cache.
    again = run("learn", work, "--out", model, "--cache-file", cache, "--jobs", "1")
    assert again.exit_code == 0 and "0 embedded, 15 from cache" in again.output

    def here(p: Path) -> Path:
        return work / p.relative_to(lib)

    before = {p.name: (tags.read_genre(here(p)), os.stat(here(p)).st_mtime_ns) for p in tagged}
    classified = run("classify", work, "--model", model, "--write-tags", "--no-cache", "--jobs", "1", "--tag-unsure")
    assert classified.exit_code == 0, classified.output
    for p in tagged:  # keep mode: a person's genres stay, the files are not rewritten
        assert (tags.read_genre(here(p)), os.stat(here(p)).st_mtime_ns) == before[p.name]
    for p in untagged:
        assert tags.read_genre(here(p)) and tags.read_provenance(here(p)) is not None
        assert set(tags.read_genre(here(p))) <= {"Hip-Hop", "Classical", "Metal"}

    # What genrify wrote never teaches: learning again reads the same 15 songs.
    third = run("learn", work, "--out", model, "--cache-file", cache, "--jobs", "1")
    assert "from 15 songs" in third.output and "6 without a genre" in third.output


def test_learn_from_genre_folders(tmp_path, library):
    pytest.importorskip("genrify.learn.learner")
    lib, tagged, _ = library
    music = tmp_path / "music"
    for p in tagged:
        genre = p.name.split("-")[0]
        (music / genre / p.parent.name).mkdir(parents=True, exist_ok=True)  # MUSIC_DIR/<genre>/<artist>/song
        shutil.copyfile(p, music / genre / p.parent.name / p.name)
    model = tmp_path / "folders.safetensors"
    result = run("learn", music, "--labels", "folders", "--out", model, "--no-cache", "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert "learned 3 genres from 15 songs" in result.output and model.is_file()
    # Keep mode protects genre tags, not folders: the hint must not send the genre folders to --write-tags.
    said = " ".join(result.output.split())
    assert "leaves yours alone" not in said
    assert "give it songs outside the genre folders (keep mode protects genre tags, not folders" in said


def test_a_library_without_genres_is_one_line_pointing_at_folders(tmp_path, library):
    lib, _, untagged = library
    bare = tmp_path / "bare"
    bare.mkdir()
    for p in untagged:
        shutil.copyfile(p, bare / p.name)
    result = run("learn", bare, "--out", tmp_path / "m.safetensors", "--no-cache")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]  # besides the progress bar
    assert len(lines) == 1 and "read 6 file(s)" in lines[0] and "--labels folders" in lines[0]
    assert not (tmp_path / "m.safetensors").exists()
    # Nothing to read at all: the error is the only output (no empty line left by an unused progress bar).
    (tmp_path / "empty").mkdir()
    result = run("learn", tmp_path / "empty", "--out", tmp_path / "m.safetensors", "--no-cache")
    assert result.exit_code == 1 and result.output.startswith("error: no audio files in "), repr(result.output)


def test_one_genre_only_is_a_clear_error(tmp_path, library):
    _, tagged, _ = library
    one = tmp_path / "one"
    one.mkdir()
    for p in tagged:
        if p.name.startswith("metal"):
            shutil.copyfile(p, one / p.name)
    result = run("learn", one, "--out", tmp_path / "m.safetensors", "--no-cache")
    assert result.exit_code == 1 and "only one genre to learn: Metal (5 songs)" in result.output


def test_bad_options_and_a_song_as_output_are_refused_before_any_work(tmp_path, library):
    lib, tagged, _ = library
    assert run("learn", lib, "--out", tmp_path / "m.safetensors", "--labels", "moods").exit_code == 2
    assert run("learn", lib, "--out", tmp_path / "m.safetensors", "--min-songs", "0").exit_code == 2
    both = run("learn", lib, "--out", tmp_path / "m.safetensors", "--no-cache", "--cache-file", tmp_path / "e.sqlite")
    assert both.exit_code == 2 and "--cache-file cannot be used with --no-cache" in both.output
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "e.sqlite").exists()
    song = tmp_path / "keep.mp3"
    shutil.copyfile(next(p for p in tagged if p.suffix == ".mp3"), song)
    before = song.read_bytes()
    result = run("learn", lib, "--out", song, "--no-cache")
    assert result.exit_code == 2 and "audio file" in result.output and song.read_bytes() == before
    other = tmp_path / "notes.safetensors"
    other.write_text("mine")
    result = run("learn", lib, "--out", other, "--no-cache")
    assert result.exit_code == 2 and "not a genrify model" in result.output and other.read_text() == "mine"


# --- a learned head file is an ordinary model file -------------------------------------------------


def _head_file(path: Path) -> Path:
    """A small head over a library's own genres, as `genrify learn` writes one (random evidence)."""
    import numpy as np

    from genrify.models.builtin import GenreHead

    rng = np.random.default_rng(0)
    genres = ["Hip-Hop", "Jazz", "Polka"]
    report = {"cv_top1": 0.8, "cv_macro_recall": 0.75, "songs": 40, "artists": 12, "folds": 5,
              "per_genre": {"Hip-Hop": {"recall": 0.9, "songs": 20}, "Jazz": {"recall": 0.8, "songs": 15},
                            "Polka": {"recall": 0.55, "songs": 5}},
              "builtin": {"top1": 0.6, "macro_recall": 0.6, "songs": 35}}
    head = GenreHead(genres=genres, priors=["hip-hop", "jazz", None], mean=np.zeros(200), std=np.ones(200),
                     weight=0.01 * rng.standard_normal((200, 3)), bias=np.zeros(3), prior_logit=np.zeros(3),
                     learned=genres, info={"report": report, "learned_from": {"dropped": {"Ska": 2}, "min_songs": 5}})
    return head.save(path)


def test_a_learned_head_file_is_taken_by_classify_info_and_the_web_page(tmp_path, library):
    from genrify.classify.modelref import ModelRef
    from genrify.models import modelfile
    from genrify.web.catalogue import ModelEntry

    lib, tagged, _ = library
    model = _head_file(tmp_path / "mine.safetensors")
    assert modelfile.is_model_file(model) and modelfile.is_head_file(model)
    ref = ModelRef.file(model)
    assert ref.genres == ["Hip-Hop", "Jazz", "Polka"] and ref.chunk_frames == 187
    loaded = ref.load()
    assert loaded.genres == ref.genres and loaded.name == "mine.safetensors"

    result = run("classify", tagged[0], "--model", model, "--no-cache", "-f", "json")
    assert result.exit_code == 0, result.output
    assert '"Polka"' in result.output

    info = run("info", model)
    assert info.exit_code == 0
    assert "top-1 0.80, macro recall 0.75" in info.output and "Polka" in info.output and "Ska (2 songs)" in info.output

    entry = ModelEntry.from_file(model).to_dict()
    assert entry["learned"] == {"top1": 0.8, "macro_recall": 0.75, "songs": 40}
    # An earlier learned model may be replaced by the next `genrify learn` (it is genrify's).
    from genrify.models.modelfile import check_destination

    assert check_destination(model).replaces


def test_learn_warns_that_songs_of_a_genre_left_out_get_a_learned_one(tmp_path, library):
    pytest.importorskip("genrify.learn.learner")
    lib, _, untagged = library
    work = tmp_path / "lib"
    shutil.copytree(lib, work)
    tags.write_genre(work / untagged[0].relative_to(lib), ["Ska"])  # one song: under --min-songs
    result = run("learn", work, "--out", tmp_path / "m.safetensors", "--no-cache", "--jobs", "1")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    # The three genres are the built-in model's too: its belief in them flags a song of another.
    assert ("note: it answers only in its 3 genres; where the built-in model finds a song of none of them, the "
            "answer is flagged unsure (other genre) and tagging leaves it alone unless told to tag unsure answers") in said
