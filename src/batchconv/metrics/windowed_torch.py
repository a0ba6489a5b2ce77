"""ssd, ncc and cosine on torch tensors, on their own device: ``formula.py``'s formulas
(array-api-compat's torch namespace) on top of a torch correlation method
(``torch_direct`` or ``torch_fft``).

The same decomposition as the NumPy metrics (see ``windowed.py`` for the table): ``x``
centred by its item's mean and the centred filters correlated by the torch method, plus
float64 window sums ``A1``, ``A2`` of ``x'`` and ``x'^2``. Here the window sums add each
window's own samples (``Tensor.unfold`` then a sum, one sliding axis at a time), so their
rounding error is local to the window by construction and the flatness floor
(``rules.noise_floor``) takes the window's own ``A2`` as its scale. Flat windows and
flat filters give exactly 0, ncc and cosine are clipped to [-1, 1], and windows that
cover a NaN or Inf get the loop's value (``formula.zeroed`` and ``loop_values``, the
windows found on the device by ``tensors.covered_windows``).

>>> import batchconv as bc
>>> torch = __import__("pytest").importorskip("torch")
>>> x = torch.tensor([[0.0, 1.0, 2.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
>>> bc.correlate(x, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), metric="ncc",
...              method="torch_direct").round(decimals=3)
tensor([[ 1.0000,  0.0000, -0.8660,  0.0000]], dtype=torch.float64)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from math import prod
from types import ModuleType

from ..geometry import summing_order
from ..problem import Problem
from ..tensors import covered_windows, namespace, pad_sliding, window_sums
from . import metric_of
from .formula import centre, combine, filter_statistics, loop_values, put_in_place, zeroed
from .rules import inner_problem, metric_line
from .rules import valid_geometry as _valid_geometry

__all__ = ["TorchMetricMethod"]


def _torch():
    import torch

    return torch


@dataclass
class TorchMetricState:
    inner: Problem
    state: object  # the torch method's state for the centred (or plain: cosine) filters
    mean: object  # (K, P) float64 tensor: the filters' means (ssd)
    sq: object  # (K, P) float64: |b^|^2 (ssd, ncc) or |b|^2 (cosine)
    inv_norm: object  # (K, P) float64: 1 / sqrt(sq), 0 for flat filters
    total: object  # (K, P) float64: sum b^ of the filters as correlated (ssd's B1)


class TorchMetricMethod:
    """ssd, ncc or cosine on top of a torch correlation method (the method interface of
    ``methods/__init__.py``, on tensors)."""

    def __init__(self, method: ModuleType):
        self.method = method

    def describe(self, p: Problem, st: TorchMetricState, budget: int | None, device=None) -> str:
        """The metric's formula, then the correlation method's own line."""
        return f"{metric_line(p)}\n{self.method.describe(st.inner, st.state, budget, device)}"

    def prepare(self, p: Problem, wc, budget: int | None = None) -> TorchMetricState:
        """Centre the canonical filters ``wc`` (K, C, P, *T) and prepare the torch
        method on them."""
        torch = _torch()
        inner = inner_problem(p)
        K, _, P = wc.shape[:3]
        if not wc.numel():
            zeros = torch.zeros((K, P), dtype=torch.float64, device=wc.device)
            return TorchMetricState(inner, None, zeros, zeros, zeros, zeros)
        filters, mean, sq, inv, total = filter_statistics(namespace(), p, wc, torch.float64)
        state = self.method.prepare(inner, filters.contiguous(), budget)
        return TorchMetricState(inner, state, mean, sq, inv, total)

    def fuses_reduce(self, p: Problem) -> bool:
        return False

    def workspace_bytes(self, p: Problem, b: int, k: int, budget: int | None = None) -> int:
        """What :meth:`_compute` holds, in its order: the mask of non-finite inputs, the
        padded chunk (where there is padding) and its centred copy (ssd, ncc), the
        correlation (with its own temporaries while it runs); then beside it the float64
        window statistics: the channel sums of ``x'`` and ``x'^2`` as they are made,
        then the window sums axis by axis, then the combination (ssd: three float64
        blocks; ncc, cosine: two blocks in the compute dtype beside the float64 spread
        of the items)."""
        metric = metric_of(p.metric)
        r = p.dtype.itemsize
        pad_b = b * p.P * prod(g.padded for g in p.geoms)  # one channel of the chunk
        outs_b, outs = b * p.P * prod(p.O), b * k * p.P * prod(p.O)
        held = b * p.C * p.P * prod(p.S)  # ~isfinite(x)
        if any(g.lo or g.hi for g in p.geoms):
            held += p.C * pad_b * r  # pad_sliding's copy (a negative width too)
        if metric.centred:
            held += p.C * pad_b * r  # x - centre
        dot = outs * r
        correlate = self.method.workspace_bytes(inner_problem(p), b, k, budget)
        # x' as float64, its channel sum, its square and theirs; then both stacked
        stats = pad_b * 8 * max(2 * p.C + 2, p.C + 4)
        sums, sizes, current, boxes = 2 * pad_b * 8, [g.padded for g in p.geoms], 0, 0
        geoms = [_valid_geometry(g) for g in p.geoms]
        for i in summing_order(geoms):
            sizes[i] = geoms[i].out
            result = 2 * b * p.P * prod(sizes) * 8
            boxes, current = max(boxes, current + result), result
        if not metric.normalised:
            combine = 3 * outs * 8
        else:  # the spread, s1^2 (ncc) or rsqrt, the inverse; the block times both
            combine = 2 * outs * r + 3 * outs_b * 8
        return held + dot + max(correlate, stats, sums + boxes, sums + 2 * outs_b * 8 + combine)

    def compute(self, p: Problem, st: TorchMetricState, xc, k0: int, k1: int, out=None):
        """The block ``(b, k1 - k0, P, *O)`` of the metric for the canonical chunk ``xc``.
        NaN and Inf are replaced by zeros for the computation, then the windows that
        cover one get the loop's value (ssd: NaN over a NaN, else +Inf; ncc, cosine:
        NaN)."""
        torch = _torch()
        b, k = xc.shape[0], k1 - k0
        if not b * k * p.P * prod(p.O) or p.window_size == 0:
            y = torch.zeros((b, k, p.P, *p.O), dtype=xc.dtype, device=xc.device)
        else:
            xp = namespace()
            q, xz = zeroed(xp, p, xc)
            y = self._compute(q or p, st, xz, k0, k1)
            if q is not None:
                covered = partial(covered_windows, p)
                y = loop_values(xp, p, y, xc, st.mean[k0:k1], covered, put_in_place)
        if out is None:
            return y
        out.copy_(y)
        return out

    def _compute(self, p: Problem, st: TorchMetricState, xc, k0: int, k1: int):
        torch = _torch()
        xp = namespace()
        xw, c = centre(xp, p, xc, pad_sliding(xc, p), torch.float64)
        dot = self.method.compute(st.inner, st.state, xw, k0, k1)  # (b, k, P, *O)
        x64 = xw.to(torch.float64)
        sums = torch.stack((x64.sum(dim=1), x64.square().sum(dim=1)))  # (2, b, P, *Sp)
        del x64
        s1, s2 = window_sums(sums, tuple(_valid_geometry(g) for g in p.geoms), 3)
        stats = (st.mean, st.sq, st.inv_norm, st.total)
        return combine(
            xp, p, dot, s1.unsqueeze(1), s2.unsqueeze(1), c, stats, k0, k1, torch.float64
        )
