"""Training throughput of nasbench against plain PyTorch on one device (GPU or CPU): trainer, DARTS, OFA.

Three benchmarks, each timed against a plain-PyTorch reference in the same process, on the same
``--device``, with the same batch and the same in-memory images (``--data random``: uniform noise,
3x32x32, 10 classes; ``cifar10:PATH`` also works). Images/s = timed steps x batch / seconds, where on
CUDA the clock is read only after ``torch.cuda.synchronize()``. Every side gets an untimed warm-up
(cuDNN autotuning, allocator, lazy optimizer state) before anything is timed, and the rounds rotate
which side runs first. On CUDA every reference runs with ``torch.backends.cudnn.benchmark = True``
(what DARTS's and AutoDL's search scripts set), and no reference reads its loss back per step (no
host sync), so the references are the fast way to write each loop.

1. ``trainer`` — ``nasbench.train.train_model`` against a hand-written loop. Both train the same
   network from the same weights: the ``resnet``-space genome of ``trainer_overhead.py`` (3x3 stem 16,
   ``--trainer-depth`` ``resnet_basic`` blocks per stage at 32/64/128 channels, pool, linear). Same
   math as there: SGD Nesterov momentum 0.9, lr 0.05 with per-step cosine decay over the run, weight
   decay 5e-4 on conv/linear weights only, gradient clipping at 5, augmentation off on both sides
   (``--augmentation default`` gives the dataset's default to both), same normalization. The
   hand-written loop keeps the data on the device, shuffles there, and uses the trainer's precision
   and memory format: bf16 autocast where ``nasbench.train.resolve_amp(--amp, device)`` gives bf16
   (``auto`` or ``bf16`` on a CUDA GPU with bf16), channels-last when the model ``train_model``
   trained came back channels-last. Timed by ``trainer_overhead.py``'s rule (a forward pre-hook on
   the model, ``LoopClock``), except that the first ``--warmup`` train-mode forwards of each run are
   skipped: from the forward of step warmup+1 to the end of the epoch (the trainer's validation
   forward; the plain loop's last ``loss.item()``). Set-up, FLOP counting and validation are outside.
2. ``darts`` — ``DartsSearch.step`` (first-order: alpha step on a validation batch, weight step on a
   training batch; images/s counts training images) against ``darts_throughput.py``'s reference
   NB201 supernet written the AutoDL/NASLib way (every op including ``none``, ``sum(w * op(x))``),
   ``C``/``N`` from ``--C``/``--N`` (defaults: NB201's full C=16 N=5 on CUDA, C=16 N=1 on CPU).
   nasbench runs with ``amp=--amp``. The headline reference is the textbook one: float32, NCHW
   (``reference``). On CUDA a second, stricter reference runs the same supernet with bf16 autocast
   (``--amp``'s dtype) and channels-last model and inputs (``reference_bf16_channels_last``). The
   reference step is ``darts_throughput.RefSearch``'s, less its per-step ``float(loss)``.
   On CPU, ``darts_throughput.equivalence`` first checks the two supernets are the same function.
3. ``ofa`` — one sandwich step of nasbench's ``OFATrainer`` (``OFATrainer.step``) on the full
   ``mobilenetv3`` space at 32x32, in the phase where every dimension is elastic (the schedule is
   ``(("width", 1),)``, the last phase of progressive shrinking alone: kernel, depth, expansion and
   width all elastic). A sandwich step trains the largest subnet on the labels, then the smallest and
   2 random subnets on the largest one's soft labels (in-place distillation), accumulating gradients
   in the one shared supernet, then one SGD step (Nesterov, momentum 0.9, OFA's shrink lr and weight
   decay). The reference does the same loss structure with static plain modules: the largest, the
   smallest and a pool of ``--ofa-pool`` random subnets, each extracted once as a stand-alone
   ``nn.Module`` (``OFASupernet.extract``, weights copied; no elastic slicing, no weight sharing);
   each step runs the largest (cross-entropy), the smallest and the next 2 pool subnets
   (soft cross-entropy against the largest's detached softmax), one backward per subnet, then one
   SGD step over the parameters of those four modules (one optimizer over the pool; modules without
   gradients are skipped) and a cosine LambdaLR step. Both sides train the same subnets in the same
   order: the pool is the first ``--ofa-pool`` draws of ``sample_subnet`` from ``random.Random(seed)``,
   and nasbench's ``step`` gets (``rng=``) that generator restarted every ``--ofa-pool`` / 2 steps, so
   it draws the pool again (in training, ``train_epoch`` never restarts it and every step sees new
   subnets). The warm-up covers at least one pass over the pool, so every subnet's shapes have been
   seen (oneDNN primitives, cuDNN autotuning) before timing. The reference uses ``--amp``'s dtype
   and, on CUDA, channels-last. It measures what elasticity (slicing shared weights each step) costs
   against training four fixed networks; weight sharing itself has no counterpart in the reference.

Targets (GPU; shown on CPU too, marked as not applying): DARTS step >= 1.3x the textbook reference;
trainer >= 0.95x the hand-written loop. OFA has no target. Each benchmark runs in its own
``try``: an error is recorded in the JSON and the others still run.

Output: one JSON object on stdout and in ``--out`` (default
``experiments/results/gpu_throughput_<device kind>.json``, the kind ``cpu`` or a slug of the GPU
name, e.g. ``nvidia-h100-80gb-hbm3``) with ``platform`` (``nasbench.hardware.platform_info``: device
name, torch/CUDA/cuDNN versions), ``provenance``, the ``amp`` setting and its dtype, and per
benchmark nasbench and reference images/s, their ratio (median of per-round ratios; > 1: nasbench
faster), every round, target and whether met.

    python experiments/gpu_throughput.py --device cuda                 # GPU defaults (not yet run on a GPU)
    python experiments/gpu_throughput.py --device cpu --steps 3 --threads 1 --clock cpu  # shared CPU, ~2.5 min
    python experiments/gpu_throughput.py --benchmarks darts --N 5 --steps 100
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import inspect
import json
import logging
import math
import os
import random
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(REPO), str(HERE)):  # nasbench and search_spaces from this checkout; the sibling experiments
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _provenance import provenance  # noqa: E402
from darts_throughput import CONFIG as DARTS_CONFIG  # noqa: E402
from darts_throughput import (  # noqa: E402
    NB201_OPS,
    RefSearch,
    RefSupernet,
    batches,
    copy_into_reference,
    equivalence,
    make_data,
    time_steps,
)
from trainer_overhead import (  # noqa: E402
    GRAD_CLIP,
    LR,
    MOMENTUM,
    WEIGHT_DECAY,
    LoopClock,
    _cosine,
    build_nasbench_model,
)

from nasbench.data import Augmentation, DatasetSplits, default_augmentation  # noqa: E402
from nasbench.train import TrainConfig, resolve_amp, resolve_device, train_model  # noqa: E402

logger = logging.getLogger("gpu_throughput")
RESULTS = REPO / "experiments" / "results"
BENCHMARKS = ("trainer", "darts", "ofa")
TARGETS = {"trainer": 0.95, "darts": 1.3, "ofa": None}


# -- device helpers ---------------------------------------------------------------------------------
def make_clock(device: torch.device, kind: str = "wall") -> Callable[[], float]:
    """``time.perf_counter`` (read after ``torch.cuda.synchronize`` on CUDA), or on the CPU with
    ``kind="cpu"`` the process CPU time."""
    if device.type != "cuda":
        return time.process_time if kind == "cpu" else time.perf_counter

    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return clock


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """bf16 (or other) autocast on ``device``; a no-op context for None."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def cudnn_benchmark(device: torch.device) -> Any:
    """cuDNN autotuning on within the block (CUDA only; restored after): the library's own switch."""
    from nasbench.train import cuda_speedups

    return cuda_speedups(device)


def with_cudnn_benchmark(step: Callable[..., Any], device: torch.device) -> Callable[..., Any]:
    """``step`` run with cuDNN autotuning on (for the references)."""
    if device.type != "cuda":
        return step

    def wrapped(*args: Any) -> Any:
        with cudnn_benchmark(device):
            return step(*args)

    return wrapped


def device_kind(device: torch.device) -> str:
    """``cpu``, or a file-name slug of the GPU's name."""
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-") or "cuda"


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's first conv with a spatial kernel and > 1 input channel is stored channels-last."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels > 1 and m.kernel_size != (1, 1):
            w = m.weight
            return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    return False


def to_device(work: list[tuple[torch.Tensor, ...]], device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.to(device) for t in b) for b in work]


def rounds_of(sides: dict[str, Callable[..., Any]], work: list[tuple[torch.Tensor, ...]], warm: int,
              n_rounds: int, steps: int, batch: int, clock: Callable[[], float]) -> dict[str, Any]:
    """Warm every side up on ``warm`` batches, then ``n_rounds`` rounds of ``steps`` steps per side in
    rotated order; images/s per side and round, and the last loss of each side (a sanity check)."""
    names = list(sides)
    timed = work[:steps]
    for name in names:
        logger.info("  warm-up %s", name)
        time_steps(sides[name], work[:warm], clock)
    rounds: list[dict[str, Any]] = []
    for r in range(n_rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        ips = {name: len(timed) * batch / time_steps(sides[name], timed, clock) for name in order}
        rounds.append({"order": order, **{k: round(v, 1) for k, v in ips.items()}})
        logger.info("  round %d: %s", r, rounds[-1])
    losses = {name: float(torch.as_tensor(sides[name](*work[0])).float()) for name in names}
    return {"rounds": rounds, "last_loss": {k: round(v, 4) for k, v in losses.items()}}


def summarize(name: str, rounds: list[dict[str, Any]], nb: str, refs: list[str], device: torch.device
              ) -> dict[str, Any]:
    """Median images/s per side, the ratio (median over rounds) against each reference, the target."""
    med = {k: statistics.median(r[k] for r in rounds) for k in [nb, *refs]}
    out: dict[str, Any] = {"nasbench_images_per_s": round(med[nb], 1)}
    for i, ref in enumerate(refs):
        per_round = [round(r[nb] / r[ref], 3) for r in rounds]
        key = "" if i == 0 else "_" + ref.removeprefix("reference_")
        out[f"reference{key}_images_per_s"] = round(med[ref], 1)
        out[f"ratio{key}"] = round(statistics.median(per_round), 3)
        out[f"ratio{key}_per_round"] = per_round
    target = TARGETS[name]
    out["target"] = None if target is None else f">= {target}x the reference"
    out["target_met"] = None if target is None else out["ratio"] >= target
    out["target_applies"] = target is not None and device.type == "cuda"
    return out


# -- 1. trainer -------------------------------------------------------------------------------------
class SteadyClock(LoopClock):
    """``LoopClock`` that starts at the (``skip`` + 1)-th train-mode forward, not the first."""

    def __init__(self, model: nn.Module, clock: Callable[[], float], skip: int) -> None:
        self.skip, self.train_forwards = skip, 0
        super().__init__(model, clock)

    def _pre_forward(self, module: nn.Module, _args: Any) -> None:
        if module.training:
            self.train_forwards += 1
            if self.train_forwards <= self.skip:
                return
        super()._pre_forward(module, _args)


def trainer_config(args: argparse.Namespace, steps: int, augmentation: Augmentation) -> TrainConfig:
    return TrainConfig(epochs=1, max_steps=steps, batch_size=args.batch_size, optimizer="sgd", lr=LR,
                       momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY, grad_clip=GRAD_CLIP,
                       augmentation=augmentation, amp=args.amp)


def run_nasbench_trainer(model: nn.Module, data: DatasetSplits, args: argparse.Namespace, device: torch.device,
                         augmentation: Augmentation, clock: Callable[[], float]) -> float:
    """``train_model`` for warm-up + steps; returns the steady steps' images/s."""
    steps = args.warmup + args.steps
    timer = SteadyClock(model, clock, args.warmup)
    try:
        result = train_model(model, data, trainer_config(args, steps, augmentation), seed=args.seed, device=device)
    finally:
        seconds = timer.close()
    if result.steps != steps:
        raise RuntimeError(f"train_model took {result.steps} steps, expected {steps}")
    return args.steps * args.batch_size / seconds


def run_plain_loop(model: nn.Module, data: DatasetSplits, args: argparse.Namespace, device: torch.device,
                   augmentation: Augmentation, clock: Callable[[], float], dtype: torch.dtype | None,
                   channels_last: bool) -> float:
    """The hand-written loop (data on the device, same math as ``train_model``); steady images/s."""
    steps = args.warmup + args.steps
    fmt = torch.channels_last if channels_last else torch.preserve_format
    model.to(device, memory_format=fmt).train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=LR, momentum=MOMENTUM, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(steps))
    x, y = data.train_x.to(device), data.train_y.to(device)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    scale, shift = 1.0 / std, -mean / std
    gen = torch.Generator(device=device).manual_seed(args.seed)
    bs = args.batch_size
    timer = SteadyClock(model, clock, args.warmup)
    with cudnn_benchmark(device):
        order = torch.randperm(x.shape[0], device=device, generator=gen)
        for i in range(steps):
            idx = order[i * bs:(i + 1) * bs]
            xb, yb = x[idx], y[idx]
            if augmentation.enabled:
                xb = augmentation(xb, gen)
            xb = torch.addcmul(shift, xb, scale)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(device, dtype):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            opt.step()
            sched.step()
        loss.item()
        timer.stop()
    return args.steps * bs / timer.close()


def bench_trainer(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    steps = args.warmup + args.steps
    data = make_data(args.data, steps * args.batch_size, args.seed)
    # one epoch holds every step; validation/test only need to be non-empty
    data = dataclasses.replace(data, val_x=data.val_x[: args.batch_size], val_y=data.val_y[: args.batch_size],
                               test_x=data.test_x[:1], test_y=data.test_y[:1])
    augmentation = default_augmentation(data.name) if args.augmentation == "default" else Augmentation.none()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model0 = build_nasbench_model(args.trainer_depth, data.num_classes, data.input_shape)
    dtype = resolve_amp(args.amp, device)
    clock = make_clock(device, args.clock)

    # untimed warm-up of the trainer; it also shows which memory format the trainer chose
    warm_model = copy.deepcopy(model0)
    run_nasbench_trainer(warm_model, data, args, device, augmentation, clock)
    channels_last = is_channels_last(warm_model)
    del warm_model
    sides = {
        "nasbench": lambda: run_nasbench_trainer(copy.deepcopy(model0), data, args, device, augmentation, clock),
        "reference": lambda: run_plain_loop(copy.deepcopy(model0), data, args, device, augmentation, clock, dtype,
                                            channels_last),
    }
    logger.info("  warm-up reference")
    sides["reference"]()
    rounds = []
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        ips = {name: sides[name]() for name in order}
        rounds.append({"order": order, **{k: round(v, 1) for k, v in ips.items()}})
        logger.info("  round %d: %s", r, rounds[-1])
    return {
        "what": "train_model vs a hand-written loop (same model, weights, SGD/cosine/clip, precision, memory format)",
        "config": {"model": f"resnet space: stem 16, resnet_basic x{args.trainer_depth} per stage, widths 32/64/128",
                   "params": sum(p.numel() for p in model0.parameters()), "batch_size": args.batch_size,
                   "warmup_steps": args.warmup, "timed_steps": args.steps, "rounds": args.rounds,
                   "augmentation": repr(augmentation), "reference_amp_dtype": str(dtype).removeprefix("torch."),
                   "reference_channels_last": channels_last, "reference_cudnn_benchmark": device.type == "cuda"},
        **summarize("trainer", rounds, "nasbench", ["reference"], device),
        "rounds": rounds,
    }


# -- 2. DARTS ---------------------------------------------------------------------------------------
class DeviceRefSearch(RefSearch):
    """``RefSearch``'s step with optional autocast and channels-last inputs, returning the detached loss
    tensor instead of ``float(loss)`` (no host sync per step)."""

    def __init__(self, net: RefSupernet, device: torch.device, dtype: torch.dtype | None, channels_last: bool) -> None:
        super().__init__(net, DARTS_CONFIG)
        self.device, self.dtype, self.channels_last = device, dtype, channels_last

    def step(self, xb: torch.Tensor, yb: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.channels_last:
            xb, xv = xb.contiguous(memory_format=torch.channels_last), xv.contiguous(memory_format=torch.channels_last)
        self.a_opt.zero_grad()
        with autocast(self.device, self.dtype):
            logits = self.net(xv)
        F.cross_entropy(logits.float(), yv).backward()
        self.a_opt.step()
        self.w_opt.zero_grad()
        with autocast(self.device, self.dtype):
            logits = self.net(xb)
        loss = F.cross_entropy(logits.float(), yb)
        loss.backward()
        nn.utils.clip_grad_norm_(self.weights, self.clip)
        self.w_opt.step()
        return loss.detach()


def bench_darts(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from nasbench.space import Cell, CellSpace
    from nasbench.strategies._darts import DartsSearch

    c, n = args.C, args.N
    space = CellSpace("nb201-bench", [Cell("cell", NB201_OPS, nodes=4)], skeleton="nb201", C=c, N=n)
    data = make_data(args.data, 4 * args.batch_size, args.seed)
    work_cpu = batches(data, args.batch_size, max(args.steps, args.warmup), args.seed)
    check: dict[str, Any] | str = "CPU only (darts_throughput.equivalence)"
    if device.type == "cpu":
        check = equivalence(space, data, c, n, args.seed, work_cpu[0])
        logger.info("  equivalence: %s", check)
    work = to_device(work_cpu, device)
    amp_kw = {"amp": args.amp} if accepts(DartsSearch.__init__, "amp") else {}
    search = DartsSearch(space, data, DARTS_CONFIG, seed=args.seed, device=device, **amp_kw)
    search.net.train()
    dtype = resolve_amp(args.amp, device)

    def reference(dt: torch.dtype | None, channels_last: bool) -> DeviceRefSearch:
        net = RefSupernet(c, n, data.num_classes, data.input_shape[0])
        copy_into_reference(search, net)
        net.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format).train()
        return DeviceRefSearch(net, device, dt, channels_last)

    sides: dict[str, Callable[..., Any]] = {"nasbench": search.step,
                                             "reference": with_cudnn_benchmark(reference(None, False).step, device)}
    refs = ["reference"]
    if device.type == "cuda":
        strict = reference(dtype, True)
        sides["reference_bf16_channels_last"] = with_cudnn_benchmark(strict.step, device)
        refs.append("reference_bf16_channels_last")
    timing = rounds_of(sides, work, args.warmup, args.rounds, args.steps, args.batch_size, make_clock(device, args.clock))
    return {
        "what": "first-order DARTS step (alpha step on a val batch + weight step on a train batch), training "
                "images/s: DartsSearch.step vs darts_throughput.py's plain NB201 reference supernet",
        "config": {"C": c, "N": n, "batch_size": args.batch_size, "warmup_steps": args.warmup,
                   "timed_steps": args.steps, "rounds": args.rounds, "ops": list(NB201_OPS),
                   "params": sum(p.numel() for p in search.net.parameters()),
                   "nasbench_amp_kwarg": bool(amp_kw),
                   "nasbench_amp_dtype": str(getattr(search, "amp_dtype", None)).removeprefix("torch."),
                   "nasbench_channels_last": bool(getattr(search.net, "channels_last", False)),
                   "reference": "float32, NCHW (the textbook code)",
                   "reference_bf16_channels_last": (f"{str(dtype).removeprefix('torch.')} autocast, channels-last"
                                                    if device.type == "cuda" else "not run (CUDA only)"),
                   "reference_cudnn_benchmark": device.type == "cuda"},
        "equivalence": check,
        **summarize("darts", timing["rounds"], "nasbench", refs, device),
        "last_loss": timing["last_loss"],
        "rounds": timing["rounds"],
    }


# -- 3. OFA -----------------------------------------------------------------------------------------
class RefSandwich:
    """The sandwich step on static modules: CE on the largest, soft CE to its softmax on the others, one SGD step."""

    def __init__(self, largest: nn.Module, smallest: nn.Module, pool: list[nn.Module], per_step: int, cfg: Any,
                 total_steps: int, device: torch.device, dtype: torch.dtype | None, channels_last: bool) -> None:
        self.largest, self.smallest, self.pool, self.per_step = largest, smallest, pool, per_step
        self.device, self.dtype, self.channels_last = device, dtype, channels_last
        fmt = torch.channels_last if channels_last else torch.preserve_format
        for m in [largest, smallest, *pool]:
            m.to(device, memory_format=fmt).train()
        params = [p for m in [largest, smallest, *pool] for p in m.parameters()]
        self.opt = torch.optim.SGD(params, lr=cfg.shrink_lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
        total = max(1, total_steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        self.next = 0

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        self.opt.zero_grad(set_to_none=True)
        with autocast(self.device, self.dtype):
            logits = self.largest(xb)
        loss = F.cross_entropy(logits.float(), yb)
        loss.backward()
        soft = logits.detach().float().softmax(1)
        others = [self.smallest]
        for _ in range(self.per_step):
            others.append(self.pool[self.next % len(self.pool)])
            self.next += 1
        for m in others:
            with autocast(self.device, self.dtype):
                out = m(xb)
            (-(soft * out.float().log_softmax(1)).sum(1).mean()).backward()
        self.opt.step()
        self.sched.step()
        return loss.detach()


def bench_ofa(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from nasbench import load_space
    from nasbench.ofa import (
        OFAConfig,
        OFATrainer,
        largest_subnet,
        phase_kinds,
        sample_subnet,
        smallest_subnet,
    )

    bs = args.ofa_batch_size
    space = load_space("mobilenetv3")
    data = make_data(args.data, 4 * bs, args.seed)
    work = to_device([b[:2] for b in batches(data, bs, max(args.steps, args.warmup), args.seed)], device)
    phase = "width"  # the last phase of progressive shrinking: every dimension elastic
    cfg = OFAConfig(phases=((phase, 1),), batch_size=bs)
    amp_kw = {"amp": args.amp} if accepts(OFATrainer.__init__, "amp") else {}
    trainer = OFATrainer(space, data, cfg, seed=args.seed, device=device, **amp_kw)
    if not hasattr(trainer, "step"):
        raise RuntimeError("OFATrainer.step(xb, yb) is not in this nasbench yet; nothing to time on the nasbench side")
    kinds = phase_kinds(phase)
    per_step = cfg.random_subnets
    if args.ofa_pool < per_step or args.ofa_pool % per_step:
        raise ValueError(f"--ofa-pool must be a positive multiple of {per_step} (random subnets per step)")
    cycle = args.ofa_pool // per_step  # steps per pass over the pool
    rng = random.Random(args.seed)
    pool_genomes = [sample_subnet(space, rng, kinds) for _ in range(args.ofa_pool)]
    trainer.net.train()
    largest = trainer.net.extract(largest_subnet(space))
    smallest = trainer.net.extract(smallest_subnet(space, kinds))
    pool = [trainer.net.extract(g) for g in pool_genomes]
    dtype = resolve_amp(args.amp, device)
    channels_last = device.type == "cuda"
    ref = RefSandwich(largest, smallest, pool, cfg.random_subnets, cfg, len(work) * (args.rounds + 2), device,
                      dtype, channels_last)
    if not accepts(trainer.step, "rng"):
        raise RuntimeError("OFATrainer.step takes no rng=: cannot give it the reference's subnets")
    state = {"calls": 0, "rng": random.Random(args.seed)}

    def nasbench_step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        # the reference's random subnets in the same order: sample_subnet draws from an rng restarted
        # every `cycle` steps, which gives the reference's pool again
        if state["calls"] % cycle == 0:
            state["rng"] = random.Random(args.seed)
        state["calls"] += 1
        return trainer.step(xb, yb, rng=state["rng"], step=state["calls"])

    sides = {"nasbench": nasbench_step, "reference": with_cudnn_benchmark(ref.step, device)}
    warm = max(args.warmup, cycle)  # every subnet's shapes seen once (oneDNN primitives, cuDNN autotuning)
    work = work if len(work) >= warm else (work * math.ceil(warm / len(work)))[:warm]
    timing = rounds_of(sides, work, warm, args.rounds, args.steps, bs, make_clock(device, args.clock))

    def n_params(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    return {
        "what": "one OFA sandwich step (largest CE + smallest + 2 random subnets distilled, one SGD step), "
                "images/s: OFATrainer.step vs the same loss on static extracted subnets",
        "config": {"space": "mobilenetv3", "input_shape": list(data.input_shape), "phase": phase,
                   "elastic": sorted(kinds), "batch_size": bs, "random_subnets": cfg.random_subnets,
                   "warmup_steps": warm, "timed_steps": args.steps, "rounds": args.rounds,
                   "pool": args.ofa_pool, "steps_per_pool_cycle": cycle, "supernet_params": n_params(trainer.net), "nasbench_amp_kwarg": bool(amp_kw),
                   "reference_params": {"largest": n_params(largest), "smallest": n_params(smallest),
                                        "pool": [n_params(m) for m in pool]},
                   "reference_amp_dtype": str(dtype).removeprefix("torch."), "reference_channels_last": channels_last,
                   "reference_cudnn_benchmark": device.type == "cuda"},
        **summarize("ofa", timing["rounds"], "nasbench", ["reference"], device),
        "last_loss": timing["last_loss"],
        "rounds": timing["rounds"],
    }


# -- main -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", default="auto", choices=("auto", "off", "bf16"),
                   help="nasbench's mixed precision (auto: bf16 on a CUDA GPU with bf16); references follow it")
    p.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="comma-separated subset of trainer,darts,ofa")
    p.add_argument("--data", default="random", help="random | cifar10:PATH")
    p.add_argument("--batch-size", type=int, default=64, help="trainer and DARTS batch")
    p.add_argument("--ofa-batch-size", type=int, default=None, help="default: 64 on CUDA, 16 on CPU")
    p.add_argument("--ofa-pool", type=int, default=None,
                   help="random subnets the OFA reference cycles through (default: 8 on CUDA, 4 on CPU)")
    p.add_argument("--C", type=int, default=16, help="DARTS stage-1 channels (NB201: 16)")
    p.add_argument("--N", type=int, default=None, help="DARTS cells per stage (default: 5 on CUDA, 1 on CPU)")
    p.add_argument("--trainer-depth", type=int, default=2, choices=(1, 2, 3), help="trainer model blocks per stage")
    p.add_argument("--augmentation", choices=("none", "default"), default="none",
                   help="trainer benchmark: none on both sides, or the dataset's default on both")
    p.add_argument("--steps", type=int, default=None, help="timed steps per side and round (default: 50 CUDA, 3 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 CUDA, 2 CPU)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default: 3 CUDA, 2 CPU)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="CPU device only: cpu = process CPU time (with --threads 1, nearly immune to other "
                        "processes on a shared machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    cuda = device.type == "cuda"
    if cuda and a.clock == "cpu":
        p.error("--clock cpu times the host process, not the GPU; use --clock wall on CUDA")
    if cuda and device.index is not None:
        torch.cuda.set_device(device)
    for name, gpu, cpu in (("N", 5, 1), ("steps", 50, 3), ("warmup", 10, 2), ("rounds", 3, 2),
                           ("ofa_batch_size", 64, 16), ("ofa_pool", 8, 4)):
        if getattr(a, name) is None:
            setattr(a, name, gpu if cuda else cpu)
    wanted = [b.strip() for b in a.benchmarks.split(",") if b.strip()]
    unknown = set(wanted) - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}")
    out = a.out or RESULTS / f"gpu_throughput_{device_kind(device)}.json"

    try:
        from nasbench.hardware import platform_info

        plat: dict[str, Any] = platform_info(device)
    except Exception as e:  # noqa: BLE001 - a report without platform details is still a report
        plat = {"error": f"{type(e).__name__}: {e}", "torch": torch.__version__, "cuda": torch.version.cuda}
    amp_dtype = resolve_amp(a.amp, device)
    result: dict[str, Any] = {
        "what": "training images/s of nasbench vs plain-PyTorch references on one device (see the module docstring)",
        "device": str(device),
        "device_name": plat.get("device_name"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "amp": a.amp,
        "amp_dtype": str(amp_dtype).removeprefix("torch."),
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "platform": plat,
        "provenance": provenance(),
        "benchmarks": {},
    }
    t_all = time.perf_counter()
    for name in wanted:
        logger.info("benchmark %s on %s", name, device)
        t0 = time.perf_counter()
        try:
            res = {"trainer": bench_trainer, "darts": bench_darts, "ofa": bench_ofa}[name](a, device)
        except Exception as e:  # noqa: BLE001 - one failing benchmark must not lose the others
            logger.error("benchmark %s failed:\n%s", name, traceback.format_exc())
            res = {"error": f"{type(e).__name__}: {e}", "target": TARGETS[name] and f">= {TARGETS[name]}x the reference",
                   "target_met": None}
        res["seconds"] = round(time.perf_counter() - t0, 1)
        result["benchmarks"][name] = res
        if cuda:
            torch.cuda.empty_cache()
    result["summary"] = {
        name: {k: r.get(k) for k in ("nasbench_images_per_s", "reference_images_per_s", "ratio", "target",
                                     "target_met", "error") if k in r}
        for name, r in result["benchmarks"].items()}
    result["total_seconds"] = round(time.perf_counter() - t_all, 1)
    result["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
