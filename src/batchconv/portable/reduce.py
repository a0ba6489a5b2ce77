"""Fused reductions on array-API blocks: ``reduce.apply_reduce``'s names and rules with
the standard's functions (NaN propagates through max/min and is the extreme for
argmax/argmin, the first occurrence wins, as in NumPy); a callable gets the block.

>>> import numpy as np
>>> xps = __import__("pytest").importorskip("array_api_strict")
>>> block = xps.reshape(xps.arange(12.0), (1, 1, 1, 3, 4))
>>> np.from_dlpack(apply_reduce(xps, "argmax", block, (3, 4)))
array([[[[2, 3]]]])
"""

from __future__ import annotations

from math import prod

from ..reduce import check_reduced

__all__ = ["apply_reduce"]


def _arg(xp, block, axes: tuple[int, ...], find_max: bool, index_dtype):
    keep = [i for i in range(block.ndim) if i not in axes]
    moved = xp.permute_dims(block, (*keep, *axes))
    lead = tuple(moved.shape[: len(keep)])
    flat = xp.reshape(moved, (*lead, -1))
    idx = xp.argmax(flat, axis=-1) if find_max else xp.argmin(flat, axis=-1)
    if xp.isdtype(flat.dtype, "real floating"):  # a NaN is the extreme, the first one wins
        nan = xp.isnan(flat)
        first_nan = xp.argmax(xp.astype(nan, xp.int8), axis=-1)
        idx = xp.where(xp.any(nan, axis=-1), first_nan, idx)
    idx = xp.astype(idx, index_dtype)
    sizes = [block.shape[a] for a in axes]
    coords = [(idx // prod(sizes[i + 1 :])) % n for i, n in enumerate(sizes)]
    return xp.stack(coords, axis=-1)


_NAMED = {
    "sum": lambda xp, block, axes, _: xp.sum(block, axis=axes),
    "mean": lambda xp, block, axes, _: xp.mean(block, axis=axes),
    "max": lambda xp, block, axes, _: xp.max(block, axis=axes),
    "min": lambda xp, block, axes, _: xp.min(block, axis=axes),
    "argmax": lambda xp, block, axes, dt: _arg(xp, block, axes, True, dt),
    "argmin": lambda xp, block, axes, dt: _arg(xp, block, axes, False, dt),
}


def apply_reduce(xp, reduce, block, axes: tuple[int, ...], index_dtype=None):
    """``block`` reduced over ``axes`` by ``reduce`` (a name or a callable
    ``f(block, axis=tuple)``); argmax/argmin give the coordinates along ``axes`` as a
    trailing axis, in ``index_dtype`` (default: the namespace's int64)."""
    if reduce is None:
        return block
    if callable(reduce):
        return check_reduced(reduce(block, axis=axes), block, axes)
    return _NAMED[reduce](xp, block, axes, index_dtype or xp.int64)
