"""Classify settings: the model, the segments, the tag policy, the workers and the results cache, checked once.

A front end (the CLI, the beets plugin) reads plain values from where it keeps them and hands them to
:meth:`ClassifySettings.from_values`, which fills every default and makes every check; a bad value is a
:class:`~genrify.errors.ParameterError` whose ``field`` names the setting, for the front end to say in its own words.

>>> settings = ClassifySettings.from_values(genres=["rock", "jazz"], count=2, jobs=4)   # doctest: +SKIP
>>> tag_files(paths, settings, FileSink)                                              # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrify.defaults import DEFAULT_MAX_SEGMENTS, MAX_DURATION
from genrify.errors import ParameterError

if TYPE_CHECKING:
    from genrify.classify.modelref import ModelRef
    from genrify.classify.results import ResultCache
    from genrify.classify.service import ClassifyOptions
    from genrify.collection.tagpolicy import TagPolicy

__all__ = ["ClassifySettings"]


@dataclass(frozen=True)
class ClassifySettings:
    """What a classify-and-tag run needs besides its files.

    Attributes
    ----------
    ref
        The model (not loaded).
    options
        Which segments of each song.
    policy
        How answers become genres.
    jobs
        Worker processes (``None``: every core).
    cache
        The results cache's file (``None``: no cache).
    """

    ref: ModelRef
    options: ClassifyOptions
    policy: TagPolicy
    jobs: int | None = None
    cache: Path | None = None

    @classmethod
    def from_values(cls, *, model: str | Path | None = None, genres: Sequence[str] = (),
                    max_segments: int | None = DEFAULT_MAX_SEGMENTS, hop_seconds: float | None = None,
                    max_duration: float | None = MAX_DURATION, jobs: int | None = None,
                    cache: bool | str | Path | None = True, genre_map: str | Path | None = None,
                    **policy: Any) -> ClassifySettings:
        """Build and check the settings from plain values; the model comes last (the built-in one imports torch).

        Parameters
        ----------
        model
            A model file, or ``None`` for the built-in model.
        genres
            The built-in model's genres to choose among (empty: every genre; not with ``model``).
        max_segments, hop_seconds, max_duration
            As for :class:`~genrify.classify.service.ClassifyOptions`.
        jobs
            At least 1, or ``None``.
        cache
            ``True`` or ``None``: the default results cache; ``False``: none; else its file.
        genre_map
            A genre map file, or ``None`` for the shipped map.
        **policy
            :class:`~genrify.collection.tagpolicy.TagPolicy` fields.

        Raises
        ------
        ParameterError
            A bad value, ``field`` naming it.
        GenrifyError
            The genre map or the model file cannot be used.
        """
        from genrify.classify.modelref import BuiltinModel, ModelRef
        from genrify.classify.results import default_cache_path
        from genrify.classify.service import ClassifyOptions
        from genrify.collection.genremap import GenreMap
        from genrify.collection.tagpolicy import TagPolicy

        if jobs is not None and jobs < 1:
            raise ParameterError(f"jobs must be at least 1, not {jobs}", field="jobs",
                                 problem=f"must be at least 1, not {jobs}")
        if not isinstance(cache, (bool, str, Path, type(None))):
            raise ParameterError(f"cache must be yes, no or a file, not {cache!r}", field="cache")
        cache_path = default_cache_path() if cache is True or cache is None else Path(cache) if cache else None
        options = ClassifyOptions(hop_seconds=hop_seconds, max_segments=max_segments, max_duration=max_duration)
        policy_ = TagPolicy(**policy, genre_map=GenreMap.load(genre_map) if genre_map else GenreMap.default())
        if model and genres:
            said = "is for the built-in model's genres: a model file answers with its own"
            raise ParameterError(f"genres {said}", field="genres", problem=said)
        # Every genre: BuiltinModel(), which imports nothing; a model file or chosen genres are checked now.
        try:
            ref = ModelRef.file(model) if model else ModelRef.builtin(list(genres)) if genres else BuiltinModel()
        except ParameterError as exc:  # a genre it does not know, or one asked for twice
            raise ParameterError(str(exc), field="genres") from None
        if model:
            ref.check()
        return cls(ref=ref, options=options, policy=policy_, jobs=jobs, cache=cache_path)

    @classmethod
    def defaults(cls, policy: Iterable[str] = ()) -> dict[str, Any]:
        """The plain values' defaults by :meth:`from_values`' names (``genres`` a list), then the named
        :class:`~genrify.collection.tagpolicy.TagPolicy` fields' own: a front end's configuration defaults."""
        from genrify.collection.tagpolicy import TagPolicy

        params = inspect.signature(cls.from_values).parameters.values()
        values = {p.name: list(p.default) if p.name == "genres" else p.default
                  for p in params if p.default is not p.empty}
        return {**values, **{f.name: f.default for f in fields(TagPolicy) if f.name in set(policy)}}

    def open_cache(self, notify: Callable[[str], None] | None = None) -> ResultCache | None:
        """The results cache for this model and these segments (:func:`genrify.classify.service.open_cache`),
        or ``None`` without one; the caller closes it."""
        from genrify.classify.service import open_cache

        return open_cache(self.cache, self.ref, self.options, notify=notify) if self.cache is not None else None

    @property
    def model_file(self) -> str | None:
        """The model file, or ``None`` for the built-in model."""
        from genrify.classify.modelref import ModelFile

        return self.ref.path if isinstance(self.ref, ModelFile) else None
