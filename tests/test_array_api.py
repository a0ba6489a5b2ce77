"""JAX arrays and array-api-strict arrays in, arrays of the same library out (issue 21,
point 4): the portable engine (``portable/``) on the backend protocol (``backends/``),
against the float64 loop under the brief's accuracy contract, for every metric, reduce,
mode, padding, stride/dilation and dtype rule; plus the core, metric and property
suites rerun on each library in a subprocess (``helpers.ARRAYS``), subsampled.

JAX runs with x64 on (``jax_enable_x64``), as the brief's float64 rules need; the
behaviour without it is tested in a subprocess. JAX starts its threads when its first
array is made, and later tests of the suite fork (Dask's processes scheduler, ...), which
JAX warns may deadlock: so the JAX cases run in a subprocess of their own
(:func:`test_jax_cases_in_a_subprocess`), never in the suite's process.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import rand
from helpers import check, check_metric, run_suites
from naive import naive_correlate

import batchconv as bc
from batchconv.backends import backend_of
from batchconv.backends.array_api import device_of, namespace_of
from batchconv.portable import FFT_FLOP_WEIGHT, PortablePlan

LIBRARIES = ["jax", "array_api_strict"]
# set in the subprocess that runs the JAX cases (test_jax_cases_in_a_subprocess)
JAX_HERE = os.environ.get("BATCHCONV_TEST_JAX_HERE") == "1"


def _namespace(name: str):
    if name == "jax":
        if not JAX_HERE:
            pytest.skip("JAX cases run in a subprocess (test_jax_cases_in_a_subprocess)")
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)  # the brief's float64 rules
        return pytest.importorskip("jax.numpy")
    return pytest.importorskip(name)


@pytest.fixture(params=LIBRARIES)
def xp(request):
    return _namespace(request.param)


def _to_numpy(a) -> np.ndarray:
    return np.from_dlpack(a)


def _caller(xp):
    """A ``call`` for helpers.check: x and w as ``xp`` arrays; the result checked to be
    one, on x's device, and returned as NumPy."""

    def call(f, x, w, spec=None, **kw):
        xa, wa = xp.asarray(np.ascontiguousarray(x)), xp.asarray(np.ascontiguousarray(w))
        y = f(xa, wa, spec, **kw)
        assert namespace_of(y) is xp, type(y)
        assert device_of(y) == device_of(xa)
        return _to_numpy(y)

    return call


# the result's type and device; correlate, convolve and plan


def test_result_type_device_and_values(xp, rng):
    x, w = rand(rng, (3, 12, 10), np.float32), rand(rng, (2, 4, 3), np.float32)
    call = _caller(xp)
    for method in ("direct", "fft", "auto"):
        y = check(x, w, method=method, mode="same", call=call)
        assert y.dtype == np.float32
        check(x, w, method=method, mode="full", convolve=True, call=call)
    plan = bc.plan(xp.asarray(x), xp.asarray(w), mode="same")
    assert isinstance(plan, PortablePlan)
    y = plan(xp.asarray(x))
    assert namespace_of(y) is xp and y.dtype == xp.float32
    np.testing.assert_allclose(_to_numpy(y), bc.correlate(x, w, mode="same"), atol=1e-4)
    assert tuple(plan(xp.asarray(x[:1])).shape) == (1, 2, 12, 10)  # another batch size


def test_numpy_filters_and_plans_from_signatures(xp, rng):
    """x's library decides: NumPy filters move to x's library once; a ``(shape, dtype)``
    plan with filters of a library computes there; NumPy x with such filters is the
    NumPy path (the filters read through DLPack)."""
    x, w = rand(rng, (2, 9, 8), np.float64), rand(rng, (3, 3, 2), np.float64)
    ref = naive_correlate(x, w)
    y = bc.correlate(xp.asarray(x), w)
    assert namespace_of(y) is xp
    np.testing.assert_allclose(_to_numpy(y), ref, atol=1e-12)
    plan = bc.plan(((2, 9, 8), np.float64), xp.asarray(w))
    assert isinstance(plan, PortablePlan)
    np.testing.assert_allclose(_to_numpy(plan(xp.asarray(x))), ref, atol=1e-12)
    out = bc.correlate(x, xp.asarray(w))
    assert type(out) is np.ndarray
    np.testing.assert_allclose(out, ref, atol=1e-12)


# the brief's options, against the loop


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_modes_paddings_strides_dilations(xp, method, rng):
    x, w = rand(rng, (2, 11, 9), np.float64), rand(rng, (2, 3, 4), np.float64)
    call = _caller(xp)
    for mode, stride, dilation in (("valid", 1, 1), ("same", 2, (1, 2)), ("full", (3, 1), 2)):
        for padding, cval in (("constant", 0.0), ("constant", 1.5), ("reflect", 0.0)):
            kw = dict(mode=mode, stride=stride, dilation=dilation, padding=padding, cval=cval)
            check(x, w, method=method, call=call, **kw)
    for padding in ("symmetric", "edge", "wrap"):
        check(x, w, method=method, mode="same", padding=padding, call=call)
    check(x[:, :3], w, method=method, mode="full", padding="wrap", call=call)  # wider kernel


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_spec_roles(xp, method, rng):
    call = _caller(xp)
    for spec, xs, ws in (
        ("nhwc,hwco->nhwo|hw", (2, 7, 6, 3), (3, 2, 3, 4)),  # channels, TensorFlow layout
        ("ngchw,kgchw->nkghw|hw", (2, 2, 3, 6, 6), (2, 2, 3, 3, 3)),  # paired and summed
        ("nchw,hw->nhw|hw", (2, 3, 6, 6), (3, 3)),  # an x-only summed axis
        ("nhw,khw->hkwn|hw", (2, 7, 6), (3, 2, 3)),  # output order
        ("nhwd,khwd->nk|hwd", (2, 5, 4, 3), (2, 5, 4, 3)),  # 3-D, reduced
    ):
        check(
            rand(rng, xs, np.float32),
            rand(rng, ws, np.float32),
            spec,
            method=method,
            mode="same",
            call=call,
        )


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "argmax", "argmin"])
def test_every_reduce(xp, reduce, rng):
    x, w = rand(rng, (3, 2, 9, 8), np.float64), rand(rng, (4, 2, 3, 3), np.float64)
    call = _caller(xp)
    for method in ("direct", "fft"):
        check(x, w, "nchw,kchw->nk|hw", method=method, mode="same", reduce=reduce, call=call)
        check(x, w, "nchw,kchw->nkw|hw", method=method, reduce=reduce, stride=2, call=call)


def test_reduce_callable_gets_the_libraries_blocks(xp, rng):
    x, w = rand(rng, (3, 9, 8), np.float64), rand(rng, (2, 3, 3), np.float64)
    seen = []

    def l2(block, axis):
        seen.append(namespace_of(block))
        return xp.sqrt(xp.sum(block * block, axis=axis))

    for method in ("direct", "fft"):
        y = bc.correlate(xp.asarray(x), xp.asarray(w), "nhw,khw->nk|hw", reduce=l2, method=method)
        ref = np.sqrt((naive_correlate(x, w) ** 2).sum(axis=(2, 3)))
        np.testing.assert_allclose(_to_numpy(y), ref, rtol=1e-12)
    assert seen and all(ns is xp for ns in seen)


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_complex_dot(xp, dtype, rng):
    x, w = rand(rng, (2, 9, 8), dtype), rand(rng, (3, 3, 4), dtype)
    call = _caller(xp)
    for method in ("direct", "fft"):
        check(x, w, method=method, mode="same", call=call)  # w conjugated
        check(x, w, method=method, mode="full", convolve=True, call=call)  # not conjugated
        check(x, w, method=method, mode="same", padding="reflect", cval=0, call=call)


def test_integer_inputs_exact(xp, rng):
    x = rng.integers(0, 256, size=(3, 20, 20)).astype(np.uint8)
    w = rng.integers(-100, 100, size=(2, 5, 5)).astype(np.int32)
    call = _caller(xp)
    for method in ("direct", "fft", "auto"):
        y = check(x, w, method=method, mode="same", call=call)  # exact: array_equal
        assert y.dtype == np.float64
    plan = bc.plan(xp.asarray(x), xp.asarray(w))
    assert plan.method == "direct" and "integer inputs" in plan.explain()
    for metric in ("ssd", "sad"):
        check_metric(x, w, metric=metric, method="auto", mode="same", call=call)


def test_integer_mean_is_correctly_rounded(xp, rng):
    """The mean of integer inputs' exact sums is their correctly rounded quotient, as
    NumPy's: XLA turns a division by a constant or a broadcast scalar into a product
    with the reciprocal, one ulp off (-350 / 3 under jax.jit, 90134 / 3 even eagerly:
    ...664 instead of ...668; found by the property suite on JAX)."""
    spec = "cgh,kcgh->kg|h"
    call = _caller(xp)
    x = np.array([[[-100, -50, -200]]], np.int16)
    w = np.array([[[[1]]]], np.int16)
    for method in ("direct", "fft"):
        y = check(x, w, spec, method=method, reduce="mean", call=call)  # exact
        assert y[0, 0] == -350 / 3
        plan = bc.plan(xp.asarray(x), xp.asarray(w), spec, method=method, reduce="mean")
        assert _to_numpy(plan(xp.asarray(x)))[0, 0] == -350 / 3
    for _ in range(10):  # two outputs, each the mean of three exact integers
        x = rng.integers(-300, 300, (1, 2, 1)).astype(np.int16)
        w = rng.integers(-300, 300, (1, 1, 2, 3)).astype(np.int16)
        for method in ("direct", "fft"):
            check(x, w, spec, method=method, mode="full", reduce="mean", call=call)


@pytest.mark.parametrize("metric", ["ssd", "sad", "ncc", "cosine"])
def test_every_metric(xp, metric, rng):
    call = _caller(xp)
    methods = ["direct"] if metric == "sad" else ["direct", "fft"]
    for method in methods:
        for dtype in (np.float64, np.float32):
            x, w = rand(rng, (2, 2, 13, 11), dtype), rand(rng, (3, 2, 3, 4), dtype)
            for mode, stride, dilation, padding, cval in (
                ("valid", 1, 1, "constant", 0.0),
                ("same", (2, 3), 1, "reflect", 0.0),
                ("full", 1, (2, 1), "constant", 2.5),
                ("same", 2, 2, "wrap", 0.0),
            ):
                kw = dict(mode=mode, stride=stride, dilation=dilation, padding=padding, cval=cval)
                check_metric(
                    x, w, "nchw,kchw->nkhw|hw", metric=metric, method=method, call=call, **kw
                )
        x, w = rand(rng, (2, 7, 6), np.float64), rand(rng, (3, 2, 3), np.float64)
        for reduce in ("max", "argmax"):
            check_metric(
                x, w, "nhw,khw->nk|hw", metric=metric, method=method, reduce=reduce, call=call
            )
    refused = pytest.raises(ValueError, match="no 'fft' form")
    with refused if metric == "sad" else contextlib.nullcontext():
        bc.correlate(
            xp.asarray(np.ones((2, 8))), xp.asarray(np.ones((2, 3))), metric=metric, method="fft"
        )


def test_metric_details(xp):
    """Centring keeps the contrast of data with a large mean; flat windows and flat
    filters give exactly 0; results stay in [-1, 1]."""
    call = _caller(xp)
    rng = np.random.default_rng(7)
    img = rng.integers(200, 256, size=(2, 3, 30, 28)).astype(np.float32)
    tpl = img[0, :, 10:18, 5:12].copy()
    tpl[0, 0, 0] += 1
    for metric in ("ssd", "ncc", "cosine"):
        for method in ("direct", "fft"):
            check_metric(img, tpl, "bchw,chw->bhw|hw", metric=metric, method=method, call=call)
    x = np.zeros((1, 30, 30))
    x[0, :, 15:] = 0.1
    x[0, 5:12, 20:27] = rng.random((7, 7))
    w = np.stack([np.full((4, 4), 0.7), np.arange(16.0).reshape(4, 4)])
    for method in ("direct", "fft"):
        y = _to_numpy(
            bc.correlate(xp.asarray(x), xp.asarray(w), metric="ncc", method=method, mode="same")
        )
        ref = naive_correlate(x, w, metric="ncc", mode="same")
        assert (y[0, 0] == 0).all() and (np.abs(y) <= 1).all()
        assert ((ref == 0) <= (y == 0)).all() and (ref == 0).sum() > 100


# NaN and Inf where the float64 loop puts them


def _same_nonfinite(y, ref):
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
    ok = np.isfinite(ref)
    np.testing.assert_allclose(y[ok], ref[ok], atol=1e-9 * max(np.abs(ref[ok]).max(), 1))


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_nan_and_inf_stay_where_the_loop_puts_them(xp, method, rng):
    x = rng.standard_normal((3, 20, 15))
    x[0, 5, 5], x[1, 3, 3], x[1, 10, 10] = np.inf, np.nan, -np.inf
    w = rng.standard_normal((3, 3, 4))
    w_bad = w.copy()
    w_bad[1, 1, 1], w_bad[2, 0, 0] = np.nan, np.inf
    with np.errstate(all="ignore"):
        for filters in (w, w_bad):
            for padding in ("constant", "reflect"):
                y = bc.correlate(
                    xp.asarray(x), xp.asarray(filters), mode="same", method=method, padding=padding
                )
                _same_nonfinite(
                    _to_numpy(y), naive_correlate(x, filters, mode="same", padding=padding)
                )
            for metric in ("ssd", "ncc", "cosine", "sad"):
                if metric == "sad" and method == "fft":
                    continue
                y = _to_numpy(
                    bc.correlate(
                        xp.asarray(x),
                        xp.asarray(filters),
                        metric=metric,
                        method=method,
                        mode="same",
                    )
                )
                ref = naive_correlate(x, filters, metric=metric, mode="same")
                # (ssd over an Inf filter: NaN where the loop has +Inf, as on NumPy)
                k = slice(0, 2) if metric == "ssd" and filters is w_bad else slice(None)
                _same_nonfinite(y[:, k], ref[:, k])
        y = bc.correlate(
            xp.asarray(x[:1, :5, :5]), xp.asarray(w), mode="same", cval=np.nan, method=method
        )
        _same_nonfinite(_to_numpy(y), naive_correlate(x[:1, :5, :5], w, mode="same", cval=np.nan))


def test_overflowing_transforms_are_redone_directly(xp):
    """Finite float32 data whose FFT overflows gets the direct sums (here finite)."""
    x = np.full((2, 64), 1e37, np.float32)
    x[1] = 1.0
    w = np.ones((1, 3), np.float32)
    y = _to_numpy(bc.correlate(xp.asarray(x), xp.asarray(w), method="fft"))
    np.testing.assert_allclose(y, naive_correlate(x, w), rtol=1e-6)


# blocks, explain(), plans as values


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("metric", ["dot", "ncc"])
def test_memory_budget_forces_several_blocks(xp, method, metric, rng):
    x, w = rand(rng, (12, 2, 20, 20), np.float64), rand(rng, (5, 2, 4, 4), np.float64)
    spec = "nchw,kchw->nkhw|hw"
    whole = bc.plan(xp.asarray(x), xp.asarray(w), spec, mode="same", method=method, metric=metric)
    small = bc.plan(
        xp.asarray(x),
        xp.asarray(w),
        spec,
        mode="same",
        method=method,
        metric=metric,
        memory=600_000,
    )
    assert whole.chunk == (12, 5) and (small.chunk[0] < 12 or small.chunk[1] < 5)
    blocks = -(-12 // small.chunk[0]) * -(-5 // small.chunk[1])
    assert f"{blocks} block(s)" in small.explain() and blocks > 2
    a, b = _to_numpy(whole(xp.asarray(x))), _to_numpy(small(xp.asarray(x)))
    # the same sums in the same order (the direct method's tap groups are per item);
    # a matmul of fewer rows or columns may still round its last bit otherwise (BLAS
    # kernels for the edges), as test_correlate's budget test allows on NumPy
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

    def blocks_call(f, x, w, spec=None, **kw):
        return _caller(xp)(f, x, w, spec, memory=600_000, **kw)

    if metric == "dot":
        check(x, w, spec, method=method, mode="same", call=blocks_call)
    else:
        check_metric(x, w, spec, metric=metric, method=method, mode="same", call=blocks_call)
    with pytest.raises(MemoryError, match="raise memory="):
        bc.plan(xp.asarray(x), xp.asarray(w), spec, method=method, metric=metric, memory=100)


def test_explain(xp, rng):
    x, w = rand(rng, (4, 32, 32), np.float32), rand(rng, (3, 9, 9), np.float32)
    for method in ("direct", "fft"):
        text = bc.plan(xp.asarray(x), xp.asarray(w), mode="same", method=method).explain()
        assert f"chosen: {method}" in text and namespace_of(xp.asarray(x)).__name__ in text
        assert "block(s) of (batch 4, bank 3)" in text and "budget" in text
    text = bc.plan(xp.asarray(x), xp.asarray(w), metric="ssd", method="fft").explain()
    assert "window sums" in text and "FFTs of shape" in text
    assert "|x - w|" in bc.plan(xp.asarray(x), xp.asarray(w), metric="sad").explain()


def test_auto_rule(xp, rng):
    """``auto``: direct for small kernels, fft for large ones (flops, weighted by
    FFT_FLOP_WEIGHT); integers and sad take direct."""
    x = xp.asarray(rand(rng, (2, 64, 64), np.float32))
    assert bc.plan(x, xp.asarray(rand(rng, (2, 3, 3), np.float32))).method == "direct"
    assert bc.plan(x, xp.asarray(rand(rng, (2, 31, 31), np.float32))).method == "fft"
    big = xp.asarray(rand(rng, (2, 31, 31), np.float32))
    assert bc.plan(x, big, metric="sad").method == "direct"
    assert FFT_FLOP_WEIGHT > 1


def _snapshot(obj, seen=None):
    """A comparable picture of ``obj`` and everything it holds (arrays by their bytes)."""
    import dataclasses
    import types

    seen = set() if seen is None else seen
    if isinstance(obj, str | int | float | complex | bool | type(None) | bytes):
        return obj
    if isinstance(obj, np.dtype | np.generic | types.ModuleType | type):
        return repr(obj)
    if id(obj) in seen:
        return ("seen", type(obj).__name__)
    seen.add(id(obj))
    if hasattr(obj, "__array_namespace__") and hasattr(obj, "shape"):
        a = np.from_dlpack(obj)
        return ("array", a.shape, a.dtype.str, a.tobytes())
    if isinstance(obj, dict):
        return ("dict", sorted((repr(k), _snapshot(v, seen)) for k, v in obj.items()))
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        return (type(obj).__name__, [_snapshot(v, seen) for v in items])
    if dataclasses.is_dataclass(obj):
        fields = [(f.name, _snapshot(getattr(obj, f.name), seen)) for f in dataclasses.fields(obj)]
        return (type(obj).__name__, fields)
    return (type(obj).__name__, _snapshot(getattr(obj, "__dict__", repr(obj)), seen))


@pytest.mark.parametrize("reduce", [None, "max", "mean"])
def test_bind(xp, reduce, rng):
    """PortablePlan.bind: the plan's answers for the bound shape and dtype (an array, or
    (shape, dtype)), worked out once; another shape or dtype raises and names both."""
    x, w = rand(rng, (4, 30, 20), np.float64), rand(rng, (3, 5, 4), np.float64)
    xa, wa = xp.asarray(x), xp.asarray(w)
    plan = bc.plan(xa, wa, reduce=reduce, memory="64KB")  # several blocks
    bound = plan.bind(xa)
    assert bound.chunk == plan.chunk and bound.problem is plan.problem
    np.testing.assert_array_equal(_to_numpy(bound(xa)), _to_numpy(plan(xa)))
    smaller = xp.asarray(x[:2])
    by_signature = plan.bind(((2, 30, 20), np.float64))
    np.testing.assert_array_equal(_to_numpy(by_signature(smaller)), _to_numpy(plan(smaller)))
    assert "bound to x (2, 30, 20)" in by_signature.explain()
    with pytest.raises(ValueError, match=r"bound to x of shape \(4, 30, 20\)"):
        bound(smaller)
    with pytest.raises(ValueError, match="only the batch axes"):
        plan.bind(((4, 31, 20), np.float64))
    with pytest.raises(TypeError):
        bound(x)  # a NumPy array: the plan's own error


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("metric", ["dot", "ssd", "sad"])
def test_calls_do_not_change_a_plan(xp, method, metric, rng):
    if metric == "sad" and method == "fft":
        pytest.skip("sad has no fft form")
    x, w = rng.standard_normal((3, 20, 30)), rng.standard_normal((4, 5, 7))
    w[1, 2, 3] = np.nan
    nan = x.copy()
    nan[0, 0, 0] = np.nan
    plan = bc.plan(xp.asarray(x), xp.asarray(w), method=method, metric=metric)
    before = _snapshot(plan)
    inputs = [xp.asarray(a) for a in (x, nan, x[1:], x[:1])]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(plan, inputs * 3))
    for i in range(len(inputs)):
        for r in results[i :: len(inputs)]:
            np.testing.assert_array_equal(_to_numpy(r), _to_numpy(results[i]))
    assert _snapshot(plan) == before
    # and changing the caller's filters afterwards changes nothing (array-api-strict
    # arrays can be written in place)
    if hasattr(w, "__setitem__") and not type(xp.asarray(w)).__module__.startswith("jax"):
        wa = xp.asarray(w)
        p2 = bc.plan(xp.asarray(x), wa, method=method, metric=metric)
        first = _to_numpy(p2(xp.asarray(x)))
        wa[0, 0, 0] = 100.0
        np.testing.assert_array_equal(_to_numpy(p2(xp.asarray(x))), first)


# errors


def test_errors(xp, rng):
    x, w = xp.asarray(rng.standard_normal((2, 16))), xp.asarray(rng.standard_normal((3, 4)))
    for method in ("torch_direct", "torch_fft", "winograd", "measure"):
        with pytest.raises(ValueError, match="runs on NumPy arrays or torch tensors"):
            bc.correlate(x, w, method=method)
    with pytest.raises(ValueError, match="method must be 'auto' or one of"):
        bc.correlate(x, w, method="no_such_method")
    with pytest.raises(TypeError, match="needs real data"):
        bc.correlate(xp.asarray(np.ones((2, 8), np.complex128)), w, metric="ssd")
    with pytest.raises(ValueError, match="convolve computes metric 'dot' only"):
        bc.convolve(x, w, metric="ncc")
    with pytest.raises(TypeError, match="booleans|dtype bool"):
        bc.correlate(xp.asarray(np.ones((2, 8), bool)), w)
    plan = bc.plan(x, w)
    with pytest.raises(TypeError, match="this plan computes on"):
        plan(np.ones((2, 16)))
    with pytest.raises(ValueError, match="only the batch axes"):
        plan(xp.asarray(np.ones((2, 17))))
    with pytest.raises(TypeError, match="this plan computes on NumPy arrays"):
        bc.plan(np.ones((2, 16)), np.ones((3, 4)))(x)
    with pytest.raises(ValueError, match="workers"):
        bc.correlate(x, w, workers=0)


def test_mixed_libraries_are_refused(rng):
    jnp, xps = _namespace("jax"), _namespace("array_api_strict")
    a = rng.standard_normal((2, 16))
    with pytest.raises(TypeError, match="x's library decides"):
        bc.correlate(jnp.asarray(a), xps.asarray(a[:1, :3]))
    with pytest.raises(TypeError, match="x's library decides"):
        bc.correlate(xps.asarray(a), jnp.asarray(a[:1, :3]))
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="x's library decides"):
        bc.correlate(jnp.asarray(a), torch.ones(3))


def test_without_array_api_compat(xp, rng, monkeypatch):
    """Without array-api-compat the namespace is ``x.__array_namespace__()``."""
    from batchconv.backends import array_api

    monkeypatch.setattr(array_api, "has_module", lambda name: False)
    x, w = rand(rng, (2, 9, 8), np.float64), rand(rng, (2, 3, 3), np.float64)
    y = bc.correlate(xp.asarray(x), xp.asarray(w), mode="same")
    assert backend_of(y).xp is xp.asarray(x).__array_namespace__()
    np.testing.assert_allclose(_to_numpy(y), naive_correlate(x, w, mode="same"), atol=1e-12)


# JAX without x64, the import, the configuration


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env},
        timeout=300,
    )


def test_jax_without_x64_computes_float64_problems_in_float32():
    pytest.importorskip("jax")
    r = _python(
        """
        import numpy as np, jax.numpy as jnp, batchconv as bc
        rng = np.random.default_rng(0)
        x = rng.integers(-9, 10, (2, 12, 11)).astype(np.int32)
        w = rng.standard_normal((3, 3, 3))  # NumPy float64: made float32 in JAX
        y = bc.correlate(jnp.asarray(x), w, mode="same")
        assert y.dtype == jnp.float32, y.dtype
        ref = bc.correlate(x.astype(np.float64), w, mode="same")
        assert np.abs(np.asarray(y) - ref).max() < 1e-4 * np.abs(ref).max()
        text = bc.plan(jnp.asarray(x), w).explain()
        assert "float64 computes in float32" in text and "x64" in text, text
        i = bc.correlate(jnp.asarray(x), jnp.asarray(x[:1, :3, :3]), reduce="argmax")
        assert i.dtype == jnp.int32 and i.shape == (2, 1, 2)
        print("OK")
        """,
        JAX_ENABLE_X64="0",
    )
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_import_loads_no_array_library():
    r = _python(
        """
        import sys, batchconv as bc, numpy as np
        bc.correlate(np.ones((2, 8)), np.ones(3))
        from batchconv.config import config
        c = config()["optional"]
        assert "jax" in c and "array_api_strict" in c and "array_api_compat" in c
        loaded = [m for m in ("jax", "array_api_strict", "array_api_compat", "cupy")
                  if m in sys.modules]
        assert not loaded, loaded
        print("OK")
        """
    )
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_config_reports_the_array_libraries(capsys):
    from importlib import metadata

    bc.show_config()
    out = capsys.readouterr().out
    for name in ("jax", "array_api_strict", "array_api_compat"):
        assert name in out
    pytest.importorskip("jax")
    assert metadata.version("jax") in out


def test_readme_jax_example():
    """The README's JAX example (a plain code block: it makes JAX arrays)."""
    jnp = _namespace("jax")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"### JAX and array-API arrays.*?```python\n(.*?)```", readme, re.S)
    scope = {"np": np, "bc": bc}
    exec(block.group(1), scope)
    assert namespace_of(scope["y"]) is jnp and tuple(scope["y"].shape) == (8, 4, 64, 64)
    assert tuple(scope["where"].shape) == (8, 4, 2)
    assert isinstance(scope["p"], PortablePlan)


def test_jax_cases_in_a_subprocess():
    """Every JAX case of this file, in a process that forks nothing afterwards."""
    if JAX_HERE:
        pytest.skip("(this is that subprocess)")
    pytest.importorskip("jax")
    env = {**os.environ, "BATCHCONV_TEST_JAX_HERE": "1", "JAX_ENABLE_X64": "1"}
    selected = "(jax or mixed_libraries) and not suites and not in_a_subprocess"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-k",
            selected,
            __file__,
        ],
        cwd=Path(__file__).parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout.splitlines()[-1]
    assert "run in a subprocess" not in r.stdout  # (the JAX cases did run there)


# the core, metric and property suites on each library


# each suite runs every SUBSAMPLE-th case of each parametrised test (conftest.py: by
# position; 7 and 3 are prime to the parameters' counts, so every value takes turns) and
# the hypothesis fuzz with a share of its examples: on the 2-core dev machine the JAX
# subprocess took 85-90 s (its time is mostly XLA compiling each new problem, about
# 0.1-0.3 s), the array-api-strict one 45 s
SUITES = {
    "jax": {"BATCHCONV_TEST_SUBSAMPLE": "7", "BATCHCONV_FUZZ_SHARE": "0.05"},
    "array_api_strict": {"BATCHCONV_TEST_SUBSAMPLE": "3", "BATCHCONV_FUZZ_SHARE": "0.3"},
}


@pytest.mark.slow
@pytest.mark.parametrize("library", LIBRARIES)
def test_core_metric_and_property_suites(library):
    """test_correlate.py, test_metrics.py and test_properties.py with x and w as arrays
    of ``library`` (``helpers.ARRAYS``), in a subprocess so that the switch is set
    before collection; JAX with x64 on."""
    pytest.importorskip(library)  # (imported only: the subprocess makes the arrays)
    run_suites(library, {"JAX_ENABLE_X64": "1", **SUITES[library]}, timeout=900)
