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
# # Shallow ReLU networks: sharpness in separate phases, eigenvalues entering the edge one by one
#
# **Claim** ({cite:t}`anonymous2024shallowrelu`). For a two-layer ReLU network trained by GD with
# ½MSE on orthonormal inputs from a small balanced initialisation, the curvature along two
# directions v₊ and v₋ (built from the positive and the negative examples) grows *logistically
# and in separate phases*: first λ₊ while λ₋ stays small, then λ₋, at different rates
# (Theorem 3.1). On a real network (FC 3072-128-1 on CIFAR-10) the top Hessian eigenvalues reach
# the edge $2/\eta$ *one by one* at distinct rates, and after a learning-rate decay to $\eta/4$ the
# sharpness rises again monotonically at a "relatively constant" rate.
#
# The paper is an anonymous submission whose experiments are thin (figures only, no numbers) and
# whose theorem is stated without the constants r, ε, a±(λ), τ. This chapter therefore (i) simulates
# the theorem's own setting exactly and measures λ₊, λ₋ as defined there; (ii) tests the balance
# lemma; (iii) repeats the CIFAR-10 experiments, scaled down for a CPU; and says where the evidence
# is weak.
#
# ## What the text lost, and how we read it
#
# The conversion of the paper dropped or garbled some formulas; our reading, derived where needed
# (all in {mod}`eoslib.mechanisms.shallow_relu`):
#
# - $d_\pm = \frac1n\sum_{k:\,\pm y_k>0} y_k x_k$ (App. A.1). So $d_-$ has the *negative* labels as
#   coefficients and $v_-$'s block $(d_-, \lVert d_-\rVert)$ is the scaling direction of a negative
#   neuron ($w_j \propto -d_-$, $a_j<0$). (With the other sign, the Gauss–Newton part of λ₋ would
#   vanish at alignment.)
# - $S_{1,\pm}$ are read at initialisation ($w_j^0$ for the text's $w_j^k$). The zero block is
#   $0_{d+1}$, not $0_d$, and the text's $\lVert vv_\pm\rVert$ is read as $\lVert v_\pm\rVert$.
# - The constants r, ε of the phase-1/2 bounds are not given. We test the strictest form
#   (rε = 0: $\lambda_\pm \le 2|S_{1,\pm}|\lambda$) in phase 1, and ε = ½ in phase 2. We also report
#   the largest ε for which the phase-2 bound holds.
# - The rates $a_\pm(\lambda)$ are not given. As a prediction of our own (not the paper's), the
#   gradient-flow analysis of {cite:t}`boursier2022gradient` has aligned neurons growing like
#   $e^{\lVert d_\pm\rVert \eta t}$, so the product $a_j w_j$, and with it λ±, rises at rate
#   $a_\pm \approx 2\eta\lVert d_\pm\rVert$ per step.
#
# ## Setup
#
# | | paper | `book` scale (2-core CPU) | `paper` scale |
# |---|---|---|---|
# | theorem setting | n orthonormal inputs, m neurons, scale λ (no values given) | n = 6 (3 positive, 3 negative), d = 6, m = 64, λ = 10⁻³, η = 0.2 | same |
# | λ, n sweep | — | λ ∈ 10⁻¹…10⁻⁵, n ∈ {4, 6, 8}, m = 128, 4 seeds | same |
# | real data | CIFAR-10, 5,000 images, FC 3072-128-1 (ReLU, tanh), ½MSE, GD, η ∈ {2/200, 2/150, 2/50, 2/30}, top 20 eigenvalues, until 99% accuracy | classes airplane vs automobile, targets ±1, 250 images, η from the paper's set by the rule below, top 5, 1,000 steps | 5,000 images, top 20, 10,000 steps |
# | η/4 decay | "once the chosen number of eigenvalues is in EoS" | when 1 (and 2) eigenvalues reached the edge, and 300 steps later | k ∈ {1, 3, 5} |
# | App. C | width, depth, activation, loss variations until 99% accuracy | depth only: 1–3 hidden layers of 128, 400 steps | 1–4 layers, 4,000 steps |
#
# The paper's output is one unit, so we take two CIFAR-10 classes (airplane = −1, automobile = +1)
# and regress onto ±1. The paper does not say which of its four step sizes goes with which
# network. With the PyTorch-default initialisation on standardised images the initial sharpness
# λ₁(θ₀) is already above 2/η for the larger step sizes: GD would then start *beyond* the edge, and
# could not sharpen to it. So each network gets, by a rule fixed before its run, the smallest of
# the paper's edges 2/η with λ₁(θ₀) ≤ 0.9 · 2/η.

# %% tags=["hide-input"]
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from IPython.display import Markdown, display

from eoslib.engine import data, hessian, models, train
from eoslib.mechanisms import shallow_relu as sr
from eoslib.book.display import claims_table, use_book_style
from eoslib.book.scales import settings
from eoslib.book.results import Claim, make_record, provenance, write_record

use_book_style()
start_time = time.time()

# %% tags=["parameters"]
scale = os.environ.get("EOSLIB_SCALE", "book")  # smoke | book | paper
n_data = None  # orthonormal inputs of the theorem's setting (half positive, half negative)
width = None  # neurons m of the theorem's setting
init_scale = None  # initialisation scale λ
y_neg = None  # |target| of the negative examples (positive ones are +1); < 1 makes them unbalanced
eta = None  # GD step size of the theorem's setting
steps = None  # GD steps of the theorem's setting
probe_every = None  # steps between dense Hessian eigensolves
sweep_scales = None  # λ values of the sweep
sweep_ns = None  # n values of the sweep
sweep_seeds = None  # seeds per (λ, n)
sweep_width = None  # neurons in the sweep
sweep_steps = None  # GD steps of each sweep member
cifar_n = None  # CIFAR-10 images (two classes, alternating); 0 skips claims 3–4
cifar_edges = None  # the paper's step sizes as edges 2/η; each network gets the rule-picked one
cifar_steps = None  # GD steps of the main CIFAR-10 run
cifar_probe_every = None  # steps between top-k probes
top_k = None  # Hessian eigenvalues tracked in the loop
decay_ks = None  # decay to η/4 once this many eigenvalues reached the edge (one run each)
decay_offsets = None  # ... and also this many steps after that (several decay steps per k)
decay_steps = None  # steps run after the decay
depths = None  # hidden layers of the App. C depth grid (width 128, ReLU); [] skips it
depth_steps = None  # GD steps of each depth-grid run
seed = None  # PRNG seed
results_dir = None  # where the results record goes (default: the book's _build/records)

# %%
RANGES = {"n_data": "int >= 2, multiple of 2", "width": "int >= 1", "init_scale": "float > 0", "y_neg": "float > 0",
          "eta": "float > 0", "steps": "int >= 1", "probe_every": "int >= 1",
          "sweep_scales": "list[float > 0], non-empty", "sweep_ns": "list[int >= 2, multiple of 2], non-empty",
          "sweep_seeds": "int >= 1", "sweep_width": "int >= 1", "sweep_steps": "int >= 1",
          "cifar_n": "int in [0, 10000]", "cifar_edges": "list[float > 0], non-empty",
          "cifar_steps": "int >= 1, multiple of cifar_probe_every", "cifar_probe_every": "int >= 1",
          "top_k": "int >= 1", "decay_ks": "list[int >= 1]", "decay_offsets": "list[int >= 0]",
          "decay_steps": "int >= 1", "depths": "list[int >= 1]",
          "depth_steps": "int >= 1, multiple of cifar_probe_every", "seed": "int >= 0"}
SCALES = {
    "smoke": {"n_data": 6, "width": 64, "init_scale": 1e-3, "y_neg": 0.6, "eta": 0.2, "steps": 500,
              "probe_every": 100, "sweep_scales": [1e-2, 1e-3], "sweep_ns": [4], "sweep_seeds": 2,
              "sweep_width": 64, "sweep_steps": 500, "cifar_n": 40, "cifar_edges": [30, 50, 150, 200], "cifar_steps": 20,
              "cifar_probe_every": 10, "top_k": 3, "decay_ks": [1], "decay_offsets": [0, 10], "decay_steps": 10,
              "depths": [], "depth_steps": 20, "seed": 0},
    "book": {"n_data": 6, "width": 64, "init_scale": 1e-3, "y_neg": 0.6, "eta": 0.2, "steps": 1000,
             "probe_every": 50, "sweep_scales": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5], "sweep_ns": [4, 6, 8],
             "sweep_seeds": 4, "sweep_width": 128, "sweep_steps": 1000, "cifar_n": 250,
             "cifar_edges": [30, 50, 150, 200], "cifar_steps": 1000, "cifar_probe_every": 50, "top_k": 5,
             "decay_ks": [1, 2], "decay_offsets": [0, 300], "decay_steps": 250,
             "depths": [1, 2, 3], "depth_steps": 400, "seed": 0},
    "paper": {"n_data": 6, "width": 64, "init_scale": 1e-3, "y_neg": 0.6, "eta": 0.2, "steps": 1000,
              "probe_every": 20, "sweep_scales": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5], "sweep_ns": [4, 6, 8],
              "sweep_seeds": 8, "sweep_width": 128, "sweep_steps": 1000, "cifar_n": 5000,
              "cifar_edges": [30, 50, 150, 200], "cifar_steps": 10000, "cifar_probe_every": 20, "top_k": 20,
              "decay_ks": [1, 3, 5], "decay_offsets": [0, 1000], "decay_steps": 1000,
              "depths": [1, 2, 3, 4], "depth_steps": 4000, "seed": 0},
}
P = settings(SCALES, scale, RANGES, n_data=n_data, width=width, init_scale=init_scale, y_neg=y_neg, eta=eta,
             steps=steps, probe_every=probe_every, sweep_scales=sweep_scales, sweep_ns=sweep_ns,
             sweep_seeds=sweep_seeds, sweep_width=sweep_width, sweep_steps=sweep_steps, cifar_n=cifar_n,
             cifar_edges=cifar_edges, cifar_steps=cifar_steps, cifar_probe_every=cifar_probe_every, top_k=top_k,
             decay_ks=decay_ks, decay_offsets=decay_offsets, decay_steps=decay_steps, depths=depths, depth_steps=depth_steps, seed=seed)
P.as_dict()

# %% [markdown]
# ## Claims and the rules that judge them (fixed before any run)
#
# Notation: for a curve that rises from `base` to `plateau`, its *p % point* is the first step at
# which it has completed p % of the rise. Phase 1 is before λ₊'s 10 % point. Phase 2 is from there
# to λ₊'s 90 % point.
#
# | id | claim | rule |
# |---|---|---|
# | `thm3.1-phase-order` | λ₊ grows first while λ₋ stays small, then λ₋ grows | λ₋ has completed ≤ 10 % of its rise at λ₊'s 90 % point. Control: the same run with balanced targets (y_neg = 1), where the theorem predicts no separation. Reproduced if the main run passes and the control fails; partly if both pass; not if the main run fails |
# | `thm3.1-logistic-rates` | λ± follow logistic curves with different rates a₊ ≠ a₋ | both logistic fits have R² ≥ 0.99 and \|a₊/a₋ − 1\| ≥ 0.1; partly if only one of the two holds |
# | `thm3.1-bounds` | phase-1 bounds λ± ≤ 2\|S₁,±\|λ^{1−rε}; phase-2 bound λ₋ ≤ 2\|S₁,₋\|λ^ε; asymptotes n‖d±‖²/(4\|S₁,±\|) | every inequality holds on the run (rε = 0, ε = ½; plateaus of the fits ≥ the asymptotes); partly if some do |
# | `thm3.1-rate-prediction` (extension, our derivation) | a± ≈ 2η‖d±‖ | both fitted rates within 20 % of 2η‖d±‖ |
# | `thm3.1-sweep-phases` | the phase separation holds across λ and n, and widens as λ shrinks | phase order (rule above) in ≥ 90 % of sweep members with non-empty S₁,±, and for every n the median gap between λ₋'s and λ₊'s midpoints increases as λ decreases; partly if one of the two holds |
# | `lemma2.1-identity` (consistency check) | the balance changes by exactly η²(‖dⱼ‖²aⱼ² − ⟨dⱼ,wⱼ⟩²) | max error ≤ 1e-12 (float64). Algebra; recorded, not evidence |
# | `lemma2.1-phase1-balance` | in phase 1 the neurons stay balanced: ‖wⱼ‖ − \|aⱼ\| ≤ Bλ with B < 1 | √max_j(‖wⱼ‖² − aⱼ²) < λ over phase 1 (this bounds ‖wⱼ‖ − \|aⱼ\|) |
# | `edge-one-by-one` | on CIFAR-10 the top eigenvalues reach 2/η one by one at distinct rates | An eigenvalue *reaches the edge* at the first probe with λᵢ ≥ 0.95 · 2/η after it has been below that level (a start above the edge, as after a catapult, does not count). Reproduced if ≥ 2 of the top k reach it, at ≥ 2 distinct probe steps, and their growth rates before entry (ln λᵢ(entry) − ln λᵢ(first probe below the level), per step) have a coefficient of variation ≥ 0.1. Partly if only one eigenvalue reaches the edge. Not if none does. The order λ₁ first holds by construction (the eigenvalues are sorted) and is not scored |
# | `decay-eta-over-4` | after decaying η to η/4 at the edge: no oscillation, sharpness rises monotonically, loss falls monotonically; growth rate "relatively constant" across decay steps | per decay run: the loss rises on ≤ 1 % of steps and λ₁ falls between ≤ 10 % of consecutive probes after the decay. Across decay steps: the CV of the post-decay λ₁ growth rate (slope of a line through the post-decay probes) ≤ 0.25. Reproduced if all hold; partly if the per-run rules hold but the CV does not |
# | `appendix-c-depth` | "the deeper the network, the more gradual the progression of sharpness" (Fig. 7) | FC-ReLU with `depths` hidden layers of width 128, all at the step size the rule picks for depth 1. Sharpening rate = slope of ln λ₁ per step from step 0 to the edge entry (or to the run's end if it never enters). Reproduced if the rate strictly decreases with depth; partly if the deepest is slower than the shallowest but the order is not strict; not otherwise |
# | `appendix-c-grid` | width, activation and loss variations; "shallower nets reach the edge earlier and stay longer" (Figs. 6, 8, 9) | not run in this chapter |

# %%
# The rules above as pure functions of the measured quantities.
PHASE_SMALL, R2_MIN, RATE_SPLIT, PRED_TOL = 0.10, 0.99, 0.10, 0.20
EDGE_TOL, RATE_CV_MIN, LOSS_UP_MAX, SHARP_DOWN_MAX, DECAY_CV_MAX = 0.05, 0.10, 0.01, 0.10, 0.25
IDENTITY_TOL, SWEEP_FRACTION = 1e-12, 0.90


def rise_fraction(values, fit):
    """How much of its fitted rise a curve has completed, sample by sample."""
    return (np.asarray(values) - fit.base) / (fit.plateau - fit.base)


def phase_order_ok(t, lam_plus, lam_minus, fit_plus, fit_minus):
    """λ₋ has completed ≤ 10 % of its rise when λ₊ completes 90 % of its own."""
    t90 = sr.first_crossing(t, rise_fraction(lam_plus, fit_plus), 0.9)
    if not np.isfinite(t90):
        return False, t90, float("nan")
    done_minus = float(rise_fraction(lam_minus, fit_minus)[int(np.searchsorted(t, t90))])
    return bool(done_minus <= PHASE_SMALL), t90, done_minus


def rates_ok(fit_plus, fit_minus):
    """(fits good, rates differ)."""
    good = fit_plus.r2 >= R2_MIN and fit_minus.r2 >= R2_MIN
    split = abs(fit_plus.rate / fit_minus.rate - 1) >= RATE_SPLIT
    return bool(good), bool(split)


def three_way(all_ok, some_ok):
    return "reproduced" if all_ok else ("partly reproduced" if some_ok else "not reproduced")


def edge_entries(probe_step, top_eigs, edge):
    """For each eigenvalue: the first probe step at which it *reaches* (1 − EDGE_TOL)·edge from below
    (after having been below it; NaN if never), and its mean log-growth rate from the first probe
    below that level to the entry."""
    level = (1 - EDGE_TOL) * edge
    entry = np.full(top_eigs.shape[1], np.nan)
    rates = np.full(top_eigs.shape[1], np.nan)
    for i in range(top_eigs.shape[1]):
        below = np.nonzero(top_eigs[:, i] < level)[0]
        if not below.size:
            continue
        j0 = below[0]
        above = np.nonzero(top_eigs[j0:, i] >= level)[0]
        if not above.size:
            continue
        j = j0 + above[0]
        entry[i] = probe_step[j]
        if top_eigs[j0, i] > 0:
            rates[i] = (np.log(top_eigs[j, i]) - np.log(top_eigs[j0, i])) / (probe_step[j] - probe_step[j0])
    return entry, rates


def pick_edge(initial_sharpness, edges):
    """The paper's step size for a network: the smallest edge 2/η with λ₁(θ₀) ≤ 0.9·edge (so the run
    starts below the edge and has to sharpen to it); None if there is none."""
    ok = [e for e in sorted(edges) if initial_sharpness <= 0.9 * e]
    return ok[0] if ok else None


def one_by_one_verdict(entry, rates):
    reached = np.isfinite(entry)
    if reached.sum() == 0:  # the run never entered the regime the claim is about
        return "not tested"
    if reached.sum() == 1:
        return "partly reproduced"
    distinct = np.unique(entry[reached]).size >= 2
    r = rates[np.isfinite(rates)]
    cv = float(np.std(r) / abs(np.mean(r))) if r.size >= 2 else float("nan")
    return "reproduced" if (distinct and cv >= RATE_CV_MIN) else "partly reproduced"


# %% [markdown]
# ## 1. Theorem 3.1 in its own setting
#
# Exactly the paper's setting, in float64: n orthonormal inputs (a random orthonormal frame of
# ℝᵈ), half with target +1 and half with target −y_neg, the balanced initialisation at scale λ, GD
# at step size η. λ₊ and λ₋ are the Rayleigh quotients along v₊, v₋, in closed form (tested
# against `jax.hessian`). The top Hessian eigenvalues come from a dense `eigh` every `probe_every`
# steps. The whole run is one `lax.scan` ({func}`eoslib.mechanisms.shallow_relu.simulate`).

# %%
def make_problem(n, y_negative, key):
    x = sr.orthonormal_inputs(n, n, key=key)  # d = n: dimensions beyond the data's span play no role
    y = jnp.concatenate([jnp.ones(n // 2), -y_negative * jnp.ones(n // 2)])
    return x, y


with jax.enable_x64(True):
    x_toy, y_toy = make_problem(P.n_data, P.y_neg, jax.random.key(P.seed))
    sr.check_data(x_toy, y_toy)
    net0 = sr.init(P.n_data, P.width, P.init_scale, key=jax.random.key(P.seed + 1))
    s_plus, s_minus = (np.asarray(s) for s in sr.alignment_sets(net0, x_toy, y_toy))
    d_plus, d_minus = (float(jnp.linalg.norm(v)) for v in sr.data_vectors(x_toy, y_toy))
    t0 = time.time()
    toy = jax.tree.map(np.asarray, sr.simulate(net0, x_toy, y_toy, P.eta, steps=P.steps,
                                               probe_every=P.probe_every, top_k=4))
    # the control: the same network on balanced targets (Assumption 2.1 violated on purpose)
    y_bal = jnp.concatenate([jnp.ones(P.n_data // 2), -jnp.ones(P.n_data // 2)])
    ctrl = jax.tree.map(np.asarray, sr.simulate(net0, x_toy, y_bal, P.eta, steps=P.steps,
                                                probe_every=P.probe_every, top_k=4))
    time_toy = time.time() - t0
T = np.arange(P.steps)
print(f"n = {P.n_data}, m = {P.width}, λ = {P.init_scale}, η = {P.eta}: |S₁,₊| = {s_plus.sum()}, "
      f"|S₁,₋| = {s_minus.sum()}; ‖d₊‖ = {d_plus:.4f}, ‖d₋‖ = {d_minus:.4f}; {time_toy:.1f} s")
print(f"diverged at: {int(toy.diverged_at)} (−1: no); final loss {toy.loss[-1]:.2e}")
if not (s_plus.any() and s_minus.any()):
    raise ValueError(f"seed={P.seed}: S₁,₊ or S₁,₋ is empty (Assumption 2.2); choose another seed or a larger width")

# %%
fit_p, fit_m = sr.fit_logistic(T, toy.lambda_plus), sr.fit_logistic(T, toy.lambda_minus)
order_ok, t90_plus, minus_done = phase_order_ok(T, toy.lambda_plus, toy.lambda_minus, fit_p, fit_m)
cfit_p, cfit_m = sr.fit_logistic(T, ctrl.lambda_plus), sr.fit_logistic(T, ctrl.lambda_minus)
ctrl_ok, _, ctrl_minus_done = phase_order_ok(T, ctrl.lambda_plus, ctrl.lambda_minus, cfit_p, cfit_m)
fits_good, rates_split = rates_ok(fit_p, fit_m)
pred_p, pred_m = 2 * P.eta * d_plus, 2 * P.eta * d_minus
pred_ok = bool(abs(fit_p.rate / pred_p - 1) <= PRED_TOL and abs(fit_m.rate / pred_m - 1) <= PRED_TOL)

# bounds of Theorem 3.1 on the run
t10_plus = sr.first_crossing(T, rise_fraction(toy.lambda_plus, fit_p), 0.1)
ph1 = T < t10_plus
ph2 = (T >= t10_plus) & (T <= t90_plus)
lam = P.init_scale
b1_plus = float(np.max(toy.lambda_plus[ph1])) <= 2 * s_plus.sum() * lam
b1_minus = float(np.max(toy.lambda_minus[ph1])) <= 2 * s_minus.sum() * lam
lm2_max = float(np.max(toy.lambda_minus[ph2]))
b2_minus = lm2_max <= 2 * s_minus.sum() * lam**0.5
eps_star = (1.0 if lm2_max <= 0 else float(np.log(lm2_max / (2 * s_minus.sum())) / np.log(lam)))
asym_p = P.n_data * d_plus**2 / (4 * s_plus.sum())
asym_m = P.n_data * d_minus**2 / (4 * s_minus.sum())
b_plateau = fit_p.plateau >= asym_p and fit_m.plateau >= asym_m
bounds = [b1_plus, b1_minus, b2_minus, b_plateau]
print(f"logistic fits: a₊ = {fit_p.rate:.4f} (R² {fit_p.r2:.5f}), a₋ = {fit_m.rate:.4f} (R² {fit_m.r2:.5f}); "
      f"a₊/a₋ = {fit_p.rate / fit_m.rate:.3f}; predicted 2η‖d±‖ = {pred_p:.4f}, {pred_m:.4f}")
print(f"midpoints τ₊ = {fit_p.midpoint:.1f}, τ₋ = {fit_m.midpoint:.1f}; at λ₊'s 90% point (step {t90_plus:.0f}) "
      f"λ₋ has done {100 * minus_done:.1f}% of its rise (control, balanced targets: {100 * ctrl_minus_done:.1f}%)")
print(f"λ± at step 0: {toy.lambda_plus[0]:.4f}, {toy.lambda_minus[0]:.4f} (−‖d±‖ = {-d_plus:.4f}, {-d_minus:.4f})")
print(f"bounds: phase 1 λ₊ ≤ {2 * s_plus.sum() * lam:.3g}: {b1_plus}; λ₋: {b1_minus}; phase 2 λ₋ ≤ "
      f"{2 * s_minus.sum() * lam ** 0.5:.3g}: {b2_minus} (holds for ε ≤ {eps_star:.2f}); plateaus "
      f"{fit_p.plateau:.3f} ≥ {asym_p:.3f}, {fit_m.plateau:.3f} ≥ {asym_m:.3f}: {b_plateau}")

# %% mystnb={"figure": {"caption": "Theorem 3.1's setting (n orthonormal inputs, balanced init at scale λ, GD). Left: λ₊ and λ₋ (Rayleigh quotients along v₊, v₋), their logistic fits (thin black), and the top Hessian eigenvalues (grey dots, dense eigh); the dotted lines mark λ₊'s 10 % and 90 % points (phase 2 between them). Middle: the same for balanced targets (control), where the phases coincide. Right: the loss.", "name": "fig-shallow-relu-phases"}}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for ax, tr, fp, fm, title in ((axes[0], toy, fit_p, fit_m, f"unbalanced (y₋ = −{P.y_neg})"),
                              (axes[1], ctrl, cfit_p, cfit_m, "control: balanced (y₋ = −1)")):
    ax.plot(T, tr.lambda_plus, color="C0", label="λ₊")
    ax.plot(T, tr.lambda_minus, color="C3", label="λ₋")
    for f in (fp, fm):
        if np.isfinite(f.rate):
            ax.plot(T, sr.logistic(T, *f[:4]), color="k", lw=0.6, ls="--")
    ax.plot(tr.probe_step, tr.top_eigenvalues[:, 0], ".", color="0.5", ms=3, label="top eigenvalues")
    ax.plot(tr.probe_step, tr.top_eigenvalues[:, 1:], ".", color="0.75", ms=2)
    ax.set(xlabel="step", title=title)
    ax.legend(fontsize=8)
for tt in (t10_plus, t90_plus):
    axes[0].axvline(tt, color="0.4", ls=":", lw=0.8)
axes[2].semilogy(T, toy.loss, label="unbalanced")
axes[2].semilogy(T, ctrl.loss, label="balanced (control)")
axes[2].set(xlabel="step", ylabel="½MSE")
axes[2].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### The phase boundaries across λ and n (one `vmap` per n)
#
# For each n, all λ × seeds run as one vmapped program (no eigensolves; λ± and the loss only).
# The midpoints τ₊, τ₋ of the logistic fits mark the phases.

# %%
def sweep_n(n):
    with jax.enable_x64(True):
        x, y = make_problem(n, P.y_neg, jax.random.key(P.seed + 100 + n))
        scales = jnp.repeat(jnp.asarray(P.sweep_scales, jnp.float64), P.sweep_seeds)
        keys = jax.random.split(jax.random.key(P.seed + 200 + n), scales.size)

        def one(s, k):
            net = models.TwoLayerReLU(n, P.sweep_width, 1.0, key=k)
            net = jax.tree.map(lambda leaf: s * leaf, net)  # balanced init at scale s
            sp, sm = sr.alignment_sets(net, x, y)
            tr = sr.simulate(net, x, y, P.eta, steps=P.sweep_steps, probe_every=P.sweep_steps, top_k=1)
            return tr.lambda_plus, tr.lambda_minus, sp.sum(), sm.sum()

        lp, lm, np_, nm = jax.jit(jax.vmap(one))(scales, keys)
    return np.asarray(scales), np.asarray(lp), np.asarray(lm), np.asarray(np_), np.asarray(nm)


t0 = time.time()
TS = np.arange(P.sweep_steps)
sweep_rows = []  # (n, λ, seed index, τ₊, τ₋, order ok)
for n in P.sweep_ns:
    scales, lp, lm, np_, nm = sweep_n(n)
    for i, s in enumerate(scales):
        if np_[i] == 0 or nm[i] == 0:
            continue
        fp, fm = sr.fit_logistic(TS, lp[i]), sr.fit_logistic(TS, lm[i])
        ok = phase_order_ok(TS, lp[i], lm[i], fp, fm)[0] if np.isfinite(fp.rate) and np.isfinite(fm.rate) else False
        sweep_rows.append((n, float(s), i % P.sweep_seeds, fp.midpoint, fm.midpoint, ok))
time_sweep = time.time() - t0
sweep_arr = np.array([r[:5] for r in sweep_rows], dtype=float).reshape(-1, 5)
sweep_ok = np.array([r[5] for r in sweep_rows], dtype=bool)
sweep_fraction = float(np.mean(sweep_ok)) if sweep_ok.size else float("nan")
gap_monotone = True
gap_table = {}
for n in P.sweep_ns:
    rows = sweep_arr[sweep_arr[:, 0] == n]
    meds = [float(np.median(rows[rows[:, 1] == s, 4] - rows[rows[:, 1] == s, 3])) if np.any(rows[:, 1] == s)
            else float("nan") for s in sorted(P.sweep_scales, reverse=True)]
    gap_table[n] = meds
    finite = [g for g in meds if np.isfinite(g)]
    gap_monotone &= bool(len(finite) >= 2 and np.all(np.diff(finite) > 0))
sweep_pass = bool(sweep_fraction >= SWEEP_FRACTION and gap_monotone)
print(f"sweep: {len(sweep_rows)} members with non-empty S₁,± ({time_sweep:.1f} s); phase order in "
      f"{100 * sweep_fraction:.0f}%; median gap τ₋ − τ₊ by λ (descending) per n:")
for n, meds in gap_table.items():
    print(f"  n = {n}: " + ", ".join(f"λ={s:g}: {g:.1f}" for s, g in zip(sorted(P.sweep_scales, reverse=True), meds)))

# %% mystnb={"figure": {"caption": "Phase boundaries across the initialisation scale λ and the number of inputs n: the midpoints τ₊ (filled) and τ₋ (open) of the logistic rises of λ₊ and λ₋, one point per seed. Both move later as λ shrinks, roughly linearly in ln(1/λ), and apart from each other.", "name": "fig-shallow-relu-sweep"}}
fig, ax = plt.subplots(figsize=(6, 3.6))
for c, n in enumerate(P.sweep_ns):
    rows = sweep_arr[sweep_arr[:, 0] == n]
    ax.semilogx(rows[:, 1], rows[:, 3], "o", color=f"C{c}", ms=4, label=f"τ₊, n = {n}")
    ax.semilogx(rows[:, 1], rows[:, 4], "o", mfc="none", color=f"C{c}", ms=5, label=f"τ₋, n = {n}")
ax.invert_xaxis()
ax.set(xlabel="initialisation scale λ", ylabel="midpoint step")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Approximate balance (Lemma 2.1)
#
# Each step changes the balance ‖wⱼ‖² − aⱼ² by η²(‖dⱼ‖²aⱼ² − ⟨dⱼ,wⱼ⟩²) ≥ 0. This is algebra (a
# consistency check of the implementation), so the balance can only grow. What the proof needs is
# that it stays below (Bλ)² in phase 1.

# %%
identity_err = float(np.nanmax(toy.balance_identity_error))
bal_max = np.nanmax(toy.balance, axis=1)  # (T,): the largest imbalance among neurons at each step
phase1_balance = float(np.sqrt(max(np.max(bal_max[ph1]), 0.0)))
balance_ok = phase1_balance < lam
print(f"identity error max {identity_err:.2e}; √max imbalance over phase 1 = {phase1_balance:.3g} vs λ = {lam:g}; "
      f"largest imbalance at the end {bal_max[-1]:.3g}")

# %% mystnb={"figure": {"caption": "The largest balance ‖wⱼ‖² − aⱼ² among the neurons along the run (log scale), with λ² dotted; the balance only grows (Lemma 2.1), mostly during the fast phases.", "name": "fig-shallow-relu-balance"}}
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.semilogy(T, np.maximum(bal_max, 1e-300), label="max_j (‖wⱼ‖² − aⱼ²)")
ax.axhline(lam**2, color="k", ls=":", lw=1, label="λ²")
ax.axvline(t10_plus, color="0.4", ls=":", lw=0.8)
ax.set(xlabel="step", ylabel="imbalance", ylim=(1e-16, None))
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Eigenvalues entering the edge one by one (CIFAR-10, Figs. 1, 2, 4)
#
# FC 3072-128-1 with ReLU and with tanh (PyTorch-default initialisation, biases), ½MSE on ±1
# targets, full-batch GD. The top-k Hessian eigenvalues are tracked inside the compiled training
# loop by block Lanczos, warm-started from the previous probe ({mod}`eoslib.engine.train`). The run
# is driven one probe interval at a time ({func}`eoslib.engine.train.run` with `resume=`), so the
# state at every probe is at hand for the decays of claim 4.

# %%
def cifar_run(params, eta, x, y):
    """Main run at η from ``params``, one probe interval per call; returns (result, states at each probe step)."""
    config = train.TrainConfig(steps=P.cifar_probe_every, probe_every=P.cifar_probe_every, top_k=P.top_k, chunks=1)
    result, states = None, {}
    for _ in range(P.cifar_steps // P.cifar_probe_every):
        states[int(result.state.step) if result else 0] = result
        result = train.run(OBJECTIVE, MAKE_SGD, params if result is None else None, (x, y), config,
                           key=jax.random.key(P.seed + 7), hparams={"eta": eta}, resume=result, progress=False)
    return result, states


def decay_run(segment, eta, x, y):
    """Continue ``segment`` (a result ending at the decay step) at η/4 for ``decay_steps`` steps."""
    config = train.TrainConfig(steps=P.decay_steps, probe_every=P.cifar_probe_every, top_k=P.top_k, chunks=1)
    return train.run(OBJECTIVE, MAKE_SGD, None, (x, y), config, key=jax.random.key(P.seed + 8),
                     hparams={"eta": eta / 4}, resume=segment, progress=False)


OBJECTIVE = train.supervised("half_mse")  # ½‖f − y‖², mean over examples
MAKE_SGD = lambda hp: optax.sgd(hp["eta"])  # one function object: the compiled program is reused
cifar = {}
if P.cifar_n:
    ds = data.load_cifar10(n=P.cifar_n, classes=["airplane", "automobile"])
    x_c = jnp.asarray(ds.x)
    y_c = jnp.asarray(2.0 * ds.y - 1.0, dtype=jnp.float32)[:, None]  # airplane −1, automobile +1
    for act in ("relu", "tanh"):
        t0 = time.time()
        params_c = models.MLP(3072, (128,), 1, act, key=jax.random.key(P.seed + 3))
        s0 = float(hessian.sharpness(lambda p: OBJECTIVE(p, x_c, y_c, {})[0], params_c,
                                     key=jax.random.key(P.seed + 4), tol=1e-3))
        edge = pick_edge(s0, P.cifar_edges)
        if edge is None:
            print(f"{act}: λ₁(θ₀) = {s0:.1f}: no step size of the paper starts below the edge; not run")
            continue
        res, states = cifar_run(params_c, 2 / edge, x_c, y_c)
        h = res.history
        entry, grow = edge_entries(h.probe_step, h.top_eigenvalues, edge)
        cifar[act] = dict(result=res, states=states, entry=entry, rates=grow, time=time.time() - t0,
                          verdict=one_by_one_verdict(entry, grow), edge=edge, eta=2 / edge, s0=s0)
        print(f"{act}: λ₁(θ₀) = {s0:.1f} → η = 2/{edge:g}; {len(ds)} images, {P.cifar_steps} steps in "
              f"{cifar[act]['time']:.0f} s; diverged: {bool(res.diverged)}; final loss {h.loss[-1]:.4f}, "
              f"accuracy {h.aux['accuracy'][-1]:.3f}")
        print(f"  λ₁…λ_k at step 0: {np.round(h.top_eigenvalues[0], 1)}; at the end: {np.round(h.top_eigenvalues[-1], 1)}")
        print(f"  edge entry steps: {entry}; growth rates before entry: {np.round(grow, 5)}")
        print(f"  HVPs per probe: first {int(h.matvecs[0])}, median warm {np.median(h.matvecs[1:]):.0f}")
else:
    print("cifar_n = 0: claims 3–4 not run")

# %% mystnb={"figure": {"caption": "FC 3072-128-1 on two CIFAR-10 classes, full-batch GD: the top-k Hessian eigenvalues tracked in the loop (left: ReLU, middle: tanh), with 2/η dashed and the 5 % entry tolerance dotted; right: the training losses.", "name": "fig-shallow-relu-cifar"}}
if cifar:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, act in zip(axes, cifar):
        h, EDGE_C = cifar[act]["result"].history, cifar[act]["edge"]
        for i in range(P.top_k):
            ax.plot(h.probe_step, h.top_eigenvalues[:, i], lw=0.9, label=f"λ{i + 1}" if i < 5 else None)
        ax.axhline(EDGE_C, color="k", ls="--", lw=1)
        ax.axhline((1 - EDGE_TOL) * EDGE_C, color="k", ls=":", lw=0.8)
        ax.set(xlabel="step", ylabel="Hessian eigenvalue", title=f"FC-{act}, η = 2/{EDGE_C:g}")
        ax.legend(fontsize=7)
        axes[2].semilogy(h.step, h.loss, lw=0.8, label=act)
    axes[2].set(xlabel="step", ylabel="½MSE")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 4. Learning-rate decay to η/4 (Figs. 3, 5)
#
# From the state at the first probe where k eigenvalues are at the edge (k in `decay_ks`), GD
# continues at η/4, and also `decay_offsets` steps later. The main run (which keeps η) is the control.

# %%
decays = {}  # (activation, k, offset) -> dict
for act, c in cifar.items():
    h, EDGE_C = c["result"].history, c["edge"]
    n_at_edge = np.sum(h.top_eigenvalues >= (1 - EDGE_TOL) * EDGE_C, axis=1)
    for k in P.decay_ks:
        hit = np.nonzero(n_at_edge >= k)[0]
        if not hit.size or int(h.probe_step[hit[0]]) == 0:
            print(f"{act}: k = {k}: never {k} eigenvalues at the edge after step 0 in {P.cifar_steps} steps: "
                  "no decay run")
            continue
        for off in P.decay_offsets:
            s = int(h.probe_step[hit[0]]) + int(off)
            if s not in c["states"]:
                print(f"{act}: k = {k}, offset {off}: step {s} is not a probe step of the run; no decay run")
                continue
            dh = decay_run(c["states"][s], c["eta"], x_c, y_c).history
            loss_after = dh.loss[dh.step >= s]
            up = float(np.mean(np.diff(loss_after) > 0))
            pa = dh.probe_step >= s
            lam1 = dh.sharpness[pa]
            down = float(np.mean(np.diff(lam1) < 0)) if lam1.size > 1 else float("nan")
            slope = float(np.polyfit(dh.probe_step[pa], lam1, 1)[0]) if lam1.size > 1 else float("nan")
            decays[(act, k, int(off))] = dict(step=s, history=dh, loss_up=up, sharp_down=down, slope=slope,
                                              ok=bool(up <= LOSS_UP_MAX and down <= SHARP_DOWN_MAX))
            print(f"{act}: decay at step {s} (k = {k}, offset {off}): loss rose on {100 * up:.1f}% of steps, "
                  f"λ₁ fell between {100 * down:.0f}% of probes, λ₁ growth {slope:.4f} per step")

# %% mystnb={"figure": {"caption": "Learning-rate decay to η/4 once k eigenvalues are at the edge (vertical lines: decay steps). Top: sharpness λ₁ (grey: the main run at η); bottom: training loss.", "name": "fig-shallow-relu-decay"}}
if decays:
    acts = sorted({key[0] for key in decays})
    fig, axes = plt.subplots(2, len(acts), figsize=(6 * len(acts), 5.5), squeeze=False)
    for col, act in enumerate(acts):
        h, EDGE_C = cifar[act]["result"].history, cifar[act]["edge"]
        axes[0, col].plot(h.probe_step, h.sharpness, color="0.6", lw=0.8, label="main run (η)")
        axes[1, col].semilogy(h.step, h.loss, color="0.6", lw=0.6)
        for (a, k, off), dd in decays.items():
            if a != act:
                continue
            dh = dd["history"]
            pa, sa = dh.probe_step >= dd["step"], dh.step >= dd["step"]
            line, = axes[0, col].plot(dh.probe_step[pa], dh.sharpness[pa], lw=1, label=f"η/4 at step {dd['step']} (k = {k})")
            axes[1, col].semilogy(dh.step[sa], dh.loss[sa], lw=0.8, color=line.get_color())
            for ax in axes[:, col]:
                ax.axvline(dd["step"], color=line.get_color(), lw=0.6)
        axes[0, col].axhline(EDGE_C, color="k", ls="--", lw=1)
        axes[0, col].set(title=f"FC-{act}", ylabel="λ₁")
        axes[0, col].legend(fontsize=7)
        axes[1, col].set(xlabel="step", ylabel="½MSE")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 5. Depth (App. C, Fig. 7)
#
# FC-ReLU networks with 1, 2, … hidden layers of width 128 on the same images, all at the step size
# the rule picks for depth 1. Only λ₁ is tracked (`top_k = 1`).

# %%
depth_rows = []  # (depth, λ₁(θ₀), entry step, sharpening rate)
if P.cifar_n and P.depths and "relu" in cifar:
    cfg_depth = train.TrainConfig(steps=P.depth_steps, probe_every=P.cifar_probe_every, top_k=1, chunks=1)
    eta_depth = cifar["relu"]["eta"]
    t0 = time.time()
    depth_hist = {}
    for depth in P.depths:
        net_d = models.MLP(3072, (128,) * depth, 1, "relu", key=jax.random.key(P.seed + 3))
        hd = train.run(OBJECTIVE, MAKE_SGD, net_d, (x_c, y_c), cfg_depth, key=jax.random.key(P.seed + 9),
                       hparams={"eta": eta_depth}, progress=False).history
        depth_hist[depth] = hd
        s_d = hd.sharpness
        ent = edge_entries(hd.probe_step, s_d[:, None], 2 / eta_depth)[0][0]
        j = int(np.searchsorted(hd.probe_step, ent)) if np.isfinite(ent) else int(np.sum(np.isfinite(s_d))) - 1
        rate = (float((np.log(s_d[j]) - np.log(s_d[0])) / hd.probe_step[j])
                if j > 0 and s_d[0] > 0 and s_d[j] > 0 else float("nan"))
        depth_rows.append((depth, float(s_d[0]), float(ent), rate))
        print(f"depth {depth}: λ₁(θ₀) = {s_d[0]:.1f}, edge entry at step {ent:.0f}, sharpening rate {rate:.5f} per step"
              f"{'' if s_d[0] < (1 - EDGE_TOL) * 2 / eta_depth else ' (started at or above the edge)'}")
    time_depth = time.time() - t0
else:
    time_depth = 0.0
    print("depth grid not run (cifar_n = 0, depths = [] or no ReLU run)")
depth_rates = np.array([r[3] for r in depth_rows])
if depth_rates.size >= 2 and np.all(np.isfinite(depth_rates)):
    depth_verdict = ("reproduced" if np.all(np.diff(depth_rates) < 0)
                     else "partly reproduced" if depth_rates[-1] < depth_rates[0] else "not reproduced")
else:
    depth_verdict = "not tested"  # fewer than two depths measured: no evidence either way

# %% mystnb={"figure": {"caption": "App. C depth grid: sharpness λ₁ of FC-ReLU networks with 1, 2, … hidden layers of width 128 on the same images and step size; 2/η dashed.", "name": "fig-shallow-relu-depth"}}
if depth_rows:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for depth, hd in depth_hist.items():
        ax.plot(hd.probe_step, hd.sharpness, lw=1, label=f"{depth} hidden layer{'s' if depth > 1 else ''}")
    ax.axhline(2 / eta_depth, color="k", ls="--", lw=1)
    ax.set(xlabel="step", ylabel="λ₁")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Paper vs ours

# %%
def fmt(v, spec=".3g"):
    return format(v, spec) if np.isfinite(v) else "n/a"


order_verdict = ("reproduced" if order_ok and not ctrl_ok else "partly reproduced" if order_ok else "not reproduced")
claims = [
    Claim("thm3.1-phase-order", "λ₊ grows first while λ₋ stays small; then λ₋ grows",
          "Theorem 3.1 (phases 1–3; no simulation in the paper)",
          f"at λ₊'s 90% point λ₋ has done {100 * minus_done:.1f}% of its rise; balanced control "
          f"{100 * ctrl_minus_done:.1f}%", order_verdict,
          "rule: λ₋ ≤ 10% of its rise at λ₊'s 90% point, and the balanced-target control fails the same rule"),
    Claim("thm3.1-logistic-rates", "λ± rise logistically with different rates a₊(λ) ≠ a₋(λ)",
          "logistic lower bounds with rates a±(λ), not given",
          f"a₊ = {fmt(fit_p.rate, '.4f')}, a₋ = {fmt(fit_m.rate, '.4f')} per step (ratio "
          f"{fmt(fit_p.rate / fit_m.rate, '.2f')}); R² {fmt(fit_p.r2, '.4f')}, {fmt(fit_m.r2, '.4f')}",
          three_way(fits_good and rates_split, fits_good or rates_split),
          f"rule: both R² ≥ {R2_MIN} and |a₊/a₋ − 1| ≥ {RATE_SPLIT}; partly if one holds"),
    Claim("thm3.1-bounds", "phase-1/2 upper bounds and the logistic asymptotes n‖d±‖²/(4|S₁,±|) hold",
          "λ± ≤ 2|S₁,±|λ^{1−rε} (phase 1), λ₋ ≤ 2|S₁,₋|λ^ε (phase 2)",
          f"{sum(bounds)} of 4 hold; λ± start at {toy.lambda_plus[0]:.3f}, {toy.lambda_minus[0]:.3f} < 0; "
          f"phase-2 bound holds for ε ≤ {eps_star:.2f}; plateaus {fit_p.plateau:.3f}, {fit_m.plateau:.3f} vs "
          f"asymptotes {asym_p:.3f}, {asym_m:.3f}",
          three_way(all(bounds), any(bounds)),
          "rule: rε = 0 in phase 1, ε = ½ in phase 2, fitted plateaus ≥ asymptotes; weak evidence: the upper "
          "bounds are one-sided and λ± are negative (≈ −‖d±‖) in phase 1, the asymptotes are loose"),
    Claim("thm3.1-rate-prediction (extension)", "a± ≈ 2η‖d±‖ (our derivation from gradient flow, not the paper's)",
          "no formula for a±(λ) in the paper",
          f"a₊/(2η‖d₊‖) = {fmt(fit_p.rate / pred_p, '.3f')}, a₋/(2η‖d₋‖) = {fmt(fit_m.rate / pred_m, '.3f')}",
          "reproduced" if pred_ok else "not reproduced", f"rule: both within {int(100 * PRED_TOL)}%"),
    Claim("thm3.1-sweep-phases", "the phase separation holds across λ and n and widens as λ shrinks",
          "the theorem assumes λ small (no threshold given)",
          f"phase order in {100 * sweep_fraction:.0f}% of {len(sweep_rows)} members; median gap monotone in λ "
          f"for every n: {gap_monotone}",
          three_way(sweep_pass, sweep_fraction >= SWEEP_FRACTION or gap_monotone),
          f"rule: phase order in ≥ {int(100 * SWEEP_FRACTION)}% of members and gap τ₋ − τ₊ increasing as λ "
          "decreases for each n; partly if one holds"),
    Claim("lemma2.1-identity", "the balance changes by exactly η²(‖dⱼ‖²aⱼ² − ⟨dⱼ,wⱼ⟩²)",
          "Lemma 2.1 (Eq. 2)", f"max error {identity_err:.1e} (float64)",
          "holds" if identity_err <= IDENTITY_TOL else "fails",
          "holds by algebra; not evidence for the paper's claims", kind="consistency"),
    Claim("lemma2.1-phase1-balance", "in phase 1 the neurons stay balanced: ‖wⱼ‖ − |aⱼ| ≤ Bλ, B < 1",
          "App. A.1 (Lemma A.1)", f"√max(‖wⱼ‖² − aⱼ²) over phase 1 = {phase1_balance:.2g} = "
          f"{phase1_balance / lam:.2f} λ", "reproduced" if balance_ok else "not reproduced",
          "rule: √max imbalance < λ over phase 1"),
]
for act in ("relu", "tanh"):
    if act in cifar:
        c = cifar[act]
        reached = np.isfinite(c["entry"])
        r = c["rates"][np.isfinite(c["rates"])]
        cv = float(np.std(r) / abs(np.mean(r))) if r.size >= 2 else float("nan")
        claims.append(Claim(
            f"edge-one-by-one-{act}", "the top eigenvalues reach 2/η one by one, at distinct rates",
            f"FC-{act}, 5,000 images, top 20: all follow λ₁ to 2/η (Figs. 1, 2, 4; no numbers)",
            f"η = 2/{c['edge']:g} (λ₁(θ₀) = {c['s0']:.0f}): {int(reached.sum())} of top {P.top_k} reached 0.95·2/η at steps "
            f"{[int(v) for v in c['entry'][reached]]}; rate CV {fmt(cv, '.2f')} ({len(ds)} images)",
            c["verdict"], "rule: ≥ 2 reach it at distinct probes with rate CV ≥ 0.1; partly if only λ₁ does"))
    else:
        claims.append(Claim(f"edge-one-by-one-{act}", "the top eigenvalues reach 2/η one by one",
                            "Figs. 1, 2, 4", "not run (cifar_n = 0, or no step size starts below the edge)",
                            "not tested", "not run: no evidence"))
decay_slopes = {act: [d["slope"] for key, d in decays.items() if key[0] == act] for act in cifar}
decay_cvs = [float(np.std(v) / abs(np.mean(v))) if len(v) >= 2 else float("nan") for v in decay_slopes.values()]
per_run_ok = bool(decays) and all(d["ok"] for d in decays.values())
cv_ok = bool(decay_cvs) and all(np.isfinite(v) and v <= DECAY_CV_MAX for v in decay_cvs)
claims.append(Claim(
    "decay-eta-over-4", "after η → η/4 at the edge: no oscillation, monotone sharpening and loss; "
    "growth rate relatively constant across decay steps",
    "Figs. 3, 5 (no numbers)",
    (f"{len(decays)} decay runs; loss rose on ≤ {100 * max(d['loss_up'] for d in decays.values()):.1f}% of steps; "
     f"λ₁ fell between ≤ {100 * max(d['sharp_down'] for d in decays.values()):.0f}% of probes; growth-rate CV "
     + ", ".join(f"{a} {fmt(v, '.2f')}" for a, v in zip(decay_slopes, decay_cvs))) if decays else "not run",
    ("reproduced" if per_run_ok and cv_ok else ("partly reproduced" if per_run_ok else "not reproduced"))
    if decays else "not tested",
    f"rule: loss up ≤ {int(100 * LOSS_UP_MAX)}% of steps and λ₁ down ≤ {int(100 * SHARP_DOWN_MAX)}% of probes in "
    f"every decay run; growth-rate CV ≤ {DECAY_CV_MAX} across decay steps; partly if only the per-run rules hold"))
claims.append(Claim(
    "appendix-c-depth", "the deeper the network, the more gradual the sharpening", "Fig. 7 (no numbers)",
    ("rates " + ", ".join(f"depth {d}: {fmt(r, '.4f')}" for d, _, _, r in depth_rows) + " per step; entries "
     + ", ".join(f"{fmt(e, '.0f')}" for _, _, e, _ in depth_rows)) if depth_rows else "not run",
    depth_verdict, "rule: sharpening rate strictly decreasing with depth; partly if deepest < shallowest only"))
claims.append(Claim("appendix-c-grid", "shallower nets reach the edge earlier and stay longer; width, activation "
                    "and loss variations", "Figs. 6, 8, 9 (no numbers)", "not run",
                    "not tested", "not run in this chapter: no evidence either way"))
display(claims_table(claims))

# %% [markdown]
# ## Verdict

# %% tags=["remove-input"]
lines = [f"Verdicts at `{scale}` scale, by the rules declared above:", ""]
lines += [f"- **{c.id}**: {c.verdict} — {c.ours}." for c in claims]
sep = "shows no separation" if not ctrl_ok else "separates as well"
lines += ["", f"In the theorem's own setting λ₊ rises with midpoint step {fit_p.midpoint:.0f} and λ₋ with midpoint "
          f"{fit_m.midpoint:.0f}, at rates {fit_p.rate:.4f} and {fit_m.rate:.4f} per step, i.e. "
          f"{fit_p.rate / pred_p:.2f} and {fit_m.rate / pred_m:.2f} times 2η‖d±‖. With balanced targets the same "
          f"network {sep} (λ₋ {100 * ctrl_minus_done:.0f}% done at λ₊'s 90% point)."]
if toy.lambda_plus[0] < 0 and toy.lambda_minus[0] < 0:
    lines.append(f"The phase-1 upper bounds are one-sided and λ± start negative ({toy.lambda_plus[0]:.3f}, "
                 f"{toy.lambda_minus[0]:.3f}; −‖d±‖ = {-d_plus:.3f}, {-d_minus:.3f}: v± start as saddle directions), "
                 "so those bounds hold without constraining the dynamics.")
lines.append(f"The fitted plateaus are {fit_p.plateau / asym_p:.1f} and {fit_m.plateau / asym_m:.1f} times the "
             "theorem's asymptotes n‖d±‖²/(4|S₁,±|).")
by_scale = {sc: float(np.mean(sweep_ok[sweep_arr[:, 1] == sc])) for sc in sorted(P.sweep_scales, reverse=True)
            if np.any(sweep_arr[:, 1] == sc)}
lines.append("Phase order in the sweep, by λ: " + ", ".join(f"λ = {sc:g}: {100 * v:.0f}%" for sc, v in by_scale.items())
             + ".")
if cifar:
    n_edge = {a: int(np.isfinite(c["entry"]).sum()) for a, c in cifar.items()}
    lines += ["", f"On CIFAR-10 ({len(ds)} images, two classes, {P.cifar_steps} steps), "
              + "; ".join(f"FC-{a} at η = 2/{cifar[a]['edge']:g}: {n} of the top {P.top_k} eigenvalues reached the edge"
                          for a, n in n_edge.items())
              + "."]
    short = [a for a, n in n_edge.items() if n < 2]
    if short:
        lines.append("Where fewer than two eigenvalues reached the edge (" + ", ".join(f"FC-{a}" for a in short)
                     + "), the final training losses were " + ", ".join(
                         f"{cifar[a]['result'].history.loss[-1]:.1e}" for a in short)
                     + ": the first suspect is the scale-down, since a small two-class subset can be fitted "
                     "before the lower eigenvalues have sharpened to 2/η. The paper's 5,000 images trained to 99% "
                     "accuracy are the `paper` scale.")
if depth_rows:
    lines.append("Depth grid (App. C): " + "; ".join(
        f"depth {d}: λ₁ from {s0_:.1f} to {np.nanmax(depth_hist[d].sharpness):.1f}, "
        + (f"edge at step {e:.0f}" if np.isfinite(e) else "edge not reached") for d, s0_, e, _ in depth_rows)
        + ". The rule compares the relative (log) sharpening rates; the absolute levels are a different reading "
        "of 'more gradual', shown here but not scored.")
display(Markdown("\n".join(lines)))

# %% tags=["hide-input"]
relu = cifar.get("relu")
metrics = {
    "lambda_plus_rate": fit_p.rate,
    "lambda_minus_rate": fit_m.rate,
    "lambda_plus_rate_predicted": pred_p,
    "lambda_minus_rate_predicted": pred_m,
    "lambda_plus_midpoint": fit_p.midpoint,
    "lambda_minus_midpoint": fit_m.midpoint,
    "lambda_plus_r2": fit_p.r2,
    "lambda_minus_r2": fit_m.r2,
    "lambda_plus_plateau": fit_p.plateau,
    "lambda_minus_plateau": fit_m.plateau,
    "phase_order_ok": bool(order_ok),
    "phase_order_control_ok": bool(ctrl_ok),
    "lambda_minus_done_at_plus_90": minus_done,
    "S1_plus": int(s_plus.sum()),
    "S1_minus": int(s_minus.sum()),
    "phase2_epsilon_max": eps_star,
    "balance_identity_max_error": identity_err,
    "phase1_sqrt_max_imbalance_over_lambda": phase1_balance / lam,
    "sweep_phase_order_fraction": sweep_fraction,
    "sweep_gap_monotone": bool(gap_monotone),
    "sweep_median_gaps": [gap_table[n] for n in P.sweep_ns],  # per n (sweep_ns), λ descending
    "n_eigs_at_edge": int(np.isfinite(relu["entry"]).sum()) if relu else float("nan"),
    "edge_entry_steps": [float(v) for v in relu["entry"]] if relu else float("nan"),
    "edge_growth_rates": [float(v) for v in relu["rates"]] if relu else float("nan"),
    "n_eigs_at_edge_tanh": int(np.isfinite(cifar["tanh"]["entry"]).sum()) if "tanh" in cifar else float("nan"),
    "edge_entry_steps_tanh": [float(v) for v in cifar["tanh"]["entry"]] if "tanh" in cifar else float("nan"),
    # one entry per decay run, in the order of post_decay_runs ([activation is tanh, k, decay step])
    "post_decay_growth_rate": [d["slope"] for d in decays.values()] if decays else float("nan"),
    "post_decay_runs": [[int(a == "tanh"), k, d["step"]] for (a, k, off), d in decays.items()] if decays else float("nan"),
    "post_decay_loss_up_fraction": [d["loss_up"] for d in decays.values()] if decays else float("nan"),
    "post_decay_sharpness_down_fraction": [d["sharp_down"] for d in decays.values()] if decays else float("nan"),
    "median_warm_hvps_per_probe": (float(np.median(relu["result"].history.matvecs[1:])) if relu else float("nan")),
    "time_toy_s": time_toy,
    "time_sweep_s": time_sweep,
    "time_cifar_s": [c["time"] for c in cifar.values()],
    "depth_sharpening_rates": [r[3] for r in depth_rows] if depth_rows else float("nan"),
    "depth_edge_entry_steps": [r[2] for r in depth_rows] if depth_rows else float("nan"),
    "time_depth_s": time_depth,
}
record = make_record("shallow-relu", scale, P.as_dict(), claims, metrics,
                     provenance(start_time, **({"data_source": ds.source, "n_train": len(ds)} if cifar else {})))
print("record written to", write_record(record, results_dir))
