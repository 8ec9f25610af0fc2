"""Once-for-All ranking: does inherited-weight accuracy rank subnets like stand-alone training?

One run, CPU-sized:

1. Real CIFAR-10 images from ``../shared/data/cifar10`` (10,000 JPEGs, split 6,000 / 2,000 /
   2,000 by the seed), average-pooled 2x2 to 16x16 so that a 2-core machine trains the supernet in
   minutes.
2. A reduced MobileNetV3/OFA space (``SPACES`` below, ``--space reduced``: 4 stages, kernel 3/5/7, expansion
   3/4/6, depth 2/3/4, width x0.75/1.0; 128-wide head) — the full ``mobilenetv3`` space
   takes ~9 s per sandwich step at 32x32 here. Its random subnets all train to about the same
   accuracy on this data, so ``--space wide`` (width x0.25-1.0, depth 1-4, expansion 2-6) asks
   the same question where the subnets really differ.
3. The supernet is trained with progressive shrinking (``--phases``), sandwich sampling and
   in-place distillation; the wall-clock time is reported against ``--train-minutes``.
4. ``--subnets`` random subnets: inherited accuracy (extract, BatchNorm recalibration on
   ``--calibration-images`` training images) and stand-alone accuracy after training from scratch for
   ``--scratch-epochs`` epochs with ``--scratch-seeds`` training seeds (the ranking's ground
   truth is their mean), both on the test split. Scratch runs go to ``--workers`` processes.
5. Kendall tau and Spearman rho between the two; the noise ceiling of the truth itself (tau
   between two scratch seeds: no proxy can rank like the truth much better than the truth
   ranks like itself); extraction/recalibration seconds per
   subnet, and, at equal compute, inherited vs from-scratch validation accuracy: the
   supernet's subnet-epochs (a sandwich step trains 2 + ``--sandwich`` subnets) divided
   by the number of subnets gives E; the scratch runs' validation accuracy after epoch
   ceil(E) is compared with the inherited validation accuracy.

    python experiments/ofa_ranking.py               # ~55 min on 2 idle cores; JSON on stdout
    python experiments/ofa_ranking.py --space wide  # the wide space
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from scipy.stats import kendalltau, spearmanr

from nasbench.data import DatasetSplits, load_dataset
from nasbench.ofa import OFAConfig, OFATrainer, calibration_batches, recalibrate_bn, sample_subnet
from nasbench.space import Block, Choice, Genome, MacroSpace, Stage
from nasbench.train import TrainConfig, evaluate, train_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported by path
from _provenance import provenance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEFAULT_CIFAR = DATA / "cifar10" / "cifar10_test_jpg.tar.gz"
RESULTS = REPO / "experiments" / "results" / "ofa_ranking.json"

def _space(name: str, multipliers: list[float], depths: list[int], expansions: list[int], description: str
           ) -> MacroSpace:
    """A MobileNetV3/OFA-style space of 4 stages at CPU size; the choices differ between the two spaces."""
    k, e, d = Choice([3, 5, 7]), Choice(expansions), Choice(depths)

    def stage(stage_name: str, width: int, stride: int, act: str, se: bool) -> Stage:
        return Stage(stage_name, Block("mbconv", kernel_size=k, expansion=e, act=act, se=se), width=width, depth=d,
                     stride=stride)

    return MacroSpace(
        name,
        stem=Block("conv_3x3", act="hswish"), stem_width=16,
        stages=[Stage("first", Block("mbconv", kernel_size=3, expansion=1, act="relu"), width=16),
                stage("s1", 24, 2, "relu", False), stage("s2", 40, 2, "relu", True),
                stage("s3", 80, 2, "hswish", True)],
        head=Block("conv_1x1", act="hswish"), head_width=128, width_multiplier=Choice(multipliers),
        description=description,
    )


#: ``reduced``: OFA's choices at CPU size (random subnets span 2.0-4.9 MFLOPs at 16x16).
#: ``wide``: the same skeleton with width x0.25-1.0, depth 1-4 and expansion 2-6, so random
#: subnets span 0.3-3.5 MFLOPs and their accuracies differ by more than training noise.
SPACES = {
    "reduced": _space("mbv3_cpu", [0.75, 1.0], [2, 3, 4], [3, 4, 6], "reduced MobileNetV3/OFA for CPU experiments"),
    "wide": _space("mbv3_cpu_wide", [0.25, 0.5, 0.75, 1.0], [1, 2, 3, 4], [2, 3, 4, 6],
                   "reduced MobileNetV3/OFA, wide capacity range (width x0.25-1.0, depth 1-4, expansion 2-6)"),
}


def downsample(data: DatasetSplits, factor: int) -> DatasetSplits:
    """Average-pool every split by ``factor``; normalization keeps the 32x32 mean (unchanged by pooling) and std."""
    if factor == 1:
        return data
    pool = lambda x: F.avg_pool2d(x, factor)  # noqa: E731
    return dataclasses.replace(data, train_x=pool(data.train_x), val_x=pool(data.val_x), test_x=pool(data.test_x))


_WORKER: dict[str, Any] = {}


def _init_worker(cifar: str, seed: int, factor: int, epochs: int, threads: int, space: str) -> None:
    """Loads the same splits once per scratch-training process."""
    torch.set_num_threads(threads)
    _WORKER.update(data=downsample(load_dataset(f"cifar10:{cifar}", seed=seed), factor), epochs=epochs,
                   space=SPACES[space])


def _train_scratch(job: tuple[int, int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """Trains subnet ``job[0]`` (genome dict ``job[2]``) from scratch with training seed ``job[1]``."""
    i, seed, genome = job
    data = _WORKER["data"]
    g = Genome.from_dict(genome)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = _WORKER["space"].build(g, data.num_classes, data.input_shape)
    curve: list[float] = []
    t = time.perf_counter()
    result = train_model(fresh, data, TrainConfig(epochs=_WORKER["epochs"], batch_size=64), seed=seed,
                         device="cpu", evaluate_test=True, on_epoch=lambda e, m: curve.append(m["val_accuracy"]))
    return i, {"seed": seed, "test_accuracy": round(float(result.test_accuracy), 4), "params": result.params,
               "flops": result.flops, "val_curve": [round(float(a), 4) for a in curve],
               "seconds": round(time.perf_counter() - t, 2)}


def main(argv: list[str] | None = None) -> int:
    """Train the supernet, score random subnets both ways, print JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cifar", default=str(DEFAULT_CIFAR), help="CIFAR-10 pickle folder, JPEG folder or tar.gz")
    p.add_argument("--downsample", type=int, default=2, help="average-pool factor (default 2: 16x16 images)")
    p.add_argument("--space", choices=sorted(SPACES), default="reduced",
                   help="reduced: OFA's choices at CPU size; wide: width x0.25-1.0, depth 1-4, expansion 2-6")
    p.add_argument("--phases", default="full:15,kernel:4,depth:4,expansion:4,width:5")
    p.add_argument("--train-minutes", type=float, default=20.0, help="the supernet's time budget (reported)")
    p.add_argument("--subnets", type=int, default=20)
    p.add_argument("--scratch-epochs", type=int, default=10, help="from-scratch training of each subnet")
    p.add_argument("--scratch-seeds", type=int, default=2,
                   help="training seeds per subnet from scratch (truth = their mean; >= 2 also gives the ceiling)")
    p.add_argument("--workers", type=int, default=2, help="processes training subnets from scratch")
    p.add_argument("--scratch-threads", type=int, default=1, help="torch threads per scratch process")
    p.add_argument("--calibration-images", type=int, default=2000,
                   help="training images that re-estimate each subnet's BatchNorm statistics (OFA uses 2,000)")
    p.add_argument("--sandwich", type=int, default=2)
    p.add_argument("--supernet", default=None, metavar="PATH",
                   help="checkpoint the supernet there after every epoch, and resume/reuse it if present")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="default experiments/results/ofa_ranking[_wide].json")
    args = p.parse_args(argv)
    space = SPACES[args.space]
    out_path = Path(args.out or (RESULTS if args.space == "reduced" else RESULTS.with_stem(f"ofa_ranking_{args.space}")))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    if not Path(args.cifar).exists():
        print(f"CIFAR-10 not found at {args.cifar}; pass --cifar PATH", file=sys.stderr)
        return 2
    env = {**provenance(), "threads": torch.get_num_threads()}
    data = downsample(load_dataset(f"cifar10:{args.cifar}", seed=args.seed), args.downsample)
    config = OFAConfig(phases=OFAConfig.parse_phases(args.phases), random_subnets=args.sandwich)
    trainer = OFATrainer(space, data, config, seed=args.seed)
    if args.supernet is not None:
        trainer.load(args.supernet)  # resumes (or reuses) a supernet of the same space, data and schedule
    trainer.run(checkpoint=args.supernet)
    train_seconds = sum(h.seconds for h in trainer.history)  # epoch times, so a reused supernet keeps its own
    subnet_epochs = sum(e * (1 if ph == "full" else 2 + args.sandwich) for ph, e in config.phases)
    equal_epochs = subnet_epochs / args.subnets
    equal_at = min(args.scratch_epochs, max(1, math.ceil(equal_epochs)))

    rng = random.Random(args.seed + 1)
    genomes: dict[str, Any] = {}
    while len(genomes) < args.subnets:
        g = sample_subnet(space, rng)
        genomes.setdefault(g.hash, g)
    calibration = calibration_batches(data, n_images=args.calibration_images, seed=args.seed)
    rows = []
    for g in genomes.values():
        t = time.perf_counter()
        model = trainer.net.extract(g)
        t_extract = time.perf_counter() - t
        t = time.perf_counter()
        recalibrate_bn(model, calibration)
        t_recal = time.perf_counter() - t
        inherited, _ = evaluate(model, data.test_x, data.test_y, mean=data.mean, std=data.std)
        inherited_val, _ = evaluate(model, data.val_x, data.val_y, mean=data.mean, std=data.std)
        rows.append({"genome_hash": g.hash, "inherited_test_accuracy": round(inherited, 4),
                     "inherited_val_accuracy": round(inherited_val, 4),
                     "extract_seconds": round(t_extract, 4), "recalibrate_seconds": round(t_recal, 4)})
    jobs = [(i, s, g.to_dict()) for i, g in enumerate(genomes.values()) for s in range(args.scratch_seeds)]
    scratch: dict[int, list[dict[str, Any]]] = {}
    ctx = multiprocessing.get_context("spawn")
    init = (args.cifar, args.seed, args.downsample, args.scratch_epochs, args.scratch_threads, args.space)
    with ctx.Pool(args.workers, initializer=_init_worker, initargs=init) as pool:
        for n, (i, res) in enumerate(pool.imap_unordered(_train_scratch, jobs), 1):
            scratch.setdefault(i, []).append(res)
            logging.info("scratch %d/%d: subnet %d seed %d test %.4f (%.0fs)", n, len(jobs), i, res["seed"],
                         res["test_accuracy"], res["seconds"])
    for i, row in enumerate(rows):
        runs = sorted(scratch[i], key=lambda r: r["seed"])
        row.update({"params": runs[0]["params"], "flops": runs[0]["flops"],
                    "scratch_test_accuracy": round(statistics.mean(r["test_accuracy"] for r in runs), 4),
                    "scratch_test_accuracy_by_seed": [r["test_accuracy"] for r in runs],
                    "scratch_val_accuracy_by_epoch": [round(statistics.mean(c), 4)
                                                      for c in zip(*(r["val_curve"] for r in runs))],
                    "scratch_seconds": round(sum(r["seconds"] for r in runs), 2)})
    inh = [r["inherited_test_accuracy"] for r in rows]
    scr = [r["scratch_test_accuracy"] for r in rows]
    tau = kendalltau(inh, scr)
    rho = spearmanr(inh, scr)
    by_seed = list(zip(*(r["scratch_test_accuracy_by_seed"] for r in rows)))
    summary = {
        "kendall_tau": round(float(tau.statistic), 3), "kendall_p": round(float(tau.pvalue), 4),
        "spearman_rho": round(float(rho.statistic), 3),
        # How well one from-scratch seed ranks like another: the ceiling any proxy can reach against this truth.
        "scratch_seed_vs_seed_tau": (round(float(kendalltau(by_seed[0], by_seed[1]).statistic), 3)
                                     if len(by_seed) >= 2 else None),
        "inherited_vs_single_seed_tau": [round(float(kendalltau(inh, b).statistic), 3) for b in by_seed],
        "flops_vs_scratch_tau": round(float(kendalltau([r["flops"] for r in rows], scr).statistic), 3),
        "supernet_train_minutes": round(train_seconds / 60, 2), "train_budget_minutes": args.train_minutes,
        "within_budget": train_seconds / 60 <= args.train_minutes,
        "extract_seconds_per_subnet": round(statistics.mean(r["extract_seconds"] for r in rows), 4),
        "recalibrate_seconds_per_subnet": round(statistics.mean(r["recalibrate_seconds"] for r in rows), 4),
        "scratch_seconds_per_subnet": round(statistics.mean(r["scratch_seconds"] for r in rows), 1),
        "scratch_seeds": args.scratch_seeds,
        "inherited_test_mean": round(statistics.mean(inh), 4), "scratch_test_mean": round(statistics.mean(scr), 4),
        "scratch_epochs_each": args.scratch_epochs, "supernet_subnet_epochs": subnet_epochs,
        "equal_compute": {
            "scratch_epochs": round(equal_epochs, 2), "compared_at_epoch": equal_at,
            "inherited_val_mean": round(statistics.mean(r["inherited_val_accuracy"] for r in rows), 4),
            "scratch_val_mean": round(statistics.mean(r["scratch_val_accuracy_by_epoch"][equal_at - 1] for r in rows), 4),
            "inherited_better": sum(r["inherited_val_accuracy"] > r["scratch_val_accuracy_by_epoch"][equal_at - 1]
                                    for r in rows)},
        "largest_val_accuracy_by_epoch": [round(h.largest_val_accuracy, 4) for h in trainer.history],
        "smallest_val_accuracy_by_epoch": [round(h.smallest_val_accuracy, 4) for h in trainer.history],
    }
    out = {"config": {**{k: v for k, v in vars(args).items() if k != "out"}, "space_description": space.description,
                      "input_shape": list(data.input_shape), "train_images": len(data.train_y),
                      "test_images": len(data.test_y), "environment": {**env, "load_avg_1min_end": round(os.getloadavg()[0], 2)}},
           "summary": summary, "subnets": rows}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
