"""Small validators for op params; each raises a one-line ``OpError`` (create_op adds the op name)."""

from __future__ import annotations

from nasbench.errors import OpError


def check_int(param: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise ``OpError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OpError(f"{param} must be an int >= {minimum}, got {value!r}")
    return value


def check_kernel(param: str, value: object) -> int:
    """Return ``value`` if it is an odd positive int (needed for "same" padding), else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise OpError(f"{param} must be an odd int >= 1 (for same padding), got {value!r}")
    return value


def check_divides(param: str, groups: int, **channels: int) -> None:
    """Raise ``OpError`` unless ``groups`` divides every channel count given as keyword."""
    for label, c in channels.items():
        if c % groups:
            raise OpError(
                f"{param}={groups} must divide {label}={c}; pick a divisor of the channel counts"
            )


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps ``ceil(H / stride)`` outputs for an odd kernel."""
    return dilation * (kernel_size - 1) // 2


def check_act(param: str, value: object) -> str:
    """Return ``value`` if it names a known activation, else raise ``OpError`` listing them."""
    from nasbench.ops._activations import ACTIVATIONS

    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise OpError(f"{param} must be one of {', '.join(ACTIVATIONS)}; got {value!r}")
    return value
