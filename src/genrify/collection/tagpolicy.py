"""Which genres to write, and how they meet the genres already there (no file I/O here).

Three decisions stand between a model's answer and a file's genre tag, and they are the same for
genrify's own tag writer (:mod:`genrify.collection.tags`) and the beets plugin (which writes through beets'
item fields), so they live here, apart from any storage:

- **Which genres** (:meth:`TagPolicy.genres_for`): the most probable few, above the confidence
  thresholds, spelled by the :class:`~genrify.collection.genremap.GenreMap`, with parent genres if asked.
- **Whose genres are there** (:class:`Provenance`): beside the genres, genrify records exactly
  which values it wrote, with which model and version and how probable they were. A genre in the
  file that genrify did not write was set by a person (or another tool).
- **How they combine** (:func:`resolve`), by tag mode:

  ``replace``
      The new genres, whatever was there.
  ``merge``
      The genres a person set first, in their order, then the new ones not already among them.
      Genres genrify wrote earlier and no longer proposes are dropped, so re-running with a
      better model does not pile up stale guesses.
  ``keep``
      The file is left alone if a person set any genre in it; a file with no genre, or only
      genres genrify wrote earlier, gets the new ones.

Without a provenance record (a file genrify never tagged, or tagged before provenance existed),
every genre in the file counts as a person's: ``merge`` and ``keep`` never drop it.

Which values a person set is read one way for tagging and for ``genrify learn``
(:func:`human_genres`: genrify's provenance record, with the separator it joined its genres
with), and so is what genres those values name (:func:`tag_values`): a value joined with ``;``
or ``,`` names each part, an ID3v1 genre reference (``8``, ``(8)``, ``(RX)``) names its genre,
and a value that names only :data:`NOT_GENRES` (``Other``, ``Unknown``, blank) names none. So a file holding only such placeholders has no genre (``keep``
fills it, ``merge`` replaces them), and ``merge`` adds no genre a person's value already names
(``Swing; Jazz`` gets no second ``Jazz``), while keeping that value as the person wrote it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genrify.collection.genremap import GenreMap, genre_key
from genrify.errors import ParameterError

#: The tag modes, in the order the CLI lists them.
TAG_MODES = ("replace", "merge", "keep")
#: Marks a provenance record as genrify's (the ``by`` member of its JSON).
PROVENANCE_MARK = "genrify"
#: The tag field a file keeps the record in: ``TXXX:GENRIFY`` (ID3), ``GENRIFY`` (Vorbis comment),
#: and :data:`MP4_PROVENANCE_KEY` (MP4).
PROVENANCE_FIELD = "GENRIFY"
MP4_PROVENANCE_KEY = "----:com.apple.iTunes:" + PROVENANCE_FIELD
#: Values that are in genre tags but name no genre (compared by :func:`genrify.collection.genremap.genre_key`):
#: a file holding only these has no genre, for tagging and for learning alike. ``Remix`` and
#: ``Cover`` are what ID3's ``(RX)`` and ``(CR)`` references stand for.
NOT_GENRES = frozenset(genre_key(v) for v in ("Other", "Unknown", "Unknown Genre", "None", "Genre", "Remix", "Cover",
                                                "N/A", "-", "?"))
# What players and taggers join several genres with in one value (Navidrome's default separators):
# a value genrify joined with one of these is recognised as genrify's part by part.
_JOINS = re.compile(r"\s*[;/,]\s*")
# Separators of several genres in one value, as a reader takes a person's value apart; "/" is not
# among them (it is part of names such as "Soul/R&B" in the genre map), and genrify's tag reader
# splits it already where it joins ID3v2.3 values.
_JOINED = re.compile(r"\s*[;,]\s*")
# An ID3v1 reference: "17", "(17)", "(17)(18)", "(17)Rock", "(RX)" (remix), "(CR)" (cover).
_ID3V1 = re.compile(r"^\s*(?:\((?:\d{1,3}|RX|CR)\))+.*$|^\s*\d{1,3}\s*$")
# Digits kept of each probability: enough to read, few enough to keep the tag short.
_DIGITS = 3


@dataclass(frozen=True)
class Provenance:
    """What genrify wrote into a file (or a beets item): the record beside the genres.

    Stored as one line of compact JSON (:meth:`to_text`), e.g.
    ``{"by":"genrify","version":"0.4.0","model":"genrify-musicnn","genres":["Hip-Hop","R&B"],
    "probabilities":{"Hip-Hop":0.712,"R&B":0.164}}``.

    Attributes
    ----------
    genres
        Exactly the genre values genrify wrote (as they read back from the file), in order.
    model
        The model's name (``ModelRef.name``: the built-in model's name or a model file's).
    version
        The genrify version that wrote them.
    probabilities
        The written genres' probabilities, rounded to 3 places (genres without one, e.g. parent
        genres, are absent). Not part of the hash.
    separator
        What genrify joined the genres with into one value (``--tag-separator``); ``None`` where
        it stored separate values. Stored (as ``"separator"``) only where set, so that a value
        joined with any separator, ``" | "`` too, is recognised as genrify's in a later run
        without that separator (:func:`human_genres`). Records without it still read.
    kept
        With a ``separator``: a person's genres that a merge joined into the same value, before
        genrify's (stored as ``"kept"`` only where there are any), so that the value genrify wrote
        can be told exactly from one a person edited later.
    """

    genres: tuple[str, ...]
    model: str
    version: str
    probabilities: dict[str, float] = field(default_factory=dict, hash=False)
    separator: str | None = None
    kept: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Normalised here so that a record read back compares equal to the one written.
        object.__setattr__(self, "genres", tuple(str(g) for g in self.genres))
        if self.separator is not None:
            object.__setattr__(self, "separator", str(self.separator))
        object.__setattr__(self, "kept", tuple(str(g) for g in self.kept))
        object.__setattr__(self, "probabilities", {
            str(g): round(float(p), _DIGITS) for g, p in dict(self.probabilities).items() if math.isfinite(float(p))
        })

    def to_text(self) -> str:
        """One line of compact JSON (UTF-8 text, non-ASCII genre names kept readable)."""
        data: dict[str, Any] = {"by": PROVENANCE_MARK, "version": self.version, "model": self.model,
                                "genres": list(self.genres), "probabilities": self.probabilities}
        if self.separator is not None:
            data["separator"] = self.separator
        if self.kept:
            data["kept"] = list(self.kept)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str | bytes | None) -> Provenance | None:
        """Parse :meth:`to_text`'s output; ``None`` (never an exception) for anything not genrify's.

        Parameters
        ----------
        text
            A tag's value. Unknown extra members are ignored, so that a later version's record
            still reads.

        Returns
        -------
        Provenance or None
            ``None`` for empty or non-JSON text, another tool's JSON, or a record whose members
            have the wrong types.
        """
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                return None
        if not isinstance(text, str) or not text.strip():
            return None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # not JSON; or nested too deep for the parser
            return None
        if not isinstance(data, dict) or data.get("by") != PROVENANCE_MARK:
            return None
        genres, model, version = data.get("genres"), data.get("model"), data.get("version")
        probabilities = data.get("probabilities", {})
        separator = data.get("separator")
        kept = data.get("kept", [])
        if (
            not isinstance(genres, list) or not all(isinstance(g, str) for g in genres)
            or not isinstance(model, str) or not isinstance(version, str)
            or not isinstance(probabilities, dict)
            or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in probabilities.values())
            or not (separator is None or (isinstance(separator, str) and separator))
            or not isinstance(kept, list) or not all(isinstance(g, str) for g in kept)
        ):
            return None
        return cls(genres=tuple(genres), model=model, version=version, probabilities=probabilities,
                   separator=separator, kept=tuple(kept))

    def with_genres(self, genres: Sequence[str]) -> Provenance:
        """The same record for the genre values actually stored (probabilities of the others dropped).

        A writer calls this once it knows how the values are stored: joined into one string for
        an old player, or split as a reader will split them.
        """
        kept = {g: p for g, p in self.probabilities.items() if g in genres}
        return Provenance(genres=tuple(genres), model=self.model, version=self.version, probabilities=kept,
                          separator=self.separator, kept=self.kept)

    def joined_with(self, separator: str | None, stored: Sequence[str] = ()) -> Provenance:
        """The same record for genres stored joined with ``separator`` (``None``: separate values),
        in one value with ``stored`` (all the genres joined, a person's kept ones first)."""
        if separator is None:
            return dataclasses.replace(self, separator=None, kept=())
        stored = tuple(stored)
        n = len(self.genres)
        kept = stored[: len(stored) - n] if n and stored[len(stored) - n:] == self.genres else ()
        return dataclasses.replace(self, separator=separator, kept=kept)


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`TAG_MODES`.

    Raises
    ------
    ParameterError
        Any other value.
    """
    if mode not in TAG_MODES:
        raise ParameterError(f"unknown mode {mode!r}: tag mode must be one of {', '.join(TAG_MODES)}", field="mode")
    return mode


def check_separator(separator: str | None) -> None:
    """Refuse a separator of several genres in one value that is empty or holds control characters
    (``None``: separate values).

    Raises
    ------
    ParameterError
        Naming the ``separator`` setting.
    """
    if separator is not None and (not isinstance(separator, str) or not separator):
        raise ParameterError("separator must be a non-empty string (or None for separate values)", field="separator",
                             problem="must not be empty; leave it out to write separate genre values")
    if any(unicodedata.category(c) == "Cc" for c in separator or ""):
        # A line break or NUL in a tag splits it into lines or values some players read differently.
        said = f"must not contain control characters (a line break, a tab), not {separator!r}"
        raise ParameterError(f"separator {said}", field="separator", problem=said)


def decide_genres(current: tuple[str, ...], previous: Provenance | None, proposed: Sequence[str], mode: str,
                  record: Callable[[list[str]], Provenance] | None = None,
                  canonical: Callable[[str], str | None] | None = None) -> TagDecision:
    """What a genre field holding ``current`` (and genrify's ``previous`` record) becomes where genrify
    proposes ``proposed`` in ``mode``.

    ``"kept"`` where the mode keeps a person's genre (the field as it is); else the genres
    :func:`resolve` gives, ``"unchanged"`` where they are exactly the field's, ``"write"`` otherwise.
    ``record(ours)`` makes the provenance of the genres a person did not set (``None``: no record):
    a person's genre that merge keeps, or that genrify happened to propose too, stays a person's.
    ``canonical`` is passed on to :func:`resolve`.
    """
    resolved = resolve(current, previous, proposed, mode, canonical=canonical)
    if resolved is None:
        return TagDecision("kept", current)
    ours = tuple(previous.genres) if previous is not None else ()
    if tuple(current) != ours and [genre_key(g) for g in resolved] == [genre_key(g) for g in current]:
        # The same genres spelled otherwise by a person ("heavy metal" retyped): as written. What
        # genrify itself wrote is still re-spelled when the genre map changes.
        resolved = tuple(current)
    status = "unchanged" if resolved == current else "write"
    if record is None:
        return TagDecision(status, resolved)
    # A person's value, and every genre it names ("Jazz" in "Swing; Jazz"), stays a person's.
    persons = _persons(current, previous)
    theirs = {genre_key(g) for g in persons} | _named(persons, previous)
    return TagDecision(status, resolved, record([g for g in resolved if genre_key(g) not in theirs]))


def human_genres(existing: Sequence[str], previous: Provenance | None) -> list[str]:
    """The genre values in ``existing`` that a person set, not genrify (compared by :func:`genre_key`).

    - A value genrify joined for an old player (``"Rock; Pop"``: parts joined with ``;``, ``/`` or
      ``,``) is genrify's when each of its parts is.
    - Where genrify's record names the separator it joined with (any, ``" | "`` too), genrify
      wrote one value: its genres joined, after the person's genres a merge kept (the record's
      ``kept``). A value that is exactly that is genrify's, and the kept genres stay the
      person's (``"Swing | Classical"`` gives ``"Swing"`` where genrify wrote ``Classical``).
      Another value is genrify's where every part between separators is one of its genres (an
      ID3v2.3 reader splits names holding ``/``), else the person's whole: ``"Rock & Roll"``
      stays, though genrify once wrote ``Rock`` with ``" & "``.
    - A record from before separators were recorded: a value that is exactly genrify's genres,
      in its order, joined by one string of punctuation (``" | "``, ``" & "``) is genrify's.

    Parameters
    ----------
    existing
        The genre values in the file (or item) now.
    previous
        The provenance record found beside them; ``None``: every genre is a person's.
    """
    if previous is None:
        return list(existing)
    ours = {genre_key(g) for g in previous.genres}
    out: list[str] = []
    for value in existing:
        if genre_key(value) in ours:  # one of its genres whole, though its name holds "," or "/" ("Soul/Funk")
            continue
        if previous.separator is not None and previous.genres:
            sep = previous.separator
            if value.casefold() == sep.join((*previous.kept, *previous.genres)).casefold():
                out += list(previous.kept)  # exactly what genrify wrote: the kept genres are the person's
                continue
            if all(genre_key(p) in ours for p in value.split(sep) if p.strip()):
                continue
        parts = [p for p in _JOINS.split(value) if p.strip()] or [value]
        if all(genre_key(p) in ours for p in parts):
            continue
        if previous.separator is None and _joined_in_order(value, previous.genres):
            continue
        out.append(value)
    return out


def _joined_in_order(value: str, names: Sequence[str]) -> bool:
    """Whether ``value`` is exactly ``names`` (two or more, in order, ignoring case) joined with one
    separator of punctuation and spaces (``" | "``, ``" & "``; not a space or a hyphen alone, which
    join words of one genre: ``"Pop Rock"``, ``"Jazz-Funk"``)."""
    if len(names) < 2:
        return False
    text, names = value.casefold(), [n.casefold() for n in names]
    spare = len(text) - sum(len(n) for n in names)
    if spare <= 0 or spare % (len(names) - 1):
        return False
    separator = text[len(names[0]):len(names[0]) + spare // (len(names) - 1)]
    mark = separator.strip()
    if not mark or mark == "-" or any(c.isalnum() for c in mark):
        return False
    return text == separator.join(names)


def _persons(existing: Sequence[str], previous: Provenance | None) -> list[str]:
    """The values a person set that name a genre: :func:`human_genres` without the placeholders
    (values naming only :data:`NOT_GENRES`), which count as no genre."""
    return [v for v in human_genres(existing, previous) if names_a_genre(v)]


def _named(values: Sequence[str], previous: Provenance | None) -> set[str]:
    """The genre keys of every genre the values name (:func:`tag_values`), and of their parts
    between genrify's recorded separator: only to repeat no genre, never to split a person's value."""
    separator = previous.separator if previous is not None else None
    parts = [p for v in values for p in (v.split(separator) if separator else [v])]
    return {genre_key(n) for n in tag_values([*values, *parts])}


def names_a_genre(value: str) -> bool:
    """Whether a genre value names any genre: not blank, and not only names in :data:`NOT_GENRES`.

    Parameters
    ----------
    value
        One stored genre value, read as :func:`tag_values` reads it (``"Other; Jazz"`` names
        ``Jazz``; ``"(255)"``, ``"(RX)"`` and ``"Unknown"`` name none).
    """
    return any(genre_key(n) not in NOT_GENRES for n in tag_values([value]))


def id3v1_names(value: str) -> list[str]:
    """The genre names of a value that is an ID3v1 genre reference (``"17"``, ``"(17)"``,
    ``"(17)(18)"``), through mutagen's genre list; ``[value]`` for any other value."""
    if not _ID3V1.match(value):
        return [value]
    from mutagen.id3 import TCON  # deferred: only such values need mutagen's genre list

    return [str(g) for g in TCON(encoding=3, text=[value.strip()]).genres] or [value]


def tag_values(genres: Sequence[str]) -> list[str]:
    """The genre names in genre values: ID3v1 references named, ``;``/``,``-joined values split,
    blanks dropped (values that name no genre are left for the caller to judge).

    The one reading of a person's genre values (:func:`human_genres` gives them), for tagging
    (:func:`resolve`) and for learning (:mod:`genrify.learn.labels`).
    """
    out: list[str] = []
    for value in genres:
        for part in _JOINED.split(str(value)):
            for name in id3v1_names(part):
                if name.strip():
                    out.append(name.strip())
    return out


def resolve(
    existing: Sequence[str], previous: Provenance | None, new: Sequence[str], mode: str, *,
    canonical: Callable[[str], str | None] | None = None,
) -> tuple[str, ...] | None:
    """The genres a file should hold after a write, by tag mode (see the module docstring).

    Parameters
    ----------
    existing
        The genre values there now.
    previous
        The provenance record there now (``None`` if none, or not genrify's).
    new
        The genres genrify proposes, most probable first.
    mode
        ``"replace"``, ``"merge"`` or ``"keep"``.
    canonical
        The genre map's spelling of a name (:meth:`GenreMap.name`), so that merge adds no genre a
        person's value already names by an alias (``Hip-Hop`` beside a person's ``rap``).

    Returns
    -------
    tuple of str or None
        The genres to store; ``None`` where ``keep`` leaves the file alone because a person set
        a genre.

    Raises
    ------
    ParameterError
        An unknown mode.
    """
    check_mode(mode)
    new = tuple(new)
    if mode == "replace":
        return new
    # Values that name no genre ("Other", blank) are no one's genre: keep fills such a file, merge
    # replaces them.
    human = _persons(existing, previous)
    if mode == "keep":
        return None if human else new
    out = list(human)  # each as the person wrote it, joined values and ID3v1 numbers too
    # Spellings that differ only in case, spaces or hyphens are one genre ("Hip Hop", "Hip-Hop"),
    # and a genre a person's value names counts as there ("Jazz" in "Swing; Jazz", "(8)").
    seen = {genre_key(g) for g in out} | _named(out, previous)
    if canonical is not None:
        seen |= {genre_key(name) for name in map(canonical, tag_values(out)) if name is not None}
    for genre in new:
        if genre_key(genre) not in seen:
            seen.add(genre_key(genre))
            out.append(genre)
    return tuple(out)


def _probability(name: str, value: Any) -> float:
    # ``not 0 <= x <= 1`` also refuses NaN.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ParameterError(f"{name} must be a probability between 0 and 1, not {value!r}", field=name,
                             problem=f"must be between 0 and 1, not {value}")
    return float(value)


@dataclass(frozen=True)
class TagDecision:
    """What one file's (or item's) genre field should become: :meth:`TagPolicy.decide`'s answer.

    Attributes
    ----------
    status
        ``"write"`` (the genres change), ``"unchanged"`` (they are already these), ``"kept"`` (keep
        mode found a person's genre) or ``"left_alone"`` (no genre sure enough to set).
    genres
        What the field should hold (for ``"kept"`` and ``"left_alone"``: what it holds now).
    provenance
        The record to store beside them, naming only the genres genrify itself put there (a
        person's genres that merge keeps, or that genrify proposed too, stay a person's); ``None``
        where nothing is to be stored.
    """

    status: str
    genres: tuple[str, ...]
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if self.status not in DECISIONS:
            raise ParameterError(f"unknown tag decision {self.status!r}; expected one of {', '.join(DECISIONS)}")

    @property
    def sets(self) -> bool:
        """The field gets :attr:`genres` and :attr:`provenance` (a write, or a refresh of the same)."""
        return self.status in ("write", "unchanged")


#: What :attr:`TagDecision.status` can be.
DECISIONS = ("write", "unchanged", "kept", "left_alone")


@dataclass(frozen=True)
class TagPolicy:
    """How a run turns answers into genre tags: how many, how sure, which mode, which spelling.

    Attributes
    ----------
    count
        Genres per file, most probable first (parent genres come on top of these).
    min_confidence
        The top genre's probability must reach this, else the file is left alone.
    min_probability
        Every further genre (2nd to ``count``-th) must reach this, else it is not written.
    skip_unsure
        Answers the model flags as unsure (``Prediction.low_confidence``) are not written.
    mode
        ``"replace"``, ``"merge"`` or ``"keep"`` (see :func:`resolve`).
    separator
        Join several genres into one value with this, for players that read one value only.
    id3v23
        Write ID3v2.3 tags (several genres joined with ``/``) instead of ID3v2.4.
    parents
        Add each genre's parent genres from the map (``House`` -> ``House``, ``Electronic``).
    genre_map
        Canonical spellings, aliases, whitelist and parents (default: the shipped map).
    album_mode
        Every track of an album gets the album's genres, its tracks' probabilities pooled
        (:mod:`genrify.classify.albums`).
    own_genre_above
        Album mode: also write a track's own top genre where it differs from the album's and its
        probability is more than this (:func:`genrify.classify.albums.track_ranking`); it comes
        second, so it needs a ``count`` of 2 or more. ``None``: never.

    Raises
    ------
    ParameterError
        A bad mode, ``count`` below 1, a probability outside [0, 1], an empty separator or one
        with control characters, ``own_genre_above`` without ``album_mode`` or with a ``count`` of
        1. The error names the field (:attr:`genrify.errors.ParameterError.field`): the CLI and the
        beets plugin say it in their own words, and check nothing again.
    """

    count: int = 1
    min_confidence: float = 0.0
    min_probability: float = 0.1
    skip_unsure: bool = True
    mode: str = "keep"
    separator: str | None = None
    id3v23: bool = False
    parents: bool = False
    genre_map: GenreMap = field(default_factory=GenreMap.default)
    album_mode: bool = False
    own_genre_above: float | None = None

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ParameterError(f"count (genres per file) must be a whole number of at least 1, not {self.count!r}",
                                 field="count", problem=f"must be at least 1, not {self.count}")
        object.__setattr__(self, "min_confidence", _probability("min_confidence", self.min_confidence))
        object.__setattr__(self, "min_probability", _probability("min_probability", self.min_probability))
        check_separator(self.separator)
        if not isinstance(self.genre_map, GenreMap):
            raise ParameterError(f"genre_map must be a GenreMap, not {type(self.genre_map).__name__}")
        if self.own_genre_above is not None:
            object.__setattr__(self, "own_genre_above", _probability("own_genre_above", self.own_genre_above))
            if not self.album_mode:
                raise ParameterError("own_genre_above goes with album_mode", field="own_genre_above",
                                     problem="goes with {album_mode}")
            if self.count < 2:
                raise ParameterError(
                    f"own_genre_above needs a count of 2 or more (the track's own genre comes second), not {self.count}",
                    field="own_genre_above",
                    problem="needs {count} 2 or more: a track's own genre is written after the album's")

    def genres_for(self, ranked: Sequence[tuple[str, float]], *, unsure: bool = False) -> list[str]:
        """The genres to write for one answer; ``[]`` means leave the file alone.

        Parameters
        ----------
        ranked
            ``(genre, probability)`` pairs, most probable first, as the model names them
            (``Prediction.top(k)``, or an album's ranking).
        unsure
            The model flagged this answer as unsure.

        Returns
        -------
        list of str
            Canonical names: the ranking mapped through the genre map (names the whitelist
            refuses dropped, names that map to one genre counted once at the first one's place),
            none where the first is refused, the first kept only if it reaches ``min_confidence``, then up to ``count - 1`` more
            that reach ``min_probability``, then (with ``parents``) their parent genres.
        """
        if unsure and self.skip_unsure:
            return []
        if not ranked or self.genre_map.name(ranked[0][0]) is None:
            # The answer is a genre the whitelist refuses: the file is left alone, never handed to a
            # less likely genre (a song 90 % jazz is not tagged with its 3 % of Electronic).
            return []
        mapped: list[tuple[str, float]] = []
        seen: set[str] = set()
        for genre, probability in ranked:
            name = self.genre_map.name(genre)
            if name is None or name.casefold() in seen:
                continue
            seen.add(name.casefold())
            mapped.append((name, float(probability)))
        if not mapped[0][1] >= self.min_confidence:
            return []
        chosen = [mapped[0][0]] + [g for g, p in mapped[1:self.count] if p >= self.min_probability]
        return self.genre_map.names(chosen, parents=self.parents)

    def decide(self, current: Sequence[str], previous: Provenance | None, ranked: Sequence[tuple[str, float]], *,
               unsure: bool = False, model: str = "") -> TagDecision:
        """What a genre field should hold after this answer: the one decision between an answer and
        a write, the same for files and beets items.

        Parameters
        ----------
        current
            The genres in the field now, one per value (a separator's joins split).
        previous
            The provenance record beside them (``None``: every genre there is a person's).
        ranked, unsure
            As for :meth:`genres_for`.
        model
            The model's name, for the provenance record.

        Returns
        -------
        TagDecision
            ``"kept"`` where the mode keeps a person's genre (whatever the answer), else
            ``"left_alone"`` where :meth:`genres_for` proposes nothing (both with the field as it is), else the genres :func:`resolve`
            gives, ``"unchanged"`` where they are exactly the field's, and the provenance naming
            only those that a person did not set.
        """
        current = tuple(current)
        proposed = self.genres_for(ranked, unsure=unsure)
        if not proposed:
            # Keep mode keeps a person's genre whatever the answer: counted as kept, not as unsure.
            kept = self.mode == "keep" and _persons(current, previous)
            return TagDecision("kept" if kept else "left_alone", current)
        return decide_genres(current, previous, proposed, self.mode,
                             lambda ours: provenance_for(ours, self.probabilities_for(ranked), model=model),
                             canonical=self.genre_map.name)

    def probabilities_for(self, ranked: Sequence[tuple[str, float]]) -> dict[str, float]:
        """Each canonical name's probability in ``ranked`` (the first name mapping to it), for
        :class:`Provenance`."""
        out: dict[str, float] = {}
        for genre, probability in ranked:
            name = self.genre_map.name(genre)
            if name is not None and name not in out:
                out[name] = float(probability)
        return out


def provenance_for(genres: Sequence[str], probabilities: Mapping[str, float], *, model: str) -> Provenance:
    """A provenance record for genres about to be written, stamped with this genrify's version.

    Parameters
    ----------
    genres
        The genres (as :meth:`TagPolicy.genres_for` gave them).
    probabilities
        Probabilities by genre (as :meth:`TagPolicy.probabilities_for` gave them); others ignored.
    model
        The model's name.
    """
    from genrify import __version__  # the package's one version

    return Provenance(
        genres=tuple(genres), model=model, version=__version__,
        probabilities={g: probabilities[g] for g in genres if g in probabilities},
    )
