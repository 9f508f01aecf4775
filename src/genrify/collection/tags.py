"""Read and write the tags genrify needs in audio files (mutagen).

Reading: the artist, which lets splits keep one artist's songs on one side; the album and album
artist, which group tracks into albums; the genre; and genrify's provenance record.
Writing: the genre and the provenance record only (:func:`update_genre`, which stores what a
policy decided from the file's genres; :func:`write_genre` for given genres), so that a
classification can be put back into a music collection. Which genres is decided elsewhere
(:mod:`genrify.collection.tagpolicy`); this module only reads and writes the formats. Every other tag stays as it was and the audio data is not
touched: mutagen rewrites only the tag block of each format (ID3 in mp3, wav and aiff; Vorbis
comments in flac, ogg and opus; the ``ilst`` atom in m4a/mp4).

What is written, per format (several genres, e.g. ``Rock`` and ``Pop``):

======================  ================================================  =========================
Format                  Genres                                            Provenance
======================  ================================================  =========================
ID3v2.4 (mp3/wav/aiff)  one ``TCON`` frame holding several values         ``TXXX`` frame ``GENRIFY``
ID3v2.3                 one ``TCON`` value ``Rock/Pop`` (``/`` joined)    ``TXXX`` frame ``GENRIFY``
Vorbis (flac/ogg/opus)  one ``GENRE=`` comment per genre                  ``GENRIFY=`` comment
MP4 (m4a/mp4)           several ``©gen`` values                           ``----:com.apple.iTunes:GENRIFY``
======================  ================================================  =========================

genrify writes ID3v2 only: an mp3's ID3v1 block stays byte for byte as it was, and none of its
fields is copied into the v2 tag (:func:`_save_id3`); wav and aiff keep ID3 in a chunk and have
no v1 block, so their last bytes are never read as one (:func:`_load`). With a ``separator`` the
provenance record names it, so that the joined value reads back as genrify's in a later run with
another separator or none (:func:`genrify.collection.tagpolicy.human_genres`).

A new ID3 tag is v2.4; an existing v2.3 tag stays v2.3 (older players read only that), and
``id3v23=True`` writes v2.3 whatever was there. A ``separator`` joins the genres into one value in
every format, for players that show only the first value. The provenance value is one line of JSON
(:class:`genrify.collection.tagpolicy.Provenance`) naming only the genres genrify put there; the MP4 field
follows Picard's convention for custom fields, so Picard and Mp3tag show a field named ``GENRIFY``
in every format.

Writing v2.3 loses nothing a person set: the v2.4-only frames that mutagen's conversion deletes are
kept as they are (the sort orders ``TSOP``, ``TSOA``, ``TSOT`` and ``TSST``, as Picard does) or moved
to ``TXXX`` frames (``TMOO`` to ``TXXX:mood`` as Picard names it; ``TDRL``, ``TPRO``, ``TDEN``,
``TDTG`` to ``RELEASETIME``, ``PRODUCEDNOTICE``, ``ENCODINGTIME``, ``TAGGINGTIME``; a date that
``TYER``/``TDAT``/``TIME`` or ``TORY`` cannot hold whole to ``RECORDINGTIME`` or
``ORIGRELEASETIME``), see :func:`_to_v23`.

A wav file may carry a genre in its RIFF ``INFO`` chunk (``IGNR``) that mutagen does not read: where
its ID3 tag holds no genre, that one is the file's genre (:func:`read_genre`), so keep mode keeps
it and merge mode copies it into the ID3 tag first. genrify writes only ID3, so replace mode leaves
the INFO genre in the file and says so (:attr:`TagChange.notes`).

ID3v2.3 and the ``/`` join: v2.3 has no multi-valued text frames; mutagen (``v23_sep="/"``), beets
with ``id3v23: yes`` and most taggers store several values as one ``/``-joined string, and players
that split genre strings split it again (Navidrome's default genre separators are ``;/,``). mutagen
and mediafile (so beets) read such a frame back as *one* value (``["Rock/Pop"]``): they do not
split (checked with mutagen 1.48 and mediafile 0.17; the tests assert it).
:func:`read_genre` does, for ID3 tags older than v2.4 only, so that genrify's keep/merge modes see
the genres a player shows (``("Rock", "Pop")``) and a merge does not repeat one of them.

A write is atomic: the file is copied to a hidden temporary file in its own folder, the tags are
written into the copy, the copy is checked (the genres and the provenance read back, same audio)
and flushed to disk and renamed over the original (:func:`genrify.core.fsutil.replace_with`). A crash,
a full disk or a damaged file at any point leaves the original exactly as it was and no temporary
behind; what a ``kill -9`` leaves is removed by the next write to that file
(:func:`genrify.core.fsutil.remove_leftovers`).

A file with several hard links is the exception: renaming would give only this name the new tags,
so the checked copy is written back into the original file in place, through a journal beside the
name written through, which a ``kill -9`` leaves behind and the next write through a name in that
folder finishes (:func:`genrify.core.fsutil.write_in_place`), provided the file has not changed since;
until then the file is not written again. So is a file whose owner, group, mode or extended
attributes (ACLs among them) the new copy cannot be given: writing in place keeps them all. The
copy never has permission bits the file lacks, so one a ``kill -9`` leaves behind is no more
readable than the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrify.collection.tagpolicy import (
    MP4_PROVENANCE_KEY,
    names_a_genre,
    PROVENANCE_FIELD,
    Provenance,
    TagDecision,
    check_mode,
    check_separator,
    decide_genres,
)
from genrify.core.fsutil import Recovery, recover_in_place, remove_leftovers, replace_with, scratch_path, write_in_place
from genrify.errors import GenrifyIOError, ParameterError, TagError, UntaggableError

#: Joins several genres in an ID3v2.3 tag when the caller gives no ``separator`` (v2.3 has no
#: multi-valued frames; ``/`` is mutagen's and the taggers' convention).
ID3V23_SEPARATOR = "/"
#: What :attr:`TagChange.status` can be.
TAG_STATUSES = ("written", "unchanged", "kept")

#: What :func:`write_genre` supports, for messages (mutagen's file types behind each kind).
SUPPORTED_FORMATS = "mp3, wav, aiff (ID3); flac, ogg, opus (Vorbis comments); m4a, mp4 (MP4 atoms)"

_ID3 = "ID3"
_VORBIS = "Vorbis comment"
_MP4 = "MP4"
_MP4_GENRE = "\xa9gen"
_ID3_PROVENANCE = "TXXX:" + PROVENANCE_FIELD
# Vorbis field names are case-insensitive; upper case is the specification's convention and what
# Picard and beets write.
_VORBIS_GENRE = "GENRE"


@dataclass(frozen=True)
class TagChange:
    """What :func:`write_genre` did (or, in a dry run, would do) to one file.

    Attributes
    ----------
    path
        The file, as the caller named it.
    old
        The genres the file held before, as :func:`read_genre` reads them; empty when none.
    new
        The genres it holds now (or would hold), as :func:`read_genre` will read them: several
        where the format stores several values, one joined string with a ``separator``.
    changed
        ``new`` differs from ``old``. An unchanged file is never rewritten, so its modification
        time (and any cache keyed on it) stays valid.
    dry_run
        Nothing was written because the caller asked for a dry run.
    status
        ``"written"`` (the genres change; in a dry run: would be written), ``"unchanged"`` (the
        file already holds these genres) or ``"kept"`` (left alone by keep mode because a person
        set a genre). Derived from ``changed`` when not given.
    notes
        Warnings about the file to show the user, e.g. that an interrupted earlier tag write of
        it was finished first.
    """

    path: Path
    old: tuple[str, ...]
    new: tuple[str, ...]
    changed: bool
    dry_run: bool = False
    status: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", "written" if self.changed else "unchanged")
        if self.status not in TAG_STATUSES or (self.status == "written") != self.changed:
            raise ParameterError(f"inconsistent tag change: status {self.status!r} with changed={self.changed}")

    @property
    def written(self) -> bool:
        """True where the file on disk was actually rewritten."""
        return self.changed and not self.dry_run


def read_artist(path: str | Path) -> str | None:
    """The file's artist tag (album artist where no artist is set), or ``None``.

    Never raises: a file whose tags cannot be read simply has no known artist; whether its audio
    can be decoded is for :mod:`genrify.audio.decode` to say.
    """
    album_artist, artist, _album = _names(path)
    return artist or album_artist


def read_album(path: str | Path) -> tuple[str | None, str | None]:
    """The file's album artist (its artist where none is set) and album, for grouping albums.

    Parameters
    ----------
    path
        An audio file with ID3 (mp3, wav, aiff), Vorbis comment (flac, ogg, opus) or MP4 tags.

    Returns
    -------
    tuple
        ``(artist, album)``; either is ``None`` where the tag is missing or blank. Never raises:
        a file whose tags cannot be read (or another tag format) gives ``(None, None)``.
    """
    album_artist, artist, album = _names(path)
    return album_artist or artist, album


def read_artists(path: str | Path) -> tuple[str | None, str | None]:
    """The file's album artist and artist, each ``None`` where missing or blank; never raises (as
    :func:`read_album`)."""
    album_artist, artist, _album = _names(path)
    return album_artist, artist


def _names(path: str | Path) -> tuple[str | None, str | None, str | None]:
    """``(album artist, artist, album)`` from the file's tags, each ``None`` where missing or blank.

    Read from the tag family itself rather than mutagen's "easy" interface, which does not cover
    the ID3 tags of wav and aiff files. Never raises.
    """
    try:
        tagged = _load(str(path))
        tags = tagged.tags if tagged is not None else None
        if not tags:
            return None, None, None
        kind = _tag_family(tags)
        if kind is None:
            return None, None, None
        album_artist, artist, album = (
            next((text for key in keys if (text := _first_text(kind, tags, key))), None) for keys in _ALBUM_FIELDS[kind]
        )
        return album_artist, artist, album
    except Exception:  # noqa: BLE001 - damaged tags of any kind mean "nothing known"
        return None, None, None


def read_genre(path: str | Path) -> tuple[str, ...]:
    """The file's genre value(s); empty where the file has no genre tag.

    ID3 genre references such as ``(17)`` are translated to their names (``Rock``). In ID3 tags
    older than v2.4 a ``/``-joined value is split (``"Rock/Pop"`` -> ``("Rock", "Pop")``): see the
    module docstring for why, and for what mutagen and mediafile read instead. A wav file whose
    ID3 tag holds no genre gives the genre of its RIFF INFO chunk (``IGNR``), an mp3's that of its
    APEv2 tag, where a person may have set it with another program.

    Raises
    ------
    TagError
        The file is missing or unreadable, its format holds no genre tag genrify knows, or its
        tags are damaged.
    """
    path = Path(path)
    target = _check_file(path, writable=False)
    tagged = _open(path, target)
    return _display(_kind(path, tagged), tagged.tags, _info_genres(tagged))


def read_provenance(path: str | Path) -> Provenance | None:
    """The record genrify left in the file when it last wrote its genres.

    Returns
    -------
    Provenance or None
        ``None`` where the file has no ``GENRIFY`` field or its value is not genrify's record.

    Raises
    ------
    TagError
        As :func:`read_genre`.
    """
    path = Path(path)
    target = _check_file(path, writable=False)
    tagged = _open(path, target)
    return Provenance.from_text(_provenance_text(_kind(path, tagged), tagged.tags))


def write_genre(
    path: str | Path,
    genres: Sequence[str],
    *,
    separator: str | None = None,
    id3v23: bool = False,
    mode: str = "replace",
    provenance: Provenance | None = None,
    dry_run: bool = False,
) -> TagChange:
    """Set a file's genre tag, leaving every other tag and the audio data as they are.

    Parameters
    ----------
    path
        An mp3, flac, ogg (Vorbis, Opus, FLAC), m4a/mp4, wav or aiff file. A symbolic link is
        followed and the file it points to is rewritten, so the link stays a link.
    genres
        One or more genres, most likely first. Blank entries and repeats (ignoring case) are
        dropped.
    separator
        Join the genres into one string with this (e.g. ``"; "``) instead of storing them as
        separate values. The file's genres are split on it before they meet the new ones, so a
        merge repeats none of them.
    id3v23
        Write an ID3 tag as ID3v2.3 (several genres joined with ``/`` unless ``separator`` says
        otherwise), for old players. Without it, an existing v2.3 tag stays v2.3 and any other
        becomes v2.4. A file whose genres do not change is not rewritten, so its tag keeps its
        version. Other formats ignore it.
    mode
        How the new genres meet those in the file (:func:`genrify.collection.tagpolicy.resolve`):
        ``"replace"`` (the default, the low-level behaviour), ``"merge"`` or ``"keep"``. The
        file's provenance record says which of its genres genrify wrote; the others are a
        person's, and ``merge`` and ``keep`` never remove them.
    provenance
        The record to store beside the genres, in the same rewrite. Its genres are replaced by
        those genrify itself puts in the file: a person's genres that ``merge`` keeps (or that
        genrify happened to propose too) are left out, so that they stay a person's in later
        runs; genres joined by a separator are recorded one by one, with the separator
        (:attr:`~genrify.collection.tagpolicy.Provenance.separator`). ``None`` removes an earlier
        record when the genres change, since it would describe other genres.
    dry_run
        Check everything and report what would change, but write nothing.

    Returns
    -------
    TagChange
        Old and new genres and the status: ``"written"``, ``"unchanged"`` (a file that already
        holds these genres is never rewritten, even if the provenance would differ) or
        ``"kept"`` (keep mode found a person's genre).

    Raises
    ------
    TagError
        The file is missing; its genres must change but it is read-only (no write permission bit, or
        no write access; refused even for root so that behaviour does not depend on who runs it)
        or in a folder that cannot take a temporary file; it is of a format without a supported genre tag, damaged, or the write failed.
        Also where an interrupted earlier write of it could not be finished (its journal damaged,
        another machine's, or its file changed since): the file may be half-written, so it is
        left alone. The original file is untouched in every case but one: an in-place write that
        failed half-way (an I/O error) keeps the complete new file in a journal beside it, which
        the message names and the next write puts back.
    ParameterError
        No genre left after dropping blanks, a genre containing a NUL character, an empty
        ``separator`` or an unknown ``mode``.

    Notes
    -----
    The file is replaced by a rewritten, checked copy that carries its owner and group, mode and
    extended attributes (``user.*`` comments, POSIX ACLs, every one the process can read); its
    modification time becomes the time of writing.

    A file with more than one hard link is written in place instead, so that every name sees the
    new tags, and so is a file whose owner, group, mode or extended attributes the copy cannot be
    given (a user outside the file's group, a filesystem that refuses an attribute): the tags are
    written into a temporary copy, the copy is checked (the tags read back, the audio stream
    unchanged) and renamed to a journal beside the file, then its bytes are written over the
    original (only the blocks that differ), the file is flushed and read back, and the journal is
    deleted (:func:`genrify.core.fsutil.write_in_place`). SIGINT, SIGTERM and SIGHUP wait until that is
    done. After a ``kill -9`` or a power cut in the middle, the journal holds the complete new
    file; the next write to that file through any of its names in the same folder (the journal
    lies beside the name written through) finishes the rewrite first and says so in
    :attr:`TagChange.notes` (:func:`recover_interrupted_writes` does so for a whole library).
    """
    values = _clean_genres(genres)
    check_separator(separator)
    check_mode(mode)
    record = provenance.with_genres if provenance is not None else None
    return update_genre(path, lambda current, previous: decide_genres(current, previous, values, mode, record),
                        separator=separator, id3v23=id3v23, dry_run=dry_run)


#: Decides a genre field's values from what it holds: the genres there (one per value, a
#: separator's joins split) and genrify's provenance record (:meth:`TagPolicy.decide`, bound to an answer).
Decide = Callable[[tuple[str, ...], Provenance | None], TagDecision]


def update_genre(path: str | Path, decide: Decide, *, separator: str | None = None, id3v23: bool = False,
                 dry_run: bool = False) -> TagChange:
    """Read a file's genres, let ``decide`` say what they become, and write that once.

    The file is opened once (after finishing an interrupted earlier write of it, see
    :func:`write_genre`), ``decide`` is called once with what it holds, and the decided values are
    stored as the format stores them: joined with ``separator``, ``/``-joined in ID3v2.3, the
    provenance record beside them (split as a reader splits v2.3 values, naming ``separator``). Nothing here decides
    which genres: that is the caller's policy (:meth:`genrify.collection.tagpolicy.TagPolicy.decide`).

    Parameters
    ----------
    path
        As for :func:`write_genre`.
    decide
        Called with the genres the file holds (as a reader sees them, split on ``separator``) and
        its provenance record; its :class:`~genrify.collection.tagpolicy.TagDecision` says what to store.
        Its genres are stored as given (:func:`write_genre` cleans given genres first).
    separator, id3v23, dry_run
        As for :func:`write_genre`.

    Returns
    -------
    TagChange
        ``"kept"`` or ``"unchanged"`` without a write where the decision keeps the field (a
        ``"left_alone"`` decision reads as ``"unchanged"``) or where the values a reader would see
        are the same as now (even if the provenance would differ); else ``"written"``.

    Raises
    ------
    TagError
        As :func:`write_genre`.
    ParameterError
        An empty ``separator``; a decision to set no genre.
    """
    path = Path(path)
    check_separator(separator)
    target = _check_file(path, writable=False)
    # A write of this file that a kill -9 cut short (through any of its names in this folder) is
    # finished before its tags are read: until then the file may be half-written, and one that
    # cannot be finished leaves it so, to be neither read, copied nor written over.
    recoveries = recover_in_place(target.parent, target, dry_run=dry_run)
    for recovery in recoveries:
        if not recovery.finished:
            raise TagError(path, f"an interrupted tag write of it could not be finished, {recovery.journal.name} "
                                 f"kept: {recovery.reason}; left alone")
    notes = tuple(recovery_message(r, dry_run=dry_run) for r in recoveries)
    tagged = _open(path, target)
    kind = _kind(path, tagged)
    tags = tagged.tags
    info = _info_genres(tagged)  # a wav's RIFF INFO or an mp3's APEv2 genre: the file's where ID3 holds none
    old = _display(kind, tags, info)
    previous = Provenance.from_text(_provenance_text(kind, tags))
    # With a separator, one stored value holds several genres: the decision sees them genre by
    # genre, so that a merge neither repeats a genre nor mistakes a person's genre for genrify's.
    current = _split(old, separator) if separator is not None else old
    decision = decide(current, previous)
    if not decision.sets:
        status = "kept" if decision.status == "kept" else "unchanged"
        return TagChange(path=path, old=old, new=old, changed=False, dry_run=dry_run, status=status, notes=notes)
    resolved = _checked_values(decision.genres)
    v23 = kind == _ID3 and (id3v23 or tags.version[:2] == (2, 3))
    stored = _stored(resolved, separator, v23)
    new = _split(stored, ID3V23_SEPARATOR) if v23 else stored
    if new == (old if not info else _display(kind, tags)):
        # The genres a reader sees stay the same: no rewrite, even for a newer provenance. (A wav's
        # INFO genre is no ID3 genre: an ID3 reader such as beets' sees none until it is written.)
        return TagChange(path=path, old=old, new=old, changed=False, dry_run=dry_run, status="unchanged",
                         notes=notes)
    # Only a file that must change needs to be writable (a read-only library already tagged is
    # "unchanged", not failed); refused in dry runs too, so that a dry run predicts the real run.
    _check_file(path, writable=True)
    if not dry_run:
        record = decision.provenance
        if record is not None and v23:  # recorded as a v2.3 reader will split the joined value
            record = record.with_genres(_split(record.genres, ID3V23_SEPARATOR))
        if record is not None:
            # The separator is recorded, so that a later run without it (or with another) still
            # knows the joined value for genrify's, whatever joined it (" | ", " & ").
            record = record.joined_with(separator, resolved)
        _rewrite(path, target, tagged, kind, _Plan(stored, None if record is None else record.to_text(), v23))
    notes += _info_note(path, info, old, current, resolved, dry_run=dry_run, source=_info_source(tagged))
    return TagChange(path=path, old=old, new=new, changed=True, dry_run=dry_run, status="written", notes=notes)


def _stored(genres: tuple[str, ...], separator: str | None, v23: bool) -> tuple[str, ...]:
    """The values as they go into the file: several, or one joined string."""
    if separator is not None:
        return (separator.join(genres),)
    if v23:
        return (ID3V23_SEPARATOR.join(genres),)
    return genres


def _split(values: Sequence[str], separator: str) -> tuple[str, ...]:
    """Values joined with ``separator`` as separate genres (``"Rock/Pop"`` -> two), blanks dropped."""
    out: list[str] = []
    for value in values:
        out.extend(p.strip() for p in value.split(separator) if p.strip())
    return tuple(out)


@dataclass(frozen=True)
class _Plan:
    """One rewrite: the genre values as stored, the provenance text (``None``: remove it), the ID3 version."""

    values: tuple[str, ...]
    provenance: str | None
    v23: bool


# --- checks ----------------------------------------------------------------------------------


def _checked_values(genres: Sequence[str]) -> tuple[str, ...]:
    """Decided genres as they are stored; a decision to set no genre at all is a caller's bug."""
    values = tuple(str(g) for g in genres)
    if not values:
        raise ParameterError("no genre to write: give at least one non-blank genre")
    return values


def _clean_genres(genres: Sequence[str]) -> tuple[str, ...]:
    if isinstance(genres, str):  # a bare string would otherwise become one genre per letter
        genres = [genres]
    cleaned: list[str] = []
    seen: set[str] = set()
    for genre in genres:
        value = str(genre).strip()
        if "\x00" in value:
            raise ParameterError(f"genre {value!r} contains a NUL character")
        # Case-insensitive, as keep/merge compare genres: "Rock" and "rock" are one genre.
        if value and value.casefold() not in seen:
            seen.add(value.casefold())
            cleaned.append(value)
    if not cleaned:
        raise ParameterError("no genre to write: give at least one non-blank genre")
    return tuple(cleaned)


def _check_file(path: Path, *, writable: bool) -> Path:
    """Check ``path`` and return the real file behind it (symbolic links resolved)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise TagError(path, "file not found") from None
    except OSError as exc:
        raise TagError(path, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise TagError(path, "not a regular file")
    if st.st_size == 0:
        raise TagError(path, "empty file (0 bytes)")
    target = Path(os.path.realpath(path))
    if not os.access(target, os.R_OK):
        raise TagError(path, "cannot read: permission denied")
    if writable:
        # os.access alone says yes to root for any file; the mode bits say what the owner meant.
        if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(target, os.W_OK):
            raise TagError(path, "read-only file (no write permission), genre not written")
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise TagError(path, f"its folder {target.parent} is not writable, so the file cannot be safely replaced")
    return target


def _load(filename: str) -> Any:
    """``mutagen.File``, except that an ID3 tag kept in a chunk (wav, aiff) is read without ID3v1.

    Those formats have no ID3v1 block, but mutagen's default reads the file's last 128 bytes as
    one wherever they start with ``TAG`` (audio or another chunk may), and adds its "fields" to the
    tag. An mp3's ID3v1 block is read as mutagen reads it (a v1 field where the v2 tag has none,
    as beets sees it); it is never written (:func:`_save_id3`).
    """
    import mutagen  # deferred: the CLI starts faster without it
    from mutagen.id3 import ID3, ID3FileType

    tagged = mutagen.File(filename)
    if tagged is not None and isinstance(tagged.tags, ID3) and not isinstance(tagged, ID3FileType):
        tagged = type(tagged)(filename, **_load_options(_ID3))
    return tagged


def _open(path: Path, target: Path) -> Any:
    try:
        tagged = _load(str(target))
    except Exception as exc:  # noqa: BLE001 - mutagen raises many types for damaged files
        raise TagError(path, f"damaged or unsupported file, cannot read its tags ({_describe(exc)})") from None
    if tagged is None:
        raise UntaggableError(path, f"unrecognised audio format for tagging (supported: {SUPPORTED_FORMATS})")
    return tagged


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if text:
        return text
    module = type(exc).__module__
    if "id3" in module:
        return "damaged ID3 tag"
    return type(exc).__name__


def _kind(path: Path, tagged: Any) -> str:
    """Which family of tags the file holds; gives ``tagged`` an empty tag block if it has none."""
    if tagged.tags is None:
        # add_tags builds an empty tag block in memory only (nothing is saved); which kind it
        # builds says how this file type stores tags.
        try:
            tagged.add_tags()
        except Exception:  # noqa: BLE001 - formats without tag support refuse in various ways
            raise UntaggableError(path, f"{type(tagged).__name__} files cannot hold a genre tag (supported: {SUPPORTED_FORMATS})") from None
    kind = _tag_family(tagged.tags)
    if kind is None:
        raise UntaggableError(path, f"genre tags of {type(tagged).__name__} files are neither read nor written by genrify "
                             f"(supported: {SUPPORTED_FORMATS})")
    return kind


# --- per-format tag access -------------------------------------------------------------------

# (album artist, artist, album) field names per tag family, each in the order read; the Vorbis
# album artist has three spellings in the wild (mediafile reads all three too).
_ALBUM_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    _ID3: (("TPE2",), ("TPE1",), ("TALB",)),
    _VORBIS: (("albumartist", "album artist", "album_artist"), ("artist",), ("album",)),
    _MP4: (("aART",), ("\xa9ART",), ("\xa9alb",)),
}


def _tag_family(tags: Any) -> str | None:
    from mutagen._vorbis import VCommentDict
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    if isinstance(tags, ID3):
        return _ID3
    if isinstance(tags, VCommentDict):
        return _VORBIS
    if isinstance(tags, MP4Tags):
        return _MP4
    return None


def _first_text(kind: str, tags: Any, key: str) -> str | None:
    """The first non-blank value of one text field, or ``None``."""
    values = tags.get(key)
    if values is None:
        return None
    if kind == _ID3:
        values = values.text
    for value in values:
        text = str(value).strip()
        if text:
            return text
    return None


def _raw(kind: str, tags: Any) -> tuple[str, ...]:
    """The genre values exactly as stored (what the read-back check compares against)."""
    if kind == _ID3:
        frame = tags.get("TCON")
        return tuple(str(v) for v in frame.text) if frame is not None else ()
    if kind == _VORBIS:
        return tuple(tags.get("genre", []))  # every GENRE comment, whatever its case
    return tuple(str(v) for v in tags.get(_MP4_GENRE, []))


def _display(kind: str, tags: Any, info_genres: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The genres as :func:`read_genre` gives them (ID3 references named, pre-v2.4 ``/`` split).

    Parameters
    ----------
    kind, tags
        The tag family and the tag block.
    info_genres
        The genre of a wav file's RIFF INFO chunk or an mp3's APEv2 tag (:func:`_info_genres`): the
        file's genre where its ID3 tag holds none a person could mean: none at all, placeholders
        only ("Other", "Unknown"), or an ID3v1 number alone (foobar2000 writes APEv2 beside ID3v1,
        whose genre byte is a lossy copy).
    """
    if kind == _ID3:
        frame = tags.get("TCON")
        genres = tuple(frame.genres) if frame is not None else ()
        if info_genres and (not genres or not any(names_a_genre(g) for g in genres) or tags.version[0] < 2):
            return info_genres
        if not genres:
            return ()
        return _split(genres, ID3V23_SEPARATOR) if tags.version[:2] < (2, 4) else genres
    return _raw(kind, tags)


def _info_genres(tagged: Any) -> tuple[str, ...]:
    """The genre in a wav file's RIFF ``LIST``/``INFO`` chunk (``IGNR``), or an mp3's APEv2 genre
    (:func:`_ape_genres`), or none: a genre a person may have set in a tag genrify does not write.

    mutagen reads only the ID3 chunk of a wav file; the INFO chunk is what Windows, Audacity,
    Adobe Audition and libsndfile write, so a person's genre may be there alone. The chunk is found
    among the file's top-level chunks, before or after the audio (:func:`_riff_info_field`). Its
    text has no declared encoding: UTF-8 where it decodes as such, else Windows-1252 (what Windows
    and older editors write, a superset of Latin-1). A value that is neither, or holds a control
    character or U+FFFD, counts as none: it would be copied into the ID3 tag as garbage. Other
    formats have neither: ``()``.
    """
    from mutagen.mp3 import MP3
    from mutagen.wave import WAVE

    if isinstance(tagged, MP3):
        return _ape_genres(tagged.filename)
    if not isinstance(tagged, WAVE):
        return ()
    try:
        with open(tagged.filename, "rb") as f:
            raw = _riff_info_field(f, b"IGNR")
    except OSError:
        return ()
    genre = _info_text(raw) if raw is not None else None
    return (genre,) if genre else ()


def _ape_genres(filename: str) -> tuple[str, ...]:
    """The genre values of an mp3's APEv2 tag (foobar2000, Winamp and Mp3tag may have set it there
    alone), or none. genrify writes no APEv2 tag: like a wav's RIFF INFO genre, it is the file's
    genre where the ID3 tag has none, set by a person."""
    from mutagen.apev2 import TEXT, APEv2

    try:
        value = APEv2(filename).get("Genre")  # APEv2 keys are case-insensitive
    except Exception:  # noqa: BLE001 - no tag (APEError), or a damaged one (mutagen raises ValueError too)
        return ()
    if value is None or value.kind != TEXT:
        return ()
    return tuple(v.strip() for v in value if v.strip())


def _info_source(tagged: Any) -> str:
    """Which other tag :func:`_info_genres` read: ``"APEv2"`` for an mp3, else ``"RIFF INFO"``."""
    from mutagen.mp3 import MP3

    return "APEv2" if isinstance(tagged, MP3) else "RIFF INFO"


# Bounds of the walk through a wav file's chunks: a damaged or hostile file (a chunk size pointing
# anywhere) costs at most this many chunk headers and one INFO list of this size.
_RIFF_MAX_CHUNKS = 4096
_INFO_MAX_BYTES = 1 << 20


def _riff_info_field(f: Any, field: bytes) -> bytes | None:
    """The value of ``field`` in the first ``LIST``/``INFO`` chunk of a RIFF/WAVE file open in ``f``.

    Only the top-level chunks are walked, each header read and its body skipped (bodies are padded
    to an even size), until the end of the file or a header that cannot be one (an id that is not
    four printable ASCII characters). A chunk whose size reaches past the end of the file is the
    last one: a list there is read as far as the file goes, as libsndfile does.
    """
    header = f.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:] != b"WAVE":
        return None
    end = os.fstat(f.fileno()).st_size
    offset = 12
    for _ in range(_RIFF_MAX_CHUNKS):
        if offset + 8 > end:
            break
        f.seek(offset)
        chunk_id, size = struct.unpack("<4sI", f.read(8))
        if not all(0x20 <= b < 0x7F for b in chunk_id):
            break
        cut = offset + 8 + size > end
        if chunk_id == b"LIST" and size >= 4 and (cut or size <= _INFO_MAX_BYTES):
            body = f.read(min(size, end - offset - 8, _INFO_MAX_BYTES))
            if body[:4] == b"INFO":
                value = _info_subchunk(body, field)
                if value is not None:
                    return value
        if cut:
            break
        offset += 8 + size + (size & 1)
    return None


def _info_subchunk(body: bytes, field: bytes) -> bytes | None:
    """The value of sub-chunk ``field`` in the body of a ``LIST``/``INFO`` chunk (``INFO`` first)."""
    pos = 4
    while pos + 8 <= len(body):
        sub_id, size = struct.unpack_from("<4sI", body, pos)
        if sub_id == field:
            return body[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)
    return None


def _info_text(raw: bytes) -> str | None:
    """An INFO value as text: up to its first NUL, UTF-8 or else Windows-1252; ``None`` where blank or garbled."""
    raw = raw.split(b"\x00", 1)[0]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:  # one of the five bytes cp1252 leaves undefined: not text
            return None
    text = text.strip()
    if not text or "\ufffd" in text or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        return None
    return text


def _info_note(
    path: Path,
    info: tuple[str, ...],
    old: tuple[str, ...],
    current: tuple[str, ...],
    resolved: tuple[str, ...],
    *,
    dry_run: bool,
    source: str = "RIFF INFO",
) -> tuple[str, ...]:
    """A warning where a written ID3 genre leaves out the RIFF INFO (or an mp3's APEv2) genre the
    file had (replace mode).

    genrify writes neither, so that genre stays in the file; from then on genrify reads the ID3
    genre, as beets and Picard do, but a player that reads only the other tag still shows the old
    one. Keep and merge never leave it out, so they never warn.
    """
    if not info or old != info:
        return ()  # the ID3 tag held the genres: INFO was not what the file's genre was read from
    ours = {g.casefold() for g in resolved}
    if all(g.casefold() in ours for g in current):
        return ()
    verb = "would stay" if dry_run else "stays"
    return (f"{path}: its {source} genre {'; '.join(info)!r} {verb} in the file beside the new ID3 genre "
            "(genrify writes only ID3, which it, beets and Picard read first)",)


# ID3v2.4 frames that ID3v2.3 does not define, and where converting a tag to v2.3 puts each so that
# nothing a person set is lost (mutagen's ``update_to_v23`` deletes them all):
#: Kept as they are, off the v2.3 standard: the sort-order and set-subtitle frames, as Picard does
#: (its ``compatid3``: "most applications use them also in ID3v2.3"). A v2.3 reader skips a frame
#: it does not know; mutagen (so beets and Picard) reads these back.
_V23_KEPT = ("TSOP", "TSOA", "TSOT", "TSST")
#: Text frames a v2.3 reader would not show, moved to user-defined ``TXXX`` frames: mood under
#: Picard's v2.3 name (Picard reads ``TXXX:mood`` back as the mood), the others under their
#: ID3v2.4 frame names, spelled as Mp3tag names these fields.
_V23_TXXX = {
    "TMOO": "mood",
    "TDRL": "RELEASETIME",
    "TPRO": "PRODUCEDNOTICE",
    "TDEN": "ENCODINGTIME",
    "TDTG": "TAGGINGTIME",
}
#: Dates mutagen converts to v2.3 frames (TDRC to TYER, TDAT and TIME; TDOR to TORY, the year
#: only): where those cannot hold the whole value (a month without its day, a time to the second,
#: an original release date, several dates), the value as it was goes to a ``TXXX`` frame too.
_V23_DATES = {"TDRC": "RECORDINGTIME", "TDOR": "ORIGRELEASETIME"}
# ASPI, SEEK and SIGN go, as mutagen drops them: they point into or sign the old tag's bytes,
# which no rewrite keeps valid. TIPL and TMCL become one IPLS (mutagen), every name and role kept.
# RVA2 and EQU2 (volume, equalisation) stay as they are: mutagen's deletion misses them, since
# their keys always carry a description ("RVA2:track").


def _to_v23(tags: Any) -> None:
    """Convert an ID3 tag in memory to v2.3 frames without losing what v2.3 cannot name.

    mutagen's ``update_to_v23`` (which every v2.3 save needs: mutagen holds v2.4 frames in memory)
    deletes the v2.4-only frames; this keeps their values as :data:`_V23_KEPT`, :data:`_V23_TXXX`
    and :data:`_V23_DATES` say. Run on a tag that is v2.3 already, it changes nothing: its
    ``TXXX`` frames stay, and so do the frames kept as they are.
    """
    from mutagen.id3 import TXXX

    kept = [frame for key in _V23_KEPT for frame in tags.getall(key)]
    moved: list[tuple[str, list[str], int]] = []
    for frame_id, name in _V23_TXXX.items():
        moved += [(name, _frame_texts(frame), frame.encoding) for frame in tags.getall(frame_id)]
    for frame_id, name in _V23_DATES.items():
        moved += [(name, _frame_texts(frame), frame.encoding) for frame in tags.getall(frame_id)
                  if not _v23_holds_date(frame_id, frame)]
    tags.update_to_v23()
    for frame in kept:
        tags.add(frame)
    for name, values, encoding in moved:
        if not values:
            continue
        existing = tags.get("TXXX:" + name)
        if existing is not None:  # a person's own TXXX of that name: both values stay
            values = [*existing.text, *(v for v in values if v not in existing.text)]
        tags.add(TXXX(encoding=encoding, desc=name, text=values))


def _frame_texts(frame: Any) -> list[str]:
    """A text frame's non-blank values; timestamps in the ID3v2.4 form (``2001-02-03T10:20``)."""
    from mutagen.id3 import TimeStampTextFrame

    values = [str(v) for v in frame.text]
    if isinstance(frame, TimeStampTextFrame):
        values = [v.replace(" ", "T") for v in values]
    return [v for v in values if v.strip()]


def _v23_holds_date(frame_id: str, frame: Any) -> bool:
    """Whether the v2.3 frames mutagen makes of a TDRC or TDOR frame hold all of its value.

    TDRC becomes TYER, TDAT (day and month, only both) and TIME (hour and minute, only both and
    non-zero, read back only with a TDAT); TDOR becomes TORY, a year. Only the first value of
    either is converted.
    """
    if len(frame.text) != 1:
        return False
    stamp = frame.text[0]
    if not stamp.year:
        return False
    if frame_id == "TDOR":
        return stamp.month is None
    if stamp.month is not None and not (stamp.month and stamp.day):
        return False
    if stamp.hour is not None and not (stamp.month and stamp.day and stamp.hour and stamp.minute):
        return False
    return not stamp.second


def _provenance_text(kind: str, tags: Any) -> str | None:
    """The provenance field's value as stored, or ``None``."""
    if kind == _ID3:
        frame = tags.get(_ID3_PROVENANCE)
        return str(frame.text[0]) if frame is not None and frame.text else None
    if kind == _VORBIS:
        values = tags.get(PROVENANCE_FIELD.lower(), [])
        return values[0] if values else None
    values = tags.get(MP4_PROVENANCE_KEY, [])
    return bytes(values[0]).decode("utf-8", "replace") if values else None


def _save_options(kind: str, v23: bool) -> dict[str, Any]:
    if kind == _ID3:
        return {"v2_version": 3, "v23_sep": ID3V23_SEPARATOR} if v23 else {"v2_version": 4}
    return {}


def _load_options(kind: str) -> dict[str, Any]:
    """How the copy to be written is loaded: an ID3 tag without the ID3v1 block.

    mutagen's default (``load_v1=True``) adds every ID3v1 field the v2 tag lacks to the tag in
    memory, and a save would then write stale v1 titles, artists and comments into the v2 tag.
    (Reading the file's genre keeps mutagen's default, as beets does: a v1 genre where the v2 tag
    has none is a person's.) mutagen's mp3, wav and aiff types all pass the option to their ID3.
    """
    return {"load_v1": False} if kind == _ID3 else {}


def _save_id3(copy: Any, tmp: Path, options: dict[str, Any]) -> bytes | None:
    """Save the ID3v2 tag of the copy at ``tmp``, leaving its ID3v1 block byte for byte as it was.

    mutagen has no option to leave a v1 block alone (it updates one from the v2 tag, or removes
    it), so an mp3's block is saved first, removed by the save (``v1=0``) and put back after it.
    wav and aiff keep ID3 in a chunk and have no v1 block: their save takes no such option.

    Returns
    -------
    bytes or None
        The v1 block now at the end of the copy (``b""``: none), for the read-back check;
        ``None`` for a file type without one.
    """
    from mutagen.id3 import ID3FileType

    if not isinstance(copy, ID3FileType):
        copy.save(**options)
        return None
    block = _id3v1_block(tmp)
    copy.save(v1=0, **options)
    if block:
        with open(tmp, "ab") as out:
            out.write(block)
    return block


def _id3v1_block(path: Path) -> bytes:
    """The ID3v1 block at the end of the file, as mutagen finds it (``b""``: none).

    mutagen's own finder, the one its save uses, so exactly the bytes a save with ``v1=0`` removes.
    """
    with open(path, "rb") as f:
        try:
            # Not re-exported by mutagen.id3, but the rule mutagen's save itself follows.
            from mutagen.id3._id3v1 import find_id3v1
        except ImportError:  # a mutagen that moved it: the plain 128-byte block
            f.seek(0, os.SEEK_END)
            if f.tell() < 128:
                return b""
            f.seek(-128, os.SEEK_END)
            block = f.read()
            return block if block.startswith(b"TAG") else b""
        tag, offset = find_id3v1(f)
        if tag is None or not offset:
            return b""
        f.seek(offset, os.SEEK_END)
        return f.read()


def _set(kind: str, tags: Any, values: tuple[str, ...], provenance: str | None) -> None:
    """Put the genres and the provenance field (``None``: none) into a tag block in memory."""
    if kind == _ID3:
        from mutagen.id3 import TCON, TXXX

        tags.setall("TCON", [TCON(encoding=3, text=list(values))])
        tags.delall(_ID3_PROVENANCE)
        if provenance is not None:
            tags.add(TXXX(encoding=3, desc=PROVENANCE_FIELD, text=[provenance]))
    elif kind == _VORBIS:
        tags[_VORBIS_GENRE] = list(values)  # replaces every GENRE comment, whatever its case
        if provenance is not None:
            tags[PROVENANCE_FIELD] = [provenance]
        else:
            with contextlib.suppress(KeyError):
                del tags[PROVENANCE_FIELD]
    else:
        from mutagen.mp4 import AtomDataType, MP4FreeForm

        tags[_MP4_GENRE] = list(values)
        if provenance is not None:
            tags[MP4_PROVENANCE_KEY] = [MP4FreeForm(provenance.encode("utf-8"), dataformat=AtomDataType.UTF8)]
        else:
            tags.pop(MP4_PROVENANCE_KEY, None)


# --- atomic rewrite --------------------------------------------------------------------------


def _rewrite(path: Path, target: Path, tagged: Any, kind: str, plan: _Plan) -> None:
    st = target.stat()
    # What an earlier, killed write to this file left (a full-size hidden copy) goes first.
    remove_leftovers(target.parent, target.name)
    try:
        # The copy gets no permission bit the file lacks before its content goes in: a kill -9
        # leaves it (or the journal made of it) beside the file.
        with scratch_path(target, like=st) as tmp:
            _tagged_copy(path, target, tmp, tagged, kind, plan)
            # Renaming would detach this name from the other links, and a copy that cannot be given
            # the file's owner, group, mode or extended attributes would drop them: in both cases
            # the checked copy is written back into the file itself, through a journal.
            if st.st_nlink > 1 or not _carry_attributes(tmp, st, target):
                write_in_place(tmp, target)
            else:
                replace_with(tmp, target)
    except GenrifyIOError as exc:  # the in-place write says whether the file changed, and where its copy is
        raise TagError(path, str(exc).removeprefix(f"{target}: ")) from exc
    except BaseException as exc:  # interrupts too: the context manager removed the temporary
        if isinstance(exc, TagError):
            raise
        if isinstance(exc, Exception):
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else _describe(exc)
            raise TagError(path, f"could not write the genre, file left unchanged ({detail})") from exc
        raise


def _tagged_copy(path: Path, target: Path, tmp: Path, tagged: Any, kind: str, plan: _Plan) -> None:
    """Copy ``target`` to ``tmp``, set the genres and the provenance there and check the result.

    An ID3 tag is loaded without its ID3v1 block and saved without touching it (:func:`_save_id3`):
    mutagen would otherwise copy the v1 fields into the v2 tag and rewrite the v1 block from it.
    """
    with open(target, "rb") as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    file_type = type(tagged)
    load = _load_options(kind)
    # A v2.3 tag saved as v2.3 is loaded as it is stored: mutagen's translation to v2.4 frames on
    # reading drops the frames v2.4 lacks (RVAD, TSIZ, TRDA, EQUA) and dates it cannot parse
    # ("199x"), and translating back would not restore them.
    as_stored = plan.v23 and tagged.tags is not None and tagged.tags.version[:2] == (2, 3)
    copy = file_type(str(tmp), **load, **({"translate": False} if as_stored else {}))
    if copy.tags is None:
        copy.add_tags()
    if plan.v23 and not as_stored:
        # mutagen holds every ID3 tag as v2.4 frames in memory (a v2.4 file's); saving v2.3 needs
        # them translated back (dates to TYER/TDAT), as mutagen documents, keeping the v2.4-only
        # frames mutagen would drop (_to_v23). Before _set, so that the genre values go in exactly
        # as planned.
        _to_v23(copy.tags)
    _set(kind, copy.tags, plan.values, plan.provenance)
    v1 = None
    if kind == _ID3:
        v1 = _save_id3(copy, tmp, _save_options(kind, plan.v23))
    else:
        copy.save()
    # Read the copy back as a new file: the genres and the provenance must be there exactly, and
    # the audio stream the same. The provenance is checked too: a record that did not land would
    # make the next run take genrify's genres for a person's, and keep them forever.
    check = file_type(str(tmp), **load)
    if v1 is not None and _id3v1_block(tmp) != v1:
        raise TagError(path, "could not write the genre, file left unchanged (the ID3v1 tag did not read back)")
    if (
        check.tags is None
        or _raw(kind, check.tags) != plan.values
        or _provenance_text(kind, check.tags) != plan.provenance
    ):
        raise TagError(path, "could not write the genre, file left unchanged (the written tag did not read back)")
    if kind == _ID3 and (check.tags.version[:2] == (2, 3)) != plan.v23:
        raise TagError(path, "could not write the genre, file left unchanged (the ID3 version did not read back)")
    if _stream(check.info) != _stream(tagged.info):
        raise TagError(path, "could not write the genre, file left unchanged (the audio stream changed in the copy)")


def _stream(info: Any) -> tuple[Any, ...]:
    """What mutagen says of the audio stream; a tag rewrite must leave all of it as it was."""
    return tuple(getattr(info, key, None) for key in ("length", "sample_rate", "channels", "bits_per_sample", "bitrate"))


def _carry_attributes(tmp: Path, st: os.stat_result, target: Path) -> bool:
    """Give the copy ``tmp`` the owner, group, extended attributes and mode of ``target`` (stat ``st``).

    Returns
    -------
    bool
        True where the copy now has every one of them; False where the process may not give it
        one (a group the user is not in, an attribute it cannot set or read): the caller then
        writes in place, which keeps them all, rather than drop it.
    """
    wanted = _xattrs(target)
    if wanted is None:
        return False
    try:
        tmp_st = tmp.stat()
        if (tmp_st.st_uid, tmp_st.st_gid) != (st.st_uid, st.st_gid):
            os.chown(tmp, st.st_uid, st.st_gid)  # root, or the owner giving a group of theirs
        have = _xattrs(tmp)
        if have is None:
            return False
        # The copy may have inherited attributes the file lacks (a folder's default ACL).
        for name in have.keys() - wanted.keys():
            os.removexattr(tmp, name)
        for name, value in wanted.items():
            if have.get(name) != value:
                os.setxattr(tmp, name, value)
        # Last: chown clears set-id bits, and an ACL's mask is the group bits of the mode.
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        now = tmp.stat()
    except OSError:
        return False
    return (now.st_uid, now.st_gid, stat.S_IMODE(now.st_mode)) == (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) \
        and _xattrs(tmp) == wanted


def _xattrs(path: Path) -> dict[str, bytes] | None:
    """Every extended attribute of ``path`` by name; ``None`` where one cannot be read.

    A system without them (no ``os.listxattr``, or a filesystem that does not support them) has
    none, which a copy carries trivially.
    """
    if not hasattr(os, "listxattr"):
        return {}
    try:
        names = os.listxattr(path)
    except OSError as exc:
        return {} if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) else None
    values: dict[str, bytes] = {}
    for name in names:
        try:
            values[name] = os.getxattr(path, name)
        except OSError as exc:
            if exc.errno == errno.ENODATA:  # removed between the listing and the read
                continue
            return None
    return values


def recovery_message(recovery: Recovery, *, dry_run: bool = False) -> str:
    """One line for the user about an interrupted tag write found beside a file (see :class:`Recovery`)."""
    if recovery.finished and recovery.target is not None:
        verb = "would finish" if dry_run else "finished"
        return f"{recovery.target}: {verb} an interrupted tag write (restored from {recovery.journal.name})"
    return f"{recovery.journal}: an interrupted tag write could not be finished: {recovery.reason}; journal kept"


def recover_interrupted_writes(folders: Iterable[str | Path], *, dry_run: bool = False) -> list[str]:
    """Finish the tag writes that a killed genrify left half-done in these folders' files.

    For a library run before it reads any file: an in-place write (a hard-linked file) cut short
    by ``kill -9`` or a power cut leaves the file half-written and its complete new version in a
    journal beside the name written through (:func:`genrify.core.fsutil.write_in_place`); this copies
    each journal back into its file and removes it, where the file is still the one the write left
    (:func:`genrify.core.fsutil.recover_in_place`). A journal whose file was deleted, replaced or
    changed since, that is damaged, or another machine's, is kept and reported; :func:`write_genre`
    then refuses its file.

    Parameters
    ----------
    folders
        The folders to look in (not their sub-folders); repeats are looked at once.
    dry_run
        Write nothing; say what would be finished.

    Returns
    -------
    list of str
        One warning per journal found, naming the file (:func:`recovery_message`).
    """
    messages: list[str] = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        messages.extend(recovery_message(r, dry_run=dry_run) for r in recover_in_place(folder, dry_run=dry_run))
    return messages
