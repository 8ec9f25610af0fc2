"""Divergence fails with its reason: exploding or non-finite training loss, non-finite validation loss.

A learning rate far too high used to give COMPLETE trials at chance with a stored ``val_loss`` of
None and a ``best.json`` for one of them; now the trial (or the supernet search) fails with one line.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from nasbench.cli import main
from nasbench.data import load_dataset
from nasbench.errors import TrainingError
from nasbench.hardware import torch_threads
from nasbench.ofa import OFAConfig, OFATrainer
from nasbench.space import Block, Cell, CellSpace, Choice, MacroSpace, Stage
from nasbench.strategies._darts import DartsConfig, DartsSearch
from nasbench.train import TrainConfig, train_model
from nasbench.train._divergence import DIVERGENCE_FACTOR, DivergenceGuard

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():  # noqa: ANN201
    return load_dataset("digits", limit=300)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_guard_flags_nan_inf_and_explosion_and_passes_normal_losses() -> None:
    errors = []

    def guard() -> DivergenceGuard:
        return DivergenceGuard("cpu", 10, lambda what, step: errors.append((what, step)) or f"{what} at {step}")

    g = guard()
    for step, loss in enumerate([2.3, 5.0, 40.0, 2.0], 1):  # a spike of 17x is not divergence
        g.update(torch.tensor(loss), step)
    with pytest.raises(TrainingError, match="over 100x its start"):
        g.update(torch.tensor(2.3 * DIVERGENCE_FACTOR * 1.01), 5)
    with pytest.raises(TrainingError, match="nan at 2"):
        g = guard()
        g.update(torch.tensor(2.3), 1)
        g.update(torch.tensor(math.nan), 2)
    with pytest.raises(TrainingError, match="inf at 1"):
        guard().update(torch.tensor(math.inf), 1)
    small = guard()  # a tiny first loss does not make a tiny bound: ln(classes) is the floor
    small.update(torch.tensor(0.01), 1)
    assert small.bound == pytest.approx(DIVERGENCE_FACTOR * math.log(10))


def test_guard_on_a_gpu_checks_in_batches_without_losing_a_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    g = DivergenceGuard("cpu", 10, lambda what, step: f"{what} at {step}")
    g.every = 4  # as on CUDA: losses accumulate on the device, one check per 4 steps
    g.update(torch.tensor(2.3), 1)
    g.update(torch.tensor(math.nan), 2)
    g.update(torch.tensor(3.0), 3)  # max() must not hide the NaN
    with pytest.raises(TrainingError, match="nan at 1-4"):
        g.update(torch.tensor(2.0), 4)
    g = DivergenceGuard("cpu", 10, lambda what, step: f"{what} at {step}")
    g.every = 50
    g.update(torch.tensor(2.3), 1)
    g.update(torch.tensor(1e9), 2)
    with pytest.raises(TrainingError, match="1e\\+09"):
        g.flush()  # the end of an epoch checks what is pending


def test_trainer_fails_an_exploding_loss_that_never_becomes_inf(digits) -> None:  # noqa: ANN001
    with pytest.raises(TrainingError, match=r"over 100x its start.*lower the learning rate \(lr=1e\+06\)"):
        train_model(_cnn(), digits, TrainConfig(epochs=1, lr=1e6), device="cpu")


class _NanInEval(nn.Module):
    """Trains normally; its evaluation outputs NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out if self.training else out * math.nan


def test_trainer_fails_a_non_finite_validation_loss(digits) -> None:  # noqa: ANN001
    with pytest.raises(TrainingError, match="validation loss became nan after epoch 1"):
        train_model(_NanInEval(), digits, TrainConfig(epochs=1), device="cpu")


def test_darts_search_stops_on_divergence(digits) -> None:  # noqa: ANN001
    space = CellSpace("t", [Cell("cell", {"skip_connect": "skip", "nor_conv_3x3": "relu_conv_bn_3x3"}, nodes=3)],
                      skeleton="nb201", C=8, N=1)
    search = DartsSearch(space, digits, DartsConfig(epochs=2, batch_size=32, selection="alpha", w_lr=1e8,
                                                    grad_clip=1e12))
    with torch_threads(1), pytest.raises(TrainingError, match="DARTS supernet .*loss became .* w_lr"):
        search.run()


def test_ofa_training_stops_on_divergence(digits) -> None:  # noqa: ANN001
    space = MacroSpace("o", stem_width=8, stages=[Stage("a", Block("mbconv", kernel_size=Choice([3, 5]),
                                                                  expansion=2), width=8)])
    trainer = OFATrainer(space, digits, OFAConfig(phases=(("full", 1), ("kernel", 1)), batch_size=32, lr=1e7))
    with pytest.raises(TrainingError, match="OFA supernet .*loss became .*lower the learning rate"):
        trainer.run()


@pytest.mark.slow
def test_cli_diverged_trials_fail_and_no_best_json(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    code = main(["search", "--strategy", "random", "--budget", "2", "--epochs", "1", "--limit", "300",
                 "--lr", "1e6", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--study", "div"])
    out = capsys.readouterr()
    assert code == 0
    assert "over 100x its start" in out.out + out.err
    assert not (tmp_path / "best.json").exists()
    import optuna

    study = optuna.load_study(study_name="div", storage=f"sqlite:///{tmp_path / 's.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "FAIL"]
    assert all("lower the learning rate" in t.user_attrs["failure"] for t in study.trials)
    # the export of the study has nothing to export either
    assert main(["export", "--study", "div", "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
