"""The one place that knows which FFT engine is present and how many threads to use.

``scipy.fft`` (pocketfft with ``workers=``) when SciPy is installed, ``numpy.fft``
otherwise. Nothing here imports another batchconv module.

>>> next_fast_len(97)  # the next 5-smooth length, for real transforms
100
>>> with set_workers(1):
...     get_workers()
1
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import math
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = [
    "fft_engine",
    "next_fast_len",
    "get_workers",
    "set_workers",
    "has_module",
    "available_memory",
    "parallel_for",
    "carry_to_helpers",
    "blas_threads",
    "work_buffer",
    "work_buffer_like",
    "memory_order",
    "element_strides",
    "reshaped_view",
    "user_callback",
    "clear_work_buffers",
    "pocketfft",
    "ordered_like",
]


class _Settings(threading.local):
    """This thread's settings (class defaults: reading an unset one raises nothing, which
    made ``getattr(local, name, default)`` cost ~0.9 us a call)."""

    workers: int | None = None


_state = _Settings()


@functools.lru_cache(maxsize=64)
def has_module(name: str) -> bool:
    """True when ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=1)
def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def get_workers() -> int:
    """Threads batchconv uses now: the innermost :func:`set_workers`, else all cores."""
    return _state.workers or _cpu_count()


class set_workers:
    """Set the thread count for this thread: as a plain call it lasts until changed, as a
    ``with`` block it is restored on exit.

    ``None`` keeps the current setting (all cores at the top level), ``-1`` means all
    cores, a positive int that many threads, at most the cores this process may run on
    (``os.sched_getaffinity``): more threads would only take turns on them, and the
    memory estimates, which count a work area per thread, would grow for nothing.

    >>> with set_workers(1):
    ...     get_workers()
    1
    """

    def __init__(self, workers: int | None):
        if workers is not None and (
            isinstance(workers, bool)
            or not isinstance(workers, int)
            or workers == 0
            or workers < -1
        ):
            raise ValueError(
                f"workers must be a positive int, -1 (all cores) or None, got {workers!r}"
            )
        self._old = _state.workers
        if workers is not None:  # None: all cores
            _state.workers = None if workers == -1 or workers >= _cpu_count() else workers

    def __enter__(self) -> set_workers:
        return self

    def __exit__(self, *exc) -> None:
        _state.workers = self._old


class _Engine:
    """rfftn, irfftn_kept, fftn, ifftn with the thread count applied where the engine allows it."""

    def __init__(self, name: str):
        self.name = name
        if name == "scipy":
            import scipy.fft as mod
        else:
            import numpy.fft as mod
        self._mod = mod

    @property
    def pocketfft(self):
        """SciPy's pocketfft functions for this engine (see :func:`pocketfft`), or None:
        the numpy engine, or no usable pocketfft."""
        return pocketfft() if self.name == "scipy" else None

    def _kw(self, workers: int | None, overwrite: bool = False) -> dict:
        if self.name != "scipy":
            return {}
        kw = {"workers": workers or get_workers()}
        if overwrite:
            kw["overwrite_x"] = True
        return kw

    def rfftn(self, a, s, axes, workers=None, out=None):
        """Real FFT over ``axes``, done as a 1-D real FFT over the last axis then complex
        FFTs over the others in the new buffer: never slower than one ``rfftn`` call in
        our measurements, and 1.3-2x faster where scipy's multi-axis path is slow.

        ``out``: an array of the result's shape and dtype that the transform may be
        written into (no fresh pages per call); the result is returned either way."""
        w = workers or get_workers()
        pf = self.pocketfft
        if (
            pf is not None
            and a.dtype.char in "fd"
            and a.dtype.isnative
            and all(a.shape[ax] == n for ax, n in zip(axes, s, strict=True))
        ):
            # pocketfft's own entry points (no zero padding to do): 5-10 us less per
            # call than scipy.fft's dispatch, and the result goes into ``out``
            half = list(a.shape)
            half[axes[-1]] = s[-1] // 2 + 1
            ctype = np.result_type(a.dtype, np.complex64)
            if out is None or out.shape != tuple(half) or out.dtype != ctype:
                out = None
            out = pf.r2c(a, [axes[-1]], True, 0, out, w)
            if len(axes) > 1:
                pf.c2c(out, list(axes[:-1]), True, 0, out, w)
            return out
        out = self._mod.rfft(a, n=s[-1], axis=axes[-1], **self._kw(workers))
        if len(axes) == 2:  # the 1-D call: fftn's n-D argument handling costs ~5 us
            out = self._mod.fft(out, n=s[0], axis=axes[0], **self._kw(workers, True))
        elif len(axes) > 2:
            out = self._mod.fftn(out, s=s[:-1], axes=axes[:-1], **self._kw(workers, True))
        return out

    def irfftn_kept(self, a, s, axes, keep, real, workers=None, like=None):
        """``irfftn(a)[keep]`` over ``axes`` (``s`` and ``keep`` per axis; ``real``: the
        index in ``axes`` of the half-spectrum axis), computing only the kept rows:
        complex inverse FFTs over the other axes (in ``a``'s memory, which is
        overwritten), then the real inverse FFT of the kept rows into this thread's
        reused work buffer (no fresh pages per call: on the dev VM a fresh 400 KB output
        made the call 1.8x slower). The result is a view into that buffer, valid until
        this thread's next call.

        ``like``: an array of the result's shape (the destination of the result) whose
        memory order the buffer takes, so that copying the result there runs along
        memory (an (H, W, N) result, 5 images of 100x100 innermost: 13 instead of 37 us)."""
        w = workers or get_workers()
        pf = self.pocketfft
        others = [i for i in range(len(axes)) if i != real]
        if others and pf is not None and all(a.shape[axes[i]] == s[i] for i in others):
            # one axis at a time, each cropped to its kept rows before the next, in the
            # order cheapest by n log2 n per row (RGB 96x96 'same' pairs, spectrum
            # 4 x 144 x 73: the 4-sample axis first, then 144-sample ones on 3 planes)
            for i in _crop_order(a.shape, axes, s, keep, others):
                pf.c2c(a, [axes[i]], False, 2, a, w)
                a = a[(slice(None),) * axes[i] + (keep[i],)]
        else:
            if len(others) == 1:  # the 1-D call, as in rfftn
                a = self._mod.ifft(
                    a, n=s[others[0]], axis=axes[others[0]], **self._kw(workers, True)
                )
            elif others:
                a = self._mod.ifftn(
                    a,
                    s=[s[i] for i in others],
                    axes=[axes[i] for i in others],
                    **self._kw(workers, True),
                )
            idx = [slice(None)] * a.ndim
            for i in others:
                idx[axes[i]] = keep[i]
            a = a[tuple(idx)]
        ax = axes[real]
        idx = [slice(None)] * a.ndim
        idx[ax] = keep[real]
        shape = a.shape[:ax] + (s[real],) + a.shape[ax + 1 :]
        ordered, back = ordered_like(shape, like.strides if like is not None else None)
        out = work_buffer(ordered, _REAL.get(a.dtype) or np.empty(0, a.dtype).real.dtype).transpose(
            back
        )
        if pf is not None:  # any strides in and out, SIMD over neighbouring rows
            pf.c2r(a, [ax], s[real], False, 2, out, w)
            return out[tuple(idx)]
        if ax != a.ndim - 1 and self.name == "scipy":  # strided rows: scipy's SIMD lanes
            return self._mod.irfft(a, n=s[real], axis=ax, **self._kw(workers, True))[tuple(idx)]
        split = max((i for i in range(a.ndim) if i != ax), key=lambda i: a.shape[i])
        rows = a.shape[split]
        n = min(w, rows) if a.size >= _THREADED_IRFFT_ELEMENTS else 1
        if n <= 1:
            np.fft.irfft(a, s[real], axis=ax, out=out)
        else:  # NumPy's FFT has no threads: split the rows
            step = -(-rows // n)
            pre = (slice(None),) * split
            parallel_for(
                lambda i: np.fft.irfft(
                    a[pre + (slice(i, i + step),)],
                    s[real],
                    axis=ax,
                    out=out[pre + (slice(i, i + step),)],
                ),
                range(0, rows, step),
                n,
            )
        return out[tuple(idx)]

    def fftn(self, a, s, axes, workers=None):
        return self._mod.fftn(a, s=s, axes=axes, **self._kw(workers))

    def ifftn(self, a, s, axes, workers=None, overwrite=False):
        return self._mod.ifftn(a, s=s, axes=axes, **self._kw(workers, overwrite))


def _crop_order(shape, axes, s, keep, others) -> list[int]:
    """The order of the complex inverse transforms over ``others`` (indices into
    ``axes``) that costs least, each axis cropped to its kept rows after its transform:
    a transform of ``n`` samples costs ``n log2 n`` per row, the rows being the current
    sizes of the other axes. (By that count, not by samples moved: for seed 000's
    spectrum the order taken moves 5 % more samples than the other; the two timed
    alike, and the crop itself is the gain.)"""

    def cost(order) -> float:
        sizes, total = list(shape), 0.0
        for i in order:
            n = s[i]
            total += math.prod(sizes) / sizes[axes[i]] * n * max(math.log2(n), 1.0)
            sizes[axes[i]] = len(range(n)[keep[i]])
        return total

    return list(min(itertools.permutations(others), key=cost))


_REAL = {
    np.dtype(np.complex64): np.dtype(np.float32),
    np.dtype(np.complex128): np.dtype(np.float64),
}


@functools.lru_cache(maxsize=256)
def ordered_like(shape: tuple[int, ...], strides: tuple[int, ...] | None):
    """``(ordered_shape, back)``: ``shape`` in the memory order of an array with
    ``strides`` (largest first; None: as given), and the transpose back from it:
    ``work_buffer(ordered_shape, dtype).transpose(back)`` is laid out like that array.

    >>> ordered_like((2, 3, 4), (8, 64, 16))
    ((3, 4, 2), (2, 0, 1))
    """
    order = list(range(len(shape))) if strides is None else _stride_order(strides)
    return tuple(shape[i] for i in order), tuple(np.argsort(order).tolist())


def _stride_order(strides: tuple[int, ...], shape: tuple[int, ...] | None = None) -> list[int]:
    """Axes from the largest stride to the smallest (the one rule of memory order); where
    ``shape`` is given, axes of one element first: their strides mean nothing (a reshape
    sets them as it likes)."""
    return sorted(
        range(len(strides)), key=lambda i: (shape is None or shape[i] != 1, -abs(strides[i]))
    )


@functools.lru_cache(maxsize=1)
def pocketfft():
    """SciPy's pocketfft module, whose ``r2c``, ``c2c`` and ``c2r`` write into a given
    array of any strides (``scipy.fft``'s functions always allocate their result: fresh
    pages per call, 1.9x slower per pair for the maxima of 500 x 1000 pairs of 96x96x3
    images and filters where the allocator returns memory to the system at once, as in
    Dask workers) and skip ``scipy.fft``'s dispatch (5-10 us a call, a tenth of a call on
    5 images of 100x100 against one 11x11 filter). It is private API, so it is used only
    if it is there and gives ``scipy.fft``'s answers on a test array; else None, and
    callers use ``scipy.fft``."""
    try:
        import scipy.fft
        from scipy.fft._pocketfft import pypocketfft as pf
    except ImportError:
        return None
    ok = True
    for real, cplx in ((np.float64, np.complex128), (np.float32, np.complex64)):
        x = (np.arange(30.0) % 7 - 2).reshape(3, 5, 2).astype(real)
        try:
            spec = pf.r2c(x, [1], True, 0, np.empty((3, 3, 2), cplx), 1)
            pf.c2c(spec, [0], True, 0, spec, 1)
            ok = (
                ok
                and spec.dtype == cplx
                and np.allclose(spec, scipy.fft.rfftn(x, axes=(0, 1)), atol=1e-4)
            )
            pf.c2c(spec, [0], False, 2, spec, 1)
            back = np.empty((2, 3, 5), real).transpose(1, 2, 0)  # any strides
            pf.c2r(spec, [1], 5, False, 2, back, 1)
            ok = ok and np.allclose(back, x, atol=1e-4)
        except Exception:  # noqa: BLE001 - any change of the private signature: not used
            return None
    return pf if ok else None


# the real inverse FFT of a work unit splits its rows over threads from this size on
_THREADED_IRFFT_ELEMENTS = 1 << 19
# each thread keeps one work buffer of up to this size between calls (see irfftn_kept)
_WORK_BUFFER_BYTES = 8 << 20
# the smallest buffer work_buffer allocates: a page. (It was 64 KiB, which the windowed
# metrics' estimates did not count: small problems' four or five buffers went up to
# 190 kB over a budget of a few hundred kB, 472 kB measured under memory=300000.)
WORK_BUFFER_MIN = 1 << 12
_work = threading.local()


class _Buffers(dict):
    """One thread's work buffers (slot -> bytes). Only the thread's ``_work`` holds it;
    the registry refers to it weakly, so that the buffers go with the thread (a strong
    list kept 3-10 MiB per finished thread: a thread-per-request server grew without
    bound)."""

    __slots__ = ("__weakref__",)


# live threads' buffers, for clear_work_buffers
_registry: weakref.WeakValueDictionary[int, _Buffers] = weakref.WeakValueDictionary()
_registry_keys = itertools.count()
_registry_lock = threading.Lock()


def clear_work_buffers() -> None:
    """Free every thread's reused work buffers (arrays still using one keep it alive)."""
    with _registry_lock:
        live = list(_registry.values())
    for bufs in live:
        bufs.clear()


def work_buffer(
    shape: tuple[int, ...], dtype, slot: str = "fft", limit: int = _WORK_BUFFER_BYTES
) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape``: a view of this thread's reused
    buffer ``slot`` when it is at most ``limit`` bytes, else a fresh array. Valid until
    this thread asks for the same slot again. Reusing buffers saves the page faults of
    fresh large allocations (about 2 us per 4 KiB page on the dev VM)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limit or getattr(_work, "callbacks", 0):
        return np.empty(shape, dtype)
    bufs = getattr(_work, "bufs", None)
    if bufs is None:
        bufs = _work.bufs = _Buffers()
        with _registry_lock:
            _registry[next(_registry_keys)] = bufs
    buf = bufs.get(slot)
    if buf is None or buf.nbytes < nbytes:
        buf = bufs[slot] = np.empty(max(nbytes, WORK_BUFFER_MIN), np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


@contextlib.contextmanager
def user_callback():
    """Around user code run in the middle of a computation (a callable ``reduce``): a
    batchconv call made from it gets fresh arrays instead of this thread's work buffers,
    which may hold the block being reduced."""
    _work.callbacks = getattr(_work, "callbacks", 0) + 1
    try:
        yield
    finally:
        _work.callbacks -= 1


def reshaped_view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``a`` seen as ``shape`` on the same memory, or None where that needs a copy.
    (Assigning ``.shape`` raises there too, but after NumPy has made the copy: a tile's
    worth of memory and time for nothing.)

    >>> a = np.zeros((2, 3, 4))
    >>> reshaped_view(a, (6, 4)).shape, reshaped_view(a.transpose(1, 0, 2), (6, 4))
    ((6, 4), None)
    """
    try:
        return a.reshape(shape, copy=False)
    except ValueError:
        return None
    except TypeError:  # pragma: no cover - NumPy 2.0 (no copy argument)
        out = a.view()
        try:
            out.shape = shape
        except AttributeError:
            return None
        return out


def element_strides(a) -> tuple[float, ...]:
    """The strides of ``a`` (a NumPy array, or a tensor: ``a.stride()``) in elements; a
    fraction where one is not a whole number of elements (a field of a record array).

    >>> element_strides(np.zeros((2, 3, 4)).transpose(2, 0, 1))
    (1, 12, 4)
    """
    if not isinstance(a, np.ndarray):
        return tuple(a.stride())
    r = a.itemsize
    return tuple(s // r if s % r == 0 else s / r for s in a.strides)


def memory_order(a: np.ndarray) -> list[int]:
    """``a``'s axes from the largest stride to the smallest, those of one element first:
    ``a.transpose(order)`` walks memory in order.

    >>> memory_order(np.zeros((2, 3, 4)).transpose(2, 0, 1))
    [1, 2, 0]
    """
    return _stride_order(a.strides, a.shape)


def work_buffer_like(a: np.ndarray, slot: str, limit: int = _WORK_BUFFER_BYTES) -> np.ndarray:
    """:func:`work_buffer` with ``a``'s shape, dtype and memory order (as
    ``np.empty_like(a, order="K")``), so that element-wise work with ``a`` runs in memory
    order."""
    ordered, back = ordered_like(a.shape, a.strides)
    return work_buffer(ordered, a.dtype, slot, limit).transpose(back)


# The BLAS limit is counted, not saved and restored per block: blocks of several threads
# overlap without nesting, and a block that restored what it found when it began left
# BLAS at one thread for the process when it ended after another.
_blas_lock = threading.Lock()
_blas_held: list[int] = []  # the limits of the blocks open now, in every thread


class _BlasLib:
    """What :class:`_BlasLimit` knows of one BLAS library (changed under _blas_lock)."""

    __slots__ = ("lib", "clear", "shared", "original", "applied")

    def __init__(self, lib):
        self.lib = lib
        # threadpoolctl >= 3.8 lets one thread at a time set a process-wide OpenBLAS
        # (the first to try, until it lets go) and ignores the others
        self.clear = getattr(lib, "clear_controlling_thread", None)
        self.shared: bool | None = None  # whether its setting is process-wide
        self.original: int | None = None  # its setting before the first open block
        self.applied: int | None = None  # the process-wide setting made last

    def set(self, n: int) -> None:
        if self.clear is not None:  # our calls are serialised: each may set it
            self.clear(force=True)
            self.lib.set_num_threads(n)
            self.clear(force=True)
        else:
            self.lib.set_num_threads(n)

    def process_wide(self, n: int) -> bool:
        """Whether the setting ``n`` just made in this thread shows in another thread:
        true for OpenBLAS with its own threads, false where threadpoolctl sets a
        per-thread limit (OpenMP builds, MKL)."""
        seen: list = []
        probe = threading.Thread(target=lambda: seen.append(self.lib.get_num_threads()))
        probe.start()
        probe.join()
        return seen == [n]


_blas_found: list[tuple[_BlasLib, ...]] = []  # looked up once, under _blas_lock


def _blas_libs() -> tuple[_BlasLib, ...]:
    """The loaded BLAS libraries that threadpoolctl controls; none without it."""
    if not _blas_found:
        with _blas_lock:
            if not _blas_found and has_module("threadpoolctl"):
                from threadpoolctl import ThreadpoolController

                blas = ThreadpoolController().select(user_api="blas").lib_controllers
                _blas_found.append(tuple(map(_BlasLib, blas)))
            elif not _blas_found:
                _blas_found.append(())
    return _blas_found[0]


class _BlasLimit:
    """The context manager of :func:`blas_threads`. A process-wide library is held at
    the smallest limit of the blocks open in any thread (or its own setting when that is
    smaller) and gets its own setting back when the last of them ends, whatever their
    order; a per-thread one is set and restored by each block in its thread."""

    __slots__ = ("n", "own")

    def __init__(self, n: int):
        self.n = n

    def __enter__(self) -> _BlasLimit:
        n, self.own = self.n, []
        libs = _blas_libs()
        with _blas_lock:
            first = not _blas_held
            _blas_held.append(n)
            try:
                for b in libs:
                    self._limit(b, n, first)
            except BaseException:
                _blas_held.remove(n)
                raise
        return self

    def _limit(self, b: _BlasLib, n: int, first: bool) -> None:
        if b.shared is False:  # a per-thread setting: each block sets and restores its own
            now = b.lib.get_num_threads()
            if now is not None and now > n:
                b.set(n)
                self.own.append((b, now))
            return
        if first:
            b.original = b.applied = b.lib.get_num_threads()
        if b.original is None or b.applied <= n:
            return
        mine = b.lib.get_num_threads() if b.shared is None else None
        b.set(n)
        if b.shared is None:  # the first limit: does it show in another thread?
            b.shared = b.process_wide(n)
        if b.shared:
            b.applied = n
        else:
            self.own.append((b, mine))

    def __exit__(self, *exc) -> None:
        with _blas_lock:
            if self.n in _blas_held:  # (not after a fork in this block)
                _blas_held.remove(self.n)
            for b, was in self.own:
                b.set(was)
            least = min(_blas_held, default=None)
            for b in _blas_found[0]:
                if b.shared and b.original is not None:
                    want = b.original if least is None else min(b.original, least)
                    if b.applied != want:
                        b.set(want)
                        b.applied = want


_NO_LIMIT = contextlib.nullcontext()


def blas_threads(n: int | None = None):
    """A context manager: within the block, BLAS (NumPy's matmul) uses at most ``n``
    threads (default :func:`get_workers`), when that is fewer than the cores and
    ``threadpoolctl`` is installed; otherwise BLAS keeps its own setting (all cores). This
    makes ``workers=1`` mean one thread for the GEMM of the direct method too, and lets
    a method run small GEMMs one per thread of its own (``blas_threads(1)``). Use it as
    ``with blas_threads(): ...``.

    BLAS libraries mostly have one process-wide setting: while blocks of several threads
    overlap, it is the smallest of their limits, and when the last ends the library's own
    setting is back (in any order of ending)."""
    n = get_workers() if n is None else n
    if n >= _cpu_count() or not _blas_libs():
        return _NO_LIMIT
    return _BlasLimit(n)


# Idle threads of one library's pool spin for a while after each parallel call (OpenMP:
# torch, numba's omp layer; OpenBLAS), taking the cores from whatever runs next: on the
# 2-core dev VM, alternating F.conv2d with a NumPy GEMM made each 1.5-3x slower. The
# benchmark (batchconv bench, which restarts itself with these set) compares libraries
# call by call, so its process lets idle threads sleep.
QUIET_THREAD_POOLS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}

_engines: dict[str, _Engine] = {}
# the one shared pool: at most cores - 1 threads (the caller is the last), started as needed
_pool: list[ThreadPoolExecutor] = []
_pool_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _pool_lock, _registry_lock
    # a forked child has none of the parent's threads: not their pool, locks, or blocks
    # of blas_threads (_blas_lock is held across the fork, so no limit is half-made)
    _pool.clear()
    _pool_lock, _registry_lock = threading.Lock(), threading.Lock()
    if _blas_held:  # give BLAS its own setting back
        _blas_held.clear()
        for b in _blas_found[0]:
            if b.shared and b.original is not None and b.applied != b.original:
                with contextlib.suppress(Exception):
                    b.set(b.original)
                    b.applied = b.original
    _blas_lock.release()


os.register_at_fork(
    before=_blas_lock.acquire,
    after_in_parent=_blas_lock.release,
    after_in_child=_after_fork_in_child,
)


# Thread-local settings that parallel_for's helper threads take from the calling thread:
# functions called in the caller, each returning a factory of a context manager that
# applies the caller's setting in a helper (None: the caller has the default, nothing to
# carry). set_workers' is here, compiled.py adds use_numba's (a worker running a chunk of
# a plan made inside `use_numba(True)` ran the NumPy code where numba is off by default).
_CARRIED: list = [
    lambda: None if _state.workers is None else functools.partial(set_workers, _state.workers)
]


def carry_to_helpers(capture) -> None:
    """Have :func:`parallel_for`'s helper threads take a thread-local setting from the
    calling thread: ``capture()``, called in the caller, returns a function making a
    context manager that applies the caller's setting (entered in each helper around its
    share of the items), or None when there is nothing to carry."""
    _CARRIED.append(capture)


def _shared_pool() -> ThreadPoolExecutor:
    with _pool_lock:
        if not _pool:
            _pool.append(
                ThreadPoolExecutor(max(1, _cpu_count() - 1), thread_name_prefix="batchconv")
            )
        return _pool[0]


def parallel_for(fn, items, workers: int | None = None, count: int | None = None) -> None:
    """Call ``fn(item)`` for every item on up to ``workers`` threads (default: the current
    :func:`get_workers`; at most the cores), re-raising the first error.

    ``items`` is taken one at a time, never listed, when it has a length (a list, a
    ``range``) or when ``count`` says how many it yields (a generator): the tiles of a
    small memory budget can be millions, and a list of them would take more memory
    than the budget (176 bytes a tile: 3.6 MB for 20,000 tiles under a 200 kB budget).

    The calling thread takes part: it and ``workers - 1`` threads of the one shared pool
    (cores - 1 threads at most, whatever the counts asked for) pull items from one queue,
    so a call costs a single thread hand-off (waking a sleeping thread is slow on virtual
    machines) and the pool survives across calls. Once the caller has taken the last
    item it waits only for helpers that started: one still queued behind other calls'
    work (or behind the caller itself, when ``fn`` calls parallel_for) is dropped. The
    helpers run with the caller's thread-local settings (:class:`set_workers`,
    ``use_numba``: :func:`carry_to_helpers`)."""
    if count is None:
        if not hasattr(items, "__len__"):
            items = list(items)
        count = len(items)
    n = min(workers or get_workers(), count, _cpu_count())
    if n <= 1:
        for it in items:
            fn(it)
        return
    pool = _pool[0] if _pool else _shared_pool()
    # the work, in a box emptied before returning: a cancelled helper stays queued in
    # the pool until a thread pops it, and must not keep fn's arrays alive until then
    work = [fn, iter(items)]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def drain() -> None:
        while not errors:
            with lock:
                if not work:
                    return
                try:  # (a generator's error: re-raised once the helpers have stopped)
                    it = next(work[1], _DONE)
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                    errors.append(e)
                    return
                f = work[0]
            if it is _DONE:
                return
            try:
                f(it)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                errors.append(e)
            del f, it

    settings = [make for make in (capture() for capture in _CARRIED) if make is not None]

    def helper() -> None:  # drain() with the caller's thread-local settings
        with contextlib.ExitStack() as stack:
            for make in settings:
                stack.enter_context(make())
            drain()

    helpers = [pool.submit(helper if settings else drain) for _ in range(n - 1)]
    del fn, items
    drain()
    for h in helpers:  # every item is taken: a helper still queued has nothing to do
        if not h.cancel():
            h.result()
    with lock:
        work.clear()
    if errors:
        raise errors[0]


_DONE = object()


def fft_engine(name: str | None = None) -> _Engine:
    """The FFT engine: ``"scipy"`` when SciPy is installed, else ``"numpy"``."""
    if name is None:
        name = "scipy" if has_module("scipy") else "numpy"
    if name not in _engines:
        _engines[name] = _Engine(name)
    return _engines[name]


def next_fast_len(n: int, real: bool = True) -> int:
    """Smallest length >= n that the FFT engine transforms fast (2^a 3^b 5^c (7^d 11^e)).

    Uses ``scipy.fft.next_fast_len`` when SciPy is there; otherwise the smallest
    5-smooth number, which numpy's pocketfft handles well.
    """
    if n <= 1:
        return 1
    if has_module("scipy"):
        import scipy.fft

        return scipy.fft.next_fast_len(n, real=real)
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


_MEMINFO_TTL = 1.0  # seconds a reading of /proc/meminfo is reused
_meminfo_cache: list = [-1e9, 0]


def available_memory() -> int:
    """Bytes of RAM available now (Linux ``MemAvailable``, re-read at most once a second),
    or 8 GiB when unknown."""
    now = time.monotonic()
    if now - _meminfo_cache[0] < _MEMINFO_TTL:
        return _meminfo_cache[1]
    _meminfo_cache[:] = [now, _read_available_memory()]
    return _meminfo_cache[1]


def _read_available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return 8 << 30
