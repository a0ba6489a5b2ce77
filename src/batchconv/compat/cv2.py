"""OpenCV's ``matchTemplate`` and ``filter2D`` on the batchconv engine, with OpenCV's
signatures and semantics. OpenCV itself is not needed (the method and border constants
are here, with OpenCV's values).

``matchTemplate(image, templ, method, mask=None)``: all six methods, with or without a
mask, on one channel or several (``(H, W, C)``), 8-bit or float32 data; a float32 map of
``(H - h + 1, W - w + 1)``. As OpenCV, TM_CCOEFF and TM_CCOEFF_NORMED centre each
channel on its own (the core's ``ncc`` centres the whole window), and an 8-bit mask is
binary. The maps come from ``bc.correlate`` calls: the core's metrics for TM_SQDIFF,
TM_CCORR and TM_CCORR_NORMED, and per-channel float64 correlations for the others:

- TM_SQDIFF_NORMED: ``sum (m (T - I))^2 / sqrt(sum (m T)^2 sum (m I)^2)``;
- TM_CCOEFF(_NORMED): with per channel ``T' = m (T - mu_T)``, ``I' = m (I - mu_I)``
  (``m``-weighted means), ``sum T' I'`` (divided by ``sqrt(sum T'^2 sum I'^2)``).

``filter2D(src, ddepth, kernel, dst=None, anchor=(-1, -1), delta=0,
borderType=BORDER_DEFAULT)``: each channel correlated with ``kernel`` (not flipped),
the anchor's sample at the output position, OpenCV's borders
(``BORDER_REFLECT_101`` = ``numpy.pad``'s ``reflect``).

>>> import numpy as np
>>> from batchconv.compat import cv2
>>> img = np.arange(30, dtype=np.float32).reshape(5, 6)
>>> np.unravel_index(cv2.matchTemplate(img, img[1:3, 2:4], cv2.TM_SQDIFF).argmin(), (4, 5))
(np.int64(1), np.int64(2))
"""

from __future__ import annotations

import numpy as np

from ..api import correlate as _correlate

__all__ = [
    "matchTemplate",
    "filter2D",
    "TM_SQDIFF",
    "TM_SQDIFF_NORMED",
    "TM_CCORR",
    "TM_CCORR_NORMED",
    "TM_CCOEFF",
    "TM_CCOEFF_NORMED",
    "BORDER_CONSTANT",
    "BORDER_REPLICATE",
    "BORDER_REFLECT",
    "BORDER_WRAP",
    "BORDER_REFLECT_101",
    "BORDER_DEFAULT",
]

TM_SQDIFF, TM_SQDIFF_NORMED, TM_CCORR, TM_CCORR_NORMED, TM_CCOEFF, TM_CCOEFF_NORMED = range(6)
BORDER_CONSTANT, BORDER_REPLICATE, BORDER_REFLECT, BORDER_WRAP, BORDER_REFLECT_101 = range(5)
BORDER_DEFAULT = BORDER_REFLECT_101
_BORDERS = {
    BORDER_CONSTANT: "constant",
    BORDER_REPLICATE: "edge",
    BORDER_REFLECT: "symmetric",
    BORDER_WRAP: "wrap",
    BORDER_REFLECT_101: "reflect",
}
_CORE = {TM_SQDIFF: "ssd", TM_CCORR: "dot", TM_CCORR_NORMED: "cosine"}
# OpenCV's depths (CV_8U ... CV_64F) for filter2D's ddepth
_DEPTHS = {
    0: np.uint8,
    1: np.int8,
    2: np.uint16,
    3: np.int16,
    4: np.int32,
    5: np.float32,
    6: np.float64,
}


def matchTemplate(image, templ, method: int, result=None, mask=None):
    """``cv2.matchTemplate``: the map of ``templ`` over ``image`` by ``method``."""
    img, tpl = np.asarray(image), np.asarray(templ)
    _check_match(img, tpl, method)
    x, t = img.astype(np.float32), tpl.astype(np.float32)
    if x.ndim == 2:  # one channel: a channel axis of 1
        x, t = x[..., None], t[..., None]
    m = None if mask is None else _mask(np.asarray(mask), t.shape)
    if method in _CORE or (method == TM_CCOEFF_NORMED and t.shape[2] == 1):
        metric = "ncc" if method == TM_CCOEFF_NORMED else _CORE[method]  # (one channel:
        # per-channel centring is the window's)
        y = _correlate(x, t, "hwc,hwc->hw|hw", metric=metric, mask=m)
    elif method == TM_CCOEFF and m is None:  # sum T' I, T' centred per channel
        y = _correlate(x, t - t.mean(axis=(0, 1)), "hwc,hwc->hw|hw")
    elif method == TM_SQDIFF_NORMED:
        y = _sqdiff_normed(x, t, m)
    else:
        y = _ccoeff(x, t, m, normed=method == TM_CCOEFF_NORMED)
    y = np.asarray(y, np.float32)
    if result is not None:
        result[...] = y
        return result
    return y


def _check_match(img: np.ndarray, tpl: np.ndarray, method: int) -> None:
    if method not in range(6):
        raise ValueError(
            f"method must be one of TM_SQDIFF ... TM_CCOEFF_NORMED (0-5), got {method}"
        )
    if img.dtype not in (np.uint8, np.float32) or tpl.dtype != img.dtype:
        raise TypeError(
            f"image and templ must both be uint8 or both float32 (OpenCV's depths), got "
            f"{img.dtype} and {tpl.dtype}"
        )
    if (
        img.ndim not in (2, 3)
        or tpl.ndim != img.ndim
        or (img.ndim == 3 and img.shape[2] != tpl.shape[2])
    ):
        raise ValueError(
            f"image (H, W[, C]) and templ (h, w[, C]) with the same channels, got "
            f"{img.shape} and {tpl.shape}"
        )
    if tpl.shape[0] > img.shape[0] or tpl.shape[1] > img.shape[1]:
        raise ValueError(f"templ {tpl.shape[:2]} is larger than image {img.shape[:2]}")


def _mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """OpenCV's mask: templ's size, one channel or templ's; 8-bit binary, float
    weights; as ``(h, w, 1 or C)`` float64."""
    if mask.ndim == 2:
        mask = mask[..., None]
    if mask.shape[:2] != shape[:2] or mask.shape[2] not in (1, shape[2]):
        raise ValueError(
            f"mask {mask.shape} must have templ's size {shape[:2]} and 1 or {shape[2]} channels"
        )
    if mask.dtype == np.uint8:
        return (mask != 0).astype(np.float64)
    if mask.dtype != np.float32:
        raise TypeError(f"mask must be uint8 or float32 (OpenCV's depths), got {mask.dtype}")
    return mask.astype(np.float64)


def _paired(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per channel ``(H', W', C)``: ``x[..., c]`` correlated with ``w[..., c]`` (a
    channel of 1 in ``w`` serves every channel), float64."""
    w = np.broadcast_to(w, (*w.shape[:2], x.shape[2]))
    return _correlate(x, np.ascontiguousarray(w), "hwc,hwc->hwc|hw")


def _sqdiff_normed(x, t, m):
    """``sum (m (T - I))^2 / sqrt(sum (m T)^2 sum (m I)^2)``."""
    ssd = _correlate(x, t, "hwc,hwc->hw|hw", metric="ssd", mask=m).astype(np.float64)
    m2 = np.ones((*t.shape[:2], 1)) if m is None else m * m
    x64 = x.astype(np.float64)
    s2 = _paired(x64 * x64, m2).sum(axis=2)
    b2 = float((np.broadcast_to(m2, t.shape) * t.astype(np.float64) ** 2).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        y = ssd / np.sqrt(s2 * b2)
    return np.where(np.isfinite(y), y, 1.0)


def _ccoeff(x, t, m, normed: bool):
    """TM_CCOEFF(_NORMED) with OpenCV's per-channel centring (see the module)."""
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    x64 = x64 - x64.mean(axis=(0, 1))  # (a shift per channel changes nothing but rounding)
    mm = np.ones((*t.shape[:2], 1)) if m is None else m
    mm = np.broadcast_to(mm, t.shape)
    w1 = mm.sum(axis=(0, 1))  # per channel
    m2 = mm * mm
    w2 = m2.sum(axis=(0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        mu_t = np.where(w1 > 0, (mm * t64).sum(axis=(0, 1)) / w1, 0.0)
    u = m2 * (t64 - mu_t)
    b1, b2 = u.sum(axis=(0, 1)), (m2 * (t64 - mu_t) ** 2).sum(axis=(0, 1))
    dot = _paired(x64, u)
    s0 = _paired(x64, mm)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu_i = np.where(w1 > 0, s0 / w1, 0.0)
    num = (dot - mu_i * b1).sum(axis=2)
    if not normed:
        return num
    s1 = s0 if m is None or np.all((mm == 0) | (mm == 1)) else _paired(x64, m2)
    s2 = _paired(x64 * x64, m2)
    spread = (s2 - 2 * mu_i * s1 + mu_i * mu_i * w2).sum(axis=2)
    scale = (s2 + mu_i * mu_i * w2).sum(axis=2)
    den2 = spread * b2.sum()
    flat = (spread <= 1e-12 * scale) | (b2.sum() <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = num / np.sqrt(np.where(flat, 1.0, den2))
    return np.clip(np.where(flat, 0.0, y), -1.0, 1.0)


def filter2D(
    src, ddepth: int, kernel, dst=None, anchor=(-1, -1), delta=0.0, borderType: int = BORDER_DEFAULT
):
    """``cv2.filter2D``: each channel of ``src`` correlated with ``kernel`` (2-D, not
    flipped), ``anchor`` ``(x, y)`` the kernel's sample at the output position (-1: its
    centre), plus ``delta``, in ``ddepth`` (-1: ``src``'s; 8- and 16-bit results rounded
    and saturated as OpenCV does)."""
    s, k = np.asarray(src), np.asarray(kernel, np.float64)
    if k.ndim != 2:
        raise ValueError(f"kernel must be 2-D, got shape {k.shape}")
    if borderType not in _BORDERS or borderType == BORDER_WRAP:
        raise ValueError(f"borderType {borderType} is not supported by filter2D")
    ax, ay = anchor
    ax, ay = (k.shape[1] // 2 if ax == -1 else ax), (k.shape[0] // 2 if ay == -1 else ay)
    if not (0 <= ax < k.shape[1] and 0 <= ay < k.shape[0]):
        raise ValueError(f"anchor {anchor} is outside the kernel {k.shape}")
    pads = ((ay, k.shape[0] - 1 - ay), (ax, k.shape[1] - 1 - ax))
    spec = "hw,hw->hw|hw" if s.ndim == 2 else "hwc,hw->hwc|hw"
    y = _correlate(s.astype(np.float64), k, spec, mode=pads, padding=_BORDERS[borderType])
    y = y + delta
    out_dtype = s.dtype if ddepth == -1 else np.dtype(_DEPTHS[ddepth])
    if out_dtype.kind in "iu":
        info = np.iinfo(out_dtype)
        y = np.clip(np.rint(y), info.min, info.max)
    y = y.astype(out_dtype)
    if dst is not None:
        dst[...] = y
        return dst
    return y
