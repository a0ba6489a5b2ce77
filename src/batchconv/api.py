"""The public entry points: :func:`correlate`, :func:`convolve`, :func:`plan`.

They validate the arguments, build a :class:`~batchconv.problem.Problem`, and hand it to
the planner. ``correlate(x, w, ...)`` is ``plan(x, w, ...)(x)``, except that it remembers
its last few small plans (see ``_PLAN_CACHE_SIZE``): a loop that calls it with the same
filters and shapes plans and transforms the filters once.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, overload

import numpy as np

from . import compiled, methods, metrics
from .arrays import (
    from_numpy,
    is_array_api,
    is_dask,
    is_jax,
    is_torch,
    numpy_dtype,
    records_grad,
    to_numpy,
)
from .autodiff import vjp as autodiff_vjp
from .dask_arrays import lazy_correlate
from .metrics.masked import check_mask, host_mask, with_mask
from .planner import Plan, as_reused, plan_problem
from .portable import PortablePlan, make_plan
from .portable import correlate as portable_correlate
from .portable.blocks import clear as clear_compiled
from .problem import make_problem
from .ragged import RaggedPlan, correlate_groups, is_ragged, ragged_plan
from .tensors import device_of, torch_for_numpy
from .xp import clear_work_buffers, element_strides

if TYPE_CHECKING:  # optional packages: named in annotations only
    from dask.array import Array as DaskArray
    from numpy.typing import ArrayLike
    from torch import Tensor
    from typing_extensions import Unpack  # (typing's own from Python 3.12)

__all__ = ["correlate", "convolve", "plan", "clear_plan_cache"]


class Options(TypedDict, total=False):
    """The keyword options of :func:`correlate` and :func:`convolve`, for the type
    checker: one list for every typed form (overload) of the two."""

    mode: str | Sequence[int] | Sequence[Sequence[int]]
    origin: int | Sequence[int]
    stride: int | Sequence[int]
    dilation: int | Sequence[int]
    padding: str
    cval: complex
    metric: str
    reduce: str | Callable[..., Any] | None
    method: str
    memory: int | str | None
    workers: int | None
    progress: bool | Callable[[int, int], Any] | None
    mask: ArrayLike | None


# correlate/convolve remember their last few plans, keyed by every argument and a digest of
# w's bytes (for filters on a GPU: the tensor's identity and version): calling again with
# the same filters (the usual loop over minibatches) skips the planning and the filter
# transforms. Bounded: at most this many plans, their filter state within the byte limits
# below.
_PLAN_CACHE_SIZE = 8
# a plan's filter state may be at most this large to be remembered, and all remembered
# plans together at most _PLAN_CACHE_TOTAL_BYTES: a CNN layer's spectra (7x7 or 11x11,
# 16-32 channels in and out) are 10-20 MiB, and transforming them again on every call
# tripled the call (11x11 16->32 on 4 images of 96x96: 40 ms against 12.5 ms)
_PLAN_CACHE_MAX_STATE_BYTES = 32 << 20
_PLAN_CACHE_TOTAL_BYTES = 128 << 20
_PLAN_CACHE_MAX_W_BYTES = 8 << 20  # larger filters are not hashed for a key (time per call)
_plan_cache: OrderedDict = OrderedDict()
_plan_cache_lock = threading.Lock()


def clear_plan_cache() -> None:
    """Forget the plans that :func:`correlate` and :func:`convolve` remembered and the
    portable engine's compiled functions (JAX programs), and free the work buffers that
    threads keep between calls."""
    with _plan_cache_lock:
        _plan_cache.clear()
    clear_compiled()
    clear_work_buffers()


_SCALARS = (int, float, str, bool, type(None), complex)


def _hashable(v):
    if isinstance(v, list | tuple | np.ndarray):
        return tuple(_hashable(u) for u in np.asarray(v, dtype=object).ravel().tolist())
    hash(v)  # raises TypeError for what cannot be a key
    return v


def _cache_key(x, w, spec, options: dict):
    """A key for the plan of this call, or None when an argument cannot be part of one
    (filters too large to hash). Filters on a GPU are not read: the key names the tensor
    itself (its identity, version counter, which torch bumps on every in-place change,
    address, shape, strides, dtype and device), and the entry keeps a weak reference to
    check that it is still that tensor."""
    opts = tuple(options.items())  # (options come in one order from each caller)
    try:
        hash(opts)  # scalars and tuples: as they are (one C call)
    except TypeError:  # lists and arrays: as tuples of their elements
        try:
            opts = tuple((k, v if type(v) in _SCALARS else _hashable(v)) for k, v in opts)
        except TypeError:
            return None
    if type(x) is np.ndarray and type(w) is np.ndarray and w.dtype.kind in "iufc":
        shape, dtype, device = x.shape, x.dtype, None  # the common case, in fewer steps
        layout = x.strides
    elif device_of(w) not in (None, "cpu"):  # filters on a GPU: the tensor itself
        signature = (
            (x.shape, x.dtype, x.device)
            if is_torch(x)  # no string conversions
            else (*_x_signature(x), device_of(x))
        )
        return (
            *signature,
            "tensor",
            id(w),
            w._version,
            w.data_ptr(),
            w.shape,
            w.stride(),
            w.dtype,
            w.device,
            spec,
            opts,
        )
    elif type(x) is np.ndarray:  # (a CPU tensor's x arrives here as NumPy)
        shape, dtype, device, layout = x.shape, x.dtype, None, x.strides
        w = _as_array(w, "w")
    else:
        shape, dtype = _x_signature(x)
        device = device_of(x)
        layout = _x_strides(x)
        w = _as_array(w, "w")
    if w.nbytes > _PLAN_CACHE_MAX_W_BYTES:
        return None
    # SHA-1 as a digest of the filters, not for security: the fastest of hashlib's
    # (0.32 ms for 590 KB here, blake2b 0.63 ms), and 160 bits never collide by chance
    digest = hashlib.sha1(
        np.ascontiguousarray(w).view(np.uint8).ravel(), usedforsecurity=False
    ).digest()
    return (shape, dtype.str, layout, device, w.shape, w.dtype.str, spec, opts, digest)


def _cached_plan(x, w, spec, flip: bool, options: dict) -> Plan:
    """The plan ``correlate`` runs: remembered per key (``_cache_key``). A first call is
    ranked for one call (the FFT's filter transforms counted in full); when the same
    filters come back (``planner.as_reused``) the plan is made again where the ranking
    for reuse prefers another method whose plan the cache can keep (7x7 32->32 on 4 x
    64x64, NumPy alone: the first call takes the direct GEMM, 12 ms, where the FFT's
    costs 42 ms; a loop runs the FFT from its second call). The two calls may so use
    different methods, whose results agree within the accuracy contract, not bit for
    bit (``bc.plan`` gives one plan for every call)."""
    if options.get("mask") is not None:  # (not remembered: bc.plan keeps a masked plan)
        return _make_plan(x, w, spec, flip=flip, reused=False, **options)
    key = _cache_key(x, w, spec, options)  # (mask=None is part of it, as any option)
    if key is not None:
        # whether the compiled kernels run, and whether torch's may join, change what
        # "auto" picks: part of the key
        key = (*key, flip, compiled.enabled(), torch_for_numpy())
        with _plan_cache_lock:
            entry = _plan_cache.get(key)
            if entry is not None and (entry[1] is None or entry[1]() is w):
                _plan_cache.move_to_end(key)
                if entry[2]:
                    return entry[0]
            else:
                entry = None
        if entry is not None:  # the filters came back: a plan that will be reused
            p = as_reused(entry[0], _PLAN_CACHE_MAX_STATE_BYTES) or _make_plan(
                x, w, spec, flip=flip, reused=True, **options
            )
            # (a new plan too large to keep after all, e.g. a budget that changed with the
            # free memory: the first one stays, settled, not made again on every call)
            kept = p if p.state_bytes <= _PLAN_CACHE_MAX_STATE_BYTES else entry[0]
            _remember(key, kept, entry[1], settled=True)
            return p
    p = _make_plan(x, w, spec, flip=flip, reused=False, **options)
    if key is not None:
        ref = weakref.ref(w) if device_of(w) not in (None, "cpu") else None
        _remember(key, p, ref, settled=p.reused is not False)
    return p


def _remember(key, p: Plan, ref, settled: bool) -> None:
    """Keep ``p`` under ``key`` (``ref``: a weak reference to GPU filters, else None;
    ``settled``: ranked for the calls to come, not for a first call), dropping the
    least recently used plans beyond the cache's limits."""
    if p.state_bytes > _PLAN_CACHE_MAX_STATE_BYTES:
        return
    with _plan_cache_lock:
        held = _plan_cache.get(key)
        if not settled and held is not None and held[2]:
            return  # (a slow first call: another thread's call has settled the key)
        _plan_cache[key] = (p, ref, settled)
        while len(_plan_cache) > _PLAN_CACHE_SIZE or (
            len(_plan_cache) > 1
            and sum(q.state_bytes for q, *_ in _plan_cache.values()) > _PLAN_CACHE_TOTAL_BYTES
        ):
            _plan_cache.popitem(last=False)


def _as_array(a, name: str) -> np.ndarray:
    return _array_and_kind(a, name)[0]


def _array_and_kind(a, name: str):
    """``a`` as a NumPy array of numbers, and its array type (see ``arrays.to_numpy``)."""
    a, kind = to_numpy(a, name)
    if a.dtype == object or a.dtype.kind in "USV":
        raise TypeError(
            f"{name} has dtype {a.dtype}; batchconv accepts integer, float and complex arrays"
        )
    return a, kind


def _run(x, w, spec, flip: bool, options: dict, progress=None):
    """``correlate`` (``flip`` False) or ``convolve``: a lazy Dask array for Dask input,
    else the remembered (or a new) plan run on ``x``, in ``x``'s array type, telling
    ``progress`` (per call: not part of the plan)."""
    if type(x) is np.ndarray and type(w) is np.ndarray:  # the common case, kept short
        return _cached_plan(x, w, spec, flip, options)(x, progress)
    if isinstance(w, (list, tuple)) and len(w) == 0:
        raise ValueError("w is an empty list: give at least one filter")
    if is_ragged(w) and records_grad(x, *w):
        raise NotImplementedError(
            "gradients through a ragged bank are not built yet; call bc.correlate once "
            "per template shape"
        )
    if records_grad(x, w):  # torch autograd: a Function whose backward is correlations
        from .autodiff.torch_function import correlate_with_grad

        def run(a, b):
            return _run(a, b, spec, flip, options, progress)

        return correlate_with_grad(run, x, w, spec, flip, options, _OPS)
    if is_ragged(w):  # templates of several shapes (ragged.py)
        if is_dask(x) or is_array_api(x):
            if progress is not None and progress is not False:
                raise TypeError("progress= is for NumPy arrays and torch tensors")
            return correlate_groups(convolve if flip else correlate, x, w, spec, options=options)
        return _ragged_plan(x, w, spec, flip, options)(x, progress)
    if is_array_api(x) and not (is_dask(x) or is_dask(w)):
        if options.pop("mask", None) is not None:
            raise NotImplementedError(
                "mask= works on NumPy, torch and Dask arrays for now; compute JAX and "
                "other array-API arrays through NumPy (np.asarray) for a mask"
            )
    if is_dask(x) or is_dask(w):
        if progress is not None and progress is not False:
            raise TypeError(
                "progress= is for in-memory arrays; a Dask computation reports its own "
                "(dask.diagnostics.ProgressBar, or the distributed dashboard)"
            )
        return lazy_correlate(x, w, spec, flip, **options)
    if is_array_api(x):  # JAX, CuPy...: computed on x's own library (portable/)
        if is_jax(x) and not isinstance(w, (list, tuple)):
            from .autodiff.jax_function import correlate_with_vjp  # (jax.grad works)

            def run(a, b):
                return portable_correlate(a, b, spec, flip=flip, progress=progress, **options)

            return correlate_with_vjp(run, x, w, spec, flip, options, _OPS)
        return portable_correlate(x, w, spec, flip=flip, progress=progress, **options)
    if device_of(x) not in (None, "cpu"):  # a GPU tensor: it stays there (tensors.py)
        return _cached_plan(x, w, spec, flip, options)(x, progress)
    tensor = x
    x, kind = _array_and_kind(x, "x")
    if kind == "torch":  # a CPU tensor: the plan may run a NumPy or a torch method
        plan = _cached_plan(x, w, spec, flip, {**options, "device": "cpu"})
        if plan.module.ON_TENSORS:  # tensors in, a tensor out, no NumPy between
            return plan(tensor, progress)
        return from_numpy(plan(x, progress), kind)
    return _cached_plan(x, w, spec, flip, options)(x, progress)


def _ragged_plan(x, w, spec, flip: bool, options: dict) -> RaggedPlan:
    """The plan of a ragged bank ``w`` (``ragged.py``), its plans made here."""
    return ragged_plan(_make_plan, x, _x_signature(x), w, spec, flip=flip, options=options)


def _is_signature(x) -> bool:
    """Whether ``x`` is a ``(shape, dtype)`` pair: a tuple of a shape (integers) and
    something NumPy or torch reads as a dtype; nested tuples of numbers are data."""
    if not (isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple | list)):
        return False
    shape, dtype = x
    if not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in shape):
        return False
    if isinstance(dtype, tuple | list | np.ndarray):  # a row of data, not a dtype
        return False
    try:
        numpy_dtype(dtype)
    except (TypeError, ValueError):
        return False
    return True


def _x_signature(x):
    """(shape, dtype) of x, which may be an array, a tensor (on any device) or a
    ``(shape, dtype)`` pair."""
    if _is_signature(x):
        return tuple(x[0]), numpy_dtype(x[1])
    return _shape_dtype(x, "x")


def _x_strides(x) -> tuple[float, ...] | None:
    """x's strides in elements (None for a ``(shape, dtype)`` pair or nested lists: C
    order), which tell a plan how its kernels can read x (:func:`problem.x_layout`)."""
    if type(x) is np.ndarray:  # (the common case first)
        return element_strides(x)
    if _is_signature(x) or not (isinstance(x, np.ndarray) or device_of(x) is not None):
        return None
    return element_strides(x)


def _shape_dtype(a, name: str):
    """(shape, dtype) of an array or a tensor (on any device, not copied)."""
    if device_of(a) is not None:
        return tuple(a.shape), numpy_dtype(a.dtype)
    a = _as_array(a, name)
    return a.shape, a.dtype


def _make_plan(
    x,
    w,
    spec,
    *,
    flip: bool,
    mode="valid",
    origin=0,
    stride=1,
    dilation=1,
    padding="constant",
    cval=0.0,
    metric="dot",
    reduce=None,
    method="auto",
    memory=None,
    workers=None,
    device=None,
    mask=None,
    reused: bool = True,
) -> Plan:
    shape, dtype = _x_signature(x)
    w_shape, w_dtype = _shape_dtype(w, "w")  # nested tuples are data here, not a signature
    if device is None:  # where tensors live: x's device, or w's when x is a signature
        device = device_of(w) if _is_signature(x) else device_of(x)
    p = make_problem(
        shape,
        dtype,
        w_shape,
        w_dtype,
        spec,
        mode=mode,
        origin=origin,
        stride=stride,
        dilation=dilation,
        padding=padding,
        cval=cval,
        metric=metric,
        reduce=reduce,
        flip=flip,
        x_strides=_x_strides(x),
        masked=mask is not None,
    )
    if mask is not None:  # float64 weights of w's shape (metrics/masked.py)
        sp = p.spec
        mask = check_mask(host_mask(mask), w_shape, sp.w, sp.sliding, sp.w_summed)
        p = with_mask(p, mask)
    return plan_problem(
        p,
        w,
        method=method,
        memory=memory,
        workers=workers,
        device=device,
        mask=mask,
        reused=reused,
    )


@overload
def correlate(
    x: np.ndarray, w: np.ndarray, spec: str | None = ..., **options: Unpack[Options]
) -> np.ndarray: ...


@overload
def correlate(
    x: DaskArray, w: Any, spec: str | None = ..., **options: Unpack[Options]
) -> DaskArray: ...


@overload
def correlate(
    x: Any, w: DaskArray, spec: str | None = ..., **options: Unpack[Options]
) -> DaskArray: ...


@overload
def correlate(x: Tensor, w: Any, spec: str | None = ..., **options: Unpack[Options]) -> Tensor: ...


@overload
def correlate(
    x: ArrayLike, w: Any, spec: str | None = ..., **options: Unpack[Options]
) -> np.ndarray: ...


def correlate(
    x: Any,
    w: Any,
    spec: str | None = None,
    *,
    mode: str | Sequence[int] | Sequence[Sequence[int]] = "valid",
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    padding: str = "constant",
    cval: complex = 0.0,
    metric: str = "dot",
    reduce: str | Callable[..., Any] | None = None,
    method: str = "auto",
    memory: int | str | None = None,
    workers: int | None = None,
    progress: bool | Callable[[int, int], Any] | None = None,
    mask: ArrayLike | None = None,
    origin: int | Sequence[int] = 0,
) -> np.ndarray | Tensor | DaskArray:
    """Cross-correlate every item of ``x`` with every filter of ``w``.

    ``out[n, k, i] = sum_j x[n, i * stride + j * dilation] * conj(w[k, j])`` over the sliding
    axes, with ``mode`` ('valid', 'same', 'full') exactly as in ``scipy.signal.correlate``.

    Parameters
    ----------
    x, w : array_like, torch tensors (CPU or CUDA), or JAX / array-API arrays
        With ``spec=None``: ``x`` is ``(N, *S)``; ``w`` is a bank ``(K, *T)`` (result
        ``(N, K, *S_out)``) or one filter ``T`` (result ``(N, *S_out)``); ``w`` may also
        be a list of templates of different shapes (a ragged bank: the README's
        "Templates of several shapes"). When ``x`` is a
        torch tensor the result is one too, on ``x``'s device (see the README's "Array
        types"); when it is a JAX (or CuPy, or other array-API) array, the result is an
        array of that library, computed by it (the portable engine).
    spec : str, optional
        ``"xaxes,waxes->outaxes|sliding"``, e.g. ``"nhwc,hwco->nhwo|hw"``: einsum letters,
        with the sliding (correlated) axes after the bar. See the README.
    mode, stride, dilation, padding, cval, origin :
        Window geometry. ``mode``: 'valid', 'same', 'full' (as ``scipy.signal``), or
        explicit padding: ``(lo, hi)`` samples before and after ``x`` on every sliding
        axis, or one such pair per sliding axis (TF's and torch's padding amounts).
        ``stride``/``dilation``/``origin``: an int or one per sliding axis.
        ``padding`` ('constant' with ``cval``, 'reflect', 'symmetric', 'edge', 'wrap') is
        what lies outside ``x``, as in ``numpy.pad`` (scipy.ndimage's names are refused
        with their numpy.pad equivalent). ``origin`` moves every window that many
        samples earlier (``scipy.ndimage``'s sign: positive shifts the filter left).
    metric : str
        "dot" (plain correlation), or a sliding similarity between each window and each
        filter: "ssd" (sum of squared differences), "sad" (sum of absolute
        differences), "ncc" (Pearson correlation, in [-1, 1]; flat windows or filters give
        0), "cosine". See the README's "Similarity metrics".
    reduce : None, str or callable
        Reduce the sliding axes missing from the output: "sum", "mean", "max", "min",
        "argmax", "argmin" (coordinates as a trailing axis), ``bc.peaks(k, ...)`` (the
        k best local extrema of each map: the call returns ``PeakResult(scores,
        coords)``) or ``f(block, axis=tuple)``.
        With ``spec=None`` every sliding axis is reduced. Fused: the unreduced result is
        never held whole.
    method : str
        "auto", "direct" or "fft"; for torch tensors also "torch_direct" (torch
        convolutions) or "torch_fft" (torch.fft); on CUDA "direct"/"fft" mean those.
        "measure": time the candidates the cost model cannot tell apart, once per
        problem and device, and keep the fastest (what "auto" does on CUDA).
    memory : int or str
        Budget for temporaries beyond the inputs and result, e.g. ``"2GB"``.
    workers : int or None
        Threads for batchconv's pool, the FFT engine and, with threadpoolctl, BLAS.
        None keeps the current ``set_workers`` setting (all cores by default); -1 means
        all cores; a positive int means that many threads, capped at the cores this
        process may run on (``os.sched_getaffinity``). 0, other negative values and
        non-integers raise ValueError.
    progress : None, True or callable
        ``f(done, total)`` called after each block of the call, or True for a bar on
        stderr (tqdm's when installed). An exception it raises aborts the call with no
        result. Not for Dask arrays (Dask reports its own).
    mask : array_like, optional
        Weights of the template positions, for every metric: OpenCV's masked
        ``matchTemplate`` formulas (ssd ``sum (m (a - b))^2``, dot ``sum m^2 a b``,
        cosine and ncc with ``m``-weighted norms and means; sad ``sum m |a - b|``).
        Its shape broadcasts to ``w``'s: the template's sliding shape (one mask for
        all), or with the channel and bank axes (size 1 where shared). Booleans and
        integers are binary (nonzero: 1); floats are weights in [0, 1]. NumPy arrays,
        torch tensors and Dask arrays. See the README's "Masks".

    Returns
    -------
    numpy.ndarray, torch.Tensor, dask.array.Array, or an array-API array
        The inputs' array type: a lazy Dask array when ``x`` or ``w`` is one; else a
        tensor on ``x``'s device when ``x`` is a torch tensor; else an array of ``x``'s
        library (JAX...) when it is one; else a NumPy array.

    Examples
    --------
    >>> import numpy as np, batchconv as bc
    >>> bc.correlate(np.array([[1., 2., 3., 4.]]), np.array([1., 1.]))
    array([[3., 5., 7.]])
    >>> bc.correlate(np.arange(8.).reshape(2, 4), np.array([[1., 0.], [0., 1.]]))
    array([[[0., 1., 2.],
            [1., 2., 3.]],
    <BLANKLINE>
           [[4., 5., 6.],
            [5., 6., 7.]]])
    """
    return _run(
        x,
        w,
        spec,
        False,
        dict(
            mode=mode,
            origin=origin,
            stride=stride,
            dilation=dilation,
            padding=padding,
            cval=cval,
            metric=metric,
            reduce=reduce,
            method=method,
            memory=memory,
            workers=workers,
            mask=mask,
        ),
        progress,
    )


@overload
def convolve(
    x: np.ndarray, w: np.ndarray, spec: str | None = ..., **options: Unpack[Options]
) -> np.ndarray: ...


@overload
def convolve(
    x: DaskArray, w: Any, spec: str | None = ..., **options: Unpack[Options]
) -> DaskArray: ...


@overload
def convolve(
    x: Any, w: DaskArray, spec: str | None = ..., **options: Unpack[Options]
) -> DaskArray: ...


@overload
def convolve(x: Tensor, w: Any, spec: str | None = ..., **options: Unpack[Options]) -> Tensor: ...


@overload
def convolve(
    x: ArrayLike, w: Any, spec: str | None = ..., **options: Unpack[Options]
) -> np.ndarray: ...


def convolve(
    x: Any,
    w: Any,
    spec: str | None = None,
    *,
    mode: str | Sequence[int] | Sequence[Sequence[int]] = "valid",
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    padding: str = "constant",
    cval: complex = 0.0,
    metric: str = "dot",
    reduce: str | Callable[..., Any] | None = None,
    method: str = "auto",
    memory: int | str | None = None,
    workers: int | None = None,
    progress: bool | Callable[[int, int], Any] | None = None,
    mask: ArrayLike | None = None,
    origin: int | Sequence[int] = 0,
) -> np.ndarray | Tensor | DaskArray:
    """Convolve every item of ``x`` with every filter of ``w``: :func:`correlate` with ``w``
    reversed along the sliding axes (and not conjugated), as ``scipy.signal.convolve``.
    The result's array type follows the inputs' as in :func:`correlate`.

    >>> import numpy as np, batchconv as bc
    >>> bc.convolve(np.array([[1., 2., 3., 4., 5.]]), np.array([1., 1.]), mode="same")
    array([[1., 3., 5., 7., 9.]])
    """
    return _run(
        x,
        w,
        spec,
        True,
        dict(
            mode=mode,
            origin=origin,
            stride=stride,
            dilation=dilation,
            padding=padding,
            cval=cval,
            metric=metric,
            reduce=reduce,
            method=method,
            memory=memory,
            workers=workers,
            mask=mask,
        ),
        progress,
    )


def vjp(
    x: Any, w: Any, spec: str | None = None, *, cotangent: Any, convolve: bool = False, **options
) -> tuple[Any, Any]:
    """The vector-Jacobian product of ``correlate(x, w, spec, **options)`` (of
    ``convolve`` when ``convolve=True``): ``(grad_x, grad_w)``, the gradients of
    ``sum(cotangent * y)`` with respect to ``x`` and ``w``, for training models on NumPy
    arrays (torch tensors that require grad and ``jax.grad`` get the same backward
    without this call).

    ``cotangent`` has the result's shape. Every spec role, mode, stride, dilation and
    padding is differentiable (reflect, symmetric, edge and wrap send a padded sample's
    gradient back to the sample it copies), and so are the metrics (ssd, ncc and
    cosine through their formulas, a flat window or filter giving a zero gradient; sad
    its subgradient ``sign(a - b)``) and the reductions ``sum``, ``mean``, ``max`` and
    ``min`` (the gradient goes to the selected element, the first of ties). The
    backward runs as correlations through the planner, with the call's ``method``,
    ``memory`` (half for those correlations, half for its own temporaries: a backward
    needs about twice its forward's budget) and ``workers``. NumPy arrays, torch
    tensors and JAX arrays; both gradients are of ``x``'s array library, in the inputs'
    floating dtypes (integer inputs: float64). Filters with an Inf give NaN (0 * Inf)
    also where the forward never multiplied them.

    With ``reduce=bc.peaks(...)`` the cotangent is the scores' (shape
    ``scores.shape``): each peak's goes to its element (peaks found again); the
    coordinates have no gradient. Not differentiable: ``reduce="argmax"``/``"argmin"``
    (coordinates: TypeError here; on torch tensors an integer result without a
    gradient, as torch's argmax). Not built yet (NotImplementedError): a callable
    ``reduce``, ``mask=``, complex data and ragged banks.

    Examples
    --------
    >>> import numpy as np, batchconv as bc
    >>> x, w = np.arange(6.0).reshape(1, 6), np.array([1.0, 2.0])
    >>> gx, gw = bc.vjp(x, w, cotangent=np.ones((1, 5)))
    >>> gx, gw
    (array([[1., 3., 3., 3., 3., 2.]]), array([10., 15.]))
    """
    options.pop("progress", None)  # (a backward has no blocks to report)
    return autodiff_vjp(x, w, spec, cotangent, convolve, options, _OPS)


def plan(
    x: Any, w: Any, spec: str | None = None, *, convolve: bool = False, **options: Any
) -> Plan | PortablePlan | RaggedPlan:
    """Prepare a correlation (or convolution) once and run it on many inputs.

    ``x`` is an array or a ``(shape, dtype)`` pair; ``options`` are those of
    :func:`correlate`. The plan keeps everything that depends only on ``w`` (e.g. the
    filter spectra) and reuses it on every call. For a JAX (or other array-API) ``x``,
    or a ``(shape, dtype)`` pair with such a ``w``, it is a
    :class:`~batchconv.portable.PortablePlan` computing on that library.

    >>> import numpy as np, batchconv as bc
    >>> p = bc.plan(((8, 32, 32), np.float32), np.ones((4, 3, 3), np.float32), mode="same")
    >>> p(np.ones((8, 32, 32), np.float32)).shape
    (8, 4, 32, 32)
    """
    if is_ragged(w):  # templates of several shapes (ragged.py)
        return _ragged_plan(x, w, spec, convolve, options)
    if is_array_api(x) or (is_array_api(w) and _is_signature(x)):
        if options.pop("mask", None) is not None:
            raise NotImplementedError("mask= works on NumPy arrays and torch tensors for now")
        return make_plan(x, w, spec, flip=convolve, **options)
    return _make_plan(x, w, spec, flip=convolve, **options)


# a method or metric registered or unregistered: cached plans name them
methods.ON_CHANGE.append(clear_plan_cache)
metrics.ON_CHANGE.append(clear_plan_cache)


# what a backward pass runs its correlations with (autodiff.adjoint.Runner)
_OPS = (correlate, convolve, plan)
