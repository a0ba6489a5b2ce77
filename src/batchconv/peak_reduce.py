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
from typing import Any, NamedTuple

import numpy as np

from .xp import get_workers

__all__ = ["PeakResult", "Peaks", "peaks", "unpack"]

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

    def workspace_bytes(self, maps: int, map_size: int) -> int:
        """Peak temporaries of ``peak_search.search`` on ``maps`` maps of ``map_size`` samples:
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
