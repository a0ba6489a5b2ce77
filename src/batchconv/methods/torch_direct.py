"""The torch direct method: ``torch.nn.functional.conv1d/2d/3d`` (cuDNN on CUDA, oneDNN
on the CPU) on the tensors' own device.

The canonical problem maps onto a grouped convolution: the paired axes are the groups,
``x`` (b, C, P, *S) is read as (b, P*C, *S) and the filters (K, C, P, *T) are stored as
(P*K, C, *T), so the convolution's output (b, P*k, *O) is the block (b, k, P, *O) after
a reshape. Stride and dilation are the convolution's own; symmetric zero padding is its
``padding`` argument (the convolution skips a stride's unused tail itself; a longer
one, only in pieces of a Dask array, is sliced off), any other padding is applied first
(``tensors.pad_sliding``).
Up to three sliding axes (what torch provides); more go to ``torch_fft``. For
``metric="sad"`` this method's name means ``methods/torch_sad.py`` (any number of axes).

Chunks split the batch and the bank (see the planner); ``workspace_bytes`` counts the
padded copy, the grouped input and the convolution's own output.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from ..metrics import metric_of
from ..problem import Problem
from ..tensors import is_cuda, pad_sliding
from . import direct

__all__ = [
    "applies",
    "prepare",
    "compute",
    "workspace_bytes",
    "fuses_reduce",
    "grouped_input",
    "convolve_grouped",
    "as_block",
    "sad_kernel",
    "state_bytes",
    "flops",
    "cost_features",
    "joins_numpy",
    "describe",
]

# what the method is (see methods/__init__.py)
NAME = "torch_direct"
ON_TENSORS = True
STANDS_FOR = "direct"  # method="direct" with CUDA tensors
COMPUTES_SAD = True
EXACT_FOR_INTEGERS = True
SPREADS_NONFINITE = False


@dataclass
class TorchDirectState:
    """The filters as grouped convolution weights ``(P, K, C, *T)`` on the device, and
    the convolution's geometry (the same for every batch size)."""

    weight: object
    padding: tuple[int, ...] | None  # symmetric zero padding, None: padded first
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    # the whole bank as the convolution's weight (P*K, C, *T), and the convolution
    # (worked out once: a small layer on a GPU takes tens of microseconds)
    bank_weight: object = None
    conv: object = None


def sad_kernel(device: str | None = None):
    """The kernel that computes the metrics with no product form (sad) on ``device``:
    ``torch_sad.py``."""
    from .torch_sad import TorchSAD

    return TorchSAD(device)


def applies(p: Problem, device: str | None = None) -> str | None:
    """None when the method can compute ``p``, else why not."""
    if not metric_of(p.metric).product_form:  # torch_sad.py: any number of sliding axes
        return None
    if not 1 <= p.ndim <= 3:
        return f"{p.ndim} sliding axes (torch convolutions take 1 to 3)"
    return None


def prepare(p: Problem, wc, budget: int | None = None) -> TorchDirectState:
    """Keep the canonical filters ``wc`` (a tensor (K, C, P, *T)) as (P, K, C, *T)."""
    import torch

    weight = wc.transpose(0, 2).transpose(1, 2).contiguous()
    conv = (
        (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[
            p.ndim - 1
        ]
        if 1 <= p.ndim <= 3
        else None
    )
    return TorchDirectState(
        weight,
        _symmetric_zero_padding(p),
        tuple(g.stride for g in p.geoms),
        tuple(g.dilation for g in p.geoms),
        weight.reshape(p.P * p.K, p.C, *p.T),
        conv,
    )


def _symmetric_zero_padding(p: Problem) -> tuple[int, ...] | None:
    """The convolution's own padding where it gives the mode: zero padding, the same on
    both ends of each axis, or none at the start and a trimmed end (a 'valid' stride
    that leaves the last samples unused, which the convolution skips)."""
    if (
        p.padding == "constant"
        and p.cval == 0
        and all(g.lo == g.hi or (g.lo == 0 and g.hi < 0) for g in p.geoms)
    ):
        return tuple(g.lo for g in p.geoms)
    return None


def grouped_input(p: Problem, st: TorchDirectState, xc):
    """The convolution's input ``(b, P*C, *S')`` for the canonical chunk ``xc`` (a view
    of it where no padding is applied first)."""
    if st.padding is None:
        src = pad_sliding(xc, p)
    elif any(g.hi <= -g.stride for g in p.geoms):
        # more unused tail samples than the stride's remainder (which the convolution
        # skips by itself, so x keeps its layout: a sliced channels-last view made
        # oneDNN return NCHW, and the result a copy): a slice, not a copy
        src = xc[(slice(None),) * 3 + tuple(slice(0, g.n + min(g.hi, 0)) for g in p.geoms)]
    else:
        src = xc
    grouped = src.transpose(1, 2).reshape(xc.shape[0], p.P * p.C, *src.shape[3:])
    if grouped.shape[0] == 1:
        # a batch of one: the reshape may give its axis any stride, and torch reads a
        # channels-last input as one only when the batch stride is the largest (else
        # oneDNN returned NCHW and the NHWC result was a copy: 7x7 stem 1.6 -> 4.5 ms)
        span = max((st * n for st, n in zip(grouped.stride(), grouped.shape)), default=1)
        grouped = grouped.as_strided(
            grouped.shape, (span, *grouped.stride()[1:]), grouped.storage_offset()
        )
    return grouped


def convolve_grouped(p: Problem, st: TorchDirectState, grouped, k0: int, k1: int):
    """The convolution's output ``(b, P*k, *O)`` for filters ``k0:k1``."""
    k = k1 - k0
    weight = st.bank_weight if k == p.K else st.weight[:, k0:k1].reshape(p.P * k, p.C, *p.T)
    if p.P == 1 and p.dtype.kind == "f" and prod(p.T) > 4 * prod(p.O):
        return _as_filter_gradient(p, st, grouped, weight)
    return st.conv(
        grouped, weight, stride=st.stride, padding=st.padding or 0, dilation=st.dilation, groups=p.P
    )


def _as_filter_gradient(p: Problem, st: TorchDirectState, grouped, weight):
    """A convolution whose kernel is larger than its output (a backward pass's filter
    gradient: ``sum_{c, t} x[b, c, o s + t d] w[k, c, t]`` with ``t`` spanning the
    image) computed by torch's own filter-gradient kernel, which is that sum with the
    roles swapped: input ``x`` seen as ``(C, b, *S)``, output gradient ``w`` as ``(C,
    k, *T)``, stride ``d``, dilation ``s``; its result ``(k, b, *O)``. (oneDNN's forward
    convolution took 82 ms for a 56x56 kernel on 16 x 64 x 58x58 with a 3x3 result;
    this, 28 ms.)"""
    import torch

    pad = st.padding or (0,) * p.ndim
    used = tuple((g.out - 1) * g.stride + g.extent - 2 * q for g, q in zip(p.geoms, pad))
    src = grouped[(slice(None), slice(None), *(slice(0, n) for n in used))]
    shape = (weight.shape[0], src.shape[0], *p.O)
    _, y, _ = torch.ops.aten.convolution_backward(
        weight.transpose(0, 1),
        src.transpose(0, 1),
        src.new_zeros(1).expand(shape),
        None,
        list(st.dilation),
        list(pad),
        list(st.stride),
        False,
        [0] * p.ndim,
        1,
        [False, True, False],
    )
    return y.transpose(0, 1)


def as_block(p: Problem, y, k: int):
    """The convolution's output ``(b, P*k, *O)`` as the block ``(b, k, P, *O)`` (a view)."""
    return y.reshape(y.shape[0], p.P, k, *p.O).transpose(1, 2)


def compute(p: Problem, st: TorchDirectState, xc, k0: int, k1: int, out=None):
    """The block ``(b, k1 - k0, P, *O)`` for the canonical chunk ``xc`` (a tensor)."""
    import torch

    y = as_block(p, convolve_grouped(p, st, grouped_input(p, st, xc), k0, k1), k1 - k0)
    if p.integer_inputs:
        y = torch.round(y)
    if out is None:
        return y
    out.copy_(y)
    return out


def fuses_reduce(p: Problem) -> bool:
    """The planner reduces each block."""
    return False


def workspace_bytes(p: Problem, b: int, k: int, budget: int | None = None) -> int:
    """The padded copy of the chunk, its grouped layout, the slice of the weights, the
    convolution's output, and an im2col matrix of the whole chunk: torch's fallback
    convolutions (float64 and 3-D on the CPU) build one (155 GB for two 3-D float64
    volumes of 93x121x126 against a 10x6x6 kernel in 'full' mode), so the chunks are
    sized for it."""
    r = p.dtype.itemsize
    padded = b * p.C * p.P * prod(g.padded for g in p.geoms) * r
    columns = b * p.P * p.C * prod(p.T) * prod(p.O) * r
    return 2 * padded + p.P * k * p.C * prod(p.T) * r + b * k * p.P * prod(p.O) * r + columns


def state_bytes(p: Problem) -> int:
    """The canonical filters and their grouped layout (``prepare``'s ``weight``; the
    convolution's weights are a view of it)."""
    return 2 * p.K * p.window_size * p.P * p.dtype.itemsize


def flops(p: Problem) -> float:
    """A multiplication and an addition per tap of every window (as ``direct``)."""
    return direct.flops(p)


def cost_features(p: Problem, device: str | None = None) -> tuple[str, dict[str, float]]:
    """The ``"torch_conv"`` cost model and its features; ``"torch_conv_dense"`` for the
    float32 CNN layers (a bank of 16 or more, channels x taps of 27 or more) that oneDNN
    runs near the machine's peak, which the general model, fitted mostly on small and
    fallback problems, overestimated 1.8x (3x3 64->64 on 8 x 56x56: 12.0 ms, 6.4 ms
    measured)."""
    prec = p.precision
    r = p.dtype.itemsize
    dense = _dense_layer(p) and not is_cuda(device)
    return "torch_conv_dense" if dense else "torch_conv", {
        "calls": 1.0,
        f"flops_{prec}": flops(p),
        "in_bytes": float(p.B * p.C * p.P * prod(g.padded for g in p.geoms) * r),
        "out_bytes": float(p.B * p.K * p.P * prod(p.O) * r),
    }


def _dense_layer(p: Problem) -> bool:
    """A float32 CNN layer of the "torch_conv_dense" model: a bank of 16 or more, channels
    x taps (``window_size``) of 27 or more."""
    return p.dtype.str.endswith("f4") and p.K >= 16 and p.window_size >= 27


def joins_numpy(p: Problem) -> bool:
    """Whether this method is a candidate for NumPy arrays of ``p`` once the program has
    imported torch (``bc.use_torch``): the float32 CNN layers of the "torch_conv_dense"
    model (a bank of 16 or more, channels x taps of 27 or more), the ground where its cost
    model was fitted beside the NumPy methods (``fit_cost_model.py --cnn-layers``), with
    the convolution's own zero padding (other paddings are a copy the model leaves out).
    Elsewhere torch's CPU times vary more than the general model follows (a refit on
    random problems: estimates 0.06-1.3x the measured times), and a wrong pick would be
    slower than the NumPy methods."""
    return (
        metric_of(p.metric).plain
        and not p.masked
        and _symmetric_zero_padding(p) is not None  # (else a padded copy, not costed)
        and _dense_layer(p)
    )


def describe(
    p: Problem, st: TorchDirectState, budget: int | None, device: str | None = None
) -> str:
    """torch's convolution on ``device``."""
    return f"torch_direct: torch.nn.functional.conv{p.ndim}d on {device}" + (
        " (cuDNN, TF32 off)" if is_cuda(device) else ""
    )


def one_call(p: Problem, st: TorchDirectState, xc):
    """``(input, call, as_canonical)``: a whole block as one convolution of the grouped
    input (tensors.py records it per input layout), or None where the input is padded
    first (a copy per call)."""
    if st.padding is None:
        return None
    return (
        grouped_input(p, st, xc),
        lambda src: convolve_grouped(p, st, src, 0, p.K),
        lambda y: as_block(p, y, p.K),
    )
