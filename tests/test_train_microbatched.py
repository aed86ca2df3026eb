"""``train.microbatched``: the full-batch objective as a mean over micro-batches equals the
unchunked one (loss, aux, gradient, Hessian-vector product) for GhostBatchNorm models when the
micro-batch is a multiple of the ghost size, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eoslib.engine import hessian, models, train


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _data(n):
    kx, ky = jax.random.split(jax.random.key(3))
    x = jax.random.normal(kx, (n, 8, 8, 3), jnp.float64)
    y = jax.nn.one_hot(jax.random.randint(ky, (n,), 0, 10), 10, dtype=jnp.float64)
    return x, y


def _model(name):
    key = jax.random.key(0)
    if name == "vgg":
        m = models.VGG(((4, 4), (6,)), ghost_size=4, key=key)
    elif name == "vgg-dense":  # VGG10's head: flatten -> dense -> GhostBN -> ReLU -> dense
        m = models.VGG(((4, 4), (6,)), ghost_size=4, hidden=5, image_size=8, key=key)
    else:
        m = models.ResNet(1, ghost_size=4, key=key)
    return jax.tree.map(lambda a: a.astype(jnp.float64) if isinstance(a, jax.Array) else a, m)


@pytest.mark.parametrize("name,n", [("vgg", 24), ("vgg", 26), ("vgg-dense", 26), ("resnet", 24)])
# n = 26: a remainder of 2 after three chunks of 8
def test_chunks_of_a_multiple_of_the_ghost_size_give_the_unchunked_objective(name, n):
    params = _model(name)
    x, y = _data(n)
    whole = train.supervised("cross_entropy")
    chunked = train.microbatched(whole, 8)
    hp = {"gamma": jnp.asarray(1e-3, jnp.float64)}
    (l0, a0), g0 = jax.value_and_grad(whole, has_aux=True)(params, x, y, hp)
    (l1, a1), g1 = jax.value_and_grad(chunked, has_aux=True)(params, x, y, hp)
    np.testing.assert_allclose(l1, l0, rtol=1e-12)
    # accuracy is a float32 mean of booleans even under x64 (JAX's mean of bool), so the
    # size-weighted mean of the chunks' values agrees to float32 rounding, not to 1e-12
    np.testing.assert_allclose(a1["accuracy"], a0["accuracy"], rtol=1e-6)
    for u, v in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)
    t = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape), params)
    h0 = hessian.hvp(lambda p: whole(p, x, y, hp)[0], params, t)
    h1 = hessian.hvp(lambda p: chunked(p, x, y, hp)[0], params, t)
    for u, v in zip(jax.tree.leaves(h1), jax.tree.leaves(h0)):
        np.testing.assert_allclose(u, v, rtol=1e-8, atol=1e-10)


def test_chunks_that_cut_ghost_batches_apart_or_bad_sizes_raise_naming_microbatch():
    params = _model("vgg")
    x, y = _data(24)
    with pytest.raises(ValueError, match=r"microbatch=6 .*ghost_size \[4\]"):
        train.microbatched(train.supervised("cross_entropy"), 6)(params, x, y, {})
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ValueError, match="microbatch="):
            train.microbatched(train.supervised("cross_entropy"), bad)
    assert train.microbatched(whole := train.supervised(), None) is whole


def test_a_set_smaller_than_a_microbatch_is_one_piece():
    params = _model("vgg")
    x, y = _data(6)
    whole = train.supervised("cross_entropy")
    np.testing.assert_allclose(train.microbatched(whole, 8)(params, x, y, {})[0],
                               whole(params, x, y, {})[0], rtol=1e-12)
