"""Accuracy and loss of a model on one split."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasbench.data import iterate_batches
from nasbench.errors import DataError
from nasbench.train._device import resolve_device

__all__ = ["evaluate"]


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``(x, y)``.

    Runs in eval mode under ``torch.inference_mode`` and puts the model back in the mode
    it was in. Results are synchronised to the host once, at the end.

    Args:
        model: The classifier; it is moved to ``device``.
        x: Images (N, C, H, W), float in [0, 1], not normalized.
        y: Integer labels (N,).
        batch_size: Evaluation batch size.
        device: Where to evaluate; ``None`` means where the model's parameters live.
        mean: Per-channel normalization mean (with ``std``), as in training.
        std: Per-channel normalization standard deviation.

    Returns:
        ``(accuracy, loss)`` with accuracy in [0, 1].

    Raises:
        DataError: The split is empty.
    """
    if x.shape[0] == 0:
        raise DataError("cannot evaluate on an empty split; give the dataset a val/test share")
    dev = _model_device(model) if device is None else resolve_device(device)
    model.to(dev)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    try:
        with torch.inference_mode():
            for xb, yb in iterate_batches(
                x, y, batch_size, shuffle=False, device=dev, mean=mean, std=std
            ):
                logits = model(xb).float()
                loss_sum += nn.functional.cross_entropy(logits, yb, reduction="sum")
                correct += (logits.argmax(dim=1) == yb).sum()
    finally:
        model.train(was_training)
    n = x.shape[0]
    return correct.item() / n, loss_sum.item() / n
