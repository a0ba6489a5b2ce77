"""Masked metrics (``mask=``): each template position weighted by ``m`` in [0, 1], with
OpenCV's formulas for masked ``matchTemplate``, around any correlation method.

For a window ``a`` of ``x`` and a template ``b`` with weights ``m`` (``n`` values, the
summed axes included; a mask shared by channels or templates is broadcast):

=========  ===============================================  ============================
metric     value                                            OpenCV
=========  ===============================================  ============================
dot        ``sum m^2 a b``                                  TM_CCORR
ssd        ``sum (m (a - b))^2``                            TM_SQDIFF
sad        ``sum m |a - b|``                                (none)
cosine     ``sum m^2 a b / sqrt(sum (m b)^2 sum (m a)^2)``  TM_CCORR_NORMED
ncc        ``sum a' b' / sqrt(sum a'^2 sum b'^2)`` with      TM_CCOEFF_NORMED (one
           ``a' = m (a - mu_a)``, ``b' = m (b - mu_b)``,    channel; with several, OpenCV
           ``mu = sum m v / sum m`` (weighted means)        centres each channel alone)
=========  ===============================================  ============================

Each is a few correlations, computed by the plan's method (``direct`` or ``fft``, or a
torch method) block by block, so strides, dilations, modes, padding, spec roles, fused
reductions and the memory budget work as without a mask:

- ``dot = x' * u`` with the weighted templates ``u = m^2 (b - mu_b)`` (ssd: ``m^2 (b -
  mu)``, ``mu`` the ``m^2``-weighted mean; dot, cosine: ``m^2 b``);
- ``s1 = x' * m^2``, ``s2 = x'^2 * m^2`` and, for ncc with weights other than 0 and 1,
  ``s0 = x' * m``, in float64 (one bank of masks when they are shared by the templates;
  the channels of ``x`` summed first when the mask is shared by channels),

where ``x'`` is ``x`` centred by its item's mean (ssd, ncc: it keeps the data's contrast,
not its brightness). Then, per window, with ``W1 = sum m``, ``W2 = sum m^2``,
``B1 = sum u`` and ``B2 = sum m^2 (b - mu_b)^2`` (cosine: ``sum m^2 b^2``):

- ssd: ``s2 - 2 dot - 2 d s1 + B2 + d (d W2 + 2 B1)`` with ``d = mu - c``, at least 0;
- ncc: ``(dot - mu_a B1) / sqrt(spread B2)``, ``mu_a = s0 / W1``, ``spread = s2 - 2 mu_a
  s1 + mu_a^2 W2``;
- cosine: ``dot / sqrt(s2 B2)``.

A window whose spread (ncc) or weighted sum of squares (cosine) is at the rounding
noise of its sums is flat: 0, as without a mask; so is a template with ``B2 = 0`` or an
all-zero mask; ncc and cosine are clipped to [-1, 1]. ``sad`` adds ``m |a - b|`` tap by
tap (the taps of weight 0 skipped). A template position of weight 0 is not read at all:
a NaN or Inf there (an invalid pixel masked out) changes nothing. Windows that cover a
NaN or Inf of ``x`` take the unmasked rule (NaN; ssd and sad +Inf over an Inf and no
NaN), whatever their weight there.

>>> import numpy as np, batchconv as bc
>>> x = np.array([[0.0, 1.0, 5.0, 3.0, 9.0]])
>>> bc.correlate(x, np.array([0.0, 1.0, 7.0]), metric="ssd", mask=np.array([1, 1, 0]))
array([[ 0., 17., 29.]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import product
from math import prod
from types import ModuleType
from typing import Any

import numpy as np

from ..problem import Problem
from . import metric_of
from .formula import centre, loop_values, put_in_place, zeroed
from .rules import inner_problem

__all__ = [
    "MaskInfo",
    "MaskedMethod",
    "MaskedSad",
    "check_mask",
    "host_mask",
    "mask_info",
    "mask_problem",
    "template_masks",
    "with_mask",
]

_EPS = float(np.finfo(np.float64).eps)


def host_mask(mask) -> np.ndarray:
    """``mask`` as a NumPy array, whatever its library: a torch tensor's values copied
    to the host (booleans included), a Dask or JAX array computed and converted. A
    mask is small, the size of the filters."""
    if hasattr(mask, "detach") and hasattr(mask, "cpu"):  # torch
        return mask.detach().cpu().numpy()
    return np.asarray(mask)


def check_mask(
    mask, w_shape: tuple[int, ...], w_letters: str = "", sliding: str = "", w_summed: str = ""
) -> np.ndarray:
    """``mask`` as float64 weights broadcast to ``w_shape`` (a read-only view):
    booleans and integers are binary (nonzero: 1, as OpenCV reads an 8-bit mask), floats
    are weights in [0, 1]. A mask of exactly the template's sliding shape (the
    ``sliding`` letters' sizes, in ``w_letters``' order) is placed on those axes of ``w``
    whatever else ``w`` has (channels last, say); any other mask broadcasts against
    ``w`` as NumPy does. Raises with the rule broken.

    >>> check_mask(np.array([0, 255, 1]), (2, 3), "kt", "t")
    array([[0., 1., 1.],
           [0., 1., 1.]])
    >>> check_mask(np.ones((2, 3)), (2, 3, 4), "hwc", "hw").shape  # (h, w) on (h, w, c)
    (2, 3, 4)
    """
    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise TypeError(f"mask must hold booleans, integers or real floats, got {m.dtype}")
    if w_summed:
        raise ValueError(
            f"mask= needs every axis of w in x: the spec sums w-only axes {w_summed!r} first"
        )
    sizes = dict(zip(w_letters, w_shape, strict=True)) if sliding else {}
    template = tuple(sizes[c] for c in w_letters if c in sliding)  # (in w's order)
    if sliding and m.shape == template and m.ndim < len(w_shape):
        m = m.reshape([sizes[c] if c in sliding else 1 for c in w_letters])
    try:
        m = np.broadcast_to(m, w_shape)
    except ValueError:
        sliding_shape = f" {template}" if template else ""
        raise ValueError(
            f"mask of shape {np.shape(mask)} does not fit the filters' shape {w_shape}: "
            f"give the template's sliding shape{sliding_shape}, or a shape that "
            "broadcasts to the filters' (size 1 where shared by channels or templates)"
        ) from None
    if m.dtype.kind in "biu":
        return (m != 0).astype(np.float64)
    m = m.astype(np.float64)
    if not np.all((m >= 0) & (m <= 1)):  # (NaN fails too)
        raise ValueError(
            "a float mask holds weights in [0, 1]; for a 0/255 mask pass it as uint8, or "
            "pass mask > 0"
        )
    return m


@dataclass(frozen=True)
class MaskInfo:
    """What the planner knows of a mask (``Problem.masked``): whether one mask serves
    every template, whether it differs between channels, whether its weights are 0 and
    1 only."""

    shared: bool = False
    by_channel: bool = True
    binary: bool = False


def mask_info(m) -> MaskInfo:
    """The :class:`MaskInfo` of a checked mask ``m`` laid out as the canonical filters
    ``(K, C, P, *T)`` (a NumPy array or a tensor)."""
    return MaskInfo(
        shared=bool((m == m[:1]).all()),
        by_channel=not bool((m == m[:, :1]).all()),
        binary=bool(((m == 0) | (m == 1)).all()),
    )


def with_mask(p: Problem, mask: np.ndarray) -> Problem:
    """``p`` knowing its checked ``mask`` (w's shape, float64): its :class:`MaskInfo`."""
    from ..problem import canonical_w

    canon = canonical_w(replace(p, dtype=np.dtype(np.float64), conj=False), mask)
    return replace(p, masked=mask_info(canon))


def mask_info_of(p: Problem) -> MaskInfo:
    """``p``'s :class:`MaskInfo`; the worst case (a mask per template and channel, with
    weights) where ``p.masked`` is only True."""
    return p.masked if isinstance(p.masked, MaskInfo) else MaskInfo()


def template_masks(mask, shapes, letters: str = "", sliding: str = "") -> list | None:
    """``mask=`` for templates of several ``shapes`` (``bc.match``, ragged banks): one
    float64 mask of each template's shape (None where a list gives None), or None
    without a mask. ``mask`` is one mask for every template or a list of one per
    template; a mask of a template's ``sliding`` shape (``letters``: its axes) serves
    its other axes. Errors name the template."""
    if mask is None:
        return None
    given = list(mask) if isinstance(mask, (list, tuple)) else [mask] * len(shapes)
    if len(given) != len(shapes):
        raise ValueError(f"mask: one per template ({len(shapes)}), got {len(given)}")
    out = []
    for i, (m, shape) in enumerate(zip(given, shapes, strict=True)):
        if m is None:
            out.append(None)
            continue
        try:
            out.append(np.array(check_mask(host_mask(m), shape, letters, sliding)))
        except ValueError as e:
            raise ValueError(f"mask of template {i} (shape {tuple(shape)}): {e}") from None
    return out


def mask_problem(p: Problem, k: int, c: int, dtype=np.float64) -> Problem:
    """The plain correlation (``inner_problem``) of ``k`` filters of ``c`` channels in
    ``dtype``: the masks' bank, correlated with the float64 window statistics."""
    q = inner_problem(p)
    return replace(q, K=k, C=c, bank_shape=(k,), dtype=np.dtype(dtype))


@dataclass
class MaskedState:
    inner: Problem  # the weighted templates' correlation
    state: object  # its method state (of u)
    stats: Problem | None  # the masks' correlation (float64), None for dot
    m2: object  # method state of the m^2 bank (float64)
    m1: object  # of the m bank (ncc with weights other than 0 and 1), else None
    shared: bool  # one mask for every template (its statistics computed once per block)
    by_channel: bool  # the mask differs between channels (else x's channels summed first)
    binary: bool  # weights 0 and 1 only (integer inputs then give integer ssd and sad)
    mean: Any  # (K, P) float64: the filters' means (NaN where a filter holds one)
    # the rest for ssd, ncc and cosine only (None for dot):
    centre: Any = None  # (K, P) float64: ssd's mu (m^2-weighted), ncc's mu_b (m-weighted)
    sq: Any = None  # (K, P) float64: B2
    inv_norm: Any = None  # (K, P) float64: 1 / sqrt(B2), 0 for flat templates
    total: Any = None  # (K, P) float64: B1
    w1: Any = None  # (Km, P) float64: sum m
    w2: Any = None  # (Km, P) float64: sum m^2
    m2_norm: Any = None  # (Km, P) float64: |m^2|, for the FFT's rounding in the flat floor


class _Ops:
    """What differs between NumPy arrays and torch tensors here: the namespace, float64,
    padding, contiguity, the windows covering a NaN/Inf, clipping in place."""

    def __init__(self, like):
        if isinstance(like, np.ndarray):
            from ..geometry import pad_sliding
            from ..nonfinite import affected_windows

            self.xp, self.f64 = np, np.float64
            self.pad = lambda x, p: pad_sliding(x, p.geoms, p.padding, p.cval, 3)
            self.contiguous = np.ascontiguousarray
            self.covered = affected_windows
            self.clip = lambda y, low, high: np.clip(y, low, high, out=y)
        else:
            import torch

            from ..tensors import covered_windows, namespace, pad_sliding

            self.xp, self.f64 = namespace(), torch.float64
            self.pad = pad_sliding
            self.contiguous = lambda t: t.contiguous()
            self.covered = covered_windows
            self.clip = lambda y, low, high: y.clamp_(low, high)


def _statistics(xp, p: Problem, wc, mc, f64):
    """Per template ``(K, P)``: the mean, the centre ``mu``, ``u`` (the correlated
    templates, in ``wc``'s dtype), ``B1``, ``B2``, and per mask ``(Km, P)`` ``W1``,
    ``W2``, ``|m^2|``."""
    metric = metric_of(p.metric)
    axes = (1, *range(3, 3 + p.ndim))
    ones = (1,) * (1 + p.ndim)
    m64 = xp.astype(mc, f64)
    m2 = m64 * m64
    if xp.isdtype(wc.dtype, "complex floating"):  # (dot only)
        u = wc * xp.astype(m2, wc.dtype)
        return xp.mean(wc, axis=axes), None, u, None, None, None, None, None
    w64 = xp.astype(wc, f64)
    if metric.plain:  # the templates weighted by m^2, nothing else
        return xp.mean(w64, axis=axes), None, xp.astype(m2 * w64, wc.dtype), *(None,) * 5
    full_m1 = xp.sum(m64 * xp.ones_like(w64), axis=axes)  # (K, P)
    full_m2 = xp.sum(m2 * xp.ones_like(w64), axis=axes)
    mean = xp.mean(w64, axis=axes)
    if metric.centred:
        if metric.normalised:  # ncc: OpenCV's m-weighted mean
            weights, total_w = m64, full_m1
        else:  # ssd: any centre is exact (B1 is kept); the m^2-weighted one makes B1 ~ 0
            weights, total_w = m2, full_m2
        nonzero = total_w != 0
        safe = xp.where(nonzero, total_w, xp.ones_like(total_w))
        mu = xp.where(nonzero, xp.sum(weights * w64, axis=axes) / safe, mean)
        u = m2 * (w64 - xp.reshape(mu, (p.K, 1, p.P, *ones[1:])))
        sq = xp.sum(m2 * (w64 - xp.reshape(mu, (p.K, 1, p.P, *ones[1:]))) ** 2, axis=axes)
    else:
        mu = xp.zeros_like(mean)
        u = m2 * w64
        sq = xp.sum(u * w64, axis=axes)
    total = xp.sum(u, axis=axes)
    positive = sq > 0
    inv = xp.where(
        positive, 1 / xp.sqrt(xp.where(positive, sq, xp.ones_like(sq))), xp.zeros_like(sq)
    )
    return mean, mu, xp.astype(u, wc.dtype), total, sq, inv, full_m1, full_m2


def _ignored(xp, wc, mc):
    """The templates with 0 where their weight is 0: a position of weight 0 is not read
    (a NaN or Inf there, an invalid pixel masked out, changes nothing)."""
    return xp.where(mc == 0, xp.zeros_like(wc), wc)


class MaskedMethod:
    """dot, ssd, ncc or cosine with a mask, on top of a correlation method (the method
    interface of ``methods/__init__.py``: prepare, compute, fuses_reduce,
    workspace_bytes, describe); for NumPy arrays and torch tensors alike (Dask arrays:
    each task's NumPy plan)."""

    def __init__(self, method: ModuleType):
        self.method = method

    def prepare(self, p: Problem, filters, budget: int | None = None) -> MaskedState:
        """``filters``: the canonical templates and mask ``(wc, mc)``, both ``(K, C, P,
        *T)``."""
        wc, mc = filters
        ops = _Ops(wc)
        xp, f64 = ops.xp, ops.f64
        metric = metric_of(p.metric)
        wc = _ignored(xp, wc, mc)
        mean, mu, u, total, sq, inv, w1, w2 = _statistics(xp, p, wc, mc, f64)
        inner = inner_problem(p)
        state = self.method.prepare(inner, ops.contiguous(u), budget) if p.window_size else None
        m64 = xp.astype(mc, f64)
        info = mask_info(m64)
        shared, by_channel = info.shared, info.by_channel
        st = MaskedState(inner, state, None, None, None, shared, by_channel, info.binary, mean)
        if metric.plain or not p.window_size:
            return st
        bank = m64[:1] if shared else m64
        bank = bank if by_channel else bank[:, :1]
        st.stats = mask_problem(p, bank.shape[0], bank.shape[1])
        st.m2 = self.method.prepare(st.stats, ops.contiguous(bank * bank), budget)
        if metric.centred and metric.normalised and not info.binary:  # ncc: the m-weighted mean
            st.m1 = self.method.prepare(st.stats, ops.contiguous(bank), budget)
        kept = slice(0, 1) if shared else slice(None)
        m4 = xp.reshape((bank * bank) ** 2, (bank.shape[0], bank.shape[1], p.P, -1))
        st.centre, st.sq, st.inv_norm, st.total = mu, sq, inv, total
        st.w1, st.w2, st.m2_norm = w1[kept, ...], w2[kept, ...], xp.sqrt(xp.sum(m4, axis=(1, 3)))
        return st

    def fuses_reduce(self, p: Problem) -> bool:
        return False

    def describe(self, p: Problem, st: MaskedState, budget: int | None, device=None) -> str:
        """How the masked metric is computed, then the correlation method's own line."""
        inner = self.method.describe(st.inner, st.state, budget, device)
        if st.stats is None:
            return f"{p.metric} with a mask: the templates weighted by m^2 (OpenCV's form)\n{inner}"
        masks = "one mask for all templates" if st.shared else "a mask per template"
        channels = "per channel" if st.by_channel else "shared by channels"
        n = 2 if st.m1 is None else 3
        return (
            f"{p.metric} with a mask ({masks}, {channels}): correlations with the weighted "
            f"templates + {n} float64 correlations of x', x'^2 with the masks "
            f"(see metrics/masked.py)\n{inner}"
        )

    def workspace_bytes(self, p: Problem, b: int, k: int, budget: int | None = None) -> int:
        """The block's temporaries, phase by phase as :meth:`_compute` holds them (the
        mask's sharing from ``p.masked``, a :class:`MaskInfo`): (a) the padded chunk, its
        centred copy and the correlation's own temporaries; (b) the centred chunk, the
        correlation and the float64 moments being made; (c) the correlation, the
        moments, the masks' correlations and their own temporaries; (d) the
        combination's float64 blocks. Plus the mask of non-finite inputs throughout."""
        info = mask_info_of(p)
        r = p.dtype.itemsize
        sp = prod(g.padded for g in p.geoms)
        padded = b * p.C * p.P * sp
        outs = b * k * p.P * prod(p.O)
        bad = b * p.C * p.P * prod(p.S)  # ~isfinite(x)
        pad = padded * r if any(g.lo or g.hi for g in p.geoms) else 0
        inner = self.method.workspace_bytes(inner_problem(p), b, k, budget)
        phase_a = pad + padded * r + inner + outs * r  # (the block: not written in place)
        if metric_of(p.metric).plain:
            return bad + phase_a
        km, cm = (1 if info.shared else k), (p.C if info.by_channel else 1)
        moments = 2 * b * cm * p.P * sp * 8
        mouts = b * km * p.P * prod(p.O)
        phase_b = padded * r + outs * r + 2 * padded * 8 + (0 if info.by_channel else moments)
        n_maps = 2 if info.binary or not metric_of(p.metric).centred else 3
        own = self.method.workspace_bytes(mask_problem(p, km, cm), b, km, budget)
        phase_c = outs * r + moments + (n_maps - 1) * mouts * 8 + max(own, mouts * 8)
        if metric_of(p.metric).normalised:  # the block and one product, in its dtype
            phase_d = 2 * outs * r + 9 * mouts * 8
        else:
            phase_d = 3 * outs * 8 + outs * r + 2 * mouts * 8
        return bad + max(phase_a, phase_b, phase_c, phase_d)

    def compute(self, p: Problem, st: MaskedState, xc, k0: int, k1: int, out=None):
        """The block ``(b, k1 - k0, P, *O)`` of the masked metric for the chunk ``xc``."""
        ops = _Ops(xc)
        xp = ops.xp
        b = xc.shape[0]
        if not b * (k1 - k0) * p.P * prod(p.O) or p.window_size == 0:
            y = xp.zeros((b, k1 - k0, p.P, *p.O), dtype=xc.dtype)
            if out is None:
                return y
            out[...] = 0
            return out
        exact = metric_of(p.metric).plain and getattr(self.method, "EXACT_FOR_INTEGERS", False)
        q, xz = (None, xc) if exact else zeroed(xp, p, xc)  # (direct dot: as the loop)
        y = self._compute(ops, q or p, st, xz, k0, k1)
        if q is not None:
            cover = _cover(ops, p)
            y = loop_values(xp, p, y, xc, st.mean[k0:k1], cover, put_in_place)
        if out is None:
            return y
        out[...] = y
        return out

    def _compute(self, ops: _Ops, p: Problem, st: MaskedState, xc, k0: int, k1: int):
        """The block, in this order (``workspace_bytes`` counts it so): the padded,
        centred chunk and its correlation with the weighted templates; the float64
        moments ``x'``, ``x'^2`` and their correlations with the masks (the moments
        freed then, their norms kept for the flat floor of an FFT); the combination,
        in place where it can be."""
        xp, f64 = ops.xp, ops.f64
        metric = metric_of(p.metric)
        xw, c = centre(xp, p, xc, ops.pad(xc, p), f64)
        xw = ops.contiguous(xw)
        dot = self.method.compute(st.inner, st.state, xw, k0, k1)  # (b, k, P, *O)
        if metric.plain:
            return dot
        v1, v2 = self._moments(ops, st, xw)
        del xw
        j0, j1 = (0, 1) if st.shared else (k0, k1)
        s1 = self.method.compute(st.stats, st.m2, v1, j0, j1)
        s2 = self.method.compute(st.stats, st.m2, v2, j0, j1)
        s0 = None if st.m1 is None else self.method.compute(st.stats, st.m1, v1, j0, j1)
        norms = self._norms(ops, p, v1, v2)
        del v1, v2
        b, k, ones = dot.shape[0], k1 - k0, (1,) * p.ndim

        def per_filter(a):  # (K, P) statistics against (b, k, P, *O)
            return xp.reshape(a[k0:k1, ...], (1, k, p.P, *ones))

        def per_mask(a):  # (Km, P)
            a = a if st.shared else a[k0:k1, ...]
            return xp.reshape(a, (1, a.shape[0], p.P, *ones))

        w1, w2 = per_mask(st.w1), per_mask(st.w2)
        if not metric.normalised:  # ssd: s2 - 2 dot - 2 d s1 + B2 + d (d W2 + 2 B1)
            y = xp.astype(dot, f64)  # (a copy: the float64 sum is made in it)
            del dot
            d = per_filter(st.centre) - xp.reshape(c, (b, 1, p.P, *ones))
            y *= -2
            y += s2
            del s2
            y -= 2 * d * s1  # (s1 may be one mask's: broadcast)
            del s1
            y += per_filter(st.sq) + d * (d * w2 + 2 * per_filter(st.total))
            y = xp.clip(y, min=0)
            if p.integer_inputs and metric.rounds_integers and st.binary:
                y = xp.round(y)
            return xp.astype(y, xc.dtype)
        # ncc, cosine: the inverse spreads in float64 (one mask's, or each template's),
        # the block scaled by them in its own dtype, in place (as windowed.py does)
        y = dot
        if metric.centred:  # ncc: (dot - mu_a B1) / sqrt(spread B2)
            mu_a = s1 if s0 is None else s0  # (then s1 is needed again: a copy)
            mu_a = mu_a / xp.where(w1 == 0, xp.ones_like(w1), w1)
            del s0
            y -= xp.astype(mu_a, y.dtype) * xp.astype(per_filter(st.total), y.dtype)
            scale = mu_a * mu_a
            scale *= w2
            scale += s2  # s2 + mu_a^2 W2: the sums the spread is rounded from
            del s2
            s1 *= 2 * mu_a
            spread = scale - s1  # s2 - 2 mu_a s1 + mu_a^2 W2
            del s1
        else:  # cosine: dot / sqrt(s2 B2)
            mu_a, scale, spread = None, s2, s2
        floor = self._floor(p, st, scale, norms, mu_a, k0, k1, xp)
        del scale, mu_a
        flat = spread <= floor
        del floor
        flat = flat | (w1 == 0)
        spread[flat] = 1.0
        inv_a = xp.sqrt(spread)
        del spread
        inv_a = 1 / inv_a
        inv_a[flat] = 0.0
        del flat
        y *= xp.astype(inv_a, y.dtype)
        del inv_a
        y *= xp.astype(per_filter(st.inv_norm), y.dtype)
        low, high = metric.range
        return ops.clip(y, low, high)

    @staticmethod
    def _moments(ops: _Ops, st: MaskedState, xw):
        """``x'`` and ``x'^2`` in float64 (their channels summed where the mask is shared
        by channels), contiguous."""
        xp = ops.xp
        x64 = xp.astype(xw, ops.f64)
        if st.by_channel:
            return ops.contiguous(x64), ops.contiguous(x64 * x64)
        v1 = xp.sum(x64, axis=1, keepdims=True)
        x64 *= x64
        return ops.contiguous(v1), ops.contiguous(xp.sum(x64, axis=1, keepdims=True))

    def _norms(self, ops: _Ops, p: Problem, v1, v2):
        """Per item ``(b, P)``: the norms of ``x'`` and ``x'^2`` and the FFT's points, for
        a method that rounds globally (None for an exact one)."""
        if getattr(self.method, "EXACT_FOR_INTEGERS", False):
            return None
        xp = ops.xp
        axes = (1, *range(3, 3 + p.ndim))
        norm1 = xp.sqrt(xp.sum(v1 * v1, axis=axes))
        norm2 = xp.sqrt(xp.sum(v2 * v2, axis=axes))
        return norm1, norm2, prod(v1.shape[3:])

    @staticmethod
    def _floor(p: Problem, st: MaskedState, scale, norms, mu_a, k0, k1, xp):
        """Per window: a spread at or below this is rounding noise of its sums: a few
        ``eps n`` times the sums' own ``scale``, and for a method that rounds globally (an
        FFT: ``norms``) ``eps log2(N)`` times the norms of the item's ``x'^2`` (and
        ``|mu_a| x'``) and of the mask."""
        floor = scale * (32 * _EPS * p.window_size)
        if norms is None:
            return floor
        norm1, norm2, points = norms
        b, ones = norm1.shape[0], (1,) * p.ndim
        m2n = st.m2_norm if st.shared else st.m2_norm[k0:k1, ...]
        m2n = xp.reshape(m2n, (1, m2n.shape[0], p.P, *ones))
        glob = xp.reshape(norm2, (b, 1, p.P, *ones)) * m2n
        if mu_a is not None:
            glob = glob + 2 * xp.abs(mu_a) * (xp.reshape(norm1, (b, 1, p.P, *ones)) * m2n)
        floor += glob * (16 * _EPS * max(math.log2(max(points, 2)), 1))
        return floor


def _cover(ops: _Ops, p: Problem):
    return lambda mask, padded: ops.covered(p, mask, padded)


@dataclass
class MaskedSadState:
    filters: Any  # (K, C, P, *T) compute dtype
    mask: Any  # (K, C, P, *T) float64 weights
    taps: list  # per (c, *t): whether any template weights it
    binary: bool  # weights 0 and 1 only (integer inputs give integers)
    mean: Any  # (K, P) float64 (NaN where a filter holds one)


class MaskedSad:
    """``sum m |a - b|`` tap by tap (the method interface), on NumPy arrays or torch
    tensors: one pass over the block per weighted tap, all templates at once."""

    def prepare(self, p: Problem, filters, budget: int | None = None) -> MaskedSadState:
        wc, mc = filters
        ops = _Ops(wc)
        xp = ops.xp
        wc = _ignored(xp, wc, mc)
        m64 = xp.astype(mc, ops.f64)
        axes = (1, *range(3, 3 + p.ndim))
        weighted = xp.any(xp.reshape(m64 != 0, (p.K, p.C, p.P, -1)), axis=(0, 2))  # (C, T)
        taps = [bool(v) for v in (weighted.ravel() if xp is np else weighted.reshape(-1))]
        mean = xp.mean(xp.astype(wc, ops.f64), axis=axes)
        return MaskedSadState(wc, m64, taps, mask_info(m64).binary, mean)

    def fuses_reduce(self, p: Problem) -> bool:
        return False

    def describe(self, p: Problem, st: MaskedSadState, budget: int | None, device=None) -> str:
        n = sum(st.taps)
        return f"sad with a mask: sum m |a - b| tap by tap ({n} weighted taps of {len(st.taps)})"

    def workspace_bytes(self, p: Problem, b: int, k: int, budget: int | None = None) -> int:
        """The padded chunk, the float64 sums and one tap's two float64 temporaries."""
        padded = b * p.C * p.P * prod(g.padded for g in p.geoms) * p.dtype.itemsize
        return b * p.C * p.P * prod(p.S) + padded + 3 * b * k * p.P * prod(p.O) * 8

    def compute(self, p: Problem, st: MaskedSadState, xc, k0: int, k1: int, out=None):
        ops = _Ops(xc)
        xp = ops.xp
        q, xz = zeroed(xp, p, xc)
        y = self._compute(ops, q or p, st, xz, k0, k1)
        if q is not None:
            y = loop_values(xp, p, y, xc, st.mean[k0:k1], _cover(ops, p), put_in_place)
        if out is None:
            return y
        out[...] = y
        return out

    def _compute(self, ops: _Ops, p: Problem, st: MaskedSadState, xc, k0: int, k1: int):
        xp, f64 = ops.xp, ops.f64
        b, k = xc.shape[0], k1 - k0
        acc = xp.zeros((b, k, p.P, *p.O), dtype=f64)
        if not b * k * p.P * prod(p.O) or p.window_size == 0:
            return xp.astype(acc, xc.dtype)
        xw = ops.pad(xc, p)
        ones = (1,) * p.ndim
        w64 = xp.astype(st.filters[k0:k1, ...], f64)
        m = st.mask[k0:k1, ...]
        ms = [range(g.m) for g in p.geoms]
        for i, (c, *t) in enumerate(product(range(p.C), *ms)):
            if not st.taps[i]:
                continue
            index = [slice(None), slice(c, c + 1), slice(None)]
            for j, g in zip(t, p.geoms, strict=True):
                start = j * g.dilation
                index.append(slice(start, start + (g.out - 1) * g.stride + 1, g.stride))
            window = xp.astype(xw[tuple(index)], f64)  # (b, 1, P, *O)
            tap = (slice(None), c, slice(None), *t)
            wt = xp.reshape(w64[tap], (1, k, p.P, *ones))
            mt = xp.reshape(m[tap], (1, k, p.P, *ones))
            acc = acc + mt * xp.abs(window - wt)
        if p.integer_inputs and st.binary:
            acc = xp.round(acc)
        return xp.astype(acc, xc.dtype)
