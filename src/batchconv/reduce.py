"""Fused reductions over the reduced sliding axes, applied to one block at a time, for
every array library: one dispatch, written against the array-API standard's functions
(``xp``: NumPy itself, ``array_api_compat.torch`` for torch tensors, the portable
engine's namespace for JAX and the others).

A block is ``(b, k, P, *O)``; ``axes`` are the positions of the reduced sliding axes in
it. Because chunks split only batch and bank axes, each block holds every window of its
pairs, so reducing block by block gives the final answer while the unreduced result is
never held whole. The rules are NumPy's everywhere: NaN propagates through max/min and
is the extreme for argmax/argmin, and the first occurrence wins; argmax/argmin give the
reduced axes' coordinates as a trailing axis.

>>> import numpy as np
>>> block = np.arange(12.0).reshape(1, 1, 1, 3, 4)
>>> apply_reduce("argmax", block, (3, 4))
array([[[[2, 3]]]])
"""

from __future__ import annotations

from math import prod

import numpy as np

from .peak_reduce import Peaks
from .peak_search import search
from .xp import user_callback

__all__ = ["apply_reduce", "check_reduced"]


def _arg(xp, block, axes: tuple[int, ...], find_max: bool, index_dtype):
    keep = [i for i in range(block.ndim) if i not in axes]
    moved = xp.permute_dims(block, (*keep, *axes))
    flat = xp.reshape(moved, (*moved.shape[: len(keep)], -1))
    idx = xp.argmax(flat, axis=-1) if find_max else xp.argmin(flat, axis=-1)
    # a NaN is the extreme and the first one wins (NumPy's own argmax/argmin do so; the
    # standard leaves it open), asked unconditionally: asking would wait for a GPU
    if xp is not np and xp.isdtype(flat.dtype, "real floating"):
        nan = xp.isnan(flat)
        first_nan = xp.argmax(xp.astype(nan, xp.int8), axis=-1)
        idx = xp.where(xp.any(nan, axis=-1), first_nan, idx)
    sizes = tuple(block.shape[a] for a in axes)
    unravel = getattr(xp, "unravel_index", None)  # (NumPy, torch, JAX; not the standard)
    if unravel is not None:
        return xp.astype(xp.stack(unravel(idx, sizes), axis=-1), index_dtype, copy=False)
    idx = xp.astype(idx, index_dtype)
    coords = [(idx // prod(sizes[i + 1 :])) % n for i, n in enumerate(sizes)]
    return xp.stack(coords, axis=-1)


def _mean(xp, block, axes: tuple[int, ...], _):
    # the sum divided by the count, as NumPy's mean does: a correctly rounded quotient,
    # so that the mean of integer inputs' exact sums is exact to the last bit (JAX's
    # mean multiplies by 1 / n; the portable engine divides outside the compiled code,
    # portable/blocks.finish_mean)
    return xp.sum(block, axis=axes) / prod(block.shape[a] for a in axes)


_NDARRAY_METHODS = frozenset({"sum", "max", "min"})  # the same functions as xp's
_NAMED = {
    "sum": lambda xp, block, axes, _: xp.sum(block, axis=axes),
    "mean": _mean,
    "max": lambda xp, block, axes, _: xp.max(block, axis=axes),
    "min": lambda xp, block, axes, _: xp.min(block, axis=axes),
    "argmax": lambda xp, block, axes, dt: _arg(xp, block, axes, True, dt),
    "argmin": lambda xp, block, axes, dt: _arg(xp, block, axes, False, dt),
}


def apply_reduce(reduce, block, axes: tuple[int, ...], xp=np, index_dtype=None):
    """``block`` (an array of the namespace ``xp``) reduced over ``axes`` by ``reduce``:
    a name from ``REDUCES``, or a callable ``f(block, axis=tuple)``, which gets the
    block as it is. argmax/argmin give the coordinates along ``axes`` as a trailing
    axis, in ``index_dtype`` (default: ``numpy.intp`` for NumPy, else the namespace's
    int64)."""
    if reduce is None:
        return block
    if isinstance(reduce, Peaks):  # (found on the host: a few values per map come back)
        if xp is np:
            return search(reduce, block, axes)
        from .backends.array_api import device_of

        return xp.asarray(search(reduce, _to_host(block), axes), device=device_of(block))
    if callable(reduce):
        with user_callback():  # it may call batchconv: not into buffers holding `block`
            result = reduce(block, axis=axes)
        return check_reduced(np.asarray(result) if xp is np else result, block, axes)
    if xp is np and reduce in _NDARRAY_METHODS:  # (NumPy's methods: 1-2 us less a call)
        return getattr(block, reduce)(axis=axes)
    if index_dtype is None:
        index_dtype = np.intp if xp is np else xp.int64
    return _NAMED[reduce](xp, block, axes, index_dtype)


def check_reduced(result, block, axes: tuple[int, ...]):
    """``result`` of a reduce callable (an array or a tensor), after checking that it is
    ``block`` with ``axes`` removed."""
    expected = tuple(s for i, s in enumerate(block.shape) if i not in axes)
    if tuple(result.shape) != expected:
        raise ValueError(
            f"the reduce callable returned shape {tuple(result.shape)} for a "
            f"block of shape {tuple(block.shape)} reduced over axes {axes}; "
            f"expected {expected}"
        )
    return result


def _to_host(block) -> np.ndarray:
    """A block of another array library as a NumPy array (copied from a GPU)."""
    if hasattr(block, "detach"):  # torch
        return block.detach().cpu().numpy()
    try:
        return np.from_dlpack(block)  # (JAX and array-api-strict on the CPU)
    except (TypeError, RuntimeError, BufferError, AttributeError):
        return np.asarray(block)
