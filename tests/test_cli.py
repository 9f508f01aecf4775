from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from genrify.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "extract", "inspect", "demo"):
        assert command in result.output


def test_extract_then_inspect(make_library, tmp_path):
    music = make_library({"blues": ["a.wav", "b.wav"], "rock": ["c.wav"]}, seconds=1.0)
    (music / "rock" / "broken.mp3").write_text("nope")
    store = tmp_path / "store"
    result = runner.invoke(app, ["extract", str(music), "--store", str(store), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "Extracted 3 tracks" in result.output
    assert "failed 1" in result.output and "broken.mp3: not a recognised audio format" in result.output
    again = runner.invoke(app, ["extract", str(music), "--store", str(store), "--jobs", "1"])
    assert again.exit_code == 0 and "unchanged 3" in again.output
    shown = runner.invoke(app, ["inspect", str(store), "--failed"])
    assert shown.exit_code == 0
    assert "blues" in shown.output and "3 tracks stored, 1 failed" in shown.output
    assert "one genre folder only" not in result.output


def test_extract_of_a_folder_above_the_genre_folders_says_so_before_the_work(make_library, tmp_path):
    music = make_library({"blues": ["a.wav"], "rock": ["b.wav"]}, seconds=1.0)
    wrapper = tmp_path / "wrap"
    wrapper.mkdir()
    music.rename(wrapper / "gtzan")
    result = runner.invoke(app, ["extract", str(wrapper), "--store", str(tmp_path / "store"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "2 tracks in 1 genre: gtzan 2" in result.output
    assert f"one genre folder only (gtzan): training needs two or more; if gtzan holds the genre folders, extract {wrapper / 'gtzan'} instead" in " ".join(result.output.split())


def _one_line_error(args: list[str]) -> str:
    result = subprocess.run([sys.executable, "-m", "genrify.cli", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_missing_music_folder_is_one_line_and_exit_1(tmp_path):
    line = _one_line_error(["extract", str(tmp_path / "nowhere"), "--store", str(tmp_path / "s")])
    assert "nowhere: no such folder" in line


def test_folder_with_no_genre_sub_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    line = _one_line_error(["extract", str(tmp_path / "flat"), "--store", str(tmp_path / "s")])
    assert "no genre sub-folders" in line


def test_nothing_extractable_exits_1(tmp_path):
    (tmp_path / "lib" / "pop").mkdir(parents=True)
    (tmp_path / "lib" / "pop" / "a.mp3").write_text("text")
    (tmp_path / "lib" / "pop" / "b.wav").touch()
    result = subprocess.run(
        [sys.executable, "-m", "genrify.cli", "extract", str(tmp_path / "lib"), "--store", str(tmp_path / "s"), "-j", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "none of its 2 tracks could be extracted" in result.stderr
    assert "a.mp3: not a recognised audio format" in result.stdout


def test_store_made_with_other_parameters(make_library, tmp_path):
    music = make_library({"pop": ["a.wav"]}, seconds=0.5)
    assert runner.invoke(app, ["extract", str(music), "--store", str(tmp_path / "s"), "-j", "1"]).exit_code == 0
    line = _one_line_error(["extract", str(music), "--store", str(tmp_path / "s"), "--n-mels", "64"])
    assert "other feature parameters: n_mels=128 (not 64)" in line


def test_inspect_a_folder_that_is_no_store(tmp_path):
    assert "no feature store here" in _one_line_error(["inspect", str(tmp_path)])


def test_usage_errors_exit_2():
    result = runner.invoke(app, ["extract"])
    assert result.exit_code == 2


def test_learn_refuses_a_cache_file_that_is_an_input_or_the_model(tmp_path):
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF")
    model = tmp_path / "mine.safetensors"
    model.write_bytes(b"")
    for cache in (song, model):
        result = runner.invoke(app, ["learn", str(song), "--out", str(model), "--cache-file", str(cache)])
        assert result.exit_code == 2 and "is one of the inputs (or the model)" in result.output, result.output


@pytest.mark.parametrize("fmt", ["wav", "mixed"])
def test_synth_writes_genre_folders(tmp_path, fmt):
    result = runner.invoke(
        app, ["synth", str(tmp_path / "out"), "--genres", "3", "--per-genre", "2", "--seconds", "2", "--format", fmt, "--jobs", "1"]
    )
    assert result.exit_code == 0, result.output
    folders = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert folders == ["blues", "classical", "country"]
    assert len(list((tmp_path / "out").rglob("*.*"))) == 6
    assert "Wrote 6 songs" in result.output


def test_synth_unknown_genre(tmp_path):
    line = _one_line_error(["synth", str(tmp_path / "o"), "--genre-names", "rock,polka"])
    assert "polka" in line


def _help(monkeypatch, *command: str) -> str:
    monkeypatch.setenv("COLUMNS", "400")  # one option per line: no phrase is wrapped apart
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("command", ["classify", "extract"])
def test_scheduler_help_says_what_local_is_and_how_to_get_dask(monkeypatch, command):
    text = _help(monkeypatch, command)
    assert "'local' (start a cluster of worker processes on this machine: one per core, or --jobs)" in text
    assert "Needs Dask (the dask extra)." in text and "(needs genrify)" not in text


def test_help_says_what_the_seed_is(monkeypatch):
    for command in ("train", "classify", "demo"):
        text = _help(monkeypatch, command)
        assert "the seed" not in text.lower(), command
    assert "sgd (as in the student project genrify grew from" in _help(monkeypatch, "train")
    assert "seed-cnn (the CNN of the student project genrify grew from)" in _help(monkeypatch, "train")
    assert "as the student project genrify grew from printed it" in _help(monkeypatch, "classify")


def test_classify_help_points_to_the_builtin_models_card(monkeypatch):
    text = _help(monkeypatch, "classify")
    assert "Without --model the built-in genre model answers" in text
    assert "`genrify info` shows its card (genres, what it learned from, its cross-validated figures, licence)" in text


def test_info_without_a_model_shows_the_builtin_models_card():
    from genrify.models.modelcard import model_card

    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == model_card(None).lines()
    assert result.output.startswith("genrify-musicnn: the pretrained musicnn taggers")
    assert "cross-validated top-1: " in result.output and "licence: musicnn weights: ISC" in result.output


def test_info_on_a_model_file_shows_its_card_then_how_it_is_built(model_file):
    from genrify.models.modelcard import model_card

    result = runner.invoke(app, ["info", str(model_file)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    card = model_card(model_file).lines()
    assert lines[: len(card)] == card and card[0].startswith(f"{model_file.name}: a ")
    assert "architecture" in result.output and "features" in result.output and "chunk" in result.output


def test_ctrl_c_says_it_was_interrupted_and_exits_130(monkeypatch, capsys):
    import typer

    import genrify.cli as cli

    def interrupted() -> None:
        # What Typer makes of a KeyboardInterrupt: a silent exit 130.
        raise SystemExit(typer.Exit(130).exit_code)

    monkeypatch.setattr(cli, "app", interrupted)
    # A pool's workers left waiting (a second Ctrl-C during its shutdown) are stopped: the exit
    # would otherwise wait for them forever.
    import multiprocessing

    class Worker:
        stopped = False

        def terminate(self) -> None:
            Worker.stopped = True

    monkeypatch.setattr(multiprocessing, "active_children", lambda: [Worker()])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 130 and Worker.stopped
    assert capsys.readouterr().err.strip() == cli.INTERRUPTED


def test_the_version_as_a_command_and_as_an_option():
    from genrify import __version__

    for args in (["version"], ["--version"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and result.output.strip() == f"genrify {__version__}", (args, result.output)
