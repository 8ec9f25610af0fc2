"""Ray Tune executor: trials reported epoch by epoch, weak ones stopped early by ASHA.

Our strategy still proposes every genome and the driver alone writes the study: this module
is one more ``Executor`` for ``run_search``. Tune runs in a background thread of the driver;
``submit`` queues a genome, a ``Searcher`` hands queued genomes to Tune, and a Tune
``Callback`` sends each ended trial back to ``wait``. The trainable, ``nasbench_trial``,
trains through the evaluator and reports validation accuracy after every epoch
(``nasbench.train.epoch_hook``), so ``ASHAScheduler`` can stop it at a rung.

Nothing here imports Ray until the executor starts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasbench.errors import ConfigError
from nasbench.objectives import Evaluation
from nasbench.runner._executors import Evaluator, Finished
from nasbench.runner._ray import RayExecutor
from nasbench.runner._tune_study import CURVE_KEY, PRUNED_KEY

if TYPE_CHECKING:
    from nasbench.runner._study import TrialRecord
    from nasbench.space import Genome

__all__ = ["SCHEDULERS", "TuneExecutor", "nasbench_trial"]

logger = logging.getLogger(__name__)

#: Tune schedulers of ``TuneExecutor`` ("fifo": none, every trial runs to the end).
SCHEDULERS = ("asha", "fifo")

_EPOCHS = "epochs_done"  # ASHA's time attribute: whole epochs reported so far
_FINAL = "nasbench_evaluation"  # in the last report only: the evaluator's whole answer (JSON)
_METRIC = "val_accuracy"
_EXITED = object()  # put on the queue of ended trials when Tune's thread ends


def nasbench_trial(config: dict[str, Any], evaluator: Evaluator, threads: int, max_epochs: int) -> None:
    """Ray Tune function trainable: evaluate ``config["genome"]``, reporting accuracy per epoch.

    Epochs before the last are reported as they end (ASHA may stop the trial there: Tune
    then ends this function inside ``tune.report``); the last report carries the
    evaluator's whole ``Evaluation`` instead, so a trial that runs to the end is recorded
    exactly as the core executor would record it.
    """
    from ray import tune

    from nasbench.space import Genome
    from nasbench.train import epoch_hook

    os.environ["OMP_NUM_THREADS"] = str(threads)  # one trial, its own cores (see RayExecutor)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    genome, seed, started = Genome.from_json(config["genome"]), int(config["seed"]), time.time()
    curve: list[float] = []

    def report(index: int, m: dict[str, Any]) -> None:
        curve.append(float(m["val_accuracy"]))
        if index + 1 < max_epochs:
            tune.report({_EPOCHS: index + 1, _METRIC: curve[-1], "val_loss": m["val_loss"],
                         "train_loss": m["train_loss"], "epochs": m["epoch"], "steps": m["step"],
                         "train_seconds": m["seconds"], CURVE_KEY: list(curve), "started": started})

    with epoch_hook(report):
        evaluation = evaluator(genome, seed)
    final = {"values": evaluation.values, "metrics": evaluation.metrics, "failure": evaluation.failure}
    acc = evaluation.metrics.get("val_accuracy")
    tune.report({_EPOCHS: len(curve), _METRIC: math.nan if acc is None else float(acc), CURVE_KEY: curve,
                 "started": started, _FINAL: json.dumps(final, default=str)})


@dataclass
class _Job:
    genome: Genome
    seed: int


class _Channel:
    """What the driver and Tune's thread share: genomes to run, trials that ended, a stop flag.

    Tune pickles its searcher, stopper and callbacks into its experiment folder (for its
    own resume, which we do not use); a pickled channel comes back empty.
    """

    def __init__(self) -> None:
        self.todo: queue.Queue[_Job | None] = queue.Queue()  # None: closed
        self.ended: queue.Queue[Any] = queue.Queue()
        self.closed = threading.Event()
        self.ready = threading.Event()  # Tune asked for its first trial
        self.live: dict[str, _Job] = {}  # Tune trial id -> job (Tune's thread only)

    def close(self) -> None:
        """No more genomes: Tune stops its trials and ends."""
        self.closed.set()
        self.todo.put(None)  # wakes a searcher waiting for a genome

    def __reduce__(self) -> tuple[type, tuple]:
        return (_Channel, ())


def _tune_parts(channel: _Channel) -> tuple[Any, Any, Any]:
    """(searcher, stopper, callback) bound to ``channel``; built here because their bases come from Ray."""
    from ray.tune import Callback, Stopper
    from ray.tune.search import Searcher

    class GenomeSearcher(Searcher):
        """Hands Tune the genomes our strategy asked for (``None``: nothing queued yet)."""

        def suggest(self, trial_id: str) -> dict | str | None:
            channel.ready.set()
            # Tune asks only when a slot is free, which the driver fills within milliseconds of
            # the trial that freed it coming back: wait for it. With no trial in Tune, there is
            # nothing else for its thread to do, and after a None it would sleep a whole second.
            try:
                job = channel.todo.get(timeout=10.0 if not channel.live else 0.05)
            except queue.Empty:
                return None
            if job is None or channel.closed.is_set():
                return Searcher.FINISHED
            channel.live[trial_id] = job
            return {"genome": job.genome.to_json(), "seed": job.seed}

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            """Results go back through the callback, which also sees errors and retries."""

        def save_to_dir(self, *args: Any, **kwargs: Any) -> None:
            """Nothing to save: the study is the record, and resuming replays it into the strategy."""

    class StopAll(Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return channel.closed.is_set()

    class SendBack(Callback):
        """Sends every ended trial (finished, stopped by the scheduler, or failed) to the driver."""

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._send(trial, error=False)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._send(trial, error=True)

        def _send(self, trial: Any, error: bool) -> None:
            job = channel.live.pop(trial.trial_id, None)
            if job is None or channel.closed.is_set():
                return
            reason = None
            if error:
                exc = trial.get_error()
                reason = _last_line(exc) if exc is not None else "unknown error"
            channel.ended.put((job, dict(trial.last_result or {}), reason, trial.num_failures))

    return GenomeSearcher(), StopAll(), SendBack()


class TuneExecutor(RayExecutor):
    """Runs ``workers`` trials at once as Ray Tune trials; with ASHA, weak ones stop early.

    Each trial trains through the evaluator and reports validation accuracy after every
    epoch; ``ASHAScheduler`` (asynchronous successive halving, time unit one epoch) stops a
    trial at a rung (``grace_epochs``, ``grace_epochs * reduction_factor``, ...) when it is
    below the top ``1/reduction_factor`` of the trials that reached that rung before it.
    Such a trial comes back with ``metrics[PRUNED_KEY]`` (epochs trained) and its accuracy
    at that epoch as its value; ``AshaRecorder`` records it as an Optuna PRUNED trial.

    Once running, a Tune trial costs about what a core task does (actors are reused), but
    every search starts its own trial actors, which import torch and nasbench afresh:
    seconds before the first result that ``RayExecutor``'s warm worker pool does not pay
    (``experiments/ray_scaling.py --tune``). So Tune is used for ASHA only; ``scheduler="fifo"``
    (nothing stopped) exists to measure that cost. Tune's files go to a temporary folder
    deleted at shutdown; Tune's own experiment resume is not used (the study is the record).

    Args:
        evaluator: As for ``RayExecutor``; with ASHA it must train (``TrainingEvaluator``),
            single objective (accuracy).
        scheduler: ``"asha"`` or ``"fifo"``.
        max_epochs: Epochs of a trial that is not stopped (default: the evaluator's
            ``train.epochs`` rounded up).
        grace_epochs: First rung: no trial stops before this many epochs.
        reduction_factor: ASHA keeps about ``1/reduction_factor`` of the trials at each rung.
        storage_path: Folder of Tune's experiment files (default: a temporary folder).
        **ray_options: ``address``, ``workers``, ``cpus_per_trial``, ``gpus_per_trial``,
            ``max_retries`` (Tune's ``max_failures``: a failed trial restarts from scratch),
            ``init_timeout`` as for ``RayExecutor``.
    """

    def __init__(self, evaluator: Evaluator, *, scheduler: str = "asha", max_epochs: int | None = None,
                 grace_epochs: int = 1, reduction_factor: float = 3.0, storage_path: str | None = None,
                 **ray_options: Any) -> None:
        super().__init__(evaluator, **ray_options)
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"unknown Tune scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}")
        if max_epochs is None:
            train = getattr(evaluator, "train", None)
            max_epochs = math.ceil(train.epochs - 1e-9) if train is not None else 1
        self.scheduler, self.max_epochs = scheduler, int(max_epochs)
        self.grace_epochs, self.reduction_factor = grace_epochs, float(reduction_factor)
        if scheduler == "asha":
            _check_asha(evaluator, self.max_epochs, grace_epochs, self.reduction_factor)
        self.storage_path = storage_path
        self._channel = _Channel()
        self._primed: list[list[float]] = []
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._exited = False
        self._folder: str | None = None
        self._count = 0

    def prime(self, history: list[TrialRecord]) -> None:
        """Seed ASHA's rungs with the learning curves of stored trials (call before the first submit).

        Without it a resumed search would let its first trials pass every rung unopposed.
        """
        if self._thread is not None:
            raise RuntimeError("prime() after trials were submitted")
        self._primed = [list(c) for r in history if (c := r.evaluation.metrics.get(CURVE_KEY))]

    # -- Tune's thread ---------------------------------------------------------------------------

    def launch(self, timeout: float = 120.0) -> None:
        """Start Ray (if needed) and Tune's thread; return when Tune waits for genomes (idempotent)."""
        if self._thread is not None:
            return
        self.start()
        from ray import tune
        from ray.tune.logger import JsonLoggerCallback

        searcher, stopper, callback = _tune_parts(self._channel)
        scheduler = None
        if self.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr=_EPOCHS, max_t=self.max_epochs,
                                      grace_period=self.grace_epochs, reduction_factor=self.reduction_factor)
            _prime_rungs(scheduler, self._primed)
        trainable = tune.with_resources(
            tune.with_parameters(nasbench_trial, evaluator=self.evaluator, threads=self.threads,
                                 max_epochs=self.max_epochs),
            {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial})
        self._folder = self.storage_path or tempfile.mkdtemp(prefix="nasbench-tune-")
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric=_METRIC, mode="max", search_alg=searcher, scheduler=scheduler,
                                        num_samples=-1, max_concurrent_trials=self.slots, reuse_actors=True),
            run_config=tune.RunConfig(name="nasbench", storage_path=os.path.abspath(self._folder), verbose=0,
                                      stop=stopper, callbacks=[callback, JsonLoggerCallback()],
                                      failure_config=tune.FailureConfig(max_failures=self.max_retries)))
        self._thread = threading.Thread(target=self._fit, args=(tuner,), name="nasbench-tune", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._channel.ready.wait(0.1) and self._thread.is_alive() and time.monotonic() < deadline:
            pass
        if not self._thread.is_alive():
            raise RuntimeError(f"Ray Tune ended while starting: {self._error!r}") from self._error
        if not self._channel.ready.is_set():
            logger.warning("Ray Tune has not asked for a trial after %g s; going on", timeout)

    def _fit(self, tuner: Any) -> None:
        # Tune's new console output prints a banner even at verbose=0, and its default
        # loggers write CSV and TensorBoard files per result: off for this run.
        quiet = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
        before = {k: os.environ.get(k) for k in quiet}
        for k, v in quiet.items():
            os.environ.setdefault(k, v)
        try:
            tuner.fit()
        except BaseException as exc:  # reported to the driver by wait()
            self._error = exc
        finally:
            for k, v in before.items():
                if v is None:
                    os.environ.pop(k, None)
            self._channel.ended.put(_EXITED)

    # -- Executor --------------------------------------------------------------------------------

    def submit(self, genome: Genome, seed: int) -> None:
        """Queue ``genome`` for Tune (starting Ray and Tune first if needed)."""
        self.launch()
        self._channel.todo.put(_Job(genome, seed))
        self._count += 1

    def wait(self) -> list[Finished]:
        """Block until at least one trial ended; return every ended one."""
        out: list[Finished] = []
        while not out:
            if self._count == 0:
                raise RuntimeError("wait() with nothing submitted")
            if self._exited and self._channel.ended.empty():
                raise RuntimeError(f"Ray Tune stopped with {self._count} trials unfinished: {self._error!r}")
            try:
                item = self._channel.ended.get(timeout=1.0)  # short timeouts let Ctrl-C through
            except queue.Empty:
                continue
            while item is not None:
                if item is _EXITED:
                    self._exited = True
                else:
                    out.append(self._finished(*item))
                try:
                    item = self._channel.ended.get_nowait()
                except queue.Empty:
                    item = None
        self._count -= len(out)
        return out

    def _finished(self, job: _Job, result: dict[str, Any], reason: str | None, failures: int) -> Finished:
        started = (dt.datetime.fromtimestamp(result["started"]) if isinstance(result.get("started"), float)
                   else dt.datetime.now())
        curve = [float(v) for v in result.get(CURVE_KEY) or []]
        if reason is not None:
            failure = f"Ray Tune trial failed {failures} time(s), max_retries={self.max_retries}: {reason}"
            logger.warning("trial of genome %s failed: %s", job.genome.hash, failure)
            evaluation = Evaluation(None, {"seed": job.seed, CURVE_KEY: curve}, failure=failure)
            return Finished(job.genome, job.seed, evaluation, started, attempts=failures)
        if _FINAL in result:  # ran to the end: the evaluator's own answer
            final = json.loads(result[_FINAL])
            values = tuple(final["values"]) if final["values"] is not None else None
            metrics = {**final["metrics"], CURVE_KEY: curve}
            evaluation = Evaluation(values, metrics, final["failure"])
        else:  # stopped by ASHA after its last report
            epochs = int(result.get(_EPOCHS, len(curve)))
            metrics = {k: result[k] for k in ("val_accuracy", "val_loss", "train_loss", "epochs", "steps",
                                              "train_seconds") if k in result}
            metrics.update({"seed": job.seed, CURVE_KEY: curve, PRUNED_KEY: epochs})
            evaluation = Evaluation((float(result[_METRIC]),), metrics)
        return Finished(job.genome, job.seed, evaluation, started, attempts=failures + 1)

    @property
    def pending(self) -> int:
        """Trials submitted and not yet returned by ``wait``."""
        return self._count

    def shutdown(self) -> None:
        """Stop Tune (and the trials still running), then Ray if this executor started it."""
        self._channel.close()
        if self._thread is not None:
            self._thread.join(timeout=60)
            if self._thread.is_alive():
                logger.warning("Ray Tune did not stop within 60 s; leaving its thread behind")
            self._thread = None
        if self._count:
            logger.info("cancelled %d unfinished trials", self._count)
            self._count = 0
        if self._folder is not None and self.storage_path is None:
            shutil.rmtree(self._folder, ignore_errors=True)
        self._folder = None
        super().shutdown()

    def __repr__(self) -> str:
        return (f"TuneExecutor(scheduler={self.scheduler!r}, max_epochs={self.max_epochs}, "
                f"grace_epochs={self.grace_epochs}, reduction_factor={self.reduction_factor:g}, "
                f"workers={self.slots}, cpus_per_trial={self.cpus_per_trial:g}, "
                f"gpus_per_trial={self.gpus_per_trial:g}, max_retries={self.max_retries})")


def _check_asha(evaluator: Evaluator, max_epochs: int, grace: int, factor: float) -> None:
    """Refuse ASHA settings and evaluators it cannot work with, before anything starts."""
    if getattr(evaluator, "train", None) is None:
        raise ConfigError("--scheduler asha stops training early, but this evaluator does not train "
                          "(--benchmark answers from a table): drop --scheduler asha")
    objectives = getattr(evaluator, "objectives", None)
    if objectives is not None and objectives.multi:
        raise ConfigError(f"--scheduler asha ranks trials by accuracy alone, which would cut the fast end of "
                          f"the {objectives} Pareto front; use it with --objective accuracy")
    if not isinstance(grace, int) or grace < 1:
        raise ConfigError(f"--grace-epochs must be a whole number >= 1, got {grace!r}")
    if grace >= max_epochs:
        raise ConfigError(f"--scheduler asha needs more --epochs ({max_epochs}) than --grace-epochs ({grace}), "
                          "or no trial can stop early")
    if not factor > 1:
        raise ConfigError(f"--reduction-factor must be > 1, got {factor:g}")


def _prime_rungs(scheduler: Any, curves: list[list[float]]) -> None:
    """Record stored learning curves in the rungs of Ray's ASHAScheduler (private structure)."""
    if not curves:
        return
    try:
        for bracket in scheduler._brackets:
            for milestone, recorded in bracket._rungs:
                step = math.ceil(milestone)  # the first whole epoch at or past the rung
                for i, curve in enumerate(curves):
                    if len(curve) >= step and math.isfinite(curve[step - 1]):
                        recorded[f"stored-{i}"] = curve[step - 1]
    except (AttributeError, TypeError, ValueError) as exc:
        logger.warning("could not seed ASHA with the stored trials (%s); its rungs start empty", exc)


def _last_line(exc: BaseException) -> str:
    """The message of an error whose text may be a whole traceback."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
