"""Winograd's minimal filtering F(m, r): small kernels at stride 1 with fewer multiplications.

A tile of ``alpha = m + r - 1`` input samples per sliding axis gives ``m`` outputs of an
``r``-tap correlation as ``A^T [(G g) * (B^T d)]`` (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016): the transformed tile ``B^T d`` and the
transformed filter ``G g`` are multiplied elementwise, and ``A^T`` brings the product
back. With channels and a bank the elementwise stage becomes ``alpha^d`` matrix products
``(tiles, C) @ (C, k)``, one per transformed position, and the channel sum happens
there: a 3x3 layer makes ``(m + 2)^2 / (9 m^2)`` of the direct method's multiplications
(0.44 for F(2x2, 3x3), 0.25 for F(4x4, 3x3)).

The data flow of one call, chunk by chunk (a few hundred tiles, so the transformed data
stays in cache between the stages):

1. the chunk's items are copied channels-last into a buffer padded to whole tiles (not
   for 'valid' windows: the tiles are gathered from the input itself, the last tile of
   an axis whose output is not whole tiles moved back to end at the input's end);
2. **input transform**: the tiles are gathered as ``(alpha^d, tiles * C)`` and multiplied
   by ``B^T (x) B^T`` (a Kronecker product: one matrix product per chunk);
3. **elementwise stage**: ``alpha^d`` GEMMs ``(tiles, C) @ (C, k)`` against the
   transformed filters, which the plan keeps (``prepare``);
4. **output transform**: ``A^T (x) A^T`` brings each tile back to its ``m^d`` outputs,
   written into the block.

With numba (``compiled.enabled()`` when the plan is made), 2-D tiles of 6 x 6 samples
(F(4x4, 3x3), F(2x2, 5x5)) with at least 16 channels and filters run stages 2 and 4 as
compiled kernels (``_numba_kernels.winograd_in6``/``winograd_out6``): ``B^T d B`` and
``A^T Y A`` as two passes of a 6 x 6 matrix, vectorised along the channels, the input
read in place (no gathered copy; for 'valid' windows on channels-last data the input
itself, as in step 1, else the padded buffer), a third of the input transform's flops;
the outputs are written into the block directly where its filters are innermost (NHWC
results), else through the scatter (3x3 64->64 on 8 x 56x56, 2 threads: 7.0 -> 4.6 ms a
call with NHWC results, 14.4 -> 12.5 ms with NCHW ones).

The matrices are built from interpolation points (``winograd_matrices``, checked
against the identity). **Accuracy**: the transforms amplify rounding errors by a
constant of the tile, at most ``kappa = max_{i,k,l} sum_j |A^T_ij| |G_jk| |B^T_jl|`` per
axis (to the power ``d``): an output's error is bounded by about ``4 kappa^d u S`` (``u``
the unit roundoff, ``S`` the accuracy contract's window scale: README, "Accuracy
contract"). The points are chosen for a small
kappa: 0, 1, -1, 2, -1/2 (then -2, 1/2) give F(4, 3) kappa = 4.67, where Lavin and
Gray's 0, +-1, +-2 give 10.7 (a 2-D F(4x4, 3x3) amplifies 21.8x against 114x; on
adversarial float32 data, striped rows of 1 and 1e4, 2.5e-6 S against 5e-6 S).
:func:`tile_size` picks the largest tile whose bound stays inside the accuracy
contract's ``tol * S``: F(4x4, 3x3) and F(2x2, 5x5) in float32 (bound 5.2e-6 S),
F(4x4, 5x5) in float64; in 1-D F(4, 3) and F(4, 5). The bound needs every sample of a
tile to meet every tap in some kept window; a sample within a kernel's width of the
edge meets only some (the FFT method shares this): a spike there against small taps
can exceed it (docs/guide/accuracy.rst; ``tests/test_winograd.py``'s known limitation).

>>> import numpy as np, batchconv as bc
>>> x = np.random.default_rng(0).random((2, 16, 16, 8), np.float32)
>>> w = np.random.default_rng(1).random((3, 3, 8, 4), np.float32)
>>> y = bc.correlate(x, w, "nhwc,hwco->nhwo|hw", method="winograd")
>>> ref = bc.correlate(x, w, "nhwc,hwco->nhwo|hw", method="direct")
>>> S = 9 * 8 * 1.0 * 1.0  # taps x channels x max|x| x max|w|: a bound of every window
>>> bool(np.abs(y - ref).max() < 1e-5 * S)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from itertools import product
from math import prod

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import compiled
from ..geometry import pad_sliding
from ..memo import remembered
from ..problem import Problem
from ..xp import blas_threads, get_workers, parallel_for, work_buffer
from . import direct

__all__ = [
    "WinogradState",
    "winograd_matrices",
    "amplification",
    "tile_size",
    "applies",
    "prepare",
    "compute",
    "workspace_bytes",
    "state_bytes",
    "fuses_reduce",
    "flops",
    "cost_features",
    "describe",
    "exact_method",
]

# what the method is (see methods/__init__.py)
NAME = "winograd"
ON_TENSORS = False
STANDS_FOR = None
COMPUTES_SAD = False
EXACT_FOR_INTEGERS = False
# a NaN or Inf mixes into every output of its tile (and 0 * Inf in the transforms): the
# plan redoes the flagged items exactly
SPREADS_NONFINITE = True

# the transforms' interpolation points, the first m + r - 2 of them for F(m, r)
_POINTS = (0, 1, -1, 2, Fraction(-1, 2), -2, Fraction(1, 2))
# kernel sizes (taps per sliding axis) and output tiles it has; sliding axes it runs
_TAPS = (3, 5)
_TILES = (4, 2)  # largest first: the first inside the contract is taken
_MAX_NDIM = 2
# the accuracy contract (README, docs/guide/accuracy.rst): |y - ref| <= tol * S
_CONTRACT_TOL = {4: 1e-5, 8: 1e-12}
# rounding stages between the input and an output (the two transforms, the product and
# its channel sum), each adding about kappa^d u S: the bound's constant
_ROUNDINGS = 4
# transformed positions (alpha^d x tiles) per chunk: its data stays in L2 between the
# transform and the GEMMs, each GEMM having a few hundred rows (256 tiles of F(4x4,
# 3x3) for 3x3 64->64 on 8 x 56x56: 6.9 ms a call, 7.5 with 128, 7.1 with 512)
_CHUNK_POSITIONS = 256 * 36
_MIN_CHUNK_TILES = 64
# the compiled transforms pay a fixed cost per tile (their passes are vectorised along
# the channels): with fewer channels or filters than this the matrix products are faster
# (1 x 256x256, one 3x3 filter: 2.4 against 1.2 ms; 3 -> 16 channels, 5x5: 7.3 against
# 4.8 ms; 16 -> 16, 3x3: 1.7 against 2.1 ms)
_COMPILED_MIN = 16
# the compiled transforms' share of the matrix-product transforms' cost (their flops and
# copies; the GEMMs are the same): `benchmarks/fit_winograd_compiled.py --n 40` (40 random
# float32/float64 layers, 3x3 and 5x5, 16-128 channels and filters, 14-128 pixels a side,
# NHWC and NCHW, 'valid' and 'same', reused plans, 2 cores), the least squared log error
# of the Winograd estimate: 0.56 (estimate / time median 1.05, 10-90 % 0.74-1.25; on 40
# other layers, --seed 1: 1.01, 0.62-1.38). It was 0.7 before the transforms read 'valid'
# channels-last inputs in place (at 0.7 after that: median 1.27, 3x3 64->64 on 8 x 56x56
# estimated 7.6 ms, 4.3 measured, and oneDNN's 5.5 ms taken with torch imported)
_COMPILED_COST = 0.56

# seconds per feature unit: `benchmarks/fit_cost_model.py --methods direct,fft,winograd
# --small-kernels --n 300` (100 winograd problems), refitted with the per-call cost held
# at 0.2 ms (the free fit put 1.35 ms there and nothing on the GEMM flops: the features
# move together on these problems): 10-90% of estimate / actual 0.54-1.24. On those
# problems the choice among the three lost 10 % or more on 9 of 99, worst where the
# one-filter direct kernel with many channels is estimated 3-10x too fast (its own model)
COEFFICIENTS: dict[str, dict[str, float]] = {
    "winograd": {
        "calls": 0.0002,
        "gemm_flops_double": 0.0,
        "gemm_flops_single": 1.46e-12,
        "moved_bytes": 1.83e-10,
        "transform_flops": 5.2e-12,
    },
}


@cache
def winograd_matrices(
    m: int, r: int, points: tuple = _POINTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A^T, G, B^T)`` of F(m, r) in float64: ``A^T`` is ``(m, alpha)``, ``G`` is
    ``(alpha, r)``, ``B^T`` is ``(alpha, alpha)``, with ``y = A^T [(G g) * (B^T d)]`` the
    correlation ``y_i = sum_k d_{i+k} g_k`` of a tile ``d`` of ``alpha = m + r - 1``
    samples.

    ``A^T`` and ``G`` come from the points (Vandermonde rows, and ``G`` scaled by the
    Lagrange denominators; the last row is the point at infinity); ``B^T`` is then the
    solution of the identity, rounded to the small fractions it is made of, and checked.

    >>> at, g, bt = winograd_matrices(2, 3)
    >>> bt.astype(int).tolist()
    [[-1, 0, 1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]]
    """
    n = m + r - 1
    pts = [Fraction(a) for a in points[: n - 1]]
    at = [[a**i for a in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    denom = [prod(a - b for b in pts if b != a) for a in pts]
    g = [[a**k / f for k in range(r)] for a, f in zip(pts, denom)]
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    at, g = np.array(at, float), np.array(g, float)
    # sum_j at[i, j] g[j, k] bt[j, l] = [l == i + k], linear in bt
    eq = np.einsum("ij,jk,jJ,lL->iklJL", at, g, np.eye(n), np.eye(n)).reshape(-1, n * n)
    rhs = np.array([float(j == i + k) for i in range(m) for k in range(r) for j in range(n)])
    bt = np.linalg.lstsq(eq, rhs, rcond=None)[0].reshape(n, n)
    bt = np.array([[float(Fraction(v).limit_denominator(1000)) for v in row] for row in bt])
    assert np.allclose(eq @ bt.ravel(), rhs, atol=1e-12), (m, r)
    return at, g, bt


@cache
def amplification(m: int, r: int, ndim: int, points: tuple = _POINTS) -> float:
    """``kappa^ndim``: how much F(m, r) on ``ndim`` axes can amplify one rounding error,
    relative to the window scale S (the largest ``|A^T_ij| |G_jk| |B^T_jl|`` sum over
    the transformed positions ``j``, for one input sample ``l`` and one tap ``k``).

    >>> amplification(2, 3, 2), round(amplification(4, 3, 2), 1)
    (4.0, 21.8)
    >>> round(amplification(4, 3, 2, points=(0, 1, -1, 2, -2)), 1)  # Lavin and Gray's
    113.8
    """
    at, g, bt = winograd_matrices(m, r, points)
    kappa = np.einsum("ij,jk,jl->ikl", np.abs(at), np.abs(g), np.abs(bt)).max()
    return float(kappa) ** ndim


def tile_size(p: Problem) -> int | None:
    """The largest output tile ``m`` per axis whose error bound (``_ROUNDINGS`` times
    the amplification times the unit roundoff) is inside the accuracy contract for
    ``p``'s dtype; None when there is none, or when ``p``'s kernel is not one of the
    sizes the method has."""
    r = p.T[0]
    if r not in _TAPS or any(t != r for t in p.T) or p.dtype.kind != "f":
        return None
    tol = _CONTRACT_TOL.get(p.dtype.itemsize)
    if tol is None:
        return None
    u = float(np.finfo(p.dtype).eps) / 2
    for m in _TILES:
        if _ROUNDINGS * amplification(m, r, p.ndim) * u <= tol:
            return m
    return None


@dataclass
class WinogradState:
    """The tile, the Kronecker transforms, and the transformed filters ``(P, alpha^d, C,
    K)`` in the compute dtype."""

    m: int
    r: int
    data_transform: np.ndarray  # (alpha^d, alpha^d): B^T (x) ... (x) B^T
    output_transform: np.ndarray  # (m^d, alpha^d): A^T (x) ... (x) A^T
    filters: np.ndarray  # (P, alpha^d, C, K)
    kernel: np.ndarray  # (K, C, P, *T): the canonical filters, for items redone directly
    # the compiled transforms' B^T and A^T (padded to 6 x 6), where they run (2-D tiles
    # of 6 x 6 samples, numba on when the plan was made); else None
    compiled_transforms: tuple[np.ndarray, np.ndarray] | None = None
    # the plan's room for temporaries (its budget beside this state; None: unlimited),
    # from which the direct method redoing an overflowed item takes its share
    room: int | None = None

    @property
    def alpha(self) -> int:
        return self.m + self.r - 1


def applies(p: Problem, device: str | None = None) -> str | None:
    """None for real floating-point problems on 1 or 2 sliding axes whose kernels have 3
    (or 5) taps on every axis, at stride and dilation 1, with a tile inside the accuracy
    contract; otherwise why not."""
    if p.dtype.kind != "f":
        return "winograd: real floating-point data only"
    if not 1 <= p.ndim <= _MAX_NDIM:
        return f"winograd: 1 or 2 sliding axes only, not {p.ndim}"
    if any(g.stride != 1 or g.dilation != 1 for g in p.geoms):
        return "winograd: stride and dilation 1 only"
    if p.T[0] not in _TAPS or any(t != p.T[0] for t in p.T):
        return f"winograd: kernels of {' or '.join(map(str, _TAPS))} taps on every axis only"
    if tile_size(p) is None:
        return f"winograd: no tile keeps a {'x'.join(map(str, p.T))} {p.dtype} kernel accurate"
    return None


def _kron(a: np.ndarray, d: int) -> np.ndarray:
    out = a
    for _ in range(d - 1):
        out = np.kron(out, a)
    return out


def prepare(p: Problem, wc: np.ndarray, budget: int | None = None) -> WinogradState:
    """Transform the canonical filters ``(K, C, P, *T)`` once (in float64, then the
    compute dtype): ``G g G^T`` per filter, channel and pair."""
    m, r, d = tile_size(p), p.T[0], p.ndim
    at, g, bt = winograd_matrices(m, r)
    w = wc.astype(np.float64)
    if d == 1:
        u = np.einsum("ai,kcpi->pack", g, w)
    else:
        u = np.einsum("ai,bj,kcpij->pabck", g, g, w)
    u = np.ascontiguousarray(u.reshape(p.P, (m + r - 1) ** d, p.C, p.K), dtype=p.dtype)
    dt = p.dtype
    fast = None
    if _compiled_transforms(p):
        at6 = np.zeros((6, 6))
        at6[:m] = at
        fast = (bt.astype(dt), at6.astype(dt))
    kron_bt, kron_at = _kron(bt, d).astype(dt), _kron(at, d).astype(dt)
    return WinogradState(m, r, kron_bt, kron_at, u, wc.copy(), fast, budget)


def _compiled_transforms(p: Problem) -> bool:
    """Whether ``p``'s transforms run compiled: 2-D tiles of 6 x 6 samples (F(4x4, 3x3),
    F(2x2, 5x5)) with at least ``_COMPILED_MIN`` channels and filters, numba on
    (``compiled.enabled()``)."""
    return (
        p.ndim == 2 and min(p.C, p.K) >= _COMPILED_MIN and _layout(p)[1] == 6 and compiled.enabled()
    )


def _tiles(p: Problem, m: int) -> tuple[int, ...]:
    """Tiles per sliding axis."""
    return tuple(-(-o // m) for o in p.O)


def _layout(p: Problem) -> tuple[int, int, tuple[int, ...]]:
    """``(m, alpha, need)``: the tile, its input span, and the padded input's extent per
    sliding axis (whole tiles). (The cost model may ask about a problem the method does
    not take: a tile of 2 then.)"""
    m = tile_size(p) or 2
    alpha = m + p.T[0] - 1
    return m, alpha, tuple(t * m + alpha - m for t in _tiles(p, m))


def _chunk_rows(p: Problem, m: int, b: int) -> tuple[int, int]:
    """``(items, tile rows)`` per chunk: whole items when one has fewer tiles than a
    chunk takes, else rows of tiles (the first sliding axis) of one item. A chunk takes
    ``_CHUNK_POSITIONS / alpha^d`` tiles, or fewer (down to ``_MIN_CHUNK_TILES``) so
    that every thread gets two chunks."""
    tiles = _tiles(p, m)
    per_item = prod(tiles)
    spread = (b * p.P * per_item) // (2 * get_workers())
    most = _CHUNK_POSITIONS // (m + p.T[0] - 1) ** p.ndim
    want = max(min(most, spread), _MIN_CHUNK_TILES)
    if per_item >= want:
        row = per_item // tiles[0]
        return 1, max(1, min(tiles[0], want // row))
    return max(1, min(b, want // per_item)), tiles[0]


def _padded_input(p: Problem, xc: np.ndarray) -> np.ndarray:
    """The chunk ``(b, C, P, *S)`` padded as the mode asks and then with zeros to whole
    tiles, channels last: ``(b, P, *need, C)`` in a work buffer. Constant padding is
    written straight into the buffer (no padded copy first)."""
    d = p.ndim
    need = _layout(p)[2]
    b = xc.shape[0]
    buf = work_buffer((b, p.P, *need, p.C), p.dtype, "winograd_input")
    src = xc.transpose(0, 2, *range(3, 3 + d), 1)  # (b, P, *S, C), a view
    if p.padding == "constant" and all(g.hi >= 0 for g in p.geoms):
        inner = tuple(slice(g.lo, g.lo + g.n) for g in p.geoms)
        within = [slice(0, g.padded) for g in p.geoms]

        def fill(n: int) -> None:  # one item: cval around the data, zeros to whole tiles
            for i, g in enumerate(p.geoms):
                lead, trail = (n, slice(None), *within[:i]), tuple(within[i + 1 :])
                buf[(*lead, slice(0, g.lo), *trail)] = p.cval
                buf[(*lead, slice(g.lo + g.n, g.padded), *trail)] = p.cval
                buf[(n, slice(None), *(slice(None),) * i, slice(g.padded, None))] = 0
            np.copyto(buf[(n, slice(None), *inner)], src[n])

        parallel_for(fill, range(b))
        return buf
    padded = pad_sliding(xc, p.geoms, p.padding, p.cval, first_axis=3)
    region = tuple(slice(0, s) for s in padded.shape[3:])
    for i, s in enumerate(padded.shape[3:]):
        buf[(*(slice(None),) * (2 + i), slice(s, None))] = 0
    np.copyto(buf[(slice(None), slice(None), *region)], padded.transpose(0, 2, *range(3, 3 + d), 1))
    return buf


def compute(
    p: Problem,
    st: WinogradState,
    xc: np.ndarray,
    k0: int,
    k1: int,
    out: np.ndarray | None = None,
    nonfinite: set | None = None,
) -> np.ndarray:
    """The block ``(b, k1 - k0, P, *O)`` for the canonical input chunk ``xc``, written into
    ``out`` when given. Items whose results are not all finite: with finite data (a
    transform overflowed near the dtype's largest values) redone here by the direct
    method; with a NaN or Inf in the data, added to ``nonfinite`` (the plan redoes
    them)."""
    b, k, d = xc.shape[0], k1 - k0, p.ndim
    block = out if out is not None else np.empty((b, k, p.P, *p.O), p.dtype)
    if block.size == 0:
        return block
    m = st.m
    # (a plan unpickled where numba is missing runs the matrix products)
    fast = st.compiled_transforms if compiled.enabled() else None
    view = xc.transpose(0, 2, *range(3, 3 + d), 1)  # (b, P, *S, C)
    # the tiles straight from the chunk (the compiled transforms: channels contiguous)
    direct_read = _reads_input(p, m) and (fast is None or compiled.kernels().flat_input(view))
    source = view if direct_read else _padded_input(p, xc)
    tiles = _tiles(p, m)
    items, rows = _chunk_rows(p, m, b)
    chunks = [
        (pi, (n0, min(b, n0 + items)), (t0, min(tiles[0], t0 + rows)))
        for pi in range(p.P)
        for n0 in range(0, b, items)
        for t0 in range(0, tiles[0], rows)
    ]
    found: list[set] = []

    def run(chunk) -> None:
        bad = _chunk(p, st, source, direct_read, fast, block, k0, k1, *chunk)
        if bad:
            found.append(bad)

    # The chunks' GEMMs are small ((tiles, C) @ (C, k)): one BLAS thread per chunk, the
    # chunks on the threads (3x3 64 -> 64, 512 tiles: 198 GFLOP/s against 126 with a
    # 2-thread BLAS per GEMM)
    with blas_threads(1):
        parallel_for(run, chunks)
    flagged = set().union(*found)
    finite = {i for i in flagged if np.isfinite(p.cval) and _all_finite(xc[i])}
    if finite:  # overflowed in a transform: the direct method's answer
        room = _redo_room(p, st, b, k)
        exact = remembered(st, "direct", lambda: direct.prepare(p, st.kernel, room))
        for i in sorted(finite):
            direct.compute(p, exact, xc[i : i + 1], k0, k1, out=block[i : i + 1])
    if nonfinite is not None:
        nonfinite.update(flagged - finite)
    return block


def _reads_input(p: Problem, m: int) -> bool:
    """Whether the tiles come from the input itself, not from a padded copy (the matrix
    products gather them; the compiled transforms read them in place where the channels
    are adjacent): 'valid' windows (nothing to pad), every output axis at least a tile
    long. Each axis's last tile, which would reach past the input, is then read
    ``m`` outputs before the output's end and gives only the outputs the others do not
    (3x3 64->64 on 8 x 56x56, float32, 2 threads: no 6.9 MB padded copy, 0.6 ms of a 7.6
    ms call; the gather reading the input instead is slower, the call 1-3 % faster)."""
    return all(g.lo == 0 and g.hi <= 0 for g in p.geoms) and min(p.O) >= m


def _unpadded(p: Problem) -> bool:
    """Whether a call of ``p`` takes its tiles from the input itself, as the estimates
    see it (``compute`` decides on the data): :func:`_reads_input`, and with the
    compiled transforms channels adjacent in memory."""
    return _reads_input(p, _layout(p)[0]) and (not _compiled_transforms(p) or p.x_channels_adjacent)


def _gather(p, source, shifted, items, pi, rows, m, out) -> None:
    """Copy a chunk's tiles from ``source`` ``(b, P, *extent, C)`` into ``out``
    ``(*alpha, items, rows, *tiles[1:], C)``, the transform's axes first: runs of tiles
    ``m`` apart, one strided view each, and when ``shifted`` the last tile of each axis
    whose output ``O`` is not whole tiles on its own, starting at ``O - m`` (inside the
    input: it ends at ``O + r - 1``).

    >>> from batchconv.problem import make_problem
    >>> p = make_problem((1, 9), "f8", (1, 3), "f8")  # 7 outputs: tiles of 4 at 0 and 3
    >>> out = np.empty((6, 1, 2, 1))
    >>> _gather(p, np.arange(9.0).reshape(1, 1, 9, 1), True, (0, 1), 0, (0, 2), 4, out)
    >>> out[:, 0, :, 0].T.tolist()
    [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]
    """
    d, alpha = p.ndim, m + p.T[0] - 1
    x = source[items[0] : items[1], pi]  # (b, *extent, C)
    runs = []  # per axis: (first, end, start): tiles first..end-1 of out, read from start
    for i, (n, o) in enumerate(zip(_tiles(p, m), p.O)):
        lo, hi = rows if i == 0 else (0, n)
        last = n - 1 if shifted and o % m else n  # the shifted tile, else none
        axis = [(lo, min(hi, last), lo * m)] if lo < min(hi, last) else []
        if last < n and lo <= last < hi:
            axis.append((last, last + 1, o - m))
        runs.append([(a - lo, e - lo, start) for a, e, start in axis])
    s = x.strides
    for pick in product(*runs):
        corner = x[(slice(None), *(slice(start, None) for _, _, start in pick))]
        shape = (x.shape[0], *(e - a for a, e, _ in pick), p.C, *(alpha,) * d)
        strides = (s[0], *(t * m for t in s[1 : 1 + d]), s[1 + d], *s[1 : 1 + d])
        tiles = as_strided(corner, shape, strides, writeable=False)
        region = out[(*(slice(None),) * (d + 1), *(slice(a, e) for a, e, _ in pick))]
        np.copyto(region, tiles.transpose(*range(2 + d, 2 + 2 * d), 0, *range(1, 2 + d)))


def _all_finite(a: np.ndarray) -> bool:
    """No NaN or Inf in the real array ``a``, without a boolean array of its size (its
    largest and smallest values propagate them)."""
    return bool(np.isfinite(a.max()) and np.isfinite(a.min())) if a.size else True


def _redo_room(p: Problem, st: WinogradState, b: int, k: int) -> int | None:
    """The budget of the direct method redoing an item whose transforms overflowed: the
    plan's room less this ``(b, k)`` block's workspace (its buffers stay); at least 64
    KiB (its tiles then hold a few windows each). Unbudgeted plans: None. (Unbudgeted,
    the redo of a 300x300 16-channel float64 item took 20 MiB beyond a 4 MiB budget.
    The direct method's filter copies are not taken off as well: made anyway, they
    would only shrink its tiles, to one window each for 256 -> 256 channels. Its tiles
    fit, its filter copies are made beyond the budget, and the redo is slower than an
    unbudgeted one: 4 x 56x56, 256 -> 256 channels, memory=16 MiB, one item near the
    largest float32: 0.74-0.76 s a call against 0.11 s; this path is rare.)"""
    room = getattr(st, "room", None)  # (a plan pickled before it was kept)
    if room is None:
        return None
    left = room - workspace_bytes(p, b, k, room)
    return max(left, 64 << 10)


def _chunk(p, st, source, shifted, fast, block, k0, k1, pi, items, rows) -> set:
    """One chunk of tiles: gather, transform, GEMMs against the transformed filters,
    transform back, write (the compiled transforms ``fast`` read ``source`` in place and
    write the block themselves; ``shifted``: ``source`` is the unpadded input, its last
    tiles moved back, see ``_gather``). Returns the items (of the block) whose outputs
    in it are not all finite."""
    d, k, m = p.ndim, k1 - k0, st.m
    A, mm = st.alpha**d, m**d
    tiles = _tiles(p, m)
    (n0, n1), (t0, t1) = items, rows
    count = (n1 - n0) * (t1 - t0) * prod(tiles[1:])  # tiles in this chunk
    # this thread's buffers
    v = work_buffer((A, count, p.C), p.dtype, "winograd_transformed")
    products = work_buffer((A, count, k), p.dtype, "winograd_products")
    # a NaN or Inf meets zeros in the transforms (0 * Inf), finite data near the dtype's
    # largest values may overflow: the items are redone (compute), without a warning
    # here (errstate is per thread: this one's)
    last = tuple(o - m for o in p.O) if shifted else None  # the last tiles' starts
    with np.errstate(invalid="ignore", over="ignore"):
        if fast is not None:
            compiled.kernels().winograd_in6(source, fast[0], items, pi, rows, m, v, last)
        else:
            shape = (*(st.alpha,) * d, n1 - n0, t1 - t0, *tiles[1:], p.C)
            gathered = work_buffer(shape, p.dtype, "winograd_tiles")
            _gather(p, source, shifted, items, pi, rows, m, gathered)
            np.matmul(st.data_transform, gathered.reshape(A, count * p.C), out=v.reshape(A, -1))
        np.matmul(v, st.filters[pi, :, :, k0:k1], out=products)
        if fast is not None:
            target = block[n0:n1, :, pi]
            finite = compiled.kernels().winograd_out6(
                products, fast[1], m, items, rows, target, last
            )
            if finite is not None:
                return set((n0 + np.flatnonzero(~finite)).tolist())
        y = work_buffer((mm, count * k), p.dtype, "winograd_outputs")
        np.matmul(st.output_transform, products.reshape(A, count * k), out=y)
        _scatter(p, y, block, items, pi, rows, m, tiles, shifted)
        if np.isfinite(y.sum()):  # (in cache; NaN/Inf, or an overflow of the sum)
            return set()
    bad = ~np.isfinite(y.reshape(mm, n1 - n0, -1)).all(axis=(0, 2))
    return set((n0 + np.flatnonzero(bad)).tolist())


def _scatter(p, y, block, items, pi, rows, m, tiles, shifted=False) -> None:
    """Write one chunk's outputs ``y`` ``(m^d, items * rows * rest * k)`` into the block
    ``(b, k, P, *O)``: each tiled axis in two parts, its whole tiles and the last tile's
    outputs that fall inside the output (its first ones; its last ones when the tile was
    ``shifted`` back to end at the output's end, see ``_gather``), each written through
    a view of the block."""
    d = p.ndim
    nb, nr = items[1] - items[0], rows[1] - rows[0]
    k = block.shape[1]
    # y as (nb, k, rows, m, [tiles1, m]): the block's order with the tile offsets inside
    y = y.reshape(*(m,) * d, nb, nr, *tiles[1:], k)
    y = y.transpose(1, 3, 2, 0) if d == 1 else y.transpose(2, 5, 3, 0, 4, 1)
    start = rows[0] * m
    target = block[items[0] : items[1], :, pi, start : min(rows[1] * m, p.O[0])]
    parts = []  # per axis: (tiles, offsets) of the whole tiles, then of the last one
    for n in target.shape[2:]:
        whole, rest = divmod(n, m)
        parts.append([(slice(0, whole), slice(0, m))] * (whole > 0))
        if rest:
            offsets = slice(m - rest, m) if shifted else slice(0, rest)
            parts[-1].append((slice(whole, whole + 1), offsets))
    s = target.strides
    for pick in product(*parts):
        src = y[(slice(None), slice(None), *(sl for pair in pick for sl in pair))]
        corner = target[(Ellipsis, *(slice(t.start * m, None) for t, _ in pick))]
        strides = (s[0], s[1], *(x for st in s[2:] for x in (st * m, st)))
        np.copyto(as_strided(corner, src.shape, strides, writeable=True), src)


def exact_method(p: Problem, device: str | None = None):
    """The method that redoes what a NaN or Inf spread over (``Plan._redo_nonfinite``):
    direct."""
    return direct


def fuses_reduce(p: Problem) -> bool:
    """Blocks are reduced whole by the planner."""
    return False


def _sizes(p: Problem, b: int, k: int) -> tuple[int, int, int, int]:
    """Elements of one ``(b, k)`` block's temporaries: the padded input, the gathered
    and transformed tiles (each), the products, and the outputs of a chunk."""
    m, alpha, need = _layout(p)
    d = p.ndim
    items, rows = _chunk_rows(p, m, b)
    most = items * rows * prod(_tiles(p, m)[1:])
    return b * p.P * prod(need) * p.C, alpha**d * most * p.C, alpha**d * most * k, m**d * most * k


def workspace_bytes(p: Problem, b: int, k: int, budget: int | None = None) -> int:
    """Peak bytes of temporaries for one ``(b, k)`` block: the channels-last padded
    input (and the padded copy a non-constant mode makes first; neither where the tiles
    come from the input itself, ``_reads_input``: the matrix products, or the compiled
    transforms on channels-last data), and on every thread with a chunk its gathered
    (not by the compiled transforms) and transformed tiles, products and outputs (the
    compiled output transform writes the block directly where the filters are
    innermost, else it needs them too)."""
    padded, tiles, products, outputs = _sizes(p, b, k)
    r = p.dtype.itemsize
    extra = 0 if p.padding == "constant" else b * p.C * p.P * prod(g.padded for g in p.geoms)
    if _unpadded(p):
        padded = extra = 0
    m = _layout(p)[0]
    items, rows = _chunk_rows(p, m, b)
    chunks = p.P * -(-b // items) * -(-_tiles(p, m)[0] // rows)
    threads = min(get_workers(), chunks)
    copies = 1 if _compiled_transforms(p) else 2  # the transformed tiles (and gathered)
    return r * (padded + extra + threads * (copies * tiles + products + outputs))


def state_bytes(p: Problem) -> int:
    """The transformed filters ``(P, alpha^d, C, K)`` and the canonical ones."""
    alpha = _layout(p)[1]
    return p.P * (alpha**p.ndim + prod(p.T)) * p.C * p.K * p.dtype.itemsize


def flops(p: Problem) -> float:
    """The GEMMs of the elementwise stage and the two transforms (counted as Kronecker
    products)."""
    fl = _flop_parts(p)
    return fl["gemm"] + fl["transform"]


def _flop_parts(p: Problem) -> dict[str, float]:
    m, alpha = _layout(p)[:2]
    A, mm = alpha**p.ndim, m**p.ndim
    tiles = p.B * p.P * prod(_tiles(p, m))
    return {
        "gemm": 2.0 * A * tiles * p.C * p.K,
        "transform": 2.0 * A * tiles * (A * p.C + mm * p.K),
    }


def cost_features(p: Problem, device: str | None = None) -> tuple[str, dict[str, float]]:
    """The ``"winograd"`` model: its GEMM flops, the transforms' flops, and the bytes its
    copies move (the padded input, the gathered tiles, the products, the outputs), as
    the matrix-product transforms do them (the model was fitted on those; the padded
    input is counted for 'valid' problems too, whose tiles they gather from the input
    itself: that gather, reading the input rather than a warm buffer, costs most of what
    the copy saved, 1-3 % of a call net). Where the transforms run compiled, the
    transforms' flops and the bytes count ``_COMPILED_COST`` of that (measured, see
    there), without the padded copy where they read a 'valid' channels-last input in
    place."""
    m, alpha, need = _layout(p)
    per_item, A = prod(_tiles(p, m)), alpha**p.ndim
    fast = _compiled_transforms(p)
    # the padded copy (not where the compiled transforms read the input in place), the
    # gathered tiles, the products, the outputs
    padded = 0 if fast and _unpadded(p) else prod(need)
    moved = p.B * p.P * (p.C * padded + A * per_item * (p.C + p.K) + p.K * prod(p.O))
    fl = _flop_parts(p)
    scale = _COMPILED_COST if fast else 1.0
    return "winograd", {
        "calls": 1.0,
        f"gemm_flops_{p.precision}": fl["gemm"],
        "transform_flops": fl["transform"] * scale,
        "moved_bytes": float(moved * p.dtype.itemsize) * scale,
    }


def describe(p: Problem, st: WinogradState, budget: int | None, device: str | None = None) -> str:
    """The tile and the transforms."""
    m, r = st.m, st.r
    tile = "x".join([str(m)] * p.ndim)
    taps = "x".join([str(r)] * p.ndim)
    how = "compiled (numba)" if st.compiled_transforms is not None else "matrix products"
    return (
        f"winograd: F({tile}, {taps}) tiles, {st.alpha**p.ndim} GEMMs over the "
        f"transformed positions per chunk, transforms by {how}; filter transforms kept in "
        "the plan"
    )
