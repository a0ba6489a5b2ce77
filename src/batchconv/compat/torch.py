"""``torch.nn.functional``'s ``conv1d``, ``conv2d`` and ``conv3d`` on the batchconv
engine, with torch's signature and semantics (a cross-correlation, ``groups``, ``bias``,
``padding`` as an int, a tuple, ``"same"`` or ``"valid"``), plus ``nn.Conv*d``'s
``padding_mode`` as a keyword: ``"zeros"``, ``"reflect"``, ``"replicate"``,
``"circular"`` (``numpy.pad``'s ``constant``, ``reflect``, ``edge``, ``wrap``).

Inputs may be torch tensors (the result is a tensor on their device) or NumPy arrays
(the result is a NumPy array): torch itself is only needed for tensors.

>>> import numpy as np
>>> from batchconv.compat import torch as F
>>> x, w = np.ones((1, 2, 5, 5)), np.ones((4, 1, 3, 3))
>>> F.conv2d(x, w, padding="same", groups=2).shape
(1, 4, 5, 5)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..api import correlate as _correlate

__all__ = ["conv1d", "conv2d", "conv3d", "PADDING_MODES"]

# nn.Conv*d's padding_mode -> numpy.pad's (the core's padding=)
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_SLIDING = "hwd"


def conv1d(
    input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros"
):
    """``torch.nn.functional.conv1d`` (input ``(N, C, L)`` or ``(C, L)``)."""
    return _conv(1, input, weight, bias, stride, padding, dilation, groups, padding_mode)


def conv2d(
    input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros"
):
    """``torch.nn.functional.conv2d`` (input ``(N, C, H, W)`` or ``(C, H, W)``)."""
    return _conv(2, input, weight, bias, stride, padding, dilation, groups, padding_mode)


def conv3d(
    input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros"
):
    """``torch.nn.functional.conv3d`` (input ``(N, C, D, H, W)`` or ``(C, D, H, W)``)."""
    return _conv(3, input, weight, bias, stride, padding, dilation, groups, padding_mode)


def _conv(d: int, x, w, bias, stride, padding, dilation, groups: int, padding_mode: str):
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"padding_mode must be one of {tuple(PADDING_MODES)}, got {padding_mode!r}"
        )
    if x.ndim not in (d + 1, d + 2):
        raise RuntimeError(
            f"Expected {d + 1}D (unbatched) or {d + 2}D (batched) input to conv{d}d, but "
            f"got input of size: {list(x.shape)}"
        )
    unbatched = x.ndim == d + 1
    if unbatched:
        x = x[None]
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    if groups < 1 or c % groups or o % groups or cg * groups != c:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(w.shape)}, expected input"
            f"{list(x.shape)} to have {cg * groups} channels, but got {c} channels instead"
        )
    strides = _tuple(stride, d, "stride")
    dilations = _tuple(dilation, d, "dilation")
    pads = _pads(padding, d, w.shape[2:], strides, dilations)
    g = groups
    spatial = x.shape[2:]
    xs = x.reshape(n, g, c // g, *spatial)
    ws = w.reshape(g, o // g, cg, *w.shape[2:])
    if _is_complex(ws):  # torch's convolution does not conjugate; the core does
        ws = ws.conj()
        ws = ws.resolve_conj() if hasattr(ws, "resolve_conj") else ws
    sl = _SLIDING[:d]
    y = _correlate(
        xs,
        ws,
        f"ngc{sl},goc{sl}->ngo{sl}|{sl}",
        mode=pads,
        stride=strides,
        dilation=dilations,
        padding=PADDING_MODES[padding_mode],
    )
    y = y.reshape(n, o, *y.shape[3:])
    if bias is not None:
        y = y + bias.reshape(1, o, *([1] * d))
    return y[0] if unbatched else y


def _is_complex(a) -> bool:
    return bool(getattr(a, "is_complex", lambda: np.iscomplexobj(a))())


def _tuple(value, d: int, name: str) -> tuple[int, ...]:
    vals = (value,) * d if np.ndim(value) == 0 else tuple(value)
    if len(vals) != d:
        raise RuntimeError(f"expected {name} to be a single integer value or a list of {d} values")
    return tuple(int(v) for v in vals)


def _pads(padding, d: int, kernel: Sequence[int], strides, dilations) -> tuple:
    """``(lo, hi)`` per spatial axis, as torch pads."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * d
        if padding != "same":
            raise ValueError(
                f"Invalid padding string {padding!r}, should be one of ('valid', 'same')"
            )
        if any(s != 1 for s in strides):
            raise ValueError("padding='same' is not supported for strided convolutions")
        pads = []
        for k, dl in zip(kernel, dilations, strict=True):
            total = dl * (k - 1)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return tuple((p, p) for p in _tuple(padding, d, "padding"))
