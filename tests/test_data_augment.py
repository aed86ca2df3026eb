"""``data.augment_static``: a fixed set of random crops (zero-padded) and flips."""

import numpy as np
import pytest

from eoslib.engine import data


def _ds(n=3, h=6, w=5, c=2, standardised=False):
    x = np.random.default_rng(0).normal(size=(n, h, w, c)).astype(np.float32)
    kw = {"mean": np.full(c, 0.5, np.float32), "std": np.full(c, 0.25, np.float32)} if standardised else {}
    return data.Dataset(x=x, y=np.arange(n, dtype=np.int32) % 2, classes=("a", "b"), source="t", **kw)


def _views(img, pad, black):
    h, w, c = img.shape
    padded = np.broadcast_to(black, (h + 2 * pad, w + 2 * pad, c)).copy()
    padded[pad:pad + h, pad:pad + w] = img
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[dy:dy + h, dx:dx + w]
            yield crop
            yield crop[:, ::-1]


@pytest.mark.parametrize("standardised", [False, True])
def test_every_view_is_a_shifted_crop_or_its_mirror_of_its_source(standardised):
    ds = _ds(standardised=standardised)
    aug = data.augment_static(ds, 4, seed=1, pad=2, block=2)  # block < N: cut in pieces
    assert aug.x.shape == (12, 6, 5, 2) and aug.x.dtype == np.float32
    np.testing.assert_array_equal(aug.y, np.tile(ds.y, 4))
    black = -ds.mean / ds.std if standardised else np.zeros(2, np.float32)
    for i, view in enumerate(aug.x):
        assert any(np.array_equal(view, v) for v in _views(ds.x[i % 3], 2, black)), i
    assert not all(np.array_equal(aug.x[i], ds.x[i % 3]) for i in range(12))  # not a copy
    assert aug.classes == ds.classes and aug.mean is ds.mean


def test_deterministic_for_a_seed_and_pad_zero_without_flips_is_the_identity():
    ds = _ds()
    a, b = (data.augment_static(ds, 3, seed=7) for _ in range(2))
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, data.augment_static(ds, 3, seed=8).x)
    plain = data.augment_static(ds, 2, seed=0, pad=0)
    for i, view in enumerate(plain.x):  # only flips are left
        src = ds.x[i % 3]
        assert np.array_equal(view, src) or np.array_equal(view, src[:, ::-1])


@pytest.mark.parametrize("kw,name", [({"copies": 0}, "copies"), ({"copies": 1.5}, "copies"),
                                     ({"pad": -1}, "pad"), ({"block": 0}, "block")])
def test_bad_arguments_name_the_parameter(kw, name):
    args = {"copies": 2, **kw}
    with pytest.raises(ValueError, match=f"{name}="):
        data.augment_static(_ds(), args.pop("copies"), seed=0, **args)
    flat = data.Dataset(x=np.zeros((2, 3)), y=np.zeros(2, np.int32), classes=("a",), source="t")
    with pytest.raises(ValueError, match="ds.x"):
        data.augment_static(flat, 2, seed=0)
