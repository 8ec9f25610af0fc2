"""An evaluator that answers from a tabular benchmark instead of training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nasbench.errors import NasbenchError
from nasbench.objectives import Evaluation, Objectives

if TYPE_CHECKING:
    from nasbench.benchmarks._nb201 import NB201
    from nasbench.space import Genome

__all__ = ["BenchmarkEvaluator"]


@dataclass(frozen=True)
class BenchmarkEvaluator:
    """``evaluator(genome, seed) -> Evaluation`` from NAS-Bench-201 tables.

    Args:
        benchmark: The loaded tables.
        dataset: cifar10, cifar100 or imagenet16.
        objectives: Objectives (``latency`` needs ``device``).
        device: Latency column (e.g. ``raspi4``), or None.
        epochs: 200 (default) or 12 (the cheap low-fidelity results).
    """

    benchmark: NB201
    dataset: str = "cifar10"
    objectives: Objectives = Objectives(("accuracy",))
    device: str | None = None
    epochs: int = 200

    def __post_init__(self) -> None:
        self.benchmark.dataset_name(self.dataset)
        if self.device is not None:
            self.benchmark.check_device(self.device)
        elif "latency" in self.objectives.names:
            raise NasbenchError("a latency objective on NAS-Bench-201 needs --device-latency DEVICE "
                                f"(one of {', '.join(self.benchmark.latency_devices) or 'the latency table columns'})")

    def estimate(self, genome: Genome, with_latency: bool = False) -> dict:
        """Params, FLOPs and (with a device) latency from the tables, for constraints."""
        metrics = self.benchmark.query(genome, self.dataset, device=self.device, epochs=self.epochs)
        if with_latency and "latency_ms" not in metrics:
            raise NasbenchError("a latency constraint on NAS-Bench-201 needs --device-latency DEVICE")
        return metrics

    def __call__(self, genome: Genome, seed: int = 0) -> Evaluation:
        """Look ``genome`` up (``seed`` is unused: the table holds one result per architecture)."""
        metrics = self.benchmark.query(genome, self.dataset, device=self.device, epochs=self.epochs)
        return Evaluation(self.objectives.values(metrics), metrics)
