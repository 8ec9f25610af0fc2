"""What one training run reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TrainResult"]


@dataclass(frozen=True)
class TrainResult:
    """Metrics of one trained architecture.

    Attributes:
        val_accuracy: Validation accuracy in [0, 1] after training.
        val_loss: Mean validation cross-entropy (no label smoothing).
        test_accuracy: Test accuracy, or ``None`` when the test split was not evaluated.
        test_loss: Mean test cross-entropy, or ``None``.
        train_loss: Mean training loss over the last (possibly partial) epoch.
        train_seconds: Wall-clock seconds of the training loop, per-epoch evaluation included.
        epochs: Epochs completed, as a fraction (``steps / steps_per_epoch``).
        steps: Optimizer steps taken.
        params: Trainable parameter count.
        flops: Multiply-accumulates for one image.
        device: The device trained on (``"cpu"``, ``"cuda:0"``...).
    """

    val_accuracy: float
    val_loss: float
    test_accuracy: float | None
    test_loss: float | None
    train_loss: float
    train_seconds: float
    epochs: float
    steps: int
    params: int
    flops: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)
