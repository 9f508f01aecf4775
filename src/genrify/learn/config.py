"""Training settings: plain dataclasses, free of torch, so the CLI can show their defaults at once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from genrify import defaults
from genrify.errors import ParameterError

OPTIMIZERS = ("sgd", "adam", "adamw")
#: How songs are grouped when split (:data:`genrify.learn.splits.GroupBy`, kept here as a plain tuple
#: so that checking a config imports neither the store nor numpy).
GROUPINGS = ("auto", "artist", "song")
#: The devices a config names: ``cuda`` may carry an index (``cuda:1``).
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation.

    Attributes
    ----------
    random_offsets
        Shift each chunk by a random part of the hop, anew every epoch.
    time_masks, freq_masks
        Number of SpecAugment masks per chunk along time and frequency.
    time_mask_width, freq_mask_width
        Largest width of a mask, in frames and bands.
    pitch_shift
        Largest shift of a chunk along the mel axis, in bands, drawn per chunk: a rough change of
        key, so that a model learns patterns rather than the keys of the training songs.
    mixup
        Mixup's Beta(alpha, alpha) parameter; 0 disables it (applied per batch in training).
    """

    random_offsets: bool = True
    pitch_shift: int = 4
    time_masks: int = 1
    freq_masks: int = 1
    time_mask_width: int = 16
    freq_mask_width: int = 16
    mixup: float = 0.0


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in the model file)."""

    arch: str = defaults.DEFAULT_ARCH
    arch_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 50
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    decay: float = 1e-5  #: inverse-time learning-rate decay per step
    weight_decay: float = 0.0
    patience: int = 10  #: epochs without a better validation loss before stopping
    chunk_frames: int = defaults.CHUNK_FRAMES
    hop_frames: int = 64  #: hop between training chunks (overlap); evaluation uses no overlap
    augment: Augment = field(default_factory=Augment)
    seed: int = 0
    valid: float = 0.15
    test: float = 0.15
    group_by: str = "auto"
    device: str = "auto"  #: auto (a CUDA GPU when there is one), cpu or cuda

    def __post_init__(self) -> None:
        """Check every setting now, naming the field and what it may be: a bad value found only when
        training starts (or, for ``group_by``, silently taken as ``"auto"``) costs a run.

        Raises
        ------
        ParameterError
            With :attr:`~genrify.errors.ParameterError.field` set, so the CLI names its option.
        """
        # The registry's names, read without importing torch.
        from genrify.models import architectures

        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not value >= 1:
                _refuse(name, f"must be at least 1, not {value}")
        _one_of("arch", self.arch, architectures(), unknown="architecture")
        _one_of("optimizer", self.optimizer, OPTIMIZERS, unknown="optimiser")
        if not 0 < self.lr < float("inf"):
            _refuse("lr", f"must be positive and finite, not {self.lr}")
        _one_of("device", self.device.split(":", 1)[0], DEVICES, unknown="device", shown=self.device)
        _one_of("group_by", self.group_by, GROUPINGS, unknown="grouping")
        # make_split's own rule, checked here so that a run of hours is not refused at its split.
        check_split_fractions(self.valid, self.test)
        # Written so that NaN fails (every comparison with it is False) and so does infinity.
        if not 16 <= self.chunk_frames < float("inf"):
            _refuse("chunk_frames", f"must be at least 16 and finite, not {self.chunk_frames}")
        if not self.hop_frames > 0:
            _refuse("hop_frames", f"must be positive, not {self.hop_frames}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_split_fractions(valid: float, test: float) -> None:
    """Refuse validation and test fractions that cannot split songs: each must lie strictly between
    0 and 1, and their sum below 1 (so that training keeps some songs).

    The one rule of :func:`genrify.learn.splits.make_split` and :class:`TrainConfig`. It lives here,
    not in :mod:`genrify.learn.splits`, because making the CLI's :data:`TRAIN_DEFAULTS` checks it at
    import, and the splits module imports numpy and the store, which ``genrify --help`` must not wait for.

    Parameters
    ----------
    valid, test
        Fractions of each genre's songs (or artists) in the validation and test sets.

    Raises
    ------
    ParameterError
        With ``field="valid"`` and a problem naming ``{test}``, so that a front end names both its
        settings in its own words (:meth:`~genrify.errors.ParameterError.said_of`).
    """
    # Written so that NaN fails: every comparison with it is False.
    if not (0 < valid < 1 and 0 < test < 1 and valid + test < 1):
        _refuse("valid", f"and {{test}} must each be between 0 and 1, with a sum below 1; not {valid} and {test}")


def _refuse(field_name: str, problem: str) -> None:
    """Raise the :class:`ParameterError` of one field (its message says the field as Python names it)."""
    plain = problem.replace("{", "").replace("}", "")
    raise ParameterError(f"{field_name} {plain}", field=field_name, problem=problem)


def _one_of(field_name: str, value: str, allowed: tuple[str, ...] | list[str], *, unknown: str, shown: str | None = None) -> None:
    """Refuse ``value`` unless it is one of ``allowed``, saying them all (``shown``: the value as given,
    where ``value`` is a part of it, as a device's kind)."""
    if value in allowed:
        return
    given = repr(value if shown is None else shown)
    problem = f"must be one of {', '.join(allowed)}, not {given}"
    raise ParameterError(f"unknown {unknown} {given}: {field_name} {problem}", field=field_name, problem=problem)


#: The defaults, for help texts.
TRAIN_DEFAULTS = TrainConfig()
