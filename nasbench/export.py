"""Exported architectures: a JSON file (genome + frozen architecture + metrics), weights beside it.

Loading never executes code: the JSON holds the frozen architecture, so ``build()`` needs
neither the space file nor pickle; weights are read with safetensors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from nasbench._checkpoint import atomic_write
from nasbench.errors import ArchitectureFileError, NasbenchError
from nasbench.space import Genome, Space

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ARCHITECTURE_FORMAT", "Architecture", "save_architecture", "load_architecture", "write_architecture"]

ARCHITECTURE_FORMAT = "nasbench.architecture/1"


@dataclass(frozen=True)
class Architecture:
    """An exported architecture: its genome, what it freezes to, metrics and optional weights."""

    genome: Genome
    arch: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 10
    input_shape: tuple[int, int, int] = (3, 32, 32)
    weights_path: Path | None = None

    def build(self, num_classes: int | None = None, input_shape: tuple[int, int, int] | None = None,
              load_weights: bool = True) -> nn.Module:
        """The ``nn.Module``; with weights loaded when they were saved and the head matches."""
        from nasbench.build import build_frozen

        nc = self.num_classes if num_classes is None else num_classes
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        model = build_frozen(self.arch, nc, shape)  # type: ignore[arg-type]
        if load_weights and self.weights_path is not None and nc == self.num_classes and shape[0] == self.input_shape[0]:
            model.load_state_dict(_read_weights(self.weights_path))
        return model

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written by ``save_architecture``."""
        out: dict[str, Any] = {
            "format": ARCHITECTURE_FORMAT,
            "genome": self.genome.to_dict(),
            "genome_hash": self.genome.hash,
            "architecture": self.arch,
            "build": {"num_classes": self.num_classes, "input_shape": list(self.input_shape)},
            "metrics": self.metrics,
        }
        if self.weights_path is not None:
            out["weights"] = self.weights_path.name
        return out


def save_architecture(path: str | Path, genome: Genome, metrics: Mapping[str, Any] | None = None,
                      weights: nn.Module | Mapping[str, Any] | None = None, *, space: Space | str | None = None,
                      num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> Architecture:
    """Write ``genome`` (and weights as ``<stem>.safetensors`` beside it) to ``path``.

    Args:
        path: JSON file to write.
        genome: The architecture.
        metrics: JSON-able numbers and strings (accuracy, latency...); NaN/inf become null.
        weights: A module or state dict to save with safetensors.
        space: The genome's space (default: the built-in space of that name).
        num_classes: Classifier size the weights (if any) were trained for.
        input_shape: (C, H, W) the model was built for.
    """
    from nasbench._spaces import load_space

    try:
        sp = load_space(space if space is not None else genome.space)
    except NasbenchError as exc:
        raise ArchitectureFileError(f"cannot find space {genome.space!r} to export the genome ({exc}); pass space=") from None
    genome = sp.validate(genome)
    arch = Architecture(genome, sp.freeze(genome), dict(metrics or {}), int(num_classes),
                        tuple(int(d) for d in input_shape))  # type: ignore[arg-type]
    return write_architecture(path, arch, weights)


def write_architecture(path: str | Path, arch: Architecture, weights: nn.Module | Mapping[str, Any] | None = None) -> Architecture:
    """Write ``arch`` (and ``weights`` as ``<stem>.safetensors``) to ``path`` atomically; return what was written.

    Without ``weights`` the file keeps ``arch.weights_path`` if it has one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights_path = arch.weights_path
    if weights is not None:
        weights_path = path.with_suffix(".safetensors")
        _write_weights(weights_path, weights)
    arch = replace(arch, metrics=_plain(dict(arch.metrics)), weights_path=weights_path)
    text = json.dumps(arch.to_dict(), indent=2, sort_keys=True, allow_nan=False)
    atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))
    return arch


def load_architecture(path: str | Path, space: Space | str | None = None,
                      weights: str | Path | None = None) -> Architecture:
    """Read an exported architecture (JSON only, no code runs).

    Args:
        space: If given, the genome is validated against it (name and structural hash).
        weights: A safetensors file to use instead of the one the JSON names, from anywhere.
            The JSON's own ``weights`` entry must stay inside the JSON's folder.

    Raises:
        ArchitectureFileError: missing file, malformed JSON, unknown format, inconsistent content,
            weights named outside the JSON's folder, or missing weights.
        GenomeError: the genome does not belong to ``space``.
    """
    path = Path(path)
    if not path.is_file():
        raise ArchitectureFileError(f"architecture file {path} not found; write one with 'nasbench sample' or 'nasbench export'")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchitectureFileError(f"{path} is not valid JSON ({exc}); re-export it") from None
    if not isinstance(data, dict) or data.get("format") != ARCHITECTURE_FORMAT:
        fmt = data.get("format") if isinstance(data, dict) else None
        raise ArchitectureFileError(f"{path} has format {fmt!r}, expected {ARCHITECTURE_FORMAT!r}; is it a nasbench export?")
    try:
        genome = Genome.from_dict(data["genome"])
        arch = data["architecture"]
        build = data.get("build", {})
        num_classes = int(build.get("num_classes", 10))
        input_shape = tuple(int(d) for d in build.get("input_shape", (3, 32, 32)))
        metrics = dict(data.get("metrics") or {})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArchitectureFileError(f"{path} is missing or has a malformed field ({exc}); re-export it") from None
    if data.get("genome_hash") not in (None, genome.hash):
        raise ArchitectureFileError(f"{path}: genome_hash {data.get('genome_hash')} does not match its genome "
                                    f"({genome.hash}); the file was edited by hand: re-export it")
    if not isinstance(arch, dict) or len(input_shape) != 3:
        raise ArchitectureFileError(f"{path}: 'architecture' must be an object and input_shape (C, H, W); re-export it")
    if space is not None:
        from nasbench._spaces import load_space

        genome = load_space(space).validate(genome)
    if weights is not None:
        weights_path: Path | None = Path(weights).expanduser()
        if not weights_path.is_file():
            raise ArchitectureFileError(f"weights {weights_path} not found; pass an existing .safetensors file")
    else:
        weights_path = _weights_path(path, data.get("weights"))
        if weights_path is not None and not weights_path.is_file():
            raise ArchitectureFileError(f"{path} names weights {weights_path} which do not exist; copy them beside the JSON")
    return Architecture(genome, arch, metrics, num_classes, input_shape, weights_path)  # type: ignore[arg-type]


def _weights_path(path: Path, name: Any) -> Path | None:
    """The weights file a JSON names, which must be a relative path inside the JSON's folder."""
    if not name:
        return None
    rel = PurePath(str(name))
    if rel.is_absolute() or ".." in rel.parts or rel.drive:
        raise ArchitectureFileError(f"{path} names weights {str(name)!r} outside its folder; move them beside the "
                                    "JSON (and name them so) or pass them explicitly: load_architecture(path, weights=...)")
    return path.parent / rel


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if getattr(getattr(obj, "dtype", None), "kind", None) == "b":
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    try:
        value = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    if math.isfinite(value):
        return int(value) if hasattr(obj, "dtype") and "int" in str(obj.dtype) else value
    return None


def _write_weights(path: Path, weights: Any) -> None:
    from safetensors.torch import save_file

    state = weights.state_dict() if hasattr(weights, "state_dict") else dict(weights)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def _read_weights(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ArchitectureFileError(f"weights {path} could not be read ({exc}); re-export them") from None
