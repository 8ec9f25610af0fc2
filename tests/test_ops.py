"""Registry-driven tests: every op builds, keeps the "same"-padding shape contract, and trains."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nasbench.errors import OpError, UnknownNameError
from nasbench.ops import (
    ACTIVATIONS,
    MBConv,
    create_op,
    eca_kernel_size,
    list_ops,
    make_activation,
    make_divisible,
    op_spec,
)

C = 8
C_OTHER = 16


def _cases() -> list[tuple[str, int, int, int]]:
    cases = []
    for name in list_ops():
        spec = op_spec(name)
        for stride in (1, 2) if spec.supports_stride else (1,):
            for c_out in (C,) if spec.same_channels else (C, C_OTHER):
                cases.append((name, stride, C, c_out))
    return cases


CASES = _cases()


def test_registry_has_every_documented_op() -> None:
    expected = {
        "conv", "conv_1x1", "conv_3x3", "conv_5x5", "conv_7x7", "dilated_conv", "grouped_conv",
        "dwsep_conv", "mbconv", "resnet_basic", "resnet_bottleneck", "resnext", "se", "cbam", "eca",
        "max_pool_3x3", "avg_pool_3x3", "skip", "zero", "factorized_reduce", "relu_conv_bn",
        "relu_conv_bn_1x1", "relu_conv_bn_3x3", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7",
        "dil_conv_3x3", "dil_conv_5x5",
    }  # fmt: skip
    assert expected <= set(list_ops())
    assert list_ops("conv_*") == ["conv_1x1", "conv_3x3", "conv_5x5", "conv_7x7"]
    assert all(op_spec(n).doc and "\n" not in op_spec(n).doc for n in list_ops())
    assert {n for n in list_ops() if op_spec(n).same_channels} == {"se", "cbam", "eca"}


@pytest.mark.parametrize(("name", "stride", "c_in", "c_out"), CASES, ids=lambda v: str(v))
def test_op_shapes_and_gradients(name: str, stride: int, c_in: int, c_out: int) -> None:
    torch.manual_seed(0)
    op = create_op(name, c_in, c_out, stride)
    op.train()
    for size in (9, 8):
        x = torch.randn(2, c_in, size, size, requires_grad=True)
        y = op(x)
        side = math.ceil(size / stride)
        assert y.shape == (2, c_out, side, side)
        if name == "zero":
            assert not y.any()
            continue
        y.square().sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        grads = [p.grad for p in op.parameters()]
        assert all(g is not None for g in grads)
        x.grad = None
        op.zero_grad()


def test_zero_has_no_params_and_skip_is_identity() -> None:
    assert list(create_op("zero", C, C_OTHER, 2).parameters()) == []
    x = torch.randn(1, C, 5, 5)
    assert torch.equal(create_op("skip", C, C)(x), x)
    assert isinstance(create_op("skip", C, C), nn.Identity)


def test_avg_pool_excludes_padding() -> None:
    y = create_op("avg_pool_3x3", 1, 1)(torch.ones(1, 1, 4, 4))
    assert torch.allclose(y, torch.ones_like(y))  # count_include_pad=True would give 4/9 at corners


def test_factorized_reduce_uses_both_pixel_phases() -> None:
    op = create_op("factorized_reduce", 1, 2, 2).eval()
    nn.init.ones_(op.conv1.weight)
    nn.init.ones_(op.conv2.weight)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0  # only the shifted (odd) phase sees this pixel
    y = op(x)
    assert not y[0, 0].any()  # the unshifted (even) phase never sees it
    assert y[0, 1, 0, 0] != y[0, 1, 1, 1]


@pytest.mark.parametrize(
    ("stride", "c_out", "residual"), [(1, C, True), (2, C, False), (1, C_OTHER, False)]
)
def test_mbconv_residual_only_when_shape_kept(stride: int, c_out: int, residual: bool) -> None:
    op = create_op("mbconv", C, c_out, stride)
    assert isinstance(op, MBConv) and op.use_residual is residual
    # Zero the projection's BN: the block then outputs exactly its shortcut.
    nn.init.zeros_(op.project.bn.weight)
    nn.init.zeros_(op.project.bn.bias)
    x = torch.randn(1, C, 8, 8)
    y = op.eval()(x)
    assert torch.equal(y, x) if residual else not y.any()


def test_mbconv_expansion_and_se() -> None:
    plain = create_op("mbconv", C, C, expansion=1)
    assert plain.expand is None and plain.depthwise.conv.in_channels == C
    with_se = create_op("mbconv", 16, 24, 2, expansion=6, kernel_size=5, se=True, act="hswish")
    assert with_se.expand.conv.out_channels == 96
    assert with_se.depthwise.conv.kernel_size == (5, 5) and with_se.depthwise.conv.groups == 96
    assert with_se.se.reduce.out_channels == make_divisible(96 // 4, 8) == 24
    assert isinstance(with_se.se.gate, nn.Hardsigmoid)
    assert isinstance(with_se.depthwise.act, nn.Hardswish)


def test_block_widths() -> None:
    bottleneck = create_op("resnet_bottleneck", 16, 32, expansion=4)
    assert bottleneck.conv2.conv.in_channels == 8
    assert isinstance(create_op("resnet_basic", C, C).shortcut, nn.Identity)
    assert not isinstance(create_op("resnet_basic", C, C, 2).shortcut, nn.Identity)
    rx = create_op("resnext", 32, 64, cardinality=8)
    assert rx.conv2.conv.groups == 8 and rx.conv2.conv.in_channels == 32
    assert create_op("grouped_conv", C, C_OTHER).conv.groups == 4
    assert create_op("eca", 64, 64).conv.kernel_size == (eca_kernel_size(64),) == (3,)
    assert eca_kernel_size(256) == 5
    assert create_op("eca", C, C, k_size=5).conv.kernel_size == (5,)
    assert create_op("cbam", 4, 4).channel.mlp[0].out_channels == 1  # 4 // 16 -> at least 1


def test_unknown_op_lists_names() -> None:
    with pytest.raises(UnknownNameError, match="'convv'.*mbconv"):
        create_op("convv", C, C)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("conv", {"kernel": 3}, r"'conv'.*'kernel'.*kernel_size, dilation, groups, act"),
        (
            "sep_conv_3x3",
            {"kernel_size": 5},
            r"'sep_conv_3x3'.*'kernel_size'.*accepted params: none",
        ),
        ("conv", {"kernel_size": 4}, r"'conv'.*kernel_size.*odd"),
        ("conv", {"act": "gelu"}, r"'conv'.*act.*relu6"),
        ("conv_3x3", {"act": "tanh"}, r"'conv_3x3'.*act"),
        ("mbconv", {"expansion": 0.5}, r"'mbconv'.*expansion"),
        ("mbconv", {"se": "yes"}, r"'mbconv'.*se"),
        ("eca", {"k_size": 4}, r"'eca'.*k_size"),
        ("resnext", {"bottleneck_width": 12}, r"'resnext'.*cardinality=8.*bottleneck_width=12"),
        ("se", {"reduction": 0}, r"'se'.*reduction"),
    ],
)
def test_bad_params(name: str, params: dict, match: str) -> None:
    with pytest.raises(OpError, match=match):
        create_op(name, C, C, **params)


@pytest.mark.parametrize(
    ("name", "c_in", "c_out", "stride", "match"),
    [
        ("se", C, C_OTHER, 1, r"'se'.*C_in == C_out"),
        ("cbam", C, C, 2, r"'cbam'.*stride 1 only"),
        ("grouped_conv", 6, 8, 1, r"'grouped_conv'.*groups=4.*C_in=6"),
        ("factorized_reduce", C, 7, 2, r"'factorized_reduce'.*even"),
        ("skip", C, 7, 2, r"'skip'.*even"),
        ("resnet_bottleneck", C, 2, 1, r"'resnet_bottleneck'.*expansion"),
        ("conv", C, C, 3, r"'conv'.*stride must be 1 or 2"),
        ("conv", 0, C, 1, r"'conv'.*C_in"),
    ],
)
def test_bad_channels_or_stride(name: str, c_in: int, c_out: int, stride: int, match: str) -> None:
    with pytest.raises(OpError, match=match):
        create_op(name, c_in, c_out, stride)


def test_activations_and_make_divisible() -> None:
    assert {type(make_activation(a)).__name__ for a in ACTIVATIONS} == {
        "ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "SiLU", "Identity",
    }  # fmt: skip
    with pytest.raises(OpError, match="unknown activation 'gelu'"):
        make_activation("gelu")
    assert make_divisible(24) == 24
    assert make_divisible(10) == 16  # 8 would drop more than 10%
    assert make_divisible(3) == 8
    assert make_divisible(100, 8) == 104
    assert make_divisible(20, 16) == 32  # 16 < 0.9 * 20
