"""batchconv.compat.scipy_signal against scipy.signal: SciPy's own test classes for
correlate, convolve, correlate2d and convolve2d (test_signaltools.py, unmodified) run on
ours (tests/scipy_suites/signal_shim.py); fftconvolve/oaconvolve with axes directly."""

import numpy as np
import pytest
from helpers import run_scipy_tests

from batchconv.compat import scipy_signal as ours

signal = pytest.importorskip("scipy.signal")
CLASSES = (
    "TestConvolve and not FFT and not OA or TestConvolve2d or TestCorrelateReal or "
    "TestCorrelate or TestCorrelateComplex or TestCorrelate2d"
)


def test_scipys_own_classes_pass():
    pytest.importorskip("scipy.signal.tests.test_signaltools")
    run_scipy_tests("scipy.signal.tests.test_signaltools", "signal_shim", CLASSES)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_fftconvolve_and_oaconvolve_with_axes(mode):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 40, 30)), rng.standard_normal((3, 5, 7))
    for f, g in ((ours.fftconvolve, signal.fftconvolve), (ours.oaconvolve, signal.oaconvolve)):
        np.testing.assert_allclose(
            f(a, b, mode=mode, axes=(1, 2)), g(a, b, mode=mode, axes=(1, 2)), atol=1e-10
        )
        np.testing.assert_allclose(
            f(a, b[:1], mode=mode, axes=(1, 2)), g(a, b[:1], mode=mode, axes=(1, 2)), atol=1e-10
        )
        np.testing.assert_allclose(f(a, b, mode=mode), g(a, b, mode=mode), atol=1e-10)
