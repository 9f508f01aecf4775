"""Which torch device to compute on, and mixed precision where it helps.

``auto`` takes a CUDA GPU when there is one and the CPU otherwise; asking for ``cuda`` on a machine
without one falls back to the CPU with one line saying so, because a command that could run should
not fail for want of an accelerator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from genrify.errors import ParameterError

DEVICES = ("auto", "cpu", "cuda")


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
    """
    base = name.split(":", 1)[0]
    if base not in DEVICES or (":" in name and base != "cuda"):
        raise ParameterError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if base == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device(name if base == "cuda" else "cuda")
    if base == "cuda" and notify is not None:
        notify(f"CUDA is not available here; computing on the CPU instead of {name}")
    return torch.device("cpu")


def module_device(module: torch.nn.Module) -> torch.device:
    """The device a module's parameters live on (the CPU for a module without any)."""
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
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
