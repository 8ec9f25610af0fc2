"""Tests for hard constraints in the search loop, on the NAS-Bench-201 evaluator with an SQLite study."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from optuna.trial import TrialState

from nasbench.errors import ConfigError, NasbenchError
from nasbench.objectives import Evaluation, Objectives
from nasbench.runner import Constraints, StudyRecorder, run_search
from nasbench.runner import _loop as loop
from nasbench.strategies import EvolutionStrategy

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201"
ACC = Objectives.parse("accuracy")
ACC_LAT = Objectives.parse("accuracy,latency")
#: Below the params of any cell with a 3x3 conv (73,498 skeleton + 243,040 per 3x3 conv edge).
MAX_PARAMS = 300_000



@pytest.fixture(scope="module")
def bench():
    if not (DATA / "nb201_accuracy.csv").is_file() or not (DATA / "nb201_latency_ms.csv").is_file():
        pytest.skip(f"NAS-Bench-201 tables not found in {DATA}")
    from nasbench.benchmarks import NB201
    from nasbench.hardware import torch_threads

    with torch_threads(1):  # loading measures op costs on tiny networks; one thread avoids contention
        return NB201(DATA / "nb201_accuracy.csv", DATA / "nb201_latency_ms.csv")



@pytest.fixture
def recorder(tmp_path, _empty_db, bench):
    def make(objectives: Objectives = ACC) -> StudyRecorder:
        shutil.copyfile(_empty_db, tmp_path / "c.db")
        return StudyRecorder(f"sqlite:///{tmp_path / 'c.db'}", "constrained", bench.space, objectives,
                             {"strategy": "evolution", "benchmark": "nb201"})

    return make


class SpyEvolution(EvolutionStrategy):
    """Evolution that remembers every tell."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.told: list[tuple[str, Evaluation]] = []

    def tell(self, genome, evaluation) -> None:  # noqa: ANN001
        self.told.append((genome.hash, evaluation))
        super().tell(genome, evaluation)


def test_max_params_bounds_every_recorded_trial_and_the_budget_is_met(recorder, bench):
    from nasbench.benchmarks import BenchmarkEvaluator

    evaluator = BenchmarkEvaluator(bench, "cifar10", ACC)
    rec = recorder()
    strategy = SpyEvolution(bench.space, ACC, seed=0, population_size=10, tournament_size=3)
    constraints = Constraints(max_params=MAX_PARAMS)
    summary = run_search(strategy, evaluator, rec, budget=30, seed=0, constraints=constraints,
                         estimate=evaluator.estimate)
    assert summary.finished == 30 and len(summary.new) == 30 and not summary.exhausted
    trials = rec.study.trials
    assert len(trials) == 30 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs["params"] <= MAX_PARAMS for t in trials)
    assert all("nor_conv_3x3" not in t.params.values() for t in trials)  # the only way past the bound
    infeasible = {h for h, ev in strategy.told if ev.failure and ev.failure.startswith("infeasible: params")}
    assert infeasible, "the bound was never hit; the test would prove nothing"
    recorded = {t.user_attrs["genome_hash"] for t in trials}
    assert not infeasible & recorded
    assert all(bench.costs(bench.space.load_genome(t.user_attrs["genome"])).params <= MAX_PARAMS for t in trials)
    assert not infeasible & {g.hash for g, _ in strategy.population}


def test_latency_bound_with_a_two_objective_search(recorder, bench):
    from nasbench.benchmarks import BenchmarkEvaluator

    evaluator = BenchmarkEvaluator(bench, "cifar10", ACC_LAT, device="raspi4")
    rec = recorder(ACC_LAT)
    strategy = EvolutionStrategy(bench.space, ACC_LAT, seed=1, population_size=8, tournament_size=2)
    constraints = Constraints(max_latency_ms=8.0)
    summary = run_search(strategy, evaluator, rec, budget=15, seed=1, constraints=constraints,
                         estimate=lambda g: evaluator.estimate(g, with_latency=True))
    assert summary.finished == 15
    trials = rec.study.trials
    assert len(trials) == 15
    assert all(t.values[1] <= 8.0 and t.user_attrs["latency_ms"] <= 8.0 for t in trials)


def test_an_impossible_bound_raises_config_error_quickly(recorder, bench, monkeypatch):
    from nasbench.benchmarks import BenchmarkEvaluator

    monkeypatch.setattr(loop, "MAX_INFEASIBLE", 25)
    evaluator = BenchmarkEvaluator(bench, "cifar10", ACC)
    rec = recorder()
    strategy = SpyEvolution(bench.space, ACC, seed=0, population_size=5, tournament_size=2)
    with pytest.raises(ConfigError, match="no feasible architecture in 25 consecutive draws"):
        run_search(strategy, evaluator, rec, budget=5, seed=0, constraints=Constraints(max_params=1000),
                   estimate=evaluator.estimate)
    assert len(strategy.told) == 25 and all(not ev.ok for _, ev in strategy.told)
    assert rec.study.trials == []


def test_a_feasible_draw_resets_the_infeasible_count(recorder, bench, monkeypatch):
    # Fewer than MAX_INFEASIBLE infeasible draws in a row must not stop the search.
    from nasbench.benchmarks import BenchmarkEvaluator

    monkeypatch.setattr(loop, "MAX_INFEASIBLE", 3)
    evaluator = BenchmarkEvaluator(bench, "cifar10", ACC)
    estimates = iter([{"params": p, "flops": 0, "latency_ms": 0} for p in [9, 9, 1, 9, 9, 1, 9, 9, 1]])
    summary = run_search(EvolutionStrategy(bench.space, ACC, seed=3), evaluator, recorder(), budget=3, seed=0,
                         constraints=Constraints(max_params=5), estimate=lambda g: next(estimates))
    assert summary.finished == 3


def test_latency_constraint_without_a_device_is_refused(recorder, bench):
    from nasbench.benchmarks import BenchmarkEvaluator

    evaluator = BenchmarkEvaluator(bench, "cifar10", ACC)
    constraints = Constraints(max_latency_ms=5.0)
    with pytest.raises(NasbenchError, match="--device-latency"):
        run_search(EvolutionStrategy(bench.space, ACC), evaluator, recorder(), budget=2, seed=0,
                   constraints=constraints,
                   estimate=lambda g: evaluator.estimate(g, with_latency=constraints.needs_latency))


@pytest.mark.parametrize("bound", [
    {"max_params": 0}, {"max_params": -5}, {"max_flops": 0.0}, {"max_latency_ms": -1.0},
    {"max_latency_ms": math.nan},
])
def test_non_positive_bounds_are_config_errors(bound):
    with pytest.raises(ConfigError, match="positive"):
        Constraints(**bound)


def test_violation_messages_and_edges():
    c = Constraints(max_params=100, max_flops=1e6, max_latency_ms=2.5)
    assert c.active and c.needs_latency
    assert c.violation({"params": 100, "flops": 1e6, "latency_ms": 2.5}) is None  # the bound itself is allowed
    assert c.violation({"params": 101, "flops": 1, "latency_ms": 1}) == "params 101 > 100"
    assert c.violation({"params": 1, "flops": 2e6, "latency_ms": 1}).startswith("flops")
    assert c.violation({"params": 1, "flops": 1, "latency_ms": 3}).startswith("latency_ms")
    assert not Constraints().active and not Constraints(max_params=5).needs_latency
    assert Constraints(max_flops=7).to_dict() == {"max_params": None, "max_flops": 7, "max_latency_ms": None}
