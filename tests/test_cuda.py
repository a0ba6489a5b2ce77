"""The torch methods on a CUDA device (issue #8): the checks of test_torch_methods.py with
CUDA tensors, plus what only a GPU shows (the result stays on the device, TF32 is off
inside our calls, the budget comes from the device). Skipped without a GPU; on a GPU
machine: ``python -m pytest tests/test_cuda.py``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rand
from helpers import check
from test_correlate import CASES

import batchconv as bc
from batchconv.problem import make_problem

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

METHODS = ["torch_direct", "torch_fft"]


def _cuda(f, x, w, spec=None, **kw):
    y = f(torch.from_numpy(np.ascontiguousarray(x)).cuda(),
          torch.from_numpy(np.ascontiguousarray(w)).cuda(), spec, **kw)
    assert isinstance(y, torch.Tensor) and y.device.type == "cuda"
    return y.cpu().numpy()


@pytest.mark.parametrize("method", METHODS + ["auto"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.complex64],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matrix(case, mode, dtype, method, rng):
    _, spec, xs, ws, reduce = case
    if reduce in ("max", "min") and np.dtype(dtype).kind == "c":
        pytest.skip("max of complex values is undefined")
    if method == "torch_direct" and make_problem(xs, dtype, ws, dtype, spec).ndim > 3:
        pytest.skip("torch convolutions take 1 to 3 sliding axes")
    check(rand(rng, xs, dtype), rand(rng, ws, dtype), spec, method=method, mode=mode,
          reduce=reduce, call=_cuda)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("padding,cval", [("constant", 0.0), ("constant", 2.5), ("reflect", 0),
                                          ("edge", 0), ("wrap", 0)])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), ((3, 2), (1, 2))])
def test_geometry(padding, cval, stride, dilation, method, rng):
    x, w = rand(rng, (2, 3, 19, 17), np.float32), rand(rng, (4, 3, 4, 3), np.float32)
    for mode in ("same", "full"):
        check(x, w, "nchw,kchw->nkhw|hw", method=method, mode=mode, padding=padding,
              cval=cval, stride=stride, dilation=dilation, call=_cuda)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "argmax", "argmin"])
def test_reduce(reduce, rng):
    x, w = rand(rng, (3, 2, 19, 18), np.float32), rand(rng, (4, 2, 3, 3), np.float32)
    for method in METHODS:
        check(x, w, "nchw,kchw->nk|hw", method=method, mode="same", reduce=reduce,
              call=_cuda)


def test_float32_contract_with_tf32_default(rng):
    """torch's default lets cuDNN use TF32 (about 1e-3 relative); our calls turn it off and
    restore the user's setting."""
    x = torch.randn(16, 16, 64, 64, device="cuda")
    w = torch.randn(32, 16, 15, 15, device="cuda")
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    y = bc.correlate(x, w, "nchw,kchw->nkhw|hw", method="torch_direct")
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
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
    x, w = torch.randn(8, 64, 64, device="cuda"), torch.randn(4, 5, 5, device="cuda")
    p = bc.plan(x, w)
    free = torch.cuda.mem_get_info()[0]
    assert p.device.startswith("cuda") and 0.3 * free < p.memory <= 0.5 * free + (1 << 20)
    assert p.method in METHODS
    with pytest.raises(NotImplementedError, match="no torch method"):
        bc.correlate(x, w, metric="ncc")
