"""The torch methods (issue #8): ``torch_direct`` (F.conv1d/2d/3d) and ``torch_fft``
(torch.fft), run here on CPU tensors, against the naive float64 loop with the same
accuracy contract as the NumPy methods; the CUDA-only pieces (TF32 scope, device
budget, OOM retry) through their device-independent logic. The same code runs on CUDA
tensors (tests/test_cuda.py, skipped without a GPU). Skipped without torch."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from conftest import rand
from helpers import check
from naive import naive_correlate, tolerance
from test_correlate import CASES, check_case

import batchconv as bc
from batchconv.problem import make_problem

torch = pytest.importorskip("torch")

METHODS = ["torch_direct", "torch_fft"]


def _tensors(f, x, w, spec=None, **kw):
    """Call ``f`` with CPU tensors, return NumPy (what ``check`` compares)."""
    y = f(
        torch.from_numpy(np.ascontiguousarray(x)),
        torch.from_numpy(np.ascontiguousarray(w)),
        spec,
        **kw,
    )
    assert isinstance(y, torch.Tensor) and y.device.type == "cpu"
    return y.numpy()


def _skip_unsupported(method, ndim):
    if method == "torch_direct" and ndim > 3:
        pytest.skip("torch convolutions take 1 to 3 sliding axes")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "dtype", [np.float64, np.float32, np.int32, np.complex128], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matrix(case, mode, dtype, method, rng):
    _, spec, xs, ws, _ = case
    _skip_unsupported(method, make_problem(xs, dtype, ws, dtype, spec).ndim)
    check_case(case, mode, dtype, method, rng, call=_tensors)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex64])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_convolve(mode, dtype, method, rng):
    x, w = rand(rng, (2, 3, 9, 8), dtype), rand(rng, (4, 3, 4, 3), dtype)
    check(x, w, "nchw,kchw->nkhw|hw", method=method, mode=mode, convolve=True, call=_tensors)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("stride", [1, 3, (2, 1)])
@pytest.mark.parametrize("dilation", [1, (1, 3)])
def test_stride_dilation(stride, dilation, mode, method, rng):
    x, w = rand(rng, (2, 13, 12), np.float64), rand(rng, (3, 3, 4), np.float64)
    check(x, w, method=method, mode=mode, stride=stride, dilation=dilation, call=_tensors)


@pytest.mark.parametrize("method", METHODS)
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
def test_padding(padding, cval, mode, method, rng):
    x, w = rand(rng, (2, 9, 8), np.float64), rand(rng, (2, 4, 3), np.float64)
    check(x, w, method=method, mode=mode, padding=padding, cval=cval, stride=2, call=_tensors)
    small = rand(rng, (2, 3), np.float64)  # pads wider than the input: numpy.pad's rule
    check(
        small,
        rand(rng, (2, 7), np.float64),
        method=method,
        mode=mode,
        padding=padding,
        cval=cval,
        call=_tensors,
    )


def test_complex_constant_padding(rng):
    x, w = rand(rng, (2, 9), np.complex128), rand(rng, (2, 4), np.complex128)
    for method in METHODS:
        check(x, w, method=method, mode="full", cval=1 - 2j, call=_tensors)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "argmax", "argmin"])
def test_reduce(reduce, method, rng):
    x, w = rand(rng, (3, 2, 9, 8), np.float64), rand(rng, (4, 2, 3, 3), np.float64)
    check(x, w, "nchw,kchw->nk|hw", method=method, mode="same", reduce=reduce, call=_tensors)
    check(x, w, "nchw,kchw->nkw|hw", method=method, reduce=reduce, stride=2, call=_tensors)


def test_argmax_ties_and_nan_as_numpy(rng):
    """First occurrence wins; NaN is the extreme (NumPy's rule), on the torch methods."""
    x = np.zeros((2, 12))
    x[0, 5] = np.nan
    w = np.ones((1, 3))
    for method in ("torch_direct", "direct"):
        for reduce in ("argmax", "argmin", "max", "min"):
            got = bc.correlate(
                torch.from_numpy(x), torch.from_numpy(w), reduce=reduce, method=method
            )
            want = bc.correlate(x, w, reduce=reduce, method="direct")
            np.testing.assert_array_equal(got.numpy(), want)


def test_callable_reduce_gets_tensors(rng):
    x, w = rand(rng, (3, 9, 8), np.float64), rand(rng, (2, 3, 3), np.float64)
    seen = []

    def l2(block, axis):
        seen.append(type(block))
        return (block**2).sum(dim=axis).sqrt()

    y = bc.correlate(
        torch.from_numpy(x), torch.from_numpy(w), "nhw,khw->nk|hw", method="torch_direct", reduce=l2
    )
    ref = np.sqrt((naive_correlate(x, w) ** 2).sum(axis=(2, 3)))
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10)
    assert seen and all(t is torch.Tensor for t in seen)
    # with auto, a callable keeps the NumPy methods (and NumPy blocks) on CPU tensors
    assert bc.plan(torch.from_numpy(x), w, "nhw,khw->nk|hw", reduce=l2).method in ("direct", "fft")


@pytest.mark.parametrize("method", METHODS)
def test_integers_exact(method, rng):
    x = rng.integers(0, 256, size=(3, 40, 40)).astype(np.uint8)
    w = rng.integers(-100, 100, size=(2, 7, 7)).astype(np.int64)
    y = bc.correlate(torch.from_numpy(x), torch.from_numpy(w), method=method, mode="same")
    assert y.dtype == torch.float64
    np.testing.assert_array_equal(y.numpy(), naive_correlate(x, w, mode="same"))


@pytest.mark.parametrize("method", METHODS)
def test_dtypes(method, rng):
    x, w = torch.randn(2, 20, 20), torch.randn(3, 5, 5)
    assert bc.correlate(x, w, method=method).dtype == torch.float32
    assert bc.correlate(x.half(), w.half(), method=method).dtype == torch.float32
    assert bc.correlate(x.to(torch.bfloat16), w, method=method).dtype == torch.float32
    assert bc.correlate(x.double(), w, method=method).dtype == torch.float64


@pytest.mark.parametrize("method", METHODS)
def test_nonfinite_stays_local(method, rng):
    x, w = rand(rng, (3, 30), np.float64), rand(rng, (2, 4), np.float64)
    x[1, 7], x[2, 20] = np.nan, np.inf
    y = bc.correlate(torch.from_numpy(x), torch.from_numpy(w), method=method, mode="same")
    ref = naive_correlate(x, w, mode="same")
    np.testing.assert_array_equal(np.isfinite(y.numpy()), np.isfinite(ref))
    ok = np.isfinite(ref)
    np.testing.assert_allclose(y.numpy()[ok], ref[ok], rtol=1e-12, atol=1e-12)
    w[0, 1] = np.nan  # a bad filter: its spectrum would spread it
    y = bc.correlate(torch.from_numpy(x), torch.from_numpy(w), method=method, mode="same")
    ref = naive_correlate(x, w, mode="same")
    np.testing.assert_array_equal(np.isnan(y.numpy()), np.isnan(ref))


@pytest.mark.parametrize("reduce", [None, "max", "argmin"])
@pytest.mark.parametrize("memory", [None, 12000])
def test_fft_plan_redoes_only_the_flagged_windows_and_bad_filters(reduce, memory, rng, monkeypatch):
    """The plan's NaN/Inf policy on torch_fft, as on NumPy's fft: the windows that cover
    a NaN of x are summed directly, the filters holding one are redone by the exact
    method as a bank of their own, the rest keeps the FFT's results; in one block or
    many, with a reduction or none."""
    from batchconv import planner
    from batchconv.methods import torch_fft

    x, w = rand(rng, (6, 2, 40), np.float64), rand(rng, (5, 2, 4), np.float64)
    x[4, 1, 17] = np.nan
    w[2, 0, 1] = np.inf
    ref = naive_correlate(x, w, "ncs,kcs->nks|s", mode="same")
    want = ref if reduce is None else bc.reduce.apply_reduce(reduce, ref, (2,))
    spec = "ncs,kcs->nks|s" if reduce is None else "ncs,kcs->nk|s"
    exact = torch_fft.exact_method(
        make_problem((6, 2, 40), np.float64, (5, 2, 4), np.float64, spec), "cpu"
    )
    calls, windows = [], []
    real_compute, real_values = exact.compute, planner.window_values
    monkeypatch.setattr(
        exact,
        "compute",
        lambda p, st, xc, k0, k1, **kw: (
            calls.append((xc.shape[0], k1 - k0)),
            real_compute(p, st, xc, k0, k1, **kw),
        )[1],
    )
    monkeypatch.setattr(
        planner,
        "window_values",
        lambda p, xb, wc, where, *a: (
            windows.append(int(where.sum())),
            real_values(p, xb, wc, where, *a),
        )[1],
    )
    plan = bc.plan(
        torch.from_numpy(x),
        torch.from_numpy(w),
        spec,
        method="torch_fft",
        mode="same",
        reduce=reduce,
        memory=memory,
    )
    y = plan(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(y[ok], want[ok], rtol=1e-10, atol=1e-10)
    assert sum(b * k for b, k in calls) == 6 * 1, calls  # the bad filter, every item
    assert set(windows) == {4}, windows  # the 4 windows over the NaN, per filter block


def test_4d_nonfinite_fallback(rng):
    x, w = rand(rng, (2, 5, 4, 4, 3), np.float64), rand(rng, (2, 2, 3, 2, 2), np.float64)
    x[0, 1, 1, 1, 1] = np.nan
    y = bc.correlate(torch.from_numpy(x), torch.from_numpy(w), method="torch_fft")
    ref = naive_correlate(x, w)
    np.testing.assert_array_equal(np.isnan(y.numpy()), np.isnan(ref))
    ok = np.isfinite(ref)
    np.testing.assert_allclose(y.numpy()[ok], ref[ok], rtol=1e-10, atol=1e-10)


def test_empty_axes():
    x, w = torch.ones(2, 0, 5), torch.ones(3, 2, 2)
    want = bc.correlate(x.numpy(), w.numpy(), mode="full", method="direct")
    for method in METHODS:
        got = bc.correlate(x, w, mode="full", method=method)
        assert tuple(got.shape) == want.shape
    y = bc.correlate(torch.ones(0, 8), torch.ones(2, 3), method="torch_direct")
    assert tuple(y.shape) == (0, 2, 6)
    z = bc.correlate(torch.ones(2, 8), torch.ones(2, 0), mode="same", method="torch_fft")
    assert tuple(z.shape) == (2, 2, 0)
    for method in METHODS:  # an empty bank; no channels (sums over nothing: zeros)
        assert tuple(bc.correlate(torch.ones(2, 9), torch.zeros(0, 3), method=method).shape) == (
            2,
            0,
            7,
        )
        for dt in (torch.float32, torch.complex64):
            y = bc.correlate(
                torch.ones(2, 0, 9, dtype=dt),
                torch.ones(3, 0, 3, dtype=dt),
                "ncl,kcl->nkl|l",
                method=method,
            )
            assert y.shape == (2, 3, 7) and y.dtype == dt and not y.abs().max()


def test_chunked_blocks_agree(rng):
    x, w = rand(rng, (12, 40, 40), np.float64), rand(rng, (5, 4, 4), np.float64)
    ref = naive_correlate(x, w, mode="same")
    for method in METHODS:
        p = bc.plan(torch.from_numpy(x), w, mode="same", method=method, memory=500_000)
        assert p.chunk[0] < 12 or p.chunk[1] < 5
        np.testing.assert_allclose(p(torch.from_numpy(x)).numpy(), ref, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.int16, torch.float16])
def test_converted_tensors_a_block_at_a_time(dtype, rng, monkeypatch):
    """A tensor that needs converting is converted a block at a time, as the budget
    counts it (it was converted whole before the block loop), and the blocks agree with
    the NumPy call."""
    from batchconv.backends import torch as torch_backend

    x = torch.from_numpy((rng.standard_normal((12, 40, 40)) * 20).astype(np.int16)).to(dtype)
    w = rand(rng, (5, 4, 4), np.float32)
    ref = bc.correlate(x.numpy(), w, mode="same", method="direct")
    sizes = []
    real = torch_backend.TorchBackend.batch_block

    def batch_block(self, p, xc, b0, b1):
        assert xc.dtype == dtype  # the canonical view keeps x's dtype
        block = real(self, p, xc, b0, b1)
        sizes.append(block.shape[0])
        return block

    monkeypatch.setattr(torch_backend.TorchBackend, "batch_block", batch_block)
    for method in METHODS:
        sizes.clear()
        p = bc.plan(x, w, mode="same", method=method, memory=300_000)
        y = p(x)
        assert p.chunk[0] < 12 and max(sizes) <= p.chunk[0], (p.chunk, sizes)
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-3)


def test_plans_on_tensors(rng):
    x, w = torch.randn(4, 16, 16), torch.randn(3, 5, 5)
    p = bc.plan(x, w, mode="same", method="torch_fft")
    assert p.device == "cpu" and "torch.fft" in p.explain()
    y = p(x)
    np.testing.assert_allclose(p(x[:2]).numpy(), y[:2].numpy(), rtol=1e-6, atol=1e-6)
    as_numpy = p(x.numpy())  # NumPy in, NumPy out
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_allclose(as_numpy, y.numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="only the batch axes"):
        p(torch.randn(4, 16, 15))
    with pytest.raises(TypeError, match="computes in float32"):
        p(x.double())
    q = bc.plan(((4, 16, 16), torch.float32), w, method="torch_direct")
    assert q.device == "cpu" and "conv2d" in q.explain()
    import pickle

    r = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(r(x).numpy(), y.numpy())


def test_auto_on_cpu_tensors_weighs_every_method(rng):
    x, w = torch.randn(4, 3, 40, 40), torch.randn(8, 3, 5, 5)
    p = bc.plan(x, w, "nchw,kchw->nkhw|hw")
    numpy_methods = {"direct", "fft", "winograd"}  # (a 5x5 kernel: winograd too)
    assert {c.method for c in p.candidates} == numpy_methods | {"torch_direct", "torch_fft"}
    assert bc.plan(x.numpy(), w.numpy(), "nchw,kchw->nkhw|hw").method in numpy_methods
    # a callable reduce keeps the NumPy methods (it gets NumPy blocks)
    plan_max = bc.plan(x, w, "nchw,kchw->nk|hw", reduce=np.max)
    assert {c.method for c in plan_max.candidates} == numpy_methods
    check(x.numpy(), w.numpy(), "nchw,kchw->nkhw|hw", method="auto", call=_tensors)


def test_errors():
    p = make_problem((2, 8), np.float32, (3, 3), np.float32, metric="sad")
    from batchconv.planner import choose_method

    with pytest.raises(ValueError, match="'torch_fft' cannot compute.*metric 'sad'"):
        choose_method(p, "torch_fft")
    q = make_problem((2, 5, 4, 4, 3), np.float32, (2, 2, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="4 sliding axes"):
        bc.correlate(torch.ones(2, 5, 4, 4, 3), torch.ones(2, 2, 3, 2, 2), method="torch_direct")
    assert choose_method(q, "auto", device="cpu")[0] in ("direct", "fft", "torch_fft")


def test_oom_retries_once_with_half_the_block(rng, monkeypatch):
    from batchconv.methods import torch_direct

    x, w = rand(rng, (8, 30), np.float64), rand(rng, (4, 5), np.float64)
    real = torch_direct.convolve_grouped  # the one convolution every path runs
    calls = []

    def flaky(p, st, grouped, k0, k1):
        calls.append((grouped.shape[0], k1 - k0))
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(p, st, grouped, k0, k1)

    monkeypatch.setattr(torch_direct, "convolve_grouped", flaky)
    y = bc.correlate(torch.from_numpy(x), torch.from_numpy(w), method="torch_direct")
    np.testing.assert_allclose(y.numpy(), naive_correlate(x, w), rtol=1e-12)
    assert calls[0] == (8, 4) and calls[1] == (4, 4)

    def always(p, st, grouped, k0, k1):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(torch_direct, "convolve_grouped", always)
    with pytest.raises(torch.OutOfMemoryError):  # never a partial result
        bc.correlate(torch.from_numpy(x), torch.from_numpy(w), method="torch_direct")


@pytest.mark.parametrize(
    "error",
    [RuntimeError("cuFFT error: CUFFT_ALLOC_FAILED"), RuntimeError("CUDA error: out of memory")],
)
def test_a_librarys_allocation_failure_is_out_of_memory(error, rng, monkeypatch):
    """cuFFT/cuBLAS/cuDNN failing to allocate a work area (a RuntimeError in torch) is
    retried with half the block, as the allocator's OutOfMemoryError is; another
    RuntimeError is not."""
    from batchconv.methods import torch_direct

    x, w = rand(rng, (8, 30), np.float64), rand(rng, (4, 5), np.float64)
    real = torch_direct.convolve_grouped
    calls = []

    def flaky(p, st, grouped, k0, k1):
        calls.append(grouped.shape[0])
        if len(calls) == 1:
            raise error
        return real(p, st, grouped, k0, k1)

    monkeypatch.setattr(torch_direct, "convolve_grouped", flaky)
    y = bc.correlate(torch.from_numpy(x), torch.from_numpy(w), method="torch_direct")
    np.testing.assert_allclose(y.numpy(), naive_correlate(x, w), rtol=1e-12)
    assert calls[:2] == [8, 4]

    def broken(p, st, grouped, k0, k1):
        calls.append(grouped.shape[0])
        raise RuntimeError("expected all tensors to be on the same device")

    calls.clear()
    monkeypatch.setattr(torch_direct, "convolve_grouped", broken)
    with pytest.raises(RuntimeError, match="same device"):
        bc.correlate(torch.from_numpy(x), torch.from_numpy(w), method="torch_direct")
    assert calls == [8]  # not retried


def test_tf32_is_scoped_off_and_restored():
    from batchconv.tensors import precise

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = "tf32"
    try:
        with precise("cuda:0"):
            assert conv.fp32_precision == "ieee" and matmul.fp32_precision == "ieee"
        assert conv.fp32_precision == "tf32"
        with bc.allow_tf32(), precise("cuda:0"):
            assert conv.fp32_precision == "tf32"
        with precise("cpu"):
            assert conv.fp32_precision == "tf32"
    finally:
        conv.fp32_precision, matmul.fp32_precision = before


def test_tf32_switches_already_off_are_not_touched(monkeypatch):
    """A switch that is off already is neither set nor restored (each costs a call)."""
    import types

    from batchconv.tensors import _tf32_switches, precise

    class Flag(types.SimpleNamespace):
        def __setattr__(self, name, value):
            writes.append((name, value))
            super().__setattr__(name, value)

    writes = []
    conv, matmul = Flag(fp32_precision="tf32"), Flag(fp32_precision="ieee")
    writes.clear()
    monkeypatch.setattr(torch.backends.cudnn, "conv", conv, raising=False)
    monkeypatch.setattr(torch.backends.cuda, "matmul", matmul)
    _tf32_switches.cache_clear()
    try:
        with precise("cuda:0"):
            assert conv.fp32_precision == "ieee" and matmul.fp32_precision == "ieee"
        assert conv.fp32_precision == "tf32"
        assert writes == [("fp32_precision", "ieee"), ("fp32_precision", "tf32")]
    finally:
        _tf32_switches.cache_clear()


def test_cuda_planning_without_a_gpu(monkeypatch):
    """The planner's CUDA rules, with torch.cuda.mem_get_info faked: the budget is half
    the free memory, only torch methods are candidates, a result larger than the free
    memory raises MemoryError before anything is allocated."""
    from batchconv.budget import check_result_fits as _check_result_fits
    from batchconv.planner import choose_method

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 << 30, 80 << 30))
    p = make_problem(
        (64, 3, 256, 256), np.float32, (16, 3, 16, 16), np.float32, "bchw,kchw->bkhw|hw"
    )
    name, reason, cands, budget = choose_method(p, device="cuda:0")
    assert budget == 4 << 30 and {c.method for c in cands} == {"torch_direct", "torch_fft"}
    assert choose_method(p, "fft", device="cuda:0")[0] == "torch_fft"
    with pytest.raises(ValueError, match="runs on the CPU"):
        choose_method(p, "sad_numba", device="cuda:0")
    q = make_problem(
        (64, 3, 256, 256),
        np.float32,
        (16, 3, 16, 16),
        np.float32,
        "bchw,kchw->bkhw|hw",
        metric="ncc",
    )
    assert {c.method for c in choose_method(q, device="cuda:0")[2]} == {"torch_direct", "torch_fft"}
    sad = make_problem(
        (64, 3, 256, 256),
        np.float32,
        (3, 16, 16),
        np.float32,
        "bchw,chw->bhw|hw",
        metric="sad",
        stride=2,
    )
    assert choose_method(sad, device="cuda:0")[0] == "torch_direct"
    assert choose_method(sad, "direct", device="cuda:0")[0] == "torch_direct"
    with pytest.raises(ValueError, match="no FFT form"):
        choose_method(sad, "fft", device="cuda:0")
    # a callable reduce on the GPU gets tensor blocks from the torch methods
    mine = make_problem(
        (64, 3, 256, 256),
        np.float32,
        (16, 3, 16, 16),
        np.float32,
        "bchw,kchw->bk|hw",
        reduce=lambda block, axis: block.amax(dim=axis),
    )
    assert {c.method for c in choose_method(mine, device="cuda:0")[2]} == {
        "torch_direct",
        "torch_fft",
    }
    big = make_problem(
        (4096, 1, 1024, 1024),
        np.float32,
        (16, 1, 3, 3),
        np.float32,
        "bchw,kchw->bkhw|hw",
        mode="same",
    )
    with pytest.raises(MemoryError, match="needs"):
        _check_result_fits(big, "cuda:0")


TORCH_EXAMPLES = 800 if __import__("os").environ.get("HYPOTHESIS_PROFILE") == "long" else 150


def test_random_problems_on_torch_methods():
    """test_properties' random problems (specs, shapes, modes, strides, dilations,
    paddings, dtypes, reductions, convolve) on both torch methods."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from test_properties import problems, random_arrays

    @settings(max_examples=TORCH_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
    @given(problems(), st.sampled_from(METHODS))
    def run(pr, method):
        check(
            *random_arrays(pr),
            pr["spec"],
            method=method,
            mode=pr["mode"],
            stride=pr["stride"],
            dilation=pr["dilation"],
            padding=pr["padding"],
            cval=pr["cval"],
            reduce=pr["reduce"],
            convolve=pr["convolve"],
            call=_tensors,
        )

    run()


def test_cuda_fft_lengths_are_rounded_and_still_exact(rng, monkeypatch):
    """On CUDA the FFT lengths are 2^a 3^b (a small set, so cuFFT plans are reused):
    wrap-free for every mode, 144 for seed 000's 'same'; the same code run with the
    CUDA lengths on CPU tensors keeps the contract."""
    from batchconv.methods import torch_fft

    lengths = {torch_fft.cufft_len(n) for n in range(1, 4097)}
    assert len(lengths) < 60
    for n in range(1, 3000):
        m = torch_fft.cufft_len(n)
        assert m >= n and m < 1.5 * n + 1
        while m % 2 == 0:
            m //= 2
        while m % 3 == 0:
            m //= 3
        assert m == 1
    seed000 = make_problem(
        (2, 96, 96, 3), np.float32, (3, 96, 96, 3), np.float32, "nhwd,khwd->nkhwd|hwd", mode="same"
    )
    assert torch_fft.fft_shape(seed000, "cuda:0")[:2] == (144, 144)
    monkeypatch.setattr(torch_fft, "_rounded_sizes", lambda device: True)
    for mode in ("valid", "same", "full"):
        x, w = rand(rng, (3, 2, 23, 37), np.float32), rand(rng, (4, 2, 5, 11), np.float32)
        check(
            x, w, "nchw,kchw->nkhw|hw", method="torch_fft", mode=mode, stride=(1, 2), call=_tensors
        )
        plan = bc.plan(
            torch.from_numpy(x),
            torch.from_numpy(w),
            "nchw,kchw->nkhw|hw",
            method="torch_fft",
            mode=mode,
        )
        assert all(n == torch_fft.cufft_len(n) for n in plan.state.fft_shape)


def test_tf32_scope_with_the_older_flags(monkeypatch):
    """Where torch lacks the fp32_precision settings, the allow_tf32 flags are used."""
    import types

    from batchconv.tensors import _tf32_switches, precise

    monkeypatch.setattr(torch.backends.cudnn, "conv", types.SimpleNamespace(), raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True, raising=False)
    flags = types.SimpleNamespace(allow_tf32=True)
    monkeypatch.setattr(torch.backends.cuda, "matmul", flags)
    _tf32_switches.cache_clear()  # found once per process
    try:
        with precise("cuda:0"):
            assert torch.backends.cudnn.allow_tf32 is False and flags.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is True and flags.allow_tf32 is True
    finally:
        _tf32_switches.cache_clear()


@pytest.mark.parametrize(
    "spec,xs,ws,kw",
    [
        ("nchw,kchw->nkhw|hw", (3, 4, 12, 11), (5, 4, 3, 3), dict(mode="same")),
        ("nhwc,hwco->nhwo|hw", (2, 12, 11, 4), (3, 3, 4, 5), dict(stride=2)),
        ("nchw,chw->nchw|hw", (2, 3, 9, 8), (3, 3, 2), dict(dilation=2)),  # groups
        ("nl,kl->nkl|l", (4, 50), (3, 7), dict(mode="same")),
        ("nchwd,kchwd->nkhwd|hwd", (2, 2, 7, 6, 5), (3, 2, 3, 3, 3), dict(mode="same")),
        ("hwn,hw->hwn|hw", (20, 18, 3), (5, 5), dict()),  # seed 001's layout
    ],
)
def test_repeated_calls_take_the_one_call_path(spec, xs, ws, kw, rng, monkeypatch):
    """torch_direct plans remember, per input layout, the convolution's input and result
    as strided views: the second call with that layout skips the generic block code and
    gives the same answer (also for channels-last and sliced inputs)."""
    from batchconv import tensors

    x, w = rand(rng, xs, np.float32), rand(rng, ws, np.float32)
    want = naive_correlate(x, w, spec, **kw)
    plan = bc.plan(torch.from_numpy(x), torch.from_numpy(w), spec, method="torch_direct", **kw)
    calls = []  # the generic block code's entry: it should run once per layout
    real = tensors.canonical_x
    monkeypatch.setattr(tensors, "canonical_x", lambda *a, **k: calls.append(1) or real(*a, **k))
    layouts = [torch.from_numpy(x)]
    if len(xs) == 4:
        layouts.append(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))
    wide = torch.zeros(*xs[:-1], 2 * xs[-1])
    wide[..., ::2] = torch.from_numpy(x)
    layouts.append(wide[..., ::2])  # a strided slice of a larger tensor
    for xt in layouts:
        for _ in range(3):
            y = plan(xt.requires_grad_(False))
            np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    assert len(calls) == len(layouts) == len(plan._shortcuts)
    g = torch.from_numpy(x).requires_grad_()
    with torch.no_grad():
        assert not plan(g).requires_grad and not plan(g).requires_grad
    with pytest.raises(TypeError, match="requires grad"):
        plan(g)
    again = __import__("pickle").loads(__import__("pickle").dumps(plan))
    np.testing.assert_allclose(
        again(torch.from_numpy(x)).numpy(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max()
    )


def test_one_call_path_falls_back_when_the_output_layout_differs(rng):
    x, w = rand(rng, (2, 3, 10, 9), np.float64), rand(rng, (4, 3, 3, 3), np.float64)
    plan = bc.plan(
        torch.from_numpy(x), torch.from_numpy(w), "nchw,kchw->nkhw|hw", method="torch_direct"
    )
    plan(torch.from_numpy(x))
    ((layout, (into, _, out, call, finish)),) = plan._shortcuts.items()
    plan._shortcuts[layout] = (into, (1, 1, 1, 1), out, call, finish)  # cuDNN's other
    np.testing.assert_allclose(
        plan(torch.from_numpy(x)).numpy(), naive_correlate(x, w, "nchw,kchw->nkhw|hw"), rtol=1e-12
    )


def test_oom_on_the_one_call_path_retries_in_blocks(rng, monkeypatch):
    """An allocator OutOfMemoryError in a remembered one-call path goes to the block loop
    with half the block (not the whole block again first)."""
    from batchconv.methods import torch_direct

    x, w = rand(rng, (8, 30), np.float64), rand(rng, (4, 5), np.float64)
    plan = bc.plan(torch.from_numpy(x), torch.from_numpy(w), method="torch_direct")
    plan(torch.from_numpy(x))
    assert len(plan._shortcuts) == 1
    real = torch_direct.convolve_grouped
    calls = []

    def flaky(p, st, grouped, k0, k1):
        calls.append(grouped.shape[0])
        if len(calls) == 1:  # the one-call path
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(p, st, grouped, k0, k1)

    monkeypatch.setattr(torch_direct, "convolve_grouped", flaky)
    np.testing.assert_allclose(plan(torch.from_numpy(x)).numpy(), naive_correlate(x, w), rtol=1e-12)
    assert calls == [8, 4, 4]


@pytest.mark.parametrize("n", [1, 3])
def test_channels_last_input_reaches_the_convolution_as_such(n, rng):
    """An NHWC input (batch one included, where a reshape may give the batch axis any
    stride) reaches the convolution as a channels-last tensor, the unused tail of a stride
    not sliced off: oneDNN/cuDNN then return channels-last, and the NHWC result is that
    output's view (7x7 stem, one image: 4.5 -> 1.6 ms on the CPU, the copy gone)."""
    import torch.nn.functional as F

    from batchconv.methods import torch_direct
    from batchconv.tensors import canonical_x

    x = torch.from_numpy(rand(rng, (n, 24, 23, 3), np.float32))
    w = torch.from_numpy(rand(rng, (7, 7, 3, 8), np.float32))
    p = bc.plan(x, w, "nhwc,hwco->nhwo|hw", stride=2, method="torch_direct")
    grouped = torch_direct.grouped_input(p.problem, p.state, canonical_x(p.problem, x))
    assert tuple(grouped.shape) == (n, 3, 24, 23)  # no slice: the convolution skips it
    assert grouped.is_contiguous(memory_format=torch.channels_last)
    assert grouped.stride(0) == 24 * 23 * 3
    y = p(x)
    ref = F.conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), stride=2)
    torch.testing.assert_close(y, ref.permute(0, 2, 3, 1), rtol=1e-5, atol=1e-4)
    ((_, y_strides, _, _, _),) = p._shortcuts.values()
    assert y_strides[1] == 1  # the convolution's output is channels-last


def test_nchw_shortcut_makes_no_views(rng):
    """NCHW in and out: the recorded shortcut is the convolution alone."""
    x = torch.from_numpy(rand(rng, (2, 3, 10, 9), np.float32))
    w = torch.from_numpy(rand(rng, (4, 3, 3, 3), np.float32))
    p = bc.plan(x, w, "nchw,kchw->nkhw|hw", method="torch_direct")
    first, again = p(x), p(x)
    ((into, _, out, _, _),) = p._shortcuts.values()
    assert into is None and out is None
    torch.testing.assert_close(first, again)
    ref = naive_correlate(x.double().numpy(), w.double().numpy(), "nchw,kchw->nkhw|hw")
    np.testing.assert_allclose(again.numpy(), ref, rtol=1e-5, atol=1e-4)


def test_overlapping_tf32_scopes_restore_once_at_the_end():
    """The switches are the process's: with two scopes open at once (two threads), the
    first to leave must not turn TF32 back on under the other; the last restores it."""
    from batchconv.tensors import precise

    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = "tf32"
    try:
        with contextlib.ExitStack() as outer:
            with contextlib.ExitStack() as first:
                first.enter_context(precise("cuda:0"))
                outer.enter_context(precise("cuda:0"))  # a second call, started later
            assert conv.fp32_precision == "ieee"  # the first left; the second still runs
        assert conv.fp32_precision == "tf32"
    finally:
        conv.fp32_precision = before


@pytest.mark.parametrize("method", ["torch_direct", "torch_fft"])
def test_numpy_arrays_torch_cannot_share(method, rng):
    """NumPy inputs that torch.from_numpy refuses (a reversed view, big-endian bytes, a
    read-only array) are copied, not refused, when a torch method runs them."""
    x = rand(rng, (2, 3, 12, 11), np.float64)
    w = rand(rng, (4, 3, 3, 3), np.float64)
    spec = "nchw,kchw->nkhw|hw"
    ref = naive_correlate(x, w[..., ::-1], spec)
    frozen = x.copy()
    frozen.flags.writeable = False
    record = np.zeros(x.shape, dtype=[("a", "f8"), ("b", "f4")])  # strides of 12 bytes
    record["a"] = x
    for xs, ws in (
        (x, w[..., ::-1]),
        (x.astype(">f8"), w[..., ::-1].astype(">f8")),
        (frozen, np.ascontiguousarray(w[..., ::-1])),
        (record["a"], np.ascontiguousarray(w[..., ::-1])),
    ):
        y = bc.correlate(xs, ws, spec, method=method)
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_cuda_budget_counts_the_allocators_cache(monkeypatch):
    """Memory torch caches but does not use is free to our tensors: the budget is half
    of what mem_get_info reports plus that cache."""
    from batchconv.tensors import device_memory

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 30, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 5 << 30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 3 << 30)
    assert device_memory("cuda:0") == (3 << 29, 3 << 30)


def test_values_near_the_float_limit_take_the_exact_route(rng):
    """An FFT's zero-frequency term is the sum of the input: for values near float32's
    limit it overflows and the transform's outputs are NaN. The finiteness check (a sum
    that overflows counts as not finite) sends such input to the exact route."""
    x = torch.full((2, 3, 20, 20), 1e36)
    w = torch.from_numpy(rand(rng, (4, 3, 3, 3), np.float32))
    y = bc.correlate(x, w, "nchw,kchw->nkhw|hw", method="torch_fft")
    ref = naive_correlate(x.double().numpy(), w.double().numpy(), "nchw,kchw->nkhw|hw")
    assert bool(torch.isfinite(y).all())
    np.testing.assert_allclose(y.double().numpy(), ref, rtol=1e-5)


@pytest.mark.parametrize(
    "spec,xs,ws,dtype",
    [
        ("nchw,kchw->nkhw|hw", (2, 3, 20, 18), (7, 3, 5, 4), np.float64),  # channels
        ("nhw,khw->nkhw|hw", (2, 20, 18), (7, 5, 4), np.float32),  # one channel
        ("nchw,kchw->nkhw|hw", (2, 3, 20, 18), (7, 3, 5, 4), np.complex128),
    ],
)
def test_torch_filters_transformed_in_groups(spec, xs, ws, dtype, rng):
    """torch_fft transforms the filters a group at a time (a 16th of the budget), each
    written straight into the spectra's layout: the same answer as one group."""
    x, w = torch.from_numpy(rand(rng, xs, dtype)), torch.from_numpy(rand(rng, ws, dtype))
    whole = bc.plan(x, w, spec, method="torch_fft")(x)
    grouped = bc.plan(x, w, spec, method="torch_fft", memory="1MB")  # 1-3 filters a group
    torch.testing.assert_close(grouped(x), whole)


@pytest.mark.parametrize(
    "spec,xs,ws,kw",
    [
        ("hwn,hw->hwn|hw", (12, 11, 3), (3, 4), dict(convolve=True)),  # seed 001's layout
        ("nchw,kchw->nkhw|hw", (2, 3, 12, 11), (4, 3, 3, 3), dict(mode="full", stride=2)),
        ("nc,kc->nkc|c", (3, 40), (2, 7), dict(mode="same")),
    ],
)
def test_fft_shortcut(spec, xs, ws, kw, rng):
    """A torch_fft plan's repeat call is the recorded shortcut (a view of x, the
    method's compute, a view of its output); it gives the general route's answer, and a
    NaN in x (the exact route, another output layout) falls back to that route."""
    x, w = rand(rng, xs, np.float64), rand(rng, ws, np.float64)
    convolve = kw.pop("convolve", False)
    p = bc.plan(
        torch.from_numpy(x), torch.from_numpy(w), spec, method="torch_fft", convolve=convolve, **kw
    )
    ref = naive_correlate(x, w, spec, convolve=convolve, **kw)
    first = p(torch.from_numpy(x))
    assert len(p._shortcuts) == 1
    again = p(torch.from_numpy(x))
    np.testing.assert_allclose(again.numpy(), ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())
    torch.testing.assert_close(first, again)
    bad = x.copy()
    bad.flat[len(bad.flat) // 2] = np.nan
    y = p(torch.from_numpy(bad)).numpy()
    want = naive_correlate(bad, w, spec, convolve=convolve, **kw)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(y[ok], want[ok], rtol=1e-10, atol=1e-10 * np.abs(ref).max())


def test_fft_shortcut_learned_from_a_finite_call_and_never_computes_twice(rng, monkeypatch):
    """A NaN in x (the exact route) neither records its output layout as the shortcut's
    nor makes a call compute twice: alternating NaN and finite inputs, each call runs
    one route once."""
    from batchconv.methods import torch_fft

    x = rand(rng, (2, 3, 12, 11), np.float64)
    w = rand(rng, (4, 3, 3, 3), np.float64)
    bad = x.copy()
    bad[1, 2, 5, 5] = np.nan
    spec = "nchw,kchw->nkhw|hw"
    p = bc.plan(torch.from_numpy(x), torch.from_numpy(w), spec, method="torch_fft", mode="same")
    p(torch.from_numpy(bad))
    assert not p._shortcuts  # learned from a finite call only
    p(torch.from_numpy(x))
    assert len(p._shortcuts) == 1
    routes = []
    for name in ("_spectral", "_exact"):
        real = getattr(torch_fft, name)
        monkeypatch.setattr(
            torch_fft, name, lambda *a, real=real, name=name: (routes.append(name), real(*a))[1]
        )
    for data in (bad, x, bad, x):
        y = p(torch.from_numpy(data)).numpy()
        want = naive_correlate(data, w, spec, mode="same")
        np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
        np.testing.assert_allclose(
            y[~np.isnan(y)], want[~np.isnan(want)], rtol=1e-10, atol=1e-10 * np.nanmax(np.abs(want))
        )
    assert routes == ["_exact", "_spectral", "_exact", "_spectral"]


@pytest.mark.parametrize("cval", [np.nan, np.inf])
def test_fft_with_a_nonfinite_padding_value(cval, rng):
    """A NaN or Inf cval reaches only the windows it pads (the exact route), not every
    output of the item as it would through an FFT."""
    x = rand(rng, (2, 3, 12, 11), np.float64)
    w = rand(rng, (4, 3, 3, 3), np.float64)
    spec = "nchw,kchw->nkhw|hw"
    y = bc.correlate(
        torch.from_numpy(x), torch.from_numpy(w), spec, method="torch_fft", mode="same", cval=cval
    ).numpy()
    want = naive_correlate(x, w, spec, mode="same", cval=cval)
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(want))
    ok = np.isfinite(want)
    np.testing.assert_allclose(y[ok], want[ok], rtol=1e-10, atol=1e-10 * np.abs(want[ok]).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "x_shape, w_shape, mode, stride, dilation",
    [
        ((3, 2, 20, 17), (4, 2, 17, 15), "valid", 1, 1),
        ((3, 2, 20, 17), (4, 2, 15, 7), "valid", 2, (1, 2)),
        ((2, 3, 30), (4, 3, 25), "valid", 2, 1),
        ((2, 3, 12, 12, 12), (2, 3, 10, 9, 10), "valid", 1, 1),
        ((3, 2, 14, 15), (4, 2, 13, 14), (1, 1), 1, 1),
    ],
)
def test_kernel_larger_than_output(rng, dtype, x_shape, w_shape, mode, stride, dilation):
    """A kernel larger than its output (a backward's filter gradient) runs through
    torch's filter-gradient kernel with the roles swapped: the float64 loop's values."""
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    s = "hwd"[: len(x_shape) - 2]
    spec = f"nc{s},kc{s}->nk{s}|{s}"

    def tensors(f, x, w, spec, **kw):
        return f(torch.from_numpy(x), torch.from_numpy(w), spec, **kw).numpy()

    if isinstance(mode, tuple):  # explicit padding (as a backward pass gives it)
        pad = ((0, 0), (0, 0), *(mode,) * (len(x_shape) - 2))
        want = check(np.pad(x, pad), w, spec, method="torch_direct", call=tensors)
        got = tensors(bc.correlate, x, w, spec, mode=mode, method="torch_direct")
        bound = np.abs(x).max() * np.abs(w).reshape(len(w), -1).sum(axis=1).max()  # >= S
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(dtype) * bound)
        return
    check(
        x, w, spec, method="torch_direct", call=tensors, mode=mode, stride=stride, dilation=dilation
    )
