"""Chapter settings chosen by scale: a chapter's parameters cell holds ``scale`` and every
experiment setting, each defaulting to ``None`` ("the scale's default"); the next cell declares the
per-scale defaults and calls :func:`settings`, so an explicitly given parameter (papermill ``-p``)
always wins::

    SCALES = {"smoke": {"steps": 50}, "book": {"steps": 400}, "paper": {"steps": 400}}
    P = settings(SCALES, scale, steps=steps)
    P.steps
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping

from eoslib.book.results import SCALES as KNOWN_SCALES


class Settings(SimpleNamespace):
    """Resolved experiment settings; attribute access (``P.steps``) and ``dict(P)`` via
    :meth:`as_dict` for the results record."""

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain ``dict`` (``scale`` included), for the results record."""
        return dict(vars(self))


def settings(scales: Mapping[str, Mapping[str, Any]], scale: str, **given: Any) -> Settings:
    """Resolve a chapter's settings: the scale's defaults, overridden by every non-``None`` value.

    Args:
      scales: ``{scale: {name: default}}`` for each of ``smoke``, ``book``, ``paper``; every scale
        must name the same settings.
      scale: which scale's defaults to use.
      **given: the parameters cell's values; ``None`` means "use the scale's default".

    Returns:
      A :class:`Settings` with ``scale`` and every setting.

    Raises:
      ValueError: ``scale`` is not a known scale, or a setting is given that no scale declares.
    """
    if scale not in scales:
        raise ValueError(f"scale={scale!r} is not allowed; choose one of {list(scales)}")
    unknown_scales = set(scales) - set(KNOWN_SCALES)
    if unknown_scales:
        raise ValueError(f"SCALES declares {sorted(unknown_scales)}; allowed: {list(KNOWN_SCALES)}")
    names = set(scales[scale])
    for other, table in scales.items():
        if set(table) != names:
            raise ValueError(
                f"SCALES[{other!r}] names {sorted(table)} but SCALES[{scale!r}] names "
                f"{sorted(names)}; every scale must declare the same settings"
            )
    unknown = sorted(set(given) - names)
    if unknown:
        raise ValueError(f"settings {unknown} are not declared in SCALES; allowed: {sorted(names)}")
    resolved = {name: (given[name] if given.get(name) is not None else default)
                for name, default in scales[scale].items()}
    return Settings(scale=scale, **resolved)
