"""A pytest plugin (``-p ndimage_shim``) that runs SciPy's own ndimage filter tests on
batchconv.compat.ndimage: ``scipy.ndimage``'s correlate, convolve, correlate1d and
convolve1d are replaced by ours before the test modules are imported (so their
parametrizations hold ours too), with SciPy's array-API capability entries."""

import scipy.ndimage
from scipy._lib._array_api import xp_capabilities_table

from batchconv.compat import ndimage as ours

for name in ("correlate", "convolve", "correlate1d", "convolve1d"):
    theirs = getattr(scipy.ndimage, name)
    if theirs in xp_capabilities_table:
        xp_capabilities_table[getattr(ours, name)] = xp_capabilities_table[theirs]
    setattr(scipy.ndimage, name, getattr(ours, name))
