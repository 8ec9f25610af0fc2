"""Tests for the ``nasbench`` command line: search, resume, export, train, trials, dashboard, errors.

Fast tests call ``nasbench.cli.main`` in-process; ``slow`` ones run real subprocesses
(acceptance run with default flags, SIGKILL and Ctrl-C resumes, the dashboard server).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from conftest import run_main

from nasbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
#: A user's space file with tiny networks, so in-process searches take well under a second per trial.
SPACE_SOURCE = """
from nasbench.space import Block, Choice, MacroSpace, Stage

SPACE = MacroSpace(
    "tiny_cli",
    stem_width=Choice([4, 8]),
    stages=[
        Stage("s1", Block.choice(["conv_3x3", "dwsep_conv"]), width=Choice([8, 16]), depth=Choice([1, 2]), stride=2),
        Stage("s2", Block("conv_3x3"), width=Choice([8, 16]), stride=2),
    ],
)
"""
STUDY = "tiny_cli-digits-random"


# -- helpers ---------------------------------------------------------------------------------


def quick(made: Path, **changes: str) -> list[str]:
    """``search`` with the quick flags (3 trials of 1 epoch on 100 digits, tiny space); ``budget="4"`` changes one."""
    flags = {"strategy": "random", "budget": "3", "epochs": "1", "limit": "100", "space": str(made / "space.py")}
    flags.update(changes)
    return ["search"] + [x for k, v in flags.items() for x in (f"--{k.replace('_', '-')}", v)]



def cli_env() -> dict[str, str]:
    """The environment of CLI subprocesses: this checkout importable, one torch thread.

    One thread because these tests share two cores with pytest and possibly other jobs, and
    oversubscribed OpenMP threads spin: a trial then runs several times slower.
    """
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["COLUMNS"] = "200"
    env.pop("NO_COLOR", None)
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "nasbench.cli", *args]


def run_cli(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """``nasbench ARGS`` in a subprocess."""
    return subprocess.run(cli_cmd(*args), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    """Start ``nasbench ARGS`` with SIGINT at its default (so Python turns it into KeyboardInterrupt)."""
    return subprocess.Popen(cli_cmd(*args), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


def complete_count(db: Path) -> int:
    """COMPLETE trials in an SQLite study file, read without optuna (safe while a search writes)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet, or locked
        return 0


def wait_for(cond, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (code {proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def snapshot(url: str) -> dict[str, tuple[int, ...]]:
    """Study name -> trial numbers, to check that a command left the storage untouched."""
    storage = optuna.storages.RDBStorage(url)
    try:
        return {s.study_name: tuple(t.number for t in optuna.load_study(study_name=s.study_name, storage=storage).trials)
                for s in optuna.get_all_study_summaries(storage)}
    finally:
        storage.remove_session()


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).trials


def build_and_run(path: Path):  # noqa: ANN201
    """Rebuild an exported architecture the way a user does and run a digits-shaped batch through it."""
    import torch

    import nasbench

    model = nasbench.load_architecture(path).build()
    model.eval()
    with torch.no_grad():
        return model(torch.zeros(2, 1, 8, 8))


# -- a real study, made once per module ------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _restore_process_state():
    """In-process training with one torch thread (see ``cli_env``); logger levels that ``main``
    sets and the torch thread count are restored after this module."""
    import logging

    import torch

    names = ["optuna", "ray", "filelock", "matplotlib", "PIL", "nasbench.train", "nasbench.data",
             "nasbench.benchmarks"]
    levels = {n: logging.getLogger(n).level for n in names}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A folder with ``space.py`` and ``nasbench.db`` holding 3 complete trials of a quick search."""
    folder = tmp_path_factory.mktemp("made")
    (folder / "space.py").write_text(SPACE_SOURCE)
    old = os.getcwd()
    os.chdir(folder)
    try:
        code = main(["--quiet", *quick(folder)])
    finally:
        os.chdir(old)
    assert code == 0
    return folder


@pytest.fixture
def work(made, tmp_path, monkeypatch):
    """A fresh folder with a copy of the module's study (and best.json), as the working directory."""
    shutil.copy(made / "nasbench.db", tmp_path / "nasbench.db")
    shutil.copy(made / "best.json", tmp_path / "best.json")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def url_of(folder: Path) -> str:
    return f"sqlite:///{folder / 'nasbench.db'}"


# -- search (in-process, quick) --------------------------------------------------------------


def test_quick_search_records_trials_and_writes_best(work):
    trials = trials_of(url_of(work), STUDY)
    assert len(trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["genome_hash"] for t in trials}) == 3
    for t in trials:
        assert t.user_attrs["strategy"] == "random"
        assert "genome" in t.user_attrs and 0.0 <= t.values[0] <= 1.0
    best = max(trials, key=lambda t: (t.values[0], -t.number))
    doc = json.loads((work / "best.json").read_text())
    assert doc["genome_hash"] == best.user_attrs["genome_hash"]
    assert doc["metrics"]["trial"] == best.number
    assert tuple(build_and_run(work / "best.json").shape) == (2, 10)


def test_search_again_with_the_same_flags_resumes_to_the_new_budget(made, work, capsys):
    before = trials_of(url_of(work), STUDY)
    code, out, _ = run_main(quick(made, budget="4"), capsys)
    assert code == 0
    assert "3 of 4 trials done" in out
    after = trials_of(url_of(work), STUDY)
    assert len(after) == 4
    assert [t.user_attrs["genome_hash"] for t in after[:3]] == [t.user_attrs["genome_hash"] for t in before]
    assert len({t.user_attrs["genome_hash"] for t in after}) == 4
    # budget already reached: nothing new
    code, out, _ = run_main(quick(made, budget="4"), capsys)
    assert code == 0 and len(trials_of(url_of(work), STUDY)) == 4


# -- bad input: exit 2, one line, no traceback, study untouched -----------------------------


BAD_SEARCHES = {
    "unknown strategy": ({"strategy": "bogus"}, "bogus"),
    "unknown space": ({"space": "bogus"}, "bogus"),
    "unknown dataset": ({"dataset": "bogus"}, "bogus"),
    "missing dataset path": ({"dataset": "cifar10:/no/such/folder"}, "/no/such/folder"),
    "missing space file": ({"space": "no_such_space.py"}, "no_such_space.py"),
    "budget 0": ({"budget": "0"}, "budget"),
    "nsga2 single objective": ({"strategy": "nsga2"}, "nsga2"),
    "unknown objective": ({"objective": "accuracy,speed"}, "speed"),
    "other epochs on resume": ({"epochs": "2"}, "epochs"),
    "other seed on resume": ({"seed": "1"}, "seed"),
    "other limit on resume": ({"limit": "50"}, "limit"),
    "non-positive epochs": ({"epochs": "0"}, "epochs"),
    "unknown optimizer": ({"optimizer": "rmsprop"}, "rmsprop"),
}


@pytest.mark.parametrize("case", BAD_SEARCHES, ids=list(BAD_SEARCHES))
def test_bad_search_input_exits_2_with_one_line_and_leaves_the_study(made, work, capsys, case):
    changes, needle = BAD_SEARCHES[case]
    args = quick(made, **changes)
    before = snapshot(url_of(work))
    code, out, err = run_main(args, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasbench: error:"), err
    assert needle in lines[0]
    assert "Traceback" not in err + out
    assert snapshot(url_of(work)) == before


@pytest.mark.parametrize("url", ["redis://localhost/0", "sqlite:///no/such/folder/x.db", "journal:/no/such/dir/x.log"])
def test_bad_storage_exits_2(made, work, capsys, url):
    code, out, err = run_main(quick(made, storage=url), capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not Path("/no/such").exists()


def test_export_from_missing_or_empty_study_exits_2(work, capsys):
    before = snapshot(url_of(work))
    code, _, err = run_main(["export", "--study", "nope", "--out", "x.json"], capsys)
    assert code == 2 and "nope" in err and STUDY in err
    assert len(err.strip().splitlines()) == 1
    # a nasbench study without any complete trial
    from nasbench._spaces import load_space
    from nasbench.objectives import Objectives
    from nasbench.runner import StudyRecorder

    StudyRecorder(url_of(work), "empty", load_space("resnet"), Objectives.parse("accuracy"), {"dataset": "digits"})
    code, _, err = run_main(["export", "--study", "empty", "--out", "x.json"], capsys)
    assert code == 2 and "no complete trial" in err
    # two studies now: --study is required
    code, _, err = run_main(["export", "--out", "x.json"], capsys)
    assert code == 2 and "--study" in err
    assert not (work / "x.json").exists()
    assert snapshot(url_of(work)) == {**before, "empty": ()}


def test_export_of_a_failed_or_missing_trial_exits_2(work, capsys):
    code, _, err = run_main(["export", "--trial", "99", "--out", "x.json"], capsys)
    assert code == 2 and "no trial 99" in err
    assert not (work / "x.json").exists()


def test_reading_commands_do_not_create_a_storage_file(tmp_path, capsys, monkeypatch):
    """export/trials on a mistyped path must fail without leaving an empty database behind."""
    monkeypatch.chdir(tmp_path)
    for args in (["export", "--out", "x.json"], ["trials", "--out", "t.csv"]):
        code, _, err = run_main(args, capsys)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_describe_malformed_or_missing_json_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = run_main(["describe", str(bad)], capsys)
    assert code == 2 and "not valid JSON" in err and len(err.strip().splitlines()) == 1
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something/1"}))
    code, _, err = run_main(["describe", str(other)], capsys)
    assert code == 2 and "format" in err
    code, _, err = run_main(["describe", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "not found" in err


def test_sample_of_unknown_space_exits_2(tmp_path, capsys):
    code, _, err = run_main(["sample", "--space", "bogus", "--out", str(tmp_path / "a.json")], capsys)
    assert code == 2 and "bogus" in err and "resnet" in err
    assert "Traceback" not in err and not (tmp_path / "a.json").exists()


def test_no_command_and_unknown_command_exit_2(capsys):
    assert run_main([], capsys)[0] == 2
    code, _, err = run_main(["frobnicate"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


# -- export, train, trials -------------------------------------------------------------------


def test_export_picks_the_best_trial_or_the_asked_one(work, capsys):
    trials = trials_of(url_of(work), STUDY)
    best = max(trials, key=lambda t: (t.values[0], -t.number))
    code, out, err = run_main(["export", "--out", "x.json"], capsys)
    assert code == 0, err
    doc = json.loads((work / "x.json").read_text())
    assert doc["genome_hash"] == best.user_attrs["genome_hash"]
    assert doc["metrics"]["trial"] == best.number and doc["metrics"]["study"] == STUDY
    assert doc["build"] == {"num_classes": 10, "input_shape": [1, 8, 8]}
    other = next(t for t in trials if t.number != best.number)
    code, _, err = run_main(["export", "--study", STUDY, "--trial", str(other.number), "--out", "y.json"], capsys)
    assert code == 0, err
    doc = json.loads((work / "y.json").read_text())
    assert doc["genome_hash"] == other.user_attrs["genome_hash"]
    assert doc["metrics"]["val_accuracy"] == pytest.approx(other.values[0])
    assert tuple(build_and_run(work / "y.json").shape) == (2, 10)


def test_train_writes_weights_and_retrain_metrics(work, capsys):
    import torch

    import nasbench

    assert run_main(["export", "--out", "x.json"], capsys)[0] == 0
    code, out, err = run_main(["train", "x.json", "--epochs", "1", "--limit", "100"], capsys)
    assert code == 0, err
    assert (work / "x.safetensors").is_file()
    doc = json.loads((work / "x.json").read_text())
    assert doc["weights"] == "x.safetensors"
    assert 0.0 <= doc["metrics"]["retrain_test_accuracy"] <= 1.0
    assert doc["metrics"]["retrain_dataset"] == "digits"
    arch = nasbench.load_architecture(work / "x.json")
    loaded = arch.build()
    fresh = arch.build(load_weights=False)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    loaded.eval()
    fresh.eval()
    with torch.no_grad():
        assert not torch.allclose(loaded(x), fresh(x))  # the trained weights were loaded


def test_trials_csv_has_one_row_per_trial(work, capsys):
    import pandas as pd

    n = len(trials_of(url_of(work), STUDY))
    code, _, err = run_main(["trials", "--format", "csv", "--out", "t.csv"], capsys)
    assert code == 0, err
    df = pd.read_csv(work / "t.csv")
    assert len(df) == n
    assert {"number", "value", "state", "user_attrs_genome_hash", "params_stem.width"} <= set(df.columns)
    assert sorted(df["number"]) == list(range(n))
    code, out, _ = run_main(["trials"], capsys)  # CSV on stdout
    assert code == 0
    assert list(pd.read_csv(io.StringIO(out))["user_attrs_genome_hash"]) == list(df["user_attrs_genome_hash"])


def test_trials_parquet_has_one_row_per_trial(work, capsys):
    import pandas as pd

    pytest.importorskip("pyarrow")
    trials = trials_of(url_of(work), STUDY)
    code, _, err = run_main(["trials", "--format", "parquet", "--out", "t.parquet"], capsys)
    assert code == 0, err
    pq = pd.read_parquet(work / "t.parquet")
    assert len(pq) == len(trials)
    assert list(pq["user_attrs_genome_hash"]) == [t.user_attrs["genome_hash"] for t in trials]
    code, _, err = run_main(["trials", "--format", "parquet"], capsys)
    assert code == 2 and "--out" in err


NB201_DATA = ROOT.parent / "shared" / "data" / "nb201"


@pytest.mark.skipif(not (NB201_DATA / "nb201_accuracy.csv").is_file(), reason=f"no NAS-Bench-201 tables in {NB201_DATA}")
def test_export_of_a_benchmark_study(tmp_path, capsys, monkeypatch):
    """A ``--benchmark nb201`` search trains nothing; exporting its best must not need CIFAR-10 on disk."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NASBENCH_CIFAR10", str(tmp_path / "no_cifar_here"))
    code, _, err = run_main(["--quiet", "search", "--space", "nb201", "--benchmark", f"nb201:{NB201_DATA}",
                             "--strategy", "random", "--budget", "3"], capsys)
    assert code == 0, err
    search_best = json.loads((tmp_path / "best.json").read_text())
    code, _, err = run_main(["export", "--out", "x.json"], capsys)
    assert code == 0, err
    exported = json.loads((tmp_path / "x.json").read_text())
    assert exported["genome_hash"] == search_best["genome_hash"]
    assert exported["build"] == search_best["build"] == {"num_classes": 10, "input_shape": [3, 32, 32]}


# -- spaces, sample, describe ----------------------------------------------------------------


def test_spaces_lists_the_builtin_spaces_with_sizes(capsys):
    code, out, _ = run_main(["spaces"], capsys)
    assert code == 0
    rows = dict(re.findall(r"^\W+(\w+)\s+\W\s+\w+\s+\W\s+\d+\s+\W\s+([\d,.e+]+)", out, flags=re.M))
    assert set(rows) == {"nb201", "darts", "resnet", "mobilenetv3"}
    assert rows["nb201"] == "15,625"
    assert rows["resnet"] == "148,176"


def test_sample_then_describe(tmp_path, capsys):
    import nasbench

    a, b, c = (tmp_path / n for n in ("a.json", "b.json", "c.json"))
    for path, seed in ((a, "3"), (b, "3"), (c, "4")):
        code, out, err = run_main(["sample", "--space", "resnet", "--seed", seed, "--input-shape", "1,8,8",
                                   "--out", str(path)], capsys)
        assert code == 0, err
    ga, gb, gc = (nasbench.load_architecture(p).genome for p in (a, b, c))
    assert ga == gb and ga != gc
    assert tuple(build_and_run(a).shape) == (2, 10)
    code, out, err = run_main(["describe", str(a)], capsys)
    assert code == 0, err
    from nasbench.hardware import count_params

    params = count_params(nasbench.load_architecture(a).build())
    assert f"params {params:,}" in out
    assert ga.hash in out


def test_output_cut_short_by_the_reader_ends_quietly_with_exit_0(tmp_path, capsys):
    """``nasbench describe x.json | head -1``: the reader closes the pipe before everything is written."""
    arch = tmp_path / "x.json"
    code, _, err = run_main(["sample", "--space", "resnet", "--input-shape", "1,8,8", "--out", str(arch)], capsys)
    assert code == 0, err
    read, write = os.pipe()
    os.close(read)  # the reader is already gone: the first write breaks the pipe
    try:
        res = subprocess.run(cli_cmd("describe", str(arch)), cwd=tmp_path, env=cli_env(), stdout=write,
                             stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""


# -- end to end in subprocesses (slow) -------------------------------------------------------


@pytest.mark.slow
def test_acceptance_default_search(tmp_path):
    """``nasbench search --strategy random --budget 5`` with every other flag defaulted."""
    res = run_cli(["search", "--strategy", "random", "--budget", "5"], tmp_path, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    trials = trials_of(url_of(tmp_path), "resnet-digits-random")
    assert len(trials) == 5
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["genome_hash"] for t in trials}) == 5
    assert all(t.user_attrs["epochs"] == 4 for t in trials)
    best = max(trials, key=lambda t: (t.values[0], -t.number))
    assert json.loads((tmp_path / "best.json").read_text())["genome_hash"] == best.user_attrs["genome_hash"]
    assert "wrote best.json" in res.stdout
    assert tuple(build_and_run(tmp_path / "best.json").shape) == (2, 10)


@pytest.mark.slow
def test_search_killed_with_sigkill_resumes_to_the_budget(tmp_path):
    args = ["search", "--strategy", "random", "--budget", "6", "--epochs", "2"]
    db = tmp_path / "nasbench.db"
    proc = start_cli(args, tmp_path)
    try:
        wait_for(lambda: complete_count(db) >= 2, 600, proc, "2 complete trials")
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == -signal.SIGKILL
    done = complete_count(db)
    assert 2 <= done < 6
    res = run_cli(args, tmp_path, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{done} of 6 trials done" in res.stdout
    every = trials_of(url_of(tmp_path), "resnet-digits-random")
    # the killed driver's reservation was found dead (its process is gone) and its genome re-run
    # (none if the kill fell between two trials)
    dead = [t for t in every if "abandoned" in t.user_attrs]
    assert len(dead) <= 1 and all(t.state == optuna.trial.TrialState.FAIL and "stopped" in t.user_attrs["abandoned"]
                                  for t in dead)
    trials = [t for t in every if "abandoned" not in t.user_attrs]
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 6
    assert len({t.user_attrs["genome_hash"] for t in trials}) == 6
    assert all(t.user_attrs["genome_hash"] in {x.user_attrs["genome_hash"] for x in trials} for t in dead)


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_exits_130_and_resumes(tmp_path):
    args = ["search", "--strategy", "random", "--budget", "5", "--epochs", "2"]
    db = tmp_path / "nasbench.db"
    proc = start_cli(args, tmp_path)
    try:
        wait_for(lambda: complete_count(db) >= 1, 600, proc, "1 complete trial")
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert "interrupted" in out + err
    every = trials_of(url_of(tmp_path), "resnet-digits-random")
    trials = [t for t in every if "abandoned" not in t.user_attrs]  # the one in flight was given back
    assert len(every) - len(trials) <= 1
    kept = len(trials)
    assert 1 <= kept < 5
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    res = run_cli(args, tmp_path, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{kept} of 5 trials done" in res.stdout
    trials = [t for t in trials_of(url_of(tmp_path), "resnet-digits-random") if "abandoned" not in t.user_attrs]
    assert len(trials) == 5 and len({t.user_attrs["genome_hash"] for t in trials}) == 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())


@pytest.mark.slow
def test_dashboard_serves_the_study(made, tmp_path):
    pytest.importorskip("optuna_dashboard")
    shutil.copy(made / "nasbench.db", tmp_path / "nasbench.db")
    n = len(trials_of(url_of(tmp_path), STUDY))
    port = free_port()
    proc = start_cli(["dashboard", "--storage", url_of(tmp_path), "--port", str(port)], tmp_path)
    try:
        listing: dict = {}

        def answers() -> bool:
            try:
                listing.update(get_json(f"http://127.0.0.1:{port}/api/studies"))
                return True
            except OSError:
                return False

        wait_for(answers, 120, proc, "the dashboard to answer")
        studies = {s["study_name"]: s for s in listing["study_summaries"]}
        assert set(studies) == {STUDY}
        assert studies[STUDY]["directions"] == ["maximize"]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[STUDY]['study_id']}")
        assert len(detail["trials"]) == n
        first = detail["trials"][0]
        assert {p["name"] for p in first["params"]} >= {"stem.width", "s1.depth"}
        assert {a["key"] for a in first["user_attrs"]} >= {"genome", "genome_hash", "strategy"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            stop(proc)


BAD_IN_SUBPROCESS = {
    "unknown strategy": {"strategy": "bogus"},
    "budget 0": {"budget": "0"},
    "other epochs on resume": {"epochs": "2"},
    "malformed json": None,
}


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_IN_SUBPROCESS, ids=list(BAD_IN_SUBPROCESS))
def test_bad_input_in_a_real_process_prints_exactly_one_line(made, tmp_path, case):
    shutil.copy(made / "nasbench.db", tmp_path / "nasbench.db")
    (tmp_path / "bad.json").write_text("{")
    before = snapshot(url_of(tmp_path))
    changes = BAD_IN_SUBPROCESS[case]
    args = ["describe", "bad.json"] if changes is None else quick(made, **changes)
    res = run_cli(args, tmp_path, timeout=300)
    assert res.returncode == 2
    assert len(res.stderr.splitlines()) == 1, res.stderr
    assert res.stderr.startswith("nasbench: error:")
    assert "Traceback" not in res.stderr + res.stdout
    assert snapshot(url_of(tmp_path)) == before
