"""The example recordings the page offers as one-click samples (``GET /api/samples``).

Four short excerpts of real recordings under CC BY 3.0 or in the public domain travel with genrify
as package data (``genrify/examples/``, credited in its ``README.md``; the repository's
``examples`` folder links there, for ``genrify classify examples``). Only the names listed in
:data:`SAMPLES` are ever served, so a request cannot name any other file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the example recordings lie in the installed package.
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


@dataclass(frozen=True)
class Sample:
    """One example recording: its file and the credit its licence asks for.

    Attributes
    ----------
    file
        The file's name in :data:`EXAMPLES_DIR` (also the name the API serves it under).
    title, artist, licence
        Shown beside the sample (CC BY asks for the credit).
    """

    file: str
    title: str
    artist: str
    licence: str

    @property
    def path(self) -> Path:
        """Where the file lies."""
        return EXAMPLES_DIR / self.file

    def to_dict(self) -> dict[str, Any]:
        """What ``GET /api/samples`` says about the sample."""
        return {"name": self.file, "title": self.title, "artist": self.artist, "licence": self.licence,
                "url": f"/api/samples/{self.file}", "bytes": self.path.stat().st_size}


#: The samples, in the order the page shows them (credits as in ``examples/README.md``).
SAMPLES: tuple[Sample, ...] = (
    Sample("vibe-ace.ogg", "Vibe Ace", "Kevin MacLeod", "CC BY 3.0"),
    Sample("sugar-plum-fairy.ogg", "Sugar Plum Fairy", "Tchaikovsky, by Kevin MacLeod", "CC BY 3.0"),
    Sample("lets-go-fishin.ogg", "Let's Go Fishin'", "Karissa Hobbs", "CC BY 3.0"),
    Sample("hungarian-dance-5.ogg", "Hungarian Dance no. 5", "Brahms, by the US Army Strings", "Public Domain"),
)


def available_samples() -> list[Sample]:
    """The samples whose files are present (a trimmed install may leave them out)."""
    return [s for s in SAMPLES if s.path.is_file()]


def find_sample(name: str) -> Sample | None:
    """The sample of that exact file name, if it is listed and present; anything else is ``None``
    (the name is compared with the list, never used as a path)."""
    return next((s for s in available_samples() if s.file == name), None)
