"""The core install: classification, tags, the web page and the beets plugin run where PyTorch is not
installed, and give the answers of a process that has it.

Each check runs in a subprocess where importing torch fails: a ``sitecustomize`` on ``PYTHONPATH``
puts ``None`` in ``sys.modules`` for the blocked packages (what Python does for a package that is not
there, as far as an ``import`` is concerned), in the process and in every worker it starts, and
writes at exit which of them got loaded all the same. The answers are compared with this process,
which has torch (genre equal, probabilities within 1e-4). ``.ci/run`` also installs the core alone
into a fresh virtual environment and classifies ``examples/`` there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrify.core.extras import install_command

SITECUSTOMIZE = textwrap.dedent('''
    import atexit, json, os, sys
    _BLOCKED = [m for m in os.environ["GENRIFY_BLOCK"].split(",") if m]
    for _name in _BLOCKED:
        sys.modules[_name] = None  # `import torch` now raises ImportError, as where it is not installed

    def _report():
        loaded = sorted(m for m in list(sys.modules) if m.split(".")[0] in _BLOCKED and sys.modules[m] is not None)
        report = os.environ.get("GENRIFY_BLOCK_REPORT")
        if report:
            with open(report, "a") as fh:
                fh.write(json.dumps({"pid": os.getpid(), "loaded": loaded}) + "\\n")

    atexit.register(_report)
''')

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("blocker")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A small synthetic song, made here (the synthesiser needs scipy, which the core lacks)."""
    from genrify.audio.synth import synthesize_song

    path = tmp_path_factory.mktemp("light-songs") / "song.wav"
    sf.write(path, synthesize_song("jazz", 7.0, seed=5, sample_rate=22050), 22050)
    return path


def run_blocked(blocker: Path, tmp_path: Path, args: list[str], *, block: str = "torch", ok: bool = True,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (a command line) where importing the ``block`` packages fails; check that none of
    them got loaded in any of its processes."""
    report = tmp_path / "loaded.jsonl"
    report.unlink(missing_ok=True)
    env = {**os.environ, "GENRIFY_BLOCK": block, "GENRIFY_BLOCK_REPORT": str(report),
           "PYTHONPATH": os.pathsep.join([str(blocker), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "200", **(env or {})}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if ok:
        assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    reports = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    assert reports, "the blocker did not run (sitecustomize not picked up)"
    assert all(r["loaded"] == [] for r in reports), reports
    return done


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from genrify.cli import main; sys.argv[0] = 'genrify'; main()", *args]


def assert_same(got: dict, expected: dict) -> None:
    assert got["genre"] == expected["genre"]
    assert got["probabilities"].keys() == expected["probabilities"].keys()
    for genre, p in expected["probabilities"].items():
        assert got["probabilities"][genre] == pytest.approx(p, abs=TOLERANCE), genre


@pytest.fixture(scope="module")
def reference(clip) -> dict:
    """The built-in model's answer in this process, with torch: through its torch network."""
    import torch

    from genrify.classify import predict
    from genrify.classify.modelref import ModelRef
    from genrify.defaults import DEFAULT_MAX_SEGMENTS

    model = ModelRef.builtin().load()
    song = predict.song_segments(clip, model.params, model.chunk_frames, max_segments=DEFAULT_MAX_SEGMENTS)
    on_torch = predict.predict_segments(song, model, device=torch.device("cpu"), path=str(clip)).to_dict()
    in_numpy = predict.predict_segments(song, model, path=str(clip)).to_dict()
    assert_same(in_numpy, on_torch)
    return on_torch


def test_classify_and_write_tags_without_torch(blocker, clip, reference, tmp_path):
    done = run_blocked(blocker, tmp_path, cli("classify", str(clip), "--no-cache", "-f", "json"))
    (got,) = json.loads(done.stdout)
    assert_same(got, reference)
    copy = tmp_path / "copy.flac"
    data, rate = sf.read(clip)
    sf.write(copy, data, rate)
    run_blocked(blocker, tmp_path, cli("classify", str(copy), "--no-cache", "--write-tags", "--tag-unsure"))
    import mutagen

    # As the default genre map spells it ("Jazz").
    assert [g.casefold() for g in mutagen.File(copy).tags.get("genre", [])] == [reference["genre"]]


def test_tags_without_torch(blocker, clip, tmp_path):
    from genrify.classify.musicnn_tags import tag_song
    from genrify.models.musicnn import load_tagger

    done = run_blocked(blocker, tmp_path, cli("tags", str(clip), "-f", "json", "--top", "50"))
    (got,) = json.loads(done.stdout)
    names = ("MSD_musicnn", "MTT_musicnn")
    tagged, _ = tag_song([load_tagger(n) for n in names], clip)
    for name in names:
        expected = dict(tagged[name].top(50))
        assert got[name].keys() == expected.keys()
        assert all(got[name][t] == pytest.approx(p, abs=TOLERANCE) for t, p in expected.items())


def test_the_web_page_classifies_without_torch(blocker, clip, reference, tmp_path):
    code = textwrap.dedent(f'''
        import json, sys
        from fastapi.testclient import TestClient
        from genrify.web import ModelEntry, create_app
        app = create_app([ModelEntry.builtin()], upload_dir={str(tmp_path)!r}, uploads_per_client=None)
        with TestClient(app) as client, open({str(clip)!r}, "rb") as fh:
            answer = client.post("/api/classify", files={{"file": ("song.wav", fh, "audio/wav")}},
                                 params={{"spectrogram": "true"}})
        assert answer.status_code == 200, answer.text
        print(json.dumps(answer.json()))
    ''')
    done = run_blocked(blocker, tmp_path, [sys.executable, "-c", code])
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert_same(got, reference)
    assert got["spectrogram_png"].startswith("data:image/png;base64,")


def test_the_beets_plugin_classifies_without_torch(blocker, clip, reference, tmp_path):
    pytest.importorskip("beets", reason="beets is not installed (pip install genrify[beets])")
    beet = Path(sys.executable).parent / "beet"
    if not beet.exists():
        pytest.skip(f"no beet command at {beet}")
    music = tmp_path / "music"
    music.mkdir()
    shutil.copy(clip, music / "song.wav")
    beetsdir = tmp_path / "beetsdir"
    beetsdir.mkdir()
    config = {"directory": str(tmp_path / "collection"), "library": str(beetsdir / "library.db"),
              "plugins": ["genrify"], "import": {"write": True, "copy": False, "move": False, "autotag": False,
                                                  "resume": False, "incremental": False},
              "genrify": {"jobs": 1, "skip_unsure": False}}
    (beetsdir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    env = {"BEETSDIR": str(beetsdir)}
    run_blocked(blocker, tmp_path, [str(beet), "import", "-A", "-q", str(music)], env=env)
    run_blocked(blocker, tmp_path, [str(beet), "genrify"], env=env)
    from beets.library import Library

    lib = Library(str(beetsdir / "library.db"))
    try:
        (item,) = list(lib.items())
        genres, confidence = list(item.get("genres") or []), item.get("genrify_confidence")
    finally:
        lib._close()
    assert [g.casefold() for g in genres] == [reference["genre"]]  # as the genre map spells it
    # beets keeps the confidence to two decimals.
    assert float(confidence) == pytest.approx(max(reference["probabilities"].values()), abs=0.005 + TOLERANCE)


def test_learn_and_suggest_say_which_extra_without_scikit_learn(blocker, clip, tmp_path):
    for args in (["learn", str(clip.parent), "--out", str(tmp_path / "mine.safetensors")],
                 ["learn", str(clip.parent), "--out", str(tmp_path / "mine.safetensors"), "--suggest", "3"]):
        done = run_blocked(blocker, tmp_path, cli(*args), block="torch,sklearn", ok=False)
        assert done.returncode == 1, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and install_command("learn") in lines[0], done.stderr
    assert not (tmp_path / "mine.safetensors").exists()


def test_synth_says_which_extra_without_scipy(blocker, tmp_path):
    done = run_blocked(blocker, tmp_path, cli("synth", str(tmp_path / "music"), "--per-genre", "1"),
                       block="torch,scipy", ok=False)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and install_command("train") in lines[0], done.stderr
    assert not (tmp_path / "music").exists()


def test_classify_with_a_learned_head_without_torch(blocker, clip, tmp_path):
    """A head file that `genrify learn` writes is classified with in the core: its maths is numpy."""
    from genrify.classify import predict
    from genrify.classify.modelref import ModelRef
    from genrify.models.builtin import GenreHead

    head = GenreHead.load()  # the packaged head is such a file
    path = tmp_path / "mine.safetensors"
    head.save(path)
    done = run_blocked(blocker, tmp_path, cli("classify", str(clip), "--no-cache", "-f", "json", "--model", str(path)))
    (got,) = json.loads(done.stdout)
    expected = predict.classify(clip, ModelRef.file(path).load()).to_dict()
    assert got["genre"] == expected["genre"]
    assert np.allclose([got["probabilities"][g] for g in expected["probabilities"]],
                       list(expected["probabilities"].values()), atol=TOLERANCE)
