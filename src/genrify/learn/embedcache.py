"""Song embeddings for learning genres from a library, and a cache that keeps them per file.

``genrify learn`` needs, for every labelled song, what the pretrained musicnn taggers make of it:
``MSD_musicnn``'s 200-dimensional embedding and both taggers' 50 tag probabilities, per segment.
The segments are exactly those ``genrify classify`` samples with the built-in model: the same
:class:`~genrify.classify.predict.SegmentPlan`, decoded by the same worker task
(:data:`genrify.classify.predict.SEGMENTER`, seeking on long songs, a short song filled by repetition), and
the taggers run as the built-in model runs them (ONNX Runtime on a CPU where it is installed). So
a head learned from these embeddings sees at classification time the very numbers it learned from.

Embedding is the slow part of learning (decoding and two taggers per song), so each song's
embedding is cached (:class:`EmbeddingCache`), keyed like classification answers
(:class:`genrify.classify.results.ResultCache`, of which it is a kind): the file's resolved path, size and
modification time, the segment settings, and the taggers' weights. Learning again after tagging 20
more songs embeds only those 20 (a genre tag written by a tagger changes the file's modification
time, so retagged songs are embedded again too: the cache never serves a changed file). Every row
is committed as it is stored, so a run killed at any point (``kill -9`` included) loses no
embedding already stored; a damaged cache is set aside and a new one started, with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrify.audio.segments import SongSegments
from genrify.classify.predict import SEGMENTER, SegmentPlan, beside_workers
from genrify.classify.results import EMBEDDING_APPLICATION_ID, ResultCache, file_digest
from genrify.core.runner import LocalRunner, Runner, failure_reason
from genrify.defaults import DEFAULT_MAX_SEGMENTS, MAX_DURATION
from genrify.errors import ParameterError
from genrify.models.builtin import EMBEDDING, HEAD_FEATURES, TAGGER_NAMES

#: ``PRAGMA application_id`` of a genrify embedding cache ("Gnre"): not a results cache's, so that
#: neither kind of cache is ever taken for the other.
APPLICATION_ID = EMBEDDING_APPLICATION_ID
#: Changes whenever what is stored per song changes meaning (part of the cache key).
EMBEDDING_VERSION = 1
#: Segments per tagger call: the taggers' front ends hold about 15 MB per patch.
_BATCH = 8


@dataclass(frozen=True)
class SongEmbedding:
    """The pretrained taggers' view of one song, segment by segment.

    Attributes
    ----------
    path
        The file as given (display it with :func:`genrify.collection.library.display_path`).
    embedding
        ``(segments, 200)`` float32: ``MSD_musicnn``'s penultimate layer per sampled segment
        (:data:`~genrify.models.builtin.EMBEDDING`).
    taggrams
        ``{"MSD_musicnn": (segments, 50), "MTT_musicnn": (segments, 50)}`` float32 tag probabilities,
        one entry per tagger of :data:`~genrify.models.builtin.TAGGER_NAMES`.
    short
        The song was shorter than one segment (filled by the short-audio rule).
    not_music
        Why the song is not music (:func:`genrify.classify.musicness.check_song` on the same
        segments, as ``genrify classify`` judges it with the built-in model), or ``None``. A song
        embedded by a genrify before this check counts as music.
    """

    path: str
    embedding: np.ndarray
    taggrams: dict[str, np.ndarray]
    short: bool
    not_music: str | None = None


@dataclass(frozen=True)
class EmbedFailure:
    """A file that could not be embedded, and why (one line, without the path)."""

    path: str
    reason: str


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/genrify/embeddings.sqlite`` (``~/.cache`` by default): beside the results cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genrify" / EmbeddingCache.FILE_NAME


def segment_plan(max_segments: int | None = DEFAULT_MAX_SEGMENTS, max_duration: float | None = MAX_DURATION) -> SegmentPlan:
    """The segments ``genrify classify`` samples with the built-in model (no overlap, ``max_segments``
    spread evenly; 0 or ``None``: every segment).

    Raises
    ------
    ParameterError
        A negative ``max_segments`` or a bad ``max_duration``.
    """
    from genrify.audio.decode import check_max_duration
    from genrify.models.taggers import MUSICNN_PARAMS, PATCH_FRAMES

    if max_segments is not None and max_segments < 0:
        raise ParameterError(f"max_segments must be 0 (every segment) or more, not {max_segments}")
    check_max_duration(max_duration)
    return SegmentPlan(MUSICNN_PARAMS, PATCH_FRAMES, None, max_segments, max_duration)


@functools.cache
def taggers_identity() -> str:
    """The taggers' identity in the cache key: the SHA-256 of each packaged weight file."""
    from genrify.models.taggers import weight_path

    return ",".join(f"{name}:{file_digest(weight_path(name))[:16]}" for name in TAGGER_NAMES)


def encode(song: SongEmbedding) -> bytes:
    """A song's arrays as bytes (an ``.npz`` archive: plain arrays, read back without pickle)."""
    buffer = io.BytesIO()
    extra = {} if song.not_music is None else {"not_music": np.array(str(song.not_music))}
    np.savez(buffer, embedding=np.asarray(song.embedding, dtype=np.float32), short=np.array(bool(song.short)),
             **{name: np.asarray(song.taggrams[name], dtype=np.float32) for name in TAGGER_NAMES}, **extra)
    return buffer.getvalue()


def decode(data: bytes, path: str = "") -> SongEmbedding | None:
    """:func:`encode`'s bytes back as a :class:`SongEmbedding` for ``path``; ``None`` where they are
    not a whole, finite embedding of the expected shapes (the song is then embedded again)."""
    try:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as archive:
            embedding = archive["embedding"].astype(np.float32)
            taggrams = {name: archive[name].astype(np.float32) for name in TAGGER_NAMES}
            short = bool(archive["short"])
            not_music = str(archive["not_music"]) if "not_music" in archive.files else None
    except Exception:  # noqa: BLE001 - a damaged row of any kind is simply not a cached embedding
        return None
    n = embedding.shape[0] if embedding.ndim == 2 else 0
    if (n == 0 or embedding.shape != (n, HEAD_FEATURES["/".join(EMBEDDING)])
            or any(t.shape != (n, HEAD_FEATURES[f"{name}/taggram"]) for name, t in taggrams.items())
            or not _finite(embedding, taggrams)):
        return None
    return SongEmbedding(path=path, embedding=embedding, taggrams=taggrams, short=short, not_music=not_music)


def _finite(embedding: np.ndarray, taggrams: dict[str, np.ndarray]) -> bool:
    """Whether every value of a song's embedding and taggrams is finite."""
    return bool(np.isfinite(embedding).all()) and all(np.isfinite(t).all() for t in taggrams.values())


class EmbeddingCache(ResultCache):
    """Song embeddings keyed by file identity, segment settings and the taggers' weights.

    A :class:`~genrify.classify.results.ResultCache` in every rule (recognised by its application id, a
    damaged cache set aside, a locked or unwritable one means a run without it, another program's
    file refused) with its own application id, and every row committed at once: an embedding costs
    a decoding and two taggers, and a killed run must not lose one.

    Parameters
    ----------
    path
        The SQLite file (default :func:`default_cache_path`; made, with its folder, on first use).
    plan
        The segments embedded (:func:`segment_plan`).
    notify
        Called with one line when the cache cannot be used or a damaged one was set aside.

    Raises
    ------
    ParameterError
        ``path`` is not a genrify embedding cache (a folder, another kind of file, another
        program's database, a results cache); it is left untouched.
    """

    APPLICATION_ID = APPLICATION_ID
    WHAT = "embedding cache"
    FILE_NAME = "embeddings.sqlite"
    COMMIT_SECONDS = 0.0

    def __init__(self, path: str | Path | None = None, plan: SegmentPlan | None = None, *,
                 notify: Callable[[str], None] | None = None) -> None:
        plan = plan or segment_plan()
        self.plan = plan  #: the segments its embeddings were made from
        settings = {"version": EMBEDDING_VERSION, "hop": plan.hop_frames, "max_segments": plan.max_segments,
                    "chunk_frames": plan.chunk_frames, "features": plan.params.to_dict()}
        super().__init__(default_cache_path() if path is None else path, taggers_identity(), settings, notify=notify)

    def encode(self, result: Any) -> bytes | None:
        """A :class:`SongEmbedding`'s bytes (:func:`encode`)."""
        return encode(result) if isinstance(result, SongEmbedding) else None

    def decode(self, stored: Any) -> SongEmbedding | None:
        """The :class:`SongEmbedding` stored (its ``path`` set by :meth:`get`), or ``None``."""
        return decode(stored) if isinstance(stored, bytes) else None

    def get(self, path: str | Path) -> SongEmbedding | None:  # type: ignore[override]
        """The stored embedding of ``path`` if the file is unchanged, else ``None``."""
        found = super().get(path)
        return dataclasses.replace(found, path=str(path)) if isinstance(found, SongEmbedding) else None

    def put(self, path: str | Path, result: SongEmbedding) -> None:  # type: ignore[override]
        """Store ``result`` for ``path`` as the file is now (committed at once)."""
        super().put(path, result)  # type: ignore[arg-type]


def open_cache(
    path: str | Path | None = None,
    *,
    enabled: bool = True,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    notify: Callable[[str], None] | None = None,
) -> contextlib.AbstractContextManager[EmbeddingCache | None]:
    """The embedding cache that ``genrify learn`` and the beets plugin use, for a ``with`` block that
    closes it: at ``path`` (default :func:`default_cache_path`), for the segments ``max_segments``
    picks; ``None`` (nothing cached) where not ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    return EmbeddingCache(path, segment_plan(max_segments), notify=notify)


class Embedder:
    """The taggers as the built-in model runs them, giving a song's :class:`SongEmbedding` from
    its segments.

    The built-in network's own taggers are used (ONNX Runtime on a CPU where it is installed,
    PyTorch otherwise), so the embedding is the one classification computes on the same segments;
    on ONNX Runtime it needs no torch (``genrify learn`` runs in the core install).
    """

    def __init__(self) -> None:
        from genrify.models.builtin import load_builtin

        self.model = load_builtin(head=False)

    def embed(self, song: SongSegments, path: str) -> SongEmbedding:
        """The embedding of one song's segments ``(n, bands, frames)``.

        Raises
        ------
        PredictionError
            The taggers give non-finite values.
        """
        from genrify.classify import musicness
        from genrify.errors import PredictionError

        embeddings: list[np.ndarray] = []
        taggrams: dict[str, list[np.ndarray]] = {name: [] for name in TAGGER_NAMES}
        for i in range(0, song.segments.shape[0], _BATCH):
            # (batch, frames, bands) float32, as the built-in network reads them
            patches = np.ascontiguousarray(song.segments[i : i + _BATCH].transpose(0, 2, 1), dtype=np.float32)
            outputs = self.model.tagger_outputs(patches)
            for name in TAGGER_NAMES:
                taggrams[name].append(np.asarray(outputs[name]["taggram"], dtype=np.float32))
                if name == EMBEDDING[0]:
                    embeddings.append(np.asarray(outputs[name][EMBEDDING[1]], dtype=np.float32))
        result = SongEmbedding(path=path, embedding=np.concatenate(embeddings),
                               taggrams={n: np.concatenate(t) for n, t in taggrams.items()},
                               short=bool(song.short), not_music=musicness.check_song(song, self.model.params))
        if not _finite(result.embedding, result.taggrams):
            raise PredictionError(path, "the taggers gave non-finite values")
        return result


def embed_songs(
    paths: Iterable[str | Path],
    *,
    cache: EmbeddingCache | None = None,
    runner: Runner | None = None,
    jobs: int | None = None,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    max_duration: float | None = MAX_DURATION,
    progress: Callable[[int, int], None] | None = None,
    embedder: Embedder | None = None,
) -> Iterator[SongEmbedding | EmbedFailure]:
    """Embed many files, cached embeddings first; yields each file's result as it is ready (any order).

    Decoding runs in the runner's worker processes (the task classification uses), the taggers
    here. Each new embedding is stored in ``cache`` as soon as it is made. A file that cannot be
    decoded yields an :class:`EmbedFailure` and the rest go on; a file whose decoder crashes its
    worker fails alone.

    Parameters
    ----------
    paths
        Audio files (as given; the cache resolves them).
    cache
        Where embeddings are kept (``None``: none kept). Its segment plan is used.
    runner
        Default: ``LocalRunner(jobs)``; a remote runner is refused (the taggers run here).
    jobs
        Without ``runner``: decoding processes (``None``: one per core; 1 runs everything here).
    max_segments, max_duration
        Without ``cache``: which segments (:func:`segment_plan`); with one, its plan's.
    progress
        Called with ``(done, total)`` after each file (and once at the start).
    embedder
        The taggers (default: made here, once, if any file needs embedding).

    Raises
    ------
    ParameterError
        Both ``runner`` and ``jobs``; a remote runner; bad settings.
    """
    todo = [str(p) for p in paths]
    if runner is not None and jobs is not None:
        raise ParameterError("give either a runner or jobs, not both")
    if runner is not None and runner.remote:
        raise ParameterError("embeddings are made by taggers in this process: use a local runner")
    plan = segment_plan(max_segments, max_duration) if cache is None else cache.plan
    total, done = len(todo), 0
    if progress:
        progress(0, total)
    missing: list[str] = []
    for path in todo:
        found = cache.get(path) if cache is not None else None
        if found is None:
            missing.append(path)
            continue
        done += 1
        yield found
        if progress:
            progress(done, total)
    if not missing:
        return
    embedder = embedder or Embedder()
    runner = runner or LocalRunner(jobs)
    try:
        with beside_workers(runner, len(missing)):  # the taggers share the cores with the decoding workers
            for path, song, error in runner.run(SEGMENTER, missing, plan):
                result: SongEmbedding | EmbedFailure
                if song is None:
                    result = EmbedFailure(path, error or "could not be read")
                else:
                    try:
                        result = embedder.embed(song, path)
                    except Exception as exc:  # noqa: BLE001 - one song's failure is recorded; the run goes on
                        result = EmbedFailure(path, failure_reason(exc))
                    else:
                        if cache is not None:
                            cache.put(path, result)
                done += 1
                yield result
                if progress:
                    progress(done, total)
    finally:
        if cache is not None:
            cache.commit()

