"""Instabilities and generalization (Wang & Roberts): the Goldilocks sweep and LR reduction.

Both papers' payoff claim: GD past its stability limit 2/S finds flatter minima that generalize
better. This module runs and summarises the two experiments of the ``flatness-generalization``
chapter on top of :mod:`eoslib.engine`:

- :func:`splits`: explicit train / validation / test sets (validation is held out of the
  training split; the test split is never used to choose anything).
- :func:`goldilocks` summarises a sweep over an exponential η grid × seeds (one vmapped program,
  trained to completion and early-stopped on validation with :mod:`eoslib.engine.stopping`):
  per-η test accuracy at the early-stopping point, each run labelled by whether it reached the
  edge of stability itself; the slope below the edge and the rise at the first η past it
  against the seed spread, the η chosen on validation, the fall before divergence.
- :func:`stability_threshold`: 2 / the peak sharpness of the smallest η's run (under
  cross-entropy the sharpness collapses after the fit, so 2/S at the end reads too high).
- :func:`switch_summary` and :func:`flatter_pairs` summarise learning-rate reduction runs
  (switched inside the compiled run when the training accuracy reaches a threshold): S_max after
  the switch against the switch point, with a slope and its confidence interval over seeds, and
  how often the flatter of two runs generalizes better.
- :func:`sweep` also runs the SGD experiments (flatness-bias paper, Sec. 7): with ``alpha`` and
  ``batch_size`` each step is the noise-scaled gradient of
  :func:`eoslib.engine.optim.noise_scaled_gradient` (α = 0 full-batch GD, α = 1 SGD), and with a
  switch the noise is turned off there (large-η SGD, then low-η GD). :func:`noise_until` is that
  update; :func:`equal_temperature_gap` summarises the noise-scale grid against the SDE view.

The experiments the chapter runs on both the fMNIST MLP and the paper's VGG10 (and Table 1's
VGG19 / ResNet20) are functions here, returning the sweep and the record's metrics:
:func:`goldilocks_experiment` (sweep, threshold, summary), :func:`switch_experiment` (LR
reduction, or SGD → GD with ``alpha``), :func:`equal_temperature_experiment` (the noise-scale
grid of :func:`noise_grid`) and :func:`table_summary` (Table 1's trend, beside
:data:`PAPER_TABLE`). ``warmup_steps`` and ``microbatch`` of :func:`sweep` give the
convolutional runs their two-epoch warm-up and full-batch objectives over 50k–500k images, and
its ``checkpoint`` (passed through every experiment) trains each block in resumable pieces, so
a long run cut off resumes where it stopped.

Conventions: accuracies are fractions in [0, 1]; losses are cross-entropy averaged over examples;
a diverged or incomplete run has NaN accuracy and is counted, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats
from jaxtyping import Bool, Float

from eoslib.engine import data, events, models, optim, stopping, train

#: How :func:`sweep` trains a block in resumable pieces: ``checkpoint(name, run, steps)`` returns
#: the block's whole :class:`eoslib.engine.train.TrainResult`, calling ``run(n, resume)`` for
#: its pieces (e.g. :meth:`eoslib.book.checkpoint.Checkpoints.train`).
Checkpoint = Callable[[str, Callable[[int, Any], train.TrainResult], int], train.TrainResult]

__all__ = ["Splits", "splits", "Sweep", "sweep", "stability_threshold", "Goldilocks", "goldilocks",
           "slope_ci", "switch_summary", "noise_until", "sde_temperature", "equal_temperature_gap",
           "end_to_end_gain", "z_score", "merge_metrics", "goldilocks_experiment",
           "goldilocks_peak_before_failures", "switch_rows",
           "flatter_pairs", "switch_experiment", "NoiseGrid", "noise_grid", "equal_temperature_experiment",
           "PAPER_TABLE_ETAS", "PAPER_TABLE", "rank_corr", "table_experiment", "table_summary",
           "LOSS_RISE_RTOL", "FLATTER_MIN_REL_DS", "FLATTER_MIN_IMAGES", "Checkpoint",
           "collapsed", "COLLAPSE_MARGIN", "flatter_rows"]


class Splits(NamedTuple):
    """Train / validation / test datasets (:class:`eoslib.engine.data.Dataset`), standardised
    with the training set's per-channel statistics."""

    train: data.Dataset
    val: data.Dataset
    test: data.Dataset


def splits(dataset: str, n_train: int, n_val: int, n_test: int,
           classes: Sequence[int] | None = None, **options) -> Splits:
    """The first ``n_train`` examples of the training split for training, the next ``n_val`` for
    validation, the first ``n_test`` of the test split for testing.

    ``dataset`` is ``"fashion-mnist"`` or ``"cifar10"``; ``options`` go to the loader
    (``data_dir``, ``download``)."""
    loaders = {"fashion-mnist": data.load_fashion_mnist, "cifar10": data.load_cifar10}
    if dataset not in loaders:
        raise ValueError(f"dataset={dataset!r} is not one of {sorted(loaders)}")
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if int(value) < 1:
            raise ValueError(f"{name}={value!r} must be an int >= 1")
    load = loaders[dataset]
    raw = load("train", n=n_train + n_val, classes=classes, standardize=False, **options)
    x = raw.x
    stats = (x[:n_train].mean(axis=(0, 1, 2), dtype=np.float64),
             x[:n_train].std(axis=(0, 1, 2), dtype=np.float64))
    mean, std = (np.asarray(s, np.float32) for s in stats)

    def part(ds, lo, hi):
        return data.Dataset(x=(ds.x[lo:hi] - mean) / np.where(std > 0, std, 1), y=ds.y[lo:hi],
                            classes=ds.classes, source=ds.source, mean=mean, std=std)

    test = load("test", n=n_test, classes=classes, stats=stats, **options)
    return Splits(part(raw, 0, n_train), part(raw, n_train, n_train + n_val), test)


class Goldilocks(NamedTuple):
    """Summary of a Goldilocks sweep (η grid of size G, seeds R), each run labelled by whether it
    reached the edge of stability (its own largest S·η/2 ≥ 1).

    Attributes:
      test_acc: ``(G, R)`` test accuracy at the early-stopping point; NaN if diverged/incomplete.
      val_acc: ``(G, R)`` validation accuracy there.
      mean_test: ``(G,)`` seed mean of ``test_acc`` over the runs that have one.
      usable: ``(G,)`` whether η has at least one completed, non-diverged run.
      stable: ``(G,)`` usable, and none of its runs reached the edge.
      edge: ``(G,)`` usable, and every one of its runs reached the edge.
      flat_slope: the least-squares slope of test accuracy against log η over the stable runs.
      flat_slope_se: its standard error from the pooled seed spread.
      first_edge_eta: the smallest η past every stable one whose runs all reached the edge.
      acc_rise: mean test accuracy at ``first_edge_eta`` minus that of all stable runs.
      rise_se: its standard error.
      goldilocks_eta: the η among ``edge`` with the best mean *validation* accuracy.
      acc_fall: mean test accuracy at ``goldilocks_eta`` minus that of the largest usable η.
      fall_se: its standard error.
      seed_sd: the pooled standard deviation of test accuracy over seeds.
      gain_at_goldilocks: mean test accuracy at ``goldilocks_eta`` minus that of all stable
        runs (the rise read where the zone peaks on validation, not at its first η).
      gain_se: its standard error.
      min_runs: the usable runs an η needed to be a Goldilocks candidate or the fall's
        comparator.
    """

    test_acc: np.ndarray
    val_acc: np.ndarray
    mean_test: np.ndarray
    usable: np.ndarray
    stable: np.ndarray
    edge: np.ndarray
    flat_slope: float
    flat_slope_se: float
    first_edge_eta: float
    acc_rise: float
    rise_se: float
    goldilocks_eta: float
    acc_fall: float
    fall_se: float
    seed_sd: float
    gain_at_goldilocks: float = float("nan")
    gain_se: float = float("nan")
    min_runs: int = 1


def _pooled_sd(acc: np.ndarray) -> float:
    """Pooled within-η standard deviation over seeds (NaN with fewer than 2 runs per η)."""
    ss, dof = 0.0, 0
    for row in acc:
        row = row[~np.isnan(row)]
        if row.size >= 2:
            ss += float(np.sum((row - row.mean()) ** 2))
            dof += row.size - 1
    return float(np.sqrt(ss / dof)) if dof else float("nan")


def goldilocks(etas: Float[np.ndarray, " G"], test_acc: Float[np.ndarray, "G R"],
               val_acc: Float[np.ndarray, "G R"], reached_edge: Bool[np.ndarray, "G R"],
               *, min_runs: int = 1, comparator: str = "last") -> Goldilocks:
    """Summarise a sweep: ``test_acc``/``val_acc`` are per (η, seed) at the early-stopping point
    (NaN for diverged or incomplete runs), ``reached_edge`` each run's own flag. Both halves of
    "flat below the threshold, a rise once η passes it", without choosing among step sizes on
    accuracy:

    - flat: the slope of test accuracy against log η over every usable run of the *stable* η
      (none of their runs reached the edge), with its standard error from the pooled seed spread;
    - rise: the mean test accuracy at the *first* η past every stable one whose runs all reached
      the edge, minus the mean of all stable runs (a fixed comparison, not the best of many).

    The Goldilocks η (for the fall before divergence) is chosen on validation among the η whose
    runs all reached the edge and that have at least ``min_runs`` usable runs (default 1; a
    larger value keeps the arg-max off an η where most runs failed, whose one survivor's
    accuracy is the noisiest: a winner's curse); the fall's comparator is the largest η with at
    least ``min_runs`` usable runs (``comparator="last"``, the default) or, with
    ``comparator="pooled"``, the mean over every usable run of every η above the Goldilocks η
    with at least ``min_runs`` usable runs (its standard error from the pooled seed spread and
    the number of pooled runs), so that the fall does not turn on one η.
    ``gain_at_goldilocks`` is the mean test accuracy at the Goldilocks η minus that of all stable
    runs (chosen on validation, read on test). Every
    derived number is NaN when its ingredients are missing."""
    etas = np.asarray(etas, float)
    test_acc, val_acc = np.asarray(test_acc, float), np.asarray(val_acc, float)
    edge_run = np.asarray(reached_edge, bool)
    if test_acc.shape != val_acc.shape or test_acc.shape != edge_run.shape or \
            test_acc.shape[0] != etas.size:
        raise ValueError(f"etas {etas.shape}, test_acc {test_acc.shape}, val_acc "
                         f"{val_acc.shape} and reached_edge {edge_run.shape} must be (G,), "
                         "(G, R), (G, R), (G, R)")
    if isinstance(min_runs, bool) or not isinstance(min_runs, (int, np.integer)) or min_runs < 1:
        raise ValueError(f"min_runs={min_runs!r} must be an int >= 1")
    if comparator not in ("last", "pooled"):
        raise ValueError(f"comparator={comparator!r} must be 'last' or 'pooled'")
    ok = ~np.isnan(test_acc)
    usable = ok.any(1)
    stable = usable & ~edge_run.any(1)
    edge = usable & edge_run.all(1)
    with warnings.catch_warnings():  # an η whose runs all diverged has an all-NaN row
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_test = np.nanmean(test_acc, 1)
        mean_val = np.nanmean(val_acc, 1)
    sd = _pooled_sd(test_acc)
    nan = float("nan")
    slope = slope_se = first = rise = rise_se = g_eta = fall = fall_se = gain = gain_se = nan
    if stable.sum() >= 2:
        x = np.log(np.repeat(etas[stable], test_acc.shape[1]))
        y = test_acc[stable].ravel()
        keep = ~np.isnan(y)
        x, y = x[keep], y[keep]
        sxx = float(np.sum((x - x.mean()) ** 2))
        slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
        slope_se = float(sd / np.sqrt(sxx))
    past = edge & (etas > (etas[stable].max() if stable.any() else -np.inf))
    if stable.any() and past.any():
        f = int(np.flatnonzero(past)[0])
        first = float(etas[f])
        below = test_acc[stable][ok[stable]]
        n_f = int(ok[f].sum())
        rise = float(mean_test[f] - below.mean())
        rise_se = float(sd * np.sqrt(1 / n_f + 1 / below.size))
    enough = ok.sum(1) >= min_runs
    candidates = edge & enough
    if candidates.any():
        g = int(np.flatnonzero(candidates)[np.nanargmax(mean_val[candidates])])
        g_eta = float(etas[g])
        n_g = int(ok[g].sum())
        last = int(np.flatnonzero(usable & enough)[-1])
        if last > g and comparator == "pooled":
            pool = usable & enough & (np.arange(etas.size) > g)
            runs = test_acc[pool][ok[pool]]
            fall = float(mean_test[g] - runs.mean())
            fall_se = float(sd * np.sqrt(1 / n_g + 1 / runs.size))
        elif last > g:
            n_l = int(ok[last].sum())
            fall = float(mean_test[g] - mean_test[last])
            fall_se = float(sd * np.sqrt(1 / n_g + 1 / n_l))
        if stable.any():
            below = test_acc[stable][ok[stable]]
            gain = float(mean_test[g] - below.mean())
            gain_se = float(sd * np.sqrt(1 / n_g + 1 / below.size))
    return Goldilocks(test_acc, val_acc, mean_test, usable, stable, edge, slope, slope_se, first,
                      rise, rise_se, g_eta, fall, fall_se, sd, gain, gain_se, int(min_runs))


def slope_ci(x: Float[np.ndarray, " K"], y: Float[np.ndarray, "R K"], z: float = 1.96
             ) -> tuple[float, float, float]:
    """Least-squares slope of ``y`` against ``x`` for each seed (row) and its mean with a normal
    confidence interval ``mean ± z·sd/√R`` over seeds: ``(slope, low, high)``. Rows with NaN are
    left out; fewer than two usable rows give a NaN interval (one row: its slope)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if y.ndim != 2 or y.shape[1] != x.size:
        raise ValueError(f"y {y.shape} must be (R, K) with K = len(x) = {x.size}")
    if x.size < 2:
        return float("nan"), float("nan"), float("nan")
    rows = y[~np.isnan(y).any(1)]
    if rows.shape[0] == 0:
        return float("nan"), float("nan"), float("nan")
    xc = x - x.mean()
    slopes = (rows - rows.mean(1, keepdims=True)) @ xc / (xc @ xc)
    m = float(slopes.mean())
    if slopes.size < 2:
        return m, float("nan"), float("nan")
    half = z * float(slopes.std(ddof=1)) / np.sqrt(slopes.size)
    return m, m - half, m + half


def switch_summary(switch_fraction: Float[np.ndarray, " K"],
                   s_max: Float[np.ndarray, "R K"], test_acc: Float[np.ndarray, "R K"],
                   diverged: Bool[np.ndarray, "R K"]) -> dict[str, float]:
    """LR-reduction summary: the slope of log S_max against the switch point (fraction of the
    large-η phase, per seed, mean and CI over seeds) and the Spearman correlation of test
    accuracy with S_max over all runs. A diverged run makes its seed's row unusable (it is
    counted in ``n_diverged``)."""
    s_max = np.where(np.asarray(diverged), np.nan, np.asarray(s_max, float))
    acc = np.where(np.asarray(diverged), np.nan, np.asarray(test_acc, float))
    with np.errstate(all="ignore"):
        slope, lo, hi = slope_ci(switch_fraction, np.log(s_max))
    return {"smax_vs_switch_slope": slope, "smax_slope_ci_low": lo, "smax_slope_ci_high": hi,
            "acc_smax_rank_corr": rank_corr(s_max.ravel(), acc.ravel()), "n_diverged": int(np.asarray(diverged).sum())}


class Sweep(NamedTuple):
    """Runs over step-size schedules × seeds, trained, evaluated and early-stopped.

    Attributes:
      etas: ``(G,)`` the run's (initial) step sizes; only the blocks that ran.
      diverged: ``(G, R)`` whether each run diverged.
      completed: ``(G, R)`` whether it reached :data:`eoslib.engine.stopping.COMPLETE` train
        accuracy before diverging (after its switch, for a switched run).
      stopped: ``(G, R)`` whether it has an early-stopping point: completed, and the validation
        loss turned up after its global minimum from completion on
        (:func:`eoslib.engine.stopping.reversal_stop_index`).
      test_acc: ``(G, R)`` test accuracy at the early-stopping point; NaN for diverged,
        incomplete or unstopped runs.
      val_acc: ``(G, R)`` validation accuracy at the same point.
      final_train_acc: ``(G, R)`` train accuracy at the end (NaN if diverged).
      s_max: ``(G, R)`` the largest probed sharpness after ``window_start`` (NaN without probes;
        NaN for a switched run whose switch never fired: its whole run at η₀ is no S_max after a
        switch, and :func:`switch_experiment` counts it in ``n_unswitched``).
      edge_ratio: ``(G, R)`` the largest probed S·η/2 with the run's (initial) η, over the probes
        up to its switch (all of them without one): ≥ 1 means the run reached the edge of
        stability. NaN without probes, and NaN where the only probe up to the switch is step 0's
        (an early switch: the flag would read "not measured" as "did not reach the edge").
      small_edge_ratio: ``(G, R)`` the same with η_small over the probes after the switch (NaN
        without a switch): ≥ 1 means the small step size was not stable either.
      peak_sharpness: ``(G, R)`` the largest probed sharpness up to the switch (the whole run
        without one).
      peak_step: ``(G, R)`` the step of ``peak_sharpness``.
      final_sharpness: ``(G, R)`` the last finite probed sharpness.
      switch_step: ``(G, R)`` the step the switch fired (−1: never, or no switch).
      completion_step: ``(G, R)`` the evaluation step of completion (−1: none).
      stop_step: ``(G, R)`` the evaluation step of the early-stopping point (−1: none).
      loss_rose: ``(G, R)`` the instability flag read at every step, the paper's own definition
        of stable training ("training is stable and training loss decreases monotonically"):
        1.0 where the full-batch training loss rose, ``L_{t+1} > L_t·(1 + 1e-6)``, at some step
        ``t + 1`` up to the switch (the whole run without one), else 0.0; the 10⁻⁶ is float32
        rounding of a mean, declared with the flag. NaN for noise-scaled runs (α > 0), whose
        loss rises with the minibatch noise, stable or not.
      edge_probes: ``(G, R)`` how many probes ``edge_ratio`` read (finite probes at steps up to
        the switch; 0 without probes).
      params: the final parameters, leaves ``(G·R, …)`` (η-major).
    """

    etas: np.ndarray
    diverged: np.ndarray
    completed: np.ndarray
    stopped: np.ndarray
    test_acc: np.ndarray
    val_acc: np.ndarray
    final_train_acc: np.ndarray
    s_max: np.ndarray
    edge_ratio: np.ndarray
    small_edge_ratio: np.ndarray
    peak_sharpness: np.ndarray
    peak_step: np.ndarray
    final_sharpness: np.ndarray
    switch_step: np.ndarray
    completion_step: np.ndarray
    stop_step: np.ndarray
    loss_rose: np.ndarray
    edge_probes: np.ndarray
    params: object

    @property
    def reached_edge(self) -> np.ndarray:
        """``(G, R)`` whether each run reached the edge before its switch: S·η/2 ≥ 1 at a probe,
        or its training loss rose at a step (``loss_rose``), or it diverged."""
        return ((np.nan_to_num(self.edge_ratio, nan=0.0) >= 1.0)
                | (np.nan_to_num(self.loss_rose, nan=0.0) > 0) | self.diverged)


def _as_params(sp: Splits, params) -> Splits:
    """``sp`` with images in the parameters' float dtype (float64 under ``jax_enable_x64``:
    convolutions, unlike matmuls, do not promote a float32 input). Exact: float32 → float64."""
    dtype = np.dtype(jax.tree.leaves(params)[0].dtype)
    if sp.train.x.dtype == dtype:
        return sp
    return Splits(*(dataclasses.replace(ds, x=np.asarray(ds.x, dtype)) for ds in sp))


def _init(arch: str, seeds: int, seed: int, options: dict):
    keys = jax.random.split(jax.random.key(seed), seeds)
    return jax.vmap(lambda k: models.by_name(arch, key=k, **options))(keys)


#: The relative size of a loss rise that ``Sweep.loss_rose`` counts: float32's rounding of
#: a mean over examples, declared with the flag (a monotone decrease in exact arithmetic never
#: reads as a rise).
LOSS_RISE_RTOL = 1e-6


def _loss_rose(loss: np.ndarray, cut: np.ndarray, rtol: float = LOSS_RISE_RTOL) -> np.ndarray:
    """Per member (rows of ``loss``, the training loss at steps 0, 1, …): 1.0 where
    ``L_{t+1} > L_t·(1 + rtol)`` for some ``t + 1 ≤ cut`` (NaN losses never count), else 0.0."""
    loss = np.asarray(loss, float)
    if loss.shape[1] < 2:
        return np.zeros(loss.shape[0])
    with np.errstate(invalid="ignore"):
        rise = loss[:, 1:] > loss[:, :-1] * (1 + rtol)
    upto = np.arange(1, loss.shape[1])[None, :] <= np.asarray(cut, float)[:, None]
    return (rise & upto).any(1).astype(float)


def _probe_summary(steps: np.ndarray, sharp: np.ndarray, eta: np.ndarray, cut: np.ndarray,
                   eta_after: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per member (rows of ``sharp``, ``(M, P)`` probed at ``steps``): the largest S·η/2 and
    sharpness (with its step) over the probes at steps ≤ ``cut`` (the switch step; +inf: all),
    how many probes those are (the S·η/2 is NaN when step 0's is the only one), the largest
    S·η_after/2 over the later ones, and the last finite sharpness."""
    sharp = np.asarray(sharp, float)
    steps = np.broadcast_to(np.asarray(steps), sharp.shape)
    ok = np.isfinite(sharp)
    before = ok & (steps <= cut[:, None])
    masked = np.where(before, sharp, -np.inf)
    peak_i = masked.argmax(1)
    has = before.any(1)
    peak = np.where(has, masked.max(1), np.nan)
    rows = np.arange(sharp.shape[0])
    past_zero = (before & (steps > 0)).any(1)  # a probe besides the initial one
    out = {"peak_sharpness": peak, "peak_step": np.where(has, steps[rows, peak_i], -1),
           "edge_ratio": np.where(past_zero, peak * eta / 2, np.nan),
           "edge_probes": before.sum(1)}
    after = ok & (steps > cut[:, None])
    small = np.where(after.any(1), np.max(np.where(after, sharp, -np.inf), 1), np.nan)
    out["small_edge_ratio"] = (small * eta_after / 2 if eta_after is not None
                               else np.full(sharp.shape[0], np.nan))
    last = np.where(ok.any(1), sharp.shape[1] - 1 - ok[:, ::-1].argmax(1), 0)
    out["final_sharpness"] = np.where(ok.any(1), sharp[rows, last], np.nan)
    return out


def sweep(sp: Splits, arch: str, etas: Float[np.ndarray, " G"], *, seeds: int, seed: int,
          steps: int, eval_every: int, arch_options: dict | None = None,
          block: int | None = None, switch_accuracy: Float[np.ndarray, " G"] | None = None,
          eta_small: float | None = None, probe_every: int = 0,
          window_start: Float[np.ndarray, " G"] | None = None,
          alpha: Float[np.ndarray, " G"] | None = None, batch_size: int | None = None,
          warmup_steps: int | Float[np.ndarray, " G"] = 0, microbatch: int | None = None,
          checkpoint: Checkpoint | None = None) -> Sweep:
    """Full-batch GD with cross-entropy on ``sp.train`` for every η of ``etas`` and ``seeds``
    initialisations (the same ``seeds`` for every η), each block of ``block`` step sizes one
    vmapped program. With ``block`` set, the grid stops after the first block whose largest η
    diverged for every seed (the divergence stop: larger η would diverge too).

    ``switch_accuracy`` (per η, a training accuracy in (0, 1)) and ``eta_small`` turn each run
    into a learning-rate reduction inside the compiled run: η until the first step whose
    training accuracy (that step's full-batch forward pass) reaches the run's threshold, then
    ``eta_small`` from that step's update on (:class:`eoslib.engine.events.Switch` on
    :class:`eoslib.engine.events.AccuracyAbove`; one switch per distinct threshold, so a block
    mixing thresholds is still one program). A switched run's completion is the first evaluation
    *after* its switch step at which train accuracy reaches
    :data:`eoslib.engine.stopping.COMPLETE`, so its accuracy is read after the switch.

    Every run is early-stopped by :func:`eoslib.engine.stopping.reversal_stop_index` (App. K.3:
    the global minimum of the validation loss from completion on, confirmed by a later rise).
    With ``probe_every`` the sharpness is probed in the loop: ``s_max`` is its largest value at
    probe steps strictly after ``window_start`` (per η; default the switch step, so the switch
    step itself is excluded; a run whose switch never fired has none; −1: every probe), and
    ``edge_ratio`` / ``peak_sharpness`` / ``small_edge_ratio`` say whether the run reached the
    edge before and after its switch, with ``edge_probes`` the probes behind the first; beside
    them ``loss_rose`` reads every step's training loss up to the switch (a rise is unstable
    training by the paper's own definition, whether or not a probe caught the spike).

    ``alpha`` (per η) and ``batch_size`` make every step the noise-scaled gradient (the
    flatness-bias paper's Eq. 8): the full-batch gradient plus α times the noise of a minibatch
    of ``batch_size`` (α = 0 GD, α = 1 SGD, exactly), each seed drawing its own minibatch order;
    with a switch the noise is off from the switch on (SGD, then GD at ``eta_small``). The
    evaluations (train / validation / test) and the accuracy events are full batch.

    ``warmup_steps`` (one for all, or per η) ramps the step size linearly over the first updates
    (:func:`eoslib.engine.optim.warmup`: η·(t + 1)/W for t < W), multiplying the schedule.
    ``microbatch`` computes every full-batch objective (steps, probes, evaluations) as a mean
    over micro-batches of that many examples (:func:`eoslib.engine.train.microbatched`; a
    multiple of the model's GhostBatchNorm ghost size), for sets too large for one batch's
    activations.

    ``checkpoint`` trains each block in resumable pieces: it is called as
    ``checkpoint(name, run, steps)`` with the block's name (``"block<first η index>"``),
    ``run(n, resume)`` (the block's first ``n`` steps when ``resume`` is ``None``, else ``n``
    more after ``resume``) and ``steps``, and returns the whole block's
    :class:`eoslib.engine.train.TrainResult`, e.g. ``lambda name, run, steps:
    Checkpoints(chapter, settings).train(f"goldilocks-{name}", run, steps=steps, every=1000)``
    (:class:`eoslib.book.checkpoint.Checkpoints`; ``every`` a multiple of ``eval_every`` and
    ``probe_every``). A resumed run equals the uninterrupted one, so the sweep is the same.
    """
    etas = np.asarray(etas, float)
    g_all = etas.size
    switch = None if switch_accuracy is None else np.asarray(switch_accuracy, float)
    if switch is not None:
        if switch.shape != etas.shape or eta_small is None:
            raise ValueError("switch_accuracy must have one entry per eta, and eta_small must "
                             "be given")
        if not np.all((switch > 0) & (switch < 1)):
            raise ValueError(f"switch_accuracy={switch_accuracy!r} must be accuracies in (0, 1)")
    levels = np.unique(switch) if switch is not None else np.zeros(0)
    noise = None if alpha is None else np.asarray(alpha, float)
    if noise is not None:
        if noise.shape != etas.shape or not np.all(noise >= 0):
            raise ValueError(f"alpha={alpha!r} must have one entry >= 0 per eta ({etas.size})")
        if batch_size is None or not 1 <= int(batch_size) <= len(sp.train):
            raise ValueError(f"batch_size={batch_size!r} must be an int in [1, "
                             f"{len(sp.train)}] (the training examples) when alpha is given")
    window = None if window_start is None else np.asarray(window_start, float)
    block = block or g_all
    warm = np.broadcast_to(np.asarray(warmup_steps, float), etas.shape)
    if not np.all(warm >= 0):
        raise ValueError(f"warmup_steps={warmup_steps!r} must be >= 0 (one value, or one per eta)")
    # mean over examples of −log softmax_y, over micro-batches when asked
    objective = train.microbatched(train.supervised("cross_entropy"), microbatch)
    params = _init(arch, seeds, seed, dict(arch_options or {}))
    sp = _as_params(sp, params)
    # switch j fires at the first step with train accuracy ≥ levels[j]; a run whose own
    # threshold is levels[k] keeps its η (and α) at the switches j < k and takes η_small (α 0)
    # at j ≥ k, so each run drops once, at its own threshold
    changes = tuple(events.Switch(events.AccuracyAbove(float(level)),
                                  set={"eta": f"eta_after_{j}",
                                       **({} if noise is None else {"alpha": f"alpha_after_{j}"})})
                    for j, level in enumerate(levels))
    config = train.TrainConfig(steps=steps, probe_every=probe_every, top_k=1,
                               chunks=max(1, steps // eval_every), switches=changes)
    held_out = {"val": (sp.val.x, sp.val.onehot), "test": (sp.test.x, sp.test.onehot)}

    def step_size(hp):
        return optax.sgd(optim.warmup(hp["eta"], hp["warmup"]))

    if noise is None:
        make_optimizer = step_size
    else:
        def loss_fn(p, x, y):
            return objective(p, x, y, {})[0]

        def make_optimizer(hp):  # each seed its own minibatch order
            key = jax.random.fold_in(jax.random.key(seed + 2), hp["noise_seed"].astype(jnp.int32))
            return optax.chain(noise_until(loss_fn, hp["alpha"], jnp.inf, int(batch_size), key=key),
                               step_size(hp))
    parts = []
    for lo in range(0, g_all, block):
        idx = np.arange(lo, min(lo + block, g_all))
        g = idx.size
        p = jax.tree.map(lambda a: jnp.broadcast_to(a[None], (g,) + a.shape).reshape(
            (g * seeds,) + a.shape[1:]), params)
        eta_m = np.repeat(etas[idx], seeds)
        hp = {"eta": eta_m, "warmup": np.repeat(warm[idx], seeds)}
        if noise is not None:
            hp["alpha"] = np.repeat(noise[idx], seeds)
            hp["noise_seed"] = np.tile(np.arange(seeds, dtype=float), g)
        if switch is not None:
            own = np.searchsorted(levels, np.repeat(switch[idx], seeds))  # each run's switch
            for j in range(levels.size):
                hp[f"eta_after_{j}"] = np.where(j >= own, float(eta_small), eta_m)
                if noise is not None:
                    hp[f"alpha_after_{j}"] = np.where(j >= own, 0.0, hp["alpha"])
        def piece(n, resume, p=p, hp=hp):
            """``n`` steps of the block: the whole run (``config`` as given) or, under
            ``checkpoint``, one resumable piece (as many compiled chunks as evaluations)."""
            cfg = (config if checkpoint is None else
                   dataclasses.replace(config, steps=n, chunks=max(1, n // eval_every)))
            return stopping.run_evaluated(
                objective, make_optimizer, None if resume is not None else p,
                (sp.train.x, sp.train.onehot), cfg, eval_every=eval_every, held_out=held_out,
                key=jax.random.key(seed + 1), hparams=hp, batched_params=True, progress=False,
                resume=resume).result

        result = (piece(steps, None) if checkpoint is None
                  else checkpoint(f"block{lo}", piece, steps))
        ev = stopping.evaluated(result, eval_every, steps)
        members = g * seeds
        if switch is not None:
            fired = np.asarray(ev.result.switched_at).reshape(members, levels.size)
            switch_step = fired[np.arange(members), own]
        else:
            switch_step = np.full(members, -1)
        n_eval = ev.metrics["train"]["accuracy"].shape[-1]
        eval_steps = np.asarray(ev.steps)[:n_eval]
        acc = ev.metrics["train"]["accuracy"]
        if switch is not None:  # completion after the switch: accuracy read after the drop
            acc = np.where((switch_step[:, None] >= 0) & (eval_steps > switch_step[:, None]),
                           acc, np.nan)
        done = stopping.completion_index(acc)
        stop = stopping.reversal_stop_index(ev.metrics["val"]["loss"], done)
        h = ev.result.history
        cut = np.where(switch_step >= 0, switch_step, np.inf) if switch is not None \
            else np.full(members, np.inf)
        nan = np.full(members, np.nan)
        probed = dict(s_max=nan, edge_ratio=nan, small_edge_ratio=nan, peak_sharpness=nan,
                      peak_step=np.full(members, -1), final_sharpness=nan,
                      edge_probes=np.zeros(members, int))
        if probe_every:
            sharp = np.asarray(h.sharpness, float)
            probed.update(_probe_summary(np.asarray(h.probe_step), sharp, eta_m, cut,
                                         None if switch is None else np.full(members, eta_small)))
            lo_w = (np.repeat(window[idx], seeds) if window is not None
                    else np.where(np.isfinite(cut), cut, -1))
            ps = np.broadcast_to(np.asarray(h.probe_step), sharp.shape)
            after = (ps > lo_w[:, None]) & np.isfinite(sharp)
            probed["s_max"] = np.where(after.any(1),
                                       np.max(np.where(after, sharp, -np.inf), 1), np.nan)
            if window is None and switch is not None:  # never switched: no S_max after a switch
                probed["s_max"] = np.where(switch_step >= 0, probed["s_max"], np.nan)
        noisy = (np.repeat(noise[idx], seeds) > 0) if noise is not None else np.zeros(members, bool)
        probed["loss_rose"] = np.where(noisy, np.nan, _loss_rose(h.loss, cut))
        diverged = np.asarray(ev.result.diverged)
        probed["s_max"] = np.where(diverged, np.inf, probed["s_max"])
        shape = (g, seeds)
        parts.append(dict(
            diverged=diverged.reshape(shape), completed=(done >= 0).reshape(shape),
            stopped=(stop >= 0).reshape(shape),
            test_acc=stopping.take(ev.metrics["test"]["accuracy"], stop).reshape(shape),
            val_acc=stopping.take(ev.metrics["val"]["accuracy"], stop).reshape(shape),
            final_train_acc=ev.metrics["train"]["accuracy"][:, -1].reshape(shape),
            **{k: np.asarray(v).reshape(shape) for k, v in probed.items()},
            switch_step=switch_step.reshape(shape),
            completion_step=np.where(done >= 0, eval_steps[np.maximum(done, 0)], -1).reshape(shape),
            stop_step=np.where(stop >= 0, eval_steps[np.maximum(stop, 0)], -1).reshape(shape),
            params=ev.result.state.params, etas=etas[idx]))
        if block < g_all and parts[-1]["diverged"][-1].all():
            break
    cat = {k: np.concatenate([q[k] for q in parts]) for k in parts[0] if k != "params"}
    params_out = jax.tree.map(lambda *a: jnp.concatenate(a), *[q["params"] for q in parts])
    return Sweep(params=params_out, **cat)


def stability_threshold(sw: Sweep) -> dict:
    """The stability threshold of a probed sweep, read where it is defined: 2 / the largest
    sharpness any seed of the *smallest* η reached over its whole run (under cross-entropy the
    sharpness peaks, then collapses once the training set is fitted, so 2/S at the end would
    read too high). Returns ``threshold_eta``, ``threshold_peak_sharpness``,
    ``threshold_peak_step`` (the probe step of that peak), ``threshold_final_sharpness`` and
    ``threshold_final_ratio`` (peak / final sharpness of the seed the peak comes from), and
    ``threshold_run_stable`` (1.0 when no seed of the smallest η reached the edge, so the peak
    is a stable run's; else 0.0 and the threshold is at most that η). NaN without probes."""
    peak = np.asarray(sw.peak_sharpness[0], float)
    nan = float("nan")
    if not np.isfinite(peak).any():
        return {"threshold_eta": nan, "threshold_peak_sharpness": nan, "threshold_peak_step": -1,
                "threshold_final_sharpness": nan, "threshold_final_ratio": nan,
                "threshold_run_stable": nan, "threshold_seed": -1}
    r = int(np.nanargmax(peak))
    s, final = float(peak[r]), float(sw.final_sharpness[0, r])
    return {"threshold_eta": 2.0 / s, "threshold_peak_sharpness": s,
            "threshold_peak_step": int(sw.peak_step[0, r]), "threshold_final_sharpness": final,
            "threshold_final_ratio": s / final if final > 0 else nan,
            "threshold_run_stable": float(not sw.reached_edge[0].any()), "threshold_seed": r}


def noise_until(loss_fn, alpha, until, batch_size: int, *, key: jax.Array
                ) -> optax.GradientTransformationExtraArgs:
    """:func:`eoslib.engine.optim.noise_scaled_gradient` with noise scale ``alpha`` for the
    updates ``count < until`` and 0 (full-batch GD) from then on: ``(1 − a)·g + a·g_B`` with
    ``a = alpha`` before and ``a = 0`` after, ``g`` the full-batch and ``g_B`` the minibatch
    gradient. ``alpha`` and ``until`` may be traced (``until = inf``: never switch); the minibatch
    order is that of ``noise_scaled_gradient`` with the same ``key`` and ``batch_size``. Chain it
    before the step size, as ``noise_scaled_gradient``."""
    minibatch = optim.noise_scaled_gradient(loss_fn, 1.0, batch_size, key=key)  # α = 1: g_B

    def update_fn(updates, state, params=None, *, batch=None, **extra_args):
        del extra_args
        g_b, new_state = minibatch.update(updates, state, params, batch=batch)
        a = jnp.where(state.count < until, jnp.asarray(alpha), 0.0)
        mixed = jax.tree.map(lambda g, gb: (1 - a).astype(g.dtype) * g + a.astype(g.dtype) * gb,
                             updates, g_b)
        return mixed, new_state

    return optax.GradientTransformationExtraArgs(minibatch.init, update_fn)


def sde_temperature(eta: Float[np.ndarray, "..."], alpha: Float[np.ndarray, "..."]
                    ) -> np.ndarray:
    """The SDE view's effective temperature of the noise-scaled update, up to the factor
    ``σ²/B`` that a grid at one batch size shares: ``T ∝ η α²`` (the paper's Eqs. 7 and 9 were
    lost in our copy; the minibatch noise of covariance ``σ²/B`` scaled by α enters the SDE's
    diffusion as ``η α² σ²/B``)."""
    return np.asarray(eta, float) * np.asarray(alpha, float) ** 2


def equal_temperature_gap(etas: Float[np.ndarray, " G"], alphas: Float[np.ndarray, " G"],
                          line: Float[np.ndarray, " G"], test_acc: Float[np.ndarray, "G R"],
                          *, paired: bool = False, min_runs: int = 1) -> dict[str, float]:
    """The noise-scale grid against the SDE view. ``line`` labels the runs that share one
    temperature ``η α²``; on each line the gap is the mean test accuracy at its largest η minus
    that at its smallest η (NaN accuracy: diverged or incomplete runs, left out). The SDE view
    predicts 0. Returns the mean gap over the lines that have usable runs at both ends, its
    standard error from the pooled within-configuration seed spread, the number of such lines,
    and the largest relative spread of ``η α²`` within a line (0 when the grid conserves it).

    By default the lines' gaps are treated as independent (``√(Σ var)/n``). With ``paired`` the
    lines share their seeds (and so their initialisations), so their gaps may be positively
    correlated, and the standard error is the mean of the lines' own standard errors: the
    largest the mean's can be whatever the correlation (up to √n larger than the independent
    value).

    ``min_runs`` (default 1) is the usable runs each end of a line needs for the line to count:
    a line's ends are its smallest and largest η whatever happened there, and a line with an end
    below ``min_runs`` is left out (its one survivor's accuracy is survivorship-selected). Also
    returned: ``sde_min_runs_low`` / ``sde_min_runs_high``, the fewest usable runs at the low /
    high ends over the counted lines (0 without one)."""
    etas, alphas = np.asarray(etas, float), np.asarray(alphas, float)
    line, acc = np.asarray(line), np.asarray(test_acc, float)
    if not (etas.shape == alphas.shape == line.shape) or acc.shape[0] != etas.size:
        raise ValueError(f"etas {etas.shape}, alphas {alphas.shape}, line {line.shape} and "
                         f"test_acc {acc.shape} must be (G,), (G,), (G,), (G, R)")
    if isinstance(min_runs, bool) or not isinstance(min_runs, (int, np.integer)) or min_runs < 1:
        raise ValueError(f"min_runs={min_runs!r} must be an int >= 1")
    sd = _pooled_sd(acc)
    gaps, var, spread, n_lo, n_hi = [], [], 0.0, [], []
    for label in np.unique(line):
        on = np.flatnonzero(line == label)
        t = sde_temperature(etas[on], alphas[on])
        spread = max(spread, float((t.max() - t.min()) / t.max()) if t.max() > 0 else 0.0)
        lo, hi = on[np.argmin(etas[on])], on[np.argmax(etas[on])]
        a_lo, a_hi = acc[lo][~np.isnan(acc[lo])], acc[hi][~np.isnan(acc[hi])]
        if lo == hi or a_lo.size < min_runs or a_hi.size < min_runs or a_lo.size == 0 \
                or a_hi.size == 0:
            continue
        n_lo.append(a_lo.size)
        n_hi.append(a_hi.size)
        gaps.append(a_hi.mean() - a_lo.mean())
        var.append(sd ** 2 * (1 / a_hi.size + 1 / a_lo.size))
    n = len(gaps)
    gap = float(np.mean(gaps)) if n else float("nan")
    if not n:
        se = float("nan")
    elif paired:
        se = float(np.mean(np.sqrt(var)))
    else:
        se = float(np.sqrt(np.sum(var)) / n)
    return {"sde_equal_temperature_gap": gap, "sde_gap_se": se, "n_sde_lines": n,
            "sde_temperature_spread": spread, "sde_min_runs_low": int(min(n_lo, default=0)),
            "sde_min_runs_high": int(min(n_hi, default=0))}


def end_to_end_gain(etas: Float[np.ndarray, " G"], test_acc: Float[np.ndarray, "G R"],
                    *, min_runs: int = 1) -> dict[str, float]:
    """Table 1's trend on a grid of η: mean test accuracy at the largest usable η minus that at
    the smallest usable η, with its standard error from the pooled seed spread, the rank
    correlation of the per-η mean with η (three usable η or more), the number of usable η and
    the smallest and largest of them. A *usable* η has at least ``min_runs`` completed,
    non-diverged runs (default 1; a larger value keeps the comparison off an η where most runs
    failed, whose survivors' accuracy is survivorship-selected). Also returned:
    ``n_runs_smallest`` / ``n_runs_largest``, the usable runs at the two ends (0 where there is
    no usable η), and ``largest_any_eta``, the largest η with any usable run."""
    etas, acc = np.asarray(etas, float), np.asarray(test_acc, float)
    if acc.shape[0] != etas.size:
        raise ValueError(f"etas {etas.shape} and test_acc {acc.shape} must be (G,) and (G, R)")
    if isinstance(min_runs, bool) or not isinstance(min_runs, (int, np.integer)) or min_runs < 1:
        raise ValueError(f"min_runs={min_runs!r} must be an int >= 1")
    n_ok = (~np.isnan(acc)).sum(1)
    usable = np.flatnonzero(n_ok >= min_runs)
    anyrun = np.flatnonzero(n_ok >= 1)
    nan = float("nan")
    out = {"gain": nan, "gain_se": nan, "rank_corr": nan, "n_usable": int(usable.size),
           "smallest_usable_eta": float(etas[usable[0]]) if usable.size else nan,
           "largest_usable_eta": float(etas[usable[-1]]) if usable.size else nan,
           "n_runs_smallest": int(n_ok[usable[0]]) if usable.size else 0,
           "n_runs_largest": int(n_ok[usable[-1]]) if usable.size else 0,
           "largest_any_eta": float(etas[anyrun[-1]]) if anyrun.size else nan}
    if usable.size < 2:
        return out
    lo, hi = acc[usable[0]], acc[usable[-1]]
    lo, hi = lo[~np.isnan(lo)], hi[~np.isnan(hi)]
    out["gain"] = float(hi.mean() - lo.mean())
    out["gain_se"] = float(_pooled_sd(acc) * np.sqrt(1 / hi.size + 1 / lo.size))
    out["rank_corr"] = rank_corr(etas[usable], [np.nanmean(acc[i]) for i in usable])
    return out


# ----------------------------------------------------------------------------- experiments
#
# The chapter runs each experiment twice, on the fMNIST MLP and on the paper's VGG10 on
# CIFAR-10 5k: these functions are the experiments, returning the sweep and the record's metrics
# (unprefixed; the chapter prefixes the VGG's with "vgg_").


def z_score(diff: float, se: float) -> float:
    """A difference in units of its standard error (NaN when either is not measured; ±inf for a
    nonzero difference with a zero standard error)."""
    if not (np.isfinite(diff) and np.isfinite(se)):
        return float("nan")
    return float(diff / se) if se > 0 else float(np.sign(diff) * np.inf)


def merge_metrics(*parts: dict) -> dict:
    """The experiments' metrics merged into one record, refusing a key that two of them write
    (a plain ``{**a, **b}`` would keep ``b``'s value and lose ``a``'s without a word)."""
    out: dict = {}
    for part in parts:
        clash = sorted(set(out) & set(part))
        if clash:
            raise ValueError(f"metric keys written twice: {clash}")
        out.update(part)
    return out


def _counts(sw: Sweep, prefix: str = "") -> dict[str, int]:
    return {f"{prefix}n_diverged": int(sw.diverged.sum()),
            f"{prefix}n_incomplete": int((~sw.completed & ~sw.diverged).sum()),
            f"{prefix}n_no_reversal": int((sw.completed & ~sw.stopped).sum())}


def _edge_metrics(sw: Sweep, prefix: str = "") -> dict:
    """Every run's own edge flag for the record, and what it read: the largest S·η/2 before any
    switch (None where not measured) with the number of probes behind it, and the every-step
    loss-rise flag (None for noisy runs)."""
    return {f"{prefix}reached_edge": sw.reached_edge.tolist(),
            f"{prefix}edge_ratio": np.where(np.isnan(sw.edge_ratio), None,
                                            sw.edge_ratio).tolist(),
            f"{prefix}edge_probes": np.asarray(sw.edge_probes, int).tolist(),
            f"{prefix}loss_rose": np.where(np.isnan(sw.loss_rose), None,
                                           sw.loss_rose).tolist()}


#: A run is *collapsed* (:func:`collapsed`) when its final train accuracy is within this of the
#: majority-class fraction (declared before the run).
COLLAPSE_MARGIN = 0.05


def collapsed(final_train_acc: Float[np.ndarray, "G R"], diverged: Bool[np.ndarray, "G R"],
              train_labels: np.ndarray, *, margin: float = COLLAPSE_MARGIN) -> np.ndarray:
    """``(G, R)`` whether each run that did not diverge *collapsed*: its final train accuracy is
    at most the majority-class fraction of ``train_labels`` (integer labels, shape ``(N,)``, or
    one-hot ``(N, C)``) plus ``margin``, i.e. at chance. Such a run failed like a diverged one
    (the step size broke training) rather than running out of steps, and is counted with the
    diverged runs, not the incomplete ones. NaN accuracy (a diverged run) is never collapsed."""
    acc = np.asarray(final_train_acc, float)
    div = np.asarray(diverged, bool)
    if acc.shape != div.shape:
        raise ValueError(f"final_train_acc {acc.shape} and diverged {div.shape} must match")
    if not 0 <= margin < 1:
        raise ValueError(f"margin={margin!r} must be in [0, 1)")
    y = np.asarray(train_labels)
    y = y.argmax(-1) if y.ndim == 2 else y
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"train_labels {np.shape(train_labels)} must be (N,) labels or (N, C) "
                         "one-hot, N >= 1")
    chance = np.unique(y, return_counts=True)[1].max() / y.size
    with np.errstate(invalid="ignore"):
        return ~div & (acc <= chance + margin)


def goldilocks_peak_before_failures(etas: Float[np.ndarray, " G"], n_usable: np.ndarray,
                                    failed: Bool[np.ndarray, "G R"], goldilocks_eta: float, *,
                                    min_runs: int = 1, by_failures: bool = False) -> int:
    """1 when validation peaks at the last η with ``min_runs`` usable runs *and* the grid reached
    failures, else 0: some run failed (``failed``, ``(G, R)``: diverged or collapsed), the grid
    has η above ``goldilocks_eta``, and none of those has ``min_runs`` usable runs
    (``n_usable``, ``(G,)``). That is "no fall before divergence", the outcome against a
    Goldilocks fall; 0 when ``goldilocks_eta`` is NaN (no Goldilocks η).

    ``by_failures=True`` also requires that every η above ``goldilocks_eta`` is short *because
    of failures*: at least ``R − min_runs + 1`` of its ``R`` runs failed, so that it could not
    have reached ``min_runs`` usable runs whatever the step budget. An η short only because runs
    did not complete within the budget gives 0 (the fall is then untested, not absent)."""
    etas, n_usable = np.asarray(etas, float), np.asarray(n_usable)
    failed = np.asarray(failed, bool)
    if n_usable.shape != etas.shape or failed.ndim != 2 or failed.shape[0] != etas.size:
        raise ValueError(f"etas {etas.shape}, n_usable {n_usable.shape} and failed "
                         f"{failed.shape} must be (G,), (G,), (G, R)")
    if isinstance(min_runs, bool) or not isinstance(min_runs, (int, np.integer)) or min_runs < 1:
        raise ValueError(f"min_runs={min_runs!r} must be an int >= 1")
    if not isinstance(by_failures, bool):
        raise ValueError(f"by_failures={by_failures!r} must be True or False")
    above = etas > goldilocks_eta  # all False when goldilocks_eta is NaN
    flag = (bool(failed.any()) and bool(above.any())
            and not bool(((n_usable >= min_runs) & above).any()))
    if by_failures:
        need = failed.shape[1] - min_runs + 1
        flag = flag and bool((failed[above].sum(1) >= need).all())
    return int(flag)


def goldilocks_experiment(sp: Splits, arch: str, etas: Float[np.ndarray, " G"], *,
                          probe_every: int, microbatch: int | None = None, min_runs: int = 1,
                          comparator: str = "last", peak_by_failures: bool = False,
                          **sweep_options) -> tuple[Sweep, Goldilocks, dict]:
    """The Goldilocks sweep (Fig. 5): :func:`sweep` over ``etas`` (with ``block`` in
    ``sweep_options``, up to divergence) probing the sharpness every ``probe_every`` steps, the
    stability threshold of :func:`stability_threshold` (2 / the peak sharpness of the smallest
    η's run), and :func:`goldilocks` over each run's own edge flag. Returns the sweep, the
    summary and the metrics: the threshold and where it was read, each run's ``reached_edge``
    and ``edge_ratio``, the flat slope below the edge and the rise past it with their z-scores
    against the seed spread, the Goldilocks η and the fall before divergence, and the counts the
    claims' guards read (usable stable η, usable edge η, usable η beyond the Goldilocks η, runs
    labelled stable that reached the edge, diverged, incomplete).

    ``min_runs`` goes to :func:`goldilocks` (the usable runs a Goldilocks candidate and the
    fall's comparator need). Also: the gain at the Goldilocks η over the stable runs
    (``acc_gain_at_goldilocks``, ``acc_gain_at_goldilocks_z``), the runs behind both ends of the
    fall (``n_goldilocks_runs``, ``n_comparator_runs``; the comparator ``fall_comparator_eta``),
    ``flat_slope_se``, ``n_collapsed`` (runs at chance train
    accuracy, :func:`collapsed`), ``n_failed`` (diverged or collapsed), and where failures begin:
    ``first_failure_eta`` (the smallest η whose failed runs leave it fewer than ``min_runs``
    usable runs, with at least one failed: where the grid's failures begin, not a stray failure
    below it),
    ``n_isolated_failures`` (failed runs at smaller η), ``n_failed_at_goldilocks``,
    ``n_failed_at_first_failure`` and,
    from that η on, ``n_runs_from_first_failure`` and ``n_unusable_from_first_failure``.

    ``goldilocks_peak_before_failures`` is 1 when validation peaks at the last η with
    ``min_runs`` usable runs and the grid reached failures: a failure occurred
    (``first_failure_eta`` finite), the grid has η above the Goldilocks η, and none of them has
    ``min_runs`` usable runs (0 otherwise). Accuracy still rising up to where the runs fail is
    the outcome that contradicts a fall before divergence. Beside it, ungraded: the fall against
    the next η above the Goldilocks η with at least 2 usable runs (``acc_fall_next``,
    ``acc_fall_next_z``, ``fall_next_eta``, ``n_fall_next_runs``; NaN / 0 without one).

    ``comparator`` goes to :func:`goldilocks` (``"pooled"``: the fall against every η above the
    Goldilocks η with ``min_runs`` usable runs; then ``n_comparator_runs`` counts the pooled
    runs and ``fall_comparator_eta_low`` is the smallest pooled η); ``peak_by_failures`` to
    :func:`goldilocks_peak_before_failures` (``by_failures``). Whatever the comparator, the fall
    against the largest η with ``min_runs`` usable runs alone is reported as ``acc_fall_last``,
    ``acc_fall_last_z``, and ``n_comparator_etas`` counts the η above the Goldilocks η with
    ``min_runs`` usable runs."""
    run = sweep(sp, arch, etas, microbatch=microbatch, probe_every=probe_every,
                window_start=np.full(np.size(etas), -1.0), **sweep_options)
    threshold = stability_threshold(run)
    gl = goldilocks(run.etas, run.test_acc, run.val_acc, run.reached_edge, min_runs=min_runs,
                    comparator=comparator)
    n_ok = (~np.isnan(run.test_acc)).sum(1)
    col = collapsed(run.final_train_acc, run.diverged, sp.train.y)
    failed = run.diverged | col
    fail_rows = np.flatnonzero(failed.any(1) & (failed.shape[1] - failed.sum(1) < min_runs))
    f0 = int(fail_rows[0]) if fail_rows.size else run.etas.size
    g_i = np.flatnonzero(run.etas == gl.goldilocks_eta)
    later = np.flatnonzero((n_ok >= min_runs) & (run.etas > gl.goldilocks_eta))
    usable = run.etas[gl.usable]
    above = run.etas > gl.goldilocks_eta  # all False when the Goldilocks η is NaN
    peak_before_failures = goldilocks_peak_before_failures(run.etas, n_ok, failed,
                                                           gl.goldilocks_eta, min_runs=min_runs,
                                                           by_failures=peak_by_failures)
    fall_last = fall_last_se = float("nan")
    if later.size and g_i.size:
        n_g, n_l = int(n_ok[g_i[0]]), int(n_ok[later[-1]])
        fall_last = float(gl.mean_test[g_i[0]] - gl.mean_test[later[-1]])
        fall_last_se = float(gl.seed_sd * np.sqrt(1 / n_g + 1 / n_l))
    n_compared = (int(n_ok[later].sum()) if comparator == "pooled" else int(n_ok[later[-1]])) \
        if later.size else 0
    nxt = np.flatnonzero((n_ok >= 2) & above)
    fall_next = fall_next_se = float("nan")
    if nxt.size and g_i.size:
        n_g, n_x = int(n_ok[g_i[0]]), int(n_ok[nxt[0]])
        fall_next = float(gl.mean_test[g_i[0]] - gl.mean_test[nxt[0]])
        fall_next_se = float(gl.seed_sd * np.sqrt(1 / n_g + 1 / n_x))
    span = (float(np.log(run.etas[gl.stable].max() / run.etas[gl.stable].min()))
            if gl.stable.sum() >= 2 else float("nan"))
    metrics = {
        "etas": run.etas.tolist(), **threshold, "stability_eta": threshold["threshold_eta"],
        **_edge_metrics(run),
        "flat_slope": gl.flat_slope, "flat_change": gl.flat_slope * span,
        "flat_abs_z": abs(z_score(gl.flat_slope, gl.flat_slope_se)),
        "first_edge_eta": gl.first_edge_eta, "acc_rise_past_edge": gl.acc_rise,
        "acc_rise_z": z_score(gl.acc_rise, gl.rise_se), "goldilocks_eta": gl.goldilocks_eta,
        "acc_fall_before_divergence": gl.acc_fall, "acc_fall_z": z_score(gl.acc_fall, gl.fall_se),
        "largest_usable_eta": float(usable[-1]) if usable.size else float("nan"),
        "seed_sd": gl.seed_sd, "n_eta_stable": int(gl.stable.sum()),
        "n_eta_edge": int(gl.edge.sum()),
        "n_eta_mixed": int((gl.usable & ~gl.stable & ~gl.edge).sum()),
        "n_stable_at_edge": int((run.reached_edge & gl.stable[:, None]).sum()),
        "n_eta_beyond_goldilocks": int(((n_ok >= min_runs) & gl.usable
                                         & (run.etas > gl.goldilocks_eta)).sum()),
        **_counts(run), "mean_test_acc": gl.mean_test.tolist(),
        "goldilocks_min_runs": int(min_runs), "flat_slope_se": gl.flat_slope_se,
        "fall_comparator_eta": float(run.etas[later[-1]]) if later.size else float("nan"),
        "acc_gain_at_goldilocks": gl.gain_at_goldilocks,
        "acc_gain_at_goldilocks_z": z_score(gl.gain_at_goldilocks, gl.gain_se),
        "goldilocks_over_threshold": gl.goldilocks_eta / threshold["threshold_eta"],
        "n_goldilocks_runs": int(n_ok[g_i[0]]) if g_i.size else 0,
        "n_comparator_runs": n_compared,
        "n_comparator_etas": int(later.size),
        "fall_comparator_eta_low": float(run.etas[later[0]]) if later.size else float("nan"),
        "acc_fall_last": fall_last, "acc_fall_last_z": z_score(fall_last, fall_last_se),
        "n_usable_runs": n_ok.tolist(),
        "n_collapsed": int(col.sum()), "n_failed": int(failed.sum()),
        "first_failure_eta": float(run.etas[f0]) if fail_rows.size else float("nan"),
        "n_failed_at_first_failure": int(failed[f0].sum()) if fail_rows.size else 0,
        "n_isolated_failures": int(failed[:f0].sum()),
        "n_failed_at_goldilocks": int(failed[g_i].sum()) if g_i.size else 0,
        "n_runs_from_first_failure": int(failed[f0:].size),
        "n_unusable_from_first_failure": int(np.isnan(run.test_acc[f0:]).sum()),
        "goldilocks_peak_before_failures": peak_before_failures,
        "acc_fall_next": fall_next, "acc_fall_next_z": z_score(fall_next, fall_next_se),
        "fall_next_eta": float(run.etas[nxt[0]]) if nxt.size else float("nan"),
        "n_fall_next_runs": int(n_ok[nxt[0]]) if nxt.size else 0}
    return run, gl, metrics


def switch_rows(a: np.ndarray, n_eta0: int, switches: int, seeds: int) -> np.ndarray:
    """A switch sweep's ``(η₀ × switch, seed)`` array as ``(seed × η₀ rows, switch)``."""
    return np.asarray(a).reshape(n_eta0, switches, seeds).transpose(2, 0, 1).reshape(-1, switches)


def _fall_rate(slope: float) -> float:
    """How fast log S_max falls with the switch point (0 if it rises; NaN if not measured)."""
    return max(-slope, 0.0) if np.isfinite(slope) else float("nan")


#: In the claim flatter-generalizes a pair of runs is decided only when their S_max differ by at least this
#: fraction of the larger (5 %) ...
FLATTER_MIN_REL_DS = 0.05
#: ... and their test accuracies by at least this many test images (declared before the run).
FLATTER_MIN_IMAGES = 3


def flatter_pairs(s_max: Float[np.ndarray, "R K"], test_acc: Float[np.ndarray, "R K"], *,
                  min_rel_ds: float = 0.0, min_dacc: float = 0.0) -> dict[str, float]:
    """"For the majority of models, being flatter improves generalization" (Fig. 6 of *Can
    stability be detrimental?*), over the pairs of models within one row (one seed and η₀,
    switched at different points): a pair is *decided* when its S_max differ by at least
    ``min_rel_ds`` of the larger and its test accuracies by at least ``min_dacc`` (and neither
    is zero or NaN); it is *better* when its flatter model (lower S_max) has the higher test
    accuracy, *worse* when the lower one. Returns the counts, their difference
    ``flatter_majority_pairs``, the fraction better of the decided pairs and
    ``flatter_sign_p``, the one-sided sign test's p-value (``scipy.stats.binomtest``: better
    ~ Binomial(decided, ½), alternative "greater"; NaN without a decided pair).

    Also, reading "the majority of models" literally: ``n_flatter_smax_pairs``, the pairs whose
    S_max differ (by at least ``min_rel_ds`` of the larger, both accuracies measured), and
    ``flatter_better_fraction_smax``, the fraction of them whose flatter model is *better* (an
    accuracy tie, below ``min_dacc``, counts as not improved; NaN without such a pair)."""
    s, a = np.asarray(s_max, float), np.asarray(test_acc, float)
    better = worse = n_smax = 0
    for s_row, a_row in zip(s, a):
        for i in range(s_row.size):
            for j in range(i + 1, s_row.size):
                ds, da = s_row[j] - s_row[i], a_row[j] - a_row[i]
                if not (np.isfinite(ds) and np.isfinite(da)) or ds == 0:
                    continue
                if abs(ds) < min_rel_ds * max(abs(s_row[i]), abs(s_row[j])):
                    continue
                n_smax += 1
                if da == 0 or abs(da) < min_dacc * (1 - 1e-9):  # k images are k/n, up to rounding
                    continue
                better += int(np.sign(ds) != np.sign(da))
                worse += int(np.sign(ds) == np.sign(da))
    n = better + worse
    p = float(scipy.stats.binomtest(better, n, 0.5, alternative="greater").pvalue) if n \
        else float("nan")
    return {"n_flatter_better": better, "n_flatter_worse": worse, "n_flatter_pairs": n,
            "flatter_majority_pairs": better - worse,
            "flatter_better_fraction": better / n if n else float("nan"),
            "flatter_sign_p": p, "n_flatter_smax_pairs": n_smax,
            "flatter_better_fraction_smax": better / n_smax if n_smax else float("nan")}


def flatter_rows(s_max: Float[np.ndarray, "R K"], test_acc: Float[np.ndarray, "R K"], *,
                 min_rel_ds: float = 0.0, min_dacc: float = 0.0) -> dict[str, float]:
    """:func:`flatter_pairs` with one vote per row (one seed and η₀): the runs of a row share
    their initialisation and their η₀ phase up to the earliest switch, so its pairs are not
    independent. A row votes *better* when more of its decided pairs (the same ``min_rel_ds``,
    ``min_dacc``) are better than worse, *worse* when fewer, and not at all on a tie or without
    a decided pair. Returns ``n_flatter_rows`` (voting rows), ``n_flatter_rows_better``,
    ``n_flatter_rows_worse`` and ``flatter_rows_sign_p``, the one-sided sign test's p-value over
    the voting rows (NaN without one)."""
    s, a = np.asarray(s_max, float), np.asarray(test_acc, float)
    if s.shape != a.shape or s.ndim != 2:
        raise ValueError(f"s_max {s.shape} and test_acc {a.shape} must both be (R, K)")
    better = worse = 0
    for s_row, a_row in zip(s, a):
        row = flatter_pairs(s_row[None], a_row[None], min_rel_ds=min_rel_ds, min_dacc=min_dacc)
        better += int(row["n_flatter_better"] > row["n_flatter_worse"])
        worse += int(row["n_flatter_better"] < row["n_flatter_worse"])
    n = better + worse
    p = float(scipy.stats.binomtest(better, n, 0.5, alternative="greater").pvalue) if n \
        else float("nan")
    return {"n_flatter_rows": n, "n_flatter_rows_better": better, "n_flatter_rows_worse": worse,
            "flatter_rows_sign_p": p}


def switch_experiment(sp: Splits, arch: str, eta0: Float[np.ndarray, " E"], eta_small: float,
                      switch_accuracies: Sequence[float], *, steps: int, seeds: int,
                      eval_every: int, probe_every: int, n_control: int = 0,
                      alpha: float | None = None, fit_edge_rows: bool = False,
                      **sweep_options) -> tuple[Sweep, dict]:
    """Learning-rate reduction (Figs. 4, 6; with ``alpha`` and ``batch_size`` in
    ``sweep_options``, large-η SGD switched to GD, Fig. 9): every η₀ × switch threshold × seed
    runs η₀ until its training accuracy first reaches the threshold (``switch_accuracies``, in
    increasing order; the paper's 90 % and 98 % among them), then ``eta_small`` (with ``alpha``
    the noise-scaled gradient at that α before the switch, GD after), ``steps`` steps in all,
    probing the sharpness every ``probe_every`` steps; S_max is its largest value after the
    switch, test accuracy is read at the early-stopping point after completion after the switch.
    The first ``n_control`` η₀ are stable controls.

    Metrics (:func:`switch_summary` of the other η₀'s (seed, η₀) rows, against the switch
    position 0 … 1 from the first threshold to the last): the slope of log S_max with its 95%
    CI, ``smax_fall_rate`` (−slope, 0 if it rises), the rank correlation of accuracy with S_max,
    :func:`flatter_pairs` (pairs decided at :data:`FLATTER_MIN_REL_DS` and
    :data:`FLATTER_MIN_IMAGES` test images, with the sign test), ``n_switch_rows`` (rows with
    every switch point measured; 0 with fewer than two thresholds), ``edge_rows`` (each unstable
    (seed, η₀) row and whether its run switched last reached the edge before that switch: the
    precondition that η₀ was unstable at all) and ``n_rows_not_at_edge`` (those that did not), ``switch_n_diverged``, the runs' switch and completion steps,
    ``n_unswitched`` (runs whose switch never fired, diverged ones aside), ``n_small_at_edge``
    (runs that reached the edge at η_small after the switch), each run's ``switch_reached_edge``
    flag and ``switch_edge_ratio`` before the switch (prefixed, so that they never collide with
    the Goldilocks sweep's unprefixed ``reached_edge`` in the chapter's record), the raw
    ``switch_s_max`` / ``switch_test_acc``; with controls the same summary of theirs prefixed ``control_`` and ``n_control_at_edge`` (control runs whose η₀
    phase reached the edge: the control is then not a stable one).

    Also (new keys, whatever ``fit_edge_rows``): :func:`flatter_rows` (one vote per row),
    ``smax_drop`` (``1 − exp(slope)``: the fraction by which S_max falls from the first switch
    to the last), ``switch_edge_fraction`` (per switch point, the fraction of the unstable η₀'s
    runs that had reached the edge before that switch; its first and last entries also as
    ``first_switch_edge_fraction`` and ``last_switch_edge_fraction``) and ``n_edge_rows`` (unstable rows with
    every switch point measured whose run switched last had reached the edge). With
    ``fit_edge_rows`` the slope, its CI, ``smax_fall_rate``, ``smax_drop`` and the rank
    correlation are read over those edge rows only (the rows that never reached the edge are
    stable runs, whose flattening the claim is not about); the pairs stay over every unstable
    row."""
    eta0 = np.asarray(eta0, float)
    acc_levels = np.asarray(switch_accuracies, float)
    k = acc_levels.size
    if k > 1 and np.any(np.diff(acc_levels) <= 0):
        raise ValueError(f"switch_accuracies={switch_accuracies!r} must increase")
    grid_eta, grid_acc = (a.ravel() for a in np.meshgrid(eta0, acc_levels, indexing="ij"))
    noise = None if alpha is None else np.full(grid_eta.size, float(alpha))
    sw = sweep(sp, arch, grid_eta, seeds=seeds, steps=steps, eval_every=eval_every,
               switch_accuracy=grid_acc, eta_small=eta_small, probe_every=probe_every,
               alpha=noise, **sweep_options)
    position = np.linspace(0.0, 1.0, k) if k > 1 else np.zeros(1)

    def rows(a):
        return switch_rows(a, eta0.size, k, seeds)

    def summary(keep):
        keep = np.tile(keep, seeds)
        out = switch_summary(position, rows(sw.s_max)[keep], rows(sw.test_acc)[keep],
                             rows(sw.diverged)[keep])
        s_ok = np.where(rows(sw.diverged)[keep], np.nan, rows(sw.s_max)[keep])
        out.update(flatter_pairs(s_ok, rows(sw.test_acc)[keep], min_rel_ds=FLATTER_MIN_REL_DS,
                                 min_dacc=FLATTER_MIN_IMAGES / len(sp.test)))
        out.update(flatter_rows(s_ok, rows(sw.test_acc)[keep], min_rel_ds=FLATTER_MIN_REL_DS,
                                min_dacc=FLATTER_MIN_IMAGES / len(sp.test)))
        return out

    unstable = np.arange(eta0.size) >= n_control
    metrics = summary(unstable)
    del metrics["n_diverged"]  # counted over every run below (switch_n_diverged)
    on = np.tile(unstable, seeds)
    s_rows = rows(np.where(sw.diverged, np.nan, sw.s_max))
    usable = s_rows[on]
    metrics["n_switch_rows"] = int((~np.isnan(usable).any(1)).sum()) if k >= 2 else 0
    # the runs of one row share η₀ and seed up to their switches, so the one switched last saw
    # every step any of them ran at η₀: did the row reach the edge (probe or loss rise) by then?
    last = rows(sw.reached_edge)[:, -1]
    row_seed = np.repeat(np.arange(seeds), eta0.size)
    row_eta0 = np.tile(np.arange(eta0.size), seeds)
    edge_row = on & last & ~np.isnan(s_rows).any(1)
    metrics["n_edge_rows"] = int(edge_row.sum()) if k >= 2 else 0
    if fit_edge_rows:
        fit = switch_summary(position, rows(sw.s_max)[edge_row], rows(sw.test_acc)[edge_row],
                             rows(sw.diverged)[edge_row])
        del fit["n_diverged"]
        metrics.update(fit)
    metrics["smax_fall_rate"] = _fall_rate(metrics["smax_vs_switch_slope"])
    metrics["smax_drop"] = (float(1 - np.exp(metrics["smax_vs_switch_slope"]))
                            if np.isfinite(metrics["smax_vs_switch_slope"]) else float("nan"))
    at_edge = rows(sw.reached_edge)[on]
    metrics["switch_edge_fraction"] = ([float(v) for v in at_edge.mean(0)] if at_edge.size
                                       else [float("nan")] * k)
    metrics["first_switch_edge_fraction"] = metrics["switch_edge_fraction"][0]
    metrics["last_switch_edge_fraction"] = metrics["switch_edge_fraction"][-1]
    metrics["edge_rows"] = [{"seed": int(r), "eta0": float(eta0[e]), "reached_edge": bool(b)}
                            for r, e, b in zip(row_seed[on], row_eta0[on], last[on])]
    metrics["n_rows_not_at_edge"] = int((~last[on]).sum())
    if n_control:
        control = summary(~unstable)
        metrics.update({f"control_{key}": val for key, val in control.items()})
        metrics["control_smax_fall_rate"] = _fall_rate(control["smax_vs_switch_slope"])
        is_control = np.repeat(~unstable, k)
        metrics["n_control_at_edge"] = int(sw.reached_edge[is_control].sum())
        metrics["control_edge_ratio_max"] = float(np.nanmax(sw.edge_ratio[is_control])) \
            if np.isfinite(sw.edge_ratio[is_control]).any() else float("nan")
    done = sw.completed & ~sw.diverged
    metrics.update({
        "switch_steps": sw.switch_step.tolist(), "completion_steps": sw.completion_step.tolist(),
        "n_unswitched": int(((sw.switch_step < 0) & ~sw.diverged).sum()),
        "n_switch_not_before_completion": int((done & (sw.completion_step <= sw.switch_step)).sum()),
        "n_small_at_edge": int((np.nan_to_num(sw.small_edge_ratio) >= 1).sum()),
        **_edge_metrics(sw, "switch_"), **_counts(sw, "switch_"),
        "switch_s_max": sw.s_max.tolist(), "switch_test_acc": sw.test_acc.tolist()})
    return sw, metrics


class NoiseGrid(NamedTuple):
    """The noise-scale grid of Fig. 8: per run its equal-temperature ``line`` (the last, number
    ``len(alphas0)``, is full-batch GD at α = 0, for reference), ``eta`` and ``alpha``."""

    line: np.ndarray
    eta: np.ndarray
    alpha: np.ndarray


def noise_grid(etas: Float[np.ndarray, " G"], alphas0: Sequence[float]) -> NoiseGrid:
    """One equal-temperature line per ``alphas0`` entry α₀: every η of ``etas`` with
    ``α(η) = α₀·√(η_min/η)`` (η·α² conserved), then a GD line (α = 0) at the same η."""
    etas = np.asarray(etas, float)
    lines = np.asarray(alphas0, float)
    if etas.ndim != 1 or etas.size < 1 or lines.ndim != 1 or lines.size < 1:
        raise ValueError(f"etas={etas!r} and alphas0={alphas0!r} must be non-empty 1-d lists")
    return NoiseGrid(np.repeat(np.arange(lines.size + 1), etas.size),
                     np.tile(etas, lines.size + 1),
                     np.concatenate([a0 * np.sqrt(etas.min() / etas) for a0 in lines]
                                    + [np.zeros(etas.size)]))


def equal_temperature_experiment(sp: Splits, arch: str, etas: Float[np.ndarray, " G"],
                                 alphas0: Sequence[float], *, batch_size: int,
                                 probe_every: int = 0, paired_se: bool = False,
                                 min_runs: int = 1, **sweep_options
                                 ) -> tuple[Sweep, NoiseGrid, dict]:
    """The noise-scale experiment (Fig. 8): :func:`sweep` over :func:`noise_grid` with the
    noise-scaled gradient at ``batch_size``, and :func:`equal_temperature_gap` over the
    equal-temperature lines. The GD line (α = 0 at the same η) is the precondition: the SDE view
    can only be seen to miss an η effect where η matters under GD, so ``sde_gd_gain`` (its mean
    test accuracy at the largest η minus the smallest, with ``sde_gd_gain_z`` against the seed
    spread) says whether it does. Metrics: the gap, its standard error and z-score
    (``sde_gap_z``), ``n_sde_lines``, the GD gain, the grid, the accuracies, every run's edge
    flag (with ``probe_every``) and the counts. ``paired_se`` goes to
    :func:`equal_temperature_gap` as ``paired`` (the lines share seeds); ``min_runs`` (default
    1) to it and to the GD line's :func:`end_to_end_gain` (the usable runs each end needs)."""
    grid = noise_grid(etas, alphas0)
    sw = sweep(sp, arch, grid.eta, alpha=grid.alpha, batch_size=batch_size,
               probe_every=probe_every, window_start=np.full(grid.eta.size, -1.0),
               **sweep_options)
    on = grid.line < len(alphas0)
    metrics = equal_temperature_gap(grid.eta[on], grid.alpha[on], grid.line[on], sw.test_acc[on],
                                    paired=paired_se, min_runs=min_runs)
    metrics["sde_gap_z"] = z_score(metrics["sde_equal_temperature_gap"], metrics["sde_gap_se"])
    gd = end_to_end_gain(grid.eta[~on], sw.test_acc[~on], min_runs=min_runs)
    metrics.update({"sde_gd_gain": gd["gain"], "sde_gd_gain_z": z_score(gd["gain"], gd["gain_se"]),
                    "sde_etas": grid.eta.tolist(), "sde_alphas_used": grid.alpha.tolist(),
                    "sde_test_acc": sw.test_acc.tolist(), **_counts(sw, "sde_")})
    if probe_every:
        metrics.update(_edge_metrics(sw, "sde_"))
    return sw, grid, metrics


#: The step sizes of the flatness-bias paper's Table 1 (its Sec. 6.5).
PAPER_TABLE_ETAS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
#: Table 1 itself, for each (network, training set) the test accuracy in percent at each η of
#: :data:`PAPER_TABLE_ETAS`, full-batch GD after completion.
PAPER_TABLE = {("vgg19", "50k"): (67.1, 68.4, 70.5, 73.4, 72.7, 73.6),
               ("vgg19", "500k"): (78.1, 80.6, 81.7, 82.9, 84.0, 84.1),
               ("resnet20", "500k"): (83.7, 85.6, 86.1, 86.5, 87.0, 87.3)}


def rank_corr(x: Float[np.ndarray, " G"], y: Float[np.ndarray, " G"]) -> float:
    """Spearman's rank correlation of ``x`` and ``y`` over the entries where both are finite:
    the Pearson correlation of their ranks, tied values sharing their mean rank (NaN with fewer
    than three such entries, or when either is constant over them)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(scipy.stats.rankdata(x[ok]), scipy.stats.rankdata(y[ok]))[0, 1])


def table_experiment(base: Splits, cells: Sequence[tuple[str, int]], etas: Float[np.ndarray, " G"],
                     *, augment_seed: int, options: dict | None = None, **sweep_options
                     ) -> tuple[dict[str, Sweep], dict]:
    """Table 1 (Sec. 6.5): for each cell ``(arch, copies)`` a :func:`sweep` over ``etas`` on
    ``base.train`` statically augmented ``copies`` times (:func:`eoslib.engine.data.augment_static`
    with ``augment_seed``; 1: as it is), with ``base``'s validation and test sets, then
    :func:`table_summary`. ``options`` are passed to each architecture that takes them (e.g.
    ``ghost_size``; the ResNet and the VGG both do). Cells are named ``f"{arch}_x{copies}"``;
    a grid cut short by the divergence stop is padded with NaN (diverged). Returns the sweeps by
    name and the metrics."""
    etas = np.asarray(etas, float)
    runs, accs = {}, {}
    for arch, copies in cells:
        train_set = base.train if copies == 1 else data.augment_static(base.train, copies,
                                                                         seed=augment_seed)
        allowed = models.options(arch)
        opts = {k: v for k, v in (options or {}).items() if k in allowed}
        name = f"{arch}_x{copies}"
        options_here = dict(sweep_options)
        if options_here.get("checkpoint") is not None:  # one set of checkpoints per cell
            options_here["checkpoint"] = (lambda block, run, steps, cell=name,
                                          outer=options_here["checkpoint"]:
                                          outer(f"{cell}-{block}", run, steps))
        runs[name] = sweep(Splits(train_set, base.val, base.test), arch, etas,
                           arch_options=opts, **options_here)
        accs[name] = np.full((etas.size, runs[name].test_acc.shape[1]), np.nan)
        accs[name][:len(runs[name].etas)] = runs[name].test_acc
    return runs, table_summary(etas, accs)


def table_summary(etas: Float[np.ndarray, " G"], cells: dict[str, Float[np.ndarray, "G R"]]
                  ) -> dict:
    """Table 1's trend over its cells (a model on a training set, ``{name: test_acc (G, R)}``
    at the same ``etas``; NaN for diverged or incomplete runs): per cell the seed-mean test
    accuracy and its rank correlation with η (:func:`rank_corr`, the usable η only);
    ``table_rank_corr`` is the mean of the cells' correlations that are measured and
    ``n_table_cells`` how many those are. The paper's own (:data:`PAPER_TABLE`) is 0.94 –
    1.0 per row."""
    etas = np.asarray(etas, float)
    out: dict = {"table_etas": etas.tolist(), "table_cells": list(cells)}
    corrs = []
    for name, acc in cells.items():
        acc = np.asarray(acc, float)
        if acc.shape[0] != etas.size:
            raise ValueError(f"cells[{name!r}] {acc.shape} must be (G, R) with G = {etas.size}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(acc, 1)
        out[f"table_{name}_mean_acc"] = mean.tolist()
        out[f"table_{name}_rank_corr"] = rho = rank_corr(etas, mean)
        if np.isfinite(rho):
            corrs.append(rho)
    out["table_rank_corr"] = float(np.mean(corrs)) if corrs else float("nan")
    out["n_table_cells"] = len(corrs)
    return out
