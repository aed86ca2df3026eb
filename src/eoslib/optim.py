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
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PyTree


class ClippedAdamState(NamedTuple):
    """Adam's state: ``count`` (int32 scalar), first moment ``mu`` and second moment ``nu``
    (PyTrees like the parameters; ``nu`` is never capped)."""

    count: Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_clipped_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                          tau: float = float("inf")) -> optax.GradientTransformation:
    """Adam's rescaling with the bias-corrected second moment capped at ``tau`` (see module doc)."""
    if not tau > 0:
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
        updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(jnp.minimum(v, tau)) + eps), mu_hat, nu_hat)
        return updates, ClippedAdamState(count, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def clipped_adam(learning_rate: optax.ScalarOrSchedule, tau: float = float("inf"), b1: float = 0.9,
                 b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """Clipped-Ada on Adam: ``clipped_adam(η, tau=∞)`` is ``optax.adam(η)``."""
    return optax.chain(scale_by_clipped_adam(b1, b2, eps, tau), optax.scale_by_learning_rate(learning_rate))


def clipped_rmsprop(learning_rate: optax.ScalarOrSchedule, tau: float = float("inf"), b2: float = 0.999,
                    eps: float = 1e-8) -> optax.GradientTransformation:
    """Clipped-Ada on RMSprop, which the paper takes as Adam with β₁ = 0 (bias-corrected)."""
    return clipped_adam(learning_rate, tau, b1=0.0, b2=b2, eps=eps)


def preconditioner(state: ClippedAdamState, tau: float = float("inf"), b2: float = 0.999,
                   eps: float = 1e-8) -> PyTree:
    """The diagonal P with ``step = η P⁻¹ m̂``: ``√min(v̂, τ) + ε`` from a Clipped-Ada state.

    Pass it to :func:`eoslib.hessian.preconditioned_sharpness` for λ₁(P^{-1/2} H P^{-1/2}).
    Accepts the state of :func:`clipped_adam` (a chain) or of :func:`scale_by_clipped_adam`.
    """
    inner = state[0] if isinstance(state, tuple) and not isinstance(state, ClippedAdamState) else state
    count = jnp.maximum(inner.count, 1)
    nu_hat = optax.tree.bias_correction(inner.nu, b2, count)
    return jax.tree.map(lambda v: jnp.sqrt(jnp.minimum(v, tau)) + eps, nu_hat)


def step_decay(learning_rate: float, at: int, factor: float) -> optax.Schedule:
    """η until step ``at``, then ``factor · η`` (e.g. the η_low = 0.2η intervention)."""
    return optax.piecewise_constant_schedule(learning_rate, {int(at): float(factor)})


def linear_warmup(learning_rate: float, warmup_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to η over ``warmup_steps``, then constant."""
    return optax.linear_schedule(0.0, learning_rate, warmup_steps)


def current_learning_rate(schedule: optax.ScalarOrSchedule, step: Array) -> Array:
    """η at ``step`` for a constant or a schedule (for the 2/η line of a sharpness plot)."""
    return schedule(step) if callable(schedule) else jnp.asarray(schedule)
