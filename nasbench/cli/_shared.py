"""Small helpers shared by the command modules: the console and common argument parsers."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["console", "input_shape_arg", "positive_int", "search_progress"]

#: Everything the CLI prints goes through this console (stdout).
console = Console(highlight=False, soft_wrap=True)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def input_shape_arg(text: str) -> tuple[int, int, int]:
    """argparse type: ``C,H,W`` such as ``3,32,32``."""
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,32,32, got {text!r}")
    return parts  # type: ignore[return-value]


def search_progress(info: str, quiet: bool = False) -> Progress:
    """A progress display for a search: description, bar, n/N, ``info`` (a rich template), elapsed, ETA."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(info),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, disable=quiet)
