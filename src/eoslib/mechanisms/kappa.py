"""The coupled instability model of higher-order curvature (Wang & Roberts, flatness-bias paper).

Sec. 5 and App. F.1 of the paper model a positive higher-order curvature measure κ (a fourth-
derivative envelope along the sharpest directions) and the *instability surplus*
``s = η λ − c`` (how far the step size exceeds the local stability limit ``c``; ``c = 2`` for a
quadratic) as a coupled stochastic system. The math symbols of our copy were stripped; from the
surrounding text we reconstruct it as

.. math::

    \\log κ_{t+1} = \\log κ_t + ξ_t\\, g(s_t), \\qquad s_t = η\\,(f(κ_t) + ε_t) − c,

with ``ξ_t`` i.i.d. Rademacher signs, ``g`` positive and strictly increasing (instability sets the
size of the curvature fluctuations), ``f`` non-decreasing (larger κ, sharper landscape), ``ε_t``
zero-mean noise, and the process absorbed ("exits") the first time ``s ≤ 0`` (Asp. 5.2 / C6).

Writing ``X = log κ`` and ``h(X) = g(s(X))`` (noise-free), the walk ``X_{t+1} = X_t ± h(X_t)`` is a
martingale whose step grows with X. Of the four two-step branches from a point mass, ``(+,+)``
goes right and ``(+,−)``, ``(−,+)``, ``(−,−)`` go left (:func:`two_step_branches`; the paper's
point-mass contraction, Thm. 5.4): the median drifts left while the mean is conserved, so the law
of κ becomes right-skewed — the flatness bias.

:data:`CASES` holds our concrete instances of the paper's three simulated cases (App. F.11), whose
functions were not in our copy: I (g Lipschitz in X, unimodal start), II (g not Lipschitz at the
exit, unimodal start) and III (Case I's g, bimodal start).

**Absorption must be reachable.** If ``g(s) → 0`` as ``s → 0`` fast enough (e.g. ``g ∝ s`` with
``s = e^X − 1 ≥ X``), a walk next to the exit takes steps smaller than its distance to it and, in
exact arithmetic, is never absorbed; the "exits" of such a simulation are round-off in
``exp(X) − c``. Our g therefore have a positive floor ``g ≥ G_FLOOR`` on ``s > 0`` (the positive
floor of Prop. F.11), the surplus is computed without cancellation (``expm1``) and
:func:`simulate` runs in float64.
"""

from __future__ import annotations

import dataclasses
import numbers
import operator
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["CoupledModel", "CASES", "G_FLOOR", "sigmoid_continuation", "ModeCheck", "mode_check", "Simulation", "simulate", "initial_log_kappa", "constant_step", "past_exit_fraction", "two_step_branches",
           "distribution_summary", "DistributionSummary", "median_standard_error", "relative_change",
           "Correlation", "correlation", "variability_pairs", "Peak", "plateau_peak",
           "plateaued_change", "loss_matched_change", "rotation_switches", "Reversal", "reversal"]


def _mixture(init) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``init`` as float64 arrays ``(weights, means, stds)``, checked (see :class:`CoupledModel`)."""
    try:
        weights, means, stds = (np.asarray(a, float) for a in init)
    except (TypeError, ValueError):
        raise ValueError(f"init={init!r} must be three tuples of numbers (weights, means, stds)") from None
    if not (weights.shape == means.shape == stds.shape) or weights.ndim != 1 or weights.size == 0:
        raise ValueError(f"init={init!r} must be three equal-length, non-empty tuples (weights, means, stds)")
    if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(means)) and np.all(np.isfinite(stds))):
        raise ValueError(f"init={init!r} must hold finite numbers")
    if np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError(f"init={init!r}: the weights must be ≥ 0 with a positive sum")
    if np.any(stds < 0):
        raise ValueError(f"init={init!r}: the stds must be ≥ 0")
    return weights, means, stds


@dataclass(frozen=True)
class CoupledModel:
    """One instance of the coupled model (all functions act elementwise on arrays).

    Attributes:
      name: a label.
      g: the fluctuation size ``g(s)`` for ``s > 0``: positive, strictly increasing.
      f: the sharpness ``f(κ)``: non-decreasing.
      eta: learning rate η.
      c: stability limit c (``s = η f(κ) − c``).
      noise_std: standard deviation of the zero-mean sharpness noise ε (0: none).
      init: ``(weights, means, stds)`` of the normal mixture of ``log κ₀`` (truncated to s > 0):
        three equal-length tuples of finite numbers, weights ≥ 0 with a positive sum, stds ≥ 0.
      log_surplus: optional noise-free surplus ``s(X) = η f(e^X) − c`` as a function of
        ``X = log κ``, written without cancellation near the exit (``jnp.expm1`` for
        ``η f(κ) − c = κ − 1``); ``None``: computed as ``η f(exp X) − c``.
      absorbing: whether the walk is absorbed the first time ``s ≤ 0`` (Asp. 5.2). ``False``
        switches the exit off: past it the walk keeps stepping by ``g(0)`` (the floor), so the
        law of ``log κ`` is not shaped by a pile of absorbed walks (see :func:`constant_step`).
      below_exit: optional step ``h(X)`` of a non-absorbing walk where ``s ≤ 0``, as a function
        of ``X = log κ`` (elementwise); ``None``: the constant ``g(0)``. A positive, strictly
        increasing, Lipschitz continuation (e.g. :func:`sigmoid_continuation`) keeps the
        exit-off walk inside the theorems' conditions on the step (h strictly increasing and
        Lipschitz on all of ℝ), which the constant floor breaks. Ignored when ``absorbing``.

    A malformed ``init``, a non-positive ``eta`` or a negative ``noise_std`` is a ValueError
    when the model is built.
    """

    name: str
    g: Callable[[Array], Array]
    f: Callable[[Array], Array]
    eta: float = 1.0
    c: float = 1.0
    noise_std: float = 0.0
    init: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] = ((1.0,), (1.0,), (0.1,))
    log_surplus: Callable[[Array], Array] | None = None
    absorbing: bool = True
    below_exit: Callable[[Array], Array] | None = None

    def __post_init__(self):
        if isinstance(self.eta, numbers.Real) and not self.eta > 0:
            raise ValueError(f"eta={self.eta!r} must be positive")
        if isinstance(self.noise_std, numbers.Real) and not self.noise_std >= 0:
            raise ValueError(f"noise_std={self.noise_std!r} must be ≥ 0")
        _mixture(self.init)

    def surplus(self, log_kappa: Array, noise: Array | float = 0.0) -> Array:
        """``s = η (f(κ) + ε) − c`` at ``log κ`` (through ``log_surplus`` when the model has it)."""
        if self.log_surplus is not None:
            return self.log_surplus(log_kappa) + self.eta * noise
        return self.eta * (self.f(jnp.exp(log_kappa)) + noise) - self.c

    def step_size(self, log_kappa: Array) -> Array:
        """``h(X) = g(s(X))`` without noise (0 where ``s ≤ 0`` if the model is absorbing, else
        ``below_exit(X)`` there, or ``g(0)`` without one)."""
        s = self.surplus(log_kappa)
        return jnp.where(s > 0, self.g(jnp.maximum(s, 0.0)), self.exit_step(log_kappa, s))

    def exit_step(self, log_kappa: Array, s: Array) -> Array:
        """The step where ``s ≤ 0``: 0 if absorbing, else ``below_exit(X)`` (``g(0)`` without
        one). ``log_kappa`` and ``s`` have one shape; so does the result."""
        if self.absorbing:
            return jnp.zeros_like(s)
        if self.below_exit is None:
            return self.g(jnp.zeros_like(s))
        return self.below_exit(log_kappa)


#: The positive floor of our g on s > 0, Prop. F.11's "positive floor". A walk within G_FLOOR of
#: the exit crosses it with one left step, so absorption is reachable in exact arithmetic.
G_FLOOR = 0.02


def _g_lipschitz(s: Array) -> Array:
    """``0.02 + 0.08 s/(1+s)``: strictly increasing, Lipschitz, in [0.02, 0.1)."""
    return G_FLOOR + 0.08 * s / (1.0 + s)


def _g_sqrt(s: Array) -> Array:
    """``0.02 + 0.08 √(s/(1+s))``: strictly increasing, not Lipschitz at s = 0, in [0.02, 0.1)."""
    return G_FLOOR + 0.08 * jnp.sqrt(s / (1.0 + s))


def sigmoid_continuation(log_kappa: Array) -> Array:
    """``2 G_FLOOR / (1 + e^{−4X})``: the step of our exit-off walks where ``s ≤ 0`` (``X ≤ 0``
    for :data:`CASES`). Positive, strictly increasing, Lipschitz with slope ≤ ``2 G_FLOOR`` < 1, and
    equal to ``G_FLOOR = g(0)`` at the exit ``X = 0``, so the step ``h`` of Cases I–III is
    continuous, positive and strictly increasing on all of ℝ."""
    return 2 * G_FLOOR / (1.0 + jnp.exp(-4.0 * log_kappa))


#: Our instances of the three cases of App. F.11, with λ = f(κ) = κ, η = 1 and c = 1 (so the exit
#: is κ ≤ 1, i.e. log κ ≤ 0, and s = expm1(log κ)), fluctuation scale 0.1, the floor G_FLOOR, and a
#: bounded g (an unbounded g such as 0.1√s makes the walk explode, since s = κ − 1 grows
#: exponentially in log κ).
CASES: dict[str, CoupledModel] = {
    "I": CoupledModel("I: unimodal, Lipschitz g", g=_g_lipschitz, f=lambda k: k, log_surplus=jnp.expm1),
    "II": CoupledModel("II: unimodal, non-Lipschitz g", g=_g_sqrt, f=lambda k: k, log_surplus=jnp.expm1),
    "III": CoupledModel("III: bimodal start, Lipschitz g", g=_g_lipschitz, f=lambda k: k,
                        log_surplus=jnp.expm1, init=((0.5, 0.5), (0.6, 1.6), (0.08, 0.08))),
}


def _positive_int(name: str, value) -> int:
    """``value`` as a Python int ≥ 1 (``np.int64`` and other ``__index__`` types accepted)."""
    try:
        index = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        index = None
    if index is None or index < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return index


#: How far (in standard deviations) the check for mass above the exit looks from each mean.
_REACH = 8.0


def initial_log_kappa(model: CoupledModel, n: int, key: PRNGKeyArray, *,
                      max_rounds: int = 10_000) -> Float[Array, " n"]:
    """``n`` draws of ``log κ₀`` from the model's normal mixture, redrawn until ``s(κ₀) > 0``
    (the paper starts in instability, C5), in at most ``max_rounds`` rounds of redrawing.

    Every round redraws all the draws still in the exit (``s ≤ 0``), so with a fraction p of
    the mixture's mass above the exit a draw is still in the exit after R rounds with
    probability ``(1 − p)^R``.

    Args:
      model: the model (its ``init`` mixture and its surplus ``s``).
      n: how many draws, a positive integer.
      key: the PRNG key.
      max_rounds: the most rounds of redrawing, a positive integer.

    Returns:
      ``log κ₀`` of shape ``(n,)``, every entry with ``s > 0``. Under ``jit`` (where no error
      can be raised for a value) an entry still in the exit after ``max_rounds`` rounds is NaN.

    Raises:
      ValueError: a bad ``n`` or ``max_rounds``; a model whose mixture has no mass above the
        exit (``s ≤ 0`` everywhere within 8 standard deviations of every component's mean, so
        that no number of rounds would do), found before any draw; or, outside ``jit``, draws
        still in the exit after ``max_rounds`` rounds (too little mass above the exit).
    """
    n = _positive_int("n", n)
    max_rounds = _positive_int("max_rounds", max_rounds)
    weights, means, stds = _mixture(model.init)
    live = weights > 0
    reach = means[live, None] + stds[live, None] * np.linspace(-_REACH, _REACH, 161)
    with jax.ensure_compile_time_eval():  # a concrete check, under jit too
        above = bool(jnp.any(model.surplus(jnp.asarray(reach)) > 0))
    if not above:
        raise ValueError(
            f"the model {model.name!r} has no mass above the exit: s = η f(κ) − c ≤ 0 for every log κ "
            f"within {_REACH:g} standard deviations of the means of init={model.init!r} "
            f"(η={model.eta!r}, c={model.c!r}); move the init to where s > 0")
    weights, means, stds = (jnp.asarray(a) for a in (weights, means, stds))

    def draw(k):
        k1, k2 = jax.random.split(k)
        comp = jax.random.choice(k1, weights.size, (n,), p=weights / weights.sum())
        return means[comp] + stds[comp] * jax.random.normal(k2, (n,), means.dtype)

    def cond(carry):
        x, _, rounds = carry
        return jnp.any(model.surplus(x) <= 0) & (rounds < max_rounds)

    def body(carry):
        x, k, rounds = carry
        k, sub = jax.random.split(k)
        return jnp.where(model.surplus(x) > 0, x, draw(sub)), k, rounds + 1

    key, sub = jax.random.split(key)
    x, _, _ = jax.lax.while_loop(cond, body, (draw(sub), key, jnp.array(0)))
    inside = model.surplus(x) > 0
    try:
        failed = int(np.sum(~np.asarray(inside)))
    except jax.errors.TracerArrayConversionError:  # under jit: flag by NaN
        return jnp.where(inside, x, jnp.nan)
    if failed:
        raise ValueError(
            f"after max_rounds={max_rounds} rounds of redrawing, {failed} of n={n} draws of log κ₀ "
            f"still have s ≤ 0: init={model.init!r} of the model {model.name!r} has too little mass "
            f"above the exit; raise max_rounds or move the init to where s > 0")
    return x


class Simulation(NamedTuple):
    """Snapshots of the process: ``log_kappa (R, n)`` at the times ``times (R,)`` (absorbed
    trajectories keep their exit value), ``exited (R, n)`` flags, ``exit_time (n,)`` (−1: never)."""

    times: np.ndarray
    log_kappa: np.ndarray
    exited: np.ndarray
    exit_time: np.ndarray


def simulate(model: CoupledModel, log_kappa0: Float[Array, " n"], steps: int, *, key: PRNGKeyArray,
             record_every: int = 1) -> Simulation:
    """Iterate the model from ``log_kappa0`` for ``steps`` steps (one ``lax.scan``, all
    trajectories at once, in float64), recording every ``record_every`` steps (and step 0).

    A trajectory is absorbed at the first step where ``s ≤ 0`` and keeps that ``log κ``; its
    ``exit_time`` is that step (−1: never; always for a model with ``absorbing=False``). Float64
    and a cancellation-free ``log_surplus`` keep the exit test from being decided by round-off.
    """
    steps = _positive_int("steps", steps)
    given = record_every
    try:
        record_every = _positive_int("record_every", record_every)
    except ValueError:
        record_every = 0
    if not 1 <= record_every <= steps or steps % record_every:
        raise ValueError(f"record_every={given!r} must be a positive integer dividing steps={steps}")
    n = np.shape(log_kappa0)[0]
    with jax.enable_x64(True):
        return _simulate64(model, np.asarray(log_kappa0, np.float64), steps, key, record_every, n)


def _simulate64(model, log_kappa0, steps, key, record_every, n):
    def step(carry, k):
        x, exited, exit_time, t = carry
        k1, k2 = jax.random.split(k)
        xi = jnp.where(jax.random.bernoulli(k1, 0.5, (n,)), 1.0, -1.0)
        eps = model.noise_std * jax.random.normal(k2, (n,), jnp.float64)
        s = model.surplus(x, eps)
        now_exit = ~exited & (s <= 0) & model.absorbing
        exited = exited | now_exit
        exit_time = jnp.where(now_exit, t, exit_time)
        h = model.g(jnp.maximum(s, 0.0))
        if not model.absorbing and model.below_exit is not None:
            h = jnp.where(s > 0, h, model.below_exit(x))
        x = jnp.where(exited, x, x + xi * h)
        return (x, exited, exit_time, t + 1), None

    def block(carry, k):
        carry, _ = jax.lax.scan(step, carry, jax.random.split(k, record_every))
        return carry, (carry[0], carry[1])

    start = (jnp.asarray(log_kappa0, jnp.float64), jnp.zeros(n, bool), jnp.full(n, -1), jnp.array(0))
    final, (xs, ex) = jax.lax.scan(block, start, jax.random.split(key, steps // record_every))
    times = np.arange(0, steps + 1, record_every)
    xs = np.concatenate([np.asarray(log_kappa0)[None], np.asarray(xs)])
    ex = np.concatenate([np.zeros((1, n), bool), np.asarray(ex)])
    return Simulation(times, xs, ex, np.asarray(final[2]))


def constant_step(model: CoupledModel, log_kappa0: Float[Array, " n"]) -> CoupledModel:
    """The null model of the flatness bias: ``model`` with its state-dependent step replaced by
    the constant ``h̄``, the mean of its step ``h(X₀)`` over the draws ``log_kappa0`` (same f, exit,
    initial law and noise). A symmetric walk with a constant step is a martingale whose median
    does not drift by itself; whatever it shows comes from the initial law and the exit."""
    with jax.enable_x64(True):
        h = float(np.mean(np.asarray(model.step_size(jnp.asarray(np.asarray(log_kappa0, np.float64))))))
    constant = lambda s: jnp.full_like(s, h)
    return dataclasses.replace(model, name=f"{model.name} (constant step {h:.3g})", g=constant,
                               below_exit=None if model.below_exit is None else constant)


def past_exit_fraction(model: CoupledModel, log_kappa: Float[Array, " n"]) -> float:
    """The fraction of the finite states ``log_kappa`` (shape ``(n,)``) at or past the exit,
    where the noise-free surplus ``s ≤ 0`` (computed in float64 as :func:`simulate`): for an
    exit-off walk, the share whose step is ``below_exit`` (the continuation), not ``g``. NaN
    for no finite state."""
    x = np.asarray(log_kappa, np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    with jax.enable_x64(True):
        return float(np.mean(np.asarray(model.surplus(jnp.asarray(x))) <= 0))


def two_step_branches(model: CoupledModel, log_kappa: Float[Array, " m"]) -> Float[np.ndarray, "m 4"]:
    """Two-step displacements from point masses at ``log_kappa`` for the sign strings
    ``(+,+), (+,−), (−,+), (−,−)`` (noise-free, in float64 as :func:`simulate`; a branch that
    exits stops there). Returned as a float64 NumPy array."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.asarray(log_kappa, np.float64))
        out = []
        for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            x1 = x + a * model.step_size(x)
            x2 = x1 + b * model.step_size(x1)
            out.append(x2 - x)
        return np.asarray(jnp.stack(out, axis=-1))


def median_standard_error(samples: np.ndarray) -> float:
    """Distribution-free standard error of the sample median of ``n`` draws: half the distance
    between the empirical quantiles at ``1/2 ± 1/(2√n)`` (the median's order statistic moves by
    about √n/2 ranks per standard error). NaN for fewer than 3 finite draws."""
    x = np.asarray(samples, float)
    x = x[np.isfinite(x)]
    if x.size < 3:
        return float("nan")
    d = 0.5 / np.sqrt(x.size)
    lo, hi = np.quantile(x, [0.5 - d, 0.5 + d])
    return float((hi - lo) / 2)


class DistributionSummary(NamedTuple):
    """Median, mode (maximiser of a Gaussian KDE), mean, sample skewness and the 5–95% spread."""

    median: float
    mode: float
    mean: float
    skewness: float
    spread: float


def distribution_summary(samples: np.ndarray, grid_points: int = 512) -> DistributionSummary:
    """Summary statistics of a 1-D sample (``scipy.stats``: ``gaussian_kde`` with Scott's rule
    for the mode, ``skew`` for the skewness)."""
    from scipy import stats

    x = np.asarray(samples, float)
    x = x[np.isfinite(x)]
    if x.size < 3 or np.ptp(x) == 0:
        m = float(np.median(x)) if x.size else float("nan")
        return DistributionSummary(m, m, m, float("nan"), 0.0)
    grid = np.linspace(x.min(), x.max(), grid_points)
    mode = float(grid[np.argmax(stats.gaussian_kde(x)(grid))])
    q05, q95 = np.percentile(x, [5, 95])
    return DistributionSummary(float(np.median(x)), mode, float(np.mean(x)), float(stats.skew(x)), float(q95 - q05))


class ModeCheck(NamedTuple):
    """Mode against median of a 1-D sample, with the mode estimator's resolution
    (:func:`mode_check`): the sample ``median``; the ``modes`` by a Gaussian KDE with Scott's
    rule, with Silverman's rule, and the centre of the fullest bin of a Freedman–Diaconis
    histogram, in that order; the KDE's ``grid_step``; the ``bootstrap_sd`` of the Scott-rule
    KDE mode over bootstrap resamples; the ``resolution`` ``max(grid_step, bootstrap_sd)``; the
    ``excess`` ``(mode − median) / resolution`` of each of the three modes (with
    ``per_estimator=True``: each over its own entry of ``resolutions``); whether they
    ``agree``, i.e. lie on the same side of the median (all ``≤`` or all ``>``); and the
    ``resolutions`` each mode's excess is read in, in the order of ``modes``."""

    median: float
    modes: tuple[float, float, float]
    grid_step: float
    bootstrap_sd: float
    resolution: float
    excess: tuple[float, float, float]
    agree: bool
    resolutions: tuple[float, float, float] = (float("nan"),) * 3


def mode_check(samples: np.ndarray, *, grid_points: int = 512, quantiles=(0.005, 0.995),
               resamples: int = 20, seed: int = 0, per_estimator: bool = False) -> ModeCheck:
    """Where the mode of a 1-D sample lies against its median, and how finely the estimator
    can tell: the question "is mode ≤ median?" decided only beyond the estimator's resolution.

    The KDE modes are the argmax over ``grid_points`` equally spaced points between the sample's
    ``quantiles`` (so that far outliers do not set the grid step) of a Gaussian KDE with Scott's
    (``n^(-1/5)``) or Silverman's (``(3n/4)^(-1/5)``) factor times the sample's standard
    deviation, as ``scipy.stats.gaussian_kde``, summed over the data binned to a quarter of the
    grid step (every draw kept, none moved by more than an eighth of a step); the histogram mode is the
    centre of the fullest Freedman–Diaconis bin over the same range. The resolution is the larger
    of the grid step and the bootstrap standard deviation of the Scott-rule KDE mode over
    ``resamples`` resamples (drawn with ``numpy.random.default_rng(seed)``).

    With ``per_estimator=True`` each estimator is read in its own resolution and Silverman's
    rule is his rule of thumb, ``0.9·min(σ, IQR/1.34)·n^(−1/5)`` (scipy's "silverman" factor
    ``(3n/4)^(−1/5)`` is Scott's times 1.06, so the two KDEs nearly always agree): a KDE mode's
    resolution is ``max(grid_step, bootstrap SD of that KDE's mode)``, the histogram mode's
    ``max(FD bin width, bootstrap SD of the histogram mode)`` (the bins fixed by the sample),
    and ``excess`` divides each mode's distance from the median by its own resolution. The
    default ``False`` keeps the earlier behaviour (scipy's factor, one resolution for all).

    Args:
      samples: the sample, shape ``(n,)``; non-finite entries are dropped.
      grid_points: KDE grid points, an integer ≥ 16.
      quantiles: ``(lo, hi)`` quantiles bounding the grid, ``0 ≤ lo < hi ≤ 1``.
      resamples: bootstrap resamples, an integer ≥ 2.
      seed: seed of the bootstrap.
      per_estimator: read each estimator in its own resolution, Silverman by his rule of thumb.

    Returns:
      A :class:`ModeCheck`; every field NaN (``agree`` False) for fewer than 3 finite draws or a
      sample whose quantile range is empty.

    Raises:
      ValueError: a bad ``grid_points``, ``quantiles`` or ``resamples``.
    """
    from scipy import stats

    if _positive_int("grid_points", grid_points) < 16:
        raise ValueError(f"grid_points={grid_points!r} must be at least 16")
    if _positive_int("resamples", resamples) < 2:
        raise ValueError(f"resamples={resamples!r} must be at least 2")
    try:
        lo_q, hi_q = (float(q) for q in quantiles)
    except (TypeError, ValueError):
        raise ValueError(f"quantiles={quantiles!r} must be two numbers (lo, hi)") from None
    if not 0 <= lo_q < hi_q <= 1:
        raise ValueError(f"quantiles={quantiles!r} must satisfy 0 ≤ lo < hi ≤ 1")
    x = np.asarray(samples, float).ravel()
    x = x[np.isfinite(x)]
    nan = float("nan")
    empty = ModeCheck(nan, (nan, nan, nan), nan, nan, nan, (nan, nan, nan), False, (nan, nan, nan))
    if x.size < 3:
        return empty
    lo, hi = np.quantile(x, [lo_q, hi_q])
    if not hi > lo:
        return empty
    grid = np.linspace(lo, hi, grid_points)
    step = float(grid[1] - grid[0])

    # the data binned to a quarter of the grid step (a centre moves by at most step/8, below the
    # resolution): the KDE is then a (grid × bins) sum, and a bootstrap resample is a multinomial
    # draw of the bin counts
    fine = step / 4
    nbins = max(int(np.ceil((x.max() - x.min()) / fine)), 1)
    counts_all, fine_edges = np.histogram(x, bins=nbins, range=(x.min(), x.max()))
    centres = (fine_edges[:-1] + fine_edges[1:]) / 2
    used = counts_all > 0
    centres, counts_all = centres[used], counts_all[used]

    def kde_mode(counts, rule):
        n = counts.sum()
        mean = np.sum(counts * centres) / n
        sd = np.sqrt(np.sum(counts * (centres - mean) ** 2) / (n - 1))
        if rule == "scott":
            bw = n ** (-0.2) * sd
        elif rule == "silverman":  # scipy's factor (3n/4)^(−1/5): Scott's × 1.06
            bw = (n * 0.75) ** (-0.2) * sd
        else:  # Silverman's rule of thumb 0.9·min(σ, IQR/1.34)·n^(−1/5), weighted quantiles
            cum = np.cumsum(counts) / n
            q25, q75 = centres[np.searchsorted(cum, [0.25, 0.75])]
            spread = min(sd, (q75 - q25) / 1.34) if q75 > q25 else sd
            bw = 0.9 * spread * n ** (-0.2)
        density = np.zeros(grid.size)
        for a in range(0, centres.size, 4096):  # memory: 512 × 4096 at a time
            z = (grid[:, None] - centres[None, a:a + 4096]) / bw
            density += np.exp(-0.5 * z * z) @ counts[a:a + 4096]
        return float(grid[np.argmax(density)])

    inside = x[(x >= lo) & (x <= hi)]
    counts, edges = np.histogram(inside, bins="fd", range=(lo, hi))
    top = int(np.argmax(counts))
    silverman = "thumb" if per_estimator else "silverman"
    modes = (kde_mode(counts_all, "scott"), kde_mode(counts_all, silverman),
             float((edges[top] + edges[top + 1]) / 2))
    rng = np.random.default_rng(seed)
    p = counts_all / counts_all.sum()
    draws = [rng.multinomial(x.size, p) for _ in range(resamples)]
    boot = [kde_mode(c, "scott") for c in draws]
    sd = float(np.std(boot, ddof=1))
    resolution = max(step, sd)
    median = float(np.median(x))
    below = [m <= median for m in modes]
    if per_estimator:
        def hist_mode(c):  # the resample's fullest bin of the sample's FD bins
            h, _ = np.histogram(centres, bins=edges, weights=c)
            k = int(np.argmax(h))
            return float((edges[k] + edges[k + 1]) / 2)

        sd_silverman = float(np.std([kde_mode(c, silverman) for c in draws], ddof=1))
        sd_hist = float(np.std([hist_mode(c) for c in draws], ddof=1))
        resolutions = (resolution, max(step, sd_silverman),
                       max(float(edges[1] - edges[0]), sd_hist))
    else:
        resolutions = (resolution,) * 3
    return ModeCheck(median, modes, step, sd, resolution,
                     tuple(float((m - median) / r) for m, r in zip(modes, resolutions)),
                     bool(all(below) or not any(below)), resolutions)


# ----------------------------------------------------------------------------- network measurements


def relative_change(kappa: np.ndarray) -> np.ndarray:
    """``|κ_{t+1} − κ_t| / (|κ_t| + |κ_{t+1}|)`` between consecutive entries, shape ``(T − 1,)``.

    Defined for signed κ (a sign change gives 1, the largest value; two zeros give NaN), and
    equal to ``tanh(|Δ log κ| / 2)`` when both are positive: a change in κ that keeps the
    measurements with ``κ ≤ 0`` instead of dropping them. Our stand-in for the paper's κ-change
    metric of App. F.2, whose formula our copy lost.
    """
    k = np.asarray(kappa, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(np.diff(k)) / (np.abs(k[:-1]) + np.abs(k[1:]))


class Correlation(NamedTuple):
    """Pearson's and Spearman's correlation of two paired samples, each with its two-sided
    p-value against no correlation (``scipy.stats.pearsonr`` / ``spearmanr``), and the number of
    pairs; NaN where fewer than 3 finite pairs or a constant series leave it undefined."""

    pearson: float
    pearson_p: float
    spearman: float
    spearman_p: float
    pairs: int


def correlation(x: np.ndarray, y: np.ndarray) -> Correlation:
    """:class:`Correlation` of ``x`` and ``y`` over the pairs where both are finite."""
    from scipy import stats

    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x {x.shape} and y {y.shape} must pair up")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(float("nan"), float("nan"), float("nan"), float("nan"), n)
    r, p = stats.pearsonr(x, y)
    rho, q = stats.spearmanr(x, y)
    return Correlation(float(r), float(p), float(rho), float(q), n)


def variability_pairs(steps: np.ndarray, sharpness: np.ndarray, kappa: np.ndarray, edge: float,
                      *, gap: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's pairs of App. F.2: at every probe t inside an instability (``λ_t > edge``,
    the paper's "leading Hessian eigenvalue exceeds 20" at η = 0.1) whose next probe is ``gap``
    steps later, the sharpness ``λ_t`` and the change of κ from t to that probe
    (:func:`relative_change`). Pairs with a non-finite value are dropped.

    Returns:
      ``(step, sharpness, change)``, each ``(pairs,)``.
    """
    steps, s = np.asarray(steps), np.asarray(sharpness, float)
    change = relative_change(kappa)
    keep = ((s[:-1] > edge) & (np.diff(steps) == gap) & np.isfinite(change)
            & np.isfinite(s[:-1]))
    return steps[:-1][keep], s[:-1][keep], change[keep]


class Peak(NamedTuple):
    """The maximum of a stable phase (:func:`plateau_peak`)."""

    smax: float
    step: int
    plateaued: bool


def plateau_peak(probe_step: np.ndarray, sharpness: np.ndarray, at: float, end: float,
                 settle: float) -> Peak:
    """The largest sharpness ``S_max`` of the stable phase after a step-size reduction at step
    ``at``, over the probes with ``at < step ≤ end`` (**the reduction step itself excluded**: its
    sharpness is still the unstable phase's), and whether the phase **plateaued** there: the
    maximum is neither the phase's first probe (S still decaying from the unstable level: no
    progressive sharpening seen) nor followed by fewer than ``settle`` steps of the phase
    (S may still be rising). ``Peak(NaN, -1, False)`` for a phase with fewer than 3 finite
    probes."""
    step, s = np.asarray(probe_step, float), np.asarray(sharpness, float)
    inside = (step > at) & (step <= end) & np.isfinite(s)
    if inside.sum() < 3:
        return Peak(float("nan"), -1, False)
    window, where = s[inside], step[inside]
    top = int(np.argmax(window))
    return Peak(float(window[top]), int(where[top]),
                bool(top > 0 and where[-1] - where[top] >= settle))


def plateaued_change(at: np.ndarray, smax: np.ndarray, plateaued: np.ndarray) -> float:
    """The relative change of ``S_max`` from the first to the last reduction step **among the
    plateaued cells** of one row: ``(S_max[last] − S_max[first]) / S_max[first]``, where first
    and last are the earliest and latest ``at`` whose phase plateaued (:func:`plateau_peak`).
    NaN where fewer than two cells of the row plateaued."""
    at, smax = np.asarray(at, float), np.asarray(smax, float)
    ok = np.asarray(plateaued, bool) & np.isfinite(smax)
    if ok.sum() < 2:
        return float("nan")
    idx = np.flatnonzero(ok)
    first, last = idx[np.argmin(at[idx])], idx[np.argmax(at[idx])]
    return float(smax[last] / smax[first] - 1)


def loss_matched_change(at: np.ndarray, smax: np.ndarray, plateaued: np.ndarray, loss: np.ndarray,
                        null_smax: np.ndarray, null_plateaued: np.ndarray,
                        null_loss: np.ndarray) -> tuple[float, float]:
    """The later-reduction change of one row against a null matched in training progress.

    Among the row's plateaued cells whose training loss at the reduction lies inside the range
    of the null's plateaued cells' losses, the change ``S_max(last)/S_max(first) − 1`` from the
    earliest to the latest reduction step ``at``; and the null's change between the same two
    losses, its ``S_max`` interpolated linearly in log loss between its plateaued cells (no
    extrapolation). All arrays are ``(cells,)``, the row's and the null's each aligned with
    their own reduction steps; losses must be positive to count.

    Returns:
      ``(row_change, null_change)``; both NaN where the null has fewer than two plateaued cells
      with a finite ``S_max`` and positive loss, or the row fewer than two matched cells.
    """
    at, smax, loss = (np.asarray(a, float) for a in (at, smax, loss))
    null_smax, null_loss = np.asarray(null_smax, float), np.asarray(null_loss, float)
    if not at.shape == smax.shape == loss.shape == np.shape(plateaued):
        raise ValueError(f"at {at.shape}, smax {smax.shape}, plateaued {np.shape(plateaued)} and "
                         f"loss {loss.shape} must have one shape")
    if not null_smax.shape == null_loss.shape == np.shape(null_plateaued):
        raise ValueError(f"null_smax {null_smax.shape}, null_plateaued {np.shape(null_plateaued)} "
                         f"and null_loss {null_loss.shape} must have one shape")
    nan = float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        ok_null = (np.asarray(null_plateaued, bool) & np.isfinite(null_smax)
                   & np.isfinite(null_loss) & (null_loss > 0))
        if ok_null.sum() < 2:
            return nan, nan
        ln = np.log(null_loss[ok_null])
        order = np.argsort(ln)
        ln, sn = ln[order], null_smax[ok_null][order]
        lj = np.log(np.where(loss > 0, loss, np.nan))
        ok = (np.asarray(plateaued, bool) & np.isfinite(smax) & np.isfinite(lj)
              & (lj >= ln[0]) & (lj <= ln[-1]))
    if ok.sum() < 2:
        return nan, nan
    idx = np.flatnonzero(ok)
    first, last = idx[np.argmin(at[idx])], idx[np.argmax(at[idx])]
    null_first, null_last = np.interp(lj[first], ln, sn), np.interp(lj[last], ln, sn)
    return float(smax[last] / smax[first] - 1), float(null_last / null_first - 1)


def rotation_switches(steps: np.ndarray, similarity: np.ndarray, end: float,
                      fractions) -> tuple[np.ndarray, float]:
    """Switch steps timed by the rotation of the kept-η run, not by the clock: for each
    fraction f, the first probe step ``≤ end`` at which ``1 − similarity`` reaches
    ``f × drop``, where ``drop = 1 − min(similarity)`` over the probes ``≤ end`` (the
    instability window). The paper lowers η once the eigenvectors "have rotated away".

    Returns:
      ``(switches, drop)``: the switch steps (``-1`` where no probe qualifies, e.g. ``drop ≤ 0``)
      and the drop.
    """
    steps, sim = np.asarray(steps), np.asarray(similarity, float)
    inside = (steps <= end) & np.isfinite(sim)
    if not inside.any():
        return np.full(len(fractions), -1), float("nan")
    drop = float(1 - np.min(sim[inside]))
    out = []
    for f in fractions:
        hit = np.flatnonzero(inside & (1 - sim >= f * drop)) if drop > 0 else []
        out.append(int(steps[hit[0]]) if len(hit) else -1)
    return np.asarray(out), drop


class Reversal(NamedTuple):
    """What lowering η at each switch did ``horizon`` steps later (:func:`reversal`), each
    ``(switches,)``."""

    rise: np.ndarray
    gap: np.ndarray
    share: np.ndarray
    rotated: np.ndarray
    control_drop: np.ndarray


def reversal(similarity: np.ndarray, steps: np.ndarray, switches: np.ndarray,
             horizon: int) -> Reversal:
    """The switched runs against the kept-η run at ``t_s + horizon``.

    ``rise = sim_m(t_s + h) − sim_m(t_s)`` (> 0: the switched run turned back towards the
    baseline), ``gap = sim_m(t_s + h) − sim_0(t_s + h)`` (how far above the kept-η run it is),
    ``share = gap / (1 − sim_0(t_s + h))`` (the share of the kept-η run's rotation at
    ``t_s + h`` that the switched run is not rotated by: 1 all of it, 0 none, < 0 more),
    ``rotated = 1 − sim_0(t_s)`` (the rotation at the switch) and
    ``control_drop = sim_0(t_s) − sim_0(t_s + h)``. Member 0 keeps η, member m ≥ 1 lowers it at
    ``switches[m − 1]``. Nothing is clipped.
    """
    sim, steps = np.asarray(similarity, float), np.asarray(steps)
    switches = np.asarray(switches)
    if sim.shape[0] != switches.size + 1:
        raise ValueError(f"similarity has {sim.shape[0]} members; need 1 + {switches.size} switches")
    index = {int(t): i for i, t in enumerate(steps)}
    missing = [int(t) for s in switches for t in (s, s + horizon) if int(t) not in index]
    if missing:
        raise ValueError(f"steps {missing} are not probe steps of the replay")
    out = []
    for m, s in enumerate(switches, start=1):
        i, j = index[int(s)], index[int(s) + horizon]
        gap = sim[m, j] - sim[0, j]
        rot_end = 1 - sim[0, j]
        out.append((sim[m, j] - sim[m, i], gap, gap / rot_end if rot_end > 0 else np.nan,
                    1 - sim[0, i], sim[0, i] - sim[0, j]))
    cols = [np.asarray(c, float) for c in zip(*out)] if out else [np.zeros(0)] * 5
    return Reversal(*cols)


def positive_pairs(steps: np.ndarray, sharpness: np.ndarray, kappa: np.ndarray, edge: float,
                   *, gap: int = 1) -> np.ndarray:
    """For each pair :func:`variability_pairs` keeps (same order), whether κ is positive at
    both of its probes: the premise of the paper's model (κ > 0; it works with log κ)."""
    steps, s = np.asarray(steps), np.asarray(sharpness, float)
    k = np.asarray(kappa, float)
    change = relative_change(k)
    keep = ((s[:-1] > edge) & (np.diff(steps) == gap) & np.isfinite(change)
            & np.isfinite(s[:-1]))
    return ((k[:-1] > 0) & (k[1:] > 0))[keep]
