"""Running DARTS through the study: one trial per epoch's derived genome, then the retrained winner.

The search runs in this process (``DartsSearch``) or in a Ray actor (``RaySupernet`` of a
``DartsJob``); either way this driver alone records the trials and writes the checkpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasbench.objectives import Evaluation, Objectives
from nasbench.runner._study import StudyRecorder

if TYPE_CHECKING:
    from nasbench.data import DatasetSplits
    from nasbench.hardware import LatencyPredictor
    from nasbench.runner._ray_supernet import RaySupernet
    from nasbench.space import CellSpace, Genome
    from nasbench.strategies._darts import DartsConfig, DartsEpoch, DartsSearch
    from nasbench.train import TrainConfig

__all__ = ["DartsJob", "DartsOutcome", "run_darts", "plot_alphas"]

logger = logging.getLogger(__name__)


@dataclass
class DartsOutcome:
    """The derived genome, its supernet metrics, and the retrained metrics when asked."""

    genome: Genome
    metrics: dict[str, Any]
    resumed_epoch: int
    trials: list[int]


@dataclass(frozen=True)
class DartsJob:
    """A DARTS search described by picklable inputs; ``job()`` builds it where it runs (a Ray actor).

    Args:
        space: Built-in space name, ``.py`` file (must exist where the job runs) or a cell space.
        dataset: Dataset spec, loaded where the job runs with ``data_seed`` (default ``seed``)
            and ``limit``; or the splits themselves.
        config: DARTS hyperparameters.
        seed: Seed of the search.
        device: Torch device; ``"auto"`` is resolved where the job runs.
        predictor: Latency predictor of the space (for a latency-aware loss).
        limit: Cap on every split when ``dataset`` is a spec.
        data_seed: Seed of the splits when ``dataset`` is a spec.
        amp: Mixed precision where the job runs (``auto``, ``off``, ``bf16``).
    """

    space: str | CellSpace
    dataset: str | DatasetSplits
    config: DartsConfig
    seed: int = 0
    device: str = "auto"
    predictor: LatencyPredictor | None = None
    limit: int | None = None
    data_seed: int | None = None
    amp: str = "auto"

    def __call__(self) -> DartsSearch:
        """Load the space and data, and build the ``DartsSearch``."""
        from nasbench._spaces import load_space
        from nasbench.data import load_dataset
        from nasbench.strategies._darts import DartsSearch
        from nasbench.train import resolve_device

        data = self.dataset
        if isinstance(data, str):
            data = load_dataset(data, seed=self.seed if self.data_seed is None else self.data_seed, limit=self.limit)
        return DartsSearch(load_space(self.space), data, self.config, seed=self.seed,
                           device=str(resolve_device(self.device)), predictor=self.predictor, amp=self.amp)


class _InProcess:
    """A ``DartsSearch`` in this process behind the interface of ``RaySupernet``."""

    def __init__(self, search: DartsSearch) -> None:
        self.search = search

    @property
    def epoch(self) -> int:
        return self.search.epoch

    @property
    def history(self) -> list[DartsEpoch]:
        return self.search.history

    def load(self, path: str | Path) -> bool:
        return self.search.load(path)

    def apply(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.search, *args)


def _session(search: DartsSearch | RaySupernet) -> Any:
    from nasbench.runner._ray_supernet import RaySupernet

    return search if isinstance(search, RaySupernet) else _InProcess(search)


# Run where the search lives (through ``apply``): module-level, so Ray workers import them.
def _result(search: DartsSearch) -> DartsEpoch:
    """The report whose genome is the answer (the last one unless an early stop picked an earlier one)."""
    return getattr(search, "result", None) or search.history[-1]


def _stopped_at(search: DartsSearch) -> int | None:
    """The epoch an early-stop guard ended the search at, or None."""
    return getattr(search, "stopped_at", None)


def _alpha_layout(search: DartsSearch) -> dict[str, tuple[list[str], list[str]]]:
    """Per cell kind: (edge labels, op names), the rows and columns of its alpha matrix."""
    return {c: (list(search.net.edge_labels(c)), list(search.net.op_names(c))) for c in search.net.alphas}


def _retrain(search: DartsSearch, genome: Genome, config: TrainConfig, seed: int, device: str | None) -> dict[str, Any]:
    import torch

    from nasbench.train import train_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = search.space.build(genome, num_classes=search.data.num_classes, input_shape=search.data.input_shape)
    device = search.device if device in (None, "auto") else device
    return train_model(model, search.data, config, seed=seed, device=device, evaluate_test=True).to_dict()


def _epoch_metrics(search: DartsSearch, report: DartsEpoch) -> dict[str, Any]:
    from nasbench.hardware import count_flops, count_params

    model = search.space.build(report.genome, num_classes=search.data.num_classes, input_shape=search.data.input_shape)
    alpha = {}
    for cell, rows in report.probabilities.items():
        names = search.net.op_names(cell)
        for label, row in zip(search.net.edge_labels(cell), rows):
            alpha[label] = dict(zip(names, row))
    metrics: dict[str, Any] = {
        "epoch": report.epoch, "val_accuracy": report.val_accuracy, "val_loss": report.val_loss,
        "train_loss": report.train_loss, "train_seconds": report.seconds, "params": count_params(model),
        "flops": count_flops(model, search.data.input_shape), "aux_skip": report.aux_skip,
        "latency_weight": report.latency_weight, "alpha": alpha, "accuracy_source": "supernet (shared weights)",
        "parameter_free_edges": getattr(report, "parameter_free_edges", None),
        "dominated": getattr(report, "dominated", None),
    }
    if report.extra.get("phase") == "perturbation":  # one decision of the perturbation selection
        metrics.update(selection_decision=f"{report.extra['decision']}={report.extra['choice']}",
                       selection_scores=report.extra["scores"])
    if report.predicted_latency_ms is not None:
        metrics.update(latency_ms=report.predicted_latency_ms, expected_latency_ms=report.expected_latency_ms,
                       latency_source="predicted")
    return metrics


def run_darts(search: DartsSearch | RaySupernet, recorder: StudyRecorder, objectives: Objectives, *,
              checkpoint: str | Path, retrain: TrainConfig | None = None, seed: int = 0, device: str | None = "auto",
              on_epoch: Callable[[DartsEpoch], None] | None = None) -> DartsOutcome:
    """Search (resuming from ``checkpoint``), record each epoch, then retrain the winner if asked.

    Every epoch's derived genome is a trial (strategy ``darts``, value = supernet validation
    accuracy, alpha per edge in the ``alpha`` attribute). An epoch already in the study (the
    driver died between recording and checkpointing) is not recorded twice. With ``retrain``
    the final genome is trained from scratch and recorded as strategy ``darts-retrain`` with
    its test accuracy.

    ``search`` is a ``DartsSearch`` in this process, or a ``RaySupernet`` of a ``DartsJob``:
    then each epoch, the metrics and the retrain run in its Ray actor, while this process
    records the trials and writes ``checkpoint`` from the state the actor sends back.
    ``device`` is the retrain's device (``"auto"`` or None: the supernet's).
    """
    session = _session(search)
    if session.epoch == 0:  # a caller that already loaded the checkpoint (the CLI, to fail early) is not reloaded
        session.load(checkpoint)
    resumed = session.epoch
    done_epochs = {t.user_attrs.get("epoch") for t in recorder.study.get_trials(deepcopy=False)
                   if t.user_attrs.get("strategy") == "darts"}
    trials: list[int] = []

    def record(report: DartsEpoch) -> None:
        if report.epoch not in done_epochs:
            done_epochs.add(report.epoch)
            metrics = session.apply(_epoch_metrics, report)
            started = dt.datetime.now() - dt.timedelta(seconds=report.seconds)
            trials.append(recorder.record(report.genome, Evaluation(objectives.values(metrics), metrics),
                                          strategy="darts", started=started, extra={"search_seed": seed}))
        if on_epoch is not None:
            on_epoch(report)

    for report in list(session.history):  # epochs checkpointed by an older run but never recorded
        if report.epoch not in done_epochs:
            record(report)
    if isinstance(session, _InProcess):
        session.search.run(record, checkpoint=checkpoint)
    else:  # DartsSearch.run's loop, with the epoch in the actor and the checkpoint written here
        while not session.finished:
            report = session.train_epoch()
            record(report)  # record first: a crash before the checkpoint redoes the epoch
            session.save(checkpoint)
    final = session.apply(_result)
    metrics = session.apply(_epoch_metrics, final)
    metrics.pop("alpha")
    metrics["result_epoch"] = final.epoch
    metrics["stopped_at"] = session.apply(_stopped_at)
    metrics = {f"supernet_{k}" if k in ("val_accuracy", "val_loss", "train_loss") else k: v
               for k, v in metrics.items()}
    if retrain is not None:
        previous = [t for t in recorder.study.get_trials(deepcopy=False)
                    if t.user_attrs.get("strategy") == "darts-retrain" and t.user_attrs.get("genome_hash") == final.genome.hash]
        if previous:
            metrics.update({k: v for k, v in previous[-1].user_attrs.items() if k.startswith(("val_", "test_"))})
        else:
            started = dt.datetime.now()
            r = session.apply(_retrain, final.genome, retrain, seed, device)
            if "latency_ms" in metrics:
                r["latency_ms"] = metrics["latency_ms"]
            trials.append(recorder.record(final.genome, Evaluation(objectives.values(r), r), strategy="darts-retrain",
                                          started=started, extra={"search_seed": seed}))
            metrics.update({k: v for k, v in r.items() if k.startswith(("val_", "test_"))})
            metrics["retrain_epochs"] = retrain.epochs
    return DartsOutcome(final.genome, metrics, resumed, trials)


def plot_alphas(search: DartsSearch | RaySupernet, path: str | Path) -> Path:
    """PNG heatmap of softmax(alpha) per edge and op (rows) over epochs (columns), one panel per cell."""
    session = _session(search)
    layout, history = session.apply(_alpha_layout), session.history
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = list(layout)
    rows = {c: [f"{e} {op}" for e in layout[c][0] for op in layout[c][1]] for c in cells}
    height = max(3.0, 0.16 * max(len(r) for r in rows.values()) + 1.5)
    fig, axes = plt.subplots(1, len(cells), figsize=(5.5 * len(cells), height), squeeze=False)
    for ax, c in zip(axes[0], cells):
        data = np.array([np.array(h.probabilities[c]).reshape(-1) for h in history]).T
        im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(0.5, float(data.max())))
        ax.set_yticks(range(len(rows[c])), rows[c], fontsize=6)
        ax.set_xticks(range(len(history)), [str(h.epoch) for h in history], fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_title(f"softmax(alpha), cell {c}")
        fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
