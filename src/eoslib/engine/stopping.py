"""Training to completion with held-out evaluation: the completion criterion, early stopping.

The flatness-bias papers compare models *after training completion*, which they define as train
accuracy above 99.99 % (:data:`COMPLETE`), and pick the stopping point on validation loss
(App. K.3: "the first reversal in validation loss after the global minimum"). Here:

- :func:`run_evaluated` trains with :func:`eoslib.engine.train.run` as one compiled, possibly
  ``vmap``-ed program that also evaluates the training data and every named held-out set
  (``{"val": (x, y), "test": (x, y)}``) every ``eval_every`` steps inside its loop
  (``TrainConfig.eval_every``, metrics only, no parameters kept). Evaluations of a member after
  it diverged are NaN.
- :func:`completion_index`: the first evaluation at which train accuracy reaches the threshold.
- :func:`early_stop_index`: among the evaluations from completion on, the one with the smallest
  validation loss; chosen on validation only, so the test numbers read at that index are an
  honest estimate.
- :func:`reversal_stop_index`: the paper's rule read literally, "the first reversal in
  validation loss after the global minimum": the same global minimum, kept only where the loss
  turns up after it (a later evaluation is higher); a curve still at its minimum at its last
  evaluation has no reversal, so no stopping point (the budget was too short to place one).

Index arrays use −1 for "never" (not completed, or diverged before completion).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from eoslib.engine import train

#: Train accuracy that counts as a completed run (the papers' "> 99.99 %").
COMPLETE = 0.9999


def completion_index(train_accuracy: Float[np.ndarray, "*S E"], threshold: float = COMPLETE
                     ) -> Int[np.ndarray, "*S"]:
    """First evaluation index ``e`` with ``train_accuracy[..., e] ≥ threshold``; −1 if none.

    NaN (a diverged member) never counts as complete."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r} must be in (0, 1]")
    acc = np.asarray(train_accuracy, float)
    done = np.nan_to_num(acc, nan=-1.0) >= threshold
    return np.where(done.any(-1), done.argmax(-1), -1)


def early_stop_index(val_loss: Float[np.ndarray, "*S E"], start: Int[np.ndarray, "*S"]
                     ) -> Int[np.ndarray, "*S"]:
    """The evaluation index, at or after ``start``, of the smallest validation loss; −1 where
    ``start`` is −1. NaN losses (after divergence) are never chosen; a member whose losses from
    ``start`` on are all NaN gets −1."""
    loss = np.asarray(val_loss, float)
    start = np.asarray(start)
    if loss.shape[:-1] != start.shape:
        raise ValueError(f"val_loss {loss.shape} and start {start.shape} disagree on the sweep axes")
    e = np.arange(loss.shape[-1])
    masked = np.where((e >= start[..., None]) & (start[..., None] >= 0) & ~np.isnan(loss),
                      loss, np.inf)
    best = masked.argmin(-1)
    return np.where(np.isfinite(masked.min(-1)), best, -1)


def reversal_stop_index(val_loss: Float[np.ndarray, "*S E"], start: Int[np.ndarray, "*S"]
                        ) -> Int[np.ndarray, "*S"]:
    """App. K.3's stopping point: the evaluation, at or after ``start``, of the global minimum of
    the validation loss, *confirmed by a reversal* — a later finite evaluation with a higher loss
    (the "first reversal after the global minimum"). −1 where ``start`` is −1, where every loss
    from ``start`` on is NaN, and where the minimum is not followed by a higher finite loss (the
    curve had not turned up by the last evaluation). Otherwise equal to :func:`early_stop_index`.
    """
    loss = np.asarray(val_loss, float)
    best = early_stop_index(loss, start)
    e = np.arange(loss.shape[-1])
    at_best = take(loss, best)
    later = np.where((e > best[..., None]) & ~np.isnan(loss), loss, -np.inf)
    turned = later.max(-1, initial=-np.inf) > at_best
    return np.where((best >= 0) & turned, best, -1)


def take(values: Float[np.ndarray, "*S E"], index: Int[np.ndarray, "*S"]) -> Float[np.ndarray, "*S"]:
    """``values[..., index]`` per member, NaN where ``index`` is −1."""
    values = np.asarray(values, float)
    index = np.asarray(index)
    got = np.take_along_axis(values, np.maximum(index, 0)[..., None], -1)[..., 0]
    return np.where(index >= 0, got, np.nan)


@dataclasses.dataclass
class Evaluated:
    """A run with held-out evaluations.

    Attributes:
      result: the :class:`eoslib.engine.train.TrainResult` of the whole run.
      steps: ``(E,)`` the step of each evaluation (0, eval_every, …, steps).
      metrics: ``{set: {"loss": (*S, E), "accuracy": (*S, E)}}``, including ``"train"``
        (all training data, full batch); NaN after a member diverged.
    """

    result: train.TrainResult
    steps: np.ndarray
    metrics: dict[str, dict[str, np.ndarray]]


def run_evaluated(objective: train.Objective,
                  make_optimizer: Callable[[Mapping[str, Array]], optax.GradientTransformation],
                  params: PyTree, data: tuple[Array, Array], config: train.TrainConfig, *,
                  eval_every: int, held_out: Mapping[str, tuple[Array, Array]],
                  key: PRNGKeyArray, hparams: Mapping[str, Any] | None = None,
                  batched_params: bool = False, **run_options: Any) -> Evaluated:
    """Train as :func:`eoslib.engine.train.run` does, evaluating ``objective`` (its loss and its
    aux ``accuracy``) on the training data and each ``held_out`` set every ``eval_every`` steps.

    The evaluations run inside the compiled training loop (``TrainConfig.eval_every`` with
    ``eval_sets={"train": data, **held_out}``), on θ_t for t = 0, eval_every, 2·eval_every, …,
    ``config.steps``; ``config.eval_every`` is replaced by ``eval_every``. ``config.steps`` must
    be a multiple of ``eval_every``, and with probes ``eval_every`` a multiple or a divisor of
    ``config.probe_every``. Other keyword arguments go to ``train.run``; with
    ``resume=previous`` (and ``params=None``) the run continues ``previous`` for ``config.steps``
    more steps, and :func:`evaluated` reads the joined result as one run.
    """
    if eval_every < 1 or config.steps % eval_every:
        raise ValueError(f"eval_every={eval_every} must be >= 1 and divide steps={config.steps}")
    pe = config.probe_every
    if pe and eval_every % pe and pe % eval_every:
        raise ValueError(f"eval_every={eval_every} must be a multiple or a divisor of "
                         f"probe_every={pe}")
    if "train" in held_out:
        raise ValueError("held_out may not be called 'train' (the training data is evaluated as 'train')")
    result = train.run(objective, make_optimizer, params, data,
                       dataclasses.replace(config, eval_every=eval_every), key=key,
                       hparams=hparams, batched_params=batched_params,
                       eval_sets={"train": data, **held_out}, **run_options)
    return evaluated(result, eval_every, config.steps)


def evaluated(result: train.TrainResult, eval_every: int, steps: int) -> Evaluated:
    """The :class:`Evaluated` of a run of ``steps`` steps evaluated every ``eval_every`` steps
    (:func:`run_evaluated`'s result), from its :class:`eoslib.engine.train.TrainResult` — also
    one trained in resumed pieces (``run_evaluated(..., params=None, resume=previous)`` pieces
    joined by :meth:`eoslib.book.checkpoint.Checkpoints.train`), whose evaluations are the whole
    run's."""
    ev = result.evaluations
    if ev is None:
        raise ValueError("the result has no evaluations: train it with run_evaluated")
    metrics = {name: {m: np.asarray(ev.metrics[name][m], float) for m in ("loss", "accuracy")}
               for name in ev.metrics}
    return Evaluated(result, np.arange(0, steps + 1, eval_every), metrics)
