"""Training on several processes, GPUs or machines with ``torchrun`` (DistributedDataParallel).

``torchrun --nproc-per-node N -m genrify train STORE --out MODEL`` starts N copies of the command and
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each. Where
``WORLD_SIZE`` is above 1, :func:`genrify.learn.training.train` joins the process group
(:func:`init_from_env`: NCCL on CUDA GPUs, one per local rank; gloo on CPUs), wraps the network in
``DistributedDataParallel``, and lets each rank train on its share of every epoch's batches. Every
rank draws the same split, the same initial weights and the same shuffled order from the seed, and
takes every N-th batch of it; validation figures are summed over the ranks, so that early stopping
decides the same everywhere. Rank 0 (:func:`is_main`) alone writes the model file and the report.

Without ``WORLD_SIZE`` (a plain ``genrify train``), nothing here does anything.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from genrify.errors import DependencyError, ParameterError

#: How long a rank waits for the others at a collective before giving up (a rank that died).
TIMEOUT = datetime.timedelta(minutes=30)

_owned = False  # whether this module started the process group (and so ends it)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a distributed run."""

    rank: int  #: global rank, 0 .. world_size - 1
    world_size: int  #: processes in the run
    local_rank: int  #: rank on this machine (the GPU it uses)
    backend: str  #: "nccl" or "gloo"
    device: torch.device  #: where this rank computes

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes files and prints."""
        return self.rank == 0


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        if default is None:
            raise ParameterError(f"WORLD_SIZE is set but {name} is not: start distributed training with torchrun")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ParameterError(f"{name}={raw!r} is not a whole number") from None


def world_size() -> int:
    """Processes in the run: ``WORLD_SIZE`` (1 without torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return max(1, _env_int("WORLD_SIZE", 1))


def is_main() -> bool:
    """Whether this process should write files and print: rank 0, or not distributed at all."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return _env_int("RANK", 0) == 0


def info() -> DistInfo | None:
    """This process's place in the process group it belongs to (``None`` outside one)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    backend = str(torch.distributed.get_backend())
    local_rank = _env_int("LOCAL_RANK", 0)
    if backend == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    return DistInfo(torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank, backend, device)


def init_from_env(
    device: str = "auto", *, notify: Callable[[str], None] | None = None, timeout: datetime.timedelta = TIMEOUT
) -> DistInfo | None:
    """Join the process group that ``torchrun`` describes in the environment.

    Parameters
    ----------
    device
        What the user asked for: ``auto`` takes this machine's GPU number ``LOCAL_RANK`` where there
        are GPUs (NCCL) and the CPU otherwise (gloo); ``cpu`` forces gloo on the CPU; ``cuda``
        insists on GPUs (falling back to the CPU with a note, like a single-process run).
    notify
        Called with one line of news (on rank 0 only).
    timeout
        How long a collective waits for the other ranks.

    Returns
    -------
    DistInfo or None
        ``None`` where ``WORLD_SIZE`` is unset or 1: an ordinary single-process run.

    Raises
    ------
    ParameterError
        Incomplete or inconsistent variables, more local ranks than GPUs, or a process group that
        cannot be formed (the rendezvous address unreachable).
    """
    global _owned

    if not torch.distributed.is_available():
        if world_size() > 1:
            raise DependencyError("this build of torch has no torch.distributed; distributed training is impossible")
        return None
    if torch.distributed.is_initialized():
        return info()
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return None
    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < size:
        raise ParameterError(f"RANK={rank} is outside 0..{size - 1} (WORLD_SIZE={size})")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ParameterError(f"WORLD_SIZE is set but {name} is not: start distributed training with torchrun")
    base = device.split(":", 1)[0]
    use_cuda = base != "cpu" and torch.cuda.is_available()
    if base == "cuda" and not torch.cuda.is_available() and notify is not None and rank == 0:
        notify(f"CUDA is not available here; training on the CPU instead of {device}")
    if use_cuda:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DependencyError(
                f"LOCAL_RANK {local_rank} but this machine has {count} GPU(s): start at most {count} process(es)"
                " per node (torchrun --nproc-per-node), or train on the CPU with --device cpu"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    try:
        torch.distributed.init_process_group(backend, init_method="env://", rank=rank, world_size=size, timeout=timeout)
    except (RuntimeError, ValueError) as exc:
        addr = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        raise ParameterError(f"cannot join the process group at {addr} as rank {rank} of {size}: {exc}") from None
    _owned = True
    return DistInfo(rank, size, local_rank, backend, dev)


def shutdown() -> None:
    """Leave the process group, where :func:`init_from_env` joined it (no-op otherwise)."""
    global _owned

    if _owned and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _owned = False


def all_sum(values: Sequence[float], dist: DistInfo | None) -> list[float]:
    """Each value summed over the ranks (the values themselves where not distributed)."""
    if dist is None:
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=dist.device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor.cpu().tolist()


def broadcast_buffers(module: torch.nn.Module, dist: DistInfo | None) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics), so evaluation agrees."""
    if dist is None:
        return
    for buffer in module.buffers():
        torch.distributed.broadcast(buffer.data, src=0)


def all_gather(obj: object, dist: DistInfo | None) -> list[object]:
    """Every rank's ``obj``, by rank (``[obj]`` where not distributed)."""
    if dist is None:
        return [obj]
    gathered: list[object] = [None] * dist.world_size
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def wrap(network: torch.nn.Module, dist: DistInfo | None) -> torch.nn.Module:
    """``network`` in ``DistributedDataParallel`` (itself where not distributed).

    Every rank starts from rank 0's weights (DDP broadcasts them), and gradients are averaged over
    the ranks at every step.
    """
    if dist is None:
        return network
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(network, device_ids=device_ids)
