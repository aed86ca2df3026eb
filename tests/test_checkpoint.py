"""Checkpoints of long runs (issue 35): a run cut into pieces equals the whole run, a run killed
mid-way resumes from its last saved piece, and a change of settings or code starts afresh."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eoslib.book.checkpoint import Checkpoints, checkpoints_dir, piece_steps
from eoslib.engine import events, models, probes, train


@pytest.fixture(scope="module")
def problem():
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    model = models.MLP(4, (16,), 3, "tanh", key=k1)
    x = jax.random.normal(k2, (48, 4))
    labels = jnp.argmax(x[:, :3] + 0.3 * jax.random.normal(k3, (48, 3)), axis=1)
    return model, (x, jax.nn.one_hot(labels, 3))


CONFIG = train.TrainConfig(steps=60, probe_every=10, chunks=1)


def _runner(problem, config=CONFIG, calls=None, fail_after=None):
    model, data = problem

    def run(n, resume):
        if calls is not None:
            calls.append(n)
            if fail_after is not None and len(calls) > fail_after:
                raise KeyboardInterrupt("the session ended")
        return train.run(train.supervised("half_mse"), lambda hp: optax.sgd(hp["eta"]),
                         None if resume is not None else model, data,
                         dataclasses.replace(config, steps=n), key=jax.random.key(0),
                         hparams={"eta": 0.5}, resume=resume, progress=False)
    return run


def test_pieces_equal_the_whole_run_and_a_killed_run_resumes(problem, tmp_path):
    whole = _runner(problem)(60, None)
    calls = []
    ckpt = Checkpoints("demo", {"steps": 60}, root=tmp_path, code="c1", log=None)
    with pytest.raises(KeyboardInterrupt):
        ckpt.train("gd", _runner(problem, calls=calls, fail_after=2), steps=60, every=20)
    assert calls == [20, 20, 20] and ckpt.path("gd").is_file()  # two pieces saved, the third lost
    calls.clear()
    again = Checkpoints("demo", {"steps": 60}, root=tmp_path, code="c1", log=None)
    result = again.train("gd", _runner(problem, calls=calls), steps=60, every=20)
    assert calls == [20]  # resumed at step 40
    np.testing.assert_allclose(result.history.loss, whole.history.loss, rtol=1e-6)
    assert result.history.probe_step.tolist() == [0, 10, 20, 30, 40, 50]
    np.testing.assert_allclose(result.history.sharpness, whole.history.sharpness, rtol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 result.state.params, whole.state.params)
    # a finished run is loaded, not rerun
    calls.clear()
    done = again.train("gd", _runner(problem, calls=calls), steps=60, every=20)
    assert calls == [] and done.history.loss.shape == (60,)
    assert int(done.state.step) == 60


def test_other_settings_or_code_start_afresh(problem, tmp_path):
    a = Checkpoints("demo", {"steps": 60}, root=tmp_path, code="c1", log=None)
    b = Checkpoints("demo", {"steps": 61}, root=tmp_path, code="c1", log=None)
    c = Checkpoints("demo", {"steps": 60}, root=tmp_path, code="c2", log=None)
    d = Checkpoints("other", {"steps": 60}, root=tmp_path, code="c1", log=None)
    paths = {x.path("gd") for x in (a, b, c, d)}
    assert len(paths) == 4 and a.path("gd") != a.path("gd2")
    assert a.path("gd").parent == tmp_path / "demo"
    a.train("gd", _runner(problem), steps=20, every=10)
    calls = []
    c.train("gd", _runner(problem, calls=calls), steps=20, every=10)
    assert calls == [10, 10]
    a.clear()
    assert not (tmp_path / "demo").exists()


def _combined_runner(problem, calls, fail_after=None):
    """A run whose probe is ``probes.combine(...)`` (the weight-decay chapter's MLP sweep), built
    afresh on every call, as a new process would build it."""
    model, data = problem

    def run(n, resume):
        calls.append(n)
        if fail_after is not None and len(calls) > fail_after:
            raise KeyboardInterrupt("the session ended")
        probe = probes.combine(alignment=probes.alignment("half_mse"), ntk=probes.ntk_top(tol=1e-2))
        return train.run(train.supervised("half_mse"), lambda hp: optax.sgd(0.5),
                         None if resume is not None else model, data,
                         dataclasses.replace(CONFIG, steps=n), key=jax.random.key(0),
                         hparams={"gamma": 0.01}, probe_fn=probe, resume=resume, progress=False)
    return run


def test_a_run_with_combined_probes_is_saved_and_resumed(problem, tmp_path):
    # the record of probes.combine is a NamedTuple made at run time: it must pickle, and the
    # resumed run's records must have the class the new piece's records have (one pytree)
    calls = []
    ckpt = Checkpoints("demo", {}, root=tmp_path, code="c1", log=None)
    with pytest.raises(KeyboardInterrupt):
        ckpt.train("combined", _combined_runner(problem, calls, fail_after=2), steps=60, every=20)
    probes.combined_type.cache_clear()  # as in a fresh process
    calls.clear()
    result = ckpt.train("combined", _combined_runner(problem, calls), steps=60, every=20)
    assert calls == [20]  # resumed at step 40
    extra = result.history.extra
    assert type(extra) is probes.combined_type(("alignment", "ntk"))
    assert result.history.probe_step.tolist() == [0, 10, 20, 30, 40, 50]
    assert np.shape(extra.alignment.c_y) == (6,) and np.all(np.isfinite(extra.ntk.top_eigenvalue))


def test_a_stopped_run_is_finished(problem, tmp_path):
    config = dataclasses.replace(CONFIG, probe_every=0, stop_when=events.AccuracyAbove(0.9))
    calls = []
    ckpt = Checkpoints("demo", {}, root=tmp_path, code="c1", log=None)
    result = ckpt.train("stop", _runner(problem, config, calls=calls), steps=400, every=100)
    t = int(result.stopped_at)
    assert 0 < t < 300 and len(calls) == t // 100 + 1  # no piece after the stop


def test_cached_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"x": jnp.arange(3.0), "key": jax.random.key(5), "n": 2}

    first = Checkpoints("demo", {"a": 1}, root=tmp_path, code="c1", log=None).cached("toy", compute)
    second = Checkpoints("demo", {"a": 1}, root=tmp_path, code="c1", log=None).cached("toy", compute)
    assert calls == [1] and second["n"] == 2
    np.testing.assert_array_equal(second["x"], first["x"])
    assert jax.random.key_data(second["key"]).tolist() == jax.random.key_data(first["key"]).tolist()


def test_disabled_checkpoints_run_straight_through_and_save_nothing(problem, tmp_path):
    """A chapter's short scales use the same calls with ``enabled=False``: one piece, no files."""
    calls = []
    off = Checkpoints("toy", {"a": 1}, root=tmp_path, log=None, enabled=False)
    whole = off.train("run", _runner(problem, calls=calls), steps=60, every=20)
    assert calls == [60] and not any(tmp_path.rglob("*.pkl"))
    on = Checkpoints("toy", {"a": 1}, root=tmp_path, log=None)
    pieces = on.train("run", _runner(problem), steps=60, every=20)
    np.testing.assert_array_equal(whole.history.loss, pieces.history.loss)
    assert off.cached("value", lambda: 7) == 7 and not any(tmp_path.rglob("value-*.pkl"))
    with pytest.raises(ValueError, match="steps"):
        off.train("run", _runner(problem), steps=0, every=20)


def test_piece_steps_are_equal_multiples_of_the_unit():
    assert piece_steps(14000, 100, 1000) == 1000 and piece_steps(20000, 20, 2000) == 2000
    assert piece_steps(600, 1, 200) == 200 and piece_steps(150, 10, 200) == 150  # one piece
    assert piece_steps(1000, 7, 300) == 252  # 4 pieces of 36 × 7 (the last shorter)
    assert piece_steps(100, 10, 3) == 10  # never below one unit
    for total, unit, most in [(7200, 50, 2500), (5000, 100, 1000), (999, 9, 100)]:
        every = piece_steps(total, unit, most)
        assert every % unit == 0 and every <= most + unit
    with pytest.raises(ValueError, match="unit"):
        piece_steps(100, 0, 10)


def test_where_checkpoints_go(tmp_path, monkeypatch):
    monkeypatch.setenv("EOSLIB_CHECKPOINTS", str(tmp_path / "c"))
    assert checkpoints_dir() == tmp_path / "c"
    assert Checkpoints("demo", {}, code="x", log=None).folder == tmp_path / "c" / "demo"
    with pytest.raises(ValueError, match="must be >= 1"):
        Checkpoints("demo", {}, code="x", log=None).train("r", None, steps=0, every=1)


def test_a_flatness_sweep_in_pieces_equals_the_plain_sweep_and_resumes(tmp_path):
    """The chapter's sweeps (here large-η SGD switched to GD, probed, with a block that diverges)
    trained block by block in checkpointed pieces are the plain sweep; a sweep killed mid-way
    resumes from its last saved piece."""
    from eoslib.mechanisms import flatness
    from test_flatness_sgd import _splits

    sp = _splits()
    etas = np.array([0.5, 0.5, 1e3])  # the second block (the last η) diverges for every seed
    kw = dict(seeds=2, seed=0, steps=40, eval_every=4, arch_options={"width": 16},
              switch_accuracy=np.array([0.3, 0.9, 0.5]), eta_small=0.01, probe_every=2,
              alpha=np.ones(3), batch_size=6, block=2)
    plain = flatness.sweep(sp, "fmnist-mlp", etas, **kw)
    calls = []

    def hook(fail_after=None):
        ckpt = Checkpoints("demo", {"steps": 40}, root=tmp_path, code="c1", log=None)

        def checkpoint(name, run, steps):
            def counted(n, resume):
                calls.append((name, n))
                if fail_after is not None and len(calls) > fail_after:
                    raise KeyboardInterrupt("the session ended")
                return run(n, resume)
            return ckpt.train(name, counted, steps=steps, every=12)
        return checkpoint

    with pytest.raises(KeyboardInterrupt):
        flatness.sweep(sp, "fmnist-mlp", etas, checkpoint=hook(fail_after=2), **kw)
    assert calls == [("block0", 12)] * 3
    calls.clear()
    pieces = flatness.sweep(sp, "fmnist-mlp", etas, checkpoint=hook(), **kw)
    assert calls[0] == ("block0", 12) and calls[1] == ("block0", 4)  # resumed at step 24
    assert [c[0] for c in calls[2:]] == ["block2"] * (len(calls) - 2)
    for field in flatness.Sweep._fields:
        if field != "params":
            np.testing.assert_allclose(np.asarray(getattr(pieces, field), float),
                                       np.asarray(getattr(plain, field), float),
                                       rtol=1e-5, err_msg=field)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5),
                 pieces.params, plain.params)
