"""Sort a music collection into genre folders and playlists, from classification answers.

Two steps, so that a caller can show what will happen before anything happens::

    moves = plan_moves({Path("in/a.mp3"): "rock"}, Path("sorted"), mode="copy")
    results = apply(moves)                  # or apply(moves, dry_run=True)
    write_playlists({Path("in/a.mp3"): "rock"}, Path("playlists"))   # never over a person's own

Each file goes to ``DEST/<genre>/<name>``. Nothing is ever overwritten: a name already taken, on
disk or by another file of the same plan, gets a suffix (``song (1).mp3``), and a file identical
to the source already at the target is left as it is, so running the same plan twice does nothing
the second time. Nothing half-written ever appears at a target: copies are made under a hidden
temporary name in the target folder, flushed to disk and then renamed.

Errors are per file: one unreadable file is reported in its :class:`MoveResult` and the rest of the
library goes on. Playlists are rewritten only where genrify wrote them (its mark is their second
line): a person's own ``rock.m3u8`` stays as it is, and genrify's goes beside it as
``rock (genrify).m3u8``. Only a problem with the request as a whole (an unknown mode, a
destination inside a source folder) raises.
"""

from __future__ import annotations

import errno
import filecmp
import itertools
import math
import os
import re
import shutil
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from genrify.collection.library import display_path, file_identity
from genrify.core.fsutil import atomic_path, fsync_dir, remove_leftovers, write_text_atomic
from genrify.errors import OrganizeError, ParameterError

Mode = Literal["copy", "link", "move"]
Status = Literal["done", "planned", "skipped", "failed"]
Method = Literal["copy", "hardlink", "symlink", "rename", "copy+delete", "relinked"]

#: Folder name for a genre that sanitises to nothing (``""``, ``".."``, ``"///"``).
UNNAMED_GENRE = "unknown"
# Characters not allowed in folder names on the common filesystems (Windows is the strictest),
# plus control characters; each becomes "_".
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_MAX_NAME = 100  # characters; leaves room under the usual 255-byte limit for UTF-8 names
# os.link fails with these where a hard link is impossible (other filesystem, or one without links).
_NO_HARDLINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
#: The start of the line, second in every playlist genrify writes, that marks it as genrify's: only
#: a playlist with it is ever rewritten (see :func:`is_genrify_playlist`).
PLAYLIST_MARK = "#GENRIFY:"
#: The whole mark line. A comment to players; it tells a person how to keep a list genrify would
#: otherwise rewrite.
PLAYLIST_MARK_LINE = (f"{PLAYLIST_MARK}written by genrify classify --playlists and rewritten by each run; "
                      "delete this line to keep the list as yours")


@dataclass(frozen=True)
class Move:
    """One planned file operation: put ``source`` at ``target`` by ``mode``.

    ``skip`` is set where an identical file (or ``source`` itself) is already at ``target``.
    """

    source: Path
    target: Path
    genre: str
    mode: Mode
    skip: bool = False


@dataclass(frozen=True)
class MoveResult:
    """What :func:`apply` did with one :class:`Move`.

    Attributes
    ----------
    source
        The file that was (or would be) placed.
    target
        Where it went. Usually the planned target; a later suffix where that name was taken
        between planning and applying.
    genre
        The genre as assigned (the folder is its :func:`sanitize_genre` form).
    status
        ``done``; ``planned`` (dry run); ``skipped`` (identical file already there); ``failed``.
    method
        How it was placed: ``copy``, ``hardlink``, ``symlink`` (a hard link was impossible, e.g.
        across filesystems), ``rename`` or ``copy+delete`` (a move across filesystems). ``None``
        where nothing was placed.
    detail
        One line for a person: the error for ``failed``, why for ``skipped`` or ``symlink``.
    """

    source: Path
    target: Path
    genre: str
    status: Status
    method: Method | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True unless the file failed."""
        return self.status != "failed"


def sanitize_genre(genre: str) -> str:
    """A safe folder (or file) name for ``genre``: one path component, never hidden, never empty.

    Runs of white space become one space; path separators and characters that some filesystems
    forbid become ``_``; leading dots and surrounding spaces go (so ``..`` cannot climb out of the destination); names reserved on
    Windows get a trailing ``_``; long names are cut to 100 characters.

    Examples
    --------
    >>> sanitize_genre("Hip-Hop/Rap")
    'Hip-Hop_Rap'
    >>> sanitize_genre("../../etc")
    '_.._etc'
    """
    name = unicodedata.normalize("NFC", str(genre))
    name = " ".join(name.split())  # tabs and line breaks become single spaces first
    name = _UNSAFE.sub("_", name)
    name = name.lstrip(". ").rstrip(". ")  # Windows drops trailing dots and spaces silently
    name = name[:_MAX_NAME].rstrip(". ")
    if not name.strip("_"):  # nothing but replaced characters: no name worth keeping
        return UNNAMED_GENRE
    base, dot, rest = name.partition(".")
    if base.upper() in _RESERVED:  # Windows reserves these with any extension too
        name = f"{base}_{dot}{rest}"
    return name


def check_destination(dest: str | Path, sources: Iterable[str | Path]) -> None:
    """Refuse a destination that lies inside (or is) one of the source folders.

    Sorting a library into a folder inside itself would make the next scan see every song twice.

    Raises
    ------
    OrganizeError
        ``dest`` is one of ``sources`` or inside one of them (symbolic links resolved), or exists
        and is not a folder (e.g. a song given by mistake).
    """
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise OrganizeError(f"{display_path(dest)}: the destination exists and is not a folder")
    dest_real = Path(os.path.realpath(dest))
    for source in sources:
        source_real = Path(os.path.realpath(source))
        if dest_real == source_real or source_real in dest_real.parents:
            raise OrganizeError(
                f"{dest}: the destination is inside the source folder {source}; choose a folder outside it"
            )


def plan_moves(
    assignments: Mapping[str | Path, str],
    dest: str | Path,
    *,
    mode: Mode,
    sources: Sequence[str | Path] = (),
) -> list[Move]:
    """Plan where each file goes: ``dest/<sanitised genre>/<file name>``, never overwriting.

    Parameters
    ----------
    assignments
        File -> genre.
    dest
        The root of the sorted collection (created on :func:`apply`; need not exist yet).
    mode
        ``copy``; ``link`` (hard link, or a symbolic link where a hard link is impossible);
        ``move``.
    sources
        The library folders the files come from; ``dest`` must not be inside any of them
        (see :func:`check_destination`).

    Returns
    -------
    list of Move
        One per file, sorted by target folder then source, which also decides who keeps a clashing
        name (the first) and who gets ``(1)``, ``(2)``, ...

    Raises
    ------
    ParameterError
        Unknown ``mode``.
    OrganizeError
        ``dest`` is inside a source folder, or exists and is not a folder.
    """
    if mode not in get_args(Mode):
        raise ParameterError(f"mode must be one of {', '.join(get_args(Mode))}, not {mode!r}")
    dest = Path(dest)
    check_destination(dest, sources)
    if dest.exists() and not dest.is_dir():
        raise OrganizeError(f"{dest}: the destination exists and is not a folder")
    # One genre, one folder, whichever model named it ("Jazz" goes where an earlier run's "jazz" is).
    folders = {f: _as_spelled_there(dest, f, os.path.isdir) for f in {sanitize_genre(g) for g in assignments.values()}}
    entries = sorted(((folders[sanitize_genre(genre)], Path(source), genre) for source, genre in assignments.items()),
                     key=_order)
    taken: set[tuple[str, str]] = set()  # (folder, name) casefolded: safe on case-insensitive disks
    moves: list[Move] = []
    for folder, source, genre in entries:
        target, skip = _free_target(dest / folder, source, taken)
        taken.add((folder.casefold(), target.name.casefold()))
        moves.append(Move(source=source, target=target, genre=genre, mode=mode, skip=skip))
    return moves


def apply(moves: Iterable[Move], *, dry_run: bool = False) -> list[MoveResult]:
    """Carry out planned moves, one file at a time; a failure costs only that file.

    With ``dry_run`` nothing is created, not even folders; every move is reported ``planned``
    (or ``skipped``).
    """
    moves = list(moves)
    results: list[MoveResult | None] = [None] * len(moves)
    cleaned: set[Path] = set()
    moved: dict[str, Path] = {}  # move mode: each song's real path -> where this run put it
    # Links are moved after the files: a link to a song this run moves then follows it there.
    order = sorted(range(len(moves)), key=lambda i: moves[i].mode == "move" and moves[i].source.is_symlink())
    for i in order:
        move = moves[i]
        if not dry_run and move.target.parent not in cleaned:
            # Copies that a killed run left half-made in this folder (only dead writers' ones).
            cleaned.add(move.target.parent)
            remove_leftovers(move.target.parent)
        if move.skip:
            results[i] = MoveResult(move.source, move.target, move.genre, "skipped", detail="identical file already there")
        elif dry_run:
            results[i] = MoveResult(move.source, move.target, move.genre, "planned")
        else:
            real = os.path.realpath(move.source) if move.mode == "move" else ""
            results[i] = _apply_one(move, moved)
            if real and results[i].status == "done" and results[i].method != "relinked":
                moved[real] = results[i].target
    return [r for r in results if r is not None]


def organize(
    assignments: Mapping[str | Path, str],
    dest: str | Path,
    *,
    mode: Mode,
    sources: Sequence[str | Path] = (),
    dry_run: bool = False,
) -> list[MoveResult]:
    """:func:`plan_moves` then :func:`apply`, in one call."""
    return apply(plan_moves(assignments, dest, mode=mode, sources=sources), dry_run=dry_run)


def playlist_path(out_dir: str | Path, genre: str) -> Path:
    """The playlist :func:`write_playlists` writes for ``genre``: ``out_dir/<sanitised genre>.m3u8``.

    Where a file that genrify did not write already has that name, the playlist goes to
    ``<sanitised genre> (genrify).m3u8`` instead (see :func:`write_playlists`).
    """
    return Path(out_dir) / f"{sanitize_genre(genre)}.m3u8"


def is_genrify_playlist(path: str | Path) -> bool:
    """Whether ``path`` is a playlist genrify wrote: a regular file (not a link) that starts with
    ``#EXTM3U`` and then genrify's mark (a line starting with :data:`PLAYLIST_MARK`).

    Only such a file is ever rewritten by :func:`write_playlists`; anything else with a playlist's
    name (a person's own list, a file this function cannot read) is left alone.
    """
    try:
        if os.path.islink(path) or not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    lines = head.decode("utf-8", errors="replace").removeprefix("\ufeff").splitlines()
    return len(lines) >= 2 and lines[0].strip() == "#EXTM3U" and lines[1].startswith(PLAYLIST_MARK)


def check_playlists(out_dir: str | Path, genres: Iterable[str], keep: Iterable[str | Path] = ()) -> None:
    """Refuse playlists that cannot be written, or that would replace a file to keep.

    Called by :func:`write_playlists`, and by a caller before any long work (with the genres a
    model can answer and the input files as ``keep``), so that a bad folder fails at once. A
    person's own playlist of the same name is no reason to refuse: :func:`write_playlists` writes
    genrify's under another name beside it.

    Raises
    ------
    OrganizeError
        ``out_dir`` exists and is not a folder; a playlist's name is taken by something that is not
        a regular file (a folder, say); or a playlist would replace one of ``keep`` (the same file,
        also through a link).
    """
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise OrganizeError(f"{display_path(out_dir)}: the playlist folder exists and is not a folder")
    kept = {ident for ident in map(file_identity, keep) if ident is not None}
    for genre in genres:
        target = playlist_path(out_dir, genre)
        if not os.path.lexists(target):
            continue
        if not os.path.isfile(target):
            raise OrganizeError(f"{display_path(target)}: a playlist would go here, but it is not a regular file")
        if file_identity(target) in kept:
            raise OrganizeError(f"{display_path(target)}: a playlist would replace this input file")


@dataclass
class PlaylistResult:
    """What :func:`write_playlists` did (or, in a dry run, would do).

    Attributes
    ----------
    written
        The playlists written (or that would be), sorted.
    left_out
        ``(file, why)`` for every file that could not be listed in its playlist (a name with a
        line break, or one that is not valid UTF-8, has no M3U8 spelling).
    sidestepped
        ``(a file genrify did not write, the playlist written instead)``: a person's own playlist
        had the name, so genrify's went beside it, and theirs was left as it is.
    failed
        ``(playlist, why)`` for playlists that could not be written (the old one, if any, stays).
    dry_run
        Nothing was written.
    """

    written: list[Path] = field(default_factory=list)
    left_out: list[tuple[Path, str]] = field(default_factory=list)
    sidestepped: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    dry_run: bool = False


def write_playlists(
    assignments: Mapping[str | Path, str],
    out_dir: str | Path,
    *,
    durations: Mapping[str | Path, float] | None = None,
    dry_run: bool = False,
) -> PlaylistResult:
    """Write one ``<genre>.m3u8`` playlist per genre into ``out_dir``.

    Each playlist is UTF-8, starts with ``#EXTM3U``, then genrify's mark (a ``#GENRIFY:`` line, see
    :func:`is_genrify_playlist`) and a ``#PLAYLIST:<genre>`` title, lists its files sorted by path,
    and names them relative to ``out_dir`` (absolute where no relative path exists, e.g. another
    Windows drive), so the folder of music and playlists can move as a whole. With ``durations``
    (file -> seconds) every entry gets an ``#EXTINF:<seconds>,<title>`` line, the title being the
    file name without its extension (``-1`` seconds where a file has no duration).

    A playlist genrify wrote earlier is replaced, atomically. A file of the same name that genrify
    did not write (a person's own list; a symbolic link) is never touched: genrify's playlist goes
    to ``<genre> (genrify).m3u8`` (or ``<genre> (genrify 2).m3u8``, ...) and the result says so.
    Files whose names contain a line break, or are not valid UTF-8, cannot be written in M3U8:
    they are left out, and the result lists them. A playlist that cannot be written (a full disk)
    costs that playlist only; the result lists it.

    Parameters
    ----------
    assignments
        File -> genre.
    out_dir
        The playlist folder (made if missing; not in a dry run).
    durations
        File -> seconds, for ``#EXTINF`` lines.
    dry_run
        Decide everything, write nothing.

    Returns
    -------
    PlaylistResult
        The playlists written, the files left out, the person's playlists sidestepped and the
        playlists that failed.

    Raises
    ------
    OrganizeError
        See :func:`check_playlists`.
    """
    out = Path(out_dir)
    check_playlists(out, set(assignments.values()))
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
    base = os.path.abspath(out)
    by_name: dict[str, list[tuple[Path, str]]] = {}
    spelled: dict[str, str] = {}
    for source, genre in assignments.items():
        name = sanitize_genre(genre)
        if name not in spelled:  # one genre, one playlist: an earlier run's "jazz.m3u8" for "Jazz"
            spelled[name] = _as_spelled_there(out, name, is_genrify_playlist, suffix=".m3u8")
            if spelled[name] == name:  # or its "jazz (genrify).m3u8", beside a person's "jazz.m3u8"
                spelled[name] = _as_spelled_there(out, name, is_genrify_playlist, suffix=" (genrify).m3u8")
        by_name.setdefault(spelled[name], []).append((Path(source), genre))
    seconds = {Path(k): v for k, v in (durations or {}).items()}
    result = PlaylistResult(dry_run=dry_run)
    taken: set[str] = set()  # names used by this run, casefolded: safe on case-insensitive disks
    for name, members in sorted(by_name.items()):
        title = " ".join(display_path(min(genre for _, genre in members)).split())  # one line, always UTF-8
        lines = ["#EXTM3U", PLAYLIST_MARK_LINE, f"#PLAYLIST:{title}"]
        for source in sorted({s for s, _ in members}, key=lambda p: os.path.abspath(p)):
            entry, why = playlist_entry(source, base)
            if entry is None:
                result.left_out.append((source, why))
                continue
            if durations is not None:
                value = seconds.get(source)
                length = round(value) if value is not None and math.isfinite(value) else -1
                lines.append(f"#EXTINF:{length},{source.stem}")
            lines.append(entry)
        path = _playlist_target(out, name, taken)
        taken.add(path.name.casefold())
        if path.name != f"{name}.m3u8":
            result.sidestepped.append((out / f"{name}.m3u8", path))
        if not dry_run:
            try:
                write_text_atomic(path, "\n".join(lines) + "\n")
            except OSError as exc:
                result.failed.append((path, _describe(exc)))
                continue
        result.written.append(path)
    result.written.sort()
    return result


# --- planning --------------------------------------------------------------------------------


def _as_spelled_there(parent: Path, name: str, fits: Callable[[str], bool], *, suffix: str = "") -> str:
    """``name``, or the spelling in another case that an entry of ``parent`` for which ``fits``
    holds already gives it (a folder, genrify's playlist): a model that spells a genre "Jazz" then
    adds to the "jazz" an earlier run made, rather than a second one beside it."""
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return name
    wanted = (name + suffix).casefold()
    for entry in entries:
        if entry != name + suffix and entry.casefold() == wanted and fits(os.path.join(parent, entry)):
            return entry[: len(entry) - len(suffix)] if suffix else entry
    return name


def _order(entry: tuple[str, Path, str]) -> tuple[str, str]:
    folder, source, _ = entry
    return folder.casefold(), os.path.abspath(source)


def _candidates(folder: Path, name: str) -> Iterable[Path]:
    yield folder / name
    stem, suffix = os.path.splitext(name)
    n = 1
    while True:
        yield folder / f"{stem} ({n}){suffix}"
        n += 1


def _free_target(folder: Path, source: Path, taken: set[tuple[str, str]]) -> tuple[Path, bool]:
    """The first name in ``folder`` that is free, or already holds this very file."""
    for target in _candidates(folder, source.name):
        if (folder.name.casefold(), target.name.casefold()) in taken:
            continue
        if not os.path.lexists(target):
            return target, False
        if _same_content(source, target):
            return target, True
    raise AssertionError("unreachable")  # _candidates never ends


def _same_content(source: Path, target: Path) -> bool:
    try:
        if os.path.samefile(source, target):
            return True
        return target.is_file() and filecmp.cmp(source, target, shallow=False)
    except OSError:  # an unreadable source fails later, in apply, with its own message
        return False


# --- applying --------------------------------------------------------------------------------


def _apply_one(move: Move, moved: Mapping[str, Path]) -> MoveResult:
    source, target = move.source, move.target
    try:
        if move.mode == "move" and source.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            target = _still_free(target)
            song = os.path.realpath(source)
            return MoveResult(source, target, move.genre, "done", *_relink(source, target, moved.get(song, Path(song))))
        if not source.is_file():
            raise FileNotFoundError(errno.ENOENT, "source file not found" if not source.exists() else "not a regular file")
        target.parent.mkdir(parents=True, exist_ok=True)
        target = _still_free(target)
        if move.mode == "copy":
            _copy_into_place(source, target)
            method, detail = "copy", ""
        elif move.mode == "link":
            method, detail = _link(source, target)
        else:
            method, detail = _move(source, target)
    except Exception as exc:  # noqa: BLE001 - per-file errors are reported, never raised
        return MoveResult(source, target, move.genre, "failed", detail=_describe(exc))
    return MoveResult(source, target, move.genre, "done", method, detail)


def _still_free(target: Path) -> Path:
    """The planned target, or the next free suffix if something took the name since planning."""
    if not os.path.lexists(target):
        return target
    for candidate in _candidates(target.parent, target.name):
        if not os.path.lexists(candidate):
            return candidate
    raise AssertionError("unreachable")


def _copy_into_place(source: Path, target: Path) -> None:
    """Copy data, mode and times under a temporary name, flush, then rename: never half a file.

    Never overwrites: a file that took ``target``'s name meanwhile makes this fail (FileExistsError).
    """
    with atomic_path(target, overwrite=False, keep_mode=True) as tmp:
        shutil.copy2(source, tmp)  # the song's own mode and times, not the umask's


def _link(source: Path, target: Path) -> tuple[Method, str]:
    try:
        # To the song itself: a hard link to a symbolic link (os.link does not follow one on Linux)
        # would keep a relative target that dangles from the new folder.
        os.link(os.path.realpath(source), target)  # fails rather than overwrite
    except OSError as exc:
        if exc.errno not in _NO_HARDLINK:
            raise
        os.symlink(os.path.realpath(source), target)
        return "symlink", f"hard link impossible ({exc.strerror or exc}), made a symbolic link"
    return "hardlink", ""


def _relink(source: Path, target: Path, song: Path) -> tuple[Method, str]:
    """Move mode, a symbolic link: a link to the song itself (where this run may have moved it) at
    ``target``, then the old link goes. Renamed as it is, a relative link would dangle."""
    if not song.is_file():
        raise FileNotFoundError(errno.ENOENT, "the link leads to no file", str(source))
    os.symlink(song, target)  # fails rather than overwrite
    source.unlink()
    fsync_dir(target.parent)
    return "relinked", "a symbolic link: moved as a link to the same file"


def _move(source: Path, target: Path) -> tuple[Method, str]:
    try:
        _rename_no_replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_into_place(source, target)
        try:
            source.unlink()
        except OSError as unlink_exc:
            return "copy", f"copied, but the source could not be removed ({_describe(unlink_exc)})"
        return "copy+delete", "moved across filesystems: copied, then removed"
    fsync_dir(target.parent)
    return "rename", ""


def _rename_no_replace(source: Path, target: Path) -> None:
    if os.name == "nt":
        os.rename(source, target)  # Windows refuses to replace an existing file by itself
        return
    # POSIX rename replaces silently; re-check right before (the window is a few microseconds).
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "target already exists", str(target))
    os.replace(source, target)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


# --- playlists -------------------------------------------------------------------------------


def _playlist_target(out: Path, name: str, taken: set[str]) -> Path:
    """``name.m3u8`` where that is free or genrify's own playlist, else the first free (or
    genrify's) ``name (genrify).m3u8``, ``name (genrify 2).m3u8``, ...: never a person's file."""
    for n in itertools.count(1):
        suffix = "" if n == 1 else " (genrify)" if n == 2 else f" (genrify {n - 1})"
        path = out / f"{name}{suffix}.m3u8"
        if path.name.casefold() in taken:
            continue
        if not os.path.lexists(path) or is_genrify_playlist(path):
            return path
    raise AssertionError("unreachable")


def playlist_entry(source: str | Path, base: str) -> tuple[str | None, str]:
    """The playlist line for ``source``, relative to the playlist's folder ``base`` where it can
    be (a leading ``#`` escaped), or ``None`` and why it cannot be listed: a line break in its
    name, or a name that is not UTF-8."""
    absolute = os.path.abspath(source)
    if "\n" in absolute or "\r" in absolute:
        return None, "a line break in its name cannot be written in a playlist"
    try:
        absolute.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8 has no M3U8 spelling
        return None, "its name is not valid UTF-8, which an M3U8 playlist cannot hold"
    try:
        entry = os.path.relpath(absolute, base)
    except ValueError:  # Windows: another drive has no relative path
        return absolute, ""
    if entry.startswith("#"):  # would read as a comment line
        entry = os.path.join(os.curdir, entry)
    return entry, ""
