"""Deliberately naive float64 references. Slow, obviously right, shares no code with batchconv.

``naive_correlate`` follows the definitions literally: parse the spec with string
operations, pad x by ``extent - 1`` on both sides with ``numpy.pad``, compute the *full*
correlation one output position at a time (an ``einsum`` over one window), crop it the way
``scipy.signal.correlate`` does ('same': centred, start ``(extent - 1) // 2``), sample
every ``stride``-th output, then reduce.
"""

from __future__ import annotations

import itertools

import numpy as np


def _parse(spec: str):
    lhs, sliding = spec.replace(" ", "").split("|")
    ops, out = lhs.split("->")
    xs, ws = ops.split(",")
    return xs, ws, out, sliding


def default_spec_string(x_ndim: int, w_ndim: int, reduce: bool) -> str:
    letters = "hwdefg"[: x_ndim - 1]
    kept = "" if reduce else letters
    if w_ndim == x_ndim:
        return f"n{letters},k{letters}->nk{kept}|{letters}"
    return f"n{letters},{letters}->n{kept}|{letters}"


def _window_metric(xw, w, xs, ws, nonslide_out, metric, mu, mask=None):
    """One output position: ``metric`` between every x window and filter, for the
    letters ``nonslide_out``. Letters only in x or only in w and not in the output are
    summed first (einsum rule); the window is every letter in both x and w that is not in
    the output (summed and sliding letters). ``mask``: weights of w's positions (w's
    shape), OpenCV's masked formulas (:func:`_masked_metric`)."""
    xonly = "".join(c for c in xs if c not in ws and c not in nonslide_out)
    wonly = "".join(c for c in ws if c not in xs and c not in nonslide_out)
    xs2 = "".join(c for c in xs if c not in xonly)
    ws2 = "".join(c for c in ws if c not in wonly)
    a = np.einsum(f"{xs}->{xs2}", xw)
    b = np.einsum(f"{ws}->{ws2}", w)
    window = [c for c in xs2 if c in ws2 and c not in nonslide_out]
    order = list(nonslide_out) + window

    def expand(arr, letters):
        present = "".join(c for c in order if c in letters)
        arr = np.einsum(f"{letters}->{present}", arr)
        return arr.reshape([arr.shape[present.index(c)] if c in present else 1 for c in order])

    A, B = expand(a, xs2), expand(b, ws2)
    A, B = np.broadcast_arrays(A, B)
    W = None if mask is None else np.broadcast_to(expand(mask, ws), A.shape)
    lead = A.shape[: len(nonslide_out)]
    A = A.reshape(*lead, -1)
    B = B.reshape(*lead, -1)
    if W is not None:
        return _masked_metric(A, B, W.reshape(*lead, -1), metric, mu, expand, xs2, window, lead)
    if metric == "ssd":
        return ((A - B) ** 2).sum(-1)
    if metric == "sad":
        return np.abs(A - B).sum(-1)
    if metric in ("ncc", "ncc_den"):
        Ac = A - A.mean(-1, keepdims=True)
        Bc = B - B.mean(-1, keepdims=True)
        den = np.sqrt((Ac * Ac).sum(-1) * (Bc * Bc).sum(-1))
        if metric == "ncc_den":
            return den
        flat = (np.ptp(A, axis=-1) == 0) | (np.ptp(B, axis=-1) == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(flat, 0.0, (Ac * Bc).sum(-1) / den)
    if metric in ("cosine", "cosine_den"):
        den = np.sqrt((A * A).sum(-1) * (B * B).sum(-1))
        if metric == "cosine_den":
            return den
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den == 0, 0.0, (A * B).sum(-1) / den)
    # error scales of the accuracy contract (see window_metric_bound)
    if mu is not None:
        M = expand(mu, "".join(c for c in xs2 if c not in window))
        M = np.broadcast_to(M.reshape(*M.shape[: len(nonslide_out)], 1), A.shape[:-1] + (1,))
    else:
        M = 0.0
    if metric == "ssd_scale":
        return ((np.abs(A - M) + np.abs(B - M)) ** 2).sum(-1)
    if metric == "ncc_scale":
        return (np.abs(A - M) * np.abs(B - B.mean(-1, keepdims=True))).sum(-1)
    if metric == "cosine_scale":
        return (np.abs(A) * np.abs(B)).sum(-1)
    raise ValueError(metric)


def _masked_metric(A, B, W, metric, mu, expand, xs2, window, lead):
    """``metric`` of windows ``A`` and filters ``B`` weighted by ``W`` (last axis: the
    window), written from OpenCV's formulas for masked matchTemplate, literally."""
    W2 = W * W
    if metric == "ssd":
        return ((W * (A - B)) ** 2).sum(-1)
    if metric == "sad":
        return (W * np.abs(A - B)).sum(-1)
    used = W > 0

    def flat(V):  # no spread among the weighted values
        top = np.where(used, V, -np.inf).max(-1)
        return ~used.any(-1) | (top == np.where(used, V, np.inf).min(-1))

    with np.errstate(invalid="ignore", divide="ignore"):
        if metric in ("ncc", "ncc_den"):
            mua = (W * A).sum(-1, keepdims=True) / W.sum(-1, keepdims=True)
            mub = (W * B).sum(-1, keepdims=True) / W.sum(-1, keepdims=True)
            Ac, Bc = W * (A - mua), W * (B - mub)
            den = np.sqrt((Ac * Ac).sum(-1) * (Bc * Bc).sum(-1))
            if metric == "ncc_den":
                return np.nan_to_num(den)
            return np.where(flat(A) | flat(B), 0.0, (Ac * Bc).sum(-1) / den)
        if metric in ("cosine", "cosine_den"):
            den = np.sqrt((W2 * A * A).sum(-1) * (W2 * B * B).sum(-1))
            if metric == "cosine_den":
                return den
            return np.where(den == 0, 0.0, (W2 * A * B).sum(-1) / den)
    M = 0.0  # error scales of the accuracy contract (see window_metric_bound)
    if mu is not None:
        M = expand(mu, "".join(c for c in xs2 if c not in window))
        M = np.broadcast_to(M.reshape(*M.shape[: len(lead)], 1), A.shape[:-1] + (1,))
    if metric == "ssd_scale":
        return (W2 * (np.abs(A - M) + np.abs(B - M)) ** 2).sum(-1)
    if metric == "ncc_scale":
        with np.errstate(invalid="ignore", divide="ignore"):
            mub = np.nan_to_num((W * B).sum(-1, keepdims=True) / W.sum(-1, keepdims=True))
        return (W2 * np.abs(A - M) * np.abs(B - mub)).sum(-1)
    if metric == "cosine_scale":
        return (W2 * np.abs(A) * np.abs(B)).sum(-1)
    raise ValueError(metric)


def naive_correlate(
    x,
    w,
    spec=None,
    *,
    mode="valid",
    stride=1,
    dilation=1,
    padding="constant",
    cval=0.0,
    reduce=None,
    convolve=False,
    metric="dot",
    mask=None,
):
    """Float64 (or complex128) reference for ``bc.correlate`` / ``bc.convolve``.

    ``metric``: "dot" or a similarity metric, computed from each window's values
    literally (for ncc: a window or filter whose values are all equal gives 0).
    ``mask``: weights of ``w``'s positions, broadcast to its shape (booleans and
    integers: nonzero is 1)."""
    x = np.asarray(x)
    w = np.asarray(w)
    if mask is not None:
        mask = np.asarray(mask)
        mask = (mask != 0) if mask.dtype.kind in "biu" else mask
        mask = np.broadcast_to(mask.astype(np.float64), w.shape)
    cplx = np.iscomplexobj(x) or np.iscomplexobj(w)
    ft = np.complex128 if cplx else np.float64
    x = x.astype(ft)
    w = w.astype(ft)
    if spec is None:
        spec = default_spec_string(x.ndim, w.ndim, reduce is not None)
    xs, ws, out, sliding = _parse(spec)
    mu = None
    if metric in ("ssd_scale", "ncc_scale"):  # the mean of each x item (x-only letters
        # not in the output summed first), over the window letters
        xonly = "".join(c for c in xs if c not in ws and c not in out)
        xs2 = "".join(c for c in xs if c not in xonly)
        keep = "".join(c for c in xs2 if c in out and c not in sliding)
        x2 = np.einsum(f"{xs}->{xs2}", x)
        mu = np.einsum(f"{xs2}->{keep}", x2) / (
            x2.size / max(1, np.prod([x2.shape[xs2.index(c)] for c in keep], dtype=int))
        )
    nd = len(sliding)
    strides = [stride] * nd if np.ndim(stride) == 0 else list(stride)
    dils = [dilation] * nd if np.ndim(dilation) == 0 else list(dilation)
    # kernel in sliding order, flipped for convolve, conjugated for complex correlate
    if convolve:
        for c in sliding:
            w = np.flip(w, axis=ws.index(c))
            mask = None if mask is None else np.flip(mask, axis=ws.index(c))
    elif cplx:
        w = np.conj(w)
    n = {c: x.shape[xs.index(c)] for c in sliding}
    m = {c: w.shape[ws.index(c)] for c in sliding}
    ext = {c: (m[c] - 1) * d + 1 for c, d in zip(sliding, dils)}
    # pad x by extent-1 on both sides of each sliding axis
    widths = [(ext[c] - 1, ext[c] - 1) if c in sliding else (0, 0) for c in xs]
    if padding == "constant":
        xp = np.pad(x, widths, mode="constant", constant_values=cval)
    else:
        xp = np.pad(x, widths, mode=padding)
    # full correlation: window start t = -(ext-1) .. n-1 (padded index t + ext - 1)
    full_len = {c: n[c] + ext[c] - 1 for c in sliding}
    nonslide_out = [c for c in out if c not in sliding]
    sizes = {c: s for c, s in zip(xs, x.shape)} | {c: s for c, s in zip(ws, w.shape)}
    full = np.zeros([sizes[c] for c in nonslide_out] + [full_len[c] for c in sliding], ft)
    for pos in itertools.product(*(range(full_len[c]) for c in sliding)):
        xw = xp
        for c, t, d in zip(sliding, pos, dils):
            idx = t + np.arange(m[c]) * d
            xw = np.take(xw, idx, axis=xs.index(c))
        if metric == "dot":
            weighted = w if mask is None else w * mask * mask
            val = np.einsum(f"{xs},{ws}->{''.join(nonslide_out)}", xw, weighted)
        else:
            val = _window_metric(xw, w, xs, ws, "".join(nonslide_out), metric, mu, mask)
        full[(Ellipsis, *pos)] = val
    # crop for the mode as scipy does, then stride
    crops = []
    for c, s in zip(sliding, strides):
        if mode == "full":
            start, length = 0, full_len[c]
        elif mode == "same":
            start, length = (full_len[c] - n[c]) // 2, n[c]
        else:
            start, length = ext[c] - 1, n[c] - ext[c] + 1
        crops.append(slice(start, start + length, s))
    res = full[(Ellipsis, *crops)]
    # reduce the sliding letters missing from the output
    lead = len(nonslide_out)
    red = [i for i, c in enumerate(sliding) if c not in out]
    red_axes = tuple(lead + i for i in red)
    if red:
        if reduce is None:
            reduce = "sum"
        if reduce in ("argmax", "argmin"):
            keep = [a for a in range(res.ndim) if a not in red_axes]
            moved = res.transpose(keep + list(red_axes))
            flat = moved.reshape(*moved.shape[: len(keep)], -1)
            idx = flat.argmax(-1) if reduce == "argmax" else flat.argmin(-1)
            coords = np.stack(np.unravel_index(idx, [res.shape[a] for a in red_axes]), -1)
            res, tail = coords, 1
        else:
            res = (
                getattr(np, reduce)(res, axis=red_axes)
                if isinstance(reduce, str)
                else reduce(res, axis=red_axes)
            )
            tail = 0
    else:
        tail = 0
    kept = [c for c in sliding if c in out]
    cur = nonslide_out + kept
    perm = [cur.index(c) for c in out] + list(range(len(cur), len(cur) + tail))
    return res.transpose(perm)


def _unreduced_spec(x, w, spec):
    """``spec`` with every sliding letter kept in the output, and the positions of the
    sliding axes in that output (over which a pair's windows range)."""
    if spec is not None:
        xs, ws, out, sliding = _parse(spec)
        full_out = out + "".join(c for c in sliding if c not in out)
        return (
            f"{xs},{ws}->{full_out}|{sliding}",
            tuple(i for i, c in enumerate(full_out) if c in sliding),
        )
    spec = default_spec_string(np.ndim(x), np.ndim(w), False)
    out = spec.split("->")[1].split("|")[0]
    return spec, tuple(range(2 if np.ndim(w) == np.ndim(x) else 1, len(out)))


def window_abs_bound(x, w, spec=None, **kw):
    """S of the accuracy contract for every output: the largest ``sum |x| |w|`` over any
    window of that output's (x item, filter) pair, broadcast to the unreduced result."""
    kw = dict(kw)
    kw.pop("reduce", None)
    conv = kw.pop("convolve", False)
    cval = abs(kw.pop("cval", 0.0))
    spec, axes = _unreduced_spec(x, w, spec)
    s = naive_correlate(np.abs(x), np.abs(w), spec, cval=cval, convolve=conv, **kw).real
    return s.max(axis=axes, keepdims=True) if s.size else s


def window_metric_bound(x, w, spec=None, *, metric, **kw):
    """The metrics' accuracy contract, per output: ``(scale, den)`` with
    ``|y - ref| <= tol * (scale / den + 1)`` (den = 1 for ssd and sad). ``scale`` is the
    pair's largest, over its windows, of

    * ssd: ``sum (|a - mu| + |b - mu|)^2`` (mu: the mean of x's item),
    * sad: ``sum |a - b|``,
    * ncc: ``sum |a - mu| |b - mean b|``, den ``|a - mean a| |b - mean b|``,
    * cosine: ``sum |a| |b|``, den ``|a| |b|``."""
    kw = dict(kw)
    kw.pop("reduce", None)
    spec, axes = _unreduced_spec(x, w, spec)
    name = "sad" if metric == "sad" else f"{metric}_scale"
    s = naive_correlate(x, w, spec, metric=name, **kw)
    s = s.max(axis=axes, keepdims=True) if s.size else s
    if metric in ("ssd", "sad"):
        return s, np.ones_like(s)
    return s, naive_correlate(x, w, spec, metric=f"{metric}_den", **kw)


def tolerance(dtype) -> float:
    """The accuracy contract's tol: 1e-5 for single precision, 1e-12 for double."""
    dt = np.dtype(dtype)
    return 1e-5 if dt in (np.float32, np.complex64, np.float16) else 1e-12
