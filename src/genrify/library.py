"""Scan a music folder laid out by genre: ``MUSIC_DIR/<genre>/...``.

The genre of a file is the name of the top-level folder it sits under (at any depth below it), the
layout of GTZAN and of most hand-sorted collections. Hidden files and folders and files that are not
audio are skipped; files directly in ``MUSIC_DIR`` have no genre and are reported as skipped.
Artists are read from tags later, in the extraction workers, where the file is opened anyway.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genrify.audio import is_audio_file
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
    #: files and folders passed over, with the reason (e.g. "not audio", "no genre folder")
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def genres(self) -> list[str]:
        """Genre names, sorted."""
        return sorted({t.genre for t in self.tracks})

    def counts(self) -> dict[str, int]:
        """Number of tracks per genre, sorted by genre."""
        counter = Counter(t.genre for t in self.tracks)
        return {g: counter[g] for g in sorted(counter)}


def scan(music_dir: str | Path) -> Library:
    """Find every audio file under ``music_dir/<genre>/``.

    Parameters
    ----------
    music_dir
        The library's root folder; each sub-folder is a genre.

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
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            genre_dirs.append(entry)
        elif is_audio_file(entry.name):
            skipped.append((entry.path, "not in a genre folder"))
    if not genre_dirs:
        raise LibraryError(
            f"{root}: no genre sub-folders; lay the music out as {root}/<genre>/<audio files>"
        )
    for genre_dir in genre_dirs:
        _walk(Path(genre_dir.path), genre_dir.name, tracks, skipped)
    if not tracks:
        raise LibraryError(
            f"{root}: no audio files found in its {len(genre_dirs)} genre folder(s) "
            f"({', '.join(d.name for d in genre_dirs[:5])}{', ...' if len(genre_dirs) > 5 else ''})"
        )
    tracks.sort(key=lambda t: t.path)
    return Library(root=str(root), tracks=tracks, skipped=skipped)


def _walk(folder: Path, genre: str, tracks: list[Track], skipped: list[tuple[str, str]]) -> None:
    def on_error(exc: OSError) -> None:
        skipped.append((str(exc.filename), f"cannot list: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=on_error, followlinks=False):
        # Hidden folders (.git, .AppleDouble, ...) hold no music of the library.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            if not is_audio_file(name):
                skipped.append((path, "not an audio file"))
                continue
            try:
                st = os.stat(path)
            except OSError as exc:
                skipped.append((path, f"cannot read: {exc.strerror or exc}"))
                continue
            tracks.append(Track(path=os.path.abspath(path), genre=genre, size=st.st_size, mtime_ns=st.st_mtime_ns))


def find_audio(inputs: Sequence[str | Path]) -> tuple[list[str], list[tuple[str, str]]]:
    """The audio files named by ``inputs``: files as given, folders searched recursively.

    Inside folders, hidden entries and files without an audio extension are passed over; a file
    named directly is kept whatever its extension (decoding decides). Each file appears once, in
    the order found (folders sorted).

    Returns
    -------
    (files, problems)
        Absolute paths, and ``(input, reason)`` for inputs that do not exist.
    """
    files: list[str] = []
    seen: set[str] = set()
    problems: list[tuple[str, str]] = []

    def add(path: Path) -> None:
        key = str(path.absolute())
        if key not in seen:
            seen.add(key)
            files.append(key)

    for raw in inputs:
        item = Path(raw)
        if item.is_dir():
            for folder, dirs, names in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith(".") and is_audio_file(name):
                        add(Path(folder) / name)
        elif item.is_file():
            add(item)
        else:
            problems.append((str(raw), "no such file or folder"))
    return files, problems
