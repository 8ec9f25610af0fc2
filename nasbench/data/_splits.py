"""The in-memory dataset value every trainer and evaluator consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DatasetSplits"]


@dataclass(frozen=True)
class DatasetSplits:
    """Seeded train/val/test splits held as tensors.

    Images are float32 NCHW scaled to [0, 1] (not normalized); labels are int64.
    ``mean``/``std`` are per-channel statistics of the training split, applied by the
    batch pipeline after augmentation.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))
