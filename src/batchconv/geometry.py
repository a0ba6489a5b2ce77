"""Geometry of one sliding axis: mode, stride, dilation, padding -> sizes and offsets.

Every mode reduces to a 'valid' correlation of a padded input:

    out[i] = sum_j  xpad[i * stride + j * dilation] * w[j],   i = 0 .. out - 1

where ``xpad`` is ``x`` with ``lo`` samples before it and ``hi`` after it (``hi`` may be
negative: the tail of ``x`` that no kept window reaches). ``mode`` follows
``scipy.signal.correlate`` exactly, even kernels included: 'full' starts the first
window ``extent - 1`` samples before ``x``, 'same' starts it ``extent // 2`` before, and
'valid' at ``x[0]``. With a stride, the result is the mode's result sampled every
``stride`` samples from its first one (``correlate(..., mode)[::stride]``).

>>> g = axis_geometry(n=5, m=2, mode="same")
>>> g.lo, g.hi, g.out
(1, 0, 5)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .xp import memory_order

__all__ = [
    "MODES",
    "PADDINGS",
    "AxisGeometry",
    "axis_geometry",
    "pad_sliding",
    "summing_order",
    "window_sums",
]

MODES = ("valid", "same", "full")  # or explicit padding: (lo, hi) per sliding axis
PADDINGS = ("constant", "reflect", "symmetric", "edge", "wrap")
# scipy.ndimage's boundary modes -> numpy.pad's, the one table: padding= takes
# numpy.pad's names and says which one an ndimage-only name means (ndimage's 'reflect'
# is numpy.pad's 'symmetric'); batchconv.compat.ndimage maps its modes with it
NDIMAGE_MODES = {
    "reflect": "symmetric",
    "grid-mirror": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "grid-wrap": "wrap",
    "constant": "constant",
    "grid-constant": "constant",
}


@dataclass(frozen=True)
class AxisGeometry:
    """Sizes along one sliding axis (input n, kernel m) and where the windows sit."""

    n: int
    m: int
    stride: int
    dilation: int
    extent: int  # span of the dilated kernel: (m - 1) * dilation + 1
    lo: int  # padding before x (>= 0)
    hi: int  # padding after x; negative = samples of x past the last window
    out: int  # output length

    @property
    def touches_data(self) -> bool:
        """Whether any tap of any kept window lands inside ``x`` (not on padding)."""
        for j in range(self.m):
            c = j * self.dilation - self.lo  # tap j of window i reads x[i * stride + c]
            first = max(0, -(c // self.stride) if c < 0 else 0)
            last = min(self.out - 1, (self.n - 1 - c) // self.stride)
            if first <= last:
                return True
        return False

    def untouched(self) -> np.ndarray:
        """Indices of the kept windows none of whose taps lands inside ``x``."""
        return _untouched(self)

    @property
    def padded(self) -> int:
        """Length of the padded input that the windows cover exactly."""
        return self.n + self.lo + self.hi


# the longest dilated kernel that 'same'/'full' pad x for (2^40 samples: a padded axis of
# that length is already beyond any memory; larger spans overflow the FFT size search and
# int64 index arithmetic)
MAX_EXTENT = 1 << 40


@functools.lru_cache(maxsize=256)
def _untouched(g: AxisGeometry) -> np.ndarray:
    # Window i reads x at a + j * dilation (j < m) with a = i * stride - lo; it touches x
    # when some j lies in [ceil(-a / d), floor((n - 1 - a) / d)]. Only windows that run
    # off either end of x can miss it, so only those are tested: the memory is O(windows
    # at the borders), never O(outputs x taps) (a long signal's 'same' correlation)
    inner_lo = -(-g.lo // g.stride)  # the first window starting inside x
    inner_hi = (g.n - g.extent + g.lo) // g.stride  # the last one ending inside x
    if inner_lo <= inner_hi:  # windows inner_lo..inner_hi lie inside x: they touch it
        edges = (np.arange(min(inner_lo, g.out)), np.arange(max(inner_hi + 1, 0), g.out))
        i = np.concatenate(edges)
    else:
        i = np.arange(g.out)
    a = i * g.stride - g.lo
    first = np.maximum(0, -(a // g.dilation))  # ceil(-a / d), at least tap 0
    last = np.minimum(g.m - 1, (g.n - 1 - a) // g.dilation)
    idx = i[first > last].astype(np.intp)
    idx.flags.writeable = False  # shared by every caller
    return idx


def axis_geometry(
    n: int,
    m: int,
    mode: str | tuple[int, int] = "valid",
    stride: int = 1,
    dilation: int = 1,
    *,
    letter: str = "?",
    origin: int = 0,
) -> AxisGeometry:
    """Geometry of one sliding axis of input length ``n`` and kernel length ``m``:
    ``mode`` 'valid', 'same', 'full' or explicit padding ``(lo, hi)`` (samples before
    and after ``x``, as TF's and torch's padding amounts); ``origin`` moves every window
    ``origin`` samples earlier (``scipy.ndimage``'s sign: positive shifts the filter to
    the left).

    >>> axis_geometry(10, 3, "valid", stride=2).out
    4
    >>> g = axis_geometry(10, 3, (2, 1))
    >>> g.lo, g.out
    (2, 11)
    """
    if m == 0:  # an empty kernel axis: no windows, whatever the mode
        return AxisGeometry(n, 0, stride, dilation, 0, 0, -n, 0)
    extent = (m - 1) * dilation + 1
    if isinstance(mode, tuple):
        lo, length = _explicit(n, extent, mode, letter)
        return _shifted(n, m, stride, dilation, extent, lo, length, origin, letter)
    if mode != "valid" and extent > MAX_EXTENT:
        raise ValueError(
            f"dilation {dilation} on sliding axis {letter!r} makes the kernel of {m} taps span "
            f"{extent} samples, so mode={mode!r} would pad x by about that much; at most "
            f"{MAX_EXTENT} is supported: use a smaller dilation"
        )
    if mode == "full":
        length, lo = n + extent - 1, extent - 1
    elif mode == "same":
        length, lo = n, extent // 2
    elif mode == "valid":
        if n < extent:
            raise ValueError(
                f"mode='valid' needs the input at least as long as the (dilated) kernel on "
                f"sliding axis {letter!r}: input {n}, kernel {m}"
                + (f" x dilation {dilation} = extent {extent}" if dilation > 1 else "")
                + "; use mode='same' or 'full', or a smaller kernel"
            )
        length, lo = n - extent + 1, 0
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if n == 0 or m == 0:
        length = 0
    return _shifted(n, m, stride, dilation, extent, lo, length, origin, letter)


def _explicit(n: int, extent: int, pads: tuple[int, int], letter: str) -> tuple[int, int]:
    """``(lo, windows)`` of explicit padding ``pads`` = (before, after)."""
    lo, hi = pads
    if lo < 0 or hi < 0:
        raise ValueError(
            f"padding amounts are samples added before and after x: at least 0; sliding "
            f"axis {letter!r} got {pads}"
        )
    if max(lo, hi) > MAX_EXTENT:
        raise ValueError(f"padding {pads} on sliding axis {letter!r}: at most {MAX_EXTENT}")
    length = n + lo + hi - extent + 1
    if length < 0:
        raise ValueError(
            f"sliding axis {letter!r}: input {n} padded by {pads} is shorter than the "
            f"(dilated) kernel's extent {extent}"
        )
    return lo, length if n else 0


def _shifted(n, m, stride, dilation, extent, lo, length, origin, letter) -> AxisGeometry:
    """The geometry of ``length`` windows (before the stride) starting ``lo`` samples
    before ``x``, moved ``origin`` samples earlier."""
    if lo + origin < 0:
        raise ValueError(
            f"origin {origin} on sliding axis {letter!r} would start the first window "
            f"{-(lo + origin)} samples into x, where the mode pads {lo} before it: the "
            f"origin must be at least {-lo} (use more padding, e.g. mode='same')"
        )
    lo += origin
    out = -(-length // stride) if length > 0 else 0
    hi = ((out - 1) * stride + extent - lo - n) if out > 0 else -n
    return AxisGeometry(n, m, stride, dilation, extent, lo, hi, out)


def padded_copy_bytes(p, b: int) -> int:
    """Bytes of the copy :func:`pad_sliding` makes of ``b`` items of the problem ``p``
    (its sliding axes padded; channels and pairs included); 0 when no axis is padded."""
    if not any(g.lo or g.hi > 0 for g in p.geoms):
        return 0
    return b * p.C * p.P * math.prod(g.padded for g in p.geoms) * p.dtype.itemsize


def pad_sliding(
    x: np.ndarray, geoms: tuple[AxisGeometry, ...], padding: str, cval: float, first_axis: int
) -> np.ndarray:
    """Pad (or trim) the sliding axes ``first_axis, first_axis+1, ...`` of ``x`` so that a
    plain 'valid' correlation gives the requested mode. Returns ``x`` itself when nothing
    is to be done. ``padding`` has ``numpy.pad``'s meaning.
    """
    widths = [(0, 0)] * x.ndim
    trims = [slice(None)] * x.ndim
    for i, g in enumerate(geoms):
        a = first_axis + i
        widths[a] = (g.lo, max(g.hi, 0))
        if g.hi < 0:  # pad first: 'wrap' and 'reflect' must see the whole axis
            trims[a] = slice(0, g.padded)
    if any(w != (0, 0) for w in widths):
        # pad in memory order, so the padded copy keeps x's layout (NHWC stays NHWC)
        order = memory_order(x)
        xt, wt = x.transpose(order), [widths[a] for a in order]
        if padding == "constant":
            xt = np.pad(xt, wt, mode="constant", constant_values=cval)
        else:
            xt = np.pad(xt, wt, mode=padding)
        x = xt.transpose(np.argsort(order))
    if any(t != slice(None) for t in trims):
        x = x[tuple(trims)]
    return x


def summing_order(geoms: tuple[AxisGeometry, ...]) -> list[int]:
    """The order in which :func:`window_sums` sums the sliding axes: the one that shrinks
    the data most first (fewest outputs per input sample)."""
    return sorted(range(len(geoms)), key=lambda i: geoms[i].out / max(geoms[i].n, 1))


def window_sums(a, geoms: tuple[AxisGeometry, ...], first_axis: int, axis_sums):
    """Sums of ``a`` over the 'valid' windows of ``geoms`` (stride and dilation included)
    on the axes ``first_axis, ...``, one sliding axis at a time in
    :func:`summing_order`. ``axis_sums(a, axis, g, step)`` is the backend's sum along one
    axis (``step``: its place in the order, 0, 1, ...): NumPy's blocked prefix sums or
    numba kernel (``metrics/windowed.py``), ``Tensor.unfold`` (``tensors.py``), shift
    and add for any array-API namespace (``backends/array_api.py``). Each window adds
    its own samples (or, blocked, two blocks' partial sums), so the rounding is local.

    >>> import numpy as np
    >>> def shift_add(a, axis, g, step):  # (a 1-D sketch of one axis)
    ...     return sum(a[j * g.dilation :][: (g.out - 1) * g.stride + 1 : g.stride]
    ...                for j in range(g.m))
    >>> window_sums(np.arange(6.0), (axis_geometry(6, 3),), 0, shift_add)
    array([ 3.,  6.,  9., 12.])
    """
    for step, i in enumerate(summing_order(geoms)):
        a = axis_sums(a, first_axis + i, geoms[i], step)
    return a
