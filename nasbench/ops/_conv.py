"""Convolution ops: Conv-BN-Act in its plain, fixed-kernel, dilated, grouped and separable forms."""

from __future__ import annotations

from torch import nn

from nasbench.ops._activations import make_activation
from nasbench.ops._checks import check_act, check_divides, check_int, check_kernel, same_padding
from nasbench.ops._registry import register_op

__all__ = ["ConvBNAct", "DepthwiseSeparableConv"]


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias, "same" padding) -> BatchNorm2d -> activation.

    Args:
        C_in: Input channels.
        C_out: Output channels.
        kernel_size: Odd kernel size.
        stride: Conv stride.
        dilation: Conv dilation.
        groups: Conv groups (``C_in`` for depthwise).
        act: Activation name (``"none"`` for conv-BN only).
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            C_in,
            C_out,
            kernel_size,
            stride=stride,
            padding=same_padding(kernel_size, dilation),
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(C_out)
        self.act = make_activation(act)


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise k×k (strided) -> BN -> act, then pointwise 1×1 -> BN -> act (MobileNetV1)."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int = 3, stride: int = 1, act: str = "relu"
    ) -> None:
        super().__init__()
        self.depthwise = ConvBNAct(C_in, C_in, kernel_size, stride, groups=C_in, act=act)
        self.pointwise = ConvBNAct(C_in, C_out, 1, 1, act=act)


@register_op("conv", "Conv k×k -> BN -> act (params: kernel_size, dilation, groups, act)")
def conv(
    C_in: int,
    C_out: int,
    stride: int,
    *,
    kernel_size: int = 3,
    dilation: int = 1,
    groups: int = 1,
    act: str = "relu",
) -> nn.Module:
    """Plain Conv-BN-Act."""
    check_kernel("kernel_size", kernel_size)
    check_act("act", act)
    check_int("dilation", dilation)
    check_int("groups", groups)
    check_divides("groups", groups, C_in=C_in, C_out=C_out)
    return ConvBNAct(C_in, C_out, kernel_size, stride, dilation, groups, act)


def _conv_kxk_factory(k: int) -> None:
    def factory(C_in: int, C_out: int, stride: int, *, act: str = "relu") -> nn.Module:
        check_act("act", act)
        return ConvBNAct(C_in, C_out, k, stride, act=act)

    factory.__name__ = factory.__qualname__ = f"conv_{k}x{k}"
    factory.__doc__ = f"Conv {k}x{k} -> BN -> act."
    register_op(f"conv_{k}x{k}", f"Conv {k}×{k} -> BN -> act (params: act)")(factory)


for _k in (1, 3, 5, 7):
    _conv_kxk_factory(_k)


@register_op("dilated_conv", "Dilated conv -> BN -> act (params: kernel_size, dilation, act)")
def dilated_conv(
    C_in: int,
    C_out: int,
    stride: int,
    *,
    kernel_size: int = 3,
    dilation: int = 2,
    act: str = "relu",
) -> nn.Module:
    """Conv-BN-Act with a dilated kernel (receptive field grows, cost does not)."""
    check_kernel("kernel_size", kernel_size)
    check_act("act", act)
    check_int("dilation", dilation)
    return ConvBNAct(C_in, C_out, kernel_size, stride, dilation, act=act)


@register_op("grouped_conv", "Grouped conv -> BN -> act (params: kernel_size, groups, act)")
def grouped_conv(
    C_in: int, C_out: int, stride: int, *, kernel_size: int = 3, groups: int = 4, act: str = "relu"
) -> nn.Module:
    """Conv-BN-Act with ``groups`` groups; both channel counts must be divisible by ``groups``."""
    check_kernel("kernel_size", kernel_size)
    check_act("act", act)
    check_int("groups", groups)
    check_divides("groups", groups, C_in=C_in, C_out=C_out)
    return ConvBNAct(C_in, C_out, kernel_size, stride, groups=groups, act=act)


@register_op(
    "dwsep_conv",
    "Depthwise k×k -> BN -> act -> pointwise 1×1 -> BN -> act (params: kernel_size, act)",
)
def dwsep_conv(
    C_in: int, C_out: int, stride: int, *, kernel_size: int = 3, act: str = "relu"
) -> nn.Module:
    """MobileNetV1 depthwise-separable conv."""
    check_kernel("kernel_size", kernel_size)
    check_act("act", act)
    return DepthwiseSeparableConv(C_in, C_out, kernel_size, stride, act)
