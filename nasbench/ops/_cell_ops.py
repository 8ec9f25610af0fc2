"""Cell ops as DARTS and NAS-Bench-201 publish them: ReLU-Conv-BN, SepConv, DilConv, pools, skip, zero."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasbench.errors import OpError
from nasbench.ops._checks import check_int, check_kernel, same_padding
from nasbench.ops._registry import register_op

__all__ = ["DilConv", "FactorizedReduce", "Pool", "ReLUConvBN", "SepConv", "Zero"]


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias, same padding) -> BN (NAS-Bench-201 ``ReLUConvBN``)."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(
            C_in,
            C_out,
            kernel_size,
            stride,
            same_padding(kernel_size, dilation),
            dilation,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(C_out)


class DilConv(nn.Sequential):
    """DARTS DilConv: ReLU -> depthwise k×k dilated (strided) -> pointwise 1×1 -> BN."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, dilation: int = 2
    ) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.depthwise = nn.Conv2d(
            C_in,
            C_in,
            kernel_size,
            stride,
            same_padding(kernel_size, dilation),
            dilation,
            groups=C_in,
            bias=False,
        )
        self.pointwise = nn.Conv2d(C_in, C_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(C_out)


class SepConv(nn.Sequential):
    """DARTS SepConv: DilConv-like unit (dilation 1, strided, C_in -> C_in), then one more to C_out."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.unit1 = DilConv(C_in, C_in, kernel_size, stride, dilation=1)
        self.unit2 = DilConv(C_in, C_out, kernel_size, 1, dilation=1)


class FactorizedReduce(nn.Module):
    """DARTS FactorizedReduce: ReLU, two stride-2 1×1 convs (the second shifted by one pixel), concat, BN.

    Odd sizes are zero-padded on the bottom/right before the shift so both halves have
    ``ceil(H / 2)`` rows (as NAS-Bench-201 does). ``C_out`` must be even.
    """

    def __init__(self, C_in: int, C_out: int) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.conv1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv1(x), self.conv2(shifted)], dim=1))


class Pool(nn.Module):
    """3×3 max or average pool (strided); a ReLU-Conv1×1-BN first when channels change (NAS-Bench-201)."""

    def __init__(self, mode: str, C_in: int, C_out: int, stride: int) -> None:
        super().__init__()
        self.preprocess = ReLUConvBN(C_in, C_out, 1) if C_in != C_out else None
        if mode == "max":
            self.pool: nn.Module = nn.MaxPool2d(3, stride, padding=1)
        else:
            self.pool = nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.preprocess(x) if self.preprocess is not None else x)


class Zero(nn.Module):
    """Outputs zeros of shape ``(N, C_out, ceil(H/stride), ceil(W/stride))``; no gradient flows through."""

    def __init__(self, C_out: int, stride: int) -> None:
        super().__init__()
        self.C_out = C_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        s = self.stride
        return x.new_zeros(n, self.C_out, math.ceil(h / s), math.ceil(w / s))

    def extra_repr(self) -> str:
        return f"C_out={self.C_out}, stride={self.stride}"


@register_op("relu_conv_bn", "ReLU -> conv k×k -> BN (params: kernel_size, dilation)")
def relu_conv_bn(
    C_in: int, C_out: int, stride: int, *, kernel_size: int = 3, dilation: int = 1
) -> nn.Module:
    """NAS-Bench-201 ReLUConvBN with a free kernel size."""
    check_kernel("kernel_size", kernel_size)
    check_int("dilation", dilation)
    return ReLUConvBN(C_in, C_out, kernel_size, stride, dilation)


@register_op("relu_conv_bn_1x1", "ReLU -> conv 1×1 -> BN (NAS-Bench-201 nor_conv_1x1)")
def relu_conv_bn_1x1(C_in: int, C_out: int, stride: int) -> nn.Module:
    """NAS-Bench-201 ``nor_conv_1x1``."""
    return ReLUConvBN(C_in, C_out, 1, stride)


@register_op("relu_conv_bn_3x3", "ReLU -> conv 3×3 -> BN (NAS-Bench-201 nor_conv_3x3)")
def relu_conv_bn_3x3(C_in: int, C_out: int, stride: int) -> nn.Module:
    """NAS-Bench-201 ``nor_conv_3x3``."""
    return ReLUConvBN(C_in, C_out, 3, stride)


def _sep_conv_factory(k: int) -> None:
    def factory(C_in: int, C_out: int, stride: int) -> nn.Module:
        return SepConv(C_in, C_out, k, stride)

    factory.__name__ = factory.__qualname__ = f"sep_conv_{k}x{k}"
    factory.__doc__ = f"DARTS ``sep_conv_{k}x{k}``."
    register_op(factory.__name__, f"DARTS separable conv {k}×{k} (two ReLU-dw-pw-BN units)")(
        factory
    )


def _dil_conv_factory(k: int) -> None:
    def factory(C_in: int, C_out: int, stride: int) -> nn.Module:
        return DilConv(C_in, C_out, k, stride, dilation=2)

    factory.__name__ = factory.__qualname__ = f"dil_conv_{k}x{k}"
    factory.__doc__ = f"DARTS ``dil_conv_{k}x{k}``."
    register_op(factory.__name__, f"DARTS dilated separable conv {k}×{k}, dilation 2")(factory)


for _k in (3, 5, 7):
    _sep_conv_factory(_k)
for _k in (3, 5):
    _dil_conv_factory(_k)


@register_op("max_pool_3x3", "3×3 max pool; ReLU-Conv1×1-BN first if channels change")
def max_pool_3x3(C_in: int, C_out: int, stride: int) -> nn.Module:
    """Max pool (NAS-Bench-201 POOLING)."""
    return Pool("max", C_in, C_out, stride)


@register_op(
    "avg_pool_3x3", "3×3 average pool (padding excluded); ReLU-Conv1×1-BN first if channels change"
)
def avg_pool_3x3(C_in: int, C_out: int, stride: int) -> nn.Module:
    """Average pool with ``count_include_pad=False`` (NAS-Bench-201 POOLING)."""
    return Pool("avg", C_in, C_out, stride)


@register_op(
    "factorized_reduce",
    "DARTS FactorizedReduce at stride 2 (even C_out); ReLU-Conv1×1-BN at stride 1",
)
def factorized_reduce(C_in: int, C_out: int, stride: int) -> nn.Module:
    """Halve the resolution without losing odd pixels; at stride 1 only change channels."""
    if stride == 1:
        return ReLUConvBN(C_in, C_out, 1)
    if C_out % 2:
        raise OpError(
            f"C_out must be even at stride 2 (two halves are concatenated), got C_out={C_out}"
        )
    return FactorizedReduce(C_in, C_out)


@register_op("skip", "Identity; FactorizedReduce at stride 2; ReLU-Conv1×1-BN if channels change")
def skip(C_in: int, C_out: int, stride: int) -> nn.Module:
    """Skip connection that adapts shape the way DARTS/NAS-Bench-201 cells do."""
    if stride == 2:
        return factorized_reduce(C_in, C_out, stride)
    if C_in != C_out:
        return ReLUConvBN(C_in, C_out, 1)
    return nn.Identity()


@register_op("zero", "Zeros of the output shape (the 'none' edge of a cell)")
def zero(C_in: int, C_out: int, stride: int) -> nn.Module:
    """The absent edge: contributes nothing."""
    return Zero(C_out, stride)
