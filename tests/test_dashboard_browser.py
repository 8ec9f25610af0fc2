"""A real browser on ``nasbench dashboard``: headless Chromium renders the study and its trial count.

optuna-dashboard is a React app, so the page text exists only after its JavaScript ran;
``--virtual-time-budget`` lets Chromium run it before ``--dump-dom``. Needs Debian's
``chromium`` (``bash .ci/services`` installs it as root; CI does); skips without it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nasbench._spaces import load_space
from nasbench.objectives import Evaluation, Objectives
from nasbench.runner import StudyRecorder

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STUDY, N_TRIALS = "browser-study", 7

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium or chromium-browser on PATH "
                       "(apt-get install chromium, or run 'bash .ci/services' as root)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dashboard(tmp_path):
    """``nasbench dashboard`` on a SQLite study of ``N_TRIALS`` trials; yields its base URL."""
    pytest.importorskip("optuna_dashboard")
    url = f"sqlite:///{tmp_path / 'nasbench.db'}"
    space = load_space("nb201")
    recorder = StudyRecorder(url, STUDY, space, Objectives.parse("accuracy"), {"strategy": "random"})
    for k in range(N_TRIALS):
        recorder.record(space.sample(k), Evaluation((0.8 + k / 100,), {"val_accuracy": 0.8 + k / 100}),
                        strategy="random", started=dt.datetime.now())
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = (tmp_path / "dashboard.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "nasbench.cli", "dashboard", "--storage", url, "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                    summaries = json.loads(r.read())["study_summaries"]
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dashboard did not answer: {(tmp_path / 'dashboard.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield base, summaries[0]["study_id"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def page_text(url: str, profile: Path, budget_ms: int) -> str:
    """The visible text of ``url`` after Chromium ran its scripts for ``budget_ms`` of virtual time."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-extensions", "--no-first-run",
           f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        dom, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        dom = ""
    finally:  # the browser's helper processes share its session: end them all
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def rendered(url: str, profile: Path, wanted: list[str]) -> str:
    """Page text containing every regex of ``wanted``, given more virtual time on each try."""
    text = ""
    for budget_ms in (8000, 20000, 40000):
        text = page_text(url, profile, budget_ms)
        if all(re.search(w, text) for w in wanted):
            break
    return text


def test_chromium_shows_the_study_and_its_trial_count(dashboard, tmp_path):
    base, study_id = dashboard
    profile = tmp_path / "chromium-profile"

    listing = rendered(f"{base}/dashboard", profile, [STUDY])
    assert STUDY in listing, listing[-2000:]

    trials = rendered(f"{base}/dashboard/studies/{study_id}/trials", profile, [STUDY, rf"\b{N_TRIALS} Trials\b"])
    assert f"{STUDY} (id={study_id})" in trials, trials[-2000:]
    assert re.search(rf"\b{N_TRIALS} Trials\b", trials), trials[-2000:]
    assert f"Trial {N_TRIALS - 1} " in trials and f"Trial {N_TRIALS} " not in trials
