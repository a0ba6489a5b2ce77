"""batchconv against scipy.signal.correlate / convolve, pair by pair (skipped without SciPy)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rand
from naive import tolerance, window_abs_bound

import batchconv as bc

signal = pytest.importorskip("scipy.signal")


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize(
    "xs,ws",
    [((21,), (4,)), ((20,), (5,)), ((12, 11), (4, 3)), ((12, 11), (3, 6)), ((7, 6, 5), (2, 3, 4))],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
@pytest.mark.parametrize("convolve", [False, True])
def test_pairs_equal_scipy(convolve, dtype, xs, ws, mode, method, rng):
    x, w = rand(rng, (3, *xs), dtype), rand(rng, (2, *ws), dtype)
    f, g = (bc.convolve, signal.convolve) if convolve else (bc.correlate, signal.correlate)
    y = f(x, w, mode=mode, method=method)
    ref = np.array(
        [
            [
                g(
                    x[i].astype(np.complex128 if np.iscomplexobj(x) else np.float64),
                    w[k],
                    mode=mode,
                    method="direct",
                )
                for k in range(2)
            ]
            for i in range(3)
        ]
    )
    S = window_abs_bound(x, w, mode=mode, convolve=convolve)
    assert y.shape == ref.shape
    assert np.all(np.abs(y - ref) <= tolerance(dtype) * S)


def test_seed001_layout_equals_signal_convolve(rng):
    a, b = rand(rng, (20, 20, 5), np.float64), rand(rng, (5, 5), np.float64)
    ref = signal.convolve(a, b[..., None], "valid")
    for method in ["direct", "fft"]:
        y = bc.convolve(a, b, "hwn,hw->hwn|hw", method=method)
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
