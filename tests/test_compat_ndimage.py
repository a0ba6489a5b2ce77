"""batchconv.compat.ndimage against scipy.ndimage: SciPy's own tests of correlate,
convolve, correlate1d and convolve1d run on ours (tests/scipy_suites/ndimage_shim.py),
and every mode x origin x even/odd kernel x 1-3 dims compared directly."""

from itertools import product

import numpy as np
import pytest
from helpers import run_scipy_tests

from batchconv.compat import ndimage as ours

ndimage = pytest.importorskip("scipy.ndimage")


def test_scipys_own_tests_pass():
    """SciPy's test_filters.py, its correlate/convolve tests, unmodified, with our four
    functions in place of SciPy's."""
    pytest.importorskip("scipy.ndimage.tests.test_filters")
    run_scipy_tests("scipy.ndimage.tests.test_filters", "ndimage_shim", "correlate or convolve")


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("even", [False, True])
@pytest.mark.parametrize("mode", list(ours.MODES))
def test_every_mode_origin_and_kernel(ndim, even, mode):
    rng = np.random.default_rng(ndim * 10 + even)
    x = rng.standard_normal((9, 8, 7)[:ndim])
    sizes = (4, 2, 4)[:ndim] if even else (3, 5, 3)[:ndim]
    w = rng.standard_normal(sizes)
    ranges = [range(-(m // 2), (m - 1) // 2 + 1) for m in sizes]
    for origin in product(*ranges):
        for f, g in ((ours.correlate, ndimage.correlate), (ours.convolve, ndimage.convolve)):
            want = g(x, w, mode=mode, cval=0.75, origin=origin)
            got = f(x, w, mode=mode, cval=0.75, origin=origin)
            np.testing.assert_allclose(got, want, atol=1e-12, err_msg=f"{f.__name__} {origin}")
    for axis in range(ndim):
        w1 = w.ravel()[: sizes[0]]
        for o in range(-(sizes[0] // 2), (sizes[0] - 1) // 2 + 1):
            for f, g in (
                (ours.correlate1d, ndimage.correlate1d),
                (ours.convolve1d, ndimage.convolve1d),
            ):
                want = g(x, w1, axis=axis, mode=mode, cval=-1.0, origin=o)
                np.testing.assert_allclose(
                    f(x, w1, axis=axis, mode=mode, cval=-1.0, origin=o), want, atol=1e-12
                )


def test_dtypes_and_outputs():
    rng = np.random.default_rng(3)
    ints = rng.integers(-50, 50, (12, 10)).astype(np.int16)
    w = rng.standard_normal((3, 3))
    np.testing.assert_array_equal(ours.correlate(ints, w), ndimage.correlate(ints, w))
    out = np.empty((12, 10), np.float32)
    assert ours.convolve(ints, w, output=out) is out
    np.testing.assert_allclose(out, ndimage.convolve(ints, w, output=np.float32), rtol=1e-6)
    z = rng.standard_normal((12, 10)) + 1j * rng.standard_normal((12, 10))
    wc = w + 1j * w[::-1]
    np.testing.assert_allclose(
        ours.correlate(z, wc, mode="wrap"), ndimage.correlate(z, wc, mode="wrap"), atol=1e-12
    )
    np.testing.assert_allclose(
        ours.correlate(ints, w, axes=(1, 0), origin=(1, -1)),
        ndimage.correlate(ints, w, axes=(1, 0), origin=(1, -1)),
    )
