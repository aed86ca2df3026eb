"""The loss lookup the probes share: a clear error for a bad name, the model's loss on data."""

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
