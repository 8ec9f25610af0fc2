"""Evaluators: turn a genome into an ``Evaluation`` (train from scratch and measure)."""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nasbench.errors import NasbenchError
from nasbench.objectives import Evaluation, Objectives

if TYPE_CHECKING:
    from nasbench.space import Genome
    from nasbench.train import TrainConfig

__all__ = ["TrainingEvaluator", "trial_seed"]

logger = logging.getLogger(__name__)


def _predictor(path: str, space):  # noqa: ANN001, ANN202
    """One predictor per (profile file as it is now, space) in this process."""
    from pathlib import Path

    p = Path(path).resolve()
    stamp = p.stat().st_mtime_ns if p.is_file() else 0
    return _cached_predictor(str(p), stamp, space)


@functools.lru_cache(maxsize=4)
def _cached_predictor(path: str, stamp: int, space):  # noqa: ANN001, ANN202
    from nasbench.hardware import LatencyPredictor, LatencyProfile

    return LatencyPredictor(LatencyProfile.load(path), space)


def trial_seed(seed: int, genome: Genome) -> int:
    """The seed a genome is trained with: fixed by the search seed and the genome, not the order."""
    digest = hashlib.sha256(f"{seed}:{genome.hash}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class TrainingEvaluator:
    """Builds each genome, trains it from scratch on a dataset and reports its metrics.

    Holds only plain settings (the space by name or path, the dataset spec) so it can be
    shipped to worker processes; the space and dataset load once per process.

    Args:
        space: Built-in space name or path of a space file.
        dataset: Dataset spec ``NAME[:PATH]``.
        train: Training settings.
        objectives: Objectives; ``latency`` makes every trial report ``latency_ms`` (predicted
            with ``latency_profile``, else measured on the CPU).
        data_seed: Seed of the train/val/test split (the same for every trial).
        limit: Cap on every split's size (quick runs).
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        measure_latency: Measure latency even when it is not an objective (recorded as
            ``measured_latency_ms``).
        latency_threads: Torch threads while measuring latency (fixed for comparable numbers).
        latency_profile: Path of a latency profile: ``latency_ms`` is then *predicted* by it
            (for objectives and constraints) instead of measured.
    """

    space: str
    dataset: str
    train: TrainConfig
    objectives: Objectives = field(default_factory=lambda: Objectives(("accuracy",)))
    data_seed: int = 0
    limit: int | None = None
    device: str = "auto"
    measure_latency: bool = False
    latency_threads: int = 1
    latency_profile: str | None = None

    def load_data(self):  # noqa: ANN201 - DatasetSplits, imported lazily
        """The dataset splits (cached per process by the data layer)."""
        from nasbench.data import load_dataset

        return load_dataset(self.dataset, seed=self.data_seed, limit=self.limit)

    def predictor(self):  # noqa: ANN201 - LatencyPredictor, imported lazily
        """The latency predictor of ``latency_profile`` (one per process), or None."""
        if self.latency_profile is None:
            return None
        from nasbench._spaces import load_space
        from nasbench.errors import ConfigError

        predictor = _predictor(self.latency_profile, load_space(self.space))
        data = self.load_data()
        prof = predictor.profile
        if tuple(prof.input_shape) != data.input_shape or prof.num_classes != data.num_classes:
            raise ConfigError(
                f"latency profile {self.latency_profile} is for {'x'.join(map(str, prof.input_shape))} inputs and "
                f"{prof.num_classes} classes, the dataset has {'x'.join(map(str, data.input_shape))} and "
                f"{data.num_classes}; re-profile with --input-shape {','.join(map(str, data.input_shape))} "
                f"--num-classes {data.num_classes}")
        return predictor

    def estimate(self, genome: Genome, with_latency: bool = False) -> dict:
        """Params, FLOPs (MACs) and, if asked, latency of ``genome`` without training.

        Latency is predicted with ``latency_profile`` when given, else measured on the CPU.
        """
        import torch

        from nasbench._spaces import load_space
        from nasbench.hardware import count_flops, count_params, measure_latency

        data = self.load_data()
        with torch.random.fork_rng(devices=[]):
            model = load_space(self.space).build(genome, num_classes=data.num_classes, input_shape=data.input_shape)
        out = {"params": count_params(model), "flops": count_flops(model, data.input_shape)}
        if with_latency:
            predictor = self.predictor()
            out["latency_ms"] = (predictor.predict(genome) if predictor is not None
                                 else measure_latency(model, data.input_shape, threads=self.latency_threads))
        return out

    def __call__(self, genome: Genome, seed: int) -> Evaluation:
        """Train ``genome`` with ``seed``; failures become an Evaluation with a reason."""
        import torch

        from nasbench._spaces import load_space
        from nasbench.hardware import measure_latency
        from nasbench.train import resolve_device, train_model

        space = load_space(self.space)
        data = self.load_data()
        metrics: dict = {"seed": seed}
        try:
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(seed)
                model = space.build(genome, num_classes=data.num_classes, input_shape=data.input_shape)
            result = train_model(model, data, self.train, seed=seed, device=self.device)
            metrics.update(result.to_dict())
            predictor = self.predictor()
            if predictor is not None:
                metrics["latency_ms"] = predictor.predict(genome)
                metrics["latency_source"] = f"predicted ({predictor.profile.device_name})"
            measure = self.measure_latency or (predictor is None and "latency" in self.objectives.names)
            if measure:
                ms = measure_latency(model.cpu(), data.input_shape, threads=self.latency_threads)
                metrics["measured_latency_ms"] = ms
                if predictor is None:
                    metrics["latency_ms"], metrics["latency_source"] = ms, "measured (cpu)"
                model.to(resolve_device(self.device))
            return Evaluation(self.objectives.values(metrics), metrics)
        except NasbenchError as exc:
            logger.warning("trial of genome %s failed: %s", genome.hash, exc)
            return Evaluation(None, metrics, failure=str(exc))
        except (RuntimeError, ValueError, TypeError, ArithmeticError, MemoryError) as exc:
            logger.warning("trial of genome %s failed: %s: %s", genome.hash, type(exc).__name__, exc,
                           exc_info=logger.isEnabledFor(logging.DEBUG))
            return Evaluation(None, metrics, failure=f"{type(exc).__name__}: {exc}")
