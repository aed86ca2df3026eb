"""The 2-parameter diagonal linear network (DLN) of Wang & Roberts, Sec. 3 and App. B.

The model is the single multiplicative term Θ = θ₁θ₂ with loss L(θ) = z(Θ), z a non-negative
convex even polynomial with its unique minimum at Θ = 0 (default z = Θ²). Everything here is a
closed form from the paper, written so it can be checked against ``jax.hessian`` + ``eigh``:

- Hessian (their Eq. 4)::

      H = [[z''θ₂²,        z''Θ + z'],
           [z''Θ + z',     z''θ₁²   ]]

- eigenvalues (Eq. 5), and the eigenvector orientation ``R₂ = |u₁,₁ / u₁,₂|`` of the sharpest
  eigenvector ``v₁ = (u₁,₁, u₁,₂)`` (Eq. 6)::

      R₂(β) = β + √(β² + 1),   β = | z''(θ₂² − θ₁²) / (2(z' + z''Θ)) |

- the one-step factor of β under gradient descent θ ← θ − η∇L (Eq. 2)::

      γ_β = | (1 − η²z'²) / (1 − sηz' + η²z'²) |,   s = θ₁/θ₂ + θ₂/θ₁

  For z = Θ² the approximation γ_{r₂} ≈ γ_Θ behind Eq. 2 is exact (z'/z'' = Θ), so γ_β is the
  exact ratio β_{t+1}/β_t; for other z it is the paper's approximation.

- the regime boundary γ_β = 1, at ηz' = 2θ₁θ₂/(θ₁² + θ₂²) = (2θ₁/θ₂)(1 − ξ), i.e.
  η = η_eos(1 − ξ) with the paper's η_eos = 2θ₁/(θ₂z') and ξ = θ₁²/(θ₁² + θ₂²) (Sec. 3.1): for η
  below it v₁ rotates toward the sharper parameter (R₂ grows), above it away (R₂ shrinks).

Three step sizes are easily confused, so each has its own function:

- :func:`eta_eos_paper`, the paper's η_eos = 2θ₁/(θ₂z'). It equals 2/H₁₁ = 2/(z''θ₂²) only for
  quadratic z (the paper's footnote 1); for z = Θ² + ½Θ⁴ at θ = (−0.1, 10) it is 0.005, twice 2/H₁₁.
- :func:`stability_limit`, GD's stability limit 2/λ₁ (what the paper calls "the EoS limit").
- :func:`eta_regime_boundary`, η_eos(1 − ξ). For z = Θ² it is 2/tr H = 2/(λ₁ + λ₂), above 2/λ₁ by
  the relative amount ``|λ₂|/tr H`` = (√(1 + 12ξ(1 − ξ)) − 1)/2 ≈ 3ξ (λ₂ < 0 there): the paper's
  "threshold … exactly equal to the EoS limit" holds to order ξ.

Parameters are a float array ``theta`` of shape ``(2,)``; ``z`` is any callable scalar → scalar
(:class:`EvenPolynomial` builds the paper's family); z' and z'' come from ``jax.grad``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Scalar, ScalarLike

from eoslib.engine import divergence

ZFunction = Callable[[Scalar], Scalar]


class EvenPolynomial(eqx.Module):
    """z(Θ) = Σₖ cₖ Θᵏ with only even powers and non-negative coefficients.

    Such a z is convex, non-negative and has its unique minimum at Θ = 0 as the paper requires.
    ``coeffs[k]`` multiplies Θᵏ, so ``EvenPolynomial((0, 0, 1))`` is z = Θ².
    """

    coeffs: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, coeffs: Sequence[float]):
        coeffs = tuple(float(c) for c in coeffs)
        if not coeffs or not all(np.isfinite(coeffs)):
            raise ValueError(f"z_coeffs={list(coeffs)} must be a non-empty list of finite numbers")
        odd = [k for k, c in enumerate(coeffs) if k % 2 == 1 and c != 0]
        negative = [k for k, c in enumerate(coeffs) if c < 0]
        if odd or negative or not any(c > 0 for c in coeffs[2::2]):
            raise ValueError(
                f"z_coeffs={list(coeffs)} is not allowed: z(Θ) = Σ c_k Θ^k needs c_k = 0 for odd k "
                f"(got non-zero at k={odd}), c_k ≥ 0 (negative at k={negative}) and some c_k > 0 "
                "with even k ≥ 2, so that z is convex with its unique minimum at Θ = 0"
            )
        self.coeffs = coeffs

    def __call__(self, Theta: ScalarLike) -> Scalar:
        return sum(c * Theta**k for k, c in enumerate(self.coeffs) if c != 0)


QUADRATIC = EvenPolynomial((0.0, 0.0, 1.0))


def validate_theta(theta: Sequence[float], name: str = "theta0") -> np.ndarray:
    """Check a DLN point: two finite numbers with θ₁θ₂ ≠ 0 (β is undefined at Θ = 0)."""
    try:
        arr = np.asarray(theta, dtype=float)
    except (TypeError, ValueError):
        arr = np.array([np.nan])
    if arr.shape != (2,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}={theta!r} must be two finite numbers (θ₁, θ₂)")
    if arr[0] * arr[1] == 0:
        raise ValueError(f"{name}={theta!r} must have θ₁θ₂ ≠ 0: the paper assumes Θ ≠ 0")
    return arr


def _derivatives(theta: Float[Array, "2"], z: ZFunction):
    Theta = theta[0] * theta[1]
    dz = jax.grad(z)(Theta)
    d2z = jax.grad(jax.grad(z))(Theta)
    return Theta, dz, d2z


def loss(theta: Float[Array, "2"], z: ZFunction = QUADRATIC) -> Scalar:
    """L(θ) = z(θ₁θ₂)."""
    return z(theta[0] * theta[1])


def hessian(theta: Float[Array, "2"], z: ZFunction = QUADRATIC) -> Float[Array, "2 2"]:
    """The closed-form Hessian of Eq. 4, shape ``(2, 2)``."""
    Theta, dz, d2z = _derivatives(theta, z)
    off = d2z * Theta + dz
    return jnp.array([[d2z * theta[1] ** 2, off], [off, d2z * theta[0] ** 2]])


def eigenvalues(theta: Float[Array, "2"], z: ZFunction = QUADRATIC) -> Float[Array, "2"]:
    """The closed-form eigenvalues (λ₁ ≥ λ₂) of Eq. 5, shape ``(2,)``."""
    Theta, dz, d2z = _derivatives(theta, z)
    trace = d2z * (theta[0] ** 2 + theta[1] ** 2)
    root = jnp.sqrt(d2z**2 * (theta[0] ** 2 - theta[1] ** 2) ** 2 + 4 * (dz + d2z * Theta) ** 2)
    return jnp.stack([(trace + root) / 2, (trace - root) / 2])


def beta(theta: Float[Array, "2"], z: ZFunction = QUADRATIC) -> Scalar:
    """``β = |z''(θ₂² − θ₁²) / (2(z' + z''Θ))|`` of Eq. 6 (infinite where z' + z''Θ = 0)."""
    Theta, dz, d2z = _derivatives(theta, z)
    return jnp.abs(d2z * (theta[1] ** 2 - theta[0] ** 2) / (2 * (dz + d2z * Theta)))


def r2_from_beta(b: Float[Array, "*shape"] | ScalarLike) -> Float[Array, "*shape"]:
    """``R₂(β) = β + √(β² + 1)`` (Eq. 6): the closed-form ``|u₁,₁ / u₁,₂|`` when θ₂² > θ₁².

    In general it is the sign- and exchange-invariant ``max(|u₁,₁/u₁,₂|, |u₁,₂/u₁,₁|)``: the
    ratio of the sharper parameter's component to the flatter one's (App. B.1). Elementwise on
    ``b`` of any shape (β ≥ 0); √(β² + 1) is taken as ``hypot(β, 1)``, so it does not overflow
    for β above ~1e154 (where β² would) and R₂ stays finite up to half the largest float.
    """
    b = jnp.asarray(b)
    return b + jnp.hypot(b, jnp.ones_like(b))


def r2_of_eigenvector(v: Float[Array, "2"]) -> Scalar:
    """``R₂ = |u₁,₁ / u₁,₂|`` measured from an eigenvector ``v`` of shape ``(2,)``.

    This is the paper's convention with θ₁ the sharper parameter (θ₂² > θ₁²), as along every
    trajectory of Fig. 1.
    """
    return jnp.abs(v[0] / v[1])


def gamma_beta(theta: Float[Array, "2"], eta: ScalarLike, z: ZFunction = QUADRATIC) -> Scalar:
    """The predicted one-step factor β_{t+1}/β_t of Eq. 2 at ``theta`` for step size ``eta``.

    Written with s·z' = (θ₁² + θ₂²) z'/Θ, which equals the paper's s z' and needs no sign
    assumption on θ.
    """
    Theta, dz, _ = _derivatives(theta, z)
    a = eta * dz
    s_a = a * (theta[0] ** 2 + theta[1] ** 2) / Theta
    return jnp.abs((1 - a**2) / (1 - s_a + a**2))


def eta_regime_boundary(theta: Float[Array, "2"], z: ZFunction = QUADRATIC) -> Scalar:
    """The step size where γ_β = 1: η z' = 2θ₁θ₂ / (θ₁² + θ₂²), i.e. η_eos(1 − ξ) (Sec. 3.1).

    ``theta`` has shape ``(2,)`` with θ₁θ₂ ≠ 0. For z = Θ² it is 2/tr H.
    """
    Theta, dz, _ = _derivatives(theta, z)
    return 2 * Theta / ((theta[0] ** 2 + theta[1] ** 2) * dz)


def eta_eos_paper(theta: Float[Array, "2"], z: ZFunction = QUADRATIC) -> Scalar:
    """The paper's η_eos = 2θ₁/(θ₂z') at ``theta`` (shape ``(2,)``, θ₁θ₂ ≠ 0; Sec. 3.1).

    It is the step size the paper's regime boundary η_eos(1 − ξ) is written with
    (:func:`eta_regime_boundary`), and twice the step ηz' = θ₁/θ₂ of γ_β's first pole. It equals
    2/H₁₁ = 2/(z''θ₂²) only when z is quadratic (footnote 1: then θ₁/(θ₂z') = 1/(z''θ₂²)); it is
    not GD's stability limit 2/λ₁ (:func:`stability_limit`), which it exceeds by ~4ξ for z = Θ².
    Positive for every z of :class:`EvenPolynomial`, where Θz' > 0 for Θ ≠ 0.
    """
    _, dz, _ = _derivatives(theta, z)
    return 2 * theta[0] / (theta[1] * dz)


def stability_limit(theta: Float[Array, "2"], z: ZFunction = QUADRATIC) -> Scalar:
    """GD's stability limit 2/λ₁ of the Hessian at ``theta`` (shape ``(2,)``), λ₁ its largest
    eigenvalue (Eq. 5): the "EoS limit" the paper compares its threshold with, not its η_eos
    (:func:`eta_eos_paper`)."""
    return 2 / eigenvalues(theta, z)[0]


def __getattr__(name: str):
    if name == "eta_eos":  # removed: it returned 2/λ₁ under the name of the paper's η_eos
        raise AttributeError(
            "eoslib.mechanisms.dln.eta_eos was removed: it returned GD's stability limit 2/λ₁, "
            "which is not the paper's η_eos = 2θ₁/(θ₂z'); call dln.stability_limit (2/λ₁) or "
            "dln.eta_eos_paper (the paper's)")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def gd_step(theta: Float[Array, "2"], eta: ScalarLike, z: ZFunction = QUADRATIC) -> Float[Array, "2"]:
    """One gradient-descent step θ − η∇L(θ)."""
    return theta - eta * jax.grad(loss)(theta, z)


class Trajectory(NamedTuple):
    """A gradient-descent run on the DLN; arrays have a leading time axis of ``steps + 1``
    (index 0 is the initial point). Entries from ``diverged_at`` on are NaN.

    Attributes:
      theta: parameters, shape ``(T, 2)``.
      loss: L(θ_t), shape ``(T,)``.
      sharpness: λ₁ of ``jax.hessian(loss)`` by ``eigh``, shape ``(T,)``.
      r2: R₂ measured from the ``eigh`` eigenvector of λ₁, shape ``(T,)``.
      beta: the closed-form β at θ_t, shape ``(T,)``.
      diverged_at: first step whose loss was non-finite or above ``max_loss``; −1 if none.
    """

    theta: Float[Array, "T 2"]
    loss: Float[Array, " T"]
    sharpness: Float[Array, " T"]
    r2: Float[Array, " T"]
    beta: Float[Array, " T"]
    diverged_at: Int[Array, ""]


def _observe(theta, z):
    evals, evecs = jnp.linalg.eigh(jax.hessian(loss)(theta, z))
    return loss(theta, z), evals[-1], r2_of_eigenvector(evecs[:, -1]), beta(theta, z)


def gd(
    theta0: Float[Array, "2"],
    eta: ScalarLike,
    steps: int,
    z: ZFunction = QUADRATIC,
    *,
    max_loss: float = 1e12,
) -> Trajectory:
    """Run ``steps`` steps of gradient descent from ``theta0`` with a fixed ``eta``.

    The run is one ``lax.scan``; it can be ``jax.vmap``-ed over ``eta`` (or ``theta0``). Divergence
    as everywhere in eoslib (:mod:`eoslib.engine.divergence`): the first step whose loss is
    non-finite or exceeds ``max_loss`` is ``diverged_at``; parameters stop updating and that
    step's entries and later ones are NaN, so a sweep's other members still finish.
    """
    max_loss = divergence.check_max("max_loss", max_loss)
    theta0 = jnp.asarray(theta0)

    def step(carry, t):
        theta, diverged_at = carry
        obs = _observe(theta, z)
        diverged_at = divergence.update(diverged_at, t, obs[0], max_loss)
        alive = divergence.alive(diverged_at)
        out = divergence.mask(alive, (theta,) + obs)
        theta = divergence.hold(alive, gd_step(theta, eta, z), theta)
        return (theta, diverged_at), out

    (_, diverged_at), outs = jax.lax.scan(
        step, (theta0, divergence.start()), jnp.arange(steps + 1, dtype=jnp.int32)
    )
    return Trajectory(*outs, diverged_at=diverged_at)


def first_reversal(r2: Float[Array, " T"]) -> tuple[int, int]:
    """The initial direction of R₂ (+1 toward θ₁, −1 away) and the number of steps it keeps it.

    Returns ``(direction, run_length)``: ``run_length`` counts the consecutive steps from t = 0
    over which R₂ moves in ``direction``; it equals the number of finite steps when the rotation
    never reverses. (A host-side summary of a finished trajectory, not jitted.)
    """
    r2 = np.asarray(r2)
    r2 = r2[np.isfinite(r2)]
    d = np.sign(np.diff(r2))
    if d.size == 0 or d[0] == 0:
        return 0, 0
    direction = int(d[0])
    broken = np.nonzero(d != direction)[0]
    return direction, int(broken[0]) if broken.size else int(d.size)


def last_unstable_step(sharpness: Float[Array, " T"], eta: float) -> tuple[int, bool]:
    """When a run's instability resolves: the last step whose sharpness is at least 2/η.

    Args:
      sharpness: λ₁ along a run, shape ``(T,)`` (``Trajectory.sharpness``; NaN after divergence).
      eta: the run's step size (> 0).

    Returns:
      ``(t_last, resolved)``: ``t_last`` is the last finite step t with ``sharpness[t] ≥ 2/η``
      (−1 if the run was never unstable); ``resolved`` is whether a finite step below 2/η follows
      it, i.e. the run ended stable. (A host-side summary of a finished trajectory, not jitted.)

    Raises:
      ValueError: ``eta`` is not a positive finite number, or ``sharpness`` is not 1-D.
    """
    if not (isinstance(eta, (int, float, np.floating)) and np.isfinite(eta) and eta > 0):
        raise ValueError(f"eta={eta!r} must be a positive finite number")
    s = np.asarray(sharpness, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"sharpness has shape {s.shape}; expected one run's trace, shape (T,)")
    s = s[np.isfinite(s)]
    unstable = np.nonzero(s >= 2 / eta)[0]
    if unstable.size == 0:
        return -1, True
    t_last = int(unstable[-1])
    return t_last, t_last < s.size - 1


def is_diverged(trajectory: Trajectory) -> Bool[Array, "..."]:
    """Whether each run in ``trajectory`` (possibly a vmapped batch) diverged."""
    return trajectory.diverged_at >= 0
