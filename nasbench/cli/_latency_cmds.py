"""``nasbench latency profile | predict | evaluate``: build and check a device's latency predictor."""

from __future__ import annotations

import argparse
import json

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from nasbench.cli._shared import (
    check_writable,
    console,
    echo,
    input_shape_arg,
    positive_int,
    writing,
)

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``latency`` and its sub-commands to the CLI."""
    p = sub.add_parser("latency", help="latency lookup tables and predictors for your device")
    lat = p.add_subparsers(dest="latency_command", metavar="SUBCOMMAND", parser_class=type(p))
    lat.required = True

    q = lat.add_parser("profile", help="measure every unit the space can produce, and sampled whole networks")
    q.add_argument("--space", default="resnet", help="built-in space name or .py file defining SPACE")
    q.add_argument("--device", default="cpu", help="cpu | cuda[:N]")
    q.add_argument("--batch-size", type=positive_int, default=1)
    q.add_argument("--threads", type=positive_int, default=1, help="torch threads while measuring (default 1)")
    q.add_argument("--input-shape", type=input_shape_arg, default=(3, 32, 32), help="C,H,W (default 3,32,32)")
    q.add_argument("--num-classes", type=positive_int, default=10)
    q.add_argument("--networks", type=positive_int, default=60, help="whole networks measured to fit the correction")
    q.add_argument("--repeats", type=positive_int, default=30)
    q.add_argument("--warmup", type=int, default=10)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default="profile.json")
    q.set_defaults(handler=_profile)

    q = lat.add_parser("predict", help="predicted latency of an architecture JSON")
    q.add_argument("path", help="architecture JSON")
    q.add_argument("--profile", required=True, help="profile.json from 'nasbench latency profile'")
    q.add_argument("--device", default=None, help="refuse the profile unless it was made on this device type")
    q.add_argument("--batch-size", type=positive_int, default=None, help="refuse the profile unless made at this batch size")
    q.add_argument("--space", default=None, help="space name or file (default: the one recorded in the profile)")
    q.set_defaults(handler=_predict)

    q = lat.add_parser("evaluate", help="measure held-out networks; report the predictor's accuracy vs baselines")
    q.add_argument("--profile", required=True)
    q.add_argument("--n", type=positive_int, default=100, help="held-out networks to measure")
    q.add_argument("--seed", type=int, default=1, help="seed of the held-out sample (profile networks are excluded)")
    q.add_argument("--json", action="store_true", help="print the report as JSON (progress goes to stderr)")
    q.add_argument("--space", default=None, help="space name or file (default: the one recorded in the profile)")
    q.set_defaults(handler=_evaluate)


def _progress(to_stderr: bool = False) -> tuple[Progress, callable]:  # type: ignore[valid-type]
    from rich.console import Console

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True) if to_stderr else console)
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done)

    return progress, update


def _profile(args: argparse.Namespace) -> int:
    from nasbench._spaces import load_space
    from nasbench.hardware import profile_space
    from nasbench.train import resolve_device

    check_writable(args.out, "--out")
    space = load_space(args.space)
    device = str(resolve_device(args.device))
    progress, update = _progress()
    with progress:
        profile = profile_space(space, device=device, batch_size=args.batch_size, threads=args.threads,
                                input_shape=args.input_shape, num_classes=args.num_classes, networks=args.networks,
                                seed=args.seed, warmup=args.warmup, repeats=args.repeats, progress=update)
    with writing(args.out, "--out"):
        profile.save(args.out)
    console.print(f"wrote {args.out}: {len(profile.table)} units and {len(profile.networks)} networks of "
                  f"{space.name} on {profile.device_name} (batch {args.batch_size}, {profile.threads} threads)")
    return 0


def _load(profile_path: str, space: str | None = None):  # noqa: ANN202
    from nasbench._spaces import load_space
    from nasbench.hardware import LatencyPredictor, LatencyProfile

    profile = LatencyProfile.load(profile_path)
    return profile, (sp := load_space(space or profile.space_source or profile.space)), LatencyPredictor(profile, sp)


def _predict(args: argparse.Namespace) -> int:
    from nasbench.export import load_architecture
    from nasbench.hardware import LatencyProfile

    arch = load_architecture(args.path)
    LatencyProfile.load(args.profile).check(device=args.device, batch_size=args.batch_size)
    profile, space, predictor = _load(args.profile, args.space)
    genome = space.validate(arch.genome)
    costs = predictor.costs(genome)
    console.print(f"{predictor.predict(genome):.3f} ms predicted on {profile.device_name} (batch {profile.batch_size}, "
                  f"{profile.threads} threads); table sum {costs['table_sum']:.3f} ms over {costs['units']} units")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import random

    import numpy as np

    from nasbench.hardware import accuracy_report, measure_networks

    profile, space, predictor = _load(args.profile, args.space)
    known = {space.load_genome(n["genome"]).hash for n in profile.networks}
    rng = random.Random(args.seed)
    held: dict[str, object] = {}
    for _ in range(args.n * 50):
        if len(held) >= args.n or len(held) + len(known) >= space.size:
            break
        g = space.sample(rng)
        if g.hash not in known:
            held.setdefault(g.hash, g)
    genomes = list(held.values())
    progress, update = _progress(to_stderr=args.json)
    with progress:
        measured = np.array(measure_networks(space, genomes, device=profile.device, batch_size=profile.batch_size,
                                             threads=profile.threads, input_shape=profile.input_shape,
                                             num_classes=profile.num_classes, warmup=profile.warmup,
                                             repeats=profile.repeats, progress=update))
    fit_genomes = [space.load_genome(n["genome"]) for n in profile.networks]
    fit_flops = np.array([predictor.costs(g)["flops"] for g in fit_genomes], dtype=float)
    fit_ms = np.array([float(n["ms"]) for n in profile.networks])
    slope, intercept = np.polyfit(fit_flops, fit_ms, 1) if len(fit_ms) >= 2 else (0.0, float(np.mean(measured)))
    flops = np.array([predictor.costs(g)["flops"] for g in genomes], dtype=float)
    report = {
        "space": space.name, "device": profile.device_name, "batch_size": profile.batch_size,
        "threads": profile.threads, "n_heldout": len(genomes), "n_fit": len(profile.networks),
        "predictor": accuracy_report(predictor.predict_many(genomes), measured),
        "table_sum": accuracy_report(np.array([predictor.table_sum(g) for g in genomes]), measured),
        "flops_linear": accuracy_report(slope * flops + intercept, measured),
    }
    if args.json:
        echo(json.dumps(report, indent=2) + "\n")
        return 0
    table = Table(title=f"latency predictor on {len(genomes)} held-out {space.name} networks, {profile.device_name}")
    for col in ("method", "within ±10%", "MAPE %", "Spearman"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name in ("predictor", "table_sum", "flops_linear"):
        r = report[name]
        table.add_row(name, f"{100 * r['within_10pct']:.1f}%", f"{r['mape']:.2f}", f"{r['spearman']:.3f}")
    console.print(table)
    return 0
