"""Warm in-loop probes: the eigenvalue stopping rule, its a-posteriori bound, and LOBPCG, against
dense float64 ``eigh`` (decaying, clustered, negative-dominant and Hessian-like spectra, and a small
network Hessian)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from eoslib.engine import hessian, linalg
from test_thick_restart import KINDS, _spectrum  # the same four reference spectra


@pytest.fixture(scope="module")
def problems():
    """Per kind: a dense symmetric (200, 200) matrix, its eigh (ascending), and two start blocks
    (3 columns): warm (the top eigenvectors plus a perturbation of relative size 0.1, as after a
    few GD steps) and cold (random)."""
    rng = np.random.default_rng(1)
    out = {}
    n = 200
    for kind in KINDS:
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        a = (q * _spectrum(kind, n, rng)) @ q.T
        a = (a + a.T) / 2
        lam, vec = np.linalg.eigh(a)
        top = vec[:, ::-1][:, :3]
        warm = top + 0.1 * rng.standard_normal((n, 3)) / np.sqrt(n)
        out[kind] = (a, lam, {"warm": warm, "cold": rng.standard_normal((n, 3))})
    return out


def _solve(method, a, start, k, **options):
    matvec = lambda x: jnp.asarray(a) @ x
    if method == "block":
        return linalg.eigsh(matvec, jnp.asarray(start[:, :k]), k, max_restarts=50, **options)
    if method == "thick":
        return linalg.thick_restart_eigsh(matvec, jnp.asarray(start[:, 0]), k, max_restarts=100, **options)
    return linalg.lobpcg(matvec, jnp.asarray(start[:, :k]), k, max_iters=400, **options)


# ------------------------------------------------------------------ the eigenvalue stopping rule


# Where the bound fails (measured; a finding, not a tolerance to tune): at a loose tolerance the
# solver stops after a few steps, when the other Ritz values still lie far below λ₂ (a warm start
# near v₁, or a cold start that has not yet resolved a cluster), so the gap is overestimated and
# the second-order bound falls below the actual error. The Ritz-value gap is an estimate.
BOUND_FAILS = {
    (1e-4, "warm", 1, "block", "decay"), (1e-4, "warm", 1, "thick", "decay"),
    (1e-4, "warm", 1, "block", "hessian-like"), (1e-4, "warm", 1, "thick", "hessian-like"),
    (1e-4, "warm", 3, "block", "hessian-like"),
    (1e-4, "cold", 1, "block", "cluster"), (1e-4, "cold", 1, "thick", "cluster"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["block", "thick"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("start", ["warm", "cold"])
@pytest.mark.parametrize("tol", [1e-4, 1e-9])
def test_eigenvalue_rule_meets_its_tolerance_where_its_bound_holds(problems, kind, method, k, start, tol):
    a, lam, starts = problems[kind]
    res = _solve(method, a, starts[start], k, tol=tol, stop="eigenvalue")
    assert bool(res.converged)
    exact = lam[::-1][:k]
    error = np.abs(np.asarray(res.values) - exact)
    bounds = np.asarray(res.error_bounds)
    scale = np.max(np.abs(np.asarray(res.values)))
    slack = 1e-12 * np.abs(lam).max()  # float64 rounding of the values themselves
    assert np.all(bounds <= tol * scale)  # it stopped on the bound
    # the a-posteriori bound holds against the dense eigenvalues, except where it was measured
    # to fail; where it holds, the eigenvalues are as accurate as asked
    holds = bool(np.all(error <= bounds + slack))
    assert holds == ((tol, start, k, method, kind) not in BOUND_FAILS), (error, bounds)
    if holds:
        assert np.all(error <= tol * scale + slack)
    # the first-order bound always holds (here every Ritz value is nearest its own eigenvalue)
    assert np.all(error <= np.asarray(res.residuals) + slack)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["block", "thick"])
def test_residual_rule_reports_a_bound(problems, kind, method):
    """The default rule is unchanged, and its results carry the same bound; at the training loop's
    tolerance (1e-3) from a warm start the bound fails on the clustered and negative-dominant
    references (measured: the gap is overestimated there, a finding)."""
    a, lam, starts = problems[kind]
    res = _solve(method, a, starts["warm"], 1, tol=1e-3)
    same = _solve(method, a, starts["warm"], 1, tol=1e-3, stop="residual")
    np.testing.assert_array_equal(np.asarray(res.values), np.asarray(same.values))
    assert int(res.matvecs) == int(same.matvecs)
    assert np.all(np.asarray(res.residuals) <= 1e-3 * np.abs(np.asarray(res.values)).max())
    error = np.abs(np.asarray(res.values) - lam[::-1][:1])
    holds = bool(np.all(error <= np.asarray(res.error_bounds) + 1e-12 * np.abs(lam).max()))
    assert holds == (kind not in ("cluster", "negative-dominant")), (error, np.asarray(res.error_bounds))
    assert np.all(error <= np.asarray(res.residuals))
    assert np.all(np.asarray(res.error_bounds) <= np.asarray(res.residuals))


def test_eigenvalue_rule_stops_earlier_where_the_eigenvalue_is_already_accurate(problems):
    """Hessian-like spectrum, warm start: at tolerance ε on the eigenvalue the rule stops where the
    residual is near √(ε·λ·gap), not at ε·λ; so it needs fewer applications than the residual rule
    at the same tolerance, with an error within the tolerance (checked against eigh)."""
    a, lam, starts = problems["hessian-like"]
    for method in ("block", "thick"):
        by_value = _solve(method, a, starts["warm"], 1, tol=1e-8, stop="eigenvalue")
        by_residual = _solve(method, a, starts["warm"], 1, tol=1e-8, stop="residual")
        assert int(by_value.matvecs) < int(by_residual.matvecs)
        assert abs(float(by_value.values[0]) - lam[-1]) <= 1e-8 * lam[-1]


def test_bounds_first_and_second_order():
    """Hand-made Ritz pairs: the quadratic bound where the gap estimate is positive, the residual
    where it is not, padding ignored."""
    theta = jnp.array([10.0, 8.0, 1.0, 123.0])
    residuals = jnp.array([0.1, 0.5, 3.0, 0.0])
    valid = jnp.array([True, True, True, False])
    bounds = np.asarray(linalg.eigenvalue_error_bounds(theta, residuals, valid))
    # pair 0: gap = min(10 − 8 − 0.5, 10 − 1 − 3) = 1.5 → 0.1² / 1.5
    np.testing.assert_allclose(bounds[0], 0.01 / 1.5)
    # pair 1: gap = min(2 − 0.1, 7 − 3) = 1.9 → min(0.5, 0.25 / 1.9)
    np.testing.assert_allclose(bounds[1], 0.25 / 1.9)
    # pair 2: gap = min(9 − 0.1, 7 − 0.5) = 6.5 → min(3, 9 / 6.5) = 9 / 6.5
    np.testing.assert_allclose(bounds[2], 9 / 6.5)
    # one pair alone: no gap estimate, the residual
    np.testing.assert_allclose(np.asarray(linalg.eigenvalue_error_bounds(theta[:1], residuals[:1])), 0.1)
    # overlapping intervals: no usable gap, the residual
    np.testing.assert_allclose(np.asarray(linalg.eigenvalue_error_bounds(jnp.array([1.0, 0.9]),
                                                                         jnp.array([0.05, 0.2])))[0], 0.05)


def test_gap_estimate_fails_for_an_eigenvalue_the_subspace_has_not_seen():
    """Why the bound is an estimate and why LOBPCG does not offer the eigenvalue rule: Ritz pairs of
    a small subspace that misses λ₂ (close to λ₁) overestimate the gap, and the second-order bound
    falls below the actual error."""
    n = 50
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.concatenate([[10.0, 9.99], np.linspace(5, -1, n - 2)])
    a = (q * lam) @ q.T
    # a 3-column subspace: v₁ tilted towards v₄, plus v₆ and v₁₀; v₂ is not in it
    basis = np.stack([q[:, 0] + 0.05 * q[:, 3], q[:, 5], q[:, 9]], axis=1)
    basis, _ = np.linalg.qr(basis)
    theta, s = np.linalg.eigh(basis.T @ a @ basis)
    y = basis @ s
    residuals = np.linalg.norm(a @ y - y * theta, axis=0)
    bounds = np.asarray(linalg.eigenvalue_error_bounds(jnp.asarray(theta), jnp.asarray(residuals)))
    top = np.argmax(theta)
    assert abs(theta[top] - lam[0]) > bounds[top]  # the estimate fails here
    assert abs(theta[top] - lam[0]) <= residuals[top]  # the first-order bound does not


# ------------------------------------------------------------------ LOBPCG


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("start", ["warm", "cold"])
def test_lobpcg_matches_dense_eigh(problems, kind, k, start):
    a, lam, starts = problems[kind]
    res = _solve("lobpcg", a, starts[start], k, tol=1e-9)
    assert bool(res.converged)
    np.testing.assert_allclose(np.asarray(res.values), lam[::-1][:k], rtol=0, atol=1e-8 * np.abs(lam).max())
    vectors = np.asarray(res.vectors)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-8)
    exact = np.linalg.eigh(a)[1][:, ::-1][:, :k]
    overlap = np.linalg.svd(vectors.T @ exact, compute_uv=False)
    if kind != "cluster":
        np.testing.assert_allclose(overlap, 1.0, atol=1e-6)
    # the residuals it reports are those of the vectors it returns; they bound the error
    actual = np.linalg.norm(a @ vectors - vectors * np.asarray(res.values), axis=0)
    np.testing.assert_allclose(np.asarray(res.residuals), actual, rtol=1e-5, atol=1e-10)
    np.testing.assert_array_equal(np.asarray(res.error_bounds), np.asarray(res.residuals))
    # native count: k for the start block, then k per iteration
    assert int(res.matvecs) % k == 0


def test_lobpcg_warm_start_is_cheaper_than_cold(problems):
    a, lam, starts = problems["hessian-like"]
    warm = _solve("lobpcg", a, starts["warm"], 1, tol=1e-6)
    cold = _solve("lobpcg", a, starts["cold"], 1, tol=1e-6)
    assert int(warm.matvecs) < int(cold.matvecs)


def test_lobpcg_nonfinite_start_gives_nan_not_a_value():
    a = np.diag(np.arange(1.0, 31.0))
    res = linalg.lobpcg(lambda x: jnp.asarray(a) @ x, jnp.full(30, jnp.nan), 1)
    assert np.all(np.isnan(np.asarray(res.values)))
    assert not bool(res.converged)


def test_lobpcg_under_jit():
    a = jnp.diag(jnp.arange(1.0, 31.0))
    solve = jax.jit(lambda v: linalg.lobpcg(lambda x: a @ x, v, 2, tol=1e-10, max_iters=200).values)
    np.testing.assert_allclose(np.asarray(solve(jnp.ones(30))), [30.0, 29.0], atol=1e-8)


# ------------------------------------------------------------------ a small network Hessian


@pytest.mark.parametrize("method,options", [("block", {"stop": "eigenvalue"}), ("thick", {"stop": "eigenvalue"}),
                                            ("lobpcg", {}), ("block", {})])
def test_network_hessian_warm_probe(mlp_problem, method, options):
    params, loss, _ = mlp_problem
    flat, unravel = ravel_pytree(params)
    dense = np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat))
    lam, vec = np.linalg.eigh((dense + dense.T) / 2)
    rng = np.random.default_rng(2)
    warm = vec[:, -1] + 0.1 * rng.standard_normal(flat.size) / np.sqrt(flat.size)
    res = hessian.eigsh(loss, params, 1, v0=jnp.asarray(warm), method=method, tol=1e-8, **options)
    assert bool(res.converged)
    error = abs(float(res.values[0]) - lam[-1])
    assert error <= 1e-8 * lam[-1] * (1 if options else 10)
    assert error <= float(res.error_bounds[0]) + 1e-12 * np.abs(lam).max()


# ------------------------------------------------------------------ bad options


@pytest.mark.parametrize("solver", [linalg.eigsh, linalg.thick_restart_eigsh, linalg.lobpcg])
def test_unknown_stop_rule_is_named(solver):
    with pytest.raises(ValueError, match=r"stop='value'.*\['residual', 'eigenvalue'\]"):
        solver(lambda x: x, jnp.ones(30), 1, stop="value")
    with pytest.raises(ValueError, match=r"stop=None"):
        solver(lambda x: x, jnp.ones(30), 1, stop=None)


def test_lobpcg_refuses_the_eigenvalue_rule():
    with pytest.raises(ValueError, match=r"stop='eigenvalue' is not available for lobpcg.*\['residual'\]"):
        linalg.lobpcg(lambda x: x, jnp.ones(30), 1, stop="eigenvalue")


def test_lobpcg_bad_options(mlp_problem):
    with pytest.raises(ValueError, match=r"k=11 must be an integer between 1 and n // 3 = 10"):
        linalg.lobpcg(lambda x: x, jnp.ones(30), 11)
    with pytest.raises(ValueError, match=r"max_iters=-1 must be an integer ≥ 0"):
        linalg.lobpcg(lambda x: x, jnp.ones(30), 1, max_iters=-1)
    with pytest.raises(ValueError, match=r"tol=-1.0 must be a finite number ≥ 0"):
        linalg.lobpcg(lambda x: x, jnp.ones(30), 1, tol=-1.0)
    params, loss, _ = mlp_problem
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"stop='eigenvalue' is not available for lobpcg"):
        hessian.eigsh(loss, params, 1, key=key, method="lobpcg", stop="eigenvalue")
    with pytest.raises(ValueError, match=r"max_iters=-2"):
        hessian.eigsh(loss, params, 1, key=key, method="lobpcg", max_iters=-2)
    with pytest.raises(TypeError, match=r"unknown lobpcg option\(s\) \['num_vectors'\]"):
        hessian.eigsh(loss, params, 1, key=key, method="lobpcg", num_vectors=5)
    with pytest.raises(ValueError, match=r"stop='both'.*\['residual', 'eigenvalue'\]"):
        hessian.eigsh(loss, params, 1, key=key, method="thick", stop="both")


# ------------------------------------------------------------------ a start from the probe history


def _drifting(kind, n=120, probes=8, angle=0.06, seed=3):
    """A drifting matrix sequence A_t = R_t A_0 R_tᵀ (fixed spectrum ``kind``, eigenvectors turned by
    ``exp(t·angle·S)`` for a fixed skew S of unit norm): what the Hessian does between probes of a
    GD run, smoothly. Returns the matrices and their dense float64 ``eigh``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a0 = (q * _spectrum(kind, n, rng)) @ q.T
    g = rng.standard_normal((n, n))
    skew = (g - g.T) / np.linalg.norm(g - g.T, 2)
    lam_s, vec_s = np.linalg.eig(skew)
    out = []
    for t in range(probes):
        rot = np.real((vec_s * np.exp(t * angle * lam_s)) @ np.linalg.inv(vec_s))
        a = rot @ a0 @ rot.T
        a = (a + a.T) / 2
        out.append((a, *np.linalg.eigh(a)))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_history_start_matches_dense_eigh_along_a_drifting_sequence(kind):
    """Every probe of the sequence, started from [v_k, v_{k−1}] (a zero column before there is a
    v_{k−1}), meets its residual tolerance and finds λ₁ of dense float64 ``eigh``."""
    sequence = _drifting(kind)
    v, prev = sequence[0][2][:, -1], np.zeros(sequence[0][0].shape[0])
    for a, lam, _ in sequence[1:]:
        res = linalg.history_eigsh(lambda x: jnp.asarray(a) @ x, jnp.asarray(np.stack([v, prev], 1)), 1,
                                   tol=1e-8)
        assert bool(res.converged), kind
        assert abs(float(res.values[0]) - lam[-1]) <= 1e-9 * np.abs(lam).max(), kind
        vec = np.asarray(res.vectors[:, 0])
        assert np.linalg.norm(a @ vec - float(res.values[0]) * vec) <= 1.01e-8 * abs(float(res.values[0]))
        v, prev = vec, v


def test_history_start_reuses_its_first_product():
    """``matvecs`` = p Rayleigh–Ritz products + the Lanczos steps from the top Ritz vector − 1 (its
    product is a combination of the p made): checked against thick restart from the same vector,
    built densely here; a zero column is left out of the Rayleigh–Ritz step but still counted."""
    (a0, _, vec0), (a, lam, _) = _drifting("hessian-like", probes=2, angle=0.2)
    rng = np.random.default_rng(4)
    history = np.stack([vec0[:, -1], vec0[:, -1] + 0.3 * rng.standard_normal(a.shape[0]) / np.sqrt(a.shape[0])], 1)
    matvec = lambda x: jnp.asarray(a) @ x
    res = linalg.history_eigsh(matvec, jnp.asarray(history), 1, tol=1e-8)
    q, _ = np.linalg.qr(history)
    theta, s = np.linalg.eigh(q.T @ a @ q)
    ref = linalg.thick_restart_eigsh(matvec, jnp.asarray(q @ s[:, -1]), 1, tol=1e-8)
    assert int(res.matvecs) == 2 + int(ref.matvecs) - 1
    assert abs(float(res.values[0]) - float(ref.values[0])) <= 1e-12 * lam[-1]
    alone = linalg.history_eigsh(matvec, jnp.asarray(np.stack([history[:, 0], 0 * history[:, 0]], 1)), 1, tol=1e-8)
    plain = linalg.thick_restart_eigsh(matvec, jnp.asarray(history[:, 0]), 1, tol=1e-8)
    assert int(alone.matvecs) == int(plain.matvecs) + 1
    assert abs(float(alone.values[0]) - float(plain.values[0])) <= 1e-12 * lam[-1]
    jitted = jax.jit(lambda h: linalg.history_eigsh(matvec, h, 1, tol=1e-8))(jnp.asarray(history))
    assert int(jitted.matvecs) == int(res.matvecs)


def test_history_start_is_cheaper_on_a_smooth_drift():
    """On a smooth drift the top Ritz vector of span{v_k, v_{k−1}} is an extrapolation with the
    step chosen by the current matrix, much closer to v₁ than v_k: fewer products in all, although
    each probe pays one more (measured on a GD run: ``benchmarks/README.md``)."""
    sequence = _drifting("decay", probes=10, angle=0.1)
    spent = {"history": 0, "previous": 0}
    v = {name: sequence[0][2][:, -1] for name in spent}
    prev = np.zeros_like(v["history"])
    for a, lam, _ in sequence[1:]:
        matvec = lambda x: jnp.asarray(a) @ x
        res = linalg.history_eigsh(matvec, jnp.asarray(np.stack([v["history"], prev], 1)), 1, tol=1e-6)
        plain = linalg.thick_restart_eigsh(matvec, jnp.asarray(v["previous"]), 1, tol=1e-6)
        for name, r in (("history", res), ("previous", plain)):
            assert abs(float(r.values[0]) - lam[-1]) <= 1e-9 * lam[-1]
            spent[name] += int(r.matvecs)
        prev = v["history"]
        v = {"history": np.asarray(res.vectors[:, 0]), "previous": np.asarray(plain.vectors[:, 0])}
    assert spent["history"] < spent["previous"], spent


def test_history_start_bad_arguments():
    with pytest.raises(ValueError, match=r"history must be an \(n, p\) block.*got shape \(30,\)"):
        linalg.history_eigsh(lambda x: x, jnp.ones(30), 1)
    with pytest.raises(ValueError, match=r"got shape \(3, 3\)"):
        linalg.history_eigsh(lambda x: x, jnp.ones((3, 3)), 1)
    with pytest.raises(TypeError, match=r"history must be a floating array"):
        linalg.history_eigsh(lambda x: x, jnp.ones((30, 2), int), 1)
    with pytest.raises(ValueError, match=r"stop='value'"):
        linalg.history_eigsh(lambda x: x, jnp.ones((30, 2)), 1, stop="value")
