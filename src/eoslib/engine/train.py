"""Training runs as compiled programs: GD / SGD with curvature probes inside the loop, sweeps.

One run is a ``lax.scan`` over *probe intervals*; each interval is one probe (top-k Hessian
eigenpairs by :func:`eoslib.engine.linalg.eigsh`, warm-started from the previous probe's
eigenvectors, plus an optional user ``probe_fn``) followed by an inner ``lax.scan`` of
``probe_every`` optimizer steps. Nesting the scans instead of branching with ``lax.cond`` keeps
probes off the steps that do not need them even under ``vmap`` (where a ``cond`` would run both
branches every step). The scan is called in chunks from Python so a progress bar advances and a
run can be resumed from its returned state.

Divergence: a step whose loss is non-finite or above ``max_loss`` marks the run diverged at that
step; parameters stop updating and every later record is NaN. Nothing is raised, and the other
members of a sweep carry on.

Sweeps: hyperparameters given as arrays with a leading axis S (learning rates, weight decays,
seeds via batched initial parameters) run as one ``vmap``-ed program, or in sequential batches
of ``sweep_batch`` members (``lax.map``) when memory is short.

The objective is ``objective(params, x, y, hp) -> (loss, aux)`` with ``aux`` a dict of scalars
(:func:`supervised` builds the usual one); the optimizer comes from ``make_optimizer(hp)``, so
both can depend on swept hyperparameters ``hp`` (a dict of scalars inside the program). The
optimizer's ``update`` receives the step's batch as the extra argument ``batch=(x, y)``
(optax's ``GradientTransformationExtraArgs``; plain transformations ignore it), for
transformations that need the loss itself, such as
:func:`eoslib.engine.optim.decay_off_sharpness_gradient`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray, PyTree

from eoslib.engine import hessian, losses

Objective = Callable[[PyTree, Array, Array, Mapping[str, Array]], tuple[Array, dict]]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a run; each field is one decision.

    Attributes:
      steps: optimizer steps in total (a multiple of ``probe_every`` when probing).
      probe_every: steps between spectral probes; 0 disables them.
      top_k: Hessian eigenpairs per probe (the sharpness is the first).
      eig_tol: relative residual tolerance of each probe (see :func:`eoslib.engine.linalg.eigsh`); the
        eigenvalue error is about ``(tol·λ)² / gap``, so 1e-3 gives ~1e-5·λ even for a gap of 0.1·λ.
      eig_max_restarts: restarts a probe may spend before it returns its best estimate.
      eig_num_iters: Lanczos block steps per cycle; warm-started probes rarely need many, and each
        step's reorthogonalisation costs in proportion to this buffer.
      eig_reortho: ``"full"`` (two Gram–Schmidt passes every step) or ``"mpk"`` (a second pass only
        when the first lost too much; cheaper); see :mod:`eoslib.engine.linalg`.
      max_loss: a loss above this (or non-finite) marks the run diverged.
      batch_size: ``None`` for full-batch GD; else minibatch SGD with a seeded reshuffle per epoch.
      chunks: how many compiled chunks the run is split into (progress-bar granularity).
      precision: matmul precision of the probes (``"highest"``; TF32 corrupts eigenvalues).
    """

    steps: int
    probe_every: int = 0
    top_k: int = 1
    eig_tol: float = 1e-3
    eig_max_restarts: int = 2
    eig_num_iters: int | None = 20
    eig_reortho: str = "full"
    max_loss: float = 1e8
    batch_size: int | None = None
    chunks: int = 20
    precision: str = "highest"

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be ≥ 1")
        if self.probe_every < 0:
            raise ValueError(f"probe_every={self.probe_every} must be ≥ 0 (0: no probes)")
        if self.probe_every and self.steps % self.probe_every:
            raise ValueError(f"steps={self.steps} must be a multiple of probe_every={self.probe_every}")
        if self.top_k < 1:
            raise ValueError(f"top_k={self.top_k} must be ≥ 1")
        if self.eig_reortho not in ("full", "mpk", "none"):
            raise ValueError(f"eig_reortho={self.eig_reortho!r} is not one of ['full', 'mpk', 'none']")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be ≥ 1 or None (full batch)")


class TrainState(NamedTuple):
    """The scan's carry: everything needed to continue a run."""

    params: PyTree
    opt_state: PyTree
    eigvecs: Array  # (n, top_k) warm start of the next probe, ravel_pytree order
    step: Array  # int32 scalar: steps taken
    diverged_at: Array  # int32 scalar: −1, or the step whose loss went bad
    key: PRNGKeyArray


class History(NamedTuple):
    """What a run recorded (under a sweep every leaf has a leading axis S).

    Attributes:
      step: ``(T,)`` step index t of each row; the row holds quantities at θ_t, before update t.
      loss: ``(T,)`` the objective on the step's batch (the full batch for GD).
      aux: dict of ``(T,)`` arrays from the objective (e.g. ``accuracy``).
      grad_norm: ``(T,)`` ‖∇L(θ_t)‖.
      param_norm: ``(T,)`` ‖θ_t‖.
      probe_step: ``(P,)`` step index of each probe.
      sharpness: ``(P,)`` λ₁ of the full-batch objective's Hessian.
      top_eigenvalues: ``(P, k)`` the top-k eigenvalues, descending.
      eig_residuals: ``(P, k)`` their residual norms.
      matvecs: ``(P,)`` HVPs each probe spent.
      extra: dict of ``(P, …)`` arrays from ``probe_fn`` (empty if none).
      diverged_at: scalar, −1 or the step at which the run diverged.
    """

    step: Array
    loss: Array
    aux: dict
    grad_norm: Array
    param_norm: Array
    probe_step: Array
    sharpness: Array
    top_eigenvalues: Array
    eig_residuals: Array
    matvecs: Array
    extra: dict
    diverged_at: Array


@dataclass
class TrainResult:
    """A finished (or paused) run: its history, final state, settings and hyperparameters."""

    history: History
    state: TrainState
    config: TrainConfig
    hparams: dict

    @property
    def diverged(self) -> np.ndarray:
        return np.asarray(self.history.diverged_at) >= 0


def supervised(model_loss: str = "half_mse") -> Objective:
    """The objective ``L(θ) + γ/2 ‖θ‖²`` of a model ``params(x)`` (an Equinox module), with
    ``γ = hp["gamma"]`` when the hyperparameters have it (coupled weight decay), and
    ``aux = {"accuracy": …}``. ``model_loss`` is ``"half_mse"`` or ``"cross_entropy"``."""
    loss_fn = losses.get(model_loss)

    def objective(params, x, y, hp):
        outputs = params(x)
        loss = loss_fn(outputs, y)
        if "gamma" in hp:
            loss = loss + 0.5 * hp["gamma"] * losses.squared_norm(params)
        return loss, {"accuracy": losses.accuracy(outputs, y)}

    return objective


def _tree_where(cond, a, b):
    return jax.tree.map(lambda u, v: jnp.where(cond, u, v), a, b)


def _norm(tree):
    return jnp.sqrt(sum(jnp.vdot(p, p) for p in jax.tree.leaves(tree)))


def _batch(x, y, state, config, n):
    if config.batch_size is None:
        return x, y
    per_epoch = n // config.batch_size
    epoch, within = state.step // per_epoch, state.step % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(state.key, epoch), n)
    idx = jax.lax.dynamic_slice(perm, (within * config.batch_size,), (config.batch_size,))
    return x[idx], y[idx]


def _make_chunk(objective, make_optimizer, config, probe_fn, intervals, inner_steps):
    """A pure function ``(state, hp, x, y) -> (state, History-without-diverged_at)``."""

    def run_chunk(state: TrainState, hp, x, y):
        optimizer = optax.with_extra_args_support(make_optimizer(hp))
        n = x.shape[0]

        def step(state, _):
            xb, yb = _batch(x, y, state, config, n)
            (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params, xb, yb, hp)
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params, batch=(xb, yb))
            params = optax.apply_updates(state.params, updates)
            bad = ~jnp.isfinite(loss) | (loss > config.max_loss)
            diverged_at = jnp.where((state.diverged_at < 0) & bad, state.step, state.diverged_at)
            alive = diverged_at < 0
            nan = lambda v: jnp.where(state.diverged_at < 0, v, jnp.nan)  # NaN after divergence
            record = dict(step=state.step, loss=nan(loss), aux=jax.tree.map(nan, aux),
                          grad_norm=nan(_norm(grads)), param_norm=nan(_norm(state.params)))
            new = TrainState(_tree_where(alive, params, state.params),
                             _tree_where(alive, opt_state, state.opt_state),
                             state.eigvecs, state.step + 1, diverged_at, state.key)
            return new, record

        def probe(state):
            loss_fn = lambda p: objective(p, x, y, hp)[0]
            alive = state.diverged_at < 0
            if config.probe_every:
                result = hessian.eigsh(loss_fn, state.params, config.top_k, v0=state.eigvecs,
                                       tol=config.eig_tol, max_restarts=config.eig_max_restarts,
                                       num_iters=config.eig_num_iters, reortho=config.eig_reortho,
                                       precision=config.precision)
                extra = probe_fn(state.params, state.opt_state, result, hp, (x, y)) if probe_fn else {}
                nan = lambda v: jnp.where(alive, v, jnp.nan)
                record = dict(probe_step=state.step, sharpness=nan(result.values[0]),
                              top_eigenvalues=nan(result.values), eig_residuals=nan(result.residuals),
                              matvecs=result.matvecs, extra=jax.tree.map(nan, extra))
                eigvecs = jnp.where(alive, result.vectors, state.eigvecs)
                return state._replace(eigvecs=eigvecs), record
            return state, None

        def interval(state, _):
            state, probe_record = probe(state)
            state, step_records = jax.lax.scan(step, state, None, length=inner_steps)
            return state, (probe_record, step_records)

        state, (probes, steps) = jax.lax.scan(interval, state, None, length=intervals)
        flat = lambda a: a.reshape((-1,) + a.shape[2:])
        steps = jax.tree.map(flat, steps)
        return state, (probes, steps)

    return run_chunk


@functools.lru_cache(maxsize=64)
def _compiled_chunk(objective, make_optimizer, config, probe_fn, intervals, inner, sweep, sweep_batch):
    """The jitted chunk program, cached across calls of :func:`run` with the same functions and
    settings (``jax.jit`` caches by function identity, and the chunk is a fresh closure)."""
    single = _make_chunk(objective, make_optimizer, config, probe_fn, intervals, inner)
    if not sweep:
        fn = single
    elif sweep_batch is None:
        fn = jax.vmap(single, in_axes=(0, 0, None, None))
    else:
        def fn(s, hp, x, y):
            return jax.lax.map(lambda a: single(a[0], a[1], x, y), (s, hp), batch_size=sweep_batch)
    return jax.jit(fn)


def init_state(params: PyTree, optimizer: optax.GradientTransformation, top_k: int, *,
               key: PRNGKeyArray) -> TrainState:
    """The starting carry: optimizer state, a random start block for the first probe."""
    flat, _ = ravel_pytree(params)
    k1, k2 = jax.random.split(key)
    eigvecs = jax.random.normal(k1, (flat.size, top_k), flat.dtype)
    return TrainState(params, optimizer.init(params), eigvecs, jnp.array(0, jnp.int32),
                      jnp.array(-1, jnp.int32), k2)


def _hparam_axis(hparams: Mapping[str, Any]) -> int | None:
    sizes = {np.shape(v)[0] for v in hparams.values() if np.ndim(v) >= 1}
    if len(sizes) > 1:
        raise ValueError(f"swept hyperparameters must share one length; got lengths {sorted(sizes)}")
    return sizes.pop() if sizes else None


def run(
    objective: Objective,
    make_optimizer: Callable[[Mapping[str, Array]], optax.GradientTransformation],
    params: PyTree,
    data: tuple[Array, Array],
    config: TrainConfig,
    *,
    key: PRNGKeyArray,
    hparams: Mapping[str, Any] | None = None,
    batched_params: bool = False,
    probe_fn: Callable | None = None,
    sweep_batch: int | None = None,
    progress: bool = True,
    resume: TrainResult | None = None,
) -> TrainResult:
    """Train; a sweep when any hyperparameter is an array with a leading axis S.

    Args:
      objective: ``(params, x, y, hp) -> (loss, aux)``; see :func:`supervised`.
      make_optimizer: ``hp -> optax.GradientTransformation`` (``hp``: dict of scalars).
      params: initial parameters; with ``batched_params`` every leaf has a leading axis S (e.g.
        ``jax.vmap(init)(keys)`` for a sweep over seeds).
      data: ``(x, y)``: all training inputs and targets (the probes always use all of them).
      config: :class:`TrainConfig`.
      key: PRNG key (probe start vectors, minibatch order); split per sweep member.
      hparams: dict of scalars, or of ``(S,)`` arrays to sweep.
      probe_fn: ``(params, opt_state, eigenpairs, hp, (x, y)) -> dict of arrays`` recorded at each
        probe; ``(x, y)`` is all the training data, passed as traced arguments (a probe that
        closed over the arrays instead would bake them into the program as constants, which
        XLA may spend minutes constant-folding).
      sweep_batch: run the S members in sequential batches of this size (memory).
      progress: show a tqdm bar.
      resume: continue this earlier result for ``config.steps`` more steps.
    """
    hparams = {k: jnp.asarray(v) for k, v in (hparams or {}).items()}
    size = _hparam_axis(hparams)
    if batched_params:
        lead = {np.shape(leaf)[0] for leaf in jax.tree.leaves(params)}
        if len(lead) != 1 or (size is not None and lead != {size}):
            raise ValueError(f"batched_params: leading axes {sorted(lead)} must all equal the sweep size {size}")
        size = lead.pop()
    sweep = size is not None
    if sweep:
        hparams = {k: (jnp.broadcast_to(v, (size,)) if v.ndim == 0 else v) for k, v in hparams.items()}

    x, y = (jnp.asarray(a) for a in data)
    if config.batch_size is not None and config.batch_size > x.shape[0]:
        raise ValueError(f"batch_size={config.batch_size} exceeds the {x.shape[0]} examples")
    inner = config.probe_every or max(1, config.steps // max(1, config.chunks))
    total_intervals = -(-config.steps // inner)
    if not config.probe_every and config.steps % inner:
        raise ValueError(f"steps={config.steps} must be a multiple of {inner} (steps // chunks) "
                         "when probe_every=0; choose chunks dividing steps")

    if resume is not None:
        state = resume.state
    else:
        def init(p, hp, k):
            return init_state(p, make_optimizer(hp), config.top_k, key=k)
        if sweep:
            keys = jax.random.split(key, size)
            params_b = params if batched_params else jax.tree.map(
                lambda a: jnp.broadcast_to(a, (size,) + jnp.shape(a)), params)
            state = jax.vmap(init)(params_b, hparams, keys)
        else:
            state = init(params, hparams, key)

    per_chunk = max(1, -(-total_intervals // max(1, config.chunks)))

    def chunk_fn(intervals):
        return _compiled_chunk(objective, make_optimizer, config, probe_fn, intervals, inner,
                               sweep, sweep_batch)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, unit="step", leave=False)
    pieces, done = [], 0
    while done < total_intervals:
        n_int = min(per_chunk, total_intervals - done)
        state, piece = chunk_fn(n_int)(state, hparams, x, y)
        pieces.append(jax.tree.map(np.asarray, piece))
        done += n_int
        if bar is not None:
            bar.update(n_int * inner)
    if bar is not None:
        bar.close()

    axis = 1 if sweep else 0
    cat = lambda *a: np.concatenate(a, axis=axis)
    probes = jax.tree.map(cat, *[p[0] for p in pieces]) if config.probe_every else None
    steps = jax.tree.map(cat, *[p[1] for p in pieces])
    empty = np.zeros((size, 0) if sweep else (0,))
    history = History(
        step=steps["step"], loss=steps["loss"], aux=steps["aux"], grad_norm=steps["grad_norm"],
        param_norm=steps["param_norm"],
        probe_step=probes["probe_step"] if probes else empty,
        sharpness=probes["sharpness"] if probes else empty,
        top_eigenvalues=probes["top_eigenvalues"] if probes else empty,
        eig_residuals=probes["eig_residuals"] if probes else empty,
        matvecs=probes["matvecs"] if probes else empty,
        extra=probes["extra"] if probes else {},
        diverged_at=np.asarray(state.diverged_at),
    )
    if resume is not None:
        history = _concat_histories(resume.history, history, axis)
    return TrainResult(history, state, config, {k: np.asarray(v) for k, v in hparams.items()})


def _concat_histories(a: History, b: History, axis: int) -> History:
    joined = jax.tree.map(lambda u, v: np.concatenate([u, v], axis=axis),
                          a._replace(diverged_at=None), b._replace(diverged_at=None))
    return joined._replace(diverged_at=b.diverged_at)


# ----------------------------------------------------------------------------- save / load


def save(path: str | Path, result: TrainResult, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``path.npz`` (the history's arrays) and ``path.json`` (config, hparams, provenance).

    The pair is the format a chapter reads back with :func:`load` — e.g. a paper-scale run
    computed on a GPU and shown in the book.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, value in result.history._asdict().items():
        if isinstance(value, dict):
            for sub, arr in value.items():
                arrays[f"{name}.{sub}"] = np.asarray(arr)
        else:
            arrays[name] = np.asarray(value)
    np.savez_compressed(path.with_suffix(".npz"), **arrays)
    meta = {"config": dataclasses.asdict(result.config),
            "hparams": {k: np.asarray(v).tolist() for k, v in result.hparams.items()},
            "provenance": dict(provenance or {}), "saved_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path.with_suffix(".npz")


def save_state(path: str | Path, state: TrainState) -> Path:
    """Checkpoint a run's carry (parameters, optimizer state, warm-start vectors, step, key)."""
    import equinox as eqx

    path = Path(path).with_suffix(".eqx")
    path.parent.mkdir(parents=True, exist_ok=True)
    key_data = jax.random.key_data(state.key)
    eqx.tree_serialise_leaves(path, state._replace(key=key_data))
    return path


def load_state(path: str | Path, like: TrainState) -> TrainState:
    """Read a checkpoint written by :func:`save_state`; ``like`` is a state of the same structure
    (e.g. ``init_state(params, optimizer, top_k, key=...)``)."""
    import equinox as eqx

    template = like._replace(key=jax.random.key_data(like.key))
    state = eqx.tree_deserialise_leaves(Path(path).with_suffix(".eqx"), template)
    return state._replace(key=jax.random.wrap_key_data(state.key))


def load(path: str | Path) -> tuple[History, dict]:
    """Read what :func:`save` wrote: ``(History of numpy arrays, metadata dict)``."""
    path = Path(path)
    with np.load(path.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    fields = {}
    for name in History._fields:
        if name in ("aux", "extra"):
            fields[name] = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(name + ".")}
        else:
            fields[name] = arrays[name]
    meta = json.loads(path.with_suffix(".json").read_text())
    return History(**fields), meta
