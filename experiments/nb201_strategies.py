"""Sample-based strategies on NAS-Bench-201: random, TPE and evolution at 50-300 queries.

Each run is one strategy, one seed, one dataset. It asks until ``max(budgets)`` DISTINCT
architectures have been looked up in the table, exactly as ``nasbench.runner.run_search``
counts: a genome proposed again is told its cached evaluation and costs no query (after
``MAX_REPEATS`` consecutive repeats the run stops and keeps its best). The search sees
only the 200-epoch validation accuracy (one seed); after every query the script records
the 200-epoch TEST accuracy (mean over seeds) of the best-by-validation architecture so
far (ties on validation keep the earliest), and reports it at each budget as mean ± std
over seeds, in percent, for CIFAR-10, CIFAR-100 and ImageNet16-120.

Strategies are named ``base[:key=value,...]``; the options go to the strategy, e.g.
``evolution:population_size=50,tournament_size=10``. Bases:

    random           uniform random search (Optuna RandomSampler)
    tpe              nasbench's TPE: multivariate, grouped, 10 random start-up trials
    tpe_independent  TPE with one independent density per decision (``multivariate=False``,
                     Optuna's default before 5.0; 5.0 defaults to multivariate like ``tpe``).
                     Opt-in: it re-proposes known cells so often (~1,800 asks for 300
                     queries) that a run costs ~30 s of CPU
    evolution        regularized evolution (P=20, S=5, mutation only by default)
    gp               Optuna's GPSampler (handles categoricals, but ~2-5 s per query on
                     this CPU). Opt-in

The default set is random, tpe, evolution and evolution:crossover_rate=0.5 (the one
evolution option off by default).

Optuna's CmaEsSampler does not support categorical decisions (it falls back to random)
and QMCSampler is a space-filling design that never learns, so neither is included.

Prints one JSON object to stdout (and writes it to ``--out``), a PNG next to it, and a
markdown table to stderr (``--markdown`` prints the table to stdout instead of the JSON).

    python experiments/nb201_strategies.py                # 30 seeds, full run, a few minutes
    python experiments/nb201_strategies.py --quick        # 5 seeds, N <= 100, smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

REPO = Path(__file__).resolve().parents[1]
try:
    import nasbench  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from nasbench._spaces import load_space  # noqa: E402
from nasbench.benchmarks import NB201, NB201_DATASETS, BenchmarkEvaluator, resolve_nb201_paths  # noqa: E402
from nasbench.errors import ConfigError, DataError, NasbenchError  # noqa: E402
from nasbench.objectives import Objectives  # noqa: E402
from nasbench.strategies import OptunaStrategy, Strategy, create_strategy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported by path
from _provenance import provenance  # noqa: E402

logger = logging.getLogger("nb201_strategies")

DEFAULT_DATA = REPO.parent / "shared" / "data" / "nb201"
DEFAULT_OUT = REPO / "experiments" / "results" / "nb201_strategies.json"
BUDGETS = (50, 100, 200, 300)
QUICK_BUDGETS = (25, 50, 100)
DATASETS = ("cifar10", "cifar100", "imagenet16")
STRATEGIES = ("random", "tpe", "evolution", "evolution:crossover_rate=0.5")
#: Consecutive repeats of already-evaluated genomes after which a run stops (as the runner).
MAX_REPEATS = 200
#: Curves are stored (and plotted) every this many queries.
CURVE_STEP = 5
ACCURACY = Objectives(("accuracy",))
LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16": "ImageNet16-120"}
SHORT = {"cifar10": "C10", "cifar100": "C100", "imagenet16": "IN16"}
#: Published test accuracies (%) from the NB201 paper, as quoted in later work.
REFERENCE = {
    "optimum": {"cifar10": 94.37, "cifar100": 73.51, "imagenet16": 47.31},
    "random search": {"cifar10": [93.70, 0.36], "imagenet16": [44.57, 1.25]},
    "REINFORCE": {"cifar10": [93.85, 0.37], "cifar100": [71.71, 1.09], "imagenet16": [45.24, 1.18]},
}


class TPEIndependentStrategy(OptunaStrategy):
    """TPE with one independent density per decision (Optuna < 5.0's default)."""

    name = "tpe_independent"

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, multivariate=False)


class GPStrategy(OptunaStrategy):
    """Optuna's Gaussian-process sampler (slow: refits the GP at every query)."""

    name = "gp"

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)


_LOCAL = {"tpe_independent": TPEIndependentStrategy, "gp": GPStrategy}
_REGISTERED = ("random", "tpe", "evolution")


def parse_strategy(spec: str) -> tuple[str, dict[str, Any]]:
    """``"evolution:population_size=50,crossover_rate=0.5"`` -> ("evolution", options)."""
    base, _, rest = spec.partition(":")
    if base not in _REGISTERED and base not in _LOCAL:
        raise ConfigError(f"unknown strategy {base!r}; use one of {', '.join((*_REGISTERED, *_LOCAL))}")
    options: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, text = item.partition("=")
        if not eq:
            raise ConfigError(f"strategy option {item!r} in {spec!r} must be key=value")
        options[key.strip()] = _number(text.strip())
    return base, options


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def make_strategy(spec: str, space: Any, seed: int) -> Strategy:
    """The strategy named by ``spec`` (see ``parse_strategy``), seeded."""
    base, options = parse_strategy(spec)
    if base in _LOCAL:
        return _LOCAL[base](space, ACCURACY, seed, **options)
    return create_strategy(base, space, ACCURACY, seed, **options)


def search_trajectory(strategy: Strategy, evaluate: Callable[[Any], Any], queries: int,
                      max_repeats: int = MAX_REPEATS) -> dict[str, Any]:
    """Ask/tell until ``queries`` distinct genomes are evaluated; track the best by validation.

    Args:
        strategy: Ask/tell strategy.
        evaluate: ``evaluate(genome) -> Evaluation`` with ``val_accuracy``/``test_accuracy`` metrics.
        queries: Distinct genomes to evaluate.
        max_repeats: Consecutive repeats after which the run stops early.

    Returns:
        ``test``: test accuracy (%) of the best-by-validation genome after query 1, 2, ...
        (padded with the last value if the run stopped early; NOT monotone, since a higher
        validation accuracy can come with a lower test accuracy), ``val``: that genome's
        validation accuracy (%, non-decreasing), ``asks``: genomes asked including
        repeats, ``exhausted``: whether it stopped early.
    """
    seen: dict[str, Any] = {}
    best_val, best_test = -math.inf, math.nan
    test: list[float] = []
    vals: list[float] = []
    asks = repeats = 0
    exhausted = False
    while len(test) < queries:
        genome = strategy.ask()
        asks += 1
        if genome.hash in seen:
            strategy.tell(genome, seen[genome.hash])
            repeats += 1
            if repeats >= max_repeats:
                exhausted = True
                break
            continue
        repeats = 0
        evaluation = evaluate(genome)
        strategy.tell(genome, evaluation)
        seen[genome.hash] = evaluation
        val = evaluation.metrics["val_accuracy"]
        if val > best_val:  # strict: ties keep the earliest
            best_val, best_test = val, 100.0 * evaluation.metrics["test_accuracy"]
        test.append(best_test)
        vals.append(100.0 * best_val)
    missing = queries - len(test)
    test += [test[-1] if test else math.nan] * missing
    vals += [vals[-1] if vals else math.nan] * missing
    return {"test": test, "val": vals, "asks": asks, "exhausted": exhausted}


# -- one run per task; workers load the table once -------------------------------------------
_BENCH: NB201 | None = None
_BENCH_PATH: str | None = None


def _load(accuracy_csv: str) -> NB201:
    """The table, loaded once per process."""
    global _BENCH, _BENCH_PATH
    if _BENCH is None or _BENCH_PATH != accuracy_csv:
        _BENCH, _BENCH_PATH = NB201(accuracy_csv), accuracy_csv
    return _BENCH


def _init_worker(accuracy_csv: str) -> None:
    import torch

    torch.set_num_threads(1)  # one process per core
    _quiet()
    _load(accuracy_csv)


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)


def _run_task(task: tuple[str, str, int, int, str]) -> tuple[tuple[str, str, int], dict[str, Any]]:
    spec, dataset, seed, queries, accuracy_csv = task
    bench = _load(accuracy_csv)
    evaluator = BenchmarkEvaluator(bench, dataset, ACCURACY)
    started = time.process_time()
    out = search_trajectory(make_strategy(spec, bench.space, seed), lambda g: evaluator(g, seed), queries)
    out["cpu_seconds"] = time.process_time() - started
    return (spec, dataset, seed), out


def run_experiment(data: str | Path = DEFAULT_DATA, strategies: Sequence[str] = STRATEGIES,
                   datasets: Sequence[str] = DATASETS, seeds: Sequence[int] = range(30),
                   budgets: Sequence[int] = BUDGETS, workers: int = 2) -> dict[str, Any]:
    """Run every (strategy, dataset, seed) and summarize; the JSON object the script prints.

    Args:
        data: Folder with ``nb201_accuracy.csv`` (or the CSV itself).
        strategies: Strategy specs (``base[:key=value,...]``).
        datasets: cifar10, cifar100, imagenet16.
        seeds: Strategy seeds, one run each.
        budgets: Query counts at which results are reported.
        workers: Processes (1 runs in this process).
    """
    started = time.perf_counter()
    accuracy_csv, _ = resolve_nb201_paths(data)
    datasets = list(dict.fromkeys(NB201.dataset_name(d) for d in datasets))
    strategies, seeds = list(dict.fromkeys(strategies)), list(dict.fromkeys(int(s) for s in seeds))
    space = load_space("nb201")
    for spec in strategies:  # refuse bad options here, not in a worker
        try:
            make_strategy(spec, space, 0)
        except TypeError as exc:
            raise ConfigError(f"bad options in strategy {spec!r}: {exc}") from None
    budgets = sorted({int(b) for b in budgets})
    if not budgets or budgets[0] < 1 or not seeds:
        raise ConfigError("need at least one seed and budgets >= 1")
    queries = budgets[-1]
    # Longest tasks first (Optuna samplers slow down with history) for a balanced pool.
    cost = {"gp": 0, "tpe_independent": 1, "tpe": 2, "random": 3}
    tasks = sorted(((s, d, int(seed), queries, str(accuracy_csv)) for s in strategies for d in datasets for seed in seeds),
                   key=lambda t: cost.get(parse_strategy(t[0])[0], 9))
    if workers <= 1:
        runs = dict(map(_run_task, tasks))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(str(accuracy_csv),)) as pool:
            runs = dict(pool.imap_unordered(_run_task, tasks, chunksize=1))
    grid = sorted(set(range(CURVE_STEP, queries + 1, CURVE_STEP)) | set(budgets) | {1})
    results: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    runs_info: dict[str, Any] = {}
    for s in strategies:
        runs_info[s] = {"cpu_seconds": 0.0, "mean_asks": {}, "exhausted_runs": 0}
    for d in datasets:
        results[d], curves[d] = {}, {}
        for s in strategies:
            trajs = [runs[(s, d, int(seed))] for seed in seeds]
            results[d][s] = {str(n): _stats([t["test"][n - 1] for t in trajs]) for n in budgets}
            stats = [_stats([t["test"][n - 1] for t in trajs]) for n in grid]
            curves[d][s] = {"queries": grid, "mean": [x["mean"] for x in stats], "std": [x["std"] for x in stats]}
            info = runs_info[s]
            info["cpu_seconds"] = round(info["cpu_seconds"] + sum(t["cpu_seconds"] for t in trajs), 2)
            info["mean_asks"][d] = round(sum(t["asks"] for t in trajs) / len(trajs), 1)
            info["exhausted_runs"] += sum(t["exhausted"] for t in trajs)
    return {
        "experiment": "nb201_strategies",
        "config": {
            "seeds": [int(s) for s in seeds], "budgets": budgets, "datasets": datasets,
            "strategies": {s: dict(zip(("base", "options"), parse_strategy(s))) for s in strategies},
            "objective": "200-epoch validation accuracy (1 seed); reported: 200-epoch test accuracy (mean over seeds) of the best-by-validation architecture, %",
            "std": "sample std over seeds (ddof=1); sem = std / sqrt(n)",
            "query": "one distinct architecture looked up; repeats are told the cached result and not counted",
            "data": str(accuracy_csv), "workers": workers, "versions": {**provenance(), "optuna": optuna.__version__},
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
        "results": results,
        "table": table_summary(accuracy_csv, datasets),
        "reference_published": REFERENCE,
        "runs": runs_info,
        "curves": curves,
    }


def _stats(xs: Sequence[float]) -> dict[str, float]:
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return {"mean": round(mean, 3), "std": round(std, 3), "sem": round(std / math.sqrt(n), 3), "n": n}


def table_summary(accuracy_csv: str | Path, datasets: Sequence[str]) -> dict[str, Any]:
    """Per dataset: the best test accuracy in the table, and the test accuracy of the best by validation."""
    import pandas as pd

    df = pd.read_csv(accuracy_csv)
    out = {}
    for d in datasets:
        p = NB201_DATASETS[d]
        val, test = df[f"{p}_valid_acc_200ep_1seed"], df[f"{p}_test_acc_200ep_mean"]
        best_val = val.max()
        tied = df[val == best_val]
        i_val, i_test = tied.index[0], test.idxmax()  # first by index among validation ties
        out[d] = {
            "optimum_test": round(float(test[i_test]), 3), "optimum_arch_index": int(df["arch_index"][i_test]),
            "oracle_by_val_test": round(float(test[i_val]), 3), "oracle_by_val_arch_index": int(df["arch_index"][i_val]),
            "oracle_by_val_ties": len(tied), "architectures": len(df),
        }
    return out


def markdown_table(report: dict[str, Any], columns: Sequence[int] = (100, 300)) -> str:
    """Rows: strategies, then the table's oracle and optimum; columns: dataset x budget."""
    datasets = report["config"]["datasets"]
    columns = [n for n in columns if n in report["config"]["budgets"]] or report["config"]["budgets"][-2:]
    heads = [f"{SHORT[d]} @{n}" for n in columns for d in datasets]
    lines = ["| strategy | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for s in report["config"]["strategies"]:
        cells = [report["results"][d][s][str(n)] for n in columns for d in datasets]
        lines.append(f"| {s} | " + " | ".join(f"{c['mean']:.2f} ± {c['std']:.2f}" for c in cells) + " |")
    for key, label in (("oracle_by_val_test", "best by validation, whole table"), ("optimum_test", "optimum (best test)")):
        cells = [report["table"][d][key] for _ in columns for d in datasets]
        lines.append(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """One panel per dataset: mean ± std test accuracy vs queries, the optimum dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = report["config"]["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.4), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        low = math.inf
        for s, c in report["curves"][d].items():
            first = min(10, c["queries"][-1] // 4)  # the first few queries only stretch the axis
            x, m, sd = zip(*[(q, a, b) for q, a, b in zip(c["queries"], c["mean"], c["std"]) if q >= first])
            ax.plot(x, m, label=s, lw=1.6)
            ax.fill_between(x, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)], alpha=0.15)
            low = min([low] + [a - b for q, a, b in zip(x, m, sd) if q >= 2 * first])
        table = report["table"][d]
        ax.axhline(table["optimum_test"], ls="--", c="k", lw=1, label="optimum (best test in table)")
        ax.axhline(table["oracle_by_val_test"], ls=":", c="gray", lw=1.2, label="best by validation in table")
        ax.set_ylim(low - 0.2, table["optimum_test"] + 0.3)
        ax.set_title(LABELS[d])
        ax.set_xlabel("queries (distinct architectures)")
        ax.set_ylabel("test accuracy of best-by-validation (%)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=9, frameon=False)
    n = len(report["config"]["seeds"])
    fig.suptitle(f"NAS-Bench-201: mean ± std over {n} seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder with nb201_accuracy.csv")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds, 0..N-1 (default 30; --quick 5)")
    ap.add_argument("--budgets", default=None, help="comma-separated query counts (default 50,100,200,300)")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--strategies", default=";".join(STRATEGIES),
                    help="';'-separated specs base[:key=value,...], e.g. 'random;evolution:population_size=50'")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="5 seeds, budgets 25,50,100 (smoke test)")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default experiments/results/nb201_strategies[_quick].json)")
    ap.add_argument("--png", type=Path, default=None, help="figure path (default: --out with .png)")
    ap.add_argument("--markdown", action="store_true", help="print the markdown table to stdout instead of the JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    _quiet()
    seeds = args.seeds if args.seeds is not None else (5 if args.quick else 30)
    budgets = ([int(b) for b in args.budgets.split(",")] if args.budgets else
               list(QUICK_BUDGETS if args.quick else BUDGETS))
    out = args.out or (DEFAULT_OUT.with_name("nb201_strategies_quick.json") if args.quick else DEFAULT_OUT)
    png = args.png or out.with_suffix(".png")
    try:
        report = run_experiment(args.data, [s.strip() for s in args.strategies.split(";") if s.strip()],
                                [d.strip() for d in args.datasets.split(",") if d.strip()],
                                range(seeds), budgets, args.workers)
    except NasbenchError as exc:
        hint = " (this script takes the folder as --data)" if isinstance(exc, DataError) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1)
    out.write_text(text + "\n")
    plot(report, png)
    table = markdown_table(report)
    logger.info("wrote %s and %s in %.0f s", out, png, report["config"]["wall_seconds"])
    print(table if args.markdown else text)
    if not args.markdown:
        print(table, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
