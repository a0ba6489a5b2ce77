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
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

__all__ = ["fft_engine", "next_fast_len", "get_workers", "set_workers", "has_module",
           "available_memory", "parallel_for"]

_state = threading.local()


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
    return getattr(_state, "workers", None) or _cpu_count()


@contextlib.contextmanager
def set_workers(workers: int | None):
    """Scope the thread count (``None`` = all cores); restores the previous value."""
    if workers is not None and (not isinstance(workers, int) or workers == 0 or workers < -1):
        raise ValueError(f"workers must be a positive int, -1 (all cores) or None, "
                         f"got {workers!r}")
    old = getattr(_state, "workers", None)
    _state.workers = None if workers in (None, -1) else workers
    try:
        yield
    finally:
        _state.workers = old


class _Engine:
    """rfftn/irfftn/fftn/ifftn with the thread count applied where the engine allows it."""

    def __init__(self, name: str):
        self.name = name
        if name == "scipy":
            import scipy.fft as mod
        else:
            import numpy.fft as mod
        self._mod = mod

    def _kw(self, workers: int | None, overwrite: bool = False) -> dict:
        if self.name != "scipy":
            return {}
        kw = {"workers": workers or get_workers()}
        if overwrite:
            kw["overwrite_x"] = True
        return kw

    def rfftn(self, a, s, axes, workers=None):
        return self._mod.rfftn(a, s=s, axes=axes, **self._kw(workers))

    def irfftn(self, a, s, axes, workers=None, overwrite=False):
        """Inverse real FFT; ``overwrite=True`` lets the engine reuse ``a``'s memory."""
        return self._mod.irfftn(a, s=s, axes=axes, **self._kw(workers, overwrite))

    def fftn(self, a, s, axes, workers=None):
        return self._mod.fftn(a, s=s, axes=axes, **self._kw(workers))

    def ifftn(self, a, s, axes, workers=None, overwrite=False):
        return self._mod.ifftn(a, s=s, axes=axes, **self._kw(workers, overwrite))


_engines: dict[str, _Engine] = {}
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _forget_pools_after_fork() -> None:  # a forked child has none of the parent's threads
    _pools.clear()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


def parallel_for(fn, items, workers: int | None = None) -> None:
    """Call ``fn(item)`` for every item on up to ``workers`` threads (default: the current
    :func:`get_workers`), re-raising the first error. Work is cut so that each thread's
    NumPy/FFT calls release the GIL; the pool is shared and survives across calls."""
    items = list(items)
    n = min(workers or get_workers(), len(items))
    if n <= 1:
        for it in items:
            fn(it)
        return
    with _pools_lock:
        pool = _pools.get(n)
        if pool is None:
            pool = _pools[n] = ThreadPoolExecutor(n, thread_name_prefix="batchconv")
    for f in [pool.submit(fn, it) for it in items]:
        f.result()


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
