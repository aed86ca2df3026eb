"""eoslib: Hessian spectra, training loops and probes for edge-of-stability research.

Modules, one concept each:

- :mod:`eoslib.linalg`   — matrix-free symmetric eigensolvers (block Lanczos) and subspace distances.
- :mod:`eoslib.hessian`  — HVPs, Hessian spectra and curvature probes of a loss.
- :mod:`eoslib.ntk`      — the empirical NTK / Gauss–Newton top eigenvalue.
- :mod:`eoslib.models`   — the papers' architectures (Equinox modules).
- :mod:`eoslib.losses`   — ½MSE, cross-entropy, accuracy, coupled weight decay.
- :mod:`eoslib.optim`    — Clipped-Ada, learning-rate and weight-decay interventions (optax).
- :mod:`eoslib.train`    — scanned GD / SGD with in-loop probes, divergence, sweeps, save / load.
- :mod:`eoslib.edge_model` — the local (x, y) model of GD at the edge, with weight decay; its toy.
- :mod:`eoslib.kappa`    — the coupled instability model of higher-order curvature κ; κ and rotation probes.
- :mod:`eoslib.adaptive` — adaptive optimizers as preconditioned GD: their edges, τ regimes, probes.
- :mod:`eoslib.data`     — CIFAR-10 / Fashion-MNIST loaders (local copies or checksummed downloads).
- :mod:`eoslib.dln`      — closed forms for the 2-parameter diagonal linear network (Wang & Roberts).
- :mod:`eoslib.results`  — the chapters' results records: schema, provenance, save / load.
- :mod:`eoslib.book`     — what chapters share: settings by scale, verdict tables, figure style.
- :mod:`eoslib.chapters` — discovering chapters and their parameters (used by the CLI).

Conventions used throughout: the loss is a scalar function ``loss_fn(params)`` of a PyTree
``params``; the mean-squared error is ½‖f(x) − y‖² averaged over examples; the sharpness is the
largest *algebraic* eigenvalue of the Hessian of that loss.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
