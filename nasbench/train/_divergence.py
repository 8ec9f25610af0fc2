"""Divergence: a training whose loss is NaN/inf or explodes fails with its reason, without host syncs on a GPU."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nasbench.errors import TrainingError

__all__ = ["DIVERGENCE_FACTOR", "DivergenceGuard"]

#: A training loss above this many times the first step's (or ln(classes), if larger) has diverged.
#: Cross-entropy starts near ln(classes) (2.3 for 10); a learning rate that is far too high sends
#: it to 1e3-1e15 while the network stays at chance and the loss may never become inf.
DIVERGENCE_FACTOR = 100.0

#: On a GPU the losses are checked every this many steps (one host sync each).
CHECK_EVERY_CUDA = 50


class DivergenceGuard:
    """Watches the losses of one training and raises ``TrainingError`` when they diverge.

    ``update(loss, step)`` after every step: on the CPU each loss is checked at once (it costs
    nothing there); on a GPU the worst loss is kept on the device and checked every
    ``CHECK_EVERY_CUDA`` steps and at ``flush()``. A loss diverges when it is NaN, infinite, or
    above ``DIVERGENCE_FACTOR`` times the first loss seen (at least ln(``num_classes``)).

    Args:
        device: Where the losses live.
        num_classes: Classes of the task (the floor of the reference loss is their log).
        message: ``message(what, step)`` gives the error, e.g. ``"loss became nan at step 3 ..."``;
            ``what`` is ``"nan"``, ``"inf"`` or ``"1.2e+15 (over 100x its start, 2.31)"``.
        factor: The explosion bound's multiple (``DIVERGENCE_FACTOR``).
    """

    def __init__(self, device: str | torch.device, num_classes: int, message: Callable[[str, int], str],
                 factor: float = DIVERGENCE_FACTOR) -> None:
        self.device = torch.device(device)
        self.floor = math.log(max(2, int(num_classes)))
        self.message = message
        self.factor = float(factor)
        self.every = 1 if self.device.type == "cpu" else CHECK_EVERY_CUDA
        self.start: float | None = None
        self._worst: torch.Tensor | None = None  # max loss since the last check, NaN-propagating
        self._first_step = 0
        self._last_step = 0
        self._pending = 0

    @property
    def bound(self) -> float:
        """The loss above which training has diverged (inf before the first loss)."""
        return math.inf if self.start is None else self.factor * max(self.start, self.floor)

    def update(self, loss: torch.Tensor, step: int) -> None:
        """Take one step's loss (a tensor on the device, or a float)."""
        value = loss.detach().float() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        if self.start is None:  # the reference: one host read, at the first step
            start = float(value)
            if math.isfinite(start):
                self.start = start
        if self._pending == 0:
            self._first_step = step
            self._worst = value.clone()
        else:  # maximum() propagates NaN, so a NaN step is never hidden by a larger loss
            self._worst = torch.maximum(self._worst, value)  # type: ignore[arg-type]
        self._last_step = step
        self._pending += 1
        if self._pending >= self.every:
            self.flush()

    def flush(self) -> None:
        """Check the losses taken since the last check (a host sync on a GPU)."""
        if self._pending == 0 or self._worst is None:
            return
        worst = float(self._worst)
        steps = self._first_step if self._pending == 1 else f"{self._first_step}-{self._last_step}"
        self._pending = 0
        self._worst = None
        if math.isnan(worst) or math.isinf(worst):
            raise TrainingError(self.message("nan" if math.isnan(worst) else "inf", steps))  # type: ignore[arg-type]
        if worst > self.bound:
            raise TrainingError(self.message(
                f"{worst:.3g} (over {self.factor:g}x its start, {max(self.start or 0.0, self.floor):.3g})",
                steps))  # type: ignore[arg-type]

    def check_validation(self, val_loss: float, message: str) -> None:
        """Raise ``TrainingError(message)`` if the validation loss is NaN or infinite."""
        if not math.isfinite(val_loss):
            raise TrainingError(message)
