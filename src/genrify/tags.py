"""Read the tags genrify needs from audio files (mutagen).

Only reading for now: the artist, which lets splits keep one artist's songs on one side.
"""

from __future__ import annotations

from pathlib import Path


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
