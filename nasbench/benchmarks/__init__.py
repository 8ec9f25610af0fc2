"""Tabular benchmarks used as instant evaluators."""

from __future__ import annotations

from nasbench.benchmarks._evaluator import BenchmarkEvaluator
from nasbench.benchmarks._nb201 import NB201, NB201_DATASETS, resolve_nb201_paths

__all__ = ["NB201", "NB201_DATASETS", "BenchmarkEvaluator", "resolve_nb201_paths"]
