"""Optional compiled kernels (numba): window rows (SAD, and the direct correlation where
there is nothing for a GEMM to contract) and window sums.

They are used when numba is installed and switched on: :func:`use_numba` switches them
for the calling thread (``with batchconv.use_numba(False): ...`` runs the NumPy code in
that block), else ``USE_NUMBA``, the process's default (set the environment variable
``BATCHCONV_DISABLE_NUMBA=1``, or assign ``batchconv.compiled.USE_NUMBA = False``, to run
the NumPy code instead; the tests run both). numba is imported, and the kernels
compiled, only on first use: once per dtype, a few seconds each, then cached on disk
(:func:`cache_dir`), so that later processes load them in a fraction of a second.
:func:`warmup` (``batchconv warmup``) compiles them all at once, e.g. when a machine or
a container image is set up.

>>> import batchconv.compiled as compiled
>>> compiled.enabled() in (True, False)
True
>>> with compiled.use_numba(False):
...     compiled.enabled()
False
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import threading
import warnings
from math import prod

from .geometry import padded_copy_bytes
from .problem import Problem, long_axis_last
from .xp import carry_to_helpers, get_workers, has_module

__all__ = [
    "USE_NUMBA",
    "use_numba",
    "numba_switch",
    "enabled",
    "kernels",
    "cache_dir",
    "long_axis_last",
    "window_rows_bytes",
    "window_rows_fit",
    "reads_in_place",
]

USE_NUMBA = os.environ.get("BATCHCONV_DISABLE_NUMBA", "") in ("", "0")

_ROW_SEGMENT = 4096  # outputs per task of a row at most, when rows are few (_numba_kernels)

_UNSET = object()
_cache_dir: object = _UNSET  # cache_dir()'s answer, found once per process
_kernels = None
_kernels_lock = threading.Lock()


class _Switch(threading.local):
    numba: bool | None = None  # this thread's innermost use_numba; None: USE_NUMBA


_switch = _Switch()
# use_numba settings in force, all threads together: while there are none (the usual
# case) enabled() reads USE_NUMBA alone (a thread-local read costs 80-100 ns here)
_switched = 0
_switched_lock = threading.Lock()


class use_numba:
    """Switch the compiled kernels on or off for this thread, over ``USE_NUMBA`` (the
    process's default): as a plain call it lasts until changed, as a ``with`` block it
    is restored on exit (an exception too). Blocks nest; ``None`` keeps the current
    setting; other threads keep theirs, as with :func:`batchconv.set_workers`. On, the
    kernels still need numba and a folder to cache them in (:func:`enabled`).

    A plan's method and chunks are chosen for the setting it is made in, and its calls
    (and ``explain()``) keep that setting wherever they run: make plans inside the
    block.

    >>> import numpy as np, batchconv as bc
    >>> x, w = np.random.rand(2, 300), np.random.rand(31)
    >>> with bc.use_numba(False):  # one filter: the NumPy shift-and-add
    ...     "shift-and-add" in bc.plan(x, w, method="direct").explain()
    True
    >>> with bc.use_numba(False):
    ...     with bc.use_numba(True):
    ...         inner = numba_switch()
    ...     (inner, numba_switch())
    (True, False)
    """

    def __init__(self, flag: bool | None):
        global _switched
        if flag is not None and not isinstance(flag, bool):
            raise TypeError(f"use_numba takes True, False or None, got {flag!r}")
        self._old = _switch.numba
        self._counted = flag is not None
        if flag is not None:
            with _switched_lock:
                _switched += 1
            _switch.numba = flag

    def __enter__(self) -> use_numba:
        return self

    def __exit__(self, *exc) -> None:
        global _switched
        _switch.numba = self._old
        if self._counted:  # once per setting, however often the block is left
            self._counted = False
            with _switched_lock:
                _switched -= 1


def _caller_switch():
    """The calling thread's :class:`use_numba` setting, for parallel_for's helpers (a
    factory of the same setting; None where this thread has none)."""
    flag = _switch.numba if _switched else None
    return None if flag is None else (lambda: use_numba(flag))


carry_to_helpers(_caller_switch)


def numba_switch() -> bool:
    """Whether the compiled kernels are switched on for this thread: its innermost
    :func:`use_numba`, else ``USE_NUMBA`` (installed or not: see :func:`enabled`)."""
    if _switched:
        flag = _switch.numba
        if flag is not None:
            return flag
    return USE_NUMBA


def enabled() -> bool:
    """True when the compiled kernels run: numba installed, switched on for this thread
    (:func:`numba_switch`), and a folder to cache them in (:func:`cache_dir`; without
    one, the NumPy code runs)."""
    if _switched:  # (numba_switch inlined: this is read on every call)
        flag = _switch.numba
        if flag is not None:
            return flag and has_module("numba") and cache_dir() is not None
    return USE_NUMBA and has_module("numba") and cache_dir() is not None


def kernels():
    """The module of compiled kernels (imports numba). Where the package's folder is
    read-only, the kernels are cached in :func:`cache_dir`'s folder: numba's
    ``CACHE_DIR`` is set to it while the module is imported (numba chooses a function's
    cache folder when the function is defined), so numba code of your own keeps numba's
    own rules."""
    global _kernels
    if _kernels is not None:
        return _kernels
    with _kernels_lock:
        if _kernels is None:
            from numba.core import config as numba_config

            folder = cache_dir()
            here = os.path.join(os.path.dirname(__file__), "__pycache__")
            redirect = folder not in (None, here) and not numba_config.CACHE_DIR
            old = numba_config.CACHE_DIR
            if redirect:
                numba_config.CACHE_DIR = folder
            try:
                from . import _numba_kernels
            finally:
                numba_config.CACHE_DIR = old
            _kernels = _numba_kernels
    return _kernels


def _writable(path: str) -> bool:
    """Whether the folder ``path`` exists or can be made, and takes a new file (numba's
    own test of a cache folder)."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _user_cache() -> str:
    """batchconv's folder in the user's cache: ``$XDG_CACHE_HOME/batchconv/numba``
    (``~/.cache/...``); ``~/Library/Caches/...`` on macOS, ``%LOCALAPPDATA%/...`` on
    Windows."""
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(home, "Library", "Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return os.path.join(base, "batchconv", "numba")


def _private_temp() -> str | None:
    """``batchconv-<user id>/numba`` in the temporary folder, when that folder is this
    user's alone (numba loads compiled code from its cache: a folder others can write to
    must not be one)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:  # (gettempdir raises when no temporary folder is writable)
        root = os.path.join(tempfile.gettempdir(), f"batchconv-{'user' if uid is None else uid}")
        os.makedirs(root, mode=0o700, exist_ok=True)
        st = os.lstat(root)
    except OSError:
        return None
    if uid is not None and (not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077):
        return None
    path = os.path.join(root, "numba")
    return path if _writable(path) else None


def cache_dir() -> str | None:
    """The folder numba caches the compiled kernels in, found once per process:

    1. ``NUMBA_CACHE_DIR`` when set (numba's own setting);
    2. else the package's ``__pycache__`` when it is writable (numba's default);
    3. else batchconv's folder in the user's cache (``~/.cache/batchconv/numba``,
       ``$XDG_CACHE_HOME`` when set): a read-only installation (a system or container
       image's site-packages);
    4. else ``batchconv-<user id>/numba`` in the temporary folder (a read-only home, as
       in some containers and serverless functions).

    None when none of them is writable: numba then cannot define the kernels at all
    (it raises RuntimeError), so the NumPy code runs instead, with a warning."""
    global _cache_dir
    if _cache_dir is _UNSET:
        found = os.environ.get("NUMBA_CACHE_DIR") or None
        if found is None:
            here = os.path.join(os.path.dirname(__file__), "__pycache__")
            if _writable(here):
                found = here
            elif _writable(_user_cache()):
                found = _user_cache()
            else:
                found = _private_temp()
        if found is None and USE_NUMBA and has_module("numba"):
            warnings.warn(
                "batchconv runs its NumPy code instead of the compiled kernels: no "
                "folder to cache them in is writable (the package's, the user's cache, "
                "the temporary folder); set NUMBA_CACHE_DIR to a writable folder",
                RuntimeWarning,
                stacklevel=2,
            )
        _cache_dir = found
    return _cache_dir  # type: ignore[return-value]


def _compile_counts() -> tuple[int, int]:
    """``(compiled, loaded)``: the kernels' signatures numba compiled in this process (not
    found in its cache), and those it loaded from the cache."""
    funcs = [f for f in vars(kernels()).values() if hasattr(f, "stats")]  # the dispatchers
    return (
        sum(sum(f.stats.cache_misses.values()) for f in funcs),
        sum(sum(f.stats.cache_hits.values()) for f in funcs),
    )


def window_rows_bytes(p: Problem, b: int, layout: bool = True) -> int:
    """Temporaries of a method running the window-rows kernel on ``b`` items, at most:
    the padded copy of the chunk (:func:`geometry.padded_copy_bytes`), then the kernel's
    own: the padded chunk split into ``stride`` phases along the kernel's last axis (each
    row padded by 16 samples), unless it reads x's rows in place (:func:`reads_in_place`;
    with ``layout=False``, whatever x's layout), and a row of float64 sums per thread."""
    order = long_axis_last(p) or tuple(range(p.ndim))
    geoms = [p.geoms[i] for i in order]
    g = geoms[-1]
    lead = b * p.C * p.P * prod(q.padded for q in geoms[:-1])
    phases = lead * g.stride * (-(-g.padded // g.stride) + 16) * p.dtype.itemsize
    in_place = layout and reads_in_place(p)
    # each thread's sums of the segment of a row it computes (float64 and the compute
    # dtype, two rows at a time): whole rows where rows are many and copied, else
    # segments of at most _ROW_SEGMENT outputs
    rows = b * p.K * p.P * prod(p.O[i] for i in order[:-1])
    seg = g.out if rows >= 4 * get_workers() and not in_place else min(g.out, _ROW_SEGMENT)
    return (
        padded_copy_bytes(p, b)
        + (0 if in_place else phases)
        + get_workers() * 2 * (8 + p.dtype.itemsize) * (seg + 16)
    )


def reads_in_place(p: Problem) -> bool:
    """Whether the window-rows kernel reads the rows of ``p``'s x (or of its padded copy,
    which keeps x's memory order) where they are, with no copy in stride phases: stride 1
    along the axis it runs last (:func:`problem.long_axis_last`), and x's samples
    adjacent along it (``p.x_unit_axis``)."""
    last = (long_axis_last(p) or (p.ndim - 1,))[-1]
    return p.geoms[last].stride == 1 and p.x_unit_axis == last


def window_rows_fit(p: Problem, budget: int | None) -> bool:
    """True when one item's window-rows temporaries fit ``budget`` (None: no budget)
    whatever x's layout (a plan's later calls may bring another): the kernel copies
    whole items, where the NumPy fallbacks' tiles need less."""
    return budget is None or window_rows_bytes(p, 1, layout=False) <= budget
