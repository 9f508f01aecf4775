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

Limits
------
A map is a few kilobytes written by a person; a file that is not (a mistake, or a hostile file
given to a service) is refused with one line before it can cost much time or memory. Only a
regular file is read (a named pipe, a device or a folder is refused before it is opened, and
checked again once opened, without waiting on a pipe), at most :data:`MAX_MAP_BYTES` of it. A
UTF-8 byte order mark is accepted. TOML nested too deeply to parse is refused rather than
exhausting the stack. In ``[parents]``, a genre may have at most :data:`MAX_PARENTS` direct parents,
:data:`MAX_DEPTH` generations above it and :data:`MAX_ANCESTORS` ancestors in all; the parents are
resolved without recursion, each genre's ancestors once (memoised), within :data:`MAX_LINKS` steps
for the whole map.
"""

from __future__ import annotations

import functools
import os
import re
import reprlib
import stat
import tomllib
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrify.errors import GenreMapError

#: The spellings ``case`` offers for names the map does not know.
CASES = ("title", "lower", "keep")
#: The shipped map (see :meth:`GenreMap.default`).
DEFAULT_MAP_PATH = Path(__file__).resolve().parent / "genre_map.toml"

#: The largest map file read: the shipped map is a few kilobytes, a big hand-made one tens.
MAX_MAP_BYTES = 1 << 20
#: Most direct parents one genre may have in ``[parents]``.
MAX_PARENTS = 100
#: Most generations of parents above one genre (the longest chain of parents, parents of parents...).
MAX_DEPTH = 100
#: Most ancestors (parents, theirs, and so on) one genre may have: every one may be written as a tag.
MAX_ANCESTORS = 1000
#: Most steps resolving every genre's ancestors may take (one step: one ancestor of a parent, merged
#: into its child's): bounds the time and memory of a map of many genres with many ancestors each.
MAX_LINKS = 1_000_000

_SECTIONS = ("genres", "parents", "options")
_NO_KEYS: frozenset[str] = frozenset()
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


# Values quoted in messages are cut short (long strings, big or deeply nested lists and tables):
# a message stays one readable line, whatever the file holds.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel = 3


def _shown(value: Any) -> str:
    """``repr(value)``, cut short for a one-line message."""
    return _REPR.repr(value)


def _read_map(path: Path) -> str:
    """The text of a map file: a regular file, at most :data:`MAX_MAP_BYTES`, UTF-8 (a BOM allowed).

    Raises
    ------
    GenreMapError
        One line naming the file: missing, a folder, not a regular file, too large, unreadable or
        not UTF-8.
    """
    fd = -1
    try:
        # stat first: opening a FIFO for reading would wait for a writer, forever.
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            # O_NONBLOCK: a file swapped for a FIFO after the stat must not hang the open either.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise GenreMapError(path, "genre map file not found") from None
    except OSError as exc:
        raise GenreMapError(path, f"cannot read the genre map: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the name
        raise GenreMapError(path, "not a valid file name") from None
    if fd < 0:
        _check_kind(path, st)
    try:
        with os.fdopen(fd, "rb") as f:
            _check_kind(path, os.fstat(f.fileno()))  # what was opened, whatever the stat saw
            # One byte over the limit tells a file that is too large from one exactly at it,
            # without trusting st_size (files under /proc report 0).
            data = f.read(MAX_MAP_BYTES + 1)
    except OSError as exc:
        raise GenreMapError(path, f"cannot read the genre map: {exc.strerror or exc}") from None
    if len(data) > MAX_MAP_BYTES:
        raise GenreMapError(path, f"larger than {MAX_MAP_BYTES // (1 << 20)} MiB: too large for a genre map")
    try:
        return data.decode("utf-8-sig")  # "-sig": a BOM that an editor put first is not TOML's business
    except UnicodeDecodeError as exc:
        raise GenreMapError(path, f"not a UTF-8 text file (byte {exc.start})") from None


def _check_kind(path: Path, st: os.stat_result) -> None:
    """Refuse anything but a regular file, and a regular file over :data:`MAX_MAP_BYTES`."""
    if stat.S_ISDIR(st.st_mode):
        raise GenreMapError(path, "is a folder, not a genre map file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise GenreMapError(path, f"{kind}, not a genre map file (only a regular file is read)")
    if st.st_size > MAX_MAP_BYTES:
        raise GenreMapError(path, f"larger than {MAX_MAP_BYTES // (1 << 20)} MiB: too large for a genre map")


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
    # Each genre's ancestors once found (key -> spellings): a run asks for the same few genres once
    # per song. Not part of the map's value (equality, hash, repr).
    _ancestors: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

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
        if name is None or genre_key(name) not in self.parents:
            return []  # and not memoised: the memo holds only the map's own genres, whatever is asked
        known = self._ancestors.get(genre_key(name))
        if known is not None:
            return list(known)
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
        self._ancestors[genre_key(name)] = tuple(out)
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
            One line, ``"FILE: problem"``: the file is missing, unreadable, not a regular file,
            larger than :data:`MAX_MAP_BYTES`, not UTF-8, not valid TOML (with the line and
            column) or nested too deeply to parse, or its content is not a genre map (see
            :meth:`from_dict`).
        """
        path = Path(path)
        text = _read_map(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message names the line and column: "Expected '=' ... (at line 3, column 7)".
            raise GenreMapError(path, f"TOML syntax error: {exc}") from None
        except RecursionError:
            # tomllib parses nested arrays and inline tables recursively: thousands of "[" exhaust
            # Python's stack. The stack is whole again once the error has unwound to here.
            raise GenreMapError(path, "TOML nested too deeply (arrays or inline tables inside "
                                      "each other hundreds of times): not a genre map") from None
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
            ``"SOURCE: problem"`` for anything that is not a genre map, including parents beyond
            :data:`MAX_PARENTS`, :data:`MAX_DEPTH`, :data:`MAX_ANCESTORS` or :data:`MAX_LINKS`.
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
                known = ", ".join(f"[{s}]" for s in _SECTIONS)
                raise self.fail(f"unknown section [{_shown(str(section))[1:-1]}] (known: {known})")
        genres = self.table(data, "genres")
        parents = self.table(data, "parents")
        options = self.table(data, "options")
        for key in options:
            if key not in _OPTIONS:
                raise self.fail(f"unknown key {_shown(key)} in [options] (known: {', '.join(_OPTIONS)})")
        whitelist = options.get("whitelist", False)
        if not isinstance(whitelist, bool):
            raise self.fail(f"[options] whitelist must be true or false, not {_shown(whitelist)}")
        case = options.get("case", "title")
        if case not in CASES:
            raise self.fail(f"[options] case must be one of {', '.join(repr(c) for c in CASES)}, not {_shown(case)}")

        for canonical, aliases in genres.items():
            name = self.text(canonical, f"[genres] name {_shown(canonical)}")
            self.claim(name, name, f"[genres] {_shown(name)}")
            for alias in self.text_list(aliases, f"[genres] {_shown(name)}", "aliases"):
                self.claim(alias, name, f"[genres] {_shown(name)}")
        # Names that appear only in [parents] are spelled as written there (first spelling wins).
        edges: dict[str, list[str]] = {}
        # Keys already in each row: "is it there yet?" in constant time, not by scanning the row.
        in_row: dict[str, set[str]] = {}
        for child, above in parents.items():
            child_name = self.known(self.text(child, f"[parents] name {_shown(child)}"))
            names = [self.known(p) for p in self.text_list(above, f"[parents] {_shown(child)}", "parents")]
            key = genre_key(child_name)
            row, keys = edges.setdefault(key, []), in_row.setdefault(key, set())
            for name in names:
                if genre_key(name) not in keys:
                    keys.add(genre_key(name))
                    row.append(name)
            if len(row) > MAX_PARENTS:
                raise self.fail(f"[parents] {_shown(child_name)} has {len(row)} parent genres; "
                                f"at most {MAX_PARENTS} are allowed")
        self.check_parents(edges)
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
            raise self.fail(f"[{section}] must be a table of names, not {type(value).__name__} {_shown(value)}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{where}: a genre name must be a string, not {type(value).__name__} {_shown(value)}")
        tidy = _tidy(value)
        if not tidy or not genre_key(tidy):
            raise self.fail(f"{where}: empty genre name")
        if "\x00" in tidy:
            raise self.fail(f"{where}: a genre name cannot contain a NUL character")
        return tidy

    def text_list(self, value: Any, where: str, what: str) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(f"{where}: {what} must be a list of strings, e.g. [\"a\", \"b\"], not {_shown(value)}")
        return [self.text(v, f"{where} {what}") for v in value]

    def claim(self, name: str, canonical: str, where: str) -> None:
        key = genre_key(name)
        owner = self.owner.get(key)
        if owner is not None and genre_key(owner) != genre_key(canonical):
            raise self.fail(f"{where}: {_shown(name)} is already a name of {_shown(owner)} "
                            f"(each name maps to one genre)")
        self.owner[key] = canonical
        self.spellings[key] = canonical

    def known(self, name: str) -> str:
        """The canonical spelling of a [parents] name, adding it to the map if it is new."""
        key = genre_key(name)
        if key not in self.spellings:
            self.spellings[key] = name
            self.owner[key] = name
        return self.spellings[key]

    def check_parents(self, edges: dict[str, list[str]]) -> None:
        """Refuse a genre that is its own ancestor (naming the loop), one with more than
        :data:`MAX_DEPTH` generations or :data:`MAX_ANCESTORS` ancestors above it, and a map whose
        ancestors take more than :data:`MAX_LINKS` steps to resolve.

        A depth-first walk with its own stack, not Python's: a chain of ten thousand parents is an
        error, not a ``RecursionError``. Each genre's ancestors are resolved once, from its parents'
        (memoised, in the order the walk finishes genres: parents first), so a map costs the sum of
        its genres' ancestors, not a walk of every chain from every genre.
        """
        above: dict[str, AbstractSet[str]] = {}  # key -> its ancestors' keys, once done
        depth: dict[str, int] = {}  # key -> generations above it, once done
        links = 0
        parent_keys = {key: [genre_key(p) for p in row] for key, row in edges.items()}
        for root in sorted(parent_keys):
            if root in above:
                continue
            path = [root]  # the walk's current chain: path[i + 1] is a parent of path[i]
            on_path = {root: 0}
            todo = [iter(parent_keys[root])]
            while todo:
                pkey = next(todo[-1], None)
                if pkey is not None:
                    if pkey in on_path:
                        raise self.fail(f"[parents] has a cycle: {self.loop(path[on_path[pkey]:] + [pkey])}")
                    if pkey not in above:
                        on_path[pkey] = len(path)
                        path.append(pkey)
                        todo.append(iter(parent_keys.get(pkey, ())))
                        if len(path) - 1 > MAX_DEPTH:  # path[0] has at least this many generations above it
                            raise self.too_deep(path[0])
                    continue
                key = path.pop()
                del on_path[key]
                todo.pop()
                keys = parent_keys.get(key, ())
                depth[key] = 1 + max((depth[k] for k in keys), default=-1)
                if depth[key] > MAX_DEPTH:
                    raise self.too_deep(key)
                ancestors = set(keys)
                for k in keys:
                    links += len(above[k])
                    if links > MAX_LINKS:
                        raise self.fail(f"[parents] relate too many genres: resolving every genre's "
                                        f"ancestors takes more than {MAX_LINKS:,} steps (a map for people "
                                        f"has a few parents per genre)")
                    ancestors |= above[k]
                if len(ancestors) > MAX_ANCESTORS:
                    raise self.fail(f"[parents] {_shown(self.spellings[key])} has {len(ancestors)} ancestor "
                                    f"genres (parents, theirs, and so on); at most {MAX_ANCESTORS} are allowed")
                # One shared empty set for the many genres without parents: a set costs 200 bytes.
                above[key] = ancestors or _NO_KEYS

    def too_deep(self, key: str) -> GenreMapError:
        return self.fail(f"[parents] {_shown(self.spellings[key])} has more than {MAX_DEPTH} generations of "
                         f"parent genres above it (parents of parents...); at most {MAX_DEPTH} are allowed")

    def loop(self, keys: list[str]) -> str:
        """A cycle's genres for a message, ``A -> B -> A``; a long one shortened in its middle."""
        names = [_shown(self.spellings[k])[1:-1] for k in keys]
        if len(names) > 8:
            names = [*names[:4], f"... ({len(names) - 6} more)", *names[-2:]]
        return " -> ".join(names)
