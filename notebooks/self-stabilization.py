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
# # Self-stabilization: GD at the edge follows projected GD
#
# **Claim** ({cite:t}`damian2023selfstabilization`). At the edge of stability, full-batch GD
# on a network follows the *constrained trajectory* $\theta^\dagger$: projected GD onto the
# stable set
# $\mathcal M = \{\theta : S(\theta) \le 2/\eta,\ \nabla L(\theta)\cdot u(\theta) = 0\}$.
# GD oscillates along the top eigenvector $u$; the third-order term of the loss turns that
# oscillation into a pull down the gradient of the sharpness, which restores stability. The
# paper's abstract promises "precise predictions for the loss, sharpness, and deviation from
# the PGD trajectory"; this chapter tests those three predictions against null predictors
# that know nothing of the mechanism.
#
# ## Setup
#
# | | paper | this chapter (parameters) |
# |---|---|---|
# | data | CIFAR-10, 5,000 images (as in Cohen et al. 2021) | the first `n_train` CIFAR-10 images |
# | network | fc-tanh / ELU MLPs, small CNNs | `arch` (an MLP 3072-`width`-`width`-10 by default) |
# | loss, optimizer | ½MSE, full-batch GD | same |
# | coupled run | from where GD's sharpness reaches $2/\eta$ | from where $S$ first reaches `start_fraction`$\cdot 2/\eta$ |
# | prediction | parameter-space dynamics of $v = \theta - \theta^\dagger$ from the edge, float64, until $\lambda_2(\theta^\dagger) > 1.9/\eta$ | the same update, float32, compared until $\lambda_2(\theta^\dagger) > 0.95\cdot 2/\eta$ (checked every 10 steps) |
# | step sizes | several | `eta` for the main run; the sweep `etas`; each must sharpen progressively into its edge (the regime rule below) |
#
# The `book` scale fits a 2-core CPU; the `paper` scale (wider network, all 5,000 images) is
# meant for a GPU. The values this run used are printed below its parameters.
#
# The coupled run (GD beside the constrained trajectory and the paper's predicted dynamics) costs
# one projection, three eigensolves and one Hessian-vector product per step (and a top-2
# eigensolve every 10 steps), so it starts just before the edge, where GD is still stable and
# $\theta^\dagger \approx \theta$ ({func}`eoslib.mechanisms.selfstab.gd_to_edge`). No scale
# runs the paper's CNNs by default: every scale runs an MLP, and `-p arch cnn-tanh` runs a
# CNN (meant for a GPU). Our copy of the paper is only its abstract; the definitions and the
# derivation below follow the project's notes (`shared/papers/self-stabilization_notes.md`),
# checked against the authors' public code (Damian et al.'s `taylor.py`: its predicted step, its
# λ₂ stop and what it compares), which we read but do not use.

# %% tags=["hide-input"]
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from jax.flatten_util import ravel_pytree

from eoslib.engine import data, hessian, losses, models
from eoslib.mechanisms import selfstab
from eoslib.book.display import claims_table, use_book_style, verdict_section
from eoslib.book.scales import settings
from eoslib.book.results import make_record, provenance, write_record
from eoslib.book.verdicts import grade_all

use_book_style()
start_time = time.time()

# %% tags=["parameters"]
scale = os.environ.get("EOSLIB_SCALE", "book")  # smoke | book | paper
arch = None  # a CIFAR-10 model of eoslib.engine.models.NAMES: fc-tanh, cnn-tanh, ...
width = None  # hidden width of the fc-* MLPs (3072-width-width-10)
n_train = None  # CIFAR-10 training images (the first n, all 10 classes)
eta = None  # step size of the main run (always a member of the sweep)
etas = None  # step sizes of the sweep; unset: the scale's, scaled by eta / its eta
start_fraction = None  # the coupled run starts where S first reaches this · 2/η
max_warmup = None  # most GD steps spent getting there
steps = None  # steps of the coupled run and of the central flow
proj_tol = None  # relative tolerance of the projection onto M
eig_tol = None  # relative residual tolerance of the eigensolves
flow_substeps = None  # Heun steps per unit of time (one GD step) of the central flow
average_window = None  # steps in GD's moving average compared with the flow
seed = None  # PRNG seed of the initialisation
results_dir = None  # where the results record goes (default: _build/records)

# %% tags=["hide-input"]
RANGES = {"arch": "cifar10-model", "width": "int >= 1", "n_train": "int in [1, 50000]",
          "eta": "float > 0", "etas": "list[float > 0], non-empty",
          "start_fraction": "float in (0, 1]", "max_warmup": "int >= 1",
          "steps": "int >= 2",
          "proj_tol": "float in (0, 1)", "eig_tol": "float in (0, 1)",
          "flow_substeps": "int >= 2", "average_window": "int >= 1, < steps",
          "seed": "int >= 0"}
SCALES = {
    "smoke": {"arch": "fc-tanh", "width": 32, "n_train": 250, "eta": 0.012,
              "etas": [0.01, 0.012], "start_fraction": 0.97, "max_warmup": 2000,
              "steps": 60, "proj_tol": 1e-3, "eig_tol": 1e-4, "flow_substeps": 2,
              "average_window": 10, "seed": 0},
    "book": {"arch": "fc-tanh", "width": 32, "n_train": 250, "eta": 0.012,
             "etas": [0.01, 0.012, 0.014], "start_fraction": 0.97, "max_warmup": 5000,
             "steps": 600, "proj_tol": 1e-3, "eig_tol": 1e-4, "flow_substeps": 2,
             "average_window": 20, "seed": 0},
    "paper": {"arch": "fc-tanh", "width": 200, "n_train": 5000, "eta": 0.02,
              "etas": [0.01, 0.02, 0.04], "start_fraction": 0.97, "max_warmup": 20000,
              "steps": 2000, "proj_tol": 1e-3, "eig_tol": 1e-5, "flow_substeps": 2,
              "average_window": 50, "seed": 0},
}
P = settings(SCALES, scale, RANGES, arch=arch, width=width, n_train=n_train, eta=eta,
             etas=etas, start_fraction=start_fraction, max_warmup=max_warmup,
             steps=steps, proj_tol=proj_tol, eig_tol=eig_tol,
             flow_substeps=flow_substeps, average_window=average_window, seed=seed)
# Unless etas is given, a new eta scales the scale's sweep by eta / its eta; the main run is
# always a member of the sweep.
default = SCALES[scale]
follow = etas is None and P.eta != default["eta"]
sweep_etas = [e / default["eta"] * P.eta for e in default["etas"]] if follow else P.etas
P.etas = ETAS = sorted({float(e) for e in sweep_etas} | {float(P.eta)})
EDGE = 2.0 / P.eta
MAIN = ETAS.index(float(P.eta))
# θ† is at the edge once S(θ†) ≥ (1 − EDGE_MARGIN)·2/η (the projection holds it within
# proj_tol of 2/η there)
EDGE_MARGIN = 2 * P.proj_tol
P.as_dict()

# %% tags=["remove-input"]
display(Markdown(
    f"This run ({scale} scale): {P.arch}"
    + (f" of width {P.width}" if "width" in models.options(P.arch) else "")
    + f" on the first {P.n_train:,} CIFAR-10 images; main step size η = {P.eta:g}, "
    f"sweep η ∈ {{{', '.join(f'{e:g}' for e in ETAS)}}}; each coupled run starts where $S$ "
    f"first reaches {100 * P.start_fraction:g}% of $2/\\eta$ and runs {P.steps} steps."))

# %% [markdown]
# ## The local model
#
# Let $v_t = \theta_t - \theta^\dagger_t$ and take $u$, $S$, $\nabla S = \nabla^3 L[u, u]$ at
# $\theta^\dagger_t$. Write $\nabla S_\perp = \nabla S - (\nabla S\cdot u)\,u$ for the part of
# $\nabla S$ orthogonal to $u$, and use the coordinates $x_t = u\cdot v_t$ and
# $y_t = \nabla S_\perp\cdot v_t$. (With the full $\nabla S$, $y$ would carry
# $x_t\,(\nabla S\cdot u)$, which flips sign with $x$ every step.) The rate of progressive
# sharpening is $\alpha_\perp = -\nabla L\cdot\nabla S_\perp$ (the authors' $\alpha$) and
# $\beta = \|\nabla S_\perp\|^2$, both at $\theta^\dagger_t$. The predicted dynamics below use
# $\alpha_\perp$; the scalar model and the fixed point $2\alpha/\beta$ use the full
# $\alpha = -\nabla L\cdot\nabla S$, as recorded (the two differ by
# $(\nabla L\cdot u)(\nabla S\cdot u)$, which the projection keeps near 0 since $\nabla L\cdot u
# \approx 0$ on $\mathcal M$); the tracking window's $\delta = \sqrt{2\alpha_\perp/\beta}$.
#
# **The paper's predicted dynamics** evolve the whole displacement $\hat v_t$ in parameter
# space, one Hessian-vector product per step. GD's step, with $\nabla L$ expanded to second
# order around $\theta^\dagger$ ($\tfrac12\nabla^3L[v, v] \approx \tfrac12 x^2\nabla S_\perp + xy\,u$),
# minus the constrained step and its projection (which removes the sharpening $\eta\alpha$ along
# $\nabla S_\perp$) gives
#
# $$\hat v_{t+1} = \hat v_t - \eta\left[\nabla^2 L(\theta^\dagger_t)\,\hat v_t
#   + \tfrac12\left(\hat x_t^2 - \tfrac{2\alpha_t}{\beta_t}\right)\nabla S_\perp
#   + \hat x_t \hat y_t\, u\right],$$
#
# with $\alpha_t = \alpha_\perp$ and $\beta_t = \|\nabla S_\perp\|^2$ at
# $\theta^\dagger_t$ ({func}`eoslib.mechanisms.selfstab.predicted_step`; the update of the
# authors' `taylor.py`). It starts from GD's own $v$ at the edge step (the first where
# $S(\theta^\dagger)$ reaches $2/\eta$) and then runs open-loop beside GD. What is compared is
# what the paper compares: the exact loss $L(\theta^\dagger + \hat v)$, the exact sharpness
# $S(\theta^\dagger + \hat v)$ (an eigensolve at that point; not an oscillation average) and
# $\|\hat v\|$, against GD's $L(\theta)$, $S(\theta)$ and $\|\theta - \theta^\dagger\|$.
#
# **The simplified scalar model.** Taking $\nabla^2L(\theta^\dagger)\,v \approx S\,x\,u$ (which
# assumes $\nabla^2 L\,\nabla S_\perp \approx 0$) and projecting onto $u$ and $\nabla S_\perp$
# leaves a closed recursion for $(x, y)$:
#
# $$x_{t+1} = -(1 + \eta y_t)\,x_t, \qquad
#   y_{t+1} = y_t + \eta\left(\alpha_t - \tfrac{\beta_t}{2} x_t^2\right).$$
#
# Four stages follow: (1) $y$ grows at $\eta\alpha$ (progressive sharpening); (2) $|x|$ grows
# while $y > 0$ (blow-up); (3) once $x^2 > 2\alpha/\beta$, $y$ falls (self-stabilization);
# (4) $|x|$ shrinks while $y < 0$ (return to stability). The averaged fixed point is
# $x^2 = 2\alpha/\beta$, $y = 0$. We show this model beside the full prediction, with the
# formulas it gives: loss $L(\theta^\dagger) + \tfrac12 S(\theta^\dagger)\,\hat x^2$ (which drops
# the first-order term $\nabla L(\theta^\dagger)\cdot v$), sharpness $S(\theta^\dagger) + \hat y$
# and deviation $\sqrt{\hat x^2 + \hat y^2/\beta}$ (our derivation)
# ({func}`eoslib.mechanisms.selfstab.predict`, which also subtracts the rise of
# $S(\theta^\dagger)$ from $y$, zero once $\theta^\dagger$ sits at the edge).
#
# Our choice: the projection onto $\mathcal M$ alternates Newton corrections along $u$ and
# $\nabla S$ until both constraints hold to `proj_tol`
# ({func}`eoslib.mechanisms.selfstab.project`); the authors make three such rounds per step.
#
# **Beyond the paper: the central flow** ({cite:t}`cohen2024central`). The time-averaged GD
# trajectory follows $\dot\theta = -\eta[\nabla L + \tfrac12\sigma^2\nabla S]$, with
# $\sigma^2 = 2\alpha/\|\nabla S\|^2$ while $S = 2/\eta$ (the value that holds $S$ there) and
# $0$ below. It predicts GD's time-averaged loss, $L + \sigma^2/\eta$, and sharpness, $2/\eta$
# ({func}`eoslib.mechanisms.selfstab.central_flow`).
#
# ## Claims, declared before the run
#
# Each claim is graded after the run by the rule stated with it. The *edge phase* starts at
# the first step where $S(\theta^\dagger)$ reaches $2/\eta$; the paper's analysis applies only
# there, and only in its regime, progressive sharpening into the edge: every edge claim is
# `not tested` when the edge phase is shorter than `MIN_EDGE_STEPS` steps, or when GD's sharpness
# did not rise from its smallest value checked on the way there ($S(\theta_0)$ included) to the
# coupled run's start by at least `SHARPEN_RISE` of $2/\eta$, over at least `SHARPEN_STEPS` steps
# up to the edge step (the constants are in the claims' glossary, the measured rise in the sweep
# table). The predictions are scored in two windows fixed before
# the run: the *tracking* window, from the edge step until GD's $|x|$ first exceeds the paper's
# $\delta = \sqrt{2\alpha/\beta}$ plus 20 steps, pointwise (medians of absolute errors); and the
# *rest*, on 20-step means (a one-step slip of the period-2 oscillation does not change a
# mean). Neither window extends past the first checked step where
# $\lambda_2(\theta^\dagger) > 0.95\cdot 2/\eta$: there a second direction reaches the edge and
# the one-direction analysis no longer applies (the authors stop at $1.9/\eta$); a window cut
# to fewer than 10 steps (2 blocks for the rest) leaves its claim `not tested`. The predictions
# must beat **null predictors** that ignore the mechanism: $\hat L = L(\theta^\dagger)$ for the
# loss, $\hat S = 2/\eta$ for the sharpness, and a deviation that stays at its value at the
# start of the edge phase: in the tracking window, where the paper claims precise predictions,
# by a large factor (error at most `TRACK_SHARE` of the null's); after it by a factor 2. The
# four-stage cycle and the fixed point are read where $|x|$ has left the rounding noise, from
# the first edge step with $|x| >$ `STAGE_ACTIVE`$\cdot\delta$, and also stop at $\lambda_2$'s
# limit. A GD run that diverges fails the claims; a prediction that overflows counts as an
# infinite error.

# %% tags=["claims", "hide-input", "hide-output"]
from IPython.display import display

from eoslib.book.display import declared_claims
from eoslib.book.verdicts import (AllOf, AtLeast, AtMost, BeatsNull, ClaimSpec, Departure,
                                  Factor, Given)

# Declared before the run (issue 28): the tracking window runs from the edge step until GD's
# |x| first exceeds the paper's δ = √(2α/β), plus TRACK_EXTRA steps, scored pointwise; the rest
# is scored on BLOCK-step means. Nothing is compared past the first checked step (every
# SECOND_EVERY) where λ₂(θ†) > SECOND_LIMIT·2/η. The edge claims need the paper's regime,
# progressive sharpening into the edge: GD's S rose from its smallest checked value on the way
# (S(θ₀) included) to the coupled run's start by ≥ SHARPEN_RISE·2/η, over ≥ SHARPEN_STEPS steps
# to the edge step. (This replaces S(θ₀) ≤ 0.8·2/η, a proxy that failed on the book's own
# problem, S(θ₀) = 0.85·2/η, although there S falls to 0.79·2/η and sharpens for ~400 steps
# into 2/η, as the review's run showed.)
TRACK_EXTRA, BLOCK, SECOND_EVERY, SECOND_LIMIT = 20, 20, 10, 0.95
SHARPEN_RISE, SHARPEN_STEPS = 0.10, 50
# The stages and ⟨x²⟩ are read from the first edge step where GD's |x| > STAGE_ACTIVE·δ (before
# it x is float32 rounding noise, 1e-9 to 1e-7), to λ₂'s limit like the predictions.
STAGE_ACTIVE = 0.01
# In the tracking window a prediction must reach ≤ TRACK_SHARE of its null's error (issue 28's
# target; the paper claims precise predictions there); elsewhere half of it.
TRACK_SHARE = 0.15
MIN_EDGE_STEPS = 10
MIN_REST_BLOCKS = 2
WINDOWS = {"tracking": "in the tracking window", "rest": f"after it, on {BLOCK}-step means"}
QUANTITY = {"loss": "the loss", "sharpness": "the sharpness", "deviation": "‖θ − θ†‖"}
NAMES = {
    "edge_steps": f"the steps after S(θ†) first reaches 2/η (before λ₂(θ†) > {SECOND_LIMIT:g}·2/η)",
    "stage_steps": f"the edge steps from the first where |x| > {STAGE_ACTIVE:g}·δ, where the stages "
                   f"and ⟨x²⟩ are read",
    "init_sharpness_frac": "S(θ₀)/(2/η) at initialisation",
    "sharpening_rise": f"the rise of GD's S from its pre-edge minimum to the start, over 2/η "
                       f"(≥ {SHARPEN_RISE:g} needed)",
    "sharpening_steps": f"the steps from that minimum to the edge step (≥ {SHARPEN_STEPS} needed)",
    "tracking_steps": f"the steps of the tracking window (before λ₂(θ†) > {SECOND_LIMIT:g}·2/η)",
    "rest_blocks": f"the {BLOCK}-step blocks after it (before λ₂(θ†) > {SECOND_LIMIT:g}·2/η)",
    "gd_diverged": "GD diverged (1: yes)",
    "cycles": "downward crossings of y = 0",
    "stage_x": "the fraction of steps where |x| grows exactly when y > 0",
    "stage_y": "the fraction where y rises exactly when x² < 2α/β",
    "stage_x_miss": "the miss rate of 'y > 0 ⇔ |x| grows'",
    "stage_x_null_miss": "that of always guessing the more frequent |x| outcome",
    "stage_y_miss": "the miss rate of 'x² < 2α/β ⇔ y rises'",
    "stage_y_null_miss": "that of always guessing the more frequent y outcome",
    "sharpness_coordinate_err": "median |S(θ†) + y − S| (GD's measured y)",
    "sharpness_null_err": "median |2/η − S| (null Ŝ = 2/η)",
    "dev_over_travel": "max ‖θ − θ†‖ / the distance θ† travels",
    "x2_ratio": "⟨x²⟩/⟨2α/β⟩",
    "flow_compared_steps": "steps where GD's moving average is compared with the flow",
    "flow_loss_err": "the median relative error of the flow's L + σ²/η",
    "flow_plain_err": "that of the flow's own L (no σ² term)",
    "flow_sharp_err": "the median sharpness error over 2/η",
    "sweep_n_at_edge": f"step sizes whose tracking window has ≥ {MIN_EDGE_STEPS} steps",
    "sweep_sharpening_rise": "the smallest sharpening rise of the sweep, over 2/η",
    "sweep_sharpening_steps": "the fewest sharpening steps of the sweep",
    "sweep_n_diverged": "step sizes whose GD diverged",
    "sweep_loss_err_worst": "the tracking-window loss error of the worst η",
    "sweep_loss_null_worst": "its null's",
    "sweep_sharp_err_worst": "the tracking-window sharpness error of the worst η",
    "sweep_sharp_null_worst": "its null's",
    "pgd_edge_excess_in_tol": "max (S(θ†)·η/2 − 1)/proj_tol on converged steps",
    "projection_converged_fraction": "the fraction of steps whose projection converged",
}
for _win, _where in WINDOWS.items():
    for _q, _what in QUANTITY.items():
        NAMES[f"pred_{_q}_err_{_win}"] = f"the prediction's median error on {_what} {_where}"
        NAMES[f"scalar_{_q}_err_{_win}"] = f"the scalar model's median error on {_what} {_where}"
        NAMES[f"null_{_q}_err_{_win}"] = f"the null's {_where}"


IN_REGIME = AllOf((AtLeast("sharpening_rise", SHARPEN_RISE, fmt=".3f"),
                   AtLeast("sharpening_steps", SHARPEN_STEPS)))
AT_EDGE = AllOf((AtLeast("edge_steps", MIN_EDGE_STEPS), IN_REGIME))
STAGED = AllOf((AT_EDGE, AtLeast("stage_steps", MIN_EDGE_STEPS)))
TRACKED = AllOf((AT_EDGE, AtLeast("tracking_steps", MIN_EDGE_STEPS)))
REST = AllOf((AT_EDGE, AtLeast("rest_blocks", MIN_REST_BLOCKS)))
ALIVE = AtMost("gd_diverged", 0)


def beats(error, null):
    """The error must be half the null's (partly: 1/1.25 of it)."""
    return BeatsNull(error, null, 2, fair=1.25, fmt=".3g")


def tracks(error, null):
    """In the tracking window the paper claims precise predictions: the error must be at most
    TRACK_SHARE of the null's (partly: half of it)."""
    return BeatsNull(error, null, 1 / TRACK_SHARE, fair=2, fmt=".3g")


def window(who, win, quantities):
    rule = tracks if win == "tracking" else beats
    return tuple(rule(f"{who}_{q}_err_{win}", f"null_{q}_err_{win}") for q in quantities)


# How each experiment differs from the paper's (and from the authors' code, taylor.py)
SMALL = Departure("{n_train} CIFAR-10 images and {arch} of width {width} instead of 5,000 images "
                  "and the paper's networks (fc-tanh/ELU of width 200, CNNs)", "CPU",
                  scales=("smoke", "book"))
HORIZON = Departure("{steps} coupled steps from where S first reaches {start_fraction}·2/η "
                    "(the authors track 2,000 steps from where GD's sharpness reaches 2/η)",
                    "CPU", scales=("smoke", "book"))
FLOAT32 = Departure("float32 throughout (the authors switch to float64 at the instability)",
                    "CPU")
PROJECTION = Departure("the projection onto M iterated to proj_tol = {proj_tol} (the authors "
                       "make three linearised rounds per step)", "design choice")
WINDOWED = Departure("scored against null predictors in windows declared before the run "
                     f"(tracking: pointwise; rest: {BLOCK}-step means); the paper shows curves",
                     "not stated in the paper")
GUARD = Departure(f"compared only while λ₂(θ†) ≤ {SECOND_LIMIT:g}·2/η, checked every {SECOND_EVERY} "
                  "steps (the authors "
                  "stop at λ₂ > 1.9/η, checked every 50)", "design choice")
NOTES = Departure("the stage rules, y = ∇S⊥·v and the cycle count are ours (our copy of the paper "
                  "is its abstract; definitions from the project's notes)",
                  "not stated in the paper")
PREDICTION_NULLS = ("L̂ = L(θ†) for the loss; Ŝ = 2/η for the sharpness; ‖θ − θ†‖ frozen at "
                    "its value where the edge phase starts")
CLAIMS = [
    ClaimSpec(
        "four-stage-cycle",
        "at the edge, GD cycles through sharpening, blow-up along u, "
        "self-stabilization and return to stability",
        "shown on MLPs and CNNs (figures)",
        rule=Given(STAGED, AllOf((
            ALIVE, AtLeast("cycles", 2),
            AtLeast("stage_x", 0.8, fair=0.6, fmt=".0%"),
            AtLeast("stage_y", 0.8, fair=0.6, fmt=".0%"),
            beats("stage_x_miss", "stage_x_null_miss"),
            beats("stage_y_miss", "stage_y_null_miss")))),
        ours="{arch}: y falls through 0 {cycles} times in {edge_steps} edge steps; |x| grows "
             "iff y > 0 on {stage_x:.0%} of steps, y rises iff x² < 2α/β on {stage_y:.0%}",
        glossary=NAMES,
        control="the base rate: always guessing the more frequent outcome",
        departures=(SMALL, HORIZON, FLOAT32, NOTES)),
    ClaimSpec(
        "constrained-trajectory",
        "GD stays close to projected GD θ†, and S(θ) ≈ S(θ†) + y",
        "shown (figures)",
        rule=Given(AT_EDGE, AllOf((
            ALIVE, beats("sharpness_coordinate_err", "sharpness_null_err"),
            AtMost("dev_over_travel", 0.5, fair=1.0, fmt=".2f")))),
        ours="|S − S(θ†) − y| = {sharpness_coordinate_err:.3g} vs |S − 2/η| = "
             "{sharpness_null_err:.3g}; max ‖θ−θ†‖ = {deviation_max:.3g} "
             "({dev_over_travel:.2f} of the distance θ† travels)",
        glossary=NAMES,
        control="Ŝ = 2/η",
        departures=(SMALL, HORIZON, FLOAT32, PROJECTION, WINDOWED)),
    ClaimSpec(
        "predicted-dynamics",
        "the predicted dynamics of v = θ − θ† (parameter space, driven by θ†) predict GD's loss "
        "and sharpness while they track it",
        "curves overlap (figures)",
        rule=Given(TRACKED, AllOf((ALIVE,) + window("pred", "tracking", ("loss", "sharpness")))),
        ours="{tracking_steps} steps from the edge step {edge_step}: median error of L(θ†+v̂) "
             "{pred_loss_err_tracking:.3g} (null {null_loss_err_tracking:.3g}), of S(θ†+v̂) "
             "{pred_sharpness_err_tracking:.3g} (null {null_sharpness_err_tracking:.3g})",
        glossary=NAMES,
        control=PREDICTION_NULLS,
        departures=(SMALL, FLOAT32, PROJECTION, WINDOWED, GUARD)),
    ClaimSpec(
        "deviation",
        "the predicted dynamics predict the deviation ‖θ − θ†‖ from the constrained trajectory",
        "predicted and verified (abstract)",
        rule=Given(TRACKED, AllOf((ALIVE,) + window("pred", "tracking", ("deviation",)))),
        ours="tracking window: median error of ‖v̂‖ {pred_deviation_err_tracking:.3g} (null "
             "{null_deviation_err_tracking:.3g}); max ‖θ−θ†‖ = {deviation_max:.3g}",
        glossary=NAMES,
        control="‖θ − θ†‖ frozen at its value where the edge phase starts",
        departures=(SMALL, FLOAT32, PROJECTION, WINDOWED, GUARD)),
    ClaimSpec(
        "predicted-dynamics-rest",
        "after the tracking window, the predicted dynamics still predict GD's loss, sharpness "
        "and deviation on average over the oscillation",
        "curves overlap over the whole run (figures)",
        rule=Given(REST, AllOf((ALIVE,) + window("pred", "rest", QUANTITY))),
        ours="{rest_blocks} blocks of " + f"{BLOCK}" + " steps: loss {pred_loss_err_rest:.3g} (null "
             "{null_loss_err_rest:.3g}), sharpness {pred_sharpness_err_rest:.3g} (null "
             "{null_sharpness_err_rest:.3g}), ‖θ−θ†‖ {pred_deviation_err_rest:.3g} (null "
             "{null_deviation_err_rest:.3g})",
        glossary=NAMES,
        control=PREDICTION_NULLS,
        departures=(SMALL, FLOAT32, PROJECTION, WINDOWED, GUARD)),
    ClaimSpec(
        "scalar-model",
        "the paper's simplified scalar (x, y) model predicts GD's loss, sharpness and deviation "
        "while the prediction tracks GD",
        "the reduced model of the analysis (text)",
        rule=Given(TRACKED, AllOf((ALIVE,) + window("scalar", "tracking", QUANTITY))),
        ours="tracking window: loss L(θ†) + ½S x̂² {scalar_loss_err_tracking:.3g}, sharpness "
             "S(θ†) + ŷ {scalar_sharpness_err_tracking:.3g}, deviation √(x̂² + ŷ²/β) "
             "{scalar_deviation_err_tracking:.3g} (nulls as above); after it on " + f"{BLOCK}" + "-step means: "
             "{scalar_loss_err_rest:.3g}, {scalar_sharpness_err_rest:.3g}, "
             "{scalar_deviation_err_rest:.3g}",
        glossary=NAMES,
        control=PREDICTION_NULLS,
        departures=(SMALL, FLOAT32, PROJECTION, WINDOWED, GUARD,
                    Departure("the reduced model's formulas L(θ†) + ½S x̂², S(θ†) + ŷ and "
                              "√(x̂² + ŷ²/β) (the last our derivation) in place of exact values",
                              "reconstructed formula"))),
    ClaimSpec(
        "fixed-point",
        "GD oscillates around x² = 2α/β",
        "x² ≈ 2α/β",
        rule=Given(STAGED, Factor("x2_ratio", 1.0, 1.5, fair=3.0)),
        ours="⟨x²⟩/⟨2α/β⟩ = {x2_ratio:.2f}",
        glossary=NAMES,
        departures=(SMALL, HORIZON, FLOAT32, NOTES)),
    ClaimSpec(
        "central-flow",
        "the central flow predicts GD's time-averaged loss and sharpness (beyond the "
        "paper: Cohen et al. 2024)",
        "accurate on their networks (figures)",
        rule=Given(AtLeast("flow_compared_steps", 1), AllOf((
            AtMost("flow_loss_err", 0.05, fair=0.2, fmt=".1%"),
            AtMost("flow_sharp_err", 0.05, fair=0.2, fmt=".1%"),
            beats("flow_loss_err", "flow_plain_err")))),
        ours="loss {flow_loss_err:.2%} (without σ²: {flow_plain_err:.2%}), sharpness "
             "{flow_sharp_err:.2%} of 2/η; max λ₂ = {flow_second_frac:.2f}·2/η",
        glossary=NAMES,
        control="the flow's own loss L, without the σ²/η term",
        departures=(SMALL, HORIZON, FLOAT32,
                    Departure("one eigenvalue at the edge, σ² with a restoring term (r = 0.1) "
                              "and Heun steps of 1/{flow_substeps} (Cohen et al. solve the "
                              "flow with several eigenvalues)", "design choice"))),
    ClaimSpec(
        "eta-sweep",
        "the loss and sharpness predictions hold at every step size (tracking window)",
        "several η (figures)",
        rule=Given(AllOf((AtLeast("sweep_n_at_edge", 2),
                          AtLeast("sweep_sharpening_rise", SHARPEN_RISE, fmt=".3f"),
                          AtLeast("sweep_sharpening_steps", SHARPEN_STEPS))), AllOf((
            AtMost("sweep_n_diverged", 0),
            tracks("sweep_loss_err_worst", "sweep_loss_null_worst"),
            tracks("sweep_sharp_err_worst", "sweep_sharp_null_worst")))),
        ours="{sweep_summary}",
        glossary=NAMES,
        control=PREDICTION_NULLS + ", per step size",
        departures=(SMALL, FLOAT32, PROJECTION, WINDOWED, GUARD,
                    Departure("step sizes {sweep_etas}", "CPU", scales=("smoke", "book")))),
    ClaimSpec(
        "projection-on-M",
        "the projection converges and keeps S(θ†) ≤ (1 + proj_tol)·2/η",
        "M's definition",
        rule=AllOf((AtMost("pgd_edge_excess_in_tol", 1.01, fmt=".2f"),
                    AtLeast("projection_converged_fraction", 0.99, fmt=".0%"))),
        ours="max S(θ†) = {pgd_sharpness_ratio:.4f}·2/η; converged on "
             "{projection_converged_fraction:.0%} of steps",
        glossary=NAMES,
        kind="consistency"),
]
display(declared_claims(CLAIMS))

# %% [markdown]
# ## Run
#
# All step sizes run in one `vmap`: each runs GD from the same initialisation until its
# sharpness reaches `start_fraction` of its own edge $2/\eta$, then GD and the constrained trajectory side by side
# ({func}`eoslib.mechanisms.selfstab.edge_sweep`). The central flow starts from the main
# run's start point.

# %%
ds = data.load_cifar10(n=P.n_train)
loss_fn = losses.of_model("half_mse")(jnp.asarray(ds.x), jnp.asarray(ds.onehot))
options = {"width": P.width} if "width" in models.options(P.arch) else {}
params0 = models.by_name(P.arch, key=jax.random.key(P.seed), **options)
sweep = selfstab.edge_sweep(
    loss_fn, params0, jnp.asarray(ETAS, dtype=jnp.float32), P.steps,
    start_fraction=P.start_fraction, max_warmup=P.max_warmup,
    key=jax.random.key(P.seed + 1), proj_tol=P.proj_tol, eig_tol=P.eig_tol,
    pred_margin=EDGE_MARGIN, second_every=SECOND_EVERY)
# S(θ₀) at initialisation (shown; the regime is read from the warm-up's minimum)
init_sharpness = float(hessian.sharpness(loss_fn, params0, key=jax.random.key(P.seed + 2),
                                         tol=P.eig_tol))
start_main = jax.tree.map(lambda a: a[MAIN], sweep.starts)
flow, _ = jax.jit(lambda p, v: selfstab.central_flow(
    loss_fn, p, P.eta, P.steps, v0=v, substeps=P.flow_substeps, eig_tol=P.eig_tol,
))(start_main, sweep.start_vectors[MAIN])

# %% tags=["hide-input"]
run_time = time.time() - start_time
pair = jax.tree.map(np.asarray, sweep.record)
flow = jax.tree.map(np.asarray, flow)
warmup_steps = np.asarray(sweep.warmup_steps)
warmup_min = np.asarray(sweep.warmup_min_sharpness, np.float64)
warmup_min_step = np.asarray(sweep.warmup_min_step)
start_sharpness = np.asarray(sweep.start_sharpness)
n_params = ravel_pytree(params0)[0].size
runs = [selfstab.analyse_edge(jax.tree.map(lambda a: a[i], pair), e, margin=EDGE_MARGIN,
                              second_limit=SECOND_LIMIT, active=STAGE_ACTIVE)
        for i, e in enumerate(ETAS)]
preds = [selfstab.analyse_prediction(jax.tree.map(lambda a: a[i], pair), e, margin=EDGE_MARGIN,
                                     scalar=runs[i], extra=TRACK_EXTRA, block=BLOCK,
                                     second_limit=SECOND_LIMIT)
         for i, e in enumerate(ETAS)]
main, pm = runs[MAIN], preds[MAIN]
# progressive sharpening into the edge, per step size: the rise of S from the warm-up's minimum
# to the coupled run's start (over 2/η) and the steps from that minimum to the edge step
rises = [float((s_ - lo) * e / 2) for s_, lo, e in zip(start_sharpness, warmup_min, ETAS)]
sharpening = [int(w_ - tm) + (ru.start if ru.start is not None else 0)
              for w_, tm, ru in zip(warmup_steps, warmup_min_step, runs)]
r = jax.tree.map(lambda a: a[MAIN], pair)
te = main.start
w = P.average_window
flow_m = selfstab.flow_errors(r.loss, r.sharpness, flow, P.eta, start=te, window=w)
print(f"{P.arch}, {n_params:,} parameters, {len(ds)} images; η = {ETAS}: "
      f"{run_time:.0f} s")
print(f"S(θ₀) = {init_sharpness:.1f} at initialisation")
for e, w_, s_, ru, pr, lo, tm, ri, sh in zip(ETAS, warmup_steps, start_sharpness, runs, preds,
                                             warmup_min, warmup_min_step, rises, sharpening):
    print(f"  η = {e}: S falls to {lo:.1f} at warm-up step {int(tm)}, then rises by {ri:.3f}·2/η "
          f"over {sh} steps to the edge step; "
          f"start after {int(w_)} GD steps at S = {s_:.1f} "
          f"(2/η = {2 / e:.1f}); θ† at the edge from step {ru.start}; tracking window "
          f"{pr['tracking_steps']} steps; λ₂(θ†) > {SECOND_LIMIT}·2/η from step "
          f"{pr['second_step'] if pr['second_step'] >= 0 else 'never'}")

# %% [markdown]
# ## The four-stage cycle

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Main run. Left: sharpness of GD and of the constrained trajectory; dashed: $2/\\eta$. Middle: $(-1)^t x_t$ (blue) and $y_t$ (red); in the paper's cycle $|x|$ grows while $y > 0$ and $y$ falls once $|x|$ is large (the text below the figure says how often this run does so). Right: phase portrait $(|x_t|, y_t)$ in the edge phase, coloured by step; dashed: $|x| = \\sqrt{2\\alpha/\\beta}$ (mean over the edge phase) and $y = 0$.", "name": "fig-ss-cycle"}}
t = np.arange(P.steps)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
axes[0].plot(t, r.sharpness, lw=1, label="GD $S(\\theta_t)$")
axes[0].plot(t, r.sharpness_dagger, lw=1.5, label="constrained $S(\\theta^\\dagger_t)$")
axes[0].axhline(EDGE, ls="--", c="k", lw=0.8)
axes[0].set(xlabel="step of the coupled run", ylabel="sharpness")
axes[0].legend()
axes[1].plot(t, (-1.0) ** t * r.x, lw=1, color="C0")
axes[1].set(xlabel="step", ylabel="$(-1)^t x_t$")
axes[1].yaxis.label.set_color("C0")
twin = axes[1].twinx()
twin.plot(t, r.y, lw=1, color="C3")
twin.axhline(0, color="C3", lw=0.5, ls=":")
twin.set_ylabel("$y_t$", color="C3")
if te is not None:
    sl = slice(te, None)
    sc = axes[2].scatter(np.abs(r.x[sl]), r.y[sl], c=t[sl], s=4, cmap="viridis")
    fixed = np.sqrt(np.mean(2 * r.alpha[sl] / r.beta[sl]))
    axes[2].axvline(fixed, ls="--", c="k", lw=0.8)
    axes[2].axhline(0, ls="--", c="k", lw=0.8)
    axes[2].set_xscale("log")
    fig.colorbar(sc, ax=axes[2], label="step")
axes[2].set(xlabel="$|x_t|$", ylabel="$y_t$")
plt.tight_layout()
plt.show()

# %% tags=["remove-input"]
m = main.metrics
if te is None:
    display(Markdown(f"In this run $S(\\theta^\\dagger)$ never reached $2/\\eta$ in "
                     f"{P.steps} steps: the edge claims are not tested."))
else:
    cut = (f", until $\\lambda_2(\\theta^\\dagger)$ passes {SECOND_LIMIT:g}·2/η at step "
           f"{m['second_step']}" if m["second_step"] >= 0 else "")
    stages = (f"$|x|$ never leaves the rounding noise (never exceeds {STAGE_ACTIVE:g}·δ), so the "
              "stages are not read" if m["stage_steps"] == 0 else
              f"from step {m['stage_from']}, where GD's $|x|$ first exceeds {STAGE_ACTIVE:g}·δ "
              f"(before it $x$ is rounding noise), over {m['stage_steps']} steps: $|x|$ grows "
              f"exactly when $y > 0$ on {m['stage_x']:.0%} of them (base rate "
              f"{1 - m['stage_x_null_miss']:.0%}), and $y$ rises exactly when "
              f"$x^2 < 2\\alpha/\\beta$ on {m['stage_y']:.0%} (base rate "
              f"{1 - m['stage_y_null_miss']:.0%})")
    display(Markdown(
        f"From step {te} on, $\\theta^\\dagger$ sits at the edge{cut}. There $y$ falls "
        f"through 0 {m['cycles']} times; {stages}. The part of $\\nabla S$ along $u$ that "
        f"$y$ leaves out is {m['grad_s_along_u_share']:.0%} of $\\|\\nabla S\\|$ "
        "(median)."))

# %% [markdown]
# ## Predicted loss, sharpness and deviation
#
# From the edge step on, the paper's predicted dynamics run open-loop beside GD, driven by the
# constrained trajectory ({func}`eoslib.mechanisms.selfstab.gd_and_constrained`), and so does the
# scalar model from GD's $(x, y)$ there ({func}`eoslib.mechanisms.selfstab.predict`). The shaded
# band is the tracking window; the dotted vertical line, where present, the first checked step
# with $\lambda_2(\theta^\dagger) > 0.95\cdot 2/\eta$.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Main run, edge phase: GD (solid), the paper's predicted dynamics in parameter space (dashed) and the simplified scalar model (dotted). Top: the loss $L$ (prediction: $L(\\theta^\\dagger + \\hat v)$; scalar model: $L(\\theta^\\dagger) + \\tfrac12 S\\hat x^2$), the sharpness $S$ ($S(\\theta^\\dagger + \\hat v)$; $S(\\theta^\\dagger) + \\hat y$; dashed black: $2/\\eta$) and $\\|\\theta - \\theta^\\dagger\\|$ ($\\|\\hat v\\|$; $\\sqrt{\\hat x^2 + \\hat y^2/\\beta}$). Bottom: $(-1)^t x_t$, $y_t$ (symlog) and $\\lambda_2(\\theta^\\dagger)\\,\\eta/2$ where checked. Shaded: the tracking window.", "name": "fig-ss-predict"}}
fig, axes = plt.subplots(2, 3, figsize=(13, 6))
axes = axes.ravel()
if te is not None:
    tt = t[te:]
    sign = (-1.0) ** tt
    with np.errstate(over="ignore", invalid="ignore"):
        sx = np.asarray(main.prediction.x, np.float64) if main.prediction is not None else np.full(len(tt), np.nan)
        sy = np.asarray(main.prediction.y, np.float64) if main.prediction is not None else np.full(len(tt), np.nan)
        scalar_loss = main.loss_hat if main.loss_hat is not None else np.full(len(tt), np.nan)
        scalar_sharp = main.sharpness_hat if main.sharpness_hat is not None else np.full(len(tt), np.nan)
        scalar_dev = main.deviation_hat if main.deviation_hat is not None else np.full(len(tt), np.nan)
    panels = [
        ("loss", r.loss[te:], r.pred_loss[te:], scalar_loss),
        ("sharpness", r.sharpness[te:], r.pred_sharpness[te:], scalar_sharp),
        ("$\\|\\theta - \\theta^\\dagger\\|$", r.deviation[te:], r.pred_deviation[te:], scalar_dev),
        ("$(-1)^t x_t$", sign * r.x[te:], sign * r.pred_x[te:], sign * sx),
        ("$y_t$", r.y[te:], r.pred_y[te:], sy)]
    end_track = te + pm["tracking_steps"]
    for ax, (label, gd, pred, sc) in zip(axes, panels):
        clean = lambda a: np.where(np.isfinite(a) & (np.abs(a) < 1e6), a, np.nan)
        ax.plot(tt, gd, lw=1, label="GD")
        ax.plot(tt, clean(pred), lw=1, ls="--", label="predicted dynamics")
        ax.plot(tt, clean(sc), lw=1, ls=":", label="scalar model")
        ax.axvspan(te, end_track, color="0.9", zorder=0)
        if pm["second_step"] >= 0:
            ax.axvline(pm["second_step"], c="k", ls=":", lw=0.8)
        ax.set(xlabel="step", ylabel=label)
    axes[1].axhline(EDGE, ls="--", c="k", lw=0.8)
    axes[4].set_yscale("symlog", linthresh=1e-2)
    axes[0].legend()
    checked = np.isfinite(r.second_dagger)
    axes[5].plot(t[checked], r.second_dagger[checked] / EDGE, "o-", ms=2, lw=1)
    axes[5].axhline(SECOND_LIMIT, ls="--", c="k", lw=0.8)
    axes[5].set(xlabel="step", ylabel="$\\lambda_2(\\theta^\\dagger)\\,\\eta/2$")
plt.tight_layout()
plt.show()

# %% tags=["remove-input"]
def fmt_err(who, q, win):
    v = pm[f"{who}_{q}_err_{win}"]
    return "not measured" if not np.isfinite(v) and not np.isinf(v) else (
        "∞ (prediction overflowed)" if np.isinf(v) else f"{v:.3g}")


if te is None:
    display(Markdown("No edge phase in this run: nothing to predict."))
else:
    blow = (f"GD's $|x|$ first exceeds $\\delta = \\sqrt{{2\\alpha/\\beta}}$ at step "
            f"{pm['blowup_step']}" if pm["blowup_step"] >= 0
            else "GD's $|x|$ never exceeds $\\delta = \\sqrt{2\\alpha/\\beta}$")
    second = (f"$\\lambda_2(\\theta^\\dagger)$ first exceeds {SECOND_LIMIT}·2/η at step "
              f"{pm['second_step']}, where the comparison stops"
              if pm["second_step"] >= 0 else
              f"$\\lambda_2(\\theta^\\dagger)$ stays below {SECOND_LIMIT}·2/η (at most "
              f"{pm['second_max_frac']:.2f}·2/η)")
    rows = ["| window | quantity | predicted dynamics | scalar model | null |", "|---|---|---|---|---|"]
    for win, where in (("tracking", f"tracking ({pm['tracking_steps']} steps)"),
                       ("rest", f"rest ({pm['rest_blocks']} × {BLOCK}-step means)")):
        for q in ("loss", "sharpness", "deviation"):
            rows.append(f"| {where} | {QUANTITY[q]} | {fmt_err('pred', q, win)} | "
                        f"{fmt_err('scalar', q, win)} | {fmt_err('null', q, win)} |")
    display(Markdown(
        f"The prediction starts from GD's displacement at the edge step {te} "
        f"($x = {r.x[te]:.3g}$, $y = {r.y[te]:.3g}$). {blow}, so the tracking window covers "
        f"{pm['tracking_steps']} steps; {second}. Median absolute errors (the scalar model's "
        "loss and sharpness are its formulas; the predicted dynamics' are the exact values at "
        "$\\theta^\\dagger + \\hat v$):\n\n" + "\n".join(rows)))

# %% [markdown]
# ## The central flow
#
# GD's loss and sharpness, averaged over a centred window of `average_window` steps, against
# the flow's predictions from the same start point, over the edge phase. The control is the
# flow's own loss $L(\theta_{\text{flow}})$ without the $\sigma^2/\eta$ term. The flow handles
# one eigenvalue at the edge, so we also show $\lambda_2$ along it.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Central flow from the main run's start point. Left: GD's loss (grey), its moving average, the flow's $L$ and its prediction $L + \\tfrac12\\sigma^2 S$. Right: GD's averaged sharpness, the flow's $S$ and its $\\lambda_2$; dashed: $2/\\eta$.", "name": "fig-ss-flow"}}
avg_loss = selfstab.moving_average(r.loss, w)
avg_sharp = selfstab.moving_average(r.sharpness, w)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(t, r.loss, lw=0.5, color="0.7", label="GD")
axes[0].plot(t, avg_loss, lw=1.5, label=f"GD, {w}-step average")
axes[0].plot(t, flow.loss, lw=1, label="flow $L$")
axes[0].plot(t, flow.predicted_loss, lw=1, ls="--", label="flow $L + \\sigma^2 S/2$")
axes[1].plot(t, avg_sharp, lw=1.5, label=f"GD, {w}-step average")
axes[1].plot(t, flow.sharpness, lw=1, label="flow $S$")
axes[1].plot(t, flow.second, lw=1, ls=":", label="flow $\\lambda_2$")
axes[1].axhline(EDGE, ls="--", c="k", lw=0.8)
for ax, label in zip(axes, ("loss", "sharpness")):
    ax.set(xlabel="step", ylabel=label)
    ax.legend()
plt.tight_layout()
plt.show()

# %% tags=["remove-input"]
on_edge = flow.sigma2 > 0
if not on_edge.any():
    display(Markdown("Along the flow $\\sigma^2$ stays 0: the flow never reaches the edge in "
                     f"{P.steps} units of time and equals plain gradient flow here, so its "
                     "prediction is its own $L$."))
else:
    fixed_flow = 2 * flow.alpha[on_edge] / flow.beta[on_edge]
    display(Markdown(
        f"Along the flow $\\sigma^2 > 0$ (the flow at the edge) on {int(on_edge.sum())} of "
        f"{P.steps} units of time, from time {int(np.argmax(on_edge))}; there its median is "
        f"{np.median(flow.sigma2[on_edge]):.3g} against $2\\alpha/\\|\\nabla S\\|^2$ = "
        f"{np.median(fixed_flow):.3g}, and the term $\\tfrac12\\sigma^2 S$ adds a median "
        f"{np.median(0.5 * flow.sigma2[on_edge] * flow.sharpness[on_edge]):.3g} to the flow's "
        f"loss {np.median(flow.loss[on_edge]):.3g}."))

# %% [markdown]
# ## Across step sizes
#
# The same measurements for every step size of the sweep. A GD run whose loss turned
# non-finite reads *GD diverged*; an open-loop prediction that overflowed reads *prediction
# diverged* (an infinite error, which the rules reject).


# %% tags=["hide-input"]
def cell(ru, pr, q):
    """'error (null)' of the tracking window for the sweep table, in words where the
    measurement went wrong."""
    if ru.start is None:
        return "no edge phase"
    if ru.metrics["gd_diverged"]:
        return "GD diverged"
    e, n = pr[f"pred_{q}_err_tracking"], pr[f"null_{q}_err_tracking"]
    if np.isinf(e):
        return "prediction diverged"
    if not np.isfinite(e):
        return "not measured"
    return f"{e:.3g} ({n:.3g})"


header = ("η", "S(θ₀)·η/2", "sharpening rise·η/2 (steps)", "edge phase from step", "tracking steps", "loss error (null)",
          "S error (null)", "deviation error (null)", f"λ₂(θ†) > {SECOND_LIMIT:g}·2/η from", "max ‖θ−θ†‖")
rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
for ru, pr, e in zip(runs, preds, ETAS):
    mm = ru.metrics
    rows.append(f"| {e:g} | {init_sharpness * e / 2:.2f} | {rises[ETAS.index(e)]:.3f} "
                f"({sharpening[ETAS.index(e)]}) | "
                f"{'never' if ru.start is None else ru.start} | {pr['tracking_steps']} | "
                f"{cell(ru, pr, 'loss')} | {cell(ru, pr, 'sharpness')} | "
                f"{cell(ru, pr, 'deviation')} | "
                f"{pr['second_step'] if pr['second_step'] >= 0 else 'never'} | "
                f"{mm['deviation_max']:.3g} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Paper vs ours
#
# Every row is graded by the rule declared above, from the numbers measured here.

# %% tags=["hide-input"]
tracked = [i for i, pr in enumerate(preds) if pr["tracking_steps"] >= MIN_EDGE_STEPS]
alive = [i for i in tracked if not runs[i].metrics["gd_diverged"]]


def worst(q):
    """(error, null error) of the tracking window where the prediction beats its null least."""
    if not alive:
        return float("nan"), float("nan")
    pairs = [(preds[i][f"pred_{q}_err_tracking"], preds[i][f"null_{q}_err_tracking"]) for i in alive]
    score = [n / e if e > 0 else np.inf for e, n in pairs]
    return pairs[int(np.argmin(score))]


def summary(ru, pr, e):
    if ru.start is None:
        return f"η={e:g}: no edge phase"
    return f"η={e:g}: " + cell(ru, pr, "loss") + " / " + cell(ru, pr, "sharpness")


alive_mask = ~np.array([bool(ru.metrics["gd_diverged"] == 1) for ru in runs])
converged = pair.converged[alive_mask]
sharp_dag = pair.sharpness_dagger[alive_mask] * np.array(ETAS)[alive_mask, None] / 2
metrics = {
    **main.metrics, **flow_m, **pm,
    "eta": P.eta, "n_params": int(n_params), "edge_step": te,
    "init_sharpness": init_sharpness, "init_sharpness_frac": init_sharpness * P.eta / 2,
    "sharpening_rise": rises[MAIN], "sharpening_steps": sharpening[MAIN],
    "sweep_sharpening_rise": min(rises), "sweep_sharpening_steps": min(sharpening),
    "warmup_min_sharpness": [float(v) for v in warmup_min],
    "warmup_min_step": [int(v) for v in warmup_min_step],
    "pgd_sharpness_ratio": main.metrics["pgd_sharpness_max"] / EDGE,
    "pgd_edge_excess_in_tol": float(np.max((sharp_dag[converged] - 1) / P.proj_tol,
                                           initial=-np.inf)),
    "projection_converged_fraction": float(np.mean(pair.converged[MAIN])),
    "sweep_etas": ETAS,
    "sweep_n_at_edge": len(tracked),
    "sweep_n_diverged": sum(bool(ru.metrics["gd_diverged"] == 1) for ru in runs),
    "sweep_edge_start": [-1 if ru.start is None else ru.start for ru in runs],
    "sweep_tracking_steps": [pr["tracking_steps"] for pr in preds],
    "sweep_second_step": [pr["second_step"] for pr in preds],
    "sweep_pred_loss_err_tracking": [pr["pred_loss_err_tracking"] for pr in preds],
    "sweep_pred_sharpness_err_tracking": [pr["pred_sharpness_err_tracking"] for pr in preds],
    "sweep_pred_deviation_err_tracking": [pr["pred_deviation_err_tracking"] for pr in preds],
    "sweep_deviation_max": [ru.metrics["deviation_max"] for ru in runs],
    "sweep_pred_diverged": [pr["pred_diverged"] for pr in preds],
    "warmup_steps": [int(v) for v in warmup_steps],
    "time_run_s": run_time,
}
metrics["sweep_loss_err_worst"], metrics["sweep_loss_null_worst"] = worst("loss")
metrics["sweep_sharp_err_worst"], metrics["sweep_sharp_null_worst"] = worst("sharpness")
texts = {"arch": P.arch, "n_train": P.n_train, "width": P.width, "steps": P.steps,
         "start_fraction": P.start_fraction, "proj_tol": P.proj_tol,
         "flow_substeps": P.flow_substeps,
         "sweep_summary": "; ".join(summary(ru, pr, e) for ru, pr, e in zip(runs, preds, ETAS))}
claims = grade_all(CLAIMS, {**metrics, **texts}, scale=scale)
display(claims_table(claims))

# %% [markdown]
# ### At paper scale
#
# The same claims in the stored `paper`-scale run of this chapter ({mod}`eoslib.book.store`), when
# the store holds one at the chapter's paper-scale settings; without one each claim is `not tested`
# at paper scale. {doc}`../book/rerun` says how such a run is made on a GPU and stored.

# %% tags=["hide-input"]
from eoslib.book import store
from eoslib.book.display import verdicts_by_scale

paper = store.paper_evidence("self-stabilization", scale, SCALES["paper"])
print(paper.line)
display(verdicts_by_scale(claims, paper))

# %% tags=["hide-input"]
# Invariants of the machinery, true at every scale (not the paper's claims)
assert np.all(np.isfinite(pair.sharpness_dagger[alive_mask]))
below = start_sharpness < 2 / np.array(ETAS)  # a start below the edge is (nearly) on M
scale0 = np.linalg.norm(ravel_pytree(params0)[0])
assert np.all(pair.deviation[below, 0] < 1e-2 * scale0)

# %% [markdown]
# ## Verdict
#
# Generated from the graded claims (a rerun with other parameters rewrites it). To probe the
# claims away from this setting, rerun with another step size (`-p eta 0.02`), a longer
# coupled run (`-p steps 600`) or a CNN (`-p arch cnn-tanh`, meant for a GPU).

# %% tags=["remove-input"]
display(verdict_section(claims, scale=scale))

# %% tags=["hide-input"]
record = make_record("self-stabilization", scale, P.as_dict(), claims, metrics,
                     provenance(start_time, data_source=ds.source, n_train=len(ds)))
print("record written to", write_record(record, results_dir))
