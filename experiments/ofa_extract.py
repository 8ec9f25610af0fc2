"""Once-for-All subnet extraction time: ``OFASupernet.extract`` against building the subnet and copying into it.

The full ``mobilenetv3`` supernet (5 stages, kernel 3/5/7, expansion 3/4/6, depth 2/3/4,
width x0.75/1/1.25) at 1000 classes for 3x224x224 images (extraction does not depend on the
input size; the supernet is built for one). Two ways to get the stand-alone module of a
subnet, both timed in this run:

* ``new``: ``OFASupernet.extract`` as it is now: each op made from a blueprint of its
  structure (recorded once per op shape from a meta-device build) around copies of the
  supernet's slices (their list recorded once per block position and shape), no random
  initialization; the smaller depthwise kernels are computed once per layer while the
  supernet's weights stay the same.
* ``old``: how ``extract`` worked before (``old_extract`` below, the code of that version):
  ``space.build`` (random initialization included, global RNG state kept), then
  each slice copied into the built module, the smaller depthwise kernels recomputed each time.

Protocol: the supernet's BatchNorm statistics and kernel transforms are randomized (so that
a wrong slice shows). ``cold``: a fresh supernet extracts ``--subnets`` random subnets in
order, new path only: its blueprint cache starts empty, so this is the cost of the first
extractions of a search. Then ``--subnets`` *other* random subnets (a second seed) are each
extracted by both paths, ``--repeats`` rounds, the order alternating per subnet and per
round. Afterwards (untimed) each of those subnets is checked: the two modules are the same
(state-dict keys, dtypes, strides and values bit for bit, module classes, attributes and
train mode) and compute the same logits on a random 1x3x64x64 input. Times are per extraction, milliseconds,
``--clock wall`` (``time.perf_counter``) or ``cpu`` (process CPU time, less sensitive to
other processes with ``--threads 1``); ``--threads`` torch threads (default 2).

    python experiments/ofa_extract.py                      # ~20 s on 2 idle cores; JSON on stdout
    python experiments/ofa_extract.py --threads 1 --clock cpu --subnets 100
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasbench import load_space
from nasbench.ofa import OFASupernet, sample_subnet
from nasbench.space import Genome

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported by path
from _provenance import provenance  # noqa: E402

logger = logging.getLogger("ofa_extract")


# -- the extraction as it was before blueprints (nasbench before this change), verbatim in substance ----------
def _old_copy_conv(src: Any, dst: nn.Module) -> None:
    c_in, c_out = dst.conv.in_channels, dst.conv.out_channels
    with torch.no_grad():
        dst.conv.weight.copy_(src.weight_for(c_in, c_out, dst.conv.kernel_size[0]))
        c = dst.bn.num_features
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst.bn, name).copy_(getattr(src.bn, name)[:c])
        dst.bn.num_batches_tracked.copy_(src.bn.num_batches_tracked)


def _old_copy_se(src: Any, dst: nn.Module) -> None:
    h, mid = dst.reduce.out_channels, dst.reduce.in_channels
    with torch.no_grad():
        dst.reduce.weight.copy_(src.reduce.weight[:h, :mid])
        dst.reduce.bias.copy_(src.reduce.bias[:h])
        dst.expand.weight.copy_(src.expand.weight[:mid, :h])
        dst.expand.bias.copy_(src.expand.bias[:mid])


def _old_copy_block(src: Any, dst: nn.Module) -> None:
    if dst.expand is not None:
        _old_copy_conv(src.expand, dst.expand)
    _old_copy_conv(src.depthwise, dst.depthwise)
    if dst.se is not None:
        _old_copy_se(src.se, dst.se)
    _old_copy_conv(src.project, dst.project)


def old_extract(net: OFASupernet, genome: Genome) -> nn.Module:
    """``space.build`` (random init, RNG state kept), then copy every slice into it: the previous ``extract``."""
    with torch.random.fork_rng(devices=[]):
        model = net.space.build(genome, net.num_classes, net.input_shape)
    arch = net.set_active(genome)
    _old_copy_conv(net.stem, model.stem)
    counts = dict.fromkeys(net._stage_names, 0)
    for dst, b in zip(model.blocks, arch["blocks"]):
        si = net._stage_names.index(b["stage"])
        _old_copy_block(net.stages[si][counts[b["stage"]]], dst)
        counts[b["stage"]] += 1
    if net.head is not None:
        _old_copy_conv(net.head, model.head)
    with torch.no_grad():
        w = model.classifier.weight
        w.copy_(net.classifier.weight[:, : w.shape[1]])
        model.classifier.bias.copy_(net.classifier.bias)
    return model.to(net.classifier.weight.device).train(net.training)


# -- checks and timing --------------------------------------------------------------------------------------
def randomize(net: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and kernel transforms, so that a wrong slice shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.num_batches_tracked.fill_(7)
        for name, p in net.named_parameters():
            if "transforms" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=g))


def differences(a: nn.Module, b: nn.Module) -> list[str]:
    """Where two modules differ: structure, attributes, mode, tensors (bit for bit); [] when the same."""
    out = []
    mods_a, mods_b = dict(a.named_modules()), dict(b.named_modules())
    if list(mods_a) != list(mods_b):
        return ["module names"]
    for name, ma in mods_a.items():
        mb = mods_b[name]
        plain = {k: v for k, v in vars(ma).items() if k not in ("_parameters", "_buffers", "_modules")}
        if type(ma) is not type(mb) or plain != {k: v for k, v in vars(mb).items() if k in plain} \
                or set(vars(ma)) != set(vars(mb)):
            out.append(f"module {name or '<root>'}")
    sa, sb = a.state_dict(), b.state_dict()
    if list(sa) != list(sb):
        return [*out, "state_dict keys"]
    for k, x in sa.items():
        y = sb[k]
        if (x.dtype, x.shape, x.stride(), x.device) != (y.dtype, y.shape, y.stride(), y.device) \
                or not torch.equal(x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8)):
            out.append(k)
    if [p.requires_grad for p in a.parameters()] != [p.requires_grad for p in b.parameters()]:
        out.append("requires_grad")
    return out


def quantile(xs: list[float], q: float) -> float:
    """The ``q`` quantile (linear interpolation between order statistics)."""
    s = sorted(xs)
    i = q * (len(s) - 1)
    lo = int(i)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (i - lo)


def summary(ms: list[float]) -> dict[str, Any]:
    """Median, p90, min and max of a list of milliseconds."""
    return {"median_ms": round(statistics.median(ms), 2), "p90_ms": round(quantile(ms, 0.9), 2),
            "min_ms": round(min(ms), 2), "max_ms": round(max(ms), 2), "n": len(ms)}


def timed(fn: Callable[[], Any], clock: Callable[[], float]) -> tuple[Any, float]:
    """``fn()`` and its duration in ms."""
    t = clock()
    out = fn()
    return out, (clock() - t) * 1e3


def cpu_model() -> str:
    """The CPU's model name (the library's own ``device_name``)."""
    from nasbench.hardware import device_name

    return device_name("cpu")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, time cold and paired extractions, check equality, print JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subnets", type=int, default=50, help="random subnets per pass")
    p.add_argument("--repeats", type=int, default=3, help="rounds over the paired subnets")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--resolution", type=int, default=224, help="the supernet's input size (3xRxR)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: process CPU time (with --threads 1, nearly immune to other processes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target-ms", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(a.threads)
    clock = time.perf_counter if a.clock == "wall" else time.process_time
    load_before = os.getloadavg()
    space = load_space("mobilenetv3")
    shape = (3, a.resolution, a.resolution)

    def supernet() -> OFASupernet:
        torch.manual_seed(a.seed)
        net = OFASupernet(space, a.classes, shape).eval()
        randomize(net, a.seed)
        return net

    # Cold: a fresh supernet, its first extractions (blueprints and kernels made on the way).
    net = supernet()
    rng = random.Random(a.seed)
    cold_genomes = [sample_subnet(space, rng) for _ in range(a.subnets)]
    cold = [timed(lambda g=g: net.extract(g), clock)[1] for g in cold_genomes]
    logger.info("cold: first %.1f ms, median %.1f ms", cold[0], statistics.median(cold))
    cached_after_cold = len(net._cache)

    # Paired: other subnets, both paths, alternating order.
    rng = random.Random(a.seed + 1)
    genomes = [sample_subnet(space, rng) for _ in range(a.subnets)]
    paths = {"new": net.extract, "old": lambda g: old_extract(net, g)}
    times: dict[str, list[list[float]]] = {k: [[] for _ in genomes] for k in paths}
    for r in range(a.repeats):
        for i, g in enumerate(genomes):
            for k in (["new", "old"] if (i + r) % 2 == 0 else ["old", "new"]):
                times[k][i].append(timed(lambda k=k, g=g: paths[k](g), clock)[1])
        logger.info("round %d: new %.1f ms, old %.1f ms (medians), load %.2f", r,
                    statistics.median(t[r] for t in times["new"]), statistics.median(t[r] for t in times["old"]),
                    os.getloadavg()[0])
    load_after = os.getloadavg()

    # Checks (untimed): the two paths give the same module, bit for bit, and the same logits.
    mismatches: list[dict[str, Any]] = []
    outputs_equal = 0
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(a.seed))
    for i, g in enumerate(genomes):
        fast, slow = net.extract(g), old_extract(net, g)
        diff = differences(fast, slow)
        with torch.no_grad():
            same_out = torch.equal(fast.eval()(x), slow.eval()(x))
        outputs_equal += same_out
        if diff or not same_out:
            mismatches.append({"subnet": i, "genome": g.hash, "differences": diff[:10], "outputs_equal": same_out})
    new = [t for ts in times["new"] for t in ts]
    old = [t for ts in times["old"] for t in ts]
    per_subnet_ratio = [statistics.median(o) / statistics.median(n) for n, o in zip(times["new"], times["old"])]
    elements = [sum(t.numel() for t in net.extract(g).state_dict().values()) for g in genomes]
    result = {
        "what": "ms per OFASupernet.extract of a random mobilenetv3 subnet (new: blueprints around copied slices) "
                "vs building it with space.build and copying into it (old)",
        "config": {"space": "mobilenetv3", "classes": a.classes, "input_shape": list(shape), "subnets": a.subnets,
                   "repeats": a.repeats, "threads": a.threads, "clock": a.clock, "seed": a.seed},
        "new": summary(new),
        "old": summary(old),
        "ratio_old_over_new_medians": round(statistics.median(old) / statistics.median(new), 2),
        "ratio_old_over_new_per_subnet_median": round(statistics.median(per_subnet_ratio), 2),
        "round_medians_ms": [{k: round(statistics.median(t[r] for t in times[k]), 2) for k in paths}
                             for r in range(a.repeats)],
        "target_ms": a.target_ms,
        "new_median_within_target": statistics.median(new) <= a.target_ms,
        "cold": {**summary(cold), "first_ms": round(cold[0], 2),
                 "what": "a fresh supernet's first extractions (new path), blueprint cache filling up",
                 "cache_entries_after": cached_after_cold},
        "cache_entries_after_all": len(net._cache),
        "checks": {"paired_subnets": len(genomes), "identical_modules_and_tensors": len(genomes) - sum(
                       bool(m["differences"]) for m in mismatches),
                   "identical_logits_1x3x64x64": outputs_equal, "mismatches": mismatches},
        "subnet_tensor_elements": {"min": min(elements), "median": int(statistics.median(elements)),
                                   "max": max(elements)},
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "uptime_load_before": [round(v, 2) for v in load_before],
        "uptime_load_after": [round(v, 2) for v in load_after],
        "provenance": provenance(),
    }
    text = json.dumps(result, indent=1)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    print(text)
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
