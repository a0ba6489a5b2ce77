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

    monkeypatch.setattr(
        direct, "compute", lambda *a, **k: (_ for _ in ()).throw(AssertionError("direct called"))
    )
    x = np.random.default_rng(2).standard_normal((2, 40, 40))
    bc.correlate(x, np.ones((2, 9, 9)), method="fft")


@pytest.mark.parametrize(
    "padding, cval",
    [("constant", 0.0), ("constant", 2.0), ("reflect", 0.0), ("wrap", 0.0), ("edge", 0.0)],
)
@pytest.mark.parametrize(
    "spec, xs, ws, opts",
    [
        ("nhw,khw->nkhw|hw", (3, 17, 15), (2, 4, 3), dict(mode="same", stride=2)),
        ("nhw,khw->nkhw|hw", (2, 16, 16), (3, 3, 3), dict(mode="full", dilation=(2, 1))),
        ("nchw,kchw->nkhw|hw", (2, 3, 12, 12), (4, 3, 3, 3), dict(mode="same")),
        ("nphw,phw->nphw|hw", (2, 3, 12, 11), (3, 3, 3), dict(mode="same")),  # paired
        ("nhwd,khwd->nkhwd|hwd", (2, 8, 7, 6), (2, 3, 2, 3), dict(mode="same")),
    ],
)
@pytest.mark.parametrize("convolve", [False, True])
def test_nonfinite_fft_matches_direct_everywhere(padding, cval, spec, xs, ws, opts, convolve):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 3, replace=False)] = [np.nan, np.inf, -np.inf]
    w = rng.standard_normal(ws)
    f = bc.convolve if convolve else bc.correlate
    kw = dict(padding=padding, cval=cval, **opts)
    _same_nonfinite_and_close(
        f(x, w, spec, method="fft", **kw), f(x, w, spec, method="direct", **kw)
    )


@pytest.mark.parametrize("cval", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    "spec, xs, ws, opts",
    [
        ("nl,kl->nkl|l", (1, 6), (1, 2), dict(mode="same")),
        ("nhw,khw->nkhw|hw", (2, 30, 20), (3, 4, 5), dict(mode="full")),
        ("nchw,kchw->nkhw|hw", (2, 3, 12, 12), (4, 3, 3, 3), dict(mode="same", stride=2)),
    ],
)
def test_nonfinite_cval_stays_in_the_padding(cval, spec, xs, ws, opts):
    """A NaN/Inf cval reaches only the windows that overlap the padding (the FFT used to
    spread it over every output)."""
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    fft = bc.correlate(x, w, spec, method="fft", cval=cval, **opts)
    _same_nonfinite_and_close(fft, bc.correlate(x, w, spec, method="direct", cval=cval, **opts))
    assert np.isfinite(fft).any()


def test_one_nan_in_a_large_image_stays_fast(monkeypatch):
    """One NaN must not turn the FFT plan into a direct sum over the whole image: only
    the 63 x 63 windows that cover it are summed directly (no timing: the direct method
    is simply not allowed to run)."""
    from batchconv.methods import direct

    monkeypatch.setattr(
        direct,
        "compute",
        lambda *a, **k: (_ for _ in ()).throw(AssertionError("direct method called")),
    )
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1024, 1024))
    w = rng.standard_normal((1, 63, 63))
    p = bc.plan(x, w, method="fft", mode="same")
    clean = p(x)
    x[0, 500, 600] = np.nan
    got = p(x)
    assert np.isnan(got[0, 0, 500 - 31 : 500 + 32, 600 - 31 : 600 + 32]).all()
    assert np.isnan(got).sum() == 63 * 63
    np.testing.assert_allclose(got[0, 0, :400], clean[0, 0, :400])


@pytest.mark.parametrize("reduce", ["max", "argmax", "min"])
def test_nonfinite_with_reductions(reduce):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 20, 20))
    x[1, 5, 5] = np.inf
    x[2, 0, 0] = np.nan
    w = np.abs(rng.standard_normal((2, 3, 3)))
    spec = "nhw,khw->nk|hw"
    a = bc.correlate(x, w, spec, mode="same", method="fft", reduce=reduce)
    b = bc.correlate(x, w, spec, mode="same", method="direct", reduce=reduce)
    if reduce == "argmax":
        np.testing.assert_array_equal(a, b)
    else:
        _same_nonfinite_and_close(a, b)
