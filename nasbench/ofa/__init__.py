"""Once-for-All: an elastic supernet over a macro space, progressive shrinking, subnet extraction."""

from __future__ import annotations

from nasbench.ofa._elastic import ElasticConvBNAct, ElasticMBConv, ElasticSqueezeExcite
from nasbench.ofa._search import SubnetEvaluator, export_subnet, sample_constrained
from nasbench.ofa._supernet import (
    ELASTIC_KINDS,
    PHASES,
    OFASupernet,
    largest_subnet,
    phase_kinds,
    sample_subnet,
    smallest_subnet,
)
from nasbench.ofa._train import (
    OFAConfig,
    OFAEpoch,
    OFAJob,
    OFATrainer,
    calibration_batches,
    recalibrate_bn,
)

__all__ = [
    "ELASTIC_KINDS",
    "PHASES",
    "ElasticConvBNAct",
    "ElasticMBConv",
    "ElasticSqueezeExcite",
    "OFAConfig",
    "OFAEpoch",
    "OFAJob",
    "OFASupernet",
    "OFATrainer",
    "SubnetEvaluator",
    "calibration_batches",
    "export_subnet",
    "recalibrate_bn",
    "sample_constrained",
    "largest_subnet",
    "phase_kinds",
    "sample_subnet",
    "smallest_subnet",
]
