"""Fill a feature store from a music library, in parallel, resumably.

The parent process scans the library, decides what needs doing, hands tracks to a process pool and
is the manifest's only writer. Each worker decodes one track block by block, computes its log-mel,
writes the array into the store atomically, reads the artist tag, and returns a small
:class:`TrackResult` (never the array: that would cost a copy through a pipe per track).

A track that cannot be decoded is recorded as failed with its reason and the run goes on. A worker
that dies outright (a decoder crash) breaks the pool: the pool is rebuilt and the tracks that were
in flight are tried again one at a time, so the file that crashed is found and reported, and one
poisonous file cannot end the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrify.errors import AudioError, ParameterError
from genrify.features import FeatureParams
from genrify.library import Library, Track, scan
from genrify.store import FeatureStore

#: Tracks shorter than this many frames cannot fill one training chunk; they are stored and flagged.
SHORT_FRAMES = 128
#: Peak amplitude under which a track counts as silent (-80 dBFS).
SILENCE_PEAK = 1e-4
_TRACKS_PER_TASK = 4


@dataclass(frozen=True)
class TrackResult:
    """What a worker reports about one track."""

    track: Track
    array: str | None = None
    artist: str | None = None
    duration: float = 0.0
    frames: int = 0
    flags: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the features were stored."""
        return self.error is None


@dataclass
class ExtractSummary:
    """What an extraction run did."""

    store: str
    total: int = 0  #: tracks in the library
    done: int = 0  #: tracks extracted in this run
    unchanged: int = 0  #: tracks skipped as already stored and unchanged
    failed: list[tuple[str, str]] = field(default_factory=list)  #: (path, reason)
    flagged: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  #: (path, flags)
    removed: int = 0  #: tracks forgotten because their file left the library
    #: (path, problem) of tracks recorded done whose array was missing or damaged; redone in this run
    repaired: list[tuple[str, str]] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  #: scan's skips
    audio_seconds: float = 0.0  #: audio extracted in this run
    wall_seconds: float = 0.0
    stored: int = 0  #: done tracks of this library in the store after the run

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio extracted per second of wall time."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def default_jobs() -> int:
    """Worker processes to use by default: every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def extract_track(track: Track, store_dir: str, params: FeatureParams) -> TrackResult:
    """Decode one track, compute its log-mel, and write it into the store.

    Runs in a worker process; never raises for a bad file (the error is in the result).
    """
    from genrify import audio
    from genrify.features import log_mel_stream
    from genrify.store import write_array
    from genrify.tags import read_artist

    peak = 0.0
    samples = 0

    def measured(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal peak, samples
        for block in blocks:
            if block.size:
                peak = max(peak, float(block.max()), -float(block.min()))
            samples += block.size
            yield block

    try:
        features = log_mel_stream(measured(audio.stream(track.path, params.sample_rate)), params, dtype=np.float16)
        if not np.isfinite(features).all():
            raise AudioError(track.path, "decoded to non-finite values")
        name = write_array(store_dir, track.path, features)
    except AudioError as exc:
        return TrackResult(track, error=exc.reason)
    except MemoryError:
        return TrackResult(track, error="out of memory while decoding")
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a run over thousands
        return TrackResult(track, error=f"unexpected {type(exc).__name__}: {exc}")
    frames = int(features.shape[1])
    flags = []
    if frames < SHORT_FRAMES:
        flags.append("short")
    if peak < SILENCE_PEAK:
        flags.append("silent")
    return TrackResult(
        track,
        array=name,
        artist=read_artist(track.path),
        duration=samples / params.sample_rate,
        frames=frames,
        flags=tuple(flags),
    )


def _init_worker(params: FeatureParams) -> None:
    import torch

    from genrify.features import _cached_transform

    # One thread per process: the pool already fills every core, and oversubscription is slower.
    torch.set_num_threads(1)
    _cached_transform(params, False)  # build the transform while the pool starts, not in the first task
    # No stderr silencing here: genrify.audio sends the decoders' chatter (libmpg123's resync
    # notes) to the log, so a worker's stderr stays open for what matters (a crash's last words).


def extract(
    music_dir: str | Path,
    store_dir: str | Path,
    *,
    params: FeatureParams | None = None,
    jobs: int | None = None,
    force: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[TrackResult], None] | None = None,
    library: Library | None = None,
    in_process: bool | None = None,
    client: Any = None,
) -> ExtractSummary:
    """Extract the log-mel features of every track of a library into a store.

    Parameters
    ----------
    music_dir
        Library root, laid out as ``MUSIC_DIR/<genre>/...``.
    store_dir
        Feature store directory; created if missing.
    params
        Feature parameters; ``None`` uses the store's own (the defaults for a new store).
    jobs
        Worker processes; ``None`` uses every core.
    force
        Redo every track, even unchanged ones.
    on_start
        Called once with the number of tracks to extract.
    on_result
        Called in this process after each track, with its result.
    library
        An already made :func:`~genrify.library.scan` of ``music_dir`` (saves scanning twice).
    in_process
        Decode in this process instead of worker processes. Default: when ``jobs == 1``. Workers
        isolate the run from a decoder that crashes on a damaged file; in-process is easier to debug.
    client
        A Dask client (:func:`genrify.distributed.connect`): the cluster's workers extract, this
        process records; ``jobs`` and ``in_process`` are then unused.

    Returns
    -------
    ExtractSummary

    Raises
    ------
    LibraryError, StoreError, ParameterError
        The library cannot be scanned, the store opened, or ``jobs`` is not positive.
    """
    started = time.perf_counter()
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise ParameterError(f"jobs must be at least 1, not {jobs}")
    if in_process is None:
        in_process = jobs == 1
    library = library or scan(music_dir)
    with FeatureStore.create(store_dir, params) as store:
        store.lock()
        store.clean()
        summary = ExtractSummary(store=str(store.root), total=len(library.tracks), skipped_files=library.skipped)
        present = {t.path for t in library.tracks}
        summary.removed = store.remove(
            row.path for row in store.tracks(status=None, under=library.root) if row.path not in present
        )
        todo: list[Track] = []
        for track in library.tracks:
            row = store.get(track.path)
            current = (
                row is not None
                and row.status == "done"
                and row.size == track.size
                and row.mtime_ns == track.mtime_ns
                and row.genre == track.genre
            )
            if current and not force:
                # The manifest may say done while the array was deleted or cut short behind its
                # back: a stat and a header read per track find that, and the track is redone.
                assert row is not None
                problem = store.check(row)
                if problem is None:
                    summary.unchanged += 1
                    continue
                summary.repaired.append((track.path, problem))
            todo.append(track)
        if on_start:
            on_start(len(todo))
        workers = min(jobs, max(1, len(todo)))
        if client is not None:
            from genrify.distributed import extract_on_dask

            results = extract_on_dask(todo, str(store.root.resolve()), store.params, client)
        else:
            results = _run(todo, str(store.root), store.params, workers, in_process)
        for result in results:
            _record(store, result, summary)
            if on_result:
                on_result(result)
        summary.stored = len(store.tracks(under=library.root))
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _record(store: FeatureStore, result: TrackResult, summary: ExtractSummary) -> None:
    t = result.track
    if result.ok:
        assert result.array is not None
        store.record_done(
            path=t.path,
            genre=t.genre,
            size=t.size,
            mtime_ns=t.mtime_ns,
            artist=result.artist,
            duration=result.duration,
            frames=result.frames,
            array=result.array,
            flags=result.flags,
        )
        summary.done += 1
        summary.audio_seconds += result.duration
        if result.flags:
            summary.flagged.append((t.path, result.flags))
    else:
        store.record_failed(path=t.path, genre=t.genre, size=t.size, mtime_ns=t.mtime_ns, error=result.error or "")
        summary.failed.append((t.path, result.error or "unknown error"))


def _run(
    todo: list[Track], store_dir: str, params: FeatureParams, jobs: int, in_process: bool
) -> Iterator[TrackResult]:
    if not todo:
        return
    if in_process:
        for track in todo:
            yield extract_track(track, store_dir, params)
        return
    yield from _run_pool(todo, store_dir, params, jobs)


def _new_pool(jobs: int, params: FeatureParams) -> ProcessPoolExecutor:
    from genrify.runner import process_pool

    # Workers start clean and die with this process (genrify.runner); torch is imported and the
    # transform built once per worker, not once per track.
    return process_pool(jobs, initializer=_init_worker, initargs=(params,))


def extract_tracks(tracks: list[Track], store_dir: str, params: FeatureParams) -> list[TrackResult]:
    """:func:`extract_track` over a few tracks: one task, one round trip to a worker."""
    return [extract_track(track, store_dir, params) for track in tracks]


def _run_pool(
    todo: list[Track],
    store_dir: str,
    params: FeatureParams,
    jobs: int,
    task: Callable[[list[Track], str, FeatureParams], list[TrackResult]] | None = None,
) -> Iterator[TrackResult]:
    task = task or extract_tracks
    # A few tracks per task halve the inter-process traffic.
    per_task = max(1, min(_TRACKS_PER_TASK, len(todo) // (jobs * 8)))
    queue = [todo[i : i + per_task] for i in range(0, len(todo), per_task)][::-1]  # pop() keeps order
    # Tracks that were in flight when a worker died: one of them killed it. They run one at a time,
    # alone in the pool, so the culprit is known for sure and takes no other track down with it.
    suspects: list[Track] = []
    window = jobs * 3  # enough queued work to keep workers busy; bounded so memory is too
    pool = _new_pool(jobs, params)
    in_flight: dict[Future[list[TrackResult]], list[Track]] = {}
    try:
        while queue or in_flight or suspects:
            if suspects:
                if not in_flight:
                    batch = [suspects.pop()]
                    in_flight[pool.submit(task, batch, store_dir, params)] = batch
            else:
                while queue and len(in_flight) < window:
                    batch = queue.pop()
                    in_flight[pool.submit(task, batch, store_dir, params)] = batch
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
                        yield TrackResult(batch[0], error="the decoder crashed on this file")
                    else:
                        suspects.extend(batch)
            if broken:
                for future, batch in in_flight.items():  # died with the pool, innocent or not
                    future.cancel()
                    suspects.extend(batch)
                in_flight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = _new_pool(jobs, params)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
