"""The similarity metrics and their registry: each metric is a :class:`Metric`, a
description of how it is computed, and the rest of the package asks it, never compares
its name.

A metric is one of three kinds:

* **plain** (``"dot"``): the correlation itself; the method computes it;
* **windowed** (``"ssd"``, ``"ncc"``, ``"cosine"``): a correlation (by any method, the
  FFT included) combined with float64 window sums of ``x`` and ``x^2``
  (``windowed.py`` on NumPy arrays, ``windowed_torch.py`` on tensors): ``centred``
  metrics centre ``x`` by its item's mean and the filters by theirs, ``normalised`` ones
  divide by both norms (flat windows and filters give 0, the result is clipped to
  ``range``); the others are the squared distance ``|a|^2 - 2 a.b + |b|^2``;
* **own kernel** (``"sad"``): no product form; the methods that declare ``COMPUTES_SAD``
  give the kernel (``sad_kernel(device)``).

``dispatch.py`` gives the object that computes a problem with a method
(``method_for``); ``rules.py`` what the windowed implementations share.

>>> import batchconv as bc
>>> metric_of("ncc").range, metric_of("ssd").best
((-1.0, 1.0), 'min')
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "metric_of", "register_metric", "unregister_metric"]


@dataclass(frozen=True)
class Metric:
    """What the engine needs to know of a metric (see the module docstring)."""

    name: str
    summary: str  # one line for the docs and error messages
    plain: bool = False  # the correlation itself ("dot")
    product_form: bool = True  # False: the methods' own kernel (COMPUTES_SAD)
    centred: bool = False  # x and the filters centred by their means first
    recentre_filters: bool = False  # the centred filters centred again (ncc's numerator)
    normalised: bool = False  # divided by both norms: flat -> 0, clipped to `range`
    inf_gives_inf: bool = False  # a window over +-Inf (no NaN) gives +Inf, not NaN
    rounds_integers: bool = False  # integer inputs give rounded (exact) values
    best: str = "max"  # "max" or "min": which values mean a better match
    range: tuple[float, float] = (-float("inf"), float("inf"))
    convolves: bool = False  # convolve() may compute it (the filters flipped)
    complex: bool = False  # complex data is allowed

    @property
    def window_sums(self) -> bool:
        """True for the windowed metrics: a correlation plus window sums of x, x^2."""
        return self.product_form and not self.plain


METRICS: dict[str, Metric] = {}
# what must forget cached plans when the registry changes (api's plan cache)
ON_CHANGE: list = []


def register_metric(metric: Metric) -> None:
    """Make ``metric`` a valid ``metric=`` name; raises ValueError when the name is taken.

    >>> register_metric(Metric("zncc", "ncc under another name", centred=True,
    ...                        recentre_filters=True, normalised=True, range=(-1.0, 1.0)))
    >>> unregister_metric("zncc")
    """
    if metric.name in METRICS:
        raise ValueError(f"metric name {metric.name!r} is taken")
    if metric.best not in ("max", "min"):
        raise ValueError(f"a metric's best is 'max' or 'min', got {metric.best!r}")
    if metric.window_sums and not (metric.centred or metric.normalised):
        raise ValueError(
            "a windowed metric is centred (a distance, as ssd) or normalised (as cosine), "
            "or both (as ncc); the distance formula centres x and the filters"
        )
    METRICS[metric.name] = metric
    _changed()


def unregister_metric(name: str) -> None:
    """Forget the metric called ``name`` (plans already made with it keep working)."""
    if METRICS.pop(name, None) is not None:
        _changed()


def _changed() -> None:
    for forget in ON_CHANGE:
        forget()


def metric_of(name: str) -> Metric:
    """The registered metric called ``name``; unknown names list the valid ones."""
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise ValueError(f"metric must be one of {tuple(METRICS)}, got {name!r}") from None


for _metric in (
    Metric(
        "dot",
        "plain correlation: sum a b",
        plain=True,
        convolves=True,
        complex=True,
    ),
    Metric(
        "ssd",
        "sum of squared differences: sum (a - b)^2",
        centred=True,
        inf_gives_inf=True,
        rounds_integers=True,
        best="min",
        range=(0.0, float("inf")),
    ),
    Metric(
        "sad",
        "sum of absolute differences: sum |a - b|",
        product_form=False,
        inf_gives_inf=True,
        best="min",
        range=(0.0, float("inf")),
    ),
    Metric(
        "ncc",
        "Pearson correlation of window and filter, in [-1, 1]",
        centred=True,
        recentre_filters=True,
        normalised=True,
        range=(-1.0, 1.0),
    ),
    Metric(
        "cosine",
        "cosine similarity: sum a b / (|a| |b|), in [-1, 1]",
        normalised=True,
        range=(-1.0, 1.0),
    ),
):
    register_metric(_metric)
