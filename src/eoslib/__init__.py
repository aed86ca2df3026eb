"""eoslib: Hessian spectra, training loops and probes for edge-of-stability research.

Three layers, imported in one direction only (book → mechanisms → engine):

- :mod:`eoslib.engine` — spectra (``linalg``, ``hessian``, ``ntk``), ``models``, ``losses``,
  ``optim``, ``train``, ``probes`` and ``data``: paper-agnostic machinery.
- :mod:`eoslib.mechanisms` — the papers' models of gradient descent at the edge (``dln``,
  ``edge_model``, ``kappa``, ``adaptive``, ``selfstab``), built on the engine, and ``track``:
  the edge-of-stability diagnostics on a model the reader brings.
- :mod:`eoslib.book` — what makes chapters of them: results records, settings by scale,
  verdict rules, tables and figure style, chapter discovery and the ``python -m eoslib`` CLI.

The two entry points for a model of your own (imported on first use, so ``import eoslib`` stays
light)::

    history = eoslib.track(loss, params, (x, y), optax.sgd(0.1), steps=500)
    eoslib.plot_edge(history)

(:func:`eoslib.mechanisms.track.track`, :func:`eoslib.book.figures.plot_edge`; the history is an
:class:`eoslib.mechanisms.track.EdgeHistory`.)

Conventions used throughout: the loss is a scalar function ``loss_fn(params)`` of a PyTree
``params``; the mean-squared error is ½‖f(x) − y‖² averaged over examples; the sharpness is the
largest *algebraic* eigenvalue of the Hessian of that loss.
"""

import importlib

__version__ = "0.2.0"

#: The public names resolved on first use: name → (module, attribute).
_LAZY = {
    "track": ("eoslib.mechanisms.track", "track"),
    "EdgeHistory": ("eoslib.mechanisms.track", "EdgeHistory"),
    "plot_edge": ("eoslib.book.figures", "plot_edge"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'eoslib' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
