"""One definition of a diverged run, shared by every gradient-descent loop in eoslib.

A run **diverges at step t** when the scalar it monitors at the state θ_t (its loss; for the
(x, y) model of :mod:`eoslib.mechanisms.edge_model`, the larger of ``|x_t|`` and ``|y_t|``) is
non-finite or above a maximum (:func:`is_bad`). Every loop that uses this module
(:func:`eoslib.engine.train.run`, ``dln.gd``, ``edge_model.xy_recursion``,
``edge_model.SharpeningToy.gd``, ``adaptive.trajectory``) then

- records ``diverged_at = t``, an int32 scalar that is −1 (:data:`NEVER`) for a run that never
  diverged (:func:`update`);
- stops updating: the state stays at θ_t for the rest of the run;
- records NaN for every floating quantity at steps ≥ t, row t included (:func:`mask`): the values
  measured at θ_t are the ones that failed;
- raises nothing, so the other members of a ``vmap``-ed sweep finish.

All functions are pure and trace under ``jit`` / ``vmap`` / ``lax.scan``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Int, PyTree

#: ``diverged_at`` of a run that never diverged.
NEVER = -1


def check_max(name: str, value: float) -> float:
    """Validate a divergence threshold before tracing: a positive number (``inf`` allowed: only
    non-finite values count then). Returns it as a float; a ``ValueError`` naming ``name``
    otherwise."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a positive number (inf: only non-finite values diverge)") from None
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive number (inf: only non-finite values diverge)")
    return value


def start() -> Int[Array, ""]:
    """The initial ``diverged_at``: :data:`NEVER` as an int32 scalar."""
    return jnp.array(NEVER, jnp.int32)


def is_bad(value: ArrayLike, max_value: float | ArrayLike) -> Bool[Array, "..."]:
    """Whether a monitored value is non-finite or above ``max_value`` (elementwise)."""
    value = jnp.asarray(value)
    return ~jnp.isfinite(value) | (value > max_value)


def update(diverged_at: Int[Array, ""], step: ArrayLike, value: ArrayLike,
           max_value: float | ArrayLike) -> Int[Array, ""]:
    """``diverged_at`` after measuring ``value`` at ``step``: unchanged if the run had already
    diverged, else ``step`` if ``value`` is bad, else :data:`NEVER`."""
    first = (diverged_at < 0) & is_bad(value, max_value)
    return jnp.where(first, jnp.asarray(step, jnp.int32), diverged_at).astype(jnp.int32)


def alive(diverged_at: Int[Array, "..."]) -> Bool[Array, "..."]:
    """Whether a run has not diverged (``diverged_at < 0``)."""
    return diverged_at < 0


def mask(is_alive: Bool[Array, ""], tree: PyTree) -> PyTree:
    """Blank a record once the run is dead: floating leaves become NaN, boolean leaves ``False``
    (e.g. an eigensolver's ``converged``); integer leaves (counts) are kept."""

    def blank(leaf):
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            return jnp.where(is_alive, leaf, jnp.nan)
        if leaf.dtype == jnp.bool_:
            return leaf & is_alive
        return leaf

    return jax.tree.map(blank, tree)


def hold(is_alive: Bool[Array, ""], new: PyTree, old: PyTree) -> PyTree:
    """``new`` while the run is alive, else ``old`` (the state stops updating)."""
    return jax.tree.map(lambda a, b: jnp.where(is_alive, a, b), new, old)
