from __future__ import annotations

import json
import re

import numpy as np
import pytest

from genrify.errors import UsageError
from genrify.learn.evaluation import (
    REPORT_FILES,
    evaluate_probabilities,
    evaluation_dir,
    report_dir,
    write_report,
)


def test_song_answer_is_the_mean_of_chunk_probabilities_and_votes_are_the_seeds():
    # Song 0 (true genre 0): two chunks lean weakly to genre 1, one strongly to genre 0.
    # Mean of probabilities says genre 0; the seed's majority vote says genre 1.
    probs = np.array([
        [0.45, 0.55], [0.45, 0.55], [0.95, 0.05],  # song 0
        [0.2, 0.8], [0.3, 0.7],                    # song 1, true genre 1
    ])
    track_ids = np.array([0, 0, 0, 1, 1])
    ev = evaluate_probabilities(probs, track_ids, np.array([0, 1]), ["a.wav", "b.wav"], ["rock", "jazz"])
    assert ev.chunk_accuracy == pytest.approx(3 / 5)
    assert ev.song_accuracy == 1.0
    assert ev.vote_accuracy == 0.5
    np.testing.assert_allclose(ev.song_probabilities[0], [0.6166667, 0.3833333], rtol=1e-6)
    assert ev.confusion.tolist() == [[1, 0], [0, 1]]
    assert ev.per_genre["rock"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}


def test_per_genre_figures_and_confusion():
    probs = np.eye(3)[[0, 1, 1, 2]]  # one chunk per song
    ev = evaluate_probabilities(probs, np.arange(4), np.array([0, 1, 2, 2]), list("abcd"), ["x", "y", "z"])
    assert ev.song_accuracy == 0.75
    assert ev.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert ev.per_genre["y"]["precision"] == 0.5 and ev.per_genre["z"]["recall"] == 0.5
    assert ev.macro_f1 == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_report_files(tmp_path):
    history = [{"epoch": e, "train_loss": 1 / e, "valid_loss": 1.2 / e, "train_accuracy": 1 - 1 / (e + 1),
                "valid_accuracy": 0.9 - 1 / (e + 2)} for e in range(1, 6)]
    runs = [{"confusion": [[3, 1], [0, 4]], "history": history, "best_epoch": 4}]
    out = write_report(tmp_path / "m.safetensors", genres=["rock", "jazz"],
                       summary={"song_accuracy_mean": 0.875, "song_accuracy_std": 0.0, "chunk_accuracy_mean": 0.8}, runs=runs)
    assert out == report_dir(tmp_path / "m.safetensors") == tmp_path / "m.safetensors.report"
    report = json.loads((out / "report.json").read_text())
    assert report["genres"] == ["rock", "jazz"] and report["summary"]["song_accuracy_mean"] == 0.875
    from PIL import Image

    for name in ("curves.png", "confusion.png"):
        with Image.open(out / name) as image:
            assert image.width > 400 and image.height > 300
            assert len(np.unique(np.asarray(image.convert("L")))) > 20  # drawn, not blank


RUNS = [{"confusion": [[3, 1], [0, 4]]}]


def _report(model, folder=None):
    return write_report(model, genres=["rock", "jazz"], summary={"song_accuracy_mean": 0.875}, runs=RUNS, folder=folder)


@pytest.mark.parametrize("kind", ["file", "link"])
def test_a_report_into_the_evaluation_folder_checks_the_report_folder_above_it(tmp_path, kind):
    # mkdir failed with NotADirectoryError on a file, and wrote through a link.
    model = tmp_path / "m.safetensors"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if kind == "file":
        report_dir(model).write_text("mine")
    else:
        report_dir(model).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UsageError, match=r"m\.safetensors\.report: exists and is not a genrify report folder"):
        _report(model, folder=evaluation_dir(model))
    assert list(elsewhere.iterdir()) == []


def test_a_new_training_report_removes_the_evaluation_genrify_wrote(tmp_path):
    model = tmp_path / "m.safetensors"
    _report(model)
    _report(model, folder=evaluation_dir(model))
    assert sorted(p.name for p in evaluation_dir(model).iterdir()) == ["confusion.png", "report.json"]
    _report(model, folder=evaluation_dir(model))  # a new evaluation replaces the last one, and leaves no folder out
    assert evaluation_dir(model).is_dir()
    _report(model)  # the model was trained anew: its evaluation described the network replaced
    assert not evaluation_dir(model).exists()
    assert (report_dir(model) / "report.json").is_file()


def test_a_new_training_report_leaves_what_genrify_did_not_write_in_the_evaluation_folder(tmp_path):
    model = tmp_path / "m.safetensors"
    _report(model, folder=evaluation_dir(model))
    (evaluation_dir(model) / "notes.txt").write_text("mine")
    _report(model)
    assert [p.name for p in evaluation_dir(model).iterdir()] == ["notes.txt"]  # genrify's files gone, the folder kept
    # A folder whose report.json is not genrify's: nothing in it is genrify's, nothing goes.
    (evaluation_dir(model) / "report.json").write_text('{"mine": true}')
    (evaluation_dir(model) / "confusion.png").write_text("mine too")
    _report(model)
    assert sorted(p.name for p in evaluation_dir(model).iterdir()) == ["confusion.png", "notes.txt", "report.json"]


def test_a_new_training_report_leaves_an_evaluation_link_and_what_it_points_to(tmp_path):
    model = tmp_path / "m.safetensors"
    _report(model, folder=tmp_path / "kept")
    report_dir(model).mkdir()
    evaluation_dir(model).symlink_to(tmp_path / "kept", target_is_directory=True)
    _report(model)
    assert evaluation_dir(model).is_symlink()
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == sorted(
        name for name in REPORT_FILES if name != "curves.png")  # no history, so no curves


def test_evaluate_refuses_stored_features_that_are_not_finite(small_store, model_file, tmp_path):
    import shutil

    from genrify.errors import TrainingError
    from genrify.learn.evaluation import evaluate_model
    from genrify.store.store import FeatureStore

    store = tmp_path / "store"
    shutil.copytree(small_store, store)
    with FeatureStore.open(store) as fs:
        track = fs.tracks()[4]
        file = fs.array_file(track)
    clean = evaluate_model(model_file, store, all_tracks=True)
    assert clean.songs == 18 and np.isfinite(clean.evaluation.song_probabilities).all()
    # Overwritten in place (same size, valid header): NaN would otherwise become a confident answer.
    np.save(file, np.full(np.load(file, mmap_mode="r").shape, np.nan, dtype=np.float16))
    with pytest.raises(TrainingError, match="^" + re.escape(track.path) + r": its stored features hold NaN or infinite values; .*--verify"):
        evaluate_model(model_file, store, all_tracks=True)


def test_a_learned_genre_head_is_refused_with_where_its_report_is(tmp_path):
    from genrify.errors import ModelFileError
    from genrify.learn.evaluation import evaluate_model
    from genrify.models.builtin import HEAD_PATH

    # A head (genrify learn's kind of file; the packaged one is one) failed with an AttributeError.
    with pytest.raises(ModelFileError, match=r"genre head learned by genrify learn .*`genrify info "):
        evaluate_model(HEAD_PATH, tmp_path / "store")


def test_a_stale_evaluation_is_never_removed_through_a_linked_report_folder(tmp_path):
    from genrify.learn.evaluation import remove_stale_evaluation

    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    _report(first, folder=evaluation_dir(first))  # a's own evaluation
    report_dir(second).symlink_to(report_dir(first), target_is_directory=True)
    remove_stale_evaluation(second)
    assert (evaluation_dir(first) / "report.json").is_file(), "a's evaluation went through b's link"
