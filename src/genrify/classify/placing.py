"""Placing classified files: one folder per genre, one playlist per genre.

:func:`organize_results` and :func:`playlist_results` consume a library run's answers
(:func:`genrify.classify.service.classify_library`) through :mod:`genrify.collection.organize`; each
returns its report with a summary line. :func:`confident` picks the answers sure enough to place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from genrify.classify.predict import Failure, Prediction
from genrify.collection.library import display_path

if TYPE_CHECKING:
    from genrify.collection.organize import MoveResult

__all__ = ["OrganizeReport", "PlaylistReport", "confident", "organize_results", "playlist_results"]


def confident(results: Sequence[Prediction | Failure], min_confidence: float = 0.0) -> list[Prediction]:
    """The answers whose top probability is at least ``min_confidence``, of music
    (:attr:`~genrify.classify.predict.Prediction.not_music` unset) and not of another genre than
    those asked for (:attr:`~genrify.classify.predict.Prediction.other_genre`): what may be sorted
    and listed. A podcast or a silent track has no genre folder to go to."""
    return [r for r in results if isinstance(r, Prediction) and r.confidence >= min_confidence
            and r.not_music is None and not r.other_genre]


@dataclass
class OrganizeReport:
    """What :func:`organize_results` did: every move, and where each file now is."""

    moves: list[MoveResult]
    dest: Path
    dry_run: bool = False

    @property
    def placed(self) -> dict[str, str]:
        """Source path -> the file in the destination, for files placed there (now or earlier)."""
        return {str(m.source): str(m.target) for m in self.moves if m.status in ("done", "skipped")}

    @property
    def line(self) -> str:
        """E.g. ``"placed 18 files in sorted (0 failed)"``."""
        failed = sum(not m.ok for m in self.moves)
        there = sum(m.status == "skipped" for m in self.moves)
        already = f"{there} already there, " if there else ""
        if self.dry_run:
            n = sum(m.status == "planned" for m in self.moves)
            return f"would place {n} file{'s' if n != 1 else ''} in {display_path(self.dest)} ({already}{failed} failed)"
        linked = sum(m.method == "symlink" for m in self.moves)
        symbolic = f"; {linked} as symbolic links, a hard link being impossible" if linked else ""
        n = sum(m.status == "done" for m in self.moves)
        return (f"placed {n} file{'s' if n != 1 else ''} in {display_path(self.dest)} "
                f"({already}{failed} failed{symbolic})")


def organize_results(predictions: Sequence[Prediction], dest: str | Path, *, mode: str = "copy",
                     sources: Sequence[str | Path] = (), dry_run: bool = False) -> OrganizeReport:
    """Put each file into ``dest/<genre>/`` (:func:`genrify.collection.organize.organize`, never overwriting).

    Parameters
    ----------
    predictions
        The answers (see :func:`confident`).
    dest
        The destination folder.
    mode
        copy, link or move.
    sources
        The folders the files were found in: their layout below is kept.
    dry_run
        Change nothing; plan only.
    """
    from genrify.collection.organize import organize

    moves = organize({r.path: r.genre for r in predictions}, dest, mode=mode,  # type: ignore[arg-type, misc]
                     sources=sources, dry_run=dry_run)
    return OrganizeReport(moves, Path(dest), dry_run)


@dataclass
class PlaylistReport:
    """What :func:`playlist_results` wrote (or would write).

    ``left_out``, ``sidestepped`` and ``failed`` are :class:`genrify.collection.organize.PlaylistResult`'s:
    files that could not be listed, a person's playlists that genrify's went beside, and playlists
    that could not be written.
    """

    playlists: list[Path]
    folder: Path
    dry_run: bool = False
    left_out: list[tuple[Path, str]] = field(default_factory=list)
    sidestepped: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def line(self) -> str:
        """E.g. ``"4 playlists in lists"``, ``"4 playlists in lists (2 files left out of them)"``."""
        return self.summary()

    def summary(self, *, left_out_hint: str = "") -> str:
        """:attr:`line`, with ``left_out_hint`` (e.g. ``"; -v lists them"``) after the count of
        files left out, where there are any."""
        n = len(self.playlists)
        head = f"{'would write ' if self.dry_run else ''}{n} playlist{'s' if n != 1 else ''} in {display_path(self.folder)}"
        notes = []
        if self.left_out:
            count = len(self.left_out)
            notes.append(f"{count} file{'s' if count != 1 else ''} left out of them{left_out_hint}")
        if self.sidestepped:
            notes.append(f"{len(self.sidestepped)} beside a playlist genrify did not write")
        if self.failed:
            notes.append(f"{len(self.failed)} not written")
        return head + (f" ({'; '.join(notes)})" if notes else "")


def playlist_results(predictions: Sequence[Prediction], folder: str | Path, *,
                     placed: Mapping[str, str] | None = None, dry_run: bool = False) -> PlaylistReport:
    """Write one ``<genre>.m3u8`` per genre into ``folder`` (:func:`genrify.collection.organize.write_playlists`).

    Parameters
    ----------
    predictions
        The answers (see :func:`confident`).
    folder
        Where the playlists go.
    placed
        Where organising put each file (:attr:`OrganizeReport.placed`): the playlists list those.
    dry_run
        Write nothing; name the playlists that would be written (and the files left out).

    Raises
    ------
    OrganizeError
        A playlist would replace something that is not a playlist (see
        :func:`genrify.collection.organize.check_playlists`).
    """
    from genrify.collection.organize import write_playlists

    folder = Path(folder)
    where = placed or {}
    done = write_playlists({where.get(r.path, r.path): r.genre for r in predictions}, folder,  # type: ignore[misc]
                           durations={where.get(r.path, r.path): r.duration for r in predictions},  # type: ignore[misc]
                           dry_run=dry_run)
    return PlaylistReport(done.written, folder, dry_run, done.left_out, done.sidestepped, done.failed)
