"""Mini-batch iteration: shuffle, move to device, augment, normalize."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nasbench.data._augment import Augmentation

__all__ = ["iterate_batches"]


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    augmentation: Augmentation | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images, labels)`` batches covering ``x``/``y`` once.

    Order of work per batch: select (a random permutation when ``shuffle``), move to
    ``device`` (``non_blocking``), augment, then normalize per channel with ``mean``/``std``.
    The same generator seed gives the same batches.

    Args:
        x: Images (N, C, H, W), float in [0, 1].
        y: Labels (N,).
        batch_size: Samples per batch (the last one may be smaller unless ``drop_last``).
        shuffle: Visit samples in a random order drawn from ``generator``.
        generator: Needed when shuffling or augmenting. It must live on ``device`` if
            ``augmentation`` is enabled (augmentation runs on the batch's device; see
            ``nasbench.train.batch_generator``); the permutation is drawn on the generator's device.
        device: Where batches are yielded.
        augmentation: Training augmentation; ``None`` or a disabled one does nothing.
        mean: Per-channel mean subtracted after augmentation (with ``std``).
        std: Per-channel standard deviation divided by after augmentation.
        drop_last: Skip a final batch smaller than ``batch_size``.

    Raises:
        ValueError: On a non-positive batch size, mismatched lengths, a missing
            generator, a generator on another device than augmented batches, or only one
            of ``mean``/``std``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    augment = augmentation is not None and augmentation.enabled
    if (shuffle or augment) and generator is None:
        raise ValueError("a torch.Generator is required when shuffling or augmenting")
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std, or neither")
    device = torch.device(device)
    if augment and generator is not None and not _same_device(generator.device, device):
        raise ValueError(f"augmentation draws on the batches' device {device}, but the generator lives on "
                         f"{generator.device}; make it with nasbench.train.batch_generator(seed, device)")
    scale = shift = None
    if mean is not None and std is not None:
        m = torch.as_tensor(tuple(mean), dtype=torch.float32, device=device)
        s = torch.as_tensor(tuple(std), dtype=torch.float32, device=device)
        scale, shift = (1.0 / s).view(1, -1, 1, 1), (-m / s).view(1, -1, 1, 1)

    n = x.shape[0]
    order = None
    if shuffle:
        assert generator is not None
        order = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            xb, yb = x[idx], y[idx]
        xb = xb.to(device, non_blocking=True)
        yb = yb.to(device, non_blocking=True)
        if augment:
            assert augmentation is not None and generator is not None
            xb = augmentation(xb, generator)
        if scale is not None:
            xb = torch.addcmul(shift, xb, scale)
        yield xb, yb


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Same device type, and the same index where both name one (``cuda`` is the current ``cuda:N``)."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)
