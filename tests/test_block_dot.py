"""Products over the long axis n are accurate in float32 whatever the block width.

On XLA CPU, inside ``jit``, a float32 ``dot`` contracting the long leading axis of two (n, 2) or
(n, 3) blocks lost accuracy linearly in n (1.4e-5 relative at n = 1e5, 3e-4 at n = 656,810; ~1e-7
with 1, 4 or 10 columns): block Lanczos with b = 2 or 3 carried that error into its eigenvalues.
``linalg._inner`` (column-wise reductions) is the one contraction over n the solvers use
(``benchmarks/check_block_dot.py``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eoslib.engine import linalg

N = 100_000  # the smallest of 1e4, 1e5, 6.6e5 where the dot's error (1.4e-5) stands well clear of rounding


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_inner_matches_float64_for_every_block_width(p):
    rng = np.random.default_rng(p)
    a = rng.standard_normal((N, p))
    a /= np.linalg.norm(a, axis=0)
    a32 = jnp.asarray(a, jnp.float32)
    got = jax.jit(lambda a: linalg._inner(a, a, "highest"))(a32)
    np.testing.assert_allclose(np.asarray(got, np.float64), a.T @ a, rtol=0, atol=1e-6)


@pytest.mark.parametrize("b", [2, 3])
def test_block_lanczos_float32_eigenvalues_are_accurate_with_block_size_2_and_3(b):
    top = np.array([2.0, 1.8, 1.6])
    d = np.linspace(0.0, 1.0, N)
    d[:3] = top
    d = jnp.asarray(d, jnp.float32)
    v0 = jax.random.normal(jax.random.key(0), (N, b), jnp.float32)
    res = jax.jit(lambda v0: linalg.eigsh(lambda v: d * v, v0, b, tol=1e-6))(v0)
    assert bool(res.converged)
    # with the dot the top values came out 5e-5 off; float32 Lanczos on this spectrum is good to
    # ~3e-6 with any block size (b = 1 included), hence 1e-5
    np.testing.assert_allclose(np.asarray(res.values, np.float64), top[:b], rtol=1e-5)
