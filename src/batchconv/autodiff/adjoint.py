"""The adjoints of a correlation, written as correlations (through the planner).

In the canonical layout (``problem.py``), with ``xp`` the padded ``x`` ``(B, C, P, *U)``
and ``w`` ``(K, C, P, *T)`` (already flipped for ``convolve``), every plain correlation is

    y[b, k, p, o] = sum_{c, t} xp[b, c, p, o * s + t * d] w[k, c, p, t]

(``s`` the stride, ``d`` the dilation; ``U = (O - 1) s + (T - 1) d + 1`` per axis, the
padded length). For a cotangent ``g`` ``(B, K, P, *O)`` its two vector-Jacobian products
are correlations too:

- :func:`grad_filters`: ``gw[k, c, p, t] = sum_{b, o} g[b, k, p, o] xp[b, c, p, o s + t d]``,
  a 'valid' correlation of ``xp`` with ``g`` as the filters (dilated by ``s``, stride
  ``d``; the batch summed);
- :func:`grad_padded`: ``gxp[b, c, p, i] = sum_{k, t} gu[b, k, p, i - t d] w[k, c, p, t]``,
  a 'full' convolution of ``gu`` (``g`` with ``s - 1`` zeros between its samples) with
  ``w`` dilated by ``d`` (the bank summed);

and :func:`fold` takes ``gxp`` back through the padding: each padded sample's gradient
goes to the sample of ``x`` that numpy.pad copied there (nothing for constant padding).
Window sums (the metrics' ``s1``, ``s2``) and their adjoint are the same two with a
filter of ones. Every call here is ``bc.correlate``/``bc.convolve`` on the arrays'
own library, so the backward gets the planner's method choice, memory budget and FFT.

>>> import numpy as np
>>> from batchconv.backends.array_api import ArrayAPIBackend
>>> xp = np.arange(5.0)[None, None, None]           # (B, C, P, U)
>>> g = np.ones((1, 1, 1, 2))                       # (B, K, P, O): 2 windows, stride 2
>>> import batchconv as bc
>>> run = Runner(bc.correlate, bc.convolve, bc.plan, {})
>>> grad_filters(run, xp, g, (2,), (1,)).ravel()   # 3 taps: each summed over 2 windows
array([2., 4., 6.])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..arrays import numpy_dtype, records_grad
from ..backends.array_api import _slice, device_of
from ..geometry import AxisGeometry
from ..methods import METHODS
from ..problem import make_problem
from ..spec import FREE_LETTERS
from ..tensors import _pad_index

__all__ = [
    "Runner",
    "grad_input",
    "grad_filters_unpadded",
    "grad_filters",
    "grad_padded",
    "window_sums",
    "window_sums_adjoint",
    "fold",
    "upsample",
    "add_into",
    "mutable",
]

_SLIDING = FREE_LETTERS.replace("p", "")  # n: batch, k: bank, c: channels, p: paired


@dataclass(frozen=True)
class Runner:
    """How a backward pass runs its correlations: ``bc.correlate``, ``bc.convolve`` and
    ``bc.plan`` (handed in by ``api.py``, which owns them) with the call's ``method``,
    ``memory`` and ``workers``."""

    correlate: Callable
    convolve: Callable
    plan: Callable
    options: dict

    def __call__(
        self,
        a,
        b,
        roles: str,
        ndim: int,
        convolve: bool = False,
        keep=None,
        remember: bool = True,
        **geometry,
    ):
        """The correlation (or convolution) of two canonical arrays, ``roles`` naming
        their three leading axes, e.g. ``"ncp,kcp->nkp"``; ``ndim`` sliding axes follow,
        all kept in the result (or those at the positions ``keep``, the others reduced
        by ``geometry``'s ``reduce``). ``remember=False``: filters no later call shares
        (a cotangent) get a plan of their own, not one kept in the calls' cache."""
        s = _SLIDING[:ndim]
        kept = s if keep is None else "".join(s[i] for i in keep)
        xa, rest = roles.split(",")
        wa, oa = rest.split("->")
        spec = f"{xa}{s},{wa}{s}->{oa}{kept}|{s}"
        options = {**self.options, **geometry}
        if not _method_runs(options.get("method"), a, b, spec, convolve, options):
            options["method"] = "auto"  # (the planner's choice for this correlation)
        if not remember and not convolve and not records_grad(a, b):  # (plans record none)
            return self.plan(a, b, spec, **options)(a)
        f = self.convolve if convolve else self.correlate
        return f(a, b, spec, **options)


def _method_runs(method, a, b, spec: str, flip: bool, options: dict) -> bool:
    """Whether the forward's ``method`` computes a backward correlation: a method that
    takes only some problems (winograd: kernels of 3 or 5 taps, stride 1) does not
    take the filter gradient's, whose kernel is the cotangent; there the backward's
    own planner chooses."""
    module = METHODS.get(method) if isinstance(method, str) else None
    if module is None or module.ON_TENSORS:  # auto, measure, torch's: every problem
        return True
    geometry = {k: options[k] for k in ("mode", "stride", "dilation", "padding") if k in options}
    p = make_problem(
        tuple(a.shape),
        numpy_dtype(a.dtype),
        tuple(b.shape),
        numpy_dtype(b.dtype),
        spec,
        flip=flip,
        **geometry,
    )
    return module.applies(p) is None


def grad_filters(run: Runner, xp, g, stride, dilation):
    """``gw`` ``(K, C, P, *T)``: the filters' gradient from the padded input ``xp``
    ``(B, C, P, *U)`` and the cotangent ``g`` ``(B, K, P, *O)``."""
    geometry = {"mode": "valid", "stride": tuple(dilation), "dilation": tuple(stride)}
    return run(xp, g, "ncp,nkp->kcp", len(stride), remember=False, **geometry)


def grad_padded(run: Runner, g, w, stride, dilation, ns, mode="full"):
    """``gxp`` ``(B, C, P, *U)``: the padded input's gradient from the cotangent ``g``
    ``(B, K, P, *O)`` and the filters ``w`` ``(K, C, P, *T)`` (``ns``: their
    namespace); ``mode``: explicit padding amounts keep a part of it (``grad_input``)."""
    gu = upsample(ns, g, stride, first=3)
    geometry = {"mode": mode, "stride": 1, "dilation": tuple(dilation)}
    return run(gu, w, "nkp,kcp->ncp", len(stride), convolve=True, **geometry)


def grad_input(run: Runner, g, w, p, ns):
    """The gradient of the unpadded ``x`` ``(B, C, P, *S)`` in one convolution, for
    constant padding: the 'full' convolution of :func:`grad_padded` restricted to the
    samples of ``x`` by explicit padding amounts (no padded copy, nothing to fold). None
    where an axis's padding lies beyond the kernel's extent (an ``origin`` far out)."""
    if p.padding != "constant":
        return None
    pads = tuple((gm.extent - 1 - gm.lo, gm.extent - 1 - gm.hi) for gm in p.geoms)
    if min(min(pair) for pair in pads) < 0:
        return None
    stride = tuple(gm.stride for gm in p.geoms)
    return grad_padded(run, g, w, stride, tuple(gm.dilation for gm in p.geoms), ns, pads)


def grad_filters_unpadded(run: Runner, x, g, p):
    """:func:`grad_filters` from the unpadded ``x`` ``(B, C, P, *S)``, the call padding
    it as the forward did (explicit amounts with ``p``'s padding and cval): no padded
    copy. None where the forward trims x's tail (a negative ``hi``)."""
    if any(gm.hi < 0 for gm in p.geoms):
        return None
    geometry = {
        "mode": tuple((gm.lo, gm.hi) for gm in p.geoms),
        "padding": p.padding,
        "cval": p.cval,
        "stride": tuple(gm.dilation for gm in p.geoms),
        "dilation": tuple(gm.stride for gm in p.geoms),
    }
    return run(x, g, "ncp,nkp->kcp", p.ndim, remember=False, **geometry)


def window_sums(run: Runner, ns, a, geoms: tuple[AxisGeometry, ...]):
    """Sums of ``a`` ``(B, C, P, *U)`` over each window's channels and taps: ``(B, 1,
    P, *O)``."""
    ones = ns.ones(
        (1, a.shape[1], a.shape[2], *(g.m for g in geoms)), dtype=a.dtype, device=device_of(a)
    )
    geometry = {
        "mode": "valid",
        "stride": tuple(g.stride for g in geoms),
        "dilation": tuple(g.dilation for g in geoms),
    }
    return run(a, ones, "ncp,kcp->nkp", len(geoms), **geometry)


def window_sums_adjoint(run: Runner, ns, h, geoms: tuple[AxisGeometry, ...]):
    """The adjoint of :func:`window_sums` for one channel: ``h`` ``(B, 1, P, *O)`` ->
    ``(B, 1, P, *U)``, each window's value added to every sample it covers."""
    ones = ns.ones((1, 1, h.shape[2], *(g.m for g in geoms)), dtype=h.dtype, device=device_of(h))
    stride = tuple(g.stride for g in geoms)
    return grad_padded(run, h, ones, stride, tuple(g.dilation for g in geoms), ns)


def upsample(xp_ns, g, stride, first: int):
    """``g`` with ``s - 1`` zeros between neighbours along each axis ``first + i``
    (``s = stride[i]``): length ``(n - 1) s + 1``."""
    for i, s in enumerate(stride):
        n = g.shape[first + i]
        if s == 1 or n == 0:
            continue
        axis = first + i
        shape = g.shape
        z = xp_ns.zeros(
            (*shape[: axis + 1], s - 1, *shape[axis + 1 :]), dtype=g.dtype, device=device_of(g)
        )
        both = xp_ns.concat([xp_ns.expand_dims(g, axis=axis + 1), z], axis=axis + 1)
        g = xp_ns.reshape(both, (*shape[:axis], n * s, *shape[axis + 1 :]))
        g = _slice(g, axis, 0, (n - 1) * s + 1)
    return g


def fold(xp_ns, gxp, geoms: tuple[AxisGeometry, ...], padding: str, first: int):
    """The gradient of ``x`` from that of its padded copy ``gxp`` (sliding axes from
    ``first``): numpy.pad's copies added back to their source samples; constant padding
    (and the tail a negative ``hi`` trims) gets no gradient."""
    for i, g in enumerate(geoms):
        if g.lo or g.hi:
            gxp = _fold_axis(xp_ns, gxp, first + i, g, padding)
    return gxp


def _fold_axis(xp_ns, a, axis: int, g: AxisGeometry, padding: str):
    if padding == "constant":  # (the samples of x only)
        src = np.arange(g.padded) - g.lo
        src[(src < 0) | (src >= g.n)] = -1
    else:  # numpy.pad's own index rule, as the forward pads
        src = _pad_index(g.n, g.lo, g.hi, padding)
    shape = (*a.shape[:axis], g.n, *a.shape[axis + 1 :])
    out = xp_ns.zeros(shape, dtype=a.dtype, device=device_of(a))
    for start, source, length, step in _runs(src):
        piece = _slice(a, axis, start, start + length)
        if step < 0:
            piece = xp_ns.flip(piece, axis=axis)
            source = source - length + 1
        out = add_into(xp_ns, out, piece, axis, (source,), (1,))
    return out


def _runs(src: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``src`` (the source sample of each padded one; -1: none) as runs ``(start,
    source, length, step)`` of consecutive sources going up (step 1) or down (-1)."""
    runs: list[list[int]] = []
    for i, s in enumerate(src.tolist()):
        if s < 0:
            continue
        if runs and runs[-1][0] + runs[-1][2] == i:
            r = runs[-1]
            last = r[1] + (r[2] - 1) * r[3]
            step = s - last
            if step in (1, -1) and (r[2] == 1 or step == r[3]):
                r[2] += 1
                r[3] = step
                continue
        runs.append([i, s, 1, 0])
    return [(a, b, n, step or 1) for a, b, n, step in runs]


def add_into(xp_ns, out, piece, first: int, starts, steps):
    """``out`` with ``piece`` added at ``starts[i] + steps[i] * j`` along the axes
    ``first + i``: in place where arrays are mutable (NumPy, torch), else a new array
    (JAX)."""
    where = [slice(None)] * first
    for i, (start, step) in enumerate(zip(starts, steps)):
        n = piece.shape[first + i]
        where.append(slice(start, start + (n - 1) * step + 1, step))
    where = (*where, ...)
    if not mutable(out):
        return out.at[where].add(piece)
    view = out[where]
    view += piece
    return out


def mutable(a) -> bool:
    """Whether ``a`` can be written in place (NumPy arrays, torch tensors; not JAX's,
    which are changed through ``.at``)."""
    return isinstance(a, np.ndarray) or not hasattr(a, "at")
