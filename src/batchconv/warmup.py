"""``batchconv warmup``: compile every numba kernel once, so that first calls in later
processes load them from the kernel cache (:func:`batchconv.compiled.cache_dir`).

It sits on top of the public API (it makes real calls), beside ``demo.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from . import compiled
from .api import correlate
from .xp import has_module

__all__ = ["warmup"]


def warmup(log: Callable[[str], object] | None = print) -> dict:
    """Compile every kernel once, for float32 and float64, through the calls that use
    them (one-filter correlations, SAD, the window statistics of ssd/ncc/cosine,
    Winograd's transforms, the FFT's channel products, window sums in 1-D and 3-D), so
    that the first call of each kind in later processes loads them from
    :func:`cache_dir` instead of compiling (seconds each). Kernels already in the cache
    are loaded, not compiled again. ``batchconv warmup`` runs it; so does
    ``batchconv demo``.

    Returns what it did: ``compiled`` and ``loaded`` (the kernels, one per function and
    argument types, that numba compiled, or loaded from its cache), ``seconds`` and
    ``cache_dir``.
    """
    say = log or (lambda s: None)
    if not compiled.enabled():
        reason = (
            "switched off (BATCHCONV_DISABLE_NUMBA)"
            if not compiled.numba_switch()
            else "numba is not installed"
            if not has_module("numba")
            else "no writable folder to cache them in"
        )
        say(f"batchconv warmup: nothing to compile, the NumPy code runs ({reason})")
        return {"compiled": 0, "loaded": 0, "seconds": 0.0, "cache_dir": compiled.cache_dir()}
    say(f"batchconv warmup: compiling the kernels, or loading them from {compiled.cache_dir()}")
    t0 = time.perf_counter()
    before = compiled._compile_counts()
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.random((2, 24, 24)).astype(dtype)
        read_only = x.copy()
        read_only.flags.writeable = False  # read in place: a type of its own for numba
        one = rng.random((5, 5)).astype(dtype)
        bank = rng.random((2, 5, 5)).astype(dtype)
        t = time.perf_counter()
        correlate(x, one, method="direct")  # one filter: the window-rows kernel
        correlate(read_only, one, method="direct")
        # at a stride: the input split into phases, in C order (25 = 5 + 2 * 10: no
        # sample after the last window) and trimmed to the windows, writable or not
        whole = rng.random((2, 25, 25)).astype(dtype)
        frozen = whole.copy()
        frozen.flags.writeable = False
        for a in (whole, frozen, x, read_only):
            correlate(a, one, method="direct", stride=2)
        correlate(x, bank, metric="sad")  # the same kernel's absolute differences
        correlate(x, bank, metric="ssd")  # 2-D window statistics (sums) ...
        correlate(x, bank, metric="ncc")  # ... and their inverse spread (ncc, cosine)
        # a layer large enough for both compiled paths (methods/winograd.py's and fft.py's
        # limits: 16+ channels and filters; 4+ items against 32+ filters)
        layer = rng.random((4, 10, 10, 16)).astype(dtype)
        bank = rng.random((3, 3, 16, 32)).astype(dtype)
        correlate(layer, bank, "nhwc,hwco->nhwo|hw", method="winograd")  # 6 x 6 transforms
        correlate(layer, bank, "nhwc,hwco->nhwo|hw", method="fft")  # per-bin products
        took = time.perf_counter() - t
        say(
            f"  {np.dtype(dtype).name}: one filter, sad, ssd/ncc/cosine, winograd, fft channels"
            f"  {took:.1f} s"
        )
    t = time.perf_counter()
    correlate(rng.random((2, 64)), rng.random((2, 16)), metric="ssd")  # window sums, 1-D
    correlate(rng.random((2, 12, 12, 12)), rng.random((2, 10, 10, 10)), metric="ssd")  # 3-D
    say(f"  window sums (1-D, 3-D)  {time.perf_counter() - t:.1f} s")
    made, loaded = (a - b for a, b in zip(compiled._compile_counts(), before))
    seconds = time.perf_counter() - t0
    say(
        f"batchconv warmup: {made} kernels compiled, {loaded} loaded from the cache, "
        f"in {seconds:.1f} s"
    )
    return {
        "compiled": made,
        "loaded": loaded,
        "seconds": seconds,
        "cache_dir": compiled.cache_dir(),
    }
