"""The torch backend of the planner's block loop (``Plan._run_blocks``): what a call of
a torch method's plan does on the tensors' own device (CPU or CUDA), where the NumPy
backend (``numpy.py`` beside it) works on the host.

It gives the canonical views (``tensors.py``: ``permute``/``reshape``), the result
allocated on the device in the spec's output order, the scope of a call (TF32 off,
``tensors.precise``; no autograd), torch's fused reductions, the out-of-memory rule (the
allocator's ``OutOfMemoryError`` or a CUDA library's failed work-area allocation: the
planner retries once with half the block, after emptying the allocator's cache), and the
one-call path per input layout: a single block with no reduction returns the method's
own output, and for a method with ``one_call`` (torch_direct's convolution, torch_fft's
transforms) the plan remembers the method's input and result as strided views of ``x``
and of the method's output, with the call itself, so that the next call with that layout
is ``as_strided``, the call, ``as_strided`` (40-60 us less Python per call: what matters
for small problems on a GPU).

torch is imported inside the functions only.

>>> torch = __import__("pytest").importorskip("torch")
>>> TorchBackend("cpu").layout_of(torch.ones(2, 3))
('torch', torch.Size([2, 3]), (3, 1), torch.float32)
"""

from __future__ import annotations

from functools import lru_cache
from math import prod

import numpy as np

from .. import tensors
from ..arrays import is_torch, numpy_dtype, plain_tensor, to_numpy
from ..budget import check_result_fits
from ..metrics import metric_of
from ..problem import Problem, final_view, with_layout_of
from ..reduce import apply_reduce
from ..tensors import (
    _torch,
    is_cuda,
    is_out_of_memory,
    namespace,
    precise,
    to_device,
    torch_dtype,
)
from . import Scopes

__all__ = ["TorchBackend"]

# a plan remembers the one-call path of at most this many input layouts
_MAX_SHORTCUTS = 8


def _offset_view(view, base):
    """``(shape, strides, offset)`` of ``view`` as ``base.as_strided(...)``, or None when
    it is not a view of ``base``'s memory."""
    if view.untyped_storage().data_ptr() != base.untyped_storage().data_ptr():
        return None
    return (tuple(view.shape), view.stride(), view.storage_offset() - base.storage_offset())


def _unless_whole(view, base):
    """``view`` (shape, strides, offset), or None when it is ``base`` itself (the common
    NCHW case: no view to make)."""
    return None if view == (tuple(base.shape), base.stride(), 0) else view


class TorchBackend:
    """torch tensors on ``device`` ("cpu", "cuda:0", ...)."""

    name = "torch"

    def __init__(self, device: str):
        self.device = device

    @staticmethod
    @lru_cache(maxsize=64)
    def on(device: str) -> TorchBackend:
        """The backend of ``device`` (one per device)."""
        return TorchBackend(device)

    def take(self, x):
        """``x`` as a plain tensor on this device, and the function that gives a result
        back as the caller passed ``x`` (a NumPy array for a NumPy ``x``). A tensor on
        another device is refused: moving it is the caller's choice."""
        if not is_torch(x):  # (other libraries' arrays refused as a NumPy plan does)
            return to_device(to_numpy(x, "x")[0], self.device), _to_numpy
        if str(x.device) != self.device:
            raise ValueError(
                f"this plan runs on {self.device}; x is on {x.device}: move it with "
                f"x.to({self.device!r}) or make a plan for {x.device}"
            )
        return plain_tensor(x), None

    def layout_of(self, x) -> tuple:
        """The key of ``x``'s layout (what a plan's one-call paths are remembered by)."""
        return ("torch", x.shape, x.stride(), x.dtype)  # (torch.Size is a tuple)

    def problem_args(self, x) -> tuple:
        """``(shape, dtype, strides)`` for ``Plan.problem_for``: a CPU tensor's element
        strides (the NumPy methods read it in place, and what they copy depends on them);
        None on a GPU (the torch methods do not depend on them)."""
        strides = tuple(x.stride()) if self.device == "cpu" else None
        return tuple(x.shape), numpy_dtype(x.dtype), strides

    def canonical_x(self, p: Problem, x):
        """``x`` as ``(B, C, P, *S)`` in its own dtype: :meth:`batch_block` converts a
        block at a time, as the budget counts it."""
        return tensors.canonical_x(p, x, convert=False)  # (through the module: tests count)

    def batch_block(self, p: Problem, xc, b0: int, b1: int):
        return xc[b0:b1].to(torch_dtype(p.dtype))  # (no copy where x has the dtype)

    def check_result_fits(self, p: Problem, memory: int) -> None:
        """MemoryError, before anything is allocated, when the result cannot fit on the
        device (asked only for a result over a quarter of the budget: asking costs)."""
        if prod(p.out_shape) * p.out_dtype.itemsize > memory // 4:
            check_result_fits(p, self.device)

    def result(self, p: Problem):
        return tensors.out_views(p, self.device)

    def zeros(self, shape: tuple[int, ...], dtype):
        return _torch().zeros(shape, dtype=torch_dtype(dtype), device=self.device)

    def window_sums(self, a, geoms, first: int):
        """Sums of the tensor ``a`` over the 'valid' windows of ``geoms`` on the axes
        ``first, ...`` (``tensors.window_sums``: ``Tensor.unfold`` and a sum per axis)."""
        return tensors.window_sums(a, geoms, first)

    def scope(self, workers: int | None) -> Scopes:
        """TF32 off on CUDA (``tensors.precise``), no autograd (torch's own threads)."""
        return Scopes(precise(self.device), _torch().no_grad())

    def reduce(self, reduce, block, axes: tuple[int, ...]):
        """``reduce.apply_reduce`` with array-api-compat's torch namespace."""
        return apply_reduce(reduce, block, axes, namespace())

    def nonfinite_filters(self, wc) -> np.ndarray:
        """Indices (on the host) of the canonical filters ``wc`` (K, C, P, *T) holding a
        NaN or Inf (one synchronisation)."""
        torch = _torch()
        if not (wc.is_floating_point() or wc.is_complex()):
            return np.zeros(0, np.intp)
        ok = torch.isfinite(wc).reshape(wc.shape[0], prod(wc.shape[1:])).all(dim=1)
        return np.flatnonzero(~ok.cpu().numpy())

    def zero_nonfinite(self, a):
        """``a`` with zeros in place of its NaN and Inf (a new tensor)."""
        torch = _torch()
        return torch.where(torch.isfinite(a), a, torch.zeros((), dtype=a.dtype, device=a.device))

    def index(self, items: np.ndarray):
        """Item indices (a NumPy array) as a tensor on this device."""
        return _torch().from_numpy(items).to(self.device)

    def to_host(self, a) -> np.ndarray:
        """The tensor ``a`` as a NumPy array (its own memory on the CPU)."""
        return a.detach().cpu().numpy()

    def put(self, a, index: tuple, values: np.ndarray) -> None:
        """``a[index] = values``, the NumPy index arrays and values sent to the device."""
        torch = _torch()
        on = tuple(
            torch.from_numpy(i).to(self.device) if isinstance(i, np.ndarray) else i for i in index
        )
        a[on] = torch.from_numpy(values).to(device=self.device, dtype=a.dtype)

    def is_out_of_memory(self, e: BaseException) -> bool:
        return is_out_of_memory(e)

    def halved(self, cb: int, ck: int) -> tuple[int, int]:
        """The block size after running out of device memory (our estimate was wrong: the
        allocator's cache, another process, a library's work area): half the batch, or
        half the bank. Called after the failed block's exception is gone, so that
        emptying the allocator's cache also returns that block's tensors."""
        if is_cuda(self.device):
            _torch().cuda.empty_cache()
        return (-(-cb // 2), ck) if cb > 1 else (cb, -(-ck // 2))

    def one_block(self, plan, layout: tuple, p: Problem, mod, x, xc):
        """The whole call as one block with no reduction: the method's own output in the
        spec's order (C-contiguous, as an NCHW or channels-last convolution's output
        usually is already). For a method with ``one_call`` and no dtype change or
        rounding, the plan also remembers the call for this layout (see the module)."""
        check = plan.checks_nonfinite(p)
        xc = self.batch_block(p, xc, 0, p.B)  # (the whole call is one block)
        with self.scope(None):
            y = None
            if not (check and plan.bad_filters.size):  # (those: redone after each call)
                y = self._learn_shortcut(plan, layout, p, mod, x, xc)
            if y is None:
                flagged: set[int] = set()
                yc = mod.compute(
                    p, plan.state, xc, 0, p.K, **({"nonfinite": flagged} if check else {})
                )
                if check and (flagged or plan.bad_filters.size):
                    plan._redo_nonfinite(self, p, xc, yc, None, flagged)
                y = final_view(p, yc).contiguous()
        return y

    def _learn_shortcut(self, plan, layout, p: Problem, mod, xt, xc):
        one_call = getattr(mod, "one_call", None)
        if (
            one_call is None
            or not metric_of(p.metric).plain
            or p.integer_inputs
            or xc.dtype != xt.dtype
            # (the planned problem; another x layout only: the torch methods read any)
            or (p is not plan.problem and with_layout_of(p, plan.problem) != plan.problem)
        ):
            return None
        parts = one_call(p, plan.state, xc)
        if parts is None:
            return None
        src, call, as_canonical = parts

        def finish(y):
            return final_view(p, as_canonical(y))

        y = call(src)
        final = finish(y)
        into, out = _offset_view(src, xt), _offset_view(final, y)
        shortcuts = plan._shortcuts
        if into is not None and out is not None and len(shortcuts) < _MAX_SHORTCUTS:
            shortcuts[layout] = (
                _unless_whole(into, xt),
                y.stride(),
                _unless_whole(out, y),
                call,
                finish,
            )
        return final.contiguous()

    def run_shortcut(self, plan, shortcut, xt):
        """The recorded one-call path. When the method's output comes out in another
        layout than recorded (cuDNN's choice, the FFT method's exact route for a NaN in
        ``x``), its result view is made the general way instead."""
        into, y_strides, out, call, finish = shortcut
        # no autograd scope needed: xt is detached, and the plan's weights never need grad
        with precise(self.device):
            y = call(
                xt
                if into is None
                else xt.as_strided(into[0], into[1], xt.storage_offset() + into[2])
            )
        if y.stride() != y_strides:
            return finish(y).contiguous()
        if out is None:
            return y.contiguous()
        return y.as_strided(out[0], out[1], y.storage_offset() + out[2]).contiguous()


def _to_numpy(y):
    """A result tensor as a NumPy array (the plan was called with one)."""
    return y.cpu().numpy()
