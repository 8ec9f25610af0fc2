"""The search loop, evaluators and the Optuna study that records every trial."""

from __future__ import annotations

from nasbench.runner._constraints import Constraints
from nasbench.runner._darts_run import DartsJob
from nasbench.runner._evaluator import TrainingEvaluator, trial_seed
from nasbench.runner._executors import Executor, Finished, LocalExecutor
from nasbench.runner._loop import SearchSummary, resume_seed, run_search
from nasbench.runner._ranking import best_trial, pareto_trials, top_trials
from nasbench.runner._ray import RayExecutor
from nasbench.runner._ray_supernet import RaySupernet
from nasbench.runner._study import (
    DEFAULT_STORAGE,
    StudyRecorder,
    TrialRecord,
    open_storage,
    open_study,
    redact,
)
from nasbench.runner._tune import TuneExecutor
from nasbench.runner._tune_study import CURVE_KEY, PRUNED_KEY, AshaRecorder

__all__ = [
    "Constraints", "DEFAULT_STORAGE", "DartsJob", "Executor", "Finished", "LocalExecutor", "RayExecutor",
    "RaySupernet", "SearchSummary", "StudyRecorder", "TrainingEvaluator", "TrialRecord", "best_trial",
    "open_storage", "open_study", "pareto_trials", "redact", "resume_seed", "run_search", "top_trials", "trial_seed",
    "AshaRecorder", "CURVE_KEY", "PRUNED_KEY", "TuneExecutor",
]
