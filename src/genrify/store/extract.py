"""Fill a feature store from a music library, in parallel, resumably.

The parent process scans the library, decides what needs doing, hands tracks to a runner
(:mod:`genrify.core.runner`: a local process pool, or a Dask cluster) and is the manifest's only writer. Each worker decodes one track block by block, computes its log-mel,
writes the array into the store atomically, reads the artist tag, and returns a small
:class:`TrackResult` (never the array: that would cost a copy through a pipe per track).

A track that cannot be decoded is recorded as failed with its reason and the run goes on. A worker
that dies outright (a decoder crash) costs only the track that crashed it: the runner reports that
track as failed, and one poisonous file cannot end the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genrify.audio.features import FeatureParams
from genrify.collection.library import Library, Track, scan
from genrify.core.runner import LocalRunner, Processor, Runner
from genrify.core.runner import default_jobs as default_jobs  # noqa: PLC0414 - kept importable from here
from genrify.defaults import CHUNK_FRAMES, MAX_DURATION
from genrify.errors import AudioError, ParameterError
from genrify.store.store import ARRAYS_DIR, FeatureStore

#: Tracks shorter than this many frames cannot fill one training chunk; they are stored and flagged.
SHORT_FRAMES = CHUNK_FRAMES
#: Peak amplitude under which a track counts as silent (-80 dBFS).
SILENCE_PEAK = 1e-4


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


def extract_track(track: Track, store_dir: str, params: FeatureParams,
                  max_duration: float | None = MAX_DURATION) -> TrackResult:
    """Decode one track, compute its log-mel, and write it into the store.

    Runs in a worker process; never raises for a bad file (the error is in the result, as for a
    track longer than ``max_duration`` seconds; ``None``: no limit).
    """
    return EXTRACTOR(track, store_dir, params, max_duration)


def _extract_track(track: Track, store_dir: str, params: FeatureParams,
                   max_duration: float | None = MAX_DURATION) -> TrackResult:
    """:func:`extract_track`, raising for a bad file (:data:`EXTRACTOR` records it)."""
    from genrify.audio import decode as audio
    from genrify.audio.features import log_mel_stream
    from genrify.collection.tags import read_artist
    from genrify.store.store import write_array

    peak = 0.0
    samples = 0

    def measured(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal peak, samples
        for block in blocks:
            if block.size:
                peak = max(peak, float(block.max()), -float(block.min()))
            samples += block.size
            yield block

    blocks = audio.stream(track.path, params.sample_rate, max_duration=max_duration)
    features = log_mel_stream(measured(blocks), params, dtype=np.float16)
    if not np.isfinite(features).all():
        raise AudioError(track.path, "decoded to non-finite values")
    name = write_array(store_dir, track.path, features)
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


def _failed(track: Track, reason: str) -> TrackResult:
    return TrackResult(track, error=reason)


def _init_worker(store_dir: str, params: FeatureParams, max_duration: float | None = MAX_DURATION) -> None:
    from genrify.audio.melspec import front_end
    from genrify.core.devices import set_threads

    # One thread per process: the pool already fills every core, and oversubscription is slower.
    set_threads(1)
    front_end(params, False)  # build the front end while the pool starts, not in the first task
    # No stderr silencing here: genrify.audio.decode sends the decoders' chatter (libmpg123's resync
    # notes) to the log, so a worker's stderr stays open for what matters (a crash's last words).


#: Extraction of one track, for any runner: ``EXTRACTOR(track, store_dir, params)``.
EXTRACTOR: Processor[Track, TrackResult] = Processor(_extract_track, _failed, setup=_init_worker)


def extract(
    music_dir: str | Path,
    store_dir: str | Path,
    *,
    params: FeatureParams | None = None,
    runner: Runner | None = None,
    jobs: int | None = None,
    force: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[TrackResult], None] | None = None,
    library: Library | None = None,
    processor: Processor[Track, TrackResult] = EXTRACTOR,
    follow_links: bool = False,
    verify: bool = False,
    max_duration: float | None = MAX_DURATION,
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
    runner
        Where the tracks are decoded (:mod:`genrify.core.runner`): a local process pool, or a Dask
        cluster (:class:`genrify.core.distributed.DaskRunner`) whose workers extract while this process
        records. Default: ``LocalRunner(jobs)``.
    jobs
        Without ``runner``: worker processes (``None``: every core; 1 decodes in this process).
    force
        Redo every track, even unchanged ones.
    on_start
        Called once with the number of tracks to extract.
    on_result
        Called in this process after each track, with its result.
    library
        An already made :func:`~genrify.collection.library.scan` of ``music_dir`` (saves scanning twice).
    processor
        The per-track work (default :data:`EXTRACTOR`; tests hand in stand-ins that crash).
    follow_links
        Without ``library``: follow symbolic links to folders outside ``music_dir``
        (:func:`~genrify.collection.library.scan`).
    verify
        Read every stored array of an unchanged track whole and redo those holding non-finite
        values (slow on a big store). Without it, a stat and a header read per track find arrays
        deleted or cut short, and tracks that ``genrify inspect --check`` recorded as damaged are
        redone.
    max_duration
        A track longer than this many seconds fails (by its header, before it is decoded; else
        when decoding passes it), with its reason; ``None``: no limit.

    Returns
    -------
    ExtractSummary

    Raises
    ------
    LibraryError, StoreError, ParameterError
        The library cannot be scanned, the store opened, ``jobs`` is not positive, or given
        together with ``runner``; or the runner's workers cannot see the store or the music.
    """
    started = time.perf_counter()
    if runner is not None and jobs is not None:
        raise ParameterError("give either a runner or jobs, not both")
    from genrify.audio.decode import check_max_duration

    check_max_duration(max_duration)  # here, not once per track as a failure of each
    runner = runner or LocalRunner(jobs)
    library = library or scan(music_dir, follow_links=follow_links)
    with FeatureStore.create(store_dir, params) as store:
        store.lock()
        store.clean()
        summary = ExtractSummary(store=str(store.root), total=len(library.tracks), skipped_files=library.skipped)
        present = {t.path for t in library.tracks}
        summary.removed = store.remove(
            row.path for row in store.tracks(status=None, under=library.root) if row.path not in present
        )
        todo: list[Track] = []
        recorded = store.recorded_damage()  # what `genrify inspect --check` found by reading arrays whole
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
                # Values overwritten in place need a full read: --verify, or inspect --check's record.
                assert row is not None
                problem = store.check(row, full=verify) or recorded.get(row.path)
                if problem is None:
                    summary.unchanged += 1
                    continue
                summary.repaired.append((track.path, problem))
            todo.append(track)
        if on_start:
            on_start(len(todo))
        for result in extract_tracks(todo, str(store.root), store.params, runner, processor=processor,
                                     max_duration=max_duration):
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


def extract_tracks(
    tracks: Sequence[Track],
    store_dir: str,
    params: FeatureParams,
    runner: Runner | None = None,
    *,
    processor: Processor[Track, TrackResult] = EXTRACTOR,
    max_duration: float | None = MAX_DURATION,
) -> Iterator[TrackResult]:
    """Extract tracks with a runner, writing their arrays into ``store_dir``; yield each track's
    result as it arrives (any order), without recording it (:func:`extract` records).

    Every track is yielded exactly once; a track whose decoder crashes its worker is yielded failed
    with :data:`genrify.core.runner.CRASHED`.

    Parameters
    ----------
    tracks
        Tracks to extract.
    store_dir
        The store's folder (as every worker sees it, for a remote runner).
    params
        Feature parameters (the store's).
    runner
        Default: in this process (``LocalRunner(1)``).
    processor
        The per-track work (default :data:`EXTRACTOR`).
    max_duration
        Longest track accepted, in seconds (see :func:`extract`).

    Raises
    ------
    ParameterError
        The runner's workers cannot see the store's folder or the tracks.
    """
    if not tracks:
        return
    runner = runner or LocalRunner(1)
    if runner.remote:
        store_dir = os.path.abspath(store_dir)  # workers run in other folders
    sample = [tracks[0].path, tracks[-1].path] if len(tracks) > 1 else [tracks[0].path]
    runner.check(sample, os.path.join(store_dir, ARRAYS_DIR), writable=True, what="feature store's folder")
    # The limit travels only where it is not the default: a processor written for
    # ``(track, store_dir, params)`` keeps working, and a worker's default is the same limit.
    limit = () if max_duration == MAX_DURATION else (max_duration,)
    yield from runner.run(processor, tracks, store_dir, params, *limit)

