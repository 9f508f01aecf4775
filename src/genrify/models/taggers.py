"""The pretrained musicnn taggers without PyTorch: their input, their results, their files, and
the taggers on ONNX Runtime.

:mod:`genrify.models.musicnn` holds the taggers' torch networks (for embeddings, training and GPUs);
everything classification and ``genrify tags`` need of the taggers lives here, so that they run where
PyTorch is not installed: musicnn's input parameters and patches (:func:`preprocess`), a tagger's
result (:class:`TagResult`), the packaged weight files (:func:`weight_path`, :func:`read_tags`), and
:class:`OnnxTagger`, a tagger whose packaged ONNX graph runs on ONNX Runtime (:func:`load_onnx`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrify.audio.features import FeatureParams, check_waveform, log_mel
from genrify.core.extras import install_command
from genrify.errors import DependencyError, ModelFileError, ParameterError

#: The four pretrained taggers, by the original's names.
TAGGERS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")
#: Where the converted weights live inside the package.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
#: musicnn's input: 16 kHz, 512-point STFT every 256 samples, 96 Slaney mel bands, log10(10000 x + 1).
MUSICNN_PARAMS = FeatureParams(
    sample_rate=16000, n_mels=96, n_fft=512, hop_length=256, scale="log10p", gain=10000.0, top_db=None
)
#: Frames per patch: librosa.time_to_frames(3 s) + 1, about 2.99 s.
PATCH_FRAMES = 187
#: Format tag of the converted weight files' metadata.
FORMAT = "genrify-pretrained-tagger"
FORMAT_VERSION = 1
def patch_hop(hop_seconds: float | None) -> int:
    """Frames between patch starts: a whole patch by default, else as musicnn's ``input_overlap``.

    Raises
    ------
    ParameterError
        ``hop_seconds`` gives less than one frame.
    """
    if hop_seconds is None:
        return PATCH_FRAMES
    p = MUSICNN_PARAMS
    # librosa.time_to_frames, which the original uses: floor((s * sr - n_fft // 2) / hop).
    hop = int(np.floor((hop_seconds * p.sample_rate - p.n_fft // 2) / p.hop_length))
    if hop < 1:
        raise ParameterError(f"hop_seconds must give at least one frame (0.032 s or more), not {hop_seconds}")
    return hop


def patches(spectrogram: np.ndarray, hop: int = PATCH_FRAMES) -> np.ndarray:
    """Cut a time-major spectrogram ``(frames, n_mels)`` into patches ``(n, 187, n_mels)``.

    Patches start every ``hop`` frames; trailing frames that do not fill a patch are dropped, as in
    the original. Audio shorter than one patch (about 2.98 s), on which the original crashes, gives
    one patch filled by repeating it (:func:`genrify.audio.segments.fill_chunk`, genrify's one rule for
    short audio).

    Raises
    ------
    ParameterError
        No frames at all.
    """
    from genrify.audio.segments import fill_chunk

    frames = spectrogram.shape[0]
    if frames == 0:
        raise ParameterError("the audio gives no frames: nothing to tag")
    if frames < PATCH_FRAMES:
        return fill_chunk(spectrogram, PATCH_FRAMES, axis=0)[None]
    starts = range(0, frames - PATCH_FRAMES + 1, hop)
    if hop == PATCH_FRAMES:
        return np.ascontiguousarray(spectrogram[: len(starts) * hop].reshape(len(starts), PATCH_FRAMES, -1))
    return np.stack([spectrogram[s : s + PATCH_FRAMES] for s in starts])


def preprocess(waveform: np.ndarray, sample_rate: int, *, hop_seconds: float | None = None) -> np.ndarray:
    """musicnn's input batch from a mono waveform at any rate.

    Resamples to 16 kHz with soxr's HQ filter (librosa's default), computes the mel power
    spectrogram (512-point STFT, hop 256, 96 Slaney bands), rounds it to float16 and compresses it
    with ``log10(10000 x + 1)`` (:data:`MUSICNN_PARAMS`), and cuts it into 187-frame patches.

    Parameters
    ----------
    waveform
        1-D float waveform (for a file, :func:`genrify.classify.musicnn_tags.preprocess_file`
        decodes it).
    sample_rate
        Its rate in Hz.
    hop_seconds
        Time between patch starts (musicnn's ``input_overlap``); ``None`` for non-overlapping patches.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_patches, 187, 96)``.

    Raises
    ------
    ParameterError
        A waveform :func:`genrify.audio.features.check_waveform` refuses (not 1-D, not
        floating-point, empty, non-finite or absurdly loud samples), or a bad rate.
    """
    # The one rule log_mel applies, checked before resampling: a cast here would read integer PCM
    # as floats tens of thousands of times too loud, and soxr would smear a NaN over its neighbours.
    y = check_waveform(waveform)
    if sample_rate <= 0:
        raise ParameterError(f"sample rate must be positive, not {sample_rate}")
    hop = patch_hop(hop_seconds)
    target = MUSICNN_PARAMS.sample_rate
    if sample_rate != target:
        import soxr

        y = soxr.resample(y, sample_rate, target, quality="HQ")
    return patches(log_mel(y, MUSICNN_PARAMS).T, hop)


@dataclass
class TagResult:
    """A tagger's output for one song: the taggram and the features, one row per patch.

    Attributes
    ----------
    tags
        The tag names, in the taggram's column order.
    taggram
        float32 ``(n_patches, n_tags)`` probabilities.
    features
        The network's other outputs by name (see :class:`MusiCNN` and :class:`VGG`), as float32
        arrays with the patch as the first axis.
    patch_seconds
        Time between patch starts.
    short
        The audio was shorter than one patch (repeated to fill it).
    """

    tags: list[str]
    taggram: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    patch_seconds: float = PATCH_FRAMES * MUSICNN_PARAMS.seconds_per_frame
    short: bool = False

    def mean(self) -> np.ndarray:
        """The song's tag probabilities: the taggram's mean over patches (musicnn's ``top_tags``)."""
        return self.taggram.mean(axis=0)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable tags of the song, with their mean probabilities."""
        mean = self.mean()
        order = np.argsort(-mean, kind="stable")[:k]
        return [(self.tags[i], float(mean[i])) for i in order]


def weight_path(name: str) -> Path:
    """Where a pretrained tagger's packaged weights live.

    Raises
    ------
    ParameterError
        Unknown name.
    """
    if name not in TAGGERS:
        raise ParameterError(f"unknown tagger {name!r}; choose one of {', '.join(TAGGERS)}")
    return PRETRAINED_DIR / f"{name}.safetensors"


def read_tags(name: str, path: str | Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """A tagger's tag names and its weight file's metadata, read without the weights (nor torch).

    Raises
    ------
    ParameterError
        Unknown name.
    ModelFileError
        The weight file is missing or not a genrify musicnn tagger.
    """
    path = weight_path(name) if path is None else Path(path)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get("genrify")
        meta = json.loads(raw) if raw is not None else {}
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ModelFileError(f"{path}: not a genrify musicnn tagger (no {FORMAT} metadata)")
        return [str(t) for t in meta["tags"]], meta
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - missing file, bad header, no tags: one answer
        raise ModelFileError(f"{path}: the {name} tagger cannot be read ({type(exc).__name__})") from None


@dataclass
class OnnxTagger:
    """A pretrained tagger whose packaged ONNX graph runs on ONNX Runtime: the taggram without torch.

    It answers :meth:`tag_patches` as :class:`genrify.models.musicnn.Tagger` does for its taggram;
    the other outputs (``features``) need the torch network.

    Attributes
    ----------
    name
        The original's name (``MSD_musicnn``, ...).
    tags
        The 50 tag names, in output order.
    params
        The feature parameters of its input (:data:`MUSICNN_PARAMS`).
    """

    name: str
    tags: list[str]
    params: FeatureParams = MUSICNN_PARAMS
    _graph: Any = field(default=None, repr=False, compare=False)

    def tag_patches(self, batch: np.ndarray, *, hop_seconds: float | None = None, features: bool = False,
                    fast: bool = True) -> TagResult:
        """Tag an input batch ``(n_patches, 187, 96)`` (see :meth:`genrify.models.musicnn.Tagger.tag_patches`).

        Raises
        ------
        DependencyError
            ``features`` asked for: the embeddings come from the torch network.
        """
        if features:
            raise DependencyError(f"{self.name}'s features need PyTorch: {install_command('train')}")
        from genrify.models import onnx

        if self._graph is None:
            self._graph = onnx.tagger_graph(self.name)
        x = np.asarray(batch, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (PATCH_FRAMES, self.params.n_mels):
            raise ParameterError(f"expected patches of shape (n, {PATCH_FRAMES}, {self.params.n_mels}), got {x.shape}")
        taggram = self._graph.run(x)["taggram"]
        return TagResult(self.tags, taggram, patch_seconds=patch_hop(hop_seconds) * self.params.seconds_per_frame)


def load_onnx(name: str) -> OnnxTagger | None:
    """A pretrained tagger on ONNX Runtime, for its taggram (no torch), or ``None`` where no graph
    ships for it (the VGG taggers: :func:`genrify.models.musicnn.load_tagger` loads those).

    Raises
    ------
    ParameterError
        Unknown name.
    ModelFileError
        The weight file (holding the tag names) is missing or damaged.
    """
    from genrify.models import onnx

    weight_path(name)  # an unknown name fails here, with the list of names
    if not onnx.available(name):
        return None
    tags, _ = read_tags(name)
    return OnnxTagger(name, tags)
