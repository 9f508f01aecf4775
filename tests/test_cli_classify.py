from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genrify import audio, modelfile
from genrify.cli import app
from genrify.config import TrainConfig
from genrify.tags import read_genre
from genrify.training import train

from conftest import tone, write_with_av

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(small_store, tmp_path_factory) -> Path:
    result = train(small_store, TrainConfig(epochs=2))
    return modelfile.save(result.model, tmp_path_factory.mktemp("model") / "m.safetensors")


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
        write_with_av(path, tone(4.0, freq=220.0 * (i + 1)), 22050)
        paths.append(path)
    return paths


def test_write_tags_changes_only_the_genre(model_file, tagged_mp3s, tmp_path):
    before = [audio.load(p) for p in tagged_mp3s]
    dry = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags", "--dry-run")
    assert dry.exit_code == 0 and "would change 3" in dry.output
    assert all(read_genre(p) == () for p in tagged_mp3s)
    none = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags", "--min-confidence", "1")
    assert "3 below confidence" in none.output and all(read_genre(p) == () for p in tagged_mp3s)
    result = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags", "--format", "json")
    assert result.exit_code == 0, result.output
    answers = {o["path"]: o["genre"] for o in json.loads(result.stdout[result.stdout.index("[") :])}
    for path, wave in zip(tagged_mp3s, before, strict=True):
        assert read_genre(path) == (answers[str(path)],)
        np.testing.assert_array_equal(audio.load(path), wave)


def test_a_read_only_file_is_reported_and_the_others_are_tagged(model_file, tagged_mp3s):
    tagged_mp3s[1].chmod(0o444)
    content = tagged_mp3s[1].read_bytes()
    result = classify(tagged_mp3s[0].parent, "--model", model_file, "--write-tags")
    assert result.exit_code == 0
    assert "tag not written" in result.output and "song1.mp3" in result.output
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
    assert placed == sorted(Path(o["genre"]) / Path(o["path"]).name for o in answers)
    assert len(list(music.rglob("*.wav"))) == 18  # copies: the originals stay
    entries = [line for f in lists.glob("*.m3u8") for line in f.read_text().splitlines() if not line.startswith("#")]
    assert len(entries) == 18 and all((lists / e).resolve().is_file() for e in entries)
    assert all((lists / e).resolve().is_relative_to(dest.resolve()) for e in entries)  # the organised copies


def test_destination_inside_the_source_is_refused(model_file, music):
    result = classify(music, "--model", model_file, "--organize", music / "sorted")
    assert result.exit_code == 1
    assert "error:" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "nope.safetensors"], "not found"),
        (["--format", "xml"], "unknown format"),
        (["--mode", "teleport", "--organize", "x"], "unknown mode"),
        (["--top-k", "0"], "at least 1"),
        (["--min-confidence", "2"], "between 0 and 1"),
        (["--output", "/nonexistent-folder/out.json"], "cannot write the output file"),
        (["--device", "gpu"], "unknown device"),
    ],
)
def test_bad_options_are_one_line_errors(model_file, music, argv, message):
    if "--model" not in argv:
        argv = ["--model", str(model_file), *argv]
    result = classify(music, *argv)
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_real_clips_of_every_format(model_file, real_clip_paths, tmp_path):
    out = tmp_path / "real.json"
    result = classify(*real_clip_paths, "--model", model_file, "--format", "json", "--output", out, "--max-segments", "4")
    assert result.exit_code == 0, result.output
    objects = json.loads(out.read_text())
    assert len(objects) == len(real_clip_paths)
    assert all("genre" in o and o["segments"] <= 4 and o["duration"] > 1 for o in objects), [o for o in objects if "error" in o]
