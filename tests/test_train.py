"""Tests for nasbench.train: real learning, budgets, determinism, failures, RNG hygiene."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from nasbench.data import Augmentation, load_dataset
from nasbench.errors import ConfigError, DataError, TrainingError
from nasbench.train import TrainConfig, TrainResult, evaluate, resolve_device, train_model
from nasbench.train._optim import lr_factor, make_optimizer

TRAIN_LIMIT = 640  # 10 steps per epoch at batch 64


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", seed=0)
    return dataclasses.replace(
        data, train_x=data.train_x[:TRAIN_LIMIT], train_y=data.train_y[:TRAIN_LIMIT]
    )


def tiny_cnn(seed: int = 0, dropout: float = 0.1) -> nn.Module:
    """A small CNN for 1x8x8 digits, initialised from ``seed`` without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(32 * 4 * 4, 10),
        )


def _metrics(result: TrainResult) -> dict:
    d = result.to_dict()
    d.pop("train_seconds")
    return d


def test_small_cnn_learns_digits(digits):
    model = tiny_cnn()
    result = train_model(model, digits, TrainConfig(epochs=3), seed=0, device="cpu")
    assert result.val_accuracy > 0.5  # chance is 0.1
    assert result.steps == 3 * (TRAIN_LIMIT // 64)
    assert result.epochs == pytest.approx(3.0)
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.flops > 0
    assert result.device == "cpu"
    assert result.test_accuracy is None and result.test_loss is None
    assert math.isfinite(result.train_loss) and math.isfinite(result.val_loss)
    assert not model.training
    # the reported validation metrics are those of the returned model
    acc, loss = evaluate(model, digits.val_x, digits.val_y, mean=digits.mean, std=digits.std)
    assert acc == pytest.approx(result.val_accuracy)
    assert loss == pytest.approx(result.val_loss, rel=1e-5)


def test_same_seed_same_result_and_weights(digits):
    config = TrainConfig(epochs=1, max_steps=15)
    aug = dataclasses.replace(config, augmentation=Augmentation(crop_padding=1, flip=True))
    a, b, c = tiny_cnn(), tiny_cnn(), tiny_cnn()
    torch.manual_seed(123)  # the caller's global RNG must not matter
    ra = train_model(a, digits, aug, seed=3, device="cpu")
    torch.manual_seed(456)
    rb = train_model(b, digits, aug, seed=3, device="cpu")
    rc = train_model(c, digits, aug, seed=4, device="cpu")
    assert _metrics(ra) == _metrics(rb)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name
    assert _metrics(ra) != _metrics(rc)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_global_rng_state_unchanged(digits):
    torch.manual_seed(99)
    before = torch.get_rng_state()
    train_model(tiny_cnn(), digits, TrainConfig(max_steps=3), seed=1, device="cpu")
    assert torch.equal(torch.get_rng_state(), before)


def test_max_steps_stops_exactly(digits):
    seen = []
    result = train_model(
        tiny_cnn(),
        digits,
        TrainConfig(epochs=5, max_steps=13),
        device="cpu",
        on_epoch=lambda i, m: seen.append((i, m["step"])),
    )
    assert result.steps == 13
    assert result.epochs == pytest.approx(1.3)
    assert seen == [(0, 10), (1, 13)]  # one callback per (partial) epoch


def test_fractional_epochs(digits):
    seen = []
    result = train_model(
        tiny_cnn(),
        digits,
        TrainConfig(epochs=0.5),
        device="cpu",
        on_epoch=lambda i, m: seen.append(m),
    )
    assert result.steps == 5
    assert result.epochs == pytest.approx(0.5)
    assert len(seen) == 1
    assert set(seen[0]) == {
        "epoch",
        "step",
        "train_loss",
        "val_accuracy",
        "val_loss",
        "lr",
        "seconds",
    }
    assert seen[0]["val_accuracy"] == result.val_accuracy


def test_max_seconds_budget_stops_early(digits):
    result = train_model(tiny_cnn(), digits, TrainConfig(epochs=50, max_seconds=1e-9), device="cpu")
    assert result.steps == 1
    assert 0.0 <= result.val_accuracy <= 1.0


def test_smaller_split_than_batch_trains_one_full_batch(digits):
    small = dataclasses.replace(digits, train_x=digits.train_x[:20], train_y=digits.train_y[:20])
    result = train_model(tiny_cnn(), small, TrainConfig(epochs=2), device="cpu")
    assert result.steps == 2 and result.epochs == pytest.approx(2.0)


class NanNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


class BrokenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom in forward")


def test_nan_loss_raises_training_error(digits):
    with pytest.raises(TrainingError, match="nan at step 1 "):
        train_model(NanNet(), digits, TrainConfig(epochs=1), device="cpu")


def test_forward_exception_propagates(digits):
    with pytest.raises(RuntimeError, match="boom in forward"):
        train_model(BrokenNet(), digits, TrainConfig(epochs=1), device="cpu")


def test_callback_exception_stops_training(digits):
    class Pruned(Exception):
        pass

    calls = []

    def prune(i, metrics):
        calls.append(i)
        raise Pruned

    with pytest.raises(Pruned):
        train_model(tiny_cnn(), digits, TrainConfig(epochs=3), device="cpu", on_epoch=prune)
    assert calls == [0]


def test_evaluate_test_fills_test_metrics(digits):
    model = tiny_cnn()
    result = train_model(model, digits, TrainConfig(epochs=1), device="cpu", evaluate_test=True)
    assert result.test_accuracy is not None and 0.0 <= result.test_accuracy <= 1.0
    acc, loss = evaluate(model, digits.test_x, digits.test_y, mean=digits.mean, std=digits.std)
    assert result.test_accuracy == pytest.approx(acc)
    assert result.test_loss == pytest.approx(loss, rel=1e-5)


def test_adamw_learns(digits):
    config = TrainConfig(epochs=3, optimizer="adamw", lr=3e-3, warmup_steps=3, label_smoothing=0.1)
    result = train_model(tiny_cnn(), digits, config, device="cpu")
    assert result.val_accuracy > 0.5


def test_evaluate_restores_mode_and_keeps_batchnorm_stats(digits):
    model = tiny_cnn()
    model.train()
    stats = model[1].running_mean.clone()
    acc, loss = evaluate(model, digits.val_x, digits.val_y, batch_size=100)
    assert model.training
    assert torch.equal(model[1].running_mean, stats)
    assert 0.0 <= acc <= 1.0 and loss > 0
    with pytest.raises(DataError, match="empty"):
        evaluate(model, digits.val_x[:0], digits.val_y[:0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": 0},
        {"epochs": -1.5},
        {"epochs": float("nan")},
        {"max_steps": 0},
        {"max_steps": 2.5},
        {"max_seconds": 0.0},
        {"batch_size": 0},
        {"batch_size": True},
        {"eval_batch_size": -1},
        {"optimizer": "adam"},
        {"lr": 0},
        {"momentum": 1.0},
        {"weight_decay": -1e-4},
        {"label_smoothing": 1.0},
        {"grad_clip": 0},
        {"amp": "fp16"},
        {"warmup_steps": -1},
        {"augmentation": "flip"},
    ],
)
def test_invalid_config_raises_config_error(kwargs):
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


def test_optimizer_defaults_follow_the_optimizer():
    sgd, adamw = TrainConfig(), TrainConfig(optimizer="adamw")
    assert (sgd.effective_lr, sgd.effective_weight_decay) == (0.05, 5e-4)
    assert (adamw.effective_lr, adamw.effective_weight_decay) == (1e-3, 0.05)
    assert TrainConfig(lr=0.2, weight_decay=0.0).effective_lr == 0.2
    assert dataclasses.replace(sgd, optimizer="adamw").effective_lr == 1e-3


def test_weight_decay_skips_norms_and_biases():
    model = tiny_cnn()
    opt = make_optimizer(model, TrainConfig(weight_decay=1e-3))
    decays = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays[id(model[0].weight)] == 1e-3
    assert decays[id(model[8].weight)] == 1e-3
    assert decays[id(model[1].weight)] == 0.0
    assert decays[id(model[8].bias)] == 0.0
    assert len(decays) == sum(1 for _ in model.parameters())


def test_lr_schedule_warmup_then_cosine_to_zero():
    factors = [lr_factor(s, 10, 2) for s in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert all(a > b for a, b in zip(factors[2:], factors[3:], strict=False))
    assert 0 < factors[-1] < 0.05
    assert lr_factor(0, 1, 0) == 1.0


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
