"""Sliding similarity metrics: ``ssd``, ``ncc`` and ``cosine`` from correlations plus
window sums; ``sad`` by its own kernel (``methods/sad.py``).

For a window ``a`` of ``x`` (its summed axes included, ``n`` values) and a filter ``b``:

=========  ==================================================  =========================
metric     value                                               computed as
=========  ==================================================  =========================
ssd        ``sum (a - b)^2``                                   ``A2 - 2 (a'.b^ + dA1)
                                                               + B2 + d (n d + 2 B1)``
sad        ``sum |a - b|``                                     its own kernel
ncc        ``sum (a - mean a)(b - mean b) / (|a - mean a|      ``a'.b^ / sqrt((A2 - A1^2
           |b - mean b|)``, Pearson, in [-1, 1]                / n) B2)``
cosine     ``sum a b / (|a| |b|)``                             ``a.b / sqrt(A2 |b|^2)``
=========  ==================================================  =========================

where ``a' = a - c`` is ``x`` centred by the mean ``c`` of its item, ``b^ = b - mean b``
the centred filter, ``d = mean b - c``, ``A1``/``A2`` the window sums of ``a'`` and
``a'^2`` (float64 box sums, shared by the whole bank), ``B1 = sum b^`` and
``B2 = |b^|^2``. Centring first keeps the precision of the data's contrast rather than its
brightness: 8-bit images with values 200..255 lose nothing to cancellation.

``b^`` and ``mean b`` are the values as rounded (``b^`` in the compute dtype), so
``B1`` is zero in exact arithmetic only: with a common offset (``b`` near 1e10, its mean
off by about 1e-6) ``2 d B1`` alone was 1e4 times the float64 contract. ssd keeps the
term, which makes its formula exact for whatever ``mean b`` and ``b^`` are. ncc's
numerator would need ``- A1 B1 / n`` per window; instead its filters are centred twice
(the second time by the mean of the first result, which is of the contrast's size), which
leaves ``B1`` at the rounding of the contrast. cosine centres nothing.

The correlations ``a'.b^`` come from the ``direct`` or ``fft`` method on a padded,
centred copy of each chunk, so every spec role, mode, stride, dilation and padding of
``"dot"`` works here too.

A window is *flat* when its variance (ncc) or its sum of squares (cosine) is below the
rounding noise of its own window sums (:func:`_noise_floor`, local to the window); flat
windows and flat filters give exactly 0, never NaN, and ncc and cosine are clipped to
[-1, 1].

>>> import numpy as np, batchconv as bc
>>> x = np.array([[0.0, 1.0, 2.0, 1.0, 1.0, 1.0]])
>>> bc.correlate(x, np.array([1.0, 2.0, 3.0]), metric="ncc").round(3)
array([[ 1.   ,  0.   , -0.866,  0.   ]])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from math import prod
from types import ModuleType

import numpy as np

from .. import compiled
from ..geometry import AxisGeometry, pad_sliding, summing_order, window_sums
from ..nonfinite import affected_windows
from ..problem import Problem
from ..xp import get_workers, work_buffer
from . import metric_of
from .formula import loop_values, put_in_place, zeroed
from .rules import inner_problem, metric_line
from .rules import noise_floor as _noise_floor
from .rules import valid_geometry as _valid_geometry

__all__ = ["MetricMethod", "box_sums", "inner_problem"]

_SHIFT_MAX = 8  # box sums over at most this many taps add shifted slices; longer: cumsum
# temporaries up to this size live in per-thread reused buffers (xp.work_buffer): fresh
# pages cost more than the window sums themselves (2 us per 4 KiB page on the dev VM)
_REUSE_BYTES = 16 << 20


@dataclass
class MetricState:
    inner: Problem
    state: object  # the correlation method's filter state (of the centred filters)
    mean: np.ndarray  # (K, P) float64: filter means (ssd)
    sq: np.ndarray  # (K, P) float64: |b^|^2 (ssd, ncc) or |b|^2 (cosine)
    inv_norm: np.ndarray  # (K, P) float64: 1 / sqrt(sq), 0 for flat filters
    total: np.ndarray  # (K, P) float64: sum b^ of the filters as correlated (ssd's B1)


def box_sums(
    a: np.ndarray, geoms: tuple[AxisGeometry, ...], first_axis: int, reuse: bool = False
) -> np.ndarray:
    """Window sums of ``a`` (float64) over the sliding axes ``first_axis, ...`` for the
    'valid' windows of ``geoms`` (stride and dilation included).

    Short windows add shifted slices. Longer ones use blocked prefix sums (:func:`_blocked`,
    compiled with numba when installed): each window is the suffix sum of one block of
    ``m`` samples plus the prefix sum of the next, so its rounding error is bounded by
    those two blocks (:func:`error_scale`), wherever it lies on the axis. The axis that
    shrinks the data most goes first. ``reuse=True`` (internal) may return a view of this
    thread's reused work buffers.

    >>> from batchconv.geometry import axis_geometry
    >>> box_sums(np.arange(6.0), (axis_geometry(6, 3),), 0)
    array([ 3.,  6.,  9., 12.])
    """
    return window_sums(a, geoms, first_axis, _box_sums_reused if reuse else _box_sum)


def _box_sums_reused(a: np.ndarray, axis: int, g: AxisGeometry, step: int) -> np.ndarray:
    return _box_sum(a, axis, g, step, f"box{step % 2}")  # the buffers alternate


def _box_sum(
    a: np.ndarray, axis: int, g: AxisGeometry, step: int = 0, slot: str | None = None
) -> np.ndarray:
    """Window sums along one ``axis`` (``geometry.window_sums``'s ``axis_sums``), in the
    work buffer ``slot`` when given."""
    m, d, s, out = g.m, g.dilation, g.stride, g.out
    if m <= _SHIFT_MAX:
        sl = [slice(None)] * a.ndim
        sl[axis] = slice(0, (out - 1) * s + 1, s)
        res = a[tuple(sl)].copy()
        for j in range(1, m):
            sl[axis] = slice(j * d, j * d + (out - 1) * s + 1, s)
            res += a[tuple(sl)]
        return res
    if compiled.enabled():
        shape = (*a.shape[:axis], out, *a.shape[axis + 1 :])
        dest = None if slot is None else work_buffer(shape, np.float64, slot, _REUSE_BYTES)
        return compiled.kernels().box_sum_axis(a, axis, m, d, s, out, dest)
    return _blocked(a, axis, m, d, s, out)


def _blocked(a: np.ndarray, axis: int, m: int, d: int, s: int, out: int) -> np.ndarray:
    """NumPy blocked prefix sums (see :func:`box_sums`). Temporaries: the blocked copy
    (turned into prefix sums in place), the suffix sums, and two arrays of the result's
    size (:func:`blocked_bytes`)."""
    a = np.moveaxis(a, axis, -1)
    lead, n = a.shape[:-1], a.shape[-1]
    per_residue = -(-n // d)
    nblk = -(-per_residue // m) + 1  # one block of zeros past the end
    pre = np.zeros((*lead, d, nblk * m), np.float64)
    for r in range(d):
        v = a[..., r::d]
        pre[..., r, : v.shape[-1]] = v
    blk = pre.reshape(*lead, d, nblk, m)
    suf = np.cumsum(blk[..., ::-1], axis=-1)  # suf[..., q]: the block's last q + 1 samples
    np.cumsum(blk, axis=-1, out=blk)  # prefix sums within each block, in place
    res = np.empty((*lead, out), np.float64)
    flat = pre.reshape(*lead, d, -1)
    step = max(1, _VALUES_PER_STEP // max(prod(lead), 1))
    for o0 in range(0, out, step):  # gathers and index arrays of a bounded size
        start = np.arange(o0, min(o0 + step, out)) * s
        r, u0 = start % d, start // d
        pos = u0 % m
        seg = res[..., o0 : o0 + start.size]
        seg[...] = suf[..., r, u0 // m, m - 1 - pos]  # the window's first sample to block end
        part = pos > 0  # the window ends in the next block: add that block's prefix
        tail = np.minimum(u0[part] + m - 1, flat.shape[-1] - 1)
        seg[..., part] += flat[..., r[part], tail]
    return np.moveaxis(res, -1, axis)


_VALUES_PER_STEP = 1 << 14


def blocked_bytes(lead: int, n: int, m: int, d: int) -> int:
    """Peak temporaries of :func:`_blocked` beyond its input and result: the blocked copy
    (prefix sums in place) and the suffix sums, ``lead`` rows of an axis of ``n``
    samples, ``m`` taps ``d`` apart; and one step's gathers and index arrays."""
    per_residue = -(-n // d)
    blocked = lead * d * (-(-per_residue // m) + 1) * m
    return 8 * 2 * blocked + 8 * 8 * _VALUES_PER_STEP


def error_scale(
    squares: np.ndarray, geoms: tuple[AxisGeometry, ...], first_axis: int, reuse: bool = False
) -> np.ndarray:
    """Per window: the sum of ``squares`` (non-negative and finite: the metrics replace NaN
    and Inf before computing) over the region of two blocks of ``m * dilation``
    samples per axis that starts with the window's block. It bounds the inputs of every
    partial sum that went into the window's sums (:func:`box_sums`), so their rounding
    error is a few ``eps * sum(m)`` times it: local to the window, whatever lies
    elsewhere on the axis.

    >>> from batchconv.geometry import axis_geometry
    >>> error_scale(np.ones(10), (axis_geometry(10, 2),), 0)
    array([4., 4., 4., 4., 4., 4., 4., 4., 2.])
    """
    a = squares
    for i, g in enumerate(geoms):  # sums over blocks, axis by axis (small)
        ax = first_axis + i
        block, n = g.m * g.dilation, a.shape[ax]
        full, nblk = n // block, -(-n // block) + 1
        coarse = np.zeros((*a.shape[:ax], nblk, *a.shape[ax + 1 :]), np.float64)
        src, dst = [slice(None)] * a.ndim, [slice(None)] * a.ndim
        src[ax], dst[ax] = slice(0, full * block), slice(0, full)
        coarse[tuple(dst)] = (
            a[tuple(src)].reshape(*a.shape[:ax], full, block, *a.shape[ax + 1 :]).sum(axis=ax + 1)
        )
        if full * block < n:  # the partial last block
            src[ax], dst[ax] = slice(full * block, n), slice(full, full + 1)
            coarse[tuple(dst)] = a[tuple(src)].sum(axis=ax, keepdims=True)
        src[ax], dst[ax] = slice(0, nblk - 1), slice(1, nblk)
        a = coarse[tuple(src)] + coarse[tuple(dst)]  # two blocks from each one on
    for i, g in enumerate(geoms):  # each window's region, axis by axis (the last at full size)
        ax, last = first_axis + i, i == len(geoms) - 1
        shape = (*a.shape[:ax], g.out, *a.shape[ax + 1 :])
        out = work_buffer(shape, np.float64, "scale", _REUSE_BYTES) if last and reuse else None
        a = np.take(a, np.arange(g.out) * g.stride // (g.m * g.dilation), axis=ax, out=out)
    return a


def statistics_bytes(p: Problem, b: int) -> tuple[int, int]:
    """``(peak, held)``: the bytes of ``b`` items' window statistics while they are
    computed (:meth:`MetricMethod._window_sums`: float64 sums of ``x'`` and ``x'^2``, a
    channel's float64 copy, the error scale, the box sums axis by axis with their
    temporaries), and those the combination then reads (the fused compiled kernel for
    2-D: its output alone)."""
    metric = metric_of(p.metric)
    geoms = tuple(_valid_geometry(g) for g in p.geoms)
    lead, outs = b * p.P, b * p.P * prod(p.O)
    if compiled.enabled() and p.ndim == 2 and geoms[0].dilation == 1:  # window_stats_2d
        # (MetricMethod._compute runs it on a contiguous x', copied where needed)
        held = outs * p.dtype.itemsize if metric.normalised else 2 * outs * 8
        return held, held
    sizes = [g.n for g in geoms]
    sums = 2 * lead * prod(sizes) * 8
    scale = outs * 8 if metric.normalised else 0
    peak = sums + (sums // 2 if p.C > 1 else 0)  # a channel as float64
    if scale:
        peak = max(peak, sums + _error_scale_bytes(lead, list(sizes), geoms))
    current = 0  # the box sums' previous result (the first step reads the sums)
    for i in summing_order(geoms):
        g = geoms[i]
        rows = 2 * lead * prod(sizes) // max(sizes[i], 1)
        temps = 0
        if g.m > _SHIFT_MAX and not compiled.enabled():
            temps = blocked_bytes(rows, sizes[i], g.m, g.dilation)
        elif g.m > _SHIFT_MAX:  # the compiled kernel's scratch, per task in flight
            post = prod(sizes[i + 1 :])
            if post == 1:  # rows of 32 (_numba_kernels._ROWS) transposed in and out
                w = min(rows, 32)
                tasks = -(-rows // 32)
                temps = w * (sizes[i] + g.out + 2 * g.m) * 8
            else:  # per leading index (or block of the trailing axis): m x width, twice
                pre = rows // post
                blocks = 1 if pre >= 4 else max(1, min(64, post // 256))
                tasks = pre * blocks
                temps = 2 * g.m * -(-post // blocks) * 8
            temps *= min(get_workers(), tasks)
        sizes[i] = g.out
        result = rows * g.out * 8
        peak = max(peak, sums + scale + current + result + temps)
        current = result
    return peak, sums + scale + current


def _error_scale_bytes(lead: int, sizes: list[int], geoms: tuple[AxisGeometry, ...]) -> int:
    """Peak temporaries of :func:`error_scale` on ``lead`` rows of ``sizes`` (its block
    sums, axis by axis: as large as the input for one-tap windows)."""
    peak, current = 0, 0  # (the first step reads the caller's array)
    for i, g in enumerate(geoms):
        rows = lead * prod(sizes) // max(sizes[i], 1)
        block = max(g.m * g.dilation, 1)
        nblk = -(-sizes[i] // block) + 1
        coarse, summed, result = rows * nblk, rows * (sizes[i] // block), rows * (nblk - 1)
        peak = max(peak, 8 * (current + coarse + summed), 8 * (current + coarse + result))
        current, sizes[i] = result, nblk - 1
    for i, g in enumerate(geoms):  # each window's region: np.take, axis by axis
        rows = lead * prod(sizes) // max(sizes[i], 1)
        peak = max(peak, 8 * (current + rows * g.out))
        current, sizes[i] = rows * g.out, g.out
    return peak


class MetricMethod:
    """ssd, ncc or cosine on top of a correlation method (the method interface of
    ``methods/__init__.py``: prepare, compute, fuses_reduce, workspace_bytes)."""

    def __init__(self, method: ModuleType):
        self.method = method

    def prepare(self, p: Problem, wc: np.ndarray, budget: int | None = None) -> MetricState:
        metric = metric_of(p.metric)
        inner = inner_problem(p)
        axes = (1, *range(3, wc.ndim))
        w64 = wc.astype(np.float64)
        mean = w64.mean(axis=axes) if wc.size else np.zeros(wc.shape[0:3:2])
        if not metric.centred:
            filters = wc
        else:  # centred; exactly zero for a flat filter
            flat = (np.ptp(wc, axis=axes, keepdims=True) == 0) if wc.size else True
            cen = w64 - mean.reshape(wc.shape[0], 1, wc.shape[2], *([1] * p.ndim))
            if metric.recentre_filters and wc.size:  # sum(cen) is n * the mean's rounding
                cen -= cen.mean(axis=axes, keepdims=True)
            filters = np.where(flat, 0, cen).astype(p.dtype)
        sq = np.square(filters, dtype=np.float64).sum(axis=axes) if wc.size else mean * 0
        total = filters.sum(axis=axes, dtype=np.float64) if wc.size else mean * 0
        with np.errstate(divide="ignore"):
            inv = np.where(sq > 0, 1 / np.sqrt(sq), 0.0)
        filters = np.ascontiguousarray(filters)
        state = self.method.prepare(inner, filters, budget) if p.window_size else None
        return MetricState(inner, state, mean, sq, inv, total)

    def fuses_reduce(self, p: Problem) -> bool:
        return False

    def describe(self, p: Problem, st: MetricState, budget: int | None, device=None) -> str:
        """The metric's formula, then the correlation method's own line."""
        inner = self.method.describe(st.inner, st.state, budget, device)
        return f"{metric_line(p)}\n{inner}"

    def workspace_bytes(self, p: Problem, b: int, k: int, budget: int | None = None) -> int:
        """The mask of non-finite inputs, the padded copy of the chunk and its centred
        copy, then the larger of: the window statistics being computed
        (:func:`statistics_bytes`), or the statistics held with the correlation's
        temporaries and the combination (ssd: two or three float64 maps of one filter's
        outputs; ncc and cosine: none when the compiled kernel gave the inverse spreads,
        else the noise floor, the flat mask and the inverse spreads in the compute dtype).

        The direct method's temporaries count beside the combination, and its work
        buffers (``held_bytes``), which stay with the thread, beside the next block's
        statistics. The FFT's ``block_bytes`` tells its work
        buffers apart: its peak, or its work buffers with the combination; with more
        blocks, its work buffers held while the next block's statistics are computed; and
        at least the filters' transform (``prepare``)."""
        metric = metric_of(p.metric)
        r = p.dtype.itemsize
        padded = b * p.C * p.P * prod(g.padded for g in p.geoms)
        # cosine reads the (padded) chunk in place where it is C-contiguous: x is, and no
        # windows past the last output are trimmed off
        in_place = not metric.centred and p.x_contiguous and all(g.hi >= 0 for g in p.geoms)
        centred = 0 if in_place else padded * r
        computing, held = statistics_bytes(p, b)
        outs = b * p.P * prod(p.O)
        geoms = tuple(_valid_geometry(g) for g in p.geoms)
        if not metric.normalised:  # rest and y (and the previous filter's), 2 x a block column
            combine = outs * ((3 if k > 1 else 2) * 8 + r)
        elif compiled.enabled() and p.ndim == 2 and geoms[0].dilation == 1:
            combine = 0  # normalised in place by the fused kernel's inverse spreads
        else:  # _inverse_spread: the noise floor, the flat mask, the inverse in p.dtype
            combine = outs * (8 + 1 + (r if p.dtype != np.float64 else 0))
        bad = b * p.C * p.P * prod(g.n for g in p.geoms)  # ~isfinite(x)
        pad = 0  # np.pad's copy (before the trim of windows past the last output)
        if any(g.lo or g.hi > 0 for g in p.geoms):
            pad = b * p.C * p.P * prod(g.lo + g.n + max(g.hi, 0) for g in p.geoms) * r
        call = bad + pad + centred
        q = inner_problem(p)
        block_bytes = getattr(self.method, "block_bytes", None)
        more = b < p.B or k < p.K  # (the previous block's work buffers are still held)
        if block_bytes is None:  # direct: its temporaries, held beside the combination
            inner = self.method.workspace_bytes(q, b, k, budget)
            held_bytes = getattr(self.method, "held_bytes", self.method.workspace_bytes)
            again = held_bytes(q, b, k, budget) if more else 0  # (all, unless told)
            return call + max(computing + again, held + inner + combine)
        inner, kept = block_bytes(q, b, k)
        again = kept if more else 0
        call += max(computing + again, held + max(inner, kept + combine))
        return max(call, self.method.prepare_bytes(q, budget))

    def compute(
        self,
        p: Problem,
        st: MetricState,
        xc: np.ndarray,
        k0: int,
        k1: int,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The block ``(b, k1 - k0, P, *O)`` of the metric for the chunk ``xc``.

        NaN and Inf (in ``x`` or as ``cval``) are replaced by zeros for the computation,
        then the windows that cover one are set to what the loop gives: NaN for ncc and
        cosine, and for ssd NaN where the window covers a NaN, else +Inf."""
        b = xc.shape[0]
        block = out if out is not None else np.empty((b, k1 - k0, p.P, *p.O), p.dtype)
        if block.size == 0:
            return block
        if p.window_size == 0:  # an empty summed axis: every window is empty
            block[...] = 0
            return block
        q, xz = zeroed(np, p, xc)
        if q is None:
            return self._compute(p, st, xc, k0, k1, block)
        self._compute(q, st, xz, k0, k1, block)
        covered = partial(affected_windows, p)
        return loop_values(np, p, block, xc, st.mean[k0:k1], covered, put_in_place)

    def _compute(
        self, p: Problem, st: MetricState, xc: np.ndarray, k0: int, k1: int, block: np.ndarray
    ) -> np.ndarray:
        b = xc.shape[0]
        xp = pad_sliding(xc, p.geoms, p.padding, p.cval, first_axis=3)
        centre = np.zeros((b, 1, p.P, *([1] * p.ndim)), p.dtype)
        metric = metric_of(p.metric)
        if not metric.centred:  # (cosine) not shift-invariant: x as it is, contiguous
            xw = xp
            if not (xp.dtype == p.dtype and xp.flags.c_contiguous):
                xw = work_buffer(xp.shape, p.dtype, "centred", _REUSE_BYTES)
                np.copyto(xw, xp)
        else:
            axes = (1, *range(3, xc.ndim))
            centre = xc.mean(axis=axes, dtype=np.float64, keepdims=True).astype(p.dtype)
            xw = work_buffer(xp.shape, p.dtype, "centred", _REUSE_BYTES)
            np.subtract(xp, centre, out=xw)
        geoms = tuple(_valid_geometry(g) for g in p.geoms)
        fused = (
            compiled.enabled() and p.ndim == 2 and geoms[0].dilation == 1 and xw.flags.c_contiguous
        )
        if fused:  # one compiled pass: channel sums, window sums, spread and flatness
            if not metric.normalised:
                sums = work_buffer((2, b, p.P, *p.O), np.float64, "sums", _REUSE_BYTES)
                compiled.kernels().window_stats_2d(xw, geoms, p.window_size, metric, sums)
                sums1, sums2 = sums
            else:
                inv_a = work_buffer((b, p.P, *p.O), p.dtype, "inv", _REUSE_BYTES)
                compiled.kernels().window_stats_2d(xw, geoms, p.window_size, metric, inv_a)
        else:
            sums1, sums2, scale = self._window_sums(p, xw)
        self.method.compute(st.inner, st.state, xw, k0, k1, out=block)
        c64 = centre.reshape(b, p.P).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            if not metric.normalised:
                self._ssd(p, st, block, sums1, sums2, c64, k0)
            else:
                if not fused:
                    inv_a = self._inverse_spread(p, sums1, sums2, scale)
                self._normalise(p, st, block, inv_a, k0)
        return block

    @staticmethod
    def _window_sums(p: Problem, xw: np.ndarray):  # the general path
        """Window sums of ``x'`` and ``x'^2`` over the summed and sliding axes, float64,
        ``(b, P, *O)``."""
        b, C, P = xw.shape[:3]
        sums = work_buffer((2, b, P, *xw.shape[3:]), np.float64, "sums", _REUSE_BYTES)
        s1, s2 = sums
        s1[...] = xw[:, 0]
        np.multiply(s1, s1, out=s2)
        for c in range(1, C):
            v = xw[:, c].astype(np.float64)
            s1 += v
            v *= v
            s2 += v
            del v  # (not alive beside the error scale's and the box sums' temporaries)
        geoms = tuple(_valid_geometry(g) for g in p.geoms)
        scale = (
            error_scale(sums[1], geoms, 2, reuse=True) if metric_of(p.metric).normalised else None
        )
        s1, s2 = box_sums(sums, geoms, 3, reuse=True)
        return s1, s2, scale

    @staticmethod
    def _ssd(p: Problem, st: MetricState, block, sums1, sums2, c64, k0: int) -> None:
        n = p.window_size
        for i in range(block.shape[1]):
            k = k0 + i
            delta = (st.mean[k] - c64).reshape(*c64.shape, *([1] * p.ndim))  # (b, P, 1..)
            per_filter = (1, p.P, *([1] * p.ndim))
            # sum (b^ + d)^2 = B2 + d (n d + 2 B1): B1 is not 0 once mean b is rounded
            rest = sums2 + (
                st.sq[k].reshape(per_filter)
                + delta * (n * delta + 2 * st.total[k].reshape(per_filter))
            )
            rest -= 2 * delta * sums1
            y = rest - 2 * block[:, i]
            np.maximum(y, 0, out=y)
            if p.integer_inputs and metric_of(p.metric).rounds_integers:
                np.rint(y, out=y)
            block[:, i] = y

    @staticmethod
    def _inverse_spread(p: Problem, sums1, sums2, scale) -> np.ndarray:
        """``1 / sqrt(spread)`` per window in the compute dtype (0 for flat windows), the
        spread being n times the variance (ncc) or the sum of squares (cosine)."""
        floor = _noise_floor(p, scale)
        if metric_of(p.metric).centred:  # n * the variance (in place: sums are temporaries)
            spread = np.multiply(sums1, sums1, out=sums1)
            spread *= -1.0 / p.window_size
            spread += sums2
        else:
            spread = sums2
        flat = spread <= floor  # False for NaN: those windows stay NaN
        np.sqrt(spread, out=spread)
        np.divide(1.0, spread, out=spread)
        spread[flat] = 0
        inv_a = spread
        if p.dtype != np.float64:
            inv_a = work_buffer(spread.shape, p.dtype, "inv", _REUSE_BYTES)
            inv_a[...] = spread
        return inv_a

    @staticmethod
    def _normalise(p: Problem, st: MetricState, block, inv_a, k0: int) -> None:
        """The correlations in ``block`` times both inverse norms, clipped to [-1, 1]
        (compiled: one pass)."""
        if compiled.enabled() and block.size:
            inv_norm = np.ascontiguousarray(st.inv_norm[k0 : k0 + block.shape[1]], p.dtype)
            if compiled.kernels().normalise_block(block, inv_a, inv_norm):
                return
        for i in range(block.shape[1]):
            y = block[:, i]
            np.multiply(y, inv_a, out=y)
            np.multiply(
                y, st.inv_norm[k0 + i].astype(p.dtype).reshape(1, p.P, *([1] * p.ndim)), out=y
            )
            np.clip(y, -1, 1, out=y)
