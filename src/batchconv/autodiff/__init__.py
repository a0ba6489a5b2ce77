"""Gradients: the backward pass of ``correlate``/``convolve`` as correlations.

- :func:`vjp` (``bc.vjp``, in ``api.py``): the vector-Jacobian product for any array
  type (NumPy arrays, torch tensors, JAX arrays): ``(grad_x, grad_w)`` for a cotangent
  of the result's shape;
- ``torch_function.py``: ``bc.correlate``/``convolve`` on torch tensors that require grad
  run through a ``torch.autograd.Function`` whose backward is :func:`backward`;
- ``jax_function.py``: ``jax.custom_vjp`` around the call on JAX arrays.

The data flow of the backward (:func:`backward`): the Problem of the forward call;
``x``, ``w`` and the cotangent in the canonical layout (a reduced sliding axis gets its
cotangent back: broadcast for ``sum``/``mean``, to the selected element for
``max``/``min``); the metric's formula (``metrics.py``) over the two adjoint
correlations of ``adjoint.py``, run by the planner; the padded input's gradient folded
back through the padding; both gradients in the user's layout.

>>> import numpy as np, batchconv as bc
>>> gx, gw = bc.vjp(np.ones((1, 4)), np.ones(2), cotangent=np.ones((1, 3)))
>>> gx
array([[1., 2., 2., 1.]])
"""

from __future__ import annotations

from dataclasses import replace
from math import prod
from typing import Any

import numpy as np

from ..backends.array_api import ArrayAPIBackend
from ..budget import parse_memory
from ..metrics import metric_of
from ..peak_reduce import Peaks
from ..problem import Problem, make_problem
from .adjoint import Runner, fold, grad_filters_unpadded, grad_input, mutable
from .metrics import metric_backward

__all__ = ["vjp", "backward", "GEOMETRY", "COMPUTE"]

# the options that define the function (the Problem), and those that say how to run it
GEOMETRY = ("mode", "origin", "stride", "dilation", "padding", "cval", "metric", "reduce")
COMPUTE = ("method", "memory", "workers")


def vjp(x, w, spec, cotangent, flip: bool, options: dict, ops):
    """``bc.vjp`` (its docstring is in ``api.py``): ``(grad_x, grad_w)`` for array-likes
    ``x``, ``w``, ``cotangent``; ``ops``: ``(bc.correlate, bc.convolve, bc.plan)``."""
    if isinstance(w, list | tuple) and len({np.shape(t) for t in w}) > 1:
        raise NotImplementedError(
            "gradients through a ragged bank are not built yet; call bc.vjp once per template shape"
        )
    x = _as_input(x, "x")
    w = _as_input(w, "w")
    g = _as_input(cotangent, "cotangent")
    return backward(x, w, g, spec, flip, options, ops)


def _as_input(a, name: str):
    """``a`` as an array of its library (NumPy for lists and other array-likes), of real
    numbers."""
    if not (hasattr(a, "__array_namespace__") or hasattr(a, "requires_grad")):
        a = np.asarray(a)
    if "complex" in str(a.dtype):
        raise NotImplementedError(f"{name} is complex: gradients of complex data are not built yet")
    if isinstance(a, np.ndarray) and a.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {a.dtype}; gradients need real numbers")
    return a


def problem_of(x, w, spec, flip: bool, options: dict, be=None) -> Problem:
    """The forward call's Problem for arrays ``x``, ``w`` of one library, checked for a
    backward pass."""
    be = be or ArrayAPIBackend.of(x)
    unknown = set(options) - set(GEOMETRY) - set(COMPUTE) - {"mask", "progress"}
    if unknown:
        raise TypeError(f"unexpected option(s) {sorted(unknown)}")
    if options.get("mask") is not None:
        raise NotImplementedError(
            "gradients with mask= are not built yet; multiply the template by the mask "
            "for metric='dot', or compute the masked metric without gradients"
        )
    p = make_problem(
        tuple(x.shape),
        be.numpy_dtype(x.dtype),
        tuple(w.shape),
        be.numpy_dtype(w.dtype),
        spec,
        flip=flip,
        **{k: options[k] for k in GEOMETRY if k in options},
    )
    if p.dtype.kind == "c":
        raise NotImplementedError("gradients of complex correlations are not built yet")
    if p.reduce in ("argmax", "argmin"):
        raise TypeError(
            f"reduce={p.reduce!r} gives coordinates, which have no gradient; "
            f"differentiate reduce='max' or 'min' (the scores) instead"
        )
    if callable(p.reduce):
        raise NotImplementedError(
            "a callable reduce is not differentiated by batchconv; use reduce=None and "
            "reduce the result with your array library"
        )
    return p


def backward(x, w, g, spec, flip: bool, options: dict, ops, need_x=True, need_w=True):
    """``(grad_x, grad_w)`` of ``correlate(x, w, spec, **options)`` (``convolve`` when
    ``flip``) for the cotangent ``g``, all arrays of ``x``'s library (None where not
    needed); ``ops``: ``(bc.correlate, bc.convolve, bc.plan)``, which run the backward's
    correlations."""
    be = ArrayAPIBackend.of(x)
    w, g = _like(be, x, w, "w"), _like(be, x, g, "cotangent")
    p = problem_of(x, w, spec, flip, options, be)
    shape = p.out_shape[:-1] if isinstance(p.reduce, Peaks) else p.out_shape  # (scores)
    if tuple(g.shape) != shape:
        raise ValueError(f"cotangent has shape {tuple(g.shape)}; the result's is {shape}")
    compute = {k: options[k] for k in COMPUTE if k in options and options[k] is not None}
    # the budget: half for the correlations (each within it), half for the temporaries
    # here (the cotangent spread over reduced axes, padded and float64 copies), which
    # the batch is cut into chunks for
    budget = parse_memory(options.get("memory"), str(be.device))  # (a CUDA one: its own)
    run = Runner(*ops, {**compute, "memory": max(budget // 2, 1)})
    ns = be.xp
    xc, wc = be.canonical_x(p, x, copy=False), be.canonical_w(p, w, copy=False)
    if min(xc.shape + wc.shape + tuple(g.shape)) == 0 or 0 in p.O:
        gxc, gwc = ns.zeros_like(xc), ns.zeros_like(wc)
    else:
        gview = _cotangent_view(be, p, g)
        try:
            gxc, gwc = _chunked(be, p, xc, wc, gview, options, run, budget, need_x, need_w)
        except MemoryError as e:
            raise MemoryError(
                f"the backward pass does not fit memory={budget} bytes (half for its "
                f"correlations, half for its own temporaries; it needs more than the "
                f"forward): {e}"
            ) from None
    gx = gw = None
    if need_x:
        gx = _user_layout(be, p, gxc, "x", x)
    if need_w:
        if p.flip and p.ndim:
            gwc = ns.flip(gwc, axis=tuple(range(3, 3 + p.ndim)))
        gw = _user_layout(be, p, gwc, "w", w)
    return gx, gw


def _chunked(be, p: Problem, xc, wc, gview, options, run, budget, need_x, need_w):
    """The canonical gradients, the batch cut into chunks whose temporaries fit half of
    ``budget``."""
    ns = be.xp
    step = _items_per_chunk(p, budget // 2)
    chunks = [(b0, min(p.B, b0 + step)) for b0 in range(0, p.B, step)]
    # the input's gradient: written chunk by chunk into one array (JAX's: joined)
    into = need_x and len(chunks) > 1 and mutable(xc)
    gxc = ns.empty(xc.shape, dtype=xc.dtype, device=be.device) if into else None
    parts, gwc = [], None
    for b0, b1 in chunks:
        q, xb, gb = replace(p, B=b1 - b0), xc[b0:b1], gview[b0:b1]
        gx_part, gw_part = _canonical_gradients(be, q, xb, wc, gb, options, run, need_x, need_w)
        if into:
            gxc[b0:b1] = gx_part
        elif need_x:
            parts.append(gx_part)
        gwc = gw_part if gwc is None or gw_part is None else gwc + gw_part
    if parts:
        gxc = parts[0] if len(parts) == 1 else ns.concat(parts, axis=0)
    return gxc, gwc


def _canonical_gradients(be, p: Problem, xc, wc, g, options, run, need_x, need_w):
    """The gradients of the canonical ``xc`` and ``wc`` (None where not needed): for a
    plain correlation straight from ``xc`` (no padded copy) where the geometry allows,
    else through the padded input and the metric's formula, folded back."""
    gc = canonical_cotangent(be, p, g, xc, wc, options, run)
    gxc = gwc = None
    if metric_of(p.metric).plain:
        gxc = grad_input(run, gc, wc, p, be.xp) if need_x else None
        gwc = grad_filters_unpadded(run, xc, gc, p) if need_w else None
    more_x, more_w = need_x and gxc is None, need_w and gwc is None
    if more_x or more_w:
        xpad = be.pad(xc, p.geoms, p.padding, p.cval, 3)
        gxp, gw = metric_backward(be, p, xpad, wc, gc, run, more_x, more_w, _centre(be, p, xc))
        gxc = fold(be.xp, gxp, p.geoms, p.padding, 3) if more_x else gxc
        gwc = gw if more_w else gwc
    return gxc, gwc


def _centre(be, p: Problem, xc):
    """Each item's mean ``(B, 1, P, 1, ...)`` over its channels and samples, in float64
    rounded to the compute dtype, as the forward centres x for the centred metrics
    (None for the others)."""
    if not metric_of(p.metric).centred:
        return None
    ns = be.xp
    axes = (1, *range(3, 3 + p.ndim))
    c = ns.mean(ns.astype(xc, be.dtype(np.dtype(np.float64))), axis=axes, keepdims=True)
    return ns.astype(c, xc.dtype)


def _as_dtype(ns, a, dtype):
    """``a`` in ``dtype``, itself when it is (the standard's astype always copies)."""
    return a if a.dtype == dtype else ns.astype(a, dtype)


def _like(be, x, a, name: str):
    """``a`` as an array of ``x``'s library, on its device."""
    if type(a) is type(x):
        return a
    if hasattr(x, "requires_grad"):  # a torch tensor: a NumPy w or cotangent joins it
        import torch

        return torch.as_tensor(a, device=x.device)
    return be.asarray(a, name)


def _cotangent_view(be, p: Problem, g):
    """The cotangent ``g`` (the result's shape; the scores' for ``bc.peaks``) seen as
    ``(B, K, P, *O_kept[, k])`` in the compute dtype."""
    ns, sp = be.xp, p.spec
    g = _as_dtype(ns, g, be.dtype(p.dtype))
    order = sp.batch + sp.bank + sp.paired + sp.kept_sliding
    peaks = isinstance(p.reduce, Peaks)
    tail = (len(sp.out),) if peaks else ()  # (the peaks' axis stays last)
    g = ns.permute_dims(g, (*(sp.out.index(c) for c in order), *tail))
    kept_sizes = tuple(n for n, c in zip(p.O, sp.sliding) if c not in sp.reduced)
    return ns.reshape(g, (p.B, p.K, p.P, *kept_sizes, *((p.reduce.k,) if peaks else ())))


def _items_per_chunk(p: Problem, budget: int) -> int:
    """Batch items per chunk of the backward, its own temporaries within ``budget``: the
    cotangent spread over every output (and its upsampled copy, float64 copies for the
    metrics), a padded copy of x (and float64 ones); at least one item."""
    metric = metric_of(p.metric)
    padded = p.C * p.P * prod(g.padded for g in p.geoms) * 8
    spread = p.K * p.P * prod((g.out - 1) * g.stride + 1 for g in p.geoms) * 8
    if metric.plain:  # the cotangent spread and upsampled, the input's gradient
        per_item = padded + spread * 2
    else:  # (counted in metrics.py's formulas: float64 copies of x', its square, ...)
        per_item = padded * 10 + spread * 8
    if p.spec.reduced:  # the unreduced map, the selection and its product with g
        per_item += spread * 4
    if per_item > budget:
        raise MemoryError(
            f"its temporaries take about {per_item} bytes per batch item, over their "
            f"half ({budget} bytes)"
        )
    return min(p.B, budget // per_item)


def canonical_cotangent(be, p: Problem, g, xc, wc, options: dict, run: Runner):
    """The cotangent ``g`` (:func:`_cotangent_view`'s layout) as ``(B, K, P, *O)``, every
    sliding axis present: a reduced axis gets ``g`` broadcast (``sum``), divided by its
    size (``mean``), or at the selected elements only (``max``/``min``, ``bc.peaks``:
    found again)."""
    ns, sp = be.xp, p.spec
    peaks = isinstance(p.reduce, Peaks)
    kept = [i for i, c in enumerate(sp.sliding) if c not in sp.reduced]
    red = [i for i, c in enumerate(sp.sliding) if c in sp.reduced]
    kept_sizes = tuple(p.O[i] for i in kept)
    if not red:
        return g
    full = (p.B, p.K, p.P, *p.O)
    perm = (0, 1, 2, *(3 + i for i in kept), *(3 + i for i in red))
    if p.reduce in ("sum", "mean"):
        ones = tuple(1 if i in red else p.O[i] for i in range(p.ndim))
        g = ns.reshape(g, (p.B, p.K, p.P, *ones))
        if p.reduce == "mean":
            g = g / p.reduced_size
        return g + ns.zeros(full, dtype=g.dtype, device=be.device)
    # max / min / peaks: the elements the forward selected (found again)
    geometry = {k: options[k] for k in GEOMETRY if k in options and k != "reduce"}
    geometry["cval"] = p.cval  # (that of x summed over its own letters, as xc is)
    at = ns.arange(p.reduced_size, device=be.device)
    if peaks:  # each peak's cotangent at its element (none where a map has fewer)
        found = run(xc, wc, "ncp,kcp->nkp", p.ndim, keep=kept, reduce=p.reduce, **geometry)
        coords = found.coords  # (B, K, P, *kept, k, n)
        flat = coords[..., 0]
        for j in range(1, len(red)):
            flat = flat * p.O[red[j]] + coords[..., j]
        hit = (ns.expand_dims(flat, axis=-1) == at) & ns.expand_dims(coords[..., 0] >= 0, axis=-1)
        gt = ns.sum(ns.astype(hit, g.dtype) * ns.expand_dims(g, axis=-1), axis=-2)
    else:  # (the first of equal values, as argmax picks it)
        y = run(xc, wc, "ncp,kcp->nkp", p.ndim, **geometry)
        yt = ns.reshape(ns.permute_dims(y, perm), (p.B, p.K, p.P, *kept_sizes, p.reduced_size))
        pick = ns.argmax(yt, axis=-1) if p.reduce == "max" else ns.argmin(yt, axis=-1)
        onehot = ns.astype(ns.expand_dims(pick, axis=-1) == at, g.dtype)
        gt = onehot * ns.expand_dims(g, axis=-1)
    gt = ns.reshape(gt, (p.B, p.K, p.P, *kept_sizes, *(p.O[i] for i in red)))
    return ns.permute_dims(gt, tuple(int(i) for i in np.argsort(perm)))


def _user_layout(be, p: Problem, a, which: str, like) -> Any:
    """A canonical gradient (``(B, C, P, *S)`` for x, ``(K, C, P, *T)`` for w) in the
    operand's own axes, dtype (when floating) and array type; the axes of one operand
    only (summed first in the forward) get it broadcast."""
    ns, sp = be.xp, p.spec
    letters, shape = (sp.x, p.x_shape) if which == "x" else (sp.w, p.w_shape)
    lead, only = (sp.batch, sp.x_summed) if which == "x" else (sp.bank, sp.w_summed)
    sizes = dict(zip(letters, shape))
    order = lead + sp.summed + sp.paired + sp.sliding
    a = ns.reshape(a, (*(sizes[c] for c in order), *([1] * len(only))))
    full = order + only
    a = ns.broadcast_to(a, tuple(sizes[c] for c in full))
    a = ns.permute_dims(a, tuple(full.index(c) for c in letters))
    if be.numpy_dtype(like.dtype).kind == "f":
        a = _as_dtype(ns, a, like.dtype)
    if isinstance(a, np.ndarray):
        return np.ascontiguousarray(a)
    return a.contiguous() if hasattr(a, "contiguous") else a
