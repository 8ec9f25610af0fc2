"""Hardware awareness: parameter and FLOP (MAC) counting, measured latency."""

from __future__ import annotations

from nasbench.hardware._counting import count_flops, count_params, layer_summary
from nasbench.hardware._measure import measure_latency, torch_threads

__all__ = ["count_flops", "count_params", "layer_summary", "measure_latency", "torch_threads"]
