"""Supernet training throughput of nasbench's DARTS against a plain-PyTorch reference supernet.

The reference is written here in plain PyTorch the way the classic DARTS / NAS-Bench-201
search code (AutoDL-Projects, NASLib) writes it: a ``MixedOp`` that runs every candidate,
``none`` included, and sums ``w * op(x)`` over them, inside the NAS-Bench-201 cell and
skeleton (stem conv-BN, 3 stages of ``N`` cells with ResNet basic reductions, BN-ReLU, global
pool, linear). Same five ops (none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3),
same ``C``, ``N``, batch, images and torch threads. The script checks the two supernets are
the same function: with nasbench's weights and alphas copied into the reference, the logits
and one full step (both parameter sets after it) agree to float tolerance.

One step, both sides (first-order DARTS, paper hyperparameters): an alpha step (Adam 3e-4)
on a validation batch, then a weight step (SGD 0.025, momentum 0.9, weight decay 3e-4,
gradient clipping 5) on a training batch. nasbench runs ``DartsSearch.step``, the method
``DartsSearch.train_epoch`` calls; the reference runs the textbook loop (``loss.backward()``
for each). Images/s = training images per second (steps x batch / seconds; each step also
runs a validation batch through the alpha step, on both sides).

What nasbench does differently (same values up to float rounding): ``none`` is never run;
the alpha step back-propagates to the alphas only and the weight step to the weights only
(``backward(inputs=...)``: the other gradients were discarded anyway); the mixed edge shares
one ``relu(x)`` between its ReLU-conv-BN candidates, folds the alpha weight into each BN's
scale and shift and accumulates in place; the 3x3 average pool runs as a depthwise box-sum
conv (PyTorch's CPU ``avg_pool2d`` with ``count_include_pad=False`` is ~10x slower); and on
CPU the supernet runs channels-last. ``--ablation`` also times nasbench without the fused
edge and without channels-last.

Rounds alternate the order (nasbench first, then reference first, ...) after an untimed
warm-up, so load from other processes hits both sides alike; ``uptime`` load averages are
recorded before and after. Prints one JSON object (also written to ``--out``).

    python experiments/darts_throughput.py                       # C=16 N=1, batch 64, 1 thread
    python experiments/darts_throughput.py --C 8 --N 1           # the darts_nb201 proxy size
    python experiments/darts_throughput.py --clock cpu           # busy machine, 1 thread
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
try:
    import nasbench
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))
    import nasbench

from nasbench.data import DatasetSplits  # noqa: E402
from nasbench.space import Cell, CellSpace  # noqa: E402
from nasbench.strategies._darts import DartsConfig, DartsSearch  # noqa: E402
from nasbench.supernet import MixedOp  # noqa: E402
from search_spaces.nb201 import OPS as NB201_OPS  # noqa: E402

logger = logging.getLogger("darts_throughput")
DEFAULT_OUT = REPO / "experiments" / "results" / "darts_throughput.json"
CONFIG = DartsConfig(collapse_guard="none")


# -- the plain-PyTorch reference (classic DARTS / NAS-Bench-201 search code) --------------------
class ReLUConvBN(nn.Module):
    """ReLU -> conv (no bias) -> BN."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                                nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    """The ``none`` op: zeros like the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class RefMixedOp(nn.Module):
    """Σ_i w_i · op_i(x) over every candidate, ``none`` included."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList([Zero(), nn.Identity(), ReLUConvBN(c, c, 1), ReLUConvBN(c, c, 3),
                                  nn.AvgPool2d(3, 1, 1, count_include_pad=False)])

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))  # type: ignore[return-value]


class RefCell(nn.Module):
    """NB201 search cell: node j = Σ_{i<j} MixedOp_ij(node i), output = last node."""

    def __init__(self, c: int, nodes: int = 4) -> None:
        super().__init__()
        self.edges = [(i, j) for j in range(1, nodes) for i in range(j)]
        self.mixed = nn.ModuleList(RefMixedOp(c) for _ in self.edges)
        self.nodes = nodes

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [x]
        for j in range(1, self.nodes):
            states.append(sum(self.mixed[e](states[i], weights[e]) for e, (i, jj) in enumerate(self.edges) if jj == j))
        return states[-1]


class RefBasicBlock(nn.Module):
    """ResNet basic block (conv-BN-ReLU, conv-BN, 1x1 conv-BN shortcut, ReLU)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class RefSupernet(nn.Module):
    """NB201 skeleton with mixed cells sharing one alpha (6 edges x 5 ops)."""

    def __init__(self, c: int, n: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers: list[nn.Module] = []
        for stage in range(3):
            if stage > 0:
                layers.append(RefBasicBlock(c, 2 * c, 2))
                c *= 2
            layers.extend(RefCell(c) for _ in range(n))
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.classifier = nn.Linear(c, num_classes)
        self.arch = nn.Parameter(1e-3 * torch.randn(6, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.arch, dim=-1)
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, w) if isinstance(cell, RefCell) else cell(x)
        x = self.lastact(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class RefSearch:
    """The textbook first-order DARTS step on the reference supernet."""

    def __init__(self, net: RefSupernet, cfg: DartsConfig) -> None:
        self.net = net
        self.weights = [p for name, p in net.named_parameters() if name != "arch"]
        self.w_opt = torch.optim.SGD(self.weights, lr=cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_weight_decay)
        self.a_opt = torch.optim.Adam([net.arch], lr=cfg.alpha_lr, betas=cfg.alpha_betas,
                                      weight_decay=cfg.alpha_weight_decay)
        self.clip = cfg.grad_clip

    def step(self, xb: torch.Tensor, yb: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor) -> float:
        self.a_opt.zero_grad()
        F.cross_entropy(self.net(xv), yv).backward()
        self.a_opt.step()
        self.w_opt.zero_grad()
        loss = F.cross_entropy(self.net(xb), yb)
        loss.backward()
        nn.utils.clip_grad_norm_(self.weights, self.clip)
        self.w_opt.step()
        return float(loss.detach())


# -- set-up and checks ------------------------------------------------------------------------
def make_data(kind: str, n: int, seed: int) -> DatasetSplits:
    """``n`` images per split: random noise (``random``) or CIFAR-10 (``cifar10:PATH``)."""
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        x = [torch.rand(n, 3, 32, 32, generator=g) for _ in range(3)]
        y = [torch.randint(0, 10, (n,), generator=g) for _ in range(3)]
        return DatasetSplits("random", x[0], y[0], x[1], y[1], x[2], y[2], 10, (0.5,) * 3, (0.29,) * 3)
    from nasbench.data import load_dataset

    return load_dataset(kind, seed=seed, limit=n)


def batches(data: DatasetSplits, batch: int, steps: int, seed: int) -> list[tuple[torch.Tensor, ...]]:
    """``steps`` (train x, train y, val x, val y) batches, normalized, drawn with replacement of order."""
    from nasbench.data import iterate_batches

    g = torch.Generator().manual_seed(seed)
    kw = dict(shuffle=True, generator=g, mean=data.mean, std=data.std, drop_last=True)
    out: list[tuple[torch.Tensor, ...]] = []
    while len(out) < steps:
        train = list(iterate_batches(data.train_x, data.train_y, batch, **kw))
        val = list(iterate_batches(data.val_x, data.val_y, batch, **kw))
        out.extend((xb, yb, xv, yv) for (xb, yb), (xv, yv) in zip(train, val))
    return out[:steps]


def copy_into_reference(search: DartsSearch, ref: RefSupernet) -> None:
    """Load nasbench's weights, buffers and alphas into the reference (same order, same shapes)."""
    ours = [t for n, t in search.net.net.state_dict().items()]
    theirs = [(n, t) for n, t in ref.state_dict().items() if n != "arch"]
    if len(ours) != len(theirs):
        raise SystemExit(f"reference has {len(theirs)} tensors, nasbench {len(ours)}: not the same supernet")
    with torch.no_grad():
        for a, (name, b) in zip(ours, theirs):
            if a.shape != b.shape:
                raise SystemExit(f"shape mismatch at reference {name}: {tuple(b.shape)} vs {tuple(a.shape)}")
            b.copy_(a)
        ref.arch.copy_(search.net.alphas["cell"])


def equivalence(space: CellSpace, data: DatasetSplits, c: int, n: int, seed: int,
                batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """Max |difference| of logits, then of every parameter after one step, from identical states."""
    search = DartsSearch(space, data, CONFIG, seed=seed)
    ref = RefSupernet(c, n, data.num_classes, data.input_shape[0])
    copy_into_reference(search, ref)
    search.net.train()
    ref.train()
    xb, yb, xv, yv = batch
    with torch.no_grad():
        logits = (search.net(xv) - ref(xv)).abs().max().item()
    copy_into_reference(search, ref)  # the forward above moved BN running statistics
    RefSearch(ref, CONFIG).step(xb, yb, xv, yv)
    search.step(xb, yb, xv, yv)
    after = max((a - b).abs().max().item() for a, (_, b) in
                zip(search.net.net.state_dict().values(), [(k, v) for k, v in ref.state_dict().items() if k != "arch"]))
    alpha = (search.net.alphas["cell"] - ref.arch).abs().max().item()
    return {"logits_max_abs_diff": logits, "params_after_one_step_max_abs_diff": after,
            "alpha_after_one_step_max_abs_diff": alpha}


def time_steps(step, data: list[tuple[torch.Tensor, ...]], clock) -> float:  # noqa: ANN001
    """Seconds for one step per batch."""
    t0 = clock()
    for b in data:
        step(*b)
    return clock() - t0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, check equivalence, time interleaved rounds, print JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--C", type=int, default=16, help="stage-1 channels (NB201: 16)")
    p.add_argument("--N", type=int, default=1, help="cells per stage (NB201: 5)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="steps per side per round")
    p.add_argument("--data", default="random", help="random | cifar10:PATH (images per split: 4 x batch)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: process CPU time (with --threads 1, nearly immune to other processes)")
    p.add_argument("--ablation", action="store_true",
                   help="also time nasbench without the fused mixed op and without channels-last")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(a.threads)
    clock = time.perf_counter if a.clock == "wall" else time.process_time
    load_before = os.getloadavg()
    space = CellSpace("nb201-bench", [Cell("cell", NB201_OPS, nodes=4)], skeleton="nb201", C=a.C, N=a.N)
    data = make_data(a.data, 4 * a.batch_size, a.seed)
    work = batches(data, a.batch_size, a.steps, a.seed)
    check = equivalence(space, data, a.C, a.N, a.seed, work[0])
    logger.info("equivalence: %s", check)

    search = DartsSearch(space, data, CONFIG, seed=a.seed)
    ref_net = RefSupernet(a.C, a.N, data.num_classes, data.input_shape[0])
    copy_into_reference(search, ref_net)
    reference = RefSearch(ref_net, CONFIG)
    search.net.train()
    ref_net.train()
    sides = {"nasbench": search.step, "reference": reference.step}
    if a.ablation:  # nasbench with one optimization turned off
        unfused = DartsSearch(space, data, CONFIG, seed=a.seed)
        for m in unfused.net.modules():
            if isinstance(m, MixedOp):
                m.fused = False
        nchw = DartsSearch(space, data, CONFIG, seed=a.seed)
        nchw.net.set_channels_last(False)
        for s in (unfused, nchw):
            s.net.train()
        sides.update({"nasbench-unfused": unfused.step, "nasbench-nchw": nchw.step})
    for step in sides.values():  # warm-up: allocator, oneDNN primitive caches
        time_steps(step, work[:2], clock)
    rounds: list[dict[str, Any]] = []
    for r in range(a.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        ips = {}
        for name in order:
            ips[name] = len(work) * a.batch_size / time_steps(sides[name], work, clock)
        rounds.append({"order": order, **{k: round(v, 1) for k, v in ips.items()},
                       "ratio": round(ips["nasbench"] / ips["reference"], 3), "load_1min": round(os.getloadavg()[0], 2)})
        logger.info("round %d: %s", r, rounds[-1])
    med = {k: statistics.median(x[k] for x in rounds) for k in sides}
    ratios = [x["ratio"] for x in rounds]
    result = {
        "what": "first-order DARTS supernet steps (alpha step on a val batch + weight step on a train batch), "
                "training images/s, nasbench DartsSearch.step vs plain-PyTorch reference supernet",
        "config": {"C": a.C, "N": a.N, "batch_size": a.batch_size, "threads": a.threads, "rounds": a.rounds,
                   "steps_per_round": a.steps, "data": a.data, "clock": a.clock, "input_shape": list(data.input_shape),
                   "ops": list(NB201_OPS), "params": sum(p.numel() for p in search.net.parameters())},
        "equivalence": check,
        "nasbench_images_per_s": round(med["nasbench"], 1),
        "reference_images_per_s": round(med["reference"], 1),
        "ablation_images_per_s": {k: round(v, 1) for k, v in med.items() if k.startswith("nasbench-")},
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_of_medians": round(med["nasbench"] / med["reference"], 3),
        "ratio_per_round": ratios,
        "rounds": rounds,
        "uptime_load_before": [round(x, 2) for x in load_before],
        "uptime_load_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "cpu_isa": nasbench.hardware.cpu_isa(),
        "channels_last": search.net.channels_last,
        "environment": {"nasbench": nasbench.__version__, "torch": torch.__version__,
                        "python": platform.python_version(), "machine": platform.machine()},
    }
    text = json.dumps(result, indent=1)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
