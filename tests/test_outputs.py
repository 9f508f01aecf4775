from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from genrify.errors import ParameterError
from genrify.outputs import render, write_text_atomic
from genrify.predict import Failure, Prediction


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
    with pytest.raises(ParameterError, match="cannot write"):
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
