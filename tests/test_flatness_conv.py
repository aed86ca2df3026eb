"""The pieces the convolutional experiments of ``flatness-generalization`` add to the sweep: the
two-epoch warm-up composed with the LR-reduction switch, micro-batched full-batch objectives,
and the experiment functions the chapter shares between the MLP and the VGG."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eoslib.engine import optim, train
from eoslib.mechanisms import flatness
from test_flatness_sgd import _splits  # 24 / 8 / 8 synthetic fMNIST-shaped examples


def test_warmup_ramps_then_keeps_the_schedule_and_its_switch():
    sched = optim.warmup(optim.step_decay(0.4, 5, to=0.021), 2)
    got = [float(sched(jnp.asarray(t))) for t in (0, 1, 2, 4, 5, 9)]
    np.testing.assert_allclose(got, [0.2, 0.4, 0.4, 0.4, 0.021, 0.021], rtol=1e-6)
    assert float(optim.warmup(0.3, 0)(jnp.asarray(0))) == pytest.approx(0.3)  # 0: none
    traced = jax.vmap(lambda w: optim.warmup(0.4, w)(jnp.asarray(0)))(jnp.array([0.0, 4.0]))
    np.testing.assert_allclose(traced, [0.4, 0.1], rtol=1e-6)
    with pytest.raises(ValueError, match="steps=-1"):
        optim.warmup(0.1, -1)


KW = dict(seeds=2, seed=0, steps=4, eval_every=2, arch_options={"width": 4})


def test_sweep_warmup_is_the_ramped_schedule_and_checks_its_input():
    sp = _splits()
    eta = 0.3
    warm = flatness.sweep(sp, "fmnist-mlp", np.array([eta]), warmup_steps=2, **KW)
    params = flatness._init("fmnist-mlp", 2, 0, {"width": 4})
    first = jax.tree.map(lambda a: a[0], params)
    etas = jnp.array([eta / 2, eta, eta, eta])
    ref = train.run(train.supervised("cross_entropy"),
                    lambda hp: optax.sgd(lambda c: etas[c]), first,
                    (sp.train.x, sp.train.onehot), train.TrainConfig(steps=4),
                    key=jax.random.key(1), progress=False)
    for a, b in zip(jax.tree.leaves(warm.params), jax.tree.leaves(ref.state.params)):
        np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b), rtol=1e-5, atol=1e-6)
    plain = flatness.sweep(sp, "fmnist-mlp", np.array([eta]), **KW)
    assert not np.allclose(jax.tree.leaves(plain.params)[0], jax.tree.leaves(warm.params)[0])
    with pytest.raises(ValueError, match="warmup_steps"):
        flatness.sweep(sp, "fmnist-mlp", np.array([eta]), warmup_steps=-2, **KW)


def test_sweep_with_microbatches_is_the_full_batch_sweep():
    sp = _splits(n_val=10)  # 10: a remainder of 2 after a micro-batch of 8
    etas = np.array([0.05, 0.2])
    whole = flatness.sweep(sp, "fmnist-mlp", etas, probe_every=2,
                           switch_accuracy=np.array([0.2, 0.2]), eta_small=0.01, **KW)
    parts = flatness.sweep(sp, "fmnist-mlp", etas, probe_every=2, microbatch=8,
                           switch_accuracy=np.array([0.2, 0.2]), eta_small=0.01, **KW)
    np.testing.assert_array_equal(parts.switch_step, whole.switch_step)
    np.testing.assert_allclose(parts.final_train_acc, whole.final_train_acc)
    np.testing.assert_allclose(parts.s_max, whole.s_max, rtol=1e-3)
    for a, b in zip(jax.tree.leaves(parts.params), jax.tree.leaves(whole.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_the_convolutional_experiments_end_to_end_on_a_tiny_vgg():
    """Every convolutional experiment of the chapter, with the chapter's own functions, on a
    one-conv GhostBatchNorm VGG and 16 CIFAR-10 images in micro-batches of 8 (ghost size 8):
    the metrics its claims read are all produced, and each claim is graded from them."""
    import re
    from pathlib import Path

    from eoslib.book import verdicts as v

    sp = flatness.splits("cifar10", 16, 10, 10)
    vgg = {"blocks": [[4]], "ghost_size": 8}
    kw = dict(seeds=2, seed=0, steps=2, eval_every=1, arch_options=vgg, microbatch=8)
    run, gl, gold = flatness.goldilocks_experiment(
        sp, "vgg", optim.exponential_grid(0.01, 4.0, 2), probe_every=1, block=2,
        warmup_steps=2, **kw)
    eta = gold["threshold_eta"]
    assert np.isfinite(eta) and eta > 0 and len(gold["reached_edge"]) == len(run.etas)
    _, red = flatness.switch_experiment(sp, "vgg", eta * np.array([0.7, 2.0]), 0.021, [0.1, 0.2],
                                        n_control=1, probe_every=1, warmup_steps=2, **kw)
    _, sgd = flatness.switch_experiment(sp, "vgg", eta * np.array([0.7, 2.0]), 0.021, [0.1, 0.2],
                                        alpha=1.0, batch_size=8, probe_every=1, warmup_steps=4,
                                        n_control=1, **kw)  # the stable SGD control first
    _, grid, sde = flatness.equal_temperature_experiment(sp, "vgg", eta * np.array([0.5, 2.0]),
                                                         [1.0], batch_size=8, probe_every=1, **kw)
    assert grid.alpha.tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])
    table_runs, table = flatness.table_experiment(
        sp, [("vgg", 1), ("vgg", 2)], [0.1, 0.4, 1.6], augment_seed=1,
        options={**vgg, "width": 3}, seeds=1, seed=0, steps=2, eval_every=1, warmup_steps=2,
        microbatch=8)  # "width" is no VGG option: options an architecture does not take are left out
    assert sorted(table_runs) == ["vgg_x1", "vgg_x2"]
    assert len(table_runs["vgg_x2"].test_acc) <= 3 and table["table_cells"] == ["vgg_x1", "vgg_x2"]
    metrics = {**{f"vgg_{k}": val for k, val in {**gold, **red, **sde}.items()},
               **{f"vgg_sgd_{k}": val for k, val in sgd.items()}, **table}

    chapter = Path(__file__).resolve().parents[1] / "notebooks" / "flatness-generalization.py"
    cells_src = re.split(r"^# %%", chapter.read_text(), flags=re.M)
    cell = [c for c in cells_src if re.match(r'[^\n]*tags=\[[^\]]*"claims"', c)][0]
    namespace: dict = {}
    exec(compile(cell.split("\n", 1)[1], str(chapter), "exec"), namespace)
    specs = [s for s in namespace["CLAIMS"] if s.id in namespace["CONV_NEEDS"]]
    assert len(specs) == 7
    for spec in specs:
        missing = [m for m in spec.rule.metrics() if m not in metrics]
        assert not missing, (spec.id, missing)
        claim = v.grade(spec, metrics, scale="smoke")  # any verdict: the path is what is tested
        assert claim.verdict in (v.REPRODUCED, v.PARTLY, v.NOT_REPRODUCED, v.NOT_TESTED)
