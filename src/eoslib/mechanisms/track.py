"""Edge-of-stability diagnostics on a model the reader brings: :func:`track`.

One call trains the reader's parameters with the reader's loss and optax optimizer and records
what the edge-of-stability papers plot, each against the optimizer's own edge:

- full-batch **GD**: the sharpness λ₁ of the training loss's Hessian against ``2/η`` (Cohen et al.
  2021);
- **Adam** (any optax optimizer built on ``optax.scale_by_adam``, or
  :func:`eoslib.engine.optim.clipped_adam` without a cap): the *preconditioned* sharpness
  ``λ₁(P^{-1/2} H P^{-1/2})``, ``P = √v̂ + ε``, against ``(2 + 2β₁) / ((1 − β₁) η)`` (Cohen et al.
  2022; :func:`eoslib.mechanisms.adaptive.adam_edge`);
- minibatch **SGD**: the *batch sharpness* ``E_B[g_Bᵀ H_B g_B / ‖g_B‖²]``, the curvature of each
  minibatch's loss along that minibatch's own gradient, averaged over minibatches, against
  ``2/η`` (Andreyev & Beneventano's edge of stochastic stability, arXiv:2412.20553 v3 to v5), with
  its standard error across the minibatches, and beside it the mean top eigenvalue of the
  minibatch Hessians ``mean_B λ₁(H_B)`` (what the paper's first version held at 2/η, "MiniBS")
  (:func:`eoslib.engine.probes.batch_sharpness`).

Every run also records the loss, the accuracy when the labels are classes, and the top-k Hessian
eigenvalues of the full-batch loss. It is a thin layer over :func:`eoslib.engine.train.run`: one
compiled ``lax.scan`` with the eigensolves inside it, warm-started from probe to probe.

**Conventions.** ``loss(params, x, y)`` is a scalar, the *mean* over the examples of ``x`` (for
½MSE: ``0.5 * jnp.mean(jnp.sum((f(x) - y) ** 2, -1))``); it may return ``(loss, outputs)`` with
the model's outputs ``(N, K)``, from which the accuracy is read when ``y`` holds classes (integer
labels ``(N,)``, or one-hot rows ``(N, K)``). ``params`` is any PyTree: a dict of arrays, an
Equinox module, or the state of a Flax NNX model (``graphdef, state = nnx.split(model)``); its
floating-point arrays are trained, its non-array leaves (an Equinox module's functions) are kept
as they are, and integer or boolean arrays are refused (keep counters out of ``params``).
The optimizer's step size η (and Adam's β₁, β₂, ε) are read from two trial updates on a scalar
at 0 (so weight decay does not enter), unless ``learning_rate=`` is given.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, Int, PyTree

from eoslib.engine import hessian, optim, probes, train
from eoslib.mechanisms import adaptive

#: What ``edge=`` may be: read it from the optimizer, GD's 2/η, or Adam's edge.
EDGES = ("auto", "gd", "adam")


class EdgeHistory(NamedTuple):
    """What :func:`track` recorded (numpy arrays). A step row holds θ_t, before update t.

    Attributes:
      step: ``(T,)`` step index t.
      loss: ``(T,)`` the loss on step t's batch (all the data for full-batch GD).
      accuracy: ``(T,)`` the fraction of step t's batch classified correctly, or ``None`` when the
        labels are not classes or the loss returns no outputs.
      probe_step: ``(P,)`` the steps the curvature was measured at.
      sharpness: ``(P,)`` λ₁ of the Hessian of the full-batch loss.
      top_eigenvalues: ``(P, k)`` its top-k eigenvalues, descending.
      eig_converged: ``(P,)`` whether each probe's eigensolves met their tolerance.
      preconditioned_sharpness: ``(P,)`` λ₁(P^{-1/2} H P^{-1/2}) with Adam's ``P = √v̂ + ε`` at the
        probe (NaN for an optimizer without a second moment, and at step 0, before Adam's first
        update has made one).
      batch_sharpness: ``(P,)`` the batch sharpness: the mean over the ``batches`` minibatches of
        each minibatch Hessian's curvature along that minibatch's own gradient,
        ``g_Bᵀ H_B g_B / ‖g_B‖²`` (NaN for full-batch runs).
      batch_sharpness_sem: ``(P,)`` its standard error at each probe, the standard deviation
        (``ddof=1``) of the minibatches' values over √M (NaN for full-batch runs, and for M = 1).
      step_sharpness: ``(P, M)`` each minibatch's ``g_Bᵀ H_B g_B / ‖g_B‖²`` (the same minibatches
        at every probe), or ``None`` for full-batch runs.
      minibatch_lambda_max: ``(P,)`` the mean over the first ``eig_batches`` minibatches of
        λ₁(H_B), the top eigenvalue of each minibatch's Hessian: the quantity the paper's first
        version held at 2/η ("MiniBS"; NaN for full-batch runs and for ``eig_batches=0``).
      minibatch_top_eigenvalues: ``(P, M_eig)`` each of those minibatches' λ₁(H_B), or ``None`` for
        full-batch runs.
      edge: the threshold the run is held against: 2/η, or (2 + 2β₁)/((1 − β₁)η) for Adam.
      measure: the name of the field held against ``edge``: ``"sharpness"`` (GD),
        ``"batch_sharpness"`` (SGD: ``E_B[g_Bᵀ H_B g_B / ‖g_B‖²]``) or
        ``"preconditioned_sharpness"`` (Adam).
      optimizer: ``"gd"``, ``"sgd"`` or ``"adam"`` (``"adam"`` for minibatch Adam too).
      learning_rate: η.
      b1: Adam's β₁ (0 for GD and SGD).
      batch_size: the minibatch size (``None``: full batch).
      diverged_at: the step whose loss was non-finite or above ``max_loss``, −1 if none; every
        row from there on is NaN.
      result: the :class:`eoslib.engine.train.TrainResult` (final state, config) to go further.
    """

    step: Int[np.ndarray, " T"]
    loss: Float[np.ndarray, " T"]
    accuracy: Float[np.ndarray, " T"] | None
    probe_step: Int[np.ndarray, " P"]
    sharpness: Float[np.ndarray, " P"]
    top_eigenvalues: Float[np.ndarray, "P k"]
    eig_converged: Bool[np.ndarray, " P"]
    preconditioned_sharpness: Float[np.ndarray, " P"]
    batch_sharpness: Float[np.ndarray, " P"]
    batch_sharpness_sem: Float[np.ndarray, " P"]
    step_sharpness: Float[np.ndarray, "P M"] | None
    minibatch_lambda_max: Float[np.ndarray, " P"]
    minibatch_top_eigenvalues: Float[np.ndarray, "P M_eig"] | None
    edge: float
    measure: str
    optimizer: str
    learning_rate: float
    b1: float
    batch_size: int | None
    diverged_at: int
    result: Any

    @property
    def against_edge(self) -> Float[np.ndarray, " P"]:
        """The quantity held against :attr:`edge` at each probe (the field named by ``measure``)."""
        return getattr(self, self.measure)


class OptimizerReading(NamedTuple):
    """What :func:`read_optimizer` read off an optax optimizer.

    Attributes:
      kind: ``"gd"`` (a memoryless step −η g) or ``"adam"`` (Adam's moments in its state).
      learning_rate: η.
      b1: Adam's β₁ (0 for ``"gd"``).
      b2: Adam's β₂ (0 for ``"gd"``).
      eps: Adam's ε (0 for ``"gd"``).
    """

    kind: str
    learning_rate: float
    b1: float
    b2: float
    eps: float


# ----------------------------------------------------------------------------- the optimizer


def _is_moments(node: Any) -> bool:
    return isinstance(node, (optax.ScaleByAdamState, optim.ClippedAdamState))


def adam_moments(opt_state: PyTree) -> list:
    """Every Adam moment state (``optax.ScaleByAdamState`` or
    :class:`eoslib.engine.optim.ClippedAdamState`: ``count``, ``mu``, ``nu``) inside ``opt_state``."""
    return [s for s in jax.tree.leaves(opt_state, is_leaf=_is_moments) if _is_moments(s)]


def read_optimizer(optimizer: optax.GradientTransformation, *, dtype=jnp.float32) -> OptimizerReading:
    """η (and Adam's β₁, β₂, ε) of ``optimizer``, read from trial updates of a scalar parameter
    at 0 (so coupled weight decay adds nothing).

    With Adam's moments in the state: β₁ = 1 − μ and β₂ = 1 − ν after one update of gradient 1;
    η and ε from the first updates of gradients 1 and 10⁻⁶, ``−η m̂ / (√v̂ + ε)`` with m̂ and v̂
    bias-corrected as the optimizer computes them (in its dtype). Otherwise the
    step must be memoryless and linear, ``−η g`` (plain GD / SGD): the same gradient twice must
    give the same update.

    Raises:
      ValueError: the optimizer holds several Adam moment states, or updates a constant gradient
        differently from step to step (momentum, a schedule), or its step is not −η g with η > 0;
        the message says to pass ``learning_rate=`` (and ``edge="gd"``) to compare with 2/η anyway.
    """
    zero = {"w": jnp.zeros((), dtype)}
    grad = lambda g: {"w": jnp.asarray(g, dtype)}
    state0 = optimizer.init(zero)
    found = adam_moments(state0)
    if len(found) > 1:
        raise ValueError(f"optimizer: its state holds {len(found)} Adam moment states; track reads "
                         "one (a single optax.scale_by_adam or eoslib clipped_adam in the chain)")

    def first_update(g):
        try:
            update, state = optimizer.update(grad(g), state0, zero)
        except Exception as err:  # e.g. a transformation tied to the parameters' tree (optax.masked)
            raise ValueError(f"optimizer: a trial update of a scalar parameter failed ({type(err).__name__}: "
                             f"{err}); pass learning_rate=η (and edge='gd' for an optimizer without "
                             "Adam's moments)") from err
        return float(update["w"]), state

    if found:
        u1, state1 = first_update(1.0)
        u2, state2 = first_update(1e-6)
        m1 = adam_moments(state1)[0]
        b1, b2 = round(1.0 - float(m1.mu["w"]), 6), round(1.0 - float(m1.nu["w"]), 6)

        def scaled(state, u):  # η / (√v̂ + ε) from one update, v̂ and m̂ as the optimizer rounds them
            m = adam_moments(state)[0]
            m_hat = float(optax.tree.bias_correction(m.mu, b1, m.count)["w"])
            v_hat = float(optax.tree.bias_correction(m.nu, b2, m.count)["w"])
            return -u / m_hat, np.sqrt(v_hat)

        (a1, r1), (a2, r2) = scaled(state1, u1), scaled(state2, u2)
        eta = (r1 - r2) / (1.0 / a1 - 1.0 / a2) if a1 > 0 and a2 > 0 else float("nan")
        eps = max(0.0, eta / a2 - r2) if eta > 0 else float("nan")
        if not (eta > 0 and 0 <= b1 < 1 and 0 < b2 < 1):
            raise ValueError(f"optimizer: could not read Adam's η, β₁, β₂ from its updates (got η="
                             f"{eta:.3g}, β₁={b1:.3g}, β₂={b2:.3g}); pass learning_rate=η")
        return OptimizerReading("adam", float(eta), b1, b2, float(eps))
    u1, state1 = first_update(1.0)
    u2 = float(optimizer.update(grad(1.0), state1, zero)[0]["w"])
    if not u1 < 0:
        raise ValueError(f"optimizer: its first update of the gradient 1 is {u1:.3g}; a descent step "
                         "−η g with η > 0 is expected. Pass learning_rate=η and edge='gd' to compare "
                         "its curvature with 2/η anyway")
    if abs(u2 - u1) > 1e-5 * abs(u1):
        raise ValueError(f"optimizer: it updates the same gradient by {u1:.4g}, then by {u2:.4g} (momentum or "
                         "a schedule?); track knows the edges of plain GD / SGD (2/η) and of Adam. "
                         "Pass learning_rate=η and edge='gd' to compare with 2/η anyway")
    return OptimizerReading("gd", -u1, 0.0, 0.0, 0.0)


def _adam_probe(objective, reading: OptimizerReading, tol: float, max_restarts: int) -> probes.Probe:
    """λ₁(P^{-1/2} H P^{-1/2}) of the full-batch objective with ``P = √v̂ + ε`` from the state's
    Adam moments (the preconditioner of the next step, up to that step's own update of v; the
    convention of :func:`eoslib.engine.probes.preconditioned_sharpness`), warm-started from
    ``P^{1/2} u`` (u: the loop's top Hessian eigenvector)."""

    def probe(params, opt_state, eigenpairs, hp, data):
        x, y = data
        moments = adam_moments(opt_state)[0]
        count = jnp.maximum(moments.count, 1)
        nu_hat = optax.tree.bias_correction(moments.nu, reading.b2, count)
        precond = jax.tree.map(lambda v: jnp.sqrt(v) + reading.eps, nu_hat)
        start = jnp.sqrt(ravel_pytree(precond)[0]) * eigenpairs.vectors[:, 0]
        result = hessian.preconditioned_eigsh(lambda p: objective(p, x, y, hp)[0], params, precond,
                                              v0=start / jnp.linalg.norm(start), tol=tol,
                                              max_restarts=max_restarts, precision="highest")
        return probes.PreconditionedRecord(result.values[0], jnp.zeros((), result.values.dtype),
                                           jnp.median(ravel_pytree(nu_hat)[0]), result.residuals[0],
                                           result.converged)

    return probe


# ----------------------------------------------------------------------------- checks


def _path(path) -> str:
    return "params" + jax.tree_util.keystr(path)


def _split_params(params: PyTree) -> tuple[PyTree, PyTree]:
    """(floating arrays, the rest) of ``params``; a ``ValueError`` naming integer or boolean
    array leaves."""
    bad = [(_path(p), jnp.result_type(a), jnp.shape(a))
           for p, a in jax.tree_util.tree_flatten_with_path(params)[0]
           if eqx.is_array(a) and not jnp.issubdtype(a.dtype, jnp.inexact)]
    if bad:
        listed = ", ".join(f"{name} ({dtype}, shape {shape})" for name, dtype, shape in bad[:4])
        raise ValueError(f"params has integer or boolean arrays: {listed}; track differentiates every "
                         "array of params, so only floating-point arrays are allowed. Keep counters "
                         "and indices out of params (e.g. eqx.partition(model, eqx.is_inexact_array), "
                         "or nnx.split(model, nnx.Param, ...)) or cast them to a float dtype")
    trainable, static = eqx.partition(params, eqx.is_array)
    if not jax.tree.leaves(trainable):
        raise ValueError("params has no floating-point arrays to train (got a PyTree with leaves "
                         f"{[type(a).__name__ for a in jax.tree.leaves(params)][:5]})")
    if any(jnp.issubdtype(a.dtype, jnp.complexfloating) for a in jax.tree.leaves(trainable)):
        raise ValueError("params has complex arrays; track needs real floating-point parameters")
    return trainable, static


def _check_data(data) -> tuple[Array, Array]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"data must be a pair (x, y) of arrays with the examples on the leading axis; "
                         f"got {type(data).__name__}" + (f" of length {len(data)}" if hasattr(data, "__len__") else ""))
    x, y = data
    if np.ndim(x) < 1 or np.ndim(y) < 1 or np.shape(x)[0] != np.shape(y)[0]:
        raise ValueError(f"data: x of shape {np.shape(x)} and y of shape {np.shape(y)} must have the "
                         "same number of examples on their leading axis")
    return x, y


def _loss_output(loss, trainable, static, x, y):
    """``(has_outputs, outputs shape)`` of the reader's loss, traced once; a ``ValueError`` for
    a loss that does not return a scalar or ``(scalar, outputs)``."""
    spec = lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a))
    out = jax.eval_shape(lambda p, xb, yb: loss(eqx.combine(p, static), xb, yb), trainable, spec(x), spec(y))
    if isinstance(out, tuple):
        if len(out) != 2 or getattr(out[0], "shape", None) != ():
            shapes = [getattr(o, "shape", type(o).__name__) for o in out]
            raise ValueError(f"loss returned a tuple of {len(out)} with shapes {shapes}; it must return a "
                             "scalar (the mean over the examples) or a pair (scalar, outputs of shape (N, K))")
        return True, tuple(out[1].shape)
    shape = getattr(out, "shape", None)
    if shape != ():
        raise ValueError(f"loss returned an array of shape {shape}; track needs a scalar: the mean over "
                         "the examples of the batch (e.g. 0.5 * jnp.mean(jnp.sum((f - y) ** 2, -1)) for "
                         "½MSE, not the per-example vector)")
    return False, None


def _classes(y, outputs_shape) -> str | None:
    """``"labels"`` (integer class labels ``(N,)``), ``"onehot"`` (one-hot rows ``(N, K)``) or
    ``None`` (not classes: no accuracy); a ``ValueError`` for labels of the wrong shape."""
    n = np.shape(y)[0]
    if jnp.issubdtype(jnp.result_type(y), jnp.integer):
        if np.ndim(y) != 1:
            raise ValueError(f"labels y have shape {np.shape(y)} and an integer dtype: class labels must "
                             f"be a vector of shape (N,) = ({n},) (e.g. y[:, 0] or y.ravel()), or "
                             "float targets (N, K)")
        if outputs_shape is None:
            return None
        if len(outputs_shape) != 2 or outputs_shape[0] != n or outputs_shape[1] < 2:
            raise ValueError(f"labels y are classes of shape ({n},) but the loss's outputs have shape "
                             f"{outputs_shape}; with class labels the outputs must be scores (N, K) = "
                             f"({n}, K), K ≥ 2")
        low, high = int(np.min(y)), int(np.max(y))
        if low < 0 or high >= outputs_shape[1]:
            raise ValueError(f"labels y range over [{low}, {high}] but the outputs have "
                             f"K = {outputs_shape[1]} columns; labels must lie in [0, K)")
        return "labels"
    if outputs_shape is None:
        return None
    if tuple(outputs_shape) != tuple(np.shape(y)):
        raise ValueError(f"targets y have shape {np.shape(y)} but the loss's outputs have shape "
                         f"{outputs_shape}; float targets must have the outputs' shape (one-hot rows "
                         "(N, K) for K classes), or give integer labels of shape (N,)")
    yy = np.asarray(y)
    if yy.ndim == 2 and yy.shape[1] >= 2 and np.all((yy == 0) | (yy == 1)) and np.all(yy.sum(1) == 1):
        return "onehot"
    return None


def available_bytes() -> int | None:
    """Memory the run may use: the device's ``bytes_limit`` (a GPU), else the host's available
    memory (``MemAvailable`` of ``/proc/meminfo``), ``None`` when neither is known."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def activation_bytes(fn: Callable, *args) -> int:
    """An estimate of the memory a gradient or HVP of ``fn(*args)`` holds: the bytes of every
    intermediate value of its jaxpr (nested jaxprs included), traced with shapes only."""
    closed = jax.make_jaxpr(fn)(*args)

    def total(jaxpr) -> int:
        out = 0
        for eqn in jaxpr.eqns:
            for v in eqn.outvars:
                aval = v.aval
                if hasattr(aval, "shape") and hasattr(aval, "dtype"):
                    out += int(np.prod(aval.shape, dtype=np.int64)) * np.dtype(aval.dtype).itemsize
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                out += total(sub)
        return out

    return total(closed.jaxpr)


def _check_memory(objective, trainable, x, y, microbatch, memory_limit) -> None:
    """A ``ValueError`` saying to pass ``microbatch=`` when the data plus a full-batch HVP's
    activations (twice the loss's intermediates: primal and tangent) exceed the memory."""
    limit = memory_limit if memory_limit is not None else available_bytes()
    if limit is None:
        return
    n = np.shape(x)[0]
    rows = min(n, microbatch) if microbatch else n
    spec = lambda a: jax.ShapeDtypeStruct((rows,) + np.shape(a)[1:], jnp.result_type(a))
    need = 2 * activation_bytes(lambda p, xb, yb: objective(p, xb, yb, {})[0], trainable, spec(x), spec(y))
    data_bytes = int(x.nbytes) + int(y.nbytes)
    gib = lambda b: f"{b / 2**30:.2f} GiB"
    if data_bytes > limit:
        raise ValueError(f"data: x and y take {gib(data_bytes)}, more than the {gib(limit)} of memory "
                         "available; track keeps the training set in memory: pass a subset")
    if need + data_bytes > limit:
        hint = max(1, int(n * (limit - data_bytes) / max(need, 1) / 4))
        where = (f"microbatch={microbatch} still needs" if microbatch else
                 f"the full-batch loss over {n} examples needs")
        raise ValueError(f"data: {where} about {gib(need)} of activations for its gradient and "
                         f"Hessian-vector products, more than the {gib(limit - data_bytes)} left beside "
                         f"the data (memory_limit / available memory); pass microbatch=m (e.g. "
                         f"microbatch={min(hint, rows // 2) or 1}) so that each full-batch gradient and "
                         "HVP holds one micro-batch of m examples at a time")


def _default_probe_every(steps: int) -> int:
    """The largest divisor of ``steps`` at most ``max(1, steps // 40)`` (about 40 probes)."""
    target = max(1, steps // 40)
    return max(d for d in range(1, target + 1) if steps % d == 0)


# ----------------------------------------------------------------------------- track


def track(
    loss: Callable[[PyTree, Array, Array], Any],
    params: PyTree,
    data: tuple[Array, Array],
    optimizer: optax.GradientTransformation,
    *,
    steps: int,
    probe_every: int | None = None,
    top_k: int = 1,
    batch_size: int | None = None,
    microbatch: int | None = None,
    edge: str = "auto",
    learning_rate: float | None = None,
    batches: int = 32,
    eig_batches: int | None = None,
    eig_tol: float = 1e-3,
    max_loss: float = 1e8,
    seed: int = 0,
    memory_limit: int | None = None,
    progress: bool = True,
) -> EdgeHistory:
    """Train ``params`` on ``data`` with ``optimizer`` and record the edge-of-stability diagnostics.

    Args:
      loss: ``loss(params, x, y)``: a scalar, the mean over the examples of the batch; or
        ``(scalar, outputs)`` with outputs ``(N, K)``, from which the accuracy is read when ``y``
        holds classes.
      params: the initial parameters: a dict of arrays, an Equinox module, a Flax NNX state, …
        (floating-point arrays are trained; see the module docstring).
      data: ``(x, y)``, all the training examples on the leading axis. ``y``: integer class labels
        ``(N,)``, or float targets (one-hot rows ``(N, K)`` count as classes).
      optimizer: an optax optimizer (``optax.sgd(η)``, ``optax.adam(η)``, …).
      steps: optimizer steps.
      probe_every: steps between curvature probes (a divisor of ``steps``); default about 40
        probes in all.
      top_k: Hessian eigenvalues per probe.
      batch_size: ``None`` for full-batch steps; else minibatch steps of this many examples (a
        reshuffle per epoch) and the batch sharpness (and the minibatch λ₁ mean) at every probe.
      microbatch: evaluate full-batch losses, gradients and HVPs in pieces of this many examples
        (for data whose activations do not fit in memory at once;
        :func:`eoslib.engine.train.microbatched`).
      edge: ``"auto"`` (Adam's edge when the optimizer holds Adam's moments, else 2/η), ``"gd"``
        or ``"adam"`` (which needs Adam's second moment in the optimizer's state).
      learning_rate: η, when it cannot be read from the optimizer (a schedule, momentum).
      batches: minibatches the batch sharpness averages over (a fixed set drawn with ``seed``,
        see :func:`eoslib.engine.probes.batch_sharpness`; at least 1, at least 2 for its
        standard error).
      eig_batches: how many of those minibatches also get a top-eigenvalue solve for
        ``minibatch_lambda_max`` (an int in [0, ``batches``]; default min(8, ``batches``); each costs one eigensolve per
        probe).
      eig_tol: relative residual tolerance of every eigensolve.
      max_loss: a loss above this (or non-finite) marks the run diverged.
      seed: minibatch order, probe start vectors and the batch-sharpness minibatches.
      memory_limit: bytes the run may use (default: what the device or host reports).
      progress: show a progress bar.

    Returns:
      An :class:`EdgeHistory`.

    Raises:
      ValueError: naming the argument, its value and what is allowed: a loss that does not
        return a scalar, integer parameters, labels of the wrong shape, ``edge="adam"`` with an
        optimizer without a second moment, data whose full-batch HVP does not fit in memory
        (pass ``microbatch=``), an optimizer whose η cannot be read (pass ``learning_rate=``).
    """
    if edge not in EDGES:
        raise ValueError(f"edge={edge!r} is not allowed; allowed: one of {list(EDGES)}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps={steps!r} is not allowed; allowed: an int >= 1")
    if not callable(loss):
        raise ValueError(f"loss={loss!r} must be a function loss(params, x, y) -> scalar")
    if not hasattr(optimizer, "init") or not hasattr(optimizer, "update"):
        raise ValueError(f"optimizer={optimizer!r} must be an optax GradientTransformation "
                         "(e.g. optax.sgd(0.1), optax.adam(1e-3))")
    trainable, static = _split_params(params)
    x, y = _check_data(data)
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = x.shape[0]
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or not 1 <= batch_size <= n):
        raise ValueError(f"batch_size={batch_size!r} is not allowed; allowed: None (full batch) or an "
                         f"int in [1, {n}] (the number of examples)")
    has_outputs, outputs_shape = _loss_output(loss, trainable, static, x, y)
    classes = _classes(y, outputs_shape)
    dtype = ravel_pytree(trainable)[0].dtype

    state0 = optimizer.init(trainable)
    moments = adam_moments(state0)
    if edge == "adam" and not moments:
        kinds = sorted({type(s).__name__ for s in jax.tree.leaves(
            state0, is_leaf=lambda s: isinstance(s, tuple) and hasattr(s, "_fields"))})
        raise ValueError(f"edge='adam' holds the preconditioned sharpness against Adam's edge, which "
                         "reads the second moment ν from the optimizer's state; this optimizer's state "
                         f"has none (it holds {kinds or 'nothing'}). Use an optimizer built on "
                         "optax.scale_by_adam (optax.adam, optax.adamw) or eoslib's clipped_adam, or "
                         "edge='gd' (2/η)")
    use_adam = bool(moments) and edge != "gd"
    if learning_rate is not None:
        if not (isinstance(learning_rate, (int, float, np.floating)) and learning_rate > 0):
            raise ValueError(f"learning_rate={learning_rate!r} is not allowed; allowed: a float > 0 (η)")
        reading = read_optimizer(optimizer, dtype=dtype) if use_adam else OptimizerReading(
            "gd", float(learning_rate), 0.0, 0.0, 0.0)
        reading = reading._replace(learning_rate=float(learning_rate))
    else:
        reading = read_optimizer(optimizer, dtype=dtype)
        if not use_adam:
            reading = OptimizerReading("gd", reading.learning_rate, 0.0, 0.0, 0.0)
    threshold = (adaptive.adam_edge(reading.learning_rate, reading.b1) if use_adam
                 else adaptive.gd_edge(reading.learning_rate))

    def accuracy(outputs, yb):
        if classes == "labels":
            return jnp.mean(jnp.argmax(outputs, -1) == yb)
        return jnp.mean(jnp.argmax(outputs, -1) == jnp.argmax(yb, -1))

    def plain(p, xb, yb, hp):
        out = loss(eqx.combine(p, static), xb, yb)
        value = out[0] if has_outputs else out
        aux = {"accuracy": accuracy(out[1], yb)} if classes else {}
        return value, aux

    _check_memory(plain, trainable, x, y, microbatch, memory_limit)
    objective = train.microbatched(plain, microbatch)
    probe_every = _default_probe_every(int(steps)) if probe_every is None else probe_every
    config = train.TrainConfig(steps=int(steps), probe_every=probe_every, top_k=top_k, eig_tol=eig_tol,
                               max_loss=max_loss, batch_size=batch_size)
    named = {}
    if use_adam:
        named["adam"] = _adam_probe(objective, reading, eig_tol, 5)
    if batch_size is not None:
        named["batch"] = probes.batch_sharpness(lambda p, xb, yb: plain(p, xb, yb, {})[0], int(batch_size),
                                                batches=batches, eig_batches=eig_batches, seed=seed,
                                                tol=eig_tol)
    probe_fn = probes.combine(**named) if named else None
    result = train.run(objective, lambda hp: optimizer, trainable, (x, y), config,
                       key=jax.random.key(seed), probe_fn=probe_fn, progress=progress)
    h = result.history
    nan = np.full(np.shape(h.sharpness), np.nan, np.asarray(h.sharpness).dtype)
    extra = h.extra
    converged = np.asarray(h.eig_converged, bool)
    precond = nan
    batch_s = sem = minibatch_top = nan
    per_batch = per_batch_top = None
    if use_adam:  # before Adam's first update it has no second moment (P = ε): not measured
        first = np.asarray(h.probe_step) == 0
        precond = np.where(first, np.nan, np.asarray(extra.adam.precond_sharpness))
        converged = converged & (first | np.asarray(extra.adam.converged, bool))
    if batch_size is not None:
        batch_s = np.asarray(extra.batch.batch_sharpness)
        per_batch = np.asarray(extra.batch.step_sharpness)
        sem = (np.std(per_batch, axis=1, ddof=1) / np.sqrt(per_batch.shape[1]) if per_batch.shape[1] > 1
               else np.full_like(batch_s, np.nan))
        minibatch_top = np.asarray(extra.batch.minibatch_lambda_max)
        per_batch_top = np.asarray(extra.batch.batch_top_eigenvalues)
        converged = converged & np.asarray(extra.batch.converged, bool)
    measure = ("preconditioned_sharpness" if use_adam else
               "batch_sharpness" if batch_size is not None else "sharpness")
    kind = "adam" if use_adam else ("sgd" if batch_size is not None else "gd")
    return EdgeHistory(
        step=np.asarray(h.step), loss=np.asarray(h.loss),
        accuracy=np.asarray(h.aux["accuracy"]) if classes else None,
        probe_step=np.asarray(h.probe_step), sharpness=np.asarray(h.sharpness),
        top_eigenvalues=np.asarray(h.top_eigenvalues), eig_converged=converged,
        preconditioned_sharpness=precond, batch_sharpness=batch_s, batch_sharpness_sem=sem,
        step_sharpness=per_batch, minibatch_lambda_max=minibatch_top,
        minibatch_top_eigenvalues=per_batch_top,
        edge=float(threshold), measure=measure, optimizer=kind, learning_rate=float(reading.learning_rate),
        b1=float(reading.b1), batch_size=None if batch_size is None else int(batch_size),
        diverged_at=int(h.diverged_at), result=result)
