"""Training the OFA supernet: progressive shrinking, sandwich sampling, in-place distillation."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from nasbench._checkpoint import load_checkpoint, plain, save_checkpoint
from nasbench.errors import ConfigError, NasbenchError
from nasbench.ofa._supernet import (
    PHASES,
    OFASupernet,
    largest_subnet,
    phase_kinds,
    sample_subnet,
    smallest_subnet,
)
from nasbench.train._divergence import DivergenceGuard

if TYPE_CHECKING:
    from nasbench.data import DatasetSplits
    from nasbench.space import Genome, MacroSpace

__all__ = ["OFAConfig", "OFAEpoch", "OFAJob", "OFATrainer", "recalibrate_bn", "calibration_batches"]

logger = logging.getLogger(__name__)

DEFAULT_PHASES = (("full", 4), ("kernel", 2), ("depth", 2), ("expansion", 2), ("width", 2))


@dataclass(frozen=True)
class OFAConfig:
    """Progressive-shrinking schedule and optimizer settings.

    Args:
        phases: ``(phase, epochs)`` in order; phases are ``full`` (largest network only), then
            ``kernel``, ``depth``, ``expansion``, ``width``, each making one more dimension elastic.
        batch_size: Images per step.
        lr: SGD (Nesterov, momentum 0.9) learning rate of the ``full`` phase, cosine per step.
        shrink_lr: Learning rate of the later phases (OFA fine-tunes with a smaller one).
        weight_decay: SGD weight decay.
        random_subnets: Random subnets per step besides the largest and the smallest (sandwich rule).
        distill: Train the smaller subnets on the largest one's soft labels (in-place distillation).
    """

    phases: tuple[tuple[str, int], ...] = DEFAULT_PHASES
    batch_size: int = 64
    lr: float = 0.05
    shrink_lr: float = 0.02
    weight_decay: float = 3e-5
    random_subnets: int = 2
    distill: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", tuple((str(p), int(e)) for p, e in self.phases))
        names = [p for p, _ in self.phases]
        if not names or any(p not in PHASES for p in names) or names != sorted(names, key=PHASES.index) \
                or len(set(names)) != len(names):
            raise ConfigError(f"OFA phases must be a non-empty ordered subset of {', '.join(PHASES)}, got {names}")
        if any(e < 1 for _, e in self.phases):
            raise ConfigError(f"every OFA phase needs >= 1 epoch, got {dict(self.phases)}")
        if self.batch_size < 1 or self.random_subnets < 0 or not self.lr > 0 or not self.shrink_lr > 0:
            raise ConfigError("OFA needs batch size >= 1, random subnets >= 0 and positive learning rates")

    @property
    def epochs(self) -> int:
        """Total epochs over all phases."""
        return sum(e for _, e in self.phases)

    @classmethod
    def parse_phases(cls, text: str) -> tuple[tuple[str, int], ...]:
        """``"full:4,kernel:2,depth:2"`` -> ``(("full", 4), ("kernel", 2), ("depth", 2))``."""
        out = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, epochs = part.partition(":")
            if not epochs.strip().isdigit():
                raise ConfigError(f"--ofa-phases wants PHASE:EPOCHS pairs like full:4,kernel:2; got {part!r}")
            out.append((name.strip(), int(epochs)))
        return tuple(out)


@dataclass
class OFAEpoch:
    """What one supernet epoch did."""

    epoch: int
    phase: str
    train_loss: float
    seconds: float
    largest_val_accuracy: float = math.nan
    smallest_val_accuracy: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)


def calibration_batches(data: DatasetSplits, n_images: int = 512, batch_size: int = 64, seed: int = 0,
                        device: str | torch.device = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed set of normalized training batches for BatchNorm recalibration."""
    from nasbench.data import iterate_batches
    from nasbench.train import batch_generator

    gen = batch_generator(seed, "cpu")  # the same images on every device (the split lives on the host)
    n = min(n_images, len(data.train_y))
    idx = torch.randperm(len(data.train_y), generator=gen, device=gen.device)[:n].to(data.train_y.device)
    return list(iterate_batches(data.train_x[idx], data.train_y[idx], batch_size, shuffle=False, device=device,
                                mean=data.mean, std=data.std))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[tuple[torch.Tensor, Any]]) -> nn.Module:
    """Reset every BatchNorm's statistics and re-estimate them on ``batches`` (cumulative average).

    Shared weights serve many subnets, so the supernet's running statistics fit none of them;
    OFA re-estimates them per subnet on a few training batches. Returns ``model`` in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for xb, _ in batches:
        model(xb)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return model.eval()


class OFATrainer:
    """Trains an ``OFASupernet`` with progressive shrinking; checkpoint after every epoch.

    Each step trains the largest subnet on the labels, then (once a phase makes something
    elastic) the smallest and ``random_subnets`` random subnets of the current phase on the
    largest one's soft labels, accumulating gradients for one SGD step (sandwich rule with
    in-place distillation, Yu et al., 2020). Entering the ``expansion`` phase sorts expanded
    channels by importance so that narrower subnets keep the most important ones.

    Args:
        space: The macro space.
        data: Dataset splits (train for weights, val for the per-epoch report).
        config: Schedule and optimizer.
        seed: Seeds initialization, batch order, augmentation and subnet sampling.
        device: Torch device. On CUDA the training split is copied there once and nothing in the
            step loop waits for the GPU (``DivergenceGuard`` checks the losses every few steps).
        amp: ``auto`` (bf16 autocast on a CUDA device with bf16), ``off`` or ``bf16`` (see
            ``nasbench.train.resolve_amp``); a runtime setting, not stored in checkpoints.
    """

    def __init__(self, space: MacroSpace, data: DatasetSplits, config: OFAConfig | None = None, *, seed: int = 0,
                 device: str | torch.device = "cpu", amp: str = "auto") -> None:
        from nasbench.data import default_augmentation
        from nasbench.train import place_data, resolve_amp

        self.space, self.data, self.config, self.seed = space, data, config or OFAConfig(), seed
        self.device = torch.device(device)
        self.amp_dtype = resolve_amp(amp, self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = OFASupernet(space, data.num_classes, data.input_shape).to(self.device)
        self._train_xy = (place_data(data.train_x, self.device), place_data(data.train_y, self.device))
        self._guard = DivergenceGuard(self.device, data.num_classes, lambda what, step: (
            f"OFA supernet loss became {what} at epoch {self.epoch} step {step} ({self.phase}); lower the learning "
            f"rate lr ({self.config.lr:g}) or shrink_lr ({self.config.shrink_lr:g})"))
        self.augmentation = default_augmentation(data.name)
        self.phase_index = 0
        self.phase_epoch = 0
        self.history: list[OFAEpoch] = []
        self._steps = max(1, len(data.train_y) // min(self.config.batch_size, len(data.train_y)))
        self._new_optimizer()

    @property
    def done(self) -> bool:
        """Whether every phase has run."""
        return self.phase_index >= len(self.config.phases)

    @property
    def finished(self) -> bool:
        """Same as ``done`` (the name ``RaySupernet`` asks for)."""
        return self.done

    @property
    def phase(self) -> str:
        """The phase the next epoch trains (the last one once done)."""
        return self.config.phases[min(self.phase_index, len(self.config.phases) - 1)][0]

    @property
    def epoch(self) -> int:
        """Epochs trained so far, over all phases."""
        return len(self.history)

    def _new_optimizer(self) -> None:
        phase, epochs = self.config.phases[min(self.phase_index, len(self.config.phases) - 1)]
        lr = self.config.lr if phase == "full" else self.config.shrink_lr
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                   weight_decay=self.config.weight_decay)
        total = epochs * self._steps
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))

    def train_epoch(self) -> OFAEpoch:
        """One epoch of the current phase; moves to the next phase after its last epoch."""
        from nasbench.data import iterate_batches
        from nasbench.train import batch_generator, private_rng, seed_device

        if self.done:
            raise NasbenchError("the OFA supernet already ran every phase")
        t0 = time.perf_counter()
        phase = self.phase
        first_expansion = next((i for i, (p, _) in enumerate(self.config.phases) if "expansion" in phase_kinds(p)), None)
        if self.phase_index == first_expansion and self.phase_epoch == 0:
            self.net.sort_channels()
            self._new_optimizer()  # momentum buffers belong to the old channel order
        d = self.data
        seed = self.seed * 100_003 + self.epoch
        gen = batch_generator(seed, self.device)
        rng = random.Random(seed)
        bs = min(self.config.batch_size, len(d.train_y))
        batches = iterate_batches(*self._train_xy, bs, shuffle=True, generator=gen, device=self.device,
                                  augmentation=self.augmentation if self.augmentation.enabled else None,
                                  mean=d.mean, std=d.std, drop_last=True)
        self.net.train()
        losses: list[torch.Tensor] = []
        with private_rng(self.device):
            seed_device(self.device, seed)
            for step, (xb, yb) in enumerate(batches):
                losses.append(self.step(xb, yb, rng=rng, step=step))
        self._guard.flush()
        report = OFAEpoch(epoch=self.epoch, phase=phase, seconds=0.0,
                          train_loss=float(torch.stack(losses).mean()) if losses else 0.0)
        report.largest_val_accuracy, big_loss = self.subnet_accuracy(largest_subnet(self.space))
        self._guard.check_validation(big_loss, f"OFA supernet validation loss became {big_loss} at epoch {self.epoch} "
                                               f"({phase}); lower the learning rate lr ({self.config.lr:g})")
        report.smallest_val_accuracy = self.subnet_accuracy(smallest_subnet(self.space, phase_kinds(phase)))[0]
        report.seconds = time.perf_counter() - t0
        self.history.append(report)
        self.phase_epoch += 1
        if self.phase_epoch >= self.config.phases[self.phase_index][1]:
            self.phase_index += 1
            self.phase_epoch = 0
            if not self.done:
                self._new_optimizer()
        logger.info("OFA epoch %d (%s): train loss %.4f, val acc largest %.4f / smallest %.4f, %.1fs",
                    report.epoch, phase, report.train_loss, report.largest_val_accuracy,
                    report.smallest_val_accuracy, report.seconds)
        return report

    def _data_fingerprint(self) -> list:
        """Dataset name, split sizes and a checksum of the training split (a reused supernet must not have seen
        the images it is ranked on)."""
        d = self.data
        return [d.name, len(d.train_y), len(d.val_y), len(d.test_y), int(d.train_y.sum()),
                round(float(d.train_x.double().sum()), 3)]

    def step(self, xb: torch.Tensor, yb: torch.Tensor, *, phase: str | None = None,
             rng: random.Random | None = None, step: int = 0) -> torch.Tensor:
        """One sandwich step of ``phase`` (default: the current one) on a normalized batch.

        The largest subnet learns the labels; once the phase makes something elastic, the
        smallest and ``random_subnets`` subnets drawn from ``rng`` (default: a stream of the trainer's
        own, seeded with ``seed``) learn its soft labels
        (in-place distillation); one SGD step over the accumulated gradients. Returns the
        largest subnet's loss, detached, on the device (reading it is a host sync on a GPU).
        A NaN, infinite or exploding loss raises TrainingError (``DivergenceGuard``: on the CPU
        before its backward pass, on a GPU every few steps; ``step`` numbers the message).
        """
        from nasbench.train import autocast

        kinds = phase_kinds(phase or self.phase)
        if rng is None:  # calls outside train_epoch draw from one stream of their own
            rng = self._step_rng = getattr(self, "_step_rng", None) or random.Random(self.seed)
        self.opt.zero_grad(set_to_none=True)
        self.net.set_active(largest_subnet(self.space))
        with autocast(self.device, self.amp_dtype):
            logits = self.net(xb).float()
        loss = F.cross_entropy(logits, yb)
        self._backward(loss, step)
        if kinds:
            soft = logits.detach().softmax(1)
            subnets = [smallest_subnet(self.space, kinds)]
            subnets += [sample_subnet(self.space, rng, kinds) for _ in range(self.config.random_subnets)]
            for g in subnets:
                self.net.set_active(g)
                with autocast(self.device, self.amp_dtype):
                    out = self.net(xb).float()
                sub = -(soft * out.log_softmax(1)).sum(1).mean() if self.config.distill else F.cross_entropy(out, yb)
                self._backward(sub, step)
        self.opt.step()
        self.sched.step()
        return loss.detach()

    def _backward(self, loss: torch.Tensor, step: int) -> None:
        self._guard.update(loss, step)
        loss.backward()

    def subnet_accuracy(self, genome: Genome, split: str = "val", calibration: list | None = None) -> tuple[float, float]:
        """(accuracy, loss) of the extracted subnet on ``split`` after BatchNorm recalibration."""
        from nasbench.train import evaluate

        batches = calibration if calibration is not None else self.calibration
        model = recalibrate_bn(self.net.extract(genome), batches)
        x, y = (self.data.val_x, self.data.val_y) if split == "val" else (self.data.test_x, self.data.test_y)
        return evaluate(model, x, y, device=self.device, mean=self.data.mean, std=self.data.std)

    @property
    def calibration(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The fixed BatchNorm-recalibration batches (built once)."""
        if not hasattr(self, "_calibration"):
            self._calibration = calibration_batches(self.data, seed=self.seed, device=self.device)
        return self._calibration

    def run(self, on_epoch: Callable[[OFAEpoch], None] | None = None,
            checkpoint: str | Path | None = None) -> list[OFAEpoch]:
        """Train the remaining epochs of every phase, checkpointing after each; return this call's reports."""
        out = []
        while not self.done:
            report = self.train_epoch()
            if checkpoint is not None:
                self.save(checkpoint)
            if on_epoch is not None:
                on_epoch(report)
            out.append(report)
        return out

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Supernet weights, optimizer and schedule state, phase position and history."""
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "phase_index": self.phase_index, "phase_epoch": self.phase_epoch, "seed": self.seed,
                "config": plain(asdict(self.config)), "space_hash": self.space.hash,
                "num_classes": self.net.num_classes, "input_shape": list(self.net.input_shape),
                "data": self._data_fingerprint(),
                "history": [asdict(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` output (refuses another space, dataset shape or schedule)."""
        if state.get("space_hash") != self.space.hash:
            raise ConfigError("OFA checkpoint was made for another space; delete it or pass another --study/--supernet")
        if state.get("num_classes") != self.net.num_classes or list(state.get("input_shape", [])) != list(self.net.input_shape):
            raise ConfigError(f"OFA checkpoint is for {state.get('num_classes')} classes and input "
                              f"{state.get('input_shape')}, this dataset has {self.net.num_classes} and "
                              f"{list(self.net.input_shape)}")
        if "data" in state and state["data"] != self._data_fingerprint():
            raise ConfigError(f"OFA checkpoint was trained on other data or splits ({state['data'][0]}, seed "
                              f"{state.get('seed')}); its validation/test images may be training images here: "
                              "repeat --dataset/--seed/--limit or pass another --supernet")
        if state.get("config") != plain(asdict(self.config)):
            raise ConfigError("OFA checkpoint was made with another schedule or optimizer; repeat those flags "
                              "or pass another --study")
        self.net.load_state_dict(state["net"])
        self.phase_index, self.phase_epoch = int(state["phase_index"]), int(state["phase_epoch"])
        self.history = [OFAEpoch(**h) for h in state["history"]]
        if not self.done:
            self._new_optimizer()
            self.opt.load_state_dict(state["opt"])
            self.sched.load_state_dict(state["sched"])

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (read back with ``weights_only=True``)."""
        save_checkpoint(self.state_dict(), path)

    def load(self, path: str | Path) -> bool:
        """Resume from ``path`` if it exists; return whether it did."""
        state = load_checkpoint(path, self.device, "OFA checkpoint")
        if state is None:
            return False
        self.load_state_dict(state)
        logger.info("resumed OFA supernet from %s: epoch %d, phase %s", path, self.epoch, self.phase)
        return True


@dataclass(frozen=True)
class OFAJob:
    """An OFA supernet training described by picklable inputs; ``job()`` builds the trainer where it runs.

    Used to train the supernet in a Ray actor (``nasbench.runner.RaySupernet``). The job carries
    the space itself (pickled with it), so remote workers need no shared filesystem: a space
    file given as ``space`` is loaded here, where the job is made.

    Args:
        space: Built-in space name (loaded where the job runs), macro space, or ``.py`` space file
            (loaded now; only the space travels with the job).
        dataset: Dataset spec, loaded where the job runs with ``seed`` and ``limit``.
        config: Schedule and optimizer.
        seed: Seed of the training and of the splits.
        device: Torch device; ``"auto"`` is resolved where the job runs.
        limit: Cap on every split.
        amp: Mixed precision where the job runs (``auto``, ``off``, ``bf16``).
    """

    space: str | MacroSpace
    dataset: str
    config: OFAConfig
    seed: int = 0
    device: str = "auto"
    limit: int | None = None
    amp: str = "auto"

    def __post_init__(self) -> None:
        from nasbench._spaces import SPACES, load_space

        if isinstance(self.space, str) and self.space not in SPACES.names():  # a file: carry the space, not the path
            object.__setattr__(self, "space", load_space(self.space))

    def __call__(self) -> OFATrainer:
        """Load the space (for a built-in name) and the data, and build the trainer."""
        from nasbench._spaces import load_space
        from nasbench.data import load_dataset
        from nasbench.train import resolve_device

        data = load_dataset(self.dataset, seed=self.seed, limit=self.limit)
        return OFATrainer(load_space(self.space), data, self.config, seed=self.seed,
                          device=str(resolve_device(self.device)), amp=self.amp)
