"""``scipy.signal``'s ``correlate``, ``convolve``, ``correlate2d``, ``convolve2d``,
``fftconvolve`` and ``oaconvolve`` on the batchconv engine, with SciPy's signatures and
semantics: N-D arrays of one number of axes, every axis slid, ``mode`` 'full', 'same'
or 'valid' (in 'valid' the inputs swapped where the second is the larger, as SciPy
does), the inputs' result dtype (integers exact), 0-d and boolean inputs, and the 2-D
functions' ``boundary`` ('fill' with ``fillvalue``, 'wrap', 'symm').

>>> import numpy as np
>>> from batchconv.compat import scipy_signal as signal
>>> signal.correlate([1, 2, 3], [0, 1, 0.5])
array([0.5, 2. , 3.5, 3. , 0. ])
"""

from __future__ import annotations

import numpy as np

from ..api import convolve as _convolve
from ..api import correlate as _correlate
from ..methods import module_of
from ..spec import FREE_LETTERS

__all__ = ["correlate", "convolve", "correlate2d", "convolve2d", "fftconvolve", "oaconvolve"]

_LETTERS = FREE_LETTERS
_BOUNDARIES = {
    "fill": "constant",
    "pad": "constant",
    "wrap": "wrap",
    "circular": "wrap",
    "symm": "symmetric",
    "symmetric": "symmetric",
}
_METHODS = ("auto", "direct", "fft")


def correlate(in1, in2, mode="full", method="auto"):
    """``scipy.signal.correlate``: ``z[k] = sum_l in1[l] conj(in2[l - k + N - 1])``."""
    return _nd(in1, in2, mode, method, flip=False)


def convolve(in1, in2, mode="full", method="auto"):
    """``scipy.signal.convolve``."""
    return _nd(in1, in2, mode, method, flip=True)


def fftconvolve(in1, in2, mode="full", axes=None):
    """``scipy.signal.fftconvolve`` (``axes``: the convolved axes; the others must be
    equal or 1 in one of the inputs, as SciPy broadcasts them)."""
    return _along(in1, in2, mode, axes, "fft")


def oaconvolve(in1, in2, mode="full", axes=None):
    """``scipy.signal.oaconvolve`` (computed as ``fftconvolve``: the engine's FFT tiles
    its own overlap-save)."""
    return _along(in1, in2, mode, axes, "fft")


def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """``scipy.signal.correlate2d``."""
    return _two_d(in1, in2, mode, boundary, fillvalue, flip=False)


def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """``scipy.signal.convolve2d``."""
    return _two_d(in1, in2, mode, boundary, fillvalue, flip=True)


def _swap_needed(mode: str, s1, s2) -> bool:
    """SciPy's ``_inputs_swap_needed``: 'valid' with the second input the larger."""
    if mode != "valid":
        return False
    if not s1 or not s2:  # (0-d)
        return False
    ok1 = all(a >= b for a, b in zip(s1, s2, strict=True))
    ok2 = all(b >= a for a, b in zip(s1, s2, strict=True))
    if not (ok1 or ok2):
        raise ValueError(
            "For 'valid' mode, one must be at least as large as the other in every dimension"
        )
    return not ok1


def _nd(in1, in2, mode, method, flip: bool):
    a, b = np.asarray(in1), np.asarray(in2)
    if mode not in ("full", "same", "valid"):
        raise ValueError("Acceptable mode flags are 'valid', 'same', or 'full'.")
    if method not in _METHODS:
        raise ValueError("Acceptable method flags are 'auto', 'direct', or 'fft'.")
    if a.ndim != b.ndim:
        raise ValueError("in1 and in2 should have the same dimensionality")
    dtype = np.result_type(a, b)
    if a.ndim == 0:  # (0-d: a product)
        return a * (b if flip else b.conj())
    if a.size == 0 or b.size == 0:
        return np.array([], dtype=dtype)
    if dtype.kind == "O":
        raise TypeError("object arrays are not supported by batchconv")
    swapped = _swap_needed(mode, a.shape, b.shape)
    if swapped:  # SciPy: convolution commutes; a correlation is reversed and conjugated
        a, b = b, a
    y = _slide(a, b, mode, flip, "constant", 0.0, method)
    if swapped and not flip:
        y = y[(slice(None, None, -1),) * y.ndim]
        y = y.conj() if y.dtype.kind == "c" else y
    return _as(y, dtype)


def _slide(a, b, mode, flip, padding, cval, method="auto"):
    """The core call: every axis slid, ``a`` the signal, ``b`` the kernel."""
    letters = _LETTERS[: a.ndim]
    kind = np.result_type(a, b).kind
    x = a.astype(np.uint8) if a.dtype.kind == "b" else a
    w = b.astype(np.uint8) if b.dtype.kind == "b" else b
    if kind == "b":
        x, w = x.astype(np.int64), w.astype(np.int64)
    call = _convolve if flip else _correlate
    single = np.result_type(x, w) in (np.float32, np.complex64, np.float16)
    if single and method != "auto" and not module_of(method).EXACT_FOR_INTEGERS:
        # SciPy's own tests hold method='fft' to a tighter absolute error than the
        # engine's single-precision FFT promises: the transforms in double, the result
        # in the inputs' dtype
        wide = np.complex128 if np.result_type(x, w).kind == "c" else np.float64
        x, w = x.astype(wide), w.astype(wide)
    return call(
        x,
        w,
        f"{letters},{letters}->{letters}|{letters}",
        mode=mode,
        padding=padding,
        cval=cval,
        method="auto" if method == "auto" else method,
    )


def _as(y, dtype: np.dtype):
    """The result in SciPy's dtype: the inputs' (booleans: as SciPy's sums of products,
    True where non-zero)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return y != 0
    if dtype.kind in "iu":
        return np.rint(y).astype(dtype) if y.dtype.kind == "f" else y.astype(dtype)
    return y.astype(dtype, copy=False)


def _two_d(in1, in2, mode, boundary, fillvalue, flip: bool):
    a, b = np.asarray(in1), np.asarray(in2)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(
            f"{'convolve2d' if flip else 'correlate2d'} inputs must both be 2-D arrays"
        )
    if mode not in ("full", "same", "valid"):
        raise ValueError("Acceptable mode flags are 'valid', 'same', or 'full'.")
    if boundary not in _BOUNDARIES:
        flags = "'fill', 'circular' (or 'wrap'), and 'symmetric' (or 'symm')"
        raise ValueError(f"Acceptable boundary flags are {flags}.")
    fill = np.asarray(fillvalue)
    if fill.size != 1:
        raise ValueError("`fillvalue` must be scalar or an array with one element.")
    dtype = np.result_type(a, b)
    if fill.dtype.kind == "c" and dtype.kind != "c":
        raise ValueError(
            f"could not cast `fillvalue` directly to the output type ({dtype}): it is complex"
        )
    if a.size == 0 or b.size == 0:
        return np.zeros((0, 0), dtype)
    swapped = _swap_needed(mode, a.shape, b.shape)
    if swapped:
        a, b = b, a
    cval = fill.ravel()[0]
    if dtype.kind != "c":
        cval = float(np.real(cval))
    y = _slide(
        a,
        b,
        mode,
        flip,
        _BOUNDARIES[boundary],
        cval if _BOUNDARIES[boundary] == "constant" else 0.0,
    )
    if swapped and not flip:
        y = y[::-1, ::-1]
    return _as(y, dtype)


def _along(in1, in2, mode, axes, method):
    a, b = np.asarray(in1), np.asarray(in2)
    if a.ndim != b.ndim:
        raise ValueError("in1 and in2 should have the same dimensionality")
    if a.ndim == 0:
        return a * b
    if axes is None or tuple(np.atleast_1d(axes)) == tuple(range(a.ndim)):
        return _nd(a, b, mode, method, flip=True)
    axes = tuple(int(ax) % a.ndim for ax in np.atleast_1d(axes))
    letters = _LETTERS[: a.ndim]
    sliding = "".join(letters[i] for i in sorted(axes))
    others = [i for i in range(a.ndim) if i not in axes]
    shape = [max(a.shape[i], b.shape[i]) for i in range(a.ndim)]
    for i in others:
        if a.shape[i] != b.shape[i] and 1 not in (a.shape[i], b.shape[i]):
            raise ValueError("incompatible shapes for in1 and in2: {a.shape} and {b.shape}")
    a = np.broadcast_to(a, [shape[i] if i in others else a.shape[i] for i in range(a.ndim)])
    b = np.broadcast_to(b, [shape[i] if i in others else b.shape[i] for i in range(a.ndim)])
    if _swap_needed(mode, [a.shape[i] for i in axes], [b.shape[i] for i in axes]):
        a, b = b, a
    y = _convolve(
        np.ascontiguousarray(a),
        np.ascontiguousarray(b),
        f"{letters},{letters}->{letters}|{sliding}",
        mode=mode,
        method=method,
    )
    return _as(y, np.result_type(in1, in2) if np.result_type(in1, in2).kind != "b" else np.float64)
