"""Tests for the Ray Tune + ASHA executor: early-stopped trials recorded once as PRUNED, resume, CLI flags."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from conftest import run_main
from optuna.trial import TrialState
from torch import nn

from nasbench._spaces import load_space
from nasbench.data import load_dataset
from nasbench.errors import ConfigError
from nasbench.objectives import Evaluation, Objectives
from nasbench.runner import (
    CURVE_KEY,
    PRUNED_KEY,
    AshaRecorder,
    TrainingEvaluator,
    TuneExecutor,
    run_search,
    top_trials,
)
from nasbench.runner._tune import _prime_rungs
from nasbench.strategies import RandomStrategy
from nasbench.train import TrainConfig, epoch_hook, train_model

ACC = Objectives.parse("accuracy")

#: A space of 64 small networks that learn 8x8 digits in a fraction of a second per epoch.
SPACE_SOURCE = '''
from nasbench.space import Block, Choice, MacroSpace, Stage

SPACE = MacroSpace(
    "tune_test_space",
    stem_width=Choice([4, 8]),
    stages=[
        Stage("s1", Block.choice({"conv_3x3": {}, "dwsep_conv": {"kernel_size": Choice([3, 5])}}),
              width=Choice([8, 16]), depth=Choice([1, 2]), stride=2),
        Stage("s2", Block("mbconv", kernel_size=Choice([3, 5]), expansion=Choice([2, 4])), width=16, stride=2),
    ],
)
'''


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tune_space") / "tune_space.py"
    path.write_text(SPACE_SOURCE)
    return str(path)


def evaluator(space_file: str, epochs: float = 3, objectives: Objectives = ACC) -> TrainingEvaluator:
    train = TrainConfig(epochs=epochs, batch_size=16, optimizer="adamw", lr=1e-2)
    return TrainingEvaluator(space=space_file, dataset="digits", train=train, objectives=objectives, limit=300,
                             device="cpu")


@pytest.fixture
def db(tmp_path, _empty_db):
    shutil.copyfile(_empty_db, tmp_path / "tune.db")
    return f"sqlite:///{tmp_path / 'tune.db'}"


class TellingStrategy(RandomStrategy):
    """Random search that remembers what it was told."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.told: list[Evaluation] = []

    def tell(self, genome, evaluation):  # noqa: ANN001, ANN201
        self.told.append(evaluation)
        super().tell(genome, evaluation)


# -- without Ray ---------------------------------------------------------------------------------------


def test_epoch_hook_sees_every_epoch_inside_its_block_only():
    data = load_dataset("digits", seed=0, limit=96)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    seen, also = [], []
    with epoch_hook(lambda i, m: seen.append((i, m["val_accuracy"]))):
        result = train_model(model, data, TrainConfig(epochs=3, batch_size=32), device="cpu",
                             on_epoch=lambda i, m: also.append((i, m["val_accuracy"])))
    assert [i for i, _ in seen] == [0, 1, 2] and seen == also
    assert seen[-1][1] == result.val_accuracy
    train_model(model, data, TrainConfig(epochs=1, batch_size=32), device="cpu")
    assert len(seen) == 3  # outside the block the hook is gone


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"scheduler": "hyperband"}, "unknown Tune scheduler"),
    ({"grace_epochs": 3}, "needs more --epochs"),
    ({"grace_epochs": 0}, "--grace-epochs must be"),
    ({"reduction_factor": 1}, "--reduction-factor must be > 1"),
])
def test_bad_asha_settings_are_refused_before_ray_starts(space_file, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TuneExecutor(evaluator(space_file), **kwargs)


def test_asha_refuses_evaluators_that_do_not_train_or_have_several_objectives(space_file):
    with pytest.raises(ConfigError, match="does not train"):
        TuneExecutor(lambda genome, seed: Evaluation((0.5,), {"val_accuracy": 0.5}))
    with pytest.raises(ConfigError, match="Pareto front"):
        TuneExecutor(evaluator(space_file, objectives=Objectives.parse("accuracy,params")))
    assert TuneExecutor(evaluator(space_file, epochs=2.5)).max_epochs == 3  # a partial epoch is a rung step


def test_recorder_writes_pruned_trials_with_their_curve_and_replays_them(space_file, db):
    space = load_space(space_file)
    g1, g2, g3 = (space.sample(s) for s in (1, 2, 3))
    rec = AshaRecorder(db, "asha", space, ACC, {"strategy": "random"})
    now = dt.datetime.now()
    done = Evaluation((0.6,), {"val_accuracy": 0.6, "seed": 1, CURVE_KEY: [0.2, 0.4, 0.6]})
    stopped = Evaluation((0.9,), {"val_accuracy": 0.9, "seed": 2, CURVE_KEY: [0.9], PRUNED_KEY: 1})
    assert [rec.record(g, e, strategy="random", started=now) for g, e in
            [(g1, done), (g2, stopped), (g3, Evaluation((0.3,), {"val_accuracy": 0.3}))]] == [0, 1, 2]
    trials = optuna.load_study(study_name="asha", storage=db).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert trials[0].intermediate_values == {1: 0.2, 2: 0.4, 3: 0.6} and trials[0].values == [0.6]
    assert trials[1].intermediate_values == {1: 0.9} and trials[1].values is None
    assert trials[1].user_attrs[PRUNED_KEY] == 1 and trials[1].user_attrs["genome_hash"] == g2.hash
    assert trials[2].intermediate_values == {}  # no curve: recorded as the base recorder would
    # A 1-epoch accuracy never wins against fully trained trials, however high.
    assert [t.number for t in top_trials(rec.study, 5)] == [0, 2]
    history = AshaRecorder(db, "asha", space, ACC, {"strategy": "random"}).history()
    assert [(r.number, r.genome, r.evaluation.values) for r in history] == [(0, g1, (0.6,)), (1, g2, (0.9,)),
                                                                            (2, g3, (0.3,))]
    assert history[1].evaluation.metrics[PRUNED_KEY] == 1 and history[1].evaluation.ok


def test_stored_curves_seed_ashas_rungs():
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.schedulers.trial_scheduler import TrialScheduler

    def first_decision(curves):  # noqa: ANN001, ANN202
        asha = ASHAScheduler(time_attr="epochs_done", metric="acc", mode="max", max_t=9, grace_period=1,
                             reduction_factor=3)
        _prime_rungs(asha, curves)
        trial = SimpleNamespace(trial_id="new")
        asha.on_trial_add(None, trial)
        return asha.on_trial_result(None, trial, {"epochs_done": 1, "acc": 0.5})

    assert first_decision([]) == TrialScheduler.CONTINUE  # an empty rung lets anyone through
    assert first_decision([[0.7, 0.8], [0.9], [0.6, 0.7, 0.8]]) == TrialScheduler.STOP
    assert first_decision([[0.1], [0.2], [0.3]]) == TrialScheduler.CONTINUE


def test_scheduler_flags_need_ray_and_asha(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    for flags, message in [(["--scheduler", "asha"], "--scheduler needs --executor ray"),
                           (["--executor", "ray", "--grace-epochs", "2"], "--grace-epochs needs --scheduler asha"),
                           (["--executor", "ray", "--scheduler", "asha", "--strategy", "darts"], "supernet")]:
        code, _, err = run_main(["--quiet", "search", "--budget", "1", "--storage", url, *flags], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "x.db").exists()  # refused before the study is touched


# -- with a running Ray --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (2 CPUs, no dashboard)."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        try:
            yield ray
        finally:
            ray.shutdown()


def asha_search(url: str, space_file: str, budget: int, workers: int = 2):  # noqa: ANN201
    space = load_space(space_file)
    ev = evaluator(space_file)
    recorder = AshaRecorder(url, "asha", space, ACC, {"strategy": "random"})
    history = recorder.history()
    executor = TuneExecutor(ev, workers=workers, grace_epochs=1, reduction_factor=3)
    executor.prime(history)
    strategy = TellingStrategy(space, ACC, seed=len(history))
    summary = run_search(strategy, ev, recorder, budget=budget, seed=0, history=history, executor=executor)
    return summary, strategy, optuna.load_study(study_name="asha", storage=url).trials


@pytest.mark.slow
def test_asha_search_records_each_trial_once_stops_weak_ones_and_resumes(ray_local, space_file, db):
    summary, strategy, trials = asha_search(db, space_file, budget=8)
    assert summary.finished == len(summary.new) == len(trials) == 8
    assert len({t.user_attrs["genome_hash"] for t in trials}) == 8
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned and complete and len(pruned) + len(complete) == 8
    for t in complete:  # trained all 3 epochs; the value is the last epoch's accuracy
        assert sorted(t.intermediate_values) == [1, 2, 3] and t.user_attrs["epochs"] == 3.0
        assert t.values[0] == t.intermediate_values[3] == t.user_attrs["val_accuracy"]
    for t in pruned:  # stopped at a rung, before the last epoch
        assert t.values is None and sorted(t.intermediate_values) == list(range(1, t.user_attrs[PRUNED_KEY] + 1))
        assert t.user_attrs[PRUNED_KEY] < 3 and t.user_attrs["epochs"] < 3.0
    # The strategy heard of every trial, a stopped one as its accuracy where it stopped.
    assert len(strategy.told) == 8 and all(e.ok for e in strategy.told)
    told_pruned = sorted(e.values[0] for e in strategy.told if PRUNED_KEY in e.metrics)
    assert told_pruned == sorted(t.intermediate_values[t.user_attrs[PRUNED_KEY]] for t in pruned)

    summary, _, trials = asha_search(db, space_file, budget=10)  # resume: only the 2 missing trials run
    assert summary.resumed == 8 and len(summary.new) == 2 and len(trials) == 10
    assert len({t.user_attrs["genome_hash"] for t in trials}) == 10
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


@pytest.mark.slow
def test_cli_asha_search_then_a_run_without_it_is_refused(ray_local, space_file, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    common = ["--quiet", "search", "--space", space_file, "--strategy", "random", "--epochs", "2", "--limit", "200",
              "--optimizer", "adamw", "--lr", "1e-2", "--batch-size", "16", "--storage", url, "--study", "s",
              "--out", str(tmp_path / "best.json")]
    code, out, err = run_main([*common, "--budget", "3", "--executor", "ray", "--scheduler", "asha"], capsys)
    assert code == 0, err
    assert "ASHA stopped" in out and Path(tmp_path / "best.json").is_file()
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.trials) == 3 and study.user_attrs["nasbench"]["scheduler"] == "asha"
    assert all(t.intermediate_values for t in study.trials)
    assert ray_local.is_initialized()  # it did not start this Ray, so it must not stop it
    # The same study without ASHA would mix pruned and fully trained trials: refused in one line.
    code, _, err = run_main([*common, "--budget", "4"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "scheduler: stored 'asha'" in err

