"""The engines: spectra, models, losses, optimizers, training loops, probes and data. They know
nothing about any particular paper and import nothing from :mod:`eoslib.mechanisms` or
:mod:`eoslib.book`.

- :mod:`eoslib.engine.linalg`  — matrix-free symmetric eigensolvers (block and thick-restart Lanczos), subspace distances.
- :mod:`eoslib.engine.hessian` — HVPs, Hessian spectra and curvature quantities of a loss.
- :mod:`eoslib.engine.ntk`     — the empirical NTK / Gauss–Newton top eigenvalue.
- :mod:`eoslib.engine.models`  — the papers' architectures (Equinox modules) and their registry.
- :mod:`eoslib.engine.losses`  — ½MSE, cross-entropy, accuracy, coupled weight decay.
- :mod:`eoslib.engine.optim`   — Clipped-Ada, learning-rate schedules, weight-decay interventions (optax).
- :mod:`eoslib.engine.probes`  — in-loop probes behind one protocol (sharpness, alignment, κ, …).
- :mod:`eoslib.engine.train`   — scanned GD / SGD with in-loop probes, divergence, sweeps, save / load.
- :mod:`eoslib.engine.events`  — events a compiled run stops or switches on; instability windows.
- :mod:`eoslib.engine.divergence` — one definition of a diverged run, shared by every GD loop.
- :mod:`eoslib.engine.data`    — CIFAR-10 / Fashion-MNIST loaders (local copies or checksummed downloads).
- :mod:`eoslib.engine.stopping` — training to completion with held-out evaluation and early stopping.
"""
