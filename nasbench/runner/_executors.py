"""Executors: where evaluations run. The driver alone talks to the study."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nasbench.objectives import Evaluation
    from nasbench.space import Genome

__all__ = ["Executor", "Finished", "LocalExecutor"]

Evaluator = Callable[["Genome", int], "Evaluation"]


@dataclass
class Finished:
    """One evaluation that came back."""

    genome: Genome
    seed: int
    evaluation: Evaluation
    started: dt.datetime
    attempts: int = 1


class Executor:
    """Runs evaluations; ``slots`` of them may be in flight at once.

    Call order: ``submit`` while fewer than ``slots`` are pending -> ``wait`` returns at least
    one finished evaluation (blocking) -> ... -> ``shutdown``. Executors never write the study.
    """

    slots = 1

    def submit(self, genome: Genome, seed: int) -> None:
        """Start evaluating ``genome`` with training seed ``seed``."""
        raise NotImplementedError

    def wait(self) -> list[Finished]:
        """Block until at least one submitted evaluation finished; return the finished ones."""
        raise NotImplementedError

    @property
    def pending(self) -> int:
        """Submitted evaluations not yet returned by ``wait``."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Release resources (cancel what is still running)."""


class LocalExecutor(Executor):
    """In-process, one evaluation at a time, no start-up cost (the default)."""

    slots = 1

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self._queue: deque[tuple[Genome, int]] = deque()

    def submit(self, genome: Genome, seed: int) -> None:
        """Queue ``genome``; it is evaluated by the next ``wait``."""
        self._queue.append((genome, seed))

    def wait(self) -> list[Finished]:
        """Evaluate the oldest queued genome here and now."""
        genome, seed = self._queue[0]
        started = dt.datetime.now()
        evaluation = self.evaluator(genome, seed)
        self._queue.popleft()
        return [Finished(genome, seed, evaluation, started)]

    @property
    def pending(self) -> int:
        """Queued genomes."""
        return len(self._queue)

    def __repr__(self) -> str:
        return "LocalExecutor()"


