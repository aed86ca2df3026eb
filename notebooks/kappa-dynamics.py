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
# # κ dynamics: training instabilities induce a flatness bias
#
# **Claim** ({cite:t}`wang2025flatness`, Sec. 5 and App. F; {cite:t}`wang2024stability`, Figs. 2, 4, 8).
# During an instability of gradient descent the top Hessian eigenvectors rotate, and a
# higher-order curvature measure κ fluctuates with a size that grows with the *instability surplus*
# $s = \eta\lambda - c$. A mean-zero walk in $\log\kappa$ whose step grows with κ drifts to the left in
# median and becomes right-skewed: GD spends more and more time where κ is small — a bias towards
# flatter regions ("progressive flattening").
#
# Our copy of the journal paper lost its math symbols. The model we simulate, reconstructed from the
# surrounding text (and stated in {mod}`eoslib.mechanisms.kappa`), is
#
# $$\log\kappa_{t+1} = \log\kappa_t + \xi_t\, g(s_t), \qquad s_t = \eta\,(f(\kappa_t) + \varepsilon_t) - c,$$
#
# with Rademacher signs $\xi_t$, $g$ increasing, $f$ non-decreasing, and absorption the first time
# $s \le 0$. The concrete $f$, $g$ and initial laws of the paper's three simulated cases were not in our
# copy either; ours are listed below. On networks, κ is measured as the fourth directional derivative
# $D^4L[u,u,u,u]$ along the top eigenvector $u$, exactly (nested `jvp`) and by the finite-difference
# proxy $12[L(\theta+ru)+L(\theta-ru)-2L(\theta)-r^2u^\top Hu]/r^4$ (our reading of the paper's Eq. 26).
#
# ## Setup
#
# | | paper | `book` scale (2-core CPU) | `paper` scale |
# |---|---|---|---|
# | simulation | App. F.11, one-dimensional model, Cases I–III | 20,000 trajectories × 4,000 steps per case | 100,000 × 10,000 |
# | data | fMNIST, first 4 classes, 1,000 training images | same | same |
# | model | MLP, 4 hidden layers of 32, ReLU | same (`fmnist_mlp(width=32)`) | same |
# | training | full-batch GD, fixed η (λ > 20 marks an instability) | ½MSE, η = 0.1 (2/η = 20), 3,000 steps | 6,000 steps |
# | interventions | η_low = 0.2η at several steps of an instability; η reduced to 0.01 at several epochs from several η₀ | same, 3 switch times; η₀ ∈ {0.1, 0.2}, 4 reduction steps | 6 reduction steps |
#
# The paper does not say which loss its fMNIST MLPs use for these figures; we use ½MSE (with
# cross-entropy the fMNIST runs reach 100% training accuracy within a few hundred steps and the
# sharpness then decays, leaving no sustained instability to study).

# %% tags=["hide-input"]
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from IPython.display import display
from scipy import stats

from eoslib.engine import data, hessian, models, optim, probes, train
from eoslib.mechanisms import kappa
from eoslib.book.display import claims_table, use_book_style
from eoslib.book.scales import settings
from eoslib.book.results import Claim, make_record, provenance, write_record

use_book_style()
start_time = time.time()

# %% tags=["parameters"]
scale = os.environ.get("EOSLIB_SCALE", "book")  # smoke | book | paper
cases = None  # which simulated cases to run, a subset of I, II, III
n_trajectories = None  # trajectories per simulated case
sim_steps = None  # steps of the simulated model
eta = None  # GD step size of the fMNIST MLP (claims 2 and 3)
steps = None  # GD steps of the fMNIST MLP run
probe_every = None  # steps between curvature probes of that run
kappa_radius = None  # radius r of the finite-difference κ proxy
n_train = None  # fMNIST training images (first 4 classes, balanced)
width = None  # hidden width of the MLP
low_factor = None  # η_low / η of the stability intervention
window = None  # steps of eigenvector tracking after the start of the studied instability
eta0s = None  # initial step sizes of the progressive-flattening runs (claim 4)
reduce_at = None  # steps at which η drops to eta_small (claim 4)
eta_small = None  # step size after the reduction
stable_steps = None  # steps of the stable phase over which S_max is taken
seed = None  # PRNG seed (initialisation and simulation)
results_dir = None  # where the results record goes (default: the book's _build/records)

# %%
RANGES = {"cases": "list[kappa-case], non-empty", "n_trajectories": "int >= 10", "sim_steps": "int >= 4, multiple of 4",
          "eta": "float > 0", "steps": "int >= 1, multiple of probe_every", "probe_every": "int >= 1",
          "kappa_radius": "float > 0", "n_train": "int in [1, 24000]", "width": "int >= 1",
          "low_factor": "float in (0, 1)", "window": "int >= 4, multiple of 2", "eta0s": "list[float > 0], non-empty",
          "reduce_at": "list[int >= 0], non-empty", "eta_small": "float > 0", "stable_steps": "int >= 1",
          "seed": "int >= 0"}
SCALES = {
    "smoke": {"cases": ["I", "II", "III"], "n_trajectories": 500, "sim_steps": 200, "eta": 0.1, "steps": 200,
              "probe_every": 10, "kappa_radius": 0.05, "n_train": 200, "width": 32, "low_factor": 0.2,
              "window": 20, "eta0s": [0.1, 0.2], "reduce_at": [40, 80], "eta_small": 0.01, "stable_steps": 100,
              "seed": 0},
    "book": {"cases": ["I", "II", "III"], "n_trajectories": 20000, "sim_steps": 4000, "eta": 0.1, "steps": 3000,
             "probe_every": 5, "kappa_radius": 0.05, "n_train": 1000, "width": 32, "low_factor": 0.2,
             "window": 120, "eta0s": [0.1, 0.2], "reduce_at": [250, 750, 1500, 2500], "eta_small": 0.01,
             "stable_steps": 3000, "seed": 0},
    "paper": {"cases": ["I", "II", "III"], "n_trajectories": 100000, "sim_steps": 10000, "eta": 0.1,
              "steps": 6000, "probe_every": 5, "kappa_radius": 0.05, "n_train": 1000, "width": 32,
              "low_factor": 0.2, "window": 200, "eta0s": [0.1, 0.15, 0.2],
              "reduce_at": [250, 750, 1500, 2500, 3500, 5000], "eta_small": 0.01, "stable_steps": 6000, "seed": 0},
}
P = settings(SCALES, scale, RANGES, cases=cases, n_trajectories=n_trajectories, sim_steps=sim_steps, eta=eta, steps=steps,
             probe_every=probe_every, kappa_radius=kappa_radius, n_train=n_train, width=width,
             low_factor=low_factor, window=window, eta0s=eta0s, reduce_at=reduce_at, eta_small=eta_small,
             stable_steps=stable_steps, seed=seed)
P.as_dict()

# %% [markdown]
# ## 1. The coupled instability model
#
# Our instances (λ = f(κ) = κ, η = 1, c = 1, so the exit is κ ≤ 1; fluctuation scale 0.1):
#
# | case | g(s) | log κ₀ | what it tests |
# |---|---|---|---|
# | I | 0.1 s/(1+s): Lipschitz in log κ | N(1, 0.1²) | the theorems' setting (unimodal, Lipschitz) |
# | II | 0.1 √(s/(1+s)): not Lipschitz at the exit | N(1, 0.1²) | relaxed regularity |
# | III | as I | ½N(0.6, 0.08²) + ½N(1.6, 0.08²) | a bimodal start |
#
# **The theorems, checked numerically.** (a) *Point-mass contraction* (Thm. 5.4): from any point, of
# the four two-step sign strings, $(+,+)$ moves right and $(+,-)$, $(-,+)$, $(-,-)$ move left, while
# the mean displacement is zero (a martingale). (b) *Median drift* (Thm. 5.12): the median of
# $\log\kappa$ at even times does not increase. (c) *Mode ≤ median* and right skew (Prop. 5.11,
# Cor. 5.13) for Case I.

# %%
sim_key = jax.random.key(P.seed)
record_every = P.sim_steps // 4
sims, summaries = {}, {}
grid = jnp.linspace(0.05, 3.0, 200)
branch_checks = {}
for name in P.cases:
    model = kappa.CASES[name]
    k_init, k_run, sim_key = jax.random.split(sim_key, 3)
    x0 = kappa.initial_log_kappa(model, P.n_trajectories, k_init)
    sims[name] = kappa.simulate(model, x0, P.sim_steps, key=k_run, record_every=record_every)
    summaries[name] = [kappa.distribution_summary(row) for row in sims[name].log_kappa]
    d = np.asarray(kappa.two_step_branches(model, grid))
    branch_checks[name] = dict(left=bool(np.all(d[:, 1:] < 0)), right=bool(np.all(d[:, 0] > 0)),
                               mean=float(np.max(np.abs(d.mean(axis=1)))))
print(" case  time   median   mode     mean    skew   spread  exited")
for name in P.cases:
    sim = sims[name]
    for t, s, ex in zip(sim.times, summaries[name], sim.exited):
        print(f" {name:<4} {t:>5} {s.median:8.3f} {s.mode:8.3f} {s.mean:8.3f} {s.skewness:7.3f} {s.spread:7.3f} {ex.mean():6.1%}")
for name, c in branch_checks.items():
    print(f"case {name}: (+,+) right everywhere {c['right']}; the other three left everywhere {c['left']}; "
          f"max |mean two-step displacement| {c['mean']:.1e}")

# %% mystnb={"figure": {"caption": "The coupled model, Cases I–III: the density of $\\log\\kappa$ (Gaussian KDE over all trajectories, absorbed ones at their exit value) at four times; the median drifts left and the law grows a right tail.", "name": "fig-kappa-sim"}}
fig, axes = plt.subplots(1, len(P.cases), figsize=(4 * len(P.cases), 3.2), squeeze=False)
for ax, name in zip(axes[0], P.cases):
    sim = sims[name]
    xs = np.linspace(np.percentile(sim.log_kappa, 0.5), np.percentile(sim.log_kappa, 99.5), 400)
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(sim.times)))
    for row, t, c, s in zip(sim.log_kappa, sim.times, colors, summaries[name]):
        ax.plot(xs, stats.gaussian_kde(row)(xs), color=c, lw=1, label=f"t = {t}")
        ax.axvline(s.median, color=c, ls=":", lw=0.8)
    ax.set(title=kappa.CASES[name].name, xlabel="$\\log\\kappa$", ylabel="density")
axes[0, 0].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. κ on a real network
#
# Full-batch GD on the fMNIST MLP. Every `probe_every` steps the loop measures the top Hessian
# eigenpair (warm-started Lanczos) and κ along $u$ both ways ({func}`eoslib.engine.probes.curvature`).
# An *instability* is a maximal run of probes with $S > 2/\eta$ (surplus $s = \eta S - 2 > 0$).

# %%
ds = data.load_fashion_mnist(n=P.n_train, classes=(0, 1, 2, 3))
params0 = models.fmnist_mlp(key=jax.random.key(P.seed), width=P.width)
objective = train.supervised("half_mse")  # ½‖f − y‖², mean over examples
config = train.TrainConfig(steps=P.steps, probe_every=P.probe_every, top_k=1)
run = train.run(objective, lambda hp: optax.sgd(P.eta), params0, (ds.x, ds.onehot), config,
                key=jax.random.key(P.seed + 1), probe_fn=probes.curvature("half_mse", radius=P.kappa_radius))
h = run.history
S, tp = h.sharpness, h.probe_step
k_exact, k_proxy = h.extra.kappa_exact, h.extra.kappa_proxy
edge = 2 / P.eta
unstable = S > edge
starts = np.nonzero(unstable & ~np.concatenate([[False], unstable[:-1]]))[0]
ends = np.nonzero(unstable & ~np.concatenate([unstable[1:], [False]]))[0]
episodes = list(zip(starts, ends))
print(f"{P.width}-wide MLP on {len(ds)} fMNIST images ({ds.source}); η = {P.eta}; diverged: {bool(run.diverged)}")
print(f"{len(episodes)} instabilities (runs of probes with S > {edge:.0f}); κ exact > 0 at {np.mean(k_exact > 0):.0%} of probes")

finite = np.isfinite(k_exact) & np.isfinite(k_proxy)
kappa_proxy_pearson = float(stats.pearsonr(k_proxy[finite], k_exact[finite])[0]) if finite.sum() > 2 else float("nan")
# the paper's App. F.2 statistic: |Δ log κ| between consecutive probes against λ, during instabilities
pos = (k_exact > 0) & np.isfinite(k_exact)
dlog = np.abs(np.diff(np.log(np.where(pos, k_exact, np.nan))))
pair = unstable[:-1] & np.isfinite(dlog)
variability_pearson = float(stats.pearsonr(S[:-1][pair], dlog[pair])[0]) if pair.sum() > 2 else float("nan")
# progressive flattening across cycles: κ at each instability's first probe, against its index
entry_kappa = np.array([k_exact[a] for a, _ in episodes])
flattening_rho = (float(stats.spearmanr(np.arange(len(entry_kappa)), entry_kappa)[0])
                  if len(entry_kappa) >= 3 else float("nan"))
flattening_p = (float(stats.spearmanr(np.arange(len(entry_kappa)), entry_kappa)[1])
                if len(entry_kappa) >= 3 else float("nan"))
print(f"Pearson(proxy, exact) over all probes: {kappa_proxy_pearson:.3f}")
print(f"Pearson(λ, |Δ log κ|) during instabilities ({pair.sum()} pairs): {variability_pearson:.3f}  (paper, App. F.2: 0.59)")
print(f"Spearman(episode index, κ at episode entry) over {len(entry_kappa)} episodes: {flattening_rho:.3f} (p = {flattening_p:.2g})")

# %% mystnb={"figure": {"caption": "fMNIST MLP, full-batch GD at $\\eta = 0.1$. Top: sharpness with $2/\\eta$ dashed; instabilities shaded. Bottom: κ along the top eigenvector, exact (nested jvp) and finite-difference proxy.", "name": "fig-kappa-network"}}
fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True)
ax1.plot(tp, S, lw=0.7)
ax1.axhline(edge, color="k", ls="--", lw=0.8)
for a, b in episodes:
    for ax in (ax1, ax2):
        ax.axvspan(tp[a], tp[b], color="C3", alpha=0.12, lw=0)
ax2.plot(tp, k_exact, lw=0.7, label="exact $D^4L[u,u,u,u]$")
ax2.plot(tp, k_proxy, lw=0.5, alpha=0.7, label=f"proxy, r = {P.kappa_radius}")
ax2.set_yscale("symlog", linthresh=1.0)
ax1.set(ylabel="sharpness $S$")
ax2.set(xlabel="step", ylabel="κ")
ax2.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Eigenvector rotation during an instability, and its reversal
#
# We take the longest instability of the run above, define the baseline as the top-3 eigenvectors at
# its first probe $t_0$, and follow for `window` steps (at even steps: the ReLU network's oscillation
# has period 2, companion paper Fig. 8) the |cos| of each eigenvector with its baseline and the
# cosine-Grassmannian similarity of the top-3 subspaces ({func}`eoslib.engine.probes.rotation`). One
# `vmap`-ed sweep replays the run from step 0 for each member: one keeps η, the others drop to
# $\eta_{\text{low}} = 0.2\eta$ at three steps inside the window.

# %%
long = max(episodes, key=lambda e: e[1] - e[0]) if episodes else (len(tp) // 2, len(tp) // 2)
t0 = int(tp[long[0]]) // 2 * 2
pre = train.run(objective, lambda hp: optax.sgd(P.eta), params0, (ds.x, ds.onehot),
                train.TrainConfig(steps=max(t0, 2), probe_every=0, chunks=1), key=jax.random.key(P.seed + 1),
                progress=False)
theta0 = pre.state.params
loss_fn = lambda p: objective(p, ds.x, ds.onehot, {})[0]
_, base = hessian.top_eigenpairs(loss_fn, theta0, 3, key=jax.random.key(7), tol=1e-5, max_restarts=10)
switch = [np.inf] + [t0 + max(2, int(f * P.window)) // 2 * 2 for f in (0.15, 0.35, 0.6)]
members = len(switch)
sched = lambda hp: optax.sgd(optim.step_decay(P.eta, at=hp["switch"] - t0, factor=P.low_factor))  # this run starts at t0
rot = train.run(objective, sched, jax.tree.map(lambda a: jnp.broadcast_to(a, (members,) + a.shape), theta0),
                (ds.x, ds.onehot), train.TrainConfig(steps=P.window, probe_every=2, top_k=3, chunks=2),
                key=jax.random.key(P.seed + 3), batched_params=True,
                hparams={"switch": jnp.asarray(switch, jnp.float32), "baseline": jnp.broadcast_to(base, (members,) + base.shape)},
                probe_fn=probes.rotation())
rt = t0 + rot.history.probe_step[0]
sub, cos_k = rot.history.extra.subspace, rot.history.extra.cosines
after = {}
for m in range(1, members):
    at = np.searchsorted(rt, switch[m])
    after[m] = (float(sub[m, at]), float(sub[m, -1]), float(sub[0, -1]))
print(f"studied instability: probes {long[0]}–{long[1]} (steps {tp[long[0]]}–{tp[long[1]]}); baseline at step {t0}")
print(f"keeping η: top-3 subspace similarity {sub[0, 0]:.3f} → {sub[0, -1]:.3f}; "
      f"per-eigenvector |cos| at the end {np.round(cos_k[0, -1], 3)}")
for m, (s_at, s_end, s_keep) in after.items():
    print(f"η → {P.low_factor}η at step {int(switch[m])}: subspace similarity {s_at:.3f} at the switch → {s_end:.3f} at the end "
          f"(kept-η run ends at {s_keep:.3f})")

# %% mystnb={"figure": {"caption": "Eigenvector rotation across the longest instability. Left: |cos| of each of the top-3 eigenvectors with its baseline, and the top-3 subspace similarity (black), keeping η. Right: subspace similarity when η drops to $0.2\\eta$ at the marked steps.", "name": "fig-kappa-rotation"}}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.3), sharey=True)
for k in range(3):
    ax1.plot(rt, cos_k[0, :, k], lw=0.8, label=f"eigenvector {k + 1}")
ax1.plot(rt, sub[0], "k", lw=1.2, label="top-3 subspace")
ax2.plot(rt, sub[0], "k", lw=1.2, label="keep η")
for m in range(1, members):
    ax2.plot(rt, sub[m], lw=0.9, color=f"C{m}", label=f"0.2η from step {int(switch[m])}")
    ax2.axvline(switch[m], color=f"C{m}", ls=":", lw=0.8)
ax1.set(xlabel="step", ylabel="similarity to baseline")
ax2.set(xlabel="step")
ax1.legend(fontsize=7)
ax2.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Progressive flattening: $S_{\max}$ after a step-size reduction
#
# Each member trains at $\eta_0$ until `reduce_at`, then at $\eta_{\text{small}} = 0.01$ (stable: the
# sharpness is far below $2/\eta_{\text{small}} = 200$), where progressive sharpening reveals the
# landscape's sharpness ceiling. $S_{\max}$ is the largest sharpness over the `stable_steps` after the
# reduction. The claim: $S_{\max}$ falls with a later reduction and a larger $\eta_0$. `smax_trend` is
# the least-squares slope of $S_{\max}$ against the reduction step, averaged over $\eta_0$.

# %%
grid_eta0, grid_at = np.meshgrid(P.eta0s, P.reduce_at, indexing="ij")
flat_eta0, flat_at = grid_eta0.ravel(), grid_at.ravel()
total = int(max(P.reduce_at) + P.stable_steps)
probe_c = max(10, P.stable_steps // 60)
total = -(-total // probe_c) * probe_c
flat_sched = lambda hp: optax.sgd(optim.step_decay(hp["eta0"], at=hp["reduce_at"], to=P.eta_small))
flat_run = train.run(objective, flat_sched, params0, (ds.x, ds.onehot),
                     train.TrainConfig(steps=total, probe_every=probe_c, top_k=1),
                     key=jax.random.key(P.seed + 4),
                     hparams={"eta0": jnp.asarray(flat_eta0, jnp.float32), "reduce_at": jnp.asarray(flat_at, jnp.float32)})
fp, fS = flat_run.history.probe_step[0], flat_run.history.sharpness
smax = np.array([np.nanmax(np.where((fp >= a) & (fp < a + P.stable_steps), fS[i], np.nan))
                 for i, a in enumerate(flat_at)]).reshape(grid_eta0.shape)
slopes = [float(np.polyfit(P.reduce_at, smax[j], 1)[0]) if len(P.reduce_at) > 1 else float("nan")
          for j in range(len(P.eta0s))]
smax_trend = float(np.mean(slopes))
print("S_max (rows: η0, columns: reduction step " + ", ".join(map(str, P.reduce_at)) + ")")
for e0, row, sl in zip(P.eta0s, smax, slopes):
    print(f"  η0 = {e0:<5} " + "  ".join(f"{v:7.2f}" for v in row) + f"   slope {sl:+.2e} per step")
print(f"diverged members: {int(flat_run.diverged.sum())}")

# %% mystnb={"figure": {"caption": "Progressive flattening on fMNIST: the largest sharpness $S_{\\max}$ reached in the stable phase at $\\eta = 0.01$, against the step at which $\\eta_0$ was reduced, for each $\\eta_0$ (companion paper Fig. 4).", "name": "fig-kappa-flattening"}}
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for j, e0 in enumerate(P.eta0s):
    ax.plot(P.reduce_at, smax[j], "o-", ms=4, label=f"η₀ = {e0}")
ax.set(xlabel="reduction step", ylabel="$S_{\\max}$ after reduction")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Paper vs ours
#
# Each row's rule was fixed before the runs and is stated in its "why" column.

# %%
case_rows = {}
for name in P.cases:
    first, last = summaries[name][0], summaries[name][-1]
    even_medians = [s.median for t, s in zip(sims[name].times, summaries[name]) if t % 2 == 0]
    case_rows[name] = dict(drift=last.median - first.median, skew=last.skewness, mode_le_median=last.mode <= last.median,
                           monotone=bool(np.all(np.diff(even_medians) <= 1e-9)), branches=branch_checks[name])
c1 = case_rows.get("I")
case1_median_drift = c1["drift"] if c1 else float("nan")
case1_skewness = c1["skew"] if c1 else float("nan")
theorems_ok = all(r["branches"]["left"] and r["branches"]["right"] and r["branches"]["mean"] < 1e-5 for r in case_rows.values())
case_i_ok = bool(c1 and c1["drift"] < 0 and c1["monotone"] and c1["skew"] > 0 and c1["mode_le_median"])
others_ok = all(r["drift"] < 0 and r["skew"] > 0 for n, r in case_rows.items() if n != "I")

variability_ok = bool(np.isfinite(variability_pearson) and variability_pearson > 0
                      and pair.sum() > 2 and stats.pearsonr(S[:-1][pair], dlog[pair])[1] < 0.05)
flattening_ok = bool(np.isfinite(flattening_rho) and flattening_rho < 0 and flattening_p < 0.05)

rotated = bool(sub[0, -1] < sub[0, 0] - 0.02)
reversals = [s_end > s_at for s_at, s_end, _ in after.values()]
reversed_ok = bool(rotated and all(reversals))

flatten_ok = bool(smax_trend < 0 and (len(P.eta0s) < 2 or np.mean(smax[-1]) < np.mean(smax[0])))

claims = [
    Claim("coupled-model",
          "in the coupled instability model the median of log κ drifts left, mode ≤ median, and the law is right-skewed",
          "App. F.11: median and mode drift left, mode ≤ median, right skew, in Cases I–III (figure only)",
          "; ".join(f"case {n}: median drift {r['drift']:+.3f}, skew {r['skew']:+.2f}, mode ≤ median {r['mode_le_median']}"
                    for n, r in case_rows.items())
          + f"; two-step branches 3 left / 1 right everywhere: {theorems_ok}",
          "reproduced" if case_i_ok and others_ok and theorems_ok else
          ("partly reproduced" if case_i_ok and theorems_ok else "not reproduced"),
          "Case I: even-time medians non-increasing, drift < 0, skew > 0, mode ≤ median; Cases II–III drift left and skew "
          "right; Thm. 5.4's branch pattern holds on a grid" if case_i_ok and others_ok and theorems_ok else
          "Case I and the branch pattern hold, but " + ", ".join(n for n, r in case_rows.items() if n != "I" and not (r["drift"] < 0 and r["skew"] > 0)) + " does not"
          if case_i_ok and theorems_ok else "Case I's median drift, skew or mode ordering, or the branch pattern, fails"),
    Claim("kappa-on-networks",
          "κ fluctuates more when the sharpness is higher during instabilities, and falls across instability cycles",
          "Pearson(λ, |Δκ|) = 0.59 over 15 runs (App. F.2); progressive flattening",
          f"Pearson(λ, |Δ log κ|) = {variability_pearson:.2f} over {int(pair.sum())} probe pairs in instabilities; "
          f"Pearson(proxy, exact κ) = {kappa_proxy_pearson:.2f}; Spearman(cycle, entry κ) = {flattening_rho:.2f} over "
          f"{len(entry_kappa)} cycles",
          "reproduced" if variability_ok and flattening_ok else ("partly reproduced" if variability_ok or flattening_ok else "not reproduced"),
          ("positive, significant (p < 0.05) λ–variability correlation and a significant fall of κ across cycles" if variability_ok and flattening_ok else
           "only " + ("the λ–variability correlation" if variability_ok else "the fall of κ across cycles") + " holds (p < 0.05)"
           if variability_ok or flattening_ok else "neither a significant positive λ–variability correlation nor a fall of κ across cycles")
          + " (the paper's 0.59 correlates λ with its own κ-change metric, whose formula our copy lost)"),
    Claim("rotation-and-reversal",
          "during an instability the top eigenvectors rotate away from their start; reducing η to 0.2η reverses the rotation",
          "companion paper Figs. 2 and 8 (fMNIST MLP)",
          f"subspace similarity {sub[0, 0]:.3f} → {sub[0, -1]:.3f} keeping η; after a switch: "
          + ", ".join(f"{a:.3f} → {b:.3f}" for a, b, _ in after.values()),
          "reproduced" if reversed_ok else ("partly reproduced" if rotated or any(reversals) else "not reproduced"),
          "the kept-η similarity falls by more than 0.02 and every switched run's similarity rises after its switch"
          if reversed_ok else "the rotation is under 0.02 of similarity, or not every switch is followed by a rise"),
    Claim("progressive-flattening",
          "S_max in a stable phase after η reduction decreases with a later reduction and a larger η₀",
          "companion paper Fig. 4 (fMNIST MLP, η_small = 0.01)",
          f"slope of S_max vs reduction step {smax_trend:+.2e}/step; mean S_max by η₀: "
          + ", ".join(f"{e}: {np.mean(r):.1f}" for e, r in zip(P.eta0s, smax)),
          "reproduced" if flatten_ok else ("partly reproduced" if smax_trend < 0 else "not reproduced"),
          "negative mean slope and lower S_max for the largest η₀" if flatten_ok else
          ("the slope is negative but the larger η₀ does not give a lower S_max" if smax_trend < 0 else
           "S_max does not fall with a later reduction")),
]
display(claims_table(claims))

# %% [markdown]
# ## Verdict
#
# The table is the verdict. The simulated model's qualitative predictions follow from its
# construction (a martingale with a step that grows with the state), and our checks confirm the
# algebra and the statistics in our instances of the three cases — the paper's own instances were
# not in our copy, so the agreement is with the theorems, not with its figure's numbers. On the
# network, the quantities are measured exactly (nested `jvp`) and by the proxy; the correlation the
# paper reports (0.59) is of the sharpness with a κ-variability metric whose formula our copy lost, so
# ours uses $|\Delta\log\kappa|$ between consecutive probes. The book scale uses the paper's model and
# data size; only the lengths of the runs are shortened.

# %% tags=["hide-input"]
# Invariants of the machinery, true at every scale (not the paper's claims):
for name in P.cases:
    sim = sims[name]
    assert np.all(np.diff(sim.exited.astype(int), axis=0) >= 0)  # absorption is permanent
    assert np.all(np.asarray(kappa.CASES[name].surplus(sim.log_kappa[-1][sim.exited[-1]])) <= 0)  # exited at s ≤ 0
assert np.all(np.isfinite(S[: (int(h.diverged_at) // P.probe_every if run.diverged else None)]))
assert np.allclose(rot.history.extra.subspace[:, 0], 1.0, atol=1e-3)  # baseline probe matches itself

# %% tags=["hide-input"]
metrics = {
    "case1_median_drift": float(case1_median_drift),
    "case1_skewness": float(case1_skewness),
    "kappa_proxy_pearson": kappa_proxy_pearson,
    "kappa_variability_sharpness_pearson": variability_pearson,
    "kappa_entry_spearman": flattening_rho,
    "smax_trend": smax_trend,
    "smax": [[float(v) for v in row] for row in smax],
    "rotation_subspace_end": float(sub[0, -1]),
    "instabilities": len(episodes),
    "eta": P.eta,
}
record = make_record("kappa-dynamics", scale, P.as_dict(), claims, metrics,
                     provenance(start_time, data_source=ds.source, n_train=len(ds)))
print("record written to", write_record(record, results_dir))
