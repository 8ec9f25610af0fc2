"""Hardware awareness: params/FLOP counting, measured latency, device profiles and latency predictors."""

from __future__ import annotations

from nasbench.hardware._counting import count_flops, count_params, layer_summary
from nasbench.hardware._fitted import FittedLatencyPredictor, LatencyFeatures, accuracy_report
from nasbench.hardware._measure import measure_latency, torch_threads
from nasbench.hardware._platform import cpu_isa, platform_info
from nasbench.hardware._predictor import LatencyPredictor
from nasbench.hardware._profile import (
    PROFILE_FORMAT,
    LatencyProfile,
    device_name,
    measure_networks,
    profile_space,
)
from nasbench.hardware._units import Unit, covering_genomes, trace_units, unit_key

__all__ = [
    "FittedLatencyPredictor", "LatencyFeatures", "accuracy_report", "LatencyPredictor", "LatencyProfile", "PROFILE_FORMAT", "Unit", "count_flops", "count_params",
    "covering_genomes", "cpu_isa", "device_name", "platform_info", "layer_summary", "measure_latency", "measure_networks", "profile_space",
    "torch_threads", "trace_units", "unit_key",
]
