"""One self-describing model file: weights and everything needed to use them, in safetensors.

The file holds the network's weights (``model.*``) and the input normalisation (``norm.mean``,
``norm.std``) as tensors, and in its metadata one JSON document: the genre list, the feature
parameters, the architecture's name and options, the chunk length, the training summary and
history, and the genrify version. safetensors stores plain arrays and a JSON header, so loading a
model never runs code from it; the architecture is rebuilt from genrify's own registry by name.

Since genrify stores ONNX graphs, the file also holds the network as an ONNX graph (the tensor
``onnx.graph``, its bytes as ``uint8``, described by the metadata key ``genrify.onnx``): the same
network, in eval mode with the normalisation folded in, so that it takes the segments
classification gives (dB, ``(n, n_mels, chunk_frames)``) and answers logits ``(n, genres)``. A
graph is a list of standard operators, data, no code; :func:`load` runs it on ONNX Runtime and so
classifies without PyTorch. Files made before keep working where PyTorch is installed, and
:func:`add_graph` (``genrify export``) adds their graph.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrify import __version__
from genrify.audio.features import FeatureParams
from genrify.core.devices import module_device
from genrify.core.extras import install_command
from genrify.core.fsutil import atomic_path
from genrify.core.numeric import softmax
from genrify.errors import ModelFileError
from genrify.models.normalization import Normalization

if TYPE_CHECKING:
    import torch

    from genrify.models.onnx import OnnxGenreGraph

FORMAT = "genrify-model"
FORMAT_VERSION = 1
_REQUIRED = ("format", "version", "genres", "features", "architecture", "architecture_config", "chunk_frames")
#: The tensor holding the network's ONNX graph (its bytes, ``uint8``), and the safetensors metadata
#: key describing it (a JSON object: input, outputs, opset, shape). Both absent in files made
#: before genrify stored graphs.
GRAPH_TENSOR = "onnx.graph"
GRAPH_KEY = "genrify.onnx"
#: How far a stored graph's logits may lie from the torch network's (on random segments) before
#: the graph is refused: classification promises the torch answer within this.
GRAPH_TOLERANCE = 1e-4


@dataclass(kw_only=True)
class TrainedModel:
    """What a trained model file says of itself, whichever way it runs (:class:`GenreModel` on torch,
    :class:`GraphModel` on ONNX Runtime): its genres, the features it reads, their normalisation,
    its architecture and segment length, and where it came from."""

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


@dataclass(kw_only=True)
class GenreModel(TrainedModel):
    """A trained genre classifier as its torch network (training, evaluation, a GPU)."""

    network: torch.nn.Module  #: a :class:`~genrify.models.GenreNetwork`: dB chunks in, logits out


def save(model: GenreModel, path: str | Path, *, graph: bool = True,
         warn: Callable[[str], None] | None = None) -> Path:
    """Write a model file atomically (a temporary file renamed into place), mode as the umask gives.

    The network's ONNX graph goes into the same file (:func:`network_graph`), so that it classifies
    without PyTorch. Where the ``onnx`` package is missing (an install without ``genrify[train]``'s
    extras), or the graph does not answer as the network does, the file is written without one and
    ``warn`` is told once per process, in one line, how to add it later (``genrify export``).

    Parameters
    ----------
    model
        A trained model.
    path
        The file to write.
    graph
        Store the network's ONNX graph (``False``: weights and metadata only, as before graphs).
    warn
        Where the one-line warning goes (default: :func:`warnings.warn`).

    Raises
    ------
    ModelFileError
        The file cannot be written.
    """
    import torch

    path = Path(path)
    body = getattr(model.network, "body", model.network)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in body.state_dict().items()}
    tensors["norm.mean"] = torch.from_numpy(np.ascontiguousarray(model.normalization.mean, dtype=np.float32))
    tensors["norm.std"] = torch.from_numpy(np.ascontiguousarray(model.normalization.std, dtype=np.float32))
    metadata = {"genrify": json.dumps(model.metadata())}
    if graph:
        try:
            data, described = network_graph(model)
        except ImportError:
            _warn_once(f"{path}: saved without its ONNX graph (the onnx package is missing; pip install onnx, "
                       f"then `genrify export {path}` adds it)", warn)
        except ModelFileError as exc:
            _warn_once(f"{path}: saved without its ONNX graph ({exc}); `genrify export {path}` retries", warn)
        else:
            tensors[GRAPH_TENSOR] = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
            metadata[GRAPH_KEY] = json.dumps(described)
    return _write(tensors, metadata, path)


def _write(tensors: dict[str, Any], metadata: dict[str, str], path: Path) -> Path:
    """Write safetensors (torch tensors, or numpy arrays) atomically.

    Raises
    ------
    ModelFileError
        The file cannot be written.
    """
    numpy = all(isinstance(v, np.ndarray) for v in tensors.values())
    if numpy:
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file  # type: ignore[assignment]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Through a temporary file with the umask's mode, like any other output (safetensors alone
        # would leave half a file behind on a full disk).
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot write the model file: {exc.strerror or exc}") from None
    return path


_WARNED: set[str] = set()


def _warn_once(line: str, warn: Callable[[str], None] | None) -> None:
    """Say ``line`` once per process and kind (the graph missing; a fold-by-fold save says it once)."""
    kind = "onnx-missing" if "onnx package" in line else "graph-differs"
    if kind in _WARNED:
        return
    _WARNED.add(kind)
    if warn is None:
        warnings.warn(line, stacklevel=3)
    else:
        warn(line)


def network_graph(model: GenreModel, *, tolerance: float = GRAPH_TOLERANCE) -> tuple[bytes, dict[str, Any]]:
    """The model's network as an ONNX graph, checked against the network: the graph's bytes and
    the description saved beside them.

    The graph is the :class:`~genrify.models.GenreNetwork` (normalisation inside) in eval mode; its
    logits on random segments (drawn around the normalisation's mean, so at the network's working
    range) must lie within ``tolerance`` of the network's, where ONNX Runtime runs here.

    Raises
    ------
    ImportError
        The ``onnx`` package is missing.
    ModelFileError
        The graph does not answer as the network does.
    """
    from genrify.models import onnx

    n_mels, frames = model.params.n_mels, model.chunk_frames
    data = onnx.export_genre_network(model.network, n_mels, frames)
    if onnx.runtime_available():
        worst = graph_difference(model, onnx.OnnxGenreGraph(data))
        if not worst <= tolerance:  # NaN fails too
            raise ModelFileError(f"its ONNX graph answers up to {worst:.2g} away from the network (more than {tolerance:g})")
    import torch

    described = {"input": onnx.GENRE_INPUT, "outputs": [onnx.GENRE_OUTPUT], "opset": onnx.OPSET,
                 "shape": ["batch", n_mels, frames], "normalized": True,
                 "exporter": f"torch {torch.__version__.split('+')[0]}"}
    return data, described


def graph_difference(model: GenreModel, graph: OnnxGenreGraph, *, segments: int = 6, seed: int = 0) -> float:
    """The largest gap between ``graph``'s logits and ``model``'s torch network's on random segments."""
    import torch

    rng = np.random.default_rng(seed)
    n_mels, frames = model.params.n_mels, model.chunk_frames
    mean = np.asarray(model.normalization.mean, dtype=np.float32).reshape(1, -1, 1)
    std = np.asarray(model.normalization.std, dtype=np.float32).reshape(1, -1, 1)
    x = (mean + std * rng.standard_normal((segments, n_mels, frames))).astype(np.float32)
    network = model.network
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            theirs = network(torch.from_numpy(x).to(module_device(network))).float().cpu().numpy()
    finally:
        network.train(was_training)
    ours = graph.logits(x)
    if ours.shape != theirs.shape:
        return float("inf")
    return float(np.max(np.abs(ours.astype(np.float64) - theirs)))


# safetensors' own limit on a header; a file that claims a longer one is not a model.
_MAX_HEADER_BYTES = 100_000_000


def _file_document(path: str | Path) -> dict[str, Any] | None:
    """The genrify document in a safetensors file's header (only the header is read), or ``None``."""
    if not Path(path).is_file():  # a pipe would block the read below
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            size = int.from_bytes(head, "little")
            if len(head) != 8 or not 2 <= size <= _MAX_HEADER_BYTES:
                return None
            header = json.loads(fh.read(size))
        meta = json.loads(header["__metadata__"]["genrify"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return meta if isinstance(meta, dict) else None


def _file_format(path: str | Path) -> str | None:
    """The ``format`` of the genrify document in a safetensors file's header, or ``None``."""
    meta = _file_document(path)
    return meta.get("format") if meta is not None and isinstance(meta.get("format"), str) else None


# The first bytes of files people give as a model by mistake, to say what the file is instead.
_KNOWN_KINDS: tuple[tuple[bytes, str], ...] = (
    (b"OggS", "an Ogg audio file"), (b"fLaC", "a FLAC audio file"), (b"ID3", "an MP3 audio file"),
    (b"\xff\xfb", "an MP3 audio file"), (b"\xff\xf3", "an MP3 audio file"), (b"\xff\xf2", "an MP3 audio file"),
    (b"RIFF", "a WAV (RIFF) file"), (b"FORM", "an AIFF audio file"),
    (b"PK\x03\x04", "a zip archive (a PyTorch checkpoint?)"), (b"\x89HDF", "an HDF5 file (a Keras model?)"),
    *((bytes([0x80, protocol]), "a Python pickle") for protocol in range(2, 6)),
)


def _unreadable_reason(path: Path) -> tuple[str, bool] | None:
    """Why ``path`` cannot be read as a safetensors file, in genrify's own words, or ``None``.

    Only the header is read. The flag says whether the header is a genrify model's own (the file
    is then a damaged model, not another kind of file).
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            for magic, kind in _KNOWN_KINDS:
                if head.startswith(magic):
                    return f"it is {kind}", False
            if len(head) < 8:
                return f"{size} bytes, too short to be one", False
            length = int.from_bytes(head, "little")
            if not 2 <= length <= _MAX_HEADER_BYTES:
                try:
                    head.decode("utf-8").encode("ascii")
                    text = all(c.isprintable() or c.isspace() for c in head.decode("ascii"))
                except UnicodeError:
                    text = False
                return ("it is a text file" if text else "it does not begin with a safetensors header"), False
            if 8 + length > size:
                return f"cut short: its header needs {8 + length:,} bytes, the file has only {size:,}", False
            raw = fh.read(length)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}", False
    try:
        header = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return "its header is not a safetensors header", False
    if not isinstance(header, dict):
        return "its header is not a safetensors header", False
    ours = isinstance(header.get("__metadata__"), dict) and "genrify" in header["__metadata__"]
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return "its safetensors header is damaged", ours
    if 8 + length + end > size:
        return f"cut short: it holds {size:,} of the {8 + length + end:,} bytes its header declares", ours
    return None


def is_model_file(path: str | Path) -> bool:
    """Whether ``path`` is a model file genrify wrote: safetensors whose metadata holds genrify's
    model document, or a genre head learned by ``genrify learn`` (:func:`is_head_file`).

    Only the header is read, and only the document's ``format`` is looked at: a model of another
    genrify version, or one whose fields :func:`read_metadata` would refuse, is still genrify's.
    Anything else (a song, a text file, another program's safetensors, a folder, a pipe) is not.

    Parameters
    ----------
    path
        The file (a symbolic link is followed).

    Returns
    -------
    bool
    """
    from genrify.models.builtin import HEAD_FORMAT

    return _file_format(path) in (FORMAT, HEAD_FORMAT)


def is_head_file(path: str | Path) -> bool:
    """Whether ``path`` is a genre head for the built-in model (``genrify learn`` writes them; the
    packaged head is one): loaded, it is the built-in model with that head (:func:`load`).

    Only the header is read.
    """
    from genrify.models.builtin import HEAD_FORMAT

    return _file_format(path) == HEAD_FORMAT


def is_calibrated_head(path: str | Path) -> bool:
    """Whether ``path`` is a genre head (:func:`is_head_file`) whose learner could calibrate its
    probabilities: its report does not say otherwise (a head learned from too few artists does,
    :attr:`genrify.learn.learner.LearnReport.calibrated`). Only the header is read."""
    from genrify.models.builtin import HEAD_FORMAT

    meta = _file_document(path)
    if meta is None or meta.get("format") != HEAD_FORMAT:
        return False
    report = (meta.get("info") or {}).get("report") if isinstance(meta.get("info"), dict) else None
    return not (isinstance(report, dict) and report.get("calibrated") is False)


@dataclass(frozen=True)
class Destination:
    """Where a new model file goes (:func:`check_destination`)."""

    path: Path  #: the file to write: the name given, or the file a symbolic link of that name points to
    replaces: bool  #: an existing genrify model will be replaced


def check_destination(
    path: str | Path, *, store: str | Path | None = None, inputs: Sequence[str | Path] = ()
) -> Destination:
    """Refuse a model file name whose writing would replace something that is not a genrify model.

    The rules of every file genrify writes by name
    (:func:`genrify.collection.destinations.check_output_file`: not a folder, an input or an audio file, here
    also not an audio file's name, and in a folder that can be written or made), and those of a
    model: never a file of the feature store (anything in its folder), nor an existing file that
    is not a genrify model (:func:`is_model_file`); an existing genrify model may be replaced. A
    symbolic link to a model stays a link: the file it points to is written.

    Parameters
    ----------
    path
        The model file to write.
    store
        The feature store the model is trained on: nothing inside its folder may be written.
    inputs
        Other files the command reads (a split file, songs).

    Returns
    -------
    Destination

    Raises
    ------
    UsageError
        Writing there would replace something that is not a genrify model, or ``path`` is a folder.
    GenrifyIOError
        Its folder cannot be written.
    """
    from genrify.collection.destinations import check_output_file
    from genrify.collection.library import display_path
    from genrify.errors import UsageError

    given = Path(path)
    shown = display_path(given)
    if given.is_symlink() and not given.exists():
        raise UsageError(f"{shown}: a symbolic link to nothing; genrify does not replace links, choose another name")
    # An audio file's name is refused even where none exists: a model named like a song would
    # pass for one later. save() makes missing folders.
    target = check_output_file(given, inputs=inputs, what="the model file", example="genres.safetensors",
                               audio_names=True, follow_link=True, make_folders=True)
    if store is not None:
        inside = Path(os.path.realpath(store))
        for where in (Path(os.path.realpath(given.parent)) / given.name, Path(os.path.realpath(target))):
            if where == inside or inside in where.parents:
                raise UsageError(f"{shown}: lies inside the feature store {display_path(store)}; genrify never writes"
                                 " into a store's folder, choose a name outside it")
    replaces = os.path.lexists(target)
    if replaces and not is_model_file(target):
        raise UsageError(f"{shown}: exists and is not a genrify model; genrify replaces only models it wrote,"
                         " choose another name")
    return Destination(path=target, replaces=replaces)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The genrify metadata of a model file, validated, without loading the weights.

    Every field is checked against its type and sane bounds (see :func:`_validate`), so that
    whatever reads the metadata (``genrify info``, a Dask client, :func:`load`) can trust it.

    Raises
    ------
    ModelFileError
        Missing, unreadable, not safetensors, not a genrify model, or a field that is missing, of
        the wrong type or out of bounds (the message names the file and the field).
    """
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: a folder, not a model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    # Said in genrify's words (an .ogg given as --model is "an Ogg audio file"), never the
    # safetensors library's ("header too large").
    problem = _unreadable_reason(path)
    if problem is not None:
        why, ours = problem
        raise ModelFileError(f"{path}: the model file is damaged ({why})" if ours
                             else f"{path}: not a genrify model file ({why})")
    try:
        with safe_open(str(path), framework="numpy") as f:  # numpy: reading metadata needs no torch
            raw = (f.metadata() or {}).get("genrify")
    except Exception:  # noqa: BLE001 - safetensors raises several types for bad headers
        raise ModelFileError(f"{path}: not a genrify model file (its safetensors header is damaged)") from None
    if raw is None:
        raise ModelFileError(f"{path}: not a genrify model file (a safetensors file without genrify's metadata)")
    try:
        # NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise.
        meta = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; deep nesting recurses
        raise ModelFileError(f"{path}: the genrify metadata is not valid JSON") from None
    from genrify.models.builtin import HEAD_FORMAT

    if isinstance(meta, dict) and meta.get("format") == HEAD_FORMAT:
        return _head_metadata(path)
    return _validate(path, meta)


def _head_metadata(path: Path) -> dict[str, Any]:
    """A genre head file's metadata in a model file's shape: what ``classify``, ``info``, the web
    page and remote workers read without loading weights (the head itself is checked whole).

    Raises
    ------
    ModelFileError
        The head is not one genrify can use.
    """
    from genrify.models.builtin import NAME, GenreHead
    from genrify.models.taggers import MUSICNN_PARAMS, PATCH_FRAMES

    head = GenreHead.load(path)  # small (a few hundred kB): every field and array is checked
    info = dict(head.info)
    report = learned_report(info)
    if report is not None:
        info["learned"] = report
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "genrify_version": str(info.get("genrify_version", "?")),  # "?": learned before genrify recorded it
        "genres": list(head.genres),
        "features": MUSICNN_PARAMS.to_dict(),
        "architecture": NAME,
        "architecture_config": {"head": path.name},
        "chunk_frames": PATCH_FRAMES,
        "info": info,
        "head": True,
    }


def learned_report(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The honest report a learned head carries (``genrify learn``'s cross-check), or ``None``."""
    for holder in (info, info.get("head") if isinstance(info.get("head"), Mapping) else None):
        if isinstance(holder, Mapping):
            for key in ("learned", "report"):
                found = holder.get(key)
                if isinstance(found, dict) and ("cv_top1" in found or "per_genre" in found):
                    return found
    return None


#: Bounds on what a model file may declare: generous for any real model, tight enough that a
#: damaged or hostile file cannot make loading allocate without end or answer nonsense.
MIN_GENRES, MAX_GENRES = 2, 1000
MAX_CHUNK_FRAMES = 100_000
_MAX_NAME = 200  # characters of a genre or version name
_MAX_CONFIG_INT = 100_000  # an architecture option: a width, a kernel, a count
_MAX_CONFIG_LIST = 64
_SUMMARY_FIGURES = ("song_accuracy_mean", "song_accuracy_std", "chunk_accuracy_mean", "chunk_accuracy_std")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    """A short repr for messages: a hostile value may be megabytes long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _validate(path: Path, meta: Any) -> dict[str, Any]:
    """Check every field of a model file's metadata; returns it unchanged.

    Raises
    ------
    ModelFileError
        The first field that is missing, of the wrong type or out of bounds.
    """
    from genrify.errors import ParameterError

    def bad(name: str, problem: str) -> ModelFileError:
        return ModelFileError(f"{path}: bad model metadata: {name} {problem}")

    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: not a genrify model (its genrify metadata is {_show(meta)}, not a JSON object)")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a genrify model (metadata lacks {', '.join(missing) or 'format'})")
    version = meta["version"]
    if not _is_int(version) or version < 1:
        raise bad("version", f"must be a positive integer, not {_show(version)}")
    shown_version = meta.get("genrify_version", "?")
    if not isinstance(shown_version, str) or len(shown_version) > _MAX_NAME:
        raise bad("genrify_version", f"must be a short string, not {_show(shown_version)}")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: made by a newer genrify ({shown_version}); upgrade genrify to load it")

    genres = meta["genres"]
    if not isinstance(genres, list):
        raise bad("genres", f"must be a list of genre names, not {_show(genres)}")
    if not MIN_GENRES <= len(genres) <= MAX_GENRES:
        raise bad("genres", f"holds {len(genres)} genres; a model has {MIN_GENRES} to {MAX_GENRES}")
    seen: set[str] = set()
    for genre in genres:
        if not isinstance(genre, str) or not genre.strip() or len(genre) > _MAX_NAME or not genre.isprintable():
            raise bad("genres", f"holds {_show(genre)}, not a genre name (a non-empty line of text)")
        if genre in seen:  # probabilities keyed by name would merge two outputs and no longer sum to 1
            raise bad("genres", f"names {genre!r} twice")
        seen.add(genre)

    features = meta["features"]
    if not isinstance(features, dict):
        raise bad("features", f"must be a JSON object of feature parameters, not {_show(features)}")
    try:
        FeatureParams.from_dict(features)
    except (ParameterError, TypeError, ValueError) as exc:
        raise bad("features", f"are not valid feature parameters: {_first_line(exc)}") from None

    architecture = meta["architecture"]
    known = _known_architectures()
    if not isinstance(architecture, str) or architecture not in known:
        raise bad("architecture", f"{_show(architecture)} is not one genrify knows ({', '.join(known)})")
    config = meta["architecture_config"]
    if not isinstance(config, dict):
        raise bad("architecture_config", f"must be a JSON object of options, not {_show(config)}")
    for key, value in config.items():
        items = value if isinstance(value, list) and len(value) <= _MAX_CONFIG_LIST else [value]
        for item in items:
            if not (item is None or isinstance(item, bool) or (_is_int(item) and 0 <= item <= _MAX_CONFIG_INT)
                    or (isinstance(item, float) and _is_number(item) and abs(item) <= _MAX_CONFIG_INT)
                    or (isinstance(item, str) and len(item) <= _MAX_NAME)):
                raise bad("architecture_config", f"option {key!r} is {_show(value)}, out of bounds for an architecture option")

    chunk = meta["chunk_frames"]
    if not _is_int(chunk) or not 1 <= chunk <= MAX_CHUNK_FRAMES:
        raise bad("chunk_frames", f"must be an integer in 1..{MAX_CHUNK_FRAMES}, not {_show(chunk)}")

    # Training summary and settings are shown by `genrify info` and the web page: they must have
    # the shapes those expect, or be absent.
    info = meta.get("info", {})
    if not isinstance(info, dict):
        raise bad("info", f"must be a JSON object, not {_show(info)}")
    summary = info.get("summary")
    if summary is not None:
        if not isinstance(summary, dict):
            raise bad("info.summary", f"must be a JSON object, not {_show(summary)}")
        for figure in _SUMMARY_FIGURES:
            if not _is_number(summary.get(figure)):
                raise bad(f"info.summary.{figure}", f"must be a finite number, not {_show(summary.get(figure))}")
        if not _is_int(summary.get("runs")) or summary["runs"] < 0:
            raise bad("info.summary.runs", f"must be a count of runs, not {_show(summary.get('runs'))}")
    if "config" in info and not isinstance(info["config"], dict):
        raise bad("info.config", f"must be a JSON object, not {_show(info['config'])}")
    return meta


def _known_architectures() -> list[str]:
    """The registry's architectures where it imports (it needs torch), else those genrify ships:
    a file's graph runs without the registry, but its architecture must still be one genrify made."""
    try:
        from genrify.models import architectures
    except ImportError:
        from genrify.defaults import ARCHITECTURES

        return sorted(ARCHITECTURES)
    return architectures()


#: What :func:`load` runs a network model file on: its graph on ONNX Runtime where it has one and
#: the runtime imports, else PyTorch (``auto``); or one of them only.
RUNTIMES = ("auto", "onnx", "torch")


def load(path: str | Path, *, params: FeatureParams | None = None, runtime: str = "auto") -> Any:
    """Load a model file (never running code from it).

    A network model file loads as a :class:`GraphModel` (its ONNX graph on ONNX Runtime: no torch)
    where it holds a graph and ONNX Runtime imports, else as a :class:`GenreModel` (the torch
    network; files made before genrify stored graphs). Where neither can run (no graph, no torch)
    the error says in one line how to add a graph (``genrify export``).

    A genre head file (:func:`is_head_file`, made by ``genrify learn``) loads as the built-in
    model with that head (a :class:`~genrify.models.builtin.BuiltinGenreModel`), which
    classification uses like any model.

    Parameters
    ----------
    path
        The ``.safetensors`` file.
    params
        If given, the features the model will be fed; other parameters than the model's are refused.
    runtime
        ``auto``, ``onnx`` (the graph only) or ``torch`` (the torch network only), see :data:`RUNTIMES`.

    Raises
    ------
    ModelFileError
        Missing, truncated or damaged file, not a genrify model, unknown architecture, weights that
        do not fit the architecture, a graph that does not run, no way to run it here, or feature
        parameters that differ from ``params``.
    """
    from genrify.errors import ParameterError

    if runtime not in RUNTIMES:
        raise ParameterError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("head"):
        return _load_head(path, meta, params)
    if runtime != "torch":
        from genrify.models import onnx

        described = graph_info(path)
        if described is not None and onnx.runtime_available():
            return _load_graph(path, meta, described, params)
        if runtime == "onnx":
            raise ModelFileError(f"{path}: {'ONNX Runtime is not installed' if described else _NO_GRAPH}")
    if not torch_installed():
        raise ModelFileError(not_runnable(path) or f"{path}: cannot be run here (no PyTorch)")
    return _load_torch(path, meta, params)


_NO_GRAPH = "made before genrify stored ONNX graphs (it holds no graph)"


def torch_installed() -> bool:
    """Whether PyTorch can be imported here, without importing it (a second of start-up)."""
    import importlib.util

    if "torch" in sys.modules:
        return sys.modules["torch"] is not None
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a blocked import, or a module without a spec
        return False


def runtime_for(path: str | Path) -> str | None:
    """How :func:`load` will run a model file here, from its header alone: ``"head"`` (a learned
    genre head, numpy), ``"onnx"`` (its graph on ONNX Runtime), ``"torch"`` (its network), or
    ``None`` where nothing here can run it (:func:`not_runnable` says why)."""
    from genrify.models import onnx

    if is_head_file(path):
        return "head"
    if graph_info(path) is not None and onnx.runtime_available():
        return "onnx"
    return "torch" if torch_installed() else None


def not_runnable(path: str | Path) -> str | None:
    """Why a model file cannot classify here, in one line naming the file and the cure, or ``None``.

    Reads the header only. A head file and a file with a graph where ONNX Runtime runs are fine; a
    file without a graph needs PyTorch (and can be given a graph with ``genrify export``).
    """
    if runtime_for(path) is not None:
        return None
    if graph_info(path) is not None:
        return f"{path}: its ONNX graph needs ONNX Runtime (pip install onnxruntime), or PyTorch for its weights"
    return (f"{path}: {_NO_GRAPH.split(' (')[0]}; with PyTorch ({install_command('train')}) run "
            f"`genrify export {path}` to add one")


def graph_info(path: str | Path) -> dict[str, Any] | None:
    """The description of the ONNX graph a model file holds (header only), or ``None`` without one.

    Raises
    ------
    ModelFileError
        The description is damaged.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(GRAPH_KEY)
            present = GRAPH_TENSOR in f.keys()  # noqa: SIM118 - safe_open is not a mapping
    except Exception:  # noqa: BLE001 - read_metadata gives the reason for a damaged header
        return None
    if raw is None and not present:
        return None
    try:
        described = json.loads(raw or "", parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        described = None
    if not present or not isinstance(described, dict):
        raise ModelFileError(f"{path}: the model file's ONNX graph is damaged (tensor {GRAPH_TENSOR} "
                             f"and metadata {GRAPH_KEY} must come together); `genrify export --force` remakes it")
    return described


@dataclass(kw_only=True)
class GraphModel(TrainedModel):
    """A trained genre model whose network runs as its ONNX graph on ONNX Runtime: no torch.

    Classification uses it as a :class:`GenreModel` (the same genres, parameters and segment
    length, the same answers within :data:`GRAPH_TOLERANCE`): :meth:`probabilities` answers in
    numpy, always on the graph. :attr:`network` is the torch network from the same file, loaded on
    first use: a GPU runs it through classification's one device route
    (:func:`genrify.classify.predict.predict_segments` with ``device``).
    """

    path: Path
    graph: OnnxGenreGraph
    #: The graph's description (:func:`graph_info`).
    described: dict[str, Any] = field(default_factory=dict)
    #: Segments per run of the graph: bounds memory (as classification's default for a torch model).
    batch_size: int = 64
    # The torch network, made by :attr:`network` when first asked for.
    _network: Any = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        """The file's name, as tables call the model."""
        return self.path.name

    @property
    def network(self) -> torch.nn.Module:
        """The torch network from the same file (a :class:`~genrify.models.GenreNetwork`), loaded on
        first use: needs PyTorch.

        Raises
        ------
        ModelFileError
            PyTorch is not installed, or the weights do not load.
        """
        if self._network is None:
            if not torch_installed():
                raise ModelFileError(f"{self.path}: running it on a GPU needs PyTorch ({install_command('train')})")
            self._network = _load_torch(self.path, read_metadata(self.path), None).network
        return self._network

    def logits(self, segments: np.ndarray) -> np.ndarray:
        """The logits ``(n, genres)`` (float32) of dB segments ``(n, n_mels, chunk_frames)``,
        :attr:`batch_size` at a time.

        Raises
        ------
        ParameterError
            Segments of another shape.
        """
        from genrify.errors import ParameterError

        segments = np.asarray(segments)
        if segments.ndim != 3 or segments.shape[1:] != (self.params.n_mels, self.chunk_frames):
            raise ParameterError(f"expected segments of shape (n, {self.params.n_mels}, {self.chunk_frames}), "
                                 f"got {segments.shape}")
        step = max(1, int(self.batch_size))
        out = np.empty((segments.shape[0], len(self.genres)), dtype=np.float32)
        for start in range(0, segments.shape[0], step):
            batch = np.ascontiguousarray(segments[start : start + step], dtype=np.float32)
            out[start : start + batch.shape[0]] = self.graph.logits(batch)
        return out

    def probabilities(self, segments: np.ndarray) -> np.ndarray:
        """Each segment's genre probabilities ``(n, genres)`` (float32): the softmax of :meth:`logits`,
        in float64 so that it sums to 1 as torch's does."""
        return softmax(self.logits(segments).astype(np.float64), axis=1).astype(np.float32)


def _load_graph(path: Path, meta: dict[str, Any], described: dict[str, Any],
                params: FeatureParams | None) -> GraphModel:
    """A network model file as a :class:`GraphModel`: the graph and the normalisation are read
    (not the weights) and the graph is run once on a plausible segment.

    Raises
    ------
    ModelFileError
        The graph or the normalisation is damaged, or the graph does not give ``(1, genres)``
        finite logits for one segment of ``chunk_frames`` frames.
    """
    from safetensors import safe_open

    from genrify.models.onnx import GENRE_INPUT, GENRE_OUTPUT, OnnxGenreGraph

    feature_params = FeatureParams.from_dict(meta["features"])  # valid: read_metadata checked it
    chunk, n_genres, n_mels = int(meta["chunk_frames"]), len(meta["genres"]), feature_params.n_mels
    if described.get("input") != GENRE_INPUT or described.get("outputs") != [GENRE_OUTPUT]:
        raise ModelFileError(f"{path}: the model file's ONNX graph is not a genre network's "
                             f"(input {_show(described.get('input'))}, outputs {_show(described.get('outputs'))})")
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = f.get_tensor(GRAPH_TENSOR)
            mean, std = f.get_tensor("norm.mean"), f.get_tensor("norm.std")
    except Exception as exc:  # noqa: BLE001 - a truncated body fails here, after a valid header
        raise ModelFileError(f"{path}: the model file is damaged ({_first_line(exc)})") from None
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path}: the model file's ONNX graph is damaged (tensor {GRAPH_TENSOR} is not bytes)")
    if mean.size != n_mels or std.size != n_mels:
        raise ModelFileError(f"{path}: the input normalisation does not match {n_mels} mel bands")
    mean, std = mean.astype(np.float32).reshape(-1), std.astype(np.float32).reshape(-1)
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ModelFileError(f"{path}: the input normalisation holds NaN, infinite or non-positive spreads")
    graph = OnnxGenreGraph(raw.tobytes(), source=str(path))
    # A dry run on one segment at the normalisation's mean: a graph that does not take the
    # metadata's shape, answers another number of genres, or holds NaN weights fails here, once,
    # rather than on every song.
    try:
        out = graph.logits(np.broadcast_to(mean.reshape(1, n_mels, 1), (1, n_mels, chunk)))
        problem = None if out.shape == (1, n_genres) else f"output of shape {out.shape}, not (1, {n_genres})"
        if problem is None and not np.isfinite(out).all():
            problem = "it answers NaN or infinite logits"
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for bad graphs and shapes
        problem = _first_line(exc)
    if problem is not None:
        raise ModelFileError(f"{path}: the model file's ONNX graph does not run on segments of "
                             f"({n_mels}, {chunk}) ({problem}); `genrify export --force` remakes it")
    model = GraphModel(
        path=path, graph=graph, genres=list(meta["genres"]), params=feature_params,
        normalization=Normalization(mean, std), architecture=meta["architecture"],
        architecture_config=dict(meta["architecture_config"]), chunk_frames=chunk,
        info=dict(meta.get("info", {})), genrify_version=str(meta.get("genrify_version", "?")), described=described,
    )
    if params is not None:
        model.check_features(params, source=str(path))
    return model


def _load_torch(path: Path, meta: dict[str, Any], params: FeatureParams | None) -> GenreModel:
    """A network model file as a :class:`GenreModel`: the torch network built from the registry and
    the file's weights (the graph, if any, is left out).

    Raises
    ------
    ModelFileError
        Damaged file, weights that do not fit the architecture, or other feature parameters than ``params``.
    """
    import torch
    from safetensors.torch import load_file

    from genrify.errors import ParameterError
    from genrify.models import GenreNetwork, build

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - a truncated body fails here, after a valid header
        raise ModelFileError(f"{path}: the model file is damaged ({_first_line(exc)})") from None
    tensors.pop(GRAPH_TENSOR, None)  # the graph is not the network's; load() ran it where it could
    feature_params = FeatureParams.from_dict(meta["features"])  # valid: read_metadata checked it
    if "norm.mean" not in tensors or "norm.std" not in tensors:
        raise ModelFileError(f"{path}: the input normalisation is missing")
    if tensors["norm.mean"].numel() != feature_params.n_mels or tensors["norm.std"].numel() != feature_params.n_mels:
        raise ModelFileError(f"{path}: the input normalisation does not match {feature_params.n_mels} mel bands")
    # A NaN weight or a zero spread makes every answer NaN: refuse the file, not each song.
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{path}: tensor {name} holds NaN or infinite values")
    if not bool((tensors["norm.std"] > 0).all()):
        raise ModelFileError(f"{path}: tensor norm.std holds values <= 0 (a band cannot be normalised by them)")

    def make_body() -> torch.nn.Module:
        try:
            return build(meta["architecture"], n_mels=feature_params.n_mels, n_genres=len(meta["genres"]),
                         **meta["architecture_config"])
        except ParameterError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - options within bounds may still not make a network
            raise ModelFileError(
                f"{path}: bad model metadata: architecture_config does not build {meta['architecture']!r} ({_first_line(exc)})"
            ) from None

    # Build on the meta device first (shapes only, no memory) and compare with the file's tensors:
    # options that would allocate far more than the file holds are refused before any allocation.
    chunk, n_genres = meta["chunk_frames"], len(meta["genres"])
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # loading pretrained weights into meta tensors warns that it is a no-op
        expected = {k: tuple(v.shape) for k, v in make_body().state_dict().items()}
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if found != expected:
        differ = sorted(set(found) ^ set(expected)) or sorted(k for k in found if found[k] != expected[k])
        raise ModelFileError(
            f"{path}: the weights do not fit architecture {meta['architecture']!r} "
            f"({len(differ)} tensor(s) missing, unexpected or of another shape, e.g. model.{differ[0]})"
        )
    body = make_body()
    try:
        body.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: the weights do not fit architecture {meta['architecture']!r} ({_first_line(exc)})") from None
    # A dry run on one chunk (its size is bounded by the metadata checks, the network's by the file)
    # finds options and chunk lengths the network cannot process (a pooling of 0, chunks shorter
    # than its pooling) here rather than on the first song. On the CPU, not the meta device: meta
    # kernels pull in torch's compiler stack, a second of start-up for every process that loads a model.
    body.eval()
    try:
        with torch.inference_mode():
            out_shape: tuple[int, ...] | str = tuple(body(torch.zeros(1, feature_params.n_mels, chunk)).shape)
    except Exception as exc:  # noqa: BLE001 - any op may refuse the shapes
        out_shape = _first_line(exc)
    if out_shape != (1, n_genres):
        problem = out_shape if isinstance(out_shape, str) else f"output of shape {out_shape}, not (1, {n_genres})"
        raise ModelFileError(
            f"{path}: bad model metadata: architecture_config and chunk_frames do not make a working "
            f"{meta['architecture']!r} network for chunks of {chunk} frames ({problem})"
        )
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


@dataclass(frozen=True)
class GraphResult:
    """What :func:`add_graph` did to a model file."""

    path: Path
    action: str  #: ``added``, ``replaced``, ``kept`` (it had one; nothing written) or ``checked``
    difference: float | None = None  #: the graph's largest gap from the torch network's logits
    size: int = 0  #: the graph's bytes


def add_graph(path: str | Path, *, force: bool = False, check_only: bool = False,
              tolerance: float = GRAPH_TOLERANCE) -> GraphResult:
    """Give a network model file its ONNX graph (``genrify export``): the file is rewritten
    atomically with the same tensors, byte for byte, and the same metadata, plus the graph.

    The network is loaded with PyTorch from the file's weights (safetensors and genrify's registry:
    no code from the file), exported, and its graph's logits on random segments must lie within
    ``tolerance`` of the network's, else nothing is written.

    Parameters
    ----------
    path
        A model file made by ``genrify train``.
    force
        Export again where the file already has a graph.
    check_only
        Write nothing: check the graph the file holds against its torch network.
    tolerance
        The largest gap allowed between the graph's logits and the network's.

    Raises
    ------
    ModelFileError
        Not a network model file (a head file, another file), PyTorch, ``onnx`` or ONNX Runtime
        missing, a graph that answers otherwise than the network, or the file cannot be written.
    """
    from genrify.models import onnx

    path = Path(path)
    meta = read_metadata(path)  # not a model file: its own one-line error
    if meta.get("head"):
        raise ModelFileError(f"{path}: a genre head (genrify learn) runs on numpy already; it has no network to export")
    if not torch_installed():
        raise ModelFileError(f"{path}: exporting a graph needs PyTorch ({install_command('train')})")
    if not onnx.runtime_available():
        raise ModelFileError(f"{path}: checking a graph needs ONNX Runtime (pip install onnxruntime)")
    described = graph_info(path)
    if check_only:
        if described is None:
            raise ModelFileError(f"{path}: {_NO_GRAPH}; `genrify export {path}` adds one")
        graph = _load_graph(path, meta, described, None).graph
        worst = graph_difference(_load_torch(path, meta, None), graph)
        if not worst <= tolerance:
            raise ModelFileError(f"{path}: its ONNX graph answers up to {worst:.2g} away from the network "
                                 f"(more than {tolerance:g}); `genrify export --force {path}` remakes it")
        return GraphResult(path, "checked", worst, len(graph.graph))
    if described is not None and not force:
        return GraphResult(path, "kept")
    model = _load_torch(path, meta, None)
    try:
        data, info = network_graph(model, tolerance=tolerance)
    except ImportError:
        raise ModelFileError(f"{path}: exporting a graph needs the onnx package (pip install onnx)") from None
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: not rewritten: {exc}") from None
    worst = graph_difference(model, onnx.OnnxGenreGraph(data))
    # Everything else is copied as stored: the same arrays (numpy, so dtypes and bytes stay) and
    # the same metadata strings; only the graph and its description are added or replaced.
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        metadata = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != GRAPH_TENSOR}  # noqa: SIM118
    tensors[GRAPH_TENSOR] = np.frombuffer(data, dtype=np.uint8).copy()
    metadata[GRAPH_KEY] = json.dumps(info)
    target = Path(os.path.realpath(path))  # a link to a model stays a link: the file it names is rewritten
    _write(tensors, metadata, target)
    return GraphResult(path, "replaced" if described is not None else "added", worst, len(data))


def _load_head(path: Path, meta: dict[str, Any], params: FeatureParams | None) -> Any:
    """The built-in model with the genre head in ``path`` (a :class:`~genrify.models.builtin.BuiltinGenreModel`).

    Raises
    ------
    ModelFileError
        The head is unusable, or ``params`` are not the taggers' input.
    """
    from genrify.models.builtin import GenreHead, load_builtin

    head = GenreHead.load(path)
    model = load_builtin(head=head)
    model.name = path.name
    model.info = {**model.info, **meta["info"]}
    if params is not None and params != model.params:
        diff = "; ".join(model.params.differences(params))
        raise ModelFileError(f"{path}: were made with other feature parameters than the model's: {diff}")
    return model


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
