"""Train and evaluate one architecture: budgets, optimizers, seeded and reproducible."""

from __future__ import annotations

from nasbench.train._config import TrainConfig
from nasbench.train._device import (
    AMP_MODES,
    autocast,
    batch_generator,
    channels_last_ok,
    cuda_speedups,
    place_data,
    private_rng,
    resolve_amp,
    resolve_device,
    seed_device,
)
from nasbench.train._evaluate import evaluate
from nasbench.train._result import TrainResult
from nasbench.train._trainer import epoch_hook, train_model

__all__ = [
    "AMP_MODES",
    "autocast",
    "batch_generator",
    "channels_last_ok",
    "cuda_speedups",
    "place_data",
    "private_rng",
    "resolve_amp",
    "TrainConfig",
    "TrainResult",
    "epoch_hook",
    "evaluate",
    "resolve_device",
    "seed_device",
    "train_model",
]
