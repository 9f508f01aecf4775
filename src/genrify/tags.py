"""Read and write the tags genrify needs in audio files (mutagen).

Reading: the artist, which lets splits keep one artist's songs on one side, and the genre.
Writing: the genre only (:func:`write_genre`), so that a classification can be put back into a
music collection. Every other tag stays as it was and the audio data is not touched: mutagen
rewrites only the tag block of each format (ID3 in mp3, wav and aiff; Vorbis comments in flac,
ogg and opus; the ``ilst`` atom in m4a/mp4).

A write is atomic: the file is copied to a hidden temporary file in its own folder, the tags are
written into the copy, the copy is checked (read back, same audio) and flushed to disk and renamed
over the original (:func:`genrify.fsutil.atomic_path`). A crash, a full disk or a damaged file at
any point leaves the original exactly as it was and no temporary behind; what a ``kill -9`` leaves
is removed by the next write to that file (:func:`genrify.fsutil.remove_leftovers`).

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

#: Joins several genres in formats that hold only one genre value (MP4, ID3v2.3) when the caller
#: gives no ``separator``.
DEFAULT_SEPARATOR = "; "

#: What :func:`write_genre` supports, for messages (mutagen's file types behind each kind).
SUPPORTED_FORMATS = "mp3, wav, aiff (ID3); flac, ogg, opus (Vorbis comments); m4a, mp4 (MP4 atoms)"

_ID3 = "ID3"
_VORBIS = "Vorbis comment"
_MP4 = "MP4"
_MP4_GENRE = "\xa9gen"


@dataclass(frozen=True)
class TagChange:
    """What :func:`write_genre` did (or, in a dry run, would do) to one file.

    Attributes
    ----------
    path
        The file, as the caller named it.
    old
        The genre value(s) the file held before; empty when it had none.
    new
        The genre value(s) it holds now (or would hold): several where the format is multi-valued,
        otherwise one joined string.
    changed
        ``new`` differs from ``old``. An unchanged file is never rewritten, so its modification
        time (and any cache keyed on it) stays valid.
    dry_run
        Nothing was written because the caller asked for a dry run.
    """

    path: Path
    old: tuple[str, ...]
    new: tuple[str, ...]
    changed: bool
    dry_run: bool = False

    @property
    def written(self) -> bool:
        """True where the file on disk was actually rewritten."""
        return self.changed and not self.dry_run


def read_artist(path: str | Path) -> str | None:
    """The file's artist tag (album artist where no artist is set), or ``None``.

    Never raises: a file whose tags cannot be read simply has no known artist; whether its audio
    can be decoded is for :mod:`genrify.audio` to say.
    """
    import mutagen  # deferred: only extraction workers need it

    try:
        tagged = mutagen.File(str(path), easy=True)
    except Exception:  # noqa: BLE001 - mutagen raises many types for damaged headers
        return None
    if tagged is None or not tagged.tags:
        return None
    for key in ("artist", "albumartist"):
        try:
            values = tagged.tags.get(key)
        except Exception:  # noqa: BLE001 - some tag formats refuse unknown easy keys
            values = None
        if values:
            value = str(values[0] if isinstance(values, list) else values).strip()
            if value:
                return value
    return None


def read_genre(path: str | Path) -> tuple[str, ...]:
    """The file's genre value(s); empty where the file has no genre tag.

    ID3 genre references such as ``(17)`` are translated to their names (``Rock``).

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


def write_genre(
    path: str | Path,
    genres: Sequence[str],
    *,
    separator: str | None = None,
    dry_run: bool = False,
) -> TagChange:
    """Set a file's genre tag, leaving every other tag and the audio data as they are.

    Parameters
    ----------
    path
        An mp3, flac, ogg (Vorbis, Opus, FLAC), m4a/mp4, wav or aiff file. A symbolic link is
        followed and the file it points to is rewritten, so the link stays a link.
    genres
        One or more genres, most likely first. Blank entries and repeats are dropped.
    separator
        Join several genres into one string with this (e.g. ``"; "``) instead of storing them as
        separate values. Formats that hold only one value (MP4, ID3v2.3) join with
        :data:`DEFAULT_SEPARATOR` when no separator is given.
    dry_run
        Check everything and report what would change, but write nothing.

    Returns
    -------
    TagChange
        Old and new values and whether the file changed. A file that already holds exactly the
        new value is left alone (``changed`` is false).

    Raises
    ------
    TagError
        The file is missing, read-only (no write permission bit, or no write access; refused even
        for root so that behaviour does not depend on who runs it), in a folder that cannot take a
        temporary file, of a format without a supported genre tag, damaged, or the write failed.
        The original file is untouched in every case.
    ParameterError
        No genre left after dropping blanks, a genre containing a NUL character, or an empty
        ``separator``.

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
    if separator is not None and not separator:
        raise ParameterError("separator must be a non-empty string (or None for separate values)")
    # Refuse read-only files in dry runs too, so that a dry run predicts the real run.
    target = _check_file(path, writable=True)
    tagged = _open(path, target)
    kind = _kind(path, tagged)
    tags = tagged.tags
    old_raw = _raw(kind, tags)
    old = _display(kind, tags)
    if separator is not None or len(values) == 1:
        new = ((separator or "").join(values),)
    elif _multi_valued(kind, tags):
        new = values
    else:
        new = (DEFAULT_SEPARATOR.join(values),)
    change = TagChange(path=path, old=old, new=new, changed=old_raw != new, dry_run=dry_run)
    if change.changed and not dry_run:
        _rewrite(path, target, tagged, kind, new, _save_options(kind, tags))
    return change


# --- checks ----------------------------------------------------------------------------------


def _clean_genres(genres: Sequence[str]) -> tuple[str, ...]:
    if isinstance(genres, str):  # a bare string would otherwise become one genre per letter
        genres = [genres]
    cleaned: list[str] = []
    for genre in genres:
        value = str(genre).strip()
        if "\x00" in value:
            raise ParameterError(f"genre {value!r} contains a NUL character")
        if value and value not in cleaned:
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
    from mutagen._vorbis import VCommentDict
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    if tagged.tags is None:
        # add_tags builds an empty tag block in memory only (nothing is saved); which kind it
        # builds says how this file type stores tags.
        try:
            tagged.add_tags()
        except Exception:  # noqa: BLE001 - formats without tag support refuse in various ways
            raise TagError(path, f"{type(tagged).__name__} files cannot hold a genre tag (supported: {SUPPORTED_FORMATS})") from None
    tags = tagged.tags
    if isinstance(tags, ID3):
        return _ID3
    if isinstance(tags, VCommentDict):
        return _VORBIS
    if isinstance(tags, MP4Tags):
        return _MP4
    raise TagError(path, f"writing genres to {type(tagged).__name__} files is not supported (supported: {SUPPORTED_FORMATS})")


# --- per-format tag access -------------------------------------------------------------------


def _raw(kind: str, tags: Any) -> tuple[str, ...]:
    """The genre values exactly as stored (what a rewrite would compare against)."""
    if kind == _ID3:
        frame = tags.get("TCON")
        return tuple(str(v) for v in frame.text) if frame is not None else ()
    if kind == _VORBIS:
        return tuple(tags.get("genre", []))
    return tuple(str(v) for v in tags.get(_MP4_GENRE, []))


def _display(kind: str, tags: Any) -> tuple[str, ...]:
    if kind == _ID3:
        frame = tags.get("TCON")
        return tuple(frame.genres) if frame is not None else ()
    return _raw(kind, tags)


def _multi_valued(kind: str, tags: Any) -> bool:
    if kind == _VORBIS:
        return True
    if kind == _ID3:
        # ID3v2.3 has no multi-valued text frames (mutagen would join them with "/"); a new tag is
        # v2.4, which has.
        return tags.version[:2] != (2, 3)
    return False  # MP4: iTunes and most players read only the first genre atom


def _save_options(kind: str, tags: Any) -> dict[str, Any]:
    if kind == _ID3:
        # Keep an existing v2.3 tag at v2.3 (older players read only that); everything else is v2.4.
        return {"v2_version": 3 if tags.version[:2] == (2, 3) else 4}
    return {}


def _set(kind: str, tags: Any, values: tuple[str, ...]) -> None:
    if kind == _ID3:
        from mutagen.id3 import TCON

        tags.setall("TCON", [TCON(encoding=3, text=list(values))])
    elif kind == _VORBIS:
        tags["genre"] = list(values)  # replaces every GENRE comment, whatever its case
    else:
        tags[_MP4_GENRE] = list(values)


# --- atomic rewrite --------------------------------------------------------------------------


def _rewrite(path: Path, target: Path, tagged: Any, kind: str, values: tuple[str, ...], options: dict[str, Any]) -> None:
    st = target.stat()
    # What an earlier, killed write to this file left (a full-size hidden copy) goes first.
    remove_leftovers(target.parent, target.name)
    try:
        if st.st_nlink > 1:
            # Renaming would detach this name from the other links; write the checked copy back.
            with scratch_path(target) as tmp:
                _tagged_copy(path, target, tmp, tagged, kind, values, options)
                _write_in_place(tmp, target)
        else:
            with atomic_path(target, keep_mode=True) as tmp:
                _tagged_copy(path, target, tmp, tagged, kind, values, options)
                _preserve_owner_and_mode(tmp, st)
    except BaseException as exc:  # interrupts too: the context managers removed the temporary
        if isinstance(exc, TagError):
            raise
        if isinstance(exc, Exception):
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else _describe(exc)
            raise TagError(path, f"could not write the genre, file left unchanged ({detail})") from exc
        raise


def _tagged_copy(
    path: Path, target: Path, tmp: Path, tagged: Any, kind: str, values: tuple[str, ...], options: dict[str, Any]
) -> None:
    """Copy ``target`` to ``tmp``, set the genre there and check the result."""
    with open(target, "rb") as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    file_type = type(tagged)
    copy = file_type(str(tmp))
    if copy.tags is None:
        copy.add_tags()
    _set(kind, copy.tags, values)
    copy.save(**options)
    # Read the copy back as a new file: the genre must be there and the audio stream the same.
    check = file_type(str(tmp))
    if check.tags is None or _raw(kind, check.tags) != values:
        raise TagError(path, "could not write the genre, file left unchanged (the written tag did not read back)")
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
