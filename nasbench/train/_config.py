"""Training options: one frozen value, validated when built."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nasbench.errors import ConfigError
from nasbench.train._device import AMP_MODES

if TYPE_CHECKING:
    from nasbench.data import Augmentation

__all__ = ["TrainConfig"]

OPTIMIZERS = ("sgd", "adamw")
_DEFAULT_LR = {"sgd": 0.05, "adamw": 1e-3}
_DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainConfig:
    """How to train one architecture: budget, optimizer, schedule and augmentation.

    The budget is whichever of ``epochs``, ``max_steps`` and ``max_seconds`` ends first.
    The learning rate follows a linear warm-up of ``warmup_steps`` then a cosine decay to
    zero over the planned number of steps (``epochs`` capped by ``max_steps``); a
    ``max_seconds`` budget may stop training before the decay is complete.

    Attributes:
        epochs: Passes over the training split; fractions allowed (``0.5`` = half an epoch).
        max_steps: Optional cap on optimizer steps.
        max_seconds: Optional cap on wall-clock seconds of the training loop.
        batch_size: Training batch size.
        optimizer: ``"sgd"`` (Nesterov momentum) or ``"adamw"``.
        lr: Peak learning rate; ``None`` means 0.05 for SGD and 1e-3 for AdamW.
        momentum: SGD momentum (ignored by AdamW).
        nesterov: Use Nesterov momentum with SGD (only when ``momentum > 0``).
        weight_decay: Decay of conv/linear weights (never norms or biases); ``None`` means
            5e-4 for SGD and 0.05 for AdamW.
        label_smoothing: Cross-entropy label smoothing in [0, 1).
        grad_clip: Max global gradient norm, or ``None`` for no clipping.
        augmentation: Training augmentation; ``None`` means the dataset's default.
        eval_batch_size: Batch size for validation and test evaluation.
        amp: ``"auto"`` (bf16 autocast on a CUDA device with bf16), ``"off"``, or ``"bf16"``
            (refused where the device has no bf16; see ``resolve_amp``).
        warmup_steps: Linear warm-up steps before the cosine decay.
    """

    epochs: float = 1
    max_steps: int | None = None
    max_seconds: float | None = None
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float | None = None
    label_smoothing: float = 0.0
    grad_clip: float | None = 5.0
    augmentation: Augmentation | None = None
    eval_batch_size: int = 512
    amp: str = "auto"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if not _is_number(self.epochs) or self.epochs <= 0:
            raise ConfigError(f"epochs must be a positive number, got {self.epochs!r}")
        if self.max_steps is not None and (not _is_int(self.max_steps) or self.max_steps < 1):
            raise ConfigError(
                f"max_steps must be a positive integer or None, got {self.max_steps!r}"
            )
        if self.max_seconds is not None and (
            not _is_number(self.max_seconds) or self.max_seconds <= 0
        ):
            raise ConfigError(
                f"max_seconds must be a positive number or None, got {self.max_seconds!r}"
            )
        for name in ("batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}"
            )
        if self.lr is not None and (not _is_number(self.lr) or self.lr <= 0):
            raise ConfigError(f"lr must be a positive number or None, got {self.lr!r}")
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.weight_decay is not None and (
            not _is_number(self.weight_decay) or self.weight_decay < 0
        ):
            raise ConfigError(
                f"weight_decay must be a non-negative number or None, got {self.weight_decay!r}"
            )
        if not _is_number(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.grad_clip is not None and (not _is_number(self.grad_clip) or self.grad_clip <= 0):
            raise ConfigError(
                f"grad_clip must be a positive number or None, got {self.grad_clip!r}"
            )
        if self.augmentation is not None and not callable(self.augmentation):
            raise ConfigError("augmentation must be an Augmentation (callable) or None")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"unknown amp mode {self.amp!r}; use one of {', '.join(AMP_MODES)}")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ConfigError(
                f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}"
            )

    @property
    def effective_lr(self) -> float:
        """The peak learning rate actually used (``lr`` or the optimizer's default)."""
        return float(self.lr) if self.lr is not None else _DEFAULT_LR[self.optimizer]

    @property
    def effective_weight_decay(self) -> float:
        """The weight decay actually used (``weight_decay`` or the optimizer's default)."""
        if self.weight_decay is not None:
            return float(self.weight_decay)
        return _DEFAULT_WEIGHT_DECAY[self.optimizer]
