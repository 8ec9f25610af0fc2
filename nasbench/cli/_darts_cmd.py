"""``nasbench search --strategy darts``: supernet search, per-epoch trials, alpha heatmap, retrain."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from nasbench.cli._shared import console, search_progress, writing

__all__ = ["add_arguments", "run"]

#: DARTS settings as they ran before the setting existed: a study stored without the setting
#: resumes when it is asked for at this value (the flag that reproduces the old run).
_BEFORE_IT_EXISTED = {"early_stop_warmup": 0.0, "selection": "alpha", "projection_tune_epochs": 1}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """DARTS flags of ``nasbench search``."""
    g = p.add_argument_group("darts (--strategy darts; --epochs = search epochs, default 10)")
    g.add_argument("--w-lr", type=float, default=0.025, help="supernet weight SGD learning rate (cosine to 1e-3)")
    g.add_argument("--w-weight-decay", type=float, default=3e-4)
    g.add_argument("--alpha-lr", type=float, default=3e-4, help="architecture (alpha) Adam learning rate")
    g.add_argument("--alpha-weight-decay", type=float, default=1e-3)
    g.add_argument("--unrolled", action="store_true", help="second-order DARTS (one unrolled weight step)")
    g.add_argument("--collapse-guard", default="darts-minus+early-stop",
                   help="darts-minus+early-stop (default): DARTS-'s decaying auxiliary skip, and stop once "
                        "parameter-free ops take over the cell | darts-minus | early-stop: DARTS+, stop once "
                        "none/skip/pool sit on >= --early-stop-edges derived edges of a normal cell after a cell "
                        "below that was found; the answer is the last cell before | none")
    g.add_argument("--early-stop-edges", type=int, default=3,
                   help="with an early-stop guard: parameter-free edges (none, skip, pooling) of a normal cell "
                        "that count as collapse (NB201: 6 edges, DARTS: 8; default 3)")
    g.add_argument("--early-stop-warmup", type=float, default=0.25,
                   help="share of the epochs the early stop ignores while alpha is still near uniform (default 0.25)")
    g.add_argument("--aux-skip", type=float, default=1.0, help="initial weight of DARTS-'s auxiliary skip")
    g.add_argument("--selection", default=None,
                   help="how the final genome is read off the supernet: perturbation (DARTS-PT: each edge keeps the op "
                        "whose removal raises the validation loss most; the default) or alpha (argmax, DARTS; the "
                        "default with a latency-aware loss, which perturbation cannot weigh)")
    g.add_argument("--projection-tune-epochs", type=int, default=1,
                   help="perturbation selection: supernet epochs between two decisions (default 1)")
    g.add_argument("--latency-weight", type=float, default=0.0, help="λ of L_val + λ·E[latency] (needs --latency-profile)")
    g.add_argument("--retrain-epochs", type=float, default=4.0, help="retrain the derived genome from scratch (0: skip)")
    g.add_argument("--checkpoint", default=None, help="checkpoint file (default .nasbench/STUDY.darts.pt); resumes")


def run(args: argparse.Namespace) -> int:
    """Run a DARTS search from parsed ``nasbench search`` arguments."""
    from nasbench._spaces import load_space
    from nasbench.data import load_dataset
    from nasbench.errors import ConfigError
    from nasbench.objectives import Objectives
    from nasbench.strategies._darts import DartsConfig, DartsSearch
    from nasbench.train import TrainConfig, resolve_device

    if not args.debug:
        logging.getLogger("nasbench.data").setLevel(logging.WARNING)
    if args.benchmark:
        raise ConfigError("DARTS trains a supernet; it cannot run on --benchmark tables (use --dataset)")
    objectives = Objectives.parse(args.objective)
    space = load_space(args.space or "nb201")
    epochs = args.epochs if args.epochs is not None else 10
    if int(epochs) != epochs:
        raise ConfigError(f"DARTS --epochs must be a whole number, got {epochs:g}")
    epochs = int(epochs)
    config = DartsConfig(epochs=epochs, batch_size=args.batch_size, w_lr=args.w_lr, w_weight_decay=args.w_weight_decay,
                         alpha_lr=args.alpha_lr, alpha_weight_decay=args.alpha_weight_decay, unrolled=args.unrolled,
                         collapse_guard=args.collapse_guard, aux_skip=args.aux_skip, latency_weight=args.latency_weight,
                         max_latency_ms=args.max_latency_ms, early_stop_edges=args.early_stop_edges,
                         early_stop_warmup=args.early_stop_warmup, selection=args.selection,
                         projection_tune_epochs=args.projection_tune_epochs)
    spec = args.dataset or "digits"
    data = load_dataset(spec, seed=args.seed, limit=args.limit)
    predictor = None
    if args.latency_profile:
        from nasbench.runner._evaluator import _predictor

        predictor = _predictor(args.latency_profile, space)
    elif "latency" in objectives.names:
        raise ConfigError("DARTS with a latency objective needs --latency-profile PROFILE.json")
    retrain = (TrainConfig(epochs=args.retrain_epochs, batch_size=args.batch_size, amp=args.amp)
               if args.retrain_epochs > 0 else None)
    ray = ray_settings(args)
    if ray is None:
        device: str | None = str(resolve_device(args.device))
        search = DartsSearch(space, data, config, seed=args.seed, device=device, predictor=predictor, amp=args.amp)
        where = ""
    else:  # the supernet trains in a Ray actor, started (or refused) before the study is touched
        from nasbench.runner import DartsJob, RaySupernet

        gpus = ray.get("gpus_per_trial", 0.0)
        job = DartsJob(space, spec, config, seed=args.seed, limit=args.limit, predictor=predictor,
                       device="cpu" if args.device == "auto" and not gpus else args.device, amp=args.amp)
        search, device = RaySupernet(job, **ray), None
        search.start()
        where = f" on Ray ({search.cpus_per_trial:g} CPUs, {search.gpus_per_trial:g} GPUs)"
    try:
        return _search(args, search, space, data, spec, config, objectives, retrain, device, where)
    finally:
        if ray is not None:
            search.shutdown()


def ray_settings(args: argparse.Namespace, what: str = "DARTS") -> dict[str, Any] | None:
    """RaySupernet keywords of the ``--executor ray`` flags (None: run in this process)."""
    from nasbench.errors import ConfigError

    flags = {"address": args.address, "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial,
             "max_retries": args.max_retries}
    given = {k: v for k, v in flags.items() if v is not None}
    if args.executor != "ray":
        extra = next((k for k in ("workers", *flags) if getattr(args, k) is not None), None)
        if extra is not None:
            raise ConfigError(f"--{extra.replace('_', '-')} needs --executor ray")
        return None
    if args.workers is not None:
        raise ConfigError(f"--workers does not apply to {what}: one Ray actor trains the supernet; "
                          "size it with --cpus-per-trial and --gpus-per-trial")
    return given


def _search(args: argparse.Namespace, search: Any, space: Any, data: Any, spec: str, config: Any, objectives: Any,
            retrain: Any, device: str | None, where: str) -> int:
    """Record the search in the study, then print the table and write best.json and the heatmap."""
    from nasbench.data import parse_spec
    from nasbench.runner import DEFAULT_STORAGE, StudyRecorder
    from nasbench.strategies._projection import plan_decisions

    decisions = len(plan_decisions(space, args.seed)) if config.selection == "perturbation" else 0
    epochs = config.epochs + decisions  # the progress bar counts each perturbation decision as an epoch
    selection = (f"perturbation selection ({decisions} decisions, {config.projection_tune_epochs} tune epochs each)"
                 if decisions else "alpha selection")
    storage = args.storage or DEFAULT_STORAGE
    study_name = args.study or "-".join([space.name, parse_spec(spec)[0], "darts", *objectives.names[1:]])
    settings = {"strategy": "darts", "seed": args.seed, "space_source": args.space or "nb201", "dataset": spec,
                "limit": args.limit, "darts": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
                "retrain_epochs": args.retrain_epochs, "latency_profile": args.latency_profile}
    checkpoint = Path(args.checkpoint or Path(".nasbench") / f"{study_name}.darts.pt")
    search.load(checkpoint)  # a bad or mismatched checkpoint fails here, before the study is made or changed
    recorder = StudyRecorder(storage, study_name, space, objectives, settings, legacy={"darts": _BEFORE_IT_EXISTED})
    try:
        recorder.hold_lease("DARTS")  # one supernet, one driver: a second one is refused, naming the first
        return _run_and_export(args, search, space, data, config, objectives, retrain, device, where, recorder,
                               study_name, storage, checkpoint, selection, epochs)
    finally:
        recorder.close()


def _run_and_export(args: argparse.Namespace, search: Any, space: Any, data: Any, config: Any, objectives: Any,
                    retrain: Any, device: str | None, where: str, recorder: Any, study_name: str, storage: str,
                    checkpoint: Path, selection: str, epochs: int) -> int:
    """Train (or resume) the supernet under the study's lease, record every epoch, export the answer."""
    from nasbench.cli._study_cmds import export_trial
    from nasbench.cli._tables import trials_table
    from nasbench.runner import redact
    from nasbench.runner._darts_run import plot_alphas, run_darts

    console.print(f"study [bold]{study_name}[/] in {redact(storage)}: DARTS on {space.name} ({data.name}, "
                  f"{len(data.train_y)} train for weights / {len(data.val_y)} val for alpha), {config.epochs} epochs, "
                  f"collapse guard {config.collapse_guard}, {selection}, checkpoint {checkpoint}{where}")
    interrupted = False
    with search_progress("supernet val {task.fields[acc]}", args.quiet) as progress:
        task = progress.add_task("epochs", total=epochs, completed=search.epoch, acc="-")

        def on_epoch(report) -> None:  # noqa: ANN001
            progress.update(task, completed=report.epoch + 1, acc=f"{report.val_accuracy:.4f}")

        try:
            outcome = run_darts(search, recorder, objectives, checkpoint=checkpoint, retrain=retrain, seed=args.seed,
                                device=device, on_epoch=on_epoch)
            progress.update(task, total=search.epoch, completed=search.epoch)  # an early stop ends it sooner
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        console.print(f"interrupted after epoch {search.epoch}; run the same command to resume from {checkpoint}")
        return 130
    trials = [t for t in recorder.study.get_trials(deepcopy=False) if t.number in set(outcome.trials)]
    if trials:
        console.print(trials_table(trials[-5:], objectives.names, title=f"DARTS trials of {study_name} (latest)"))
    best = [t for t in recorder.study.get_trials(deepcopy=False) if t.user_attrs.get("genome_hash") == outcome.genome.hash][-1]
    with writing(args.out, "--out", study=study_name, storage=args.storage):
        export_trial(best, space, args.out, num_classes=data.num_classes, input_shape=data.input_shape,
                     study_name=study_name)
        png = plot_alphas(search, Path(args.out).with_name(Path(args.out).stem + "_alphas.png"))
    m = outcome.metrics
    test = f", retrained test accuracy {m['test_accuracy']:.4f}" if m.get("test_accuracy") is not None else ""
    console.print(f"derived genome {outcome.genome.hash}: supernet val accuracy {m['supernet_val_accuracy']:.4f}{test}")
    if hasattr(space, "to_arch_str") and len(space.cells) == 1 and space.cells[0].inputs == 1:
        console.print(f"cell: {space.to_arch_str(outcome.genome)}")
    console.print(f"wrote {args.out} and {png}")
    return 0
