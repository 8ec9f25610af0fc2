"""Hand-computed parameter and MAC counts."""

from __future__ import annotations

from fractions import Fraction

import pytest
from torch import nn

from nasbench.errors import ConfigError
from nasbench.hardware import count_flops, count_params, layer_summary
from nasbench.ops import create_op

C, H = 16, 10


def test_plain_conv_macs_by_hand() -> None:
    conv = nn.Conv2d(C, 2 * C, 3, padding=1)
    assert count_flops(conv, (C, H, H)) == H * H * 2 * C * C * 9  # bias not counted
    strided = nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False)
    assert count_flops(strided, (C, 9, 9)) == 5 * 5 * C * C * 9


def test_depthwise_separable_ratio_is_exact() -> None:
    plain = create_op("conv_3x3", C, C)
    dwsep = create_op("dwsep_conv", C, C)
    plain_macs = count_flops(plain.conv, (C, H, H))
    dw_macs = count_flops(dwsep.depthwise.conv, (C, H, H)) + count_flops(
        dwsep.pointwise.conv, (C, H, H)
    )
    assert Fraction(dw_macs, plain_macs) == Fraction(1, C) + Fraction(1, 9)
    # The whole op adds nothing for BN/activations.
    assert count_flops(dwsep, (C, H, H)) == dw_macs
    assert count_flops(plain, (C, H, H)) == plain_macs


@pytest.mark.parametrize("groups", [2, 4, 8])
def test_grouped_conv_is_one_over_groups(groups: int) -> None:
    dense = count_flops(nn.Conv2d(C, 2 * C, 3, padding=1), (C, H, H))
    grouped = count_flops(nn.Conv2d(C, 2 * C, 3, padding=1, groups=groups), (C, H, H))
    assert grouped * groups == dense


def test_linear_counted_per_row() -> None:
    assert count_flops(nn.Linear(12, 5), (12,)) == 60
    assert count_flops(nn.Linear(12, 5), (3, 12)) == 180  # three rows per sample


def test_small_model_params_and_flops_by_hand() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),  # 216 params
        nn.BatchNorm2d(8),  # 16 params (running stats are buffers)
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 72 + 8 bias
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),  # 80 + 10
    )
    model[0].weight.requires_grad_(False)  # frozen params still count
    assert count_params(model) == 216 + 16 + 80 + 90
    assert count_flops(model, (3, 6, 6)) == 36 * 8 * 27 + 36 * 8 * 9 + 80
    assert count_flops(model, (3, 6, 6), batch_size=4) == count_flops(model, (3, 6, 6))


def test_shared_layer_counts_every_call() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.fc(x))

    assert count_flops(Twice(), (4,)) == 32
    assert count_params(Twice()) == 20


def test_training_mode_restored() -> None:
    model = create_op("mbconv", 8, 8, se=True)
    model.train()
    model.depthwise.eval()  # a mixed state must come back as it was
    before = {n: m.training for n, m in model.named_modules()}
    count_flops(model, (8, 8, 8))
    layer_summary(model, (8, 8, 8))
    assert {n: m.training for n, m in model.named_modules()} == before
    assert model.depthwise.bn.num_batches_tracked == 0  # eval: BN statistics untouched


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
@pytest.mark.parametrize("name", ["mbconv", "resnext", "cbam", "sep_conv_5x5"])
def test_layer_summary_sums_to_total(depth: int, name: str) -> None:
    op = create_op(name, 16, 16, **({"se": True} if name == "mbconv" else {}))
    rows = layer_summary(op, (16, 7, 7), depth=depth)
    assert sum(r["flops"] for r in rows) == count_flops(op, (16, 7, 7)) > 0
    assert all(set(r) == {"name", "type", "out_shape", "params", "flops"} for r in rows)
    assert all(r["name"].count(".") + 1 <= depth for r in rows if r["name"])
    if depth == 0:
        assert [r["name"] for r in rows] == [""]
        assert rows[0]["params"] == count_params(op)


def test_layer_summary_rows() -> None:
    model = nn.Sequential(
        create_op("conv_3x3", 3, 8, 2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    rows = layer_summary(model, (3, 8, 8), depth=2)
    assert [(r["name"], r["type"]) for r in rows] == [
        ("0.conv", "Conv2d"), ("0.bn", "BatchNorm2d"), ("0.act", "ReLU"), ("1", "Flatten"), ("2", "Linear"),
    ]  # fmt: skip
    assert rows[0]["out_shape"] == (8, 4, 4) and rows[-1]["out_shape"] == (10,)
    assert [r["params"] for r in rows] == [216, 16, 0, 0, 1290]
    assert [r["flops"] for r in rows] == [16 * 8 * 27, 0, 0, 0, 1280]
    top = layer_summary(model, (3, 8, 8), depth=1)
    assert [(r["name"], r["params"], r["flops"]) for r in top][0] == ("0", 232, 16 * 8 * 27)


@pytest.mark.parametrize("shape", [(), (3, 0, 8), (3.0, 8, 8)])
def test_bad_input_shape(shape: tuple) -> None:
    with pytest.raises(ConfigError, match="input_shape"):
        count_flops(nn.Conv2d(3, 3, 1), shape)
