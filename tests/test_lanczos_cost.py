"""What block Lanczos costs under ``vmap``, with its values unchanged: a rare branch (breakdown
replacements, MPK's second pass) runs only when some member takes it
(:func:`eoslib.engine.linalg.member_cond`), and a sweep's eigensolves run one member at a time on
a CPU (:func:`eoslib.engine.linalg.one_member_at_a_time`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eoslib.engine import linalg
from spectra import matrix_with_spectrum



def _branches():
    def true_fn(x, k):
        return 2 * x + jax.random.normal(k, x.shape, x.dtype)

    def false_fn(x, k):
        return x - 1

    return true_fn, false_fn


@pytest.mark.parametrize("preds", [[False, False, False], [False, True, False], [True, True, True]])
def test_member_cond_has_the_values_of_lax_cond(preds):
    true_fn, false_fn = _branches()
    x, key = jnp.arange(6.0).reshape(3, 2), jax.random.key(0)
    p = jnp.asarray(preds)
    got = jax.jit(jax.vmap(lambda p, x: linalg.member_cond(p, true_fn, false_fn, x, key)))(p, x)
    want = jax.vmap(lambda p, x: jax.lax.cond(p, true_fn, false_fn, x, key))(p, x)
    np.testing.assert_array_equal(got, want)
    # unbatched predicate with batched operands, no vmap, nested vmap
    for pred in (False, True):
        got = jax.vmap(lambda x: linalg.member_cond(jnp.asarray(pred), true_fn, false_fn, x, key))(x)
        want = jax.vmap(lambda x: jax.lax.cond(pred, true_fn, false_fn, x, key))(x)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(linalg.member_cond(jnp.asarray(pred), true_fn, false_fn, x[0], key),
                                      jax.lax.cond(pred, true_fn, false_fn, x[0], key))
    nested = jax.vmap(jax.vmap(lambda p, x: linalg.member_cond(p, true_fn, false_fn, x, key)))
    want = jax.vmap(jax.vmap(lambda p, x: jax.lax.cond(p, true_fn, false_fn, x, key)))(p[None], x[None])
    np.testing.assert_array_equal(nested(p[None], x[None]), want)
    assert want.shape == (1, 3, 2)


def test_member_cond_runs_the_branch_only_when_a_member_takes_it():
    calls = []

    def true_fn(x):
        jax.debug.callback(lambda: calls.append(1))
        return x + 1

    f = jax.jit(jax.vmap(lambda p, x: linalg.member_cond(p, true_fn, lambda x: x, x)))
    x = jnp.zeros((4, 2))
    jax.block_until_ready(f(jnp.zeros(4, bool), x))
    jax.effects_barrier()
    assert calls == []  # lax.cond under vmap would have run true_fn here
    out = jax.block_until_ready(f(jnp.array([False, True, False, False]), x))
    jax.effects_barrier()
    assert calls and np.array_equal(np.asarray(out[:, 0]), [0, 1, 0, 0])


@pytest.mark.parametrize("reortho", ["full", "mpk"])
def test_vmapped_eigsh_is_each_member_alone(reortho):
    """Members with different fills, restarts and a breakdown (a rank-deficient member, whose
    Krylov space is exhausted after two steps) give what each gives alone."""
    mats = np.stack([matrix_with_spectrum(np.concatenate([[9, 7, 6], np.linspace(-2, 2, 57)]), 0),
                     matrix_with_spectrum(np.concatenate([[5, 3], np.zeros(58)]), 1),
                     matrix_with_spectrum(np.concatenate([[10, 10 - 1e-3, 4], np.linspace(-1, 1, 57)]), 2)])
    v0 = jnp.asarray(np.random.default_rng(3).normal(size=60))

    def solve(A):
        return linalg.eigsh(lambda v: A @ v, v0, 2, tol=1e-10, reortho=reortho, num_iters=12)

    batched = jax.jit(jax.vmap(solve))(jnp.asarray(mats))
    for i, A in enumerate(mats):
        alone = solve(jnp.asarray(A))
        np.testing.assert_allclose(batched.values[i], alone.values, rtol=1e-12, atol=1e-12)
        assert int(batched.matvecs[i]) == int(alone.matvecs)
        ref = np.linalg.eigvalsh(A)[::-1][:2]
        np.testing.assert_allclose(alone.values, ref, rtol=1e-8, atol=1e-8)


def test_one_member_at_a_time_has_vmaps_values(getkey):
    """Pytree arguments, some batched and some shared, nested vmap: the values of ``vmap(fn)``;
    on a CPU the members run in a loop (``lax.map``), not as one batched while loop."""
    A = jax.random.normal(getkey(), (3, 20, 20))
    A = A + jnp.swapaxes(A, 1, 2)
    v0 = jax.random.normal(getkey(), (20,))
    shift = jnp.asarray(0.5)

    def fn(mats, v, s):
        return linalg.eigsh(lambda u: mats["a"] @ u + s * u, v, 2, tol=1e-10)

    wrapped = linalg.one_member_at_a_time(fn)
    got = jax.jit(jax.vmap(wrapped, in_axes=({"a": 0}, None, None)))({"a": A}, v0, shift)
    want = jax.vmap(fn, in_axes=({"a": 0}, None, None))({"a": A}, v0, shift)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-10)
    np.testing.assert_array_equal(got.matvecs, want.matvecs)
    nested = jax.vmap(jax.vmap(wrapped, in_axes=({"a": 0}, None, None)), in_axes=({"a": 0}, None, None))
    np.testing.assert_allclose(nested({"a": A[None]}, v0, shift).values, want.values[None], rtol=1e-10)
    for i in range(3):  # each member is the function alone
        np.testing.assert_allclose(got.values[i], fn({"a": A[i]}, v0, shift).values, rtol=1e-12)
    hlo = jax.jit(jax.vmap(wrapped, in_axes=({"a": 0}, None, None))).lower({"a": A}, v0, shift).as_text()
    assert hlo.count("stablehlo.while") >= 2  # the loop over members around the solver's own


def test_a_sweeps_probes_are_each_single_runs_probes(getkey):
    """The loop's eigensolve runs member by member on a CPU: a sweep member's probe record is
    the single run's (warm starts, counts and values)."""
    import optax

    from eoslib.engine import models, train

    model = models.MLP(5, (7,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 2))
    cfg = train.TrainConfig(steps=12, probe_every=3, top_k=2, chunks=2)
    opt = lambda hp: optax.sgd(hp["eta"])
    etas = [0.05, 0.4]
    swept = train.run(train.supervised("half_mse"), opt, model, (x, y), cfg, key=jax.random.key(2),
                      hparams={"eta": np.asarray(etas)}, progress=False)
    for i, eta in enumerate(etas):
        alone = train.run(train.supervised("half_mse"), opt, model, (x, y), cfg,
                          key=jax.random.key(2), hparams={"eta": eta}, progress=False)
        np.testing.assert_array_equal(swept.history.matvecs[i], alone.history.matvecs)
        np.testing.assert_allclose(swept.history.top_eigenvalues[i], alone.history.top_eigenvalues,
                                   rtol=1e-12)
        np.testing.assert_allclose(swept.history.loss[i], alone.history.loss, rtol=1e-12)
