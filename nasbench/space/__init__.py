"""The search-space DSL: choices, blocks, stages, cells, spaces and genomes (no torch import)."""

from __future__ import annotations

from nasbench.space._cell import SKELETONS, Cell, CellSpace
from nasbench.space._choice import KINDS, Choice, Decision
from nasbench.space._genome import GENOME_FORMAT, Genome, canonical_json
from nasbench.space._macro import Block, MacroSpace, Stage, round_channels
from nasbench.space._space import Space, as_rng, iter_assignments

__all__ = [
    "Block", "Cell", "CellSpace", "Choice", "Decision", "GENOME_FORMAT", "Genome", "KINDS",
    "MacroSpace", "SKELETONS", "Space", "Stage", "as_rng", "canonical_json", "iter_assignments", "round_channels",
]
