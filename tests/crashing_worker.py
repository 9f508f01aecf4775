"""A stand-in for the extraction task whose 'decoder' kills its process on files named crash*.

Lives in its own module so that pool workers can import it by name.
"""

from __future__ import annotations

import os

from genrify.extract import TrackResult, extract_tracks


def crash_on_some(tracks, store_dir, params):
    for track in tracks:
        if os.path.basename(track.path).startswith("crash"):
            os._exit(11)  # what a segfaulting decoder looks like from the parent
    return extract_tracks(tracks, store_dir, params)


__all__ = ["TrackResult", "crash_features_on_some", "crash_on_some"]


def crash_features_on_some(paths, plan):
    from genrify.predict import _features_task

    for path in paths:
        if os.path.basename(path).startswith("crash"):
            os._exit(11)
    return _features_task(paths, plan)
