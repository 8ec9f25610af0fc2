"""Running DARTS through the study: one trial per epoch's derived genome, then the retrained winner.

The search runs in this process (``DartsSearch``) or in a Ray actor (``RaySupernet`` of a
``DartsJob``); either way this driver alone records the trials and writes the checkpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
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

__all__ = ["AlphaHeatmap", "AlphaPlot", "DartsJob", "DartsOutcome", "alpha_figure", "alpha_heatmaps", "plot_alphas",
           "run_darts"]

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


def _alpha_state(search: DartsSearch) -> dict[str, Any]:
    """What the heatmap needs besides the history: per cell kind the edge labels, op names and, per
    edge, the index of the op the answer's genome keeps there (None: the genome cuts the edge);
    the answer's epoch and the early stop."""
    result = _result(search)
    layout = _alpha_layout(search)
    chosen: dict[str, list[int | None]] = {}
    for cell, (_, names) in layout.items():
        kept = {(i, j): op for i, j, op in search.space.cell(cell).edges(result.genome.values)}
        chosen[cell] = [names.index(kept[e]) if e in kept else None for e in search.net.edges[cell]]
    return {"layout": layout, "chosen": chosen, "result_epoch": result.epoch,
            "stopped_at": _stopped_at(search)}


def _cell_title(cell: str) -> str:
    """``normal`` -> ``normal cell``; a cell already named ``cell`` (nb201) or ``..._cell`` keeps its name."""
    return cell if cell.lower().endswith("cell") else f"{cell} cell"


@dataclass
class AlphaHeatmap:
    """One panel of the alpha heatmap: a cell kind's softmax(alpha) minus uniform (1/K for K ops).

    Rows are (edge, op) pairs, edge-major (``rows[r]`` e.g. ``e0-1 nor_conv_3x3``); columns are
    the epochs. ``limit`` is the largest absolute deviation, so the colours span ``±limit``.
    ``chosen`` holds, per edge the answer's genome keeps, the row of its op there (for
    perturbation selection the decided op, not necessarily argmax alpha); ``cut`` the edges
    (row groups of ``ops`` rows) the genome does not keep.
    """

    cell: str
    title: str
    edges: list[str]
    op_names: list[str]
    rows: list[str]
    epochs: list[int]
    values: Any  # numpy array, rows x epochs
    limit: float
    chosen: list[int]
    cut: list[int]

    @property
    def ops(self) -> int:
        return len(self.op_names)


@dataclass
class AlphaPlot:
    """The heatmap's panels and what the figure marks beside them."""

    panels: list[AlphaHeatmap]
    result_epoch: int
    stopped_at: int | None
    #: Epoch of the first perturbation-selection decision (None: alpha selection, or none made yet).
    selection_from: int | None

    def subtitle(self, width: int | None = None) -> str:
        """The answer's epoch, the early stop and the selection's start, in lines of at most ``width``
        characters where it can (a part is never split)."""
        parts = [f"answer: epoch {self.result_epoch}'s genome (its op per edge boxed)"]
        if self.stopped_at is not None:
            parts.append(f"early stop at epoch {self.stopped_at}")
        if self.selection_from is not None:
            parts.append(f"perturbation selection from epoch {self.selection_from}")
        lines = [parts[0]]
        for part in parts[1:]:
            if width is not None and len(lines[-1]) + 2 + len(part) > width:
                lines[-1] += ";"
                lines.append(part)
            else:
                lines[-1] += f"; {part}"
        return "\n".join(lines)


def alpha_heatmaps(search: DartsSearch | RaySupernet) -> AlphaPlot:
    """The numbers ``plot_alphas`` draws: per cell kind, softmax(alpha) - 1/K per (edge, op) over the
    epochs, its symmetric limit, the answer's op per edge and the cut edges."""
    import numpy as np

    session = _session(search)
    state, history = session.apply(_alpha_state), list(session.history)
    panels = []
    for cell, (labels, names) in state["layout"].items():
        edges = [label.split(".", 1)[-1] for label in labels]
        k = len(names)
        probs = np.array([np.asarray(h.probabilities[cell], dtype=float).reshape(-1) for h in history]).T
        values = probs - 1.0 / k
        chosen = state["chosen"][cell]
        panels.append(AlphaHeatmap(
            cell=cell, title=f"{_cell_title(cell)}: {len(edges)} edges × {k} ops", edges=edges, op_names=list(names),
            rows=[f"{e} {op}" for e in edges for op in names], epochs=[h.epoch for h in history], values=values,
            limit=float(np.abs(values).max()) if values.size else 0.0,
            chosen=[e * k + op for e, op in enumerate(chosen) if op is not None],
            cut=[e for e, op in enumerate(chosen) if op is None]))
    selection = [h.epoch for h in history if h.extra.get("phase") == "perturbation"]
    return AlphaPlot(panels, state["result_epoch"], state["stopped_at"], selection[0] if selection else None)


def alpha_figure(search: DartsSearch | RaySupernet) -> Any:
    """The alpha heatmap as a matplotlib ``Figure`` (Agg canvas, no pyplot state): one panel per cell
    kind, (edge, op) rows over epoch columns, coloured by softmax(alpha) - 1/K on a diverging scale
    symmetric around 0 (uniform) whose limit is the largest absolute deviation; the answer's op per
    edge boxed, cut edges hatched, the early stop and the start of perturbation selection marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.ticker import FuncFormatter

    plot = alpha_heatmaps(search)
    panels = plot.panels
    epochs = panels[0].epochs
    # the early stop: a dashed line after its epoch; the selection's start: a dotted one before its first
    # decision, unless that is the same place (a selection that follows the stop)
    lines, legend = [], []
    if plot.stopped_at is not None and plot.stopped_at in epochs:
        lines.append((epochs.index(plot.stopped_at) + 0.5, "--"))
        legend.append(("--", f"early stop (after epoch {plot.stopped_at})" + (
            ", then perturbation selection" if plot.selection_from == plot.stopped_at + 1 else "")))
    if plot.selection_from is not None and plot.selection_from in epochs and plot.selection_from != (
            None if plot.stopped_at is None else plot.stopped_at + 1):
        lines.append((epochs.index(plot.selection_from) - 0.5, ":"))
        legend.append((":", "perturbation selection begins"))
    height = max(4.0, 0.16 * max(len(p.rows) for p in panels) + 2.4)
    fig = Figure(figsize=(6.0 * len(panels), height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, p in zip(axes, panels):
        limit = p.limit if p.limit > 0 else 1e-6  # nothing moved: a neutral field
        im = ax.imshow(p.values, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        n_epochs = len(p.epochs)
        ax.set_yticks(range(len(p.rows)), p.rows, fontsize=6)
        ax.set_xticks(range(n_epochs), [str(e) for e in p.epochs], fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_title(p.title, fontsize=10)
        for e in range(1, len(p.edges)):  # one band of K rows per edge
            ax.axhline(e * p.ops - 0.5, color="0.55", lw=0.6)
        for e in p.cut:
            ax.add_patch(Rectangle((-0.5, e * p.ops - 0.5), n_epochs, p.ops, fill=False, hatch="///",
                                   edgecolor="0.45", lw=0))
        for r in p.chosen:
            ax.add_patch(Rectangle((-0.5, r - 0.5), n_epochs, 1, fill=False, edgecolor="black", lw=1.4, clip_on=False))
        labels = ax.get_yticklabels()
        for r in p.chosen:
            labels[r].set_fontweight("bold")
        for e in p.cut:
            for label in labels[e * p.ops:(e + 1) * p.ops]:
                label.set_color("0.5")
        for x, style in lines:
            ax.axvline(x, color="black", ls=style, lw=1.2)
        if plot.result_epoch in p.epochs:
            ax.get_xticklabels()[p.epochs.index(plot.result_epoch)].set_fontweight("bold")
        digits = max(2, 1 - math.floor(math.log10(limit)))
        bar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02,
                           format=FuncFormatter(lambda x, _, d=digits: f"{x:+.{d}f}" if round(x, d) else "0"))
        bar.set_label(f"softmax(α) − 1/{p.ops}   (0: uniform)\nlimits ± max |deviation| = "
                      f"±{p.limit:.{digits + 1}f}", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    fig.suptitle(f"DARTS softmax(α): change from uniform per edge and op\n"
                 f"{plot.subtitle(width=int(14 * fig.get_figwidth()))}", fontsize=9)
    handles = [Patch(fill=False, edgecolor="black", lw=1.4, label="op the answer keeps")]
    if any(p.cut for p in panels):
        handles.append(Patch(fill=False, hatch="///", edgecolor="0.45", label="edge the answer cuts"))
    handles += [Line2D([], [], color="black", ls=style, label=text) for style, text in legend]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False)
    return fig


def plot_alphas(search: DartsSearch | RaySupernet, path: str | Path) -> Path:
    """Write ``alpha_figure`` as a PNG to ``path``; return the path."""
    fig = alpha_figure(search)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
