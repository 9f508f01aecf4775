"""The classification service: which model, which files, cached answers, and what to do with them.

Everything that classifies more than a waveform goes through here: ``genrify classify``, the web app
and the beets plugin. :mod:`genrify.classify.predict` answers for one song; this module is the one
entry for many.

- A :class:`~genrify.classify.modelref.ModelRef` names the model without loading it (a model file,
  or the built-in model over some genres).
- :func:`classify_library` finds the audio under some paths, reuses cached answers, classifies the
  rest through a runner (:mod:`genrify.core.runner`: a local process pool that decodes while the
  model runs here, or :class:`genrify.core.distributed.DaskRunner`, whose workers load the model
  themselves), turns non-finite answers into failures, and returns a :class:`LibraryRun`: the
  results in input order and a :class:`RunSummary`. Listeners (:class:`~genrify.classify.listener.Listener`, after beets'
  plugin events) hear of the start, each result and the end: the CLI's progress bar is one.
- What is done with the results lives beside: genre tags in :mod:`genrify.classify.tagging`, folders
  and playlists in :mod:`genrify.classify.placing`.
- :func:`classify_song` classifies one song, as a library run would: the web app's answer.

>>> from genrify.classify.modelref import ModelRef
>>> from genrify.classify.service import classify_library
>>> run = classify_library(["~/Music"], ModelRef.builtin(["rock", "jazz"]))   # doctest: +SKIP
>>> run.summary.classified, run.summary.genres                                # doctest: +SKIP
(412, {'rock': 301, 'jazz': 111})
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrify.classify import outputs, predict
from genrify.classify.listener import Listener
from genrify.classify.modelref import ModelRef
from genrify.classify.predict import (
    SEGMENTER,
    Failure,
    Prediction,
    SegmentPlan,
    beside_workers,
    expectation_words,
    expected_accuracy,
)
from genrify.collection.library import AudioSearch, display_path, find_audio
from genrify.core.runner import LocalRunner, Processor, Runner
from genrify.defaults import DEFAULT_MAX_SEGMENTS, MAX_DURATION
from genrify.errors import ParameterError, PredictionError

if TYPE_CHECKING:
    from genrify.classify.results import ResultCache

#: One file's answer: a prediction, or why there is none.
Result = Prediction | Failure


# --- options ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifyOptions:
    """Which segments of each song the model sees: everything besides the model that changes an answer.

    Attributes
    ----------
    hop_seconds
        Time between segment starts (``None``: one segment's length, no overlap).
    max_segments
        Classify at most this many segments per song, spread evenly; 0 or ``None``: every segment.
    max_duration
        Refuse a file longer than this many seconds, a failure of that file
        (:func:`genrify.audio.segments.song_segments`); ``None``: no limit. Not part of the cache key:
        it decides whether a file is answered, never the answer.

    Raises
    ------
    ParameterError
        A hop that is not a positive, finite number of seconds, or a negative ``max_segments``.
    """

    hop_seconds: float | None = None
    max_segments: int | None = DEFAULT_MAX_SEGMENTS
    max_duration: float | None = MAX_DURATION

    def __post_init__(self) -> None:
        if self.hop_seconds is not None and not (self.hop_seconds > 0 and math.isfinite(self.hop_seconds)):
            raise ParameterError(f"segment hop must be a positive number of seconds, not {self.hop_seconds}",
                                 field="hop_seconds", problem=f"must be a positive number of seconds, not {self.hop_seconds}")
        if self.max_segments is not None and self.max_segments < 0:
            raise ParameterError(f"max_segments must be 0 (every segment) or more, not {self.max_segments}",
                                 field="max_segments", problem=f"must be 0 (every segment) or more, not {self.max_segments}")
        from genrify.audio.decode import check_max_duration

        check_max_duration(self.max_duration)

    @property
    def settings(self) -> dict[str, Any]:
        """The results cache's settings key. It names the music check's version, so that answers
        cached before the check (or by an older one) are worked out again."""
        from genrify.classify.musicness import CHECK_VERSION

        return {"hop": self.hop_seconds, "max_segments": self.max_segments, "music_check": CHECK_VERSION}


def open_cache(path: str | Path, ref: ModelRef, options: ClassifyOptions = ClassifyOptions(), *,
               notify: Callable[[str], None] | None = None) -> ResultCache:
    """The results cache at ``path`` for this model and these options (see :mod:`genrify.classify.results`).

    Raises
    ------
    ParameterError
        ``path`` is not a genrify results cache (left untouched).
    ModelFileError
        The model file cannot be read.
    """
    from genrify.classify.results import ResultCache

    return ResultCache(path, ref.cache_key, options.settings, notify=notify)


# --- one song --------------------------------------------------------------------------------------


def classify_song(path: str | Path, model: Any, options: ClassifyOptions = ClassifyOptions(), *,
                  name: str | None = None, whole: tuple[Any, float] | None = None) -> Prediction:
    """Classify one file, as :func:`classify_library` would (the same segments, the same answer).

    Parameters
    ----------
    path
        The audio file.
    model
        A loaded model (:meth:`genrify.classify.modelref.ModelRef.load`, or any :class:`genrify.classify.predict.Classifier`).
    options
        Which segments.
    name
        The path recorded in the answer (default: ``path``), e.g. an upload's client-side name.
    whole
        The file's whole features and length where the caller has them already
        (:func:`genrify.audio.segments.song_features`): a song read whole is not read again.

    Raises
    ------
    AudioError
        The file cannot be decoded.
    PredictionError
        No audio, or the model gives no finite answer.
    """
    prediction = predict.classify(path, model, hop_seconds=options.hop_seconds, max_segments=options.max_segments,
                                  whole=whole, max_duration=options.max_duration)
    prediction.path = str(path) if name is None else name
    return finite(prediction)


def finite(prediction: Prediction) -> Prediction:
    """The prediction, where every number in it is finite.

    Raises
    ------
    PredictionError
        A NaN or infinity: no answer, never to reach JSON, tags or folders.
    """
    (checked,) = outputs.checked([prediction])
    if isinstance(checked, Failure):
        raise PredictionError(prediction.path, checked.error)
    return prediction


# --- many files: decoding in workers, the model here or in them -----------------------------------


def _load_model(ref: ModelRef, *_plan: Any) -> None:
    # Setup (given the task's arguments), outside the per-file failure records: a model a worker
    # cannot load fails the task.
    from genrify.core.devices import set_threads

    set_threads(1)  # one worker process per core: threads inside would only contend
    ref.load()


def _classify_file(path: str, ref: ModelRef, hop_frames: int | None, max_segments: int | None,
                   max_duration: float | None = MAX_DURATION) -> Result:
    model = ref.load()
    plan = SegmentPlan(model.params, model.chunk_frames, hop_frames, max_segments, max_duration)
    return predict.predict_or_fail(plan.segments(path), model, path=path)


#: Decoding, features and the model for one file, in a worker that loads the model itself (once):
#: ``FILE_CLASSIFIER(path, ref, hop_frames, max_segments, max_duration)``.
FILE_CLASSIFIER: Processor[str, Result] = Processor(_classify_file, Failure, setup=_load_model)


def _classify_in_workers(todo: list[str], ref: ModelRef, runner: Runner, options: ClassifyOptions) -> Iterator[Result]:
    """Files classified where each worker loads the model itself (a Dask cluster, or a local pool
    for a model that answers in numpy); results as they come, carrying the paths of ``todo``.

    Raises
    ------
    ModelFileError
        The model file cannot be read (checked here first, once, not on every worker).
    ParameterError
        The workers cannot see the model or the files.
    """
    ref = ref.for_workers()
    hop_frames = predict.segment_hop(options.hop_seconds, ref.params)  # a bad model file fails here
    # Workers run elsewhere, in other folders: they get absolute paths; results carry the paths given
    # (relative ones where the caller handed in its own search).
    given = todo
    todo = [os.path.abspath(p) for p in given]
    shown = dict(zip(todo, given, strict=True))
    runner.check([*ref.worker_files, todo[0]], what="model file")
    for result in runner.run(FILE_CLASSIFIER, todo, ref, hop_frames, options.max_segments, options.max_duration):
        path = shown.get(result.path, result.path)  # type: ignore[arg-type]
        if isinstance(result, Failure):
            yield Failure(path, result.error)
        else:
            result.path = path
            yield result


def _classify_here(todo: list[str], ref: ModelRef, runner: Runner, options: ClassifyOptions,
                   device: Any) -> Iterator[Result]:
    """Files decoded in the runner's workers and classified by the model loaded here; results as
    they come. A file that cannot be decoded is a failure and the rest go on; a file whose decoder
    crashes its worker fails alone."""
    model = ref.load()
    if device is not None:  # a GPU: the torch network runs there (the CPU's models stay as loaded)
        model.network.to(device)
    plan = SegmentPlan.for_model(model, options.hop_seconds, options.max_segments, options.max_duration)
    with beside_workers(runner, len(todo)):
        for path, song, error in runner.run(SEGMENTER, todo, plan):
            if song is None:
                yield Failure(path, error or "could not be read")
            else:
                yield predict.predict_or_fail(song, model, path=path, device=device)


# --- a library run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """What a library run did.

    Attributes
    ----------
    classified
        Files with an answer (from the cache or not).
    from_cache
        Of those, answers read from the results cache.
    failed
        Files without an answer (unreadable, non-finite answers, inputs that do not exist).
    skipped
        Files left out because they were not modified since the ``since`` time of the run.
    passed_over
        Things inside the folders passed over (broken or looping links, unreadable folders).
    seconds
        Wall time of the run.
    genres
        Files of music per top genre, most frequent first (an answer flagged not music or of
        another genre has no genre to count: :attr:`not_music` and :attr:`other_genre` count those).
    not_music
        Files whose answer is flagged not music (speech, silence, a tone...).
    other_genre
        Files of music flagged as of none of the genres the model answers with (``--genres``, or a
        learned head's): :attr:`~genrify.classify.predict.Prediction.other_genre`.
    expected_accuracy
        Where the model is calibrated (:attr:`~genrify.classify.modelref.ModelRef.calibrated`), the
        share of its answers for music (not flagged of another genre) expected to be right
        (:func:`~genrify.classify.predict.expected_accuracy`); else ``None``.
    """

    classified: int
    from_cache: int
    failed: int
    passed_over: int
    seconds: float
    genres: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    expected_accuracy: float | None = None
    not_music: int = 0
    other_genre: int = 0

    def spread(self, n: int = 6) -> str:
        """Every genre answered, with its count, most frequent first; past ``n`` of them, the
        ``n`` most frequent and how many more (never a count that hides that others exist).

        Examples
        --------
        >>> RunSummary(4, 0, 0, 0, 1.0, {"jazz": 2, "classical": 1, "pop": 1}).spread()
        'jazz 2, classical 1, pop 1'
        >>> RunSummary(9, 0, 0, 0, 1.0, {g: 1 for g in "abcdefghi"}).spread(3)
        'a 1, b 1, c 1, +6 more genres'
        """
        items = list(self.genres.items())
        # One genre more is shown rather than counted: "+1 more genre" is no shorter than its name.
        shown = items if len(items) <= n + 1 else items[:n]
        rest = len(items) - len(shown)
        return ", ".join([f"{g} {c}" for g, c in shown] + ([f"+{rest} more genres"] if rest else []))

    @property
    def line(self) -> str:
        """One line for people, e.g. ``"18 classified (0 from cache), 1 failed in 2.1 s · rock 12, jazz 6"``."""
        spread = self.spread()
        skipped = f", {self.skipped} not modified since then skipped" if self.skipped else ""
        expected = f" · {expectation_words(self.expected_accuracy)}" if self.expected_accuracy is not None else ""
        not_music = (f" · {self.not_music} not music" if self.not_music else "") + (
            f" · {self.other_genre} of other genres" if self.other_genre else "")
        return (f"{self.classified} classified ({self.from_cache} from cache), {self.failed} failed{skipped} in "
                f"{self.seconds:.1f} s" + (f" · {spread}" if spread else "") + not_music + expected)


@dataclass
class LibraryRun:
    """The results of :func:`classify_library`, in input order, and its summary.

    Attributes
    ----------
    results
        One per file found, in the order found, then one :class:`~genrify.classify.predict.Failure` per
        input that does not exist or cannot be read.
    summary
        The counts.
    found
        What the search found: the files, the inputs missing, what was passed over.
    """

    results: list[Result]
    summary: RunSummary
    found: AudioSearch

    @property
    def predictions(self) -> list[Prediction]:
        """The answers (no failures), in order."""
        return [r for r in self.results if isinstance(r, Prediction)]

    @property
    def failures(self) -> list[Failure]:
        """The files without an answer, in order."""
        return [r for r in self.results if isinstance(r, Failure)]


def require_audio(found: AudioSearch, paths: Sequence[str | Path], *, hint: str = "") -> AudioSearch:
    """``found`` (:func:`genrify.collection.library.find_audio` of ``paths``), where it holds a file to classify.

    Parameters
    ----------
    found
        What the search found.
    paths
        The inputs searched, named in the error.
    hint
        Added after the count of things passed over, e.g. how to list them.

    Raises
    ------
    ParameterError
        Nothing to classify: every input is missing, or the folders hold no audio.
    """
    if not found.files:
        problems = [f"{display_path(raw)}: {reason}" for raw, reason in found.missing]
        folders = [p for p in paths if os.path.isdir(p)]
        if folders:
            problems.append(f"no audio files in {', '.join(display_path(p) for p in folders)}"
                            + (f" ({len(found.passed_over)} passed over{hint})" if found.passed_over else ""))
        raise ParameterError("; ".join(problems))
    return found


def classify_library(
    paths: Sequence[str | Path] | AudioSearch,
    ref: ModelRef,
    *,
    options: ClassifyOptions = ClassifyOptions(),
    runner: Runner | None = None,
    cache: ResultCache | None = None,
    listeners: Sequence[Listener] = (),
    device: Any = None,
    since: float | None = None,
    since_whole_folders: bool = False,
) -> LibraryRun:
    """Classify the audio under ``paths``, reusing cached answers; results in input order.

    The one entry for many files. With a remote runner (:class:`~genrify.core.distributed.DaskRunner`),
    or a local pool and a model that answers in numpy on the CPU (the built-in model, a model file's
    ONNX graph), each worker loads the model from ``ref`` once and classifies whole files, and only
    the answers travel back; otherwise decoding runs in the workers and the model
    (:meth:`~genrify.classify.modelref.ModelRef.load`) here. A file that cannot be read, or
    whose answer is not finite, becomes a :class:`~genrify.classify.predict.Failure` and the run
    goes on; a file whose decoder crashes its worker fails alone.

    Parameters
    ----------
    paths
        Audio files and folders (searched recursively, :func:`genrify.collection.library.find_audio`), or
        what that search found already (a caller that checks its outputs against the inputs).
    ref
        The model.
    options
        Which segments.
    runner
        Default: a :class:`~genrify.core.runner.LocalRunner` over every core. A remote runner's
        workers must see the files (and a model file) at the same absolute paths.
    cache
        Results of earlier runs (:func:`open_cache`); new answers are added to it. Not closed here.
    listeners
        Told of the start, each result and the end (:class:`~genrify.classify.listener.Listener`).
    device
        Where the model runs in this process: a torch device (a GPU) or ``None``, where it was loaded
        (the CPU; the built-in model in numpy and ONNX Runtime, without torch;
        :func:`genrify.core.devices.compute_device` gives one or the other).
    since
        A POSIX time: files not modified since then are left out (counted as skipped, not in the
        results), so that a run over a big library can take only what was added or changed.
    since_whole_folders
        With ``since``: keep every file of a folder where one file changed, so that an album's
        answer is pooled over all its tracks, not only over the one just added (the others'
        answers come from the cache).

    Raises
    ------
    ParameterError
        Nothing to classify (see :func:`require_audio`); bad settings; the workers cannot see the files.
    ModelFileError
        The model cannot be loaded.
    """
    started = time.perf_counter()
    found = paths if isinstance(paths, AudioSearch) else require_audio(find_audio(paths), paths)
    runner = runner if runner is not None else LocalRunner()
    skipped = 0
    if since is not None:
        recent = [p for p in found.files if _modified_since(p, since)]
        if since_whole_folders:
            folders = {os.path.dirname(p) for p in recent}
            recent = [p for p in found.files if os.path.dirname(p) in folders]
        skipped = len(found.files) - len(recent)
        found = AudioSearch(recent, found.missing, found.passed_over)
    for listener in listeners:
        listener.on_start(found)

    def tell(result: Result, cached: bool) -> None:
        for listener in listeners:
            listener.on_result(result, cached)

    done: dict[str, Result] = {}
    todo: list[str] = []
    from_cache = 0
    for path in found.files:
        hit = cache.get(path) if cache is not None else None
        if hit is not None:
            prediction = Prediction.from_dict(hit)
            prediction.path = path
            (done[path],) = outputs.checked([prediction])  # a damaged entry is no answer
            from_cache += isinstance(done[path], Prediction)
            tell(done[path], True)
        else:
            todo.append(path)
    try:
        for result in _classify_paths(todo, ref, runner, options, device):
            # A non-finite answer is a failure of its file: never cached, never NaN in JSON or tags.
            (result,) = outputs.checked([result])
            done[result.path] = result  # type: ignore[index]
            if cache is not None and isinstance(result, Prediction):
                cache.put(result.path, result.to_dict(timeline=True))  # type: ignore[arg-type]
            tell(result, False)
    finally:
        if cache is not None:
            cache.commit()
    results = [done[p] for p in found.files] + [Failure(raw, reason) for raw, reason in found.missing]
    answers = [r for r in results if isinstance(r, Prediction)]
    summary = RunSummary(
        classified=len(answers), from_cache=from_cache, failed=len(results) - len(answers),
        passed_over=len(found.passed_over), seconds=time.perf_counter() - started,
        # Most frequent first; ties in the order first answered.
        genres=dict(Counter(r.genre for r in answers if not r.not_music and not r.other_genre).most_common()),
        skipped=skipped, not_music=sum(bool(r.not_music) for r in answers),
        other_genre=sum(r.other_genre and not r.not_music for r in answers),
        # What is not music has no right genre: the estimate is of the answers for music.
        # Nor is an answer flagged of another genre: its confidence is among genres it is likely none of.
        expected_accuracy=expected_accuracy(r.confidence for r in answers if not r.not_music and not r.other_genre)
        if ref.calibrated else None,
    )
    run = LibraryRun(results, summary, found)
    for listener in listeners:
        listener.on_finish(run)
    return run


def _modified_since(path: str, since: float) -> bool:
    """Whether ``path`` changed at or after ``since`` (a file that cannot be stat'ed is kept: its
    failure is reported by the run, never hidden by a skip)."""
    try:
        st = os.stat(path)
    except OSError:
        return True
    return max(st.st_mtime, st.st_ctime) >= since


def _classify_paths(todo: list[str], ref: ModelRef, runner: Runner, options: ClassifyOptions,
                    device: Any) -> Iterator[Result]:
    """The uncached files' results, as they come: workers load the model (remote), or it runs here."""
    if not todo:
        return
    pooled = isinstance(runner, LocalRunner) and not runner.runs_here(len(todo))
    if runner.remote or (pooled and device is None and ref.answers_in_numpy):
        # A model that answers in numpy on the CPU (the built-in model, a graph from a model file)
        # is cheap to load in every worker: each worker then does a whole file on one core, and no
        # core waits for one process's model. With the model here and decoding in the workers, the
        # taggers (three quarters of a song's time) ran on one core: 2.1 songs/s instead of 4.
        yield from _classify_in_workers(todo, ref, runner, options)
    else:
        yield from _classify_here(todo, ref, runner, options, device)


__all__ = [
    "FILE_CLASSIFIER",
    "ClassifyOptions",
    "LibraryRun",
    "Result",
    "RunSummary",
    "classify_library",
    "classify_song",
    "finite",
    "open_cache",
    "require_audio",
]
