"""The torch methods on a CUDA device (issue #8): the checks of test_torch_methods.py with
CUDA tensors, plus what only a GPU shows (the result stays on the device, TF32 is off
inside our calls, the budget comes from the device). Skipped without a GPU; on a GPU
machine: ``python -m pytest tests/test_cuda.py``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rand
from helpers import check, check_metric
from test_correlate import CASES, check_case
from test_metrics import CASES as METRIC_CASES

import batchconv as bc
from batchconv.problem import make_problem

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

METHODS = ["torch_direct", "torch_fft"]


def _cuda(f, x, w, spec=None, **kw):
    y = f(
        torch.from_numpy(np.ascontiguousarray(x)).cuda(),
        torch.from_numpy(np.ascontiguousarray(w)).cuda(),
        spec,
        **kw,
    )
    assert isinstance(y, torch.Tensor) and y.device.type == "cuda"
    return y.cpu().numpy()


@pytest.mark.parametrize("method", METHODS + ["auto"])
@pytest.mark.parametrize(
    "dtype", [np.float64, np.float32, np.int32, np.complex64], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matrix(case, mode, dtype, method, rng):
    _, spec, xs, ws, _ = case
    if method == "torch_direct" and make_problem(xs, dtype, ws, dtype, spec).ndim > 3:
        pytest.skip("torch convolutions take 1 to 3 sliding axes")
    check_case(case, mode, dtype, method, rng, call=_cuda)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "padding,cval", [("constant", 0.0), ("constant", 2.5), ("reflect", 0), ("edge", 0), ("wrap", 0)]
)
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), ((3, 2), (1, 2))])
def test_geometry(padding, cval, stride, dilation, method, rng):
    x, w = rand(rng, (2, 3, 19, 17), np.float32), rand(rng, (4, 3, 4, 3), np.float32)
    for mode in ("same", "full"):
        check(
            x,
            w,
            "nchw,kchw->nkhw|hw",
            method=method,
            mode=mode,
            padding=padding,
            cval=cval,
            stride=stride,
            dilation=dilation,
            call=_cuda,
        )


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "argmax", "argmin"])
def test_reduce(reduce, rng):
    x, w = rand(rng, (3, 2, 19, 18), np.float32), rand(rng, (4, 2, 3, 3), np.float32)
    for method in METHODS:
        check(x, w, "nchw,kchw->nk|hw", method=method, mode="same", reduce=reduce, call=_cuda)


def test_float32_contract_with_tf32_default(rng):
    """torch's default lets cuDNN use TF32 (about 1e-3 relative); our calls turn it off and
    restore the user's setting."""
    x = torch.randn(16, 16, 64, 64, device="cuda")
    w = torch.randn(32, 16, 15, 15, device="cuda")
    before = torch.backends.cudnn.conv.fp32_precision
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    try:
        y = bc.correlate(x, w, "nchw,kchw->nkhw|hw", method="torch_direct")
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    finally:
        torch.backends.cudnn.conv.fp32_precision = before
    ref = torch.nn.functional.conv2d(x.double(), w.double())
    bound = 1e-5 * torch.nn.functional.conv2d(x.double().abs(), w.double().abs())
    assert bool(((y.double() - ref).abs() <= bound).all())


def test_nonfinite_and_oom_free_result(rng):
    x, w = rand(rng, (3, 300), np.float32), rand(rng, (2, 9), np.float32)
    x[1, 7] = np.nan
    for method in METHODS:
        y = _cuda(bc.correlate, x, w, method=method, mode="same")
        ref = bc.correlate(x, w, method="direct", mode="same")
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))


def test_default_budget_is_device_memory():
    """Half the free memory, counting what torch's allocator caches unused (planning
    moves memory between the two: their sum is what stays put)."""
    x, w = torch.randn(8, 64, 64, device="cuda"), torch.randn(4, 5, 5, device="cuda")
    free = (
        torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    )
    p = bc.plan(x, w)
    assert p.device.startswith("cuda") and 0.4 * free < p.memory <= 0.5 * free + (16 << 20)
    assert p.method in METHODS


METRIC_PAIRS = [
    ("ssd", "torch_direct"),
    ("ssd", "torch_fft"),
    ("sad", "torch_direct"),
    ("ncc", "torch_direct"),
    ("ncc", "torch_fft"),
    ("cosine", "torch_direct"),
    ("cosine", "torch_fft"),
    ("ncc", "auto"),
    ("sad", "auto"),
]


@pytest.mark.parametrize("metric,method", METRIC_PAIRS, ids=[f"{a}-{b}" for a, b in METRIC_PAIRS])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("case", METRIC_CASES, ids=[c[0] for c in METRIC_CASES])
def test_metric_matrix(case, mode, dtype, metric, method, rng):
    """Every metric on the GPU (SAD on the Triton kernel when Triton is installed, else
    plain torch), the cases of test_metrics.py."""
    _, spec, xs, ws, reduce = case
    if (
        method == "torch_direct"
        and metric != "sad"
        and make_problem(xs, dtype, ws, dtype, spec).ndim > 3
    ):
        pytest.skip("torch convolutions take 1 to 3 sliding axes")
    check_metric(
        rand(rng, xs, dtype),
        rand(rng, ws, dtype),
        spec,
        metric=metric,
        method=method,
        mode=mode,
        reduce=reduce,
        call=_cuda,
    )


@pytest.mark.parametrize(
    "metric,method", METRIC_PAIRS[:7], ids=[f"{a}-{b}" for a, b in METRIC_PAIRS[:7]]
)
def test_metric_geometry(metric, method, rng):
    x, w = rand(rng, (2, 2, 13, 41), np.float32), rand(rng, (3, 2, 3, 4), np.float32)
    for mode, stride, dilation, padding in (
        ("same", (2, 3), 1, "reflect"),
        ("full", 1, (2, 1), "constant"),
        ("valid", 2, (1, 2), "wrap"),
    ):
        check_metric(
            x,
            w,
            "nchw,kchw->nkhw|hw",
            metric=metric,
            method=method,
            mode=mode,
            stride=stride,
            dilation=dilation,
            padding=padding,
            call=_cuda,
        )


def test_seed004_sad_on_the_gpu_memory_is_the_output():
    """Seed 004 at a quarter of its batch: Triton SAD (when installed), stride 2, equal to
    the unfold recipe, and nothing beyond the result allocated."""
    from batchconv.methods import torch_sad

    g = torch.Generator(device="cpu").manual_seed(4)
    image = torch.rand(16, 3, 256, 256, generator=g).cuda()
    kernel = torch.rand(3, 16, 16, generator=g).cuda()
    plan = bc.plan(image, kernel, "bchw,chw->bhw|hw", metric="sad", stride=2)
    assert plan.method == "torch_direct"
    if __import__("importlib").util.find_spec("triton"):
        assert torch_sad.uses_triton(plan.problem, plan.device) and "Triton" in plan.explain()
    y = plan(image)
    patched = image.unfold(-2, 16, 2).unfold(-2, 16, 2)
    ref = patched.movedim(1, -3).double().sub(kernel.double()).abs().sum(dim=(-3, -2, -1))
    assert y.shape == ref.shape and y.device.type == "cuda"
    assert float((y.double() - ref).abs().max()) <= 1e-5 * 768
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    y = plan(image)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - base <= 2 * y.numel() * 4 + (1 << 20)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="one CUDA device")
def test_sad_on_a_device_that_is_not_the_current_one(rng):
    """Triton launches on the current device: the kernel must switch to the tensors'."""
    x, w = rand(rng, (2, 3, 40, 40), np.float32), rand(rng, (3, 5, 5), np.float32)
    y = bc.correlate(
        torch.from_numpy(x).to("cuda:1"),
        torch.from_numpy(w).to("cuda:1"),
        "bchw,chw->bhw|hw",
        metric="sad",
        stride=2,
    )
    assert y.device == torch.device("cuda:1")
    ref = bc.correlate(x, w, "bchw,chw->bhw|hw", metric="sad", stride=2)
    np.testing.assert_allclose(y.cpu().numpy(), ref, rtol=1e-5, atol=1e-4)


def test_measured_planning_on_cuda(rng):
    """'measure' times the torch methods on the device; 'auto' does when the estimates are
    close, and remembers the choice for the shapes."""
    from batchconv import measure

    x = torch.randn(4, 16, 96, 96, device="cuda")
    w = torch.randn(32, 16, 15, 15, device="cuda")
    p = bc.plan(x, w, "nchw,kchw->nkhw|hw", method="measure")
    assert p.reason.startswith("fastest when timed on cuda") and p.method in METHODS
    auto = bc.plan(x, w, "nchw,kchw->nkhw|hw")
    assert auto.reason.startswith(("fastest when timed on cuda", "lowest estimated time"))
    assert len(measure._choices) >= 1
    check(
        rand(rng, (3, 2, 40, 36), np.float32),
        rand(rng, (4, 2, 9, 9), np.float32),
        "nchw,kchw->nkhw|hw",
        method="measure",
        call=_cuda,
    )


def test_core_metric_and_property_suites_on_cuda():
    """test_correlate.py, test_metrics.py and test_properties.py with every check() on
    CUDA tensors (``helpers.ARRAYS``), in a subprocess."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    env = {**os.environ, "BATCHCONV_TEST_ARRAYS": "cuda"}
    files = [str(tests / f) for f in ("test_correlate.py", "test_metrics.py", "test_properties.py")]
    import importlib.util

    workers = ["-n", "8"] if importlib.util.find_spec("xdist") else []  # pytest-xdist
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, *files],
        cwd=tests.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
