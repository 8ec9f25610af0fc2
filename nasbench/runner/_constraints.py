"""Hard constraints: a genome that breaks one is redrawn, never evaluated."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nasbench.errors import ConfigError

__all__ = ["Constraints"]

_LIMITS = {"max_params": "params", "max_flops": "flops", "max_latency_ms": "latency_ms"}


@dataclass(frozen=True)
class Constraints:
    """Upper bounds on params, FLOPs (MACs) and latency (ms); None means unbounded."""

    max_params: float | None = None
    max_flops: float | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for name in _LIMITS:
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {v}")

    @property
    def active(self) -> bool:
        """Whether any bound is set."""
        return any(getattr(self, n) is not None for n in _LIMITS)

    @property
    def needs_latency(self) -> bool:
        """Whether checking needs a latency estimate."""
        return self.max_latency_ms is not None

    def violation(self, estimate: Mapping[str, Any]) -> str | None:
        """A one-line reason if ``estimate`` breaks a bound, else None."""
        for name, key in _LIMITS.items():
            bound = getattr(self, name)
            if bound is None:
                continue
            value = float(estimate[key])
            if not math.isfinite(value):
                return f"{key} unknown for this architecture"
            if value > bound:
                return f"{key} {value:.4g} > {bound:.4g}"
        return None

    def to_dict(self) -> dict[str, float | None]:
        """For the study's settings."""
        return {n: getattr(self, n) for n in _LIMITS}
