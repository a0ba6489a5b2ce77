"""Data near the float's limit: an FFT's spectra reach ``sum |x| * sum |w|`` while each
output is a sum over one window, so float32 spectra overflowed (NaN over whole items)
where every true output fits (issue 20, finding 5). The FFT methods scale such items
and filters by powers of two: every output is finite and within the accuracy contract
(``|y - ref| <= tol * S`` against the float64 loop), and NaN/Inf inputs still reach only
the windows that cover them."""

import warnings

import numpy as np
import pytest
from helpers import check, check_metric, small_fft_tiles
from naive import naive_correlate, tolerance, window_abs_bound

import batchconv as bc

try:  # the torch method: the same layouts through torch.fft on the CPU
    import torch
except ImportError:  # a NumPy-only install
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def _data(seed, x_shape, w_shape, x_scale, w_scale=1.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = (rng.random(x_shape) * x_scale).astype(dtype)
    w = (rng.random(w_shape) * w_scale).astype(dtype)
    return x, w


# (x shape, w shape, spec, keywords): the layouts of the NumPy method (one filter, a
# bank, channels, explicit padding, tiles, fused reductions)
CASES = {
    "bank": ((2, 24, 24), (2, 5, 5), None, {}),
    "one_filter": ((2, 24, 24), (5, 5), None, {}),
    "channels": ((2, 3, 16, 16), (2, 3, 5, 5), "nchw,kchw->nkhw|hw", {}),
    "same_cval": ((2, 20, 20), (2, 5, 5), None, {"mode": "same", "cval": 3e36}),
    "reflect": ((2, 24, 24), (5, 5), None, {"mode": "same", "padding": "reflect"}),
    "strided": ((2, 27, 27), (2, 5, 5), None, {"stride": 2, "dilation": 2}),
    "max": ((2, 24, 24), (2, 5, 5), "nhw,khw->nk|hw", {"reduce": "max"}),
    "argmax": ((2, 24, 24), (5, 5), "nhw,hw->n|hw", {"reduce": "argmax"}),
}


@pytest.mark.parametrize("case", CASES)
def test_float32_fft_overflow_gives_finite_outputs(case):
    x_shape, w_shape, spec, kw = CASES[case]
    x, w = _data(0, x_shape, w_shape, 1e36)
    y = check(x, w, spec, method="fft", **kw)
    # a repeat call (the plan's one-block shortcut) gives the same
    np.testing.assert_array_equal(bc.correlate(x, w, spec, method="fft", **kw), y)


def _valid_reference(x, w):
    """float64 'valid' correlation of items (b, h, w) with filters (k, m, n): every
    window's sum of products (batchconv's code not involved)."""
    win = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), w.shape[1:], (1, 2))
    return np.einsum("bhwmn,kmn->bkhw", win, w.astype(np.float64))


def test_the_issue_repro():
    x, w = _data(0, (4, 128, 128), (8, 31, 31), 1e34)  # the spectra's products overflow
    y = bc.correlate(x, w, method="fft")
    ref = _valid_reference(x, w)
    assert np.isfinite(y).all()
    S = np.abs(ref).max(axis=(2, 3), keepdims=True)  # x, w >= 0: |ref| is sum |x| |w|
    assert (np.abs(y - ref) <= tolerance(np.float32) * S).all()


def test_one_huge_sample_stays_finite():
    x, w = _data(1, (3, 24, 24), (2, 5, 5), 1.0)
    x[1, 5, 5] = 1e37
    y = check(x, w, method="fft")
    assert np.abs(y[1]).max() > 1e36


def test_overlap_save_tiles():
    x, w = _data(2, (2, 40, 40), (2, 5, 5), 1e36)
    with small_fft_tiles(256):
        check(x, w, method="fft")
        check(x, w, method="fft", mode="same")


def test_complex64():
    rng = np.random.default_rng(3)
    x = ((rng.random((2, 20, 20)) + 1j * rng.random((2, 20, 20))) * 1e36).astype(np.complex64)
    w = (rng.random((2, 5, 5)) - 1j * rng.random((2, 5, 5))).astype(np.complex64)
    check(x, w, method="fft")


@pytest.mark.parametrize("reduce", [None, "max"])
@pytest.mark.parametrize("w_shape", [(3, 7, 7), (7, 7)])
def test_filters_near_the_limit(w_shape, reduce):
    """Filters whose own spectra overflow (sum |w| past 3.4e38) with small x."""
    x, w = _data(4, (2, 24, 24), w_shape, 1e-3, 1e38)
    spec = None
    if reduce is not None:
        spec = "nhw,khw->nk|hw" if len(w_shape) == 3 else "nhw,hw->n|hw"
    y = check(x, w, spec, method="fft", reduce=reduce)
    assert np.abs(y).max() > 1e35
    np.testing.assert_array_equal(bc.correlate(x, w, spec, method="fft", reduce=reduce), y)


def test_float64_near_its_limit():
    x, w = _data(5, (2, 40, 40), (2, 5, 5), 1e306, 1e-3, np.float64)
    y = check(x, w, method="fft")
    assert np.abs(y).max() > 1e303


def test_plan_repeated_calls():
    x, w = _data(6, (3, 40, 40), (9, 9), 1e35)
    p = bc.plan(x, w, method="fft")
    small = np.random.default_rng(7).random((3, 40, 40)).astype(np.float32)
    ref = _valid_reference(x, w[None])[:, 0]
    for _ in range(3):
        assert np.isfinite(p(x)).all()
        np.testing.assert_allclose(p(x), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
        assert np.isfinite(p(small)).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_overflow_in_one_item(bad):
    """A NaN/Inf in an item whose spectra also overflow: still only its windows."""
    x, w = _data(8, (3, 20, 20), (2, 5, 5), 1e36)
    x[1, 10, 12] = bad
    y = bc.correlate(x, w, method="fft", mode="same")
    ref = naive_correlate(x, w, mode="same")
    S = window_abs_bound(np.nan_to_num(x, posinf=0), w, mode="same")
    assert np.array_equal(np.isnan(y), np.isnan(ref))
    assert np.array_equal(np.isinf(y), np.isinf(ref))
    fin = np.isfinite(ref)
    assert fin.sum() > 0.9 * fin.size
    assert (np.abs(y - ref)[fin] <= tolerance(np.float32) * np.broadcast_to(S, y.shape)[fin]).all()


@pytest.mark.parametrize("metric", ["cosine", "ncc"])
def test_metrics_over_fft(metric):
    x, w = _data(9, (2, 20, 20), (2, 5, 5), 1e36)
    check_metric(x, w, metric=metric, method="fft")


def _torch_call(f, x, w, spec=None, **kw):
    kw["method"] = "torch_fft"
    y = f(torch.from_numpy(x), torch.from_numpy(w), spec, **kw)
    assert isinstance(y, torch.Tensor)
    return y.numpy()


@needs_torch
@pytest.mark.parametrize("case", ["bank", "one_filter", "channels", "same_cval", "max"])
def test_torch_fft_overflow_gives_finite_outputs(case):
    x_shape, w_shape, spec, kw = CASES[case]
    # a chunk's sum fits float32 (it took the exact route, not the overflow), an item's
    # spectrum times a filter's does not
    x, w = _data(0, x_shape, w_shape, 2e35)
    y = check(x, w, spec, method="torch_fft", call=_torch_call, **kw)
    np.testing.assert_array_equal(_torch_call(bc.correlate, x, w, spec, **kw), y)  # shortcut


@needs_torch
def test_torch_fft_one_huge_sample_and_metrics():
    x, w = _data(1, (3, 24, 24), (2, 5, 5), 1.0)
    x[1, 5, 5] = 1e37
    check(x, w, method="torch_fft", call=_torch_call)
    x, w = _data(9, (2, 20, 20), (2, 5, 5), 2e35)
    check_metric(x, w, metric="cosine", method="torch_fft", call=_torch_call)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_fft_filters_near_the_limit(dtype):
    big = 1e38 if dtype == np.float32 else 1e308
    x, w = _data(4, (2, 24, 24), (3, 7, 7), 1e-3, big, dtype)
    check(x, w, method="torch_fft", call=_torch_call)
    x, w = _data(5, (2, 32, 32), (2, 5, 5), big * 1e-3, 1.0, dtype)
    check(x, w, method="torch_fft", call=_torch_call)


@needs_torch
def test_torch_fft_nan_still_local():
    x, w = _data(8, (3, 20, 20), (2, 5, 5), 1e36)
    x[1, 10, 12] = np.nan
    y = _torch_call(bc.correlate, x, w, mode="same")
    ref = naive_correlate(x, w, mode="same")
    assert np.array_equal(np.isnan(y), np.isnan(ref))
    assert np.isfinite(y[0]).all() and np.isfinite(y[2]).all()


def _uncovered_sample_case():
    """float64: a sample that no kept window covers (stride and dilation 2), so large
    that eps times its products with the filter pass the float's range: even scaled, the
    transform's round-off is not finite, while every kept output is near 1e303."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 1, 16, 19)) * 0.07
    x[0, 0, 0, 0] = 3e306
    w = rng.standard_normal((1, 1, 3, 4)) * 3e303
    kw = {"mode": "same", "stride": 2, "dilation": 2, "padding": "reflect"}
    return x, w, "nchw,kchw->nkhw|hw", kw


def _true_overflow_case():
    """float32: one sample whose windows truly overflow (3e38 times 10)."""
    x, w = _data(12, (2, 20, 20), (2, 3, 3), 1.0, 10.0)
    x[0, 5, 5] = 3e38
    return x, w


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("method", ["fft", pytest.param("torch_fft", marks=needs_torch)])
def test_unrescued_items_are_summed_directly(method):
    call = _torch_call if method == "torch_fft" else None
    x, w, spec, kw = _uncovered_sample_case()
    check(x, w, spec, method=method, **({"call": call} if call else {}), **kw)
    x, w = _true_overflow_case()  # the windows past the float's range only are Inf
    y = _torch_call(bc.correlate, x, w) if call else bc.correlate(x, w, method=method)
    ref = naive_correlate(x, w)
    assert np.array_equal(np.isinf(y), np.abs(ref) > np.finfo(np.float32).max)
    assert np.isinf(y).sum() == 18 and not np.isnan(y).any()
    fin = np.isfinite(y)
    S = np.broadcast_to(window_abs_bound(np.minimum(x, 1), w), y.shape)
    assert (np.abs(y - ref)[fin] <= tolerance(np.float32) * S[fin]).all()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("method", ["fft", pytest.param("torch_fft", marks=needs_torch)])
def test_direct_sums_do_not_overflow_on_the_way(method):
    """The windows summed directly (their true value past the float's range, or their
    item not rescued) are summed in float64: a window whose partial sums pass float32's
    limit but whose value fits gets that value, not Inf (taps -1, 0, 1, 1 over 3e38s)."""
    x = np.zeros((1, 64), np.float32)
    x[0, 20:28] = 3e38
    w = np.float32([-1, 0, 1, 1, 0, 0, 0, 0])
    y = (
        _torch_call(bc.correlate, x, w)
        if method == "torch_fft"
        else bc.correlate(x, w, method=method)
    )
    ref = naive_correlate(x.astype(np.float64), w.astype(np.float64))
    fits = np.abs(ref) <= np.finfo(np.float32).max
    assert np.array_equal(np.isinf(y), ~fits) and not np.isnan(y).any()
    S = np.broadcast_to(window_abs_bound(x.astype(np.float64), w.astype(np.float64)), y.shape)
    assert (np.abs(y - ref)[fits] <= tolerance(np.float32) * S[fits]).all()


@pytest.mark.parametrize("numba", [True, False])
@pytest.mark.parametrize("bank", [False, True])
def test_direct_float32_sums_that_pass_the_range_on_the_way(bank, numba):
    """The direct method sums float32 windows in float32 (BLAS, the compiled kernel,
    shift-and-add): a partial sum can pass the float's range where the window's value
    fits (taps 1, 0, 1, -1, -1 over samples of 3e38: Inf, the loop 0). Those windows are
    summed again in float64; the ones over a NaN keep NaN, those whose value does not
    fit are Inf. NumPy's warnings of the redone sums are not shown; one of ours counts
    the values that do not fit."""
    from batchconv import compiled

    x = np.zeros((3, 2, 40), np.float32)  # (items, channels, samples)
    x[:, 0, 10:18] = 3e38
    x[2, 1, 30] = np.nan
    w = np.zeros((3 if bank else 1, 2, 8), np.float32)
    w[:, 0, :5] = [1, 0, 1, -1, -1]
    w[-1, 1, 0] = 0.5
    spec = "ncl,kcl->nkl|l"
    with compiled.use_numba(numba), warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        y = bc.correlate(x, w, spec, method="direct")
    ref = naive_correlate(x.astype(np.float64), w.astype(np.float64), spec)
    assert np.array_equal(np.isnan(y), np.isnan(ref))
    fits = np.abs(ref) <= np.finfo(np.float32).max  # (False for NaN)
    # no NumPy warning of the redone sums; ours counts the values that do not fit
    assert all("outputs do not fit in float32" in str(r.message) for r in rec), rec
    said = sum(int(str(r.message).split(": ")[1].split()[0]) for r in rec)
    assert said == np.count_nonzero(~fits & ~np.isnan(ref)) > 0
    assert np.array_equal(np.isinf(y), np.isinf(ref) | (~fits & ~np.isnan(ref)))
    x0 = np.where(np.isfinite(x), x, 0).astype(np.float64)  # (the scale without the NaN)
    S = np.broadcast_to(window_abs_bound(x0, w.astype(np.float64), spec), y.shape)
    assert (np.abs(y - ref)[fits] <= tolerance(np.float32) * S[fits]).all()


@pytest.mark.parametrize("numba", [True, False])
def test_direct_float32_values_past_the_range_still_warn(numba):
    """The direct method silences NumPy's warnings in its float32 sums (those that pass
    the range on the way are redone), but outputs whose true value does not fit stay
    Inf and are reported: one RuntimeWarning with their count."""
    from batchconv import compiled

    x = np.zeros((2, 3, 20, 20), np.float32)
    x[0, :, 5:8, 5:8] = 3e38  # 3 x 3 x 3 samples: windows over them sum past the range
    w = np.ones((4, 3, 3, 3), np.float32)
    spec = "nchw,kchw->nkhw|hw"
    with compiled.use_numba(numba), pytest.warns(RuntimeWarning, match="overflow") as rec:
        y = bc.correlate(x, w, spec, method="direct")
    ref = naive_correlate(x.astype(np.float64), w.astype(np.float64), spec)
    past = np.abs(ref) > np.finfo(np.float32).max
    assert past.any() and np.array_equal(np.isinf(y), past)
    assert any(f"{past.sum()} outputs" in str(r.message) for r in rec)
