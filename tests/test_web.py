"""The web app: the API's answers, its limits and errors, and where uploads go."""

from __future__ import annotations

import base64
import io
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx
import torch

with warnings.catch_warnings():  # newer Starlette suggests httpx2 for its test client; httpx still works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from helpers import running_server, tone, untrained_model


from genrify.classify import predict
from genrify.errors import (
    DependencyError,
    GenrifyIOError,
    ModelFileError,
    ParameterError,
    UsageError,
)
from genrify.audio.features import FeatureParams
from genrify.web import ModelEntry, create_app, serve
from genrify.web.security import LOCAL_HOSTS, allowed_hosts_for, host_name
from genrify.web.upload import Upload, display_name, safe_extension

STATIC = Path(__file__).resolve().parents[1] / "src" / "genrify" / "web" / "static"


# --- helpers ------------------------------------------------------------------------------------


def multipart(filename: str | None, content: bytes = b"", **fields: str) -> tuple[bytes, str]:
    """A multipart/form-data body by hand (for streamed and unusual requests); no file part without a name."""
    boundary = "genrify-test-boundary-7d1f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    if filename is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other(model):
    return untrained_model(model.genres, seed=1)


@pytest.fixture(scope="module")
def app(model, other, tmp_path_factory):
    entries = [ModelEntry.from_model("trained", model, description="two epochs on synthetic songs"),
               ModelEntry.from_model("untrained", other)]
    # Eight parallel uploads from one address (the tests') are part of the tests: no per-client cap.
    return create_app(entries, upload_dir=tmp_path_factory.mktemp("uploads"), uploads_per_client=None)


@pytest.fixture(scope="module")
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture(autouse=True)
def uploads_always_removed(request):
    """After every test, success or failure, the app's upload directory is empty."""
    yield
    if "app" in request.fixturenames:
        app = request.getfixturevalue("app")
        assert list(app.state.upload_dir.iterdir()) == []


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> dict[str, Path]:
    """A synthetic 8 s song as wav and mp3, and a 32 s tone (more frames than the image is wide)."""
    from genrify.audio.synth import synthesize_song

    root = tmp_path_factory.mktemp("web-songs")
    y = synthesize_song("metal", 8.0, seed=3)
    sf.write(root / "song.wav", y, 22050)
    sf.write(root / "song.mp3", y, 22050, format="MP3")
    sf.write(root / "long.wav", tone(32.0, sr=16000, freq=330.0), 16000)
    return {"wav": root / "song.wav", "mp3": root / "song.mp3", "long": root / "long.wav"}


def post(client, path: Path, name: str | None = None, params=None, data=None):
    with open(path, "rb") as fh:
        return client.post("/api/classify", files={"file": (name or path.name, fh, "audio/wav")}, params=params, data=data)


def without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def assert_same_answer(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    assert got["genre"] == expected["genre"] and got["segments"] == expected["segments"]
    for key in ("probabilities", "votes"):
        assert got[key].keys() == expected[key].keys()
        for g in expected[key]:
            assert got[key][g] == pytest.approx(expected[key][g], abs=1e-6)
    assert [t["genre"] for t in got["top"]] == [t["genre"] for t in expected["top"]]
    for a, b in zip(got.get("timeline", []), expected.get("timeline", []), strict=True):
        assert a["start"] == b["start"] and a["genre"] == b["genre"]
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)


# --- answers -------------------------------------------------------------------------------------


def test_an_upload_gets_the_answer_classify_gives(client, model, songs):
    response = post(client, songs["wav"], params={"timeline": "true"})
    assert response.status_code == 200, response.text
    got = response.json()
    expected = predict.classify(songs["wav"], model).to_dict(timeline=True)
    assert got["model"] == "trained"  # the first model is the default
    assert got["path"] == "song.wav"  # the client's name, never the server's temporary file
    assert_same_answer(without(got, "model", "path"), without(expected, "path"))
    assert len(got["timeline"]) == got["segments"] == expected["segments"]
    assert "spectrogram_png" not in got


def test_the_answer_is_the_classification_services_with_or_without_a_spectrogram(client, model_file, songs):
    """One song, the answer a library run (``genrify classify --format json``) gives it, also when
    the page asks for the spectrogram (which decodes the whole song)."""
    from genrify.classify.modelref import ModelRef
    from genrify.classify.service import classify_library
    from genrify.core.runner import LocalRunner

    (expected,) = classify_library([songs["long"]], ModelRef.file(model_file), runner=LocalRunner(1)).results
    for spectrogram in ("false", "true"):
        got = post(client, songs["long"], params={"spectrogram": spectrogram}).json()
        assert_same_answer(without(got, "model", "path", "spectrogram_png"), without(expected.to_dict(), "path"))


def test_form_fields_choose_the_model_and_top_k_and_mp3_decodes(client, other, songs):
    response = post(client, songs["mp3"], data={"model": "untrained", "top_k": "2"})
    assert response.status_code == 200, response.text
    got = response.json()
    expected = predict.classify(songs["mp3"], other).to_dict(top_k=2)
    assert got["model"] == "untrained" and len(got["top"]) == 2 and "timeline" not in got
    assert_same_answer(without(got, "model", "path"), without(expected, "path"))


def test_the_spectrogram_is_a_png_of_the_songs_features(client, model, songs):
    from matplotlib import image

    response = post(client, songs["wav"], params={"spectrogram": "1", "top_k": "1"})
    got = response.json()
    assert len(got["top"]) == 1
    prefix = "data:image/png;base64,"
    assert got["spectrogram_png"].startswith(prefix)
    png = image.imread(io.BytesIO(base64.b64decode(got["spectrogram_png"][len(prefix):])), format="png")
    frames = FeatureParams().n_frames(8 * 22050)
    assert png.shape[:2] == (model.params.n_mels, frames)  # one column per frame, one row per band
    long = post(client, songs["long"], params={"spectrogram": "true"}).json()
    png = image.imread(io.BytesIO(base64.b64decode(long["spectrogram_png"][len(prefix):])), format="png")
    assert png.shape[:2] == (128, 1200)  # capped width
    assert long["duration"] == pytest.approx(32.0, abs=0.01)


def test_the_name_and_the_extension_come_from_the_client_but_never_a_path(client, app, songs, monkeypatch, tmp_path):
    seen: list[Path] = []
    real = predict.classify

    def spy(path, model, **options):
        seen.append(Path(path))
        return real(path, model, **options)

    monkeypatch.setattr(predict, "classify", spy)
    target = tmp_path / "etc" / "passwd.mp3"
    name = "../" * 12 + str(target).lstrip("/")
    response = post(client, songs["mp3"], name=name)
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "passwd.mp3"
    assert not target.exists() and not (tmp_path / "etc").exists()
    assert seen[-1].parent == app.state.upload_dir and seen[-1].suffix == ".mp3"
    assert "passwd" not in seen[-1].name
    # Windows separators and a name that is not audio: a server-chosen name without extension;
    # the content is still decoded (by ffmpeg, which probes it).
    response = post(client, songs["wav"], name="..\\..\\evil.exe")
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "evil.exe" and seen[-1].suffix == ""
    assert oct(app.state.upload_dir.stat().st_mode & 0o777) == oct(0o700)


def test_display_names_and_extensions():
    assert display_name("../../etc/passwd.mp3") == "passwd.mp3"
    assert display_name("C:\\Music\\a.flac") == "a.flac"
    assert display_name("bad\x00name\n.wav") == "badname.wav"
    # what a browser sends for a name holding quotes or a line break (HTML's form encoding)
    assert display_name("%22quote%22 'ü'.flac") == "\"quote\" 'ü'.flac"
    assert display_name("con.wav%0D%0AX: y") == "con.wavX: y"
    assert display_name("..") == display_name("") == display_name(None) == "upload"
    assert len(display_name("x" * 500 + ".mp3")) <= 200 and display_name("x" * 500 + ".mp3").endswith(".mp3")
    assert safe_extension("Song.MP3") == ".mp3"
    assert safe_extension("a.exe") == safe_extension("noext") == safe_extension("a.mp3/") == ""


# --- errors ------------------------------------------------------------------------------------


def test_too_large_is_413_and_leaves_nothing(model, songs, tmp_path):
    small = create_app({"m": model}, max_upload_bytes=50_000, upload_dir=tmp_path)
    with TestClient(small) as c:
        response = post(c, songs["wav"])  # about 350 KB, with Content-Length: refused before reading
        assert response.status_code == 413
        assert "(48.8 KB)" in response.json()["detail"]  # 50,000 bytes
        body, ctype = multipart("song.wav", songs["wav"].read_bytes()[:60_000])  # just over, within the overhead
        response = c.post("/api/classify", content=body, headers={"content-type": ctype})
        assert response.status_code == 413  # counted while streaming
        ok = c.post("/api/classify", files={"file": ("short.wav", _wav_bytes(1.0))})
        assert ok.status_code == 200, ok.text  # under the limit
    assert list(small.state.upload_dir.iterdir()) == []


def _wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds), 22050, format="WAV")
    return buffer.getvalue()


def test_a_streamed_upload_stops_at_the_limit_without_filling_the_disk(model, tmp_path):
    """Chunks arrive one by one (no Content-Length); the file on disk never exceeds the limit."""
    import anyio

    limit = 100_000
    small = create_app({"m": model}, max_upload_bytes=limit, upload_dir=tmp_path)
    body, ctype = multipart("big.wav", os.urandom(2_000_000))
    chunks = [body[i : i + 16_384] for i in range(0, len(body), 16_384)]
    pulled = 0
    largest = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled, largest
        largest = max([largest] + [p.stat().st_size for p in small.state.upload_dir.iterdir()])
        pulled += 1
        if pulled <= len(chunks):
            return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/classify", "raw_path": b"/api/classify", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", ctype.encode()), (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    anyio.run(small, scope, receive, send)
    assert sent[0]["status"] == 413
    assert pulled < len(chunks) / 5, "reading stopped soon after the limit"
    assert 0 < largest <= limit
    assert list(small.state.upload_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("noise.mp3", os.urandom(20_000)),
        ("notes.wav", b"These are my notes, not a song.\n" * 200),
        ("empty.flac", b""),
        ("broken.wav", b"RIFF" + os.urandom(300)),
    ],
)
def test_content_that_does_not_decode_is_422_with_a_clear_message(client, app, name, content):
    response = client.post("/api/classify", files={"file": (name, content)})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.startswith(f"{name}: could not be read as audio")
    assert str(app.state.upload_dir) not in detail and "upload-" not in detail
    # The reason is joined with a colon: its own brackets are never doubled by ours.
    assert "((" not in detail and "))" not in detail


def test_bad_requests_are_refused_clearly(client, songs):
    cases = [
        ({"params": {"model": "nope"}}, 422, "unknown model 'nope'"),
        ({"data": {"model": "nope"}}, 422, "unknown model 'nope'"),
        ({"params": {"top_k": "0"}}, 422, "top_k must be at least 1"),
        ({"params": {"top_k": "three"}}, 422, "top_k must be a whole number"),
        ({"data": {"top_k": "-2"}}, 422, "top_k must be at least 1"),
        ({"params": {"timeline": "maybe"}}, 422, "timeline must be true or false"),
        ({"data": {"spectrogram": "sure"}}, 422, "spectrogram must be true or false"),
    ]
    for kwargs, status, message in cases:
        response = post(client, songs["wav"], **kwargs)
        assert response.status_code == status, (kwargs, response.text)
        assert message in response.json()["detail"], (kwargs, response.text)
    assert "'trained', 'untrained'" in post(client, songs["wav"], params={"model": "x"}).json()["detail"]
    body, ctype = multipart(None, model="trained")  # a form without a file
    response = client.post("/api/classify", content=body, headers={"content-type": ctype})
    assert response.status_code == 422 and "no file" in response.json()["detail"]
    response = client.post("/api/classify", data={"model": "trained"})  # url-encoded: no room for a song
    assert response.status_code == 415
    response = client.post("/api/classify", json={"file": "song.mp3"})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["detail"]
    body, ctype = multipart("song.wav", b"RIFF")
    response = client.post("/api/classify", content=body[:-20], headers={"content-type": ctype})  # cut short
    assert response.status_code == 422
    response = client.post("/api/classify", files=[("file", ("a.wav", b"x")), ("file", ("b.wav", b"y"))])
    assert response.status_code == 422 and "one file" in response.json()["detail"]


def test_a_full_disk_is_507_and_the_partial_upload_is_removed(client, app, songs, monkeypatch):
    import errno

    def full(_fd, _data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    response = post(client, songs["wav"])
    assert response.status_code == 507 and "no room" in response.json()["detail"]


def test_a_failure_inside_the_model_is_a_500_and_the_upload_is_removed(model, songs, tmp_path, monkeypatch):
    broken = create_app({"m": model}, upload_dir=tmp_path)

    def boom(*_a, **_k):
        raise RuntimeError("kaboom at /secret/path")

    monkeypatch.setattr(predict, "predict_segments", boom)
    with TestClient(broken, raise_server_exceptions=False) as c:
        response = post(c, songs["wav"])
    assert response.status_code == 500
    assert response.json()["detail"] == "song.wav: classification failed on the server"
    assert list(broken.state.upload_dir.iterdir()) == []


@pytest.mark.parametrize(("error", "status"), [
    (DependencyError("ONNX Runtime is not installed at /srv/x.wav"), 503),
    (GenrifyIOError("cannot write the cache"), 507),
    (ParameterError("top_k is out of range"), 422),
])
def test_a_library_error_answers_the_status_of_its_kind(model, songs, tmp_path, monkeypatch, error, status):
    app = create_app({"m": model}, upload_dir=tmp_path)

    def fail(path, *_a, **_k):
        raise type(error)(f"{path}: {error}")  # quotes the server's file name, as library errors do

    monkeypatch.setattr(predict, "classify", fail)
    with TestClient(app, raise_server_exceptions=False) as c:
        response = post(c, songs["wav"])
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail.startswith("song.wav: song.wav: ") and str(tmp_path) not in detail
    assert list(app.state.upload_dir.iterdir()) == []


def test_a_model_with_nan_weights_is_a_json_422_never_a_plain_text_500(model, songs, tmp_path):
    broken = untrained_model(model.genres, seed=2)
    with torch.no_grad():
        for parameter in broken.network.parameters():
            parameter.fill_(float("nan"))
    app = create_app({"nan": broken}, upload_dir=tmp_path)
    with TestClient(app, raise_server_exceptions=False) as c:
        response = post(c, songs["wav"])
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"].startswith("song.wav: ")
    assert list(app.state.upload_dir.iterdir()) == []


def test_every_error_is_strict_json_even_an_unexpected_one(model, tmp_path, monkeypatch):
    import json

    # A training report with NaN accuracy is shown as null, not sent as NaN (invalid JSON).
    model_nan = untrained_model(model.genres)
    model_nan.info = {"summary": {"song_accuracy_mean": float("nan"), "song_accuracy_std": float("inf")}}
    app = create_app([ModelEntry.from_model("nan", model_nan)], upload_dir=tmp_path)
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/api/models")
        assert response.status_code == 200, response.text
        described = json.loads(response.text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
        assert described["models"][0]["song_accuracy"] is None
        # A failure the app did not foresee is still a JSON 500.
        async def receive(_self, _request):
            return 1 / 0

        monkeypatch.setattr(Upload, "receive", receive)
        body, ctype = multipart("song.wav", b"RIFF")
        response = c.post("/api/classify", content=body, headers={"content-type": ctype})
        assert response.status_code == 500
        assert response.json() == {"detail": "internal server error"}
    # Extra metadata holding a NaN is never sent as NaN either.
    odd = create_app([ModelEntry.from_model("odd", model, score=float("nan"))], upload_dir=tmp_path)
    with TestClient(odd, raise_server_exceptions=False) as c:
        response = c.get("/api/models")
        assert response.headers["content-type"].startswith("application/json")
        json.loads(response.text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


def test_a_5000_character_file_name_is_accepted_and_shortened(client, app, songs):
    for name in ("x" * 5000 + ".wav", "é" * 5000 + ".wav"):
        response = post(client, songs["wav"], name=name)
        assert response.status_code == 200, response.text[:300]
        shown = response.json()["path"]
        assert len(shown) <= 200 and shown.endswith(".wav")


def test_serve_no_builtin_without_model_files_is_refused_in_one_line(monkeypatch):
    from typer.testing import CliRunner

    import genrify.web
    from genrify import cli

    served: list[tuple] = []
    monkeypatch.setattr(genrify.web, "serve", lambda *a, **k: served.append((a, k)))
    result = CliRunner().invoke(cli.app, ["serve", "--no-builtin"])
    assert result.exit_code == 1, result.output
    assert served == []
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--no-builtin" in lines[0] and "model file" in lines[0]


def test_a_file_part_without_a_file_name_is_decoded_by_its_content(client, songs):
    # curl -F 'file=<song.wav' and some HTTP libraries send the song with no file name at all.
    boundary = "genrify-no-name"
    for disposition in ('form-data; name="file"', 'form-data; name="file"; filename=""'):
        body = (f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: audio/wav\r\n\r\n".encode()
                + songs["wav"].read_bytes() + f"\r\n--{boundary}--\r\n".encode())
        response = client.post("/api/classify", content=body,
                               headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert response.status_code == 200, (disposition, response.text[:300])
        assert response.json()["path"] == "upload"
    # Without a name and not audio: the usual one line, naming it as the answer does.
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode()
            + b"song.mp3" + f"\r\n--{boundary}--\r\n".encode())
    response = client.post("/api/classify", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 422 and response.json()["detail"].startswith("upload: could not be read as audio")


# --- who may talk to the server ---------------------------------------------------------------------


def test_the_host_policy_follows_the_address_listened_on():
    assert allowed_hosts_for("127.0.0.1") == allowed_hosts_for("localhost") == allowed_hosts_for("::1") == LOCAL_HOSTS
    assert allowed_hosts_for("127.0.0.2") == LOCAL_HOSTS | {"127.0.0.2"}
    assert allowed_hosts_for("0.0.0.0") is None and allowed_hosts_for("192.168.1.5") is None
    assert allowed_hosts_for("0.0.0.0", ["Music.Example.com:8443"]) == LOCAL_HOSTS | {"music.example.com"}
    assert allowed_hosts_for("127.0.0.1", ["*"]) is None
    with pytest.raises(UsageError, match="--allowed-host must be a host name"):
        allowed_hosts_for("127.0.0.1", ["http://x/"])
    assert host_name("[::1]:8000") == "::1" and host_name("LOCALHOST.:80") == "localhost"
    assert host_name("[0:0:0:0:0:0:0:1]:8000") == host_name("0:0::1") == "::1"
    assert host_name("") is None and host_name("a b") is None and host_name("x:port") is None


@pytest.mark.parametrize("bound", ["127.0.0.2", "127.0.1.1", "0:0:0:0:0:0:0:1", "::1", "localhost"])
def test_a_server_on_another_loopback_address_answers_to_the_address_it_prints(model, songs, tmp_path, bound):
    # genrify serve --host 127.0.0.2 prints http://127.0.0.2:PORT; its own URL must not get 400. An
    # IPv6 address is compared in its normal spelling: [0:0::1] is [::1].
    hosts = allowed_hosts_for(bound)
    assert hosts is not None and LOCAL_HOSTS <= hosts
    app = create_app({"m": model}, upload_dir=tmp_path, allowed_hosts=hosts)
    shown = f"[{bound}]" if ":" in bound else bound
    with TestClient(app, base_url=f"http://{shown}:8000") as c:
        for host in (f"{shown}:8000", shown.upper(), "127.0.0.1:8000", "[0:0::1]:8000", "localhost"):
            assert c.get("/api/health", headers={"host": host}).status_code == 200, host
        # The page itself posts with its own origin, in whatever spelling the browser gives it.
        response = c.post("/api/classify", files={"file": ("a.wav", songs["wav"].read_bytes())},
                          headers={"host": f"{shown}:8000", "origin": f"http://{shown}:8000"})
        assert response.status_code == 200, response.text
        assert c.get("/api/health", headers={"host": "evil.example:8000"}).status_code == 400
        # Another loopback port is another site, whatever the name.
        assert c.post("/api/classify", files={"file": ("a.wav", b"x")}, headers={
            "host": f"{shown}:8000", "origin": f"http://{shown}:9999"}).status_code == 403
    # Only the address listened on is added: a server on 127.0.0.2 does not answer to 127.0.0.3.
    assert "127.0.0.3" not in hosts
    # With --allowed-host too, the address listened on still reaches it.
    assert host_name(shown) in allowed_hosts_for(bound, ["music.example.com"])


def test_a_server_on_localhost_answers_only_to_its_own_names(model, songs, tmp_path):
    # DNS rebinding: a page at http://evil.example:8000 whose name now resolves to 127.0.0.1 sends
    # requests with that Host; they must not reach the app.
    app = create_app({"m": model}, upload_dir=tmp_path, allowed_hosts=allowed_hosts_for("127.0.0.1"))
    wav = songs["wav"].read_bytes()
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LocalHost"):
            assert c.get("/api/health", headers={"host": host}).status_code == 200, host
        for method, path in (("GET", "/api/models"), ("GET", "/"), ("POST", "/api/classify")):
            response = c.request(method, path, headers={"host": "evil.example:8000"}, files={"file": ("a.wav", wav)}
                                 if method == "POST" else None)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["detail"] == ("this server does not answer to the host 'evil.example:8000' "
                                                 "(genrify serve --allowed-host NAME lets it)")
            assert response.headers["x-content-type-options"] == "nosniff"
    assert list(app.state.upload_dir.iterdir()) == []


@pytest.mark.parametrize("bound", ["127.0.0.1", "0.0.0.0"])
def test_a_post_from_another_sites_page_is_refused(model, songs, tmp_path, bound):
    app = create_app({"m": model}, upload_dir=tmp_path, allowed_hosts=allowed_hosts_for(bound))
    wav = songs["wav"].read_bytes()
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        def post_from(origin: str | None) -> httpx.Response:
            headers = {} if origin is None else {"origin": origin}
            return c.post("/api/classify", files={"file": ("a.wav", wav)}, headers=headers)

        # The page itself, and clients that are not browsers (no Origin), are answered.
        assert post_from("http://127.0.0.1:8000").status_code == 200
        assert post_from(None).status_code == 200
        for origin in ("https://evil.example", "http://127.0.0.1:9999", "http://127.0.0.1", "null", "file://"):
            response = post_from(origin)
            assert response.status_code == 403, (origin, response.text)
            assert response.json()["detail"] == f"requests from another site's page are refused (origin {origin!r})"
        # Reading is not refused by origin: a page of another site cannot read the answer anyway.
        assert c.get("/api/health", headers={"origin": "https://evil.example"}).status_code == 200
    assert list(app.state.upload_dir.iterdir()) == []


def test_behind_a_proxy_the_allowed_name_is_the_pages_origin(model, songs, tmp_path):
    # A proxy that serves https://music.example.com and passes Host: 127.0.0.1:8000 on.
    app = create_app({"m": model}, upload_dir=tmp_path, allowed_hosts=allowed_hosts_for("127.0.0.1", ["music.example.com"]))
    wav = songs["wav"].read_bytes()
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        ok = c.post("/api/classify", files={"file": ("a.wav", wav)}, headers={"origin": "https://music.example.com"})
        assert ok.status_code == 200, ok.text
        assert c.get("/api/health", headers={"host": "music.example.com"}).status_code == 200
        assert c.get("/api/health", headers={"host": "other.example.com"}).status_code == 400


def test_serve_passes_allowed_hosts_and_the_per_client_limit(model_file, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    import genrify.web
    from genrify import cli

    apps: list = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: apps.append(self.config.app))
    threads = torch.get_num_threads()
    try:
        serve([model_file], port=0, workers=1, echo=lambda _line: None)
        serve([model_file], host="0.0.0.0", port=0, workers=1, echo=lambda _line: None)
        serve([model_file], port=0, workers=1, allowed_hosts=["music.example.com"], uploads_per_client=None,
              echo=lambda _line: None)
    finally:
        torch.set_num_threads(threads)
    assert apps[0].state.allowed_hosts == LOCAL_HOSTS and apps[0].state.uploads_per_client == 4
    assert apps[1].state.allowed_hosts is None
    assert apps[2].state.allowed_hosts == LOCAL_HOSTS | {"music.example.com"} and apps[2].state.uploads_per_client is None
    with pytest.raises(UsageError, match="--allowed-host"):
        serve([model_file], allowed_hosts=[""], echo=lambda _line: None)
    # The command line: --allowed-host is repeatable; --uploads-per-client 0 is no limit.
    served: list[dict] = []
    monkeypatch.setattr(genrify.web, "serve", lambda *a, **k: served.append(k))
    result = CliRunner().invoke(cli.app, ["serve", str(model_file), "--no-builtin", "--allowed-host", "a.example",
                                          "--allowed-host", "b.example", "--uploads-per-client", "0"])
    assert result.exit_code == 0, result.output
    assert served[-1]["allowed_hosts"] == ["a.example", "b.example"] and served[-1]["uploads_per_client"] is None
    result = CliRunner().invoke(cli.app, ["serve", str(model_file), "--no-builtin"])
    assert served[-1]["allowed_hosts"] == () and "uploads_per_client" not in served[-1]
    monkeypatch.setenv("COLUMNS", "400")
    help_text = " ".join(CliRunner().invoke(cli.app, ["serve", "--help"]).output.split())  # as one line
    assert "--allowed-host" in help_text and "rebound DNS name" in help_text and "--uploads-per-client" in help_text


# --- the other endpoints and the page -------------------------------------------------------------


def test_models_health_and_docs(client, model):
    models = client.get("/api/models").json()
    assert models["default"] == "trained" and models["max_upload_bytes"] == 100 * 2**20
    first, second = models["models"]
    assert first["name"] == "trained" and second["name"] == "untrained"
    assert first["genres"] == model.genres and first["architecture"] == "seed-cnn"
    assert first["song_accuracy"] == pytest.approx(model.info["summary"]["song_accuracy_mean"])
    assert second["song_accuracy"] is None
    assert first["features"] == model.params.to_dict() and first["description"] == "two epochs on synthetic songs"
    assert first["segment_seconds"] == pytest.approx(128 * 512 / 22050, abs=1e-3)
    # Every model has a card (genrify.models.modelcard): the trained one its test figures, the other says it has none.
    card = first["card"]
    assert card["kind"] == "trained" and card["what"].startswith("a seed-cnn network") and card["genres"] == model.genres
    assert card["headline"].endswith("test song accuracy") and card["figures"][0]["label"] == "test song accuracy"
    assert second["card"]["figures"] == [] and "no training report" in second["card"]["notes"][0]
    for m in models["models"]:
        assert "unknown" not in str(m["card"]) and "not recorded" not in str(m["card"])
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["models"] == 2 and health["busy"] == 0
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/classify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["file"]["format"] == "binary"


def test_the_page_and_its_files_are_served_with_no_external_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for element in ('id="file-input"', 'id="drop-zone"', 'id="bars"', 'id="timeline"', 'id="top-genre"',
                    'id="spectrogram"', 'id="model-select"', 'aria-live="polite"'):
        assert element in page.text
    for name in ("app.js", "style.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.headers["x-content-type-options"] == "nosniff"
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), f"{path.name} loads something external"
        assert not re.search(r"url\(\s*[\"']?(https?:)?//", text) and "@import" not in text and "fetch(\"http" not in text
    for sneaky in ("/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e/%2e%2e/predict.py"):
        assert client.get(sneaky).status_code == 404, sneaky


def test_spectrogram_columns_are_means_over_frames():
    from matplotlib import image

    from genrify.web.images import spectrogram_png

    features = np.repeat(np.linspace(-80, 0, 3000, dtype=np.float32)[None, :], 4, axis=0).astype(np.float16)
    png = spectrogram_png(features, max_width=100)
    pixels = image.imread(io.BytesIO(base64.b64decode(png.split(",", 1)[1])), format="png")
    assert pixels.shape[:2] == (4, 100)
    brightness = pixels[0, :, :3].sum(axis=1)
    assert np.all(np.diff(brightness) >= -1e-6)  # a rising ramp stays a rising ramp


def test_model_entries_from_files_and_mappings(model_file, model, other):
    entry = ModelEntry.from_file(model_file)
    assert entry.name == model_file.stem and entry.metadata["file"] == model_file.name
    assert entry.metadata["song_accuracy"] == pytest.approx(model.info["summary"]["song_accuracy_mean"])
    assert ModelEntry.from_file(model_file, "mine").name == "mine"
    with pytest.raises(ModelFileError):
        ModelEntry.from_file(model_file.with_name("missing.safetensors"))
    with pytest.raises(ParameterError, match="unique"):
        create_app([entry, entry])
    with pytest.raises(ParameterError, match="at least one"):
        create_app([])
    with pytest.raises(ParameterError, match="not a genre classifier"):
        ModelEntry("x", object())  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="name"):
        ModelEntry("", model)
    with pytest.raises(ParameterError, match="max_upload_bytes"):
        create_app({"a": model}, max_upload_bytes=0)
    app = create_app({"a": model, "b": other}, workers=1)
    with TestClient(app) as c:
        assert [m["name"] for m in c.get("/api/models").json()["models"]] == ["a", "b"]


# --- concurrency and responsiveness over real HTTP ---------------------------------------------------


def test_eight_parallel_requests_all_get_the_same_answer(app, songs):
    from concurrent.futures import ThreadPoolExecutor

    content = songs["mp3"].read_bytes()
    with running_server(app) as (url, _port), httpx.Client(base_url=url, timeout=60) as http:
        def one(i: int) -> dict:
            response = http.post("/api/classify", files={"file": (f"song{i}.mp3", content)}, params={"timeline": "true"})
            assert response.status_code == 200, response.text
            return response.json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
        assert [a["path"] for a in answers] == [f"song{i}.mp3" for i in range(8)]
        first = without(answers[0], "path")
        for a in answers[1:]:
            assert without(a, "path") == first
        # Over HTTP a too-large upload is refused from its Content-Length, before it is sent.
        small = create_app({"m": app.state.models["trained"].model}, max_upload_bytes=10_000)
        with running_server(small) as (small_url, _port):
            response = httpx.post(f"{small_url}/api/classify", files={"file": ("big.mp3", content)}, timeout=30)
            assert response.status_code == 413
    assert list(app.state.upload_dir.iterdir()) == []


@dataclass
class _BlockedModel:
    """A classifier whose forward pass waits until the test lets it go (releasing the GIL, as torch does)."""

    network: torch.nn.Module
    genres: list[str]
    params: FeatureParams
    chunk_frames: int = 128


class _BlockedNet(torch.nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.go = threading.Event()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.go.wait(60)
        return torch.zeros(x.shape[0], self.n)


def test_the_server_answers_while_songs_are_classified_and_sheds_load_beyond_its_queue(songs, tmp_path):
    net = _BlockedNet(3)
    app = create_app([ModelEntry.from_model("blocked", _BlockedModel(net, ["a", "b", "c"], FeatureParams()))],
                     workers=1, max_pending=2, upload_dir=tmp_path)
    content = songs["wav"].read_bytes()
    with running_server(app) as (url, _port):
        results: list[int] = []

        def classify() -> None:
            results.append(httpx.post(f"{url}/api/classify", files={"file": ("s.wav", content)}, timeout=60).status_code)

        threads = [threading.Thread(target=classify) for _ in range(2)]
        try:
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            health = httpx.get(f"{url}/api/health", timeout=10).json()
            while (health["busy"], health["waiting"]) != (1, 1):  # one song in the model, one waiting its turn
                assert time.monotonic() < deadline, health
                time.sleep(0.02)
                health = httpx.get(f"{url}/api/health", timeout=10).json()
            # The model is stuck until released, yet the server answers: inference is off the event loop.
            assert httpx.get(f"{url}/", timeout=10).status_code == 200
            busy = httpx.post(f"{url}/api/classify", files={"file": ("s.wav", content)}, timeout=10)
            assert busy.status_code == 503 and busy.headers["retry-after"]
            assert "busy" in busy.json()["detail"]
        finally:
            net.go.set()
            for t in threads:
                t.join()
    assert results == [200, 200]
    assert list(app.state.upload_dir.iterdir()) == []


# --- serve ---------------------------------------------------------------------------------------


def test_serve_prints_one_line_and_runs_uvicorn(model_file, monkeypatch):
    import uvicorn

    ran: list[uvicorn.Config] = []
    protos: list[int] = []

    def run(self, sockets=None):
        ran.append(self.config)
        protos.extend(s.proto for s in sockets)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    lines: list[str] = []
    threads = torch.get_num_threads()
    try:
        serve([model_file, model_file], port=0, max_upload_mb=5, workers=1, echo=lines.append)
    finally:
        torch.set_num_threads(threads)
    assert len(lines) == 1 and re.fullmatch(r"genrify: serving 2 models on http://127\.0\.0\.1:\d+ \(Ctrl-C to stop\)", lines[0])
    app = ran[0].app
    assert protos == [socket.IPPROTO_TCP]  # so asyncio sets TCP_NODELAY: no 40 ms delayed-ACK stalls
    assert list(app.state.models) == [model_file.stem, f"{model_file.stem}-2"] and app.state.max_upload_bytes == 5 * 2**20
    with pytest.raises(ParameterError, match="no model"):
        serve([], echo=lines.append)
    with pytest.raises(UsageError, match="port must be 0 to 65535"):  # a bad option: genrify serve exits 2
        serve([model_file], port=70000, echo=lines.append)
    with pytest.raises(ModelFileError):
        serve([model_file.with_name("nothing.safetensors")], echo=lines.append)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(GenrifyIOError, match="cannot listen"):
            serve([model_file], port=taken.getsockname()[1], echo=lines.append)
    finally:
        taken.close()
        torch.set_num_threads(threads)


def test_spectrogram_of_log10p_features_uses_their_whole_range():
    """musicnn's compression spans about 0..5, not 80 dB: drawn as dB it would be one flat colour."""
    import base64
    import io

    from matplotlib import image as mpimg

    from genrify.web.images import spectrogram_png

    features = np.linspace(0.0, 4.0, 96 * 50, dtype=np.float32).reshape(96, 50)
    def contrast(scale: str) -> float:
        url = spectrogram_png(features, scale=scale)
        return float(mpimg.imread(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))[..., :3].std())

    assert contrast("log10p") > 2 * contrast("db")


# --- samples: the example recordings -----------------------------------------------------------


def test_the_example_recordings_are_listed_served_and_nothing_else(client):
    from genrify.web.samples import EXAMPLES_DIR, SAMPLES

    listed = client.get("/api/samples").json()["samples"]
    assert [s["name"] for s in listed] == [s.file for s in SAMPLES]  # they travel with the package
    for s in listed:
        assert s["title"] and s["artist"] and s["licence"] in ("CC BY 3.0", "Public Domain")
        answer = client.get(s["url"])
        assert answer.status_code == 200 and answer.headers["content-type"] == "audio/ogg"
        assert answer.content == (EXAMPLES_DIR / s["name"]).read_bytes() and answer.content[:4] == b"OggS"
    # Only the listed names: other files of the folder, other folders, made-up names.
    for name in ("README.md", "..%2F..%2F__init__.py", "%2e%2e", "nothing.ogg", "vibe-ace.OGG"):
        answer = client.get(f"/api/samples/{name}")
        # (a name with a slash in it matches no route at all: 404 all the same)
        assert answer.status_code == 404 and (answer.json()["detail"].startswith("no sample named") or answer.json()["detail"] == "Not Found")
    assert client.post("/api/samples/vibe-ace.ogg").status_code == 405


def test_a_sample_classifies_through_the_same_api_as_an_upload(client, model):
    audio = client.get("/api/samples/vibe-ace.ogg").content
    response = client.post("/api/classify?timeline=true", files={"file": ("vibe-ace.ogg", audio)})
    assert response.status_code == 200
    data = response.json()
    assert data["path"] == "vibe-ace.ogg" and data["model"] == "trained" and data["genre"] in model.genres


def test_the_samples_missing_from_an_install_are_not_offered(client, monkeypatch, tmp_path):
    from genrify.web import samples

    monkeypatch.setattr(samples, "EXAMPLES_DIR", tmp_path)
    assert client.get("/api/samples").json() == {"samples": []}
    assert client.get("/api/samples/vibe-ace.ogg").status_code == 404


def test_the_repositorys_examples_folder_is_the_packages():
    # One copy of the audio: the repository's examples/ (for `genrify classify examples`) links to the package's.
    from genrify.web.samples import EXAMPLES_DIR

    link = Path(__file__).resolve().parents[1] / "examples"
    assert link.resolve() == EXAMPLES_DIR.resolve() and sorted(p.name for p in link.glob("*.ogg")) == sorted(
        p.name for p in EXAMPLES_DIR.glob("*.ogg"))


def test_the_spectrogram_colours_are_matplotlibs():
    """The page draws without matplotlib (the core install has none), in the colours its imsave gives."""
    from matplotlib import image

    from genrify.web.images import spectrogram_png

    rng = np.random.default_rng(0)
    features = (rng.standard_normal((96, 300)) * 20 - 30).astype(np.float32)
    ours = image.imread(io.BytesIO(base64.b64decode(spectrogram_png(features).split(",", 1)[1])), format="png")
    buffer = io.BytesIO()
    peak = float(features.max())
    image.imsave(buffer, features, cmap="magma", vmin=peak - 80.0, vmax=peak, origin="lower", format="png")
    theirs = image.imread(io.BytesIO(buffer.getvalue()), format="png")[..., :3]
    assert ours.shape == theirs.shape == (96, 300, 3)
    # The same colour wherever the value is not on a colour's edge (matplotlib rounds in float32).
    differ = np.abs(ours - theirs).max(axis=2) > 1e-6
    assert differ.mean() < 0.01
    assert np.abs(ours - theirs).max() < 0.05  # and then the neighbouring colour


def test_a_song_over_the_servers_length_limit_is_said_to_be_too_long(model, songs, tmp_path):
    short = create_app({"m": model}, max_duration=5.0, upload_dir=tmp_path)
    with TestClient(short) as c:
        response = post(c, songs["wav"])  # 8 s
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("song.wav: too long for this server: ") and "5 s" in detail, detail
    assert "could not be read" not in detail and "--max-duration" not in detail  # fine audio; not a CLI


def test_a_model_is_also_found_by_its_cards_name(client, app, songs):
    cards = {name: entry.metadata["card"]["name"] for name, entry in app.state.models.items()}
    assert cards["untrained"] != "untrained" and list(cards.values()).count(cards["untrained"]) == 1, cards
    response = post(client, songs["wav"], data={"model": cards["untrained"]})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "untrained"
    assert post(client, songs["wav"], data={"model": "no-such-model"}).status_code == 422


def test_a_card_name_two_models_share_names_neither(model, songs, tmp_path):
    twins = create_app({"a": model, "b": model}, upload_dir=tmp_path)
    card = twins.state.models["a"].metadata["card"]["name"]
    with TestClient(twins) as c:
        response = post(c, songs["wav"], data={"model": card})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"2 models are called {card!r}"), response.text


def test_the_built_in_model_says_its_architecture_in_the_model_list():
    from genrify.models.builtin import load_builtin
    from genrify.web.catalogue import describe

    facts = describe(load_builtin())
    assert facts["architecture"] == "genrify-musicnn" and facts["card"]["kind"] == "built-in"


def test_a_cancellation_that_is_not_the_server_stopping_goes_on_and_leaves_no_upload(model, tmp_path):
    """An outer deadline (a host app's, a middleware's) cancels the request: the upload's file goes,
    and the cancellation is not turned into a "server is stopping" answer."""
    import asyncio

    app = create_app({"m": model}, upload_dir=tmp_path, uploads_per_client=None)
    boundary = "b0undary"
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n").encode() + b"RIFF" * 100
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/classify", "raw_path": b"/api/classify", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    sent: list[dict] = []
    bodies = iter([{"type": "http.request", "body": part, "more_body": True}])

    async def receive():
        message = next(bodies, None)
        if message is None:
            await asyncio.sleep(3600)  # the client stalls
        return message

    async def send(message):
        sent.append(message)

    async def outer_deadline():
        await asyncio.wait_for(app(scope, receive, send), 0.5)

    with pytest.raises((TimeoutError, asyncio.TimeoutError)):
        asyncio.run(outer_deadline())
    assert not any(m.get("status") == 503 for m in sent)
    assert list(app.state.upload_dir.iterdir()) == []
