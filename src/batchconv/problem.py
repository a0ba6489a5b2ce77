"""A Problem: spec + shapes + geometry + dtype, and the canonical layout every method uses.

After the spec is parsed, ``x`` is viewed as ``(B, C, P, *S)`` and ``w`` as
``(K, C, P, *T)`` (B: batch, K: bank, C: summed, P: paired, S/T: sliding), by transposes
and reshapes only. Methods compute blocks of ``(b, k, P, *O)`` and never see the user's
layout; :func:`final_view` turns the canonical result back into the spec's output order.

>>> import numpy as np
>>> p = make_problem((4, 8, 8, 3), np.float32, (5, 5, 3, 16), np.float32,
...                  spec="nhwc,hwco->nhwo|hw")
>>> p.B, p.K, p.C, p.P, p.out_shape
(4, 16, 3, 1, (4, 4, 4, 16))
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache, wraps
from math import prod

import numpy as np

from .geometry import MODES, NDIMAGE_MODES, PADDINGS, AxisGeometry, axis_geometry
from .metrics import METRICS, metric_of
from .peak_reduce import Peaks
from .spec import ChannelsWarning, Spec, channels_hint, default_spec, parse_spec

__all__ = [
    "Problem",
    "make_problem",
    "result_dtype",
    "canonical_x",
    "canonical_w",
    "final_view",
    "canonical_out_view",
    "long_axis_last",
    "x_layout",
    "problem_cache",
]

REDUCES = ("sum", "mean", "max", "min", "argmax", "argmin")


@dataclass(frozen=True)
class Problem:
    """Everything about a call except the data: plain values, picklable."""

    spec: Spec
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    dtype: np.dtype  # compute and result dtype
    integer_inputs: bool  # both inputs integers: results are rounded to exact integers
    geoms: tuple[AxisGeometry, ...]  # one per sliding letter, in spec.sliding order
    mode: str | tuple  # a name, or (per-axis names or (lo, hi) pairs, per-axis origins)
    padding: str
    cval: complex | float
    flip: bool  # convolve: the kernel is reversed along the sliding axes
    conj: bool  # correlate of complex data: the kernel is conjugated
    reduce: str | Callable | None
    metric: str  # "dot" (plain correlation) or a similarity metric (see metrics/)
    B: int
    K: int
    C: int
    P: int
    batch_shape: tuple[int, ...]
    bank_shape: tuple[int, ...]
    paired_shape: tuple[int, ...]
    # x's own dtype where it differs from the compute dtype (integers, float16): each
    # block of x is then converted, a copy the memory budget counts; None otherwise
    x_dtype: np.dtype | None = None
    # how x is laid out (x_layout; kept per call, like x_dtype): the sliding axis (its
    # index in spec.sliding) whose samples are adjacent in memory, where the compiled
    # kernels read x's rows in place (None: no such axis); whether x's canonical view is
    # C-contiguous, where the metrics read it in place
    x_unit_axis: int | None = None
    x_contiguous: bool = False
    # whether x's channels (the summed axes, merged) are adjacent in memory (one channel,
    # or stride 1), where Winograd's compiled transforms read a 'valid' input in place
    x_channels_adjacent: bool = False
    # mask= was given: the metric weights each template position (metrics/masked.py);
    # the plan's filters are then the templates and the mask, both (K, C, P, *T). False,
    # True, or what is known of the mask (a metrics.masked.MaskInfo: how it is shared)
    masked: object = False

    def with_batch_shape(self, x_shape: tuple[int, ...]) -> Problem | None:
        """This problem for an ``x`` of ``x_shape`` that differs only in its batch axes, or
        None when another axis differs (filters' state stays valid: it does not depend on
        the batch)."""
        x_shape = tuple(int(n) for n in x_shape)
        if len(x_shape) != len(self.x_shape) or any(
            a != b and c not in self.spec.batch
            for a, b, c in zip(x_shape, self.x_shape, self.spec.x, strict=True)
        ):
            return None
        sizes = dict(zip(self.spec.x, x_shape, strict=True))
        batch_shape = tuple(sizes[c] for c in self.spec.batch)
        return replace(self, x_shape=x_shape, B=prod(batch_shape), batch_shape=batch_shape)

    @cached_property
    def cache_key(self) -> Problem:
        """This problem with a callable ``reduce`` replaced by a placeholder (itself when
        ``reduce`` is not a callable): what module-level caches key on
        (:func:`problem_cache`), so that none keeps a user's callable alive."""
        return replace(self, reduce=_a_callable) if callable(self.reduce) else self

    @property
    def precision(self) -> str:
        """``"single"`` (float32, complex64) or ``"double"``: the cost model's features
        are counted per precision."""
        return "single" if self.dtype in (np.float32, np.complex64) else "double"

    @property
    def ndim(self) -> int:
        """Number of sliding axes."""
        return len(self.geoms)

    @cached_property
    def S(self) -> tuple[int, ...]:
        return tuple(g.n for g in self.geoms)

    @cached_property
    def T(self) -> tuple[int, ...]:
        return tuple(g.m for g in self.geoms)

    @cached_property
    def O(self) -> tuple[int, ...]:  # noqa: E743 - the output sizes, named as in the docs
        return tuple(g.out for g in self.geoms)

    @cached_property
    def reduced_axes(self) -> tuple[int, ...]:
        """Positions (0-based among the sliding axes) of the reduced sliding axes."""
        return tuple(i for i, c in enumerate(self.spec.sliding) if c in self.spec.reduced)

    @cached_property
    def canonical_out_shape(self) -> tuple[int, ...]:
        kept = tuple(
            g.out
            for g, c in zip(self.geoms, self.spec.sliding, strict=True)
            if c not in self.spec.reduced
        )
        return (self.B, self.K, self.P, *kept, *self.reduce_tail)

    @cached_property
    def reduced_size(self) -> int:
        """Outputs per map over the reduced sliding axes (1 when none is reduced)."""
        return prod(self.geoms[i].out for i in self.reduced_axes)

    @cached_property
    def reduce_tail(self) -> tuple[int, ...]:
        """The trailing axes a reduction adds to the result: argmax/argmin the reduced
        axes' coordinates, :func:`~batchconv.peaks` each peak's score and coordinates
        (packed; the call unpacks them)."""
        if self.reduce in ("argmax", "argmin"):
            return (len(self.reduced_axes),)
        if isinstance(self.reduce, Peaks):
            return self.reduce.tail(len(self.reduced_axes))
        return ()

    @cached_property
    def out_dtype(self) -> np.dtype:
        if self.reduce in ("argmax", "argmin"):
            return np.dtype(np.intp)
        if isinstance(self.reduce, Peaks):
            return np.dtype(np.float64)  # scores and coordinates, packed
        return self.dtype

    @cached_property
    def out_shape(self) -> tuple[int, ...]:
        """The result's shape in the spec's output order."""
        sizes = self._letter_sizes()
        return tuple(sizes[c] for c in self.spec.out) + self.reduce_tail

    def _letter_sizes(self) -> dict[str, int]:
        sizes = dict(zip(self.spec.x, self.x_shape, strict=True))
        sizes.update(zip(self.spec.w, self.w_shape, strict=True))
        for c, g in zip(self.spec.sliding, self.geoms, strict=True):
            sizes[c] = g.out
        return sizes

    @cached_property
    def window_size(self) -> int:
        """Number of products summed into one output element (C * prod(T))."""
        return self.C * prod(self.T)


def result_dtype(x_dtype, w_dtype) -> np.dtype:
    """The compute dtype: NumPy promotion, except integers -> float64, float16 -> float32.

    >>> result_dtype(np.int16, np.int64), result_dtype(np.float32, np.float32)
    (dtype('float64'), dtype('float32'))
    """
    dts = [np.dtype(x_dtype), np.dtype(w_dtype)]
    for name, dt in zip(("x", "w"), dts, strict=True):
        if dt.kind not in "iufc":
            hint = f" Convert booleans with {name}.astype(np.float32)." if dt.kind == "b" else ""
            raise TypeError(
                f"{name} has dtype {dt}; batchconv accepts integer, float (16/32/64) and "
                f"complex (64/128) arrays.{hint}"
            )
        if dt.kind in "fc" and dt.itemsize > (16 if dt.kind == "c" else 8):
            raise TypeError(
                f"{name} has dtype {dt}; extended precision is not supported, "
                f"use float64 or complex128"
            )
    rt = np.result_type(*dts)
    if rt.kind in "iu":
        return np.dtype(np.float64)
    if rt == np.float16:
        return np.dtype(np.float32)
    return rt


def _per_axis(value, n: int, name: str, sliding: str, lowest: int | None = 1) -> tuple[int, ...]:
    vals = (value,) * n if np.ndim(value) == 0 else tuple(value)
    if len(vals) != n:
        raise ValueError(
            f"{name} has {len(vals)} values but there are {n} sliding axes "
            f"{sliding!r}; give one int or one per sliding axis"
        )
    out = []
    for c, v in zip(sliding, vals, strict=True):
        if (
            isinstance(v, bool)
            or not isinstance(v, int | np.integer)
            or (lowest is not None and v < lowest)
        ):
            what = "a positive int" if lowest == 1 else "an int"
            raise ValueError(f"{name} must be {what} on every sliding axis; axis {c!r} got {v!r}")
        out.append(int(v))
    return tuple(out)


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _modes(mode, n: int, sliding: str) -> tuple:
    """``mode`` per sliding axis: a name for all, or explicit padding (lo, hi) for all
    or one pair per axis (TF's and torch's padding amounts)."""
    if isinstance(mode, str):
        if mode not in MODES:
            raise ValueError(
                f"mode must be one of {MODES} or padding amounts (lo, hi) (one pair, or "
                f"one per sliding axis), got {mode!r}"
            )
        return (mode,) * n
    try:
        pairs = [tuple(mode)] if np.ndim(mode) == 1 else [tuple(p) for p in mode]
        ok = all(
            len(p) == 2
            and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in p)
            for p in pairs
        )
    except TypeError:
        ok = False
    if not ok or len(pairs) not in (1, n):
        raise ValueError(
            f"mode must be one of {MODES} or padding amounts: one pair (lo, hi) of ints "
            f"for every sliding axis, or one per sliding axis {sliding!r}; got {mode!r}"
        )
    pairs = pairs * n if len(pairs) == 1 else pairs
    return tuple((int(lo), int(hi)) for lo, hi in pairs)


def make_problem(
    x_shape,
    x_dtype,
    w_shape,
    w_dtype,
    spec: str | None = None,
    *,
    mode: str = "valid",
    stride=1,
    dilation=1,
    padding: str = "constant",
    cval: float = 0.0,
    metric: str = "dot",
    reduce=None,
    flip: bool = False,
    x_strides: tuple[float, ...] | None = None,
    masked: object = False,
    origin=0,
) -> Problem:
    """Validate every option against the shapes and build the :class:`Problem`; x's
    element strides ``x_strides`` (None: C order) tell how the kernels can read it;
    ``masked``: a mask weights the template positions (checked by the caller)."""
    x_shape, w_shape = tuple(int(s) for s in x_shape), tuple(int(s) for s in w_shape)
    dtype = result_dtype(x_dtype, w_dtype)
    known = metric_of(metric)  # (a ValueError naming the valid ones)
    if flip and not known.convolves:
        valid = [m.name for m in METRICS.values() if m.convolves]
        raise ValueError(
            f"convolve computes metric {' or '.join(map(repr, valid))} only (got "
            f"metric={metric!r}); use correlate for similarity metrics"
        )
    if not known.complex and dtype.kind == "c":
        valid = [m.name for m in METRICS.values() if m.complex]
        raise TypeError(
            f"metric {metric!r} needs real data (x and w give {dtype}); "
            f"complex data works with metric {' or '.join(map(repr, valid))}"
        )
    if padding in NDIMAGE_MODES and padding not in PADDINGS:
        raise ValueError(
            f"padding={padding!r} is scipy.ndimage's name; padding= takes numpy.pad's, "
            f"where it is {NDIMAGE_MODES[padding]!r} (and ndimage's 'reflect' is "
            f"'symmetric'; batchconv.compat.ndimage takes ndimage's names)"
        )
    if padding not in PADDINGS:
        raise ValueError(
            f"padding must be one of {PADDINGS} (numpy.pad's meaning), got {padding!r}"
        )
    cval = _scalar_cval(cval)
    if padding != "constant" and cval != 0:
        raise ValueError(
            f"cval={cval!r} applies to padding='constant' only; "
            f"padding={padding!r} takes its values from x"
        )
    if np.iscomplexobj(cval) and np.imag(cval) != 0 and dtype.kind != "c":
        raise ValueError(
            f"cval={cval!r} is complex but x and w are real ({dtype}); make x "
            f"complex or use a real cval"
        )
    peaks = isinstance(reduce, Peaks)
    if reduce is not None and not (callable(reduce) or peaks) and reduce not in REDUCES:
        raise ValueError(
            f"reduce must be None, one of {REDUCES}, bc.peaks(k, ...) or a callable "
            f"f(block, axis=tuple), got {reduce!r}"
        )
    if (peaks or reduce in ("argmax", "argmin", "max", "min")) and dtype.kind == "c":
        raise TypeError(f"reduce={reduce!r} needs real data; the result here is {dtype}")
    if peaks:  # the metric says which extremes are the best matches
        reduce = replace(reduce, lowest=known.best == "min")
    if spec is None:
        sp = default_spec(len(x_shape), len(w_shape), reduce_sliding=reduce is not None)
        hint = channels_hint(x_shape, w_shape)
        if hint is not None:
            warnings.warn(hint, ChannelsWarning, stacklevel=_caller_level())
    else:
        try:
            sp = parse_spec(spec)
        except ValueError as e:
            raise ValueError(str(e)) from None
    if reduce is None and sp.reduced:
        reduce = "sum"  # einsum rule: a letter missing from the output is summed
    if reduce is not None and not sp.reduced:
        raise ValueError(
            f"reduce={reduce!r} but spec '{sp}' keeps every sliding axis in the "
            f"output; leave a sliding letter out of the output to reduce over it"
        )
    for name, letters, shape in (("x", sp.x, x_shape), ("w", sp.w, w_shape)):
        if len(letters) != len(shape):
            raise ValueError(
                f"spec '{sp}' gives {name} {len(letters)} axes ({letters!r}) but "
                f"{name} has shape {shape} ({len(shape)} axes)"
            )
    xs = dict(zip(sp.x, x_shape, strict=True))
    ws = dict(zip(sp.w, w_shape, strict=True))
    for c in sp.summed + sp.paired:
        if xs[c] != ws[c]:
            role = "summed" if c in sp.summed else "paired"
            raise ValueError(
                f"{role} axis {c!r} of spec '{sp}' has size {xs[c]} in x but "
                f"{ws[c]} in w; they must match"
            )
    if sp.x_summed and padding == "constant":
        # x's letters of its own are summed before the padding: every summed sample is
        # cval outside x, so the sum's padding is cval times their count
        cval = cval * prod(xs[c] for c in sp.x_summed)
    n = len(sp.sliding)
    strides = _per_axis(stride, n, "stride", sp.sliding)
    dils = _per_axis(dilation, n, "dilation", sp.sliding)
    modes = _modes(mode, n, sp.sliding)
    origins = _per_axis(origin, n, "origin", sp.sliding, lowest=None)
    geoms = tuple(
        axis_geometry(xs[c], ws[c], m, s, d, letter=c, origin=o)
        for c, m, s, d, o in zip(sp.sliding, modes, strides, dils, origins, strict=True)
    )
    if not isinstance(mode, str) or any(origins):
        mode = (modes, origins)  # (the problem records both)
    # exact-integer results: integer data, and padding that adds only integers
    unit, contiguous, adjacent = x_layout(sp, x_shape, x_strides)
    integer_inputs = (
        np.dtype(x_dtype).kind in "iu"
        and np.dtype(w_dtype).kind in "iu"
        and (padding != "constant" or float(np.real(cval)).is_integer())
        and np.imag(cval) == 0
    )
    return Problem(
        spec=sp,
        x_shape=x_shape,
        w_shape=w_shape,
        dtype=dtype,
        integer_inputs=integer_inputs,
        geoms=geoms,
        mode=mode,
        padding=padding,
        cval=cval,
        flip=flip,
        conj=(not flip) and dtype.kind == "c",
        reduce=reduce,
        metric=metric,
        B=prod(xs[c] for c in sp.batch),
        K=prod(ws[c] for c in sp.bank),
        C=prod(xs[c] for c in sp.summed),
        P=prod(xs[c] for c in sp.paired),
        batch_shape=tuple(xs[c] for c in sp.batch),
        bank_shape=tuple(ws[c] for c in sp.bank),
        paired_shape=tuple(xs[c] for c in sp.paired),
        x_dtype=None if np.dtype(x_dtype) == dtype else np.dtype(x_dtype),
        x_unit_axis=unit,
        x_contiguous=contiguous,
        x_channels_adjacent=adjacent,
        masked=masked,
    )


def _scalar_cval(cval) -> complex | float:
    """``cval`` as a Python number (a NumPy scalar or 0-d array is one), or TypeError.

    >>> _scalar_cval(np.float32(2.5)), _scalar_cval(np.array(1 + 2j))
    (2.5, (1+2j))
    """
    if isinstance(cval, np.ndarray) and cval.ndim == 0:
        cval = cval[()]
    if not isinstance(cval, int | float | complex | np.number | np.bool_):
        raise TypeError(
            f"cval must be one number (the value outside x for padding='constant'), got {cval!r}"
        )
    return complex(cval) if np.iscomplexobj(cval) else float(cval)


def _permute(a, axes: list[int]):
    """``a.transpose(axes)`` for a NumPy array, ``a.permute(axes)`` for a torch tensor."""
    return a.permute(axes) if hasattr(a, "permute") else a.transpose(axes)


def _canonical(
    a, letters: str, lead: str, summed: str, paired: str, sliding: str, pre_summed: str, dtype
):
    """``a`` (array or tensor) with its axes in ``lead, summed, paired, sliding`` order,
    each group merged into one axis (the sliding axes kept). The axes of one operand
    only (``pre_summed``) are summed first, in ``dtype`` (the compute dtype, NumPy's or
    torch's: a float16 sum of 3000 values near 1 is off by hundreds)."""
    if pre_summed:
        a = a.sum(axis=tuple(letters.index(c) for c in pre_summed), dtype=dtype)
        letters = "".join(c for c in letters if c not in pre_summed)
    order = lead + summed + paired + sliding
    a = _permute(a, [letters.index(c) for c in order])
    s = a.shape
    nl, ns, npd = len(lead), len(summed), len(paired)
    return a.reshape(
        prod(s[:nl]), prod(s[nl : nl + ns]), prod(s[nl + ns : nl + ns + npd]), *s[nl + ns + npd :]
    )


def canonical_x(p: Problem, x: np.ndarray, convert: bool = True) -> np.ndarray:
    """View ``x`` as ``(B, C, P, *S)`` in the compute dtype (a copy only where needed);
    with ``convert=False`` in ``x``'s own dtype where it differs (the block loop converts
    one block at a time: a whole converted copy would be outside the memory budget)."""
    sp = p.spec
    c = _canonical(x, sp.x, sp.batch, sp.summed, sp.paired, sp.sliding, sp.x_summed, p.dtype)
    return c.astype(p.dtype, copy=False) if convert else c


def canonical_w(p: Problem, w: np.ndarray) -> np.ndarray:
    """``w`` as ``(K, C, P, *T)`` in the compute dtype, flipped (convolve) or conjugated
    (correlate of complex data), so that every method computes
    ``sum_j x[i * stride + j * dilation] * w[j]``. Always a new array, never a view of
    ``w``: a plan owns its filters, so changing ``w`` afterwards changes no result."""
    sp = p.spec
    c = _canonical(w, sp.w, sp.bank, sp.summed, sp.paired, sp.sliding, sp.w_summed, p.dtype)
    c = c.astype(p.dtype, copy=False)
    if p.flip:
        c = c[(Ellipsis, *([slice(None, None, -1)] * p.ndim))]
    if p.conj:
        c = np.conj(c)
    c = np.ascontiguousarray(c)
    return c.copy() if np.may_share_memory(c, w) else c


def with_layout_of(p: Problem, other: Problem) -> Problem:
    """``p`` with ``other``'s x layout fields (unit axis, contiguity, channels): equal to
    ``other`` where the two differ in x's layout only."""
    return replace(
        p,
        x_unit_axis=other.x_unit_axis,
        x_contiguous=other.x_contiguous,
        x_channels_adjacent=other.x_channels_adjacent,
    )


@lru_cache(maxsize=256)  # (once per layout: it runs on every call of a plan)
def x_layout(
    sp: Spec, shape: tuple[int, ...], strides: tuple[float, ...] | None = None
) -> tuple[int | None, bool, bool]:
    """How methods can read an x of ``shape`` and element ``strides`` (None: C order)
    in its canonical view ``(B, C, P, *S)`` and in copies of it in memory order (padded,
    converted), as ``(unit axis, contiguous, channels adjacent)``:

    - the sliding axis (index in ``sp.sliding``) along which samples are adjacent:
      stride 1 and more than one sample, every other axis of more than one sample further
      apart than its length; no negative stride, and no axes merged by a copy
      (:func:`canonical_x`). None when no sliding axis is, or when that cannot be told
      from the layout (then a kernel may copy the rows);
    - whether the canonical view is C-contiguous;
    - whether its channels (the summed axes, merged) are adjacent: one channel, or a
      stride of 1 (channels-last data); every stride a whole number of elements, no
      x-only axes summed first.

    >>> sp = parse_spec("nchw,kchw->nkhw|hw")
    >>> x_layout(sp, (2, 3, 8, 9)), x_layout(sp, (2, 3, 8, 9), (216, 1, 27, 3))
    ((1, True, False), (None, False, True))
    >>> x_layout(sp, (2, 3, 8, 9), (216, 1, 27, 3.5))[2]  # (a record array's field)
    False
    """
    letters = sp.x
    if sp.x_summed or strides is None:  # (a sum is a new array, in C order)
        letters = "".join(c for c in sp.x if c not in sp.x_summed)
        shape = tuple(n for n, c in zip(shape, sp.x, strict=True) if c not in sp.x_summed)
        strides = tuple(prod(shape[i + 1 :]) for i in range(len(shape)))
    size, step = dict(zip(letters, shape, strict=True)), dict(zip(letters, strides, strict=True))
    if any(st < 0 for st in strides):
        return None, False, False
    expected, contiguous = 1, True
    for c in reversed(sp.batch + sp.summed + sp.paired + sp.sliding):
        if size[c] > 1:
            contiguous &= step[c] == expected
            expected *= size[c]
    channels = [c for c in sp.summed if size[c] > 1]
    adjacent = (
        not sp.x_summed  # (the sum's memory order is x's, which the C order above is not)
        and all(float(st).is_integer() for st in strides)
        and _mergeable(sp, size, step)
        and (not channels or (len(channels) == 1 and step[channels[0]] == 1))
    )
    return _unit_axis(sp, letters, size, step), contiguous, adjacent


def _mergeable(sp: Spec, size: dict, step: dict) -> bool:
    """Whether the batch, summed and paired groups merge by a reshape without a copy
    (each letter of more than one sample one stride of the next apart)."""
    for group in (sp.batch, sp.summed, sp.paired):
        big = [c for c in group if size[c] > 1]
        if any(step[a] != step[b] * size[b] for a, b in zip(big, big[1:], strict=False)):
            return False
    return True


def _unit_axis(sp: Spec, letters: str, size: dict, step: dict) -> int | None:
    """:func:`x_layout`'s unit axis, for the ``size`` and ``step`` of each letter."""
    if not _mergeable(sp, size, step):  # the groups merged by a reshape that copies
        return None
    unit = [i for i, c in enumerate(sp.sliding) if size[c] > 1 and step[c] == 1]
    if len(unit) != 1:
        return None
    j, n = unit[0], size[sp.sliding[unit[0]]]
    if any(step[c] < n for c in letters if c != sp.sliding[j] and size[c] > 1):
        return None  # (rows that overlap: only made by as_strided)
    return j


def _a_callable(block, axis):  # stands for any user callable in the caches' keys
    raise NotImplementedError("a placeholder for a reduce callable")


def problem_cache(maxsize: int):
    """``functools.lru_cache`` for functions of a :class:`Problem` (first argument) that
    depend on whether its ``reduce`` is a callable, never on which one: the key holds a
    placeholder instead, so a cache never keeps a user's callable alive (and every
    callable shares the entry). ``cache_clear`` clears it."""

    def decorate(f):
        cached = lru_cache(maxsize=maxsize)(f)

        @wraps(f)
        def call(p, *args, **kwargs):
            return cached(p.cache_key if callable(p.reduce) else p, *args, **kwargs)

        call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return call

    return decorate


def long_axis_last(p: Problem) -> tuple[int, ...] | None:
    """The order of the sliding axes in which the window-rows kernel runs ``p``: the
    longest output axis last when the last one is short (its rows would be mostly padding
    to the vector width), else None (as they are)."""
    longest = max(range(p.ndim), key=lambda i: p.O[i])
    if p.O[-1] >= 64 or p.O[longest] < 4 * p.O[-1]:
        return None
    return tuple(i for i in range(p.ndim) if i != longest) + (longest,)


def explain_lines(p: Problem, title: str) -> list[str]:
    """The lines that open every plan's ``explain()``: ``title`` with the spec and the
    options, then x, w (with stride and dilation) and the result."""
    return [
        f"{title}: {p.spec}  ({'convolve' if p.flip else 'correlate'}, "
        f"metric={p.metric!r}, {mode_text(p.mode)}, padding={p.padding!r}, dtype={p.dtype})",
        f"  x {p.x_shape} -> batch B={p.B}, summed C={p.C}, paired P={p.P}, sliding S={p.S}",
        f"  w {p.w_shape} -> bank K={p.K}, kernel T={p.T}; "
        f"stride={tuple(g.stride for g in p.geoms)}, "
        f"dilation={tuple(g.dilation for g in p.geoms)}",
        f"  result {_result_shape(p)}"
        + (f", reduce={p.reduce!r} over {p.spec.reduced!r}" if p.spec.reduced else ""),
    ]


def mode_text(mode) -> str:
    """``mode=...`` as the user would write it (explicit padding and origins included)."""
    if isinstance(mode, str):
        return f"mode={mode!r}"
    modes, origins = mode
    named = modes[0] if len(set(modes)) == 1 else modes
    text = f"mode={named!r}"
    return text + (f", origin={origins}" if any(origins) else "")


def _result_shape(p: Problem) -> str:
    """The result's shape as the call gives it (bc.peaks: its scores and coordinates)."""
    if not isinstance(p.reduce, Peaks):
        return str(p.out_shape)
    lead, (k, n) = p.out_shape[:-2], p.reduce_tail
    return f"scores {(*lead, k)}, coords {(*lead, k, n - 1)}"


def final_view(p: Problem, canon):
    """The canonical result ``(B, K, P, *O_kept[, r])`` (array or tensor) seen in the
    spec's output order."""
    sp = p.spec
    kept = sp.kept_sliding
    kept_sizes = canon.shape[3 : 3 + len(kept)]
    tail = canon.shape[3 + len(kept) :]
    a = canon.reshape((*p.batch_shape, *p.bank_shape, *p.paired_shape, *kept_sizes, *tail))
    order = sp.batch + sp.bank + sp.paired + kept
    perm = [order.index(c) for c in sp.out] + list(range(len(order), a.ndim))
    return _permute(a, perm)


def canonical_out_view(p: Problem, final: np.ndarray) -> np.ndarray | None:
    """The result array ``final`` (spec output order) seen as ``(B, K, P, *O_kept[, r])``,
    or None when that needs a copy (several batch, bank or paired letters that are not
    adjacent in the output). Methods write into this view, so the user gets a
    C-contiguous array in the spec's order with no final transpose."""
    sp = p.spec
    order = sp.batch + sp.bank + sp.paired + sp.kept_sliding
    tail = list(range(len(sp.out), final.ndim))
    v = final.transpose([sp.out.index(c) for c in order] + tail).reshape(p.canonical_out_shape)
    return v if v.size == 0 or np.may_share_memory(v, final) else None


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside batchconv (a warning points at the
    user's call, however deep the package's own frames are)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("batchconv"):
        level, frame = level + 1, frame.f_back
    return level
