"""Settings by scale: defaults, explicit overrides, clear errors."""

import pytest

from eoslib.book.scales import settings

SCALES = {"smoke": {"steps": 10, "eta": 0.1}, "book": {"steps": 100, "eta": 0.1},
          "paper": {"steps": 1000, "eta": 0.1}}


def test_scale_defaults_and_overrides():
    P = settings(SCALES, "book", steps=None, eta=None)
    assert (P.scale, P.steps, P.eta) == ("book", 100, 0.1)
    P = settings(SCALES, "smoke", steps=7)
    assert (P.steps, P.eta) == (7, 0.1)
    assert P.as_dict() == {"scale": "smoke", "steps": 7, "eta": 0.1}


def test_unknown_scale_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"scale='huge' is not allowed; choose one of \['smoke', 'book', 'paper'\]"):
        settings(SCALES, "huge")


def test_unknown_setting_is_an_error():
    with pytest.raises(ValueError, match=r"\['stpes'\] are not declared"):
        settings(SCALES, "book", stpes=3)


def test_scales_must_declare_the_same_settings():
    bad = dict(SCALES, paper={"steps": 1})
    with pytest.raises(ValueError, match="every scale must declare the same settings"):
        settings(bad, "book")
