"""The Ray executor: trials as Ray tasks on this machine or a cluster, results streamed to the driver.

Nothing here imports Ray until the executor starts, so the local executor never pays for it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasbench.errors import ConfigError
from nasbench.objectives import Evaluation
from nasbench.runner._executors import Evaluator, Executor, Finished

if TYPE_CHECKING:
    from nasbench.space import Genome

__all__ = ["RayExecutor"]

logger = logging.getLogger(__name__)

#: Ray errors meaning the process (or node) running a trial died: the trial is run again.
_DEATHS = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "LocalRayletDiedError", "ObjectLostError")

# In each worker process: the evaluator of the current search, fetched from the object store once.
_WORKER_EVALUATOR: dict[str, Any] = {}


def _evaluate(boxed: list, genome: Genome, seed: int, threads: int) -> tuple[Evaluation, dt.datetime]:
    """Ray task body (runs in a worker): evaluate ``genome``; return (evaluation, start time).

    ``boxed`` is ``[ObjectRef of the evaluator]``; boxing stops Ray from deserialising the
    evaluator for every task, so a worker fetches it once per search.
    """
    import ray

    ref = boxed[0]
    key = ref.hex()
    evaluator = _WORKER_EVALUATOR.get(key)
    if evaluator is None:
        _WORKER_EVALUATOR.clear()
        evaluator = _WORKER_EVALUATOR[key] = ray.get(ref)
    # One trial gets `threads` cores: more torch/OpenMP threads would only fight the other trials.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # else torch reads OMP_NUM_THREADS when the evaluator imports it
        sys.modules["torch"].set_num_threads(threads)
    started = dt.datetime.now()
    return evaluator(genome, seed), started


@dataclass
class _Task:
    genome: Genome
    seed: int
    attempts: int = 1


class RayExecutor(Executor):
    """Runs ``workers`` trials at once as Ray tasks, locally or on a Ray cluster.

    Each trial is one task of the Ray core API with ``num_cpus=cpus_per_trial`` and
    ``num_gpus=gpus_per_trial`` (fractional GPUs share a device). Core tasks, not Ray Tune:
    a task costs milliseconds to schedule on a warm worker, while a Tune trial starts an
    actor, a trainable and its own checkpoint/report machinery per trial — seconds each,
    which is the whole budget of a benchmark lookup or a short proxy training. The search
    loop (strategy, study) stays in the driver, so Tune's schedulers would add nothing.

    Ray starts (or connects, with ``address``) lazily at the first ``submit`` or ``start``.
    A trial whose worker process dies (segfault, out-of-memory kill, lost node) is run
    again up to ``max_retries`` times; the retries are counted here rather than by Ray so
    that the study records ``attempts``. Past that, the trial comes back as a failed
    Evaluation with the reason, and the search goes on. Exceptions raised by the evaluator
    itself propagate, as with the local executor (evaluators turn trial failures into
    failed Evaluations themselves).

    The evaluator must be picklable and importable by the workers (installed package);
    the spaces, datasets and profiles it names by path must exist on every node.

    Args:
        evaluator: ``evaluator(genome, seed) -> Evaluation``; sent to the object store once.
        address: None starts Ray on this machine (stopped again by ``shutdown``); ``"auto"``
            joins the running cluster (``RAY_ADDRESS`` or ``ray start``); ``"HOST:PORT"``
            joins that cluster's head. A Ray already initialised in this process is used as is.
        workers: Trials in flight at once (``slots``).
        cpus_per_trial: CPUs each trial reserves; also its torch/OpenMP thread count (floor, >= 1).
        gpus_per_trial: GPUs each trial reserves; below 1 shares a GPU between trials.
        max_retries: Re-runs of a trial whose worker died.
        init_timeout: Seconds to wait for the cluster's address to answer.

    Raises:
        ConfigError: On bad settings (at construction), or at start when the cluster is
            unreachable or cannot fit one trial (e.g. GPUs asked of a cluster without any).
    """

    def __init__(self, evaluator: Evaluator, *, address: str | None = None, workers: int = 2,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, max_retries: int = 2,
                 init_timeout: float = 10.0) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        _check_settings(cpus_per_trial, gpus_per_trial, max_retries, init_timeout)
        self.evaluator = evaluator
        self.address = address
        self.slots = workers
        self.cpus_per_trial, self.gpus_per_trial = float(cpus_per_trial), float(gpus_per_trial)
        self.max_retries, self.init_timeout = max_retries, init_timeout
        self.threads = max(1, math.floor(cpus_per_trial))
        self._tasks: dict[Any, _Task] = {}  # ObjectRef -> trial
        self._boxed: list | None = None  # [ObjectRef of the evaluator]
        self._remote: Any = None
        self._started_ray = False

    @property
    def workers(self) -> int:
        """Trials in flight at once."""
        return self.slots

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start or join Ray, check that one trial fits, ship the evaluator (idempotent)."""
        if self._remote is not None:
            return
        cpus = max(1, math.ceil(self.slots * self.cpus_per_trial))
        ray, self._started_ray = _connect(self.address, self.init_timeout, cpus)
        try:
            _check_fits(ray, self.cpus_per_trial, self.gpus_per_trial, self._started_ray, slots=self.slots)
            try:
                self._boxed = [ray.put(self.evaluator)]
            except Exception as exc:  # pickling errors have no common base
                raise ConfigError(f"the evaluator cannot be sent to Ray workers ({type(exc).__name__}: "
                                  f"{_first_line(exc)}); use a picklable evaluator") from exc
        except BaseException:
            self._stop_ray()
            raise
        self._remote = ray.remote(_evaluate).options(
            num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial, max_retries=0, retry_exceptions=False,
            name="nasbench-trial")

    # -- Executor ------------------------------------------------------------------------------

    def submit(self, genome: Genome, seed: int) -> None:
        """Start a Ray task evaluating ``genome`` (starting Ray first if needed)."""
        self.start()
        self._launch(_Task(genome, seed))

    def _launch(self, task: _Task) -> None:
        ref = self._remote.remote(self._boxed, task.genome, task.seed, self.threads)
        self._tasks[ref] = task

    def wait(self) -> list[Finished]:
        """Block until at least one trial finished; return every finished one."""
        import ray

        out: list[Finished] = []
        while not out:
            if not self._tasks:
                raise RuntimeError("wait() with nothing submitted")
            refs = list(self._tasks)
            ready, _ = ray.wait(refs, num_returns=1, timeout=1.0)  # short timeouts let Ctrl-C through
            if not ready:
                continue
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                done = self._collect(ray, ref)
                if done is not None:
                    out.append(done)
        return out

    def _collect(self, ray: Any, ref: Any) -> Finished | None:
        """The finished trial of ``ref``, or None when it was launched again after a worker death."""
        task = self._tasks.pop(ref)
        try:
            evaluation, started = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the evaluator raised: same as in-process
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            raise cause from exc
        except ray.exceptions.RayError as exc:
            reason = f"{type(exc).__name__}: {_first_line(exc)}"
            if type(exc).__name__ in _DEATHS and task.attempts <= self.max_retries:
                logger.warning("worker died evaluating genome %s (attempt %d of %d), running it again: %s",
                               task.genome.hash, task.attempts, self.max_retries + 1, reason)
                task.attempts += 1
                self._launch(task)
                return None
            failure = (f"worker died {task.attempts} time(s), max_retries={self.max_retries}: {reason}"
                       if type(exc).__name__ in _DEATHS else f"Ray could not run the trial: {reason}")
            logger.warning("trial of genome %s failed: %s", task.genome.hash, failure)
            evaluation = Evaluation(None, {"seed": task.seed}, failure=failure)
            started = dt.datetime.now()
        return Finished(task.genome, task.seed, evaluation, started, attempts=task.attempts)

    @property
    def pending(self) -> int:
        """Trials submitted and not yet returned by ``wait`` (retries included)."""
        return len(self._tasks)

    def shutdown(self) -> None:
        """Cancel trials still running; stop Ray if this executor started it."""
        if self._tasks:
            import ray

            for ref in self._tasks:
                try:
                    ray.cancel(ref, force=True)
                except Exception as exc:  # already finished or its worker already gone
                    logger.debug("cancel failed: %s", exc)
            logger.info("cancelled %d unfinished trials", len(self._tasks))
            self._tasks.clear()
        self._boxed = None
        self._remote = None
        self._stop_ray()

    def _stop_ray(self) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, workers={self.slots}, cpus_per_trial={self.cpus_per_trial:g}, "
                f"gpus_per_trial={self.gpus_per_trial:g}, max_retries={self.max_retries})")


def _check_settings(cpus_per_trial: float, gpus_per_trial: float, max_retries: int, init_timeout: float) -> None:
    """Refuse resource and retry settings that can never work (before Ray starts)."""
    if not cpus_per_trial > 0:
        raise ConfigError(f"--cpus-per-trial must be > 0, got {cpus_per_trial:g}")
    if not gpus_per_trial >= 0 or (gpus_per_trial > 1 and gpus_per_trial != int(gpus_per_trial)):
        raise ConfigError(f"--gpus-per-trial must be a fraction below 1 or a whole number, got {gpus_per_trial:g}")
    if max_retries < 0:
        raise ConfigError(f"--max-retries must be >= 0, got {max_retries}")
    if not init_timeout > 0:
        raise ConfigError(f"init_timeout must be > 0, got {init_timeout:g}")


def _connect(address: str | None, init_timeout: float, cpus: int) -> tuple[Any, bool]:
    """Import Ray and start it with ``cpus`` CPUs (``address`` None) or join ``address``.

    A Ray already initialised in this process is used as is. Returns (the ray module,
    whether this call started Ray, i.e. whether the caller must stop it).
    """
    ray = _import_ray()
    if address not in (None, "auto"):
        _check_reachable(address, init_timeout)
    if ray.is_initialized():
        logger.info("using the Ray instance already initialised in this process")
        return ray, False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        if cpus > (os.cpu_count() or 1):
            logger.warning("asking Ray for %d CPUs oversubscribes this machine's %d cores", cpus, os.cpu_count() or 1)
        ray.init(address="local", num_cpus=cpus, **quiet)
        logger.info("started Ray on this machine with %d CPUs", cpus)
        return ray, True
    if address == "auto":
        address = _auto_address()
        _check_reachable(address, init_timeout)
    # Something may listen there without being Ray: cap Ray's ~1 s connect attempts (20 by default).
    wait = "RAY_gcs_server_port_wait_time_s"
    before = os.environ.get(wait)
    os.environ.setdefault(wait, str(math.ceil(init_timeout)))
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot join the Ray cluster at {address}: {_first_line(exc)}; "
                          "is it the head node's GCS port (6379 by default)?") from exc
    finally:
        if before is None:
            os.environ.pop(wait, None)
    logger.info("joined the Ray cluster at %s", address)
    return ray, False


def _check_fits(ray: Any, cpus: float, gpus: float, started: bool, *, slots: int = 1, what: str = "one trial") -> None:
    """Refuse a request of ``cpus``/``gpus`` no node can ever satisfy (Ray would queue it forever)."""
    total = ray.cluster_resources()
    where = "this machine's Ray" if started else "the Ray cluster"
    if gpus > 0 and total.get("GPU", 0) <= 0:
        raise ConfigError(f"--gpus-per-trial {gpus:g} but {where} has no GPUs; "
                          "use --gpus-per-trial 0 or a cluster with GPU nodes")
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        biggest = max(((r.get("CPU", 0), r.get("GPU", 0)) for r in nodes), default=(0, 0))
        raise ConfigError(f"no node of {where} has {cpus:g} CPUs and {gpus:g} GPUs "
                          f"for {what} (largest: {biggest[0]:g} CPUs, {biggest[1]:g} GPUs); "
                          "lower --cpus-per-trial/--gpus-per-trial")
    if total.get("CPU", 0) < slots * cpus:
        logger.warning("the cluster has %g CPUs: fewer than %d trials of %g CPUs will run at once",
                       total.get("CPU", 0), slots, cpus)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install 'ray[default]'") from exc
    return ray


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _auto_address() -> str:
    """The address ``ray.init(address="auto")`` would join (``RAY_ADDRESS`` or the running ``ray start``)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address  # no public equivalent
    except ImportError:
        return "auto"
    try:
        found = canonicalize_bootstrap_address("auto")
    except ConnectionError as exc:
        raise ConfigError("--address auto found no running Ray cluster; start one with 'ray start --head' "
                          "or give --address HOST:PORT") from exc
    return found or "auto"


def _check_reachable(address: str, timeout: float) -> None:
    """Fail in ``timeout`` seconds, not Ray's minutes of retries, when nothing listens at ``address``."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address must be auto or HOST:PORT (e.g. 10.0.0.5:6379), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({why} within {timeout:g} s); "
                          "check the head node's address and that 'ray start --head' runs there") from exc
