"""Measured latency of a module: warm-up, then the median of timed repeats."""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Iterator

    from torch import nn

__all__ = ["measure_latency", "torch_threads"]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Temporarily fix torch's intra-op thread count (None: leave it)."""
    if threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.inference_mode()
def measure_latency(model: nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1,
                    device: str | torch.device = "cpu", warmup: int = 5, repeats: int = 20,
                    threads: int | None = None) -> float:
    """Median wall-clock milliseconds of one forward pass in eval mode.

    CUDA is synchronized around each timed call. The module's training mode is restored.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    x = torch.zeros((batch_size, *input_shape), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    try:
        with torch_threads(threads):
            for _ in range(max(0, warmup)):
                model(x)
            sync()
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                model(x)
                sync()
                times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        model.train(was_training)
    return float(statistics.median(times))
