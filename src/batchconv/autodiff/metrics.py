"""The metrics' backward passes, from their formulas over correlations and window sums
(the :class:`~batchconv.metrics.Metric` flags select the formula, as in the forward).

In the canonical layout, with ``a`` the window of ``xp`` (``n = C prod(T)`` samples),
``b`` the filter, ``g`` the cotangent and ``adjoint.py``'s two correlations:

- plain (dot): ``gxp = grad_padded(g, w)``, ``gw = grad_filters(xp, g)``;
- squared distance (ssd), ``y = sum (a - b)^2``: ``dy/da = 2 (a - b)``, so
  ``gxp = 2 xp WT(sum_k g) - 2 grad_padded(g, w)`` (``WT``: the window sums' adjoint)
  and ``gw = 2 w sum_{b, o} g - 2 grad_filters(xp, g)``;
- normalised (ncc, cosine), ``y = sum A B / sqrt(Va Vb)`` with ``A = a - mean(a)``,
  ``B = b - mean(b)`` (centred) or ``a``, ``b`` (cosine), ``Va = sum A^2``,
  ``Vb = sum B^2``: ``dy/da = B / sqrt(Va Vb) - y A / Va`` and
  ``dy/db = A / sqrt(Va Vb) - y B / Vb``; a flat window or filter (the forward's 0)
  gives a zero gradient;
- absolute difference (sad, the metric with its own kernel), ``y = sum |a - b|``: the
  subgradient ``sign(a - b)``, tap by tap (no product form).

Window statistics are float64 (as in the forward); the correlations run in the compute
dtype, on the arrays' library.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from ..metrics import metric_of
from ..metrics.formula import filter_statistics
from ..metrics.rules import noise_floor, valid_geometry
from ..metrics.windowed import error_scale
from ..problem import Problem
from .adjoint import (
    Runner,
    add_into,
    grad_filters,
    grad_padded,
    window_sums,
    window_sums_adjoint,
)

__all__ = ["metric_backward"]


def metric_backward(be, p: Problem, xp, w, g, run: Runner, need_x: bool, need_w: bool, centre):
    """``(gxp, gw)``: the gradients of the padded input ``xp`` ``(B, C, P, *U)`` and the
    canonical filters ``w`` ``(K, C, P, *T)`` for the cotangent ``g`` ``(B, K, P, *O)``
    of ``p``'s metric (None where not ``need_x`` / ``need_w``); ``centre``: each item's
    mean ``(B, 1, P, 1, ...)`` as the forward centres it (for the centred metrics)."""
    metric = metric_of(p.metric)
    stride = tuple(gm.stride for gm in p.geoms)
    dilation = tuple(gm.dilation for gm in p.geoms)
    ns = be.xp
    if metric.plain:
        gxp = grad_padded(run, g, w, stride, dilation, ns) if need_x else None
        gw = grad_filters(run, xp, g, stride, dilation) if need_w else None
        return gxp, gw
    if not metric.product_form:
        return _absolute(be, p, xp, w, g, run, need_x, need_w)
    if not metric.normalised:
        return _squared(be, p, xp, w, g, run, need_x, need_w, centre)
    return _normalised(be, p, xp, w, g, run, need_x, need_w, centre)


def _sliding(p: Problem) -> tuple[int, ...]:
    return tuple(range(3, 3 + p.ndim))


def _per_filter(ns, p: Problem, a):
    """``(K, P)`` -> ``(K, 1, P, 1, ...)``, against canonical filters."""
    return ns.reshape(a, (p.K, 1, p.P, *([1] * p.ndim)))


def _squared(be, p, xp, w, g, run, need_x, need_w, centre):
    """``sum (a - b)^2`` from centred terms, as the forward (float32 data far from 0
    keeps its digits): ``a - b = x' - b^ - d`` with ``x' = x - c`` (the item's mean),
    ``b^ = w - mu`` (the filter's), ``d = mu - c`` (float64, per item and filter)."""
    ns = be.xp
    f64 = be.dtype(np.dtype(np.float64))
    stride = tuple(gm.stride for gm in p.geoms)
    dilation = tuple(gm.dilation for gm in p.geoms)
    axes = (1, *_sliding(p))
    w64 = ns.astype(w, f64)
    mu = ns.mean(w64, axis=axes, keepdims=True)  # (K, 1, P, 1...)
    centred = ns.astype(w64 - mu, w.dtype)
    xs = xp - centre
    # d per item and filter: (B, K, P, 1...), in float64
    d = ns.reshape(mu, (1, p.K, p.P, *([1] * p.ndim))) - ns.astype(centre, f64)
    per_map = ns.sum(ns.astype(g, f64), axis=_sliding(p), keepdims=True)  # sum_o g
    gxp = gw = None
    if need_x:
        gsum = ns.sum(g, axis=1, keepdims=True)
        h = ns.astype(ns.sum(ns.astype(g, f64) * d, axis=1, keepdims=True), g.dtype)
        cover = window_sums_adjoint(run, ns, gsum, p.geoms)
        shift = window_sums_adjoint(run, ns, h, p.geoms)
        gxp = 2 * (xs * cover - grad_padded(run, g, centred, stride, dilation, ns) - shift)
    if need_w:
        total = _per_filter(ns, p, ns.sum(g, axis=(0, *_sliding(p))))
        gd = ns.reshape(ns.sum(per_map * d, axis=0), (p.K, 1, p.P, *([1] * p.ndim)))
        corr = grad_filters(run, xs, g, stride, dilation)
        gw = 2 * (centred * total + ns.astype(gd, w.dtype) - corr)
    return gxp, gw


def _normalised(be, p, xp, w, g, run, need_x, need_w, centre):
    ns, metric = be.xp, metric_of(p.metric)
    f64 = be.dtype(np.dtype(np.float64))
    stride = tuple(gm.stride for gm in p.geoms)
    dilation = tuple(gm.dilation for gm in p.geoms)
    n = p.window_size
    if metric.centred:  # (as the forward: any constant keeps A, the mean keeps digits)
        xp = xp - centre
    x64 = ns.astype(xp, f64)
    s2 = window_sums(run, ns, x64 * x64, p.geoms)  # (B, 1, P, *O)
    s1 = window_sums(run, ns, x64, p.geoms) if metric.centred else None
    spread = s2 - s1 * s1 / n if metric.centred else s2
    flat = spread <= _flat_floor(p, x64, s2)  # (the forward's 0: a zero gradient)
    inv_a = ns.where(flat, ns.zeros_like(spread), 1 / ns.sqrt(ns.where(flat, 1.0, spread)))
    filters, _, _, inv_norm, _ = filter_statistics(ns, p, w, f64)  # B, 1 / sqrt(Vb): (K, P)
    inv_b = ns.reshape(inv_norm, (1, p.K, p.P, *([1] * p.ndim)))  # against the outputs
    dot = run(xp, filters, "ncp,kcp->nkp", p.ndim, stride=stride, dilation=dilation)
    g64 = ns.astype(g, f64)
    y = ns.astype(dot, f64) * inv_a * inv_b
    gy = g64 * y
    gxp = gw = None
    if need_x:
        g1 = ns.astype(g64 * inv_a * inv_b, xp.dtype)
        term1 = grad_padded(run, g1, filters, stride, dilation, ns)
        h = ns.sum(gy, axis=1, keepdims=True) * inv_a * inv_a  # (B, 1, P, *O)
        term2 = x64 * window_sums_adjoint(run, ns, h, p.geoms)
        if metric.centred:
            term2 = term2 - window_sums_adjoint(run, ns, h * s1 / n, p.geoms)
        gxp = ns.astype(ns.astype(term1, f64) - term2, xp.dtype)
    if need_w:
        ga = g64 * inv_a
        t1 = ns.astype(grad_filters(run, xp, ns.astype(ga, xp.dtype), stride, dilation), f64)
        axes = (0, *_sliding(p))
        if metric.centred:
            t1 = t1 - _per_filter(ns, p, ns.sum(ga * s1 / n, axis=axes))
        inv_bw = _per_filter(ns, p, inv_norm)  # against the filters
        t2 = ns.astype(filters, f64) * inv_bw * inv_bw * _per_filter(ns, p, ns.sum(gy, axis=axes))
        gw = ns.astype(t1 * inv_bw - t2, w.dtype)
    return gxp, gw


def _flat_floor(p: Problem, x64, s2):
    """The spread at or below which a window is flat, as the forward decides it: on
    NumPy arrays from the sums of squares around the window (``windowed.error_scale``:
    a quiet window beside a loud one is flat there), elsewhere from its own ``s2``
    (``formula.combine``)."""
    if isinstance(x64, np.ndarray):
        squares = np.sum(x64 * x64, axis=1)  # (B, P, *U)
        scale = error_scale(squares, tuple(valid_geometry(g) for g in p.geoms), 2)
        return np.expand_dims(noise_floor(p, scale), 1)
    return float(noise_floor(p, 1.0)) * s2


def _absolute(be, p, xp, w, g, run, need_x, need_w):
    """``sum |a - b|``: the subgradient ``sign(a - b)``, one tap at a time (a block of
    items against every filter: at most 16 MB, or a quarter of the backward's share of
    the budget, of differences at once)."""
    ns = be.xp
    out_shape = tuple(gm.out for gm in p.geoms)
    stride = tuple(gm.stride for gm in p.geoms)
    gxp = ns.zeros_like(xp) if need_x else None
    per_item = 8 * p.K * p.C * p.P * max(1, int(np.prod(out_shape)))
    room = min(16 << 20, run.options.get("memory", 16 << 20) // 4)
    step = max(1, room // per_item)
    columns = []
    for t in product(*(range(gm.m) for gm in p.geoms)):
        starts = tuple(j * gm.dilation for j, gm in zip(t, p.geoms))
        where = tuple(
            slice(s, s + (o - 1) * st + 1, st) for s, o, st in zip(starts, out_shape, stride)
        )
        taps = xp[(slice(None),) * 3 + where]  # (B, C, P, *O)
        wt = ns.reshape(w[(slice(None),) * 3 + t], (1, p.K, p.C, p.P, *([1] * p.ndim)))
        rows, column = [], None
        for b0 in range(0, p.B, step):
            sign = ns.sign(ns.expand_dims(taps[b0 : b0 + step], axis=1) - wt)
            sign = sign * ns.expand_dims(g[b0 : b0 + step], axis=2)  # (b, K, C, P, *O)
            if need_x:
                rows.append(ns.sum(sign, axis=1))
            if need_w:
                part = -ns.sum(sign, axis=(0, *range(4, 4 + p.ndim)))  # (K, C, P)
                column = part if column is None else column + part
        if need_x and rows:
            gxp = add_into(ns, gxp, ns.concat(rows, axis=0), 3, starts, stride)
        columns.append(column)
    gw = None
    if need_w:
        gw = ns.reshape(ns.stack(columns, axis=-1), (p.K, p.C, p.P, *(gm.m for gm in p.geoms)))
    return gxp, gw
