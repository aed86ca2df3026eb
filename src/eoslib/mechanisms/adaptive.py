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
Which coordinates a cap binds on is τ against v̂; whether it makes a run *unstable* is measured:
:func:`trajectory` records λ_eff along a toy's path (or at a fixed point, to ask whether a
settled run rests on a stable minimum), and the in-loop probe records it on a network.

:func:`early_stop_index` stops a run post hoc by the paper's rule (the first reversal in validation
loss after its global minimum). :func:`clipping_gains` (every step size) and :func:`clipping_gain`
(the largest) read a generalization grid (η × τ × seed): the cap chosen on validation
data, its gain over no cap on test data, and the seed range to compare the gain with.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Scalar

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
      lam_eff: ``(steps + 1,)`` the effective curvature ``λ₁(P^{-1/2} H(w_t) P^{-1/2})`` with the
        preconditioner P of the step taken from ``w_t`` (P = 1: the sharpness of H); NaN at and
        after ``diverged_at``.
    """

    w: Float[Array, "T d"]
    loss: Float[Array, " T"]
    diverged_at: Int[Array, ""]
    lam_eff: Float[Array, " T"]


def trajectory(loss_fn, optimizer, w0: Float[Array, " d"], steps: int, *, max_loss: float = 1e8,
               preconditioner=None, hessian_at: Float[Array, " d"] | None = None) -> Trajectory:
    """The iterates ``w_0, …, w_steps`` of ``optimizer`` (an optax transformation) on a loss of a
    flat parameter vector, as one ``lax.scan``. For low-dimensional toys, where the whole path is
    the object of study (:func:`eoslib.engine.train.run` records losses, not paths).

    ``preconditioner``: ``None`` (GD: P = 1) or a function of the optimizer state after the
    step's moment update, returning the diagonal ``P`` (shape ``(d,)``) by which that step divides
    the (averaged) gradient, e.g. ``lambda s: optim.preconditioner(s, tau, b2, eps)``; it gives
    the recorded ``lam_eff`` (dense Hessian: meant for a few coordinates). ``hessian_at``: the
    point whose Hessian enters ``lam_eff`` (default: the iterate ``w_t``); give a minimum ``w*`` to
    ask whether it is a stable fixed point under the current preconditioner (``η·lam_eff`` against
    the optimizer's edge), which the curvature along an orbit that avoids it does not say.

    Divergence as everywhere in eoslib (:mod:`eoslib.engine.divergence`): the first step whose
    loss is non-finite or above ``max_loss`` is ``diverged_at``; the iterate stops there and that
    row and later ones are NaN.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if preconditioner is not None and not callable(preconditioner):
        raise TypeError(f"preconditioner={preconditioner!r} must be None or a function of the "
                        "optimizer state")
    max_loss = divergence.check_max("max_loss", max_loss)
    w0 = jnp.asarray(w0)
    if hessian_at is not None and jnp.shape(hessian_at) != w0.shape:
        raise ValueError(f"hessian_at has shape {jnp.shape(hessian_at)}; it must be a point like "
                         f"w0, shape {w0.shape}")

    def curvature(w, new_state):
        h = jax.hessian(loss_fn)(w if hessian_at is None else jnp.asarray(hessian_at, w0.dtype))
        if preconditioner is None:
            return jnp.linalg.eigvalsh(h)[-1]
        root = 1 / jnp.sqrt(jnp.reshape(preconditioner(new_state), (-1,)))
        return jnp.linalg.eigvalsh(root[:, None] * h * root[None, :])[-1]

    def step(carry, t):
        w, state, diverged_at = carry
        loss, grad = jax.value_and_grad(loss_fn)(w)
        diverged_at = divergence.update(diverged_at, t, loss, max_loss)
        alive = divergence.alive(diverged_at)
        updates, new_state = optimizer.update(grad, state, w)
        lam = curvature(w, new_state)
        new = divergence.hold(alive, (w + updates, new_state), (w, state))
        return (*new, diverged_at), divergence.mask(alive, (w, loss, lam))

    init = (w0, optimizer.init(w0), divergence.start())
    (_, _, diverged_at), (path, losses, lam_eff) = jax.lax.scan(
        step, init, jnp.arange(steps + 1, dtype=jnp.int32))
    return Trajectory(path, losses, diverged_at, lam_eff)


def early_stop_index(val_loss: Float[Array, "... E"]) -> Int[Array, "..."]:
    """The evaluation at which a run is stopped post hoc, by Wang & Roberts' rule (App. K.3:
    "the first reversal in validation loss after the global minimum"): the first evaluation
    after the global minimum of the validation loss at which the loss has risen again, i.e. the
    one right after the minimum; the last evaluation when the minimum is the last one (the loss
    never reversed). Non-finite entries (after a divergence) are ignored; a run with no finite
    entry stops at 0. Works on the last axis of any array of validation-loss curves.
    """
    loss = np.asarray(val_loss, float)
    if loss.ndim == 0 or loss.shape[-1] == 0:
        raise ValueError(f"val_loss of shape {loss.shape} must have a non-empty last axis")
    finite = np.where(np.isfinite(loss), loss, np.inf)
    best = np.argmin(finite, axis=-1)
    after = np.minimum(best + 1, loss.shape[-1] - 1)
    rose = np.take_along_axis(finite, after[..., None], -1)[..., 0] > \
        np.take_along_axis(finite, best[..., None], -1)[..., 0]
    return np.where(rose & np.isfinite(np.take_along_axis(loss, after[..., None], -1)[..., 0]),
                    after, best)


class ClippingGain(NamedTuple):
    """What :func:`clipping_gain` reads off a grid of runs (NaN where nothing was measured).

    Attributes:
      eta: the step size judged: the largest whose uncapped runs all trained.
      tau: the finite cap with the best mean validation accuracy at that step size.
      gain: mean test accuracy at ``tau`` minus mean test accuracy without a cap (over seeds).
      spread: the larger of the two seed ranges (max − min over seeds) of those test accuracies.
      capped_diverged: the fraction of the capped runs (every finite τ, every seed) at that step
        size that diverged.
    """

    eta: float
    tau: float
    gain: float
    spread: float
    capped_diverged: float = float("nan")


def clipping_gains(val_acc: Float[Array, "E T S"], test_acc: Float[Array, "E T S"],
                   diverged: Bool[Array, "E T S"], etas, taus, *, chance: float) -> list[ClippingGain]:
    """:func:`clipping_gain` at **every** step size of the grid whose uncapped runs trained for
    every seed, in the order of ``etas`` (a step size whose baseline diverged has nothing to
    improve on and is left out); each with the fraction of its capped runs that diverged.

    Raises:
      ValueError: as :func:`clipping_gain`.
    """
    val, test = np.asarray(val_acc, float), np.asarray(test_acc, float)
    div = np.asarray(diverged, bool)
    taus = np.asarray(taus, float)
    shape = (len(etas), len(taus))
    if val.ndim != 3 or val.shape[:2] != shape or test.shape != val.shape or div.shape != val.shape:
        raise ValueError(f"val_acc {val.shape}, test_acc {test.shape} and diverged {div.shape} "
                         f"must all be (len(etas), len(taus), seeds) = {shape + ('S',)}")
    if np.isinf(taus).sum() != 1 or np.isfinite(taus).sum() < 1:
        raise ValueError(f"taus={taus.tolist()} must hold inf (no cap) once and a finite cap")
    val, test = np.where(div, chance, val), np.where(div, chance, test)
    base = int(np.flatnonzero(np.isinf(taus))[0])
    finite = np.flatnonzero(np.isfinite(taus))
    out = []
    for e in np.flatnonzero(~div[:, base].any(axis=1)):
        t = int(finite[np.argmax(val[e, finite].mean(axis=1))])
        gain = float(test[e, t].mean() - test[e, base].mean())
        spread = float(max(np.ptp(test[e, t]), np.ptp(test[e, base])))
        out.append(ClippingGain(float(etas[e]), float(taus[t]), gain, spread,
                                float(div[e, finite].mean())))
    return out


def clipping_gain(val_acc: Float[Array, "E T S"], test_acc: Float[Array, "E T S"],
                  diverged: Bool[Array, "E T S"], etas, taus, *, chance: float) -> ClippingGain:
    """Choose the cap τ on validation data and report its gain over no cap on test data.

    The grid is ``etas × taus × seeds`` (axes in that order); ``taus`` holds ``inf`` (no cap,
    the baseline) once. The step size judged is the largest whose uncapped runs trained for
    every seed (the "large η" of the claim; a baseline that diverged has nothing to improve on).
    A diverged run scores ``chance`` on both splits: a cap that makes runs diverge loses. The
    cap is the finite τ with the best mean validation accuracy there; its test gain over the
    baseline is compared by the caller with ``spread``. All NaN when no step size qualifies.

    Raises:
      ValueError: shapes that do not match ``(len(etas), len(taus), seeds)``, or ``taus``
        without exactly one ``inf``, or without a finite cap.
    """
    gains = clipping_gains(val_acc, test_acc, diverged, etas, taus, chance=chance)
    if not gains:
        nan = float("nan")
        return ClippingGain(nan, nan, nan, nan)
    return max(gains, key=lambda g: g.eta)
