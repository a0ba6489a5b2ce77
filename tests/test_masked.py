"""mask=: every metric against the float64 loop written from OpenCV's formulas
(naive.py's _masked_metric), against cv2.matchTemplate(mask=), and its rules (shapes,
flat windows, NaN, errors)."""

import numpy as np
import pytest
from helpers import check_metric, tolerance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import naive_correlate, window_abs_bound

import batchconv as bc

METRICS = ["dot", "ssd", "sad", "ncc", "cosine"]


def _mask(rng, shape, kind):
    if kind == "binary":
        m = rng.random(shape) < 0.7
        m.flat[0] = True
        return m
    return rng.random(shape) * (rng.random(shape) < 0.8)  # weights, some 0


def check_masked(x, w, spec=None, *, metric, method, mask, **kw):
    """bc.correlate with ``mask`` within the accuracy contract of the loop."""
    if metric != "dot":
        return check_metric(x, w, spec, metric=metric, method=method, mask=mask, **kw)
    y = bc.correlate(x, w, spec, metric="dot", method=method, mask=mask, **kw)
    ref = naive_correlate(x, w, spec, mask=mask, **kw)
    bound = tolerance(y.dtype) * window_abs_bound(x, w, spec, mask=mask, **kw)
    assert y.shape == ref.shape
    assert (np.abs(y - ref) <= bound + 1e-300).all()
    return y


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    metric=st.sampled_from(METRICS),
    method=st.sampled_from(["direct", "fft"]),
    ndim=st.sampled_from([1, 2]),
    dtype=st.sampled_from([np.float32, np.float64]),
    kind=st.sampled_from(["binary", "float"]),
    mode=st.sampled_from(["valid", "same", "full"]),
    padding=st.sampled_from(["constant", "reflect", "edge"]),
)
def test_masked_equals_the_loop(data, metric, method, ndim, dtype, kind, mode, padding):
    if metric == "sad":
        method = "direct"
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    m = [data.draw(st.integers(1, 4)) for _ in range(ndim)]
    dilation = data.draw(st.integers(1, 2)) if mode == "valid" else 1
    n = [data.draw(st.integers((k - 1) * dilation + 1, 12)) for k in m]
    C, K = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = data.draw(st.integers(1, 2))
    letters = "hw"[:ndim]
    spec = f"nc{letters},kc{letters}->nk{letters}|{letters}"
    x = rng.standard_normal((2, C, *n)).astype(dtype) + 3
    w = rng.standard_normal((K, C, *m)).astype(dtype) + 3
    shape = data.draw(st.sampled_from([tuple(m), (1, C, *m), (K, 1, *m), (K, C, *m), (1, 1, *m)]))
    mask = _mask(rng, shape, kind)
    check_masked(
        x,
        w,
        spec,
        metric=metric,
        method=method,
        mask=mask,
        mode=mode,
        padding=padding,
        stride=stride,
        dilation=dilation,
    )


@pytest.mark.parametrize("metric", METRICS)
def test_three_dimensions_and_convolve(metric):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 6, 8))
    w = rng.standard_normal((2, 3, 2, 3))
    mask = _mask(rng, (3, 2, 3), "float")
    for method in ["direct", "fft"] if metric != "sad" else ["direct"]:
        check_masked(x, w, metric=metric, method=method, mask=mask, stride=(1, 2, 1))
    if metric == "dot":  # convolve flips the mask with the filters
        y = bc.convolve(x, w, mask=mask)
        ref = bc.correlate(x, w[:, ::-1, ::-1, ::-1], mask=mask[::-1, ::-1, ::-1])
        np.testing.assert_allclose(y, ref, atol=1e-12)


# OpenCV's matchTemplate with a mask: TM_SQDIFF, TM_CCORR, TM_CCORR_NORMED,
# TM_CCOEFF_NORMED are our ssd, dot, cosine, ncc (float32 images)
_FLAGS = {
    "ssd": "TM_SQDIFF",
    "dot": "TM_CCORR",
    "cosine": "TM_CCORR_NORMED",
    "ncc": "TM_CCOEFF_NORMED",
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["binary", "float"])
@pytest.mark.parametrize("metric", list(_FLAGS))
def test_against_opencv(metric, kind, channels):
    cv2 = pytest.importorskip("cv2")
    if metric == "ncc" and channels == 3:
        pytest.skip("OpenCV centres each channel on its own (compat.cv2); ncc the window")
    rng = np.random.default_rng(17)
    shape = (60, 52) if channels == 1 else (60, 52, 3)
    img = rng.integers(0, 256, size=shape).astype(np.float32)
    tpl = img[20:33, 10:21] + rng.standard_normal((13, 11, channels)[: img.ndim]).astype(np.float32)
    mask = _mask(rng, (13, 11), kind).astype(np.float32)
    theirs_mask = mask if channels == 1 else np.repeat(mask[..., None], 3, axis=2)
    theirs = cv2.matchTemplate(img, tpl, getattr(cv2, _FLAGS[metric]), mask=theirs_mask)
    spec = None if channels == 1 else "hwc,hwc->hw|hw"
    x = img[None] if channels == 1 else img
    for method in ["direct", "fft"]:
        ours = bc.correlate(x, tpl, spec, metric=metric, method=method, mask=mask)
        ours = ours[0] if channels == 1 else ours
        assert ours.dtype == np.float32
        ref = naive_correlate(x, tpl, spec, metric=metric, mask=theirs_mask)
        ref = ref[0] if channels == 1 else ref
        scale = np.abs(ref).max()
        np.testing.assert_allclose(ours, theirs, atol=2e-4 * scale, rtol=0)
        np.testing.assert_allclose(ours, ref, atol=1e-5 * scale, rtol=0)


def test_masked_ncc_is_weighted_pearson():
    """With a 0/1 mask, ncc is the Pearson correlation of the weighted positions only:
    the masked-out values change nothing."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 40))
    w = rng.standard_normal(7)
    mask = np.array([1, 1, 0, 1, 0, 1, 1], bool)
    y = bc.correlate(x, w, metric="ncc", mask=mask)
    w2 = w.copy()
    w2[~mask] = 1e6  # hidden by the mask
    np.testing.assert_allclose(bc.correlate(x, w2, metric="ncc", mask=mask), y, atol=1e-12)
    i = 9
    a, b = x[0, i : i + 7][mask], w[mask]
    np.testing.assert_allclose(y[0, i], np.corrcoef(a, b)[0, 1], atol=1e-12)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_flat_windows_and_empty_masks(method):
    x = np.zeros((1, 30, 30), np.float32)
    x[0, :, 15:] = np.random.default_rng(2).standard_normal((30, 15)) * 100 + 200
    x[0, :, :15] = 37.0  # flat under every mask
    w = np.random.default_rng(3).standard_normal((2, 5, 5)).astype(np.float32)
    mask = np.ones((2, 5, 5), np.float32) * 0.5
    mask[1] = 0  # an all-zero mask
    for metric in ("ncc", "cosine"):
        y = bc.correlate(x, w, metric=metric, method=method, mask=mask)
        assert np.isfinite(y).all() and (np.abs(y) <= 1).all()
        if metric == "ncc":
            assert (y[0, 0, :, :11] == 0).all()
        assert (y[0, 1] == 0).all()
    assert (bc.correlate(x, w, metric="ssd", method=method, mask=mask)[0, 1] == 0).all()


def test_integer_inputs_with_a_binary_mask_are_exact():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 20, 20)).astype(np.uint8)
    w = rng.integers(0, 256, (3, 6, 6)).astype(np.uint8)
    mask = rng.random((6, 6)) < 0.5
    for metric in ("ssd", "sad"):
        y = bc.correlate(
            x, w, metric=metric, mask=mask, method="fft" if metric == "ssd" else "direct"
        )
        ref = naive_correlate(x, w, metric=metric, mask=mask)
        np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("metric", METRICS)
def test_nonfinite_windows(metric):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 30))
    x[0, 10] = np.nan
    w = rng.standard_normal(4)
    mask = np.array([1.0, 0.0, 0.5, 1.0])
    for method in ["direct", "fft"] if metric != "sad" else ["direct"]:
        y = bc.correlate(x, w, metric=metric, method=method, mask=mask)
        assert np.isnan(y[0, 7:11]).all()  # every window over the NaN, whatever its weight
        assert np.isfinite(np.delete(y[0], range(7, 11))).all()


def test_peaks_and_plans_take_a_mask():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 40, 40)).astype(np.float32)
    w = rng.standard_normal((4, 7, 7)).astype(np.float32)
    mask = rng.random((4, 7, 7)) < 0.6  # one per template
    full = bc.correlate(x, w, "nhw,khw->nkhw|hw", metric="ncc", mask=mask)
    res = bc.correlate(x, w, metric="ncc", mask=mask, reduce=bc.peaks(3, min_distance=2))
    skimage = pytest.importorskip("skimage.feature")
    for n in range(3):
        for k in range(4):
            want = skimage.peak_local_max(
                full[n, k], min_distance=2, num_peaks=3, exclude_border=False
            )
            np.testing.assert_array_equal(res.coords[n, k][: len(want)], want)
    plan = bc.plan(x, w, metric="ssd", mask=mask, memory="64MB")
    np.testing.assert_allclose(plan(x), bc.correlate(x, w, metric="ssd", mask=mask), rtol=1e-6)
    assert "mask" in plan.explain()
    tight = bc.plan(x, w, metric="ssd", mask=mask, memory=400_000)
    assert tight.chunk[0] * tight.chunk[1] < 3 * 4  # several blocks
    np.testing.assert_allclose(tight(x), plan(x), rtol=1e-5, atol=1e-3)


def test_channel_last_template_with_a_sliding_mask():
    rng = np.random.default_rng(9)
    img = rng.standard_normal((30, 30, 3))
    tpl = rng.standard_normal((2, 5, 6, 3))
    mask = rng.random((5, 6))  # the template's sliding shape: on its h, w axes
    y = bc.correlate(img, tpl, "hwc,khwc->khw|hw", metric="cosine", mask=mask)
    ref = naive_correlate(img, tpl, "hwc,khwc->khw|hw", metric="cosine", mask=mask[:, :, None])
    np.testing.assert_allclose(y, ref, atol=1e-10)


def test_mask_errors():
    x, w = np.ones((1, 10)), np.ones((2, 3))
    with pytest.raises(ValueError, match="does not fit"):
        bc.correlate(x, w, mask=np.ones(4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bc.correlate(x, w, mask=np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bc.correlate(x, w, mask=np.array([0.0, np.nan, 1.0]))
    with pytest.raises(TypeError, match="mask must hold"):
        bc.correlate(x, w, mask=np.array(["a", "b", "c"]))


def test_mask_on_torch_tensors_equals_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 24, 24))
    w = rng.standard_normal((3, 5, 5))
    mask = rng.random((3, 1, 5)) * np.ones((5, 5))
    for metric in METRICS:
        want = bc.correlate(x, w, metric=metric, mask=mask)
        for method in ("torch_direct", "torch_fft") if metric != "sad" else ("torch_direct",):
            got = bc.correlate(
                torch.from_numpy(x), torch.from_numpy(w), metric=metric, mask=mask, method=method
            )
            assert isinstance(got, torch.Tensor)
            np.testing.assert_allclose(got.numpy(), want, atol=1e-9 * max(1, np.abs(want).max()))


@pytest.mark.parametrize("metric", METRICS)
def test_mask_on_dask_arrays_equals_numpy(metric):
    """Chunks of x across the sliding axes and of the bank: the masks' blocks follow the
    bank's; bc.peaks' coordinates global."""
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(11)
    x, w = rng.random((4, 40, 36)), rng.random((5, 7, 6))
    mask = rng.random((5, 7, 6)) < 0.6
    want = bc.correlate(x, w, metric=metric, mask=mask)
    xd, wd = da.from_array(x, chunks=(2, 20, 18)), da.from_array(w, chunks=(2, 7, 6))
    got = bc.correlate(xd, wd, metric=metric, mask=mask).compute()
    np.testing.assert_allclose(got, want, atol=1e-12 * max(1, np.abs(want).max()))
    peaks = bc.correlate(xd, w, metric=metric, mask=mask, reduce=bc.peaks(3))
    np.testing.assert_array_equal(
        peaks.coords.compute(),
        bc.correlate(x, w, metric=metric, mask=mask, reduce=bc.peaks(3)).coords,
    )


def test_mask_refused_where_not_built():
    """The portable engine (JAX, array-API arrays) has no masked metric yet. (Checked
    with array-api-strict: JAX imported in this process would make the suite's forks
    unsafe.)"""
    xps = pytest.importorskip("array_api_strict")
    with pytest.raises(NotImplementedError, match="mask="):
        bc.correlate(xps.ones((2, 10)), xps.ones(3), mask=np.ones(3))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("shared", [True, False])
def test_masked_calls_stay_within_the_budget(metric, method, shared):
    """tracemalloc's peak of plan + call beyond the result, under a budget that takes
    several blocks: within it (masks per template or one for all, binary or not)."""
    from helpers import traced_plan_and_call

    if metric == "sad" and method == "fft":
        pytest.skip("sad has no FFT form")
    rng = np.random.default_rng(12)
    x = rng.random((8, 3, 96, 96)).astype(np.float32)
    w = rng.random((6, 3, 9, 9)).astype(np.float32)
    mask = rng.random((9, 9) if shared else (6, 3, 9, 9))
    for memory in ("2MB", "4MB"):
        plan, y, peak = traced_plan_and_call(
            x, w, "nchw,kchw->nkhw|hw", metric=metric, method=method, mask=mask, memory=memory
        )
        if plan is None:
            continue
        assert metric == "dot" or plan.chunk[0] * plan.chunk[1] < 8 * 6
        assert peak <= plan.memory, (peak, plan.memory)


def test_weight_zero_positions_are_not_read():
    """A NaN or Inf in a template where the mask is 0 (an invalid pixel masked out)
    changes nothing, for every metric; bc.match finds the template."""
    rng = np.random.default_rng(13)
    img = rng.random((40, 40))
    t = img[10:20, 12:22].copy()
    m = np.ones((10, 10), bool)
    m[0, 0] = m[3, 4] = False
    bad = t.copy()
    bad[0, 0], bad[3, 4] = np.nan, np.inf
    for metric in METRICS:
        want = bc.correlate(img[None], t, metric=metric, mask=m)
        got = bc.correlate(img[None], bad, metric=metric, mask=m)
        np.testing.assert_allclose(got, want, atol=1e-12)
    hits = bc.match(img, [bad], threshold=0.99, mask=m)
    assert hits.start.tolist() == [[10, 12]]


@pytest.mark.parametrize("metric", ["ssd", "sad"])
def test_inf_in_x_gives_inf_as_without_a_mask(metric):
    rng = np.random.default_rng(14)
    x = rng.random((1, 30))
    x[0, 12] = np.inf
    w = rng.random(5)
    plain = bc.correlate(x, w, metric=metric)
    masked = bc.correlate(x, w, metric=metric, mask=np.ones(5))
    np.testing.assert_array_equal(np.isposinf(masked), np.isposinf(plain))
    assert np.isposinf(masked[0, 8:13]).all()


def test_masks_of_other_libraries():
    """Masks as torch tensors (booleans too), Dask or JAX arrays: read as NumPy."""
    rng = np.random.default_rng(15)
    x, w = rng.random((2, 20, 20)), rng.random((3, 4, 4))
    m = rng.random((4, 4)) < 0.6
    want = bc.correlate(x, w, metric="ncc", mask=m)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(
        bc.correlate(x, w, metric="ncc", mask=torch.from_numpy(m)), want, atol=1e-12
    )
    da = pytest.importorskip("dask.array")
    got = bc.correlate(da.from_array(x), w, metric="ncc", mask=da.from_array(m))
    np.testing.assert_allclose(got.compute(), want, atol=1e-12)
