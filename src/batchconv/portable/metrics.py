"""The similarity metrics on array-API arrays: the windowed ones (ssd, ncc, cosine: a
correlation by a portable method plus float64 window sums) and those with no product
form (sad: ``|x - w|`` summed over the taps, gathered a group at a time). The registry's flags
(``metrics.Metric``) select the formula; no name is compared.

The formulas are ``metrics/formula.py``'s (shared with torch tensors): ``x`` centred by its item's
mean (``centred`` metrics), the filters centred (``recentre_filters``: twice), the
correlation ``a'.b^`` of the padded, centred block by the wrapped method on the *inner
problem* (``rules.inner_problem``), and float64 window sums ``A1``, ``A2`` of ``x'`` and
``x'^2`` (the backend's shift-and-add, local to each window). Normalised metrics give
exactly 0 for flat windows (``rules.noise_floor`` of the window's own ``A2``) and flat
filters, and are clipped to the metric's range. Windows that cover a NaN or Inf (or a
non-finite ``cval``) get the float64 loop's value: NaN, or for ``inf_gives_inf``
metrics +Inf where no NaN is covered; they are found by window sums of indicators,
on the device.

>>> import numpy as np, batchconv as bc
>>> xps = __import__("pytest").importorskip("array_api_strict")
>>> x = xps.asarray([[0.0, 1.0, 2.0, 1.0, 1.0, 1.0]])
>>> np.from_dlpack(bc.correlate(x, xps.asarray([1.0, 2.0, 3.0]), metric="ncc")).round(3)
array([[ 1.   ,  0.   , -0.866,  0.   ]])
"""

from __future__ import annotations

from functools import partial
from math import prod
from typing import Any, NamedTuple

import numpy as np

from ..metrics import metric_of
from ..metrics.formula import centre, combine, filter_statistics, loop_values, zeroed
from ..metrics.rules import inner_problem, valid_geometry
from ..problem import Problem, problem_cache
from .methods import DIRECT, _offsets, _outputs, compute

__all__ = ["Windowed", "SAD"]

_F64 = np.dtype(np.float64)
_SAD_TAPS = 64  # SAD sums at most this many taps in the compute dtype, then in float64


# the plain correlation of the padded, centred chunk (one per problem: it is asked for
# on every block)
_inner = problem_cache(maxsize=64)(inner_problem)


class WindowedState(NamedTuple):
    state: Any  # the method's state for the centred (or, for cosine, plain) filters
    mean: Any  # (K, P) float64: the filters' means
    sq: Any  # (K, P) float64: |b^|^2 (or |b|^2 when not centred)
    inv_norm: Any  # (K, P) float64: 1 / sqrt(sq), 0 for flat filters
    total: Any  # (K, P) float64: sum b^ as correlated (ssd's B1)


class Windowed:
    """ssd, ncc, cosine around a portable correlation method."""

    def __init__(self, method):
        self.method = method
        self.name = method.name

    def prepare(self, be, p: Problem, wc) -> WindowedState:
        filters, mean, sq, inv, total = filter_statistics(be.xp, p, wc, be.dtype(_F64))
        return WindowedState(self.method.prepare(be, _inner(p), filters), mean, sq, inv, total)

    def pure(self, be, p: Problem, st: WindowedState, xb, k0: int, k1: int, budget: int):
        """The block where ``x`` and ``cval`` are finite (``ok`` says so)."""
        xp = be.xp
        y, ok = self._compute(be, p, st, xb, k0, k1, budget, pure=True)
        finite = xp.all(xp.isfinite(xb))
        if p.padding == "constant" and not np.isfinite(p.cval):
            finite = be.scalar(False, xp.bool)
        return y, finite if ok is None else finite & ok

    def fix(self, be, p: Problem, st: WindowedState, xb, k0: int, k1: int, budget: int):
        """NaN and Inf (of ``x`` or ``cval``) replaced by zeros for the computation, then
        the windows that cover one set to the loop's value (``formula.py``'s policy)."""
        xp = be.xp
        q, xz = zeroed(xp, p, xb, check=False)
        y, _ = self._compute(be, q, st, xz, k0, k1, budget)

        def put(y, where, value):
            return xp.where(where, be.scalar(value, y.dtype), y)

        covered = partial(_covered, be, p)
        return loop_values(xp, p, y, xb, st.mean[k0:k1, ...], covered, put)

    def _compute(
        self, be, p: Problem, st: WindowedState, xb, k0: int, k1: int, budget: int, pure=False
    ):
        """``(block, ok)``: the metric from the wrapped method's correlation (its pure
        block and ``ok`` when ``pure``, else its exact block and None)."""
        xp, f64 = be.xp, be.dtype(_F64)
        xw, c = centre(xp, p, xb, be.pad(xb, p.geoms, p.padding, p.cval, 3), f64)
        inner = _inner(p)
        if pure:
            dot, ok = self.method.pure(be, inner, st.state, xw, k0, k1, budget)
        else:
            dot, ok = compute(self.method, be, inner, st.state, xw, k0, k1, budget), None
        x64 = xp.astype(xw, f64)
        geoms = tuple(valid_geometry(g) for g in p.geoms)
        s1 = be.window_sums(xp.sum(x64, axis=1), geoms, 2)  # (b, P, *O)
        s2 = be.window_sums(xp.sum(x64 * x64, axis=1), geoms, 2)
        del x64
        s1, s2 = xp.expand_dims(s1, axis=1), xp.expand_dims(s2, axis=1)  # (b, 1, P, *O)
        stats = (st.mean, st.sq, st.inv_norm, st.total)
        return combine(xp, p, dot, s1, s2, c, stats, k0, k1, f64), ok

    def workspace_bytes(self, p: Problem, b: int, k: int, budget: int) -> int:
        r = p.dtype.itemsize
        padded = b * p.C * p.P * prod(g.padded for g in p.geoms)
        outs_b, outs = b * p.P * _outputs(p), b * k * p.P * _outputs(p)
        held = b * p.C * p.P * prod(p.S) * (1 + r)  # the NaN/Inf mask, a zeroed copy
        held += 2 * padded * r  # the padded chunk and its centred copy
        sums = padded * 8 * 3 + 2 * b * p.P * prod(g.padded for g in p.geoms) * 8
        correlate = self.method.workspace_bytes(_inner(p), b, k, budget)
        combine = outs * (r + 4 * 8) + 4 * outs_b * 8
        return held + max(correlate, sums) + outs * r + combine

    def state_bytes(self, p: Problem) -> int:
        return self.method.state_bytes(_inner(p)) + p.K * p.P * 32

    def flops(self, p: Problem) -> float:
        return self.method.flops(_inner(p))

    def describe(self, be, p: Problem, st: WindowedState, budget: int, b: int) -> str:
        what = (
            "the centred x with the centred filters"
            if metric_of(p.metric).centred
            else "x with the filters"
        )
        return (
            f"{p.metric}: correlations of {what} + float64 window sums of x and x^2 "
            f"(shift and add, portable/metrics.py)\n"
            + self.method.describe(be, _inner(p), st.state, budget, b)
        )


def _covered(be, p: Problem, mask, padded_bad: bool):
    """``(b, P, *O)`` booleans: the windows that cover a True of ``mask`` ``(b, P, *S)``,
    the padding included (True there when ``padded_bad``)."""
    xp = be.xp
    ind = xp.astype(mask, be.dtype(np.dtype(np.float32)))
    ind = be.pad(ind, p.geoms, p.padding, 1.0 if padded_bad else 0.0, 2)
    return be.window_sums(ind, p.geoms, 2) > 0


class SAD:
    """sum |x - w| over each window (no product form): the windows' samples gathered a
    group of taps at a time (as ``direct`` gathers them), ``|x - w|`` summed over the
    group and the channels, the groups added in float64."""

    name = "direct"
    exact_for_integers = True

    def prepare(self, be, p: Problem, wc):
        return be.xp.reshape(wc, (p.K, p.C, p.P, prod(p.T)))  # (K, C, P, taps)

    def group(self, p: Problem, budget: int) -> int:
        """Taps per group: as ``direct``'s, and at most ``_SAD_TAPS``."""
        return min(DIRECT.group(p, budget), _SAD_TAPS)

    def pure(self, be, p: Problem, wt, xb, k0: int, k1: int, budget: int):
        return self.fix(be, p, wt, xb, k0, k1, budget), None  # (exact: NaN/Inf stay local)

    def fix(self, be, p: Problem, wt, xb, k0: int, k1: int, budget: int):
        xp, f64, dt = be.xp, be.dtype(_F64), be.dtype(p.dtype)
        b, k, C, P = xb.shape[0], k1 - k0, p.C, p.P
        xpad = be.pad(xb, p.geoms, p.padding, p.cval, 3)
        tap_at, out_at, n = _offsets(p)
        flat = xp.reshape(xpad, (b, C, P, n))
        g, total = self.group(p, budget), None
        for t0 in range(0, tap_at.size, g):
            t1 = min(t0 + g, tap_at.size)
            where = xp.reshape(be.index(tap_at[t0:t1, None] + out_at[None, :]), (-1,))
            cols = xp.reshape(xp.take(flat, where, axis=3), (b, 1, C, P, t1 - t0, out_at.size))
            w = xp.reshape(wt[k0:k1, :, :, t0:t1], (1, k, C, P, t1 - t0, 1))
            d = xp.astype(xp.sum(xp.abs(cols - w), axis=(2, 4)), f64)  # (b, k, P, O)
            total = d if total is None else total + d
        if p.integer_inputs:  # (exact already: float64 sums of integers)
            total = xp.round(total)
        return xp.astype(xp.reshape(total, (b, k, P, *p.O)), dt)

    def workspace_bytes(self, p: Problem, b: int, k: int, budget: int) -> int:
        r = p.dtype.itemsize
        padded = b * p.C * p.P * prod(g.padded for g in p.geoms) * r
        outs = b * k * p.P * _outputs(p)
        group = b * p.C * p.P * self.group(p, budget) * _outputs(p) * r
        # the padded block, a group's samples, their differences with the filters (and
        # their absolute values); the group's sums and the float64 total
        return padded + group + 2 * k * group + outs * (r + 16)

    def state_bytes(self, p: Problem) -> int:
        return p.K * p.C * p.P * prod(p.T) * p.dtype.itemsize

    def flops(self, p: Problem) -> float:
        return 3.0 * p.B * p.K * p.P * p.C * prod(p.T) * _outputs(p)

    def describe(self, be, p: Problem, st, budget: int, b: int) -> str:
        return (
            f"{p.metric}: no product form: |x - w| summed over {prod(p.T)} taps, "
            f"{self.group(p, budget)} gathered at a time, the groups added in float64 "
            f"({be.name})"
        )


SAD_KERNEL = SAD()
