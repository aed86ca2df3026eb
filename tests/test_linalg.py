"""Block Lanczos against numpy.linalg.eigh in float64 on small dense problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eoslib.engine import linalg
from spectra import matrix_with_spectrum



def op(A):
    A = jnp.asarray(A)
    return lambda v: A @ v


def check_top(A, k, **options):
    v0 = jnp.asarray(np.random.default_rng(1).normal(size=A.shape[0]))
    res = linalg.eigsh(op(A), v0, k, tol=1e-10, **options)
    ref_vals, ref_vecs = np.linalg.eigh(A)
    np.testing.assert_allclose(res.values, ref_vals[::-1][:k], rtol=1e-8, atol=1e-8 * np.abs(ref_vals).max())
    np.testing.assert_allclose(res.vectors.T @ res.vectors, np.eye(k), atol=1e-8)
    assert bool(res.converged)
    return res, ref_vecs[:, ::-1][:, :k]


@pytest.mark.parametrize("reortho", ["full", "mpk"])
@pytest.mark.parametrize("k", [1, 5])
def test_random_spectrum(k, reortho, rng):
    A = matrix_with_spectrum(np.concatenate([[9, 7, 6, 5.5, 5, 4.8], rng.uniform(-2, 2, 94)]))
    res, ref = check_top(A, k, reortho=reortho)
    for i in range(k):  # well-separated: each eigenvector individually
        assert float(linalg.abs_cosine(res.vectors[:, i], jnp.asarray(ref[:, i]))) == pytest.approx(1, abs=1e-8)


def test_clustered_spectrum():
    A = matrix_with_spectrum(np.concatenate([[10, 10 - 1e-4, 10 - 2e-4, 3], np.linspace(-1, 1, 96)]))
    check_top(A, 3)


def test_degenerate_spectrum_needs_and_gets_a_block():
    A = matrix_with_spectrum(np.concatenate([[10, 10, 10, 5], np.linspace(-1, 1, 96)]))
    res, ref = check_top(A, 4)  # block size defaults to k = 4 ≥ the multiplicity 3
    assert float(linalg.grassmann_distance(res.vectors, jnp.asarray(ref))) < 1e-6


def test_negative_dominant_spectrum_returns_largest_algebraic():
    A = matrix_with_spectrum(np.concatenate([[-100, -90, 3, 2, 1], np.linspace(-1, 0.5, 95)]))
    res, _ = check_top(A, 3)
    assert float(res.values[0]) == pytest.approx(3)


def test_rank_deficient_matrix():
    A = matrix_with_spectrum(np.concatenate([[5, 3], np.zeros(58)]))
    res, _ = check_top(A, 4)
    np.testing.assert_allclose(res.values, [5, 3, 0, 0], atol=1e-10)


def test_no_reorthogonalisation_loses_orthogonality_as_theory_says():
    """Paige: once a Ritz value converges, plain Lanczos vectors lose orthogonality (ghosts)."""
    A = matrix_with_spectrum(np.concatenate([[100.0, 50.0], np.linspace(0, 1, 198)]))
    v0 = jnp.asarray(np.random.default_rng(2).normal(size=200))
    loss = {}
    for mode in ("none", "mpk", "full"):
        Q = linalg.lanczos(80, reortho=mode)(op(A), v0).basis
        loss[mode] = float(jnp.max(jnp.abs(Q.T @ Q - jnp.eye(80))))
    assert loss["none"] > 1e-2
    assert loss["full"] < 1e-12 and loss["mpk"] < 1e-10
    # the tridiagonal of plain Lanczos then has a ghost copy of the top eigenvalue
    T = linalg.lanczos(80, reortho="none")(op(A), v0).tridiagonal
    assert np.sum(np.abs(np.linalg.eigvalsh(T) - 100) < 1e-6) >= 2


def test_lanczos_tridiagonal_is_the_projection():
    A = matrix_with_spectrum(np.linspace(-3, 3, 50))
    dec = linalg.lanczos(10)(op(A), jnp.ones(50))
    np.testing.assert_allclose(dec.basis.T @ A @ dec.basis, dec.tridiagonal, atol=1e-10)


def test_warm_start_beats_cold_start_on_a_drifting_matrix():
    rng = np.random.default_rng(5)
    A0 = matrix_with_spectrum(np.concatenate([[10, 6], rng.uniform(-2, 2, 198)]))
    E = rng.normal(size=(200, 200))
    E = (E + E.T) / np.linalg.norm(E + E.T, 2)
    solve = jax.jit(lambda A, v0: linalg.eigsh(op(A), v0, 1, tol=1e-6))
    cold, warm = [], []
    v = jnp.asarray(rng.normal(size=200))
    previous = solve(jnp.asarray(A0), v).vectors
    for t in range(1, 8):
        A = jnp.asarray(A0 + 0.01 * t * E)
        cold.append(int(solve(A, jnp.asarray(rng.normal(size=200))).matvecs))
        result = solve(A, previous)
        warm.append(int(result.matvecs))
        previous = result.vectors
        assert float(result.values[0]) == pytest.approx(np.linalg.eigvalsh(np.asarray(A))[-1], rel=1e-8)
    assert max(warm) < min(cold), (warm, cold)


def test_usable_inside_scan_with_warm_start():
    A = jnp.asarray(matrix_with_spectrum(np.linspace(-1, 4, 40)))

    def step(v, scale):
        res = linalg.eigsh(lambda x: scale * (A @ x), v, 1)
        return res.vectors, res.values[0]

    _, values = jax.lax.scan(step, jnp.ones((40, 1)), jnp.array([1.0, 1.1, 1.2]))
    np.testing.assert_allclose(values, [4.0, 4.4, 4.8], rtol=1e-6)


def test_float32():
    A = matrix_with_spectrum(np.concatenate([[9, 7], np.linspace(-2, 2, 98)])).astype(np.float32)
    res = linalg.eigsh(op(A), jnp.ones(100, jnp.float32), 2, tol=1e-5)
    assert res.values.dtype == jnp.float32
    np.testing.assert_allclose(res.values, [9, 7], rtol=1e-5)


def test_bad_input_names_the_argument():
    A = op(np.eye(5))
    with pytest.raises(ValueError, match="k=6 must be"):
        linalg.eigsh(A, jnp.ones(5), 6)
    with pytest.raises(ValueError, match="matvec must map an \\(5,\\) array"):
        linalg.eigsh(lambda v: v[:3], jnp.ones(5), 1)
    with pytest.raises(ValueError, match="reortho='twice'"):
        linalg.eigsh(A, jnp.ones(5), 1, reortho="twice")
    with pytest.raises(ValueError, match="v0 must have shape"):
        linalg.eigsh(A, jnp.ones((5, 1, 1)), 1)
    res = linalg.eigsh(A, jnp.full(5, jnp.nan), 1)  # non-finite start: NaN out, never a value
    assert np.isnan(res.values).all() and not bool(res.converged)


def test_top_eigenpairs_api_shapes():
    A = matrix_with_spectrum(np.linspace(-1, 1, 30))
    values, vectors = linalg.top_eigenpairs(op(A), jnp.ones(30), 3)
    assert values.shape == (3,) and vectors.shape == (30, 3)
    assert np.all(np.diff(np.asarray(values)) <= 0)


def test_subspace_measures():
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.normal(size=(20, 3)))
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    U, R = jnp.asarray(U), jnp.asarray(R)
    assert float(linalg.cosine_grassmann_similarity(U, U @ R)) == pytest.approx(1, abs=1e-7)
    W, _ = np.linalg.qr(np.asarray(np.eye(20)[:, :6]))
    angles = linalg.principal_angles(jnp.asarray(W[:, :3]), jnp.asarray(W[:, 3:]))
    np.testing.assert_allclose(angles, np.pi / 2, atol=1e-7)
    assert float(linalg.cosine_grassmann_similarity(jnp.asarray(W[:, :3]), jnp.asarray(W[:, 3:]))) == pytest.approx(0, abs=1e-7)
    u, v = jnp.asarray(rng.normal(size=20)), jnp.asarray(rng.normal(size=20))
    un, vn = u / jnp.linalg.norm(u), v / jnp.linalg.norm(v)
    assert float(linalg.cosine_grassmann_similarity(un[:, None], vn[:, None])) == pytest.approx(
        float(linalg.abs_cosine(u, -v)), rel=1e-10)


def test_unbatched_maps_over_the_batch_with_the_same_values(getkey):
    """Under vmap the factorisation runs one matrix at a time (a loop, no batched LAPACK call),
    giving what the batched call gives."""
    a = jax.random.normal(getkey(), (4, 30, 3))
    f = linalg.unbatched(lambda m: jnp.linalg.qr(m)[0])
    np.testing.assert_allclose(jax.vmap(f)(a), jax.vmap(lambda m: jnp.linalg.qr(m)[0])(a), atol=1e-12)
    np.testing.assert_allclose(jax.vmap(jax.vmap(f))(a[None]), jax.vmap(f)(a)[None], atol=1e-12)
    scaled = linalg.unbatched(lambda m, s: jnp.linalg.qr(s * m)[0])  # an argument left unbatched
    np.testing.assert_allclose(jax.vmap(scaled, in_axes=(0, None))(a, 2.0),
                               jax.vmap(lambda m: jnp.linalg.qr(2.0 * m)[0])(a), atol=1e-12)
    hlo = jax.jit(jax.vmap(f)).lower(a).as_text()
    assert "while" in hlo
    assert "while" not in jax.jit(jax.vmap(lambda m: jnp.linalg.qr(m)[0])).lower(a).as_text()


def test_unbatched_maps_only_on_cpu(getkey):
    """The one-at-a-time loop is CPU's alone: lowered for a GPU the batch is one batched kernel
    (no loop), lowered for a CPU it is a loop; nested vmaps likewise."""
    a = jax.random.normal(getkey(), (4, 30, 3))
    f = linalg.unbatched(lambda m: jnp.linalg.qr(m)[0])

    def lowered(fn, platform):
        return jax.export.export(jax.jit(fn), platforms=[platform])(a).mlir_module()

    try:
        cuda = lowered(jax.vmap(f), "cuda")
    except Exception as error:  # a jaxlib without the GPU lowering rules
        pytest.skip(f"cannot lower for cuda here: {error}")
    assert "stablehlo.while" not in cuda
    assert "stablehlo.while" in lowered(jax.vmap(f), "cpu")
    scaled = jax.vmap(linalg.unbatched(lambda m, s: jnp.linalg.qr(s * m)[0]), in_axes=(0, None))
    assert "stablehlo.while" not in lowered(lambda b: scaled(b, 2.0), "cuda")
    nested = lambda b: jax.vmap(jax.vmap(f))(b[None])
    assert "stablehlo.while" not in lowered(nested, "cuda")
    assert lowered(nested, "cpu").count("stablehlo.while") == 2  # one loop per vmap level


def test_integer_arguments_accept_numpy_integers():
    A = matrix_with_spectrum(np.linspace(-1, 5, 40))
    v0 = jnp.asarray(np.random.default_rng(1).normal(size=40))
    res = linalg.eigsh(op(A), v0, np.int64(2), block_size=np.int32(3), num_iters=np.int64(8),
                       max_restarts=np.int64(20), tol=1e-10)
    np.testing.assert_allclose(res.values, np.linalg.eigvalsh(A)[::-1][:2], rtol=1e-8)
    assert res.vectors.shape == (40, 2)
    assert linalg.lanczos(np.int64(5))(op(A), v0).basis.shape == (40, 5)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(k=2.0), TypeError, r"k=2.0 must be an integer between 1 and the dimension n=5"),
    (dict(k=True), TypeError, r"k=True must be an integer between 1 and the dimension n=5"),
    (dict(k=0), ValueError, r"k=0 must be an integer between 1 and the dimension n=5"),
    (dict(k=2, block_size=1), ValueError, r"block_size=1 is smaller than k=2"),
    (dict(k=2, block_size=6), ValueError, r"block_size=6 must be an integer between 1 and n=5"),
    (dict(k=1, block_size=1.0), TypeError, r"block_size=1.0 must be an integer"),
    (dict(k=1, num_iters=0), ValueError, r"num_iters=0 must be None or an integer ≥ 1"),
    (dict(k=1, num_iters=2.5), TypeError, r"num_iters=2.5 must be None or an integer ≥ 1"),
    (dict(k=1, max_restarts=-1), ValueError, r"max_restarts=-1 must be an integer ≥ 0"),
    (dict(k=1, max_restarts="3"), TypeError, r"max_restarts='3' must be an integer ≥ 0"),
    (dict(k=1, tol=-1e-3), ValueError, r"tol=-0.001 must be a finite number ≥ 0"),
])
def test_bad_options_are_named_with_their_value_and_what_is_allowed(kwargs, error, message):
    with pytest.raises(error, match=message):
        linalg.eigsh(op(np.eye(5)), jnp.ones(5), **kwargs)


def test_bad_start_vectors_are_named():
    A = op(np.eye(5))
    with pytest.raises(TypeError, match="v0 has dtype int"):
        linalg.eigsh(A, jnp.ones(5, int), 1)
    with pytest.raises(ValueError, match=r"v0 has shape \(5, 6\): a start block \(n, b\) must have 1 ≤ b ≤ n"):
        linalg.eigsh(A, jnp.ones((5, 6)), 1)
    with pytest.raises(ValueError, match="num_iters=0"):
        linalg.lanczos(0)
    with pytest.raises(TypeError, match="num_iters=2.5"):
        linalg.lanczos(2.5)
    with pytest.raises(ValueError, match="v0 must have shape"):
        linalg.lanczos(3)(A, jnp.ones((5, 1, 1)))


def test_operator_eigsh_checks_everything_before_building_the_operator():
    """A bad argument is reported by eoslib, naming it, and the operator is never built."""
    built = []

    def make_matvec():
        built.append(True)
        return lambda v: 2.0 * v

    like = jnp.ones(5)
    cases = [
        (dict(k=1, v0=jnp.ones(4)), ValueError, r"v0 has shape \(4,\), but the operator has dimension n=5"),
        (dict(k=1, v0=jnp.ones((6, 2))), ValueError, r"v0 has shape \(6, 2\), but the operator has dimension n=5"),
        (dict(k=np.int64(6), key=jax.random.key(0)), ValueError, r"k=np.int64\(6\) must be an integer between 1"),
        (dict(k=3, v0=jnp.ones(5), block_size=2), ValueError, r"block_size=2 is smaller than k=3"),
        (dict(k=1, v0=jnp.ones(5), tolerance=1e-3), TypeError, r"unknown eigsh option\(s\) \['tolerance'\]"),
        (dict(k=1, v0=jnp.ones(5), reortho="twice"), ValueError, r"reortho='twice'"),
        (dict(k=1), ValueError, "give key="),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            linalg.operator_eigsh(make_matvec, like, **kwargs)
    with pytest.raises(ValueError, match=r"like must be a flat \(n,\) array"):
        linalg.operator_eigsh(make_matvec, jnp.ones((5, 1)), 1, key=jax.random.key(0))
    assert not built
    res = linalg.operator_eigsh(make_matvec, like, np.int64(2), v0=jnp.ones(5), block_size=np.int64(2))
    np.testing.assert_allclose(res.values, [2.0, 2.0])


def test_eigsh_of_an_operator_too_small_for_two_blocks_is_exact():
    """n = 3 with a block of 2: a Krylov basis of one block cannot grow (it stayed in the start
    block's span and returned 0.00297 for an eigenvalue of 0.3), so the operator is solved densely."""
    A = np.diag([3.0, 0.3, -1e-6]) + 1e-3 * np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    matvec = lambda v: jnp.asarray(A, v.dtype) @ v
    v0 = jnp.array([[1.0, 0.0], [0.1, 1.0], [0.0, 0.1]], dtype=jnp.float32)
    got = linalg.eigsh(matvec, v0, 2)
    want = np.sort(np.linalg.eigvalsh(A))[::-1][:2]
    np.testing.assert_allclose(np.asarray(got.values), want, rtol=1e-5)
    assert bool(got.converged) and np.all(np.asarray(got.residuals) < 1e-5)
    V = np.asarray(got.vectors)
    np.testing.assert_allclose(V.T @ V, np.eye(2), atol=1e-5)
    bad = linalg.eigsh(matvec, v0.at[0, 0].set(jnp.nan), 2)
    assert np.all(np.isnan(np.asarray(bad.values))) and not bool(bad.converged)
