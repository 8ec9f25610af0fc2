"""The search loop: replay the study, then ask -> evaluate -> tell -> record until the budget."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nasbench.errors import ConfigError
from nasbench.objectives import Evaluation
from nasbench.runner._constraints import Constraints
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
               estimate: Estimator | None = None) -> SearchSummary:
    """Run ``strategy`` until the study holds ``budget`` finished trials.

    Stored trials are replayed into the strategy first, so re-running the same search
    resumes it. A genome already evaluated is never paid for twice: its stored result is
    told again and nothing is recorded. Ctrl-C stops after recording every finished
    trial (only the trial in flight is lost).

    Args:
        strategy: Proposes genomes (constructed with ``resume_seed(seed, len(history))``).
        evaluator: ``evaluator(genome, seed) -> Evaluation``.
        recorder: The study.
        budget: Total finished trials wanted in the study.
        seed: Search seed; each trial's training seed derives from it and the genome.
        on_trial: Called after each new trial with (record, finished count).
        history: Stored trials if the caller already read them.
        constraints: Hard bounds; a genome breaking one is told to the strategy as failed
            (``infeasible: ...``), not evaluated, not recorded, and another is drawn.
        estimate: ``estimate(genome) -> {"params", "flops", "latency_ms"}``, needed with constraints.
    """
    from nasbench.runner._evaluator import trial_seed

    if budget < 1:
        raise ConfigError(f"budget must be >= 1, got {budget}")
    history = recorder.history() if history is None else history
    summary = SearchSummary(recorder.name, budget, resumed=len(history))
    seen: dict[str, Evaluation] = {}
    for rec in history:
        strategy.replay(rec.genome, rec.evaluation)
        seen[rec.genome.hash] = rec.evaluation
    if history:
        logger.info("resuming study %s: %d of %d trials done", recorder.name, len(history), budget)
    if constraints is not None and constraints.active and estimate is None:
        raise ConfigError("constraints need an estimator of params/FLOPs/latency")
    repeats = infeasible = 0
    try:
        while summary.finished < budget:
            genome = strategy.ask()
            if genome.hash in seen:
                strategy.tell(genome, seen[genome.hash])
                repeats += 1
                if repeats >= MAX_REPEATS:
                    summary.exhausted = True
                    logger.warning("stopping: the strategy proposed only already-evaluated genomes %d times", repeats)
                    break
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
            started = dt.datetime.now()
            s = trial_seed(seed, genome)
            evaluation = evaluator(genome, s)
            strategy.tell(genome, evaluation)
            number = recorder.record(genome, evaluation, strategy=strategy.name, started=started,
                                     extra={"search_seed": seed, "trial_seed": s})
            seen[genome.hash] = evaluation
            rec = TrialRecord(number, genome, evaluation)
            summary.new.append(rec)
            if on_trial is not None:
                on_trial(rec, summary.finished)
    except KeyboardInterrupt:
        summary.interrupted = True
        logger.warning("interrupted: %d finished trials are in study %s", summary.finished, recorder.name)
    return summary
