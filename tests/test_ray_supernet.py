"""Tests for DARTS supernet training in one Ray actor: the same trials as the local run, resume
from the driver's checkpoint, retries after a killed worker, errors and fail-fast settings.

The supernet is a 3-node NB201 cell with C=4, N=1 on 8x8 digits (120 images per split, batch 32),
so an epoch takes a fraction of a second; the cost is Ray's start-up and each actor's imports.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from conftest import run_main

from nasbench._spaces import load_space
from nasbench.errors import ConfigError, TrainingError
from nasbench.objectives import Objectives
from nasbench.runner import DartsJob, RaySupernet, StudyRecorder
from nasbench.runner._darts_run import plot_alphas, run_darts
from nasbench.strategies._darts import DartsConfig, DartsSearch

ROOT = Path(__file__).resolve().parents[1]
SPACE_SOURCE = """
from nasbench.space import Cell, CellSpace

SPACE = CellSpace("tcli", [Cell("cell", {"none": "zero", "skip_connect": "skip", "nor_conv_3x3": "relu_conv_bn_3x3"},
                                 nodes=3)], skeleton="nb201", C=4, N=1)
"""
EPOCHS = 3
QUICK = ["--quiet", "search", "--strategy", "darts", "--space", "space.py", "--dataset", "digits", "--limit", "120",
         "--epochs", str(EPOCHS), "--retrain-epochs", "1", "--batch-size", "32", "--collapse-guard", "darts-minus",
         "--selection", "alpha"]
STUDY = "tcli-digits-darts"
#: What the CLI builds from QUICK (its flags' defaults are DartsConfig's).
CONFIG = DartsConfig(epochs=EPOCHS, batch_size=32, collapse_guard="darts-minus", selection="alpha")  # 3 epochs


def trials(folder: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder / 'nasbench.db'}").trials


def summary(ts: list[optuna.trial.FrozenTrial]) -> list[tuple]:
    """What must not depend on where the supernet trained: strategy, epoch, genome, values."""
    return [(t.user_attrs["strategy"], t.user_attrs.get("epoch"), t.user_attrs["genome_hash"], t.values,
             t.user_attrs.get("alpha")) for t in ts]


def workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "space.py").write_text(SPACE_SOURCE)
    return path


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:  # noqa: ANN001
    """The reference: ``--strategy darts`` without Ray, in a fresh interpreter on one torch thread."""
    folder = workdir(tmp_path_factory.mktemp("local"))
    script = textwrap.dedent(f"""
        import sys
        from nasbench.cli import main
        code = main({QUICK!r})
        print(code, "ray" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["0", "False"]  # exit 0, and Ray never imported
    return folder


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module's tests that need one (2 CPUs, no dashboard)."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


def job(tmp_path: Path, **changes) -> DartsJob:  # noqa: ANN003
    space = load_space(str(workdir(tmp_path) / "space.py"))
    return DartsJob(**{"space": space, "dataset": "digits", "config": CONFIG, "seed": 0, "limit": 120,
                       "device": "cpu", **changes})


def kill_worker(supernet: RaySupernet) -> None:
    """SIGKILL the process of the actor holding the supernet, as the OOM killer would."""
    pid = supernet.apply(lambda search: os.getpid())  # a lambda travels by value: workers need not import tests
    os.kill(pid, signal.SIGKILL)


# -- no Ray needed -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cpus_per_trial": 0}, "--cpus-per-trial"),
    ({"gpus_per_trial": -1}, "--gpus-per-trial"),
    ({"gpus_per_trial": 1.5}, "whole number"),
    ({"max_retries": -1}, "--max-retries"),
])
def test_bad_settings_are_refused_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RaySupernet(lambda: None, **kwargs)


@pytest.mark.parametrize(("extra", "message"), [
    (["--cpus-per-trial", "2"], "--cpus-per-trial needs --executor ray"),
    (["--workers", "2"], "--workers needs --executor ray"),
    (["--executor", "ray", "--workers", "2"], "--workers does not apply to DARTS"),
], ids=["ray-flag-without-ray", "workers-without-ray", "workers-with-ray"])
def test_executor_flags_that_do_not_apply_are_refused_before_the_study(extra, message, tmp_path, monkeypatch,
                                                                       capsys) -> None:  # noqa: ANN001
    monkeypatch.chdir(workdir(tmp_path))
    code, _, err = run_main([*QUICK, *extra], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "nasbench.db").exists()


@pytest.mark.slow
def test_local_darts_search_never_imports_ray(local_run: Path) -> None:
    ts = trials(local_run)  # the fixture asserted `"ray" not in sys.modules` after the run
    assert [t.user_attrs["strategy"] for t in ts] == ["darts"] * EPOCHS + ["darts-retrain"]


# -- with Ray ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_gpus_per_trial_on_a_machine_without_gpus_fails_fast_with_one_line(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    ray = pytest.importorskip("ray")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.chdir(workdir(tmp_path))
    was_running = ray.is_initialized()  # run alone, the command starts its own Ray (and must stop it)
    code, _, err = run_main([*QUICK, "--executor", "ray", "--gpus-per-trial", "1"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "--gpus-per-trial 1 but" in lines[0] and "has no GPUs" in lines[0]
    assert not (tmp_path / "nasbench.db").exists()  # refused before the study is made
    assert ray.is_initialized() == was_running  # a Ray it started is stopped again


@pytest.mark.slow
def test_cli_ray_darts_records_the_same_trials_as_the_local_run(ray_cluster, local_run, tmp_path, monkeypatch,
                                                                capsys) -> None:  # noqa: ANN001
    folder = workdir(tmp_path / "ray")
    monkeypatch.chdir(folder)
    code, out, err = run_main([*QUICK, "--executor", "ray", "--cpus-per-trial", "1", "--max-retries", "1"], capsys)
    assert code == 0, err
    ray_trials, local_trials = trials(folder), trials(local_run)
    assert [t.user_attrs.get("epoch") for t in ray_trials] == [*range(EPOCHS), None]
    # One torch thread on both sides and seeded everything: the same genomes, accuracies and alphas.
    assert summary(ray_trials) == summary(local_trials)
    assert ray_trials[-1].user_attrs["genome_hash"] == ray_trials[EPOCHS - 1].user_attrs["genome_hash"]
    best, reference = (json.loads((f / "best.json").read_text()) for f in (folder, local_run))
    for volatile in ("train_seconds", "driver", "driver_incarnation"):
        best["metrics"].pop(volatile, None)
        reference["metrics"].pop(volatile, None)
    assert best == reference
    assert (folder / "best_alphas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = folder / ".nasbench" / f"{STUDY}.darts.pt"
    assert checkpoint.is_file()  # written by the driver from the state the actor sent back
    assert ray_cluster.is_initialized()  # it did not start this Ray, so it must not stop it

    # The checkpoint is an ordinary DARTS checkpoint: the same command resumes in process, adding nothing.
    code, _, err = run_main(QUICK, capsys)
    assert code == 0, err
    assert summary(trials(folder)) == summary(ray_trials)


@pytest.mark.slow
def test_resume_after_a_killed_worker_continues_the_epoch_count(ray_cluster, local_run, tmp_path, caplog) -> None:  # noqa: ANN001
    rec = StudyRecorder(f"sqlite:///{tmp_path / 'study.db'}", STUDY, load_space(str(workdir(tmp_path) / "space.py")),
                        Objectives.parse("accuracy"), {"strategy": "darts"})
    ck = tmp_path / "ck" / "darts.pt"

    # A partial run: the worker is killed after epoch 0 and no retry is allowed.
    first = RaySupernet(job(tmp_path), max_retries=0)
    try:
        with pytest.raises(TrainingError) as err:
            run_darts(first, rec, Objectives.parse("accuracy"), checkpoint=ck, on_epoch=lambda r: kill_worker(first))
    finally:
        first.shutdown()
    message = str(err.value)
    assert "\n" not in message and "died 1 time(s) during epoch 1 (max_retries=0)" in message
    assert [t.user_attrs["epoch"] for t in rec.study.get_trials()] == [0]  # the study keeps epoch 0
    assert DartsSearch(load_space(str(tmp_path / "space.py")), _digits(), CONFIG).load(ck)  # a local checkpoint

    # The same search again: resumes at epoch 1 from the driver's file; a worker killed once more is replaced.
    caplog.set_level(logging.WARNING, logger="nasbench.runner._ray_supernet")
    second = RaySupernet(job(tmp_path), max_retries=1)
    kills = []

    def kill_once(report) -> None:  # noqa: ANN001
        if not kills:
            kills.append(report.epoch)
            kill_worker(second)

    try:
        outcome = run_darts(second, rec, Objectives.parse("accuracy"), checkpoint=ck, on_epoch=kill_once)
        assert [r.epoch for r in second.history] == list(range(EPOCHS))  # the mirror holds every epoch
        png = plot_alphas(second, tmp_path / "alphas.png")
    finally:
        second.shutdown()
    assert outcome.resumed_epoch == 1 and kills == [1]
    assert "restarting it from the last finished epoch" in caplog.text
    got = [t for t in rec.study.get_trials() if t.user_attrs["strategy"] == "darts"]
    assert [t.user_attrs["epoch"] for t in got] == list(range(EPOCHS))
    reference = [t for t in trials(local_run) if t.user_attrs["strategy"] == "darts"]
    assert summary(got) == summary(reference)  # interrupted, resumed and retried: the uninterrupted genomes
    assert png.stat().st_size > 1000


def _digits():  # noqa: ANN202
    from nasbench.data import load_dataset

    return load_dataset("digits", seed=0, limit=120)


@pytest.mark.slow
def test_errors_of_the_search_come_back_as_themselves(ray_cluster, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="cell space"):
        RaySupernet(job(tmp_path, space="resnet")).start()

    supernet = RaySupernet(job(tmp_path))
    try:
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a checkpoint")
        with pytest.raises(ConfigError, match="cannot read checkpoint .*bad.pt"):
            supernet.load(bad)
        other = tmp_path / "other.pt"
        DartsSearch(load_space(str(tmp_path / "space.py")), _digits(), DartsConfig(epochs=5, batch_size=32, selection="alpha")).save(other)
        with pytest.raises(ConfigError, match="other hyperparameters"):
            supernet.load(other)
        report = supernet.train_epoch()  # the actor survived the errors
        assert report.epoch == 0 and supernet.epoch == 1
    finally:
        supernet.shutdown()


def test_perturbation_selection_runs_in_the_actor_like_in_process(ray_cluster, tmp_path) -> None:  # noqa: ANN001
    from nasbench.hardware import torch_threads

    config = DartsConfig(epochs=1, batch_size=32, collapse_guard="darts-minus", selection="perturbation",
                         projection_tune_epochs=1)
    rec = StudyRecorder(f"sqlite:///{tmp_path / 'study.db'}", STUDY, load_space(str(workdir(tmp_path) / "space.py")),
                        Objectives.parse("accuracy"), {"strategy": "darts"})
    supernet = RaySupernet(job(tmp_path, config=config), cpus_per_trial=1)
    try:
        outcome = run_darts(supernet, rec, Objectives.parse("accuracy"), checkpoint=tmp_path / "ck.pt")
    finally:
        supernet.shutdown()
    with torch_threads(1):
        local = DartsSearch(load_space(str(tmp_path / "space.py")), _digits(), config)
        local.run()
    got = [t for t in rec.study.get_trials() if t.user_attrs["strategy"] == "darts"]
    assert [t.user_attrs.get("selection_decision") for t in got] == \
        [None] + [f"{r.extra['decision']}={r.extra['choice']}" for r in local.history[1:]]
    assert outcome.genome == local.result.genome
    resumed = DartsSearch(load_space(str(tmp_path / "space.py")), _digits(), config)
    assert resumed.load(tmp_path / "ck.pt") and resumed.finished and resumed.net.fixed_ops == local.net.fixed_ops
