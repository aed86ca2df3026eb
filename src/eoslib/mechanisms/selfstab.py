"""Self-stabilization (Damian, Nichani & Lee 2023): the stable set M, the projection onto it,
and the (x, y) coordinates of GD relative to the constrained trajectory.

Definitions (see the book's chapter for their derivation): for full-batch GD on ``L`` with step
η, the sharpness ``S(θ) = λ₁(∇²L(θ))`` with unit top eigenvector ``u(θ)``, and the stable set

    M = {θ : S(θ) ≤ 2/η  and  ∇L(θ)·u(θ) = 0}.

:func:`project` maps θ onto M by alternating two first-order (Newton) corrections until both
constraints hold to tolerance (our choice of projection, as in the project's notes; the paper
defines the projection abstractly):

- along u, ``θ ← θ − (∇L·u / S) u`` zeroes the gradient's component along u (``∂(∇L·u)/∂u = S``);
- where ``S > 2/η``, along ∇S, ``θ ← θ − ((S − 2/η)/‖∇S‖²) ∇S`` brings S down to 2/η.

With θ† the constrained trajectory (projected GD) and ``v = θ − θ†``, the local coordinates are
``x = u·v`` and ``y = ∇S·v`` with u, ∇S at θ† (:func:`coordinates`).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import diffrax
import numpy as np
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from eoslib.engine import hessian


class Projection(NamedTuple):
    """Result of :func:`project`.

    Attributes:
      params: the projected parameters (a PyTree like the input).
      sharpness: S at the projected point.
      grad_along_u: ``∇L·u`` at the projected point.
      vector: the flat unit top eigenvector u there (``ravel_pytree`` order).
      iterations: correction rounds used (scalar int).
      converged: whether both constraints met the tolerances (scalar bool).
      lowered: whether a round lowered S onto the edge (S was above 2/η at its start; scalar
        bool): where the projection acted on the sharpness, not only on ∇L·u.
    """

    params: PyTree
    sharpness: Scalar
    grad_along_u: Scalar
    vector: Float[Array, " n"]
    iterations: Array
    converged: Array
    lowered: Array


def project(loss_fn: Callable[[PyTree], Scalar], params: PyTree, eta: float | Scalar, *,
            v0: Float[Array, " n"], tol: float = 1e-6, max_iters: int = 50, eig_tol: float = 1e-7,
            eig_max_restarts: int = 20, precision: str = "highest") -> Projection:
    """Project ``params`` onto the stable set M of GD with step ``eta`` (module docstring).

    Stops when ``|∇L·u| ≤ tol · max(‖∇L‖, 1e-30)`` and ``S ≤ (2/η)(1 + tol)``, or after
    ``max_iters`` rounds; it always makes at least one round, so a point that already meets the
    tolerances still has its gradient along u removed (θ† ≠ θ unless ``∇L·u = 0``). The first
    eigenpair is warm-started from ``v0``, each later one from the last u; a round costs one
    eigensolve, one gradient and, when S is above the edge, one gradient of an HVP. ``eta`` may be traced (e.g. under ``vmap`` over step sizes).
    """
    if isinstance(eta, (int, float)) and not eta > 0:
        raise ValueError(f"eta={eta!r} must be positive")
    if not 0 < tol < 1:
        raise ValueError(f"tol={tol!r} must be in (0, 1)")
    if not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f"max_iters={max_iters!r} must be a positive integer")
    edge = 2.0 / eta
    flat0, unravel = ravel_pytree(params)

    def measure(flat, v):
        p = unravel(flat)
        pairs = hessian.eigsh(loss_fn, p, 1, v0=v, tol=eig_tol, max_restarts=eig_max_restarts, precision=precision)
        u, s = pairs.vectors[:, 0], pairs.values[0]
        u = jnp.where(jnp.vdot(u, v) < 0, -u, u)  # keep the orientation of the start vector
        return u, s, ravel_pytree(jax.grad(loss_fn)(p))[0]

    def done(u, s, g):
        gu = jnp.vdot(g, u)
        return (jnp.abs(gu) <= tol * jnp.maximum(jnp.linalg.norm(g), 1e-30)) & (s <= edge * (1 + tol))

    def body(carry):
        flat, u, s, g, i, _, lowered = carry
        flat = flat - (jnp.vdot(g, u) / s) * u
        lowered = lowered | (s > edge)

        def lower(flat):
            grad_s = ravel_pytree(hessian.sharpness_gradient(loss_fn, unravel(flat), u))[0]
            return flat - ((s - edge) / jnp.vdot(grad_s, grad_s)) * grad_s

        flat = jax.lax.cond(s > edge, lower, lambda f: f, flat)
        u, s, g = measure(flat, u)
        return flat, u, s, g, i + 1, done(u, s, g), lowered

    u, s, g = measure(flat0, v0)
    # At least one round, even where θ already meets the tolerances: otherwise θ† = θ exactly
    # while GD stays within them, x = u·(θ − θ†) is exactly 0, and x = 0 is a fixed point of
    # the (x, y) recursion (its open-loop prediction from there never leaves 0).
    flat, u, s, g, iters, ok, lowered = jax.lax.while_loop(
        lambda c: (~c[5]) & (c[4] < max_iters), body,
        (flat0, u, s, g, jnp.array(0), jnp.array(False), jnp.array(False)))
    return Projection(unravel(flat), s, jnp.vdot(g, u), u, iters, ok, lowered)


def orthogonal_part(grad_sharpness: Float[Array, " n"], u: Float[Array, " n"]) -> Float[Array, " n"]:
    """``∇S⊥ = ∇S − (∇S·u) u``: the flat ∇S with its component along the unit vector u removed."""
    return grad_sharpness - jnp.vdot(grad_sharpness, u) * u


def coordinates(params: PyTree, dagger: PyTree, u: Float[Array, " n"], grad_sharpness: PyTree
                ) -> tuple[Scalar, Scalar]:
    """``(x, y) = (u·(θ − θ†), ∇S⊥·(θ − θ†))`` with u (flat, unit) and ∇S (a PyTree like
    ``params``) taken at θ†, and ∇S⊥ its part orthogonal to u (:func:`orthogonal_part`)."""
    v = ravel_pytree(params)[0] - ravel_pytree(dagger)[0]
    return jnp.vdot(u, v), jnp.vdot(orthogonal_part(ravel_pytree(grad_sharpness)[0], u), v)


class PairRecord(NamedTuple):
    """Per-step record of :func:`gd_and_constrained` (each field ``(T,)``; row t is at step t).

    Attributes:
      loss: L at the GD iterate θ_t.
      sharpness: S at θ_t.
      loss_dagger: L at the constrained iterate θ†_t.
      sharpness_dagger: S at θ†_t.
      x: the coordinate ``u·(θ_t − θ†_t)`` (u at θ†_t).
      y: the coordinate ``∇S⊥·(θ_t − θ†_t)`` (∇S⊥ at θ†_t: ∇S without its part along u).
      alpha: ``−∇L·∇S`` at θ†_t.
      beta: ``‖∇S⊥‖²`` at θ†_t.
      grad_s_along_u: ``∇S·u`` at θ†_t, the part of ∇S that y leaves out.
      deviation: ``‖θ_t − θ†_t‖``.
      travelled: ``‖θ†_t − θ†_0‖``, how far the constrained trajectory has moved.
      converged: whether the projection that produced θ†_t met its tolerances.
      iterations: correction rounds that projection used.
      alpha_perp: ``−∇L·∇S⊥`` at θ†_t, the α of the predicted dynamics (:func:`predicted_step`).
      second_dagger: λ₂(θ†_t), the second Hessian eigenvalue at θ†_t, on the steps it is checked
        (every ``second_every`` steps, from step 0); NaN on the others.
      pred_started: whether the predicted dynamics run at step t (from the edge step on: the
        first step whose projection lowered S(θ†) onto the edge, ``S(θ†) ≥ (1 − pred_margin)·2/η``
        after a lowering round, so that θ† is on M); before it the prediction's fields below
        hold GD's own displacement.
      pred_loss: ``L(θ†_t + v̂_t)``, the exact loss at the predicted point.
      pred_sharpness: ``S(θ†_t + v̂_t)``, the exact sharpness there (a warm-started eigensolve).
      pred_x: ``u·v̂_t``; pred_y: ``∇S⊥·v̂_t`` (u, ∇S⊥ at θ†_t).
      pred_deviation: ``‖v̂_t‖``, the predicted distance from θ†_t.
    """

    loss: Array
    sharpness: Array
    loss_dagger: Array
    sharpness_dagger: Array
    x: Array
    y: Array
    alpha: Array
    beta: Array
    grad_s_along_u: Array
    deviation: Array
    travelled: Array
    converged: Array
    iterations: Array
    alpha_perp: Array
    second_dagger: Array
    pred_started: Array
    pred_loss: Array
    pred_sharpness: Array
    pred_x: Array
    pred_y: Array
    pred_deviation: Array


def predicted_step(loss_fn: Callable[[PyTree], Scalar], dagger: PyTree, v: Float[Array, " n"],
                   u: Float[Array, " n"], grad_loss: Float[Array, " n"], grad_sharpness: Float[Array, " n"],
                   eta: float | Scalar) -> Float[Array, " n"]:
    """One step of Damian, Nichani & Lee's predicted dynamics of the displacement ``v = θ − θ†``
    in parameter space (one Hessian-vector product at θ†):

        v ← v − η [ H(θ†) v + ½ (x² − 2α/β) ∇S⊥ + x y u ],

    with u, ``∇S⊥ = ∇S − (∇S·u)u``, ``α = −∇L·∇S⊥`` and ``β = ‖∇S⊥‖²`` at θ† (flat vectors:
    ``u`` unit, ``grad_loss`` = ∇L(θ†), ``grad_sharpness`` = ∇S(θ†)), ``x = u·v`` and
    ``y = ∇S⊥·v``. Derivation: GD's update ``θ − η∇L(θ)``, with ∇L expanded to second order
    around θ† (``∇L(θ†) + Hv + ½∇³L[v, v]``, and ``½∇³L[v, v] ≈ ½x²∇S⊥ + xy u`` to leading
    order), minus the constrained step ``θ† − η∇L(θ†)`` and its projection back onto M, which
    removes the sharpening ηα along ∇S⊥ (``+η(α/β)∇S⊥``). With ``H v ≈ S x u`` this reduces to the
    scalar (x, y) model of :func:`predict`; the full update keeps the rest of ``H v``, which that
    model drops. Damian et al.'s code writes ``2α/β`` as δ² with ``δ = √(2α/β)``, which is NaN
    where α < 0; here ``2α/β`` is used as it is (the same wherever α ≥ 0).
    """
    perp = orthogonal_part(grad_sharpness, u)
    alpha, beta = -jnp.vdot(grad_loss, perp), jnp.vdot(perp, perp)
    x, y = jnp.vdot(u, v), jnp.vdot(perp, v)
    flat_dagger, unravel = ravel_pytree(dagger)
    hv = ravel_pytree(hessian.hvp(loss_fn, dagger, unravel(v)))[0]
    return v - eta * (hv + 0.5 * (x**2 - 2 * alpha / beta) * perp + x * y * u)


def gd_and_constrained(loss_fn: Callable[[PyTree], Scalar], params: PyTree, eta: float | Scalar, steps: int, *,
                       v0: Float[Array, " n"], tol: float = 1e-6, max_iters: int = 20, eig_tol: float = 1e-5,
                       record_eig_tol: float = 1e-3, pred_margin: float = 2e-3, second_every: int = 10) -> PairRecord:
    """Full-batch GD from ``params`` and the constrained trajectory (projected GD,
    ``θ†_{t+1} = proj_M(θ†_t − η∇L(θ†_t))``, ``θ†_0 = proj_M(θ_0)``) side by side, as one
    ``lax.scan``.

    Each step costs one projection (one warm-started eigensolve per correction round, usually
    one or two rounds), one gradient of an HVP for ∇S at θ† and one warm-started eigensolve at
    GD's iterate, whose sharpness is only recorded (tolerance ``record_eig_tol``; the eigenvalue
    error is about ``(tol·S)²/gap``). u keeps one orientation along the run, so the sign of x is
    meaningful from step to step. ``eta`` may be traced, so the function can be ``vmap``-ped over
    step sizes (and start points).

    Alongside, the paper's predicted dynamics (:func:`predicted_step`, one more HVP per step):
    from the edge step (the first whose projection lowered S(θ†) onto the edge, ``S(θ†) ≥ (1 −
    pred_margin)·2/η`` after a lowering round) the displacement v̂
    starts at GD's own ``θ − θ†`` and then evolves open-loop; the exact loss and sharpness at
    ``θ† + v̂`` (one more warm-started eigensolve) and ``‖v̂‖`` are recorded. Every
    ``second_every`` steps a top-2 eigensolve at θ† records λ₂(θ†) (Damian et al. stop tracking
    once it is too close to 2/η: the one-direction analysis no longer holds there).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if not isinstance(second_every, int) or second_every < 1:
        raise ValueError(f"second_every={second_every!r} must be a positive integer")
    if not 0 <= pred_margin < 1:
        raise ValueError(f"pred_margin={pred_margin!r} must be in [0, 1)")
    flat0, unravel = ravel_pytree(params)
    proj = functools.partial(project, loss_fn, eta=eta, tol=tol, max_iters=max_iters, eig_tol=eig_tol)
    first = proj(params, v0=v0)
    dagger0 = ravel_pytree(first.params)[0]
    edge = 2.0 / eta
    other = jnp.roll(v0, 1)
    block0 = jnp.stack([v0, other - jnp.vdot(other, v0) / jnp.vdot(v0, v0) * v0], axis=1)

    def second(p_dag, block):
        pairs = hessian.eigsh(loss_fn, p_dag, 2, v0=block, tol=record_eig_tol, max_restarts=10)
        return pairs.values[1], pairs.vectors

    def step(carry, i):
        theta, dagger, u_gd, pr, v_hat, u_hat, started, block = carry
        p_gd, p_dag = unravel(theta), unravel(dagger)
        gd_pairs = hessian.eigsh(loss_fn, p_gd, 1, v0=u_gd, tol=record_eig_tol, max_restarts=10)
        u = pr.vector
        grad_s = hessian.sharpness_gradient(loss_fn, p_dag, u)
        loss_dag, grad_l = jax.value_and_grad(loss_fn)(p_dag)
        alpha = hessian.alpha_beta(grad_l, grad_s)[0]
        flat_gs, flat_gl = ravel_pytree(grad_s)[0], ravel_pytree(grad_l)[0]
        perp = orthogonal_part(flat_gs, u)
        x, y = coordinates(p_gd, p_dag, u, grad_s)
        loss_gd, grad_gd = jax.value_and_grad(loss_fn)(p_gd)
        lam2, block = jax.lax.cond(i % second_every == 0, second,
                                   lambda p, b: (jnp.asarray(jnp.nan, b.dtype), b), p_dag, block)
        # the prediction: GD's own displacement until the edge step, open-loop from there
        # (copied at the edge step itself: the carried v̂ is only a prediction once it has started)
        v_hat = jnp.where(started, v_hat, theta - dagger)
        # the edge step: the first whose projection lowered S(θ†) onto the edge (θ† on M; a θ†
        # still below 2/η would leave its remaining sharpening, up to ηα per step, in Ŝ − S)
        started = started | (pr.lowered & (pr.sharpness >= (1 - pred_margin) * edge))
        p_hat = unravel(dagger + v_hat)
        hat_pairs = hessian.eigsh(loss_fn, p_hat, 1, v0=u_hat, tol=record_eig_tol, max_restarts=10)
        rec = PairRecord(loss_gd, gd_pairs.values[0], loss_dag, pr.sharpness, x, y, alpha, jnp.vdot(perp, perp),
                         jnp.vdot(flat_gs, u), jnp.linalg.norm(theta - dagger),
                         jnp.linalg.norm(dagger - dagger0), pr.converged, pr.iterations,
                         -jnp.vdot(flat_gl, perp), lam2, started, loss_fn(p_hat), hat_pairs.values[0],
                         jnp.vdot(u, v_hat), jnp.vdot(perp, v_hat), jnp.linalg.norm(v_hat))
        v_next = predicted_step(loss_fn, p_dag, v_hat, u, flat_gl, flat_gs, eta)
        theta_next = theta - eta * ravel_pytree(grad_gd)[0]
        nxt = proj(unravel(dagger - eta * flat_gl), v0=u)
        return (theta_next, ravel_pytree(nxt.params)[0], gd_pairs.vectors[:, 0], nxt, v_next,
                hat_pairs.vectors[:, 0], started, block), rec

    carry0 = (flat0, dagger0, v0, first, flat0 - dagger0, v0, jnp.array(False), block0)
    _, record = jax.lax.scan(step, carry0, jnp.arange(steps))
    return record


class Prediction(NamedTuple):
    """The (x, y) recursion of :func:`predict` (each field ``(T,)``, row t at step t)."""

    x: Array
    y: Array


def predict(x0: Scalar, y0: Scalar, alpha: Float[Array, " T"], beta: Float[Array, " T"],
            sharpness_dagger: Float[Array, " T"], eta: float | Scalar) -> Prediction:
    """Run the local (x, y) dynamics open-loop from ``(x0, y0)``, driven by α_t, β_t and S(θ†_t)
    measured along the constrained trajectory:

        x_{t+1} = (1 − η (S†_t + y_t)) x_t
        y_{t+1} = y_t + η (α_t − β_t x_t² / 2) − (S†_{t+1} − S†_t)

    At the edge (``S† = 2/η``, constant) this is Damian et al.'s two-term recursion
    ``x_{t+1} = −(1 + η y_t) x_t``, ``y_{t+1} = y_t + η(α_t − β_t x_t²/2)``. Below the edge the
    last term removes the sharpening that θ† itself takes up, so y (the excess of GD's sharpness
    over θ†'s) only changes through the cubic term. Predicted loss and sharpness of GD:
    ``L(θ†_t) + S†_t x_t²/2`` (``= L(θ†) + x²/η`` at the edge) and ``S†_t + y_t``. ``beta`` is
    ``‖∇S⊥‖²`` as :func:`gd_and_constrained` records it. Nothing bounds the open-loop iterates:
    where y stays positive, x grows geometrically and may overflow to ∞ (see
    :func:`analyse_edge`, which records that as a diverged prediction).
    """
    ds = jnp.diff(sharpness_dagger, append=sharpness_dagger[-1:])

    def step(carry, inputs):
        x, y = carry
        a, b, s, d = inputs
        return ((1 - eta * (s + y)) * x, y + eta * (a - 0.5 * b * x**2) - d), (x, y)

    _, (xs, ys) = jax.lax.scan(step, (jnp.asarray(x0), jnp.asarray(y0)), (alpha, beta, sharpness_dagger, ds))
    return Prediction(xs, ys)


class FlowRecord(NamedTuple):
    """Per-unit-time record of :func:`central_flow` (each field ``(T,)``; row t at time t, i.e.
    after t GD steps' worth of time).

    Attributes:
      loss: L at the flow's point.
      sharpness: S there.
      sigma2: σ², the predicted variance of GD's oscillation along u (0 off the edge): the
        σ² the integrator applied over the unit of time from t to t + 1 (its integral there).
        Not the formula at the row's point alone: that switches σ² off wherever S is below
        2/η, and the discretised flow holds S within an eigensolve's error of 2/η, on either
        side of it.
      predicted_loss: the predicted time-averaged GD loss ``L + ½ σ² S`` (``= L + σ²/η`` at the edge).
      alpha: ``−∇L·∇S`` there.
      beta: ``‖∇S‖²`` there.
      second: λ₂, the second Hessian eigenvalue: once it too reaches 2/η the one-eigenvalue flow
        no longer applies (Cohen et al.'s flow then needs a matrix Σ for all edge eigenvalues).
    """

    loss: Array
    sharpness: Array
    sigma2: Array
    predicted_loss: Array
    alpha: Array
    beta: Array
    second: Array


def central_flow(loss_fn: Callable[[PyTree], Scalar], params: PyTree, eta: float | Scalar, steps: int, *,
                 v0: Float[Array, " n"] | Float[Array, "n 2"], substeps: int = 2, relax: float = 0.1, eig_tol: float = 1e-5
                 ) -> tuple[FlowRecord, PyTree]:
    """Integrate the central flow of Cohen, Damian, Talwalkar, Kolter & Lee (2024) for one top
    eigenvalue, in units of GD steps (time t ↔ step t):

        dθ/dt = −η [∇L(θ) + ½ σ²(θ) ∇S(θ)],
        σ² = 2 max(α + r (S − 2/η)/η, 0) / β   where S ≥ 2/η, else 0.

    With ``r = 0`` this is σ² = 2α/β, the value that holds S constant at the edge
    (``dS/dt = η(α − ½ σ² β)``); ``r = relax > 0`` adds a restoring term (Baumgarte
    stabilisation: ``dS/dt = −r (S − 2/η)`` at the edge) so the discretisation error does not let S
    drift above 2/η, and the flow leaves the edge when α turns negative.

    The integrator is diffrax's Heun (explicit trapezoid, second order), driven one step at a
    time inside ``lax.scan`` with ``substeps`` fixed steps per unit time. A fixed step is sound
    here: along the flow the Jacobian's stiff part is ``−η∇²L`` with spectrum in ``[−ηS, 0] ⊂ [−2, 0]``
    (S ≤ 2/η), and ``dt = 1/substeps ≤ 1/2`` keeps ``dt·ηS ≤ 1``, well inside Heun's real
    stability interval ``[−2, 0]``. Each evaluation's eigensolve is warm-started from the u of the
    start of its step; a top-2 eigensolve at the start of each unit of time, warm-started from the
    last, gives that u and records λ₂ (``v0``: one start vector, or two as columns).

    Returns the record and the final parameters.
    """
    if not isinstance(substeps, int) or substeps < 2:
        raise ValueError(f"substeps={substeps!r} must be an integer ≥ 2 (dt = 1/substeps ≤ 1/2)")
    if not relax >= 0:
        raise ValueError(f"relax={relax!r} must be ≥ 0")
    flat0, unravel = ravel_pytree(params)
    edge = 2.0 / eta

    def at(flat, u, s):
        """Drift and record at ``flat`` given its top eigenpair ``(u, s)``."""
        p = unravel(flat)
        loss, grad_l = jax.value_and_grad(loss_fn)(p)
        grad_s = hessian.sharpness_gradient(loss_fn, p, u)
        alpha, beta = hessian.alpha_beta(grad_l, grad_s)
        sigma2 = jnp.where(s >= edge, 2 * jnp.maximum(alpha + relax * (s - edge) / eta, 0.0) / beta, 0.0)
        drift = -eta * (ravel_pytree(grad_l)[0] + 0.5 * sigma2 * ravel_pytree(grad_s)[0])
        return drift, FlowRecord(loss, s, sigma2, loss + 0.5 * sigma2 * s, alpha, beta, jnp.nan)

    def field(state, v):
        """The drift of θ and, as a second state variable, σ², whose integral over a unit of
        time is the σ² the integrator applied there."""
        flat, _ = state
        pairs = hessian.eigsh(loss_fn, unravel(flat), 1, v0=v, tol=eig_tol, max_restarts=10)
        drift, rec = at(flat, pairs.vectors[:, 0], pairs.values[0])
        return drift, rec.sigma2

    term = diffrax.ODETerm(lambda t, state, v: field(state, v))
    solver = diffrax.Heun()
    dt = 1.0 / substeps

    def unit(carry, t):
        flat, block = carry
        top2 = hessian.eigsh(loss_fn, unravel(flat), 2, v0=block, tol=eig_tol, max_restarts=10)
        u = top2.vectors[:, 0]
        rec = at(flat, u, top2.values[0])[1]

        def sub(i, state):
            t0 = t + i * dt
            solver_state = solver.init(term, t0, t0 + dt, state, u)
            return solver.step(term, t0, t0 + dt, state, u, solver_state, made_jump=False)[0]

        flat, applied = jax.lax.fori_loop(0, substeps, sub, (flat, jnp.zeros((), flat.dtype)))
        rec = rec._replace(sigma2=applied, predicted_loss=rec.loss + 0.5 * applied * rec.sharpness,
                           second=top2.values[1])
        return (flat, top2.vectors), rec

    if v0.ndim == 1:  # a second start vector for λ₂, orthogonal to the first
        other = jnp.roll(v0, 1)
        v0 = jnp.stack([v0, other - jnp.vdot(other, v0) / jnp.vdot(v0, v0) * v0], axis=1)
    (flat, _), record = jax.lax.scan(unit, (flat0, v0), jnp.arange(steps, dtype=flat0.dtype))
    return record, unravel(flat)


def gd_to_edge(loss_fn: Callable[[PyTree], Scalar], params: PyTree, eta: float, fraction: float, max_steps: int, *,
               key: PRNGKeyArray, check_every: int = 10, eig_tol: float = 1e-3,
               with_minimum: bool = False) -> tuple:
    """Run full-batch GD until the sharpness first reaches ``fraction · 2/η`` (checked every
    ``check_every`` steps with a warm-started eigensolve) or ``max_steps`` steps have passed.

    Returns ``(params, steps_taken, sharpness)``: where GD stopped, after how many steps, and S there.
    With ``with_minimum`` also ``(min_sharpness, min_step)``: the smallest checked S on the way
    (S(θ₀) included, step 0) and the step where it was checked, from which the progressive
    sharpening into the edge is measured.
    A start point for :func:`gd_and_constrained` shortly before the edge: while GD is stable its
    gradient component along u has decayed, so θ is (nearly) on M and θ† ≈ θ.
    """
    if not 0 < fraction:
        raise ValueError(f"fraction={fraction!r} must be positive")
    if not isinstance(check_every, int) or check_every < 1:
        raise ValueError(f"check_every={check_every!r} must be a positive integer")
    flat0, unravel = ravel_pytree(params)
    target = fraction * 2.0 / eta
    sharp = lambda flat, v: hessian.eigsh(loss_fn, unravel(flat), 1, v0=v, tol=eig_tol, max_restarts=10)

    def descend(flat):
        def body(f, _):
            return f - eta * ravel_pytree(jax.grad(loss_fn)(unravel(f)))[0], None
        return jax.lax.scan(body, flat, None, length=check_every)[0]

    def body(carry):
        flat, v, t, _, s_min, t_min = carry
        flat = descend(flat)
        pairs = sharp(flat, v)
        s = pairs.values[0]
        lower = s < s_min
        return (flat, pairs.vectors[:, 0], t + check_every, s, jnp.where(lower, s, s_min),
                jnp.where(lower, t + check_every, t_min))

    pairs = sharp(flat0, jax.random.normal(key, flat0.shape, flat0.dtype))
    flat, _, t, s, s_min, t_min = jax.lax.while_loop(
        lambda c: (c[3] < target) & (c[2] < max_steps), body,
        (flat0, pairs.vectors[:, 0], jnp.array(0), pairs.values[0], pairs.values[0], jnp.array(0)))
    if with_minimum:
        return unravel(flat), t, s, s_min, t_min
    return unravel(flat), t, s


class EdgeSweep(NamedTuple):
    """Result of :func:`edge_sweep`, one row per step size (leading axis E = ``len(etas)``).

    Attributes:
      record: the :class:`PairRecord` of each coupled run, every field ``(E, T)``.
      warmup_steps: GD steps taken to reach the start point, ``(E,)``.
      start_sharpness: S at the start point, ``(E,)``.
      starts: the start points (a PyTree like ``params``, each leaf with a leading axis E).
      start_vectors: the flat unit top eigenvector at each start point, ``(E, n)``.
      warmup_min_sharpness: the smallest S checked during the warm-up (S(θ₀) included), ``(E,)``.
      warmup_min_step: the warm-up step where it was checked, ``(E,)``.
    """

    record: PairRecord
    warmup_steps: Array
    start_sharpness: Array
    starts: PyTree
    start_vectors: Float[Array, "E n"]
    warmup_min_sharpness: Array
    warmup_min_step: Array


def edge_sweep(loss_fn: Callable[[PyTree], Scalar], params: PyTree, etas: Float[Array, " E"], steps: int, *,
               start_fraction: float, max_warmup: int, key: PRNGKeyArray, proj_tol: float = 1e-3,
               eig_tol: float = 1e-4, eig_max_restarts: int = 20, pred_margin: float = 2e-3,
               second_every: int = 10, vectorize: bool | None = None) -> EdgeSweep:
    """GD beside its constrained trajectory, for every step size at once (one compiled program).

    For each η of ``etas``, from the same ``params``: :func:`gd_to_edge` runs GD until its
    sharpness first reaches ``start_fraction · 2/η`` (at most ``max_warmup`` steps); an eigensolve
    (relative tolerance ``eig_tol``) gives the top eigenvector there; :func:`gd_and_constrained`
    then runs ``steps`` steps of GD and of projected GD side by side (projection tolerance
    ``proj_tol``, eigensolves at ``eig_tol``), with the predicted dynamics from the edge step
    (``pred_margin``) and λ₂(θ†) every ``second_every`` steps. ``key`` seeds the warm-up's first eigensolve;
    ``jax.random.fold_in(key, 1)`` the start point's.

    ``vectorize``: run the step sizes as one ``vmap`` (``True``) or one after another inside the
    same compiled program (``False``, ``lax.map``); ``None`` (default) maps them on a CPU and
    vmaps them elsewhere. Each member's values are the same either way (up to rounding), but the
    cost is not: under ``vmap`` every eigensolve's and projection's ``while`` loop runs until its
    slowest member is done, the warm-up until the smallest η reaches its edge, and every
    ``lax.cond`` with a per-member predicate (the projection's lowering step, the Lanczos
    breakdown branch) computes both branches for every member. A GPU absorbs that in its width;
    on a CPU, where a batched HVP costs the members' HVPs in sequence, it only adds work.

    Returns:
      An :class:`EdgeSweep` whose rows follow the order of ``etas``.
    """
    etas = jnp.asarray(etas)
    if etas.ndim != 1 or etas.size == 0:
        raise ValueError(f"etas must be a non-empty 1-D array of step sizes, got shape {etas.shape}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if not 0 < start_fraction <= 1:
        raise ValueError(f"start_fraction={start_fraction!r} must be in (0, 1]")
    if not isinstance(max_warmup, int) or max_warmup < 1:
        raise ValueError(f"max_warmup={max_warmup!r} must be a positive integer")

    def one(eta):
        start, warm, s_start, s_min, t_min = gd_to_edge(loss_fn, params, eta, start_fraction, max_warmup,
                                                        key=key, with_minimum=True)
        v0 = hessian.eigsh(loss_fn, start, 1, key=jax.random.fold_in(key, 1), tol=eig_tol,
                           max_restarts=eig_max_restarts).vectors[:, 0]
        rec = gd_and_constrained(loss_fn, start, eta, steps, v0=v0, tol=proj_tol, eig_tol=eig_tol,
                                 pred_margin=pred_margin, second_every=second_every)
        return EdgeSweep(rec, warm, s_start, start, v0, s_min, t_min)

    if vectorize is None:
        vectorize = jax.default_backend() != "cpu"
    members = jax.vmap(one) if vectorize else (lambda e: jax.lax.map(one, e))
    return jax.jit(members)(etas)


# ----------------------------------------------------------------------------- measurements


def moving_average(a: Float[np.ndarray, " T"], window: int) -> Float[np.ndarray, " T"]:
    """Centred moving average of ``a`` over ``window`` steps, NaN where the window does not fit."""
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window={window!r} must be a positive integer")
    a = np.asarray(a, dtype=np.float64)
    out = np.full(len(a), np.nan)
    core = np.convolve(a, np.ones(window) / window, mode="valid")
    out[window // 2: window // 2 + len(core)] = core
    return out


class EdgeAnalysis(NamedTuple):
    """What :func:`analyse_edge` measures on one coupled run.

    Attributes:
      start: the edge step, the first where the prediction has started (``pred_started``: the
        projection lowered S(θ†) onto the edge) and ``S(θ†) ≥ (1 − margin)·2/η`` (the edge phase
        starts there), or
        ``None`` when θ† never reaches the edge.
      prediction: the open-loop :class:`Prediction` over the edge phase (``None`` without one).
      loss_hat: predicted GD loss ``L(θ†) + ½ S(θ†) x̂²`` over the edge phase.
      sharpness_hat: predicted GD sharpness ``S(θ†) + ŷ`` over the edge phase.
      deviation_hat: predicted ``‖θ − θ†‖ ≈ √(x̂² + ŷ²/β)`` over the edge phase.
      metrics: named numbers (see :func:`analyse_edge`); NaN where not measured, ∞ where the
        measurement went wrong (GD or the open-loop prediction diverged).
    """

    start: int | None
    prediction: Prediction | None
    loss_hat: np.ndarray | None
    sharpness_hat: np.ndarray | None
    deviation_hat: np.ndarray | None
    metrics: dict


#: The metrics of :func:`analyse_edge` that need an edge phase (NaN without one).
EDGE_METRICS = (
    "gd_diverged", "prediction_diverged", "sharpness_eos_mean", "cycles",
    "stage_x", "stage_x_miss", "stage_x_null_miss", "stage_y", "stage_y_miss", "stage_y_null_miss",
    "excess_loss_err", "excess_loss_null_err", "quadratic_excess_err",
    "sharpness_err", "sharpness_null_err", "sharpness_coordinate_err",
    "deviation_err", "deviation_null_err", "x2_ratio", "grad_s_along_u_share",
    "stage_from", "stage_steps",
)


def _second_stop(r, edge: float, second_limit: float | None) -> tuple[int, int]:
    """(stop, second_step): the first checked step where ``λ₂(θ†) > second_limit·2/η`` (or the
    run's length, and −1, when it never is or ``second_limit`` is None)."""
    T = len(r.loss)
    if second_limit is None:
        return T, -1
    checked = np.nonzero(np.isfinite(r.second_dagger))[0]
    over = checked[r.second_dagger[checked] > second_limit * edge]
    return (int(over[0]), int(over[0])) if len(over) else (T, -1)


def analyse_edge(record: PairRecord, eta: float, *, margin: float, second_limit: float | None = None,
                 active: float = 0.01) -> EdgeAnalysis:
    """The measurements of one coupled run (one row of :class:`EdgeSweep`'s record, as NumPy).

    The edge phase starts at the edge step, the first where θ† is on the edge: the projection
    lowered S(θ†) there (``pred_started``) and ``S(θ†) ≥ (1 − margin) · 2/η``; before it the paper's recursion does not apply, and every metric below but the
    first three is NaN (not measured). Over the edge phase, with (x̂, ŷ) the open-loop
    :func:`predict` from GD's measured ``(x, y)`` at its start, and medians over its steps:

    - ``excess_loss_err``: ``median |½ S(θ†) x̂² − (L − L(θ†))|``, the error of the predicted
      excess loss; ``excess_loss_null_err``: the error of the null ``L̂ = L(θ†)``,
      ``median |L − L(θ†)|``; ``quadratic_excess_err``: the expansion alone, with GD's own x.
    - ``sharpness_err``: ``median |S(θ†) + ŷ − S|``; ``sharpness_null_err``: the null
      ``Ŝ = 2/η``, ``median |S − 2/η|``; ``sharpness_coordinate_err``: ``median |S(θ†) + y − S|``
      with GD's measured y (the relation S ≈ S(θ†) + y, closed loop).
    - ``deviation_err``: ``median |√(x̂² + ŷ²/β) − ‖θ − θ†‖|`` (to leading order θ − θ† lies in
      the plane of u and ∇S⊥); ``deviation_null_err``: the null that the deviation stays at its
      value at the start of the edge phase.
    - stages: ``stage_x`` is the fraction of steps where ``|x|`` grows exactly when y > 0,
      ``stage_y`` where y rises exactly when x² < 2α/β; ``*_miss`` is one minus it and
      ``*_null_miss`` the miss rate of the base-rate null that always guesses the more frequent
      outcome (``|x|`` grows, or y rises). ``cycles``: downward crossings of y = 0.
    - the stages and ``x2_ratio`` are read only from ``stage_from``, the first edge-phase step
      where GD's ``|x| > active·δ`` (``δ = √(2α⊥/β)``, α⊥ = −∇L·∇S⊥): before it x is rounding
      noise (1e-9 to 1e-7 in float32) whose signs say nothing about the cycle; ``stage_steps``
      counts the steps scored (0 when ``|x|`` never gets there: the stages are then NaN).
    - ``x2_ratio``: ``⟨x²⟩ / ⟨2α/β⟩``; ``sharpness_eos_mean``: GD's mean sharpness;
      ``grad_s_along_u_share``: ``median |∇S·u| / ‖∇S‖`` (how much of ∇S y leaves out).

    With ``second_limit``, the edge phase ends before the first checked step where
    ``λ₂(θ†) > second_limit·2/η`` (``second_step``, −1 when never), as in
    :func:`analyse_prediction`: past it a second direction is at the edge and the
    one-direction analysis does not apply (the open-loop prediction itself still runs to the
    end, for :func:`analyse_prediction`'s windows, which stop there too).

    Always measured: ``edge_steps`` (steps in the edge phase, before ``second_step``; 0 without one),
    ``pgd_sharpness_max`` (the largest S(θ†)), ``deviation_max`` and ``dev_over_travel``.
    A GD run whose loss turns non-finite in the edge phase sets ``gd_diverged = 1`` and every
    error to ∞; an open-loop prediction that overflows sets ``prediction_diverged = 1`` and the
    errors that use it to ∞ (values the book's rules reject, never NaN).
    """
    if not 0 <= margin < 1:
        raise ValueError(f"margin={margin!r} must be in [0, 1)")
    r = jax.tree.map(lambda a: np.asarray(a, dtype=np.float64), record)
    edge = 2.0 / eta
    reached = np.nonzero((r.pred_started > 0) & (r.sharpness_dagger >= (1 - margin) * edge))[0]
    start = int(reached[0]) if len(reached) else None
    stop, second_step = _second_stop(r, edge, second_limit)
    travelled = r.travelled[np.isfinite(r.travelled)]
    m = {
        "edge_steps": 0 if start is None else max(stop - start, 0),
        "second_step": second_step,
        "pgd_sharpness_max": float(np.nanmax(r.sharpness_dagger)),
        "deviation_max": float(np.nanmax(r.deviation)) if np.all(np.isfinite(r.deviation)) else np.inf,
        "dev_over_travel": (float(np.max(r.deviation) / max(travelled[-1], 1e-30))
                            if np.all(np.isfinite(r.deviation)) else np.inf),
    }
    m |= {k: np.nan for k in EDGE_METRICS}
    if start is None or m["edge_steps"] < 2:
        return EdgeAnalysis(start, None, None, None, None, m)
    full = slice(start, None)  # the open-loop prediction runs to the end (analyse_prediction's windows)
    n = stop - start  # the edge phase compared here: up to second_step
    sl = slice(start, stop)
    loss, sharp, x, y = r.loss[sl], r.sharpness[sl], r.x[sl], r.y[sl]
    s_dag, l_dag, beta, dev = r.sharpness_dagger[sl], r.loss_dagger[sl], r.beta[sl], r.deviation[sl]
    fp = 2 * r.alpha[sl] / beta
    if not np.all(np.isfinite(loss) & np.isfinite(sharp) & np.isfinite(x)):
        errors = [k for k in EDGE_METRICS if k.endswith("_err") or k == "x2_ratio"]
        return EdgeAnalysis(start, None, None, None, None, m | {k: np.inf for k in errors} | {
            "gd_diverged": 1.0, "prediction_diverged": 0.0, "stage_x": 0.0, "stage_y": 0.0,
            "stage_steps": n,  # a diverged run fails the stage claims, it does not skip them
            "stage_x_miss": 1.0, "stage_y_miss": 1.0, "cycles": 0})
    with np.errstate(over="ignore", invalid="ignore"):
        pred = predict(x[0], y[0], r.alpha[full], r.beta[full], r.sharpness_dagger[full], eta)
        xh_all, yh_all = np.asarray(pred.x, np.float64), np.asarray(pred.y, np.float64)
        loss_hat = r.loss_dagger[full] + 0.5 * r.sharpness_dagger[full] * xh_all**2
        sharp_hat = r.sharpness_dagger[full] + yh_all
        dev_hat = np.sqrt(xh_all**2 + yh_all**2 / r.beta[full])
    xh, yh = xh_all[:n], yh_all[:n]
    ok = bool(np.all(np.isfinite(xh) & np.isfinite(yh)))

    def err(a, b):
        return float(np.median(np.abs(a - b))) if ok else np.inf

    # the stages and x² from the first step where |x| leaves the rounding noise
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.sqrt(np.maximum(2 * r.alpha_perp[sl] / beta, 0.0))
    awake = np.nonzero(np.abs(x) > active * delta)[0]
    a0 = int(awake[0]) if len(awake) else n
    xs, ys, fps = x[a0:], y[a0:], fp[a0:]
    grows, positive = np.abs(xs[1:]) > np.abs(xs[:-1]), ys[:-1] > 0
    rises, below = ys[1:] > ys[:-1], xs[:-1] ** 2 < fps[:-1]
    scored = len(grows) > 0
    mean = lambda a: float(np.mean(a)) if scored else np.nan
    stage_x, stage_y = mean(grows == positive), mean(rises == below)
    excess = loss - l_dag
    m |= {
        "gd_diverged": 0.0,
        "prediction_diverged": float(not ok),
        "sharpness_eos_mean": float(np.mean(sharp)),
        "cycles": int(np.sum((y[:-1] > 0) & (y[1:] <= 0))),
        "stage_from": start + a0 if len(awake) else -1, "stage_steps": len(grows),
        "stage_x": stage_x, "stage_x_miss": 1 - stage_x,
        "stage_x_null_miss": min(mean(grows), 1 - mean(grows)),
        "stage_y": stage_y, "stage_y_miss": 1 - stage_y,
        "stage_y_null_miss": min(mean(rises), 1 - mean(rises)),
        "excess_loss_err": err(0.5 * s_dag * xh**2, excess),
        "excess_loss_null_err": float(np.median(np.abs(excess))),
        "quadratic_excess_err": float(np.median(np.abs(0.5 * s_dag * x**2 - excess))),
        "sharpness_err": err(sharp_hat[:n], sharp),
        "sharpness_null_err": float(np.median(np.abs(sharp - edge))),
        "sharpness_coordinate_err": float(np.median(np.abs(s_dag + y - sharp))),
        "deviation_err": err(dev_hat[:n], dev),
        "deviation_null_err": float(np.median(np.abs(dev - dev[0]))),
        "x2_ratio": (np.nan if not scored else float(np.mean(xs**2) / np.mean(fps)) if np.mean(fps) > 0
                     else np.inf),
        "grad_s_along_u_share": float(np.median(np.abs(r.grad_s_along_u[sl])
                                                / np.sqrt(beta + r.grad_s_along_u[sl] ** 2))),
    }
    return EdgeAnalysis(start, pred, loss_hat, sharp_hat, dev_hat, m)


def flow_errors(gd_loss: Float[np.ndarray, " T"], gd_sharpness: Float[np.ndarray, " T"], flow: FlowRecord,
                eta: float, *, start: int | None, window: int) -> dict:
    """The central flow against GD's ``window``-step centred moving average, from ``start +
    window`` (the edge phase's start) to the end: median relative errors of the time-averaged
    loss predicted by the flow (``flow_loss_err``) and of the flow's own loss without the σ²
    term (``flow_plain_err``, the control), the median sharpness error as a fraction of 2/η
    (``flow_sharp_err``), the largest λ₂ along the flow over 2/η (``flow_second_frac``) and the
    number of steps compared (``flow_compared_steps``). NaN (not measured) without an edge phase
    or without a step to compare; ∞ when GD or the flow turned non-finite.
    """
    edge = 2.0 / eta
    avg_loss, avg_sharp = moving_average(gd_loss, window), moving_average(gd_sharpness, window)
    t = np.arange(len(avg_loss))
    compared = (t >= (start if start is not None else len(t)) + window) & ~np.isnan(avg_loss)
    out = {"flow_compared_steps": int(compared.sum()),
           "flow_second_frac": float(np.max(np.asarray(flow.second)) / edge)}
    keys = ("flow_loss_err", "flow_plain_err", "flow_sharp_err")
    if start is None or not compared.any():
        return out | {k: np.nan for k in keys}
    fl = {k: np.asarray(getattr(flow, k), np.float64) for k in ("loss", "predicted_loss", "sharpness")}
    if not (all(np.all(np.isfinite(v)) for v in fl.values()) and np.all(np.isfinite(avg_loss[compared]))):
        return out | {k: np.inf for k in keys}
    ref = avg_loss[compared]
    return out | {
        "flow_loss_err": float(np.median(np.abs(fl["predicted_loss"][compared] - ref) / ref)),
        "flow_plain_err": float(np.median(np.abs(fl["loss"][compared] - ref) / ref)),
        "flow_sharp_err": float(np.median(np.abs(fl["sharpness"][compared] - avg_sharp[compared])) / edge),
    }


#: The metrics of :func:`analyse_prediction`; ``{m}`` is one of the three compared quantities.
PREDICTION_QUANTITIES = ("loss", "sharpness", "deviation")


def _block_means(a: np.ndarray, block: int) -> np.ndarray:
    """Means over consecutive non-overlapping ``block``-step blocks (a partial last block dropped)."""
    n = len(a) // block
    return a[: n * block].reshape(n, block).mean(axis=1)


def analyse_prediction(record: PairRecord, eta: float, *, margin: float, scalar: EdgeAnalysis | None = None,
                       extra: int = 20, block: int = 20, second_limit: float = 0.95) -> dict:
    """Score the predicted dynamics of one coupled run (:func:`gd_and_constrained`, as NumPy)
    against GD in two windows fixed before the run:

    - *tracking*: from the edge step t₀ (the first where the prediction has started, the projection
      having lowered S(θ†) onto the edge, and ``S(θ†) ≥ (1 − margin)·2/η``) to the first
      step t_b ≥ t₀ where GD's ``|x|`` exceeds the paper's ``δ = √(2α/β)`` (α = −∇L·∇S⊥ and β at
      θ†), plus ``extra`` steps; errors are medians of pointwise absolute differences;
    - *rest*: from there to the end, compared as means over consecutive ``block``-step blocks
      (medians over blocks of the absolute differences), which a one-step slip of the period-2
      oscillation does not change.

    Both windows end before the first checked step where ``λ₂(θ†) > second_limit·2/η``
    (``second_step``; −1 when it never is): past it the analysis, which follows one direction
    at the edge, does not apply. Quantities: the exact loss ``L(θ† + v̂)`` against GD's ``L(θ)``,
    the exact sharpness ``S(θ† + v̂)`` against ``S(θ)``, and ``‖v̂‖`` against ``‖θ − θ†‖``. Nulls:
    ``L̂ = L(θ†)``, ``Ŝ = 2/η`` and ``‖θ − θ†‖`` frozen at its value at t₀. With ``scalar`` (the
    :func:`analyse_edge` of the same run) the scalar (x, y) model's ``L(θ†) + ½S(θ†)x̂²``,
    ``S(θ†) + ŷ`` and ``√(x̂² + ŷ²/β)`` are scored in the same windows (``scalar_*``).

    Returns metrics ``pred_{q}_err_{w}``, ``null_{q}_err_{w}`` (and ``scalar_{q}_err_{w}``) for q in
    loss, sharpness, deviation and w in tracking, rest; ``tracking_steps``, ``rest_blocks``,
    ``blowup_step`` (t_b, −1 if never), ``second_step``, ``second_max_frac`` (the largest checked
    λ₂(θ†) over 2/η in the run) and ``pred_diverged``. NaN where not
    measured (no edge phase, an empty window); ∞ where GD or the prediction turned non-finite.
    """
    if not 0 <= margin < 1:
        raise ValueError(f"margin={margin!r} must be in [0, 1)")
    if not isinstance(extra, int) or extra < 0 or not isinstance(block, int) or block < 1:
        raise ValueError(f"extra={extra!r} must be an integer >= 0 and block={block!r} one >= 1")
    r = jax.tree.map(lambda a: np.asarray(a, dtype=np.float64), record)
    edge = 2.0 / eta
    T = len(r.loss)
    keys = [f"{who}_{q}_err_{w}" for who in ("pred", "null", "scalar") for q in PREDICTION_QUANTITIES
            for w in ("tracking", "rest")]
    m = {k: np.nan for k in keys} | {"tracking_steps": 0, "rest_blocks": 0, "blowup_step": -1,
                                     "second_step": -1, "second_max_frac": np.nan, "pred_diverged": np.nan}
    checked = np.nonzero(np.isfinite(r.second_dagger))[0]
    over = checked[r.second_dagger[checked] > second_limit * edge]
    stop = int(over[0]) if len(over) else T
    m["second_step"] = int(over[0]) if len(over) else -1
    m["second_max_frac"] = float(np.max(r.second_dagger[checked]) / edge) if len(checked) else np.nan
    reached = np.nonzero((r.pred_started > 0) & (r.sharpness_dagger >= (1 - margin) * edge))[0]
    if not len(reached) or reached[0] >= stop:
        return m
    t0 = int(reached[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.sqrt(np.maximum(2 * r.alpha_perp / r.beta, 0.0))
    past = np.nonzero((np.arange(T) >= t0) & (np.abs(r.x) > delta))[0]
    tb = int(past[0]) if len(past) else -1
    end_track = min(T if tb < 0 else tb + extra + 1, stop)
    track, rest = slice(t0, end_track), slice(end_track, stop)
    m["tracking_steps"] = end_track - t0
    m["blowup_step"] = tb
    m["rest_blocks"] = max(stop - end_track, 0) // block
    gd = {"loss": r.loss, "sharpness": r.sharpness, "deviation": r.deviation}
    pred = {"loss": r.pred_loss, "sharpness": r.pred_sharpness, "deviation": r.pred_deviation}
    null = {"loss": r.loss_dagger, "sharpness": np.full(T, edge), "deviation": np.full(T, r.deviation[t0])}
    preds = {"pred": pred, "null": null}
    if scalar is not None and scalar.prediction is not None:
        pad = lambda a: np.concatenate([np.full(T - len(a), np.nan), np.asarray(a, np.float64)])
        preds["scalar"] = {"loss": pad(scalar.loss_hat), "sharpness": pad(scalar.sharpness_hat),
                           "deviation": pad(scalar.deviation_hat)}
    gd_ok = all(np.all(np.isfinite(a[t0:stop])) for a in gd.values())
    m["pred_diverged"] = float(not all(np.all(np.isfinite(a[t0:stop])) for a in pred.values()))
    for who, p in preds.items():
        for q in PREDICTION_QUANTITIES:
            for w, sl in (("tracking", track), ("rest", rest)):
                a, b = p[q][sl], gd[q][sl]
                if len(b) == 0 or (w == "rest" and m["rest_blocks"] == 0):
                    continue
                if not gd_ok or not np.all(np.isfinite(a)):
                    m[f"{who}_{q}_err_{w}"] = np.inf
                    continue
                if w == "rest":
                    a, b = _block_means(a, block), _block_means(b, block)
                m[f"{who}_{q}_err_{w}"] = float(np.median(np.abs(a - b)))
    return m
