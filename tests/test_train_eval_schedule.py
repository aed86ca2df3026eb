"""Evaluations on their own schedule inside the compiled run (``TrainConfig.eval_every`` with
``train.run(..., eval_sets=...)``), and ``stopping.run_evaluated`` on top of it: the one compiled
program gives bit for bit what the earlier segment-by-segment driver (one ``train.run`` per
evaluation, resumed, and a separate jitted evaluator) gave, on CPU."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eoslib.engine import models, stopping, train

MAKE_SGD = lambda hp: optax.sgd(hp["eta"])  # one object: the compiled programs are reused
OBJECTIVE = train.supervised("cross_entropy")


def _problem(dtype, n=24):
    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (n, 5), dtype)
    y = jax.nn.one_hot(jax.random.randint(ky, (n,), 0, 3), 3, dtype=dtype)
    params = models.MLP(5, (7,), 3, "tanh", key=jax.random.key(2))
    params = jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                          params)
    return params, x, y


def _segmented(objective, make_optimizer, params, data, config, *, eval_every, held_out, key,
               hparams, batched_params=False, **run_options):
    """The driver ``run_evaluated`` was before evaluations moved into the engine (commit
    31f059a): ``train.run`` one ``eval_every`` segment at a time with ``resume=``, the
    parameters evaluated between segments by a separate jitted evaluator."""
    segment = dataclasses.replace(config, steps=eval_every,
                                  chunks=max(1, min(config.chunks, eval_every)))
    if eval_every % segment.chunks:
        segment = dataclasses.replace(segment, chunks=1)
    sets = {"train": data, **held_out}
    sets = {k: (jnp.asarray(x), jnp.asarray(y)) for k, (x, y) in sets.items()}
    sweep = batched_params or any(np.ndim(v) > 0 for v in hparams.values())

    def one(p, h, x, y):
        loss, aux = objective(p, x, y, h)
        return loss, aux["accuracy"]

    evaluator = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)) if sweep else one)

    def evaluate(params_now, hp, diverged_at):
        out = {}
        for name, (x, y) in sets.items():
            loss, acc = (np.asarray(a, float) for a in evaluator(params_now, hp, x, y))
            dead = np.asarray(diverged_at) >= 0
            out[name] = {"loss": np.where(dead, np.nan, loss), "accuracy": np.where(dead, np.nan, acc)}
        return out

    result, evals = None, []
    for _ in range(config.steps // eval_every):
        result = train.run(objective, make_optimizer, None if result else params, data, segment,
                           key=key, hparams=hparams, batched_params=batched_params,
                           resume=result, progress=False, **run_options)
        if not evals:
            first = result.history
            p0 = params if (batched_params or not sweep) else jax.tree.map(
                lambda a: jnp.broadcast_to(a, (len(first.diverged_at),) + jnp.shape(a)), params)
            evals.append(evaluate(p0, result.hparams, np.full(np.shape(first.diverged_at), -1)))
        evals.append(evaluate(result.state.params, result.hparams, result.state.diverged_at))
    metrics = {name: {m: np.stack([e[name][m] for e in evals], -1) for m in ("loss", "accuracy")}
               for name in sets}
    return result, metrics


def _equal(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), a, b)


PROBE_FIELDS = ("sharpness", "top_eigenvalues", "eig_residuals")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("probe_every,eval_every,chunks,exact_probes", [
    (0, 4, 3, True), (4, 4, 6, True), (4, 4, 1, False), (12, 12, 2, True), (4, 12, 2, False)])
def test_in_loop_evaluations_equal_the_segmented_driver_bit_for_bit(dtype, probe_every, eval_every,
                                                                    chunks, exact_probes):
    """Everything is bit for bit, with one exception that is the engine's and not the
    evaluations': the segmented driver ran every probe interval as a compiled chunk of one
    interval, and XLA compiles a length-1 scan of the eigensolve differently from a longer one
    (its rounding, not its steps). When the new run also has one probe interval per chunk
    (``chunks = steps // probe_every``, as in the chapter, whose ``chunks = steps // eval_every``
    and ``probe_every = eval_every``) the probes are bit for bit too; otherwise they agree to
    rounding (the same happens between two plain
    ``train.run`` calls with different ``chunks``)."""
    params, x, y = _problem(dtype)
    config = train.TrainConfig(steps=24, probe_every=probe_every, chunks=chunks, max_loss=5.0)
    held_out = {"val": (x[:7], y[:7]), "test": (x[7:], y[7:])}
    hp = {"eta": np.array([0.1, 0.7, 1e4])}  # the last diverges (its loss passes max_loss)
    common = dict(eval_every=eval_every, held_out=held_out,
                  key=jax.random.key(3), hparams=hp)
    old, old_metrics = _segmented(OBJECTIVE, MAKE_SGD, params, (x, y), config, **common)
    new = stopping.run_evaluated(OBJECTIVE, MAKE_SGD, params, (x, y), config, progress=False,
                                 **common)
    assert sorted(new.metrics) == ["test", "train", "val"]
    _equal(new.metrics, old_metrics)
    np.testing.assert_array_equal(new.steps, np.arange(0, 25, eval_every))
    _equal(new.result.state.params, old.state.params)
    if exact_probes:
        _equal(new.result.history, old.history)
    else:
        _equal(new.result.history._replace(**{f: None for f in PROBE_FIELDS}),
               old.history._replace(**{f: None for f in PROBE_FIELDS}))
        rtol = 1e-5 if dtype == jnp.float32 else 1e-12
        for f in PROBE_FIELDS:
            np.testing.assert_allclose(getattr(new.result.history, f), getattr(old.history, f),
                                       rtol=rtol, atol=rtol * 1e-2)
    assert new.result.diverged.tolist() == [False, False, True]
    assert np.isnan(new.metrics["val"]["loss"][2, -1]) and not np.isnan(new.metrics["val"]["loss"][2, 0])


def test_schedule_convention_and_a_single_run(getkey):
    """Rows are θ_0, θ_e, θ_2e, …, θ_T; row 0 is the initial loss, the others match the
    full-batch loss the history records at those steps (and the final state's)."""
    params, x, y = _problem(jnp.float64)
    config = train.TrainConfig(steps=12, probe_every=6, eval_every=3, chunks=2)
    res = train.run(OBJECTIVE, MAKE_SGD, params, (x, y), config, key=getkey(),
                    hparams={"eta": 0.3}, progress=False, eval_sets={"train": (x, y)})
    ev = res.evaluations
    assert ev.step.tolist() == [0, 3, 6, 9, 12]
    assert res.snapshots is None and res.history.probe_step.tolist() == [0, 6]
    np.testing.assert_allclose(ev.metrics["train"]["loss"][:4], res.history.loss[[0, 3, 6, 9]],
                               rtol=1e-12)
    final = OBJECTIVE(res.state.params, x, y, {})
    np.testing.assert_allclose(ev.metrics["train"]["loss"][4], final[0], rtol=1e-12)
    np.testing.assert_allclose(ev.metrics["train"]["accuracy"][4], final[1]["accuracy"])


def test_resume_and_branching_continue_the_schedule(getkey):
    """A resumed run adds its own rows after the earlier ones (its first state is not evaluated
    twice); ``at_probe`` cuts the rows at the branch step."""
    params, x, y = _problem(jnp.float64)
    sets = {"train": (x, y), "val": (x[:5], y[:5])}
    run = lambda p, steps, eval_sets=sets, **kw: train.run(
        OBJECTIVE, MAKE_SGD, p, (x, y),
        train.TrainConfig(steps=steps, probe_every=4, eval_every=2, keep_states=True, chunks=1),
        key=jax.random.key(0), hparams={"eta": 0.3}, progress=False, eval_sets=eval_sets, **kw)
    whole = run(params, 12)
    first = run(params, 8)
    rest = run(None, 4, resume=first)
    assert rest.evaluations.step.tolist() == list(range(0, 13, 2))
    _equal(rest.evaluations, whole.evaluations)
    cut = train.at_probe(whole, 1)  # step 4
    assert cut.evaluations.step.tolist() == [0, 2, 4]
    branch = run(None, 8, resume=cut)
    _equal(branch.evaluations, whole.evaluations)
    with pytest.raises(ValueError, match=r"eval_sets \['train'\] differ"):
        run(None, 4, resume=first, eval_sets={"train": (x, y)})


def test_bad_schedules_and_sets_are_named():
    with pytest.raises(ValueError, match="eval_every=5 must be 0 .* divisor of steps=12"):
        train.TrainConfig(steps=12, eval_every=5)
    with pytest.raises(ValueError, match="eval_every=-1"):
        train.TrainConfig(steps=12, eval_every=-1)
    with pytest.raises(ValueError, match="eval_every=4 must divide probe_every=6 or be a multiple"):
        train.TrainConfig(steps=12, probe_every=6, eval_every=4)
    params, x, y = _problem(jnp.float64)
    go = lambda config, **kw: train.run(OBJECTIVE, MAKE_SGD, params, (x, y), config,
                                        key=jax.random.key(0), hparams={"eta": 0.1},
                                        progress=False, **kw)
    with pytest.raises(ValueError, match=r"eval_sets \(none\) and config.eval_every=3: give both"):
        go(train.TrainConfig(steps=6, eval_every=3))
    with pytest.raises(ValueError, match=r"eval_sets \(\['train'\]\) and config.eval_every=0: give both"):
        go(train.TrainConfig(steps=6), eval_sets={"train": (x, y)})
    with pytest.raises(ValueError, match=r"eval_sets\['val'\]: x \(4, 5\) and y \(3, 3\)"):
        go(train.TrainConfig(steps=6, eval_every=3), eval_sets={"val": (x[:4], y[:3])})
    with pytest.raises(ValueError, match="non-finite"):
        go(train.TrainConfig(steps=6, eval_every=3),
           eval_sets={"val": (x.at[0, 0].set(jnp.nan), y)})
    with pytest.raises(ValueError, match="eval_every=4 must be a multiple or a divisor of probe_every=6"):
        stopping.run_evaluated(OBJECTIVE, MAKE_SGD, params, (x, y),
                               train.TrainConfig(steps=12, probe_every=6), eval_every=4,
                               held_out={}, key=jax.random.key(0), hparams={"eta": 0.1})


def test_sweep_batches_evaluate_like_the_vmapped_sweep():
    """``sweep_batch`` (members in sequential ``lax.map`` batches) gives the same evaluations."""
    params, x, y = _problem(jnp.float64)
    config = train.TrainConfig(steps=8, probe_every=4, chunks=2)
    go = lambda **kw: stopping.run_evaluated(
        OBJECTIVE, MAKE_SGD, params, (x, y), config, eval_every=2, held_out={"val": (x[:6], y[:6])},
        key=jax.random.key(0), hparams={"eta": np.array([0.1, 0.3, 0.9])}, progress=False, **kw)
    whole, batched = go(), go(sweep_batch=2)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-12), batched.metrics,
                 whole.metrics)
    assert batched.metrics["val"]["loss"].shape == (3, 5)
