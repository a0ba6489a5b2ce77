"""The portable methods: ``direct`` and ``fft`` with the array-API functions only, on
the canonical layout (x ``(b, C, P, *S)``, filters ``(K, C, P, *T)``, blocks
``(b, k, P, *O)``; see ``problem.py``).

* ``direct``: shift and add over the filter taps. With few (filter, channel) pairs
  (``_SHIFT_ADD_MAX``), each tap's slice of the padded block times the filters' tap,
  elementwise; otherwise each group of ``g`` taps is one batched matmul over channels
  ``(P, 1, k, C g) @ (P, b, C g, O)``, the group's samples of every window gathered from
  the padded block by one ``take`` (at most ``_GROUP_BYTES`` of them per item), never an
  unfold of the whole batch. Exact for integer inputs (computed in float64).
* ``fft``: real FFTs (complex ones for complex data) of the padded items and of the
  filters, at the smallest fast lengths that hold the padded item (no wrap-around in
  any kept output), the channel sum as one batched matmul per frequency
  ``(P, F, b, C) @ (P, F, C, k)`` (a broadcast product for one channel); strided and
  dilated outputs are slices of the inverse transform. An item whose outputs are not
  all finite (a NaN or Inf in it, in a filter or in ``cval``, or a transform that
  overflowed) is computed again by ``direct``, so NaN and Inf stay where the float64
  loop puts them.

Each method (and each metric in ``metrics.py``) has ``prepare(be, p, wc) -> state``
(a tuple of arrays, or one array: what a compiler such as ``jax.jit`` takes as
arguments); ``pure(be, p, state, xb, k0, k1, budget) -> (block, ok)``, with no host
synchronisation, so that the backend may compile it, ``ok`` a 0-d boolean (None: always
True) saying whether the block is exact as it is; ``fix(...)`` with the same arguments,
the exact block where ``ok`` was False (NaN/Inf); and ``workspace_bytes``,
``state_bytes``, ``flops`` and ``describe``. :func:`compute` is the two together;
:data:`METHODS` maps the ``method=`` names to the methods.

>>> import numpy as np, batchconv as bc
>>> xps = __import__("pytest").importorskip("array_api_strict")
>>> x = xps.asarray([[1.0, 2.0, 3.0, 4.0]], dtype=xps.float32)
>>> y = bc.correlate(x, xps.asarray([1.0, 1.0], dtype=xps.float32), method="fft")
>>> np.from_dlpack(y).round(5)
array([[3., 5., 7.]], dtype=float32)
"""

from __future__ import annotations

from itertools import product
from math import log2, prod
from typing import Any, NamedTuple

import numpy as np

from ..backends.array_api import tap
from ..problem import Problem
from ..xp import next_fast_len

__all__ = ["Direct", "FFT", "DIRECT", "FFT_METHOD", "METHODS", "compute", "work_budget"]

# direct with at most this many (filter, channel) pairs in a block adds the taps' slices
# elementwise, which JAX's compiler fuses into one pass over the output (seed 003's 1000
# 64x64 images and one 5x5 filter, float64: 240 ms as gathered windows and a matmul);
# more pairs gather the windows for a matmul
_SHIFT_ADD_MAX = 4
# direct puts this many bytes of each item's tap slices side by side, for one matmul:
# fewer, larger matmuls (JAX dispatches each operation: about 10 us apiece). Per item,
# not per block, so that the sums' order, and so the result, is the same whatever the
# blocks (the budget sizes blocks around it)
_GROUP_BYTES = 1 << 20


def work_budget(memory: int) -> int:
    """What the methods do with a memory budget depends on it up to this (``memory``
    capped): compiled blocks are keyed by it (``blocks.py``), so that default budgets,
    which follow the free memory, share them."""
    return min(memory, 64 << 20)


def _outputs(p: Problem) -> int:
    return prod(p.O)


def compute(computer, be, p: Problem, st, xb, k0: int, k1: int, budget: int):
    """The exact block ``(b, k1 - k0, P, *O)`` of ``computer`` (a method or metric):
    its ``pure`` block, or its ``fix`` where that is not exact."""
    block, ok = computer.pure(be, p, st, xb, k0, k1, budget)
    if ok is None or bool(ok):
        return block
    return computer.fix(be, p, st, xb, k0, k1, budget)


def tap_slice(a, p: Problem, t: tuple[int, ...], first: int):
    """The samples that tap ``t`` reads for every window, along the sliding axes
    ``first, ...`` of the padded ``a``."""
    for i, j in enumerate(t):
        a = tap(a, first + i, p.geoms[i], j)
    return a


def _offsets(p: Problem) -> tuple[np.ndarray, np.ndarray, int]:
    """``(taps, outputs, n)``: where each tap of a window starts, and where each window
    starts, in an item's padded sliding axes flattened (``n`` samples)."""
    sizes = [g.padded for g in p.geoms]
    steps = [prod(sizes[i + 1 :]) for i in range(p.ndim)]
    taps = np.zeros(1, np.int64)
    outs = np.zeros(1, np.int64)
    for g, step in zip(p.geoms, steps, strict=True):
        taps = (taps[:, None] + np.arange(g.m) * g.dilation * step).ravel()
        outs = (outs[:, None] + np.arange(g.out) * g.stride * step).ravel()
    return taps, outs, prod(sizes)


class Direct:
    """Shift and add over the taps: elementwise for few filters and channels, else the
    windows gathered a group of taps at a time and a matmul over channels per group."""

    name = "direct"
    exact_for_integers = True

    def prepare(self, be, p: Problem, wc):
        """The filters as ``(P, K, C, taps)``."""
        xp = be.xp
        taps = xp.reshape(wc, (p.K, p.C, p.P, prod(p.T)))  # (K, C, P, taps)
        return xp.permute_dims(taps, (2, 0, 1, 3))

    def group(self, p: Problem, budget: int) -> int:
        """Taps per matmul: as many as take ``_GROUP_BYTES`` of one item's windows,
        fewer only where a quarter of the budget would not hold them."""
        per_tap = max(p.C * p.P * _outputs(p) * p.dtype.itemsize, 1)
        return max(1, min(prod(p.T), _GROUP_BYTES // per_tap, budget // (4 * per_tap)))

    def pure(self, be, p: Problem, weights, xb, k0: int, k1: int, budget: int):
        return self.block(be, p, weights, xb, k0, k1, budget), None

    def fix(self, be, p: Problem, weights, xb, k0: int, k1: int, budget: int):
        return self.block(be, p, weights, xb, k0, k1, budget)

    def block(self, be, p: Problem, weights, xb, k0: int, k1: int, budget: int):
        """The block: exact (NaN and Inf where the float64 loop has them)."""
        if (k1 - k0) * p.C <= _SHIFT_ADD_MAX:
            return self._shift_add(be, p, weights, xb, k0, k1)
        return self._gathered(be, p, weights, xb, k0, k1, budget)

    def _shift_add(self, be, p: Problem, weights, xb, k0: int, k1: int):
        """Few filters and channels: each tap's slice of the padded block times the
        filters' tap, added up (elementwise: a compiler fuses it into one pass)."""
        xp = be.xp
        k, nd = k1 - k0, p.ndim
        xpad = xp.expand_dims(be.pad(xb, p.geoms, p.padding, p.cval, 3), axis=1)
        w = xp.permute_dims(weights[:, k0:k1, ...], (1, 2, 0, 3))  # (k, C, P, taps)
        acc = None
        for i, t in enumerate(product(*(range(g.m) for g in p.geoms))):
            part = tap_slice(xpad, p, t, 4) * xp.reshape(w[..., i], (1, k, p.C, p.P, *(1,) * nd))
            acc = part if acc is None else acc + part  # (b, k, C, P, *O)
        return xp.sum(acc, axis=2)

    def _gathered(self, be, p: Problem, weights, xb, k0: int, k1: int, budget: int):
        """Each
        of ``g`` taps is one ``take`` of every window's samples ``(P, b, C g, O)`` from
        the padded block (an index vector of ``g O``, not of the batch) and one batched
        matmul with the filters' ``(P, 1, k, C g)``."""
        xp = be.xp
        b, k, C, P = xb.shape[0], k1 - k0, p.C, p.P
        xpad = be.pad(xb, p.geoms, p.padding, p.cval, 3)
        tap_at, out_at, n = _offsets(p)
        flat = xp.reshape(xp.permute_dims(xpad, (2, 0, 1, *range(3, 3 + p.ndim))), (P, b, C, n))
        g, acc = self.group(p, budget), None
        for t0 in range(0, tap_at.size, g):
            t1 = min(t0 + g, tap_at.size)
            where = be.index((tap_at[t0:t1, None] + out_at[None, :]).ravel())
            cols = xp.reshape(xp.take(flat, where, axis=3), (P, b, C * (t1 - t0), out_at.size))
            w = xp.reshape(weights[:, k0:k1, :, t0:t1], (P, 1, k, C * (t1 - t0)))
            part = xp.matmul(w, cols)  # (P, b, k, O)
            acc = part if acc is None else acc + part
        y = xp.reshape(acc, (P, b, k, *p.O))
        return xp.permute_dims(y, (1, 2, 0, *range(3, 3 + p.ndim)))

    def workspace_bytes(self, p: Problem, b: int, k: int, budget: int) -> int:
        r = p.dtype.itemsize
        padded = b * p.C * p.P * prod(g.padded for g in p.geoms) * r
        per_tap = b * p.C * p.P * _outputs(p) * r
        outs = b * k * p.P * _outputs(p) * r
        if k * p.C <= _SHIFT_ADD_MAX:  # the padded block, a tap's slice, the sum and a part
            return padded + per_tap + 2 * k * per_tap + outs
        g = self.group(p, budget)
        # the padded block and its transpose; a group's samples (and their index
        # vector); the sum so far, a group's product, and the result transposed
        return 2 * padded + g * per_tap + 8 * g * _outputs(p) + 3 * outs

    def state_bytes(self, p: Problem) -> int:
        return p.K * p.C * p.P * prod(p.T) * p.dtype.itemsize

    def flops(self, p: Problem) -> float:
        return 2.0 * p.B * p.K * p.P * p.C * prod(p.T) * _outputs(p)

    def describe(self, be, p: Problem, st, budget: int, b: int) -> str:
        if p.K * p.C <= _SHIFT_ADD_MAX:
            return (
                f"direct: shift and add over {prod(p.T)} taps, each tap's slice times the "
                f"filters' tap ({p.K} filter(s) x {p.C} channel(s): elementwise)"
            )
        g = self.group(p, budget)
        return (
            f"direct: shift and add over {prod(p.T)} taps, {g} at a time, each group one "
            f"batched matmul over {p.C} channel(s) ({be.name}.matmul)"
        )


class FFTState(NamedTuple):
    """The filters' spectra: ``(P, F, C, K)`` with channels, else ``(K, P, *F)`` (``F``
    the half spectrum's bins); ``direct``: the direct method's state, for the items
    whose outputs are not all finite."""

    spectrum: Any
    direct: Any


def _is_complex(p: Problem) -> bool:
    return p.dtype.kind == "c"


def fft_shape(p: Problem, fast_len) -> tuple[int, ...]:
    """The smallest fast length (``fast_len(n, real)``: the backend's rule) per sliding
    axis that holds the padded item and the dilated kernel: the kept outputs then never
    wrap around."""
    return tuple(fast_len(max(g.padded, g.extent, 1), not _is_complex(p)) for g in p.geoms)


def _spectrum_itemsize(p: Problem) -> int:
    return p.dtype.itemsize if _is_complex(p) else 2 * p.dtype.itemsize


def _order(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The sliding axes (from 3) in transform order: the longest last, the one a real
    transform halves."""
    r = max(range(len(shape)), key=lambda i: (shape[i], i))
    return tuple(3 + i for i in range(len(shape)) if i != r) + (3 + r,)


def _spectrum_shape(p: Problem, shape: tuple[int, ...]) -> tuple[int, ...]:
    if _is_complex(p):
        return shape
    r = _order(shape)[-1] - 3
    return tuple(n // 2 + 1 if i == r else n for i, n in enumerate(shape))


def _dilated_reversed(be, wc, p: Problem):
    """The kernels ``(K, C, P, *T)`` spread to their dilated extent (zeros between the
    taps) and reversed along the sliding axes: correlating with ``wc`` is convolving
    with this, whose outputs start ``extent - 1`` samples in."""
    xp = be.xp
    for i, g in enumerate(p.geoms):
        ax = 3 + i
        if g.dilation > 1 and g.m > 1:
            shape = list(wc.shape)
            spread = xp.expand_dims(wc, axis=ax + 1)  # (..., m, 1, ...)
            shape.insert(ax + 1, g.dilation - 1)
            zeros = be.zeros(tuple(shape), wc.dtype)
            spread = xp.concat([spread, zeros], axis=ax + 1)  # (..., m, d, ...)
            full = list(wc.shape)
            full[ax] = g.m * g.dilation
            wc = xp.reshape(spread, tuple(full))[(slice(None),) * ax + (slice(0, g.extent), ...)]
    return xp.flip(wc, axis=tuple(range(3, 3 + p.ndim))) if p.ndim else wc


def _zero_untouched(be, p: Problem, y):
    """With zero padding, the windows that never touch ``x`` exactly 0 in the block
    ``y`` (not the transform's round-off of 0: the contract's bound there is 0)."""
    if not (p.padding == "constant" and p.cval == 0):
        return y
    xp = be.xp
    for i, g in enumerate(p.geoms):
        idx = g.untouched()
        if idx.size:
            keep = np.ones(g.out, bool)
            keep[idx] = False
            shape = (1,) * (3 + i) + (g.out,) + (1,) * (p.ndim - i - 1)
            mask = xp.asarray(keep.reshape(shape), device=be.device)
            y = xp.where(mask, y, xp.zeros_like(y))
    return y


class FFT:
    """Transforms of items and filters; channel sums per frequency as matmuls."""

    name = "fft"
    exact_for_integers = False

    def prepare(self, be, p: Problem, wc) -> FFTState:
        xp, fft = be.xp, be.fft()
        shape = fft_shape(p, be.fft_len)
        axes = _order(shape)
        s = tuple(shape[a - 3] for a in axes)
        kern = _dilated_reversed(be, wc, p)
        spec = (fft.fftn if _is_complex(p) else fft.rfftn)(kern, s=s, axes=axes)
        if p.C > 1:  # (P, F, C, K): the right operand of the per-frequency matmul
            nd = p.ndim
            spec = xp.permute_dims(spec, (2, *range(3, 3 + nd), 1, 0))
            spec = xp.reshape(spec, (p.P, prod(_spectrum_shape(p, shape)), p.C, p.K))
        else:
            spec = xp.reshape(spec, (p.K, p.P, *_spectrum_shape(p, shape)))
        return FFTState(spec, DIRECT.prepare(be, p, wc))

    def pure(self, be, p: Problem, st: FFTState, xb, k0: int, k1: int, budget: int):
        y = self._spectral(be, p, st, xb, k0, k1)
        return y, be.xp.all(be.xp.isfinite(y))

    def fix(self, be, p: Problem, st: FFTState, xb, k0: int, k1: int, budget: int):
        """The block with the items whose outputs are not all finite computed directly."""
        xp = be.xp
        y = self._spectral(be, p, st, xb, k0, k1)
        finite = xp.all(xp.isfinite(xp.reshape(y, (y.shape[0], -1))), axis=1)
        items = []
        for i in range(y.shape[0]):
            if bool(finite[i]):
                items.append(y[i : i + 1, ...])
            else:
                items.append(DIRECT.block(be, p, st.direct, xb[i : i + 1, ...], k0, k1, budget))
        return be.concat(items, axis=0)

    def _spectral(self, be, p: Problem, st: FFTState, xb, k0: int, k1: int):
        xp, fft = be.xp, be.fft()
        b, k, nd = xb.shape[0], k1 - k0, p.ndim
        shape = fft_shape(p, be.fft_len)
        axes = _order(shape)
        s = tuple(shape[a - 3] for a in axes)
        half = _spectrum_shape(p, shape)
        xpad = be.pad(xb, p.geoms, p.padding, p.cval, 3)
        X = (fft.fftn if _is_complex(p) else fft.rfftn)(xpad, s=s, axes=axes)
        if p.C > 1:  # (P, F, b, C) @ (P, F, C, k)
            X = xp.permute_dims(X, (2, *range(3, 3 + nd), 0, 1))
            X = xp.reshape(X, (p.P, prod(half), b, p.C))
            Y = xp.matmul(X, st.spectrum[..., k0:k1])
            Y = xp.reshape(Y, (p.P, *half, b, k))
            Y = xp.permute_dims(Y, (nd + 1, nd + 2, 0, *range(1, nd + 1)))
        else:  # (b, 1, P, *F) * (1, k, P, *F)
            Y = X * xp.expand_dims(st.spectrum[k0:k1, ...], axis=0)
        y = (fft.ifftn if _is_complex(p) else fft.irfftn)(Y, s=s, axes=axes)
        index = (
            (slice(None),) * 3
            + tuple(
                slice(g.extent - 1, g.extent - 1 + (g.out - 1) * g.stride + 1, g.stride)
                for g in p.geoms
            )
            + (...,)
        )
        y = _zero_untouched(be, p, y[index])
        return xp.round(y) if p.integer_inputs else y  # (exact integers, as direct's)

    def workspace_bytes(self, p: Problem, b: int, k: int, budget: int) -> int:
        r, c = p.dtype.itemsize, _spectrum_itemsize(p)
        shape = fft_shape(p, next_fast_len)
        full, half = prod(shape), prod(_spectrum_shape(p, shape))
        padded = b * p.C * p.P * prod(g.padded for g in p.geoms) * r
        x_spec = b * p.C * p.P * half * c
        product = b * k * p.P * half * c
        inverse = b * k * p.P * full * r
        outs = b * k * p.P * _outputs(p) * r
        # padded block, its spectrum (and the matmul's copy); the product (and its
        # transpose); the inverse and the kept outputs sliced from it
        return padded + 2 * x_spec + 2 * product + inverse + outs

    def state_bytes(self, p: Problem) -> int:
        half = prod(_spectrum_shape(p, fft_shape(p, next_fast_len)))
        return p.K * p.C * p.P * half * _spectrum_itemsize(p) + DIRECT.state_bytes(p)

    def flops(self, p: Problem) -> float:
        shape = fft_shape(p, next_fast_len)  # (the estimates count the NumPy engine's)
        n = prod(shape)
        per = (5.0 if _is_complex(p) else 2.5) * n * log2(max(n, 2))  # one transform
        half = prod(_spectrum_shape(p, shape))
        return p.B * p.P * ((p.C + p.K) * per + 8.0 * p.K * p.C * half)

    def describe(self, be, p: Problem, st: FFTState, budget: int, b: int) -> str:
        kind = "complex" if _is_complex(p) else "real"
        how = "one batched matmul per frequency" if p.C > 1 else "a broadcast product"
        return (
            f"fft: {kind} FFTs of shape {fft_shape(p, be.fft_len)} ({be.name}.fft), filters "
            f"transformed once; channel sums as {how}; items whose outputs are not all finite "
            f"(NaN/Inf, overflow) computed again by direct"
        )


DIRECT = Direct()
FFT_METHOD = FFT()
METHODS: dict[str, Any] = {m.name: m for m in (DIRECT, FFT_METHOD)}
