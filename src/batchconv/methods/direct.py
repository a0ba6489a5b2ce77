"""The direct method: sums in the spatial domain, exact for integers.

Two kernels, chosen by the shape of the contraction:

* **GEMM** (a bank of several filters): the windows of a *tile* of outputs are gathered
  into a small patch matrix ``(M, C*T)`` (im2col on a cache-sized tile, never on the whole
  batch) and multiplied by the filters ``(C*T, k)`` with BLAS. Stride and dilation are
  strides of the window view, so they cost nothing extra.
* **window rows** (one filter, real dtypes, numba installed): the compiled kernel of
  ``_numba_kernels.py`` (shared with SAD), one task per output row, its inner loop
  vectorised along the row; written straight into the result, whatever its layout.
* **shift-and-add** (one filter, otherwise): for every kernel tap, the shifted input tile
  times the tap weight is added to the output tile, which stays in cache across taps.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import prod

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import compiled
from ..geometry import pad_sliding, padded_copy_bytes
from ..problem import Problem
from ..xp import get_workers, parallel_for, work_buffer, work_buffer_like

__all__ = ["DirectState", "prepare", "compute", "workspace_bytes"]

# Tile sizes, in elements. GEMM patch tiles of 2^20 (4-8 MB): a 16x32x32x64 3x3 layer
# ran at 67 / 105 GFLOP/s (NCHW / NHWC, float32) with 2^18 and 85 / 106 with 2^20 on the
# 2-core dev machine. Shift-and-add output tiles of 2^15, which stay in L2 with their
# temporary.
_GEMM_TILE = 1 << 20
_SHIFT_TILE = 1 << 15


@dataclass
class DirectState:
    """The canonical filters, and the same laid out for GEMM with the window's values in
    (C, *T) order (channels-first inputs) and in (*T, C) order (channels-last inputs)."""

    kernel: np.ndarray  # (K, C, P, *T)
    gemm_weights: np.ndarray | None  # (P, C*T, K)
    gemm_weights_tc: np.ndarray | None  # (P, T*C, K)
    tile: int  # elements per tile (patches for GEMM, outputs for shift-and-add)
    window_rows: bool = False  # the compiled kernel runs it (decided with the chunks)
    rows: object = None  # the compiled window-rows kernel made ready (on first use)


def use_gemm(p: Problem) -> bool:
    """GEMM when there is a bank to multiply against; shift-and-add for one filter, or for
    a window of one value (a GEMM with an inner dimension of 1 was 1.1-2.8x slower than
    shift-and-add on 8 x 96x96 against 2-16 filters 1x1, dev machine)."""
    return p.K > 1 and p.window_size > 1


def uses_window_rows(p: Problem, budget: int | None = None) -> bool:
    """True when the compiled window-rows kernel computes ``p`` (no GEMM, a real dtype:
    integers are computed in float64; numba installed and switched on) within
    ``budget``: the kernel copies a whole item, where shift-and-add's tiles shrink."""
    return (
        not use_gemm(p)
        and p.dtype.kind == "f"
        and compiled.enabled()
        and compiled.window_rows_fit(p, budget)
    )


def tile_elements(p: Problem, budget: int | None) -> int:
    """Tile size: the measured default, smaller when the memory budget is tight (a tile
    and its product, on every thread, within about a quarter of the budget)."""
    default = _GEMM_TILE if use_gemm(p) else _SHIFT_TILE
    if budget is None:
        return default
    per_element = p.dtype.itemsize * get_workers() * 8
    return int(min(default, max(1024, budget // per_element)))


def prepare(p: Problem, wc: np.ndarray, budget: int | None = None) -> DirectState:
    tile = tile_elements(p, budget)
    if not use_gemm(p):
        return DirectState(wc, None, None, tile, uses_window_rows(p, budget))
    K, C, P = wc.shape[:3]
    d = p.ndim
    ct = np.ascontiguousarray(np.moveaxis(wc, 2, 0).reshape(P, K, -1).transpose(0, 2, 1))
    tc = np.ascontiguousarray(wc.transpose(2, *range(3, 3 + d), 1, 0).reshape(P, -1, K))
    return DirectState(wc, ct, tc, tile)


def _tiles(n_batch: int, rows: int, per_row: int, budget: int, batch_inner: bool):
    """Yield (batch slice, row slice) tiles of about ``budget`` elements, cut along the
    axis that is outermost in memory (rows when the batch axis is innermost, as in
    ``"hwn"`` layouts; the batch otherwise)."""
    per_item = rows * per_row
    if batch_inner:
        step = max(1, budget // max(per_row * n_batch, 1))
        for r0 in range(0, rows, step):
            yield slice(None), slice(r0, min(r0 + step, rows))
    elif per_item <= budget:
        step = max(1, budget // max(per_item, 1))
        for b0 in range(0, n_batch, step):
            yield slice(b0, min(b0 + step, n_batch)), slice(None)
    else:
        step = max(1, budget // max(per_row, 1))
        for b0 in range(n_batch):
            for r0 in range(0, rows, step):
                yield slice(b0, b0 + 1), slice(r0, min(r0 + step, rows))


def _batch_inner(xp: np.ndarray) -> bool:
    """True when the batch axis of the canonical view is closer in memory than the rows."""
    return xp.shape[0] > 1 and abs(xp.strides[0]) < abs(xp.strides[3])


def _gemm(p: Problem, st: DirectState, xp: np.ndarray, block: np.ndarray, k0: int, k1: int):
    d = p.ndim
    axes = tuple(range(3, 3 + d))
    win = sliding_window_view(xp, tuple(g.extent for g in p.geoms), axis=axes)
    win = win[
        (
            Ellipsis,
            *(slice(None, None, g.stride) for g in p.geoms),
            *(slice(None, None, g.dilation) for g in p.geoms),
        )
    ]  # (b, C, P, *O, *T)
    b, C, P = xp.shape[:3]
    O = p.O  # noqa: E741 - output sizes, named as in the docs
    k = k1 - k0
    per_row = C * prod(p.T) * prod(O[1:])
    # Orient the product like the destination: filters innermost (NHWO-like results) take
    # patches (M, C*T) @ W; filters outer (NKHW-like) take W^T @ patches^T (C*T, M). Either
    # way the result lands in the block with contiguous writes. The window's values are
    # gathered in the input's memory order: (*T, C) when channels are innermost (NHWC).
    k_inner = k > 1 and abs(block.strides[1]) < abs(block.strides[-1])
    channels_last = C > 1 and abs(xp.strides[1]) < abs(xp.strides[2 + d])
    weights = (st.gemm_weights_tc if channels_last else st.gemm_weights)[:, :, k0:k1]
    window = (*range(3 + d, 3 + 2 * d), 1) if channels_last else (1, *range(3 + d, 3 + 2 * d))
    if k_inner:  # (b, C, P, *O, *T) -> (P, b, *O, window)
        order = (2, 0, *range(3, 3 + d), *window)
    else:  # (b, C, P, *O, *T) -> (P, window, b, *O)
        order = (2, *window, 0, *range(3, 3 + d))
    for bs, rs in _tiles(b, O[0], per_row, st.tile, _batch_inner(xp)):
        tile = win[bs, :, :, rs].transpose(order)
        # im2col of this tile only, and the product, in this thread's reused buffers: fresh
        # pages for every tile made the method up to 4x slower in a new process
        cols = work_buffer(tile.shape, tile.dtype, "im2col")
        np.copyto(cols, tile)
        if k_inner:
            nb, nr = tile.shape[1], tile.shape[2]
            patches = cols.reshape(P, nb * nr * prod(O[1:]), -1)
            res = np.matmul(
                patches, weights, out=work_buffer((P, patches.shape[1], k), patches.dtype, "gemm")
            )
            res = res.reshape(P, nb, nr, *O[1:], k)
            block[bs, :, :, rs] = np.moveaxis(res, (0, -1), (2, 1))
        else:
            nb, nr = tile.shape[2 + d], tile.shape[3 + d]
            patches = cols.reshape(P, -1, nb * nr * prod(O[1:]))
            res = np.matmul(
                weights.transpose(0, 2, 1),
                patches,
                out=work_buffer((P, k, patches.shape[2]), patches.dtype, "gemm"),
            )
            res = res.reshape(P, k, nb, nr, *O[1:])
            block[bs, :, :, rs] = np.moveaxis(res, (0, 1), (2, 1))


def _shift_add(p: Problem, st: DirectState, xp: np.ndarray, block: np.ndarray, k0: int, k1: int):
    d = p.ndim
    b, C, P = xp.shape[:3]
    kern = st.kernel[k0:k1]  # (k, C, P, *T)
    k = k1 - k0
    taps = list(product(*(range(m) for m in p.T)))

    def run(tile) -> None:  # tiles are independent; NumPy releases the GIL in the ufuncs
        bs, rs = tile
        acc = block[bs, :, :, rs]
        t = work_buffer_like(acc, "shift-add")  # reused: no fresh pages per tile
        r0 = rs.start or 0
        xb = xp[bs]
        first = True  # the first product is written, not added (one pass less; 1x1: 1 of 3)
        for j in taps:
            sl = [slice(None), slice(None), slice(None)]
            for a, (g, ja) in enumerate(zip(p.geoms, j, strict=True)):
                start = ja * g.dilation + (r0 * g.stride if a == 0 else 0)
                n_out = acc.shape[3 + a]
                sl.append(slice(start, start + (n_out - 1) * g.stride + 1, g.stride))
            xs = xb[tuple(sl)]  # (nb, C, P, *O_tile)
            for c in range(C):
                wj = kern[(slice(None), c, slice(None), *j)].reshape(1, k, P, *([1] * d))
                if first:
                    np.multiply(xs[:, None, c], wj, out=acc)
                    first = False
                else:
                    np.multiply(xs[:, None, c], wj, out=t)
                    acc += t
        if first:  # no taps at all (an empty summed axis): every window sums to 0
            acc[...] = 0

    parallel_for(run, _tiles(b, p.O[0], k * P * prod(p.O[1:]), st.tile, _batch_inner(xp)))


def compute(
    p: Problem, st: DirectState, xc: np.ndarray, k0: int, k1: int, out: np.ndarray | None = None
) -> np.ndarray:
    """The block ``(b, k1 - k0, P, *O)`` for the canonical input chunk ``xc``, written into
    ``out`` when given (reductions are the planner's: see :func:`fuses_reduce`)."""
    xp = pad_sliding(xc, p.geoms, p.padding, p.cval, first_axis=3)
    # without ``out`` the block is a temporary to be reduced: C order, sliding axes last
    block = out if out is not None else np.empty((xc.shape[0], k1 - k0, p.P, *p.O), p.dtype)
    if block.size == 0:
        return block
    if st.gemm_weights is not None:
        _gemm(p, st, xp, block, k0, k1)
    elif st.window_rows and compiled.enabled():  # (chunks were sized for it)
        if st.rows is None:
            st.rows = compiled.kernels().WindowRows(p, st.kernel, "dot")
        st.rows(xp, k0, k1, block)
    else:
        _shift_add(p, st, xp, block, k0, k1)
    return block


def fuses_reduce(p: Problem) -> bool:
    """Direct blocks are reduced whole (the unreduced block is a temporary)."""
    return False


def workspace_bytes(p: Problem, b: int, k: int, budget: int | None = None) -> int:
    """Peak bytes of temporaries for one ``(b, k)`` block, not counting the block itself:
    a padded copy of the chunk (when padding is needed) and the tiles in flight."""
    if uses_window_rows(p, budget):
        return compiled.window_rows_bytes(p, b)
    pad = padded_copy_bytes(p, b)
    r = p.dtype.itemsize
    tile = min(tile_elements(p, budget), b * p.P * prod(p.O) * p.window_size)
    per_tile = tile + tile // max(1, p.window_size) * k if use_gemm(p) else 2 * tile
    return pad + per_tile * r * get_workers()
