"""Check a batchconv result against the naive reference under the brief's accuracy contract."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from naive import _parse, default_spec_string, naive_correlate, tolerance, window_abs_bound

import batchconv as bc
from batchconv import compiled
from batchconv.xp import clear_work_buffers


def expected_dtype(x, w) -> np.dtype:
    rt = np.result_type(np.asarray(x).dtype, np.asarray(w).dtype)
    if rt.kind in "iu":
        return np.dtype(np.float64)
    if rt == np.float16:
        return np.dtype(np.float32)
    return rt


# BATCHCONV_TEST_ARRAYS=torch: every check() and check_metric() call passes CPU tensors
# (and expects a tensor back); =torch_methods: also with "direct"/"fft" read as the torch
# methods wherever those compute the problem (tests/test_torch_tensors.py runs the core,
# metric and property tests that way); =cuda: CUDA tensors, the torch methods, "auto"
# where neither torch form computes the problem (tests/test_cuda.py)
ARRAYS = os.environ.get("BATCHCONV_TEST_ARRAYS", "numpy")
# =jax / =array_api_strict: x and w as that library's arrays (JAX with x64 on), computed
# by the portable engine (portable/), the result that library's array on x's device
# (tests/test_array_api.py runs the core, metric and property tests that way)
ARRAY_API = ("jax", "array_api_strict")


def array_namespace():
    """The namespace of ``ARRAYS`` when it names an array-API library (JAX: x64 on)."""
    if ARRAYS == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        return jnp
    import array_api_strict

    return array_api_strict


def _call_array_api(f, x, w, spec=None, **kw):
    """``f`` on ``x`` and ``w`` as arrays of ``ARRAYS``' namespace; the result, checked to
    be one on x's device, as a NumPy array. A reduce callable written for NumPy blocks
    gets them as NumPy arrays (an adapter of this harness: the engine passes the
    namespace's blocks)."""
    import pytest

    from batchconv.backends.array_api import device_of, namespace_of

    xp = array_namespace()

    def convert(a):
        a = np.ascontiguousarray(a)
        if getattr(xp, a.dtype.name, None) is None:
            pytest.skip(f"{ARRAYS} has no {a.dtype}")
        return xp.asarray(a)

    reduce = kw.get("reduce")
    if callable(reduce):
        kw["reduce"] = lambda block, axis: xp.asarray(reduce(np.from_dlpack(block), axis=axis))
    xa = convert(x)
    y = f(xa, convert(w), spec, **kw)
    assert namespace_of(y) is xp and device_of(y) == device_of(xa), type(y)
    return np.from_dlpack(y)


def _torch_method(
    method: str, x, w, spec, kw: dict, convolve: bool, otherwise: str | None = None
) -> str:
    """``method`` as its torch form ("direct" -> "torch_direct", "fft" -> "torch_fft")
    where that form computes the problem; elsewhere ``otherwise`` (default: ``method``)."""
    from batchconv.metrics.dispatch import method_for
    from batchconv.problem import make_problem

    if method not in ("direct", "fft"):
        return method
    opts = {k: v for k, v in kw.items() if k not in ("method", "memory", "workers")}
    try:
        p = make_problem(
            np.shape(x),
            np.asarray(x).dtype,
            np.shape(w),
            np.asarray(w).dtype,
            spec,
            flip=convolve,
            **opts,
        )
        method_for(p, "torch_" + method)
    except (ValueError, TypeError):  # the torch form cannot compute it (or an error case)
        return otherwise or method
    return "torch_" + method


def _call(f, x, w, spec=None, **kw):
    if ARRAYS == "numpy":
        return f(x, w, spec, **kw)
    if ARRAYS in ARRAY_API:
        return _call_array_api(f, x, w, spec, **kw)
    import torch

    device = "cuda" if ARRAYS == "cuda" else "cpu"

    def tensor(a):
        a = np.asarray(a)
        try:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)
        except TypeError:  # a dtype torch lacks: stays NumPy
            return a

    if ARRAYS in ("torch_methods", "cuda") and "method" in kw:
        kw["method"] = _torch_method(
            kw["method"], x, w, spec, kw, f is bc.convolve, "auto" if device == "cuda" else None
        )
    y = f(tensor(x), tensor(w), spec, **kw)
    assert isinstance(y, torch.Tensor) and y.device.type == device, type(y)
    return y.cpu().numpy()


@contextmanager
def numpy_kernels(method: str):
    """``method`` without a ``"+numpy"`` suffix; with the suffix, the compiled (numba)
    kernels are switched off inside the block (the NumPy code runs)."""
    if not method.endswith("+numpy"):
        yield method
        return
    old = compiled.USE_NUMBA
    compiled.USE_NUMBA = False
    try:
        yield method.removesuffix("+numpy")
    finally:
        compiled.USE_NUMBA = old


def check(x, w, spec=None, *, method, convolve=False, call=_call, **kw):
    """Run batchconv and assert the accuracy contract against the float64 loop.
    ``call(f, x, w, spec, **kw)`` runs ``f`` (``bc.correlate`` or ``bc.convolve``): the
    Dask tests pass one that chunks ``x`` and ``w`` and computes. A method named
    ``"direct+numpy"`` is "direct" with the compiled kernels off.

    Returns the batchconv result."""
    f = bc.convolve if convolve else bc.correlate
    with numpy_kernels(method) as method:
        y = call(f, x, w, spec, method=method, **kw)
    reduce = kw.get("reduce")
    explicit = spec or default_spec_string(np.ndim(x), np.ndim(w), reduce is not None)
    xs, ws, out, sliding = _parse(explicit)
    geo = {k: v for k, v in kw.items() if k != "reduce"}
    S = window_abs_bound(x, w, explicit, convolve=convolve, **geo)
    S = S.reshape(S.shape[: len(out)])  # drop the (size-1) reduced axes
    dt = expected_dtype(x, w)
    tol = tolerance(dt)
    cval = kw.get("cval", 0.0)
    ints = (
        np.asarray(x).dtype.kind in "iu"
        and np.asarray(w).dtype.kind in "iu"
        and (kw.get("padding", "constant") != "constant" or float(cval).is_integer())
    )
    if reduce in ("argmax", "argmin"):
        full_out = out + "".join(c for c in sliding if c not in out)
        unreduced = naive_correlate(
            x, w, f"{xs},{ws}->{full_out}|{sliding}", convolve=convolve, **geo
        )
        best = naive_correlate(x, w, explicit, convolve=convolve, **{**kw, "reduce": reduce[3:]})
        assert y.dtype.kind == "i"
        nred = len(full_out) - len(out)
        assert y.shape == best.shape + (nred,)
        lead = np.indices(best.shape)
        got = unreduced[(*lead, *np.moveaxis(y, -1, 0))]
        assert np.all(np.abs(got - best) <= tol * S), (got, best)
        return y
    ref = naive_correlate(x, w, spec, convolve=convolve, **kw)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert y.dtype == dt, (y.dtype, dt)
    if ints:
        np.testing.assert_array_equal(y, ref)
        return y
    err = np.abs(y.astype(ref.dtype) - ref)
    bound = tol * S
    bad = err > bound
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} outputs break the contract; worst err "
        f"{err.max():.3g} vs allowed {bound.min() if bound.size else 0:.3g}"
    )
    assert np.isfinite(y).all()
    return y


class small_fft_tiles:
    """Force the FFT method's overlap-save tiles down to ``points`` FFT points, so that
    tiling bugs show on small inputs."""

    def __init__(self, points: int):
        self.points = points

    def _clear(self):
        from batchconv.methods import fft

        fft.tiling.cache_clear()
        fft.fft_shape.cache_clear()

    def __enter__(self):
        from batchconv.methods import fft

        self.old = fft._TILE_POINTS, fft._TILE_EXTENTS
        fft._TILE_POINTS, fft._TILE_EXTENTS = self.points, 1
        self._clear()
        return self

    def __exit__(self, *exc):
        from batchconv.methods import fft

        fft._TILE_POINTS, fft._TILE_EXTENTS = self.old
        self._clear()


def check_metric(x, w, spec=None, *, metric, method, call=_call, **kw):
    """Run ``bc.correlate(..., metric=metric)`` and assert the metrics' accuracy contract
    (``naive.window_metric_bound``) against the float64 loop. Windows so close to flat that
    the loop's own denominator is under 1e-4 of the error scale are not compared (they are
    tested separately: exactly flat windows give exactly 0). ``call``: as in :func:`check`.
    Returns the result."""
    from naive import window_metric_bound

    y = call(bc.correlate, x, w, spec, metric=metric, method=method, **kw)
    reduce = kw.get("reduce")
    ref = naive_correlate(x, w, spec, metric=metric, **kw)
    dt = expected_dtype(x, w)
    tol = tolerance(dt)
    geo = {k: v for k, v in kw.items() if k != "reduce"}
    explicit = spec or default_spec_string(np.ndim(x), np.ndim(w), reduce is not None)
    xs, ws, out, sliding = _parse(explicit)
    full_out = out + "".join(c for c in sliding if c not in out)
    scale, den = window_metric_bound(x, w, f"{xs},{ws}->{full_out}|{sliding}", metric=metric, **geo)
    normalised = metric in ("ncc", "cosine")
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = tol * (scale / den + 1) if normalised else tol * scale + np.zeros_like(den)
        usable = den > 1e-4 * scale if normalised else np.ones(den.shape, bool)
    bound = np.where(np.isnan(bound), tol, bound)  # 0 / 0: every window of the pair flat
    nred = len(full_out) - len(out)
    if reduce in ("argmax", "argmin"):
        unreduced = naive_correlate(x, w, f"{xs},{ws}->{full_out}|{sliding}", metric=metric, **geo)
        best = naive_correlate(x, w, explicit, metric=metric, **{**kw, "reduce": reduce[3:]})
        assert y.dtype.kind == "i" and y.shape == best.shape + (nred,)
        lead = np.indices(best.shape)
        idx = (*lead, *np.moveaxis(y, -1, 0))
        got = unreduced[idx]
        assert np.all(
            np.abs(got - best) <= 2 * bound.max(axis=tuple(range(len(out), len(full_out))))
        ), (got, best)
        return y
    if reduce is not None:  # max / min: compare with the reduced bound
        axes = tuple(range(len(out), len(full_out)))
        bound, usable = bound.max(axis=axes), usable.all(axis=axes)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert y.dtype == dt, (y.dtype, dt)
    ints = np.asarray(x).dtype.kind in "iu" and np.asarray(w).dtype.kind in "iu"
    if ints and metric in ("ssd", "sad") and float(kw.get("cval", 0)).is_integer():
        np.testing.assert_array_equal(y, ref)
        return y
    err = np.abs(y.astype(np.float64) - ref)
    bad = (err > bound) & usable
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, err / bound, -1)), err.shape)
        raise AssertionError(
            f"{metric}: {bad.sum()} of {bad.size} outputs break the "
            f"contract; worst err {err[worst]:.3g}, allowed there "
            f"{bound[worst]:.3g}"
        )
    assert np.isfinite(y).all()
    if normalised and reduce in (None, "max", "min"):  # a sum or mean of them may exceed 1
        assert (np.abs(y) <= 1).all()
    return y


def traced_plan_and_call(x, w, spec=None, **kw):
    """(plan, result, peak bytes of plan + call beyond the result), after a first plan
    and call (imports, compiled kernels) and with the threads' work buffers freed (a first
    call pays for them); (None, None, 0) when the plan refuses the budget."""
    try:
        bc.plan(x, w, spec, **kw)(x)
    except MemoryError:
        return None, None, 0
    bc.clear_plan_cache()
    clear_work_buffers()
    tracemalloc.start()
    try:
        try:
            p = bc.plan(x, w, spec, **kw)
        except MemoryError:
            return None, None, 0
        y = p(x)
        peak = tracemalloc.get_traced_memory()[1] - y.nbytes
    finally:
        tracemalloc.stop()
    return p, y, peak


def run_suites(arrays: str, env: dict[str, str], timeout: int) -> None:
    """The core matrix (test_correlate.py), the metrics (test_metrics.py) and the
    hypothesis fuzz (test_properties.py) in a subprocess with ``BATCHCONV_TEST_ARRAYS``
    set to ``arrays`` before collection (see ``ARRAYS``) and ``env`` added; fails
    unless they pass."""
    tests = Path(__file__).parent
    files = [str(tests / f) for f in ("test_correlate.py", "test_metrics.py", "test_properties.py")]
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files],
        cwd=tests.parent,
        env={**os.environ, "BATCHCONV_TEST_ARRAYS": arrays, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout.splitlines()[-1]


def run_scipy_tests(module: str, shim: str, select: str) -> None:
    """Run SciPy's own test ``module`` (``-k select``) in a subprocess with the pytest
    plugin ``shim`` of ``tests/scipy_suites`` (which puts batchconv's front-ends in
    SciPy's place); assert that it passed and that some tests ran."""
    import subprocess
    import sys

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            module,
            "-p",
            shim,
            "-q",
            "-k",
            select,
            "-p",
            "no:cacheprovider",
        ],
        cwd=os.path.join(os.path.dirname(__file__), "scipy_suites"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in tail and "failed" not in tail, tail
