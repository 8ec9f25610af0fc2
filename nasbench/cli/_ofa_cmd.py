"""``nasbench search --strategy ofa``: train (or load) an OFA supernet, then evolve its subnets."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from nasbench.cli._shared import check_writable, console, search_progress, writing

__all__ = ["add_arguments", "run"]

#: Defaults of the schedule flags; the flags themselves default to None, so that a flag given
#: can be told from one left out (a stored supernet's schedule must not be contradicted).
DEFAULT_PHASES = "full:2,kernel:1,depth:1,expansion:1,width:1"
DEFAULT_SANDWICH = 2
DEFAULT_LR = 0.05


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Once-for-All flags of ``nasbench search``."""
    g = p.add_argument_group("once-for-all (--strategy ofa; --budget = subnets evaluated; evolution flags apply)")
    g.add_argument("--ofa-phases", default=None, metavar="PHASE:EPOCHS,...",
                   help=f"progressive shrinking schedule (default {DEFAULT_PHASES})")
    g.add_argument("--supernet", default=None, metavar="PATH",
                   help="supernet checkpoint: loaded if present (schedule flags, if given, must match the ones it "
                        "was trained with), else trained and written there; resumes a partly trained one "
                        "(default .nasbench/STUDY.ofa.pt)")
    g.add_argument("--sandwich", type=int, default=None,
                   help=f"random subnets per step besides the largest and smallest (default {DEFAULT_SANDWICH})")


def _config(args: argparse.Namespace, checkpoint: Path) -> Any:
    """The schedule: the checkpoint's own when it exists (so --supernet PATH loads as trained), else the flags.

    Raises:
        ConfigError: a schedule flag given differs from the one the existing checkpoint was trained with.
    """
    from nasbench._checkpoint import load_checkpoint
    from nasbench.errors import ConfigError
    from nasbench.ofa import OFAConfig

    if args.epochs is not None:
        raise ConfigError("OFA trains by phases: use --ofa-phases full:4,kernel:2,... instead of --epochs")
    flags = OFAConfig(phases=OFAConfig.parse_phases(args.ofa_phases or DEFAULT_PHASES), batch_size=args.batch_size,
                      lr=args.lr if args.lr is not None else DEFAULT_LR,
                      random_subnets=args.sandwich if args.sandwich is not None else DEFAULT_SANDWICH)
    state = load_checkpoint(checkpoint, what="OFA supernet checkpoint")
    if state is None:
        return flags
    try:
        saved = state["config"]
        stored = OFAConfig(**{**saved, "phases": tuple(tuple(p) for p in saved["phases"])})
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{checkpoint} is not an OFA supernet checkpoint (no {exc}); pass another --supernet") from None
    given = {"--ofa-phases": ("phases", args.ofa_phases is not None),
             "--sandwich": ("random_subnets", args.sandwich is not None),
             "--lr": ("lr", args.lr is not None),
             "--batch-size": ("batch_size", args.batch_size_given)}
    clash = [flag for flag, (name, was_given) in given.items()
             if was_given and getattr(flags, name) != getattr(stored, name)]
    if clash:
        shown = " ".join(f"{flag} {_show(getattr(stored, given[flag][0]))}" for flag in clash)
        raise ConfigError(f"supernet {checkpoint} was trained with {shown}; drop {', '.join(clash)} to reuse it "
                          "or give a new --supernet path")
    return stored


def _show(value: Any) -> str:
    """A schedule setting as its flag would spell it."""
    if isinstance(value, tuple):
        return ",".join(f"{p}:{e}" for p, e in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def run(args: argparse.Namespace, strategy_options: dict[str, Any]) -> int:
    """Run an OFA search from parsed ``nasbench search`` arguments."""
    from nasbench._spaces import load_space
    from nasbench.cli._tables import trials_table
    from nasbench.data import load_dataset, parse_spec
    from nasbench.errors import ConfigError
    from nasbench.objectives import Objectives
    from nasbench.ofa import OFASupernet, OFATrainer, SubnetEvaluator, export_subnet
    from nasbench.runner import (
        DEFAULT_STORAGE,
        Constraints,
        StudyRecorder,
        pareto_trials,
        redact,
        resume_seed,
        run_search,
    )
    from nasbench.strategies import create_strategy
    from nasbench.train import resolve_device

    if not args.debug:
        logging.getLogger("nasbench.data").setLevel(logging.WARNING)
    if args.benchmark:
        raise ConfigError("OFA trains a supernet; it cannot run on --benchmark tables (use --dataset)")
    from nasbench.cli._darts_cmd import ray_settings

    ray = ray_settings(args, "Once-for-All")
    objectives = Objectives.parse(args.objective)
    space = load_space(args.space or "mobilenetv3")
    constraints = Constraints(args.max_params, args.max_flops, args.max_latency_ms)
    spec = args.dataset or "digits"
    storage = args.storage or DEFAULT_STORAGE
    study_name = args.study or "-".join([space.name, parse_spec(spec)[0], "ofa", *objectives.names[1:]])
    checkpoint = Path(args.supernet or Path(".nasbench") / f"{study_name}.ofa.pt")
    config = _config(args, checkpoint)
    data = load_dataset(spec, seed=args.seed, limit=args.limit)
    OFASupernet(space, data.num_classes, data.input_shape)  # refuses a space it cannot make elastic, before the study
    predictor = None
    if not args.latency_profile and (args.max_latency_ms is not None or "latency" in objectives.names):
        raise ConfigError("OFA ranks subnets by predicted latency: pass --latency-profile PROFILE.json "
                          "('nasbench latency profile --space ...')")
    if args.latency_profile:
        from nasbench.runner._evaluator import _predictor

        predictor = _predictor(args.latency_profile, space)
        prof = predictor.profile
        if tuple(prof.input_shape) != data.input_shape or prof.num_classes != data.num_classes:
            raise ConfigError(f"latency profile {args.latency_profile} is for {tuple(prof.input_shape)} inputs and "
                              f"{prof.num_classes} classes, the dataset has {data.input_shape} and {data.num_classes}")
    device = str(resolve_device(args.device))
    create_strategy("evolution", space, objectives, args.seed, **strategy_options)  # validates evolution flags
    settings = {"strategy": "ofa", "seed": args.seed, "space_source": args.space or "mobilenetv3", "dataset": spec,
                "limit": args.limit, "ofa": {"phases": [list(p) for p in config.phases], "batch_size": config.batch_size,
                                             "lr": config.lr, "random_subnets": config.random_subnets},
                "strategy_options": strategy_options, "constraints": constraints.to_dict(),
                "latency_profile": args.latency_profile}
    trainer = OFATrainer(space, data, config, seed=args.seed, device=device, amp=args.amp)
    trainer.load(checkpoint)
    if not trainer.done:  # a partly trained supernet is written again after every epoch
        check_writable(checkpoint, "--supernet")
    remote = None
    if ray is not None and not trainer.done:  # train in one Ray actor; subnets are scored here afterwards
        from nasbench.ofa import OFAJob
        from nasbench.runner import RaySupernet

        gpus = ray.get("gpus_per_trial", 0.0)
        job = OFAJob(space, spec, config, seed=args.seed, limit=args.limit,  # the space itself: no shared files
                     device="cpu" if args.device == "auto" and not gpus else args.device, amp=args.amp)
        remote = RaySupernet(job, **ray)
        remote.start()
        remote.load(checkpoint)
    try:
        recorder = StudyRecorder(storage, study_name, space, objectives, settings)
        recorder.hold_lease("Once-for-All")  # one supernet, one driver: a second one is refused, naming the first
    except BaseException:
        if remote is not None:
            remote.shutdown()
        raise
    try:  # the lease and any reservation are given back however this ends
        where = f" on Ray ({remote.cpus_per_trial:g} CPUs, {remote.gpus_per_trial:g} GPUs)" if remote else ""
        console.print(f"study [bold]{study_name}[/] in {redact(storage)}: Once-for-All on {space.name} ({data.name}, "
                      f"{len(data.train_y)} train / {len(data.val_y)} val), phases "
                      f"{', '.join(f'{p}:{e}' for p, e in config.phases)}, supernet {checkpoint}{where}")
        history = recorder.history()
        interrupted = False
        with search_progress("{task.fields[info]}", args.quiet) as progress:
            if not trainer.done:
                task = progress.add_task("supernet epochs", total=config.epochs, completed=trainer.epoch, info="")

                def on_epoch(r) -> None:  # noqa: ANN001
                    progress.update(task, completed=r.epoch + 1, info=f"{r.phase}: val acc largest "
                                    f"{r.largest_val_accuracy:.3f} / smallest {r.smallest_val_accuracy:.3f}")
                try:
                    if remote is None:
                        trainer.run(on_epoch, checkpoint=checkpoint)
                    else:
                        _train_remote(remote, checkpoint, on_epoch)
                        trainer.load(checkpoint)
                except KeyboardInterrupt:
                    interrupted = True
                finally:
                    if remote is not None:
                        remote.shutdown()
            if not interrupted:
                strategy = create_strategy("evolution", space, objectives, resume_seed(args.seed, len(history)),
                                           **strategy_options)
                strategy.name = "ofa"  # trials say how they were scored: inherited weights
                evaluator = SubnetEvaluator(trainer, objectives, predictor)
                sub = progress.add_task("subnets", total=args.budget, completed=min(len(history), args.budget), info="")
                summary = run_search(strategy, evaluator, recorder, budget=args.budget, seed=args.seed, history=history,
                                     on_trial=lambda rec, n: progress.update(sub, completed=min(n, args.budget)),
                                     constraints=constraints,
                                     estimate=lambda g: evaluator.estimate(g, with_latency=constraints.needs_latency))
                interrupted = summary.interrupted
        if interrupted:
            console.print(f"interrupted; run the same command to resume (supernet checkpoint {checkpoint})")
            return 130
        trials = [t for t in recorder.study.get_trials(deepcopy=False) if t.user_attrs.get("strategy") == "ofa"
                  and t.state.name == "COMPLETE"]
        if not trials:
            console.print("no complete subnet trial")
            return 0
        front = pareto_trials(recorder.study) if objectives.multi else []
        best = max(trials, key=lambda t: t.values[0])
        console.print(trials_table(front[:10] if front else sorted(trials, key=lambda t: -t.values[0])[: args.top],
                                   objectives.names, title=f"{'Pareto front' if front else 'best'} of {study_name}"))
        out = Path(args.out)
        with writing(out, "--out", study=study_name, storage=storage):
            arch = export_subnet(trainer, space.load_genome(best.user_attrs["genome"]), out,
                                 {**best.user_attrs, "study": study_name, "trial": best.number})
        console.print(f"wrote {out} (trial {best.number}, inherited weights, test accuracy "
                      f"{arch.metrics['test_accuracy']:.4f}); load it with nasbench.load_architecture('{out}').build()")
        if front:
            folder = out.with_name(out.stem + "_pareto")
            with writing(folder, "the Pareto folder", study=study_name, storage=storage):
                folder.mkdir(parents=True, exist_ok=True)
                for stale in folder.glob("point_*"):  # a resumed search's front may have fewer points
                    stale.unlink()
                for i, t in enumerate(sorted(front, key=lambda t: t.values[1])):
                    export_subnet(trainer, space.load_genome(t.user_attrs["genome"]), folder / f"point_{i:02d}.json",
                                  {**t.user_attrs, "study": study_name, "trial": t.number})
            console.print(f"wrote {len(front)} Pareto points with weights to {folder}/")
        return 0
    finally:
        recorder.close()


def _train_remote(remote: Any, checkpoint: Path, on_epoch: Any) -> None:
    """Train the remaining epochs in the Ray actor; the driver writes the checkpoint after each."""
    while not remote.finished:
        report = remote.train_epoch()
        remote.save(checkpoint)
        on_epoch(report)
