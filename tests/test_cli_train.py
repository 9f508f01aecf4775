from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import synth_store
from typer.testing import CliRunner

from genrify.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return synth_store(tmp_path_factory.mktemp("cli"), ("disco", "jazz", "reggae"), per_genre=5, seconds=5.0, seed=2)


def test_train_evaluate_info(store, tmp_path):
    model = tmp_path / "m.safetensors"
    result = runner.invoke(app, ["train", str(store), "--out", str(model), "--epochs", "2", "--runs", "2"])
    assert result.exit_code == 0, result.output
    assert "song accuracy" in result.output and "over 2 run(s)" in result.output
    report = json.loads((tmp_path / "m.safetensors.report" / "report.json").read_text())
    assert len(report["runs"]) == 2 and report["summary"]["runs"] == 2
    shown = runner.invoke(app, ["info", str(model)])
    assert shown.exit_code == 0 and "disco, jazz, reggae" in shown.output and "seed-cnn" in shown.output
    evaluated = runner.invoke(app, ["evaluate", str(model), str(store), "--all"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "on 15 songs (all tracks)" in evaluated.output
    rewritten = json.loads((tmp_path / "m.safetensors.report" / "report.json").read_text())
    assert rewritten["evaluation"]["selection"] == "all tracks"
    assert rewritten["runs"][0]["history"], "the curves keep the training history"


def _error_line(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-m", "genrify.cli", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip() and "━" not in line]
    assert lines and lines[-1].startswith("error: ") and len([l for l in lines if l.startswith("error")]) == 1
    return lines[-1]


def test_train_on_an_empty_store(tmp_path):
    from genrify.store import FeatureStore

    FeatureStore.create(tmp_path / "empty").close()
    line = _error_line(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "m.safetensors")])
    assert "holds no extracted tracks" in line
    assert not (tmp_path / "m.safetensors").exists()


def test_info_on_a_file_that_is_not_a_model(tmp_path):
    (tmp_path / "song.safetensors").write_text("hello")
    assert "not a safetensors model file" in _error_line(["info", str(tmp_path / "song.safetensors")])


def test_split_file_naming_tracks_the_store_lacks(store, tmp_path):
    lines = []
    for genre in ("disco", "jazz", "reggae"):
        for i, split in enumerate(["train", "train", "valid", "test", "test"]):
            lines.append(f"{genre}/{genre}.{i:05d}.wav\t{split}")
    lines.append("metal/metal.00099.wav\ttest")
    (tmp_path / "split.tsv").write_text("\n".join(lines))
    model = tmp_path / "m.safetensors"
    result = runner.invoke(app, ["train", str(store), "--out", str(model), "--epochs", "1", "--split-file", str(tmp_path / "split.tsv")])
    assert result.exit_code == 0, result.output
    assert "1 split-file entries not in the store" in result.output
    assert "6 train, 3 validation, 6 test songs" in result.output


def test_demo_runs_the_whole_pipeline(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--genres", "3", "--per-genre", "5", "--seconds", "4"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "model.safetensors").is_file()
    assert (tmp_path / "d" / "model.safetensors.report" / "confusion.png").is_file()
    assert "Demo done" in result.output and "song accuracy" in result.output
