"""Genre names as a collection wants them: canonical spellings, aliases, a whitelist, parent genres.

A model answers with its own labels (``hip-hop``, ``soul/rnb``, a training folder's ``hiphop``);
a music collection wants one spelling per genre (``Hip-Hop``, ``R&B``), perhaps only the genres
its owner allows, perhaps the broader genre beside the narrow one (``House`` and ``Electronic``).
A :class:`GenreMap` turns the one into the other. The same map applies to every model, built-in or
trained, because it works on names only.

Names are compared by a normalised key: case folded, with whitespace, ``-``, ``_`` and ``.``
ignored, so ``"Hip Hop"``, ``"hiphop"`` and ``"HIP-HOP"`` are one genre. Other punctuation counts
(``"R&B"`` is not ``"RB"``; ``"Drum & Bass"`` and ``"Drum and Bass"`` need an alias).

The map file (TOML)
-------------------
::

    [genres]            # canonical name = [aliases]
    "Hip-Hop" = ["hip hop", "rap"]
    "R&B" = ["rnb", "soul/rnb", "rhythm and blues"]

    [parents]           # genre = [parent genres]
    "House" = ["Electronic"]
    "Deep House" = ["House"]        # parents are followed: Deep House -> House -> Electronic

    [options]
    whitelist = false   # true: only names in [genres] or [parents] are ever written
    case = "title"      # names not in the map: "title" (Title Case), "lower", or "keep"

Every section and key is optional. A name in ``[parents]`` (on either side) that is not in
``[genres]`` is spelled as written there; one that is (or is an alias) takes its canonical
spelling. With ``whitelist = true``, a name the map does not know is never written: a file whose
genres are all refused is left alone. ``case`` decides the spelling of names the map does not know
(only without a whitelist): ``"title"`` upper-cases the first letter of each word (``death metal``
-> ``Death Metal``, ``k-pop`` -> ``K-Pop``), ``"lower"`` lower-cases everything, ``"keep"`` keeps
the model's spelling; whitespace is tidied in every case.

A user's map replaces the default one (:meth:`GenreMap.default`, the file ``genre_map.toml``
beside this module, which spells every genre genrify's models use and a few dozen common ones,
with parents only where the relation is widely agreed). Start from a copy of that file to extend
it. A file that cannot be used raises :class:`~genrify.errors.GenreMapError` with one line: the
file and the problem (a TOML syntax error with its line, an unknown section or key, a name that is
not a string, an alias given to two genres, a cycle of parents).
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrify.errors import GenreMapError

#: The spellings ``case`` offers for names the map does not know.
CASES = ("title", "lower", "keep")
#: The shipped map (see :meth:`GenreMap.default`).
DEFAULT_MAP_PATH = Path(__file__).resolve().parent / "genre_map.toml"

_SECTIONS = ("genres", "parents", "options")
_OPTIONS = ("whitelist", "case")
# Characters a key ignores: spellings people use interchangeably inside one genre name.
_IGNORED = re.compile(r"[\s\-_.]+")
# Where a word starts for Title Case: after whitespace, a hyphen, a slash, "&", "+" or "(".
_WORD = re.compile(r"([\s\-/&+(]+)")


def genre_key(name: str) -> str:
    """The key names are compared by: case folded, whitespace, ``-``, ``_`` and ``.`` removed.

    Parameters
    ----------
    name
        A genre name.

    Returns
    -------
    str
        E.g. ``"hiphop"`` for ``"Hip Hop"``, ``"Hip-Hop"`` and ``"hip_hop"``.
    """
    return _IGNORED.sub("", name.casefold())


def _tidy(name: str) -> str:
    """``name`` with surrounding whitespace removed and inner runs of whitespace made one space."""
    return " ".join(name.split())


def _title(name: str) -> str:
    """Title Case that leaves what already looks deliberate: ``UK garage`` -> ``UK Garage``.

    A word's first letter is upper-cased. The rest of the word is lower-cased only where the word
    is all one case and longer than three letters (``ROCK`` -> ``Rock``): short all-capital words
    are usually acronyms (``EDM``, ``UK``) and mixed-case words a deliberate spelling (``McCoy``).
    """
    parts = _WORD.split(name)
    out = []
    for part in parts:
        if not part or _WORD.fullmatch(part):
            out.append(part)
            continue
        letters = [c for c in part if c.isalpha()]
        rest = part[1:]
        if letters and (part.islower() or (part.isupper() and len(letters) > 3)):
            rest = rest.lower()
        out.append(part[:1].upper() + rest)
    return "".join(out)


@dataclass(frozen=True)
class GenreMap:
    """Canonical genre names, aliases, an optional whitelist and parent genres.

    Make one with :meth:`load` (a TOML file), :meth:`default` (the shipped map) or
    :meth:`from_dict` (the same layout as a parsed TOML document). ``GenreMap()`` maps nothing:
    names are only tidied and title-cased.

    Attributes
    ----------
    spellings
        Normalised key (:func:`genre_key`) -> canonical spelling, for every canonical name, alias
        and name in ``[parents]``. Read-only by convention (a plain dict, so that the map pickles
        for worker processes).
    parents
        Key of a canonical name -> its direct parents' canonical spellings.
    whitelist
        Only names in ``spellings`` are ever written.
    case
        The spelling of names the map does not know: one of :data:`CASES`.
    source
        Where the map came from, for messages.
    """

    spellings: dict[str, str] = field(default_factory=dict, hash=False)
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    whitelist: bool = False
    case: str = "title"
    source: str = "<empty map>"

    def __post_init__(self) -> None:
        if self.case not in CASES:
            raise GenreMapError(self.source, f"case must be one of {', '.join(CASES)}, not {self.case!r}")

    # --- mapping -------------------------------------------------------------------------------

    def __contains__(self, genre: object) -> bool:
        """Whether the map names ``genre`` (as a canonical name, an alias or in ``[parents]``)."""
        return isinstance(genre, str) and genre_key(genre) in self.spellings

    def name(self, genre: str) -> str | None:
        """The canonical spelling of one genre.

        Parameters
        ----------
        genre
            A genre name as a model (or a person) spells it.

        Returns
        -------
        str or None
            The map's spelling where it knows the name; otherwise, without a whitelist, the name
            tidied and cased as ``case`` says. ``None`` for a blank name and for a name the
            whitelist refuses.
        """
        tidy = _tidy(genre)
        if not tidy:
            return None
        known = self.spellings.get(genre_key(tidy))
        if known is not None:
            return known
        if self.whitelist:
            return None
        if self.case == "title":
            return _title(tidy)
        if self.case == "lower":
            return tidy.lower()
        return tidy

    def names(self, genres: Sequence[str], *, parents: bool = False) -> list[str]:
        """Canonical spellings of several genres, in order.

        Parameters
        ----------
        genres
            Genre names, most important first.
        parents
            Append each genre's parent genres (and theirs, transitively) after all the genres
            themselves, nearest first.

        Returns
        -------
        list of str
            Refused and blank names dropped, repeats (by key, after mapping) dropped with the
            first kept, e.g. ``["Hip-Hop"]`` for ``["hip hop", "Hip-Hop", "rap"]``.
        """
        out: list[str] = []
        seen: set[str] = set()
        for genre in genres:
            name = self.name(genre)
            if name is not None and genre_key(name) not in seen:
                seen.add(genre_key(name))
                out.append(name)
        if parents:
            for name in list(out):
                for parent in self.ancestors(name):
                    if genre_key(parent) not in seen:
                        seen.add(genre_key(parent))
                        out.append(parent)
        return out

    def ancestors(self, genre: str) -> list[str]:
        """A genre's parents, then theirs, and so on (canonical spellings, nearest first, no repeats).

        Parameters
        ----------
        genre
            A genre name (mapped through the map first).

        Returns
        -------
        list of str
            Empty for a genre without parents or unknown to the map.
        """
        name = self.name(genre)
        if name is None:
            return []
        out: list[str] = []
        seen = {genre_key(name)}
        frontier = [name]
        while frontier:  # breadth first: direct parents before grandparents
            following: list[str] = []
            for current in frontier:
                for parent in self.parents.get(genre_key(current), ()):
                    if genre_key(parent) not in seen:
                        seen.add(genre_key(parent))
                        out.append(parent)
                        following.append(parent)
            frontier = following
        return out

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> GenreMap:
        """Read a genre map file (the TOML layout in the module docstring).

        Parameters
        ----------
        path
            The file.

        Returns
        -------
        GenreMap

        Raises
        ------
        GenreMapError
            One line, ``"FILE: problem"``: the file is missing or unreadable, not UTF-8, not valid
            TOML (with the line and column), or its content is not a genre map.
        """
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise GenreMapError(path, "genre map file not found") from None
        except IsADirectoryError:
            raise GenreMapError(path, "is a folder, not a genre map file") from None
        except OSError as exc:
            raise GenreMapError(path, f"cannot read the genre map: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise GenreMapError(path, f"not a UTF-8 text file (byte {exc.start})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message names the line and column: "Expected '=' ... (at line 3, column 7)".
            raise GenreMapError(path, f"TOML syntax error: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def default(cls) -> GenreMap:
        """The shipped map (``genre_map.toml`` beside this module): no whitelist, title case.

        It spells every genre genrify's models use (the built-in model's, the synthetic songs')
        and common genres with parents only where they are widely agreed (``House`` ->
        ``Electronic``, ``Heavy Metal`` -> ``Metal``).
        """
        return _default_map()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<genre map>") -> GenreMap:
        """A map from a parsed document with the TOML file's layout.

        Parameters
        ----------
        data
            ``{"genres": {name: [aliases]}, "parents": {name: [parents]}, "options": {...}}``;
            every part optional.
        source
            Names the map in error messages (the file's path for :meth:`load`).

        Raises
        ------
        GenreMapError
            ``"SOURCE: problem"`` for anything that is not a genre map.
        """
        return _Builder(source).build(data)


@functools.cache
def _default_map() -> GenreMap:
    # Read once per process: a TagPolicy is made per run (or per beets command), the file is fixed.
    return GenreMap.load(DEFAULT_MAP_PATH)


class _Builder:
    """Checks a parsed map and collects its spellings and parents (one error, naming the place)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.spellings: dict[str, str] = {}
        # Which entry gave each key: an alias claimed by two genres is an error, not a silent pick.
        self.owner: dict[str, str] = {}

    def fail(self, reason: str) -> GenreMapError:
        return GenreMapError(self.source, reason)

    def build(self, data: Mapping[str, Any]) -> GenreMap:
        if not isinstance(data, Mapping):
            raise self.fail("a genre map must be a TOML table")
        for section in data:
            if section not in _SECTIONS:
                raise self.fail(f"unknown section [{section}] (known: {', '.join(f'[{s}]' for s in _SECTIONS)})")
        genres = self.table(data, "genres")
        parents = self.table(data, "parents")
        options = self.table(data, "options")
        for key in options:
            if key not in _OPTIONS:
                raise self.fail(f"unknown key {key!r} in [options] (known: {', '.join(_OPTIONS)})")
        whitelist = options.get("whitelist", False)
        if not isinstance(whitelist, bool):
            raise self.fail(f"[options] whitelist must be true or false, not {whitelist!r}")
        case = options.get("case", "title")
        if case not in CASES:
            raise self.fail(f"[options] case must be one of {', '.join(repr(c) for c in CASES)}, not {case!r}")

        for canonical, aliases in genres.items():
            name = self.text(canonical, f'[genres] name {canonical!r}')
            self.claim(name, name, f"[genres] {name!r}")
            for alias in self.text_list(aliases, f"[genres] {name!r}", "aliases"):
                self.claim(alias, name, f"[genres] {name!r}")
        # Names that appear only in [parents] are spelled as written there (first spelling wins).
        edges: dict[str, list[str]] = {}
        for child, above in parents.items():
            child_name = self.known(self.text(child, f"[parents] name {child!r}"))
            names = [self.known(p) for p in self.text_list(above, f"[parents] {child!r}", "parents")]
            row = edges.setdefault(genre_key(child_name), [])
            row.extend(p for p in names if genre_key(p) not in {genre_key(q) for q in row})
        self.check_cycles(edges)
        return GenreMap(
            spellings=dict(self.spellings),
            parents={k: tuple(v) for k, v in edges.items() if v},
            whitelist=whitelist,
            case=case,
            source=self.source,
        )

    def table(self, data: Mapping[str, Any], section: str) -> Mapping[str, Any]:
        value = data.get(section, {})
        if not isinstance(value, Mapping):
            raise self.fail(f"[{section}] must be a table of names, not {type(value).__name__} {value!r}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{where}: a genre name must be a string, not {type(value).__name__} {value!r}")
        tidy = _tidy(value)
        if not tidy or not genre_key(tidy):
            raise self.fail(f"{where}: empty genre name")
        if "\x00" in tidy:
            raise self.fail(f"{where}: a genre name cannot contain a NUL character")
        return tidy

    def text_list(self, value: Any, where: str, what: str) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(f"{where}: {what} must be a list of strings, e.g. [\"a\", \"b\"], not {value!r}")
        return [self.text(v, f"{where} {what}") for v in value]

    def claim(self, name: str, canonical: str, where: str) -> None:
        key = genre_key(name)
        owner = self.owner.get(key)
        if owner is not None and genre_key(owner) != genre_key(canonical):
            raise self.fail(f"{where}: {name!r} is already a name of {owner!r} (each name maps to one genre)")
        self.owner[key] = canonical
        self.spellings[key] = canonical

    def known(self, name: str) -> str:
        """The canonical spelling of a [parents] name, adding it to the map if it is new."""
        key = genre_key(name)
        if key not in self.spellings:
            self.spellings[key] = name
            self.owner[key] = name
        return self.spellings[key]

    def check_cycles(self, edges: dict[str, list[str]]) -> None:
        """Refuse a genre that is its own ancestor, naming the loop."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(key: str, trail: list[str]) -> None:
            state[key] = 1
            for parent in edges.get(key, ()):
                pkey = genre_key(parent)
                if state.get(pkey) == 1:
                    loop = [self.spellings[k] for k in trail[trail.index(pkey):]] + [parent]
                    raise self.fail(f"[parents] has a cycle: {' -> '.join(loop)}")
                if pkey not in state:
                    visit(pkey, trail + [pkey])
            state[key] = 2

        for key in sorted(edges):
            if key not in state:
                visit(key, [key])
