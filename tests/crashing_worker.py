"""Stand-ins for per-file processors whose 'decoder' kills its process on files named crash*.

Lives in its own module so that pool workers can import it by name.
"""

from __future__ import annotations

import dataclasses
import os

from genrify.classify.predict import SEGMENTER
from genrify.core.runner import Processor
from genrify.store.extract import EXTRACTOR, TrackResult, extract_track


def _crash_if_named(path: str) -> None:
    if os.path.basename(path).startswith("crash"):
        os._exit(11)  # what a segfaulting decoder looks like from the parent


def crash_on_some(track, store_dir, params) -> TrackResult:
    _crash_if_named(track.path)
    return extract_track(track, store_dir, params)


def crash_features_on_some(path, plan):
    _crash_if_named(path)
    return SEGMENTER.process(path, plan)


#: :data:`genrify.store.extract.EXTRACTOR`, crashing on crash* files.
CRASHING_EXTRACTOR = dataclasses.replace(EXTRACTOR, process=crash_on_some)
#: :data:`genrify.classify.predict.SEGMENTER`, crashing on crash* files.
CRASHING_SEGMENTER = dataclasses.replace(SEGMENTER, process=crash_features_on_some)

__all__ = ["CRASHING_EXTRACTOR", "CRASHING_SEGMENTER", "DOUBLER", "crash_features_on_some", "crash_on_some"]


def double(n: int, crash_on: int | None = None) -> int:
    """A toy per-item task: ``2 * n``; raises for a negative ``n``, kills its process at ``crash_on``."""
    if n == crash_on:
        os._exit(11)
    if n < 0:
        raise ValueError(f"negative {n}")
    return 2 * n


def number_failed(n: int, reason: str) -> tuple[str, int, str]:
    return ("failed", n, reason)


#: :func:`double` with its failure records, for the runners' own tests.
DOUBLER = Processor(double, number_failed)


def refuse_setup(*_args: object) -> None:
    """A setup that cannot load its model, as a damaged model file in a worker."""
    from genrify.errors import ModelFileError

    raise ModelFileError("/models/broken.safetensors: the model's ONNX graph does not run")


#: :data:`DOUBLER` whose workers cannot set up.
UNSETTABLE = Processor(double, number_failed, setup=refuse_setup)
