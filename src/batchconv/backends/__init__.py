"""Backends: what differs between array libraries, for the portable engine
(``portable/``), which is written once against this protocol.

A backend owns, for one array namespace on one device: the namespace itself and its
dtypes, the canonical views of ``x``, ``w`` and the result (``permute_dims`` and
``reshape`` of the user's arrays, in the layout of ``problem.py``), padding (numpy.pad's
modes by ``take`` with numpy.pad's own index vectors, constant values by ``concat``),
result assembly (``concat``: JAX arrays cannot be written in place), the FFT engine and
its fast lengths, window sums, the memory budget of its device and the precision scope.
:class:`Backend` lists them; ``array_api.py`` implements them for any array-API
namespace (JAX, CuPy, array-api-strict, ...), and ``jax.py`` adds JAX's compiler
(``jax.jit``) and matmul precision. NumPy arrays and torch tensors run in the
planner's block loop (``Plan._run_blocks``), whose backends are ``numpy.py`` and
``torch.py`` here: views, result allocation, the scope of a call, reductions, the
out-of-memory retry and the one-call path per input layout.

Nothing here imports an array library: :func:`backend_of` recognises an array by its
type's module (``arrays.is_array_api``), and the namespace comes from the array itself.

>>> import numpy as np
>>> backend_of(np.ones(3)) is None  # NumPy arrays take the NumPy engine
True
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from ..arrays import is_array_api, is_jax
from ..geometry import AxisGeometry
from ..problem import Problem

__all__ = ["Backend", "Scopes", "backend_of", "is_array_api"]


class Backend(Protocol):
    """What the portable engine asks of an array library (one namespace, one device).

    Arrays below are the namespace's; ``p`` is a :class:`~batchconv.problem.Problem`;
    canonical layouts are those of ``problem.py`` (x ``(B, C, P, *S)``, w
    ``(K, C, P, *T)``, result ``(B, K, P, *O)``)."""

    name: str  # the namespace's name, e.g. "jax.numpy", for explain() and errors
    xp: Any  # the array namespace
    device: Any  # where the arrays live; new arrays are made there
    key: tuple  # hashable: what compiled functions depend on (namespace, device, dtypes)

    def owns(self, a: Any) -> bool:
        """True when ``a`` is an array of this namespace."""
        ...

    def dtype(self, dt: np.dtype) -> Any:
        """The namespace's dtype for the NumPy dtype ``dt``, by name; a narrower one
        where the namespace lacks it (JAX without x64: float64 -> float32)."""
        ...

    def numpy_dtype(self, dt: Any) -> np.dtype:
        """The NumPy dtype of the namespace's dtype ``dt``."""
        ...

    def asarray(self, a: Any, name: str) -> Any:
        """``a`` (an array of this namespace, a NumPy array or nested lists) as an array
        of this namespace on its device; TypeError for another array library."""
        ...

    def canonical_x(self, p: Problem, x: Any) -> Any:
        """``x`` as ``(B, C, P, *S)`` in the compute dtype."""
        ...

    def canonical_w(self, p: Problem, w: Any) -> Any:
        """``w`` as ``(K, C, P, *T)`` in the compute dtype, flipped (convolve) or
        conjugated (complex correlate): a new array, never a view of ``w``."""
        ...

    def final_view(self, p: Problem, canon: Any) -> Any:
        """The canonical result seen in the spec's output order."""
        ...

    def pad(
        self, a: Any, geoms: tuple[AxisGeometry, ...], padding: str, cval: complex, first: int
    ) -> Any:
        """``a`` padded (or trimmed) along the sliding axes ``first, first + 1, ...`` so
        that a 'valid' correlation gives the problem's mode (``geometry.pad_sliding``)."""
        ...

    def concat(self, blocks: list, axis: int) -> Any:
        """The blocks joined along ``axis`` (the result's assembly)."""
        ...

    def fft_len(self, n: int, real: bool) -> int:
        """The smallest length at least ``n`` that the FFT engine transforms fast."""
        ...

    def fft(self) -> Any:
        """The FFT functions: ``rfftn``, ``irfftn``, ``fftn``, ``ifftn`` (``s``,
        ``axes``), the namespace's ``fft`` extension."""
        ...

    def window_sums(self, a: Any, geoms: tuple[AxisGeometry, ...], first: int) -> Any:
        """Sums of ``a`` over the 'valid' windows of ``geoms`` (stride and dilation
        included) along the axes ``first, ...``, each window's own samples added."""
        ...

    def memory(self, memory: int | str | None) -> int:
        """The ``memory=`` budget in bytes; None gives this device's default."""
        ...

    def compile(self, fn: Any) -> Any:
        """``fn`` (arrays, and tuples of them, in and out; no host synchronisation) as
        the library runs it fastest: ``jax.jit(fn)`` for JAX, ``fn`` itself otherwise."""
        ...

    def precise(self) -> AbstractContextManager:
        """A scope in which products keep the dtype's full precision (no TF32)."""
        ...

    def all_finite(self, a: Any) -> bool:
        """True when ``a`` holds no NaN or Inf (one value brought to the host)."""
        ...


class Scopes:
    """Two context managers entered as one, the first outermost (a backend's scope of a
    call: threads and BLAS for NumPy, TF32 and autograd for torch); a class because an
    ``ExitStack`` costs a small call 5 us.

    >>> import contextlib
    >>> with Scopes(contextlib.nullcontext(), contextlib.nullcontext()) as s:
    ...     type(s).__name__
    'Scopes'
    """

    __slots__ = ("first", "second")

    def __init__(self, first: AbstractContextManager, second: AbstractContextManager):
        self.first, self.second = first, second

    def __enter__(self) -> Scopes:
        self.first.__enter__()
        try:
            self.second.__enter__()
        except BaseException:
            self.first.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.second.__exit__(*exc)
        finally:
            self.first.__exit__(*exc)


def backend_of(a: Any) -> Backend | None:
    """The backend of the array ``a``, or None when ``a`` is not an array-API array that
    the portable engine computes on (NumPy arrays, torch tensors, Dask arrays, lists).
    Only ``a``'s own library is imported (it is, since ``a`` exists)."""
    if not is_array_api(a):
        return None
    if is_jax(a):
        from .jax import JaxBackend

        return JaxBackend.of(a)
    from .array_api import ArrayAPIBackend

    return ArrayAPIBackend.of(a)
