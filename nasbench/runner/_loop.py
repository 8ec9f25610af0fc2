"""The search loop: replay the study, then ask -> evaluate -> tell -> record until the budget."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nasbench.errors import ConfigError
from nasbench.objectives import Evaluation
from nasbench.runner._constraints import Constraints
from nasbench.runner._executors import Executor, LocalExecutor
from nasbench.runner._study import StudyRecorder, TrialRecord

if TYPE_CHECKING:
    from nasbench.space import Genome
    from nasbench.strategies import Strategy

__all__ = ["SearchSummary", "run_search", "resume_seed"]

logger = logging.getLogger(__name__)

Evaluator = Callable[["Genome", int], "Evaluation"]
Estimator = Callable[["Genome"], dict]
OnTrial = Callable[[TrialRecord, int], None]

#: Consecutive constraint violations after which the search gives up.
MAX_INFEASIBLE = 2000
#: Consecutive repeats of already-evaluated genomes after which the space counts as exhausted.
MAX_REPEATS = 200


def resume_seed(seed: int, n_done: int) -> int:
    """Strategy seed for a search resumed after ``n_done`` trials (so it does not restart its sequence)."""
    if n_done == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:{n_done}".encode()).digest()[:4], "little")


@dataclass
class SearchSummary:
    """What a call of ``run_search`` did."""

    study_name: str
    budget: int
    resumed: int = 0
    new: list[TrialRecord] = field(default_factory=list)
    interrupted: bool = False
    exhausted: bool = False

    @property
    def finished(self) -> int:
        """Trials counted against the budget (resumed + new)."""
        return self.resumed + len(self.new)


def run_search(strategy: Strategy, evaluator: Evaluator, recorder: StudyRecorder, *, budget: int,
               seed: int, on_trial: OnTrial | None = None,
               history: list[TrialRecord] | None = None, constraints: Constraints | None = None,
               estimate: Estimator | None = None, executor: Executor | None = None) -> SearchSummary:
    """Run ``strategy`` until the study holds ``budget`` finished trials.

    Stored trials are replayed into the strategy first, so re-running the same search
    resumes it. A genome already evaluated (or in flight) is never paid for twice: its
    result is told again and nothing is recorded. The executor keeps up to ``slots``
    evaluations in flight; only this driver writes the study, one trial per finished
    evaluation. Ctrl-C stops after recording every finished trial (only those in flight
    are lost).

    Args:
        strategy: Proposes genomes (constructed with ``resume_seed(seed, len(history))``).
        evaluator: ``evaluator(genome, seed) -> Evaluation`` (used by the default local executor).
        recorder: The study.
        budget: Total finished trials wanted in the study.
        seed: Search seed; each trial's training seed derives from it and the genome.
        on_trial: Called after each new trial with (record, finished count).
        history: Stored trials if the caller already read them.
        constraints: Hard bounds; a genome breaking one is told to the strategy as failed
            (``infeasible: ...``), not evaluated, not recorded, and another is drawn.
        estimate: ``estimate(genome) -> {"params", "flops", "latency_ms"}``, needed with constraints.
        executor: Where evaluations run (default: in this process, one at a time).
    """
    from nasbench.runner._evaluator import trial_seed

    if budget < 1:
        raise ConfigError(f"budget must be >= 1, got {budget}")
    if constraints is not None and constraints.active and estimate is None:
        raise ConfigError("constraints need an estimator of params/FLOPs/latency")
    executor = executor if executor is not None else LocalExecutor(evaluator)
    history = recorder.history() if history is None else history
    summary = SearchSummary(recorder.name, budget, resumed=len(history))
    seen: dict[str, Evaluation] = {}
    for rec in history:
        strategy.replay(rec.genome, rec.evaluation)
        seen[rec.genome.hash] = rec.evaluation
    if history:
        logger.info("resuming study %s: %d of %d trials done", recorder.name, len(history), budget)
    in_flight: dict[str, int] = {}  # genome hash -> extra asks of it waiting for its result
    repeats = infeasible = 0

    def next_genome() -> Genome | None:
        nonlocal repeats, infeasible
        while True:
            genome = strategy.ask()
            if genome.hash in seen or genome.hash in in_flight:
                if genome.hash in seen:
                    strategy.tell(genome, seen[genome.hash])
                else:
                    in_flight[genome.hash] += 1
                repeats += 1
                if repeats >= MAX_REPEATS:
                    summary.exhausted = True
                    logger.warning("stopping: the strategy proposed only already-evaluated genomes %d times", repeats)
                    return None
                continue
            repeats = 0
            if constraints is not None and constraints.active:
                reason = constraints.violation(estimate(genome))  # type: ignore[misc]
                if reason is not None:
                    strategy.tell(genome, Evaluation(None, {}, failure=f"infeasible: {reason}"))
                    infeasible += 1
                    if infeasible >= MAX_INFEASIBLE:
                        raise ConfigError(f"no feasible architecture in {infeasible} consecutive draws "
                                          f"(last: {reason}); loosen the --max-* constraints")
                    continue
                infeasible = 0
            return genome

    try:
        while summary.finished < budget:
            while (not summary.exhausted and executor.pending < executor.slots
                   and summary.finished + executor.pending < budget):
                genome = next_genome()
                if genome is None:
                    break
                in_flight[genome.hash] = 0
                executor.submit(genome, trial_seed(seed, genome))
            if executor.pending == 0:
                break
            for done in executor.wait():
                genome, evaluation = done.genome, done.evaluation
                strategy.tell(genome, evaluation)
                for _ in range(in_flight.pop(genome.hash, 0)):
                    strategy.tell(genome, evaluation)
                extra = {"search_seed": seed, "trial_seed": done.seed}
                if done.attempts > 1:
                    extra["attempts"] = done.attempts
                number = recorder.record(genome, evaluation, strategy=strategy.name, started=done.started, extra=extra)
                seen[genome.hash] = evaluation
                rec = TrialRecord(number, genome, evaluation)
                summary.new.append(rec)
                if on_trial is not None:
                    on_trial(rec, summary.finished)
    except KeyboardInterrupt:
        summary.interrupted = True
        logger.warning("interrupted: %d finished trials are in study %s", summary.finished, recorder.name)
    finally:
        executor.shutdown()
    return summary
