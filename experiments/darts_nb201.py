"""Does nasbench's DARTS collapse on the NAS-Bench-201 space, and does the collapse guard help?

Each run is one collapse guard (``darts-minus``, ``early-stop``, ``darts-minus+early-stop`` or
``none``; see ``nasbench.strategies.COLLAPSE_GUARDS``), one seed and one epoch count:
``nasbench.strategies.DartsSearch`` (first order, paper hyperparameters, batch 64) searches
the NB201 cell on real CIFAR-10 images (32x32, from the 10,000-image JPEG archive in
``../shared/data/cifar10``; weights learn on the ``train`` split, alphas on the disjoint
``val`` split, ``--limit`` images each, split seeded by the run's seed). To fit a 2-core
CPU the supernet uses a reduced NB201 skeleton (``C=8, N=1`` instead of ``C=16, N=5``):
the cell, its 6 edges and 5 ops are the benchmark's own, so every derived cell is one of
the table's 15,625, and the skeleton only changes the proxy the search trains.

After every epoch the script records the derived cell (argmax alpha per edge), its op
counts, the supernet's validation accuracy and the cell's NAS-Bench-201 200-epoch TEST
accuracy on CIFAR-10 (mean over training seeds, the number the literature reports); for the
final cell also CIFAR-100 and ImageNet16-120. The final cell is the search's answer
(``DartsSearch.result``): the last epoch's cell, or with an early-stop guard that ended the
search the last cell before parameter-free ops dominated (``--early-stop-edges K`` of 6 edges).
A run "collapsed" when the final cell has >= 4 of its 6 edges ``skip_connect``/``none`` or a
CIFAR-10 test accuracy < 60%.

Reference points: published DARTS on NB201 collapses to skip connections (54.30% C10
test), the optimum is 94.37%, random search 93.70%. The script also does random search by
table look-ups (best-by-validation of ``--random-n`` uniform cells, ``--random-seeds``
seeds) and reports the mean test accuracy of a uniformly random cell.

With ``--selection perturbation`` the final cell comes from DARTS-PT's perturbation selection
after the search (``nasbench.strategies.SELECTIONS``); each such run also records the cell that
alpha selection gives at the end of the same search (``final.alpha_selection``), a paired
comparison.

Runs already in ``--out`` with identical settings are reused (``--fresh`` redoes them), so
adding an epoch count or a guard only trains the new runs; runs of other settings already in
``--out`` are kept in it (and in the tables). Prints one JSON object to stdout (written
to ``--out`` too) and a markdown table to stderr.

    python experiments/darts_nb201.py                 # 4 guards x 3 seeds x 12 epochs (reuses runs)
    python experiments/darts_nb201.py --epochs 12 36  # adds a 36-epoch setting, reuses the 12
    python experiments/darts_nb201.py --quick         # 1 seed, 2 epochs, 200 images: < 1 min
    python experiments/darts_nb201.py --guards darts-minus+early-stop --epochs 24 --limit 6000 \
        --selection perturbation --seeds 0 1 2 3      # the README's perturbation-selection runs
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from search_spaces.nb201 import OPS as NB201_OPS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
try:
    import nasbench  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from nasbench.benchmarks import NB201, resolve_nb201_paths  # noqa: E402
from nasbench.space import Cell, CellSpace  # noqa: E402
from nasbench.strategies._darts import COLLAPSE_GUARDS, SELECTIONS, DartsConfig, DartsSearch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported by path
from _provenance import provenance  # noqa: E402

logger = logging.getLogger("darts_nb201")

DATA = REPO.parent / "shared" / "data"
DEFAULT_CIFAR = DATA / "cifar10" / "cifar10_test_jpg.tar.gz"
DEFAULT_NB201 = DATA / "nb201"
DEFAULT_OUT = REPO / "experiments" / "results" / "darts_nb201.json"
DATASETS = ("cifar10", "cifar100", "imagenet16")
SHORT = {"cifar10": "C10", "cifar100": "C100", "imagenet16": "IN16"}
#: The built-in space's op table (search_spaces/nb201.py), so genomes convert to and from NB201 strings.
OPS = NB201_OPS
#: Published NB201 test accuracies (%), C10 / C100 / IN16.
REFERENCE = {
    "optimum": {"cifar10": 94.37, "cifar100": 73.51, "imagenet16": 47.31},
    "random search (published)": {"cifar10": 93.70, "imagenet16": 44.57},
    "DARTS (published)": {"cifar10": 54.30, "cifar100": 15.61, "imagenet16": 16.32},
}
COLLAPSE_EDGES = 4
COLLAPSE_ACC = 60.0


def small_space(c: int, n: int) -> CellSpace:
    """The NB201 cell on a reduced skeleton (``C`` channels in stage 1, ``N`` cells per stage)."""
    return CellSpace("nb201-small", [Cell("cell", OPS, nodes=4)], skeleton="nb201", C=c, N=n)


def op_counts(arch: str) -> dict[str, int]:
    """Edges per op kind of an NB201 arch string: skip, none, conv (1x1 + 3x3), pool."""
    ops = [part.split("~")[0] for node in arch.split("+") for part in node.strip("|").split("|")]
    return {"skip": ops.count("skip_connect"), "none": ops.count("none"),
            "conv": ops.count("nor_conv_1x1") + ops.count("nor_conv_3x3"), "pool": ops.count("avg_pool_3x3")}


# -- one search per process ------------------------------------------------------------------
def run_search(task: dict[str, Any]) -> dict[str, Any]:
    """One DARTS search; returns per-epoch arch strings and supernet metrics (no table look-ups)."""
    from nasbench.data import load_dataset

    torch.set_num_threads(task["threads"])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    space = small_space(task["C"], task["N"])
    data = load_dataset(f"cifar10:{task['cifar']}", seed=task["seed"], limit=task["limit"])
    config = DartsConfig(epochs=task["epochs"], batch_size=task["batch_size"], collapse_guard=task["guard"],
                         early_stop_edges=task.get("early_stop_edges", DartsConfig.early_stop_edges),
                         early_stop_warmup=task.get("early_stop_warmup", 0.0),
                         selection=task.get("selection", "alpha"),
                         projection_tune_epochs=task.get("projection_tune_epochs", DartsConfig.projection_tune_epochs))
    search = DartsSearch(space, data, config, seed=task["seed"])
    t0 = time.perf_counter()
    epochs = []
    alpha_answer = None  # what alpha selection answers when the search ends (paired comparison with perturbation)
    while not search.finished:
        if alpha_answer is None and search.search_done:
            alpha_answer = search.result.epoch
        r = search.train_epoch()
        arch = space.to_arch_str(r.genome)
        epochs.append({"epoch": r.epoch, "arch": arch, "supernet_val_accuracy": round(100 * r.val_accuracy, 2),
                       "train_loss": round(r.train_loss, 4), "val_loss": round(r.val_loss, 4),
                       "aux_skip": round(r.aux_skip, 4), "seconds": round(r.seconds, 2),
                       "parameter_free_edges": r.parameter_free_edges["cell"], "dominated": r.dominated,
                       "probabilities": r.probabilities["cell"],
                       **({"decision": r.extra["decision"], "choice": r.extra["choice"], "scores": r.extra["scores"]}
                          if r.extra.get("phase") == "perturbation" else {})})
        logger.info("%s seed %d epoch %d/%d: %s supernet val %.1f%% (%.1fs)", task["guard"], task["seed"],
                    r.epoch + 1, config.epochs, arch, 100 * r.val_accuracy, r.seconds)
    return {"key": task["key"], "settings": task["settings"], "seconds": round(time.perf_counter() - t0, 1),
            "train_images": len(data.train_y), "val_images": len(data.val_y), "stopped_at": search.stopped_at,
            "result_epoch": search.result.epoch,
            "alpha_result_epoch": search.result.epoch if alpha_answer is None else alpha_answer, "epochs": epochs}


def annotate(run: dict[str, Any], bench: NB201, all_c10: np.ndarray) -> dict[str, Any]:
    """Adds op counts and NB201 test accuracies (%) per epoch, all three datasets for the final cell.

    ``all_c10`` holds every cell's C10 test accuracy (%), for the final cell's percentile.
    """
    nb201 = bench.space
    for e in run["epochs"]:
        g = nb201.from_arch_str(e["arch"])
        e["counts"] = op_counts(e["arch"])
        e["c10_test"] = round(100 * bench.query(g, "cifar10")["test_accuracy"], 2)
    # the search's answer: the last epoch, or the last one before an early stop's domination
    final = next(e for e in run["epochs"] if e["epoch"] == run.get("result_epoch", run["epochs"][-1]["epoch"]))
    g = nb201.from_arch_str(final["arch"])
    q = {d: bench.query(g, d) for d in DATASETS}
    counts = final["counts"]
    run["final"] = {"arch": final["arch"], "arch_index": q["cifar10"]["arch_index"], "counts": counts,
                    "epoch": final["epoch"], "stopped_at": run.get("stopped_at"),
                    "test": {d: round(100 * q[d]["test_accuracy"], 2) for d in DATASETS},
                    "supernet_val_accuracy": final["supernet_val_accuracy"],
                    "collapsed": counts["skip"] + counts["none"] >= COLLAPSE_EDGES
                    or 100 * q["cifar10"]["test_accuracy"] < COLLAPSE_ACC}
    if "alpha_result_epoch" in run:  # the cell alpha selection gives at the end of the same search
        alpha = next(e for e in run["epochs"] if e["epoch"] == run["alpha_result_epoch"])
        run["final"]["alpha_selection"] = {"arch": alpha["arch"], "epoch": alpha["epoch"], "c10_test": alpha["c10_test"]}
    probs = np.sort(np.asarray(final["probabilities"]), axis=1)
    run["final"]["max_probability"] = round(float(probs[:, -1].max()), 4)  # uniform: 0.2
    run["final"]["mean_argmax_margin"] = round(float((probs[:, -1] - probs[:, -2]).mean()), 4)
    run["final"]["c10_test_percentile"] = round(100 * float(np.mean(all_c10 < run["final"]["test"]["cifar10"])), 1)
    return run


# -- random search by table look-ups ----------------------------------------------------------
def random_search(bench: NB201, all_c10: np.ndarray, n: int, seeds: int) -> dict[str, Any]:
    """Best-by-validation of ``n`` uniform cells per seed; test accuracy (%) mean ± std per dataset."""
    out: dict[str, Any] = {"n": n, "seeds": seeds}
    for d in DATASETS:
        tests = []
        for seed in range(seeds):
            rng = random.Random(seed)
            qs = [bench.query(bench.space.sample(rng), d) for _ in range(n)]
            best = max(qs, key=lambda q: q["val_accuracy"])  # ties keep the earliest
            tests.append(100 * best["test_accuracy"])
        out[d] = _stats(tests)
    out["uniform_cell_c10_test_mean"] = round(float(np.mean(all_c10)), 2)
    return out


# -- summary and report ---------------------------------------------------------------------
def _stats(xs: list[float]) -> dict[str, Any]:
    return {"mean": round(statistics.fmean(xs), 2), "std": round(statistics.stdev(xs), 2) if len(xs) > 1 else None,
            "n": len(xs)}


def _pm(s: dict[str, Any]) -> str:
    return f"{s['mean']:.2f}" + (f" ± {s['std']:.2f}" if s["std"] is not None else "")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting (epochs) and guard: final-cell test accuracy mean ± std, mean op counts, collapses."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        st = r["settings"]
        groups.setdefault(f"{_label(st)}@{st['epochs']}ep/{st['limit']}img", []).append(r)
    out = {}
    def order(rs: list[dict[str, Any]]) -> tuple:
        st = rs[0]["settings"]
        return (st["limit"], st["epochs"], _guard_rank(st["guard"]), st.get("early_stop_warmup", 0.0),
                st.get("selection", "alpha"))

    for name, rs in sorted(groups.items(), key=lambda kv: order(kv[1])):
        f = [r["final"] for r in rs]
        out[name] = {
            "guard": rs[0]["settings"]["guard"], "label": _label(rs[0]["settings"]), "epochs": rs[0]["settings"]["epochs"],
            "early_stop_warmup": rs[0]["settings"].get("early_stop_warmup", 0.0),
            "images_per_split": rs[0]["settings"]["limit"],
            "seeds": [r["settings"]["seed"] for r in rs],
            "test": {d: _stats([x["test"][d] for x in f]) for d in DATASETS},
            "mean_counts": {k: round(statistics.fmean(x["counts"][k] for x in f), 2) for k in f[0]["counts"]},
            "supernet_val_accuracy": _stats([x["supernet_val_accuracy"] for x in f]),
            "collapsed_runs": sum(x["collapsed"] for x in f), "any_collapsed": any(x["collapsed"] for x in f),
            "stopped_runs": sum(x.get("stopped_at") is not None for x in f),
            "mean_epochs_trained": round(statistics.fmean(len(r["epochs"]) for r in rs), 2),
            "search_seconds": _stats([r["seconds"] for r in rs]),
        }
        if rs[0]["settings"].get("selection", "alpha") != "alpha":  # paired: alpha selection of the same searches
            out[name]["alpha_selection_c10"] = _stats([x["alpha_selection"]["c10_test"] for x in f])
    return out


def markdown(result: dict[str, Any]) -> str:
    """The README tables: summary per guard, every final cell, references."""
    lines = ["| guard | epochs | images | seeds | C10 test % | C100 test % | IN16 test % | skip / none / conv / pool (of 6) "
             "| supernet val % | collapsed | stopped early |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result["summary"].values():
        c = s["mean_counts"]
        stopped = f"{s['stopped_runs']}/{len(s['seeds'])} ({s['mean_epochs_trained']:g} ep)" if "early-stop" in \
            s["guard"] else "–"
        lines.append(f"| {s['label']} | {s['epochs']} | {s['images_per_split']} | {len(s['seeds'])} | {_pm(s['test']['cifar10'])} | "
                     f"{_pm(s['test']['cifar100'])} | {_pm(s['test']['imagenet16'])} | "
                     f"{c['skip']} / {c['none']} / {c['conv']} / {c['pool']} | {_pm(s['supernet_val_accuracy'])} | "
                     f"{s['collapsed_runs']}/{len(s['seeds'])} | {stopped} |")
    rs = result["random_search"]
    lines.append(f"| random search, best of {rs['n']} by val (table) | – | – | {rs['seeds']} | {_pm(rs['cifar10'])} | "
                 f"{_pm(rs['cifar100'])} | {_pm(rs['imagenet16'])} | – | – | – | – |")
    lines.append(f"| uniformly random cell (table mean) | – | – | – | {rs['uniform_cell_c10_test_mean']:.2f} | | | | | | |")
    for name, ref in REFERENCE.items():
        lines.append(f"| {name} | | | | {ref.get('cifar10', '–')} | {ref.get('cifar100', '–')} | "
                     f"{ref.get('imagenet16', '–')} | | | | |")
    lines += ["", "| guard | epochs | images | seed | final cell (epoch) | skip / none / conv / pool | C10 test % | percentile | "
              "max p / margin | C10 test % by epoch (* = dominated) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        f, st = r["final"], r["settings"]
        c = f["counts"]
        traj = " ".join(f"{e['c10_test']:.0f}" + ("*" if e.get("dominated") else "") for e in r["epochs"])
        if f.get("stopped_at") is not None:
            traj += f" (stopped at {f['stopped_at']})"
        arch = f["arch"].replace("|", "\\|")  # a pipe in a table cell, even in code, needs escaping
        lines.append(f"| {_label(st)} | {st['epochs']} | {st['limit']} | {st['seed']} | `{arch}` ({f.get('epoch', len(r['epochs']) - 1)}) | "
                     f"{c['skip']} / {c['none']} / {c['conv']} / {c['pool']} | {f['test']['cifar10']:.2f} | "
                     f"{f['c10_test_percentile']} | {f['max_probability']:.3f} / {f['mean_argmax_margin']:.3f} | "
                     f"{traj} |")
    return "\n".join(lines)


def _label(settings: dict[str, Any]) -> str:
    """The guard, with its early-stop warm-up when the run had one, and the selection when not alpha."""
    warm = settings.get("early_stop_warmup")
    label = f"{settings['guard']} (warm-up {warm:g})" if warm else settings["guard"]
    if settings.get("selection", "alpha") != "alpha":
        label += f", {settings['selection']} selection (tune {settings['projection_tune_epochs']})"
    return label


def _guard_rank(guard: str) -> int:
    order = ["darts-minus", "none", "early-stop", "darts-minus+early-stop"]
    return order.index(guard) if guard in order else len(order)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the searches in parallel, look the cells up, print JSON and markdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--guards", nargs="+", default=["darts-minus", "none", "early-stop", "darts-minus+early-stop"],
                   help=f"collapse guards, any of: {', '.join(COLLAPSE_GUARDS)}")
    p.add_argument("--early-stop-edges", type=int, default=DartsConfig.early_stop_edges,
                   help="early-stop guards: stop when parameter-free ops sit on >= K of the 6 edges (default %(default)s)")
    p.add_argument("--early-stop-warmup", type=float, default=DartsConfig.early_stop_warmup,
                   help="share of the epochs an early-stop guard ignores (0: none, as before it existed)")
    p.add_argument("--selection", choices=SELECTIONS, default="alpha",
                   help="how the final cell is read off the supernet (perturbation: DARTS-PT)")
    p.add_argument("--projection-tune-epochs", type=int, default=DartsConfig.projection_tune_epochs,
                   help="perturbation selection: supernet epochs between two decisions")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", nargs="+", type=int, default=[12], help="one setting per value")
    p.add_argument("--limit", type=int, default=1000, help="images per split, at most (train for w, val for alpha; the shared CIFAR-10 has 6,000 / 2,000 / 2,000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--C", type=int, default=8, help="stage-1 channels of the proxy skeleton (NB201: 16)")
    p.add_argument("--N", type=int, default=1, help="cells per stage of the proxy skeleton (NB201: 5)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--cifar", type=Path, default=DEFAULT_CIFAR)
    p.add_argument("--nb201", type=Path, default=DEFAULT_NB201, help="folder or accuracy CSV")
    p.add_argument("--random-n", type=int, default=10)
    p.add_argument("--random-seeds", type=int, default=30)
    p.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT.relative_to(REPO)} (none with --quick)")
    p.add_argument("--fresh", action="store_true", help="ignore runs already in --out")
    p.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, 200 images per split")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    if a.quick:
        a.seeds, a.epochs, a.limit = a.seeds[:1], [2], 200
    out = a.out if a.out is not None else (None if a.quick else DEFAULT_OUT)
    t0 = time.perf_counter()
    acc_csv, _ = resolve_nb201_paths(a.nb201)

    tasks = []
    for epochs in a.epochs:
        for guard in a.guards:
            for seed in a.seeds:
                settings = {"guard": guard, "seed": seed, "epochs": epochs, "limit": a.limit,
                            "batch_size": a.batch_size, "C": a.C, "N": a.N, "cifar": a.cifar.name}
                if "early-stop" in guard:  # only these runs depend on K (older runs keep their keys)
                    settings["early_stop_edges"] = a.early_stop_edges
                    if a.early_stop_warmup:  # runs before the warm-up existed had none
                        settings["early_stop_warmup"] = a.early_stop_warmup
                if a.selection != "alpha":  # runs before perturbation selection existed used alpha
                    settings.update(selection=a.selection, projection_tune_epochs=a.projection_tune_epochs)
                tasks.append({**settings, "settings": settings, "cifar": str(a.cifar), "threads": a.threads,
                              "key": json.dumps(settings, sort_keys=True)})
    old: dict[str, dict[str, Any]] = {}
    if out is not None and out.is_file() and not a.fresh:
        old = {r["key"]: r for r in json.loads(out.read_text()).get("runs", [])}
    todo = [t for t in tasks if t["key"] not in old]
    logger.info("%d runs, %d reused from %s, %d to train on %d workers", len(tasks), len(tasks) - len(todo), out,
                len(todo), a.workers)
    todo.sort(key=lambda t: -t["epochs"])  # longest first balances the workers
    new: dict[str, dict[str, Any]] = {}
    if todo:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(a.workers, len(todo))) as pool:
            for r in pool.imap_unordered(run_search, todo):
                new[r["key"]] = r
    bench = NB201(acc_csv)
    all_c10 = pd.read_csv(acc_csv, usecols=["c10_test_acc_200ep_mean"])["c10_test_acc_200ep_mean"].to_numpy()
    runs = [annotate(new[t["key"]] if t["key"] in new else old[t["key"]], bench, all_c10) for t in tasks]
    asked = {t["key"] for t in tasks}
    kept = [annotate(r, bench, all_c10) for k, r in old.items() if k not in asked]  # other settings stay in --out
    runs = sorted(runs + kept, key=lambda r: (r["settings"]["limit"], r["settings"]["epochs"],
                                              _guard_rank(r["settings"]["guard"]),
                                              r["settings"].get("early_stop_warmup", 0.0),
                                              r["settings"].get("selection", "alpha"), r["settings"]["seed"]))
    result = {
        "config": {"guards": sorted({r["settings"]["guard"] for r in runs}, key=_guard_rank),
                   "seeds": sorted({r["settings"]["seed"] for r in runs}),
                   "epochs": sorted({r["settings"]["epochs"] for r in runs}), "limit": a.limit,
                   "batch_size": a.batch_size, "C": a.C, "N": a.N, "workers": a.workers, "threads": a.threads,
                   "early_stop_edges": a.early_stop_edges,
                   "cifar": str(a.cifar.name), "darts": {k: v for k, v in vars(DartsConfig()).items()
                                                         if k not in ("epochs", "batch_size", "collapse_guard",
                                                                      "early_stop_edges", "early_stop_warmup",
                                                                      "selection", "projection_tune_epochs")},
                   "collapse_rule": f">= {COLLAPSE_EDGES} of 6 edges skip_connect/none or C10 test < {COLLAPSE_ACC}%",
                   "environment": provenance()},
        "wall_seconds_this_invocation": round(time.perf_counter() - t0, 1),
        "search_seconds_total": round(sum(r["seconds"] for r in runs), 1),
        "summary": summarize(runs),
        "random_search": random_search(bench, all_c10, a.random_n, a.random_seeds),
        "reference": REFERENCE,
        "runs": runs,
    }
    text = json.dumps(result, indent=1)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
    print(markdown(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
