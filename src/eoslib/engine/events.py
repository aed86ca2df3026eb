"""Events: conditions a compiled run watches for, to **stop** on or to **switch** a schedule on,
and the **instability detector** that finds a finished run's unstable windows.

The papers time their interventions by what the run does, not by the clock: "train until training
accuracy exceeds 90 %, then switch to a low stable learning rate", "stop at 99 % training
accuracy", "decay η once k eigenvalues are at the edge", "reduce η before the instability is
resolved". An :class:`Event` states such a condition as data; :func:`eoslib.engine.train.run`
evaluates it inside its compiled loop (no Python loop per step) with
``TrainConfig(stop_when=event)`` or ``TrainConfig(switches=(Switch(event, {...}),))``.

**When an event is evaluated.** Each event is evaluated on the loop's own schedule, on the state
θ_t before update t:

- *step events* (:class:`AccuracyAbove`, :class:`LossBelow`) every step, from that step's own
  forward pass (its batch: all the data under full-batch GD) — no extra computation;
- *probe events* (:class:`EdgeCount`) at every probe (``TrainConfig.probe_every``), from that
  probe's top-k eigenvalues.

An event **fires at step t** the first time its condition holds at θ_t; it fires once.

**Stop.** A member whose stop event fires at step t keeps θ_t: update t is not applied, its
record at step t is kept (it holds the measurement that fired the event), and every later step,
probe and evaluation record is blanked (NaN; integers kept), as after a divergence
(:mod:`eoslib.engine.divergence`). ``TrainResult.stopped_at`` holds t (−1: never fired). The run
returns at the end of the first compiled chunk in which every member has stopped or diverged,
so its history can be shorter than ``TrainConfig.steps``. A stopped run is therefore the same
run truncated at t: the same parameters, and the same records up to step t.

**Switch.** ``Switch(event, {"eta": "eta_low"})``: from the step the event fires on (update t
included), the hyperparameter ``eta`` takes the value of the hyperparameter ``eta_low`` for the
rest of the run, in the optimizer and the probes (so a sweep can switch each member to its own
value). Switched keys must not be read by the objective (the gradient of step t is computed
before its step event is known); ``train.run`` checks this. ``TrainResult.switched_at`` holds
each switch's step (−1: never). A switch at step t is the same as a run of t steps joined to a
run resumed from its state with the switched hyperparameters.

Under ``vmap`` (a sweep) each member fires on its own.

**Instability windows.** :func:`instability_windows` reads a finished trajectory (probe steps,
sharpness, η and optionally the loss) and returns the :class:`Windows` in which the run was
unstable — ``S·η/2 ≥ enter`` or a rising loss — with hysteresis (a window closes only after
``patience`` consecutive stable points below ``leave``), so a chapter can time interventions
inside them (for example by resuming from a kept state, :func:`eoslib.engine.train.at_probe`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

__all__ = ["Event", "AccuracyAbove", "LossBelow", "EdgeCount", "Switch", "EventState",
           "initial_state", "Windows", "instability_windows"]

#: The step of an event that never fired.
NEVER = -1


def _fraction(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name}={value!r} must be a finite number")
    return float(value)


class Event:
    """A condition on the run's state θ_t; subclasses are frozen dataclasses (hashable: they are
    part of the compiled program's cache key).

    ``kind`` is ``"step"`` (evaluated every step from the step's forward pass) or ``"probe"``
    (evaluated at every probe from its eigenvalues).
    """

    kind: str = "step"

    def describe(self) -> str:
        """The condition in words."""
        raise NotImplementedError

    def hparams_read(self) -> tuple[str, ...]:
        """Hyperparameter names the event reads."""
        return ()


@dataclasses.dataclass(frozen=True)
class AccuracyAbove(Event):
    """Training accuracy at θ_t (the objective's aux scalar ``aux``, on step t's batch: all the
    data under full-batch GD) at or above ``threshold``; a step event.

    For a one-output network pass the name of a sign accuracy the objective reports (plain
    arg-max accuracy of one output is always 1)."""

    threshold: float
    aux: str = "accuracy"
    kind = "step"

    def __post_init__(self):
        t = _fraction("AccuracyAbove", "threshold", self.threshold)
        if not 0 < t <= 1:
            raise ValueError(f"AccuracyAbove: threshold={self.threshold!r} must be in (0, 1]")
        if not isinstance(self.aux, str) or not self.aux:
            raise ValueError(f"AccuracyAbove: aux={self.aux!r} must be the name of an aux scalar "
                             "of the objective (e.g. 'accuracy')")

    def describe(self) -> str:
        return f"training {self.aux} ≥ {self.threshold:.4g}"

    def fired(self, loss: Array, aux: Mapping[str, Array], loss0: Array) -> Array:
        if self.aux not in aux:
            raise ValueError(f"AccuracyAbove(aux={self.aux!r}): the objective's aux has no "
                             f"{self.aux!r}; it has {sorted(aux)}")
        return aux[self.aux] >= self.threshold


@dataclasses.dataclass(frozen=True)
class LossBelow(Event):
    """The step's loss below ``fraction`` × the run's first loss (at its step 0); a step event."""

    fraction: float
    kind = "step"

    def __post_init__(self):
        f = _fraction("LossBelow", "fraction", self.fraction)
        if not 0 < f < 1:
            raise ValueError(f"LossBelow: fraction={self.fraction!r} must be in (0, 1)")

    def describe(self) -> str:
        return f"loss < {self.fraction:.4g} × the first loss"

    def fired(self, loss: Array, aux: Mapping[str, Array], loss0: Array) -> Array:
        return loss < self.fraction * loss0


@dataclasses.dataclass(frozen=True)
class EdgeCount(Event):
    """At least ``k`` of the probe's top-k Hessian eigenvalues at or above ``fraction`` · 2/η,
    η = ``hp[eta]`` (after any switch); a probe event (needs ``probe_every > 0`` and
    ``top_k ≥ k``)."""

    k: int
    fraction: float = 1.0
    eta: str = "eta"
    kind = "probe"

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"EdgeCount: k={self.k!r} must be an int ≥ 1")
        f = _fraction("EdgeCount", "fraction", self.fraction)
        if not f > 0:
            raise ValueError(f"EdgeCount: fraction={self.fraction!r} must be positive")
        if not isinstance(self.eta, str) or not self.eta:
            raise ValueError(f"EdgeCount: eta={self.eta!r} must be the name of the step-size "
                             "hyperparameter")

    def describe(self) -> str:
        return f"{self.k} eigenvalue(s) ≥ {self.fraction:.4g}·2/η"

    def hparams_read(self) -> tuple[str, ...]:
        return (self.eta,)

    def fired_at_probe(self, eigenvalues: Float[Array, " k"], hp: Mapping[str, Array]) -> Array:
        edge = self.fraction * 2.0 / hp[self.eta]
        return jnp.sum(eigenvalues >= edge) >= self.k


@dataclasses.dataclass(frozen=True)
class Switch:
    """From the step ``when`` fires on (that step's update included), each hyperparameter
    ``name`` in ``set`` takes the value of the hyperparameter ``set[name]``.

    ``set`` is given as a mapping and stored as a tuple of pairs (hashable)."""

    when: Event
    set: Any

    def __post_init__(self):
        if not isinstance(self.when, Event):
            raise ValueError(f"Switch: when={self.when!r} must be an Event (AccuracyAbove, "
                             "LossBelow, EdgeCount)")
        pairs = tuple(sorted(dict(self.set).items())) if isinstance(self.set, Mapping) else self.set
        if (not isinstance(pairs, tuple) or not pairs
                or not all(isinstance(p, tuple) and len(p) == 2 and all(isinstance(s, str) and s for s in p)
                           for p in pairs)):
            raise ValueError(f"Switch: set={self.set!r} must map hyperparameter names to the names "
                             "of the hyperparameters whose values they take, e.g. {'eta': 'eta_low'}")
        object.__setattr__(self, "set", pairs)

    def targets(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.set)

    def hparams_read(self) -> tuple[str, ...]:
        return tuple(source for _, source in self.set) + self.when.hparams_read()


class EventState(NamedTuple):
    """The events' part of a run's carry (per member).

    Attributes:
      stopped_at: int32 scalar, the step the stop event fired (−1: not yet, or no stop event).
      switched_at: ``(n_switches,)`` int32, the step each switch fired (−1: not yet).
      loss0: the loss at the run's step 0 (NaN until it is measured), for :class:`LossBelow`.
    """

    stopped_at: Int[Array, ""]
    switched_at: Int[Array, " n"]
    loss0: Float[Array, ""]


def initial_state(n_switches: int, dtype) -> EventState:
    """No event has fired and the first loss is not measured yet."""
    return EventState(jnp.array(NEVER, jnp.int32), jnp.full((n_switches,), NEVER, jnp.int32),
                      jnp.array(jnp.nan, dtype))


def _set(at: Array, fired: Array, step: Array) -> Array:
    return jnp.where((at < 0) & fired, jnp.asarray(step, jnp.int32), at).astype(jnp.int32)


def switched_hparams(switches: tuple[Switch, ...], state: EventState | None,
                     hp: Mapping[str, Array]) -> Mapping[str, Array]:
    """``hp`` with every fired switch applied (in order; a later switch wins)."""
    if not switches or state is None:
        return hp
    out = dict(hp)
    for i, sw in enumerate(switches):
        on = state.switched_at[i] >= 0
        for name, source in sw.set:
            out[name] = jnp.where(on, hp[source], out[name])
    return out


def observe_step(stop: Event | None, switches: tuple[Switch, ...], state: EventState,
                 step: Array, loss: Array, aux: Mapping[str, Array], active: Array) -> EventState:
    """The event state after step ``step``'s forward pass (``loss``, ``aux`` at θ_t): the first
    loss is kept at step 0 and every step event that holds fires at ``step``. ``active``: the
    member is alive and has not stopped before (a dead member fires nothing)."""
    loss0 = jnp.where(jnp.isnan(state.loss0) & (step == 0), loss, state.loss0)
    stopped_at, switched_at = state.stopped_at, state.switched_at
    if stop is not None and stop.kind == "step":
        stopped_at = _set(stopped_at, active & stop.fired(loss, aux, loss0), step)
    for i, sw in enumerate(switches):
        if sw.when.kind == "step":
            switched_at = switched_at.at[i].set(
                _set(switched_at[i], active & sw.when.fired(loss, aux, loss0), step))
    return EventState(stopped_at, switched_at, loss0)


def observe_probe(stop: Event | None, switches: tuple[Switch, ...], state: EventState,
                  step: Array, eigenvalues: Array, hp: Mapping[str, Array], active: Array) -> EventState:
    """The event state after the probe at ``step`` (its top-k ``eigenvalues``; ``hp`` after the
    switches fired so far): every probe event that holds fires at ``step``."""
    stopped_at, switched_at = state.stopped_at, state.switched_at
    if stop is not None and stop.kind == "probe":
        stopped_at = _set(stopped_at, active & stop.fired_at_probe(eigenvalues, hp), step)
    for i, sw in enumerate(switches):
        if sw.when.kind == "probe":
            switched_at = switched_at.at[i].set(
                _set(switched_at[i], active & sw.when.fired_at_probe(eigenvalues, hp), step))
    return state._replace(stopped_at=stopped_at, switched_at=switched_at)


def stopped_before(state: EventState | None, step: Array) -> Bool[Array, ""]:
    """Whether the member stopped at a step before ``step`` (its records from ``step`` on are
    blanked)."""
    if state is None:
        return jnp.array(False)
    return (state.stopped_at >= 0) & (state.stopped_at < step)


def stopped_by(state: EventState | None, step: Array) -> Bool[Array, ""]:
    """Whether the member stopped at or before ``step`` (update ``step`` is not applied)."""
    if state is None:
        return jnp.array(False)
    return (state.stopped_at >= 0) & (state.stopped_at <= step)


def check(stop: Event | None, switches: tuple[Switch, ...], *, probe_every: int, top_k: int) -> None:
    """Validate a run's events against its probe settings (a ``ValueError`` naming the problem)."""
    if stop is not None and not isinstance(stop, Event):
        raise ValueError(f"stop_when={stop!r} must be an Event (AccuracyAbove, LossBelow, "
                         "EdgeCount) or None")
    if not isinstance(switches, tuple) or not all(isinstance(s, Switch) for s in switches):
        raise ValueError(f"switches={switches!r} must be a tuple of Switch")
    for where, event in [("stop_when", stop)] + [(f"switches[{i}].when", s.when) for i, s in enumerate(switches)]:
        if isinstance(event, EdgeCount):
            if not probe_every:
                raise ValueError(f"{where}={event!r} is evaluated at probes: it needs probe_every > 0")
            if top_k < event.k:
                raise ValueError(f"{where}={event!r} counts {event.k} eigenvalues: it needs "
                                 f"top_k >= {event.k} (got top_k={top_k})")


# ----------------------------------------------------------------------------- instabilities


class Windows(NamedTuple):
    """Instability windows of one trajectory, in steps (each ``(W,)``; W = 0 when the run was
    never unstable).

    Attributes:
      start: first step of each window (the first unstable point).
      end: last unstable step of each window (inclusive; the window is ``start ≤ t ≤ end``).
      peak: the step of the largest S·η/2 in the window.
      peak_ratio: that largest S·η/2.
      closed: whether the window closed before the trajectory ended (``False``: still unstable
        at its last point).
    """

    start: Int[np.ndarray, " W"]
    end: Int[np.ndarray, " W"]
    peak: Int[np.ndarray, " W"]
    peak_ratio: Float[np.ndarray, " W"]
    closed: Bool[np.ndarray, " W"]

    @property
    def length(self) -> Int[np.ndarray, " W"]:
        """Steps from start to end, inclusive of both."""
        return self.end - self.start + 1

    def containing(self, step: int) -> int:
        """The index of the window holding ``step``, −1 if none."""
        hit = np.flatnonzero((self.start <= step) & (step <= self.end))
        return int(hit[0]) if hit.size else -1


def instability_windows(steps: Int[ArrayLike, " P"], sharpness: Float[ArrayLike, " P"],
                        eta: float | Float[ArrayLike, " P"], *, loss: Float[ArrayLike, " P"] | None = None,
                        enter: float = 1.0, leave: float | None = None, patience: int = 1,
                        min_length: int = 1, rise_tol: float = 0.0) -> Windows:
    """The windows in which a trajectory was unstable.

    A point t (probe step ``steps[i]``) is **unstable** when ``S_i·η_i/2 ≥ enter`` (the sharpness
    at or past the edge 2/η) or, with ``loss`` given at the same points, when the loss rose since
    the previous point by more than ``rise_tol`` × its previous value. A window opens at the first
    unstable point and **closes** (hysteresis) after ``patience`` consecutive points that are
    stable by the stricter test ``S·η/2 < leave`` (``leave ≤ enter``; default ``enter``) with no
    loss rise; its ``end`` is the last unstable point before them. Windows with fewer than
    ``min_length`` steps from start to end (inclusive) are dropped. NaN points (after a
    divergence) end the trajectory.

    Args:
      steps: ``(P,)`` increasing steps of the points (probe steps, or every step).
      sharpness: ``(P,)`` λ₁ at those steps.
      eta: the step size, a scalar or ``(P,)`` (a schedule or a switch).
      loss: ``(P,)`` the loss at the same steps, or ``None`` (the sharpness test alone).
      enter, leave, patience, min_length, rise_tol: the declared detector settings.

    Returns:
      :class:`Windows`.
    """
    steps = np.asarray(steps)
    s = np.asarray(sharpness, float)
    if steps.ndim != 1 or s.shape != steps.shape:
        raise ValueError(f"steps {steps.shape} and sharpness {s.shape} must be the same 1-D shape")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must increase")
    eta_arr = np.broadcast_to(np.asarray(eta, float), s.shape)
    if np.any(~(eta_arr > 0)):
        raise ValueError(f"eta={eta!r} must be positive")
    for name, value in (("enter", enter), ("rise_tol", rise_tol)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value!r} must be a finite number ≥ 0")
    leave = enter if leave is None else leave
    if not (isinstance(leave, (int, float)) and 0 <= leave <= enter):
        raise ValueError(f"leave={leave!r} must be a number in [0, enter={enter}]")
    for name, value in (("patience", patience), ("min_length", min_length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} must be an int ≥ 1")
    ratio = s * eta_arr / 2
    rising = np.zeros(s.shape, bool)
    if loss is not None:
        lo = np.asarray(loss, float)
        if lo.shape != s.shape:
            raise ValueError(f"loss {lo.shape} must have the shape of sharpness {s.shape}")
        rising[1:] = lo[1:] > lo[:-1] * (1 + rise_tol)
        finite = np.isfinite(ratio) & np.isfinite(lo)
    else:
        finite = np.isfinite(ratio)
    last = int(np.argmin(finite)) if not finite.all() else len(s)
    unstable = (ratio >= enter) | rising
    calm = (ratio < leave) & ~rising
    windows, start, end, quiet = [], None, None, 0
    for i in range(last):
        if start is None:
            if unstable[i]:
                start, end, quiet = i, i, 0
            continue
        if unstable[i]:
            end, quiet = i, 0
        elif calm[i]:
            quiet += 1
            if quiet >= patience:
                windows.append((start, end, True))
                start = None
        # a point neither unstable nor calm (between leave and enter) keeps the window open
    if start is not None:
        windows.append((start, end, False))
    out = []
    for a, b, closed in windows:
        if steps[b] - steps[a] + 1 < min_length:
            continue
        k = a + int(np.nanargmax(ratio[a:b + 1]))
        out.append((steps[a], steps[b], steps[k], ratio[k], closed))
    if not out:
        e = np.zeros(0, int)
        return Windows(e, e, e, np.zeros(0), np.zeros(0, bool))
    cols = list(zip(*out))
    return Windows(np.asarray(cols[0], int), np.asarray(cols[1], int), np.asarray(cols[2], int),
                   np.asarray(cols[3], float), np.asarray(cols[4], bool))
