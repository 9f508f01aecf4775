"""genrify for beets: genres from the audio itself, set through beets' own fields.

``docs/beets.md`` is the reference. beets chooses the items; genrify's settings and services, shared with the CLI, do
the rest: :class:`ItemFields` says how an item keeps a song, :class:`ItemSink` puts each decision into its fields.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import confuse
from beets import ui
from beets.dbcore import types
from beets.library import Item
from beets.plugins import BeetsPlugin

from genrify.classify.settings import ClassifySettings
from genrify.classify.tagging import RecordSink
from genrify.collection.records import RecordFields, grouping_artist, provenance_media_field
from genrify.collection.tagpolicy import Provenance

if TYPE_CHECKING:
    from optparse import Values

    from beets.importer import ImportSession, ImportTask
    from beets.library import Library

#: The item field genres go into: beets 2.x has the multi-valued ``genres``; older ones ``genre``.
GENRE_FIELD = "genres" if "genres" in Item._fields else "genre"
#: How ``genrify_genres`` joins the genres genrify set (beets' own display delimiter for lists).
PROVENANCE_JOIN = "; "
#: The item field holding genrify's whole record, synchronised with the files' GENRIFY tag field.
RECORD_FIELD = "genrify_provenance"
#: Seconds between progress lines in a long run.
PROGRESS_EVERY = 10.0
#: The settings read as they are (the TagPolicy fields, the segments' hop, the longest song), and how confuse reads each.
PLAIN_SETTINGS = {"count": int, "min_confidence": confuse.Number(), "min_probability": confuse.Number(),
               "skip_unsure": bool, "mode": str, "parents": bool, "album_mode": bool,
               **dict.fromkeys(("own_genre_above", "hop_seconds", "max_duration"), confuse.Optional(confuse.Number()))}

#: How a setting refused by name (a ParameterError's field) is called, where not by its key: `map:`, and options.
SAID_AS = {"genre_map": "map", "suggest": "--suggest", "min_songs": "--min-songs"}


@contextlib.contextmanager
def genrify_errors() -> Iterator[None]:
    """A genrify or confuse error as beets' one-line error; a setting refused by name (a
    :class:`~genrify.errors.ParameterError`) is called by its key or option (:data:`SAID_AS`)."""
    from genrify.errors import GenrifyError, ParameterError

    try:
        yield
    except (confuse.ConfigError, GenrifyError) as exc:
        said = exc.said_of(lambda name: SAID_AS.get(name, name)) if isinstance(exc, ParameterError) else exc
        raise ui.UserError(f"genrify: {said}") from None


def _defaults() -> dict[str, Any]:
    """The configuration's defaults: the classify settings' and tag policy's own (in beets' names), and beets' keys."""
    values = ClassifySettings.defaults(PLAIN_SETTINGS)
    values["map"] = values.pop("genre_map")  # beets' name for it: `map:`
    return {"auto": False, **values, "separator": ", "}


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
                genre_map=named["map"], **{key: view[key].get(template) for key, template in PLAIN_SETTINGS.items()})
            return replace(settings, separator=separator)


class ItemFields(RecordFields):
    """How beets keeps a song: an item's file, genres (whichever genre field this beets has), provenance
    (``genrify_genres``) and artist."""

    def __init__(self, separator: str) -> None:
        self.separator = separator  # of a one-string genre field

    def path_of(self, item: Item) -> str:
        return os.path.abspath(os.fsdecode(item.path))

    def genres_of(self, item: Any) -> list[str]:  # an Item, or an Album in sync_group
        value = item.get(GENRE_FIELD)
        if not value:
            return []
        if isinstance(value, str):
            return [g.strip() for g in value.split(self.separator) if g.strip()]
        return [str(g) for g in value if str(g).strip()]

    def set_field(self, item: Any, genres: Sequence[str]) -> None:
        """Set the genre field, as a list or joined."""
        item[GENRE_FIELD] = list(genres) if GENRE_FIELD == "genres" else self.separator.join(genres)

    def provenance_of(self, item: Item) -> Provenance | None:
        if (whole := Provenance.from_text(str(item.get(RECORD_FIELD) or ""))) is not None:
            return whole  # the record as genrify wrote it, into the database or (read by beets) into the file
        if "genrify_genres" not in item:  # before the whole record was kept: the genres alone
            return None
        genres = tuple(g for g in str(item.get("genrify_genres") or "").split(PROVENANCE_JOIN) if g)
        return Provenance(genres=genres, model=str(item.get("genrify_model") or ""), version="")

    def artist_of(self, item: Item) -> str:
        return grouping_artist(item.get("albumartist"), item.get("artist"))


class ItemSink(ItemFields, RecordSink):
    """Sets beets items' genres as a :class:`~genrify.classify.tagging.RecordSink` over beets' fields."""

    def __init__(self, said: dict[str, Any], settings: Settings, *, pretend: bool, write: bool) -> None:
        RecordSink.__init__(self, settings.ref.name, pretend=pretend, write=write, write_later="run `beet write`",
                            say=ui.print_ if pretend else said["say"], info=said["say"], warn=said["warn"],
                            every=said["every"])
        ItemFields.__init__(self, settings.separator)

    def classified_before(self, record: Item) -> bool:
        return bool(record.get("genrify_model"))

    def group_of(self, record: Item) -> Any:
        return record.get("album_id") or None

    def set_genres(self, record: Item, genres: Sequence[str], provenance: Provenance) -> None:
        self.set_field(record, genres)
        record["genrify_genres"], record[RECORD_FIELD] = PROVENANCE_JOIN.join(provenance.genres), provenance.to_text()

    def mark(self, record: Item, model: str, confidence: float) -> None:
        record["genrify_model"], record["genrify_confidence"] = model, confidence

    def store(self, record: Item) -> None:
        record.store()

    def write_file(self, record: Item) -> bool:
        return bool(record.try_write())  # beets logs why it could not

    def sync_group(self, records: Sequence[Item]) -> None:
        """Give each album the genres its tracks now share; an album whose tracks differ (a person's genre
        kept on one) keeps its own."""
        albums = {item.get("album_id"): item for item in records if item.get("album_id")}
        for album in (item.get_album() for item in albums.values()):
            lists = {tuple(self.genres_of(track)) for track in album.items()} if album else set()
            if len(lists) == 1 and list(genres := lists.pop()) != self.genres_of(album):
                self.set_field(album, genres)
                album.store(fields=[GENRE_FIELD])


class GenrifyPlugin(BeetsPlugin):
    """The ``genrify`` plugin: ``beet genrify``, ``beet genrify-learn`` and (``auto: yes``) an import stage."""

    item_types = {"genrify_confidence": types.Float(3)}  # queries like genrify_confidence:..0.5

    def __init__(self, name: str | None = "genrify") -> None:
        super().__init__(name)
        self.add_media_field(RECORD_FIELD, provenance_media_field())  # `beet write` writes genrify's record too
        self.config.add(_defaults())
        self._settings: Settings | None = None
        # Import task -> the items whose genres the import stage changed, written once beets has
        # put their files in place (import_task_files).
        self._to_write: dict[int, ItemSink] = {}
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
        if opts.suggest is not None:
            return self.suggest_command(lib, opts.suggest, args)
        sink = self.tag(lib.items(args), force=opts.force, pretend=opts.pretend, write=ui.should_write(opts.write))
        ui.print_(f"genrify: {sink.line}")

    def learn_command(self, lib: Library, opts: Values, args: list[str]) -> None:
        """``beet genrify-learn``: learn a model from the genres people set in the library."""
        from genrify.learn.learning import learn_records

        if not opts.out:
            raise ui.UserError("genrify: genrify-learn needs --out MODEL, the model file to write")
        settings = self.settings()
        with genrify_errors():
            *report, line = learn_records(
                lib.items(args), ItemFields(settings.separator), opts.out, what="beets item", min_songs=opts.min_songs,
                genre_map=settings.policy.genre_map, cache=settings.cache is not None, jobs=settings.jobs,
                max_segments=settings.options.max_segments, source="beets", inputs=[" ".join(args) or "(every item)"],
                **self._said())
        ui.print_("\n".join([*report, f"genrify: {line}", f"genrify: set `model: {os.path.abspath(opts.out)}` in the "
                                                             "genrify section of beets' config to classify with it"]))

    def suggest_command(self, lib: Library, n: int, args: list[str]) -> None:
        """``beet genrify --suggest N``: the items without a genre that would teach the model most."""
        from genrify.learn.suggest import suggest_records

        settings = self.settings()
        with genrify_errors():
            untagged, found, suggestions = suggest_records(
                settings.model_file, lib.items(args), ItemFields(settings.separator), n, jobs=settings.jobs,
                cache=settings.cache is not None, max_segments=settings.options.max_segments, **self._said())
        if not untagged:
            return ui.print_("genrify: no item without a genre to suggest")
        ui.print_("\n".join([f"genrify: {len(suggestions)} of {untagged} items without a genre to tag next (uncertain, "
                             f"and unlike each other), with {settings.ref.name}'s guess:",
                             *(f"{item} | {s.path} | {s.guess} | {s.probability:.2f}" for item, s in suggestions),
                             *([f"genrify: {found.expectation('items')}"] if found.expected_accuracy is not None else [])]))

    def tag(self, items: Iterable[Item], *, force: bool, pretend: bool, write: bool, jobs: int | None = None) -> ItemSink:
        """Classify the items' files and set their genres (:meth:`~genrify.classify.tagging.RecordSink.tag`);
        returns the sink (its counts, its changes)."""
        settings = replace(self.settings(), jobs=jobs or self.settings().jobs)
        sink = ItemSink(self._said(), settings, pretend=pretend, write=write)
        with genrify_errors():
            sink.tag(items, settings, force=force)
        return sink

    def _said(self) -> dict[str, Any]:
        """``say`` (progress, info), ``warn`` and ``every`` for genrify's services: beets' log."""
        return {"say": lambda line: self._log.info("{}", line), "warn": lambda line: self._log.warning("{}", line),
                "every": PROGRESS_EVERY}

    def imported(self, session: ImportSession, task: ImportTask) -> None:
        """The import stage: classify a task's items and set their genres. It runs before beets
        copies or moves the files, so their files are written in :meth:`imported_files`; a task is
        one album, decoded in this process unless ``jobs`` says otherwise (a pool costs more)."""
        if items := list(task.imported_items()):
            sink = self.tag(items, force=False, pretend=False, write=False, jobs=self.settings().jobs or 1)
            if sink.changed:
                self._to_write[id(task)] = sink

    def imported_files(self, session: ImportSession, task: ImportTask) -> None:
        """``import_task_files``: write the files of the items whose genres the stage changed, where
        ``import.write`` says so and beets did not write them itself (it writes what it retagged)."""
        sink = self._to_write.pop(id(task), None)
        # As the importer decides (beets.importer.ImportTask.manipulate_files).
        importer_wrote = bool(task.apply) or getattr(task.choice_flag, "name", "") == "RETAG"
        if not sink or importer_wrote or not session.config["write"].get(bool):
            return
        sink.write_changed(self.settings())
