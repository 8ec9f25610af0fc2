"""Tests for experiments/nb201_strategies.py: query counting, tie rule, and a tiny real run."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from nasbench.errors import ConfigError
from nasbench.objectives import Evaluation

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "nb201_strategies.py"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201"


@pytest.fixture(scope="module")
def exp():
    """The experiment script imported as a module."""
    spec = importlib.util.spec_from_file_location("nb201_strategies", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _G:
    """A stand-in genome: only ``hash`` is used by the loop."""

    def __init__(self, key: str) -> None:
        self.hash = key


class _Scripted:
    """Asks a fixed sequence of genome keys and records what it was told."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = list(keys)
        self.told: list[tuple[str, float]] = []

    def ask(self) -> _G:
        return _G(self.keys.pop(0))

    def tell(self, genome: _G, evaluation: Evaluation) -> None:
        self.told.append((genome.hash, evaluation.values[0]))


# key -> (val %, test %)
TABLE = {"a": (80.0, 85.0), "b": (90.0, 91.0), "c": (90.0, 99.0), "d": (95.0, 88.0)}


def _evaluate(genome: _G) -> Evaluation:
    val, test = TABLE[genome.hash]
    return Evaluation((val / 100,), {"val_accuracy": val / 100, "test_accuracy": test / 100})


def test_repeats_are_told_but_not_counted_and_ties_keep_the_earliest(exp):
    strategy = _Scripted(["a", "b", "a", "b", "c", "d"])
    out = exp.search_trajectory(strategy, _evaluate, queries=4)
    assert out["asks"] == 6 and not out["exhausted"]
    assert [k for k, _ in strategy.told] == ["a", "b", "a", "b", "c", "d"]  # repeats told the cached result
    # c ties b on validation and comes later, so b (test 91) stays best until d.
    assert out["test"] == pytest.approx([85.0, 91.0, 91.0, 88.0])
    assert out["val"] == pytest.approx([80.0, 90.0, 90.0, 95.0])


def test_a_run_that_only_repeats_stops_and_pads(exp):
    strategy = _Scripted(["a", "b"] + ["a"] * 10)
    out = exp.search_trajectory(strategy, _evaluate, queries=5, max_repeats=3)
    assert out["exhausted"] and out["asks"] == 5
    assert out["test"] == pytest.approx([85.0, 91.0, 91.0, 91.0, 91.0])


def test_strategy_specs_parse_and_bad_ones_are_refused(exp):
    assert exp.parse_strategy("evolution:population_size=50,crossover_rate=0.5") == (
        "evolution", {"population_size": 50, "crossover_rate": 0.5})
    assert exp.parse_strategy("tpe") == ("tpe", {})
    with pytest.raises(ConfigError, match="unknown strategy"):
        exp.parse_strategy("annealing")
    with pytest.raises(ConfigError, match="key=value"):
        exp.parse_strategy("evolution:population_size")


@pytest.mark.skipif(not (DATA / "nb201_accuracy.csv").is_file(), reason=f"NAS-Bench-201 table not at {DATA}")
def test_tiny_real_run_has_the_reported_structure(exp):
    report = exp.run_experiment(DATA, strategies=["random"], datasets=["cifar10"], seeds=[0, 1],
                                budgets=[5, 10, 20], workers=1)
    assert report["config"]["budgets"] == [5, 10, 20]
    cells = report["results"]["cifar10"]["random"]
    assert set(cells) == {"5", "10", "20"}
    for cell in cells.values():
        assert cell["n"] == 2 and 0.0 <= cell["mean"] <= 100.0 and cell["std"] >= 0.0
    table = report["table"]["cifar10"]
    assert table["architectures"] == 15625
    assert table["optimum_test"] == pytest.approx(94.37, abs=0.01)
    assert table["oracle_by_val_test"] <= table["optimum_test"]
    assert all(cell["mean"] <= table["optimum_test"] for cell in cells.values())
    curve = report["curves"]["cifar10"]["random"]
    assert curve["queries"][0] == 1 and curve["queries"][-1] == 20
    assert all(0.0 <= m <= 100.0 for m in curve["mean"])
    assert report["runs"]["random"]["mean_asks"]["cifar10"] >= 20


@pytest.mark.skipif(not (DATA / "nb201_accuracy.csv").is_file(), reason=f"NAS-Bench-201 table not at {DATA}")
def test_best_so_far_validation_is_monotone_on_the_table(exp):
    from nasbench.benchmarks import NB201, BenchmarkEvaluator

    bench: NB201 = exp._load(str(DATA / "nb201_accuracy.csv"))
    evaluator = BenchmarkEvaluator(bench, "cifar100", exp.ACCURACY)
    for seed in (0, 1):
        out = exp.search_trajectory(exp.make_strategy("evolution", bench.space, seed), lambda g: evaluator(g), 20)
        assert len(out["val"]) == len(out["test"]) == 20
        assert all(b >= a for a, b in zip(out["val"], out["val"][1:]))
        assert all(0.0 <= t <= 100.0 and not math.isnan(t) for t in out["test"])
