"""The torch FFT method: ``torch.fft`` over the sliding axes on the tensors' own device
(cuFFT on CUDA), channel sums as one batched complex matmul per frequency bin.

The layout is the NumPy FFT method's whole-item layout (``methods/fft.py``): per axis the
smallest fast length that keeps every kept output free of wrap-around (144 rather than
191 for a 96x96 'same' correlation), the filters' spectra made once in ``prepare`` and
kept on the device (rolled by ``-lo``, so the kept outputs are a strided slice of the
inverse transform), each item transformed once per block. Any number of sliding axes.

An FFT spreads a NaN or Inf over its whole item, so a block whose input holds one (and
every block, when a filter does) is computed exactly by ``torch_direct`` instead (on
the host's NumPy direct method beyond three sliding axes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from math import prod

import numpy as np

from ..problem import Problem
from ..tensors import all_finite, is_cuda, pad_sliding
from ..xp import next_fast_len
from . import fft as numpy_fft
from . import torch_direct

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
]


@dataclass
class TorchFFTState:
    """Sizes, the filters' spectra on the device, and what a non-finite block needs."""

    fft_shape: tuple[int, ...]
    implicit_zeros: bool
    spectrum: object  # C == 1: (K, P, *Fh); C > 1: (P, prod(Fh), C, K)
    finite_filters: bool
    filters: object  # the canonical filters (K, C, P, *T), for the exact fallback
    fallback: object = None  # torch_direct's (or NumPy direct's) state, made when needed
    # per geometry (the problem's, shared by every batch size): the crop, keep and
    # untouched indices of fft.whole_items / fft.untouched_indices, looked up once (two
    # lru_cache lookups keyed by the problem cost 10-15 us a call)
    indices: dict = field(default_factory=dict, repr=False)


def applies(p: Problem) -> str | None:
    """None when the method can compute ``p``, else why not."""
    if p.metric == "sad":
        return "metric 'sad' has no FFT form (an absolute value does not factor through a product)"
    return None


def fft_shape(p: Problem, device: str | None = None) -> tuple[int, ...]:
    """FFT length per sliding axis (whole items): as ``methods/fft.py`` without tiles. On
    a CUDA device the lengths come from a smaller set (:func:`cufft_len`)."""
    real = p.dtype.kind != "c"
    if numpy_fft.implicit_zeros(p):
        need = [max(g.n + min(g.hi, 0) + max(g.lo, g.hi, 0), g.extent) for g in p.geoms]
    else:
        need = [g.padded for g in p.geoms]
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
    finite = bool(torch.isfinite(wc).all()) if wc.numel() else True
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
        return TorchFFTState(shape, implicit, spec, finite, wc)
    cap = None if budget else numpy_fft.KERNEL_CHUNK_BYTES
    step = max(1, numpy_fft.filter_group_bytes(budget, cap) // per_filter)
    for k0 in range(0, K, step):
        k1 = min(k0 + step, K)
        buf = torch.zeros((k1 - k0, C, P, *shape), dtype=wc.dtype, device=wc.device)
        w = wc[k0:k1]
        buf[taps] = torch.where(torch.isfinite(w), w, 0)
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
    return TorchFFTState(shape, implicit, spec, finite, wc)


def _exact(p: Problem, st: TorchFFTState, xc, k0: int, k1: int):
    """The block computed without an FFT: NaN and Inf stay in their own windows."""
    if torch_direct.applies(p) is None:
        if st.fallback is None:
            st.fallback = torch_direct.prepare(p, st.filters)
        return torch_direct.compute(p, st.fallback, xc, k0, k1)
    import torch

    from . import direct

    if st.fallback is None:
        st.fallback = direct.prepare(p, st.filters.cpu().numpy())
    y = direct.compute(p, st.fallback, xc.cpu().numpy(), k0, k1)
    return torch.from_numpy(y).to(xc.device)


def compute(p: Problem, st: TorchFFTState, xc, k0: int, k1: int, out=None):
    """The block ``(b, k1 - k0, P, *O)`` for the canonical chunk ``xc`` (a tensor)."""
    if not spectral_route(p, st, xc):
        y = _exact(p, st, xc, k0, k1)
    else:
        y = _spectral(p, st, xc, k0, k1)
    if out is None:
        return y
    out.copy_(y)
    return out


def spectral_route(p: Problem, st: TorchFFTState, xc) -> bool:
    """Whether the chunk ``xc`` may go through the FFT: no NaN or Inf in the filters, in
    ``x`` (one sum: see ``tensors.all_finite``) or in a constant padding value (in an FFT
    a non-finite value reaches every output of its item; the exact route keeps it in the
    windows that hold it)."""
    return (
        st.finite_filters
        and (p.padding != "constant" or bool(np.isfinite(p.cval)))
        and all_finite(xc)
    )


def _spectral(p: Problem, st: TorchFFTState, xc, k0: int, k1: int):
    import torch

    b, k = xc.shape[0], k1 - k0
    s, dims = numpy_fft.ordered_axes(st.fft_shape, 3)
    crop, keep, untouched = st.indices.get(p.geoms) or _indices(p, st)
    src = xc[crop] if st.implicit_zeros else pad_sliding(xc, p)
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
    if p.integer_inputs:
        y = torch.round(y)
    for index in untouched:  # windows that never touch x are exactly 0
        y[index] = 0
    return y


def _indices(p: Problem, st: TorchFFTState) -> tuple:
    """``(crop, keep, untouched)`` for ``p``'s geometry, remembered in ``st``: the crop
    of ``x`` and the kept outputs of the inverse (:func:`fft.whole_items`, with the
    leading axes), and the outputs that never touch ``x`` (:func:`fft.untouched_indices`,
    set to exactly 0)."""
    crop, keep, _ = numpy_fft.whole_items(p)
    found = (crop, (slice(None),) * 3 + keep, numpy_fft.untouched_indices(p, True))
    st.indices[p.geoms] = found
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
