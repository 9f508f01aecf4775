"""Extraction and classification on a Dask cluster: many machines, one feature store.

One machine uses :mod:`genrify.extract`'s process pool. Past one machine, a Dask scheduler hands
tasks to workers on other machines::

    dask scheduler                                       # on one machine: tcp://HOST:8786
    dask worker tcp://HOST:8786 --nthreads 1 --nworkers 8  # on every machine, one process per core

A task is a small batch of tracks. Workers read the audio from paths they see (a shared filesystem,
mounted at the same path everywhere) and write each track's array into the store's folder with the
same atomic protocol as the local pool (:func:`genrify.store.write_array`: a temporary name renamed
into place). Only small results come back: :class:`~genrify.extract.TrackResult` for extraction,
:class:`~genrify.predict.Prediction` or :class:`~genrify.predict.Failure` for classification. The
client, and only the client, records them (the manifest keeps its single writer).

Failures, from the mildest:

* a task that raises (a network filesystem hiccup) is run again (``retries``);
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
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from genrify.errors import ModelFileError, ParameterError
from genrify.segments import DEFAULT_MAX_SEGMENTS

if TYPE_CHECKING:
    from distributed import Client

    from genrify.extract import TrackResult
    from genrify.features import FeatureParams
    from genrify.library import Track
    from genrify.predict import Failure, Prediction

#: What a decoder crash is reported as (the local pool says the same).
CRASHED = "the decoder crashed on this file"
#: Tracks (or files) per task: few enough that a lost worker costs little, enough to amortise a
#: task's round trip (a few milliseconds) over tens of milliseconds of decoding per track.
BATCH_SIZE = 8
#: Times a task that raised is run again before its error reaches the caller.
RETRIES = 2
#: Tasks handed to the scheduler at once, per worker thread: enough to keep every worker busy
#: while results travel back, bounded so a million-track run never floods the scheduler.
TASKS_PER_THREAD = 3

_INSTALL = "Dask is not installed: pip install 'genrify[dask]' (or pip install 'dask[distributed]')"

T = TypeVar("T")
R = TypeVar("R")


def _dask() -> Any:
    """The ``distributed`` module, or a clear error saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ParameterError(_INSTALL) from None
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
    >>> from genrify import distributed                         # doctest: +SKIP
    >>> with distributed.connect("local") as client:            # doctest: +SKIP
    ...     print(client.dashboard_link)
    """
    dd = _dask()
    scheduler = (scheduler or "").strip()
    if not scheduler:
        raise ParameterError("no Dask scheduler given: use 'local' or an address such as tcp://HOST:8786")
    if scheduler == "local":
        from genrify.extract import default_jobs

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
            raise ParameterError(f"cannot start a local Dask cluster: {exc}") from None
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
        raise ParameterError(f"cannot reach the Dask scheduler at {shown}: {exc}") from None


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
        raise ParameterError(f"the Dask workers cannot import genrify ({exc}); install genrify on every worker") from None
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
    import torch

    torch.set_num_threads(1)
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


def _extract_task(tracks: list[Track], store_dir: str, params: FeatureParams) -> list[TrackResult]:
    """Worker: :func:`genrify.extract.extract_tracks` over one batch, single-threaded."""
    from genrify.extract import extract_tracks

    _tune_worker()
    return extract_tracks(tracks, store_dir, params)


def _run_batches(
    client: Client,
    items: Sequence[T],
    func: Callable[..., list[R]],
    args: tuple[Any, ...],
    *,
    batch_size: int,
    retries: int,
    crashed: Callable[[T], R],
    name: str,
) -> Iterator[R]:
    """Run ``func(batch, *args)`` over batches of ``items`` on the cluster; yield results as they come.

    At most a few tasks per worker thread are in flight at once (the window follows the cluster as
    workers join and leave). A task that ends in ``KilledWorker`` makes its items suspects: the
    scheduler blames every task that was on a dying worker, innocent or not, so each suspect runs
    again alone, with no other task of this run in flight, and one that still kills its worker
    then is surely the culprit: it becomes ``crashed(item)``. Any other error is raised after
    ``retries``.
    """
    dd = _dask()
    if batch_size < 1:
        raise ParameterError(f"batch_size must be at least 1, not {batch_size}")
    if retries < 0:
        raise ParameterError(f"retries cannot be negative, not {retries}")
    if not items:
        return
    queue: deque[list[T]] = deque(list(items[i : i + batch_size]) for i in range(0, len(items), batch_size))
    suspects: deque[T] = deque()  # items of tasks that died with a worker
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
        future = client.submit(func, batch, *args, key=f"{name}-{token}-{counter}", retries=retries, pure=False)
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
                    yield crashed(batch[0])
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


# --- extraction ------------------------------------------------------------------------------


def extract_on_dask(
    todo: list[Track],
    store_dir: str,
    params: FeatureParams,
    client: Client,
    *,
    batch_size: int = BATCH_SIZE,
    retries: int = RETRIES,
    check: bool = True,
    task: Callable[[list[Track], str, FeatureParams], list[TrackResult]] | None = None,
) -> Iterator[TrackResult]:
    """Extract tracks on a Dask cluster; yield each track's result as it arrives (any order).

    The workers decode, compute the log-mel and write the arrays into ``store_dir``; the caller
    records the results in the manifest (:func:`genrify.extract.extract` does). Every track of
    ``todo`` is yielded exactly once, whatever workers die on the way; a track whose decoder
    crashes its worker every time is yielded failed, with "the decoder crashed on this file".

    Parameters
    ----------
    todo
        Tracks to extract (absolute paths that every worker sees).
    store_dir
        The store's folder, as every worker sees it (a shared filesystem).
    params
        Feature parameters (the store's).
    client
        A Dask client (:func:`connect`).
    batch_size
        Tracks per task.
    retries
        Runs again of a task that raised, before the error reaches the caller.
    check
        First ask the connected workers whether they see the store and the tracks
        (:func:`check_workers`).
    task
        The worker function (default: :func:`genrify.extract.extract_tracks`, single-threaded).

    Raises
    ------
    ParameterError
        Dask missing, or the workers cannot see the store or the music.
    """
    if not todo:
        return
    store_dir = os.path.abspath(store_dir)
    if check:
        sample = [todo[0].path, todo[-1].path] if len(todo) > 1 else [todo[0].path]
        from genrify.store import ARRAYS_DIR

        check_workers(client, paths=sample, folder=os.path.join(store_dir, ARRAYS_DIR), writable=True,
                      what="feature store's folder")
    from genrify.extract import TrackResult

    yield from _run_batches(
        client, todo, task or _extract_task, (store_dir, params), batch_size=batch_size, retries=retries,
        crashed=lambda track: TrackResult(track, error=CRASHED), name="genrify-extract",
    )


# --- classification --------------------------------------------------------------------------

#: Models loaded in this worker process: each is loaded once. Keys: ``(path, size, mtime)`` for a
#: model file, ``("builtin", genres)`` for the built-in model.
_MODELS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_MODELS_LOCK = threading.Lock()
_MODELS_KEPT = 2


def cached_model(path: str | None, genres: Sequence[str] | None = None) -> Any:
    """A model, loaded once per process: the file at ``path`` while it is unchanged, or for ``None``
    the built-in model (:func:`genrify.models.builtin.load_builtin`) over ``genres``.

    Loading is safe (:func:`genrify.modelfile.load` never runs code from the file).

    Raises
    ------
    ModelFileError
        The file is missing or not a genrify model.
    """
    from genrify import modelfile

    if path is None:
        key: tuple[Any, ...] = ("builtin", tuple(genres) if genres else None)
    else:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ModelFileError(f"{path}: model file not found on this worker ({exc.strerror or exc})") from None
        key = (path, st.st_size, st.st_mtime_ns)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            if path is None:
                from genrify.models.builtin import load_builtin

                model = load_builtin(list(genres) if genres else None)
            else:
                model = modelfile.load(path)
            model.network.eval()
            for old in [k for k in _MODELS if k[0] == key[0]]:  # an older version of the same file
                del _MODELS[old]
            _MODELS[key] = model
            while len(_MODELS) > _MODELS_KEPT:
                _MODELS.popitem(last=False)
        else:
            _MODELS.move_to_end(key)
        return model


def _classify_task(
    paths: list[str],
    model_path: str | None,
    genres: tuple[str, ...] | None,
    hop_frames: int | None,
    max_segments: int | None,
) -> list[Prediction | Failure]:
    """Worker: decode, compute features and classify a few files with the cached model."""
    from genrify.errors import AudioError, PredictionError
    from genrify.predict import Failure, SegmentPlan, predict_or_fail

    _tune_worker()
    model = cached_model(model_path, genres)
    plan = SegmentPlan(model.params, model.chunk_frames, hop_frames, max_segments)
    out: list[Prediction | Failure] = []
    for path in paths:
        try:
            song = plan.segments(path)
        except (AudioError, PredictionError) as exc:
            out.append(Failure(path, exc.reason))
            continue
        except Exception as exc:  # noqa: BLE001 - one strange file must not end a library's run
            out.append(Failure(path, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(predict_or_fail(song, model, path=path))
    return out


def classify_on_dask(
    paths: Sequence[str],
    model_path: str | None,
    client: Client,
    *,
    genres: Sequence[str] | None = None,
    hop_seconds: float | None = None,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    batch_size: int = BATCH_SIZE,
    retries: int = RETRIES,
    check: bool = True,
    task: Callable[..., list[Prediction | Failure]] | None = None,
) -> Iterator[Prediction | Failure]:
    """Classify files on a Dask cluster; yield each file's result as it arrives (any order).

    Each worker process loads the model once (:func:`cached_model`) and runs decoding, features
    and the model; only the predictions travel back. The answers equal
    :func:`genrify.predict.classify_paths`' for the same files and settings.

    Parameters
    ----------
    paths
        Audio files, at paths every worker sees (relative ones are made absolute for the workers;
        results carry the paths as given).
    model_path
        The model file, at a path every worker sees; ``None`` for the built-in model
        (:func:`genrify.models.builtin.load_builtin`, packaged with genrify on every worker).
    client
        A Dask client (:func:`connect`).
    genres
        With the built-in model: answer among these genres only (as ``genrify classify --genres``).
    hop_seconds, max_segments
        Which segments (see :func:`genrify.predict.classify`).
    batch_size
        Files per task.
    retries
        Runs again of a task that raised, before the error reaches the caller.
    check
        First ask the connected workers whether they see the model and the files.
    task
        The worker function (for tests; default: decode, features, model).

    Raises
    ------
    ModelFileError
        The model file cannot be loaded (checked here first, then on the workers).
    ParameterError
        Dask missing, bad settings, unknown built-in genres, or the workers cannot see the model or
        the files.
    """
    from genrify.features import FeatureParams
    from genrify.predict import Failure, _hop_frames

    if model_path is None:
        from genrify.models.builtin import resolve_genres
        from genrify.models.musicnn import MUSICNN_PARAMS

        resolve_genres(genres)  # an unknown genre fails here, once, not on every worker
        params = MUSICNN_PARAMS
        chosen = tuple(genres) if genres else None
    else:
        from genrify import modelfile

        if genres:
            raise ParameterError("genres choose among the built-in model's genres; a trained model answers with its own")
        model_path = os.path.abspath(model_path)
        meta = modelfile.read_metadata(model_path)  # a bad model file fails here, once, not on every worker
        params = FeatureParams.from_dict(meta["features"])
        chosen = None
    hop_frames = _hop_frames(hop_seconds, params)
    if max_segments is not None and max_segments < 0:
        raise ParameterError(f"max_segments must be 0 (every segment) or more, not {max_segments}")
    given = [str(p) for p in paths]
    if not given:
        return
    # Workers run elsewhere, in other folders: they get absolute paths; results carry the paths given.
    todo = [os.path.abspath(p) for p in given]
    shown = dict(zip(todo, given, strict=True))
    if check:
        check_workers(client, paths=[p for p in (model_path, todo[0]) if p is not None], what="model file")
    for result in _run_batches(
        client, todo, task or _classify_task, (model_path, chosen, hop_frames, max_segments), batch_size=batch_size,
        retries=retries, crashed=lambda path: Failure(path, CRASHED), name="genrify-classify",
    ):
        path = shown.get(result.path, result.path)  # type: ignore[arg-type]
        if isinstance(result, Failure):
            yield Failure(path, result.error) if path != result.path else result
        else:
            result.path = path
            yield result
