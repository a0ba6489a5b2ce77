"""The metrics on torch tensors (issue #8): SAD (``methods/torch_sad.py``: plain torch
ops, and the Triton kernel under Triton's interpreter) and ssd/ncc/cosine
(``metrics/windowed_torch.py`` over ``torch_direct`` and ``torch_fft``), run here on CPU tensors
with the metrics' accuracy contract against the float64 loop (``helpers.check_metric``),
over the cases of ``test_metrics.py``. The same code runs on CUDA tensors
(``tests/test_cuda.py``). Skipped without torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import rand
from helpers import check_metric
from naive import naive_correlate
from test_metrics import CASES, _seed004_loop, nonfinite_filters_case

import batchconv as bc
from batchconv.problem import make_problem

torch = pytest.importorskip("torch")

PAIRS = [
    ("ssd", "torch_direct"),
    ("ssd", "torch_fft"),
    ("sad", "torch_direct"),
    ("ncc", "torch_direct"),
    ("ncc", "torch_fft"),
    ("cosine", "torch_direct"),
    ("cosine", "torch_fft"),
]
IDS = [f"{a}-{b}" for a, b in PAIRS]


def _tensors(f, x, w, spec=None, **kw):
    """Call ``f`` with CPU tensors, return NumPy (what ``check_metric`` compares)."""
    y = f(
        torch.from_numpy(np.ascontiguousarray(x)),
        torch.from_numpy(np.ascontiguousarray(w)),
        spec,
        **kw,
    )
    assert isinstance(y, torch.Tensor) and y.device.type == "cpu"
    return y.numpy()


def _check(x, w, spec=None, *, metric, method, **kw):
    if method == "torch_direct" and metric != "sad":
        if make_problem(np.shape(x), np.float64, np.shape(w), np.float64, spec).ndim > 3:
            pytest.skip("torch convolutions take 1 to 3 sliding axes")
    return check_metric(x, w, spec, metric=metric, method=method, call=_tensors, **kw)


@pytest.mark.parametrize("metric,method", PAIRS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matrix(case, mode, dtype, metric, method, rng):
    _, spec, xs, ws, reduce = case
    _check(
        rand(rng, xs, dtype),
        rand(rng, ws, dtype),
        spec,
        metric=metric,
        method=method,
        mode=mode,
        reduce=reduce,
    )


@pytest.mark.parametrize("metric,method", PAIRS, ids=IDS)
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
def test_geometry(metric, method, padding, cval, rng):
    """Strides, dilations and every padding, 2-D, with a bank and channels."""
    x, w = rand(rng, (2, 2, 13, 11), np.float64), rand(rng, (3, 2, 3, 4), np.float64)
    for mode, stride, dilation in (
        ("same", (2, 3), 1),
        ("full", 1, (2, 1)),
        ("valid", 2, (1, 2)),
        ("same", 3, 2),
    ):
        _check(
            x,
            w,
            "nchw,kchw->nkhw|hw",
            metric=metric,
            method=method,
            mode=mode,
            stride=stride,
            dilation=dilation,
            padding=padding,
            cval=cval,
        )


@pytest.mark.parametrize("metric,method", PAIRS, ids=IDS)
def test_long_windows(metric, method, rng):
    x, w = rand(rng, (2, 300), np.float32), rand(rng, (2, 40), np.float32)
    _check(x, w, metric=metric, method=method, stride=3, dilation=2, mode="same")


@pytest.mark.parametrize("metric", ["ssd", "sad"])
def test_integers_exact(metric, rng):
    x, w = rand(rng, (2, 3, 9, 8), np.int32), rand(rng, (2, 3, 3, 2), np.int16)
    y = _check(x, w, "nchw,kchw->nkhw|hw", metric=metric, method="torch_direct", mode="same")
    assert y.dtype == np.float64


@pytest.mark.parametrize("metric,method", PAIRS, ids=IDS)
@pytest.mark.parametrize("data", ["8bit", "offset"])
def test_large_mean(metric, method, data):
    """Centring keeps the contrast's precision (see test_metrics.test_large_mean)."""
    rng = np.random.default_rng(7)
    if data == "8bit":
        img = rng.integers(200, 256, size=(2, 3, 40, 36)).astype(np.float32)
    else:
        img = (1000 + 0.01 * rng.standard_normal((2, 3, 40, 36))).astype(np.float32)
    tpl = img[0, :, 10:22, 5:15].copy()
    tpl[0, 0, 0] += 1
    _check(img, tpl, "bchw,chw->bhw|hw", metric=metric, method=method)


@pytest.mark.parametrize("metric", ["ncc", "cosine"])
@pytest.mark.parametrize("method", ["torch_direct", "torch_fft"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_flat_windows_and_filters_give_zero(metric, method, dtype):
    x = torch.zeros((1, 30, 30), dtype=dtype)
    x[0, :, 15:] = 0.1 if metric == "ncc" else 0  # a flat region
    x[0, :, :15] = torch.from_numpy(np.random.default_rng(1).standard_normal((30, 15)))
    w = torch.from_numpy(np.random.default_rng(2).standard_normal((2, 5, 5))).to(dtype)
    w[1] = 0.5 if metric == "ncc" else 0  # a flat filter
    y = bc.correlate(x, w, metric=metric, method=method)
    assert (y[0, 0, :, 15:] == 0).all() and (y[0, 1] == 0).all()
    assert torch.isfinite(y).all() and (y.abs() <= 1).all()


@pytest.mark.parametrize("method", ["torch_direct", "torch_fft"])
def test_flatness_is_local(method):
    """A loud click far away leaves quiet windows unflattened (the floor is the
    window's own); an Inf far away leaves flat windows at exactly 0."""
    rng = np.random.default_rng(8)
    x = np.full((1, 8, 40), np.float32(rng.uniform(-5, 5)), np.float32)
    x[0, :, 20:] = rng.standard_normal((8, 20)) * 1000
    x[0, 7, 39] = np.inf
    w = rng.standard_normal((3, 12)).astype(np.float32)
    y = bc.correlate(torch.from_numpy(x), torch.from_numpy(w), metric="ncc", method=method)
    assert (y[0, :, :8] == 0).all()
    sig = 1e-5 * rng.standard_normal(200_000)
    sig[100_000:100_100] += rng.standard_normal(100)
    tpl = sig[1000:1016].copy()
    y = bc.correlate(
        torch.from_numpy(sig[None]), torch.from_numpy(tpl), metric="ncc", method=method
    )[0].numpy()
    assert abs(y[1000] - 1) < 1e-9
    assert (y != 0).mean() > 0.999
    ref = naive_correlate(sig[None, 990:1030], tpl, metric="ncc")[0]
    np.testing.assert_allclose(y[990:1015], ref, atol=1e-9)


@pytest.mark.parametrize("method", ["torch_direct", "torch_fft"])
def test_inf_and_nan_values_match_the_loop(method, rng):
    """ssd +Inf over an Inf (NaN over a NaN), ncc and cosine NaN, padding repeating the
    sample included; SAD the same through its own sums."""
    x = rng.standard_normal((2, 30, 25))
    x[0, 10, 12] = np.inf
    x[1, 3, 0] = -np.inf
    x[1, 20, 20] = np.nan
    w = rng.standard_normal((2, 4, 3))
    metrics = ("ssd", "ncc", "cosine") + (("sad",) if method == "torch_direct" else ())
    for metric in metrics:
        for padding, cval in (("constant", 0.0), ("reflect", 0.0), ("constant", np.inf)):
            kw = dict(metric=metric, mode="same", padding=padding, cval=cval)
            y = bc.correlate(torch.from_numpy(x), torch.from_numpy(w), method=method, **kw)
            with np.errstate(invalid="ignore", over="ignore"):
                ref = naive_correlate(x, w, **kw)
            y = y.numpy()
            assert (np.isnan(y) == np.isnan(ref)).all(), (metric, padding)
            assert (np.isposinf(y) == np.isposinf(ref)).all(), (metric, padding)
            ok = np.isfinite(ref)
            np.testing.assert_allclose(y[ok], ref[ok], rtol=1e-9, atol=1e-9)


def test_seed004_reproduced_on_tensors():
    rng = np.random.default_rng(4)
    image = torch.from_numpy(rng.random((2, 3, 21, 19), dtype=np.float32))
    kernel = torch.from_numpy(rng.random((3, 5, 4), dtype=np.float32))
    for stride in (1, 2, 3):
        want = _seed004_loop(image.numpy(), kernel.numpy(), stride)
        sad = bc.correlate(
            image, kernel, "bchw,chw->bhw|hw", metric="sad", stride=stride, method="torch_direct"
        )
        got = 1 - sad / kernel.numel()
        assert isinstance(got, torch.Tensor)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_planner_weighs_torch_metrics(rng, monkeypatch):
    x, w = torch.randn(4, 3, 40, 40), torch.randn(8, 3, 5, 5)
    spec = "nchw,kchw->nkhw|hw"
    p = bc.plan(x, w, spec, metric="ncc")
    every = {"direct", "fft", "winograd", "torch_direct", "torch_fft"}  # (5x5: winograd too)
    assert {c.method for c in p.candidates} == every
    assert "float64 window sums" in p.explain()
    sad = bc.plan(x, w, spec, metric="sad")
    assert {c.method for c in sad.candidates} == {"direct", "torch_direct"}
    assert "plain torch ops" in bc.plan(x, w, spec, metric="sad", method="torch_direct").explain()
    with pytest.raises(ValueError, match="'torch_fft' cannot compute.*no FFT form"):
        bc.correlate(x, w, spec, metric="sad", method="torch_fft")
    with pytest.raises(ValueError, match="4 sliding axes"):
        bc.correlate(
            torch.ones(2, 5, 4, 4, 3),
            torch.ones(2, 2, 3, 2, 2),
            metric="ncc",
            method="torch_direct",
        )
    # ssd on 4 sliding axes: torch_fft; SAD on 4: the plain-torch kernel
    x4, w4 = rand(rng, (1, 5, 4, 4, 3), np.float64), rand(rng, (2, 3, 2, 2), np.float64)
    _check(x4, w4, metric="ssd", method="torch_fft")
    _check(x4, w4, metric="sad", method="torch_direct")


def test_chunked_metric_blocks_agree(rng):
    x, w = rand(rng, (6, 2, 20, 18), np.float32), rand(rng, (5, 2, 4, 3), np.float32)
    spec = "nchw,kchw->nkhw|hw"
    for metric, method in PAIRS:
        whole = bc.correlate(
            torch.from_numpy(x), torch.from_numpy(w), spec, metric=metric, method=method
        )
        plan = bc.plan(
            torch.from_numpy(x),
            torch.from_numpy(w),
            spec,
            metric=metric,
            method=method,
            memory=100_000,
        )
        assert plan.chunk != (6, 5), (metric, method)
        np.testing.assert_allclose(
            plan(torch.from_numpy(x)).numpy(),
            whole.numpy(),
            rtol=1e-5,
            atol=1e-5 * float(whole.abs().max()),
        )


TRITON_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from conftest import rand
    from helpers import check_metric
    import batchconv as bc
    from batchconv.methods import torch_sad

    def call(f, x, w, spec=None, **kw):
        return f(torch.from_numpy(x), torch.from_numpy(w), spec, **kw).numpy()

    rng = np.random.default_rng(0)
    x = torch.ones(1, 3, 8, 9)
    plan = bc.plan(x, torch.ones(2, 3, 2, 2), metric="sad", method="torch_direct")
    assert torch_sad.uses_triton(plan.problem, "cpu") and "Triton" in plan.explain()
    cases = [
        ((3, 40), (2, 5), None, dict(mode="same", stride=3, dilation=2)),
        ((2, 3, 19, 37), (4, 3, 5, 4), "nchw,kchw->nkhw|hw",
         dict(mode="full", stride=(2, 1), dilation=(1, 2), padding="reflect")),
        ((2, 3, 9, 40), (3, 2, 3), "bchw,chw->bhw|hw", dict(stride=2)),
        ((2, 3, 7, 6), (3, 3, 2), "nchw,chw->nchw|hw", dict(mode="same")),
        ((1, 6, 5, 9), (2, 3, 2, 2), None, dict(mode="same", stride=(1, 2, 1))),
        ((2, 9, 70), (2, 3, 4), None, dict(reduce="argmin")),
    ]
    for dtype in (np.float32, np.float64):
        for xs, ws, spec, kw in cases:
            check_metric(rand(rng, xs, dtype), rand(rng, ws, dtype), spec, metric="sad",
                         method="torch_direct", call=call, **kw)
    ints = check_metric(rand(rng, (2, 9, 8), np.int32), rand(rng, (2, 3, 2), np.int32),
                        metric="sad", method="torch_direct", call=call, mode="same")
    assert ints.dtype == np.float64
    # the filters split over launches, and blocks written into strided chunks
    torch_sad._MAX_GRID_K = 2
    x, w = rand(rng, (5, 2, 12, 11), np.float32), rand(rng, (5, 2, 3, 3), np.float32)
    spec = "nchw,kchw->nkhw|hw"
    whole = check_metric(x, w, spec, metric="sad", method="torch_direct", call=call)
    plan = bc.plan(torch.from_numpy(x), torch.from_numpy(w), spec, metric="sad",
                   method="torch_direct", memory=3000)
    assert plan.chunk[1] < 5, plan.chunk
    np.testing.assert_allclose(plan(torch.from_numpy(x)).numpy(), whole, rtol=1e-6)
    print("triton sad ok")
""")


def test_triton_sad_kernel_under_the_interpreter():
    """The Triton SAD kernel, run by Triton's interpreter on CPU tensors (a subprocess:
    TRITON_INTERPRET must be set before Triton is imported). Skipped without Triton; the
    real kernel runs in tests/test_cuda.py."""
    pytest.importorskip("triton")
    tests = str(Path(__file__).parent)
    env = {**os.environ, "TRITON_INTERPRET": "1", "BATCHCONV_TRITON_INTERPRET": "1"}
    r = subprocess.run(
        [sys.executable, "-c", TRITON_SCRIPT.format(tests=tests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0 and "triton sad ok" in r.stdout, r.stderr[-3000:]


def test_triton_failure_falls_back_to_plain_torch(rng, monkeypatch):
    """A Triton kernel that cannot compile or launch (an old GPU, a broken toolchain):
    one warning, plain torch from then on, the right values."""
    import types

    from batchconv.methods import torch_sad

    def broken(*args, **kwargs):
        raise RuntimeError("ptxas fatal: unsupported gpu architecture (simulated)")

    class Kernel:  # kernel[grid](...) launches: here it fails
        def __getitem__(self, grid):
            return broken

    fake = types.ModuleType("batchconv._triton_kernels")
    fake.sad_kernel, fake.tile = Kernel, lambda rows: (8, 32)
    monkeypatch.setitem(sys.modules, "batchconv._triton_kernels", fake)
    monkeypatch.setattr(torch_sad, "INTERPRET", True)
    monkeypatch.setattr(torch_sad, "has_module", lambda name: True)
    monkeypatch.setattr(torch_sad, "_triton_failed", False)
    x, w = rand(rng, (2, 3, 10, 9), np.float64), rand(rng, (2, 3, 3, 2), np.float64)
    plan = bc.plan(
        torch.from_numpy(x),
        torch.from_numpy(w),
        "nchw,kchw->nkhw|hw",
        metric="sad",
        method="torch_direct",
    )
    assert "Triton" in plan.explain()
    with pytest.warns(RuntimeWarning, match="Triton SAD kernel failed.*plain torch"):
        y = plan(torch.from_numpy(x))
    np.testing.assert_allclose(
        y.numpy(), naive_correlate(x, w, "nchw,kchw->nkhw|hw", metric="sad"), rtol=1e-12
    )
    assert torch_sad._triton_failed and "plain torch" in plan.explain()


def test_sad_workspace_depends_on_the_kernel(monkeypatch):
    """The Triton kernel needs the padded chunk and the block; plain torch also the
    per-tap differences over the channels (C times the block)."""
    from batchconv.methods import torch_sad

    p = make_problem(
        (8, 64, 32, 32), np.float32, (16, 64, 3, 3), np.float32, "nchw,kchw->nkhw|hw", metric="sad"
    )
    monkeypatch.setattr(torch_sad, "has_module", lambda name: True)
    monkeypatch.setattr(torch_sad, "_triton_failed", False)
    on_gpu = torch_sad.TorchSAD("cuda:0").workspace_bytes(p, 8, 16)
    on_cpu = torch_sad.TorchSAD("cpu").workspace_bytes(p, 8, 16)
    block = 8 * 16 * 30 * 30 * 4
    assert on_gpu <= 2 * 8 * 64 * 32 * 32 * 4 + block and on_cpu > 60 * block


def test_plain_torch_sad_stays_within_its_estimate(rng):
    """Peak memory of the plain-torch SAD (torch's profiler) against workspace_bytes."""
    from torch.profiler import ProfilerActivity, profile

    from batchconv.methods import torch_sad

    x, w = torch.randn(4, 8, 60, 50), torch.randn(3, 8, 5, 4)
    p = make_problem(
        tuple(x.shape),
        np.float32,
        tuple(w.shape),
        np.float32,
        "nchw,kchw->nkhw|hw",
        metric="sad",
        mode="same",
    )
    method = torch_sad.TorchSAD("cpu")
    from batchconv.tensors import canonical_w, canonical_x

    st = method.prepare(p, canonical_w(p, w, "cpu"))
    xc = canonical_x(p, x)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        y = method.compute(p, st, xc, 0, 3)
    peak = live = 0
    events = sorted(
        (e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start
    )
    for e in events:  # allocations (+) and frees (-) in time order
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    assert peak - y.numel() * 4 <= method.workspace_bytes(p, 4, 3), peak


@pytest.mark.parametrize("method", ["torch_direct", "torch_fft"])
def test_nonfinite_filters_as_numpy(method, rng):
    """Filters holding NaN or Inf give what the NumPy metrics give
    (test_metrics.test_nonfinite_filters)."""
    x, w = nonfinite_filters_case(rng)
    for metric in ("ssd", "ncc", "cosine"):
        with np.errstate(all="ignore"):
            want = bc.correlate(x, w, metric=metric, method="direct")
        got = bc.correlate(
            torch.from_numpy(x), torch.from_numpy(w), metric=metric, method=method
        ).numpy()
        assert (np.isnan(got) == np.isnan(want)).all() and (np.isinf(got) == np.isinf(want)).all()
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-9, atol=1e-9)
