"""The FFT method: real FFTs over the sliding axes only, channel sums in the frequency domain.

Each input item and each filter is transformed once. Summed (channel) axes are contracted
per frequency bin, ``(P, F, b, C) @ (P, F, C, k)``, as complex matrix products, or for 2
to 4 items as real ones (the spectra's real and imaginary parts stacked as rows, the
filters' spectra read as real matrices: :func:`_real_products`, where OpenBLAS's small
complex products run at half the rate; :func:`_products`); with a single channel it is a
broadcast product. Where a bin's matrices are small but not thin
(4 or more items against 32 or more filters, at most 8,192 multiply-adds a bin) and numba
is on, whole items take compiled per-bin products instead (:func:`_compiled_products`):
BLAS pays a call per bin (7x7 32->32 on 4 x 64x64, 2 threads: 3.55 -> 3.3 ms a call;
11x11 16->32 on 4 x 96x96: 5.5 -> 5.0 ms).

Two layouts of the transform, chosen per problem by :func:`tiling`:

* **whole** (inputs up to a few tens of thousands of samples per item): with zero padding
  the FFT buffer itself supplies the zeros. The size per axis is the smallest fast length
  that keeps every kept output free of wrap-around (``n + max(lo, hi)``: 144 rather than
  191 for a 96x96 'same' correlation), and the kernel is stored rolled by ``-lo`` so that
  the kept outputs are a plain strided slice of the inverse transform.
* **tiled** (overlap-save, for large inputs and small kernels): the output is cut into
  tiles whose transforms (about 64K points) stay in cache; each tile reads its input
  window plus the kernel's halo, and all tiles share one kernel spectrum. Less memory per
  item, better cache use, and round-off that stays local to the tile.

Work units (groups of items, times tiles) run one per thread through transform ->
product -> inverse -> crop, each FFT single-threaded: on the 2-core dev machine that is
about 2x faster than whole-batch transforms with ``workers=2``, whose passes over a large
array run at memory speed.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import product
from math import isnan, log2, prod

import numpy as np

from .. import compiled
from ..geometry import pad_sliding
from ..memo import memo, remembered
from ..nonfinite import REDO_BYTES, recompute_windows
from ..problem import Problem, problem_cache
from ..xp import (
    WORK_BUFFER_MIN,
    blas_threads,
    fft_engine,
    get_workers,
    next_fast_len,
    ordered_like,
    parallel_for,
    work_buffer,
)
from . import direct

__all__ = [
    "FFTState",
    "fft_shape",
    "tiling",
    "tile_count",
    "prepare",
    "compute",
    "workspace_bytes",
    "block_bytes",
    "prepare_bytes",
    "fuses_reduce",
    "bind",
    "state_bytes",
    "flops",
    "cost_features",
    "cost_parts",
    "describe",
]

# what the method is (see methods/__init__.py)
NAME = "fft"
ON_TENSORS = False
STANDS_FOR = None
COMPUTES_SAD = False
EXACT_FOR_INTEGERS = False
SPREADS_NONFINITE = True  # a NaN/Inf spreads over the item's transform: redone exactly

KERNEL_CHUNK_BYTES = 64 << 20  # filters are transformed in groups of at most this size
# from this many filters in a group, their spectra go to the (P, F, C, K) layout a channel
# at a time: the copy of all at once reads k * C pages per bin (TLB misses); a channel at
# a time writes rows of k values, too short below this (2 cores, prepare() interleaved,
# medians of 7: 128-256 filters 1.26-1.46x faster, e.g. 128 x 32 channels of 3x3 on
# 32x32 25.4 -> 18.0 ms, 128 x 128 3x3 on 28x28 92.5 -> 73.6; 64 filters 0.93-1.03x;
# 8-32 filters up to 1.7x slower in a first try)
_SCATTER_BY_CHANNEL = 64
# one work unit: fewer, larger calls beat L2-sized ones (a sweep over batches of images
# against one filter)
_GROUP_BYTES = 4 << 20
# below this much work-unit memory in all, one thread does the whole block: handing work to
# a second thread costs more than it saves (dev machine: 5 x 100x100, 0.61 vs 0.68 ms)
_PARALLEL_BYTES = 4 << 20
_TILE_POINTS = 1 << 16  # FFT points per tile (overlap-save): 1 MiB of complex128
_TILE_EXTENTS = 4  # a tile's FFT spans at least this many kernel extents (halo < 1/4)
# pocketfft's own threads slow down transforms smaller than this (dev machine: 100x100 x5
# took 1.11 ms on one thread, 1.44 ms on two); below it, one thread per transform
_THREADED_FFT_BYTES = 4 << 20
# per-bin channel products compiled up to this many complex multiply-adds a bin (b C k)
_COMPILED_PRODUCTS = 8192


def _fft_threads(nbytes: int, workers: int) -> int:
    return workers if nbytes >= _THREADED_FFT_BYTES else 1


@dataclass
class FFTState:
    """What the FFT method keeps per plan: sizes and the filters' spectra."""

    fft_shape: tuple[int, ...]
    tiles: tuple[int, ...] | None  # outputs per tile and axis (overlap-save), or None
    implicit_zeros: bool  # zero padding supplied by the FFT buffer / the tile buffers
    is_complex: bool
    spectrum: np.ndarray  # C == 1: (K, P, *Fh); C > 1: (P, prod(Fh), C, K)
    # filters so large that their spectra would overflow are transformed divided by a
    # power of two: per filter (K,) the factor their outputs are multiplied back by, or
    # None when there is none (see filter_scaling)
    shifts: np.ndarray | None = None
    # log2 of a bound on the spectra's magnitudes (filters holding NaN/Inf left out)
    peak: float = float("-inf")
    # the canonical filters transformed (a reference), for the windows of items whose
    # scaled transforms still do not give finite results (see _redo_overflow)
    filters: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def units(self) -> dict:
        """The one-filter units' constants per input group shape and destination
        strides (:func:`_one_filter_unit`), kept in the state's memo (``memo.py``)."""
        return memo(self).get("units", {})


def implicit_zeros(p: Problem) -> bool:
    """True when the padding is zeros (or there is none), so the FFT buffer can supply it."""
    return (p.padding == "constant" and p.cval == 0) or all(
        g.lo == 0 and g.hi <= 0 for g in p.geoms
    )


@problem_cache(maxsize=256)
def tiling(p: Problem) -> tuple[int, ...] | None:
    """Outputs per overlap-save tile along each axis, or None to transform whole items.

    An axis is tiled when it has more than two tiles' worth of outputs, a tile's FFT
    being about ``_TILE_POINTS ** (1/d)`` long and at least ``_TILE_EXTENTS`` kernel
    extents (so that the halo costs under a quarter). Tiles are evened out so that the
    last one is not a sliver.
    """
    target = _TILE_POINTS ** (1.0 / p.ndim)
    tiles, any_tiled = [], False
    for g in p.geoms:
        f = next_fast_len(max(int(target), _TILE_EXTENTS * g.extent))
        t_max = (f - g.extent) // g.stride + 1
        if g.out > 2 * t_max:
            n_tiles = -(-g.out // t_max)
            tiles.append(-(-g.out // n_tiles))
            any_tiled = True
        else:
            tiles.append(g.out)
    return tuple(tiles) if any_tiled else None


def tile_count(p: Problem) -> int:
    """Number of overlap-save tiles per item (1 for whole-item transforms)."""
    tiles = tiling(p)
    if tiles is None:
        return 1
    return prod(-(-g.out // t) for g, t in zip(p.geoms, tiles, strict=True))


@problem_cache(maxsize=256)
def fft_shape(p: Problem) -> tuple[int, ...]:
    """FFT length per sliding axis: the engine's next fast length (``xp.next_fast_len``)
    of :func:`needed_lengths`."""
    real = p.dtype.kind != "c"
    return tuple(next_fast_len(n, real=real) for n in needed_lengths(p, tiling(p)))


def needed_lengths(p: Problem, tiles: tuple[int, ...] | None) -> list[int]:
    """The FFT size rule, for every FFT method (each rounds it up to a length its engine
    transforms fast): per sliding axis, the shortest transform without wrap-around in any
    kept output (and at least the dilated kernel's extent), for overlap-save ``tiles`` of
    that many outputs or for whole items (None).

    >>> from batchconv.problem import make_problem
    >>> needed_lengths(make_problem((1, 100), "f8", (1, 9), "f8", mode="same"), None)
    [104]
    """
    if tiles is not None:
        return [(t - 1) * g.stride + g.extent for t, g in zip(tiles, p.geoms, strict=True)]
    if implicit_zeros(p):
        return [max(g.n + min(g.hi, 0) + max(g.lo, g.hi, 0), g.extent) for g in p.geoms]
    return [g.padded for g in p.geoms]


@lru_cache(maxsize=256)
def real_axis(shape: tuple[int, ...]) -> int:
    """The sliding axis that carries the real-to-complex transform: the longest (the last
    of equals), so that the half spectrum is smallest. RGB images of 96x96 against 96x96
    filters, 'same' (FFT shape (144, 144, 4)), keep 144 x 73 x 4 bins rather than
    144 x 144 x 3, and the short axis is never the one whose inverse writes the output
    rows."""
    return max(range(len(shape)), key=lambda i: (shape[i], i))


@lru_cache(maxsize=256)
def half_shape(shape: tuple[int, ...], is_complex: bool) -> tuple[int, ...]:
    """The spectrum's shape: the real axis (:func:`real_axis`) halved for real data."""
    if is_complex:
        return shape
    r = real_axis(shape)
    return (*shape[:r], shape[r] // 2 + 1, *shape[r + 1 :])


@lru_cache(maxsize=256)
def ordered_axes(shape: tuple[int, ...], first_axis: int) -> tuple[tuple, tuple]:
    """``(s, axes)`` for the engine: the real axis last, as ``rfftn`` expects (so the
    longest axis is halved; ``torch.fft.rfftn`` takes the same arguments as ``s``/``dim``)."""
    r = real_axis(shape)
    order = [i for i in range(len(shape)) if i != r] + [r]
    return tuple(shape[i] for i in order), tuple(first_axis + i for i in order)


def tap_positions(p: Problem, shape: tuple[int, ...], shift: bool) -> list[np.ndarray]:
    """Per sliding axis, where a kernel's taps go in an FFT buffer of ``shape``: tap j at
    (j * dilation - lo) mod F (``lo`` only with ``shift``, for implicit zero padding)."""
    return [
        (np.arange(g.m) * g.dilation - (g.lo if shift else 0)) % n
        for g, n in zip(p.geoms, shape, strict=True)
    ]


def filter_group_bytes(budget: int | None, cap: int | None) -> int:
    """Spectra bytes of the filters a plan transforms at once: a 16th of the budget (the
    group's buffers then stay about a tenth of it beside the spectra), at most ``cap``;
    ``cap`` alone without a budget.

    >>> filter_group_bytes(1 << 30, 64 << 20), filter_group_bytes(None, 64 << 20)
    (67108864, 67108864)
    >>> filter_group_bytes(16 << 20, 64 << 20)
    1048576
    """
    if budget is None:
        return cap
    return budget // 16 if cap is None else min(cap, budget // 16)


def log2_limit(dtype) -> int:
    """log2 of the largest magnitude a transform of ``dtype`` data may reach: 8x below
    the largest finite value (float32: 2**125, float64: 2**1021), a margin for the
    round-off on a bound that is already loose.

    >>> log2_limit(np.float32), log2_limit(np.complex128)
    (125, 1021)
    """
    return int(np.finfo(dtype).maxexp) - 3


def log2_abs(v: float) -> float:
    """log2 of ``|v|``: -inf for 0, NaN for NaN (float32 data reach 2**128, float64
    data 2**1024: no product of such bounds is formed, only sums of their logs)."""
    v = abs(v)
    return log2(v) if v > 0 else (v if isnan(v) else float("-inf"))


def filter_scaling(tops: np.ndarray, count: int, dtype) -> tuple[np.ndarray | None, float]:
    """``(exponents, peak)`` for filters whose largest magnitudes are ``tops`` (K,) over
    ``count`` taps each (channels and pairs included): a filter's spectrum is at most
    the sum of its magnitudes, so where ``top * count`` passes :func:`log2_limit` the
    filter is transformed divided by ``2**a`` (``a`` brings the bound to the square root
    of the range, so that its products with the items' spectra seldom overflow either)
    and its outputs multiplied back (exponents None where no filter needs it). ``peak``:
    log2 of a bound on every spectrum as transformed (filters holding NaN or Inf left
    out: their outputs are not finite either way; -inf with no taps).

    >>> exps, peak = filter_scaling(np.array([1.0, 1e36]), 961, np.float32)
    >>> exps, round(peak, 1)
    (array([ 0, 66]), 63.5)
    """
    limit = log2_limit(dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log2(tops.astype(np.float64)) + (log2(count) if count else float("-inf"))
    finite = np.isfinite(logs)
    over = finite & (logs > limit)
    exps = None
    if over.any():
        half = (limit + 3) // 2
        exps = np.where(over, np.ceil(np.where(over, logs, 0)) - half, 0).astype(np.int64)
        logs = logs - exps
    known = logs[finite | (logs == float("-inf"))]
    return exps, float(known.max()) if known.size else float("-inf")


def _filter_tops(wc: np.ndarray) -> np.ndarray:
    """Each filter's largest magnitude (K,) (NaN where it holds a NaN)."""
    K = wc.shape[0]
    a = np.abs(wc if wc.dtype.kind in "fc" else wc.astype(np.float64))  # |int8 -128|
    return a.reshape(K, wc.size // K if K else 0).max(axis=1, initial=0.0)


def _ldexp(a: np.ndarray, e) -> np.ndarray:
    """``a * 2**e`` in place (``e``: an int, or ints broadcasting against ``a``), by
    multiplications with powers of two of at most ``2**100`` (normal numbers in float32;
    ``np.ldexp`` is 5-10x slower): exact wherever the result is a normal number."""
    real = np.finfo(a.dtype).dtype
    e = np.asarray(e, np.int64)
    while e.any():
        step = np.clip(e, -100, 100)
        np.multiply(a, np.ldexp(1.0, step).astype(real), out=a)
        e = e - step
    return a


def _kernel_buffer(p: Problem, wc: np.ndarray, shape: tuple[int, ...], shift: bool):
    """Dilated kernels placed in FFT-sized buffers (:func:`tap_positions`)."""
    buf = np.zeros(wc.shape[:3] + shape, dtype=p.dtype)
    buf[(slice(None),) * 3 + np.ix_(*tap_positions(p, shape, shift))] = wc
    return buf


def prepare(p: Problem, wc: np.ndarray, budget: int | None = None) -> FFTState:
    """Transform the canonical filters ``wc`` (K, C, P, *T) once."""
    shape = fft_shape(p)
    tiles = tiling(p)
    is_complex = p.dtype.kind == "c"
    implicit = implicit_zeros(p)
    eng = fft_engine()
    axes = tuple(range(3, 3 + p.ndim))
    cdtype = np.result_type(p.dtype, np.complex64)
    K, C, P = wc.shape[:3]
    exps, peak = filter_scaling(_filter_tops(wc), prod(wc.shape[1:]), p.dtype)
    half = half_shape(shape, is_complex)
    # one channel: (K, P, *Fh); channels: frequency-major for one batched matmul per bin,
    # (P, F, C, K). Each group of filters goes straight into that layout, so the
    # transform never holds the spectra twice (128 x 16 filters of 63x63: 540 MB once)
    spec = np.empty((K, P, *half) if C == 1 else (P, prod(half), C, K), dtype=cdtype)
    per_filter = max(1, C * P * prod(shape) * cdtype.itemsize)
    step = max(1, filter_group_bytes(budget, KERNEL_CHUNK_BYTES) // per_filter)
    for k0 in range(0, K, step):
        k1 = min(k0 + step, K)
        # whole items: roll by -lo so kept outputs start at 0; tiles start at their window
        w = wc[k0:k1]
        if exps is not None:  # filters whose spectra would overflow, divided by 2**a
            w = _ldexp(w.copy(), -exps[k0:k1].reshape(-1, *[1] * (w.ndim - 1)))
        buf = _kernel_buffer(p, w, shape, shift=implicit and tiles is None)
        threads = _fft_threads(buf.nbytes, get_workers())
        if is_complex:  # sum_j x[t+j] v[j]  <=>  X * conj(FFT(conj(v)))
            group = eng.fftn(np.conjugate(buf, out=buf), shape, axes, threads)
        else:
            group = eng.rfftn(buf, *ordered_axes(shape, 3), threads)
        del buf
        group = np.conjugate(group, out=group)  # (k, C, P, *Fh)
        if C == 1:
            spec[k0:k1] = group[:, 0]
        else:
            group = group.reshape(k1 - k0, C, P, prod(half))
            if k1 - k0 >= _SCATTER_BY_CHANNEL:  # (k, P, F) -> (P, F, k), a channel at a time
                for c in range(C):
                    spec[:, :, c, k0:k1] = group[:, c].transpose(1, 2, 0)
            else:
                spec[..., k0:k1] = group.transpose(2, 3, 1, 0)
        del group  # before the next group's buffers
    shifts = None
    if exps is not None:
        real = np.finfo(p.dtype).dtype
        shifts = np.ldexp(np.ones(K, real), exps.astype(np.int32))
    return FFTState(shape, tiles, implicit, is_complex, spec, shifts, peak, wc)


def _forward(st: FFTState, x: np.ndarray, workers: int, out=None) -> np.ndarray:
    """Spectra ``(b, C, P, *Fh)`` of the items ``x`` (b, C, P, *n <= F), written into
    ``out`` where the engine can (the result is returned either way)."""
    eng = fft_engine()
    if st.is_complex:
        return eng.fftn(x, st.fft_shape, tuple(range(3, 3 + len(st.fft_shape))), workers)
    return eng.rfftn(x, *ordered_axes(st.fft_shape, 3), workers, out=out)


def zero_untouched(p: Problem, y):
    """With zero padding, windows that never touch ``x`` are exactly 0 (not FFT round-off
    of 0) in ``y`` (b, k, P, *O; an array or a tensor, set in place and returned)."""
    for index in untouched_indices(p, as_lists=not isinstance(y, np.ndarray)):
        y[index] = 0
    return y


@problem_cache(maxsize=256)
def untouched_indices(p: Problem, as_lists: bool = False) -> tuple[tuple, ...]:
    """Indices into a block ``(b, k, P, *O)`` of the windows that never touch ``x``
    (with zero padding; none otherwise), one per sliding axis that has some; ``as_lists``
    for a tensor, which takes a list (a read-only array would warn). Remembered: read
    them, never change them."""
    if not (p.padding == "constant" and p.cval == 0):
        return ()
    found = []
    for i, g in enumerate(p.geoms):
        idx = g.untouched()
        if idx.size:
            found.append((slice(None),) * (3 + i) + (idx.tolist() if as_lists else idx,))
    return tuple(found)


def _channel_product(st: FFTState, X: np.ndarray, k0: int, k1: int) -> np.ndarray:
    """Channel sums in the frequency domain: ``(P, *Fh, b, k)`` from the spectra ``X``
    (b, C, P, *Fh), a matrix product per bin (:func:`_products`)."""
    b, C, P = X.shape[:3]
    Y = _products(X.reshape(b, C, P, -1), st.spectrum[..., k0:k1])  # (P, F, b, k)
    return Y.reshape(P, *X.shape[3:], b, k1 - k0)


def _compiled_products(b: int, C: int, k: int, K: int) -> bool:
    """Whether the per-bin channel products of ``b`` items, ``C`` channels and ``k`` of
    the bank's ``K`` filters run compiled (``_numba_kernels.bin_products``): for the
    whole bank only (a slice of the spectra would be compiled for again, and banks are
    cut only under tight budgets), with numba on, where a bin's matrices are small (``b
    C k`` at most ``_COMPILED_PRODUCTS``) but not thin: at least 4 items (the loop takes
    4 rows at a time) and 32 filters (shorter rows leave its sums' loads and stores the
    cost). Two threads, reused plans, compiled
    / BLAS ms: 7x7 32->32 on 4 x 64x64 3.29 / 3.55 (3.5 / 4.4 when BLAS ran complex
    products); 11x11 16->32 on 4 x 96x96 5.0 / 5.5 (4.9 / 7.0); a 5x5 bank of 32 on 8 x
    48x48 3.65 / 3.85 (8 x 32 x 32: the limit). Before the real products an independent
    review measured the products alone, 1,024 bins: 8 x 32 x 32 0.86 / 1.06, 16 x 32 x 32
    1.67 / 1.38 (over the limit); one item 128 -> 16 on 48x48 6.3 / 2.2, 4 x 128 -> 16
    7.0 / 5.3 (too few items, too few filters)."""
    return k == K and b >= 4 and k >= 32 and b * C * k <= _COMPILED_PRODUCTS and compiled.enabled()


def _ordered_channel_product(
    st: FFTState, X: np.ndarray, k0: int, k1: int, workers: int
) -> np.ndarray:
    """:func:`_channel_product` laid out ``(b, k, P, *Fh)`` (C order). The bins are cut
    into ``4 workers`` ranges, run on the threads with a one-thread BLAS (or by the
    compiled products: :func:`_compiled_products`), each range written into place by
    its thread (7x7 32->32 on 4 x 64x64, 2 cores: the block's products and reorderings
    3.1 -> 2.2 ms).

    A range's products: :func:`_products`."""
    b, C, P = X.shape[:3]
    bins = prod(X.shape[3:])
    pieces = min(bins, 4 * workers)
    fast = _compiled_products(b, C, k1 - k0, st.spectrum.shape[-1])
    flat = X.reshape(b, C, P, bins)
    spectrum = st.spectrum.reshape(P, bins, C, -1)
    Y = np.empty((b, k1 - k0, P, bins), np.result_type(X.dtype, spectrum.dtype))
    bounds = [bins * i // pieces for i in range(pieces + 1)]

    def run(i: int) -> None:
        sl = slice(bounds[i], bounds[i + 1])
        if fast:  # in the spectra's own layouts
            for pi in range(P):
                compiled.kernels().bin_products(flat, spectrum[pi], Y, pi, sl)
            return
        with np.errstate(invalid="ignore", over="ignore"):  # (per thread) non-finite: redone
            y = _products(flat[..., sl], spectrum[:, sl, :, k0:k1])
            Y[..., sl] = y.transpose(2, 3, 0, 1)

    with nullcontext() if fast else blas_threads(1):  # (the compiled products call no BLAS)
        parallel_for(run, range(pieces), workers)
    return Y.reshape(b, k1 - k0, P, *X.shape[3:])


def _use_real_products(b: int, C: int, k: int) -> bool:
    """Whether :func:`_products` of ``b`` items, ``C`` channels and ``k`` filters runs
    :func:`_real_products`: where OpenBLAS's complex product of a bin's (b, C) @ (C, k)
    is slow, for 2 to 4 items, unless the filters outnumber the channels so much that
    the real products' larger result costs more. One thread, 264 bins, complex64,
    complex / real us (with the placement into the block): 4 x 32 x 32 292 / 229, 2 x
    3 x 8 64 / 25, 4 x 64 x 128 1965 / 1358; but 1 x 32 x 32 76 / 98, 16 x 3 x 64 694 /
    1226, 32 x 16 x 32 1097 / 1254, 4 x 3 x 64 178 / 199, 2 x 8 x 128 265 / 291."""
    return (b == 2 and k < 16 * C) or (3 <= b <= 4 and k <= 4 * C)


def _products(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``y[p, f] = x[:, :, p, f] @ s[p, f]``, ``(P, f, b, k)``, for complex ``x`` (b, C, P,
    f; its last axis contiguous) and ``s`` (P, f, C, k): :func:`_real_products` where
    :func:`_use_real_products` says, else a batched complex matmul of ``x`` reordered
    ``(P, f, b, C)``. (:func:`_product_bytes` counts either's temporaries.)"""
    b, C = x.shape[:2]
    if _use_real_products(b, C, s.shape[-1]):
        return _real_products(x, s)
    return np.matmul(np.ascontiguousarray(x.transpose(2, 3, 0, 1)), s)


def _product_bytes(b: int, C: int, k: int, P: int, f: int, c: int) -> int:
    """Peak bytes of :func:`_products` over ``f`` bins (``c`` bytes a complex value), its
    result included: the reordered ``x`` and the result, or the stacked rows, the real
    products (twice the result) and the result, and NumPy's buffer for the combination
    of non-contiguous views (8,192 values)."""
    rows, y = b * C * P * f * c, b * k * P * f * c
    if not _use_real_products(b, C, k):
        return rows + y
    return max(rows + 2 * y, 3 * y) + min(y, 8192 * c)


def _compiled_scratch(b: int, C: int, k: int, c: int) -> int:
    """Bytes of ``_numba_kernels.bin_products``' scratch (per call, on each thread): a
    block of bins' items and results, ``_BIN_BLOCK`` (8) bins of ``(b, C)`` and ``(b,
    k)`` complex values, and 8 rows of ``k`` real sums."""
    return 8 * b * (C + k) * c + 8 * k * c // 2


def _real_products(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``y[p, f] = x[:, :, p, f] @ s[p, f]``, ``(P, f, b, k)``, for complex ``x`` (b, C, P,
    f) and ``s`` (P, f, C, k), by one real matrix product per bin: the real and
    imaginary parts of ``x`` stacked as ``(2b, C)`` rows times ``s`` seen as real ``(C,
    2k)`` (its own memory: interleaved real and imaginary parts), which gives ``re(x) s``
    and ``im(x) s``, and ``y = re(x) s + 1j im(x) s``. The same real multiplications as
    the complex product, in real GEMMs; the stacked rows take ``x``'s bytes and the
    real products twice ``y``'s (:func:`_product_bytes`).

    ``x``'s last axis must be contiguous (it is read as real values).

    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((2, 3, 1, 5)) + 1j * rng.random((2, 3, 1, 5))
    >>> s = rng.random((1, 5, 3, 4)) + 1j * rng.random((1, 5, 3, 4))
    >>> y = _real_products(x, s)
    >>> bool(np.allclose(y, np.einsum("ncpf,pfck->pfnk", x, s)))
    True
    """
    b, C, P, f = x.shape
    real = x.real.dtype
    rows = np.empty((P, f, 2, b, C), real)  # (P, f, [re, im], b, C)
    np.copyto(rows, x.view(real).reshape(b, C, P, f, 2).transpose(2, 3, 4, 0, 1))
    z = np.matmul(rows.reshape(P, f, 2 * b, C), s.view(real))  # (P, f, 2b, 2k)
    del rows
    # re(x) s and im(x) s, each complex (P, f, b, k)
    z = z.reshape(P, f, 2, b, -1).view(x.dtype)
    y = np.multiply(z[:, :, 1], 1j, dtype=x.dtype)
    y += z[:, :, 0]
    return y


def _inverse(
    p: Problem,
    st: FFTState,
    Y: np.ndarray,
    keep: tuple,
    workers: int,
    channels_first: bool,
    like=None,
) -> np.ndarray:
    """Kept outputs ``(b, k, P, *kept)`` of the product spectra ``Y``: ``(b, k, P, *Fh)``,
    or ``(P, *Fh, b, k)`` when ``channels_first`` is False (after a channel product).
    ``like``: where the outputs go (``channels_first`` only), whose memory order the
    real inverse's buffer takes."""
    eng = fft_engine()
    d, shape = p.ndim, st.fft_shape
    axes = tuple(range(3, 3 + d)) if channels_first else tuple(range(1, 1 + d))
    lead = (slice(None),) * axes[0]
    if st.is_complex:
        y = eng.ifftn(Y, shape, axes, workers, overwrite=True)[lead + keep]
    else:
        y = eng.irfftn_kept(
            Y, shape, axes, keep, real_axis(shape), workers, like if channels_first else None
        )
    if not channels_first:
        y = np.moveaxis(y, (-2, -1), (0, 1))  # (b, k, P, *kept)
    if p.integer_inputs:
        y = np.rint(y)
    return y


def _product_inverse(
    p: Problem,
    st: FFTState,
    X: np.ndarray,
    k0: int,
    k1: int,
    keep: tuple,
    workers: int,
    in_place: bool = False,
    like=None,
) -> np.ndarray:
    """Kept outputs ``(b, k, P, *kept)`` of the spectra ``X`` (b, C, P, *Fh) against
    filters ``k0:k1``. ``in_place``: ``X`` may be overwritten (one filter, C == 1).
    ``like``: the outputs' destination (see :func:`_inverse`)."""
    if X.shape[1] != 1:
        return _inverse(p, st, _channel_product(st, X, k0, k1), keep, workers, False)
    if k1 - k0 == 1 and in_place:  # multiply in place, X becomes (b, 1, P, *Fh)
        Y = np.multiply(X, st.spectrum[None, k0:k1], out=X)
    else:  # (b, k, P, *Fh) in this thread's reused buffer: no fresh pages per unit
        shape = (X.shape[0], k1 - k0, *X.shape[2:])
        Y = np.multiply(
            X[:, 0][:, None], st.spectrum[None, k0:k1], out=work_buffer(shape, X.dtype, "product")
        )
    return _inverse(p, st, Y, keep, workers, True, like)


def _spectral(
    p: Problem, st: FFTState, x: np.ndarray, k0: int, k1: int, keep: tuple, workers: int, like=None
) -> np.ndarray:
    """Correlate the items ``x`` (b, C, P, *n <= F) with filters ``k0:k1`` through the
    cached spectra; return the kept outputs ``(b, k, P, *kept)`` (real data: a view of
    this thread's work buffer, laid out like ``like`` when given). The items' spectra go
    into this thread's reused buffer where the engine can write it there."""
    spectra = None
    if x.shape[3:] == st.fft_shape and not st.is_complex and fft_engine().pocketfft is not None:
        spectra = work_buffer(
            (*x.shape[:3], *half_shape(st.fft_shape, False)),
            np.result_type(x.dtype, np.complex64),
            "spectra",
        )
    return _product_inverse(
        p, st, _forward(st, x, workers, spectra), k0, k1, keep, workers, in_place=True, like=like
    )


class _OneFilterUnit:
    """One filter against a group of items, as a fixed sequence of pocketfft calls into
    this thread's reused buffers: the common small case (5 images of 100x100 against one
    11x11 filter, 0.4 ms) is where the Python between the transforms shows, above all in
    a cold call, so everything that depends only on the shapes is worked out once, here.

    Only for real data whose cropped input already has the FFT's size (no zero padding
    to add, e.g. 'valid': every window then touches x, so :func:`zero_untouched` has
    nothing to do), with SciPy's pocketfft (see :func:`xp.pocketfft`); other cases take
    the general route (:func:`_spectral`), which gives the same answers."""

    def __init__(self, p: Problem, st: FFTState, x_shape: tuple, dest_strides: tuple | None):
        s, axes = ordered_axes(st.fft_shape, 3)
        self.real_axis, self.others, self.n_real = [axes[-1]], list(axes[:-1]), s[-1]
        self.half = x_shape[: axes[-1]] + (s[-1] // 2 + 1,) + x_shape[axes[-1] + 1 :]
        self.ctype = np.result_type(p.dtype, np.complex64)
        _, keep, _ = whole_items(p)
        rows = [slice(None)] * len(x_shape)  # the kept outputs of the other axes
        for ax in self.others:
            rows[ax] = keep[ax - 3]
        self.rows = tuple(rows)
        out = [slice(None)] * len(x_shape)  # ... and of the real axis
        out[axes[-1]] = keep[axes[-1] - 3]
        self.kept = tuple(out)
        inverse = [len(range(*r.indices(n))) for r, n in zip(self.rows, x_shape, strict=True)]
        inverse[axes[-1]] = s[-1]
        kept_shape = [len(range(*k.indices(n))) for k, n in zip(self.kept, inverse, strict=True)]
        # the real inverse's buffer, laid out like the destination (the copy there runs
        # along memory; strides of length-1 axes do not matter), or C-ordered
        strides = (
            None
            if dest_strides is None
            else tuple(
                0 if n == 1 else st_ for n, st_ in zip(kept_shape, dest_strides, strict=True)
            )
        )
        self.ordered, self.back = ordered_like(tuple(inverse), strides)
        self.rtype = p.dtype
        self.integer = p.integer_inputs

    def run(
        self, x: np.ndarray, spectrum: np.ndarray, threads: int, first: int, nonfinite: set | None
    ) -> np.ndarray:
        """The kept outputs ``(b, 1, P, *O)`` of the items ``x`` (b, 1, P, *F) against one
        filter's ``spectrum`` (1, 1, P, *Fh): a view of this thread's work buffer. Items
        (numbered from ``first``) whose outputs are not all finite go into ``nonfinite``
        (see :func:`_flag_nonfinite`)."""
        pf = fft_engine().pocketfft
        X = pf.r2c(
            x, self.real_axis, True, 0, work_buffer(self.half, self.ctype, "spectra"), threads
        )
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite: redone
            if self.others:
                pf.c2c(X, self.others, True, 0, X, threads)
            np.multiply(X, spectrum, out=X)
            if self.others:
                pf.c2c(X, self.others, False, 2, X, threads)
            buf = work_buffer(self.ordered, self.rtype).transpose(self.back)
            pf.c2r(X[self.rows], self.real_axis, self.n_real, False, 2, buf, threads)
            y = buf[self.kept]
            # (a sum of large finite outputs may overflow: then the exact test finds none)
            if nonfinite is not None and not np.isfinite(buf.sum()):  # contiguous: fast
                _flag_nonfinite(y, first, nonfinite)
        if self.integer:
            np.rint(y, out=y)
        return y


def _one_filter_unit(
    p: Problem, st: FFTState, x_shape: tuple, dest_strides: tuple | None
) -> _OneFilterUnit | None:
    """The :class:`_OneFilterUnit` for items of ``x_shape`` written to a destination of
    ``dest_strides`` (None: a reduce comes between; kept in the state), or None where
    the general route is needed."""
    if fft_engine().pocketfft is None:  # (checked on every call: the engine may change)
        return None
    # kept in the state's memo (not pickled: the constants depend on the FFT engine of
    # the process that made them)
    units = remembered(st, "units", dict)
    key = (x_shape, dest_strides)
    unit = units.get(key, False)
    if unit is False:
        unit = None
        if (
            not st.is_complex
            and x_shape[1] == 1
            and x_shape[3:] == st.fft_shape
            and not any(g.untouched().size for g in p.geoms)
        ):
            unit = _OneFilterUnit(p, st, x_shape, dest_strides)
        if len(units) < 64:
            units[key] = unit
    return unit


def _pair_units(b: int, k: int, pair_bytes: int, workers: int) -> list[tuple[slice, slice]]:
    """(batch, bank) work units of about ``_GROUP_BYTES`` of spectra and outputs each,
    bank first (so that one item's spectrum meets a group of filters in cache), and at
    least one per thread when the block is large; groups differ by one at most, the
    larger first."""
    nb, nk = _pair_counts(b, k, pair_bytes, workers)
    return [(bs, ks) for bs in _even_slices(b, nb) for ks in _even_slices(k, nk)]


def _even_slices(n: int, parts: int) -> list[slice]:
    """``range(n)`` cut into ``parts`` slices whose lengths differ by one at most, the
    longer first."""
    q, r = divmod(n, parts)
    bounds = [i * q + min(i, r) for i in range(parts + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(parts)]


def _pair_counts(b: int, k: int, pair_bytes: int, workers: int) -> tuple[int, int]:
    """How many groups of items and of filters :func:`_pair_units` makes (``b, k`` >= 1)."""
    if b * k * pair_bytes < _PARALLEL_BYTES:
        workers = 1
    pairs = max(1, _GROUP_BYTES // max(pair_bytes, 1))
    gk = min(k, pairs)
    gb = min(b, max(1, pairs // gk))
    while -(-b // gb) * -(-k // gk) < workers and (gb > 1 or gk > 1):
        if gb > 1:
            gb = -(-gb // 2)
        else:
            gk = -(-gk // 2)
    nb, nk = -(-b // gb), -(-k // gk)
    # a few units: a multiple of the threads where the items allow (4 items in groups of
    # 3 left one thread a third of the other's work: 7x7 32->32 on 4 x 64x64, inverses
    # of 1.0 and 0.33 ms side by side; 8 in groups of 3, one thread 5 items, the other 3)
    if workers > 1 and nb * nk < 4 * workers:
        while (nb * nk) % workers and nb < b:
            nb += 1
    return nb, nk


@problem_cache(maxsize=256)
def whole_items(p: Problem) -> tuple[tuple, tuple, bool]:
    """``(crop, keep, no_data)`` for whole-item transforms: the part of a canonical input
    that reaches the kept outputs with implicit zero padding, the kept outputs' slices in
    the inverse transform, and True when no window touches ``x`` (only padding)."""
    crop = (slice(None),) * 3 + tuple(slice(0, g.n + min(g.hi, 0)) for g in p.geoms)
    keep = tuple(slice(0, (g.out - 1) * g.stride + 1, g.stride) for g in p.geoms)
    return crop, keep, not all(g.touches_data for g in p.geoms)


def _groups(b: int, per_item: int, n_tiles: int, workers: int) -> tuple[slice, ...]:
    """Batch groups of about ``_GROUP_BYTES`` each; enough of them (times the tiles) to give
    every thread work in every round, all of about the same size. Small blocks stay on
    one thread."""
    g = _group_size(b, per_item, n_tiles, workers)
    return tuple(slice(i, min(i + g, b)) for i in range(0, b, g))


def _group_size(b: int, per_item: int, n_tiles: int, workers: int) -> int:
    """Items per group of :func:`_groups` (the first, largest one)."""
    if b * per_item * n_tiles < _PARALLEL_BYTES:
        workers = 1
    n = -(-b // max(1, _GROUP_BYTES // max(per_item, 1)))
    units = -(-(n * n_tiles) // workers) * workers  # rounded up to a multiple of workers
    n = min(b, max(n, -(-units // n_tiles)))
    return -(-b // max(n, 1))


@problem_cache(maxsize=256)
def _per_item_bytes(p: Problem, shape: tuple[int, ...], k: int) -> int:
    """Bytes of one item's spectra and inverse transforms against ``k`` filters (FFT
    ``shape``)."""
    half = prod(half_shape(shape, p.dtype.kind == "c"))
    c = np.result_type(p.dtype, np.complex64).itemsize
    return p.P * (half * c * (p.C + k) + prod(shape) * p.dtype.itemsize * (k + p.C))


def _pair_bytes(p: Problem, shape: tuple[int, ...]) -> int:
    """Bytes one (item, filter) pair occupies in a work unit with FFT ``shape``: its
    product spectrum and its real inverse."""
    half = prod(half_shape(shape, p.dtype.kind == "c"))
    c = np.result_type(p.dtype, np.complex64).itemsize
    return p.P * (half * c + prod(shape) * p.dtype.itemsize)


def exact_method(p: Problem, device: str | None = None):
    """The method that computes what a transform would spread a NaN or Inf over (the
    plan's NaN/Inf policy, ``Plan._redo_nonfinite``: the filters holding one): direct."""
    return direct


def _flag_nonfinite(y: np.ndarray, first: int, nonfinite: set | None) -> None:
    """Add to ``nonfinite`` the items (numbered from ``first``) whose outputs in ``y``
    are not all finite: an FFT spreads a NaN or Inf (of the input, or of an overflow in
    a transform) over the whole item, so those items are redone (scaled, or exactly by
    the caller). The check runs on data still in cache, under the caller's
    ``np.errstate`` (the sum of large finite outputs may overflow)."""
    # a sum is NaN/Inf when an element is (or on overflow: then the exact test below
    # finds nothing), and unlike isfinite() it allocates no array of y's size
    if nonfinite is not None and not np.isfinite(y.sum()):
        bad = ~np.isfinite(y).reshape(y.shape[0], -1).all(axis=1)
        nonfinite.update((first + np.flatnonzero(bad)).tolist())


def compute(
    p: Problem,
    st: FFTState,
    xc: np.ndarray,
    k0: int,
    k1: int,
    out: np.ndarray | None = None,
    reduce=None,
    nonfinite: set | None = None,
) -> np.ndarray:
    """The block ``(b, k1 - k0, P, *O)`` for the canonical input chunk ``xc``, written
    into ``out`` when given. With ``reduce`` (a function of a ``(b', k', P, *O)``
    sub-block; only where :func:`fuses_reduce`, and with ``out`` the reduced block's
    destination) each work unit is reduced while it is in cache. Items whose results are
    not all finite although their inputs are (a transform overflowed) are computed again
    scaled (:func:`_redo_overflow`); the others (a NaN or Inf in ``x``) are added to the
    set ``nonfinite`` when given."""
    shifts = None if st.shifts is None else st.shifts[k0:k1]
    if shifts is not None and reduce is not None:
        # outputs of filters transformed divided by 2**a are multiplied back before the
        # reduce: the unreduced block is held (only for filters near the float's limit)
        out[...] = reduce(compute(p, st, xc, k0, k1, nonfinite=nonfinite))
        return out
    found: set[int] = set()
    block = _compute(p, st, xc, k0, k1, out, reduce, found)
    if found:
        _redo_overflow(p, st, xc, k0, k1, block, reduce, found)
        if nonfinite is not None:
            nonfinite.update(found)
    if shifts is not None:
        with np.errstate(over="ignore"):
            np.multiply(block, shifts.reshape(1, -1, *[1] * (block.ndim - 2)), out=block)
    return block


def _redo_overflow(
    p: Problem,
    st: FFTState,
    xc: np.ndarray,
    k0: int,
    k1: int,
    block: np.ndarray,
    reduce,
    found: set[int],
) -> None:
    """Compute again the items of ``found`` (indices into ``xc``) whose inputs are all
    finite: their results are not because a transform overflowed (float32 past 3.4e38:
    an item's spectrum reaches ``sum |x|``, its product with a filter's
    ``sum |x| * sum |w|``, while each output is a sum over one window only). Each is
    divided by ``2**e``, ``e`` chosen from a bound on every value its transforms reach
    (``max |x|`` times the item's size, times :attr:`FFTState.peak`, times the FFT size
    for an inverse normalised only at the end), transformed, and its outputs multiplied
    back by ``2**e``: exact scalings (save for values that become subnormal, far below
    the round-off), so the results are the FFT's usual ones. An item whose results are
    still not all finite (an output past the float's range, or the round-off of one: a
    sample no kept window covers, so large that ``eps`` times its products overflow) has
    its windows summed directly (``nonfinite.recompute_windows``): only outputs that do
    not fit the float are infinite. Those items leave ``found``; the rest (a NaN or Inf
    in ``x`` or in a constant padding value) stay, for the caller's exact redo.

    Integer inputs (computed in float64) cannot overflow: nothing to do."""
    if p.integer_inputs:
        return
    pad = p.padding == "constant" and p.cval != 0
    if pad and not np.isfinite(p.cval):
        return
    items = np.array(sorted(found), np.intp)
    x = xc[items].astype(p.dtype, copy=False)  # a copy (scaled in place below)
    flat = x.reshape(items.size, -1)
    finite = np.isfinite(flat).all(axis=1)
    found.difference_update(items[finite].tolist())  # nothing exact would do better
    tops = np.abs(flat).max(axis=1, initial=0.0).astype(np.float64)
    if pad:
        tops = np.maximum(tops, abs(p.cval))
    count = p.C * p.P * prod(max(g.padded, g.n) for g in p.geoms)
    with np.errstate(divide="ignore", invalid="ignore"):
        forward = np.log2(tops) + log2(max(count, 1))  # an item's spectrum
    # the product and (unnormalised until its end) the inverse transform
    inverse = forward + st.peak + log2(prod(st.fft_shape))
    need = np.fmax(forward, inverse) - log2_limit(p.dtype)
    exps = np.where(finite & (need > 0), np.ceil(np.where(need > 0, need, 0)), 0)
    exps = exps.astype(np.int64)
    per_item = (flat.shape[1] + (k1 - k0) * p.P * prod(p.O)) * p.dtype.itemsize
    step = max(1, REDO_BYTES // max(per_item, 1))  # overflowed items redone at once
    for e in np.unique(exps[exps > 0]).tolist():
        q = p if not pad else replace(p, cval=_ldexp(np.array(p.cval), -e)[()].item())
        where = np.flatnonzero(exps == e)
        for i in range(0, where.size, step):
            sel = where[i : i + step]
            with np.errstate(invalid="ignore", over="ignore"):
                y = _compute(q, st, _ldexp(x[sel], -e), k0, k1, None, None, set())
                _ldexp(y, e)
                still = np.flatnonzero(~np.isfinite(y.reshape(sel.size, -1)).all(axis=1))
                if still.size and st.filters is not None:
                    _sum_windows(p, st, x[sel[still]], y, still, k0, k1)
            block[items[sel]] = y if reduce is None else reduce(y)


def _sum_windows(
    p: Problem, st: FFTState, x: np.ndarray, y: np.ndarray, rows: np.ndarray, k0: int, k1: int
) -> None:
    """Overwrite ``y[rows]`` (its items ``x``) with every window summed directly, in the
    units of the spectra (outputs of filters divided by ``2**a`` divided too)."""
    exact = y[rows]
    every = np.ones((rows.size, p.P, *p.O), bool)
    recompute_windows(p, x, st.filters, exact, every, k0, k1)
    if st.shifts is not None:
        exact /= st.shifts[k0:k1].reshape(1, -1, *[1] * (exact.ndim - 2))  # powers of two
    y[rows] = exact


def _compute(
    p: Problem,
    st: FFTState,
    xc: np.ndarray,
    k0: int,
    k1: int,
    out: np.ndarray | None,
    reduce,
    nonfinite: set,
) -> np.ndarray:
    """:func:`compute` before the redo of overflowed items and the filters' factors:
    every item whose results are not all finite goes into ``nonfinite``."""
    if reduce is not None and (out is None or st.tiles is not None):
        raise ValueError("a fused reduce needs out= and whole-item transforms (see fuses_reduce)")
    b = xc.shape[0]
    crop, keep, no_data = whole_items(p)
    if st.implicit_zeros and no_data:
        # every window sees only zero padding: the exact answer, not FFT round-off
        zero = np.zeros((b, k1 - k0, p.P, *p.O), dtype=p.dtype)
        if out is None:
            return zero
        out[...] = zero if reduce is None else reduce(zero)
        return out
    block = np.empty((b, k1 - k0, p.P, *p.O), dtype=p.dtype) if out is None else out
    if b == 0 or k1 == k0:  # no items or no filters: nothing to compute
        return block
    workers = get_workers()
    if st.tiles is None:
        src = xc[crop] if st.implicit_zeros else pad_sliding(xc, p.geoms, p.padding, p.cval, 3)
        if k1 - k0 == 1:  # one filter: each group runs transform -> product -> inverse
            per_item = _per_item_bytes(p, st.fft_shape, 1)
            groups = _groups(b, per_item, 1, workers)
            inner = 1 if len(groups) > 1 else _fft_threads(per_item * b, workers)

            spectrum = st.spectrum[None, k0:k1]

            def run(sl: slice) -> None:
                x, dest = src[sl], block[sl]
                unit = _one_filter_unit(p, st, x.shape, dest.strides if reduce is None else None)
                if unit is not None:
                    y = unit.run(x, spectrum, inner, sl.start, nonfinite)
                else:
                    with np.errstate(invalid="ignore", over="ignore"):  # non-finite: redone
                        y = zero_untouched(
                            p,
                            _spectral(
                                p, st, x, k0, k1, keep, inner, dest if reduce is None else None
                            ),
                        )
                        _flag_nonfinite(y, sl.start, nonfinite)
                dest[...] = y if reduce is None else reduce(y)

            parallel_for(run, groups, workers)
            return block
        # a bank: every item transformed once, then (batch, bank) units of pairs
        X = np.empty(
            (b, p.C, p.P, *half_shape(st.fft_shape, st.is_complex)),
            np.result_type(p.dtype, np.complex64),
        )
        per_item = _per_item_bytes(p, st.fft_shape, 0)
        groups = _groups(b, per_item, 1, workers)
        inner = 1 if len(groups) > 1 else _fft_threads(per_item * b, workers)

        def forward(sl: slice) -> None:
            dest = X[sl]
            spectra = _forward(st, src[sl], inner, dest)
            if spectra is not dest:
                dest[...] = spectra

        parallel_for(forward, groups, workers)
        units = _pair_units(b, k1 - k0, _pair_bytes(p, st.fft_shape), workers)
        inner = 1 if len(units) > 1 else workers
        # channels: the whole block's products, in ranges of bins on the threads (tiny
        # per-bin matmuls cost per call, so splitting them by unit multiplies that
        # cost), then the units' inverses
        Y = None
        if p.C > 1:  # ... laid out (b, k, P, *Fh) so that each unit's slice is contiguous
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite: redone
                Y = _ordered_channel_product(st, X, k0, k1, workers)

        def pairs(unit) -> None:
            bs, ks = unit
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite: redone
                if Y is None:
                    y = _product_inverse(p, st, X[bs], k0 + ks.start, k0 + ks.stop, keep, inner)
                else:
                    y = _inverse(p, st, Y[bs, ks], keep, inner, True)
                y = zero_untouched(p, y)
                _flag_nonfinite(y, bs.start, nonfinite)
            block[bs, ks] = y if reduce is None else reduce(y)

        parallel_for(pairs, units, workers)
        return block
    # overlap-save: tile t of an axis makes outputs [t*T, min((t+1)*T, out)) and reads
    # source samples from (t*T)*stride - offset on, `offset` being the padding before x
    if st.implicit_zeros:
        src, offsets = xc, [g.lo for g in p.geoms]
    else:
        src, offsets = pad_sliding(xc, p.geoms, p.padding, p.cval, 3), [0] * p.ndim
    tile_ranges = [range(0, g.out, t) for g, t in zip(p.geoms, st.tiles, strict=True)]
    tiles = list(product(*tile_ranges))
    groups = _groups(b, _per_item_bytes(p, st.fft_shape, k1 - k0), len(tiles), workers)
    inner = 1 if len(groups) * len(tiles) > 1 else workers

    def run_tile(unit) -> None:
        sl, starts = unit
        buf = work_buffer(
            (sl.stop - sl.start, *src.shape[1:3], *st.fft_shape), p.dtype, "tile"
        )  # reused (no fresh pages per tile), zeroed: the padding
        buf[...] = 0
        out_sl, dst, srcsl, keep = [], [], [], []
        for g, t, i0, off, n_src in zip(
            p.geoms, st.tiles, starts, offsets, src.shape[3:], strict=True
        ):
            i1 = min(i0 + t, g.out)
            r0 = i0 * g.stride - off
            r1 = r0 + (i1 - i0 - 1) * g.stride + g.extent
            c0, c1 = max(r0, 0), min(r1, n_src)
            out_sl.append(slice(i0, i1))
            srcsl.append(slice(c0, max(c1, c0)))
            dst.append(slice(c0 - r0, c0 - r0 + max(c1 - c0, 0)))
            keep.append(slice(0, (i1 - i0 - 1) * g.stride + 1, g.stride))
        buf[(slice(None),) * 3 + tuple(dst)] = src[(sl, slice(None), slice(None), *srcsl)]
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite: redone
            y = _spectral(p, st, buf, k0, k1, tuple(keep), inner)
            _flag_nonfinite(y, sl.start, nonfinite)
        block[(sl, slice(None), slice(None), *out_sl)] = y

    parallel_for(run_tile, [(sl, s) for sl in groups for s in tiles], workers)
    return zero_untouched(p, block)


def bind(p: Problem, st: FFTState, xc: np.ndarray, out: np.ndarray):
    """A lean call ``run(xc, out, nonfinite)`` for repeated one-block calls on inputs and
    results laid out as ``xc`` and ``out`` (the plan's one-block shortcut), or None:
    one filter and a block small enough for one work unit on one thread, where
    :func:`compute` would run a single :class:`_OneFilterUnit` (its own set-up is a
    tenth of a call on 5 images of 100x100 against one 11x11 filter in a cold call)."""
    if p.K != 1 or st.tiles is not None or not st.implicit_zeros or st.shifts is not None:
        return None
    crop, _, no_data = whole_items(p)
    if no_data or xc.shape[0] * _per_item_bytes(p, st.fft_shape, 1) >= _PARALLEL_BYTES:
        return None
    x_shape = xc[crop].shape
    if _one_filter_unit(p, st, x_shape, out.strides) is None:
        return None
    spectrum = st.spectrum[None, 0:1]

    def run(xc: np.ndarray, out: np.ndarray, nonfinite: set | None) -> None:
        unit = _one_filter_unit(p, st, x_shape, out.strides)
        if unit is None:  # the FFT engine changed since: the general route
            compute(p, st, xc, 0, 1, out=out, nonfinite=nonfinite)
        else:
            found: set[int] = set()
            out[...] = unit.run(xc[crop], spectrum, 1, 0, found)
            if found:  # see compute
                _redo_overflow(p, st, xc, 0, 1, out, None, found)
                if nonfinite is not None:
                    nonfinite.update(found)

    return run


def fuses_reduce(p: Problem) -> bool:
    """True when :func:`compute` reduces unit by unit (whole items, not tiles), so the
    unreduced block is never held."""
    return tiling(p) is None


def workspace_bytes(p: Problem, b: int, k: int, budget: int | None = None) -> int:
    """Peak bytes of temporaries for one ``(b, k)`` block, not counting the block itself
    or the cached spectra (:func:`block_bytes`); at least those of :func:`prepare`
    (:func:`prepare_bytes`), so that the plan's estimated peak covers its making too."""
    return max(block_bytes(p, b, k)[0], prepare_bytes(p, budget))


def block_bytes(p: Problem, b: int, k: int) -> tuple[int, int]:
    """``(peak, held)``: the peak bytes of what :func:`compute` allocates for one
    ``(b, k)`` block beyond the block itself and the cached spectra, and the bytes of
    the work buffers (``xp.work_buffer``) it leaves with its threads (held while the
    caller goes on: a metric's combination, the next block).

    A padded copy of the chunk where the padding is not zeros. Whole items with one
    filter, and overlap-save tiles: the units in flight, one per thread (the largest of
    those :func:`_groups` makes; as many threads as units, at most :func:`get_workers`),
    each as :func:`_unit_bytes` counts it. Whole items with a bank: the items' spectra
    (written straight into place where the engine can), with channels their product
    with the filters for the whole block (laid out per pair, and on each thread a range
    of bins' temporaries: :func:`_product_bytes`), then the
    pair units in flight (:func:`_pair_units`): their product spectra (one channel) and
    real inverses in the threads' buffers. Work buffers stay with their thread, so each
    counts once at its largest, and from a thread's second unit or block on they are
    held through every stage."""
    eng = fft_engine()
    knobs = (*_knobs(), compiled.enabled(), _COMPILED_PRODUCTS)
    return _block_bytes(p, b, k, get_workers(), eng.name, eng.pocketfft is not None, knobs)


def _knobs() -> tuple:
    """The module's sizes that steer units and tiles (tests change them): part of the
    keys of the remembered estimates (with, for :func:`block_bytes`, whether numba is
    on: the compiled channel products need only a small scratch, the NumPy ones their
    temporaries)."""
    return _GROUP_BYTES, _PARALLEL_BYTES, _TILE_POINTS, _TILE_EXTENTS, KERNEL_CHUNK_BYTES


@problem_cache(maxsize=1024)
def _block_bytes(
    p: Problem, b: int, k: int, workers: int, engine: str, pf: bool, knobs: tuple
) -> tuple[int, int]:
    if b == 0 or k == 0:
        return 0, 0
    shape = fft_shape(p)
    r = p.dtype.itemsize
    c = np.result_type(p.dtype, np.complex64).itemsize
    half = prod(half_shape(shape, p.dtype.kind == "c"))
    implicit = implicit_zeros(p)
    pad = 0  # np.pad's copy where the padding is not zeros (before the trim)
    if not implicit and any(g.lo or g.hi > 0 for g in p.geoms):
        pad = b * p.C * p.P * prod(g.lo + g.n + max(g.hi, 0) for g in p.geoms) * r
    repeat = b < p.B or k < p.K  # more blocks: work buffers held from the last one
    tiles = tiling(p)
    if tiles is not None:  # overlap-save: a tile buffer per thread, then _spectral
        n_tiles = tile_count(p)
        g = _group_size(b, _per_item_bytes(p, shape, k), n_tiles, workers)
        sizes = _unit_sizes(b, g, n_tiles, workers)
        later = repeat or len(sizes) < -(-b // g) * n_tiles
        units = [
            _unit_bytes(p, shape, shape, n, k, tiles, False, engine, pf, prod(shape) * r)
            for n in sizes
        ]
        return pad + sum(u[later] for u in units), sum(u[2] for u in units)
    _, _, no_data = whole_items(p)
    fused = p.reduce is not None
    if implicit and no_data:  # the block of zeros (and its reduction)
        return b * k * p.P * prod(p.O) * r * (1 + fused), 0
    src = tuple(g.n + min(g.hi, 0) if implicit else g.padded for g in p.geoms)
    if k == 1:  # _OneFilterUnit or _spectral per group of items
        g = _group_size(b, _per_item_bytes(p, shape, 1), 1, workers)
        sizes = _unit_sizes(b, g, 1, workers)
        later = repeat or len(sizes) < -(-b // g)
        units = [_unit_bytes(p, shape, src, n, 1, p.O, fused, engine, pf) for n in sizes]
        return pad + sum(u[later] for u in units), sum(u[2] for u in units)
    # a bank: the items' spectra X, written straight into X where the engine can
    spectra = b * p.C * p.P * half * c
    forward = 0
    if not (pf and src == shape and p.dtype.kind != "c"):
        g = _group_size(b, _per_item_bytes(p, shape, 0), 1, workers)
        forward = sum(
            _forward_bytes(p, shape, src, n * p.C * p.P, engine)[0]
            for n in _unit_sizes(b, g, 1, workers)
        )
    counts: dict[int, int] = {}  # pairs per unit -> units
    for bs, ks in _pair_units(b, k, _pair_bytes(p, shape), workers):
        n = (bs.stop - bs.start) * (ks.stop - ks.start)
        counts[n] = counts.get(n, 0) + 1
    flight: list[int] = []  # the largest units, one per thread
    for n in sorted(counts, reverse=True):
        flight += [n] * min(counts[n], workers - len(flight))
    products = b * k * p.P * half * c
    product = ordered = slots = unit = 0
    if p.C > 1:  # _ordered_channel_product: the block's products, then on each thread a
        # range of bins' _products, or the compiled products' scratch; the last block
        # may have fewer items, and take another way: the largest of them counts
        pieces = min(half, 4 * workers)
        f = -(-half // pieces)
        piece = max(
            _compiled_scratch(n, p.C, k, c)
            if _compiled_products(n, p.C, k, p.K)
            else _product_bytes(n, p.C, k, p.P, f, c)
            for n in {b, min(b, 4), min(b, 3), min(b, 2), 1}
        )
        product = products + min(workers, pieces) * piece
        ordered = products
    for n in flight:
        pairs = n * p.P
        if p.C == 1:  # each unit's product spectra in its thread's "product" buffer
            slots += _slot(pairs * half * c)
        slot, fresh = _inverse_bytes(p, shape, pairs, p.O, engine, pf)
        slots += slot
        unit += fresh + pairs * prod(p.O) * r * (int(p.integer_inputs) + int(fused))
    kept = slots if repeat else 0
    peak = max(kept + forward, kept + product, ordered + slots + unit)
    return pad + spectra + peak, slots


def prepare_bytes(p: Problem, budget: int | None = None) -> int:
    """Peak bytes of :func:`prepare`'s temporaries beside the spectra: one group of
    filters placed in FFT-sized buffers, and its transform."""
    return _prepare_bytes(p, budget, fft_engine().name, _knobs())


@problem_cache(maxsize=256)
def _prepare_bytes(p: Problem, budget: int | None, engine: str, knobs: tuple) -> int:
    shape = fft_shape(p)
    c = np.result_type(p.dtype, np.complex64).itemsize
    per_filter = max(1, p.C * p.P * prod(shape) * c)
    step = min(p.K, max(1, filter_group_bytes(budget, KERNEL_CHUNK_BYTES) // per_filter))
    lead = step * p.C * p.P
    buffers = lead * prod(shape) * p.dtype.itemsize
    return buffers + _forward_bytes(p, shape, shape, lead, engine)[0]


def _unit_sizes(b: int, g: int, n_tiles: int, workers: int) -> list[int]:
    """Items per work unit for the units in flight (the largest, one per thread) of
    :func:`_groups` of ``g`` items, each times ``n_tiles`` tiles."""
    full, rest = b // g, b % g
    sizes = [g] * min(workers, full * n_tiles)
    return sizes + [rest] * min(workers - len(sizes), n_tiles if rest else 0)


def _slot(nbytes: int) -> int:
    """Bytes a thread's work buffer of ``nbytes`` occupies (``xp.work_buffer``: at least
    ``WORK_BUFFER_MIN``; past its limit a fresh array of that size, held just as long)."""
    return max(nbytes, WORK_BUFFER_MIN)


def _forward_bytes(p: Problem, shape: tuple, src: tuple, lead: int, engine: str) -> tuple[int, int]:
    """``(peak, result)``: fresh bytes of :func:`_forward` on ``lead`` rows (items x
    channels x pairs) of ``src`` samples each, transformed to ``shape`` by the engine's
    own functions (not into a given buffer). SciPy: zero padding copies the input, the
    other axes are transformed in place (or in a padded copy). NumPy: every axis'
    transform is a new array, and its forward transforms of single precision data run
    in double precision (the input and the result copied: NumPy 2.4)."""
    numpy_engine = engine != "scipy"
    r = p.dtype.itemsize
    c = np.result_type(p.dtype, np.complex64).itemsize
    single = numpy_engine and c == 8  # float32, complex64

    def call(inp: int, out: int) -> int:  # one transform: its result, and NumPy's copies
        return out + (2 * inp + 2 * out if single else 0)

    d = len(shape)
    if p.dtype.kind == "c":
        full = lead * prod(shape) * c
        if not numpy_engine:  # a padded copy transformed in place, or a new array
            return full, full
        return (full if d > 1 else 0) + call(full, full), full
    ra = real_axis(shape)
    others = prod(n for i, n in enumerate(src) if i != ra)
    first = lead * others * (shape[ra] // 2 + 1) * c  # the real axis' transform
    if numpy_engine:
        peak = call(lead * prod(src) * r, first)
    else:
        peak = first + (lead * others * shape[ra] * r if src[ra] < shape[ra] else 0)
    if d == 1:
        return peak, first
    whole = lead * prod(half_shape(shape, False)) * c
    if numpy_engine:  # the other axes one at a time (fftn: the one before alive)
        return max(peak, first + (whole if d > 2 else 0) + call(whole, whole)), whole
    if any(src[i] < n for i, n in enumerate(shape) if i != ra):  # a padded copy
        return max(peak, first + whole), whole
    return peak, first  # transformed in place


def _inverse_bytes(
    p: Problem, shape: tuple, pairs: int, kept: tuple, engine: str, pf: bool
) -> tuple[int, int]:
    """``(slot, fresh)`` of the inverse transform of ``pairs`` (items x filters x pairs)
    product spectra keeping ``kept`` outputs per axis: the real inverse's work buffer
    (the kept rows of the other axes, the real axis whole), and what the engine
    allocates beside it where it cannot transform in place (NumPy: a new array per
    axis, the one before alive; SciPy without its pocketfft functions: the real inverse
    along a strided axis)."""
    d = len(shape)
    spectra = pairs * prod(half_shape(shape, p.dtype.kind == "c"))
    spectra *= np.result_type(p.dtype, np.complex64).itemsize
    if p.dtype.kind == "c":
        return 0, 0 if engine == "scipy" else spectra * min(d, 2)
    ra = real_axis(shape)
    rows = pairs * prod(n for i, n in enumerate(kept) if i != ra) * shape[ra]
    rows *= p.dtype.itemsize
    if engine != "scipy":
        fresh = spectra * min(d - 1, 2)
    else:
        fresh = 0 if pf else rows
    return _slot(rows), fresh


def _unit_bytes(
    p: Problem,
    shape: tuple,
    src: tuple,
    g: int,
    k: int,
    kept: tuple,
    fused: bool,
    engine: str,
    pf: bool,
    tile: int = 0,
) -> tuple[int, int, int]:
    """``(first, later, slots)``: peak bytes of a thread's first :func:`_spectral` (or
    :class:`_OneFilterUnit`) unit, of a later one, which finds the thread's work buffers
    held, and of those buffers. A unit: ``g`` items of ``src`` samples per axis against
    ``k`` filters, keeping ``kept`` outputs per axis; ``tile``: the bytes per item,
    channel and pair of its overlap-save tile buffer (0: whole items).

    Work buffers: the tile, the items' spectra (where the engine writes them there), the
    product spectra (a bank of one channel), the real inverse's. Fresh arrays: the
    spectra where the engine cannot write them into the buffer, with channels the
    spectra reordered and their product with the filters, the rounded outputs of
    integer inputs and with ``fused`` the reduce's copy of the outputs."""
    c = np.result_type(p.dtype, np.complex64).itemsize
    half = prod(half_shape(shape, p.dtype.kind == "c"))
    lead, pairs = g * p.C * p.P, g * k * p.P
    held = _slot(lead * tile) if tile else 0
    if pf and src == shape and p.dtype.kind != "c":
        held, forward, X = held + _slot(lead * half * c), 0, 0
    else:
        forward, X = _forward_bytes(p, shape, src, lead, engine)
    products = pairs * half * c
    product = multiplied = Y = 0
    if p.C > 1:  # _channel_product: its _products, then the result
        multiplied, Y = _product_bytes(g, p.C, k, p.P, half, c), products
    elif k > 1:  # into the "product" buffer (one filter: multiplied in place)
        product = _slot(products)
    inverse_slot, inverse = _inverse_bytes(p, shape, pairs, kept, engine, pf)
    after = pairs * prod(kept) * p.dtype.itemsize * (int(p.integer_inputs) + int(fused))
    first = max(
        held + forward,
        held + product + X + multiplied,
        held + product + inverse_slot + X + Y + inverse + after,
    )
    slots = held + product + inverse_slot
    later = slots + max(forward, X + multiplied, X + Y + inverse + after)
    return first, later, slots


def spectrum_bytes(p: Problem) -> int:
    """Bytes of the cached filter spectra."""
    shape = fft_shape(p)
    c = np.result_type(p.dtype, np.complex64).itemsize
    return p.K * p.C * p.P * prod(half_shape(shape, p.dtype.kind == "c")) * c


def applies(p: Problem, device: str | None = None) -> str | None:
    """Every problem of the metrics it computes (None; see ``COMPUTES_SAD``)."""
    return None


def state_bytes(p: Problem) -> int:
    """The filters' spectra."""
    return spectrum_bytes(p)


def cost_parts(p: Problem, shape: tuple[int, ...], tiles: int) -> dict[str, float]:
    """The work of a call with FFTs of ``shape``, ``tiles`` per item (shared with
    ``torch_fft``): the items' and the pairs' transforms, and the filters' own (made
    once per plan: a one-shot correlate pays them, and with many channels and filters
    they dominate, e.g. a 7x7 32->32 layer on 4 images: 1024 filter transforms against
    256 others), and the products."""
    n = prod(shape)
    transforms = (p.B * p.C + p.B * p.K) * p.P * tiles + p.K * p.C * p.P
    half = n if p.dtype.kind == "c" else n / 2
    c = np.result_type(p.dtype, np.complex64).itemsize  # a spectral value's bytes
    products = 8.0 * half * p.B * p.K * p.C * p.P * tiles
    spectra = float(half * p.P * p.C * p.K * c)  # the filters' spectra, in bytes
    return {
        "fft_flops": 2.5 * n * log2(max(n, 2)) * transforms,
        # 1-D lines transformed: short axes cost more per point than flops say
        "fft_lines": float(transforms * sum(n // f for f in shape)),
        "product_flops": products if p.C == 1 else 0.0,
        "channel_flops": products if p.C > 1 else 0.0,  # batched matmul per bin
        "tile_items": float(p.B * p.C * p.P * tiles) if tiles > 1 else 0.0,
        # bytes through memory, one pass per axis: large 3-D transforms are
        # bandwidth-bound on their strided axes
        "fft_pass_bytes": float(transforms * half * c * len(shape)),
        # the filters' spectra, read by the products once a call: with few items each
        # bin's (C, K) matrix serves few rows (4 x 32x32 128->64 5x5: 45 MB a call).
        # Overlap-save tiles read them again per tile, not counted: counting it fitted
        # no better (geometric error 1.344 / 1.267 against 1.344 / 1.258, random / layers)
        "spectrum_bytes": spectra,
        # the plan's preparation writes them once: zeroed buffers, the transforms' output,
        # conjugation and the copy into the products' layout (filter_features)
        "filter_spectrum_bytes": spectra,
    }


def filter_features(p: Problem, shape: tuple[int, ...]) -> dict[str, float]:
    """The features of :func:`cost_parts`'s filter transforms alone (``K * C * P`` of
    them, made once per plan): what a plan called again does not pay (shared with
    ``torch_fft``)."""
    n = prod(shape)
    transforms = p.K * p.C * p.P
    half = n if p.dtype.kind == "c" else n / 2
    c = np.result_type(p.dtype, np.complex64).itemsize
    return {
        f"fft_flops_{p.precision}": 2.5 * n * log2(max(n, 2)) * transforms,
        "fft_lines": float(transforms * sum(n // f for f in shape)),
        "fft_pass_bytes": float(transforms * half * c * len(shape)),
        "filter_spectrum_bytes": float(transforms * half * c),
    }


def parts_flops(f: dict[str, float]) -> float:
    """Floating-point operations of :func:`cost_parts`."""
    return f["fft_flops"] + f["product_flops"] + f["channel_flops"]


def parts_features(p: Problem, f: dict[str, float]) -> dict[str, float]:
    """The cost model's features from :func:`cost_parts`."""
    prec = p.precision
    return {
        "calls": 1.0,
        f"fft_flops_{prec}": f["fft_flops"],
        "fft_lines": f["fft_lines"],
        "product_flops": f["product_flops"],
        "channel_flops": f["channel_flops"],
        "tile_items": f["tile_items"],
        "fft_pass_bytes": f["fft_pass_bytes"],
        "spectrum_bytes": f["spectrum_bytes"],
        "filter_spectrum_bytes": f["filter_spectrum_bytes"],
        "out_bytes": float(p.B * p.K * p.P * prod(p.O) * p.dtype.itemsize),
    }


def flops(p: Problem) -> float:
    """Transforms of the items and of every pair's product, and the products."""
    return parts_flops(cost_parts(p, fft_shape(p), tile_count(p)))


def cost_features(p: Problem, device: str | None = None) -> tuple[str, dict[str, float]]:
    """The ``"fft"`` cost model and its features."""
    return "fft", parts_features(p, cost_parts(p, fft_shape(p), tile_count(p)))


def prepare_features(p: Problem, device: str | None = None) -> tuple[str, dict[str, float]]:
    """The part of :func:`cost_features` a plan pays once: its filters' transforms."""
    return "fft", filter_features(p, fft_shape(p))


def describe(p: Problem, st: FFTState, budget: int | None, device: str | None = None) -> str:
    """The transforms' sizes and engine, and whether items are tiled."""
    tiles = tiling(p)
    layout = (
        "whole items"
        if tiles is None
        else f"overlap-save tiles of {tiles} outputs, {tile_count(p)} per item"
    )
    return f"fft sizes {fft_shape(p)} on {fft_engine().name}.fft, {layout}"
