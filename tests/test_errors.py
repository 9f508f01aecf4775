"""The error family and what each kind means: the CLI's exit status and the web app's HTTP status."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from genrify import errors
from genrify.cli import app
from genrify.errors import (
    AudioError,
    DependencyError,
    GenrifyError,
    GenrifyIOError,
    ModelFileError,
    ParameterError,
    PredictionError,
    TagError,
    UsageError,
    exit_code,
    http_status,
)

runner = CliRunner()


@pytest.mark.parametrize(
    ("error", "exit_status", "http"),
    [
        (GenrifyError("bad input"), 1, 422),
        (ParameterError("top_k must be at least 1"), 1, 422),
        (UsageError("--top-k must be at least 1"), 2, 422),
        (GenrifyIOError("out.json: cannot write the output file"), 1, 507),
        (DependencyError("ONNX Runtime is not installed"), 1, 503),
        (AudioError("song.mp3", "not a recognised audio format"), 1, 422),
        (PredictionError("song.mp3", "non-finite probabilities"), 1, 422),
        (ModelFileError("m.safetensors: damaged"), 1, 422),
        (TagError("song.mp3", "read-only file"), 1, 422),
        (ValueError("a bug, not a user's mistake"), 1, 500),
        (KeyError("also a bug"), 1, 500),
    ],
)
def test_each_kind_has_its_exit_status_and_http_status(error, exit_status, http):
    assert exit_code(error) == exit_status and http_status(error) == http
    # The class gives the same answer as an instance: the kind decides, never the message.
    assert exit_code(type(error)) == exit_status and http_status(type(error)) == http


def test_a_subclass_takes_its_nearest_listed_ancestors_row():
    class NoGPU(DependencyError):
        pass

    class BadFlag(UsageError):
        pass

    assert (exit_code(NoGPU), http_status(NoGPU)) == (1, 503)
    assert (exit_code(BadFlag), http_status(BadFlag)) == (2, 422)
    # A usage error is still a ParameterError (callers that catch that keep working) and a GenrifyError.
    assert issubclass(UsageError, ParameterError) and issubclass(UsageError, ValueError)


def test_every_error_class_is_one_family_and_every_listed_class_is_an_error():
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, BaseException)]
    assert {c for c in classes if not issubclass(c, GenrifyError)} == set()
    assert all(issubclass(c, GenrifyError) for c in errors.STATUS)
    # The I/O and environment kinds are not parameter errors: a caller that catches
    # ParameterError to report a bad argument does not swallow a full disk or a missing package.
    assert not issubclass(GenrifyIOError, ParameterError) and not issubclass(DependencyError, ParameterError)


# --- real cases through the command line ----------------------------------------------------------


def test_a_bad_option_value_exits_2_in_one_line(tmp_path):
    # --port is checked before the model file is read: a usage mistake costs nothing.
    result = runner.invoke(app, ["serve", "--no-builtin", str(tmp_path / "m.safetensors"), "--port", "70000"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "port must be 0 to 65535" in lines[0]


def test_a_classify_option_out_of_range_exits_2(tmp_path):
    song = tmp_path / "song.wav"
    song.write_bytes(b"")
    result = runner.invoke(app, ["classify", str(song), "--top-k", "0"])
    assert result.exit_code == 2, result.output
    assert "--top-k" in result.output


def test_an_address_that_cannot_be_listened_on_exits_1(tmp_path, monkeypatch):
    import torch

    from genrify.audio.features import FeatureParams
    from genrify.web.catalogue import ModelEntry

    # A stand-in classifier: the port is refused before the app is built or any song is read.
    fake = SimpleNamespace(network=None, genres=["pop"], params=FeatureParams(), chunk_frames=128)
    monkeypatch.setattr(ModelEntry, "from_file", classmethod(lambda cls, path, name=None, **_k: cls("m", fake)))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    threads = torch.get_num_threads()
    try:
        port = str(taken.getsockname()[1])
        result = runner.invoke(app, ["serve", "--no-builtin", str(tmp_path / "m.safetensors"), "--port", port])
    finally:
        taken.close()
        torch.set_num_threads(threads)
    assert result.exit_code == 1, result.output
    assert "cannot listen on 127.0.0.1" in result.output
    assert isinstance(result.exception, SystemExit)


def test_every_error_class_is_exported_at_the_top():
    import inspect

    import genrify

    classes = {name for name, value in vars(errors).items() if inspect.isclass(value) and issubclass(value, GenrifyError)}
    assert classes <= set(genrify.__all__), classes - set(genrify.__all__)
    assert all(getattr(genrify, name) is getattr(errors, name) for name in classes)
