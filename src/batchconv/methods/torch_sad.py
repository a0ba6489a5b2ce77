"""SAD on torch tensors, on their own device: what ``method="torch_direct"`` computes
for ``metric="sad"`` (an absolute value has no convolution or FFT form).

``out[n, k, i] = sum_j |x[n, i * stride + j * dilation] - w[k, j]|`` over the window
(channels included). Two kernels, both with memory O(output) beyond the padded chunk:

* on CUDA, with Triton installed and up to three sliding axes: a Triton kernel
  (``_triton_kernels.py``), stride and dilation native, one program per output tile;
  should Triton fail to compile or launch it (an old GPU, a broken toolchain), a
  warning says so and plain torch takes over for the rest of the process;
* otherwise plain torch ops: one pass per tap over the block, the channels summed per
  tap (a ``(b, k, C, P, *O)`` temporary, counted by ``workspace_bytes``).

The tests run the Triton kernel on CPU tensors under Triton's interpreter:
``TRITON_INTERPRET=1`` (Triton's own switch, read when Triton is imported) together with
``BATCHCONV_TRITON_INTERPRET=1`` (ours, so that users debugging their own kernels do not
get an interpreted SAD).

Both sum each tap row (the taps along the last axis) in the compute dtype and add the
rows in float64, as the CPU kernels (``methods/sad.py``) do.

>>> import batchconv as bc
>>> torch = __import__("pytest").importorskip("torch")
>>> bc.correlate(torch.tensor([[1.0, 2.0, 4.0]]), torch.tensor([1.0, 1.0]), metric="sad",
...              method="torch_direct")
tensor([[1., 4.]])
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from itertools import product
from math import prod

from ..problem import Problem
from ..tensors import is_cuda, is_out_of_memory, pad_sliding
from ..xp import has_module

__all__ = ["TorchSAD", "uses_triton", "INTERPRET"]

INTERPRET = (
    os.environ.get("BATCHCONV_TRITON_INTERPRET", "") == "1"
    and os.environ.get("TRITON_INTERPRET", "") == "1"
)
_MAX_GRID_K = 65535  # CUDA's limit on the grid's second axis: filters per launch
_triton_failed = False  # set when Triton could not compile or launch the kernel


@dataclass
class TorchSADState:
    kernel: object  # the canonical filters (K, C, P, *T), contiguous, on the device


# the plain-torch SAD (a pass over the block per tap) on the CPU, measured on the dev
# machine; on CUDA (not measured: no GPU here) the Triton kernel at about 1e12 terms a
# second, the plain-torch passes at memory speed
_TERM_CPU = 1e-9
_TERM_CUDA = 2e-11
_TERM_TRITON = 1e-12
_CALL = 1e-4
_CALL_CUDA = 3e-5


def uses_triton(p: Problem, device: str | None) -> bool:
    """True when ``p`` runs on the Triton kernel on ``device``."""
    return (
        p.ndim <= 3
        and not _triton_failed
        and has_module("triton")
        and (is_cuda(device) or (INTERPRET and device == "cpu"))
    )


class TorchSAD:
    """The SAD method on torch tensors on ``device`` (the method interface of
    ``methods/__init__.py``; the kernel, and so the temporaries, depend on the device)."""

    def __init__(self, device: str | None):
        self.device = device

    def prepare(self, p: Problem, wc, budget: int | None = None) -> TorchSADState:
        return TorchSADState(wc.contiguous())

    def fuses_reduce(self, p: Problem) -> bool:
        """The planner reduces each block."""
        return False

    def estimate(self, p: Problem, device: str | None = None) -> float:
        """Estimated seconds of one call on ``device`` (the cost model's SAD row)."""
        terms = p.B * p.K * p.P * prod(p.O) * p.window_size
        if uses_triton(p, device) and is_cuda(device):
            return _CALL_CUDA + terms * _TERM_TRITON
        return _CALL + terms * (_TERM_CUDA if is_cuda(device) else _TERM_CPU)

    def describe(self, p: Problem, st: TorchSADState, budget: int | None, device=None) -> str:
        """The kernel that runs on ``device``."""
        how = (
            "SAD Triton kernel, one program per output tile"
            if uses_triton(p, device)
            else "SAD in plain torch ops, one pass per tap"
        )
        return f"torch_direct: {how} on {device}"

    def workspace_bytes(self, p: Problem, b: int, k: int, budget: int | None = None) -> int:
        """The padded chunk (and its contiguous copy, for the Triton kernel); for the
        plain-torch kernel, the padded chunk where there is padding, the float64
        accumulator, the row sum, and the per-tap difference ``(b, k, C, P, *O)`` with
        its channel sum (torch adds the row to the accumulator without a cast copy)."""
        r = p.dtype.itemsize
        padded = b * p.C * p.P * prod(g.padded for g in p.geoms) * r
        outs = b * k * p.P * prod(p.O)
        if uses_triton(p, self.device):
            return 2 * padded + outs * r  # + a contiguous block for a strided destination
        copy = padded if any(g.lo or g.hi for g in p.geoms) else 0
        return copy + outs * (8 + (p.C + 2) * r)

    def compute(self, p: Problem, st: TorchSADState, xc, k0: int, k1: int, out=None):
        """The block ``(b, k1 - k0, P, *O)`` of sums of absolute differences."""
        import torch

        b, k = xc.shape[0], k1 - k0
        if out is None or not out.is_contiguous():
            block = torch.empty((b, k, p.P, *p.O), dtype=st.kernel.dtype, device=xc.device)
        else:
            block = out
        if block.numel() and p.window_size == 0:
            block.zero_()
        elif block.numel():
            xp = pad_sliding(xc, p)
            if not (
                uses_triton(p, str(xc.device))
                and _triton_sad(p, xp.contiguous(), st.kernel[k0:k1], block)
            ):
                block.copy_(_torch_sad(p, xp, st.kernel[k0:k1]))
        if out is not None and block is not out:
            out.copy_(block)
            return out
        return block


def _triton_sad(p: Problem, xp, kern, block) -> bool:
    """The Triton kernel on 3-D views (missing leading sliding axes have length 1);
    False (after a warning, once) when Triton cannot compile or launch it."""
    global _triton_failed
    import torch

    from .._triton_kernels import sad_kernel, tile

    lift = 3 - p.ndim
    b = xp.shape[0]
    x3 = xp.reshape(*xp.shape[:3], *([1] * lift), *xp.shape[3:])
    w3 = kern.reshape(*kern.shape[:3], *([1] * lift), *kern.shape[3:])
    geoms = [None] * lift + list(p.geoms)
    s = [1 if g is None else g.stride for g in geoms]
    d = [1 if g is None else g.dilation for g in geoms]
    T = [1] * lift + list(p.T)
    outs = [1] * lift + list(p.O)
    bh, bw = tile(outs[1])
    tiles_h, tiles_w = -(-outs[1] // bh), -(-outs[2] // bw)
    # Triton launches on the current CUDA device, not the tensors' (cuda:1 with cuda:0
    # current failed, and the failure turned the kernel off for the process)
    on_device = torch.cuda.device(x3.device) if x3.is_cuda else contextlib.nullcontext()
    try:
        with on_device:
            for k0 in range(0, w3.shape[0], _MAX_GRID_K):
                k1 = min(k0 + _MAX_GRID_K, w3.shape[0])
                dest = block[:, k0:k1] if k1 - k0 < w3.shape[0] else block
                tmp = dest if dest.is_contiguous() else dest.contiguous()
                grid = (b * p.P * outs[0] * tiles_h * tiles_w, k1 - k0)
                sad_kernel()[grid](
                    x3,
                    w3[k0:k1],
                    tmp,
                    p.C,
                    p.P,
                    *x3.shape[3:],
                    *T,
                    *outs,
                    k1 - k0,
                    *s,
                    *d,
                    tiles_h,
                    tiles_w,
                    BLOCK_H=bh,
                    BLOCK_W=bw,
                )
                if tmp is not dest:
                    dest.copy_(tmp)
    except Exception as e:  # noqa: BLE001 - compilation, an unsupported GPU, a toolchain
        if isinstance(e, MemoryError) or is_out_of_memory(e):  # the block loop retries
            raise
        _triton_failed = True
        warnings.warn(
            f"batchconv: the Triton SAD kernel failed ({type(e).__name__}: "
            f"{e}); SAD runs in plain torch ops from now on",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


def _torch_sad(p: Problem, xp, kern):
    """Plain torch: one pass per tap, each tap row summed in the compute dtype and added
    to a float64 accumulator."""
    import torch

    b, k = xp.shape[0], kern.shape[0]
    acc = torch.zeros((b, k, p.P, *p.O), dtype=torch.float64, device=xp.device)
    lead_taps = product(*(range(m) for m in p.T[:-1]))
    last = p.T[-1] if p.ndim else 1
    for lead in lead_taps:
        row = None
        for j in range(last):
            tap = (*lead, j)[: p.ndim]
            sl = tuple(
                slice(t * g.dilation, t * g.dilation + (g.out - 1) * g.stride + 1, g.stride)
                for t, g in zip(tap, p.geoms, strict=True)
            )
            xs = xp[(slice(None),) * 3 + sl]  # (b, C, P, *O)
            wv = kern[(slice(None),) * 3 + tap].reshape(1, k, p.C, p.P, *([1] * p.ndim))
            term = (xs.unsqueeze(1) - wv).abs_().sum(dim=2)  # (b, k, P, *O)
            if row is None:
                row = term
            else:
                row.add_(term)
            del term
        acc += row
        del row
    return acc
