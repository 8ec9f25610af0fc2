"""Tests for DARTS's alpha heatmap (``best_alphas.png``): colours are softmax(alpha) - 1/K on a scale
symmetric around 0, the answer's op per edge is boxed (cut edges hatched), the early stop and the
perturbation selection are marked, and each panel's title names its cell kind once.

Supernets are the tiny cell spaces of ``test_darts`` on 1x8x8 digits, torch on one thread.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.patches import Rectangle
from test_darts import T201, TDARTS  # the tiny cell spaces

from nasbench.data import DatasetSplits, load_dataset
from nasbench.runner._darts_run import alpha_figure, alpha_heatmaps, plot_alphas
from nasbench.strategies._darts import DartsConfig, DartsSearch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> DatasetSplits:
    return load_dataset("digits", limit=64)


def searched(space, data, **changes) -> DartsSearch:  # noqa: ANN001
    """A finished search of 2 epochs (batch 32: 2 steps each), alpha moved fast enough to see."""
    search = DartsSearch(space, data, DartsConfig(**{"epochs": 2, "batch_size": 32, "selection": "alpha",
                                                     "alpha_lr": 0.05, "collapse_guard": "darts-minus", **changes}))
    search.run()
    return search


def genome_rows(search: DartsSearch, cell: str) -> tuple[list[int], list[int]]:
    """(rows of the ops the answer's genome keeps, edges it cuts) of ``cell``, edge-major rows."""
    names, edges = search.net.op_names(cell), search.net.edges[cell]
    kept = {(i, j): op for i, j, op in search.space.cell(cell).edges(search.result.genome.values)}
    rows = [e * len(names) + names.index(kept[edge]) for e, edge in enumerate(edges) if edge in kept]
    return rows, [e for e, edge in enumerate(edges) if edge not in kept]


def boxes(ax) -> tuple[list[int], list[int]]:  # noqa: ANN001
    """(rows boxed, first rows of hatched bands) drawn on a panel."""
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    boxed = sorted(round(p.get_y() + 0.5) for p in rects if not p.get_hatch())
    hatched = sorted(round(p.get_y() + 0.5) for p in rects if p.get_hatch())
    return boxed, hatched


def test_colours_are_probability_minus_uniform_on_a_symmetric_scale(data: DatasetSplits, tmp_path: Path) -> None:
    search = searched(T201, data)
    plot = alpha_heatmaps(search)
    (panel,) = plot.panels
    k = len(search.net.op_names("cell"))
    expected = np.array([np.array(h.probabilities["cell"]).reshape(-1) for h in search.history]).T - 1 / k
    np.testing.assert_allclose(panel.values, expected)
    assert panel.values.shape == (3 * k, 2) and panel.epochs == [0, 1]
    assert panel.limit == pytest.approx(np.abs(expected).max()) and panel.limit > 0
    assert panel.rows[:k] == [f"e0-1 {op}" for op in search.net.op_names("cell")]

    fig = alpha_figure(search)
    ax = fig.axes[0]
    (image,) = ax.images
    np.testing.assert_allclose(image.get_array(), expected)
    low, high = image.get_clim()
    assert (low, high) == (pytest.approx(-panel.limit), pytest.approx(panel.limit))
    assert image.get_cmap().name == "RdBu_r"  # diverging, white at 0 (uniform)
    colorbar = fig.axes[1].get_ylabel()
    assert f"1/{k}" in colorbar and "max |deviation|" in colorbar and f"{panel.limit:.4f}" in colorbar

    png = plot_alphas(search, tmp_path / "alphas.png")
    assert png == tmp_path / "alphas.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(png).shape[0] > 300


def test_nothing_moved_gives_a_neutral_field_not_an_error(data: DatasetSplits) -> None:
    search = searched(T201, data, alpha_lr=1e-12, epochs=1)
    for h in search.history:  # alpha rounded to uniform
        h.probabilities = {c: [[1 / len(r)] * len(r) for r in rows] for c, rows in h.probabilities.items()}
    assert alpha_heatmaps(search).panels[0].limit == 0.0
    low, high = alpha_figure(search).axes[0].images[0].get_clim()
    assert low == -high and high > 0


def test_titles_name_each_cell_kind_once(data: DatasetSplits) -> None:
    (nb201,) = alpha_figure(searched(T201, data, epochs=1)).axes[:1]
    assert nb201.get_title().startswith("cell:") and nb201.get_title().count("cell") == 1
    fig = alpha_figure(searched(TDARTS, data, epochs=1))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert [t.split(":")[0] for t in titles] == ["normal cell", "reduce cell"]
    assert all(t.count("cell") == 1 for t in titles)
    assert "cell" not in fig.get_suptitle()


def test_the_answer_genomes_op_is_boxed_and_cut_edges_hatched(data: DatasetSplits) -> None:
    search = searched(TDARTS, data)
    plot = alpha_heatmaps(search)
    fig = alpha_figure(search)
    assert plot.result_epoch == search.result.epoch == 1
    for panel, ax in zip(plot.panels, [ax for ax in fig.axes if ax.get_title()]):
        rows, cut = genome_rows(search, panel.cell)
        assert panel.chosen == rows and panel.cut == cut
        assert len(rows) == 4 and len(cut) == 1  # two inputs for each of the 2 nodes; node 3 drops one of 3
        assert boxes(ax) == (rows, [e * panel.ops for e in cut])
        bold = [t.get_text() for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]
        assert bold == [panel.rows[r] for r in rows]


def test_the_boxes_follow_the_genome_not_argmax_alpha(data: DatasetSplits) -> None:
    """Perturbation selection's answer need not be argmax alpha: the box marks the genome's op."""
    search = searched(T201, data, epochs=1)
    probs = search.net.probabilities()["cell"]
    names = search.net.op_names("cell")
    weakest = {label: names[int(probs[e].argmin())] for e, label in enumerate(search.net.edge_labels("cell"))}
    search.history[-1].genome = T201.genome(weakest)  # as if a selection had decided on the weakest ops
    (panel,) = alpha_heatmaps(search).panels
    assert panel.chosen == [e * len(names) + int(probs[e].argmin()) for e in range(3)]
    assert panel.chosen != [e * len(names) + int(probs[e].argmax()) for e in range(3)]
    assert boxes(alpha_figure(search).axes[0])[0] == panel.chosen


def test_perturbation_selection_marks_its_decided_ops_and_where_it_began(data: DatasetSplits) -> None:
    search = searched(T201, data, selection="perturbation", projection_tune_epochs=0)
    assert search.finished and len(search.history) == 2 + 3  # 2 search epochs, one per edge decision
    plot = alpha_heatmaps(search)
    (panel,) = plot.panels
    k = len(panel.op_names)
    assert panel.chosen == [e * k + search.net.fixed_ops["cell"][e] for e in range(3)]
    assert panel.chosen == genome_rows(search, "cell")[0] and panel.cut == []
    assert plot.selection_from == 2 and plot.stopped_at is None and plot.result_epoch == 4
    fig = alpha_figure(search)
    assert "perturbation selection from epoch 2" in fig.get_suptitle()
    assert [line.get_xdata()[0] for line in fig.axes[0].lines if line.get_linestyle() == ":"] == [1.5]


def test_an_early_stop_is_named_in_the_subtitle_and_drawn_after_its_epoch(data: DatasetSplits) -> None:
    search = searched(T201, data, epochs=3, early_stop_warmup=0.0, collapse_guard="early-stop")
    search.stopped_at = 1  # as if the guard had ended the search at epoch 1
    plot = alpha_heatmaps(search)
    assert plot.stopped_at == 1 and plot.result_epoch == search.result.epoch
    fig = alpha_figure(search)
    assert "early stop at epoch 1" in fig.get_suptitle()
    assert f"epoch {search.result.epoch}'s genome" in fig.get_suptitle()
    assert [line.get_xdata()[0] for line in fig.axes[0].lines if line.get_linestyle() == "--"] == [1.5]
    assert any("early stop" in t.get_text() for t in fig.legends[0].get_texts())
    without = searched(T201, data, epochs=1)
    assert "early stop" not in alpha_figure(without).get_suptitle()
