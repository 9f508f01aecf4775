"""Extraction and classification on a Dask cluster: many machines, one feature store.

One machine uses a local process pool (:class:`genrify.core.runner.LocalRunner`). Past one machine, a
Dask scheduler hands tasks to workers on other machines, through :class:`DaskRunner`, the same kind of
runner; :func:`genrify.store.extract.extract` and :func:`genrify.classify.service.classify_library` take either
(``runner=DaskRunner(client)``)::

    dask scheduler                                       # on one machine: tcp://HOST:8786
    dask worker tcp://HOST:8786 --nthreads 1 --nworkers 8  # on every machine, one process per core

A task is a small batch of tracks. Workers read the audio from paths they see (a shared filesystem,
mounted at the same path everywhere) and write each track's array into the store's folder with the
same atomic protocol as the local pool (:func:`genrify.store.store.write_array`: a temporary name renamed
into place). Only small results come back: :class:`~genrify.store.extract.TrackResult` for extraction,
:class:`~genrify.classify.predict.Prediction` or :class:`~genrify.classify.predict.Failure` for classification. The
client, and only the client, records them (the manifest keeps its single writer).

A task is a :class:`genrify.core.runner.Processor` over a batch: a file that cannot be read becomes its
failure record on the worker. Failures of the task itself, from the mildest:

* a task that raises (its setup: a model the worker cannot load) (a network filesystem hiccup) is run again (``retries``);
* a worker that dies while holding tasks (a node lost, a process killed) costs nothing: the
  scheduler gives its tasks to other workers, and every track is still reported exactly once;
* a task that keeps killing its workers (a decoder that crashes on a damaged file) ends, after the
  scheduler's ``allowed-failures``, as Dask's ``KilledWorker``: its batch is split and each track is
  tried alone, and the track that kills its worker alone is reported as failed ("the decoder crashed
  on this file"). One poisonous file never stalls the run.

Dask is optional: ``pip install genrify[dask]``.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from genrify.core.extras import install_command
from genrify.core.runner import CRASHED, Processor, default_jobs
from genrify.errors import DependencyError, ParameterError

if TYPE_CHECKING:
    from distributed import Client


__all__ = ["CRASHED", "DaskRunner", "check_workers", "connect"]

#: Tracks (or files) per task: few enough that a lost worker costs little, enough to amortise a
#: task's round trip (a few milliseconds) over tens of milliseconds of decoding per track.
BATCH_SIZE = 8
#: Times a task that raised is run again before its error reaches the caller.
RETRIES = 2
#: Tasks handed to the scheduler at once, per worker thread: enough to keep every worker busy
#: while results travel back, bounded so a million-track run never floods the scheduler.
TASKS_PER_THREAD = 3

T = TypeVar("T")
R = TypeVar("R")


def _dask() -> Any:
    """The ``distributed`` module, or a clear error saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise DependencyError(f"Dask is not installed: {install_command('dask')} (or pip install 'dask[distributed]')") from None
    return distributed


# --- connecting -----------------------------------------------------------------------------


def connect(
    scheduler: str,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    timeout: float = 30.0,
    **cluster_options: Any,
) -> Client:
    """A Dask client: on a new cluster on this machine, or connected to a running scheduler.

    Use it as a context manager; closing it closes what it started (the local cluster), never a
    cluster it only connected to.

    Parameters
    ----------
    scheduler
        ``"local"``: start a cluster of ``n_workers`` single-threaded worker processes on this
        machine (default: one per core). ``"tcp://HOST:8786"`` (or ``HOST:8786``): connect to a
        running ``dask scheduler``. A path to a ``.json`` scheduler file (``dask scheduler
        --scheduler-file``): connect to the scheduler it names.
    n_workers, threads_per_worker
        Size of a local cluster (ignored when connecting).
    timeout
        Seconds to wait for the scheduler (and for a local cluster's workers).
    **cluster_options
        Passed on to ``distributed.LocalCluster`` (e.g. ``host="127.0.0.1"``,
        ``dashboard_address=":8787"``).

    Raises
    ------
    ParameterError
        Dask is not installed, the address is malformed, or the scheduler cannot be reached.

    Examples
    --------
    >>> from genrify.core import distributed                    # doctest: +SKIP
    >>> with distributed.connect("local") as client:            # doctest: +SKIP
    ...     print(client.dashboard_link)
    """
    dd = _dask()
    scheduler = (scheduler or "").strip()
    if not scheduler:
        raise ParameterError("no Dask scheduler given: use 'local' or an address such as tcp://HOST:8786")
    if scheduler == "local":
        workers = n_workers if n_workers is not None else default_jobs()
        if workers < 1 or threads_per_worker < 1:
            raise ParameterError(f"a local cluster needs at least one worker and one thread, not {workers} x {threads_per_worker}")
        # The HTTP server (and dashboard, where bokeh is installed) on a free port of this machine only.
        options = {"dashboard_address": "127.0.0.1:0", **cluster_options}
        import dask

        environ = dict(os.environ)
        try:
            # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_, which halves the speed of
            # numpy-heavy work (see _tune_worker): not here. The client owns the cluster it starts
            # (Client(address=None) closes it on close()).
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                client = dd.Client(
                    n_workers=workers, threads_per_worker=threads_per_worker, processes=True, timeout=timeout,
                    **options,
                )
            client.wait_for_workers(workers, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise DependencyError(f"cannot start a local Dask cluster: {exc}") from None
        finally:
            # The nannies set their workers' variables (OMP_NUM_THREADS=1, ...) in this process's
            # environment; they would reach every process it starts later.
            os.environ.clear()
            os.environ.update(environ)
        return client
    if scheduler.endswith(".json") and "://" not in scheduler:
        if not os.path.isfile(scheduler):
            raise ParameterError(f"{scheduler}: no Dask scheduler file here")
        target: dict[str, Any] = {"scheduler_file": scheduler}
        shown = scheduler
    else:
        address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
        rest = address.partition("://")[2]
        if not rest or ":" not in rest.rsplit("]", 1)[-1]:
            raise ParameterError(f"{scheduler!r} is not a Dask scheduler address: expected tcp://HOST:PORT (8786 by default) or 'local'")
        target = {"address": address}
        shown = address
    try:
        return dd.Client(timeout=timeout, **target)
    except (OSError, TimeoutError) as exc:
        raise DependencyError(f"cannot reach the Dask scheduler at {shown}: {exc}") from None


# --- checks on the workers -----------------------------------------------------------------


def _worker_view(paths: Sequence[str], folder: str | None, writable: bool) -> dict[str, Any]:
    """Runs on every worker: what it sees of the files and folder a run needs."""
    import genrify

    return {
        "version": genrify.__version__,
        "missing": [p for p in paths if not os.path.exists(p)],
        "folder": folder is None or (os.path.isdir(folder) and (not writable or os.access(folder, os.W_OK))),
    }


def check_workers(
    client: Client, *, paths: Sequence[str] = (), folder: str | None = None, writable: bool = False, what: str = "folder"
) -> int:
    """Ask every connected worker whether it runs this genrify and sees the files a run needs.

    A worker on another machine sees only what a shared filesystem gives it, at the same paths;
    one that does not would fail every track, so this fails early, with one line, instead.

    Returns
    -------
    int
        Workers checked (0 where none has joined yet: nothing to check).

    Raises
    ------
    ParameterError
        A worker cannot import genrify, runs another version, or cannot see ``paths`` or ``folder``.
    """
    import genrify

    try:
        views = client.run(_worker_view, list(paths), folder, writable)
    except (ImportError, AttributeError) as exc:
        raise DependencyError(f"the Dask workers cannot import genrify ({exc}); install genrify on every worker") from None
    for worker, view in sorted(views.items()):
        if view["version"] != genrify.__version__:
            raise ParameterError(
                f"Dask worker {worker} runs genrify {view['version']}, this client {genrify.__version__};"
                " install the same version everywhere (features must not mix)"
            )
        if not view["folder"]:
            need = "see and write" if writable else "see"
            raise ParameterError(
                f"Dask worker {worker} cannot {need} the {what} {folder}; workers need a shared filesystem"
                " mounted at the same path as on this machine"
            )
        if view["missing"]:
            raise ParameterError(
                f"Dask worker {worker} cannot see {view['missing'][0]}; workers need the files on a shared"
                " filesystem mounted at the same path as on this machine"
            )
    return len(views)


# --- running batches ----------------------------------------------------------------------


_tuned = False


def _tune_worker() -> None:
    """Once per worker process: one torch thread per task, and glibc's usual heap behaviour.

    A worker runs one task per thread, one thread per core, so torch's own threads would only
    contend. Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_`` set, which also freezes
    glibc's mmap threshold at 128 kB: every array of a spectrogram is then mapped and unmapped
    afresh, and page faults halve extraction's speed (measured: 36 against 82 tracks/s on 2 cores).
    The thresholds glibc itself would reach (32 MB, trim at 64 MB) restore it.
    """
    global _tuned
    if _tuned:
        return
    from genrify.core.devices import set_threads

    set_threads(1)
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") is not None and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
            libc.mallopt(_M_TRIM_THRESHOLD, 64 * 2**20)
        except (OSError, AttributeError):  # not glibc: nothing to undo
            pass
    _tuned = True


_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3


def _dask_task(processor: Processor[T, R], batch: list[T], *args: Any) -> list[R]:
    """Worker: ``processor`` over one batch, after the worker's tuning and the processor's setup."""
    _tune_worker()
    if processor.setup is not None:
        processor.setup(*args)
    return processor.batch(batch, *args)


class DaskRunner:
    """Run per-item work on a Dask cluster (a :class:`genrify.core.runner.Runner`).

    Items go in batches of ``batch_size`` per task. At most a few tasks per worker thread are in
    flight at once (the window follows the cluster as workers join and leave). A task that ends in
    ``KilledWorker`` makes its items suspects: the scheduler blames every task that was on a dying
    worker, innocent or not, so each suspect runs again alone, with no other task of the run in
    flight, and one that still kills its worker then is surely the culprit: it becomes
    ``processor.failed(item, CRASHED)``. Any other error of a task is raised after ``retries``.

    Parameters
    ----------
    client
        A Dask client (:func:`connect`).
    batch_size
        Items per task.
    retries
        Runs again of a task that raised, before the error reaches the caller.
    check
        Let :meth:`check` ask the connected workers whether they see what a run needs
        (:func:`check_workers`); ``False`` skips it.

    Raises
    ------
    ParameterError
        ``batch_size`` below 1 or negative ``retries``.
    """

    remote = True

    def __init__(self, client: Client, *, batch_size: int = BATCH_SIZE, retries: int = RETRIES,
                 check: bool = True) -> None:
        if batch_size < 1:
            raise ParameterError(f"batch_size must be at least 1, not {batch_size}")
        if retries < 0:
            raise ParameterError(f"retries cannot be negative, not {retries}")
        self.client = client
        self.batch_size = batch_size
        self.retries = retries
        self.checks = check

    def __repr__(self) -> str:
        return f"DaskRunner({self.client!r}, batch_size={self.batch_size}, retries={self.retries})"

    def check(self, paths: Sequence[str] = (), folder: str | None = None, *, writable: bool = False,
              what: str = "folder") -> None:
        """:func:`check_workers` on this runner's cluster (unless made with ``check=False``)."""
        if self.checks:
            check_workers(self.client, paths=paths, folder=folder, writable=writable, what=what)

    def run(self, processor: Processor[T, R], items: Sequence[T], *args: Any) -> Iterator[R]:
        """``processor(item, *args)`` for every item, on the cluster; results as they come."""
        dd = _dask()
        client = self.client
        if not items:
            return
        size = self.batch_size
        queue: deque[list[T]] = deque(list(items[i : i + size]) for i in range(0, len(items), size))
        suspects: deque[T] = deque()  # items of tasks that died with a worker
        name = f"genrify-{getattr(processor.process, '__name__', 'task').strip('_')}"
        token = uuid.uuid4().hex[:12]
        counter = 0
        pending = dd.as_completed()
        in_flight: dict[Any, tuple[list[T], bool]] = {}  # future -> (items, run alone)
        window_cache = {"size": 0, "at": -1e9}

        def window() -> int:
            now = time.monotonic()
            if now - window_cache["at"] > 2.0:  # the cluster grows and shrinks; ask again now and then
                try:
                    threads = sum(client.nthreads().values())
                except Exception:  # noqa: BLE001 - a scheduler hiccup: keep the last size
                    threads = 0
                if threads or not window_cache["size"]:
                    window_cache["size"] = max(4, TASKS_PER_THREAD * threads)
                window_cache["at"] = now
            return int(window_cache["size"])

        def submit(batch: list[T], alone: bool) -> None:
            nonlocal counter
            counter += 1
            future = client.submit(_dask_task, processor, batch, *args, key=f"{name}-{token}-{counter}",
                                   retries=self.retries, pure=False)
            in_flight[future] = (batch, alone)
            pending.add(future)

        def fill() -> None:
            if suspects:  # the run drains, then suspects go one at a time, each alone on the cluster
                if not in_flight:
                    submit([suspects.popleft()], alone=True)
                return
            limit = window()
            while queue and len(in_flight) < limit:
                submit(queue.popleft(), alone=False)

        try:
            fill()
            for future in pending:
                batch, alone = in_flight.pop(future)
                try:
                    results = future.result()
                except dd.KilledWorker:
                    if alone:
                        yield processor.failed(batch[0], CRASHED)
                    else:
                        suspects.extend(batch)
                else:
                    yield from results
                finally:
                    future.release()
                fill()
        finally:
            if in_flight:
                try:
                    client.cancel(list(in_flight))
                except Exception:  # noqa: BLE001, S110 - the client may be closing; nothing left to save
                    pass
