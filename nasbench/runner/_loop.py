"""The search loop: replay the study, then ask -> evaluate -> tell -> record until the budget."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
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
    #: Trials other drivers of the same study finished while this one ran.
    others: int = 0
    interrupted: bool = False
    exhausted: bool = False

    @property
    def finished(self) -> int:
        """Trials counted against the budget (resumed + new + other drivers')."""
        return self.resumed + len(self.new) + self.others


#: Seconds between looks at the study while this driver waits for other drivers' trials.
WAIT_POLL_SECONDS = 1.0


def run_search(strategy: Strategy, evaluator: Evaluator, recorder: StudyRecorder, *, budget: int,
               seed: int, on_trial: OnTrial | None = None,
               history: list[TrialRecord] | None = None, constraints: Constraints | None = None,
               estimate: Estimator | None = None, executor: Executor | None = None) -> SearchSummary:
    """Run ``strategy`` until the study holds ``budget`` finished trials.

    Stored trials are replayed into the strategy first, so re-running the same search
    resumes it. A genome already evaluated (or in flight) is never paid for twice: its
    result is told again and nothing is recorded. The executor keeps up to ``slots``
    evaluations in flight. Ctrl-C stops after recording every finished trial (those in flight
    are given back).

    Any number of drivers may run this on one study at once (same command; one machine or
    many): each genome is reserved in the study before it is trained (``StudyRecorder.reserve``),
    so no genome is trained twice and together they finish exactly ``budget`` trials; each
    driver's strategy is told the others' finished trials as they appear; the reservations of a
    driver that died are re-run (``reclaim_stale``). A driver with nothing left to claim waits
    for the others' trials to finish (or their drivers to die) before it returns.

    Args:
        strategy: Proposes genomes (constructed with ``resume_seed(seed, len(history))``).
        evaluator: ``evaluator(genome, seed) -> Evaluation`` (used by the default local executor).
        recorder: The study.
        budget: Total finished trials wanted in the study.
        seed: Search seed; each trial's training seed derives from it and the genome.
        on_trial: Called after each new trial of this driver with (record, finished count).
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
    known: set[int] = set()  # trial numbers the strategy has been told
    for rec in history:
        strategy.replay(rec.genome, rec.evaluation)
        seen[rec.genome.hash] = rec.evaluation
        known.add(rec.number)
    if history:
        logger.info("resuming study %s: %d of %d trials done", recorder.name, len(history), budget)
    in_flight: dict[str, int] = {}  # genome hash -> extra asks of it waiting for its result
    elsewhere: dict[str, int] = {}  # genome hash reserved by another driver -> our asks waiting for it
    reservations: dict[str, int] = {}  # genome hash -> this driver's reservation (trial id)
    owed: deque[tuple[Genome, bool]] = deque()  # (genome, asked of the strategy) to evaluate before asking again
    repeats = infeasible = 0

    def next_genome() -> Genome | None:
        nonlocal repeats, infeasible
        while True:
            genome = strategy.ask()
            if genome.hash in seen or genome.hash in in_flight or genome.hash in elsewhere:
                if genome.hash in seen:
                    strategy.tell(genome, seen[genome.hash])
                elif genome.hash in in_flight:
                    in_flight[genome.hash] += 1
                else:
                    elsewhere[genome.hash] += 1
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

    def absorb_others() -> None:
        """Tell the strategy the trials other drivers finished since the last look."""
        for rec in recorder.history(skip=known):
            known.add(rec.number)
            if rec.genome.hash in reservations:  # ours, recorded below (or a lost race: ours goes on)
                continue
            waiting = elsewhere.pop(rec.genome.hash, 0)
            for i, (g, asked) in enumerate(owed):  # a genome owed here that another driver finished
                if g.hash == rec.genome.hash:
                    del owed[i]
                    waiting += int(asked)
                    break
            for _ in range(waiting):
                strategy.tell(rec.genome, rec.evaluation)
            if not waiting and rec.genome.hash not in seen:
                strategy.replay(rec.genome, rec.evaluation)
            seen[rec.genome.hash] = rec.evaluation
            summary.others += 1

    def claim(genome: Genome, asked: bool) -> str:
        """Reserve ``genome`` and submit it: "ok", "taken" (another driver has it) or "full" (no budget left)."""
        got = recorder.reserve(genome, budget, strategy=strategy.name)
        if got == "taken":
            if asked:  # told when the other driver's result shows up
                elsewhere[genome.hash] = elsewhere.get(genome.hash, 0) + 1
            return "taken"
        if got == "full":
            owed.appendleft((genome, asked))  # not evaluated: the next free slot (a dead driver's) takes it first
            return "full"
        reservations[genome.hash] = int(got)
        # asks of it that waited on another driver (which gave it back or died) are told with this result
        in_flight[genome.hash] = elsewhere.pop(genome.hash, 0)
        executor.submit(genome, trial_seed(seed, genome))
        return "ok"

    try:
        while True:
            owed.extend((g, False) for g in recorder.reclaim_stale())
            absorb_others()
            if summary.finished >= budget:
                break
            full = False
            while ((owed or not summary.exhausted) and executor.pending < executor.slots
                   and summary.finished + executor.pending < budget):
                genome, asked = owed.popleft() if owed else (next_genome(), True)
                if genome is None:
                    break
                if genome.hash in seen or genome.hash in in_flight:  # an owed genome finished meanwhile
                    if asked:
                        if genome.hash in seen:
                            strategy.tell(genome, seen[genome.hash])
                        else:
                            in_flight[genome.hash] += 1
                    continue
                outcome = claim(genome, asked)
                if outcome == "full":
                    full = True
                    break
            if executor.pending == 0:
                if recorder.live_reservations():  # other drivers' trials: wait for them (or their drivers' end)
                    time.sleep(WAIT_POLL_SECONDS)
                    continue
                if full:  # nothing runs anywhere now: finished meanwhile, or a driver died (reclaimed at the top)
                    reclaimed = recorder.reclaim_stale()
                    owed.extend((g, False) for g in reclaimed)
                    absorb_others()
                    if summary.finished < budget and not reclaimed:
                        logger.warning("the study's trials fill the budget of %d, but only %d of them are trials of "
                                       "this space that finished; stopping", budget, summary.finished)
                        break
                    continue
                break  # exhausted: the strategy proposes nothing new
            for done in executor.wait():
                genome, evaluation = done.genome, done.evaluation
                strategy.tell(genome, evaluation)
                for _ in range(in_flight.pop(genome.hash, 0)):
                    strategy.tell(genome, evaluation)
                extra = {"search_seed": seed, "trial_seed": done.seed}
                if done.attempts > 1:
                    extra["attempts"] = done.attempts
                number = recorder.record(genome, evaluation, strategy=strategy.name, started=done.started, extra=extra,
                                         reservation=reservations.pop(genome.hash, None))
                known.add(number)
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
        for trial_id in reservations.values():  # in flight here: back to the search for another driver
            recorder.release(trial_id, f"driver {recorder.driver} stopped before finishing it")
        recorder.close()
    return summary
