"""Train one architecture on in-memory splits under a step/epoch/time budget."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nasbench.data import default_augmentation, iterate_batches
from nasbench.errors import DataError, TrainingError
from nasbench.hardware import count_flops, count_params
from nasbench.train._config import TrainConfig
from nasbench.train._device import (
    autocast,
    batch_generator,
    cuda_speedups,
    place_data,
    private_rng,
    resolve_amp,
    resolve_device,
    seed_device,
)
from nasbench.train._divergence import DivergenceGuard
from nasbench.train._evaluate import evaluate
from nasbench.train._optim import make_optimizer, make_scheduler
from nasbench.train._result import TrainResult

if TYPE_CHECKING:
    from nasbench.data import DatasetSplits

__all__ = ["epoch_hook", "train_model"]

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, Any]], Any]

_EPOCH_HOOK: ContextVar[EpochCallback | None] = ContextVar("nasbench_epoch_hook", default=None)


@contextmanager
def epoch_hook(callback: EpochCallback) -> Iterator[None]:
    """Call ``callback(epoch_index, metrics)`` after every epoch of every ``train_model`` in this block.

    For code that trains through an evaluator and cannot pass ``on_epoch`` itself (Ray Tune
    reporting each epoch to its scheduler). Same arguments as ``on_epoch``, called after it;
    scoped to the current thread. An exception it raises stops training and propagates.
    """
    token = _EPOCH_HOOK.set(callback)
    try:
        yield
    finally:
        _EPOCH_HOOK.reset(token)




def _steps_per_epoch(n_train: int, batch_size: int) -> tuple[int, bool]:
    """Steps in one epoch and whether the last short batch is dropped.

    Short final batches are dropped (they give noisy steps and break batch norm at batch
    size 1) unless the whole split is smaller than one batch.
    """
    if n_train >= batch_size:
        return n_train // batch_size, True
    return 1, False


def _planned_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    steps = max(1, math.ceil(config.epochs * steps_per_epoch - 1e-9))
    if config.max_steps is not None:
        steps = min(steps, config.max_steps)
    return steps


def _divergence_fix(config: TrainConfig) -> str:
    return (f"lower the learning rate (lr={config.effective_lr:g}), keep grad_clip on, "
            "or add normalization to the model")


def train_model(
    model: nn.Module,
    data: DatasetSplits,
    config: TrainConfig | None = None,
    *,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    evaluate_test: bool = False,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data`` and report validation (and test) metrics.

    Parameters and FLOPs are counted first. Training runs under
    ``torch.random.fork_rng`` seeded with ``seed``, and batches are shuffled and
    augmented from a ``torch.Generator`` seeded with ``seed``, so on CPU the same seed
    gives the same weights and metrics, and the caller's global RNG state is untouched.
    On CUDA the model and batches use channels-last memory, cuDNN autotunes its kernels and
    (``amp="auto"``) bf16 autocast runs the forward pass. The model is left on ``device`` in
    eval mode.

    Args:
        model: The classifier to train; its output is (N, num_classes) logits.
        data: Train/val/test splits.
        config: Budget and optimizer options; ``None`` means ``TrainConfig()``.
        seed: Seed for shuffling, augmentation, dropout and any other torch randomness.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``... (see ``resolve_device``).
        evaluate_test: Also evaluate the test split after training.
        on_epoch: Called after every (possibly partial) epoch as
            ``on_epoch(epoch_index, metrics)`` with keys ``epoch`` (epochs completed, float),
            ``step``, ``train_loss``, ``val_accuracy``, ``val_loss``, ``lr`` and ``seconds``.
            An exception it raises (such as ``optuna.TrialPruned``) stops training and
            propagates.

    Returns:
        The metrics of the trained model.

    Raises:
        TrainingError: The training loss became NaN or infinite or exploded (over
            ``DIVERGENCE_FACTOR`` times its start), or the validation loss is not finite.
        DataError: The train or validation split is empty.
        ConfigError: ``device`` is not available, or ``amp="bf16"`` where it has no bf16.
    """
    config = TrainConfig() if config is None else config
    dev = resolve_device(device)
    resolve_amp(config.amp, dev)
    n_train = int(data.train_x.shape[0])
    if n_train == 0:
        raise DataError(
            f"dataset {data.name!r} has an empty training split; lower val/test fractions or raise the limit"
        )
    if data.val_x.shape[0] == 0:
        raise DataError(f"dataset {data.name!r} has an empty validation split; give it a val share")

    with private_rng(dev):
        params = count_params(model)
        flops = count_flops(model, data.input_shape)
        seed_device(dev, seed)
        with cuda_speedups(dev):
            val_acc, val_loss, train_loss, steps, seconds, epochs_done = _fit(
                model, data, config, seed, dev, on_epoch
            )
        test_acc = test_loss = None
        if evaluate_test:
            test_acc, test_loss = evaluate(
                model,
                data.test_x,
                data.test_y,
                batch_size=config.eval_batch_size,
                device=dev,
                mean=data.mean,
                std=data.std,
            )
    model.eval()
    return TrainResult(
        val_accuracy=val_acc,
        val_loss=val_loss,
        test_accuracy=test_acc,
        test_loss=test_loss,
        train_loss=train_loss,
        train_seconds=seconds,
        epochs=epochs_done,
        steps=steps,
        params=params,
        flops=flops,
        device=str(dev),
    )


def _fit(
    model: nn.Module,
    data: DatasetSplits,
    config: TrainConfig,
    seed: int,
    dev: torch.device,
    on_epoch: EpochCallback | None,
) -> tuple[float, float, float, int, float, float]:
    """The training loop; returns (val_acc, val_loss, train_loss, steps, seconds, epochs)."""
    n_train = int(data.train_x.shape[0])
    steps_per_epoch, drop_last = _steps_per_epoch(n_train, config.batch_size)
    planned = _planned_steps(config, steps_per_epoch)
    cuda = dev.type == "cuda"
    memory_format = torch.channels_last if cuda else torch.preserve_format
    model.to(dev, memory_format=memory_format)
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError("the model has no trainable parameters; nothing to train")
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, planned, config.warmup_steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    augmentation = config.augmentation
    if augmentation is None:
        augmentation = default_augmentation(data.name)
    generator = batch_generator(seed, dev)
    train_x, train_y = place_data(data.train_x, dev), place_data(data.train_y, dev)
    amp_dtype = resolve_amp(config.amp, dev)
    epoch = 0
    guard = DivergenceGuard(dev, data.num_classes, lambda what, at: (
        f"loss became {what} at step {at} (epoch {epoch + 1}); {_divergence_fix(config)}"))
    params = [p for p in model.parameters() if p.requires_grad]
    logger.info(
        "training %d steps (%d per epoch, batch %d) on %s",
        planned,
        steps_per_epoch,
        config.batch_size,
        dev,
    )

    start = time.perf_counter()
    step = epoch = 0
    done = False
    val_acc = val_loss = train_loss = math.nan
    while not done:
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
        seen = 0
        batches = iterate_batches(
            train_x,
            train_y,
            config.batch_size,
            shuffle=True,
            generator=generator,
            device=dev,
            augmentation=augmentation,
            mean=data.mean,
            std=data.std,
            drop_last=drop_last,
        )
        for xb, yb in batches:
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(dev, amp_dtype):
                loss = criterion(model(xb), yb)
            guard.update(loss, step + 1)  # CPU: checked now, before the update; GPU: every few steps
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            loss_sum += loss.detach().float() * yb.shape[0]
            seen += yb.shape[0]
            out_of_time = (
                config.max_seconds is not None and time.perf_counter() - start >= config.max_seconds
            )
            if step >= planned or out_of_time:
                done = True
                break
        if seen == 0:  # cannot happen with a non-empty split; guards an endless loop
            raise DataError(f"dataset {data.name!r} yielded no training batch")
        guard.flush()
        train_loss = loss_sum.item() / seen
        val_acc, val_loss = evaluate(
            model,
            data.val_x,
            data.val_y,
            batch_size=config.eval_batch_size,
            device=dev,
            mean=data.mean,
            std=data.std,
        )
        guard.check_validation(val_loss, f"validation loss became {val_loss} after epoch {epoch + 1} (step {step}); "
                                         f"{_divergence_fix(config)}")
        seconds = time.perf_counter() - start
        metrics = {
            "epoch": step / steps_per_epoch,
            "step": step,
            "train_loss": train_loss,
            "val_accuracy": val_acc,
            "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": seconds,
        }
        logger.info(
            "epoch %d (%.2f done, step %d): train_loss=%.4f val_acc=%.4f val_loss=%.4f %.1fs",
            epoch + 1,
            metrics["epoch"],
            step,
            train_loss,
            val_acc,
            val_loss,
            seconds,
        )
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        hook = _EPOCH_HOOK.get()
        if hook is not None:
            hook(epoch, dict(metrics))
        epoch += 1
    seconds = time.perf_counter() - start
    return val_acc, val_loss, train_loss, step, seconds, step / steps_per_epoch
