"""Declared claims and the rules that grade them: verdicts that can fail.

A chapter declares each claim **before** its experiment runs, as a :class:`ClaimSpec`: the paper's
statement and number, the metrics it is judged on, the **rule** that turns those metrics into a
verdict (thresholds stated, as data), the control or null model it is compared with, where its
evidence comes from, and whether it is a paper claim or a **consistency check** (something that
holds by construction: shown and recorded, never scored as reproduced). After the run,
:func:`grade` applies the rule to the measured metrics and returns a
:class:`eoslib.book.results.Claim` for the record; :func:`verdict_markdown` writes the chapter's
Verdict section from the graded claims, so no number or verdict in it is typed by hand.

A chapter declares its claims in one cell tagged ``claims``, before its Run section, that
assigns ``CLAIMS`` and needs nothing but this module (``tests/test_verdicts.py`` executes that
cell alone and checks that every claim's rule can fail)::

    # %% tags=["claims", "hide-input"]
    from eoslib.book.verdicts import AllOf, AtLeast, AtMost, ClaimSpec, Given
    CLAIMS = [
        ClaimSpec(
            "edge-of-stability", "the sharpness hovers at, or just above, 2/η",
            "≈ 2/η (Fig. 1)",
            rule=Given(AtLeast("n_at_edge", 1),
                       AllOf((AtMost("eos_ratio_err_max", 0.10, fair=0.25, fmt=".0%"),
                              AtMost("eos_drift_fraction", 0.10, fmt=".0%")))),
            ours="plateau/(2/η) = {sharpness_eos_ratio:.3f}",
            names={"eos_ratio_err_max": "the largest |plateau/(2/η) − 1|"}),
    ]
    display(declared_claims(CLAIMS))          # eoslib.book.display

    # %%   ... the run, then the measurements, into a dict ``metrics``
    claims = grade_all(CLAIMS, metrics, scale=scale)
    display(claims_table(claims))              # the paper-vs-ours table

    # %% tags=["remove-input"]                 (under the "## Verdict" heading)
    display(verdict_section(claims, scale=scale))

**Departures.** A paper claim says how its experiment differs from the paper's (the scale, the loss,
the architecture, the data, the stopping rule, what is measured), each departure a
:class:`Departure` with a short reason from :data:`DEPARTURE_REASONS`, or says
``follows_paper=True``; ``tests/test_departures.py`` fails a chapter whose claim does neither::

    ClaimSpec(..., departures=(
        Departure("{n_images} CIFAR-10 images instead of 5,000", "CPU", scales=("smoke", "book")),
        Departure("cross-entropy replaced by ½MSE", "design choice")))

:func:`grade` keeps the departures that apply at the scale of the claim's evidence, formatted with
the metrics like ``ours``, in the record; the chapter's table, its Verdict section and the
scorecard show them (:func:`departure_line`) beside every verdict that is not ``reproduced``, and
beside a ``reproduced`` one those declared ``always=True`` (a claim shown on a model the paper
never trained: its "reproduced" is a demonstration on another model, and says so).

Conventions:

- A **metric** is a named number in a ``Mapping[str, Any]`` (the record's ``metrics``). A metric
  that is absent, ``None`` or NaN was **not measured** (the experiment was not run at this scale,
  there is no stored run, the regime was never entered); a rule reading it gives ``not tested``,
  which is neither a failure nor a success. A measurement that was made and went wrong must be
  recorded as a value the rule rejects (e.g. ``inf`` for a diverged run), never as NaN.
- Each leaf rule reads one metric and grades it against thresholds ``good`` (reproduced) and
  ``fair`` (partly reproduced; ``None`` for a pass/fail rule). Thresholds must be finite.
- Leaf rules: :class:`AtMost`, :class:`AtLeast` (a threshold), :class:`Within` (a relative
  error), :class:`Factor` (within a factor), :class:`BeatsNull` (an error beats a null model's
  by a factor), :class:`Exceeds` (an effect exceeds its control's by a factor).
- Composite rules: :class:`AllOf` (every part must hold), :class:`AnyOf` (one part suffices),
  :class:`Given` (a precondition: the claim is ``not tested`` unless the regime was entered),
  :class:`Partly` (a weaker form whose holding is partial evidence: "partly if only A holds").
- Every rule renders itself as text (:meth:`Rule.describe`) and says how the measured metrics
  met it (:meth:`Rule.explain`); the record stores both.
- Every rule can propose inputs under which it passes and fails (:meth:`Rule.witnesses`);
  :func:`failing_input` checks a proposal by grading it, and :func:`assert_claims_can_fail` is the
  mutation test: a declared claim that no input can fail is a defect.
"""

from __future__ import annotations

import itertools
import math
import string
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

from eoslib.book import results
from eoslib.book.results import CHECK_OUTCOMES, KINDS, SCALES, VERDICTS, Claim, claim_from_dict

#: Where a claim's evidence can come from, this run (at its scale) or a stored paper-scale run.
EVIDENCE = ("run", "stored")

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTED = VERDICTS
#: The reasons a :class:`Departure` may give. ``"CPU"`` is scaled down to run on CPUs,
#: ``"not stated in the paper"`` a setting we had to choose, ``"reconstructed formula"`` the
#: paper's formula lost or left implicit and rebuilt by us, ``"design choice"`` chosen otherwise
#: on purpose, ``"data availability"`` the paper's data not available where the book runs (a copy
#: of it used instead).
DEPARTURE_REASONS = results.DEPARTURE_REASONS
#: Verdicts ordered from worst to best among those that were tested.
_RANK = {NOT_REPRODUCED: 0, PARTLY: 1, REPRODUCED: 2}


# ----------------------------------------------------------------------------- metric values


def metric_value(metrics: Mapping[str, Any], name: str) -> float:
    """The metric ``name`` as a float; NaN when it is absent or ``None`` (not measured).

    The strings ``"inf"`` and ``"-inf"`` are infinities (how a results record stores them).

    Raises:
      TypeError: the metric is present but not a number (e.g. a list or a string).
    """
    value = metrics.get(name)
    if value is None:
        return math.nan
    if hasattr(value, "__array__") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool):
        return float(value)
    if value in ("inf", "-inf"):
        return float(value)
    if not isinstance(value, (int, float)):
        raise TypeError(f"metric {name!r}={value!r} is not a number; a rule grades one number "
                        "(aggregate a list into a metric of its own)")
    return float(value)


def _measured(value: float) -> bool:
    return not math.isnan(value)


def _fmt(value: float, spec: str) -> str:
    if math.isnan(value):
        return "not measured"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return format(value, spec)


def _check_threshold(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name}={value!r} must be a finite number")
    return float(value)


def _merge(*inputs: Mapping[str, float]) -> dict[str, float] | None:
    """One dict of all ``inputs``; ``None`` when two of them set a metric to different values."""
    out: dict[str, float] = {}
    for item in inputs:
        for key, value in item.items():
            if key in out and not (out[key] == value):
                return None
            out[key] = value
    return out


def _product(groups: Sequence[Iterable[Mapping[str, float]]]) -> Iterator[dict[str, float]]:
    for combo in itertools.product(*(list(g) for g in groups)):
        merged = _merge(*combo)
        if merged is not None:
            yield merged


# ----------------------------------------------------------------------------- rules


class Rule:
    """A grading rule: metrics in, one verdict out; renders itself as text.

    Subclasses are frozen dataclasses (rules are data) and implement :meth:`grade`,
    :meth:`describe`, :meth:`explain`, :meth:`metrics` and :meth:`witnesses`.
    """

    def grade(self, metrics: Mapping[str, Any]) -> str:
        """The verdict (one of :data:`eoslib.book.results.VERDICTS`) for these metrics."""
        raise NotImplementedError

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        """The rule as a sentence fragment; ``names`` maps metric names to how the text calls them."""
        raise NotImplementedError

    def explain(self, metrics: Mapping[str, Any], names: Mapping[str, str] | None = None) -> str:
        """The measured values this rule read, each with whether it met its threshold."""
        raise NotImplementedError

    def metrics(self) -> tuple[str, ...]:
        """The names of the metrics this rule reads."""
        raise NotImplementedError

    def parts(self) -> tuple["Rule", ...]:
        """The rules this one is made of (empty for a leaf rule)."""
        return ()

    def witnesses(self, outcome: str) -> Iterator[dict[str, float]]:
        """Candidate inputs (metric values; ∞ stands for a run that diverged) meant to give ``outcome``.

        ``outcome`` is ``"pass"`` (reproduced) or ``"fail"`` (not reproduced). Candidates are
        proposals: :func:`failing_input` grades them before trusting one.
        """
        raise NotImplementedError


#: How :meth:`Rule.explain` marks a measured value: met, met the looser threshold, missed
#: (a value that was not measured reads "not measured" and carries no mark).
_MARK = {REPRODUCED: " ✓", PARTLY: " ≈", NOT_REPRODUCED: " ✗", NOT_TESTED: ""}


@dataclass(frozen=True)
class _Threshold(Rule):
    metric: str
    good: float
    fair: float | None = None
    fmt: str = "g"

    _sign = 1.0  # +1: smaller is better (AtMost); −1: larger is better (AtLeast)
    _op = "≤"

    def __post_init__(self):
        owner = f"{type(self).__name__}({self.metric!r})"
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"{type(self).__name__}: metric={self.metric!r} must be a metric name")
        _check_threshold(owner, "good", self.good)
        if self.fair is not None:
            _check_threshold(owner, "fair", self.fair)
            if self._sign * (self.fair - self.good) < 0:
                raise ValueError(f"{owner}: fair={self.fair!r} must be {'≥' if self._sign > 0 else '≤'} "
                                 f"good={self.good!r} (fair is the looser threshold)")

    def _score(self, metrics: Mapping[str, Any]) -> float:
        return metric_value(metrics, self.metric)

    def _label(self, names: Mapping[str, str] | None) -> str:
        return (names or {}).get(self.metric, self.metric)

    def grade(self, metrics):
        v = self._score(metrics)
        if not _measured(v):
            return NOT_TESTED
        if self._sign * (v - self.good) <= 0:
            return REPRODUCED
        if self.fair is not None and self._sign * (v - self.fair) <= 0:
            return PARTLY
        return NOT_REPRODUCED

    def _bound_text(self) -> str:
        text = f"{self._op} {_fmt(self.good, self.fmt)}"
        if self.fair is not None:
            text += f" ({self._op} {_fmt(self.fair, self.fmt)}: partly)"
        return text

    def describe(self, names=None):
        return f"{self._label(names)} {self._bound_text()}"

    def explain(self, metrics, names=None):
        v = self._score(metrics)
        return f"{self._label(names)} = {_fmt(v, self.fmt)}{_MARK[self.grade(metrics)]}"

    def metrics(self):
        return (self.metric,)

    def _beyond(self, bound: float) -> list[float]:
        step = max(1.0, abs(bound))
        return [bound + self._sign * step, self._sign * math.inf]

    def witnesses(self, outcome):
        loose = self.fair if self.fair is not None else self.good
        values = [self.good, self.good - self._sign * max(1.0, abs(self.good))] \
            if outcome == "pass" else self._beyond(loose)
        for v in values:
            yield {self.metric: v}


@dataclass(frozen=True)
class AtMost(_Threshold):
    """``metric ≤ good`` → reproduced; ``≤ fair`` → partly reproduced; larger → not reproduced.

    Attributes:
      metric: the metric's name.
      good: the threshold for ``reproduced``.
      fair: the looser threshold for ``partly reproduced`` (``None``: pass/fail).
      fmt: format spec of the thresholds and values in the text (``".0%"`` shows 0.1 as 10%).
    """


@dataclass(frozen=True)
class AtLeast(_Threshold):
    """``metric ≥ good`` → reproduced; ``≥ fair`` → partly reproduced; smaller → not reproduced.

    Attributes:
      metric: the metric's name.
      good: the threshold for ``reproduced``.
      fair: the looser threshold for ``partly reproduced`` (``None``: pass/fail).
      fmt: format spec of the thresholds and values in the text.
    """

    _sign = -1.0
    _op = "≥"


def _target_value(metrics: Mapping[str, Any], target: float | str) -> float:
    return metric_value(metrics, target) if isinstance(target, str) else float(target)


def _graded(value: float, good: float, fair: float | None, *, larger_is_better: bool) -> str:
    """The verdict of a measured quantity against its ``good`` and ``fair`` bounds (NaN: not tested)."""
    if not _measured(value):
        return NOT_TESTED
    meets = (lambda bound: value >= bound) if larger_is_better else (lambda bound: value <= bound)
    if meets(good):
        return REPRODUCED
    if fair is not None and meets(fair):
        return PARTLY
    return NOT_REPRODUCED


class _Targeted:
    """What :class:`Within` and :class:`Factor` share: a target that is a number or a metric."""

    def _target_text(self, names):
        return (names or {}).get(self.target, self.target) if isinstance(self.target, str) \
            else _fmt(self.target, "g")

    def metrics(self):
        return (self.metric,) + ((self.target,) if isinstance(self.target, str) else ())

    def _target_witnesses(self, outcome, failing):
        t = 1.0 if isinstance(self.target, str) else self.target
        base = {self.target: t} if isinstance(self.target, str) else {}
        loose = self.fair if self.fair is not None else self.good
        for v in ([t] if outcome == "pass" else failing(t, loose)):
            yield {**base, self.metric: v}


@dataclass(frozen=True)
class Within(_Targeted, Rule):
    """The relative error ``|metric/target − 1|`` is at most ``good`` (reproduced) or ``fair``
    (partly); ``target`` is a number or the name of another metric (e.g. the measured ``2/η``).

    Attributes:
      metric: the metric's name.
      target: the value it should be close to: a number, or a metric name.
      good: largest relative error for ``reproduced`` (0.1 = 10%).
      fair: largest relative error for ``partly reproduced`` (``None``: pass/fail).
      fmt: format spec of the measured value in the text.
    """

    metric: str
    target: float | str
    good: float
    fair: float | None = None
    fmt: str = ".3g"

    def __post_init__(self):
        owner = f"Within({self.metric!r})"
        _check_threshold(owner, "good", self.good)
        if self.good < 0:
            raise ValueError(f"{owner}: good={self.good!r} must be ≥ 0 (a relative error)")
        if self.fair is not None and _check_threshold(owner, "fair", self.fair) < self.good:
            raise ValueError(f"{owner}: fair={self.fair!r} must be ≥ good={self.good!r}")
        if not isinstance(self.target, str):
            if _check_threshold(owner, "target", self.target) == 0:
                raise ValueError(f"{owner}: target=0 has no relative error; use AtMost on |metric|")

    def error(self, metrics: Mapping[str, Any]) -> float:
        """``|metric/target − 1|`` (NaN if either is not measured; ∞ if the target is 0)."""
        v, t = metric_value(metrics, self.metric), _target_value(metrics, self.target)
        if not (_measured(v) and _measured(t)):
            return math.nan
        if t == 0:
            return math.inf
        return abs(v / t - 1)

    def grade(self, metrics):
        return _graded(self.error(metrics), self.good, self.fair, larger_is_better=False)

    def describe(self, names=None):
        text = (f"{(names or {}).get(self.metric, self.metric)} within {_fmt(self.good, '.0%')} "
                f"of {self._target_text(names)}")
        if self.fair is not None:
            text += f" ({_fmt(self.fair, '.0%')}: partly)"
        return text

    def explain(self, metrics, names=None):
        v = metric_value(metrics, self.metric)
        return (f"{(names or {}).get(self.metric, self.metric)} = {_fmt(v, self.fmt)}, "
                f"{_fmt(self.error(metrics), '.1%')} off {self._target_text(names)}"
                f"{_MARK[self.grade(metrics)]}")

    def witnesses(self, outcome):
        yield from self._target_witnesses(outcome, lambda t, loose: [t * (2 + loose), -t])


@dataclass(frozen=True)
class Factor(_Targeted, Rule):
    """``metric`` is within a factor of ``target``: ``max(r, 1/r) ≤ good`` (reproduced), ``≤ fair``
    (partly), with ``r = metric/target``; a sign mismatch or zero is not reproduced.

    Attributes:
      metric: the metric's name.
      target: a number or a metric name.
      good: the largest factor for ``reproduced`` (> 1).
      fair: the largest factor for ``partly reproduced`` (``None``: pass/fail).
      fmt: format spec of the measured ratio in the text.
    """

    metric: str
    target: float | str
    good: float
    fair: float | None = None
    fmt: str = ".3g"

    def __post_init__(self):
        owner = f"Factor({self.metric!r})"
        if _check_threshold(owner, "good", self.good) < 1:
            raise ValueError(f"{owner}: good={self.good!r} must be ≥ 1 (a factor)")
        if self.fair is not None and _check_threshold(owner, "fair", self.fair) < self.good:
            raise ValueError(f"{owner}: fair={self.fair!r} must be ≥ good={self.good!r}")
        if not isinstance(self.target, str):
            _check_threshold(owner, "target", self.target)

    def factor(self, metrics: Mapping[str, Any]) -> float:
        """``max(r, 1/r)`` for ``r = metric/target``; ∞ when ``r ≤ 0``; NaN if not measured."""
        v, t = metric_value(metrics, self.metric), _target_value(metrics, self.target)
        if not (_measured(v) and _measured(t)):
            return math.nan
        if t == 0 or v / t <= 0 or math.isinf(v / t):
            return math.inf
        r = v / t
        return max(r, 1 / r)

    def grade(self, metrics):
        return _graded(self.factor(metrics), self.good, self.fair, larger_is_better=False)

    def describe(self, names=None):
        text = (f"{(names or {}).get(self.metric, self.metric)} within a factor "
                f"{_fmt(self.good, 'g')} of {self._target_text(names)}")
        if self.fair is not None:
            text += f" ({_fmt(self.fair, 'g')}: partly)"
        return text

    def explain(self, metrics, names=None):
        v = metric_value(metrics, self.metric)
        return (f"{(names or {}).get(self.metric, self.metric)} = {_fmt(v, self.fmt)}, a factor "
                f"{_fmt(self.factor(metrics), '.3g')} from {self._target_text(names)}"
                f"{_MARK[self.grade(metrics)]}")

    def witnesses(self, outcome):
        yield from self._target_witnesses(outcome, lambda t, loose: [t * 2 * loose, -t, 0.0])


class _Ratio(Rule):
    """A rule on ``numerator/denominator`` of two measured quantities ≥ 0: ``≥ good`` → reproduced,
    ``≥ fair`` → partly, else not reproduced. A zero denominator gives ``inf`` when the numerator is
    positive and 0 when both are 0. Subclasses name the two metrics (:meth:`pair`) and the text."""

    def pair(self) -> tuple[str, str]:
        """``(numerator, denominator)`` metric names."""
        raise NotImplementedError

    def __post_init__(self):
        owner = f"{type(self).__name__}({self.metric!r})"
        if _check_threshold(owner, "good", self.good) <= 1:
            raise ValueError(f"{owner}: good={self.good!r} must be > 1 (a factor ≤ 1 is no effect)")
        if self.fair is not None:
            if not 1 <= _check_threshold(owner, "fair", self.fair) <= self.good:
                raise ValueError(f"{owner}: fair={self.fair!r} must be in [1, good={self.good!r}]")

    def ratio(self, metrics: Mapping[str, Any]) -> float:
        """``numerator/denominator`` (NaN if either is not measured)."""
        top, bottom = self.pair()
        a, b = metric_value(metrics, top), metric_value(metrics, bottom)
        if not (_measured(a) and _measured(b)):
            return math.nan
        if a < 0 or b < 0:
            raise ValueError(f"{type(self).__name__}: errors and rates must be ≥ 0; got {top}={a!r}, {bottom}={b!r}")
        if b == 0:
            return math.inf if a > 0 else 0.0
        return a / b

    def grade(self, metrics):
        return _graded(self.ratio(metrics), self.good, self.fair, larger_is_better=True)

    def explain(self, metrics, names=None):
        names = names or {}
        first, second = self.metrics()
        a, b = metric_value(metrics, first), metric_value(metrics, second)
        return (f"{names.get(first, first)} = {_fmt(a, self.fmt)} vs {names.get(second, second)} = "
                f"{_fmt(b, self.fmt)} (factor {_fmt(self.ratio(metrics), '.3g')}){_MARK[self.grade(metrics)]}")

    def witnesses(self, outcome):
        top, bottom = self.pair()
        if outcome == "pass":
            yield {top: 2.0 * self.good, bottom: 1.0}
            yield {top: 1.0, bottom: 0.0}
        else:
            yield {top: 1.0, bottom: 1.0}
            yield {top: 0.0, bottom: 1.0}


@dataclass(frozen=True)
class BeatsNull(_Ratio):
    """A prediction's error beats a null model's (or a control's) error by a factor:
    ``null/metric ≥ good`` → reproduced, ``≥ fair`` → partly, else not reproduced.

    Both are errors (≥ 0; a negative value is an error of the caller). ``metric = 0 < null``
    beats the null by any factor; ``metric = null = 0`` does not beat it.

    Attributes:
      metric: the prediction's error.
      null: the null model's (or control's) error on the same quantity.
      good: the factor for ``reproduced`` (> 1).
      fair: the factor for ``partly reproduced`` (``None``: pass/fail).
      fmt: format spec of the errors in the text.
    """

    metric: str
    null: str
    good: float
    fair: float | None = None
    fmt: str = ".3g"

    def pair(self):
        return self.null, self.metric

    def describe(self, names=None):
        names = names or {}
        text = (f"{names.get(self.metric, self.metric)} smaller than "
                f"{names.get(self.null, self.null)} by a factor ≥ {_fmt(self.good, 'g')}")
        if self.fair is not None:
            text += f" (≥ {_fmt(self.fair, 'g')}: partly)"
        return text

    def metrics(self):
        return (self.metric, self.null)


@dataclass(frozen=True)
class Exceeds(_Ratio):
    """A rate or effect exceeds its control's by a factor: ``metric/control ≥ good`` →
    reproduced, ``≥ fair`` → partly, else not reproduced (e.g. the rate of loss increases at the
    edge against the stable phase's). Both are ≥ 0; ``metric > 0 = control`` exceeds it by any
    factor, ``metric = control = 0`` does not exceed it.

    Attributes:
      metric: the effect measured where the claim says it appears.
      control: the same quantity where the claim says it does not.
      good: the factor for ``reproduced`` (> 1).
      fair: the factor for ``partly reproduced`` (``None``: pass/fail).
      fmt: format spec of the values in the text.
    """

    metric: str
    control: str
    good: float
    fair: float | None = None
    fmt: str = ".3g"

    def pair(self):
        return self.metric, self.control

    def describe(self, names=None):
        names = names or {}
        text = (f"{names.get(self.metric, self.metric)} ≥ {_fmt(self.good, 'g')} × "
                f"{names.get(self.control, self.control)}")
        if self.fair is not None:
            text += f" (≥ {_fmt(self.fair, 'g')}×: partly)"
        return text

    def metrics(self):
        return (self.metric, self.control)


def _parts_text(rules: Sequence[Rule], joiner: str, names) -> str:
    texts = [(f"({r.describe(names)})" if isinstance(r, (AllOf, AnyOf)) else r.describe(names))
             for r in rules]
    return f" {joiner} ".join(texts)


@dataclass(frozen=True)
class AllOf(Rule):
    """Every part must hold: the verdict is the worst of the parts' verdicts.

    ``not reproduced`` anywhere → not reproduced; else ``not tested`` anywhere → not tested;
    else ``partly reproduced`` anywhere → partly; else reproduced.

    Attributes:
      rules: the parts (a tuple of rules, at least one).
    """

    rules: tuple[Rule, ...]

    def __post_init__(self):
        if not self.rules or not all(isinstance(r, Rule) for r in self.rules):
            raise ValueError(f"AllOf: rules={self.rules!r} must be a non-empty tuple of rules")
        object.__setattr__(self, "rules", tuple(self.rules))

    def grade(self, metrics):
        verdicts = [r.grade(metrics) for r in self.rules]
        if NOT_REPRODUCED in verdicts:
            return NOT_REPRODUCED
        if NOT_TESTED in verdicts:
            return NOT_TESTED
        return PARTLY if PARTLY in verdicts else REPRODUCED

    def describe(self, names=None):
        return _parts_text(self.rules, "and", names)

    def explain(self, metrics, names=None):
        return "; ".join(r.explain(metrics, names) for r in self.rules)

    def metrics(self):
        return tuple(dict.fromkeys(m for r in self.rules for m in r.metrics()))

    def parts(self):
        return self.rules

    def witnesses(self, outcome):
        if outcome == "pass":
            yield from _product([r.witnesses("pass") for r in self.rules])
            return
        for bad in self.rules:  # one failing part decides, whatever the others read
            yield from bad.witnesses("fail")


@dataclass(frozen=True)
class AnyOf(Rule):
    """One part suffices: the verdict is the best of the parts that were tested
    (``not tested`` only when no part was).

    Attributes:
      rules: the parts (a tuple of rules, at least one).
    """

    rules: tuple[Rule, ...]

    def __post_init__(self):
        if not self.rules or not all(isinstance(r, Rule) for r in self.rules):
            raise ValueError(f"AnyOf: rules={self.rules!r} must be a non-empty tuple of rules")
        object.__setattr__(self, "rules", tuple(self.rules))

    def grade(self, metrics):
        tested = [v for v in (r.grade(metrics) for r in self.rules) if v != NOT_TESTED]
        return max(tested, key=_RANK.__getitem__) if tested else NOT_TESTED

    def describe(self, names=None):
        return _parts_text(self.rules, "or", names)

    def explain(self, metrics, names=None):
        return "; ".join(r.explain(metrics, names) for r in self.rules)

    def metrics(self):
        return tuple(dict.fromkeys(m for r in self.rules for m in r.metrics()))

    def parts(self):
        return self.rules

    def witnesses(self, outcome):
        if outcome == "fail":
            yield from _product([r.witnesses("fail") for r in self.rules])
            return
        for r in self.rules:
            yield from r.witnesses("pass")


@dataclass(frozen=True)
class Given(Rule):
    """A precondition: the claim is ``not tested`` unless ``condition`` holds (grades
    ``reproduced``); then ``rule`` decides. For a regime the parameters may never enter (the
    edge never reached, too few step sizes at the edge).

    Attributes:
      condition: a pass/fail rule saying the regime was entered (e.g. ``AtLeast("n_at_edge", 2)``).
      rule: the claim's rule, graded only when the condition holds.
    """

    condition: Rule
    rule: Rule

    def __post_init__(self):
        if not isinstance(self.condition, Rule) or not isinstance(self.rule, Rule):
            raise ValueError(f"Given: condition={self.condition!r} and rule={self.rule!r} must "
                             "be rules")

    def grade(self, metrics):
        if self.condition.grade(metrics) != REPRODUCED:
            return NOT_TESTED
        return self.rule.grade(metrics)

    def describe(self, names=None):
        return f"{self.rule.describe(names)}; tested when {self.condition.describe(names)}"

    def explain(self, metrics, names=None):
        if self.condition.grade(metrics) != REPRODUCED:
            measured = self.condition.explain(metrics, names).removesuffix(_MARK[NOT_REPRODUCED])
            return (f"not tested: {measured}, and the rule applies only when "
                    f"{self.condition.describe(names)}")
        return self.rule.explain(metrics, names)

    def metrics(self):
        return tuple(dict.fromkeys(self.condition.metrics() + self.rule.metrics()))

    def parts(self):
        return (self.condition, self.rule)

    def witnesses(self, outcome):
        yield from _product([self.condition.witnesses("pass"), self.rule.witnesses(outcome)])


# ----------------------------------------------------------------------------- departures


def _template_fields(owner: str, template: str) -> list[str]:
    """The metric names a ``str.format`` template reads; a ``ValueError`` for a malformed one
    (an unmatched brace) or a positional field (``{}``, ``{0}``: a template names its metrics)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"{owner}: {template!r} is not a format template ({err}); write a literal "
                         "brace as {{ or }}") from None
    names = [f for _, f, _, _ in parsed if f is not None]
    positional = [f for f in names if not f or f.split(".")[0].split("[")[0].isdigit()]
    if positional:
        raise ValueError(f"{owner}: {template!r} has a positional field "
                         f"{{{positional[0]}}}; name the metric, as in {{sharpness:.3g}}")
    return names


@dataclass(frozen=True)
class Departure:
    """How a claim's experiment differs from the paper's, and why, declared with the claim.

    Attributes:
      what: the departure, in words, beside the paper's own setting where it helps ("250 CIFAR-10
        images instead of 5,000"); may hold ``{metric}`` format fields, filled from the run's
        metrics as ``ClaimSpec.ours`` is (a literal brace is written ``{{`` or ``}}``).
      reason: one of :data:`DEPARTURE_REASONS`.
      scales: the scales at which the departure holds (a tuple of ``"smoke"``, ``"book"``,
        ``"paper"``); ``None``: every scale. A departure the paper-scale run does not make (fewer
        images on a CPU) lists only ``("smoke", "book")``.
      always: show it beside a ``reproduced`` verdict too (default: only beside the others), for
        a departure no verdict should be read without, e.g. a model the paper never trained.

    Raises:
      ValueError: ``what`` is empty or not a format template, ``reason`` is not one of
        :data:`DEPARTURE_REASONS`, ``scales`` is not ``None`` or a non-empty tuple of scales, or
        ``always`` is not a bool.
    """

    what: str
    reason: str
    scales: tuple[str, ...] | None = None
    always: bool = False

    def __post_init__(self):
        if not isinstance(self.what, str) or not self.what.strip():
            raise ValueError(f"Departure: what={self.what!r} must be a non-empty string saying how "
                             "the experiment differs from the paper's")
        _template_fields(f"Departure: what={self.what!r}", self.what)
        if self.reason not in DEPARTURE_REASONS:
            raise ValueError(f"Departure {self.what!r}: reason={self.reason!r} is not one of "
                             f"{list(DEPARTURE_REASONS)}")
        if self.scales is not None:
            scales = self.scales
            if isinstance(scales, str) or not isinstance(scales, (tuple, list)) or not scales:
                raise ValueError(f"Departure {self.what!r}: scales={scales!r} must be None (every "
                                 f"scale) or a non-empty tuple of scales from {list(SCALES)}, "
                                 "e.g. ('smoke', 'book')")
            unknown = [x for x in scales if x not in SCALES]
            if unknown:
                raise ValueError(f"Departure {self.what!r}: scales={scales!r} names "
                                 f"{unknown}, not among the scales {list(SCALES)}")
            object.__setattr__(self, "scales", tuple(scales))
        if not isinstance(self.always, bool):
            raise ValueError(f"Departure {self.what!r}: always={self.always!r} must be True or False")

    def applies(self, scale: str) -> bool:
        """Whether the departure holds at ``scale`` (every scale when ``scales`` is ``None``)."""
        return self.scales is None or scale in self.scales

    def format(self, metrics: Mapping[str, Any]) -> str:
        """``what`` with its ``{metric}`` fields filled from ``metrics`` (like ``ours``: lists
        element-wise, NaN or ``None`` as "n/a").

        Raises:
          ValueError: a field names a metric that ``metrics`` does not have.
        """
        try:
            return _OursFormatter().format(self.what, **metrics)
        except KeyError as missing:
            raise ValueError(f"Departure {self.what!r} names metric {missing} which is not among "
                             f"the metrics {sorted(metrics)}") from None


def _claim(entry: Claim | Mapping[str, Any]) -> Claim:
    return entry if isinstance(entry, Claim) else claim_from_dict(entry)


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _departures_list(departures: Sequence[Mapping[str, Any]]) -> str:
    return "differs from the paper in: " + "; ".join(
        f"{d['what'].rstrip('.')} — {d['reason']}" for d in departures)


def departures_text(claim: Claim | Mapping[str, Any]) -> str:
    """What a graded claim (or a record's claim entry) says of its departures from the paper:
    ``"differs from the paper in: <what> — <reason>; …"``, ``"follows the paper's setup"``, or,
    for a record that declares neither (written before departures were recorded),
    ``"departures from the paper's setup not declared"``."""
    c = _claim(claim)
    if c.departures:
        return _departures_list(c.departures)
    if c.follows_paper:
        return "follows the paper's setup"
    return "departures from the paper's setup not declared"


def departure_line(claim: Claim | Mapping[str, Any]) -> str:
    """The line shown beside a verdict (:func:`departures_text`), or ``""`` where none is shown: a
    ``reproduced`` claim, and a consistency check that holds or declares nothing (a check needs
    no departures). Every ``partly reproduced``, ``not reproduced`` and ``not tested`` claim gets
    one; a ``reproduced`` claim shows the departures declared ``always=True`` (only those)."""
    c = _claim(claim)
    if c.kind == "claim":
        if c.verdict != REPRODUCED:
            return departures_text(c)
        shown = [d for d in c.departures if d.get("always")]
        return _departures_list(shown) if shown else ""
    if c.verdict == CHECK_OUTCOMES[0] or not (c.departures or c.follows_paper):
        return ""
    return departures_text(c)


# ----------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class ClaimSpec:
    """A claim as declared before its experiment runs.

    Attributes:
      id: short identifier, unique in the chapter (``"progressive-sharpening"``).
      claim: the paper's statement, in words.
      paper: the paper's number or observation, with its setting and where (figure, section).
      rule: the :class:`Rule` that grades the measured metrics.
      ours: template of the "ours" cell, formatted with the metrics (``"{sharpness_init:.1f}"``;
        a list metric formats element-wise; a missing or NaN value shows as "n/a").
      names: how the rule text calls each metric (``{"init_fraction": "S₀/(2/η)"}``); every key
        is a metric of the rule.
      glossary: instead of ``names``, the chapter's glossary of every metric it grades; the spec
        keeps, as its ``names``, the entries its rule reads (the glossary itself is not kept).
      control: the control or null model the result is compared with ("" if none).
      evidence: ``"run"`` (this run, at its scale) or ``"stored"`` (a stored paper-scale run).
      kind: ``"claim"`` (a paper claim, scored) or ``"consistency"`` (holds by construction:
        shown and recorded, never scored as reproduced).
      departures: how the experiment differs from the paper's (:class:`Departure`, each with
        its reason and the scales it holds at); a paper claim lists at least one or says
        ``follows_paper=True`` (``tests/test_departures.py``); a consistency check needs neither.
      follows_paper: the experiment follows the paper's setup exactly (no departures listed).
    """

    id: str
    claim: str
    paper: str
    rule: Rule
    ours: str = ""
    names: Mapping[str, str] = field(default_factory=dict)
    control: str = ""
    evidence: str = "run"
    kind: str = "claim"
    glossary: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    departures: tuple[Departure, ...] = ()
    follows_paper: bool = False

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"ClaimSpec: id={self.id!r} must be a non-empty string")
        if isinstance(self.departures, Departure) or not isinstance(self.departures, (tuple, list)):
            raise ValueError(f"ClaimSpec {self.id!r}: departures={self.departures!r} must be a "
                             "tuple of Departure (one departure: (Departure(...),))")
        wrong = [d for d in self.departures if not isinstance(d, Departure)]
        if wrong:
            raise ValueError(f"ClaimSpec {self.id!r}: departures holds {wrong[0]!r}, not a "
                             "Departure(what, reason, scales=None)")
        object.__setattr__(self, "departures", tuple(self.departures))
        if not isinstance(self.follows_paper, bool):
            raise ValueError(f"ClaimSpec {self.id!r}: follows_paper={self.follows_paper!r} must be "
                             "True or False")
        if self.follows_paper and self.departures:
            raise ValueError(f"ClaimSpec {self.id!r}: follows_paper=True but departures are "
                             "listed: a claim follows the paper's setup or lists how it departs "
                             "from it (a departure limited by scales= already says the others "
                             "follow it)")
        if not isinstance(self.rule, Rule):
            raise ValueError(f"ClaimSpec {self.id!r}: rule={self.rule!r} is not a Rule")
        if self.evidence not in EVIDENCE:
            raise ValueError(f"ClaimSpec {self.id!r}: evidence={self.evidence!r} is not one of "
                             f"{list(EVIDENCE)}")
        if self.kind not in KINDS:
            raise ValueError(f"ClaimSpec {self.id!r}: kind={self.kind!r} is not one of {list(KINDS)}")
        if self.glossary:
            if self.names:
                raise ValueError(f"ClaimSpec {self.id!r}: give names or glossary, not both")
            picked = {m: self.glossary[m] for m in self.rule.metrics() if m in self.glossary}
            object.__setattr__(self, "names", picked)
            object.__setattr__(self, "glossary", {})
        unknown = sorted(set(self.names) - set(self.rule.metrics()))
        if unknown:
            raise ValueError(f"ClaimSpec {self.id!r}: names {unknown} are not metrics of its rule "
                             f"{list(self.rule.metrics())}")

    def rule_text(self) -> str:
        """The rule as text, with the metrics called by their ``names``."""
        return self.rule.describe(self.names)


class _OursFormatter(string.Formatter):
    """``str.format`` where lists format element-wise and NaN / ``None`` read "n/a"."""

    def format_field(self, value, format_spec):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
            value = value.tolist()
        if isinstance(value, (list, tuple)):
            return ", ".join(self.format_field(v, format_spec) for v in value)
        return super().format_field(value, format_spec)


def evidence_text(evidence: str, scale: str) -> str:
    """The scale a claim's evidence comes from, as the record stores it: ``"<scale> run"`` for
    this run, ``"stored paper-scale run"`` for a stored one."""
    if evidence == "run":
        return f"{scale} run"
    return "stored paper-scale run"


def grade(spec: ClaimSpec, metrics: Mapping[str, Any], *, scale: str) -> Claim:
    """Grade one declared claim with the measured ``metrics`` into the record's
    :class:`eoslib.book.results.Claim`.

    The verdict is the rule's (a consistency check's is ``holds`` / ``fails`` / ``not tested``);
    ``ours`` is the spec's template formatted with the metrics; ``note`` says how each measured
    value met the rule; ``rule``, ``control``, ``evidence`` and ``kind`` are stored as text.
    ``departures`` are the declared departures that apply at the scale of the evidence (``scale``
    for a claim whose evidence is this run, ``"paper"`` for a stored paper-scale run), their
    ``what`` formatted with the metrics; ``follows_paper`` is the declaration's, or ``True`` when
    departures are declared and none of them applies at that scale.

    Raises:
      ValueError: the ``ours`` template, or a departure's ``what``, names a metric that
        ``metrics`` does not have.
    """
    verdict = spec.rule.grade(metrics)
    if spec.kind == "consistency":
        verdict = {REPRODUCED: CHECK_OUTCOMES[0], NOT_TESTED: CHECK_OUTCOMES[2]}.get(
            verdict, CHECK_OUTCOMES[1])
    try:
        ours = _OursFormatter().format(spec.ours, **metrics)
    except KeyError as missing:
        raise ValueError(f"claim {spec.id!r}: its ours template {spec.ours!r} names metric "
                         f"{missing} which is not among the metrics {sorted(metrics)}") from None
    at = scale if spec.evidence == "run" else "paper"
    applying = [d for d in spec.departures if d.applies(at)]
    try:
        departures = tuple({"what": d.format(metrics), "reason": d.reason,
                            **({"always": True} if d.always else {})} for d in applying)
    except ValueError as err:
        raise ValueError(f"claim {spec.id!r}: {err}") from None
    return Claim(
        id=spec.id, claim=spec.claim, paper=spec.paper, ours=ours, verdict=verdict,
        note=spec.rule.explain(metrics, spec.names), rule=spec.rule_text(),
        control=spec.control, evidence=evidence_text(spec.evidence, scale), kind=spec.kind,
        departures=departures,
        follows_paper=spec.follows_paper or (bool(spec.departures) and not applying),
    )


def grade_all(specs: Sequence[ClaimSpec], metrics: Mapping[str, Any], *, scale: str) -> list[Claim]:
    """Grade every declared claim (see :func:`grade`); ids must be unique."""
    ids = [s.id for s in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"claim ids {duplicates} are declared more than once")
    return [grade(s, metrics, scale=scale) for s in specs]


# ----------------------------------------------------------------------------- mutation


#: Most inputs :func:`failing_input` / :func:`passing_input` grade in their grid search.
SEARCH_LIMIT = 50_000


def _search(rule: Rule, outcome: str, limit: int = SEARCH_LIMIT) -> dict[str, float] | None:
    """An input under which ``rule`` gives ``outcome`` (``"fail"``: a tested verdict other than
    reproduced; ``"refute"``: not reproduced; ``"pass"``: reproduced), checked by grading: first the rule's own witnesses,
    then every combination of the values that any part's witnesses give each metric (at most
    ``limit`` of them)."""
    wanted = {"fail": (NOT_REPRODUCED, PARTLY), "refute": (NOT_REPRODUCED,),
              "pass": (REPRODUCED,)}[outcome]
    if outcome == "refute":
        outcome = "fail"
    for candidate in rule.witnesses(outcome):
        if rule.grade(candidate) in wanted:
            return candidate
    pool: dict[str, list[float]] = {m: [] for m in rule.metrics()}
    stack = [rule]
    while stack:  # every value any part's witnesses give a metric, passing or failing
        part = stack.pop()
        stack.extend(part.parts())
        for candidate in itertools.chain(part.witnesses("pass"), part.witnesses("fail")):
            for name, value in candidate.items():
                if name in pool and value not in pool[name]:
                    pool[name].append(value)
    names = list(pool)
    for count, values in enumerate(itertools.product(*(pool[n] or [0.0] for n in names))):
        if count >= limit:
            break
        candidate = dict(zip(names, values))
        try:
            if rule.grade(candidate) in wanted:
                return candidate
        except ValueError:  # e.g. a negative error for BeatsNull: not an admissible input
            continue
    return None


def failing_input(rule: Rule | ClaimSpec) -> dict[str, float] | None:
    """A finite-or-infinite input under which ``rule`` (or a claim's rule) gives a tested verdict
    other than ``reproduced``, checked by grading it; ``None`` if none is found (a defect: a rule
    that no input can fail)."""
    return _search(rule.rule if isinstance(rule, ClaimSpec) else rule, "fail")


def refuting_input(rule: Rule | ClaimSpec) -> dict[str, float] | None:
    """An input under which ``rule`` gives ``not reproduced`` (checked), or ``None``: a rule whose
    worst verdict is ``partly reproduced`` cannot refute its claim."""
    return _search(rule.rule if isinstance(rule, ClaimSpec) else rule, "refute")


def passing_input(rule: Rule | ClaimSpec) -> dict[str, float] | None:
    """An input under which ``rule`` gives ``reproduced`` (checked), or ``None``."""
    return _search(rule.rule if isinstance(rule, ClaimSpec) else rule, "pass")


def assert_claims_can_fail(specs: Sequence[ClaimSpec]) -> dict[str, dict[str, float]]:
    """The mutation test of a chapter: every declared claim has an input that fails its rule, one
    that refutes it (``not reproduced``, not only ``partly``) and one that passes it (a rule
    nothing can pass is as empty as one nothing can fail).

    Returns:
      ``{claim id: failing input}``.

    Raises:
      AssertionError: naming each claim whose rule cannot fail (or cannot pass).
    """
    failing, defects = {}, []
    for spec in specs:
        bad, good = failing_input(spec), passing_input(spec)
        if bad is None:
            defects.append(f"{spec.id!r}: no input fails its rule ({spec.rule_text()})")
        else:
            failing[spec.id] = bad
        if bad is not None and refuting_input(spec) is None:
            defects.append(f"{spec.id!r}: no input gives not reproduced, at worst partly "
                           f"({spec.rule_text()})")
        if good is None:
            defects.append(f"{spec.id!r}: no input passes its rule ({spec.rule_text()})")
    if defects:
        raise AssertionError("rules that cannot fail (or pass): " + "; ".join(defects))
    return failing


def passing_range(rule: Rule) -> dict[str, tuple[float, float]]:
    """For each metric that ``rule`` bounds on its own, the closed interval ``(lo, hi)`` its value
    must lie in for the rule to give ``reproduced`` (a necessary condition, not a sufficient one).

    Leaf bounds: :class:`AtMost` ``(−∞, good]``, :class:`AtLeast` ``[good, ∞)``, :class:`Within`
    and :class:`Factor` with a numeric target the band about it. :class:`AllOf` and :class:`Given`
    intersect their parts' intervals (every part must pass); :class:`AnyOf` and :class:`Partly` take
    the hull of what their parts allow (one part may suffice). Rules on two metrics (a target
    that is a metric, :class:`BeatsNull`, :class:`Exceeds`) bound neither metric alone and are left
    out. An empty interval has ``lo > hi``.
    """
    inf = math.inf
    if isinstance(rule, AtMost):
        return {rule.metric: (-inf, rule.good)}
    if isinstance(rule, AtLeast):
        return {rule.metric: (rule.good, inf)}
    if isinstance(rule, (Within, Factor)):
        if isinstance(rule.target, str):
            return {}
        t = float(rule.target)
        ends = ((t * (1 - rule.good), t * (1 + rule.good)) if isinstance(rule, Within)
                else (t / rule.good, t * rule.good))
        return {rule.metric: (min(ends), max(ends))}
    parts = rule.parts()
    if not parts:
        return {}
    ranges = [passing_range(p) for p in parts]
    out: dict[str, tuple[float, float]] = {}
    if isinstance(rule, (AllOf, Given)):
        for r in ranges:
            for m, (lo, hi) in r.items():
                a, b = out.get(m, (-inf, inf))
                out[m] = (max(a, lo), min(b, hi))
        return out
    # AnyOf, Partly and anything else made of parts: a metric is bounded only where every part
    # bounds it, by the hull of their intervals
    common = set.intersection(*(set(r) for r in ranges))
    return {m: (min(r[m][0] for r in ranges), max(r[m][1] for r in ranges)) for m in common}


def conflicting_claims(specs: Sequence[ClaimSpec]) -> list[str]:
    """Pairs of claims that cannot both be ``reproduced`` because they need one metric in
    disjoint ranges (:func:`passing_range`), e.g. one claim needing a ratio in [0.8, 1.2] and
    another needing the same ratio ≤ 0.8 (ranges that only touch count as disjoint). Also a
    claim whose own rule needs an empty range.
    Returns one line per conflict (empty when there is none)."""
    ranges = {s.id: passing_range(s.rule) for s in specs}
    lines = [f"{i!r} needs {m} in the empty range [{lo:g}, {hi:g}]"
             for i, r in ranges.items() for m, (lo, hi) in r.items() if lo > hi]
    for (a, ra), (b, rb) in itertools.combinations(ranges.items(), 2):
        for m in sorted(set(ra) & set(rb)):
            lo, hi = max(ra[m][0], rb[m][0]), min(ra[m][1], rb[m][1])
            # ranges that only touch (≤ 0.8 against [0.8, 1.2]) meet in one value no run
            # will hit: a conflict, unless a claim asks for that exact value itself
            point = ra[m][0] == ra[m][1] or rb[m][0] == rb[m][1]
            if lo > hi or (lo == hi and not point):
                lines.append(f"{a!r} needs {m} in [{ra[m][0]:g}, {ra[m][1]:g}] and {b!r} in "
                             f"[{rb[m][0]:g}, {rb[m][1]:g}]: they cannot both be reproduced")
    return lines


# ----------------------------------------------------------------------------- verdict section


def _count(claims: Sequence[Claim], verdicts: Sequence[str]) -> dict[str, int]:
    return {v: sum(c.verdict == v for c in claims) for v in verdicts}


def verdict_markdown(claims: Sequence[Claim], *, scale: str) -> str:
    """A chapter's Verdict section as Markdown, from its graded claims (nothing typed by hand).

    One summary sentence with the four verdict counts of the paper claims, then one item per
    paper claim (verdict, evidence, the rule, the measured values, and beside a verdict that is
    not ``reproduced`` how the experiment differs from the paper's, :func:`departure_line`), then
    the consistency checks apart, as checks that hold by construction and are not scored.
    """
    paper = [c for c in claims if c.kind == "claim"]
    checks = [c for c in claims if c.kind == "consistency"]
    counts = _count(paper, VERDICTS)
    lines = [
        f"At `{scale}` scale, {len(paper)} paper claim{'s were' if len(paper) != 1 else ' was'} "
        "judged by rules declared before the run: "
        + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".",
        "",
    ]

    def item(c: Claim) -> str:
        text = f"- **{c.id}** — *{c.verdict}*"
        if c.evidence:
            text += f" ({c.evidence})"
        text += f": {c.claim}."
        departures = departure_line(c)
        if departures:
            text += f" {_sentence(departures[0].upper() + departures[1:])}"
        if c.rule:
            text += f" Rule: {c.rule}."
        if c.control:
            text += f" Control: {c.control}."
        if c.note:
            text += f" Measured: {c.note}."
        return text

    lines += [item(c) for c in paper]
    if checks:
        outcomes = _count(checks, CHECK_OUTCOMES)
        lines += ["", "Consistency checks (hold by construction; shown, not scored): "
                  + ", ".join(f"{n} {v}" for v, n in outcomes.items() if n) + ".", ""]
        lines += [item(c) for c in checks]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- partial forms


@dataclass(frozen=True)
class Partly(Rule):
    """A weaker form of a claim: ``rule`` holding is partial evidence only, so ``reproduced``
    becomes ``partly reproduced`` (every other verdict is kept).

    For rules of the form "reproduced if A and B hold; partly if only one of them does", which
    :class:`AllOf` (the worst part) cannot say: ``AnyOf((AllOf((A, B)), Partly(A), Partly(B)))``.
    On its own a ``Partly`` rule can never give ``reproduced``; it belongs inside :class:`AnyOf`.

    Attributes:
      rule: the weaker form's rule.
    """

    rule: Rule

    def __post_init__(self):
        if not isinstance(self.rule, Rule):
            raise ValueError(f"Partly: rule={self.rule!r} must be a rule")

    def grade(self, metrics):
        verdict = self.rule.grade(metrics)
        return PARTLY if verdict == REPRODUCED else verdict

    def describe(self, names=None):
        inner = self.rule.describe(names)
        if isinstance(self.rule, (AllOf, AnyOf)):
            inner = f"({inner})"
        return f"partly: {inner}"

    def explain(self, metrics, names=None):
        return f"partly: {self.rule.explain(metrics, names)}"

    def metrics(self):
        return self.rule.metrics()

    def parts(self):
        return (self.rule,)

    def witnesses(self, outcome):
        if outcome == "pass":  # a partial form never reproduces a claim on its own
            return
        yield from self.rule.witnesses("pass")  # holding gives "partly": a failing verdict
        yield from self.rule.witnesses("fail")
