"""Tabular benchmarks used as instant evaluators."""

from __future__ import annotations

from nasbench.benchmarks._evaluator import BenchmarkEvaluator
from nasbench.benchmarks._nb201 import (
    NB201,
    NB201_DATASETS,
    NB201_INPUT_SHAPE,
    NB201_NUM_CLASSES,
    resolve_nb201_paths,
)

__all__ = ["NB201", "NB201_DATASETS", "NB201_INPUT_SHAPE", "NB201_NUM_CLASSES", "BenchmarkEvaluator", "resolve_nb201_paths"]
