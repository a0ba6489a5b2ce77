"""The direct method: sums in the spatial domain, exact for integers.

Two kernels, chosen by the shape of the contraction:

* **GEMM** (a bank of several filters): the windows of a *tile* of outputs are gathered
  into a small patch matrix ``(M, C*T)`` (im2col on a cache-sized tile, never on the whole
  batch) and multiplied by the filters ``(C*T, k)`` with BLAS. Stride and dilation are
  strides of the window view, so they cost nothing extra. A tile is a run of output
  positions in memory order, cut along whichever axis it must be (items, rows, or
  within a row: see :func:`_tiling`), so that its patches and product stay within an
  eighth of the memory budget; :func:`workspace_bytes` counts them.
* **window rows** (one filter, real dtypes, numba installed): the compiled kernel of
  ``_numba_kernels.py`` (shared with SAD), one task per output row, its inner loop
  vectorised along the row; written straight into the result, whatever its layout.
* **shift-and-add** (one filter, otherwise): for every kernel tap, the shifted input tile
  times the tap weight is added to the output tile, which stays in cache across taps.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import product
from math import prod

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import compiled
from .. import xp as _xp
from ..geometry import pad_sliding, padded_copy_bytes
from ..memo import remembered
from ..nonfinite import affected_windows, recompute_windows
from ..problem import Problem
from ..xp import (
    blas_threads,
    get_workers,
    parallel_for,
    reshaped_view,
    work_buffer,
    work_buffer_like,
)

_REDONE = (np.float32, np.complex64)  # the types whose overflowed windows are redone
# the GEMM writes into the result from this many outputs a tile (asking whether it can
# costs a few microseconds, more than copying a small tile: 4 x 64 against 3 x 5 taps,
# 51-53 us a call through the buffer, 55-57 when asking)
_DIRECT_WRITE_MIN = 4096

__all__ = [
    "DirectState",
    "prepare",
    "compute",
    "workspace_bytes",
    "held_bytes",
    "sad_kernel",
    "state_bytes",
    "flops",
    "cost_features",
    "describe",
]

# what the method is (see methods/__init__.py)
NAME = "direct"
ON_TENSORS = False
STANDS_FOR = None
COMPUTES_SAD = True
EXACT_FOR_INTEGERS = True
SPREADS_NONFINITE = False

# Tile sizes, in elements. GEMM patch tiles of 2^20 (4-8 MB): a 16x32x32x64 3x3 layer
# ran at 67 / 105 GFLOP/s (NCHW / NHWC, float32) with 2^18 and 85 / 106 with 2^20 on the
# 2-core dev machine. Shift-and-add output tiles of 2^15, which stay in L2 with their
# temporary.
_GEMM_TILE = 1 << 20
# ... but at least this many positions, budget permitting: each tile streams the filters
# once, and a window of 50,000 samples (a backward's filter gradient) made 20-row tiles
# that spent their time re-reading them (256 rows: 157 -> 82 ms for that gradient)
_GEMM_MIN_ROWS = 256
_SHIFT_TILE = 1 << 15
# Under a memory budget, a GEMM tile's patches and product take at most this fraction
# of it (the rest is for the padded copy of the chunk and an unreduced block)
_GEMM_SHARE = 8
# NumPy's iterator buffers, elements per operand: a ufunc on strided windows (the shifted
# input times a tap) takes up to two (tracemalloc)
_UFUNC_BUFFER = 8192


@dataclass
class DirectState:
    """The canonical filters, and the same laid out for GEMM with the window's values in
    (C, *T) order (channels-first inputs) and in (*T, C) order (channels-last inputs)."""

    kernel: np.ndarray  # (K, C, P, *T)
    gemm_weights: np.ndarray | None  # (P, C*T, K)
    gemm_weights_tc: np.ndarray | None  # (P, T*C, K)
    # elements per tile: for GEMM, of its patches and product together (the budget's
    # share; see gemm_positions), for shift-and-add, of its outputs
    tile: int
    window_rows: bool = False  # the compiled kernel runs it (decided with the chunks)


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
    """Tile size in elements. GEMM: its patches and product together, within an eighth
    of the budget (unlimited without one; :func:`gemm_positions` also keeps the patches
    at the measured default). Shift-and-add: its outputs, the measured default, smaller
    when the budget is tight (a tile on every thread within about an eighth of it)."""
    if use_gemm(p):
        if budget is None:
            return 1 << 62
        return max(1, budget // (_GEMM_SHARE * p.dtype.itemsize))
    if budget is None:
        return _SHIFT_TILE
    per_element = p.dtype.itemsize * get_workers() * 8
    return int(min(_SHIFT_TILE, max(1024, budget // per_element)))


def gemm_positions(p: Problem, tile: int, k: int) -> int:
    """Output positions (of all ``P`` pairs) per GEMM tile against ``k`` filters: patches
    of about ``_GEMM_TILE`` elements per pair, fewer when the patches ``(P, M, C*T)`` and
    the product ``(P, M, k)`` would exceed ``tile`` elements; at least one."""
    n = p.window_size
    rows = max(_GEMM_TILE // max(n, 1), _GEMM_MIN_ROWS)
    return max(1, min(rows, tile // max(p.P * (n + k), 1)))


def prepare(p: Problem, wc: np.ndarray, budget: int | None = None) -> DirectState:
    tile = tile_elements(p, budget)
    if not use_gemm(p):
        return DirectState(wc, None, None, tile, uses_window_rows(p, budget))
    K, C, P = wc.shape[:3]
    d = p.ndim
    n = C * prod(p.T)  # (explicit: a -1 cannot be inferred when P or K is 0)
    ct = np.ascontiguousarray(np.moveaxis(wc, 2, 0).reshape(P, K, n).transpose(0, 2, 1))
    tc = np.ascontiguousarray(wc.transpose(2, *range(3, 3 + d), 1, 0).reshape(P, n, K))
    return DirectState(wc, ct, tc, tile)


def _split(dims: tuple[int, ...], per_tile: int) -> tuple[int, int]:
    """Where tiles of at most ``per_tile`` positions (at least one) cut an array of
    positions of shape ``dims``: ``(axis, step)``; the axes after ``axis`` are whole, those
    before it taken one index at a time, and ``axis`` in runs of ``step`` (balanced: the
    fewest runs, of equal lengths up to one)."""
    inner = 1
    for a in range(len(dims) - 1, -1, -1):
        if inner * dims[a] > per_tile:
            step = max(1, per_tile // inner)
            return a, -(-dims[a] // -(-dims[a] // step))
        inner *= dims[a]
    return 0, max(dims[0], 1)


def _tiling(sizes: tuple[int, ...], per_tile: int, batch_inner: bool) -> tuple:
    """How tiles of at most ``per_tile`` positions (at least one) cut the output positions
    ``sizes = (b, *O)``: ``(order, dims, axis, step)``, the axes from outermost to
    innermost (the rows outside the batch when the batch axis is innermost in memory, as in
    ``"hwn"`` layouts), their sizes, and where they are cut (see :func:`_split`)."""
    if prod(sizes) <= per_tile:  # one tile (axis -1)
        return None, sizes, -1, 0
    d = len(sizes) - 1
    order = (1, 0, *range(2, d + 1)) if batch_inner and d else tuple(range(d + 1))
    dims = tuple(sizes[a] for a in order)
    return (order, dims, *_split(dims, per_tile))


def _tiles(tiling: tuple):
    """Yield the tiles of a :func:`_tiling`, as tuples of slices of ``(b, *O)``."""
    order, dims, axis, step = tiling
    sl = [slice(None)] * len(dims)
    if axis < 0:
        if 0 not in dims:
            yield tuple(sl)
        return
    for outer in product(*(range(n) for n in dims[:axis])):
        for a, i in zip(order[:axis], outer, strict=True):
            sl[a] = slice(i, i + 1)
        for s0 in range(0, dims[axis], step):
            sl[order[axis]] = slice(s0, min(s0 + step, dims[axis]))
            yield tuple(sl)


def _count(tiling: tuple) -> int:
    """How many tiles a :func:`_tiling` has (what :func:`_tiles` yields, counted without
    making them)."""
    _, dims, axis, step = tiling
    if axis < 0:
        return int(0 not in dims)
    return prod(dims[:axis]) * -(-dims[axis] // step)


def _most(tiling: tuple) -> int:
    """The most positions in one tile of a :func:`_tiling`."""
    _, dims, axis, step = tiling
    return prod(dims) if axis < 0 else min(step, dims[axis]) * prod(dims[axis + 1 :])


def _expected_batch_inner(p: Problem) -> bool:
    """Whether the batch axis is inside the first sliding axis in memory (as
    :func:`_batch_inner` finds at the call) for an ``x`` laid out in the spec's order."""
    sp = p.spec
    return bool(sp.batch and sp.sliding) and max(map(sp.x.index, sp.batch)) > sp.x.index(
        sp.sliding[0]
    )


def _call_tiling(p: Problem | bool, sizes: tuple[int, ...], per_tile: int, actual: bool):
    """The :func:`_tiling` of a call whose layout is ``actual`` (batch inner or not), in
    tiles no larger than those of the layout expected for ``p`` (or given as a bool),
    which :func:`workspace_bytes` counts."""
    if prod(sizes) > per_tile:
        expected = p if isinstance(p, bool) else _expected_batch_inner(p)
        if actual != expected:
            per_tile = min(per_tile, max(1, _most(_tiling(sizes, per_tile, expected))))
    return _tiling(sizes, per_tile, actual)


def _tile_max(sizes: tuple[int, ...], per_tile: int, expected: bool) -> tuple[int, int]:
    """The most positions in one tile (those of the ``expected`` layout: as many or fewer
    in the other), and the most tiles in either layout."""
    most, count = 0, 0
    if 0 in sizes:
        return most, count
    for actual in (expected, not expected):
        tiling = _call_tiling(expected, sizes, per_tile, actual)
        most = max(most, _most(tiling))
        count = max(count, _count(tiling))
    return most, count


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
    k = k1 - k0
    # Orient the product like the destination: filters innermost (NHWO-like results) take
    # patches (M, C*T) @ W; filters outer (NKHW-like) take W^T @ patches^T (C*T, M). Either
    # way the result lands in the block with contiguous writes. The window's values are
    # gathered in the input's memory order: (*T, C) when channels are innermost (NHWC).
    k_inner = k > 1 and abs(block.strides[1]) < abs(block.strides[-1])
    # ... unless the gather would copy runs of a few samples: a window whose last axis is
    # much longer than the outputs' (the filter gradient of a backward pass: a window as
    # large as the image, a 3x3 result) is gathered in window order, the writes being few
    k_inner = k_inner or p.T[-1] > 4 * p.O[-1]
    channels_last = C > 1 and abs(xp.strides[1]) < abs(xp.strides[2 + d])
    weights = (st.gemm_weights_tc if channels_last else st.gemm_weights)[:, :, k0:k1]
    window = (*range(3 + d, 3 + 2 * d), 1) if channels_last else (1, *range(3 + d, 3 + 2 * d))
    if k_inner:  # (b, C, P, *O, *T) -> (P, b, *O, window)
        order = (2, 0, *range(3, 3 + d), *window)
    else:  # (b, C, P, *O, *T) -> (P, window, b, *O)
        order = (2, *window, 0, *range(3, 3 + d))
    tiling = _call_tiling(p, (b, *p.O), gemm_positions(p, st.tile, k), _batch_inner(xp))
    most = _most(tiling)
    # im2col of one tile at a time, and the product, in each thread's reused buffers
    # (fresh pages for every tile made the method up to 4x slower in a new process), taken
    # for the largest tile: one of each per thread (workspace_bytes counts them)
    n = p.window_size
    wt = weights.transpose(0, 2, 1)
    # the product (P, tile..., k) or (P, k, tile...) -> the block's (nb, k, P, tile...)
    back = (1, d + 2, 0, *range(2, d + 2)) if k_inner else (2, 1, 0, *range(3, d + 3))
    # ... and back: the block's axes in the product's order
    forth = (2, 0, *range(3, d + 3), 1) if k_inner else back
    direct_write = block.dtype == xp.dtype == weights.dtype
    every = slice(None)

    def run(sl) -> None:
        with _quiet_overflow(block.dtype):
            _gemm_tile(sl)

    def _gemm_tile(sl) -> None:
        cols_buf = work_buffer((P * most * n,), xp.dtype, "im2col")
        gemm_buf = work_buffer((P * most * k,), xp.dtype, "gemm")
        at = (sl[0], every, every, *sl[1:])
        tile = win[at].transpose(order)
        m = tile.size // (P * n)  # positions in this tile
        cols = cols_buf[: tile.size].reshape(tile.shape)
        np.copyto(cols, tile)
        # the product straight into the block where its part there is one matrix per
        # pair (whole rows of the result: the 7x7 3->64 stride-2 stem on 4 x 224x224,
        # NHWC, 6.3-6.6 -> 5.8-6.1 ms a call on 2 threads), else into a buffer and
        # copied there
        shape = (P, m, k) if k_inner else (P, k, m)
        dest = None
        # (not asked with filters outermost and several items and filters: an item's
        # outputs are then apart from the next item's, never one matrix)
        may_merge = k_inner or k == 1 or len(range(*sl[0].indices(b))) == 1
        if direct_write and may_merge and m * k >= _DIRECT_WRITE_MIN:
            dest = _as_matrices(block[at].transpose(forth), shape)
        out = dest if dest is not None else gemm_buf[: P * m * k].reshape(shape)
        if k_inner:
            np.matmul(cols.reshape(P, m, n), weights, out=out)
        else:
            np.matmul(wt, cols.reshape(P, n, m), out=out)
        if dest is None:
            lead = (P, *tile.shape[1 : 2 + d], k) if k_inner else (P, k, *tile.shape[-1 - d :])
            block[at] = out.reshape(lead).transpose(back)

    tiles = _count(tiling)  # (made one at a time: see parallel_for)
    threads = gemm_threads(p, st.tile, k, tiles, most)
    with blas_threads(1 if threads > 1 else None):
        parallel_for(run, _tiles(tiling), threads, count=tiles)


def _as_matrices(view: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray | None:
    """``view`` seen as ``shape`` (pairs, rows, columns) on the same memory, its columns
    contiguous, so that a matrix product can write into it; None where that takes a
    copy."""
    out = reshaped_view(view, shape)
    if out is None or (shape[2] > 1 and out.strides[2] != out.itemsize):
        return None
    return out


def gemm_threads(p: Problem, tile: int, k: int, tiles: int, most: int) -> int:
    """Threads that run the GEMM tiles (``tiles`` of at most ``most`` positions against
    ``k`` filters), each with a one-thread BLAS: all workers when there are at least two
    tiles for each and their buffers fit the budget's ``tile`` elements together, else
    one (with BLAS on all workers). Tiles on the threads run the im2col copies in
    parallel too, and a one-thread BLAS is faster on these skinny products than one
    GEMM split across threads (2 cores, float32 NHWC layers: 3x3 64->64 14.0 -> 9.4 ms,
    7x7 3->64 stride 2 8.8 -> 5.6 ms, 11x11 16->32 38 -> 23 ms)."""
    workers = get_workers()
    if tiles < 2 * workers or workers * _gemm_buffers(p, most, k) > tile * p.dtype.itemsize:
        return 1
    return workers


def _gemm_buffers(p: Problem, most: int, k: int) -> int:
    """Bytes of one thread's GEMM buffers (its work buffers ``"im2col"`` and ``"gemm"``)
    for tiles of at most ``most`` positions against ``k`` filters."""
    r = p.dtype.itemsize
    return _held(most * p.P * p.window_size * r) + _held(most * p.P * k * r)


def _shift_add(p: Problem, st: DirectState, xp: np.ndarray, block: np.ndarray, k0: int, k1: int):
    d = p.ndim
    b, C, P = xp.shape[:3]
    kern = st.kernel[k0:k1]  # (k, C, P, *T)
    k = k1 - k0
    every = slice(None)
    # the taps' offsets along the sliding axes, in the kernel's C order, and the filters
    # seen so that weights[:, :, c, :, tap] is (1, k, P, 1, ...) (a view)
    taps = list(product(*(range(0, m * g.dilation, g.dilation) for m, g in zip(p.T, p.geoms))))
    weights = kern.reshape(1, k, C, P, len(taps), *([1] * d))
    strides = [g.stride for g in p.geoms]

    def run(tile) -> None:  # tiles are independent; NumPy releases the GIL in the ufuncs
        with _quiet_overflow(block.dtype):
            _shift_add_tile(tile)

    def _shift_add_tile(tile) -> None:
        bs, *os = tile
        acc = block[(bs, every, every, *os)]
        t = work_buffer_like(acc, "shift-add")  # reused: no fresh pages per tile
        xb = xp[bs]
        # per axis: the tile's first input sample, the span of its outputs' inputs, stride
        spans = [
            ((o.start or 0) * s, (n - 1) * s + 1, s)
            for o, s, n in zip(os, strides, acc.shape[3:], strict=True)
        ]
        first = True  # the first product is written, not added (one pass less; 1x1: 1 of 3)
        for i, offsets in enumerate(taps):
            at = [every, every, every]
            for off, (start, span, s) in zip(offsets, spans, strict=True):
                at.append(slice(start + off, start + off + span, s))
            xs = xb[tuple(at)]  # (nb, C, P, *O_tile)
            for c in range(C):
                wj = weights[:, :, c, :, i]
                if first:
                    np.multiply(xs[:, None, c], wj, out=acc)
                    first = False
                else:
                    np.multiply(xs[:, None, c], wj, out=t)
                    acc += t
        if first:  # no taps at all (an empty summed axis): every window sums to 0
            acc[...] = 0

    per_tile = max(1, st.tile // max(k * P, 1))
    tiling = _call_tiling(p, (b, *p.O), per_tile, _batch_inner(xp))
    parallel_for(run, _tiles(tiling), count=_count(tiling))


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
        # the kernel made ready, kept beside the state
        rows = remembered(st, "rows", lambda: compiled.kernels().WindowRows(p, st.kernel, False))
        rows(xp, k0, k1, block)
    else:
        _shift_add(p, st, xp, block, k0, k1)
    _redo_overflow(p, st, xc, block, k0, k1)
    return block


def _redo_overflow(
    p: Problem, st: DirectState, xc: np.ndarray, block: np.ndarray, k0: int, k1: int
) -> None:
    """float32 (complex64) sums can pass the float's range on the way to a value that
    fits (taps 1, 0, 1, -1, -1 over samples of 3e38: Inf, the loop 0). Where that is
    possible at all (the items' largest magnitude times a filter's sum of magnitudes
    reaches the float's limit: one pass over the input to tell), the windows with a
    non-finite result that cover no NaN or Inf sample are summed again in float64
    (``nonfinite.recompute_windows``): only values that do not fit stay infinite, with a
    RuntimeWarning that says how many."""
    if block.dtype not in _REDONE or xc.size == 0:
        return
    w_sum = remembered(st, "abs_sum", lambda: _largest_abs_sum(st.kernel))
    with np.errstate(invalid="ignore"):
        x_max = (
            float(np.abs(xc).max())
            if xc.dtype.kind == "c"
            else max(-float(xc.min()), float(xc.max()))
        )
    if p.padding == "constant":
        x_max = max(x_max, abs(p.cval))
    if x_max * w_sum < float(np.finfo(block.dtype).max):  # (NaN: the check below)
        return
    bad = ~np.isfinite(block).all(axis=1)  # (b, P, *O): windows with a non-finite result
    if not bad.any() or not np.isfinite(st.kernel[k0:k1]).all():
        return
    bad &= ~affected_windows(p, ~np.isfinite(xc).all(axis=1))
    with np.errstate(over="ignore"):  # (values past the range: Inf, as they should)
        recompute_windows(p, xc, st.kernel, block, bad, k0, k1)
    past = np.count_nonzero(~np.isfinite(block) & bad[:, None])
    if past:  # (the tiles' own warnings were silenced: _quiet_overflow)
        warnings.warn(
            f"overflow encountered in correlate: {past} outputs do not fit in {block.dtype}",
            RuntimeWarning,
            stacklevel=2,
        )


def _quiet_overflow(dtype: np.dtype):
    """No "overflow encountered" (or, for Inf - Inf on the way, "invalid value") warning
    from a thread's float32 (complex64) sums: the windows they leave non-finite are
    checked and summed again (:func:`_redo_overflow`), so NumPy's warning would speak of
    sums the caller may never see; the redo warns of the outputs that truly do not fit.
    Non-finite inputs give NaN/Inf where they reach, without a warning (as the FFT
    methods do). Other types warn as NumPy does. (``np.errstate`` holds per thread:
    entered in each tile's thread.)"""
    return np.errstate(over="ignore", invalid="ignore") if dtype in _REDONE else nullcontext()


def _largest_abs_sum(kernel: np.ndarray) -> float:
    """The largest sum of magnitudes over one filter's taps and channels."""
    return float(np.abs(kernel.reshape(kernel.shape[0], -1)).sum(axis=1, dtype=np.float64).max())


def fuses_reduce(p: Problem) -> bool:
    """Direct blocks are reduced whole (the unreduced block is a temporary)."""
    return False


def workspace_bytes(p: Problem, b: int, k: int, budget: int | None = None) -> int:
    """Peak bytes of temporaries for one ``(b, k)`` block, not counting the block itself:
    a padded copy of the chunk (when padding is needed) and the largest tile's: for GEMM
    its patches and product (one tile at a time), for shift-and-add its temporary on
    each thread with a tile."""
    if uses_window_rows(p, budget):
        return compiled.window_rows_bytes(p, b)
    return padded_copy_bytes(p, b) + _tile_bytes(p, b, k, budget)[0]


def held_bytes(p: Problem, b: int, k: int, budget: int | None = None) -> int:
    """Bytes of the work buffers (``xp.work_buffer``) that one ``(b, k)`` block leaves
    with its threads, held while the caller goes on (a metric's next block): the GEMM
    tile's patches and product, shift-and-add's temporary per thread; none for the
    compiled kernel."""
    return 0 if uses_window_rows(p, budget) else _tile_bytes(p, b, k, budget)[1]


def _tile_bytes(p: Problem, b: int, k: int, budget: int | None) -> tuple[int, int]:
    """``(peak, held)`` of the NumPy tiles' temporaries for one ``(b, k)`` block."""
    r = p.dtype.itemsize
    tile = tile_elements(p, budget)
    sizes, inner = (b, *p.O), _expected_batch_inner(p)
    if use_gemm(p):
        most, count = _tile_max(sizes, gemm_positions(p, tile, k), inner)
        held = _gemm_buffers(p, most, k) * gemm_threads(p, tile, k, count, most)
        return held, held
    most, count = _tile_max(sizes, max(1, tile // max(k * p.P, 1)), inner)
    outputs = most * k * p.P
    threads = min(get_workers(), count)
    held = _held(outputs * r) * threads
    return held + 2 * min(outputs, _UFUNC_BUFFER) * r * threads, held


def _held(nbytes: int) -> int:
    """Bytes that :func:`xp.work_buffer` allocates for ``nbytes`` (at least
    ``WORK_BUFFER_MIN`` for a buffer it keeps)."""
    return max(nbytes, _xp.WORK_BUFFER_MIN) if 0 < nbytes <= _xp._WORK_BUFFER_BYTES else nbytes


def sad_kernel(device: str | None = None):
    """The kernel that computes the metrics with no product form (sad): ``sad.py``."""
    from . import sad

    return sad


def applies(p: Problem, device: str | None = None) -> str | None:
    """Every problem (None)."""
    return None


def state_bytes(p: Problem) -> int:
    """The canonical filters, and for a bank their two GEMM layouts (patches gathered
    channels first or channels last: ``DirectState.gemm_weights`` and
    ``gemm_weights_tc``); for one filter the copy the compiled window-rows kernel makes
    (shift-and-add makes none: an upper bound)."""
    return p.K * p.window_size * p.P * p.dtype.itemsize * (3 if use_gemm(p) else 2)


def flops(p: Problem) -> float:
    """A multiplication and an addition per tap of every window."""
    return 2.0 * p.B * p.K * p.P * prod(p.O) * p.window_size


def cost_features(p: Problem, device: str | None = None) -> tuple[str, dict[str, float]]:
    """The kernel's cost model (``"window_rows"``, ``"gemm"`` or ``"shift_add"``) and its
    features."""
    prec = p.precision
    out_bytes = float(p.B * p.K * p.P * prod(p.O) * p.dtype.itemsize)
    fl = flops(p)
    if uses_window_rows(p):
        in_bytes = float(p.B * p.C * p.P * prod(g.padded for g in p.geoms) * p.dtype.itemsize)
        return "window_rows", {
            "calls": 1.0,
            f"terms_{prec}": fl / 2,
            "in_bytes": in_bytes,
            "out_bytes": out_bytes,
        }
    if use_gemm(p):
        patch = float(p.B * p.P * prod(p.O) * p.window_size * p.dtype.itemsize)
        return "gemm", {
            "calls": 1.0,
            f"gemm_flops_{prec}": fl,
            "patch_bytes": patch,
            "out_bytes": out_bytes,
        }
    return "shift_add", {"calls": 1.0, f"flops_{prec}": fl, "out_bytes": out_bytes}


def describe(p: Problem, st: DirectState, budget: int | None, device: str | None = None) -> str:
    """The kernel that runs ``p`` within ``budget``."""
    if use_gemm(p):
        return "direct: GEMM on cache-sized im2col tiles"
    if uses_window_rows(p, budget):
        return "direct: compiled window-rows kernel (numba), one task per output row"
    return "direct: shift-and-add on cache-sized output tiles"
