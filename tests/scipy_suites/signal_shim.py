"""A pytest plugin (``-p signal_shim``) that runs SciPy's own test_signaltools.py
classes for correlate, convolve, correlate2d and convolve2d on
batchconv.compat.scipy_signal: SciPy's functions are replaced by ours before the test
module is imported (it imports them by name), with SciPy's capability entries."""

import scipy.signal
from scipy._lib._array_api import xp_capabilities_table

from batchconv.compat import scipy_signal as ours

for name in ("correlate", "convolve", "correlate2d", "convolve2d"):
    theirs = getattr(scipy.signal, name)
    if theirs in xp_capabilities_table:
        xp_capabilities_table[getattr(ours, name)] = xp_capabilities_table[theirs]
    setattr(scipy.signal, name, getattr(ours, name))
