"""Adaptive optimizers seen as preconditioned GD: their stability thresholds, the regimes of the
Clipped-Ada cap τ, and a 2-D toy (the in-loop probe of the preconditioned sharpness is
:func:`eoslib.engine.probes.preconditioned_sharpness`).

Adam / RMSprop / Clipped-Ada (:mod:`eoslib.engine.optim`) step ``θ ← θ − η P⁻¹ m̂`` with the diagonal
preconditioner ``P = √min(v̂, τ) + ε``. With P frozen, on the quadratic model this is momentum GD
on the *preconditioned Hessian* ``P^{-1/2} H P^{-1/2}``; its largest eigenvalue ``λ_eff`` is the
**preconditioned sharpness** (:func:`eoslib.engine.hessian.preconditioned_sharpness`). Two thresholds
for it are compared in the book:

- :func:`gd_edge` ``= 2/η`` — the criterion of Wang & Roberts (App. J, Eq. 39 as we reconstruct
  it: ``η λ_eff < 2``), which does not involve the momentum β₁;
- :func:`adam_edge` ``= (2 + 2β₁) / ((1 − β₁) η)`` — Cohen et al. (2022), the stability limit of
  GD with EMA momentum ``m ← β₁m + (1 − β₁)g`` (38/η at β₁ = 0.9). For β₁ = 0 (RMSprop) the
  two coincide.

Regimes of τ, read off the bias-corrected second moment v̂ (:func:`eoslib.engine.probes.clipped_fraction`): τ above
every v̂ is plain Adam (no coordinate capped); τ between the smallest and largest v̂ caps some
coordinates (mild suppression); τ below every v̂ caps all of them, ``P = √τ + ε`` everywhere, and
Clipped-Ada is momentum GD with step ``η/√τ`` (GD-like; the smaller τ, the larger that step).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Scalar

from eoslib.engine import divergence


def gd_edge(eta: float) -> float:
    """``2/η``: the largest stable λ_eff for a step without momentum (the paper's criterion)."""
    if not eta > 0:
        raise ValueError(f"eta={eta!r} must be positive")
    return 2.0 / eta


def adam_edge(eta: float, b1: float) -> float:
    """``(2 + 2β₁) / ((1 − β₁) η)``: Cohen et al.'s adaptive edge for EMA momentum β₁ ∈ [0, 1)."""
    if not 0 <= b1 < 1:
        raise ValueError(f"b1={b1!r} must be in [0, 1)")
    return gd_edge(eta) * (1 + b1) / (1 - b1)


def toy_loss(w: Float[Array, " 2"], sharp: float = 20.0, flat: float = 1.0) -> Scalar:
    """The 2-D toy of the book's Clipped-Ada chapter: ``sharp · log cosh(w₀) + ½ flat · w₁²``.

    Its Hessian at the minimum is ``diag(sharp, flat)``; the curvature along w₀,
    ``sharp · sech²(w₀)``, falls away from the valley floor, so GD with ``η · sharp > 2`` does not
    diverge but settles into a bounded period-2 oscillation across the valley (an instability
    that persists), while a small enough step converges.
    """
    return sharp * jnp.log(jnp.cosh(w[0])) + 0.5 * flat * w[1] ** 2


class Trajectory(NamedTuple):
    """The iterates of :func:`trajectory`; rows at and after ``diverged_at`` are NaN.

    Attributes:
      w: ``(steps + 1, d)`` iterates; row t is ``w_t``.
      loss: ``(steps + 1,)`` ``loss_fn(w_t)``.
      diverged_at: first step whose loss was non-finite or above ``max_loss``; −1 if none.
    """

    w: Float[Array, "T d"]
    loss: Float[Array, " T"]
    diverged_at: Int[Array, ""]


def trajectory(loss_fn, optimizer, w0: Float[Array, " d"], steps: int, *, max_loss: float = 1e8) -> Trajectory:
    """The iterates ``w_0, …, w_steps`` of ``optimizer`` (an optax transformation) on a loss of a
    flat parameter vector, as one ``lax.scan``. For low-dimensional toys, where the whole path is
    the object of study (:func:`eoslib.engine.train.run` records losses, not paths).

    Divergence as everywhere in eoslib (:mod:`eoslib.engine.divergence`): the first step whose
    loss is non-finite or above ``max_loss`` is ``diverged_at``; the iterate stops there and that
    row and later ones are NaN.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    max_loss = divergence.check_max("max_loss", max_loss)
    w0 = jnp.asarray(w0)

    def step(carry, t):
        w, state, diverged_at = carry
        loss, grad = jax.value_and_grad(loss_fn)(w)
        diverged_at = divergence.update(diverged_at, t, loss, max_loss)
        alive = divergence.alive(diverged_at)
        updates, new_state = optimizer.update(grad, state, w)
        new = divergence.hold(alive, (w + updates, new_state), (w, state))
        return (*new, diverged_at), divergence.mask(alive, (w, loss))

    init = (w0, optimizer.init(w0), divergence.start())
    (_, _, diverged_at), (path, losses) = jax.lax.scan(step, init, jnp.arange(steps + 1, dtype=jnp.int32))
    return Trajectory(path, losses, diverged_at)
