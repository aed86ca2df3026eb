"""Adaptive optimizers seen as preconditioned GD: their stability thresholds, the regimes of the
Clipped-Ada cap τ, an in-loop probe of the preconditioned sharpness, and a 2-D toy.

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

Regimes of τ, read off the bias-corrected second moment v̂ (:func:`clipped_fraction`): τ above
every v̂ is plain Adam (no coordinate capped); τ between the smallest and largest v̂ caps some
coordinates (mild suppression); τ below every v̂ caps all of them, ``P = √τ + ε`` everywhere, and
Clipped-Ada is momentum GD with step ``η/√τ`` (GD-like; the smaller τ, the larger that step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree, Scalar

from eoslib.engine import hessian, losses, optim


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


def clipped_fraction(nu_hat: PyTree, tau: float | Array) -> Scalar:
    """The fraction of coordinates whose bias-corrected second moment ``v̂`` exceeds the cap τ
    (0: plain Adam; 1: every coordinate capped, the GD-like regime)."""
    flat, _ = ravel_pytree(nu_hat)
    return jnp.mean(flat > tau)


def precond_probe(model_loss: str = "half_mse", *, tau: float = float("inf"), b2: float = 0.999,
                  eps: float = 1e-8, tol: float = 1e-3, max_restarts: int = 5):
    """A ``probe_fn`` for :func:`eoslib.engine.train.run` with a Clipped-Ada / Adam / RMSprop optimizer.

    Records ``precond_sharpness`` = λ₁(P^{-1/2} H P^{-1/2}) of the ``model_loss`` on all the
    training data, with ``P = √min(v̂, τ) + ε`` from the optimizer state at the probe (the
    preconditioner of the next step, up to that step's own update of v); ``clipped_fraction``;
    and ``nu_hat_median``. τ is ``hp["tau"]`` when the run sweeps it, else ``tau``; ``b2`` and
    ``eps`` must match the optimizer's. The solve is warm-started from ``P^{1/2} u`` (u: the
    probe's top Hessian eigenvector) and runs at ``"highest"`` matmul precision.
    """
    loss_on = losses.of_model(model_loss)

    def probe_fn(params, opt_state, eigpairs, hp, data):
        x, y = data
        cap = hp.get("tau", tau)
        nu_hat = optim.bias_corrected_nu(opt_state, b2)
        precond = optim.preconditioner(opt_state, cap, b2, eps)
        start = jnp.sqrt(ravel_pytree(precond)[0]) * eigpairs.vectors[:, 0]
        lam = hessian.preconditioned_sharpness(loss_on(x, y), params, precond,
                                               v0=start / jnp.linalg.norm(start), tol=tol,
                                               max_restarts=max_restarts)
        return dict(precond_sharpness=lam, clipped_fraction=clipped_fraction(nu_hat, cap),
                    nu_hat_median=jnp.median(ravel_pytree(nu_hat)[0]))

    return probe_fn


def toy_loss(w: Float[Array, " 2"], sharp: float = 20.0, flat: float = 1.0) -> Scalar:
    """The 2-D toy of the book's Clipped-Ada chapter: ``sharp · log cosh(w₀) + ½ flat · w₁²``.

    Its Hessian at the minimum is ``diag(sharp, flat)``; the curvature along w₀,
    ``sharp · sech²(w₀)``, falls away from the valley floor, so GD with ``η · sharp > 2`` does not
    diverge but settles into a bounded period-2 oscillation across the valley (an instability
    that persists), while a small enough step converges.
    """
    return sharp * jnp.log(jnp.cosh(w[0])) + 0.5 * flat * w[1] ** 2


def trajectory(loss_fn, optimizer, w0: Float[Array, " d"], steps: int) -> Float[Array, "steps+1 d"]:
    """The iterates ``w_0, …, w_steps`` of ``optimizer`` (an optax transformation) on a loss of a
    flat parameter vector, as one ``lax.scan``; row t is ``w_t``. For low-dimensional toys, where
    the whole path is the object of study (:func:`eoslib.engine.train.run` records losses, not paths)."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be ≥ 1")

    def step(carry, _):
        w, state = carry
        updates, state = optimizer.update(jax.grad(loss_fn)(w), state, w)
        w = w + updates
        return (w, state), w

    _, path = jax.lax.scan(step, (w0, optimizer.init(w0)), None, length=steps)
    return jnp.concatenate([w0[None], path])
