"""The SAD method: sum of absolute differences, which has no GEMM or FFT form.

``out[n, k, i] = sum_j |x[n, i * stride + j * dilation] - w[k, j]|`` over the window
(channels included). Two kernels compute it, both with memory O(output) beyond one copy of
the input chunk:

* a compiled kernel (``_numba_kernels.py``, see ``compiled.py``): one task per output row,
  run in parallel; the input's last axis is split into ``stride`` phases so that the inner
  loop over the output row reads contiguous memory and vectorises;
* a NumPy fallback: shift-and-add over cache-sized output tiles, one pass per tap.

Both sum each tap row (the taps along the last axis) in the compute dtype and add the rows
in float64, so float32 results keep float32's precision for large windows.

>>> import numpy as np, batchconv as bc
>>> bc.correlate(np.array([[1.0, 2.0, 4.0]]), np.array([1.0, 1.0]), metric="sad")
array([[1., 4.]])
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import prod

import numpy as np

from .. import compiled
from ..geometry import pad_sliding
from ..problem import Problem
from ..xp import get_workers, parallel_for

__all__ = ["SADState", "prepare", "compute", "fuses_reduce", "workspace_bytes",
           "uses_numba"]

_TILE = 1 << 15  # NumPy fallback: output elements per tile (stays in L2 with temporaries)


def uses_numba() -> bool:
    """True when SAD runs on the compiled (numba) kernel."""
    return compiled.enabled()


@dataclass
class SADState:
    kernel: np.ndarray  # (K, C, P, *T), C-contiguous


def prepare(p: Problem, wc: np.ndarray, budget: int | None = None) -> SADState:
    return SADState(np.ascontiguousarray(wc))


def compute(p: Problem, st: SADState, xc: np.ndarray, k0: int, k1: int,
            out: np.ndarray | None = None) -> np.ndarray:
    """The block ``(b, k1 - k0, P, *O)`` of sums of absolute differences."""
    xp = pad_sliding(xc, p.geoms, p.padding, p.cval, first_axis=3)
    block = out if out is not None else np.empty((xc.shape[0], k1 - k0, p.P, *p.O), p.dtype)
    if block.size == 0:
        return block
    if p.window_size == 0:
        block[...] = 0
        return block
    if uses_numba():
        sad_block = compiled.kernels().sad_block
        if block.flags.c_contiguous:
            sad_block(p, xp, st.kernel[k0:k1], block)
        else:
            tmp = np.empty(block.shape, p.dtype)
            sad_block(p, xp, st.kernel[k0:k1], tmp)
            block[...] = tmp
    else:
        _sad_numpy(p, xp, st.kernel[k0:k1], block)
    if p.integer_inputs:
        np.rint(block, out=block)
    return block


def _sad_numpy(p: Problem, xp: np.ndarray, kern: np.ndarray, block: np.ndarray) -> None:
    """Shift-and-add of ``|x - w|`` over output tiles cut along the batch and first
    output axis."""
    d = p.ndim
    b, C, P = xp.shape[:3]
    k = kern.shape[0]
    rows = list(product(range(C), *(range(m) for m in p.T[:-1])))  # (c, leading taps)
    per_row = k * P * prod(p.O[1:])
    step = max(1, _TILE // max(per_row, 1))
    tiles = [(slice(b0, b0 + 1), slice(r0, min(r0 + step, p.O[0])))
             for b0 in range(b) for r0 in range(0, p.O[0], step)]
    wide = p.dtype == np.float32  # float32: tap rows are added up in float64

    def run(tile) -> None:
        bs, rs = tile
        dest = block[bs, :, :, rs]
        acc = np.zeros(dest.shape, np.float64) if wide else dest
        if not wide:
            acc[...] = 0
        part = np.empty(dest.shape, p.dtype)
        t = np.empty(dest.shape, p.dtype)
        r0 = rs.start
        for c, *lead in rows:
            part[...] = 0
            for j in range(p.T[-1]):
                sl = [bs, slice(c, c + 1), slice(None)]
                for a, (g, ja) in enumerate(zip(p.geoms, (*lead, j), strict=True)):
                    start = ja * g.dilation + (r0 * g.stride if a == 0 else 0)
                    n_out = dest.shape[3 + a]
                    sl.append(slice(start, start + (n_out - 1) * g.stride + 1, g.stride))
                xs = xp[tuple(sl)]  # (1, 1, P, *O_tile) -> against (k, P) filters
                wj = kern[(slice(None), c, slice(None), *lead, j)].reshape(1, k, P, *([1] * d))
                np.subtract(xs, wj, out=t)
                np.abs(t, out=t)
                part += t
            acc += part
        if wide:
            dest[...] = acc

    parallel_for(run, tiles)


def fuses_reduce(p: Problem) -> bool:
    """SAD blocks are reduced whole by the planner."""
    return False


def workspace_bytes(p: Problem, b: int, k: int, budget: int | None = None) -> int:
    """A padded (compiled kernel: phase-split) copy of the chunk, and the tiles or rows in
    flight on each thread."""
    r = p.dtype.itemsize
    copy = b * p.C * p.P * prod(g.padded + g.stride for g in p.geoms) * r
    per_thread = (_TILE * (2 * r + 8)) if not uses_numba() else 16 * (p.O[-1] + 64)
    return copy + per_thread * get_workers()
