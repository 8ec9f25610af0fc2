"""Strategies backed by Optuna samplers: random, TPE, NSGA-II (conditional spaces included)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from nasbench.errors import ConfigError
from nasbench.strategies._base import Strategy

if TYPE_CHECKING:
    from nasbench.objectives import Evaluation, Objectives
    from nasbench.space import Genome, Space

__all__ = ["OptunaStrategy", "RandomStrategy", "TPEStrategy", "NSGA2Strategy"]


class OptunaStrategy(Strategy):
    """Runs an Optuna sampler on a private in-memory study that mirrors the search.

    The space is asked define-by-run (``space.suggest``), so decisions that depth or op
    choices deactivate are never suggested. The system of record stays the runner's
    study; this mirror only feeds the sampler, and ``replay`` rebuilds it on resume.
    """

    def __init__(self, space: Space, objectives: Objectives, seed: int = 0) -> None:
        super().__init__(space, objectives, seed)
        sampler = self._sampler(self.seed)
        self._study = optuna.create_study(directions=objectives.directions, sampler=sampler)
        self._pending: dict[str, list[optuna.trial.Trial]] = {}

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def ask(self) -> Genome:
        """Ask the sampler for the next genome."""
        trial = self._study.ask()
        genome = self.space.suggest(trial)
        self._pending.setdefault(genome.hash, []).append(trial)
        return genome

    def tell(self, genome: Genome, evaluation: Evaluation) -> None:
        """Report the evaluation to the sampler (a failed one as FAIL)."""
        queue = self._pending.get(genome.hash)
        if not queue:
            self.replay(genome, evaluation)
            return
        trial = queue.pop(0)
        if evaluation.ok:
            self._study.tell(trial, list(evaluation.values))  # type: ignore[arg-type]
        else:
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def replay(self, genome: Genome, evaluation: Evaluation) -> None:
        """Add a stored trial to the sampler's history."""
        state = optuna.trial.TrialState.COMPLETE if evaluation.ok else optuna.trial.TrialState.FAIL
        self._study.add_trial(optuna.trial.create_trial(
            params=genome.values, distributions=self.space.optuna_distributions(genome),
            values=list(evaluation.values) if evaluation.ok else None, state=state))  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        """Nothing beyond the history."""
        return {}


class RandomStrategy(OptunaStrategy):
    """Uniform random search (Optuna's RandomSampler over the conditional space)."""

    name = "random"

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)


class TPEStrategy(OptunaStrategy):
    """Tree-structured Parzen estimator (multivariate, grouped for conditional decisions)."""

    name = "tpe"

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              n_startup_trials=10, constant_liar=True)


class NSGA2Strategy(OptunaStrategy):
    """NSGA-II (non-dominated sorting with crowding distance); needs two or more objectives."""

    name = "nsga2"

    def __init__(self, space: Space, objectives: Objectives, seed: int = 0,
                 population_size: int = 20) -> None:
        if not objectives.multi:
            raise ConfigError("nsga2 is multi-objective; use e.g. --objective accuracy,latency or accuracy,params")
        self.population_size = population_size
        super().__init__(space, objectives, seed)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=self.population_size)
