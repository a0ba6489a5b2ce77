"""Optional compiled kernels (numba): window rows (SAD, and the direct correlation where
there is nothing for a GEMM to contract) and window sums.

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
from math import prod

from .geometry import padded_copy_bytes
from .problem import Problem
from .xp import get_workers, has_module

__all__ = [
    "USE_NUMBA",
    "enabled",
    "kernels",
    "long_axis_last",
    "window_rows_bytes",
    "window_rows_fit",
]

USE_NUMBA = os.environ.get("BATCHCONV_DISABLE_NUMBA", "") in ("", "0")


def enabled() -> bool:
    """True when the compiled kernels run (numba installed and not switched off)."""
    return USE_NUMBA and has_module("numba")


def kernels():
    """The module of compiled kernels (imports numba)."""
    from . import _numba_kernels

    return _numba_kernels


def long_axis_last(p: Problem) -> tuple[int, ...] | None:
    """The order of the sliding axes in which the window-rows kernel runs ``p``: the
    longest output axis last when the last one is short (its rows would be mostly padding
    to the vector width), else None (as they are)."""
    longest = max(range(p.ndim), key=lambda i: p.O[i])
    if p.O[-1] >= 64 or p.O[longest] < 4 * p.O[-1]:
        return None
    return tuple(i for i in range(p.ndim) if i != longest) + (longest,)


def window_rows_bytes(p: Problem, b: int) -> int:
    """Temporaries of a method running the window-rows kernel on ``b`` items, at most:
    the padded copy of the chunk (:func:`geometry.padded_copy_bytes`), then the kernel's
    own: the padded chunk split into ``stride`` phases along the kernel's last axis (each
    row padded by 16 samples; no copy at all where stride 1 and a contiguous last axis let
    the kernel read the input in place, which depends on the layout, not on the problem),
    and a row of float64 sums per thread."""
    order = long_axis_last(p) or tuple(range(p.ndim))
    geoms = [p.geoms[i] for i in order]
    g = geoms[-1]
    lead = b * p.C * p.P * prod(q.padded for q in geoms[:-1])
    return (
        padded_copy_bytes(p, b)
        + lead * g.stride * (-(-g.padded // g.stride) + 16) * p.dtype.itemsize
        + get_workers() * 16 * (p.O[order[-1]] + 64)
    )


def window_rows_fit(p: Problem, budget: int | None) -> bool:
    """True when one item's window-rows temporaries fit ``budget`` (None: no budget):
    the kernel copies whole items, where the NumPy fallbacks' tiles need less."""
    return budget is None or window_rows_bytes(p, 1) <= budget
