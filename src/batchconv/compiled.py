"""Optional compiled kernels (numba): SAD and window sums.

They are used when numba is installed and ``USE_NUMBA`` is true (set the environment
variable ``BATCHCONV_DISABLE_NUMBA=1``, or assign ``batchconv.compiled.USE_NUMBA = False``,
to run the NumPy code instead; the tests run both). numba is imported, and the kernels
compiled (once per dtype, cached on disk), only on first use.

>>> import batchconv.compiled as compiled
>>> compiled.enabled() in (True, False)
True
"""

from __future__ import annotations

import os

from .xp import has_module

__all__ = ["USE_NUMBA", "enabled", "kernels"]

USE_NUMBA = os.environ.get("BATCHCONV_DISABLE_NUMBA", "") in ("", "0")


def enabled() -> bool:
    """True when the compiled kernels run (numba installed and not switched off)."""
    return USE_NUMBA and has_module("numba")


def kernels():
    """The module of compiled kernels (imports numba)."""
    from . import _numba_kernels

    return _numba_kernels
