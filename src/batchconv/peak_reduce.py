"""Peaks as a fused reduction: ``reduce=bc.peaks(k, min_distance, threshold)`` keeps, for
each map over the reduced sliding axes, its ``k`` best local extrema, so that the maps of
a whole bank are never held (only one block's, as for ``reduce="max"``).

The rule is scikit-image's ``peak_local_max(map, min_distance=d, threshold_abs=t,
num_peaks=k, exclude_border=False)``, on the map as it is for the metrics where higher is
better (dot, ncc, cosine) and on its negation where lower is (ssd, sad):

- a candidate is a sample equal to the largest value within Chebyshev distance ``d``
  (a box of ``2 d + 1`` samples per axis, the map's edge values repeated past it) and
  greater than the threshold (the map's smallest value when None); a constant map of
  more than one sample has no peak;
- candidates are taken best first; equal values in the order of the flattened map
  (the first sample first: the tie rule); for ``d > 1`` a candidate closer than ``d``
  (Chebyshev) to one already taken is skipped, so plateaus give one peak per ``d``;
- NaN is never a peak, and counts as the lowest value for its neighbours.

A map with fewer than ``k`` peaks gets NaN scores and -1 coordinates in the rest.

>>> import numpy as np, batchconv as bc
>>> x = np.array([[0, 3, 0, 0, 5, 0, 1, 0.0]])
>>> r = bc.correlate(x, np.ones((1, 1)), "ns,ks->nk|s", reduce=bc.peaks(2))
>>> r.scores.tolist(), r.coords.tolist()
([[[5.0, 3.0]]], [[[[4], [1]]]])
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import prod
from typing import Any, NamedTuple

import numpy as np

from . import compiled
from .xp import get_workers, parallel_for

__all__ = ["PeakResult", "Peaks", "find_peaks", "peaks", "unpack"]

_GROUP_BYTES = 16 << 20  # the maps searched together (their float64 copy)


class PeakResult(NamedTuple):
    """What ``reduce=bc.peaks(k, ...)`` gives: ``scores`` ``(..., k)`` (the metric's
    values at the peaks, best first; NaN where a map has fewer than ``k``) and
    ``coords`` ``(..., k, n)`` (each peak's position along the ``n`` reduced sliding
    axes, in the spec's order; -1 where there is none). Arrays of the input's kind
    (NumPy arrays, torch tensors or array-API arrays on the input's device, or lazy Dask
    arrays)."""

    scores: Any
    coords: Any


@dataclass(frozen=True)
class Peaks:
    """The ``reduce=`` object of :func:`peaks` (see the module)."""

    k: int
    min_distance: int = 1
    threshold: float | None = None
    # set by the problem from the metric: lowest is best (ssd, sad)
    lowest: bool = False

    def __repr__(self) -> str:
        best = "lowest" if self.lowest else "highest"
        return (
            f"bc.peaks({self.k}, min_distance={self.min_distance}, "
            f"threshold={self.threshold}; the {best} first)"
        )

    def tail(self, n_reduced: int) -> tuple[int, int]:
        """The trailing axes of the packed result: per peak its score and coordinates."""
        return (self.k, 1 + n_reduced)

    def apply(self, block: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        """``block`` reduced over ``axes`` to the packed float64 ``(*kept, k, 1 + n)``:
        each peak's score then its coordinates (see :meth:`unpack`)."""
        keep = [i for i in range(block.ndim) if i not in axes]
        maps = np.moveaxis(block, keep, range(len(keep)))
        lead = maps.shape[: len(keep)]
        flat = maps.reshape(prod(lead), *maps.shape[len(keep) :])
        packed = np.empty((flat.shape[0], self.k, 1 + len(axes)))
        # a few maps at a time, the groups on the worker threads: each group's
        # temporaries stay near _GROUP_BYTES
        step = max(1, _GROUP_BYTES // max(8 * prod(flat.shape[1:]), 1))

        def search(i: int) -> None:
            scores, coords = find_peaks(
                flat[i : i + step], self.k, self.min_distance, self.threshold, self.lowest
            )
            packed[i : i + step, :, 0] = scores
            packed[i : i + step, :, 1:] = coords

        parallel_for(search, range(0, flat.shape[0], step))
        return packed.reshape(*lead, *packed.shape[1:])

    def workspace_bytes(self, maps: int, map_size: int) -> int:
        """Peak temporaries of :meth:`apply` on ``maps`` maps of ``map_size`` samples:
        per thread, a group's copy, its running maxima and masks."""
        group = min(maps, max(1, _GROUP_BYTES // max(8 * map_size, 1)))
        threads = min(get_workers(), -(-maps // group))
        return threads * group * map_size * (8 * 3 + 2)


def unpack(reduce, y, dtype: np.dtype):
    """The call's result ``y`` (a NumPy array, a torch tensor or a Dask array) as the
    user gets it: for ``reduce=peaks(...)`` the :class:`PeakResult` of the packed array
    (scores in ``dtype``, coordinates as ``intp``/int64, in ``y``'s library and on its
    device); else ``y`` itself. (The portable engine unpacks its own arrays with its
    backend's dtypes: ``portable/blocks.finish_peaks``.)"""
    if not isinstance(reduce, Peaks):
        return y
    scores, coords = y[..., 0], y[..., 1:]
    if hasattr(y, "detach"):  # torch
        import torch

        return PeakResult(scores.to(getattr(torch, dtype.name)), coords.to(torch.int64))
    return PeakResult(scores.astype(dtype), coords.astype(np.intp))  # (Dask: lazily)


def peaks(k: int, min_distance: int = 1, threshold: float | None = None) -> Peaks:
    """``reduce=`` for the ``k`` best local extrema of each map, at least
    ``min_distance`` apart (Chebyshev), beyond ``threshold`` (above it for dot, ncc and
    cosine; below it for ssd and sad): scikit-image's ``peak_local_max`` rule, computed
    block by block (see :mod:`batchconv.peak_reduce`). The call then returns a
    :class:`PeakResult` ``(scores, coords)``.

    >>> import numpy as np, batchconv as bc
    >>> x = np.zeros((1, 20, 20)); x[0, 5, 5] = 1; x[0, 12, 15] = 3; x[0, 13, 15] = 2
    >>> r = bc.correlate(x, np.ones((1, 1, 1)), "nhw,khw->nk|hw", reduce=bc.peaks(3, 2))
    >>> r.coords[0, 0].tolist(), r.scores[0, 0].tolist()
    ([[12, 15], [5, 5], [-1, -1]], [3.0, 1.0, nan])
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"peaks: k must be a positive integer, got {k!r}")
    if (
        isinstance(min_distance, bool)
        or not isinstance(min_distance, (int, np.integer))
        or min_distance < 0
    ):
        raise ValueError(
            f"peaks: min_distance must be a non-negative integer, got {min_distance!r}"
        )
    if threshold is not None:
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise ValueError(
                f"peaks: threshold must be a number or None, got {threshold!r}"
            ) from None
        if np.isnan(threshold):
            raise ValueError("peaks: threshold is NaN")
    return Peaks(int(k), int(min_distance), threshold)


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
