from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from genrify.classify.outputs import render, write_text_atomic
from genrify.classify.predict import Failure, Prediction
from genrify.errors import GenrifyIOError, ParameterError


def _prediction() -> Prediction:
    seg = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.8, 0.1, 0.1]])
    return Prediction(genres=["jazz", "rock", "pop"], probabilities=seg.mean(axis=0), votes=np.array([2, 1, 0]) / 3,
                      segments=3, duration=9.0, path="a.mp3", segment_starts=np.array([0.0, 3.0, 6.0]),
                      segment_probabilities=seg)


def test_json_objects_and_failures():
    objects = json.loads(render([_prediction(), Failure("b.mp3", "not audio")], "json", top_k=2, timeline=True))
    assert objects[0]["genre"] == "jazz" and [t["genre"] for t in objects[0]["top"]] == ["jazz", "rock"]
    assert [s["genre"] for s in objects[0]["timeline"]] == ["jazz", "rock", "jazz"]
    assert objects[0]["votes"]["jazz"] == pytest.approx(2 / 3, abs=1e-6)
    assert objects[1] == {"path": "b.mp3", "error": "not audio"}


def test_csv_rows_per_file_and_per_segment():
    rows = list(csv.DictReader(io.StringIO(render([_prediction(), Failure("b.mp3", "bad")], "csv"))))
    assert [r["path"] for r in rows] == ["a.mp3", "b.mp3"]
    assert rows[0]["genre"] == "jazz" and float(rows[0]["p_rock"]) == pytest.approx(0.3)
    assert rows[1]["error"] == "bad" and rows[1]["genre"] == ""
    seg = list(csv.DictReader(io.StringIO(render([_prediction()], "csv", timeline=True))))
    assert [(r["segment_start"], r["genre"]) for r in seg] == [("0.000", "jazz"), ("3.000", "rock"), ("6.000", "jazz")]


def test_unknown_format_and_unwritable_output(tmp_path):
    with pytest.raises(ParameterError, match="unknown output format"):
        render([_prediction()], "xml")
    with pytest.raises(GenrifyIOError, match="cannot write"):
        write_text_atomic(tmp_path / "missing" / "out.json", "{}")
    write_text_atomic(tmp_path / "out.json", "{}")
    assert (tmp_path / "out.json").read_text() == "{}" and len(list(tmp_path.iterdir())) == 1


def test_a_device_is_written_into_not_replaced(tmp_path):
    import os
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    import threading

    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_text_atomic(fifo, "hello")
    reader.join(5)
    assert got == ["hello"] and stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_nan_becomes_a_failure_never_invalid_json():
    bad = _prediction()
    bad.probabilities = np.array([np.nan, 0.5, 0.5])
    text = render([bad, _prediction()], "json")
    objects = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert objects[0] == {"path": "a.mp3", "error": objects[0]["error"]} and "non-finite" in objects[0]["error"]
    assert objects[1]["genre"] == "jazz"
    rows = list(csv.DictReader(io.StringIO(render([bad, _prediction()], "csv"))))
    assert rows[0]["genre"] == "" and "non-finite" in rows[0]["error"] and rows[0]["p_jazz"] == ""
    assert ",nan" not in render([bad], "csv").lower()


def test_names_that_are_not_utf8_are_written_readably(tmp_path):
    import os

    name = os.fsdecode(b"/music/bad\xff.wav")
    good = _prediction()
    good.path = name
    results = [good, Failure(name, f"{name}: not audio")]
    for fmt in ("json", "csv"):
        write_text_atomic(tmp_path / f"out.{fmt}", render(results, fmt))
    objects = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert [o["path"] for o in objects] == ["/music/bad\\xff.wav"] * 2
    assert objects[1]["error"] == "/music/bad\\xff.wav: not audio"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text(encoding="utf-8"))))
    assert [r["path"] for r in rows] == ["/music/bad\\xff.wav"] * 2


def test_long_tag_values_are_shown_short_with_their_length():
    from genrify.classify.outputs import SHOWN_VALUE, shorten, shown_values

    huge = "Rock" * 262_144  # 1 MiB of one value
    line = shown_values([huge, "Pop"])
    assert line == f"{huge[:SHOWN_VALUE - 1]}… (1,048,576 characters); Pop"
    assert shorten("x" * SHOWN_VALUE) == "x" * SHOWN_VALUE  # exactly the limit: whole
    assert shown_values([str(i) for i in range(1000)]) == "0; 1; 2; 3; 4; 5; 6; 7; 8; 9; … and 990 more"
    assert shown_values([]) == ""


@pytest.mark.parametrize("timeline", [False, True])
def test_csv_and_json_carry_the_same_fields(timeline):
    from genrify.classify.outputs import CSV_SPREAD

    tie = _prediction()
    tie.probabilities, tie.near_tie_margin, tie.confidence_threshold = np.array([0.45, 0.44, 0.11]), 0.05, 0.3
    results = [_prediction(), tie, Failure("b.mp3", "not audio")]
    objects = json.loads(render(results, "json", timeline=timeline))
    scalar = {k for o in objects for k, v in o.items() if not isinstance(v, dict | list)}
    nested = {k for o in objects for k, v in o.items() if isinstance(v, dict | list)}
    assert nested == set(CSV_SPREAD) - ({"timeline"} if not timeline else set())
    header = next(csv.reader(io.StringIO(render(results, "csv", timeline=timeline))))
    spread = {c for c in header if c.startswith(("p_", "vote_")) or c == "segment_start"
              or (c.startswith("top") and c[3:].isdigit())}
    assert set(header) - spread == scalar
    assert {"low_confidence", "short", "not_music", "near_tie", "unsure_reason"} <= scalar


def test_csv_says_whether_and_why_an_answer_is_unsure():
    tie = _prediction()
    tie.probabilities, tie.near_tie_margin, tie.confidence_threshold = np.array([0.45, 0.44, 0.11]), 0.05, 0.3
    noise = _prediction()
    noise.not_music = "noise"
    rows = list(csv.DictReader(io.StringIO(render([_prediction(), tie, noise, Failure("b.mp3", "bad")], "csv"))))
    sure, tied, not_music, failed = rows
    assert (sure["low_confidence"], sure["unsure_reason"], sure["near_tie"], sure["short"]) == ("false", "", "false", "false")
    assert (tied["low_confidence"], tied["unsure_reason"], tied["near_tie"]) == ("true", "near tie", "true")
    assert (not_music["unsure_reason"], not_music["not_music"]) == ("not music", "noise")
    assert failed["low_confidence"] == "" and failed["error"] == "bad"
    assert float(sure["vote_jazz"]) == pytest.approx(2 / 3, abs=1e-6) and sure["near_tie_margin"] == "0.0"
    seg = list(csv.DictReader(io.StringIO(render([tie], "csv", timeline=True))))
    assert len(seg) == 3 and all(r["unsure_reason"] == "near tie" and r["vote_jazz"] == "" for r in seg)
