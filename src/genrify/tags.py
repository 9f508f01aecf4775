"""Read and write the tags genrify needs in audio files (mutagen).

Reading: the artist, which lets splits keep one artist's songs on one side; the album and album
artist, which group tracks into albums; the genre; and genrify's provenance record.
Writing: the genre and the provenance record only (:func:`write_genre`), so that a classification
can be put back into a music collection. Every other tag stays as it was and the audio data is not
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

A new ID3 tag is v2.4; an existing v2.3 tag stays v2.3 (older players read only that), and
``id3v23=True`` writes v2.3 whatever was there. A ``separator`` joins the genres into one value in
every format, for players that show only the first value. The provenance value is one line of JSON
(:class:`genrify.tagpolicy.Provenance`) naming only the genres genrify put there; the MP4 field
follows Picard's convention for custom fields, so Picard and Mp3tag show a field named ``GENRIFY``
in every format.

ID3v2.3 and the ``/`` join: v2.3 has no multi-valued text frames; mutagen (``v23_sep="/"``), beets
with ``id3v23: yes`` and most taggers store several values as one ``/``-joined string, and players
that split genre strings split it again (Navidrome's default genre separators are ``;/,``). mutagen
and mediafile (so beets) read such a frame back as *one* value (``["Rock/Pop"]``): they do not
split (checked with mutagen 1.48 and mediafile 0.17; the tests assert it).
:func:`read_genre` does, for ID3 tags older than v2.4 only, so that genrify's keep/merge modes see
the genres a player shows (``("Rock", "Pop")``) and a merge does not repeat one of them.

A write is atomic: the file is copied to a hidden temporary file in its own folder, the tags are
written into the copy, the copy is checked (the genres and the provenance read back, same audio)
and flushed to disk and renamed over the original (:func:`genrify.fsutil.atomic_path`). A crash,
a full disk or a damaged file at any point leaves the original exactly as it was and no temporary
behind; what a ``kill -9`` leaves is removed by the next write to that file
(:func:`genrify.fsutil.remove_leftovers`).

A file with several hard links is the exception: renaming would give only this name the new tags,
so the checked copy is written back into the original file in place (see :func:`write_genre`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrify.errors import ParameterError, TagError
from genrify.fsutil import atomic_path, remove_leftovers, scratch_path
from genrify.tagpolicy import Provenance, check_mode, human_genres, resolve

#: Joins several genres in an ID3v2.3 tag when the caller gives no ``separator`` (v2.3 has no
#: multi-valued frames; ``/`` is mutagen's and the taggers' convention).
ID3V23_SEPARATOR = "/"
#: The provenance field's name: ``TXXX:GENRIFY`` (ID3), ``GENRIFY`` (Vorbis comment), and
#: :data:`MP4_PROVENANCE_KEY` (MP4).
PROVENANCE_FIELD = "GENRIFY"
MP4_PROVENANCE_KEY = "----:com.apple.iTunes:" + PROVENANCE_FIELD
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
    """

    path: Path
    old: tuple[str, ...]
    new: tuple[str, ...]
    changed: bool
    dry_run: bool = False
    status: str = ""

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
    can be decoded is for :mod:`genrify.audio` to say.
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


def _names(path: str | Path) -> tuple[str | None, str | None, str | None]:
    """``(album artist, artist, album)`` from the file's tags, each ``None`` where missing or blank.

    Read from the tag family itself rather than mutagen's "easy" interface, which does not cover
    the ID3 tags of wav and aiff files. Never raises.
    """
    import mutagen  # deferred: only extraction workers and album grouping need it

    try:
        tagged = mutagen.File(str(path))
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
    module docstring for why, and for what mutagen and mediafile read instead.

    Raises
    ------
    TagError
        The file is missing or unreadable, its format holds no genre tag genrify knows, or its
        tags are damaged.
    """
    path = Path(path)
    target = _check_file(path, writable=False)
    tagged = _open(path, target)
    return _display(_kind(path, tagged), tagged.tags)


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
        How the new genres meet those in the file (:func:`genrify.tagpolicy.resolve`):
        ``"replace"`` (the default, the low-level behaviour), ``"merge"`` or ``"keep"``. The
        file's provenance record says which of its genres genrify wrote; the others are a
        person's, and ``merge`` and ``keep`` never remove them.
    provenance
        The record to store beside the genres, in the same rewrite. Its genres are replaced by
        those genrify itself puts in the file: a person's genres that ``merge`` keeps (or that
        genrify happened to propose too) are left out, so that they stay a person's in later
        runs; genres joined by a separator are recorded one by one. ``None`` removes an earlier
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
        The file is missing, read-only (no write permission bit, or no write access; refused even
        for root so that behaviour does not depend on who runs it), in a folder that cannot take a
        temporary file, of a format without a supported genre tag, damaged, or the write failed.
        The original file is untouched in every case.
    ParameterError
        No genre left after dropping blanks, a genre containing a NUL character, an empty
        ``separator`` or an unknown ``mode``.

    Notes
    -----
    The file is replaced by a rewritten, checked copy: its mode and (where permitted) owner are
    kept and its modification time becomes the time of writing.

    A file with more than one hard link is written in place instead, so that every name sees the
    new tags: the tags are written into a temporary copy, the copy is checked (the tags read back,
    the audio stream unchanged), then its bytes are written over the original (only the blocks
    that differ, then truncated and flushed) and the copy is deleted. Where the new tag block fits
    in the old one's space (the usual case: taggers leave padding) only the tag block's bytes
    change. Where it does not, the audio after it moves; the space is reserved first, so a full disk
    fails before anything changes, but a power cut or ``kill -9`` during that rewrite can leave the
    file damaged, a risk the replacing path does not have.
    """
    path = Path(path)
    values = _clean_genres(genres)
    if separator is not None and (not isinstance(separator, str) or not separator):
        raise ParameterError("separator must be a non-empty string (or None for separate values)")
    check_mode(mode)
    # Refuse read-only files in dry runs too, so that a dry run predicts the real run.
    target = _check_file(path, writable=True)
    tagged = _open(path, target)
    kind = _kind(path, tagged)
    tags = tagged.tags
    old = _display(kind, tags)
    previous = Provenance.from_text(_provenance_text(kind, tags))
    # With a separator, one stored value holds several genres: compare genre by genre, so that a
    # merge neither repeats a genre nor mistakes a person's genre for genrify's.
    current = _split(old, separator) if separator is not None else old
    resolved = resolve(current, previous, values, mode)
    if resolved is None:
        return TagChange(path=path, old=old, new=old, changed=False, dry_run=dry_run, status="kept")
    v23 = kind == _ID3 and (id3v23 or tags.version[:2] == (2, 3))
    stored = _stored(resolved, separator, v23)
    new = _split(stored, ID3V23_SEPARATOR) if v23 else stored
    if new == old:
        # The genres a reader sees stay the same: no rewrite, even for a newer provenance.
        return TagChange(path=path, old=old, new=old, changed=False, dry_run=dry_run, status="unchanged")
    if not dry_run:
        record = None
        if provenance is not None:
            # The record names only genrify's genres, never a person's kept by merge (or one that
            # a person had set and genrify proposed too): those must stay a person's next time.
            human = {g.casefold() for g in human_genres(current, previous)}
            ours = [g for g in resolved if g.casefold() not in human]
            record = provenance.with_genres(_split(ours, ID3V23_SEPARATOR) if v23 else ours).to_text()
        _rewrite(path, target, tagged, kind, _Plan(stored, record, v23))
    return TagChange(path=path, old=old, new=new, changed=True, dry_run=dry_run, status="written")


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


def _open(path: Path, target: Path) -> Any:
    import mutagen  # deferred: the CLI starts faster without it

    try:
        tagged = mutagen.File(str(target))
    except Exception as exc:  # noqa: BLE001 - mutagen raises many types for damaged files
        raise TagError(path, f"damaged or unsupported file, cannot read its tags ({_describe(exc)})") from None
    if tagged is None:
        raise TagError(path, f"unrecognised audio format for tagging (supported: {SUPPORTED_FORMATS})")
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
            raise TagError(path, f"{type(tagged).__name__} files cannot hold a genre tag (supported: {SUPPORTED_FORMATS})") from None
    kind = _tag_family(tagged.tags)
    if kind is None:
        raise TagError(path, f"writing genres to {type(tagged).__name__} files is not supported (supported: {SUPPORTED_FORMATS})")
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


def _display(kind: str, tags: Any) -> tuple[str, ...]:
    """The genres as :func:`read_genre` gives them (ID3 references named, pre-v2.4 ``/`` split)."""
    if kind == _ID3:
        frame = tags.get("TCON")
        if frame is None:
            return ()
        genres = tuple(frame.genres)
        return _split(genres, ID3V23_SEPARATOR) if tags.version[:2] < (2, 4) else genres
    return _raw(kind, tags)


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
        if st.st_nlink > 1:
            # Renaming would detach this name from the other links; write the checked copy back.
            with scratch_path(target) as tmp:
                _tagged_copy(path, target, tmp, tagged, kind, plan)
                _write_in_place(tmp, target)
        else:
            with atomic_path(target, keep_mode=True) as tmp:
                _tagged_copy(path, target, tmp, tagged, kind, plan)
                _preserve_owner_and_mode(tmp, st)
    except BaseException as exc:  # interrupts too: the context managers removed the temporary
        if isinstance(exc, TagError):
            raise
        if isinstance(exc, Exception):
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else _describe(exc)
            raise TagError(path, f"could not write the genre, file left unchanged ({detail})") from exc
        raise


def _tagged_copy(path: Path, target: Path, tmp: Path, tagged: Any, kind: str, plan: _Plan) -> None:
    """Copy ``target`` to ``tmp``, set the genres and the provenance there and check the result."""
    with open(target, "rb") as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    file_type = type(tagged)
    copy = file_type(str(tmp))
    if copy.tags is None:
        copy.add_tags()
    if plan.v23:
        # mutagen holds every ID3 tag as v2.4 frames in memory (a v2.3 file's are translated on
        # reading); saving v2.3 needs them translated back (dates to TYER/TDAT, v2.4-only frames
        # dropped), as mutagen documents and as beets does with id3v23. Before _set, so that the
        # genre values go in exactly as planned.
        copy.tags.update_to_v23()
    _set(kind, copy.tags, plan.values, plan.provenance)
    copy.save(**_save_options(kind, plan.v23))
    # Read the copy back as a new file: the genres and the provenance must be there exactly, and
    # the audio stream the same. The provenance is checked too: a record that did not land would
    # make the next run take genrify's genres for a person's, and keep them forever.
    check = file_type(str(tmp))
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


def _write_in_place(source: Path, target: Path) -> None:
    """Make ``target``'s bytes those of ``source`` without replacing the file (its links stay)."""
    size = source.stat().st_size
    with open(source, "rb") as src, open(target, "r+b") as dst:
        if size > os.fstat(dst.fileno()).st_size and hasattr(os, "posix_fallocate"):
            # Reserve the room first, so that a full disk fails before any byte changes.
            try:
                os.posix_fallocate(dst.fileno(), 0, size)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise
        offset = 0
        while True:
            new = src.read(1 << 20)
            if not new:
                break
            dst.seek(offset)
            # Unchanged blocks (the audio, when the tag block kept its size) are not rewritten, so
            # an interruption can only touch the blocks that differ.
            if dst.read(len(new)) != new:
                dst.seek(offset)
                dst.write(new)
            offset += len(new)
        dst.truncate(offset)
        dst.flush()
        os.fsync(dst.fileno())


def _preserve_owner_and_mode(tmp: Path, st: os.stat_result) -> None:
    tmp_st = tmp.stat()
    if (tmp_st.st_uid, tmp_st.st_gid) != (st.st_uid, st.st_gid):
        # Only root (or a member of the group) may do this; otherwise the file becomes the writer's.
        with contextlib.suppress(OSError):
            os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))  # the copy was made with the umask's mode
