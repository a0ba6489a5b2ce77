"""torch CPU tensors in, torch tensors out (issue #8, first part): every spec case of the
core matrix and every metric, with the same values and dtypes as the NumPy call (which the
other tests check against the naive loop). Skipped without torch."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rand
from helpers import check_metric, run_suites
from test_correlate import CASES
from test_metrics import CASES as METRIC_CASES

import batchconv as bc

torch = pytest.importorskip("torch")


def _same(y_torch, y_numpy):
    assert isinstance(y_torch, torch.Tensor) and y_torch.device.type == "cpu"
    got = y_torch.numpy()
    assert got.dtype == y_numpy.dtype and got.shape == y_numpy.shape
    np.testing.assert_array_equal(got, y_numpy)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.complex64])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_core_cases(case, dtype, method, rng):
    _, spec, xs, ws, reduce = case
    if reduce in ("max", "min") and np.dtype(dtype).kind == "c":
        pytest.skip("max of complex values is undefined")
    x, w = rand(rng, xs, dtype), rand(rng, ws, dtype)
    for mode in ("valid", "same"):
        kw = dict(mode=mode, reduce=reduce, method=method)
        _same(
            bc.correlate(torch.from_numpy(x), torch.from_numpy(w), spec, **kw),
            bc.correlate(x, w, spec, **kw),
        )
    _same(
        bc.convolve(torch.from_numpy(x), w, spec, method=method, reduce=reduce),
        bc.convolve(x, w, spec, method=method, reduce=reduce),
    )


@pytest.mark.parametrize("metric", ["ssd", "sad", "ncc", "cosine"])
@pytest.mark.parametrize("case", METRIC_CASES, ids=[c[0] for c in METRIC_CASES])
def test_metric_cases(case, metric, rng):
    """NumPy's direct method on tensors gives NumPy's values; ``auto`` (which may pick a
    torch method: tests/test_torch_metrics.py) keeps the contract against the loop."""
    _, spec, xs, ws, reduce = case
    x, w = rand(rng, xs, np.float32), rand(rng, ws, np.float32)
    kw = dict(metric=metric, reduce=reduce, mode="same")
    _same(
        bc.correlate(torch.from_numpy(x), torch.from_numpy(w), spec, method="direct", **kw),
        bc.correlate(x, w, spec, method="direct", **kw),
    )

    def tensors(f, x, w, spec=None, **kw):
        y = f(torch.from_numpy(x), torch.from_numpy(w), spec, **kw)
        assert isinstance(y, torch.Tensor)
        return y.numpy()

    check_metric(x, w, spec, method="auto", call=tensors, **kw)


def test_plans_views_and_dtypes(rng):
    x = torch.from_numpy(rand(rng, (4, 20, 18), np.float32)).requires_grad_()
    w = torch.from_numpy(rand(rng, (3, 5, 4), np.float32))
    p = bc.plan(x, w, mode="same")
    with pytest.raises(TypeError, match="requires grad"):  # it would come back detached
        p(x)
    with torch.no_grad():
        y = p(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and not y.requires_grad
    assert isinstance(p(x.detach().numpy()), np.ndarray)  # the caller's type comes back
    _same(p(x[:2].detach()), p(x.detach().numpy()[:2]))
    idx = bc.correlate(x, w, reduce="argmax")  # (integers: no gradient, as torch's argmax)
    assert idx.dtype == torch.int64 and idx.shape == (4, 3, 2) and idx.grad_fn is None
    half = bc.correlate(x.detach().half(), w.half())
    assert half.dtype == torch.float32  # float16 computes in float32, as with NumPy
    bf = bc.correlate(x.detach().to(torch.bfloat16), w.to(torch.bfloat16))
    assert bf.dtype == torch.float32
    strided = x.detach().transpose(1, 2)  # a non-contiguous view
    _same(bc.correlate(strided, w), bc.correlate(strided.numpy(), w.numpy()))
    c = torch.complex(x.detach(), x.detach()).conj()  # a lazily conjugated view
    _same(
        bc.correlate(c, w.to(torch.complex64)),
        bc.correlate(
            np.conj(torch.complex(x.detach(), x.detach()).numpy()), w.numpy().astype(np.complex64)
        ),
    )


def test_odd_views_and_plan_signatures(rng):
    c = torch.randn(2, 16, 16, dtype=torch.complex64)
    neg = c.conj().imag  # a lazily negated view
    w = torch.randn(3, 3)
    _same(
        bc.correlate(neg, w, method="direct"),
        bc.correlate(-c.imag.numpy(), w.numpy(), method="direct"),
    )
    p = bc.plan(((4, 32, 32), torch.float32), w)
    assert p.problem.dtype == np.float32
    assert isinstance(p(torch.randn(4, 32, 32)), torch.Tensor)


def test_filters_as_nested_tuples_are_data():
    # a 2-row w written as tuples is not mistaken for a (shape, dtype) signature
    y = bc.correlate(np.ones((2, 5)), ((1.0, 2.0), (3.0, 4.0)))
    np.testing.assert_array_equal(
        y, bc.correlate(np.ones((2, 5)), np.array([[1.0, 2.0], [3.0, 4.0]]))
    )


def test_errors():
    with pytest.raises(TypeError, match="torch tensor on meta.*CPU and CUDA"):
        bc.correlate(torch.ones(2, 8, device="meta"), torch.ones(3))
    with pytest.raises(TypeError, match="torch.bool"):
        bc.correlate(torch.ones(2, 8, dtype=torch.bool), torch.ones(3))


def test_config_reports_torch_and_cuda(capsys):
    from batchconv.config import config

    details = config()["torch"]
    assert details["cuda_build"] == torch.version.cuda
    assert (details["device"] is None) == (not torch.cuda.is_available())
    bc.show_config()
    assert "torch cuda" in capsys.readouterr().out


def test_core_metric_and_property_suites_on_tensors():
    """Every check of the core matrix (test_correlate.py), the metrics (test_metrics.py)
    and the hypothesis fuzz (test_properties.py) again with CPU tensors in and out, and
    "direct"/"fft" read as torch_direct/torch_fft wherever those compute the problem
    (``helpers.ARRAYS``), in a subprocess so that the switch is set before collection."""
    run_suites("torch_methods", {}, timeout=1800)
