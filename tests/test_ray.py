"""Tests for the Ray executor: parallel trials, retries on worker death, fail-fast settings, CLI flags."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nasbench._spaces import load_space
from nasbench.errors import ConfigError
from nasbench.objectives import Evaluation, Objectives
from nasbench.runner import RayExecutor, StudyRecorder, run_search
from nasbench.space import Genome
from nasbench.strategies import RandomStrategy

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nb201"
ACC_CSV, LAT_CSV = DATA / "nb201_accuracy.csv", DATA / "nb201_latency_ms.csv"
ACC = Objectives.parse("accuracy")

#: Evaluators the Ray workers import: a module on the workers' PYTHONPATH, not this test file.
WORKER_MODULE = "nasbench_ray_test_evaluators"
WORKER_SOURCE = '''
"""Evaluators for tests/test_ray.py, imported by Ray workers."""
import os
from pathlib import Path

from nasbench.objectives import Evaluation


class CrashingEvaluator:
    """Kills its own worker process while the counter file holds a number above 0 (decremented per crash)."""

    def __init__(self, counter: str) -> None:
        self.counter = counter

    def __call__(self, genome, seed):
        path = Path(self.counter)
        left = int(path.read_text())
        if left > 0:
            path.write_text(str(left - 1))
            os._exit(1)
        return Evaluation((0.5,), {"val_accuracy": 0.5, "seed": seed, "pid": os.getpid()})
'''


def instant(genome, seed):  # noqa: ANN001, ANN201 - never run: executors that fail to start
    return Evaluation((0.5,), {"val_accuracy": 0.5})



@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One local Ray for the module (2 CPUs, no dashboard); workers can import ``WORKER_MODULE``."""
    ray = pytest.importorskip("ray")
    folder = tmp_path_factory.mktemp("ray_workers")
    (folder / f"{WORKER_MODULE}.py").write_text(WORKER_SOURCE)
    pythonpath = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.syspath_prepend(str(folder))
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}})
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def nb201_evaluator():
    if not (ACC_CSV.is_file() and LAT_CSV.is_file()):
        pytest.skip(f"NAS-Bench-201 tables not found in {DATA}")
    from nasbench.benchmarks import NB201, BenchmarkEvaluator

    return BenchmarkEvaluator(NB201(ACC_CSV, LAT_CSV), "cifar10", ACC)


def study_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ray.db'}"


def search(url: str, executor: RayExecutor, budget: int, name: str = "ray", seed: int = 0):  # noqa: ANN201
    space = load_space("nb201")
    recorder = StudyRecorder(url, name, space, ACC, {"strategy": "random"})
    summary = run_search(RandomStrategy(space, ACC, seed=seed), executor.evaluator, recorder, budget=budget,
                         seed=seed, executor=executor)
    return summary, optuna.load_study(study_name=name, storage=url).trials


class CountingRayExecutor(RayExecutor):
    """Remembers the most trials it had in flight."""

    most = 0

    def submit(self, genome, seed):  # noqa: ANN001, ANN201
        super().submit(genome, seed)
        self.most = max(self.most, self.pending)


# -- settings refused before anything starts ---------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"workers": 0}, "--workers"),
    ({"cpus_per_trial": 0}, "--cpus-per-trial"),
    ({"gpus_per_trial": -1}, "--gpus-per-trial"),
    ({"gpus_per_trial": 1.5}, "whole number"),
    ({"max_retries": -1}, "--max-retries"),
])
def test_bad_settings_are_refused_at_construction(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RayExecutor(instant, **kwargs)


def test_executor_reports_its_slots_and_threads():
    ex = RayExecutor(instant, workers=3, cpus_per_trial=2.5, gpus_per_trial=0.5)
    assert ex.slots == ex.workers == 3 and ex.threads == 2 and ex.pending == 0
    assert RayExecutor(instant, cpus_per_trial=0.5).threads == 1
    ex.shutdown()  # nothing started: a no-op


def test_unreachable_address_fails_in_seconds_with_one_line():
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ex = RayExecutor(instant, address=f"127.0.0.1:{port}", init_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}") as err:
        ex.start()
    # A hang guard, not a benchmark: ray.init alone retries such an address for minutes.
    assert time.monotonic() - t0 < 30
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        RayExecutor(instant, address="headnode").start()


# -- with a running Ray --------------------------------------------------------------------------------


@pytest.mark.slow
def test_gpus_on_a_cluster_without_gpus_are_refused(ray_cluster):
    with pytest.raises(ConfigError, match="--gpus-per-trial 1 but the Ray cluster has no GPUs"):
        RayExecutor(instant, gpus_per_trial=1).start()
    with pytest.raises(ConfigError, match="no node .* has 3 CPUs"):
        RayExecutor(instant, cpus_per_trial=3).submit(load_space("nb201").sample(0), 0)
    assert ray_cluster.is_initialized()  # it did not start this Ray, so it must not stop it


@pytest.mark.slow
def test_two_workers_search_records_the_budget_of_distinct_complete_trials(ray_cluster, nb201_evaluator, tmp_path):
    ex = CountingRayExecutor(nb201_evaluator, workers=2)
    summary, trials = search(study_url(tmp_path), ex, budget=12)
    assert summary.finished == 12 and not summary.interrupted
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["genome_hash"] for t in trials}) == 12
    for t in trials:  # the worker's answer is the table's answer
        assert t.values[0] == nb201_evaluator(Genome.from_json(t.user_attrs["genome"])).values[0]
    assert ex.most == 2 and ex.pending == 0
    assert ray_cluster.is_initialized()


@pytest.mark.slow
def test_a_trial_whose_worker_dies_is_retried_then_failed_past_max_retries(ray_cluster, tmp_path):
    module = __import__(WORKER_MODULE)
    counter = tmp_path / "crashes_left"

    counter.write_text("1")  # the first attempt kills its worker, the retry succeeds
    _, trials = search(study_url(tmp_path), RayExecutor(module.CrashingEvaluator(str(counter)), workers=1,
                                                         max_retries=1), budget=2, name="retried")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].user_attrs["attempts"] == 2 and "attempts" not in trials[1].user_attrs
    assert counter.read_text() == "0"

    counter.write_text("1")  # no retry allowed: the trial fails with the reason and the search goes on
    summary, trials = search(study_url(tmp_path), RayExecutor(module.CrashingEvaluator(str(counter)), workers=1,
                                                              max_retries=0), budget=2, name="failed")
    assert summary.finished == 2
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    failure = trials[0].user_attrs["failure"]
    assert "worker died 1 time(s), max_retries=0" in failure and "WorkerCrashedError" in failure


@pytest.mark.slow
def test_cli_ray_search_resumes_with_the_local_executor_which_never_imports_ray(ray_cluster, nb201_evaluator,
                                                                               tmp_path, capsys):
    from nasbench.cli import main

    url = study_url(tmp_path)
    common = ["--quiet", "search", "--space", "nb201", "--benchmark", f"nb201:{DATA}", "--strategy", "random",
              "--storage", url, "--out", str(tmp_path / "best.json")]
    code = main([*common, "--budget", "4", "--executor", "ray", "--workers", "2", "--max-retries", "1"])
    assert code == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="nb201-cifar10-random", storage=url)
    assert len(study.trials) == 4
    assert not {"executor", "workers", "address"} & set(study.user_attrs["nasbench"])

    # The same search goes on with the local executor, in a fresh interpreter that must never load Ray.
    script = textwrap.dedent(f"""
        import sys
        from nasbench.cli import main
        code = main({[*common, "--budget", "6", "--executor", "local"]!r})
        print(code, "ray" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["0", "False"]
    trials = optuna.load_study(study_name="nb201-cifar10-random", storage=url).trials
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["genome_hash"] for t in trials}) == 6


def test_local_flags_refuse_ray_only_options(tmp_path, capsys):
    from nasbench.cli import main

    code = main(["--quiet", "search", "--budget", "1", "--limit", "50", "--workers", "2",
                 "--storage", study_url(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--workers needs --executor ray" in lines[0]
