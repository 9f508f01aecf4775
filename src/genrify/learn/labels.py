"""What a library teaches: each song's genres, read from its own tags (or its genre folder).

``genrify learn`` learns the genres of *your* library from the genres you already set. This module
reads them:

- **From tags** (``source="tags"``): every value of the file's genre tag, as genrify's tag reader
  gives them (:func:`genrify.collection.tags.read_genre`: ID3v2.4 multi-values, ID3v2.3 ``/``-joined values
  split, Vorbis comments, MP4 atoms, a wav's RIFF INFO genre). A value holding several genres
  joined by ``;`` or ``,`` (as some taggers write them into one field) is split too.
  ID3v1 genre numbers (``(17)``, ``17``) become their names through mutagen's genre list, in
  every format. Values that name no genre (``Other``, ``Unknown``, empty) are dropped, and so are
  the genres genrify wrote itself (its provenance record says which): a model must never learn
  from its own guesses.
- **From folders** (``source="folders"``): the top folder under the folder given, the
  ``MUSIC_DIR/<genre>/...`` layout ``genrify extract`` uses.

Either way the names go through the genre map (:class:`genrify.collection.genremap.GenreMap`; the default
one when none is given): aliases become their canonical name, a whitelist leaves out the names it
does not list, and spellings that differ only in case, spaces, ``-``, ``_`` or ``.`` ("Hip Hop",
"hip-hop") are one genre, shown by its most common spelling. A genre with fewer songs than
``min_songs`` is left out (and reported with its count); a song of several genres teaches each of
them.

The artist group of a song (which keeps one artist's songs on one side of a cross-check) is its
album artist tag, else its artist tag, else its folder (``Artist/Album/`` layouts); a song without
artist tags lying directly in a folder given (or, with genre folders, directly in its genre folder)
counts as an artist of its own, since that folder says nothing about who played it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genrify.collection.genremap import GenreMap, genre_key
from genrify.collection.library import display_path, find_audio
from genrify.collection.records import grouping_artist
from genrify.collection.tagpolicy import NOT_GENRES, tag_values
from genrify.defaults import DEFAULT_MIN_SONGS
from genrify.errors import LabelError, LibraryError, ParameterError, TagError

#: Where the labels come from.
SOURCES = ("tags", "folders")
# How genre values are read (tag_values) and which name no genre (NOT_GENRES) is the collection
# layer's rule, shared with tagging's keep and merge modes: a file whose genres learning ignores is
# one keep mode fills.


def check_min_songs(min_songs: int) -> None:
    """Refuse a ``min_songs`` below 1 (a :class:`~genrify.errors.ParameterError` naming the setting)."""
    if min_songs < 1:
        raise ParameterError(f"min_songs must be at least 1, not {min_songs}", field="min_songs",
                             problem=f"must be at least 1, not {min_songs}")


@dataclass(frozen=True)
class LabelledSong:
    """One song that teaches.

    Attributes
    ----------
    path
        The file (absolute, as the library search found it).
    genres
        Canonical spellings, at least one, only genres that are kept.
    group
        Artist group (:func:`song_group`): ``artist:NAME`` from the album artist or artist tag,
        else ``folder:FOLDER``, else ``song:PATH``.
    """

    path: str
    genres: tuple[str, ...]
    group: str


@dataclass
class LibraryLabels:
    """What :func:`read_labels` found.

    Attributes
    ----------
    songs
        Labelled songs, after the min-songs rule.
    untagged
        Readable audio files without a genre (candidates for suggestions): no genre value, or only
        values that name none (``Other``, ``Unknown``) or that genrify wrote.
    genres
        Kept genres, most songs first (ties by name).
    dropped
        Genre -> songs, left out by the min-songs rule.
    unreadable
        ``(path, reason)`` for files whose tags cannot be read, and inputs that cannot be used.
    passed_over
        ``(path, reason)`` for what the search of the folders passed over (broken or looping links,
        links to folders not followed, unreadable folders), as ``genrify classify`` counts them.
    files_read
        Audio files whose tags were read (or whose folder was looked at).
    ignored
        Genres found in tags that the genre map's whitelist refuses, with how many songs had each.
    refused
        Songs whose genres a person set are all refused by the genre map's whitelist: neither
        labelled nor without a genre (``classify``'s keep mode keeps their genre too).
    ours
        Songs whose only genres are ones genrify wrote (never labels).
    """

    songs: list[LabelledSong]
    untagged: list[str]
    genres: list[str]
    dropped: dict[str, int]
    unreadable: list[tuple[str, str]]
    files_read: int
    ignored: dict[str, int] = field(default_factory=dict)
    ours: int = 0
    refused: list[str] = field(default_factory=list)
    passed_over: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Songs per kept genre, most first (a song of two genres counts for each)."""
        counter = Counter(g for song in self.songs for g in song.genres)
        return {g: counter[g] for g in self.genres}


def song_group(path: str, flat: str | None = None) -> str:
    """The artist group of a file: ``artist:NAME`` (its album artist tag, unless that is a
    compilation's such as "Various Artists", else its artist tag:
    :func:`~genrify.collection.records.grouping_artist`), else ``folder:FOLDER`` (the folder holding
    it, most libraries' ``Artist/Album/`` layout), else ``song:PATH`` where the file lies directly in
    ``flat`` (a folder given, or a genre folder): there the folder says nothing about the artist,
    and the song counts as an artist of its own.
    """
    from genrify.collection.tags import read_artists

    artist = grouping_artist(*read_artists(path))
    folder = os.path.dirname(path)
    if not artist and flat is not None and os.path.normpath(folder) == os.path.normpath(flat):
        return f"song:{path}"
    return artist_group(artist, folder)


def artist_group(name: str | None, folder: str) -> str:
    """The artist group of a song by its artist's name (the album artist, else the artist) and its folder:
    ``artist:NAME`` (case folded), else ``folder:FOLDER``; :func:`song_group` and the beets plugin's."""
    name = (name or "").strip()
    return f"artist:{name.casefold()}" if name else f"folder:{folder}"


def _tag_genres(path: str) -> tuple[list[str], bool]:
    """A file's genre names as a person set them, and whether genrify's own genres were left out.

    Raises
    ------
    TagError
        The tags cannot be read.
    """
    from genrify.collection.tagpolicy import human_genres
    from genrify.collection.tags import read_genre, read_provenance

    values = list(read_genre(path))
    if not values:
        return [], False
    theirs = human_genres(values, read_provenance(path))
    # Anything human_genres took out (a value, or genrify's part of one it joined) was genrify's.
    return tag_values(theirs), theirs != values


def read_labels(
    inputs: Sequence[str | Path],
    *,
    source: str = "tags",
    genre_map: GenreMap | None = None,
    min_songs: int = DEFAULT_MIN_SONGS,
    follow_links: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> LibraryLabels:
    """Read the genres a library teaches.

    Parameters
    ----------
    inputs
        Folders (searched recursively) and files.
    source
        ``"tags"``: the files' genre tags; ``"folders"``: the top folder under each folder given.
    genre_map
        Canonical names, aliases and whitelist (default: :meth:`GenreMap.default`).
    min_songs
        A genre with fewer songs is left out.
    follow_links
        Follow symbolic links to folders outside the folders given (see :func:`find_audio`).
    progress
        Called with ``(files read, files)`` as the tags are read.

    Returns
    -------
    LibraryLabels

    Raises
    ------
    ParameterError
        An unknown ``source`` or a ``min_songs`` below 1.
    LibraryError
        No input can be read, or the folders hold no audio.
    LabelError
        No file has a genre (in tags mode: one line saying how many files were read and how to
        learn from folders instead), or fewer than two genres are left to learn.
    """
    if source not in SOURCES:
        raise ParameterError(f"labels come from {' or '.join(SOURCES)}, not {source!r}")
    check_min_songs(min_songs)
    genre_map = genre_map if genre_map is not None else GenreMap.default()
    files, tops, roots, unreadable, passed_over = _find(inputs, follow_links=follow_links)

    found: dict[str, list[str]] = {}  # path -> genre keys, in order
    spellings: dict[str, Counter[str]] = {}  # genre key -> canonical spellings seen
    ignored: Counter[str] = Counter()
    untagged: list[str] = []
    refused: list[str] = []
    groups: dict[str, str] = {}
    ours = failed = 0
    for done, path in enumerate(files, 1):
        if progress:
            progress(done - 1, len(files))
        if source == "tags":
            try:
                names, dropped_ours = _tag_genres(path)
            except TagError as exc:
                unreadable.append((path, exc.reason))
                failed += 1
                continue
        else:
            names, dropped_ours = ([tops[path]] if tops.get(path) else []), False
        keys = _genre_keys(names, genre_map, spellings, ignored)
        if not keys and source == "tags" and any(genre_key(n) not in NOT_GENRES for n in names):
            refused.append(path)  # a person's genre, which the whitelist leaves out: not one to suggest
        elif keys:
            found[path] = keys
            root = roots.get(path)
            flat = None if root is None else os.path.join(root, tops[path]) if source == "folders" else root
            groups[path] = song_group(path, flat)
        else:
            if dropped_ours and not names:
                ours += 1
            untagged.append(path)
    if progress:
        progress(len(files), len(files))
    files_read = len(files) - failed

    if not found:
        raise LabelError(_no_genre(source, inputs, files_read, len(unreadable)))
    if source == "folders":
        _refuse_artist_folders(found, tops, groups)
    try:
        songs, genres, dropped = _keep_genres(found, groups, spellings, min_songs)
    except LabelError as exc:
        if not unreadable:
            raise
        # Their genres may be the ones missing: say so, with one of them.
        first, why = unreadable[0]
        raise LabelError(f"{exc}; {len(unreadable)} file(s) could not be read, such as {display_path(first)} ({why})") from None
    return LibraryLabels(songs=songs, untagged=untagged, genres=genres, dropped=dropped,
                         unreadable=unreadable, files_read=files_read, ignored=dict(ignored.most_common()), ours=ours,
                         refused=refused, passed_over=passed_over)


def _refuse_artist_folders(found: dict[str, list[str]], tops: dict[str, str], groups: dict[str, str]) -> None:
    """Refuse folder labels that are artists' names: most libraries are laid out ``Artist/Album/``,
    and such a run would learn artists for genres (with a cross-validated figure near chance)."""
    named = [p for p in found if groups[p].startswith("artist:") and genre_key(groups[p][len("artist:"):]) == genre_key(tops[p])]
    if named and 2 * len(named) >= len(found):
        raise LabelError(f"the top folders name the songs' artists, not genres: {len(named)} of the {len(found)} songs lie "
                         f"in a folder named after their artist (such as {tops[named[0]]!r}); --labels folders takes "
                         "MUSIC_DIR/<genre>/...: learn from the genre tags instead (without --labels folders), or "
                         "give a folder of genre folders")


def _genre_keys(names: Sequence[str], genre_map: GenreMap, spellings: dict[str, Counter[str]],
                ignored: Counter[str]) -> list[str]:
    """The genre keys one song's ``names`` map to, in order and without repeats.

    Each canonical spelling is counted in ``spellings`` (genre key -> spellings seen) and each
    name that the genre map leaves out in ``ignored``; names that are no genre (:data:`NOT_GENRES`)
    are passed over.
    """
    keys: list[str] = []
    for name in names:
        if genre_key(name) in NOT_GENRES:
            continue
        canonical = genre_map.name(name)
        if canonical is None or genre_key(canonical) in NOT_GENRES:
            ignored[name] += 1
            continue
        key = genre_key(canonical)
        if key not in keys:
            keys.append(key)
            spellings.setdefault(key, Counter())[canonical] += 1
    return keys


def _keep_genres(found: dict[str, list[str]], groups: dict[str, str], spellings: dict[str, Counter[str]],
                 min_songs: int) -> tuple[list[LabelledSong], list[str], dict[str, int]]:
    """The min-songs rule over ``found`` (path -> genre keys, at least one song): the labelled
    songs, the genres kept (most songs first) and the genres left out with their song counts.

    Raises
    ------
    LabelError
        Fewer than two genres are left to learn.
    """
    shown = {key: names.most_common(1)[0][0] for key, names in spellings.items()}
    songs_per = Counter(k for keys in found.values() for k in keys)
    kept = {k for k, n in songs_per.items() if n >= min_songs}
    dropped = {shown[k]: n for k, n in sorted(songs_per.items(), key=lambda kv: (-kv[1], shown[kv[0]])) if k not in kept}
    order = sorted(kept, key=lambda k: (-songs_per[k], shown[k].casefold()))
    if len(order) < 2:
        raise LabelError(_too_few(order, shown, songs_per, dropped, min_songs))
    songs = [LabelledSong(path, tuple(shown[k] for k in keys if k in kept), groups[path])
             for path, keys in found.items() if any(k in kept for k in keys)]
    return songs, [shown[k] for k in order], dropped


def _find(inputs: Sequence[str | Path], *, follow_links: bool) -> tuple[
        list[str], dict[str, str], dict[str, str], list[tuple[str, str]], list[tuple[str, str]]]:
    """The audio files under ``inputs``, each file's top folder under the folder given that holds
    it (none for a file named directly or lying in that folder itself), that folder, the inputs
    that cannot be used, and what the search passed over.

    Raises
    ------
    LibraryError
        No audio file at all.
    """
    if not inputs:
        raise LibraryError("no folder or file given to learn from")
    files: list[str] = []
    seen: set[str] = set()
    tops: dict[str, str] = {}
    roots: dict[str, str] = {}
    unreadable: list[tuple[str, str]] = []
    passed_over: list[tuple[str, str]] = []
    for raw in inputs:
        search = find_audio([raw], follow_links=follow_links)
        unreadable.extend(search.missing)
        passed_over.extend(search.passed_over)
        root = os.path.abspath(os.fspath(raw)) if os.path.isdir(raw) else None
        for path in search.files:
            if path in seen:
                continue
            seen.add(path)
            files.append(path)
            if root is not None:
                roots[path] = root
                parts = Path(os.path.relpath(path, root)).parts
                if len(parts) > 1:
                    tops[path] = parts[0]
    if not files:
        problems = [f"{display_path(raw)}: {reason}" for raw, reason in [*unreadable, *passed_over][:3]]
        shown = ", ".join(display_path(p) for p in inputs)
        raise LibraryError("; ".join(problems) if problems and len(problems) == len(inputs) else f"no audio files in {shown}")
    return files, tops, roots, unreadable, passed_over


def _no_genre(source: str, inputs: Sequence[str | Path], files_read: int, unreadable: int) -> str:
    where = ", ".join(display_path(p) for p in inputs)
    bad = f" ({unreadable} could not be read)" if unreadable else ""
    if source == "tags":
        return (f"{where}: read {files_read} file(s){bad}, none has a genre tag (genrify's own guesses do not count); "
                "to learn from genre folders (MUSIC_DIR/<genre>/...), add --labels folders")
    return (f"{where}: none of the {files_read} file(s) lies in a genre folder; lay the music out as "
            "MUSIC_DIR/<genre>/<audio files>, or learn from the genre tags (--labels tags)")


def _too_few(order: list[str], shown: dict[str, str], songs_per: Counter[str], dropped: dict[str, int],
             min_songs: int) -> str:
    left = ", ".join(f"{g} ({n})" for g, n in list(dropped.items())[:8]) + (", ..." if len(dropped) > 8 else "")
    if order:
        only = shown[order[0]]
        head = f"only one genre to learn: {only} ({songs_per[order[0]]} songs); a model needs at least two"
    else:
        head = "no genre to learn"
    if dropped:
        return f"{head}; left out with fewer than {min_songs} songs: {left} (lower --min-songs, or tag more songs)"
    return f"{head}; tag songs of another genre"


def labels_from_values(
    entries: Sequence[tuple[str, Sequence[str], str]],
    *,
    genre_map: GenreMap | None = None,
    min_songs: int = DEFAULT_MIN_SONGS,
    source: str = "the songs given",
) -> LibraryLabels:
    """Labels from genres another program keeps (beets' database), by the rules of :func:`read_labels`.

    The values of each song go through the same steps as a file's genre tags: ``;``/``,``-joined
    values split, ID3v1 numbers named, values that name no genre dropped, the genre map's aliases,
    whitelist and spellings applied, then the min-songs rule. The caller leaves out the genres
    genrify set itself (a model must never learn from its own guesses).

    Parameters
    ----------
    entries
        ``(path, genre values, artist group)`` per song; a song without values is untagged.
    genre_map, min_songs
        As for :func:`read_labels`.
    source
        Names the songs in an error (``"the 40 beets items"``).

    Returns
    -------
    LibraryLabels
        ``files_read`` is the number of entries; ``unreadable`` is empty (the caller knows which
        files are missing).

    Raises
    ------
    ParameterError
        A ``min_songs`` below 1.
    LabelError
        No song has a genre, or fewer than two genres are left to learn.
    """
    check_min_songs(min_songs)
    genre_map = genre_map if genre_map is not None else GenreMap.default()
    found: dict[str, list[str]] = {}
    groups: dict[str, str] = {}
    spellings: dict[str, Counter[str]] = {}
    ignored: Counter[str] = Counter()
    untagged: list[str] = []
    refused: list[str] = []
    for path, values, group in entries:
        names = tag_values(list(values))
        keys = _genre_keys(names, genre_map, spellings, ignored)
        if keys:
            found[path], groups[path] = keys, group
        elif any(genre_key(n) not in NOT_GENRES for n in names):
            refused.append(path)
        else:
            untagged.append(path)
    if not found:
        raise LabelError(f"{source}: none of the {len(entries)} has a genre (genrify's own guesses do not count)")
    songs, genres, dropped = _keep_genres(found, groups, spellings, min_songs)
    return LibraryLabels(songs=songs, untagged=untagged, genres=genres, dropped=dropped,
                         unreadable=[], files_read=len(entries), ignored=dict(ignored.most_common()), refused=refused)
