"""Optimizers as optax transformations: Clipped-Ada, and learning-rate interventions.

**Clipped-Ada** (Wang & Roberts, flatness-bias paper, Sec. 8 and App. I–J; their Eqs. 10–11 were
lost in our copy and are reconstructed here). Adam with the bias-corrected second moment capped
elementwise at τ in the preconditioner::

    m̂ = m / (1 − β₁ᵗ),   v̂ = v / (1 − β₂ᵗ),   θ ← θ − η m̂ / (√min(v̂, τ) + ε)

The cap applies **after** bias correction, to the quantity that enters the preconditioner, so τ
has one meaning at every step: the effective curvature is λ₁(H / (√min(v̂, τ) + ε)) throughout.
(Capping the raw v before correction would let the early-step correction 1/(1 − β₂ᵗ) lift a
capped entry above τ.) The stored moment v is never capped: the running average is Adam's own.
τ = ∞ gives exactly ``optax.adam``; β₁ = 0 gives RMSprop in the paper's sense (Adam with β₁ = 0,
bias-corrected); small τ makes the step larger than Adam's along directions whose v̂ > τ.

**Noise-scaled gradients** (:func:`noise_scaled_gradient`, the same paper's Sec. 7): the
full-batch gradient plus α times the minibatch noise, α = 0 being GD and α = 1 SGD exactly; and
the papers' exponential step-size grids (:func:`exponential_grid`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray, PyTree

from eoslib.engine import hessian


def _capped_root(nu_hat: PyTree, tau, eps: float) -> PyTree:
    """Clipped-Ada's preconditioner ``√min(v̂, τ) + ε``, the one formula the step and the probes share."""
    return jax.tree.map(lambda v: jnp.sqrt(jnp.minimum(v, tau)) + eps, nu_hat)


class ClippedAdamState(NamedTuple):
    """Adam's state: ``count`` (int32 scalar), first moment ``mu`` and second moment ``nu``
    (PyTrees like the parameters; ``nu`` is never capped)."""

    count: Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_clipped_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                          tau: float | Array = float("inf")) -> optax.GradientTransformation:
    """Adam's rescaling with the bias-corrected second moment capped at ``tau`` (see module doc).

    ``tau`` may be a traced hyperparameter (a τ sweep under ``vmap``); a concrete one is checked."""
    if isinstance(tau, (int, float)) and not tau > 0:
        raise ValueError(f"tau={tau!r} must be positive (inf: no clipping)")

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return ClippedAdamState(jnp.zeros([], jnp.int32), zeros, optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        mu_hat = optax.tree.bias_correction(mu, b1, count)
        nu_hat = optax.tree.bias_correction(nu, b2, count)
        updates = jax.tree.map(lambda m, p: m / p, mu_hat, _capped_root(nu_hat, tau, eps))
        return updates, ClippedAdamState(count, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def clipped_adam(learning_rate: optax.ScalarOrSchedule, tau: float | Array = float("inf"), b1: float = 0.9,
                 b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """Clipped-Ada on Adam: ``clipped_adam(η, tau=∞)`` is ``optax.adam(η)``."""
    return optax.chain(scale_by_clipped_adam(b1, b2, eps, tau), optax.scale_by_learning_rate(learning_rate))


def clipped_rmsprop(learning_rate: optax.ScalarOrSchedule, tau: float | Array = float("inf"), b2: float = 0.999,
                    eps: float = 1e-8) -> optax.GradientTransformation:
    """Clipped-Ada on RMSprop, which the paper takes as Adam with β₁ = 0 (bias-corrected)."""
    return clipped_adam(learning_rate, tau, b1=0.0, b2=b2, eps=eps)


def bias_corrected_nu(state: ClippedAdamState, b2: float = 0.999) -> PyTree:
    """Adam's bias-corrected second moment ``v̂ = v / (1 − β₂ᵗ)`` (uncapped) from a Clipped-Ada
    state: that of :func:`clipped_adam` (a chain) or of :func:`scale_by_clipped_adam`."""
    inner = state[0] if isinstance(state, tuple) and not isinstance(state, ClippedAdamState) else state
    return optax.tree.bias_correction(inner.nu, b2, jnp.maximum(inner.count, 1))


def preconditioner(state: ClippedAdamState, tau: float | Array = float("inf"), b2: float = 0.999,
                   eps: float = 1e-8) -> PyTree:
    """The diagonal P with ``step = η P⁻¹ m̂``: ``√min(v̂, τ) + ε`` from a Clipped-Ada state.

    Pass it to :func:`eoslib.engine.hessian.preconditioned_sharpness` for λ₁(P^{-1/2} H P^{-1/2}).
    Accepts the state of :func:`clipped_adam` (a chain) or of :func:`scale_by_clipped_adam`.
    """
    return _capped_root(bias_corrected_nu(state, b2), tau, eps)


def step_decay(learning_rate: float | Array, at: float | Array, factor: float | Array | None = None, *,
               to: float | Array | None = None) -> optax.Schedule:
    """η for the updates ``count < at``, then ``factor · η`` (or ``to``): one drop of the step size,
    e.g. the η_low = 0.2η intervention (``factor=0.2``) or a reduction to a fixed η (``to=0.01``).

    Give exactly one of ``factor`` and ``to``. Every argument may be a traced hyperparameter, so
    the schedule can be ``vmap``-ped over the switch step, the step size or the factor (a sweep in
    :func:`eoslib.engine.train.run` passes them through ``hparams``); ``at`` is compared with the
    update count as a number, so it may be a float, and ``at = inf`` never drops. ``count`` is
    optax's update count (0 for the first update): a run that continues from step ``t0`` drops at
    its own step ``at - t0``. Concrete arguments are checked: ``η > 0``, ``at ≥ 0``, ``factor ≥ 0``,
    ``to ≥ 0``.
    """
    if (factor is None) == (to is None):
        raise ValueError(f"step_decay needs exactly one of factor= and to= (got factor={factor!r}, to={to!r})")
    for name, value, ok, allowed in (("learning_rate", learning_rate, lambda v: v > 0, "> 0"),
                                     ("at", at, lambda v: v >= 0, ">= 0 (inf: never)"),
                                     ("factor", factor, lambda v: v >= 0, ">= 0"),
                                     ("to", to, lambda v: v >= 0, ">= 0")):
        if isinstance(value, (int, float)) and not ok(value):
            raise ValueError(f"step_decay: {name}={value!r} is not allowed; allowed: {allowed}")

    def schedule(count):
        after = to if to is not None else factor * learning_rate
        return jnp.where(count < at, learning_rate, after)

    return schedule


def linear_warmup(learning_rate: float, warmup_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to η over ``warmup_steps``, then constant."""
    return optax.linear_schedule(0.0, learning_rate, warmup_steps)


def warmup(schedule: optax.ScalarOrSchedule, steps: int | Array) -> optax.Schedule:
    """``schedule`` with a linear warm-up over its first ``steps`` updates: η_t =
    min(1, (t + 1)/steps) · schedule(t), so update 0 already moves (η/steps) and update
    ``steps − 1`` on is the schedule's own (e.g. the papers' two-epoch warm-up: 2 updates for
    full-batch GD, 2·N/B for SGD). It multiplies any schedule, so a later drop
    (:func:`step_decay`) is kept. ``steps = 0`` is no warm-up; ``steps`` may be traced (a swept
    hyperparameter). Unlike :func:`linear_warmup`, no update has step size 0.

    Raises:
      ValueError: a concrete ``steps`` < 0.
    """
    if isinstance(steps, (int, float, np.integer, np.floating)) and not steps >= 0:
        raise ValueError(f"warmup: steps={steps!r} is not allowed; allowed: >= 0 (0: none)")

    def scheduled(count):
        base = schedule(count) if callable(schedule) else jnp.asarray(schedule)
        s = jnp.asarray(steps)
        return base * jnp.where(s > 0, jnp.minimum(1.0, (count + 1) / jnp.maximum(s, 1)), 1.0)

    return scheduled


def current_learning_rate(schedule: optax.ScalarOrSchedule, step: Array) -> Array:
    """η at ``step`` for a constant or a schedule (for the 2/η line of a sharpness plot)."""
    return schedule(step) if callable(schedule) else jnp.asarray(schedule)


class DecayOffSharpnessGradientState(NamedTuple):
    """State of :func:`decay_off_sharpness_gradient`: the flat top-eigenvector estimate ``v``
    (warm start of the next refresh), the unit sharpness gradient ``n`` in use, the alignment
    ``c_y = ⟨θ, ∇S⟩`` at the last refresh, and the update ``count``."""

    v: Array
    n: Array
    c_y: Array
    count: Array


def decay_off_sharpness_gradient(loss_fn, gamma, *, power_iters: int = 3, every: int = 1, seed: int = 0
                                 ) -> optax.GradientTransformationExtraArgs:
    """Add coupled weight decay ``γθ`` to the gradient *with its component along ∇S removed*.

    An intervention on the alignment mechanism of Kolic et al. (2026): the decay step
    ``−ηγθ`` changes the sharpness by ``−ηγ⟨θ, ∇S⟩``; projecting the decay onto the orthogonal
    complement of ``n = ∇S/‖∇S‖`` removes exactly that channel, while shrinking every other
    direction as usual. Chain it before the step size: ``optax.chain(this, optax.sgd(η))`` with
    an objective that does **not** include ``γ/2‖θ‖²``.

    ``loss_fn(params, batch)`` is the loss without decay; ``update`` must be called with the
    extra argument ``batch`` (as :func:`eoslib.engine.train.run` does: the full data for GD, the
    minibatch for SGD), so the data are traced arguments rather than constants of the program.
    Every ``every`` updates (from the first) the top Hessian eigenvector of that loss is refreshed
    by ``power_iters`` warm-started power iterations (largest ``|λ|``: assumes the top of the spectrum
    dominates its negative end, as for ½MSE near the edge) and ∇S by one gradient of an HVP; a
    refresh costs about ``power_iters + 3`` gradients, and ``n`` is held fixed in between
    (``every > 1`` trades exactness for cost; under ``vmap`` the refresh runs every step anyway).
    ``gamma`` may be a traced hyperparameter.
    """
    if not isinstance(power_iters, int) or power_iters < 1:
        raise ValueError(f"power_iters={power_iters!r} must be a positive integer")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every={every!r} must be a positive integer")

    def init_fn(params):
        flat, _ = ravel_pytree(params)
        v = jax.random.normal(jax.random.key(seed), flat.shape, flat.dtype)
        return DecayOffSharpnessGradientState(v / jnp.linalg.norm(v), jnp.zeros_like(flat),
                                              jnp.zeros((), flat.dtype), jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, *, batch=None, **extra_args):
        if params is None or batch is None:
            raise ValueError("decay_off_sharpness_gradient needs params and batch=... in update()")
        flat, unravel = ravel_pytree(params)
        loss_at = lambda p: loss_fn(p, batch)

        def refresh(_):
            matvec, _ = hessian.flat_hvp(loss_at, params)

            def power(v, _):
                w = matvec(v)
                return w / jnp.linalg.norm(w), None

            v, _ = jax.lax.scan(power, state.v, None, length=power_iters)
            grad_s, _ = ravel_pytree(hessian.sharpness_gradient(loss_at, params, v))
            return v, grad_s / jnp.linalg.norm(grad_s), jnp.vdot(flat, grad_s)

        v, n, c_y = jax.lax.cond(state.count % every == 0, refresh, lambda _: (state.v, state.n, state.c_y), None)
        decay = gamma * (flat - jnp.vdot(flat, n) * n)
        updates = jax.tree.map(jnp.add, updates, unravel(decay))
        return updates, DecayOffSharpnessGradientState(v, n, c_y, state.count + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class NoiseScaledState(NamedTuple):
    """State of :func:`noise_scaled_gradient`: the update count (it sets the minibatch)."""

    count: Array


def noise_scaled_gradient(loss_fn: Callable[[PyTree, Array, Array], Array], alpha: float | Array,
                          batch_size: int, *, key: PRNGKeyArray
                          ) -> optax.GradientTransformationExtraArgs:
    """The flatness-bias paper's noise-scale update (its Sec. 7.1, Eq. 8): the full-batch gradient
    plus ``alpha`` times the minibatch noise,

        g = (1 − α) ∇L_full(θ) + α ∇L_B(θ) = ∇L_full + α (∇L_B − ∇L_full),

    so that ``alpha = 0`` is full-batch GD and ``alpha = 1`` minibatch SGD, both **exactly** (the
    convex-combination form adds an exact zero at either end). Chain it before ``optax.sgd``'s
    scaling, e.g. ``optax.chain(noise_scaled_gradient(...), optax.sgd(eta))``.

    It is meant for a *full-batch* run of :func:`eoslib.engine.train.run` (``batch_size=None``):
    the incoming ``updates`` are the full-batch gradient, ``batch=(x, y)`` is all the training
    data, and the transformation draws the minibatch itself, with the sampling of
    :func:`eoslib.engine.train.run`'s SGD (a fresh permutation of the n examples per epoch from
    ``fold_in(key, epoch)``, consecutive slices of ``batch_size``; the last ``n mod batch_size``
    examples of a permutation are unused). With the ``key`` given to ``train.run`` it therefore
    draws the same minibatches as ``train.run(..., batch_size=batch_size)``.

    Args:
      loss_fn: ``(params, x, y) -> scalar`` the training loss on a batch.
      alpha: the noise scale α ≥ 0 (may be a traced hyperparameter).
      batch_size: minibatch size B, ``1 ≤ B ≤ n``.
      key: the PRNG key given to :func:`eoslib.engine.train.run` (its minibatch order is
        drawn from ``jax.random.split(key)[1]``, as ``train.run``'s own SGD does).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    order_key = jax.random.split(key)[1]  # the half of its key train.run shuffles minibatches with
    if isinstance(alpha, (int, float)) and not alpha >= 0:
        raise ValueError(f"alpha={alpha!r} is not allowed; the noise scale must be >= 0")

    def init_fn(params):
        del params
        return NoiseScaledState(jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, *, batch=None, **extra_args):
        del extra_args
        if params is None or batch is None:
            raise ValueError("noise_scaled_gradient needs params and batch=(x, y) (all the "
                             "training data) in update(); run it through eoslib.engine.train.run")
        x, y = batch
        n = x.shape[0]
        if batch_size > n:
            raise ValueError(f"batch_size={batch_size} exceeds the {n} examples")
        per_epoch = n // batch_size
        epoch, within = state.count // per_epoch, state.count % per_epoch
        perm = jax.random.permutation(jax.random.fold_in(order_key, epoch), n)
        idx = jax.lax.dynamic_slice(perm, (within * batch_size,), (batch_size,))
        minibatch = jax.grad(loss_fn)(params, x[idx], y[idx])
        a = jnp.asarray(alpha)
        mixed = jax.tree.map(lambda g, gb: (1 - a).astype(g.dtype) * g + a.astype(g.dtype) * gb,
                             updates, minibatch)
        return mixed, NoiseScaledState(state.count + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def exponential_grid(start: float, factor: float, count: int) -> np.ndarray:
    """``count`` step sizes ``start · factorᵏ``, k = 0 … count−1 (the papers' η grids: fMNIST from
    0.01 by ×1.1, CIFAR-10 5k from 0.0005 by ×1.6). Raises for ``start ≤ 0``, ``factor ≤ 1`` or
    ``count < 1``."""
    for name, value, ok, allowed in (("start", start, start > 0, "> 0"),
                                     ("factor", factor, factor > 1, "> 1"),
                                     ("count", count, count >= 1, "an int >= 1")):
        if not ok:
            raise ValueError(f"exponential_grid: {name}={value!r} is not allowed; allowed: {allowed}")
    return start * float(factor) ** np.arange(int(count))
