"""TensorFlow's ``tf.nn.conv1d``, ``conv2d``, ``conv3d`` and ``depthwise_conv2d`` on the
batchconv engine, with TF's signatures and semantics: channels-last (or ``"NC..."``)
data, ``(*K, C_in, C_out)`` filters, ``strides``/``dilations`` as an int, one per
spatial axis, or one per axis of the data, and ``padding`` ``"SAME"`` (TF's rule: in all
``max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)`` zeros, the odd one after),
``"VALID"`` or explicit pairs per axis of the data. NumPy arrays in, NumPy arrays out
(torch tensors too); TF itself is not needed.

>>> import numpy as np
>>> from batchconv.compat import tf
>>> tf.conv2d(np.ones((1, 5, 5, 3)), np.ones((3, 3, 3, 8)), strides=2, padding="SAME").shape
(1, 3, 3, 8)
"""

from __future__ import annotations

import numpy as np

from ..api import correlate as _correlate

__all__ = ["conv1d", "conv2d", "conv3d", "depthwise_conv2d", "same_padding"]

_SLIDING = "hwd"


def conv1d(input, filters, stride=1, padding="VALID", data_format="NWC", dilations=None):
    """``tf.nn.conv1d``: input ``(N, W, C)`` (``"NWC"``) or ``(N, C, W)`` (``"NCW"``),
    filters ``(K, C_in, C_out)``."""
    return _conv(1, input, filters, stride, padding, data_format, dilations or 1)


def conv2d(input, filters, strides=1, padding="VALID", data_format="NHWC", dilations=None):
    """``tf.nn.conv2d``: input ``(N, H, W, C)`` (``"NHWC"``) or ``(N, C, H, W)``,
    filters ``(KH, KW, C_in, C_out)``."""
    return _conv(2, input, filters, strides, padding, data_format, dilations or 1)


def conv3d(input, filters, strides=1, padding="VALID", data_format="NDHWC", dilations=None):
    """``tf.nn.conv3d``: input ``(N, D, H, W, C)`` (``"NDHWC"``) or ``(N, C, D, H, W)``,
    filters ``(KD, KH, KW, C_in, C_out)``."""
    return _conv(3, input, filters, strides, padding, data_format, dilations or 1)


def depthwise_conv2d(input, filter, strides=1, padding="VALID", data_format="NHWC", dilations=None):
    """``tf.nn.depthwise_conv2d``: each input channel against its own ``multiplier``
    filters, ``filter`` ``(KH, KW, C_in, multiplier)``; output channels ``C_in *
    multiplier``, channel ``c * multiplier + m``."""
    return _conv(2, input, filter, strides, padding, data_format, dilations or 1, True)


def same_padding(n: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF's 'SAME' padding of one axis: ``(before, after)``.

    >>> same_padding(16, 3, 2, 1)
    (0, 1)
    """
    total = max((-(-n // stride) - 1) * stride + (k - 1) * dilation + 1 - n, 0)
    return total // 2, total - total // 2


def _conv(d, x, w, strides, padding, data_format, dilations, depthwise=False):
    if x.ndim != d + 2 or w.ndim != d + 2:
        raise ValueError(
            f"conv{d}d takes input of {d + 2} axes and filters of {d + 2}; got shapes "
            f"{tuple(x.shape)} and {tuple(w.shape)}"
        )
    channels_last = _channels_last(data_format, d)
    spatial = x.shape[1:-1] if channels_last else x.shape[2:]
    strides = _per_axis(strides, d, "strides", channels_last)
    dilations = _per_axis(dilations, d, "dilations", channels_last)
    kernel = w.shape[:d]
    pads = _pads(padding, d, spatial, kernel, strides, dilations, channels_last)
    sl = _SLIDING[:d]
    xs = f"n{sl}c" if channels_last else f"nc{sl}"
    if depthwise:  # c paired, m the bank
        out = f"n{sl}cm" if channels_last else f"ncm{sl}"
        spec = f"{xs},{sl}cm->{out}|{sl}"
    else:
        out = f"n{sl}o" if channels_last else f"no{sl}"
        spec = f"{xs},{sl}co->{out}|{sl}"
    if x.shape[-1 if channels_last else 1] != w.shape[d]:
        raise ValueError(
            f"the input has {x.shape[-1 if channels_last else 1]} channels, the filters "
            f"{w.shape[d]} (axis {d} of shape {tuple(w.shape)})"
        )
    y = _correlate(x, w, spec, mode=pads, stride=strides, dilation=dilations)
    if depthwise:  # (n, *O, c, m) -> (n, *O, c * m); (n, c, m, *O) -> (n, c * m, *O)
        shape = y.shape
        y = (
            y.reshape(*shape[:-2], shape[-2] * shape[-1])
            if channels_last
            else y.reshape(shape[0], shape[1] * shape[2], *shape[3:])
        )
    return y


def _channels_last(data_format: str, d: int) -> bool:
    names = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}[d]
    if data_format not in names:
        raise ValueError(f"data_format must be one of {names}, got {data_format!r}")
    return data_format == names[0]


def _per_axis(value, d: int, name: str, channels_last: bool) -> tuple[int, ...]:
    """TF's forms: an int, one per spatial axis, or one per axis of the data (the batch
    and channel entries 1)."""
    vals = [value] * d if np.ndim(value) == 0 else [int(v) for v in value]
    if len(vals) == d + 2:
        outer = (vals[0], vals[-1]) if channels_last else (vals[0], vals[1])
        if outer != (1, 1):
            raise ValueError(f"{name} of the batch and channel axes must be 1, got {value}")
        vals = vals[1:-1] if channels_last else vals[2:]
    if len(vals) != d:
        raise ValueError(f"{name} must be an int or a list of {d} or {d + 2}, got {value}")
    return tuple(int(v) for v in vals)


def _pads(padding, d, spatial, kernel, strides, dilations, channels_last) -> tuple:
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return ((0, 0),) * d
        if padding.upper() == "SAME":
            return tuple(
                same_padding(n, k, s, dl)
                for n, k, s, dl in zip(spatial, kernel, strides, dilations, strict=True)
            )
        raise ValueError(f"padding must be 'SAME', 'VALID' or pairs, got {padding!r}")
    pairs = [tuple(int(v) for v in p) for p in padding]
    if len(pairs) != d + 2:
        raise ValueError(f"explicit padding has one pair per axis of the data ({d + 2})")
    outer = (pairs[0], pairs[-1]) if channels_last else (pairs[0], pairs[1])
    if outer != ((0, 0), (0, 0)):
        raise ValueError("explicit padding of the batch and channel axes must be (0, 0)")
    return tuple(pairs[1:-1] if channels_last else pairs[2:])
