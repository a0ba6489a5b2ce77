"""Fused reductions over the reduced sliding axes, applied to one block at a time.

A block is ``(b, k, P, *O)``; ``axes`` are the positions of the reduced sliding axes in
it. Because chunks split only batch and bank axes, each block holds every window of its
pairs, so reducing block by block gives the final answer while the unreduced result is
never held whole.

>>> import numpy as np
>>> block = np.arange(12.0).reshape(1, 1, 1, 3, 4)
>>> apply_reduce("argmax", block, (3, 4))
array([[[[2, 3]]]])
"""

from __future__ import annotations

import numpy as np

from .xp import user_callback

__all__ = ["apply_reduce", "check_reduced"]


def _arg(block: np.ndarray, axes: tuple[int, ...], find_max: bool) -> np.ndarray:
    keep = [i for i in range(block.ndim) if i not in axes]
    moved = block.transpose(keep + list(axes))
    lead = moved.shape[: len(keep)]
    flat = moved.reshape(*lead, -1)
    idx = np.argmax(flat, axis=-1) if find_max else np.argmin(flat, axis=-1)
    coords = np.unravel_index(idx, tuple(block.shape[a] for a in axes))
    return np.stack(coords, axis=-1).astype(np.intp, copy=False)


def apply_reduce(reduce, block: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Reduce ``block`` over ``axes``: a name from ``REDUCES`` or a callable
    ``f(block, axis=tuple)``. ``argmax``/``argmin`` give the reduced axes' coordinates
    as a trailing axis."""
    if reduce is None:
        return block
    if reduce == "sum":
        return block.sum(axis=axes)
    if reduce == "mean":
        return block.mean(axis=axes)
    if reduce == "max":
        return block.max(axis=axes)
    if reduce == "min":
        return block.min(axis=axes)
    if reduce == "argmax":
        return _arg(block, axes, True)
    if reduce == "argmin":
        return _arg(block, axes, False)
    with user_callback():  # it may call batchconv: not into buffers holding `block`
        result = np.asarray(reduce(block, axis=axes))
    return check_reduced(result, block, axes)


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
