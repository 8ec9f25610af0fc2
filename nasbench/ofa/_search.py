"""Searching a trained OFA supernet: subnets scored with inherited weights, constrained sampling, export."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasbench.errors import ConfigError, NasbenchError
from nasbench.objectives import Evaluation, Objectives
from nasbench.ofa._supernet import ELASTIC_KINDS, sample_subnet
from nasbench.ofa._train import recalibrate_bn

if TYPE_CHECKING:
    from nasbench.export import Architecture
    from nasbench.hardware import LatencyPredictor
    from nasbench.ofa._train import OFATrainer
    from nasbench.runner import Constraints
    from nasbench.space import Genome, MacroSpace

__all__ = ["SubnetEvaluator", "sample_constrained", "export_subnet"]

logger = logging.getLogger(__name__)


def sample_constrained(space: MacroSpace, n: int, seed: int, constraints: Constraints,
                       estimate: Callable[[Genome], Mapping[str, Any]], *,
                       kinds: frozenset[str] = frozenset(ELASTIC_KINDS), max_draws: int = 10_000) -> list[Genome]:
    """``n`` distinct subnets drawn uniformly and kept only when they meet ``constraints``.

    Raises:
        ConfigError: fewer than ``n`` feasible subnets were found in ``max_draws`` draws.
    """
    rng = random.Random(seed)
    out: dict[str, Genome] = {}
    last = ""
    for _ in range(max_draws):
        g = sample_subnet(space, rng, kinds)
        if g.hash in out:
            continue
        reason = constraints.violation(estimate(g)) if constraints.active else None
        if reason is None:
            out[g.hash] = g
            if len(out) == n:
                return list(out.values())
        else:
            last = reason
    raise ConfigError(f"only {len(out)} of {n} subnets met the constraints in {max_draws} draws (last: {last}); "
                      "loosen the --max-* bounds")


@dataclass
class SubnetEvaluator:
    """Scores a subnet with the supernet's weights: extract, recalibrate BatchNorm, validate.

    Callable as ``evaluator(genome, seed) -> Evaluation`` for ``run_search`` (in this process:
    the supernet stays in memory). Latency is predicted with ``predictor`` when given, else
    measured on the CPU with ``latency_threads`` threads.

    Args:
        trainer: A trained ``OFATrainer`` (its supernet, data and calibration batches).
        objectives: Objectives to report.
        predictor: Latency predictor of the space, or None.
        latency_threads: Torch threads for measured latency.
    """

    trainer: OFATrainer
    objectives: Objectives = field(default_factory=lambda: Objectives(("accuracy",)))
    predictor: LatencyPredictor | None = None
    latency_threads: int = 1

    def estimate(self, genome: Genome, with_latency: bool = False) -> dict[str, Any]:
        """Params, FLOPs (MACs) and, if asked, latency of ``genome`` without evaluating it."""
        import torch

        from nasbench.hardware import count_flops, count_params, measure_latency

        data = self.trainer.data
        with torch.random.fork_rng(devices=[]):
            model = self.trainer.space.build(genome, num_classes=data.num_classes, input_shape=data.input_shape)
        out: dict[str, Any] = {"params": count_params(model), "flops": count_flops(model, data.input_shape)}
        if with_latency:
            out["latency_ms"] = (self.predictor.predict(genome) if self.predictor is not None
                                 else measure_latency(model, data.input_shape, threads=self.latency_threads))
        return out

    def __call__(self, genome: Genome, seed: int) -> Evaluation:
        """Inherited-weight validation accuracy plus cost metrics; failures carry their reason."""
        metrics: dict[str, Any] = {"seed": seed}
        try:
            t0 = time.perf_counter()
            model = self.trainer.net.extract(genome)
            t1 = time.perf_counter()
            recalibrate_bn(model, self.trainer.calibration)
            t2 = time.perf_counter()
            from nasbench.train import evaluate

            d = self.trainer.data
            acc, loss = evaluate(model, d.val_x, d.val_y, device=self.trainer.device, mean=d.mean, std=d.std)
            metrics.update(val_accuracy=acc, val_loss=loss, extract_seconds=t1 - t0, recalibrate_seconds=t2 - t1,
                           eval_seconds=time.perf_counter() - t2, accuracy_source="inherited (OFA supernet)")
            metrics.update(self.estimate(genome, with_latency="latency" in self.objectives.names
                                         or self.predictor is not None))
            if "latency_ms" in metrics:
                metrics["latency_source"] = (f"predicted ({self.predictor.profile.device_name})"
                                             if self.predictor is not None else "measured (cpu)")
            return Evaluation(self.objectives.values(metrics), metrics)
        except NasbenchError as exc:
            logger.warning("subnet %s failed: %s", genome.hash, exc)
            return Evaluation(None, metrics, failure=str(exc))
        except (RuntimeError, ValueError) as exc:
            logger.warning("subnet %s failed: %s: %s", genome.hash, type(exc).__name__, exc)
            return Evaluation(None, metrics, failure=f"{type(exc).__name__}: {exc}")


def export_subnet(trainer: OFATrainer, genome: Genome, path: str | Path,
                  metrics: Mapping[str, Any] | None = None) -> Architecture:
    """Write ``genome`` with its inherited, BN-recalibrated weights and its test accuracy.

    ``nasbench.load_architecture(path).build()`` rebuilds the module with these weights.
    """
    from nasbench.export import save_architecture
    from nasbench.train import evaluate

    model = recalibrate_bn(trainer.net.extract(genome), trainer.calibration)
    d = trainer.data
    test_acc, test_loss = evaluate(model, d.test_x, d.test_y, device=trainer.device, mean=d.mean, std=d.std)
    out = {**(metrics or {}), "test_accuracy": test_acc, "test_loss": test_loss,
           "weights_source": "inherited from the OFA supernet, BatchNorm recalibrated"}
    out.pop("genome", None)
    return save_architecture(path, genome, out, weights=model.cpu(), space=trainer.space,
                             num_classes=d.num_classes, input_shape=d.input_shape)
