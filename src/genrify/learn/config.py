"""Training settings: plain dataclasses, free of torch, so the CLI can show their defaults at once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from genrify import defaults
from genrify.errors import ParameterError

OPTIMIZERS = ("sgd", "adam", "adamw")


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
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ParameterError("epochs, batch size and patience must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"unknown optimiser {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            raise ParameterError(f"learning rate must be positive, not {self.lr}")
        if self.device.split(":", 1)[0] not in ("auto", "cpu", "cuda"):
            raise ParameterError(f"unknown device {self.device!r}; choose one of auto, cpu, cuda")
        if self.chunk_frames < 16 or not 0 < self.hop_frames:
            raise ParameterError("chunk_frames must be at least 16 and hop_frames positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The defaults, for help texts.
TRAIN_DEFAULTS = TrainConfig()
