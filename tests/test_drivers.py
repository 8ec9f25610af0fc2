"""Many drivers, one study: reservations, heartbeats, a killed driver's trial re-run, supernet leases.

The end-to-end cases start real ``nasbench search`` processes on one study (SQLite here, PostgreSQL
in ``test_postgres.py``), SIGKILL one of them while it trains, and check that together they
finish exactly ``--budget`` trials with no genome trained twice.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nasbench._spaces import load_space
from nasbench.cli import main
from nasbench.objectives import Evaluation, Objectives
from nasbench.runner import StudyRecorder, run_search
from nasbench.runner._drivers import (
    HEARTBEAT_KEY,
    STALE_BEATS,
    driver_alive,
    heartbeat_seconds,
    incarnation,
)
from nasbench.runner._study import ABANDONED_KEY, LEASE_KEY
from nasbench.strategies import create_strategy
from tests.test_cli import cli_cmd, cli_env

ACC = Objectives.parse("accuracy")


@pytest.fixture(scope="module")
def space():  # noqa: ANN201
    return load_space("resnet")


def recorder(url: str, space, name: str = "s") -> StudyRecorder:  # noqa: ANN001
    return StudyRecorder(url, name, space, ACC, {"strategy": "random"})


def counted(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=url)
    return [t for t in study.trials if ABANDONED_KEY not in t.user_attrs]


# -- reservations, in one process --------------------------------------------------------------------

def test_a_genome_reserved_by_a_live_driver_is_taken_and_the_budget_is_shared(tmp_path, space) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 's.db'}"
    a, b = recorder(url, space), recorder(url, space)
    g1, g2, g3 = (space.sample(__import__("random").Random(i)) for i in range(3))
    try:
        first = a.reserve(g1, 2, strategy="random")
        assert isinstance(first, int)
        assert b.reserve(g1, 2, strategy="random") == "taken"  # live reservation of the same genome
        second = b.reserve(g2, 2, strategy="random")
        assert isinstance(second, int)
        assert a.reserve(g3, 2, strategy="random") == "full"  # two live reservations fill a budget of 2
        assert a.live_reservations() == 2
        a.record(g1, Evaluation((0.5,), {"val_accuracy": 0.5}), strategy="random",
                 started=__import__("datetime").datetime.now(), reservation=first)
        assert b.reserve(g1, 3, strategy="random") == "taken"  # finished genomes are never trained again
        trials = optuna.load_study(study_name="s", storage=url).trials
        assert trials[0].state == TrialState.COMPLETE and trials[0].values == [0.5]  # the reservation became it
        assert len(trials) == 2  # the pre-check refused the clashes without writing a trial
    finally:
        a.close()
        b.close()
    # close() gave b's unfinished reservation back
    assert [t.state for t in optuna.load_study(study_name="s", storage=url).trials] == [TrialState.COMPLETE,
                                                                                          TrialState.FAIL]


def test_a_dead_drivers_reservation_is_reclaimed(tmp_path, space, monkeypatch) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 's.db'}"
    rec = recorder(url, space)
    g = space.sample(__import__("random").Random(0))
    trial_id = rec.reserve(g, 5, strategy="random")
    storage = rec.study._storage
    rec._heartbeat.remove(trial_id)  # pretend this reservation belongs to another machine's driver
    storage.set_trial_user_attr(trial_id, "driver", "elsewhere:4242")
    assert rec.reclaim_stale() == []  # its heartbeat is fresh: alive
    old = time.time() - (STALE_BEATS + 1) * heartbeat_seconds()
    storage.set_trial_user_attr(trial_id, HEARTBEAT_KEY, old)
    assert [x.hash for x in rec.reclaim_stale()] == [g.hash]
    t = optuna.load_study(study_name="s", storage=url).trials[0]
    assert t.state == TrialState.FAIL and "elsewhere:4242 stopped (no heartbeat for" in t.user_attrs[ABANDONED_KEY]
    assert rec.history() == []  # abandoned reservations are not trials of the search
    rec.close()


def test_driver_liveness_on_this_machine_asks_the_process() -> None:
    me = socket.gethostname()
    assert driver_alive(f"{me}:{os.getpid()}", None)
    proc = subprocess.Popen(["sleep", "30"])
    old = time.time() - (STALE_BEATS + 1) * heartbeat_seconds()
    try:
        assert driver_alive(f"{me}:{proc.pid}", time.time())
        assert not driver_alive(f"{me}:{proc.pid}", old)  # a live PID with a stale heartbeat: the PID was reused
    finally:
        proc.kill()
        proc.wait()
    assert not driver_alive(f"{me}:{proc.pid}", time.time())  # dead however fresh its heartbeat
    assert driver_alive("other-host:1", time.time())
    assert not driver_alive("other-host:1", old)
    # this very host:pid with another incarnation: a restarted container's dead predecessor
    assert driver_alive(f"{me}:{os.getpid()}", old, token=incarnation())
    assert not driver_alive(f"{me}:{os.getpid()}", time.time(), token="an-older-process")


@pytest.mark.parametrize("name", ["evolution", "tpe", "random"])
def test_run_search_learns_from_another_drivers_trials(tmp_path, space, name) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 's.db'}"
    other = recorder(url, space)
    g = space.sample(__import__("random").Random(7))
    trial = other.reserve(g, 10, strategy="random")
    other.record(g, Evaluation((0.99,), {"val_accuracy": 0.99}), strategy="random",
                 started=__import__("datetime").datetime.now(), reservation=trial)
    other.close()
    options = {"population_size": 5, "tournament_size": 1} if name == "evolution" else {}
    strategy = create_strategy(name, space, ACC, 0, **options)
    rec = recorder(url, space)
    summary = run_search(strategy, lambda genome, seed: Evaluation((0.1,), {"val_accuracy": 0.1}), rec, budget=3,
                         seed=0, history=[])  # as if it started before the other driver's trial existed
    assert summary.finished == 3 and len(summary.new) == 2 and summary.others == 1
    if name == "evolution":  # the other driver's trial joined this driver's population
        assert g.hash in {genome.hash for genome, _ in strategy.population}
    else:  # ... or this driver's sampler history (Optuna's mirror study)
        assert [t.values for t in strategy._study.trials if t.params == g.values] == [[0.99]]


# -- many processes --------------------------------------------------------------------------------

def _rows(db: Path) -> list[tuple]:
    """(number, state, genome_hash, driver, abandoned) of every trial, read without optuna."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            rows = con.execute("SELECT trial_id, number, state FROM trials").fetchall()
            attrs = con.execute("SELECT trial_id, key, value_json FROM trial_user_attributes").fetchall()
    except sqlite3.OperationalError:
        return []
    by = {}
    for tid, key, value in attrs:
        by.setdefault(tid, {})[key] = value.strip('"')
    return [(n, s, by.get(tid, {}).get("genome_hash"), by.get(tid, {}).get("driver"),
             by.get(tid, {}).get(ABANDONED_KEY)) for tid, n, s in rows]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_three_drivers_one_killed_finish_exactly_the_budget(tmp_path) -> None:  # noqa: ANN001
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    budget = 7
    args = ["--quiet", "search", "--strategy", "random", "--budget", str(budget), "--epochs", "2", "--limit", "300",
            "--storage", url, "--study", "many", "--seed", "3"]
    env = {**cli_env(), "NASBENCH_HEARTBEAT_SECONDS": "1"}
    procs = [subprocess.Popen(cli_cmd(*args, "--out", str(tmp_path / f"best{i}.json")), cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    victim = procs[0]
    me = socket.gethostname()
    deadline = time.monotonic() + 240
    while not any(r[1] == "RUNNING" and r[3] == f"{me}:{victim.pid}" for r in _rows(db)):
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the victim never reserved a trial"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)  # mid-trial: its reservation is RUNNING
    victim.wait()
    for p in procs[1:]:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]
    rows = _rows(db)
    finished = [r for r in rows if r[4] is None and r[1] in ("COMPLETE", "FAIL")]
    assert [r[1] for r in finished] == ["COMPLETE"] * budget, rows
    assert len({r[2] for r in finished}) == budget  # no genome trained twice
    assert not [r for r in rows if r[1] == "RUNNING"]
    killed = [r for r in rows if r[3] == f"{me}:{victim.pid}" and r[4] is not None and "stopped" in r[4]]
    assert killed, rows  # the killed driver's reservation was abandoned ...
    redone = [r for r in finished if r[2] == killed[0][2]]
    assert redone and redone[0][3] != f"{me}:{victim.pid}"  # ... and re-run by another driver
    # the survivors each wrote the study's best
    assert (tmp_path / "best1.json").exists() and (tmp_path / "best2.json").exists()


# -- supernets: one driver per study ----------------------------------------------------------------

def test_a_second_supernet_driver_is_refused_naming_the_first(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("nasbench.runner._study.LEASE_SETTLE_SECONDS", 0.05)
    url = f"sqlite:///{tmp_path / 's.db'}"
    holder = subprocess.Popen(["sleep", "3600"])  # a live process on this machine holds the lease
    common = ["--quiet", "search", "--limit", "64", "--storage", url, "--study", "one"]
    try:
        for strategy, extra in (("darts", ["--epochs", "1", "--retrain-epochs", "0", "--selection", "alpha"]),
                                ("ofa", ["--ofa-phases", "full:1", "--budget", "1"])):
            name = f"one-{strategy}"
            args = [*common[:-1], name, "--strategy", strategy, *extra]
            assert main(args) == 0, capsys.readouterr().err  # creates the study; the lease is given back
            storage = optuna.storages.RDBStorage(url)
            sid = storage.get_study_id_from_name(name)
            assert storage.get_study_user_attrs(sid).get(LEASE_KEY) is None
            storage.set_study_user_attr(sid, LEASE_KEY, {"driver": f"{socket.gethostname()}:{holder.pid}",
                                                         "token": "x", HEARTBEAT_KEY: time.time()})
            capsys.readouterr()
            assert main(args) == 2, (strategy, storage.get_study_user_attrs(sid).get(LEASE_KEY))
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"PID {holder.pid}" in err and socket.gethostname() in err, err
        holder.kill()
        holder.wait()
        assert main(args) == 0, capsys.readouterr().err  # the holder died: its lease is taken over
    finally:
        holder.kill()
        holder.wait()


def test_a_reservation_declared_dead_while_training_never_counts_twice(tmp_path, space) -> None:  # noqa: ANN001
    import datetime as dt

    url = f"sqlite:///{tmp_path / 's.db'}"
    slow, fast = recorder(url, space), recorder(url, space)
    g = space.sample(__import__("random").Random(3))
    mine = slow.reserve(g, 2, strategy="random")
    slow._heartbeat.remove(mine)
    assert fast._abandon(fast.study._storage, mine, "driver stopped (no heartbeat for 99 s)")  # thought dead
    theirs = fast.reserve(g, 2, strategy="random")  # ... so its genome is trained again elsewhere
    fast.record(g, Evaluation((0.7,), {"val_accuracy": 0.7}), strategy="random", started=dt.datetime.now(),
                reservation=theirs)
    number = slow.record(g, Evaluation((0.6,), {"val_accuracy": 0.6}), strategy="random", started=dt.datetime.now(),
                         reservation=mine)  # the slow driver was alive after all and finishes
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert trials[number].state == TrialState.FAIL and "declared dead" in trials[number].user_attrs[ABANDONED_KEY]
    assert trials[number].user_attrs["val_accuracy"] == 0.6  # its result is kept, as a trial that does not count
    assert [r.evaluation.values for r in slow.history()] == [(0.7,)]  # the genome counts once
    slow.close()
    fast.close()


@pytest.mark.timeout(60)
def test_a_budget_filled_by_unreadable_trials_stops_instead_of_spinning(tmp_path, space, caplog) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 's.db'}"
    rec = recorder(url, space)
    storage = rec.study._storage
    g = space.sample(__import__("random").Random(0))
    tid = rec.reserve(g, 5, strategy="random")
    rec.record(g, Evaluation((0.5,), {"val_accuracy": 0.5}), strategy="random",
               started=__import__("datetime").datetime.now(), reservation=tid)
    storage.set_study_user_attr(rec.study._study_id, "unused", 1)
    # a trial of an older version of the space: it counts in the study but its genome no longer loads
    import sqlite3

    with sqlite3.connect(tmp_path / "s.db") as con:
        con.execute("UPDATE trial_user_attributes SET value_json = '\"{}\"' WHERE key = 'genome'")
    rec2 = recorder(url, space)
    strategy = create_strategy("random", space, ACC, 0)
    t0 = time.monotonic()
    summary = run_search(strategy, lambda genome, seed: Evaluation((0.1,), {"val_accuracy": 0.1}), rec2, budget=1,
                         seed=0)
    assert time.monotonic() - t0 < 30
    assert summary.new == [] and "fill the budget" in caplog.text
    rec.close()
