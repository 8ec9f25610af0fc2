"""DARTS (Liu et al., 2019): continuous relaxation, bilevel optimization, derivation, collapse guards."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from nasbench._checkpoint import load_checkpoint, plain, save_checkpoint
from nasbench.errors import ConfigError, NasbenchError
from nasbench.strategies._projection import decide, plan_decisions
from nasbench.supernet import CellSupernet
from nasbench.train._divergence import DivergenceGuard

if TYPE_CHECKING:
    from nasbench.data import DatasetSplits
    from nasbench.hardware import LatencyPredictor
    from nasbench.space import CellSpace, Genome

__all__ = ["DartsConfig", "DartsEpoch", "DartsSearch", "COLLAPSE_GUARDS", "SELECTIONS"]

logger = logging.getLogger(__name__)

#: Collapse guards (``DartsConfig.collapse_guard``):
#:
#: - ``darts-minus``: an auxiliary skip connection on every stride-1 mixed edge whose weight
#:   decays linearly from ``aux_skip`` to 0 (Chu et al., 2021, "DARTS-"): the skip candidate no
#:   longer has to win alpha to carry the gradient flow, which is what makes plain DARTS collapse.
#: - ``early-stop``: DARTS+ (Liang et al., 2019) stops the search once the derived normal cell
#:   has 2 or more skip connections. Generalized here: stop when parameter-free ops (``none``,
#:   skip, pooling) sit on ``early_stop_edges`` or more derived edges of a normal (non-reduction)
#:   cell, once some earlier epoch had derived a cell below that limit. Parametric ops start
#:   untrained, so parameter-free ops win the first epochs without that being collapse; the
#:   collapse is the return to them. The result is the last genome derived before the stop.
#:   The first ``early_stop_warmup`` share of the epochs is ignored (neither a stop nor a
#:   result): there alpha is still near uniform and the derived cell flips with noise, so a
#:   stop there returned a cell of a supernet that had barely trained.
#: - ``darts-minus+early-stop``: both. ``none``: plain DARTS.
COLLAPSE_GUARDS = ("darts-minus", "early-stop", "darts-minus+early-stop", "none")

#: How the final genome is read off the supernet (``DartsConfig.selection``):
#:
#: - ``alpha``: DARTS's own rule, the strongest op by softmax(alpha) (``CellSupernet.derive``).
#: - ``perturbation``: DARTS-PT (Wang et al., 2021, "Rethinking architecture selection in
#:   differentiable NAS"). After the search, the edges are decided one at a time in a seeded
#:   random order: each candidate op is masked out in turn, and the edge keeps the op whose
#:   removal raises the supernet's validation loss most (ties: lowers the accuracy most). The
#:   edge is then discretized and the supernet tuned ``projection_tune_epochs`` epochs (weights
#:   at a tenth of ``w_lr``, alphas as before) before the next decision. Two-input cells then pick
#:   each node's inputs the same way, by cutting one incoming edge at a time. Alpha magnitudes
#:   do not say how much the supernet needs an op (one reason argmax alpha drifts to skip
#:   connections, per Wang et al.); what its removal costs does.
SELECTIONS = ("alpha", "perturbation")


@dataclass(frozen=True)
class DartsConfig:
    """Hyperparameters of a DARTS search (defaults from the paper, first order)."""

    epochs: int = 10
    batch_size: int = 64
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float = 5.0
    alpha_lr: float = 3e-4
    alpha_betas: tuple[float, float] = (0.5, 0.999)
    alpha_weight_decay: float = 1e-3
    unrolled: bool = False
    collapse_guard: str = "darts-minus+early-stop"
    aux_skip: float = 1.0
    early_stop_edges: int = 3
    early_stop_warmup: float = 0.25
    latency_weight: float = 0.0
    max_latency_ms: float | None = None
    #: ``perturbation`` or ``alpha`` (see ``SELECTIONS``); None: perturbation, or alpha with a latency-aware loss.
    selection: str | None = None
    projection_tune_epochs: int = 1

    def __post_init__(self) -> None:
        if int(self.epochs) != self.epochs:
            raise ConfigError(f"DARTS epochs must be a whole number, got {self.epochs}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"DARTS needs epochs >= 1 and batch size >= 1, got {self.epochs}, {self.batch_size}")
        if self.collapse_guard not in COLLAPSE_GUARDS:
            raise ConfigError(f"unknown collapse guard {self.collapse_guard!r}; valid: {', '.join(COLLAPSE_GUARDS)}")
        if isinstance(self.early_stop_edges, bool) or int(self.early_stop_edges) != self.early_stop_edges \
                or self.early_stop_edges < 1:
            raise ConfigError(f"early-stop edges must be a whole number >= 1, got {self.early_stop_edges}")
        if not 0 <= self.early_stop_warmup < 1:
            raise ConfigError(f"early-stop warm-up is a share of the epochs in [0, 1), got {self.early_stop_warmup}")
        for name in ("w_lr", "alpha_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.latency_weight < 0 or (self.max_latency_ms is not None and not self.max_latency_ms > 0):
            raise ConfigError("latency weight must be >= 0 and --max-latency-ms positive")
        if self.selection is None:  # perturbation cannot weigh latency: a latency-aware loss gets alpha
            latency = self.latency_weight > 0 or self.max_latency_ms is not None
            object.__setattr__(self, "selection", "alpha" if latency else "perturbation")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"unknown selection {self.selection!r}; valid: {', '.join(SELECTIONS)}")
        if isinstance(self.projection_tune_epochs, bool) or int(self.projection_tune_epochs) != self.projection_tune_epochs \
                or self.projection_tune_epochs < 0:
            raise ConfigError(f"projection tune epochs must be a whole number >= 0, got {self.projection_tune_epochs}")
        if self.selection == "perturbation" and (self.latency_weight > 0 or self.max_latency_ms is not None):
            raise ConfigError("perturbation selection ranks ops by the supernet's validation loss alone; "
                              "a latency-aware DARTS needs --selection alpha (selection='alpha')")


@dataclass
class DartsEpoch:
    """What one epoch gave: the derived genome and how the supernet is doing."""

    epoch: int
    genome: Genome
    val_accuracy: float
    val_loss: float
    train_loss: float
    seconds: float
    probabilities: dict[str, list[list[float]]]
    aux_skip: float
    latency_weight: float
    expected_latency_ms: float | None = None
    predicted_latency_ms: float | None = None
    #: Per cell, derived edges with a parameter-free op; ``dominated``: a normal cell reaches the limit.
    parameter_free_edges: dict[str, int] = field(default_factory=dict)
    dominated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class DartsSearch:
    """Trains a cell supernet with alternating weight and alpha steps; derives a genome per epoch.

    Weights w learn on the training split (SGD, cosine schedule, gradient clipping), alphas on
    the disjoint validation split (Adam). First order by default; ``unrolled`` takes one
    virtual SGD step and the finite-difference Hessian-vector product (second order). With a
    latency profile the alpha loss adds ``λ · E[latency]``, where E[latency] = Σ_edges Σ_ops
    softmax(alpha) · T(op, shape); with ``max_latency_ms`` λ doubles after an epoch whose
    derived network is predicted over the target and halves when it is under by > 10%.

    Args:
        space: A cell space.
        data: Splits (train for w, val for alpha).
        config: Hyperparameters.
        seed: Seeds alpha initialization, weights, batch order and augmentation.
        device: Torch device. On CUDA the data is copied there once, the supernet runs
            channels-last and cuDNN autotunes; on CPU channels-last only where
            ``channels_last_ok`` finds it safe (every conv after the stem a multiple of 8 channels).
        predictor: Latency predictor of the space (needed for latency terms).
        amp: ``auto`` (bf16 autocast on a CUDA device with bf16), ``off`` or ``bf16`` (see
            ``nasbench.train.resolve_amp``). A runtime setting, not a hyperparameter: checkpoints
            resume under any.
    """

    def __init__(self, space: CellSpace, data: DatasetSplits, config: DartsConfig, *, seed: int = 0,
                 device: str | torch.device = "cpu", predictor: LatencyPredictor | None = None,
                 amp: str = "auto") -> None:
        from nasbench.data import default_augmentation
        from nasbench.train import channels_last_ok, place_data, resolve_amp

        if (config.latency_weight > 0 or config.max_latency_ms is not None) and predictor is None:
            raise ConfigError("a latency-aware DARTS loss needs --latency-profile PROFILE.json of this space")
        self.space, self.data, self.config, self.seed = space, data, config, seed
        self.device = torch.device(device)
        self.amp_dtype = resolve_amp(amp, self.device)
        self.predictor = predictor
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = CellSupernet(space, data.num_classes, data.input_shape).to(self.device)
        # measured faster on CPU at C=8 and 16 (darts_throughput.py); safe only where channels_last_ok says
        self.net.set_channels_last(channels_last_ok(self.net.net, self.device, exclude=[self.net.net.stem]))
        self._train_xy = (place_data(data.train_x, self.device), place_data(data.train_y, self.device))
        self._val_xy = (place_data(data.val_x, self.device), place_data(data.val_y, self.device))
        self.w_opt = torch.optim.SGD(self.net.weight_parameters(), lr=config.w_lr, momentum=config.w_momentum,
                                     weight_decay=config.w_weight_decay)
        self.a_opt = torch.optim.Adam(self.net.arch_parameters(), lr=config.alpha_lr, betas=config.alpha_betas,
                                      weight_decay=config.alpha_weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, config.epochs, eta_min=config.w_lr_min)
        self.latency_weight = config.latency_weight if config.latency_weight > 0 else (
            1e-3 if config.max_latency_ms is not None else 0.0)
        self._lat = ({k: v.to(self.device) for k, v in self.net.latency_matrices(predictor.profile).items()}
                     if predictor is not None else None)
        self.augmentation = default_augmentation(data.name)
        self._guard = DivergenceGuard(self.device, data.num_classes, lambda what, step: (
            f"DARTS supernet loss became {what} at epoch {self.epoch} step {step}; lower the weight learning "
            f"rate w_lr ({config.w_lr:g})"))
        self._groups: tuple[Any, Any] = (None, None)
        self.epoch = 0
        self.history: list[DartsEpoch] = []
        #: Epoch at which the early-stop guard ended the search (None: it did not).
        self.stopped_at: int | None = None
        #: Perturbation selection: the decisions to make after the search, and how many are made.
        self.decisions = plan_decisions(space, seed) if config.selection == "perturbation" else []
        self.projected = 0

    # -- one epoch ------------------------------------------------------------------------------
    def expected_latency(self) -> torch.Tensor:
        """Differentiable Σ softmax(alpha) · T over every mixed edge (ms); 0 without a profile."""
        if self._lat is None:
            return torch.zeros((), device=self.device)
        return sum((torch.softmax(a, -1) * self._lat[k]).sum() for k, a in self.net.alphas.items())  # type: ignore[return-value]

    def _autocast(self) -> Any:
        from nasbench.train import autocast

        return autocast(self.device, self.amp_dtype)

    def _alpha_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits.float(), y)
        if self.latency_weight > 0:
            loss = loss + self.latency_weight * self.expected_latency()
        return loss

    def _param_groups(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """(weights, alphas) of the supernet, listed once per supernet."""
        if self._groups[0] is not self.net:
            self._groups = (self.net, (self.net.weight_parameters(), self.net.arch_parameters()))
        return self._groups[1]

    def _first_order_alpha_step(self, xv: torch.Tensor, yv: torch.Tensor) -> None:
        # Only d/dalpha: the weights' gradients would be thrown away before the weight step.
        alphas = self._param_groups()[1]
        self.a_opt.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.net(xv)
        self._alpha_loss(logits, yv).backward(inputs=alphas)
        self.a_opt.step()

    def _second_order_alpha_step(self, xb: torch.Tensor, yb: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor) -> None:
        from torch.func import functional_call

        eta = self.w_opt.param_groups[0]["lr"]
        wd = self.config.w_weight_decay
        names = {id(p): n for n, p in self.net.named_parameters()}
        weights = self.net.weight_parameters()
        alphas = self.net.arch_parameters()
        grads = torch.autograd.grad(F.cross_entropy(self.net(xb), yb), weights)
        virtual = {names[id(p)]: (p - eta * (g + wd * p)).detach().requires_grad_() for p, g in zip(weights, grads)}
        params = {**dict(self.net.named_parameters()), **virtual}
        loss_v = self._alpha_loss(functional_call(self.net, (params, dict(self.net.named_buffers())), (xv,)), yv)
        d_alpha = torch.autograd.grad(loss_v, alphas, retain_graph=True)
        d_w = torch.autograd.grad(loss_v, list(virtual.values()))
        r = 0.01 / torch.cat([g.flatten() for g in d_w]).norm().clamp_min(1e-12)

        def alpha_grad_at(sign: float) -> tuple[torch.Tensor, ...]:
            with torch.no_grad():
                for p, d in zip(weights, d_w):
                    p.add_(sign * r * d)
            return torch.autograd.grad(F.cross_entropy(self.net(xb), yb), alphas)

        g_plus = alpha_grad_at(+1.0)
        g_minus = alpha_grad_at(-2.0)
        with torch.no_grad():
            for p, d in zip(weights, d_w):
                p.add_(r * d)
        self.a_opt.zero_grad(set_to_none=True)
        for a, da, gp, gm in zip(alphas, d_alpha, g_plus, g_minus):
            a.grad = da - eta * (gp - gm) / (2 * r)
        self.a_opt.step()

    def step(self, xb: torch.Tensor, yb: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor) -> torch.Tensor:
        """One alpha step on the validation batch, then one weight step on the training batch.

        Returns the training loss of the weight step (before it), detached, on the device: reading
        it is the caller's choice (a host sync on CUDA). On the CPU a non-finite loss skips the
        update; on CUDA nothing here waits for the GPU, and ``train_epoch`` checks the losses every
        few steps.
        """
        if self.config.unrolled:  # float32: its finite difference (r ~ 1e-5) is below bf16's resolution
            self._second_order_alpha_step(xb, yb, xv, yv)
        else:
            self._first_order_alpha_step(xv, yv)
        weights = self._param_groups()[0]
        self.w_opt.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.net(xb)
        loss = F.cross_entropy(logits.float(), yb)
        if self.device.type == "cpu" and not bool(torch.isfinite(loss)):
            return loss.detach()
        loss.backward(inputs=weights)  # only d/dw: the alphas' gradients would be thrown away
        torch.nn.utils.clip_grad_norm_(weights, self.config.grad_clip)
        self.w_opt.step()
        return loss.detach()

    def _aux_skip(self, epoch: int) -> float:
        """DARTS-'s auxiliary skip weight in search epoch ``epoch`` (0 without that guard)."""
        if self.config.collapse_guard not in ("darts-minus", "darts-minus+early-stop"):
            return 0.0
        return self.config.aux_skip * max(0.0, 1.0 - epoch / self.config.epochs)

    def train_epoch(self) -> DartsEpoch:
        """One epoch of alternating alpha and weight steps, then evaluation and derivation; after the
        search, with perturbation selection, one decision of it (``_projection_epoch``)."""
        if self.finished:
            if self.decisions:
                raise NasbenchError(f"DARTS finished its search and perturbation selection; its result is epoch "
                                    f"{self.result.epoch}'s genome")
            if self.stopped_at is not None:
                raise NasbenchError(f"DARTS stopped early at epoch {self.stopped_at} (parameter-free ops dominated "
                                    f"the cell); its result is epoch {self.result.epoch}'s genome")
            raise NasbenchError(f"DARTS already ran its {self.config.epochs} epochs")
        if self.search_done:
            return self._projection_epoch()
        t0 = time.perf_counter()
        self.net.set_aux_skip(self._aux_skip(self.epoch))
        losses, val_batches = self._train_pass(self.seed * 1000 + self.epoch)
        self.sched.step()
        report = self._report(t0, losses, val_batches)
        if self._lat is not None:
            report.expected_latency_ms = float(self.expected_latency().detach())
            report.predicted_latency_ms = self.predictor.predict(report.genome)  # type: ignore[union-attr]
            self._adapt_latency_weight(report.predicted_latency_ms)
        self.epoch += 1
        self.history.append(report)
        logger.info("DARTS epoch %d: supernet val acc %.4f, train loss %.4f, %.1fs, derived %s", report.epoch,
                    report.val_accuracy, report.train_loss, report.seconds, report.genome.hash)
        self._check_early_stop(report)
        return report

    def _train_pass(self, seed: int) -> tuple[list[float], list[tuple[torch.Tensor, torch.Tensor]]]:
        """One pass over the training split, alternating alpha and weight steps; returns the weight
        steps' losses and the (shuffled) validation batches."""
        from nasbench.data import iterate_batches
        from nasbench.train import batch_generator, cuda_speedups, private_rng, seed_device

        d = self.data
        gen = batch_generator(seed, self.device)
        common = dict(device=self.device, mean=d.mean, std=d.std, drop_last=True)
        bs = min(self.config.batch_size, len(d.train_y), len(d.val_y))
        train = iterate_batches(*self._train_xy, bs, shuffle=True, generator=gen,
                                augmentation=self.augmentation if self.augmentation.enabled else None, **common)
        val_batches = list(iterate_batches(*self._val_xy, bs, shuffle=True, generator=gen, **common))
        self.net.train()
        losses: list[torch.Tensor] = []
        with private_rng(self.device), cuda_speedups(self.device):
            seed_device(self.device, seed)
            for step, (xb, yb) in enumerate(train):
                xv, yv = val_batches[step % len(val_batches)]
                losses.append(self.step(xb, yb, xv, yv))
                self._guard.update(losses[-1], step)  # CPU: now; GPU: every few steps (a host sync)
        self._guard.flush()
        return [float(v) for v in torch.stack(losses).cpu()] if losses else [], val_batches

    def _report(self, t0: float, losses: list[float], val_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> DartsEpoch:
        """Evaluate the supernet, derive its genome and describe the epoch."""
        val_acc, val_loss = self._evaluate_supernet(val_batches)
        self._guard.check_validation(val_loss, f"DARTS supernet validation loss became {val_loss} at epoch "
                                               f"{self.epoch}; lower the weight learning rate w_lr ({self.config.w_lr:g})")
        genome = self.net.derive()
        report = DartsEpoch(
            epoch=self.epoch, genome=genome, val_accuracy=val_acc, val_loss=val_loss,
            train_loss=sum(losses) / max(1, len(losses)), seconds=time.perf_counter() - t0,
            probabilities={k: [[round(float(x), 5) for x in row] for row in v] for k, v in self.net.probabilities().items()},
            aux_skip=self.net.aux_skip, latency_weight=self.latency_weight)
        report.parameter_free_edges = self.net.parameter_free_edges(genome)
        report.dominated = any(report.parameter_free_edges[c] >= self.config.early_stop_edges for c in self._watched())
        return report

    # -- perturbation selection (DARTS-PT) ----------------------------------------------------------
    @property
    def search_done(self) -> bool:
        """Whether the alpha search is over: all its epochs ran, or the early stop ended it."""
        return self.stopped_at is not None or self.epoch >= self.config.epochs

    def _projection_epoch(self) -> DartsEpoch:
        """One decision of the perturbation selection, then ``projection_tune_epochs`` of tuning
        (none after the last decision). Reported as one more epoch."""
        from nasbench.data import iterate_batches

        t0 = time.perf_counter()
        d = self.data
        # the supernet keeps the auxiliary skip of its last search epoch: its weights were trained with it
        self.net.set_aux_skip(self._aux_skip(self.config.epochs - 1 if self.stopped_at is None else self.stopped_at))
        if self.projected == 0:  # DARTS-PT tunes at a tenth of the search's learning rate
            for group in self.w_opt.param_groups:
                group["lr"] = self.config.w_lr / 10
        bs = min(self.config.batch_size, len(d.val_y))
        scoring = list(iterate_batches(*self._val_xy, bs, shuffle=False, device=self.device, mean=d.mean, std=d.std,
                                       drop_last=True))
        decision = self.decisions[self.projected]
        choice, scores = decide(self.net, decision, lambda: self._evaluate_supernet(scoring))
        self.projected += 1
        kind, cell, index = decision
        where = f"{cell}.e{'-'.join(map(str, self.net.edges[cell][index]))}" if kind == "op" else f"{cell}.n{index}.inputs"
        logger.info("DARTS-PT decision %d/%d: %s = %s (validation loss without each: %s)", self.projected,
                    len(self.decisions), where, choice, {k: v[1] for k, v in scores.items()})
        losses: list[float] = []
        val_batches = scoring
        if self.projected < len(self.decisions):
            for t in range(self.config.projection_tune_epochs):
                more, val_batches = self._train_pass(self.seed * 1000 + self.epoch * 100 + t)
                losses += more
        report = self._report(t0, losses, val_batches)
        report.extra = {"phase": "perturbation", "decision": where, "choice": choice, "scores": scores}
        self.epoch += 1
        self.history.append(report)
        return report

    # -- early stop (DARTS+) ----------------------------------------------------------------------
    def _watched(self) -> list[str]:
        """The normal cells: the early stop counts their parameter-free edges."""
        return [c.name for c in self.space.cells if c.name not in self.net.reduction_cells]

    @property
    def warmup_epochs(self) -> int:
        """Epochs the early stop ignores: the first ``early_stop_warmup`` share of them (rounded down)."""
        return int(self.config.early_stop_warmup * self.config.epochs)

    def _check_early_stop(self, report: DartsEpoch) -> None:
        warm = self.warmup_epochs
        if "early-stop" not in self.config.collapse_guard or not report.dominated or report.epoch < warm:
            return
        if any(not h.dominated for h in self.history[:-1] if h.epoch >= warm):
            self.stopped_at = report.epoch
            counts = {c: report.parameter_free_edges[c] for c in self._watched()}
            logger.warning("DARTS early stop at epoch %d: parameter-free ops on %s derived edges (limit %d); %s",
                           report.epoch, counts, self.config.early_stop_edges,
                           "perturbation selection follows from this supernet" if self.decisions else
                           f"result: epoch {self.result.epoch}'s genome {self.result.genome.hash}")
        elif self.epoch >= self.config.epochs:
            logger.warning("parameter-free ops dominated the derived cell in every epoch after the warm-up, so the "
                           "early stop never armed; the result is the final genome")

    @property
    def finished(self) -> bool:
        """Whether the search is over: the alpha search is done and so is the perturbation selection if asked."""
        return self.search_done and self.projected >= len(self.decisions)

    @property
    def result(self) -> DartsEpoch:
        """The report whose genome is the search's answer.

        With perturbation selection, its latest decision's report (the last one once finished).
        Otherwise the last epoch's, or after an early stop the last epoch before it (and after
        the warm-up) whose cell was not dominated by parameter-free ops.
        """
        if not self.history:
            raise NasbenchError("DARTS has not trained an epoch yet")
        if self.projected:  # perturbation selection: its latest decision (all of them once finished)
            return self.history[-1]
        if self.stopped_at is not None:
            clean = [h for h in self.history
                     if self.warmup_epochs <= h.epoch < self.stopped_at and not h.dominated]
            if clean:
                return clean[-1]
        return self.history[-1]

    @torch.no_grad()
    def _evaluate_supernet(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
        """Accuracy and loss on the validation split with batch statistics (train-mode BN).

        The mixture changes every step, so BN running averages lag behind it; like the DARTS
        reference code, the supernet is judged with the statistics of the batch itself.
        """
        self.net.train()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        total = 0
        for xv, yv in batches:
            with self._autocast():
                logits = self.net(xv).float()
            loss_sum += F.cross_entropy(logits, yv, reduction="sum")
            correct += (logits.argmax(1) == yv).sum()
            total += len(yv)
        return int(correct) / max(1, total), float(loss_sum) / max(1, total)

    def _adapt_latency_weight(self, predicted: float) -> None:
        target = self.config.max_latency_ms
        if target is None:
            return
        if predicted > target:
            self.latency_weight *= 2.0
        elif predicted < 0.9 * target:
            self.latency_weight = max(self.latency_weight / 2.0, 1e-6)

    def run(self, on_epoch: Callable[[DartsEpoch], None] | None = None,
            checkpoint: str | Path | None = None) -> list[DartsEpoch]:
        """Train the remaining epochs (none after an early stop); checkpoint after each one; return this call's
        reports. The answer is ``result``, not necessarily the last report."""
        out = []
        while not self.finished:
            report = self.train_epoch()
            if on_epoch is not None:  # record first: a crash before the checkpoint redoes the epoch
                on_epoch(report)
            if checkpoint is not None:
                self.save(checkpoint)
            out.append(report)
        return out

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Supernet weights and alphas, optimizer and scheduler states, epoch, λ, early stop, the
        perturbation selection's decisions so far, history."""
        return {"net": self.net.state_dict(), "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
                "sched": self.sched.state_dict(), "epoch": self.epoch, "latency_weight": self.latency_weight,
                "stopped_at": self.stopped_at, "projected": self.projected,
                "decisions": [list(d) for d in self.decisions],
                "fixed_ops": [[c, e, k] for c, edges in self.net.fixed_ops.items() for e, k in edges.items()],
                "fixed_inputs": [[c, j, list(ins)] for c, nodes in self.net.fixed_inputs.items() for j, ins in nodes.items()],
                "config": asdict(self.config), "space_hash": self.space.hash,
                "history": [{**asdict(h), "genome": h.genome.to_json()} for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` output (refuses another space or other hyperparameters)."""
        if state.get("space_hash") != self.space.hash:
            raise ConfigError("DARTS checkpoint was made for another space; delete it or pass --study NEW_NAME")
        saved = state.get("config")
        if isinstance(saved, dict) and "selection" not in saved and self.config.selection != "alpha":
            raise ConfigError("DARTS checkpoint was made before perturbation selection existed; resume it with "
                              "--selection alpha (or pass --study NEW_NAME)")
        if isinstance(saved, dict):  # a checkpoint from before a setting existed ran with its default
            # (the warm-up came in at 0.25; perturbation selection later)
            saved = {**asdict(DartsConfig()), "early_stop_warmup": 0.0, "selection": "alpha", **saved}
        if plain(saved) != plain(asdict(self.config)):
            raise ConfigError("DARTS checkpoint was made with other hyperparameters; repeat them or pass --study NEW_NAME")
        self.net.load_state_dict(state["net"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.sched.load_state_dict(state["sched"])
        self.epoch = int(state["epoch"])
        self.latency_weight = float(state["latency_weight"])
        stopped = state.get("stopped_at")
        self.stopped_at = None if stopped is None else int(stopped)
        self.projected = int(state.get("projected", 0))
        if state.get("decisions"):  # the checkpoint's order, whatever seed this search was built with
            self.decisions = [(str(k), str(c), int(i)) for k, c, i in state["decisions"]]
        for c, e, k in state.get("fixed_ops", []):
            self.net.fixed_ops[c][int(e)] = int(k)
        for c, j, ins in state.get("fixed_inputs", []):
            self.net.fixed_inputs[c][int(j)] = tuple(int(i) for i in ins)
        self.history = [DartsEpoch(**{**h, "genome": self.space.load_genome(h["genome"])}) for h in state["history"]]

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (torch format, loaded with ``weights_only=True``)."""
        save_checkpoint(self.state_dict(), path)

    def load(self, path: str | Path) -> bool:
        """Resume from ``path`` if it exists; return whether it did."""
        state = load_checkpoint(path, self.device, "DARTS checkpoint")
        if state is None:
            return False
        self.load_state_dict(state)
        logger.info("resumed DARTS from %s at epoch %d", path, self.epoch)
        return True
