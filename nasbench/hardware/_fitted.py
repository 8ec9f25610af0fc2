"""Latency learned from end-to-end measurements alone (no lookup table), and accuracy metrics.

``FittedLatencyPredictor`` is for devices one can only time whole networks on (a phone,
an accelerator, a benchmark's latency column): measure a few dozen architectures, fit,
predict the rest. The model follows how latency arises, as a sum of per-op costs: a
ridge regression *in milliseconds* (not log-ms) on how many times each value is
chosen per group of decisions (ops per cell, blocks of each op per stage, widths, ...),
how many ops are *live* in cell spaces (on a path from an input to the output, so that
graph compilers that prune dead ops are modelled too), one-hot decisions for position
effects, and any extra numeric features the caller has (FLOPs, params, a lookup-table
sum). It is fitted for relative error (weights 1/measured²) because accuracy is judged as
a share within ±10%. Ridge strength and which of the live and one-hot blocks to use are
chosen by exact (closed-form) leave-one-out cross-validation, so there is nothing to tune and
nothing random. ``experiments/latency_transfer.py`` compares it with other models.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nasbench.errors import ConfigError

if TYPE_CHECKING:
    from nasbench.space import Genome, Space

__all__ = ["FittedLatencyPredictor", "LatencyFeatures", "accuracy_report"]

logger = logging.getLogger(__name__)

#: Candidate weights of the ``live`` and ``onehot`` feature blocks, simplest first (counts
#: and extra features always weigh 1; a larger weight makes a block cheaper for the ridge).
CANDIDATES: tuple[dict[str, float], ...] = (
    {"live": 0.0, "onehot": 0.0}, {"live": 1.0, "onehot": 0.0},
    {"live": 0.0, "onehot": 0.25}, {"live": 1.0, "onehot": 0.25},
    {"live": 0.0, "onehot": 1.0}, {"live": 1.0, "onehot": 1.0},
)
#: Candidate ridge strengths, for latencies in units of their median.
ALPHAS = tuple(float(a) for a in np.logspace(-6, 3, 19))
#: A later candidate must cut the leave-one-out error by more than this share to be chosen.
PARSIMONY = 0.05


class LatencyFeatures:
    """Genome -> numeric features for latency models, for any space.

    Blocks, in this column order:

    * ``counts``: for every (group, kind, value set) of decisions, how many active
      decisions take each value (ops per cell in NB201, bottleneck blocks in a stage, a
      stage's width as a one-hot of one decision, ...).
    * ``live`` (cell spaces only): per cell, how many edges of each op lie on a path from
      an input to the output, plus 1.0 when the output is cut off from every input. Zero
      ops are left out of the cell graph, so an op fed only through them is not live.
    * ``onehot``: ``space.to_features`` (which decision took which value, by position).

    Args:
        space: The space whose genomes are turned into features.
    """

    def __init__(self, space: Space) -> None:
        self.space = space
        keys: dict[tuple[str, str, tuple[Any, ...]], int] = {}
        self._count_index: list[tuple[int, int]] = []  # per decision: (first column, width)
        names: list[str] = []
        for d in space.decisions:
            key = (d.group, d.kind, tuple(d.values))
            if key not in keys:
                keys[key] = len(names)
                names.extend(f"count[{d.group}.{d.kind}={v}]" for v in d.values)
            self._count_index.append((keys[key], len(d.values)))
        n_counts = len(names)
        self._cells: list[tuple[str, list[str]]] = []
        if space.kind == "cell":
            for c in space.cells:  # type: ignore[attr-defined]
                ops = [v for v in c.op_values if c.registry_op(v)[0] != "zero"]
                self._cells.append((c.name, ops))
                names.extend(f"live[{c.name}.{v}]" for v in ops)
                names.append(f"disconnected[{c.name}]")
        n_live = len(names) - n_counts
        names.extend(f"onehot[{d.label}={v}]" for d in space.decisions for v in d.values)
        self.names: list[str] = names
        self.blocks: dict[str, slice] = {
            "counts": slice(0, n_counts),
            "live": slice(n_counts, n_counts + n_live),
            "onehot": slice(n_counts + n_live, len(names)),
        }

    def transform(self, genomes: Sequence[Genome]) -> np.ndarray:
        """Feature matrix (len(genomes), len(names)), float64; genomes are validated first."""
        out = np.zeros((len(genomes), len(self.names)))
        onehot = self.blocks["onehot"]
        for row, genome in enumerate(genomes):
            g = self.space.validate(genome)
            hot = self.space.to_features(g)
            out[row, onehot] = hot
            offset = 0
            for first, width in self._count_index:
                out[row, first:first + width] += hot[offset:offset + width]
                offset += width
            if self._cells:
                out[row, self.blocks["live"]] = self._live(g)
        return out

    def _live(self, genome: Genome) -> list[float]:
        import networkx as nx

        out: list[float] = []
        for cell, ops in self._cells:
            graph = self.space.to_graph(genome, cell=cell)
            inputs = [n for n, r in graph.nodes(data="role") if r == "input"]
            outputs = [n for n, r in graph.nodes(data="role") if r == "output"]
            fed = set(inputs).union(*(nx.descendants(graph, n) for n in inputs))
            feeding = set(outputs).union(*(nx.ancestors(graph, n) for n in outputs))
            live = [op for s, d, op in graph.edges(data="op") if s in fed and d in feeding]
            out.extend(float(live.count(v)) for v in ops)
            out.append(0.0 if any(o in fed for o in outputs) else 1.0)
        return out


class FittedLatencyPredictor:
    """Latency (ms) of a space's networks on one device, learned from measured networks.

    ``fit`` on a few dozen genomes with their measured latencies, then ``predict`` any
    genome of the space. See the module notes for the model. Deterministic: no randomness
    anywhere (exact leave-one-out replaces random CV folds).

    Args:
        space: The space of the genomes.
        candidates: Weights of the ``live`` and ``onehot`` blocks to choose from, simplest
            first (see ``CANDIDATES``); a later one is taken only when its leave-one-out
            error is more than ``PARSIMONY`` (5%) lower, as leave-one-out on a few dozen
            networks is itself noisy.
        alphas: Ridge strengths to choose from (latencies in units of their median).

    Example:
        >>> pred = FittedLatencyPredictor(space).fit(genomes[:50], ms[:50])  # doctest: +SKIP
        >>> accuracy_report(pred.predict(genomes[50:]), ms[50:])["within_10pct"]  # doctest: +SKIP
    """

    def __init__(self, space: Space, *, candidates: Sequence[Mapping[str, float]] = CANDIDATES,
                 alphas: Sequence[float] = ALPHAS) -> None:
        if not candidates or any(set(c) != {"live", "onehot"} or min(c.values()) < 0 for c in candidates):
            raise ConfigError("candidates must be dicts {'live': w, 'onehot': w} with weights >= 0, at least one")
        if not alphas or min(alphas) <= 0:
            raise ConfigError("alphas must be ridge strengths > 0, at least one")
        self.space = space
        self.features = LatencyFeatures(space)
        has_live = self.features.blocks["live"].stop > self.features.blocks["live"].start
        weights = [(float(c["live"]) if has_live else 0.0, float(c["onehot"])) for c in candidates]
        self.candidates = [{"live": w[0], "onehot": w[1]} for w in dict.fromkeys(weights)]
        self.alphas = tuple(float(a) for a in alphas)
        self.selected_: dict[str, float] = {}
        self._coef: np.ndarray | None = None
        self._intercept = 0.0
        self._extra_rms: np.ndarray | None = None
        self._floor = 0.0
        self._weights = self.candidates[0]

    # -- genome level -------------------------------------------------------------------------
    def feature_matrix(self, genomes: Sequence[Genome], extra: Any = None) -> np.ndarray:
        """Features of ``genomes`` (``LatencyFeatures`` blocks, then the ``extra`` columns)."""
        base = self.features.transform(genomes)
        if extra is None:
            return base
        return np.hstack([base, _extra_columns(extra, len(genomes))])

    def fit(self, genomes: Sequence[Genome], latencies_ms: Any, extra: Any = None) -> FittedLatencyPredictor:
        """Fit on measured networks.

        Args:
            genomes: At least 2 genomes of the space.
            latencies_ms: Their measured latencies (ms, > 0), one per genome.
            extra: Optional extra numeric features, shape (n,) or (n, m), e.g. FLOPs or a
                lookup-table sum; then ``predict`` needs the same columns.

        Raises:
            ConfigError: mismatched lengths, fewer than 2 genomes, non-positive latencies.
        """
        y = _latencies(latencies_ms, len(genomes))
        return self.fit_features(self.feature_matrix(genomes, extra), y)

    def predict(self, genomes: Sequence[Genome], extra: Any = None) -> np.ndarray:
        """Predicted latencies (ms) of ``genomes``; ``extra`` as given to ``fit``."""
        return self.predict_features(self.feature_matrix(genomes, extra))

    # -- feature level (precomputed ``feature_matrix`` rows) ------------------------------------
    def fit_features(self, x: np.ndarray, latencies_ms: Any) -> FittedLatencyPredictor:
        """``fit`` on rows of ``feature_matrix`` (to featurize a large set once and refit often)."""
        from sklearn.linear_model import RidgeCV

        x = self._check_matrix(x, fitting=True)
        y = _latencies(latencies_ms, len(x))
        n_extra = x.shape[1] - len(self.features.names)
        rms = np.sqrt(np.mean(x[:, x.shape[1] - n_extra:] ** 2, axis=0)) if n_extra else np.zeros(0)
        self._extra_rms = np.where(rms > 0, rms, 1.0)
        # Latencies in units of their median, so that ridge strengths mean the same on every
        # device. Relative error: weight 1/y²; timings below a tenth of the median (a network
        # a compiler folded away) count as a tenth of the median so they cannot dominate.
        unit = float(np.median(y))
        yn = y / unit
        weight = 1.0 / np.maximum(yn, 0.1) ** 2
        fits = []
        for weights in self.candidates:
            model = RidgeCV(alphas=np.array(self.alphas)).fit(self._scaled(x, weights), yn, sample_weight=weight)
            fits.append((float(np.sqrt(max(-model.best_score_, 0.0))), weights, model))
        # Parsimony: the first (simplest) candidate within PARSIMONY of the best; e.g.
        # position one-hots are noise where an op costs the same wherever it sits.
        best = min(f[0] for f in fits)
        loo, self._weights, model = next(f for f in fits if f[0] <= best * (1.0 + PARSIMONY))
        self._coef = unit * np.asarray(model.coef_, dtype=float)
        self._intercept = unit * float(model.intercept_)
        self._floor = 0.5 * float(y.min())
        self.selected_ = {"alpha": float(model.alpha_), "live": self._weights["live"],
                          "onehot": self._weights["onehot"], "loo_rms_relative_error": loo}
        logger.info("fitted latency predictor on %d networks: %s", len(y), self.selected_)
        return self

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """``predict`` on rows of ``feature_matrix``; never below half the fastest training network."""
        if self._coef is None:
            raise ConfigError("the latency predictor is not fitted; call fit(genomes, latencies_ms) first")
        x = self._check_matrix(x, fitting=False)
        pred = self._scaled(x, self._weights) @ self._coef + self._intercept
        return np.maximum(pred, self._floor)

    # -- internals ----------------------------------------------------------------------------
    def _scaled(self, x: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
        out = np.array(x, dtype=float)
        for block, w in weights.items():
            out[:, self.features.blocks[block]] *= w
        n_extra = len(self._extra_rms) if self._extra_rms is not None else 0
        if n_extra:
            out[:, out.shape[1] - n_extra:] /= self._extra_rms
        return out

    def _check_matrix(self, x: Any, *, fitting: bool) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        n_base = len(self.features.names)
        if x.ndim != 2 or x.shape[1] < n_base:
            raise ConfigError(f"feature matrix must be 2-D with at least {n_base} columns "
                              f"(from feature_matrix), got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ConfigError("features hold NaN or inf; check the extra features")
        if not fitting and self._extra_rms is not None and x.shape[1] != n_base + len(self._extra_rms):
            raise ConfigError(f"the predictor was fitted with {len(self._extra_rms)} extra feature "
                              f"column(s), got {x.shape[1] - n_base}; pass the same extra= as to fit")
        return x


def _latencies(values: Any, n: int) -> np.ndarray:
    y = np.asarray(values, dtype=float).reshape(-1)
    if len(y) != n:
        raise ConfigError(f"got {n} genomes but {len(y)} latencies; pass one measured latency per genome")
    if n < 2:
        raise ConfigError(f"need at least 2 measured networks to fit a latency predictor, got {n}")
    if not np.isfinite(y).all() or (y <= 0).any():
        raise ConfigError("latencies must be finite and > 0 ms; drop failed or missing measurements")
    return y


def _extra_columns(extra: Any, n: int) -> np.ndarray:
    x = np.asarray(extra, dtype=float)
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    if x.ndim != 2 or len(x) != n:
        raise ConfigError(f"extra features must have shape ({n},) or ({n}, m), one row per genome; got {np.shape(extra)}")
    return x


def accuracy_report(predicted: Any, measured: Any) -> dict[str, float]:
    """How the field reports latency predictors.

    Returns:
        ``within_10pct`` (share of predictions within ±10% of measured, in [0, 1]),
        ``mape`` (mean absolute percentage error, %), ``spearman`` and ``kendall`` rank
        correlations (NaN when either side is constant) and ``n``.

    Raises:
        ConfigError: different lengths, fewer than 2 values, non-finite values or a
            measured latency <= 0.
    """
    from scipy.stats import kendalltau, spearmanr

    p = np.asarray(predicted, dtype=float).reshape(-1)
    m = np.asarray(measured, dtype=float).reshape(-1)
    if len(p) != len(m):
        raise ConfigError(f"got {len(p)} predictions for {len(m)} measurements; pass one of each per network")
    if len(m) < 2:
        raise ConfigError(f"need at least 2 networks to report predictor accuracy, got {len(m)}")
    if not (np.isfinite(p).all() and np.isfinite(m).all()) or (m <= 0).any():
        raise ConfigError("predicted and measured latencies must be finite and measured ones > 0 ms")
    rel = np.abs(p - m) / m
    constant = np.ptp(p) == 0 or np.ptp(m) == 0
    return {
        "within_10pct": float(np.mean(rel <= 0.1 + 1e-12)),
        "mape": float(100.0 * rel.mean()),
        "spearman": float("nan") if constant else float(spearmanr(p, m)[0]),
        "kendall": float("nan") if constant else float(kendalltau(p, m)[0]),
        "n": int(len(m)),
    }
