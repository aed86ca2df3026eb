"""In-loop probes: measurements :func:`eoslib.engine.train.run` takes inside the compiled run.

**The protocol.** A probe is a pure function (:class:`Probe`)::

    probe(params, opt_state, eigenpairs, hp, data) -> record

called at every probe point (every ``TrainConfig.probe_every`` steps, before that step's update),
where

- ``params``, ``opt_state`` are the run's state at that step (one sweep member's: a probe never
  sees the sweep axis);
- ``eigenpairs`` is the :class:`eoslib.engine.linalg.Eigenpairs` of the training objective's
  top-k Hessian solve that the loop has just made (vectors ``(n, k)`` in ``ravel_pytree(params)``
  order);
- ``hp`` is the member's hyperparameters (a mapping of scalars or arrays); a probe may read its
  own keys there (e.g. :func:`rotation` reads ``hp["baseline"]``), and every key it reads counts
  as used when ``train.run`` checks ``hparams`` for typos;
- ``data = (x, y)`` is all the training data, passed as traced arguments;

and the **record** is a ``NamedTuple`` of arrays (or of such NamedTuples), the same shapes at
every call. ``train.run`` stacks the records into ``History.extra`` (a leading probe axis P, and
the sweep axis S in front under a sweep), blanks them after a divergence
(:func:`eoslib.engine.divergence.mask`), and :func:`eoslib.engine.train.save` /
:func:`eoslib.engine.train.load` round-trip them. A probe that runs an eigensolver reports its
``converged`` flag in its record. Probes run under the run's matmul precision
(``TrainConfig.precision``); their own eigensolves run at ``"highest"`` whatever it is (TF32
corrupts eigenvalues). :func:`combine` runs several probes at one probe point.

**The built-in probe.** The top-k Hessian eigensolve itself is made by ``train.run`` (warm-started
from the previous probe's vectors, restarted from a fresh random block after a non-finite result);
its record is :class:`eoslib.engine.train.ProbeRecord` (``sharpness``, ``top_eigenvalues``,
``eig_residuals``, ``matvecs``, ``eig_converged``, and ``extra``, this module's record).

**The probes.** Each is a factory that checks its settings when built and returns a :class:`Probe`:

- :func:`alignment` → :class:`EdgeCoefficients`: α, β, c_y of the (x, y) edge model;
- :func:`curvature` → :class:`CurvatureRecord`: κ = D⁴L[u, u, u, u], exact and by finite difference,
  and D⁴L[ĝ, ĝ, ĝ, ĝ] along the unit gradient ĝ;
- :func:`preconditioned_sharpness` → :class:`PreconditionedRecord`: λ₁(P^{-1/2} H P^{-1/2}) of
  Adam / RMSprop / Clipped-Ada;
- :func:`rotation` → :class:`RotationRecord`: eigenvector cosines and subspace similarity to a baseline;
- :func:`ntk_top` → :class:`NTKRecord`: the empirical NTK's top eigenvalue;
- :func:`decay_channel` → :class:`DecayChannelRecord`: the alignment a projected decay
  (:func:`eoslib.engine.optim.decay_off_sharpness_gradient`) still acts through, along the true ∇S.
- :func:`batch_sharpness` → :class:`BatchSharpnessRecord`: the batch sharpness
  ``E_B[g_Bᵀ H_B g_B / ‖g_B‖²]``, the quantity SGD holds at 2/η in Andreyev & Beneventano's edge
  of stochastic stability (:func:`step_sharpness` per minibatch), and beside it the mean top
  eigenvalue of the minibatch Hessians (their first version's "MiniBS").

**Oscillation averaging.** At the edge of stability GD oscillates with period 2 along the top
eigenvector u: a first-order quantity (α = −⟨∇L, ∇S⟩, ⟨∇L, u⟩, the loss) read at one iterate
swings with the parity of the step. :func:`oscillation_averaged` wraps any probe so that it also
reads the run's next iterate θ_{t+1} (the run's own optimizer on step t's batch, not committed)
and records the two-step average, or the value at the midpoint (θ_t + θ_{t+1})/2
(:class:`OscillationAveraged`, whose ``midpoint`` flag says which). Such a probe declares the
point it needs in its ``next_point`` attribute (``"pair"`` or ``"midpoint"``); ``train.run``
then computes that point and its eigenpairs (warm-started from θ_t's, signs aligned with them)
and passes them as the keyword argument ``next_point`` (a :class:`NextPoint`).

The losses the probes differentiate are the *unregularised* ``model_loss`` of the parameters
(an Equinox module mapping ``x`` to outputs) on all the data (:func:`eoslib.engine.losses.of_model`).
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable, Mapping, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, PyTree, Scalar

from eoslib.engine import hessian, linalg, losses, ntk, optim

__all__ = ["Probe", "NextPoint", "OscillationAveraged", "oscillation_averaged", "AVERAGING", "EdgeCoefficients", "CurvatureRecord", "PreconditionedRecord", "RotationRecord",
           "NTKRecord", "DecayChannelRecord", "BatchSharpnessRecord", "edge_coefficients", "clipped_fraction", "alignment", "curvature",
           "preconditioned_sharpness", "rotation", "ntk_top", "decay_channel", "batch_sharpness",
           "step_sharpness", "minibatch_indices", "combine", "is_record", "RECORDS"]


class Probe(Protocol):
    """The signature every in-loop probe has (see the module docstring for each argument).

    Returns a ``NamedTuple`` of arrays (or of such NamedTuples) with the same shapes at every call.
    """

    def __call__(self, params: PyTree, opt_state: PyTree, eigenpairs: linalg.Eigenpairs,
                 hp: Mapping[str, Array], data: tuple[Array, Array]) -> tuple: ...


class NextPoint(NamedTuple):
    """The second point an oscillation-averaged probe reads (see :func:`oscillation_averaged`).

    Attributes:
      params: θ_{t+1} (or the midpoint (θ_t + θ_{t+1})/2), the same pytree as the run's.
      opt_state: the optimizer state after update t.
      eigenpairs: the top-k Hessian eigenpairs there (signs aligned with θ_t's).
    """

    params: PyTree
    opt_state: PyTree
    eigenpairs: linalg.Eigenpairs


def is_record(value: Any) -> bool:
    """Whether ``value`` is a probe record: a NamedTuple whose fields are arrays or records."""
    if not (isinstance(value, tuple) and hasattr(value, "_fields")):
        return False
    return all(is_record(v) or hasattr(v, "shape") for v in value)


# ----------------------------------------------------------------------------- records


class EdgeCoefficients(NamedTuple):
    """The (x, y) edge model's coefficients at one point (scalars).

    Attributes:
      alpha: ``α = −⟨∇L, ∇S⟩``, the sharpening rate of plain GD (L without decay).
      beta: ``β = ‖∇S‖²``.
      c_y: ``⟨θ, ∇S⟩``, the alignment of the parameters with the sharpness gradient.
      sharpness_gradient_norm: ``‖∇S‖``.
      param_norm: ``‖θ‖``.
    """

    alpha: Scalar
    beta: Scalar
    c_y: Scalar
    sharpness_gradient_norm: Scalar
    param_norm: Scalar


class OscillationAveraged(NamedTuple):
    """A probe's record averaged over the period-2 oscillation of the edge.

    Attributes:
      value: the averaged record: ``(at_t + at_other) / 2`` leaf by leaf (two-step average), or
        the record at the midpoint (then ``value`` and ``at_other`` are the same).
      at_t: the record at θ_t (what the probe alone would record).
      at_other: the record at θ_{t+1}, or at the midpoint.
      midpoint: ``True`` when ``value`` was read at the midpoint (θ_t + θ_{t+1})/2, ``False`` for
        the two-step average of θ_t and θ_{t+1}.
    """

    value: Any
    at_t: Any
    at_other: Any
    midpoint: Bool[Array, ""]


class CurvatureRecord(NamedTuple):
    """κ along the top Hessian eigenvector u and along the gradient (scalars, signed).

    Attributes:
      kappa_exact: ``D⁴L(θ)[u, u, u, u]`` by nested ``jvp``.
      kappa_proxy: the finite-difference estimator along u at the probe's radius.
      kappa_gradient: ``D⁴L(θ)[ĝ, ĝ, ĝ, ĝ]`` by nested ``jvp``, ĝ = ∇L/‖∇L‖ the unit gradient
        of the same loss (the flatness-bias paper's App. F.2 direction); NaN where ∇L = 0.
    """

    kappa_exact: Scalar
    kappa_proxy: Scalar
    kappa_gradient: Scalar


class PreconditionedRecord(NamedTuple):
    """The effective sharpness of an adaptive optimizer (scalars).

    Attributes:
      precond_sharpness: ``λ₁(P^{-1/2} H P^{-1/2})`` with ``P = √min(v̂, τ) + ε``.
      clipped_fraction: the fraction of coordinates with ``v̂ > τ`` (:func:`clipped_fraction`).
      nu_hat_median: the median of the bias-corrected second moment v̂.
      residual: the eigensolver's residual norm for λ₁.
      converged: whether the eigensolver met its tolerance (bool).
    """

    precond_sharpness: Scalar
    clipped_fraction: Scalar
    nu_hat_median: Scalar
    residual: Scalar
    converged: Bool[Array, ""]


class RotationRecord(NamedTuple):
    """How far the top-k Hessian eigenvectors have turned from a baseline.

    Attributes:
      cosines: ``(k,)`` ``|cos|`` of each eigenvector with its baseline counterpart.
      subspace: the cosine-Grassmannian similarity of the two top-k subspaces (scalar).
    """

    cosines: Float[Array, " k"]
    subspace: Scalar


class NTKRecord(NamedTuple):
    """The empirical NTK's top eigenvalue (scalars).

    Attributes:
      top_eigenvalue: ``λ_max(J Jᵀ)/N`` over the N training inputs (the top eigenvalue of the ½MSE
        Gauss–Newton matrix).
      residual: the eigensolver's residual norm (of ``λ_max(J Jᵀ)``, before the ``1/N``).
      converged: whether the eigensolver met its tolerance (bool).
    """

    top_eigenvalue: Scalar
    residual: Scalar
    converged: Bool[Array, ""]


class DecayChannelRecord(NamedTuple):
    """The sharpness channel of a run whose decay is projected off ∇S (scalars).

    Attributes:
      c_y: ``⟨θ, ∇S⟩`` with the true ∇S (from the loop's top eigenvector): the alignment plain
        coupled decay would act through.
      c_y_applied: ``⟨Pθ, ∇S⟩``, with ``P = I − nnᵀ`` the projection the optimizer applied (``n``
        its own, possibly stale, estimate of ``∇S/‖∇S‖``): the alignment the projected decay still
        acts through. 0 when ``n`` is exactly the unit ∇S.
      cosine: ``|cos(n, ∇S)|``, how well the optimizer's direction matches the true one.

    A probe runs before its step's update, so ``n`` is the direction the optimizer held over the
    steps before the probe (evaluated at the probe's θ: the end of its hold); before the first
    update there is none, and ``c_y_applied`` and ``cosine`` are NaN.
    """

    c_y: Scalar
    c_y_applied: Scalar
    cosine: Scalar


class BatchSharpnessRecord(NamedTuple):
    """The curvature of minibatch losses L_B at one point, over a fixed set of M minibatches B of
    the run's batch size (:func:`minibatch_indices`).

    Attributes:
      batch_sharpness: ``mean_B g_Bᵀ H_B g_B / ‖g_B‖²`` with ``g_B = ∇L_B`` and ``H_B = ∇²L_B``:
        each minibatch Hessian's curvature along that minibatch's own gradient, averaged over the
        M minibatches; the Monte-Carlo estimate of the *Batch Sharpness* that minibatch SGD holds
        at 2/η in Andreyev & Beneventano's edge of stochastic stability (arXiv:2412.20553, v3 to
        v5: "the expected directional curvature of mini-batch Hessians along their corresponding
        stochastic gradients"). NaN if a minibatch gradient is 0.
      step_sharpness: ``(M,)`` each minibatch's ``g_Bᵀ H_B g_B / ‖g_B‖²`` (:func:`step_sharpness`),
        so that its spread across minibatches (the estimate's standard error) can be read.
      minibatch_lambda_max: ``mean_B λ₁(H_B)`` over the first ``M_eig`` of the minibatches, the
        mean top eigenvalue of the minibatch Hessians: the quantity the paper's first version
        (December 2024) held at 2/η under the name "MiniBS", since superseded by
        ``batch_sharpness``. At least the mean of ``step_sharpness`` over the same minibatches,
        since λ₁(H_B) bounds each Rayleigh quotient. NaN when ``M_eig = 0``.
      batch_top_eigenvalues: ``(M_eig,)`` each of those minibatches' λ₁(H_B).
      residuals: ``(M_eig,)`` their eigensolvers' residual norms.
      converged: whether every minibatch's eigensolve met its tolerance (bool; ``True`` when
        ``M_eig = 0``).
    """

    batch_sharpness: Scalar
    step_sharpness: Float[Array, " M"]
    minibatch_lambda_max: Scalar
    batch_top_eigenvalues: Float[Array, " M_eig"]
    residuals: Float[Array, " M_eig"]
    converged: Bool[Array, ""]


#: The record types of this module by name (what :func:`eoslib.engine.train.load` rebuilds).
RECORDS: dict[str, type] = {cls.__name__: cls for cls in
                            (EdgeCoefficients, CurvatureRecord, PreconditionedRecord, RotationRecord, NTKRecord,
                             DecayChannelRecord, BatchSharpnessRecord, OscillationAveraged)}


# ----------------------------------------------------------------------------- the math


def edge_coefficients(loss_fn: Callable[[PyTree], Scalar], params: PyTree, v: Float[Array, " n"]) -> EdgeCoefficients:
    """α, β and c_y of the *unregularised* loss ``loss_fn`` at ``params``.

    ``v`` is the flat unit top eigenvector (``ravel_pytree`` order) of the Hessian; with coupled
    weight decay the regularised Hessian ``H + γI`` has the same eigenvectors, so a probe of the
    training objective can pass its own. Costs one gradient and one gradient of an HVP.
    """
    grad_s = hessian.sharpness_gradient(loss_fn, params, v)
    grad_l = jax.grad(loss_fn)(params)
    alpha, beta = hessian.alpha_beta(grad_l, grad_s)
    flat_p, _ = ravel_pytree(params)
    flat_s, _ = ravel_pytree(grad_s)
    return EdgeCoefficients(alpha, beta, jnp.vdot(flat_p, flat_s), jnp.sqrt(beta), jnp.linalg.norm(flat_p))


def clipped_fraction(nu_hat: PyTree, tau: float | Array) -> Scalar:
    """The fraction of coordinates whose bias-corrected second moment ``v̂`` exceeds the cap τ
    (0: plain Adam; 1: every coordinate capped, the GD-like regime of Clipped-Ada)."""
    flat, _ = ravel_pytree(nu_hat)
    return jnp.mean(flat > tau)


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}={value!r} must be positive")


# ----------------------------------------------------------------------------- the probes


def alignment(model_loss: str = "half_mse") -> Probe:
    """A probe recording the (x, y) edge model's :class:`EdgeCoefficients` (α, β, c_y, ‖∇S‖, ‖θ‖)
    of the unregularised ``model_loss`` (a name in ``eoslib.engine.losses.LOSSES``).

    The top eigenvector is the loop's own (of ``L + γ/2‖θ‖²``, whose eigenvectors are L's).
    """
    loss_on = losses.of_model(model_loss)

    def probe(params, opt_state, eigenpairs, hp, data):
        x, y = data
        return edge_coefficients(loss_on(x, y), params, eigenpairs.vectors[:, 0])

    return probe


def curvature(model_loss: str = "half_mse", *, radius: float = 0.05) -> Probe:
    """A probe recording κ along the top Hessian eigenvector u and along the gradient
    (:class:`CurvatureRecord`).

    ``kappa_exact = D⁴L(θ)[u, u, u, u]`` by nested ``jvp``
    (:func:`eoslib.engine.hessian.directional_derivative`), ``kappa_proxy``, the
    finite-difference estimator :func:`eoslib.engine.hessian.kappa_finite_difference` at
    ``radius`` (our reconstruction of the flatness-bias paper's Eq. 26), and ``kappa_gradient
    = D⁴L(θ)[ĝ, ĝ, ĝ, ĝ]`` along the unit gradient ĝ (the paper's App. F.2 measures κ "along
    the gradient direction"), all of the unregularised ``model_loss`` on all the training data.
    All three are signed: a non-positive value is recorded as it is.
    """
    loss_on = losses.of_model(model_loss)
    _check_positive("radius", radius)

    def probe(params, opt_state, eigenpairs, hp, data):
        x, y = data
        loss_fn = loss_on(x, y)
        v = eigenpairs.vectors[:, 0]
        _, unravel = ravel_pytree(params)
        exact = hessian.directional_derivative(loss_fn, params, unravel(v), 4)
        proxy = hessian.kappa_finite_difference(loss_fn, params, v, radius)
        grad = ravel_pytree(jax.grad(loss_fn)(params))[0]
        norm = jnp.linalg.norm(grad)
        unit = grad / jnp.where(norm > 0, norm, 1.0)
        along_grad = hessian.directional_derivative(loss_fn, params, unravel(unit), 4)
        return CurvatureRecord(exact, proxy, jnp.where(norm > 0, along_grad, jnp.nan))

    return probe


def preconditioned_sharpness(model_loss: str = "half_mse", *, tau: float = float("inf"), b2: float = 0.999,
                             eps: float = 1e-8, tol: float = 1e-3, max_restarts: int = 5) -> Probe:
    """A probe for runs with a Clipped-Ada / Adam / RMSprop optimizer (:func:`eoslib.engine.optim.clipped_adam`):
    :class:`PreconditionedRecord`.

    ``precond_sharpness`` = λ₁(P^{-1/2} H P^{-1/2}) of the ``model_loss`` on all the training data,
    with ``P = √min(v̂, τ) + ε`` from the optimizer state at the probe (the preconditioner of the
    next step, up to that step's own update of v); ``clipped_fraction``; ``nu_hat_median``; and the
    solve's ``residual`` and ``converged``. τ is ``hp["tau"]`` when the run has it, else ``tau``;
    ``b2`` and ``eps`` must match the optimizer's. The solve (block Lanczos to relative residual
    ``tol``, at most ``max_restarts`` restarts) is warm-started from ``P^{1/2} u`` (u: the loop's top
    Hessian eigenvector).
    """
    loss_on = losses.of_model(model_loss)
    _check_positive("tau", tau)
    _check_positive("tol", tol)

    @linalg.one_member_at_a_time  # a sweep's members solve one after another on a CPU
    def solve(params, precond, start, x, y):
        return hessian.preconditioned_eigsh(loss_on(x, y), params, precond, v0=start / jnp.linalg.norm(start),
                                            tol=tol, max_restarts=max_restarts, precision="highest")

    def probe(params, opt_state, eigenpairs, hp, data):
        x, y = data
        cap = hp.get("tau", tau)
        nu_hat = optim.bias_corrected_nu(opt_state, b2)
        precond = optim.preconditioner(opt_state, cap, b2, eps)
        start = jnp.sqrt(ravel_pytree(precond)[0]) * eigenpairs.vectors[:, 0]
        result = solve(params, precond, start, x, y)
        return PreconditionedRecord(result.values[0], clipped_fraction(nu_hat, cap),
                                    jnp.median(ravel_pytree(nu_hat)[0]), result.residuals[0], result.converged)

    return probe


def rotation(baseline: str = "baseline") -> Probe:
    """A probe recording how far the top-k Hessian eigenvectors have turned from a baseline
    (:class:`RotationRecord`).

    The baseline is the hyperparameter ``hp[baseline]``: ``(n, k)`` per member, orthonormal
    columns in ``ravel_pytree`` order, k the run's ``top_k`` (an array hyperparameter is always
    swept, so pass it as ``(S, n, k)``, S ≥ 1). ``cosines (k,)`` are the ``|cos|`` of each
    eigenvector with its baseline counterpart; ``subspace`` the cosine-Grassmannian similarity of
    the two top-k subspaces (:func:`eoslib.engine.linalg.cosine_grassmann_similarity`).
    """
    if not isinstance(baseline, str):
        raise TypeError(f"baseline={baseline!r} must be the name of a hyperparameter (a str)")

    def probe(params, opt_state, eigenpairs, hp, data):
        U, B = eigenpairs.vectors, hp[baseline]
        if B.shape != U.shape:
            raise ValueError(f"hp[{baseline!r}] has shape {B.shape} per member; the run's top-k "
                             f"eigenvectors have shape {U.shape} (n, top_k)")
        cosines = jax.vmap(linalg.abs_cosine, in_axes=(1, 1))(U, B)
        return RotationRecord(cosines, linalg.cosine_grassmann_similarity(U, B))

    return probe


def decay_channel(model_loss: str = "half_mse") -> Probe:
    """A probe for runs whose decay is :func:`eoslib.engine.optim.decay_off_sharpness_gradient`:
    :class:`DecayChannelRecord`, measured along the *true* ∇S of the unregularised ``model_loss``
    (its top eigenvector is the loop's Lanczos one), so a reader can see whether the channel the
    intervention means to remove was removed. Costs one gradient of an HVP.

    Raises:
      ValueError: (when traced) the optimizer state holds no
        :class:`eoslib.engine.optim.DecayOffSharpnessGradientState`.
    """
    loss_on = losses.of_model(model_loss)
    is_state = lambda s: isinstance(s, optim.DecayOffSharpnessGradientState)

    def probe(params, opt_state, eigenpairs, hp, data):
        found = [s for s in jax.tree.leaves(opt_state, is_leaf=is_state) if is_state(s)]
        if len(found) != 1:
            raise ValueError(f"decay_channel: the optimizer state holds {len(found)} "
                             "DecayOffSharpnessGradientState; exactly one is needed")
        n = found[0].n
        x, y = data
        grad_s = hessian.sharpness_gradient(loss_on(x, y), params, eigenpairs.vectors[:, 0])
        flat_s, _ = ravel_pytree(grad_s)
        flat_p, _ = ravel_pytree(params)
        c_y = jnp.vdot(flat_p, flat_s)
        applied = c_y - jnp.vdot(flat_p, n) * jnp.vdot(n, flat_s)
        cosine = jnp.abs(jnp.vdot(n, flat_s)) / jnp.linalg.norm(flat_s)
        refreshed = jnp.vdot(n, n) > 0  # before the optimizer's first update n is 0: not measured
        nan = jnp.full_like(c_y, jnp.nan)
        return DecayChannelRecord(c_y, jnp.where(refreshed, applied, nan),
                                  jnp.where(refreshed, cosine, nan))

    return probe


def ntk_top(*, tol: float = 1e-3, max_restarts: int = 10, seed: int = 0) -> Probe:
    """A probe recording the empirical NTK's top eigenvalue ``λ_max(J Jᵀ)/N`` over the N training
    inputs (our normalisation: the top eigenvalue of the ½MSE Gauss–Newton matrix;
    :class:`NTKRecord`). The parameters are the model (``params(x)`` are all the outputs); a cold
    Lanczos solve on ``v ↦ Jᵀ J v`` (:func:`eoslib.engine.ntk.jtj_matvec`) from a random vector
    of ``jax.random.key(seed)``, to relative residual ``tol``.
    """
    _check_positive("tol", tol)

    @linalg.one_member_at_a_time  # a sweep's members solve one after another on a CPU
    def solve(params, x):
        flat, _ = ravel_pytree(params)
        return linalg.operator_eigsh(lambda: ntk.jtj_matvec(lambda p: p(x), params), flat, 1,
                                     key=jax.random.key(seed), tol=tol, max_restarts=max_restarts,
                                     precision="highest")

    def probe(params, opt_state, eigenpairs, hp, data):
        x, _ = data
        result = solve(params, x)
        return NTKRecord(result.values[0] / x.shape[0], result.residuals[0], result.converged)

    return probe


def minibatch_indices(n: int, batch_size: int, batches: int, *, seed: int = 0) -> Array:
    """``(batches, batch_size)`` int32 example indices: minibatch i is the first ``batch_size``
    entries of a random permutation of the ``n`` examples drawn from ``fold_in(key(seed), i)``
    (no example twice within a minibatch; minibatches drawn independently). The minibatches
    :func:`batch_sharpness` averages over.

    Raises:
      ValueError: ``batch_size`` not in [1, n], or ``batches`` < 1.
    """
    for name, value, low, high in (("batch_size", batch_size, 1, n), ("batches", batches, 1, None)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
                high is not None and value > high):
            allowed = f"an int in [1, {high}] (the number of examples)" if high else "an int >= 1"
            raise ValueError(f"{name}={value!r} is not allowed; allowed: {allowed}")
    key = jax.random.key(seed)
    return jnp.stack([jax.random.permutation(jax.random.fold_in(key, i), n)[:batch_size]
                      for i in range(batches)]).astype(jnp.int32)


def step_sharpness(loss_fn: Callable[[PyTree, Array, Array], Scalar], params: PyTree, x: Array,
                   y: Array) -> Scalar:
    """``g_Bᵀ H_B g_B / ‖g_B‖²``: the curvature of the minibatch loss ``L_B = loss_fn(·, x, y)``
    along its own gradient ``g_B = ∇L_B(params)`` (``H_B = ∇²L_B(params)``), the Rayleigh quotient
    of the minibatch Hessian at the minibatch gradient. Its mean over minibatches is the batch
    sharpness (:func:`batch_sharpness`). Pure JAX (jit- and vmap-able); costs one gradient and one
    Hessian-vector product (forward over reverse).

    Args:
      loss_fn: ``loss_fn(params, x, y)``, a scalar: the mean over the examples of ``x``.
      params: the point, any PyTree of floating-point arrays.
      x: ``(B, ...)`` the minibatch's inputs.
      y: ``(B, ...)`` its targets.

    Returns:
      A scalar of the parameters' dtype; NaN where ``g_B = 0`` (no direction).
    """
    loss_b = lambda p: loss_fn(p, x, y)
    grad = jax.grad(loss_b)(params)
    curvature = jax.tree.reduce(jnp.add, jax.tree.map(jnp.vdot, grad, hessian.hvp(loss_b, params, grad)))
    norm2 = jax.tree.reduce(jnp.add, jax.tree.map(jnp.vdot, grad, grad))
    return jnp.where(norm2 > 0, curvature / jnp.where(norm2 > 0, norm2, 1.0), jnp.nan)


def _check_count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}={value!r} is not allowed; allowed: an int >= {low}")


def batch_sharpness(loss_fn: Callable[[PyTree, Array, Array], Scalar], batch_size: int, *,
                    batches: int = 32, eig_batches: int | None = None, seed: int = 0, tol: float = 1e-3,
                    max_restarts: int = 5) -> Probe:
    """A probe recording the curvature of minibatch losses (:class:`BatchSharpnessRecord`) of
    ``loss_fn(params, x_B, y_B)`` (a scalar, the mean over the minibatch) over ``batches``
    minibatches of ``batch_size`` examples of the training data:

    - the **batch sharpness** ``mean_B g_Bᵀ H_B g_B / ‖g_B‖²`` (:func:`step_sharpness` of each
      minibatch; Andreyev & Beneventano's current definition), with every minibatch's value, so
      that the estimate's spread is recorded;
    - the mean top eigenvalue ``mean_B λ₁(H_B)`` over the first ``eig_batches`` of them (the
      paper's first version's "MiniBS").

    The same minibatches (:func:`minibatch_indices` with ``seed``) are read at every probe, so
    the curve's changes are the parameters', not resampling noise (the authors draw fresh random
    minibatches at each measurement instead; over the probes of a window each minibatch's values
    can be averaged and their spread across minibatches gives the standard error). Each λ₁(H_B)
    is a block Lanczos solve to relative residual ``tol`` warm-started from the full-batch top
    eigenvector (the loop's). The minibatches run one after another (``lax.map``). Costs per
    minibatch one gradient and one HVP, and per eigen-minibatch one eigensolve.

    Args:
      loss_fn: ``loss_fn(params, x, y) -> scalar``.
      batch_size: examples per minibatch (the run's batch size), in [1, N].
      batches: M ≥ 1, the minibatches the batch sharpness averages over (M ≥ 2 for a spread).
      eig_batches: M_eig in [0, M], how many of them also get a top-eigenvalue solve (0: none;
        ``None``: min(8, M)).
      seed: which minibatches (:func:`minibatch_indices`).
      tol: relative residual tolerance of each eigensolve.
      max_restarts: restarts of each eigensolve.

    Raises:
      ValueError: ``batches`` < 1, ``eig_batches`` not in [0, batches], ``batch_size`` < 1, or a
        non-positive ``tol`` (here); a ``batch_size`` above the number of examples (when traced).
    """
    _check_count("batches", batches, 1)
    _check_count("batch_size", batch_size, 1)
    if eig_batches is None:
        eig_batches = min(8, int(batches))
    _check_count("eig_batches", eig_batches, 0)
    if eig_batches > batches:
        raise ValueError(f"eig_batches={eig_batches!r} is not allowed; allowed: an int in [0, "
                         f"{batches}] (at most batches={batches})")
    _check_positive("tol", tol)

    def probe(params, opt_state, eigenpairs, hp, data):
        x, y = data
        index = minibatch_indices(x.shape[0], int(batch_size), int(batches), seed=seed)
        quotients = jax.lax.map(lambda idx: step_sharpness(loss_fn, params, x[idx], y[idx]), index)
        dtype = quotients.dtype
        if eig_batches == 0:
            empty = jnp.zeros((0,), dtype)
            return BatchSharpnessRecord(jnp.mean(quotients), quotients, jnp.full((), jnp.nan, dtype),
                                        empty, empty, jnp.array(True))
        v0 = eigenpairs.vectors[:, :1]

        def top(idx):
            result = hessian.eigsh(lambda p: loss_fn(p, x[idx], y[idx]), params, 1, v0=v0, tol=tol,
                                   max_restarts=max_restarts, precision="highest")
            return result.values[0], result.residuals[0], result.converged

        tops, residuals, converged = jax.lax.map(top, index[:eig_batches])
        return BatchSharpnessRecord(jnp.mean(quotients), quotients, jnp.mean(tops), tops, residuals,
                                    jnp.all(converged))

    return probe


#: The ways :func:`oscillation_averaged` averages over the period-2 oscillation.
AVERAGING = ("pair", "midpoint")


def oscillation_averaged(probe: Probe, how: str = "pair") -> Probe:
    """``probe`` read over the period-2 oscillation at the edge (:class:`OscillationAveraged`).

    ``how="pair"``: the mean of the probe's records at θ_t and at θ_{t+1}, the run's next iterate
    (its own optimizer on step t's batch; for GD, θ_t − η∇L(θ_t)); ``how="midpoint"``: the record
    at (θ_t + θ_{t+1})/2. At θ_{t+1} (or the midpoint) the probe sees that point's optimizer
    state and its own top-k eigenpairs (a warm-started solve from θ_t's, eigenvector signs
    aligned with θ_t's). On a period-2 orbit x₁ ↔ x₂ of GD the two-step average of the gradient
    is exactly 0 (x₂ = x₁ − η∇L(x₁) and x₁ = x₂ − η∇L(x₂)), which is why the pair average
    removes the swing from any first-order quantity. Costs the probe twice plus one gradient
    and one warm eigensolve. Non-float leaves (counts, flags) are taken from θ_t's record.

    Raises:
      ValueError: ``how`` is not one of :data:`AVERAGING`, or ``probe`` is not callable.
    """
    if how not in AVERAGING:
        raise ValueError(f"how={how!r} is not one of {list(AVERAGING)}")
    if not callable(probe):
        raise ValueError(f"probe={probe!r} must be a probe (a callable, see eoslib.engine.probes)")

    def mean(a, b):
        a = jnp.asarray(a)
        return (a + b) / 2 if jnp.issubdtype(a.dtype, jnp.inexact) else a

    def averaged(params, opt_state, eigenpairs, hp, data, *, next_point: NextPoint):
        here = probe(params, opt_state, eigenpairs, hp, data)
        there = probe(next_point.params, next_point.opt_state, next_point.eigenpairs, hp, data)
        value = there if how == "midpoint" else jax.tree.map(mean, here, there)
        return OscillationAveraged(value, here, there, jnp.array(how == "midpoint"))

    averaged.next_point = how
    return averaged


@functools.lru_cache(maxsize=None)
def combined_type(names: tuple[str, ...]) -> type:
    """The record type of :func:`combine` over probes of these names: one class per tuple of names
    in a process, so the records of a run and of its resumed continuation (a pytree's structure
    includes its NamedTuple class) share it, also after a pickle (a checkpoint,
    :mod:`eoslib.book.checkpoint`): a record pickles as its names and values and is rebuilt with
    this class."""
    cls = collections.namedtuple("Combined", names)
    cls.__reduce__ = lambda record: (_combined_record, (tuple(record._fields), tuple(record)))
    return cls


def _combined_record(names: tuple[str, ...], values: tuple) -> tuple:
    """A :func:`combine` record rebuilt from its names and values (what it pickles as)."""
    return combined_type(tuple(names))(*values)


def combine(**named_probes: Probe) -> Probe:
    """Several probes at one probe point: ``combine(alignment=alignment(), ntk=ntk_top())``
    returns a probe whose record is a NamedTuple ``Combined(alignment=…, ntk=…)`` of their records,
    in the order given (read ``history.extra.alignment.c_y``); its class is
    ``combined_type`` of the names."""
    if not named_probes:
        raise ValueError("combine() needs at least one probe, given by name: combine(name=probe, ...)")
    bad = [name for name, p in named_probes.items() if not callable(p)]
    if bad:
        raise TypeError(f"combine: {bad} are not probes (callables (params, opt_state, eigenpairs, hp, data) -> record)")
    Combined = combined_type(tuple(named_probes))
    wanted = {getattr(p, "next_point", None) for p in named_probes.values()} - {None}
    if len(wanted) > 1:
        raise ValueError(f"combine: the probes average over different points {sorted(wanted)}; "
                         "use one `how` for every oscillation_averaged probe of a run")

    def probe(params, opt_state, eigenpairs, hp, data, *, next_point: NextPoint | None = None):
        def call(p):
            if getattr(p, "next_point", None):
                return p(params, opt_state, eigenpairs, hp, data, next_point=next_point)
            return p(params, opt_state, eigenpairs, hp, data)

        return Combined(*(call(p) for p in named_probes.values()))

    if wanted:
        probe.next_point = wanted.pop()
    return probe
