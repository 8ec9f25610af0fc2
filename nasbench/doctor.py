"""``nasbench doctor``: run every path of nasbench on one device for a few steps and report what works.

Each check runs on its own, inside ``try/except``: one failure never stops the others, and its
reason is the exception's first line. The checks, one result each:

- ``train SPACE`` for every built-in space: build a sampled network and train it a few steps
  with ``train_model``;
- ``darts 1st order`` / ``darts 2nd order``: bilevel DARTS steps on a small NB201 supernet;
- ``ofa sandwich step``: sandwich steps (largest, smallest and a random subnet) of the OFA
  supernet of the ``mobilenetv3`` space; ``ofa extract``: a subnet extracted from it, whose
  forward pass must match the supernet's;
- ``latency``: ``measure_latency`` of a sampled network;
- ``study write``: one trial written by ``StudyRecorder`` to an SQLite study in a temporary
  folder and read back (the folder is removed);
- ``ray task`` (``ray=True`` only): a Ray task that trains a tiny network for a few steps (one
  GPU reserved when the device is CUDA); Ray is stopped again if this started it.

Everything runs on tiny data (scikit-learn's 8x8 digits, offline); all on the chosen device.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nasbench.errors import ConfigError, NasbenchError

if TYPE_CHECKING:
    from nasbench.data import DatasetSplits
    from nasbench.space import CellSpace

__all__ = ["CheckResult", "DoctorReport", "check_names", "machine_load", "run_doctor"]

logger = logging.getLogger(__name__)

#: Seconds a ``ray task`` check waits for its task before it fails.
RAY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: The path checked, e.g. ``train resnet`` or ``darts 2nd order``.
        ok: Whether it ran without an error.
        reason: ``"ExceptionType: first line of its message"`` when it failed, else ``""``.
        seconds: Wall-clock seconds of the whole check (set-up included).
        images_per_s: Images through the timed work (training steps, forward passes) per second
            of that work, first steps and their warm-up included (so a lower bound); ``None``
            where it means nothing (a failed check, the study write).
    """

    name: str
    ok: bool
    reason: str
    seconds: float
    images_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DoctorReport:
    """What ``run_doctor`` found: the platform and one ``CheckResult`` per check, in order.

    Attributes:
        platform: ``nasbench.hardware.platform_info`` of the device, plus ``cpu_isa_flags``,
            ``cpus`` and ``load_1m`` (see ``machine_load``).
        checks: The results.
        seconds: Wall-clock seconds of the whole run.
    """

    platform: dict[str, Any]
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        """The checks that failed."""
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: ``ok``, ``seconds``, ``platform`` and ``checks``."""
        return {"ok": self.ok, "seconds": self.seconds, "platform": dict(self.platform),
                "checks": [c.to_dict() for c in self.checks]}


@dataclass
class _Context:
    """What the checks share: device, tiny data, budget, and the OFA trainer once made."""

    device: torch.device
    data: DatasetSplits
    steps: int
    batch_size: int
    seed: int
    ofa: Any = None


# A check returns (images, seconds) of its timed work, or None where images/s means nothing.
Check = Callable[[_Context], "tuple[int, float] | None"]


def _reason(exc: BaseException) -> str:
    """``Type: first line of the message`` (Ray task errors reduced to their cause)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and type(exc).__name__.startswith("RayTaskError"):
        exc = cause
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(ctx: _Context, split: str, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` normalized batches of ``split`` on the device (cycling over the split)."""
    from nasbench.data import iterate_batches

    d = ctx.data
    x, y = (d.train_x, d.train_y) if split == "train" else (d.val_x, d.val_y)
    bs = min(ctx.batch_size, len(y))
    one_pass = list(iterate_batches(x, y, bs, shuffle=False, device=ctx.device, mean=d.mean, std=d.std,
                                    drop_last=True))
    return [one_pass[i % len(one_pass)] for i in range(count)]


def _finite(losses: list[Any], what: str) -> None:
    values = [float(v) for v in losses]  # float() of a tensor or a float (one host sync at the end)
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise NasbenchError(f"{what} loss became {bad[0]} within {len(values)} steps")


def _tiny_space() -> CellSpace:
    """The NB201 cell on a small skeleton (C=8, one cell per stage): cheap supernets and networks."""
    from nasbench._spaces import load_space
    from nasbench.space import CellSpace

    return CellSpace("doctor_nb201", load_space("nb201").cells, skeleton="nb201", C=8, N=1)


# -- the checks -----------------------------------------------------------------------------------


def _check_train(ctx: _Context, space: str) -> tuple[int, float]:
    """Build a sampled network of built-in ``space`` and train it ``steps`` steps."""
    from nasbench._spaces import load_space
    from nasbench.train import TrainConfig, train_model

    sp = load_space(space)
    model = sp.build(sp.sample(ctx.seed), num_classes=ctx.data.num_classes, input_shape=ctx.data.input_shape)
    result = train_model(model, ctx.data, TrainConfig(max_steps=ctx.steps, batch_size=ctx.batch_size),
                         seed=ctx.seed, device=ctx.device)
    if result.steps != ctx.steps:
        raise NasbenchError(f"trained {result.steps} steps instead of {ctx.steps}")
    if not math.isfinite(result.train_loss):
        raise NasbenchError(f"training loss is {result.train_loss}")
    return result.steps * min(ctx.batch_size, len(ctx.data.train_y)), result.train_seconds


def _check_darts(ctx: _Context, unrolled: bool) -> tuple[int, float]:
    """``steps`` bilevel DARTS steps (alpha on val, weights on train), second order if ``unrolled``."""
    from nasbench.strategies._darts import DartsConfig, DartsSearch

    config = DartsConfig(epochs=1, batch_size=ctx.batch_size, unrolled=unrolled, selection="alpha",
                         collapse_guard="none")
    search = DartsSearch(_tiny_space(), ctx.data, config, seed=ctx.seed, device=ctx.device)
    train, val = _batches(ctx, "train", ctx.steps), _batches(ctx, "val", ctx.steps)
    alphas = [a.detach().clone() for a in search.net.arch_parameters()]
    search.net.train()
    _sync(ctx.device)
    t0 = time.perf_counter()
    losses = [search.step(xb, yb, xv, yv) for (xb, yb), (xv, yv) in zip(train, val)]
    _sync(ctx.device)
    seconds = time.perf_counter() - t0
    _finite(losses, "DARTS supernet")
    if all(torch.equal(a, b.detach()) for a, b in zip(alphas, search.net.arch_parameters())):
        raise NasbenchError("the alpha steps left every architecture parameter unchanged")
    return sum(len(yb) for _, yb in train), seconds


def _ofa_trainer(ctx: _Context) -> Any:
    """The OFA trainer of the ``mobilenetv3`` space, made once per run, in its ``kernel`` phase."""
    if ctx.ofa is None:
        from nasbench._spaces import load_space
        from nasbench.ofa import OFAConfig, OFATrainer

        config = OFAConfig(phases=(("kernel", 1),), batch_size=ctx.batch_size, random_subnets=1)
        ctx.ofa = OFATrainer(load_space("mobilenetv3"), ctx.data, config, seed=ctx.seed, device=ctx.device)
    return ctx.ofa


def _check_ofa_step(ctx: _Context) -> tuple[int, float]:
    """``steps`` sandwich steps (largest, smallest and one random subnet, in-place distillation)."""
    trainer = _ofa_trainer(ctx)
    if hasattr(trainer, "step"):
        batches = _batches(ctx, "train", ctx.steps)
        _sync(ctx.device)
        t0 = time.perf_counter()
        losses = [trainer.step(xb, yb) for xb, yb in batches]
        _sync(ctx.device)
        seconds = time.perf_counter() - t0
        _finite(losses, "OFA supernet")
        return sum(len(yb) for _, yb in batches), seconds
    # An OFATrainer without step(): one epoch on a training split of `steps` batches.
    n = ctx.steps * min(ctx.batch_size, len(ctx.data.train_y))
    trainer.data = dataclasses.replace(ctx.data, train_x=ctx.data.train_x[:n], train_y=ctx.data.train_y[:n])
    report = trainer.train_epoch()
    _finite([report.train_loss], "OFA supernet")
    return n, report.seconds


@torch.no_grad()
def _check_ofa_extract(ctx: _Context) -> tuple[int, float]:
    """Extract a random subnet; its forward pass must match the supernet's with that subnet active."""
    from nasbench.ofa import sample_subnet

    trainer = _ofa_trainer(ctx)
    genome = sample_subnet(trainer.space, random.Random(ctx.seed))
    model = trainer.net.extract(genome).eval()
    xb, _ = _batches(ctx, "val", 1)[0]
    _sync(ctx.device)
    t0 = time.perf_counter()
    out = model(xb)
    _sync(ctx.device)
    seconds = time.perf_counter() - t0
    was_training = trainer.net.training
    trainer.net.eval()
    try:
        trainer.net.set_active(genome)
        ref = trainer.net(xb)
    finally:
        trainer.net.train(was_training)
    if tuple(out.shape) != (len(xb), ctx.data.num_classes):
        raise NasbenchError(f"the extracted subnet gave logits of shape {tuple(out.shape)}")
    diff = float((out.float() - ref.float()).abs().max())
    if not diff <= 1e-2 * (1.0 + float(ref.float().abs().max())):
        raise NasbenchError(f"the extracted subnet's logits differ from the supernet's by {diff:.3g}")
    return len(xb), seconds


def _check_latency(ctx: _Context) -> tuple[int, float]:
    """``measure_latency`` of a sampled ``resnet`` network at batch size 1."""
    from nasbench._spaces import load_space
    from nasbench.hardware import measure_latency

    sp = load_space("resnet")
    model = sp.build(sp.sample(ctx.seed), num_classes=ctx.data.num_classes,
                     input_shape=ctx.data.input_shape).to(ctx.device)
    ms = measure_latency(model, ctx.data.input_shape, batch_size=1, device=ctx.device, warmup=2, repeats=5)
    if not (math.isfinite(ms) and ms > 0):
        raise NasbenchError(f"measured latency is {ms} ms")
    return 1, ms / 1000.0


def _check_study(ctx: _Context) -> None:
    """One trial through ``StudyRecorder`` into a temporary SQLite study, read back by a fresh connection."""
    from nasbench.objectives import Evaluation, Objectives
    from nasbench.runner import StudyRecorder, open_study

    space = _tiny_space()
    genome = space.sample(ctx.seed)
    with tempfile.TemporaryDirectory(prefix="nasbench-doctor-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'doctor.db'}"
        storages = []
        try:
            recorder = StudyRecorder(url, "doctor", space, Objectives.parse("accuracy"), {"doctor": True})
            storages.append(recorder.study._storage)
            number = recorder.record(genome, Evaluation((0.5,), {"val_accuracy": 0.5}), strategy="doctor",
                                     started=dt.datetime.now())
            study = open_study(url, "doctor")
            storages.append(study._storage)
            trials = study.get_trials(deepcopy=False)
        finally:
            for storage in storages:
                _close_storage(storage)
    if len(trials) != 1:
        raise NasbenchError(f"wrote one trial but read back {len(trials)}")
    t = trials[0]
    if t.number != number or t.values != [0.5] or t.user_attrs.get("genome_hash") != genome.hash:
        raise NasbenchError(f"trial {t.number} read back differs from the one written")
    return None


def _close_storage(storage: Any) -> None:
    """Release the database connections of an Optuna storage (possibly wrapped in a cache)."""
    backend = getattr(storage, "_backend", storage)
    if hasattr(backend, "remove_session"):
        backend.remove_session()
    engine = getattr(backend, "engine", None)
    if engine is not None:
        engine.dispose()


def _ray_train(data: DatasetSplits, device: str, steps: int, batch_size: int, seed: int) -> dict[str, Any]:
    """Ray task body: train a sampled tiny network ``steps`` steps on ``device``; return what it did."""
    import os

    from nasbench.train import TrainConfig, train_model

    torch.set_num_threads(1)
    space = _tiny_space()
    model = space.build(space.sample(seed), num_classes=data.num_classes, input_shape=data.input_shape)
    result = train_model(model, data, TrainConfig(max_steps=steps, batch_size=batch_size), seed=seed,
                         device=device)
    return {"steps": result.steps, "train_seconds": result.train_seconds, "train_loss": result.train_loss,
            "device": result.device, "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _check_ray(ctx: _Context) -> tuple[int, float]:
    """A Ray task training a tiny network; it reserves one GPU when the device is CUDA."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray check needs Ray: pip install 'ray[default]'") from None
    from nasbench.runner._ray import _connect

    gpus = 1 if ctx.device.type == "cuda" else 0
    ray, started = _connect(None, 10.0, 1)
    try:
        have = ray.cluster_resources().get("GPU", 0)
        if gpus and have < gpus:
            raise ConfigError(f"the device is {ctx.device} but Ray sees {have:g} GPUs")
        task = ray.remote(_ray_train).options(num_cpus=1, num_gpus=gpus, max_retries=0, name="nasbench-doctor")
        ref = task.remote(ctx.data, "cuda" if gpus else "cpu", ctx.steps, ctx.batch_size, ctx.seed)
        try:
            out = ray.get(ref, timeout=RAY_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise TimeoutError(f"the Ray task did not finish in {RAY_TIMEOUT_S:g} s") from None
    finally:
        if started:
            ray.shutdown()
    if out["steps"] != ctx.steps or not math.isfinite(out["train_loss"]):
        raise NasbenchError(f"the Ray task trained {out['steps']} steps to loss {out['train_loss']}")
    if gpus and not str(out["device"]).startswith("cuda"):
        raise NasbenchError(f"the Ray task reserved a GPU but trained on {out['device']}")
    return out["steps"] * min(ctx.batch_size, len(ctx.data.train_y)), out["train_seconds"]


# -- the run --------------------------------------------------------------------------------------


def _plan(ray: bool) -> list[tuple[str, Check]]:
    """(name, check) pairs in run order (looked up at call time, so tests can replace one)."""
    from functools import partial

    from nasbench._spaces import list_spaces

    plan: list[tuple[str, Check]] = [(f"train {s}", partial(_check_train, space=s)) for s in sorted(list_spaces())]
    plan += [
        ("darts 1st order", partial(_check_darts, unrolled=False)),
        ("darts 2nd order", partial(_check_darts, unrolled=True)),
        ("ofa sandwich step", _check_ofa_step),
        ("ofa extract", _check_ofa_extract),
        ("latency", _check_latency),
        ("study write", _check_study),
    ]
    if ray:
        plan.append(("ray task", _check_ray))
    return plan


def machine_load() -> dict[str, Any]:
    """``cpus`` (cores this process may use) and ``load_1m`` (the 1-minute load average; None off Unix)."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        load: float | None = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    return {"cpus": cpus, "load_1m": load}


def check_names(ray: bool = False) -> list[str]:
    """The names of the checks ``run_doctor`` runs, in order (``ray`` adds ``ray task``)."""
    return [name for name, _ in _plan(ray)]


def run_doctor(device: str | torch.device | None = "auto", *, ray: bool = False, steps: int = 2,
               batch_size: int = 16, seed: int = 0,
               on_check: Callable[[str, CheckResult | None], None] | None = None) -> DoctorReport:
    """Run every check on ``device`` and report each one's outcome (never raises for a failed check).

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (see ``nasbench.train.resolve_device``).
        ray: Also run a Ray task (starts a local Ray unless one is initialised; stopped again).
        steps: Training steps per check (>= 1).
        batch_size: Images per step (>= 1).
        seed: Seed of the sampled architectures, weights and data split.
        on_check: Called as ``on_check(name, None)`` before each check and
            ``on_check(name, result)`` after it (progress display).

    Returns:
        The platform and every check's result.

    Raises:
        ConfigError: ``device`` is not available here, or ``steps``/``batch_size`` below 1.
    """
    from nasbench.data import load_dataset
    from nasbench.hardware import cpu_isa, platform_info
    from nasbench.train import resolve_device

    dev = resolve_device(device)
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    start = time.perf_counter()
    info = {**platform_info(dev), "cpu_isa_flags": cpu_isa()["flags"], **machine_load()}
    logger.info("doctor on %s (%s), torch %s", dev, info["device_name"], info["torch"])
    if info["load_1m"] is not None and info["load_1m"] > info["cpus"]:
        logger.warning("the CPU is busy (load %.1f on %d cores): timings will be slower than on an idle machine",
                       info["load_1m"], info["cpus"])
    # Enough training images for `steps` batches, validation images for one (stratified, 10 classes).
    data = load_dataset("digits", seed=seed, limit=max(batch_size * steps, batch_size, 20))
    ctx = _Context(device=dev, data=data, steps=steps, batch_size=batch_size, seed=seed)
    results = []
    for name, check in _plan(ray):
        if on_check is not None:
            on_check(name, None)
        t0 = time.perf_counter()
        try:
            timed = check(ctx)
        except Exception as exc:  # every failure becomes a row; KeyboardInterrupt still stops the run
            result = CheckResult(name, False, _reason(exc), time.perf_counter() - t0)
            logger.debug("check %s failed", name, exc_info=True)
        else:
            rate = timed[0] / timed[1] if timed is not None and timed[1] > 0 else None
            result = CheckResult(name, True, "", time.perf_counter() - t0, rate)
        logger.info("%s: %s (%.1f s)", name, "ok" if result.ok else f"FAILED ({result.reason})", result.seconds)
        results.append(result)
        if on_check is not None:
            on_check(name, result)
    return DoctorReport(platform=info, checks=results, seconds=time.perf_counter() - start)
