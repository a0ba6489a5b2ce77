"""The windowed metrics' formulas (ssd, ncc, cosine), written once against an array-API
namespace ``xp``: torch tensors (``windowed_torch.py``, with array-api-compat's torch
namespace) and the portable engine (``portable/metrics.py``: JAX, array-api-strict,
CuPy) both compute through these functions, each with its own correlation method,
padding and window sums.

NumPy arrays take ``windowed.py``'s implementation of the same formulas, which works in
place, filter by filter, in reused work buffers and with a finer flat-window floor
(``error_scale``): the same answers within the accuracy contract, at the memory and
speed that the NumPy paths' benchmarks hold it to.

The formulas (``Metric`` flags select them): with ``x'`` the chunk (centred by each
item's mean ``c`` when the metric is ``centred``), ``s1``, ``s2`` the window sums of
``x'`` and ``x'^2`` (float64), ``dot`` the correlation of ``x'`` with the (centred)
filters ``b^``, and per filter its mean ``mu``, ``B1 = sum b^``, ``B2 = sum b^^2``:

- squared distance: ``s2 + B2 + d (n d + 2 B1) - 2 d s1 - 2 dot`` with ``d = mu - c``,
  clipped at 0 (rounded for integer inputs where the metric says so);
- normalised: ``dot / sqrt(spread) / sqrt(B2)``, ``spread = s2 - s1^2 / n`` (centred) or
  ``s2``; a flat window (spread at the rounding noise of the sums) or a flat filter
  gives 0; clipped to the metric's range.

The NaN/Inf policy of the windowed metrics, the same for every array library and also
written once here: NaN and Inf in ``x`` (or as ``cval``) are replaced by zeros for the
computation (:func:`zeroed`), then the windows that cover one get the float64 loop's
value (:func:`loop_values`): NaN, or for ``inf_gives_inf`` metrics (ssd) +Inf where the
window covers no NaN. NumPy's ``windowed.py`` uses these two as well.

>>> import numpy as np
>>> from batchconv.problem import make_problem
>>> p = make_problem((1, 8), np.float64, (1, 3), np.float64, metric="ncc")
>>> w = np.asarray([[[[1.0, 2.0, 4.0]]]])
>>> filters, mean, sq, inv, total = filter_statistics(np, p, w, np.float64)
>>> np.round(filters, 3), mean
(array([[[[-1.333, -0.333,  1.667]]]]), array([[2.33333333]]))
"""

from __future__ import annotations

import cmath
from dataclasses import replace
from typing import Any

from ..problem import Problem
from . import metric_of
from .rules import noise_floor

__all__ = ["filter_statistics", "centre", "combine", "loop_values", "put_in_place", "zeroed"]


def filter_statistics(xp, p: Problem, wc, f64) -> tuple[Any, Any, Any, Any, Any]:
    """``(filters, mean, sq, inv_norm, total)`` of the canonical filters ``wc``
    ``(K, C, P, *T)``: the filters the correlation uses (centred where the metric is,
    exactly zero for a flat filter, in ``wc``'s dtype), and per filter and paired item
    ``(K, P)`` in ``f64``: the mean of ``wc``, ``B2``, ``1 / sqrt(B2)`` (0 for a zero
    filter) and ``B1``."""
    metric = metric_of(p.metric)
    axes = (1, *range(3, 3 + p.ndim))
    w64 = xp.astype(wc, f64)
    mean = xp.mean(w64, axis=axes)  # (K, P)
    filters = wc
    if metric.centred:  # exactly zero for a flat filter
        flat = (xp.max(w64, axis=axes, keepdims=True) - xp.min(w64, axis=axes, keepdims=True)) == 0
        cen = w64 - xp.reshape(mean, (p.K, 1, p.P, *([1] * p.ndim)))
        if metric.recentre_filters:  # sum(cen) is n * the mean's rounding (windowed.py)
            cen = cen - xp.mean(cen, axis=axes, keepdims=True)
        filters = xp.astype(xp.where(flat, xp.zeros_like(cen), cen), wc.dtype)
    f64s = xp.astype(filters, f64)
    sq, total = xp.sum(f64s * f64s, axis=axes), xp.sum(f64s, axis=axes)
    positive = sq > 0
    inv = xp.where(
        positive, 1 / xp.sqrt(xp.where(positive, sq, xp.ones_like(sq))), xp.zeros_like(sq)
    )
    return filters, mean, sq, inv, total


def centre(xp, p: Problem, xb, xpad, f64) -> tuple[Any, Any]:
    """``(x', c)``: the padded chunk ``xpad`` centred by each item's mean over the
    unpadded chunk ``xb`` ``(b, C, P, *S)`` (rounded to the compute dtype: ``c``, ``(b,
    P)`` in ``f64``, is the centre actually used); for a metric that is not ``centred``,
    ``xpad`` as it is and ``c`` None."""
    if not metric_of(p.metric).centred:  # (cosine) not shift-invariant: x as it is
        return xpad, None
    b = xb.shape[0]
    axes = (1, *range(3, 3 + p.ndim))
    c = xp.astype(xp.mean(xp.astype(xb, f64), axis=axes), xb.dtype)  # (b, P)
    return xpad - xp.reshape(c, (b, 1, p.P, *([1] * p.ndim))), xp.astype(c, f64)


def combine(xp, p: Problem, dot, s1, s2, c, stats, k0: int, k1: int, f64):
    """The metric's block ``(b, k1 - k0, P, *O)`` in ``dot``'s dtype from the centred
    correlation ``dot``, the float64 window sums ``s1``, ``s2`` ``(b, 1, P, *O)``, the
    items' centres ``c`` ``(b, P)`` and the filters' ``stats`` ``(mean, sq, inv_norm,
    total)`` (see :func:`filter_statistics`); ``c`` None: not centred (0)."""
    metric = metric_of(p.metric)
    mean, sq, inv_norm, total = stats
    b, k, ones = dot.shape[0], k1 - k0, (1,) * p.ndim

    def per_filter(a):  # (K, P) statistics against (b, k, P, *O)
        return xp.reshape(a[k0:k1, ...], (1, k, p.P, *ones))

    if not metric.normalised:  # sum (a - b)^2 from the centred terms
        n = p.window_size
        d = per_filter(mean)  # d = mu - c
        if c is not None:
            d = d - xp.reshape(c, (b, 1, p.P, *ones))
        # B1 is not 0 once the mean of b is rounded
        y = s2 + (per_filter(sq) + d * (n * d + 2 * per_filter(total)))
        y -= 2 * d * s1  # (in place where arrays are mutable: fewer block-sized arrays)
        y -= 2 * xp.astype(dot, f64)
        y = xp.clip(y, min=0)
        if p.integer_inputs and metric.rounds_integers:
            y = xp.round(y)
        return xp.astype(y, dot.dtype)
    spread = s2 - s1 * s1 / p.window_size if metric.centred else s2
    flat = spread <= float(noise_floor(p, 1.0)) * s2  # False for NaN: those stay NaN
    safe = xp.where(flat, xp.ones_like(spread), spread)
    inv_a = xp.astype(xp.where(flat, xp.zeros_like(spread), 1 / xp.sqrt(safe)), dot.dtype)
    y = dot * inv_a
    y *= xp.astype(per_filter(inv_norm), dot.dtype)  # (in place where arrays are mutable)
    low, high = metric.range
    return xp.clip(y, min=low, max=high)


def zeroed(xp, p: Problem, xb, check: bool = True) -> tuple[Problem | None, Any]:
    """``(q, xz)``: the problem and chunk to compute with when ``xb`` ``(b, C, P, *S)`` or
    a constant padding value holds a NaN or Inf: ``cval`` 0 and zeros in their places;
    ``(None, xb)`` when all is finite (``check``: one host synchronisation; without it,
    for compiled code, the zeros are always put in)."""
    bad = ~xp.isfinite(xb)
    cval_bad = p.padding == "constant" and not cmath.isfinite(p.cval)
    if check and not (cval_bad or bool(xp.any(bad))):
        return None, xb
    q = replace(p, cval=0.0) if cval_bad else p
    return q, xp.where(bad, xp.zeros_like(xb), xb)


def loop_values(xp, p: Problem, y, xb, mean, covered, put):
    """``y`` ``(b, k, P, *O)`` with the windows that cover a NaN or Inf of ``xb``
    ``(b, C, P, *S)`` (or of a constant padding value) set to the float64 loop's value:
    NaN, or +Inf for an ``inf_gives_inf`` metric where the window covers no NaN. Only
    for the finite filters (``mean`` ``(k, P)``, NaN or Inf where a filter holds one:
    those give NaN everywhere already).

    ``covered(mask, padded)``: the backend's windows ``(b, P, *O)`` that cover a True of
    ``mask`` ``(b, P, *S)``, with the padding True when ``padded``
    (``nonfinite.affected_windows`` for NumPy, ``tensors.covered_windows``, the
    portable engine's window sums of indicators); ``put(y, where, value)``: ``y`` with
    ``value`` at ``where`` (:func:`put_in_place` for mutable arrays)."""
    constant = p.padding == "constant"
    ones = (1,) * p.ndim
    finite = xp.reshape(xp.isfinite(mean), (1, *mean.shape, *ones))
    bad = xp.any(~xp.isfinite(xb), axis=1)
    any_w = xp.expand_dims(covered(bad, constant and not cmath.isfinite(p.cval)), axis=1)
    if not metric_of(p.metric).inf_gives_inf:
        return put(y, any_w & finite, float("nan"))
    nan = xp.any(xp.isnan(xb), axis=1)
    nan_w = xp.expand_dims(covered(nan, constant and cmath.isnan(p.cval)), axis=1)
    y = put(y, any_w & ~nan_w & finite, float("inf"))
    return put(y, nan_w & finite, float("nan"))


def put_in_place(y, where, value: float):
    """``y`` with ``value`` written at ``where`` (NumPy arrays and torch tensors)."""
    y[where] = value
    return y
