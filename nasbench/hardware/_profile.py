"""Device profiles: a per-unit latency lookup table plus end-to-end measured networks, as JSON."""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nasbench.errors import ConfigError
from nasbench.hardware._measure import measure_latency
from nasbench.hardware._units import covering_genomes, trace_units

if TYPE_CHECKING:
    from nasbench.space import Genome, Space

__all__ = ["PROFILE_FORMAT", "LatencyProfile", "profile_space", "device_name", "measure_networks"]

logger = logging.getLogger(__name__)

PROFILE_FORMAT = "nasbench.latency-profile/1"
Progress = Callable[[str, int, int], None]


def device_name(device: str | torch.device) -> str:
    """A readable name of the device: the CPU model or the CUDA device name."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class LatencyProfile:
    """A space's latency on one device: ``table`` (unit key -> ms) and measured ``networks``.

    Versioned JSON recording the device, threads, batch size, input shape, torch version and
    date. ``check`` refuses a profile made for another space, device or batch size.
    """

    space: str
    space_hash: str
    device: str
    device_name: str
    threads: int
    batch_size: int
    input_shape: tuple[int, int, int]
    num_classes: int
    torch_version: str
    created: str
    warmup: int
    repeats: int
    table: dict[str, float] = field(default_factory=dict)
    networks: list[dict[str, Any]] = field(default_factory=list)
    space_source: str | None = None

    def check(self, space: Space | None = None, device: str | None = None, batch_size: int | None = None) -> None:
        """Raise ConfigError if this profile does not fit the request."""
        if space is not None and (space.name != self.space or space.hash != self.space_hash):
            raise ConfigError(f"latency profile is for space {self.space!r} (hash {self.space_hash}), not "
                              f"{space.name!r} (hash {space.hash}); make one with 'nasbench latency profile --space {space.name}'")
        if device is not None and torch.device(device).type != torch.device(self.device).type:
            raise ConfigError(f"latency profile was measured on {self.device} ({self.device_name}), not {device}; "
                              "profile this device with 'nasbench latency profile'")
        if batch_size is not None and batch_size != self.batch_size:
            raise ConfigError(f"latency profile was measured at batch size {self.batch_size}, not {batch_size}; "
                              "re-profile with --batch-size")

    def save(self, path: str | Path) -> None:
        """Write the profile as JSON."""
        from nasbench._checkpoint import atomic_write

        data = {"format": PROFILE_FORMAT, **asdict(self)}
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n"))

    @classmethod
    def load(cls, path: str | Path) -> LatencyProfile:
        """Read a profile written by ``save`` (JSON only)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"latency profile {p} not found; make one with 'nasbench latency profile --space NAME --out {p}'")
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"latency profile {p} is not valid JSON ({exc}); re-profile") from None
        if not isinstance(data, dict) or data.pop("format", None) != PROFILE_FORMAT:
            raise ConfigError(f"{p} is not a nasbench latency profile (format {PROFILE_FORMAT}); re-profile")
        try:
            data["input_shape"] = tuple(data["input_shape"])
            return cls(**data)
        except (TypeError, KeyError) as exc:
            raise ConfigError(f"latency profile {p} has missing or unknown fields ({exc}); re-profile") from None


def measure_networks(space: Space, genomes: list[Genome], *, device: str, batch_size: int, threads: int | None,
                     input_shape: tuple[int, int, int], num_classes: int, warmup: int, repeats: int,
                     progress: Progress | None = None) -> list[float]:
    """End-to-end median latency (ms) of each genome's network."""
    out = []
    for i, g in enumerate(genomes):
        model = space.build(g, num_classes=num_classes, input_shape=input_shape).to(device)
        out.append(measure_latency(model, input_shape, batch_size=batch_size, device=device, warmup=warmup,
                                   repeats=repeats, threads=threads))
        if progress:
            progress("networks", i + 1, len(genomes))
    return out


def profile_space(space: Space, *, device: str = "cpu", batch_size: int = 1, threads: int | None = 1,
                  input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10, networks: int = 60,
                  seed: int = 0, warmup: int = 10, repeats: int = 30, progress: Progress | None = None,
                  space_source: str | None = None) -> LatencyProfile:
    """Measure every distinct unit the space can produce, then ``networks`` sampled networks end to end.

    ``space_source`` (a built-in name or a space file path; default ``space.source``) is
    recorded so that the CLI can load the space again. Units come from tracing a covering set of genomes (see ``covering_genomes``); each is
    timed alone on ``device``: ``warmup`` calls, then the median of ``repeats`` (CUDA
    synchronized). Threads are fixed so numbers are comparable.
    """
    units: dict[str, Any] = {}
    cover = covering_genomes(space, seed)
    for i, g in enumerate(cover):
        for u in trace_units(space.build(g, num_classes=num_classes, input_shape=input_shape), input_shape):
            units.setdefault(u.key, u)
        if progress:
            progress("tracing", i + 1, len(cover))
    logger.info("space %s: %d distinct units from %d covering genomes", space.name, len(units), len(cover))
    table = {}
    for i, (key, u) in enumerate(sorted(units.items())):
        module = u.module.to(device)
        table[key] = measure_latency(module, u.input_shape, batch_size=batch_size, device=device, warmup=warmup,
                                     repeats=repeats, threads=threads)
        if progress:
            progress("units", i + 1, len(units))
    rng = random.Random(seed)
    genomes: dict[str, Genome] = {}
    for _ in range(networks * 20):
        if len(genomes) >= min(networks, space.size):
            break
        g = space.sample(rng)
        genomes.setdefault(g.hash, g)
    sample = list(genomes.values())
    times = measure_networks(space, sample, device=device, batch_size=batch_size, threads=threads,
                             input_shape=input_shape, num_classes=num_classes, warmup=warmup, repeats=repeats,
                             progress=progress)
    return LatencyProfile(
        space=space.name, space_hash=space.hash, device=str(torch.device(device)), device_name=device_name(device),
        threads=int(threads or torch.get_num_threads()), batch_size=batch_size, input_shape=tuple(input_shape),
        num_classes=num_classes, torch_version=torch.__version__, created=dt.datetime.now().isoformat(timespec="seconds"),
        warmup=warmup, repeats=repeats, table=table,
        networks=[{"genome": g.to_json(), "ms": t} for g, t in zip(sample, times)],
        space_source=space_source or space.source)
