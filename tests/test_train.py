"""The training engine: thresholds, equivalence with a plain loop, in-loop probes, divergence,
typed records, float32, precision, sweeps' data order, and the checks on bad input."""

from typing import NamedTuple

import equinox as eqx
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
    assert np.all(np.isfinite(res.history.loss[1, :k])) and np.all(np.isnan(res.history.loss[1, k:]))
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
    rest = train.run(train.supervised(), make, None, (x, y), train.TrainConfig(steps=10, probe_every=5, chunks=1),
                     key=jax.random.key(0), progress=False, resume=half)
    np.testing.assert_allclose(rest.history.loss, whole.history.loss, rtol=1e-12)
    assert rest.history.probe_step.tolist() == [0, 5, 10, 15]
    # a checkpoint on disk resumes the same way as the in-memory state
    ckpt = train.save_state(tmp_path / "half", half.state)
    restored = train.load_state(ckpt, like=half.state)
    jax.tree.map(np.testing.assert_array_equal, restored.params, half.state.params)
    assert int(restored.step) == 10
    again = train.run(train.supervised(), make, None, (x, y), train.TrainConfig(steps=10, probe_every=5, chunks=1),
                      key=jax.random.key(0), progress=False, resume=train.TrainResult(half.history, restored, half.config, {}))
    np.testing.assert_array_equal(again.history.loss, rest.history.loss)
    path = train.save(tmp_path / "run", rest, {"device": "cpu"})
    history, meta = train.load(path)
    np.testing.assert_array_equal(history.sharpness, rest.history.sharpness)
    np.testing.assert_array_equal(history.eig_converged, rest.history.eig_converged)
    assert history.extra is None and history._fields == train.History._fields
    assert meta["config"]["probe_every"] == 5 and meta["provenance"]["device"] == "cpu"


class VectorNorm(NamedTuple):
    top_vector_norm: jax.Array


def test_probe_fn_and_sweep_over_weight_decay(getkey, tmp_path):
    model = models.MLP(5, (8,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 2))
    probe_fn = lambda params, opt_state, eig, hp, data: VectorNorm(jnp.linalg.norm(eig.vectors[:, 0]))
    res = train.run(train.supervised(), lambda hp: optax.sgd(0.05), model, (x, y),
                    train.TrainConfig(steps=10, probe_every=5, chunks=1, eig_tol=1e-9), key=getkey(),
                    hparams={"gamma": jnp.array([0.0, 1.0])}, probe_fn=probe_fn, progress=False, sweep_batch=1)
    assert isinstance(res.history.extra, VectorNorm) and res.history.extra.top_vector_norm.shape == (2, 2)
    np.testing.assert_allclose(res.history.extra.top_vector_norm, 1.0, rtol=1e-6)
    assert res.history.eig_converged.dtype == bool and res.history.eig_converged.all()
    # save / load rebuilds the record type from the stored field names
    history, meta = train.load(train.save(tmp_path / "run", res))
    assert history.extra._fields == ("top_vector_norm",) and type(history.extra).__name__ == "VectorNorm"
    np.testing.assert_array_equal(history.extra.top_vector_norm, res.history.extra.top_vector_norm)
    # coupled weight decay shifts every Hessian eigenvalue by γ at the same parameters (step 0)
    assert float(res.history.sharpness[1, 0] - res.history.sharpness[0, 0]) == pytest.approx(1.0, rel=1e-6)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="steps=10 must be a multiple of probe_every=3"):
        train.TrainConfig(steps=10, probe_every=3)
    with pytest.raises(ValueError, match="model_loss='mae'"):
        train.supervised("mae")



def test_a_dict_probe_is_rejected_before_training(getkey):
    model = models.MLP(3, (4,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (8, 3)), jax.random.normal(getkey(), (8, 2))
    with pytest.raises(TypeError, match="NamedTuple"):
        train.run(train.supervised(), lambda hp: optax.sgd(0.1), model, (x, y),
                  train.TrainConfig(steps=2, probe_every=1), key=getkey(), progress=False,
                  probe_fn=lambda params, opt_state, eig, hp, data: {"a": eig.values[0]})


def _float32(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, tree)


def test_float32_run_stays_float32_and_matches_a_float32_loop(getkey):
    """x64 is on in this suite: a float32 run must not be promoted anywhere (hparams included)."""
    assert jax.config.jax_enable_x64
    model = _float32(models.MLP(5, (8,), 2, "tanh", key=getkey()))
    x = jax.random.normal(getkey(), (16, 5), jnp.float32)
    y = jax.random.normal(getkey(), (16, 2), jnp.float32)
    objective = train.supervised("half_mse")
    res = train.run(objective, lambda hp: optax.sgd(hp["eta"]), model, (x, y),
                    train.TrainConfig(steps=20, probe_every=10, chunks=2), key=getkey(),
                    hparams={"eta": 0.1, "gamma": 1e-3}, progress=False)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(eqx.filter(res.state.params, eqx.is_array)))
    h = res.history
    for name in ("loss", "grad_norm", "param_norm", "sharpness", "top_eigenvalues", "eig_residuals"):
        assert getattr(h, name).dtype == np.float32, name
    assert h.aux["accuracy"].dtype == np.float32 and res.state.eigvecs.dtype == jnp.float32
    assert res.hparams["eta"].dtype == np.float32
    # the same steps in a float32 Python loop
    params, opt = model, optax.sgd(np.float32(0.1))
    state = opt.init(params)
    hp = {"gamma": jnp.float32(1e-3)}
    for t in range(20):
        (loss, _), g = jax.value_and_grad(objective, has_aux=True)(params, x, y, hp)
        assert loss.dtype == jnp.float32
        np.testing.assert_allclose(h.loss[t], loss, rtol=1e-5)
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)


def test_steps_and_probes_run_at_the_configured_precision(getkey):
    """Every dot in the compiled chunk carries the configured precision (on a GPU, JAX's default
    would be TF32); ``step_precision`` sets the steps' apart from the probes'."""
    model = _float32(models.MLP(3, (4,), 2, "tanh", key=getkey()))
    x, y = jax.random.normal(getkey(), (8, 3), jnp.float32), jax.random.normal(getkey(), (8, 2), jnp.float32)
    state = train.init_state(model, optax.sgd(0.1), 1, key=getkey())

    def lowered(config):
        chunk = train._make_chunk(train.supervised(), lambda hp: optax.sgd(0.1), config, None, 1, config.probe_every)
        return jax.jit(chunk).lower(state, {}, x, y).as_text()

    def precisions(text):
        return {line.split("precision = ")[1].split("]")[0] for line in text.splitlines()
                if "dot_general" in line and "precision = " in line}

    assert precisions(lowered(train.TrainConfig(steps=2, probe_every=2))) == {"[HIGHEST, HIGHEST"}
    mixed = precisions(lowered(train.TrainConfig(steps=2, probe_every=2, step_precision="default")))
    assert mixed == {"[HIGHEST, HIGHEST", "[DEFAULT, DEFAULT"}
    with pytest.raises(ValueError, match="step_precision='tf32'"):
        train.TrainConfig(steps=2, step_precision="tf32")


def test_sgd_sweep_members_see_the_single_runs_minibatches(getkey):
    model = models.MLP(4, (6,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (24, 4)), jax.random.normal(getkey(), (24, 2))

    def objective(params, xb, yb, hp):
        loss, aux = train.supervised()(params, xb, yb, hp)
        return loss, {**aux, "batch_sum": jnp.sum(xb)}

    cfg = train.TrainConfig(steps=12, batch_size=6, probe_every=6, chunks=2)
    make = lambda hp: optax.sgd(hp["eta"])
    etas = [0.05, 0.1, 0.2]
    sweep = train.run(objective, make, model, (x, y), cfg, key=jax.random.key(5),
                      hparams={"eta": jnp.asarray(etas)}, progress=False)
    # one data order for the whole sweep
    for i in range(1, 3):
        np.testing.assert_array_equal(sweep.history.aux["batch_sum"][i], sweep.history.aux["batch_sum"][0])
    for i, eta in enumerate(etas):
        one = train.run(objective, make, model, (x, y), cfg, key=jax.random.key(5), hparams={"eta": eta},
                        progress=False)
        np.testing.assert_array_equal(sweep.history.aux["batch_sum"][i], one.history.aux["batch_sum"])
        np.testing.assert_allclose(sweep.history.loss[i], one.history.loss, rtol=1e-12)
        np.testing.assert_allclose(sweep.history.sharpness[i], one.history.sharpness, rtol=1e-9)


def test_divergence_step_matches_the_closed_form():
    """GD on ½λw² with ηλ > 2: w_t = (1 − ηλ)^t w₀, so the loss first exceeds max_loss at a step
    known in closed form; that step is recorded, its row and all later ones are NaN, θ freezes."""
    lam, eta, max_loss = 4.0, 0.75, 1e6  # factor |1 − ηλ| = 2
    objective = lambda p, x, y, hp: (0.5 * lam * p["w"] ** 2, {})
    res = train.run(objective, lambda hp: optax.sgd(eta), {"w": jnp.asarray(1.0)}, DUMMY,
                    train.TrainConfig(steps=40, chunks=1, max_loss=max_loss), key=jax.random.key(0), progress=False)
    losses = 0.5 * lam * (1 - eta * lam) ** (2.0 * np.arange(40))
    expected = int(np.argmax(losses > max_loss))
    assert int(res.history.diverged_at) == expected
    np.testing.assert_allclose(res.history.loss[:expected], losses[:expected], rtol=1e-12)
    assert np.all(np.isnan(res.history.loss[expected:]))
    assert float(res.state.params["w"]) == pytest.approx((1 - eta * lam) ** expected)  # frozen at θ_t


def test_hparams_typo_is_named_with_the_keys_read(getkey):
    model = models.MLP(3, (4,), 2, "tanh", key=getkey())
    data = (jax.random.normal(getkey(), (8, 3)), jax.random.normal(getkey(), (8, 2)))
    cfg = train.TrainConfig(steps=2)
    with pytest.raises(ValueError, match=r"\['gama'\].*\['gamma'\]"):
        train.run(train.supervised(), lambda hp: optax.sgd(0.1), model, data, cfg, key=getkey(),
                  hparams={"gama": 1.0}, progress=False)
    with pytest.raises(ValueError, match=r"\['eta'\] are read .* not given"):
        train.run(train.supervised(), lambda hp: optax.sgd(hp["eta"]), model, data, cfg, key=getkey(),
                  progress=False)
    # keys read only inside the optimizer's update (a schedule) count as read
    sched = lambda hp: optax.sgd(lambda count: jnp.where(count < hp["switch"], 0.1, 0.01))
    train.run(train.supervised(), sched, model, data, cfg, key=getkey(), hparams={"switch": 1.0}, progress=False)


def test_non_finite_data_is_a_value_error(getkey):
    model = models.MLP(3, (4,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (8, 3)), jax.random.normal(getkey(), (8, 2))
    run = lambda x, y: train.run(train.supervised(), lambda hp: optax.sgd(0.1), model, (x, y),
                                 train.TrainConfig(steps=2), key=getkey(), progress=False)
    with pytest.raises(ValueError, match="data x has 1 non-finite"):
        run(x.at[2, 1].set(jnp.nan), y)
    with pytest.raises(ValueError, match="data y has 1 non-finite"):
        run(x, y.at[0, 0].set(jnp.inf))


def test_resume_refuses_params(getkey):
    model = models.MLP(3, (4,), 2, "tanh", key=getkey())
    data = (jax.random.normal(getkey(), (8, 3)), jax.random.normal(getkey(), (8, 2)))
    cfg = train.TrainConfig(steps=2)
    first = train.run(train.supervised(), lambda hp: optax.sgd(0.1), model, data, cfg, key=getkey(), progress=False)
    with pytest.raises(ValueError, match="params=None"):
        train.run(train.supervised(), lambda hp: optax.sgd(0.1), model, data, cfg, key=getkey(), progress=False,
                  resume=first)


@jax.custom_jvp
def _zero_slope(w, on):
    return 0.0 * w


@_zero_slope.defjvp
def _zero_slope_jvp(primals, tangents):
    w, on = primals
    return 0.0 * w, jnp.where(on > 0, jnp.nan, 0.0) * tangents[0]


@jax.custom_jvp
def _curvature_bomb(w, on):
    """0, with gradient 0, and a NaN second derivative where ``on > 0``."""
    return 0.0 * w


@_curvature_bomb.defjvp
def _curvature_bomb_jvp(primals, tangents):
    w, on = primals
    return 0.0 * w, _zero_slope(w, on) * tangents[0]


def test_a_nan_eigensolve_does_not_poison_later_warm_starts():
    """The parameter t counts steps (SGD on −t); while 1.5 ≤ t < 2.5 the Hessian is NaN (the loss
    and its gradient stay finite, so the run is alive). That probe is NaN and not converged; the
    next one restarts from a fresh block and finds λ₁ = 2 again."""
    A = jnp.diag(jnp.array([2.0, 1.0, 0.5]))

    def objective(p, x, y, hp):
        t = p["t"]
        on = ((t >= 1.5) & (t < 2.5)).astype(t.dtype)
        return 0.5 * p["w"] @ A @ p["w"] - t + _curvature_bomb(p["w"][0], on), {}

    res = train.run(objective, lambda hp: optax.sgd(0.5), {"w": jnp.ones(3), "t": jnp.asarray(0.0)}, DUMMY,
                    train.TrainConfig(steps=12, probe_every=2, chunks=1, eig_tol=1e-8, eig_max_restarts=5),
                    key=jax.random.key(0), progress=False)
    h = res.history
    assert int(h.diverged_at) == -1 and h.probe_step.tolist() == [0, 2, 4, 6, 8, 10]
    assert np.isnan(h.sharpness[2]) and not h.eig_converged[2]
    np.testing.assert_allclose(h.sharpness[[0, 1, 3, 4, 5]], 2.0, rtol=1e-8)
    assert h.eig_converged[[0, 1, 3, 4, 5]].all()
    # a NaN warm start left in a state (e.g. a checkpoint) is replaced the same way
    poisoned = train.TrainResult(h, res.state._replace(eigvecs=jnp.full_like(res.state.eigvecs, jnp.nan)),
                                 res.config, {})
    more = train.run(objective, lambda hp: optax.sgd(0.5), None, DUMMY,
                     train.TrainConfig(steps=2, probe_every=2, chunks=1, eig_tol=1e-8, eig_max_restarts=5),
                     key=jax.random.key(0), progress=False, resume=poisoned)
    np.testing.assert_allclose(more.history.sharpness[-1], 2.0, rtol=1e-8)
    assert more.history.eig_converged[-1]


def test_load_reads_files_written_before_typed_records(getkey, tmp_path):
    """0.1 files: no eig_converged (recomputed from the residuals and eig_tol, the solver's own
    test) and a flat ``extra.*`` with no record description (a namedtuple ``Extra``)."""
    import json

    model = models.MLP(3, (4,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (8, 3)), jax.random.normal(getkey(), (8, 2))
    probe_fn = lambda params, opt_state, eig, hp, data: VectorNorm(jnp.linalg.norm(eig.vectors[:, 0]))
    res = train.run(train.supervised(), lambda hp: optax.sgd(0.05), model, (x, y),
                    train.TrainConfig(steps=4, probe_every=2, eig_tol=1e-8, eig_max_restarts=10), key=getkey(),
                    probe_fn=probe_fn, progress=False)
    path = train.save(tmp_path / "old", res)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "eig_converged"}
    np.savez_compressed(path, **arrays)
    meta = json.loads(path.with_suffix(".json").read_text())
    del meta["extra"]
    path.with_suffix(".json").write_text(json.dumps(meta))
    history, _ = train.load(path)
    assert type(history.extra).__name__ == "Extra" and history.extra._fields == ("top_vector_norm",)
    np.testing.assert_array_equal(history.eig_converged, res.history.eig_converged)


def test_clear_compiled_drops_the_cached_programs_and_changes_no_result(getkey):
    model = models.MLP(5, (7,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 2))
    objective, make_opt = train.supervised("half_mse"), lambda hp: optax.sgd(0.1)
    cfg = train.TrainConfig(steps=10, chunks=1)
    first = train.run(objective, make_opt, model, (x, y), cfg, key=jax.random.key(0), progress=False)
    assert train._compiled_chunk.cache_info().currsize >= 1
    train.clear_compiled()
    assert train._compiled_chunk.cache_info().currsize == 0
    assert train._compiled_evaluation.cache_info().currsize == 0
    again = train.run(objective, make_opt, model, (x, y), cfg, key=jax.random.key(0), progress=False)
    np.testing.assert_array_equal(first.history.loss, again.history.loss)
