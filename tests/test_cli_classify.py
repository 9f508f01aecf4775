from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import nan_answer_for, song, write_with_av
from typer.testing import CliRunner

from genrify.audio import decode as audio
from genrify.cli import app
from genrify.collection.genremap import GenreMap
from genrify.collection.tags import read_genre

runner = CliRunner()


@pytest.fixture
def music(small_store, tmp_path) -> Path:
    """A copy of the small store's songs (tests change files)."""
    root = tmp_path / "music"
    shutil.copytree(small_store.parent / "music", root)
    return root


def classify(*args: str | Path, cache: Path | None = None):
    argv = ["classify", *map(str, args)]
    if cache is not None:
        argv += ["--cache-file", str(cache)]
    else:
        argv += ["--no-cache"]
    return runner.invoke(app, argv)


def test_json_has_one_object_per_file_and_failures_carry_errors(model_file, music):
    (music / "hiphop" / "broken.mp3").write_bytes(os.urandom(3000))
    result = classify(music, "--model", model_file, "--format", "json", "--timeline", "--top-k", "2", "-j", "2")
    assert result.exit_code == 0, result.output
    objects = json.loads(result.stdout[result.stdout.index("[") :])
    assert len(objects) == 19
    broken = [o for o in objects if "error" in o]
    assert len(broken) == 1 and broken[0]["path"].endswith("broken.mp3") and "genre" not in broken[0]
    for o in objects:
        if "error" in o:
            continue
        assert {"path", "genre", "probabilities", "votes", "segments", "duration", "timeline"} <= set(o)
        assert sum(o["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert o["genre"] == max(o["probabilities"], key=o["probabilities"].get)
        assert len(o["top"]) == 2 and len(o["timeline"]) == o["segments"]
    assert "18 classified" in result.output and "1 failed" in result.output


def test_csv_to_a_file_and_exit_status_when_nothing_could_be_read(model_file, music, tmp_path):
    out = tmp_path / "out.csv"
    result = classify(music / "metal", "--model", model_file, "--format", "csv", "--output", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 6 and {r["genre"] for r in rows} <= {"classical", "hiphop", "metal"}
    assert all(abs(sum(float(r[f"p_{g}"]) for g in ("classical", "hiphop", "metal")) - 1) < 1e-4 for r in rows)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    result = classify(bad, tmp_path / "missing.mp3", "--model", model_file, "--format", "json")
    assert result.exit_code == 1
    objects = json.loads(result.stdout[result.stdout.index("[") :])
    assert [o["path"] for o in objects] == [str(bad), str(tmp_path / "missing.mp3")]
    assert all(o["error"] for o in objects)


def test_second_run_reads_the_cache(model_file, music, tmp_path):
    cache = tmp_path / "cache.sqlite"
    first = classify(music, "--model", model_file, "--format", "json", cache=cache)
    second = classify(music, "--model", model_file, "--format", "json", cache=cache)
    assert "(0 from cache)" in first.output and "(18 from cache)" in second.output
    a = json.loads(first.stdout[first.stdout.index("[") :])
    b = json.loads(second.stdout[second.stdout.index("[") :])
    assert a == b


@pytest.fixture
def tagged_mp3s(tmp_path) -> list[Path]:
    folder = tmp_path / "mp3s"
    folder.mkdir()
    paths = []
    for i in range(3):
        path = folder / f"song{i}.mp3"
        write_with_av(path, song(4.0, index=i), 22050)
        paths.append(path)
    return paths


def test_write_tags_changes_only_the_genre(model_file, tagged_mp3s, tmp_path):
    before = [audio.load(p) for p in tagged_mp3s]
    unsure = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags")
    assert "3 unsure or below confidence" in unsure.output and all(read_genre(p) == () for p in tagged_mp3s)
    dry = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags", "--tag-unsure", "--dry-run")
    assert dry.exit_code == 0 and "would write 3" in dry.output and dry.output.count("(none) ->") == 3
    assert all(read_genre(p) == () for p in tagged_mp3s)
    none = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags", "--tag-unsure", "--min-confidence", "1")
    assert "3 unsure or below confidence" in none.output and all(read_genre(p) == () for p in tagged_mp3s)
    result = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags", "--tag-unsure", "--format", "json")
    assert result.exit_code == 0, result.output
    answers = {o["path"]: o["genre"] for o in json.loads(result.stdout[result.stdout.index("[") :])}
    for path, wave in zip(tagged_mp3s, before, strict=True):
        assert read_genre(path) == (GenreMap.default().name(answers[str(path)]),)
        np.testing.assert_array_equal(audio.load(path), wave)
    # -v says each file as it is written (during the run, above the bar), once.
    again = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags", "--tag-unsure", "--tag-mode",
                     "replace", "--tag-genres", "2", "--min-probability", "0", "-v", cache=tmp_path / "c.sqlite")
    assert again.exit_code == 0 and again.output.count("tagged ") == 3, again.output
    assert all(f"tagged {p}: " in again.output for p in tagged_mp3s)


def test_a_read_only_file_is_reported_and_the_others_are_tagged(model_file, tagged_mp3s):
    tagged_mp3s[1].chmod(0o444)
    content = tagged_mp3s[1].read_bytes()
    result = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags", "--tag-unsure")
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("tag not written"))
    # the path once, as every other line of the run shows it, then the reason
    assert line.count("song1.mp3") == 1 and line.startswith(f"tag not written {tagged_mp3s[1]}: "), line
    assert tagged_mp3s[1].read_bytes() == content
    assert read_genre(tagged_mp3s[0]) and read_genre(tagged_mp3s[2])


def test_organize_and_playlists(model_file, music, tmp_path):
    dest, lists = tmp_path / "sorted", tmp_path / "lists"
    dry = classify(music, "--model", model_file, "--organize", dest, "--playlists", lists, "--dry-run")
    assert dry.exit_code == 0 and not dest.exists() and not lists.exists()
    result = classify(music, "--model", model_file, "--organize", dest, "--mode", "copy", "--playlists", lists,
                      "--format", "json")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout[result.stdout.index("[") :])
    placed = sorted(p.relative_to(dest) for p in dest.rglob("*.wav"))
    music_answers = [o for o in answers if not o["not_music"]]  # a synthetic song may be flagged: not placed
    assert len(music_answers) >= 12
    assert placed == sorted(Path(o["genre"]) / Path(o["path"]).name for o in music_answers)
    assert len(list(music.rglob("*.wav"))) == 18  # copies: the originals stay
    entries = [line for f in lists.glob("*.m3u8") for line in f.read_text().splitlines() if not line.startswith("#")]
    assert len(entries) == len(music_answers) and all((lists / e).resolve().is_file() for e in entries)
    assert all((lists / e).resolve().is_relative_to(dest.resolve()) for e in entries)  # the organised copies


def test_destination_inside_the_source_is_refused(model_file, music):
    result = classify(music, "--model", model_file, "--organize", music / "sorted")
    assert result.exit_code == 1
    assert "error:" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message, status",
    [
        (["--model", "nope.safetensors"], "not found", 1),
        (["--output", "/nonexistent-folder/out.json"], "cannot write the output file", 1),
        # usage mistakes: exit 2, before any work
        (["--format", "xml"], "unknown format", 2),
        (["--mode", "teleport", "--organize", "x"], "unknown mode", 2),
        (["--top-k", "0"], "error: --top-k must be at least 1, not 0", 2),
        (["--tag-genres", "0", "--write-tags"], "error: --tag-genres must be at least 1, not 0", 2),
        (["--min-confidence", "2"], "between 0 and 1", 2),
        (["--device", "gpu"], "unknown device", 2),
        (["--tag-separator", "", "--write-tags"], "--tag-separator must not be empty", 2),
        (["--tag-separator", "\n", "--write-tags"], "--tag-separator must not contain control characters", 2),
        (["--tag-separator", ";\x00", "--write-tags"], "--tag-separator must not contain control characters", 2),
        (["--since", "2026-02-30"], "not a date", 2),
        (["--jobs", "0"], "--jobs must be at least 1", 2),
        (["--genres", "rock"], "--genres is for the built-in model's genres: a model file answers with its own", 2),
        (["--segment-hop", "inf"], "--segment-hop must be a positive", 2),
    ],
)
def test_bad_options_are_one_line_errors(model_file, music, argv, message, status):
    if "--model" not in argv:
        argv = ["--model", str(model_file), *argv]
    result = classify(music, *argv)
    assert result.exit_code == status, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_real_clips_of_every_format(model_file, real_clip_paths, tmp_path):
    out = tmp_path / "real.json"
    result = classify(*real_clip_paths, "--model", model_file, "--format", "json", "--output", out, "--max-segments", "4")
    assert result.exit_code == 0, result.output
    objects = json.loads(out.read_text())
    assert len(objects) == len(real_clip_paths)
    assert all("genre" in o and o["segments"] <= 4 and o["duration"] > 1 for o in objects), [o for o in objects if "error" in o]


def _json_of(result) -> list[dict]:
    return json.loads(result.stdout[result.stdout.index("[") :], parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


@pytest.mark.parametrize("kind", ["folder", "text file"])
def test_a_cache_file_that_is_not_a_genrify_cache_is_an_error_and_untouched(model_file, music, tmp_path, kind):
    path = tmp_path / "precious"
    if kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_text("mine")
    else:
        path.write_text("my notes")
    before = sorted(p.name for p in tmp_path.iterdir())
    for _ in range(2):
        result = classify(music / "metal", "--model", model_file, cache=path)
        assert result.exit_code == 1, result.output
        assert "not a genrify results cache" in result.output and len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (path / "inside.txt").read_text() == "mine" if kind == "folder" else path.read_text() == "my notes"


def test_a_damaged_genrify_cache_is_set_aside_with_a_warning(model_file, music, tmp_path):
    cache = tmp_path / "cache.sqlite"
    assert classify(music / "metal", "--model", model_file, cache=cache).exit_code == 0
    data = bytearray(cache.read_bytes())
    data[100:] = b"\xa5" * (len(data) - 100)
    cache.write_bytes(data)
    result = classify(music / "metal", "--model", model_file, cache=cache)
    assert result.exit_code == 0 and "warning:" in result.output and "set it aside" in result.output
    assert (tmp_path / "cache.sqlite.damaged").read_bytes() == bytes(data)


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "other audio"])
def test_an_output_that_is_an_input_or_audio_is_refused_before_any_work(model_file, music, tmp_path, how):
    song = music / "metal" / sorted(os.listdir(music / "metal"))[0]
    content = song.read_bytes()
    target = {"same": song, "symlink": tmp_path / "link.json", "hardlink": tmp_path / "hard.json",
              "other audio": tmp_path / "other.wav"}[how]
    if how == "symlink":
        os.symlink(song, target)
    elif how == "hardlink":
        os.link(song, target)
    elif how == "other audio":
        shutil.copy(song, target)
    result = classify(song, "--model", model_file, "-f", "json", "-o", target)
    assert result.exit_code == 2, result.output
    assert "--output" in result.output and len(result.output.strip().splitlines()) == 1
    assert song.read_bytes() == content and target.read_bytes() == content


def test_an_output_that_is_a_folder_is_a_usage_error_as_for_train_out(model_file, music, tmp_path):
    # The rule train --out is held to (genrify.collection.destinations): a folder where a file name goes is a
    # mistyped option, exit 2; a folder that cannot be written stays the file system's no, exit 1.
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    result = classify(music / "metal", "--model", model_file, "-f", "json", "-o", folder)
    assert result.exit_code == 2, result.output
    assert f"error: --output {folder}: is a folder; give the output file's name" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "classified" not in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]


def test_playlists_and_organize_never_replace_inputs(model_file, music, tmp_path):
    song = music / "metal" / sorted(os.listdir(music / "metal"))[0]
    lists = tmp_path / "lists"
    lists.mkdir()
    own = lists / "metal.m3u8"
    own.write_text("#EXTM3U\n")
    result = classify(song, own, "--model", model_file, "--playlists", lists)
    assert result.exit_code == 2 and "would replace this input file" in result.output, result.output
    assert own.read_text() == "#EXTM3U\n"
    result = classify(song, "--model", model_file, "--playlists", own)  # an existing file, not a folder
    assert result.exit_code == 2 and "exists and is not a folder" in result.output
    assert len(result.output.strip().splitlines()) == 1 and own.read_text() == "#EXTM3U\n"
    content = song.read_bytes()
    result = classify(song, "--model", model_file, "--organize", song)
    assert result.exit_code == 1 and "not a folder" in result.output and song.read_bytes() == content


def test_names_that_are_not_utf8_are_classified_cached_and_written(model_file, music, tmp_path):
    odd = os.fsencode(music / "metal") + b"/bad\xff name.wav"
    shutil.copy(music / "metal" / sorted(os.listdir(music / "metal"))[0], os.fsdecode(odd))
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out.csv"
    for argv in (["-f", "json"], ["-f", "json"], ["-f", "csv", "-o", out], ["-f", "table"]):
        result = classify(music / "metal", "--model", model_file, *argv, cache=cache)
        assert result.exit_code == 0, result.output
        assert "7 classified" in result.output
    assert "bad\\xff name.wav" in result.output  # the table, readable
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert any(r["path"].endswith("bad\\xff name.wav") and r["genre"] for r in rows)
    first = classify(music / "metal", "--model", model_file, "-f", "json", cache=cache)
    assert "(7 from cache)" in first.output
    assert any(o["path"].endswith("bad\\xff name.wav") and "genre" in o for o in _json_of(first))


def test_link_loops_and_dangling_links_are_counted_and_listed_with_verbose(model_file, music, tmp_path):
    folder = music / "metal"
    os.symlink(folder / "b.wav", folder / "a.wav")
    os.symlink(folder / "a.wav", folder / "b.wav")
    os.symlink(folder / "gone.wav", folder / "dangling.wav")
    result = classify(music, "--model", model_file, cache=tmp_path / "cache.sqlite")
    assert result.exit_code == 0, result.output
    assert "18 classified" in result.output and "3 passed over" in result.output and "a.wav" not in result.output
    verbose = classify(music, "--model", model_file, "-v", "-f", "json", cache=tmp_path / "cache.sqlite")
    assert verbose.exit_code == 0
    assert "a.wav: symbolic link loop" in verbose.output and "dangling.wav: dangling symbolic link" in verbose.output


def test_a_missing_input_says_it_does_not_exist(model_file, tmp_path):
    result = classify(tmp_path / "nope", "--model", model_file)
    assert result.exit_code == 1
    assert f"{tmp_path / 'nope'}: does not exist" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_nan_answer_is_a_failure_of_its_file_never_invalid_json(model_file, music, monkeypatch):
    from genrify.collection.library import find_audio

    nan_answer_for(find_audio([music / "metal"]).files[0], monkeypatch)  # the first file's answer is NaN
    # One job: the model answers in this process, where the stand-in is (workers load their own).
    result = classify(music / "metal", "--model", model_file, "-f", "json", "-j", "1")
    objects = _json_of(result)
    assert "non-finite" in objects[0]["error"] and all("genre" in o for o in objects[1:])
    assert "5 classified" in result.output and "1 failed" in result.output


def test_the_table_stays_one_line_per_song_at_80_columns(model_file, music, monkeypatch):
    import re

    from rich.console import Console

    from genrify import cli

    source = music / "metal" / sorted(os.listdir(music / "metal"))[0]
    deep = music / "metal" / ("a rather long folder name " * 3).strip() / "and another deeply nested one"
    deep.mkdir(parents=True)
    shutil.copy(source, deep / (("a very long song title that goes on and on " * 2).strip().replace(" ", "_") + ".wav"))
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(cli, "out", Console(soft_wrap=True))
    result = classify(music / "metal", "--model", model_file)
    assert result.exit_code == 0, result.output
    files = [cells[1].strip() for line in result.stdout.splitlines()
             if len(cells := re.split("[│┃]", line)) > 2 and cells[1].strip() not in ("", "file")]
    assert len(files) == 7, result.stdout  # one line per song: no path continues on a second line
    assert any("…" in f and f.endswith(".wav") for f in files)
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
    # The two-epoch model is unsure of every song: each is marked, and the mark is explained.
    genres = [re.split("[│┃]", line)[2].strip() for line in result.stdout.splitlines()
              if len(re.split("[│┃]", line)) > 2 and re.split("[│┃]", line)[1].strip() not in ("", "file")]
    assert all(g.endswith(" ?") for g in genres), genres
    # The caption names the reasons that occur (here: the two-epoch model's low probabilities), no others.
    json_out = classify(music / "metal", "--model", model_file, "--format", "json")
    reasons = sorted({r["unsure_reason"] for r in json.loads(json_out.stdout[json_out.stdout.index("["):])})
    caption = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith("? unsure"))
    assert sorted(caption.removeprefix("? unsure: ").removesuffix(" (JSON and CSV say which)").split(", ")) == reasons
    # The runners-up column shows the rest of the top 3, never again the genre of its own row.
    rows = [cells for line in result.stdout.splitlines()
            if len(cells := re.split("[│┃]", line)) > 4 and cells[1].strip() not in ("", "file")]
    assert "runners-up" in result.stdout and "top 3" not in result.stdout
    for cells in rows:
        genre, others = cells[2].strip().removesuffix(" ?"), cells[4].strip()
        assert others and genre not in [part.rsplit(" ", 1)[0] for part in others.split(", ")], cells
        shown = others.split(", ")
        shown = shown[:-1] if shown[-1].endswith("…") else shown  # the column gives way first at 80
        assert cells[3].strip().endswith("%") and all(p.endswith("%") for p in shown), cells


def test_since_takes_any_valid_date(model_file, music):
    everything = classify(music / "metal", "--model", model_file, "--since", "0001-01-01")
    assert everything.exit_code == 0, everything.output
    assert "6 classified" in everything.output and "skipped" not in everything.output
    nothing = classify(music / "metal", "--model", model_file, "--since", "9999-12-31T23:59:59")
    assert nothing.exit_code == 0, nothing.output
    assert "0 classified" in nothing.output and "6 not modified since then skipped" in nothing.output


def test_a_persons_own_playlist_survives_and_genrifys_is_updated(model_file, music, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    theirs = lists / "metal.m3u8"
    theirs.write_bytes(b"#EXTM3U\n#EXTINF:300,My favourite\n/music/favourite.flac\n")
    mine = theirs.read_bytes()
    ours = lists / "metal (genrify).m3u8"

    dry = classify(music / "metal", "--model", model_file, "--playlists", lists, "--dry-run", "-f", "json")
    genres = {o["genre"] for o in _json_of(dry)}
    assert "metal" in genres, genres  # the premise: some of these songs are answered metal
    assert f"kept {theirs}: not written by genrify; would write its playlist as metal (genrify).m3u8" in dry.output
    assert sorted(p.name for p in lists.iterdir()) == ["metal.m3u8"]

    first = classify(music / "metal", "--model", model_file, "--playlists", lists, "-f", "json")
    assert first.exit_code == 0, first.output
    assert f"kept {theirs}: not written by genrify; wrote its playlist as metal (genrify).m3u8" in first.output
    assert "1 beside a playlist genrify did not write" in first.output
    assert theirs.read_bytes() == mine
    listed = [line for line in ours.read_text().splitlines() if not line.startswith("#")]
    assert len(listed) == sum(o["genre"] == "metal" for o in _json_of(first))

    with ours.open("a") as f:  # a stale entry: genrify's own list must be rewritten, not kept
        f.write("stale.wav\n")
    second = classify(music / "metal", "--model", model_file, "--playlists", lists)
    assert second.exit_code == 0, second.output
    assert theirs.read_bytes() == mine and "stale.wav" not in ours.read_text()
    assert all((lists / e).resolve().parent == (music / "metal").resolve()
               for e in ours.read_text().splitlines() if not e.startswith("#"))


def test_a_file_left_out_of_its_playlist_is_counted_and_named_with_verbose(model_file, music, tmp_path):
    odd = os.fsencode(music / "metal") + b"/bad\xff name.wav"
    shutil.copy(music / "metal" / sorted(os.listdir(music / "metal"))[0], os.fsdecode(odd))
    lists = tmp_path / "lists"
    result = classify(music / "metal", "--model", model_file, "--playlists", lists)
    assert result.exit_code == 0, result.output
    assert "1 file left out of them; -v lists them)" in result.output and "left out of its playlist" not in result.output
    verbose = classify(music / "metal", "--model", model_file, "--playlists", lists, "-v")
    assert ("left out of its playlist " + os.fsdecode(odd).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            + ": its name is not valid UTF-8") in verbose.output
    assert "(1 file left out of them)" in verbose.output
    entries = [line for f in lists.glob("*.m3u8") for line in f.read_text().splitlines() if not line.startswith("#")]
    assert len(entries) == 6


def test_a_huge_tag_value_is_shown_short_in_a_dry_run(model_file, tagged_mp3s):
    from mutagen.id3 import ID3, TCON

    huge = "Rock" * 250_000
    tags = ID3()
    tags.add(TCON(encoding=3, text=[huge]))
    tags.save(tagged_mp3s[0])
    result = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags", "--tag-unsure",
                      "--tag-mode", "replace", "--dry-run")
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("would tag") and "song0.mp3" in line]
    assert f"would tag {tagged_mp3s[0]}: {huge[:79]}… (1,000,000 characters) -> " in line and len(line) < 300
    assert max(len(line) for line in result.output.splitlines()) < 300


def test_a_cache_that_cannot_be_written_is_said_before_the_work(model_file, music, tmp_path, monkeypatch):
    folder = tmp_path / "read-only"
    folder.mkdir()
    real = os.access
    # As root every permission is granted: the system's answer for a read-only folder is simulated.
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == folder else real(p, mode, **kw))
    result = classify(music / "metal", "--model", model_file, cache=folder / "cache.sqlite")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    warning = f"warning: cannot write the results cache {folder / 'cache.sqlite'} (its folder {folder} is not writable); running without it"
    assert lines.count(warning) == 1 and lines.index(warning) < len(lines) - 1
    assert "6 classified (0 from cache)" in lines[-1] and not list(folder.iterdir())


def test_the_summary_line_counts_every_genre_or_says_how_many_more():
    from genrify.classify.service import RunSummary

    few = RunSummary(4, 0, 0, 0, 4.1, {"jazz": 2, "classical": 1, "pop": 1})
    assert few.line == "4 classified (0 from cache), 0 failed in 4.1 s · jazz 2, classical 1, pop 1"
    names = ["rock", "pop", "jazz", "blues", "metal", "disco", "funk", "punk", "soul", "folk", "reggae"]
    counts = {g: 12 - i for i, g in enumerate(names)}
    many = RunSummary(sum(counts.values()), 0, 0, 0, 1.0, counts)
    assert many.line.endswith("· rock 12, pop 11, jazz 10, blues 9, metal 8, disco 7, +5 more genres")
    seven = RunSummary(7, 0, 0, 0, 1.0, {g: 1 for g in "abcdefg"})
    assert seven.spread() == "a 1, b 1, c 1, d 1, e 1, f 1, g 1"  # one more is named, not counted


@pytest.mark.parametrize("genres, hint", [("rock,jaz", "(did you mean 'jazz'?)"), ("hiphp", "(did you mean 'hip-hop'?)"),
                                          ("polka", "")])
def test_an_unknown_genre_is_a_usage_error_with_the_closest_names(tmp_path, genres, hint):
    result = classify(tmp_path, "--genres", genres)  # refused before the folder is even searched
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    unknown = genres.split(",")[-1]
    assert line.startswith(f"error: --genres: the built-in model knows no genre '{unknown}'{' ' + hint if hint else ''};")
    assert "it knows rock, pop, electronic" in line and "did you mean" not in line.replace(hint, "")


def _answer(path: str, probabilities: list[float], **flags) -> object:
    from genrify.classify.predict import Prediction

    genres = ["jazz", "classical", "blues", "pop"]
    return Prediction(genres=genres, probabilities=np.array(probabilities), votes=np.array(probabilities),
                      segments=6, duration=18.0, path=path, confidence_threshold=0.33, **flags)


@pytest.mark.parametrize("width", [100, 120])
def test_a_wide_table_says_why_an_answer_is_unsure_where_the_file_names_keep_their_room(monkeypatch, tmp_path, width):
    from rich.console import Console

    from genrify import cli
    from genrify.classify import service
    from genrify.classify.predict import Failure

    names = ["sugar-plum-fairy.ogg", "hungarian-dance-5.ogg", "quiet.ogg", "hiss.ogg", "blip.ogg", "notes.ogg"]
    for name in names:
        (tmp_path / name).write_bytes(b"OggS")
    path = [str(tmp_path / name) for name in names]
    results = [_answer(path[0], [0.39, 0.38, 0.14, 0.09], near_tie_margin=0.05),
               _answer(path[1], [0.04, 0.92, 0.02, 0.02], near_tie_margin=0.05),
               _answer(path[2], [0.25, 0.25, 0.25, 0.25]),
               _answer(path[3], [0.7, 0.1, 0.1, 0.1], not_music="noise"),
               _answer(path[4], [0.7, 0.1, 0.1, 0.1], short=True),
               Failure(path[5], "not a recognised audio format, or damaged (cannot decode)")]

    def answered(found, ref, **kwargs):  # the answers above, as a run of the built-in model would give them
        summary = service.RunSummary(5, 0, 1, 0, 1.0, {"jazz": 4, "classical": 1})
        return service.LibraryRun(results, summary, found)

    monkeypatch.setattr(service, "classify_library", answered)
    console = Console(file=io.StringIO(), width=width, soft_wrap=True)
    monkeypatch.setattr(cli, "out", console)
    result = classify(tmp_path)
    assert result.exit_code == 0, result.output
    text = console.file.getvalue()
    rows = [cells for line in text.splitlines() if len(cells := line.split("│")) > 2 and cells[1].strip()]
    genres = [cells[2].strip() for cells in rows]
    assert [cells[1].strip() for cells in rows] == names, text  # never cut
    if width >= 120:
        assert genres == ["jazz? (near tie)", "classical", "jazz? (low probability)", "jazz? (not music: noise)",
                          "jazz? (short)", "error"], text
    else:  # at 100 the reasons would cut the file names: they go under the table
        assert genres == ["jazz ?", "classical", "jazz ?", "jazz ?", "jazz ?", "error"], text
        assert "? unsure: near tie, low probability, not music, short" in text
    assert text.splitlines()[0].strip() == "5 songs · model genrify-musicnn"
    assert max(len(line) for line in text.splitlines()) <= width
    assert "· jazz 4, classical 1" in result.output


def test_a_file_that_is_not_audio_is_one_error_line_not_a_table(model_file, tmp_path):
    notes = tmp_path / "README.md"
    notes.write_text("# my notes\n")
    result = classify(notes, "--model", model_file)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [f"error: {notes}: not a recognised audio format, or damaged (cannot decode)"]
    other = tmp_path / "todo.txt"
    other.write_text("buy milk\n")
    both = classify(notes, other, "--model", model_file)
    assert both.exit_code == 1, both.output
    lines = both.output.strip().splitlines()
    assert sorted(lines[:2]) == [f"failed {notes}: not a recognised audio format, or damaged (cannot decode)",
                                 f"failed {other}: not a recognised audio format, or damaged (cannot decode)"]
    assert lines[2:] == ["error: none of the 2 files could be classified"]


def test_a_failed_file_is_named_as_the_table_names_it(model_file, tmp_path, monkeypatch):
    music = tmp_path / "music"
    music.mkdir()
    for name in ("a.mp3", "b.mp3"):
        (music / name).write_bytes(b"not audio at all" * 100)
    monkeypatch.chdir(tmp_path)
    result = classify(Path("music") / "a.mp3", tmp_path / "music" / "b.mp3", "--model", model_file)
    failed = sorted(line.split(":")[0] for line in result.output.splitlines() if line.startswith("failed "))
    # Relative to the working folder, however it was given: the shorter way to name it here.
    assert failed == ["failed music/a.mp3", "failed music/b.mp3"], result.output


@pytest.mark.parametrize("kind, why", [
    ("song.ogg", "it is an Ogg audio file"),
    ("notes.txt", "it is a text file"),
    ("cut.safetensors", "cut short: its header needs"),
    ("half.safetensors", None),
])
def test_a_model_that_is_not_a_model_file_says_so_in_genrifys_words(model_file, music, tmp_path, kind, why):
    path = tmp_path / kind
    data = model_file.read_bytes()
    path.write_bytes({"song.ogg": b"OggS\x00\x02" + os.urandom(4000), "notes.txt": b"# my model, I think\n",
                      "cut.safetensors": data[:100], "half.safetensors": data[: len(data) // 2]}[kind])
    result = classify(music / "metal", "--model", path)
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    if why is None:  # the header is a genrify model's: a damaged model, not another kind of file
        assert line.startswith(f"error: {path}: the model file is damaged (cut short: it holds ")
    else:
        assert line.startswith(f"error: {path}: not a genrify model file ({why}")
    assert "header too large" not in line and "deserializ" not in line.lower()


def test_a_file_flagged_not_music_is_neither_sorted_nor_listed(model_file, music, tmp_path):
    import soundfile as sf

    sf.write(music / "silence.wav", np.zeros(22050 * 12, dtype=np.float32), 22050)
    dest, lists = tmp_path / "sorted", tmp_path / "lists"
    result = classify(music, "--model", model_file, "--organize", dest, "--playlists", lists, "--format", "json")
    assert result.exit_code == 0, result.output
    answers = {Path(o["path"]).name: o for o in json.loads(result.stdout[result.stdout.index("[") :])}
    assert answers["silence.wav"]["not_music"]
    assert "silence.wav" not in {p.name for p in dest.rglob("*")}
    assert not any("silence.wav" in f.read_text() for f in lists.glob("*.m3u8"))
    flagged = sum(bool(o["not_music"]) for o in answers.values())
    assert len(list(dest.rglob("*.wav"))) == len(answers) - flagged  # every song of music is placed
    assert f"{flagged} not music not placed" in result.stderr


def test_a_cache_file_with_no_cache_is_a_usage_error(model_file, music, tmp_path):
    result = classify(music / "metal", "--model", model_file, "--no-cache", "--cache-file", tmp_path / "r.sqlite")
    assert result.exit_code == 2 and "--cache-file cannot be used with --no-cache" in result.output
    assert not (tmp_path / "r.sqlite").exists() and "classified" not in result.output


def test_ctrl_c_while_writing_tags_says_what_the_files_hold_by_then(model_file, music, monkeypatch, capsys):
    # The tags written before the interruption stay: the run says how many, not only "interrupted".
    import sys

    import genrify.classify.service as service
    import genrify.cli as cli

    real = service.classify_library

    def interrupted_after_two(found, ref, *, listeners, **kwargs):
        class Stop:
            seen = 0

            def on_result(self, result, cached):
                Stop.seen += 1
                if Stop.seen == 2:
                    raise KeyboardInterrupt

            def __getattr__(self, name):
                return lambda *a, **k: None

        return real(found, ref, listeners=[*listeners, Stop()], **kwargs)

    monkeypatch.setattr(service, "classify_library", interrupted_after_two)
    monkeypatch.setattr(cli, "_SAID_IF_INTERRUPTED", [])
    monkeypatch.setattr(sys, "argv", ["genrify", "classify", str(music), "--model", str(model_file), "--write-tags",
                                      "--tag-unsure", "--jobs", "1", "--no-cache"])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 130
    said = " ".join(capsys.readouterr().err.split())
    # The tagger heard both answers before the listener after it stopped the run.
    assert f"before the interruption, genre tags: written 2, " in said and said.endswith(cli.INTERRUPTED), said
