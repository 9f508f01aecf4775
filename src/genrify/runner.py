"""Process pools whose workers die with the process that started them, however it ends.

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
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

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
    level = logging.getLogger("genrify").getEffectiveLevel()
    return ProcessPoolExecutor(
        max_workers=max_workers,
        mp_context=context(),
        initializer=_start_worker,
        initargs=(_lifeline_reader(), level, initializer, initargs),
    )


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
