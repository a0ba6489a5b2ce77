"""The portable engine's compiled pieces: preparing the filters, one block, one whole
call, each made once per problem by the backend's ``compile`` (``jax.jit`` for JAX, the
function itself elsewhere) and remembered here, keyed by what they depend on: the
backend's namespace and device, the computer (method or metric), the problem (a reduce
callable replaced by a placeholder: ``Problem.cache_key``) and the filters' range.
They take the filters' state as an argument, never as a constant, so ``correlate``
called again with other filters of the same shapes reuses them.

>>> import numpy as np, batchconv as bc
>>> xps = __import__("pytest").importorskip("array_api_strict")
>>> x, w = xps.ones((2, 16)), xps.ones((3, 4))
>>> before = len(_cache)
>>> _ = bc.correlate(x, w); _ = bc.correlate(x, 2 * w)
>>> len(_cache) - before   # (one program: the filters' preparation and the call)
1
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from math import prod

import numpy as np

from ..peak_reduce import PeakResult, Peaks
from ..problem import Problem
from ..reduce import apply_reduce

__all__ = [
    "prepare_fn",
    "whole_fn",
    "oneshot_fn",
    "block_fn",
    "reduce_block",
    "finish_mean",
    "clear",
]

_CACHE_SIZE = 256  # compiled functions kept (JAX keeps their programs per input shape)
_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()


def clear() -> None:
    """Forget the compiled functions."""
    with _lock:
        _cache.clear()


def _remember(key, make):
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    made = make()
    with _lock:
        found = _cache.setdefault(key, made)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return found


def _key(kind: str, be, computer, p: Problem, *rest):
    # (p is p.cache_key here: a reduce callable is a placeholder, which the functions
    # below only ask whether it is callable, so that no entry keeps a user's alive)
    return (kind, be.key, type(computer), computer.name, p, *rest)


def host_reduce(p: Problem) -> bool:
    """Whether the reduction runs outside the compiled code, on each computed block: a
    callable (the user's own code) or ``bc.peaks`` (found on the host)."""
    return callable(p.reduce) or isinstance(p.reduce, Peaks)


def finish_peaks(be, p: Problem, y):
    """The result ``y``, for ``bc.peaks`` unpacked into a ``PeakResult`` (scores in the
    compute dtype, coordinates in the namespace's int64)."""
    if not isinstance(p.reduce, Peaks):
        return y
    xp = be.xp
    scores = xp.astype(y[..., 0], be.dtype(p.dtype))
    return PeakResult(scores, xp.astype(y[..., 1:], be.dtype(np.dtype(np.int64))))


def reduce_block(be, p: Problem, block):
    """``block`` reduced over the problem's reduced sliding axes (indices in the
    namespace's int64). A mean gives the sum here, divided by :func:`finish_mean` after
    the compiled code (see there)."""
    axes = tuple(3 + i for i in p.reduced_axes)
    reduce = "sum" if p.reduce == "mean" else p.reduce
    return apply_reduce(reduce, block, axes, be.xp, be.dtype(np.dtype(np.int64)))


def finish_mean(be, p: Problem, y):
    """The result ``y`` of blocks reduced by :func:`reduce_block`, with a mean's sums
    divided by their count: eagerly, by an array of ``y``'s shape. XLA (JAX on the CPU)
    turns a division by a constant or by a broadcast scalar into a product with its
    reciprocal, one ulp off the correctly rounded quotient (30044.666666666664 for
    90134 / 3), and integer inputs' means must be exact to the last bit."""
    if p.reduce != "mean":
        return y
    return y / be.full(tuple(y.shape), prod(p.O[i] for i in p.reduced_axes), y.dtype)


def prepare_fn(be, computer, p: Problem):
    """The compiled ``w -> state``: the canonical filters prepared by ``computer``."""
    p = p.cache_key

    def run(w):
        return computer.prepare(be, p, be.canonical_w(p, w))

    return _remember(_key("prepare", be, computer, p), lambda: be.compile(run))


def whole_fn(be, computer, p: Problem, budget: int):
    """The compiled one-block call ``(x, state) -> (result, ok)``: canonical view,
    block, reduction (a name), the spec's output order; ``ok`` as ``pure`` gives it."""
    p = p.cache_key

    def run(x, state):
        xc = be.canonical_x(p, x)
        block, ok = computer.pure(be, p, state, xc, 0, p.K, budget)
        y = be.xp.astype(reduce_block(be, p, block), be.dtype(p.out_dtype), copy=False)
        return be.final_view(p, y), ok

    return _remember(_key("whole", be, computer, p, budget), lambda: be.compile(run))


def oneshot_fn(be, computer, p: Problem, budget: int):
    """The compiled ``(x, w) -> (result, ok)``: :func:`prepare_fn` and :func:`whole_fn`
    in one program (``correlate`` without a plan: one compilation, one dispatch)."""
    p = p.cache_key

    def run(x, w):
        state = computer.prepare(be, p, be.canonical_w(p, w))
        xc = be.canonical_x(p, x)
        block, ok = computer.pure(be, p, state, xc, 0, p.K, budget)
        y = be.xp.astype(reduce_block(be, p, block), be.dtype(p.out_dtype), copy=False)
        return be.final_view(p, y), ok

    return _remember(_key("oneshot", be, computer, p, budget), lambda: be.compile(run))


def block_fn(be, computer, p: Problem, k0: int, k1: int, budget: int):
    """The compiled ``(x block, state) -> (block, ok)`` for the filters ``k0:k1``,
    reduced when the reduction is a name (a callable runs outside, on the result)."""
    p = p.cache_key

    def run(xb, state):
        block, ok = computer.pure(be, p, state, xb, k0, k1, budget)
        return (block if host_reduce(p) else reduce_block(be, p, block)), ok

    return _remember(_key("block", be, computer, p, k0, k1, budget), lambda: be.compile(run))
