"""The papers' mechanisms: models of gradient descent at the edge of stability, each tested
against closed forms and dense references, built on :mod:`eoslib.engine`.

- :mod:`eoslib.mechanisms.dln`        — closed forms for the 2-parameter diagonal linear network (Wang & Roberts).
- :mod:`eoslib.mechanisms.edge_model` — the local (x, y) model of GD at the edge, with weight decay; its toy.
- :mod:`eoslib.mechanisms.kappa`      — the coupled instability model of higher-order curvature κ.
- :mod:`eoslib.mechanisms.adaptive`   — adaptive optimizers as preconditioned GD: their edges and τ regimes.
- :mod:`eoslib.mechanisms.selfstab`   — self-stabilization: projection onto the stable set, the (x, y)
  predictor, the central flow.
- :mod:`eoslib.mechanisms.shallow_relu` — GD on a two-layer ReLU network with orthonormal inputs:
  λ₊ and λ₋ along the paper's v₊, v₋, the balance identity, logistic phase fits.
- :mod:`eoslib.mechanisms.flatness` — instabilities and generalization: explicit splits, η × seed
  sweeps to completion with early stopping, the Goldilocks and LR-reduction summaries.
- :mod:`eoslib.mechanisms.track` — ``eoslib.track``: the edge-of-stability diagnostics (sharpness, batch
  sharpness, Adam's preconditioned sharpness, each against its edge) on a model the reader brings.

Imports flow one way: mechanisms import :mod:`eoslib.engine`, never :mod:`eoslib.book`.
"""
