from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from genrify.core.devices import autocast, module_device, resolve_device
from genrify.errors import ParameterError
from genrify.learn.config import TrainConfig


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback needs a machine without CUDA")
def test_cuda_falls_back_to_the_cpu_with_one_line():
    lines: list[str] = []
    assert resolve_device("cuda", notify=lines.append) == torch.device("cpu")
    assert len(lines) == 1 and "CPU" in lines[0]


@pytest.mark.parametrize("name", ["gpu", "cpu:0", "tpu", ""])
def test_unknown_devices_are_refused(name):
    with pytest.raises(ParameterError, match="unknown device"):
        resolve_device(name)


def test_train_config_checks_the_device():
    with pytest.raises(ParameterError, match="unknown device"):
        TrainConfig(device="gpu")


def test_module_device_and_cpu_autocast_is_a_no_op():
    layer = torch.nn.Linear(3, 2)
    assert module_device(layer) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")
    with autocast(torch.device("cpu")):
        assert layer(torch.ones(1, 3)).dtype == torch.float32


def test_set_threads_reaches_torch_imported_afterwards():
    # A worker sets one thread, then loads a torch model: torch must not take every core.
    code = ("import os; os.environ.pop('OMP_NUM_THREADS', None)\n"
            "from genrify.core.devices import compute_threads, set_threads\n"
            "import sys; assert 'torch' not in sys.modules\n"
            "set_threads(1)\n"
            "import torch\n"
            "print(compute_threads(), torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["1", "1"], done.stdout + done.stderr
