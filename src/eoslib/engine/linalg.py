"""Matrix-free symmetric eigensolvers and subspace distances. Knows nothing about networks.

Operators are ``matvec(v) -> A v`` on flat arrays of shape ``(n,)``; ``A`` must be symmetric.

**Eigensolver.** :func:`eigsh` is a block Lanczos method (Golub & Underwood 1977) with

- reorthogonalisation ``"none"`` (the three-term recurrence only), ``"full"`` (classical
  Gram–Schmidt against the whole basis, always twice), or ``"mpk"``: the Modified Parlett–Kahan
  rule of Wang & Roberts (App. B.1 of the flatness-bias paper, after Parlett 1980 and Abaffy &
  Fodor 2015) — orthogonalise once; accept if the norm kept at least 1/κ of itself (κ = √2,
  "twice is enough"), else orthogonalise a second time; if the second pass again loses more
  than that, declare the vector (near) linearly dependent and replace it by a fresh random
  direction. (The paper's formulas were lost in our copy; this is our reconstruction.)
- early stopping: after every block step the top-k Ritz pairs of the block-tridiagonal
  projection are computed and the iteration stops once every residual ``‖A y − θ y‖`` is at most
  ``tol · max|θ|``; an eigenvalue is then accurate to about ``residual² / gap``.
- explicit restarts from the current top Ritz vectors when the basis buffer fills up.
- warm starts: pass the previous eigenvectors as ``v0`` (shape ``(n, b)``); on a slowly drifting
  matrix this converges in a few steps (this is how the training loop tracks eigenpairs).

Eigenvalues are the largest **algebraic** ones: a large negative eigenvalue is never returned as
the top one. A block (``block_size ≥`` the multiplicity) is what finds repeated eigenvalues; a
single start vector sees only one direction of each eigenspace.

**Thick restart.** :func:`thick_restart_eigsh` is single-vector Lanczos with thick restarts
(Krylov–Schur, symmetric case): across a restart it keeps the best ``keep`` Ritz vectors *and* the
residual direction, so a cold top-k costs about as many operator applications as ARPACK's
implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``), where the block method above, which
restarts from the block's Ritz vectors alone, spends several times more. The block method remains
the one for repeated eigenvalues (a single start vector sees one direction of each eigenspace) and
for warm starts from a block of previous eigenvectors.

**Warm starts from the probe history.** :func:`history_eigsh` starts a single-vector probe from the
top Ritz vector of the span of the last few probes' eigenvectors (Rayleigh–Ritz, one product per
vector, the first Lanczos product reused): an extrapolation whose step the current operator picks.
Measured along an EoS run it is the start that brought the warm probe under 5 HVPs at the edge
(``benchmarks/README.md``); the training loop's probe does not use it.

**LOBPCG.** :func:`lobpcg` (Rayleigh–Ritz on the block, its residuals and its previous update;
k operator applications per iteration) is the warm probe of other EoS code; it is here so that the
two can be compared by measured cost (``benchmarks/README.md``).

**Stopping.** Every solver takes ``stop``: ``"residual"`` (the default) stops when each wanted
residual ``‖A y − θ y‖`` is at most ``tol · max|θ|``; ``"eigenvalue"`` when each wanted
eigenvalue's a-posteriori error bound (:func:`eigenvalue_error_bounds`, second order in the
residual: ``‖r‖² / gap``) is. An eigenvalue is accurate to second order in the residual but its
eigenvector only to first order (``‖r‖ / gap``), so the eigenvalue rule is for callers that use
the values only; those that use the vectors (alignments, directions) keep the residual rule.
Results carry the bound either way (``Eigenpairs.error_bounds``). The bound's gap is estimated
from the other Ritz values, and a warm start stopped after a few steps overestimates it (the other
Ritz values still lie far below λ₂): measured, the bound fell below the actual error in 7 of 64
dense reference cases at loose tolerances (``tests/test_warm_probes.py``) and in about a third of
the warm probes along an EoS run, and it did not lower the median HVPs of those probes at the same
accuracy (``benchmarks/README.md``). The residual rule stays the default everywhere.

**Precision.** Dots run at ``precision`` (default ``"highest"``): TF32 corrupts eigenvalues on
GPUs. The operator's own matmuls follow ``jax.default_matmul_precision`` (see
:mod:`eoslib.engine.hessian`, which sets it).

**Batched LAPACK on CPU.** Under ``vmap`` (sweeps) on a CPU the small dense factorisations (QR,
``eigh``, SVD) are mapped over the batch one matrix at a time (:func:`unbatched`) instead of
calling XLA's batched LAPACK kernels (on other platforms, e.g. a GPU, the batched kernel runs as
usual): on XLA CPU those split a large batch over the intra-op thread pool and
block until the pieces finish, and two of them running at once on a 2-thread pool wait for each
other forever (seen as a sweep with probes hanging at 0% CPU on a 2-core machine; ``gdb`` shows
both ``tf_XLAEigen`` threads in ``jax::ParallelBatchMap`` → ``BlockingCounter::Wait``).

**Sweeps on a CPU.** ``vmap`` of an eigensolve (a sweep's probes) runs its ``while`` loops until
the slowest member stops and merges every loop variable of every member with a ``select`` at every
iteration, the whole Lanczos basis included; :func:`one_member_at_a_time` makes a solve's ``vmap``
run the members one after another on a CPU (``train.run``'s probes use it), and
:func:`member_cond` keeps a rare branch (a breakdown's replacement directions, MPK's second pass)
from running for every member at every step (``benchmarks/README.md``, "Where the book-scale
chapters spend their time").

**Subspaces.** :func:`principal_angles`, :func:`grassmann_distance` and
:func:`cosine_grassmann_similarity` (App. B.2 of the flatness-bias paper: ``cos(d_G / √k)``,
which is ``|cos|`` between two vectors when k = 1; reconstructed, as above).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

Matvec = Callable[[Float[Array, " n"]], Float[Array, " n"]]
REORTHO_MODES = ("none", "full", "mpk")
KAPPA = math.sqrt(2.0)  # Parlett–Kahan: "twice is enough"
EIGSH_OPTIONS = ("block_size", "num_iters", "reortho", "tol", "stop", "max_restarts", "seed")  # eigsh's keywords
THICK_OPTIONS = ("num_vectors", "keep", "tol", "stop", "max_restarts", "seed")  # thick_restart_eigsh's keywords
LOBPCG_OPTIONS = ("tol", "stop", "max_iters", "seed")  # lobpcg's keywords
METHODS = ("block", "thick", "lobpcg")
STOP_RULES = ("residual", "eigenvalue")  # what ``tol`` bounds: the residual or the eigenvalue error


def unbatched(fn: Callable) -> Callable:
    """``fn`` (of array arguments, returning arrays) with a batching rule that, on CPU, maps it
    over the batch with ``lax.map`` so it never runs there as one batched kernel; on any other
    platform the batch runs as ``vmap(fn)`` (the batched kernel) as usual. Values are unchanged.
    Why: see "Batched LAPACK on CPU" in the module docstring. The platform is chosen by
    ``jax.lax.platform_dependent`` when the computation is lowered, so it is that of the device
    the computation runs on (not the default backend). Nested vmaps map at every level."""

    wrapped = jax.custom_batching.custom_vmap(fn)

    @wrapped.def_vmap
    def rule(axis_size, in_batched, *args):
        def one_at_a_time(*args):
            full = [a if batched else jnp.broadcast_to(a, (axis_size,) + jnp.shape(a))
                    for a, batched in zip(args, in_batched)]
            return jax.lax.map(lambda a: wrapped(*a), tuple(full))

        def batched_kernel(*args):
            return jax.vmap(fn, in_axes=tuple(0 if batched else None for batched in in_batched))(*args)

        out = jax.lax.platform_dependent(*args, cpu=one_at_a_time, default=batched_kernel)
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


def one_member_at_a_time(fn: Callable) -> Callable:
    """``fn`` (of pytrees of arrays, returning arrays) whose ``vmap`` on a CPU runs the members one
    after another (``lax.map`` over the batched arguments; the unbatched ones are shared, not
    copied), and elsewhere is ``vmap(fn)`` as usual. Each member's values are those of ``fn`` on
    that member alone.

    For an iterative solver under ``vmap`` (a sweep's probes): ``vmap`` of a ``while_loop`` with a
    per-member stopping test runs until the slowest member stops and merges every loop variable
    of every member with a ``select`` at every iteration, and an index it carries (a Lanczos
    step's row of the basis) becomes a per-member gather or scatter. For block Lanczos on a
    656,810-parameter network the basis buffer is 108 MB per member, and a vmapped top-1 solve of
    5 members took ~60× one member's on the 2-core CPU, where members in sequence take 5×
    (``benchmarks/README.md``). On a GPU the batched loop keeps the device busy and stays.
    The platform is JAX's default backend when the batching rule runs (when the vmapped program
    is traced). Traced values ``fn`` closes over are made explicit arguments
    (``jax.closure_convert``) before the batching rule sees them."""

    def call(*args):
        converted, consts = jax.closure_convert(fn, *args)
        wrapped = jax.custom_batching.custom_vmap(converted)

        @wrapped.def_vmap
        def rule(axis_size, in_batched, *all_args):
            leaves, treedef = jax.tree.flatten(all_args)
            flags = jax.tree.leaves(in_batched)
            if jax.default_backend() != "cpu":
                in_axes = jax.tree.unflatten(treedef, [0 if b else None for b in flags])
                out = jax.vmap(converted, in_axes=tuple(in_axes))(*all_args)
            else:
                batched = [a for a, b in zip(leaves, flags) if b]

                def one(member):
                    it = iter(member)
                    full = [next(it) if b else a for a, b in zip(leaves, flags)]
                    return wrapped(*jax.tree.unflatten(treedef, full))  # nested vmaps: each level

                out = jax.lax.map(one, batched)
            return out, jax.tree.map(lambda _: True, out)

        return wrapped(*args, *consts)

    return call


_qr = unbatched(lambda a: jnp.linalg.qr(a)[0])
_eigh = unbatched(lambda a: tuple(jnp.linalg.eigh(a)))
_singular_values = unbatched(lambda a: jnp.linalg.svd(a, compute_uv=False))


class Eigenpairs(NamedTuple):
    """Result of :func:`eigsh`.

    Attributes:
      values: the k largest algebraic eigenvalues, descending, shape ``(k,)``.
      vectors: orthonormal eigenvectors as columns, shape ``(n, k)``.
      residuals: ``‖A y_i − θ_i y_i‖`` for each pair, shape ``(k,)``.
      matvecs: operator applications spent (scalar int).
      converged: whether every residual met the tolerance (scalar bool).
      error_bounds: a-posteriori estimates of the eigenvalue errors, shape ``(k,)``
        (:func:`eigenvalue_error_bounds` for the Lanczos solvers, the residual for
        :func:`lobpcg`); ``None`` where a result was built by hand.
    """

    values: Float[Array, " k"]
    vectors: Float[Array, "n k"]
    residuals: Float[Array, " k"]
    matvecs: Int[Array, ""]
    converged: Bool[Array, ""]
    error_bounds: Float[Array, " k"] | None = None


class KrylovDecomposition(NamedTuple):
    """``A Q ≈ Q T + (next block) B``: what one Lanczos cycle produced (see :func:`lanczos`).

    Attributes:
      tridiagonal: the block-tridiagonal projection ``T = Qᵀ A Q``, shape ``(m·b, m·b)``.
      basis: the Lanczos vectors as columns, shape ``(n, m·b)``.
      next_norm: the coupling ``B_{m}`` to the next block, shape ``(b, b)``.
    """

    tridiagonal: Float[Array, "mb mb"]
    basis: Float[Array, "n mb"]
    next_norm: Float[Array, "b b"]


def _dot(a, b, precision):
    """A product over a short axis (a basis index, a block column); products over the long axis n
    go through ``_inner``."""
    return jnp.matmul(a, b, precision=precision)


BLOCK_COLUMNS = 8  # _inner: products over n of two blocks this narrow are column-wise reductions


def _inner(S: Float[Array, "n *p"], T: Float[Array, "n *q"], precision) -> Float[Array, "*p *q"]:
    """``Sᵀ T`` contracted over the long leading axis n (the operator's dimension): the one way the
    solvers here contract over n. S and T are ``(n, p)`` blocks or ``(n,)`` vectors (a basis stored
    as rows V ``(M, n)`` is passed as ``V.T``).

    The rule: when both sides have at most :data:`BLOCK_COLUMNS` columns (a block's Gram matrix,
    a Rayleigh quotient, a vector against a block) the product is made as column-wise reductions,
    at the precision of the dtype whatever ``precision`` (a reduction is never TF32); against a
    wider basis it is a ``dot`` at ``precision``. On XLA CPU in float32, inside ``jit``, a ``dot``
    contracting the long leading axis of two (n, 2) or (n, 3) blocks was off by 2e-4 relative at
    n = 656,810 (1.4e-5 at n = 1e5; a unit vector's squared norm came out 0.99966), which made
    block Lanczos with b = 2 or 3 return eigenvalues 1.2e-4 too high and stalled LOBPCG's
    Rayleigh–Ritz step; with 1 or 4-10 columns, or outside ``jit``, it was ~1e-7. The reductions
    are accurate to rounding at every width, but against a basis of ~40 vectors they took twice
    the dot's time, which made a top-1 block-Lanczos probe 3.6x slower; the basis products were
    not the ones that went wrong (``benchmarks/check_block_dot.py``, ``benchmarks/README.md``)."""
    S2 = S[:, None] if S.ndim == 1 else S
    T2 = T[:, None] if T.ndim == 1 else T
    if max(S2.shape[1], T2.shape[1]) > BLOCK_COLUMNS:
        out = jnp.matmul(S2.T, T2, precision=precision)
    else:
        out = jnp.stack([jnp.sum(S2[:, i:i + 1] * T2, axis=0) for i in range(S2.shape[1])])
    if T.ndim == 1:
        out = out[:, 0]
    return out[0] if S.ndim == 1 else out


def _check_reortho(reortho):
    if reortho not in REORTHO_MODES:
        raise ValueError(f"reortho={reortho!r} is not supported; choose one of {list(REORTHO_MODES)}")


def _check_stop(stop):
    if not isinstance(stop, str) or stop not in STOP_RULES:
        raise ValueError(f"stop={stop!r} is not supported; choose one of {list(STOP_RULES)}")


def _check_lobpcg_stop(stop):
    _check_stop(stop)
    if stop != "residual":
        raise ValueError(f"stop={stop!r} is not available for lobpcg (its Rayleigh–Ritz space does not "
                         "estimate the gap the eigenvalue bound needs); choose one of ['residual']")


def eigenvalue_error_bounds(
    theta: Float[Array, " p"], residuals: Float[Array, " p"], valid: Bool[Array, " p"] | None = None
) -> Float[Array, " p"]:
    """A-posteriori bounds on the error of each Ritz value, from the Ritz pairs of one subspace.

    For a Ritz pair ``(θ_i, y_i)`` with residual ``r_i = ‖A y_i − θ_i y_i‖`` (unit ``y_i``):

    - first order, always: some eigenvalue lies within ``r_i`` of ``θ_i``;
    - second order (Kato–Temple; Kato 1949, Temple 1928): if the eigenvalue ``λ_i`` is the only one
      within ``δ_i`` of ``θ_i``, then ``|θ_i − λ_i| ≤ r_i² / δ_i``.

    The gap ``δ_i`` is estimated from the other Ritz pairs: each interval ``θ_j ± r_j`` holds an
    eigenvalue, so ``δ_i = min over j ≠ i of (|θ_i − θ_j| − r_j)``, the distance to the nearest
    edge of another pair's interval; every pair of the subspace counts, not only the neighbours.
    This is an estimate, not a proof: an eigenvalue that the subspace has not seen at all can lie
    closer. The bound returned is ``min(r_i, r_i² / δ_i)`` where ``δ_i > 0``, else ``r_i``.

    Args:
      theta: Ritz values, shape ``(p,)``, any order.
      residuals: their residual norms, shape ``(p,)``, ≥ 0.
      valid: which entries are real Ritz pairs (``False``: padding, ignored), shape ``(p,)``;
        default all.

    Returns:
      the bound for each pair, shape ``(p,)``, in the units of ``theta``.
    """
    theta, residuals = jnp.asarray(theta), jnp.asarray(residuals)
    p = theta.shape[0]
    valid = jnp.ones(p, bool) if valid is None else jnp.asarray(valid)
    distance = jnp.abs(theta[:, None] - theta[None, :]) - residuals[None, :]  # (i, j)
    others = valid[None, :] & ~jnp.eye(p, dtype=bool)
    gap = jnp.min(jnp.where(others, distance, jnp.inf), axis=1)
    usable = (gap > 0) & jnp.isfinite(gap)
    quadratic = residuals**2 / jnp.where(usable, gap, 1.0)
    return jnp.where(usable, jnp.minimum(residuals, quadratic), residuals)


def _stopping_measure(stop, theta, residuals, valid):
    """What ``tol`` bounds for each Ritz pair: its residual, or its eigenvalue error bound."""
    if stop == "residual":
        return residuals
    return eigenvalue_error_bounds(theta, residuals, valid)


def _integer(name: str, value, low: int, high: int | None = None, allowed: str | None = None) -> int:
    """``value`` as a Python int (anything with ``__index__``: int, ``np.int64``, a concrete 0-d
    integer array), checked to lie in ``[low, high]``; a TypeError or ValueError naming ``name``,
    the value and the allowed range otherwise."""
    allowed = allowed or (f"an integer ≥ {low}" if high is None else f"an integer between {low} and {high}")
    if isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be {allowed}, not a bool")
    try:
        index = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}={value!r} must be {allowed}") from None
    if index < low or (high is not None and index > high):
        raise ValueError(f"{name}={value!r} must be {allowed}")
    return index


def _start_block(v0, b, seed):
    """An orthonormal ``(n, b)`` start block from ``v0`` (``(n,)`` or ``(n, b')``)."""
    v0 = jnp.asarray(v0)
    block = v0[:, None] if v0.ndim == 1 else v0
    n = block.shape[0]
    if block.shape[1] < b:
        extra = jax.random.normal(jax.random.key(seed), (n, b - block.shape[1]), block.dtype)
        block = jnp.concatenate([block, extra], axis=1)
    q = _qr(block[:, :b])
    return q


def member_cond(pred, true_fn: Callable, false_fn: Callable, *operands):
    """``jax.lax.cond(pred, true_fn, false_fn, *operands)``, except under ``vmap`` with a batched
    predicate, where it runs ``true_fn`` only if the predicate holds for some member.

    ``vmap`` of ``lax.cond`` with a batched predicate computes *both* branches for every member
    and selects per member, every time. For a rare branch (a breakdown's replacement directions,
    MPK's second pass) that is work no member uses: here, when no member's predicate holds, only
    ``false_fn`` runs; when one does, both branches run and are selected per member, as ``vmap``
    of ``lax.cond`` does. The values are those of ``lax.cond`` either way. Every traced value the
    branches read must be passed in ``operands`` (the batching rule sees only those). Under nested
    ``vmap`` the innermost level skips the branch; the outer ones select as usual."""

    @jax.custom_batching.custom_vmap
    def call(pred, operands):
        return jax.lax.cond(pred, true_fn, false_fn, *operands)

    @call.def_vmap
    def rule(axis_size, in_batched, pred, operands):
        pred_batched, operands_batched = in_batched
        full = jax.tree.map(lambda a, b: a if b else jnp.broadcast_to(a, (axis_size,) + jnp.shape(a)),
                            operands, operands_batched)
        branch = lambda fn: jax.vmap(lambda ops: fn(*ops))
        if not pred_batched:
            out = jax.lax.cond(pred, branch(true_fn), branch(false_fn), full)
        else:
            per_member = jax.vmap(lambda p, ops: jax.lax.cond(p, true_fn, false_fn, *ops))
            out = jax.lax.cond(jnp.any(pred), lambda ops: per_member(pred, ops), branch(false_fn), full)
        return out, jax.tree.map(lambda _: True, out)

    return call(pred, tuple(operands))


def _orthogonalize(W, V, precision):
    """One classical Gram–Schmidt pass of the columns of W (n, b) against the rows of V (M, n)."""
    return W - _dot(V.T, _inner(V.T, W, precision), precision)


def _reorthogonalize(W, V, reortho, precision):
    """Reorthogonalise W against the basis V; return W and a per-column 'dependent' flag."""
    norm0 = jnp.linalg.norm(W, axis=0)
    if reortho == "none":
        return W, jnp.zeros(W.shape[1], bool)
    W1 = _orthogonalize(W, V, precision)
    norm1 = jnp.linalg.norm(W1, axis=0)
    if reortho == "full":
        return _orthogonalize(W1, V, precision), jnp.zeros(W.shape[1], bool)
    # mpk: keep the first pass where it kept ≥ 1/κ of the norm; otherwise orthogonalise a second
    # time (only then is the second pass computed), and declare dependence if that pass again
    # lost more than 1 − 1/κ of what was left.
    accept_first = norm1 * KAPPA >= norm0

    def second_pass(W1, V, norm1, accept_first):
        W2 = _orthogonalize(W1, V, precision)
        norm2 = jnp.linalg.norm(W2, axis=0)
        dependent = ~accept_first & (norm2 * KAPPA < norm1)
        return jnp.where(accept_first[None, :], W1, W2), dependent

    def first_only(W1, V, norm1, accept_first):
        return W1, jnp.zeros(W1.shape[1], bool)

    return member_cond(~jnp.all(accept_first), second_pass, first_only, W1, V, norm1, accept_first)


def _orthonormal_columns(W, precision):
    """``W = U diag(σ) Zᵀ`` from the eigen-decomposition of the b × b Gram matrix WᵀW: an SVD
    at O(n b²) cost instead of LAPACK's on a tall n × b matrix."""
    if W.shape[1] == 1:  # a single vector: its norm, without a (GPU-latency-bound) eigensolver call
        sigma = jnp.linalg.norm(W, axis=0)
        return W / jnp.where(sigma > 0, sigma, 1.0)[None, :], sigma, jnp.ones((1, 1), W.dtype)
    gram = _inner(W, W, precision)
    lam, Z = _eigh((gram + gram.T) / 2)
    sigma = jnp.sqrt(jnp.maximum(lam, 0.0))
    U = _dot(W, Z, precision) / jnp.where(sigma > 0, sigma, 1.0)[None, :]
    return U, sigma, Z.T


def _next_block(W, dependent, V, floor, key, precision):
    """Orthonormalise the new block: ``W ≈ Q B`` with ``B = Σ Zᵀ`` (b × b).

    A rank-revealing factorisation (the SVD, through the Gram matrix, twice for accuracy) is
    needed: the columns of W may each be large yet span fewer dimensions, which QR does not
    reveal. Directions with singular value ≤ ``floor`` (or columns MPK declared dependent) carry
    no new information: they are replaced by random directions orthogonal to the basis and to the
    kept directions, and their rows of B are zeroed, so T stays the exact projection (deflation).
    The random directions are only built when some direction is dead.
    """
    W = jnp.where(dependent[None, :], 0.0, W)
    U1, sigma1, Zt1 = _orthonormal_columns(W, precision)
    dead = sigma1 <= floor
    U1 = jnp.where(dead[None, :], 0.0, U1)
    U, sigma2, Zt2 = _orthonormal_columns(U1, precision)  # second pass restores orthonormality
    B = _dot(sigma2[:, None] * Zt2, sigma1[:, None] * Zt1, precision)  # W ≈ U (Σ₂Z₂ᵀ)(Σ₁Z₁ᵀ)
    dead2 = sigma2 <= 0.5  # directions of U1 that were zeroed come out with σ₂ ≈ 0

    def replace(U, V, key, dead2):
        keep = jnp.where(dead2[None, :], 0.0, U)
        fresh = jax.random.normal(key, U.shape, U.dtype)
        for _ in range(2):
            fresh = _orthogonalize(fresh, V, precision)
            fresh = fresh - _dot(keep, _inner(keep, fresh, precision), precision)
        fresh = _qr(fresh)
        return jnp.where(dead2[None, :], fresh, U)

    # rare (an exact breakdown): under vmap, made only when some member needs it
    Q = member_cond(jnp.any(dead2), replace, lambda U, *_: U, U, V, key, dead2)
    B = jnp.where(dead2[:, None], 0.0, B)
    return Q, B

def _block_tridiagonal_ritz(T, used, k):
    """Top-k Ritz pairs of the leading ``used × used`` block of T (other rows are padding)."""
    return _masked_ritz(T, jnp.arange(T.shape[0]) < used, k)


def _masked_ritz(T, mask, k):
    """Top-k eigenpairs of the symmetric T restricted to the rows and columns where ``mask``
    holds; the others are padding, and their eigenvalues sort after every real one."""
    size = T.shape[0]
    Tm = jnp.where(mask[:, None] & mask[None, :], T, 0.0)
    # padded diagonal below every real eigenvalue (Gershgorin), so top-k are never padding
    lower = jnp.min(jnp.where(mask, jnp.diag(Tm) - jnp.sum(jnp.abs(Tm), axis=1) + jnp.abs(jnp.diag(Tm)), jnp.inf))
    pad = lower - 1.0 - jnp.abs(lower)
    Tm = Tm + jnp.diag(jnp.where(mask, 0.0, pad))
    theta, S = _eigh(Tm)
    return theta[::-1][:k], S[:, ::-1][:, :k]


def _krylov_cycle(matvec, Q0, k, num_steps, reortho, tol, precision, early_stop, seed, stop="residual"):
    """Up to ``num_steps`` block Lanczos steps from the orthonormal block Q0 (n, b)."""
    n, b = Q0.shape
    size = num_steps * b
    dtype = Q0.dtype
    block_matvec = jax.vmap(matvec, in_axes=1, out_axes=1)
    tiny = 100 * jnp.finfo(dtype).eps

    def step(state):
        j, V, T, Q, Q_prev, B, _, _, _ = state
        AQ = block_matvec(Q)
        scale = jnp.linalg.norm(AQ) + jnp.finfo(dtype).tiny
        A_j = _inner(Q, AQ, precision)
        A_j = (A_j + A_j.T) / 2
        W = AQ - _dot(Q, A_j, precision) - _dot(Q_prev, B.T, precision)
        V = jax.lax.dynamic_update_slice(V, Q.T, (j * b, 0))
        W, dependent = _reorthogonalize(W, V, reortho, precision)
        Q_next, R = _next_block(W, dependent, V, tiny * scale,
                                jax.random.fold_in(jax.random.key(seed), j), precision)
        T = jax.lax.dynamic_update_slice(T, A_j, (j * b, j * b))
        # the coupling to the next block enters T only if that block is inside the buffer
        nxt = jnp.minimum(j + 1, num_steps - 1) * b
        coupled = jax.lax.dynamic_update_slice(jax.lax.dynamic_update_slice(T, R, (nxt, j * b)),
                                               R.T, (j * b, nxt))
        T = jnp.where(j + 1 < num_steps, coupled, T)
        used = (j + 1) * b
        # all Ritz pairs (padding last): the eigenvalue rule's gaps need the unwanted ones too
        theta, S = _block_tridiagonal_ritz(T, used, size)
        last_rows = jax.lax.dynamic_slice(S, (j * b, 0), (b, size))
        residuals = jnp.linalg.norm(_dot(R, last_rows, precision), axis=0)
        measure = _stopping_measure(stop, theta, residuals, jnp.arange(size) < used)[:k]
        converged = (used >= k) & jnp.all(measure <= tol * jnp.max(jnp.abs(theta[:k])))
        bounds = eigenvalue_error_bounds(theta, residuals, jnp.arange(size) < used)[:k]
        return j + 1, V, T, Q_next, Q, R, converged, residuals[:k], bounds

    def cond(state):
        j, *_, converged, _, _ = state
        return (j < num_steps) & ~(converged & early_stop)

    init = (jnp.array(0), jnp.zeros((size, n), dtype), jnp.zeros((size, size), dtype), Q0,
            jnp.zeros_like(Q0), jnp.zeros((b, b), dtype), jnp.array(False), jnp.zeros(k, dtype),
            jnp.zeros(k, dtype))
    j, V, T, Q_next, _, R, converged, residuals, bounds = jax.lax.while_loop(cond, step, init)
    return j, V, T, R, converged, residuals, bounds


def lanczos(num_iters: int, *, reortho: str = "full", precision: str = "highest", seed: int = 0):
    """A Lanczos factory: ``decompose = lanczos(m); decompose(matvec, v0)`` runs exactly ``m``
    (block) steps and returns the :class:`KrylovDecomposition`.

    ``v0`` of shape ``(n,)`` gives the classical single-vector Lanczos; ``(n, b)`` a block method.
    Useful for studying the tridiagonalisation itself (e.g. loss of orthogonality without
    reorthogonalisation); for eigenpairs use :func:`eigsh`.
    """
    _check_reortho(reortho)
    num_iters = _integer("num_iters", num_iters, 1)

    def decompose(matvec: Matvec, v0) -> KrylovDecomposition:
        v0 = _check_start(v0, None)
        b = 1 if v0.ndim == 1 else v0.shape[1]
        Q0 = _start_block(v0, b, seed)
        _, V, T, R, _, _, _ = _krylov_cycle(matvec, Q0, 1, num_iters, reortho, 0.0, precision,
                                            False, seed)
        return KrylovDecomposition(T, V.T, R)

    return decompose


def _check_start(v0, n: int | None):
    """``v0`` as an array of shape ``(n,)`` or ``(n, b)`` with ``1 ≤ b ≤ n`` and a floating dtype
    (``n`` is v0's own length when None). Only shapes are read: works on tracers."""
    v0 = jnp.asarray(v0)
    if v0.ndim not in (1, 2):
        raise ValueError(f"v0 must have shape (n,) or (n, b); got shape {v0.shape}")
    if n is not None and v0.shape[0] != n:
        raise ValueError(f"v0 has shape {v0.shape}, but the operator has dimension n={n}: v0 must "
                         f"have shape ({n},) or ({n}, b)")
    if v0.ndim == 2 and not 1 <= v0.shape[1] <= v0.shape[0]:
        raise ValueError(f"v0 has shape {v0.shape}: a start block (n, b) must have 1 ≤ b ≤ n")
    if not jnp.issubdtype(v0.dtype, jnp.floating):
        raise TypeError(f"v0 has dtype {v0.dtype}; it must be a floating dtype (that of the operator)")
    return v0


def _check_options(n: int, v0, k, block_size, num_iters, max_restarts, tol):
    """Checked ``(k, block, num_iters, max_restarts)`` for :func:`eigsh` on dimension ``n``;
    ``block`` is the block size b that will be used (default: ``k``, or v0's columns if more)."""
    k = _integer("k", k, 1, n, f"an integer between 1 and the dimension n={n}")
    start_columns = 1 if v0.ndim == 1 else v0.shape[1]
    if block_size is None:
        block = max(k, start_columns)
    else:
        block = _integer("block_size", block_size, 1, n, f"an integer between 1 and n={n}")
        if block < k:
            raise ValueError(f"block_size={block_size!r} is smaller than k={k}: a block must hold at "
                             f"least the k wanted eigenvectors (give block_size ≥ {k}, or None)")
    if num_iters is not None:
        num_iters = _integer("num_iters", num_iters, 1, allowed="None or an integer ≥ 1")
    max_restarts = _integer("max_restarts", max_restarts, 0)
    if isinstance(tol, numbers.Real) and not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol={tol!r} must be a finite number ≥ 0")
    return k, block, num_iters, max_restarts


def _validate(matvec, v0, k, block_size, num_iters, max_restarts, tol):
    v0 = _check_start(v0, None)
    n = v0.shape[0]
    k, block, num_iters, max_restarts = _check_options(n, v0, k, block_size, num_iters, max_restarts, tol)
    out = jax.eval_shape(matvec, jax.ShapeDtypeStruct((n,), v0.dtype))
    if getattr(out, "shape", None) != (n,):
        raise ValueError(f"matvec must map an ({n},) array to an ({n},) array; it returned "
                         f"{getattr(out, 'shape', type(out).__name__)}")
    return v0, k, block, num_iters, max_restarts


def eigsh(
    matvec: Matvec,
    v0: Float[Array, " n"] | Float[Array, "n b"],
    k: int,
    *,
    block_size: int | None = None,
    num_iters: int | None = None,
    reortho: str = "full",
    tol: float = 1e-6,
    stop: str = "residual",
    max_restarts: int = 10,
    precision: str = "highest",
    seed: int = 0,
) -> Eigenpairs:
    """The k largest algebraic eigenpairs of a symmetric operator, by block Lanczos.

    Args:
      matvec: ``v -> A v`` on ``(n,)`` arrays; ``A`` symmetric.
      v0: start vector ``(n,)`` or block ``(n, b)`` — e.g. the previous eigenvectors, to warm-start.
      k: how many eigenpairs, an integer (``int``, ``np.int64``, …) between 1 and n.
      block_size: b, between k and n; default ``k`` if ``v0`` is a vector (``max(k,
        v0.shape[1])`` if a block). Missing start columns are drawn from
        ``jax.random.key(seed)``; extra ones are dropped.
      num_iters: block steps per cycle, ≥ 1 (the basis holds ``num_iters · b`` vectors);
        default enough for a Krylov space of ``max(40, 4k)``.
      reortho: ``"full"`` (default), ``"mpk"`` or ``"none"`` (see the module docstring).
      tol: stop when every residual ``‖A y − θ y‖ ≤ tol · max|θ|`` (≥ 0); with
        ``stop="eigenvalue"``, when every eigenvalue error bound is.
      stop: ``"residual"`` (default) or ``"eigenvalue"``: what ``tol`` bounds (see
        :func:`eigenvalue_error_bounds` and "Stopping" in the module docstring).
      max_restarts: cycles after the first (≥ 0), each restarted from the current top Ritz vectors.
      precision: matmul precision of the solver's own dots.
      seed: for extra start columns and for replacing dependent directions.

    Returns:
      :class:`Eigenpairs`; ``converged`` says whether ``tol`` was met (the best estimate is
      returned either way).

    Raises:
      ValueError: a ``v0`` that is not ``(n,)`` or ``(n, b)`` with ``b ≤ n``; an integer option out
        of range (``block_size < k`` included); a negative ``tol``; a ``matvec`` that does not
        map ``(n,)`` to ``(n,)``; an unknown ``reortho`` or ``stop``.
      TypeError: a non-integer ``k``, ``block_size``, ``num_iters`` or ``max_restarts``; a
        non-floating ``v0``.
    """
    _check_reortho(reortho)
    _check_stop(stop)
    v0, k, b, num_iters, max_restarts = _validate(matvec, v0, k, block_size, num_iters, max_restarts, tol)
    n = v0.shape[0]
    if n // b < 2:  # a basis of one block cannot grow (e.g. n = 3, b = 2): solve the small operator densely
        return _dense_eigsh(matvec, v0, k, precision)
    m = num_iters or max(3, -(-max(40, 4 * k) // b) + 1)
    m = min(m, max(1, n // b))
    Q0 = _start_block(v0, b, seed)
    v0_finite = jnp.all(jnp.isfinite(v0))

    def cycle(state):
        restart, Q, matvecs, _, _, _, _, _ = state
        steps, V, T, R, converged, residuals, bounds = _krylov_cycle(
            matvec, Q, k, m, reortho, tol, precision, True, seed + 7919 * restart, stop)
        theta, S = _block_tridiagonal_ritz(T, steps * b, b)  # b Ritz pairs to restart from
        Y = _dot(V.T, S, precision)
        Y = _qr(Y)
        return restart + 1, Y, matvecs + steps * b, converged, theta[:k], Y[:, :k], residuals, bounds

    def cond(state):
        restart, *_, converged, _, _, _, _ = state
        return (restart <= max_restarts) & ~converged

    init = (jnp.array(0), Q0, jnp.array(0), jnp.array(False), jnp.zeros(k, Q0.dtype),
            Q0[:, :k], jnp.full(k, jnp.inf, Q0.dtype), jnp.full(k, jnp.inf, Q0.dtype))
    _, _, matvecs, converged, values, vectors, residuals, bounds = jax.lax.while_loop(cond, cycle, init)
    nan = jnp.where(v0_finite, 0.0, jnp.nan)  # a non-finite start gives NaN, never a silent value
    return Eigenpairs(values + nan, vectors + nan, residuals + nan, matvecs, converged & v0_finite,
                      bounds + nan)



def _dense_eigsh(matvec: Matvec, v0, k: int, precision) -> Eigenpairs:
    """:func:`eigsh` of an operator too small for a Krylov basis of two blocks: the dense matrix
    from ``n`` operator applications (symmetrised), ``eigh``, the top ``k`` pairs descending. A
    non-finite ``v0`` gives NaN, as the Krylov path does."""
    n = v0.shape[0]
    with jax.default_matmul_precision(precision):
        A = jax.vmap(matvec)(jnp.eye(n, dtype=v0.dtype)).T
        w, V = jnp.linalg.eigh(0.5 * (A + A.T))
        values, vectors = w[::-1][:k], V[:, ::-1][:, :k]
        residuals = jnp.linalg.norm(jax.vmap(matvec, in_axes=1, out_axes=1)(vectors) - vectors * values[None, :], axis=0)
    finite = jnp.all(jnp.isfinite(v0))
    nan = jnp.where(finite, 0.0, jnp.nan)
    return Eigenpairs(values + nan, vectors + nan, residuals + nan, jnp.array(n + k), finite, residuals + nan)


def operator_eigsh(
    make_matvec: Callable[[], Matvec],
    like: Float[Array, " n"],
    k: int,
    *,
    key=None,
    v0=None,
    precision: str = "highest",
    method: str = "block",
    **options,
) -> Eigenpairs:
    """:func:`eigsh` (``method="block"``), :func:`thick_restart_eigsh` (``method="thick"``: a
    single start vector; several times fewer operator applications for a cold top-k with k > 1,
    see ``benchmarks/README.md``) or :func:`lobpcg` (``method="lobpcg"``) of the operator that ``make_matvec()`` builds under
    ``jax.default_matmul_precision(precision)`` (so the operator's own matmuls run at that
    precision too), started from ``v0`` or from a random vector drawn with ``key``.

    ``like`` is any ``(n,)`` array of the operator's dimension and dtype. Every argument is
    checked (as :func:`eigsh` checks it, ``v0``'s length against ``like``'s included) before
    ``make_matvec`` is called, so a bad one is reported before the operator (e.g. a linearised
    HVP) is built.
    """
    like = jnp.asarray(like)
    check_operator_call(like, k, key=key, v0=v0, method=method, **options)
    if v0 is None:
        v0 = jax.random.normal(key, like.shape, like.dtype)
    solver = {"block": eigsh, "thick": thick_restart_eigsh, "lobpcg": lobpcg}[method]
    with jax.default_matmul_precision(precision):
        return solver(make_matvec(), v0, k, precision=precision, **options)


def check_operator_call(like, k: int, *, key=None, v0=None, method: str = "block", **options) -> None:
    """The checks :func:`operator_eigsh` makes before it builds the operator: ``like`` a flat
    ``(n,)`` array (or anything with that ``shape`` and a ``dtype``, e.g. a
    ``jax.ShapeDtypeStruct``), a start (``key`` or ``v0``, the latter ``(n,)`` or ``(n, b)``), a
    known ``method`` and its options in range. Only shapes are read (no operator application).

    Raises:
      ValueError, TypeError: as :func:`operator_eigsh`, naming the argument and what is allowed.
    """
    if len(like.shape) != 1:
        raise ValueError(f"like must be a flat (n,) array of the operator's dimension; got shape {like.shape}")
    n = like.shape[0]
    if v0 is None:
        if key is None:
            raise ValueError("give key= (a PRNG key for the start vector) or v0= (a warm start)")
        start = jax.ShapeDtypeStruct((n,), like.dtype)
    else:
        start = _check_start(v0, n)
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {list(METHODS)}")
    allowed = {"block": EIGSH_OPTIONS, "thick": THICK_OPTIONS, "lobpcg": LOBPCG_OPTIONS}[method]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        solver = {"block": "eigsh", "thick": "thick_restart_eigsh", "lobpcg": "lobpcg"}[method]
        raise TypeError(f"unknown {solver} option(s) {unknown} (method={method!r}); the options are {list(allowed)}")
    (_check_lobpcg_stop if method == "lobpcg" else _check_stop)(options.get("stop", "residual"))
    if method == "lobpcg":
        lobpcg_k_max = max(1, n // 3)
        _integer("k", k, 1, lobpcg_k_max, f"an integer between 1 and n // 3 = {lobpcg_k_max}")
        _integer("max_iters", options.get("max_iters", 50), 0)
    elif method == "block":
        _check_reortho(options.get("reortho", "full"))
        _check_options(n, start, k, options.get("block_size"), options.get("num_iters"),
                       options.get("max_restarts", 10), options.get("tol", 1e-6))
    elif len(start.shape) != 1:
        raise ValueError(f"method='thick' starts from one vector of shape ({n},); got v0 of shape {start.shape}")


def top_eigenpairs(matvec: Matvec, v0, k: int, **options) -> tuple[Float[Array, " k"], Float[Array, "n k"]]:
    """``(eigenvalues (k,), eigenvectors (n, k))``: the k largest algebraic eigenpairs, descending,
    orthonormal columns. ``options`` are those of :func:`eigsh`."""
    result = eigsh(matvec, v0, k, **options)
    return result.values, result.vectors


def thick_restart_eigsh(
    matvec: Matvec,
    v0: Float[Array, " n"],
    k: int,
    *,
    num_vectors: int | None = None,
    keep: int | None = None,
    tol: float = 1e-6,
    stop: str = "residual",
    max_restarts: int = 50,
    precision: str = "highest",
    seed: int = 0,
) -> Eigenpairs:
    """The k largest algebraic eigenpairs by single-vector thick-restart Lanczos (Krylov–Schur).

    Thick restart (Wu & Simon 2000; Stewart's Krylov–Schur 2001, symmetric case): a Lanczos basis
    of ``num_vectors`` (m) vectors is built from ``v0`` with full reorthogonalisation over the
    filled part of the buffer only; when it is full, the ``keep`` (l) best Ritz vectors and the
    residual direction are kept and the basis is extended again, so each restart costs ``m − l``
    operator applications instead of ``m``, and nothing learned about the wanted and the nearest
    unwanted eigenvalues is thrown away (a plain restart from the Ritz vectors, :func:`eigsh`, keeps
    only the block). Convergence is tested after every step, so a warm start stops as soon as its
    residuals meet ``tol``; ``matvecs`` counts every operator application.

    Args:
      matvec: ``v -> A v`` on ``(n,)`` arrays; ``A`` symmetric.
      v0: start vector ``(n,)`` (e.g. the previous top eigenvector, to warm-start).
      k: how many eigenpairs.
      num_vectors: m, the basis size; default ``min(n, max(2k + 1, 20))`` (ARPACK's ``ncv``).
      keep: l, Ritz vectors kept across a restart (``k ≤ l < m``); default ``k + (m − k) // 2``.
      tol: stop when every wanted residual ``‖A y − θ y‖ ≤ tol · max|θ|`` (with
        ``stop="eigenvalue"``: every wanted eigenvalue error bound).
      stop: ``"residual"`` (default) or ``"eigenvalue"``, as in :func:`eigsh`.
      max_restarts: restarts after the first basis.
      precision: matmul precision of the solver's own dots.
      seed: for replacement directions after an exact breakdown (an invariant subspace).

    Returns:
      :class:`Eigenpairs`, values descending; ``converged`` says whether ``tol`` was met.

    Raises:
      ValueError: ``v0`` not one vector; an integer option out of range; an unknown ``stop``.
      TypeError: a non-integer option; a non-floating ``v0``.
    """
    return _thick_restart(matvec, v0, k, num_vectors=num_vectors, keep=keep, tol=tol, stop=stop,
                          max_restarts=max_restarts, precision=precision, seed=seed)


def _thick_restart(matvec, v0, k, *, num_vectors, keep, tol, stop, max_restarts, precision, seed,
                   image0=None, start_matvecs=0):
    """:func:`thick_restart_eigsh`; with ``image0`` (``A v0`` for a unit ``v0``) the first Lanczos
    step uses it instead of applying the operator, and ``matvecs`` starts at ``start_matvecs``
    (what the caller spent making ``v0`` and ``image0``)."""
    _check_stop(stop)
    v0 = jnp.asarray(v0)
    if v0.ndim != 1:
        raise ValueError(f"v0 must be one start vector of shape (n,); got shape {v0.shape} "
                         "(use eigsh with a block for repeated eigenvalues)")
    if not jnp.issubdtype(v0.dtype, jnp.floating):
        raise TypeError(f"v0 must be a floating array; got dtype {v0.dtype}")
    n = v0.shape[0]
    max_restarts = _integer("max_restarts", max_restarts, 0)
    k = _integer("k", k, 1, n)
    m = min(n, max(2 * k + 1, 20)) if num_vectors is None else _integer("num_vectors", num_vectors, 1, n)
    if m <= k:
        raise ValueError(f"num_vectors={m} must exceed k={k} (and be at most n={n})")
    l_keep = k + (m - k) // 2 if keep is None else _integer("keep", keep, 1, n)
    if not k <= l_keep < m:
        raise ValueError(f"keep={l_keep} must satisfy k={k} ≤ keep < num_vectors={m}")
    dtype = v0.dtype
    tiny = 100 * jnp.finfo(dtype).eps
    finite = jnp.all(jnp.isfinite(v0))

    # the operator applied to an (n, 1) block under vmap: on XLA CPU a network HVP applied this way
    # ran 3-50x faster than on a bare (n,) vector (benchmarks/README.md); the values are the same
    column_matvec = jax.vmap(matvec, in_axes=1, out_axes=1)

    def ritz(T, used):
        return _block_tridiagonal_ritz(T, used, m)  # all m (padding sorts last)

    def expand(state):
        """Lanczos steps from column ``j`` until the buffer is full or the wanted pairs converge."""

        def step(s):
            j, V, T, beta, matvecs, _, _, _, _ = s
            q = jax.lax.dynamic_slice(V, (j, 0), (1, n))[0]
            if image0 is None:
                w = column_matvec(q[:, None])[:, 0]
                spent = 1
            else:  # the first step's product is known (j = 0 only before any restart); under vmap
                # the cond becomes a select and the product is made anyway, uncounted
                w = jax.lax.cond(j == 0, lambda q: image0 / jnp.linalg.norm(v0),
                                 lambda q: column_matvec(q[:, None])[:, 0], q)
                spent = jnp.where(j == 0, 0, 1)
            filled = (jnp.arange(m + 1) <= j).astype(dtype)
            h = _inner(V.T, w, precision) * filled
            w = w - _dot(h, V, precision)
            h2 = _inner(V.T, w, precision) * filled  # "twice is enough"
            w = w - _dot(h2, V, precision)
            h = h + h2
            b = jnp.linalg.norm(w)
            scale = jnp.linalg.norm(h) + b + jnp.finfo(dtype).tiny
            broken = b <= tiny * scale

            def replacement(_):  # an exact breakdown (invariant subspace): continue orthogonally
                fresh = jax.random.normal(jax.random.fold_in(jax.random.key(seed), matvecs), (n,), dtype)
                fresh = fresh - _dot(_inner(V.T, fresh, precision) * filled, V, precision)
                fresh = fresh - _dot(_inner(V.T, fresh, precision) * filled, V, precision)
                return fresh / jnp.linalg.norm(fresh)

            nxt = jax.lax.cond(broken, replacement, lambda _: w / b, None)
            b = jnp.where(broken, 0.0, b)
            col = h[:m]
            T = jax.lax.dynamic_update_slice(T, col[:, None], (0, j))
            T = jax.lax.dynamic_update_slice(T, col[None, :], (j, 0))
            V = jax.lax.dynamic_update_slice(V, nxt[None, :], (j + 1, 0))
            theta, S = ritz(T, j + 1)
            last = jax.lax.dynamic_slice(S, (j, 0), (1, m))[0]
            all_residuals = jnp.abs(b * last)
            valid = jnp.arange(m) < j + 1
            measure = _stopping_measure(stop, theta, all_residuals, valid)[:k]
            done = (j + 1 >= k) & jnp.all(measure <= tol * jnp.max(jnp.abs(theta[:k])))
            bounds = eigenvalue_error_bounds(theta, all_residuals, valid)[:k]
            return j + 1, V, T, b, matvecs + spent, done, theta, all_residuals[:k], bounds

        def cond(s):
            j, *_, done, _, _, _ = s
            return (j < m) & ~done

        return jax.lax.while_loop(cond, step, state)

    def restart(state):
        """Keep the top ``keep`` Ritz vectors and the residual direction (the Krylov–Schur form)."""
        j, V, T, beta, matvecs, done, theta, residuals, bounds = state
        _, S = ritz(T, m)
        Y = _dot(S[:, :l_keep].T, V[:m], precision)
        V = jnp.zeros_like(V).at[:l_keep].set(Y).at[l_keep].set(V[m])
        coupling = beta * S[m - 1, :l_keep]
        T = jnp.zeros_like(T).at[jnp.arange(l_keep), jnp.arange(l_keep)].set(theta[:l_keep])
        T = T.at[l_keep, :l_keep].set(coupling).at[:l_keep, l_keep].set(coupling)
        return jnp.array(l_keep), V, T, beta, matvecs, done, theta, residuals, bounds

    def cycle(carry):
        restarts, state = carry
        state = expand(state)
        state = jax.lax.cond(state[5] | (restarts >= max_restarts), lambda s: s, restart, state)
        return restarts + 1, state

    def more(carry):
        restarts, state = carry
        return ~state[5] & (restarts <= max_restarts)

    V0 = jnp.zeros((m + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))  # rows: the basis
    state = (jnp.array(0), V0, jnp.zeros((m, m), dtype), jnp.zeros((), dtype), jnp.asarray(start_matvecs),
             jnp.array(False), jnp.zeros(m, dtype), jnp.full(k, jnp.inf, dtype), jnp.full(k, jnp.inf, dtype))
    _, (j, V, T, beta, matvecs, done, theta, residuals, bounds) = jax.lax.while_loop(
        more, cycle, (jnp.array(0), state))
    _, S = ritz(T, j)
    vectors = _dot(V[:m].T, S[:, :k], precision)
    nan = jnp.where(finite, 0.0, jnp.nan)
    return Eigenpairs(theta[:k] + nan, vectors + nan, residuals + nan, matvecs, done & finite, bounds + nan)


def history_eigsh(
    matvec: Matvec,
    history: Float[Array, "n p"],
    k: int = 1,
    *,
    num_vectors: int | None = None,
    keep: int | None = None,
    tol: float = 1e-6,
    stop: str = "residual",
    max_restarts: int = 50,
    precision: str = "highest",
    seed: int = 0,
) -> Eigenpairs:
    """A warm probe started from the last few probes' eigenvectors instead of the last one alone.

    Rayleigh–Ritz on the span of ``history`` (its p columns, e.g. ``[v_k, v_{k−1}]``, the top
    eigenvectors of the last two probes; p operator applications), then :func:`thick_restart_eigsh`
    from the top Ritz vector w, whose first Lanczos step reuses ``A w`` (a combination of the p
    products already made). ``matvecs`` counts all of them: p + (Lanczos steps − 1).

    With ``[v_k, v_{k−1}]`` this is the extrapolation ``v_k + β (v_k − v_{k−1})`` with β chosen by
    the current operator's Rayleigh quotient instead of fixed in advance. Along an edge-of-stability
    run (``benchmarks/README.md``, issue 20) the best β in hindsight moved between 0.2 and 3.6 from
    probe to probe; at the edge a fixed β = 0.5 or 1 brought the start 4× or 1.7× closer to the new
    eigenvector (sin² of the angle), Rayleigh–Ritz 9× closer, which saved more Lanczos steps than its
    one extra product costs (median 4 products at the edge against 7). Where the top eigenvector
    swaps with the next one between probes (a 200-image run of the same setting) it saved nothing.

    Columns that are zero or (numerically) dependent on the others are left out of the Rayleigh–Ritz
    step (a first probe with no ``v_{k−1}`` yet passes a zero column), but their products are still
    made and counted: the shapes are static. The Gram matrices are column-wise reductions
    (``_inner``): on XLA CPU in float32 a ``dot`` of two (n, 2) blocks over a long n was off by
    3e-4 relative.

    Args:
      matvec: ``v -> A v`` on ``(n,)`` arrays; ``A`` symmetric.
      history: ``(n, p)``, the first column nonzero (the last eigenvector).
      k, num_vectors, keep, tol, stop, max_restarts, precision, seed: as in
        :func:`thick_restart_eigsh`.

    Returns:
      :class:`Eigenpairs`, values descending; ``matvecs`` includes the p Rayleigh–Ritz products.

    Raises:
      ValueError: ``history`` not ``(n, p)`` with ``1 ≤ p < n``; the options as in
        :func:`thick_restart_eigsh`.
      TypeError: a non-floating ``history``; the options as in :func:`thick_restart_eigsh`.
    """
    history = jnp.asarray(history)
    if history.ndim != 2 or not 1 <= history.shape[1] < history.shape[0]:
        raise ValueError(f"history must be an (n, p) block of previous eigenvectors with 1 ≤ p < n; "
                         f"got shape {history.shape}")
    if not jnp.issubdtype(history.dtype, jnp.floating):
        raise TypeError(f"history must be a floating array; got dtype {history.dtype}")
    _check_stop(stop)
    p = history.shape[1]
    eps = jnp.finfo(history.dtype).eps
    norms = jnp.linalg.norm(history, axis=0)
    W = history / jnp.where(norms > 0, norms, 1.0)[None, :]
    for _ in range(2):  # orthonormal columns through the Gram matrix, twice ("twice is enough")
        U, sigma, _ = _orthonormal_columns(W, precision)
        alive = sigma > 1e3 * eps * jnp.max(sigma)  # dependent directions (a zero column included)
        W = jnp.where(alive[None, :], U, 0.0)
    AW = jax.vmap(matvec, in_axes=1, out_axes=1)(W)
    theta, S = _masked_ritz(_symmetric(_inner(W, AW, precision)), alive, 1)
    w = _dot(W, S[:, 0], precision)
    image = _dot(AW, S[:, 0], precision)
    scale = jnp.linalg.norm(w)
    return _thick_restart(matvec, w / scale, k, num_vectors=num_vectors, keep=keep, tol=tol, stop=stop,
                          max_restarts=max_restarts, precision=precision, seed=seed,
                          image0=image / scale, start_matvecs=p)


def _symmetric(a):
    return (a + a.T) / 2


def lobpcg(
    matvec: Matvec,
    v0: Float[Array, " n"] | Float[Array, "n b"],
    k: int,
    *,
    tol: float = 1e-6,
    stop: str = "residual",
    max_iters: int = 50,
    precision: str = "highest",
    seed: int = 0,
) -> Eigenpairs:
    """The k largest algebraic eigenpairs by LOBPCG without preconditioner (Knyazev 2001).

    Each iteration is a Rayleigh–Ritz step on ``[X, W, P]`` (3k columns): the current Ritz block
    X, the residuals W = A X − X Θ (orthonormalised against X and P, then the only block the
    operator is applied to: k applications per iteration) and the previous update P (its image
    A P is carried along as the same linear combination, not recomputed). It keeps 3k vectors
    where Lanczos keeps its whole basis; from the same start its Ritz values can be no better
    than Lanczos' after as many applications (every iterate lies in the same Krylov space), so it
    is here to be measured as the warm in-loop probe that other EoS code uses (e.g. the
    central-flows code warm-starts it from the previous block). ``matvecs`` counts applications
    natively (``k`` for the start block, then ``k`` per iteration); the convention
    ``k·(4·iters + 1) + 1`` of published counts is ``benchmarks/bench_eigsolvers.py``'s.

    Args:
      matvec: ``v -> A v`` on ``(n,)`` arrays; ``A`` symmetric.
      v0: start vector ``(n,)`` or block ``(n, b)`` (e.g. the previous eigenvectors); missing
        columns (``b < k``) are drawn from ``jax.random.key(seed)``, extra ones dropped.
      k: how many eigenpairs, between 1 and n // 3 (the Rayleigh–Ritz space has 3k columns).
      tol: stop when every wanted residual is at most ``tol · max|θ|``.
      stop: ``"residual"`` only. The eigenvalue rule needs the gap to the next eigenvalue, and
        the other Ritz values of a 3k-column Rayleigh–Ritz space do not estimate it: measured on
        a reference with λ₁ = 10, λ₂ = 9.99, the gap estimate came out too large and the
        second-order bound fell below the actual error (``tests/test_warm_probes.py``). For the
        same reason ``error_bounds`` is the first-order bound, the residual.
      max_iters: iterations after the start block's Rayleigh–Ritz step, ≥ 0.
      precision: matmul precision of the solver's own dots.
      seed: for missing start columns.

    Returns:
      :class:`Eigenpairs`, values descending; ``converged`` says whether ``tol`` was met.

    Raises:
      ValueError: a bad ``v0`` shape, ``k`` or ``max_iters`` out of range, a negative ``tol``,
        a ``stop`` other than ``"residual"``.
      TypeError: a non-integer ``k`` or ``max_iters``; a non-floating ``v0``.
    """
    _check_lobpcg_stop(stop)
    v0 = _check_start(v0, None)
    n = v0.shape[0]
    k = _integer("k", k, 1, max(1, n // 3), f"an integer between 1 and n // 3 = {max(1, n // 3)}")
    max_iters = _integer("max_iters", max_iters, 0)
    if isinstance(tol, numbers.Real) and not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol={tol!r} must be a finite number ≥ 0")
    finite = jnp.all(jnp.isfinite(v0))
    X = _start_block(jnp.where(finite, v0, 0.0), k, seed)
    dtype = X.dtype
    tiny = 100 * jnp.finfo(dtype).eps
    block_matvec = jax.vmap(matvec, in_axes=1, out_axes=1)

    def project_out(W, basis):  # two classical Gram–Schmidt passes against orthonormal columns
        for _ in range(2):
            W = W - _dot(basis, _inner(basis, W, precision), precision)
        return W

    def orthonormal(W, AW, scale):
        """Orthonormal columns spanning W, with the same combination applied to AW (when given);
        directions below ``tiny · scale`` are dead (zeroed)."""
        U, sigma, Zt = _orthonormal_columns(W, precision)
        alive = sigma > tiny * scale
        U = jnp.where(alive[None, :], U, 0.0)
        if AW is not None:
            AW = _dot(AW, Zt.T, precision) / jnp.where(sigma > 0, sigma, 1.0)[None, :]
            AW = jnp.where(alive[None, :], AW, 0.0)
        return U, AW, alive

    def rayleigh_ritz(S, AS, alive):
        p = S.shape[1]
        G = _inner(S, AS, precision)
        theta, C = _masked_ritz((G + G.T) / 2, alive, p)
        Y, AY = _dot(S, C, precision), _dot(AS, C, precision)
        residuals = jnp.linalg.norm(AY - Y * theta[None, :], axis=0)
        done = jnp.all(residuals[:k] <= tol * jnp.max(jnp.abs(theta[:k])))
        return theta, C, Y, AY, residuals, residuals[:k], done  # first-order bounds (see stop)

    AX = block_matvec(X)
    theta, C, X, AX, residuals, bounds, done = rayleigh_ritz(X, AX, jnp.ones(k, bool))
    P, AP = jnp.zeros_like(X), jnp.zeros_like(X)

    def body(state):
        it, X, AX, P, AP, theta, residuals, bounds, done = state
        scale = jnp.max(jnp.abs(theta[:k])) + jnp.finfo(dtype).tiny
        # P: orthonormal against X (its image follows linearly: no operator application)
        coef = _inner(X, P, precision)
        P1, AP1 = P - _dot(X, coef, precision), AP - _dot(AX, coef, precision)
        coef = _inner(X, P1, precision)
        P1, AP1 = P1 - _dot(X, coef, precision), AP1 - _dot(AX, coef, precision)
        P1, AP1, p_alive = orthonormal(P1, AP1, jnp.linalg.norm(P, axis=0).max() + jnp.finfo(dtype).tiny)
        # W: the residuals, unit columns, orthonormal against X and P, then the operator applied
        R = AX - X * theta[None, :k]
        W = R / jnp.maximum(jnp.linalg.norm(R, axis=0), jnp.finfo(dtype).tiny)[None, :]
        W = project_out(project_out(W, X), P1)
        W, _, w_alive = orthonormal(W, None, 1.0)
        w_alive = w_alive & (jnp.linalg.norm(R, axis=0) > tiny * scale)
        W = jnp.where(w_alive[None, :], W, 0.0)
        AW = block_matvec(W)
        S = jnp.concatenate([X, W, P1], axis=1)
        AS = jnp.concatenate([AX, AW, AP1], axis=1)
        alive = jnp.concatenate([jnp.ones(k, bool), w_alive, p_alive])
        theta, C, Y, AY, residuals, bounds, done = rayleigh_ritz(S, AS, alive)
        # the update without its X part is the next P (and its image)
        C_rest = C[k:, :k]
        P = _dot(S[:, k:], C_rest, precision)
        AP = _dot(AS[:, k:], C_rest, precision)
        return it + 1, Y[:, :k], AY[:, :k], P, AP, theta, residuals, bounds, done

    def cond(state):
        it, *_, done = state
        return (it < max_iters) & ~done

    pad = lambda a: jnp.concatenate([a, jnp.zeros(2 * k, dtype)])  # the carry holds 3k Ritz values
    init = (jnp.array(0), X[:, :k], AX[:, :k], P, AP, pad(theta), pad(residuals), bounds, done)
    it, X, AX, _, _, theta, residuals, bounds, done = jax.lax.while_loop(cond, body, init)
    nan = jnp.where(finite, 0.0, jnp.nan)
    return Eigenpairs(theta[:k] + nan, X + nan, residuals[:k] + nan, k * (it + 1), done & finite,
                      bounds + nan)


# ----------------------------------------------------------------------------- subspaces


def abs_cosine(u: Float[Array, " n"], v: Float[Array, " n"]) -> Float[Array, ""]:
    """``|⟨u, v⟩| / (‖u‖ ‖v‖)``: eigenvector similarity, blind to the sign of either vector."""
    return jnp.abs(_inner(u, v, "highest")) / (jnp.linalg.norm(u) * jnp.linalg.norm(v))


def principal_angles(U: Float[Array, "n k"], V: Float[Array, "n k"]) -> Float[Array, " k"]:
    """Principal angles (radians, ascending) between the column spans of orthonormal U and V."""
    sigma = _singular_values(_inner(U, V, "highest"))
    return jnp.arccos(jnp.clip(sigma, -1.0, 1.0))


def grassmann_distance(U: Float[Array, "n k"], V: Float[Array, "n k"]) -> Float[Array, ""]:
    """Geodesic distance on the Grassmannian: the 2-norm of the principal angles."""
    return jnp.linalg.norm(principal_angles(U, V))


def cosine_grassmann_similarity(U: Float[Array, "n k"], V: Float[Array, "n k"]) -> Float[Array, ""]:
    """``cos(d_G / √k)`` in [0, 1]: 1 for equal subspaces, 0 for orthogonal ones, and ``|cos|``
    between the two vectors when k = 1. The misalignment score is ``1 −`` this."""
    k = U.shape[1]
    return jnp.cos(grassmann_distance(U, V) / jnp.sqrt(k))
