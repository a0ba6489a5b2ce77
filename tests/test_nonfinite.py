"""A NaN or Inf in x or w affects exactly the outputs whose window covers it, whatever
the method (the FFT method redoes such items and filters directly)."""

import numpy as np
import pytest

import batchconv as bc

# inf - inf in a window sum is NaN, with NumPy's own warning, as in the direct method
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _same_nonfinite_and_close(a, b):
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.array_equal(np.isposinf(a), np.isposinf(b))
    assert np.array_equal(np.isneginf(a), np.isneginf(b))
    fin = np.isfinite(a)
    np.testing.assert_allclose(a[fin], b[fin], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("reduce", [None, "sum"])
def test_nonfinite_x_stays_local(bad, reduce):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 30, 30))
    x[1, 10, 12] = bad
    w = rng.standard_normal((3, 5, 5))
    spec = "nhw,khw->nkhw|hw" if reduce is None else "nhw,khw->nkh|hw"
    ref = bc.correlate(x, w, spec, mode="same", method="direct", reduce=reduce)
    got = bc.correlate(x, w, spec, mode="same", method="fft", reduce=reduce)
    _same_nonfinite_and_close(got, ref)
    if reduce is None:
        assert np.isfinite(got[0]).all() and np.isfinite(got[1, :, :5]).all()
        assert not np.isfinite(got[1, :, 10, 12]).any()


def test_nonfinite_filter_only_touches_its_results():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 20, 20))
    w = rng.standard_normal((4, 2, 3, 3))
    w[2, 1, 0, 0] = np.nan
    ref = bc.correlate(x, w, "nchw,kchw->nkhw|hw", method="direct")
    got = bc.correlate(x, w, "nchw,kchw->nkhw|hw", method="fft")
    _same_nonfinite_and_close(got, ref)
    assert np.isfinite(got[:, [0, 1, 3]]).all() and np.isnan(got[:, 2]).all()


def test_finite_inputs_never_take_the_slow_path(monkeypatch):
    from batchconv.methods import direct

    monkeypatch.setattr(direct, "compute", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("direct called")))
    x = np.random.default_rng(2).standard_normal((2, 40, 40))
    bc.correlate(x, np.ones((2, 9, 9)), method="fft")
