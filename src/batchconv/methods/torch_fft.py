"""The torch FFT method: ``torch.fft`` over the sliding axes on the tensors' own device
(cuFFT on CUDA), channel sums as one batched complex matmul per frequency bin.

The layout is the NumPy FFT method's whole-item layout (``methods/fft.py``): per axis the
smallest fast length that keeps every kept output free of wrap-around (144 rather than
191 for a 96x96 'same' correlation), the filters' spectra made once in ``prepare`` and
kept on the device (rolled by ``-lo``, so the kept outputs are a strided slice of the
inverse transform), each item transformed once per block. Any number of sliding axes.

An FFT spreads a NaN or Inf over its whole item: as NumPy's FFT method, this one flags
the items whose outputs are not all finite, and the plan (``Plan._redo_nonfinite``, one
NaN/Inf policy for both) transforms them again with zeros in those places and sums the
windows that cover one directly, and redoes the filters holding a NaN or Inf
(transformed with zeros there) by :func:`exact_method`. Called outside that policy (the
one-call path, a metric's correlation), a block holding one takes the exact route here.
Finite data so large that a spectrum could overflow (float32 past 3.4e38, while every
output fits) go through the FFT scaled by powers of two: filters in ``prepare``
(``fft.filter_scaling``), the items of a chunk when the bound that routes it says so
(:func:`_route`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import ceil, isfinite, ldexp, log2, prod

import numpy as np

from ..memo import memo, remembered
from ..metrics import metric_of
from ..problem import Problem
from ..tensors import is_cuda, pad_sliding
from ..xp import next_fast_len
from . import direct, torch_direct
from . import fft as numpy_fft

__all__ = [
    "fft_shape",
    "cufft_len",
    "applies",
    "prepare",
    "compute",
    "workspace_bytes",
    "fuses_reduce",
    "spectrum_bytes",
    "spectral_route",
    "state_bytes",
    "flops",
    "cost_features",
    "describe",
]

# what the method is (see methods/__init__.py)
NAME = "torch_fft"
ON_TENSORS = True
STANDS_FOR = "fft"  # method="fft" with CUDA tensors
COMPUTES_SAD = False
EXACT_FOR_INTEGERS = False
SPREADS_NONFINITE = True  # items a NaN/Inf spread over: redone by exact_method(p)


@dataclass
class TorchFFTState:
    """Sizes, the filters' spectra on the device, and what a non-finite block needs."""

    fft_shape: tuple[int, ...]
    implicit_zeros: bool
    spectrum: object  # C == 1: (K, P, *Fh); C > 1: (P, prod(Fh), C, K)
    finite_filters: bool
    filters: object  # the canonical filters (K, C, P, *T), for the exact fallback
    # per filter (K,) on the device, the power of two its outputs are multiplied by (its
    # taps were divided by it: the spectrum would overflow), or None; log2 of a bound on
    # the spectra (see fft.filter_scaling)
    shifts: object = None
    peak: float = float("-inf")
    # in the state's memo (memo.py): the exact route's state ("fallback": torch_direct's
    # or NumPy direct's, made when first needed) and, per geometry (the problem's, shared
    # by every batch size), the crop, keep and untouched indices of fft.whole_items /
    # fft.untouched_indices, looked up once ("indices": two lru_cache lookups keyed by
    # the problem cost 10-15 us a call)


def applies(p: Problem, device: str | None = None) -> str | None:
    """None when the method can compute ``p``, else why not."""
    if not metric_of(p.metric).product_form:
        return f"metric {p.metric!r} has no FFT form (it does not factor through a product)"
    return None


def fft_shape(p: Problem, device: str | None = None) -> tuple[int, ...]:
    """FFT length per sliding axis (whole items): ``methods/fft.py``'s size rule
    (``needed_lengths``), rounded up to torch.fft's fast lengths; on a CUDA device to a
    smaller set (:func:`cufft_len`)."""
    real = p.dtype.kind != "c"
    need = numpy_fft.needed_lengths(p, None)
    if _rounded_sizes(device):
        return tuple(cufft_len(n) for n in need)
    return tuple(next_fast_len(n, real=real) for n in need)


def _rounded_sizes(device: str | None) -> bool:
    return is_cuda(device)


@lru_cache(maxsize=1024)
def cufft_len(n: int) -> int:
    """The smallest ``2^a 3^b >= n``: fast in cuFFT, and a small set of lengths (56 for
    n up to 4096, against 363 by scipy's rule with 5, 7 and 11 as factors too; from 128
    on, consecutive ones at most 19 % apart), so the cuFFT plans made for one problem
    serve the next (``torch.backends.cuda.cufft_plan_cache``).

    >>> [cufft_len(n) for n in (1, 5, 7, 100, 143, 191)]
    [1, 6, 8, 108, 144, 192]
    """
    best = 1 << max(n - 1, 0).bit_length()
    p3 = 3
    while p3 < 2 * best:
        q = p3
        while q < n:
            q *= 2
        best = min(best, q)
        p3 *= 3
    return best


def prepare(p: Problem, wc, budget: int | None = None) -> TorchFFTState:
    """Transform the canonical filters ``wc`` (a tensor (K, C, P, *T)) once, in groups
    of filters written straight into the spectra's layout (one channel: (K, P, *Fh);
    channels: frequency-major for one batched matmul per bin, (P, F, C, K)), so the
    spectra are never held twice (128 x 16 filters of 63x63: 540 MB once, not 2 GB).
    A group is a 16th of the budget (:func:`fft.filter_group_bytes`, not capped: one or
    a few groups on a GPU)."""
    import torch

    shape = fft_shape(p, str(wc.device))
    implicit = numpy_fft.implicit_zeros(p)
    is_complex = p.dtype.kind == "c"
    K, C, P = wc.shape[:3]
    tops = _filter_tops(wc)  # one sync: each filter's largest magnitude (NaN, Inf kept)
    finite = bool(np.isfinite(tops).all())
    exps, peak = numpy_fft.filter_scaling(tops, prod(wc.shape[1:]), p.dtype)
    shifts = scale = None
    if exps is not None:  # filters whose spectra would overflow: divided by 2**a
        real = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(
            wc.dtype, wc.dtype
        )
        shifts = torch.tensor([ldexp(1.0, int(a)) for a in exps], dtype=real, device=wc.device)
        scale = torch.tensor([ldexp(1.0, -int(a)) for a in exps], dtype=real, device=wc.device)
    half = numpy_fft.half_shape(shape, is_complex)
    cdt = {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(wc.dtype, wc.dtype)
    spec = torch.zeros(
        (K, P, *half) if C == 1 else (P, prod(half), C, K), dtype=cdt, device=wc.device
    )
    idx = [torch.from_numpy(i).to(wc.device) for i in numpy_fft.tap_positions(p, shape, implicit)]
    taps = (slice(None),) * 3 + tuple(torch.meshgrid(*idx, indexing="ij") if idx else ())
    s, dims = numpy_fft.ordered_axes(shape, 3)  # the longest axis is the halved one
    per_filter = C * P * prod(shape) * spec.element_size()
    if per_filter == 0:  # no channels or an empty axis: nothing to transform
        return TorchFFTState(shape, implicit, spec, finite, wc, shifts, peak)
    cap = None if budget else numpy_fft.KERNEL_CHUNK_BYTES
    step = max(1, numpy_fft.filter_group_bytes(budget, cap) // per_filter)
    for k0 in range(0, K, step):
        k1 = min(k0 + step, K)
        buf = torch.zeros((k1 - k0, C, P, *shape), dtype=wc.dtype, device=wc.device)
        w = wc[k0:k1]
        w = torch.where(torch.isfinite(w), w, 0)
        if scale is not None:
            w = w * scale[k0:k1].reshape(-1, *[1] * (w.ndim - 1))
        buf[taps] = w
        if is_complex:  # sum_j x[t+j] v[j]  <=>  X * conj(FFT(conj(v)))
            group = torch.fft.fftn(buf.conj_physical_(), s=s, dim=dims)
        else:
            group = torch.fft.rfftn(buf, s=s, dim=dims)
        del buf
        group = group.conj_physical_()
        if C == 1:
            spec[k0:k1] = group[:, 0]
        else:
            spec[..., k0:k1] = group.reshape(k1 - k0, C, P, prod(half)).permute(2, 3, 1, 0)
        del group  # before the next group's buffers
    return TorchFFTState(shape, implicit, spec, finite, wc, shifts, peak)


def _filter_tops(wc) -> np.ndarray:
    """Each filter's largest magnitude, (K,) on the host (NaN where it holds a NaN, Inf
    where an Inf): one reduction, one sync."""
    import torch

    K = wc.shape[0]
    if wc.numel() == 0:
        return np.zeros(K)
    flat = wc.reshape(K, -1)
    if not (flat.is_floating_point() or flat.is_complex()):
        flat = flat.double()  # (-(-128) is -128 in int8)
    if flat.is_complex():
        tops = flat.abs().amax(dim=1)
    else:
        lo, hi = torch.aminmax(flat, dim=1)
        tops = torch.maximum(hi, -lo)  # NaN propagates
    return tops.double().cpu().numpy()


class HostDirect:
    """``direct`` on the host for tensors (the exact route on the CPU, and where
    ``torch_direct`` does not apply: no or more than three sliding axes): the method
    interface on tensors, each block computed by NumPy and sent back to the tensors'
    device."""

    NAME = "direct"

    @staticmethod
    def prepare(p: Problem, wc, budget: int | None = None):
        return direct.prepare(p, wc.cpu().numpy(), budget)

    @staticmethod
    def compute(p: Problem, st, xc, k0: int, k1: int, out=None):
        import torch

        with np.errstate(invalid="ignore", over="ignore"):  # (NaN/Inf: the loop's values)
            y = direct.compute(p, st, xc.cpu().numpy(), k0, k1)
        y = torch.from_numpy(y).to(xc.device)
        if out is None:
            return y
        out.copy_(y)
        return out

    @staticmethod
    def workspace_bytes(p: Problem, b: int, k: int, budget: int | None = None) -> int:
        r = p.dtype.itemsize  # NumPy's temporaries, and the block's host copy
        return (
            direct.workspace_bytes(p, b, k, budget)
            + b * (p.C * p.P * prod(p.S) + k * p.P * prod(p.O)) * r
        )

    @staticmethod
    def fuses_reduce(p: Problem) -> bool:
        return False


def exact_method(p: Problem, device: str | None = None):
    """The method that computes what an FFT would spread a NaN or Inf over (the plan's
    NaN/Inf policy, ``Plan._redo_nonfinite``): on CUDA ``torch_direct`` where it
    applies; on the CPU, or beyond three sliding axes, NumPy's ``direct``
    (:class:`HostDirect`; on the CPU it reads the tensors' memory as it is, and runs
    the few filters of a repair far faster than torch's convolution with one output
    channel: about 40 ms against 5 s for one 41x41 filter over 16 images of 256x256
    here)."""
    if is_cuda(device) and torch_direct.applies(p) is None:
        return torch_direct
    return HostDirect


def _exact(p: Problem, st: TorchFFTState, xc, k0: int, k1: int):
    """The block computed without an FFT: NaN and Inf stay in their own windows (a call
    outside the plan's NaN/Inf policy: the one-call path, a metric's correlation)."""
    exact = exact_method(p)
    fallback = remembered(st, "fallback", lambda: exact.prepare(p, st.filters))
    return exact.compute(p, fallback, xc, k0, k1)


def compute(p: Problem, st: TorchFFTState, xc, k0: int, k1: int, out=None, nonfinite=None):
    """The block ``(b, k1 - k0, P, *O)`` for the canonical chunk ``xc`` (a tensor).

    Where ``x`` or a constant padding value holds a NaN or Inf, or a scaled transform
    still overflows: with ``nonfinite`` (a set: the plan's policy) the block by the FFT,
    the items whose outputs are not all finite added to it (the plan redoes them
    exactly); without it, the block by the exact route."""
    route = _route(p, st, xc)
    if route is None and (nonfinite is None or not st.finite_filters):
        y = _exact(p, st, xc, k0, k1)
    else:
        y = _spectral(p, st, xc, k0, k1, route or ())
        # a NaN/Inf in x or cval (route None: here nonfinite is given), or scaled and
        # still not finite (an output past the float's range, or the round-off of one: a
        # sample no kept window covers, so large that eps times its products overflow)
        if route is None or (route and not _finite(y)):
            if nonfinite is None:  # the exact route keeps them to their windows
                y = _exact(p, st, xc, k0, k1)
            else:  # the plan redoes the flagged items
                _flag_nonfinite(y, nonfinite)
    if out is None:
        return y
    out.copy_(y)
    return out


def _flag_nonfinite(y, nonfinite: set) -> None:
    """Add to ``nonfinite`` the items (block positions) of ``y`` with a NaN or Inf: those
    whose sum is not finite (one pass, no mask the size of ``y``; a finite item whose
    sum overflows is redone too, exactly, which costs time only)."""
    import torch

    sums = y.reshape(y.shape[0], -1).sum(dim=1)
    nonfinite.update(torch.nonzero(~torch.isfinite(sums)).flatten().tolist())


def spectral_route(p: Problem, st: TorchFFTState, xc) -> bool:
    """Whether the chunk ``xc`` goes through the FFT (see :func:`_route`)."""
    return _route(p, st, xc) is not None


def _route(p: Problem, st: TorchFFTState, xc):
    """How the chunk ``xc`` is computed: None for the exact route, where the filters,
    ``x`` or a constant padding value hold a NaN or Inf (in an FFT a non-finite value
    reaches every output of its item; the exact route keeps it in the windows that hold
    it); ``()`` for the FFT as it is; else the items' exponents ``e`` (a list), each
    item going through the FFT divided by ``2**e`` and its outputs multiplied back
    (exact scalings), where a bound on what its transforms reach passes the float's
    range (see ``fft._redo_overflow``). One reduction over ``x`` (its largest magnitude,
    NaN or Inf when it holds one), one sync on a GPU; the items' own bounds only when
    the chunk's is too large."""
    if not st.finite_filters:
        return None
    cval = abs(p.cval) if p.padding == "constant" else 0.0
    if not isfinite(cval):
        return None
    if xc.numel() == 0:
        return ()
    top = float(_abs_max(xc))
    if not isfinite(top):
        return None
    log_count, log_fft = (memo(st).get("indices", {}).get(p.geoms) or _indices(p, st))[3]
    limit = numpy_fft.log2_limit(p.dtype)
    forward = numpy_fft.log2_abs(max(top, cval)) + log_count  # an item's spectrum
    if max(forward, forward + st.peak + log_fft) <= limit:  # ... the product, the inverse
        return ()
    tops = np.maximum(_abs_max(xc, items=True), cval)
    with np.errstate(divide="ignore"):
        forward = np.log2(tops) + log_count
    need = np.fmax(forward, forward + st.peak + log_fft) - limit
    return [int(ceil(e)) if e > 0 else 0 for e in need.tolist()]


def _finite(y) -> bool:
    """Whether the tensor ``y`` holds no NaN or Inf (one sync on a GPU)."""
    import torch

    return bool(torch.isfinite(y).all())


def _abs_max(xc, items: bool = False):
    """The largest magnitude in ``xc`` (a 0-d tensor), or per item (b,) on the host
    (``items``); NaN where a NaN is, Inf where an Inf is. Complex: the larger part,
    times sqrt(2) (a bound on the modulus)."""
    import torch

    t = xc.reshape(xc.shape[0], -1) if items else xc
    if t.is_complex():
        t = torch.view_as_real(t)
    if items:
        t = t.reshape(t.shape[0], -1)
        lo, hi = torch.aminmax(t, dim=1) if t.shape[1] else (t.new_zeros(t.shape[0]),) * 2
    else:
        lo, hi = torch.aminmax(t)
    if not t.is_floating_point():
        lo, hi = lo.double(), hi.double()  # (-(-128) is -128 in int8)
    top = torch.maximum(hi, -lo)  # NaN propagates
    if xc.is_complex():
        top = top * 2**0.5
    return top.double().cpu().numpy() if items else top


def _pow2(exps: list[int], sign: int, like) -> list:
    """Factors ``2**(sign * e)`` per item as tensors ``(b, 1, ...)`` of ``like``'s real
    dtype and device, whose product is the whole factor: each step at most ``2**100``,
    a normal number in float32."""
    import torch

    real = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(
        like.dtype, like.dtype
    )
    steps, left = [], list(exps)
    while any(left):
        step = [min(e, 100) for e in left]
        factors = [ldexp(1.0, sign * e) for e in step]
        steps.append(
            torch.tensor(factors, dtype=real, device=like.device).reshape(
                -1, *[1] * (like.ndim - 1)
            )
        )
        left = [e - d for e, d in zip(left, step, strict=True)]
    return steps


def _spectral(p: Problem, st: TorchFFTState, xc, k0: int, k1: int, exps=()):
    """The block by the FFT; ``exps``: the items' scalings (see :func:`_route`)."""
    import torch

    b, k = xc.shape[0], k1 - k0
    s, dims = numpy_fft.ordered_axes(st.fft_shape, 3)
    crop, keep, untouched, _ = memo(st).get("indices", {}).get(p.geoms) or _indices(p, st)
    src = xc[crop] if st.implicit_zeros else pad_sliding(xc, p)
    for f in _pow2(exps, -1, src) if exps else ():  # the padding value is scaled too
        src = src * f
    is_complex = p.dtype.kind == "c"
    X = (torch.fft.fftn if is_complex else torch.fft.rfftn)(src, s=s, dim=dims)
    half = X.shape[3:]
    if p.C == 1:
        Y = X[:, 0].unsqueeze(1) * st.spectrum[k0:k1].unsqueeze(0)  # (b, k, P, *Fh)
    else:  # (P, F, b, C) @ (P, F, C, k) -> (P, F, b, k) -> (b, k, P, *Fh)
        Xt = X.reshape(b, p.C, p.P, -1).permute(2, 3, 0, 1)
        Y = torch.matmul(Xt, st.spectrum[..., k0:k1])
        Y = Y.permute(2, 3, 0, 1).reshape(b, k, p.P, *half)
    del X
    y = torch.fft.ifftn(Y, s=s, dim=dims) if is_complex else torch.fft.irfftn(Y, s=s, dim=dims)
    y = y[keep]
    for f in _pow2(exps, 1, y) if exps else ():
        y = y * f
    if st.shifts is not None:  # filters transformed divided by 2**a
        y = y * st.shifts[k0:k1].reshape(1, k, *[1] * (y.ndim - 2))
    if p.integer_inputs:
        y = torch.round(y)
    for index in untouched:  # windows that never touch x are exactly 0
        y[index] = 0
    return y


def _indices(p: Problem, st: TorchFFTState) -> tuple:
    """``(crop, keep, untouched, sizes)`` for ``p``'s geometry, remembered in ``st``: the
    crop of ``x`` and the kept outputs of the inverse (:func:`fft.whole_items`, with the
    leading axes), the outputs that never touch ``x`` (:func:`fft.untouched_indices`,
    set to exactly 0), and log2 of the values an item's transform reads and of the FFT
    size (:func:`_route`'s bound)."""
    crop, keep, _ = numpy_fft.whole_items(p)
    count = p.C * p.P * prod(max(g.padded, g.n) for g in p.geoms)  # values an item reads
    sizes = (log2(max(count, 1)), log2(max(prod(st.fft_shape), 1)))
    found = (crop, (slice(None),) * 3 + keep, numpy_fft.untouched_indices(p, True), sizes)
    memo(st).setdefault("indices", {})[p.geoms] = found
    return found


def fuses_reduce(p: Problem) -> bool:
    """The planner reduces each block."""
    return False


def spectrum_bytes(p: Problem) -> int:
    """Bytes of the filters' spectra on the device (at the CUDA lengths, which are never
    shorter: an upper bound on the CPU)."""
    shape = fft_shape(p, "cuda")
    c = np.result_type(p.dtype, np.complex64).itemsize
    half = prod(numpy_fft.half_shape(shape, p.dtype.kind == "c"))
    return p.K * p.C * p.P * half * c


def workspace_bytes(p: Problem, b: int, k: int, budget: int | None = None) -> int:
    """The padded chunk, its spectra, the product spectra (and their channel-major copy)
    and the inverse transform before cropping (at the CUDA lengths, as
    :func:`spectrum_bytes`)."""
    shape = fft_shape(p, "cuda")
    r = p.dtype.itemsize
    c = np.result_type(p.dtype, np.complex64).itemsize
    half = prod(numpy_fft.half_shape(shape, p.dtype.kind == "c"))
    x_pad = (
        0 if numpy_fft.implicit_zeros(p) else b * p.C * p.P * prod(g.padded for g in p.geoms) * r
    )
    spectra = b * p.C * p.P * half * c * (2 if p.C > 1 else 1)
    products = b * k * p.P * half * c * (2 if p.C > 1 else 1)
    inverse = b * k * p.P * prod(shape) * (c if p.dtype.kind == "c" else r)
    return x_pad + spectra + products + inverse


def state_bytes(p: Problem) -> int:
    """The filters' spectra, and the canonical filters for the exact route."""
    return spectrum_bytes(p) + p.K * p.window_size * p.P * p.dtype.itemsize


def flops(p: Problem, device: str | None = None) -> float:
    """As the NumPy FFT's, at this method's lengths (whole items)."""
    return numpy_fft.parts_flops(numpy_fft.cost_parts(p, fft_shape(p, device), 1))


def cost_features(p: Problem, device: str | None = None) -> tuple[str, dict[str, float]]:
    """The ``"torch_fft"`` cost model and its features: whole items, at the device's
    lengths."""
    return "torch_fft", numpy_fft.parts_features(
        p, numpy_fft.cost_parts(p, fft_shape(p, device), 1)
    )


def prepare_features(p: Problem, device: str | None = None) -> tuple[str, dict[str, float]]:
    """The part of :func:`cost_features` a plan pays once: its filters' transforms."""
    return "torch_fft", numpy_fft.filter_features(p, fft_shape(p, device))


def describe(p: Problem, st: TorchFFTState, budget: int | None, device: str | None = None) -> str:
    """The transforms' sizes on ``device``."""
    return f"torch_fft: sizes {fft_shape(p, device)} with torch.fft on {device}, whole items" + (
        " (2^a 3^b lengths: cuFFT plans reused)" if is_cuda(device) else ""
    )


def one_call(p: Problem, st: TorchFFTState, xc):
    """``(input, call, as_canonical)``: a whole block as one :func:`compute` (tensors.py
    records it per input layout), or None where the block takes the exact route (a NaN
    in x: its output is laid out otherwise)."""
    if not spectral_route(p, st, xc):
        return None
    return xc, lambda src: compute(p, st, src, 0, p.K), lambda y: y
