"""The NumPy backend of the planner's block loop (``Plan._run_blocks``): what a call on
NumPy arrays does differently from one on torch tensors (``torch.py`` beside it).

It gives the canonical views (``problem.py``: plain views of the user's arrays where
possible), the result in the spec's output order with the methods writing into its
canonical view, the scope of a call (the thread count of ``set_workers`` and BLAS's
threads held to it), the fused reductions (``reduce.py``), and the one-block path per
input layout: the canonical views of ``x`` and of the result remembered as strides, so
that a repeat call is ``as_strided``, the method, done. NumPy never runs out of memory
in a way a smaller block would mend (a ``MemoryError`` propagates), and its memory
budget is the host's.

>>> import numpy as np, batchconv as bc
>>> plan = bc.plan(np.ones((2, 16)), np.ones((3, 4)))
>>> NUMPY.layout_of(np.ones((2, 16)))[0]
'numpy'
"""

from __future__ import annotations

from math import prod

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..budget import check_result_fits
from ..geometry import AxisGeometry
from ..metrics.windowed import box_sums
from ..problem import Problem, canonical_out_view, canonical_x
from ..reduce import apply_reduce
from ..xp import blas_threads, element_strides, set_workers
from . import Scopes

__all__ = ["NUMPY", "NumPyBackend"]

# a plan remembers the one-block path of at most this many input layouts
_MAX_SHORTCUTS = 8


def _view(a: np.ndarray, shape: tuple, strides: tuple) -> np.ndarray:
    """``as_strided(a, shape, strides)`` from ``a``'s first element; for a C-contiguous
    ``a`` through the ndarray constructor (0.4 instead of 3 us)."""
    if a.flags.c_contiguous:
        return np.ndarray(shape, a.dtype, a, 0, strides)
    return as_strided(a, shape, strides)


def _starts_at(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` is a view of ``b`` from ``b``'s first element (a copy starts elsewhere)."""
    return (
        a.dtype == b.dtype and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


class NumPyBackend:
    """NumPy arrays on the host (one instance: :data:`NUMPY`)."""

    name = "numpy"

    def layout_of(self, x: np.ndarray) -> tuple:
        """The key of ``x``'s layout (what a plan's one-block paths are remembered by)."""
        return ("numpy", x.shape, x.strides, x.dtype.str)

    def problem_args(self, x: np.ndarray) -> tuple:
        """``(shape, dtype, element strides)`` for ``Plan.problem_for``."""
        return x.shape, x.dtype, element_strides(x)

    def canonical_x(self, p: Problem, x: np.ndarray) -> np.ndarray:
        """``x`` as ``(B, C, P, *S)``, in its own dtype: :meth:`batch_block` converts each
        block to the compute dtype, which the budget counts (converting the whole of ``x``
        here went over it: an int16 x (4, 260, 250, 8) against float32 3x3 filters under
        ``memory=8 MiB``, 9.9 MiB measured against 5.9 estimated)."""
        return canonical_x(p, x, convert=False)

    def batch_block(self, p: Problem, xc: np.ndarray, b0: int, b1: int) -> np.ndarray:
        """Items ``b0:b1`` of the canonical ``x`` in the compute dtype."""
        return xc[b0:b1].astype(p.dtype, copy=False)

    def check_result_fits(self, p: Problem, memory: int) -> None:
        """MemoryError, before anything is allocated, when the result cannot fit."""
        check_result_fits(p)

    def result(self, p: Problem) -> tuple[np.ndarray | None, np.ndarray]:
        """``(final, canon)``: the result in the spec's output order and its canonical
        view; ``final`` is None when no view exists (then ``canon`` is its own array)."""
        final = np.empty(p.out_shape, dtype=p.out_dtype)
        canon = canonical_out_view(p, final)
        if canon is None:  # rare layouts: compute canonically, return a transposed view
            return None, np.empty(p.canonical_out_shape, dtype=p.out_dtype)
        return final, canon

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.zeros(shape, dtype)

    def window_sums(self, a: np.ndarray, geoms: tuple[AxisGeometry, ...], first: int):
        """Sums of ``a`` (float64) over the 'valid' windows of ``geoms`` on the axes
        ``first, ...`` (``metrics.windowed.box_sums``: shifted slices, blocked prefix
        sums or the numba kernel)."""
        return box_sums(a, geoms, first)

    def scope(self, workers: int | None) -> Scopes:
        """The scope of one call's blocks: ``workers`` threads, BLAS held to them
        (``blas_threads`` reads the count that ``set_workers`` has set)."""
        return Scopes(set_workers(workers), blas_threads())

    def reduce(self, reduce, block: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return apply_reduce(reduce, block, axes)

    def nonfinite_filters(self, wc: np.ndarray) -> np.ndarray:
        """Indices of the canonical filters ``wc`` (K, C, P, *T) holding a NaN or Inf."""
        if wc.dtype.kind not in "fc":
            return np.zeros(0, np.intp)
        finite = np.isfinite(wc).reshape(wc.shape[0], prod(wc.shape[1:]))
        return np.flatnonzero(~finite.all(axis=1))

    def zero_nonfinite(self, a: np.ndarray) -> np.ndarray:
        """``a`` with zeros in place of its NaN and Inf (a new array)."""
        return np.where(np.isfinite(a), a, 0)

    def index(self, items: np.ndarray) -> np.ndarray:
        """Item indices as this library indexes with them."""
        return items

    def to_host(self, a: np.ndarray) -> np.ndarray:
        """``a`` as a NumPy array (itself)."""
        return a

    def put(self, a: np.ndarray, index: tuple, values: np.ndarray) -> None:
        """``a[index] = values`` (NumPy index arrays and slices)."""
        a[index] = values

    def is_out_of_memory(self, e: BaseException) -> bool:
        """False: a MemoryError on the host is not mended by a smaller block."""
        return False

    def halved(self, cb: int, ck: int) -> tuple[int, int]:
        raise AssertionError("NumPy blocks are never retried")  # (is_out_of_memory)

    def one_block(self, plan, layout: tuple, p: Problem, mod, x, xc) -> np.ndarray | None:
        """The whole call as one block with no reduction, when the canonical views of
        ``x`` and of the result are plain views: computed, and remembered in the plan's
        one-call paths (``plan._shortcuts``) as their strides, with the method's own
        ``bind`` call for the layout where it has one. None when the call is not of that
        kind (the block loop computes it)."""
        shortcuts = plan._shortcuts
        if plan.workers is not None or len(shortcuts) >= _MAX_SHORTCUTS or not _starts_at(xc, x):
            return None
        if xc.dtype != p.dtype:  # x to be converted: the block loop does it block by block
            return None
        final, canon = self.result(p)
        if final is None or not _starts_at(canon, final) or min(xc.strides + canon.strides) < 0:
            return None
        bind = getattr(mod, "bind", None)  # a method's own lean call for this layout
        shortcut = (
            p,
            mod,
            plan.checks_nonfinite(p),
            (xc.shape, xc.strides),
            (canon.shape, canon.strides),
            bind and bind(p, plan.state, xc, canon),
        )
        y = self._compute_one_block(plan, shortcut, xc, canon, final)
        shortcuts[layout] = shortcut  # (once it has computed)
        return y

    def run_shortcut(self, plan, shortcut, x: np.ndarray) -> np.ndarray:
        """A call remembered by :meth:`one_block`."""
        p, _, _, (xs, xst), (cs, cst), _ = shortcut
        check_result_fits(p)
        final = np.empty(p.out_shape, dtype=p.out_dtype)
        return self._compute_one_block(
            plan, shortcut, _view(x, xs, xst), _view(final, cs, cst), final
        )

    def _compute_one_block(self, plan, shortcut, xc, canon, final) -> np.ndarray:
        p, mod, check, _, _, bound = shortcut
        flagged: set[int] | None = set() if check else None
        with blas_threads():
            if bound is not None:
                bound(xc, canon, flagged)
            else:
                kw = {"nonfinite": flagged} if check else {}
                mod.compute(p, plan.state, xc, 0, p.K, out=canon, **kw)
            if check and (flagged or plan.bad_filters.size):
                plan._redo_nonfinite(self, p, xc, canon, None, flagged)
        return final


NUMPY = NumPyBackend()
