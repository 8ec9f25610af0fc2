"""Activations by name and the MobileNet channel-rounding rule."""

from __future__ import annotations

from torch import nn

from nasbench.errors import OpError

__all__ = ["ACTIVATIONS", "make_activation", "make_divisible"]

_ACTIVATION_CLASSES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "hsigmoid": nn.Hardsigmoid,
    "silu": nn.SiLU,
    "none": nn.Identity,
}

#: Activation names accepted by :func:`make_activation` (and every op's ``act`` param).
ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATION_CLASSES)


def make_activation(name: str) -> nn.Module:
    """Build a fresh (not in-place) activation module from its name.

    Args:
        name: One of ``relu``, ``relu6``, ``hswish``, ``hsigmoid``, ``silu``, ``none``.

    Raises:
        OpError: ``name`` is not a known activation.
    """
    cls = _ACTIVATION_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise OpError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return cls()


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without going below 90% of it.

    This is the channel rule of MobileNetV2/V3 (``_make_divisible`` in their reference code).

    Args:
        v: The wanted number of channels.
        divisor: The multiple to round to.
        min_value: The smallest result allowed; defaults to ``divisor``.

    Raises:
        OpError: ``divisor`` is not a positive int.
    """
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise OpError(f"make_divisible: divisor must be a positive int, got {divisor!r}")
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # rounding down must not remove more than 10%
        new_v += divisor
    return new_v
