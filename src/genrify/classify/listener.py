"""What a library run tells as it goes: the hooks a listener overrides.

Kept apart from :mod:`genrify.classify.service` so that a listener (the tag listener, the beets
plugin's sink) can be defined without loading the service and numpy: ``import beetsplug.genrify``
runs on every ``beet`` command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genrify.classify.service import LibraryRun, Result
    from genrify.collection.library import AudioSearch

__all__ = ["Listener"]


class Listener:
    """Hears of a library run as it goes (beets' plugin events are the model); override what you need.

    Every hook runs in the calling thread; an exception in one ends the run.
    """

    def on_start(self, found: AudioSearch) -> None:
        """The audio was found; ``len(found.files)`` results follow."""

    def on_result(self, result: Result, cached: bool) -> None:
        """One file's result, as it arrives; ``cached`` where it came from the results cache."""

    def on_finish(self, run: LibraryRun) -> None:
        """The run is over (not called when it ends by an exception)."""
