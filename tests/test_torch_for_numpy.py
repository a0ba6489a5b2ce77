"""NumPy arrays through torch's CPU methods (issue #25, item 4): once the program has
imported torch, ``method="auto"`` weighs torch_direct (oneDNN) and torch_fft for NumPy
arrays too, shares the arrays with torch without a copy and gives NumPy arrays back;
``bc.use_torch`` switches that per thread. Checked against the naive float64 loop with
the accuracy contract, and against the NumPy methods' dtypes and plans.

The rest of the suite runs with ``USE_TORCH = False`` (tests/conftest.py), so that the
NumPy methods' tests test them whichever test module imported torch first; the tests
here switch it on (the default rule runs in subprocesses). Skipped without torch.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import rand
from helpers import check
from hypothesis import given
from hypothesis import strategies as st

import batchconv as bc
from batchconv.tensors import torch_for_numpy

torch = pytest.importorskip("torch")

NHWC = "nhwc,hwco->nhwo|hw"


@pytest.fixture
def torch_joins():
    with bc.use_torch(True):
        yield


def _runs_clean(code: str) -> None:
    """Run ``code`` in a fresh Python (torch not imported unless it says so)."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_switch_is_scoped_per_thread_and_checked():
    with bc.use_torch(True):
        assert torch_for_numpy()
        with bc.use_torch(False):
            assert not torch_for_numpy()
            with bc.use_torch(None):  # keeps the current setting
                assert not torch_for_numpy()
            seen = []
            t = threading.Thread(target=lambda: seen.append(torch_for_numpy()))
            t.start()
            t.join()
            assert seen == [False]  # another thread: the process's (the tests': False)
        assert torch_for_numpy()
    with pytest.raises(TypeError, match="True, False or None"):
        bc.use_torch("yes")


def test_the_default_follows_whether_torch_is_imported():
    first = "import torch, numpy, batchconv\nassert batchconv.tensors.torch_for_numpy()\n"
    _runs_clean(first)
    code = (
        "import sys, numpy as np, batchconv as bc\n"
        "from batchconv.tensors import torch_for_numpy\n"
        "bc.correlate(np.ones((2, 8, 8, 4), np.float32), np.ones((3, 3, 4, 16), np.float32),"
        " 'nhwc,hwco->nhwo|hw')\n"
        "assert 'torch' not in sys.modules and not torch_for_numpy()\n"
        "bc.show_config()  # (imports torch to report its build: not the program's)\n"
        "assert 'torch' in sys.modules and not torch_for_numpy()\n"
        "with bc.use_torch(True):\n"
        "    assert torch_for_numpy()\n"
    )
    _runs_clean(code)


def test_auto_weighs_torch_for_numpy_arrays_and_says_so(torch_joins, rng):
    x = rand(rng, (4, 16, 16, 16), np.float32)
    k = rand(rng, (3, 3, 16, 32), np.float32)
    plan = bc.plan(x, k, NHWC)
    names = {c.method for c in plan.candidates}
    assert {"torch_direct", "direct"} <= names and "torch_fft" not in names
    assert "oneDNN (torch's CPU convolution) was a candidate" in plan.explain()
    with bc.use_torch(False):
        alone = bc.plan(x, k, NHWC)
    assert not {"torch_direct", "torch_fft"} & {c.method for c in alone.candidates}
    assert "oneDNN (torch's CPU convolution) was a candidate" not in alone.explain()
    y = plan(x)
    assert type(y) is np.ndarray and y.dtype == np.float32
    np.testing.assert_allclose(y, alone(x), rtol=1e-4, atol=1e-4 * np.abs(y).max())


@pytest.mark.parametrize(
    "what, x_shape, k_shape, kw",
    [
        ("float64", (4, 16, 16, 16), (3, 3, 16, 32), {"dtype": np.float64}),
        ("a bank under 16", (4, 16, 16, 16), (3, 3, 16, 8), {}),
        ("windows under 27 values", (4, 16, 16, 2), (3, 3, 2, 32), {}),
        ("ncc", (4, 16, 16, 16), (3, 3, 16, 32), {"metric": "ncc"}),
        ("sad", (4, 16, 16, 16), (3, 3, 16, 32), {"metric": "sad"}),
        ("a callable reduce", (4, 16, 16, 16), (3, 3, 16, 32), {"reduce": np.max}),
        (
            "reflect padding",
            (4, 16, 16, 16),
            (3, 3, 16, 32),
            {"mode": "same", "padding": "reflect"},
        ),
        ("a padding value", (4, 16, 16, 16), (3, 3, 16, 32), {"mode": "same", "cval": 1.0}),
        ("one thread", (4, 16, 16, 16), (3, 3, 16, 32), {"workers": 1}),
    ],
)
def test_torch_joins_only_where_its_cost_model_holds(torch_joins, rng, what, x_shape, k_shape, kw):
    """Beyond the float32 CNN layers torch's CPU times vary more than its model follows:
    the NumPy methods' ground stays theirs."""
    kw = dict(kw)
    if what == "one thread" and torch.get_num_threads() == 1:
        pytest.skip("torch runs one thread here: it fits workers=1")
    dt = kw.pop("dtype", np.float32)
    spec = "nhwc,hwco->no|hw" if "reduce" in kw else NHWC
    plan = bc.plan(rand(rng, x_shape, dt), rand(rng, k_shape, dt), spec, **kw)
    assert not any(c.method.startswith("torch") for c in plan.candidates), what
    assert "oneDNN (torch's CPU convolution) was a candidate" not in plan.explain()


def test_a_cnn_layer_goes_to_onednn(torch_joins, rng):
    """The ground of the item: a float32 NHWC layer with a bank of 64, where oneDNN's
    channels-last convolution is the fastest CPU route the cost model knows."""
    x = rand(rng, (2, 56, 56, 32), np.float32)
    k = rand(rng, (3, 3, 32, 64), np.float32)
    assert bc.plan(x, k, NHWC).method == "torch_direct"
    check(x, k, NHWC, method="auto")


@pytest.mark.parametrize("method", ["torch_direct", "torch_fft"])
@given(
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64, np.int32, np.complex64]),
    mode=st.sampled_from(["valid", "same", "full"]),
)
def test_numpy_arrays_on_torch_methods_match_the_loop(method, data, dtype, mode):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n, c, k = (data.draw(st.integers(1, 3)) for _ in range(3))
    h, w = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12))
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    stride = data.draw(st.integers(1, 3))
    dilation = data.draw(st.integers(1, 2))
    if mode != "valid" and stride > 1:
        stride = 1  # (strided same/full: tested by the NumPy methods' matrix)
    x = rand(rng, (n, h, w, c), dtype)
    wts = rand(rng, (kh, kw, c, k), dtype)
    if mode == "valid" and (h < (kh - 1) * dilation + 1 or w < (kw - 1) * dilation + 1):
        mode = "full"
    with bc.use_torch(True):
        y = check(x, wts, NHWC, method=method, mode=mode, stride=stride, dilation=dilation)
    assert type(y) is np.ndarray
    with bc.use_torch(False):
        alone = bc.correlate(x, wts, NHWC, mode=mode, stride=stride, dilation=dilation)
    assert y.dtype == alone.dtype and y.shape == alone.shape


def test_reductions_and_metrics(torch_joins, rng):
    x = rand(rng, (3, 20, 20, 4), np.float32)
    k = rand(rng, (5, 5, 4, 16), np.float32)
    for reduce in ("max", "argmax"):
        check(x, k, "nhwc,hwco->no|hw", method="torch_direct", reduce=reduce)
    for metric in ("ssd", "ncc"):
        y = bc.correlate(x, k, NHWC, metric=metric, method="torch_direct")
        with bc.use_torch(False):
            ref = bc.correlate(x, k, NHWC, metric=metric, method="direct")
        assert type(y) is np.ndarray
        np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def test_bound_plans_take_numpy_arrays(torch_joins, rng):
    x = rand(rng, (2, 12, 12, 8), np.float32)
    k = rand(rng, (3, 3, 8, 16), np.float32)
    for made_from in (x, torch.from_numpy(x)):  # (a CPU tensor's plan too)
        plan = bc.plan(made_from, k, NHWC, method="torch_direct")
        bound = plan.bind(x)
        y = bound(x)
        assert type(y) is np.ndarray
        np.testing.assert_array_equal(y, plan(x))
        np.testing.assert_array_equal(bound(x), y)  # the remembered one-call path


def test_the_plan_cache_keeps_the_settings_apart(rng):
    x = rand(rng, (2, 56, 56, 32), np.float32)
    k = rand(rng, (3, 3, 32, 64), np.float32)
    from batchconv.api import _cached_plan

    with bc.use_torch(True):
        joined = _cached_plan(x, k, NHWC, False, {})
    with bc.use_torch(False):
        alone = _cached_plan(x, k, NHWC, False, {})
    assert joined.method == "torch_direct" and not alone.module.ON_TENSORS
    with bc.use_torch(True):
        assert _cached_plan(x, k, NHWC, False, {}) is joined


def test_the_budget_chunks_torch_blocks(torch_joins, rng):
    x = rand(rng, (8, 24, 24, 8), np.float32)
    k = rand(rng, (3, 3, 8, 32), np.float32)
    plan = bc.plan(x, k, NHWC, method="torch_direct", memory="200KB")
    assert plan.chunk[0] * plan.chunk[1] < 8 * 32
    ref = check(x, k, NHWC, method="torch_direct")  # (one block)
    y = bc.correlate(x, k, NHWC, method="torch_direct", memory="200KB")
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_vjp_of_a_layer_on_torch(torch_joins, rng):
    x = rand(rng, (2, 10, 10, 4), np.float32)
    k = rand(rng, (3, 3, 4, 16), np.float32)
    g = rand(rng, (2, 8, 8, 16), np.float32)
    assert "torch_direct" in {c.method for c in bc.plan(x, k, NHWC).candidates}
    gx, gk = bc.vjp(x, k, NHWC, cotangent=g)
    with bc.use_torch(False):
        rx, rk = bc.vjp(x, k, NHWC, cotangent=g)
    assert type(gx) is np.ndarray and type(gk) is np.ndarray
    assert gx.dtype == rx.dtype and gk.dtype == rk.dtype
    # sums of 144 (grad x: taps x bank) and 128 (grad k: items x outputs) float32
    # products, both sides within the contract's tolerance of the exact sums
    g_max = np.abs(g).max()
    np.testing.assert_allclose(gx, rx, rtol=0, atol=2e-5 * 144 * np.abs(k).max() * g_max)
    np.testing.assert_allclose(gk, rk, rtol=0, atol=2e-5 * 128 * np.abs(x).max() * g_max)


def test_torch_hidden_from_imports_is_not_imported():
    """sys.modules["torch"] = None (how tests block an import) is not an imported torch."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, batchconv as bc\n"
        "y = bc.correlate(np.ones((2, 12, 12, 32), np.float32),"
        " np.ones((3, 3, 32, 64), np.float32), 'nhwc,hwco->nhwo|hw')\n"
        "assert y.shape == (2, 10, 10, 64) and float(y[0, 0, 0, 0]) == 288.0\n"
    )
    _runs_clean(code)


@pytest.mark.parametrize("joined", [False, True])
def test_a_dask_graph_keeps_the_setting_it_was_built_with(joined, rng, monkeypatch):
    """Dask computes the pieces in its own threads, whose use_torch is the default: the
    graph carries the setting of the thread that built it."""
    da = pytest.importorskip("dask.array")
    from batchconv.methods import torch_direct

    calls = []
    conv = torch_direct.convolve_grouped  # (every torch_direct call ends there)
    monkeypatch.setattr(
        torch_direct, "convolve_grouped", lambda *a, **k: calls.append(1) or conv(*a, **k)
    )
    x = rand(rng, (4, 56, 56, 32), np.float32)  # (pieces of test_a_cnn_layer's layer)
    k = rand(rng, (3, 3, 32, 64), np.float32)
    workers = max(2, torch.get_num_threads())  # (torch's threads must fit)
    with bc.use_torch(joined):
        lazy = bc.correlate(da.from_array(x, chunks=(2, 56, 56, 32)), k, NHWC, workers=workers)
        piece = bc.plan(x[:2], k, NHWC, workers=workers).method
        assert (piece == "torch_direct") == joined
    y = lazy.compute(scheduler="threads")
    assert bool(calls) == joined
    with bc.use_torch(False):
        ref = bc.correlate(x, k, NHWC)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
