"""nasbench: neural architecture search over one genome.

Quick start::

    import nasbench
    space = nasbench.load_space("resnet")
    genome = space.sample(seed=0)
    model = space.build(genome, num_classes=10, input_shape=(3, 32, 32))
    nasbench.save_architecture("arch.json", genome)
    nasbench.load_architecture("arch.json").build()

Importing ``nasbench`` does not import torch; the names that need it load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_space": "nasbench._spaces",
    "list_spaces": "nasbench._spaces",
    "save_architecture": "nasbench.export",
    "load_architecture": "nasbench.export",
    "Architecture": "nasbench.export",
    "Genome": "nasbench.space",
    "Choice": "nasbench.space",
    "Block": "nasbench.space",
    "Stage": "nasbench.space",
    "MacroSpace": "nasbench.space",
    "Cell": "nasbench.space",
    "CellSpace": "nasbench.space",
    "Space": "nasbench.space",
    "NasbenchError": "nasbench.errors",
    "GenomeError": "nasbench.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nasbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
