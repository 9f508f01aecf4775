"""The pretrained musicnn taggers (Pons & Serra, 2019), ported from TensorFlow to PyTorch.

musicnn (https://github.com/jordipons/musicnn, ISC licence, see ``NOTICE``) ships four taggers that
give 50 tag probabilities for every 3-second patch of a song: ``MTT_musicnn`` and ``MTT_vgg``
(trained on MagnaTagATune), ``MSD_musicnn`` and ``MSD_vgg`` (trained on the Million Song Dataset).
Their weights ship with genrify in ``genrify/models/pretrained/<name>.safetensors`` (made by
``scripts/convert_musicnn.py`` from the original checkpoints, through the TensorFlow-to-PyTorch
weight port in ``scripts/musicnn_port.py``); the tag names, the architecture and
the preprocessing travel in each file's metadata, and loading never runs code from the file.

The port reproduces musicnn 0.1.0's ``extractor`` (its preprocessing with librosa 0.10 defaults, and
both architectures in inference mode). Given the original's input batch, the taggram agrees with
the original's to 4e-6 and the embeddings to 6e-5, except ``max_pool``, where the original's own
float32 rounding is up to 8e-4 from the exact value (1e-4 of the feature's magnitude); from the
audio file, through :func:`genrify.audio.decode.load` and :func:`preprocess`, the taggram agrees to 1.3e-5
(``tests/test_musicnn.py`` checks every reference clip of every model). The details that matter, all
from the original and easy to get wrong, are commented where they happen: batch norm *after* the
ReLU with epsilon 1e-3, TensorFlow's SAME padding with the extra row at the end, zero padding in the
normalised domain, the interleaved max/mean pooling, and the time-major flatten of vgg's last pool.

    >>> from genrify.models.musicnn import load_tagger
    >>> from genrify.classify.musicnn_tags import tag_file
    >>> tagger = load_tagger("MSD_musicnn")
    >>> result = tag_file(tagger, "song.mp3")          # doctest: +SKIP
    >>> result.top(3)                                  # doctest: +SKIP
    [('rock', 0.61), ('alternative', 0.25), ('indie', 0.21)]

These networks are not in the trainable registry of :mod:`genrify.models`: they take musicnn's
input, not genrify's, and keep the original's weights. This module holds the networks, their
weights and their input from a waveform or from patches; :mod:`genrify.classify.musicnn_tags`
reads audio files for them (``preprocess_file``, ``tag_file``, ``tag_song``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrify.audio.features import FeatureParams
from genrify.errors import ModelFileError, ParameterError

# What needs no torch (the constants, the preprocessing, the results, the weight files' names) lives in
# genrify.models.taggers, which classification and `genrify tags` import; it is named here too.
from genrify.models.taggers import (
    FORMAT,
    FORMAT_VERSION,
    MUSICNN_PARAMS,
    PATCH_FRAMES,
    TagResult,
    patch_hop,
    preprocess,
    weight_path,
)

# TensorFlow 1's batch-norm epsilon. Many channels of these checkpoints have a moving variance near
# zero, so torch's default of 1e-5 would scale their float noise up ~10x more and change the output.
_BN_EPS = 1e-3


def _batch_norm(dim: int, channels: int) -> nn.Module:
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dim]
    return cls(channels, eps=_BN_EPS)


def _same_padding(kernel: int) -> tuple[int, int]:
    """TensorFlow's SAME padding for stride 1: an even kernel's extra row goes at the end."""
    before = (kernel - 1) // 2
    return before, kernel - 1 - before


def _pooled_block(
    x: torch.Tensor, conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm, pool: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``pool(bn(relu(conv(x))))``, musicnn's block order, computed with the pooling first.

    In eval mode batch norm is a per-channel map ``a * v + b`` and ReLU is monotonic, so the max
    that the pooling takes of the block's output is the same map applied to ``relu(max h)`` where
    ``a >= 0`` and to ``relu(min h)`` where ``a < 0`` (``h`` the conv output). Flipping the sign of the
    filters of channels with ``a < 0`` turns their min into a max (exactly: IEEE rounding is symmetric),
    so one max pooling of the conv output replaces ReLU and batch norm over the largest maps of the
    network, which saves about a third of musicnn's time. The values are the same (to the last bit
    on the CPU, as tested). Training mode takes the literal order, as batch statistics need the
    whole map.
    """
    if bn.training:
        return pool(bn(F.relu(conv(x))))
    sign = torch.where(bn.weight < 0, -1.0, 1.0)
    h = pool(F.conv2d(x, conv.weight * sign[:, None, None, None], conv.bias * sign, conv.stride, conv.padding))
    shape = (-1,) + (1,) * (h.dim() - 2)
    return F.batch_norm(
        F.relu(h * sign.reshape(shape)), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
    )


def _max_over_mels(h: torch.Tensor) -> torch.Tensor:
    return h.amax(dim=3)


class _Branch(nn.Module):
    """One front-end branch: pad time, conv, ReLU, batch norm, max over every mel position."""

    def __init__(self, filters: int, kernel: tuple[int, int], padding: tuple[int, int]) -> None:
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _batch_norm(2, filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Zeros are padded after the input batch norm, i.e. in the normalised domain, as the original.
        x = F.pad(x, (0, 0, *self.padding))
        # musicnn orders every block conv -> ReLU -> batch norm, not the usual conv -> BN -> ReLU.
        return _pooled_block(x, self.conv, self.bn, _max_over_mels)  # (B, filters, T)


class _MidEnd(nn.Module):
    """A mid-end layer: a 1-D convolution over time with the features as channels, ReLU, batch norm."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels_in, channels_out, 7, padding=3)
        self.bn = _batch_norm(1, channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class MusiCNN(nn.Module):
    """musicnn's ``musicnn`` architecture (``build_musicnn(1.6, 64, 200)``, front end ``7774timbraltemporal``).

    Takes patches ``(batch, 187, 96)`` (frame, mel band) as :func:`preprocess` makes them and returns a
    dict of tensors: ``logits`` and ``taggram`` ``(batch, n_tags)`` and the original's features:
    ``timbral`` ``(batch, 187, 408)``, ``temporal`` ``(batch, 187, 153)``, ``cnn1``, ``cnn2``, ``cnn3``
    ``(batch, 187, 64)``, ``mean_pool`` and ``max_pool`` ``(batch, 753)``, ``flat_pool`` ``(batch, 1506)``
    (max and mean interleaved), ``dense_relu`` and ``penultimate`` ``(batch, 200)``.

    Parameters
    ----------
    n_tags
        Output tags.
    n_mels
        Mel bands of the input.
    frontend_filters
        Width factor of the front end (timbral branches get ``int(128 f)`` filters, temporal ``int(32 f)``).
    midend_filters
        Channels of the three mid-end layers.
    backend_units
        Width of the penultimate dense layer.
    """

    architecture = "musicnn"

    def __init__(
        self,
        *,
        n_tags: int = 50,
        n_mels: int = 96,
        frontend_filters: float = 1.6,
        midend_filters: int = 64,
        backend_units: int = 200,
    ) -> None:
        super().__init__()
        timbral, temporal = int(frontend_filters * 128), int(frontend_filters * 32)
        self.input_bn = _batch_norm(2, 1)  # one scalar mean and variance for the whole patch
        # Timbral: 7 frames x 40% / 70% of the bands; temporal: 1 band x 128 / 64 / 32 frames.
        self.timbral = nn.ModuleList(
            _Branch(timbral, (7, int(share * n_mels)), (3, 3)) for share in (0.4, 0.7)
        )
        self.temporal = nn.ModuleList(_Branch(temporal, (k, 1), _same_padding(k)) for k in (128, 64, 32))
        frontend = 2 * timbral + 3 * temporal
        self.midend = nn.ModuleList(
            [_MidEnd(frontend, midend_filters), _MidEnd(midend_filters, midend_filters), _MidEnd(midend_filters, midend_filters)]
        )
        pooled = frontend + 3 * midend_filters
        self.pool_bn = _batch_norm(1, 2 * pooled)
        self.dense = nn.Linear(2 * pooled, backend_units)
        self.dense_bn = _batch_norm(1, backend_units)
        self.output = nn.Linear(backend_units, n_tags)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        xn = self.input_bn(x.unsqueeze(1))  # (B, 1, T, mel)
        timbral = torch.cat([branch(xn) for branch in self.timbral], dim=1)  # (B, 408, T)
        temporal = torch.cat([branch(xn) for branch in self.temporal], dim=1)  # (B, 153, T)
        frontend = torch.cat([timbral, temporal], dim=1)
        cnn1 = self.midend[0](frontend)
        cnn2 = self.midend[1](cnn1) + cnn1  # the residuals are added after batch norm, with no ReLU after
        cnn3 = self.midend[2](cnn2) + cnn2
        features = torch.cat([frontend, cnn1, cnn2, cnn3], dim=1)  # (B, 753, T)
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)
        # The original stacks [max, mean] on a last axis and flattens: the two are interleaved
        # (max_0, mean_0, max_1, ...), and pool_bn's 1506 parameters follow that order.
        flat_pool = torch.stack([max_pool, mean_pool], dim=-1).flatten(1)
        dense_relu = F.relu(self.dense(self.dropout(self.pool_bn(flat_pool))))
        penultimate = self.dense_bn(dense_relu)
        logits = self.output(self.dropout(penultimate))
        return {
            "logits": logits,
            "taggram": torch.sigmoid(logits),
            "timbral": timbral.transpose(1, 2),
            "temporal": temporal.transpose(1, 2),
            "cnn1": cnn1.transpose(1, 2),
            "cnn2": cnn2.transpose(1, 2),
            "cnn3": cnn3.transpose(1, 2),
            "mean_pool": mean_pool,
            "max_pool": max_pool,
            "flat_pool": flat_pool,
            "dense_relu": dense_relu,
            "penultimate": penultimate,
        }


class _Pool1(nn.Module):
    """vgg's first pooling, ``MaxPool2d((4, 1), stride=(2, 2))``, as maxima of strided views.

    The window is 4 frames by 1 band with stride 2 in both: along the bands it keeps every other
    one, along time it is the max of two overlapping pairs. Taking the bands first and the pairs
    from strided views gives the same values 6x faster than torch's pooling (which took a third of
    vgg's time), as max is exact in any order.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., ::2]
        last = 2 * ((x.shape[2] - 2) // 2)  # pairs (2t, 2t + 1) for t = 0, 1, ..., then windows of two pairs
        pairs = torch.maximum(x[:, :, 0 : last + 1 : 2], x[:, :, 1 : last + 2 : 2])
        return torch.maximum(pairs[:, :, :-1], pairs[:, :, 1:])


class VGG(nn.Module):
    """musicnn's ``vgg`` architecture: five 3x3 conv blocks with max pooling, then one dense layer.

    Takes patches ``(batch, 187, 96)`` and returns a dict of tensors: ``logits`` and ``taggram``
    ``(batch, n_tags)``, and the original's features in its (time, mel, channel) layout: ``pool1``
    ``(batch, 92, 48, 128)``, ``pool2`` ``(batch, 46, 24, 128)``, ``pool3`` ``(batch, 23, 12, 128)``,
    ``pool4`` ``(batch, 11, 6, 128)``, ``pool5`` ``(batch, 2, 128)`` and ``flat_pool5`` ``(batch, 256)``.
    Only 187-frame patches fit: the dense layer's input size is fixed.

    Parameters
    ----------
    n_tags
        Output tags.
    filters
        Channels of every conv block.
    """

    architecture = "vgg"

    def __init__(self, *, n_tags: int = 50, filters: int = 128) -> None:
        super().__init__()
        self.input_bn = _batch_norm(2, 1)
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5))
        self.bns = nn.ModuleList(_batch_norm(2, filters) for _ in range(5))
        # pool1 is 4 frames by 1 band with stride 2 in both: along the bands it keeps every other one.
        self.pools = nn.ModuleList([_Pool1()] + [nn.MaxPool2d(2, 2)] * 3 + [nn.MaxPool2d(4, 4)])
        self.output = nn.Linear(2 * filters, n_tags)
        self.dropout = nn.ModuleList([nn.Dropout(0.25)] * 4 + [nn.Dropout(0.5)])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.input_bn(x.unsqueeze(1))
        out: dict[str, torch.Tensor] = {}
        for i, (conv, bn, pool, drop) in enumerate(zip(self.convs, self.bns, self.pools, self.dropout, strict=True)):
            h = _pooled_block(h, conv, bn, pool)  # conv -> ReLU -> batch norm -> pool, as the original
            out[f"pool{i + 1}"] = h.permute(0, 2, 3, 1)  # the original's (time, mel, channel) layout
            h = drop(h)
        out["pool5"] = out["pool5"].squeeze(2)
        # TensorFlow flattens (time, mel, channel): index = t * 128 + c, not torch's c * 2 + t.
        out["flat_pool5"] = out["pool5"].flatten(1)
        logits = self.output(self.dropout[-1](out["flat_pool5"]))
        return {"logits": logits, "taggram": torch.sigmoid(logits), **out}


#: The architectures by the name the weight files carry.
ARCHITECTURES: dict[str, type[nn.Module]] = {"musicnn": MusiCNN, "vgg": VGG}


# --- preprocessing -------------------------------------------------------------------------------


# --- the tagger ----------------------------------------------------------------------------------


@dataclass
class Tagger:
    """A pretrained musicnn tagger: the network with its tag names and input parameters.

    Attributes
    ----------
    name
        The original's name (``MTT_musicnn``, ...).
    network
        :class:`MusiCNN` or :class:`VGG`, in eval mode.
    tags
        The 50 tag names, in output order.
    params
        The feature parameters of its input (:data:`MUSICNN_PARAMS`).
    info
        The weight file's remaining metadata (source, licence, ...).
    """

    name: str
    network: nn.Module
    tags: list[str]
    params: FeatureParams = MUSICNN_PARAMS
    info: dict[str, Any] = field(default_factory=dict)

    def run(self, batch: np.ndarray | torch.Tensor, *, batch_size: int = 16, features: bool = True) -> dict[str, np.ndarray]:
        """Run the network on an input batch ``(n_patches, 187, 96)``.

        Patches go through ``batch_size`` at a time (the front end holds about 15 MB per patch).
        Each patch's result is independent of the others (batch norm uses its stored statistics);
        the batch size changes it only by float rounding, as the convolution algorithm may differ.

        Returns
        -------
        dict
            ``taggram`` and ``logits`` ``(n_patches, n_tags)`` and, with ``features``, every feature
            of the network, as float32 numpy arrays.
        """
        x = torch.as_tensor(batch, dtype=torch.float32)
        if x.ndim != 3 or x.shape[1:] != (PATCH_FRAMES, self.params.n_mels):
            raise ParameterError(f"expected patches of shape (n, {PATCH_FRAMES}, {self.params.n_mels}), got {tuple(x.shape)}")
        if batch_size < 1:
            raise ParameterError(f"batch_size must be positive, not {batch_size}")
        pieces: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode():
            for start in range(0, x.shape[0], batch_size):
                out = self.network(x[start : start + batch_size])
                for key, value in out.items():
                    if features or key in ("taggram", "logits"):
                        pieces.setdefault(key, []).append(value.numpy().copy())
        if not pieces:
            return {}
        return {key: np.concatenate(values) for key, values in pieces.items()}

    def tag(
        self, waveform: np.ndarray, sample_rate: int, *, hop_seconds: float | None = None, features: bool = False
    ) -> TagResult:
        """Tag a mono waveform at any rate (see :func:`preprocess`); ``features`` keeps the embeddings too."""
        batch = preprocess(waveform, sample_rate, hop_seconds=hop_seconds)
        return self.tag_patches(batch, hop_seconds=hop_seconds, features=features)

    def tag_patches(self, batch: np.ndarray, *, hop_seconds: float | None = None, features: bool = False,
                    fast: bool = False) -> TagResult:
        """Tag an input batch ``(n_patches, 187, 96)`` whose patches start every ``hop_seconds``
        (:func:`preprocess` of a waveform; :mod:`genrify.classify.musicnn_tags` reads files).

        Parameters
        ----------
        batch
            The patches.
        hop_seconds
            Time between patch starts (``None``: a whole patch), recorded in the result.
        features
            Keep the network's other outputs (the embeddings) too.
        fast
            Without ``features``, run the tagger's ONNX graph where it ships and ONNX Runtime
            imports (:mod:`genrify.models.onnx`): the same taggram, about twice as fast.
        """
        patch_seconds = patch_hop(hop_seconds) * self.params.seconds_per_frame
        if fast and not features:
            from genrify.models import onnx

            if onnx.available(self.name):
                x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
                return TagResult(self.tags, onnx.tagger_graph(self.name)(x)["taggram"].numpy(), patch_seconds=patch_seconds)
        out = self.run(batch, features=features)
        taggram = out.pop("taggram")
        return TagResult(self.tags, taggram, out, patch_seconds)


def load_tagger(name: str, path: str | Path | None = None) -> Tagger:
    """Load a pretrained musicnn tagger.

    Parameters
    ----------
    name
        One of :data:`TAGGERS`.
    path
        The weight file; the one packaged with genrify by default.

    Raises
    ------
    ParameterError
        Unknown name.
    ModelFileError
        The weight file is missing, damaged, or not a musicnn tagger.
    """
    path = weight_path(name) if path is None else Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"{path}: the {name} weights are missing; restore them with `python scripts/convert_musicnn.py "
            "[--weights DIR]` in a genrify checkout (DIR holds musicnn's checkpoint variables as .npz, by default "
            "../shared/musicnn/weights), or reinstall genrify"
        )
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("genrify")
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for bad files
        text = str(exc).strip().splitlines()
        raise ModelFileError(f"{path}: not a readable safetensors file ({text[0] if text else type(exc).__name__})") from None
    try:
        meta = json.loads(raw) if raw is not None else {}
    except json.JSONDecodeError:
        meta = {}
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: a safetensors file, but not a genrify musicnn tagger (no {FORMAT} metadata)")
    try:
        if int(meta["version"]) > FORMAT_VERSION:
            raise ModelFileError(f"{path}: made by a newer genrify; upgrade genrify to load it")
        tags = [str(t) for t in meta["tags"]]
        params = FeatureParams.from_dict(meta["features"])
        network = ARCHITECTURES[meta["architecture"]](n_tags=len(tags), **meta["architecture_config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: the tagger metadata is incomplete or invalid ({type(exc).__name__}: {exc})") from None
    if params != MUSICNN_PARAMS:
        # The preprocessing here is musicnn's; a file asking for other input cannot be served right.
        raise ModelFileError(f"{path}: made for other input than musicnn's: {'; '.join(params.differences(MUSICNN_PARAMS))}")
    if meta.get("name", name) != name:
        raise ModelFileError(f"{path}: holds the {meta['name']} tagger, not {name}")
    # num_batches_tracked counts training steps: the files leave it out, so it may be missing.
    try:
        missing, unexpected = network.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        text = str(exc).strip().splitlines()
        raise ModelFileError(f"{path}: the weights do not fit architecture {meta['architecture']!r} ({text[-1]})") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: the weights do not fit architecture {meta['architecture']!r} "
            f"(missing {', '.join(missing) or 'none'}; unexpected {', '.join(unexpected) or 'none'})"
        )
    info = {k: v for k, v in meta.items() if k not in ("format", "version", "name", "tags", "features")}
    return Tagger(name=name, network=network.eval(), tags=tags, params=params, info=info)
