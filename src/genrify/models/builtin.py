"""The built-in genre model: genre answers out of the box from the pretrained musicnn taggers.

``MSD_musicnn`` (Million Song Dataset, tags from Last.fm listeners) and ``MTT_musicnn``
(MagnaTagATune, tags from a listening game) each give 50 tag probabilities per 3-second patch. Some
tags are genres, named differently in each vocabulary; :data:`GENRE_TAGS` merges them into one
vocabulary of 15 genres. For every patch, each tagger scores a genre by the largest probability
among its tags for that genre; the genre's score is the mean over the taggers that know it, and the
scores are normalised to sum to 1. The song's answer is the mean over its patches, as for any
genrify model.

Why this combination: on the 19 real clips of ``../shared/data/real/genre-samples`` whose genre
falls in the vocabulary, the naive map (a genre scored by the largest time-averaged probability of
any of its tags, either tagger) puts an acceptable genre first for 14 and among the top three for
16; averaging the two taggers instead of taking the larger does so for 15 and 17, because a genre
both taggers agree on beats one tag that a single tagger over-uses (MTT's "electronic" for anything
synthetic). Dividing tags by their base rates, adding the vgg taggers, or summing tags (noisy-or)
did worse (``benchmarks/genre_map.py`` repeats the measurement). Far too few clips for a precise
figure; they are what we have that is real.

Several taggers' genres have no tag in either vocabulary (reggae, latin, ...): asking for one is an
error that lists what is available. A few common names are aliases (``hiphop`` for ``hip-hop``,
``disco`` for ``dance``, as GTZAN names them), shown under the name the user asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from genrify.errors import ParameterError
from genrify.features import FeatureParams

#: Each genre's tags in each tagger's vocabulary.
GENRE_TAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "rock": {"MSD_musicnn": ("rock", "alternative", "alternative rock", "indie rock", "classic rock", "hard rock",
                             "Progressive rock"), "MTT_musicnn": ("rock",)},
    "pop": {"MSD_musicnn": ("pop", "indie pop"), "MTT_musicnn": ("pop",)},
    "electronic": {"MSD_musicnn": ("electronic", "electronica", "electro"), "MTT_musicnn": ("electronic", "techno", "synth")},
    "dance": {"MSD_musicnn": ("dance", "House"), "MTT_musicnn": ("dance", "techno")},
    "hip-hop": {"MSD_musicnn": ("Hip-Hop",)},
    "jazz": {"MSD_musicnn": ("jazz",)},
    "blues": {"MSD_musicnn": ("blues",)},
    "classical": {"MTT_musicnn": ("classical", "classic", "strings", "violin", "cello", "harpsichord", "opera", "choral")},
    "country": {"MSD_musicnn": ("country",), "MTT_musicnn": ("country",)},
    "folk": {"MSD_musicnn": ("folk",)},
    "metal": {"MSD_musicnn": ("metal", "heavy metal"), "MTT_musicnn": ("metal",)},
    "punk": {"MSD_musicnn": ("punk",)},
    "soul/rnb": {"MSD_musicnn": ("soul", "rnb")},
    "funk": {"MSD_musicnn": ("funk",)},
    "ambient": {"MSD_musicnn": ("ambient", "chillout"), "MTT_musicnn": ("ambient", "new age")},
}
#: The vocabulary, in output order.
GENRES: tuple[str, ...] = tuple(GENRE_TAGS)
#: Other names people use for the same genres.
ALIASES: dict[str, str] = {
    "hiphop": "hip-hop", "hip hop": "hip-hop", "rap": "hip-hop", "soul": "soul/rnb", "rnb": "soul/rnb",
    "r&b": "soul/rnb", "disco": "dance", "edm": "dance", "house": "dance", "techno": "electronic",
    "electronica": "electronic", "heavy metal": "metal", "new age": "ambient",
}
#: The taggers the model runs.
TAGGER_NAMES = ("MSD_musicnn", "MTT_musicnn")
NAME = "genrify-musicnn"


def resolve_genres(names: Sequence[str] | None) -> list[tuple[str, str]]:
    """``(shown name, vocabulary genre)`` for each name asked for (all genres for ``None``).

    Raises
    ------
    ParameterError
        A name that is neither a genre nor an alias, or the same genre twice.
    """
    if names is None:
        return [(g, g) for g in GENRES]
    out: list[tuple[str, str]] = []
    for raw in names:
        name = raw.strip()
        key = name.lower()
        genre = key if key in GENRE_TAGS else ALIASES.get(key)
        if genre is None:
            raise ParameterError(
                f"the built-in model knows no genre {name!r}; it knows {', '.join(GENRES)}"
                f" (and {', '.join(sorted(ALIASES))} as other names)"
            )
        if genre in {g for _, g in out}:
            raise ParameterError(f"genre {name!r} is asked for twice (as {genre})")
        out.append((name, genre))
    if not out:
        raise ParameterError("no genres asked for")
    return out


class TagGenreNetwork(nn.Module):
    """Two pretrained taggers and the tag-to-genre combination: musicnn patches in, genre logits out.

    Takes ``(batch, 96, 187)`` (bands, frames) as genrify's prediction cuts segments, and returns
    the log of each genre's normalised score, so that a softmax gives the scores back.
    """

    def __init__(self, taggers: dict[str, nn.Module], tags: dict[str, list[str]], genres: Sequence[str]) -> None:
        super().__init__()
        self.taggers = nn.ModuleDict(taggers)
        self.genres = list(genres)
        for name in taggers:
            index = {t: i for i, t in enumerate(tags[name])}
            # (genres, tags) mask: which of this tagger's tags count for each genre
            mask = torch.zeros(len(genres), len(index), dtype=torch.bool)
            for j, genre in enumerate(genres):
                for tag in GENRE_TAGS[genre].get(name, ()):
                    mask[j, index[tag]] = True
            self.register_buffer(f"mask_{name}", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = x.transpose(1, 2).float()  # (batch, frames, bands), the taggers' layout
        total = torch.zeros(x.shape[0], len(self.genres), device=x.device)
        count = torch.zeros(len(self.genres), device=x.device)
        for name, tagger in self.taggers.items():
            mask = getattr(self, f"mask_{name}")
            probs = tagger(patches)["taggram"]  # (batch, tags)
            # largest probability among each genre's tags; genres without tags here get 0
            per_genre = torch.where(mask.unsqueeze(0), probs.unsqueeze(1), torch.zeros((), device=x.device)).amax(dim=2)
            total += per_genre
            count += mask.any(dim=1)
        scores = total / count.clamp(min=1)
        scores = scores / scores.sum(dim=1, keepdim=True).clamp(min=1e-12)
        return torch.log(scores.clamp(min=1e-12))


@dataclass
class BuiltinGenreModel:
    """The built-in model, usable wherever a trained genre model is (a ``predict.Classifier``)."""

    network: nn.Module
    genres: list[str]
    params: FeatureParams
    chunk_frames: int
    name: str = NAME
    info: dict[str, Any] = field(default_factory=dict)
    #: Scores spread over 15 genres: music the taggers know scores 0.3 and more for its top genre,
    #: speech and animal sounds less (measured on the clips of ../shared/data/real).
    confidence_threshold: float = 0.3


def load_builtin(genres: Sequence[str] | None = None) -> BuiltinGenreModel:
    """The built-in genre model, over all of :data:`GENRES` or the ones asked for.

    Parameters
    ----------
    genres
        Restrict the answer to these genres (or aliases); the probabilities are renormalised over
        them.

    Raises
    ------
    ParameterError
        An unknown genre.
    ModelFileError
        The packaged tagger weights are missing (the message says how to restore them).
    """
    from genrify.models.musicnn import MUSICNN_PARAMS, PATCH_FRAMES, load_tagger

    chosen = resolve_genres(genres)
    taggers = {name: load_tagger(name) for name in TAGGER_NAMES}
    network = TagGenreNetwork(
        {n: t.network for n, t in taggers.items()}, {n: t.tags for n, t in taggers.items()}, [g for _, g in chosen]
    ).eval()
    return BuiltinGenreModel(
        network=network,
        genres=[shown for shown, _ in chosen],
        params=MUSICNN_PARAMS,
        chunk_frames=PATCH_FRAMES,
        info={
            "description": "genres from the pretrained musicnn taggers (MSD_musicnn and MTT_musicnn), no training needed",
            "taggers": list(TAGGER_NAMES),
            "genre_tags": {g: GENRE_TAGS[g] for _, g in chosen},
            "licence": "musicnn weights: ISC, Jordi Pons and Xavier Serra (see NOTICE)",
        },
    )
