"""Weight sharing: DARTS mixed ops and cell supernets."""

from __future__ import annotations

from nasbench.supernet._cells import MixedDenseCell, MixedOp, MixedTwoInputCell
from nasbench.supernet._darts import CellSupernet

__all__ = ["CellSupernet", "MixedDenseCell", "MixedOp", "MixedTwoInputCell"]
