"""The cost model behind ``method="auto"``: estimated seconds of one call of each method.

Each method's time is a sum of a few *features* of the problem (flops, bytes moved, a
fixed per-call cost) times coefficients in seconds per unit. The coefficients were fitted
on the 2-core development machine by ``benchmarks/fit_cost_model.py``: it times the
forced methods on random problems (1-D to 3-D, banks, channels, strides, float32 and
float64), fits non-negative coefficients minimising the *relative* error, and prints the
table below. ``benchmarks/auto_grid.py`` checks the result on a separate grid of problems
(see BENCHMARKS.md). To recalibrate for another machine, run the fit script there and
paste its output.

>>> import numpy as np
>>> from batchconv.problem import make_problem
>>> p = make_problem((8, 256, 256), np.float32, (4, 31, 31), np.float32)
>>> estimate(p, "fft") < estimate(p, "direct")
True
"""

from __future__ import annotations

from dataclasses import replace
from math import prod

import numpy as np

from .methods import module_of
from .metrics import metric_of
from .metrics.rules import inner_problem
from .problem import Problem
from .tensors import is_cuda

__all__ = ["features", "estimate", "once_estimate", "flops", "COEFFICIENTS"]

# seconds per feature unit, per model; pasted from benchmarks/fit_cost_model.py
COEFFICIENTS: dict[str, dict[str, float]] = {
    # calls of reused plans (the filters' transforms are once_estimate's), timed beside the
    # direct method: `python benchmarks/fit_cost_model.py --from-json R L --models fft` on
    # `--methods direct,fft --n 160 --json R` and `--methods direct,fft
    # --large-kernel-layers --n 140 --json L` (86 + 70 FFT problems; 10-90% of estimate /
    # actual 0.54-1.38 on R, 0.58-1.16 on the layers, which the earlier fit, on problems of
    # few channels, put 0.90-3.52 too slow: its channel products at 10.6 GFLOP/s, with no
    # cost for reading the filters' spectra on every call). The filters' preparation
    # (once_estimate) adds filter_spectrum_bytes, fitted alone on its timings: `python
    # benchmarks/fit_cost_model.py --prepare --n 80` (10-90% of estimate / actual
    # 0.30-0.84 -> 0.49-1.34, median 0.56 -> 0.89: the transforms' features alone left out
    # the zeroed buffers, the conjugation and the copy into the products' layout)
    "fft": {
        "calls": 0.000238,
        "channel_flops": 1.02e-11,
        "fft_flops_double": 7.86e-11,
        "fft_flops_single": 4.67e-11,
        "fft_lines": 1.48e-09,
        "fft_pass_bytes": 4.8e-11,
        "out_bytes": 2.33e-10,
        "product_flops": 0,
        "spectrum_bytes": 7.47e-11,
        "filter_spectrum_bytes": 3.08e-10,
        "tile_items": 6.64e-06,
    },
    # the GEMM tiles on the threads, one-thread BLAS each (direct.gemm_threads): `python
    # benchmarks/fit_cost_model.py --methods direct --n 110` (71 GEMM problems; 10-90%
    # of estimate / actual 0.67-1.19; the earlier coefficients, for one GEMM split across
    # the threads, estimated these problems 1.55x too slow at the median)
    "gemm": {
        "calls": 6.79e-05,
        "gemm_flops_double": 6.94e-12,
        "gemm_flops_single": 4.1e-12,
        "out_bytes": 1.48e-10,
        "patch_bytes": 5.92e-11,
    },
    "shift_add": {
        "calls": 0.000132,
        "flops_double": 3.26e-10,
        "flops_single": 2.69e-10,
        "out_bytes": 1.14e-10,
    },
    # the compiled one-filter kernel: `fit_cost_model.py --methods direct --n 170` (64
    # window-rows problems; 10-90% of estimate / actual 0.41-1.29), this model only
    "window_rows": {
        "calls": 5.26e-05,
        "in_bytes": 1.6e-10,
        "out_bytes": 1.19e-10,
        "terms_double": 4.9e-11,
        "terms_single": 2.11e-11,
    },
    # torch on CPU tensors (oneDNN convolutions, torch's slower float64 and 3-D fallbacks,
    # torch.fft): fitted by `benchmarks/fit_cost_model.py --methods torch_direct,torch_fft
    # --n 120` (52 + 68 problems; a method whose first item, scaled to the batch, took
    # over 3 s was not timed); 10-90% of estimate / actual 0.18-1.46 and 0.28-1.34
    "torch_conv": {
        "calls": 6.65e-05,
        "flops_double": 7.54e-11,
        "flops_single": 3.63e-12,
        "in_bytes": 4.7e-10,
        "out_bytes": 4.41e-10,
    },
    # float32 CNN layers on torch CPU tensors (oneDNN near peak; torch_direct's
    # cost_features): `fit_cost_model.py --methods torch_direct --cnn-layers --n 60` on
    # the 2-core Intel machine of session 16 (60 layers, 10-90% of estimate / actual
    # 0.58-1.14); the general model above put 3x3 64->64 on 8 x 56x56 at 12.0 ms, 6.4 ms
    # measured, below the NumPy methods fitted on that machine
    "torch_conv_dense": {
        "calls": 0.000158,
        "flops_single": 3.11e-12,
        "in_bytes": 2.87e-11,
        "out_bytes": 5.48e-11,
    },
    "torch_fft": {
        "calls": 0.000186,
        "channel_flops": 2.13e-10,
        "fft_flops_double": 6.95e-11,
        "fft_flops_single": 1.11e-11,
        "fft_lines": 3.36e-09,
        "fft_pass_bytes": 0,
        "out_bytes": 5.88e-10,
        "product_flops": 3.81e-10,
        "spectrum_bytes": 0,  # (not part of this fit: the feature came later)
        "filter_spectrum_bytes": 0,  # (nor this one)
        "tile_items": 0,
    },
}
# torch on a CUDA device: not fitted (no GPU on the development machine); rough H100
# figures (cuDNN at about 20 TFLOP/s in float32, cuFFT at memory speed), only used to
# order candidates whose estimates are far apart: on CUDA, "auto" times those within 10x
# of the best (measure.py)
CUDA_COEFFICIENTS: dict[str, dict[str, float]] = {
    "torch_conv": {
        "calls": 3e-05,
        "flops_double": 1.5e-13,
        "flops_single": 5e-14,
        "in_bytes": 1e-12,
        "out_bytes": 1e-12,
    },
    "torch_fft": {
        "calls": 6e-05,
        "fft_flops_double": 2e-13,
        "fft_flops_single": 1e-13,
        "fft_pass_bytes": 1e-12,
        "out_bytes": 1e-12,
        "product_flops": 1e-13,
        "channel_flops": 5e-14,
    },
}


# windowed metrics (measured on the dev machine, not fitted): seconds per element of one
# memory pass (window sums and the combination with the correlations); on CUDA (not
# measured: no GPU here) a pass at 100 GB/s. A metric with no product form (sad) is
# costed by its kernel (``estimate`` of the method's ``sad_kernel``).
_METRIC_PASS = 1e-9
_METRIC_PASS_CUDA = 1e-11
# torch's window sums on the CPU add each window's own samples (``tensors.window_sums``):
# seconds per sample added (ncc of a 1000x900 float32 image against a 48x40 template:
# 31 ms of float64 sums; the NumPy metrics' running sums cost a pass per axis instead)
_UNFOLD_ADD = 2e-10


def flops(p: Problem, method: str) -> float:
    """Floating-point operations of one call (FFT: transforms of the items and of every
    pair's product, and the products; the filters' transforms are in the plan; SAD: a
    subtraction and an addition per tap; ssd/ncc/cosine: those of their correlation)."""
    if p.masked and metric_of(p.metric).product_form:  # (masked.py) the weighted
        return flops(inner_problem(p), method) * _masked_correlations(p)  # templates, masks
    if metric_of(p.metric).window_sums:
        return flops(inner_problem(p), method)
    return module_of(method).flops(p)


def _masked_correlations(p: Problem) -> int:
    """How many correlations of the bank's size a masked metric makes, at most (the
    masks' ones are fewer where the mask is shared by the templates)."""
    metric = metric_of(p.metric)
    return 1 if metric.plain else (4 if metric.centred and metric.normalised else 3)


def features(p: Problem, method: str, device: str | None = None) -> tuple[str, dict[str, float]]:
    """The model that applies (a row of :data:`COEFFICIENTS`: ``"fft"``, ``"gemm"``,
    ``"window_rows"`` (compiled), ``"shift_add"`` (NumPy), ``"torch_conv"`` or
    ``"torch_fft"``: the method's ``cost_features`` say) and its features for ``p``
    (``device``: where torch tensors live)."""
    return module_of(method).cost_features(p, device)


def estimate(p: Problem, method: str, device: str | None = None) -> float:
    """Estimated seconds of a first call of ``method`` on ``p``: the call, plus the FFT
    methods' filter transforms, which a plan makes once (a one-shot ``correlate`` pays
    them; a plan called again does not, so there the FFT is cheaper than this says);
    ``device``: where torch tensors live (a CUDA device has its own table)."""
    metric = metric_of(p.metric)
    if p.masked:  # (masked.py) its correlations in float64, or sad tap by tap
        q = replace(inner_problem(p), dtype=np.dtype(np.float64))
        if not metric.product_form:  # a few passes of the block per tap
            return 4 * p.B * p.K * p.P * prod(p.O) * p.window_size * _METRIC_PASS
        return estimate(q, method, device) * _masked_correlations(p)
    if not metric.product_form:  # the method's own kernel
        return module_of(method).sad_kernel(device).estimate(p, device)
    if metric.window_sums:  # the correlation, plus window sums and combination passes
        q = inner_problem(p)
        passes = (
            p.B * p.C * p.P * prod(g.padded for g in p.geoms) * 6 + p.B * p.K * p.P * prod(p.O) * 3
        )
        seconds = estimate(q, method, device) + passes * (
            _METRIC_PASS_CUDA if is_cuda(device) else _METRIC_PASS
        )
        if module_of(method).ON_TENSORS and not is_cuda(device):  # x' and x'^2, each
            # sample added once per tap of each sliding axis
            adds = 2 * p.B * p.C * p.P * prod(g.padded for g in p.geoms)
            seconds += adds * sum(g.m for g in p.geoms) * _UNFOLD_ADD
        return seconds
    return _seconds(method, *features(p, method, device), device)


def _seconds(method: str, model: str, feats: dict[str, float], device: str | None) -> float:
    """The ``model``'s seconds for ``feats``; a registered method may bring its own model
    (its COEFFICIENTS, keyed like ours)."""
    own = getattr(module_of(method), "COEFFICIENTS", {})
    coef = own.get(model) or (CUDA_COEFFICIENTS if is_cuda(device) else COEFFICIENTS)[model]
    return sum(coef.get(k, 0.0) * v for k, v in feats.items())


def once_estimate(p: Problem, method: str, device: str | None = None) -> float:
    """The seconds of :func:`estimate` that a plan spends once, preparing its filters
    (the FFT methods' filter transforms; a method says so by ``prepare_features``): a
    plan called again does not pay them, and the planner spreads them over
    ``planner.REUSED_CALLS`` calls for a plan it expects to be reused (``bc.plan``, or
    the one ``correlate`` remembers, from the second call with the same filters).

    >>> from batchconv.problem import make_problem
    >>> p = make_problem((4, 32, 64, 64), np.float32, (32, 32, 7, 7), np.float32,
    ...                  "nchw,kchw->nkhw|hw")
    >>> 0 < once_estimate(p, "fft") < estimate(p, "fft"), once_estimate(p, "direct")
    (True, 0.0)
    """
    metric = metric_of(p.metric)
    if not metric.product_form:
        return 0.0
    if p.masked:  # (as estimate: the correlations in float64)
        q = replace(inner_problem(p), dtype=np.dtype(np.float64))
        return once_estimate(q, method, device) * _masked_correlations(p)
    if metric.window_sums:
        return once_estimate(inner_problem(p), method, device)
    prepare = getattr(module_of(method), "prepare_features", None)
    return 0.0 if prepare is None else _seconds(method, *prepare(p, device), device)
