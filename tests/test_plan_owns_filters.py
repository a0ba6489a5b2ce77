"""A plan owns its filters: changing ``w`` after ``bc.plan`` or after a ``correlate`` call
never changes a later result, and correlate's plan cache never serves a plan made from
other bytes (issue: one-filter direct, sad, torch_direct and cosine over direct kept a view
of the caller's ``w``, so the cache served a plan that read the buffer as it was now)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import naive_correlate

import batchconv as bc
from batchconv import compiled

try:
    import torch
except ImportError:  # NumPy alone: the torch cases are skipped
    torch = None

NUMPY_METHODS = {
    "dot": ("direct", "fft"),
    "ssd": ("direct", "fft"),
    "ncc": ("direct", "fft"),
    "cosine": ("direct", "fft"),
    "sad": ("direct",),
}
TORCH_METHODS = {
    "dot": ("torch_direct", "torch_fft"),
    "ssd": ("torch_direct", "torch_fft"),
    "ncc": ("torch_direct", "torch_fft"),
    "cosine": ("torch_direct", "torch_fft"),
    "sad": ("torch_direct",),
}
CASES = [(a, m, meth) for m, ms in NUMPY_METHODS.items() for meth in ms for a in ["numpy"]] + [
    ("torch", m, meth) for m, ms in TORCH_METHODS.items() for meth in ms
]


@pytest.fixture(autouse=True)
def _fresh_cache():
    bc.clear_plan_cache()
    yield
    bc.clear_plan_cache()


def _arrays(kind: str, x: np.ndarray, w: np.ndarray):
    if kind == "numpy":
        return x, w
    if torch is None:
        pytest.skip("torch is not installed")
    return torch.from_numpy(x), torch.from_numpy(w)  # w's memory is the NumPy array's


def _numpy(y) -> np.ndarray:
    return y.numpy() if torch is not None and isinstance(y, torch.Tensor) else np.asarray(y)


def _problem(data, bank: str, ndim: int):
    """x (N, *S) and w: one filter T, a bank of one (1, *T) or a bank (K, *T), float64."""
    n = data.draw(st.integers(1, 3), label="N")
    s = data.draw(st.lists(st.integers(4, 9), min_size=ndim, max_size=ndim), label="S")
    t = [data.draw(st.integers(1, si), label="T") for si in s]
    seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *s))
    w_shape = {"one": t, "k1": [1, *t], "bank": [3, *t]}[bank]
    return x, rng.standard_normal(w_shape)


def _mutate(w):
    w[...] = 7.0  # flat: the metrics' results change (ncc of a flat filter is 0)


# the compiled kernels switched off too, for the NumPy methods (the torch ones have none)
KERNELS = [(*case, True) for case in CASES] + [
    (*case, False) for case in CASES if case[0] == "numpy"
]


@pytest.mark.parametrize("bank", ["one", "k1", "bank"])
@pytest.mark.parametrize(("kind", "metric", "method", "numba"), KERNELS)
@settings(max_examples=8)
@given(data=st.data())
def test_changing_w_after_plan_changes_nothing(kind, metric, method, numba, bank, data):
    x, w = _problem(data, bank, data.draw(st.integers(1, 2), label="ndim"))
    mode = data.draw(st.sampled_from(["valid", "same"]), label="mode")
    old = compiled.USE_NUMBA
    compiled.USE_NUMBA = numba and old
    try:
        xa, wa = _arrays(kind, x, w)
        p = bc.plan(xa, wa, mode=mode, metric=metric, method=method)
        first = _numpy(p(xa)).copy()
        _mutate(w)  # the caller's buffer (the tensor shares it)
        np.testing.assert_array_equal(_numpy(p(xa)), first)
        np.testing.assert_array_equal(_numpy(p(xa)), first)  # the remembered shortcut too
    finally:
        compiled.USE_NUMBA = old


@pytest.mark.parametrize("bank", ["one", "k1", "bank"])
@pytest.mark.parametrize(("kind", "metric", "method"), CASES)
@settings(max_examples=8)
@given(data=st.data())
def test_cache_never_serves_a_plan_from_other_bytes(kind, metric, method, bank, data):
    """correlate with w, mutate w, correlate with a copy of the old w: the old answer."""
    x, w = _problem(data, bank, 1)
    xa, wa = _arrays(kind, x, w)
    saved = w.copy()
    first = _numpy(bc.correlate(xa, wa, metric=metric, method=method)).copy()
    _mutate(w)
    mutated = _numpy(bc.correlate(xa, wa, metric=metric, method=method))  # a new plan
    again = _numpy(bc.correlate(*_arrays(kind, x, saved), metric=metric, method=method))
    np.testing.assert_array_equal(again, first)
    if metric == "dot":  # the mutated filter's own answer, not the old plan's
        ref = naive_correlate(x, w)
        np.testing.assert_allclose(mutated, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_issue_repro_one_filter_auto():
    x = np.arange(10.0)[None]
    w = np.array([1.0, 2.0, 3.0])
    a = bc.correlate(x, w)
    saved = w.copy()
    w[:] = 0
    np.testing.assert_array_equal(bc.correlate(x, saved), a)
