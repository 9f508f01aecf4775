"""Learn the genres of a library from the genres it already has: ``genrify learn``.

:func:`learn_library` reads the labels (:func:`genrify.learn.labels.read_labels`: the files' genre tags
through the genre map, or their genre folders), embeds every labelled song with the pretrained
taggers on the segments classification samples (:func:`genrify.learn.embedcache.embed_songs`, cached per
file so that learning again embeds only new or changed songs), fits a genre head on the embeddings
with settings chosen by an artist-grouped cross-check (:func:`genrify.learn.learner.learn_head`), and
writes it as a model file that ``classify --model``, ``serve``, ``tags`` and the beets plugin take
like any trained model. The cross-check's figures (the honest report) are stored in the file;
``genrify info`` and the web page show them.

>>> from genrify.learn.learning import learn_library
>>> summary = learn_library(["~/Music"], "mine.safetensors")      # doctest: +SKIP
>>> print(summary.line)                                            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrify.collection.genremap import GenreMap
from genrify.collection.library import display_path
from genrify.defaults import DEFAULT_MAX_SEGMENTS, DEFAULT_MIN_SONGS, MAX_DURATION
from genrify.errors import LabelError, ModelFileError
from genrify.learn.embedcache import (
    EmbeddingCache,
    EmbedFailure,
    SongEmbedding,
    embed_songs,
)
from genrify.learn.labels import LabelledSong, LibraryLabels, read_labels

if TYPE_CHECKING:
    from genrify.collection.records import RecordFields
    from genrify.learn.learner import LearnReport
    from genrify.models.builtin import GenreHead

#: ``progress(stage, done, total)``: stages are ``"reading tags"`` and ``"embedding"``.
Progress = Callable[[str, int, int], None]


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    """``progress`` for one stage: a ``(done, total)`` callback, or ``None`` without ``progress``."""
    return (lambda done, total: progress(stage, done, total)) if progress else None


@dataclass
class LearnSummary:
    """What :func:`learn_library` did.

    Attributes
    ----------
    out
        The model file written.
    labels
        The labels read (after the min-songs rule, before embedding failures).
    report
        The learner's honest report, as stored in the model file (JSON-ready).
    genres
        The genres the model answers with, most songs first.
    songs
        Songs it learned from.
    embedded, cached
        Songs embedded in this run, and songs whose embedding came from the cache.
    failed
        ``(path, reason)`` of labelled songs that could not be decoded (left out).
    dropped
        Genre -> songs for every genre left out (too few songs, counted after failures).
    seconds
        Wall time.
    notes
        Caveats about the labels for a person to read (e.g. songs whose artist is unknown).
    """

    out: Path
    labels: LibraryLabels
    report: dict[str, Any]
    genres: list[str]
    songs: int
    embedded: int = 0
    cached: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def unreadable(self) -> list[tuple[str, str]]:
        """Every file that could not be read: tags or audio."""
        return [*self.labels.unreadable, *self.failed]

    def lines(self, min_songs: int | None = None) -> list[str]:
        """What a front end prints after learning: the honest report (:func:`report_lines`), the
        notes, and :attr:`line` last."""
        return [*report_lines(self.report, dropped=self.dropped, min_songs=min_songs),
                *(f"note: {note}" for note in self.notes), self.line]

    @property
    def line(self) -> str:
        """One line: what was learned, from how much, how good, in how long."""
        top1 = self.report.get("cv_top1")
        figure = f", cross-validated top-1 {top1:.2f}" if isinstance(top1, (int, float)) else ""
        bad, over, refused = len(self.unreadable), len(self.labels.passed_over), len(self.labels.refused)
        return (f"learned {len(self.genres)} genres from {self.songs} songs{figure} -> {display_path(self.out)} "
                f"in {self.seconds:.1f} s · {self.embedded} embedded, {self.cached} from cache"
                + (f", {bad} unreadable" if bad else "")
                + (f", {over} passed over" if over else "")
                + (f" · {len(self.labels.untagged)} without a genre" if self.labels.untagged else "")
                + (f" · {refused} with genres the genre map leaves out" if refused else ""))


def keep_embedded(labels: LibraryLabels, embedded: set[str], min_songs: int) -> tuple[list[LabelledSong], dict[str, int]]:
    """The labelled songs whose embedding exists, and the min-songs rule applied again to them.

    Returns
    -------
    (list[LabelledSong], dict[str, int])
        The songs kept (each with only its kept genres), and genre -> songs for the genres left
        out now (with the earlier ones of ``labels.dropped``).

    Raises
    ------
    LabelError
        Fewer than two genres are left.
    """
    there = [s for s in labels.songs if s.path in embedded]
    counts = Counter(g for s in there for g in s.genres)
    kept = {g for g, n in counts.items() if n >= min_songs}
    dropped = dict(labels.dropped)
    dropped.update({g: counts.get(g, 0) for g in labels.genres if g not in kept})
    songs = [dataclasses.replace(s, genres=tuple(g for g in s.genres if g in kept)) for s in there]
    songs = [s for s in songs if s.genres]
    if len(kept) < 2:
        left = ", ".join(f"{g} ({n})" for g, n in dropped.items())
        raise LabelError(f"only {len(kept)} genre(s) left to learn once the songs that could not be decoded are left out"
                         f" (left out with fewer than {min_songs} songs: {left})")
    return songs, dropped


def learn_library(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    labels: str = "tags",
    genre_map: GenreMap | None = None,
    min_songs: int = DEFAULT_MIN_SONGS,
    cache: EmbeddingCache | None = None,
    jobs: int | None = None,
    follow_links: bool = False,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    max_duration: float | None = MAX_DURATION,
    folds: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
) -> LearnSummary:
    """Learn a genre model from a library's own genres and write it to ``out``.

    Parameters
    ----------
    inputs
        Folders (searched recursively) and files.
    out
        The model file to write (``.safetensors``); an existing file is replaced only if it is a
        genrify model.
    labels
        ``"tags"`` (the files' genre tags) or ``"folders"`` (the top folder under each folder given).
    genre_map
        Canonical names, aliases, whitelist (default: genrify's map); stored in the model, so its
        answers are spelled the same way.
    min_songs
        Genres with fewer songs are left out.
    cache
        The embedding cache (``None``: embed everything, keep nothing).
    jobs
        Decoding processes (``None``: one per core; 1 runs everything here).
    follow_links
        Follow symbolic links to folders outside the folders given.
    max_segments, max_duration
        Which segments are embedded, without a cache (a cache has its own plan): those
        ``genrify classify`` samples by default.
    folds, seed
        The learner's artist-grouped cross-check.
    progress
        ``progress(stage, done, total)`` while tags are read and songs embedded.
    notify
        One line at a time: the learner's steps and warnings.

    Returns
    -------
    LearnSummary

    Raises
    ------
    LibraryError
        Nothing to read.
    LabelError
        No genre in the library, or fewer than two genres to learn (also once the songs that cannot
        be decoded are left out).
    UsageError, ModelFileError
        As for :func:`learn_labels`.
    """
    from genrify.models.modelfile import check_destination

    started = time.monotonic()
    # Checked before any work: a run of an hour must not end by replacing a song or another program's file.
    destination = check_destination(out, inputs=[p for p in inputs if os.path.isfile(p)])

    library = read_labels(inputs, source=labels, genre_map=genre_map, min_songs=min_songs, follow_links=follow_links,
                          progress=_stage(progress, "reading tags" if labels == "tags" else "reading folders"))
    summary = learn_labels(library, destination.path, genre_map=genre_map, min_songs=min_songs, cache=cache, jobs=jobs,
                           max_segments=max_segments, max_duration=max_duration, folds=folds, seed=seed,
                           progress=progress, notify=notify, source=labels,
                           inputs=[display_path(os.path.abspath(p)) for p in inputs])
    return dataclasses.replace(summary, out=Path(out), seconds=time.monotonic() - started)


def learn_labels(
    library: LibraryLabels,
    out: str | Path,
    *,
    genre_map: GenreMap | None = None,
    min_songs: int = DEFAULT_MIN_SONGS,
    cache: EmbeddingCache | None = None,
    jobs: int | None = None,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    max_duration: float | None = MAX_DURATION,
    folds: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    source: str = "tags",
    inputs: Sequence[str] = (),
) -> LearnSummary:
    """Learn a genre model from labels already read and write it to ``out``: :func:`learn_library`
    after its labels are read, for labels from elsewhere (the beets plugin's, from beets' database,
    :func:`genrify.learn.labels.labels_from_values`).

    Parameters
    ----------
    library
        The labels (:func:`genrify.learn.labels.read_labels` or :func:`~genrify.learn.labels.labels_from_values`).
    source, inputs
        Where the labels came from, recorded in the model (``"beets"``, the query).
    out, genre_map, min_songs, cache, jobs, max_segments, max_duration, folds, seed, progress, notify
        As for :func:`learn_library`.

    Returns
    -------
    LearnSummary

    Raises
    ------
    LabelError
        Fewer than two genres (or artists) left once the songs that cannot be decoded are left out.
    UsageError
        ``out`` would replace something that is not a genrify model.
    ModelFileError
        The model file cannot be written.
    """
    from genrify.learn.learner import learn_head
    from genrify.models.modelfile import check_destination

    started = time.monotonic()
    say = notify or (lambda line: None)
    destination = check_destination(out, inputs=[s.path for s in library.songs])

    embeddings: dict[str, SongEmbedding] = {}
    failed: list[tuple[str, str]] = []
    hits_before = cache.hits if cache is not None else 0
    for result in embed_songs([s.path for s in library.songs], cache=cache, jobs=jobs, max_segments=max_segments,
                              max_duration=max_duration, progress=_stage(progress, "embedding")):
        if isinstance(result, EmbedFailure):
            failed.append((result.path, result.reason))
        else:
            embeddings[result.path] = result
    cached = (cache.hits - hits_before) if cache is not None else 0
    songs, dropped = keep_embedded(library, set(embeddings), min_songs)

    if len({s.group for s in songs}) < 2:
        raise LabelError(f"all {len(songs)} songs are of one artist (their album artist or artist tag, else their "
                         "folder): the cross-check that chooses the settings and measures the model needs songs of at "
                         "least two artists; tag the artists, or keep each artist's songs in a folder of their own")
    kinds = Counter(s.group.split(":", 1)[0] for s in songs)
    notes = []
    if kinds["song"]:
        notes.append(f"{kinds['song']} of the {len(songs)} songs have no artist tag and lie directly in a folder given "
                     "(or in their genre folder): each counts as an artist of its own, so the cross-check may overrate "
                     "the model where one artist's songs sound alike; tag the artists, or keep each artist's songs in "
                     "a folder of their own")
    if library.refused:
        left = ", ".join(f"{g} ({n})" for g, n in list(library.ignored.items())[:8])
        notes.append(f"{len(library.refused)} songs hold only genres the genre map's whitelist leaves out ({left}): "
                     "they are neither learned from nor counted without a genre, and tagging in keep mode leaves "
                     "their genres alone")
    learned_from = {
        "labels": source, "inputs": list(inputs), "min_songs": min_songs,
        "files_read": library.files_read, "songs": len(songs), "dropped": dropped,
        "unreadable": len(library.unreadable) + len(failed), "without_genre": len(library.untagged),
        "genre_map": genre_map.source if genre_map is not None else "default",
        "artists_from": {"tags": kinds["artist"], "folders": kinds["folder"], "none": kinds["song"]},
    }
    head, report = learn_head([embeddings[s.path] for s in songs], [s.genres for s in songs], [s.group for s in songs],
                              genre_map=genre_map, folds=folds, seed=seed, progress=say,
                              info={"learned_from": learned_from})
    notes += other_genre_notes(head, report, [embeddings[s.path] for s in songs], [s.genres for s in songs],
                               others=bool(dropped or library.untagged))
    report_dict = report.to_dict()
    try:
        destination.path.parent.mkdir(parents=True, exist_ok=True)
        head.save(destination.path)  # atomic: a temporary file renamed into place
    except OSError as exc:
        raise ModelFileError(f"{display_path(destination.path)}: cannot write the model file: {exc.strerror or exc}") from None
    return LearnSummary(out=Path(out), labels=library, report=report_dict, genres=list(head.genres), songs=len(songs),
                        embedded=len(embeddings) - cached, cached=cached, failed=failed, dropped=dropped,
                        seconds=time.monotonic() - started, notes=notes)


def other_genre_notes(head: GenreHead, report: LearnReport, songs: Sequence[SongEmbedding],
                      labels: Sequence[tuple[str, ...]], *, others: bool) -> list[str]:
    """What the run says of songs of genres the head did not learn: whether the built-in model's
    check flags them (``other genre``), and how often it flags the songs a person tagged;
    ``others``: the library holds songs of genres not learned (left out, or without a genre)."""
    import numpy as np

    from genrify.classify.predict import ASKED_SHARE_MIN
    from genrify.learn.learner import other_genre_shares, song_probabilities
    from genrify.models.builtin import unknown_genres

    shares = other_genre_shares(head, songs)
    notes = []
    if shares is None and others:
        unknown = unknown_genres(head.genres, head.info)
        what = f"the built-in model does not know {', '.join(unknown[:4])}" if unknown else "it learned every genre the built-in model knows"
        notes.append(f"it answers only in its {len(head.genres)} genres, and nothing flags a song of another "
                     f"(left out, or one nobody tagged) since {what}: such a song gets one of its genres; try a dry run first")
    elif shares is not None:
        if others:
            notes.append(f"it answers only in its {len(head.genres)} genres; where the built-in model finds a song of "
                         "none of them, the answer is flagged unsure (other genre) and tagging leaves it alone unless "
                         "told to tag unsure answers")
        flagged = shares < ASKED_SHARE_MIN
        if flagged.any():
            answered = [head.genres[int(song_probabilities(a)[0].argmax())] for a in report.answers]
            right = np.mean([answered[i] in labels[i] for i in np.flatnonzero(flagged)])
            notes.append(f"that check also finds {int(flagged.sum())} of the {len(songs)} songs you tagged of none of "
                         f"these genres (their cross-checked answers right {right:.0%} of the time): songs like them "
                         "would be left untagged")
    return notes


def _two_places(value: Any) -> str:
    """A figure with two decimals, ``-`` where the report holds no number."""
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def report_lines(report: dict[str, Any], *, dropped: dict[str, int] | None = None, min_songs: int | None = None) -> list[str]:
    """The honest report as lines of text: cross-validated top-1 and macro recall, each genre's
    recall with its songs, the built-in model's figures on the songs it covers, and the genres
    left out (``genrify learn`` prints them; ``genrify info`` shows them from the model file).

    The learner's own text (:meth:`genrify.learn.learner.LearnReport.lines`) where the report is whole;
    the main figures otherwise (a report written by another genrify version).
    """
    lines = _learner_lines(report)
    if lines is None:
        lines = _figure_lines(report)
    if dropped:
        rule = f" (fewer than {min_songs} songs)" if min_songs else ""
        lines.append("left out" + rule + ": " + ", ".join(f"{g} ({n} song{'s' if n != 1 else ''})" for g, n in dropped.items()))
    return lines


def _learner_lines(report: dict[str, Any]) -> list[str] | None:
    from genrify.learn.learner import LearnReport

    names = {f.name for f in dataclasses.fields(LearnReport)} - {"answers"}
    try:
        return LearnReport(**{k: v for k, v in report.items() if k in names}).lines()
    except (TypeError, KeyError, ValueError, AttributeError):  # missing or odd fields: the main figures only
        return None


def _figure_lines(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    songs, artists, folds = report.get("songs"), report.get("artists"), report.get("folds")
    how = ", ".join(x for x in (
        f"{songs} songs" if songs is not None else "", f"{artists} artists" if artists is not None else "",
        f"{folds} artist-grouped folds" if folds is not None else "") if x)
    lines.append(f"cross-validated ({how}): top-1 {_two_places(report.get('cv_top1'))}, "
                 f"macro recall {_two_places(report.get('cv_macro_recall'))}"
                 " (every song answered by a head that never heard its artist)")
    per = report.get("per_genre") or {}
    if isinstance(per, dict) and per:
        width = max(len(str(g)) for g in per)
        for genre, figures in per.items():
            figures = figures if isinstance(figures, dict) else {}
            lines.append(f"  {genre!s:<{width}}  recall {_two_places(figures.get('recall'))}  ({figures.get('songs', '?')} songs)")
    builtin = report.get("builtin")
    if isinstance(builtin, dict) and builtin:
        lines.append(f"built-in model on the {builtin.get('songs', '?')} songs its genres cover: "
                     f"top-1 {_two_places(builtin.get('top1'))}, macro recall {_two_places(builtin.get('macro_recall'))}")
    return lines


def learn_records(
    records: Iterable[Any],
    fields: RecordFields,
    out: str | Path,
    *,
    what: str,
    genre_map: GenreMap | None = None,
    min_songs: int = DEFAULT_MIN_SONGS,
    cache: bool = True,
    max_segments: int | None = DEFAULT_MAX_SEGMENTS,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
    every: float = 10.0,
    **options: Any,
) -> list[str]:
    """Learn from the genres another program keeps in its records (the beets plugin's ``genrify-learn``):
    each record's file, the genres a person set on it and its artist group, through
    :func:`~genrify.learn.labels.labels_from_values` and :func:`learn_labels` with the embedding cache
    ``genrify learn`` uses.

    Parameters
    ----------
    records
        The database's records (a file listed twice is learned once; a missing file is warned about).
    fields
        How the database keeps a song (:class:`~genrify.collection.records.RecordFields`).
    out, genre_map, min_songs, max_segments
        As for :func:`learn_labels`.
    what
        What the records are, named in lines and errors (``"item"``: ``"the 8 item(s) with a file"``).
    cache
        Use the embedding cache.
    say, warn, every
        Where progress lines go (at most every ``every`` seconds), and warnings (default ``say``).
    **options
        The rest of :func:`learn_labels`' settings (``jobs``, ``source``, ``inputs``).

    Returns
    -------
    list[str]
        :meth:`LearnSummary.lines`: what to print, the summary line last.
    """
    from genrify.core.runner import progress_lines
    from genrify.learn.embedcache import open_cache
    from genrify.learn.labels import artist_group, check_min_songs, labels_from_values

    check_min_songs(min_songs)
    warn = warn or say
    entries = [(path, fields.labels_of(record), artist_group(fields.artist_of(record), os.path.dirname(path)))
               for path, record in fields.files(records, warn).items()]
    if not entries:
        raise LabelError(f"no {what} with a file to learn from (none matched, or their files are missing)")
    with open_cache(enabled=cache, max_segments=max_segments, notify=warn) as store:
        labels = labels_from_values(entries, genre_map=genre_map, min_songs=min_songs,
                                    source=f"the {len(entries)} {what}(s) with a file")
        say(f"learning from {len(labels.songs)} {what}s ({len(labels.genres)} genres)")
        summary = learn_labels(labels, out, genre_map=genre_map, min_songs=min_songs, cache=store,
                               max_segments=max_segments, progress=progress_lines(say, every), **options)
    for path, reason in summary.failed:
        warn(f"{path}: {reason}")
    return summary.lines(min_songs)
