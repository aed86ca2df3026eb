"""Losses against closed forms, their shape errors, and the loss lookup the probes share."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eoslib.engine import losses, models


def test_get_names_the_allowed_losses():
    assert losses.get("half_mse") is losses.half_mse
    with pytest.raises(ValueError, match=r"model_loss='mae' is not one of \['cross_entropy', 'half_mse'\]"):
        losses.get("mae")
    with pytest.raises(ValueError, match="model_loss='mae'"):
        losses.of_model("mae")  # checked when the probe is built, not when it runs


def test_of_model_is_the_loss_of_the_model_outputs(getkey):
    x = jax.random.normal(getkey(), (5, 3))
    y = jax.nn.one_hot(jnp.arange(5) % 2, 2)
    net = models.MLP(3, (4,), 2, "tanh", key=getkey())
    np.testing.assert_allclose(losses.of_model("cross_entropy")(x, y)(net), losses.cross_entropy(net(x), y))


def test_half_mse_closed_forms():
    f = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    # ½ · mean(1² + 2², 3² + 4²) = ½ · (5 + 25) / 2
    assert float(losses.half_mse(f, jnp.zeros((2, 2)))) == 7.5
    assert float(losses.half_mse(f, f)) == 0.0
    # the Hessian in the outputs is I / N: ½ per output, averaged over N examples
    H = jax.hessian(lambda o: losses.half_mse(o, jnp.zeros((2, 2))))(f).reshape(4, 4)
    np.testing.assert_array_equal(H, np.eye(4) / 2)
    # the issue-15 case, shaped right: outputs (4, 1) against targets (4, 1) gives 0.5
    assert float(losses.half_mse(jnp.ones((4, 1)), jnp.zeros((4, 1)))) == 0.5


def test_cross_entropy_closed_forms():
    K = 7
    y = jax.nn.one_hot(jnp.arange(5) % K, K)
    for c in (0.0, 3.5):  # uniform logits: −log(1/K), whatever the constant
        np.testing.assert_allclose(losses.cross_entropy(jnp.full((5, K), c), y), np.log(K), rtol=1e-15)
    # logits (0, log 3): softmax = (1/4, 3/4)
    logits = jnp.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]])
    np.testing.assert_allclose(losses.cross_entropy(logits, jnp.array([[0.0, 1.0], [1.0, 0.0]])),
                               (np.log(4 / 3) + np.log(4)) / 2, rtol=1e-15)


def test_accuracy_of_a_known_case():
    outputs = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    targets = jax.nn.one_hot(jnp.array([1, 0, 0, 1]), 2)
    assert float(losses.accuracy(outputs, targets)) == 0.5
    assert float(losses.accuracy(outputs, jax.nn.one_hot(jnp.argmax(outputs, -1), 2))) == 1.0


def test_sign_accuracy_reads_a_one_output_net():
    """arg-max accuracy of one output is always 1 (the issue-32 defect); the sign accuracy is not."""
    outputs = jnp.array([[0.3], [-0.2], [0.5], [0.0], [-1.0]])
    targets = jnp.array([[1.0], [1.0], [-1.0], [1.0], [-1.0]])
    assert float(losses.accuracy(outputs, targets)) == 1.0
    # right: rows 0 and 4; wrong: 1, 2 (opposite signs) and 3 (an output of exactly 0)
    np.testing.assert_allclose(losses.sign_accuracy(outputs, targets), 0.4, rtol=1e-6)
    assert float(jax.jit(losses.sign_accuracy)(targets, targets)) == 1.0
    with pytest.raises(ValueError, match=r"sign_accuracy: a one-output net's \(N, 1\) arrays"):
        losses.sign_accuracy(jnp.ones((3, 2)), jnp.ones((3, 2)))


def test_supervised_objective_reports_the_accuracy_it_is_asked_for(getkey):
    from eoslib.engine import train

    x = jax.random.normal(getkey(), (6, 3))
    net = models.MLP(3, (4,), 1, "tanh", key=getkey())
    y = jnp.sign(net(x))  # the net's own signs: sign accuracy 1
    y = y.at[0].multiply(-1.0)  # ... but one of six
    _, aux = train.supervised("half_mse", accuracy="sign")(net, x, y, {})
    np.testing.assert_allclose(aux["accuracy"], 5 / 6)
    assert float(train.supervised("half_mse")(net, x, y, {})[1]["accuracy"]) == 1.0
    with pytest.raises(ValueError, match=r"accuracy='top5' is not one of \['argmax', 'sign'\]"):
        train.supervised("half_mse", accuracy="top5")


@pytest.mark.parametrize("fn", [losses.half_mse, losses.cross_entropy, losses.accuracy,
                                losses.sign_accuracy])
def test_mismatched_shapes_are_an_error_even_under_jit(fn):
    """(4, 1) against (4,) used to broadcast to (4, 4): half_mse gave 2.0 instead of 0.5."""
    name = fn.__name__
    message = rf"{name}: outputs and targets must have the same shape \(N, K\); got outputs of shape \(4, 1\) and targets of shape \(4,\)"
    with pytest.raises(ValueError, match=message):
        fn(jnp.ones((4, 1)), jnp.zeros(4))
    with pytest.raises(ValueError, match=message):
        jax.jit(fn)(jnp.ones((4, 1)), jnp.zeros(4))
    with pytest.raises(ValueError, match=rf"{name}: outputs and targets must be \(N, K\) arrays .* got shape \(4,\)"):
        fn(jnp.ones(4), jnp.zeros(4))


def test_with_l2_adds_half_gamma_squared_norm():
    params = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([[3.0]])}
    assert float(losses.squared_norm(params)) == 14.0
    regularised = losses.with_l2(lambda p, s: s * jnp.sum(p["a"]), 0.5)
    assert float(regularised(params, 2.0)) == 6.0 + 0.25 * 14.0
