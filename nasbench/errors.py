"""Errors that users can cause. Each carries a one-line, actionable message.

The CLI prints ``NasbenchError`` messages without a traceback and exits with code 2.
"""

from __future__ import annotations

__all__ = [
    "NasbenchError",
    "GenomeError",
    "SpaceError",
    "UnknownNameError",
    "OpError",
    "DataError",
    "ArchitectureFileError",
    "StorageError",
    "ConfigError",
    "TrainingError",
]


class NasbenchError(Exception):
    """Root of every error a user can cause; the message says what was wrong and how to fix it."""


class GenomeError(NasbenchError, ValueError):
    """A genome does not fit its space. ``path`` names the offending decision (or is empty)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class SpaceError(NasbenchError, ValueError):
    """A search space is malformed or cannot be loaded."""


class UnknownNameError(NasbenchError, KeyError):
    """A name (op, space, strategy, dataset, ...) is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OpError(NasbenchError, ValueError):
    """An operation was asked for with arguments it cannot take."""


class DataError(NasbenchError):
    """A dataset is missing or malformed."""


class ArchitectureFileError(NasbenchError):
    """An exported architecture file is missing, malformed or of another space."""


class StorageError(NasbenchError):
    """The study storage is unreachable or inconsistent with the request."""


class ConfigError(NasbenchError, ValueError):
    """A combination of options is invalid."""


class TrainingError(NasbenchError):
    """Training could not go on (for example a NaN/inf loss); the trial fails with this reason."""
