"""Compiled kernels (numba), used through ``compiled.py`` when numba is installed.

**Window rows** (:class:`WindowRows`): SAD (``methods/sad.py``) and the direct
correlation where a GEMM has nothing to contract, i.e. one filter (``methods/direct.py``).

One parallel task per output row ``(item, filter, pair, leading output coordinates)``, or
per segment of a row. With stride 1 along the last axis and that axis contiguous, the
kernel reads the (padded) input where it is. Otherwise a copy splits the last axis into
``stride`` phases (``x[..., q::stride]``), so that tap ``j`` of output ``o`` reads
``phase[(j * dilation) % stride][o + (j * dilation) // stride]``: contiguous in ``o``.
Every tap (channel, leading taps, last-axis tap) is an offset into the input or that
buffer, computed once per layout. The inner loop runs over the row (on the copy rounded
up to a multiple of ``_V``), four (SAD) or eight (products) taps at a time, into partial
sums in the compute dtype that are added into float64 accumulators every ``_TAPS`` taps
(float64 data: once). Indices are non-negative slices, so numba emits no wrap-around
checks and the loop vectorises.

Short rows waste the vector width, so three things lengthen them:

* a short last output axis is moved inward (the rows run along the longest axis);
* where the last two axes have stride 1, the rows are *folded*: laid end to end as in
  the input's memory, so that one row of ``O[-2] * L`` outputs (``L`` the input's row
  length) is computed and the ``L - O[-1]`` after each row's end are dropped (5 x
  100x100 against 11x11, one thread: 0.46 against 0.56 ms a call);
* where the items are innermost in memory (``"hwn"``), a row is a line of the last axis
  times the items, read in the input itself (500 images of 100x100 stored as (H, W, N)
  against one 11x11 filter: 29 against 45 ms through a copy).

For products, a task computes two rows of the last leading axis at once where their
taps overlap (row ``i + 1`` reads with tap row ``r`` what row ``i`` reads with ``r + 1``):
each shared input value is loaded once for both (5 images of 100x100 against one 11x11
filter, one thread: 0.29 against 0.37 ms).

The result is written through its own strides: any layout of the caller's output (e.g.
the batch innermost, ``"hwn"``) without a temporary.

**Winograd's transforms** (:func:`winograd_in6`, :func:`winograd_out6`;
``methods/winograd.py``) for 2-D tiles of 6 x 6 samples: two passes of a 6 x 6 matrix
per tile, vectorised along the channels or filters (innermost in both buffers).

Also window sums, window statistics, local maxima, greedy suppression and the NCC
normalisation (their own docstrings).

Compiled on first use per dtype and cached on disk (``cache=True``).
"""

from __future__ import annotations

from dataclasses import replace
from math import prod

import numba
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .problem import Problem, long_axis_last
from .xp import get_workers, parallel_for, reshaped_view

_V = 16  # the output row is rounded up to a multiple of this (one AVX-512 register)
_TAPS = 64  # taps summed in the compute dtype before they are added in float64
_SEGMENT = 4096  # outputs per task along a row, when rows are too few to keep threads busy
_FOLD_BELOW = 512  # output rows shorter than this are folded (laid end to end) ...
_FOLD_SEGMENT = 1024  # ... into segments of this many outputs: their sums stay in L1
# window rows: below this many terms one thread does the whole block (waking a pool
# thread costs about 60 us on the 2-core dev VM)
_PARALLEL_TERMS = 2_000_000
_SPLIT_THREADS = 1 << 20  # samples from which the split in stride phases uses threads
_LAUNCHES = 16  # input/output layouts a WindowRows remembers how to run
_BIN_BLOCK = 8  # frequency bins per block of the FFT's channel products (64 B of complex64)


@numba.njit(fastmath=True, nogil=True, cache=True)
def _sad_taps(x, w, part, xb, offs, wb, t0, t1, nv):  # pragma: no cover - compiled
    """``part[:nv] += |x[xb + offs[t]:][:nv] - w[wb + t]|`` for the taps ``t0:t1``."""
    t = t0
    while t + 4 <= t1:
        w1 = w[wb + t]
        w2 = w[wb + t + 1]
        w3 = w[wb + t + 2]
        w4 = w[wb + t + 3]
        a1 = xb + offs[t]
        a2 = xb + offs[t + 1]
        a3 = xb + offs[t + 2]
        a4 = xb + offs[t + 3]
        x1 = x[a1 : a1 + nv]
        x2 = x[a2 : a2 + nv]
        x3 = x[a3 : a3 + nv]
        x4 = x[a4 : a4 + nv]
        for o in range(nv):
            part[o] += (abs(x1[o] - w1) + abs(x2[o] - w2)) + (abs(x3[o] - w3) + abs(x4[o] - w4))
        t += 4
    while t < t1:
        wt = w[wb + t]
        a1 = xb + offs[t]
        x1 = x[a1 : a1 + nv]
        for o in range(nv):
            part[o] += abs(x1[o] - wt)
        t += 1


# IEEE semantics kept (NaN and Inf propagate as in the loop); "contract" only allows FMA
@numba.njit(fastmath={"contract"}, nogil=True, cache=True)
def _dot_taps(x, w, part, xb, offs, wb, t0, t1, nv):  # pragma: no cover - compiled
    """``part[:nv] += x[xb + offs[t]:][:nv] * w[wb + t]`` for the taps ``t0:t1``, eight
    at a time (one load and store of ``part`` per eight products)."""
    t = t0
    while t + 8 <= t1:
        w1 = w[wb + t]
        w2 = w[wb + t + 1]
        w3 = w[wb + t + 2]
        w4 = w[wb + t + 3]
        w5 = w[wb + t + 4]
        w6 = w[wb + t + 5]
        w7 = w[wb + t + 6]
        w8 = w[wb + t + 7]
        x1 = x[xb + offs[t] :]
        x2 = x[xb + offs[t + 1] :]
        x3 = x[xb + offs[t + 2] :]
        x4 = x[xb + offs[t + 3] :]
        x5 = x[xb + offs[t + 4] :]
        x6 = x[xb + offs[t + 5] :]
        x7 = x[xb + offs[t + 6] :]
        x8 = x[xb + offs[t + 7] :]
        for o in range(nv):  # one chain of multiply-adds: 8 FMAs, no separate adds
            s = part[o] + x1[o] * w1
            s += x2[o] * w2
            s += x3[o] * w3
            s += x4[o] * w4
            s += x5[o] * w5
            s += x6[o] * w6
            s += x7[o] * w7
            part[o] = s + x8[o] * w8
        t += 8
    while t < t1:
        wt = w[wb + t]
        x1 = x[xb + offs[t] :]
        for o in range(nv):
            part[o] += x1[o] * wt
        t += 1


# IEEE semantics kept; "contract" only allows FMA
@numba.njit(fastmath={"contract"}, nogil=True, cache=True)
def _dot_pair_taps(x, w, pa, pb, xb, offs, wb, ns, t0, t1, nv):  # pragma: no cover - compiled
    """Two output rows at once, from the same loads: ``pa[:nv] += x[xb + offs[t]:][:nv] *
    w[wb + t]`` and ``pb[:nv] += ... * w[wb + ns + t]`` for the shared taps ``t0:t1``,
    eight at a time (one load and store of ``pa`` and ``pb`` per sixteen products)."""
    t = t0
    while t + 8 <= t1:
        a1 = w[wb + t]
        a2 = w[wb + t + 1]
        a3 = w[wb + t + 2]
        a4 = w[wb + t + 3]
        a5 = w[wb + t + 4]
        a6 = w[wb + t + 5]
        a7 = w[wb + t + 6]
        a8 = w[wb + t + 7]
        b1 = w[wb + ns + t]
        b2 = w[wb + ns + t + 1]
        b3 = w[wb + ns + t + 2]
        b4 = w[wb + ns + t + 3]
        b5 = w[wb + ns + t + 4]
        b6 = w[wb + ns + t + 5]
        b7 = w[wb + ns + t + 6]
        b8 = w[wb + ns + t + 7]
        x1 = x[xb + offs[t] :]
        x2 = x[xb + offs[t + 1] :]
        x3 = x[xb + offs[t + 2] :]
        x4 = x[xb + offs[t + 3] :]
        x5 = x[xb + offs[t + 4] :]
        x6 = x[xb + offs[t + 5] :]
        x7 = x[xb + offs[t + 6] :]
        x8 = x[xb + offs[t + 7] :]
        for o in range(nv):
            v1 = x1[o]
            v2 = x2[o]
            v3 = x3[o]
            v4 = x4[o]
            v5 = x5[o]
            v6 = x6[o]
            v7 = x7[o]
            v8 = x8[o]
            sa = pa[o] + v1 * a1  # chains of multiply-adds: FMAs, no separate adds
            sb = pb[o] + v1 * b1
            sa += v2 * a2
            sb += v2 * b2
            sa += v3 * a3
            sb += v3 * b3
            sa += v4 * a4
            sb += v4 * b4
            sa += v5 * a5
            sb += v5 * b5
            sa += v6 * a6
            sb += v6 * b6
            sa += v7 * a7
            sb += v7 * b7
            pa[o] = sa + v8 * a8
            pb[o] = sb + v8 * b8
        t += 8
    while t + 4 <= t1:
        a1 = w[wb + t]
        a2 = w[wb + t + 1]
        a3 = w[wb + t + 2]
        a4 = w[wb + t + 3]
        b1 = w[wb + ns + t]
        b2 = w[wb + ns + t + 1]
        b3 = w[wb + ns + t + 2]
        b4 = w[wb + ns + t + 3]
        x1 = x[xb + offs[t] :]
        x2 = x[xb + offs[t + 1] :]
        x3 = x[xb + offs[t + 2] :]
        x4 = x[xb + offs[t + 3] :]
        for o in range(nv):
            v1 = x1[o]
            v2 = x2[o]
            v3 = x3[o]
            v4 = x4[o]
            sa = pa[o] + v1 * a1
            sb = pb[o] + v1 * b1
            sa += v2 * a2
            sb += v2 * b2
            sa += v3 * a3
            sb += v3 * b3
            pa[o] = sa + v4 * a4
            pb[o] = sb + v4 * b4
        t += 4
    while t < t1:
        a1 = w[wb + t]
        b1 = w[wb + ns + t]
        x1 = x[xb + offs[t] :]
        for o in range(nv):
            v1 = x1[o]
            pa[o] += v1 * a1
            pb[o] += v1 * b1
        t += 1


@numba.njit(nogil=True, cache=True)
def _add_taps(x, w, offs, wb, t0, t1, xb, sad, chunk, acc, part, nv):  # pragma: no cover
    """``acc[:nv] +=`` the SAD terms (``sad``) or products of the taps ``t0:t1``, summed
    ``chunk`` at a time in the compute dtype (``part``) and added in float64."""
    for tc in range(t0, t1, chunk):
        part[:nv] = 0
        if sad:
            _sad_taps(x, w, part, xb, offs, wb, tc, min(t1, tc + chunk), nv)
        else:
            _dot_taps(x, w, part, xb, offs, wb, tc, min(t1, tc + chunk), nv)
        for o in range(nv):
            acc[o] += part[o]


@numba.njit(nogil=True, cache=True)
def _store(out, acc, ob, u0, n_u, lq, ow, fstep, step):  # pragma: no cover - compiled
    """Write the kept outputs of a segment ``u0:u0 + n_u`` of a row (folded rows ``lq``
    apart, ``ow`` kept of each) at ``ob`` in ``out``."""
    u = u0
    while u < u0 + n_u:
        i = u // lq
        o = u - i * lq
        n = min(lq - o, u0 + n_u - u)
        dst = ob + i * fstep
        for oo in range(o, min(o + n, ow)):
            out[dst + oo * step] = acc[u - u0 + oo - o]
        u += n


@numba.njit(nogil=True, cache=True)
def _window_rows(
    x,
    w,
    sad,
    chunk,
    exact,
    nk,
    npair,
    xsb,
    xsp,
    lead_out,
    lead_xstep,
    offs,
    pw,
    poffs,
    pcount,
    ow,
    lq,
    frows,
    fstep,
    seg,
    ostep,
    lead_ostep,
    out,
    t_begin,
    t_end,
):  # pragma: no cover - compiled
    """Output rows ``t_begin:t_end`` (segments of ``seg`` outputs) of the SAD (``sad``)
    or the correlation of ``x`` (flat: see :func:`_phases`, or the input itself) with the
    taps ``w`` (filter, pair, tap) read at the offsets ``offs``; ``chunk`` taps are
    summed in the compute dtype before each float64 add.

    A row is ``frows`` rows of ``ow`` outputs laid end to end ``lq`` apart (the input's
    row length; ``frows`` is 1 unless the last two axes have stride 1 and are folded), the
    ``lq - ow`` outputs after each row's end computed and dropped. Segments are rounded up
    to whole vectors (reading past their end) unless ``exact``. ``ostep`` (item, filter,
    pair, last axis), ``fstep`` (folded rows) and ``lead_ostep``: the element steps of
    ``out``, a 1-D view from the block's first element.

    Row pairs (``pcount = (shared, first only, second only, rows)`` with ``rows > 0``):
    a task computes rows ``2j`` and ``2j + 1`` of the last leading axis (which has
    ``rows`` rows; ``lead_out`` counts pairs there), loading each input value of the
    shared taps once for both; ``poffs`` holds the shared, first-only and second-only taps'
    offsets and ``pw`` per (filter, pair) their weights (shared ones twice)."""
    n_lead = lead_out.shape[0]
    rows = 1
    for a in range(n_lead):
        rows *= lead_out[a]
    ntaps = offs.shape[0]
    ns, na, nb, pair_rows = pcount[0], pcount[1], pcount[2], pcount[3]
    pwidth = 2 * ns + na + nb
    length = (frows - 1) * lq + ow  # outputs computed per row
    nseg = (length + seg - 1) // seg
    step = ostep[3]
    for task in range(t_begin, t_end):
        t = task // nseg
        u0 = (task % nseg) * seg
        n_u = min(seg, length - u0)
        nv = n_u if exact else (n_u + _V - 1) // _V * _V
        row = t % rows
        q = t // rows
        pi = q % npair
        q //= npair
        ki = q % nk
        bi = q // nk
        xb = bi * xsb + pi * xsp + u0
        ob = bi * ostep[0] + ki * ostep[1] + pi * ostep[2]
        second = False
        rr = row
        for a in range(n_lead - 1, -1, -1):
            idx = rr % lead_out[a]
            if pair_rows > 0 and a == n_lead - 1:
                idx *= 2
                second = idx + 1 < pair_rows
            xb += idx * lead_xstep[a]
            ob += idx * lead_ostep[a]
            rr //= lead_out[a]
        acc = np.zeros(nv, np.float64)
        part = np.empty(nv, x.dtype)
        if not second:
            _add_taps(
                x, w, offs, (ki * npair + pi) * ntaps, 0, ntaps, xb, sad, chunk, acc, part, nv
            )
            _store(out, acc, ob, u0, n_u, lq, ow, fstep, step)
            continue
        acc2 = np.zeros(nv, np.float64)
        part2 = np.empty(nv, x.dtype)
        wb = (ki * npair + pi) * pwidth
        for tc in range(0, ns, chunk):
            part[:] = 0
            part2[:] = 0
            _dot_pair_taps(x, pw, part, part2, xb, poffs, wb, ns, tc, min(ns, tc + chunk), nv)
            for o in range(nv):
                acc[o] += part[o]
                acc2[o] += part2[o]
        _add_taps(x, pw, poffs, wb + ns, ns, ns + na, xb, False, chunk, acc, part, nv)
        _add_taps(x, pw, poffs, wb + ns, ns + na, ns + na + nb, xb, False, chunk, acc2, part2, nv)
        _store(out, acc, ob, u0, n_u, lq, ow, fstep, step)
        _store(out, acc2, ob + lead_ostep[n_lead - 1], u0, n_u, lq, ow, fstep, step)


@numba.njit(nogil=True, cache=True)
def _split_rows(src, dst, p0, p1, r0, r1):  # pragma: no cover - compiled
    """``dst[p, r, q, j] = src[p, r, q + j s]`` for the ``s = dst.shape[2]`` phases of
    rows ``r0:r1`` of planes ``p0:p1`` of ``src`` (planes, rows, L), zeros after each
    phase's last sample (``dst``: planes, rows, s, lq). (Ranges, not slices: the
    arrays' layouts, which numba compiles for, stay those of the whole.)"""
    s, lq = dst.shape[2], dst.shape[3]
    n = src.shape[2]
    for p in range(p0, p1):
        for r in range(r0, r1):
            for q in range(s):
                count = (n - q + s - 1) // s
                for j in range(count):
                    dst[p, r, q, j] = src[p, r, q + j * s]
                for j in range(count, lq):
                    dst[p, r, q, j] = 0


def _phases(xp: np.ndarray, s: int, row_tail: bool) -> np.ndarray:
    """``xp`` (..., L) as a flat C-ordered buffer of shape (..., s, ceil(L/s) [+ _V])
    holding ``xp[..., q::s]`` in phase ``q``, plus a tail of ``_V`` zeros: the inner loop
    reads up to ``_V - 1`` samples past a row's last output (those sums are discarded),
    into the row's own tail of ``_V`` zeros when ``row_tail``, else into the next row.

    Where a row's samples are adjacent and the axes before the last two merge (a view
    (planes, rows, L)), a compiled loop splits them, writing only the tails' zeros
    besides, a share of the planes (or rows) per thread for large inputs (seed 004's 8 x
    3 x 256x256 float32 at stride 2: 1.7-2.0 -> 0.6-0.9 ms; the whole call 5.3 -> 4.3
    ms); otherwise NumPy's strided copies of the whole array into zeros, which walk it in
    its memory order (seed 001's images innermost)."""
    n = xp.shape[-1]
    lq = -(-n // s) + (_V if row_tail else 0)
    size = prod(xp.shape[:-1]) * s * lq
    # (xp is (b, C, P, *sliding): at least two axes before the last)
    src = reshaped_view(xp, (-1, *xp.shape[-2:])) if xp.strides[-1] == xp.itemsize else None
    if src is None:
        if s == 1 and lq == n:  # a plain copy: only the tail needs zeros
            buf = np.empty(size + _V, xp.dtype)
            buf[size:] = 0
            buf[:size].reshape(xp.shape)[...] = xp
            return buf
        buf = np.zeros(size + _V, xp.dtype)
        ph = buf[:size].reshape(*xp.shape[:-1], s, lq)
        for q in range(s):
            v = xp[..., q::s]
            ph[..., q, : v.shape[-1]] = v
        return buf
    buf = np.empty(size + _V, xp.dtype)
    buf[size:] = 0
    dst = buf[:size].reshape(*src.shape[:2], s, lq)
    # (memory-bound: on the 2-core dev VM two threads gain 5-20 % from 1.5M samples on,
    # 25-35 % in a call where the input comes from memory, and lose below 1M)
    parts = get_workers() if xp.size >= _SPLIT_THREADS else 1
    planes, rows = src.shape[:2]
    by_planes = planes >= parts  # a share of the planes each, or of one plane's rows
    cut = [(planes if by_planes else rows) * i // parts for i in range(parts + 1)]

    def split(i: int) -> None:
        a, b = cut[i], cut[i + 1]
        _split_rows(src, dst, *((a, b, 0, rows) if by_planes else (0, planes, a, b)))

    parallel_for(split, range(parts), parts)
    return buf


def _flat_view(block: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """A 1-D view of ``block``'s memory from its first element, and ``block``'s strides
    in elements; None when a stride is negative or not a whole number of elements."""
    r = block.itemsize
    strides = tuple(st // r for st in block.strides)
    if block.flags.c_contiguous:
        return block.reshape(-1), strides
    if any(st < 0 or st % r for st in block.strides):
        return None
    span = 1 + sum((n - 1) * st for n, st in zip(block.shape, strides, strict=True))
    return as_strided(block, shape=(span,), strides=(r,)), strides


class WindowRows:
    """The window-rows kernel made ready for one problem and filter bank: what it sums
    (``absolute``: ``|x - w|``, else the products ``x w``), the order of the axes it runs
    in, the filters' taps (k, P, taps) and, per input layout, the taps' offsets. Call it on a padded
    chunk ``xp`` (b, C, P, *padded) to fill a block (b, k1 - k0, P, *O; any layout).

    A short last output axis is moved inward first (its rows would be mostly padding to
    the vector width); short rows of two stride-1 axes are folded (laid end to end)."""

    def __init__(self, p: Problem, kern: np.ndarray, absolute: bool):
        order = long_axis_last(p)
        self.perm = None if order is None else (0, 1, 2, *(3 + i for i in order))
        if order is not None:
            p = replace(p, geoms=tuple(p.geoms[i] for i in order))
            kern = kern.transpose(self.perm)
        self.p, self.sad = p, absolute
        self.fold = _folds(p)
        k, C, P = kern.shape[:3]
        self.weights = np.ascontiguousarray(np.moveaxis(kern, 1, 2)).reshape(k, P, -1)
        # float32 sums _TAPS taps at a time before adding them in float64
        self.chunk = max(1, self.weights.shape[-1]) if p.dtype == np.float64 else _TAPS
        self._layouts: dict[tuple, tuple] = {}
        self._launches: dict[tuple, tuple] = {}

    def _taps(self, strides: tuple[int, ...], lq: int, step: int, n_lead: int) -> tuple:
        """The offset of every tap (channel, leading taps, last-axis tap: the filters'
        order) in an input of element ``strides`` (C, P, *leading sliding axes) whose last
        axis is split into phases ``lq`` apart, ``step`` apart within a phase; and the
        input steps of the first ``n_lead`` output axes. Kept per layout."""
        key = (strides, lq, step, n_lead)
        found = self._layouts.get(key)
        if found is not None:
            return found
        g = self.p.geoms
        s, dil = g[-1].stride, g[-1].dilation
        offs = (
            np.arange(self.weights.shape[-1] // prod(ga.m for ga in g), dtype=np.int64) * strides[0]
        )
        for a, ga in enumerate(g[:-1]):
            offs = offs[..., None] + np.arange(ga.m, dtype=np.int64) * (
                ga.dilation * strides[2 + a]
            )
        jd = np.arange(g[-1].m, dtype=np.int64) * dil
        offs = (offs[..., None] + (jd % s) * lq + jd // s * step).reshape(-1)
        lead_xstep = np.array(
            [ga.stride * strides[2 + a] for a, ga in enumerate(g[:n_lead])], np.int64
        )
        found = self._layouts[key] = (offs, lead_xstep)
        return found

    def __call__(self, xp: np.ndarray, k0: int, k1: int, block: np.ndarray) -> None:
        if self.perm is not None:
            xp, block = xp.transpose(self.perm), block.transpose(self.perm)
        if not self._fill(xp, k0, k1, block):  # a layout the kernel cannot address
            tmp = np.empty(block.shape, block.dtype)
            self._fill(xp, k0, k1, tmp)
            block[...] = tmp

    def _fill(self, xp: np.ndarray, k0: int, k1: int, block: np.ndarray) -> bool:
        """Run the kernel into ``block``; False (nothing done) when ``block`` has a
        negative stride. How to run it is remembered per layout (:meth:`_launch`)."""
        key = (xp.shape, xp.strides, block.shape, block.strides, k0, k1, get_workers())
        launch = self._launches.get(key)
        if launch is None:
            if len(self._launches) >= _LAUNCHES:
                self._launches.clear()
            flat = _flat_view(block)
            launch = self._launches[key] = (
                None if flat is None else (*self._launch(xp, k0, k1, flat[1]), flat[0].size)
            )
        if launch is None:
            return False
        x_span, args, tasks, workers, span = launch
        r = block.itemsize
        out = as_strided(block, shape=(span,), strides=(r,))
        x = (
            as_strided(xp, shape=(x_span,), strides=(r,))
            if x_span
            else _phases(xp, self.p.geoms[-1].stride, row_tail=not self.fold)
        )
        _split(lambda t0, t1: _window_rows(x, *args, out, t0, t1), tasks, workers)
        return True

    def _launch(self, xp: np.ndarray, k0: int, k1: int, ostrides: tuple[int, ...]) -> tuple:
        """How the kernel runs on an input of ``xp``'s layout into an output of strides
        ``ostrides`` (elements): the span in elements of ``xp`` read in place (0: a copy
        in stride phases instead); the kernel's arguments after the input and before the
        output; the number of tasks; the threads (1 below ``_PARALLEL_TERMS``, else
        None: all)."""
        p, k, P = self.p, k1 - k0, xp.shape[2]
        flat = _flat_view(xp)
        xstrides = None if flat is None else flat[1]
        fold = self.fold
        if _items_inner(p, xp, xstrides, ostrides):  # the items' lines, in place
            in_place, exact, b, n_lead, frows, fstep = True, True, 1, p.ndim - 1, 1, 0
            ow = lq = length = p.O[-1] * xp.shape[0]  # one row: last axis x items
            offs, lead_xstep = self._taps(xstrides[1:], 0, xp.shape[0], n_lead)
            xsb, xsp = 0, xstrides[2]
            ostep = np.array([0, ostrides[1], ostrides[2], 1], np.int64)
        else:
            in_place = _rows_in_place(p, xp, xstrides, fold)
            if in_place:  # rows read where they are, ``lq`` apart; no reading past them
                lq = xstrides[-2] if fold else p.O[-1]
                item = xstrides[1:]
                xsb, exact = xstrides[0], True
            else:  # a copy in stride phases, rows padded or folded
                st = p.geoms[-1].stride
                lq = -(-xp.shape[-1] // st) + (0 if fold else _V)
                dims = (*xp.shape[1:-1], st, lq)  # the phase buffer of one item
                item = tuple(prod(dims[i + 1 :]) for i in range(len(dims)))
                xsb, exact = prod(dims), False
            b, n_lead = xp.shape[0], p.ndim - 1 - fold
            offs, lead_xstep = self._taps(item, lq if not in_place else 0, 1, n_lead)
            xsp = item[1]
            frows, fstep = (p.O[-2], ostrides[-2]) if fold else (1, 0)
            ow = p.O[-1]
            length = (frows - 1) * lq + ow
            ostep = np.array([*ostrides[:3], ostrides[-1]], np.int64)
        weights = self.weights[k0:k1]
        lead_out = list(p.O[:n_lead])
        pw, poffs, pcount = self._pairs(weights, offs, lead_xstep, lead_out)
        if pcount[3]:  # tasks count row pairs along the last leading axis
            lead_out[-1] = -(-lead_out[-1] // 2)
        rows = b * k * P * prod(lead_out)
        if frows > 1 or exact:
            seg = min(length, _FOLD_SEGMENT)
        else:
            seg = length if rows >= 4 * get_workers() else max(_V, min(length, _SEGMENT))
        args = (
            weights.reshape(-1),
            self.sad,
            self.chunk,
            exact,
            k,
            P,
            xsb,
            xsp,
            np.array(lead_out, np.int64),
            lead_xstep,
            offs,
            pw,
            poffs,
            pcount,
            ow,
            lq,
            frows,
            fstep,
            seg,
            ostep,
            np.array(ostrides[3 : 3 + n_lead], np.int64),
        )
        work = b * k * P * prod(p.O[:n_lead]) * length * offs.size  # terms
        return (
            flat[0].size if in_place else 0,
            args,
            rows * -(-length // seg),
            1 if work < _PARALLEL_TERMS else None,
        )

    def _pairs(
        self, weights: np.ndarray, offs: np.ndarray, lead_xstep: np.ndarray, lead_out: list[int]
    ) -> tuple:
        """Row pairs for the products (see :func:`_window_rows`): the second row of a pair
        reads ``d`` (the last leading axis' input step) further on, so a tap of the second
        row at offset ``o`` and one of the first at ``o + d`` read the same values. Returns
        the weights (k * P, shared twice + first only + second only), offsets (relative
        to the first row) and counts, or empty ones (no pairs: SAD, no leading axis, one
        row, taps sharing an address, or no tap shared)."""
        none = (np.zeros(1, weights.dtype), np.zeros(1, np.int64), np.zeros(4, np.int64))
        # taps must have offsets of their own to be matched (an input whose axes overlap
        # in memory, e.g. a sliding_window_view or np.broadcast_to, repeats offsets)
        if self.sad or not lead_out or lead_out[-1] < 2 or np.unique(offs).size < offs.size:
            return none
        d = int(lead_xstep[-1])
        index = {int(o): t for t, o in enumerate(offs)}
        shared = [(t, index[int(o) - d]) for t, o in enumerate(offs) if int(o) - d in index]
        if not shared:
            return none
        first_a, first_b = (list(t) for t in zip(*shared, strict=True))
        only_a = [t for t in range(offs.size) if int(offs[t]) - d not in index]
        only_b = sorted(set(range(offs.size)) - set(first_b))
        k, P = weights.shape[:2]
        pw = np.concatenate(
            [
                weights[..., first_a],
                weights[..., first_b],
                weights[..., only_a],
                weights[..., only_b],
            ],
            axis=-1,
        )
        poffs = np.concatenate([offs[first_a], offs[only_a], offs[only_b] + d])
        counts = np.array([len(shared), len(only_a), len(only_b), lead_out[-1]], np.int64)
        return np.ascontiguousarray(pw).reshape(-1), poffs.astype(np.int64), counts


def _items_inner(
    p: Problem, xp: np.ndarray, xstrides: tuple[int, ...] | None, ostrides: tuple[int, ...]
) -> bool:
    """When the items are innermost in memory, both in ``xp`` (element strides
    ``xstrides``) and in the block (as in ``"hwn"`` layouts), and the last axis has
    stride 1, each line of the last axis times the items is contiguous in both (item
    fastest): the kernel runs on those lines in ``xp`` itself."""
    b = xp.shape[0]
    return (
        b > 1
        and p.geoms[-1].stride == 1
        and ostrides[0] == 1
        and ostrides[-1] == b
        and xstrides is not None
        and xstrides[0] == 1
        and xstrides[-1] == b
    )


def _rows_in_place(
    p: Problem, xp: np.ndarray, xstrides: tuple[int, ...] | None, fold: bool
) -> bool:
    """The kernel reads ``xp`` itself when its last axis is contiguous and has stride 1
    (no phases to split), folded rows being one row stride apart (the stride of a single
    row means nothing); segments then end exactly where the outputs do, so nothing past
    the windows is read."""
    return (
        xstrides is not None
        and p.geoms[-1].stride == 1
        and xstrides[-1] == 1
        and (not fold or p.ndim < 2 or xp.shape[-2] == 1 or xstrides[-2] >= xp.shape[-1])
    )


def _folds(p: Problem) -> bool:
    """Rows are folded over the last two output axes (see :func:`_window_rows`) when both
    have stride 1, the last is short, and at least half of each input row is output."""
    if p.ndim < 2 or p.geoms[-1].stride != 1 or p.geoms[-2].stride != 1:
        return False
    return p.O[-1] < _FOLD_BELOW and 2 * p.O[-1] >= p.geoms[-1].padded


@numba.njit(nogil=True, cache=True)
def _gcd(a, b):  # pragma: no cover - compiled
    while b:
        a, b = b, a % b
    return a


@numba.njit(nogil=True, cache=True)
def _window_starts(base, m, d, s):  # pragma: no cover - compiled
    """``(j0, step)``: the taps ``j0, j0 + step, ...`` (below ``m``) of a block whose tap
    ``j`` sits at sample ``base + d * j`` where a window starts (samples that are
    multiples of the stride ``s``)."""
    j0 = 0
    while j0 < m and (base + d * j0) % s != 0:
        j0 += 1
    return j0, (s // _gcd(s, d) if s > 1 else 1)


@numba.njit(nogil=True, cache=True)
def _box_block(src, dst, m, d, s, pc, pp):  # pragma: no cover - compiled
    """Window sums along the first axis of ``src`` (n, w) into ``dst`` (n_out, w):
    blocked prefix sums. Along each residue class of ``d`` the samples are cut into
    blocks of ``m``; a window starting at tap ``j`` of block ``B`` is
    ``total(B) - prefix_B(j - 1) + prefix_{B+1}(j - 1)``: every term is a sum within one
    block, so its rounding error is bounded by those two blocks, not by everything before
    it on the axis. ``pc``, ``pp``: (m, w) scratch (this block's and the previous one's
    prefix sums)."""
    n, w = src.shape
    n_out = dst.shape[0]
    for r in range(d):
        nu = (n - r + d - 1) // d
        nblk = (nu + m - 1) // m
        for b in range(nblk + 1):
            if b < nblk:
                rows = min(m, nu - b * m)
                for jj in range(rows):
                    row = src[r + d * (b * m + jj)]
                    cur = pc[jj]
                    if jj == 0:
                        for q in range(w):
                            cur[q] = row[q]
                    else:
                        prev = pc[jj - 1]
                        for q in range(w):
                            cur[q] = prev[q] + row[q]
            if b >= 1:  # windows starting in block b - 1 (complete: m rows in pp)
                j0, step = _window_starts(r + d * (b - 1) * m, m, d, s)
                total = pp[m - 1]
                for jj in range(j0, m, step):
                    o = (r + d * ((b - 1) * m + jj)) // s
                    if o >= n_out:
                        break
                    res = dst[o]
                    if jj == 0:
                        for q in range(w):
                            res[q] = total[q]
                    else:
                        lo = pp[jj - 1]
                        hi = pc[jj - 1]
                        for q in range(w):
                            res[q] = (total[q] - lo[q]) + hi[q]
            if b < nblk:
                pp, pc = pc, pp


@numba.njit(nogil=True, cache=True)
def _box_axis(a, out, m, d, s, blocks, t_begin, t_end):  # pragma: no cover - compiled
    """``out[i, o, :] = sum_j a[i, o * s + j * d, :]`` for a (pre, L, post) float64 array
    (:func:`_box_block`): one task per leading index, or per block of the trailing axis
    when there are few leading ones."""
    pre, n, post = a.shape
    width = (post + blocks - 1) // blocks
    for task in range(t_begin, t_end):
        i = task // blocks
        q0 = (task % blocks) * width
        q1 = min(post, q0 + width)
        w = q1 - q0
        _box_block(a[i, :, q0:q1], out[i, :, q0:q1], m, d, s, np.empty((m, w)), np.empty((m, w)))


@numba.njit(nogil=True, cache=True)
def _box_last(a, out, m, d, s, t_begin, t_end):  # pragma: no cover - compiled
    """``_box_axis`` for the last axis of a (rows, L) array: ``_ROWS`` rows at a time are
    transposed into a scratch (L, _ROWS), summed there with vectorised loops, and
    transposed back."""
    nrows, n = a.shape
    n_out = out.shape[1]
    for blk in range(t_begin, t_end):
        r0 = blk * _ROWS
        w = min(nrows, r0 + _ROWS) - r0
        src = np.empty((n, w))
        for q in range(w):
            row = a[r0 + q]
            for t in range(n):
                src[t, q] = row[t]
        dst = np.empty((n_out, w))
        _box_block(src, dst, m, d, s, np.empty((m, w)), np.empty((m, w)))
        for q in range(w):
            row = out[r0 + q]
            for o in range(n_out):
                row[o] = dst[o, q]


_ROWS = 32


def box_sum_axis(
    a: np.ndarray, axis: int, m: int, d: int, s: int, n_out: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Window sums of the float64 array ``a`` along ``axis`` (``m`` taps ``d`` apart,
    every ``s``-th window, ``n_out`` windows), by blocked prefix sums (see ``_box_axis``);
    into ``out`` (C-contiguous) when given."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    pre, post = prod(a.shape[:axis]), prod(a.shape[axis + 1 :])
    shape = (*a.shape[:axis], n_out, *a.shape[axis + 1 :])
    out = np.empty(shape, np.float64) if out is None else out
    if post == 1:
        a2, o2 = a.reshape(pre, a.shape[axis]), out.reshape(pre, n_out)
        _split(lambda t0, t1: _box_last(a2, o2, m, d, s, t0, t1), -(-pre // _ROWS))
    else:
        a3, o3 = a.reshape(pre, a.shape[axis], post), out.reshape(pre, n_out, post)
        blocks = 1 if pre >= 4 else max(1, min(64, post // 256))
        _split(lambda t0, t1: _box_axis(a3, o3, m, d, s, blocks, t0, t1), pre * blocks)
    return out


def _split(run, tasks: int, workers: int | None = None) -> None:
    """Run the compiled ``run(t_begin, t_end)`` over ``range(tasks)`` in a few contiguous
    ranges on batchconv's thread pool (``workers`` threads, by default
    :func:`get_workers`; the kernels release the GIL).
    Our own pool rather than numba's: threads that do not spin between calls (the FFT
    work that follows runs at full speed), the ``workers`` setting honoured, and calls from
    several threads at once are safe whatever numba's threading layer."""
    n = min(workers or get_workers(), tasks)
    if n <= 1:
        run(0, tasks)
        return
    parts = min(tasks, 4 * n)
    bounds = [tasks * i // parts for i in range(parts + 1)]
    parallel_for(lambda i: run(bounds[i], bounds[i + 1]), range(parts), n)


@numba.njit(nogil=True, cache=True)
def _box_row(src, dst, scale, m, d, s, pc, pp):  # pragma: no cover - compiled
    """One row of :func:`_box_block` (scalar), with ``scale``: the sum of ``src`` over the
    two blocks each window's partial sums came from (``src`` non-negative there)."""
    n = src.shape[0]
    n_out = dst.shape[0]
    for r in range(d):
        nu = (n - r + d - 1) // d
        nblk = (nu + m - 1) // m
        for b in range(nblk + 1):
            if b < nblk:
                rows = min(m, nu - b * m)
                acc = 0.0
                for jj in range(rows):
                    acc += src[r + d * (b * m + jj)]
                    pc[jj] = acc
            if b >= 1:
                j0, step = _window_starts(r + d * (b - 1) * m, m, d, s)
                total = pp[m - 1]
                o = (r + d * ((b - 1) * m + j0)) // s  # then + d * step // s per window
                o_step = d * step // s
                jj = j0
                if jj == 0 and jj < m and o < n_out:
                    dst[o] = total
                    scale[o] = total
                    jj += step
                    o += o_step
                while jj < m and o < n_out:
                    dst[o] = (total - pp[jj - 1]) + pc[jj - 1]
                    scale[o] = total + pc[jj - 1]
                    jj += step
                    o += o_step
            if b < nblk:
                pp, pc = pc, pp


# error_model="numpy": a division is a plain instruction (the Python model's zero check
# on every one kept the output loop from vectorising); no result divides by zero
@numba.njit(fastmath=False, nogil=True, cache=True, error_model="numpy")
def _stats_2d(x, out, n, m0, s0, m1, d1, s1, mode, eps16, t_begin, t_end, rows_per_task):
    """Window statistics of 2-D items in one pass over ``x`` (b, C, P, H, W): channel sums
    of x and x^2 in float64, window sums along W for each input row (:func:`_box_row`),
    then along H by blocked prefix sums (dilation 1 there). ``mode`` 0 writes the sums
    (out: (2, b, P, O0, O1)); 1 (ncc) and 2 (cosine) write ``1 / sqrt(spread)``, 0 for flat
    windows, the spread being n times the variance (ncc) or the sum
    of squares (cosine) and flat meaning at most ``eps16 * (m0 + m1)`` times the sum of
    squares over the blocks the window's sums came from (out: (1, b, P, O0, O1)). Tasks:
    (item, range of output rows)."""  # pragma: no cover - compiled
    nb, C, P, H, W = x.shape
    o0n, o1n = out.shape[3], out.shape[4]
    ntr = (o0n + rows_per_task - 1) // rows_per_task
    r1 = np.empty(W, np.float64)
    r2 = np.empty(W, np.float64)
    rowp = np.empty((2, m1), np.float64)
    row = np.empty((3, o1n), np.float64)  # row sums of x, x^2 and the x^2 row scale
    junk = np.empty(o1n, np.float64)
    pc = np.empty((m0, 3, o1n), np.float64)
    pp = np.empty((m0, 3, o1n), np.float64)
    zero3 = np.zeros((3, o1n), np.float64)
    for task in range(t_begin, t_end):
        item = task // ntr
        oa = (task % ntr) * rows_per_task
        ob = min(o0n, oa + rows_per_task)
        bi = item // P
        pi = item % P
        t0 = oa * s0
        n_rows = (ob - 1) * s0 + m0 - t0  # input rows this task reads
        nblk = (n_rows + m0 - 1) // m0
        for b in range(nblk + 1):
            if b < nblk:
                rows = min(m0, n_rows - b * m0)
                for jj in range(rows):
                    t = t0 + b * m0 + jj
                    for q in range(W):
                        r1[q] = 0.0
                        r2[q] = 0.0
                    for c in range(C):
                        src = x[bi, c, pi, t]
                        for q in range(W):
                            v = np.float64(src[q])
                            r1[q] += v
                            r2[q] += v * v
                    _box_row(r1, row[0], junk, m1, d1, s1, rowp[0], rowp[1])
                    _box_row(r2, row[1], row[2], m1, d1, s1, rowp[0], rowp[1])
                    cur = pc[jj]
                    if jj == 0:
                        for e in range(3):
                            for q in range(o1n):
                                cur[e, q] = row[e, q]
                    else:
                        prev = pc[jj - 1]
                        for e in range(3):
                            for q in range(o1n):
                                cur[e, q] = prev[e, q] + row[e, q]
            if b >= 1:
                j0, step = _window_starts((b - 1) * m0, m0, 1, s0)
                total = pp[m0 - 1]
                o = oa + ((b - 1) * m0 + j0) // s0  # then + step // s0 per output row
                for jj in range(j0, m0, step):
                    if o >= ob:
                        break
                    # jj == 0: the window is the previous block's total (lo = hi = 0)
                    lo = pp[jj - 1] if jj > 0 else zero3
                    hi = pc[jj - 1] if jj > 0 else zero3
                    if mode == 0:
                        for q in range(o1n):
                            out[0, bi, pi, o, q] = (total[0, q] - lo[0, q]) + hi[0, q]
                            out[1, bi, pi, o, q] = (total[1, q] - lo[1, q]) + hi[1, q]
                    else:
                        dst = out[0, bi, pi, o]
                        flat = eps16 * (m0 + m1)
                        for q in range(o1n):
                            a1 = (total[0, q] - lo[0, q]) + hi[0, q]
                            a2 = (total[1, q] - lo[1, q]) + hi[1, q]
                            sc = total[1, q] + hi[1, q] + (total[2, q] - lo[2, q]) + hi[2, q]
                            spread = a2 - a1 * a1 / n if mode == 1 else a2
                            inv = 1.0 / np.sqrt(spread)  # used only where spread > 0
                            # flat windows: 0; NaN stays NaN
                            dst[q] = (
                                inv if spread > flat * sc else (spread if spread != spread else 0.0)
                            )
                    o += step // s0
            if b < nblk:
                pp, pc = pc, pp


def window_stats_2d(xw: np.ndarray, geoms, n: int, metric, out: np.ndarray) -> None:
    """Fill ``out`` with the window statistics of the 2-D items ``xw`` (b, C, P, H, W),
    contiguous (see :func:`_stats_2d`) for ``metric`` (a ``metrics.Metric``: the sums for
    a distance, the inverse spread, centred or not, for a normalised metric); ``geoms``:
    the two 'valid' axis geometries, the first without dilation."""
    g0, g1 = geoms
    mode = 0 if not metric.normalised else (1 if metric.centred else 2)
    b, P = xw.shape[0], xw.shape[2]
    rows = g0.out
    per_task = max(1, -(-rows // max(1, 2 * get_workers())))
    tasks = b * P * -(-rows // per_task)
    eps16 = 16 * np.finfo(np.float64).eps
    out = out.reshape(-1, b, P, g0.out, g1.out)
    _split(
        lambda t0, t1: _stats_2d(
            xw,
            out,
            float(n),
            g0.m,
            g0.stride,
            g1.m,
            g1.dilation,
            g1.stride,
            mode,
            eps16,
            t0,
            t1,
            per_task,
        ),
        tasks,
    )


@numba.njit(nogil=True, cache=True)
def _local_maxima_2d(a, sign, floor, d, out):  # pragma: no cover - compiled
    """The flat indices (ascending, into ``out``; returns how many) of the samples of the
    2-D map ``a`` times ``sign`` that are above ``floor`` and at least every value
    within Chebyshev distance ``d`` (the box clipped to the map); none for a constant
    map. NaN is never a candidate and never blocks one."""
    n0, n1 = a.shape
    first = a[0, 0]
    constant = True
    for i in range(n0):
        for j in range(n1):
            if a[i, j] != first:
                constant = False
                break
        if not constant:
            break
    if constant:
        return 0
    count = 0
    for i in range(n0):
        i0, i1 = max(i - d, 0), min(i + d, n0 - 1)
        for j in range(n1):
            v = sign * a[i, j]
            if not v > floor:
                continue
            j0, j1 = max(j - d, 0), min(j + d, n1 - 1)
            top = True
            for ii in range(i0, i1 + 1):
                for jj in range(j0, j1 + 1):
                    if sign * a[ii, jj] > v:
                        top = False
                        break
                if not top:
                    break
            if top:
                out[count] = i * n1 + j
                count += 1
    return count


def local_maxima_2d(a: np.ndarray, lowest: bool, floor: float, d: int) -> np.ndarray:
    """The candidates of ``peak_search.find_peaks`` in one 2-D map ``a`` (float32 or
    float64): flat indices, ascending, of its local maxima (minima when ``lowest``)
    beyond ``floor`` (already negated for ``lowest``), within distance ``d``."""
    out = np.empty(a.size, np.intp)
    n = _local_maxima_2d(a, -1.0 if lowest else 1.0, floor, d, out)
    return out[:n]


@numba.njit(nogil=True, cache=True)
def _greedy_suppression(lo, hi, max_overlap, top, taken):  # pragma: no cover - compiled
    n, d = lo.shape
    alive = np.ones(n, np.bool_)
    count = 0
    for j in range(n):
        if not alive[j]:
            continue
        taken[count] = j
        count += 1
        if count == top:
            break
        vj = 1.0
        for a in range(d):
            vj *= hi[j, a] - lo[j, a]
        for i in range(j + 1, n):
            if not alive[i]:
                continue
            inter, vi = 1.0, 1.0
            for a in range(d):
                side = min(hi[i, a], hi[j, a]) - max(lo[i, a], lo[j, a])
                if side <= 0:
                    inter = 0.0
                    break
                inter *= side
            if inter == 0.0:
                continue
            for a in range(d):
                vi *= hi[i, a] - lo[i, a]
            if inter > max_overlap * (vi + vj - inter):
                alive[i] = False
    return count


def greedy_suppression(lo: np.ndarray, hi: np.ndarray, max_overlap: float, top: int) -> np.ndarray:
    """``match._suppress``'s loop for one image: the boxes ``[lo, hi)`` (best first)
    kept, each overlapping no kept better one by more than ``max_overlap`` (IoU), at
    most ``top`` (0: all)."""
    taken = np.empty(lo.shape[0], np.intp)
    lo64, hi64 = np.ascontiguousarray(lo, np.float64), np.ascontiguousarray(hi, np.float64)
    return taken[: _greedy_suppression(lo64, hi64, float(max_overlap), int(top), taken)]


@numba.njit(nogil=True, cache=True)
def _normalise_rows(y, inv_a, inv_norm, n_out, t0, t1):  # pragma: no cover - compiled
    k = y.shape[1]
    for t in range(t0, t1):
        b, i = t // k, t % k
        for p in range(inv_norm.shape[1]):
            c = inv_norm[i, p]
            row, a = y[b, i, p * n_out : (p + 1) * n_out], inv_a[b, p * n_out : (p + 1) * n_out]
            for j in range(n_out):
                row[j] = min(max(row[j] * a[j] * c, -1.0), 1.0)


def normalise_block(block: np.ndarray, inv_a: np.ndarray, inv_norm: np.ndarray) -> bool:
    """``windowed.MetricMethod._normalise`` in one pass: ``block`` ``(b, k, P, *O)``
    times the windows' inverse spreads ``inv_a`` ``(b, P, *O)`` and the filters'
    inverse norms ``inv_norm`` ``(k, P)`` (both in the block's dtype), clipped to
    [-1, 1], in place. False (nothing done) where the block's trailing axes are not one
    run of memory."""
    b, k = block.shape[:2]
    y = reshaped_view(block, (b, k, -1))
    if y is None:
        return False
    a = np.ascontiguousarray(inv_a).reshape(b, -1)
    n_out = y.shape[2] // max(inv_norm.shape[1], 1)
    _split(lambda t0, t1: _normalise_rows(y, a, inv_norm, n_out, t0, t1), b * k)
    return True


# Winograd's transforms (methods/winograd.py) for tiles of 6 x 6 input samples
# (F(4x4, 3x3), F(2x2, 5x5)), vectorised along the channels (or filters), which are
# innermost in both buffers: two passes of a 6 x 6 matrix per tile instead of one
# (36 x 36) Kronecker product, and no gathered copy of the tiles. The matrices are
# padded to 6 x 6 with zero rows (A^T): one loop shape, which LLVM vectorises (a 4-row
# variant ran 4x slower, unvectorised).
@numba.njit(fastmath={"contract"}, nogil=True, cache=True, inline="always")
def _apply6(b, src, s0, ss, dst, d0, ds, n):  # pragma: no cover - compiled
    """``dst[d0 + i*ds:][:n] = sum_l b[i, l] src[s0 + l*ss:][:n]`` for a 6 x 6 ``b``."""
    x0, x1, x2 = src[s0:], src[s0 + ss :], src[s0 + 2 * ss :]
    x3, x4, x5 = src[s0 + 3 * ss :], src[s0 + 4 * ss :], src[s0 + 5 * ss :]
    y0, y1, y2 = dst[d0:], dst[d0 + ds :], dst[d0 + 2 * ds :]
    y3, y4, y5 = dst[d0 + 3 * ds :], dst[d0 + 4 * ds :], dst[d0 + 5 * ds :]
    b00, b01, b02, b03, b04, b05 = b[0, 0], b[0, 1], b[0, 2], b[0, 3], b[0, 4], b[0, 5]
    b10, b11, b12, b13, b14, b15 = b[1, 0], b[1, 1], b[1, 2], b[1, 3], b[1, 4], b[1, 5]
    b20, b21, b22, b23, b24, b25 = b[2, 0], b[2, 1], b[2, 2], b[2, 3], b[2, 4], b[2, 5]
    b30, b31, b32, b33, b34, b35 = b[3, 0], b[3, 1], b[3, 2], b[3, 3], b[3, 4], b[3, 5]
    b40, b41, b42, b43, b44, b45 = b[4, 0], b[4, 1], b[4, 2], b[4, 3], b[4, 4], b[4, 5]
    b50, b51, b52, b53, b54, b55 = b[5, 0], b[5, 1], b[5, 2], b[5, 3], b[5, 4], b[5, 5]
    for c in range(n):
        v0, v1, v2, v3, v4, v5 = x0[c], x1[c], x2[c], x3[c], x4[c], x5[c]
        y0[c] = ((b00 * v0 + b01 * v1) + (b02 * v2 + b03 * v3)) + (b04 * v4 + b05 * v5)
        y1[c] = ((b10 * v0 + b11 * v1) + (b12 * v2 + b13 * v3)) + (b14 * v4 + b15 * v5)
        y2[c] = ((b20 * v0 + b21 * v1) + (b22 * v2 + b23 * v3)) + (b24 * v4 + b25 * v5)
        y3[c] = ((b30 * v0 + b31 * v1) + (b32 * v2 + b33 * v3)) + (b34 * v4 + b35 * v5)
        y4[c] = ((b40 * v0 + b41 * v1) + (b42 * v2 + b43 * v3)) + (b44 * v4 + b45 * v5)
        y5[c] = ((b50 * v0 + b51 * v1) + (b52 * v2 + b53 * v3)) + (b54 * v4 + b55 * v5)


@numba.njit(fastmath={"contract"}, nogil=True, cache=True)
def _winograd_in6(x, xs, bt, n0, n1, pi, t0, t1, ntc, m, c, v, tmp, last):  # pragma: no cover
    """The transformed tiles ``v`` (36, tiles, c) (flat) of items ``n0:n1``, pair ``pi``,
    tile rows ``t0:t1`` (``ntc`` tiles each, ``m`` samples apart) of ``x``: the flat
    input (b, P, H, W, c) with element strides ``xs`` (item, pair, row, column), channels
    contiguous. The last tile row and column start at ``last`` (row, column): ``m``
    after the one before in a padded input, earlier in an unpadded one (the method's
    ``_gather``). ``v[6 i + j, tile] = (B^T d B)[i, j]``; ``tmp``: 36 c scratch."""
    count = v.shape[0] // (36 * c)
    ti = 0
    for n in range(n0, n1):
        for tr in range(t0, t1):
            r0 = min(tr * m, last[0])
            for tc in range(ntc):
                base = n * xs[0] + pi * xs[1] + r0 * xs[2] + min(tc * m, last[1]) * xs[3]
                for q in range(6):  # down the columns: tmp[i, q] = sum_l bt[i, l] d[l, q]
                    _apply6(bt, x, base + q * xs[3], xs[2], tmp, q * c, 6 * c, c)
                for i in range(6):  # along the rows: v[i, j] = sum_q bt[j, q] tmp[i, q]
                    _apply6(bt, tmp, 6 * i * c, c, v, (6 * i * count + ti) * c, count * c, c)
                ti += 1


@numba.njit(fastmath={"contract"}, nogil=True, cache=True)
def _winograd_out6(
    pr, at, m, n0, n1, t0, t1, ntc, k, out, os, o0, o1, tmp, y, acc, bad, last
):  # pragma: no cover
    """Write the outputs of the tiles' products ``pr`` (36, tiles, k) (flat; tiles as
    in :func:`_winograd_in6`, the last row and column starting at ``last``) into
    ``out``: flat from item ``n0``'s first output, element strides ``os`` (item, row,
    column), the ``k`` filters contiguous; only outputs inside ``o0 x o1`` and, of a
    tile moved back, those the tile before did not give. ``at``: A^T padded to 6 x 6
    with zero rows. ``bad[n - n0]`` becomes NaN where an item's outputs are not all
    finite. ``tmp``, ``y``: 36 k scratch, ``acc``: k."""
    count = pr.shape[0] // (36 * k)
    ti = 0
    for n in range(n0, n1):
        acc[:] = 0
        for tr in range(t0, t1):
            r0 = min(tr * m, last[0])  # the tile's first output row; from i0 new ones
            i0 = tr * m - r0
            for tc in range(ntc):
                c0 = min(tc * m, last[1])
                j0 = tc * m - c0
                for u in range(6):  # tmp[u, j] = sum_w at[j, w] pr[u, w]
                    _apply6(at, pr, (6 * u * count + ti) * k, count * k, tmp, 6 * u * k, k, k)
                for j in range(m):  # y[i, j] = sum_u at[i, u] tmp[u, j]
                    _apply6(at, tmp, j * k, 6 * k, y, j * k, 6 * k, k)
                for i in range(i0, min(m, o0 - r0)):
                    for j in range(j0, min(m, o1 - c0)):
                        src = y[(6 * i + j) * k :]
                        dst = out[(n - n0) * os[0] + (r0 + i) * os[1] + (c0 + j) * os[2] :]
                        for kk in range(k):
                            dst[kk] = src[kk]
                            # 0, or NaN from Inf or NaN (needs IEEE semantics: the
                            # fastmath flags here must never include nnan/ninf)
                            acc[kk] += src[kk] - src[kk]
                ti += 1
        for kk in range(k):
            bad[n - n0] += acc[kk]


def winograd_in6(
    xb: np.ndarray, bt: np.ndarray, items, pi, rows, m: int, v: np.ndarray, last=None
) -> None:
    """:func:`_winograd_in6` on the input ``xb`` (b, P, H, W, C) (channels contiguous,
    no negative stride: see :func:`flat_input`), items ``items = (n0, n1)`` and tile
    rows ``rows = (t0, t1)`` of pair ``pi``, into ``v`` (36, tiles, C); the last tile
    row and column starting at ``last`` (row, column), or ``m`` after the one before."""
    c = xb.shape[-1]
    flat, st = _flat_view(xb)
    xs = np.array(st[:4], np.int64)
    ntc = v.shape[1] // ((items[1] - items[0]) * (rows[1] - rows[0]))
    tmp = np.empty(36 * c, xb.dtype)
    _winograd_in6(flat, xs, bt, *items, pi, *rows, ntc, m, c, v.reshape(-1), tmp, _ends(last))


def _ends(last) -> np.ndarray:
    """The kernels' ``last`` (the last tile row's and column's starts): ``last``, or
    starts no tile reaches (each tile ``m`` after the one before)."""
    return np.array(last if last is not None else (1 << 62, 1 << 62), np.int64)


def flat_input(xb: np.ndarray) -> bool:
    """Whether :func:`winograd_in6` reads ``xb`` in place: channels contiguous, every
    stride a non-negative whole number of elements."""
    channels = xb.strides[-1] == xb.itemsize or xb.shape[-1] == 1
    return channels and _flat_view(xb) is not None


def winograd_out6(
    pr: np.ndarray, at6: np.ndarray, m: int, items, rows, target: np.ndarray, last=None
) -> np.ndarray | None:
    """:func:`_winograd_out6`: the products ``pr`` (36, tiles, k) of items ``items`` and
    tile rows ``rows`` (the last row and column of tiles starting at ``last``, as in
    :func:`winograd_in6`) written into ``target`` (items, k, O0, O1) (a view of the
    block); the finiteness per item (True: all finite), or None (nothing done) where
    ``target``'s filters are not contiguous or a stride is negative."""
    r = target.itemsize
    if target.shape[1] > 1 and target.strides[1] != r:
        return None
    flat = _flat_view(target)
    if flat is None:
        return None
    out, st = flat
    nb, k = target.shape[:2]
    ntc = pr.shape[1] // (nb * (rows[1] - rows[0]))
    os = np.array([st[0], st[2], st[3]], np.int64)
    tmp, y, acc = np.empty(36 * k, pr.dtype), np.empty(36 * k, pr.dtype), np.empty(k, pr.dtype)
    bad = np.zeros(nb, pr.dtype)
    o0, o1 = target.shape[2:]
    ends = _ends(last)
    _winograd_out6(
        pr.reshape(-1), at6, m, *items, *rows, ntc, k, out, os, o0, o1, tmp, y, acc, bad, ends
    )
    return np.isfinite(bad)


# The FFT method's channel sums per frequency bin (methods/fft.py): Y[f] = X[f] @ S[f]
# for thousands of bins whose matrices are small (4 x 32 by 32 x 32 for a 7x7 32->32
# layer on 4 items). BLAS pays a call per bin (about 0.9 us here) and, called from two
# threads at once, runs them no faster than one thread (1.87 against 1.80 ms for 2,112
# bins); this loop runs 4 rows of X at a time against each row of S, the real and
# imaginary parts in separate sums vectorised along the filters (1.53 ms on one thread,
# 0.94 on two), reading X and writing Y in the FFT's own layouts (no reordered copies).
@numba.njit(fastmath={"contract"}, nogil=True, cache=True)
def _bin_products(x, s, y, pi, f0, f1):  # pragma: no cover - compiled
    """``y[:, :, pi, f] = x[:, :, pi, f] @ s[f]`` (complex) for the bins ``f0:f1``:
    x (b, C, P, F), s (F, C, k), y (b, k, P, F). The bins go ``_BIN_BLOCK`` at
    a time through the scratch ``xs`` (block, b, C) and ``ys`` (block, b, k), so that each
    cache line of x and y is read or written once. The scratch is allocated here, not
    passed in (passed in, the same loop ran 1.8x slower: LLVM could not tell it from x,
    s and y)."""
    nb, nc = x.shape[0], x.shape[1]
    k = y.shape[1]
    acc = np.empty((8, k), x.real.dtype)
    xs = np.empty((_BIN_BLOCK, nb, nc), x.dtype)
    ys = np.empty((_BIN_BLOCK, nb, k), y.dtype)
    for fb in range(f0, f1, _BIN_BLOCK):
        nf = min(_BIN_BLOCK, f1 - fb)
        for b in range(nb):
            for c in range(nc):
                row = x[b, c, pi, fb:]
                for q in range(nf):
                    xs[q, b, c] = row[q]
        for q in range(nf):
            f = fb + q
            xq = xs[q]
            b0 = 0
            while b0 < nb:
                rows = min(4, nb - b0)
                # past the last row the last one is read again (its sums are dropped):
                # one loop shape, and the rows keep x's dtype (a complex128 zero would not)
                j1, j2, j3 = b0 + min(1, rows - 1), b0 + min(2, rows - 1), b0 + min(3, rows - 1)
                acc[:] = 0
                for c in range(nc):
                    a0, a1, a2, a3 = xq[b0, c], xq[j1, c], xq[j2, c], xq[j3, c]
                    r0, i0, r1, i1 = a0.real, a0.imag, a1.real, a1.imag
                    r2, i2, r3, i3 = a2.real, a2.imag, a3.real, a3.imag
                    # (whole rows: with an offset into them, s[f, c][k0:], the loop
                    # ran 1.4x slower)
                    sc = s[f, c]
                    y0r, y0i, y1r, y1i = acc[0], acc[1], acc[2], acc[3]
                    y2r, y2i, y3r, y3i = acc[4], acc[5], acc[6], acc[7]
                    for kk in range(k):
                        s1 = sc[kk].real
                        s2 = sc[kk].imag
                        y0r[kk] += r0 * s1 - i0 * s2
                        y0i[kk] += r0 * s2 + i0 * s1
                        y1r[kk] += r1 * s1 - i1 * s2
                        y1i[kk] += r1 * s2 + i1 * s1
                        y2r[kk] += r2 * s1 - i2 * s2
                        y2i[kk] += r2 * s2 + i2 * s1
                        y3r[kk] += r3 * s1 - i3 * s2
                        y3i[kk] += r3 * s2 + i3 * s1
                for r in range(rows):
                    out = ys[q, b0 + r]
                    re, im = acc[2 * r], acc[2 * r + 1]
                    for kk in range(k):
                        out[kk] = complex(re[kk], im[kk])  # (not re + 1j * im: 0 * Inf)
                b0 += 4
        for b in range(nb):
            for kk in range(k):
                row = y[b, kk, pi, fb:]
                for q in range(nf):
                    row[q] = ys[q, b, kk]


def bin_products(x: np.ndarray, s: np.ndarray, y: np.ndarray, pi: int, bins: slice) -> None:
    """:func:`_bin_products`: ``y[:, :, pi, f] = x[:, :, pi, f] @ s[f]`` for the bins
    ``f`` in ``bins``, complex ``x`` (b, C, P, F), ``s`` (F, C, k) (the block's filters:
    a view of all of them is contiguous, the fastest) and ``y`` (b, k, P, F)."""
    _bin_products(x, s, y, pi, bins.start, bins.stop)
