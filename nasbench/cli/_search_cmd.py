"""``nasbench search``: run a strategy, record every trial, print the best, write best.json."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from nasbench.cli import _darts_cmd, _ofa_cmd
from nasbench.cli._shared import (
    AMP_CHOICES,
    check_device,
    check_writable,
    console,
    positive_int,
    search_progress,
    writing,
)
from nasbench.cli._tables import trials_table

#: Batch size when --batch-size is not given (the flag defaults to None so that OFA can tell "given" from "left out").
DEFAULT_BATCH_SIZE = 64

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``search`` to the CLI."""
    p = sub.add_parser("search", help="search a space; every evaluated architecture is an Optuna trial")
    p.add_argument("--strategy", default="evolution", help="random | tpe | nsga2 | evolution (default) | darts | ofa")
    p.add_argument("--space", default=None,
                   help="built-in space name or .py file defining SPACE (default resnet; nb201 for darts)")
    p.add_argument("--dataset", default=None, help="NAME[:PATH]: digits (default, offline), cifar10[:PATH], "
                   "mnist[:PATH], fashion-mnist[:PATH], imagefolder:PATH, synthetic; with --benchmark: "
                   "cifar10 (default), cifar100, imagenet16")
    p.add_argument("--benchmark", default=None, metavar="nb201:PATH",
                   help="answer from the NAS-Bench-201 tables in PATH instead of training (space nb201)")
    p.add_argument("--device-latency", default=None, metavar="DEVICE",
                   help="with --benchmark: latency column of the table (e.g. raspi4, pixel3, gold_6226)")
    p.add_argument("--budget", type=positive_int, default=10, help="finished trials wanted in the study (default 10)")
    g = p.add_argument_group("training of each trial")
    g.add_argument("--epochs", type=float, default=None, help="training epochs per trial (default 4)")
    g.add_argument("--batch-size", type=positive_int, default=None, help=f"default {DEFAULT_BATCH_SIZE}")
    g.add_argument("--optimizer", default="sgd", help="sgd | adamw")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.05 sgd, 1e-3 adamw)")
    g.add_argument("--trial-seconds", type=float, default=None, help="wall-clock cap per trial's training")
    g.add_argument("--limit", type=positive_int, default=None, help="cap every split at this many images (quick runs)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    g.add_argument("--amp", default="auto", choices=AMP_CHOICES,
                   help="mixed precision of every training: auto (bf16 on a CUDA GPU with bf16, else float32; "
                        "default) | off | bf16")
    g = p.add_argument_group("objectives and constraints")
    g.add_argument("--objective", default="accuracy", help="accuracy | accuracy,latency | accuracy,params | accuracy,flops")
    g.add_argument("--max-params", type=float, default=None, help="hard bound: redraw larger architectures")
    g.add_argument("--max-flops", type=float, default=None, help="hard bound on MACs per image")
    g.add_argument("--max-latency-ms", type=float, default=None, help="hard bound on latency (ms, batch 1)")
    g.add_argument("--latency-profile", default=None, metavar="PROFILE.json",
                   help="predict latency with this profile ('nasbench latency profile') instead of measuring it")
    g.add_argument("--measure-latency", action="store_true",
                   help="also measure each trained network's CPU latency (recorded as measured_latency_ms)")
    g = p.add_argument_group("evolution")
    g.add_argument("--population", type=positive_int, default=20, help="population size P (default 20)")
    g.add_argument("--tournament", type=positive_int, default=5, help="tournament size S (default 5)")
    g.add_argument("--mutation-rate", type=float, default=1.0)
    g.add_argument("--crossover-rate", type=float, default=0.0)
    g.add_argument("--crossover-mode", default="uniform", help="uniform | stage")
    g = p.add_argument_group("study")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--storage", default=None, help="study storage URL (default sqlite:///nasbench.db in this folder)")
    g.add_argument("--study", default=None, help="study name (default SPACE-DATASET-STRATEGY[-OBJECTIVES]); same name resumes")
    g.add_argument("--out", default="best.json", help="where to write the best architecture (default best.json)")
    g.add_argument("--top", type=positive_int, default=5, help="rows of the closing table")
    g = p.add_argument_group("execution (not stored with the study: a search may resume on another executor)")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: one trial at a time in this process (default); ray: parallel trials on Ray")
    g.add_argument("--address", default=None,
                   help="with ray: auto | HOST:PORT of a running Ray cluster (default: start Ray on this machine)")
    g.add_argument("--workers", type=positive_int, default=None, help="with ray: trials at once (default 2)")
    g.add_argument("--cpus-per-trial", type=float, default=None,
                   help="with ray: CPUs, and torch threads, per trial (default 1)")
    g.add_argument("--gpus-per-trial", type=float, default=None,
                   help="with ray: GPUs per trial; 0.5 puts two trials on a GPU (default 0)")
    g.add_argument("--max-retries", type=int, default=None,
                   help="with ray: re-runs of a trial whose worker died before it counts as failed (default 2)")
    g = p.add_argument_group("early stopping (with --executor ray; the scheduler is stored with the study)")
    g.add_argument("--scheduler", choices=("none", "asha"), default=None,
                   help="none (default): every trial trains all --epochs, as Ray core tasks; asha: Ray Tune's ASHA "
                        "stops weak trials at rungs (recorded PRUNED with their accuracy per epoch)")
    g.add_argument("--grace-epochs", type=positive_int, default=None,
                   help="with asha: epochs every trial trains before it may be stopped (default 1)")
    g.add_argument("--reduction-factor", type=float, default=None,
                   help="with asha: about 1/F of the trials reaching a rung go on; rungs at grace x F^k (default 3)")
    _darts_cmd.add_arguments(p)
    _ofa_cmd.add_arguments(p)
    p.set_defaults(handler=_search)


def _strategy_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.strategy not in ("evolution", "ofa"):  # OFA evolves subnets
        return {}
    return {"population_size": args.population, "tournament_size": args.tournament,
            "mutation_rate": args.mutation_rate, "crossover_rate": args.crossover_rate,
            "crossover_mode": args.crossover_mode}


def _evaluator(args: argparse.Namespace, space: Any, objectives: Any) -> tuple[Any, str, dict[str, Any], str]:
    """(evaluator, dataset name, settings for the study, one-line description)."""
    from nasbench.errors import ConfigError

    if args.benchmark:
        if args.latency_profile or args.measure_latency:
            raise ConfigError("with --benchmark, latency comes from the table: use --device-latency DEVICE")
        from nasbench.benchmarks import NB201, BenchmarkEvaluator, resolve_nb201_paths

        kind, _, path = args.benchmark.partition(":")
        if kind != "nb201" or not path:
            raise ConfigError(f"unknown benchmark {args.benchmark!r}; use --benchmark nb201:PATH")
        if space.name != "nb201":
            raise ConfigError(f"the nb201 benchmark answers for --space nb201, not {space.name!r}")
        acc, lat = resolve_nb201_paths(path)
        bench = NB201(acc, lat, space=space)
        dataset = NB201.dataset_name(args.dataset or "cifar10")
        ev = BenchmarkEvaluator(bench, dataset, objectives, device=args.device_latency)
        settings = {"benchmark": "nb201", "dataset": dataset, "device_latency": args.device_latency}
        return ev, dataset, settings, f"NAS-Bench-201 table ({len(bench)} architectures, {dataset})"

    from nasbench.data import load_dataset, parse_spec
    from nasbench.runner import TrainingEvaluator
    from nasbench.train import TrainConfig

    spec = args.dataset or "digits"
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                        max_seconds=args.trial_seconds, amp=args.amp)
    data = load_dataset(spec, seed=args.seed, limit=args.limit)
    ev = TrainingEvaluator(space=args.space, dataset=spec, train=train, objectives=objectives, data_seed=args.seed,
                           limit=args.limit, device=args.device, measure_latency=args.measure_latency,
                           latency_profile=args.latency_profile)
    if args.latency_profile:
        from nasbench.hardware import LatencyProfile

        LatencyProfile.load(args.latency_profile).check(space)
        ev.predictor()  # refuses a profile made for other inputs
    settings = {"dataset": spec, "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": args.optimizer,
                "lr": args.lr, "limit": args.limit, "trial_seconds": args.trial_seconds,
                "latency_profile": args.latency_profile}
    text = f"{data.name} ({len(data.train_y)} train / {len(data.val_y)} val), {args.epochs:g} epochs per trial"
    return ev, parse_spec(spec)[0], settings, text


def _executor(args: argparse.Namespace, evaluator: Any) -> Any:
    """The executor of ``--executor`` (None: the local default); a Ray executor is started here."""
    from nasbench.errors import ConfigError

    flags = {"address": args.address, "workers": args.workers, "cpus_per_trial": args.cpus_per_trial,
             "gpus_per_trial": args.gpus_per_trial, "max_retries": args.max_retries}
    given = {k: v for k, v in flags.items() if v is not None}
    if args.executor == "local":
        if given:
            raise ConfigError(f"--{next(iter(given)).replace('_', '-')} needs --executor ray")
        return None
    if args.scheduler == "asha":  # Ray Tune: it costs more per trial than core tasks, so only for ASHA
        from nasbench.runner import TuneExecutor

        asha = {"grace_epochs": args.grace_epochs, "reduction_factor": args.reduction_factor}
        executor = TuneExecutor(evaluator, scheduler="asha", **given, **{k: v for k, v in asha.items() if v is not None})
    else:
        from nasbench.runner import RayExecutor

        executor = RayExecutor(evaluator, **given)
    executor.start()
    return executor


def _check_scheduler(args: argparse.Namespace) -> None:
    """Refuse --scheduler, --grace-epochs and --reduction-factor where they cannot apply."""
    from nasbench.errors import ConfigError

    if args.scheduler is not None and args.executor != "ray":
        raise ConfigError("--scheduler needs --executor ray (ASHA runs the trials on Ray Tune)")
    for flag, value in (("--grace-epochs", args.grace_epochs), ("--reduction-factor", args.reduction_factor)):
        if value is not None and args.scheduler != "asha":
            raise ConfigError(f"{flag} needs --scheduler asha")
    if args.scheduler == "asha" and args.strategy in ("darts", "ofa"):
        raise ConfigError(f"--scheduler asha stops the trials of sample-based strategies early; "
                          f"{args.strategy} trains one supernet instead: drop --scheduler")


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, every path ``search`` will write that cannot be written.

    ``--out`` for every strategy; DARTS also writes ``<out stem>_alphas.png`` and its checkpoint;
    OFA writes ``<out stem>.safetensors``, a ``<out stem>_pareto/`` folder (several objectives)
    and its supernet (an existing ``--supernet`` file is an input: only a new one is checked).

    Raises:
        ConfigError: one line naming the path.
    """
    out = check_writable(args.out, "--out")
    default_checkpoints = Path(".nasbench")  # where DARTS and OFA keep STUDY.darts.pt / STUDY.ofa.pt
    if args.strategy == "darts":
        check_writable(out.with_name(out.stem + "_alphas.png"), "the alpha heatmap (beside --out)")
        if args.checkpoint:
            check_writable(args.checkpoint, "--checkpoint")
        else:
            check_writable(default_checkpoints, "the checkpoint folder", folder=True)
    elif args.strategy == "ofa":
        from nasbench.objectives import Objectives

        check_writable(out.with_suffix(".safetensors"), "the weights file (beside --out)")
        if Objectives.parse(args.objective).multi:
            check_writable(out.with_name(out.stem + "_pareto"), "the Pareto folder (beside --out)", folder=True)
        if args.supernet is None:
            check_writable(default_checkpoints, "the supernet folder", folder=True)
        elif not Path(args.supernet).expanduser().exists():
            check_writable(args.supernet, "--supernet")


def _search(args: argparse.Namespace) -> int:
    from nasbench._spaces import load_space
    from nasbench.objectives import Objectives
    from nasbench.runner import (
        DEFAULT_STORAGE,
        PRUNED_KEY,
        Constraints,
        StudyRecorder,
        pareto_trials,
        redact,
        resume_seed,
        run_search,
        top_trials,
    )
    from nasbench.strategies import STRATEGIES, create_strategy

    _check_scheduler(args)
    check_device(args)  # --device cuda without CUDA, --amp bf16 without bf16: refused before the study is touched
    check_outputs(args)  # an unwritable --out, checkpoint or Pareto folder fails now, not after the search
    args.batch_size_given = args.batch_size is not None  # OFA: only a given one may contradict a stored supernet
    args.batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    if args.strategy == "darts":  # --executor ray: the supernet trains in one Ray actor
        return _darts_cmd.run(args)
    if args.strategy == "ofa":
        return _ofa_cmd.run(args, _strategy_options(args))
    args.space = args.space or "resnet"
    args.epochs = 4.0 if args.epochs is None else args.epochs
    if not args.debug:
        for name in ("nasbench.train", "nasbench.data", "nasbench.benchmarks"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # Validate everything before the study is touched.
    objectives = Objectives.parse(args.objective)
    STRATEGIES.get(args.strategy)
    space = load_space(args.space)
    constraints = Constraints(args.max_params, args.max_flops, args.max_latency_ms)
    evaluator, dataset_name, eval_settings, described = _evaluator(args, space, objectives)
    options = _strategy_options(args)
    create_strategy(args.strategy, space, objectives, args.seed, **options)  # refuses e.g. nsga2 with one objective
    executor = _executor(args, evaluator)  # Ray starts (or fails) before the study is touched

    storage = args.storage or DEFAULT_STORAGE
    study_name = args.study or "-".join([space.name, dataset_name, args.strategy, *objectives.names[1:]])
    settings = {"strategy": args.strategy, "seed": args.seed, "space_source": args.space, **eval_settings,
                "strategy_options": options, "constraints": constraints.to_dict(),
                # ASHA's pruned trials are not comparable with fully trained ones: no mixing in one study.
                "scheduler": "asha" if args.scheduler == "asha" else None}
    if args.scheduler == "asha":
        from nasbench.runner import AshaRecorder

        recorder = AshaRecorder(storage, study_name, space, objectives, settings)
        history = recorder.history()
        executor.prime(history)  # ASHA's rungs start with the stored learning curves
    else:
        recorder = StudyRecorder(storage, study_name, space, objectives, settings)
        history = recorder.history()
    strategy = create_strategy(args.strategy, space, objectives, resume_seed(args.seed, len(history)), **options)
    console.print(f"study [bold]{study_name}[/] in {redact(storage)}: space {space.name}, {described}, "
                  f"strategy {args.strategy}, objective {objectives}; {len(history)} of {args.budget} trials done")

    def trained(ev: Any) -> bool:  # fully trained (a trial ASHA stopped early does not compete for best)
        return ev.ok and PRUNED_KEY not in ev.metrics

    best = {"acc": max((r.evaluation.values[0] for r in history if trained(r.evaluation)), default=None)}
    with search_progress("best {task.fields[best]}", args.quiet) as progress:
        task = progress.add_task("trials", total=args.budget, completed=min(len(history), args.budget),
                                 best=_fmt(best["acc"]))

        def on_trial(rec, finished):  # noqa: ANN001
            if trained(rec.evaluation):
                acc = rec.evaluation.values[0]
                best["acc"] = acc if best["acc"] is None else max(best["acc"], acc)
            elif not rec.evaluation.ok:
                progress.console.print(f"[yellow]trial {rec.number} failed:[/] {rec.evaluation.failure}")
            progress.update(task, completed=min(finished, args.budget), best=_fmt(best["acc"]))

        summary = run_search(strategy, evaluator, recorder, budget=args.budget, seed=args.seed, on_trial=on_trial,
                             history=history, constraints=constraints,
                             estimate=lambda g: evaluator.estimate(g, with_latency=constraints.needs_latency),
                             executor=executor)

    if objectives.multi:
        shown = pareto_trials(recorder.study)[: max(args.top, 10)]
        title = f"Pareto front of {study_name} ({len(pareto_trials(recorder.study))} architectures)"
    else:
        shown, title = top_trials(recorder.study, args.top), f"best of {study_name}"
    if shown:
        console.print(trials_table(shown, objectives.names, title=title))
        _write_best(recorder, args, evaluator)
    else:
        console.print("no complete trial yet")
    pruned = sum(PRUNED_KEY in r.evaluation.metrics for r in summary.new)
    if args.scheduler == "asha":
        console.print(f"ASHA stopped {pruned} of {len(summary.new)} new trials early (recorded PRUNED)")
    if summary.exhausted:
        console.print("[yellow]stopped early: the strategy kept proposing architectures already evaluated[/]")
    if summary.interrupted:
        console.print(f"interrupted: {summary.finished} finished trials kept; run the same command to resume")
        return 130
    return 0


def _write_best(recorder: Any, args: argparse.Namespace, evaluator: Any) -> None:
    from nasbench.cli._study_cmds import export_trial
    from nasbench.runner import best_trial

    if hasattr(evaluator, "load_data"):
        data = evaluator.load_data()
        shape, classes = data.input_shape, data.num_classes
    else:
        from nasbench.benchmarks import NB201_INPUT_SHAPE, NB201_NUM_CLASSES

        shape, classes = NB201_INPUT_SHAPE, NB201_NUM_CLASSES[evaluator.dataset]
    trial = best_trial(recorder.study)
    with writing(args.out, "--out", study=recorder.name, storage=args.storage):
        export_trial(trial, recorder.space, args.out, num_classes=classes, input_shape=shape, study_name=recorder.name)
    console.print(f"wrote {args.out} (trial {trial.number}); retrain it with 'nasbench train {args.out}'")


def _fmt(acc: float | None) -> str:
    return "-" if acc is None else f"{acc:.4f}"
