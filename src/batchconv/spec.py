"""The spec language: which axis of ``x`` and ``w`` plays which role.

A spec is einsum notation with the sliding (correlated) axes after a bar::

    "nhwc,hwco->nhwo|hw"     x letters, w letters -> output letters | sliding letters

Every letter gets exactly one role:

=========  ===============================  ================================
role       where the letter appears         what happens to it
=========  ===============================  ================================
sliding    after ``|`` (and in x and w)     the window slides along it; kept
                                            in the output, or reduced by
                                            ``reduce`` when the output omits it
batch      x and output                     every x item against every filter
bank       w and output                     every filter against every x item
summed     x and w, not output              multiplied and summed (channels)
paired     x, w and output                  matched one to one (depthwise)
x_summed   x only, not output               summed over first (einsum rule)
w_summed   w only, not output               summed over first (einsum rule)
=========  ===============================  ================================

Example:

>>> s = parse_spec("nhwc,hwco->nhwo|hw")
>>> s.batch, s.bank, s.summed, s.paired, s.sliding
('n', 'o', 'c', '', 'hw')
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Spec", "parse_spec", "default_spec"]

_LETTERS = set(string.ascii_letters)


@dataclass(frozen=True)
class Spec:
    """A parsed spec: the operands' letters and the role of each letter."""

    x: str
    w: str
    out: str
    sliding: str
    batch: str
    bank: str
    summed: str
    paired: str
    x_summed: str
    w_summed: str

    @property
    def reduced(self) -> str:
        """Sliding letters that the output omits (reduced by ``reduce``)."""
        return "".join(c for c in self.sliding if c not in self.out)

    @property
    def kept_sliding(self) -> str:
        """Sliding letters present in the output, in sliding order."""
        return "".join(c for c in self.sliding if c in self.out)

    def __str__(self) -> str:
        return f"{self.x},{self.w}->{self.out}|{self.sliding}"


def _fail(text: str, why: str) -> None:
    raise ValueError(f"spec {text!r}: {why}")


@lru_cache(maxsize=512)
def parse_spec(text: str) -> Spec:
    """Parse ``"xaxes,waxes->outaxes|sliding"`` into a :class:`Spec`.

    Raises ValueError naming the spec and the offending letter.

    >>> parse_spec("bchw,chw->bhw|hw").summed
    'c'
    """
    if not isinstance(text, str):
        raise TypeError(f"spec must be a string like 'nhw,khw->nkhw|hw', got {type(text).__name__}")
    t = text.replace(" ", "")
    if t.count("|") != 1:
        _fail(text, "needs exactly one '|' before the sliding letters, e.g. 'nhw,khw->nkhw|hw'")
    lhs, sliding = t.split("|")
    if lhs.count("->") != 1:
        _fail(text, "needs exactly one '->' between the operands and the output")
    ops, out = lhs.split("->")
    if ops.count(",") != 1:
        _fail(text, "needs two operands separated by ',' (x letters, w letters)")
    xs, ws = ops.split(",")
    for name, part in (("x", xs), ("w", ws), ("output", out), ("sliding", sliding)):
        bad = sorted(set(part) - _LETTERS)
        if bad:
            _fail(text, f"unknown character(s) {bad} in the {name} part; use ASCII letters only")
        dup = sorted({c for c in part if part.count(c) > 1})
        if dup:
            _fail(
                text, f"letter(s) {dup} repeated in the {name} part; each axis needs its own letter"
            )
    if not sliding:
        _fail(text, "names no sliding letter after '|'; at least one axis must slide")
    for c in sliding:
        if c not in xs or c not in ws:
            where = "x" if c not in xs else "w"
            _fail(text, f"sliding letter {c!r} must appear in both x and w, but {where} lacks it")
    for c in out:
        if c not in xs and c not in ws:
            _fail(text, f"output letter {c!r} appears in neither x nor w")
    slide = set(sliding)
    batch = "".join(c for c in xs if c in out and c not in ws)
    bank = "".join(c for c in ws if c in out and c not in xs)
    summed = "".join(c for c in xs if c in ws and c not in out and c not in slide)
    paired = "".join(c for c in xs if c in ws and c in out and c not in slide)
    x_summed = "".join(c for c in xs if c not in ws and c not in out)
    w_summed = "".join(c for c in ws if c not in xs and c not in out)
    return Spec(xs, ws, out, sliding, batch, bank, summed, paired, x_summed, w_summed)


_SLIDE_LETTERS = "hwdefgijlmpqrstuvxyzabc"
# letters for the axes of specs built by code (bc.match, the compat front-ends): every
# lowercase letter but n, k and c, which those specs keep for batch, bank, channels
FREE_LETTERS = "abdefghijlmopqrstuvwxyz"


def default_spec(x_ndim: int, w_ndim: int, reduce_sliding: bool = False) -> Spec:
    """The spec used when ``spec=None``.

    ``x`` is ``(N, *S)``; ``w`` is a bank ``(K, *T)`` (same ndim as x) or one filter ``T``
    (one dimension fewer). With ``reduce_sliding`` the output drops the sliding axes.

    >>> str(default_spec(3, 3))
    'nhw,khw->nkhw|hw'
    >>> str(default_spec(3, 2))
    'nhw,hw->nhw|hw'
    """
    d = x_ndim - 1
    if x_ndim < 2 or w_ndim not in (x_ndim, x_ndim - 1):
        raise ValueError(
            f"with spec=None, x must be (N, *S) and w either a bank (K, *T) with w.ndim == x.ndim "
            f"or one filter T with w.ndim == x.ndim - 1; got x.ndim={x_ndim}, w.ndim={w_ndim}. "
            f"Give a spec such as 'nhw,khw->nkhw|hw' to say which axis is which."
        )
    if d > len(_SLIDE_LETTERS):
        raise ValueError(f"too many sliding axes ({d}); give a spec")
    s = _SLIDE_LETTERS[:d]
    kept = "" if reduce_sliding else s
    if w_ndim == x_ndim:
        return parse_spec(f"n{s},k{s}->nk{kept}|{s}")
    return parse_spec(f"n{s},{s}->n{kept}|{s}")


class ChannelsWarning(UserWarning):
    """``spec=None`` read an axis that looks like colour channels as a sliding axis (see
    :func:`channels_hint`); give a spec to say what the axes are."""


def channels_hint(x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> str | None:
    """The warning for ``spec=None`` where its reading is likely not what a SciPy user
    meant, or None. It fires when ``x`` has at least 3 axes and its last one looks like
    channels: at most 4 samples after an axis of at least 8 and 4 times as many (an
    image ``(H, W, C)`` or a batch ``(N, H, W, C)``). The default spec slides over that
    axis (a 2-D reading of ``(H, W)`` rows by ``C`` columns); the message names the spec
    assumed and the one meant.

    >>> print(channels_hint((32, 32, 3), (5, 5, 3)).splitlines()[1])  # doctest: +ELLIPSIS
    For a channels-last image as scipy.signal reads it, give spec='hwc,hwc->hw|hw' ...
    >>> channels_hint((100, 1000), (5, 31)) is None
    True
    """
    d = len(x_shape)
    if d < 3 or x_shape[-1] > 4 or x_shape[-2] < max(8, 4 * x_shape[-1]):
        return None
    bank = len(w_shape) == d
    assumed = default_spec(d, len(w_shape))
    what = f"a bank of {w_shape[0]} filters of shape {tuple(w_shape[1:])}" if bank else "one filter"
    meant = None
    if d == 3 and bank and w_shape[-1] == x_shape[-1]:
        meant = "'hwc,hwc->hw|hw' (an image and a kernel, the channels summed)"
    elif d == 3 and bank:
        meant = "'hwc,khw->khwc|hw' (each channel against a bank of 2-D kernels)"
    elif d == 3:
        meant = "'hwc,hw->hwc|hw' (each channel filtered by the 2-D kernel)"
    elif d == 4 and bank and w_shape[-1] == x_shape[-1]:
        meant = "'nhwc,khwc->nkhw|hw' (a batch of images against a bank, channels summed)"
    elif d == 4 and not bank and w_shape[-1] == x_shape[-1]:
        meant = "'nhwc,hwc->nhw|hw' (a batch of images against one kernel, channels summed)"
    advice = (
        f"For a channels-last image as scipy.signal reads it, give spec={meant}"
        if meant
        else "Give a spec that makes the channel axis a summed or batch letter"
    )
    return (
        f"spec=None reads x {tuple(x_shape)} as {x_shape[0]} items of shape "
        f"{tuple(x_shape[1:])} and w {tuple(w_shape)} as {what} (spec '{assumed}'): it "
        f"slides over x's last axis of {x_shape[-1]} samples, which looks like colour "
        f"channels.\n{advice}; or pass spec='{assumed}' to keep this reading without the "
        f"warning."
    )
