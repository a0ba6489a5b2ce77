"""Plans are values (issue 21): nothing in a plan changes after it is built, whichever
calls run on it, with whichever input layouts, from whichever threads. What calls learn
(fast paths per layout, kernels made ready, indices looked up once, the exact route's
state) is kept beside the plan (``memo.py``).

The test takes a deep snapshot of a plan (every attribute, recursively: arrays by
their bytes, shape, dtype and strides) before and after calls with several layouts,
batch sizes and NaN inputs from four threads at once, and compares them.
"""

from __future__ import annotations

import dataclasses
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import batchconv as bc


def snapshot(obj, seen=None):
    """A comparable picture of ``obj`` and everything it holds."""
    seen = set() if seen is None else seen
    if isinstance(obj, str | int | float | complex | bool | type(None) | bytes):
        return obj
    if isinstance(obj, np.dtype | np.generic):
        return repr(obj)
    if isinstance(obj, types.ModuleType | types.FunctionType | type):
        return ("ref", getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj))))
    if id(obj) in seen:
        return ("seen", type(obj).__name__)
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return ("array", obj.shape, obj.dtype.str, obj.strides, obj.tobytes())
    if type(obj).__module__.startswith("torch"):
        if hasattr(obj, "detach"):  # a tensor
            t = obj.detach().cpu()
            return ("tensor", tuple(t.shape), str(t.dtype), t.stride(), t.numpy().tobytes())
        return ("torch object", repr(obj))
    if isinstance(obj, dict):
        return ("dict", sorted((repr(k), snapshot(v, seen)) for k, v in obj.items()))
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        return (type(obj).__name__, [snapshot(v, seen) for v in items])
    if dataclasses.is_dataclass(obj):
        return (
            type(obj).__name__,
            [(f.name, snapshot(getattr(obj, f.name), seen)) for f in dataclasses.fields(obj)],
            snapshot(_extra(obj), seen),
        )
    if callable(obj) and not hasattr(obj, "__dict__"):
        return ("callable", repr(type(obj)))
    return (type(obj).__name__, snapshot(getattr(obj, "__dict__", repr(obj)), seen))


def _extra(obj) -> dict:
    """Attributes set on a dataclass instance beyond its fields."""
    names = {f.name for f in dataclasses.fields(obj)}
    return {k: v for k, v in getattr(obj, "__dict__", {}).items() if k not in names}


def layouts(x: np.ndarray) -> list[np.ndarray]:
    """``x`` as it is, Fortran-ordered, as a strided view of a larger array, with a NaN,
    and with one item fewer (another batch size)."""
    wide = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), x.dtype)
    wide[..., ::2] = x
    nan = x.copy()
    nan[(0,) * x.ndim] = np.nan
    return [x, np.asfortranarray(x), wide[..., ::2], nan, x[1:]]


CASES = {
    "direct, one filter": ((3, 40, 300), (1, 5, 7), {}),
    "direct, a bank (GEMM)": ((3, 40, 60), (4, 5, 7), dict(method="direct")),
    "fft, one filter": ((3, 64, 64), (1, 15, 15), dict(method="fft")),
    "fft, a bank, a NaN filter": ((3, 40, 60), (4, 5, 7), dict(method="fft", nan_w=True)),
    "ncc": ((3, 40, 60), (2, 5, 7), dict(metric="ncc")),
    "ssd, fft": ((3, 40, 60), (2, 5, 7), dict(metric="ssd", method="fft")),
    "sad": ((3, 40, 300), (1, 5, 7), dict(metric="sad")),
    "argmax over fft": ((3, 64, 64), (2, 9, 9), dict(method="fft", reduce="argmax")),
}


def _plan_and_inputs(case, rng, tensor=False):
    xs, ws, kw = CASES[case]
    kw = dict(kw)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    if kw.pop("nan_w", False):
        w[1, 2, 3] = np.nan
    spec = "nhw,khw->nkhw|hw" if "reduce" not in kw else "nhw,khw->nk|hw"
    xs_all = layouts(x)
    if tensor:
        torch = pytest.importorskip("torch")
        w = torch.from_numpy(w)
        xs_all = [torch.from_numpy(np.ascontiguousarray(a)) for a in xs_all]
        xs_all.append(torch.from_numpy(x).transpose(-1, -2).contiguous().transpose(-1, -2))
        x = torch.from_numpy(x)
    return bc.plan(x, w, spec, **kw), xs_all


def _call_from_threads(plan, inputs):
    """Each input three times, from four threads at once; the results of each input
    agree whichever thread made them."""
    jobs = [a for a in inputs for _ in range(3)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(plan, jobs))
    for i in range(len(inputs)):
        first = np.asarray(results[3 * i])
        for r in results[3 * i + 1 : 3 * i + 3]:
            np.testing.assert_array_equal(np.asarray(r), first)


@pytest.mark.parametrize("case", sorted(CASES))
def test_calls_do_not_change_a_numpy_plan(case, rng):
    plan, inputs = _plan_and_inputs(case, rng)
    before = snapshot(plan)
    _call_from_threads(plan, inputs)
    assert snapshot(plan) == before
    bound = [plan.bind(a) for a in inputs]  # and bound to each layout
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda fa: fa[0](fa[1]), zip(bound * 2, inputs * 2)))
    assert snapshot(plan) == before


@pytest.mark.parametrize("method", ["torch_direct", "torch_fft"])
def test_calls_do_not_change_a_torch_plan(method, rng):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(rng.standard_normal((3, 2, 40, 60)))
    w = torch.from_numpy(rng.standard_normal((4, 2, 5, 7)))
    plan = bc.plan(x, w, "nchw,kchw->nkhw|hw", method=method)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    inputs = [x, x.contiguous(memory_format=torch.channels_last), nan, x[1:]]
    before = snapshot(plan)
    _call_from_threads(plan, inputs)
    assert snapshot(plan) == before


def test_the_snapshot_sees_a_change(rng):
    """(The test above can fail: a change deep in the state shows.)"""
    plan, _ = _plan_and_inputs("fft, one filter", rng)
    before = snapshot(plan)
    plan.state.spectrum.flat[0] += 1
    assert snapshot(plan) != before


def test_no_cache_keeps_a_reduce_callable_alive(rng):
    """Module-level caches key on what they depend on: whether ``reduce`` is a callable,
    not which one (a callable would otherwise live as long as the process)."""
    import gc
    import weakref

    class Top:  # a user's reduce, holding its own data
        def __init__(self):
            self.data = np.zeros(1000)

        def __call__(self, block, axis):
            return block.max(axis=axis)

    x, w = rng.standard_normal((2, 64, 64)), rng.standard_normal((3, 9, 9))
    want = bc.correlate(x, w, "nhw,khw->nk|hw", reduce="max")
    for method in ("direct", "fft"):
        top = Top()
        gone = weakref.ref(top)
        plan = bc.plan(x, w, "nhw,khw->nk|hw", reduce=top, method=method)
        np.testing.assert_allclose(plan(x), want, rtol=1e-10)
        del plan, top
        gc.collect()
        assert gone() is None, f"{method}: a cache keeps the callable alive"
