"""torch tensors on their own device: what the torch methods and backend share.

A plan whose method is a torch method (``torch_direct``: ``torch.nn.functional.conv*``,
``torch_fft``: ``torch.fft``) runs with these (through ``backends/torch.py``), on the
device of its tensors (CPU or CUDA), with no round trip through host memory: the
canonical views are ``permute``/``reshape`` of the user's tensors, padding is ``F.pad``
or an ``index_select`` built from ``numpy.pad``'s own index rule, the result is
allocated on the device in the spec's output order.

On CUDA the calls run with TF32 off (scoped: the user's setting is restored when the
last call running in the process ends), since TF32 breaks the float32 accuracy contract
(relative error about 1e-3); inside ``with bc.allow_tf32():`` the user's setting applies.
The default memory budget on CUDA is half of the device's free memory (counting what
torch's allocator caches unused); running out of device memory (the allocator's
``OutOfMemoryError``, or a CUDA library's failed work-area allocation) halves the block
and retries once, and never returns a partial result.

torch is imported only inside these functions.

>>> import numpy as np, batchconv as bc
>>> torch = __import__("pytest").importorskip("torch")
>>> y = bc.correlate(torch.ones(2, 8), torch.ones(3, 3), method="torch_direct")
>>> y.shape, y.dtype
(torch.Size([2, 3, 6]), torch.float32)
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import replace
from functools import lru_cache

import numpy as np

from . import geometry
from .arrays import is_torch, plain_tensor
from .problem import _canonical
from .xp import has_module

__all__ = [
    "namespace",
    "all_finite",
    "device_of",
    "is_cuda",
    "torch_dtype",
    "to_device",
    "canonical_x",
    "canonical_w",
    "pad_sliding",
    "allow_tf32",
    "USE_TORCH",
    "use_torch",
    "torch_for_numpy",
    "torch_threads",
    "precise",
    "device_memory",
    "is_out_of_memory",
]

# the default budget on a GPU: this share of its free memory (the rest for cuFFT's work
# areas, the allocator's cache and whatever else the process holds)
_CUDA_BUDGET_SHARE = 0.5


def _torch():
    import torch

    return torch


def namespace():
    """The array-API namespace of torch tensors: ``array_api_compat.torch`` (an optional
    dependency, in the ``torch`` extra; torch's own functions differ from the standard's,
    e.g. ``amax`` for a maximum over several axes). The reductions and the windowed
    metrics' formulas are written against it."""
    try:
        import array_api_compat.torch as xp
    except ImportError as e:
        raise ImportError(
            "batchconv computes on torch tensors through array-api-compat's torch "
            "namespace: pip install array-api-compat (batchconv[torch] installs it)"
        ) from e
    return xp


def device_of(a) -> str | None:
    """``"cpu"``, ``"cuda:0"``... for a torch tensor; None for anything else. Raises
    TypeError for devices batchconv does not compute on."""
    if not is_torch(a):
        return None
    if a.device.type not in ("cpu", "cuda"):
        raise TypeError(
            f"a torch tensor on {a.device}: batchconv computes on CPU and CUDA "
            f"tensors; move it with .cpu()"
        )
    return str(a.device)


def is_cuda(device: str | None) -> bool:
    """True for a CUDA device name (``"cuda"``, ``"cuda:1"``)."""
    return device is not None and device.startswith("cuda")


def torch_dtype(dt: np.dtype):
    """The torch dtype of a NumPy dtype (``intp`` -> ``torch.int64``)."""
    return _torch_dtype(np.dtype(dt))


@lru_cache(maxsize=64)
def _torch_dtype(dt: np.dtype):
    return getattr(_torch(), "int64" if dt.kind in "iu" and dt.itemsize == 8 else dt.name)


def to_device(a, device: str, dtype: np.dtype | None = None):
    """``a`` (a NumPy array or a tensor) as a tensor on ``device``, in ``dtype`` when
    given; no copy where none is needed (a NumPy array on the CPU is shared)."""
    torch = _torch()
    if not is_torch(a):
        a = np.asarray(a)
        if (
            not a.flags.writeable
            or not a.dtype.isnative  # what torch.from_numpy refuses
            or any(st < 0 or st % a.itemsize for st in a.strides)
        ):
            a = np.array(a, dtype=a.dtype.newbyteorder("="), order="C")
        a = torch.from_numpy(a)
    else:
        a = plain_tensor(a)
    return a.to(device=device, dtype=None if dtype is None else torch_dtype(dtype))


def canonical_x(p, x, convert: bool = True):
    """``x`` (a tensor) as ``(B, C, P, *S)`` in the compute dtype (``convert=False``: in
    its own dtype, for the block loop to convert a block at a time)."""
    sp = p.spec
    dt = torch_dtype(p.dtype)  # (x-only axes summed in it)
    c = _canonical(x, sp.x, sp.batch, sp.summed, sp.paired, sp.sliding, sp.x_summed, dt)
    return c.to(dt) if convert else c


def canonical_w(p, w, device: str):
    """``w`` as ``(K, C, P, *T)`` on ``device`` in the compute dtype, flipped (convolve)
    or conjugated (complex correlate), contiguous: ``problem.canonical_w`` for tensors.
    Never shares memory with ``w`` (a plan owns its filters)."""
    torch = _torch()
    sp = p.spec
    t = to_device(w, device, p.dtype)  # summed w-only axes are summed in this dtype
    c = _canonical(t, sp.w, sp.bank, sp.summed, sp.paired, sp.sliding, sp.w_summed, t.dtype)
    if p.flip:
        c = torch.flip(c, dims=tuple(range(3, 3 + p.ndim)))
    if p.conj:
        c = torch.conj(c).resolve_conj()
    c = c.contiguous()
    # t is w itself or shares its memory (torch.from_numpy, .to() without a change)
    shared = c.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
    return c.clone() if shared else c


def out_views(p, device: str):
    """``(final, canon)``: the result tensor in the spec's output order, and its
    canonical ``(B, K, P, *O_kept[, r])`` view (a separate tensor when no view exists;
    then ``final`` is None and the caller returns :func:`final_view` of it)."""
    torch = _torch()
    sp = p.spec
    final = torch.empty(p.out_shape, dtype=torch_dtype(p.out_dtype), device=device)
    order = sp.batch + sp.bank + sp.paired + sp.kept_sliding
    tail = list(range(len(sp.out), final.ndim))
    t = final.permute([sp.out.index(c) for c in order] + tail)
    try:
        return final, t.view(p.canonical_out_shape)
    except RuntimeError:  # not expressible as a view: compute canonically
        return None, torch.empty(p.canonical_out_shape, dtype=final.dtype, device=device)


@lru_cache(maxsize=256)
def _pad_index(n: int, lo: int, hi: int, padding: str) -> np.ndarray:
    """Indices into an axis of length ``n`` that give it ``lo``/``hi`` samples of
    ``padding`` (numpy.pad's meaning; a negative ``hi`` trims the tail)."""
    idx = np.pad(np.arange(n), (lo, max(hi, 0)), mode=padding)
    return idx[: n + lo + hi]


@lru_cache(maxsize=64)
def _pad_index_on(n: int, lo: int, hi: int, padding: str, device):
    """:func:`_pad_index` as a tensor on ``device``, kept: a copy to a GPU on every call
    waits for the device."""
    return _torch().from_numpy(_pad_index(n, lo, hi, padding)).to(device)


def pad_sliding(x, p, first_axis: int = 3):
    """``geometry.pad_sliding`` for a tensor: pad (or trim) the sliding axes so that a
    plain 'valid' correlation gives the requested mode. Constant padding is ``F.pad``
    (a negative width trims); the others gather with ``numpy.pad``'s index rule."""
    torch = _torch()
    geoms = p.geoms
    if all(g.lo == 0 and g.hi == 0 for g in geoms):
        return x
    if p.padding == "constant":
        widths = []
        for g in reversed(geoms):  # F.pad lists the last axis first
            widths += [g.lo, g.hi]
        value = p.cval
        if x.is_complex():
            return torch.complex(
                torch.nn.functional.pad(x.real, widths, value=float(np.real(value))),
                torch.nn.functional.pad(x.imag, widths, value=float(np.imag(value))),
            )
        return torch.nn.functional.pad(x, widths, value=float(np.real(value)))
    for i, g in enumerate(geoms):
        if g.lo or g.hi:
            idx = _pad_index_on(g.n, g.lo, g.hi, p.padding, x.device)
            x = x.index_select(first_axis + i, idx)
    return x


def window_sums(a, geoms, first_axis: int):
    """Sums of the tensor ``a`` over the 'valid' windows of ``geoms`` (stride and dilation
    included) on the axes ``first_axis, ...`` (``geometry.window_sums``): along each
    axis, ``Tensor.unfold`` then a sum, each window's own samples.

    >>> from batchconv.geometry import axis_geometry
    >>> torch = __import__("pytest").importorskip("torch")
    >>> window_sums(torch.arange(6.0), (axis_geometry(6, 3),), 0)
    tensor([ 3.,  6.,  9., 12.])
    """
    return geometry.window_sums(a, geoms, first_axis, _unfold_sums)


def covered_windows(p, mask, padded: bool):
    """``(b, P, *O)`` booleans on ``mask``'s device: the windows of ``p`` that cover a
    True of ``mask`` ``(b, P, *S)``, the padding True where ``padded`` (window sums of
    the padded indicator; ``nonfinite.affected_windows`` on the host)."""
    torch = _torch()
    ind = pad_sliding(mask.to(torch.float32), replace(p, cval=1.0 if padded else 0.0), 2)
    return window_sums(ind, p.geoms, 2) > 0


def _unfold_sums(a, axis: int, g, step: int):
    span = (g.m - 1) * g.dilation + 1
    return a.unfold(axis, span, g.stride)[..., :: g.dilation].sum(dim=-1)


_tf32 = threading.local()


class allow_tf32:
    """Let batchconv's CUDA calls inside this block use TF32 as torch's own flags say.

    By default batchconv turns TF32 off for its cuDNN convolutions and matmuls (and
    restores your setting when its last running call ends): TF32 keeps 10 mantissa
    bits, a relative error of about 1e-3 per product, which breaks the float32 accuracy
    contract. Inside this block that is up to you (torch's default is TF32 on for
    convolutions); expect errors of order ``1e-3 * sum |x w|`` per output.

    >>> import batchconv as bc
    >>> with bc.allow_tf32():
    ...     pass
    """

    def __enter__(self):
        self._old = getattr(_tf32, "allowed", False)
        _tf32.allowed = True
        return self

    def __exit__(self, *exc) -> None:
        _tf32.allowed = self._old


# the process's default for NumPy arrays (see use_torch): None, when the program has
# imported torch; False with BATCHCONV_DISABLE_TORCH=1 in the environment
USE_TORCH: bool | None = (
    None if os.environ.get("BATCHCONV_DISABLE_TORCH", "") in ("", "0") else False
)


class _TorchSwitch(threading.local):
    flag: bool | None = None  # this thread's innermost use_torch; None: USE_TORCH


_torch_switch = _TorchSwitch()


class use_torch:
    """Let torch's CPU convolution (oneDNN) compute NumPy arrays, or keep it out, for
    this thread.

    By default it is a candidate for NumPy arrays once your program has imported torch
    (batchconv never imports it for this; :func:`batchconv.show_config`'s import does not
    count: after it, ``use_torch(True)``), on the ground where its cost model holds
    beside the NumPy methods': float32 correlations with a bank of 16 or more filters,
    channels x taps of 27 or more and zero padding (CNN layers; the method's
    ``joins_numpy``), when torch's CPU threads fit in the call's ``workers``.
    ``method="auto"`` weighs it with the same cost model, the arrays are shared with
    torch without a copy (``torch.from_numpy``; oneDNN reads an NHWC batch as its
    channels-last view) and the result comes back as a NumPy array (a view of torch's
    output); ``explain()`` says when it was a candidate. ``use_torch(False)`` leaves it
    out of ``"auto"`` (a ``method=`` you name still runs); ``use_torch(True)`` lets it in
    whenever torch is installed (and imports it). As a plain call it lasts until
    changed, as a ``with`` block it is restored on exit; ``None`` keeps the current
    setting; other threads keep theirs (a Dask graph keeps the setting it was built
    with). The process's default is ``USE_TORCH``: None, the rule above;
    ``BATCHCONV_DISABLE_TORCH=1`` in the environment makes it False (``use_torch(True)``
    still switches it on). A plan keeps the method it was made with: make plans inside
    the block.

    >>> import numpy as np, batchconv as bc
    >>> x = np.random.rand(2, 8, 8, 16).astype(np.float32)
    >>> w = np.random.rand(3, 3, 16, 32).astype(np.float32)
    >>> with bc.use_torch(False):
    ...     sorted(c.method for c in bc.plan(x, w, "nhwc,hwco->nhwo|hw").candidates)
    ['direct', 'fft', 'winograd']
    >>> torch = __import__("pytest").importorskip("torch")
    >>> with bc.use_torch(True):
    ...     "torch_direct" in [c.method for c in bc.plan(x, w, "nhwc,hwco->nhwo|hw").candidates]
    True
    """

    def __init__(self, flag: bool | None):
        if flag is not None and not isinstance(flag, bool):
            raise TypeError(f"use_torch takes True, False or None, got {flag!r}")
        self._old = _torch_switch.flag
        if flag is not None:
            _torch_switch.flag = flag

    def __enter__(self) -> use_torch:
        return self

    def __exit__(self, *exc) -> None:
        _torch_switch.flag = self._old


def torch_threads() -> int:
    """torch's CPU thread count (``torch.get_num_threads()``; imports torch)."""
    return _torch().get_num_threads()


def torch_for_numpy() -> bool:
    """Whether torch's CPU convolution may be a candidate for NumPy arrays now (see
    :class:`use_torch`): this thread's setting, else whether the program imported torch
    (not counting :func:`batchconv.show_config`'s import of it)."""
    flag = _torch_switch.flag
    if flag is None:
        flag = USE_TORCH
    if flag is None:  # (None in sys.modules: hidden, as tests do to block an import)
        return sys.modules.get("torch") is not None and not _imported_for_config
    return flag and has_module("torch")


_imported_for_config = False  # show_config imported torch, the program had not


def torch_for_config():
    """torch, imported for :func:`batchconv.show_config` (which does not make it a
    candidate for NumPy arrays: :func:`torch_for_numpy`)."""
    global _imported_for_config
    if sys.modules.get("torch") is None:
        _imported_for_config = True
    return _torch()


class precise:
    """Scope TF32 off for torch's CUDA convolutions and float32 matmuls (see
    :class:`allow_tf32`); does nothing on the CPU or inside ``allow_tf32()``.

    The switches are the process's: the first scope to enter turns a switch off, the last
    to leave restores it (threads calling plans at once share one scope). A switch that
    is off already is left alone (each costs about 2 us a call, and a small layer on a
    GPU takes tens). Convolutions need both: one that torch does not hand to cuDNN (cuDNN
    disabled, a sample over 2**31 elements) runs as a cuBLAS matmul."""

    def __init__(self, device: str):
        self.active = is_cuda(device) and not getattr(_tf32, "allowed", False)

    def __enter__(self):
        if self.active:
            with _scope_lock:
                for i, (obj, name, off) in enumerate(_tf32_switches()):
                    if _holders[i] == 0:
                        old = getattr(obj, name)
                        _restore[i] = old if old != off else _UNCHANGED
                        if old != off:
                            setattr(obj, name, off)
                    _holders[i] += 1
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            with _scope_lock:
                for i, (obj, name, _) in enumerate(_tf32_switches()):
                    _holders[i] -= 1
                    if _holders[i] == 0 and _restore[i] is not _UNCHANGED:
                        setattr(obj, name, _restore[i])


_scope_lock = threading.Lock()
_UNCHANGED = object()
_holders = [0, 0]  # scopes inside, per switch (convolutions, matmuls)
_restore: list = [_UNCHANGED, _UNCHANGED]  # each switch's value before the first scope


@lru_cache(maxsize=1)
def _tf32_switches() -> tuple[tuple[object, str, object], ...]:
    """``(object, attribute, value that turns TF32 off)`` for cuDNN convolutions, then
    float32 matmuls: the ``fp32_precision`` settings where torch has them, else the older
    ``allow_tf32`` flags."""
    torch = _torch()
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return (
            (conv, "fp32_precision", "ieee"),
            (torch.backends.cuda.matmul, "fp32_precision", "ieee"),
        )
    return (
        (torch.backends.cudnn, "allow_tf32", False),
        (torch.backends.cuda.matmul, "allow_tf32", False),
    )


def all_finite(t) -> bool:
    """True when the tensor ``t`` holds no NaN or Inf: its sum is finite (one reduction,
    5x less than ``isfinite(t).all()`` on the CPU). A sum that overflows says False,
    which is what the FFT route needs: its zero-frequency term is that sum, so values
    near the float's limit (1e36 in float32) took the exact route's answer instead of
    NaN (on CUDA with more than three sliding axes that route is NumPy's, on the host).
    One sync on a GPU.

    >>> import torch
    >>> all_finite(torch.ones(3)), all_finite(torch.tensor([1.0, float("nan")]))
    (True, False)
    """
    return bool(_torch().isfinite(t.sum()))


def device_memory(device: str) -> tuple[int, int]:
    """``(default budget, available bytes)`` on ``device``: on CUDA half of the free
    memory (``torch.cuda.mem_get_info``, plus what torch's allocator caches unused) and
    the free memory."""
    torch = _torch()
    d = torch.device(device)
    free, _total = torch.cuda.mem_get_info(d)
    # memory torch's allocator holds but does not use is free to our tensors too (in a
    # training process, often most of the card)
    free += torch.cuda.memory_reserved(d) - torch.cuda.memory_allocated(d)
    return int(free * _CUDA_BUDGET_SHARE), int(free)


def _out_of_memory():
    torch = _torch()
    return getattr(torch, "OutOfMemoryError", getattr(torch.cuda, "OutOfMemoryError", MemoryError))


def is_out_of_memory(e: BaseException) -> bool:
    """True for the allocator's OutOfMemoryError, and for a CUDA library that could not
    allocate its work area (cuFFT's ``CUFFT_ALLOC_FAILED``, cuBLAS's and cuDNN's alike),
    which torch raises as a plain RuntimeError."""
    if isinstance(e, _out_of_memory()):
        return True
    return isinstance(e, RuntimeError) and (
        "ALLOC_FAILED" in str(e) or "out of memory" in str(e).lower()
    )
