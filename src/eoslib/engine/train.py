"""Training runs as compiled programs: GD / SGD with curvature probes inside the loop, sweeps.

One run is a ``lax.scan`` over *probe intervals*; each interval is one probe followed by an inner
``lax.scan`` of ``probe_every`` optimizer steps. Nesting the scans instead of branching with
``lax.cond`` keeps probes off the steps that do not need them even under ``vmap`` (where a
``cond`` would run both branches every step). The scan is called in chunks from Python so a
progress bar advances and a run can be resumed from its returned state.

**Evaluations** (``TrainConfig.eval_every`` with ``run(..., eval_sets=...)``) have their own
schedule, nested with the probes' the same way: when ``eval_every`` is a multiple of
``probe_every`` each evaluation interval is a scan over probe intervals followed by the
evaluation; when it divides ``probe_every``, each probe interval is a probe followed by a scan
over evaluation intervals. An evaluation computes the objective's loss and aux scalars on each
named set (metrics only, no parameters kept) on the state at the end of its interval, and the
run's first state is evaluated once before the loop: rows at steps 0, eval_every, …, steps
(:class:`Evaluations`, ``TrainResult.evaluations``).

**Records.** Every step emits a :class:`StepRecord` and every probe a :class:`ProbeRecord`
(typed NamedTuples, stacked by the scan); :class:`History` is the two joined, plus
``diverged_at``.

**Probes.** At each probe point the loop solves for the top-k Hessian eigenpairs of the full-batch
training objective (:func:`eoslib.engine.hessian.eigsh`), warm-started from the previous probe's
eigenvectors; a non-finite result (a NaN or inf eigenvalue or vector while the run is alive) is
recorded with ``eig_converged = False`` and the next probe restarts from a fresh random block, so
one bad solve never poisons the warm starts after it. Then the optional ``probe_fn`` (an
:class:`eoslib.engine.probes.Probe`) runs on that eigensolve; its NamedTuple record is
``History.extra``.

**Precision.** The training steps run under ``jax.default_matmul_precision(config.step_precision)``
and the probes under ``config.precision`` (both ``"highest"`` by default; on a GPU JAX's own
default would be TF32 for both, which corrupts eigenvalues and changes trajectories).

**Divergence** (:mod:`eoslib.engine.divergence`): a step whose loss is non-finite or above
``max_loss`` marks the run diverged at that step; parameters stop updating, and that step's
record and every later one are NaN. Nothing is raised, and the other members of a sweep carry on.

**Sweeps.** Hyperparameters given as arrays with a leading axis S (learning rates, weight decays,
seeds via batched initial parameters) run as one ``vmap``-ed program, or in sequential batches
of ``sweep_batch`` members (``lax.map``) when memory is short. Every member uses the same ``key``:
the same minibatch order and the same probe start vectors, so a member is exactly the single
run with its hyperparameters and the same key, and an SGD sweep over step sizes compares like
with like.

**Large sets.** :func:`microbatched` turns an objective into the mean of its values over
micro-batches (a checkpointed ``lax.scan``), so the full-batch gradient, the probes' HVPs and the
evaluations over 50,000 images hold one micro-batch's activations at a time.

**Hyperparameters.** The objective is ``objective(params, x, y, hp) -> (loss, aux)`` with
``aux`` a dict of scalars (:func:`supervised` builds the usual one); the optimizer comes from
``make_optimizer(hp)``, so both can depend on swept hyperparameters ``hp`` (a mapping of scalars
inside the program; floating ones are cast to the parameters' dtype). Before compiling,
:func:`run` traces the objective, the optimizer and the probe once (``jax.eval_shape``) with an
``hp`` that records which keys they look up: a key of ``hparams`` that nothing reads (a typo such
as ``"gama"``) is a ``ValueError`` naming the keys that are read, and a key that is read but not
given is one too. The optimizer's ``update`` receives the step's batch as the extra argument
``batch=(x, y)`` (optax's ``GradientTransformationExtraArgs``; plain transformations ignore it),
for transformations that need the loss itself, such as
:func:`eoslib.engine.optim.decay_off_sharpness_gradient`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray, PyTree

from eoslib.engine import divergence, events, hessian, linalg, losses, models, probes

Objective = Callable[[PyTree, Array, Array, Mapping[str, Array]], tuple[Array, dict]]
PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a run; each field is one decision.

    Attributes:
      steps: optimizer steps in total (a multiple of ``probe_every`` when probing).
      probe_every: steps between spectral probes; 0 disables them.
      top_k: Hessian eigenpairs per probe (the sharpness is the first).
      eig_tol: relative residual tolerance of each probe (see :func:`eoslib.engine.linalg.eigsh`); the
        eigenvalue error is about ``(tol·λ)² / gap``, so 1e-3 gives ~1e-5·λ even for a gap of 0.1·λ.
      eig_max_restarts: restarts a probe may spend before it returns its best estimate.
      eig_num_iters: Lanczos block steps per cycle; warm-started probes rarely need many, and each
        step's reorthogonalisation costs in proportion to this buffer.
      eig_reortho: ``"full"`` (two Gram–Schmidt passes every step) or ``"mpk"`` (a second pass only
        when the first lost too much; cheaper); see :mod:`eoslib.engine.linalg`.
      max_loss: a loss above this (or non-finite) marks the run diverged.
      batch_size: ``None`` for full-batch GD; else minibatch SGD with a seeded reshuffle per epoch.
      chunks: how many compiled chunks the run is split into (progress-bar granularity).
      precision: matmul precision of the probes (``"highest"``; TF32 corrupts eigenvalues).
      step_precision: matmul precision of the training steps; ``None`` (default) uses
        ``precision``. ``"tensorfloat32"`` or ``"default"`` trades accuracy for speed on a GPU.
      keep_states: keep the training state at every probe step (inside the compiled loop), as
        ``TrainResult.snapshots``, so that :func:`at_probe` can resume the run from any
        probe (e.g. to branch off with a decayed learning rate); costs one copy of the
        parameters, optimizer state and probe vectors per probe. Needs ``probe_every > 0``.
      eval_every: steps between evaluations of the objective on the sets passed to :func:`run`
        as ``eval_sets`` (inside the compiled loop, metrics only); 0 disables them. A run
        evaluates θ_t for t = t₀, t₀ + eval_every, t₀ + 2·eval_every, …, t₀ + steps (t₀ its
        first step), see :class:`Evaluations`. A divisor of ``steps``; with probes, a divisor
        or a multiple of ``probe_every`` (the two schedules nest).
      stop_when: an :class:`eoslib.engine.events.Event` that stops a member where it fires
        (θ_t kept, later records blanked; see :mod:`eoslib.engine.events`), or ``None``.
      switches: a tuple of :class:`eoslib.engine.events.Switch`: hyperparameters that take other values
        from the step their event fires on.
    """

    steps: int
    probe_every: int = 0
    top_k: int = 1
    eig_tol: float = 1e-3
    eig_max_restarts: int = 2
    eig_num_iters: int | None = 20
    eig_reortho: str = "full"
    max_loss: float = 1e8
    batch_size: int | None = None
    chunks: int = 20
    precision: str = "highest"
    step_precision: str | None = None
    keep_states: bool = False
    eval_every: int = 0
    stop_when: events.Event | None = None
    switches: tuple[events.Switch, ...] = ()

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be ≥ 1")
        if self.probe_every < 0:
            raise ValueError(f"probe_every={self.probe_every} must be ≥ 0 (0: no probes)")
        if self.probe_every and self.steps % self.probe_every:
            raise ValueError(f"steps={self.steps} must be a multiple of probe_every={self.probe_every}")
        if self.top_k < 1:
            raise ValueError(f"top_k={self.top_k} must be ≥ 1")
        if self.eval_every < 0 or (self.eval_every and self.steps % self.eval_every):
            raise ValueError(f"eval_every={self.eval_every} must be 0 (no evaluations) or a "
                             f"divisor of steps={self.steps}")
        pe, ee = self.probe_every, self.eval_every
        if pe and ee and pe % ee and ee % pe:
            raise ValueError(f"eval_every={ee} must divide probe_every={pe} or be a multiple of "
                             "it (the two schedules nest in the compiled loop)")
        if self.keep_states and not self.probe_every:
            raise ValueError("keep_states=True keeps the state at each probe step; it needs "
                             f"probe_every > 0 (got probe_every={self.probe_every})")
        if self.eig_reortho not in ("full", "mpk", "none"):
            raise ValueError(f"eig_reortho={self.eig_reortho!r} is not one of ['full', 'mpk', 'none']")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be ≥ 1 or None (full batch)")
        divergence.check_max("max_loss", self.max_loss)
        events.check(self.stop_when, self.switches, probe_every=self.probe_every, top_k=self.top_k)
        for name in ("precision", "step_precision"):
            value = getattr(self, name)
            if not (value in PRECISIONS or (value is None and name == "step_precision")):
                raise ValueError(f"{name}={value!r} is not one of {list(PRECISIONS)}"
                                 + (" or None (same as precision)" if name == "step_precision" else ""))

    @property
    def training_precision(self) -> str:
        """The matmul precision the training steps run at (``step_precision`` or ``precision``)."""
        return self.precision if self.step_precision is None else self.step_precision


class TrainState(NamedTuple):
    """The scan's carry: everything needed to continue a run."""

    params: PyTree
    opt_state: PyTree
    eigvecs: Array  # (n, top_k) warm start of the next probe, ravel_pytree order
    step: Array  # int32 scalar: steps taken
    diverged_at: Array  # int32 scalar: −1, or the step whose loss went bad
    key: PRNGKeyArray  # minibatch order (fold_in epoch) and probe restarts
    events: events.EventState | None = None  # only when the config has a stop or switches


class StepRecord(NamedTuple):
    """What one optimizer step records (stacked by the scan to ``(T,)`` leaves).

    Attributes:
      step: step index t; the record holds quantities at θ_t, before update t.
      loss: the objective on the step's batch (the full batch for GD).
      aux: the objective's dict of scalars (e.g. ``accuracy``).
      grad_norm: ‖∇L(θ_t)‖ on the batch.
      param_norm: ‖θ_t‖.
    """

    step: Array
    loss: Array
    aux: dict
    grad_norm: Array
    param_norm: Array


class ProbeRecord(NamedTuple):
    """What one probe records (stacked to a leading probe axis P).

    Attributes:
      probe_step: the step at which the probe ran (before that step's update).
      sharpness: λ₁ of the full-batch objective's Hessian.
      top_eigenvalues: ``(k,)`` the top-k eigenvalues, descending.
      eig_residuals: ``(k,)`` their residual norms.
      matvecs: HVPs the solve spent.
      eig_converged: whether the solve met ``eig_tol`` with a finite result (bool).
      extra: the ``probe_fn``'s record (a NamedTuple; ``None`` without one).
    """

    probe_step: Array
    sharpness: Array
    top_eigenvalues: Array
    eig_residuals: Array
    matvecs: Array
    eig_converged: Array
    extra: Any


class History(NamedTuple):
    """What a run recorded: :class:`StepRecord` and :class:`ProbeRecord` fields stacked, and
    ``diverged_at`` (under a sweep every leaf has a leading axis S).

    Attributes:
      step: ``(T,)`` step index t of each row; the row holds quantities at θ_t, before update t.
      loss: ``(T,)`` the objective on the step's batch (the full batch for GD).
      aux: dict of ``(T,)`` arrays from the objective (e.g. ``accuracy``).
      grad_norm: ``(T,)`` ‖∇L(θ_t)‖.
      param_norm: ``(T,)`` ‖θ_t‖.
      probe_step: ``(P,)`` step index of each probe.
      sharpness: ``(P,)`` λ₁ of the full-batch objective's Hessian.
      top_eigenvalues: ``(P, k)`` the top-k eigenvalues, descending.
      eig_residuals: ``(P, k)`` their residual norms.
      matvecs: ``(P,)`` HVPs each probe spent.
      eig_converged: ``(P,)`` whether each probe's eigensolve converged (bool).
      extra: the ``probe_fn``'s record with ``(P, …)`` leaves (a NamedTuple), or ``None``.
      diverged_at: scalar, −1 or the step at which the run diverged.
    """

    step: Array
    loss: Array
    aux: dict
    grad_norm: Array
    param_norm: Array
    probe_step: Array
    sharpness: Array
    top_eigenvalues: Array
    eig_residuals: Array
    matvecs: Array
    eig_converged: Array
    extra: Any
    diverged_at: Array


class Evaluations(NamedTuple):
    """The objective evaluated on named data sets on the ``TrainConfig.eval_every`` schedule
    (under a sweep every leaf has a leading axis S).

    Row ``e`` holds θ_t for ``t = step[e]``: the parameters after t updates (before update t),
    i.e. the run's first step t₀ and then ``t₀ + eval_every, t₀ + 2·eval_every, …`` up to the
    last step, E = ``steps / eval_every + 1`` rows for a fresh run. Evaluations after a member
    diverged are NaN (integers and booleans are kept, as in :func:`eoslib.engine.divergence.mask`).

    Attributes:
      step: ``(E,)`` the step t of each evaluation.
      metrics: ``{set: {"loss": (E,), **aux}}``: the objective's loss and its aux scalars (e.g.
        ``accuracy``) on each whole set, one full batch, at the training steps' precision.
    """

    step: Array
    metrics: dict


@dataclass
class TrainResult:
    """A finished (or paused) run: its history, final state, settings and hyperparameters.

    ``snapshots`` (only with ``TrainConfig.keep_states``) is a :class:`TrainState` whose leaves
    have a probe axis (after the sweep axis, if any): entry ``i`` is the state at
    ``history.probe_step[i]``, before that probe ran; its ``key`` is ``None`` (the key never
    changes during a run; :func:`at_probe` takes it from ``state``). Not written by :func:`save`.

    ``evaluations`` (only with ``TrainConfig.eval_every`` and ``eval_sets``) is an
    :class:`Evaluations`, with those of a resumed run before its own. Not written by :func:`save`.
    """

    history: History
    state: TrainState
    config: TrainConfig
    hparams: dict
    snapshots: TrainState | None = None
    evaluations: Evaluations | None = None

    @property
    def diverged(self) -> np.ndarray:
        return np.asarray(self.history.diverged_at) >= 0

    @property
    def stopped_at(self) -> np.ndarray:
        """Per member, the step ``config.stop_when`` fired at (θ of that step is the final
        state); −1 where it never fired or the run has no stop event."""
        if self.state.events is None:
            return np.full(np.shape(self.history.diverged_at), events.NEVER)
        return np.asarray(self.state.events.stopped_at)

    @property
    def switched_at(self) -> np.ndarray:
        """``(*members, n_switches)``: the step each of ``config.switches`` fired at, −1 never."""
        if self.state.events is None:
            return np.full(np.shape(self.history.diverged_at) + (0,), events.NEVER)
        return np.asarray(self.state.events.switched_at)


def supervised(model_loss: str = "half_mse", accuracy: str = "argmax") -> Objective:
    """The objective ``L(θ) + γ/2 ‖θ‖²`` of a model ``params(x)`` (an Equinox module), with
    ``γ = hp["gamma"]`` when the hyperparameters have it (coupled weight decay), and
    ``aux = {"accuracy": …}``. ``model_loss`` is ``"half_mse"`` or ``"cross_entropy"``;
    ``accuracy`` is ``"argmax"`` (:func:`eoslib.engine.losses.accuracy`, K ≥ 2 outputs) or
    ``"sign"`` (:func:`eoslib.engine.losses.sign_accuracy`: a one-output net on ±1 targets).

    The same arguments return the same function object: :func:`run` caches its compiled
    programs by the objective's identity, so runs built from separate calls share them."""
    if not isinstance(model_loss, str) or not isinstance(accuracy, str):
        return _supervised.__wrapped__(model_loss, accuracy)  # unhashable: let it raise there
    return _supervised(model_loss, accuracy)


@functools.lru_cache(maxsize=None)
def _supervised(model_loss: str, accuracy: str) -> Objective:
    loss_fn = losses.get(model_loss)
    if accuracy not in losses.ACCURACIES:
        raise ValueError(f"accuracy={accuracy!r} is not one of {sorted(losses.ACCURACIES)}")
    accuracy_fn = losses.ACCURACIES[accuracy]

    def objective(params, x, y, hp):
        outputs = params(x)
        loss = loss_fn(outputs, y)
        if "gamma" in hp:
            loss = loss + 0.5 * hp["gamma"] * losses.squared_norm(params)
        return loss, {"accuracy": accuracy_fn(outputs, y)}

    return objective


def microbatched(objective: Objective, microbatch: int | None) -> Objective:
    """``objective`` over a large set as the size-weighted mean of its value on consecutive
    micro-batches of ``microbatch`` examples (the last one, ``N mod microbatch`` examples, on its
    own), so that a full-batch loss, gradient or Hessian-vector product over 50,000 images never
    holds more than one micro-batch's activations.

    The micro-batches run in a ``lax.scan`` with ``jax.checkpoint`` around each one's objective:
    reverse mode (the gradient) and forward-over-reverse (:func:`eoslib.engine.hessian.hvp`, the
    probes) recompute a micro-batch's activations instead of storing all of them. The loss and
    every aux value must be **means over examples** (as :func:`supervised`'s loss, weight decay
    and accuracy are); their size-weighted mean is then the full-batch value, up to rounding.
    ``microbatch=None`` returns ``objective`` itself; a set of at most ``microbatch`` examples is
    evaluated in one piece.

    GhostBatchNorm (:class:`eoslib.engine.models.GhostBatchNorm`) normalises consecutive groups
    of ``ghost_size`` examples; with ``microbatch`` a multiple of every ghost size in the model,
    the micro-batches split the set at group boundaries, so the value is the unchunked one for
    any N (the last group of the remainder is the last, smaller, group of the whole set).

    Raises:
      ValueError: ``microbatch`` is not an int ≥ 1 or ``None``; or (when traced) the model has
        a GhostBatchNorm whose ``ghost_size`` does not divide ``microbatch``.
    """
    if microbatch is None:
        return objective
    if isinstance(microbatch, bool) or not isinstance(microbatch, (int, np.integer)) or microbatch < 1:
        raise ValueError(f"microbatch={microbatch!r} is not allowed; allowed: an int >= 1, or "
                         "None (the whole set at once)")
    size = int(microbatch)

    def chunked(params, x, y, hp):
        ghost = sorted({m.ghost_size for m in models.ghost_norms(params)})
        bad = [g for g in ghost if size % g]
        if bad:
            raise ValueError(f"microbatch={size} is not allowed for this model: it must be a "
                             f"multiple of its GhostBatchNorm ghost_size {bad} (else the "
                             "micro-batches would cut ghost batches apart)")
        n = x.shape[0]
        k, r = divmod(n, size)
        if k == 0 or (k == 1 and r == 0):
            return objective(params, x, y, hp)
        xs = x[:k * size].reshape((k, size) + x.shape[1:])
        ys = y[:k * size].reshape((k, size) + y.shape[1:])
        # hp is closed over (it may be a mapping that is no pytree, as run's key check passes)
        piece = jax.checkpoint(lambda p, xb, yb: objective(p, xb, yb, hp))
        _, (loss_k, aux_k) = jax.lax.scan(lambda c, xy: (c, piece(params, xy[0], xy[1])),
                                          None, (xs, ys))
        total = jax.tree.map(lambda a: size * jnp.sum(a, 0), (loss_k, aux_k))
        if r:
            rest = objective(params, x[k * size:], y[k * size:], hp)
            total = jax.tree.map(lambda t, a: t + r * a, total, rest)
        return jax.tree.map(lambda t: t / n, total)

    return chunked


def _norm(tree):
    return jnp.sqrt(sum(jnp.vdot(p, p) for p in jax.tree.leaves(tree)))


def _batch(x, y, state, config, n):
    if config.batch_size is None:
        return x, y
    per_epoch = n // config.batch_size
    epoch, within = state.step // per_epoch, state.step % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(state.key, epoch), n)
    idx = jax.lax.dynamic_slice(perm, (within * config.batch_size,), (config.batch_size,))
    return x[idx], y[idx]


def _restart_block(state: TrainState) -> Array:
    """A fresh random start block for the probe at ``state.step`` (after a non-finite solve)."""
    key = jax.random.fold_in(jax.random.split(state.key)[0], state.step)
    return jax.random.normal(key, state.eigvecs.shape, state.eigvecs.dtype)


def _make_chunk(objective, make_optimizer, config, probe_fn, intervals, inner_steps):
    """A pure function ``(state, hp, x, y, sets) -> (state, (ProbeRecord | None, StepRecord,
    TrainState | None, Evaluations | None))`` running ``intervals`` periods of ``inner_steps``
    steps, each laid out by :func:`_schedule`; ``sets`` is the mapping of evaluation sets
    (``None`` without evaluations)."""
    levels = _schedule(config, inner_steps)

    def run_chunk(state: TrainState, hp, x, y, sets=None):
        switching = bool(config.switches)
        watching = config.stop_when is not None or switching
        optimizer = None if switching else optax.with_extra_args_support(make_optimizer(hp))
        n = x.shape[0]

        def step(state, _):
            xb, yb = _batch(x, y, state, config, n)
            ev = state.events
            with jax.default_matmul_precision(config.training_precision):
                (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params, xb, yb, hp)
            if watching:  # step events see θ_t's forward pass; a switch acts on this update
                before = events.stopped_before(ev, state.step)
                active = divergence.alive(state.diverged_at) & ~before
                ev = events.observe_step(config.stop_when, config.switches, ev, state.step,
                                         loss, aux, active)
            opt = optimizer
            if switching:
                opt = optax.with_extra_args_support(
                    make_optimizer(events.switched_hparams(config.switches, ev, hp)))
            with jax.default_matmul_precision(config.training_precision):
                updates, opt_state = opt.update(grads, state.opt_state, state.params, batch=(xb, yb))
                params = optax.apply_updates(state.params, updates)
                record = StepRecord(state.step, loss, aux, _norm(grads), _norm(state.params))
            if watching:
                diverged_at = jnp.where(before, state.diverged_at, divergence.update(
                    state.diverged_at, state.step, loss, config.max_loss))
                alive = divergence.alive(diverged_at)
                record = divergence.mask(alive & ~before, record)
                moving = alive & ~events.stopped_by(ev, state.step)
            else:
                diverged_at = divergence.update(state.diverged_at, state.step, loss, config.max_loss)
                alive = moving = divergence.alive(diverged_at)
                record = divergence.mask(alive, record)  # the step index is an integer: kept
            new = TrainState(divergence.hold(moving, params, state.params),
                             divergence.hold(moving, opt_state, state.opt_state),
                             state.eigvecs, state.step + 1, diverged_at, state.key, ev)
            return new, record

        @linalg.one_member_at_a_time  # a sweep's members solve one after another on a CPU
        def eigenpairs(params, hp_now, v0, x, y):
            """The top-k eigenpairs of the full-batch objective at ``params`` (with ``hp_now``)."""
            loss_fn = lambda p: objective(p, x, y, hp_now)[0]
            result = hessian.eigsh(loss_fn, params, config.top_k, v0=v0,
                                   tol=config.eig_tol, max_restarts=config.eig_max_restarts,
                                   num_iters=config.eig_num_iters, reortho=config.eig_reortho,
                                   precision=config.precision)
            finite = jnp.all(jnp.isfinite(result.values)) & jnp.all(jnp.isfinite(result.vectors))
            return result._replace(converged=result.converged & finite)

        def solve(params, hp_now, v0):
            return eigenpairs(params, hp_now, v0, x, y)

        def next_point(state, hp_now, result, how):
            """θ_{t+1} of the run's own optimizer on step t's batch (or the midpoint of θ_t and
            θ_{t+1}), its optimizer state and its eigenpairs, warm-started from θ_t's and with
            their signs aligned to them (for oscillation-averaged probes)."""
            xb, yb = _batch(x, y, state, config, n)
            opt = optax.with_extra_args_support(make_optimizer(hp_now))
            with jax.default_matmul_precision(config.training_precision):
                grads = jax.grad(lambda p: objective(p, xb, yb, hp_now)[0])(state.params)
                updates, opt_state = opt.update(grads, state.opt_state, state.params, batch=(xb, yb))
                nxt = optax.apply_updates(state.params, updates)
            if how == "midpoint":
                nxt = jax.tree.map(lambda a, b: (a + b) / 2, state.params, nxt)
            with jax.default_matmul_precision(config.precision):
                other = solve(nxt, hp_now, result.vectors)
            signs = jnp.where(jnp.sum(other.vectors * result.vectors, 0) < 0, -1.0, 1.0)
            other = other._replace(vectors=other.vectors * signs.astype(other.vectors.dtype)[None, :])
            return probes.NextPoint(nxt, opt_state, other)

        def probe(state):
            hp_now = events.switched_hparams(config.switches, state.events, hp)
            before = events.stopped_before(state.events, state.step)
            alive = divergence.alive(state.diverged_at) & ~before
            warm_ok = jnp.all(jnp.isfinite(state.eigvecs))
            v0 = jnp.where(warm_ok, state.eigvecs, _restart_block(state))
            with jax.default_matmul_precision(config.precision):
                result = solve(state.params, hp_now, v0)
                extra = None
                if probe_fn is not None:
                    how = getattr(probe_fn, "next_point", None)
                    if how:
                        point = next_point(state, hp_now, result, how)
                        extra = probe_fn(state.params, state.opt_state, result, hp_now, (x, y),
                                         next_point=point)
                    else:
                        extra = probe_fn(state.params, state.opt_state, result, hp_now, (x, y))
            record = ProbeRecord(state.step, result.values[0], result.values, result.residuals,
                                 result.matvecs, result.converged, extra)
            record = divergence.mask(alive, record)  # NaN / False once dead; step and matvecs kept
            # a non-finite solve is kept here and replaced by a fresh block at the next probe
            eigvecs = jnp.where(alive, result.vectors, state.eigvecs)
            ev = state.events
            if watching:
                ev = events.observe_probe(config.stop_when, config.switches, ev, state.step,
                                          result.values, hp_now, alive)
            return state._replace(eigvecs=eigvecs, events=ev), record

        def evaluate(state):
            alive = divergence.alive(state.diverged_at) & ~events.stopped_before(state.events, state.step)
            return _evaluate(objective, config.training_precision, state.params, hp, sets,
                             state.step, alive)

        def block(level):
            """One block of ``levels[level]``: its before-events, the blocks (or steps) inside
            it, its after-events."""
            length, before, after = levels[level]

            def body(state, _):
                out = {}
                if "keep" in before:
                    out["keep"] = state._replace(key=None)
                if "probe" in before:
                    state, out["probe"] = probe(state)
                if level + 1 < len(levels):
                    state, inner = jax.lax.scan(block(level + 1), state, None,
                                                length=length // levels[level + 1][0])
                    out.update(inner)
                else:
                    state, out["steps"] = jax.lax.scan(step, state, None, length=length)
                if "eval" in after:
                    out["eval"] = evaluate(state)
                return state, out

            return body

        state, out = jax.lax.scan(block(0), state, None, length=intervals)
        # a record made at level i has i + 1 scan axes in front (the chunk's and the blocks');
        # the steps have one more (their own scan)
        depth = {kind: i + 1 for i, (_, before, after) in enumerate(levels) for kind in before + after}
        depth["steps"] = len(levels) + 1
        flat = {kind: jax.tree.map(lambda a, d=depth[kind]: a.reshape((-1,) + a.shape[d:]), rec)
                for kind, rec in out.items()}
        return state, (flat.get("probe"), flat["steps"], flat.get("keep"), flat.get("eval"))

    return run_chunk


def _schedule(config: TrainConfig, inner: int) -> tuple[tuple[int, tuple[str, ...], tuple[str, ...]], ...]:
    """The nested blocks of one compiled period of ``inner`` steps, outermost first:
    ``(length, before, after)`` per level, each length a multiple of the next. ``before`` events
    (``"keep"``, then ``"probe"``) act on the state at the block's start, ``after`` events
    (``"eval"``) on the state at its end; the innermost level scans the steps themselves."""
    every = {"keep": config.probe_every if config.keep_states else 0,
             "probe": config.probe_every, "eval": config.eval_every}
    lengths = sorted({inner} | {v for v in every.values() if v}, reverse=True)
    if lengths[0] != inner or any(a % b for a, b in zip(lengths, lengths[1:])):
        raise AssertionError(f"schedule lengths {lengths} do not nest in a period of {inner}")
    return tuple((n, tuple(k for k in ("keep", "probe") if every[k] == n),
                  ("eval",) if every["eval"] == n else ()) for n in lengths)


def _evaluate(objective, precision, params, hp, sets, step, alive):
    """``Evaluations`` row of one member: the objective on each set (NaN once dead)."""
    metrics = {}
    with jax.default_matmul_precision(precision):
        for name, (xs, ys) in sets.items():
            loss, aux = objective(params, xs, ys, hp)
            metrics[name] = divergence.mask(alive, {"loss": loss, **aux})
    return Evaluations(step, metrics)


def _program_config(config: TrainConfig, inner: int) -> TrainConfig:
    """``config`` with the fields the chunk program does not read (``steps``, ``chunks``) set to
    one period of ``inner`` steps: the key under which :func:`_compiled_chunk` caches it, so runs
    that differ only in length (a resumed run, replays of several lengths, a warm-up) share one
    compiled program instead of compiling the same one again."""
    return dataclasses.replace(config, steps=inner, chunks=1)


@functools.lru_cache(maxsize=64)
def _compiled_chunk(objective, make_optimizer, config, probe_fn, intervals, inner, sweep, sweep_batch):
    """The jitted chunk program, cached across calls of :func:`run` with the same functions and
    settings (``jax.jit`` caches by function identity, and the chunk is a fresh closure)."""
    single = _make_chunk(objective, make_optimizer, config, probe_fn, intervals, inner)
    return jax.jit(_over_members(single, 3, sweep, sweep_batch))


@functools.lru_cache(maxsize=64)
def _compiled_evaluation(objective, precision, sweep, sweep_batch):
    """The jitted evaluation of a run's first state, ``(state, hp, sets) -> Evaluations`` with
    one row (the program the loop runs at its later evaluations, on its own)."""
    def single(state, hp, sets):
        row = _evaluate(objective, precision, state.params, hp, sets, state.step,
                        divergence.alive(state.diverged_at))
        return jax.tree.map(lambda a: a[None], row)

    return jax.jit(_over_members(single, 1, sweep, sweep_batch))


def clear_compiled() -> None:
    """Drop the compiled chunk and evaluation programs :func:`run` keeps between calls.

    A long-lived process (a test session, a notebook kernel sweeping many settings) that
    compiles many distinct programs keeps each one's machine code mapped while a cache holds it
    (these and :mod:`eoslib.engine.hessian`'s one-off solvers); call this (with ``jax.clear_caches()`` for JAX's own caches) to release them. The next
    :func:`run` recompiles what it needs; results do not change."""
    _compiled_chunk.cache_clear()
    _compiled_evaluation.cache_clear()
    hessian.clear_compiled()


def _over_members(single, shared, sweep, sweep_batch):
    """``single(state, hp, *rest)`` of one member, for a sweep over the leading axis of
    ``state`` and ``hp`` (the ``shared`` arguments after them are the same for every member):
    ``vmap``-ed, or ``lax.map``-ed in batches of ``sweep_batch`` members."""
    if not sweep:
        return single
    if sweep_batch is None:
        return jax.vmap(single, in_axes=(0, 0) + (None,) * shared)

    def fn(s, hp, *rest):
        return jax.lax.map(lambda a: single(a[0], a[1], *rest), (s, hp), batch_size=sweep_batch)

    return fn


def init_state(params: PyTree, optimizer: optax.GradientTransformation, top_k: int, *,
               key: PRNGKeyArray) -> TrainState:
    """The starting carry: optimizer state, a random start block for the first probe."""
    flat, _ = ravel_pytree(params)
    k1, k2 = jax.random.split(key)
    eigvecs = jax.random.normal(k1, (flat.size, top_k), flat.dtype)
    return TrainState(params, optimizer.init(params), eigvecs, jnp.array(0, jnp.int32),
                      divergence.start(), k2)


def _hparam_axis(hparams: Mapping[str, Any]) -> int | None:
    sizes = {np.shape(v)[0] for v in hparams.values() if np.ndim(v) >= 1}
    if len(sizes) > 1:
        raise ValueError(f"swept hyperparameters must share one length; got lengths {sorted(sizes)}")
    return sizes.pop() if sizes else None


class _ReadRecorder(Mapping):
    """A read-only mapping that notes every key looked up (``[]``, ``get``, ``in``, iteration)."""

    def __init__(self, values: Mapping[str, Any], looked_up: set, missing: set):
        self._values, self._looked_up, self._missing = values, looked_up, missing

    def __getitem__(self, key):
        self._looked_up.add(key)
        if key not in self._values:
            self._missing.add(key)
        return self._values[key]

    def get(self, key, default=None):
        self._looked_up.add(key)
        return self._values.get(key, default)

    def __contains__(self, key):
        self._looked_up.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        self._looked_up.update(self._values)
        return iter(self._values)

    def __len__(self):
        return len(self._values)


def _check_hparams_and_probe(objective, make_optimizer, probe_fn, params, hparams, x, y, config, sweep,
                             batched_params):
    """Trace one step and one probe of a member with ``jax.eval_shape``; raise on unread or
    missing hyperparameters, a non-scalar loss, or a probe record that is not a NamedTuple."""
    member = lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:], a.dtype)
    whole = lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype)
    p_spec = jax.tree.map(member if batched_params else whole, params)
    hp_spec = {k: (member(v) if sweep else whole(v)) for k, v in hparams.items()}
    b = config.batch_size or x.shape[0]
    looked_up, missing, objective_reads = set(), set(), set()
    aux_keys = []

    def trace(params, hp_values, x, y):
        hp = _ReadRecorder(hp_values, looked_up, missing)
        hp_objective = _ReadRecorder(hp_values, objective_reads, missing)
        optimizer = optax.with_extra_args_support(make_optimizer(hp))
        opt_state = optimizer.init(params)
        xb, yb = x[:b], y[:b]
        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params, xb, yb, hp_objective)
        aux_keys.extend(aux)
        optimizer.update(grads, opt_state, params, batch=(xb, yb))
        if probe_fn is None:
            return loss, None
        n = ravel_pytree(params)[0].size
        dtype = ravel_pytree(params)[0].dtype
        eig = linalg.Eigenpairs(jnp.zeros(config.top_k, dtype), jnp.eye(n, config.top_k, dtype=dtype),
                                jnp.zeros(config.top_k, dtype), jnp.array(0), jnp.array(True))
        if getattr(probe_fn, "next_point", None):
            point = probes.NextPoint(params, opt_state, eig)
            return loss, probe_fn(params, opt_state, eig, hp, (x, y), next_point=point)
        return loss, probe_fn(params, opt_state, eig, hp, (x, y))

    try:
        loss, record = jax.eval_shape(trace, p_spec, hp_spec, whole(x), whole(y))
    except KeyError:
        if missing:
            raise ValueError(f"hyperparameter(s) {sorted(missing)} are read by the objective, the optimizer "
                             f"or the probe but not given; hparams has {sorted(hparams)}") from None
        raise
    looked_up |= objective_reads
    watched = [config.stop_when] if config.stop_when is not None else []
    watched += [sw.when for sw in config.switches]
    for event in watched:
        looked_up.update(event.hparams_read())
        if isinstance(event, events.AccuracyAbove) and event.aux not in aux_keys:
            raise ValueError(f"{event!r} reads the objective's aux {event.aux!r}, but the objective's "
                             f"aux has {sorted(aux_keys)}")
    for i, sw in enumerate(config.switches):
        looked_up.update(sw.hparams_read())
        absent = sorted(set(sw.hparams_read()) - set(hparams))
        if absent:
            raise ValueError(f"switches[{i}] reads hyperparameter(s) {absent}, which hparams does not "
                             f"have (it has {sorted(hparams)})")
        read_by_objective = sorted(set(sw.targets()) & objective_reads)
        if read_by_objective:
            raise ValueError(f"switches[{i}] switches {read_by_objective}, which the objective reads: "
                             "a switch acts on the update of the step its event fires on, whose "
                             "gradient is already computed; switch only what the optimizer or the "
                             "probes read")
    for event in watched:
        if isinstance(event, events.EdgeCount) and event.eta not in hparams:
            raise ValueError(f"{event!r} reads hp[{event.eta!r}] (the step size), which hparams does "
                             f"not have (it has {sorted(hparams)})")
    unread = sorted(set(hparams) - looked_up)
    if unread:
        raise ValueError(f"hparams {unread} are never read by the objective, the optimizer or the probe "
                         f"(a typo?); the keys they read are {sorted(looked_up)}")
    if loss.shape != ():
        raise ValueError(f"objective must return (loss, aux) with a scalar loss; its loss has shape {loss.shape}")
    if probe_fn is not None and not probes.is_record(record):
        raise TypeError(f"probe_fn must return a NamedTuple of arrays (a probe record, see "
                        f"eoslib.engine.probes); it returned {type(record).__name__}")


def _check_data(x, y):
    for name, a in (("x", x), ("y", y)):
        if jnp.issubdtype(a.dtype, jnp.inexact):
            bad = int(jnp.sum(~jnp.isfinite(a)))
            if bad:
                raise ValueError(f"data {name} has {bad} non-finite entries (NaN or inf) of {a.size}; "
                                 "clean or impute them before training")


def _float_dtype(params):
    floats = [jnp.asarray(a).dtype for a in jax.tree.leaves(params) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]
    return jnp.result_type(*floats) if floats else None


def run(
    objective: Objective,
    make_optimizer: Callable[[Mapping[str, Array]], optax.GradientTransformation],
    params: PyTree | None,
    data: tuple[Array, Array],
    config: TrainConfig,
    *,
    key: PRNGKeyArray,
    hparams: Mapping[str, Any] | None = None,
    batched_params: bool = False,
    probe_fn: probes.Probe | None = None,
    sweep_batch: int | None = None,
    progress: bool = True,
    resume: TrainResult | None = None,
    eval_sets: Mapping[str, tuple[Array, Array]] | None = None,
) -> TrainResult:
    """Train; a sweep when any hyperparameter is an array with a leading axis S.

    Args:
      objective: ``(params, x, y, hp) -> (loss, aux)``; see :func:`supervised`.
      make_optimizer: ``hp -> optax.GradientTransformation`` (``hp``: a mapping of scalars).
      params: initial parameters; with ``batched_params`` every leaf has a leading axis S (e.g.
        ``jax.vmap(init)(keys)`` for a sweep over seeds). ``None`` when resuming.
      data: ``(x, y)``: all training inputs and targets (the probes always use all of them); no
        NaN or inf (a ``ValueError``).
      config: :class:`TrainConfig`.
      key: PRNG key (probe start vectors, minibatch order); the same for every sweep member.
      hparams: dict of scalars, or of ``(S, …)`` arrays to sweep. Every key must be read by the
        objective, the optimizer or the probe (a ``ValueError`` names the keys read otherwise).
      batched_params: whether ``params`` has the sweep axis.
      probe_fn: an :class:`eoslib.engine.probes.Probe`, ``(params, opt_state, eigenpairs, hp,
        (x, y)) -> NamedTuple record``, run at each probe (after the top-k eigensolve); see
        :mod:`eoslib.engine.probes` (``probes.combine`` runs several). ``(x, y)`` is all the
        training data, passed as traced arguments (a probe that closed over the arrays instead
        would bake them into the program as constants, which XLA may spend minutes
        constant-folding).
      sweep_batch: run the S members in sequential batches of this size (memory).
      progress: show a tqdm bar.
      resume: continue this earlier result for ``config.steps`` more steps from its state (then
        ``params`` must be ``None``; pass the same hyperparameters).
      eval_sets: ``{name: (x, y)}``, the sets the objective is evaluated on every
        ``config.eval_every`` steps inside the compiled loop (e.g. ``{"train": data, "val": …}``;
        each set is one full batch; only the metrics are kept, see :class:`Evaluations`). Needed
        exactly when ``config.eval_every > 0``. A resumed run evaluates its first state unless
        ``resume.evaluations`` already ends at that step; the sets must have the same names.

    Returns:
      A :class:`TrainResult` whose :class:`History` holds the typed records.
    """
    if resume is not None and params is not None:
        raise ValueError("resume=... continues from resume.state.params; pass params=None "
                         "(params was given too and would be ignored)")
    if resume is None and params is None:
        raise ValueError("params=None: give the initial parameters (None only with resume=...)")
    if probe_fn is not None and not callable(probe_fn):
        raise TypeError(f"probe_fn={probe_fn!r} must be a probe (see eoslib.engine.probes) or None")
    start_params = resume.state.params if resume is not None else params
    if resume is not None:
        batched_params = np.ndim(resume.state.diverged_at) == 1
    dtype = _float_dtype(start_params)

    def as_array(v):
        a = jnp.asarray(v)
        return a.astype(dtype) if dtype is not None and jnp.issubdtype(a.dtype, jnp.floating) else a

    hparams = {k: as_array(v) for k, v in (hparams or {}).items()}
    size = _hparam_axis(hparams)
    if batched_params:
        lead = {np.shape(leaf)[0] for leaf in jax.tree.leaves(start_params)}
        if len(lead) != 1 or (size is not None and lead != {size}):
            raise ValueError(f"batched_params: leading axes {sorted(lead)} must all equal the sweep size {size}")
        size = lead.pop()
    sweep = size is not None
    if sweep:
        hparams = {k: (jnp.broadcast_to(v, (size,)) if v.ndim == 0 else v) for k, v in hparams.items()}

    x, y = (jnp.asarray(a) for a in data)
    _check_data(x, y)
    sets = _check_eval_sets(eval_sets, config, resume)
    if config.batch_size is not None and config.batch_size > x.shape[0]:
        raise ValueError(f"batch_size={config.batch_size} exceeds the {x.shape[0]} examples")
    inner = (max(config.probe_every, config.eval_every)
             or max(1, config.steps // max(1, config.chunks)))
    total_intervals = -(-config.steps // inner)
    if not (config.probe_every or config.eval_every) and config.steps % inner:
        raise ValueError(f"steps={config.steps} must be a multiple of {inner} (steps // chunks) "
                         "when probe_every=eval_every=0; choose chunks dividing steps")
    _check_hparams_and_probe(objective, make_optimizer, probe_fn if config.probe_every else None,
                             start_params, hparams, x, y, config, sweep, batched_params)

    watching = config.stop_when is not None or bool(config.switches)
    if resume is not None:
        state = resume.state
        if watching and state.events is None:  # a run without events resumed with some
            fresh = events.initial_state(len(config.switches), _float_dtype(start_params) or jnp.float32)
            if sweep:
                fresh = jax.tree.map(lambda a: jnp.broadcast_to(a, (size,) + a.shape), fresh)
            state = state._replace(events=fresh)
        elif watching and state.events.switched_at.shape[-1] != len(config.switches):
            raise ValueError(f"resume: the run had {state.events.switched_at.shape[-1]} switches; "
                             f"config.switches has {len(config.switches)} (keep the same switches)")
        elif not watching and state.events is not None:
            state = state._replace(events=None)
    else:
        def init(p, hp):
            st = init_state(p, make_optimizer(hp), config.top_k, key=key)
            if watching:
                st = st._replace(events=events.initial_state(len(config.switches),
                                                             _float_dtype(p) or jnp.float32))
            return st
        if sweep:
            params_b = params if batched_params else jax.tree.map(
                lambda a: jnp.broadcast_to(a, (size,) + jnp.shape(a)), params)
            state = jax.vmap(init)(params_b, hparams)
        else:
            state = init(params, hparams)

    per_chunk = max(1, -(-total_intervals // max(1, config.chunks)))

    program = _program_config(config, inner)

    def chunk_fn(intervals):
        return _compiled_chunk(objective, make_optimizer, program, probe_fn, intervals, inner,
                               sweep, sweep_batch)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, unit="step", leave=False)
    pieces, done = [], 0
    first_eval = None
    if sets is not None and not _evaluated_at_start(resume):
        first_eval = jax.tree.map(np.asarray, _compiled_evaluation(
            objective, config.training_precision, sweep, sweep_batch)(state, hparams, sets))
    while done < total_intervals:
        n_int = min(per_chunk, total_intervals - done)
        state, piece = chunk_fn(n_int)(state, hparams, x, y, sets)
        pieces.append(jax.tree.map(np.asarray, piece))
        done += n_int
        if bar is not None:
            bar.update(n_int * inner)
        if config.stop_when is not None and done < total_intervals:
            finished = (np.asarray(state.events.stopped_at) >= 0) | (np.asarray(state.diverged_at) >= 0)
            if finished.all():  # every member stopped or diverged: the rest would be blank
                break
    if bar is not None:
        bar.close()

    axis = 1 if sweep else 0
    cat = lambda *a: np.concatenate(a, axis=axis)
    steps = jax.tree.map(cat, *[p[1] for p in pieces])
    if config.probe_every:
        probe_records = jax.tree.map(cat, *[p[0] for p in pieces])
    else:
        probe_records = _no_probes(state, config, size)
    history = History(**steps._asdict(), **probe_records._asdict(), diverged_at=np.asarray(state.diverged_at))
    snapshots = jax.tree.map(cat, *[p[2] for p in pieces]) if config.keep_states else None
    evaluations = None
    if sets is not None:
        rows = ([first_eval] if first_eval is not None else []) + [p[3] for p in pieces]
        evaluations = jax.tree.map(cat, *rows)
    if resume is not None and resume.evaluations is not None:
        evaluations = (resume.evaluations if evaluations is None
                       else jax.tree.map(cat, resume.evaluations, evaluations))
    if resume is not None:
        history = _concat_histories(resume.history, history, axis)
        if snapshots is not None and resume.snapshots is not None:
            snapshots = jax.tree.map(cat, resume.snapshots, snapshots)
        elif resume.config.probe_every and resume.history.probe_step.shape[axis]:
            snapshots = None  # the earlier part kept none: a partial list would misalign
    return TrainResult(history, state, config, {k: np.asarray(v) for k, v in hparams.items()},
                       snapshots, evaluations)


def _check_eval_sets(eval_sets, config: TrainConfig, resume: TrainResult | None):
    """The evaluation sets as ``{name: (x, y)}`` of JAX arrays (``None`` without evaluations);
    raise a ``ValueError`` when they and ``config.eval_every`` disagree, a set is malformed, or
    a resumed run evaluated other sets."""
    if bool(config.eval_every) != bool(eval_sets):
        raise ValueError(f"eval_sets ({'none' if not eval_sets else sorted(eval_sets)}) and "
                         f"config.eval_every={config.eval_every}: give both (evaluations every "
                         "eval_every steps on those sets) or neither")
    if not eval_sets:
        return None
    sets = {}
    for name, pair in eval_sets.items():
        if not isinstance(name, str) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"eval_sets[{name!r}] must be a str name mapped to a pair (x, y); "
                             f"got {type(pair).__name__}")
        xs, ys = (jnp.asarray(a) for a in pair)
        if xs.shape[:1] != ys.shape[:1] or xs.ndim == 0:
            raise ValueError(f"eval_sets[{name!r}]: x {xs.shape} and y {ys.shape} must have the "
                             "same number of examples (leading axis)")
        _check_data(xs, ys)
        sets[name] = (xs, ys)
    if resume is not None and resume.evaluations is not None:
        before = sorted(resume.evaluations.metrics)
        if before != sorted(sets):
            raise ValueError(f"eval_sets {sorted(sets)} differ from the sets {before} the resumed "
                             "run evaluated; use the same names")
    return sets


def _evaluated_at_start(resume: TrainResult | None) -> bool:
    """Whether ``resume`` already evaluated the state a run resumed from it starts at."""
    if resume is None or resume.evaluations is None:
        return False
    steps = np.asarray(resume.evaluations.step)
    if steps.shape[-1] == 0:
        return False
    return bool(np.all(steps[..., -1] == np.asarray(resume.state.step)))


def at_probe(result: TrainResult, index: int) -> TrainResult:
    """The run as it stood at its probe ``index`` (``history.probe_step[index]``, before that
    probe ran), to pass as ``resume=`` to :func:`run`: the history up to that step, the
    evaluations up to that step (that step's included) and the state kept there. Needs a run with ``TrainConfig.keep_states``; for a sweep, every member
    is cut at the same probe.

    Raises:
      ValueError: the run kept no states, or ``index`` is not a probe of the run.
    """
    if result.snapshots is None:
        raise ValueError("at_probe needs a run with TrainConfig(keep_states=True); this one "
                         "kept no states")
    h = result.history
    axis = 1 if np.ndim(h.diverged_at) == 1 else 0
    count = h.probe_step.shape[axis]
    if not isinstance(index, (int, np.integer)) or not -count <= index < count:
        raise ValueError(f"index={index!r} must be an int in [-{count}, {count}) (the run has "
                         f"{count} probes)")
    index = int(index) % count
    take = lambda a: np.take(np.asarray(a), index, axis=axis)
    state = jax.tree.map(take, result.snapshots)
    state = state._replace(key=result.state.key)
    step = int(np.asarray(h.probe_step).reshape(-1, count)[0, index])
    steps = np.asarray(h.step).reshape(-1, h.step.shape[axis])[0]
    t, p = int(np.searchsorted(steps, step)), index
    cut = lambda n: (lambda a: a[:, :n] if axis else a[:n])
    cut_steps, cut_probes = cut(t), cut(p)
    history = History(
        step=cut_steps(h.step), loss=cut_steps(h.loss), aux=jax.tree.map(cut_steps, h.aux),
        grad_norm=cut_steps(h.grad_norm), param_norm=cut_steps(h.param_norm),
        probe_step=cut_probes(h.probe_step), sharpness=cut_probes(h.sharpness),
        top_eigenvalues=cut_probes(h.top_eigenvalues),
        eig_residuals=cut_probes(h.eig_residuals), matvecs=cut_probes(h.matvecs),
        eig_converged=cut_probes(h.eig_converged),
        extra=jax.tree.map(cut_probes, h.extra) if h.extra is not None else None,
        diverged_at=np.asarray(state.diverged_at))
    snapshots = jax.tree.map(cut_probes, result.snapshots)
    evaluations = result.evaluations
    if evaluations is not None:  # those of the states up to the cut, that state included
        e_steps = np.asarray(evaluations.step).reshape(-1, evaluations.step.shape[axis])[0]
        evaluations = jax.tree.map(cut(int(np.searchsorted(e_steps, step, side="right"))),
                                   evaluations)
    return TrainResult(history, state, result.config, result.hparams, snapshots, evaluations)


def _no_probes(state: TrainState, config: TrainConfig, size: int | None) -> ProbeRecord:
    """The empty probe record of a run with ``probe_every = 0``."""
    lead = (size, 0) if size is not None else (0,)
    dtype = np.asarray(state.eigvecs).dtype
    return ProbeRecord(np.zeros(lead, np.int32), np.zeros(lead, dtype), np.zeros(lead + (config.top_k,), dtype),
                       np.zeros(lead + (config.top_k,), dtype), np.zeros(lead, np.int32), np.zeros(lead, bool), None)


def _concat_histories(a: History, b: History, axis: int) -> History:
    joined = jax.tree.map(lambda u, v: np.concatenate([u, v], axis=axis),
                          a._replace(diverged_at=None), b._replace(diverged_at=None))
    return joined._replace(diverged_at=b.diverged_at)


# ----------------------------------------------------------------------------- save / load


def _record_spec(record) -> dict | None:
    """The type name and field names of a (nested) NamedTuple record, for :func:`load`."""
    if record is None:
        return None
    return {"type": type(record).__name__,
            "fields": {f: (_record_spec(v) if probes.is_record(v) else None) for f, v in zip(record._fields, record)}}


def _record_arrays(prefix: str, record) -> dict[str, np.ndarray]:
    out = {}
    for f, v in zip(record._fields, record):
        if probes.is_record(v):
            out.update(_record_arrays(f"{prefix}.{f}", v))
        else:
            out[f"{prefix}.{f}"] = np.asarray(v)
    return out


def _rebuild_record(spec: dict, prefix: str, arrays: Mapping[str, np.ndarray]):
    """Rebuild a record from :func:`_record_spec`'s description: the class of that name in
    :data:`eoslib.engine.probes.RECORDS` when its fields match, else a ``collections.namedtuple``."""
    names = list(spec["fields"])
    cls = probes.RECORDS.get(spec["type"])
    if cls is None or list(cls._fields) != names:
        cls = collections.namedtuple(spec["type"], names)
    values = [(_rebuild_record(sub, f"{prefix}.{f}", arrays) if sub is not None else arrays[f"{prefix}.{f}"])
              for f, sub in spec["fields"].items()]
    return cls(*values)


def save(path: str | Path, result: TrainResult, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``path.npz`` (the history's arrays) and ``path.json`` (config, hparams, provenance,
    and the probe record's type and field names).

    The pair is the format a chapter reads back with :func:`load` — e.g. a paper-scale run
    computed on a GPU and shown in the book.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    history = result.history
    arrays = {}
    for name, value in history._asdict().items():
        if name == "aux":
            arrays.update({f"aux.{sub}": np.asarray(arr) for sub, arr in value.items()})
        elif name == "extra":
            if value is not None:
                arrays.update(_record_arrays("extra", value))
        else:
            arrays[name] = np.asarray(value)
    np.savez_compressed(path.with_suffix(".npz"), **arrays)
    meta = {"config": dataclasses.asdict(result.config),
            "hparams": {k: np.asarray(v).tolist() for k, v in result.hparams.items()},
            "extra": _record_spec(history.extra),
            "provenance": dict(provenance or {}), "saved_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path.with_suffix(".npz")


def save_state(path: str | Path, state: TrainState) -> Path:
    """Checkpoint a run's carry (parameters, optimizer state, warm-start vectors, step, key)."""
    import equinox as eqx

    path = Path(path).with_suffix(".eqx")
    path.parent.mkdir(parents=True, exist_ok=True)
    key_data = jax.random.key_data(state.key)
    eqx.tree_serialise_leaves(path, state._replace(key=key_data))
    return path


def load_state(path: str | Path, like: TrainState) -> TrainState:
    """Read a checkpoint written by :func:`save_state`; ``like`` is a state of the same structure
    (e.g. ``init_state(params, optimizer, top_k, key=...)``)."""
    import equinox as eqx

    template = like._replace(key=jax.random.key_data(like.key))
    state = eqx.tree_deserialise_leaves(Path(path).with_suffix(".eqx"), template)
    return state._replace(key=jax.random.wrap_key_data(state.key))


def load(path: str | Path) -> tuple[History, dict]:
    """Read what :func:`save` wrote: ``(History of numpy arrays, metadata dict)``.

    ``extra`` comes back as the saved record type (a class of :mod:`eoslib.engine.probes` by
    name, else a ``namedtuple`` with the stored field names), ``None`` if the run had no probe.
    Files written before records were typed load too: a flat ``extra.*`` becomes a namedtuple
    ``Extra``, and a missing ``eig_converged`` is recomputed from the residuals and ``eig_tol``
    (the eigensolver's own test).
    """
    path = Path(path)
    with np.load(path.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(path.with_suffix(".json").read_text())
    spec = meta.get("extra")
    flat_extra = sorted(k.split(".", 1)[1] for k in arrays if k.startswith("extra."))
    if spec is None and flat_extra:  # written before records were typed
        spec = {"type": "Extra", "fields": {f: None for f in flat_extra}}
    if "eig_converged" not in arrays:
        tol = meta.get("config", {}).get("eig_tol", 1e-3)
        values, residuals = arrays["top_eigenvalues"], arrays["eig_residuals"]
        scale = np.max(np.abs(values), axis=-1, keepdims=True) if values.size else values
        arrays["eig_converged"] = np.all(residuals <= tol * scale, axis=-1)
    fields = {}
    for name in History._fields:
        if name == "aux":
            fields[name] = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("aux.")}
        elif name == "extra":
            fields[name] = _rebuild_record(spec, "extra", arrays) if spec is not None else None
        else:
            fields[name] = arrays[name]
    return History(**fields), meta
