"""Gradient descent on a two-layer ReLU network with orthonormal inputs (the shallow-ReLU paper).

The setting of the anonymous ICLR submission "Exploring the Edge of Stability: Insights from a
Fine-Grained Analysis of Gradient Descent in Shallow ReLU Networks", Sec. 2–3:

- network ``h(x) = Σⱼ aⱼ σ(⟨wⱼ, x⟩)`` with σ = ReLU, m neurons, ``wⱼ ∈ ℝᵈ``, ``aⱼ ∈ ℝ``, no biases
  (:class:`eoslib.engine.models.TwoLayerReLU`: ``w`` is ``(m, d)``, ``a`` is ``(m,)``);
- ½MSE ``L(θ) = 1/(2n) Σₖ (h(xₖ) − yₖ)²`` (½‖f − y‖² averaged over the n examples);
- inputs orthonormal, ``⟨xₖ, xₖ'⟩ = 1[k = k']`` (Assumption 2.1; ``x`` is ``(n, d)``, d ≥ n),
  targets non-zero and unbalanced, ``Σ_{yₖ>0} yₖ² > Σ_{yₖ<0} yₖ²``;
- balanced initialisation at scale λ: ``wⱼ = λ gⱼ``, ``aⱼ = λ sⱼ`` (gⱼ uniform on the sphere,
  sⱼ = ±1), so ``‖wⱼ‖ = |aⱼ| = λ``.

Gradient descent in the paper's form (its Eq. 1), with the error-weighted data vector of neuron j::

    dⱼ = −(1/n) Σₖ 1[⟨wⱼ, xₖ⟩ > 0] (h(xₖ) − yₖ) xₖ,
    wⱼ ← wⱼ + η aⱼ dⱼ,    aⱼ ← aⱼ + η ⟨wⱼ, dⱼ⟩,

which is exactly θ ← θ − η∇L (ReLU'(0) = 0, as JAX's). Lemma 2.1: the balance ``‖wⱼ‖² − aⱼ²``
changes in one step by exactly ``η²(‖dⱼ‖² aⱼ² − ⟨dⱼ, wⱼ⟩²)`` (expand the squares; the O(η) terms
cancel), which is ≥ 0 by Cauchy–Schwarz.

Theorem 3.1's directions. The data vectors (App. A.1) are
``d₊ = (1/n) Σ_{yₖ>0} yₖ xₖ`` and ``d₋ = (1/n) Σ_{yₖ<0} yₖ xₖ`` (note: d₋ has the negative
labels as coefficients, so it points *against* the negative examples). The sets (Assumption 2.2,
evaluated at initialisation; the text's ``wⱼᵏ`` is read as ``wⱼ⁰``)::

    S₁,₊ = {j : sⱼ = +1 and ⟨wⱼ⁰, xₖ⟩ ≥ 0 for every k with yₖ > 0},
    S₁,₋ = {j : sⱼ = −1 and ⟨wⱼ⁰, xₖ⟩ ≥ 0 for every k with yₖ < 0}.

With θ ordered neuron by neuron as ``(w₁; a₁; w₂; a₂; …)``, v₊ has the block ``(d₊, ‖d₊‖)`` on
every neuron of S₁,₊ and zeros elsewhere (the text's ``0_d`` must be ``0_{d+1}``); v₋ likewise
with d₋ on S₁,₋. λ₊ and λ₋ are the Rayleigh quotients ``⟨v, ∇²L v⟩ / ‖v‖²`` along them (the
text's ``‖vv₊‖`` is read as ``‖v₊‖``). With d₋ as defined, v₋'s block ``(d₋, ‖d₋‖)`` is the
*scaling* direction of a negative neuron aligned with the negative examples (wⱼ ∝ −d₋, aⱼ < 0),
so both v₊ and v₋ are directions in which the fitted output grows; with the opposite sign of d₋
the Gauss–Newton part of λ₋ would vanish identically at alignment.

The Hessian along a direction with blocks ``(pⱼ, qⱼ)`` is, in closed form (σ'' = 0 a.e.)::

    vᵀ∇²L v = (1/n) Σₖ ⟨∇h(xₖ), v⟩² + (2/n) Σₖ rₖ Σⱼ 1[⟨wⱼ, xₖ⟩ > 0] ⟨pⱼ, xₖ⟩ qⱼ,
    ⟨∇h(xₖ), v⟩ = Σⱼ (aⱼ 1[⟨wⱼ, xₖ⟩ > 0] ⟨pⱼ, xₖ⟩ + σ(⟨wⱼ, xₖ⟩) qⱼ),   rₖ = h(xₖ) − yₖ,

(:func:`curvature`), checked in the tests against ``jax.hessian`` + ``eigh`` in float64.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Scalar
from scipy.optimize import curve_fit

from eoslib.engine import models

Net = models.TwoLayerReLU


# ----------------------------------------------------------------------------- data and setup


def orthonormal_inputs(n: int, d: int, *, key: PRNGKeyArray, dtype=None) -> Float[Array, "n d"]:
    """n orthonormal inputs in ℝᵈ (Assumption 2.1): the rows of a random ``(n, d)`` matrix with
    orthonormal rows (QR of a Gaussian matrix). Requires ``1 ≤ n ≤ d``."""
    if not 1 <= n <= d:
        raise ValueError(f"n={n}, d={d}: orthonormal inputs need 1 ≤ n ≤ d")
    g = jax.random.normal(key, (d, n), dtype or jnp.zeros(()).dtype)
    q, _ = jnp.linalg.qr(g)
    return q.T


def check_data(x: Float[Array, "n d"], y: Float[Array, " n"], atol: float = 1e-5) -> None:
    """Raise ``ValueError`` unless (x, y) satisfies Assumption 2.1: rows of x orthonormal (to
    ``atol``), every yₖ ≠ 0, and ``Σ_{yₖ>0} yₖ² > Σ_{yₖ<0} yₖ²`` (the paper's w.l.o.g. sign)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be (n, d) and y (n,); got x {x.shape}, y {y.shape}")
    gram_err = float(np.max(np.abs(x @ x.T - np.eye(x.shape[0]))))
    if gram_err > atol:
        raise ValueError(f"x: rows are not orthonormal (max |XXᵀ − I| = {gram_err:.2e} > atol={atol})")
    if np.any(y == 0):
        raise ValueError(f"y={y.tolist()}: every target must be non-zero")
    pos, neg = float(np.sum(y[y > 0] ** 2)), float(np.sum(y[y < 0] ** 2))
    if not pos > neg:
        raise ValueError(f"y: Σ_(y>0) y² = {pos:.4g} must exceed Σ_(y<0) y² = {neg:.4g} (unbalanced targets)")


def init(d: int, width: int, scale: float, *, key: PRNGKeyArray) -> Net:
    """The paper's balanced initialisation at scale λ = ``scale`` (0 < λ < 1): ``‖wⱼ‖ = |aⱼ| = λ``."""
    if not 0 < scale < 1:
        raise ValueError(f"scale={scale}: the initialisation scale λ must be in (0, 1)")
    if width < 1 or d < 1:
        raise ValueError(f"width={width}, d={d}: both must be ≥ 1")
    return models.TwoLayerReLU(d, width, scale, key=key)


# ----------------------------------------------------------------------------- the model


def predict(net: Net, x: Float[Array, "n d"]) -> Float[Array, " n"]:
    """``h(xₖ) = Σⱼ aⱼ σ(⟨wⱼ, xₖ⟩)`` for each row of x."""
    return jax.nn.relu(x @ net.w.T) @ net.a


def loss(net: Net, x: Float[Array, "n d"], y: Float[Array, " n"]) -> Scalar:
    """½MSE: ``1/(2n) Σₖ (h(xₖ) − yₖ)²``."""
    return 0.5 * jnp.mean((predict(net, x) - y) ** 2)


def to_theta(net: Net) -> Float[Array, " P"]:
    """The paper's parameter vector, neuron by neuron: ``(w₁; a₁; w₂; a₂; …)``, P = m(d+1)."""
    return jnp.concatenate([net.w, net.a[:, None]], axis=1).reshape(-1)


def from_theta(theta: Float[Array, " P"], m: int, d: int) -> Net:
    """Inverse of :func:`to_theta` (a :class:`~eoslib.engine.models.TwoLayerReLU` with m neurons in ℝᵈ)."""
    blocks = theta.reshape(m, d + 1)
    net = object.__new__(models.TwoLayerReLU)
    object.__setattr__(net, "w", blocks[:, :d])
    object.__setattr__(net, "a", blocks[:, d])
    return net


def dense_hessian(net: Net, x: Float[Array, "n d"], y: Float[Array, " n"]) -> Float[Array, "P P"]:
    """``∇²L`` in the order of :func:`to_theta`, by ``jax.hessian`` (dense; small m, d only)."""
    m, d = net.w.shape
    return jax.hessian(lambda th: loss(from_theta(th, m, d), x, y))(to_theta(net))


def error_vectors(net: Net, x: Float[Array, "n d"], y: Float[Array, " n"]) -> Float[Array, "m d"]:
    """``dⱼ = −(1/n) Σₖ 1[⟨wⱼ, xₖ⟩ > 0] (h(xₖ) − yₖ) xₖ`` for every neuron (row j)."""
    active = (x @ net.w.T > 0).astype(x.dtype)  # (n, m)
    r = predict(net, x) - y  # (n,)
    return -(active * r[:, None]).T @ x / x.shape[0]


def gd_step(net: Net, x: Float[Array, "n d"], y: Float[Array, " n"], eta: float | Scalar) -> Net:
    """One GD step in the paper's form (Eq. 1): ``wⱼ += η aⱼ dⱼ``, ``aⱼ += η ⟨wⱼ, dⱼ⟩``."""
    dvec = error_vectors(net, x, y)
    new = object.__new__(models.TwoLayerReLU)
    object.__setattr__(new, "w", net.w + eta * net.a[:, None] * dvec)
    object.__setattr__(new, "a", net.a + eta * jnp.sum(net.w * dvec, axis=1))
    return new


def balance(net: Net) -> Float[Array, " m"]:
    """The balance ``‖wⱼ‖² − aⱼ²`` of every neuron (0 at the balanced initialisation)."""
    return jnp.sum(net.w**2, axis=1) - net.a**2


def balance_increment(net: Net, x: Float[Array, "n d"], y: Float[Array, " n"],
                      eta: float | Scalar) -> Float[Array, " m"]:
    """Lemma 2.1's exact one-step change of the balance: ``η²(‖dⱼ‖² aⱼ² − ⟨dⱼ, wⱼ⟩²)`` (≥ 0)."""
    dvec = error_vectors(net, x, y)
    return eta**2 * (jnp.sum(dvec**2, axis=1) * net.a**2 - jnp.sum(dvec * net.w, axis=1) ** 2)


# ----------------------------------------------------------------------------- Theorem 3.1


def data_vectors(x: Float[Array, "n d"], y: Float[Array, " n"]) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
    """``(d₊, d₋)`` with ``d₊ = (1/n) Σ_{yₖ>0} yₖ xₖ`` and ``d₋ = (1/n) Σ_{yₖ<0} yₖ xₖ`` (App. A.1)."""
    n = x.shape[0]
    return (jnp.where(y > 0, y, 0) @ x / n, jnp.where(y < 0, y, 0) @ x / n)


def alignment_sets(net: Net, x: Float[Array, "n d"], y: Float[Array, " n"]) -> tuple[Bool[Array, " m"], Bool[Array, " m"]]:
    """Masks of S₁,₊ and S₁,₋ (Assumption 2.2) for the parameters ``net`` (pass the initial ones):
    neurons with aⱼ > 0 (resp. < 0) whose pre-activation is ≥ 0 on every positive (resp.
    negative) example."""
    pre = x @ net.w.T  # (n, m)
    pos_ok = jnp.all((pre >= 0) | (y[:, None] <= 0), axis=0)
    neg_ok = jnp.all((pre >= 0) | (y[:, None] >= 0), axis=0)
    return (net.a > 0) & pos_ok, (net.a < 0) & neg_ok


class Direction(NamedTuple):
    """A direction in parameter space in blocks: ``p`` ``(m, d)`` along the wⱼ, ``q`` ``(m,)`` along the aⱼ."""

    p: Float[Array, "m d"]
    q: Float[Array, " m"]

    def flat(self) -> Float[Array, " P"]:
        """The same direction in the order of :func:`to_theta`."""
        return jnp.concatenate([self.p, self.q[:, None]], axis=1).reshape(-1)


def sharp_directions(x: Float[Array, "n d"], y: Float[Array, " n"], s_plus: Bool[Array, " m"],
                     s_minus: Bool[Array, " m"]) -> tuple[Direction, Direction]:
    """``(v₊, v₋)`` of Theorem 3.1: the block ``(d±, ‖d±‖)`` on each neuron of S₁,± and 0 elsewhere."""
    d_plus, d_minus = data_vectors(x, y)

    def build(dv, mask):
        mk = mask.astype(x.dtype)
        return Direction(mk[:, None] * dv[None, :], mk * jnp.linalg.norm(dv))

    return build(d_plus, s_plus), build(d_minus, s_minus)


def curvature(net: Net, x: Float[Array, "n d"], y: Float[Array, " n"], v: Direction) -> Scalar:
    """``vᵀ ∇²L v`` in closed form (module docstring): Gauss–Newton part plus residual part."""
    pre = x @ net.w.T  # (n, m)
    active = (pre > 0).astype(x.dtype)
    px = x @ v.p.T  # (n, m): ⟨pⱼ, xₖ⟩
    jv = jnp.sum(net.a[None, :] * active * px + jax.nn.relu(pre) * v.q[None, :], axis=1)  # (n,)
    r = predict(net, x) - y
    n = x.shape[0]
    return jnp.sum(jv**2) / n + 2.0 / n * jnp.sum(r * jnp.sum(active * px * v.q[None, :], axis=1))


def rayleigh(net: Net, x: Float[Array, "n d"], y: Float[Array, " n"], v: Direction) -> Scalar:
    """``⟨v, ∇²L v⟩ / ‖v‖²`` (NaN when v = 0, i.e. an empty set S₁,±)."""
    norm2 = jnp.sum(v.p**2) + jnp.sum(v.q**2)
    return jnp.where(norm2 > 0, curvature(net, x, y, v) / jnp.where(norm2 > 0, norm2, 1.0), jnp.nan)


# ----------------------------------------------------------------------------- a whole run


class Trajectory(NamedTuple):
    """What :func:`simulate` recorded (under ``vmap`` every leaf gains leading axes).

    Attributes:
      loss: ``(T,)`` ½MSE at θ_t, t = 0 … T−1 (before update t).
      lambda_plus: ``(T,)`` λ₊(θ_t), the Rayleigh quotient along v₊.
      lambda_minus: ``(T,)`` λ₋(θ_t).
      balance: ``(T, m)`` ``‖wⱼ‖² − aⱼ²`` at θ_t.
      balance_identity_error: ``(T,)`` max over j of \\|Δbalance − η²(‖dⱼ‖²aⱼ² − ⟨dⱼ, wⱼ⟩²)\\|
        for update t (Lemma 2.1; zero up to rounding).
      probe_step: ``(P,)`` steps of the dense eigensolves.
      top_eigenvalues: ``(P, k)`` the k largest eigenvalues of ∇²L (dense ``eigh``), descending.
      diverged_at: scalar: −1, or the first step whose loss was not finite (later rows are NaN).
    """

    loss: Float[Array, " T"]
    lambda_plus: Float[Array, " T"]
    lambda_minus: Float[Array, " T"]
    balance: Float[Array, "T m"]
    balance_identity_error: Float[Array, " T"]
    probe_step: Int[Array, " P"]
    top_eigenvalues: Float[Array, "P k"]
    diverged_at: Int[Array, ""]


@functools.partial(jax.jit, static_argnames=("steps", "probe_every", "top_k"))
def simulate(net: Net, x: Float[Array, "n d"], y: Float[Array, " n"], eta: float | Scalar, *,
             steps: int, probe_every: int, top_k: int = 4) -> Trajectory:
    """Run ``steps`` GD steps from ``net`` as one compiled ``lax.scan``, recording λ±, the loss
    and the balance every step and the top-``top_k`` Hessian eigenvalues (dense ``eigh``) every
    ``probe_every`` steps (``steps`` must be a multiple of it). The sets S₁,± are those of
    ``net``, the initial parameters. Pure and ``vmap``-able over ``net``, ``x``, ``y``, ``eta``."""
    if probe_every < 1 or steps % probe_every:
        raise ValueError(f"steps={steps} must be a positive multiple of probe_every={probe_every}")
    m, d = net.w.shape
    if not 1 <= top_k <= m * (d + 1):
        raise ValueError(f"top_k={top_k} must be in [1, {m * (d + 1)}] (the number of parameters)")
    v_plus, v_minus = sharp_directions(x, y, *alignment_sets(net, x, y))

    def step(carry, _):
        net, t, diverged_at = carry
        ell = loss(net, x, y)
        bad = ~jnp.isfinite(ell)
        diverged_at = jnp.where((diverged_at < 0) & bad, t, diverged_at)
        alive = diverged_at < 0
        new = gd_step(net, x, y, eta)
        predicted = balance_increment(net, x, y, eta)
        err = jnp.max(jnp.abs(balance(new) - balance(net) - predicted))
        nan = lambda v: jnp.where(alive, v, jnp.nan)
        rec = (nan(ell), nan(rayleigh(net, x, y, v_plus)), nan(rayleigh(net, x, y, v_minus)),
               nan(balance(net)), nan(err))
        new = jax.tree.map(lambda u, v: jnp.where(alive, u, v), new, net)
        return (new, t + 1, diverged_at), rec

    def interval(carry, _):
        net, t, diverged_at = carry
        evals = jnp.linalg.eigvalsh(dense_hessian(net, x, y))[::-1][:top_k]
        probe = (t, jnp.where(diverged_at < 0, evals, jnp.nan))
        carry, recs = jax.lax.scan(step, carry, None, length=probe_every)
        return carry, (probe, recs)

    init_carry = (net, jnp.array(0, jnp.int32), jnp.array(-1, jnp.int32))
    (_, _, diverged_at), ((pstep, evals), recs) = jax.lax.scan(
        interval, init_carry, None, length=steps // probe_every)
    flat = lambda a: a.reshape((-1,) + a.shape[2:])
    ell, lp, lm, bal, err = (flat(r) for r in recs)
    return Trajectory(ell, lp, lm, bal, err, pstep, evals, diverged_at)


# ----------------------------------------------------------------------------- phase bookkeeping


class LogisticFit(NamedTuple):
    """``f(t) = base + (plateau − base) / (1 + exp(−rate (t − midpoint)))`` fitted by least squares.

    ``r2`` is the coefficient of determination on the fitted window; all fields are NaN when the
    fit failed (e.g. a curve that never rose).
    """

    rate: float
    midpoint: float
    plateau: float
    base: float
    r2: float


def logistic(t, rate, midpoint, plateau, base):
    """The logistic curve of :class:`LogisticFit` (numpy; overflow-safe)."""
    z = np.clip(-rate * (np.asarray(t, float) - midpoint), -500, 500)
    return base + (plateau - base) / (1.0 + np.exp(z))


def fit_logistic(t: np.ndarray, values: np.ndarray) -> LogisticFit:
    """Fit :func:`logistic` to ``values(t)`` (scipy ``curve_fit``), started from the curve's own
    10 %–90 % rise; non-finite samples are dropped."""
    t, v = np.asarray(t, float), np.asarray(values, float)
    ok = np.isfinite(v)
    t, v = t[ok], v[ok]
    nan = LogisticFit(*(float("nan"),) * 5)
    if v.size < 5:
        return nan
    base, top = float(np.min(v[: max(1, v.size // 20)])), float(np.max(v))
    if not top > base:
        return nan
    frac = (v - base) / (top - base)
    t10 = t[np.argmax(frac >= 0.1)]
    t90 = t[np.argmax(frac >= 0.9)]
    mid = t[np.argmax(frac >= 0.5)]
    rate0 = 4.4 / max(t90 - t10, t[1] - t[0])
    try:
        popt, _ = curve_fit(logistic, t, v, p0=(rate0, mid, top, base), maxfev=20000)
    except (RuntimeError, ValueError):
        return nan
    resid = v - logistic(t, *popt)
    r2 = 1.0 - float(np.sum(resid**2)) / float(np.sum((v - v.mean()) ** 2))
    return LogisticFit(float(popt[0]), float(popt[1]), float(popt[2]), float(popt[3]), r2)


def first_crossing(t: np.ndarray, values: np.ndarray, level: float) -> float:
    """The first ``t`` with ``values ≥ level`` (NaN if never)."""
    hit = np.nonzero(np.asarray(values) >= level)[0]
    return float(np.asarray(t)[hit[0]]) if hit.size else float("nan")


def upper_bound_ratio(maximum: float, bound: float) -> float:
    """``maximum / bound`` for an upper bound ``bound > 0`` on a quantity whose largest value is
    ``maximum`` (≤ 1: the bound holds). NaN (not tested) when ``maximum`` is ≤ 0 or NaN: then any
    positive bound holds by sign alone and the comparison is no evidence. λ± start at −‖d±‖ < 0,
    so Theorem 3.1's phase-1/2 upper bounds are vacuous until λ± turn positive."""
    return float(maximum / bound) if maximum > 0 else float("nan")
