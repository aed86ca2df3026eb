"""Chapter settings chosen by scale, each checked against its declared type and range.

A chapter's parameters cell holds ``scale`` and every experiment setting, each defaulting to
``None`` ("the scale's default"). The next cell declares what each setting may be (``RANGES``),
the per-scale defaults (``SCALES``), and calls :func:`settings`, so an explicitly given parameter
(papermill ``-p``) always wins, and a value outside its range stops the chapter before it runs::

    RANGES = {"eta": "float > 0", "steps": "int >= 1, multiple of probe_every",
              "probe_every": "int >= 1", "etas": "list[float > 0], non-empty", "arch": "model"}
    SCALES = {"smoke": {...}, "book": {...}, "paper": {...}}  # "long": {...} optional
    P = settings(SCALES, scale, RANGES, eta=eta, steps=steps, ...)
    P.steps

Both tables are literals, so :func:`eoslib.book.chapters.parse_chapter` reads them without
executing the chapter, and ``python -m eoslib run`` applies the same :func:`check` to the ``-p``
values before papermill starts.

**Range syntax.** A range is a type, then conditions separated by commas (the first may follow
the type directly):

- types: ``int``, ``float``, ``str``, ``bool``, ``list[RANGE]`` (a list or tuple whose every
  element is in RANGE); ``one of A, B, C`` (one of those words); a named set of
  :data:`DOMAINS` (``model``: a name of :data:`eoslib.engine.models.NAMES`; ``cifar10-model``:
  one of those that take CIFAR-10 images; ``kappa-case``: a case of
  :data:`eoslib.mechanisms.kappa.CASES`).
- conditions on numbers: ``> x``, ``>= x``, ``< x``, ``<= x``, ``!= x``, ``in (a, b]`` (an
  interval, brackets open or closed), ``multiple of x``. ``x`` is a number or the *name of
  another parameter* of the chapter, compared with that parameter's resolved value.
- conditions on lists: ``non-empty``, ``length n``, ``contains x``.

An ``int`` is a Python integer (not a ``bool``, not ``2.0``). A ``float`` is any real number;
NaN is never allowed, and ±∞ (the number, or the strings ``"inf"`` / ``"-inf"``) only where an
interval closes on it, e.g. ``float in (0, inf]``.
"""

from __future__ import annotations

import ast
import math
import numbers
import operator
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

from eoslib.book.results import OPTIONAL_SCALES, REQUIRED_SCALES
from eoslib.book.results import SCALES as KNOWN_SCALES
from eoslib.engine import models
from eoslib.mechanisms import kappa

#: Named sets of allowed words a range may name instead of a type.
DOMAINS: dict[str, tuple[str, ...]] = {
    "model": tuple(models.NAMES),
    "cifar10-model": models.names("cifar10"),
    "kappa-case": tuple(kappa.CASES),
}

_TYPES = ("int", "float", "str", "bool")
_COMPARE = {">=": operator.ge, "<=": operator.le, "!=": operator.ne, ">": operator.gt, "<": operator.lt}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


class ParameterError(ValueError):
    """A parameter's value is outside its declared range (one line: name, value, what is allowed)."""


def _split_top(text: str) -> list[str]:
    """Split at the commas that are not inside brackets or parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _number(text: str) -> float | int:
    text = text.strip()
    if text.lower() in ("inf", "+inf", "-inf"):
        return float(text.lower().replace("+", ""))
    value = ast.literal_eval(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(text)
    return value


def _ref(text: str) -> float | int | str:
    """A bound: a number, or the name of another parameter (kept as the name)."""
    text = text.strip()
    try:
        return _number(text)
    except (ValueError, SyntaxError):
        if _NAME.match(text):
            return text
        raise ValueError(f"{text!r} is neither a number nor a parameter name") from None


@dataclass(frozen=True)
class Condition:
    """One condition of a :class:`Range`: ``kind`` with its operands (see the module doc)."""

    kind: str  # compare | interval | multiple | non-empty | length | contains
    op: str = ""
    bound: Any = None
    upper: Any = None
    closed: tuple[bool, bool] = (False, False)

    @staticmethod
    def parse(text: str) -> "Condition":
        text = text.strip()
        if text == "non-empty":
            return Condition("non-empty")
        if text.startswith("length "):
            return Condition("length", bound=int(text[len("length "):]))
        if text.startswith("contains "):
            item = text[len("contains "):].strip()
            try:
                return Condition("contains", bound=_number(item))
            except (ValueError, SyntaxError):
                return Condition("contains", bound=item.strip("'\""))
        if text.startswith("multiple of "):
            return Condition("multiple", bound=_ref(text[len("multiple of "):]))
        if text.startswith("in "):
            body = text[3:].strip()
            if body[:1] not in "([" or body[-1:] not in ")]" or len(_split_top(body[1:-1])) != 2:
                raise ValueError(f"interval {body!r} must read like (a, b], [a, b), ...")
            low, high = _split_top(body[1:-1])
            return Condition("interval", bound=_ref(low), upper=_ref(high),
                             closed=(body[0] == "[", body[-1] == "]"))
        for op in _COMPARE:  # two-character operators first
            if text.startswith(op):
                return Condition("compare", op=op, bound=_ref(text[len(op):]))
        raise ValueError(f"condition {text!r} is not one of: > x, >= x, < x, <= x, != x, in (a, b], "
                         "multiple of x, non-empty, length n, contains x")

    def refs(self) -> list[str]:
        """The other parameters this condition compares with."""
        return [b for b in (self.bound, self.upper) if isinstance(b, str) and self.kind != "contains"]

    def violation(self, value: Any, values: Mapping[str, Any]) -> str | None:
        """Why ``value`` breaks this condition (``None`` if it does not); ``values`` resolves names."""
        def resolve(b):
            if isinstance(b, str):
                return _as_float(values[b]) if not isinstance(values[b], int) else values[b]
            return b

        def show(b):
            return f"{b}={values[b]!r}" if isinstance(b, str) else f"{b!r}"

        if self.kind == "non-empty":
            return "it is empty" if len(value) == 0 else None
        if self.kind == "length":
            return f"its length is {len(value)}" if len(value) != self.bound else None
        if self.kind == "contains":
            present = any(_same(v, self.bound) for v in value)
            return None if present else f"it does not contain {self.bound!r}"
        x = _as_float(value) if isinstance(value, str) else value
        if self.kind == "compare":
            return None if _COMPARE[self.op](x, resolve(self.bound)) else f"it is not {self.op} {show(self.bound)}"
        if self.kind == "interval":
            low, high = resolve(self.bound), resolve(self.upper)
            ok_low = x >= low if self.closed[0] else x > low
            ok_high = x <= high if self.closed[1] else x < high
            return None if ok_low and ok_high else "it is outside the interval"
        if self.kind == "multiple":
            m = resolve(self.bound)
            return None if m and x % m == 0 else f"it is not a multiple of {show(self.bound)}"
        raise AssertionError(self.kind)

    def allows_infinity(self) -> bool:
        return self.kind == "interval" and (
            (self.closed[1] and self.upper == math.inf) or (self.closed[0] and self.bound == -math.inf))


_NON_FINITE = ("inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan")


def _as_float(value: Any) -> float:
    """A float parameter's value as a number: the strings ``"inf"``/``"-inf"``/``"nan"`` included
    (any other string is NaN)."""
    if isinstance(value, str):
        return float(value.strip()) if value.strip().lower() in _NON_FINITE else math.nan
    return float(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        try:
            return _as_float(a) == b
        except (TypeError, ValueError):
            return False
    return a == b


@dataclass(frozen=True)
class Range:
    """A parsed range (see the module doc): a type, its element range for lists, its allowed
    words for ``one of`` / a domain, and its conditions. ``text`` is the declaration itself."""

    text: str
    type: str  # int | float | str | bool | list | choice
    element: "Range | None" = None
    choices: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()

    @staticmethod
    def parse(text: str) -> "Range":
        """Parse a range declaration; a malformed one raises ``ValueError`` naming it."""
        try:
            return Range._parse(text.strip())
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"range {text!r} does not parse: {err}") from None

    @staticmethod
    def _parse(text: str) -> "Range":
        if text.startswith("list["):
            depth = 0
            for end, ch in enumerate(text):
                depth += 1 if ch in "([" else -1 if ch in ")]" else 0
                if ch == "]" and depth == 0:
                    break
            else:
                raise ValueError("unclosed 'list['")
            rest = text[end + 1:].strip()
            if rest and not rest.startswith(","):
                raise ValueError(f"expected ',' after the list's element range, got {rest!r}")
            return Range(text, "list", element=Range._parse(text[5:end].strip()),
                         conditions=tuple(Condition.parse(c) for c in _split_top(rest[1:])))
        if text.startswith("one of "):
            words = tuple(w.strip("'\"") for w in _split_top(text[len("one of "):]))
            if not words:
                raise ValueError("'one of' names no words")
            return Range(text, "choice", choices=words)
        if text in DOMAINS:
            return Range(text, "choice", choices=DOMAINS[text])
        head, _, tail = text.partition(" ")
        head = head.rstrip(",")
        if head not in _TYPES:
            raise ValueError(f"{head!r} is not a type ({', '.join(_TYPES)}, list[...], one of ..., "
                             f"or one of the named sets {sorted(DOMAINS)})")
        conds = tuple(Condition.parse(c) for c in _split_top(tail))
        kinds = {c.kind for c in conds}
        if head != "list" and kinds & {"non-empty", "length", "contains"}:
            raise ValueError(f"non-empty / length / contains apply to lists, not to {head}")
        if head in ("str", "bool") and conds:
            raise ValueError(f"a {head} takes no conditions (use 'one of ...')")
        return Range(text, head, conditions=conds)

    def own(self) -> "Range":
        """This range without the conditions that compare with other parameters."""
        return Range(self.text, self.type, self.element.own() if self.element is not None else None,
                     self.choices, tuple(c for c in self.conditions if not c.refs()))

    def refs(self) -> list[str]:
        """The other parameters this range compares with (its elements' included)."""
        own = [r for c in self.conditions for r in c.refs()]
        return own + (self.element.refs() if self.element is not None else [])

    def violation(self, value: Any, values: Mapping[str, Any]) -> str | None:
        """Why ``value`` is outside this range, in a few words (``None`` if it is inside)."""
        if self.type == "list":
            if not isinstance(value, (list, tuple)):
                return "it is not a list"
            for i, item in enumerate(value):
                why = self.element.violation(item, values)
                if why is not None:
                    return f"element {i} ({item!r}): {why}"
        elif self.type == "choice":
            if not isinstance(value, str) or value not in self.choices:
                return f"it is not one of {list(self.choices)}"
            return None
        elif self.type == "bool":
            return None if isinstance(value, bool) else "it is not a bool"
        elif self.type == "str":
            return None if isinstance(value, str) else "it is not a string"
        elif self.type == "int":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                return "it is not an int"
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
                return "it is not a number"
            if isinstance(value, str) and value.strip().lower() not in _NON_FINITE:
                return "it is not a number"
            x = _as_float(value)
            if math.isnan(x):
                return "it is NaN"
            if math.isinf(x) and not any(c.allows_infinity() for c in self.conditions):
                return "it is not finite"
        for cond in self.conditions:
            why = cond.violation(value, values)
            if why is not None:
                return why
        return None


def check(ranges: Mapping[str, str], values: Mapping[str, Any]) -> None:
    """Check every value against its declared range; raise :class:`ParameterError` on the first
    one outside it, in one line naming the parameter, the value and what is allowed.

    Args:
      ranges: ``{name: range}`` (module doc), one per setting.
      values: ``{name: value}``, every setting resolved (a range may name another setting).

    Raises:
      ValueError: a setting has no declared range, a range does not parse or names an unknown
        setting (the chapter's fault); :class:`ParameterError` for a value outside its range.
    """
    missing = sorted(set(values) - set(ranges))
    extra = sorted(set(ranges) - set(values))
    if missing or extra:
        raise ValueError(f"RANGES must declare exactly the settings: missing {missing}, not settings {extra}")
    parsed = {name: Range.parse(text) for name, text in ranges.items()}
    for name, rng in parsed.items():
        unknown = [r for r in rng.refs() if r not in values]
        if unknown:
            raise ValueError(f"range of {name} ({rng.text!r}) names {unknown}, which are not settings")
    # every value on its own first (so a comparison never meets a wrong-typed operand), then against others
    for own_only in (True, False):
        for name, rng in parsed.items():
            why = rng.own().violation(values[name], values) if own_only else rng.violation(values[name], values)
            if why is not None:
                raise ParameterError(f"{name}={values[name]!r} is not allowed ({why}); allowed: {rng.text}")


class Settings(SimpleNamespace):
    """Resolved experiment settings; attribute access (``P.steps``) and ``dict(P)`` via
    :meth:`as_dict` for the results record."""

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain ``dict`` (``scale`` included), for the results record."""
        return dict(vars(self))


class NoSuchScale(ValueError):
    """A chapter asked to run at a known optional scale (``long``) it does not declare."""


def check_scales(scales: Mapping[str, Mapping[str, Any]], where: str = "SCALES") -> None:
    """Check a chapter's ``SCALES`` table: it declares every scale of
    :data:`eoslib.book.results.REQUIRED_SCALES`, any of :data:`eoslib.book.results.OPTIONAL_SCALES`
    (``long``), no other, and every declared scale names the same settings.

    Raises:
      ValueError: naming ``where`` and what is wrong.
    """
    unknown = [s for s in scales if s not in KNOWN_SCALES]
    if unknown:
        raise ValueError(f"{where} declares {unknown}; allowed: {list(KNOWN_SCALES)}")
    missing = [s for s in REQUIRED_SCALES if s not in scales]
    if missing:
        raise ValueError(f"{where} must declare {list(REQUIRED_SCALES)} (and may declare "
                         f"{list(OPTIONAL_SCALES)}); it lacks {missing}")
    first = next(iter(scales))
    names = set(scales[first])
    for other, table in scales.items():
        if set(table) != names:
            raise ValueError(
                f"{where}[{other!r}] names {sorted(table)} but {where}[{first!r}] names "
                f"{sorted(names)}; every scale must declare the same settings"
            )


def undeclared_scale_message(chapter: str, scale: str, declared: Sequence[str]) -> str:
    """The one line said when ``chapter`` is asked to run at a scale it does not declare."""
    if scale in OPTIONAL_SCALES:
        return (f"chapter {chapter} declares no {scale} scale (its SCALES has {list(declared)}): "
                f"add SCALES[{scale!r}] with its settings to notebooks/{chapter}.py to run it at "
                f"{scale} scale")
    return f"scale={scale!r} is not allowed for {chapter}; choose one of {list(declared)}"


def resolve(scales: Mapping[str, Mapping[str, Any]], scale: str, given: Mapping[str, Any], *,
            chapter: str = "this chapter") -> dict[str, Any]:
    """The scale's defaults, overridden by every non-``None`` given value (no range check).

    Raises:
      NoSuchScale: ``scale`` is an optional scale (``long``) the chapter does not declare.
      ValueError: ``scale`` is not a known scale, the table breaks :func:`check_scales`, or a
        setting is given that no scale declares.
    """
    if scale not in scales:
        if scale in OPTIONAL_SCALES:
            raise NoSuchScale(undeclared_scale_message(chapter, scale, list(scales)))
        raise ValueError(f"scale={scale!r} is not allowed; choose one of {list(scales)}")
    check_scales(scales)
    names = set(scales[scale])
    unknown = sorted(set(given) - names)
    if unknown:
        raise ValueError(f"settings {unknown} are not declared in SCALES; allowed: {sorted(names)}")
    return {name: (given[name] if given.get(name) is not None else default)
            for name, default in scales[scale].items()}


def settings(scales: Mapping[str, Mapping[str, Any]], scale: str, ranges: Mapping[str, str], /,
             **given: Any) -> Settings:
    """Resolve a chapter's settings and check each against its declared range.

    Args:
      scales: ``{scale: {name: default}}`` for each of ``smoke``, ``book``, ``paper``, and
        optionally ``long`` (:func:`check_scales`); every scale must name the same settings.
      scale: which scale's defaults to use.
      ranges: ``{name: range}`` for every setting (syntax in the module doc).
      **given: the parameters cell's values; ``None`` means "use the scale's default".

    Returns:
      A :class:`Settings` with ``scale`` and every setting.

    Raises:
      ValueError: ``scale`` is not a known scale, a setting is given that no scale declares, or
        a resolved value is outside its range (:class:`ParameterError`, one line naming the
        parameter, the value and what is allowed).
    """
    resolved = resolve(scales, scale, given)
    check(ranges, resolved)
    return Settings(scale=scale, **resolved)
