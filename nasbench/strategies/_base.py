"""The base of sample-based strategies: ask -> evaluate -> tell."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nasbench.objectives import Evaluation, Objectives
    from nasbench.space import Genome, Space

__all__ = ["Strategy"]


class Strategy(abc.ABC):
    """Proposes genomes and learns from their evaluations.

    Call order: ``ask()`` (one or more times, so parallel executors stay busy) ->
    the runner evaluates each genome -> ``tell(genome, evaluation)`` once per asked genome,
    in any order. On resume the runner first calls ``replay(genome, evaluation)`` for
    every stored trial, in trial order, before the first ``ask``.

    RNG rule: all randomness comes from generators seeded by ``seed`` at construction
    (never the global RNG), so the same seed and the same history give the same genomes.

    Args:
        space: The space searched.
        objectives: What is optimized (``objectives.directions`` gives the directions).
        seed: Seed of every random choice.
    """

    #: Registry name; set by subclasses.
    name = "strategy"

    def __init__(self, space: Space, objectives: Objectives, seed: int = 0) -> None:
        self.space = space
        self.objectives = objectives
        self.seed = int(seed)

    @abc.abstractmethod
    def ask(self) -> Genome:
        """The next genome to evaluate."""

    @abc.abstractmethod
    def tell(self, genome: Genome, evaluation: Evaluation) -> None:
        """Report the evaluation of a genome returned by ``ask``."""

    def replay(self, genome: Genome, evaluation: Evaluation) -> None:
        """Learn from a stored trial on resume (default: same as ``tell``)."""
        self.tell(genome, evaluation)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state beyond what replaying the history rebuilds (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` output."""
