"""Architectures: sizes, initialisation conventions, GhostBatchNorm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eoslib.engine import models


def n_params(model):
    return sum(p.size for p in jax.tree.leaves(model))


def test_fc_tanh_matches_cohen_et_al(getkey):
    model = models.fc_tanh(key=getkey())
    assert n_params(model) == 3072 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10
    # PyTorch-default init: uniform in ±1/√fan_in for weights and biases
    W = np.asarray(model.layers[0].weight)
    assert np.abs(W).max() <= 1 / np.sqrt(3072) and np.abs(W).max() > 0.9 / np.sqrt(3072)
    assert model(jnp.ones((3, 32, 32, 3))).shape == (3, 10)


def test_cnn_shapes(getkey):
    model = models.CNN(activation="tanh", key=getkey())
    assert model(jnp.ones((2, 32, 32, 3))).shape == (2, 10)
    assert n_params(model) == (3 * 9 * 32 + 32) + (32 * 9 * 32 + 32) + (2048 * 10 + 10)


def test_ghost_batch_norm_normalises_each_ghost_batch_separately(getkey):
    bn = models.GhostBatchNorm(3, ghost_size=4)
    x = jnp.concatenate([jax.random.normal(getkey(), (4, 5, 5, 3)) * 3 + 1,
                         jax.random.normal(getkey(), (2, 5, 5, 3)) * 0.1 - 7])
    y = bn(x)
    for part in (y[:4], y[4:]):
        np.testing.assert_allclose(part.mean(axis=(0, 1, 2)), 0, atol=1e-5)
        np.testing.assert_allclose(part.std(axis=(0, 1, 2)), 1, atol=1e-3)


def test_vgg_and_two_layer_relu_and_dln(getkey):
    vgg = models.VGG(blocks=((8, 8), (16, 16)), ghost_size=2, key=getkey())
    assert vgg(jax.random.normal(getkey(), (3, 32, 32, 3))).shape == (3, 10)
    net = models.TwoLayerReLU(6, 5, init_scale=0.01, key=getkey())
    np.testing.assert_allclose(np.linalg.norm(net.w, axis=1), 0.01, rtol=1e-6)
    np.testing.assert_allclose(np.abs(net.a), 0.01, rtol=1e-6)  # balanced: ‖w_j‖ = |a_j| = λ
    dln = models.DiagonalLinearNetwork(4, depth=3, init=0.5)
    x = jnp.arange(8.0).reshape(2, 4)
    np.testing.assert_allclose(dln(x)[:, 0], x.sum(1) * 0.125)


def test_bad_activation_is_named(getkey):
    with pytest.raises(ValueError, match="activation='swish'"):
        models.MLP(3, (4,), 2, "swish", key=getkey())


def test_max_pool_matches_equinox():
    import equinox as eqx
    import jax
    import numpy as np

    from eoslib.engine.models import max_pool_2x2

    img = jax.random.normal(jax.random.key(0), (3, 8, 6))
    np.testing.assert_array_equal(max_pool_2x2(img, channel_axis=0), eqx.nn.MaxPool2d(2, 2)(img))
    np.testing.assert_array_equal(max_pool_2x2(img.transpose(1, 2, 0), channel_axis=-1),
                                  eqx.nn.MaxPool2d(2, 2)(img).transpose(1, 2, 0))


def test_by_name_builds_the_registered_architectures(getkey):
    key = getkey()
    same = models.by_name("fc-relu", key=key)
    reference = models.fc_tanh(key=key, activation="relu")
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(reference)))
    assert same.activation == "relu"
    narrow = models.by_name("fc-tanh", key=key, width=16)
    assert n_params(narrow) == 3072 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    cnn = models.by_name("cnn-tanh", key=key, channels=(4, 4))
    assert cnn.activation == "tanh" and cnn(jnp.ones((2, 32, 32, 3))).shape == (2, 10)
    assert {"fc-tanh", "fc-relu", "fc-elu", "cnn-relu", "cnn-tanh"} <= set(models.NAMES)
    assert "width" in models.options("fc-elu") and "activation" not in models.options("fc-elu")
    assert "width" not in models.options("cnn-relu")
    assert "fmnist-mlp" in models.NAMES and "fmnist-mlp" not in models.names("cifar10")
    assert models.by_name("fmnist-mlp", key=key, width=8)(jnp.ones((2, 28, 28, 1))).shape == (2, 4)


def test_by_name_errors_list_what_is_allowed(getkey):
    with pytest.raises(ValueError, match=r"arch='resnet' is not a known architecture; known: \['fc-tanh'"):
        models.by_name("resnet", key=getkey())
    with pytest.raises(ValueError, match=r"'cnn-relu' takes no option \['width'\]; its options are \['in_channels'"):
        models.by_name("cnn-relu", key=getkey(), width=8)
