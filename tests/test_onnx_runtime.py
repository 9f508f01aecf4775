"""ONNX Runtime as genrify imports it."""

from __future__ import annotations

import os
import subprocess
import sys


def test_onnx_runtime_is_imported_with_its_telemetry_off(tmp_path):
    # ONNX Runtime >= 1.29 reports usage unless told not to before its import, and leaves a `.ses`
    # file in the temporary folder when it does: genrify's sessions must do neither.
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["TMPDIR"] = str(tmp_path)
    code = ("import os; from genrify.models.onnx import graph_path, make_session; "
            "make_session(graph_path('MSD_musicnn'), 1); print(os.environ['ORT_DISABLE_TELEMETRY'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "1"
    assert not list(tmp_path.iterdir())
