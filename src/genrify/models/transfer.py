"""``musicnn-transfer``: a small head on the pretrained musicnn tagger's embeddings.

The tagger (frozen, the packaged ``MSD_musicnn`` weights by default) turns each 3-second patch of
musicnn's log-mel input into its pooled mid-level features (the temporal mean and max of the
753 front- and mid-end maps, 1506 numbers); a standardisation and a linear layer (or one hidden
layer) map them to genres. Trained on embeddings computed once per track (:mod:`genrify.learn.embeddings`),
so a head on a thousand tracks trains in seconds on a CPU. The model file holds the tagger's
weights too, so it works like any other genrify model file.

Its registry entry says so: it reads audio at musicnn's own feature parameters, in patches of
musicnn's length, and trains with the embeddings trainer (its ``head`` on the embeddings of the
tagger named by ``embedding_source``).
"""

from __future__ import annotations

import torch
from torch import nn

from genrify.models import EMBEDDINGS, register
from genrify.models.taggers import MUSICNN_PARAMS, PATCH_FRAMES

EMBEDDING = ("mean_pool", "max_pool")
EMBEDDING_DIM = 1506
DEFAULT_TAGGER = "MSD_musicnn"


def tagger_embedding(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The embedding the head reads, from a :class:`~genrify.models.musicnn.MusiCNN`'s outputs."""
    return torch.cat([outputs[k] for k in EMBEDDING], dim=1)


class TransferHead(nn.Module):
    """Standardise an embedding, then a linear layer (``hidden=0``) or one hidden ReLU layer."""

    def __init__(self, dim: int, n_genres: int, hidden: int = 0, dropout: float = 0.3) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, hidden), nn.ReLU(inplace=True),
                                                nn.Dropout(dropout), nn.Linear(hidden, n_genres))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n_genres))

    @torch.no_grad()
    def set_statistics(self, embeddings: torch.Tensor) -> None:
        """Standardise with the per-dimension mean and spread of these (training) embeddings."""
        self.mean.copy_(embeddings.mean(0))
        self.std.copy_(embeddings.std(0).clamp(min=1e-3))  # a constant dimension must not divide by 0

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net((embedding - self.mean) / self.std)


@register("musicnn-transfer", params=MUSICNN_PARAMS, chunk_frames=PATCH_FRAMES, trainer=EMBEDDINGS)
class MusicnnTransfer(nn.Module):
    """Frozen pretrained tagger + trainable head: musicnn patches ``(batch, 96, 187)`` in, logits out.

    Parameters
    ----------
    n_mels
        Must be musicnn's 96 bands.
    n_genres
        Output classes.
    tagger
        ``MSD_musicnn`` or ``MTT_musicnn``.
    hidden
        Hidden units of the head; 0 for logistic regression.
    """

    def __init__(self, *, n_mels: int, n_genres: int, tagger: str = DEFAULT_TAGGER, hidden: int = 0) -> None:
        super().__init__()
        from genrify.errors import ParameterError
        from genrify.models.musicnn import load_tagger

        if n_mels != 96:
            raise ParameterError(f"musicnn-transfer takes musicnn's 96 mel bands, not {n_mels}")
        if not tagger.endswith("_musicnn"):
            raise ParameterError(f"musicnn-transfer needs a musicnn tagger (MSD_musicnn or MTT_musicnn), not {tagger!r}")
        #: the tagger whose cached embeddings the head trains on (:func:`genrify.learn.embeddings.ensure_embeddings`)
        self.embedding_source = tagger
        self.tagger = load_tagger(tagger).network.eval()
        for p in self.tagger.parameters():
            p.requires_grad_(False)
        self.head = TransferHead(EMBEDDING_DIM, n_genres, hidden)

    def train(self, mode: bool = True) -> MusicnnTransfer:
        super().train(mode)
        self.tagger.eval()  # frozen: its batch norm keeps the pretrained statistics
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The tagger's embedding of each patch, ``(batch, 1506)``."""
        return tagger_embedding(self.tagger(x.transpose(1, 2).float()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
