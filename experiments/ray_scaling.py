"""Throughput of the Ray executor with 1 and 2 workers, and its per-trial overhead against the local one.

Every trial runs through the real search loop (``run_search``: random strategy on the nb201
space, each trial recorded in an SQLite study) with a synthetic evaluator that does real
CPU work, not a sleep: float32 matrix products (256x256) with ONE torch thread, a fixed
number of them per trial. The count is calibrated once at start-up so a trial takes
about ``--long`` (10 s) or ``--short`` (1 s) alone on this machine. Fixed work rather than a
deadline, so that two trials fighting for the same cores show up as slower trials (a
sleep would scale perfectly on any machine and measure nothing).

Measured, all in one run, one after another on one local Ray (``num_cpus=2``, started once
by this script and timed separately, as are the workers' first start-up):

- ``local``: ``LocalExecutor`` (in-process, one trial at a time) on the same trials;
- ``ray1`` / ``ray2``: ``RayExecutor(workers=1|2, cpus_per_trial=1)``;
- per duration: wall seconds, trials/hour, the evaluator's own work seconds (timed inside
  the trial), the trials' share of a core while working (CPU s / wall s: 1.0 = a core of its
  own, ~0.5 = sharing with another busy process), speedups ray2/ray1 and ray2/local;
- with ``--repeats R``, R rounds in rotated order; the fastest round of each is reported
  (the least disturbed by other processes), all rounds' wall times alongside;
- a control without Ray or nasbench: ~3 s of the same work in plain processes, one alone then
  two at once, before and after: ``speedup_two_processes`` is the most two trials could gain
  on this machine at that moment (2.0 on an idle 2-core machine);
- per-trial overhead of Ray against local two ways: ``(wall_ray1 - wall_local) / n``, and
  ``(wall - work) / n`` of each run (less sensitive to load changing between runs);
  plus no-op trials (no work at all), which isolate the dispatch cost.

Targets (from the issue): ray2/ray1 >= 1.8 on the 10 s trials; overhead <= 0.5 s per trial.
The load average before and after is in the JSON: on a shared machine the numbers suffer.

``--tune`` measures instead what Ray Tune costs per trial against Ray core, to choose the
default: the same short trials (``--short``, 1 s) and no-op trials through ``local``,
``ray1``/``ray2`` (``RayExecutor``) and ``tune1``/``tune2`` (``TuneExecutor`` with no
scheduler, i.e. FIFO: the path ``--scheduler asha`` takes, without stopping anything), with
per-trial overhead against local. Tune's start-up per search (its ``Tuner`` and driver
thread) is timed separately, like Ray's. Written to ``experiments/results/ray_tune_vs_core.json``.

    python experiments/ray_scaling.py                 # ~3 min on an idle 2-core machine
    python experiments/ray_scaling.py --quick         # 2 s / 0.5 s trials, fewer of them
    python experiments/ray_scaling.py --tune          # Tune vs core, ~2 min
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "experiments" / "results" / "ray_scaling.json"
TUNE_OUT = REPO / "experiments" / "results" / "ray_tune_vs_core.json"
SIZE = 256  # matrix side of one unit of work


class BusyEvaluator:
    """``evaluator(genome, seed)``: ``units`` matrix products on one thread; reports the work's seconds.

    Defined in ``__main__``, so Ray pickles it by value: workers need not import this script.
    """

    def __init__(self, units: int) -> None:
        self.units = units

    def __call__(self, genome: Any, seed: int) -> Any:
        import torch

        from nasbench.objectives import Evaluation

        torch.set_num_threads(1)  # the local executor too: one trial, one core
        t0, c0 = time.perf_counter(), time.process_time()
        g = torch.Generator().manual_seed(seed)
        a = torch.rand(SIZE, SIZE, generator=g)
        b = torch.rand(SIZE, SIZE, generator=g)
        for _ in range(self.units):
            a = torch.tanh(a @ b)
        work, cpu = time.perf_counter() - t0, time.process_time() - c0
        return Evaluation((float(a.mean()),), {"val_accuracy": float(a.mean()), "work_s": work, "work_cpu_s": cpu,
                                               "seed": seed})


def calibrate(seconds: float = 1.5) -> float:
    """Units of work per second on one thread, here and now."""
    torch.set_num_threads(1)
    BusyEvaluator(20)(None, 0)  # warm-up
    units = 50
    while True:
        t0 = time.perf_counter()
        BusyEvaluator(units)(None, 0)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return units / dt
        units *= 2


_BASELINE = f"""
import time, torch
torch.set_num_threads(1)
a, b = torch.rand({SIZE}, {SIZE}), torch.rand({SIZE}, {SIZE})
t0 = time.perf_counter()
for _ in range({{units}}):
    a = torch.tanh(a @ b)
print(time.perf_counter() - t0)
"""


def machine_parallelism(units: int) -> dict[str, Any]:
    """The same work in plain processes, one alone then two at once: what this machine gives two trials now."""
    import subprocess

    def batch(k: int) -> list[float]:
        procs = [subprocess.Popen([sys.executable, "-c", _BASELINE.format(units=units)], stdout=subprocess.PIPE,
                                  text=True) for _ in range(k)]
        return [float(p.communicate()[0]) for p in procs]

    alone, pair = batch(1)[0], batch(2)
    return {"alone_s": round(alone, 3), "two_at_once_s": [round(x, 3) for x in pair],
            "speedup_two_processes": round(2 * alone / max(pair), 3)}


def run(executor_kind: str, workers: int, units: int, n: int, folder: Path, tag: str) -> dict[str, Any]:
    """One search of ``n`` trials; wall time and the trials' own work."""
    from nasbench._spaces import load_space
    from nasbench.objectives import Objectives
    from nasbench.runner import RayExecutor, StudyRecorder, TuneExecutor, run_search
    from nasbench.strategies import RandomStrategy

    space, acc = load_space("nb201"), Objectives.parse("accuracy")
    evaluator = BusyEvaluator(units)
    recorder = StudyRecorder(f"sqlite:///{folder / 'scaling.db'}", tag, space, acc, {"strategy": "random"})
    recorder.history()
    executor: Any = None
    startup = 0.0
    if executor_kind == "ray":
        executor = RayExecutor(evaluator, workers=workers, cpus_per_trial=1)
        executor.start()  # joins the running Ray and ships the evaluator; not part of a trial's cost
    elif executor_kind == "tune":
        executor = TuneExecutor(evaluator, scheduler="fifo", workers=workers, cpus_per_trial=1)
        executor.start()
        t0 = time.perf_counter()
        executor.launch()  # Tune's Tuner and driver thread: once per search, timed apart
        startup = time.perf_counter() - t0
    last: list[float] = []
    t0 = time.perf_counter()
    summary = run_search(RandomStrategy(space, acc, seed=0), evaluator, recorder, budget=n, seed=0, executor=executor,
                         on_trial=lambda rec, k: last.append(time.perf_counter()))
    end = time.perf_counter()
    wall = last[-1] - t0  # to the last trial recorded: the executor's shutdown is per search, not per trial
    works = [r.evaluation.metrics["work_s"] for r in summary.new]
    cpus = [r.evaluation.metrics["work_cpu_s"] for r in summary.new]
    assert len(works) == n and all(r.evaluation.ok for r in summary.new), "every trial must complete"
    out = {"executor": executor_kind, "workers": workers, "trials": n, "wall_s": round(wall, 3),
           "trials_per_hour": round(n / wall * 3600, 1), "work_s_total": round(sum(works), 3),
           "work_s_mean": round(sum(works) / n, 3),
           "core_share": round(sum(cpus) / sum(works), 3) if sum(works) > 0.05 else None}
    if n > 1:  # start-up paid by the first trials vs the pace once running (for Tune: its trial actors start)
        out["first_trial_s"] = round(last[0] - t0, 3)
        out["then_s_per_trial"] = round((last[-1] - last[0]) / (n - 1), 4)
    if executor_kind == "tune":
        out["tune_startup_s"], out["tune_shutdown_s"] = round(startup, 3), round(end - last[-1], 3)
    logging.info("%s: %s", tag, out)
    return out


def scenario(name: str, seconds: float, n: int, rate: float, folder: Path, repeats: int) -> dict[str, Any]:
    """local, ray1 and ray2 on ``n`` trials of about ``seconds`` each; ``repeats`` rounds in rotated order."""
    units = max(1, round(seconds * rate)) if seconds > 0 else 0
    configs = {"local": ("local", 1), "ray1": ("ray", 1), "ray2": ("ray", 2)}
    rounds = rotated_rounds(configs, units, n, folder, name, repeats)
    best = {k: min(v, key=lambda x: x["wall_s"]) for k, v in rounds.items()}  # least disturbed round
    wall = {k: best[k]["wall_s"] for k in configs}
    return {
        "target_trial_s": seconds, "units_per_trial": units, **best,
        "speedup_ray2_over_ray1": round(wall["ray1"] / wall["ray2"], 3),
        "speedup_ray2_over_local": round(wall["local"] / wall["ray2"], 3),
        "ray1_overhead_vs_local_s_per_trial": round((wall["ray1"] - wall["local"]) / n, 4),
        "wall_minus_work_s_per_trial": {k: round((b["wall_s"] - b["work_s_total"] / b["workers"]) / n, 4)
                                        for k, b in best.items()},
        "all_rounds_wall_s": {k: [x["wall_s"] for x in v] for k, v in rounds.items()},
    }


def rotated_rounds(configs: dict[str, tuple[str, int]], units: int, n: int, folder: Path, name: str,
                   repeats: int) -> dict[str, list[dict[str, Any]]]:
    """``repeats`` rounds of every configuration; rotating the order spreads a changing load over all."""
    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in configs}
    for r in range(repeats):
        names = list(configs)[r % len(configs):] + list(configs)[: r % len(configs)]
        for k in names:
            rounds[k].append(run(*configs[k], units, n, folder, f"{name}-{k}-{r}"))
    return rounds


def tune_scenario(name: str, seconds: float, n: int, rate: float, folder: Path, repeats: int) -> dict[str, Any]:
    """local, Ray core and Ray Tune (FIFO) with 1 and 2 workers on ``n`` trials of about ``seconds`` each."""
    units = max(1, round(seconds * rate)) if seconds > 0 else 0
    configs = {"local": ("local", 1), "ray1": ("ray", 1), "tune1": ("tune", 1), "ray2": ("ray", 2),
               "tune2": ("tune", 2)}
    rounds = rotated_rounds(configs, units, n, folder, name, repeats)
    best = {k: min(v, key=lambda x: x["wall_s"]) for k, v in rounds.items()}
    wall = {k: best[k]["wall_s"] for k in configs}
    return {
        "target_trial_s": seconds, "units_per_trial": units, **best,
        "overhead_vs_local_s_per_trial": {k: round((wall[k] - wall["local"]) / n, 4) for k in ("ray1", "tune1")},
        # Once the first trial is back: the marginal cost of one more trial, start-up excluded.
        "steady_overhead_vs_local_s_per_trial": {
            k: round(best[k]["then_s_per_trial"] - best["local"]["then_s_per_trial"], 4) for k in ("ray1", "tune1")},
        "first_trial_extra_s_vs_local": {
            k: round(best[k]["first_trial_s"] - best["local"]["first_trial_s"], 3) for k in configs if k != "local"},
        "wall_minus_work_s_per_trial": {k: round((b["wall_s"] - b["work_s_total"] / b["workers"]) / n, 4)
                                        for k, b in best.items()},
        "tune_over_core_wall": {"1_worker": round(wall["tune1"] / wall["ray1"], 3),
                                "2_workers": round(wall["tune2"] / wall["ray2"], 3)},
        "all_rounds_wall_s": {k: [x["wall_s"] for x in v] for k, v in rounds.items()},
    }


def main_tune(args: argparse.Namespace) -> int:
    """``--tune``: Ray Tune against Ray core on short and no-op trials; JSON to ``ray_tune_vs_core.json``."""
    import subprocess

    import ray

    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    load_before = os.getloadavg()
    rate = calibrate()
    logging.info("calibrated: %.1f units/s on one thread", rate)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    ray_start = time.perf_counter() - t0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            t0 = time.perf_counter()
            run("ray", 2, 0, 2, folder, "warmup-core")  # starts both workers, imports torch there
            run("tune", 2, 0, 2, folder, "warmup-tune")
            warmup = time.perf_counter() - t0
            noop = tune_scenario("noop", 0.0, args.n_noop, rate, folder, args.repeats)
            short = tune_scenario("short", args.short, args.n_short, rate, folder, args.repeats)
    finally:
        ray.shutdown()
    report = {
        "experiment": "ray_tune_vs_core",
        "command": "python experiments/ray_scaling.py --tune " + " ".join(
            f"--{k.replace('_', '-')} {getattr(args, k)}" for k in ("short", "n_short", "n_noop", "repeats")),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "ray": ray.__version__, "uptime_before": uptime_before,
                    "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "work": f"{SIZE}x{SIZE} float32 matmul+tanh per unit, one torch thread per trial",
        "calibrated_units_per_s": round(rate, 2), "ray_init_s": round(ray_start, 2),
        "first_trials_warmup_s": round(warmup, 2),
        "tune_startup_s_per_search": {k: short[k]["tune_startup_s"] for k in ("tune1", "tune2")},
        "short": short, "noop": noop,
        "summary": {
            "overhead_s_per_trial_vs_local": {"core": short["overhead_vs_local_s_per_trial"]["ray1"],
                                              "tune": short["overhead_vs_local_s_per_trial"]["tune1"],
                                              "core_noop": noop["overhead_vs_local_s_per_trial"]["ray1"],
                                              "tune_noop": noop["overhead_vs_local_s_per_trial"]["tune1"]},
            "steady_overhead_s_per_trial_vs_local": {
                "core": short["steady_overhead_vs_local_s_per_trial"]["ray1"],
                "tune": short["steady_overhead_vs_local_s_per_trial"]["tune1"],
                "core_noop": noop["steady_overhead_vs_local_s_per_trial"]["ray1"],
                "tune_noop": noop["steady_overhead_vs_local_s_per_trial"]["tune1"]},
            "first_trial_extra_s_vs_local_short": short["first_trial_extra_s_vs_local"],
            "trials_per_hour_short": {k: short[k]["trials_per_hour"] for k in ("local", "ray1", "tune1", "ray2",
                                                                                 "tune2")},
        },
    }
    text = json.dumps(report, indent=1)
    out = args.out or TUNE_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", type=float, default=10.0, help="seconds of a long trial (default 10)")
    ap.add_argument("--short", type=float, default=1.0, help="seconds of a short trial (default 1)")
    ap.add_argument("--n-long", type=int, default=4, help="long trials per run (default 4)")
    ap.add_argument("--n-short", type=int, default=12, help="short trials per run (default 12)")
    ap.add_argument("--n-noop", type=int, default=20, help="no-op trials per run (default 20)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds per configuration, best kept (default 1)")
    ap.add_argument("--quick", action="store_true", help="2 s and 0.5 s trials, 4 and 8 of them")
    ap.add_argument("--tune", action="store_true", help="Ray Tune (FIFO) against Ray core instead (short and no-op "
                    f"trials; default JSON {TUNE_OUT.relative_to(REPO)})")
    ap.add_argument("--out", type=Path, default=None, help=f"JSON path (default {DEFAULT_OUT.relative_to(REPO)})")
    args = ap.parse_args(argv)
    if args.quick:
        args.long, args.short, args.n_long, args.n_short, args.n_noop = 2.0, 0.5, 4, 8, 10
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("nasbench").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local instance
    if args.tune:
        return main_tune(args)
    load_before = os.getloadavg()
    import ray

    rate = calibrate()
    logging.info("calibrated: %.1f units/s on one thread", rate)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    ray_start = time.perf_counter() - t0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            t0 = time.perf_counter()
            run("ray", 2, 0, 2, folder, "warmup")  # starts both workers, imports torch there
            warmup = time.perf_counter() - t0
            base_units = max(1, round(3 * rate))
            baseline_before = machine_parallelism(base_units)
            noop = scenario("noop", 0.0, args.n_noop, rate, folder, args.repeats)
            short = scenario("short", args.short, args.n_short, rate, folder, args.repeats)
            long = scenario("long", args.long, args.n_long, rate, folder, args.repeats)
            baseline_after = machine_parallelism(base_units)
    finally:
        ray.shutdown()
    report = {
        "experiment": "ray_scaling",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "ray": ray.__version__, "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "work": f"{SIZE}x{SIZE} float32 matmul+tanh per unit, one torch thread per trial",
        "calibrated_units_per_s": round(rate, 2),
        "ray_init_s": round(ray_start, 2), "first_trials_warmup_s": round(warmup, 2),
        "plain_processes_3s_work": {"before": baseline_before, "after": baseline_after},
        "long": long, "short": short, "noop": noop,
        "targets": {"speedup_ray2_over_ray1_long": {"target": ">= 1.8", "got": long["speedup_ray2_over_ray1"],
                                                    "plain_processes_got": [baseline_before["speedup_two_processes"],
                                                                            baseline_after["speedup_two_processes"]]},
                    "overhead_s_per_trial": {"target": "<= 0.5",
                                             "got_short": short["ray1_overhead_vs_local_s_per_trial"],
                                             "got_noop": noop["ray1_overhead_vs_local_s_per_trial"]}},
    }
    text = json.dumps(report, indent=1)
    out = args.out or DEFAULT_OUT.with_name("ray_scaling_quick.json" if args.quick else DEFAULT_OUT.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
