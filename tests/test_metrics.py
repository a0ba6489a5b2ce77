"""The similarity metrics (ssd, sad, ncc, cosine) against the naive float64 loop, OpenCV
and seed 004's own code."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rand
from helpers import check_metric
from naive import naive_correlate

import batchconv as bc
from batchconv import compiled

# (id, spec, x shape, w shape, reduce)
CASES = [
    ("1d-bank", None, (3, 17), (2, 4), None),
    ("1d-long-kernel", None, (2, 40), (2, 12), None),  # cumulative-sum window sums
    ("2d-bank", None, (2, 9, 8), (3, 4, 3), None),
    ("2d-one-filter", None, (2, 12, 11), (10, 9), None),
    ("3d-bank", None, (2, 6, 5, 4), (2, 3, 2, 3), None),
    ("4d-one-filter", None, (1, 5, 4, 4, 3), (2, 3, 2, 2), None),
    ("seed004-channels", "bchw,chw->bhw|hw", (2, 3, 8, 7), (3, 3, 2), None),
    ("tf-bank-channels", "nhwc,hwco->nhwo|hw", (2, 8, 7, 3), (3, 2, 3, 4), None),
    ("paired", "nchw,chw->nchw|hw", (2, 3, 7, 6), (3, 3, 2), None),
    ("x-only-summed", "nchw,hw->nhw|hw", (2, 3, 6, 6), (3, 3), None),
    ("output-order", "nhw,khw->hkwn|hw", (2, 7, 6), (3, 2, 3), None),
    ("max", "nhw,khw->nk|hw", (2, 7, 6), (3, 2, 3), "max"),
    ("argmax", "nhw,khw->nk|hw", (2, 7, 6), (3, 2, 3), "argmax"),
]

# "+numpy": the compiled (numba) kernels switched off, so the NumPy code runs
METRIC_METHODS = [
    ("ssd", "direct"),
    ("ssd", "fft+numpy"),
    ("sad", "direct"),
    ("sad", "direct+numpy"),
    ("ncc", "direct+numpy"),
    ("ncc", "fft"),
    ("cosine", "direct"),
    ("cosine", "fft+numpy"),
]


def _run(monkeypatch, metric, method, *args, **kw):
    if method.endswith("+numpy"):
        monkeypatch.setattr(compiled, "USE_NUMBA", False)
        method = method[:-6]
    return check_metric(*args, metric=metric, method=method, **kw)


@pytest.mark.parametrize(
    "metric,method", METRIC_METHODS, ids=[f"{a}-{b}" for a, b in METRIC_METHODS]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matrix(case, mode, dtype, metric, method, rng, monkeypatch):
    _, spec, xs, ws, reduce = case
    x, w = rand(rng, xs, dtype), rand(rng, ws, dtype)
    _run(monkeypatch, metric, method, x, w, spec, mode=mode, reduce=reduce)


@pytest.mark.parametrize(
    "metric,method", METRIC_METHODS, ids=[f"{a}-{b}" for a, b in METRIC_METHODS]
)
@pytest.mark.parametrize(
    "padding,cval",
    [
        ("constant", 0.0),
        ("constant", 2.5),
        ("reflect", 0.0),
        ("symmetric", 0.0),
        ("edge", 0.0),
        ("wrap", 0.0),
    ],
)
def test_geometry(metric, method, padding, cval, rng, monkeypatch):
    """Strides, dilations and every padding, 2-D, with a bank and channels."""
    x, w = rand(rng, (2, 2, 13, 11), np.float64), rand(rng, (3, 2, 3, 4), np.float64)
    for mode, stride, dilation in (
        ("same", (2, 3), 1),
        ("full", 1, (2, 1)),
        ("valid", 2, (1, 2)),
        ("same", 3, 2),
    ):
        _run(
            monkeypatch,
            metric,
            method,
            x,
            w,
            "nchw,kchw->nkhw|hw",
            mode=mode,
            stride=stride,
            dilation=dilation,
            padding=padding,
            cval=cval,
        )


@pytest.mark.parametrize(
    "metric,method", METRIC_METHODS, ids=[f"{a}-{b}" for a, b in METRIC_METHODS]
)
def test_long_windows(metric, method, rng, monkeypatch):
    """Kernels long enough for the cumulative-sum window sums, with dilation and stride
    (float32, so that accumulation order matters)."""
    x, w = rand(rng, (2, 300), np.float32), rand(rng, (2, 40), np.float32)
    _run(monkeypatch, metric, method, x, w, stride=3, dilation=2, mode="same")


@pytest.mark.parametrize(
    "metric,method", [("ssd", "direct"), ("sad", "direct"), ("sad", "direct+numpy")]
)
def test_integers_exact(metric, method, rng, monkeypatch):
    x, w = rand(rng, (2, 3, 9, 8), np.int32), rand(rng, (2, 3, 3, 2), np.int16)
    y = _run(monkeypatch, metric, method, x, w, "nchw,kchw->nkhw|hw", mode="same")
    assert y.dtype == np.float64


@pytest.mark.parametrize(
    "metric,method", METRIC_METHODS, ids=[f"{a}-{b}" for a, b in METRIC_METHODS]
)
@pytest.mark.parametrize("data", ["8bit", "offset"])
def test_large_mean(metric, method, data, monkeypatch):
    """8-bit images with values 200..255, and data at 1000 +- 0.01, in float32: centring
    keeps the precision of the contrast, not of the brightness (the contract's scale uses
    the centred data; without centring, 'offset' is off by a factor of about 1000)."""
    rng = np.random.default_rng(7)
    if data == "8bit":
        img = rng.integers(200, 256, size=(2, 3, 40, 36)).astype(np.float32)
    else:
        img = (1000 + 0.01 * rng.standard_normal((2, 3, 40, 36))).astype(np.float32)
    tpl = img[0, :, 10:22, 5:15].copy()  # a template cut from the image
    tpl[0, 0, 0] += 1
    _run(monkeypatch, metric, method, img, tpl, "bchw,chw->bhw|hw")


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_ncc_finds_template(method):
    rng = np.random.default_rng(3)
    img = rng.random((1, 60, 50), dtype=np.float32)
    bank = np.stack([img[0, 7:20, 30:41], img[0, 40:53, 2:13], img[0, 0:13, 0:11]])
    where = bc.correlate(img, bank, metric="ncc", reduce="argmax", method=method)
    assert where[0].tolist() == [[7, 30], [40, 2], [0, 0]]
    best = bc.correlate(img, bank, metric="ncc", reduce="max", method=method)
    np.testing.assert_allclose(best, 1, atol=1e-5)


@pytest.mark.parametrize("metric", ["ncc", "cosine"])
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_windows_and_filters_give_zero(metric, method, dtype):
    x = np.zeros((1, 30, 30), dtype)
    x[0, :, 15:] = 0.1 if metric == "ncc" else 0  # a flat region (non-zero level for ncc)
    x[0, 5:12, 20:27] = np.random.default_rng(1).random((7, 7))
    w = np.stack(
        [
            np.full((4, 4), 0.7, dtype),  # a flat filter
            np.arange(16, dtype=dtype).reshape(4, 4),
        ]
    )
    y = bc.correlate(x, w, metric=metric, method=method, mode="same")
    assert np.isfinite(y).all() and (np.abs(y) <= 1).all()
    if metric == "ncc":
        assert (y[0, 0] == 0).all()  # flat filter
    # 'same' with a 4x4 kernel: windows start 2 samples before x, zero padding
    xp = np.pad(x[0].astype(np.float64), ((2, 1), (2, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (4, 4))
    flat_windows = (
        (np.ptp(win, axis=(2, 3)) == 0) if metric == "ncc" else (np.abs(win).max(axis=(2, 3)) == 0)
    )
    assert flat_windows.sum() > 100
    assert (y[0, 1][flat_windows] == 0).all()
    ref = naive_correlate(x, w, metric=metric, mode="same")
    assert (ref[0, 1][flat_windows] == 0).all()


def test_flat_everything():
    for metric in ("ncc", "cosine"):
        y = bc.correlate(np.full((2, 10), 3.0), np.full((2, 3), 2.0), metric=metric)
        if metric == "ncc":  # no variance: 0 by definition
            assert (y == 0).all()
        else:  # parallel vectors
            np.testing.assert_allclose(y, 1)
        y = bc.correlate(np.zeros((2, 10)), np.zeros((2, 3)), metric=metric)
        assert (y == 0).all()


def test_ssd_and_sad_of_template_are_zero_where_it_was_cut():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, size=(1, 3, 30, 30)).astype(np.float32)
    tpl = img[0, :, 4:12, 9:19]
    for metric, method in (("ssd", "fft"), ("ssd", "direct"), ("sad", "direct")):
        y = bc.correlate(img, tpl, "bchw,chw->bhw|hw", metric=metric, method=method)
        assert y.min() >= 0
        assert tuple(np.argwhere(y[0] == y[0].min())[0]) == (4, 9)
        assert y[0, 4, 9] <= 1e-5 * np.abs(tpl).sum() * 255


def test_non_finite_stays_local(rng):
    x = rng.standard_normal((2, 40, 30))
    x[0, 20, 10] = np.nan
    w = rng.standard_normal((2, 5, 4))
    for metric in ("ssd", "ncc", "cosine", "sad"):
        for method in ("direct",) if metric == "sad" else ("direct", "fft"):
            y = bc.correlate(x, w, metric=metric, method=method)
            bad = ~np.isfinite(y)
            assert bad[1].sum() == 0
            assert bad[0, :, 16:21, 7:11].all() and bad[0].sum() == 2 * 5 * 4


def test_reduce_and_dtype(rng):
    x, w = rand(rng, (3, 20, 20), np.float32), rand(rng, (2, 5, 5), np.float32)
    full = bc.correlate(x, w, metric="ssd")
    assert full.dtype == np.float32
    np.testing.assert_allclose(
        bc.correlate(x, w, metric="ssd", reduce="min"), full.min(axis=(2, 3)), rtol=1e-6
    )


def test_plan_reuse_and_explain(rng):
    x, w = rand(rng, (4, 30, 30), np.float32), rand(rng, (3, 7, 7), np.float32)
    p = bc.plan(x, w, metric="ncc", mode="same")
    np.testing.assert_array_equal(p(x), bc.correlate(x, w, metric="ncc", mode="same"))
    assert p(x[:2]).shape == (2, 3, 30, 30)
    text = p.explain()
    assert "metric='ncc'" in text and "window sums" in text
    assert "SAD" in bc.plan(x, w, metric="sad").explain()


def test_errors():
    x, w = np.ones((2, 8)), np.ones((2, 3))
    with pytest.raises(ValueError, match="no 'fft' form"):
        bc.correlate(x, w, metric="sad", method="fft")
    with pytest.raises(ValueError, match="convolve computes metric 'dot' only"):
        bc.convolve(x, w, metric="ncc")
    with pytest.raises(TypeError, match="needs real data"):
        bc.correlate(x + 1j, w, metric="ssd")
    with pytest.raises(ValueError, match="metric must be one of"):
        bc.correlate(x, w, metric="l2")


def _seed004_loop(image, kernel, stride):
    """Seed 004's own function (its loop), in NumPy: 1 - mean |patch - kernel|."""
    oh = (image.shape[-2] - kernel.shape[-2]) // stride + 1
    ow = (image.shape[-1] - kernel.shape[-1]) // stride + 1
    out = np.zeros((image.shape[0], oh, ow), np.float64)
    for b in range(image.shape[0]):
        for y in range(oh):
            for x in range(ow):
                patch = image[
                    b,
                    :,
                    y * stride : y * stride + kernel.shape[1],
                    x * stride : x * stride + kernel.shape[2],
                ]
                out[b, y, x] = 1 - np.abs(patch - kernel).sum() / kernel.size
    return out


@pytest.mark.parametrize("numba", [True, False], ids=["compiled", "numpy"])
def test_seed004_reproduced(numba, monkeypatch):
    monkeypatch.setattr(compiled, "USE_NUMBA", numba)
    rng = np.random.default_rng(4)
    image = rng.random((2, 3, 20, 17), dtype=np.float32)
    kernel = rng.random((3, 5, 4), dtype=np.float32)
    ours = 1 - bc.correlate(image, kernel, "bchw,chw->bhw|hw", metric="sad", stride=2) / kernel.size
    np.testing.assert_allclose(ours, _seed004_loop(image, kernel, 2), atol=1e-6)
    torch = pytest.importorskip("torch")
    img_t, k_t = torch.from_numpy(image), torch.from_numpy(kernel)
    patched = img_t.unfold(-2, k_t.shape[-2], 2).unfold(-2, k_t.shape[-1], 2)
    patched = patched.permute(0, 2, 3, 1, 4, 5)
    theirs = 1 - (patched - k_t[None, None, None]).abs().sum(dim=(-3, -2, -1)) / k_t.numel()
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-6)


# OpenCV's matchTemplate (2-D, float32, one template, 'valid'); skipped without OpenCV
@pytest.mark.parametrize(
    "metric,flag,method",
    [
        ("ncc", "TM_CCOEFF_NORMED", "fft"),
        ("ncc", "TM_CCOEFF_NORMED", "direct"),
        ("ssd", "TM_SQDIFF", "fft"),
        ("ssd", "TM_SQDIFF", "direct"),
        ("cosine", "TM_CCORR_NORMED", "fft"),
        ("cosine", "TM_CCORR_NORMED", "direct"),
    ],
)
@pytest.mark.parametrize("data", ["normal", "8bit"])
def test_against_opencv(metric, flag, method, data):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(11)
    if data == "8bit":
        img = rng.integers(0, 256, size=(70, 64)).astype(np.float32)
    else:
        img = rng.standard_normal((70, 64)).astype(np.float32)
    tpl = img[20:35, 10:22] + rng.standard_normal((15, 12)).astype(np.float32)
    theirs = cv2.matchTemplate(img, tpl, getattr(cv2, flag))
    ours = bc.correlate(img[None], tpl, metric=metric, method=method)[0]
    assert ours.dtype == np.float32
    ref = naive_correlate(img[None], tpl, metric=metric)[0]
    scale = np.abs(ref).max()
    # OpenCV computes in float32 with its own sums; both sit within float32 round-off of
    # the float64 loop
    np.testing.assert_allclose(ours, theirs, atol=2e-4 * scale, rtol=0)
    np.testing.assert_allclose(ours, ref, atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize("numba", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_flatness_is_local(numba, method, monkeypatch):
    """An Inf far away leaves flat windows at exactly 0, and a loud event far away does not
    make quiet windows 'flat' (the noise floor is the window's own)."""
    monkeypatch.setattr(compiled, "USE_NUMBA", numba)
    rng = np.random.default_rng(8)
    x = np.full((1, 8, 40), np.float32(rng.uniform(-5, 5)), np.float32)
    x[0, :, 20:] = rng.standard_normal((8, 20)) * 1000
    w = rng.standard_normal((3, 12)).astype(np.float32)
    x[0, 7, 39] = np.inf
    y = bc.correlate(x, w, metric="ncc", method=method)
    assert (y[0, :, :8] == 0).all()
    sig = 1e-5 * rng.standard_normal(200_000)
    sig[100_000:100_100] += rng.standard_normal(100)  # one loud click
    tpl = sig[1000:1016].copy()
    y = bc.correlate(sig[None], tpl, metric="ncc", method=method)[0]
    assert abs(y[1000] - 1) < 1e-9
    assert (y != 0).mean() > 0.999
    ref = naive_correlate(sig[None, 990:1030], tpl, metric="ncc")[0]
    np.testing.assert_allclose(y[990:1015], ref, atol=1e-9)


# (drawn shapes may look like channels-last images: spec=None's reading is meant here)
@pytest.mark.filterwarnings("ignore::batchconv.ChannelsWarning")
def test_review_regressions(rng, monkeypatch):
    """Empty summed axis, a NaN item beside finite ones, a short last sliding axis for
    SAD, and workers=1 for the compiled kernels."""
    for metric in ("ssd", "ncc", "cosine", "sad"):
        y = bc.correlate(np.zeros((2, 0, 10)), np.zeros((0, 3)), "ncl,cl->nl|l", metric=metric)
        assert y.shape == (2, 8) and (y == 0).all()
    x = rng.standard_normal((3, 30, 20))
    x[1, 10, 10] = np.nan
    w = rng.standard_normal((2, 4, 3))
    for method in ("direct", "fft"):
        y = bc.correlate(x, w, metric="ncc", method=method)
        ref = naive_correlate(x, w, metric="ncc")
        ok = np.isfinite(ref)
        assert (np.isfinite(y) == ok).all()
        np.testing.assert_allclose(y[ok], ref[ok], atol=1e-10)
    col = rng.standard_normal((1, 3000, 1))
    tpl = rng.standard_normal((16, 1))
    y = bc.correlate(col, tpl, metric="sad", workers=1)
    ref = np.abs(np.lib.stride_tricks.sliding_window_view(col[0, :, 0], 16) - tpl[:, 0]).sum(-1)
    np.testing.assert_allclose(y[0, :, 0], ref, rtol=1e-12)


@pytest.mark.parametrize("metric", ["ncc", "cosine", "ssd"])
def test_fused_2d_statistics_are_local(metric):
    """The compiled one-pass 2-D statistics: quiet windows far from a loud blob keep their
    values (float64 against the loop), strides included. The blob has mean zero, so that
    centring by the item's mean keeps the quiet region's precision (a region whose mean
    is far from the item's, relative to its spread, is only as precise as float64
    cancellation allows: see the README's accuracy contract)."""
    rng = np.random.default_rng(2)
    x = 1e-6 * rng.standard_normal((1, 2, 90, 80))
    blob = 1e3 * rng.standard_normal((2, 10, 15))
    x[0, :, 70:80, 60:75] += blob - blob.mean()
    w = x[0, :, 5:17, 3:13].copy()
    for stride in (1, (2, 3)):
        y = bc.correlate(x, w, "nchw,chw->nhw|hw", metric=metric, stride=stride)
        sub = x[:, :, :40, :40]
        ref = naive_correlate(sub, w, "nchw,chw->nhw|hw", metric=metric, stride=stride)
        got = y[:, : ref.shape[1], : ref.shape[2]]
        # the FFT's round-off is global (the blob's size over these windows' norms: about
        # 1e-8 here), far below the 1 that a window wrongly taken as flat would be off by
        np.testing.assert_allclose(got, ref, atol=1e-6 * np.abs(ref).max(), rtol=1e-6)
        # no quiet window zeroed (the template's own window is exactly 0 in the loop too)
        assert (got[ref != 0] != 0).all()


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_inf_and_nan_values_match_the_loop(method, rng):
    """Windows covering a NaN or an Inf get the loop's value: ssd +Inf (NaN if a NaN is
    covered), ncc and cosine NaN; padding that repeats the sample counts too."""
    x = rng.standard_normal((2, 30, 25))
    x[0, 10, 12] = np.inf
    x[1, 3, 0] = -np.inf
    x[1, 20, 20] = np.nan
    w = rng.standard_normal((2, 4, 3))
    for metric in ("ssd", "ncc", "cosine"):
        for padding in ("constant", "reflect"):
            y = bc.correlate(x, w, metric=metric, method=method, mode="same", padding=padding)
            with np.errstate(invalid="ignore", over="ignore"):
                ref = naive_correlate(x, w, metric=metric, mode="same", padding=padding)
            np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
            np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
            ok = np.isfinite(ref)
            np.testing.assert_allclose(y[ok], ref[ok], atol=1e-9 * np.abs(ref[ok]).max())
    y = bc.correlate(x[:1, :5, :5], w, metric="ncc", mode="same", cval=np.nan)
    assert np.isnan(y[0, :, 0, 0]).all() and np.isfinite(y[0, :, 2, 1]).all()


def nonfinite_filters_case(rng):
    """x with an Inf and a NaN; filters: finite, one NaN tap, one Inf tap."""
    x = rng.standard_normal((2, 20, 15))
    x[0, 5, 5], x[1, 3, 3] = np.inf, np.nan
    w = rng.standard_normal((3, 3, 4))
    w[1, 1, 1], w[2, 0, 0] = np.nan, np.inf
    return x, w


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_nonfinite_filters(method, rng):
    """A filter holding NaN is NaN everywhere, also where x holds an Inf (ssd used to put
    +Inf there); one holding Inf gives NaN for ncc and cosine as the loop does, and NaN
    for ssd where the loop gives +Inf (documented)."""
    x, w = nonfinite_filters_case(rng)
    for metric in ("ssd", "ncc", "cosine"):
        with np.errstate(all="ignore"):
            ref = naive_correlate(x, w, metric=metric)
            y = bc.correlate(x, w, metric=metric, method=method)
        checked = (0, 1) if metric == "ssd" else (0, 1, 2)
        for k in checked:
            assert (np.isnan(y[:, k]) == np.isnan(ref[:, k])).all(), (metric, k)
            assert (np.isinf(y[:, k]) == np.isinf(ref[:, k])).all(), (metric, k)
        assert np.isnan(y[:, 1]).all() and np.isnan(y[:, 2]).all()


def test_sad_under_a_budget_smaller_than_one_item_falls_back_to_numpy_tiles(rng):
    """The compiled SAD kernel copies a whole item (split into stride phases); under a
    budget smaller than that the plan runs the NumPy tiles, within the budget, instead
    of refusing the problem."""
    import tracemalloc

    from batchconv.methods import sad

    x, w = rng.standard_normal((4, 3, 256, 256)), rng.standard_normal((3, 16, 16))
    spec = "bchw,chw->bhw|hw"
    ref = naive_correlate(x[:1], w, spec, metric="sad", stride=2)
    for budget in (1 << 20, None):  # the compiled kernel's copy: 1.7 MiB
        p = bc.plan(x, w, spec, metric="sad", stride=2, memory=budget)
        assert p.state.window_rows == (budget is None and sad.uses_numba())
        assert ("compiled SAD kernel" in p.explain()) == p.state.window_rows
        p(x)  # compiles (or loads) the kernel: numba's allocations are not the plan's
        tracemalloc.start()
        try:
            y = p(x)
            extra = tracemalloc.get_traced_memory()[1] - y.nbytes
        finally:
            tracemalloc.stop()
        if budget is not None:
            assert extra < 1.25 * budget, extra
        np.testing.assert_allclose(y[:1], ref, rtol=1e-10, atol=1e-9)
