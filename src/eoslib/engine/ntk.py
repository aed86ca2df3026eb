"""Function-space curvature: the empirical NTK and the Gauss–Newton matrix, matrix-free.

For a model ``apply_fn(params) -> outputs`` (all training outputs stacked, any shape, m values in
all) with Jacobian J (m × n), the empirical NTK is K = J Jᵀ (m × m) and the Gauss–Newton matrix
of the ½MSE loss averaged over N examples is G = Jᵀ J / N (n × n). K and Jᵀ J share their non-zero
eigenvalues, so the NTK's top eigenvalue is found on the parameter side with the matvec
``v ↦ Jᵀ (J v)`` (one ``jvp`` and one ``vjp``), never forming K.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from eoslib.engine import linalg


def jtj_matvec(apply_fn: Callable[[PyTree], Array], params: PyTree) -> Callable[[Float[Array, " n"]], Float[Array, " n"]]:
    """``v ↦ Jᵀ J v`` on flat ``(n,)`` vectors (``ravel_pytree(params)`` order)."""
    flat, unravel = ravel_pytree(params)
    f = lambda x: apply_fn(unravel(x))
    _, f_vjp = jax.vjp(f, flat)
    _, f_jvp = jax.linearize(f, flat)
    return lambda v: f_vjp(f_jvp(v))[0]


def ntk_top_eigenvalue(
    apply_fn: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: PRNGKeyArray,
    scale: float = 1.0,
    precision: str = "highest",
    **options: Any,
) -> Scalar:
    """``scale · λ_max(J Jᵀ)``: the empirical NTK's top eigenvalue (``scale = 1/N`` gives the top
    eigenvalue of the ½MSE Gauss–Newton matrix over N examples). ``options`` (``v0=`` a warm
    start included) go to :func:`eoslib.engine.linalg.operator_eigsh`, which checks them before
    the Jacobian products are built."""
    flat, _ = ravel_pytree(params)
    result = linalg.operator_eigsh(lambda: jtj_matvec(apply_fn, params), flat, 1, key=key,
                                   precision=precision, **options)
    return scale * result.values[0]
