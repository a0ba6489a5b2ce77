"""The backend for any array-API namespace (JAX, CuPy, array-api-strict, ...): the
:class:`~batchconv.backends.Backend` protocol with the standard's functions only.

The namespace is ``array_api_compat.array_namespace(x)`` when array-api-compat is
installed (it wraps CuPy, and gives ``jax.numpy`` for JAX arrays), else
``x.__array_namespace__()``. Arrays are never changed in place (JAX arrays cannot be):
padding is ``take`` with numpy.pad's own index vectors (``tensors._pad_index``) or a
``concat`` with blocks of ``cval``, and results are assembled by ``concat``.

>>> import numpy as np
>>> xps = __import__("pytest").importorskip("array_api_strict")
>>> be = ArrayAPIBackend.of(xps.asarray([1.0, 2.0, 3.0]))
>>> be.name, be.numpy_dtype(be.dtype(np.dtype(np.float32)))
('array_api_strict', dtype('float32'))
"""

from __future__ import annotations

import contextlib
from math import prod
from typing import Any

import numpy as np

from ..arrays import is_array_api, is_dask, is_torch, to_numpy
from ..budget import parse_memory
from ..geometry import AxisGeometry, window_sums
from ..problem import Problem
from ..tensors import _pad_index
from ..xp import has_module, next_fast_len

__all__ = ["ArrayAPIBackend", "namespace_of", "device_of"]

# the standard's numeric dtypes, by name; where a namespace lacks one (JAX without x64),
# the narrower one computes in its place
_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
_NARROWER = {"float64": "float32", "complex128": "complex64", "int64": "int32", "uint64": "uint32"}


def namespace_of(a: Any):
    """The array namespace of ``a``: ``array_api_compat.array_namespace(a)`` when
    array-api-compat is installed, else ``a.__array_namespace__()``."""
    if has_module("array_api_compat"):
        import array_api_compat

        return array_api_compat.array_namespace(a)
    return a.__array_namespace__()


def device_of(a: Any):
    """The device ``a`` lives on (``array_api_compat.device`` when installed, else
    ``a.device``)."""
    if has_module("array_api_compat"):
        import array_api_compat

        return array_api_compat.device(a)
    return a.device


def _available(xp, device) -> frozenset[str] | None:
    """The dtype names the namespace offers on ``device`` (its inspection API), or None
    when it cannot say (then every name is taken to exist)."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return None
    try:
        return frozenset(info().dtypes(device=device))
    except TypeError:  # an inspection API without the device argument
        return frozenset(info().dtypes())


class ArrayAPIBackend:
    """The :class:`~batchconv.backends.Backend` of one array-API namespace and device.
    Nothing in it changes after it is made (plans hold one)."""

    def __init__(self, xp, device):
        self.xp = xp
        self.device = device
        self.name = getattr(xp, "__name__", type(xp).__name__)
        self._names = _available(xp, device)
        # what compiled functions depend on (portable/blocks.py keys them by it)
        self.key = (type(self).__name__, self.name, str(device), self._names)
        # the dtypes the namespace has (by name), and each back to NumPy's
        self._to_numpy = tuple(
            (getattr(xp, n), np.dtype(n)) for n in _DTYPES if getattr(xp, n, None) is not None
        )

    @classmethod
    def of(cls, a: Any) -> ArrayAPIBackend:
        """The backend of the array ``a``: its namespace, on its device."""
        return cls(namespace_of(a), device_of(a))

    def __repr__(self) -> str:
        return f"ArrayAPIBackend({self.name}, device={self.device})"

    def owns(self, a: Any) -> bool:
        return is_array_api(a) and namespace_of(a) is self.xp

    # dtypes

    def dtype(self, dt: np.dtype) -> Any:
        name = np.dtype(dt).name
        if self._names is not None and name not in self._names:
            name = _NARROWER.get(name, name)
        return getattr(self.xp, name)

    def numpy_dtype(self, dt: Any) -> np.dtype:
        if isinstance(dt, np.dtype | str) or (isinstance(dt, type) and issubclass(dt, np.generic)):
            dt = np.dtype(dt)  # (JAX's dtypes are NumPy's)
            return np.dtype(np.float32) if dt.name == "bfloat16" else dt
        for theirs, ours in self._to_numpy:
            if dt == theirs:
                return ours
        name = getattr(dt, "name", str(dt).rsplit(".", 1)[-1])  # (torch.bfloat16: no name)
        if name == "bfloat16":  # (ml_dtypes, in JAX): computes in float32, as for torch
            return np.dtype(np.float32)
        return np.dtype(dt)  # (raises for what NumPy does not know)

    def narrowed(self, dt: np.dtype) -> bool:
        """True when the namespace computes ``dt`` in a narrower dtype (JAX without
        x64 for float64)."""
        return self.numpy_dtype(self.dtype(dt)) != np.dtype(dt)

    def asarray(self, a: Any, name: str) -> Any:
        if self.owns(a):
            return a
        if is_torch(a) or is_dask(a) or is_array_api(a):
            raise TypeError(
                f"{name} is a {type(a).__module__}.{type(a).__name__} but x is a "
                f"{self.name} array, and x's library decides where the call runs: pass "
                f"{name} as a {self.name} array or a NumPy array"
            )
        a, _ = to_numpy(a, name)  # (refuses masked arrays, as the NumPy path does)
        if a.dtype.kind not in "biufc":
            raise TypeError(
                f"{name} has dtype {a.dtype}; batchconv accepts integer, float and complex arrays"
            )
        narrow = self.numpy_dtype(self.dtype(a.dtype))
        if narrow != a.dtype:  # (JAX without x64 would warn, then narrow it itself)
            a = a.astype(narrow)
        return self.xp.asarray(np.ascontiguousarray(a), device=self.device)

    def full(self, shape: tuple[int, ...], value, dtype) -> Any:
        return self.xp.full(shape, value, dtype=dtype, device=self.device)

    def zeros(self, shape: tuple[int, ...], dtype) -> Any:
        return self.xp.zeros(shape, dtype=dtype, device=self.device)

    def index(self, idx: np.ndarray) -> Any:
        """The NumPy index vector ``idx`` as an array of the namespace's integers."""
        dt = self.numpy_dtype(self.dtype(np.dtype(np.int64)))
        return self.xp.asarray(np.asarray(idx, dtype=dt), device=self.device)

    def scalar(self, value, dtype) -> Any:
        """``value`` as a 0-d array of ``dtype`` (the standard's scalars mix with arrays
        of their own kind only)."""
        return self.xp.asarray(value, dtype=dtype, device=self.device)

    # canonical views

    def _canonical(self, a, letters: str, lead: str, sp, pre_summed: str):
        xp = self.xp
        if pre_summed:  # letters of one operand only, summed first (einsum's rule)
            a = xp.sum(a, axis=tuple(letters.index(c) for c in pre_summed))
            letters = "".join(c for c in letters if c not in pre_summed)
        order = lead + sp.summed + sp.paired + sp.sliding
        a = xp.permute_dims(a, tuple(letters.index(c) for c in order))
        s = tuple(a.shape)
        nl, ns, npd = len(lead), len(sp.summed), len(sp.paired)
        shape = (prod(s[:nl]), prod(s[nl : nl + ns]), prod(s[nl + ns : nl + ns + npd]))
        return xp.reshape(a, (*shape, *s[nl + ns + npd :]))

    def canonical_x(self, p: Problem, x: Any, copy: bool = True) -> Any:
        """``x`` as ``(B, C, P, *S)``; ``copy`` False: a view where one serves (a
        backward pass)."""
        sp = p.spec
        dt = self.dtype(p.dtype)
        if copy or x.dtype != dt:  # (x-only axes summed in this dtype)
            x = self.xp.astype(x, dt)
        return self._canonical(x, sp.x, sp.batch, sp, sp.x_summed)

    def canonical_w(self, p: Problem, w: Any, copy: bool = True) -> Any:
        """``w`` as ``(K, C, P, *T)``; ``copy``: a new array (a plan owns its filters),
        else a view where one serves (a backward pass)."""
        xp, sp = self.xp, p.spec
        c = self._canonical(xp.astype(w, self.dtype(p.dtype)), sp.w, sp.bank, sp, sp.w_summed)
        if p.flip and p.ndim:
            c = xp.flip(c, axis=tuple(range(3, 3 + p.ndim)))
        if p.conj:
            c = xp.conj(c)
        return xp.asarray(c, copy=True) if copy else c  # a plan owns its filters

    def final_view(self, p: Problem, canon: Any) -> Any:
        xp, sp = self.xp, p.spec
        kept = sp.kept_sliding
        kept_sizes = tuple(canon.shape[3 : 3 + len(kept)])
        tail = tuple(canon.shape[3 + len(kept) :])
        a = xp.reshape(canon, (*p.batch_shape, *p.bank_shape, *p.paired_shape, *kept_sizes, *tail))
        order = sp.batch + sp.bank + sp.paired + kept
        perm = [order.index(c) for c in sp.out] + list(range(len(order), a.ndim))
        return xp.permute_dims(a, tuple(perm))

    # padding, assembly

    def pad(
        self, a: Any, geoms: tuple[AxisGeometry, ...], padding: str, cval: complex, first: int
    ) -> Any:
        for i, g in enumerate(geoms):
            if g.lo or g.hi:
                a = self._pad_axis(a, first + i, g, padding, cval)
        return a

    def _pad_axis(self, a, axis: int, g: AxisGeometry, padding: str, cval: complex):
        xp = self.xp
        if padding != "constant":  # numpy.pad's own index rule (a negative hi trims)
            return xp.take(a, self.index(_pad_index(g.n, g.lo, g.hi, padding)), axis=axis)
        if g.hi < 0:
            a = _slice(a, axis, 0, g.n + g.hi)
        parts = [a]
        for width, at in ((g.lo, 0), (max(g.hi, 0), 1)):
            if width:
                shape = (*a.shape[:axis], width, *a.shape[axis + 1 :])
                value = cval if xp.isdtype(a.dtype, "complex floating") else np.real(cval)
                parts.insert(at * len(parts), self.full(shape, value, a.dtype))
        return xp.concat(parts, axis=axis) if len(parts) > 1 else a

    def concat(self, blocks: list, axis: int) -> Any:
        return blocks[0] if len(blocks) == 1 else self.xp.concat(blocks, axis=axis)

    # FFTs, window sums

    def fft_len(self, n: int, real: bool) -> int:
        return next_fast_len(n, real=real)

    def fft(self) -> Any:
        return self.xp.fft

    def window_sums(self, a: Any, geoms: tuple[AxisGeometry, ...], first: int) -> Any:
        # shift and add along each axis: each window adds its own samples
        return window_sums(a, geoms, first, _shift_add)

    # the device

    def is_cpu(self) -> bool:
        return "cpu" in str(self.device).lower()

    def memory(self, memory: int | str | None) -> int:
        # a quarter of the host's available memory, at most 4 GiB (budget.py), also on
        # another device: a GPU library's free memory is not read here (give memory=)
        return parse_memory(memory)

    def compile(self, fn):
        """``fn`` (arrays and tuples of arrays in and out, no host synchronisation) as
        the namespace runs it fastest: here as it is (``jax.py``: ``jax.jit``)."""
        return fn

    def precise(self) -> contextlib.AbstractContextManager:
        # the standard has no precision switch (on the CPU products are full precision);
        # a namespace computing with NumPy (array-api-strict) would warn of the NaN and
        # Inf that the engine places deliberately
        return np.errstate(all="ignore")

    def all_finite(self, a: Any) -> bool:
        xp = self.xp
        if xp.isdtype(a.dtype, ("real floating", "complex floating")):
            return bool(xp.all(xp.isfinite(a)))
        return True


def _slice(a, axis: int, start: int, stop: int, step: int = 1):
    """``a[..., start:stop:step, ...]`` along ``axis``."""
    return a[(slice(None),) * axis + (slice(start, stop, step), ...)]


def _shift_add(a, axis: int, g: AxisGeometry, step: int):
    """Window sums along one ``axis``: the taps' samples added."""
    total = tap(a, axis, g, 0)
    for j in range(1, g.m):
        total = total + tap(a, axis, g, j)
    return total


def tap(a, axis: int, g: AxisGeometry, j: int):
    """The samples that tap ``j`` of every window reads along ``axis`` (a 'valid'
    correlation of geometry ``g``: ``g.out`` samples, ``g.stride`` apart, from
    ``j * g.dilation``)."""
    start = j * g.dilation
    return _slice(a, axis, start, start + (g.out - 1) * g.stride + 1, g.stride)
