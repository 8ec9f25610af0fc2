"""PostgreSQL study storage: search end to end, concurrent writers, Ray workers, unreachable servers.

The storage tests need a PostgreSQL server whose role may create databases, named by
``NASBENCH_TEST_POSTGRES=postgresql://USER:PASSWORD@HOST:PORT/DB`` (default: the one
``bash .ci/services`` starts on localhost, which CI runs as root). Each test gets a fresh
database, dropped afterwards. Without a server they skip, saying what was unreachable; the
unreachable-server tests need only the driver.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna
import pytest
from conftest import run_main
from optuna.trial import TrialState

from nasbench._spaces import load_space
from nasbench.objectives import Evaluation, Objectives
from nasbench.runner import StudyRecorder, open_storage

psycopg = pytest.importorskip("psycopg", reason="no PostgreSQL driver: pip install -e '.[dev]' (psycopg)")

ROOT = Path(__file__).resolve().parents[1]
NB201_DATA = ROOT.parent / "shared" / "data" / "nb201"
ENV = "NASBENCH_TEST_POSTGRES"
DEFAULT_URL = "postgresql://nasbench:nasbench@127.0.0.1:5432/nasbench"
ACC = Objectives.parse("accuracy")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name``."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


@pytest.fixture(scope="module")
def server() -> str:
    """URL of a reachable PostgreSQL server (skips the test otherwise)."""
    url = os.environ.get(ENV) or DEFAULT_URL
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pytest.skip(f"no PostgreSQL server reachable at {redact(url)} ({reason}); set {ENV}=postgresql://"
                    "USER:PASSWORD@HOST:PORT/DB, or run 'bash .ci/services' as root to start one")
    return url


@pytest.fixture
def pg_url(server: str):
    """A fresh, empty database on the server for one test; dropped afterwards."""
    name = f"nasbench_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.errors.InsufficientPrivilege:
        pytest.skip(f"the role of {redact(server)} may not create databases: ALTER ROLE ... CREATEDB")
    yield with_database(server, name)
    with psycopg.connect(server, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def trials_rows(url: str, study: str, capsys) -> list[dict[str, str]]:  # noqa: ANN001
    """``nasbench trials`` as CSV rows."""
    code, out, err = run_main(["trials", "--storage", url, "--study", study], capsys)
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


# -- end to end ------------------------------------------------------------------------------


def test_search_trials_and_resume_end_to_end(pg_url, user_space_file, tmp_path, monkeypatch, capsys,
                                             one_torch_thread):
    monkeypatch.chdir(tmp_path)
    search = ["--quiet", "search", "--space", str(user_space_file), "--strategy", "random", "--epochs", "1",
              "--limit", "100", "--storage", pg_url, "--study", "e2e"]
    code, _, err = run_main([*search, "--budget", "3"], capsys)
    assert code == 0, err
    first = trials_rows(pg_url, "e2e", capsys)
    assert [r["number"] for r in first] == ["0", "1", "2"]
    assert {r["state"] for r in first} == {"COMPLETE"}
    assert (tmp_path / "best.json").is_file()

    code, out, err = run_main([*search, "--budget", "5"], capsys)  # resumes: 2 more trials, same study
    assert code == 0, err
    rows = trials_rows(pg_url, "e2e", capsys)
    assert [r["number"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert rows[:3] == first
    assert len({r["user_attrs_genome_hash"] for r in rows}) == 5
    assert optuna.get_all_study_names(open_storage(pg_url)) == ["e2e"]


# -- concurrency -----------------------------------------------------------------------------


def test_four_concurrent_writers_on_a_fresh_database_record_every_trial_exactly_once(pg_url):
    """Four workers start at the same instant on an empty database (racing to create its tables
    and the study), then each records 6 trials into the one study."""
    space, workers, per_worker = load_space("nb201"), 4, 6
    start = threading.Barrier(workers)
    returned: dict[tuple[int, int], int] = {}
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            start.wait(timeout=30)
            recorder = StudyRecorder(pg_url, "shared", space, ACC, {"strategy": "random"})
            for k in range(per_worker):
                genome = space.sample(1000 * w + k)
                number = recorder.record(genome, Evaluation((0.5 + k / 100,), {"val_accuracy": 0.5}),
                                         strategy="random", started=dt.datetime.now(), extra={"worker": w, "k": k})
                returned[(w, k)] = number
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    total = workers * per_worker
    assert sorted(returned.values()) == list(range(total))
    trials = optuna.load_study(study_name="shared", storage=open_storage(pg_url)).trials
    assert sorted(t.number for t in trials) == list(range(total))
    assert {(t.user_attrs["worker"], t.user_attrs["k"]): t.number for t in trials} == returned
    assert {t.state for t in trials} == {TrialState.COMPLETE}


@pytest.mark.slow
def test_search_with_four_ray_workers_records_every_trial_exactly_once(pg_url, tmp_path):
    pytest.importorskip("ray")
    if not (NB201_DATA / "nb201_accuracy.csv").is_file():
        pytest.skip(f"NAS-Bench-201 tables not found in {NB201_DATA}")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    budget = 12
    res = subprocess.run(
        [sys.executable, "-m", "nasbench.cli", "--quiet", "search", "--space", "nb201",
         "--benchmark", f"nb201:{NB201_DATA}", "--strategy", "random", "--budget", str(budget),
         "--executor", "ray", "--workers", "4", "--cpus-per-trial", "0.5", "--storage", pg_url, "--study", "ray"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = optuna.load_study(study_name="ray", storage=open_storage(pg_url)).trials
    assert sorted(t.number for t in trials) == list(range(budget))
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert len({t.user_attrs["genome_hash"] for t in trials}) == budget
    assert all(t.values[0] == t.user_attrs["val_accuracy"] for t in trials)


# -- unreachable servers (no server needed) -------------------------------------------------------


@pytest.fixture
def silent_port():
    """A local port that accepts TCP connections and never answers (a hung or firewalled server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_database_fails_fast_with_one_line_naming_it(kind, silent_port, user_space_file, tmp_path,
                                                                monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    port = 1 if kind == "refused" else silent_port
    url = f"postgresql://alice:s3cret@127.0.0.1:{port}/studies"
    code, out, err = run_main(["--quiet", "search", "--space", str(user_space_file), "--strategy", "random",
                               "--budget", "1", "--epochs", "1", "--limit", "100", "--storage", url], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("nasbench: error:")
    assert f"postgresql://alice:***@127.0.0.1:{port}/studies" in err
    assert "s3cret" not in err + out
    assert not (tmp_path / "best.json").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_four_drivers_one_killed_share_the_budget_on_postgres(pg_url, tmp_path) -> None:  # noqa: ANN001
    """Four ``nasbench search`` processes (evolution) on one PostgreSQL study; one SIGKILLed mid-trial."""
    import signal
    import subprocess
    import time

    import optuna

    from nasbench.runner._study import ABANDONED_KEY
    from tests.test_cli import cli_cmd, cli_env

    budget = 8
    args = ["--quiet", "search", "--strategy", "evolution", "--population", "4", "--tournament", "2",
            "--budget", str(budget), "--epochs", "2", "--limit", "300", "--storage", pg_url, "--study", "many"]
    env = {**cli_env(), "NASBENCH_HEARTBEAT_SECONDS": "1"}
    procs = [subprocess.Popen(cli_cmd(*args, "--out", str(tmp_path / f"best{i}.json")), cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    victim = procs[0]
    me = f"{socket.gethostname()}:{victim.pid}"

    def victim_running() -> bool:
        try:
            study = optuna.load_study(study_name="many", storage=pg_url)
        except Exception:  # tables or study not created yet
            return False
        return any(t.state.name == "RUNNING" and t.user_attrs.get("driver") == me for t in study.trials)

    deadline = time.monotonic() + 240
    while not victim_running():
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the victim never reserved a trial"
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for p in procs[1:]:
        _, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="many", storage=pg_url).trials
    finished = [t for t in trials if ABANDONED_KEY not in t.user_attrs]
    assert [t.state.name for t in finished] == ["COMPLETE"] * budget
    assert len({t.user_attrs["genome_hash"] for t in finished}) == budget
    killed = [t for t in trials if t.user_attrs.get("driver") == me and "stopped" in t.user_attrs.get(ABANDONED_KEY, "")]
    assert killed
    assert any(t.user_attrs["genome_hash"] == killed[0].user_attrs["genome_hash"] for t in finished)
    assert len({t.user_attrs["driver"] for t in finished}) >= 2  # the work was shared
