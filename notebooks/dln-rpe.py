# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Rotational polarity of eigenvectors in a 2-parameter DLN
#
# **Claim** ({cite:t}`wang2024stability`, Sec. 3 and App. B). In the two-parameter diagonal
# linear network $L(\theta_1,\theta_2) = z(\theta_1\theta_2)$, gradient descent with a *stable*
# step size rotates the sharpest Hessian eigenvector $v_1$ toward the sharper parameter, while an
# *unstable* step size rotates it away, at least at first — the **rotational polarity of
# eigenvectors** (RPE). The rotation is monotone in each regime, and the boundary between the
# regimes sits at the edge of stability.
#
# Three step sizes near each other are easy to confuse, so this chapter names each one it uses:
#
# | name | value | where |
# |---|---|---|
# | the paper's $\eta_{\rm eos}$ | $2\theta_1/(\theta_2 z')$; equal to $2/H_{11} = 2/(z''\theta_2^2)$ only for quadratic $z$ (footnote 1) | Sec. 3.1, Fig. 1 ("$\eta_{eos} = 0.01$") |
# | the edge of stability | $2/\lambda_{\max}(\theta_0)$ | GD's stability limit ("the EoS limit"); this chapter splits stable from unstable $\eta$ here |
# | the regime boundary $\gamma_\beta = 1$ | $\eta_{\rm eos}(1-\xi)$, which for $z=\Theta^2$ is $2/\operatorname{tr} H$ | Sec. 3.1; our derivation below |
#
# ## Setup
#
# | | paper (Fig. 1) | this chapter (parameters) |
# |---|---|---|
# | model | $\Theta = \theta_1\theta_2$, loss $L = z(\Theta)$, $z = \Theta^2$ | $z$ from `z_coeffs` (default $\Theta^2$) |
# | initialisation | $\theta_0 = (-0.1, 10)$ | $\theta_0$ = `theta0` |
# | optimiser | full-batch GD, fixed $\eta \in \{0.001, 0.0095, 0.011, 0.013\}$ | full-batch GD, fixed $\eta$ from `etas` (the paper's values by default), or, if `eta_fractions` is given, those fractions of the paper's $\eta_{\rm eos}$ at $\theta_0$; `steps` steps |
# | measured | $v_1$'s orientation | $R_2 = \lvert u_{1,1}/u_{1,2}\rvert$ of the top eigenvector of the exact Hessian, sharpness $\lambda_{\max}$ |
# | precision | | float64 (this model has two parameters; nothing is scaled down) |
#
# The values this run used are printed below its parameters.
#
# The paper's closed forms, all in {mod}`eoslib.mechanisms.dln`, are
#
# $$
# R_2 = \beta + \sqrt{\beta^2 + 1},\qquad
# \beta = \left|\frac{z''(\theta_2^2-\theta_1^2)}{2(z' + z''\Theta)}\right|,\qquad
# \gamma_\beta = \frac{\beta_{t+1}}{\beta_t} \approx \left|\frac{1-\eta^2 z'^2}{1 - s\eta z' + \eta^2 z'^2}\right|,
# \quad s = \frac{\theta_1}{\theta_2} + \frac{\theta_2}{\theta_1}.
# $$
#
# $\gamma_\beta > 1$ means $R_2$ grows: $v_1$ turns toward $\theta_1$. The regime boundary
# $\gamma_\beta = 1$ lies at $\eta z' = 2\theta_1\theta_2/(\theta_1^2+\theta_2^2)$, that is at
# $\eta_{\rm eos}(1-\xi)$ with $\xi = \theta_1^2/(\theta_1^2+\theta_2^2)$. The paper equates it with
# the edge of stability only in what it calls the practical regime: "$\xi \approx 0$, so that the
# threshold for regime change is exactly equal to the EoS limit for quadratic $z$" (Sec. 3.2 and
# its footnote 1).
#
# **What we add (our derivation).** For $z = \Theta^2$ the approximation behind $\gamma_\beta$ is
# exact ($z'/z'' = \Theta$, so $r_2 = 4\Theta$ and $\gamma_{r_2} = \gamma_\Theta$ exactly), and the
# boundary is $\eta = 1/(\theta_1^2+\theta_2^2) = 2/\operatorname{tr} H = 2/(\lambda_1+\lambda_2)$.
# Since $\det H = -12\Theta^2 < 0$, $\lambda_2 < 0$ and the boundary lies *above* the edge of
# stability $2/\lambda_1$, by the relative amount
# $\lvert\lambda_2\rvert/\operatorname{tr} H = (\sqrt{1+12\xi(1-\xi)}-1)/2 \approx 3\xi$; it lies
# below the paper's $\eta_{\rm eos} = 1/\theta_2^2$ by the factor $1-\xi$. Three consequences, which
# decide how the claims below are read:
#
# - the first step from $\theta_0$ turns $v_1$ toward $\theta_1$ exactly when
#   $\eta < 2/\operatorname{tr} H(\theta_0)$ (for $\eta$ below $\gamma_\beta$'s second pole
#   $\eta z' = \theta_2/\theta_1$, far beyond divergence when $\xi \approx 0$), so RPE's
#   first-step directions and the position of the boundary are **one hypothesis** (the boundary
#   sits at the edge) read at two resolutions: at
#   Fig. 1's step sizes (RPE, scored) and to 1 % (`threshold`, shown as a consistency check,
#   since $\theta_0$ alone decides it through the formula above);
# - every step size below $2/\lambda_{\max}(\theta_0)$ turns $v_1$ toward $\theta_1$, and keeps doing
#   so at every later step: $\lVert\theta\rVert^2$ does not grow while
#   $\eta\lVert\theta\rVert^2 \le 2$. The *stable* halves of RPE and monotonicity therefore hold by
#   algebra for $z = \Theta^2$; they are the control, and the evidence is in the unstable halves;
# - the claims are the paper's only where $\xi \approx 0$ and $z$ is quadratic. Each claim is
#   graded only there (read as $\xi \le 0.01$, where the paper's own correction factor $1-\xi$ is
#   within 1 %, and $z = c\,\Theta^2$) and reads `not tested` elsewhere, with the run's $\xi$ and
#   $z$ in its note.

# %% tags=["hide-input"]
import os
import time

import jax

jax.config.update("jax_enable_x64", True)  # two parameters: float64 costs nothing here

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from eoslib.mechanisms import dln
from eoslib.book.display import claims_table, use_book_style, verdict_section
from eoslib.book.scales import settings
from eoslib.book.results import make_record, provenance, write_record
from eoslib.book.verdicts import grade_all

use_book_style()
start_time = time.time()

# %% tags=["parameters"]
scale = os.environ.get("EOSLIB_SCALE", "book")  # smoke | book | paper
theta0 = None  # initial (θ1, θ2), both non-zero
etas = None  # step sizes to compare (the paper's absolute values by default)
eta_fractions = None  # if non-empty: step sizes as fractions of the paper's η_eos at θ0, instead of etas
steps = None  # gradient-descent steps per run
z_coeffs = None  # coefficients c_k ≥ 0 of Θ^k in z(Θ), even k only ([0, 0, 1] is Θ²)
eta_grid_points = None  # step sizes in the sweep that locates the regime boundary
results_dir = None  # where the results record goes (default: the book's _build/records)

# %% tags=["hide-input"]
RANGES = {"theta0": "list[float != 0], length 2", "etas": "list[float > 0], non-empty",
          "eta_fractions": "list[float > 0]", "steps": "int >= 1",
          "z_coeffs": "list[float >= 0], non-empty", "eta_grid_points": "int >= 2"}
SCALES = {
    "smoke": {"theta0": [-0.1, 10.0], "etas": [0.001, 0.0095, 0.011, 0.013], "eta_fractions": [],
              "steps": 60, "z_coeffs": [0.0, 0.0, 1.0], "eta_grid_points": 201},
    "book": {"theta0": [-0.1, 10.0], "etas": [0.001, 0.0095, 0.011, 0.013], "eta_fractions": [],
             "steps": 200, "z_coeffs": [0.0, 0.0, 1.0], "eta_grid_points": 4001},
    "paper": {"theta0": [-0.1, 10.0], "etas": [0.001, 0.0095, 0.011, 0.013], "eta_fractions": [],
              "steps": 1000, "z_coeffs": [0.0, 0.0, 1.0], "eta_grid_points": 40001},
}
P = settings(SCALES, scale, RANGES, theta0=theta0, etas=etas, eta_fractions=eta_fractions,
             steps=steps, z_coeffs=z_coeffs, eta_grid_points=eta_grid_points)
if P.eta_fractions and etas is not None:
    raise ValueError(f"etas={etas!r} and eta_fractions={eta_fractions!r} were both given: the step "
                     "sizes are either absolute (etas) or fractions of the paper's η_eos at θ0 "
                     "(eta_fractions), not both")
z = dln.EvenPolynomial(P.z_coeffs)
theta_init = jnp.asarray(dln.validate_theta(P.theta0, "theta0"))
# the paper's η_eos = 2θ1/(θ2 z'(Θ)) at θ0 (Sec. 3.1): what eta_fractions are fractions of
eta_eos_paper = float(dln.eta_eos_paper(theta_init, z))
eta_values = ([f * eta_eos_paper for f in P.eta_fractions] if P.eta_fractions
              else list(P.etas))
eta_list = jnp.asarray(eta_values, dtype=jnp.float64)
quadratic_z = P.z_coeffs[2:] and all(c == 0 for i, c in enumerate(P.z_coeffs)
                                     if i != 2)
P.as_dict()

# %% tags=["remove-input"]
t1, t2 = (float(v) for v in P.theta0)
z_text = " + ".join(("" if c == 1 else f"{c:g}") + (f"\\Theta^{{{k}}}" if k else "" if c != 1 else "1")
                    for k, c in enumerate(P.z_coeffs) if c) or "0"
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
z_plain = " + ".join(("" if c == 1 and k else f"{c:g}") + (f"Θ{str(k).translate(SUPERSCRIPTS)}"
                                                           if k else "")
                     for k, c in enumerate(P.z_coeffs) if c) or "0"
xi = t1**2 / (t1**2 + t2**2)  # the paper's ξ at θ0
sharper = ("$\\theta_1$ is the sharper parameter ($\\theta_2^2 > \\theta_1^2$)" if t2**2 > t1**2
           else "$\\theta_1$ is not the sharper parameter ($\\theta_2^2 \\le \\theta_1^2$), "
                "against the paper's setting")
eta_source = (f"the fractions {', '.join(f'{f:g}' for f in P.eta_fractions)} of the paper's "
              f"$\\eta_{{\\rm eos}} = {eta_eos_paper:.4g}$ at $\\theta_0$" if P.eta_fractions
              else "`etas`")
display(Markdown(
    f"This run ({scale} scale): $\\theta_0 = ({t1:g}, {t2:g})$, so {sharper}; "
    f"$z(\\Theta) = {z_text}$ ({'quadratic' if quadratic_z else 'not quadratic'}); "
    f"$\\xi = \\theta_1^2/(\\theta_1^2+\\theta_2^2) = {xi:.2g}$ (the paper's regime, which the "
    "claims' precondition below reads, is $\\xi \\approx 0$ and quadratic $z$). "
    f"$\\eta \\in \\{{{', '.join(f'{e:.4g}' for e in eta_values)}\\}}$ (from {eta_source}), "
    f"{P.steps} steps each."))

# %% [markdown]
# ## Claims, declared before the run
#
# Each claim is graded after the run by the rule stated with it, fixed here before any number
# exists. A step size is *stable* when $\eta < 2/\lambda_{\max}(\theta_0)$ and *unstable* above it;
# runs that diverge are counted apart and belong to neither regime (the paper sets such
# "extremely-large" $\eta$ aside, Sec. 3.3). Every claim is graded only inside the paper's regime,
# $\xi \le 0.01$ and quadratic $z$ (see *What we add*); `not tested` means the parameters left that
# regime, or never put a non-diverged step size in a regime the claim needs: neither a failure nor
# a success. The position of the boundary and the closed forms are recorded as consistency checks,
# not scored. Each paper claim also declares how its experiment differs from the paper's, with the
# reason; the table and the Verdict section show those departures, from the record, beside every
# verdict other than `reproduced`.

# %% tags=["claims", "hide-input", "hide-output"]
from IPython.display import display

from eoslib.book.display import declared_claims
from eoslib.book.verdicts import AllOf, AtLeast, AtMost, ClaimSpec, Departure, Given

NAMES = {
    "xi": "ξ = θ1²/(θ1²+θ2²) at θ0",
    "quadratic_z": "z = cΘ² (1: yes, 0: no)",
    "n_stable": "the number of non-diverged η < 2/λmax(θ0)",
    "n_unstable": "the number of non-diverged η > 2/λmax(θ0)",
    "n_unstable_away": "the number of non-diverged η > 2/λmax(θ0) whose first step turns v1 away",
    "stable_toward_fraction": ("the fraction of stable η whose first step turns v1 "
                               "toward θ1"),
    "unstable_away_fraction": ("the fraction of unstable η whose first step turns v1 "
                               "away from θ1"),
    "stable_monotone_fraction": "the fraction of stable η whose R2 never reverses",
    "unstable_turn_at_resolution_fraction": (
        "the fraction of unstable η turning v1 away whose R2 falls until the instability resolves "
        "(its lowest step within one step of the last step with sharpness ≥ 2/η, the run ending "
        "below 2/η) and rises at every step after"),
    "boundary_gap_2_over_lambda_max": "|γβ = 1 boundary / (2/λmax(θ0)) − 1|",
    "hessian_max_rel_err": "the largest relative error of the closed-form Hessian",
    "eigenvector_angle_max_err": "the largest eigenvector-angle error of R2(β) (rad)",
    "gamma_beta_max_rel_err": "the largest relative error of γβ",
    "boundary_crossing_err_spacings": ("|measured γβ = 1 crossing − closed-form boundary|, in grid "
                                       "spacings"),
}

# The paper's regime: "ξ ≈ 0, so that the threshold for regime change is exactly equal to the EoS
# limit for quadratic z" (Sec. 3.2, footnote 1). ξ ≈ 0 is read as ξ ≤ 0.01, where the paper's own
# correction factor (1 − ξ) is within 1 %. Outside it the claims are not tested.
REGIME = AllOf((AtMost("xi", 0.01, fmt=".2g"), AtLeast("quadratic_z", 1, fmt=".0f")))
STABLE, UNSTABLE = AtLeast("n_stable", 1), AtLeast("n_unstable", 1)
# How each experiment differs from the paper's. At the defaults the model, θ0, z and the step sizes
# are the paper's at every scale; a rerun's θ0 and z are named by {regime_text}.
RERUN = Departure("{regime_text}", "design choice")
SPLIT = Departure("stable and unstable η split at GD's stability limit 2/λmax(θ0) = "
                  "{eta_2_over_lambda_max:.5g}, not at the paper's regime boundary η_eos(1 − ξ) = "
                  "{eta_boundary_closed_form:.5g} (η_eos = 2θ1/(θ2z′) = {eta_eos_paper:.5g})",
                  "design choice")
CLAIMS = [
    ClaimSpec(
        "RPE",
        "stable η (below 2/λmax(θ0)) rotate v1 toward the sharper parameter θ1; "
        "unstable η (above it) rotate it away",
        "η = 0.001, 0.0095 toward θ1; η = 0.011, 0.013 away, at θ0 = (−0.1, 10) with "
        "the paper's η_eos = 0.01 (Fig. 1)",
        rule=Given(REGIME, AllOf((
            Given(STABLE, AtLeast("stable_toward_fraction", 1.0, fmt=".0%")),
            Given(UNSTABLE, AtLeast("unstable_away_fraction", 1.0, fmt=".0%"))))),
        ours="stable: {stable_directions}; unstable: {unstable_directions}; "
             "diverged: {diverged_etas}",
        glossary=NAMES,
        control="the stable η of the same sweep from the same θ0 (toward θ1 by algebra for "
                "z = Θ², see What we add): the direction must differ across 2/λmax(θ0)",
        departures=(SPLIT, RERUN,
                    Departure("the direction read from the sign of R2's change over the first "
                              "step (the paper reads it off Fig. 1's trajectories)",
                              "not stated in the paper"))),
    ClaimSpec(
        "monotone-until-stable",
        "stable η rotate v1 monotonically toward θ1; unstable η rotate it away monotonically "
        "until the instability resolves (the run returns below 2/η), then toward θ1",
        "\"stable ηs directly rotate toward θ1, while unstable ηs rotate away, at least "
        "initially\"; unstable runs \"return to stability later on\" (Sec. 3.2, Fig. 1)",
        rule=Given(REGIME, AllOf((
            Given(STABLE, AtLeast("stable_monotone_fraction", 1.0, fmt=".0%")),
            Given(AtLeast("n_unstable_away", 1),
                  AtLeast("unstable_turn_at_resolution_fraction", 1.0, fmt=".0%"))))),
        ours="stable η: R2 never reverses for {stable_monotone_fraction:.0%}; unstable η: "
             "{unstable_rotation_text} ({restabilised_text}); diverged: {diverged_etas} "
             "({divergence_onset_text})",
        glossary=NAMES,
        control="the stable η of the same sweep (monotone by algebra for z = Θ²); the direction "
                "of the first step is RPE's and not graded again here",
        departures=(SPLIT, RERUN,
                    Departure("the instability's resolution read as the last step with "
                              "sharpness ≥ 2/η and v1's turn as R2's lowest step, matched within "
                              "one step; runs of {gd_steps} steps; runs that diverge left out (the "
                              "paper's \"extremely-large\" η, Sec. 3.3). The paper states neither "
                              "Fig. 1's number of steps nor a criterion",
                              "not stated in the paper"))),
    ClaimSpec(
        "threshold",
        "the regime boundary γβ = 1 sits at the edge of stability 2/λmax(θ0): RPE's hypothesis "
        "read to 1 % instead of at Fig. 1's step sizes; for z = Θ² the boundary is 2/tr H(θ0) "
        "by algebra, so θ0 alone decides it",
        "boundary = η_eos(1 − ξ), \"exactly equal to the EoS limit for quadratic z\" when "
        "ξ ≈ 0 (Sec. 3.1–3.2)",
        rule=Given(REGIME, AtMost("boundary_gap_2_over_lambda_max", 0.01, fmt=".1e")),
        ours="boundary {eta_boundary_measured:.5g} (measured on the first step); "
             "2/λmax = {eta_2_over_lambda_max:.5g}, 2/tr H = {eta_2_over_trH:.5g}, "
             "the paper's η_eos = {eta_eos_paper:.5g} (ξ = {xi:.1e})",
        glossary=NAMES,
        kind="consistency",
        departures=(RERUN,)),
    ClaimSpec(
        "closed-forms",
        "R2 = β + √(β²+1) and the closed-form Hessian (Eqs. 1, 4; App. B) match the "
        "exact Hessian along every run",
        "derived in App. B",
        rule=AllOf((AtMost("hessian_max_rel_err", 1e-10, fmt=".0e"),
                    AtMost("eigenvector_angle_max_err", 1e-8, fmt=".0e"))),
        ours="Hessian rel. err {hessian_max_rel_err:.0e}; eigenvector angle err "
             "{eigenvector_angle_max_err:.0e} rad",
        glossary=NAMES,
        kind="consistency"),
    ClaimSpec(
        "gamma-beta-exact",
        "for quadratic z the one-step factor γβ (Eq. 2) is the exact β_{t+1}/β_t, and the "
        "measured γβ = 1 crossing is its closed-form boundary",
        "derived in App. B (γβ approximate in general)",
        rule=Given(AtLeast("quadratic_z", 1, fmt=".0f"),
                   AllOf((AtMost("gamma_beta_max_rel_err", 1e-8, fmt=".0e"),
                          AtMost("boundary_crossing_err_spacings", 2, fmt=".2g")))),
        ours="γβ rel. err {gamma_beta_max_rel_err:.0e}, direction right on "
             "{gamma_beta_direction_agreement:.0%} of steps; crossing "
             "{boundary_crossing_err_spacings:.2g} grid spacings from the closed form",
        glossary=NAMES,
        kind="consistency"),
]
display(declared_claims(CLAIMS))
# %% [markdown]
# ## Run: the Hessian at initialisation

# %%
lam = dln.eigenvalues(theta_init, z)
H_init = dln.hessian(theta_init, z)
eta_edge = float(dln.stability_limit(theta_init, z))  # the edge 2/λmax(θ0): stable | unstable η
# (the paper's η_eos = 2θ1/(θ2 z'), computed with the parameters above, is 2/H11 only for quadratic z)
eta_2_over_H11 = float(2 / H_init[0, 0])
eta_trace = float(2 / jnp.trace(H_init))  # 2/tr H: γβ = 1 for z = Θ² (our derivation)
eta_boundary = float(dln.eta_regime_boundary(theta_init, z))  # η_eos(1 − ξ)

# %% tags=["hide-input"]
beta_init = float(dln.beta(theta_init, z))
R2_init = float(dln.r2_from_beta(beta_init))
print(f"λ = {np.asarray(lam)};  2/λmax = {eta_edge:.6g},  the paper's η_eos = 2θ1/(θ2z') = "
      f"{eta_eos_paper:.6g}  (2/H11 = {eta_2_over_H11:.6g}),  2/tr H = {eta_trace:.6g}")
print(f"regime boundary γ_β = 1 at η = η_eos(1 − ξ) = {eta_boundary:.6g}  (closed form; "
      f"ξ = {xi:.3g})")
print(f"β = {beta_init:.6g},  R2 = {R2_init:.6g}")

# %% [markdown]
# ## Gradient descent for each step size
#
# One compiled call: `jax.vmap` of a `lax.scan` over the step sizes. A run whose loss becomes
# non-finite is recorded as diverged (its later entries are NaN), never dropped.

# %%
runs = jax.jit(jax.vmap(lambda eta: dln.gd(theta_init, eta, P.steps, z)))(eta_list)
runs = jax.tree.map(np.asarray, runs)
# where divergence sets in from θ0 (the paper's "extremely-large" η, which the claims leave out):
# the same runs for 61 step sizes from the edge to four times it
eta_diverge_grid = np.linspace(eta_edge, 4 * eta_edge, 61)
diverges = np.asarray(jax.jit(jax.vmap(
    lambda eta: dln.gd(theta_init, eta, P.steps, z).diverged_at >= 0))(jnp.asarray(eta_diverge_grid)))

# %% tags=["hide-input"]
summary = []
for i, eta in enumerate(np.asarray(eta_list)):
    direction, run_length = dln.first_reversal(runs.r2[i])
    finite = np.isfinite(runs.sharpness[i])
    last_unstable, resolved = dln.last_unstable_step(runs.sharpness[i], float(eta))
    r2_alive = runs.r2[i][np.isfinite(runs.r2[i])]
    # after R2's first turn (step run_length), does it move toward θ1 at every later step?
    after_direction, after_length = dln.first_reversal(r2_alive[run_length:])
    summary.append({
        "eta": float(eta),
        "regime": "stable" if eta < eta_edge else "unstable",
        "direction": direction,
        "monotone_steps": run_length,  # R2's first turn is at this step
        "finite_steps": int(finite.sum()) - 1,
        "last_unstable_step": last_unstable,  # −1: never unstable
        "resolved": resolved,  # the run ended below 2/η
        "toward_after_turn": (run_length < r2_alive.size - 1 and after_direction > 0
                              and after_length == r2_alive.size - 1 - run_length),
        "final_sharpness": float(runs.sharpness[i][finite][-1]),
        "diverged_at": int(runs.diverged_at[i]),
    })
    moves = {1: "toward θ1", -1: "away from θ1", 0: "not at all"}[direction]
    died = summary[-1]["diverged_at"]
    print(f"η = {eta:<7.4g} ({summary[-1]['regime']:>8}): R2 moves {moves} for "
          f"{run_length} steps; last step with sharpness ≥ 2/η: "
          f"{last_unstable if last_unstable >= 0 else 'none'}; final sharpness "
          f"{summary[-1]['final_sharpness']:.4g} vs "
          f"2/η = {2 / eta:.4g}"
          + (f"; diverged at step {died}" if died >= 0 else ""))
eta_divergence_onset = (float(eta_diverge_grid[np.argmax(diverges)]) if diverges.any()
                        else float("nan"))
print(f"from θ0, GD diverges within {P.steps} steps for η ≥ {eta_divergence_onset:.4g} on a grid "
      f"of spacing {eta_diverge_grid[1] - eta_diverge_grid[0]:.2g} from 2/λmax to 4/λmax"
      if diverges.any() else f"no η up to 4/λmax = {4 * eta_edge:.4g} diverges within {P.steps} steps")

# %% [markdown]
# ## Where the regimes meet
#
# The first gradient step from $\theta_0$ for a fine grid of step sizes around
# $2/\lambda_{\max}$ and the closed-form boundary (one vmapped call): the measured
# $\beta_1/\beta_0$ against the closed form $\gamma_\beta$. The measured boundary is where
# $\beta_1/\beta_0$ crosses 1.

# %% tags=["hide-input"]
eta_grid = jnp.linspace(0.75 * min(eta_edge, eta_boundary),
                        1.25 * max(eta_edge, eta_boundary), P.eta_grid_points)
measured_ratio = np.asarray(jax.vmap(
    lambda eta: dln.beta(dln.gd_step(theta_init, eta, z), z) / dln.beta(theta_init, z)
)(eta_grid))
predicted_ratio = np.asarray(
    jax.vmap(lambda eta: dln.gamma_beta(theta_init, eta, z))(eta_grid))
crossings = np.nonzero((measured_ratio[:-1] >= 1) & (measured_ratio[1:] < 1))[0]
if crossings.size:
    k = crossings[-1]
    g0, g1 = np.log(measured_ratio[k]), np.log(measured_ratio[k + 1])
    eta_boundary_measured = float(eta_grid[k]
                                  + (eta_grid[k + 1] - eta_grid[k]) * g0 / (g0 - g1))
else:  # no crossing within ±25% of 2/λmax: the boundary is not at the edge (failed)
    eta_boundary_measured = float("nan")
boundary_gap = (abs(eta_boundary_measured / eta_edge - 1) if crossings.size
                else float("inf"))
print(f"measured boundary η = {eta_boundary_measured:.6g}; "
      f"closed form {eta_boundary:.6g}; "
      f"2/λmax = {eta_edge:.6g}; relative gap to 2/λmax {boundary_gap:.2e}")

# %% [markdown]
# ## Figure 1, rerun

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Left: the regimes of $\\gamma_\\beta$ at $\\theta_0$ (closed form, line; measured first step, dots), with $2/\\lambda_{\\max}(\\theta_0)$ dashed and the paper's $\\eta_{\\rm eos} = 2\\theta_1/(\\theta_2 z')$ dotted. Middle: gradient-descent trajectories over the loss contours ($\\theta_1$ axis magnified, as in the paper). Right: the orientation $R_2$ of the sharpest eigenvector relative to its value at $\\theta_0$, over the first steps (above 1: $v_1$ has turned toward $\\theta_1$; below 1: away).", "name": "fig-dln-rpe"}}
colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))

ax = axes[0]
eta_wide = jnp.linspace(0.02 * eta_edge, 1.5 * eta_edge, 1500)
gamma_wide = jax.vmap(lambda e: dln.gamma_beta(theta_init, e, z))(eta_wide)
ax.semilogy(eta_wide, gamma_wide, color="0.3", lw=1)
thin = max(1, P.eta_grid_points // 40)
ax.semilogy(eta_grid[::thin], measured_ratio[::thin],
            ".", color=colors[3], ms=4, label="measured $\\beta_1/\\beta_0$")
ax.axhline(1, color="k", lw=0.8)
ax.axvline(eta_edge, color="k", ls="--", lw=0.8,
           label="$2/\\lambda_{\\max}(\\theta_0)$")
ax.axvline(eta_eos_paper, color="k", ls=":", lw=0.8,
           label="paper's $\\eta_{\\rm eos}$")
for c, eta in zip(colors, np.asarray(eta_list)):
    ax.axvline(eta, color=c, lw=1.5, alpha=0.6)
ax.set(xlabel="$\\eta$", ylabel="$\\gamma_\\beta$",
       title="regimes of $\\gamma_\\beta$ at $\\theta_0$")
ax.legend()

ax = axes[1]
t1_max = np.nanmax(np.abs(runs.theta[..., 0])) * 1.2
t1 = np.linspace(-t1_max, t1_max, 300)
t2 = np.linspace(np.nanmin(runs.theta[..., 1]) * 0.95,
                 np.nanmax(runs.theta[..., 1]) * 1.02, 300)
T1, T2 = np.meshgrid(t1, t2)
Lgrid = np.asarray(
    jax.vmap(jax.vmap(lambda a, b: dln.loss(jnp.array([a, b]), z)))(T1, T2))
ax.contourf(T1, T2, np.log10(Lgrid + 1e-12), levels=20, cmap="Greys", alpha=0.5)
for c, eta, i in zip(colors, np.asarray(eta_list), range(len(eta_list))):
    ax.plot(runs.theta[i, :, 0], runs.theta[i, :, 1], ".-", color=c, ms=2, lw=0.6,
            label=f"$\\eta$={eta:.4g}")
ax.set(xlabel="$\\theta_1$", ylabel="$\\theta_2$",
       title="trajectories (log-loss contours)")
ax.legend()

ax = axes[2]
window = min(P.steps, 30)
for c, eta, i in zip(colors, np.asarray(eta_list), range(len(eta_list))):
    ax.semilogy(runs.r2[i][: window + 1] / R2_init, ".-", color=c, ms=3,
                label=f"$\\eta$={eta:.4g}")
ax.axhline(1, color="k", lw=0.8)
ax.set(xlabel="step", ylabel="$R_2 / R_2(\\theta_0)$", ylim=(1e-2, 1e4),
       title="orientation of $v_1$ (up: toward $\\theta_1$)")
ax.legend()
fig.tight_layout()
plt.show()

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Sharpness $\\lambda_{\\max}$ of each run against its stability limit $2/\\eta$ (dashed, same colour).", "name": "fig-dln-sharpness"}}
fig, ax = plt.subplots(figsize=(7, 3.4))
for c, eta, i in zip(colors, np.asarray(eta_list), range(len(eta_list))):
    ax.plot(runs.sharpness[i], color=c, label=f"$\\eta$={eta:.4g}")
    if 2 / eta < 3 * np.nanmax(runs.sharpness):
        ax.axhline(2 / eta, color=c, ls="--", lw=1)
ax.set(xlabel="step", ylabel="sharpness $\\lambda_{\\max}$",
       xlim=(0, min(P.steps, 100)))
ax.legend(loc="center right")
plt.show()

# %% [markdown]
# ## Closed forms against the exact Hessian
#
# Along every trajectory: the closed-form Hessian (Eq. 4) against `jax.hessian`; the
# eigenvector angle $\arctan(1/R_2)$ from `eigh` against $R_2(\beta)$ (angles, because `eigh`
# gives eigenvectors to absolute, not relative, accuracy; $R_2$ taken as the sharper over the
# flatter component, which is $|u_{1,1}/u_{1,2}|$ while $\theta_2^2 > \theta_1^2$); and the
# measured $\beta_{t+1}/\beta_t$ against $\gamma_\beta$ — exact for $z = \Theta^2$, an
# approximation for other $z$, where we also count how often $\gamma_\beta$ gets the
# *direction* of the rotation right. These are consistency checks of the closed forms.

# %% tags=["hide-input"]
alive = np.isfinite(runs.theta).all(-1)
thetas = jnp.asarray(runs.theta[alive])
H_exact = jax.vmap(jax.hessian(dln.loss), in_axes=(0, None))(thetas, z)
H_closed = jax.vmap(dln.hessian, in_axes=(0, None))(thetas, z)
hessian_rel_err = float(jnp.max(jnp.linalg.norm(H_exact - H_closed, axis=(1, 2))
                                / jnp.linalg.norm(H_exact, axis=(1, 2))))
betas = runs.beta[alive]
# R2(β) is the sharper over the flatter component (App. B.1): max(|u11/u12|, |u12/u11|), which is the
# paper's |u11/u12| while θ2² > θ1² but not once a trajectory makes θ1 the larger parameter
r2_invariant = np.maximum(runs.r2[alive], 1 / runs.r2[alive])
angle_err = float(np.max(np.abs(np.arctan(1 / r2_invariant)
                                - np.arctan(1 / dln.r2_from_beta(betas)))))

ratio_meas, ratio_pred = [], []
for i, eta in enumerate(np.asarray(eta_list)):
    b = runs.beta[i]
    ok = np.isfinite(b[:-1]) & np.isfinite(b[1:]) & (b[:-1] > 0)
    ratio_meas.append((b[1:] / b[:-1])[ok])
    ratio_pred.append(np.asarray(jax.vmap(lambda t: dln.gamma_beta(t, eta, z))(
        jnp.asarray(runs.theta[i][:-1][ok]))))
ratio_meas, ratio_pred = np.concatenate(ratio_meas), np.concatenate(ratio_pred)
gamma_rel_err = float(np.max(np.abs(ratio_pred - ratio_meas) / ratio_meas))
gamma_direction_agreement = float(np.mean(np.sign(np.log(ratio_pred))
                                          == np.sign(np.log(ratio_meas))))
print(f"Hessian closed form vs jax.hessian: max relative error {hessian_rel_err:.2e}")
print(f"eigenvector angle, eigh vs R2(β):   max abs error {angle_err:.2e} rad")
print(f"γ_β vs measured β ratio:           max relative error {gamma_rel_err:.2e}; "
      f"direction agrees on {100 * gamma_direction_agreement:.1f}% of "
      f"{ratio_meas.size} steps")

# %% tags=["hide-input"]
# Checks that hold for every valid parameter choice (mathematical identities, not the paper's claims).
spacing = float(eta_grid[1] - eta_grid[0])
crossing_err_spacings = abs(eta_boundary_measured - eta_boundary) / spacing  # NaN: no crossing
assert hessian_rel_err < 1e-10, f"closed-form Hessian off by {hessian_rel_err:.2e}"
assert angle_err < 1e-8, f"R2(β) disagrees with eigh by {angle_err:.2e} rad"
if quadratic_z:  # γ_β is exact for z = Θ²: the sweep must find the closed-form boundary
    assert gamma_rel_err < 1e-8, f"γ_β off by {gamma_rel_err:.2e} for z = Θ²"
    assert crossing_err_spacings <= 2, (eta_boundary_measured, eta_boundary)
assert all(s["diverged_at"] >= 0 or np.isfinite(s["final_sharpness"]) for s in summary)

# %% [markdown]
# ## Paper vs ours
#
# Every row is graded by the rule declared above, from the numbers measured here.

# %% tags=["hide-input"]
stable = [s for s in summary if s["regime"] == "stable" and s["diverged_at"] < 0]
unstable = [s for s in summary if s["regime"] == "unstable" and s["diverged_at"] < 0]
unstable_away = [s for s in unstable if s["direction"] < 0]
diverged = [s for s in summary if s["diverged_at"] >= 0]
WORDS = {1: "toward", -1: "away", 0: "no rotation"}


def fraction(runs_of_regime, test):
    """The fraction of runs passing ``test``; NaN (not measured) for no runs."""
    if not runs_of_regime:
        return float("nan")
    return float(np.mean([bool(test(s)) for s in runs_of_regime]))


def directions(runs_of_regime):
    return ", ".join(f"η={s['eta']:.4g} {WORDS[s['direction']]}"
                     for s in runs_of_regime) or "no run"


def turns_at_resolution(s):
    """An unstable run that turned v1 away: R2 falls until the instability resolves (its lowest
    step within one step of the last step with sharpness ≥ 2/η), the run ends below 2/η, and R2
    rises at every step after its turn."""
    return (s["resolved"] and abs(s["monotone_steps"] - s["last_unstable_step"]) <= 1
            and s["toward_after_turn"])


def rotation_text(s):
    """One unstable run's rotation in words: its direction with its length, then what followed."""
    if s["direction"] >= 0:
        return f"η={s['eta']:.4g} turns {WORDS[s['direction']]} at once"
    after = "then toward θ1 to the end" if s["toward_after_turn"] else "then not monotone"
    return (f"η={s['eta']:.4g} away for {s['monotone_steps']} step{'s' if s['monotone_steps'] != 1 else ''}, last step ≥ 2/η at "
            f"{s['last_unstable_step']}, {after}")


XI_MAX = REGIME.rules[0].good  # the claims' reading of "ξ ≈ 0"
FIG1 = {"theta0": [-0.1, 10.0], "z_coeffs": [0.0, 0.0, 1.0], "etas": [0.001, 0.0095, 0.011, 0.013]}
fig1_etas = (len(eta_values) == len(FIG1["etas"])
             and np.allclose(eta_values, FIG1["etas"], rtol=1e-12, atol=0))
if list(P.theta0) == FIG1["theta0"] and list(P.z_coeffs) == FIG1["z_coeffs"] and fig1_etas:
    regime_text = f"θ0, z and η as in Fig. 1 (ξ = {xi:.1e}, z = Θ²: the paper's regime)"
else:
    outside = ([f"ξ = {xi:.2g} is not ≈ 0 (read as ξ ≤ {XI_MAX:g})"] if xi > XI_MAX else []) + (
        [] if quadratic_z else [f"z = {z_plain} is not quadratic (footnote 1)"])
    regime_text = (
        f"this rerun's θ0 = ({P.theta0[0]:g}, {P.theta0[1]:g}), z = {z_plain} and η = "
        f"{', '.join(f'{e:.4g}' for e in eta_values)} (Fig. 1: (−0.1, 10), Θ², 0.001–0.013): "
        + ("; ".join(outside) + ", outside the paper's regime, where it does not equate the "
           "regime boundary with the edge" if outside else
           f"inside the paper's regime (ξ = {xi:.1e}, z quadratic)"))

metrics = {
    # the three step sizes the chapter names, at θ0
    "eta_2_over_lambda_max": eta_edge,
    "eta_eos_paper": eta_eos_paper,  # the paper's η_eos = 2θ1/(θ2 z')
    "eta_2_over_H11": eta_2_over_H11,  # = eta_eos_paper only for quadratic z
    "eta_2_over_trH": eta_trace,
    "R2_init": R2_init,
    "beta_init": beta_init,
    "xi": xi,
    "eta_boundary_closed_form": eta_boundary,
    "eta_boundary_measured": eta_boundary_measured,
    "boundary_gap_2_over_lambda_max": boundary_gap,
    "boundary_gap_eta_eos_paper": abs(eta_boundary_measured / eta_eos_paper - 1),
    "boundary_gap_2_over_trH": abs(eta_boundary_measured / eta_trace - 1),
    # the regimes the step sizes entered
    "n_stable": len(stable),
    "n_unstable": len(unstable),
    "n_unstable_away": len(unstable_away),
    "n_diverged": len(diverged),
    "eta_divergence_onset": eta_divergence_onset,  # NaN: none up to 4/λmax
    "gd_steps": P.steps,  # steps per run (the paper does not state Fig. 1's)
    "stable_toward_fraction": fraction(stable, lambda s: s["direction"] > 0),
    "unstable_away_fraction": fraction(unstable, lambda s: s["direction"] < 0),
    "stable_monotone_fraction": fraction(
        stable, lambda s: s["monotone_steps"] == s["finite_steps"]),
    "unstable_turn_at_resolution_fraction": fraction(unstable_away, turns_at_resolution),
    "unstable_restabilised_fraction": fraction(unstable, lambda s: s["resolved"]),
    # the closed forms (consistency)
    "quadratic_z": float(bool(quadratic_z)),
    "hessian_max_rel_err": hessian_rel_err,
    "eigenvector_angle_max_err": angle_err,
    "gamma_beta_max_rel_err": gamma_rel_err,
    "gamma_beta_direction_agreement": gamma_direction_agreement,
    "boundary_crossing_err_spacings": crossing_err_spacings,
    # per step size, in the order of the step sizes run
    "etas_run": [float(e) for e in eta_values],
    "rotation_direction": [s["direction"] for s in summary],
    "monotone_steps": [s["monotone_steps"] for s in summary],
    "last_unstable_step": [s["last_unstable_step"] for s in summary],
    "final_sharpness": [s["final_sharpness"] for s in summary],
    "diverged_at": [s["diverged_at"] for s in summary],
}
# words for the "ours" column and the departures (the record's metrics are numbers only)
texts = {
    "stable_directions": directions(stable),
    "unstable_directions": directions(unstable),
    "diverged_etas": ", ".join(f"{s['eta']:.4g}" for s in diverged) or "none",
    "unstable_rotation_text": "; ".join(rotation_text(s) for s in unstable) or "no run",
    "restabilised_text": (f"{sum(s['resolved'] for s in unstable)} of {len(unstable)} end "
                          "below 2/η" if unstable else "none to return below 2/η"),
    "divergence_onset_text": (f"from θ0, GD diverges within {P.steps} steps for η ≥ "
                              f"{eta_divergence_onset:.3g}" if diverges.any() else
                              f"no η up to 4/λmax diverges within {P.steps} steps"),
    "regime_text": regime_text,
}

# %%
claims = grade_all(CLAIMS, {**metrics, **texts}, scale=scale)
display(claims_table(claims))

# %% [markdown]
# ### At paper scale
#
# The same claims in the stored `paper`-scale run of this chapter ({mod}`eoslib.book.store`), when
# the store holds one at the chapter's paper-scale settings; without one each claim is `not tested`
# at paper scale. {doc}`../book/rerun` says how such a run is made on a GPU and stored. A claim
# whose id the stored run's record lacks (declared, or its rule changed, after that run was made)
# is `not tested` there until the chapter is stored again.

# %% tags=["hide-input"]
from eoslib.book import store
from eoslib.book.display import verdicts_by_scale

# the stored run must have the paper-scale settings; eta_fractions is left out of the match (it
# is empty there, and runs stored before it existed have no such parameter)
paper = store.paper_evidence("dln-rpe", scale, {k: v for k, v in SCALES["paper"].items()
                                                if k != "eta_fractions"})
print(paper.line)
display(verdicts_by_scale(claims, paper))

# %% [markdown]
# ## Verdict
#
# Generated from the graded claims above (a rerun with other parameters rewrites it). Nothing in
# this model is scaled down: the scales differ only in the number of steps and the resolution of
# the boundary sweep. The claims hold the paper to its own regime, $\xi \approx 0$ and quadratic
# $z$. To test them at another initialisation inside it, give the step sizes as fractions of the
# paper's $\eta_{\rm eos}$ there, e.g.
# `python -m eoslib run dln-rpe -p theta0 "[-0.2, 5.0]" -p eta_fractions "[0.1, 0.95, 1.1, 1.3]"`
# (Fig. 1's step sizes as fractions of its $\eta_{\rm eos}$; the default `etas` are Fig. 1's
# absolute values, which may all be stable at another $\theta_0$, leaving the unstable halves
# nothing to read). Reruns outside the regime, such as `-p theta0 "[-1.0, 2.0]"` ($\theta_1^2$ and
# $\theta_2^2$ comparable, so $\xi$ is not small) or `-p z_coeffs "[0, 0, 1, 0, 0.5]"`
# ($z = \Theta^2 + \tfrac12\Theta^4$), do not grade the claims; their consistency checks and the
# printed step sizes show how far the boundary then sits from the edge.

# %% tags=["remove-input"]
display(verdict_section(claims, scale=scale))

# %% tags=["hide-input"]
record = make_record("dln-rpe", scale, P.as_dict(), claims, metrics,
                     provenance(start_time))
print("record written to", write_record(record, results_dir))
