"""In-loop probes against independent references: closed forms, reverse-mode derivatives, and
dense float64 ``eigh`` wherever a probe solves an eigenproblem; records, combine, save / load."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from eoslib.engine import linalg, models, optim, probes, train


class DeepLinear(eqx.Module):
    """``x ↦ x W₁ W₂``: along a direction U the ½MSE loss is a quartic in t whose t⁴ coefficient
    is ½ mean‖x U₁ U₂‖², so κ = D⁴L[U, U, U, U] = 12 mean_n ‖x_n U₁ U₂‖² in closed form."""

    W1: jax.Array
    W2: jax.Array

    def __call__(self, x):
        return x @ self.W1 @ self.W2


def _dense_hessian(loss_of_params, params):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.hessian(lambda f: loss_of_params(unravel(f)))(flat), np.float64), unravel


def _half_mse(x, y):
    return lambda p: 0.5 * jnp.mean(jnp.sum((p(x) - y) ** 2, axis=-1))


def _eigenpairs(vectors):
    """An Eigenpairs holding given vectors (what the loop passes a probe)."""
    vectors = jnp.asarray(vectors)
    k = vectors.shape[1]
    return linalg.Eigenpairs(jnp.zeros(k), vectors, jnp.zeros(k), jnp.array(0), jnp.array(True))


def test_curvature_probe_in_the_loop_against_the_closed_form(getkey):
    k1, k2 = jax.random.split(getkey())
    params = DeepLinear(jax.random.normal(k1, (4, 3)) / 2, jax.random.normal(k2, (3, 2)) / 2)
    x, y = jax.random.normal(getkey(), (20, 4)), jax.random.normal(getkey(), (20, 2))
    cfg = train.TrainConfig(steps=2, probe_every=2, eig_tol=1e-10, eig_max_restarts=20, chunks=1)
    res = train.run(train.supervised(), lambda hp: optax.sgd(0.01), params, (x, y), cfg, key=getkey(),
                    probe_fn=probes.curvature("half_mse", radius=0.05), progress=False)
    H, unravel = _dense_hessian(_half_mse(x, y), params)
    _, vecs = np.linalg.eigh(H)
    U = unravel(jnp.asarray(vecs[:, -1]))
    closed = 12 * np.mean(np.sum(np.asarray(x @ U.W1 @ U.W2) ** 2, axis=1))
    rec = res.history.extra
    assert isinstance(rec, probes.CurvatureRecord)
    np.testing.assert_allclose(rec.kappa_exact[0], closed, rtol=1e-7)
    # the finite-difference proxy is exact on a quartic (up to cancellation, ~1e-16 / r⁴ in float64)
    np.testing.assert_allclose(rec.kappa_proxy[0], closed, rtol=1e-7)


def test_curvature_probe_on_an_mlp_against_reverse_mode(getkey):
    """κ by nested jvp (the probe) against the fourth derivative of φ(t) = L(θ + t u) by four
    nested ``jax.grad`` (reverse mode: another code path)."""
    params = models.MLP(5, (6,), 3, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 3))
    H, unravel = _dense_hessian(_half_mse(x, y), params)
    _, vecs = np.linalg.eigh(H)
    u = jnp.asarray(vecs[:, -1])
    rec = probes.curvature("half_mse", radius=1e-2)(params, None, _eigenpairs(u[:, None]), {}, (x, y))
    flat, _ = ravel_pytree(params)
    phi = lambda t: _half_mse(x, y)(unravel(flat + t * u))
    d4 = jax.grad(jax.grad(jax.grad(jax.grad(phi))))(0.0)
    np.testing.assert_allclose(rec.kappa_exact, d4, rtol=1e-9)
    # the proxy's error is O(r²) (the sixth derivative): small at r = 1e-2
    np.testing.assert_allclose(rec.kappa_proxy, d4, rtol=1e-2, atol=1e-3 * abs(float(d4)))
    # along the unit gradient (the flatness-bias paper's App. F.2 direction), by reverse mode too
    grad = jax.grad(lambda f: _half_mse(x, y)(unravel(f)))(flat)
    g = grad / jnp.linalg.norm(grad)
    psi = lambda t: _half_mse(x, y)(unravel(flat + t * g))
    np.testing.assert_allclose(rec.kappa_gradient, jax.grad(jax.grad(jax.grad(jax.grad(psi))))(0.0),
                               rtol=1e-9)


@pytest.fixture
def adam_run(getkey):
    """A tiny MLP after 30 full-batch Clipped-Ada steps, with a probe every 10 steps."""
    x = jax.random.normal(getkey(), (24, 5))
    y = jax.nn.one_hot(jax.random.randint(getkey(), (24,), 0, 3), 3)
    params = models.MLP(5, (8,), 3, "tanh", key=getkey())
    tau = 1e-3
    config = train.TrainConfig(steps=30, probe_every=10, eig_tol=1e-6, eig_max_restarts=10)
    probe = probes.preconditioned_sharpness("half_mse", tau=tau, tol=1e-7, max_restarts=20)
    result = train.run(train.supervised("half_mse"), lambda hp: optim.clipped_adam(1e-2, tau=tau), params,
                       (x, y), config, key=getkey(), probe_fn=probe, progress=False)
    return result, (x, y), tau


def test_preconditioned_sharpness_matches_dense_eigh(adam_run):
    """At the end of the run λ₁(P^{-1/2} H P^{-1/2}) agrees with dense float64 eigh."""
    result, (x, y), tau = adam_run
    params, opt_state = result.state.params, result.state.opt_state
    H, _ = _dense_hessian(_half_mse(x, y), params)
    p = np.asarray(ravel_pytree(optim.preconditioner(opt_state, tau))[0], np.float64)
    dense = np.linalg.eigvalsh(H / np.sqrt(np.outer(p, p)))[-1]
    probe = probes.preconditioned_sharpness("half_mse", tau=tau, tol=1e-8, max_restarts=30)
    _, vectors = np.linalg.eigh(H)
    out = probe(params, opt_state, _eigenpairs(vectors[:, ::-1]), {}, (x, y))
    assert isinstance(out, probes.PreconditionedRecord) and bool(out.converged)
    np.testing.assert_allclose(float(out.precond_sharpness), dense, rtol=1e-6)
    nu = np.asarray(ravel_pytree(optim.bias_corrected_nu(opt_state))[0])
    assert float(out.clipped_fraction) == pytest.approx(np.mean(nu > tau))
    assert float(out.nu_hat_median) == pytest.approx(np.median(nu))
    # in the loop: finite, positive, converged, recorded at every probe
    rec = result.history.extra
    assert rec.precond_sharpness.shape == (3,) and np.all(rec.precond_sharpness > 0)
    assert rec.converged.dtype == bool and rec.converged.all()


def test_clipped_fraction():
    nu = {"a": jnp.array([1e-6, 1e-4]), "b": jnp.array([1e-2, 1.0])}
    assert float(probes.clipped_fraction(nu, jnp.inf)) == 0.0
    assert float(probes.clipped_fraction(nu, 1e-3)) == 0.5
    assert float(probes.clipped_fraction(nu, 1e-8)) == 1.0


def test_ntk_top_matches_dense_eigh(getkey):
    params = models.MLP(4, (6,), 3, "tanh", key=getkey())
    x = jax.random.normal(getkey(), (10, 4))
    flat, unravel = ravel_pytree(params)
    J = np.asarray(jax.jacobian(lambda f: unravel(f)(x).reshape(-1))(flat), np.float64)
    dense = np.linalg.eigvalsh(J @ J.T)[-1] / x.shape[0]
    rec = probes.ntk_top(tol=1e-10, max_restarts=30)(params, None, None, {}, (x, None))
    assert isinstance(rec, probes.NTKRecord) and bool(rec.converged)
    np.testing.assert_allclose(rec.top_eigenvalue, dense, rtol=1e-9)


def test_edge_coefficients_against_dense_derivatives():
    A = jnp.diag(jnp.array([3.0, 1.0, 0.5]))
    loss = lambda p: 0.5 * p["w"] @ A @ p["w"] + 0.25 * jnp.sum(p["w"] ** 3) * p["w"][0]
    params = {"w": jnp.array([0.3, -0.2, 0.1])}
    H = jax.hessian(lambda w: loss({"w": w}))(params["w"])
    vals, vecs = jnp.linalg.eigh(H)
    v = vecs[:, -1]
    c = probes.edge_coefficients(loss, params, v)
    grad_s = jax.grad(lambda w: v @ jax.hessian(lambda u: loss({"w": u}))(w) @ v)(params["w"])
    grad_l = jax.grad(lambda w: loss({"w": w}))(params["w"])
    np.testing.assert_allclose(c.alpha, -grad_l @ grad_s, rtol=1e-10)
    np.testing.assert_allclose(c.beta, grad_s @ grad_s, rtol=1e-10)
    np.testing.assert_allclose(c.c_y, params["w"] @ grad_s, rtol=1e-10)
    # ∇S is the derivative of the top eigenvalue (simple eigenvalue): check by finite differences
    d = jnp.array([0.2, -0.5, 0.7])
    top = lambda w: jnp.linalg.eigvalsh(jax.hessian(lambda u: loss({"w": u}))(w))[-1]
    fd = (top(params["w"] + 1e-5 * d) - top(params["w"] - 1e-5 * d)) / 2e-5
    np.testing.assert_allclose(fd, grad_s @ d, rtol=1e-6)


def test_combined_alignment_rotation_and_ntk_in_a_sweep(getkey, tmp_path):
    """Three probes at one probe point under a weight-decay sweep: the alignment at step 0 equals
    edge_coefficients with the dense top eigenvector (the decay does not change L's), the rotation
    against the step-0 eigenvectors is 1 at step 0 and matches a dense computation later; and the
    nested record survives save / load."""
    x = jax.random.normal(getkey(), (24, 5))
    y = jax.nn.one_hot(jnp.arange(24) % 3, 3)
    params = models.MLP(5, (6,), 3, "tanh", key=getkey())
    eta, gammas = 0.1, jnp.array([0.0, 0.01])
    H0, unravel = _dense_hessian(_half_mse(x, y), params)
    _, V0 = np.linalg.eigh(H0)
    base = jnp.asarray(V0[:, ::-1][:, :2])
    probe = probes.combine(alignment=probes.alignment("half_mse"), rotation=probes.rotation(),
                           ntk=probes.ntk_top(tol=1e-8, max_restarts=20))
    cfg = train.TrainConfig(steps=4, probe_every=2, top_k=2, eig_tol=1e-10, eig_max_restarts=20, chunks=1)
    res = train.run(train.supervised(), lambda hp: optax.sgd(eta), params, (x, y), cfg, key=getkey(),
                    hparams={"gamma": gammas, "baseline": jnp.stack([base, base])}, probe_fn=probe, progress=False)
    rec = res.history.extra
    assert rec._fields == ("alignment", "rotation", "ntk")
    assert isinstance(rec.alignment, probes.EdgeCoefficients) and rec.alignment.c_y.shape == (2, 2)
    ref = probes.edge_coefficients(_half_mse(x, y), params, jnp.asarray(V0[:, -1]))
    for m in range(2):
        np.testing.assert_allclose(rec.alignment.alpha[m, 0], ref.alpha, rtol=1e-6)
        np.testing.assert_allclose(rec.alignment.c_y[m, 0], ref.c_y, rtol=1e-6)
        np.testing.assert_allclose(rec.rotation.cosines[m, 0], 1.0, atol=1e-7)
        np.testing.assert_allclose(rec.rotation.subspace[m, 0], 1.0, atol=1e-7)
    assert rec.ntk.converged.all()
    # member 1 (γ = 0.01) at step 2, against dense eigh of its objective there
    p = params
    objective = lambda q: _half_mse(x, y)(q) + 0.005 * sum(jnp.vdot(a, a) for a in jax.tree.leaves(q))
    for _ in range(2):
        p = jax.tree.map(lambda a, g: a - eta * g, p, jax.grad(objective)(p))
    H2, _ = _dense_hessian(objective, p)
    U = np.linalg.eigh(H2)[1][:, ::-1][:, :2]
    B = np.asarray(base)
    np.testing.assert_allclose(rec.rotation.cosines[1, 1], np.abs(np.sum(U * B, axis=0)), rtol=1e-6)
    angles = np.arccos(np.clip(np.linalg.svd(U.T @ B, compute_uv=False), -1, 1))
    np.testing.assert_allclose(rec.rotation.subspace[1, 1], np.cos(np.linalg.norm(angles) / np.sqrt(2)), rtol=1e-6)
    # save / load rebuilds the nested record
    history, _ = train.load(train.save(tmp_path / "combined", res))
    assert type(history.extra).__name__ == "Combined" and history.extra._fields == rec._fields
    assert isinstance(history.extra.alignment, probes.EdgeCoefficients)
    np.testing.assert_array_equal(history.extra.rotation.cosines, rec.rotation.cosines)
    np.testing.assert_array_equal(history.extra.ntk.converged, rec.ntk.converged)


def test_probe_records_are_blanked_after_divergence(getkey):
    params = models.MLP(4, (6,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (12, 4)), jax.random.normal(getkey(), (12, 2))
    res = train.run(train.supervised(), lambda hp: optax.sgd(hp["eta"]), params, (x, y),
                    train.TrainConfig(steps=40, probe_every=5, chunks=1, max_loss=1e4), key=getkey(),
                    hparams={"eta": jnp.array([0.05, 80.0])}, probe_fn=probes.ntk_top(), progress=False)
    assert res.diverged.tolist() == [False, True]
    rec = res.history.extra
    assert np.all(np.isfinite(rec.top_eigenvalue[0])) and rec.converged[0].all()
    assert np.isnan(rec.top_eigenvalue[1, -1]) and not rec.converged[1, -1]


def test_bad_probe_settings_are_named():
    with pytest.raises(ValueError, match="radius=0"):
        probes.curvature(radius=0)
    with pytest.raises(ValueError, match="model_loss='mae'"):
        probes.alignment("mae")
    with pytest.raises(ValueError, match="tol=-1"):
        probes.ntk_top(tol=-1)
    with pytest.raises(ValueError, match="at least one probe"):
        probes.combine()
    with pytest.raises(TypeError, match="not probes"):
        probes.combine(a=3)


def test_decay_channel_measures_the_projected_decay_along_the_true_sharpness_gradient(getkey):
    """In a run whose decay is projected off ∇S with many power iterations, the alignment the
    decay still acts through is ~0 while ⟨θ, ∇S⟩ is not; with plain decay the probe refuses."""
    x = jax.random.normal(getkey(), (16, 3))
    y = jax.nn.one_hot(jnp.arange(16) % 2, 2)
    model = models.MLP(3, (8,), 2, "tanh", key=getkey())
    half_mse = lambda p, batch: _half_mse(*batch)(p)
    config = train.TrainConfig(steps=4, probe_every=2, top_k=1, eig_tol=1e-8, eig_max_restarts=20)
    tx = lambda hp: optax.chain(optim.decay_off_sharpness_gradient(half_mse, 0.1, power_iters=100),
                                optax.sgd(0.05))
    res = train.run(train.supervised("half_mse"), tx, model, (x, y), config, key=getkey(),
                    probe_fn=probes.decay_channel("half_mse"), progress=False)
    rec = res.history.extra
    assert isinstance(rec, probes.DecayChannelRecord)
    c_y, applied, cosine = (np.asarray(a) for a in rec)
    assert np.isnan(applied[0]) and np.isnan(cosine[0])  # step 0: no direction applied yet
    assert np.all(np.abs(c_y) > 1e-3)
    assert np.all(np.abs(applied[1:]) < 2e-2 * np.abs(c_y[1:]))
    assert np.all(cosine[1:] > 0.98)
    with pytest.raises(ValueError, match="DecayOffSharpnessGradientState"):
        train.run(train.supervised("half_mse"), lambda hp: optax.sgd(0.05), model, (x, y), config,
                  key=getkey(), probe_fn=probes.decay_channel("half_mse"), progress=False)


def _tiny_minibatch_problem(getkey):
    x = jax.random.normal(getkey(), (20, 3))
    y = jax.random.normal(getkey(), (20, 2))
    params = {"w": jax.random.normal(getkey(), (3, 4)), "v": jax.random.normal(getkey(), (4, 2))}
    loss = lambda p, x, y: 0.5 * jnp.mean(jnp.sum((jnp.tanh(x @ p["w"]) @ p["v"] - y) ** 2, -1))
    return loss, params, x, y


def test_step_sharpness_is_the_rayleigh_quotient_of_the_dense_minibatch_hessian(getkey):
    """``g_Bᵀ H_B g_B / ‖g_B‖²`` against the dense float64 Hessian of the minibatch loss, under
    jit; NaN at a point whose minibatch gradient is 0."""
    loss, params, x, y = _tiny_minibatch_problem(getkey)
    for idx in (np.arange(5), np.arange(7, 15)):
        H, _ = _dense_hessian(lambda p: loss(p, x[idx], y[idx]), params)
        g = np.asarray(ravel_pytree(jax.grad(loss)(params, x[idx], y[idx]))[0])
        value = jax.jit(probes.step_sharpness, static_argnums=0)(loss, params, x[idx], y[idx])
        assert value.dtype == jnp.float64
        assert float(value) == pytest.approx(g @ H @ g / (g @ g), rel=1e-10)
        assert np.linalg.eigvalsh(H)[0] - 1e-9 <= float(value) <= np.linalg.eigvalsh(H)[-1] + 1e-9
    flat = jax.tree.map(jnp.zeros_like, params)  # a zero network on zero targets: g = 0
    assert np.isnan(float(probes.step_sharpness(loss, flat, x, jnp.zeros_like(y))))


def test_batch_sharpness_probe_against_dense_minibatch_hessians(getkey):
    """The probe itself (as ``train.run`` calls it), at a point: the batch sharpness, the mean over
    the minibatches of ``g_Bᵀ H_B g_B / ‖g_B‖²``, and each minibatch's value, against each
    minibatch's dense float64 Hessian; the minibatch λ₁ mean over the first ``eig_batches`` of the
    same minibatches; and the minibatches are ``minibatch_indices``'."""
    loss, params, x, y = _tiny_minibatch_problem(getkey)
    n = ravel_pytree(params)[0].size
    eig = linalg.Eigenpairs(jnp.zeros(1), jax.random.normal(getkey(), (n, 1)), jnp.zeros(1), jnp.array(0),
                            jnp.array(True))
    record = probes.batch_sharpness(loss, 5, batches=4, eig_batches=3, seed=2, tol=1e-10)(
        params, None, eig, {}, (x, y))
    index = np.asarray(probes.minibatch_indices(20, 5, 4, seed=2))
    tops, quotients = [], []
    for idx in index:
        H, unravel = _dense_hessian(lambda p: loss(p, x[idx], y[idx]), params)
        g = np.asarray(ravel_pytree(jax.grad(loss)(params, x[idx], y[idx]))[0])
        tops.append(np.linalg.eigvalsh(H)[-1])
        quotients.append(g @ H @ g / (g @ g))
    np.testing.assert_allclose(record.step_sharpness, quotients, rtol=1e-10)
    assert float(record.batch_sharpness) == pytest.approx(np.mean(quotients), rel=1e-10)
    np.testing.assert_allclose(record.batch_top_eigenvalues, tops[:3], rtol=1e-8)
    assert float(record.minibatch_lambda_max) == pytest.approx(np.mean(tops[:3]), rel=1e-8)
    assert float(record.minibatch_lambda_max) >= np.mean(quotients[:3])
    assert bool(record.converged) and probes.is_record(record)
    none = probes.batch_sharpness(loss, 5, batches=4, eig_batches=0, seed=2)(params, None, eig, {}, (x, y))
    assert np.isnan(float(none.minibatch_lambda_max)) and none.batch_top_eigenvalues.shape == (0,)
    assert float(none.batch_sharpness) == pytest.approx(np.mean(quotients), rel=1e-10)
    default = probes.batch_sharpness(loss, 5, batches=4, seed=2, tol=1e-10)(params, None, eig, {}, (x, y))
    np.testing.assert_allclose(default.batch_top_eigenvalues, tops, rtol=1e-8)  # min(8, batches) of them


@pytest.mark.parametrize("call, message", [
    (lambda: probes.minibatch_indices(10, 11, 2), r"batch_size=11 is not allowed; allowed: an int in \[1, 10\]"),
    (lambda: probes.minibatch_indices(10, 2, 0), r"batches=0 is not allowed; allowed: an int >= 1"),
    (lambda: probes.batch_sharpness(lambda p, x, y: 0.0, 0), r"batch_size=0 is not allowed"),
    (lambda: probes.batch_sharpness(lambda p, x, y: 0.0, 4, batches=2.5), r"batches=2.5 is not allowed"),
    (lambda: probes.batch_sharpness(lambda p, x, y: 0.0, 4, batches=0), r"batches=0 is not allowed; allowed: an int >= 1"),
    (lambda: probes.batch_sharpness(lambda p, x, y: 0.0, 4, batches=4, eig_batches=5),
     r"eig_batches=5 is not allowed; allowed: an int in \[0, 4\]"),
    (lambda: probes.batch_sharpness(lambda p, x, y: 0.0, 4, eig_batches=-1), r"eig_batches=-1 is not allowed"),
])
def test_batch_sharpness_arguments_are_checked(call, message):
    with pytest.raises(ValueError, match=message):
        call()
