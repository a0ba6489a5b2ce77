"""Dask arrays in, lazy Dask arrays out (``pip install "batchconv[dask]"``).

``bc.correlate`` / ``bc.convolve`` with a Dask array ``x`` and/or ``w`` build a task graph
and return a lazy Dask array: nothing is computed until ``.compute()``. Every task runs the
in-memory engine on one block, so the result equals the in-memory one (accuracy contract)
under any Dask scheduler: threads, processes or a ``distributed`` cluster.

How the blocks map:

- batch axes of ``x`` and bank axes of ``w`` keep their chunks: output block ``(i, j)``
  comes from ``x`` block ``i`` and ``w`` block ``j`` (a table of every image's best match
  against every filter is a grid of tasks);
  summed, paired and one-sided summed axes are rechunked whole;
- a chunked sliding axis: its output is cut where the input's chunks are cut (aligned to
  the stride; 'same' keeps the chunks), and each output block reads the input samples its
  windows cover (the halo from the mode, kernel extent, dilation and stride), with the
  padding applied at the outer boundary only;
- a reduced sliding axis that is chunked: each block reduces its own windows and one task
  per output block combines them ("sum", "mean", "max", "min"; "argmax"/"argmin" with
  coordinates made global, the first occurrence winning ties as in NumPy); for
  ``bc.peaks`` the reduced axes are rechunked whole instead (a peak's neighbours and its
  global coordinates in one task), and the call gives a lazy ``PeakResult``;
- one task per bank block builds the plan (filter spectra included) that every task of
  that block uses: the bank travels once per worker, never inside every task, and a NumPy
  ``x`` or ``w`` above 1 MB is scattered to the workers first when a ``distributed`` client
  is active.

Threads and memory: inside a task the engine uses ``workers`` threads, **1** unless given,
so that Dask's own parallelism (a task per core) does not oversubscribe the cores.
``memory`` is each task's budget for temporaries, beyond its input piece and output block.

>>> import numpy as np, dask.array as da, batchconv as bc
>>> x = da.from_array(np.arange(12.0).reshape(2, 6), chunks=(1, 3))
>>> y = bc.correlate(x, np.array([1.0, 1.0]), mode="same")
>>> y.chunks
((1, 1), (3, 3))
>>> y.compute()
array([[ 0.,  1.,  3.,  5.,  7.,  9.],
       [ 6., 13., 15., 17., 19., 21.]])
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from dataclasses import dataclass, replace
from itertools import product
from math import prod

import numpy as np

from .arrays import is_dask, to_numpy
from .backends.numpy import NUMPY
from .geometry import AxisGeometry
from .metrics.masked import check_mask, host_mask, with_mask
from .peak_reduce import Peaks, unpack
from .planner import choose_method, parse_memory, plan_problem
from .problem import Problem, make_problem
from .reduce import apply_reduce
from .tensors import torch_for_numpy, use_torch
from .xp import set_workers

__all__ = ["lazy_correlate", "axis_blocks", "AxisBlock"]

_SCATTER_BYTES = 1 << 20  # NumPy inputs above this are scattered, not put in the graph
_COMBINED = ("sum", "mean", "max", "min", "argmax", "argmin")
_FIRST_PARTIAL = {"mean": "sum", "argmax": "max", "argmin": "min"}  # see _run_partial
# argmax/argmin over chunked axes compute a block unreduced (one pass, both reductions)
# when that takes at most 1/_UNREDUCED_SHARE of the budget, else two fused passes
_UNREDUCED_SHARE = 2


@dataclass(frozen=True, eq=False)
class AxisBlock:
    """One output block ``o0:o1`` along a sliding axis and the input it reads: ``x`` at
    indices ``src``, then padded by the engine with ``lo`` samples before and ``hi`` after
    (``hi < 0``: the tail of ``src`` is not read). 'constant' padding stays implicit (the
    FFT method never transforms zeros); the other paddings are mapped into ``src`` where
    the axis is cut into several blocks, and left to the engine where it is whole."""

    o0: int
    o1: int
    src: np.ndarray
    lo: int
    hi: int

    def geometry(self, g: AxisGeometry) -> AxisGeometry:
        """The piece's geometry along this axis (``g``: the whole axis's)."""
        return replace(g, n=int(self.src.size), lo=self.lo, hi=self.hi, out=self.o1 - self.o0)


def axis_blocks(g: AxisGeometry, chunks: tuple[int, ...], padding: str) -> list[AxisBlock]:
    """Cut the output of one sliding axis where ``x``'s ``chunks`` are cut: output ``i``
    goes to the chunk holding its window's centre (``i * stride - lo + extent // 2``), so
    blocks align to the stride, 'same' keeps the input's chunks, and each block reads
    about one chunk plus the kernel's halo.

    >>> from batchconv.geometry import axis_geometry
    >>> g = axis_geometry(10, 3, "same")
    >>> [(b.o0, b.o1, b.src.tolist(), b.lo, b.hi) for b in axis_blocks(g, (5, 5), "wrap")]
    [(0, 5, [9, 0, 1, 2, 3, 4, 5], 0, 0), (5, 10, [4, 5, 6, 7, 8, 9, 0], 0, 0)]
    """
    starts = np.cumsum((0, *chunks))[1:-1]
    shift = g.lo - g.extent // 2  # output i's centre is input sample i * stride - shift
    cuts = [0, *(min(max(-(-(int(c) + shift) // g.stride), 0), g.out) for c in starts), g.out]
    cuts = sorted(set(cuts))
    if len(cuts) == 2:  # one block: the whole axis, padded by the engine as in memory
        return [AxisBlock(0, g.out, np.arange(g.n), g.lo, g.hi)]
    blocks = []
    for o0, o1 in zip(cuts[:-1], cuts[1:]):
        a = o0 * g.stride - g.lo  # first input sample read (may be padding)
        b = (o1 - 1) * g.stride - g.lo + g.extent  # one past the last
        if padding == "constant":  # the samples inside x; the engine adds the cval ones
            first, last = min(max(a, 0), g.n), max(min(b, g.n), 0)
            if last <= first:  # only padding (e.g. 'full' with a long kernel)
                first = last = min(first, g.n)
            blocks.append(
                AxisBlock(
                    o0, o1, np.arange(first, last), first - a, b - a - (first - a) - (last - first)
                )
            )
        else:  # padding samples mapped to the samples of x they copy
            lo, hi = max(-a, 0), max(b - g.n, 0)
            src = np.pad(np.arange(g.n), (lo, hi), mode=padding)[a + lo : b + lo]
            blocks.append(AxisBlock(o0, o1, src, 0, 0))
    return blocks


def _segments(src: np.ndarray, chunks: tuple[int, ...]) -> list[tuple[int, object]]:
    """``src`` (indices along one axis) as ``(chunk, indexer)`` pairs in order: slices of
    step +1 or -1 where the indices run so within one chunk, index lists otherwise."""
    bounds = np.cumsum((0, *chunks))
    which = np.searchsorted(bounds, src, side="right") - 1
    out, i, n = [], 0, len(src)
    while i < n:
        c, local = int(which[i]), int(src[i] - bounds[which[i]])
        j = i + 1
        step = int(src[j] - src[i]) if j < n and which[j] == c else 0
        if step in (1, -1):
            while j < n and which[j] == c and src[j] - src[j - 1] == step:
                j += 1
            stop = local + (j - i) * step
            out.append((c, slice(local, stop if stop >= 0 else None, step)))
        else:
            while j < n and which[j] == c and src[j] - src[j - 1] not in (1, -1):
                j += 1
            out.append((c, (src[i:j] - bounds[c]).tolist()))
        i = j
    return out


@dataclass(frozen=True, eq=False)
class _Layout:
    """How one piece is made from its chunks (kept opaque to Dask's graph traversal):
    ``parts`` is ``[(chunk number, indexers, where), ...]``; each fills ``out[where]``
    with ``chunks[number][indexers]``, the indexers applied axis by axis."""

    parts: list
    shape: tuple[int, ...]
    dtype: np.dtype


def _assemble(chunks: list, layout: _Layout) -> np.ndarray:
    """One task's input piece from the chunks it needs (see :class:`_Layout`)."""
    if len(layout.parts) == 1 and all(i == slice(None) for i in layout.parts[0][1]):
        return chunks[0]  # the piece is one whole chunk
    out = np.empty(layout.shape, layout.dtype)
    for number, indexers, where in layout.parts:
        a = chunks[number]
        for ax, idx in enumerate(indexers):
            if not (isinstance(idx, slice) and idx == slice(None)):
                a = a[(slice(None),) * ax + (idx,)]
        out[where] = a
    return out


def _pieces(xd, sliding: dict[int, list[AxisBlock]], name: str):
    """Graph of the input pieces: key ``(name, *i)`` is the piece of x-block ``i`` (the
    sliding axes' blocks from ``sliding``, keyed by axis; the other axes as ``xd``'s
    chunks), each made by one task from the chunks it needs. Returns the graph and the
    pieces' chunks per axis."""
    segs, chunks = [], []
    for ax, ch in enumerate(xd.chunks):
        if ax in sliding:
            segs.append([_segments(b.src, ch) for b in sliding[ax]])
            chunks.append(tuple(int(b.src.size) for b in sliding[ax]))
        else:
            segs.append([[(k, slice(None))] for k in range(len(ch))])
            chunks.append(ch)
    dsk = {}
    for i in np.ndindex(*(len(c) for c in chunks)):
        per_axis = [segs[ax][k] for ax, k in enumerate(i)]
        starts = [
            np.cumsum([0] + [_length(idx, xd.chunks[ax][c]) for c, idx in seg])
            for ax, seg in enumerate(per_axis)
        ]
        keys: dict = {}
        parts = []
        for pick in product(*(range(len(seg)) for seg in per_axis)):
            combo = [per_axis[ax][k] for ax, k in enumerate(pick)]
            number = keys.setdefault((xd.name, *(c for c, _ in combo)), len(keys))
            where = tuple(
                slice(int(starts[ax][k]), int(starts[ax][k + 1])) for ax, k in enumerate(pick)
            )
            parts.append((number, tuple(idx for _, idx in combo), where))
        shape = tuple(chunks[ax][k] for ax, k in enumerate(i))
        dsk[(name, *i)] = (_assemble, list(keys), _Layout(parts, shape, xd.dtype))
    return dsk, tuple(chunks)


def _length(idx, n: int) -> int:
    """How many elements ``idx`` takes from an axis of length ``n``."""
    return len(range(n)[idx]) if isinstance(idx, slice) else len(idx)


@dataclass(frozen=True)
class _Options:
    """What every task needs to make its plans (plain values: pickles small)."""

    problem: Problem  # the whole call's
    method: str
    memory: object
    workers: int
    torch: bool  # torch's CPU convolution a candidate (bc.use_torch when the graph was built)


def piece_problem(
    t: Problem,
    shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    geoms: tuple[AxisGeometry, ...],
    reduce,
    unreduced: bool = False,
) -> Problem:
    """The problem of one task: a piece of ``shape`` against a bank block of ``w_shape``,
    with the sliding axes' ``geoms``, everything else as in the whole call ``t``.
    ``unreduced``: the reduced sliding axes kept, as the output's last axes."""
    sp = t.spec
    out = sp.out + sp.reduced if unreduced else sp.out
    q = make_problem(
        shape,
        t.dtype,
        w_shape,
        t.dtype,
        f"{sp.x},{sp.w}->{out}|{sp.sliding}",
        mode="full",
        padding=t.padding,
        cval=t.cval,
        metric=t.metric,
        reduce=None if unreduced else reduce,
        flip=t.flip,
        masked=t.masked,
    )
    # (t's cval is already that of x summed over its own letters: not scaled twice)
    return replace(q, geoms=geoms, mode=t.mode, integer_inputs=t.integer_inputs, cval=t.cval)


class _Bank:
    """One bank block: its filters (and their mask's block, for ``mask=``) and the plans
    made for them, one per piece geometry and reduce. Built by one task with the plan
    of the most common piece, so the filter spectra are computed once and travel with
    the bank."""

    def __init__(
        self,
        w: np.ndarray,
        opts: _Options,
        shape: tuple[int, ...],
        geoms: tuple[AxisGeometry, ...],
        reduce,
        mask: np.ndarray | None = None,
    ):
        self.w, self.opts, self.mask = w, opts, mask
        self._plans: dict = {}
        self._lock = threading.Lock()
        self.plan(shape, geoms, reduce)

    def plan(
        self,
        shape: tuple[int, ...],
        geoms: tuple[AxisGeometry, ...],
        reduce,
        unreduced: bool = False,
    ):
        """The plan for pieces of ``shape`` whose sliding axes have ``geoms`` (made on
        first use in this process; the batch size may differ between calls).
        ``unreduced``: keep the reduced sliding axes, as the output's last axes, within
        what the budget leaves beside that output; None when that output would take more
        than ``1 / _UNREDUCED_SHARE`` of the budget."""
        t, o = self.opts.problem, self.opts
        batch = {t.spec.x.index(c) for c in t.spec.batch}
        key = (tuple(n for i, n in enumerate(shape) if i not in batch), geoms, reduce, unreduced)
        with self._lock:
            if key in self._plans:
                return self._plans[key]
        q = piece_problem(t, shape, self.w.shape, geoms, reduce, unreduced)
        memory = o.memory
        if unreduced:
            budget, out = parse_memory(memory), prod(q.out_shape) * q.dtype.itemsize
            memory = budget - out if out * _UNREDUCED_SHARE <= budget else None
        p = None if unreduced and memory is None else self._plan_problem(q, memory)
        with self._lock:
            self._plans[key] = p
        return p

    def _plan_problem(self, q: Problem, memory):
        o = self.opts
        with use_torch(o.torch):  # (tasks run in other threads, or processes)
            return plan_problem(q, self.w, o.method, memory, o.workers, mask=self.mask)

    def __getstate__(self) -> dict:
        return {"w": self.w, "opts": self.opts, "mask": self.mask, "_plans": dict(self._plans)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _run_block(bank: _Bank, piece: np.ndarray, geoms: tuple, reduce) -> np.ndarray:
    """One output block: the piece (sliding axes of geometry ``geoms``) against the bank
    (bc.peaks: packed, as the in-memory engine computes it; the call unpacks it)."""
    plan = bank.plan(piece.shape, geoms, reduce)
    if isinstance(reduce, Peaks):
        return plan._run(piece, NUMPY.layout_of(piece))
    return plan(piece)


def _run_partial(
    bank: _Bank, piece: np.ndarray, geoms: tuple, reduce: str, offsets: tuple[int, ...]
):
    """One block's share of a reduction over chunked sliding axes: the partial sum, max or
    min; for argmax/argmin, the block's best values and their global coordinates
    (``offsets``: the block's first output along each reduced axis)."""
    first = _FIRST_PARTIAL.get(reduce, reduce)
    if reduce not in ("argmax", "argmin"):
        return bank.plan(piece.shape, geoms, first)(piece)
    whole = bank.plan(piece.shape, geoms, reduce, unreduced=True)
    if whole is not None:  # one pass: the block's windows, then both reductions
        y = whole(piece)
        axes = tuple(range(y.ndim - len(offsets), y.ndim))
        best, coords = apply_reduce(first, y, axes), apply_reduce(reduce, y, axes)
    else:  # the unreduced block would not fit: two fused passes
        best = bank.plan(piece.shape, geoms, first)(piece)
        coords = bank.plan(piece.shape, geoms, reduce)(piece)
    return best, coords + np.asarray(offsets, np.intp)


def _combine(parts: list, reduce: str, sizes: tuple[int, ...]):
    """Combine the blocks' partials of one output block (see :func:`_run_partial`);
    ``sizes``: the reduced axes' output lengths."""
    if reduce in ("sum", "mean"):  # added in at least float64, like a pairwise sum's error
        total = np.sum(parts, axis=0, dtype=np.result_type(parts[0].dtype, np.float64))
        if reduce == "mean":
            total /= prod(sizes)
        return total.astype(parts[0].dtype, copy=False)
    if reduce in ("max", "min"):
        f = np.maximum if reduce == "max" else np.minimum  # NaN propagates, as in max()
        return f.reduce(np.stack(parts), axis=0)
    vals = np.stack([v for v, _ in parts])
    flat = np.stack([np.ravel_multi_index(tuple(np.moveaxis(c, -1, 0)), sizes) for _, c in parts])
    best = vals.max(axis=0) if reduce == "argmax" else vals.min(axis=0)
    nan = np.isnan(vals) if vals.dtype.kind == "f" else np.zeros(vals.shape, bool)
    hit = np.where(nan.any(axis=0), nan, vals == best)  # NumPy: the first NaN wins
    first = np.where(hit, flat, np.iinfo(np.intp).max).min(axis=0)
    return np.stack(np.unravel_index(first, sizes), axis=-1).astype(np.intp)


def _client():
    """The active ``distributed`` client, if any (without importing distributed)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_client

        return get_client()
    except (ValueError, ImportError):
        return None


def _as_dask(a: np.ndarray):
    """A NumPy input as a one-chunk Dask array: scattered to the workers when a
    ``distributed`` client is active and it is large, so that it is not embedded in the
    graph (the result is then computed by that client)."""
    import dask.array as da

    client = _client()
    if client is not None and a.nbytes > _SCATTER_BYTES:
        return da.from_delayed(
            client.scatter(a, broadcast=True),
            a.shape,
            a.dtype,
            meta=np.empty((0,) * a.ndim, a.dtype),
        )
    return da.from_array(a, chunks=a.shape or ())


def _known_chunks(a, name: str):
    """``a``, a Dask array, after checking that its chunk sizes are known."""
    if any(np.isnan(c) for ch in a.chunks for c in ch):
        raise ValueError(
            f"{name} is a Dask array with unknown chunk sizes (NaN, e.g. after "
            f"boolean indexing); call {name}.compute_chunk_sizes() first"
        )
    return a


def lazy_correlate(
    x,
    w,
    spec,
    flip: bool,
    *,
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
    mask=None,
):
    """The lazy Dask array of ``correlate(x, w, spec, ...)`` (``flip``: convolve);
    ``mask``: as ``correlate``'s (a NumPy array; its blocks follow the bank's)."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    options = dict(
        mode=mode,
        origin=origin,
        stride=stride,
        dilation=dilation,
        padding=padding,
        cval=cval,
        metric=metric,
        reduce=reduce,
    )
    x, w = (
        _known_chunks(a, name) if is_dask(a) else to_numpy(a, name)[0]
        for a, name in ((x, "x"), (w, "w"))
    )
    # every option checked before anything is scattered
    p = make_problem(
        x.shape, x.dtype, w.shape, w.dtype, spec, flip=flip, masked=mask is not None, **options
    )
    if mask is not None:  # float64 weights of w's shape (metrics/masked.py)
        sp = p.spec
        mask = check_mask(host_mask(mask), w.shape, sp.w, sp.sliding, sp.w_summed)
        p = with_mask(p, mask)
    peaks = isinstance(p.reduce, Peaks)
    with set_workers(workers):  # validates workers= and leaves the thread's setting
        pass
    xd, wd = (a if is_dask(a) else _as_dask(a) for a in (x, w))
    if 0 in xd.shape or 0 in wd.shape or 0 in p.out_shape:  # nothing to compute lazily
        empty = plan_problem(
            p,
            np.zeros(wd.shape, wd.dtype),
            method=method,
            memory=memory,
            workers=workers,
            mask=mask,
        )(np.zeros(xd.shape, xd.dtype))
        return da.from_array(empty, chunks=empty.shape or ())
    sp = p.spec
    # bc.peaks: each task holds whole maps (the reduced axes whole), so that a peak's
    # neighbours are all in its task and its coordinates are global
    xd = xd.rechunk(
        {
            i: -1
            for i, c in enumerate(sp.x)
            if (c not in sp.batch and c not in sp.sliding) or (peaks and c in sp.reduced)
        }
    )
    wd = wd.rechunk({i: -1 for i, c in enumerate(sp.w) if c not in sp.bank})
    blocks = {
        c: axis_blocks(g, xd.chunks[sp.x.index(c)], p.padding) for c, g in zip(sp.sliding, p.geoms)
    }
    split = [c for c in sp.reduced if len(blocks[c]) > 1]  # reduced axes cut into blocks
    if split and callable(p.reduce):
        raise ValueError(
            f"a callable reduce cannot be combined across the chunks of sliding "
            f"axes {''.join(split)!r}: rechunk x so that they are whole "
            f"(x.rechunk({{axis: -1}})) or use one of {_COMBINED}"
        )
    md = None if mask is None else da.from_array(np.ascontiguousarray(mask), chunks=wd.chunks)
    joins = torch_for_numpy()
    token = tokenize(xd.name, wd.name, spec, flip, method, memory, workers, options, md, joins)
    names = {s: f"batchconv-{s}-{token}" for s in ("out", "bank", "part", "piece")}
    dsk, piece_chunks = _pieces(xd, {sp.x.index(c): blocks[c] for c in sp.sliding}, names["piece"])
    opts = _Options(p, method, memory, 1 if workers is None else workers, joins)
    dsk.update(_block_tasks(p, opts, names, blocks, piece_chunks, wd, bool(split), md))
    chunks = _output_chunks(p, blocks, piece_chunks, wd.chunks)
    inputs = [xd, wd] if md is None else [xd, wd, md]
    graph = HighLevelGraph.from_collections(names["out"], dsk, dependencies=inputs)
    meta = np.empty((0,) * len(chunks), p.out_dtype)
    y = da.Array(graph, names["out"], chunks=chunks, dtype=p.out_dtype, meta=meta)
    return unpack(p.reduce, y, p.dtype)  # (bc.peaks: a lazy PeakResult)


def _most_common(values):
    return Counter(values).most_common(1)[0][0]


def _block_tasks(
    p: Problem,
    opts: _Options,
    names: dict,
    blocks: dict,
    piece_chunks: tuple,
    wd,
    split: bool,
    md=None,
) -> dict:
    """The bank tasks (with the mask ``md``'s blocks, chunked as ``wd``), and one task
    per (piece, bank block): the output block, or with ``split`` (a reduced sliding axis
    cut into blocks) a partial, combined per output block."""
    sp = p.spec
    geoms = {c: [b.geometry(g) for b in blocks[c]] for c, g in zip(sp.sliding, p.geoms)}
    typical = tuple(_most_common(geoms[c]) for c in sp.sliding)
    shape = tuple(
        typical[sp.sliding.index(c)].n if c in sp.sliding else _most_common(ch)
        for c, ch in zip(sp.x, piece_chunks)
    )
    first = _FIRST_PARTIAL.get(p.reduce, p.reduce) if split else p.reduce
    # the most common task's method, chosen now: bad method= or memory= fail at call time
    choose_method(  # (the mask's numbers are not needed for the choice)
        piece_problem(p, shape, tuple(_most_common(ch) for ch in wd.chunks), typical, first),
        opts.method,
        opts.memory,
        opts.workers,
    )
    dsk: dict = {}
    for j in np.ndindex(*wd.numblocks):
        masked = () if md is None else ((md.name, *j),)
        dsk[(names["bank"], *j)] = (_Bank, (wd.name, *j), opts, shape, typical, first, *masked)
    tail = (0,) * len(p.reduce_tail)  # (argmax/argmin, bc.peaks: one block of them)
    groups: dict = {}
    for i in np.ndindex(*(len(ch) for ch in piece_chunks)):
        piece = tuple(geoms[c][i[sp.x.index(c)]] for c in sp.sliding)
        for j in np.ndindex(*wd.numblocks):
            # batch, kept sliding and paired (whole) letters are x's; bank letters w's
            out = (
                names["out"],
                *(i[sp.x.index(c)] if c in sp.x else j[sp.w.index(c)] for c in sp.out),
                *tail,
            )
            bank, x_piece = (names["bank"], *j), (names["piece"], *i)
            if not split:
                dsk[out] = (_run_block, bank, x_piece, piece, p.reduce)
                continue
            offsets = tuple(blocks[c][i[sp.x.index(c)]].o0 for c in sp.reduced)
            key = (names["part"], *i, *j)
            dsk[key] = (_run_partial, bank, x_piece, piece, p.reduce, offsets)
            groups.setdefault(out, []).append(key)
    sizes = tuple(p.geoms[sp.sliding.index(c)].out for c in sp.reduced)
    for out, keys in groups.items():
        dsk[out] = (_combine, keys, p.reduce, sizes)
    return dsk


def _output_chunks(p: Problem, blocks: dict, piece_chunks: tuple, w_chunks: tuple) -> tuple:
    """The result's chunks, axis by axis in the spec's output order."""
    sp, chunks = p.spec, []
    for c in sp.out:
        if c in sp.sliding:
            chunks.append(tuple(b.o1 - b.o0 for b in blocks[c]))
        elif c in sp.bank:
            chunks.append(w_chunks[sp.w.index(c)])
        else:  # batch (x's chunks) or paired (whole)
            chunks.append(piece_chunks[sp.x.index(c)])
    chunks += [(n,) for n in p.reduce_tail]
    return tuple(chunks)
