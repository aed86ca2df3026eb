"""Thick-restart (Krylov–Schur) Lanczos against dense float64 eigh and against ARPACK's HVP count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.linalg as sla

from eoslib.engine import linalg


def _spectrum(kind, n, rng):
    if kind == "decay":
        return 100 * 0.97 ** np.arange(n)
    if kind == "cluster":  # three eigenvalues within 0.2% of each other at the top
        return np.concatenate([[10, 9.99, 9.98, 9.5], rng.uniform(-1, 5, n - 4)])
    if kind == "negative-dominant":  # the largest |λ| are negative; the wanted ones are algebraic
        return np.concatenate([[-50, -40], [3, 2.9, 2.5], rng.uniform(-1, 2, n - 5)])
    if kind == "hessian-like":  # a few outliers over a bulk near 0, as a network Hessian
        return np.concatenate([100 / (1 + np.arange(20)) ** 1.2, rng.normal(0, 0.05, n - 20)])
    raise ValueError(kind)


KINDS = ["decay", "cluster", "negative-dominant", "hessian-like"]


@pytest.fixture(scope="module")
def problems():
    rng = np.random.default_rng(0)
    out = {}
    for kind in KINDS:
        n = 300
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        a = (q * _spectrum(kind, n, rng)) @ q.T
        out[kind] = (a, rng.standard_normal(n))
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 10])
def test_matches_dense_eigh_and_needs_no_more_hvps_than_arpack(problems, kind, k):
    a, v0 = problems[kind]
    dense = np.linalg.eigh(a)
    res = linalg.thick_restart_eigsh(lambda x: jnp.asarray(a) @ x, jnp.asarray(v0), k, tol=1e-8,
                                     max_restarts=200)
    assert bool(res.converged)
    np.testing.assert_allclose(np.asarray(res.values), dense[0][::-1][:k], rtol=0, atol=1e-9 * np.abs(dense[0]).max())
    overlap = np.abs(np.asarray(res.vectors).T @ dense[1][:, ::-1][:, :k])
    if kind != "cluster":  # well-separated eigenvalues: each vector is the dense one (up to sign)
        np.testing.assert_allclose(np.diag(overlap), 1.0, atol=1e-6)
    else:  # the span of the top-k vectors is the dense span
        np.testing.assert_allclose(np.linalg.svd(overlap, compute_uv=False), 1.0, atol=1e-6)
    count = [0]

    def matvec(x):
        count[0] += 1
        return a @ x

    sla.eigsh(sla.LinearOperator(a.shape, matvec=matvec, dtype=np.float64), k=k, which="LA", tol=1e-8, v0=v0)
    # same tolerance: no more operator applications than ARPACK, with 25% slack for the slightly
    # different stopping rules (ARPACK: tol·|θ_i| per pair; here: tol·max|θ|)
    assert int(res.matvecs) <= 1.25 * count[0], (int(res.matvecs), count[0])


def test_warm_start_from_an_eigenvector_stops_at_once(problems):
    a, _ = problems["decay"]
    top = np.linalg.eigh(a)[1][:, -1]
    res = linalg.thick_restart_eigsh(lambda x: jnp.asarray(a) @ x, jnp.asarray(top), 1, tol=1e-6)
    assert bool(res.converged) and int(res.matvecs) <= 2


def test_under_vmap_equals_single_runs(problems):
    a, v0 = problems["hessian-like"]
    starts = jnp.stack([jnp.asarray(v0), jnp.asarray(v0[::-1])])
    run = lambda v: linalg.thick_restart_eigsh(lambda x: jnp.asarray(a) @ x, v, 3, tol=1e-8)
    batched = jax.vmap(run)(starts)
    for i in range(2):
        single = run(starts[i])
        np.testing.assert_allclose(batched.values[i], single.values, rtol=1e-10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=0), "k=0"), (dict(k=2, num_vectors=2), "num_vectors=2 must exceed k=2"),
    (dict(k=2, keep=1), "keep=1"), (dict(k=np.int64(2)), None),
])
def test_arguments_are_checked(kwargs, match):
    a = jnp.diag(jnp.arange(30.0))
    v0 = jnp.ones(30)
    if match is None:
        assert linalg.thick_restart_eigsh(lambda x: a @ x, v0, **kwargs).values.shape == (2,)
    else:
        with pytest.raises(ValueError, match=match):
            linalg.thick_restart_eigsh(lambda x: a @ x, v0, **kwargs)
    with pytest.raises(ValueError, match="one start vector"):
        linalg.thick_restart_eigsh(lambda x: a @ x, jnp.ones((30, 2)), 1)


def test_non_finite_start_gives_nan_not_a_value():
    a = jnp.diag(jnp.arange(30.0))
    res = linalg.thick_restart_eigsh(lambda x: a @ x, jnp.full(30, jnp.nan), 1)
    assert not bool(res.converged) and bool(jnp.all(jnp.isnan(res.values)))


def test_hessian_eigsh_method_thick_matches_dense_hessian(mlp_problem, getkey):
    """The network-Hessian entry point: hessian.eigsh(..., method="thick") on a small tanh MLP."""
    from jax.flatten_util import ravel_pytree

    from eoslib.engine import hessian

    params, loss, _ = mlp_problem
    flat, unravel = ravel_pytree(params)
    dense = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat)))[::-1]
    res = hessian.eigsh(loss, params, 4, key=getkey(), method="thick", tol=1e-9, max_restarts=100)
    assert bool(res.converged)
    np.testing.assert_allclose(np.asarray(res.values), dense[:4], rtol=1e-7, atol=1e-9)
    with pytest.raises(TypeError, match=r"unknown thick_restart_eigsh option\(s\) \[.block_size.\]"):
        hessian.eigsh(loss, params, 1, key=getkey(), method="thick", block_size=2)
    with pytest.raises(ValueError, match="method='nope'"):
        hessian.eigsh(loss, params, 1, key=getkey(), method="nope")
