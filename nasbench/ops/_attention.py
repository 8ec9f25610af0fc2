"""Channel/spatial attention ops (same channels in and out, stride 1): SE, CBAM, ECA."""

from __future__ import annotations

import math

import torch
from torch import nn

from nasbench.ops._activations import make_activation
from nasbench.ops._checks import check_int, check_kernel
from nasbench.ops._registry import register_op

__all__ = ["CBAM", "ECA", "SqueezeExcite", "eca_kernel_size"]


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global average pool -> 1×1 conv -> act -> 1×1 conv -> gate -> scale.

    Args:
        channels: Input (= output) channels.
        hidden: Squeezed channels.
        act: Activation between the two 1×1 convs.
        gate: ``"sigmoid"`` (SENet) or ``"hsigmoid"`` (MobileNetV3).
    """

    def __init__(
        self, channels: int, hidden: int, act: str = "relu", gate: str = "sigmoid"
    ) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = make_activation(act)
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid() if gate == "sigmoid" else make_activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * w


class _ChannelGate(nn.Module):
    """CBAM channel attention: a shared MLP on average- and max-pooled features, summed, sigmoid."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class _SpatialGate(nn.Module):
    """CBAM spatial attention: [channel mean, channel max] -> k×k conv -> BN -> sigmoid."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel gate then spatial gate."""

    def __init__(self, channels: int, hidden: int, spatial_kernel: int = 7) -> None:
        super().__init__()
        self.channel = _ChannelGate(channels, hidden)
        self.spatial = _SpatialGate(spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel size: ``t = int(abs((log2(C) + b) / gamma))``, plus 1 if even."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Efficient Channel Attention (Wang et al., 2020): a 1-D conv across pooled channels, sigmoid."""

    def __init__(self, k_size: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, k_size, padding=k_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x).squeeze(-1).transpose(-1, -2)  # (N, 1, C)
        y = self.conv(y).transpose(-1, -2).unsqueeze(-1)  # (N, C, 1, 1)
        return x * torch.sigmoid(y)


@register_op(
    "se",
    "Squeeze-and-excitation, sigmoid gate (params: reduction)",
    same_channels=True,
    supports_stride=False,
)
def se(C_in: int, C_out: int, stride: int, *, reduction: int = 4) -> nn.Module:
    """SE with ``max(1, C // reduction)`` hidden channels."""
    check_int("reduction", reduction)
    return SqueezeExcite(C_in, max(1, C_in // reduction))


@register_op(
    "cbam",
    "CBAM channel + spatial attention (params: reduction, spatial_kernel)",
    same_channels=True,
    supports_stride=False,
)
def cbam(
    C_in: int, C_out: int, stride: int, *, reduction: int = 16, spatial_kernel: int = 7
) -> nn.Module:
    """CBAM with ``max(1, C // reduction)`` hidden channels in the channel MLP."""
    check_int("reduction", reduction)
    check_kernel("spatial_kernel", spatial_kernel)
    return CBAM(C_in, max(1, C_in // reduction), spatial_kernel)


@register_op(
    "eca",
    "Efficient channel attention, kernel from ECA's formula unless given (params: k_size)",
    same_channels=True,
    supports_stride=False,
)
def eca(C_in: int, C_out: int, stride: int, *, k_size: int | None = None) -> nn.Module:
    """ECA; ``k_size=None`` uses the adaptive size with gamma=2, b=1."""
    if k_size is None:
        k_size = eca_kernel_size(C_in)
    check_kernel("k_size", k_size)
    return ECA(k_size)
