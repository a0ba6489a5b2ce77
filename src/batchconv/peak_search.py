"""The search behind ``reduce=bc.peaks(...)`` (``peak_reduce.py`` describes the rule):
:func:`search` reduces a block of maps to their packed peaks, a few maps at a time on
the worker threads; :func:`find_peaks` finds them, by a compiled pass per map (2-D maps
with a threshold, numba installed) or in NumPy.
"""

from __future__ import annotations

from itertools import product
from math import prod

import numpy as np

from . import compiled
from .peak_reduce import _GROUP_BYTES, Peaks
from .xp import parallel_for

__all__ = ["find_peaks", "search"]


def search(peaks: Peaks, block: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``block`` reduced over ``axes`` by ``peaks`` to the packed float64 ``(*kept, k,
    1 + n)``: each peak's score then its coordinates (see ``peak_reduce.unpack``)."""
    keep = [i for i in range(block.ndim) if i not in axes]
    maps = np.moveaxis(block, keep, range(len(keep)))
    lead = maps.shape[: len(keep)]
    flat = maps.reshape(prod(lead), *maps.shape[len(keep) :])
    packed = np.empty((flat.shape[0], peaks.k, 1 + len(axes)))
    # a few maps at a time, the groups on the worker threads: each group's
    # temporaries stay near _GROUP_BYTES
    step = max(1, _GROUP_BYTES // max(8 * prod(flat.shape[1:]), 1))

    def search(i: int) -> None:
        scores, coords = find_peaks(
            flat[i : i + step], peaks.k, peaks.min_distance, peaks.threshold, peaks.lowest
        )
        packed[i : i + step, :, 0] = scores
        packed[i : i + step, :, 1:] = coords

    parallel_for(search, range(0, flat.shape[0], step))
    return packed.reshape(*lead, *packed.shape[1:])


def find_peaks(
    maps: np.ndarray,
    k: int,
    min_distance: int = 1,
    threshold: float | None = None,
    lowest: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, coords)`` of the ``k`` best peaks of each map ``maps[i]`` (any number
    of axes after the first): scores ``(M, k)`` float64 (NaN where fewer), coords
    ``(M, k, n)`` ``intp`` (-1 where fewer). ``lowest``: the best is the lowest.

    >>> m = np.array([[0.0, 2, 0, 1, 0]])
    >>> find_peaks(m, 3)
    (array([[ 2.,  1., nan]]), array([[[ 1],
            [ 3],
            [-1]]]))
    """
    maps = np.asarray(maps)
    if threshold is not None:  # compared in the maps' precision, as peak_local_max does
        # (a float32 map against 7e-113: against 0.0)
        threshold = float(np.result_type(maps.dtype, np.float32).type(threshold))
    n_maps, shape = maps.shape[0], maps.shape[1:]
    scores = np.full((n_maps, k), np.nan)
    coords = np.full((n_maps, k, len(shape)), -1, np.intp)
    if maps.size == 0:
        return scores, coords
    values = maps.reshape(n_maps, -1)
    if _compiled_search(maps, threshold, min_distance):  # one pass per map, no copies
        found = [
            compiled.kernels().local_maxima_2d(
                m, lowest, -threshold if lowest else threshold, min_distance
            )
            for m in maps
        ]
        sizes = [f.size for f in found]
        mi = np.repeat(np.arange(n_maps), sizes)
        fi = np.concatenate(found) if found else np.zeros(0, np.intp)
    else:
        mi, fi = _candidates(maps, min_distance, threshold, lowest)
    sign = -1.0 if lowest else 1.0
    bounds = np.searchsorted(mi, np.arange(n_maps + 1))
    for i in np.flatnonzero(np.diff(bounds)):
        cand = fi[bounds[i] : bounds[i + 1]]
        found = _best(sign * values[i, cand], cand, k, min_distance, shape)
        if found.size:
            n = found.size
            scores[i, :n] = values[i, found]
            coords[i, :n] = np.stack(np.unravel_index(found, shape), axis=-1)
    return scores, coords


def _compiled_search(maps: np.ndarray, threshold: float | None, d: int) -> bool:
    """Whether the compiled search applies: numba on, 2-D float32/float64 maps in C
    order, a threshold (else the floor is each map's minimum) and a distance."""
    return (
        threshold is not None
        and d > 0
        and maps.ndim == 3
        and maps.dtype in (np.float32, np.float64)
        and maps.flags.c_contiguous
        and compiled.enabled()
    )


def _candidates(maps: np.ndarray, min_distance: int, threshold, lowest: bool):
    """``(map, flat index)`` of every sample beyond the threshold (the map's minimum
    without one) that is the largest of its box (best: the highest, or the lowest when
    ``lowest``), in NumPy: a few passes over a float copy of the maps."""
    n_maps, shape = maps.shape[0], maps.shape[1:]
    a = maps.astype(np.result_type(maps.dtype, np.float32))  # (float32 stays float32)
    if lowest:
        np.negative(a, out=a)
    a[np.isnan(a)] = -np.inf  # never a peak, the lowest for its neighbours
    flat = a.reshape(n_maps, -1)
    if threshold is None:
        floor = flat.min(axis=1)  # peak_local_max's default: the map's smallest value
    else:
        floor = np.full(n_maps, -threshold if lowest else threshold)
    mi, fi = np.nonzero(flat > floor[:, None])  # (by map, then index)
    size = flat.shape[1]
    if min_distance > 0 and size > 1 and mi.size:
        # a sample equal to the largest of its box; a constant map (every sample such)
        # has none
        some = np.unique(mi)  # the maps with samples beyond the threshold
        sub = flat if some.size == n_maps else flat[some]
        constant = np.zeros(n_maps, bool)
        constant[some] = sub.min(axis=1) == sub.max(axis=1)
        box = (2 * min_distance + 1) ** len(shape)
        if mi.size * box <= 4 * sub.size:  # few beyond the threshold: their boxes
            top = _box_max_at(a, (mi, fi), min_distance, shape)
        else:
            top = _box_max(sub.reshape(some.size, *shape), min_distance)
            top = top.reshape(some.size, -1)[np.searchsorted(some, mi), fi]
        keep = (flat[mi, fi] == top) & ~constant[mi]
        mi, fi = mi[keep], fi[keep]
    return mi, fi


def _box_max_at(a: np.ndarray, where: tuple, d: int, shape) -> np.ndarray:
    """The largest value within Chebyshev distance ``d`` of the samples ``where`` (map,
    flat index) of the maps ``a``, the box clipped to the map (as repeating its edge
    values does)."""
    pos = np.unravel_index(where[1], shape)
    top = np.full(where[0].size, -np.inf, a.dtype)
    for offset in product(range(-d, d + 1), repeat=len(shape)):
        at = tuple(np.clip(p + o, 0, n - 1) for p, o, n in zip(pos, offset, shape, strict=True))
        np.maximum(top, a[(where[0], *at)], out=top)
    return top


def _box_max(a: np.ndarray, d: int) -> np.ndarray:
    """The largest value within Chebyshev distance ``d`` of each sample of each map
    ``a[i]`` (edge values repeated past the map: ``mode='nearest'``), one axis at a
    time: ``2 d`` shifted maxima in place for a small ``d``, else a running maximum by
    doubling (``log2(2 d + 1)`` passes over a padded copy)."""
    for axis in range(1, a.ndim):
        a = _axis_max_shifted(a, axis, d) if d <= 3 else _axis_max_doubled(a, axis, d)
    return a


def _axis_max_shifted(a: np.ndarray, axis: int, d: int) -> np.ndarray:
    out = a.copy()
    n = a.shape[axis]
    for s in range(1, min(d, n - 1) + 1):
        right, left = _take(out, axis, s, n), _take(out, axis, 0, n - s)
        np.maximum(right, _take(a, axis, 0, n - s), out=right)
        np.maximum(left, _take(a, axis, s, n), out=left)
    return out


def _axis_max_doubled(a: np.ndarray, axis: int, d: int) -> np.ndarray:
    width = 2 * d + 1
    pad = [(0, 0)] * a.ndim
    pad[axis] = (d, d)
    run = np.pad(a, pad, mode="edge")
    n = a.shape[axis]
    span = 1
    while 2 * span <= width:  # run[i]: the max of span samples from i
        shift = _take(run, axis, span, run.shape[axis])
        run = np.maximum(_take(run, axis, 0, run.shape[axis] - span), shift)
        span *= 2
    # two overlapping runs of ``span`` cover the window of ``width``
    return np.maximum(_take(run, axis, 0, n), _take(run, axis, width - span, width - span + n))


def _take(a: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    sl = [slice(None)] * a.ndim
    sl[axis] = slice(start, stop)
    return a[tuple(sl)]


def _best(v: np.ndarray, where: np.ndarray, k: int, d: int, shape) -> np.ndarray:
    """The flat indices of the ``k`` best candidates ``where`` (ascending) of one map,
    ``v`` their values (the higher the better), best first, ties in index order, for
    ``d > 1`` skipping any closer than ``d`` (Chebyshev) to one taken. Sorts only the
    best ``8 k`` candidates (and every one tied with the last of them), more only when
    spacing skipped some."""
    m = 8 * k
    while True:
        if m < where.size:
            part = np.argpartition(-v, m - 1)[:m]
            sel = np.flatnonzero(v >= v[part].min())  # (the boundary's ties too, in order)
        else:
            sel = np.arange(where.size)
        sel = sel[np.argsort(-v[sel], kind="stable")]
        order = where[sel]
        if d <= 1:
            return order[:k]
        taken: list[int] = []
        pos = np.stack(np.unravel_index(order, shape), axis=-1)
        for j in range(order.size):
            if taken and (np.abs(pos[taken] - pos[j]).max(axis=1) < d).any():
                continue
            taken.append(j)
            if len(taken) == k:
                break
        if len(taken) == k or sel.size == where.size:
            return order[taken]
        m *= 4
