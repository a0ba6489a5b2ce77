"""Triton kernels for CUDA tensors (imported only when Triton is installed and a CUDA
plan computes SAD; see ``methods/torch_sad.py``).

``sad_3d``: sums of absolute differences over up to three sliding axes (fewer are given
as axes of length 1), stride and dilation per axis, summed and paired axes, a bank.
One program computes a ``BLOCK_H x BLOCK_W`` tile of output rows and columns of one
(item, paired index, output depth) for one filter: it walks the taps, reading the tile's
inputs (from L1/L2: neighbouring tiles share them) and the tap's weight, so memory is
the result alone. Each tap row (the taps along the last axis) is summed in the data's
dtype and the rows are added in float64, as the CPU kernels do.

With ``TRITON_INTERPRET=1`` in the environment (before Triton is imported) the kernel
runs under Triton's interpreter on CPU tensors: the tests check it that way without a
GPU (``tests/test_torch_metrics.py``, in a subprocess, with
``BATCHCONV_TRITON_INTERPRET=1``).
"""

from __future__ import annotations

from functools import lru_cache

import triton
import triton.language as tl

__all__ = ["sad_kernel", "tile"]


def tile(rows: int) -> tuple[int, int]:
    """Output rows and columns per program: 8 x 32 (256 outputs, 4 warps); a single row
    of 256 when the output has one row (1-D problems), so no lane idles."""
    return (1, 256) if rows == 1 else (8, 32)


def _sad_3d(
    x_ptr,
    w_ptr,
    out_ptr,
    C,
    P,
    D,
    H,
    W,
    TD,
    TH,
    TW,
    OD,
    OH,
    OW,
    K,
    sd,
    sh,
    sw,
    dd,
    dh,
    dw,
    tiles_h,
    tiles_w,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """x (b, C, P, D, H, W), w (K, C, P, TD, TH, TW), out (b, K, P, OD, OH, OW), all
    C-contiguous; grid (b * P * OD * tiles_h * tiles_w, K)."""
    pid = tl.program_id(0).to(tl.int64)
    kk = tl.program_id(1).to(tl.int64)
    tile_w = pid % tiles_w
    rest = pid // tiles_w
    tile_h = rest % tiles_h
    rest = rest // tiles_h
    od = rest % OD
    rest = rest // OD
    pp = rest % P
    bb = rest // P
    oh = tile_h * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    ow = tile_w * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    inside = (oh < OH) & (ow < OW)
    # clamped coordinates: masked lanes read a valid address
    row0 = tl.minimum(oh, OH - 1) * sh
    col0 = tl.minimum(ow, OW - 1) * sw
    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float64)
    for c in range(C):
        x_item = ((bb * C + c) * P + pp) * D
        w_item = ((kk * C + c) * P + pp) * TD
        for td in range(TD):
            x_plane = (x_item + od * sd + td * dd) * H
            for th in range(TH):
                x_row = x_ptr + (x_plane + row0 + th * dh) * W + col0
                w_row = w_ptr + ((w_item + td) * TH + th) * TW
                row = tl.zeros([BLOCK_H, BLOCK_W], dtype=x_ptr.dtype.element_ty)
                for tw in range(TW):
                    wv = tl.load(w_row + tw)
                    xv = tl.load(x_row + tw * dw, mask=inside, other=0)
                    row += tl.abs(xv - wv)
                acc += row.to(tl.float64)
    dest = out_ptr + (((bb * K + kk) * P + pp) * OD + od) * OH * OW + oh * OW + ow
    tl.store(dest, acc.to(out_ptr.dtype.element_ty), mask=inside)


@lru_cache(maxsize=1)
def sad_kernel():
    """The SAD kernel (compiled by Triton on first launch; under Triton's interpreter when
    ``TRITON_INTERPRET=1`` was set before Triton was imported)."""
    return triton.jit(_sad_3d)
