"""The local (x, y) model of gradient descent at the edge of stability, with coupled weight decay.

Damian, Nichani & Lee (2023) describe GD near the edge by two numbers measured from a reference
point θ† (the *constrained* trajectory): the displacement ``x = u·(θ − θ†)`` along the top
Hessian eigenvector ``u`` and ``y = ∇S·(θ − θ†) ≈ S(θ) − 2/η``. Expanding the loss to third
order gives

.. math::

    x_{t+1} = -(1 + η y_t) x_t, \\qquad y_{t+1} = y_t + η(α - β x_t^2/2),

with the sharpening rate ``α = −∇L·∇S`` and ``β = ‖∇S‖²``. Training the *regularised* objective
``L(θ) + γ/2 ‖θ‖²`` (coupled weight decay, as in Kolic et al. 2026) changes both lines, and this
is our derivation (the paper's text is not available in full):

- the curvature along ``u`` becomes ``S + γ``, so ``x_{t+1} = −(1 + η(y_t + γ)) x_t`` and the
  oscillation is neutral at ``y = −γ``: the stability threshold of ``S`` moves to ``2/η − γ``;
- the decay step ``−ηγθ`` moves the sharpness by ``−ηγ ⟨θ, ∇S⟩``, so
  ``y_{t+1} = y_t + η(α − γ c_y − β x_t²/2)`` with the **alignment** ``c_y = ⟨θ, ∇S⟩``.

Sharpening stops with no oscillation at all once ``c_y ≥ c_y^crit = α/γ``: if this happens while
``S < 2/η − γ``, the sharpness settles *below* the edge (the phase transition). When ``c_y`` grows
with the sharpness (``c_y = c_edge + slope · y`` near the edge), the decay term is a restoring
force in ``y``: linearising about the averaged fixed point ``y* = −γ``,
``x*² = 2(α − γ c_y(y*))/β`` gives an oscillator damped at ``ηγ·slope/2`` per step, against
which the discrete map itself anti-damps at ``η²βx*²/2`` (:func:`predicted_damping_rate`).

:class:`SharpeningToy` is the smallest loss realising the model exactly: θ = (x, z),
``L = ½(s₀ + z) x² − α z − d·x`` — sharpness ``s₀ + z`` at x = 0, ``∇S = (0, 1)``, ``β = 1``,
``c_y = z`` (slope 1), and a sharpening rate α that never stops on its own.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Scalar, ScalarLike

from eoslib.engine import divergence

__all__ = [
    "XYTrajectory",
    "xy_recursion",
    "predicted_threshold",
    "predicted_damping_rate",
    "sub_edge_plateau",
    "SharpeningToy",
    "ToyTrajectory",
    "EnvelopeFit",
    "envelope_decay_rate",
    "Plateau",
    "plateau",
    "EdgePhase",
    "edge_phase",
    "Climb",
    "climb",
    "stop_index",
    "stop_rising",
    "first_crossing",
    "aligned_before_stop",
    "crossing_below_sharpness",
]


def _check_positive(name: str, value: float) -> None:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive finite number")


class XYTrajectory(NamedTuple):
    """``(T + 1,)`` arrays of the recursion, starting at ``(x₀, y₀)``; NaN from ``diverged_at`` on.

    Attributes:
      x: the displacement along the top eigenvector.
      y: the sharpness above the edge.
      diverged_at: the first step t with ``max(|x_t|, |y_t|)`` non-finite or above ``max_abs``; −1 if none.
    """

    x: Float[Array, " T1"]
    y: Float[Array, " T1"]
    diverged_at: Int[Array, ""]


def xy_recursion(x0: ScalarLike, y0: ScalarLike, *, eta: ScalarLike, alpha: ScalarLike, beta: ScalarLike,
                 steps: int, gamma: ScalarLike = 0.0, cy_edge: ScalarLike = 0.0,
                 cy_slope: ScalarLike = 0.0, drive: ScalarLike = 0.0, max_abs: float = 1e6) -> XYTrajectory:
    """Iterate the (x, y) model with coupled weight decay for ``steps`` steps.

    ``x_{t+1} = −(1 + η(y_t + γ)) x_t + η·drive``; ``y_{t+1} = y_t + η(α − γ c_y(y_t) − β x_t²/2)``
    with ``c_y(y) = cy_edge + cy_slope · y`` (the alignment at the edge and how it grows with S).
    ``drive`` is a constant gradient component −∇L·u (zero when x is measured from the constrained
    trajectory, as Damian et al. do; the toy keeps one so the instability grows from a floor
    instead of from round-off). ``γ = drive = 0`` is Damian et al.'s model.

    Divergence as everywhere in eoslib (:mod:`eoslib.engine.divergence`), with the monitored value
    ``max(|x_t|, |y_t|)`` against ``max_abs``: the first such step is ``diverged_at``, the state
    stops there and that row and later ones are NaN.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    max_abs = divergence.check_max("max_abs", max_abs)

    def step(carry, t):
        x, y, diverged_at = carry
        diverged_at = divergence.update(diverged_at, t, jnp.maximum(jnp.abs(x), jnp.abs(y)), max_abs)
        alive = divergence.alive(diverged_at)
        cy = cy_edge + cy_slope * y
        x_new = -(1 + eta * (y + gamma)) * x + eta * drive
        y_new = y + eta * (alpha - gamma * cy - beta * x**2 / 2)
        x_new, y_new = divergence.hold(alive, (x_new, y_new), (x, y))
        return (x_new, y_new, diverged_at), divergence.mask(alive, (x, y))

    start = (jnp.asarray(x0, float), jnp.asarray(y0, float), divergence.start())
    (_, _, diverged_at), (xs, ys) = jax.lax.scan(step, start, jnp.arange(steps + 1, dtype=jnp.int32))
    return XYTrajectory(xs, ys, diverged_at)


def predicted_threshold(eta: float, gamma: float) -> float:
    """Where the sharpness S of the unregularised loss settles at the edge: ``2/η − γ``."""
    _check_positive("eta", eta)
    return 2.0 / eta - gamma


def predicted_damping_rate(eta: float, gamma: float, *, alpha: float, cy_edge: float, cy_slope: float) -> float:
    """Decay rate per step of small oscillations about the averaged fixed point of the map.

    With ``ξ = log|x/x*|`` and ``w = y + γ`` the map linearises to ``ξ' = ξ + ηw``,
    ``w' = (1 − ηγ·slope) w − ηβx*² ξ``, whose determinant is ``1 − ηγ·slope + η²βx*²``; the
    envelope therefore decays at ``(η/2)(γ·slope − ηβx*²)`` per step, with
    ``βx*² = 2(α − γ c_y(−γ))``. The second term is the discrete map's own anti-damping (it makes
    Damian et al.'s γ = 0 cycles grow into a limit cycle): weight decay damps only when it wins.
    A negative value means small oscillations grow.
    """
    _check_positive("eta", eta)
    beta_x2 = 2.0 * (alpha - gamma * (cy_edge - gamma * cy_slope))
    return 0.5 * eta * (gamma * cy_slope - eta * beta_x2)


def _smaller_root(a: float, b: float, c: float) -> float:
    """The smaller real root of ``a x² + b x + c`` (``a > 0``); NaN when there is none."""
    disc = b * b - 4.0 * a * c
    return float((-b - math.sqrt(disc)) / (2.0 * a)) if disc >= 0 else float("nan")


def damping_onset(eta: float, *, alpha: float, cy_edge: float, cy_slope: float) -> float:
    """The smallest γ at which :func:`predicted_damping_rate` turns positive (weight decay beats
    the map's anti-damping): the smaller root of ``2η·slope γ² − (slope + 2η c_edge) γ + 2ηα``.
    To first order in γ it is ``2ηα / (slope + 2η c_edge)``. NaN when no γ damps."""
    _check_positive("eta", eta)
    _check_positive("cy_slope", cy_slope)
    return _smaller_root(2.0 * eta * cy_slope, -(cy_slope + 2.0 * eta * cy_edge), 2.0 * eta * alpha)


def transition_gamma(*, alpha: float, cy_edge: float, cy_slope: float) -> float:
    """The smallest γ past which sharpening stops below the edge: ``γ c_y(S) = α`` at an
    ``S < 2/η − γ``, with ``c_y(S) = c_edge + slope (S − 2/η)``; the smaller root of
    ``slope γ² − c_edge γ + α`` (for the toy, ``s₀ + α/γ = 2/η − γ``). NaN when there is none."""
    _check_positive("cy_slope", cy_slope)
    if cy_edge <= 0:
        return float("nan")
    return _smaller_root(cy_slope, -cy_edge, alpha)


def sub_edge_plateau(alpha: float, gamma: float, cy_at, s_grid: np.ndarray) -> float:
    """The smallest sharpness on ``s_grid`` at which ``γ c_y(S) ≥ α`` (sharpening stops without
    an instability), or NaN if none; ``cy_at`` maps an array of S to c_y."""
    if gamma <= 0:
        return float("nan")
    s_grid = np.asarray(s_grid, float)
    stop = np.nonzero(gamma * np.asarray(cy_at(s_grid)) >= alpha)[0]
    return float(s_grid[stop[0]]) if stop.size else float("nan")


class SharpeningToy(eqx.Module):
    """The two-parameter loss ``L(x, z) = ½(s₀ + z) x² − α z − d·x`` (θ = (x, z), d = ``drive``).

    At x = 0 its sharpness is ``s₀ + z``, ``∇S = (0, 1)`` so ``β = 1`` and ``c_y = ⟨θ, ∇S⟩ = z``;
    plain GD sharpens at the constant rate α. With coupled weight decay γ, GD on
    ``L + γ/2‖θ‖²`` follows the (x, y) model with ``x`` itself, ``y = s₀ + z − 2/η``,
    ``cy_edge = 2/η − s₀``, ``cy_slope = 1`` and the same ``drive`` *exactly* (the loss is cubic),
    so the toy checks the model's algebra and its fixed points, not its Taylor truncation. The
    small drive keeps x off zero while the sharpness is below the edge (where GD contracts x
    towards d/S), as the gradient's component along u does in a network.
    
    """

    s0: float
    alpha: float
    drive: float

    def __init__(self, s0: float, alpha: float, drive: float = 0.0):
        _check_positive("s0", s0)
        _check_positive("alpha", alpha)
        if not np.isfinite(drive):
            raise ValueError(f"drive={drive!r} must be finite")
        self.s0, self.alpha, self.drive = float(s0), float(alpha), float(drive)

    def loss(self, theta: Float[Array, "2"]) -> Scalar:
        x, z = theta[0], theta[1]
        return 0.5 * (self.s0 + z) * x**2 - self.alpha * z - self.drive * x

    def projected_sharpness(self, theta: Float[Array, "... 2"]) -> Float[Array, "..."]:
        """``s₀ + z``: the sharpness at the reference point (0, z), i.e. ``2/η + y``."""
        return self.s0 + theta[..., 1]

    def sharpness(self, theta: Float[Array, "2"]) -> Scalar:
        """λ_max of the 2 × 2 Hessian of L (without decay) at θ, by ``eigvalsh``."""
        return jnp.linalg.eigvalsh(jax.hessian(self.loss)(theta))[-1]

    def gd(self, theta0: Float[Array, "2"], *, eta: ScalarLike, gamma: ScalarLike, steps: int,
           max_loss: float = 1e8) -> "ToyTrajectory":
        """Full-batch GD on ``L + γ/2‖θ‖²`` for ``steps`` steps; vmap over ``eta``/``gamma``.

        Returns a :class:`ToyTrajectory` with ``steps + 1`` rows. Divergence as everywhere in
        eoslib (:mod:`eoslib.engine.divergence`): the first step t whose objective is non-finite
        or above ``max_loss`` is ``diverged_at``; θ stops there and row t and later ones are NaN.
        """
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r} must be a positive integer")
        max_loss = divergence.check_max("max_loss", max_loss)
        objective = lambda th: self.loss(th) + 0.5 * gamma * jnp.vdot(th, th)

        def step(carry, t):
            theta, diverged_at = carry
            value, grad = jax.value_and_grad(objective)(theta)
            diverged_at = divergence.update(diverged_at, t, value, max_loss)
            alive = divergence.alive(diverged_at)
            new = divergence.hold(alive, theta - eta * grad, theta)
            return (new, diverged_at), divergence.mask(alive, theta)

        theta0 = jnp.asarray(theta0, float)
        (_, diverged_at), thetas = jax.lax.scan(step, (theta0, divergence.start()),
                                                jnp.arange(steps + 1, dtype=jnp.int32))
        return ToyTrajectory(thetas, jax.vmap(self.loss)(thetas), jax.vmap(self.sharpness)(thetas),
                             self.projected_sharpness(thetas), diverged_at)


class ToyTrajectory(NamedTuple):
    """GD on :class:`SharpeningToy`: ``theta (T+1, 2)``, ``loss``, ``sharpness`` (λ_max of L's
    Hessian), ``projected_sharpness`` (``s₀ + z``), each ``(T+1,)`` and NaN from ``diverged_at`` on;
    ``diverged_at`` (−1 or the step)."""

    theta: Float[Array, "T1 2"]
    loss: Float[Array, " T1"]
    sharpness: Float[Array, " T1"]
    projected_sharpness: Float[Array, " T1"]
    diverged_at: Array


class EnvelopeFit(NamedTuple):
    """``amplitude(t) ≈ exp(log_amplitude0 − rate · t)`` fitted to half the peak-to-peak range of
    ``s`` in consecutive windows; ``r2`` is the fit's R² in log space (NaN if under 3 windows).
    ``centres`` and ``amplitudes`` are the windows' mid-times and half-ranges."""

    rate: float
    log_amplitude0: float
    r2: float
    centres: np.ndarray
    amplitudes: np.ndarray


def envelope_decay_rate(t: np.ndarray, s: np.ndarray, window: float) -> EnvelopeFit:
    """Decay rate per unit of ``t`` of the oscillation envelope of a series ``s(t)``.

    Splits ``[t₀, t_end)`` into windows of length ``window`` (at least one oscillation period),
    takes half of ``max − min`` in each, and regresses its logarithm on the window centre.
    Robust to non-sinusoidal (relaxation) oscillations, where a damped-cosine fit is not.
    ``rate`` > 0: decaying; < 0: growing. Non-finite points are dropped.
    """
    if not window > 0:
        raise ValueError(f"window={window!r} must be positive")
    t, s = np.asarray(t, float), np.asarray(s, float)
    keep = np.isfinite(t) & np.isfinite(s)
    t, s = t[keep], s[keep]
    edges = np.arange(t[0], t[-1] + 1e-12, window) if t.size else np.array([])
    centres, amps = [], []
    for lo in edges:
        inside = (t >= lo) & (t < lo + window)
        if inside.sum() >= 2 and np.ptp(s[inside]) > 0:
            centres.append(lo + window / 2)
            amps.append(np.ptp(s[inside]) / 2)
    centres, amps = np.array(centres), np.array(amps)
    if centres.size < 3:
        return EnvelopeFit(float("nan"), float("nan"), float("nan"), centres, amps)
    slope, intercept = np.polyfit(centres, np.log(amps), 1)
    resid = np.log(amps) - (intercept + slope * centres)
    total = np.sum((np.log(amps) - np.mean(np.log(amps))) ** 2)
    r2 = 1.0 - float(np.sum(resid**2) / total) if total > 0 else float("nan")
    return EnvelopeFit(float(-slope), float(intercept), r2, centres, amps)


class Plateau(NamedTuple):
    """Where a sharpness series settles: ``level``, the mean over the last quarter of the probes
    (at least the last one), and ``drift``, the least-squares change over that quarter in units of
    ``scale`` (NaN with fewer than 3 points or any non-finite one). With ``per`` given to
    :func:`plateau`, ``drift`` is instead the least-squares change per ``per`` steps (a rate, the
    same for a run of any length), in units of ``scale``."""

    level: float
    drift: float


def _line_drift(t: np.ndarray, s: np.ndarray, scale: float) -> float:
    """The least-squares change of ``s(t)`` across ``t``'s span, in units of ``scale``."""
    slope = np.polyfit(t, s, 1)[0]
    return float(slope * (t[-1] - t[0]) / scale)


def plateau(t: np.ndarray, s: np.ndarray, scale: float, *, per: float | None = None) -> Plateau:
    """The plateau of ``s(t)`` (probe steps ``t``, shape ``(P,)``): see :class:`Plateau`.

    ``per``: ``None`` (default) reads the drift as the change across the last quarter's span, so
    the same slope reads larger in a longer run; a number of steps reads it as the change per
    ``per`` steps (the slope times ``per``), which does not depend on the run's length.

    A series that diverged (non-finite in the last quarter) has level ``inf`` and drift ``inf``:
    a measurement that went wrong, which a rule must reject, never NaN.
    """
    t, s = np.asarray(t, float), np.asarray(s, float)
    if t.shape != s.shape or t.ndim != 1 or t.size == 0:
        raise ValueError(f"t and s must be non-empty 1-d arrays of one shape; got {t.shape}, {s.shape}")
    if not scale > 0:
        raise ValueError(f"scale={scale!r} must be positive")
    if per is not None and not (isinstance(per, (int, float)) and per > 0):
        raise ValueError(f"per={per!r} must be None or a positive number of steps")
    late = t >= min(t[0] + 3 * (t[-1] - t[0]) / 4, t[-1])
    if not np.all(np.isfinite(s[late])):
        return Plateau(float("inf"), float("inf"))
    if late.sum() < 3:
        return Plateau(float(np.mean(s[late])), float("nan"))
    if per is not None:
        return Plateau(float(np.mean(s[late])),
                       float(np.polyfit(t[late], s[late], 1)[0] * per / scale))
    return Plateau(float(np.mean(s[late])), _line_drift(t[late], s[late], scale))


class EdgePhase(NamedTuple):
    """Where a quantity held against an edge is read (:func:`edge_phase`).

    ``onset``: the index of the first probe at or above the edge (``None``: never reached);
    ``window``: the indices of the probes read, shape ``(W,)``, the second half of the phase;
    ``level``: the mean over the window; ``drift``: its signed change across the window in units
    of the edge. Both are NaN for an empty window (drift also for ``W < 2``), ``inf`` when a
    window value is not finite (a run that went wrong there, which a rule must reject).
    """

    onset: int | None
    window: np.ndarray
    level: float
    drift: float


def edge_phase(t: np.ndarray, s: np.ndarray, edge: float, *, drift: str = "line",
               unreached: str = "empty", reach_mean: int = 1,
               reach_fraction: float = 1.0) -> EdgePhase:
    """The edge-phase reading of ``s(t)`` against ``edge`` (probe steps ``t``, shape ``(P,)``).

    The *edge phase* runs from the first probe with ``s ≥ edge`` to the end; the level is read
    over its second half, so the climb into the edge and the first overshoot are not averaged in.
    ``drift`` says how the window's change is measured: ``"line"``, the least-squares slope times
    the window's span, or ``"quarters"``, the mean of the window's second half minus that of its
    first half. ``unreached`` says what a series that never reaches the edge is read over:
    ``"empty"`` (nothing: level and drift NaN) or ``"finite"`` (the phase starts at its first
    finite probe, so the level of a run that stays below the edge is still measured).

    ``reach_mean`` and ``reach_fraction`` say what counts as *reaching* the edge: the onset is
    the first probe ``k`` at which the mean of ``s`` over the ``reach_mean`` probes
    ``k, …, k + reach_mean − 1`` is at least ``reach_fraction × edge``. The defaults (1 and 1.0)
    are one probe at or above the edge; a noisy quantity (SGD's batch sharpness) needs a
    sustained reach, e.g. ``reach_mean=4, reach_fraction=0.95``, so that one spike is not an
    onset. Blocks holding a non-finite probe never count.
    """
    if not isinstance(reach_mean, (int, np.integer)) or isinstance(reach_mean, bool) or reach_mean < 1:
        raise ValueError(f"reach_mean={reach_mean!r} must be a positive integer")
    if not 0 < reach_fraction <= 1:
        raise ValueError(f"reach_fraction={reach_fraction!r} must be in (0, 1]")
    if drift not in ("line", "quarters"):
        raise ValueError(f"drift={drift!r} must be 'line' or 'quarters'")
    if unreached not in ("empty", "finite"):
        raise ValueError(f"unreached={unreached!r} must be 'empty' or 'finite'")
    t, s = np.asarray(t, float), np.asarray(s, float)
    if t.shape != s.shape or t.ndim != 1:
        raise ValueError(f"t and s must be 1-d arrays of one shape; got {t.shape}, {s.shape}")
    _check_positive("edge", edge)
    if reach_mean == 1:
        hit = np.nonzero(s >= reach_fraction * edge)[0]
    else:
        if s.size >= reach_mean:
            ok = np.isfinite(s)
            blocks = np.convolve(np.where(ok, s, 0.0), np.ones(reach_mean), mode="valid") / reach_mean
            whole = np.convolve(ok.astype(float), np.ones(reach_mean), mode="valid") == reach_mean
            hit = np.nonzero(whole & (blocks >= reach_fraction * edge))[0]
        else:
            hit = np.zeros(0, int)
    finite = np.nonzero(np.isfinite(s))[0]
    onset = int(hit[0]) if hit.size else None
    if onset is not None:
        start = onset
    elif unreached == "finite" and finite.size:
        start = int(finite[0])
    else:
        start = s.size
    phase = np.arange(start, s.size)
    window = phase[phase.size // 2:]
    nan = float("nan")
    if window.size == 0:
        return EdgePhase(onset, window, nan, nan)
    values, times = s[window], t[window]
    if not np.all(np.isfinite(values)):
        return EdgePhase(onset, window, float("inf"), float("inf"))
    level = float(np.mean(values))
    if window.size < 2:
        return EdgePhase(onset, window, level, nan)
    if drift == "line":
        change = _line_drift(times, values, edge)
    else:
        q = values.size // 2
        change = float((np.mean(values[q:]) - np.mean(values[:q])) / edge)
    return EdgePhase(onset, window, level, change)


class Climb(NamedTuple):
    """How a sharpness series climbs toward an edge (:func:`climb`).

    ``onset``: the index of the first probe at or above the edge (``None``: never reached);
    ``window``: the indices of the probes read, from the first to the onset (both included) or,
    without an onset, to the last finite probe; ``rank_correlation``: Spearman's ρ of ``s`` with
    ``t`` over the window (1: it only rose; 0 for a flat series; NaN with fewer than 3 probes or
    when the series starts at or above the edge); ``rise_fraction``: how far the series had come
    from its start toward the edge at the window's last probe *below* the edge,
    ``(s_last − s₀)/(edge − s₀)`` (a rise, not a jump at the last probe, reads close to 1; NaN when
    it starts at or above the edge); ``start_fraction``: ``s₀/edge``.
    """

    onset: int | None
    window: np.ndarray
    rank_correlation: float
    rise_fraction: float
    start_fraction: float


def _rank_correlation(t: np.ndarray, s: np.ndarray) -> float:
    """Spearman's ρ (average ranks for ties); 0 when either series is constant."""
    from scipy.stats import rankdata

    rt, rs = rankdata(t), rankdata(s)
    rt, rs = rt - rt.mean(), rs - rs.mean()
    norm = float(np.sqrt(np.sum(rt**2) * np.sum(rs**2)))
    return float(np.sum(rt * rs) / norm) if norm > 0 else 0.0


def climb(t: np.ndarray, s: np.ndarray, edge: float) -> Climb:
    """The climb of ``s(t)`` (probe steps ``t``, shape ``(P,)``) toward ``edge``: see :class:`Climb`.

    Progressive sharpening read as what it claims, that the sharpness *rises* while it is below
    the edge: over the probes before the edge is reached, the rank correlation of ``s`` with ``t``
    and the share of the way to the edge covered before the crossing. Neither depends on where
    the series starts (a step size whose edge sits just above ``s₀`` can still rise or not), so
    the room left to climb, ``1 − start_fraction``, is a precondition to check apart.
    """
    t, s = np.asarray(t, float), np.asarray(s, float)
    if t.shape != s.shape or t.ndim != 1 or t.size == 0:
        raise ValueError(f"t and s must be non-empty 1-d arrays of one shape; got {t.shape}, {s.shape}")
    _check_positive("edge", edge)
    nan = float("nan")
    start = float(s[0] / edge)
    hit = np.nonzero(s >= edge)[0]
    onset = int(hit[0]) if hit.size else None
    bad = np.nonzero(~np.isfinite(s))[0]
    if onset is not None and (not bad.size or bad[0] > onset):
        last = onset
    else:  # never reached (or a non-finite probe came first): read up to the last finite probe
        onset = None
        last = (int(bad[0]) if bad.size else s.size) - 1
    window = np.arange(0, last + 1)
    if not np.isfinite(s[0]) or s[0] >= edge or window.size == 0:
        return Climb(onset, window, nan, nan, start)
    below = window[-2] if onset is not None else window[-1]
    rise = float((s[below] - s[0]) / (edge - s[0]))
    rho = _rank_correlation(t[window], s[window]) if window.size >= 3 else nan
    return Climb(onset, window, rho, rise, start)


def stop_index(s: np.ndarray, level: float, fraction: float = 0.95) -> int | None:
    """The first probe at which ``s`` reaches ``fraction`` of its plateau ``level``: where the
    sharpness stops rising. ``None`` when it never does, when it already does at the first probe
    (it never rose, so it cannot have stopped rising), or when the level is not finite."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must be in (0, 1]")
    if not np.isfinite(level):
        return None
    idx = np.nonzero(np.asarray(s, float) >= fraction * level)[0]
    return int(idx[0]) if idx.size and idx[0] > 0 else None


def stop_rising(s: np.ndarray, tolerance: float = 0.01) -> int | None:
    """Where ``s`` (shape ``(P,)``, one value per probe) stops rising: the first probe ``k`` after
    which ``s`` never exceeds its running maximum ``max(s[:k + 1])`` by more than ``tolerance`` of
    that maximum. Unlike :func:`stop_index`, it does not read the end of the run, so a series
    that peaks and then declines stops at its peak, not where it first reaches its later level.

    ``None`` when ``s`` is still rising at its last probe (``k`` is the last probe: it has not
    been seen to stop), when ``k`` is the first probe (it never rose), or when any value is not
    finite (a diverged run never stopped rising).

    Raises:
      ValueError: ``s`` is not 1-d, or ``tolerance`` is negative.
    """
    s = np.asarray(s, float)
    if s.ndim != 1:
        raise ValueError(f"s must be 1-d; got shape {s.shape}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance={tolerance!r} must be >= 0")
    if s.size < 2 or not np.all(np.isfinite(s)):
        return None
    running = np.maximum.accumulate(s)
    # the largest later value after each probe (−inf after the last)
    later = np.concatenate([np.maximum.accumulate(s[::-1])[::-1][1:], [-np.inf]])
    settled = later <= running + tolerance * np.abs(running)
    k = int(np.argmax(settled))  # the last probe always qualifies
    return k if 0 < k < s.size - 1 else None


def first_crossing(c_y: np.ndarray, c_crit: np.ndarray, *, until: int | None = None,
                   persist: int = 2) -> int | None:
    """The first probe at which the alignment ``c_y`` crosses ``c_crit = α/γ`` *from below* and
    stays at or above it for ``persist`` consecutive probes, all at or before probe ``until``
    (default: the last); ``None`` when there is no such crossing.

    "From below": only after a probe with ``c_y < c_crit`` (at initialisation ``α ≈ 0``, so
    ``c_y ≥ α/γ`` holds trivially before sharpening starts). "Persists": one probe above is not a
    crossing: at the edge α and c_y swing with the period-2 oscillation, and a single sample can
    land on either side (measure them with :func:`eoslib.engine.probes.oscillation_averaged`).
    Non-finite probes (after a divergence) never count as above.
    """
    if not isinstance(persist, int) or persist < 1:
        raise ValueError(f"persist={persist!r} must be a positive integer")
    c_y, c_crit = np.asarray(c_y, float), np.asarray(c_crit, float)
    if c_y.shape != c_crit.shape or c_y.ndim != 1:
        raise ValueError(f"c_y {c_y.shape} and c_crit {c_crit.shape} must be 1-d of one shape")
    end = c_y.size if until is None else min(until + 1, c_y.size)
    c_y, c_crit = c_y[:end], c_crit[:end]
    below = np.nonzero(c_y < c_crit)[0]
    if below.size == 0:
        return None
    above = c_y >= c_crit  # NaN compares False
    for k in range(int(below[0]) + 1, end - persist + 1):
        if above[k:k + persist].all():
            return k
    return None


def aligned_before_stop(c_y: np.ndarray, c_crit: np.ndarray, stop: int | None, *,
                        persist: int = 2) -> bool | None:
    """Whether the alignment ``c_y`` crosses ``c_crit = α/γ`` *from below*, and stays above for
    ``persist`` probes, at or before probe ``stop`` (where the sharpness stops rising): the
    crossing the model says stops sharpening (:func:`first_crossing`).

    A crossing counts only up to ``stop``: once the sharpness has stopped, ``α → 0`` and
    ``c_y ≥ α/γ`` again holds for any run, so a later crossing says nothing. ``None`` when
    ``stop`` is ``None`` (the run never stopped rising: not measured).
    """
    if stop is None:
        return None
    return first_crossing(c_y, c_crit, until=stop, persist=persist) is not None


def crossing_below_sharpness(c_y: np.ndarray, c_crit: np.ndarray, sharpness: np.ndarray,
                             s_max: float, *, strict: bool = False,
                             persist: int = 2) -> bool | None:
    """Whether ``c_y`` crosses ``c_crit = α/γ`` from below (held ``persist`` probes) *while the
    sharpness is still below* ``s_max``: the event of Kolic et al.'s Fig. 13, graded by the
    sharpness at the crossing rather than by the step where the sharpness stopped rising.

    The window is the probes before the sharpness first exceeds ``s_max`` (``strict=True``:
    first reaches it, i.e. the window holds ``S < s_max``; otherwise ``S ≤ s_max``). ``True``:
    a crossing inside that window; ``False``: none, and the sharpness did leave the window (the
    run reached ``s_max`` without crossing first); ``None``: none, and the sharpness never left
    it (the run ended before the event could be decided).

    Why not "before the stop": with ``α`` and ``c_y`` averaged over the pair (θ_t, θ_{t+1}) of an
    edge oscillation ±x·u the average carries the oscillation's own self-stabilisation,
    α_pair ≈ α† − x²(β/2 + S·uᵀ∇²S u), which is ≈ γ c_y at any stationary edge, so a crossing
    at the stop holds by construction. Read α, c_y at the midpoint
    (:func:`eoslib.engine.probes.oscillation_averaged` with ``how="midpoint"``, θ† to first order)
    and grade the crossing by where the sharpness was.
    """
    s = np.asarray(sharpness, float)
    c_y = np.asarray(c_y, float)
    if s.shape != c_y.shape:
        raise ValueError(f"sharpness {s.shape} and c_y {c_y.shape} must have one shape")
    out = np.nonzero(s >= s_max if strict else s > s_max)[0]  # NaN (diverged) never leaves
    if out.size and out[0] == 0:
        return False  # the window is empty: no crossing can have happened inside it
    until = int(out[0]) - 1 if out.size else None
    if first_crossing(c_y, c_crit, until=until, persist=persist) is not None:
        return True
    return False if out.size else None
