"""One self-describing model file: weights and everything needed to use them, in safetensors.

The file holds the network's weights (``model.*``) and the input normalisation (``norm.mean``,
``norm.std``) as tensors, and in its metadata one JSON document: the genre list, the feature
parameters, the architecture's name and options, the chunk length, the training summary and
history, and the genrify version. safetensors stores plain arrays and a JSON header, so loading a
model never runs code from it; the architecture is rebuilt from genrify's own registry by name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrify import __version__
from genrify.data import Normalization
from genrify.errors import ModelFileError
from genrify.features import FeatureParams

FORMAT = "genrify-model"
FORMAT_VERSION = 1
_REQUIRED = ("format", "version", "genres", "features", "architecture", "architecture_config", "chunk_frames")


@dataclass
class GenreModel:
    """A trained genre classifier: the network and what it needs to be used."""

    network: torch.nn.Module  #: a :class:`~genrify.models.GenreNetwork`: dB chunks in, logits out
    genres: list[str]
    params: FeatureParams
    normalization: Normalization
    architecture: str
    architecture_config: dict[str, Any]
    chunk_frames: int
    #: training summary, history and provenance (free-form, JSON-ready)
    info: dict[str, Any] = field(default_factory=dict)
    genrify_version: str = __version__

    def check_features(self, params: FeatureParams, source: str = "these features") -> None:
        """Refuse features made with other parameters than the model's.

        Raises
        ------
        ModelFileError
            The parameters differ (the message lists how).
        """
        if params != self.params:
            diff = "; ".join(self.params.differences(params))
            raise ModelFileError(f"{source} were made with other feature parameters than the model's: {diff}")

    def metadata(self) -> dict[str, Any]:
        """The JSON document saved in the file's metadata."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "genrify_version": self.genrify_version,
            "genres": self.genres,
            "features": self.params.to_dict(),
            "architecture": self.architecture,
            "architecture_config": self.architecture_config,
            "chunk_frames": self.chunk_frames,
            "info": self.info,
        }


def save(model: GenreModel, path: str | Path) -> Path:
    """Write a model file atomically (a temporary file renamed into place).

    Raises
    ------
    ModelFileError
        The file cannot be written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    body = getattr(model.network, "body", model.network)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in body.state_dict().items()}
    tensors["norm.mean"] = torch.from_numpy(np.ascontiguousarray(model.normalization.mean, dtype=np.float32))
    tensors["norm.std"] = torch.from_numpy(np.ascontiguousarray(model.normalization.std, dtype=np.float32))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata={"genrify": json.dumps(model.metadata())})
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelFileError(f"{path}: cannot write the model file: {exc.strerror or exc}") from None
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The genrify metadata of a model file, validated, without loading the weights.

    Raises
    ------
    ModelFileError
        Missing, unreadable, not safetensors, or not a genrify model.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("genrify")
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for bad headers
        raise ModelFileError(f"{path}: not a safetensors model file ({_first_line(exc)})") from None
    if raw is None:
        raise ModelFileError(f"{path}: a safetensors file, but not a genrify model (no genrify metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelFileError(f"{path}: the genrify metadata is not valid JSON") from None
    missing = [k for k in _REQUIRED if k not in meta]
    if missing or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a genrify model (metadata lacks {', '.join(missing) or 'format'})")
    if int(meta["version"]) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: made by a newer genrify ({meta.get('genrify_version')}); upgrade genrify to load it")
    return meta


def load(path: str | Path, *, params: FeatureParams | None = None) -> GenreModel:
    """Load a model file (never running code from it).

    Parameters
    ----------
    path
        The ``.safetensors`` file.
    params
        If given, the features the model will be fed; other parameters than the model's are refused.

    Raises
    ------
    ModelFileError
        Missing, truncated or damaged file, not a genrify model, unknown architecture, weights that
        do not fit the architecture, or feature parameters that differ from ``params``.
    """
    from safetensors.torch import load_file

    from genrify.errors import ParameterError
    from genrify.models import GenreNetwork, build

    path = Path(path)
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - a truncated body fails here, after a valid header
        raise ModelFileError(f"{path}: the model file is damaged ({_first_line(exc)})") from None
    try:
        feature_params = FeatureParams.from_dict(meta["features"])
        body = build(
            meta["architecture"], n_mels=feature_params.n_mels, n_genres=len(meta["genres"]), **meta["architecture_config"]
        )
    except ParameterError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        body.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: the weights do not fit architecture {meta['architecture']!r} ({_first_line(exc)})") from None
    if "norm.mean" not in tensors or "norm.std" not in tensors:
        raise ModelFileError(f"{path}: the input normalisation is missing")
    if tensors["norm.mean"].numel() != feature_params.n_mels or tensors["norm.std"].numel() != feature_params.n_mels:
        raise ModelFileError(f"{path}: the input normalisation does not match {feature_params.n_mels} mel bands")
    network = GenreNetwork(body, tensors["norm.mean"], tensors["norm.std"]).eval()
    model = GenreModel(
        network=network,
        genres=list(meta["genres"]),
        params=feature_params,
        normalization=Normalization(tensors["norm.mean"].numpy(), tensors["norm.std"].numpy()),
        architecture=meta["architecture"],
        architecture_config=dict(meta["architecture_config"]),
        chunk_frames=int(meta["chunk_frames"]),
        info=dict(meta.get("info", {})),
        genrify_version=str(meta.get("genrify_version", "?")),
    )
    if params is not None:
        model.check_features(params, source=str(path))
    return model


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
