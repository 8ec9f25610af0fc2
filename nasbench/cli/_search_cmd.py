"""``nasbench search``: run a strategy, record every trial, print the best, write best.json."""

from __future__ import annotations

import argparse
import logging

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nasbench.cli._shared import console, positive_int
from nasbench.cli._tables import trials_table

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``search`` to the CLI."""
    p = sub.add_parser("search", help="search a space; every evaluated architecture is an Optuna trial")
    p.add_argument("--strategy", default="tpe", help="random | tpe | nsga2 (default tpe)")
    p.add_argument("--space", default="resnet", help="built-in space name or .py file defining SPACE (default resnet)")
    p.add_argument("--dataset", default="digits", help="NAME[:PATH]: digits (default, offline), cifar10[:PATH], "
                   "mnist[:PATH], fashion-mnist[:PATH], imagefolder:PATH, synthetic")
    p.add_argument("--budget", type=positive_int, default=10, help="finished trials wanted in the study (default 10)")
    p.add_argument("--epochs", type=float, default=4.0, help="training epochs per trial (default 4)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--optimizer", default="sgd", help="sgd | adamw")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.05 sgd, 1e-3 adamw)")
    p.add_argument("--trial-seconds", type=float, default=None, help="wall-clock cap per trial's training")
    p.add_argument("--limit", type=positive_int, default=None, help="cap every split at this many images (quick runs)")
    p.add_argument("--objective", default="accuracy", help="accuracy | accuracy,latency | accuracy,params | accuracy,flops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--storage", default=None, help="study storage URL (default sqlite:///nasbench.db in this folder)")
    p.add_argument("--study", default=None, help="study name (default SPACE-DATASET-STRATEGY); same name resumes")
    p.add_argument("--out", default="best.json", help="where to write the best architecture (default best.json)")
    p.add_argument("--top", type=positive_int, default=5, help="rows of the closing table")
    p.set_defaults(handler=_search)


def _search(args: argparse.Namespace) -> int:
    from nasbench._spaces import load_space
    from nasbench.data import load_dataset, parse_spec
    from nasbench.objectives import Objectives
    from nasbench.runner import (
        DEFAULT_STORAGE,
        StudyRecorder,
        TrainingEvaluator,
        resume_seed,
        run_search,
        top_trials,
    )
    from nasbench.strategies import STRATEGIES, create_strategy
    from nasbench.train import TrainConfig

    if not args.debug:
        for name in ("nasbench.train", "nasbench.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # Validate everything before the study is touched.
    objectives = Objectives.parse(args.objective)
    STRATEGIES.get(args.strategy)
    space = load_space(args.space)
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                        max_seconds=args.trial_seconds)
    data = load_dataset(args.dataset, seed=args.seed, limit=args.limit)
    dataset_name = parse_spec(args.dataset)[0]
    create_strategy(args.strategy, space, objectives, args.seed)  # refuses e.g. nsga2 with one objective

    storage = args.storage or DEFAULT_STORAGE
    study_name = args.study or f"{space.name}-{dataset_name}-{args.strategy}"
    settings = {"strategy": args.strategy, "dataset": args.dataset, "seed": args.seed, "epochs": args.epochs,
                "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr, "limit": args.limit,
                "trial_seconds": args.trial_seconds, "space_source": args.space}
    recorder = StudyRecorder(storage, study_name, space, objectives, settings)
    history = recorder.history()
    strategy = create_strategy(args.strategy, space, objectives, resume_seed(args.seed, len(history)))
    evaluator = TrainingEvaluator(space=args.space, dataset=args.dataset, train=train, objectives=objectives,
                                  data_seed=args.seed, limit=args.limit, device=args.device)
    console.print(f"study [bold]{study_name}[/] in {storage}: {space.name} on {data.name} "
                  f"({len(data.train_y)} train / {len(data.val_y)} val), strategy {args.strategy}, "
                  f"objective {objectives}, {len(history)} of {args.budget} trials already done")

    best = {"acc": max((r.evaluation.values[0] for r in history if r.evaluation.ok), default=None)}
    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("best {task.fields[best]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False, disable=args.quiet) as progress:
        task = progress.add_task("trials", total=args.budget, completed=min(len(history), args.budget),
                                 best=_fmt(best["acc"]))

        def on_trial(rec, finished):  # noqa: ANN001
            if rec.evaluation.ok:
                acc = rec.evaluation.values[0]
                best["acc"] = acc if best["acc"] is None else max(best["acc"], acc)
            else:
                progress.console.print(f"[yellow]trial {rec.number} failed:[/] {rec.evaluation.failure}")
            progress.update(task, completed=min(finished, args.budget), best=_fmt(best["acc"]))

        summary = run_search(strategy, evaluator, recorder, budget=args.budget, seed=args.seed,
                             on_trial=on_trial, history=history)

    top = top_trials(recorder.study, args.top)
    if top:
        console.print(trials_table(top, objectives.names, title=f"best of {study_name}"))
        _write_best(recorder, args, data)
    else:
        console.print("no complete trial yet")
    if summary.exhausted:
        console.print("[yellow]stopped early: the strategy kept proposing architectures already evaluated[/]")
    if summary.interrupted:
        console.print(f"interrupted: {summary.finished} finished trials kept; run the same command to resume")
        return 130
    return 0


def _write_best(recorder, args: argparse.Namespace, data) -> None:  # noqa: ANN001
    from nasbench.cli._study_cmds import export_trial
    from nasbench.runner import best_trial

    trial = best_trial(recorder.study)
    export_trial(trial, recorder.space, args.out, num_classes=data.num_classes, input_shape=data.input_shape,
                 study_name=recorder.name)
    console.print(f"wrote {args.out} (trial {trial.number}); retrain it with 'nasbench train {args.out}'")


def _fmt(acc: float | None) -> str:
    return "-" if acc is None else f"{acc:.4f}"
