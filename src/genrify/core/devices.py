"""Which torch device to compute on, and mixed precision where it helps.

``auto`` takes a CUDA GPU when there is one and the CPU otherwise; asking for ``cuda`` on a machine
without one falls back to the CPU with one line saying so, because a command that could run should
not fail for want of an accelerator.

Nothing here imports torch at import time: classification asks :func:`compute_device` first, which
answers ``None`` (the CPU, where the numpy and ONNX Runtime models run) without importing torch
unless a GPU may be there to use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from genrify.core.extras import install_command
from genrify.errors import DependencyError, ParameterError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")

# Threads set by set_threads (None: not set): numpy's FFT and ONNX Runtime follow them, as torch does.
_threads: int | None = None


def compute_threads() -> int:
    """Threads for compute in this process (the numpy FFT, ONNX Runtime's sessions, torch): as
    :func:`set_threads` set them (genrify's pools set one beside decoding workers), else as many as
    torch is allowed where torch is loaded, else ``OMP_NUM_THREADS``, else every core this process
    may use. Never imports torch."""
    if _threads is not None:
        return _threads
    torch = sys.modules.get("torch")
    if torch is not None:  # follow what the caller told torch
        return max(1, int(torch.get_num_threads()))
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def set_threads(threads: int) -> int:
    """Compute on ``threads`` threads in this process (torch too, loaded now or later; it is never
    imported for this); returns the number before, to put back.

    A process pool fills the cores with one process each: threads inside them would only contend.
    """
    global _threads
    before = compute_threads()
    _threads = max(1, int(threads))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(_threads)
    else:
        # torch imported later (a worker loading a torch model after this) takes its thread count
        # from OpenMP's variable, read as it loads.
        os.environ["OMP_NUM_THREADS"] = str(_threads)
    return before


def check_device_name(name: str) -> str:
    """``name`` where it is one of :data:`DEVICES` or ``cuda:N``.

    Raises
    ------
    ParameterError
        Any other name.
    """
    base = name.split(":", 1)[0]
    if base not in DEVICES or (":" in name and base != "cuda"):
        raise ParameterError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    return name


def _may_have_cuda() -> bool:
    """Whether torch is installed and an NVIDIA driver is loaded: only then can ``auto`` find a GPU,
    and only then is it worth importing torch (a second or more) to ask."""
    try:
        if importlib.util.find_spec("torch") is None:
            return False
    except (ImportError, ValueError):  # ValueError: torch blocked in sys.modules
        return False
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def compute_device(name: str = "auto", *, notify: Callable[[str], None] | None = None) -> Any:
    """Where classification runs for ``name``: ``None`` for the CPU (the model where it was loaded,
    no torch imported), else a CUDA :class:`torch.device` (:func:`resolve_device`).

    ``auto`` imports torch only where a GPU may be there (:func:`_may_have_cuda`); ``cuda`` without
    torch installed says so through ``notify`` and answers the CPU, as ``cuda`` without a GPU does.

    Raises
    ------
    ParameterError
        A name that is none of :data:`DEVICES` (or ``cuda:N``).
    """
    base = check_device_name(name).split(":", 1)[0]
    if base == "cpu" or (base == "auto" and not _may_have_cuda()):
        return None
    try:
        device = resolve_device(name, notify=notify)
    except DependencyError:
        if base == "cuda" and notify is not None:
            notify(f"PyTorch is not installed; computing on the CPU instead of {name} ({install_command('train')})")
        return None
    return device if device.type == "cuda" else None


def resolve_device(name: str = "auto", *, notify: Callable[[str], None] | None = None) -> torch.device:
    """The torch device for ``name`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``).

    Parameters
    ----------
    name
        What the user asked for.
    notify
        Called with one line when ``cuda`` was asked for but is not available.

    Raises
    ------
    ParameterError
        A name that is none of the above.
    DependencyError
        PyTorch is not installed.
    """
    base = check_device_name(name).split(":", 1)[0]
    try:
        import torch
    except ImportError:
        raise DependencyError(f"PyTorch is not installed: {install_command('train')}") from None
    if base == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device(name if base == "cuda" else "cuda")
    if base == "cuda" and notify is not None:
        notify(f"CUDA is not available here; computing on the CPU instead of {name}")
    return torch.device("cpu")


def module_device(module: torch.nn.Module) -> torch.device:
    """The device a module's parameters live on (the CPU for a module without any)."""
    import torch

    for p in module.parameters():
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bfloat16 autocast on CUDA; nothing on the CPU.

    On a GPU the convolutions run several times faster in bfloat16, which keeps float32's range,
    so no loss scaling is needed; on the CPU autocast would only add conversions.
    """
    if device.type == "cuda":
        import torch

        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
