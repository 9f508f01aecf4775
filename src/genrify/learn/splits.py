"""Train/validation/test splits by song, and by artist where artists are known.

Chunks of one song never land in two splits (the seed's predecessor cut songs into chunks first and
split the chunks, which put near-copies of test material into training and inflated accuracy by
10-15 points). Where artists are known, all songs of an artist stay in one split too, so a model is
judged on artists it has not heard. Splits are stratified by genre and seeded.

Fixed splits come from split files: lines ``genre/name.ext`` (one file per split: ``train_*.txt``,
``valid_*.txt``, ``test_*.txt``, as the GTZAN fault-filtered lists are given) or ``path<TAB>split``
in one file. They are matched to store tracks by file name stem, and by genre too where stems repeat.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from genrify.audio.decode import AUDIO_EXTENSIONS
from genrify.errors import SplitError
from genrify.learn.config import check_split_fractions
from genrify.store.store import StoredTrack

SPLITS = ("train", "valid", "test")
GroupBy = Literal["auto", "artist", "song"]


@dataclass(frozen=True)
class Split:
    """Track paths of each split, and how the split was made."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]
    method: str  #: "song", "artist" or "file:<path>"
    seed: int | None = None
    #: split-file entries that matched no track of the store
    unmatched: tuple[str, ...] = field(default=(), compare=False)
    #: split by artist: songs without an artist tag, each a group of its own
    alone: int = field(default=0, compare=False)

    def __getitem__(self, name: str) -> tuple[str, ...]:
        if name not in SPLITS:
            raise KeyError(name)
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        """Number of tracks in each split."""
        return {name: len(self[name]) for name in SPLITS}


def check_tracks(tracks: Sequence[StoredTrack], store_name: str = "the store") -> list[str]:
    """Validate that tracks can be split and trained on; returns the sorted genre list.

    Raises
    ------
    SplitError
        No tracks, or fewer than two genres.
    """
    if not tracks:
        raise SplitError(f"{store_name} holds no extracted tracks (run `genrify extract` first)")
    genres = sorted({t.genre for t in tracks})
    if len(genres) < 2:
        raise SplitError(f"{store_name} holds a single genre ({genres[0]}); a classifier needs at least two")
    return genres


def song_keys(tracks: Sequence[StoredTrack]) -> dict[str, str]:
    """Each track's key, by which a model records its test songs: its path from the tracks' common
    folder (``MUSIC_DIR`` where the store holds two genres or more), with ``/`` between folders:
    ``rock/Queen/News of the World/01.mp3``. The same in a copy of the library elsewhere, and never
    the same for two tracks, where ``genre/file name`` repeats in ``Artist/Album/01.mp3`` layouts."""
    paths = [t.path for t in tracks]
    if not paths:
        return {}
    root = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
    if root in paths:  # one track: its own folder
        root = os.path.dirname(root)
    return {p: Path(os.path.relpath(p, root)).as_posix() for p in paths}


def make_split(
    tracks: Sequence[StoredTrack],
    *,
    valid: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    group_by: GroupBy = "auto",
) -> Split:
    """Split tracks into train, validation and test sets, stratified by genre.

    Parameters
    ----------
    tracks
        Done tracks of a store.
    valid, test
        Fractions of each genre's songs (or artists) in the validation and test sets.
    seed
        Random seed; the same seed and tracks give the same split.
    group_by
        ``"artist"``: songs of one artist stay together (songs with no artist tag are their own
        group, counted in :attr:`Split.alone`); ``"song"``: every song on its own; ``"auto"``: by
        artist when any track has one.

    Raises
    ------
    SplitError
        A genre has too few songs (artists) to give each split at least one; ``"artist"`` where no
        track has an artist tag (the split could keep no artist apart).
    ParameterError
        Fractions out of range (:func:`genrify.learn.config.check_split_fractions`).
    """
    check_split_fractions(valid, test)
    check_tracks(tracks)
    if group_by == "artist" and not any(t.artist for t in tracks):
        raise SplitError(f"--group-by artist: none of the {len(tracks)} songs has an artist tag (album artist or "
                         "artist), so no artist can be kept apart; tag the artists and extract again, or "
                         "--group-by song")
    by_artist = group_by == "artist" or (group_by == "auto" and any(t.artist for t in tracks))
    groups: dict[str, list[StoredTrack]] = defaultdict(list)
    for t in tracks:
        key = f"artist:{t.artist.casefold()}" if by_artist and t.artist else f"song:{t.path}"
        groups[key].append(t)
    # A group belongs to its most common genre; stratifying groups keeps every genre in every split.
    by_genre: dict[str, list[str]] = defaultdict(list)
    for key in sorted(groups):
        genre = Counter(t.genre for t in groups[key]).most_common(1)[0][0]
        by_genre[genre].append(key)
    unit = "artists" if by_artist else "songs"
    too_few = {g: len(keys) for g, keys in sorted(by_genre.items()) if len(keys) < 3}
    if too_few:
        counts = ", ".join(f"{g} {len(k)}" for g, k in sorted(by_genre.items()))
        short = ", ".join(f"{g} {n}" for g, n in too_few.items())
        raise SplitError(
            f"cannot split: each genre needs at least 3 {unit} (one each for train, validation and test); "
            f"too few in {short} ({unit} per genre: {counts})"
        )
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[str]] = {name: [] for name in SPLITS}
    for genre in sorted(by_genre):
        keys = list(by_genre[genre])
        rng.shuffle(keys)
        n = len(keys)
        n_test = min(n - 2, max(1, round(n * test)))
        n_valid = min(n - n_test - 1, max(1, round(n * valid)))
        parts = {"test": keys[:n_test], "valid": keys[n_test : n_test + n_valid], "train": keys[n_test + n_valid :]}
        for name, part in parts.items():
            chosen[name].extend(t.path for key in part for t in groups[key])
    return Split(
        train=tuple(sorted(chosen["train"])),
        valid=tuple(sorted(chosen["valid"])),
        test=tuple(sorted(chosen["test"])),
        method="artist" if by_artist else "song",
        seed=seed,
        alone=sum(not t.artist for t in tracks) if by_artist else 0,
    )


def read_split_file(path: str | Path) -> dict[str, list[str]]:
    """Read fixed split lists: ``{split: [entry, ...]}``.

    ``path`` may be

    - a folder with ``train_*.txt``, ``valid_*.txt`` and ``test_*.txt`` (where several variants
      lie side by side, such as GTZAN's ``_filtered`` and ``_stratified``, ``filtered`` is used);
    - one of those files: its siblings of the same variant are read with it;
    - one file of ``path<TAB>split`` lines.

    Raises
    ------
    SplitError
        Missing files, or lines that cannot be understood.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise SplitError(f"{path}: split file not found")
    if path.is_dir():
        variants = sorted({p.name[len("train_") : -len(".txt")] for p in path.glob("train_*.txt")})
        if not variants:
            raise SplitError(f"{path}: no train_*.txt split list in this folder")
        variant = "filtered" if "filtered" in variants else variants[0]
        if len(variants) > 1 and variant != "filtered":
            raise SplitError(f"{path}: several split variants ({', '.join(variants)}); name one file, e.g. {path}/train_{variants[0]}.txt")
        return _read_variant(path, variant)
    for name in SPLITS:
        prefix = f"{name}_"
        if path.name.startswith(prefix) and path.suffix == ".txt":
            return _read_variant(path.parent, path.name[len(prefix) : -len(".txt")])
    return _read_tabbed(path)


def _read_variant(folder: Path, variant: str) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for name in SPLITS:
        file = folder / f"{name}_{variant}.txt"
        if not file.is_file():
            raise SplitError(f"{file}: missing (a split needs train_, valid_ and test_{variant}.txt)")
        lists[name] = [line.strip() for line in file.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return lists


def _read_tabbed(file: Path) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {name: [] for name in SPLITS}
    aliases = {"train": "train", "training": "train", "valid": "valid", "validation": "valid", "val": "valid", "test": "test"}
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        entry, sep, split = line.rpartition("\t")
        if not sep or split.strip().lower() not in aliases:
            raise SplitError(f"{file}:{number}: expected 'path<TAB>train|valid|test', got {line!r}")
        lists[aliases[split.strip().lower()]].append(entry.strip())
    return lists


def split_from_file(tracks: Sequence[StoredTrack], path: str | Path) -> Split:
    """Assign store tracks to splits from a split file (see :func:`read_split_file`).

    Entries are matched by file name stem (``blues.00029`` for ``blues/blues.00029.wav``), and by
    genre folder as well where a stem occurs in several genres. Entries that match no track are
    counted in ``Split.unmatched``; tracks named by no entry are left out.

    Raises
    ------
    SplitError
        The file cannot be read, or a split ends up with no track.
    """
    lists = read_split_file(path)
    by_stem: dict[str, list[StoredTrack]] = defaultdict(list)
    for t in tracks:
        by_stem[_stem(t.path)].append(t)
    chosen: dict[str, list[str]] = {name: [] for name in SPLITS}
    unmatched: list[str] = []
    seen: set[str] = set()
    for name in SPLITS:
        for entry in lists[name]:
            candidates = by_stem.get(_stem(entry), [])
            if len(candidates) > 1:
                genre = Path(entry).parent.name
                candidates = [t for t in candidates if t.genre == genre] or candidates[:1]
            if not candidates:
                unmatched.append(entry)
                continue
            track = candidates[0]
            if track.path in seen:
                raise SplitError(f"{path}: {entry} is listed twice (a track may be in one split only)")
            seen.add(track.path)
            chosen[name].append(track.path)
    empty = [name for name in SPLITS if not chosen[name]]
    if empty:
        raise SplitError(
            f"{path}: no track of the store matches the {', '.join(empty)} list "
            f"({len(unmatched)} of {sum(len(v) for v in lists.values())} entries matched nothing)"
        )
    return Split(
        train=tuple(sorted(chosen["train"])),
        valid=tuple(sorted(chosen["valid"])),
        test=tuple(sorted(chosen["test"])),
        method=f"file:{Path(path).name}",
        unmatched=tuple(unmatched),
    )


def _stem(path: str) -> str:
    """``blues.00029`` for ``blues/blues.00029.wav``; a name without an audio extension is kept whole."""
    name = os.path.basename(path.replace("\\", "/"))
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in AUDIO_EXTENSIONS else name
