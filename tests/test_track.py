"""eoslib.track (issue 33) against dense float64 references: the sharpness against ``eigh``, the
batch sharpness against an explicit mean over the same minibatches, the adaptive edge against the
clipped-ada chapter's probe and thresholds; how η, β₁, β₂, ε are read; the errors a newcomer meets."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import eoslib
from eoslib.engine import losses, models, optim, probes, train
from eoslib.mechanisms import adaptive
from eoslib.mechanisms import track as tracking


def dense_eigvalsh(loss_fn, params):
    flat, unravel = ravel_pytree(params)
    H = np.asarray(jax.hessian(lambda f: loss_fn(unravel(f)))(flat))
    return np.linalg.eigvalsh(0.5 * (H + H.T))[::-1]


def problem(n=48, d=5, width=12, k=3, seed=0):
    """A float64 tanh network as a plain dict, ½MSE on random targets."""
    keys = jax.random.split(jax.random.key(seed), 4)
    x = jax.random.normal(keys[0], (n, d))
    y = jnp.sin(x @ jax.random.normal(keys[1], (d, k)))
    params = {"w1": jax.random.normal(keys[2], (d, width)) / np.sqrt(d),
              "w2": jax.random.normal(keys[3], (width, k)) / np.sqrt(width)}

    def loss(p, x, y):
        return 0.5 * jnp.mean(jnp.sum((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2, axis=-1))

    return loss, params, x, y


def test_public_entry_points():
    assert eoslib.track is tracking.track and eoslib.EdgeHistory is tracking.EdgeHistory
    from eoslib.book import figures

    assert eoslib.plot_edge is figures.plot_edge
    with pytest.raises(AttributeError, match="no attribute 'trak'"):
        eoslib.trak


def test_sharpness_matches_dense_eigh_along_the_run():
    """The probe at step 0 and at step 20 (read from a second run stopped there, GD being
    deterministic) against ``eigh`` of the dense float64 Hessian."""
    loss, params, x, y = problem()
    eta = 0.4
    short = eoslib.track(loss, params, (x, y), optax.sgd(eta), steps=20, probe_every=10, top_k=2,
                         eig_tol=1e-9, progress=False)
    longer = eoslib.track(loss, params, (x, y), optax.sgd(eta), steps=40, probe_every=20, top_k=2,
                          eig_tol=1e-9, progress=False)
    assert (short.optimizer, short.measure, short.edge) == ("gd", "sharpness", pytest.approx(2 / eta))
    assert short.learning_rate == pytest.approx(eta, rel=1e-6) and short.accuracy is None
    np.testing.assert_allclose(short.top_eigenvalues[0], dense_eigvalsh(lambda p: loss(p, x, y), params)[:2],
                               rtol=1e-8)
    at_20 = short.result.state.params
    np.testing.assert_allclose(longer.top_eigenvalues[1], dense_eigvalsh(lambda p: loss(p, x, y), at_20)[:2],
                               rtol=1e-8)
    assert longer.sharpness[1] == longer.top_eigenvalues[1, 0] and longer.eig_converged.all()
    np.testing.assert_array_equal(longer.probe_step, [0, 20])
    assert longer.loss.shape == (40,) and np.isnan(longer.batch_sharpness).all()


def test_batch_sharpness_is_the_explicit_mean_over_the_minibatches():
    """At a probe, the batch sharpness (the measure SGD is held against) equals the mean, over the
    same minibatches (``probes.minibatch_indices``), of each minibatch's curvature along its own
    gradient ``g_Bᵀ H_B g_B / ‖g_B‖²`` from its dense float64 Hessian; its standard error is their
    spread over √M; ``minibatch_lambda_max`` is the mean top eigenvalue of the first
    ``eig_batches`` of those Hessians."""
    loss, params, x, y = problem(n=40)
    kw = dict(probe_every=10, batch_size=8, batches=4, eig_batches=3, eig_tol=1e-9, seed=4, progress=False)
    short = eoslib.track(loss, params, (x, y), optax.sgd(0.3), steps=10, **kw)
    longer = eoslib.track(loss, params, (x, y), optax.sgd(0.3), steps=20, **kw)
    assert (longer.optimizer, longer.measure) == ("sgd", "batch_sharpness")
    assert longer.step_sharpness.shape == (2, 4)
    index = np.asarray(probes.minibatch_indices(40, 8, 4, seed=4))
    assert index.shape == (4, 8) and all(len(set(row)) == 8 for row in index)
    for at, row in ((params, 0), (short.result.state.params, 1)):
        quotients, tops = [], []
        for idx in index:
            loss_b = lambda p: loss(p, x[idx], y[idx])
            flat, unravel = ravel_pytree(at)
            H = np.asarray(jax.hessian(lambda f: loss_b(unravel(f)))(flat))
            g = np.asarray(ravel_pytree(jax.grad(loss_b)(at))[0])
            quotients.append(g @ H @ g / (g @ g))
            tops.append(np.linalg.eigvalsh(H)[-1])
        np.testing.assert_allclose(longer.step_sharpness[row], quotients, rtol=1e-9)
        assert longer.batch_sharpness[row] == pytest.approx(np.mean(quotients), rel=1e-9)
        assert longer.against_edge[row] == longer.batch_sharpness[row]
        assert longer.batch_sharpness_sem[row] == pytest.approx(np.std(quotients, ddof=1) / 2, rel=1e-9)
        assert longer.minibatch_lambda_max[row] == pytest.approx(np.mean(tops[:3]), rel=1e-8)
        np.testing.assert_allclose(longer.minibatch_top_eigenvalues[row], tops[:3], rtol=1e-8)
    assert longer.eig_converged.all()
    gd = eoslib.track(loss, params, (x, y), optax.sgd(0.3), steps=10, probe_every=10, progress=False)
    assert gd.step_sharpness is None and gd.minibatch_top_eigenvalues is None
    assert np.isnan(gd.batch_sharpness_sem).all()
    assert np.isnan(gd.minibatch_lambda_max).all()


def test_adaptive_edge_and_preconditioned_sharpness_are_the_clipped_ada_chapters():
    """Adam (eoslib's clipped_adam without a cap, the clipped-ada chapter's optimizer, and
    optax.adam): the edge is ``adaptive.adam_edge(η, β₁)`` and each probe's preconditioned
    sharpness is what the chapter's in-loop probe (``probes.preconditioned_sharpness``) records on
    the same run."""
    key = jax.random.key(1)
    model = jax.tree.map(lambda a: a.astype(jnp.float64),
                         models.MLP(6, [10], 3, activation="tanh", key=key))
    x = jax.random.normal(jax.random.key(2), (32, 6))
    y = jax.nn.one_hot(jnp.arange(32) % 3, 3, dtype=jnp.float64)
    eta = 0.02
    loss = lambda m, x, y: (losses.half_mse(m(x), y), m(x))
    h = eoslib.track(loss, model, (x, y), optim.clipped_adam(eta), steps=30, probe_every=10,
                     eig_tol=1e-10, progress=False)
    assert (h.optimizer, h.measure) == ("adam", "preconditioned_sharpness")
    assert h.edge == pytest.approx(adaptive.adam_edge(eta, 0.9), rel=1e-6)
    assert h.edge == pytest.approx(38 / eta, rel=1e-6) and h.b1 == pytest.approx(0.9)
    assert h.accuracy is not None and h.accuracy.shape == (30,)  # one-hot targets are classes
    config = train.TrainConfig(steps=30, probe_every=10, eig_tol=1e-10)
    ref = train.run(train.supervised("half_mse"), lambda hp: optim.clipped_adam(eta), model, (x, y), config,
                    key=jax.random.key(0), progress=False,
                    probe_fn=probes.preconditioned_sharpness("half_mse", tol=1e-10, max_restarts=20))
    assert np.isnan(h.preconditioned_sharpness[0])  # step 0: no second moment yet
    np.testing.assert_allclose(h.preconditioned_sharpness[1:], ref.history.extra.precond_sharpness[1:],
                               rtol=1e-7)
    np.testing.assert_allclose(h.sharpness, ref.history.sharpness, rtol=1e-7)
    same = eoslib.track(loss, model, (x, y), optax.adam(eta), steps=30, probe_every=10, eig_tol=1e-10,
                        progress=False)
    np.testing.assert_allclose(same.preconditioned_sharpness[1:], h.preconditioned_sharpness[1:], rtol=1e-6)
    assert same.edge == pytest.approx(h.edge, rel=1e-6)


@pytest.mark.parametrize("optimizer, expected", [
    (optax.sgd(0.125), ("gd", 0.125, 0.0, 0.0, 0.0)),
    (optax.adam(3e-3), ("adam", 3e-3, 0.9, 0.999, 1e-8)),
    (optax.adamw(1e-3, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1), ("adam", 1e-3, 0.8, 0.99, 1e-6)),
    (optim.clipped_rmsprop(0.01), ("adam", 0.01, 0.0, 0.999, 1e-8)),
])
def test_the_optimizer_is_read_from_trial_updates(optimizer, expected):
    got = tracking.read_optimizer(optimizer, dtype=jnp.float32)
    assert got.kind == expected[0]
    np.testing.assert_allclose(got[1:], expected[1:], rtol=2e-2, atol=1e-10)
    np.testing.assert_allclose(got.learning_rate, expected[1], rtol=1e-6)


def test_equinox_module_with_function_leaves_and_integer_labels():
    """An ``eqx.nn.MLP`` (its activations are leaves that are functions) trains as it is; integer
    labels with outputs give the accuracy; microbatches give the same curvature."""
    model = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a,
                         eqx.nn.MLP(4, 3, 8, 1, activation=jnp.tanh, key=jax.random.key(0)))
    x = jax.random.normal(jax.random.key(1), (30, 4))
    labels = jnp.arange(30) % 3

    def loss(m, x, y):
        logits = jax.vmap(m)(x)
        return losses.cross_entropy(logits, jax.nn.one_hot(y, 3, dtype=logits.dtype)), logits

    whole = eoslib.track(loss, model, (x, labels), optax.sgd(0.5), steps=10, probe_every=5, eig_tol=1e-9,
                         progress=False)
    pieces = eoslib.track(loss, model, (x, labels), optax.sgd(0.5), steps=10, probe_every=5, eig_tol=1e-9,
                          microbatch=7, progress=False)
    assert whole.accuracy.shape == (10,) and 0 <= whole.accuracy.min() <= whole.accuracy.max() <= 1
    np.testing.assert_allclose(pieces.sharpness, whole.sharpness, rtol=1e-8)
    np.testing.assert_allclose(pieces.loss, whole.loss, rtol=1e-10)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("case, message", [
    ("vector loss", r"loss returned an array of shape \(48,\); track needs a scalar: the mean over the examples"),
    ("integer params", r"params has integer or boolean arrays: params\['count'\] \(int32, shape \(\)\)"),
    ("labels (N, 1)", r"labels y have shape \(48, 1\) and an integer dtype: class labels must be a vector "
                      r"of shape \(N,\) = \(48,\)"),
    ("labels past K", r"labels y range over \[0, 7\] but the outputs have K = 3 columns"),
    ("targets unlike outputs", r"targets y have shape \(48, 2\) but the loss's outputs have shape \(48, 3\)"),
    ("adam edge without adam", r"edge='adam' holds the preconditioned sharpness against Adam's edge, which "
                               r"reads the second moment ν .* has none \(it holds \['EmptyState'\]\)"),
    ("too much data", r"data: the full-batch loss over 48 examples needs about .* GiB of activations .* "
                      r"pass microbatch=m"),
    ("momentum", r"optimizer: it updates the same gradient by -0.1, then by -0.19 \(momentum or a schedule\?\)"),
    ("bad edge", r"edge='sam' is not allowed; allowed: one of \['auto', 'gd', 'adam'\]"),
    ("bad batch", r"batch_size=100 is not allowed; allowed: None \(full batch\) or an int in \[1, 48\]"),
    ("bad data", r"data: x of shape \(48, 5\) and y of shape \(47, 3\) must have the same number of examples"),
])
def test_errors_name_the_parameter_the_value_and_what_is_allowed(case, message):
    loss, params, x, y = problem()
    kwargs = dict(steps=4, probe_every=2, progress=False)
    opt = optax.sgd(0.1)
    outputs = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
    if case == "vector loss":
        loss = lambda p, x, y: 0.5 * jnp.sum((outputs(p, x) - y) ** 2, axis=-1)
    elif case == "integer params":
        params = {**params, "count": jnp.array(0, jnp.int32)}
    elif case == "labels (N, 1)":
        y = jnp.zeros((48, 1), jnp.int32)
    elif case == "labels past K":
        y = jnp.arange(48) % 8
        loss = lambda p, x, y: (jnp.mean(outputs(p, x)), outputs(p, x))
    elif case == "targets unlike outputs":
        y = jnp.zeros((48, 2))
        loss = lambda p, x, y: (jnp.mean(outputs(p, x)), outputs(p, x))
    elif case == "adam edge without adam":
        kwargs["edge"] = "adam"
    elif case == "too much data":
        kwargs["memory_limit"] = x.nbytes + y.nbytes + 1000
    elif case == "momentum":
        opt = optax.sgd(0.1, momentum=0.9)
    elif case == "bad edge":
        kwargs["edge"] = "sam"
    elif case == "bad batch":
        kwargs["batch_size"] = 100
    elif case == "bad data":
        y = y[:47]
    with pytest.raises(ValueError, match=message):
        eoslib.track(loss, params, (x, y), opt, **kwargs)


def test_momentum_runs_against_2_over_eta_when_asked():
    loss, params, x, y = problem()
    h = eoslib.track(loss, params, (x, y), optax.sgd(0.1, momentum=0.9), steps=4, probe_every=2,
                     learning_rate=0.1, edge="gd", progress=False)
    assert (h.optimizer, h.edge) == ("gd", pytest.approx(20.0))


def test_microbatch_is_suggested_and_then_fits():
    loss, params, x, y = problem()
    need = 2 * tracking.activation_bytes(lambda p, x, y: loss(p, x, y), params, x, y)
    limit = x.nbytes + y.nbytes + need // 2
    with pytest.raises(ValueError, match=r"pass microbatch=m \(e.g. microbatch=\d+\)"):
        eoslib.track(loss, params, (x, y), optax.sgd(0.1), steps=2, probe_every=2, memory_limit=limit,
                     progress=False)
    h = eoslib.track(loss, params, (x, y), optax.sgd(0.1), steps=2, probe_every=2, memory_limit=limit,
                     microbatch=8, progress=False)
    assert np.isfinite(h.sharpness).all()
