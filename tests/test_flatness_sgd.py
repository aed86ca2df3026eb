"""The SGD experiments of the flatness-generalization chapter (flatness-bias paper, Sec. 7): the
noise-scaled update switched off at a step, noise-scaled sweeps over η × seeds, and the
summaries the chapter grades (the equal-temperature gap, Table 1's trend)."""

import jax
import numpy as np
import optax
import pytest

from eoslib.engine import data, models, optim, train
from eoslib.mechanisms import flatness


def _problem(n=24):
    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (n, 5))
    y = jax.nn.one_hot(jax.random.randint(ky, (n,), 0, 3), 3)
    params = models.MLP(5, (7,), 3, "tanh", key=jax.random.key(2))
    return params, x, y


def _final(alpha, until, steps=6, plain_batch=None, plain=False):
    """Final parameters of ``steps`` updates at η = 0.3: through :func:`flatness.noise_until`,
    or (``plain``) optax.sgd with ``train.run``'s own minibatching ``plain_batch``."""
    params, x, y = _problem()
    objective = train.supervised("cross_entropy")
    loss_fn = lambda p, xb, yb: objective(p, xb, yb, {})[0]
    key = jax.random.key(3)
    if plain:
        config = train.TrainConfig(steps=steps, chunks=1, batch_size=plain_batch)
        make = lambda hp: optax.sgd(0.3)
    else:
        config = train.TrainConfig(steps=steps, chunks=1)
        make = lambda hp: optax.chain(flatness.noise_until(loss_fn, alpha, until, 6, key=key),
                                      optax.sgd(0.3))
    r = train.run(objective, make, params, (x, y), config, key=key, progress=False)
    return np.concatenate([np.ravel(a) for a in jax.tree.leaves(r.state.params)])


def test_noise_until_is_sgd_before_and_gd_after_the_switch():
    sgd = _final(None, None, plain=True, plain_batch=6)
    gd = _final(None, None, plain=True)
    np.testing.assert_array_equal(_final(1.0, np.inf), sgd)  # never switched: SGD bit for bit
    np.testing.assert_array_equal(_final(1.0, 0), gd)  # switched at once: GD bit for bit
    np.testing.assert_array_equal(_final(0.0, np.inf), gd)  # α = 0: GD
    # switched after 3 updates: the first 3 are SGD's, the rest differ from pure SGD and GD
    np.testing.assert_array_equal(_final(1.0, 3, steps=3),
                                  _final(None, None, steps=3, plain=True, plain_batch=6))
    mixed = _final(1.0, 3)
    assert not np.array_equal(mixed, sgd) and not np.array_equal(mixed, gd)


def test_noise_until_matches_noise_scaled_gradient_at_any_alpha():
    params, x, y = _problem()
    objective = train.supervised("cross_entropy")
    loss_fn = lambda p, xb, yb: objective(p, xb, yb, {})[0]
    key = jax.random.key(3)
    config = train.TrainConfig(steps=6, chunks=1)
    finals = []
    for tx in (flatness.noise_until(loss_fn, 0.5, np.inf, 6, key=key),
               optim.noise_scaled_gradient(loss_fn, 0.5, 6, key=key)):
        r = train.run(objective, lambda hp, t=tx: optax.chain(t, optax.sgd(0.3)), params,
                      (x, y), config, key=key, progress=False)
        finals.append(np.concatenate([np.ravel(a) for a in jax.tree.leaves(r.state.params)]))
    np.testing.assert_array_equal(*finals)


def _splits(n_train=24, n_val=8, n_test=8):
    rng = np.random.default_rng(0)

    def ds(n):
        return data.Dataset(x=rng.normal(size=(n, 28, 28, 1)).astype(np.float32),
                            y=rng.integers(0, 4, n).astype(np.int32),
                            classes=("a", "b", "c", "d"), source="synthetic")

    return flatness.Splits(ds(n_train), ds(n_val), ds(n_test))


def test_noisy_sweep_at_alpha_zero_is_the_gd_sweep_and_records_divergence():
    sp = _splits()
    etas = np.array([0.05, 1e3])  # the second diverges
    kw = dict(seeds=2, seed=0, steps=8, eval_every=4, arch_options={"width": 4})
    gd = flatness.sweep(sp, "fmnist-mlp", etas, **kw)
    noisy0 = flatness.sweep(sp, "fmnist-mlp", etas, alpha=np.zeros(2), batch_size=6, **kw)
    np.testing.assert_array_equal(gd.final_train_acc, noisy0.final_train_acc)
    for a, b in zip(jax.tree.leaves(gd.params), jax.tree.leaves(noisy0.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    sgd = flatness.sweep(sp, "fmnist-mlp", etas, alpha=np.ones(2), batch_size=6, **kw)
    assert sgd.diverged[1].any() and not sgd.diverged[0].any()
    assert sgd.test_acc.shape == (2, 2)  # recorded as diverged, not dropped: NaN accuracy
    assert np.isnan(sgd.test_acc[sgd.diverged]).all()
    assert not np.array_equal(np.asarray(jax.tree.leaves(sgd.params)[0][0]),
                              np.asarray(jax.tree.leaves(gd.params)[0][0]))


def test_noisy_switch_sweep_switches_at_its_accuracy_and_probes_after_the_switch():
    """Each run drops η (and the noise) at the first step its training accuracy reaches its own
    threshold, inside one compiled program; completion counts only after the switch."""
    sp = _splits()
    out = flatness.sweep(sp, "fmnist-mlp", np.array([0.5, 0.5, 0.5]), seeds=2, seed=0,
                         steps=40, eval_every=4, arch_options={"width": 16},
                         switch_accuracy=np.array([0.3, 0.5, 0.9]), eta_small=0.01,
                         probe_every=2, alpha=np.ones(3), batch_size=6)
    assert out.s_max.shape == (3, 2)
    fired = out.switch_step >= 0
    assert fired[0].all()
    # a higher threshold fires no earlier, and every completion comes after its switch
    assert (out.switch_step[1][fired[1]] >= out.switch_step[0][fired[1]]).all()
    done = out.completion_step >= 0
    assert (out.completion_step[done] > out.switch_step[done]).all()
    assert np.isfinite(out.s_max[fired]).all()
    assert np.isnan(out.loss_rose).all()  # noisy runs: a loss rise is the noise's, not the edge's
    with pytest.raises(ValueError, match="switch_accuracy"):
        flatness.sweep(sp, "fmnist-mlp", np.array([0.5]), seeds=1, seed=0, steps=4,
                       eval_every=4, switch_accuracy=np.array([1.0]), eta_small=0.01)


def test_noisy_sweep_checks_its_input():
    sp = _splits()
    kw = dict(seeds=1, seed=0, steps=4, eval_every=4, arch_options={"width": 4})
    with pytest.raises(ValueError, match="alpha"):
        flatness.sweep(sp, "fmnist-mlp", np.array([0.1, 0.2]), alpha=np.ones(3), batch_size=6,
                       **kw)
    with pytest.raises(ValueError, match="alpha"):
        flatness.sweep(sp, "fmnist-mlp", np.array([0.1]), alpha=np.array([-1.0]),
                       batch_size=6, **kw)
    with pytest.raises(ValueError, match="batch_size=100"):
        flatness.sweep(sp, "fmnist-mlp", np.array([0.1]), alpha=np.ones(1), batch_size=100,
                       **kw)
    with pytest.raises(ValueError, match="batch_size=None"):
        flatness.sweep(sp, "fmnist-mlp", np.array([0.1]), alpha=np.ones(1), **kw)


def test_sde_temperature_and_the_equal_temperature_gap():
    etas = np.array([0.1, 0.4, 0.1, 0.4])
    alphas = np.array([1.0, 0.5, 0.5, 0.25])
    t = flatness.sde_temperature(etas, alphas)
    np.testing.assert_allclose(t, [0.1, 0.1, 0.025, 0.025])
    line = np.array([0, 0, 1, 1])
    acc = np.array([[0.80, 0.82], [0.90, 0.92], [0.81, 0.83], [0.85, 0.87]])
    out = flatness.equal_temperature_gap(etas, alphas, line, acc)
    assert out["sde_equal_temperature_gap"] == pytest.approx((0.10 + 0.04) / 2)
    assert out["n_sde_lines"] == 2 and out["sde_temperature_spread"] == 0
    sd = np.sqrt(2e-4)  # every configuration's two seeds differ by 0.02
    assert out["sde_gap_se"] == pytest.approx(np.sqrt(2 * sd ** 2 * (1 / 2 + 1 / 2)) / 2)
    # a line whose large-η end diverged is left out, and counted
    acc_div = acc.copy()
    acc_div[1] = np.nan
    out = flatness.equal_temperature_gap(etas, alphas, line, acc_div)
    assert out["n_sde_lines"] == 1 and out["sde_equal_temperature_gap"] == pytest.approx(0.04)
    none = flatness.equal_temperature_gap(etas, alphas, line, np.full_like(acc, np.nan))
    assert none["n_sde_lines"] == 0 and np.isnan(none["sde_equal_temperature_gap"])
    # a grid that does not conserve η α² says so
    assert flatness.equal_temperature_gap(etas, np.ones(4), line, acc)[
        "sde_temperature_spread"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="must be"):
        flatness.equal_temperature_gap(etas, alphas[:3], line, acc)


def test_end_to_end_gain():
    etas = np.array([0.01, 0.02, 0.04, 0.08])
    acc = np.array([[0.30, 0.32], [0.33, 0.35], [0.36, 0.38], [np.nan, np.nan]])
    out = flatness.end_to_end_gain(etas, acc)
    assert out["gain"] == pytest.approx(0.06) and out["n_usable"] == 3
    assert out["largest_usable_eta"] == 0.04 and out["smallest_usable_eta"] == 0.01
    assert out["rank_corr"] == pytest.approx(1.0)
    assert out["gain_se"] > 0
    one = flatness.end_to_end_gain(etas, np.full_like(acc, np.nan))
    assert one["n_usable"] == 0 and np.isnan(one["gain"])
    with pytest.raises(ValueError, match="must be"):
        flatness.end_to_end_gain(etas[:2], acc)


def test_gd_switch_sweep_reads_every_step_and_leaves_unswitched_runs_without_s_max():
    """The reviewed defects: a switch that never fired once gave S_max over the whole run at η₀;
    an edge flag read from probes alone misses the steps between them."""
    sp = _splits()
    out = flatness.sweep(sp, "fmnist-mlp", np.array([0.5, 1e-5]), seeds=2, seed=0,
                         steps=24, eval_every=4, arch_options={"width": 16},
                         switch_accuracy=np.array([0.3, 0.99]), eta_small=0.01, probe_every=2)
    assert (out.switch_step[0] >= 0).all() and (out.switch_step[1] < 0).all()
    assert np.isnan(out.s_max[1]).all()  # never switched: no S_max after a switch
    assert np.isin(out.loss_rose, [0.0, 1.0]).all()  # GD: read at every step
    assert out.loss_rose[1].sum() == 0  # η = 1e-5 descends monotonically
    probes_before = (np.arange(0, 24, 2)[None, :] <= out.switch_step[0][:, None]).sum(1)
    np.testing.assert_array_equal(out.edge_probes[0], probes_before)
    np.testing.assert_array_equal(out.edge_probes[1], 12)  # every probe: steps 0, 2, …, 22
    only_step0 = out.edge_probes[0] == 1
    assert np.isnan(out.edge_ratio[0][only_step0]).all()


def test_loss_rose_reads_rises_up_to_the_switch():
    loss = np.array([[3.0, 2.0, 2.5, 1.0], [3.0, 2.0, 1.0, 1.5], [3.0, 3.0, 2.0, np.nan]])
    np.testing.assert_array_equal(flatness._loss_rose(loss, np.array([np.inf, 2.0, np.inf])),
                                  [1.0, 0.0, 0.0])  # row 1 rose after its switch; ties are no rise
    np.testing.assert_array_equal(flatness._loss_rose(loss, np.array([1.0, 3.0, 3.0])),
                                  [0.0, 1.0, 0.0])
