"""Tagging: answers in, genres set, the same way for files and for beets items.

One listener (:class:`TagListener`, a :class:`genrify.classify.listener.Listener`) hears a library
run's answers and turns each into a :class:`TagPlan`: the track's ranking of genres (its own, or in
album mode its album's, :func:`genrify.classify.albums.track_choice`), whether that answer is
unsure, and the policy (:class:`genrify.collection.tagpolicy.TagPolicy`) that decides what the
genre field becomes once the field's genres and provenance are known. A sink (:class:`TagSink`)
reads the field, lets the plan decide once, and writes once:

- :class:`FileSink` writes the files' tags (:func:`genrify.collection.tags.update_genre`);
- :class:`RecordSink` sets the genres of records in a database (beets items), the subclass reading
  and storing the record's fields.

Outside album mode a track is tagged as its answer arrives, so that an interrupted run has tagged
every file it classified (the next run, answers from the cache and files already right left alone,
finishes the rest). In album mode a track waits for its album: an album is decided when its last
track has answered or failed (albums the run never finished, at its end).

>>> from genrify.classify.tagging import FileSink, TagListener                      # doctest: +SKIP
>>> tagger = TagListener(policy, FileSink(cache), model=ref.name)                   # doctest: +SKIP
>>> classify_library(["~/Music"], ref, listeners=[tagger]); print(tagger.report.line)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from genrify.classify.listener import Listener
from genrify.collection.records import FOLDER, RecordFields
from genrify.collection.tagpolicy import Provenance, TagDecision, TagPolicy
from genrify.core.runner import progress_lines
from genrify.errors import GenrifyError, UntaggableError

# The answers' types, the albums and the tag formats are imported where they are used: the beets
# plugin defines its sink on this module at every `beet` command, which must not load numpy.
if TYPE_CHECKING:
    from genrify.classify.albums import Album, AlbumAnswer
    from genrify.classify.predict import Prediction
    from genrify.classify.results import ResultCache
    from genrify.classify.service import LibraryRun, Result
    from genrify.classify.settings import ClassifySettings
    from genrify.collection.library import AudioSearch
    from genrify.collection.tags import TagChange

__all__ = ["FileSink", "RecordSink", "TagListener", "TagPlan", "TagReport", "TagSink", "keep_answer", "tag_files",
           "tag_results"]


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

    @property
    def chance_right(self) -> float:
        """The track's own probability that the first genre genrify proposes for it is right: the
        sum of its answer's probabilities of the model's genres the genre map spells so (in album
        mode the album chooses the genre, the track's answer says how likely it fits the track)."""
        proposed = self.policy.genres_for(self.ranked, unsure=self.unsure)
        if not proposed:
            return 0.0
        first, spell = proposed[0].casefold(), self.policy.genre_map.name
        p = self.prediction
        chance = float(sum(q for g, q in zip(p.genres, p.probabilities, strict=True) if (spell(g) or "").casefold() == first))
        # Written though flagged of another genre (--tag-unsure): its probability is a share among
        # genres that hold only asked_share of the belief.
        return chance * p.asked_share if p.other_genre and p.asked_share is not None else chance

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
        """Tag one file; a file whose answer is not sure enough is not written (in keep mode its tags
        are read, to count a person's genre as kept rather than the answer as unsure)."""
        from genrify.collection.tags import update_genre

        if plan.leaves_alone:
            return self._kept(plan, dry_run=dry_run) if plan.policy.mode == "keep" else None
        change = update_genre(plan.path, plan.decide, separator=plan.policy.separator, id3v23=plan.policy.id3v23,
                              dry_run=dry_run)
        if change.written:
            keep_answer(self.cache, plan.prediction)
        return change

    @staticmethod
    def _kept(plan: TagPlan, *, dry_run: bool) -> TagChange | None:
        """Keep mode, an answer too unsure to set: the file's change as ``"kept"`` where it holds a
        person's genre (kept whatever the answer), else ``None`` (left alone for the answer)."""
        from genrify.collection.tags import update_genre

        try:
            # Never a write: with no genre proposed, the decision keeps the field or leaves it alone.
            change = update_genre(plan.path, plan.decide, separator=plan.policy.separator, dry_run=True)
        except UntaggableError:  # counted apart, however sure the answer
            raise
        except GenrifyError:  # tags that cannot be read: left alone for the answer, as before
            return None
        return replace(change, dry_run=dry_run, notes=()) if change.status == "kept" else None

    def group_done(self, paths: Sequence[str]) -> None:
        """Nothing to do: each file was written whole."""

    def finish(self) -> None:
        """Commit the answers stored again (an album decided after the run's own commit)."""
        if self.cache is not None:
            self.cache.commit()


def _shown(genres: Sequence[str], none: str = "(none)") -> str:
    return "; ".join(genres) if genres else none


class RecordSink(Listener, RecordFields):
    """Sets the genres of records kept in a database (beets items), not in files: a :class:`TagSink`, and a
    :class:`~genrify.classify.listener.Listener` counting failures and saying how far the run is.

    Each record is decided by its plan, counted in :attr:`counts` (``classified``, ``changed``,
    ``unchanged``, ``kept``, ``unsure``, ``failed``, ``from_cache``, ``written``, ``not_written``; the caller
    may add ``done_before``) and stored at once, so that an interrupted run keeps what it did. A changed record
    whose file cannot be written is stored all the same (the database holds the change, and is the
    record's truth): it counts as changed and ``not_written``, never as failed, and a note at the end
    says how its file gets the genres later. A subclass supplies
    the record's fields: those of :class:`~genrify.collection.records.RecordFields`, and
    :meth:`classified_before`, :meth:`group_of`, :meth:`set_genres`, :meth:`mark`, :meth:`store`,
    :meth:`write_file` and (album mode) :meth:`sync_group`.

    Parameters
    ----------
    model
        The model's name, said as the run starts.
    pretend
        Store nothing; say what each record would become.
    write
        Write a changed record's file at once; else it is only kept in :attr:`changed`.
    say, info, warn
        Where each record's line goes (changes; with ``pretend`` every record), progress lines and warnings.
    every
        Seconds between progress lines.
    write_later
        What the user does to put a record's genres into its file once it can be written, said in the
        note on files not written (beets: ``"run `beet write`"``; by default ``"write them again"``).
    """

    def __init__(self, model: str, *, pretend: bool, write: bool, say: Callable[[str], None],
                 info: Callable[[str], None], warn: Callable[[str], None], every: float = 10.0,
                 write_later: str = "write them again") -> None:
        self.records: dict[str, list[Any]] = {}  # the records of each file, by its path (tag fills it)
        self.model, self.pretend, self.write_files = model, pretend, write
        self.say, self.info, self.warn = say, info, warn
        self.counts: Counter[str] = Counter()
        self.cache: ResultCache | None = None  # the results cache, kept valid after a file is written
        self.changed: list[tuple[Any, Prediction]] = []  # the changed records, with their answers
        self.progress = progress_lines(info, every)
        self.seen = self.total = 0
        self.chances: list[float] = []  # each changed record's chance that its first genre is right
        self.calibrated = False  # the run's model is (its summary says so at the end)
        self.write_later = write_later
        self.not_written: list[Any] = []  # changed records whose file could not be written, not noted yet

    # What a subclass supplies: the record's fields.
    def classified_before(self, record: Any) -> bool:
        """genrify classified the record in an earlier run."""
        raise NotImplementedError

    def group_of(self, record: Any) -> Any:
        """Album mode: the record's album (``None``: a group of its own)."""
        return None

    def set_genres(self, record: Any, genres: Sequence[str], provenance: Provenance) -> None:
        """Set the record's genres, and the record of which of them genrify set."""
        raise NotImplementedError

    def mark(self, record: Any, model: str, confidence: float) -> None:
        """Note on the record the model that classified it, and how sure it was."""
        raise NotImplementedError

    def store(self, record: Any) -> None:
        """Save the record."""
        raise NotImplementedError

    def write_file(self, record: Any) -> bool:
        """Write the record's genres into its file; False where that failed (said by the subclass)."""
        raise NotImplementedError

    def sync_group(self, records: Sequence[Any]) -> None:
        """Records of albums were stored: one album's (album mode), or every record changed (at the
        end of a run by track), e.g. to give a beets album the genres its tracks now share."""

    # The rest: the same for every database.
    def tag(self, records: Iterable[Any], settings: ClassifySettings, *, force: bool = False) -> TagReport:
        """Classify the records' files (:func:`tag_files`) and set their genres, by record or (album mode)
        by :meth:`group_of`; a group classified before is passed over (``done_before``) unless ``force``."""
        from genrify.collection.library import find_audio

        groups: dict[Any, list[Any]] = {}
        for i, record in enumerate(records):
            key = self.group_of(record) if settings.policy.album_mode else None
            groups.setdefault(("record", i) if key is None else ("group", key), []).append(record)
        todo = [g for g in groups.values() if force or not all(self.classified_before(r) for r in g)]
        self.counts["done_before"] += sum(map(len, groups.values())) - sum(map(len, todo))
        paths = [[self.path_of(record) for record in group] for group in todo]
        for group, group_paths in zip(todo, paths):
            for record, path in zip(group, group_paths):
                self.records.setdefault(path, []).append(record)
        # A record's path that is a folder (its file replaced by one) names no audio file: find_audio would
        # search it, and classify whatever it holds in the record's name's stead, or drop the record unsaid.
        folders = [path for path in self.records if os.path.isdir(path)]
        found = find_audio([path for path in self.records if path not in folders])
        found.missing.extend((path, FOLDER) for path in folders)  # said and counted failed as missing files are
        return tag_files(found, settings, self.using, groups=paths, dry_run=self.pretend, listeners=[self],
                         notify=self.warn)

    def using(self, cache: ResultCache | None) -> RecordSink:
        """This sink, keeping ``cache`` valid (:func:`tag_files`' sink factory)."""
        self.cache = cache
        return self

    def on_start(self, found: AudioSearch) -> None:
        """Warn of the files missing (their records failed), and know how many to classify."""
        for raw, reason in found.missing:
            self.warn(f"{os.path.abspath(raw)}: {reason}")
            self.counts["failed"] += len(self.records.get(os.path.abspath(raw), []))
        self.total = len(found.files)
        if self.total > 1:
            self.info(f"classifying {self.total} files with {self.model}")

    def on_result(self, result: Result, cached: bool) -> None:
        """Count a file's failure or cached answer, and say how far the run is."""
        from genrify.classify.predict import Failure

        self.seen += 1
        if isinstance(result, Failure):
            self.warn(f"{result.path}: {result.error}")
            self.counts["failed"] += len(self.records.get(str(result.path), []))
        else:
            self.counts["from_cache"] += cached
        self.progress("classifying", self.seen, self.total)

    def on_finish(self, run: LibraryRun) -> None:
        """Know whether the model is calibrated (the run's summary then expects a share right)."""
        self.calibrated = run.summary.expected_accuracy is not None

    def write(self, plan: TagPlan, *, dry_run: bool) -> TagChange | None:
        """Decide, count and store each record of the plan's file."""
        from genrify.collection.tags import TagChange

        change = None
        for record in self.records.get(plan.path, []):
            old, decision = self._set(record, plan)
            if decision.status != "left_alone":
                status = {"write": "written"}.get(decision.status, decision.status)
                change = TagChange(Path(plan.path), tuple(old), decision.genres, status == "written", dry_run, status)
        return change

    def _set(self, record: Any, plan: TagPlan) -> tuple[list[str], TagDecision]:
        existing = self.genres_of(record)
        decision = plan.decide(existing, self.provenance_of(record))
        status = {"write": "changed", "left_alone": "unsure"}.get(decision.status, decision.status)
        self.counts.update(["classified", status])
        if status == "changed":
            self.say(f"{record}: {_shown(existing)} -> {_shown(decision.genres)}")
        elif self.pretend:  # in parentheses already: "unsure (no genre)", not "unsure ((none))"
            self.say(f"{record}: {status} ({_shown(existing, 'no genre')})")
        if status == "changed":
            self.chances.append(plan.chance_right)
        if self.pretend:
            return existing, decision
        if decision.sets:
            self.set_genres(record, decision.genres, decision.provenance)
        self.mark(record, plan.model, round(plan.confidence, 3))
        if status == "changed":
            self.changed.append((record, plan.prediction))
        if status == "changed" and self.write_files:
            self._write(record, plan.prediction)
        self.store(record)  # a file not written too: the database holds the change
        return existing, decision

    def _write(self, record: Any, prediction: Prediction) -> bool:
        # A file that cannot be written is no failure of the record: its genres are set, stored and
        # marked done all the same (a later run passes it over), so it is counted apart and noted once.
        if not self.write_file(record):
            self.counts["not_written"] += 1
            self.not_written.append(record)
            return False
        self.counts["written"] += 1
        keep_answer(self.cache, prediction, self.path_of(record))  # new tags, the same audio
        return True

    def note_not_written(self) -> None:
        """Warn, once, of the changed records whose file could not be written (the subclass said why for
        each): the database holds their genres; :attr:`write_later` puts them in the files."""
        if n := len(self.not_written):
            files = "1 file" if n == 1 else f"{n} files"
            self.warn(f"{files} not written: the database holds the new genres; {self.write_later} once "
                      f"{'it' if n == 1 else 'they'} can be written")
        self.not_written.clear()

    def write_changed(self, settings: ClassifySettings) -> None:
        """Write the files of the changed records later (e.g. once an import has moved them), keeping the
        results cache of ``settings`` valid; each record written is stored again (its file's new mtime)."""
        try:
            self.cache = settings.open_cache(self.warn)
        except GenrifyError as exc:  # the cache only speeds a later run up
            self.warn(str(exc))
        try:
            for record, prediction in self.changed:
                if self._write(record, prediction):
                    self.store(record)
            self.note_not_written()
        finally:
            if self.cache is not None:
                self.cache.close()
            self.cache = None

    def group_done(self, paths: Sequence[str]) -> None:
        """Album mode: :meth:`sync_group` with the album's records (not with ``pretend``)."""
        if not self.pretend:
            self.sync_group([record for path in paths for record in self.records.get(path, [])])

    def finish(self) -> None:
        """Give the albums of the records changed the genres their tracks now share (by track as by
        album); commit the answers stored again after writes; note the files not written."""
        if not self.pretend and self.changed:
            self.sync_group([record for record, _ in self.changed])
        if self.cache is not None:
            self.cache.commit()
        self.note_not_written()

    @property
    def line(self) -> str:
        """E.g. ``"5 classified, 3 changed (2 written, 1 not written), 1 unchanged, 1 kept, 0 skipped, 0 failed"``:
        ``classified`` and ``failed`` add up to the records looked at (those done before aside)."""
        from genrify.classify.predict import expectation_words, expected_accuracy

        n = self.counts.__getitem__
        right = expectation_words(expected_accuracy(self.chances) if self.calibrated else None)
        changed = (f"{n('changed')} would change" + (f" ({right})" if right else "") if self.pretend
                   else f"{n('changed')} changed ({n('written')} written"
                   + (f", {n('not_written')} not written" if n("not_written") else "")
                   + (f"; {right}" if right else "") + ")")
        why = [f"{n(key)} {key.replace('_', ' ')}" for key in ("unsure", "done_before") if n(key)]
        cached = f" ({n('from_cache')} from cache)" if n("from_cache") else ""
        skipped = f"{n('unsure') + n('done_before')} skipped" + (f" ({', '.join(why)})" if why else "")
        return (f"{n('classified')} classified{cached}, {changed}, {n('unchanged')} unchanged, "
                f"{n('kept')} kept, {skipped}, {n('failed')} failed")


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
        ``(path, why)`` of files whose tag could not be written.
    untaggable
        ``(path, why)`` of files in a format that holds no genre tag genrify writes (wma, aac...):
        left as they are on every run, so counted apart from the failures.
    left_alone
        Answers not written because they are unsure or below the policy's confidence.
    left_with_album
        Album mode: of those, tracks left alone because their album's pooled answer is unsure
        (its tracks disagree, or none is sure), whatever their own answer.
    left_other
        Of those, answers flagged of none of the model's genres (``other genre``).
    left_refused
        Of those, answers whose genre the genre map's whitelist refuses (sure or not).
    total
        Files considered.
    albums
        Album mode: albums decided (those with at least one answer).
    dry_run
        Nothing was written.
    calibrated
        The model's probabilities are calibrated (:attr:`genrify.classify.modelref.ModelRef.calibrated`;
        a :class:`TagListener` learns it from the run's summary).
    written_chances
        For each file written (or, in a dry run, that would be), the chance that the first genre
        genrify wrote is right (:attr:`TagPlan.chance_right`).
    """

    changes: list[TagChange] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    untaggable: list[tuple[str, str]] = field(default_factory=list)
    left_alone: int = 0
    left_with_album: int = 0
    left_other: int = 0
    left_refused: int = 0
    total: int = 0
    albums: int = 0
    dry_run: bool = False
    calibrated: bool = False
    written_chances: list[float] = field(default_factory=list)

    @property
    def expected_accuracy(self) -> float | None:
        """Where the model is calibrated, the share of the files written whose first genre from
        genrify is expected to be right (:func:`genrify.classify.predict.expected_accuracy`); else
        ``None`` (and where none was written)."""
        from genrify.classify.predict import expected_accuracy

        return expected_accuracy(self.written_chances) if self.calibrated else None

    def count(self, status: str) -> int:
        """Files with this :attr:`TagChange.status`."""
        return sum(c.status == status for c in self.changes)

    @property
    def line(self) -> str:
        """E.g. ``"genre tags: written 3, unchanged 12, kept 2 (set by a person), 4 unsure or below
        confidence, 0 failed"``."""
        verb = "would write" if self.dry_run else "written"
        from genrify.classify.predict import expectation_words

        right = f" ({expectation_words(self.expected_accuracy)})" if self.expected_accuracy is not None else ""
        return (f"genre tags: {verb} {self.count('written')}{right}, unchanged {self.count('unchanged')}, "
                f"kept {self.count('kept')} (set by a person), {self.left_alone} unsure or below confidence"
                + (f" ({self.left_other} of other genres)" if self.left_other else "")
                + (f" ({self.left_refused} outside the genre map's whitelist)" if self.left_refused else "")
                + (f" ({self.left_with_album} with an album the model is unsure of as a whole)" if self.left_with_album else "")
                + f", {len(self.failures)} failed"
                + (f", {len(self.untaggable)} in formats without genre tags" if self.untaggable else ""))


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
    on_change
        Called with each file's change as soon as it is written (or, in a dry run, decided): a
        front end can say it while the run goes on, so an interrupted run has said what it wrote.

    Attributes
    ----------
    report
        What was written so far.
    """

    def __init__(self, policy: TagPolicy, sink: TagSink, *, model: str = "", dry_run: bool = False,
                 groups: Iterable[Sequence[str]] | None = None,
                 on_change: Callable[[TagChange], None] | None = None) -> None:
        self.policy, self.sink, self.model = policy, sink, model
        self.on_change = on_change
        self.report = TagReport(dry_run=dry_run)
        self._given = None if groups is None else [tuple(str(p) for p in g) for g in groups]
        self._albums: list[Album] = []
        self._group_of: dict[str, int] = {}  # path -> its album (the first that names it)
        self._waiting: dict[int, set[str]] = {}  # album -> its tracks not answered yet
        self._answers: dict[int, dict[str, Prediction]] = {}

    def on_start(self, found: AudioSearch) -> None:
        """Album mode: know each album's tracks, to decide it when the last one has answered."""
        from genrify.classify.albums import Album, group_albums

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
        from genrify.classify.predict import Prediction

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
        """Decide the albums still waiting and let the sink finish. The run says whether the model is
        calibrated (its summary then expects a share of answers right), and so the report."""
        self.report.calibrated = run.summary.expected_accuracy is not None
        self.finish()

    def finish(self) -> None:
        """:meth:`on_finish` without a run (for a caller that fed the answers itself)."""
        for album in list(self._answers):
            self._decide(album)
        self.sink.finish()

    def _decide(self, album: int) -> None:
        from genrify.classify.albums import album_answers

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
        from genrify.classify.albums import track_choice

        self.report.total += 1
        ranked, unsure = track_choice(prediction, album, own_genre_above=self.policy.own_genre_above)
        confidence = album.confidence if album is not None else prediction.confidence
        plan = TagPlan(prediction, tuple(ranked), unsure, confidence, self.policy, self.model)
        try:
            change = self.sink.write(plan, dry_run=self.report.dry_run)
        except UntaggableError as exc:
            self.report.untaggable.append((plan.path, exc.reason))
            return
        except GenrifyError as exc:
            # The reason alone where the error has one: the caller shows the path its own way.
            self.report.failures.append((plan.path, getattr(exc, "reason", None) or str(exc)))
            return
        if change is None:
            self.report.left_alone += 1
            self.report.left_with_album += album is not None and unsure and not prediction.not_music
            self.report.left_other += bool(prediction.other_genre and not prediction.not_music)
            self.report.left_refused += bool(ranked) and self.policy.genre_map.name(ranked[0][0]) is None
        else:
            self.report.changes.append(change)
            if change.status == "written":
                self.report.written_chances.append(plan.chance_right)
            if self.on_change is not None:
                self.on_change(change)


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
    from genrify.collection.library import AudioSearch

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
        Told of the run too, before the tagger (:class:`~genrify.classify.listener.Listener`).
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
