"""``scipy.ndimage``'s ``correlate``, ``convolve``, ``correlate1d`` and ``convolve1d`` on
the batchconv engine, with ndimage's exact signature and semantics: the result has the
input's shape and dtype (integers truncated, as ndimage casts), ``origin`` shifts the
filter (positive: to the left), and ndimage's boundary modes map onto ``numpy.pad``'s:

================  ==========================  =====================================
ndimage mode      extends ``a b c d`` as      ``bc.correlate(padding=...)``
================  ==========================  =====================================
``reflect``       ``b a | a b c d | d c``     ``"symmetric"``
``grid-mirror``   (the same as ``reflect``)   ``"symmetric"``
``mirror``        ``c b | a b c d | c b``     ``"reflect"``
``nearest``       ``a a | a b c d | d d``     ``"edge"``
``wrap``          ``c d | a b c d | a b``     ``"wrap"``
``grid-wrap``     (the same as ``wrap``)      ``"wrap"``
``constant``      ``k k | a b c d | k k``     ``"constant"`` with ``cval=k``
``grid-constant`` (the same as ``constant``)  ``"constant"`` with ``cval=k``
================  ==========================  =====================================

(For these filters ndimage's ``wrap``/``grid-wrap`` and ``constant``/``grid-constant``
are the same; they differ in its interpolation functions only.)

>>> import numpy as np
>>> from batchconv.compat import ndimage
>>> ndimage.correlate1d(np.arange(6.0), [1.0, 2.0, 3.0], mode="mirror")
array([ 4.,  8., 14., 20., 26., 26.])
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from ..api import correlate as _correlate
from ..geometry import NDIMAGE_MODES
from ..spec import FREE_LETTERS

__all__ = ["correlate", "convolve", "correlate1d", "convolve1d", "MODES"]

# ndimage's mode -> numpy.pad's (the core's ``padding``): the core's one table
MODES = NDIMAGE_MODES
_LETTERS = FREE_LETTERS


def correlate(
    input,
    weights,
    output=None,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: int | Sequence[int] = 0,
    *,
    axes: int | Sequence[int] | None = None,
):
    """``scipy.ndimage.correlate``: ``weights`` (one axis per axis of ``input``, or per
    axis of ``axes``) correlated with ``input``; the result has ``input``'s shape."""
    return _filter(input, weights, output, mode, cval, origin, axes, convolution=False)


def convolve(
    input,
    weights,
    output=None,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: int | Sequence[int] = 0,
    *,
    axes: int | Sequence[int] | None = None,
):
    """``scipy.ndimage.convolve``: the weights flipped, the origin mirrored (and moved
    by one for an even axis, as ndimage does)."""
    return _filter(input, weights, output, mode, cval, origin, axes, convolution=True)


def correlate1d(input, weights, axis: int = -1, output=None, mode="reflect", cval=0.0, origin=0):
    """``scipy.ndimage.correlate1d``: a 1-D filter along ``axis``."""
    x, w = np.asarray(input), np.asarray(weights)
    _check_cval(cval, x, x.dtype.kind == "c" or w.dtype.kind == "c")
    if w.ndim != 1 or w.shape[0] < 1:
        raise RuntimeError("no filter weights given")  # (ndimage's words, here and below)
    axis = _axis(axis, x.ndim)
    return _filter(x, w, output, mode, cval, origin, (axis,), convolution=False)


def convolve1d(input, weights, axis: int = -1, output=None, mode="reflect", cval=0.0, origin=0):
    """``scipy.ndimage.convolve1d``: a 1-D filter along ``axis``, flipped."""
    x, w = np.asarray(input), np.asarray(weights)
    _check_cval(cval, x, x.dtype.kind == "c" or w.dtype.kind == "c")
    if w.ndim != 1 or w.shape[0] < 1:
        raise RuntimeError("no filter weights given")
    axis = _axis(axis, x.ndim)
    return _filter(x, w, output, mode, cval, origin, (axis,), convolution=True)


def _filter(input, weights, output, mode, cval, origin, axes, convolution: bool):
    """ndimage's ``_correlate_or_convolve``: its checks and output rules, the
    arithmetic by ``bc.correlate`` (one call, complex values included)."""
    x, w = np.asarray(input), np.asarray(weights)
    if x.dtype.kind not in "biufc" or w.dtype.kind not in "biufc":
        raise TypeError(f"input and weights must be numbers, got {x.dtype} and {w.dtype}")
    complex_out = x.dtype.kind == "c" or w.dtype.kind == "c"
    _check_cval(cval, x, complex_out)
    axes = _check_axes(axes, x.ndim)
    if w.ndim != len(axes):
        raise RuntimeError(f"weights.ndim ({w.ndim}) must match len(axes) ({len(axes)})")
    # as ndimage: the weights' axes are the input's axes in increasing order; the
    # origins follow ``axes`` as given, unless every axis is filtered (then they are
    # in the input's order, whatever ``axes`` says)
    given = _sequence(origin, len(axes))
    at = dict(zip(range(x.ndim) if len(axes) == x.ndim else axes, given, strict=True))
    axes = tuple(sorted(axes))
    origins = [at[a] for a in axes]
    if not isinstance(mode, str):
        raise RuntimeError("A sequence of modes is not supported")
    if mode not in MODES:
        raise RuntimeError("boundary mode not supported")
    if w.dtype.kind != "c":
        w = w.astype(np.float64)  # (ndimage computes in double)
    if convolution:  # reversed, not conjugated (the correlation conjugates), origins
        # negated and moved by one for an even axis
        w = w[(slice(None, None, -1),) * w.ndim]
        w = np.conj(w) if w.dtype.kind == "c" else w
        origins = [-o - (1 - m % 2) for o, m in zip(origins, w.shape, strict=True)]
    for o, m in zip(origins, w.shape, strict=True):
        if not -(m // 2) <= o <= (m - 1) // 2:
            raise ValueError(
                "Invalid origin; origin must satisfy -(weights.shape[k] // 2) <= "
                "origin[k] <= (weights.shape[k]-1) // 2"
            )
    out = None if output is None else _get_output(output, x, complex_out)
    pads = [(m // 2 + o, m - 1 - m // 2 - o) for m, o in zip(w.shape, origins, strict=True)]
    y = _call(x, w, axes, pads, MODES[mode], cval)
    if out is None:  # the input's dtype (complex when either is): no copy if it is y's
        dtype = np.promote_types(x.dtype, np.complex64) if complex_out else x.dtype
        return y if y.dtype == dtype else y.astype(dtype)
    out[...] = y if out.dtype.kind == "c" or y.dtype.kind != "c" else y.real
    return out


def _check_cval(cval, x: np.ndarray, complex_out: bool) -> None:
    """ndimage's rule: a complex ``cval`` needs a complex input."""
    if np.iscomplexobj(cval) and x.dtype.kind != "c":
        if complex_out:
            raise ValueError("Cannot provide a complex-valued cval when the input is real.")
        raise TypeError("cval must be a real number for a real input")


def _call(x, w, axes, pads, padding, cval):
    """The core call: ``x``'s ``axes`` sliding (letters in x's order), its other axes
    batch letters; ``w``'s axes the sliding ones, in ``axes``' order."""
    if x.size == 0:
        return np.zeros(x.shape, np.result_type(x.dtype, w.dtype, np.float64))
    letters = _LETTERS[: x.ndim]
    sliding = "".join(letters[a] for a in axes)
    spec = f"{letters},{sliding}->{letters}|{sliding}"
    if x.dtype.kind == "b":
        x = x.astype(np.uint8)
    if padding != "constant":
        cval = 0.0
    elif x.dtype.kind != "c":
        cval = float(np.real(cval))
    return _correlate(x, w, spec, mode=tuple(pads), padding=padding, cval=cval)


def _get_output(output, x: np.ndarray, complex_output: bool) -> np.ndarray:
    """ndimage's ``_get_output``: the array the result is written into."""
    if output is None:
        dtype = np.promote_types(x.dtype, np.complex64) if complex_output else x.dtype
        return np.zeros(x.shape, dtype)
    if isinstance(output, type | np.dtype):
        if complex_output and np.dtype(output).kind != "c":
            warnings.warn("promoting specified output dtype to complex", stacklevel=4)
            output = np.promote_types(output, np.complex64)
        return np.zeros(x.shape, output)
    if isinstance(output, str):
        output = np.dtype(output)
        if complex_output and output.kind != "c":
            raise RuntimeError("output must have complex dtype")
        if not issubclass(output.type, np.number):
            raise RuntimeError("output must have numeric dtype")
        return np.zeros(x.shape, output)
    output = np.asarray(output)
    if output.shape != x.shape:
        raise RuntimeError("output shape not correct")
    if complex_output and output.dtype.kind != "c":
        raise RuntimeError("output must have complex dtype")
    return output


def _check_axes(axes, ndim: int) -> tuple[int, ...]:
    """ndimage's ``_check_axes``."""
    if axes is None:
        return tuple(range(ndim))
    if np.isscalar(axes):
        axes = (operator.index(axes),)
    elif isinstance(axes, Iterable):
        axes = tuple(operator.index(a) for a in axes)
        for a in axes:
            if a < -ndim or a > ndim - 1:
                raise ValueError(f"specified axis: {a} is out of range")
        axes = tuple(a % ndim if a < 0 else a for a in axes)
    else:
        raise ValueError("axes must be an integer, iterable of integers, or None")
    if len(set(axes)) != len(axes):
        raise ValueError("axes must be unique")
    return axes


def _axis(axis, ndim: int) -> int:
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim


def _sequence(value, n: int) -> list:
    """ndimage's ``_normalize_sequence``: one value for all, or exactly ``n``."""
    if not isinstance(value, str) and np.iterable(value):
        value = list(value)
        if len(value) != n:
            raise RuntimeError("sequence argument must have length equal to input rank")
        return [operator.index(v) for v in value]
    return [operator.index(value)] * n
