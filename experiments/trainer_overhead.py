"""Throughput of nasbench (builder + trainer) against plain PyTorch on the same ResNet.

Trains one fixed ResNet-like architecture four ways, interleaved in one process:

    A  nasbench trainer (``train_model``) on the nasbench-built model
    B  a hand-written plain PyTorch loop on a hand-written plain PyTorch model
    C  the plain loop on the nasbench-built model            (isolates the builder)
    D  the nasbench trainer on the plain model               (isolates the trainer)

The architecture is a genome of the built-in ``resnet`` space: 3x3 conv stem (16) ->
stages of ``resnet_basic`` blocks (widths 32/64/128, strides 1/2/2, ``--depth`` blocks
each) -> global average pool -> linear. The plain model is written layer by layer; the
script checks it has the same parameter count, the same output shape and, with the
nasbench weights copied in, the same outputs.

Both loops do the same math: SGD with Nesterov momentum 0.9, lr 0.05 with a cosine decay
to zero over ``--steps`` steps, weight decay 5e-4 on conv/linear weights only, gradient
norm clipping at 5 (``--no-grad-clip`` turns it off in both), the same batch size, the
same in-memory tensors, the same shuffling/augmentation generator and per-channel
normalization. The warm-up round starts all four variants from identical weights and
reports how far their final weights drift apart (0 means bit-identical training).

What is timed: the training loop only, images/s = steps * batch_size / seconds, measured
the same way for both loops by ``LoopClock``, a forward pre-hook on the model: a segment
runs from the first train-mode forward of an epoch to the end of that epoch (the next
eval-mode forward, i.e. ``train_model``'s validation, or the plain loop's explicit stop
after its final ``loss.item()``). So model/optimizer construction, FLOP counting,
validation and the first batch's shuffle/indexing in each epoch are excluded from both.
(``TrainResult.train_seconds`` is not used: it includes the per-epoch validation.) The
whole call, setup and validation included, is reported as ``call_seconds``.

``--clock wall`` (default) uses ``time.perf_counter``; ``--clock cpu`` uses the process CPU
time, which with ``--threads 1`` is almost insensitive to other processes on a shared
machine (with more threads, OpenMP spin-waits inflate it).

Variants run in rounds, each round in a rotated order (ABCD, BCDA, CDAB, ...), after one
untimed warm-up round, with a fixed number of torch threads. Prints one JSON object to
stdout; logs go to stderr.

    python experiments/trainer_overhead.py                       # synthetic, ~1.5 min
    python experiments/trainer_overhead.py --threads 1 --clock cpu --repeats 5  # busy machine
    python experiments/trainer_overhead.py --repeats 5 \\
        --dataset cifar10:../shared/data/cifar10/cifar10_test_jpg.tar.gz
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

try:
    import nasbench  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasbench import load_space
from nasbench.data import Augmentation, DatasetSplits, default_augmentation, load_dataset
from nasbench.train import TrainConfig, train_model

logger = logging.getLogger("trainer_overhead")

LR = 0.05
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
GRAD_CLIP = 5.0
WIDTHS = (32, 64, 128)
STRIDES = (1, 2, 2)
STEM_WIDTH = 16

A = "nasbench_trainer_on_nasbench_model"
B = "plain_loop_on_plain_model"
C = "plain_loop_on_nasbench_model"
D = "nasbench_trainer_on_plain_model"
VARIANTS = (A, B, C, D)


# --------------------------------------------------------------------------- models
def build_nasbench_model(
    depth: int, num_classes: int, input_shape: tuple[int, int, int]
) -> nn.Module:
    """The fixed genome of the built-in ``resnet`` space, built by nasbench."""
    space = load_space("resnet")
    values: dict[str, Any] = {"stem.width": STEM_WIDTH}
    for i, width in enumerate(WIDTHS, start=1):
        values[f"s{i}.width"] = width
        values[f"s{i}.depth"] = depth
        values.update({f"s{i}.b{j}.op": "resnet_basic" for j in range(depth)})
    return space.build(space.genome(values), num_classes=num_classes, input_shape=input_shape)


class PlainBasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU, conv3x3-BN, + (projection) shortcut, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class PlainResNet(nn.Module):
    """The same network written by hand: stem, 3 stages of basic blocks, pool, linear."""

    def __init__(self, depth: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem_conv = nn.Conv2d(in_channels, STEM_WIDTH, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(STEM_WIDTH)
        blocks, c_in = [], STEM_WIDTH
        for width, stride in zip(WIDTHS, STRIDES, strict=True):
            for j in range(depth):
                blocks.append(PlainBasicBlock(c_in, width, stride if j == 0 else 1))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.stem_bn(self.stem_conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers by position (both models define layers in the same order)."""
    src_items, dst_items = list(src.state_dict().items()), list(dst.state_dict().items())
    if len(src_items) != len(dst_items):
        raise RuntimeError(f"state dicts differ in length: {len(src_items)} vs {len(dst_items)}")
    state = {}
    for (s_name, s), (d_name, d) in zip(src_items, dst_items, strict=True):
        if s.shape != d.shape:
            raise RuntimeError(
                f"{s_name} {tuple(s.shape)} does not match {d_name} {tuple(d.shape)}"
            )
        state[d_name] = s.clone()
    dst.load_state_dict(state)


def check_same_architecture(nb: nn.Module, plain: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """Equal parameter counts, equal output shapes and (same weights) equal outputs."""
    n_nb = sum(p.numel() for p in nb.parameters())
    n_plain = sum(p.numel() for p in plain.parameters())
    if n_nb != n_plain:
        raise RuntimeError(f"parameter counts differ: nasbench {n_nb} vs plain {n_plain}")
    x = torch.rand((4, *input_shape), generator=torch.Generator().manual_seed(0))
    nb.eval()
    plain.eval()
    with torch.no_grad():
        out_nb, out_plain = nb(x), plain(x)
    nb.train()
    plain.train()
    if out_nb.shape != out_plain.shape:
        raise RuntimeError(
            f"output shapes differ: {tuple(out_nb.shape)} vs {tuple(out_plain.shape)}"
        )
    diff = (out_nb - out_plain).abs().max().item()
    if diff > 1e-5:
        raise RuntimeError(f"outputs differ by {diff:g} with identical weights")
    return {"params": n_nb, "output_shape": list(out_nb.shape), "outputs_max_abs_diff": diff}


# --------------------------------------------------------------------------- training
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


class LoopClock:
    """Times the training loop of either trainer by the same rule, from the model's forwards.

    A training segment starts at the first train-mode forward (of an epoch) and ends at
    the next eval-mode forward (``train_model`` validates after every epoch) or at
    ``stop()`` (the plain loop calls it after each epoch). Segments are summed, so setup
    (FLOP counting, optimizer), validation, and the first batch's preparation in each
    epoch are excluded from both trainers alike.
    """

    def __init__(self, model: nn.Module, clock: Callable[[], float]) -> None:
        self.seconds = 0.0
        self._clock = clock
        self._start: float | None = None
        self._handle = model.register_forward_pre_hook(self._pre_forward)

    def _pre_forward(self, module: nn.Module, _args: Any) -> None:
        if module.training:
            if self._start is None:
                self._start = self._clock()
        else:
            self.stop()

    def stop(self) -> None:
        """End the current training segment, if any."""
        if self._start is not None:
            self.seconds += self._clock() - self._start
            self._start = None

    def close(self) -> float:
        """Stop, remove the hook and return the summed seconds."""
        self.stop()
        self._handle.remove()
        return self.seconds


def _cosine(total: int) -> Callable[[int], float]:
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total))))


def plain_loop(
    model: nn.Module,
    data: DatasetSplits,
    *,
    steps: int,
    batch_size: int,
    augmentation: Augmentation,
    grad_clip: float | None,
    seed: int,
    clock: Callable[[], float],
) -> dict[str, float]:
    """A minimal hand-written training loop; returns loop seconds and the last loss."""
    call_start = clock()
    model.train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=LR,
        momentum=MOMENTUM,
        nesterov=True,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(steps))
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    scale, shift = 1.0 / std, -mean / std
    x, y = data.train_x, data.train_y
    per_epoch = x.shape[0] // batch_size
    generator = torch.Generator().manual_seed(seed)
    timer = LoopClock(model, clock)
    step = 0
    while step < steps:
        order = torch.randperm(x.shape[0], generator=generator)
        for i in range(per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            if augmentation.enabled:
                xb = augmentation(xb, generator)
            xb = torch.addcmul(shift, xb, scale)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            if step >= steps:
                break
        last_loss = loss.item()
        timer.stop()
    return {
        "loop_seconds": timer.close(),
        "call_seconds": clock() - call_start,
        "last_loss": last_loss,
    }


def nasbench_trainer(
    model: nn.Module,
    data: DatasetSplits,
    *,
    steps: int,
    batch_size: int,
    augmentation: Augmentation,
    grad_clip: float | None,
    seed: int,
    clock: Callable[[], float],
) -> dict[str, float]:
    """``train_model`` with the same math as ``plain_loop``; returns loop seconds (no eval)."""
    per_epoch = data.train_x.shape[0] // batch_size
    config = TrainConfig(
        epochs=math.ceil(steps / per_epoch),
        max_steps=steps,
        batch_size=batch_size,
        optimizer="sgd",
        lr=LR,
        momentum=MOMENTUM,
        nesterov=True,
        weight_decay=WEIGHT_DECAY,
        grad_clip=grad_clip,
        augmentation=augmentation,
        amp="off",
    )
    call_start = clock()
    timer = LoopClock(model, clock)
    try:
        result = train_model(model, data, config, seed=seed, device="cpu")
    finally:
        loop_seconds = timer.close()
    if result.steps != steps:
        raise RuntimeError(f"train_model took {result.steps} steps, expected {steps}")
    model.train()
    return {
        "loop_seconds": loop_seconds,
        "call_seconds": clock() - call_start,
        "last_loss": result.train_loss,
    }


# --------------------------------------------------------------------------- benchmark
def _max_param_diff(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max((x.double() - y.double()).abs().max().item() for x, y in pairs)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, check, warm up, then time the four variants in rotated rounds."""
    torch.set_num_threads(args.threads)
    load_at_start = list(os.getloadavg())
    data = load_dataset(args.dataset, seed=args.seed, val_fraction=0.1, test_fraction=0.1)
    if data.train_x.shape[0] < args.batch_size:
        raise SystemExit(f"training split ({data.train_x.shape[0]}) is smaller than one batch")
    augmentation = (
        default_augmentation(data.name) if args.augmentation == "default" else Augmentation.none()
    )
    grad_clip = None if args.no_grad_clip else GRAD_CLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        nb_model = build_nasbench_model(args.depth, data.num_classes, data.input_shape)
    plain_model = PlainResNet(args.depth, data.num_classes, data.input_shape[0])
    copy_weights(nb_model, plain_model)
    checks = check_same_architecture(nb_model, plain_model, data.input_shape)
    logger.info("architecture check: %s", checks)

    models = {A: nb_model, B: plain_model, C: nb_model, D: plain_model}
    runners = {A: nasbench_trainer, B: plain_loop, C: plain_loop, D: nasbench_trainer}
    kwargs = dict(
        steps=args.steps,
        batch_size=args.batch_size,
        augmentation=augmentation,
        grad_clip=grad_clip,
        seed=args.seed,
        clock=CLOCKS[args.clock],
    )

    def one(variant: str) -> tuple[nn.Module, dict[str, float]]:
        model = copy.deepcopy(models[variant])  # every run starts from the same weights
        stats = runners[variant](model, data, **kwargs)
        stats["images_per_s"] = args.steps * args.batch_size / stats["loop_seconds"]
        return model, stats

    logger.info("warm-up round")
    trained = {}
    for v in VARIANTS:
        trained[v], stats = one(v)
        logger.info("  warm-up %-36s %7.1f img/s", v, stats["images_per_s"])
    checks["final_weights_max_abs_diff_vs_" + B] = {
        v: _max_param_diff(trained[v], trained[B]) for v in VARIANTS if v != B
    }

    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for r in range(args.repeats):
        order = VARIANTS[r % 4 :] + VARIANTS[: r % 4]
        for v in order:
            _, stats = one(v)
            results[v].append(stats)
            logger.info("round %d %-36s %7.1f img/s", r + 1, v, stats["images_per_s"])

    def med(v: str, key: str = "images_per_s") -> float:
        return statistics.median(s[key] for s in results[v])

    def paired(num: str, den: str) -> dict[str, Any]:
        pairs = zip(results[num], results[den], strict=True)
        each = [n["images_per_s"] / d["images_per_s"] for n, d in pairs]
        return {"median": round(statistics.median(each), 4), "each": [round(r, 4) for r in each]}

    variants = {
        v: {
            "median_images_per_s": round(med(v), 2),
            "images_per_s": [round(s["images_per_s"], 2) for s in results[v]],
            "median_loop_seconds": round(med(v, "loop_seconds"), 4),
            "median_call_seconds": round(med(v, "call_seconds"), 4),
        }
        for v in VARIANTS
    }
    ratio_defs = {
        "headline_nasbench_over_plain": (A, B),
        "builder_plain_loop_nasbench_model_over_plain_model": (C, B),
        "trainer_plain_model_nasbench_trainer_over_plain_loop": (D, B),
        "trainer_on_nasbench_model_over_plain_loop": (A, C),
    }
    ratios = {name: round(med(n) / med(d), 4) for name, (n, d) in ratio_defs.items()}
    per_round = {name: paired(n, d) for name, (n, d) in ratio_defs.items()}
    headline = ratios["headline_nasbench_over_plain"]
    return {
        "config": {
            "dataset": args.dataset,
            "train_images": int(data.train_x.shape[0]),
            "input_shape": list(data.input_shape),
            "augmentation": repr(augmentation),
            "architecture": f"resnet space: stem {STEM_WIDTH}, resnet_basic x{args.depth} "
            f"per stage, widths {list(WIDTHS)}, strides {list(STRIDES)}",
            "batch_size": args.batch_size,
            "steps": args.steps,
            "repeats": args.repeats,
            "grad_clip": grad_clip,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "clock": args.clock,
            "load_avg_at_start": load_at_start,
            "load_avg_at_end": list(os.getloadavg()),
            "timed": "training loop only: steps*batch / seconds from the first train forward "
            "of each epoch to its end (validation, setup and first-batch prep excluded)",
        },
        "variants": variants,
        "ratios": ratios,
        "ratios_per_round": per_round,
        "within_5_percent": headline >= 0.95,
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> None:
    """Parse flags, run the benchmark, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic", help="synthetic or cifar10:PATH")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall time, or process CPU time (robust to other processes with --threads 1)",
    )
    parser.add_argument("--depth", type=int, default=2, choices=(1, 2, 3), help="blocks per stage")
    parser.add_argument(
        "--augmentation",
        choices=("default", "none"),
        default="default",
        help="the dataset's default augmentation in both loops, or none",
    )
    parser.add_argument("--no-grad-clip", action="store_true", help="no clipping in either loop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
