"""Picking the best trials of a study (single objective or Pareto front)."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from nasbench.errors import StorageError

__all__ = ["top_trials", "best_trial", "pareto_trials"]


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "genome" in t.user_attrs]


def top_trials(study: optuna.Study, n: int = 5) -> list[FrozenTrial]:
    """The ``n`` complete trials with the best first objective (accuracy), best first."""
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(_complete(study), key=lambda t: (sign * t.values[0], t.number))[:n]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Non-dominated complete trials, best first objective first."""
    if len(study.directions) == 1:
        return top_trials(study, 1)
    front = {t.number for t in study.best_trials}
    return [t for t in top_trials(study, len(study.trials)) if t.number in front]


def best_trial(study: optuna.Study, number: int | None = None) -> FrozenTrial:
    """Trial ``number``, or the best by the first objective (on the Pareto front if multi-objective)."""
    if number is not None:
        for t in study.get_trials(deepcopy=False):
            if t.number == number:
                if t.state != TrialState.COMPLETE or "genome" not in t.user_attrs:
                    raise StorageError(f"trial {number} of study {study.study_name!r} is {t.state.name}, not a complete nasbench trial")
                return t
        raise StorageError(f"study {study.study_name!r} has no trial {number}; it has {len(study.trials)} trials")
    ranked = pareto_trials(study)
    if not ranked:
        raise StorageError(f"study {study.study_name!r} has no complete trial yet; run 'nasbench search' first")
    return ranked[0]
