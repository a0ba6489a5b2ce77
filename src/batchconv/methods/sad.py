"""The SAD method: sum of absolute differences, which has no GEMM or FFT form.

``out[n, k, i] = sum_j |x[n, i * stride + j * dilation] - w[k, j]|`` over the window
(channels included). Two kernels compute it, both with memory O(output) beyond one copy of
the input chunk:

* the compiled window-rows kernel (``_numba_kernels.py``, see ``compiled.py``; shared with
  the direct method's one-filter case): one task per output row, run in parallel; the
  input's last axis is split into ``stride`` phases so that the inner loop over the output
  row reads contiguous memory and vectorises; it sums at most 64 taps in the compute dtype
  before adding them in float64;
* a NumPy fallback: shift-and-add over cache-sized output tiles, one pass per tap, which
  sums each tap row (the taps along the last axis) in the compute dtype and adds the rows
  in float64.

So float32 results keep float32's precision for large windows.

>>> import numpy as np, batchconv as bc
>>> bc.correlate(np.array([[1.0, 2.0, 4.0]]), np.array([1.0, 1.0]), metric="sad")
array([[1., 4.]])
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import prod

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import compiled
from ..geometry import pad_sliding, padded_copy_bytes
from ..memo import remembered
from ..problem import Problem
from ..xp import get_workers, parallel_for

__all__ = [
    "SADState",
    "prepare",
    "compute",
    "fuses_reduce",
    "workspace_bytes",
    "uses_numba",
    "estimate",
    "uses_window_rows",
    "describe",
]

_TILE = 1 << 15  # NumPy fallback: output elements per tile (stays in L2 with temporaries)
# NumPy's iterator buffers when a ufunc broadcasts over strided windows (two operands of
# 8192 float64): measured with tracemalloc, part of every tile's temporaries
_UFUNC_BUFFERS = 2 * 8192 * 8


# measured on the dev machine, not fitted: seconds per |a - b| term with the compiled
# kernel and with the NumPy fallback, and a fixed cost per call
_TERM_NUMBA = 8e-11
_TERM_NUMPY = 1.5e-9
_CALL = 1e-4


def estimate(p: Problem, device: str | None = None) -> float:
    """Estimated seconds of one call (the cost model's SAD row)."""
    terms = p.B * p.K * p.P * prod(p.O) * p.window_size
    return _CALL + terms * (_TERM_NUMBA if uses_numba() else _TERM_NUMPY)


def uses_numba() -> bool:
    """True when SAD runs on the compiled (numba) kernel."""
    return compiled.enabled()


def uses_window_rows(p: Problem, budget: int | None = None) -> bool:
    """True when the compiled kernel computes ``p`` within ``budget``: it copies a whole
    item (split into ``stride`` phases), where the NumPy fallback needs only its tiles'
    temporaries (a fixed tile size: budgets below those are refused)."""
    return uses_numba() and compiled.window_rows_fit(p, budget)


@dataclass
class SADState:
    kernel: np.ndarray  # (K, C, P, *T), C-contiguous
    window_rows: bool = False  # the compiled kernel runs it (decided with the chunks)


def prepare(p: Problem, wc: np.ndarray, budget: int | None = None) -> SADState:
    return SADState(np.ascontiguousarray(wc), uses_window_rows(p, budget))


def compute(
    p: Problem, st: SADState, xc: np.ndarray, k0: int, k1: int, out: np.ndarray | None = None
) -> np.ndarray:
    """The block ``(b, k1 - k0, P, *O)`` of sums of absolute differences."""
    xp = pad_sliding(xc, p.geoms, p.padding, p.cval, first_axis=3)
    block = out if out is not None else np.empty((xc.shape[0], k1 - k0, p.P, *p.O), p.dtype)
    if block.size == 0:
        return block
    if p.window_size == 0:
        block[...] = 0
        return block
    if st.window_rows and uses_numba():  # (chunks were sized for it)
        # the kernel made ready, kept beside the state
        rows = remembered(st, "rows", lambda: compiled.kernels().WindowRows(p, st.kernel, True))
        rows(xp, k0, k1, block)
    else:
        _sad_numpy(p, xp, st.kernel[k0:k1], block)
    if p.integer_inputs:
        np.rint(block, out=block)
    return block


def _sad_numpy(p: Problem, xp: np.ndarray, kern: np.ndarray, block: np.ndarray) -> None:
    """One pass per tap row (channel and leading taps): the taps along the last axis are
    a ``sliding_window_view`` of the input row, so each pass subtracts the filter row from
    every window, takes the absolute value and sums the row; output tiles cut along the
    batch and first output axis keep the temporaries in cache."""
    d = p.ndim
    b, C, P = xp.shape[:3]
    k = kern.shape[0]
    g_last = p.geoms[-1]
    rows = list(product(range(C), *(range(m) for m in p.T[:-1])))  # (c, leading taps)
    per_row = k * P * prod(p.O[1:]) * p.T[-1]  # |window - filter| terms of one output row
    step = max(1, _TILE // max(per_row, 1))
    items = max(1, step // max(p.O[0], 1))  # whole items per tile when they fit
    row_tiles = -(-p.O[0] // step)
    # tiles by number (a long signal has 1e4-1e5 of them: as tuples of slices they were
    # megabytes of Python objects beyond the budget)
    tiles = range(-(-b // items) * row_tiles)
    # the last axis' windows: (..., O_last, T_last)
    win = sliding_window_view(xp, g_last.extent, axis=-1)[..., :: g_last.stride, :: g_last.dilation]
    wide = p.dtype == np.float32  # float32: tap rows are added up in float64

    def run(tile: int) -> None:
        b0, r0 = divmod(tile, row_tiles)
        bs = slice(b0 * items, (b0 + 1) * items)
        rs = slice(r0 * step, min((r0 + 1) * step, p.O[0]))
        dest = block[bs, :, :, rs]
        acc = np.zeros(dest.shape, np.float64) if wide else dest
        if not wide:
            acc[...] = 0
        r0 = rs.start
        diff = None  # |window - filter| of one tap row, reused by every row of the tile
        for c, *lead in rows:
            sl = [bs, slice(c, c + 1), slice(None)]
            for a, (g, ja) in enumerate(zip(p.geoms[:-1], lead, strict=True)):
                start = ja * g.dilation + (r0 * g.stride if a == 0 else 0)
                sl.append(slice(start, start + (dest.shape[3 + a] - 1) * g.stride + 1, g.stride))
            # (n, 1, P, *O_tile, T_last); in 1-D the tile cuts the last axis itself
            xs = win[bs, c : c + 1, :, rs] if d == 1 else win[tuple(sl)]
            wrow = kern[(slice(None), c, slice(None), *lead)]  # (k, P, T_last)
            diff = np.subtract(xs, wrow.reshape(1, k, P, *([1] * d), p.T[-1]), out=diff)
            np.abs(diff, out=diff)
            acc += diff.sum(axis=-1)
        if wide:
            dest[...] = acc

    parallel_for(run, tiles)


def fuses_reduce(p: Problem) -> bool:
    """SAD blocks are reduced whole by the planner."""
    return False


def workspace_bytes(p: Problem, b: int, k: int, budget: int | None = None) -> int:
    """The copy of the chunk (compiled kernel: split into ``stride`` phases, each row
    padded by 16 samples; NumPy: the padded chunk) and the temporaries of the tiles or
    rows in flight on each thread (NumPy: ``|window - filter|`` for a tile of outputs,
    whose rows hold every filter of the block, so a large bank asks for smaller bank
    chunks)."""
    r = p.dtype.itemsize
    if uses_window_rows(p, budget):
        return compiled.window_rows_bytes(p, b)
    copy = padded_copy_bytes(p, b)
    # the tiles of _sad_numpy: their outputs, and how many run at once
    row = k * p.P * prod(p.O[1:])  # outputs in one row of the first output axis
    step = max(1, _TILE // max(row * p.T[-1], 1))
    items = max(1, step // max(p.O[0], 1))
    tiles = -(-b // items) * -(-p.O[0] // step)
    tile_out = min(items, b) * min(step, p.O[0]) * row
    in_flight = min(get_workers(), tiles)
    return copy + in_flight * (tile_out * (p.T[-1] * r + 8 + 2 * r) + _UFUNC_BUFFERS)


def describe(p: Problem, st: SADState, budget: int | None, device: str | None = None) -> str:
    """The kernel that runs (the compiled one, or NumPy's tiles and why)."""
    if st.window_rows and uses_numba():
        return "direct: compiled SAD kernel (numba), one task per output row"
    why = (
        "the compiled kernel's copy of an item does not fit the memory budget"
        if uses_numba()
        else "install numba for the compiled kernel"
    )
    return f"direct: SAD shift-and-add on cache-sized output tiles (NumPy; {why})"
