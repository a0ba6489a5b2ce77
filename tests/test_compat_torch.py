"""batchconv.compat.torch against torch.nn.functional.conv1d/2d/3d and nn.Conv*d's
padding modes, on a hypothesis-drawn grid (float64, CPU)."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchconv.compat import torch as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    d=st.sampled_from([1, 2, 3]),
    padding_mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    as_numpy=st.booleans(),
    unbatched=st.booleans(),
)
def test_equals_torch(data, d, padding_mode, as_numpy, unbatched):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    g, cg, og = (data.draw(st.integers(1, 2)) for _ in range(3))
    k = [data.draw(st.integers(1, 3)) for _ in range(d)]
    n = [data.draw(st.integers(4, 8)) for _ in range(d)]
    stride, dilation = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    choices = ["valid", 0, 1, 2] + (["same"] if stride == 1 else [])
    padding = data.draw(st.sampled_from(choices))
    x = torch.from_numpy(rng.standard_normal((2, g * cg, *n)))
    w = torch.from_numpy(rng.standard_normal((g * og, cg, *k)))
    b = torch.from_numpy(rng.standard_normal(g * og)) if data.draw(st.booleans()) else None
    if unbatched:
        x = x[0]
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=g)
    layer = getattr(torch.nn, f"Conv{d}d")(
        g * cg, g * og, k, bias=b is not None, padding_mode=padding_mode, dtype=torch.float64, **kw
    )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (torch's note on even kernels with 'same')
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
        try:
            want = layer(x)
        except (RuntimeError, ValueError):  # e.g. reflect padding wider than the input
            return
    conv = getattr(F, f"conv{d}d")
    args = (x.numpy(), w.numpy(), None if b is None else b.numpy()) if as_numpy else (x, w, b)
    got = conv(*args, padding_mode=padding_mode, **kw)
    assert isinstance(got, np.ndarray if as_numpy else torch.Tensor)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), atol=1e-10)


def test_complex_is_not_conjugated():
    x = torch.randn(1, 2, 9, dtype=torch.complex128)
    w = torch.randn(3, 2, 3, dtype=torch.complex128)
    torch.testing.assert_close(F.conv1d(x, w, padding=1), TF.conv1d(x, w, padding=1))


def test_errors_as_torch_says_them():
    x, w = torch.ones(1, 4, 8, 8), torch.ones(2, 3, 3, 3)
    with pytest.raises(RuntimeError, match="channels"):
        F.conv2d(x, w)
    with pytest.raises(ValueError, match="strided"):
        F.conv2d(x, torch.ones(2, 4, 3, 3), padding="same", stride=2)
    with pytest.raises(ValueError, match="padding_mode"):
        F.conv2d(x, torch.ones(2, 4, 3, 3), padding_mode="mirror")
