"""``bc.correlate``/``convolve`` on torch tensors that require grad: a
``torch.autograd.Function`` whose forward is the usual call and whose backward is
:func:`batchconv.autodiff.backward` (correlations through the planner, on the tensors'
device, with the call's ``method``, ``memory`` and ``workers``; TF32 scoped as in the
forward). Its backward is itself made of batchconv calls on tensors, so a second
derivative (``create_graph=True``) goes through this Function again.

Imported only when a tensor requires grad (torch is then already imported).

>>> import torch, batchconv as bc
>>> x = torch.ones(1, 5, dtype=torch.float64, requires_grad=True)
>>> y = bc.correlate(x, torch.tensor([1.0, 2.0], dtype=torch.float64))
>>> y.sum().backward()
>>> x.grad
tensor([[1., 3., 3., 3., 2.]], dtype=torch.float64)
"""

from __future__ import annotations

import torch

from ..peak_reduce import PeakResult
from . import backward, problem_of

__all__ = ["correlate_with_grad"]


class _Correlation(torch.autograd.Function):
    """One ``correlate``/``convolve`` call; ``run`` computes it on detached tensors."""

    @staticmethod
    def forward(ctx, x, w, call):
        run, spec, flip, options, ops = call
        ctx.call = (spec, flip, options, ops)
        ctx.save_for_backward(x, w)
        y = run(x.detach(), w.detach())
        if isinstance(y, PeakResult):  # scores differentiable, coordinates not
            ctx.mark_non_differentiable(y.coords)
            return y.scores, y.coords
        return y

    @staticmethod
    def backward(ctx, g, *coords):
        x, w = ctx.saved_tensors
        spec, flip, options, ops = ctx.call
        need_x, need_w = ctx.needs_input_grad[:2]
        gx, gw = backward(x, w, g, spec, flip, options, ops, need_x, need_w)
        return gx, gw, None


def correlate_with_grad(run, x, w, spec, flip: bool, options: dict, ops):
    """``run(x, w)`` (the call) recorded by autograd. ``x`` and ``w`` become tensors on
    the same device where one of them is not (a NumPy ``w``, say); the options are
    checked for a backward first (a mask, ``argmax``, complex data: an error now, not at
    ``backward()``)."""
    if options.get("reduce") in ("argmax", "argmin"):  # integers: no gradient (as torch's)
        return run(_detached(x), _detached(w))
    like = x if isinstance(x, torch.Tensor) else w
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x, device=like.device)
    if not isinstance(w, torch.Tensor):
        w = torch.as_tensor(w, device=like.device)
    problem_of(x, w, spec, flip, options)
    y = _Correlation.apply(x, w, (run, spec, flip, options, ops))
    return PeakResult(*y) if isinstance(y, tuple) else y


def _detached(a):
    return a.detach() if isinstance(a, torch.Tensor) else a
