"""Every spec role, mode, dtype and method against the naive float64 loop."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rand
from helpers import ARRAYS, check, check_metric, small_fft_tiles
from naive import naive_correlate

import batchconv as bc

METHODS = ["direct", "fft"]
# the matrix tests also run "direct+numpy": the direct method with the compiled kernels
# off (helpers.check reads the suffix; NumPy arrays only)
MATRIX_METHODS = METHODS + (["direct+numpy"] if ARRAYS == "numpy" else [])
DTYPES = [np.float64, np.float32, np.int32, np.complex128]

# (id, spec, x shape, w shape, reduce)
CASES = [
    ("1d-bank", None, (3, 17), (2, 4), None),
    ("1d-one-filter", None, (3, 16), (5,), None),
    ("2d-bank", None, (2, 9, 8), (3, 4, 3), None),
    ("2d-one-filter-odd", None, (2, 7, 9), (3, 3), None),
    ("3d-bank", None, (2, 6, 5, 4), (2, 3, 2, 3), None),
    ("4d-bank", None, (2, 5, 4, 4, 3), (2, 2, 3, 2, 2), None),
    ("seed000-max", "nhwd,khwd->nk|hwd", (2, 6, 5, 3), (3, 6, 5, 3), "max"),
    ("seed001", "hwn,hw->hwn|hw", (9, 8, 3), (3, 4), None),
    ("seed002-tf", "nhwc,hwco->nhwo|hw", (2, 8, 7, 3), (3, 2, 3, 4), None),
    ("seed003", "bmn,mn->bmn|mn", (4, 7, 6), (3, 2), None),
    ("seed004", "bchw,chw->bhw|hw", (2, 3, 8, 7), (3, 3, 2), None),
    ("paired", "nchw,chw->nchw|hw", (2, 3, 7, 6), (3, 3, 2), None),
    ("paired-bank-summed", "ngchw,kgchw->nkghw|hw", (2, 2, 3, 6, 6), (2, 2, 3, 3, 3), None),
    ("x-only-summed", "nchw,hw->nhw|hw", (2, 3, 6, 6), (3, 3), None),
    ("w-sliding-order", "nhw,kwh->nkhw|hw", (2, 7, 6), (3, 2, 3), None),
    ("output-order", "nhw,khw->hkwn|hw", (2, 7, 6), (3, 2, 3), None),
    ("partial-reduce", "nhw,khw->nkh|hw", (2, 7, 6), (3, 2, 3), "max"),
    ("sum-reduce-1d", "nt,kt->nk|t", (3, 12), (2, 5), "sum"),
]


@pytest.mark.parametrize("method", MATRIX_METHODS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matrix(case, mode, dtype, method, rng):
    check_case(case, mode, dtype, method, rng)


def check_case(case, mode, dtype, method, rng, **kw):
    """One case of the matrix against the loop (``kw``: e.g. ``call=`` for tensors)."""
    _, spec, xs, ws, reduce = case
    if reduce in ("max", "min") and np.dtype(dtype).kind == "c":
        pytest.skip("max of complex values is undefined")
    x, w = rand(rng, xs, dtype), rand(rng, ws, dtype)
    check(x, w, spec, method=method, mode=mode, reduce=reduce, **kw)


@pytest.mark.parametrize("method", MATRIX_METHODS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex64])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_convolve_matrix(mode, dtype, method, rng):
    x, w = rand(rng, (2, 3, 9, 8), dtype), rand(rng, (4, 3, 4, 3), dtype)
    check(x, w, "nchw,kchw->nkhw|hw", method=method, mode=mode, convolve=True)


@pytest.mark.parametrize("method", MATRIX_METHODS)
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("stride", [1, 2, 3, (2, 1)])
@pytest.mark.parametrize("dilation", [1, 2, (1, 3)])
def test_stride_dilation(stride, dilation, mode, method, rng):
    x, w = rand(rng, (2, 13, 12), np.float64), rand(rng, (3, 3, 4), np.float64)
    check(x, w, method=method, mode=mode, stride=stride, dilation=dilation)


@pytest.mark.parametrize("method", MATRIX_METHODS)
@pytest.mark.parametrize("mode", ["same", "full"])
@pytest.mark.parametrize(
    "padding,cval",
    [
        ("constant", 0.0),
        ("constant", 2.5),
        ("reflect", 0),
        ("symmetric", 0),
        ("edge", 0),
        ("wrap", 0),
    ],
)
@pytest.mark.parametrize("stride", [1, 2])
def test_padding(padding, cval, mode, method, stride, rng):
    x, w = rand(rng, (2, 9, 8), np.float64), rand(rng, (2, 4, 3), np.float64)
    check(x, w, method=method, mode=mode, padding=padding, cval=cval, stride=stride)


@pytest.mark.parametrize("method", MATRIX_METHODS)
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("stride", [1, 2, (1, 3), (3, 1)])
@pytest.mark.parametrize("dilation", [1, (2, 1), (1, 3)])
def test_one_filter_geometry(stride, dilation, mode, method, rng):
    """One filter: the compiled window-rows kernel (rows folded over both axes at stride
    1, not otherwise) or NumPy's shift-and-add; batch first, and batch innermost (the
    result written with strides)."""
    x, w = rand(rng, (2, 13, 12), np.float64), rand(rng, (3, 4), np.float64)
    check(x, w, method=method, mode=mode, stride=stride, dilation=dilation)
    check(
        np.ascontiguousarray(x.transpose(1, 2, 0)),
        w,
        "hwn,hw->hwn|hw",
        method=method,
        mode=mode,
        stride=stride,
        dilation=dilation,
    )


# (id, spec, x shape, w shape, dtype, options): one filter in the shapes the window-rows
# kernel treats apart
ONE_FILTER = [
    ("short-last-axis", None, (2, 40, 5), (3, 2), np.float64, {}),  # rows run along h
    ("float32-81-taps", None, (2, 30, 29), (9, 9), np.float32, {}),  # two tap chunks
    ("float32-1d-long", None, (2, 300), (70,), np.float32, {"mode": "same"}),
    ("3d-folded", None, (2, 6, 7, 8), (2, 3, 2), np.float64, {"mode": "same"}),
    ("3d-strided", None, (2, 9, 7, 8), (2, 3, 2), np.float32, {"stride": (2, 1, 1)}),
    ("channels-summed", "nchw,chw->nhw|hw", (2, 3, 9, 8), (3, 2, 3), np.float64, {}),
    ("paired", "nchw,chw->nchw|hw", (2, 3, 9, 8), (3, 2, 3), np.float32, {}),
    ("1x1-bank", None, (2, 7, 6), (4, 1, 1), np.float64, {}),  # no GEMM for 1 tap
    ("integers", None, (2, 12, 11), (4, 3), np.int64, {"mode": "full"}),
    ("wide-kernel", None, (2, 10, 30), (3, 25), np.float64, {}),  # rows not folded
]


@pytest.mark.parametrize("method", MATRIX_METHODS)
@pytest.mark.parametrize("case", ONE_FILTER, ids=[c[0] for c in ONE_FILTER])
def test_one_filter_shapes(case, method, rng):
    _, spec, xs, ws, dtype, kw = case
    check(rand(rng, xs, dtype), rand(rng, ws, dtype), spec, method=method, **kw)


@pytest.mark.parametrize("method", MATRIX_METHODS)
def test_one_filter_reads_any_input_view(method, rng):
    """Views of a larger array (rows further apart than their length: read in place,
    rows folded), reversed (through a copy), strided and transposed inputs."""
    big = rand(rng, (3, 25, 30), np.float64)
    w = rand(rng, (4, 3), np.float64)
    for x in (big[:, :20, :18], big[:, ::-1, ::-1], big[:, 2:22:2, 1:], big.transpose(0, 2, 1)):
        for mode in ("valid", "same"):
            check(x, w, method=method, mode=mode)
        check(x, w, method=method, dilation=(2, 1))


def test_window_rows_writes_any_layout(rng):
    """The compiled kernel writes a block of any strides, a reversed one through a
    temporary; each gives the loop's answer."""
    pytest.importorskip("numba")
    from batchconv import compiled
    from batchconv.problem import make_problem

    x, w = rand(rng, (3, 10, 9), np.float64), rand(rng, (3, 4), np.float64)
    p = make_problem(x.shape, x.dtype, w.shape, w.dtype)
    rows = compiled.kernels().WindowRows(p, w.reshape(1, 1, 1, 3, 4), absolute=False)
    ref = naive_correlate(x, w)[:, None, None]  # (b, k, P, *O)
    for block in (
        np.empty((8, 6, 1, 1, 3)).transpose(4, 3, 2, 0, 1),  # batch innermost
        np.empty((3, 1, 1, 8, 6))[..., ::-1],
    ):  # a negative stride
        block[...] = np.nan
        rows(x[:, None, None], 0, 1, block)
        np.testing.assert_allclose(block, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("padding", ["reflect", "wrap", "symmetric"])
def test_padding_wider_than_input(padding, method, rng):
    # kernel extent larger than the input: the pad repeats numpy.pad's rule
    x, w = rand(rng, (2, 3), np.float64), rand(rng, (2, 7), np.float64)
    check(x, w, method=method, mode="full", padding=padding)
    check(x, w, method=method, mode="same", padding=padding, dilation=2)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "argmax", "argmin"])
def test_reduce(reduce, method, rng):
    x, w = rand(rng, (3, 2, 9, 8), np.float64), rand(rng, (4, 2, 3, 3), np.float64)
    check(x, w, "nchw,kchw->nk|hw", method=method, mode="same", reduce=reduce)
    check(x, w, "nchw,kchw->nkw|hw", method=method, mode="valid", reduce=reduce, stride=2)


def test_reduce_callable(rng):
    x, w = rand(rng, (3, 9, 8), np.float64), rand(rng, (2, 3, 3), np.float64)

    def l2(block, axis):
        return np.sqrt((block**2).sum(axis=axis))

    for method in METHODS:
        check(x, w, "nhw,khw->nk|hw", method=method, reduce=l2)


def test_default_spec_with_reduce_reduces_every_sliding_axis(rng):
    x, w = rand(rng, (3, 9, 8), np.float64), rand(rng, (2, 3, 3), np.float64)
    y = bc.correlate(x, w, reduce="max")
    assert y.shape == (3, 2)
    y1 = bc.correlate(x, w[0], reduce="argmax")
    assert y1.shape == (3, 2)


def test_float32_stays_float32(rng):
    x, w = rand(rng, (2, 20, 20), np.float32), rand(rng, (3, 5, 5), np.float32)
    for method in METHODS:
        assert bc.correlate(x, w, method=method).dtype == np.float32
        assert bc.convolve(x, w, method=method, mode="same").dtype == np.float32


def test_float16_computes_in_float32(rng):
    x, w = rand(rng, (2, 10), np.float16), rand(rng, (3,), np.float16)
    for method in METHODS:
        y = check(x, w, method=method)
        assert y.dtype == np.float32


@pytest.mark.parametrize("method", METHODS)
def test_integers_exact(method, rng):
    x = rng.integers(0, 256, size=(3, 40, 40)).astype(np.uint8)
    w = rng.integers(-100, 100, size=(2, 7, 7)).astype(np.int64)
    y = bc.correlate(x, w, method=method, mode="same")
    from naive import naive_correlate

    np.testing.assert_array_equal(y, naive_correlate(x, w, mode="same"))
    assert y.dtype == np.float64


def test_plan_reuse(rng):
    x, w = rand(rng, (4, 16, 16), np.float32), rand(rng, (3, 5, 5), np.float32)
    for method in METHODS:
        p = bc.plan(((4, 16, 16), np.float32), w, mode="same", method=method)
        assert p.method == method
        for _ in range(2):
            x = rand(rng, (4, 16, 16), np.float32)
            np.testing.assert_allclose(
                p(x), bc.correlate(x, w, mode="same", method=method), rtol=1e-5, atol=1e-5
            )
        text = p.explain()
        assert method in text and "candidates" in text
        assert p.flops > 0 and p.peak_bytes > 0


def test_auto_picks_a_method_and_is_correct(rng):
    x, w = rand(rng, (2, 40, 40), np.float64), rand(rng, (2, 15, 15), np.float64)
    check(x, w, method="auto", mode="same")
    assert bc.plan(x, np.ones((2, 3, 3))).method in ("direct", "fft")
    assert bc.plan(x.astype(int), np.ones((2, 31, 31), int)).method == "direct"


# (fft: the 5 filters' spectra, 81 KiB, count in the budget too)
@pytest.mark.parametrize("method, budget", [("direct", 150_000), ("fft", 320_000)])
def test_small_memory_budget_chunks_and_agrees(method, budget, rng):
    x, w = rand(rng, (12, 40, 40), np.float64), rand(rng, (5, 4, 4), np.float64)
    p = bc.plan(x, w, mode="same", method=method, memory=budget)
    assert p.chunk[0] < 12 or p.chunk[1] < 5
    np.testing.assert_allclose(
        p(x), bc.correlate(x, w, mode="same", method=method), rtol=1e-12, atol=1e-12
    )


def test_noncontiguous_and_readonly_inputs(rng):
    base = rand(rng, (4, 30, 30), np.float64)
    x = base[::2, ::-1, 1::2]
    x.flags.writeable = False
    w = rand(rng, (2, 3, 3), np.float64)[:, ::-1]
    for method in METHODS:
        check(x, w, method=method, mode="same")


@pytest.mark.parametrize("method", METHODS)
def test_float32_contract_on_larger_inputs(method, rng):
    """FFT round-off grows with the transform's global norm; the contract bounds it by each
    pair's window sums. Long signals with short kernels and 8-bit-like offsets are the hard
    cases."""
    from naive import tolerance

    x = rng.standard_normal((2, 200_000))
    w = rng.standard_normal((2, 3))
    img = rng.integers(200, 256, size=(2, 160, 150)).astype(np.float64)
    tmpl = rng.standard_normal((3, 9, 9))
    for a, b in ((x, w), (img, tmpl)):
        ref = bc.correlate(a, b, method="direct", mode="same")  # float64
        S = bc.correlate(np.abs(a), np.abs(b), method="direct", mode="same")
        S = S.max(axis=tuple(range(2, S.ndim)), keepdims=True)
        y = bc.correlate(a.astype(np.float32), b.astype(np.float32), method=method, mode="same")
        assert y.dtype == np.float32
        assert np.all(np.abs(y - ref) <= tolerance(np.float32) * S)


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("padding,cval", [("constant", 0.0), ("constant", -1.0), ("wrap", 0)])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2), ((3, 2), (2, 1))])
def test_fft_overlap_save_tiles(mode, padding, cval, stride, dilation, rng):
    """Tiny forced tiles: many tiles per axis, uneven last tiles, halos over the padding."""
    x, w = rand(rng, (2, 2, 23, 19), np.float64), rand(rng, (3, 2, 4, 3), np.float64)
    with small_fft_tiles(64):
        p = bc.plan(
            x,
            w,
            "nchw,kchw->nkhw|hw",
            method="fft",
            mode=mode,
            stride=stride,
            dilation=dilation,
            padding=padding,
            cval=cval,
        )
        assert p.state.tiles is not None
        check(
            x,
            w,
            "nchw,kchw->nkhw|hw",
            method="fft",
            mode=mode,
            stride=stride,
            dilation=dilation,
            padding=padding,
            cval=cval,
        )


def test_fft_tiles_on_a_long_signal(rng):
    x, w = rand(rng, (2, 300_001), np.float64), rand(rng, (2, 9), np.float64)
    p = bc.plan(x, w, method="fft", mode="same")
    assert p.state.tiles is not None
    ref = bc.correlate(x, w, method="direct", mode="same")
    np.testing.assert_allclose(p(x), ref, rtol=0, atol=1e-11 * np.abs(x).max() * 9)


def traced_call(p, x):
    """``p(x)`` and the peak of NumPy's allocations (tracemalloc) beyond its result."""
    import tracemalloc

    tracemalloc.start()
    try:
        y = p(x)
        return y, tracemalloc.get_traced_memory()[1] - y.nbytes
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factor", [10, 40])
def test_memory_budget_is_respected(method, factor, rng):
    """Extra memory (tracemalloc: NumPy's allocations) stays under 1.25x the budget while
    the unreduced result is `factor` times the budget."""
    x, w = rng.standard_normal((40, 64, 64)), rng.standard_normal((30, 9, 9))
    budget = 40 * 30 * 64 * 64 * 8 // factor
    if method == "fft" and factor == 40:  # the 30 filters' spectra alone are 1.2 MiB (of 0.94)
        with pytest.raises(MemoryError, match="filter state and temporaries needed"):
            bc.plan(x, w, mode="same", reduce="max", memory=budget, method=method)
        return
    p = bc.plan(x, w, mode="same", reduce="max", memory=budget, method=method)
    y, extra = traced_call(p, x)
    assert extra < 1.25 * budget
    np.testing.assert_allclose(y, bc.correlate(x, w, mode="same", reduce="max"), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduce", [None, "max", "argmax", "mean"])
@pytest.mark.parametrize("method", ["fft", "direct"])
def test_seed000_shape_small_bank_fused_reduce(dtype, reduce, method):
    """Seed 000's layout at small scale: 3-D 'same' with a short last sliding axis (the
    FFT's real axis is then a middle one), a bank split into work units, reduce fused."""
    rng = np.random.default_rng(7)
    x = rng.random((3, 12, 10, 3)).astype(dtype)
    w = rng.random((9, 12, 10, 3)).astype(dtype)
    spec = "nhwd,khwd->nk|hwd" if reduce else "nhwd,khwd->nkhwd|hwd"
    y = check(x, w, spec, method=method, mode="same", reduce=reduce)
    assert y.dtype == (np.intp if reduce == "argmax" else dtype)


@pytest.mark.parametrize("reduce", [None, "max", "argmin"])
@pytest.mark.parametrize("spec", ["nhwd,khwd->nk|hwd", "nhwc,khwc->nk|hw", "nhw,khw->nk|hw"])
def test_fft_bank_split_into_many_work_units(monkeypatch, reduce, spec):
    """Tiny work units and two threads: every (batch, bank) unit lands in its place and
    is reduced on its own."""
    from batchconv.methods import fft

    monkeypatch.setattr(fft, "_GROUP_BYTES", 1)
    monkeypatch.setattr(fft, "_PARALLEL_BYTES", 0)
    rng = np.random.default_rng(8)
    xs = {"nhwd": (5, 9, 8, 3), "nhwc": (5, 9, 8, 2), "nhw": (5, 9, 8)}[spec.split(",")[0]]
    x = rng.standard_normal(xs)
    w = rng.standard_normal((7, 4, 3, *xs[3:]))
    if reduce is None:
        spec = spec.replace("->nk|", "->nk" + spec.split("|")[1] + "|")
    with bc.set_workers(2):
        check(x, w, spec, method="fft", mode="same", reduce=reduce)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_windows_on_zero_padding_only_are_exact_zeros(method, dtype, rng):
    """'full' with a large dilation: some windows hold only padding; they are exact 0."""
    x = (rng.standard_normal((2, 3)) * 100).astype(dtype)
    w = rng.standard_normal((2, 2)).astype(dtype)
    y = bc.correlate(x, w, mode="full", dilation=5, method=method)
    ref = naive_correlate(x, w, mode="full", dilation=5)
    assert np.array_equal(y == 0, ref == 0)
    assert (ref == 0).any()
    with small_fft_tiles(4):  # the overlap-save path too
        p = bc.plan(x, w, mode="full", dilation=5, method=method)
        assert method == "direct" or p.state.tiles is not None
        y = p(x)
    assert np.array_equal(y == 0, ref == 0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("reduce", [None, "max"])
def test_plan_runs_on_other_batch_sizes(method, reduce, rng):
    """A plan made for minibatches of 8 also takes the last, smaller one (and a larger one)."""
    w = rand(rng, (3, 5, 5), np.float64)
    p = bc.plan(((8, 20, 20), np.float64), w, method=method, mode="same", reduce=reduce)
    for n in (8, 3, 1, 13, 0):
        x = rand(rng, (n, 20, 20), np.float64)
        got = p(x)
        ref = naive_correlate(x, w, mode="same", reduce=reduce) if n else None
        assert got.shape == ((n, 3, 20, 20) if reduce is None else (n, 3))
        if n:
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match=r"only the batch axes \('n'\) may differ"):
        p(rand(rng, (8, 21, 20), np.float64))


@pytest.mark.parametrize("method", METHODS)
def test_repeat_calls_take_the_one_block_shortcut(method, rng):
    """A plan's second call with an input of the same layout runs the remembered one-block
    path (views made with as_strided): the same answers, NaN kept local (FFT), for new
    data, an input of another layout (batch innermost) and a read-only one."""
    w = rand(rng, (6, 5), np.float64)
    p = bc.plan(((3, 20, 18), np.float64), w, method=method, mode="same")
    x = rand(rng, (3, 20, 18), np.float64)
    np.testing.assert_allclose(p(x), naive_correlate(x, w, mode="same"), atol=1e-12)
    assert len([k for k in p._shortcuts if k[0] == "numpy"]) == 1
    for _ in range(2):
        x = rand(rng, (3, 20, 18), np.float64)
        x[1, 4, 7] = np.nan
        ref = naive_correlate(x, w, mode="same")
        np.testing.assert_allclose(p(x), ref, atol=1e-12)
        assert np.array_equal(np.isnan(p(x)), np.isnan(ref))
    q = bc.plan(((20, 18, 3), np.float64), w, "hwn,hw->nhw|hw", method=method)
    xt = np.ascontiguousarray(x.transpose(1, 2, 0))
    xt.flags.writeable = False
    for _ in range(2):
        np.testing.assert_allclose(q(xt), naive_correlate(x, w), atol=1e-12)
    ints = rng.integers(0, 9, (3, 20, 18))  # computed on a float64 copy: no shortcut
    for _ in range(2):
        np.testing.assert_allclose(p(ints), naive_correlate(ints, w, mode="same"), atol=1e-12)
    assert len([k for k in p._shortcuts if k[0] == "numpy"]) == 1


@pytest.mark.parametrize("method", MATRIX_METHODS)
def test_one_filter_inputs_whose_axes_share_memory(method, rng):
    """Inputs whose axes overlap in memory (a sliding_window_view, np.broadcast_to): taps
    that read the same address are still separate taps (the paired rows of the compiled
    kernel once merged them). Rows long enough not to be folded."""
    from numpy.lib.stride_tricks import sliding_window_view

    hankel = sliding_window_view(rng.standard_normal(560), 520)[None]  # strides (8, 8)
    rows = np.broadcast_to(rng.standard_normal((1, 1, 600)), (1, 4, 600))
    cube = np.broadcast_to(rng.standard_normal((1, 1, 6, 7)), (2, 5, 6, 7))
    for x, ws in ((hankel, (3, 3)), (rows, (3, 3)), (cube, (3, 3, 3))):
        check(x, rand(rng, ws, np.float64), method=method)


@pytest.mark.parametrize(
    "mode,stride,spec", [("same", 2, None), ("full", (1, 3), None), ("same", 1, "hwn,hw->hwn|hw")]
)
def test_one_filter_memory_budget(mode, stride, spec, rng):
    """One filter under a tight budget: the padded copy and the compiled kernel's own copy
    both count, so the chunks keep NumPy's allocations within 1.25x the budget; a plan
    keeps the kernel its chunks were sized for when the compiled kernels are switched
    afterwards."""
    from batchconv import compiled

    x, w = rng.standard_normal((40, 64, 64)), rng.standard_normal((9, 9))
    if spec:
        x = np.ascontiguousarray(x.transpose(1, 2, 0))
    for budget, switch in ((300_000, None), (1 << 20, None), (300_000, False)):
        p = bc.plan(x, w, spec, method="direct", mode=mode, stride=stride, memory=budget)
        old = compiled.USE_NUMBA
        compiled.USE_NUMBA = old if switch is None else switch
        try:
            p(x)  # compiles (or loads) the kernel: numba's allocations are not the plan's
            y, extra = traced_call(p, x)
        finally:
            compiled.USE_NUMBA = old
        assert extra < 1.25 * budget, (budget, extra)
        np.testing.assert_allclose(
            y, naive_correlate(x, w, spec, mode=mode, stride=stride), atol=1e-10
        )


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_one_operand_axes_are_summed_in_the_compute_dtype(method):
    """Letters of x only or w only are summed before the correlation, in the compute
    dtype: float32 for float16 inputs (a float16 sum of 3000 values near 1 was off by
    775 where the contract allows 0.07)."""
    rng = np.random.default_rng(0)
    x = (rng.random((2, 3000, 16)) + 1).astype(np.float16)
    w = rng.random((3, 4)).astype(np.float16)
    check(x, w, "nah,kh->nkh|h", method=method)
    x, w = x[:, 0], (rng.random((3, 3000, 4)) + 1).astype(np.float16)
    check(x, w, "nh,kah->nkh|h", method=method)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("metric", ["dot", "ssd", "ncc", "sad"])
@pytest.mark.parametrize("mode", ["same", "full"])
def test_x_only_letters_summed_with_their_padding(rng, method, metric, mode):
    """A letter of x only, not in the output, is summed (einsum's rule) over padded x:
    outside x each of its samples is cval, so their sum's padding is cval times their
    count (it was cval: off by up to (count - 1) * cval * sum(w))."""
    if metric == "sad" and method == "fft":
        pytest.skip("sad has no fft form")
    x, w = rand(rng, (3, 2, 6, 5), np.float64), rand(rng, (2, 3, 3), np.float64)
    spec = "anhw,khw->nkhw|hw"
    if metric == "dot":
        check(x, w, spec, method=method, mode=mode, cval=1.5)
    else:
        check_metric(x, w, spec, metric=metric, method=method, mode=mode, cval=1.5)
