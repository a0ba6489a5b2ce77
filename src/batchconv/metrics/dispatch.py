"""Which object computes a problem: the method module itself for a plain metric, the
method's own kernel for a metric with no product form, a windowed metric around the
method otherwise (:func:`method_for`); which methods can compute a metric
(:func:`methods_for_metric`); what a plan's filter state takes (:func:`state_bytes`).

>>> import numpy as np
>>> from batchconv.problem import make_problem
>>> p = make_problem((2, 64), np.float64, (3, 8), np.float64, metric="ncc")
>>> type(method_for(p, "fft")).__name__
'MetricMethod'
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..methods import METHODS, module_of
from ..problem import Problem
from . import metric_of
from .rules import inner_problem
from .windowed import MetricMethod

__all__ = ["method_for", "methods_for_metric", "state_bytes"]


def method_for(p: Problem, name: str, device: str | None = None):
    """The object that computes ``p`` with method ``name`` (for tensors on ``device``):
    the method module itself for a plain metric ("dot"); the method's own kernel
    (``sad_kernel(device)``) for a metric with no product form ("sad"); otherwise a
    windowed metric around the method (``windowed.MetricMethod``, or
    ``windowed_torch.TorchMetricMethod`` for a torch method)."""
    mod = module_of(name)
    why = mod.applies(p, device)
    if why is not None:
        raise ValueError(f"method {name!r} cannot compute this problem: {why}")
    metric = metric_of(p.metric)
    if not metric.product_form and not mod.COMPUTES_SAD:
        raise ValueError(
            f"metric {metric.name!r} has no {name!r} form (it does not factor through a "
            f"product, as an absolute value does not); use method='direct' or 'auto'"
        )
    if p.masked:  # the mask's own formulas around the method (masked.py)
        from .masked import MaskedMethod, MaskedSad

        return MaskedMethod(mod) if metric.product_form else MaskedSad()
    if metric.plain:
        return mod
    if not metric.product_form:
        return mod.sad_kernel(device)
    if mod.ON_TENSORS:  # on the tensors' device
        from .windowed_torch import TorchMetricMethod

        return TorchMetricMethod(mod)
    return MetricMethod(mod)


def methods_for_metric(metric: str, on_tensors: bool = False) -> tuple[str, ...]:
    """The registered methods that can compute ``metric`` (on torch tensors' device, or
    on NumPy arrays), in registration order."""
    product_form = metric_of(metric).product_form
    return tuple(
        name
        for name, mod in METHODS.items()
        if mod.ON_TENSORS == on_tensors and (product_form or mod.COMPUTES_SAD)
    )


def state_bytes(p: Problem, method) -> int:
    """The filter state a plan of ``method`` (a module) keeps for ``p``: the method's
    own, of the centred filters for a windowed metric with their float64 statistics."""
    if p.masked:  # the weighted templates, the templates and masks (sad), the masks' state
        q = inner_problem(p)
        masks = (
            0
            if metric_of(p.metric).plain
            else 2 * method.state_bytes(replace(q, dtype=np.dtype(np.float64)))
        )
        return method.state_bytes(q) + masks + p.K * p.P * 80
    if not metric_of(p.metric).window_sums:
        return method.state_bytes(p)
    return method.state_bytes(inner_problem(p)) + p.K * p.P * 24
