"""Tests for the search loop and the Optuna study recording, with a fake instant evaluator."""

from __future__ import annotations

import json
import math
import shutil

import optuna
import pytest
from optuna.trial import TrialState

from nasbench._spaces import load_space
from nasbench.errors import ConfigError, StorageError
from nasbench.objectives import Evaluation, Objectives
from nasbench.runner import (
    StudyRecorder,
    best_trial,
    open_storage,
    open_study,
    pareto_trials,
    resume_seed,
    run_search,
    top_trials,
    trial_seed,
)
from nasbench.space import Genome
from nasbench.strategies import RandomStrategy, Strategy, create_strategy

ACC = Objectives.parse("accuracy")
SETTINGS = {"strategy": "random", "dataset": "fake", "epochs": 1.0}



@pytest.fixture(scope="module")
def space():
    """ResNet: conditional decisions (depth activates block ops)."""
    return load_space("resnet")


def accuracy_of(genome: Genome) -> float:
    """Deterministic fake accuracy in (0, 1) from the genome."""
    return (int(genome.hash[:6], 16) % 1000) / 1000 + 0.0005


class FakeEvaluator:
    """``evaluator(genome, seed)``: instant, deterministic; records its calls; can fail on cue."""

    def __init__(self, fail_on: set[int] = frozenset(), interrupt_on: int | None = None,
                 nan_on: set[int] = frozenset()) -> None:
        self.calls: list[tuple[Genome, int]] = []
        self.fail_on, self.interrupt_on, self.nan_on = fail_on, interrupt_on, nan_on

    def __call__(self, genome: Genome, seed: int) -> Evaluation:
        self.calls.append((genome, seed))
        k = len(self.calls)
        if k == self.interrupt_on:
            raise KeyboardInterrupt
        if k in self.fail_on:
            return Evaluation(None, {"seed": seed}, failure=f"out of memory in call {k}")
        acc = math.nan if k in self.nan_on else accuracy_of(genome)
        return Evaluation((acc,), {"val_accuracy": acc, "seed": seed, "params": len(genome) * 1000})



@pytest.fixture
def db(tmp_path, _empty_db):
    """A fresh study storage: a copy of the empty SQLite file in this test's folder."""
    def make(name: str = "s.db") -> str:
        shutil.copyfile(_empty_db, tmp_path / name)
        return f"sqlite:///{tmp_path / name}"

    return make


def recorder(url: str, space, objectives: Objectives = ACC, settings=None, name: str = "study") -> StudyRecorder:  # noqa: ANN001
    return StudyRecorder(url, name, space, objectives, dict(SETTINGS if settings is None else settings))


def search(url, space, budget, evaluator=None, seed=0, objectives=ACC, strategy="random", name="study"):  # noqa: ANN001
    """What the CLI does: open the study, reseed from its history, run."""
    rec = recorder(url, space, objectives, name=name)
    history = rec.history()
    strat = create_strategy(strategy, space, objectives, resume_seed(seed, len(history)))
    ev = evaluator or FakeEvaluator()
    summary = run_search(strat, ev, rec, budget=budget, seed=seed, history=history)
    return summary, rec, ev


def stored(url: str, name: str = "study") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).trials


# -- the loop --------------------------------------------------------------------------------


def test_budget_respected_and_trials_carry_the_genome(db, space):
    url = db()
    seen = []
    rec = recorder(url, space)
    summary = run_search(RandomStrategy(space, ACC, seed=4), FakeEvaluator(), rec, budget=5, seed=4,
                         on_trial=lambda r, n: seen.append((r.number, n)))
    assert summary.finished == 5 and summary.resumed == 0 and len(summary.new) == 5
    assert not summary.interrupted and not summary.exhausted
    assert seen == [(i, i + 1) for i in range(5)]
    trials = stored(url)
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    for t, r in zip(trials, summary.new):
        assert t.state == TrialState.COMPLETE
        genome = space.load_genome(t.user_attrs["genome"])
        assert genome == r.genome
        assert json.loads(t.user_attrs["genome"])["values"] == genome.values
        assert t.params == genome.values
        assert set(t.distributions) == {d.label for d in space.active_decisions(genome)}
        assert t.user_attrs["genome_hash"] == genome.hash
        assert t.user_attrs["strategy"] == "random"
        assert t.user_attrs["search_seed"] == 4
        assert t.user_attrs["trial_seed"] == trial_seed(4, genome) == t.user_attrs["seed"]
        assert t.values == [pytest.approx(accuracy_of(genome))]
        assert t.user_attrs["val_accuracy"] == pytest.approx(accuracy_of(genome))
        assert "failure" not in t.user_attrs
    study = optuna.load_study(study_name="study", storage=url)
    assert study.user_attrs["nasbench"]["space"] == "resnet"
    assert study.user_attrs["nasbench"]["space_hash"] == space.hash
    assert study.user_attrs["nasbench"]["epochs"] == 1.0


def test_trial_seed_depends_on_search_seed_and_genome_only(space):
    a, b = space.sample(0), space.sample(1)
    assert trial_seed(0, a) == trial_seed(0, a)
    assert trial_seed(0, a) != trial_seed(0, b)
    assert trial_seed(0, a) != trial_seed(1, a)
    assert 0 <= trial_seed(123, a) < 2**31


def test_budget_below_one_is_refused(db, space):
    rec = recorder(db(), space)
    with pytest.raises(ConfigError, match="budget"):
        run_search(RandomStrategy(space, ACC), FakeEvaluator(), rec, budget=0, seed=0)
    assert rec.study.trials == []


def test_resume_continues_without_recording_a_genome_twice(db, space):
    url = db()
    first, _, _ = search(url, space, 3)
    assert len(first.new) == 3
    second, rec, ev = search(url, space, 7)
    assert second.resumed == 3 and len(second.new) == 4 and second.finished == 7
    hashes = [t.user_attrs["genome_hash"] for t in stored(url)]
    assert len(hashes) == 7 and len(set(hashes)) == 7
    assert len(ev.calls) == 4  # only new genomes were evaluated
    # running again with the budget already met does nothing
    third, _, ev3 = search(url, space, 7)
    assert third.new == [] and ev3.calls == [] and len(stored(url)) == 7
    assert [r.genome.hash for r in rec.history()] == hashes


def test_resume_seed_changes_the_sequence_but_is_deterministic():
    assert resume_seed(5, 0) == 5
    assert resume_seed(5, 3) == resume_seed(5, 3)
    assert len({resume_seed(5, n) for n in range(1, 20)}) == 19


class ScriptedStrategy(Strategy):
    """Asks a fixed list of genomes, cycling; records what it was told."""

    name = "scripted"

    def __init__(self, space, genomes):  # noqa: ANN001
        super().__init__(space, ACC, 0)
        self.genomes, self.i, self.told, self.replayed = list(genomes), 0, [], []

    def ask(self) -> Genome:
        g = self.genomes[self.i % len(self.genomes)]
        self.i += 1
        return g

    def tell(self, genome, evaluation):  # noqa: ANN001
        self.told.append((genome.hash, evaluation.values))

    def replay(self, genome, evaluation):  # noqa: ANN001
        self.replayed.append(genome.hash)


def test_repeated_genomes_are_told_the_stored_result_not_re_evaluated(db, space):
    a, b, c = (space.sample(i) for i in range(3))
    url = db()
    rec = recorder(url, space)
    strat = ScriptedStrategy(space, [a, a, b, a, b, c])
    ev = FakeEvaluator()
    summary = run_search(strat, ev, rec, budget=3, seed=0)
    assert [g.hash for g, _ in ev.calls] == [a.hash, b.hash, c.hash]
    assert [t.user_attrs["genome_hash"] for t in stored(url)] == [a.hash, b.hash, c.hash]
    assert summary.finished == 3
    assert strat.told[1] == (a.hash, (pytest.approx(accuracy_of(a)),))  # the repeat got a's stored result


def test_history_is_replayed_in_trial_order_before_the_first_ask(db, space):
    url = db()
    search(url, space, 4, evaluator=FakeEvaluator(fail_on={2}))
    order = [t.user_attrs["genome_hash"] for t in stored(url)]
    strat = ScriptedStrategy(space, [space.sample(100 + i) for i in range(5)])
    run_search(strat, FakeEvaluator(), recorder(url, space), budget=5, seed=0)
    assert strat.replayed == order  # failed trial included


def test_a_space_that_runs_out_stops_as_exhausted(db):
    from nasbench.space import Block, Choice, MacroSpace, Stage

    two = MacroSpace("two", stem_width=4, stages=[Stage("a", Block("conv_3x3"), width=Choice([4, 8]))])
    assert two.size == 2
    url = db()
    rec = recorder(url, two)
    summary = run_search(RandomStrategy(two, ACC, seed=0), FakeEvaluator(), rec, budget=5, seed=0)
    assert summary.exhausted and summary.finished == 2
    assert len(stored(url)) == 2


@pytest.mark.filterwarnings("ignore:The value nan:UserWarning")
def test_failed_evaluation_becomes_fail_trial_and_search_goes_on(db, space):
    url = db()
    summary, rec, ev = search(url, space, 5, evaluator=FakeEvaluator(fail_on={2}, nan_on={4}))
    assert summary.finished == 5 and len(ev.calls) == 5
    trials = stored(url)
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL,
                      TrialState.COMPLETE]
    assert trials[1].user_attrs["failure"] == "out of memory in call 2"
    assert trials[1].values is None
    assert trials[1].params == space.load_genome(trials[1].user_attrs["genome"]).values
    assert "non-finite" in trials[3].user_attrs["failure"]
    assert trials[3].user_attrs["val_accuracy"] is None  # NaN metric stored as null
    # failures count as finished and are replayed as failures on resume
    hist = rec.history()
    assert [r.evaluation.ok for r in hist] == [True, False, True, False, True]
    assert hist[1].evaluation.failure == "out of memory in call 2"
    assert best_trial(rec.study).state == TrialState.COMPLETE


def test_keyboard_interrupt_keeps_finished_trials_and_resumes(db, space):
    url = db()
    summary, _, ev = search(url, space, 6, evaluator=FakeEvaluator(interrupt_on=3))
    assert summary.interrupted
    assert len(summary.new) == 2 and len(ev.calls) == 3
    trials = stored(url)
    finished = [t for t in trials if "abandoned" not in t.user_attrs]
    assert len(finished) == 2 and all(t.state == TrialState.COMPLETE for t in finished)
    # the trial in flight was reserved; Ctrl-C gives it back (FAIL, abandoned: not in the history)
    given_back = [t for t in trials if "abandoned" in t.user_attrs]
    assert [t.state for t in given_back] == [TrialState.FAIL] and "stopped before finishing" in given_back[0].user_attrs["failure"]
    summary2, _, _ = search(url, space, 6)
    assert summary2.resumed == 2 and not summary2.interrupted
    hashes = [t.user_attrs["genome_hash"] for t in stored(url) if "abandoned" not in t.user_attrs]
    assert len(hashes) == 6 == len(set(hashes))


def test_journal_storage_records_and_resumes(tmp_path, space):
    url = f"journal:{tmp_path / 'study.log'}"
    search(url, space, 2)
    summary, _, _ = search(url, space, 4)
    assert summary.resumed == 2 and summary.finished == 4
    study = open_study(url, "study")
    assert len(study.trials) == 4
    assert all(t.state == TrialState.COMPLETE and "genome" in t.user_attrs for t in study.trials)
    assert (tmp_path / "study.log").is_file()


# -- the recorder and the storage ------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"epochs": 2.0},
    {"dataset": "other"},
    {"strategy": "tpe"},
])
def test_resuming_with_other_settings_is_refused(db, space, change):
    url = db()
    search(url, space, 2)
    with pytest.raises(StorageError, match="other settings"):
        recorder(url, space, settings={**SETTINGS, **change})
    assert len(stored(url)) == 2


def test_resuming_with_other_objectives_or_space_is_refused(db, space):
    url = db()
    search(url, space, 2)
    with pytest.raises(StorageError):
        recorder(url, space, Objectives.parse("accuracy,latency"))
    with pytest.raises(StorageError):
        recorder(url, load_space("nb201"))
    assert len(stored(url)) == 2
    assert len(optuna.get_all_study_summaries(url)) == 1


def test_space_source_may_differ_on_resume(db, space):
    url = db()
    recorder(url, space, settings={**SETTINGS, "space_source": "resnet"})
    rec = recorder(url, space, settings={**SETTINGS, "space_source": "./copy_of_resnet.py"})
    assert rec.name == "study"


def test_study_with_foreign_trials_is_refused(db, space):
    url = db()
    foreign = optuna.create_study(study_name="study", storage=url)
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(StorageError, match="not made by nasbench"):
        recorder(url, space)
    assert len(stored(url)) == 1


@pytest.mark.parametrize("url", [
    "redis://localhost/0",
    "nasbench.db",
    "sqlite://relative.db",
])
def test_open_storage_refuses_unsupported_urls(url):
    with pytest.raises(StorageError, match="unsupported storage URL"):
        open_storage(url)


def test_open_storage_refuses_missing_folders(tmp_path):
    with pytest.raises(StorageError, match="folder"):
        open_storage(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(StorageError):
        open_storage(f"sqlite:///{tmp_path}")  # a folder, not a file
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"journal:{tmp_path / 'missing' / 'x.log'}")
    assert list(tmp_path.iterdir()) == []


def test_unreachable_database_is_a_storage_error_without_the_password():
    with pytest.raises(StorageError) as info:
        open_storage("postgresql://alice:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_open_study_names_the_studies_there(db, space):
    url = db()
    search(url, space, 1, name="mine")
    assert open_study(url, "mine").study_name == "mine"
    with pytest.raises(StorageError, match="mine"):
        open_study(url, "other")


# -- ranking ---------------------------------------------------------------------------------


@pytest.fixture
def two_objective_study(db, space):
    """accuracy (max) + latency (min): trials 0 and 1 on the front, 2 and 3 dominated, 4 failed."""
    rec = recorder(db(), space, Objectives.parse("accuracy,latency"))
    import datetime as dt

    rows = [(0.9, 10.0), (0.8, 5.0), (0.7, 20.0), (0.9, 12.0), None]
    for i, vals in enumerate(rows):
        ev = Evaluation(vals, {}) if vals else Evaluation(None, {}, failure="x")
        rec.record(space.sample(i), ev, strategy="nsga2", started=dt.datetime.now())
    return rec.study


def test_pareto_top_and_best_on_two_objectives(two_objective_study):
    study = two_objective_study
    assert [t.number for t in pareto_trials(study)] == [0, 1]
    assert [t.number for t in top_trials(study, 3)] == [0, 3, 1]  # accuracy desc, ties by number
    assert [t.number for t in top_trials(study, 10)] == [0, 3, 1, 2]  # failed trial excluded
    assert best_trial(study).number == 0
    assert best_trial(study, 2).number == 2


def test_best_trial_refuses_failed_missing_and_empty(two_objective_study, db, space):
    with pytest.raises(StorageError, match="FAIL"):
        best_trial(two_objective_study, 4)
    with pytest.raises(StorageError, match="no trial 99"):
        best_trial(two_objective_study, 99)
    empty = recorder(db("empty.db"), space).study
    with pytest.raises(StorageError, match="no complete trial"):
        best_trial(empty)
    assert top_trials(empty) == [] and pareto_trials(empty) == []


def test_single_objective_ranking(db, space):
    url = db()
    summary, rec, _ = search(url, space, 6)
    accs = {r.number: r.evaluation.values[0] for r in summary.new}
    expect = sorted(accs, key=lambda n: -accs[n])
    assert [t.number for t in top_trials(rec.study, 3)] == expect[:3]
    assert [t.number for t in pareto_trials(rec.study)] == expect[:1]
    assert best_trial(rec.study).number == expect[0]


def test_ranking_ignores_trials_without_a_genome(db, space):
    url = db()
    study = optuna.create_study(study_name="plain", storage=url, direction="maximize")
    study.optimize(lambda t: 1.0 + t.suggest_float("x", 0, 1), n_trials=2)
    assert top_trials(study) == []
    with pytest.raises(StorageError):
        best_trial(study)
    with pytest.raises(StorageError, match="not a complete nasbench trial"):
        best_trial(study, 0)


# -- hard constraints ------------------------------------------------------------------------


def test_constraints_redraw_infeasible_genomes_without_recording_them(db, space):
    from nasbench.runner import Constraints

    bound = 12  # a "params" estimate: number of active decisions; depth 1 everywhere gives 10
    rec = recorder(db(), space)
    ev = FakeEvaluator()
    estimated = []

    def estimate(g):  # noqa: ANN001
        estimated.append(g)
        return {"params": len(g), "flops": 1, "latency_ms": 1.0}

    summary = run_search(RandomStrategy(space, ACC, seed=0), ev, rec, budget=3, seed=0,
                         constraints=Constraints(max_params=bound), estimate=estimate)
    assert summary.finished == 3
    assert len(estimated) > 3  # some draws were refused
    assert all(len(g) <= bound for g, _ in ev.calls)
    assert all(len(space.load_genome(t.user_attrs["genome"])) <= bound for t in rec.study.trials)
    assert len(rec.study.trials) == 3


def test_constraints_need_an_estimator_and_positive_bounds(db, space):
    from nasbench.runner import Constraints

    with pytest.raises(ConfigError, match="estimator"):
        run_search(RandomStrategy(space, ACC), FakeEvaluator(), recorder(db(), space), budget=1, seed=0,
                   constraints=Constraints(max_flops=1e6))
    with pytest.raises(ConfigError, match="positive"):
        Constraints(max_params=0)


def test_empty_foreign_study_with_other_directions_is_refused(db, space):
    """An empty study someone made with ``direction="minimize"`` must not be adopted for accuracy."""
    url = db()
    optuna.create_study(study_name="study", storage=url, direction="minimize")
    with pytest.raises(StorageError):
        rec = recorder(url, space)
        # if adopted anyway, the ranking would call the worst architecture the best:
        assert rec.study.directions == [optuna.study.StudyDirection.MAXIMIZE]
