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
# **Claim** ({cite:t}`damian2023selfstabilization`). At the edge of stability, full-batch GD on a
# network follows the *constrained trajectory*, projected GD onto the stable set
# $\mathcal M = \{\theta : S(\theta) \le 2/\eta,\ \nabla L(\theta)\cdot u(\theta) = 0\}$. GD oscillates along the top
# eigenvector $u$; the third-order term of the loss turns that oscillation into a pull down the gradient
# of the sharpness, which stabilizes it. Along the way, the distance to the constrained trajectory
# stays small, and GD's loss and sharpness follow from a two-variable recursion.
#
# Our copy of the paper is only its abstract. The definitions and the derivation below are from the
# project's notes (`shared/papers/self-stabilization_notes.md`); where our constants could differ from
# the paper's, we say so.
#
# **Derivation.** Let $\theta^\dagger_t$ be the constrained trajectory,
# $\theta^\dagger_{t+1} = \mathrm{proj}_{\mathcal M}(\theta^\dagger_t - \eta\nabla L(\theta^\dagger_t))$, and
# $v_t = \theta_t - \theta^\dagger_t$. Take $u$, $S$, $\nabla S = \nabla^3 L[u, u]$ at $\theta^\dagger_t$,
# and the coordinates $x_t = u\cdot v_t$ and $y_t = \nabla S\cdot v_t$. Expand $\nabla L(\theta^\dagger + v)$
# to second order: $\nabla L(\theta^\dagger) + H v + \tfrac12\nabla^3 L[v, v]$. Keep the leading terms,
# with $v \approx x u$ in the cubic term. Then with $\alpha = -\nabla L\cdot\nabla S$ (the rate of
# progressive sharpening) and $\beta = \|\nabla S\|^2$:
#
# $$x_{t+1} = -(1 + \eta y_t)\,x_t, \qquad y_{t+1} = y_t + \eta\left(\alpha_t - \tfrac{\beta_t}{2} x_t^2\right).$$
#
# Together these give the four stages:
#
# 1. progressive sharpening: $y$ grows at $\eta\alpha$;
# 2. blow-up: $|x|$ grows while $y > 0$;
# 3. self-stabilization: once $x^2 > 2\alpha/\beta$, $y$ falls;
# 4. return to stability: $|x|$ shrinks while $y < 0$.
#
# The averaged fixed point is $x^2 = 2\alpha/\beta$, $y = 0$. GD's loss and sharpness are
# $L(\theta) \approx L(\theta^\dagger) + x^2/\eta$ (from $\tfrac12 S x^2$ with $S = 2/\eta$) and
# $S(\theta) \approx 2/\eta + y$.
#
# Two choices are ours.
#
# - The projection onto $\mathcal M$ alternates Newton corrections along $u$ and $\nabla S$
#   ({func}`eoslib.mechanisms.selfstab.project`).
# - We use $\beta = \|\nabla S\|^2$. The paper also uses the part of $\nabla S$ orthogonal to $u$.
#   The two are close when $\nabla S \cdot u$ is small.
#
# Before $\theta^\dagger$ reaches the edge, $S(\theta^\dagger)$ rises by $\eta\alpha$ per step on its own.
# {func}`eoslib.mechanisms.selfstab.predict` therefore subtracts that rise from $y$. At the edge the recursion is
# the paper's.
#
# **Beyond the paper: the central flow** ({cite:t}`cohen2024central`). The time-averaged GD trajectory
# follows $\dot\theta = -\eta[\nabla L + \tfrac12\sigma^2\nabla S]$. Here $\sigma^2 = 2\alpha/\beta$ while
# $S = 2/\eta$, the value that holds $S$ at the edge, and $\sigma^2 = 0$ below it. The flow predicts
# GD's time-averaged loss, $L + \sigma^2/\eta$, and its sharpness, $2/\eta$
# ({func}`eoslib.mechanisms.selfstab.central_flow`).
#
# ## Setup
#
# | | paper | `book` scale (2-core CPU) | `paper` scale (GPU) |
# |---|---|---|---|
# | data | CIFAR-10, 5,000 images (as in Cohen et al. 2021) | CIFAR-10, first 250 images, 10 classes | 5,000 images |
# | network | fc-tanh / ELU MLPs, small CNNs | tanh MLP 3072-32-32-10 | fc-tanh 3072-200-200-10 |
# | loss, optimizer | ½MSE, full-batch GD | same | same |
# | coupled run | from initialisation | from the GD iterate where $S$ first reaches 97% of $2/\eta$ | same |
# | step sizes | several | η = 0.012; sweep 0.01, 0.012, 0.014 | 0.01, 0.02, 0.04 |
#
# The coupled run (GD beside the constrained trajectory) costs one projection and three
# eigensolves per step. So we start it just before the edge, where GD is still stable and
# $\theta^\dagger \approx \theta$ ({func}`eoslib.mechanisms.selfstab.gd_to_edge`), not at initialisation. The CNN
# of claim 1 is an `arch` option. It runs only at `paper` scale, on a GPU.

# %% tags=["hide-input"]
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from jax.flatten_util import ravel_pytree

from eoslib.engine import data, losses, models
from eoslib.mechanisms import selfstab
from eoslib.book.display import claims_table, use_book_style
from eoslib.book.scales import settings
from eoslib.book.results import Claim, make_record, provenance, write_record

use_book_style()
start_time = time.time()

# %% tags=["parameters"]
scale = os.environ.get("EOSLIB_SCALE", "book")  # smoke | book | paper
arch = None  # a CIFAR-10 architecture of eoslib.engine.models.NAMES: fc-tanh, fc-elu (widths from `width`), cnn-tanh, ...
width = None  # hidden width of the fc-* MLPs (3072-width-width-10; the CNN keeps its own channels)
n_train = None  # CIFAR-10 training images (the first n, all 10 classes)
eta = None  # step size of the main run (always a member of the sweep)
etas = None  # step sizes of the vmapped sweep (claim 6); unset, the scale's sweep scaled by eta / the scale's eta
start_fraction = None  # the coupled run starts where GD's sharpness first reaches this fraction of 2/η
max_warmup = None  # most GD steps spent getting there
steps = None  # steps of the coupled run (GD beside the constrained trajectory) and of the flow
proj_tol = None  # tolerance of the projection onto M (relative, on ∇L·u and on S − 2/η)
eig_tol = None  # relative residual tolerance of the eigensolves at θ† and along the flow
flow_substeps = None  # Heun steps per unit of time (one GD step) of the central flow
average_window = None  # steps in GD's moving average compared with the flow
seed = None  # PRNG seed of the initialisation
results_dir = None  # where the results record goes (default: the book's _build/records)

# %%
RANGES = {"arch": "cifar10-model", "width": "int >= 1", "n_train": "int in [1, 50000]", "eta": "float > 0",
          "etas": "list[float > 0], non-empty", "start_fraction": "float in (0, 1]", "max_warmup": "int >= 1",
          "steps": "int >= 2", "proj_tol": "float in (0, 1)", "eig_tol": "float in (0, 1)", "flow_substeps": "int >= 2",
          "average_window": "int >= 1, < steps", "seed": "int >= 0"}
SCALES = {
    "smoke": {"arch": "fc-tanh", "width": 16, "n_train": 100, "eta": 0.012, "etas": [0.012, 0.014],
              "start_fraction": 0.97, "max_warmup": 2000, "steps": 40, "proj_tol": 1e-3, "eig_tol": 1e-4,
              "flow_substeps": 2, "average_window": 10, "seed": 0},
    "book": {"arch": "fc-tanh", "width": 32, "n_train": 250, "eta": 0.012, "etas": [0.01, 0.012, 0.014],
             "start_fraction": 0.97, "max_warmup": 5000, "steps": 300, "proj_tol": 1e-3, "eig_tol": 1e-4,
             "flow_substeps": 2, "average_window": 20, "seed": 0},
    "paper": {"arch": "fc-tanh", "width": 200, "n_train": 5000, "eta": 0.02, "etas": [0.01, 0.02, 0.04],
              "start_fraction": 0.97, "max_warmup": 20000, "steps": 2000, "proj_tol": 1e-3, "eig_tol": 1e-5,
              "flow_substeps": 2, "average_window": 50, "seed": 0},
}
P = settings(SCALES, scale, RANGES, arch=arch, width=width, n_train=n_train, eta=eta, etas=etas,
             start_fraction=start_fraction, max_warmup=max_warmup, steps=steps, proj_tol=proj_tol, eig_tol=eig_tol,
             flow_substeps=flow_substeps, average_window=average_window, seed=seed)
# The sweep follows the main η: unless etas is given, a new eta scales the scale's sweep by eta / its eta.
# The main run is always a member of the sweep.
default = SCALES[scale]
follow = etas is None and P.eta != default["eta"]
sweep_etas = [e / default["eta"] * P.eta for e in default["etas"]] if follow else P.etas
P.etas = ETAS = sorted({float(e) for e in sweep_etas} | {float(P.eta)})
EDGE = 2.0 / P.eta
MAIN = ETAS.index(float(P.eta))

# %% [markdown]
# ## Runs
#
# All step sizes run in one `vmap`. Each starts from the same initialisation and runs GD to 97% of
# its own edge. From there, GD and the constrained trajectory run side by side
# ({func}`eoslib.mechanisms.selfstab.gd_and_constrained`), all in one compiled call
# ({func}`eoslib.mechanisms.selfstab.edge_sweep`). The central flow starts from the main run's start point.

# %%
ds = data.load_cifar10(n=P.n_train)
x_train, y_train = jnp.asarray(ds.x), jnp.asarray(ds.onehot)
loss_fn = losses.of_model("half_mse")(x_train, y_train)  # ½‖f − y‖², mean over examples
net_options = {"width": P.width} if "width" in models.options(P.arch) else {}
params0 = models.by_name(P.arch, key=jax.random.key(P.seed), **net_options)
n_params = ravel_pytree(params0)[0].size
t0 = time.time()
sweep = selfstab.edge_sweep(loss_fn, params0, jnp.asarray(ETAS, dtype=jnp.float32), P.steps,
                            start_fraction=P.start_fraction, max_warmup=P.max_warmup, key=jax.random.key(P.seed + 1),
                            proj_tol=P.proj_tol, eig_tol=P.eig_tol)
pair = jax.tree.map(np.asarray, sweep.record)
warmup_steps, start_sharpness = np.asarray(sweep.warmup_steps), np.asarray(sweep.start_sharpness)
starts, start_vectors = sweep.starts, sweep.start_vectors
time_pairs = time.time() - t0
print(f"{P.arch}, {n_params:,} parameters, {len(ds)} images; coupled runs for η = {ETAS}: {time_pairs:.0f} s")
for e, w_, s_ in zip(ETAS, warmup_steps, start_sharpness):
    print(f"  η = {e}: start after {int(w_)} GD steps at S = {s_:.1f} (2/η = {2 / e:.1f})")

# %%
start_main = jax.tree.map(lambda a: a[MAIN], starts)
t0 = time.time()
flow, _ = jax.jit(lambda p, v: selfstab.central_flow(loss_fn, p, P.eta, P.steps, v0=v, substeps=P.flow_substeps,
                                                     eig_tol=P.eig_tol))(start_main, start_vectors[MAIN])
flow = jax.tree.map(np.asarray, flow)
time_flow = time.time() - t0
print(f"central flow over {P.steps} steps' time: {time_flow:.0f} s")

# %% [markdown]
# ## Analysis
#
# The *edge phase* starts at the first step where GD's sharpness reaches $2/\eta$. A run that
# diverges (non-finite loss) is marked diverged and left out of the comparisons, not dropped from the
# record. The predicted dynamics run open-loop. They start from GD's measured $(x, y)$ at the start
# of the edge phase and are driven by the $\alpha_t$, $\beta_t$ and $S(\theta^\dagger_t)$ of the
# constrained trajectory ({func}`eoslib.mechanisms.selfstab.predict`).


# %%
def moving_average(a, w):
    """Centred moving average over w steps (NaN where the window does not fit)."""
    out = np.full(len(a), np.nan)
    core = np.convolve(a, np.ones(w) / w, mode="valid")
    out[w // 2: w // 2 + len(core)] = core
    return out


def analyse(i):
    """Everything the claims need from sweep member i (a dict; NaN where undefined)."""
    r = jax.tree.map(lambda a: a[i], pair)
    e = ETAS[i]
    edge = 2.0 / e
    out = {"eta": e, "diverged": bool(not np.all(np.isfinite(r.loss)))}
    reached = np.nonzero(r.sharpness >= edge)[0]
    te = int(reached[0]) if len(reached) and not out["diverged"] else None
    out["edge_step"] = te
    nan = float("nan")
    out["pgd_sharpness_max"] = float(np.max(r.sharpness_dagger))
    out["deviation_max"] = float(np.max(r.deviation))
    out["dev_over_travel"] = float(np.max(r.deviation) / max(r.travelled[-1], 1e-30))
    if te is None:
        return out | {k: nan for k in ("sharpness_eos_mean", "loss_err", "sharp_err", "excess_err", "quad_loss_err",
                                       "x2_ratio", "stage_x", "stage_y", "cycles", "s_gap")} | {"r": r}
    sl = slice(te, None)
    pred = jax.tree.map(np.asarray, selfstab.predict(r.x[te], r.y[te], r.alpha[te:], r.beta[te:],
                                                     r.sharpness_dagger[te:], e))
    loss_hat = r.loss_dagger[sl] + 0.5 * r.sharpness_dagger[sl] * pred.x**2
    sharp_hat = r.sharpness_dagger[sl] + pred.y
    excess = r.loss[sl] - r.loss_dagger[sl]
    x, y, fp = r.x[sl], r.y[sl], 2 * r.alpha[sl] / r.beta[sl]
    out |= {
        "r": r, "pred": pred, "loss_hat": loss_hat, "sharp_hat": sharp_hat,
        "sharpness_eos_mean": float(np.mean(r.sharpness[sl])),
        "loss_err": float(np.median(np.abs(loss_hat - r.loss[sl]) / r.loss[sl])),
        "sharp_err": float(np.median(np.abs(sharp_hat - r.sharpness[sl])) / edge),
        # the part of the loss the recursion is about: L(θ) − L(θ†), against its own mean size
        "excess_err": float(np.median(np.abs(0.5 * r.sharpness_dagger[sl] * pred.x**2 - excess))
                            / np.mean(np.abs(excess))),
        # the quadratic model alone, with GD's measured x
        "quad_loss_err": float(np.median(np.abs(r.loss_dagger[sl] + 0.5 * r.sharpness_dagger[sl] * x**2 - r.loss[sl])
                                         / r.loss[sl])),
        # GD's sharpness against S(θ†) + y, with the measured y
        "s_gap": float(np.median(np.abs(r.sharpness[sl] - r.sharpness_dagger[sl] - y)) / edge),
        "x2_ratio": float(np.mean(x**2) / np.mean(fp)),
        # stages 2/4: |x| grows exactly when y > 0;  stages 1/3: y rises exactly when x² < 2α/β
        "stage_x": float(np.mean(np.sign(np.abs(x[1:]) - np.abs(x[:-1])) == np.sign(y[:-1]))),
        "stage_y": float(np.mean(np.sign(y[1:] - y[:-1]) == np.sign(fp[:-1] - x[:-1] ** 2))),
        "cycles": int(np.sum((y[:-1] > 0) & (y[1:] <= 0))),
    }
    return out


runs = [analyse(i) for i in range(len(ETAS))]
main = runs[MAIN]
r = main["r"]
te = main["edge_step"]
print(f"main run: edge phase from step {te}; {main['cycles']} downward crossings of y = 0")

# %% [markdown]
# ### Claim 1: the four-stage cycle
#
# The left panel shows GD's sharpness and the constrained trajectory's. The middle panel shows
# $x_t$ (sign-alternated, so the period-2 flip is removed) and $y_t$. The right panel is the phase
# portrait: $|x|$ against $y$, with the fixed point $x^2 = 2\alpha/\beta$ dashed.

# %% mystnb={"figure": {"caption": "Main run. Left: sharpness of GD and of the constrained trajectory; dashed: $2/\\eta$. Middle: $(-1)^t x_t$ and $y_t$. Right: phase portrait $(|x_t|, y_t)$ in the edge phase, coloured by time; dashed: $|x| = \\sqrt{2\\alpha/\\beta}$ (mean over the edge phase) and $y = 0$.", "name": "fig-ss-cycle"}}
t = np.arange(P.steps)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
axes[0].plot(t, r.sharpness, lw=1, label="GD $S(\\theta_t)$")
axes[0].plot(t, r.sharpness_dagger, lw=1.5, label="constrained $S(\\theta^\\dagger_t)$")
axes[0].axhline(EDGE, ls="--", c="k", lw=0.8)
axes[0].set(xlabel="step (from the start of the coupled run)", ylabel="sharpness")
axes[0].legend()
alt = (-1.0) ** t
ax = axes[1]
ax.plot(t, alt * r.x, lw=1, color="C0")
ax.set(xlabel="step", ylabel="$(-1)^t x_t$")
ax.yaxis.label.set_color("C0")
ax2 = ax.twinx()
ax2.plot(t, r.y, lw=1, color="C3")
ax2.axhline(0, color="C3", lw=0.5, ls=":")
ax2.set_ylabel("$y_t$", color="C3")
if te is not None:
    sl = slice(te, None)
    sc = axes[2].scatter(np.abs(r.x[sl]), r.y[sl], c=t[sl], s=4, cmap="viridis")
    axes[2].axvline(np.sqrt(np.mean(2 * r.alpha[sl] / r.beta[sl])), ls="--", c="k", lw=0.8)
    axes[2].axhline(0, ls="--", c="k", lw=0.8)
    axes[2].set_xscale("log")
    fig.colorbar(sc, ax=axes[2], label="step")
axes[2].set(xlabel="$|x_t|$", ylabel="$y_t$")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Claims 2 and 3: the constrained trajectory and the predicted dynamics
#
# The predicted loss is $L(\theta^\dagger) + \tfrac12 S(\theta^\dagger)\hat x^2$ and the predicted
# sharpness is $S(\theta^\dagger) + \hat y$. Both use the open-loop recursion's $(\hat x, \hat y)$. We also
# score the quadratic model alone, $L(\theta^\dagger) + \tfrac12 S x^2$ with GD's measured $x$, to
# separate the error of the expansion from that of the recursion.

# %% mystnb={"figure": {"caption": "Main run, edge phase. Left: GD's loss, the constrained trajectory's, and the prediction from the open-loop recursion. Middle: GD's sharpness and the predicted $S(\\theta^\\dagger) + \\hat y$. Right: $|x_t|$ of GD and $|\\hat x_t|$ of the recursion.", "name": "fig-ss-predict"}}
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
if te is not None:
    tt = t[te:]
    axes[0].plot(tt, r.loss[te:], lw=1, label="GD $L(\\theta_t)$")
    axes[0].plot(tt, r.loss_dagger[te:], lw=1.5, label="$L(\\theta^\\dagger_t)$")
    axes[0].plot(tt, main["loss_hat"], lw=1, ls="--", label="predicted")
    axes[1].plot(tt, r.sharpness[te:], lw=1, label="GD")
    axes[1].plot(tt, main["sharp_hat"], lw=1, ls="--", label="predicted")
    axes[1].axhline(EDGE, ls=":", c="k", lw=0.8)
    axes[2].semilogy(tt, np.abs(r.x[te:]), lw=1, label="GD $|x_t|$")
    axes[2].semilogy(tt, np.abs(main["pred"].x), lw=1, ls="--", label="recursion $|\\hat x_t|$")
for ax, yl in zip(axes, ("loss", "sharpness", "$|x|$")):
    ax.set(xlabel="step", ylabel=yl)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Claim 5: the central flow
#
# We compare GD's loss and sharpness, averaged over a centred window of `average_window` steps,
# with the flow's predictions from the same start point. As a control, the flow's own loss
# $L(\theta_{\text{flow}})$, without the $\sigma^2/\eta$ term, is scored too. The flow handles one
# eigenvalue at the edge, so we also record $\lambda_2$ along it.

# %%
w = P.average_window
avg_loss, avg_sharp = moving_average(r.loss, w), moving_average(r.sharpness, w)
flow_from = (te or 0) + w
ok = np.isfinite(avg_loss) & (t >= flow_from)
has_flow = bool(ok.any() and np.all(np.isfinite(flow.loss)))
flow_second_frac = float(np.max(flow.second) / EDGE)
if has_flow:
    flow_loss_err = float(np.median(np.abs(flow.predicted_loss[ok] - avg_loss[ok]) / avg_loss[ok]))
    flow_plain_err = float(np.median(np.abs(flow.loss[ok] - avg_loss[ok]) / avg_loss[ok]))
    flow_sharp_err = float(np.median(np.abs(flow.sharpness[ok] - avg_sharp[ok])) / EDGE)
    flow_sharp_mean = float(np.mean(flow.sharpness[ok]))
else:
    flow_loss_err = flow_plain_err = flow_sharp_err = flow_sharp_mean = float("nan")
print(f"median relative error of the time-averaged loss: flow prediction {flow_loss_err:.3g}, "
      f"flow loss without σ² {flow_plain_err:.3g}; sharpness error {flow_sharp_err:.3g} of 2/η; "
      f"max λ₂ along the flow {flow_second_frac:.3f} of 2/η")

# %% mystnb={"figure": {"caption": "Central flow from the main run's start point. Left: GD's loss (thin), its moving average, the flow's $L$ and its prediction $L + \\tfrac12\\sigma^2 S$. Right: GD's sharpness averaged, the flow's $S$ and its $\\lambda_2$; dashed: $2/\\eta$.", "name": "fig-ss-flow"}}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
axes[0].plot(t, r.loss, lw=0.5, color="0.7", label="GD")
axes[0].plot(t, avg_loss, lw=1.5, label=f"GD, {w}-step average")
axes[0].plot(t, flow.loss, lw=1, label="flow $L$")
axes[0].plot(t, flow.predicted_loss, lw=1, ls="--", label="flow $L + \\sigma^2 S/2$")
axes[1].plot(t, avg_sharp, lw=1.5, label=f"GD, {w}-step average")
axes[1].plot(t, flow.sharpness, lw=1, label="flow $S$")
axes[1].plot(t, flow.second, lw=1, ls=":", label="flow $\\lambda_2$")
axes[1].axhline(EDGE, ls="--", c="k", lw=0.8)
for ax, yl in zip(axes, ("loss", "sharpness")):
    ax.set(xlabel="step", ylabel=yl)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Claim 6: how it scales with η
#
# The same comparisons for every step size of the sweep.

# %%
rows = [(ru["eta"], "diverged" if ru["diverged"] else ("no edge" if ru["edge_step"] is None else ru["edge_step"]),
         ru["sharpness_eos_mean"] * ru["eta"] / 2, ru["loss_err"], ru["sharp_err"], ru["excess_err"],
         ru["deviation_max"], ru["dev_over_travel"], ru["x2_ratio"]) for ru in runs]
header = ("η", "edge step", "mean S·η/2", "loss err", "sharpness err", "excess-loss err", "max ‖θ−θ†‖",
          "max ‖θ−θ†‖ / travelled", "⟨x²⟩ / ⟨2α/β⟩")
display(Markdown("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n" + "\n".join(
    "| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |" for row in rows)))

# %% mystnb={"figure": {"caption": "Sweep over η. Left: median relative error of the predicted loss (and of the excess loss $L(\\theta) - L(\\theta^\\dagger)$). Right: the largest distance $\\|\\theta_t - \\theta^\\dagger_t\\|$.", "name": "fig-ss-sweep"}}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
ev = np.array([ru["eta"] for ru in runs])
axes[0].plot(ev, [ru["loss_err"] for ru in runs], "o-", label="loss")
axes[0].plot(ev, [ru["excess_err"] for ru in runs], "s--", label="excess loss")
axes[0].set(xlabel="η", ylabel="median relative error", yscale="log")
axes[0].legend()
axes[1].plot(ev, [ru["deviation_max"] for ru in runs], "o-")
axes[1].set(xlabel="η", ylabel="max $\\|\\theta_t - \\theta^\\dagger_t\\|$")
plt.tight_layout()
plt.show()


# %% [markdown]
# ## Paper vs. ours
#
# The paper gives figures, not numbers, for these claims. The rules below were fixed before the
# runs; they are ours.
#
# - A prediction is **reproduced** when its median error is within 5% (relative for losses, of
#   $2/\eta$ for sharpness), **partly** within 20%.
# - $\langle x^2\rangle / \langle 2\alpha/\beta\rangle$ is **reproduced** within a factor 1.5,
#   **partly** within a factor 3.
# - The stage test counts the steps where $|x|$ grows exactly when $y > 0$ and where $y$ rises
#   exactly when $x^2 < 2\alpha/\beta$. It needs $y$ to fall through 0 at least twice (two cycles)
#   and 80% of steps (partly: 60%).
# - The central flow's loss prediction $L + \tfrac12\sigma^2 S$ must also beat the control
#   $L(\theta_{\text{flow}})$ without the $\sigma^2$ term; if it does not, the row is at best partly
#   reproduced, because the flow tracks GD but the $\sigma^2$ correction is not confirmed.

# %%
def graded(err, good, fair):
    if not np.isfinite(err):
        return "not reproduced"
    return "reproduced" if err <= good else "partly reproduced" if err <= fair else "not reproduced"


def factor_graded(ratio, good, fair):
    if not (np.isfinite(ratio) and ratio > 0):
        return "not reproduced"
    f = max(ratio, 1 / ratio)
    return "reproduced" if f <= good else "partly reproduced" if f <= fair else "not reproduced"


no_edge = te is None
stage_score = min(main["stage_x"], main["stage_y"])
if no_edge:
    v1 = "not reproduced"
elif main["cycles"] >= 2 and stage_score >= 0.8:
    v1 = "reproduced" if P.arch == "cnn-tanh" else "partly reproduced"
elif stage_score >= 0.6:
    v1 = "partly reproduced"
else:
    v1 = "not reproduced"
stable = main["pgd_sharpness_max"] <= EDGE * (1 + 10 * P.proj_tol)
v2 = "not reproduced" if no_edge or not stable else graded(main["s_gap"], 0.05, 0.2)
if v2 != "not reproduced" and main["dev_over_travel"] > 0.5:
    v2 = "partly reproduced"
v3 = "not reproduced" if no_edge else graded(max(main["loss_err"], main["sharp_err"]), 0.05, 0.2)
v4 = "not reproduced" if no_edge else factor_graded(main["x2_ratio"], 1.5, 3.0)
v5 = "not reproduced" if not has_flow else graded(max(flow_loss_err, flow_sharp_err), 0.05, 0.2)
if v5 == "reproduced" and not flow_loss_err < flow_plain_err:
    v5 = "partly reproduced"
sweep_verdicts = [graded(max(ru["loss_err"], ru["sharp_err"]), 0.05, 0.2) for ru in runs]
n_good = sum(v == "reproduced" for v in sweep_verdicts)
v6 = "reproduced" if n_good == len(runs) else "partly reproduced" if any(
    v != "not reproduced" for v in sweep_verdicts) else "not reproduced"
edge_note = "GD did not reach 2/η in this run; " if no_edge else ""
claims = [
    Claim("four-stage-cycle",
          "GD at the edge runs through sharpening, blow-up along u, self-stabilization and return to stability",
          "shown on MLPs and CNNs (figures)",
          f"y falls through 0 {main['cycles']} times; |x| grows iff y > 0 on {main['stage_x']:.0%} of steps, "
          f"y rises iff x² < 2α/β on {main['stage_y']:.0%}",
          v1, edge_note + ("" if P.arch == "cnn-tanh" else f"{P.arch} only: no scale runs the paper's CNN by default "
                           "(`-p arch cnn-tanh` does; meant for a GPU)")),
    Claim("constrained-trajectory",
          "GD tracks projected GD onto M: S(θ†) ≤ 2/η, S(θ) ≈ 2/η + y, ‖θ − θ†‖ small",
          "shown (figures)",
          f"max S(θ†) = {main['pgd_sharpness_max'] * P.eta / 2:.4f}·2/η; |S − S(θ†) − y| {main['s_gap']:.2%} of 2/η; "
          f"max ‖θ−θ†‖ = {main['deviation_max']:.3g} ({main['dev_over_travel']:.2f} of the distance θ† travels)",
          v2, edge_note),
    Claim("predicted-dynamics",
          "the (x, y) recursion driven by α, β of θ† predicts GD's loss and sharpness",
          "curves overlap (figures)",
          f"median error: loss {main['loss_err']:.2%}, sharpness {main['sharp_err']:.2%} of 2/η; "
          f"excess loss {main['excess_err']:.0%}; quadratic model with GD's x {main['quad_loss_err']:.2%}",
          v3, edge_note + "open-loop from the start of the edge phase"),
    Claim("fixed-point",
          "GD oscillates around x² = 2α/β",
          "x² ≈ 2α/β",
          f"⟨x²⟩/⟨2α/β⟩ = {main['x2_ratio']:.2f}",
          v4, edge_note),
    Claim("central-flow",
          "the central flow predicts GD's time-averaged loss and sharpness (beyond the paper: Cohen et al. 2024)",
          "accurate on their networks (figures)",
          f"median error: loss {flow_loss_err:.2%} (without σ²: {flow_plain_err:.2%}), "
          f"sharpness {flow_sharp_err:.2%} of 2/η; max λ₂ = {flow_second_frac:.2f}·2/η",
          v5, "one eigenvalue at the edge only" + ("; λ₂ reached the edge" if flow_second_frac >= 0.99 else "")
          + ("" if flow_loss_err < flow_plain_err else "; the σ² term does not improve on the flow's own loss")),
    Claim("eta-sweep",
          "the predictions hold across step sizes",
          "several η (figures)",
          "; ".join(f"η={ru['eta']}: {ru['loss_err']:.1%}/{ru['sharp_err']:.1%}" for ru in runs),
          v6, f"{n_good} of {len(runs)} step sizes within the 5% rule (loss/sharpness errors)"),
]
display(claims_table(claims))

# %% [markdown]
# ## Verdict

# %% tags=["hide-input"]
lines = [f"- Verdicts at `{scale}` scale ({P.arch}, {len(ds)} images, η = {P.eta}, {P.steps} coupled steps):"]
lines += [f"  - **{c.id}**: {c.verdict}. {c.ours}." for c in claims]
lines.append("- The table's rows follow the rules stated above. A row that is not reproduced at this scale is a "
             "finding about this scale, not a tuned-away failure.")
display(Markdown("\n".join(lines)))

# %% tags=["hide-input"]
# Invariants of the machinery, true at every scale (not the paper's claims):
alive = ~np.array([ru["diverged"] for ru in runs])
assert np.all(np.isfinite(pair.sharpness_dagger[alive]))
edges = 2 / np.array(ETAS)[:, None]  # (members, 1), broadcast over steps
on_m = pair.sharpness_dagger <= edges * (1 + P.proj_tol) * 1.001  # θ† satisfies S ≤ 2/η where projected
assert np.all(on_m[alive[:, None] & pair.converged])
below = start_sharpness < 2 / np.array(ETAS)  # a start below the edge is (nearly) on M: θ†₀ ≈ θ₀
assert np.all(pair.deviation[below, 0] < 1e-2 * np.linalg.norm(ravel_pytree(params0)[0]))

# %%
metrics = {
    "eta": P.eta,
    "n_params": int(n_params),
    "edge_step": te if te is not None else None,
    "sharpness_eos_mean": main["sharpness_eos_mean"],
    "pgd_sharpness_max": main["pgd_sharpness_max"],
    "loss_prediction_rel_error": main["loss_err"],
    "sharpness_prediction_rel_error": main["sharp_err"],
    "excess_loss_prediction_rel_error": main["excess_err"],
    "quadratic_loss_rel_error": main["quad_loss_err"],
    "sharpness_minus_y_gap": main["s_gap"],
    "deviation_max": main["deviation_max"],
    "deviation_over_travelled": main["dev_over_travel"],
    "x2_over_fixed_point": main["x2_ratio"],
    "stage_agreement_x": main["stage_x"],
    "stage_agreement_y": main["stage_y"],
    "cycles": main["cycles"],
    "projection_converged_fraction": float(np.mean(pair.converged[MAIN])),
    "flow_loss_rel_error": flow_loss_err,
    "flow_plain_loss_rel_error": flow_plain_err,
    "flow_sharpness_rel_error": flow_sharp_err,
    "flow_second_eigenvalue_max": flow_second_frac,
    "sweep_etas": ETAS,
    "sweep_diverged": [int(ru["diverged"]) for ru in runs],
    "sweep_loss_prediction_rel_error": [ru["loss_err"] for ru in runs],
    "sweep_sharpness_prediction_rel_error": [ru["sharp_err"] for ru in runs],
    "sweep_deviation_max": [ru["deviation_max"] for ru in runs],
    "sweep_sharpness_eos_mean": [ru["sharpness_eos_mean"] for ru in runs],
    "warmup_steps": [int(v) for v in warmup_steps],
    "time_coupled_s": time_pairs,
    "time_flow_s": time_flow,
}
record = make_record("self-stabilization", scale, P.as_dict(), claims, metrics,
                     provenance(start_time, data_source=ds.source, n_train=len(ds)))
print("record written to", write_record(record, results_dir))
