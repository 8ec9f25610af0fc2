"""Search strategies: ask/tell over genomes. One registry, looked up by name."""

from __future__ import annotations

from nasbench.registry import Registry
from nasbench.strategies._base import Strategy
from nasbench.strategies._darts import (
    COLLAPSE_GUARDS,
    SELECTIONS,
    DartsConfig,
    DartsEpoch,
    DartsSearch,
)
from nasbench.strategies._evolution import EvolutionStrategy
from nasbench.strategies._optuna import NSGA2Strategy, OptunaStrategy, RandomStrategy, TPEStrategy

__all__ = ["STRATEGIES", "Strategy", "OptunaStrategy", "RandomStrategy", "TPEStrategy", "NSGA2Strategy",
           "EvolutionStrategy", "create_strategy",
           "COLLAPSE_GUARDS", "SELECTIONS", "DartsConfig", "DartsEpoch", "DartsSearch"]

#: Strategy name -> class.
STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
for _cls in (RandomStrategy, TPEStrategy, NSGA2Strategy, EvolutionStrategy):
    STRATEGIES.register(_cls.name, _cls)


def create_strategy(name: str, space, objectives, seed: int = 0, **options) -> Strategy:  # noqa: ANN001
    """Instantiate the strategy registered as ``name``."""
    return STRATEGIES.get(name)(space, objectives, seed, **options)
