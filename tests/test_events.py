"""Events in the compiled loop (stop and switch on accuracy, loss and edge-count events), the
instability detector, and oscillation-averaged probes on a toy with a closed-form period-2 orbit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from eoslib.engine import events, models, probes, train


@pytest.fixture(scope="module")
def problem():
    key = jax.random.key(3)
    k1, k2, k3 = jax.random.split(key, 3)
    model = models.MLP(4, (16,), 3, "tanh", key=k1)
    x = jax.random.normal(k2, (48, 4))
    labels = jnp.argmax(x[:, :3] + 0.3 * jax.random.normal(k3, (48, 3)), axis=1)
    y = jax.nn.one_hot(labels, 3)
    return model, (x, y)


def _sgd(hp):
    return optax.sgd(hp["eta"])


def _leaves_equal(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def _first_crossing(history, threshold):
    acc = np.asarray(history.aux["accuracy"])
    return int(np.flatnonzero(acc >= threshold)[0])


def test_stop_at_accuracy_equals_the_run_truncated_at_that_step(problem):
    model, data = problem
    objective = train.supervised("half_mse")
    free = train.run(objective, _sgd, model, data, train.TrainConfig(steps=400, chunks=4),
                     key=jax.random.key(0), hparams={"eta": 0.5}, progress=False)
    t = _first_crossing(free.history, 0.9)
    assert 0 < t < 300
    stopped = train.run(objective, _sgd, model, data,
                        train.TrainConfig(steps=400, chunks=4, stop_when=events.AccuracyAbove(0.9)),
                        key=jax.random.key(0), hparams={"eta": 0.5}, progress=False)
    truncated = train.run(objective, _sgd, model, data, train.TrainConfig(steps=t, chunks=1),
                          key=jax.random.key(0), hparams={"eta": 0.5}, progress=False)
    assert int(stopped.stopped_at) == t
    _leaves_equal(stopped.state.params, truncated.state.params)
    np.testing.assert_array_equal(np.asarray(stopped.history.loss[:t]), np.asarray(truncated.history.loss))
    assert float(stopped.history.aux["accuracy"][t]) >= 0.9  # the record that fired is kept
    assert np.all(np.isnan(np.asarray(stopped.history.loss[t + 1:])))
    # the loop returned at the end of the chunk holding t, not after all 400 steps
    assert len(stopped.history.loss) == 100 * (t // 100 + 1)
    assert int(stopped.history.diverged_at) == -1


def test_switch_at_accuracy_equals_two_runs_joined_at_that_step(problem):
    model, data = problem
    objective = train.supervised("half_mse")
    hp = {"eta": 0.5, "eta_low": 0.05}
    cfg = train.TrainConfig(steps=200, chunks=2,
                            switches=(events.Switch(events.AccuracyAbove(0.8), {"eta": "eta_low"}),))
    switched = train.run(objective, _sgd, model, data, cfg, key=jax.random.key(0), hparams=hp,
                         progress=False)
    t = int(switched.switched_at[0])
    assert 0 < t < 200
    first = train.run(objective, _sgd, model, data, train.TrainConfig(steps=t, chunks=1),
                      key=jax.random.key(0), hparams={"eta": 0.5}, progress=False)
    assert np.all(np.asarray(first.history.aux["accuracy"]) < 0.8)
    second = train.run(objective, _sgd, None, data, train.TrainConfig(steps=200 - t, chunks=1),
                       key=jax.random.key(0), hparams={"eta": 0.05}, resume=first, progress=False)
    _leaves_equal(switched.state.params, second.state.params)
    np.testing.assert_array_equal(np.asarray(switched.history.loss), np.asarray(second.history.loss))


def test_vmap_members_fire_independently(problem):
    model, data = problem
    objective = train.supervised("half_mse")
    etas = jnp.array([0.5, 0.2, 1e-4])
    cfg = train.TrainConfig(steps=300, chunks=3, stop_when=events.AccuracyAbove(0.9))
    swept = train.run(objective, _sgd, model, data, cfg, key=jax.random.key(0),
                      hparams={"eta": etas}, progress=False)
    for i, eta in enumerate(etas.tolist()):
        alone = train.run(objective, _sgd, model, data, cfg, key=jax.random.key(0),
                          hparams={"eta": eta}, progress=False)
        assert int(swept.stopped_at[i]) == int(alone.stopped_at)
    stops = swept.stopped_at.tolist()
    assert stops[0] >= 0 and stops[1] >= 0 and stops[0] != stops[1]
    assert stops[2] == -1  # a member whose event never fires says so
    assert swept.history.loss.shape == (3, 300)  # one member ran on: no early return


def test_loss_below_and_edge_count_events():
    # a quadratic with curvatures 10, 6 and 38 more in [0.1, 1]
    A = jnp.diag(jnp.concatenate([jnp.array([10.0, 6.0]), jnp.linspace(0.1, 1.0, 38)]))

    def objective(params, x, y, hp):
        w = params["w"]
        return 0.5 * w @ A @ w, {}

    dummy = (jnp.zeros((2, 1)), jnp.zeros((2, 1)))
    cfg = train.TrainConfig(steps=50, chunks=5, stop_when=events.LossBelow(0.01))
    res = train.run(objective, _sgd, {"w": jnp.ones(40)}, dummy, cfg, key=jax.random.key(0),
                    hparams={"eta": 0.1}, progress=False)
    loss = np.asarray(res.history.loss)
    t = int(res.stopped_at)
    assert loss[t] < 0.01 * loss[0] and np.all(loss[:t] >= 0.01 * loss[0])
    # EdgeCount: two eigenvalues (10, 6) are >= 0.5 * 2/eta only when eta >= 1/6
    cfg = train.TrainConfig(steps=20, probe_every=5, top_k=2, chunks=1, eig_tol=1e-8,
                            switches=(events.Switch(events.EdgeCount(2, 0.5), {"eta": "eta_low"}),))
    for eta, fired in ((0.1, -1), (0.17, 0)):
        res = train.run(objective, _sgd, {"w": jnp.ones(40)}, dummy, cfg, key=jax.random.key(0),
                        hparams={"eta": eta, "eta_low": 0.01}, progress=False)
        assert res.switched_at.tolist() == [fired]


def test_event_errors_name_the_problem(problem):
    model, data = problem
    objective = train.supervised("half_mse")
    with pytest.raises(ValueError, match="threshold"):
        events.AccuracyAbove(1.5)
    with pytest.raises(ValueError, match="fraction"):
        events.LossBelow(0.0)
    with pytest.raises(ValueError, match="probe_every"):
        train.TrainConfig(steps=10, stop_when=events.EdgeCount(1))
    with pytest.raises(ValueError, match="top_k"):
        train.TrainConfig(steps=10, probe_every=5, top_k=1, stop_when=events.EdgeCount(2))
    with pytest.raises(ValueError, match="set="):
        events.Switch(events.LossBelow(0.5), {})
    with pytest.raises(ValueError, match="aux"):
        train.run(objective, _sgd, model, data,
                  train.TrainConfig(steps=10, chunks=1, stop_when=events.AccuracyAbove(0.9, aux="acc")),
                  key=jax.random.key(0), hparams={"eta": 0.1}, progress=False)
    with pytest.raises(ValueError, match="eta_low"):
        train.run(objective, _sgd, model, data,
                  train.TrainConfig(steps=10, chunks=1, switches=(
                      events.Switch(events.LossBelow(0.5), {"eta": "eta_low"}),)),
                  key=jax.random.key(0), hparams={"eta": 0.1}, progress=False)
    with pytest.raises(ValueError, match="objective reads"):
        train.run(objective, _sgd, model, data,
                  train.TrainConfig(steps=10, chunks=1, switches=(
                      events.Switch(events.LossBelow(0.5), {"gamma": "gamma_low"}),)),
                  key=jax.random.key(0), hparams={"eta": 0.1, "gamma": 0.1, "gamma_low": 0.0},
                  progress=False)


# ----------------------------------------------------------------------------- instabilities


def test_instability_windows_with_hysteresis():
    steps = np.arange(0, 30)
    eta = 0.1  # edge: S = 20
    s = np.full(30, 15.0)
    s[5:9] = 21.0       # unstable 5..8
    s[9] = 19.5         # between leave (0.95 -> 19) and enter: keeps the window open
    s[10:12] = 15.0     # calm twice: closes with patience 2
    s[19:23] = 20.5     # a second window 19..23
    s[23] = 25.0
    s[24:] = 19.5       # neither unstable nor calm to the end: still open when the run ends
    w = events.instability_windows(steps, s, eta, leave=0.95, patience=2)
    assert w.start.tolist() == [5, 19] and w.end.tolist() == [8, 23]
    assert w.peak.tolist() == [5, 23] and w.closed.tolist() == [True, False]
    assert w.containing(7) == 0 and w.containing(15) == -1
    assert events.instability_windows(steps, s, eta, leave=0.95, patience=2,
                                      min_length=5).start.tolist() == [19]
    # without hysteresis the in-between point 9 closes the first window at once
    assert events.instability_windows(steps, s, eta).end.tolist() == [8, 23]
    # a loss rise is an instability by itself
    loss = np.linspace(1, 0.1, 30)
    loss[14] = 2.0
    w = events.instability_windows(steps, np.full(30, 1.0), eta, loss=loss)
    assert w.start.tolist() == [14] and w.end.tolist() == [14]
    assert events.instability_windows(steps, np.full(30, 1.0), eta).start.size == 0
    with pytest.raises(ValueError, match="leave"):
        events.instability_windows(steps, s, eta, leave=1.5)


# ----------------------------------------------------------------------------- oscillation


def _cubic_orbit(lam, c, eta):
    """The period-2 orbit {x1, x2} of GD on L = ½λx² + (c/3)x³ (closed form, see the test)."""
    s = (2 / eta - lam) / c                   # x1 + x2
    sum_sq = -lam * s / c                     # x1² + x2²
    p = (s * s - sum_sq) / 2                  # x1·x2
    d = np.sqrt(s * s - 4 * p)
    return (s + d) / 2, (s - d) / 2


def test_oscillation_averaged_probe_removes_the_period_two_swing():
    """On L(x) = ½λx² + (c/3)x³ with ηλ > 2, GD has the period-2 orbit x1 ↔ x2 with
    x1 + x2 = (2/η − λ)/c and x1² + x2² = −λ(x1 + x2)/c; on it ∇L(x1) = (x1 − x2)/η = −∇L(x2), so
    ⟨∇L, u⟩ read at one iterate swings ±(x1 − x2)/η while its two-step average is exactly 0, and
    the midpoint reading is ∇L((x1 + x2)/2)."""
    lam, c, eta = 10.0, 5.0, 0.205
    x1, x2 = _cubic_orbit(lam, c, eta)
    g = lambda x: lam * x + c * x * x
    assert g(x1) == pytest.approx((x1 - x2) / eta) and g(x2) == pytest.approx(-(x1 - x2) / eta)

    def objective(params, x, y, hp):
        w = params["w"][0]
        return 0.5 * lam * w ** 2 + c / 3 * w ** 3, {}

    def along_u(params, opt_state, eigenpairs, hp, data):  # a first-order quantity
        grad = ravel_pytree(jax.grad(lambda p: objective(p, None, None, hp)[0])(params))[0]
        zero = jnp.zeros((), grad.dtype)
        return probes.EdgeCoefficients(grad @ eigenpairs.vectors[:, 0], zero, zero, zero, zero)

    dummy = (jnp.zeros((1, 1)), jnp.zeros((1, 1)))
    params = {"w": jnp.array([x1], jnp.float64)}
    for how in ("pair", "midpoint"):
        cfg = train.TrainConfig(steps=8, probe_every=1, chunks=1, eig_tol=1e-10)
        res = train.run(objective, _sgd, params, dummy, cfg, key=jax.random.key(0),
                        hparams={"eta": eta}, probe_fn=probes.oscillation_averaged(along_u, how),
                        progress=False)
        rec = res.history.extra
        at_t = np.abs(np.asarray(rec.at_t.alpha))
        np.testing.assert_allclose(at_t, abs(g(x1)), rtol=1e-6)   # the swing at one iterate
        if how == "pair":
            np.testing.assert_allclose(np.asarray(rec.value.alpha), 0.0, atol=1e-8 * abs(g(x1)))
            assert not np.any(np.asarray(rec.midpoint))
        else:
            mid = g((x1 + x2) / 2)
            np.testing.assert_allclose(np.abs(np.asarray(rec.value.alpha)), abs(mid), rtol=1e-6)
            assert np.all(np.asarray(rec.midpoint))
        # the sign of ⟨∇L, u⟩ at θ_t flips every step: u's sign is aligned, so the swing shows
        signs = np.sign(np.asarray(rec.at_t.alpha))
        assert np.all(signs[1:] == -signs[:-1])


def test_pair_average_keeps_the_oscillations_second_order_term_the_midpoint_does_not():
    """Review of weight-decay: a quantity with a second-order term around the orbit's centre
    θ† = (x1 + x2)/2, α(w) = α† − k(w − θ†)² (the shape of α = −∇L·∇S's self-stabilisation
    term), reads α† − k((x1 − x2)/2)² averaged over the pair and α† at the midpoint, in closed
    form on the cubic's period-2 orbit."""
    lam, c, eta, alpha0, k = 10.0, 5.0, 0.205, 12.0, 3.0
    x1, x2 = _cubic_orbit(lam, c, eta)
    centre, half = (x1 + x2) / 2, (x1 - x2) / 2

    def objective(params, x, y, hp):
        w = params["w"][0]
        return 0.5 * lam * w ** 2 + c / 3 * w ** 3, {}

    def second_order(params, opt_state, eigenpairs, hp, data):
        w = params["w"][0]
        zero = jnp.zeros((), w.dtype)
        return probes.EdgeCoefficients(alpha0 - k * (w - centre) ** 2, zero, zero, zero, zero)

    dummy = (jnp.zeros((1, 1)), jnp.zeros((1, 1)))
    params = {"w": jnp.array([x1], jnp.float64)}
    read = {}
    for how in ("pair", "midpoint"):
        cfg = train.TrainConfig(steps=4, probe_every=1, chunks=1, eig_tol=1e-10)
        res = train.run(objective, _sgd, params, dummy, cfg, key=jax.random.key(0),
                        hparams={"eta": eta},
                        probe_fn=probes.oscillation_averaged(second_order, how), progress=False)
        read[how] = np.asarray(res.history.extra.value.alpha)
    np.testing.assert_allclose(read["pair"], alpha0 - k * half ** 2, rtol=1e-6)
    np.testing.assert_allclose(read["midpoint"], alpha0, rtol=1e-6)


def test_oscillation_averaged_inside_combine_and_save_load(tmp_path, problem):
    model, data = problem
    probe = probes.combine(alpha=probes.oscillation_averaged(probes.alignment()),
                           ntk=probes.ntk_top())
    cfg = train.TrainConfig(steps=20, probe_every=10, chunks=1)
    res = train.run(train.supervised(), _sgd, model, data, cfg, key=jax.random.key(0),
                    hparams={"eta": 0.5}, probe_fn=probe, progress=False)
    rec = res.history.extra.alpha
    assert rec.value.alpha.shape == (2,)
    np.testing.assert_allclose(np.asarray(rec.value.alpha),
                               (np.asarray(rec.at_t.alpha) + np.asarray(rec.at_other.alpha)) / 2,
                               rtol=1e-6)
    path = train.save(tmp_path / "run", res)
    history, _ = train.load(path)
    assert type(history.extra.alpha).__name__ == "OscillationAveraged"
    np.testing.assert_array_equal(history.extra.alpha.value.alpha, np.asarray(rec.value.alpha))
    with pytest.raises(ValueError, match="how"):
        probes.oscillation_averaged(probes.alignment(), "triple")
    with pytest.raises(ValueError, match="different points"):
        probes.combine(a=probes.oscillation_averaged(probes.alignment(), "pair"),
                       b=probes.oscillation_averaged(probes.alignment(), "midpoint"))
