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
# # Clipped-Ada: restoring instabilities in adaptive optimizers
#
# **Claim** ({cite:t}`wang2025flatness`, Sec. 8 and Apps. I–J). Adam and RMSprop are gradient descent
# with a diagonal preconditioner $P = \sqrt{\hat v} + \epsilon$; dividing by $\sqrt{\hat v}$ shrinks the
# steps along sharp directions and so suppresses the instabilities that give GD its flatness bias.
# *Clipped-Ada* caps the second moment at $\tau$, $P = \sqrt{\min(\hat v, \tau)} + \epsilon$: the cap
# $\tau$ dials the instability back in, and tighter clipping with a large step size generalizes better.
#
# Our copy of the paper lost its formulas. What we reconstructed (and implemented in
# {func}`eoslib.engine.optim.clipped_adam`):
#
# - Eq. 10: $\theta_{t+1} = \theta_t - \eta\,\hat m_t / (\sqrt{\min(\hat v_t, \tau)} + \epsilon)$, with
#   Adam's bias-corrected moments {cite:p}`kingma2015adam`; RMSprop is the case $\beta_1 = 0$; the cap
#   acts on the bias-corrected $\hat v$, the stored moment is Adam's own.
# - Eqs. 11 and 36–39: the *effective curvature* $\lambda_{\text{eff}} = \lambda_1(P^{-1/2} H P^{-1/2})$
#   (the **preconditioned sharpness**), and the stability criterion $\eta\,\lambda_{\text{eff}} < 2$.
#   Along a single coordinate $i$, $\lambda_{\text{eff}} = \lambda / (\sqrt{\min(\hat v_i, \tau)} + \epsilon)$.
# - The regimes of $\tau$ (Sec. 8.1): $\tau \to \infty$ is standard adaptive optimization;
#   large $\tau$ is mild suppression; $\tau \approx 1$ gives GD-like thresholds (where the cap binds,
#   $P \approx 1$); $\tau < 1$ enhances the steps and the instabilities. Where $\hat v$ is tiny, as in
#   networks, "binds" happens at a much smaller $\tau$; we locate the regimes by the fraction of
#   coordinates the cap binds on ({func}`eoslib.engine.probes.clipped_fraction`).
#
# A second threshold is on the table: {cite:t}`cohen2022adaptive` found that full-batch Adam trains at
# an *adaptive edge of stability* where $\lambda_{\text{eff}}$ hovers at
# $(2 + 2\beta_1)/((1-\beta_1)\eta)$ — the stability limit of GD with Adam's EMA momentum, 38/η at
# $\beta_1 = 0.9$ ({func}`eoslib.mechanisms.adaptive.adam_edge`) — not at 2/η. For RMSprop both are 2/η.
#
# ## Setup
#
# | | paper | `book` scale (2-core CPU) | `paper` scale (GPU) |
# |---|---|---|---|
# | toy (claim 1) | a 2-D example (App. I, Fig. 20; the function is not in our copy) | $L = 20\log\cosh w_0 + \tfrac12 w_1^2$, η = 0.125 | same |
# | thresholds, τ sweep (claims 2, 3) | not specified | fMNIST, first 4 classes, 1,000 images, 4×32 ReLU MLP, ½MSE, full batch, η = 10⁻³ | same, longer |
# | generalization (claim 4) | VGG10 with GhostBatchNorm, CIFAR-10 5k, η and τ grids, 5 seeds, full batch and minibatch | **the fMNIST MLP instead of the VGG** (convolutions under `lax.scan` are ~7× slower than their standalone cost on XLA CPU), 2 η × 4 τ × 2 seeds | VGG on CIFAR-10 5k, 3 η × 4 τ × 3 seeds |
#
# The generalization claim is about VGG networks; at `book` scale we test it on the MLP and say so in
# the verdict.

# %% tags=["hide-input"]
import os
import time
import warnings

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from IPython.display import display

from eoslib.engine import data, losses, models, optim, probes, train
from eoslib.mechanisms import adaptive
from eoslib.book.display import claims_table, use_book_style
from eoslib.book.scales import settings
from eoslib.book.results import Claim, make_record, provenance, write_record

use_book_style()
start_time = time.time()

# %% tags=["parameters"]
scale = os.environ.get("EOSLIB_SCALE", "book")  # smoke | book | paper
toy_eta = None  # step size of the 2-D toy (claim 1)
toy_taus = None  # caps of the Clipped-Ada runs on the toy ("inf": no cap)
toy_steps = None  # steps on the toy
b1 = None  # Adam's first-moment decay (RMSprop: 0)
b2 = None  # second-moment decay
eps = None  # ε of the preconditioner
eta = None  # full-batch step size of the threshold runs and the τ sweep (claims 2, 3)
taus = None  # caps of the τ sweep with Adam ("inf": no cap)
n_train = None  # fMNIST training images (first 4 classes)
width = None  # hidden width of the MLP
steps = None  # steps of the threshold runs and the τ sweep
probe_every = None  # steps between probes of the (preconditioned) sharpness
gen_arch = None  # network of the generalization grid: "mlp" (fMNIST) or "vgg" (CIFAR-10)
gen_n_train = None  # training images of the generalization grid
gen_etas = None  # step sizes of the generalization grid
gen_taus = None  # caps of the generalization grid ("inf": no cap)
gen_seeds = None  # initialisation seeds of the generalization grid
gen_steps = None  # steps of each run of the grid
gen_batch_size = None  # minibatch size of the grid's SGD runs (the full-batch runs use all images)
n_test = None  # held-out images for validation accuracy
seed = None  # PRNG seed of the threshold runs and the τ sweep
results_dir = None  # where the results record goes (default: the book's _build/records)

# %%
# caps τ are positive numbers or "inf" (no cap); the τ sweeps must include "inf" (plain Adam, the baseline)
RANGES = {"toy_eta": "float > 0", "toy_taus": "list[float in (0, inf]], non-empty", "toy_steps": "int >= 2",
          "b1": "float in [0, 1)", "b2": "float in (0, 1)", "eps": "float > 0", "eta": "float > 0",
          "taus": "list[float in (0, inf]], contains inf",
          "n_train": "int in [1, 24000]", "width": "int >= 1", "steps": "int >= 2, multiple of probe_every",
          "probe_every": "int >= 1", "gen_arch": "one of mlp, vgg", "gen_n_train": "int >= 1",
          "gen_etas": "list[float > 0], non-empty", "gen_taus": "list[float in (0, inf]], contains inf",
          "gen_seeds": "list[int >= 0], non-empty", "gen_steps": "int >= 4, multiple of 4",
          "gen_batch_size": "int >= 1, <= gen_n_train", "n_test": "int >= 1", "seed": "int >= 0"}
SCALES = {
    "smoke": {"toy_eta": 0.125, "toy_taus": ["inf", 1.0, 0.1], "toy_steps": 100, "b1": 0.9, "b2": 0.999,
              "eps": 1e-8, "eta": 1e-3, "taus": ["inf", 1e-6, 1e-8], "n_train": 200, "width": 32, "steps": 100,
              "probe_every": 50, "gen_arch": "mlp", "gen_n_train": 200, "gen_etas": [1e-3], "gen_taus": ["inf", 1e-6],
              "gen_seeds": [0], "gen_steps": 40, "gen_batch_size": 50, "n_test": 200, "seed": 0},
    "book": {"toy_eta": 0.125, "toy_taus": ["inf", 1.0, 0.1, 0.01], "toy_steps": 400, "b1": 0.9, "b2": 0.999,
             "eps": 1e-8, "eta": 1e-3, "taus": ["inf", 1e-4, 1e-5, 1e-6, 3e-7, 1e-7, 3e-8, 1e-8], "n_train": 1000,
             "width": 32, "steps": 2000, "probe_every": 100, "gen_arch": "mlp", "gen_n_train": 1000,
             "gen_etas": [3e-4, 3e-3], "gen_taus": ["inf", 1e-5, 1e-6, 1e-7], "gen_seeds": [0, 1], "gen_steps": 1000,
             "gen_batch_size": 100, "n_test": 1000, "seed": 0},
    "paper": {"toy_eta": 0.125, "toy_taus": ["inf", 1.0, 0.1, 0.01], "toy_steps": 1000, "b1": 0.9, "b2": 0.999,
              "eps": 1e-8, "eta": 1e-3, "taus": ["inf", 1e-4, 1e-5, 1e-6, 3e-7, 1e-7, 3e-8, 1e-8], "n_train": 1000,
              "width": 32, "steps": 6000, "probe_every": 50, "gen_arch": "vgg", "gen_n_train": 5000,
              "gen_etas": [1e-4, 1e-3, 3e-3], "gen_taus": ["inf", 1e-5, 1e-6, 1e-7], "gen_seeds": [0, 1, 2],
              "gen_steps": 5000, "gen_batch_size": 128, "n_test": 2000, "seed": 0},
}
P = settings(SCALES, scale, RANGES, toy_eta=toy_eta, toy_taus=toy_taus, toy_steps=toy_steps, b1=b1, b2=b2, eps=eps, eta=eta,
             taus=taus, n_train=n_train, width=width, steps=steps, probe_every=probe_every, gen_arch=gen_arch,
             gen_n_train=gen_n_train, gen_etas=gen_etas, gen_taus=gen_taus, gen_seeds=gen_seeds, gen_steps=gen_steps,
             gen_batch_size=gen_batch_size, n_test=n_test, seed=seed)

TOY_TAUS, GEN_TAUS = [float(t) for t in P.toy_taus], [float(t) for t in P.gen_taus]
TAUS = sorted((float(t) for t in P.taus), reverse=True)  # the regimes are read in order of a falling cap
P.as_dict()

# %% [markdown]
# ## 1. Adaptive methods suppress an instability that GD keeps; the cap restores it
#
# On $L(w) = 20\log\cosh w_0 + \tfrac12 w_1^2$ the curvature across the valley is 20 at its floor and
# falls away from it. GD with $\eta = 0.125$ ($\eta\lambda = 2.5 > 2$) cannot settle: it bounces across
# the valley in a period-2 orbit for ever ({func}`eoslib.mechanisms.adaptive.toy_loss`). RMSprop and Adam divide
# the step by $\sqrt{\hat v}$, which early large gradients make big, and slide to the floor. With the cap,
# $P \le \sqrt\tau$: at $\tau = 1$ RMSprop is GD once the cap binds; below 1 it takes larger steps than GD.

# %%
toy = lambda w: adaptive.toy_loss(w, 20.0, 1.0)
w_start = jnp.array([1.5, 2.0])
toy_runs = {"GD": optax.sgd(P.toy_eta)}
for tau in TOY_TAUS:
    label = "" if np.isinf(tau) else f", τ = {tau:g}"
    toy_runs[f"RMSprop{label}"] = optim.clipped_rmsprop(P.toy_eta, tau=tau, b2=P.b2, eps=P.eps)
    toy_runs[f"Adam{label}"] = optim.clipped_adam(P.toy_eta, tau=tau, b1=P.b1, b2=P.b2, eps=P.eps)
paths = {name: np.asarray(adaptive.trajectory(toy, opt, w_start, P.toy_steps).w) for name, opt in toy_runs.items()}
tail = max(2, P.toy_steps // 8)
amplitude = {name: float(np.mean(np.abs(p[-tail:, 0]))) for name, p in paths.items()}
print(f"mean |w0| over the last {tail} steps (the oscillation across the valley; 0 = settled on the floor):")
for name, a in amplitude.items():
    print(f"  {name:<20} {a:.4f}")

# %% mystnb={"figure": {"caption": "The 2-D toy: GD (η·λ = 2.5) keeps bouncing across the valley; RMSprop and Adam settle on its floor; capping the second moment at τ restores the bouncing (RMSprop at τ = 1 is exactly GD once the cap binds). Left: paths in the plane; right: $w_0$ against the step.", "name": "fig-ca-toy"}}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
ww0, ww1 = np.meshgrid(np.linspace(-4.5, 4.5, 200), np.linspace(-0.5, 2.2, 120))
ax1.contour(ww0, ww1, 20 * np.log(np.cosh(ww0)) + 0.5 * ww1**2, levels=20, colors="0.85", linewidths=0.6)
shown = ["GD", "RMSprop", "Adam"] + [n for n in paths if "τ" in n and n.startswith("RMSprop")]
for k, name in enumerate(shown):
    p = paths[name][: min(len(paths[name]), 60)]
    ax1.plot(p[:, 0], p[:, 1], "-o", ms=1.5, lw=0.6, color=f"C{k}", label=name)
    ax2.plot(paths[name][:, 0], lw=0.6, color=f"C{k}", label=name)
ax1.set(xlabel="$w_0$ (sharp)", ylabel="$w_1$ (flat)", title="first 60 steps")
ax2.set(xlabel="step", ylabel="$w_0$")
ax1.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Which threshold does full-batch Adam follow?
#
# Full-batch Adam ($\beta_1 = 0.9$) and RMSprop ($\beta_1 = 0$), no cap, on the fMNIST MLP: one
# `vmap`-ed run over $\beta_1$. Every `probe_every` steps the loop measures the Hessian's sharpness $S$
# and the preconditioned sharpness $\lambda_{\text{eff}}$ with the optimizer's current $P$
# ({func}`eoslib.engine.probes.preconditioned_sharpness`). The plateau is the median of $\lambda_{\text{eff}}$ over
# the second half of the run.

# %%
ds = data.load_fashion_mnist(n=P.n_train, classes=(0, 1, 2, 3))
objective = train.supervised("half_mse")  # ½‖f − y‖², mean over examples
params0 = models.fmnist_mlp(key=jax.random.key(P.seed), width=P.width)
config = train.TrainConfig(steps=P.steps, probe_every=P.probe_every, top_k=1)
adam_hp = lambda hp: optim.clipped_adam(P.eta, tau=hp["tau"], b1=hp["b1"], b2=P.b2, eps=P.eps)
probe = probes.preconditioned_sharpness("half_mse", b2=P.b2, eps=P.eps)
edge_run = train.run(objective, adam_hp, params0, (ds.x, ds.onehot), config, key=jax.random.key(P.seed + 1),
                     hparams={"b1": jnp.asarray([P.b1, 0.0]), "tau": jnp.full(2, jnp.inf)}, probe_fn=probe)
eh = edge_run.history
second_half = eh.probe_step[0] >= P.steps // 2
lam_eff = eh.extra.precond_sharpness
plateau = [float(np.nanmedian(lam_eff[i, second_half])) for i in range(2)]
edges = {"Adam": (adaptive.gd_edge(P.eta), adaptive.adam_edge(P.eta, P.b1)),
         "RMSprop": (adaptive.gd_edge(P.eta), adaptive.adam_edge(P.eta, 0.0))}
ratios = {}
for i, name in enumerate(edges):
    gd_e, adam_e = edges[name]
    ratios[name] = (plateau[i] / gd_e, plateau[i] / adam_e)
    print(f"{name:8} (β1 = {[P.b1, 0.0][i]}): λ_eff plateau {plateau[i]:9.0f}   2/η = {gd_e:7.0f} (ratio {ratios[name][0]:5.2f})   "
          f"(2+2β1)/((1−β1)η) = {adam_e:7.0f} (ratio {ratios[name][1]:5.2f});  S at the end {eh.sharpness[i, -1]:.1f};  "
          f"diverged {bool(edge_run.diverged[i])}")
precond_sharpness_plateau = plateau[0]

# %% mystnb={"figure": {"caption": "Full-batch Adam (β₁ = 0.9) and RMSprop on the fMNIST MLP, η = 10⁻³. Preconditioned sharpness $\\lambda_{\\text{eff}}$ (solid) with the paper's criterion 2/η (dotted) and Cohen et al.'s adaptive edge $(2+2\\beta_1)/((1-\\beta_1)\\eta)$ (dashed, Adam's colour); the first probe, before any gradient has entered $\\hat v$, is off the scale.", "name": "fig-ca-edges"}}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.3))
tp = eh.probe_step[0]
for i, name in enumerate(edges):
    ax1.plot(tp[1:], lam_eff[i, 1:], lw=0.9, color=f"C{i}", label=name)
    ax2.plot(tp, eh.sharpness[i], lw=0.9, color=f"C{i}", label=name)
ax1.axhline(edges["Adam"][1], color="C0", ls="--", lw=0.8)
ax1.axhline(adaptive.gd_edge(P.eta), color="k", ls=":", lw=0.8)
ax1.set(yscale="log", xlabel="step", ylabel="$\\lambda_{\\text{eff}}$", title="preconditioned sharpness")
ax2.set(xlabel="step", ylabel="$S = \\lambda_{\\max}(H)$", title="Hessian sharpness")
ax1.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The cap τ as an instability dial
#
# Adam at the same η, one `vmap`-ed run over the caps `taus`. For each cap: the fraction of
# coordinates it binds on (mean over the second half), the plateaus of $\lambda_{\text{eff}}$ and $S$,
# and whether the run diverged. Once the cap binds everywhere, $P = \sqrt\tau$ and Clipped-Ada is
# momentum GD with step $\eta/\sqrt\tau$, whose edge puts the *Hessian* sharpness at
# $S_\tau = \sqrt\tau\,(2 + 2\beta_1)/((1-\beta_1)\eta)$: the smaller τ, the flatter GD-like training must be.

# %%
tau_run = train.run(objective, adam_hp, params0, (ds.x, ds.onehot), config, key=jax.random.key(P.seed + 2),
                    hparams={"b1": jnp.full(len(TAUS), P.b1), "tau": jnp.asarray(TAUS)}, probe_fn=probe)
th = tau_run.history
half = th.probe_step[0] >= P.steps // 2
with warnings.catch_warnings():  # a diverged run has no finite probe in its second half
    warnings.simplefilter("ignore", RuntimeWarning)
    bound = np.nanmean(th.extra.clipped_fraction[:, half], axis=1)
    lam_tau = np.nanmedian(th.extra.precond_sharpness[:, half], axis=1)
    s_tau = np.nanmedian(th.sharpness[:, half], axis=1)
diverged_tau = np.asarray(tau_run.diverged)
s_gd_like = np.sqrt(np.asarray(TAUS)) * adaptive.adam_edge(P.eta, P.b1)


def regime(i):
    if diverged_tau[i]:
        return "diverged"
    if bound[i] == 0:
        return "adaptive (cap never binds)"
    return "GD-like (binds on ≥ 90%)" if bound[i] >= 0.9 else "mild (binds on some)"


regimes = [regime(i) for i in range(len(TAUS))]
print("   τ        binds on   λ_eff plateau   S plateau   S_τ (GD-like edge)   regime")
for i, tau in enumerate(TAUS):
    print(f"  {tau:8.0e}   {bound[i]:7.1%}   {lam_tau[i]:12.0f}   {s_tau[i]:9.2f}   {s_gd_like[i]:12.2f}        {regimes[i]}")
first_tau = lambda kind: next((t for t, r in zip(TAUS, regimes) if r.startswith(kind)), None)
regime_start = {kind: first_tau(kind) for kind in ("mild", "GD-like", "diverged")}
nu_median = float(np.nanmedian(th.extra.nu_hat_median[int(np.argmax(np.isinf(TAUS))), half]))
print(f"median second moment v̂ over the second half, no cap: {nu_median:.1e}")
print("largest τ of each regime:", {k: (f"{v:g}" if v is not None else "none") for k, v in regime_start.items()})

# %% mystnb={"figure": {"caption": "The τ sweep (Adam, η = 10⁻³). Left: fraction of coordinates the cap binds on (second half of the run). Right: plateaus of the Hessian sharpness $S$, with the GD-like edge $S_\\tau$ (dashed) that applies once the cap binds everywhere; crosses mark diverged runs.", "name": "fig-ca-tau"}}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
x_tau = np.array([t if np.isfinite(t) else max(t for t in TAUS if np.isfinite(t)) * 30 for t in TAUS])
ax1.semilogx(x_tau, np.nan_to_num(bound), "o-", ms=4)
ax2.loglog(x_tau, s_tau, "o-", ms=4, label="$S$ plateau")
ax2.loglog(x_tau[np.isfinite(TAUS)], s_gd_like[np.isfinite(TAUS)], "k--", lw=0.8, label="$S_\\tau$")
ax2.plot(x_tau[diverged_tau], np.full(diverged_tau.sum(), np.nanmax(s_tau) if np.isfinite(s_tau).any() else 1.0), "rx",
         label="diverged")
for ax in (ax1, ax2):
    ax.set_xlabel("τ (rightmost point: no cap)")
ax1.set(ylabel="fraction capped")
ax2.set(ylabel="sharpness")
ax2.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Does tighter clipping with a large step generalize better?
#
# For Adam and RMSprop, full batch and minibatch (`gen_batch_size`), one `vmap`-ed run per
# (optimizer, batching) over the grid η × τ × seed, then validation accuracy on held-out images.
# A diverged run is reported as diverged and left out of the means.

# %%
if P.gen_arch == "mlp":
    gen_train = data.load_fashion_mnist(n=P.gen_n_train, classes=(0, 1, 2, 3))
    gen_test = data.load_fashion_mnist("test", n=P.n_test, classes=(0, 1, 2, 3), stats=(gen_train.mean, gen_train.std))
    make_net = lambda key: models.fmnist_mlp(key=key, width=P.width)
else:
    gen_train = data.load_cifar10(n=P.gen_n_train)
    gen_test = data.load_cifar10("test", n=P.n_test, stats=(gen_train.mean, gen_train.std))
    make_net = lambda key: models.VGG(ghost_size=128, key=key)
grid = [(e, t, s) for e in P.gen_etas for t in GEN_TAUS for s in P.gen_seeds]
g_eta, g_tau, g_seed = (np.array(v) for v in zip(*grid))
init = jax.vmap(make_net)(jax.vmap(jax.random.key)(jnp.asarray(g_seed)))
gen_opt = lambda hp: optim.clipped_adam(hp["eta"], tau=hp["tau"], b1=hp["b1"], b2=P.b2, eps=P.eps)
val_acc, gen_diverged = {}, {}
for opt_name, beta1 in (("Adam", P.b1), ("RMSprop", 0.0)):
    for batching, batch_size in (("full batch", None), ("minibatch", P.gen_batch_size)):
        result = train.run(objective, gen_opt, init, (gen_train.x, gen_train.onehot),
                           train.TrainConfig(steps=P.gen_steps, batch_size=batch_size, chunks=4),
                           key=jax.random.key(P.seed + 3), batched_params=True,
                           hparams={"eta": jnp.asarray(g_eta), "tau": jnp.asarray(g_tau), "b1": jnp.full(len(grid), beta1)})
        acc = np.asarray(jax.vmap(lambda p: losses.accuracy(p(gen_test.x), gen_test.onehot))(result.state.params))
        gen_diverged[opt_name, batching] = np.asarray(result.diverged)
        val_acc[opt_name, batching] = np.where(result.diverged, np.nan, acc)


def cell(opt_name, batching, e, t):
    """Mean and spread (max − min) of validation accuracy over seeds, and how many diverged."""
    sel = (g_eta == e) & (g_tau == t)
    acc, div = val_acc[opt_name, batching][sel], gen_diverged[opt_name, batching][sel]
    ok = acc[~div]
    return (float(ok.mean()) if ok.size else float("nan"), float(np.ptp(ok)) if ok.size else float("nan"), int(div.sum()))


for key in val_acc:
    print(f"{key[0]}, {key[1]}: validation accuracy, mean over {len(P.gen_seeds)} seed(s) (rows η, columns τ)")
    print("            " + "".join(f"{('no cap' if np.isinf(t) else f'τ={t:g}'):>16}" for t in GEN_TAUS))
    for e in P.gen_etas:
        row = [cell(*key, e, t) for t in GEN_TAUS]
        print(f"  η={e:<8g}" + "".join(f"{m:10.3f}±{s:.3f}" + (f" ({d}✗)" if d else "") for m, s, d in row))

# %% mystnb={"figure": {"caption": "Validation accuracy against τ for each step size, optimizer and batching (mean over seeds; error bar: range). The paper's claim: with a large η, a tighter cap (smaller τ) does better.", "name": "fig-ca-generalization"}}
fig, axes = plt.subplots(1, len(val_acc), figsize=(3.2 * len(val_acc), 3.0), sharey=True, squeeze=False)
pos = np.arange(len(GEN_TAUS))
for ax, key in zip(axes[0], val_acc):
    for j, e in enumerate(P.gen_etas):
        stats_ = np.array([cell(*key, e, t)[:2] for t in GEN_TAUS])
        ax.errorbar(pos + 0.05 * j, stats_[:, 0], yerr=stats_[:, 1] / 2, fmt="o-", ms=3, lw=0.8, label=f"η = {e:g}")
    ax.set_xticks(pos, ["no cap" if np.isinf(t) else f"{t:g}" for t in GEN_TAUS], fontsize=7)
    ax.set(title=f"{key[0]}, {key[1]}", xlabel="τ")
axes[0, 0].set_ylabel("validation accuracy")
axes[0, 0].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Paper vs ours
#
# Each row's rule was fixed before the runs and is stated in its "why" column.

# %%
# Claim 1: GD keeps oscillating, plain RMSprop/Adam settle, some cap restores the oscillation.
gd_unstable = amplitude["GD"] > 0.1
suppressed = amplitude["RMSprop"] < 1e-3 and amplitude["Adam"] < 1e-3
restored = {opt: [t for t in TOY_TAUS if np.isfinite(t) and amplitude[f"{opt}, τ = {t:g}"] > 0.1] for opt in ("RMSprop", "Adam")}
toy_ok = gd_unstable and suppressed and all(restored.values())

# Claim 2: which threshold λ_eff follows (within 20%), for Adam; RMSprop's two thresholds coincide.
near = lambda r: 0.8 <= r <= 1.2
adam_factor = adaptive.adam_edge(P.eta, P.b1) * P.eta  # 38 at β₁ = 0.9
adam_follows = ("Cohen et al." if near(ratios["Adam"][1]) else "the paper's 2/η" if near(ratios["Adam"][0]) else "neither")
rms_at_edge = near(ratios["RMSprop"][0])
edge_verdict = ("reproduced" if adam_follows == "the paper's 2/η" and rms_at_edge else
                "partly reproduced" if adam_follows != "neither" or rms_at_edge else "not reproduced")

# Claim 3: the regimes appear in order as τ falls: adaptive → mild → GD-like or diverged.
order = {"adaptive": 0, "mild": 1, "GD-like": 2, "diverged": 3}
ranks = [order[r.split(" ")[0]] for r in regimes]
monotone = all(a <= b for a, b in zip(ranks, ranks[1:]))
seen = {r.split(" ")[0] for r in regimes}
tau_ok = bool(monotone) and {"adaptive", "mild"} <= seen and bool({"GD-like", "diverged"} & seen)

# Claim 4: at the largest step size, the best finite cap beats no cap by more than the seed range, per setting.
eta_big = max(P.gen_etas)
gains = {}
for key in val_acc:
    base, base_spread, _ = cell(*key, eta_big, np.inf)
    clipped = [(cell(*key, eta_big, t), t) for t in GEN_TAUS if np.isfinite(t)]
    clipped = [(c, t) for c, t in clipped if np.isfinite(c[0])]
    if not clipped or not np.isfinite(base):
        gains[key] = (float("nan"), None, float("nan"))
        continue
    (best, spread, _), t_best = max(clipped, key=lambda ct: ct[0][0])
    gains[key] = (best - base, t_best, max(spread, base_spread))
wins = [k for k, (g, _, s) in gains.items() if np.isfinite(g) and g > s]
gen_verdict = ("reproduced" if len(wins) == len(gains) else "partly reproduced" if wins else "not reproduced")
adam_fb = gains[("Adam", "full batch")]
best_tau = adam_fb[1]
best_tau_acc = cell("Adam", "full batch", eta_big, best_tau)[0] if best_tau is not None else float("nan")
no_cap_acc = cell("Adam", "full batch", eta_big, np.inf)[0]

claims = [
    Claim("toy-suppression",
          "adaptive methods suppress an instability GD keeps; capping v̂ at τ restores it",
          "App. I, Fig. 20 (2-D toy; figure only)",
          f"|w0| amplitude GD {amplitude['GD']:.3f}, RMSprop {amplitude['RMSprop']:.1e}, Adam {amplitude['Adam']:.1e}; "
          f"restored by RMSprop τ ∈ {restored['RMSprop']}, Adam τ ∈ {restored['Adam']}",
          "reproduced" if toy_ok else ("partly reproduced" if gd_unstable and suppressed else "not reproduced"),
          "GD's oscillation > 0.1, plain RMSprop and Adam < 10⁻³, and some cap brings both back above 0.1"
          if toy_ok else "one of: GD oscillating, plain adaptive settling, a cap restoring both, fails"),
    Claim("stability-threshold",
          "full-batch λ_eff rises to the stability threshold and hovers there; which threshold?",
          f"η λ_eff < 2 (App. J, Eq. 39); Cohen et al. 2022: (2+2β₁)/((1−β₁)η) = {adam_factor:g}/η for Adam (β₁ = {P.b1:g})",
          f"Adam λ_eff plateau {plateau[0]:.0f} = {ratios['Adam'][0]:.1f}×(2/η) = {ratios['Adam'][1]:.2f}×({adam_factor:g}/η); "
          f"RMSprop {plateau[1]:.0f} = {ratios['RMSprop'][0]:.2f}×(2/η)",
          edge_verdict,
          f"Adam follows {adam_follows} (within 20%); RMSprop {'is' if rms_at_edge else 'is not'} at 2/η"
          + ("; the paper's criterion ignores Adam's momentum, which raises the edge (1+β₁)/(1−β₁)-fold"
             if adam_follows == "Cohen et al." else "")),
    Claim("tau-regimes",
          "lowering τ moves runs from suppressed (adaptive) through mild and GD-like to unstable",
          "Sec. 8.1 regimes: τ→∞ adaptive; large τ mild; τ ≈ 1 GD-like; τ < 1 enhanced instability",
          "; ".join(f"τ={t:g}: {r.split(' ')[0]}" for t, r in zip(TAUS, regimes)),
          "reproduced" if tau_ok else ("partly reproduced" if len(seen) >= 2 else "not reproduced"),
          ("regimes appear in order as τ falls: " if tau_ok else "the regimes do not all appear in order: ")
          + ", ".join(k for k in order if k in seen) + f" seen; the cap starts to bind at τ ~ v̂ (median {nu_median:.0e}), "
          "not near 1" + ("" if "GD-like" in seen else "; no stable GD-like regime at this η: runs diverge first")),
    Claim("generalization",
          "with a large η, tighter clipping improves validation accuracy (Adam and RMSprop, full batch and minibatch)",
          "Fig. 10: VGG10, CIFAR-10 5k, 5 seeds (figure only)",
          "; ".join(f"{k[0]} {k[1]}: {g:+.3f} at τ={t:g}" if t is not None else f"{k[0]} {k[1]}: no finite run"
                    for k, (g, t, _) in gains.items()) + f" (η = {eta_big:g}, {P.gen_arch})",
          gen_verdict,
          (f"gain of the best cap over no cap exceeds the seed range in {len(wins)} of {len(gains)} settings"
           + ("" if P.gen_arch == "vgg" else "; on the fMNIST MLP, not the paper's VGG on CIFAR-10"))),
]
display(claims_table(claims))

# %% [markdown]
# ## Verdict
#
# The table above is the verdict; what we read from it at `book` scale:
#
# - **The toy** shows the mechanism plainly: dividing by $\sqrt{\hat v}$ lets RMSprop and Adam settle
#   where GD bounces, and the cap gives the bounce back — at τ = 1 RMSprop *is* GD, and smaller caps
#   bounce harder, which is the paper's list of regimes.
# - **The threshold**: full-batch Adam's preconditioned sharpness does rise to a threshold and hovers
#   there, but the threshold is Cohen et al.'s $(2 + 2\beta_1)/((1-\beta_1)\eta)$, 19× the paper's
#   $2/\eta$ at β₁ = 0.9. The paper's criterion (our reconstruction of Eq. 39) is right for RMSprop and
#   misses Adam's momentum. So a cap "restores instability" only once it pushes $\lambda_{\text{eff}}$
#   past that edge (38/η at β₁ = 0.9), not 2/η.
# - **τ on a network**: the second moments of a trained network are tiny (the median $\hat v$ is printed
#   above the τ figure), so the regimes are set by $\hat v$, not by τ = 1; the table shows where each
#   begins for this model, and whether a stable GD-like regime exists at this η before runs diverge.
# - **Generalization** is measured on the MLP at `book` scale, on small grids and few seeds; the
#   paper's VGG experiment needs the `paper` scale on a GPU, which this book's CPU build does not run.

# %% tags=["hide-input"]
# Invariants of the machinery, true at every scale (not the paper's claims):
assert np.allclose(paths["GD"][1], w_start - P.toy_eta * np.asarray(jax.grad(toy)(w_start)))
assert not bool(edge_run.diverged[0])  # plain Adam at this η is stable
assert np.all(np.isfinite(lam_eff[:, 1:]))
assert np.all(bound[np.isinf(TAUS)] == 0)  # no cap binds on nothing

# %% tags=["hide-input"]
metrics = {
    "eta": P.eta,
    "b1": P.b1,
    "precond_sharpness_plateau": precond_sharpness_plateau,
    "precond_sharpness_plateau_rmsprop": plateau[1],
    "adam_edge": adaptive.adam_edge(P.eta, P.b1),
    "gd_edge": adaptive.gd_edge(P.eta),
    "toy_amplitude_gd": amplitude["GD"],
    "toy_amplitude_rmsprop": amplitude["RMSprop"],
    "toy_amplitude_adam": amplitude["Adam"],
    "tau_clipped_fraction": [float(v) for v in bound],  # in the order of falling τ (taus sorted)
    "tau_sharpness_plateau": [float(v) for v in s_tau],
    "tau_diverged": [bool(v) for v in diverged_tau],
    "nu_hat_median": nu_median,
    "best_tau": float(best_tau) if best_tau is not None else float("nan"),
    "best_tau_val_accuracy": float(best_tau_acc),
    "no_cap_val_accuracy": float(no_cap_acc),
    "generalization_gains": [float(g) for g, _, _ in gains.values()],  # Adam fb, Adam mb, RMSprop fb, RMSprop mb
}
record = make_record("clipped-ada", scale, P.as_dict(), claims, metrics,
                     provenance(start_time, data_source=ds.source, n_train=len(ds)))
print("record written to", write_record(record, results_dir))
