"""A plan's call on torch tensors, on their own device: the block loop of the torch
methods (:func:`run_plan`), with a one-call path per input layout and a retry with half
blocks when the device runs out of memory. ``Plan.__call__`` hands tensors of a torch
method's plan here; the helpers it uses (devices, padding, reductions, TF32) are
``tensors.py``'s.
"""

from __future__ import annotations

from math import prod

from . import tensors
from .arrays import is_torch, numpy_dtype, plain_tensor
from .budget import check_result_fits
from .metrics import metric_of
from .metrics.dispatch import method_for
from .problem import final_view
from .tensors import (
    _torch,
    apply_reduce,
    is_cuda,
    is_out_of_memory,
    out_views,
    precise,
    to_device,
    torch_dtype,
)

__all__ = ["run_plan"]


def _halve(cb: int, ck: int, device: str) -> tuple[int, int]:
    """The block size after running out of device memory (our estimate was wrong: the
    allocator's cache, another process, a library's work area): half the batch, or half
    the bank. Called after the failed block's exception is gone, so that emptying the
    allocator's cache also returns that block's tensors."""
    if is_cuda(device):
        _torch().cuda.empty_cache()
    return (-(-cb // 2), ck) if cb > 1 else (cb, -(-ck // 2))


def _offset_view(view, base):
    """``(shape, strides, offset)`` of ``view`` as ``base.as_strided(...)``, or None when
    it is not a view of ``base``'s memory."""
    if view.untyped_storage().data_ptr() != base.untyped_storage().data_ptr():
        return None
    return (tuple(view.shape), view.stride(), view.storage_offset() - base.storage_offset())


def _learn_shortcut(plan, p, xt, xc, layout):
    """One block of a tensor method with a one-call form (``one_call``: torch_direct's
    convolution, torch_fft's transforms), no reduction, dtype change or rounding: compute
    it, and record the method's input as a strided view of ``x`` and the result as a
    strided view of the method's output, so that the next call with this layout is
    ``as_strided``, the method's call, ``as_strided`` (40-60 us less Python per call:
    what matters for small problems on a GPU). Returns the result, or None when this
    block is not of that kind (the caller computes it)."""
    mod = plan.module
    one_call = getattr(mod, "one_call", None)
    if (
        one_call is None
        or not metric_of(p.metric).plain
        or p.reduce is not None
        or p.integer_inputs
        or xc.dtype != xt.dtype
        or p is not plan.problem
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
    if into is not None and out is not None and len(plan._shortcuts) < 8:
        plan._shortcuts[layout] = (
            _unless_whole(into, xt),
            y.stride(),
            _unless_whole(out, y),
            call,
            finish,
        )
    return final.contiguous()


def _unless_whole(view, base):
    """``view`` (shape, strides, offset), or None when it is ``base`` itself (the common
    NCHW case: no view to make)."""
    return None if view == (tuple(base.shape), base.stride(), 0) else view


def _run_shortcut(plan, shortcut, xt):
    """The recorded one-call path (:func:`_learn_shortcut`). When the method's output
    comes out in another layout than recorded (cuDNN's choice, the FFT method's exact
    route for a NaN in ``x``), its result view is made the general way instead."""
    into, y_strides, out, call, finish = shortcut
    # no autograd scope needed: xt is detached, and the plan's weights never need grad
    with precise(plan.device):
        y = call(
            xt if into is None else xt.as_strided(into[0], into[1], xt.storage_offset() + into[2])
        )
    if y.stride() != y_strides:
        return finish(y).contiguous()
    if out is None:
        return y.contiguous()
    return y.as_strided(out[0], out[1], y.storage_offset() + out[2]).contiguous()


def run_plan(plan, x):
    """Run ``plan`` (a torch method) on ``x``; the result is a tensor on the plan's
    device, or a NumPy array when ``x`` was one."""
    device = plan.device
    numpy_in = not is_torch(x)
    if numpy_in:
        xt = to_device(x, device)
    elif str(x.device) != device:
        raise ValueError(
            f"this plan runs on {device}; x is on {x.device}: move it with "
            f"x.to({device!r}) or make a plan for {x.device}"
        )
    else:
        xt = plain_tensor(x)
    layout = (xt.shape, xt.stride(), xt.dtype)
    shortcut = plan._shortcuts.get(layout)
    short_of_memory = False
    if shortcut is not None:
        try:
            y = _run_shortcut(plan, shortcut, xt)
        except Exception as e:  # out of memory: the block loop below runs half blocks
            if not is_out_of_memory(e):
                raise
            y, short_of_memory = None, True
        if y is not None:
            return y.cpu().numpy() if numpy_in else y
    torch = _torch()
    p, (cb, ck) = plan.problem_for(tuple(xt.shape), numpy_dtype(xt.dtype))
    mod = method_for(p, plan.method, device)
    xc = tensors.canonical_x(p, xt)  # (through the module: tests count its calls)
    if prod(p.out_shape) * p.out_dtype.itemsize > plan.memory // 4:  # else it fits
        check_result_fits(p, device)
    retried = False
    if not short_of_memory and (
        p.reduce is None
        and cb >= p.B
        and ck >= p.K
        and p.window_size
        and prod(p.canonical_out_shape)
    ):
        # one block: the method's own output, in the spec's order (C-contiguous, as an
        # NCHW or channels-last convolution's output usually is already)
        try:
            with precise(device), torch.no_grad():
                y = _learn_shortcut(plan, p, xt, xc, layout)
                if y is None:
                    y = final_view(p, mod.compute(p, plan.state, xc, 0, p.K)).contiguous()
            return y.cpu().numpy() if numpy_in else y
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            short_of_memory = True
    if short_of_memory:  # the one block did not fit: halve it, once
        cb, ck, retried = *_halve(cb, ck, device), True
    final, canon = out_views(p, device)
    axes = tuple(3 + i for i in p.reduced_axes)
    if canon.numel() and p.window_size == 0:  # sums over nothing
        canon.copy_(
            apply_reduce(
                p.reduce,
                torch.zeros((p.B, p.K, p.P, *p.O), dtype=torch_dtype(p.dtype), device=device),
                axes,
            )
        )
    with precise(device), torch.no_grad():
        b0 = 0
        while b0 < p.B and canon.numel() and p.window_size:
            k0 = 0
            while k0 < p.K:
                b1, k1 = min(b0 + cb, p.B), min(k0 + ck, p.K)
                try:
                    dest = canon[b0:b1, k0:k1]
                    if p.reduce is None:
                        mod.compute(p, plan.state, xc[b0:b1], k0, k1, out=dest)
                    else:
                        dest.copy_(
                            apply_reduce(
                                p.reduce, mod.compute(p, plan.state, xc[b0:b1], k0, k1), axes
                            )
                        )
                except Exception as e:
                    if not is_out_of_memory(e) or retried or (cb == 1 and ck == 1):
                        raise
                    retried = True  # never a partial result: a second failure raises
                else:
                    k0 = k1
                    continue
                cb, ck = _halve(cb, ck, device)
            b0 = min(b0 + cb, p.B)
    y = final if final is not None else final_view(p, canon)
    return y.cpu().numpy() if numpy_in else y
