"""Residual blocks: MobileNetV2/V3 inverted residual (MBConv), ResNet basic/bottleneck, ResNeXt."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from nasbench.errors import OpError
from nasbench.ops._activations import make_divisible
from nasbench.ops._attention import SqueezeExcite
from nasbench.ops._checks import check_act, check_divides, check_int, check_kernel
from nasbench.ops._conv import ConvBNAct
from nasbench.ops._registry import register_op

__all__ = ["MBConv", "ResNetBasic", "ResNetBottleneck"]


class MBConv(nn.Module):
    """Inverted residual: [1×1 expand -> BN -> act] -> depthwise k×k -> BN -> act -> [SE] -> 1×1 project -> BN.

    The expand conv is absent when ``mid == C_in``; the identity is added back when
    ``stride == 1`` and ``C_in == C_out`` (``use_residual``).

    Args:
        C_in: Input channels.
        C_out: Output channels.
        stride: Depthwise stride.
        kernel_size: Depthwise kernel size.
        mid: Expanded channels.
        se: Squeeze-excite on the expanded channels (MobileNetV3 form, hard-sigmoid gate).
        act: Activation after expand and depthwise.
    """

    def __init__(
        self, C_in: int, C_out: int, stride: int, kernel_size: int, mid: int, se: bool, act: str
    ) -> None:
        super().__init__()
        self.expand = ConvBNAct(C_in, mid, 1, act=act) if mid != C_in else None
        self.depthwise = ConvBNAct(mid, mid, kernel_size, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid, make_divisible(mid // 4, 8), gate="hsigmoid") if se else None
        self.project = ConvBNAct(mid, C_out, 1, act="none")
        self.use_residual = stride == 1 and C_in == C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return out + x if self.use_residual else out


def _shortcut(C_in: int, C_out: int, stride: int) -> nn.Module:
    """Identity, or 1×1 conv (strided) -> BN when the shape changes."""
    if stride == 1 and C_in == C_out:
        return nn.Identity()
    return ConvBNAct(C_in, C_out, 1, stride, act="none")


class ResNetBasic(nn.Module):
    """ResNet basic block: 3×3 (strided) -> BN -> ReLU -> 3×3 -> BN, plus shortcut, then ReLU."""

    def __init__(self, C_in: int, C_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(C_in, C_out, 3, stride, act="relu")
        self.conv2 = ConvBNAct(C_out, C_out, 3, 1, act="none")
        self.shortcut = _shortcut(C_in, C_out, stride)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetBottleneck(nn.Module):
    """Bottleneck: 1×1 -> 3×3 (strided, grouped for ResNeXt) -> 1×1, each BN, plus shortcut, ReLU.

    The stride sits on the 3×3 conv (ResNet v1.5, as torchvision).
    """

    def __init__(self, C_in: int, C_out: int, stride: int, width: int, groups: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(C_in, width, 1, act="relu")
        self.conv2 = ConvBNAct(width, width, 3, stride, groups=groups, act="relu")
        self.conv3 = ConvBNAct(width, C_out, 1, act="none")
        self.shortcut = _shortcut(C_in, C_out, stride)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


@register_op("mbconv", "MobileNetV2/V3 inverted residual (params: kernel_size, expansion, se, act)")
def mbconv(
    C_in: int,
    C_out: int,
    stride: int,
    *,
    kernel_size: int = 3,
    expansion: float = 6,
    se: bool = False,
    act: str = "relu",
) -> nn.Module:
    """MBConv with ``round(C_in * expansion)`` expanded channels (expand conv skipped at expansion 1)."""
    check_kernel("kernel_size", kernel_size)
    check_act("act", act)
    if isinstance(expansion, bool) or not isinstance(expansion, numbers.Real) or expansion < 1:
        raise OpError(f"expansion must be a number >= 1, got {expansion!r}")
    if not isinstance(se, bool):
        raise OpError(f"se must be True or False, got {se!r}")
    mid = max(1, round(C_in * expansion))
    return MBConv(C_in, C_out, stride, kernel_size, mid, se, act)


@register_op(
    "resnet_basic", "ResNet basic block: two 3×3 conv-BN, ReLU, projection shortcut if needed"
)
def resnet_basic(C_in: int, C_out: int, stride: int) -> nn.Module:
    """ResNet-18/34 block."""
    return ResNetBasic(C_in, C_out, stride)


@register_op(
    "resnet_bottleneck",
    "ResNet bottleneck 1×1 -> 3×3 -> 1×1, width C_out // expansion (params: expansion)",
)
def resnet_bottleneck(C_in: int, C_out: int, stride: int, *, expansion: int = 4) -> nn.Module:
    """ResNet-50 block."""
    check_int("expansion", expansion)
    if C_out < expansion:
        raise OpError(
            f"C_out={C_out} // expansion={expansion} leaves no bottleneck channels; lower expansion"
        )
    return ResNetBottleneck(C_in, C_out, stride, C_out // expansion)


@register_op(
    "resnext", "ResNeXt bottleneck with grouped 3×3 (params: cardinality, bottleneck_width)"
)
def resnext(
    C_in: int, C_out: int, stride: int, *, cardinality: int = 8, bottleneck_width: int | None = None
) -> nn.Module:
    """ResNeXt block; ``bottleneck_width=None`` is ``C_out // 2`` rounded to a multiple of ``cardinality``."""
    check_int("cardinality", cardinality)
    if bottleneck_width is None:
        width = make_divisible(C_out // 2, cardinality)
    else:
        width = check_int("bottleneck_width", bottleneck_width)
        check_divides("cardinality", cardinality, bottleneck_width=width)
    return ResNetBottleneck(C_in, C_out, stride, width, groups=cardinality)
