"""Exact answers around NaN and Inf for the FFT method, and for float32 sums that
overflow on the way (the FFT's and the direct method's).

A transform spreads one non-finite sample over every output of its item. Instead, the
planner transforms the item with zeros in those places, finds the windows that cover a
non-finite sample (padding included: 'reflect' or 'wrap' padding repeats it) and
recomputes just those windows as plain sums over their taps (in float64), so each output
is what the direct sum gives (NaN, +-Inf, or NaN for inf - inf). The direct method sums
again, the same way, float32 windows whose sums passed the float's range on the way.

>>> import numpy as np, batchconv as bc
>>> x = np.arange(8.0)[None]; x[0, 3] = np.nan
>>> bc.correlate(x, np.ones(2), method="fft")
array([[ 1.,  3., nan, nan,  9., 11., 13.]])
"""

from __future__ import annotations

from math import prod

import numpy as np

from .geometry import pad_sliding
from .problem import Problem

__all__ = ["REDO_BYTES", "affected_windows", "recompute_windows", "window_values"]

# bytes a method's redo works in at once (outside the plan's ``memory``: only data that
# holds NaN/Inf or can overflow comes here): the float64 sums of windows summed again
# (recompute_windows' default), and the FFT's groups of items transformed again scaled
REDO_BYTES = 16 << 20


def affected_windows(p: Problem, bad: np.ndarray, padded: bool | None = None) -> np.ndarray:
    """``(b, P, *O)`` booleans: the windows that cover a True of ``bad`` ``(b, P, *S)``,
    the padding included (True where ``padded``; None: where a constant padding value is
    NaN or Inf). One pass per tap and axis (the window is a product of taps)."""
    cval_bad = p.padding == "constant" and not np.isfinite(p.cval)
    if padded is not None:
        cval_bad = padded
    a = pad_sliding(bad[:, None], p.geoms, p.padding, cval_bad, 3)[:, 0]
    for i, g in enumerate(p.geoms):
        ax = 2 + i
        out = np.zeros(a.shape[:ax] + (g.out,) + a.shape[ax + 1 :], bool)
        for j in range(g.m):
            start = j * g.dilation
            sl = [slice(None)] * a.ndim
            sl[ax] = slice(start, start + (g.out - 1) * g.stride + 1, g.stride)
            out |= a[tuple(sl)]
        a = out
    return a


def recompute_windows(
    p: Problem,
    xb: np.ndarray,
    wc: np.ndarray,
    block: np.ndarray,
    where: np.ndarray,
    k0: int,
    k1: int,
    budget: int = REDO_BYTES,
) -> None:
    """Overwrite ``block`` (b, k, P, *O) at the windows ``where`` (b, P, *O) with their
    plain sums over the taps of the canonical items ``xb`` (b, C, P, *S) and filters
    ``wc[k0:k1]``, a few windows at a time within ``budget`` bytes."""
    for index, values in window_values(p, xb, wc, where, k0, k1, budget):
        block[index] = values


def window_values(
    p: Problem, xb: np.ndarray, wc: np.ndarray, where: np.ndarray, k0: int, k1: int, budget: int
):
    """The plain sums over the taps of the windows ``where`` (b, P, *O) of the canonical
    items ``xb`` (b, C, P, *S) with the filters ``wc[k0:k1]``, a few windows at a time
    within ``budget`` bytes: yields ``(index, values)``, ``values`` (n, k) to be written
    at ``block[index]`` of a (b, k, P, *O) block (index arrays and a slice)."""
    idx = np.nonzero(where)  # (b, p, o_1, ..., o_d)
    n = idx[0].size
    if n == 0:
        return
    xp = pad_sliding(xb, p.geoms, p.padding, p.cval, 3)
    xp = np.moveaxis(xp, 1, -1)  # (b, P, *Sp, C): a patch is (*T, C)
    d, k = p.ndim, k1 - k0
    # summed in float64 (complex128): partial sums of float32 windows whose true value
    # fits must not overflow on the way (taps -1, 0, 1, 1 over 3e38s: 3e38, not inf)
    wide = np.promote_types(p.dtype, np.float64)
    per_window = (k + 1) * p.C * prod(p.T) * wide.itemsize * 2
    step = max(1, budget // max(per_window, 1))
    for s0 in range(0, n, step):
        sel = [ix[s0 : s0 + step] for ix in idx]
        m = sel[0].size
        pos = []
        for i, g in enumerate(p.geoms):
            shape = [m] + [1] * d
            shape[1 + i] = g.m
            pos.append(
                (sel[2 + i][:, None] * g.stride + np.arange(g.m)[None, :] * g.dilation).reshape(
                    shape
                )
            )
        lead = [ix.reshape([m] + [1] * d) for ix in sel[:2]]
        patches = xp[tuple(lead + pos)].reshape(m, -1, p.C)  # (m, taps, C)
        wsel = wc[k0:k1][:, :, sel[1]].reshape(k, p.C, m, -1)  # (k, C, m, taps)
        # the taps flattened: any number of sliding axes (einsum has 52 letters)
        yield (sel[0], slice(None), *sel[1:]), np.einsum("ntc,kcnt->nk", patches, wsel, dtype=wide)
