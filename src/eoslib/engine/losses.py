"""Losses, accuracy and coupled weight decay.

Conventions (every chapter states which it uses):

- ``half_mse``: ½‖f(x) − y‖² **averaged over examples** (summed over outputs). The factor ½ halves
  the Hessian relative to the no-½ convention ``mean ‖f − y‖²``, so a sharpness quoted under one
  convention is twice the other's. Cohen et al. use ½MSE.
- ``cross_entropy``: mean over examples of −log softmax(f(x))[label], from one-hot ``y``.
- :func:`accuracy` (arg-max, K ≥ 2 outputs) and :func:`sign_accuracy` (one output, ±1 targets).
- :func:`with_l2`: coupled weight decay, ``L(θ) + γ/2 ‖θ‖²``; it is part of the objective, so its
  Hessian (and every probe) sees ``+γ I``. Decoupled (AdamW-style) decay belongs to the
  optimizer instead (``optax.add_decayed_weights``).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree, Scalar


def _check_pair(name: str, outputs, targets) -> None:
    """A ValueError unless ``outputs`` and ``targets`` are both ``(N, K)`` of one shape. Only the
    static shapes are read, so it runs when the function is traced (under ``jit`` too)."""
    o, t = jnp.shape(outputs), jnp.shape(targets)
    if o != t:
        raise ValueError(f"{name}: outputs and targets must have the same shape (N, K); got outputs "
                         f"of shape {o} and targets of shape {t} (no broadcasting)")
    if len(o) != 2:
        raise ValueError(f"{name}: outputs and targets must be (N, K) arrays (N examples, K outputs "
                         f"each); got shape {o}")


def half_mse(outputs: Float[Array, "N K"], targets: Float[Array, "N K"]) -> Scalar:
    """½‖f − y‖² averaged over the N examples (summed over the K outputs).

    Raises:
      ValueError: ``outputs`` and ``targets`` not of one ``(N, K)`` shape (checked at trace time).
    """
    _check_pair("half_mse", outputs, targets)
    return 0.5 * jnp.mean(jnp.sum((outputs - targets) ** 2, axis=-1))


def cross_entropy(outputs: Float[Array, "N K"], targets: Float[Array, "N K"]) -> Scalar:
    """Mean over the N examples of the cross-entropy of logits ``outputs`` against one-hot
    (or any probability-vector) ``targets``.

    Raises:
      ValueError: ``outputs`` and ``targets`` not of one ``(N, K)`` shape (checked at trace time).
    """
    _check_pair("cross_entropy", outputs, targets)
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(outputs, axis=-1), axis=-1))


def accuracy(outputs: Float[Array, "N K"], targets: Float[Array, "N K"]) -> Scalar:
    """Fraction of the N examples whose arg-max output is the arg-max target.

    Raises:
      ValueError: ``outputs`` and ``targets`` not of one ``(N, K)`` shape (checked at trace time).
    """
    _check_pair("accuracy", outputs, targets)
    return jnp.mean(jnp.argmax(outputs, -1) == jnp.argmax(targets, -1))


def sign_accuracy(outputs: Float[Array, "N 1"], targets: Float[Array, "N 1"]) -> Scalar:
    """Fraction of the N examples of a one-output net whose output has the sign of its ±1
    target (``outputs · targets > 0``; an output of exactly 0 is wrong). :func:`accuracy` is
    always 1 for a single output (the arg-max of one number is 0), so a binary regression onto
    ±1 (e.g. two CIFAR-10 classes as −1 / +1) reads its accuracy here.

    Raises:
      ValueError: ``outputs`` and ``targets`` not of one ``(N, 1)`` shape (checked at trace time).
    """
    _check_pair("sign_accuracy", outputs, targets)
    if jnp.shape(outputs)[1] != 1:
        raise ValueError(f"sign_accuracy: a one-output net's (N, 1) arrays expected; got shape "
                         f"{jnp.shape(outputs)} (use accuracy for K > 1 outputs)")
    return jnp.mean(outputs * targets > 0)


ACCURACIES: dict[str, Callable] = {"argmax": accuracy, "sign": sign_accuracy}

LOSSES: dict[str, Callable] = {"half_mse": half_mse, "cross_entropy": cross_entropy}


def get(model_loss: str) -> Callable[[Array, Array], Scalar]:
    """The loss of outputs named ``model_loss`` (a key of ``LOSSES``); a ``ValueError`` naming
    the allowed names otherwise."""
    if model_loss not in LOSSES:
        raise ValueError(f"model_loss={model_loss!r} is not one of {sorted(LOSSES)}")
    return LOSSES[model_loss]


def of_model(model_loss: str) -> Callable[[Array, Array], Callable[[PyTree], Scalar]]:
    """``(x, y) ↦ (params ↦ loss(params(x), y))``: the unregularised loss of a model (an Equinox
    module mapping inputs to outputs) on data, for probes that differentiate it. The name is
    checked here, when the probe is built, not when it runs."""
    loss = get(model_loss)
    return lambda x, y: (lambda params: loss(params(x), y))


def squared_norm(params: PyTree) -> Scalar:
    """‖θ‖² over every array leaf."""
    return sum(jnp.vdot(p, p) for p in jax.tree.leaves(params))


def with_l2(loss_fn: Callable[..., Scalar], gamma: float) -> Callable[..., Scalar]:
    """Coupled weight decay: ``params, *args ↦ loss_fn(params, *args) + γ/2 ‖params‖²``."""
    def regularised(params, *args):
        return loss_fn(params, *args) + 0.5 * gamma * squared_norm(params)
    return regularised
