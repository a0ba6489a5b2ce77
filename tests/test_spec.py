"""The spec language: roles, defaults, and errors that name the problem."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import batchconv as bc
from batchconv.spec import default_spec, parse_spec


@pytest.mark.parametrize(
    "text,roles",
    [
        (
            "nhwd,khwd->nk|hwd",
            dict(batch="n", bank="k", summed="", paired="", sliding="hwd", reduced="hwd"),
        ),
        ("hwn,hw->hwn|hw", dict(batch="n", bank="", summed="", paired="", sliding="hw")),
        ("nhwc,hwco->nhwo|hw", dict(batch="n", bank="o", summed="c", paired="", sliding="hw")),
        ("bmn,mn->bmn|mn", dict(batch="b", bank="", summed="", paired="", sliding="mn")),
        ("bchw,chw->bhw|hw", dict(batch="b", bank="", summed="c", paired="", sliding="hw")),
        ("nchw,chw->nchw|hw", dict(batch="n", bank="", summed="", paired="c", sliding="hw")),
        ("nchw,hw->nhw|hw", dict(batch="n", x_summed="c", sliding="hw")),
        ("nhw,khw->nkh|hw", dict(reduced="w", kept_sliding="h")),
    ],
)
def test_roles(text, roles):
    s = parse_spec(text)
    for k, v in roles.items():
        assert getattr(s, k) == v, k


def test_spaces_allowed_and_str_roundtrip():
    s = parse_spec("nhw, khw -> nkhw | hw")
    assert str(s) == "nhw,khw->nkhw|hw"


@pytest.mark.parametrize(
    "text,needle",
    [
        ("nhw,khw->nkhw", "exactly one '|'"),
        ("nhw,khw->nkhw|h|w", "exactly one '|'"),
        ("nhw,khw|hw", "'->'"),
        ("nhw->nhw|hw", "two operands"),
        ("nhh,khw->nkhw|hw", "repeated in the x part"),
        ("nh1,kh1->nkh|h", "unknown character"),
        ("nhw,kh->nkhw|hw", "'w' must appear in both x and w, but w lacks it"),
        ("nhw,khw->nkhwz|hw", "output letter 'z' appears in neither"),
        ("nhw,khw->nk|", "no sliding letter"),
    ],
)
def test_errors_name_the_problem(text, needle):
    with pytest.raises(ValueError) as e:
        parse_spec(text)
    assert needle in str(e.value)
    assert repr(text) in str(e.value)


def test_spec_must_be_a_string():
    with pytest.raises(TypeError, match="spec must be a string"):
        parse_spec(3)


def test_default_spec():
    assert str(default_spec(2, 2)) == "nh,kh->nkh|h"
    assert str(default_spec(4, 3)) == "nhwd,hwd->nhwd|hwd"
    assert str(default_spec(3, 3, reduce_sliding=True)) == "nhw,khw->nk|hw"
    with pytest.raises(ValueError, match="Give a spec"):
        default_spec(3, 1)
    with pytest.raises(ValueError, match="Give a spec"):
        default_spec(1, 1)


# spec=None and channels-last images: the reading stays, a warning says what it assumed

_RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "x_shape, w_shape, meant",
    [
        ((32, 32, 3), (5, 5, 3), "hwc,hwc->hw|hw"),
        ((32, 32, 3), (4, 5, 5), "hwc,khw->khwc|hw"),
        ((32, 32, 3), (5, 5), "hwc,hw->hwc|hw"),
        ((2, 40, 40, 4), (3, 5, 5, 4), "nhwc,khwc->nkhw|hw"),
        ((2, 40, 40, 1), (5, 5, 1), "nhwc,hwc->nhw|hw"),
    ],
)
def test_channels_last_images_warn(x_shape, w_shape, meant):
    x, w = _RNG.random(x_shape), _RNG.random(w_shape)
    with pytest.warns(bc.ChannelsWarning, match="looks like colour channels") as caught:
        try:
            y = bc.correlate(x, w, mode="same")
        except ValueError:  # (a reading that does not fit at all also raises)
            y = None
    text = str(caught[0].message)
    assert f"spec='{meant}'" in text and caught[0].filename == __file__
    if y is not None:
        assert y.shape[0] == x_shape[0]  # the reading is the documented one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bc.correlate(x, w, meant, mode="same")  # the spec it names: silent, and it works


def test_channels_last_image_as_scipy_reads_it():
    from scipy import signal

    img, kernel = _RNG.random((32, 30, 3)), _RNG.random((5, 4, 3))
    want = signal.correlate(img, kernel, mode="valid")[..., 0]
    np.testing.assert_allclose(bc.correlate(img, kernel, "hwc,hwc->hw|hw"), want, atol=1e-12)


@pytest.mark.parametrize(
    "x_shape, w_shape",
    [
        ((100, 1000), (5, 31)),  # signals against a bank
        ((8, 64, 64), (4, 5, 5)),  # images against a bank
        ((8, 64, 64), (5, 5)),  # images against one kernel
        ((4, 6, 3), (2, 3, 3)),  # a short second axis: not an image row
        ((2, 3, 16, 16), (4, 3, 3, 3)),  # channels first
    ],
)
def test_unambiguous_readings_stay_silent(x_shape, w_shape):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bc.plan(_RNG.random(x_shape), _RNG.random(w_shape), mode="same")
