"""Tests for ``nasbench doctor``: every path on the CPU, a failing check, bad devices, JSON, Ray.

The checks train on 8x8 digits for 2 steps, torch on one thread (spin-waiting threads slow
tiny models tenfold when other processes share the cores).
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest
import torch
from conftest import run_main

import nasbench.doctor as doctor
from nasbench.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def row(out: str, name: str) -> str:
    """The table line of check ``name`` (the first cell is the check's name)."""
    lines = [line for line in out.splitlines() if line.startswith(f"│ {name} ")]
    assert len(lines) == 1, f"no single row {name!r} in:\n{out}"
    return lines[0]


@pytest.mark.slow
def test_cli_on_cpu_every_row_ok_with_ray(capsys, monkeypatch) -> None:
    """The acceptance run: every path on the CPU, the Ray row included, exit 0; Ray stopped afterwards."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert not ray.is_initialized()
    code, out, err = run_main(["doctor", "--device", "cpu", "--ray"], capsys)
    assert code == 0, out + err
    names = doctor.check_names(ray=True)
    assert "ray task" in names and len([n for n in names if n.startswith("train ")]) == 4
    for name in names:
        cells = [c.strip() for c in row(out, name).split("│")[1:-1]]
        assert cells[1] == "ok", cells
        assert float(cells[2]) > 0
        if name != "study write":
            assert float(cells[3].replace(",", "")) > 0, cells
    assert "FAILED" not in out
    assert "torch " in out and "ISA " in out and "Ray " in out and "cuDNN" in out
    assert f"all {len(names)} checks passed" in out
    assert not ray.is_initialized()


def test_failing_check_is_a_failed_row_and_exit_1(capsys, monkeypatch) -> None:
    """One check raising gives its FAILED row with the first line of the reason; the others still run."""
    real = doctor._check_train

    def train(ctx, space):  # noqa: ANN001, ANN202
        if space == "darts":
            raise RuntimeError("cuDNN exploded\nsecond line of the message")
        if space == "mobilenetv3":  # the slowest of the others: skipped to keep the test short
            return 32, 1.0
        return real(ctx, space)

    monkeypatch.setattr(doctor, "_check_train", train)
    code, out, err = run_main(["doctor", "--device", "cpu"], capsys)
    assert code == 1, out + err
    assert "FAILED RuntimeError: cuDNN exploded" in row(out, "train darts")
    assert "second line" not in out
    for name in doctor.check_names():
        if name != "train darts":
            assert "│ ok " in row(out, name), name
    assert f"1 of {len(doctor.check_names())} checks FAILED" in out
    assert "Traceback" not in out + err


def test_json_output_and_rates(capsys, monkeypatch) -> None:
    def fails(ctx):  # noqa: ANN001, ANN202
        raise ValueError("bad thing")

    monkeypatch.setattr(doctor, "_plan", lambda ray: [("quick", lambda ctx: (10, 0.5)), ("study write", lambda ctx: None),
                                                      ("broken", fails)])
    code, out, _ = run_main(["doctor", "--device", "cpu", "--json"], capsys)
    assert code == 1
    report = json.loads(out)  # nothing but the JSON on stdout
    assert report["ok"] is False and report["platform"]["device"] == "cpu"
    assert report["platform"]["torch"] == torch.__version__ and report["platform"]["cpus"] >= 1
    quick, study, broken = report["checks"]
    assert quick["ok"] and quick["images_per_s"] == pytest.approx(20.0) and quick["reason"] == ""
    assert study["ok"] and study["images_per_s"] is None
    assert not broken["ok"] and broken["reason"] == "ValueError: bad thing" and broken["images_per_s"] is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:3", "tpu"])
def test_unavailable_device_is_one_line_and_exit_2(capsys, device: str) -> None:
    code, out, err = run_main(["doctor", "--device", device], capsys)
    assert code == 2
    assert out == ""  # nothing was run or printed
    assert len(err.strip().splitlines()) == 1 and err.startswith("nasbench: error:"), err
    assert "Traceback" not in err


def test_library_refuses_bad_budget_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="steps"):
        doctor.run_doctor("cpu", steps=0)
    with pytest.raises(ConfigError, match="batch_size"):
        doctor.run_doctor("cpu", batch_size=0)


def test_study_check_leaves_nothing_behind(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ctx = doctor._Context(device=torch.device("cpu"), data=None, steps=1, batch_size=1, seed=0)  # type: ignore[arg-type]
    assert doctor._check_study(ctx) is None
    assert os.listdir(tmp_path) == []


def test_reason_is_type_and_first_line() -> None:
    assert doctor._reason(KeyError("x")) == "KeyError: 'x'"
    assert doctor._reason(RuntimeError("one\ntwo")) == "RuntimeError: one"
    assert doctor._reason(RuntimeError()) == "RuntimeError"
