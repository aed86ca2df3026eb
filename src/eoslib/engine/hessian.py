"""The Hessian of a loss, matrix-free: HVPs, its top eigenpairs, and the curvature probes.

Every function takes a scalar ``loss_fn(params)`` and a PyTree ``params``. Flat vectors are in
``jax.flatten_util.ravel_pytree(params)`` order; eigenvectors come back in that order.

Quantities (H the Hessian of L at θ, v₁ its top eigenvector, S = λ₁ the sharpness):

- :func:`hvp` — ``H t`` by forward-over-reverse (``jvp`` of ``grad``), the cheapest exact HVP.
- :func:`top_eigenpairs` / :func:`eigsh` / :func:`sharpness` — via :func:`eoslib.engine.linalg.eigsh`,
  under ``jax.default_matmul_precision(precision)`` (default ``"highest"``: TF32 corrupts
  eigenvalues).
- :func:`sharpness_gradient` — ``∇S = ∇_θ (v₁ᵀ H(θ) v₁)`` with v₁ held fixed, which equals the
  gradient of λ₁ for a simple eigenvalue (Hellmann–Feynman); a third derivative, matrix-free.
- :func:`alpha_beta` — α = −⟨∇L, ∇S⟩ and β = ‖∇S‖² (Damian et al. 2023).
- :func:`directional_derivative` — dᵏ/dtᵏ L(θ + t u) at t = 0 by nested ``jvp`` (exact).
- :func:`kappa_finite_difference` — the flatness-bias paper's finite-difference proxy for κ
  (its Eq. 26, reconstructed): ``12 [L(θ+rv) + L(θ−rv) − 2L(θ) − r² vᵀHv] / r⁴``, which is the
  fourth directional derivative plus O(r²).
- :func:`preconditioned_sharpness` / :func:`preconditioned_eigsh` — λ₁(P^{-1/2} H P^{-1/2}) for a diagonal preconditioner P
  (the effective sharpness of an adaptive optimizer whose step is P⁻¹∇L).

**One-off calls compile once.** Called on concrete parameters (outside ``jit``, a probe or any
other trace), :func:`eigsh`, :func:`top_eigenpairs`, :func:`sharpness`,
:func:`preconditioned_eigsh` and :func:`preconditioned_sharpness` run one compiled program (the
HVP's linearisation and the whole solve), kept between calls keyed on the loss function's
identity, the parameters' tree structure, shapes and dtypes, and the solver's static settings
(``k``, ``precision``, ``method`` and its options, whether the start is a key or a ``v0`` of a
given shape). The arrays ``loss_fn`` closes over (the data) are read once, when it is first
compiled, and passed to the program as arguments rather than embedded in it as constants. So
a second call on the same loss costs its HVPs and no compilation. As with ``jax.jit``, the
loss must be pure: pass the *same function object* to reuse the program (a new ``lambda`` each
call compiles again), and a new function when the data it closes over change.
:func:`clear_compiled` drops the kept programs. Inside a trace the solver runs inline, as part
of the enclosing program.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar

from eoslib.engine import linalg

LossFn = Callable[[PyTree], Scalar]


def _check_scalar_loss(loss_fn: LossFn, params: PyTree) -> None:
    out = jax.eval_shape(loss_fn, params)
    if getattr(out, "shape", None) != ():
        raise ValueError(f"loss_fn must return a scalar; it returned shape "
                         f"{getattr(out, 'shape', type(out).__name__)}")


def _check_like_params(name: str, tree: PyTree, params: PyTree) -> None:
    """A ValueError unless ``tree`` has the tree structure and leaf shapes of ``params``."""
    structure, other = jax.tree.structure(params), jax.tree.structure(tree)
    shapes = [jnp.shape(leaf) for leaf in jax.tree.leaves(params)]
    got = [jnp.shape(leaf) for leaf in jax.tree.leaves(tree)]
    if structure != other or shapes != got:
        raise ValueError(f"{name} must be a PyTree like params (the same structure and leaf shapes "
                         f"{shapes}); got leaf shapes {got}"
                         + ("" if structure == other else " in a different tree structure"))


def hvp(loss_fn: LossFn, params: PyTree, tangent: PyTree) -> PyTree:
    """``H(params) · tangent`` as a PyTree like ``params`` (forward-over-reverse)."""
    return jax.jvp(jax.grad(loss_fn), (params,), (tangent,))[1]


def flat_hvp(loss_fn: LossFn, params: PyTree) -> tuple[Callable[[Float[Array, " n"]], Float[Array, " n"]], Callable]:
    """The HVP as a ``matvec`` on flat ``(n,)`` vectors, plus ``unravel`` (flat → PyTree).

    The gradient's linearisation is computed once (``jax.linearize``), so repeated products
    (as in Lanczos) reuse it.
    """
    flat, unravel = ravel_pytree(params)
    _, hvp_lin = jax.linearize(lambda p: ravel_pytree(jax.grad(loss_fn)(unravel(p)))[0], flat)
    return hvp_lin, unravel


def hvp_batch(loss_fn: LossFn, params: PyTree, vectors: Float[Array, "b n"]) -> Float[Array, "b n"]:
    """``H v`` for each row of ``vectors`` (flat, ``ravel_pytree`` order), batched with ``vmap``."""
    matvec, _ = flat_hvp(loss_fn, params)
    return jax.vmap(matvec)(vectors)


class _ByIdentity:
    """A hashable handle on an object compared by identity (a loss function may be unhashable,
    e.g. an Equinox module holding arrays); it keeps the object alive while a cache holds it, so
    its ``id`` cannot be reused by another."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.obj is self.obj


def _traced(*trees: Any) -> bool:
    """Whether any leaf of ``trees`` is a tracer (the call is inside ``jit``, ``vmap``, a scan …)."""
    return any(isinstance(leaf, jax.core.Tracer) for tree in trees for leaf in jax.tree.leaves(tree))


def _spec(tree: PyTree) -> tuple:
    """Tree structure, shapes and dtypes of ``tree``: the part of a cache key its values do not enter."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((jnp.shape(a), jnp.result_type(a)) for a in leaves)


def _flat_like(params: PyTree) -> jax.ShapeDtypeStruct:
    """The ``(n,)`` shape and dtype of ``ravel_pytree(params)[0]``, without concatenating anything."""
    leaves = jax.tree.leaves(params)
    size = sum(int(np.prod(jnp.shape(a), dtype=np.int64)) for a in leaves)
    return jax.ShapeDtypeStruct((size,), jnp.result_type(*leaves) if leaves else jnp.float32)


def _hashable_options(options: dict) -> tuple | None:
    """``options`` as a sorted tuple for a cache key, or ``None`` if a value is unhashable."""
    items = tuple(sorted(options.items()))
    try:
        hash(items)
    except TypeError:
        return None
    return items


@functools.lru_cache(maxsize=32)
def _compiled_solver(loss: _ByIdentity, params_spec: tuple, kind: str, k: int, precision: str,
                     options: tuple, start: tuple):
    """``(program, consts)`` for :func:`eigsh` (``kind="hessian"``) or
    :func:`preconditioned_eigsh` (``kind="preconditioned"``) of ``loss.obj`` on parameters of
    ``params_spec``: ``program(params, consts, key, v0, precond) -> Eigenpairs``, jitted, and the
    arrays the loss closes over (hoisted out of its jaxpr so the program takes them as
    arguments). ``start`` is part of the key only to tell a key start from a ``v0`` of a shape."""
    del start
    treedef, shapes = params_spec
    example = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in shapes])
    closed = jax.make_jaxpr(loss.obj)(example)
    out = closed.out_avals
    if len(out) != 1 or out[0].shape != ():
        got = [a.shape for a in out] if len(out) != 1 else out[0].shape
        raise ValueError(f"loss_fn must return a scalar; it returned shape {got}")
    jaxpr, consts = closed.jaxpr, list(closed.consts)
    if _traced(consts):  # it closes over a tracer of an enclosing trace: run inline, keep nothing
        return None
    opts = dict(options)

    def pure_loss(consts):
        return lambda p: jax.core.eval_jaxpr(jaxpr, consts, *jax.tree.leaves(p))[0]

    def program(params, consts, key, v0, precond):
        loss_fn = pure_loss(consts)
        if kind == "preconditioned":
            return _preconditioned_inline(loss_fn, params, precond, key=key, v0=v0, precision=precision, **opts)
        return _eigsh_inline(loss_fn, params, k, key=key, v0=v0, precision=precision, **opts)

    return jax.jit(program), consts


def clear_compiled() -> None:
    """Drop the compiled one-off solvers kept between calls (see the module docstring); the next
    call compiles again. ``eoslib.engine.train.clear_compiled()`` calls it too."""
    _compiled_solver.cache_clear()


def _cached_call(kind: str, loss_fn: LossFn, params: PyTree, k: int, *, key, v0, precond, precision: str,
                 options: dict):
    """The compiled solver's result, or ``None`` when the call must run inline (inside a trace,
    or with an option that cannot be part of a cache key). Arguments are checked before anything
    is traced; a non-scalar loss is reported when it is first compiled."""
    if _traced(params, key, v0, precond):
        return None
    opts = _hashable_options(options)
    if opts is None:
        return None
    like = _flat_like(params)
    linalg.check_operator_call(like, k, key=key, v0=v0, **options)
    start = ("key",) if v0 is None else ("v0", tuple(jnp.shape(v0)), str(jnp.result_type(v0)))
    compiled = _compiled_solver(_ByIdentity(loss_fn), _spec(params), kind, int(k), precision, opts, start)
    if compiled is None:
        return None
    program, consts = compiled
    return program(params, consts, key, v0, precond)


def eigsh(
    loss_fn: LossFn,
    params: PyTree,
    k: int,
    *,
    key: PRNGKeyArray | None = None,
    v0: Float[Array, " n"] | Float[Array, "n b"] | None = None,
    precision: str = "highest",
    **options: Any,
) -> linalg.Eigenpairs:
    """Top-k eigenpairs of the Hessian with residuals and the HVP count (:class:`eoslib.engine.linalg.Eigenpairs`).

    Start from ``v0`` (e.g. the previous probe's eigenvectors, to warm-start) or from a random
    vector drawn with ``key``. ``options`` go to :func:`eoslib.engine.linalg.operator_eigsh`
    (``method="block"`` (default), ``"thick"`` or ``"lobpcg"``; ``stop=`` the stopping rule), and
    from there to the solver. The
    arguments (``v0``'s shape against the number of parameters, ``k`` and the options) are
    checked first, then that ``loss_fn`` is scalar, and only then is the HVP built.

    On concrete parameters the whole solve is one compiled program, kept for the next call with
    the same ``loss_fn`` object, shapes and settings (see the module docstring).
    """
    result = _cached_call("hessian", loss_fn, params, k, key=key, v0=v0, precond=None,
                          precision=precision, options=options)
    if result is not None:
        return result
    return _eigsh_inline(loss_fn, params, k, key=key, v0=v0, precision=precision, **options)


def _eigsh_inline(loss_fn, params, k, *, key, v0, precision, **options) -> linalg.Eigenpairs:
    """:func:`eigsh` as part of the enclosing computation (no compiled program of its own)."""
    flat, _ = ravel_pytree(params)

    def make_matvec():
        _check_scalar_loss(loss_fn, params)
        return flat_hvp(loss_fn, params)[0]

    return linalg.operator_eigsh(make_matvec, flat, k, key=key, v0=v0, precision=precision, **options)


def top_eigenpairs(loss_fn: LossFn, params: PyTree, k: int, *, key: PRNGKeyArray, **options: Any):
    """``(eigenvalues (k,), eigenvectors (n, k))`` of the Hessian of ``loss_fn`` at ``params``:
    largest algebraic first, orthonormal columns in ``ravel_pytree(params)`` order."""
    result = eigsh(loss_fn, params, k, key=key, **options)
    return result.values, result.vectors


def sharpness(loss_fn: LossFn, params: PyTree, *, key: PRNGKeyArray, **options: Any) -> Scalar:
    """S(θ) = λ₁, the largest algebraic eigenvalue of the Hessian."""
    return eigsh(loss_fn, params, 1, key=key, **options).values[0]


def sharpness_gradient(loss_fn: LossFn, params: PyTree, v: Float[Array, " n"]) -> PyTree:
    """``∇S = ∇_θ (vᵀ H(θ) v)`` for the flat unit eigenvector ``v`` held fixed; a PyTree."""
    _, unravel = ravel_pytree(params)
    u = unravel(v)

    def curvature_along_v(p):
        return jax.tree.reduce(jnp.add, jax.tree.map(jnp.vdot, u, hvp(loss_fn, p, u)))

    return jax.grad(curvature_along_v)(params)


def alpha_beta(grad_loss: PyTree, grad_sharpness: PyTree) -> tuple[Scalar, Scalar]:
    """α = −⟨∇L, ∇S⟩ (how fast GD's step raises S) and β = ‖∇S‖² (Damian et al. 2023)."""
    inner = jax.tree.reduce(jnp.add, jax.tree.map(jnp.vdot, grad_loss, grad_sharpness))
    norm2 = jax.tree.reduce(jnp.add, jax.tree.map(jnp.vdot, grad_sharpness, grad_sharpness))
    return -inner, norm2


def directional_derivative(loss_fn: LossFn, params: PyTree, direction: PyTree, order: int) -> Scalar:
    """``d^order/dt^order loss_fn(params + t · direction)`` at t = 0, exactly (nested ``jvp``).

    ``direction`` is a PyTree like ``params``; ``order`` ≥ 1 (1..4 are the ones the book uses).
    """
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order={order!r} must be an integer ≥ 1")
    _check_scalar_loss(loss_fn, params)

    def along(t):
        return loss_fn(jax.tree.map(lambda p, d: p + t * d, params, direction))

    f = along
    for _ in range(order):
        f = (lambda g: lambda t: jax.jvp(g, (t,), (jnp.ones_like(t),))[1])(f)
    leaf = jax.tree.leaves(params)[0]
    return f(jnp.zeros((), leaf.dtype))


def kappa_finite_difference(loss_fn: LossFn, params: PyTree, v: Float[Array, " n"], radius: float) -> Scalar:
    """The finite-difference κ proxy along the flat unit vector ``v`` at step ``radius``.

    ``12 [L(θ+rv) + L(θ−rv) − 2L(θ) − r² vᵀHv] / r⁴`` = D⁴L[v,v,v,v] + O(r²). Cancellation
    makes it noisy for small r in float32; compare with ``directional_derivative(..., 4)``.
    """
    flat, unravel = ravel_pytree(params)
    loss_at = lambda x: loss_fn(unravel(x))
    matvec, _ = flat_hvp(loss_fn, params)
    r = radius
    even = loss_at(flat + r * v) + loss_at(flat - r * v) - 2 * loss_at(flat)
    return 12 * (even - r**2 * jnp.vdot(v, matvec(v))) / r**4


def preconditioned_sharpness(
    loss_fn: LossFn, params: PyTree, precond: PyTree, *, key: PRNGKeyArray | None = None, **options: Any
) -> Scalar:
    """λ₁(P^{-1/2} H P^{-1/2}): the value of :func:`preconditioned_eigsh`."""
    return preconditioned_eigsh(loss_fn, params, precond, key=key, **options).values[0]


def preconditioned_eigsh(
    loss_fn: LossFn, params: PyTree, precond: PyTree, *, key: PRNGKeyArray | None = None, **options: Any
) -> linalg.Eigenpairs:
    """The top eigenpair of P^{-1/2} H P^{-1/2}, with its residual and convergence (its value
    λ₁ is :func:`preconditioned_sharpness`), for the diagonal preconditioner ``precond`` (a PyTree like
    ``params`` of positive entries, e.g. Adam's ``√v̂ + ε``). GD with step ``η P⁻¹ ∇L`` is stable
    on the quadratic model iff this is below 2/η. Start the solver from ``key`` (random) or from
    ``v0=`` (a warm start, in ``ravel_pytree`` order); ``options`` go to
    :func:`eoslib.engine.linalg.operator_eigsh`.

    Raises:
      ValueError: ``precond`` not shaped like ``params`` (the same tree, the same leaf shapes),
        or a bad solver argument (see :func:`eoslib.engine.linalg.eigsh`), before any tracing.
    """
    _check_like_params("precond", precond, params)
    v0 = options.pop("v0", None)
    precision = options.pop("precision", "highest")
    result = _cached_call("preconditioned", loss_fn, params, 1, key=key, v0=v0, precond=precond,
                          precision=precision, options=options)
    if result is not None:
        return result
    return _preconditioned_inline(loss_fn, params, precond, key=key, v0=v0, precision=precision, **options)


def _preconditioned_inline(loss_fn, params, precond, *, key, v0, precision, **options) -> linalg.Eigenpairs:
    """:func:`preconditioned_eigsh` as part of the enclosing computation."""
    flat, _ = ravel_pytree(params)

    def make_matvec():
        _check_scalar_loss(loss_fn, params)
        p_inv_sqrt = 1.0 / jnp.sqrt(ravel_pytree(precond)[0])
        matvec, _ = flat_hvp(loss_fn, params)
        return lambda v: p_inv_sqrt * matvec(p_inv_sqrt * v)

    return linalg.operator_eigsh(make_matvec, flat, 1, key=key, v0=v0, precision=precision, **options)
