"""The spec language: roles, defaults, and errors that name the problem."""

from __future__ import annotations

import pytest

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
