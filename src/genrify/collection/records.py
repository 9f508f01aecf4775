"""Songs kept as records in another program's database (beets items), not read from their files.

A program that keeps a library's genres in its own database subclasses :class:`RecordFields` with its
field access: where a record's file is, its genres, what genrify set on it before, its artist. Tagging
(:class:`~genrify.classify.tagging.RecordSink`) and learning (:func:`genrify.learn.learning.learn_records`,
:func:`genrify.learn.suggest.suggest_records`) need nothing else of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from genrify.collection.tagpolicy import MP4_PROVENANCE_KEY, PROVENANCE_FIELD, Provenance, human_genres, names_a_genre

#: Why a record whose path is a folder (its file replaced by one) is passed over: a folder is never
#: searched for the record's audio, which would be some other song's.
FOLDER = "a folder, not an audio file"

#: Album artists that name no one artist: a compilation's (``"Various Artists"``, beets' default
#: ``va_name``). Its songs are grouped by their own artist, not all as one.
VARIOUS_ARTISTS = frozenset({"various artists", "various artist", "various", "va", "v.a.", "v/a", "v. a.",
                             "multiple artists", "verschiedene interpreten", "artistes divers", "varios artistas"})


def grouping_artist(album_artist: str | None, artist: str | None) -> str:
    """The artist a song counts as for learning's artist groups: its album artist, unless that is
    a compilation's (:data:`VARIOUS_ARTISTS`), else its artist (``""``: none).

    Songs of one artist sound alike, so the cross-check keeps an artist's songs on one side; a
    compilation's songs are by many artists, and grouping them as one would hide a genre whose
    songs come mostly from compilations from every fold but one.
    """
    album_artist, artist = (album_artist or "").strip(), (artist or "").strip()
    if album_artist and album_artist.casefold() not in VARIOUS_ARTISTS:
        return album_artist
    return artist


class RecordFields:
    """How a database keeps a song: a subclass supplies :meth:`path_of`, :meth:`genres_of`,
    :meth:`provenance_of` and :meth:`artist_of`; the rest is the same for every database."""

    def path_of(self, record: Any) -> str:
        """The record's file, where it is now (absolute)."""
        raise NotImplementedError

    def genres_of(self, record: Any) -> list[str]:
        """The record's genres, whoever set them."""
        raise NotImplementedError

    def provenance_of(self, record: Any) -> Provenance | None:
        """What genrify set on the record before (``None``: nothing, every genre it has is a person's)."""
        raise NotImplementedError

    def artist_of(self, record: Any) -> str:
        """The record's artist for learning's groups: :func:`grouping_artist` of its album artist and
        artist (``""``: none)."""
        raise NotImplementedError

    def labels_of(self, record: Any) -> list[str]:
        """The genres a person set on the record: never genrify's, since a model must not learn its own guesses."""
        return list(human_genres(self.genres_of(record), self.provenance_of(record)))

    def has_genre(self, record: Any) -> bool:
        """Whether a person gave the record a genre: one of :meth:`labels_of` names one. Placeholders
        (``Other``, ``Unknown``, ``Other; Unknown``: :func:`~genrify.collection.tagpolicy.names_a_genre`)
        name none, so a record holding only those is without a genre, as tagging and learning see it."""
        return any(names_a_genre(value) for value in self.labels_of(record))

    def files(self, records: Iterable[Any], warn: Callable[[str], None]) -> dict[str, Any]:
        """Each record's file, with its first record (a database may list one file twice); a record whose
        file is missing, or whose path is a folder, is warned about and left out."""
        out: dict[str, Any] = {}
        for record in records:
            if os.path.isfile(path := self.path_of(record)):
                out.setdefault(path, record)
            else:
                warn(f"{path}: {FOLDER if os.path.isdir(path) else 'the file is missing'}, left out")
        return out


def provenance_media_field() -> Any:
    """genrify's record as a :class:`mediafile.MediaField`, stored where :mod:`genrify.collection.tags`
    stores it (``TXXX:GENRIFY``, Vorbis ``GENRIFY``, MP4 ``----:com.apple.iTunes:GENRIFY``): given to
    beets' ``add_media_field``, the files beets writes carry the record of the genres genrify set in
    its database, and the files it imports or updates bring theirs in. Needs mediafile (beets')."""
    from mediafile import MediaField, MP3DescStorageStyle, MP4StorageStyle, StorageStyle

    return MediaField(MP3DescStorageStyle(PROVENANCE_FIELD), MP4StorageStyle(MP4_PROVENANCE_KEY),
                      StorageStyle(PROVENANCE_FIELD))
