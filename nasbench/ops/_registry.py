"""The op registry: ``OpSpec`` values under explicit names, built through ``create_op``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from nasbench.errors import NasbenchError, OpError
from nasbench.registry import Registry

__all__ = ["OPS", "OpSpec", "create_op", "list_ops", "op_spec", "register_op"]

#: Allowed strides: every op keeps ``ceil(H / stride)`` spatial outputs.
STRIDES = (1, 2)


@dataclass(frozen=True)
class OpSpec:
    """How to build one named op.

    Attributes:
        factory: ``factory(C_in, C_out, stride, **params) -> nn.Module``; params are keyword-only.
        doc: One-line description.
        same_channels: The op needs ``C_in == C_out`` (attention ops).
        supports_stride: The op can take stride 2 (else stride 1 only).
    """

    factory: Callable[..., nn.Module]
    doc: str
    same_channels: bool = False
    supports_stride: bool = True

    @property
    def params(self) -> dict[str, Any]:
        """The op's keyword params and their defaults, read from the factory signature."""
        sig = inspect.signature(self.factory)
        return {
            p.name: p.default
            for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }


#: Every named op of the library.
OPS: Registry[OpSpec] = Registry("op")


def register_op(
    name: str, doc: str, *, same_channels: bool = False, supports_stride: bool = True
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a factory ``(C_in, C_out, stride, *, **params)`` as op ``name``."""

    def _add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        OPS.register(name, OpSpec(factory, doc, same_channels, supports_stride))
        return factory

    return _add


def list_ops(pattern: str = "*") -> list[str]:
    """Sorted names of registered ops matching a shell-style wildcard (``"conv*"``)."""
    return OPS.names(pattern)


def op_spec(name: str) -> OpSpec:
    """The ``OpSpec`` registered as ``name``; raises ``UnknownNameError`` listing valid names."""
    return OPS.get(name)


def _check_channel(name: str, label: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OpError(f"op {name!r}: {label} must be a positive int, got {value!r}")


def create_op(name: str, C_in: int, C_out: int, stride: int = 1, **params: Any) -> nn.Module:
    """Build op ``name`` mapping ``(N, C_in, H, W)`` to ``(N, C_out, ceil(H/stride), ceil(W/stride))``.

    Args:
        name: A registered op name (see :func:`list_ops`).
        C_in: Input channels.
        C_out: Output channels.
        stride: 1 or 2.
        **params: The op's own params (see ``op_spec(name).params``).

    Raises:
        UnknownNameError: ``name`` is not registered.
        OpError: A param is unknown or invalid, or the channels/stride do not suit the op.
    """
    spec = OPS.get(name)
    accepted = spec.params
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        listed = ", ".join(accepted) or "none"
        raise OpError(f"op {name!r} got unknown param {unknown[0]!r}; accepted params: {listed}")
    _check_channel(name, "C_in", C_in)
    _check_channel(name, "C_out", C_out)
    if isinstance(stride, bool) or stride not in STRIDES:
        raise OpError(f"op {name!r}: stride must be 1 or 2, got {stride!r}")
    if stride != 1 and not spec.supports_stride:
        raise OpError(
            f"op {name!r} supports stride 1 only, got stride={stride}; put a strided op before it"
        )
    if spec.same_channels and C_in != C_out:
        raise OpError(
            f"op {name!r} needs C_in == C_out, got C_in={C_in}, C_out={C_out}; "
            "add a 1x1 conv to change channels first"
        )
    try:
        module = spec.factory(C_in, C_out, stride, **params)
    except NasbenchError as err:
        raise type(err)(f"op {name!r}: {err}") from None
    except (TypeError, ValueError) as err:  # a value no validator anticipated
        raise OpError(f"op {name!r}: invalid params {params!r} ({err})") from None
    # How the module was made: latency profiling keys its lookup table by this.
    module.nasbench_op = (name, int(C_in), int(C_out), int(stride), tuple(sorted({**accepted, **params}.items())))
    return module
