"""The standard edge-of-stability figure of a :func:`eoslib.mechanisms.track.track` run:
:func:`plot_edge`.

matplotlib is imported when a figure is drawn, so the rest of eoslib works without it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from eoslib.mechanisms.track import EdgeHistory

#: How each measured quantity and its edge are named on the figure.
LABELS = {
    "sharpness": ("sharpness $\\lambda_1(H)$", "$2/\\eta$"),
    "batch_sharpness": ("batch sharpness $\\mathbb{E}_B\\, g_B^\\top H_B g_B / \\|g_B\\|^2$", "$2/\\eta$"),
    "preconditioned_sharpness": ("preconditioned sharpness $\\lambda_1(P^{-1/2} H P^{-1/2})$",
                                 "$(2 + 2\\beta_1)/((1 - \\beta_1)\\eta)$"),
}


def plot_edge(history: EdgeHistory, *, axes: Sequence[Any] | None = None, title: str | None = None,
              color: str | None = None):
    """Draw the standard EoS figure of ``history``: the training loss (and the accuracy, on a
    second axis, when recorded) against the step; and the quantity the optimizer holds at its
    edge (``history.against_edge``: the sharpness for GD, the batch sharpness for SGD, the
    preconditioned sharpness for Adam) against the step, with the edge dashed. For SGD the
    batch sharpness is shaded ± 2 standard errors across its minibatches, and the full-batch
    sharpness and the mean top eigenvalue of the minibatch Hessians (the paper's first version's
    "MiniBS", dotted) are drawn too, for Adam the (unpreconditioned) sharpness; the
    other top-k eigenvalues thin.

    Args:
      history: what ``eoslib.track`` (:func:`eoslib.mechanisms.track.track`) returned.
      axes: two matplotlib axes to draw into (default: a new 1×2 figure).
      title: the figure's title (default: the optimizer, its step size, and the batch size).
      color: the colour of the measured curve and its edge.

    Returns:
      The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    if not isinstance(history, EdgeHistory):
        raise ValueError(f"history must be what eoslib.track returned (an EdgeHistory); got "
                         f"{type(history).__name__}")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    else:
        if len(axes) != 2:
            raise ValueError(f"axes must be two matplotlib axes (loss, curvature); got {len(axes)}")
        fig = axes[0].figure
    ax_loss, ax_curv = axes
    color = color or "C0"
    ax_loss.semilogy(history.step, history.loss, lw=0.8, color=color, label="loss")
    ax_loss.set(xlabel="step", ylabel="training loss" + (" (minibatch)" if history.batch_size else ""))
    if history.accuracy is not None:
        ax_acc = ax_loss.twinx()
        ax_acc.plot(history.step, history.accuracy, lw=0.8, color="0.5", label="accuracy")
        ax_acc.set(ylabel="accuracy", ylim=(0, 1.02))
    measured, edge_label = LABELS[history.measure]
    t = history.probe_step
    ax_curv.plot(t, history.against_edge, ".-", ms=3, lw=1.0, color=color, label=measured)
    ax_curv.axhline(history.edge, color=color, ls="--", lw=1, label=f"edge {edge_label}")
    if history.measure != "sharpness":
        ax_curv.plot(t, history.sharpness, lw=0.8, color="0.45", label="sharpness $\\lambda_1(H)$")
    if history.batch_size is not None:
        if np.isfinite(history.batch_sharpness_sem).any():  # ± 2 standard errors across the minibatches
            ax_curv.fill_between(t, history.batch_sharpness - 2 * history.batch_sharpness_sem,
                                 history.batch_sharpness + 2 * history.batch_sharpness_sem,
                                 color=color, alpha=0.2, lw=0)
        ax_curv.plot(t, history.minibatch_lambda_max, ":", lw=1.0, color="0.3",
                     label="$\\mathbb{E}_B\\, \\lambda_1(H_B)$ (v1 MiniBS)")
    for j in range(1, history.top_eigenvalues.shape[1]):
        ax_curv.plot(t, history.top_eigenvalues[:, j], lw=0.5, color="0.7",
                     label="$\\lambda_2 \\ldots \\lambda_k$" if j == 1 else None)
    finite = [v for v in (np.nanmax(history.against_edge) if np.isfinite(history.against_edge).any() else np.nan,
                          history.edge) if np.isfinite(v)]
    ax_curv.set(xlabel="step", ylabel="curvature", ylim=(0, 1.3 * max(finite) if finite else None))
    ax_curv.legend(fontsize="small", loc="lower right")
    if title is None:
        title = (f"{history.optimizer.upper()}, η = {history.learning_rate:.3g}"
                 + (f", β₁ = {history.b1:.3g}" if history.optimizer == "adam" else "")
                 + (f", batch {history.batch_size}" if history.batch_size else ""))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
