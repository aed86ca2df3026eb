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

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree, Scalar

from eoslib import hessian


class Projection(NamedTuple):
    """Result of :func:`project`.

    Attributes:
      params: the projected parameters (a PyTree like the input).
      sharpness: S at the projected point.
      grad_along_u: ``∇L·u`` at the projected point.
      vector: the flat unit top eigenvector u there (``ravel_pytree`` order).
      iterations: correction rounds used (scalar int).
      converged: whether both constraints met the tolerances (scalar bool).
    """

    params: PyTree
    sharpness: Scalar
    grad_along_u: Scalar
    vector: Float[Array, " n"]
    iterations: Array
    converged: Array


def project(loss_fn: Callable[[PyTree], Scalar], params: PyTree, eta: float, *, v0: Float[Array, " n"],
            tol: float = 1e-6, max_iters: int = 50, eig_tol: float = 1e-7, eig_max_restarts: int = 20,
            precision: str = "highest") -> Projection:
    """Project ``params`` onto the stable set M of GD with step ``eta`` (module docstring).

    Stops when ``|∇L·u| ≤ tol · max(‖∇L‖, 1e-30)`` and ``S ≤ (2/η)(1 + tol)``, or after
    ``max_iters`` rounds. Each round: one warm-started top eigenpair (from ``v0``, then from the
    last u), one gradient, and, when S is above the edge, one gradient of an HVP.
    """
    if not eta > 0:
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
        g = ravel_pytree(jax.grad(loss_fn)(p))[0]
        return u, s, g

    def done(u, s, g):
        gu = jnp.vdot(g, u)
        return (jnp.abs(gu) <= tol * jnp.maximum(jnp.linalg.norm(g), 1e-30)) & (s <= edge * (1 + tol))

    def body(carry):
        flat, v, i, _ = carry
        u, s, g = measure(flat, v)
        flat = flat - (jnp.vdot(g, u) / s) * u

        def lower(flat):
            grad_s = ravel_pytree(hessian.sharpness_gradient(loss_fn, unravel(flat), u))[0]
            return flat - ((s - edge) / jnp.vdot(grad_s, grad_s)) * grad_s

        flat = jax.lax.cond(s > edge, lower, lambda f: f, flat)
        u2, s2, g2 = measure(flat, u)
        return flat, u2, i + 1, done(u2, s2, g2)

    u, s, g = measure(flat0, v0)
    flat, v, iters, ok = jax.lax.while_loop(lambda c: (~c[3]) & (c[2] < max_iters), body,
                                            (flat0, u, jnp.array(0), done(u, s, g)))
    u, s, g = measure(flat, v)
    return Projection(unravel(flat), s, jnp.vdot(g, u), u, iters, done(u, s, g))


def coordinates(params: PyTree, dagger: PyTree, u: Float[Array, " n"], grad_sharpness: PyTree
                ) -> tuple[Scalar, Scalar]:
    """``(x, y) = (u·(θ − θ†), ∇S·(θ − θ†))`` with u (flat, unit) and ∇S taken at θ†."""
    v = ravel_pytree(params)[0] - ravel_pytree(dagger)[0]
    return jnp.vdot(u, v), jnp.vdot(ravel_pytree(grad_sharpness)[0], v)



class PairRecord(NamedTuple):
    """Per-step record of :func:`gd_and_constrained` (each field ``(T,)``; row t is at step t).

    Attributes:
      loss, sharpness: L and S at the GD iterate θ_t.
      loss_dagger, sharpness_dagger: L and S at the constrained iterate θ†_t.
      x, y: the coordinates ``u·(θ_t − θ†_t)`` and ``∇S·(θ_t − θ†_t)`` (u, ∇S at θ†_t).
      alpha, beta: ``−∇L·∇S`` and ``‖∇S‖²`` at θ†_t.
      deviation: ``‖θ_t − θ†_t‖``.
      converged: whether the projection met its tolerances.
    """

    loss: Array
    sharpness: Array
    loss_dagger: Array
    sharpness_dagger: Array
    x: Array
    y: Array
    alpha: Array
    beta: Array
    deviation: Array
    converged: Array


def gd_and_constrained(loss_fn: Callable[[PyTree], Scalar], params: PyTree, eta: float, steps: int, *,
                       v0: Float[Array, " n"], tol: float = 1e-6, max_iters: int = 20,
                       eig_tol: float = 1e-5) -> PairRecord:
    """Full-batch GD from ``params`` and the constrained trajectory (projected GD,
    ``θ†_{t+1} = proj_M(θ†_t − η∇L(θ†_t))``, ``θ†_0 = proj_M(θ_0)``) side by side, as one
    ``lax.scan``; the eigensolves are warm-started from the previous step's vectors.
    Costs per step: one projection (a few eigensolves) and two eigensolves for the records.
    """
    flat0, unravel = ravel_pytree(params)
    solve = lambda flat, v: hessian.eigsh(loss_fn, unravel(flat), 1, v0=v, tol=eig_tol, max_restarts=10)
    first = project(loss_fn, params, eta, v0=v0, tol=tol, max_iters=max_iters, eig_tol=eig_tol)

    def step(carry, _):
        theta, dagger, u_gd, u_dag = carry
        gd_pairs = solve(theta, u_gd)
        p_dag = unravel(dagger)
        dag_pairs = solve(dagger, u_dag)
        u = dag_pairs.vectors[:, 0]
        u = jnp.where(jnp.vdot(u, u_dag) < 0, -u, u)  # one orientation of u along the run, so x keeps its sign convention
        grad_s = hessian.sharpness_gradient(loss_fn, p_dag, u)
        grad_l = jax.grad(loss_fn)(p_dag)
        alpha, beta = hessian.alpha_beta(grad_l, grad_s)
        x, y = coordinates(unravel(theta), p_dag, u, grad_s)
        rec = PairRecord(loss_fn(unravel(theta)), gd_pairs.values[0], loss_fn(p_dag), dag_pairs.values[0],
                         x, y, alpha, beta, jnp.linalg.norm(theta - dagger), jnp.array(True))
        theta_next = theta - eta * ravel_pytree(jax.grad(loss_fn)(unravel(theta)))[0]
        moved = unravel(dagger - eta * ravel_pytree(grad_l)[0])
        proj = project(loss_fn, moved, eta, v0=u, tol=tol, max_iters=max_iters, eig_tol=eig_tol)
        rec = rec._replace(converged=proj.converged)
        return (theta_next, ravel_pytree(proj.params)[0], gd_pairs.vectors[:, 0], u), rec

    carry = (flat0, ravel_pytree(first.params)[0], v0, first.vector)
    _, record = jax.lax.scan(step, carry, None, length=steps)
    return record
