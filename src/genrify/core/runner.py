"""Run a per-item task (one audio file at a time) over many items: here, or on a Dask cluster.

A :class:`Processor` is a per-item function and the failure record an item that fails becomes (the
shape of madmom's ``process_batch``: any per-file processor, handed to a runner). A :class:`Runner`
runs it over many items and yields the results as they come: :class:`LocalRunner` in a
crash-tolerant local process pool (or in this process), :class:`genrify.core.distributed.DaskRunner` on a
Dask cluster. Extraction, classification and embeddings hand their per-file work to whichever runner
their caller chose; the default job count is :func:`default_jobs`.

Process pools whose workers die with the process that started them, however it ends
-----------------------------------------------------------------------------------

Every local pool of genrify (extraction, classification, embeddings, synthesis) comes from
:func:`process_pool`. Its workers start from a clean interpreter (the "forkserver" method, "spawn"
where that is missing), and each is bound to its starter's life twice over:

* a **lifeline**: this process holds the write end of a pipe for its whole life and never writes
  to it; every worker gets the read end and a daemon thread that blocks reading it. When this
  process ends (even by ``kill -9``, which runs no clean-up), the kernel closes the write end, the
  read returns end-of-file and the worker exits at once. The forkserver, which only waits for its
  clients, then sees end-of-file on its own pipe and exits too.
* on Linux, ``PR_SET_PDEATHSIG``: the kernel sends a worker ``SIGKILL`` when its parent (the
  forkserver) dies, even while the worker is stuck in a C decoder that never lets the lifeline
  thread run.

Without them a killed ``genrify extract`` left its forkserver and workers (about 500 MB each)
waiting forever: each worker holds both ends of the pool's task queue, so it never sees
end-of-file there.

Log records of the ``genrify`` loggers in workers go to stderr at the level this process's
``genrify`` logger had when the pool was made (``genrify extract -v`` shows the decoders' notes).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from genrify.errors import GenrifyError, ParameterError

_lock = threading.Lock()
# (pid that made it, read end, write end). The write end is never written and never closed: the
# kernel closes it when this process ends, which is the signal. Re-made after a fork, so that a
# forked child's workers follow that child, not its parent.
_lifeline: tuple[int, Connection, Connection] | None = None

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def context() -> BaseContext:
    """The start method of genrify's pools: "forkserver", or "spawn" where that is missing.

    Workers never fork a parent that runs threads (a progress bar, a web server), and heavy modules
    (torch) are imported once per worker, not once per task.
    """
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def process_pool(
    max_workers: int,
    *,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
) -> ProcessPoolExecutor:
    """A process pool whose workers (and forkserver) end when this process ends, however it ends.

    Parameters
    ----------
    max_workers
        Worker processes.
    initializer, initargs
        Run once in each worker after it is bound to this process (as in
        :class:`~concurrent.futures.ProcessPoolExecutor`); must be importable by name.

    Returns
    -------
    concurrent.futures.ProcessPoolExecutor
    """
    _refuse_unguarded_script()
    level = logging.getLogger("genrify").getEffectiveLevel()
    return ProcessPoolExecutor(
        max_workers=max_workers,
        mp_context=context(),
        initializer=_start_worker,
        initargs=(_lifeline_reader(), level, initializer, initargs),
    )


def _refuse_unguarded_script() -> None:
    """Raise where the running script makes a pool from its top level outside ``if __name__ ==
    "__main__":``.

    Each worker starts by importing the script (so that what it defines can reach the worker), which
    would run that line again in every worker: Python refuses there, the workers die, and every file
    would be reported as crashing its decoder. Said here instead, in one line, before any work.

    Raises
    ------
    GenrifyError
        The call is at the script's top level, outside the guard.
    """
    import ast

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>" and frame.f_globals is vars(main)):
        frame = frame.f_back
    if frame is None or not path or not str(path).endswith(".py"):
        return  # called from no script's top level (a function, the CLI, a notebook, pytest)
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return
    line = frame.f_lineno

    def is_main_test(test: ast.expr) -> bool:
        """``__name__ == "__main__"``, either way round (compared as nodes: quoting does not matter)."""
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
            return False
        sides = (test.left, test.comparators[0])
        return (any(isinstance(side, ast.Name) and side.id == "__name__" for side in sides)
                and any(isinstance(side, ast.Constant) and side.value == "__main__" for side in sides))

    def is_guard(node: ast.AST) -> bool:
        if not isinstance(node, ast.If):
            return False
        # `__name__ == "__main__" and more`: the body runs only in the script itself, never in a
        # worker importing it, so it is guarded. An `or` is not: its other side may hold in a worker.
        if isinstance(node.test, ast.BoolOp) and isinstance(node.test.op, ast.And):
            return any(is_main_test(operand) for operand in node.test.values)
        return is_main_test(node.test)

    # The guard's body only: its else branch runs in every worker too.
    if any(is_guard(node) and node.body[0].lineno <= line <= (node.body[-1].end_lineno or line)  # type: ignore[attr-defined]
           for node in ast.walk(tree)):
        return
    raise GenrifyError(f"{path}: line {line} starts genrify's worker processes from the script's top level, "
                       f"which each worker would run again: put it under `if __name__ == \"__main__\":` "
                       f"(or use one job, which starts no worker)")


def _lifeline_reader() -> Connection:
    global _lifeline
    with _lock:
        if _lifeline is None or _lifeline[0] != os.getpid():
            reader, writer = multiprocessing.Pipe(duplex=False)
            _lifeline = (os.getpid(), reader, writer)
        return _lifeline[1]


def _start_worker(
    lifeline: Connection, level: int, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]
) -> None:
    """Worker initializer: bind this worker's life to its starter's, set up logging, then the caller's."""
    die_with_parent()
    threading.Thread(target=_watch, args=(lifeline,), name="genrify-lifeline", daemon=True).start()
    if level < logging.WARNING:  # asked for (-v); otherwise Python's last-resort handler is enough
        logger = logging.getLogger("genrify")
        logger.setLevel(level)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            logger.addHandler(handler)
    if initializer is not None:
        initializer(*initargs)


def _watch(lifeline: Connection) -> None:
    try:
        while True:
            lifeline.recv_bytes()  # nothing is ever sent: this returns only by raising at end-of-file
    except (EOFError, OSError):
        pass
    # The starter is gone: nobody will read this worker's results. Exit now, from this thread;
    # what a task was writing is a temporary file the next run cleans up.
    os._exit(1)


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); True where it could.

    Where the parent died before the request, the process kills itself: nothing would do it later.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died between fork and prctl: the signal will never come
        os.kill(os.getpid(), signal.SIGKILL)
    return True


# --- running a per-item task over many items --------------------------------------------------

#: What an item whose worker crashed every time it was tried alone is reported as.
CRASHED = "the decoder crashed on this file"

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """Worker processes to use by default: every core this process may run on.

    The one place genrify computes it: a CPU affinity mask (``taskset``, a container's cpuset)
    counts, where ``os.cpu_count()`` would report the whole machine.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def progress_lines(say: Callable[[str], None], every: float = 10.0) -> Callable[[str, int, int], None]:
    """A ``progress(stage, done, total)`` that says ``"<stage>: <done> of <total>"`` at most every ``every``
    seconds (and at each stage's end), for front ends that log lines rather than draw bars."""
    last = [time.monotonic()]

    def show(stage: str, done: int, total: int) -> None:
        if total > 1 and done and (time.monotonic() - last[0] >= every or done == total):
            last[0] = time.monotonic()
            say(f"{stage}: {done} of {total}")

    return show


def failure_reason(exc: BaseException) -> str:
    """One line saying why an item failed, for its failure record.

    An error about one file (:class:`~genrify.errors.AudioError`,
    :class:`~genrify.errors.PredictionError`) gives its reason without the path (the record holds
    the path); another genrify error its message; anything else its type and message.
    """
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and isinstance(exc, GenrifyError):
        return reason
    if isinstance(exc, GenrifyError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Processor(Generic[T, R]):
    """A per-item task that any :class:`Runner` can run: what to do with one item, and what an
    item that fails becomes.

    Calling it runs ``process(item, *args)``; an exception becomes ``failed(item, reason)``
    (:func:`failure_reason`), never an exception out of the task: one bad file must not end a run
    over thousands. A runner also turns an item whose worker process dies into
    ``failed(item, CRASHED)``. The functions must be importable by name (module level), since
    workers receive the processor by pickle.

    Attributes
    ----------
    process
        ``process(item, *args) -> result``.
    failed
        ``failed(item, reason) -> result``: the failure record.
    setup
        ``setup(*args)``, run in a worker process before it processes items (the local pool runs it
        once per worker, Dask before each task, so it must be cheap the second time); never run
        in this process. An exception here fails the task, not an item.
    """

    process: Callable[..., R]
    failed: Callable[[T, str], R]
    setup: Callable[..., None] | None = None

    def __call__(self, item: T, *args: Any) -> R:
        try:
            return self.process(item, *args)
        except Exception as exc:  # noqa: BLE001 - the failure is recorded with the item; the run goes on
            return self.failed(item, failure_reason(exc))

    def batch(self, items: Sequence[T], *args: Any) -> list[R]:
        """The results of a few items: one task, one round trip to a worker."""
        return [self(item, *args) for item in items]


# A pool worker's setup error, raised by each of its tasks. An initializer that raises would break the
# pool instead, and every item would then pass for a crash: a model that a worker cannot load must
# reach the caller as itself (as on Dask, where the setup runs inside the task).
_setup_error: Exception | None = None


def _pool_setup(setup: Callable[..., None], *args: Any) -> None:
    """Pool worker initializer: the processor's setup, as the worker starts (warm before its first task)."""
    global _setup_error
    try:
        setup(*args)
    except Exception as exc:  # noqa: BLE001 - kept for the worker's tasks to raise
        _setup_error = exc


def _pool_task(processor: Processor[T, R], batch: list[T], *args: Any) -> list[R]:
    """Pool worker: ``processor`` over one batch, or the worker's setup error."""
    if _setup_error is not None:
        raise _setup_error
    return processor.batch(batch, *args)


class Runner(Protocol):
    """Runs a :class:`Processor` over many items: a local process pool (:class:`LocalRunner`) or a
    Dask cluster (:class:`genrify.core.distributed.DaskRunner`), chosen by the caller.

    Every item is yielded exactly once, in any order, as its result arrives; an item whose worker
    crashes is yielded as ``processor.failed(item, CRASHED)``. An exception raised by a task
    itself (the processor's setup) reaches the caller.
    """

    #: Workers may run on other machines: they see files only by absolute paths on a shared
    #: filesystem, and load what they need (a model) themselves.
    remote: bool

    def check(self, paths: Sequence[str] = (), folder: str | None = None, *, writable: bool = False,
              what: str = "folder") -> None:
        """Fail early, with one line, where the workers cannot see ``paths`` or ``folder``."""
        ...

    def run(self, processor: Processor[T, R], items: Sequence[T], *args: Any) -> Iterator[R]:
        """``processor(item, *args)`` for every item, in workers; results as they come."""
        ...


class LocalRunner:
    """Run per-item work on this machine: in a crash-tolerant process pool, or in this process.

    A few items go in one task (less traffic between processes), a bounded window of tasks is in
    flight (workers stay busy, memory stays bounded). A worker that dies outright (a decoder that
    crashes on a damaged file) breaks the pool: it is rebuilt, and the items that were in flight
    are tried again one at a time, alone in the pool, so the one that crashes it is known for sure,
    reported as ``failed(item, CRASHED)``, and takes no other item down with it. Workers die with
    this process (:func:`process_pool`).

    Parameters
    ----------
    jobs
        Worker processes; ``None`` uses every core (:func:`default_jobs`).
    in_process
        Process the items here, one after another, instead of in workers. Default (``None``): when
        ``jobs == 1`` or a run has a single item (a worker would only add its start-up). Workers
        isolate the run from a decoder that crashes; in-process is easier to debug and starts
        nothing.
    batch_size
        Most items per task (fewer when there are few items per worker).

    Raises
    ------
    ParameterError
        ``jobs`` or ``batch_size`` is not positive.
    """

    remote = False

    def __init__(self, jobs: int | None = None, *, in_process: bool | None = None, batch_size: int = 4) -> None:
        self.jobs = default_jobs() if jobs is None else jobs
        if self.jobs < 1:
            raise ParameterError(f"jobs must be at least 1, not {self.jobs}")
        if batch_size < 1:
            raise ParameterError(f"batch_size must be at least 1, not {batch_size}")
        self.in_process = in_process
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"LocalRunner(jobs={self.jobs}, in_process={self.in_process})"

    def runs_here(self, items: int) -> bool:
        """Whether a run over this many items processes them in this process (no workers)."""
        if self.in_process is not None:
            return self.in_process
        return self.jobs == 1 or items <= 1

    def check(self, paths: Sequence[str] = (), folder: str | None = None, *, writable: bool = False,
              what: str = "folder") -> None:
        """Nothing to check: the workers are this machine's processes and see what it sees."""

    def run(self, processor: Processor[T, R], items: Sequence[T], *args: Any) -> Iterator[R]:
        """``processor(item, *args)`` for every item; results as they come (any order)."""
        items = list(items)
        if not items:
            return
        if self.runs_here(len(items)):
            for item in items:
                yield processor(item, *args)
            return
        jobs = self.jobs
        # A few items per task cut the inter-process traffic; one per task where items are few.
        per_task = max(1, min(self.batch_size, len(items) // (jobs * 8)))
        queue = [items[i : i + per_task] for i in range(0, len(items), per_task)][::-1]  # pop() keeps order
        workers = min(jobs, len(queue))
        window = jobs * 3  # enough queued work to keep workers busy; bounded so memory is too
        # Items in flight when a worker died: one of them killed it. They run one at a time, alone
        # in the pool, so the culprit is known for sure and takes no other item down with it.
        suspects: list[T] = []

        def new_pool() -> ProcessPoolExecutor:
            if processor.setup is None:
                return process_pool(workers)
            return process_pool(workers, initializer=_pool_setup, initargs=(processor.setup, *args))

        pool = new_pool()
        in_flight: dict[Future[list[R]], list[T]] = {}

        def submit(batch: list[T]) -> bool:
            """Hand ``batch`` to the pool; False where a worker died since the last look (the pool
            refuses work), the batch never having run."""
            try:
                in_flight[pool.submit(_pool_task, processor, batch, *args)] = batch
            except BrokenProcessPool:
                return False
            return True

        try:
            while queue or in_flight or suspects:
                if suspects:
                    if not in_flight and not submit(batch := [suspects.pop()]):
                        suspects.extend(batch)
                else:
                    while queue and len(in_flight) < window:
                        if not submit(batch := queue.pop()):
                            queue.append(batch)  # first again once the pool is rebuilt
                            break
                if not in_flight:  # the pool broke with nothing of ours in it (a worker that died starting)
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
                    continue
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                alone = len(in_flight) == 1
                broken = False
                for future in finished:
                    batch = in_flight.pop(future)
                    try:
                        yield from future.result()
                    except BrokenProcessPool:
                        broken = True
                        if alone and len(batch) == 1:
                            yield processor.failed(batch[0], CRASHED)
                        else:
                            suspects.extend(batch)
                if broken:
                    for future, batch in in_flight.items():  # died with the pool, innocent or not
                        future.cancel()
                        suspects.extend(batch)
                    in_flight.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
