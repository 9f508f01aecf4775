"""genrify for beets: genres from the audio itself, set through beets' own fields.

``docs/beets.md`` is the reference (commands, import stage, settings). beets chooses the items; genrify's
settings (:class:`~genrify.collection.tagpolicy.TagPolicy`), service, tag listener and learning services,
shared with the CLI, do the rest. :class:`ItemSink` puts each decision into the item's fields.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import confuse
from beets import ui
from beets.dbcore import types
from beets.library import Item
from beets.plugins import BeetsPlugin

from genrify.classify.settings import ClassifySettings

if TYPE_CHECKING:
    from optparse import Values

    from beets.importer import ImportSession, ImportTask
    from beets.library import Library

    from genrify.classify.predict import Prediction
    from genrify.classify.results import ResultCache
    from genrify.classify.service import Result
    from genrify.classify.tagging import TagPlan
    from genrify.collection.library import AudioSearch
    from genrify.collection.tagpolicy import Provenance
    from genrify.collection.tags import TagChange

#: The item field genres go into: beets 2.x has the multi-valued ``genres``; older ones ``genre``.
GENRE_FIELD = "genres" if "genres" in Item._fields else "genre"
#: How ``genrify_genres`` joins the genres genrify set (beets' own display delimiter for lists).
PROVENANCE_JOIN = "; "
#: Seconds between progress lines in a long run.
PROGRESS_EVERY = 10.0
#: The settings that are :class:`~genrify.collection.tagpolicy.TagPolicy` fields, and how confuse reads each.
POLICY_KEYS = {"count": int, "min_confidence": confuse.Number(), "min_probability": confuse.Number(),
               "skip_unsure": bool, "mode": str, "parents": bool, "album_mode": bool,
               "own_genre_above": confuse.Optional(confuse.Number())}


#: The command options that give a setting, by its name (a :class:`~genrify.errors.ParameterError`'s field).
OPTIONS = {"suggest": "--suggest", "min_songs": "--min-songs"}


@contextlib.contextmanager
def genrify_errors() -> Iterator[None]:
    """A genrify or confuse error as beets' one-line error; the one place a setting refused by name
    (a :class:`~genrify.errors.ParameterError`) is said in the option's name where an option gave it."""
    from genrify.errors import GenrifyError, ParameterError

    try:
        yield
    except (confuse.ConfigError, GenrifyError) as exc:
        options = isinstance(exc, ParameterError) and exc.field in OPTIONS
        said = exc.said_of(lambda name: OPTIONS.get(name, name)) if options else exc  # type: ignore[union-attr]
        raise ui.UserError(f"genrify: {said}") from None


def _defaults() -> dict[str, Any]:
    """The configuration's defaults: the tag policy's and the classify options' own, and beets' keys."""
    from genrify.classify.service import ClassifyOptions
    from genrify.collection.tagpolicy import TagPolicy

    policy = {f.name: f.default for f in fields(TagPolicy) if f.name in POLICY_KEYS}
    return {"auto": False, "model": None, "genres": [], **policy, "map": None, "separator": ", ", "jobs": None,
            "cache": True, "max_segments": next(f.default for f in fields(ClassifyOptions) if f.name == "max_segments")}


@dataclass(frozen=True)
class Settings(ClassifySettings):
    """The ``genrify:`` section, checked: :class:`~genrify.classify.settings.ClassifySettings` and the
    ``separator`` of a one-string genre field, beets' own."""

    separator: str = ", "

    @classmethod
    def from_config(cls, view: confuse.ConfigView) -> Settings:
        """Read and check the section; a bad value is a :class:`beets.ui.UserError` of one line naming it."""
        from genrify.errors import ParameterError

        with genrify_errors():
            # `auto` was read as the plugin loaded, where an error cannot be raised (beets would
            # print a traceback and forget the command): a bad value stops the command here.
            view["auto"].get(bool)
            separator = view["separator"].as_str()
            if not separator:
                raise ParameterError("separator must not be empty", field="separator")
            cache = view["cache"].get()
            named = {key: view[key].as_filename() if view[key].get() else None for key in ("map", "model")}
            settings = cls.from_values(
                model=named["model"], genres=view["genres"].as_str_seq() if view["genres"].get() else [],
                max_segments=view["max_segments"].get(int), jobs=view["jobs"].get(confuse.Optional(int)),
                cache=cache if cache is None or isinstance(cache, bool) else view["cache"].as_filename(),
                genre_map=named["map"], **{key: view[key].get(template) for key, template in POLICY_KEYS.items()})
            return replace(settings, separator=separator)


def summary_line(counts: Counter[str], pretend: bool) -> str:
    """E.g. ``"genrify: 5 classified, 3 changed (3 written), 1 unchanged, 1 kept, 0 skipped, 0 failed"``."""
    n = counts.__getitem__
    changed = f"{n('changed')} would change" if pretend else f"{n('changed')} changed ({n('written')} written)"
    why = [f"{n(key)} {key.replace('_', ' ')}" for key in ("unsure", "done_before") if n(key)]
    cached = f" ({n('from_cache')} from cache)" if n("from_cache") else ""
    skipped = f"{n('unsure') + n('done_before')} skipped" + (f" ({', '.join(why)})" if why else "")
    return (f"genrify: {n('classified')} classified{cached}, {changed}, {n('unchanged')} unchanged, "
            f"{n('kept')} kept, {skipped}, {n('failed')} failed")


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
    genres = tuple(g for g in str(item.get("genrify_genres") or "").split(PROVENANCE_JOIN) if g)
    return Provenance(genres=genres, model=str(item.get("genrify_model") or ""), version="")


def item_path(item: Item) -> str:
    """The item's file as genrify names it: an absolute ``str`` path."""
    return os.path.abspath(os.fsdecode(item.path))


def item_labels(item: Item, separator: str) -> list[str]:
    """The genres a person set on the item (never genrify's: a model must not learn its own guesses)."""
    from genrify.collection.tagpolicy import human_genres

    return list(human_genres(item_genres(item, separator), item_provenance(item)))


def item_group(item: Item) -> str:
    """The item's artist group as ``genrify learn`` makes it: ``artist:NAME`` from the album artist,
    else the artist, else ``folder:FOLDER`` (the folder holding its file)."""
    name = str(item.get("albumartist") or item.get("artist") or "").strip()
    return f"artist:{name.casefold()}" if name else f"folder:{os.path.dirname(item_path(item))}"


def _shown(genres: Sequence[str]) -> str:
    return PROVENANCE_JOIN.join(genres) if genres else "(none)"


def write_item(item: Item, prediction: Prediction, cache: ResultCache | None) -> bool:
    """Write the item's file and keep its answer in the results cache (the audio is the same); False where
    beets could not write it (beets logs why)."""
    from genrify.classify.tagging import keep_answer

    if not item.try_write():
        return False
    keep_answer(cache, prediction, item_path(item))
    return True


class ItemSink:
    """Sets beets items' genres as a :class:`~genrify.classify.tagging.TagListener` decides (a
    :class:`~genrify.classify.tagging.TagSink`, and a :class:`~genrify.classify.service.Listener` counting
    failures and saying how far the run is): each item is stored as soon as it is decided, so an
    interrupted run keeps what it did. Without ``write`` the items whose genres changed are only
    kept in :attr:`changed`, for a caller that writes their files later (the import stage)."""

    def __init__(self, log: Any, settings: Settings, items: dict[str, list[Item]], *, pretend: bool,
                 write: bool) -> None:
        from genrify.learn.learning import progress_lines

        self.log, self.settings, self.items, self.pretend, self.write_files = log, settings, items, pretend, write
        self.counts: Counter[str] = Counter()
        self.cache: ResultCache | None = None  # genrify's results cache, kept valid after a write
        self.changed: list[tuple[Item, Prediction]] = []
        self.progress = progress_lines(lambda line: log.info("{}", line), PROGRESS_EVERY)
        self.seen = self.total = 0

    def using(self, cache: ResultCache | None) -> ItemSink:
        """This sink, keeping ``cache`` valid (:func:`genrify.classify.tagging.tag_files`' sink factory)."""
        self.cache = cache
        return self

    def on_start(self, found: AudioSearch) -> None:
        """Warn of the files missing, and know how many to classify."""
        for raw, reason in found.missing:
            self.log.warning("{}: {}", os.path.abspath(raw), reason)
            self.counts["failed"] += len(self.items.get(os.path.abspath(raw), []))
        self.total = len(found.files)
        if self.total > 1:
            self.log.info("classifying {} files with {}", self.total, self.settings.ref.name)

    def on_result(self, result: Result, cached: bool) -> None:
        """Count a file's failure or cached answer, and say how far the run is."""
        from genrify.classify.predict import Failure

        self.seen += 1
        if isinstance(result, Failure):
            self.log.warning("{}: {}", result.path, result.error)
            self.counts["failed"] += len(self.items.get(str(result.path), []))
        else:
            self.counts["from_cache"] += cached
        self.progress("classifying", self.seen, self.total)

    def on_finish(self, run: Any) -> None:
        """Nothing to do: every result has been counted."""

    def write(self, plan: TagPlan, *, dry_run: bool) -> TagChange | None:
        """Decide and set each item of the plan's file."""
        from genrify.collection.tags import TagChange

        change = None
        for item in self.items.get(plan.path, []):
            old, decision = self._set(item, plan)
            if decision.status != "left_alone":
                status = {"write": "written"}.get(decision.status, decision.status)
                change = TagChange(Path(plan.path), tuple(old), decision.genres, status == "written", dry_run, status)
        return change

    def _set(self, item: Item, plan: TagPlan) -> tuple[list[str], Any]:
        separator = self.settings.separator
        existing = item_genres(item, separator)
        decision = plan.decide(existing, item_provenance(item))
        status = {"write": "changed", "left_alone": "unsure"}.get(decision.status, decision.status)
        self.counts.update(["classified", status])
        if status == "changed":
            (ui.print_ if self.pretend else self.log.info)(f"{item}: {_shown(existing)} -> {_shown(decision.genres)}")
        elif self.pretend:
            ui.print_(f"{item}: {status} ({_shown(existing)})")
        if self.pretend:
            return existing, decision
        if decision.sets:
            set_item_genres(item, decision.genres, separator)
            item["genrify_genres"] = PROVENANCE_JOIN.join(decision.provenance.genres)
        item["genrify_model"] = self.settings.ref.name
        item["genrify_confidence"] = round(plan.confidence, 3)
        if status == "changed":
            self.changed.append((item, plan.prediction))
        if status == "changed" and self.write_files:
            self.counts["written" if write_item(item, plan.prediction, self.cache) else "failed"] += 1
        item.store()
        return existing, decision

    def group_done(self, paths: Sequence[str]) -> None:
        """Give each album the genres its tracks now share; an album whose tracks differ (a
        person's genre kept on one) keeps its own."""
        albums = {item.get("album_id"): item for p in paths for item in self.items.get(p, []) if item.get("album_id")}
        for album in (item.get_album() for item in albums.values()) if not self.pretend else []:
            lists = {tuple(item_genres(track, self.settings.separator)) for track in album.items()} if album else set()
            if len(lists) == 1 and list(genres := lists.pop()) != item_genres(album, self.settings.separator):
                set_item_genres(album, genres, self.settings.separator)
                album.store(fields=[GENRE_FIELD])

    def finish(self) -> None:
        """Commit the answers stored again after writes."""
        if self.cache is not None:
            self.cache.commit()


def classify_items(log: Any, settings: Settings, items: Iterable[Item], *, force: bool, pretend: bool,
                   write: bool) -> ItemSink:
    """Classify the items' files and set their genres, by item or (album mode) by beets album;
    items genrify did before are passed over unless ``force``. Returns the sink (its counts, its changes)."""
    from genrify.classify.tagging import tag_files
    from genrify.collection.library import find_audio

    groups: dict[Any, list[Item]] = {}
    for item in items:
        album = item.get("album_id") if settings.policy.album_mode else None
        groups.setdefault(("album", album) if album else ("item", item.id), []).append(item)
    todo = [g for g in groups.values() if force or not all(item.get("genrify_model") for item in g)]
    files: dict[str, list[Item]] = {}
    for item in (item for group in todo for item in group):
        files.setdefault(item_path(item), []).append(item)
    sink = ItemSink(log, settings, files, pretend=pretend, write=write)
    sink.counts["done_before"] = sum(len(g) for g in groups.values()) - sum(len(g) for g in todo)
    with genrify_errors():
        tag_files(find_audio(list(files)), settings, sink.using, groups=[[item_path(i) for i in g] for g in todo], dry_run=pretend,
                  listeners=[sink], notify=lambda line: log.warning("{}", line))
    return sink


class GenrifyPlugin(BeetsPlugin):
    """The ``genrify`` plugin: ``beet genrify``, ``beet genrify-learn`` and (``auto: yes``) an import stage."""

    item_types = {"genrify_confidence": types.Float(3)}  # queries like genrify_confidence:..0.5

    def __init__(self, name: str | None = "genrify") -> None:
        super().__init__(name)
        self.config.add(_defaults())
        self._settings: Settings | None = None
        # Import task -> the items whose genres the import stage changed, written once beets has
        # put their files in place (import_task_files).
        self._to_write: dict[int, list[tuple[Item, Prediction]]] = {}
        try:  # one warning per unknown key: a typo such as `min_confidense` is not ignored in silence
            unknown = [key for key in self.config.keys() if key not in _defaults()]
        except confuse.ConfigError:  # not a mapping: settings() says so, as an error
            unknown = []
        for key in unknown:
            self._log.warning("unknown key {!r} in the genrify configuration, ignored (known: {})",
                              key, ", ".join(_defaults()))
        try:
            auto = self.config["auto"].get(bool)
        except confuse.ConfigError:  # a traceback here loses `beet genrify`: import_begin says it instead
            auto = True
        if auto:
            self.import_stages = [self.imported]
            self.register_listener("import_begin", lambda session: self.settings())
            self.register_listener("import_task_files", self.imported_files)

    def settings(self) -> Settings:
        """The checked configuration, read once per process (a bad value: :class:`beets.ui.UserError`)."""
        if self._settings is None:
            self._settings = Settings.from_config(self.config)
        return self._settings

    def commands(self) -> list[ui.Subcommand]:
        """``beet genrify [-p] [-f] [-w|-W] [--suggest N] [QUERY]`` and ``beet genrify-learn``."""
        from genrify.defaults import DEFAULT_MIN_SONGS

        command = ui.Subcommand("genrify", help="set genres from the audio with genrify")
        command.parser.usage += " [QUERY]"
        add = command.parser.add_option
        add("-p", "--pretend", action="store_true", default=False, help="show what would change; change nothing")
        add("-f", "--force", action="store_true", default=False, help="redo items genrify classified before")
        add("-w", "--write", action="store_true", dest="write", default=None,
            help="write new genres to the files' tags (default: import.write)")
        add("-W", "--nowrite", action="store_false", dest="write", help="store new genres in the library only")
        add("--suggest", type="int", metavar="N", default=None,
            help="list the N items without a genre whose genres would teach the model most; change nothing")
        command.func = self.command
        learn = ui.Subcommand("genrify-learn", help="learn the library's genres into a genrify model file")
        learn.parser.usage += " [QUERY] --out MODEL"
        learn.parser.add_option("-o", "--out", metavar="MODEL", default=None,
                                help="the model file to write (.safetensors); then set genrify's model: to it")
        learn.parser.add_option("--min-songs", type="int", metavar="N", default=DEFAULT_MIN_SONGS,
                                help=f"leave out genres with fewer items than N (default {DEFAULT_MIN_SONGS})")
        learn.func = self.learn_command
        return [command, learn]

    def command(self, lib: Library, opts: Values, args: list[str]) -> None:
        """``beet genrify``: classify the matched items and set their genres (or ``--suggest``)."""
        settings = self.settings()
        if opts.suggest is not None:
            return self.suggest_command(lib, settings, opts.suggest, args)
        sink = classify_items(self._log, settings, lib.items(args), force=opts.force, pretend=opts.pretend,
                              write=ui.should_write(opts.write))
        ui.print_(summary_line(sink.counts, opts.pretend))

    def learn_command(self, lib: Library, opts: Values, args: list[str]) -> None:
        """``beet genrify-learn``: learn a model from the genres people set in the library."""
        from genrify.learn.labels import check_min_songs
        from genrify.learn.learning import learn_values

        if not opts.out:
            raise ui.UserError("genrify: genrify-learn needs --out MODEL, the model file to write")
        with genrify_errors():
            check_min_songs(opts.min_songs)
        settings = self.settings()
        entries = [(path, item_labels(item, settings.separator), item_group(item))
                   for path, item in self._files(lib.items(args)).items()]
        with genrify_errors():
            *report, line = learn_values(
                entries, opts.out, what="beets item", genre_map=settings.policy.genre_map, min_songs=opts.min_songs,
                cache=settings.cache is not None, max_segments=settings.options.max_segments, jobs=settings.jobs,
                source="beets", inputs=[" ".join(args) or "(every item)"], **self._said())
        for text in [*report, f"genrify: {line}"]:
            ui.print_(text)
        ui.print_(f"genrify: set `model: {opts.out}` in the genrify section of beets' config to classify with it")

    def suggest_command(self, lib: Library, settings: Settings, n: int, args: list[str]) -> None:
        """``beet genrify --suggest N``: the items without a genre that would teach the model most."""
        from genrify.learn.suggest import check_count, suggest_untagged

        with genrify_errors():
            check_count(n)
        files = self._files(lib.items(args))
        untagged = [path for path, item in files.items() if not item_labels(item, settings.separator)]
        if not untagged:
            return ui.print_("genrify: no item without a genre to suggest")
        with genrify_errors():
            suggestions = suggest_untagged(settings.model_file, untagged, n, cache=settings.cache is not None,
                                           jobs=settings.jobs, max_segments=settings.options.max_segments,
                                           **self._said())
        ui.print_(f"genrify: {len(suggestions)} of {len(untagged)} items without a genre to tag next "
                  f"(uncertain, and unlike each other), with {settings.ref.name}'s guess:")
        for s in suggestions:
            ui.print_(f"{files[s.path]} | {s.path} | {s.guess} | {s.probability:.2f}")

    def _said(self) -> dict[str, Any]:
        """``say`` (progress, info), ``warn`` and ``every`` for genrify's services: beets' log."""
        return {"say": lambda line: self._log.info("{}", line), "warn": lambda line: self._log.warning("{}", line),
                "every": PROGRESS_EVERY}

    def _files(self, items: Iterable[Item]) -> dict[str, Item]:
        """Each item's file (the first item of a file beets lists twice); missing files warned about."""
        out: dict[str, Item] = {}
        for item in items:
            if os.path.isfile(path := item_path(item)):
                out.setdefault(path, item)
            else:
                self._log.warning("{}: the file is missing, left out", path)
        return out

    def imported(self, session: ImportSession, task: ImportTask) -> None:
        """The import stage: classify a task's items and set their genres. It runs before beets
        copies or moves the files, so their files are written in :meth:`imported_files`; a task is
        one album, decoded in this process unless ``jobs`` says otherwise (a pool costs more)."""
        items = list(task.imported_items())
        if items:
            settings = replace(self.settings(), jobs=self.settings().jobs or 1)
            sink = classify_items(self._log, settings, items, force=False, pretend=False, write=False)
            if sink.changed:
                self._to_write[id(task)] = sink.changed

    def imported_files(self, session: ImportSession, task: ImportTask) -> None:
        """``import_task_files``: write the files of the items whose genres the stage changed, where
        ``import.write`` says so and beets did not write them itself (it writes what it retagged)."""
        changed = self._to_write.pop(id(task), None)
        # As the importer decides (beets.importer.ImportTask.manipulate_files).
        importer_wrote = bool(task.apply) or getattr(task.choice_flag, "name", "") == "RETAG"
        if not changed or importer_wrote or not session.config["write"].get(bool):
            return
        from genrify.errors import GenrifyError

        cache = None
        try:
            cache = self.settings().open_cache(notify=lambda line: self._log.warning("{}", line))
        except GenrifyError as exc:  # the cache only speeds a later run up
            self._log.warning("{}", exc)
        try:
            for item, prediction in changed:
                if write_item(item, prediction, cache):
                    item.store()  # the file's new mtime
        finally:
            if cache is not None:
                cache.close()
