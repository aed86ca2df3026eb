"""Settings by scale: defaults, explicit overrides, clear errors."""

import pytest

from eoslib.book.scales import ParameterError, Range, check, settings

SCALES = {"smoke": {"steps": 10, "eta": 0.1}, "book": {"steps": 100, "eta": 0.1},
          "paper": {"steps": 1000, "eta": 0.1}}
RANGES = {"steps": "int >= 1", "eta": "float > 0"}


def test_scale_defaults_and_overrides():
    P = settings(SCALES, "book", RANGES, steps=None, eta=None)
    assert (P.scale, P.steps, P.eta) == ("book", 100, 0.1)
    P = settings(SCALES, "smoke", RANGES, steps=7)
    assert (P.steps, P.eta) == (7, 0.1)
    assert P.as_dict() == {"scale": "smoke", "steps": 7, "eta": 0.1}


def test_unknown_scale_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"scale='huge' is not allowed; choose one of \['smoke', 'book', 'paper'\]"):
        settings(SCALES, "huge", RANGES)


def test_unknown_setting_is_an_error():
    with pytest.raises(ValueError, match=r"\['stpes'\] are not declared"):
        settings(SCALES, "book", RANGES, stpes=3)


def test_scales_must_declare_the_same_settings():
    bad = dict(SCALES, paper={"steps": 1})
    with pytest.raises(ValueError, match="every scale must declare the same settings"):
        settings(bad, "book", RANGES)



@pytest.mark.parametrize("given, message", [
    ({"steps": 1.5}, "steps=1.5 is not allowed (it is not an int); allowed: int >= 1"),
    ({"steps": -5}, "steps=-5 is not allowed (it is not >= 1); allowed: int >= 1"),
    ({"steps": True}, "steps=True is not allowed (it is not an int); allowed: int >= 1"),
    ({"eta": "nan"}, "eta='nan' is not allowed (it is NaN); allowed: float > 0"),
    ({"eta": float("nan")}, "eta=nan is not allowed (it is NaN); allowed: float > 0"),
    ({"eta": "inf"}, "eta='inf' is not allowed (it is not finite); allowed: float > 0"),
    ({"eta": "fast"}, "eta='fast' is not allowed (it is not a number); allowed: float > 0"),
    ({"eta": 0}, "eta=0 is not allowed (it is not > 0); allowed: float > 0"),
])
def test_settings_check_every_value_against_its_range(given, message):
    with pytest.raises(ValueError) as err:
        settings(SCALES, "book", RANGES, **given)
    assert str(err.value) == message


def test_settings_accept_values_in_range():
    P = settings(SCALES, "smoke", RANGES, eta=1)  # an int is a float
    assert (P.steps, P.eta) == (10, 1)


@pytest.mark.parametrize("text, good, bad, why", [
    ("list[int >= 0], non-empty", [[0, 3], (1,)], [[], 2, [0, -1], [0.5]],
     ["it is empty", "it is not a list", "element 1 (-1): it is not >= 0", "element 0 (0.5): it is not an int"]),
    ("list[float in (0, inf]], contains inf", [["inf", 1e-6], [float("inf")]], [[1e-6], ["inf", 0.0], ["nan"]],
     ["it does not contain inf", "element 1 (0.0): it is outside the interval", "element 0 ('nan'): it is NaN"]),
    ("float in [0, 1)", [0, 0.5], [1.0, -0.1, float("inf")],
     ["it is outside the interval", "it is outside the interval", "it is not finite"]),
    ("one of mlp, vgg", ["mlp"], ["resnet", 3], ["it is not one of ['mlp', 'vgg']"] * 2),
    ("model", ["fc-tanh", "cnn-relu"], ["resnet"], ["it is not one of ['fc-tanh'"]),
    ("list[kappa-case], non-empty", [["I", "III"]], [["IV"]], ["element 0 ('IV'): it is not one of ['I', 'II', 'III']"]),
    ("list[float], length 2", [[-0.1, 10.0]], [[1.0]], ["its length is 1"]),
])
def test_range_syntax(text, good, bad, why):
    rng = Range.parse(text)
    for value in good:
        assert rng.violation(value, {}) is None, value
    for value, reason in zip(bad, why):
        assert rng.violation(value, {}).startswith(reason), (value, rng.violation(value, {}))


def test_ranges_may_name_other_settings():
    ranges = {"steps": "int >= 1, multiple of probe_every", "probe_every": "int >= 1",
              "window": "int >= 1, < steps"}
    check(ranges, {"steps": 40, "probe_every": 20, "window": 39})
    with pytest.raises(ParameterError, match=r"^steps=30 is not allowed \(it is not a multiple of "
                                             r"probe_every=20\); allowed: int >= 1, multiple of probe_every$"):
        check(ranges, {"steps": 30, "probe_every": 20, "window": 3})
    with pytest.raises(ParameterError, match=r"window=40 is not allowed \(it is not < steps=40\)"):
        check(ranges, {"steps": 40, "probe_every": 20, "window": 40})
    # a wrong-typed setting is reported as itself, not as a failed comparison of another one
    with pytest.raises(ParameterError, match=r"^probe_every='x' is not allowed \(it is not an int\)"):
        check(ranges, {"steps": 40, "probe_every": "x", "window": 3})
    with pytest.raises(ParameterError, match=r"^steps=-40 is not allowed \(it is not >= 1\)"):
        check({"window": "int >= 1, < steps", "steps": "int >= 1"}, {"window": 3, "steps": -40})


@pytest.mark.parametrize("ranges, fragment", [
    ({"steps": "integer"}, "'integer' is not a type"),
    ({"steps": "int => 1"}, "condition '=> 1' is not one of"),
    ({"steps": "int >= n_steps"}, "names ['n_steps'], which are not settings"),
    ({"steps": "int", "extra": "int"}, "not settings ['extra']"),
])
def test_malformed_ranges_are_the_chapters_fault(ranges, fragment):
    with pytest.raises(ValueError) as err:
        check(ranges, {"steps": 3})
    assert fragment in str(err.value) and not isinstance(err.value, ParameterError)
