"""The training engine: thresholds, equivalence with a plain loop, in-loop probes, divergence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eoslib.engine import hessian, models, train


def quadratic_objective(A):
    A = jnp.asarray(A)

    def objective(params, x, y, hp):
        w = params["w"]
        loss = 0.5 * w @ A @ w
        if "gamma" in hp:
            loss = loss + 0.5 * hp["gamma"] * w @ w
        return loss, {}

    return objective


DUMMY = (jnp.zeros((4, 1)), jnp.zeros((4, 1)))


def test_gd_on_quadratic_diverges_exactly_past_two_over_lambda_plus_gamma():
    lam, gamma = 10.0, 3.0
    A = np.diag([lam, 1.0, 0.5])
    threshold = 2 / (lam + gamma)
    etas = jnp.array([0.95, 0.999, 1.001, 1.05]) * threshold
    cfg = train.TrainConfig(steps=4000, chunks=1, max_loss=1e6)
    res = train.run(quadratic_objective(A), lambda hp: optax.sgd(hp["eta"]), {"w": jnp.ones(3)}, DUMMY,
                    cfg, key=jax.random.key(0), hparams={"eta": etas, "gamma": gamma}, progress=False)
    assert res.diverged.tolist() == [False, False, True, True]
    assert np.all(np.isfinite(res.history.loss[:2]))  # converging members finished


def test_scan_matches_python_loop(getkey):
    model = models.MLP(5, (7,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 2))
    objective = train.supervised("half_mse")
    res = train.run(objective, lambda hp: optax.sgd(0.1), model, (x, y),
                    train.TrainConfig(steps=30, chunks=3), key=getkey(), progress=False)
    params, opt = model, optax.sgd(0.1)
    state = opt.init(params)
    for t in range(30):
        (loss, _), g = jax.value_and_grad(objective, has_aux=True)(params, x, y, {})
        assert float(res.history.loss[t]) == pytest.approx(float(loss), rel=1e-10)
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10), res.state.params, params)


def test_in_loop_sharpness_matches_a_direct_probe(getkey):
    model = models.MLP(5, (8,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 2))
    objective = train.supervised("half_mse")
    cfg = train.TrainConfig(steps=20, probe_every=10, eig_tol=1e-9, chunks=1)
    res = train.run(objective, lambda hp: optax.sgd(0.05), model, (x, y), cfg, key=getkey(), progress=False)
    params, opt = model, optax.sgd(0.05)
    state = opt.init(params)
    for _ in range(10):
        g = jax.grad(lambda p: objective(p, x, y, {})[0])(params)
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
    direct = hessian.sharpness(lambda p: objective(p, x, y, {})[0], params, key=getkey(), tol=1e-10)
    assert res.history.probe_step.tolist() == [0, 10]
    assert float(res.history.sharpness[1]) == pytest.approx(float(direct), rel=1e-8)


def test_divergence_is_recorded_and_history_kept(getkey):
    model = models.MLP(5, (8,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 2))
    res = train.run(train.supervised(), lambda hp: optax.sgd(hp["eta"]), model, (x, y),
                    train.TrainConfig(steps=40, probe_every=5, chunks=2, max_loss=1e4),
                    key=getkey(), hparams={"eta": jnp.array([0.05, 50.0])}, progress=False)
    assert res.diverged.tolist() == [False, True]
    k = int(res.history.diverged_at[1])
    assert np.all(np.isfinite(res.history.loss[1, :k])) and np.all(np.isnan(res.history.loss[1, k + 1:]))
    assert np.all(np.isfinite(res.history.sharpness[0]))
    assert np.isnan(res.history.sharpness[1, -1])


def test_same_seed_same_history(getkey):
    model = models.MLP(5, (8,), 2, "tanh", key=jax.random.key(1))
    x, y = jax.random.normal(jax.random.key(2), (32, 5)), jax.random.normal(jax.random.key(3), (32, 2))
    cfg = train.TrainConfig(steps=20, probe_every=10, batch_size=8, chunks=2)
    runs = [train.run(train.supervised(), lambda hp: optax.sgd(0.05), model, (x, y), cfg,
                      key=jax.random.key(7), progress=False) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].history.loss, runs[1].history.loss)
    np.testing.assert_array_equal(runs[0].history.sharpness, runs[1].history.sharpness)


def test_minibatches_cover_each_epoch_once():
    x = jnp.arange(12.0)[:, None]

    def objective(params, xb, yb, hp):
        return jnp.sum(params["w"] * 0), {"batch_sum": jnp.sum(xb)}

    res = train.run(objective, lambda hp: optax.sgd(0.1), {"w": jnp.zeros(())}, (x, x),
                    train.TrainConfig(steps=6, batch_size=4, chunks=1), key=jax.random.key(0), progress=False)
    sums = res.history.aux["batch_sum"]
    assert sums[:3].sum() == pytest.approx(66) and sums[3:].sum() == pytest.approx(66)


def test_resume_continues_exactly(getkey, tmp_path):
    model = models.MLP(5, (8,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 2))
    make = lambda hp: optax.sgd(0.05)
    whole = train.run(train.supervised(), make, model, (x, y), train.TrainConfig(steps=20, probe_every=5, chunks=1),
                      key=jax.random.key(0), progress=False)
    half = train.run(train.supervised(), make, model, (x, y), train.TrainConfig(steps=10, probe_every=5, chunks=1),
                     key=jax.random.key(0), progress=False)
    rest = train.run(train.supervised(), make, model, (x, y), train.TrainConfig(steps=10, probe_every=5, chunks=1),
                     key=jax.random.key(0), progress=False, resume=half)
    np.testing.assert_allclose(rest.history.loss, whole.history.loss, rtol=1e-12)
    assert rest.history.probe_step.tolist() == [0, 5, 10, 15]
    # a checkpoint on disk resumes the same way as the in-memory state
    ckpt = train.save_state(tmp_path / "half", half.state)
    restored = train.load_state(ckpt, like=half.state)
    jax.tree.map(np.testing.assert_array_equal, restored.params, half.state.params)
    assert int(restored.step) == 10
    again = train.run(train.supervised(), make, model, (x, y), train.TrainConfig(steps=10, probe_every=5, chunks=1),
                      key=jax.random.key(0), progress=False, resume=train.TrainResult(half.history, restored, half.config, {}))
    np.testing.assert_array_equal(again.history.loss, rest.history.loss)
    path = train.save(tmp_path / "run", rest, {"device": "cpu"})
    history, meta = train.load(path)
    np.testing.assert_array_equal(history.sharpness, rest.history.sharpness)
    assert meta["config"]["probe_every"] == 5 and meta["provenance"]["device"] == "cpu"


def test_probe_fn_and_sweep_over_weight_decay(getkey):
    model = models.MLP(5, (8,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 2))
    probe_fn = lambda params, opt_state, eig, hp, data: {"top_vector_norm": jnp.linalg.norm(eig.vectors[:, 0])}
    res = train.run(train.supervised(), lambda hp: optax.sgd(0.05), model, (x, y),
                    train.TrainConfig(steps=10, probe_every=5, chunks=1, eig_tol=1e-9), key=getkey(),
                    hparams={"gamma": jnp.array([0.0, 1.0])}, probe_fn=probe_fn, progress=False, sweep_batch=1)
    np.testing.assert_allclose(res.history.extra["top_vector_norm"], 1.0, rtol=1e-6)
    # coupled weight decay shifts every Hessian eigenvalue by γ at the same parameters (step 0)
    assert float(res.history.sharpness[1, 0] - res.history.sharpness[0, 0]) == pytest.approx(1.0, rel=1e-6)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="steps=10 must be a multiple of probe_every=3"):
        train.TrainConfig(steps=10, probe_every=3)
    with pytest.raises(ValueError, match="model_loss='mae'"):
        train.supervised("mae")
