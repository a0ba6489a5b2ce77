"""Compiled kernels (numba), used through ``compiled.py`` when numba is installed.

**SAD** (``methods/sad.py``):

One parallel task per output row ``(item, filter, pair, leading output coordinates)``.
The padded input's last axis is split into ``stride`` phases (``x[..., q::stride]``), so
that tap ``j`` of output ``o`` reads ``phase[(j * dilation) % stride][o + (j * dilation)
// stride]``: contiguous in ``o``. The inner loop runs over the whole output row (rounded
up to a multiple of ``_V``), four taps at a time, into a row of partial sums in the compute
dtype; each tap row's partial sums are added into float64 accumulators. Indices are
non-negative slices, so numba emits no wrap-around checks and the loop vectorises.

Compiled on first use per dtype and cached on disk (``cache=True``).
"""

from __future__ import annotations

import threading
from math import prod

import numba
import numpy as np

from .problem import Problem
from .xp import get_workers

_V = 16  # the output row is rounded up to a multiple of this (one AVX-512 register)
_TAPS = 64  # taps summed in the compute dtype before they are added in float64
_SEGMENT = 4096  # outputs per task along a row, when rows are too few to keep threads busy
_lock = threading.Lock()


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _sad_rows(x, w, out, nb, nk, npair, xsb, xsp, wsk, wsp, lead_out, lead_xstep, xrow, wrow,
              ow, m, d, s, lq, seg):  # pragma: no cover - compiled
    n_lead = lead_out.shape[0]
    rows = 1
    for a in range(n_lead):
        rows *= lead_out[a]
    nseg = (ow + seg - 1) // seg
    for task in numba.prange(nb * nk * npair * rows * nseg):
        t = task // nseg
        o0 = (task % nseg) * seg
        n_o = min(seg, ow - o0)
        nv = (n_o + _V - 1) // _V * _V
        row = t % rows
        q = t // rows
        pi = q % npair
        q //= npair
        ki = q % nk
        bi = q // nk
        xb = bi * xsb + pi * xsp + o0
        rr = row
        for a in range(n_lead - 1, -1, -1):
            xb += (rr % lead_out[a]) * lead_xstep[a]
            rr //= lead_out[a]
        wb = ki * wsk + pi * wsp
        acc = np.zeros(nv, np.float64)
        part = np.empty(nv, x.dtype)
        for r in range(xrow.shape[0]):
            x0 = xb + xrow[r]
            w0 = wb + wrow[r]
            for jc in range(0, m, _TAPS):  # partial sums of at most _TAPS taps
                jend = min(m, jc + _TAPS)
                part[:] = 0
                j = jc
                while j + 4 <= jend:
                    w1 = w[w0 + j]
                    w2 = w[w0 + j + 1]
                    w3 = w[w0 + j + 2]
                    w4 = w[w0 + j + 3]
                    jd = j * d
                    a1 = x0 + (jd % s) * lq + jd // s
                    jd += d
                    a2 = x0 + (jd % s) * lq + jd // s
                    jd += d
                    a3 = x0 + (jd % s) * lq + jd // s
                    jd += d
                    a4 = x0 + (jd % s) * lq + jd // s
                    x1 = x[a1:a1 + nv]
                    x2 = x[a2:a2 + nv]
                    x3 = x[a3:a3 + nv]
                    x4 = x[a4:a4 + nv]
                    for o in range(nv):
                        part[o] += ((abs(x1[o] - w1) + abs(x2[o] - w2))
                                    + (abs(x3[o] - w3) + abs(x4[o] - w4)))
                    j += 4
                while j < jend:
                    wj = w[w0 + j]
                    jd = j * d
                    a1 = x0 + (jd % s) * lq + jd // s
                    x1 = x[a1:a1 + nv]
                    for o in range(nv):
                        part[o] += abs(x1[o] - wj)
                    j += 1
                for o in range(nv):
                    acc[o] += part[o]
        ob = t * ow + o0
        res = out[ob:ob + n_o]
        for o in range(n_o):
            res[o] = acc[o]


def _phases(xp: np.ndarray, s: int) -> np.ndarray:
    """``xp`` (..., L) as a flat C-ordered buffer of shape (..., s, ceil(L/s) + _V) holding
    ``xp[..., q::s]`` in phase ``q``, plus a tail of ``_V`` zeros (the inner loop reads up
    to ``_V - 1`` samples past a row's last output; those sums are discarded)."""
    n = xp.shape[-1]
    lq = -(-n // s) + _V
    buf = np.zeros(prod(xp.shape[:-1]) * s * lq + _V, xp.dtype)
    ph = buf[:-_V].reshape(*xp.shape[:-1], s, lq)
    for q in range(s):
        v = xp[..., q::s]
        ph[..., q, :v.shape[-1]] = v
    return buf, ph.shape, lq


def sad_block(p: Problem, xp: np.ndarray, kern: np.ndarray, block: np.ndarray) -> None:
    """Fill the C-contiguous ``block`` (b, k, P, *O) with the SAD of the padded input
    ``xp`` (b, C, P, *padded) against ``kern`` (k, C, P, *T)."""
    d = p.ndim
    g = p.geoms
    s, dil, m = g[-1].stride, g[-1].dilation, g[-1].m
    buf, shape, lq = _phases(xp, s)
    xs = np.cumprod((1, *shape[::-1]))[::-1][1:]  # element strides of (b, C, P, *lead, s, lq)
    ws = np.cumprod((1, *kern.shape[::-1]))[::-1][1:]
    b, C, P = xp.shape[:3]
    k = kern.shape[0]
    lead_taps = list(np.ndindex(*p.T[:-1])) if d > 1 else [()]
    xrow = np.array([c * xs[1] + sum(j * ga.dilation * xs[3 + a]
                                     for a, (ga, j) in enumerate(zip(g[:-1], t)))
                     for c in range(C) for t in lead_taps], np.int64)
    wrow = np.array([c * ws[1] + sum(j * ws[3 + a] for a, j in enumerate(t))
                     for c in range(C) for t in lead_taps], np.int64)
    lead_out = np.array(p.O[:-1], np.int64)
    lead_xstep = np.array([ga.stride * xs[3 + a] for a, ga in enumerate(g[:-1])], np.int64)
    tasks = b * k * P * prod(p.O[:-1])
    seg = p.O[-1] if tasks >= 4 * get_workers() else max(_V, min(p.O[-1], _SEGMENT))
    _call(_sad_rows, buf, kern.reshape(-1), block.reshape(-1), b, k, P, int(xs[0]),
          int(xs[2]), int(ws[0]), int(ws[2]), lead_out, lead_xstep, xrow, wrow, p.O[-1], m,
          dil, s, lq, seg)


@numba.njit(nogil=True, cache=True)
def _gcd(a, b):  # pragma: no cover - compiled
    while b:
        a, b = b, a % b
    return a


@numba.njit(nogil=True, cache=True)
def _box_block(src, dst, m, d, s, pc, qc, qp):  # pragma: no cover - compiled
    """Window sums along the first axis of ``src`` (n, w) into ``dst`` (n_out, w):
    blocked prefix sums. Along each residue class of ``d`` the samples are cut into
    blocks of ``m``; a window is the suffix sum of one block plus the prefix sum of the
    next, so its rounding error is bounded by those two blocks, not by everything before
    it on the axis. ``pc``, ``qc``, ``qp``: (m, w) scratch."""
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
                for jj in range(rows - 1, -1, -1):
                    row = src[r + d * (b * m + jj)]
                    cur = qc[jj]
                    if jj == rows - 1:
                        for q in range(w):
                            cur[q] = row[q]
                    else:
                        nxt = qc[jj + 1]
                        for q in range(w):
                            cur[q] = nxt[q] + row[q]
            if b >= 1:  # windows starting in block b - 1
                j0 = 0
                if s > 1:  # its first tap where a window starts
                    base = r + d * (b - 1) * m
                    while j0 < m and (base + d * j0) % s != 0:
                        j0 += 1
                step = s // _gcd(s, d) if s > 1 else 1
                for jj in range(j0, m, step):
                    o = (r + d * ((b - 1) * m + jj)) // s
                    if o >= n_out:
                        break
                    res = dst[o]
                    if jj == 0:
                        for q in range(w):
                            res[q] = qp[0, q]
                    else:
                        pj = pc[jj - 1]
                        for q in range(w):
                            res[q] = qp[jj, q] + pj[q]
            if b < nblk:
                qp, qc = qc, qp


@numba.njit(parallel=True, nogil=True, cache=True)
def _box_axis(a, out, m, d, s):  # pragma: no cover - compiled
    """``out[i, o, :] = sum_j a[i, o * s + j * d, :]`` for a (pre, L, post) float64 array
    (:func:`_box_block`): one task per leading index, or per block of the trailing axis
    when there are few leading ones."""
    pre, n, post = a.shape
    blocks = 1 if pre >= 4 else max(1, min(64, post // 256))
    width = (post + blocks - 1) // blocks
    for task in numba.prange(pre * blocks):
        i = task // blocks
        q0 = (task % blocks) * width
        q1 = min(post, q0 + width)
        w = q1 - q0
        _box_block(a[i, :, q0:q1], out[i, :, q0:q1], m, d, s, np.empty((m, w)),
                   np.empty((m, w)), np.empty((m, w)))


@numba.njit(parallel=True, nogil=True, cache=True)
def _box_last(a, out, m, d, s):  # pragma: no cover - compiled
    """``_box_axis`` for the last axis of a (rows, L) array: ``_ROWS`` rows at a time are
    transposed into a scratch (L, _ROWS), summed there with vectorised loops, and
    transposed back."""
    nrows, n = a.shape
    n_out = out.shape[1]
    for blk in numba.prange((nrows + _ROWS - 1) // _ROWS):
        r0 = blk * _ROWS
        w = min(nrows, r0 + _ROWS) - r0
        src = np.empty((n, w))
        for q in range(w):
            row = a[r0 + q]
            for t in range(n):
                src[t, q] = row[t]
        dst = np.empty((n_out, w))
        _box_block(src, dst, m, d, s, np.empty((m, w)), np.empty((m, w)), np.empty((m, w)))
        for q in range(w):
            row = out[r0 + q]
            for o in range(n_out):
                row[o] = dst[o, q]


_ROWS = 32


def box_sum_axis(a: np.ndarray, axis: int, m: int, d: int, s: int, n_out: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Window sums of the float64 array ``a`` along ``axis`` (``m`` taps ``d`` apart,
    every ``s``-th window, ``n_out`` windows), by blocked prefix sums (see ``_box_axis``);
    into ``out`` (C-contiguous) when given."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    pre, post = prod(a.shape[:axis]), prod(a.shape[axis + 1:])
    shape = (*a.shape[:axis], n_out, *a.shape[axis + 1:])
    out = np.empty(shape, np.float64) if out is None else out
    if post == 1:
        _call(_box_last, a.reshape(pre, a.shape[axis]), out.reshape(pre, n_out), m, d, s)
    else:
        _call(_box_axis, a.reshape(pre, a.shape[axis], post), out.reshape(pre, n_out, post),
              m, d, s)
    return out


def _call(kernel, *args) -> None:
    """Run a parallel kernel on ``get_workers()`` threads (numba's setting is per calling
    thread). numba's 'workqueue' threading layer (its fallback without OpenMP or TBB)
    cannot run kernels from several threads at once: there, calls take turns."""
    numba.set_num_threads(max(1, min(get_workers(), numba.config.NUMBA_NUM_THREADS)))
    try:
        shared_ok = numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        shared_ok = False
    if shared_ok:
        kernel(*args)
    else:
        with _lock:
            kernel(*args)
