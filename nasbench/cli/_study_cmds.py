"""``nasbench export``, ``nasbench trials`` and ``nasbench dashboard``: reading a study."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from nasbench._checkpoint import atomic_write
from nasbench.cli._shared import check_writable, console, echo, writing
from nasbench.errors import NasbenchError, StorageError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from nasbench.space import Space

__all__ = ["register", "export_trial"]

_STORAGE_HELP = "study storage URL (default sqlite:///nasbench.db in this folder)"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the study commands to the CLI."""
    p = sub.add_parser("export", help="write the best (or a chosen) trial of a study as architecture JSON")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument("--study", default=None, help="study name (default: the only study in the storage)")
    p.add_argument("--trial", type=int, default=None, help="trial number (default: the best)")
    p.add_argument("--out", default="best.json")
    p.set_defaults(handler=_export)

    p = sub.add_parser("trials", help="write the trials table as CSV or Parquet")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument("--study", default=None, help="study name (default: the only study in the storage)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--out", default=None, help="file to write (default: CSV on stdout; required for parquet)")
    p.set_defaults(handler=_trials)

    p = sub.add_parser("dashboard", help="open optuna-dashboard on the study storage")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(handler=_dashboard)


def load_study(storage: str | None, name: str | None) -> optuna.Study:
    """The named study, or the only one in the storage."""
    import optuna

    from nasbench.runner import DEFAULT_STORAGE, open_storage, open_study

    url = storage or DEFAULT_STORAGE
    if name is not None:
        return open_study(url, name)
    names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(url, create=False))]
    if len(names) != 1:
        raise StorageError(f"{url} holds {len(names)} studies ({', '.join(names) or 'none'}); pass --study NAME")
    return open_study(url, names[0])


def export_trial(trial: FrozenTrial, space: Space, out: str, *, num_classes: int | None = None,
                 input_shape: tuple[int, int, int] | None = None, study_name: str = "") -> None:
    """Write a trial's genome and metrics as architecture JSON."""
    from nasbench.export import save_architecture

    genome = space.load_genome(trial.user_attrs["genome"])
    metrics: dict[str, Any] = {k: v for k, v in trial.user_attrs.items() if k not in ("genome",)}
    metrics.update({"study": study_name, "trial": trial.number})
    shape = input_shape or tuple(metrics.get("input_shape") or (3, 32, 32))
    save_architecture(out, genome, metrics, space=space, num_classes=num_classes or int(metrics.get("num_classes", 10)),
                      input_shape=shape)  # type: ignore[arg-type]


def _space_of(study: optuna.Study) -> Space:
    from nasbench._spaces import load_space

    meta = study.user_attrs.get("nasbench")
    if not meta:
        raise StorageError(f"study {study.study_name!r} was not made by nasbench search")
    try:
        return load_space(meta.get("space_source") or meta["space"])
    except NasbenchError:
        return load_space(meta["space"])


def _export(args: argparse.Namespace) -> int:
    from nasbench.data import load_dataset
    from nasbench.runner import best_trial

    check_writable(args.out, "--out")
    study = load_study(args.storage, args.study)
    space = _space_of(study)
    trial = best_trial(study, args.trial)
    meta = study.user_attrs["nasbench"]
    if meta.get("benchmark"):
        from nasbench.benchmarks import NB201_INPUT_SHAPE, NB201_NUM_CLASSES

        classes, shape = NB201_NUM_CLASSES[meta["dataset"]], NB201_INPUT_SHAPE
    else:
        data = load_dataset(meta["dataset"], seed=meta.get("seed", 0), limit=meta.get("limit"))
        classes, shape = data.num_classes, data.input_shape
    with writing(args.out, "--out"):
        export_trial(trial, space, args.out, num_classes=classes, input_shape=shape, study_name=study.study_name)
    console.print(f"wrote {args.out}: trial {trial.number} of {study.study_name}, values {trial.values}")
    return 0


def _trials(args: argparse.Namespace) -> int:
    if args.format == "parquet" and not args.out:
        raise StorageError("parquet needs a file: pass --out trials.parquet")
    if args.out:
        check_writable(args.out, "--out")
    study = load_study(args.storage, args.study)
    df = study.trials_dataframe()
    if args.format == "parquet":
        try:
            with writing(args.out, "--out"):
                atomic_write(args.out, lambda tmp: df.to_parquet(tmp, index=False))
        except ImportError as exc:
            raise NasbenchError(f"writing parquet needs pyarrow ({exc}); pip install pyarrow or use --format csv") from None
    elif args.out:
        with writing(args.out, "--out"):
            atomic_write(args.out, lambda tmp: df.to_csv(tmp, index=False))
    else:
        echo(df.to_csv(index=False))
        return 0
    console.print(f"wrote {len(df)} trials of {study.study_name} to {args.out}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from nasbench.runner import DEFAULT_STORAGE, open_storage, redact

    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise NasbenchError("optuna-dashboard is not installed; pip install 'nasbench[dashboard]' (or optuna-dashboard)") from None
    url = args.storage or DEFAULT_STORAGE
    storage = open_storage(url, create=False)
    console.print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {redact(url)} (Ctrl-C stops)")
    run_server(storage, host=args.host, port=args.port)
    return 0


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
