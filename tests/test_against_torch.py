"""batchconv against torch.nn.functional.conv1d/2d/3d (cross-correlations), when torch is
installed (skipped otherwise; torch is never required)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rand
from naive import tolerance, window_abs_bound

import batchconv as bc

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2), (3, 2)])
def test_conv_nd_layers(d, stride, dilation, dtype, method, rng):
    sizes = {1: (23,), 2: (13, 12), 3: (9, 8, 7)}[d]
    ksz = {1: (4,), 2: (3, 2), 3: (2, 3, 2)}[d]
    x, w = rand(rng, (2, 3, *sizes), dtype), rand(rng, (4, 3, *ksz), dtype)
    letters = "hwd"[:d]
    spec = f"nc{letters},kc{letters}->nk{letters}|{letters}"
    y = bc.correlate(x, w, spec, stride=stride, dilation=dilation, method=method)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[d]
    ref = conv(
        torch.from_numpy(x).double(), torch.from_numpy(w).double(), stride=stride, dilation=dilation
    ).numpy()
    S = window_abs_bound(x, w, spec, stride=stride, dilation=dilation)
    assert y.shape == ref.shape and y.dtype == dtype
    assert np.all(np.abs(y - ref) <= tolerance(dtype) * S)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_grouped_depthwise_and_padding(method, rng):
    # depthwise: groups = channels, one filter per channel -> a paired axis
    x, w = rand(rng, (2, 4, 11, 10), np.float64), rand(rng, (4, 3, 3), np.float64)
    y = bc.correlate(x, w, "nchw,chw->nchw|hw", mode="same", method=method)
    ref = F.conv2d(
        torch.from_numpy(x), torch.from_numpy(w)[:, None], padding="same", groups=4
    ).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    # circular padding == numpy.pad's "wrap"
    w2 = rand(rng, (5, 4, 3, 3), np.float64)
    y = bc.correlate(x, w2, "nchw,kchw->nkhw|hw", mode="same", padding="wrap", method=method)
    xt = F.pad(torch.from_numpy(x), (1, 1, 1, 1), mode="circular")
    np.testing.assert_allclose(
        y, F.conv2d(xt, torch.from_numpy(w2)).numpy(), rtol=1e-12, atol=1e-12
    )


def test_seed004_unfold_recipe_dot(rng):
    """The seed's unfold recipe, with a product instead of |difference|."""
    img = rng.random((3, 3, 37, 40)).astype(np.float32)
    knl = rng.random((3, 10, 9)).astype(np.float32)
    t = torch.from_numpy(img)
    patched = t.unfold(-2, 10, 2).unfold(-2, 9, 2).movedim(1, -3)
    ref = (patched * torch.from_numpy(knl)).sum(dim=(-3, -2, -1)).numpy()
    y = bc.correlate(img, knl, "bchw,chw->bhw|hw", stride=2)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * 270)
