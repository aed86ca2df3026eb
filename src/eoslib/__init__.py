"""eoslib: Hessian spectra, training loops and probes for edge-of-stability research.

Three layers, imported in one direction only (book → mechanisms → engine):

- :mod:`eoslib.engine` — spectra (``linalg``, ``hessian``, ``ntk``), ``models``, ``losses``,
  ``optim``, ``train``, ``probes`` and ``data``: paper-agnostic machinery.
- :mod:`eoslib.mechanisms` — the papers' models of gradient descent at the edge (``dln``,
  ``edge_model``, ``kappa``, ``adaptive``, ``selfstab``), built on the engine.
- :mod:`eoslib.book` — what makes chapters of them: results records, settings by scale,
  verdict rules, tables and figure style, chapter discovery and the ``python -m eoslib`` CLI.

Conventions used throughout: the loss is a scalar function ``loss_fn(params)`` of a PyTree
``params``; the mean-squared error is ½‖f(x) − y‖² averaged over examples; the sharpness is the
largest *algebraic* eigenvalue of the Hessian of that loss.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
