"""The FFT engine's building blocks (``xp._Engine``, ``xp.pocketfft``) against NumPy's FFT,
and the FFT method's one-filter unit (pocketfft calls with everything worked out once)
against the naive loop and against the general route it stands in for."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rand
from helpers import check
from naive import naive_correlate, tolerance, window_abs_bound

import batchconv as bc
from batchconv import xp
from batchconv.xp import _Engine, ordered_like, pocketfft

ENGINES = ["numpy"] + (["scipy"] if pocketfft() is not None else [])


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rfftn_into_a_given_buffer(name, dtype, rng):
    x = rng.standard_normal((3, 10, 12)).astype(dtype)
    eng = _Engine(name)
    ref = np.fft.rfftn(x, axes=(1, 2))
    out = np.empty(ref.shape, np.result_type(dtype, np.complex64))
    got = eng.rfftn(x, (10, 12), (1, 2), 1, out=out)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    if name == "scipy":  # pocketfft writes into the buffer it was given
        assert got is out
    # zero padding (s larger than the input): the general route, same answer
    got = eng.rfftn(x, (16, 15), (1, 2), 1, out=out)
    np.testing.assert_allclose(got, np.fft.rfftn(x, (16, 15), axes=(1, 2)), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("like_order", [(0, 1, 2), (1, 2, 0), (2, 0, 1)])
def test_irfftn_kept_lays_out_its_buffer_like_the_destination(name, like_order, rng):
    x = rng.standard_normal((4, 9, 14))
    spec = np.fft.rfftn(x, axes=(1, 2))
    keep = (slice(1, 8, 2), slice(0, 11, 1))
    ref = np.fft.irfftn(spec, (9, 14), axes=(1, 2))[:, keep[0], keep[1]]
    like = np.empty([ref.shape[i] for i in like_order]).transpose(np.argsort(like_order))
    got = _Engine(name).irfftn_kept(spec.copy(), (9, 14), (1, 2), keep, 1, 1, like=like)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    # the buffer walks memory in the destination's order
    assert sorted(range(3), key=lambda i: -got.strides[i]) == sorted(
        range(3), key=lambda i: -like.strides[i]
    )


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize(
    "keep",
    [
        (slice(0, 3), slice(0, 9), slice(0, 12)),  # seed 000's 'same': the short axis first
        (slice(0, 4), slice(1, 8, 3), slice(2, 11, 2)),  # steps: the long axis first
        (slice(None), slice(None), slice(None)),
    ],
)
def test_irfftn_kept_with_several_complex_axes_crops_each(name, keep, rng):
    """Three sliding axes, the real one last: the complex inverses run one axis at a
    time, each cropped to its kept rows before the next (in the cheapest order), and
    give irfftn's kept outputs."""
    x = rng.standard_normal((2, 4, 14, 16))
    spec = np.fft.rfftn(x, axes=(1, 2, 3))
    ref = np.fft.irfftn(spec, (4, 14, 16), axes=(1, 2, 3))[(slice(None), *keep)]
    got = _Engine(name).irfftn_kept(spec.copy(), (4, 14, 16), (1, 2, 3), keep, 2, 1)
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_crop_order_is_the_cheapest_by_n_log_n():
    """RGB 96x96 'same' pairs (spectrum 4 x 144 x 73, the real axis last): the 4-sample
    axis first (then the 144-sample one on 3 planes, not 4); an axis cropped to a few
    rows first when that saves more."""
    shape, axes, s = (8, 4, 144, 73), (1, 2, 3), (4, 144, 144)
    same = (slice(0, 3), slice(0, 96), slice(0, 96))
    assert xp._crop_order(shape, axes, s, same, [0, 1]) == [0, 1]
    few = (slice(0, 4), slice(0, 2), slice(0, 96))
    assert xp._crop_order(shape, axes, s, few, [0, 1]) == [1, 0]


def test_ordered_like():
    assert ordered_like((2, 3, 4), None) == ((2, 3, 4), (0, 1, 2))
    shape, back = ordered_like((2, 3, 4), (8, 96, 24))  # items innermost
    assert shape == (3, 4, 2)
    assert np.empty(shape).transpose(back).shape == (2, 3, 4)


# (spec, x shape, w shape, keywords): real, one filter, 'valid', so every window
# touches x and the cropped input has the FFT's size when that size is fast
UNIT_CASES = [
    ("hwn,hw->hwn|hw", (20, 18, 5), (5, 3), {}),  # seed 001: items innermost
    ("nhw,hw->nhw|hw", (4, 20, 18), (4, 5), {}),
    ("nhw,hw->nhw|hw", (4, 27, 20), (3, 3), {"stride": (2, 3), "dilation": (1, 2)}),
    ("nt,t->nt|t", (3, 64), (7,), {}),
    ("nhwd,hwd->nhwd|hwd", (2, 10, 9, 8), (3, 2, 3), {}),
    ("nchw,chw->nchw|hw", (2, 3, 12, 10), (3, 3, 2), {}),  # paired axis
    ("hwn,hw->nhw|hw", (16, 15, 3), (4, 4), {}),  # output order differs from x's
]


@pytest.mark.skipif(pocketfft() is None, reason="needs SciPy's pocketfft")
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
@pytest.mark.parametrize("case", UNIT_CASES, ids=[c[0] + str(c[3]) for c in UNIT_CASES])
def test_one_filter_unit_matches_the_loop(case, dtype, rng):
    spec, xs, ws, kw = case
    x, w = rand(rng, xs, dtype), rand(rng, ws, dtype)
    check(x, w, spec, method="fft", **kw)
    plan = bc.plan(x, w, spec, method="fft", **kw)
    plan(x)
    assert any(u is not None for u in plan.state.units.values()), "the unit was not used"


@pytest.mark.skipif(pocketfft() is None, reason="needs SciPy's pocketfft")
@pytest.mark.parametrize("case", UNIT_CASES, ids=[c[0] + str(c[3]) for c in UNIT_CASES])
def test_one_filter_unit_equals_the_general_route(case, rng, monkeypatch):
    spec, xs, ws, kw = case
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    x_view = np.flip(np.concatenate([x, x]), axis=0)[::2]  # a strided, reversed view
    for xi in (x, x_view):
        unit = bc.plan(xi, w, spec, method="fft", **kw)(xi)
        with monkeypatch.context() as m:
            m.setattr(xp, "pocketfft", lambda: None)
            general = bc.plan(xi, w, spec, method="fft", **kw)(xi)
        np.testing.assert_allclose(unit, general, rtol=0, atol=1e-12)


@pytest.mark.skipif(pocketfft() is None, reason="needs SciPy's pocketfft")
def test_one_filter_unit_flags_non_finite_items_and_reduces(rng):
    x = rng.standard_normal((6, 20, 20))
    w = rng.standard_normal((5, 5))
    x[2, 3, 4] = np.nan
    x[4, 10, 10] = np.inf
    y = bc.correlate(x, w, "nhw,hw->nhw|hw", method="fft")
    ref = bc.correlate(x, w, "nhw,hw->nhw|hw", method="direct")
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    ok = np.isfinite(ref)
    np.testing.assert_allclose(y[ok], ref[ok], atol=1e-10)
    # a fused reduce: the unit's buffer is laid out in C order, reduced per group
    check(rng.standard_normal((6, 20, 20)), w, "nhw,hw->n|hw", method="fft", reduce="max")


@pytest.mark.skipif(pocketfft() is None, reason="needs SciPy's pocketfft")
@pytest.mark.parametrize("case", UNIT_CASES, ids=[c[0] + str(c[3]) for c in UNIT_CASES])
def test_repeat_calls_run_the_bound_unit(case, rng):
    """The second call with a layout runs the plan's bound one-filter call (fft.bind):
    the same answers, NaN/Inf made local as on the first call; without pocketfft (the
    engine changed since the plan was made) it takes the general route."""
    spec, xs, ws, kw = case
    w = rng.standard_normal(ws)
    plan = bc.plan((xs, np.float64), w, spec, method="fft", **kw)
    plan(rng.standard_normal(xs))  # learns the layout
    assert [s[-1] is not None for s in plan._shortcuts.values()] == [True]
    for bad in (None, np.nan, np.inf):
        x = rng.standard_normal(xs)
        if bad is not None:
            x.flat[x.size // 3] = bad
        y = plan(x)
        ref = bc.plan(x, w, spec, method="direct", **kw)(x)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
        ok = np.isfinite(ref)
        np.testing.assert_allclose(y[ok], ref[ok], rtol=0, atol=1e-10)
    x = rng.standard_normal(xs)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(xp, "pocketfft", lambda: None)
        np.testing.assert_allclose(
            plan(x), bc.plan(x, w, spec, method="direct", **kw)(x), rtol=0, atol=1e-10
        )


def test_a_used_plan_unpickled_without_pocketfft_takes_the_general_route(rng, monkeypatch):
    """The one-filter units depend on the process's FFT engine: they are not pickled, and
    a plan unpickled where SciPy's pocketfft is missing computes with the general route."""
    import pickle

    x, w = rng.standard_normal((5, 16, 16)), rng.standard_normal((3, 3))
    p = bc.plan(x, w, method="fft")
    y = p(x)
    blob = pickle.dumps(p)
    monkeypatch.setattr(xp, "pocketfft", lambda: None)
    np.testing.assert_allclose(pickle.loads(blob)(x), y, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "spec,xs,ws,dtype",
    [
        ("nchw,kchw->nkhw|hw", (2, 3, 20, 18), (7, 3, 5, 4), np.float64),  # channels
        ("nhw,khw->nkhw|hw", (2, 20, 18), (7, 5, 4), np.float32),  # one channel
        ("nchw,kchw->nkhw|hw", (2, 3, 20, 18), (7, 3, 5, 4), np.complex128),
    ],
)
def test_filters_transformed_in_groups(spec, xs, ws, dtype, rng, monkeypatch):
    """Filters transformed a few at a time, each group written straight into the
    spectra's layout, give the answer of one group (and the loop's)."""
    from batchconv.methods import fft

    x, w = rand(rng, xs, dtype), rand(rng, ws, dtype)
    whole = bc.plan(x, w, spec, method="fft")(x)
    monkeypatch.setattr(fft, "KERNEL_CHUNK_BYTES", 1)  # one filter a group
    bc.clear_plan_cache()
    grouped = bc.plan(x, w, spec, method="fft")(x)
    np.testing.assert_allclose(
        grouped, whole, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-6 * np.abs(whole).max()
    )
    check(x, w, spec, method="fft")


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_large_filter_groups_go_to_the_layout_a_channel_at_a_time(dtype, rng, monkeypatch):
    """Groups of at least ``_SCATTER_BY_CHANNEL`` filters are written a channel at a
    time; with group boundaries inside the bank (140 filters: groups of 66, 66 and 8),
    both ways give the loop's answer and the same spectra."""
    from batchconv.methods import fft

    spec = "nchw,kchw->nkhw|hw"
    x, w = rand(rng, (2, 3, 9, 8), dtype), rand(rng, (140, 3, 3, 2), dtype)
    plan = bc.plan(x, w, spec, method="fft")
    per_filter = 3 * np.prod(plan.state.fft_shape) * np.result_type(dtype, np.complex64).itemsize
    monkeypatch.setattr(fft, "KERNEL_CHUNK_BYTES", int(66 * per_filter))
    by_channel = bc.plan(x, w, spec, method="fft")
    monkeypatch.setattr(fft, "_SCATTER_BY_CHANNEL", 1 << 30)
    at_once = bc.plan(x, w, spec, method="fft")
    np.testing.assert_array_equal(by_channel.state.spectrum, at_once.state.spectrum)
    check(x, w, spec, method="fft")
    ref = naive_correlate(x, w, spec)
    tol = tolerance(dtype) * window_abs_bound(x, w, spec)
    assert np.all(np.abs(by_channel(x) - ref) <= tol)


def test_filter_spectra_are_held_once():
    """The plan's transform holds the spectra once, not a second frequency-major copy
    (128 x 16 filters of 63x63: 540 MB, not 1.1 GB), and transforms the filters in
    groups of a 16th of the budget."""
    import tracemalloc

    x = np.ones((1, 8, 64, 64), np.float32)
    w = np.ones((64, 8, 5, 5), np.float32)
    tracemalloc.start()
    try:
        p = bc.plan(x, w, "nchw,kchw->nkhw|hw", method="fft", memory="32MB")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert p.state_bytes > 8 << 20
    assert peak < 1.4 * p.state_bytes


@pytest.mark.parametrize("xs,ws", [((3, 20), (0, 5)), ((0, 20), (2, 5)), ((0, 3, 20), (2, 3, 5))])
def test_fft_plan_on_no_items_or_no_filters(xs, ws):
    """No items or no filters: an empty result, on the first call and the repeat call
    (the one-block shortcut) alike."""
    x, w = np.ones(xs), np.ones(ws)
    spec = None if len(xs) == 2 else "ncw,kcw->nkw|w"
    p = bc.plan(x, w, spec, method="fft")
    first, again = p(x), p(x)
    assert first.shape == again.shape == bc.correlate(x, w, spec, method="direct").shape
    assert first.size == 0


# The channel sums per frequency bin, compiled where the matrices are small
# (methods/fft.py: _compiled_products; _numba_kernels.bin_products)
PRODUCT_CASES = [  # spec, x shape, w shape, options, whether the kernel runs
    ("nhwc,hwco->nhwo|hw", (4, 20, 18, 8), (7, 7, 8, 32), {}, True),
    ("nhwc,hwco->nhwo|hw", (5, 17, 16, 3), (5, 5, 3, 40), {"mode": "same"}, True),  # 4 + 1
    ("nhwc,hwco->nhwo|hw", (6, 16, 16, 4), (9, 9, 4, 32), {"mode": "full"}, True),
    ("nchw,ochw->nohw|hw", (4, 6, 19, 21), (32, 6, 7, 7), {"padding": "reflect"}, True),
    ("ncphw,kcphw->nkphw|hw", (4, 3, 2, 18, 18), (32, 3, 2, 9, 9), {}, True),  # P = 2
    ("nlc,lco->nlo|l", (7, 200, 4), (31, 4, 32), {}, True),  # 1-D
    ("nhwc,hwco->nhwo|hw", (2, 20, 18, 8), (7, 7, 8, 32), {}, False),  # 2 items: BLAS
    ("nhwc,hwco->nhwo|hw", (4, 20, 18, 64), (7, 7, 64, 16), {}, False),  # 16 filters: BLAS
    # a budget that cuts the bank into blocks: BLAS on the slices of the spectra
    ("nhwc,hwco->nhwo|hw", (4, 40, 40, 3), (5, 5, 3, 128), {"memory": 3 << 20}, False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("case", PRODUCT_CASES, ids=[f"{c[0]}{c[1]}{c[2]}" for c in PRODUCT_CASES])
def test_compiled_channel_products_match_the_loop(case, dtype, rng, monkeypatch):
    from batchconv import compiled

    if not compiled.enabled():
        pytest.skip("numba is not installed")
    spec, xs, ws, kw, runs = case
    x, w = rand(rng, xs, dtype), rand(rng, ws, dtype)
    if "memory" in kw:
        kw = {**kw, "memory": kw["memory"] * np.dtype(dtype).itemsize // 4}
        assert bc.plan(x, w, spec, method="fft", **kw).chunk[1] < ws[-1]  # (o is last)
    kernels, calls = compiled.kernels(), []
    original = kernels.bin_products
    monkeypatch.setattr(kernels, "bin_products", lambda *a: calls.append(1) or original(*a))
    y = bc.correlate(x, w, spec, method="fft", **kw)
    assert bool(calls) == runs
    geometry = {k: v for k, v in kw.items() if k != "memory"}
    ref = naive_correlate(x, w, spec, **geometry)
    bound = window_abs_bound(x, w, spec, **geometry)
    assert np.all(np.abs(y - ref) <= tolerance(y.dtype) * bound)
    with compiled.use_numba(False):  # the BLAS products: the same answer within rounding
        blas = bc.correlate(x, w, spec, method="fft", **kw)
    assert np.all(np.abs(y - blas) <= tolerance(y.dtype) * bound)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("b", [1, 3, 4, 6, 9])
def test_bin_products_kernel_is_the_batched_matmul(dtype, b, rng):
    """``bin_products`` against ``np.matmul`` per bin, for items not a multiple of 4, a
    bank that is a non-contiguous slice of the filters, and NaN/Inf (propagated as the
    products do)."""
    from batchconv import compiled

    if not compiled.enabled():
        pytest.skip("numba is not installed")
    kern = compiled.kernels()
    C, P, F, K = 5, 2, 37, 11
    x = (rng.standard_normal((b, C, P, F)) + 1j * rng.standard_normal((b, C, P, F))).astype(dtype)
    s = (rng.standard_normal((P, F, C, K)) + 1j * rng.standard_normal((P, F, C, K))).astype(dtype)
    x[0, 1, 0, 3] = np.nan
    x[-1, 2, 1, 5] = np.inf
    for k0, k1 in [(0, K), (3, 9)]:
        y = np.zeros((b, k1 - k0, P, F), dtype)
        for pi in range(P):
            kern.bin_products(x, s[pi, :, :, k0:k1], y, pi, slice(0, 20))
            kern.bin_products(x, s[pi, :, :, k0:k1], y, pi, slice(20, F))
        ref = np.einsum("bcpf,pfck->bkpf", x, s[..., k0:k1])
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
        ok = np.isfinite(ref)
        tol = 1e-5 if dtype == np.complex64 else 1e-12
        np.testing.assert_allclose(y[ok], ref[ok], rtol=0, atol=tol * np.abs(ref[ok]).max())


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("pair_bytes", [1, 1 << 10, 40_000, 1 << 20, 1 << 30])
def test_pair_units_cover_the_block_in_even_groups(workers, pair_bytes):
    """The (batch, bank) units of the FFT's inverse stage: every pair once, the first unit
    the largest, groups that differ by at most one, and a few units a multiple of the
    threads where the items allow it (4 items in groups of 3 had left one thread a third
    of the other's work)."""
    from batchconv.methods.fft import _PARALLEL_BYTES, _pair_units

    for b in range(1, 41):
        for k in (1, 2, 5, 32, 64, 100):
            units = _pair_units(b, k, pair_bytes, workers)
            covered = np.zeros((b, k), int)
            for bs, ks in units:
                covered[bs, ks] += 1
            assert (covered == 1).all()
            items = [bs.stop - bs.start for bs, _ in units]
            filters = [ks.stop - ks.start for _, ks in units]
            assert items[0] == max(items) and filters[0] == max(filters)
            assert max(items) - min(items) <= 1 and max(filters) - min(filters) <= 1
            parallel = workers > 1 and b * k * pair_bytes >= _PARALLEL_BYTES
            if parallel and len(units) < 4 * workers and max(items) > 1:
                assert len(units) % workers == 0, (b, k, units)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize(
    "b, C, k",
    # both ways: real products (2-4 items, not far more filters than channels), complex
    [(1, 3, 8), (2, 3, 8), (2, 8, 128), (3, 5, 12), (4, 32, 32), (4, 3, 64), (8, 16, 32)],
)
@pytest.mark.parametrize("P", [1, 2])
def test_bin_products_agree_and_stay_within_their_count(b, C, k, P, dtype, rng):
    """The channel products per frequency bin (real or complex matrix products, by the
    number of items) against einsum, their peak memory within ``_product_bytes``."""
    import tracemalloc

    from batchconv.methods import fft

    f = 40
    x = (rng.standard_normal((b, C, P, f)) + 1j * rng.standard_normal((b, C, P, f))).astype(dtype)
    s = (rng.standard_normal((P, f, C, k)) + 1j * rng.standard_normal((P, f, C, k))).astype(dtype)
    ref = np.einsum("ncpf,pfck->pfnk", x.astype(np.complex128), s.astype(np.complex128))
    fft._products(x, s)  # (first-call set-up)
    tracemalloc.start()
    try:
        y = fft._products(x, s)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.shape == (P, f, b, k) and y.dtype == dtype
    tol = (1e-5 if dtype == np.complex64 else 1e-13) * C
    np.testing.assert_allclose(y, ref, rtol=0, atol=tol * np.abs(ref).max())
    c = np.dtype(dtype).itemsize
    assert peak <= fft._product_bytes(b, C, k, P, f, c) + (4 << 10), (
        peak,
        fft._use_real_products(b, C, k),
    )
    # a slice of the bank, as a budget's blocks take it
    np.testing.assert_allclose(
        fft._products(x, s[..., 1:]), ref[..., 1:], rtol=0, atol=tol * np.abs(ref).max()
    )
