"""The web server over real sockets: stalled and trickling clients, and stopping on signals."""

from __future__ import annotations

import io
import os
import select
import signal
import socket
import subprocess
import sys
import time

import pytest
import soundfile as sf

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from helpers import running_server, tone, untrained_model

from genrify import modelfile
from genrify.web import create_app

BOUNDARY = "genrify-stall-boundary"


@pytest.fixture(scope="module")
def model() -> modelfile.GenreModel:
    return untrained_model(["blues", "metal", "pop"])


@pytest.fixture(scope="module")
def wav() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(3.0), 22050, format="WAV")
    return buffer.getvalue()




def stalled_upload(port: int, content_length: int = 50_000_000) -> socket.socket:
    """A client that sends the headers of a large upload and the start of its file, then stops."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {content_length}\r\n\r\n")
    part = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="song.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n")
    s.sendall(head.encode() + part.encode() + b"RIFF" + b"\0" * 4000)
    return s


def read_to_end(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout fails the test)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def wait_for(url: str, key: str, value: int, seconds: float = 20) -> dict:
    deadline = time.monotonic() + seconds
    health = httpx.get(f"{url}/api/health", timeout=10).json()
    while health[key] != value:
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
        health = httpx.get(f"{url}/api/health", timeout=10).json()
    return health


def test_stalled_uploads_hold_no_place_and_are_dropped_with_their_files(model, wav, tmp_path):
    # More stalled clients than the inference queue has places (16 for two workers).
    app = create_app({"m": model}, workers=2, request_timeout=3.0, upload_dir=tmp_path)
    with running_server(app) as (url, port):
        stalled = [stalled_upload(port) for _ in range(20)]
        try:
            wait_for(url, "uploading", 20)
            assert len(list(app.state.upload_dir.iterdir())) == 20  # each has its partial file
            # While they stall, a normal client is answered, not turned away with 503.
            response = httpx.post(f"{url}/api/classify", files={"file": ("ok.wav", wav)}, timeout=60)
            assert response.status_code == 200, response.text
            assert response.json()["model"] == "m"
            # Each stalled client is dropped after the timeout, told why in one JSON line.
            for s in stalled:
                answer = read_to_end(s)
                assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
                assert b'"detail":"the upload stalled: nothing arrived for 3 s"' in answer
        finally:
            for s in stalled:
                s.close()
        assert wait_for(url, "uploading", 0)["waiting"] == 0
    assert list(app.state.upload_dir.iterdir()) == []


def test_connections_without_complete_headers_are_closed_after_the_timeout(model, tmp_path):
    app = create_app({"m": model}, request_timeout=1.0, upload_dir=tmp_path)
    with running_server(app) as (url, port):
        silent = socket.create_connection(("127.0.0.1", port), timeout=15)
        partial = socket.create_connection(("127.0.0.1", port), timeout=15)
        partial.sendall(b"POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # Trickling header bytes does not keep a connection open (uvicorn's keep-alive timer would
        # be reset by each byte; the header deadline is not).
        started = time.monotonic()
        for _ in range(4):
            time.sleep(0.4)
            try:
                partial.sendall(b"X")
            except OSError:
                break
        try:
            assert read_to_end(silent) == b""
            assert read_to_end(partial) == b""
            assert time.monotonic() - started < 10
            # A keep-alive connection that starts a second request and stalls is closed too.
            kept = socket.create_connection(("127.0.0.1", port), timeout=15)
            kept.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = kept.recv(65536)
            while not first.endswith(b"}"):  # the JSON body may come in a second segment
                first += kept.recv(65536)
            assert first.startswith(b"HTTP/1.1 200")
            kept.sendall(b"GET /api/health HTTP/1.1\r\n")
            assert read_to_end(kept) == b""
            kept.close()
        finally:
            silent.close()
            partial.close()
        # The server still answers.
        assert httpx.get(f"{url}/api/health", timeout=10).status_code == 200


def test_a_trickling_upload_is_dropped_below_the_minimum_rate(model, tmp_path):
    app = create_app({"m": model}, request_timeout=1.0, min_upload_rate=10_000, upload_dir=tmp_path)
    with running_server(app) as (_url, port):
        s = stalled_upload(port)
        try:
            for _ in range(40):  # one byte every 0.1 s: never silent for 1 s, but far below 10 KB/s
                time.sleep(0.1)
                try:
                    s.sendall(b"\0")
                except OSError:
                    break
            answer = read_to_end(s)
        finally:
            s.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"the upload is too slow" in answer
    assert list(app.state.upload_dir.iterdir()) == []


def test_beyond_the_upload_limit_the_answer_is_a_json_503(model, wav, tmp_path):
    app = create_app({"m": model}, request_timeout=5.0, max_uploads=2, upload_dir=tmp_path)
    with running_server(app) as (url, port):
        stalled = [stalled_upload(port) for _ in range(2)]
        try:
            wait_for(url, "uploading", 2)
            busy = httpx.post(f"{url}/api/classify", files={"file": ("ok.wav", wav)}, timeout=30)
            assert busy.status_code == 503 and busy.headers["retry-after"]
            assert "busy" in busy.json()["detail"]
        finally:
            for s in stalled:
                s.close()
        wait_for(url, "uploading", 0)
    assert list(app.state.upload_dir.iterdir()) == []


# --- stopping ------------------------------------------------------------------------------------


_SERVE = "import sys; from genrify.web import serve; serve([sys.argv[1]], port=0, workers=1)"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", signal.SIGTERM)],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_the_upload_directory_is_removed_however_the_server_is_stopped(model, tmp_path, sig):
    path = modelfile.save(model, tmp_path / "m.safetensors")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        # The line is printed once the app (and its upload directory) exist.
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ""
        assert "genrify: serving 1 model on http://127.0.0.1:" in line, line
        assert len(list(temp.glob("genrify-web-*"))) == 1
        proc.send_signal(sig)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert list(temp.glob("genrify-web-*")) == [], "the server's upload directory was left behind"
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
