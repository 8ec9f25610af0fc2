"""Macro networks: stem -> blocks -> head -> pool -> classifier."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nasbench.ops import create_op

__all__ = ["MacroNetwork"]


class MacroNetwork(nn.Module):
    """A chain network built from a frozen macro architecture (see ``MacroSpace.freeze``)."""

    def __init__(self, arch: dict[str, Any], num_classes: int, in_channels: int) -> None:
        super().__init__()
        stem = arch["stem"]
        self.stem = create_op(stem["op"], in_channels, stem["C_out"], stem["stride"], **stem["params"])
        layers = []
        channels = stem["C_out"]
        for b in arch["blocks"]:
            layers.append(create_op(b["op"], channels, b["C_out"], b["stride"], **b["params"]))
            channels = b["C_out"]
        self.blocks = nn.Sequential(*layers)
        head = arch["head"]
        if head is not None:
            self.head = create_op(head["op"], channels, head["C_out"], 1, **head["params"])
            channels = head["C_out"]
        else:
            self.head = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(arch["dropout"]) if arch["dropout"] > 0 else nn.Identity()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, num_classes)."""
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))
