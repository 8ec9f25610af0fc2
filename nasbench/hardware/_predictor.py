"""Latency prediction: sum of the per-unit lookup table, corrected by a fit on whole networks."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from nasbench.errors import ConfigError
from nasbench.hardware._counting import count_flops, count_params
from nasbench.hardware._units import trace_units

if TYPE_CHECKING:
    from nasbench.hardware._profile import LatencyProfile
    from nasbench.space import Genome, Space

__all__ = ["LatencyPredictor", "NetworkCosts"]

_CACHE = 4096


class NetworkCosts(dict):
    """Per-network quantities the predictor uses: table_sum, units, flops, params."""


class LatencyPredictor:
    """latency = correction(Σ T(unit, shape, device)) for networks of one space on one device.

    The table sum misses what no single unit shows (fusion, memory traffic between layers,
    cache misses once weights outgrow the cache, Python overhead per module, cell additions);
    a linear correction on (table sum, number of units, MACs, params; non-negative
    coefficients, relative error) is fitted on the profile's end-to-end measurements. With fewer than 5 such
    measurements the table sum is used as is.

    Args:
        profile: A profile of this space (checked: space, hash).
        space: The space.
    """

    def __init__(self, profile: LatencyProfile, space: Space) -> None:
        profile.check(space)
        self.profile = profile
        self.space = space
        self._costs: OrderedDict[str, NetworkCosts] = OrderedDict()
        self._coef: np.ndarray | None = None
        if len(profile.networks) >= 5:
            genomes = [space.load_genome(n["genome"]) for n in profile.networks]
            measured = np.array([float(n["ms"]) for n in profile.networks])
            self.fit(genomes, measured)

    # -- costs --------------------------------------------------------------------------------
    def costs(self, genome: Genome) -> NetworkCosts:
        """Table sum (ms), number of units, MACs and params of ``genome``'s network (cached)."""
        hit = self._costs.get(genome.hash)
        if hit is not None:
            self._costs.move_to_end(genome.hash)
            return hit
        shape = self.profile.input_shape
        model = self.space.build(genome, num_classes=self.profile.num_classes, input_shape=shape)
        units = trace_units(model, shape)
        missing = [u.key for u in units if u.key not in self.profile.table]
        if missing:
            raise ConfigError(f"latency profile lacks unit {missing[0]}; re-profile the space "
                              "(it changed, or the profile was made for another input shape)")
        out = NetworkCosts(table_sum=float(sum(self.profile.table[u.key] for u in units)), units=len(units),
                           flops=count_flops(model, shape), params=count_params(model))
        self._costs[genome.hash] = out
        if len(self._costs) > _CACHE:
            self._costs.popitem(last=False)
        return out

    def table_sum(self, genome: Genome) -> float:
        """Σ of the table entries of the network's units (ms)."""
        return self.costs(genome)["table_sum"]

    # -- correction ---------------------------------------------------------------------------
    def _features(self, costs: list[NetworkCosts]) -> np.ndarray:
        return np.array([[c["table_sum"], c["units"], c["flops"] / 1e6, c["params"] / 1e6, 1.0] for c in costs])

    def fit(self, genomes: list[Genome], measured_ms: np.ndarray) -> LatencyPredictor:
        """Fit the correction on networks measured end to end.

        Non-negative least squares on relative error (rows weighted by 1/measured, which is
        what MAPE and "within ±10%" judge): every feature (table sum, units, MACs, params,
        constant) can only add time, so the correction never extrapolates to negative
        latencies. Params stand in for what a unit timed alone hides: its weights stay in
        cache, inside a big network they do not.
        """
        from scipy.optimize import nnls

        if len(genomes) != len(measured_ms) or len(genomes) < 2:
            raise ConfigError(f"need >= 2 genomes with one measurement each, got {len(genomes)} and {len(measured_ms)}")
        x = self._features([self.costs(g) for g in genomes])
        y = np.asarray(measured_ms, dtype=float)
        scale = np.maximum(np.abs(x).max(axis=0), 1e-12)
        w = 1.0 / np.maximum(y, 1e-9)
        coef, _ = nnls((x / scale) * w[:, None], y * w)
        self._coef = coef / scale
        return self

    def predict(self, genome: Genome) -> float:
        """Predicted latency (ms) of ``genome`` on the profile's device and batch size."""
        c = self.costs(genome)
        if self._coef is None:
            return c["table_sum"]
        return float(self._features([c])[0] @ self._coef)

    def predict_many(self, genomes: list[Genome]) -> np.ndarray:
        """``predict`` for several genomes."""
        return np.array([self.predict(g) for g in genomes])

    # -- per-op latencies (for supernets) -----------------------------------------------------
    def op_latency_table(self, base: Genome | None = None) -> dict[str, dict[Any, float]]:
        """Per decision, per value: table latency (ms) added by taking that value, from ``base``.

        ``E[latency] ≈ const + Σ_d Σ_v p(d = v) · table[d][v]`` is then differentiable in the
        op probabilities (what DARTS needs). Values are differences of table sums against
        ``base`` with only that decision changed, so they hold exactly for additive cells
        and approximately where one choice changes another's shapes.
        """
        base = base if base is not None else self.space.sample(0)
        ref = self.table_sum(base)
        out: dict[str, dict[Any, float]] = {}
        for d in self.space.active_decisions(base):
            if d.kind != "op":
                continue
            row = {}
            for v in d.values:
                g = self.space.fill({**base.values, d.label: v})
                row[v] = self.table_sum(g) - ref
            low = min(row.values())
            out[d.label] = {v: t - low for v, t in row.items()}
        return out
