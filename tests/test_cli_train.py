from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    assert "song accuracy" in result.output and "over 2 runs (mean ± standard deviation)" in result.output
    report = json.loads((tmp_path / "m.safetensors.report" / "report.json").read_text())
    assert len(report["runs"]) == 2 and report["summary"]["runs"] == 2
    shown = runner.invoke(app, ["info", str(model)])
    assert shown.exit_code == 0 and "disco, jazz, reggae" in shown.output and "seed-cnn" in shown.output
    evaluated = runner.invoke(app, ["evaluate", str(model), str(store), "--all"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "on 15 songs (all tracks)" in evaluated.output
    evaluation = json.loads((tmp_path / "m.safetensors.report" / "evaluation" / "report.json").read_text())
    assert evaluation["evaluation"]["selection"] == "all tracks"
    assert (tmp_path / "m.safetensors.report" / "evaluation" / "confusion.png").is_file()
    kept = json.loads((tmp_path / "m.safetensors.report" / "report.json").read_text())
    assert kept == report, "the training report stays as training wrote it"
    # Its own store: the songs it trained on are counted, and the figures said to overrate it.
    own = runner.invoke(app, ["evaluate", str(model), str(store)])
    assert own.exit_code == 0 and "(the model's test songs)" in own.output and "overrate" not in own.output
    songs = int(re.search(r"on (\d+) songs \(the model's test songs\)", own.output).group(1))
    assert f"{15 - songs} of these 15 songs are of the model's own store" in " ".join(evaluated.output.split())


def _error_line(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-m", "genrify.cli", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip() and "━" not in line]
    assert lines and lines[-1].startswith("error: ") and len([l for l in lines if l.startswith("error")]) == 1
    return lines[-1]


def test_train_on_an_empty_store(tmp_path):
    from genrify.store.store import FeatureStore

    FeatureStore.create(tmp_path / "empty").close()
    line = _error_line(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "m.safetensors")])
    assert "holds no extracted tracks" in line
    assert not (tmp_path / "m.safetensors").exists()


def test_info_on_a_file_that_is_not_a_model(tmp_path):
    (tmp_path / "song.safetensors").write_text("hello")
    assert "song.safetensors: not a genrify model file (5 bytes, too short to be one)" in _error_line(
        ["info", str(tmp_path / "song.safetensors")])


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
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--genres", "3", "--per-genre", "4",
                                 "--seconds", "4", "--folds", "4"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "model.safetensors").is_file()
    assert (tmp_path / "d" / "model.safetensors.report" / "confusion.png").is_file()
    assert len(list((tmp_path / "d" / "folds").glob("fold-*.tsv"))) == 4
    # Every song is tested once, by a head that never heard it: the closing figure counts all 12,
    # with its interval, and names what the progress line's validation figure is.
    done = " ".join(line for line in result.output.splitlines() if "Demo done" in line or line.startswith(" "))
    assert re.search(r"Demo done: test songs: \d+/12 named right \(\d+%, 95% interval \d+-\d+%; chance 33%\)", done), done
    assert "val chunk acc is per 3-s segment" in result.output
    report = json.loads((tmp_path / "d" / "model.safetensors.report" / "report.json").read_text())
    assert report["summary"]["songs"] == 12 and report["summary"]["folds"] == 4
    assert len(report["runs"]) == 4 and sum(run["songs"] for run in report["runs"]) == 12


def test_demo_refuses_fewer_songs_than_folds(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--per-genre", "3", "--folds", "4"])
    assert result.exit_code == 2 and "--per-genre must be at least --folds" in result.output
    assert not (tmp_path / "d").exists()  # refused before any work


def _train(store: Path, out: Path, *extra: str):
    return runner.invoke(app, ["train", str(store), "--out", str(out), "--epochs", "1", *extra])


@pytest.mark.parametrize("victim", ["song.wav", "notes.txt", "weights.safetensors", "dangling-link"])
def test_train_out_never_replaces_what_is_not_a_genrify_model(store, tmp_path, victim):
    target = tmp_path / victim
    if victim == "song.wav":
        target.write_bytes(b"RIFF....WAVEfmt ")
    elif victim == "weights.safetensors":  # another program's safetensors: no genrify metadata
        from safetensors.numpy import save_file

        save_file({"w": np.zeros(3, dtype=np.float32)}, str(target))
    elif victim == "dangling-link":  # a link to nothing would be replaced by the model
        os.symlink(tmp_path / "nowhere", target)
    else:
        target.write_text("my notes")
    before = target.read_bytes() if target.exists() else None
    result = _train(store, target)
    assert result.exit_code == 2, result.output
    assert "error: --out" in result.output and "run 1/1" not in result.output  # refused before any training
    assert (target.read_bytes() if target.exists() else None) == before
    assert not (tmp_path / f"{victim}.report").exists()


def test_train_out_never_writes_into_the_store(store, tmp_path):
    from genrify.store.store import FeatureStore

    manifest = store / "manifest.sqlite"
    before = manifest.read_bytes()
    for out in (manifest, store / "model.safetensors", store / "arrays" / "m.safetensors"):
        result = _train(store, out)
        assert result.exit_code == 2, result.output
        assert "inside the feature store" in result.output or "not a genrify model" in result.output
        assert not out.with_name(out.name + ".report").exists()
    assert manifest.read_bytes() == before and not (store / "model.safetensors").exists()
    with FeatureStore.open(store) as fs:
        assert len(fs) == 15


def test_train_out_may_replace_a_genrify_model_and_says_so(store, tmp_path):
    from helpers import untrained_model

    from genrify.models import modelfile

    old = modelfile.save(untrained_model(["a", "b"]), tmp_path / "real" / "m.safetensors")
    (tmp_path / "m.safetensors").symlink_to(old)  # a link to a model stays a link
    result = _train(store, tmp_path / "m.safetensors")
    assert result.exit_code == 0, result.output
    assert f"replacing model {old}" in result.output
    assert os.path.islink(tmp_path / "m.safetensors")
    assert modelfile.read_metadata(old)["genres"] == ["disco", "jazz", "reggae"]
    assert (tmp_path / "m.safetensors.report" / "report.json").is_file()
    again = _train(store, tmp_path / "m.safetensors")  # its own report folder is replaced too
    assert again.exit_code == 0, again.output


def test_train_and_evaluate_never_replace_a_report_folder_that_is_not_genrifys(store, tmp_path):
    model = tmp_path / "m.safetensors"
    report = tmp_path / "m.safetensors.report"
    report.write_text("a file where the report folder goes")
    assert _train(store, model).exit_code == 2
    assert report.read_text() == "a file where the report folder goes" and not model.exists()
    report.unlink()
    report.mkdir()
    (report / "report.json").write_text('{"mine": true}')
    (report / "keep.txt").write_text("mine")
    refused = _train(store, model)
    assert refused.exit_code == 2 and "not part of a genrify report" in refused.output
    assert (report / "report.json").read_text() == '{"mine": true}'
    (report / "report.json").unlink()
    trained = _train(store, model)
    assert trained.exit_code == 0, trained.output
    assert (report / "keep.txt").read_text() == "mine"  # other files in the folder are never touched
    (report / "evaluation").mkdir()
    (report / "evaluation" / "confusion.png").symlink_to(tmp_path / "elsewhere.png")
    evaluated = runner.invoke(app, ["evaluate", str(model), str(store), "--all"])
    assert evaluated.exit_code == 2 and "confusion.png" in evaluated.output and "on 15 songs" not in evaluated.output


@pytest.mark.parametrize("kind", ["file", "link"])
def test_evaluate_refuses_a_report_folder_that_is_a_file_or_a_link_before_any_work(small_store, model_file, tmp_path, kind):
    # It checked only MODEL.report/evaluation: a file failed with a traceback after the whole
    # evaluation, and a link had the report written wherever it pointed.
    import shutil

    model = tmp_path / "m.safetensors"
    shutil.copy(model_file, model)
    report = tmp_path / "m.safetensors.report"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if kind == "file":
        report.write_text("mine")
    else:
        report.symlink_to(elsewhere, target_is_directory=True)
    evaluated = runner.invoke(app, ["evaluate", str(model), str(small_store), "--all"])
    assert evaluated.exit_code == 2, evaluated.output
    assert "m.safetensors.report: exists and is not a genrify report folder" in evaluated.output
    assert "songs" not in evaluated.output and "Traceback" not in evaluated.output
    assert list(elsewhere.iterdir()) == []
    assert report.is_symlink() if kind == "link" else report.read_text() == "mine"


def test_training_again_removes_the_evaluation_of_the_network_it_replaced(store, tmp_path):
    model = tmp_path / "m.safetensors"
    evaluation = tmp_path / "m.safetensors.report" / "evaluation"
    assert _train(store, model).exit_code == 0
    evaluated = runner.invoke(app, ["evaluate", str(model), str(store), "--all"])
    assert evaluated.exit_code == 0 and (evaluation / "report.json").is_file(), evaluated.output
    trained = _train(store, model)
    assert trained.exit_code == 0, trained.output
    assert not evaluation.exists(), "the evaluation described the network this training replaced"
    assert (tmp_path / "m.safetensors.report" / "report.json").is_file()


def test_train_out_that_is_the_split_file_or_a_folder(store, tmp_path):
    split = tmp_path / "split.tsv"
    lines = "".join(f"{g}/{g}.{i:05d}.wav\t{s}\n" for g in ("disco", "jazz", "reggae")
                    for i, s in enumerate(["train", "train", "valid", "test", "test"]))
    split.write_text(lines)
    assert _train(store, split, "--split-file", str(split)).exit_code == 2
    assert split.read_text() == lines
    # A folder where a file name goes is a mistyped option, as for classify -o: exit 2.
    folder = _train(store, tmp_path)
    assert folder.exit_code == 2, folder.output
    assert f"error: --out {tmp_path}: is a folder" in folder.output and "run 1/1" not in folder.output
    assert len(folder.output.strip().splitlines()) == 1
    # A folder that cannot be written (here a file where the folder goes: root too is refused) is
    # the file system's no: exit 1, still before any training.
    refused = _train(store, split / "m.safetensors")
    assert refused.exit_code == 1 and "cannot write the model file there" in refused.output
    assert "run 1/1" not in refused.output and split.read_text() == lines


def _usage_lines(args: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "genrify.cli", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--group-by", "foo"], "error: --group-by must be one of auto, artist, song, not 'foo'"),
        (["--arch", "foo"], "error: --arch must be one of "),
        (["--runs", "0"], "error: --runs must be at least 1, not 0"),
    ],
)
def test_train_refuses_a_bad_setting_in_one_line_before_any_work(store, tmp_path, option, said):
    # --group-by foo trained as "auto", and --arch foo drew a progress bar before its error.
    lines = _usage_lines(["train", str(store), "--out", str(tmp_path / "m.safetensors"), "--epochs", "1", *option])
    assert len(lines) == 1 and lines[0].startswith(said), lines
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "m.safetensors.report").exists()


def test_train_on_a_missing_store_is_one_line_with_no_progress_bar(tmp_path):
    done = subprocess.run([sys.executable, "-m", "genrify.cli", "train", str(tmp_path / "nonexistent"), "--out",
                           str(tmp_path / "m.safetensors")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nonexistent" in lines[0], lines


def test_info_on_a_folder_says_it_is_a_folder(store):
    assert _error_line(["info", str(store)]) == f"error: {store}: a folder, not a model file"


def test_evaluate_refuses_a_learned_head_in_one_line(store):
    from genrify.models.builtin import HEAD_PATH

    line = _error_line(["evaluate", str(HEAD_PATH), str(store), "--all"])
    assert "is not evaluated on a feature store" in line and f"genrify info {HEAD_PATH}" in line


def test_info_says_which_run_a_model_of_several_runs_holds(store, tmp_path):
    from genrify.models import modelfile

    model = tmp_path / "m.safetensors"
    assert _train(store, model, "--runs", "2").exit_code == 0
    info = modelfile.read_metadata(model)["info"]
    kept = info["kept_run"]
    own = info["runs"][kept]["song_accuracy"]
    shown = runner.invoke(app, ["info", str(model)])
    assert shown.exit_code == 0, shown.output
    assert f"run this file holds: run {kept + 1} of 2, the one with the lowest validation loss" in shown.output
    assert f"test song accuracy: {100 * own:.0f}% for the run this file holds; " in shown.output
    # The training row gives the seed the kept run trained with (run r: the seed + r), not the first's.
    seed = info["config"]["seed"] + kept
    assert f"seed={seed} (run {kept + 1} of 2, kept)" in " ".join(shown.output.split())
