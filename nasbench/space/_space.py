"""The base of every space: a tree of decisions plus what the decisions mean."""

from __future__ import annotations

import difflib
import hashlib
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from nasbench.errors import GenomeError, SpaceError
from nasbench.space._choice import KINDS, Decision, Value
from nasbench.space._genome import Genome, canonical_json

if TYPE_CHECKING:
    import networkx as nx
    import numpy as np
    import optuna
    import torch.nn as nn

__all__ = ["Space", "as_rng", "iter_assignments"]

Chooser = Callable[[Decision], Value]


def as_rng(seed: int | random.Random | None) -> random.Random:
    """A ``random.Random`` from a seed (or the given generator itself)."""
    if isinstance(seed, random.Random):
        return seed
    return random.Random(seed)


class Space:
    """A named search space: a tree of decisions (some activate others) and their meaning.

    Subclasses (``MacroSpace``, ``CellSpace``) build the tree from their DSL and implement
    ``freeze`` (genome -> plain architecture description), ``structure`` (what the hash
    covers) and ``to_graph``. Everything else - validation, sampling, mutation, crossover,
    encodings, counting - is defined here once, on the tree.
    """

    kind = "space"

    def __init__(self, name: str, roots: Iterable[Decision], description: str = "") -> None:
        if not name or not all(c.isalnum() or c in "_-." for c in name):
            raise SpaceError(f"space name {name!r} must be non-empty letters, digits, '_', '-' or '.'")
        self.name = name
        self.description = description
        self.roots: tuple[Decision, ...] = tuple(roots)
        self.decisions: tuple[Decision, ...] = _flatten(self.roots)
        self._by_label = {d.label: d for d in self.decisions}
        if len(self._by_label) != len(self.decisions):
            raise SpaceError(f"space {name!r} has two decisions with the same label")
        self.groups: tuple[str, ...] = tuple(dict.fromkeys(d.group for d in self.decisions))
        #: Where ``nasbench.load_space`` found it: a built-in name or a space file's absolute path.
        self.source: str | None = None
        self._hash: str | None = None

    # -- what subclasses provide ------------------------------------------------------------
    def structure(self) -> dict[str, Any]:
        """Plain description of everything that shapes the networks (covered by ``hash``)."""
        return {"kind": self.kind, "name": self.name,
                "decisions": [d.to_json() for d in self.decisions]}

    def freeze(self, genome: Genome) -> dict[str, Any]:
        """The concrete architecture a genome selects, as plain data for the builder."""
        raise NotImplementedError

    def to_graph(self, genome: Genome, cell: str | None = None) -> nx.DiGraph:
        """The architecture as a networkx DiGraph."""
        raise NotImplementedError

    # -- identity ---------------------------------------------------------------------------
    @property
    def hash(self) -> str:
        """Structural hash (12 hex chars): changes whenever the space's meaning changes."""
        if self._hash is None:
            text = canonical_json(self.structure())
            self._hash = hashlib.sha256(text.encode()).hexdigest()[:12]
        return self._hash

    @property
    def size(self) -> int:
        """Exact number of distinct genomes."""
        return _count(self.roots)

    def decision(self, label: str) -> Decision:
        """The decision called ``label``."""
        try:
            return self._by_label[label]
        except KeyError:
            raise GenomeError(self._unknown_hint(label), label) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self.decisions)} decisions, size={self.size:.3g})"

    # -- genomes ----------------------------------------------------------------------------
    def genome(self, values: Mapping[str, Any]) -> Genome:
        """Validate ``values`` and return the canonical genome (inactive decisions dropped).

        Raises:
            GenomeError: unknown decision, value out of range, or a missing active decision.
        """
        for label in values:
            if label not in self._by_label:
                raise GenomeError(self._unknown_hint(label), label)

        def choose(d: Decision) -> Value:
            if d.label not in values:
                raise GenomeError(f"missing decision; choose one of {list(d.values)}", d.label)
            i = d.index(values[d.label])
            if i < 0:
                raise GenomeError(f"value {values[d.label]!r} out of range; choose one of {list(d.values)}", d.label)
            return d.values[i]

        return Genome(self.name, self.hash, self._walk(choose))

    def fill(self, values: Mapping[str, Any], seed: int | random.Random | None = 0) -> Genome:
        """A genome taking ``values`` where given (and active); other active decisions are sampled.

        Values of decisions that end up inactive are dropped; out-of-range values raise GenomeError.
        """
        rng = as_rng(seed)
        for label in values:
            if label not in self._by_label:
                raise GenomeError(self._unknown_hint(label), label)

        def choose(d: Decision) -> Value:
            if d.label not in values:
                return rng.choice(d.values)
            i = d.index(values[d.label])
            if i < 0:
                raise GenomeError(f"value {values[d.label]!r} out of range; choose one of {list(d.values)}", d.label)
            return d.values[i]

        return Genome(self.name, self.hash, self._walk(choose))

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Genome]:
        """Every genome of the space, in a fixed order (refused when ``size > limit``)."""
        if self.size > limit:
            raise GenomeError(f"space {self.name!r} has {self.size:.3g} genomes, more than limit={limit}")
        for values in iter_assignments(self.roots):
            yield Genome(self.name, self.hash, values)

    def validate(self, genome: Genome) -> Genome:
        """Check that ``genome`` belongs to this space (name and structural hash) and is valid."""
        self._check_own(genome)
        return self.genome(genome.values)

    def _check_own(self, genome: Mapping[str, Value]) -> None:
        if not isinstance(genome, Genome):
            return
        if genome.space != self.name:
            raise GenomeError(f"genome is of space {genome.space!r}, not {self.name!r}; load it with that space")
        if genome.space_hash != self.hash:
            raise GenomeError(
                f"genome was made for another version of space {self.name!r} "
                f"(hash {genome.space_hash}, this space {self.hash}); re-sample it or use the matching space file")

    def load_genome(self, data: str | Mapping[str, Any] | Genome) -> Genome:
        """Parse JSON text, a dict or a Genome, and validate it against this space."""
        if isinstance(data, Genome):
            return self.validate(data)
        genome = Genome.from_json(data) if isinstance(data, str) else Genome.from_dict(data)
        return self.validate(genome)

    def active_decisions(self, genome: Mapping[str, Value]) -> list[Decision]:
        """The decisions active in ``genome``, in tree order."""
        self._check_own(genome)
        out: list[Decision] = []

        def choose(d: Decision) -> Value:
            out.append(d)
            if d.label not in genome:
                raise GenomeError(f"missing decision; choose one of {list(d.values)}", d.label)
            return genome[d.label]

        self._walk(choose)
        return out

    def sample(self, seed: int | random.Random | None = None) -> Genome:
        """A uniformly chosen value per active decision, from a seed or ``random.Random``."""
        rng = as_rng(seed)
        return Genome(self.name, self.hash, self._walk(lambda d: rng.choice(d.values)))

    def pick(self, choose: Callable[[Decision], Value]) -> Genome:
        """The genome taking ``choose(decision)`` for every active decision, in tree order.

        For structured sampling, e.g. ``space.pick(lambda d: max(d.values))`` is the largest
        genome of an all-numeric space.
        """
        return Genome(self.name, self.hash, self._walk(choose))

    def mutate(self, genome: Genome, seed: int | random.Random | None = None,
               kinds: Iterable[str] | None = None) -> Genome:
        """Change one active decision (optionally only of the given kinds) to another value.

        Ordered decisions (widths, depths, kernel sizes...) step to a neighbouring value;
        others jump to any other value. Decisions that a change activates are sampled.
        """
        rng = as_rng(seed)
        genome = self.validate(genome)
        wanted = set(kinds) if kinds is not None else None
        if wanted is not None and not wanted <= set(KINDS):
            raise GenomeError(f"unknown decision kinds {sorted(wanted - set(KINDS))}; valid: {', '.join(KINDS)}")
        cands = [d for d in self.active_decisions(genome)
                 if len(d.values) > 1 and (wanted is None or d.kind in wanted)]
        if not cands:
            raise GenomeError(f"space {self.name!r} has no decision to mutate"
                              + (f" of kinds {sorted(wanted)}" if wanted else ""))
        d = rng.choice(cands)
        i = d.index(genome[d.label])
        if d.ordered:
            steps = [j for j in (i - 1, i + 1) if 0 <= j < len(d.values)]
            j = rng.choice(steps)
        else:
            j = rng.choice([k for k in range(len(d.values)) if k != i])
        new = dict(genome.values)
        new[d.label] = d.values[j]
        return Genome(self.name, self.hash,
                      self._walk(lambda x: new[x.label] if x.label in new else rng.choice(x.values)))

    def crossover(self, a: Genome, b: Genome, seed: int | random.Random | None = None,
                  mode: str = "uniform") -> Genome:
        """A child of two genomes.

        Args:
            mode: ``"uniform"`` takes each decision from either parent at random;
                ``"stage"`` cuts between groups (stages, cells) at a random boundary and takes
                the groups before the cut from ``a`` and the rest from ``b``.
        """
        rng = as_rng(seed)
        a, b = self.validate(a), self.validate(b)
        if mode == "uniform":
            def pick(d: Decision) -> Genome:
                return a if rng.random() < 0.5 else b
        elif mode == "stage":
            if len(self.groups) < 2:
                return self.crossover(a, b, rng, "uniform")
            cut = rng.randrange(1, len(self.groups))
            first = set(self.groups[:cut])

            def pick(d: Decision) -> Genome:
                return a if d.group in first else b
        else:
            raise GenomeError(f"unknown crossover mode {mode!r}; use 'uniform' or 'stage'")

        def choose(d: Decision) -> Value:
            primary = pick(d)
            other = b if primary is a else a
            for parent in (primary, other):
                if d.label in parent:
                    return parent[d.label]
            return rng.choice(d.values)

        return Genome(self.name, self.hash, self._walk(choose))

    # -- encodings --------------------------------------------------------------------------
    def to_vector(self, genome: Genome) -> list[int]:
        """Integer vector over all decisions: index of the value, -1 where inactive."""
        genome = self.validate(genome)
        return [d.index(genome[d.label]) if d.label in genome else -1 for d in self.decisions]

    def from_vector(self, vector: Iterable[int]) -> Genome:
        """Inverse of ``to_vector`` (entries of inactive decisions are ignored)."""
        vec = list(vector)
        if len(vec) != len(self.decisions):
            raise GenomeError(f"vector has {len(vec)} entries; space {self.name!r} has {len(self.decisions)} decisions")
        values: dict[str, Value] = {}
        for d, i in zip(self.decisions, vec):
            if int(i) != i:
                raise GenomeError(f"vector entries must be whole numbers, got {i!r}", d.label)
            if 0 <= int(i) < len(d.values):
                values[d.label] = d.values[int(i)]
            elif int(i) != -1:
                raise GenomeError(f"index {i} out of range 0..{len(d.values) - 1}", d.label)
        active = self._walk(lambda d: values.get(d.label, d.values[0]))
        missing = [k for k in active if k not in values]
        if missing:
            raise GenomeError("active decision given as -1 in the vector", missing[0])
        return Genome(self.name, self.hash, active)

    @property
    def feature_size(self) -> int:
        """Length of ``to_features`` vectors."""
        return sum(len(d.values) for d in self.decisions)

    def to_features(self, genome: Genome) -> np.ndarray:
        """One-hot float32 features per decision (all zeros where inactive), for predictors."""
        import numpy as np

        genome = self.validate(genome)
        out = np.zeros(self.feature_size, dtype=np.float32)
        offset = 0
        for d in self.decisions:
            if d.label in genome:
                out[offset + d.index(genome[d.label])] = 1.0
            offset += len(d.values)
        return out

    def optuna_distributions(self, genome: Genome | None = None) -> dict[str, optuna.distributions.BaseDistribution]:
        """Optuna distributions of the decisions active in ``genome`` (all decisions if None)."""
        from optuna.distributions import CategoricalDistribution

        decisions = self.decisions if genome is None else self.active_decisions(genome)
        return {d.label: CategoricalDistribution(list(d.values)) for d in decisions}

    def suggest(self, trial: optuna.Trial) -> Genome:
        """Ask an Optuna trial for every active decision (define-by-run, conditional)."""
        return Genome(self.name, self.hash,
                      self._walk(lambda d: trial.suggest_categorical(d.label, list(d.values))))

    # -- models -----------------------------------------------------------------------------
    def build(self, genome: Genome, num_classes: int = 10,
              input_shape: tuple[int, int, int] = (3, 32, 32)) -> nn.Module:
        """Materialize ``genome`` as a PyTorch module (imports torch on first use)."""
        from nasbench.build import build_model

        return build_model(self, genome, num_classes=num_classes, input_shape=input_shape)

    # -- internals --------------------------------------------------------------------------
    def _walk(self, choose: Chooser) -> dict[str, Value]:
        values: dict[str, Value] = {}
        stack = list(reversed(self.roots))
        while stack:
            d = stack.pop()
            v = choose(d)
            values[d.label] = v
            stack.extend(reversed(d.children_for(v)))
        return values

    def _unknown_hint(self, label: str) -> str:
        close = difflib.get_close_matches(label, list(self._by_label), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown decision for space {self.name!r}{hint}"


def iter_assignments(decisions: Iterable[Decision]) -> Iterator[dict[str, Value]]:
    """Every assignment of the active decisions of a decision list (a tree), in a fixed order."""
    ds = tuple(decisions)
    if not ds:
        yield {}
        return
    head, rest = ds[0], ds[1:]
    for v in head.values:
        for tail in iter_assignments(head.children_for(v) + rest):
            yield {head.label: v, **tail}


def _flatten(roots: Iterable[Decision]) -> tuple[Decision, ...]:
    seen: dict[str, Decision] = {}
    stack = list(reversed(tuple(roots)))
    while stack:
        d = stack.pop()
        if d.label in seen:
            if seen[d.label] is not d and seen[d.label] != d:
                raise SpaceError(f"two different decisions are labelled {d.label!r}")
            continue
        seen[d.label] = d
        for _, kids in reversed(d.children):
            stack.extend(reversed(kids))
    return tuple(seen.values())


def _count(decisions: Iterable[Decision]) -> int:
    total = 1
    for d in decisions:
        if d.children:
            total *= sum(_count(d.children_for(v)) for v in d.values)
        else:
            total *= len(d.values)
    return total
