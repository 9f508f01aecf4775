"""Scan a music folder laid out by genre: ``MUSIC_DIR/<genre>/...``.

The genre of a file is the name of the top-level folder it sits under (at any depth below it), the
layout of GTZAN and of most hand-sorted collections. Hidden files and folders and files that are not
audio are skipped; files directly in ``MUSIC_DIR`` have no genre and are reported as skipped.
Artists are read from tags later, in the extraction workers, where the file is opened anyway.

Nothing is passed over silently except hidden entries: dangling symbolic links, link loops, links
to folders, files that are not regular (a named pipe would block a reader forever) and folders that
cannot be listed are recorded with their reason, for the commands to count and, on request, list.

Symbolic links to folders, a genre folder itself included, are not followed by default: a genre
folder linked to ``/`` once filed thousands of system files as "rock". ``follow_links=True``
follows those that lead out of the folders searched, and never one that leads back into them or to
a folder above (a loop, or the same files counted twice); see :class:`_Walker`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genrify.audio.decode import is_audio_file
from genrify.errors import LibraryError


@dataclass(frozen=True)
class Track:
    """One audio file of a library, as the scan finds it."""

    path: str  #: absolute path
    genre: str
    size: int  #: bytes
    mtime_ns: int  #: modification time in nanoseconds


@dataclass
class Library:
    """The result of :func:`scan`."""

    root: str
    tracks: list[Track]
    #: files and folders passed over, with the reason (e.g. "not an audio file", "symbolic link loop")
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def problems(self) -> list[tuple[str, str]]:
        """The part of :attr:`skipped` that a person should hear about: broken or looping links,
        links to folders, unreadable folders and files, files that are not regular; not the files
        that are simply not audio or lie outside a genre folder."""
        return [(p, r) for p, r in self.skipped if r not in _LAYOUT_REASONS]

    @property
    def genres(self) -> list[str]:
        """Genre names, sorted."""
        return sorted({t.genre for t in self.tracks})

    def counts(self) -> dict[str, int]:
        """Number of tracks per genre, sorted by genre."""
        counter = Counter(t.genre for t in self.tracks)
        return {g: counter[g] for g in sorted(counter)}


def scan(music_dir: str | Path, *, follow_links: bool = False) -> Library:
    """Find every audio file under ``music_dir/<genre>/``.

    Parameters
    ----------
    music_dir
        The library's root folder; each sub-folder is a genre.
    follow_links
        Follow symbolic links to folders outside ``music_dir`` (genre folders and folders inside
        them); without it every link to a folder is passed over and recorded. A link back into
        the library or to a folder above is never followed.

    Returns
    -------
    Library
        Tracks sorted by path, and what was skipped.

    Raises
    ------
    LibraryError
        The folder does not exist, is not a folder, has no genre sub-folders, or holds no audio.
    """
    root = Path(music_dir).expanduser()
    if not root.exists():
        raise LibraryError(f"{root}: no such folder")
    if not root.is_dir():
        raise LibraryError(f"{root}: not a folder (expected MUSIC_DIR/<genre>/<audio files>)")
    root = root.resolve()
    tracks: list[Track] = []
    skipped: list[tuple[str, str]] = []
    genre_dirs: list[os.DirEntry[str]] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise LibraryError(f"{root}: cannot list the folder: {exc.strerror or exc}") from None
    walker = _Walker(skipped, roots=[str(root)], follow_links=follow_links)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            # A genre folder may itself be a link (to another disk, or to "/"): same rule as below it.
            if entry.is_symlink() and not walker.may_follow(entry.path, str(root)):
                continue
            genre_dirs.append(entry)
            continue
        reason, _st = _check_file(entry.path)
        if reason is not None and entry.is_symlink():
            skipped.append((entry.path, reason))  # a broken link may have been meant as a genre folder
        elif is_audio_file(entry.name):
            skipped.append((entry.path, NOT_IN_GENRE))
    if not genre_dirs:
        # Genre folders that are links to folders elsewhere, not followed: say so, not "none".
        links = sum(1 for e in entries if not e.name.startswith(".") and e.is_symlink() and e.is_dir())
        said = "1 link to a folder" if links == 1 else f"{links} links to folders"
        hint = f" ({said} passed over: add --follow-links to follow them)" if links else ""
        raise LibraryError(
            f"{root}: no genre sub-folders{hint}; lay the music out as {root}/<genre>/<audio files>"
        )
    for genre_dir in genre_dirs:
        for path, st in walker.walk(genre_dir.path, note_other=True):
            tracks.append(Track(path=os.path.abspath(path), genre=genre_dir.name, size=st.st_size, mtime_ns=st.st_mtime_ns))
    if not tracks:
        raise LibraryError(
            f"{root}: no audio files found in its {len(genre_dirs)} genre folder(s) "
            f"({', '.join(d.name for d in genre_dirs[:5])}{', ...' if len(genre_dirs) > 5 else ''})"
        )
    tracks.sort(key=lambda t: t.path)
    return Library(root=str(root), tracks=tracks, skipped=skipped)


NOT_AUDIO = "not an audio file"
NOT_IN_GENRE = "not in a genre folder"
# Reasons that follow from the library's layout, not from something broken.
_LAYOUT_REASONS = frozenset({NOT_AUDIO, NOT_IN_GENRE})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def display_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """A file name (or any text holding one) as a person can read it, on one line.

    Bytes that are not UTF-8 (a name made on another system, which Python carries as lone
    surrogates such as ``\\udcff``) become ``\\xff``; control characters, line breaks
    included, become their backslash escapes (``\\n``, ``\\x1b``). The result is always
    valid UTF-8 and one line, safe for terminals, tables, messages, JSON and CSV; every other
    name, accented or not, comes out unchanged.

    Examples
    --------
    >>> display_path(os.fsdecode(b"bad\\xff.wav"))
    'bad\\\\xff.wav'
    >>> display_path("two\\nlines.mp3")
    'two\\\\nlines.mp3'
    """
    try:
        text = os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a surrogate that no file name decodes to: escape it as it is
        text = os.fspath(path)
        text = text.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(text, str) else repr(text)
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def file_identity(path: str | Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file at ``path`` (links followed), or ``None`` where there is none.

    Two paths with the same identity are the same file, whatever the spelling: a symbolic link,
    a hard link, ``..`` or another case on a case-insensitive disk.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _check_file(path: str) -> tuple[str | None, os.stat_result | None]:
    """``(None, stat)`` for a regular file (links followed), else ``(reason, None)``."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop", None
        if exc.errno == errno.ENOENT:
            return ("dangling symbolic link (its target does not exist)" if os.path.islink(path)
                    else "does not exist"), None
        return f"cannot read: {exc.strerror or exc}", None
    except ValueError:  # a NUL byte in the name
        return "not a valid file name", None
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file", None
    return None, st


#: Why a symbolic link to a folder was not followed (reasons of :attr:`Library.skipped`).
LINK_NOT_FOLLOWED = "symbolic link to a folder (not followed; --follow-links follows links out of the folders given)"
LINK_ABOVE = "symbolic link to a folder above it (a loop; never followed)"
LINK_INSIDE = "symbolic link to a folder searched anyway (not followed: its files would count twice)"


class _Walker:
    """Walks folders for audio files, deciding which symbolic links to folders to follow.

    Without ``follow_links`` no link to a folder is followed. With it, a link is followed where
    its target lies outside every tree searched so far (the roots given and the targets already
    followed) and holds none of them: so a link to a folder above it (a loop, or ``/``) and a
    link into the library (whose files are found through their own paths) are never followed,
    and no file is found twice. Links that are not followed are recorded in ``skipped``.

    Parameters
    ----------
    skipped
        Receives ``(path, reason)`` for everything passed over.
    roots
        The folders given; their trees are searched anyway.
    follow_links
        Follow links to folders outside them.
    """

    def __init__(self, skipped: list[tuple[str, str]], *, roots: Sequence[str], follow_links: bool) -> None:
        self.skipped = skipped
        self.follow_links = follow_links
        # Real paths of the trees searched: a link into one of them, or to a folder holding one,
        # would find the same files again.
        self.searched = [os.path.realpath(r) for r in roots]

    def may_follow(self, link: str, real_dir: str) -> bool:
        """Whether to follow ``link`` (a link to a folder inside the real folder ``real_dir``);
        records the reason where not, and registers the target's tree where so."""
        if not self.follow_links:
            self.skipped.append((link, LINK_NOT_FOLLOWED))
            return False
        target = os.path.realpath(link)
        if _within(real_dir, target):
            self.skipped.append((link, LINK_ABOVE))
            return False
        if any(_within(target, tree) or _within(tree, target) for tree in self.searched):
            self.skipped.append((link, LINK_INSIDE))
            return False
        self.searched.append(target)
        return True

    def walk(self, folder: str, *, note_other: bool) -> Iterator[tuple[str, os.stat_result]]:
        """The regular audio files under ``folder`` with their ``stat``, in sorted order.

        Everything else that is not hidden goes into ``skipped`` with its reason (files that are
        not audio only with ``note_other``). Paths found through a followed link keep the link's
        path.
        """
        skipped = self.skipped
        real_top = os.path.realpath(folder)

        def on_error(exc: OSError) -> None:
            skipped.append((str(exc.filename or folder), f"cannot list the folder: {exc.strerror or exc}"))

        for dirpath, dirnames, filenames in os.walk(folder, onerror=on_error, followlinks=False):
            # os.walk does not follow links below the top, so the real folder is the top's plus the rest.
            real_dir = os.path.normpath(os.path.join(real_top, os.path.relpath(dirpath, folder)))
            # Hidden folders (.git, .AppleDouble, ...) hold no music of the library.
            kept, followed = [], []
            for name in sorted(dirnames):
                if name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    if self.may_follow(path, real_dir):
                        followed.append(path)
                    continue
                kept.append(name)
            dirnames[:] = kept
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                if not is_audio_file(name):
                    if note_other:
                        skipped.append((path, NOT_AUDIO))
                    continue
                reason, st = _check_file(path)
                if reason is not None:
                    skipped.append((path, reason))
                    continue
                yield path, st  # type: ignore[misc]
            for path in followed:
                yield from self.walk(path, note_other=note_other)


def _within(path: str, folder: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass
class AudioSearch:
    """What :func:`find_audio` found."""

    #: absolute paths of the audio files, each once, in the order found
    files: list[str] = field(default_factory=list)
    #: ``(input, reason)`` for inputs named on the command line that cannot be read (missing, ...)
    missing: list[tuple[str, str]] = field(default_factory=list)
    #: ``(path, reason)`` for what was passed over inside the folders: broken links, link loops,
    #: links to folders, unreadable folders, files that are not regular (never silently)
    passed_over: list[tuple[str, str]] = field(default_factory=list)


def find_audio(inputs: Sequence[str | Path], *, follow_links: bool = False) -> AudioSearch:
    """The audio files named by ``inputs``: files as given, folders searched recursively.

    Inside folders, hidden entries and files without an audio extension are passed over quietly;
    links to folders are not followed (with ``follow_links``, those leading out of the folders
    given are, but never one back into them or to a folder above), and every other thing passed
    over (see :class:`AudioSearch`) is recorded. A file named directly is kept whatever its
    extension (decoding decides) as long as it is a regular file; a folder named directly is
    searched even where the name is a link. Each file appears once, in the order found (folders
    sorted).

    Returns
    -------
    AudioSearch
        Absolute paths, the inputs that cannot be used, and what was passed over in folders.
    """
    found = AudioSearch()
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            found.files.append(key)

    folders = [os.fspath(raw) for raw in inputs if os.path.isdir(raw)]
    walker = _Walker(found.passed_over, roots=folders, follow_links=follow_links)
    for raw in inputs:
        item = os.fspath(raw)
        if os.path.isdir(item):
            for path, _st in walker.walk(item, note_other=False):
                add(path)
            continue
        reason, _st = _check_file(item)
        if reason is None:
            add(item)
        else:
            found.missing.append((str(raw), reason))
    return found
