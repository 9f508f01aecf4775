"""The web server over real sockets: stalled and trickling clients, and stopping on signals."""

from __future__ import annotations

import io
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from helpers import running_server, tone, untrained_model

from genrify.models import modelfile
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




def stalled_upload(port: int, content_length: int = 50_000_000, source: str | None = None,
                   extra_headers: str = "") -> socket.socket:
    """A client that sends the headers of a large upload and the start of its file, then stops
    (from the loopback address ``source``: 127.0.0.2 and so on are other clients to the server;
    ``extra_headers``: more header lines, each ending in CRLF)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0) if source else None)
    head = (f"POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}"
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
        # From five addresses: each client may send four uploads at once.
        stalled = [stalled_upload(port, source=f"127.0.0.{2 + i % 5}") for i in range(20)]
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


class ReconnectingStallers:
    """Clients that start large uploads and stall, each reconnecting at once when it is dropped or
    refused (the way a broken or hostile client keeps its places), from several loopback addresses.

    Runs in one thread over a selector until :meth:`stop`; ``statuses`` counts the answers.
    """

    def __init__(self, port: int, sources: list[str], per_source: int, pause: float = 0.2) -> None:
        self.port, self.pause = port, pause
        self.slots = [src for src in sources for _ in range(per_source)]
        self.statuses: Counter[int] = Counter()
        self.slowest_refusal = 0.0  # seconds from connecting to a 429
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReconnectingStallers:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(20)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        due = {i: 0.0 for i in range(len(self.slots))}  # slot -> when to (re)connect
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                for i, when in list(due.items()):
                    if when <= now:
                        del due[i]
                        try:
                            s = stalled_upload(self.port, source=self.slots[i])
                        except OSError:  # refused or reset while connecting: try again shortly
                            self.statuses[-1] += 1
                            due[i] = now + self.pause
                            continue
                        s.setblocking(False)
                        selector.register(s, selectors.EVENT_READ, (i, now, bytearray()))
                for key, _ in selector.select(timeout=0.05):
                    i, opened, answer = key.data
                    try:
                        chunk = key.fileobj.recv(65536)
                    except (ConnectionResetError, BlockingIOError):
                        chunk = b""
                    answer += chunk
                    if chunk:
                        continue
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                    status = int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else 0
                    self.statuses[status] += 1
                    if status == 429:
                        self.slowest_refusal = max(self.slowest_refusal, time.monotonic() - opened)
                    due[i] = time.monotonic() + self.pause
        finally:
            for key in list(selector.get_map().values()):
                key.fileobj.close()
            selector.close()


def test_reconnecting_stalled_clients_get_only_their_share_and_real_uploads_succeed(model, wav, tmp_path):
    # 40 stalled clients from 5 addresses (8 each), reconnecting whenever they are dropped: more
    # than the server's 32 upload places, so without a per-client share they would hold them all.
    app = create_app({"m": model}, workers=1, request_timeout=3.0, upload_dir=tmp_path)
    assert app.state.max_uploads == 32 and app.state.uploads_per_client == 4
    sources = [f"127.0.0.{n}" for n in range(2, 7)]
    with running_server(app) as (url, port), ReconnectingStallers(port, sources, per_source=8) as stallers:
        wait_for(url, "uploading", 20)
        answers = []
        peak = 0
        deadline = time.monotonic() + 8  # several rounds of the 3 s timeout: places are fought over
        while time.monotonic() < deadline:
            response = httpx.post(f"{url}/api/classify", files={"file": ("ok.wav", wav)}, timeout=30)
            answers.append((response.status_code, response.text[:200]))
            peak = max(peak, httpx.get(f"{url}/api/health", timeout=10).json()["uploading"])
            time.sleep(0.2)
        stallers.stop()
        # Every real upload was served; the stallers never held more than their share.
        assert len(answers) >= 3 and all(status == 200 for status, _ in answers), answers
        assert peak <= 4 * len(sources)
        # Those over their share were told so before any stall could be timed out (a refusal is not
        # a dropped stall); the rest were dropped.
        assert stallers.statuses[429] > 0 and stallers.slowest_refusal < app.state.request_timeout, (stallers.statuses, stallers.slowest_refusal)
        assert stallers.statuses[408] >= 20, stallers.statuses
        assert set(stallers.statuses) <= {429, 408, 0, -1}, stallers.statuses
        wait_for(url, "uploading", 0)
    assert list(app.state.upload_dir.iterdir()) == []


def test_the_429_says_why_in_one_json_line(model, tmp_path):
    app = create_app({"m": model}, request_timeout=5.0, uploads_per_client=2, upload_dir=tmp_path)
    with running_server(app) as (url, port):
        stalled = [stalled_upload(port) for _ in range(2)]
        try:
            wait_for(url, "uploading", 2)
            third = stalled_upload(port)
            answer = read_to_end(third)
            third.close()
            assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
            assert b"retry-after: 1" in answer.lower()
            assert answer.endswith(b'{"detail":"this client is already sending 2 uploads; send the next when one has arrived"}')
            # Another address is not held back by this one's share.
            other = stalled_upload(port, source="127.0.0.2")
            wait_for(url, "uploading", 3)
            other.close()
        finally:
            for s in stalled:
                s.close()
        wait_for(url, "uploading", 0)


def test_a_forwarded_for_header_does_not_make_a_client_someone_else(model, tmp_path):
    # uvicorn by default believes X-Forwarded-For from 127.0.0.1: a local client naming a new
    # address on each upload would never reach its share. The address is the connection's.
    from genrify.web import make_server

    app = create_app({"m": model}, request_timeout=5.0, uploads_per_client=2, upload_dir=tmp_path)
    assert make_server(app).config.proxy_headers is False
    with running_server(app) as (url, port):
        stalled = [stalled_upload(port, extra_headers=f"X-Forwarded-For: 10.0.0.{n}\r\n") for n in (1, 2)]
        try:
            wait_for(url, "uploading", 2)
            third = stalled_upload(port, extra_headers="X-Forwarded-For: 10.0.0.3\r\nX-Real-IP: 10.0.0.3\r\n")
            answer = read_to_end(third)
            third.close()
            assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
        finally:
            for s in stalled:
                s.close()
        wait_for(url, "uploading", 0)


# --- stopping ------------------------------------------------------------------------------------


def _left_in(temp: Path) -> list[Path]:
    """What a server left in its temporary folder (ONNX Runtime's telemetry is off: its ``.ses``
    session file counts too)."""
    return list(Path(temp).iterdir())


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
    assert _left_in(temp) == [], "the directory's marker was left behind"
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM


def start_server(model_path, temp) -> tuple[subprocess.Popen, int]:
    """``serve`` in a process of its own with its temporary files in ``temp``; returns it and its port."""
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(model_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    if "genrify: serving" not in line:
        proc.kill()
        rest = proc.communicate()[0]
        pytest.fail(f"the server did not start: {(line + rest).strip().splitlines()[-1:]}")
    return proc, int(line.split("http://127.0.0.1:")[1].split()[0])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_server_killed_mid_upload_leaves_nothing_past_the_next_start(model, tmp_path):
    path = modelfile.save(model, tmp_path / "m.safetensors")
    temp = tmp_path / "tmp"
    temp.mkdir()
    procs: list[subprocess.Popen] = []
    stalled: list[socket.socket] = []
    try:
        killed, port = start_server(path, temp)
        procs.append(killed)
        [dead_dir] = temp.glob("genrify-web-*")
        stalled.append(stalled_upload(port))
        deadline = time.monotonic() + 20
        while not list(dead_dir.iterdir()):  # the partial upload is on disk
            assert time.monotonic() < deadline, "the upload never reached the disk"
            time.sleep(0.05)
        # A live server beside it (this process), with an upload of its own in progress.
        live = create_app({"m": model}, request_timeout=30.0, upload_dir=temp)
        assert dead_dir.exists(), "a live server's directory was removed"
        with running_server(live) as (url, live_port):
            stalled.append(stalled_upload(live_port))
            wait_for(url, "uploading", 1)
            killed.kill()  # kill -9: no clean-up runs
            killed.wait()
            assert [p.name for p in dead_dir.iterdir()][0].startswith("upload-"), "nothing was left to clean up"
            restarted, _port = start_server(path, temp)
            procs.append(restarted)
            assert not dead_dir.exists(), "the killed server's partial upload outlived the next start"
            # The live server's directory, its partial upload and its marker are untouched.
            assert len(list(live.state.upload_dir.iterdir())) == 1
            assert len(list(temp.glob("genrify-web-*"))) == 2
            assert len([p for p in temp.iterdir() if p.name.endswith(".genrify-tmp")]) == 2
            for s in stalled:
                s.close()
            wait_for(url, "uploading", 0)
        live.state.close()
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(30)
    finally:
        for s in stalled:
            s.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
    assert _left_in(temp) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_upload_cut_short_by_the_server_stopping_is_told_so_in_json(model, tmp_path):
    path = modelfile.save(model, tmp_path / "m.safetensors")
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc, port = start_server(path, temp)
    client = stalled_upload(port)
    try:
        deadline = time.monotonic() + 20
        while not any(any(d.iterdir()) for d in temp.glob("genrify-web-*")):  # the upload is under way
            assert time.monotonic() < deadline, "the upload never reached the disk"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # its grace period (5 s) runs out while the client stalls
        answer = b""
        try:
            while chunk := client.recv(65536):
                answer += chunk
        except ConnectionResetError:  # the server may close before reading what the client sent
            pass
        proc.wait(60)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    proc.stdout.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), (answer[:300], log)
    assert "stopping" in json.loads(body)["detail"]
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    assert list(temp.glob("genrify-web-*")) == []
