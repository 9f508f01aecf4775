"""Tagging: answers in, genres set, the same way for files and for beets items.

One listener (:class:`TagListener`, a :class:`genrify.classify.service.Listener`) hears a library
run's answers and turns each into a :class:`TagPlan`: the track's ranking of genres (its own, or in
album mode its album's, :func:`genrify.classify.albums.track_choice`), whether that answer is
unsure, and the policy (:class:`genrify.collection.tagpolicy.TagPolicy`) that decides what the
genre field becomes once the field's genres and provenance are known. A sink (:class:`TagSink`)
reads the field, lets the plan decide once, and writes once:

- :class:`FileSink` writes the files' tags (:func:`genrify.collection.tags.update_genre`);
- the beets plugin's sink sets beets items' fields.

Outside album mode a track is tagged as its answer arrives, so that an interrupted run has tagged
every file it classified (the next run, answers from the cache and files already right left alone,
finishes the rest). In album mode a track waits for its album: an album is decided when its last
track has answered or failed (albums the run never finished, at its end).

>>> from genrify.classify.tagging import FileSink, TagListener                      # doctest: +SKIP
>>> tagger = TagListener(policy, FileSink(cache), model=ref.name)                   # doctest: +SKIP
>>> classify_library(["~/Music"], ref, listeners=[tagger]); print(tagger.report.line)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from genrify.classify.albums import Album, AlbumAnswer, album_answers, group_albums, track_choice
from genrify.classify.predict import Prediction
from genrify.classify.service import Listener, Result
from genrify.collection.library import AudioSearch
from genrify.collection.tagpolicy import Provenance, TagDecision, TagPolicy
from genrify.collection.tags import TagChange, update_genre
from genrify.errors import GenrifyError

if TYPE_CHECKING:
    from genrify.classify.results import ResultCache
    from genrify.classify.settings import ClassifySettings
    from genrify.classify.service import LibraryRun

__all__ = ["FileSink", "TagListener", "TagPlan", "TagReport", "TagSink", "keep_answer", "tag_files", "tag_results"]


def keep_answer(cache: ResultCache | None, prediction: Prediction, path: str | None = None) -> None:
    """Store a file's answer again after its tags were written: new tags (and mtime), the same audio.

    Parameters
    ----------
    cache
        The results cache (``None``: nothing to do).
    prediction
        The file's answer.
    path
        The file, where it is not (or no longer) ``prediction.path``: e.g. moved by beets' import.
    """
    if cache is not None:
        cache.put(str(prediction.path) if path is None else path, prediction.to_dict(timeline=True))


@dataclass(frozen=True)
class TagPlan:
    """What one track's answer proposes, before its genre field is read.

    Attributes
    ----------
    prediction
        The track's own answer (its ``path`` names the file).
    ranked
        ``(genre, probability)`` pairs, most important first: the track's, or its album's.
    unsure
        The answer behind ``ranked`` is unsure (the album's in album mode).
    confidence
        That answer's top probability.
    policy
        Decides the field's genres.
    model
        The model's name, for the provenance record.
    """

    prediction: Prediction
    ranked: tuple[tuple[str, float], ...]
    unsure: bool
    confidence: float
    policy: TagPolicy
    model: str = ""

    @property
    def path(self) -> str:
        """The track's file."""
        return str(self.prediction.path)

    @property
    def leaves_alone(self) -> bool:
        """No genre is sure enough to set, whatever the field holds: a sink need not read it."""
        return not self.policy.genres_for(self.ranked, unsure=self.unsure)

    def decide(self, current: Sequence[str], previous: Provenance | None) -> TagDecision:
        """The field's new genres from the genres and the provenance it holds now
        (:meth:`genrify.collection.tagpolicy.TagPolicy.decide`)."""
        return self.policy.decide(current, previous, self.ranked, unsure=self.unsure, model=self.model)


class TagSink(Protocol):
    """Where decided genres go: a file's tags, a beets item's fields."""

    def write(self, plan: TagPlan, *, dry_run: bool) -> TagChange | None:
        """Read the track's genre field, decide with ``plan`` and write the decision once.

        Returns what happened (``None``: left alone, the field not looked at). A
        :class:`~genrify.errors.GenrifyError` is that track's failure; the run goes on.
        """

    def group_done(self, paths: Sequence[str]) -> None:
        """Album mode: every answered track of one album has been written."""

    def finish(self) -> None:
        """The run is over: every track has been written."""


class FileSink:
    """Writes genres into the files' own tags (:func:`genrify.collection.tags.update_genre`).

    Parameters
    ----------
    cache
        A results cache to keep valid: a rewritten file gets a new mtime, and its answer (the audio
        is the same) is stored again under it.
    """

    def __init__(self, cache: ResultCache | None = None) -> None:
        self.cache = cache

    def write(self, plan: TagPlan, *, dry_run: bool) -> TagChange | None:
        """Tag one file; a file whose answer is not sure enough is not opened at all."""
        if plan.leaves_alone:
            return None
        change = update_genre(plan.path, plan.decide, separator=plan.policy.separator, id3v23=plan.policy.id3v23,
                              dry_run=dry_run)
        if change.written:
            keep_answer(self.cache, plan.prediction)
        return change

    def group_done(self, paths: Sequence[str]) -> None:
        """Nothing to do: each file was written whole."""

    def finish(self) -> None:
        """Commit the answers stored again (an album decided after the run's own commit)."""
        if self.cache is not None:
            self.cache.commit()


@dataclass
class TagReport:
    """What a :class:`TagListener` did (or, in a dry run, would do).

    Attributes
    ----------
    changes
        Every file whose tag was looked at, with what happened to it (:attr:`TagChange.status`:
        ``"written"``, ``"unchanged"`` or ``"kept"``, the last for a genre a person set that the
        tag mode keeps).
    failures
        ``(path, message)`` of files whose tag could not be written.
    left_alone
        Answers not written because they are unsure or below the policy's confidence.
    total
        Files considered.
    albums
        Album mode: albums decided (those with at least one answer).
    dry_run
        Nothing was written.
    """

    changes: list[TagChange] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    left_alone: int = 0
    total: int = 0
    albums: int = 0
    dry_run: bool = False

    def count(self, status: str) -> int:
        """Files with this :attr:`TagChange.status`."""
        return sum(c.status == status for c in self.changes)

    @property
    def line(self) -> str:
        """E.g. ``"genre tags: written 3, unchanged 12, kept 2 (set by a person), 4 unsure or below
        confidence, 0 failed"``."""
        verb = "would write" if self.dry_run else "written"
        return (f"genre tags: {verb} {self.count('written')}, unchanged {self.count('unchanged')}, "
                f"kept {self.count('kept')} (set by a person), {self.left_alone} unsure or below confidence, "
                f"{len(self.failures)} failed")


class TagListener(Listener):
    """Hears a library run's answers, groups them by track or album, and hands each track's plan to a sink.

    Parameters
    ----------
    policy
        Which genres, how sure, which tag mode; ``policy.album_mode`` groups the tracks by album.
    sink
        Where the genres go.
    model
        The model's name, for the provenance record.
    dry_run
        Change nothing; report what would change.
    groups
        Album mode: the albums, as lists of paths (e.g. beets albums). Default: the run's files
        grouped by their album tags, else their folder (:func:`genrify.classify.albums.group_albums`).

    Attributes
    ----------
    report
        What was written so far.
    """

    def __init__(self, policy: TagPolicy, sink: TagSink, *, model: str = "", dry_run: bool = False,
                 groups: Iterable[Sequence[str]] | None = None) -> None:
        self.policy, self.sink, self.model = policy, sink, model
        self.report = TagReport(dry_run=dry_run)
        self._given = None if groups is None else [tuple(str(p) for p in g) for g in groups]
        self._albums: list[Album] = []
        self._group_of: dict[str, int] = {}  # path -> its album (the first that names it)
        self._waiting: dict[int, set[str]] = {}  # album -> its tracks not answered yet
        self._answers: dict[int, dict[str, Prediction]] = {}

    def on_start(self, found: AudioSearch) -> None:
        """Album mode: know each album's tracks, to decide it when the last one has answered."""
        if not self.policy.album_mode:
            return
        files = set(found.files)
        self._albums = (group_albums(found.files) if self._given is None
                        else [Album(key=("group", str(i)), tracks=tracks) for i, tracks in enumerate(self._given)])
        for i, album in enumerate(self._albums):
            # Only a track the run will answer is waited for (a missing file never answers).
            self._waiting[i] = {t for t in album.tracks if t in files and self._group_of.setdefault(t, i) == i}
            self._answers[i] = {}

    def on_result(self, result: Result, cached: bool) -> None:
        """Tag the track now, or (album mode) once its album's last track has its outcome."""
        path = str(result.path)
        album = self._group_of.get(path) if self.policy.album_mode else None
        if album is None:  # outside album mode, or a track no album names: its own answer
            if isinstance(result, Prediction):
                self._tag(result, None)
            return
        if isinstance(result, Prediction):
            self._answers[album][path] = result
        # A failed track has its outcome too: it must not hold its album back.
        self._waiting[album].discard(path)
        if not self._waiting[album]:
            self._decide(album)

    def on_finish(self, run: LibraryRun) -> None:
        """Decide the albums still waiting and let the sink finish."""
        self.finish()

    def finish(self) -> None:
        """:meth:`on_finish` without a run (for a caller that fed the answers itself)."""
        for album in list(self._answers):
            self._decide(album)
        self.sink.finish()

    def _decide(self, album: int) -> None:
        answers = self._answers.pop(album, {})
        if not answers:
            return
        self.report.albums += 1
        pooled = album_answers(list(answers.values()), [self._albums[album]])
        for path in self._albums[album].tracks:
            if path in answers:
                self._tag(answers[path], pooled.get(path))
        self.sink.group_done([p for p in self._albums[album].tracks if p in answers])

    def _tag(self, prediction: Prediction, album: AlbumAnswer | None) -> None:
        self.report.total += 1
        ranked, unsure = track_choice(prediction, album, own_genre_above=self.policy.own_genre_above)
        confidence = album.confidence if album is not None else prediction.confidence
        plan = TagPlan(prediction, tuple(ranked), unsure, confidence, self.policy, self.model)
        try:
            change = self.sink.write(plan, dry_run=self.report.dry_run)
        except GenrifyError as exc:
            self.report.failures.append((plan.path, str(exc)))
            return
        if change is None:
            self.report.left_alone += 1
        else:
            self.report.changes.append(change)


def tag_results(predictions: Sequence[Prediction], policy: TagPolicy | None = None, *, model: str = "",
                groups: Iterable[Sequence[str]] | None = None, dry_run: bool = False,
                cache: ResultCache | None = None) -> TagReport:
    """Write each answer's genres into its file's genre tag, as ``policy`` says (after a run).

    The genres come from :meth:`~genrify.collection.tagpolicy.TagPolicy.decide` (how many, how
    sure, spelled by the genre map, meeting the genres already in the file by the tag mode) and are
    written with a provenance record, so that a later run knows which genres genrify set. A file
    that would not change is not rewritten: a run that is interrupted and started again only
    writes what it had not written yet.

    Parameters
    ----------
    predictions
        The answers.
    policy
        Default: :class:`~genrify.collection.tagpolicy.TagPolicy`'s defaults (which keep the
        genres a person set). With ``album_mode`` the tracks are grouped into albums.
    model
        The model's name, recorded in the provenance.
    groups, dry_run
        As for :class:`TagListener`.
    cache
        A results cache to keep valid (see :class:`FileSink`).

    Returns
    -------
    TagReport
        A file that cannot be tagged is a failure in it; the others are tagged.
    """
    listener = TagListener(policy if policy is not None else TagPolicy(), FileSink(cache), model=model,
                           dry_run=dry_run, groups=groups)
    listener.on_start(AudioSearch([str(p.path) for p in predictions], [], []))
    for prediction in predictions:
        listener.on_result(prediction, False)
    listener.finish()
    return listener.report


def tag_files(found: AudioSearch, settings: ClassifySettings, sink: Callable[[ResultCache | None], TagSink], *,
              groups: Iterable[Sequence[str]] | None = None, dry_run: bool = False, listeners: Sequence[Listener] = (),
              notify: Callable[[str], None] | None = None) -> TagReport:
    """Classify the files found and tag them as ``settings`` say, keeping the results cache valid after writes.

    Parameters
    ----------
    found
        The files (:func:`genrify.collection.library.find_audio`); with none, only the listeners hear
        of the search (its missing files) and nothing is classified.
    settings
        The model, segments, policy, workers and results cache.
    sink
        Makes the run's sink from its results cache (``None`` without one), which the sink keeps valid
        (:func:`keep_answer`): :class:`FileSink` for the files' own tags.
    groups
        Album mode: the albums, as for :class:`TagListener` (outside album mode, ignored).
    dry_run
        Change nothing; report what would change.
    listeners
        Told of the run too, before the tagger (:class:`~genrify.classify.service.Listener`).
    notify
        Says a results cache problem that is not an error (a cache made again).

    Returns
    -------
    TagReport
    """
    from genrify.classify.service import classify_library
    from genrify.core.runner import LocalRunner

    if not found.files:
        for listener in listeners:
            listener.on_start(found)
        return TagReport(dry_run=dry_run)
    cache = settings.open_cache(notify)
    try:
        tagger = TagListener(settings.policy, sink(cache), model=settings.ref.name, dry_run=dry_run,
                             groups=groups if settings.policy.album_mode else None)
        classify_library(found, settings.ref, options=settings.options, cache=cache, listeners=[*listeners, tagger],
                         runner=LocalRunner(settings.jobs))
    finally:
        if cache is not None:
            cache.close()
    return tagger.report
