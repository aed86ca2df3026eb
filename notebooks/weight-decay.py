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
# # Does weight decay stabilise training? A phase transition below 2/η
#
# **Claim** ({cite:t}`kolic2026weightdecay`). Coupled weight decay $\gamma$ slows progressive
# sharpening. In CNNs it *damps* the oscillations of the sharpness at the edge of stability; in
# MLPs, past a critical $\gamma$, the sharpness stops rising and settles well *below* the edge
# $2/\eta - \gamma$ (paper: ReLU MLP, $\eta = \gamma = 0.02$, sharpness ≈ 80 against
# $2/\eta = 100$). The driver is the alignment of the parameters with the sharpness gradient.
#
# Our copy of the paper is a summary with figure captions, so the framework below is **our
# derivation**, built on the local model of {cite:t}`damian2023selfstabilization`; where the paper's
# definitions may differ we say so. No public code exists for this paper.
#
# ## The framework (our reconstruction)
#
# Let $S(\theta)$ be the top Hessian eigenvalue of the loss $L$ *without* the decay term, $u$ its
# eigenvector, and train $L(\theta) + \tfrac{\gamma}{2}\|\theta\|^2$ by full-batch GD. Measure the
# displacement $x_t$ along $u$ and $y_t = S - 2/\eta$. A third-order expansion gives
#
# $$x_{t+1} = -\bigl(1 + \eta(y_t + \gamma)\bigr)\,x_t, \qquad
#   y_{t+1} = y_t + \eta\bigl(\alpha - \gamma\,c_y - \tfrac{\beta}{2} x_t^2\bigr),$$
#
# with $\alpha = -\nabla L\cdot\nabla S$ (sharpening rate), $\beta = \|\nabla S\|^2$ and the
# **alignment** $c_y = \langle \theta, \nabla S\rangle$: the decay step $-\eta\gamma\theta$ moves the
# sharpness by $-\eta\gamma c_y$. Three consequences:
#
# 1. the oscillation along $u$ is neutral at $y = -\gamma$: the edge moves to $2/\eta - \gamma$;
# 2. if $c_y$ grows with $S$, the decay term is a restoring force on $y$: the cycles are damped;
#    the linearised map damps at $\tfrac{\eta}{2}(\gamma\,\partial c_y/\partial S - \eta\beta x_*^2)$
#    per step — the second term is the discrete map's own anti-damping;
# 3. sharpening stops *without* an instability once $c_y \ge c_y^{\text{crit}} = \alpha/\gamma$. If
#    that happens while $S < 2/\eta - \gamma$, the sharpness settles below the edge: the phase
#    transition. $c_y^{\text{crit}} \propto 1/\gamma$, as in the paper's Figs. 13–14.
#
# The model and its toy live in {mod}`eoslib.mechanisms.edge_model`; $c_y$, $\alpha$, $\beta$ are measured
# inside the training loop by {func}`eoslib.engine.probes.alignment`.
#
# ## Setup
#
# | | paper | `book` scale (2-core CPU) | `paper` scale (GPU) |
# |---|---|---|---|
# | data | CIFAR-10, 5,000 images | first 500 (class-balanced) | 5,000 |
# | MLP | ReLU MLP (width not in our copy) | `fc-relu` 3072-200-200-10 | same |
# | MLP run | GD, ½MSE, $\eta = 0.02$, $\gamma$ grid, up to 14,000 steps, 5 seeds | $\eta = 0.02$, 4 $\gamma$, 3,000 steps, 2 seeds, probes every 150 steps | 9 $\gamma$, 8,000 steps, 5 seeds, probes every 50 |
# | CNN | ReLU CNN, $\eta = 0.01$, $\gamma \in \{0, 0.01\}$ | see the CNN section | Cohen et al.'s `cnn-relu`, 5,000 images |
# | toy | "toy loss model", $\eta = 0.01$, $\gamma = 0.1$ | our two-parameter realisation of the model | same |
#
# What is scaled down at `book` scale is in the table; the `paper` scale runs on a GPU and, when its
# stored results are present, they are drawn beside ours.

# %% tags=["hide-input"]
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from IPython.display import display

from eoslib.engine import data, losses, models, optim, probes, train
from eoslib.mechanisms import edge_model
from eoslib.book.display import claims_table, use_book_style
from eoslib.book.scales import settings
from eoslib.book.results import Claim, find_repo_root, make_record, provenance, write_record

use_book_style()
start_time = time.time()

# %% tags=["parameters"]
scale = os.environ.get("EOSLIB_SCALE", "book")  # smoke | book | paper
eta = None  # GD step size of the MLP runs (claims 1 and 4 to 7)
gammas = None  # coupled weight decays of the MLP sweep (claims 1 and 4)
gamma = None  # the phase-transition weight decay (seeds, alignment, NTK, intervention)
arch = None  # the MLP: fc-relu, fc-tanh or fc-elu (any CIFAR-10 architecture of eoslib.engine.models.NAMES runs)
n_train = None  # first n CIFAR-10 training images of the MLP runs
steps = None  # GD steps of the MLP runs
probe_every = None  # steps between curvature probes
seeds = None  # initialisation seeds of the phase-transition run (the first also seeds the sweep)
cnn_eta = None  # GD step size of the CNN runs (claim 3)
cnn_gammas = None  # weight decays of the CNN runs (claim 3)
cnn_n_train = None  # first n CIFAR-10 images of the CNN runs
cnn_steps = None  # GD steps of the CNN runs (0 skips the CNN here)
toy_eta = None  # step size of the toy model (claim 2)
toy_gammas = None  # weight decays of the toy model
toy_steps = None  # GD steps of the toy model
intervention_every = None  # steps between refreshes of the direction the decay is projected off
results_dir = None  # where the results record goes (default: the book's _build/records)

# %%
RANGES = {"eta": "float > 0", "gammas": "list[float >= 0], contains 0", "gamma": "float > 0",
          "arch": "cifar10-model", "n_train": "int in [1, 50000]", "steps": "int >= 1, multiple of probe_every",
          "probe_every": "int >= 1", "seeds": "list[int >= 0], non-empty", "cnn_eta": "float > 0",
          "cnn_gammas": "list[float >= 0], contains 0", "cnn_n_train": "int in [0, 50000]",
          "cnn_steps": "int >= 0, multiple of probe_every", "toy_eta": "float > 0",
          "toy_gammas": "list[float >= 0], contains 0", "toy_steps": "int >= 100", "intervention_every": "int >= 1"}
SCALES = {
    "smoke": {"eta": 0.02, "gammas": [0.0, 0.02], "gamma": 0.02, "arch": "fc-relu", "n_train": 100,
              "steps": 60, "probe_every": 20, "seeds": [0, 1], "cnn_eta": 0.01, "cnn_gammas": [0.0, 0.01],
              "cnn_n_train": 0, "cnn_steps": 0, "toy_eta": 0.01, "toy_gammas": [0.0, 0.05, 0.1, 0.15],
              "toy_steps": 2000, "intervention_every": 5},
    "book": {"eta": 0.02, "gammas": [0.0, 0.01, 0.02, 0.05], "gamma": 0.02, "arch": "fc-relu",
             "n_train": 500, "steps": 3000, "probe_every": 150, "seeds": [0, 1], "cnn_eta": 0.01,
             "cnn_gammas": [0.0, 0.01], "cnn_n_train": 0, "cnn_steps": 0, "toy_eta": 0.01,
             "toy_gammas": [0.0, 0.05, 0.1, 0.15], "toy_steps": 30000, "intervention_every": 5},
    "paper": {"eta": 0.02, "gammas": [0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05],
              "gamma": 0.02, "arch": "fc-relu", "n_train": 5000, "steps": 8000, "probe_every": 50,
              "seeds": [0, 1, 2, 3, 4], "cnn_eta": 0.01, "cnn_gammas": [0.0, 0.01], "cnn_n_train": 5000,
              "cnn_steps": 6000, "toy_eta": 0.01, "toy_gammas": [0.0, 0.05, 0.1, 0.15], "toy_steps": 30000,
              "intervention_every": 1},
}
P = settings(SCALES, scale, RANGES, eta=eta, gammas=gammas, gamma=gamma, arch=arch, n_train=n_train, steps=steps,
             probe_every=probe_every, seeds=seeds, cnn_eta=cnn_eta, cnn_gammas=cnn_gammas,
             cnn_n_train=cnn_n_train, cnn_steps=cnn_steps, toy_eta=toy_eta, toy_gammas=toy_gammas,
             toy_steps=toy_steps, intervention_every=intervention_every)
P.as_dict()

# %% [markdown]
# ## 1. The toy model: threshold shift, damping, and the transition
#
# The smallest loss that realises the model exactly is $L(x, z) = \tfrac12(s_0 + z)x^2 - \alpha z - d\,x$
# ({class}`eoslib.mechanisms.edge_model.SharpeningToy`): at $x = 0$ its sharpness is $s_0 + z$, $\nabla S = (0, 1)$,
# $\beta = 1$ and $c_y = z$ grows one-for-one with $S$; GD sharpens it at the constant rate $\eta\alpha$
# forever, unless something stops it. A small drive $d$ keeps $x$ off zero below the edge, as the
# gradient's component along $u$ does in a network. We take $\eta = 0.01$ as the paper does and
# $s_0 = 100$, $\alpha = 12$, $d = 0.01$ (our choice: the paper's toy constants are not in our copy),
# which puts the paper's $\gamma = 0.1$ in the damped regime. The model predicts, for these constants,
#
# - the edge at $2/\eta - \gamma$ (a shift of exactly $-\gamma$);
# - damping when $\gamma > 2\eta\alpha/(1 + 2\eta(2/\eta - s_0)) = 0.08$, a limit cycle below;
# - the transition when $s_0 + \alpha/\gamma < 2/\eta - \gamma$, i.e. $\gamma > 0.121$: the
#   sharpness stops at $s_0 + \alpha/\gamma$ with no oscillation at all.

# %%
toy = edge_model.SharpeningToy(s0=100.0, alpha=12.0, drive=0.01)
toy_edge = 2 / P.toy_eta
with jax.enable_x64(True):  # thresholds are read to 1e-4 of 2/η: float64
    toy_g = jnp.asarray(P.toy_gammas, jnp.float64)
    toy_runs = jax.vmap(lambda g: toy.gd(jnp.array([1e-3, 0.0]), eta=P.toy_eta, gamma=g, steps=P.toy_steps))(toy_g)
    # one step of the (x, y) model from every state GD visited (the orbit itself is chaotic for
    # small γ, so whole trajectories separate at round-off; the one-step map must agree)
    x_t, y_t = toy_runs.theta[..., 0], toy.projected_sharpness(toy_runs.theta) - toy_edge
    one_step = jax.vmap(jax.vmap(lambda x0, y0, g: edge_model.xy_recursion(
        x0, y0, eta=P.toy_eta, alpha=toy.alpha, beta=1.0, steps=1, gamma=g, cy_edge=toy_edge - toy.s0,
        cy_slope=1.0, drive=toy.drive), in_axes=(0, 0, None)))(x_t[:, :-1], y_t[:, :-1], toy_g)
    model_gap = float(jnp.nanmax(jnp.abs(one_step.y[..., 1] - y_t[:, 1:])))
    toy_S = np.asarray(toy_runs.projected_sharpness)
    toy_lmax = np.asarray(toy_runs.sharpness)
    toy_x = np.asarray(toy_runs.theta[..., 0])
t_toy = np.arange(P.toy_steps + 1)
last_quarter = t_toy >= 3 * P.toy_steps // 4
toy_rows = []
for i, g in enumerate(P.toy_gammas):
    s_late = toy_S[i, last_quarter]
    predicted_rate = edge_model.predicted_damping_rate(P.toy_eta, g, alpha=toy.alpha, cy_edge=toy_edge - toy.s0,
                                                       cy_slope=1.0)
    window = max(P.toy_steps // 30, 10)
    env = edge_model.envelope_decay_rate(t_toy[t_toy >= P.toy_steps // 6], toy_S[i, t_toy >= P.toy_steps // 6], window)
    stop = toy.s0 + toy.alpha / g if g > 0 else np.inf
    toy_rows.append(dict(gamma=g, plateau=float(np.mean(s_late)), lmax_plateau=float(np.mean(toy_lmax[i, last_quarter])),
                         late_range=float(np.ptp(s_late)), predicted_edge=edge_model.predicted_threshold(P.toy_eta, g),
                         predicted_stop=stop, predicted_rate=predicted_rate, measured_rate=env.rate))
print(f"one step of the (x, y) model from each GD state matches GD's next state to {model_gap:.1e} in S")
print(" γ      plateau (s0+z)  λmax plateau  late range   2/η−γ    s0+α/γ   damping: predicted  measured")
for r in toy_rows:
    print(f"{r['gamma']:<6} {r['plateau']:14.4f} {r['lmax_plateau']:13.4f} {r['late_range']:10.4f} "
          f"{r['predicted_edge']:8.2f} {r['predicted_stop']:9.2f}   {r['predicted_rate']:+.2e}        {r['measured_rate']:+.2e}")

# %% mystnb={"figure": {"caption": "The toy model under coupled weight decay, $\\eta = 0.01$. Left: sharpness $s_0 + z$ of GD for each $\\gamma$; dashed: $2/\\eta$; dotted: $2/\\eta - \\gamma$. Middle: the oscillation $x_t$ along the unstable direction. Right: the $(x_t, y_t)$ phase portrait, spiralling in for the damped $\\gamma$, a closed cycle without enough decay, and no excursion at all past the transition.", "name": "fig-wd-toy"}}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
colors = plt.cm.viridis(np.linspace(0, 0.85, len(P.toy_gammas)))
for i, g in enumerate(P.toy_gammas):
    axes[0].plot(t_toy, toy_S[i], lw=0.7, color=colors[i], label=f"γ = {g}")
    axes[1].plot(t_toy, toy_x[i], lw=0.5, color=colors[i])
    axes[2].plot(toy_x[i, P.toy_steps // 10:], toy_S[i, P.toy_steps // 10:] - toy_edge, lw=0.4, color=colors[i])
    if g > 0:
        axes[0].axhline(toy_edge - g, color=colors[i], ls=":", lw=0.8)
axes[0].axhline(toy_edge, color="k", ls="--", lw=0.8)
axes[0].set(xlabel="step", ylabel="sharpness $s_0 + z$", ylim=(toy.s0, 1.15 * toy_edge))
axes[1].set(xlabel="step", ylabel="$x_t$")
axes[2].set(xlabel="$x_t$", ylabel="$y_t = S - 2/\\eta$")
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. MLP: a sweep over γ, seeds, alignment and the NTK, in one compiled call
#
# One `vmap`-ed run of {func}`eoslib.engine.train.run` trains every member: each $\gamma$ of the grid from
# the first seed, and the phase-transition $\gamma$ from each further seed. Every `probe_every`
# steps the loop measures the top Hessian eigenpair (warm-started Lanczos), then $\alpha$, $\beta$,
# $c_y$ and the NTK's top eigenvalue. The training objective includes $\tfrac{\gamma}{2}\|\theta\|^2$,
# so its Hessian is $H + \gamma I$; we report $S = \lambda_{\max}(H)$ by subtracting $\gamma$.

# %%
ds = data.load_cifar10(n=P.n_train)
gammas_mlp = [float(g) for g in P.gammas] + [float(P.gamma)] * (len(P.seeds) - 1)
member_seeds = [P.seeds[0]] * len(P.gammas) + list(P.seeds[1:])
init = lambda k: models.by_name(P.arch, key=k)
params0 = jax.vmap(init)(jnp.stack([jax.random.key(s) for s in member_seeds]))
config = train.TrainConfig(steps=P.steps, probe_every=P.probe_every, top_k=1)
objective = train.supervised("half_mse")  # ½‖f − y‖², mean over examples, + γ/2‖θ‖²
mlp = train.run(objective, lambda hp: optax.sgd(P.eta), params0, (ds.x, ds.onehot), config,
                key=jax.random.key(P.seeds[0] + 1000), hparams={"gamma": jnp.asarray(gammas_mlp)},
                batched_params=True, probe_fn=probes.combine(alignment=probes.alignment("half_mse"), ntk=probes.ntk_top(tol=1e-2)))
h = mlp.history
edge = 2 / P.eta
G = np.asarray(gammas_mlp)[:, None]
S_mlp = h.sharpness - G  # λmax(H) of L without the decay term
cy, alpha = h.extra.alignment.c_y, h.extra.alignment.alpha
ntk_top = h.extra.ntk.top_eigenvalue
tp = h.probe_step[0]
print(f"{P.arch} on {len(ds)} images ({ds.source}); {P.steps} steps of GD at η = {P.eta}; "
      f"{len(gammas_mlp)} members; diverged: {int(mlp.diverged.sum())}")

# %% [markdown]
# **Measurements.** The *plateau* is the mean of $S$ over the last quarter of a run, and its *late
# drift* the least-squares change of $S$ over that quarter as a fraction of $2/\eta$ (a plateau has
# settled when the drift is within ±5%). The *pre-edge
# window* is every probe before the $\gamma = 0$ run first reaches $0.95 \cdot 2/\eta$; progressive
# sharpening is compared on the mean of $S$ over it. The alignment *crossing* is the first probe at
# which $c_y \ge c_y^{\text{crit}} = \alpha/\gamma$ after one at which $c_y < c_y^{\text{crit}}$ (at
# initialisation $\alpha \approx 0$, so the inequality holds trivially before sharpening starts). Why $c_y$ grows with $S$ in an MLP: for a bias-free
# ReLU network of depth $L$ the Gauss–Newton part of the Hessian is homogeneous of degree $2L - 2$ in
# $\theta$, so Euler's theorem gives $\langle\theta, \nabla S\rangle \approx (2L-2)\,S$ — we print the
# measured ratio $c_y/S$ (biases and the residual term make it approximate).

# %%
late = tp >= min(3 * P.steps // 4, tp[-1])  # the last quarter (at least the last probe)
plateau = np.nanmean(np.where(late, S_mlp, np.nan), axis=1)
# has it settled? the least-squares change of S over the last quarter, as a fraction of 2/η
late_drift = np.array([np.polyfit(tp[late], S_mlp[i, late], 1)[0] * (tp[late][-1] - tp[late][0]) / edge
                       if late.sum() >= 3 and np.all(np.isfinite(S_mlp[i, late])) else np.nan
                       for i in range(len(gammas_mlp))])
grid = slice(0, len(P.gammas))
i0 = P.gammas.index(0.0)
i_star = next(i for i, g in enumerate(P.gammas) if np.isclose(g, P.gamma)) if any(np.isclose(g, P.gamma) for g in P.gammas) else None
seed_members = ([i_star] if i_star is not None else []) + list(range(len(P.gammas), len(gammas_mlp)))
reach0 = np.nonzero(S_mlp[i0] >= 0.95 * edge)[0]
pre_edge = tp < (tp[reach0[0]] if reach0.size else P.steps + 1)
pre_mean = np.array([np.mean(S_mlp[i, pre_edge]) if pre_edge.any() else np.nan for i in range(len(gammas_mlp))])


def first_index(mask):
    idx = np.nonzero(mask)[0]
    return int(idx[0]) if idx.size else None


def crossing_index(c_y, c_crit):
    """First probe at which c_y ≥ c_crit *after* a probe with c_y < c_crit (at initialisation α ≈ 0,
    so c_y ≥ α/γ trivially before sharpening has started; that is not a crossing). None if none."""
    below = first_index(c_y < c_crit)
    if below is None:
        return None
    later = first_index(c_y[below:] >= c_crit[below:])
    return None if later is None else below + later


def alignment_story(i):
    """Where c_y crosses α/γ, and where S first reaches 0.98 (2/η − γ) (probe indices or None)."""
    g = gammas_mlp[i]
    crossing = crossing_index(cy[i], alpha[i] / g) if g > 0 else None
    at_edge = first_index(S_mlp[i] >= 0.98 * (edge - g))
    return crossing, at_edge


ratio = cy / np.where(S_mlp > 0, S_mlp, np.nan)
print(f"c_y / S over all probes: median {np.nanmedian(ratio):.2f} (interquartile {np.nanpercentile(ratio, 25):.2f}–"
      f"{np.nanpercentile(ratio, 75):.2f}); a bias-free ReLU net of depth 3 would give ≈ 2·3 − 2 = 4 for the "
      "Gauss–Newton part")
print(" γ        seed  S(θ0)   pre-edge mean  plateau  plateau/(2/η−γ)  late drift  c_y crosses α/γ at  S reaches edge at")
for i, (g, s) in enumerate(zip(gammas_mlp, member_seeds)):
    c, e = alignment_story(i)
    print(f"{g:<8} {s:>4} {S_mlp[i, 0]:7.1f} {pre_mean[i]:13.1f} {plateau[i]:8.1f} {plateau[i] / (edge - g):12.3f} {late_drift[i]:+10.3f}"
          f"   {('step ' + str(int(tp[c]))) if c is not None else 'never':>17}  {('step ' + str(int(tp[e]))) if e is not None else 'never':>17}")

# %% [markdown]
# A paper-scale run (5,000 images, 8,000 steps, 9 $\gamma$, 5 seeds), computed on a GPU with
# `python -m eoslib run weight-decay --scale paper` and stored under `book/results/`, is shown
# beside ours when present.

# %%
root = find_repo_root() or Path.cwd()
stored_mlp = root / "book" / "results" / f"weight-decay-paper-{P.arch}"
if scale == "paper":
    train.save(stored_mlp, mlp, provenance(start_time, eta=P.eta, n_train=len(ds), gammas=gammas_mlp,
                                           seeds=member_seeds, data_source=ds.source))
paper_mlp = train.load(stored_mlp) if stored_mlp.with_suffix(".npz").exists() else None
if paper_mlp is not None:
    ph, pmeta = paper_mlp
    p_gam = np.asarray(pmeta["provenance"]["gammas"])
    p_eta = pmeta["provenance"]["eta"]
    p_S = ph.sharpness - p_gam[:, None]
    p_late = ph.probe_step[0] >= min(3 * ph.step.shape[1] // 4, ph.probe_step[0][-1])
    p_plateau = np.nanmean(np.where(p_late, p_S, np.nan), axis=1)
    p_seed_rows = np.nonzero(np.isclose(p_gam, P.gamma))[0]
    print(f"stored paper-scale run: {pmeta['provenance'].get('n_train')} images, {ph.step.shape[1]} steps, "
          f"device {pmeta['provenance'].get('device')}")
    for g, pl in zip(p_gam, p_plateau):
        print(f"  γ = {g:<7} plateau {pl:7.1f}  ({pl / (2 / p_eta - g):.3f} × (2/η − γ))")
else:
    print(f"no stored paper-scale run at {stored_mlp}.npz")

# %% mystnb={"figure": {"caption": "MLP, full-batch GD at $\\eta = 0.02$ on a CIFAR-10 subset. Left: sharpness $S = \\lambda_{\\max}(H)$ for each $\\gamma$ (first seed); dashed: $2/\\eta$. Middle: the plateau (mean $S$ over the last quarter) against $\\gamma$, every seed of the phase-transition $\\gamma$ as a dot; grey: the stored paper-scale run when present. Right: the normalised NTK top eigenvalue $\\lambda_{\\max}(JJ^\\top)/N$.", "name": "fig-wd-mlp"}}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
colors = plt.cm.viridis(np.linspace(0, 0.85, len(P.gammas)))
for i, g in enumerate(P.gammas):
    axes[0].plot(tp, S_mlp[i], lw=0.8, color=colors[i], label=f"γ = {g}")
    axes[2].plot(tp, ntk_top[i], lw=0.8, color=colors[i])
axes[0].axhline(edge, color="k", ls="--", lw=0.8)
axes[1].plot(P.gammas, plateau[grid], "o-", ms=4, label=f"ours ({len(ds)} images)")
axes[1].plot([P.gamma] * len(seed_members), plateau[seed_members], "k.", ms=5, label="seeds")
if paper_mlp is not None:
    order = np.argsort(p_gam)
    axes[1].plot(p_gam[order], p_plateau[order], "s-", color="0.6", ms=3, label="paper scale (stored)")
axes[1].plot(P.gammas, [edge - g for g in P.gammas], "k--", lw=0.8, label="$2/\\eta - \\gamma$")
axes[0].set(xlabel="step", ylabel="sharpness $S$", ylim=(0, 1.3 * edge))
axes[1].set(xlabel="weight decay $\\gamma$", ylabel="plateau of $S$", ylim=(0, 1.3 * edge))
axes[2].set(xlabel="step", ylabel="NTK $\\lambda_{\\max}/N$")
axes[0].legend(fontsize=7)
axes[1].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% mystnb={"figure": {"caption": "The alignment mechanism. Top: sharpness with $2/\\eta - \\gamma$ dashed. Bottom: $c_y = \\langle\\theta, \\nabla S\\rangle$ (solid) against $c_y^{\\mathrm{crit}} = \\alpha/\\gamma$ (dotted), for the smallest non-zero $\\gamma$ of the grid (left) and the phase-transition $\\gamma$ (right).", "name": "fig-wd-alignment"}}
small = next(i for i, g in enumerate(P.gammas) if g > 0)
panel = [small] + ([i_star] if i_star is not None and i_star != small else [])
fig, axes = plt.subplots(2, len(panel), figsize=(5 * len(panel), 4.6), squeeze=False, sharex=True)
for col, i in enumerate(panel):
    g = gammas_mlp[i]
    axes[0, col].plot(tp, S_mlp[i], lw=0.8)
    axes[0, col].axhline(edge - g, color="k", ls="--", lw=0.8)
    axes[0, col].set(title=f"γ = {g}", ylabel="sharpness $S$")
    axes[1, col].plot(tp, cy[i], lw=0.8, label="$c_y$")
    axes[1, col].plot(tp, alpha[i] / g, ":", lw=1.0, label="$c_y^{crit} = \\alpha/\\gamma$")
    axes[1, col].set(xlabel="step", ylabel="alignment", yscale="symlog")
    axes[1, col].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. CNN: damped oscillations at the edge
#
# The paper's CNN runs ({cite:t}`kolic2026weightdecay`, Figs. 2 right, 4, 12) use Cohen et al.'s
# `cnn-relu` on 5,000 images at $\eta = 0.01$. We measured why that is out of reach of the 2-core
# CPU: a CNN gradient on 250 images takes 0.44 s when jitted alone, but 3.1 s per step inside a
# compiled `lax.scan` (XLA's CPU convolutions are about 7× slower inside a loop; a fully unrolled
# loop is fast again, a partially unrolled one is not), and the Lanczos probes are loops too. A run
# that reaches and then oscillates at $2/\eta = 200$ needs thousands of steps, so the `book` scale does
# not run the CNN (`cnn_steps = 0`) and shows a stored paper-scale GPU run when one is present. The
# damping is measured as the decay rate of the
# envelope of $S$ after the run first reaches the edge ({func}`eoslib.mechanisms.edge_model.envelope_decay_rate`:
# half the peak-to-peak range in windows of 250 steps, log-linear fit).

# %%
def cnn_summary(step, probe_step, S_cnn, cy_cnn, alpha_cnn, cnn_gam, cnn_eta_):
    """Per γ: when S first reaches 2/η − γ, the envelope decay rate after it, the alignment crossing."""
    rows = []
    for i, g in enumerate(cnn_gam):
        e = 2 / cnn_eta_ - g
        reach = first_index(S_cnn[i] >= 0.98 * e)
        after = probe_step >= (probe_step[reach] if reach is not None else np.inf)
        env = (edge_model.envelope_decay_rate(probe_step[after], S_cnn[i, after], 250.0)
               if after.sum() >= 6 else None)
        cross = crossing_index(cy_cnn[i], alpha_cnn[i] / g) if g > 0 else None
        rows.append(dict(gamma=float(g), edge_step=int(probe_step[reach]) if reach is not None else -1,
                         rate=env.rate if env is not None else float("nan"),
                         r2=env.r2 if env is not None else float("nan"),
                         crossing_step=int(probe_step[cross]) if cross is not None else -1))
    return rows


stored_cnn = root / "book" / "results" / "weight-decay-paper-cnn-relu"
cnn_run, cnn_meta = None, None
if P.cnn_steps:
    cds = data.load_cifar10(n=P.cnn_n_train)
    cnn_params0 = models.by_name("cnn-relu", key=jax.random.key(P.seeds[0]))
    cnn_config = train.TrainConfig(steps=P.cnn_steps, probe_every=P.probe_every, top_k=1)
    cnn_result = train.run(objective, lambda hp: optax.sgd(P.cnn_eta), cnn_params0, (cds.x, cds.onehot), cnn_config,
                           key=jax.random.key(P.seeds[0] + 2000), hparams={"gamma": jnp.asarray(P.cnn_gammas, float)},
                           probe_fn=probes.alignment("half_mse"))
    cnn_meta = {"provenance": provenance(start_time, eta=P.cnn_eta, n_train=len(cds), gammas=list(P.cnn_gammas),
                                         data_source=cds.source)}
    cnn_run = cnn_result.history
    if scale == "paper":
        train.save(stored_cnn, cnn_result, cnn_meta["provenance"])
elif stored_cnn.with_suffix(".npz").exists():
    cnn_run, cnn_meta = train.load(stored_cnn)
cnn_rows = []
if cnn_run is not None:
    c_gam = np.asarray(cnn_meta["provenance"]["gammas"], float)
    c_eta = float(cnn_meta["provenance"]["eta"])
    c_tp = cnn_run.probe_step[0]
    c_S = cnn_run.sharpness - c_gam[:, None]
    cnn_rows = cnn_summary(cnn_run.step[0], c_tp, c_S, cnn_run.extra.c_y, cnn_run.extra.alpha, c_gam, c_eta)
    print(f"CNN run ({'this run' if P.cnn_steps else 'stored'}): {cnn_meta['provenance'].get('n_train')} images, "
          f"η = {c_eta}, device {cnn_meta['provenance'].get('device')}")
    for r in cnn_rows:
        print(f"  γ = {r['gamma']:<5} reaches 2/η − γ at step {r['edge_step']}; envelope decay rate {r['rate']:+.2e}/step "
              f"(R² {r['r2']:.2f}); c_y crosses α/γ at step {r['crossing_step']}")
else:
    print(f"no CNN run here (cnn_steps = 0) and no stored one at {stored_cnn}.npz")

# %% mystnb={"figure": {"caption": "CNN (`cnn-relu`), full-batch GD at $\\eta = 0.01$: sharpness without and with weight decay (stored paper-scale GPU run, or this run). Dashed: $2/\\eta$.", "name": "fig-wd-cnn"}}
fig, ax = plt.subplots(figsize=(6, 3.2))
if cnn_run is not None:
    for i, g in enumerate(c_gam):
        ax.plot(c_tp, c_S[i], lw=0.7, label=f"γ = {g}")
    ax.axhline(2 / c_eta, color="k", ls="--", lw=0.8)
    ax.legend(fontsize=8)
else:
    ax.text(0.5, 0.5, "no CNN run at this scale and none stored", ha="center", va="center", transform=ax.transAxes)
ax.set(xlabel="step", ylabel="sharpness $S$")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Beyond the paper: breaking the alignment
#
# The reviewers' open question: is the alignment the *cause* of the sub-edge plateau? We keep
# $\gamma$ and remove only the channel the model says matters: the decay step is projected off
# $\nabla S$ at every step ({func}`eoslib.engine.optim.decay_off_sharpness_gradient`: three warm-started power
# iterations for $u$, one gradient of an HVP for $\nabla S$), so it shrinks every direction except
# the one that lowers the sharpness (refreshed every `intervention_every` steps and held in between,
# to keep the CPU cost near that of a plain run). If the alignment drives the transition, this run should sharpen
# to the edge $2/\eta - \gamma$; if the plateau survives, something else holds the sharpness down.
# Same data, seed and $\eta$ as the plain run at the phase-transition $\gamma$.

# %%
half_mse = lambda p, batch: losses.half_mse(p(batch[0]), batch[1])
no_decay = train.supervised("half_mse")  # the decay is the optimizer's job here
intervened = train.run(no_decay,
                       lambda hp: optax.chain(optim.decay_off_sharpness_gradient(half_mse, hp["decay"], every=P.intervention_every), optax.sgd(P.eta)),
                       init(jax.random.key(P.seeds[0])), (ds.x, ds.onehot), config,
                       # named "decay", not "gamma": train.supervised adds γ/2‖θ‖² to the objective
                       # whenever hp has "gamma", which would decay θ twice
                       key=jax.random.key(P.seeds[0] + 1000), hparams={"decay": P.gamma})
hi = intervened.history
S_int = hi.sharpness  # the objective has no decay term: this is λmax(H) of L
plateau_int = float(np.nanmean(np.where(late, S_int, np.nan)))
plain_star = float(plateau[i_star]) if i_star is not None else float(np.mean(plateau[seed_members]))
print(f"γ = {P.gamma}: plateau with plain decay {plain_star:.1f}; with the decay projected off ∇S {plateau_int:.1f}; "
      f"2/η − γ = {edge - P.gamma:.2f}; diverged: {bool(intervened.diverged)}")

# %% mystnb={"figure": {"caption": "Breaking the alignment at fixed $\\gamma$: sharpness with plain coupled weight decay and with the decay step projected off $\\nabla S$ (same seed, data and $\\eta$), and without decay. Dashed: $2/\\eta - \\gamma$.", "name": "fig-wd-intervention"}}
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(tp, S_mlp[i0], lw=0.8, color="0.6", label="γ = 0")
if i_star is not None:
    ax.plot(tp, S_mlp[i_star], lw=0.8, label=f"γ = {P.gamma}, plain decay")
ax.plot(hi.probe_step, S_int, lw=0.8, label=f"γ = {P.gamma}, decay projected off ∇S")
ax.axhline(edge - P.gamma, color="k", ls="--", lw=0.8)
ax.set(xlabel="step", ylabel="sharpness $S$", ylim=(0, 1.3 * edge))
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Paper vs ours
#
# Each row's rule was fixed before the runs and is stated in its "why" column.

# %%
toy_main = next((r for r in toy_rows if np.isclose(r["gamma"], 0.1)), toy_rows[-1])
threshold_shift = toy_main["plateau"] - toy_edge
toy_damped = [r for r in toy_rows if r["gamma"] > 0 and r["predicted_rate"] > 0 and r["predicted_stop"] > r["predicted_edge"]]
toy_trans = [r for r in toy_rows if r["gamma"] > 0 and r["predicted_stop"] < r["predicted_edge"]]
toy_ok = (abs(threshold_shift + toy_main["gamma"]) <= 0.05 * toy_main["gamma"]
          and all(abs(r["measured_rate"] / r["predicted_rate"] - 1) <= 0.2 for r in toy_damped)
          and all(abs(r["plateau"] - r["predicted_stop"]) <= 0.01 * r["predicted_stop"] for r in toy_trans))

monotone = bool(np.all(np.diff(pre_mean[grid][np.argsort(P.gammas)]) < 0)) if pre_edge.any() else False
seed_plateaus = plateau[seed_members]
settled = bool(np.all(np.abs(late_drift[seed_members]) <= 0.05))
transition = bool(np.all(seed_plateaus <= 0.9 * (edge - P.gamma)) and settled)
some_transition = bool(np.any(seed_plateaus <= 0.9 * (edge - P.gamma)))
baseline_at_edge = bool(abs(plateau[i0] / edge - 1) <= 0.1)

c_small, e_small = alignment_story(small)
small_ok = c_small is None or (e_small is not None and c_small >= e_small)
if i_star is not None:
    c_star, e_star = alignment_story(i_star)
    star_ok = c_star is not None and (e_star is None or c_star < e_star)
else:
    star_ok = False
cnn_align_ok = all(r["crossing_step"] < 0 or (r["edge_step"] >= 0 and r["crossing_step"] >= r["edge_step"])
                   for r in cnn_rows if r["gamma"] > 0)

ntk_spread = lambda i: float(np.ptp(ntk_top[i, late]) / np.mean(ntk_top[i, late]))
ntk_star = ntk_spread(i_star) if i_star is not None else float("nan")
ntk_zero = ntk_spread(i0)
ntk_ok = bool(ntk_star <= 0.1 and ntk_star < ntk_zero)

cnn_rate = {r["gamma"]: r["rate"] for r in cnn_rows}
cnn_decay = next((r for r in cnn_rows if r["gamma"] > 0), None)
cnn_ok = bool(cnn_decay is not None and cnn_decay["rate"] > 0 and cnn_decay["rate"] > cnn_rate.get(0.0, np.inf))
intervention_reaches = bool(abs(plateau_int / (edge - P.gamma) - 1) <= 0.1)

claims = [
    Claim("slows-sharpening",
          "weight decay slows progressive sharpening",
          "sharpness rises more slowly for larger γ (Fig. 1)",
          "mean S before the γ = 0 run reaches the edge: " + ", ".join(f"γ={g}: {m:.1f}" for g, m in zip(P.gammas, pre_mean[grid])),
          "reproduced" if monotone else "not reproduced",
          "strictly decreasing in γ over the pre-edge window" if monotone else
          "not strictly decreasing in γ over the pre-edge window (or the γ = 0 run never got near the edge)"),
    Claim("toy-threshold-and-damping",
          "in the toy model the threshold shifts to 2/η − γ and the oscillations are damped",
          "γ = 0.1 shifts the threshold by −0.1 and damps the cycles (Figs. 2 left, 5)",
          f"shift {threshold_shift:+.4f} at γ = {toy_main['gamma']}; damping rates "
          + ", ".join(f"γ={r['gamma']}: {r['measured_rate']:.2e} (model {r['predicted_rate']:.2e})" for r in toy_damped)
          + "; transition plateaus " + ", ".join(f"γ={r['gamma']}: {r['plateau']:.1f} (model {r['predicted_stop']:.1f})" for r in toy_trans),
          "reproduced" if toy_ok else "not reproduced",
          "in our reconstruction of the toy: shift within 5% of −γ, damping rates within 20% of the linearised "
          "model, transition plateaus within 1% of s0 + α/γ" if toy_ok else
          "the toy's shift, damping or transition departs from the model beyond the stated tolerances"),
    Claim("cnn-damping",
          "in a CNN, weight decay damps the sharpness oscillations at the edge like a damped oscillator",
          "γ = 0.01, η = 0.01, CIFAR-10 5k: damped oscillation (Fig. 2 right); no rate given",
          ("envelope decay rates " + ", ".join(f"γ={r['gamma']}: {r['rate']:+.1e}/step" for r in cnn_rows))
          if cnn_rows else "not run at this scale; no stored run",
          ("reproduced" if cnn_ok else ("partly reproduced" if cnn_decay is not None and cnn_decay["rate"] > 0
                                         else "not reproduced")) if cnn_rows else "not tested",
          ("the envelope decays with γ > 0 and faster than without" if cnn_ok else
           "the envelope with γ > 0 does not decay faster than without decay") if cnn_rows else
          "the CNN is not run on the CPU at this scale (cost) and no paper-scale run is stored"),
    Claim("mlp-phase-transition",
          "past a critical γ the MLP's sharpness settles well below 2/η − γ, consistently over seeds",
          "ReLU MLP, η = γ = 0.02: plateau ≈ 80 vs 2/η = 100, over 5 seeds (Figs. 9, 11, 16)",
          f"γ = {P.gamma}: plateaus " + ", ".join(f"{v:.1f}" for v in seed_plateaus) + f" over {len(seed_members)} seeds "
          f"(late drift " + ", ".join(f"{100 * d:+.0f}%" for d in late_drift[seed_members]) + ") "
          f"vs 2/η − γ = {edge - P.gamma:.2f}; γ = 0 plateau {plateau[i0]:.1f}"
          + (f"; paper scale: " + ", ".join(f"{v:.1f}" for v in p_plateau[p_seed_rows]) if paper_mlp is not None else ""),
          ("reproduced" if transition else "partly reproduced" if some_transition else "not reproduced")
          if baseline_at_edge else "not reproduced",
          ("every seed's plateau ≤ 0.9 (2/η − γ) and settled (drift within ±5% of 2/η) while γ = 0 sits within "
           "10% of 2/η" if transition else
           "plateaus ≤ 0.9 (2/η − γ) " + ("but not every seed's has settled (drift beyond ±5%)" if not settled
                                           else "for only some seeds") if some_transition else
           "no seed's plateau is below 0.9 (2/η − γ): the decayed runs reach the edge too")
          if baseline_at_edge else "the γ = 0 run did not settle within 10% of 2/η in the steps run, so a low plateau "
          "with decay cannot be told from slower sharpening"),
    Claim("alignment-mechanism",
          "c_y = ⟨θ, ∇S⟩ crosses c_y^crit ∝ 1/γ before S reaches 2/η − γ for the MLP at large γ, not at small γ, "
          "and not for the CNN",
          "Figs. 7, 13 (MLP), 14 (CNN)",
          f"γ = {gammas_mlp[small]}: crossing {'never' if c_small is None else 'step ' + str(int(tp[c_small]))}, "
          f"edge {'never' if e_small is None else 'step ' + str(int(tp[e_small]))}; "
          + (f"γ = {P.gamma}: crossing {'never' if c_star is None else 'step ' + str(int(tp[c_star]))}, "
             f"edge {'never' if e_star is None else 'step ' + str(int(tp[e_star]))}" if i_star is not None else "")
          + (f"; CNN crossings " + ", ".join(str(r['crossing_step']) for r in cnn_rows if r['gamma'] > 0) if cnn_rows else ""),
          "reproduced" if small_ok and star_ok and cnn_align_ok else ("partly reproduced" if star_ok or small_ok else "not reproduced"),
          "large γ crosses first, small γ reaches the edge first" + ("" if cnn_rows else " (CNN not available here)")
          if small_ok and star_ok and cnn_align_ok else "the ordering of crossing and edge differs from the paper's for "
          + ", ".join(n for n, ok in (("small γ", small_ok), ("large γ", star_ok), ("the CNN", cnn_align_ok)) if not ok)),
    Claim("ntk-stabilises",
          "under weight decay the NTK's top eigenvalue stabilises",
          "normalised NTK top eigenvalue converges (Figs. 8, 15; normalisation not in our copy)",
          f"last-quarter spread (max − min)/mean: γ = {P.gamma}: {ntk_star:.3f}; γ = 0: {ntk_zero:.3f}",
          "reproduced" if ntk_ok else "not reproduced",
          "spread ≤ 10% and below the γ = 0 run's" if ntk_ok else "the spread is above 10% or not below the γ = 0 run's"),
    Claim("alignment-intervention",
          "(beyond the paper) removing the decay's component along ∇S removes the sub-edge plateau",
          "open question of the reviewers; the paper's mechanism predicts yes",
          f"γ = {P.gamma}: plain plateau {plain_star:.1f}, projected-decay plateau {plateau_int:.1f}, "
          f"2/η − γ = {edge - P.gamma:.2f}",
          "reproduced" if (intervention_reaches and transition and baseline_at_edge) else "not reproduced",
          ("with the channel removed the run sharpens to the edge: the alignment carries the plateau" if intervention_reaches
           else "the plateau survives without the alignment channel: something else holds S down")
          if transition and baseline_at_edge else
          "untested: the plain run showed no sub-edge plateau against a γ = 0 run at the edge"),
]
display(claims_table(claims))

# %% [markdown]
# ## Verdict
#
# The table is the verdict; its rows were judged by the rules stated in them, and what follows is
# what they mean at `book` scale (500 images, 3,000 steps; the numbers are in the table and record).
#
# - **The framework holds up quantitatively where it can be checked.** In the MLP, $c_y/S$ is
#   4.0 to two digits, as the homogeneity argument predicts for a depth-3 ReLU network, so the decay
#   term $-\eta\gamma c_y$ grows with the sharpness. The toy model is our reconstruction and agrees
#   with the paper's three qualitative predictions by construction; our own finding there is that the
#   discrete GD map anti-damps at $\eta^2\beta x_*^2/2$ per step, so weight decay damps the cycles
#   only above a threshold (here $\gamma \approx 0.08$); below it they shrink but persist.
# - **The MLP phase transition reproduces**, with plateaus close to the paper's ≈ 80 at
#   $\gamma = 0.02$ on a tenth of its data. At this scale even $\gamma = 0.01$ settles below the edge, so the
#   grid has no "small γ" that reaches $2/\eta - \gamma$: that is why the alignment row is only partly
#   reproduced. Every decayed run crosses $c_y = \alpha/\gamma$, and none reaches the edge.
# - **The intervention supports the mechanism.** Projecting the decay step off $\nabla S$, and
#   changing nothing else, lifts the plateau most of the way back to the edge. This is the causal test
#   the reviewers asked for, at this one setting.
# - **Not reproduced here:** the NTK's top eigenvalue is no steadier with decay than without it at
#   this scale. The CNN damping could not be tested: the CPU cannot run the CNN, and no GPU was
#   available in this session to produce the stored run.

# %% tags=["hide-input"]
# Invariants of the machinery, true at every scale (not the paper's claims):
assert model_gap < 1e-6  # GD on the toy is the (x, y) model exactly
assert not bool(mlp.diverged[i0])  # the γ = 0 baseline does not diverge at η = 0.02
assert np.all(np.isfinite(S_mlp[~mlp.diverged])) and np.all(np.isfinite(cy[~mlp.diverged]))
assert np.allclose(h.top_eigenvalues[..., 0] - G, S_mlp)  # reported S is the probe's λ minus γ

# %% tags=["hide-input"]
metrics = {
    "eta": P.eta,
    "gamma": P.gamma,
    "sharpness_plateau": plain_star,
    "sharpness_plateau_seeds": [float(v) for v in seed_plateaus],
    "sharpness_plateau_gamma0": float(plateau[i0]),
    "sharpness_late_drift_seeds": [float(v) for v in late_drift[seed_members]],
    "plateau_by_gamma": [float(v) for v in plateau[grid]],  # in the order of the gammas parameter
    "threshold_shift": float(threshold_shift),
    "toy_gamma": float(toy_main["gamma"]),
    "toy_damped_gammas": [r["gamma"] for r in toy_damped],
    "toy_damping_rate_measured": [r["measured_rate"] for r in toy_damped],
    "toy_damping_rate_predicted": [r["predicted_rate"] for r in toy_damped],
    "cnn_gammas_run": [r["gamma"] for r in cnn_rows],
    "cnn_damping_rates": [r["rate"] for r in cnn_rows],
    "ntk_spread_gamma": ntk_star,
    "ntk_spread_gamma0": ntk_zero,
    "intervention_plateau": plateau_int,
    "paper_scale_plateau_seeds": [float(v) for v in p_plateau[p_seed_rows]] if paper_mlp is not None else [],
}
record = make_record("weight-decay", scale, P.as_dict(), claims, metrics,
                     provenance(start_time, data_source=ds.source, n_train=len(ds)))
print("record written to", write_record(record, results_dir))
