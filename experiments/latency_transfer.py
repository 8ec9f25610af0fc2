"""Latency on devices we do not have: fit on k measured NAS-Bench-201 networks, predict the rest.

For every device column of ``nb201_latency_ms.csv`` (27 devices from HW-NAS-Bench: GPUs at
batch 1/32/256, server CPUs, a Raspberry Pi, phones, an FPGA and the Eyeriss simulator)
and every k in ``--ks``, each seed draws k of the 15,625 architectures at random, fits on
their measured latencies, predicts all the others, and reports the field's metrics: share
of predictions within ±10% of measured, MAPE (%) and Spearman's rank correlation, as the
mean over seeds. Every method sees the same splits.

Methods:
    fitted            ``nasbench.hardware.FittedLatencyPredictor`` with its defaults: ridge
                      in ms, weighted for relative error, on per-op counts, live-op counts
                      and (when leave-one-out says so) position one-hots
    flops_linear      baseline: latency = a + b * FLOPs (exact MACs of each network),
                      weighted for relative error like ``fitted``
    onehot_log_ridge  baseline: the usual generic predictor, ridge (leave-one-out alpha) on
                      log-latency over the one-hot encoding of the 6 edges

``--ablation`` adds ``fitted`` without the live-op block, ``fitted`` with FLOPs as an
extra feature, and two other models on the same features, on log-latency: gradient
boosting (``gbm_log``) and a Gaussian process with an RBF kernel (``gp_log``, k <= 100). ``--ceiling`` adds, per device, a gradient-boosted model fitted on 10,000
architectures and tested on the other 5,625: an estimate of how predictable the column
is at all (measurement noise, whole-ms rounding), not a method for small k.

Also reported per device: median latency, whether the column holds whole milliseconds
(``integer_ms``; rounding to 1 ms is ±5% of a 10 ms network, half of the ±10% budget),
how many timings are below 0.1 ms (networks whose output is cut off from the input, which
some compilers fold away), and ``fitted`` at k=100 split by measured latency < or >= 10 ms.

Prints one JSON object to stdout (and writes it to ``--out``) and a markdown table to
stderr (``--markdown`` prints the table to stdout instead of the JSON).

    python experiments/latency_transfer.py                     # 27 devices, 4 k, 5 seeds
    python experiments/latency_transfer.py --ablation --ceiling
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
try:
    import nasbench
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))
    import nasbench

from nasbench._spaces import load_space  # noqa: E402
from nasbench.benchmarks import NB201  # noqa: E402
from nasbench.errors import DataError, NasbenchError  # noqa: E402
from nasbench.hardware import FittedLatencyPredictor, accuracy_report  # noqa: E402

logger = logging.getLogger("latency_transfer")

DEFAULT_DATA = REPO.parent / "shared" / "data" / "nb201"
DEFAULT_OUT = REPO / "experiments" / "results" / "latency_transfer.json"
KS = (20, 50, 100, 500)
TARGET_K, TARGET_SHARE, TARGET_DEVICES = 100, 0.9, 20
METRICS = ("within_10pct", "mape", "spearman")
CEILING_TRAIN = 10_000
#: Methods too slow for large k (a Gaussian process on 500 networks takes ~8 s per fit).
MAX_K = {"gp_log": 100}

Method = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (train idx, y train, test idx) -> pred


def load_table(folder: Path) -> tuple[list[Any], list[str], np.ndarray, np.ndarray]:
    """Genomes, device names, latencies (archs x devices, ms) and FLOPs, in the accuracy table's order."""
    import pandas as pd

    acc_csv, lat_csv = folder / "nb201_accuracy.csv", folder / "nb201_latency_ms.csv"
    for p in (acc_csv, lat_csv):
        if not p.is_file():
            raise DataError(f"{p} not found; pass --data FOLDER holding nb201_accuracy.csv and nb201_latency_ms.csv")
    space = load_space("nb201")
    acc = pd.read_csv(acc_csv)
    lat = pd.read_csv(lat_csv).set_index("arch_index").reindex(acc["arch_index"])
    if lat.isna().any().any():
        raise DataError(f"{lat_csv} lacks latencies for some arch_index of {acc_csv}")
    genomes = [space.from_arch_str(s) for s in acc["arch_str"]]
    bench = NB201(acc_csv, space=space)
    flops = np.array([bench.costs(g).flops for g in genomes], dtype=float)
    return genomes, [str(c) for c in lat.columns], lat.to_numpy(dtype=float), flops


def make_methods(x: np.ndarray, flops: np.ndarray, blocks: dict[str, slice], space: Any,
                 ablation: bool) -> dict[str, Method]:
    """The compared methods, each fitting on rows of precomputed features."""
    from sklearn.linear_model import RidgeCV

    def fitted(cols: np.ndarray) -> Method:
        def run(tr: np.ndarray, y: np.ndarray, te: np.ndarray) -> np.ndarray:
            return FittedLatencyPredictor(space).fit_features(cols[tr], y).predict_features(cols[te])
        return run

    def flops_linear(tr: np.ndarray, y: np.ndarray, te: np.ndarray) -> np.ndarray:
        f = flops / 1e6
        b, a = np.polyfit(f[tr], y, 1, w=1.0 / y)  # weights on residuals: relative error
        return np.maximum(a + b * f[te], 0.5 * y.min())

    onehot = x[:, blocks["onehot"]]

    def onehot_log_ridge(tr: np.ndarray, y: np.ndarray, te: np.ndarray) -> np.ndarray:
        model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(onehot[tr], np.log(y))
        return np.exp(model.predict(onehot[te]))

    methods: dict[str, Method] = {"fitted": fitted(x), "flops_linear": flops_linear,
                                  "onehot_log_ridge": onehot_log_ridge}
    if ablation:
        from sklearn.ensemble import GradientBoostingRegressor
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        no_live = x.copy()
        no_live[:, blocks["live"]] = 0.0
        methods["fitted_no_live"] = fitted(no_live)
        methods["fitted_plus_flops"] = fitted(np.hstack([x, flops[:, None]]))

        def gbm_log(tr: np.ndarray, y: np.ndarray, te: np.ndarray) -> np.ndarray:
            model = GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05,
                                              subsample=0.8, random_state=0)
            return np.exp(model.fit(x[tr], np.log(y)).predict(x[te]))

        def gp_log(tr: np.ndarray, y: np.ndarray, te: np.ndarray) -> np.ndarray:
            kernel = ConstantKernel() * RBF(3.0) + WhiteKernel(1e-2)
            model = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0)
            with warnings.catch_warnings():  # noise level at its bound on noise-free columns
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x[tr], np.log(y))
            return np.exp(model.predict(x[te]))

        methods["gbm_log"] = gbm_log
        methods["gp_log"] = gp_log
    return methods


def ceiling(x: np.ndarray, flops: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Gradient boosting on log-latency, 10,000 train / rest test, seed 0."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:CEILING_TRAIN], idx[CEILING_TRAIN:]
    feats = np.hstack([x, np.log(flops)[:, None]])
    model = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                          early_stopping=False, random_state=0)
    model.fit(feats[tr], np.log(y[tr]))
    rep = accuracy_report(np.exp(model.predict(feats[te])), y[te])
    return {m: round(rep[m], 4) for m in METRICS} | {"train": CEILING_TRAIN}


def run_experiment(folder: Path, ks: Sequence[int], seeds: int, devices: Sequence[str] | None,
                   ablation: bool, with_ceiling: bool, threads: int | None = None) -> dict[str, Any]:
    """Every method x device x k x seed; means over seeds and a summary."""
    t0 = time.perf_counter()
    genomes, all_devices, lat, flops = load_table(folder)
    space = load_space("nb201")
    predictor = FittedLatencyPredictor(space)
    x = predictor.feature_matrix(genomes)
    methods = make_methods(x, flops, predictor.features.blocks, space, ablation)
    chosen = list(devices) if devices else all_devices
    unknown = [d for d in chosen if d not in all_devices]
    if unknown:
        raise DataError(f"no device {unknown[0]!r} in the latency table; devices: {', '.join(all_devices)}")
    n = len(genomes)
    if max(ks) >= n or min(ks) < 2:
        raise DataError(f"k must be in 2..{n - 1}, got {list(ks)}")
    splits = {(k, s): np.random.default_rng(s).permutation(n) for k in ks for s in range(seeds)}
    logger.info("%d architectures, %d devices, k=%s, %d seeds, methods %s (features %.0f s)",
                n, len(chosen), list(ks), seeds, list(methods), time.perf_counter() - t0)
    per_device: dict[str, Any] = {}
    seconds = dict.fromkeys(methods, 0.0)
    for dev in chosen:
        y_all = lat[:, all_devices.index(dev)]
        entry: dict[str, Any] = {
            "median_ms": round(float(np.median(y_all)), 3),
            "integer_ms": bool(np.all(y_all == np.round(y_all))),
            "share_below_10ms": round(float(np.mean(y_all < 10)), 4),
            "timings_below_0.1ms": int(np.sum(y_all < 0.1)),
            "results": {},
        }
        split_rows: dict[str, list[float]] = {"below_10ms": [], "from_10ms": []}
        for name, method in methods.items():
            res: dict[str, Any] = {}
            for k in ks:
                if k > MAX_K.get(name, k):
                    continue
                reps = []
                for s in range(seeds):
                    perm = splits[(k, s)]
                    tr, te = perm[:k], perm[k:]
                    t = time.perf_counter()
                    pred = method(tr, y_all[tr], te)
                    seconds[name] += time.perf_counter() - t
                    reps.append(accuracy_report(pred, y_all[te]))
                    if name == "fitted" and k == TARGET_K:
                        ok = np.abs(pred - y_all[te]) <= 0.1 * y_all[te] + 1e-12
                        low = y_all[te] < 10
                        split_rows["below_10ms"].append(float(ok[low].mean()) if low.any() else float("nan"))
                        split_rows["from_10ms"].append(float(ok[~low].mean()) if (~low).any() else float("nan"))
                res[str(k)] = {m: round(float(np.mean([r[m] for r in reps])), 4) for m in METRICS}
                res[str(k)]["within_10pct_std"] = round(float(np.std([r["within_10pct"] for r in reps])), 4)
            entry["results"][name] = res
        if TARGET_K in ks:
            entry["fitted_k100_within_10pct_by_range"] = {key: _mean(v) for key, v in split_rows.items()}
        if with_ceiling:
            t = time.perf_counter()
            entry["ceiling"] = ceiling(x, flops, y_all)
            seconds["ceiling"] = seconds.get("ceiling", 0.0) + time.perf_counter() - t
        per_device[dev] = entry
        r = entry["results"]["fitted"]
        logger.info("%-15s fitted within ±10%%: %s", dev, "  ".join(f"k={k} {r[str(k)]['within_10pct']:.3f}" for k in ks))
    report = {
        "config": {"data": str(folder), "ks": list(ks), "seeds": seeds, "devices": chosen,
                   "threads": threads,
                   "methods": list(methods), "architectures": n, "ceiling": with_ceiling,
                   "target": f">= {TARGET_SHARE:.0%} within ±10% at k={TARGET_K} on >= {TARGET_DEVICES} devices",
                   "versions": {"nasbench": nasbench.__version__, "python": platform.python_version(),
                                "numpy": np.__version__}},
        "devices": per_device,
    }
    report["summary"] = summarize(report)
    report["config"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
    report["config"]["fit_predict_seconds"] = {m: round(v, 1) for m, v in seconds.items()}
    return report


def _mean(values: Sequence[float]) -> float | None:
    kept = [v for v in values if not np.isnan(v)]
    return round(float(np.mean(kept)), 4) if kept else None


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Devices reaching the target, means over devices, fitted / baseline ratios."""
    ks = [str(k) for k in report["config"]["ks"]]
    devs = report["devices"]
    out: dict[str, Any] = {"mean_over_devices": {}, "devices_reaching_90pct": {}}
    for name in report["config"]["methods"]:
        done = [k for k in ks if all(k in d["results"][name] for d in devs.values())]
        out["mean_over_devices"][name] = {
            k: {m: round(float(np.mean([d["results"][name][k][m] for d in devs.values()])), 4) for m in METRICS}
            for k in done}
        out["devices_reaching_90pct"][name] = {
            k: sum(d["results"][name][k]["within_10pct"] >= TARGET_SHARE for d in devs.values()) for k in done}
    tk = str(TARGET_K)
    if tk in ks:
        reached = [n for n, d in devs.items() if d["results"]["fitted"][tk]["within_10pct"] >= TARGET_SHARE]
        out["target"] = {"k": TARGET_K, "devices_reaching": len(reached), "needed": TARGET_DEVICES,
                         "met": len(reached) >= TARGET_DEVICES, "reaching": reached,
                         "missing": [n for n in devs if n not in reached]}
        mean = out["mean_over_devices"]
        out["ratios_k100"] = {
            f"fitted_over_{b}_within_10pct": round(mean["fitted"][tk]["within_10pct"] / mean[b][tk]["within_10pct"], 3)
            for b in ("flops_linear", "onehot_log_ridge") if b in mean}
    return out


def markdown_table(report: dict[str, Any]) -> str:
    """Devices x k: within ±10% (%) / Spearman of ``fitted``, and both baselines at k=100."""
    ks = [str(k) for k in report["config"]["ks"]]
    tk = str(TARGET_K) if str(TARGET_K) in ks else ks[-1]
    ceil = report["config"]["ceiling"]
    head = (["device", "median ms"] + [f"k={k}" for k in ks] + [f"FLOPs-linear k={tk}", f"one-hot log-ridge k={tk}"]
            + (["ceiling (10k)"] if ceil else []))
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]

    def cell(r: dict[str, float]) -> str:
        return f"{100 * r['within_10pct']:.1f} / {r['spearman']:.2f}"

    for name, d in report["devices"].items():
        res = d["results"]
        mark = " ✓" if res["fitted"][tk]["within_10pct"] >= TARGET_SHARE else ""
        label = name + (" †" if d["integer_ms"] else "") + (" ‡" if d["timings_below_0.1ms"] else "")
        row = [label, f"{d['median_ms']:.1f}"] + [cell(res["fitted"][k]) + (mark if k == tk else "") for k in ks]
        row += [cell(res["flops_linear"][tk]), cell(res["onehot_log_ridge"][tk])]
        if ceil:
            row.append(cell(d["ceiling"]))
        lines.append("| " + " | ".join(row) + " |")
    mean = report["summary"]["mean_over_devices"]
    reach = report["summary"]["devices_reaching_90pct"]
    row = ["**mean (devices ≥ 90%)**", ""] + [f"{cell(mean['fitted'][k])} ({reach['fitted'][k]})" for k in ks]
    row += [f"{cell(mean[b][tk])} ({reach[b][tk]})" for b in ("flops_linear", "onehot_log_ridge")]
    if ceil:
        row.append("")
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the NB201 CSVs")
    ap.add_argument("--ks", default=",".join(map(str, KS)), help="training-set sizes, comma-separated")
    ap.add_argument("--seeds", type=int, default=5, help="random splits per k (default 5)")
    ap.add_argument("--devices", default="", help="comma-separated device columns (default: all)")
    ap.add_argument("--ablation", action="store_true",
                    help="also fitted without live ops / with FLOPs, gradient boosting, a Gaussian process")
    ap.add_argument("--ceiling", action="store_true", help="also gradient boosting on 10,000 archs per device")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS/OpenMP threads (default 1: spin-waiting threads crawl on a busy machine)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    ap.add_argument("--markdown", action="store_true", help="print the markdown table instead of the JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("nasbench").setLevel(logging.WARNING)
    try:
        ks = [int(k) for k in args.ks.split(",") if k.strip()]
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
        with threadpool_limits(limits=args.threads):
            report = run_experiment(args.data, ks, args.seeds, devices or None, args.ablation, args.ceiling,
                                    args.threads)
    except (NasbenchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["markdown"] = markdown_table(report)
    text = json.dumps(report, indent=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    target = report["summary"].get("target")
    if target:
        logger.info("fitted reaches >= 90%% within ±10%% at k=%d on %d/%d devices (target %d): %s",
                    TARGET_K, target["devices_reaching"], len(report["devices"]), TARGET_DEVICES,
                    "met" if target["met"] else "NOT met")
    logger.info("wrote %s in %.0f s", args.out, report["config"]["wall_seconds"])
    print(report["markdown"] if args.markdown else text)
    if not args.markdown:
        print(report["markdown"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
