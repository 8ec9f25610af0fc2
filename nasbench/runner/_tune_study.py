"""The study of an ASHA search: learning curves as intermediate values, stopped trials PRUNED."""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from nasbench.objectives import Evaluation
from nasbench.runner._study import StudyRecorder, TrialRecord, _json_value

if TYPE_CHECKING:
    from nasbench.space import Genome

__all__ = ["CURVE_KEY", "PRUNED_KEY", "AshaRecorder"]

logger = logging.getLogger(__name__)

#: Metric (and user attribute) with the validation accuracy after each epoch.
CURVE_KEY = "val_accuracy_per_epoch"
#: Metric (and user attribute) of a trial ASHA stopped: the epochs it had trained.
PRUNED_KEY = "pruned_at_epoch"


class AshaRecorder(StudyRecorder):
    """The study of an ASHA search: learning curves as intermediate values, stopped trials PRUNED.

    Why PRUNED rather than COMPLETE: a stopped trial's accuracy is measured after fewer
    epochs than everyone else's, so it must not compete for "best" (``top_trials``,
    ``export``, the dashboard's best trials only look at COMPLETE ones); PRUNED with its
    per-epoch values is what Optuna's own pruners write and what its dashboard draws.
    The strategy is still told the stopped trial's accuracy at its last epoch (an
    Evaluation with ``metrics[PRUNED_KEY]``), on resume too, so it learns the genome is weak.
    A pruned trial counts against the budget and is never evaluated again.
    """

    #: A pruned trial counts against the budget too.
    counted_states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)

    def _finished_trial(self, genome: Genome, evaluation: Evaluation, strategy: str, started: dt.datetime,
                        extra: dict[str, Any]) -> FrozenTrial:
        """The trial of an ended evaluation: PRUNED when ASHA stopped it, with its learning curve."""
        curve = evaluation.metrics.get(CURVE_KEY)
        pruned = evaluation.metrics.get(PRUNED_KEY) is not None
        if not curve and not pruned:
            return super()._finished_trial(genome, evaluation, strategy, started, extra)
        attrs: dict[str, Any] = {k: _json_value(v) for k, v in evaluation.metrics.items()}
        attrs.update(self._attrs(genome, strategy, extra))
        ok = evaluation.ok and all(math.isfinite(v) for v in evaluation.values or ())
        state = TrialState.PRUNED if pruned and ok else TrialState.COMPLETE if ok else TrialState.FAIL
        if not ok:
            attrs["failure"] = evaluation.failure or "non-finite objective value"
        return FrozenTrial(
            number=-1, trial_id=-1, state=state, value=None,
            values=list(evaluation.values) if state == TrialState.COMPLETE else None,  # type: ignore[arg-type]
            datetime_start=started, datetime_complete=dt.datetime.now(),
            params=genome.values, distributions=self.space.optuna_distributions(genome),
            user_attrs=attrs, system_attrs={},
            intermediate_values={i + 1: float(v) for i, v in enumerate(curve or []) if math.isfinite(v)})

    def history(self, skip: set[int] | frozenset[int] = frozenset()) -> list[TrialRecord]:
        """Finished trials, PRUNED ones included (told as their last accuracy), in trial order."""
        def told(t: FrozenTrial, metrics: dict[str, Any]) -> Evaluation:
            acc = metrics.get("val_accuracy")
            values = (float(acc),) if acc is not None else None
            return Evaluation(values, metrics, None if values else "pruned")

        out = super().history(skip) + self.records((TrialState.PRUNED,), told, skip)
        return sorted(out, key=lambda r: r.number)
