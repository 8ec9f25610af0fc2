"""The genome: one architecture of one space, as a frozen value with a canonical JSON form."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from nasbench.errors import GenomeError
from nasbench.space._choice import Value

__all__ = ["Genome", "GENOME_FORMAT", "canonical_json"]

#: Format tag written into every genome JSON; bump when the meaning of fields changes.
GENOME_FORMAT = "nasbench.genome/1"


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, plain values: equal objects give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


class Genome(Mapping[str, Value]):
    """An assignment of a value to every active decision of a space.

    Create genomes through a space (``space.sample()``, ``space.genome(values)``,
    ``space.load_genome(text)``) so that they are validated and canonical: inactive
    decisions are dropped, so equal architectures have equal hashes.

    Args:
        space: Name of the space.
        space_hash: Structural hash of the space the genome was made for.
        values: Decision label -> value.
    """

    __slots__ = ("_space", "_space_hash", "_values", "_json")

    def __init__(self, space: str, space_hash: str, values: Mapping[str, Value]) -> None:
        self._space = space
        self._space_hash = space_hash
        self._values = dict(sorted(values.items()))
        self._json = canonical_json(self.to_dict())

    @property
    def space(self) -> str:
        """Name of the space this genome belongs to."""
        return self._space

    @property
    def space_hash(self) -> str:
        """Structural hash of that space."""
        return self._space_hash

    @property
    def values(self) -> dict[str, Value]:  # type: ignore[override]
        """A copy of the decision values, sorted by label."""
        return dict(self._values)

    def __getitem__(self, label: str) -> Value:
        return self._values[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Genome) and self._json == other._json

    def __hash__(self) -> int:
        return hash(self._json)

    def __repr__(self) -> str:
        return f"Genome(space={self._space!r}, hash={self.hash}, {len(self)} decisions)"

    @property
    def hash(self) -> str:
        """Stable content hash (16 hex chars), the same in every process and on every machine."""
        return hashlib.sha256(self._json.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the format tag, space name and hash, and values."""
        return {
            "format": GENOME_FORMAT,
            "space": self._space,
            "space_hash": self._space_hash,
            "values": dict(self._values),
        }

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, no whitespace)."""
        return self._json

    @classmethod
    def from_dict(cls, data: Any) -> Genome:
        """Parse the dict form; checks shape only (validate against a space with ``space.validate``)."""
        if not isinstance(data, Mapping):
            raise GenomeError(f"a genome must be a JSON object, got {type(data).__name__}")
        fmt = data.get("format")
        if fmt != GENOME_FORMAT:
            raise GenomeError(f"unsupported genome format {fmt!r}; expected {GENOME_FORMAT!r}")
        missing = [k for k in ("space", "space_hash", "values") if k not in data]
        if missing:
            raise GenomeError(f"genome JSON lacks {', '.join(missing)}")
        values = data["values"]
        if not isinstance(values, Mapping):
            raise GenomeError("genome 'values' must be an object of label -> value")
        for label, v in values.items():
            if not isinstance(v, (str, int, float, bool)):
                raise GenomeError(f"value must be str, int, float or bool, got {v!r}", label)
        return cls(str(data["space"]), str(data["space_hash"]), values)

    @classmethod
    def from_json(cls, text: str) -> Genome:
        """Parse canonical (or any equivalent) JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenomeError(f"genome is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data)
