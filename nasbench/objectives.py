"""Objectives: which metrics a search optimizes, in which direction, and the result of one evaluation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nasbench.errors import ConfigError

__all__ = ["OBJECTIVES", "Objectives", "Evaluation"]

#: objective name -> (metric key in an evaluation's metrics, direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("val_accuracy", "maximize"),
    "latency": ("latency_ms", "minimize"),
    "params": ("params", "minimize"),
    "flops": ("flops", "minimize"),
}


@dataclass(frozen=True)
class Objectives:
    """An ordered tuple of objective names, e.g. ``("accuracy", "latency")``."""

    names: tuple[str, ...]

    @classmethod
    def parse(cls, text: str | Sequence[str]) -> Objectives:
        """From ``"accuracy,latency"`` or a list of names; unknown or repeated names are refused."""
        names = tuple(n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip())
        if not names:
            raise ConfigError("no objective given; use e.g. --objective accuracy or accuracy,latency")
        for n in names:
            if n not in OBJECTIVES:
                raise ConfigError(f"unknown objective {n!r}; valid: {', '.join(OBJECTIVES)} (comma-separated)")
        if len(set(names)) != len(names):
            raise ConfigError(f"objective listed twice in {','.join(names)}")
        if names[0] != "accuracy":
            raise ConfigError(f"the first objective must be accuracy, got {','.join(names)}; e.g. accuracy,{names[0]}")
        return cls(names)

    @property
    def directions(self) -> list[str]:
        """Optuna directions, one per objective."""
        return [OBJECTIVES[n][1] for n in self.names]

    @property
    def multi(self) -> bool:
        """Whether there is more than one objective."""
        return len(self.names) > 1

    def values(self, metrics: Mapping[str, Any]) -> tuple[float, ...]:
        """Objective values read from an evaluation's metrics."""
        out = []
        for n in self.names:
            key = OBJECTIVES[n][0]
            if metrics.get(key) is None:
                raise ConfigError(f"objective {n!r} needs metric {key!r}, which this evaluator does not report")
            out.append(float(metrics[key]))
        return tuple(out)

    def __str__(self) -> str:
        return ",".join(self.names)


@dataclass(frozen=True)
class Evaluation:
    """What evaluating one genome gave: objective values (None if it failed) and all metrics."""

    values: tuple[float, ...] | None
    metrics: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None

    @property
    def ok(self) -> bool:
        """True when the evaluation finished and produced objective values."""
        return self.values is not None and self.failure is None
