"""Ragged banks: correlate with a list of templates of different shapes, grouped by shape
or padded to one shape with zero masks; both equal one call per template."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import batchconv as bc
from batchconv.ragged import is_ragged, ragged_plan

METRICS = ["dot", "ssd", "sad", "ncc", "cosine"]


def _plan(x, bank, spec, options, strategy):
    """bc.plan's ragged plan with the strategy forced."""
    from batchconv.api import _make_plan, _x_signature

    sig = _x_signature(x)
    return ragged_plan(
        _make_plan, x, sig, bank, spec, flip=False, options=options, strategy=strategy
    )


def one_by_one(x, bank, spec=None, **kw):
    """The reference: one correlate per template, stacked on the bank axis (axis 1)."""
    maps = [bc.correlate(x, t[None], spec, **kw) for t in bank]
    if isinstance(maps[0], bc.PeakResult):
        return bc.PeakResult(
            np.concatenate([m.scores for m in maps], axis=1),
            np.concatenate([m.coords for m in maps], axis=1),
        )
    return np.concatenate(maps, axis=1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    metric=st.sampled_from(METRICS),
    strategy=st.sampled_from(["grouped", "padded"]),
    padding=st.sampled_from(["constant", "reflect", "edge", "wrap"]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_strategies_equal_one_call_per_template(data, metric, strategy, padding, dtype):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    ndim = data.draw(st.sampled_from([1, 2]))
    stride = data.draw(st.integers(1, 2))
    n = [data.draw(st.integers(6, 14)) for _ in range(ndim)]
    C = data.draw(st.integers(1, 2))
    letters = "hw"[:ndim]
    spec = f"nc{letters},kc{letters}->nk{letters}|{letters}"
    x = (rng.standard_normal((2, C, *n)) + 2).astype(dtype)
    sizes = [tuple(data.draw(st.integers(1, 5)) for _ in range(ndim)) for _ in range(4)]
    if len(set(sizes)) == 1:
        sizes[0] = tuple(s + 1 for s in sizes[0])
    bank = [(rng.standard_normal((C, *s)) + 2).astype(dtype) for s in sizes]
    kw = dict(metric=metric, mode="same", padding=padding, stride=stride)
    plan = _plan(x, bank, spec, kw, strategy)
    assert plan.strategy == strategy
    got = plan(x)
    want = one_by_one(x, bank, spec, **kw)
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(1.0, float(np.abs(want).max()))
    tol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(got, want, atol=tol * scale * (50 if metric == "ssd" else 1))


@pytest.mark.parametrize("reduce", ["max", "argmin", "peaks"])
@pytest.mark.parametrize("mode", ["valid", "full", "same"])
def test_reductions_in_every_mode(mode, reduce):
    rng = np.random.default_rng(1)
    x = rng.random((3, 30, 28))
    bank = [x[0, 2:7, 3:9], x[1, 10:19, 4:8], x[2, 1:4, 1:4], x[0, 8:13, 8:14]]
    red = bc.peaks(3, min_distance=2) if reduce == "peaks" else reduce
    got = bc.correlate(x, bank, metric="ncc", mode=mode, reduce=red)
    want = one_by_one(x, bank, metric="ncc", mode=mode, reduce=red)
    if reduce == "peaks":
        np.testing.assert_array_equal(got.coords, want.coords)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-12)
    else:
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_maps_of_different_sizes_are_refused():
    x = np.ones((1, 20))
    with pytest.raises(ValueError, match="maps of different sizes in mode='valid'"):
        bc.correlate(x, [np.ones(3), np.ones(5)])
    y = bc.correlate(x, [np.ones(3), np.ones(5)], reduce="max")
    np.testing.assert_array_equal(y, [[3.0, 5.0]])


def test_explain_and_the_choice():
    rng = np.random.default_rng(2)
    x = rng.random((2, 64, 64)).astype(np.float32)
    bank = [x[0, :9, :9], x[0, :11, :7], x[1, :9, :9]]
    plan = bc.plan(x, bank, metric="ssd", mode="same")
    text = plan.explain()
    assert "3 templates of 2 shapes (9x9: 2, 11x7: 1)" in text
    assert "grouped" in text and "padded" in text and f"chosen: {plan.strategy}" in text
    valid = bc.plan(x, bank, metric="ssd", reduce="min")
    assert valid.strategy == "grouped"
    assert "not possible: mode='valid'" in valid.explain()
    want = one_by_one(x, bank, metric="ssd", reduce="min")
    np.testing.assert_allclose(valid(x), want, atol=1e-5 * 81)  # float32, windows of 81


def test_padded_falls_back_for_nan():
    rng = np.random.default_rng(3)
    x = rng.random((1, 30, 30))
    bank = [rng.random((3, 3)), rng.random((5, 7))]
    plan = _plan(x, bank, None, dict(mode="same"), "padded")
    x[0, 20, 20] = np.nan  # a 3x3 window two away sees no NaN; the padded 5x7 one would
    got = plan(x)
    np.testing.assert_allclose(got, one_by_one(x, bank, mode="same"), atol=1e-12)


def test_masks_per_template_and_convolve():
    rng = np.random.default_rng(4)
    x = rng.random((2, 25, 25))
    bank = [rng.random((3, 5)), rng.random((6, 4))]
    masks = [rng.random((3, 5)) < 0.6, None]
    got = bc.correlate(x, bank, metric="ncc", mode="same", mask=masks)
    want = np.concatenate(
        [
            bc.correlate(x, bank[0][None], metric="ncc", mode="same", mask=masks[0]),
            bc.correlate(x, bank[1][None], metric="ncc", mode="same"),
        ],
        axis=1,
    )
    np.testing.assert_allclose(got, want, atol=1e-12)
    conv = bc.convolve(x, bank, mode="same")
    ref = np.concatenate([bc.convolve(x, t[None], mode="same") for t in bank], axis=1)
    np.testing.assert_allclose(conv, ref, atol=1e-12)


def test_other_array_types():
    rng = np.random.default_rng(5)
    x = rng.random((2, 20, 20))
    bank = [rng.random((3, 3)), rng.random((4, 5))]
    want = bc.correlate(x, bank, mode="same", metric="cosine")
    torch = pytest.importorskip("torch")
    got = bc.correlate(
        torch.from_numpy(x), [torch.from_numpy(t) for t in bank], mode="same", metric="cosine"
    )
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    da = pytest.importorskip("dask.array")
    lazy = bc.correlate(da.from_array(x, chunks=(1, 20, 20)), bank, mode="same", metric="cosine")
    np.testing.assert_allclose(lazy.compute(), want, atol=1e-12)


def test_what_is_ragged():
    assert is_ragged([np.ones(3), np.ones(4)])
    assert not is_ragged([np.ones(3), np.ones(3)])  # one shape: an ordinary bank
    assert not is_ragged([1.0, 2.0, 3.0])  # one filter
    assert not is_ragged(np.ones((2, 3)))
    x = np.ones((1, 10))
    np.testing.assert_array_equal(bc.correlate(x, [np.ones(3), np.ones(3)]), [[[3.0] * 8] * 2])
    with pytest.raises(ValueError, match="same number of axes"):
        bc.correlate(x, [np.ones(3), np.ones((1, 3))], mode="same")
    with pytest.raises(ValueError, match="w's first axis"):
        bc.correlate(
            np.ones((3, 10)), [np.ones((3, 2)), np.ones((3, 4))], "cs,cs->s|s", mode="same"
        )
    with pytest.raises(ValueError, match="must be a bank axis"):
        bc.correlate(np.ones((2, 10)), [np.ones(3), np.ones(5)], "ps,ps->ps|s", mode="same")


def test_channels_last_templates_with_sliding_masks():
    """A mask of a template's sliding shape serves its channels; None: no mask."""
    rng = np.random.default_rng(6)
    x = rng.random((2, 40, 40, 3))
    bank = [x[0, 5:15, 7:18], x[1, 20:30, 30:34]]
    masks = [rng.random((10, 11)) < 0.7, None]
    spec = "nhwc,khwc->nk|hw"
    got = bc.correlate(x, bank, spec, metric="ncc", reduce="argmax", mask=masks)
    one = bc.correlate(x, bank[0][None], spec, metric="ncc", reduce="argmax", mask=masks[0])
    two = bc.correlate(x, bank[1][None], spec, metric="ncc", reduce="argmax")
    np.testing.assert_array_equal(got, np.concatenate([one, two], axis=1))
    plan = bc.plan(x, bank, spec, metric="ssd", reduce="min", mask=masks)
    text = plan.explain()
    assert text.count("with a mask") == 1  # the second template's plan has none
    with pytest.raises(ValueError, match="empty list"):
        bc.correlate(x, [])
