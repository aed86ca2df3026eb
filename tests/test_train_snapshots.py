"""train.run(..., TrainConfig(keep_states=True)) and train.at_probe: branching a run off any
probe step gives exactly what driving the run to that step and resuming gives."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eoslib.engine import models, train


def _problem(getkey):
    model = models.MLP(5, (8,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 2))
    return model, x, y


def _run(params, data, steps, *, keep=False, resume=None, hparams=None, eta=0.05):
    config = train.TrainConfig(steps=steps, probe_every=5, chunks=2, keep_states=keep)
    make = lambda hp: optax.sgd(hp["eta"])
    return train.run(train.supervised(), make, params, data, config, key=jax.random.key(0),
                     hparams=hparams or {"eta": eta}, progress=False, resume=resume)


def test_a_branch_off_a_kept_state_equals_resuming_there(getkey):
    model, x, y = _problem(getkey)
    whole = _run(model, (x, y), 20, keep=True)
    assert whole.snapshots.params.layers[0].weight.shape[0] == 4  # one per probe
    assert np.asarray(whole.snapshots.step).tolist() == [0, 5, 10, 15]
    # the state kept at probe 0 is the initial one
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda a: a[0], whole.snapshots.params),
                 model)
    head = _run(model, (x, y), 10)
    branch_old = _run(None, (x, y), 10, resume=head, eta=0.0125)
    cut = train.at_probe(whole, 2)
    assert int(cut.state.step) == 10 and cut.history.step.tolist() == list(range(10))
    assert cut.history.probe_step.tolist() == [0, 5]
    branch_new = _run(None, (x, y), 10, resume=cut, eta=0.0125)
    np.testing.assert_allclose(branch_new.history.loss, branch_old.history.loss, rtol=1e-6)
    np.testing.assert_allclose(branch_new.history.sharpness, branch_old.history.sharpness,
                               rtol=1e-5)
    # and without a decay the branch is the rest of the run
    same = _run(None, (x, y), 10, resume=cut)
    np.testing.assert_allclose(same.history.loss, whole.history.loss, rtol=1e-6)


def test_resumed_runs_keep_their_states_and_sweeps_cut_every_member(getkey):
    model, x, y = _problem(getkey)
    first = _run(model, (x, y), 10, keep=True, hparams={"eta": jnp.array([0.05, 0.02])})
    more = _run(None, (x, y), 10, keep=True, resume=first, hparams={"eta": jnp.array([0.05, 0.02])})
    assert np.asarray(more.snapshots.step).tolist() == [[0, 5, 10, 15]] * 2
    cut = train.at_probe(more, -1)
    assert np.asarray(cut.state.step).tolist() == [15, 15]
    assert cut.history.loss.shape == (2, 15) and cut.history.probe_step.shape == (2, 3)


def test_bad_uses_are_named(getkey):
    model, x, y = _problem(getkey)
    with pytest.raises(ValueError, match="keep_states=True .* probe_every > 0"):
        train.TrainConfig(steps=10, probe_every=0, keep_states=True)
    plain = _run(model, (x, y), 10)
    assert plain.snapshots is None
    with pytest.raises(ValueError, match="keep_states=True"):
        train.at_probe(plain, 0)
    kept = _run(model, (x, y), 10, keep=True)
    with pytest.raises(ValueError, match=r"index=2 must be an int in \[-2, 2\)"):
        train.at_probe(kept, 2)
