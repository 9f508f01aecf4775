"""genrify for beets: genres from the audio itself, set through beets' own fields.

Enable it with ``plugins: genrify`` in beets' ``config.yaml``. It is a thin layer over genrify's
classification service (:func:`genrify.classify.service.classify_library`) and its tag policy
(:mod:`genrify.collection.tagpolicy`): beets chooses the items, genrify classifies their files, and the answer
goes into the item's ``genres`` field (the multi-valued field of beets 2.x; on a beets without it,
into ``genre``, the genres joined with ``separator``). beets stores it in its database and writes
the files' tags as it does for any field (``import.write``, ``-w``/``-W``).

- ``beet genrify [QUERY]`` classifies the items the query matches (``-p`` shows what would change
  and changes nothing; ``-f`` redoes items genrify did before).
- With ``auto: yes``, an import stage classifies new items as they are imported (their files are
  written once beets has copied or moved them: a source file is never written).
- ``beet genrify-learn [QUERY] --out MODEL [--min-songs N]`` learns the genres of the library from
  the genres people set in beets' database (``genres``; ``genre`` split on ``separator`` on an
  older beets), genrify's own never counting, each item's artist from ``albumartist``/``artist``
  (:func:`genrify.learn.learning.learn_labels`); ``model: MODEL`` then classifies with it. The songs'
  embeddings go into the cache ``genrify learn`` uses (``~/.cache/genrify/embeddings.sqlite``).
- ``beet genrify --suggest N [QUERY]`` lists the N items without a genre whose genres would teach
  the configured model most (:func:`genrify.learn.suggest.suggest`), with its guess; it changes nothing.

What genrify did is kept in flexible attributes of each item: ``genrify_model`` (the model's name:
the item is done, a later run passes it over unless forced), ``genrify_confidence`` (the answer's top
probability) and ``genrify_genres`` (the genres genrify set, joined with ``"; "``). The last is the
provenance that keeps and merges a person's genres (:func:`genrify.collection.tagpolicy.resolve`): a genre in
``genres`` that genrify did not set was set by a person.

Configuration (``genrify:`` in beets' config), with defaults::

    genrify:
        auto: no              # classify items as they are imported
        model:                # a model file from `genrify train`; empty: the built-in model
        genres: []            # the built-in model answers only among these (e.g. [rock, jazz, hip-hop])
        count: 1              # genres per item, most probable first
        min_confidence: 0.0   # the top genre's probability must reach this, else the item is left alone
        min_probability: 0.1  # every further genre must reach this
        skip_unsure: yes      # leave alone items whose answer the model flags as unsure
        mode: keep            # keep | merge | replace: what happens to genres a person set
        map:                  # a genre map (TOML); empty: genrify's default map
        parents: no           # add parent genres from the map ("House" -> also "Electronic")
        album_mode: no        # every track of a beets album gets the album's pooled genre
        own_genre_above:      # album mode: also a track's own top genre where its probability is above
                              # this (comes second: needs count 2 or more); empty: never
        separator: ", "       # joins several genres on a beets without the multi-valued `genres` field
        jobs:                 # decoding processes; empty: every core (`beet genrify`), 1 (import stage)
        cache: yes            # genrify's results cache (~/.cache/genrify/results.sqlite, shared with
                              # `genrify classify`); no: none; or a file
        max_segments: 8       # segments of about 3 s classified per song (0: every segment)

A key not listed here is warned about as the plugin loads (one line each, with the known keys). A
bad value stops ``beet genrify``, and an import with ``auto`` on (or ``auto`` itself bad), before
any work with beets' one-line ``error: genrify: ...``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import confuse
from beets import ui
from beets.dbcore import types
from beets.library import Item
from beets.plugins import BeetsPlugin

if TYPE_CHECKING:
    from optparse import Values

    from beets.importer import ImportSession, ImportTask
    from beets.library import Library

    from genrify.classify.predict import Prediction
    from genrify.classify.results import ResultCache
    from genrify.classify.modelref import ModelRef
    from genrify.classify.service import ClassifyOptions, LibraryRun, Result
    from genrify.collection.tagpolicy import Provenance, TagPolicy

#: The item field genres go into: beets 2.x has the multi-valued ``genres``; older ones ``genre``.
GENRE_FIELD = "genres" if "genres" in Item._fields else "genre"

#: How ``genrify_genres`` joins the genres genrify set (beets' own display delimiter for lists).
PROVENANCE_JOIN = "; "

#: Seconds between progress lines in a long run.
PROGRESS_EVERY = 10.0


def _defaults() -> dict[str, Any]:
    """The plugin's configuration defaults (genrify's own, imported only when beets loads the plugin)."""
    from genrify.audio.segments import DEFAULT_MAX_SEGMENTS

    return {
        "auto": False,
        "model": None,
        "genres": [],
        "count": 1,
        "min_confidence": 0.0,
        "min_probability": 0.1,
        "skip_unsure": True,
        "mode": "keep",
        "map": None,
        "parents": False,
        "album_mode": False,
        "own_genre_above": None,
        "separator": ", ",
        "jobs": None,
        "cache": True,
        "max_segments": DEFAULT_MAX_SEGMENTS,
    }


# --- settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The plugin's configuration, checked: what to classify with and how to set the answers.

    Attributes
    ----------
    ref
        The model.
    options
        Which segments of each song.
    policy
        Which genres an answer gives (count, thresholds, map, parents) and the tag mode.
    album_mode
        The items of one beets album get the album's pooled answer.
    own_genre_above
        In album mode, a track also gets its own top genre where its own probability of it is above
        this (``None``: never). It comes second, so it needs a ``count`` of 2 or more.
    cache
        genrify's results cache (:mod:`genrify.classify.results`; ``None``: none): answers for unchanged
        files are read from it, so ``--force`` after a change of settings does not classify again.
    separator
        Joins several genres on a beets whose genre field holds one string.
    jobs
        Decoding processes (``None``: every core).
    """

    ref: ModelRef
    options: ClassifyOptions
    policy: TagPolicy
    album_mode: bool
    separator: str
    jobs: int | None
    own_genre_above: float | None = None
    cache: Path | None = None

    @classmethod
    def from_config(cls, view: confuse.ConfigView) -> Settings:
        """Read and check the ``genrify:`` section of beets' configuration.

        Raises
        ------
        beets.ui.UserError
            A bad value (one line naming the key), or a model or map file that cannot be used.
        """
        from genrify.classify.results import default_cache_path
        from genrify.classify.modelref import BuiltinModel, ModelRef
        from genrify.classify.service import ClassifyOptions
        from genrify.collection.genremap import GenreMap
        from genrify.collection.tagpolicy import TagPolicy
        from genrify.errors import GenrifyError

        def fail(message: str) -> ui.UserError:
            return ui.UserError(f"genrify: {message}")

        try:
            # Cheap checks first; the model last (the built-in one is checked as it loads, which
            # imports torch: seconds that a typo elsewhere should not cost). `auto` was read as the
            # plugin loaded, where an error cannot be raised (beets would print a traceback and
            # forget the command): it is checked here, where a bad value stops the command.
            view["auto"].get(bool)
            separator = view["separator"].as_str()
            if not separator:
                raise fail("separator must not be empty")
            jobs = view["jobs"].get(confuse.Optional(int))
            if jobs is not None and jobs < 1:
                raise fail(f"jobs must be at least 1, not {jobs}")
            own = view["own_genre_above"].get(confuse.Optional(confuse.Number()))
            if own is not None and not 0.0 <= own <= 1.0:
                raise fail(f"own_genre_above must be a probability between 0 and 1, not {own}")
            if own is not None and not view["album_mode"].get(bool):
                raise fail("own_genre_above goes with album_mode: yes")
            cache = view["cache"].get()
            if cache is True or cache is None:
                cache_path: Path | None = default_cache_path()
            elif cache is False:
                cache_path = None
            else:
                cache_path = Path(view["cache"].as_filename())
            options = ClassifyOptions(max_segments=view["max_segments"].get(int))
            map_file = view["map"].as_filename() if view["map"].get() else None
            policy = TagPolicy(
                count=view["count"].get(int),
                min_confidence=float(view["min_confidence"].as_number()),
                min_probability=float(view["min_probability"].as_number()),
                skip_unsure=view["skip_unsure"].get(bool),
                mode=view["mode"].as_str(),
                parents=view["parents"].get(bool),
                genre_map=GenreMap.load(map_file) if map_file else GenreMap.default(),
            )
            if own is not None and policy.count < 2:
                raise fail(f"own_genre_above needs a count of 2 or more (the track's own genre comes second), "
                           f"not {policy.count}")
            model = view["model"].as_filename() if view["model"].get() else None
            genres = view["genres"].as_str_seq() if view["genres"].get() else []
            if model and genres:
                raise fail("genres choose among the built-in model's genres; a model file answers with its own")
            if model:
                ref = ModelRef.file(model)
                ref.check()
            else:  # every genre: BuiltinModel(), which imports nothing; chosen ones are checked now
                ref = ModelRef.builtin(genres) if genres else BuiltinModel()
            return cls(ref=ref, options=options, policy=policy, album_mode=view["album_mode"].get(bool),
                       separator=separator, jobs=jobs, own_genre_above=None if own is None else float(own),
                       cache=cache_path)
        except confuse.ConfigError as exc:
            raise fail(str(exc)) from None
        except GenrifyError as exc:
            raise fail(str(exc)) from None


# --- what happened ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """What a run did to the items it was given (in a pretend run: would do)."""

    pretend: bool = False
    classified: int = 0  #: items with an answer
    from_cache: int = 0  #: of the files classified, those whose answer came from genrify's results cache
    changed: int = 0  #: items whose genres changed
    written: int = 0  #: files whose tags were written
    unchanged: int = 0  #: items whose genres were right already
    kept: int = 0  #: items left alone because a person set their genre (keep mode)
    unsure: int = 0  #: items whose answer was not sure enough to set
    done_before: int = 0  #: items genrify did before, passed over (``-f`` redoes them)
    failed: int = 0  #: items whose file could not be classified (or written)

    @property
    def line(self) -> str:
        """One line for people, e.g. ``"genrify: 5 classified, 3 changed (3 written), 1 unchanged, 1 kept,
        0 skipped, 0 failed"``."""
        changed = f"{self.changed} would change" if self.pretend else (
            f"{self.changed} changed ({self.written} written)")
        skipped = self.unsure + self.done_before
        why = [f"{n} {what}" for n, what in ((self.unsure, "unsure"), (self.done_before, "done before")) if n]
        cached = f" ({self.from_cache} from cache)" if self.from_cache else ""
        skipped_why = f" ({', '.join(why)})" if why else ""
        return (f"genrify: {self.classified} classified{cached}, {changed}, {self.unchanged} unchanged, "
                f"{self.kept} kept, {skipped} skipped{skipped_why}, {self.failed} failed")


# --- item fields -----------------------------------------------------------------------------------


def item_genres(item: Item, separator: str) -> list[str]:
    """The item's genres as a list, whichever genre field this beets has."""
    value = item.get(GENRE_FIELD)
    if not value:
        return []
    if isinstance(value, str):
        return [g.strip() for g in value.split(separator) if g.strip()]
    return [str(g) for g in value if str(g).strip()]


def set_item_genres(item: Item, genres: Sequence[str], separator: str) -> None:
    """Set the item's genres, as a list or joined, whichever genre field this beets has."""
    item[GENRE_FIELD] = list(genres) if GENRE_FIELD == "genres" else separator.join(genres)


def item_provenance(item: Item) -> Provenance | None:
    """What genrify set on this item before (``None``: nothing, every genre it has is a person's)."""
    from genrify.collection.tagpolicy import Provenance

    if "genrify_genres" not in item:
        return None
    text = str(item.get("genrify_genres") or "")
    genres = tuple(g for g in text.split(PROVENANCE_JOIN) if g)
    return Provenance(genres=genres, model=str(item.get("genrify_model") or ""), version="", probabilities={})


def is_done(item: Item) -> bool:
    """genrify classified this item before (a run without ``--force`` passes it over)."""
    return bool(item.get("genrify_model"))


def item_path(item: Item) -> str:
    """The item's file as genrify names it: an absolute ``str`` path."""
    return os.path.abspath(os.fsdecode(item.path))


def item_labels(item: Item, separator: str) -> list[str]:
    """The genres a person set on the item (those genrify set are not labels: a model must never
    learn from its own guesses)."""
    from genrify.collection.tagpolicy import human_genres

    return list(human_genres(item_genres(item, separator), item_provenance(item)))


def item_group(item: Item) -> str:
    """The item's artist group as ``genrify learn`` makes it: ``artist:NAME`` from the album artist,
    else the artist, else ``folder:FOLDER`` (the folder holding its file)."""
    name = str(item.get("albumartist") or item.get("artist") or "").strip()
    return f"artist:{name.casefold()}" if name else f"folder:{os.path.dirname(item_path(item))}"


def _shown(genres: Sequence[str]) -> str:
    return PROVENANCE_JOIN.join(genres) if genres else "(none)"


# --- the run ---------------------------------------------------------------------------------------


#: One file's answer as the tag policy takes it: the ranking, whether it is unsure, its confidence.
Answer = tuple[list[tuple[str, float]], bool, float]


def rankings(predictions: Sequence[Prediction], settings: Settings) -> dict[str, Answer]:
    """Each file's ranking of genres (most probable first), whether its answer is unsure, and its
    confidence, for one group of items: one item, or one beets album in album mode.

    The ranking and the unsure flag are decided as the CLI decides them
    (:func:`genrify.classify.albums.track_choice`): in album mode every track gets its album's answer, its
    tracks' probabilities pooled (:func:`genrify.classify.albums.album_answers`), with ``own_genre_above``
    also its own top genre where that differs strongly, and the album's unsure flag and confidence;
    otherwise the track's own.
    """
    from genrify.classify.albums import Album, AlbumAnswer, album_answers, track_choice

    albums: dict[str, AlbumAnswer] = {}
    if settings.album_mode:
        paths = tuple(str(p.path) for p in predictions)
        albums = album_answers(predictions, [Album(key=("beets",), tracks=paths)])
    out: dict[str, Answer] = {}
    for p in predictions:
        album = albums.get(str(p.path))  # None outside album mode
        ranking, unsure = track_choice(p, album, own_genre_above=settings.own_genre_above)
        out[str(p.path)] = (ranking, unsure, album.confidence if album is not None else p.confidence)
    return out


class Run:
    """One pass over some items: classify their files, then set each item's genres as soon as its
    answer (or, in album mode, the last answer of its album) arrives, so an interrupted run keeps
    what it stored and a later one resumes from there.

    Parameters
    ----------
    log
        Where per-item changes, failures and progress go (the plugin's beets logger).
    settings
        The configuration.
    force
        Redo items genrify did before.
    pretend
        Show what would change; change nothing.
    write
        Write the files' tags where an item's genres change. Without it the items whose genres
        changed are kept in :attr:`changed`, for a caller that writes them later (the import stage:
        after beets has copied or moved the files).
    jobs
        Decoding processes (default: the settings').
    """

    def __init__(self, log: Any, settings: Settings, *, force: bool, pretend: bool, write: bool,
                 jobs: int | None = None) -> None:
        self.log = log
        self.jobs = settings.jobs if jobs is None else jobs
        self.settings = settings
        self.force = force
        self.pretend = pretend
        self.write = write
        self.tally = Tally(pretend=pretend)
        self._groups: list[list[Item]] = []
        self._group_of: dict[str, list[int]] = {}  # file -> groups with an item of it
        self._waiting: dict[int, int] = {}  # group -> files not yet answered
        self._answers: dict[int, dict[str, Prediction]] = {}
        self._seen = 0
        self._total = 0
        self._last_progress = 0.0
        self._cache: ResultCache | None = None
        #: The items whose genres changed, with their answers (stored, their files written only with ``write``).
        self.changed: list[tuple[Item, Prediction]] = []

    # -- grouping

    def _group(self, items: Iterable[Item]) -> list[list[Item]]:
        """One group per item, or per beets album in album mode; groups genrify did before (every
        item of them, without ``force``) are counted and passed over."""
        groups: dict[Any, list[Item]] = {}
        for item in items:
            album = item.get("album_id") if self.settings.album_mode else None
            groups.setdefault(("album", album) if album else ("item", item.id), []).append(item)
        todo = []
        for group in groups.values():
            if self.force or not all(is_done(item) for item in group):
                todo.append(group)
            else:
                self.tally.done_before += len(group)
        return todo

    def run(self, items: Iterable[Item]) -> Tally:
        """Classify the items' files and set their genres; returns what happened.

        Raises
        ------
        beets.ui.UserError
            The model cannot be loaded.
        """
        from genrify.classify.service import classify_library, open_cache
        from genrify.collection.library import find_audio
        from genrify.core.runner import LocalRunner
        from genrify.errors import GenrifyError

        self._groups = self._group(items)
        paths = [item_path(item) for group in self._groups for item in group]
        found = find_audio(paths)
        missing = {os.path.abspath(raw): reason for raw, reason in found.missing}
        for g, group in enumerate(self._groups):
            self._answers[g] = {}
            files = {item_path(item) for item in group}
            for path in sorted(files & missing.keys()):
                self._fail(path, missing[path], len([i for i in group if item_path(i) == path]))
            files -= missing.keys()
            self._waiting[g] = len(files)
            for path in files:
                self._group_of.setdefault(path, []).append(g)
        self._total = len(found.files)
        self._last_progress = time.monotonic()
        if not found.files:
            return self.tally
        if self._total > 1:
            self.log.info("classifying {} files with {}", self._total, self.settings.ref.name)
        try:
            if self.settings.cache is not None:
                self._cache = open_cache(self.settings.cache, self.settings.ref, self.settings.options,
                                         notify=lambda line: self.log.warning("{}", line))
            classify_library(found, self.settings.ref, options=self.settings.options, cache=self._cache,
                             runner=LocalRunner(self.jobs), listeners=[_Listener(self)])
        except GenrifyError as exc:
            raise ui.UserError(f"genrify: {exc}") from None
        finally:
            if self._cache is not None:
                self._cache.close()
        return self.tally

    # -- results

    def on_result(self, result: Result, cached: bool = False) -> None:
        """One file's answer (or failure): its groups are set once every file of theirs has answered."""
        from genrify.classify.predict import Failure

        self._seen += 1
        self.tally.from_cache += cached and not isinstance(result, Failure)
        now = time.monotonic()
        if self._total > 1 and now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            self.log.info("{} of {} files classified", self._seen, self._total)
        path = str(result.path)
        for g in self._group_of.get(path, []):
            if isinstance(result, Failure):
                self._fail(path, result.error, sum(item_path(i) == path for i in self._groups[g]))
            else:
                self._answers[g][path] = result
            self._waiting[g] -= 1
            if self._waiting[g] == 0:
                self._apply(g)

    def _fail(self, path: str, error: str, items: int) -> None:
        self.log.warning("{}: {}", path, error)
        self.tally.failed += items

    def _apply(self, g: int) -> None:
        answers = self._answers.pop(g)
        if not answers:
            return
        ranked = rankings(list(answers.values()), self.settings)
        albums: dict[int, Item] = {}  # album -> one of its items
        for item in self._groups[g]:
            path = item_path(item)
            if path in answers:
                order, unsure, confidence = ranked[path]
                self._apply_item(item, self.settings.policy.genres_for(order, unsure=unsure), round(confidence, 3),
                                 answers[path])
                if item.get("album_id"):
                    albums[item.get("album_id")] = item
        if self.settings.album_mode and not self.pretend:
            for item in albums.values():
                self._sync_album(item)

    def _apply_item(self, item: Item, new: list[str], confidence: float, prediction: Prediction) -> None:
        """Set one item's genres from an answer's genres (``[]``: not sure enough to set any)."""
        from genrify.collection.tagpolicy import human_genres, resolve

        self.tally.classified += 1
        separator = self.settings.separator
        existing = item_genres(item, separator)
        previous = item_provenance(item)
        if not new:
            status, genres = "unsure", existing
        else:
            resolved = resolve(existing, previous, new, self.settings.policy.mode)
            if resolved is None:
                status, genres = "kept", existing
            else:
                genres = list(resolved)
                status = "unchanged" if genres == existing else "changed"
        setattr(self.tally, status, getattr(self.tally, status) + 1)
        if status == "changed":
            (ui.print_ if self.pretend else self.log.info)(
                "{}: {} -> {}".format(item, _shown(existing), _shown(genres)))
        elif self.pretend:
            ui.print_(f"{item}: {status} ({_shown(existing)})")
        if self.pretend:
            return
        if status in ("changed", "unchanged"):
            # Provenance: the genres now there that a person did not set before (see resolve()).
            human = {g.casefold() for g in human_genres(existing, previous)}
            set_item_genres(item, genres, separator)
            item["genrify_genres"] = PROVENANCE_JOIN.join(g for g in genres if g.casefold() not in human)
        item["genrify_model"] = self.settings.ref.name
        item["genrify_confidence"] = confidence
        if status == "changed":
            self.changed.append((item, prediction))
        if status == "changed" and self.write:
            if item.try_write():  # beets logs why where it cannot
                self.tally.written += 1
                if self._cache is not None:  # new tags, the same audio: the answer stays valid
                    self._cache.put(item_path(item), prediction.to_dict(timeline=True))
            else:
                self.tally.failed += 1
        item.store()

    def _sync_album(self, item: Item) -> None:
        """Give the item's beets album the genres its tracks now share (album mode); an album whose
        tracks differ (a person's genre kept on one) keeps its own."""
        album = item.get_album()
        if album is None:
            return
        separator = self.settings.separator
        lists = {tuple(item_genres(track, separator)) for track in album.items()}
        if len(lists) == 1:
            (genres,) = lists
            if list(genres) != item_genres(album, separator):  # type: ignore[arg-type]
                set_item_genres(album, genres, separator)  # type: ignore[arg-type]
                album.store(fields=[GENRE_FIELD])


class _Listener:
    """Hands a library run's results to a :class:`Run` as they arrive (a :class:`genrify.classify.service.Listener`)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def on_start(self, found: Any) -> None:
        """Nothing to do: the run knows its files."""

    def on_result(self, result: Result, cached: bool) -> None:
        """One file's result."""
        self.run.on_result(result, cached)

    def on_finish(self, run: LibraryRun) -> None:
        """Nothing to do: every result has been handled."""


# --- the plugin ------------------------------------------------------------------------------------


class GenrifyPlugin(BeetsPlugin):
    """The ``genrify`` plugin: the ``beet genrify`` command and (``auto: yes``) an import stage."""

    item_types = {"genrify_confidence": types.Float(3)}  # queries like genrify_confidence:..0.5

    def __init__(self, name: str | None = "genrify") -> None:
        super().__init__(name)
        self.config.add(_defaults())
        self._settings: Settings | None = None
        # Import task -> the items whose genres the import stage changed, written once beets has
        # put their files in place (import_task_files).
        self._to_write: dict[int, list[tuple[Item, Prediction]]] = {}
        self._warn_unknown_keys()
        try:
            auto = self.config["auto"].get(bool)
        except confuse.ConfigError:
            # An exception here is a traceback and a missing `beet genrify`: instead the stage is
            # set up and import_begin stops the import, with beets' one-line error (from settings()).
            auto = True
        if auto:
            self.import_stages = [self.imported]
            self.register_listener("import_begin", self.import_begins)
            self.register_listener("import_task_files", self.imported_files)

    def _warn_unknown_keys(self) -> None:
        """One warning per key of the ``genrify:`` section that the plugin does not know (a typo
        such as ``min_confidense`` would otherwise be ignored in silence)."""
        known = _defaults()
        try:
            keys = self.config.keys()
        except confuse.ConfigError:  # not a mapping: settings() says so, as an error
            return
        for key in keys:
            if key not in known:
                self._log.warning("unknown key {!r} in the genrify configuration, ignored (known: {})",
                                  key, ", ".join(known))

    def settings(self) -> Settings:
        """The checked configuration, read once per process.

        Raises
        ------
        beets.ui.UserError
            A bad value.
        """
        if self._settings is None:
            self._settings = Settings.from_config(self.config)
        return self._settings

    def commands(self) -> list[ui.Subcommand]:
        """``beet genrify [-p] [-f] [-w|-W] [QUERY]``."""
        command = ui.Subcommand("genrify", help="set genres from the audio with genrify")
        command.parser.usage += " [QUERY]"
        command.parser.add_option("-p", "--pretend", action="store_true", default=False,
                                  help="show what would change; change nothing")
        command.parser.add_option("-f", "--force", action="store_true", default=False,
                                  help="redo items genrify classified before")
        command.parser.add_option("-w", "--write", action="store_true", dest="write", default=None,
                                  help="write new genres to the files' tags (default: import.write)")
        command.parser.add_option("-W", "--nowrite", action="store_false", dest="write",
                                  help="store new genres in the library only, not in the files")
        command.parser.add_option("--suggest", type="int", metavar="N", default=None,
                                  help="list the N items without a genre whose genres would teach the model most; "
                                       "change nothing")
        command.func = self.command
        learn = ui.Subcommand("genrify-learn", help="learn the library's genres into a genrify model file")
        learn.parser.usage += " [QUERY] --out MODEL"
        learn.parser.add_option("-o", "--out", metavar="MODEL", default=None,
                                help="the model file to write (.safetensors); then set genrify's model: to it")
        learn.parser.add_option("--min-songs", type="int", metavar="N", default=None,
                                help="leave out genres with fewer items than N (default 5)")
        learn.func = self.learn_command
        return [command, learn]

    def command(self, lib: Library, opts: Values, args: list[str]) -> None:
        """Run ``beet genrify``: classify the matched items and set their genres."""
        settings = self.settings()
        if opts.suggest is not None:
            self.suggest_command(lib, settings, opts.suggest, args)
            return
        items = list(lib.items(args))
        run = Run(self._log, settings, force=opts.force, pretend=opts.pretend, write=ui.should_write(opts.write))
        ui.print_(run.run(items).line)

    def learn_command(self, lib: Library, opts: Values, args: list[str]) -> None:
        """Run ``beet genrify-learn``: learn a model from the genres people set in the library.

        Raises
        ------
        beets.ui.UserError
            No ``--out``, a bad ``--min-songs``, too few genres or artists, or a model file that
            cannot be written (one line).
        """
        from genrify.errors import GenrifyError
        from genrify.learn.labels import DEFAULT_MIN_SONGS, labels_from_values
        from genrify.learn.learning import learn_labels, report_lines

        if not opts.out:
            raise ui.UserError("genrify: genrify-learn needs --out MODEL, the model file to write")
        min_songs = DEFAULT_MIN_SONGS if opts.min_songs is None else opts.min_songs
        if min_songs < 1:
            raise ui.UserError(f"genrify: --min-songs must be at least 1, not {min_songs}")
        settings = self.settings()
        entries = []
        for path, item in self._files(lib.items(args)).items():
            entries.append((path, item_labels(item, settings.separator), item_group(item)))
        try:
            labels = labels_from_values(entries, genre_map=settings.policy.genre_map, min_songs=min_songs,
                                        source=f"the {len(entries)} beets item(s) with a file")
            cache = self._embedding_cache(settings)
            try:
                self._log.info("learning from {} items ({} genres)", len(labels.songs), len(labels.genres))
                summary = learn_labels(labels, opts.out, genre_map=settings.policy.genre_map, min_songs=min_songs,
                                       cache=cache, jobs=settings.jobs, source="beets",
                                       max_segments=settings.options.max_segments,
                                       inputs=[" ".join(args) or "(every item)"], progress=self._progress())
            finally:
                if cache is not None:
                    cache.close()
        except GenrifyError as exc:
            raise ui.UserError(f"genrify: {exc}") from None
        for path, reason in summary.failed:
            self._log.warning("{}: {}", path, reason)
        for line in report_lines(summary.report, dropped=summary.dropped, min_songs=min_songs):
            ui.print_(line)
        ui.print_(f"genrify: {summary.line}")
        ui.print_(f"genrify: set `model: {opts.out}` in the genrify section of beets' config to classify with it")

    def suggest_command(self, lib: Library, settings: Settings, n: int, args: list[str]) -> None:
        """``beet genrify --suggest N``: the items without a genre that would teach the model most.

        Raises
        ------
        beets.ui.UserError
            ``N`` below 1, or a model that is not a genre head (a network from ``genrify train``).
        """
        from genrify.classify.modelref import ModelFile
        from genrify.errors import GenrifyError
        from genrify.learn.suggest import suggest_files
        from genrify.models.builtin import GenreHead
        from genrify.models.modelfile import is_head_file

        if n < 1:
            raise ui.UserError(f"genrify: --suggest must be at least 1, not {n}")
        ref = settings.ref
        model_file = ref.path if isinstance(ref, ModelFile) else None  # None: the built-in model
        if model_file is not None and not is_head_file(model_file):
            raise ui.UserError(f"genrify: --suggest needs a model learned by genrify-learn (or the built-in one); "
                               f"{ref.name} is a network from `genrify train`")
        files = self._files(lib.items(args))
        untagged = [path for path, item in files.items() if not item_labels(item, settings.separator)]
        if not untagged:
            ui.print_("genrify: no item without a genre to suggest")
            return
        try:
            head = GenreHead.load() if model_file is None else GenreHead.load(model_file)
            cache = self._embedding_cache(settings)
            try:
                suggestions, failed = suggest_files(head, untagged, n, cache=cache, jobs=settings.jobs,
                                                    progress=self._progress("embedding"),
                                                    max_segments=settings.options.max_segments)
            finally:
                if cache is not None:
                    cache.close()
        except GenrifyError as exc:
            raise ui.UserError(f"genrify: {exc}") from None
        for failure in failed:
            self._log.warning("{}: {}", failure.path, failure.reason)
        ui.print_(f"genrify: {len(suggestions)} of {len(untagged)} items without a genre to tag next "
                  f"(uncertain, and unlike each other), with {ref.name}'s guess:")
        for s in suggestions:
            ui.print_(f"{files[s.path]} | {s.path} | {s.guess} | {s.probability:.2f}")

    def _files(self, items: Iterable[Item]) -> dict[str, Item]:
        """Each item's file (the first item of a file beets lists twice); missing files warned about."""
        out: dict[str, Item] = {}
        for item in items:
            path = item_path(item)
            if not os.path.isfile(path):
                self._log.warning("{}: the file is missing, left out", path)
            elif path not in out:
                out[path] = item
        return out

    def _embedding_cache(self, settings: Settings) -> Any:
        """genrify's embedding cache (the one ``genrify learn`` uses), or ``None`` with ``cache: no``."""
        from genrify.learn.embedcache import EmbeddingCache, segment_plan

        if settings.cache is None:
            return None
        return EmbeddingCache(plan=segment_plan(settings.options.max_segments),
                              notify=lambda line: self._log.warning("{}", line))

    def _progress(self, only: str | None = None) -> Any:
        """A progress callback ``(stage, done, total)`` (or ``(done, total)`` for the stage ``only``)
        that logs a line every :data:`PROGRESS_EVERY` seconds."""
        last = [time.monotonic()]

        def show(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if total > 1 and (now - last[0] >= PROGRESS_EVERY or done == total) and done:
                last[0] = now
                self._log.info("{}: {} of {}", stage, done, total)

        if only is None:
            return show
        return lambda done, total: show(only, done, total)

    def import_begins(self, session: ImportSession) -> None:
        """``import_begin``: check the configuration before beets imports anything, so a bad value
        stops the import with one line instead of failing at its first album.

        Raises
        ------
        beets.ui.UserError
            A bad value.
        """
        self.settings()

    def imported(self, session: ImportSession, task: ImportTask) -> None:
        """The import stage: classify the items of an import task and set their genres.

        Import stages run before beets copies or moves the files (``manipulate_files``): an item's
        path is still its source file here, which beets itself never changes in copy mode. So the
        genres are set and stored here, and the files are written in :meth:`imported_files`, once
        they are in place. Without a ``jobs`` setting the files are decoded in this process: a task
        is one album, and starting a pool of workers for a dozen files costs more than it saves.

        genrify's results cache keys an answer by the file's real path, size and mtime: the source
        files are classified and keyed as they are, and stay unchanged (copy) or vanish (move; a
        key that no file matches is never read again). The files written in place get their own.
        """
        items = list(task.imported_items())
        if not items:
            return
        settings = self.settings()
        run = Run(self._log, settings, force=False, pretend=False, write=False, jobs=settings.jobs or 1)
        run.run(items)
        if run.changed:
            self._to_write[id(task)] = run.changed

    def imported_files(self, session: ImportSession, task: ImportTask) -> None:
        """``import_task_files``: beets has copied, moved or linked the task's files (or left them
        in place) and written the tags of the items it retagged. Here the files of the items whose
        genres the import stage changed are written, where ``import.write`` says so and beets did
        not write them itself (as-is imports: beets writes only what it retagged, and its write,
        after the stage, carries the genres set there)."""
        changed = self._to_write.pop(id(task), None)
        if not changed:
            return
        # As the importer decides (beets.importer.ImportTask.manipulate_files).
        importer_wrote = bool(task.apply) or getattr(task.choice_flag, "name", "") == "RETAG"
        if importer_wrote or not session.config["write"].get(bool):
            return
        from genrify.classify.service import open_cache
        from genrify.errors import GenrifyError

        settings = self.settings()
        cache = None
        if settings.cache is not None:
            try:
                cache = open_cache(settings.cache, settings.ref, settings.options,
                                   notify=lambda line: self._log.warning("{}", line))
            except GenrifyError as exc:  # the cache only speeds a later run up
                self._log.warning("{}", exc)
        try:
            for item, prediction in changed:
                if item.try_write():  # beets logs why where it cannot
                    item.store()  # the file's new mtime
                    if cache is not None:  # new tags, the same audio: the answer stays valid
                        cache.put(item_path(item), prediction.to_dict(timeline=True))
        finally:
            if cache is not None:
                cache.close()
