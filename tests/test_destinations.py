"""The rules for a file genrify writes by name, shared by classify -o and train/learn --out."""

from __future__ import annotations

import os

import pytest
from helpers import untrained_model

from genrify.collection.destinations import check_output_file
from genrify.errors import GenrifyIOError, UsageError
from genrify.learn.evaluation import check_report_dir, report_dir
from genrify.models import modelfile


def test_a_folder_is_a_usage_error_for_every_destination(tmp_path):
    with pytest.raises(UsageError, match=r"is a folder; give the output file's name \(e\.g\. .*/results\.json\)"):
        check_output_file(tmp_path)
    with pytest.raises(UsageError, match="is a folder; give the model file's name"):
        modelfile.check_destination(tmp_path)


def test_an_input_is_refused_through_any_link(tmp_path):
    song = tmp_path / "song.flac"
    song.write_bytes(b"fLaC")
    (tmp_path / "hard.json").hardlink_to(song)
    (tmp_path / "soft.json").symlink_to(song)
    for name in ("hard.json", "soft.json"):
        with pytest.raises(UsageError, match="is one of the input files"):
            check_output_file(tmp_path / name, inputs=[song])
    assert check_output_file(tmp_path / "out.json", inputs=[song]) == tmp_path / "out.json"


def test_audio_is_refused_and_with_audio_names_its_name_too(tmp_path):
    song = tmp_path / "song.mp3"
    song.write_bytes(b"ID3")
    with pytest.raises(UsageError, match="an existing audio file; genrify never writes the output file there"):
        check_output_file(song)
    # Results may be named anything not yet taken; a model never gets a song's name.
    assert check_output_file(tmp_path / "new.wav") == tmp_path / "new.wav"
    with pytest.raises(UsageError, match="an audio file's name; genrify never writes the model file there"):
        modelfile.check_destination(tmp_path / "new.wav")
    (tmp_path / "model.safetensors").symlink_to(song)  # a link named like a model, to a song
    with pytest.raises(UsageError, match="an existing audio file"):
        modelfile.check_destination(tmp_path / "model.safetensors")


def test_an_unwritable_folder_is_an_io_error_and_missing_folders_may_be_made(tmp_path):
    with pytest.raises(GenrifyIOError, match="cannot write the output file there"):
        check_output_file(tmp_path / "missing" / "out.json")
    # save() makes missing folders: the nearest existing one is what must be writable.
    destination = modelfile.check_destination(tmp_path / "a" / "b" / "m.safetensors")
    assert destination == modelfile.Destination(tmp_path / "a" / "b" / "m.safetensors", replaces=False)
    # A file where a folder goes cannot be written into, by root either (as a read-only folder can).
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(GenrifyIOError, match=r"cannot write the model file there \(.*notes\.txt is not a writable folder\)"):
        modelfile.check_destination(tmp_path / "notes.txt" / "new" / "m.safetensors")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        if not os.access(locked, os.W_OK):  # root may write anywhere
            with pytest.raises(GenrifyIOError, match="cannot write the model file there"):
                modelfile.check_destination(locked / "new" / "m.safetensors")
    finally:
        locked.chmod(0o700)


def test_a_model_replaces_only_a_model_and_a_link_to_one_stays_a_link(tmp_path):
    notes = tmp_path / "notes.safetensors"
    notes.write_text("mine")
    with pytest.raises(UsageError, match="exists and is not a genrify model"):
        modelfile.check_destination(notes)
    real = modelfile.save(untrained_model(["a", "b"]), tmp_path / "real" / "m.safetensors")
    (tmp_path / "link.safetensors").symlink_to(real)
    assert modelfile.check_destination(tmp_path / "link.safetensors") == modelfile.Destination(real, replaces=True)
    # The report goes beside the name given, not beside the file the link points to.
    assert report_dir(tmp_path / "link.safetensors") == tmp_path / "link.safetensors.report"
    check_report_dir(report_dir(tmp_path / "link.safetensors"))
    (tmp_path / "dangling.safetensors").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="a symbolic link to nothing"):
        modelfile.check_destination(tmp_path / "dangling.safetensors")
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(UsageError, match="lies inside the feature store"):
        modelfile.check_destination(store / "m.safetensors", store=store)
