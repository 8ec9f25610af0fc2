"""Running DARTS through the study: one trial per epoch's derived genome, then the retrained winner."""

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
    from nasbench.space import Genome
    from nasbench.strategies._darts import DartsEpoch, DartsSearch
    from nasbench.train import TrainConfig

__all__ = ["DartsOutcome", "run_darts", "plot_alphas"]

logger = logging.getLogger(__name__)


@dataclass
class DartsOutcome:
    """The derived genome, its supernet metrics, and the retrained metrics when asked."""

    genome: Genome
    metrics: dict[str, Any]
    resumed_epoch: int
    trials: list[int]


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
    }
    if report.predicted_latency_ms is not None:
        metrics.update(latency_ms=report.predicted_latency_ms, expected_latency_ms=report.expected_latency_ms,
                       latency_source="predicted")
    return metrics


def run_darts(search: DartsSearch, recorder: StudyRecorder, objectives: Objectives, *, checkpoint: str | Path,
              retrain: TrainConfig | None = None, seed: int = 0, device: str = "auto",
              on_epoch: Callable[[DartsEpoch], None] | None = None) -> DartsOutcome:
    """Search (resuming from ``checkpoint``), record each epoch, then retrain the winner if asked.

    Every epoch's derived genome is a trial (strategy ``darts``, value = supernet validation
    accuracy, alpha per edge in the ``alpha`` attribute). An epoch already in the study (the
    driver died between recording and checkpointing) is not recorded twice. With ``retrain``
    the final genome is trained from scratch and recorded as strategy ``darts-retrain`` with
    its test accuracy.
    """
    from nasbench.train import train_model

    resumed = search.epoch if search.load(checkpoint) else 0
    done_epochs = {t.user_attrs.get("epoch") for t in recorder.study.get_trials(deepcopy=False)
                   if t.user_attrs.get("strategy") == "darts"}
    trials: list[int] = []

    def record(report: DartsEpoch) -> None:
        if report.epoch not in done_epochs:
            done_epochs.add(report.epoch)
            metrics = _epoch_metrics(search, report)
            started = dt.datetime.now() - dt.timedelta(seconds=report.seconds)
            trials.append(recorder.record(report.genome, Evaluation(objectives.values(metrics), metrics),
                                          strategy="darts", started=started, extra={"search_seed": seed}))
        if on_epoch is not None:
            on_epoch(report)

    for report in search.history:  # epochs checkpointed by an older run but never recorded
        if report.epoch not in done_epochs:
            record(report)
            done_epochs.add(report.epoch)
    search.run(record, checkpoint=checkpoint)
    final = search.history[-1]
    metrics = _epoch_metrics(search, final)
    metrics.pop("alpha")
    metrics = {f"supernet_{k}" if k in ("val_accuracy", "val_loss", "train_loss") else k: v
               for k, v in metrics.items()}
    if retrain is not None:
        previous = [t for t in recorder.study.get_trials(deepcopy=False)
                    if t.user_attrs.get("strategy") == "darts-retrain" and t.user_attrs.get("genome_hash") == final.genome.hash]
        if previous:
            metrics.update({k: v for k, v in previous[-1].user_attrs.items() if k.startswith(("val_", "test_"))})
        else:
            import torch

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = search.space.build(final.genome, num_classes=search.data.num_classes,
                                           input_shape=search.data.input_shape)
            started = dt.datetime.now()
            result = train_model(model, search.data, retrain, seed=seed, device=device, evaluate_test=True)
            r = result.to_dict()
            if "latency_ms" in metrics:
                r["latency_ms"] = metrics["latency_ms"]
            trials.append(recorder.record(final.genome, Evaluation(objectives.values(r), r), strategy="darts-retrain",
                                          started=started, extra={"search_seed": seed}))
            metrics.update({k: v for k, v in r.items() if k.startswith(("val_", "test_"))})
            metrics["retrain_epochs"] = retrain.epochs
    return DartsOutcome(final.genome, metrics, resumed, trials)


def plot_alphas(search: DartsSearch, path: str | Path) -> Path:
    """PNG heatmap of softmax(alpha) per edge and op (rows) over epochs (columns), one panel per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = list(search.net.alphas)
    rows = {c: [f"{e} {op}" for e in search.net.edge_labels(c) for op in search.net.op_names(c)] for c in cells}
    height = max(3.0, 0.16 * max(len(r) for r in rows.values()) + 1.5)
    fig, axes = plt.subplots(1, len(cells), figsize=(5.5 * len(cells), height), squeeze=False)
    for ax, c in zip(axes[0], cells):
        data = np.array([np.array(h.probabilities[c]).reshape(-1) for h in search.history]).T
        im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(0.5, float(data.max())))
        ax.set_yticks(range(len(rows[c])), rows[c], fontsize=6)
        ax.set_xticks(range(len(search.history)), [str(h.epoch) for h in search.history], fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_title(f"softmax(alpha), cell {c}")
        fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
