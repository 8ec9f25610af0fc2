"""NAS-Bench-201 as an instant evaluator: table look-ups instead of training."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nasbench.errors import ConfigError, DataError, GenomeError

if TYPE_CHECKING:
    from nasbench.space import CellSpace, Genome

__all__ = ["NB201", "NB201_DATASETS", "NB201_INPUT_SHAPE", "NB201_NUM_CLASSES", "resolve_nb201_paths"]

logger = logging.getLogger(__name__)

#: dataset name -> column prefix in the accuracy table
NB201_DATASETS = {"cifar10": "c10", "cifar100": "c100", "imagenet16": "in16"}
#: classes of each dataset, and the input shape the NB201 networks were trained on (ImageNet16-120 is 16x16
#: but the table's params/MACs are reported for the CIFAR shape, as the benchmark does)
NB201_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16": 120}
NB201_INPUT_SHAPE = (3, 32, 32)
_ALIASES = {"imagenet16-120": "imagenet16", "in16": "imagenet16", "c10": "cifar10", "c100": "cifar100"}
ACCURACY_FILE = "nb201_accuracy.csv"
LATENCY_FILE = "nb201_latency_ms.csv"

# Simulated training cost: 3 passes (forward + 2x backward) of 2 FLOPs per MAC over the
# training images of each epoch, on a device sustaining this many FLOP/s.
_SIM_FLOPS_PER_SECOND = 5e12
_SIM_TRAIN_IMAGES = {"cifar10": 25_000, "cifar100": 50_000, "imagenet16": 151_700}


def resolve_nb201_paths(path: str | Path) -> tuple[Path, Path | None]:
    """(accuracy csv, latency csv or None) from a folder holding both or the accuracy csv itself."""
    p = Path(path).expanduser()
    if p.is_dir():
        acc, lat = p / ACCURACY_FILE, p / LATENCY_FILE
        if not acc.is_file():
            raise DataError(f"no {ACCURACY_FILE} in {p}; pass --benchmark nb201:FOLDER holding the NB201 tables")
        return acc, (lat if lat.is_file() else None)
    if p.is_file():
        lat = p.parent / LATENCY_FILE
        return p, (lat if lat.is_file() else None)
    raise DataError(f"NAS-Bench-201 table not found at {p}; pass --benchmark nb201:FOLDER (e.g. ../shared/data/nb201)")


@dataclass(frozen=True)
class _Costs:
    params: int
    flops: int


class NB201:
    """The NAS-Bench-201 tables (accuracy, and optionally per-device latency) for genomes of ``nb201``.

    Args:
        accuracy_csv: Table with ``arch_str`` and ``{c10,c100,in16}_{valid_acc_200ep_1seed,
            test_acc_200ep_mean,valid_acc_12ep,test_acc_12ep}`` columns (percent).
        latency_csv: Optional table with ``arch_index`` and one column of milliseconds per device.
        space: The space whose genomes are looked up (default: the built-in ``nb201``).

    ``query`` reports accuracies as fractions in [0, 1], like the trainer does.
    """

    def __init__(self, accuracy_csv: str | Path, latency_csv: str | Path | None = None,
                 space: CellSpace | None = None) -> None:
        import pandas as pd

        from nasbench._spaces import load_space

        self.space = space if space is not None else load_space("nb201")
        acc = _read_csv(pd, accuracy_csv, ["arch_index", "arch_str"])
        self._row = {s: i for i, s in enumerate(acc["arch_str"])}
        self._index = acc["arch_index"].to_numpy()
        self._columns = {c: acc[c].to_numpy(dtype=np.float64) for c in acc.columns if c.endswith(("ep", "1seed", "mean"))}
        self.latency_devices: list[str] = []
        self._latency: dict[str, np.ndarray] = {}
        if latency_csv is not None:
            lat = _read_csv(pd, latency_csv, ["arch_index"]).set_index("arch_index")
            order = lat.reindex(self._index)
            self.latency_devices = [c for c in lat.columns]
            self._latency = {c: order[c].to_numpy(dtype=np.float64) for c in lat.columns}
        self._costs = self._op_costs()
        logger.info("NAS-Bench-201 table: %d architectures, %d latency devices", len(self._row), len(self.latency_devices))

    def __len__(self) -> int:
        return len(self._row)

    @staticmethod
    def dataset_name(dataset: str) -> str:
        """Canonical dataset name (cifar10, cifar100, imagenet16) or ConfigError."""
        name = _ALIASES.get(dataset.lower(), dataset.lower())
        if name not in NB201_DATASETS:
            raise ConfigError(f"NAS-Bench-201 has no dataset {dataset!r}; use one of {', '.join(NB201_DATASETS)}")
        return name

    def check_device(self, device: str) -> str:
        """``device`` if the latency table has it, else ConfigError listing the devices."""
        if device not in self._latency:
            have = ", ".join(self.latency_devices) or "none (pass the latency table)"
            raise ConfigError(f"no latency column {device!r} in the NAS-Bench-201 latency table; devices: {have}")
        return device

    def row(self, genome: Genome) -> int:
        """Row of ``genome`` in the table."""
        arch = self.space.to_arch_str(genome)
        try:
            return self._row[arch]
        except KeyError:
            raise GenomeError(f"architecture {arch} is not in the NAS-Bench-201 table") from None

    def query(self, genome: Genome, dataset: str = "cifar10", *, device: str | None = None,
              epochs: int = 200) -> dict[str, Any]:
        """Table metrics of ``genome``.

        Returns:
            ``val_accuracy`` (guides a search), ``test_accuracy`` (for reporting; 200-epoch
            mean over seeds), ``arch_index``, ``params``, ``flops`` (MACs on 32x32 input),
            ``train_seconds`` (simulated from FLOPs, see module notes) and, with ``device``,
            ``latency_ms`` measured on that device.
        """
        name = self.dataset_name(dataset)
        if epochs not in (200, 12):
            raise ConfigError(f"NAS-Bench-201 tables hold 200- and 12-epoch results, not {epochs}")
        prefix = NB201_DATASETS[name]
        i = self.row(genome)
        val_col = f"{prefix}_valid_acc_200ep_1seed" if epochs == 200 else f"{prefix}_valid_acc_12ep"
        test_col = f"{prefix}_test_acc_200ep_mean" if epochs == 200 else f"{prefix}_test_acc_12ep"
        missing = [c for c in (val_col, test_col) if c not in self._columns]
        if missing:
            raise DataError(f"the NAS-Bench-201 table lacks columns {missing} for {name}; pass the full table")
        costs = self.costs(genome)
        out: dict[str, Any] = {
            "val_accuracy": float(self._columns[val_col][i]) / 100.0,
            "test_accuracy": float(self._columns[test_col][i]) / 100.0,
            "arch_index": int(self._index[i]),
            "params": costs.params,
            "flops": costs.flops,
            "train_seconds": 6.0 * costs.flops * _SIM_TRAIN_IMAGES[name] * epochs / _SIM_FLOPS_PER_SECOND,
            "benchmark": f"nb201/{name}/{epochs}ep",
        }
        if device is not None:
            out["latency_ms"] = float(self._latency[self.check_device(device)][i])
            out["latency_device"] = device
        return out

    def costs(self, genome: Genome) -> _Costs:
        """Exact params and MACs of the genome's network (NB201 skeleton, 10 classes, 3x32x32).

        Every edge op adds the same amount wherever it sits, so the cost is the all-``none``
        network plus one measured contribution per op; an op fed by a dead node (one with
        only ``none`` inputs) holds parameters but computes nothing. Checked against
        building the network in the tests.
        """
        cell = self.space.cells[0]
        params, flops = self._base
        live = {0}
        for src, dst, op in cell.edges(genome):  # sorted by destination node
            p, f = self._costs[op]
            params += p
            if src in live and op != "none":
                flops += f
                live.add(dst)
        return _Costs(params, flops)

    def _op_costs(self) -> dict[str, tuple[int, int]]:
        from nasbench.hardware import count_flops, count_params

        cell = self.space.cells[0]
        labels = [f"{cell.name}.e{i}-{j}" for j in cell.node_ids() for i in range(j)]

        def measure(first: str) -> tuple[int, int]:
            g = self.space.genome({lab: (first if k == 0 else "none") for k, lab in enumerate(labels)})
            model = self.space.build(g, num_classes=10, input_shape=(3, 32, 32))
            return count_params(model), count_flops(model, (3, 32, 32))

        base = measure("none")
        self._base = base
        out = {}
        for op in cell.op_values:
            p, f = measure(op)
            out[op] = (p - base[0], f - base[1])
        return out


def _read_csv(pd: Any, path: str | Path, required: list[str]) -> Any:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"table {p} not found; pass the path of the NAS-Bench-201 CSV")
    try:
        df = pd.read_csv(p)
    except Exception as exc:
        raise DataError(f"cannot read {p} as CSV ({exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{p} lacks columns {missing}; is it a NAS-Bench-201 table?")
    return df
