"""Output paths: every path a command writes is checked before any work starts (one line, exit 2),
and a write that still fails at the end keeps the study and says how to export again."""

from __future__ import annotations

import errno
import os
import re
import shlex
from pathlib import Path

import optuna
import pytest
from conftest import run_main

from nasbench.cli._shared import check_writable
from nasbench.errors import ConfigError

#: A tiny user space, so that the one search these tests run takes about a second.
SPACE_SOURCE = """
from nasbench.space import Block, Choice, MacroSpace, Stage

SPACE = MacroSpace("tiny_out", stem_width=4,
                   stages=[Stage("s1", Block("conv_3x3"), width=Choice([4, 8]), stride=2)])
"""
UNWRITABLE = "/proc/nasbench-test/best.json"  # /proc takes no new files, not even from root


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty working directory with the tiny space file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.py").write_text(SPACE_SOURCE)
    return tmp_path


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasbench: error:"), err
    assert "Traceback" not in err
    return lines[0]


# -- the helper -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/proc/best.json", "/proc/a/b/best.json"])
def test_a_folder_that_takes_no_files_is_refused_even_for_root(path):
    with pytest.raises(ConfigError, match=re.escape(path)) as info:
        check_writable(path, "--out")
    assert "--out" in str(info.value) and "\n" not in str(info.value)


def test_a_folder_or_a_file_in_the_way_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        check_writable(tmp_path, "--out")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_writable(tmp_path / "f" / "best.json", "--out")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_writable(tmp_path / "f", "the Pareto folder", folder=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write read-only files")
def test_a_read_only_file_is_refused(tmp_path):
    path = tmp_path / "best.json"
    path.write_text("{}")
    path.chmod(0o444)
    with pytest.raises(ConfigError, match="read-only"):
        check_writable(path, "--out")


def test_checking_creates_nothing(tmp_path):
    assert check_writable(tmp_path / "new" / "deeper" / "best.json", "--out") == tmp_path / "new" / "deeper" / "best.json"
    assert check_writable(tmp_path / "pareto", "the Pareto folder", folder=True)
    (tmp_path / "best.json").write_text("{}")
    check_writable(tmp_path / "best.json", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json"]
    assert (tmp_path / "best.json").read_text() == "{}"


# -- every command checks before it works -----------------------------------------------------


def _search(*extra: str) -> list[str]:
    return ["search", "--space", "space.py", "--strategy", "random", "--budget", "1", "--epochs", "1",
            "--limit", "100", *extra]


COMMANDS = {
    "search --out": _search("--out", UNWRITABLE),
    "export --out": ["export", "--out", UNWRITABLE],
    "trials --out": ["trials", "--out", UNWRITABLE],
    "trials parquet": ["trials", "--format", "parquet", "--out", UNWRITABLE],
    "sample --out": ["sample", "--out", UNWRITABLE],
    "latency profile --out": ["latency", "profile", "--space", "space.py", "--out", UNWRITABLE],
    "darts --out": ["search", "--strategy", "darts", "--out", UNWRITABLE],
    "darts --checkpoint": ["search", "--strategy", "darts", "--checkpoint", "/proc/nasbench-test/c.pt"],
    "ofa --out": ["search", "--strategy", "ofa", "--out", UNWRITABLE],
    "ofa --supernet": ["search", "--strategy", "ofa", "--supernet", "/proc/nasbench-test/s.pt"],
}


@pytest.mark.parametrize("case", COMMANDS, ids=list(COMMANDS))
def test_an_unwritable_output_fails_first_with_one_line(here, capsys, case):
    code, out, err = run_main(COMMANDS[case], capsys)
    assert code == 2, (out, err)
    assert "/proc/nasbench-test/" in one_line(err)
    assert sorted(p.name for p in here.iterdir()) == ["space.py"]  # no study, no checkpoint folder


def test_train_checks_the_architecture_file_and_its_weights_before_training(here, capsys):
    code, _, err = run_main(["sample", "--space", "space.py", "--input-shape", "1,8,8", "--out", "a.json"], capsys)
    assert code == 0, err
    (here / "a.safetensors").mkdir()  # where the weights would go
    code, out, err = run_main(["train", "a.json", "--epochs", "1", "--limit", "100"], capsys)
    assert code == 2, (out, err)
    assert "a.safetensors" in one_line(err) and "training" not in out


def test_ofa_pareto_folder_in_the_way_is_found_before_the_supernet_trains(here, capsys):
    (here / "best_pareto").write_text("not a folder")
    code, _, err = run_main(["search", "--strategy", "ofa", "--objective", "accuracy,params"], capsys)
    assert code == 2
    assert "best_pareto" in one_line(err)
    assert not (here / ".nasbench").exists()


# -- a write that fails at the end ------------------------------------------------------------


def test_a_failed_final_write_keeps_the_study_and_says_how_to_export(here, capsys, monkeypatch):
    import nasbench.cli._study_cmds as study_cmds

    real = study_cmds.export_trial

    def disk_full(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(errno.ENOSPC, "No space left on device", "best.json.tmp")

    monkeypatch.setattr(study_cmds, "export_trial", disk_full)
    code, out, err = run_main(_search("--study", "kept"), capsys)
    assert code == 2, (out, err)
    line = one_line(err)
    assert "No space left on device" in line and "best.json" in line
    trials = optuna.load_study(study_name="kept", storage=f"sqlite:///{here / 'nasbench.db'}").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE]
    # the command it prints writes the answer once the disk has room again
    command = re.search(r"'(nasbench export [^']*)'", line)
    assert command, line
    monkeypatch.setattr(study_cmds, "export_trial", real)
    args = shlex.split(command.group(1))[1:]
    args[args.index("PATH")] = "again.json"
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    assert Path("again.json").is_file()
