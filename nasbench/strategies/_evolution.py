"""Regularized evolution (Real et al., 2019) with crossover and a multi-objective (NSGA-II style) mode."""

from __future__ import annotations

import random
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from nasbench.errors import ConfigError
from nasbench.strategies._base import Strategy
from nasbench.strategies._pareto import crowding_distances, nondominated_ranks

if TYPE_CHECKING:
    from nasbench.objectives import Evaluation, Objectives
    from nasbench.space import Genome, Space

__all__ = ["EvolutionStrategy"]


class EvolutionStrategy(Strategy):
    """Tournament selection, mutation, optional crossover, aging.

    The first ``population_size`` genomes are random. Then each child comes from the
    winner of a tournament of ``tournament_size`` members drawn from the population: with
    probability ``crossover_rate`` it is crossed with a second tournament's winner, then
    mutated with probability ``mutation_rate`` (always when the child would repeat its
    parent). Single objective: the oldest member dies when the population is full (aging).
    Several objectives: survivors are chosen by non-dominated rank, then crowding distance,
    and tournaments compare the same way; the study's Pareto front is the result.

    Failed evaluations (and genomes refused by constraints) never join the population.
    Resuming replays the stored trials in order, which rebuilds the same population.

    Args:
        space: The space (its mutation and crossover operators are used).
        objectives: Objectives; directions come from them.
        seed: Seed of every random choice.
        population_size: P.
        tournament_size: S (1 <= S <= P).
        mutation_rate: Probability to mutate a child (in [0, 1]).
        crossover_rate: Probability to cross two tournament winners (in [0, 1]).
        crossover_mode: ``"uniform"`` or ``"stage"`` (cut between stages/cells).
    """

    name = "evolution"

    def __init__(self, space: Space, objectives: Objectives, seed: int = 0, population_size: int = 20,
                 tournament_size: int = 5, mutation_rate: float = 1.0, crossover_rate: float = 0.0,
                 crossover_mode: str = "uniform") -> None:
        super().__init__(space, objectives, seed)
        if population_size < 2:
            raise ConfigError(f"population size must be >= 2, got {population_size}")
        if not 1 <= tournament_size <= population_size:
            raise ConfigError(f"tournament size must be in 1..{population_size} (the population), got {tournament_size}")
        for name, rate in (("mutation", mutation_rate), ("crossover", crossover_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"{name} rate must be in [0, 1], got {rate}")
        if crossover_mode not in ("uniform", "stage"):
            raise ConfigError(f"crossover mode must be 'uniform' or 'stage', got {crossover_mode!r}")
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.mutation_rate = mutation_rate
        self.crossover_rate = crossover_rate
        self.crossover_mode = crossover_mode
        self._rng = random.Random(seed)
        self._signs = [1.0 if d == "maximize" else -1.0 for d in objectives.directions]
        self._population: deque[tuple[Genome, tuple[float, ...]]] = deque()
        self._random_pending: Counter[str] = Counter()

    @property
    def population(self) -> list[tuple[Genome, tuple[float, ...]]]:
        """Current members as (genome, objective values), oldest first."""
        return [(g, tuple(v * s for v, s in zip(key, self._signs))) for g, key in self._population]

    def ask(self) -> Genome:
        """A random genome while the population fills, then a child of tournament winners."""
        pending = sum(self._random_pending.values())
        if len(self._population) + pending < self.population_size or not self._population:
            genome = self.space.sample(self._rng)
            self._random_pending[genome.hash] += 1
            return genome
        parent = self._tournament()
        child = parent
        if self.crossover_rate and self._rng.random() < self.crossover_rate:
            child = self.space.crossover(parent, self._tournament(), self._rng, self.crossover_mode)
        if child == parent or self._rng.random() < self.mutation_rate:
            child = self.space.mutate(child, self._rng)
        return child

    def tell(self, genome: Genome, evaluation: Evaluation) -> None:
        """Add a successfully evaluated genome; the oldest (or worst-ranked) member leaves."""
        if self._random_pending[genome.hash] > 0:
            self._random_pending[genome.hash] -= 1
        if not evaluation.ok:
            return
        key = tuple(v * s for v, s in zip(evaluation.values, self._signs))  # type: ignore[arg-type]
        self._population.append((genome, key))
        if len(self._population) > self.population_size:
            if self.objectives.multi:
                order = self._order()
                del self._population[order[-1]]
            else:
                self._population.popleft()

    def _order(self) -> list[int]:
        """Member indices best first: by non-dominated rank, then crowding distance, then age."""
        points = [key for _, key in self._population]
        ranks = nondominated_ranks(points)
        crowd = crowding_distances(points, ranks)
        return sorted(range(len(points)), key=lambda i: (ranks[i], -crowd[i], -i))

    def _tournament(self) -> Genome:
        members = self._rng.sample(range(len(self._population)), min(self.tournament_size, len(self._population)))
        if self.objectives.multi:
            position = {i: p for p, i in enumerate(self._order())}
            return self._population[min(members, key=lambda i: position[i])][0]
        return self._population[max(members, key=lambda i: (self._population[i][1], i))][0]

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters (the population itself is rebuilt by replaying the study)."""
        return {"population_size": self.population_size, "tournament_size": self.tournament_size,
                "mutation_rate": self.mutation_rate, "crossover_rate": self.crossover_rate,
                "crossover_mode": self.crossover_mode}
