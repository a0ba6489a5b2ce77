"""What every implementation of the windowed metrics shares (``windowed.py`` on NumPy
arrays, ``formula.py`` for torch tensors and the portable engine): the plain correlation
they are computed from (:func:`inner_problem`), the flat-window rule
(:func:`noise_floor`), and their line in ``explain()``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..geometry import AxisGeometry, axis_geometry
from ..problem import Problem
from ..spec import parse_spec
from . import metric_of

__all__ = ["inner_problem", "valid_geometry", "noise_floor", "metric_line"]


def metric_line(p: Problem) -> str:
    """How a windowed metric is computed, for ``explain()``."""
    what = (
        "correlations of the centred x with the centred filters"
        if metric_of(p.metric).centred
        else "correlations of x with the filters"
    )
    return f"{p.metric}: {what} + float64 window sums of x and x^2 (see metrics/windowed.py)"


def valid_geometry(g: AxisGeometry) -> AxisGeometry:
    return g if g.out == 0 else axis_geometry(g.padded, g.m, "valid", g.stride, g.dilation)


def inner_problem(p: Problem) -> Problem:
    """The plain correlation ("dot", 'valid', no reduction, every sliding axis kept) of a
    padded copy of ``x`` that gives ``p``'s windows."""
    sp = p.spec
    spec = parse_spec(f"{sp.x},{sp.w}->{sp.out}{sp.reduced}|{sp.sliding}")
    return replace(
        p,
        spec=spec,
        geoms=tuple(valid_geometry(g) for g in p.geoms),
        mode="valid",
        padding="constant",
        cval=0.0,
        flip=False,
        conj=False,
        reduce=None,
        metric="dot",
        masked=False,
        integer_inputs=False,
        x_dtype=None,  # the padded, centred copy is in the compute dtype ...
        # ... and in C order (b, C, P, *padded): the last sliding axis is contiguous
        x_unit_axis=p.ndim - 1 if p.geoms[-1].padded > 1 else None,
        x_contiguous=True,
        x_channels_adjacent=p.C <= 1,
    )


def noise_floor(p: Problem, scale: np.ndarray) -> np.ndarray:
    """Per window: a spread (n times the variance, or the sum of squares) at or below this
    is rounding noise of the window sums, whose error is a few ``eps * sum(m)`` times
    ``scale`` (:func:`error_scale`). Local: a loud event elsewhere on the axis does not
    raise it."""
    return 16 * np.finfo(np.float64).eps * sum(g.m for g in p.geoms) * scale
