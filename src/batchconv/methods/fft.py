"""The FFT method: real FFTs over the sliding axes only, channel sums in the frequency domain.

Each input item and each filter is transformed once. With zero padding the FFT buffer
itself supplies the zeros: the size per axis is the smallest fast length that keeps every
kept output free of wrap-around (``n + max(lo, hi)``, e.g. 144 rather than 191 for a 96x96
'same' correlation), and the kernel is stored rolled by ``-lo`` so that the kept outputs
are a plain strided slice of the inverse transform. Other paddings pad the chunk first.

Summed (channel) axes are contracted per frequency bin with one batched complex matmul
``(P, F, b, C) @ (P, F, C, k)``; with a single channel it is a broadcast product.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import prod

import numpy as np

from ..geometry import pad_sliding
from ..problem import Problem
from ..xp import fft_engine, get_workers, next_fast_len, parallel_for

__all__ = ["FFTState", "fft_shape", "prepare", "compute", "workspace_bytes"]

_KERNEL_CHUNK_BYTES = 64 << 20  # filters are transformed in groups of about this size


@dataclass
class FFTState:
    """What the FFT method keeps per plan: sizes and the filters' spectra."""

    fft_shape: tuple[int, ...]
    implicit_zeros: bool  # zero padding supplied by the FFT buffer
    is_complex: bool
    spectrum: np.ndarray  # C == 1: (K, P, *Fh); C > 1: (P, prod(Fh), C, K)


def implicit_zeros(p: Problem) -> bool:
    """True when the padding is zeros (or there is none), so the FFT buffer can supply it."""
    return (p.padding == "constant" and p.cval == 0) or all(
        g.lo == 0 and g.hi <= 0 for g in p.geoms)


@lru_cache(maxsize=256)
def fft_shape(p: Problem) -> tuple[int, ...]:
    """FFT length per sliding axis: the smallest fast length without wrap-around in any
    kept output (and at least the dilated kernel's extent)."""
    real = p.dtype.kind != "c"
    if implicit_zeros(p):
        need = [max(g.n + min(g.hi, 0) + max(g.lo, g.hi, 0), g.extent) for g in p.geoms]
    else:
        need = [g.padded for g in p.geoms]
    return tuple(next_fast_len(n, real=real) for n in need)


def _half(shape: tuple[int, ...], is_complex: bool) -> tuple[int, ...]:
    return shape if is_complex else (*shape[:-1], shape[-1] // 2 + 1)


def _kernel_buffer(p: Problem, wc: np.ndarray, shape: tuple[int, ...], shift: bool):
    """Dilated kernels placed in FFT-sized buffers, tap j at (j * dilation - lo) mod F."""
    buf = np.zeros(wc.shape[:3] + shape, dtype=p.dtype)
    idx = [(np.arange(g.m) * g.dilation - (g.lo if shift else 0)) % n
           for g, n in zip(p.geoms, shape, strict=True)]
    buf[(slice(None),) * 3 + np.ix_(*idx)] = wc
    return buf


def prepare(p: Problem, wc: np.ndarray) -> FFTState:
    """Transform the canonical filters ``wc`` (K, C, P, *T) once."""
    shape = fft_shape(p)
    is_complex = p.dtype.kind == "c"
    implicit = implicit_zeros(p)
    eng = fft_engine()
    axes = tuple(range(3, 3 + p.ndim))
    half = _half(shape, is_complex)
    cdtype = np.result_type(p.dtype, np.complex64)
    K, C, P = wc.shape[:3]
    spec = np.empty((K, C, P, *half), dtype=cdtype)
    per_filter = max(1, C * P * prod(shape) * cdtype.itemsize)
    step = max(1, _KERNEL_CHUNK_BYTES // per_filter)
    for k0 in range(0, K, step):
        buf = _kernel_buffer(p, wc[k0:k0 + step], shape, shift=implicit)
        if is_complex:  # sum_j x[t+j] v[j]  <=>  X * conj(FFT(conj(v)))
            spec[k0:k0 + step] = np.conj(eng.fftn(np.conj(buf), shape, axes))
        else:
            spec[k0:k0 + step] = np.conj(eng.rfftn(buf, shape, axes))
    if C == 1:
        spec = spec[:, 0]
    else:  # frequency-major for one batched matmul per bin: (P, F, C, K)
        spec = np.ascontiguousarray(spec.reshape(K, C, P, -1).transpose(2, 3, 1, 0))
    return FFTState(shape, implicit, is_complex, spec)


def _input(p: Problem, st: FFTState, xc: np.ndarray) -> np.ndarray:
    if st.implicit_zeros:
        trim = tuple(slice(0, g.n + min(g.hi, 0)) for g in p.geoms)
        return xc[(slice(None),) * 3 + trim]
    return pad_sliding(xc, p.geoms, p.padding, p.cval, first_axis=3)


def compute(p: Problem, st: FFTState, xc: np.ndarray, k0: int, k1: int) -> np.ndarray:
    """The unreduced block ``(b, k1 - k0, P, *O)`` for the canonical input chunk ``xc``.

    The chunk is streamed through transform -> product -> inverse -> crop in groups of
    items small enough to stay in cache, one group per thread (each FFT single-threaded):
    on the 2-core dev machine that is 2x faster than whole-chunk transforms with
    ``workers=2`` (pocketfft's passes over a large array run at memory speed).
    """
    b = xc.shape[0]
    block = np.empty((b, k1 - k0, p.P, *p.O), dtype=p.dtype)
    if st.implicit_zeros and not all(g.touches_data for g in p.geoms):
        # every window sees only zero padding: the exact answer, not FFT round-off
        block[...] = 0
        return block
    workers = get_workers()
    g = _group_size(p, st, k1 - k0)
    n_groups = -(-b // g)
    if n_groups > 1 or b >= workers:  # as many groups as threads, or a multiple of it
        n_groups = -(-n_groups // workers) * workers
    g = -(-b // min(n_groups, b))
    groups = [slice(i, min(i + g, b)) for i in range(0, b, g)]
    inner = 1 if len(groups) > 1 else workers

    def run(sl: slice) -> None:
        block[sl] = _compute_group(p, st, xc[sl], k0, k1, inner)

    parallel_for(run, groups, workers)
    return block


_GROUP_BYTES = 1 << 20  # per-group spectra + output: about one core's L2 (512 KiB) x 2


def _group_size(p: Problem, st: FFTState, k: int) -> int:
    """Items per group so that one group's spectra and output fit in about 1 MiB."""
    half = prod(_half(st.fft_shape, st.is_complex))
    c = np.result_type(p.dtype, np.complex64).itemsize
    per_item = p.P * (half * c * (p.C + k) + prod(st.fft_shape) * p.dtype.itemsize * k)
    return max(1, _GROUP_BYTES // max(per_item, 1))


def _compute_group(p: Problem, st: FFTState, xc: np.ndarray, k0: int, k1: int,
                   workers: int) -> np.ndarray:
    eng = fft_engine()
    d = p.ndim
    shape = st.fft_shape
    x = _input(p, st, xc)
    b, C, P = x.shape[:3]
    forward = eng.fftn if st.is_complex else eng.rfftn
    inverse = eng.ifftn if st.is_complex else eng.irfftn
    X = forward(x, shape, tuple(range(3, 3 + d)), workers)  # (b, C, P, *Fh)
    keep = tuple(slice(0, (g.out - 1) * g.stride + 1, g.stride) for g in p.geoms)
    if C == 1:
        if k1 - k0 == 1:  # one filter: multiply in place, X becomes (b, 1, P, *Fh)
            Y = np.multiply(X, st.spectrum[None, k0:k1], out=X)
        else:
            Y = X[:, 0][:, None] * st.spectrum[None, k0:k1]  # (b, k, P, *Fh)
        del X
        y = inverse(Y, shape, tuple(range(3, 3 + d)), workers, overwrite=True)
        y = y[(slice(None),) * 3 + keep]
    else:
        Xt = np.ascontiguousarray(np.moveaxis(X, (0, 1), (-2, -1))).reshape(P, -1, b, C)
        del X
        Y = np.matmul(Xt, st.spectrum[..., k0:k1])  # (P, F, b, k)
        del Xt
        Y = Y.reshape(P, *_half(shape, st.is_complex), b, k1 - k0)
        y = inverse(Y, shape, tuple(range(1, 1 + d)), workers, overwrite=True)
        y = np.moveaxis(y[(slice(None),) + keep], (-2, -1), (0, 1))  # (b, k, P, *O)
    if p.integer_inputs:
        y = np.rint(y)
    return y


def workspace_bytes(p: Problem, b: int, k: int) -> int:
    """Peak bytes of temporaries for one ``(b, k)`` block (excluding the cached spectra)."""
    shape = fft_shape(p)
    is_complex = p.dtype.kind == "c"
    half = prod(_half(shape, is_complex))
    r = p.dtype.itemsize
    c = np.result_type(p.dtype, np.complex64).itemsize
    x_pad = 0 if implicit_zeros(p) else b * p.C * p.P * prod(g.padded for g in p.geoms) * r
    x_spec = b * p.C * p.P * half * c * (2 if p.C > 1 else 1)
    y_spec = b * k * p.P * half * c
    y = b * k * p.P * prod(shape) * (c if is_complex else r)
    return x_pad + max(x_spec + y_spec, y_spec + y)


def spectrum_bytes(p: Problem) -> int:
    """Bytes of the cached filter spectra."""
    shape = fft_shape(p)
    c = np.result_type(p.dtype, np.complex64).itemsize
    return p.K * p.C * p.P * prod(_half(shape, p.dtype.kind == "c")) * c
