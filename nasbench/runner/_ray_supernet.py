"""One supernet search (DARTS, Once-for-All) in one Ray actor, steered epoch by epoch by the driver.

The driver keeps the study, the checkpoint file and a copy of the epoch reports; the actor
holds the supernet on the resources it reserved. Nothing here imports Ray until ``start``.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasbench.errors import ConfigError, TrainingError
from nasbench.runner._ray import _DEATHS, _check_fits, _check_settings, _connect, _first_line

__all__ = ["RaySupernet"]

logger = logging.getLogger(__name__)


class _SupernetActor:
    """Ray actor body: builds the search with the factory, then runs what the driver asks."""

    def __init__(self, threads: int) -> None:
        # The actor owns `threads` cores: more torch/OpenMP threads would only fight other work.
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
        self.search: Any = None

    def build(self, factory: Callable[[], Any]) -> tuple[int, list, bool]:
        self.search = factory()
        return self.progress()

    def progress(self) -> tuple[int, list, bool]:
        return int(self.search.epoch), list(self.search.history), self.finished()

    def finished(self) -> bool:
        done = getattr(self.search, "finished", None)
        if done is None:  # a search without the property is over after its configured epochs
            done = self.search.epoch >= self.search.config.epochs
        return bool(done)

    def train_epoch(self) -> Any:
        return self.search.train_epoch()

    def state(self) -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save(self.search.state_dict(), buf)
        return buf.getvalue()

    def load_state(self, blob: bytes, label: str) -> tuple[int, list, bool]:
        import torch

        try:
            state = torch.load(io.BytesIO(blob), map_location=getattr(self.search, "device", "cpu"), weights_only=True)
        except Exception as exc:  # a truncated or foreign file
            raise ConfigError(f"cannot read checkpoint {label} ({_first_line(exc)}); delete it to start over") from None
        self.search.load_state_dict(state)
        return self.progress()

    def apply(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.search, *args)


class RaySupernet:
    """A supernet search living in one Ray actor; the driver calls it epoch by epoch.

    ``factory()`` runs in the actor and returns the search object, which must offer
    ``train_epoch() -> report``, ``state_dict()``, ``load_state_dict(state)``, ``epoch``,
    ``history`` and ``finished`` (or ``config.epochs``), as ``DartsSearch`` does. The factory
    and the reports must be picklable, and ``nasbench`` importable on the workers. The actor
    reserves ``cpus_per_trial`` CPUs (also its torch thread count) and ``gpus_per_trial`` GPUs
    (a fraction shares a GPU).

    The driver side mirrors ``epoch``, ``history`` and ``finished`` and keeps the state of the
    last finished epoch (``state()``), so ``save`` writes the checkpoint on the driver's disk
    and ``load`` sends it back: no shared filesystem is needed. When the actor's process or node
    dies, a new actor is built from that state and the call runs again, up to
    ``max_retries`` times per call; then a one-line ``TrainingError``. Exceptions raised by
    the search itself propagate as they would in process.

    Args:
        factory: ``factory() -> search``; pickled to the actor.
        address: None starts Ray on this machine (stopped by ``shutdown``); ``"auto"`` or
            ``"HOST:PORT"`` joins a cluster. A Ray already initialised in this process is used.
        cpus_per_trial: CPUs the actor reserves.
        gpus_per_trial: GPUs the actor reserves.
        max_retries: New actors per call after the actor died.
        init_timeout: Seconds to wait for the cluster's address to answer.

    Raises:
        ConfigError: On bad settings (at construction), or at start when the cluster is
            unreachable or no node fits the actor.
    """

    def __init__(self, factory: Callable[[], Any], *, address: str | None = None, cpus_per_trial: float = 1.0,
                 gpus_per_trial: float = 0.0, max_retries: int = 2, init_timeout: float = 10.0) -> None:
        _check_settings(cpus_per_trial, gpus_per_trial, max_retries, init_timeout)
        self.factory = factory
        self.address = address
        self.cpus_per_trial, self.gpus_per_trial = float(cpus_per_trial), float(gpus_per_trial)
        self.max_retries, self.init_timeout = max_retries, init_timeout
        self.threads = max(1, math.floor(cpus_per_trial))
        #: Epochs the search has trained, its reports, whether it is over (driver-side copies).
        self.epoch = 0
        self.history: list[Any] = []
        self.finished = False
        self._state: bytes | None = None  # checkpoint of the last finished epoch (or of the loaded file)
        self._ray: Any = None
        self._actor: Any = None
        self._started_ray = False

    def start(self) -> None:
        """Start or join Ray, check that the actor fits, build the search in it (idempotent)."""
        if self._ray is not None:
            return
        ray, self._started_ray = _connect(self.address, self.init_timeout, max(1, math.ceil(self.cpus_per_trial)))
        self._ray = ray
        try:
            _check_fits(ray, self.cpus_per_trial, self.gpus_per_trial, self._started_ray, what="the supernet")
            self._call("start", lambda actor: [])
        except BaseException:
            self.shutdown()
            raise

    # -- what the driver asks ------------------------------------------------------------------

    def train_epoch(self) -> Any:
        """Train one epoch in the actor; return its report (the state is kept for ``save``)."""
        report, state, self.finished = self._call(
            f"epoch {self.epoch}", lambda a: [a.train_epoch.remote(), a.state.remote(), a.finished.remote()])
        self._state = state
        self.history.append(report)
        self.epoch += 1
        return report

    def state(self) -> bytes:
        """The search's checkpoint (``torch.save`` of its ``state_dict``) as bytes."""
        if self._state is None:
            (self._state,) = self._call("state", lambda a: [a.state.remote()])
        return self._state

    def load_state(self, state: bytes, label: str = "state") -> None:
        """Restore the search from ``state()`` bytes (``label`` names them in errors)."""
        ((self.epoch, self.history, self.finished),) = self._call("load", lambda a: [a.load_state.remote(state, label)])
        self._state = state

    def save(self, path: str | Path) -> None:
        """Write the checkpoint to ``path`` on this machine, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(self.state())
        tmp.replace(path)

    def load(self, path: str | Path) -> bool:
        """Resume from the checkpoint at ``path`` on this machine if it exists; return whether it did."""
        path = Path(path)
        if not path.is_file():
            return False
        self.load_state(path.read_bytes(), str(path))
        logger.info("resumed the supernet from %s at epoch %d", path, self.epoch)
        return True

    def apply(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(search, *args)`` in the actor (``fn`` importable or picklable); its result."""
        return self._call(getattr(fn, "__name__", "call"), lambda a: [a.apply.remote(fn, *args)])[0]

    def shutdown(self) -> None:
        """Kill the actor; stop Ray if this object started it."""
        self._drop_actor()
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False
        self._ray = None

    def __enter__(self) -> RaySupernet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return (f"RaySupernet(address={self.address!r}, cpus_per_trial={self.cpus_per_trial:g}, "
                f"gpus_per_trial={self.gpus_per_trial:g}, max_retries={self.max_retries})")

    # -- the actor, its deaths and restarts ----------------------------------------------------

    def _call(self, what: str, call: Callable[[Any], list]) -> list:
        """``ray.get`` of the refs ``call(actor)`` returns; a new actor and another try when it died."""
        self.start()
        ray = self._ray
        deaths = 0
        while True:
            try:
                if self._actor is None:
                    self._spawn()
                return self._get(call(self._actor))
            except ray.exceptions.RayTaskError as exc:  # the search raised: same as in process
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                raise cause from exc
            except ray.exceptions.RayError as exc:
                self._drop_actor()
                reason = f"{type(exc).__name__}: {_first_line(exc)}"
                if getattr(exc, "actor_init_failed", False):
                    raise ConfigError(f"the Ray actor for the supernet could not start ({reason}); "
                                      "is nasbench installed on every node?") from exc
                if not (isinstance(exc, ray.exceptions.RayActorError) or type(exc).__name__ in _DEATHS):
                    raise TrainingError(f"Ray could not run the supernet's {what}: {reason}") from exc
                deaths += 1
                if deaths > self.max_retries:
                    raise TrainingError(f"the Ray worker training the supernet died {deaths} time(s) during {what} "
                                        f"(max_retries={self.max_retries}): {reason}; finished epochs are kept, "
                                        "run the same command to resume") from exc
                logger.warning("the Ray worker training the supernet died during %s (attempt %d of %d); "
                               "restarting it from the last finished epoch: %s", what, deaths, self.max_retries + 1,
                               reason)

    def _spawn(self) -> None:
        """A new actor with the search built by the factory, restored to the last known state."""
        ray = self._ray
        options = {"num_cpus": self.cpus_per_trial, "num_gpus": self.gpus_per_trial, "max_restarts": 0,
                   "max_task_retries": 0}
        self._actor = ray.remote(_SupernetActor).options(**options).remote(self.threads)
        try:
            refs = [self._actor.build.remote(self.factory)]
        except Exception as exc:  # pickling errors have no common base
            self._drop_actor()
            raise ConfigError(f"the supernet factory cannot be sent to Ray workers ({type(exc).__name__}: "
                              f"{_first_line(exc)}); use a picklable factory") from exc
        if self._state is not None:
            refs.append(self._actor.load_state.remote(self._state, "of the last finished epoch"))
        self.epoch, self.history, self.finished = self._get(refs)[-1]

    def _get(self, refs: list) -> list:
        ray = self._ray
        waiting = list(refs)
        while waiting:  # short timeouts let Ctrl-C through
            _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=1.0)
        return ray.get(refs)

    def _drop_actor(self) -> None:
        if self._actor is not None:
            try:
                self._ray.kill(self._actor, no_restart=True)
            except Exception as exc:  # already dead
                logger.debug("killing the supernet actor failed: %s", exc)
            self._actor = None
