"""Ragged banks: templates of different shapes in one ``correlate`` call (``w`` a list).

Two ways to compute them, the planner's estimates choosing (``explain()`` shows both):

* **grouped**: one plan per template shape (each a bank of the templates of that
  shape), their results put together in the list's order. Always possible.
* **padded**: every template placed in one common shape, the rest of it weighted 0 by a
  mask (``mask=``, ``metrics/masked.py``), one plan for the whole bank. The same values
  as grouped where the windows line up: ``mode='same'`` (each template centred as on
  its own), correlate, no dilation; NumPy arrays and torch tensors. A call whose ``x``
  holds NaN or Inf runs grouped (a masked window over a NaN is NaN even where the
  weight is 0).

The spec (or ``spec=None``) describes the templates stacked as one bank: the list is
``w``'s first axis, which must be a bank letter. The maps of all templates must have one
shape ('same', or every sliding axis reduced; 'valid' and 'full' maps differ in size
otherwise, and the call says so). Each template may have its own mask (``mask=`` a list
of one per template, None for none, or one mask for all that fit it).

>>> import numpy as np, batchconv as bc
>>> x = np.random.default_rng(0).random((2, 40, 40))
>>> bank = [x[0, 5:12, 8:13], x[1, 20:29, 3:14]]          # 7x5 and 9x11
>>> bc.correlate(x, bank, metric="ncc", reduce="argmax")[[0, 1], [0, 1]]  # where found
array([[ 5,  8],
       [20,  3]])
>>> bc.correlate(x, bank, mode="same").shape              # (item, template, *x's shape)
(2, 2, 40, 40)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arrays import is_torch, to_numpy
from .geometry import axis_geometry
from .peak_reduce import PeakResult
from .progress import reporter

__all__ = ["RaggedPlan", "is_ragged", "ragged_plan"]


def is_ragged(w) -> bool:
    """Whether ``w`` is a list or tuple of arrays (or nested lists) of different shapes:
    a ragged bank. (A list of one shape is an ordinary bank.)"""
    if not isinstance(w, (list, tuple)) or len(w) < 2:
        return False
    if not all(hasattr(t, "shape") or isinstance(t, (list, tuple)) for t in w):
        return False  # (a list of numbers: one filter)
    return len({tuple(t.shape) if hasattr(t, "shape") else np.shape(t) for t in w}) > 1


def correlate_groups(call, x, templates, spec, *, options: dict):
    """A ragged bank on any array type (Dask, JAX, ...), grouped: one ``call``
    (``correlate`` or ``convolve``) per template shape, the results put together in the
    list's order (in the array's own library)."""
    if options.get("mask") is not None:
        raise NotImplementedError("mask= works on NumPy arrays and torch tensors for now")
    opts = {k: v for k, v in options.items() if k != "mask"}
    shapes = [tuple(t.shape) if hasattr(t, "shape") else np.shape(t) for t in templates]
    index = [np.array(v) for v in _groups(shapes).values()]
    parts = [call(x, _stack_like([templates[i] for i in ix]), spec, **opts) for ix in index]
    sp = _spec_of(len(x.shape), shapes[0], spec, opts)
    return _assemble(parts, index, sp.out.index(sp.w[0]))


def _stack_like(ts):
    """Templates of one shape stacked in their own library."""
    if all(isinstance(t, np.ndarray) or isinstance(t, (list, tuple)) for t in ts):
        return np.stack([np.asarray(t) for t in ts])
    from array_api_compat import array_namespace

    xp = array_namespace(*ts)
    return xp.stack(list(ts))


def _spec_of(x_ndim: int, shape, spec, opts):
    """The spec of the call: the templates stacked are ``w`` (the list its first axis)."""
    from .spec import default_spec, parse_spec

    if spec is not None:
        return parse_spec(spec)
    return default_spec(x_ndim, len(shape) + 1, opts.get("reduce") is not None)


@dataclass(eq=False)
class RaggedPlan:
    """A prepared ragged bank: call it with ``x``; ``explain()`` says which way it is
    computed and why. Attributes: ``strategy`` ("grouped" or "padded"), ``estimates``
    (seconds per strategy, from the planner's cost model), ``plans`` (the plans it
    runs)."""

    strategy: str
    estimates: dict[str, float]
    reason: str
    shapes: list[tuple[int, ...]]
    plans: list[Any]  # one per group (grouped) or one (padded)
    groups: list[np.ndarray]  # template indices per plan
    bank_axis: int  # the bank's axis in the result
    title: str
    _grouped: Any = field(default=None, repr=False)  # (made when a padded call needs it)

    def __call__(self, x, progress=None):
        if self.strategy == "padded" and not _all_finite(x):
            return self._grouped()(x, progress)
        rep = reporter(progress, len(self.plans), "group of templates")
        parts = []
        try:
            for plan in self.plans:
                parts.append(plan(x))
                if rep is not None:
                    rep.step()
        finally:
            if rep is not None:
                rep.__exit__()
        if len(parts) == 1:
            return parts[0]
        return _assemble(parts, self.groups, self.bank_axis)

    def explain(self) -> str:
        """Both strategies' estimates, the choice, then the plans' own accounts."""
        counts = {}
        for s in self.shapes:
            counts[s] = counts.get(s, 0) + 1
        listed = ", ".join(f"{'x'.join(map(str, s))}: {n}" for s, n in counts.items())
        lines = [
            f"batchconv ragged bank: {len(self.shapes)} templates of {len(counts)} shapes "
            f"({listed})",
            f"  {self.title}",
        ]
        for name in ("grouped", "padded"):
            est = self.estimates.get(name)
            what = f"~{est * 1e3:.2f} ms" if isinstance(est, float) else f"not possible: {est}"
            lines.append(f"   {'*' if name == self.strategy else ' '} {name:<8} {what}")
        lines.append(f"  chosen: {self.strategy} ({self.reason})")
        for plan in self.plans:
            lines += ["  " + line for line in plan.explain().splitlines()]
        return "\n".join(lines)


def _all_finite(x) -> bool:
    if is_torch(x):
        import torch

        return bool(torch.isfinite(x).all()) if x.dtype.is_floating_point else True
    a = np.asarray(x)
    return a.dtype.kind not in "fc" or bool(np.isfinite(a).all())


def _assemble(parts, groups: list[np.ndarray], axis: int):
    """The groups' results, concatenated along the bank ``axis`` in the list's order."""
    order = np.argsort(np.concatenate(groups))
    if isinstance(parts[0], PeakResult):
        return PeakResult(
            _concat_take([p.scores for p in parts], order, axis),
            _concat_take([p.coords for p in parts], order, axis),
        )
    return _concat_take(parts, order, axis)


def _concat_take(parts, order: np.ndarray, axis: int):
    if isinstance(parts[0], np.ndarray):
        return np.take(np.concatenate(parts, axis=axis), order, axis=axis)
    from array_api_compat import array_namespace

    xp = array_namespace(parts[0])
    y = xp.concat(parts, axis=axis)
    index = xp.asarray(order)
    if hasattr(y, "device") and hasattr(index, "to"):  # torch: the index on y's device
        index = index.to(y.device)
    return xp.take(y, index, axis=axis)


def ragged_plan(
    make_plan,
    x,
    x_signature: tuple,
    templates,
    spec,
    *,
    flip: bool,
    options: dict,
    strategy: str = "auto",
) -> RaggedPlan:
    """The :class:`RaggedPlan` of ``correlate(x, templates, spec, **options)`` (or
    ``convolve`` with ``flip``): the strategy with the lower estimate (or ``strategy``,
    "grouped" or "padded", where possible: for tests), its plans made by ``make_plan(x,
    w, spec, flip=, mask=, **options)`` (``api._make_plan``); ``x_signature``: x's
    ``(shape, dtype)``."""
    from .metrics.masked import template_masks
    from .planner import choose_method
    from .problem import make_problem, mode_text
    from .tensors import device_of

    bank = [_host(t) for t in templates]
    shapes = [t.shape for t in bank]
    if len({len(s) for s in shapes}) > 1:
        raise ValueError(
            f"the templates of a list must have the same number of axes; got shapes {shapes}"
        )
    opts = {k: v for k, v in options.items() if k != "mask"}
    device = opts.get("device") or device_of(x)
    x_shape, x_dtype = x_signature
    w_dtype = np.result_type(*(t.dtype for t in bank))
    index = [np.array(v) for v in _groups(shapes).values()]
    geometry = {k: opts[k] for k in ("mode", "stride", "dilation", "padding", "cval") if k in opts}

    def problem(w_shape, masked: bool):
        return make_problem(
            x_shape,
            x_dtype,
            w_shape,
            w_dtype,
            spec,
            flip=flip,
            metric=opts.get("metric", "dot"),
            reduce=opts.get("reduce"),
            masked=masked,
            **geometry,
        )

    def estimate(p) -> float:
        method, _, cands, _ = choose_method(
            p, opts.get("method", "auto"), opts.get("memory"), opts.get("workers"), device
        )
        return next(c.seconds for c in cands if c.method == method)

    given = _spec_of(len(x_shape), shapes[0], spec, opts)
    if len(given.w) != len(shapes[0]) + 1:
        raise ValueError(
            f"a list of templates is w's first axis: spec {spec!r} must name it, a bank "
            f"letter before the {len(shapes[0])} axes of a template"
        )
    sliding = "".join(c for c in given.sliding if c in given.w[1:])
    masks = template_masks(options.get("mask"), shapes, given.w[1:], sliding)
    if given.w[0] not in given.bank:
        raise ValueError(
            f"a list of templates is w's first axis, which must be a bank axis; spec "
            f"'{given}' gives {given.w[0]!r} another role"
        )
    probs = [
        problem((len(ix), *shapes[ix[0]]), _stacked_masks(masks, ix, shapes) is not None)
        for ix in index
    ]
    p0 = probs[0]
    sp = p0.spec
    bank_axis = sp.out.index(sp.w[0])
    if len({p.out_shape[:bank_axis] + p.out_shape[bank_axis + 1 :] for p in probs}) > 1:
        raise ValueError(
            f"templates of shapes {list(dict.fromkeys(shapes))} give maps of different "
            f"sizes in {mode_text(p0.mode)}; use mode='same', reduce the sliding axes "
            f"(reduce='max', bc.peaks, ...), or bc.match"
        )
    estimates: dict[str, Any] = {"grouped": sum(estimate(p) for p in probs)}
    why_not = _why_not_padded(x, p0, flip)
    layout = None if why_not is not None else _padded_layout(p0, shapes)
    if layout is None:
        estimates["padded"] = why_not or "no common shape lines the templates up"
    else:
        estimates["padded"] = estimate(problem((len(bank), *layout[0]), True))
    title = f"correlate{'' if not flip else ' (convolve)'}: spec '{sp}', {mode_text(p0.mode)}"

    def grouped(reason: str) -> RaggedPlan:
        plans = []
        for ix in index:
            w = np.stack([bank[i] for i in ix])
            m = _stacked_masks(masks, ix, shapes)
            plans.append(make_plan(x, w, spec, flip=flip, mask=m, **opts))
        return RaggedPlan("grouped", estimates, reason, shapes, plans, index, bank_axis, title)

    padded = estimates["padded"]
    if not isinstance(padded, float):
        return grouped("the only way")
    if strategy == "grouped" or (strategy == "auto" and padded >= estimates["grouped"]):
        return grouped("lowest estimated time" if strategy == "auto" else "asked for")
    w, m = _padded_bank(bank, masks, layout, w_dtype)
    plan = make_plan(x, w, spec, flip=flip, mask=m, **opts)
    everything = [np.arange(len(bank))]
    reason = "lowest estimated time" if strategy == "auto" else "asked for"
    out = RaggedPlan("padded", estimates, reason, shapes, [plan], everything, bank_axis, title)
    out._grouped = lambda: grouped("x holds NaN or Inf")
    return out


def _host(t) -> np.ndarray:
    """A template as a NumPy array (a tensor's values copied to the host)."""
    if is_torch(t):
        return t.detach().cpu().numpy()
    return to_numpy(t, "w")[0]


def _groups(shapes: list[tuple[int, ...]]) -> dict[tuple[int, ...], list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(shapes):
        groups.setdefault(s, []).append(i)
    return groups


def _stacked_masks(masks, ix, shapes) -> np.ndarray | None:
    """The masks of the templates ``ix`` stacked (ones for those without one), or None
    where none of them has one (they run without a mask)."""
    if masks is None or all(masks[i] is None for i in ix):
        return None
    return np.stack([np.ones(shapes[i]) if masks[i] is None else masks[i] for i in ix])


def _why_not_padded(x, p, flip: bool) -> str | None:
    """Why one padded bank cannot give the grouped values here (None: it can)."""
    from .arrays import is_array_api, is_dask
    from .problem import mode_text

    if flip:
        return "convolve"
    if p.mode != "same":
        return f"{mode_text(p.mode)}: the padded templates' windows would not line up"
    if any(g.dilation != 1 for g in p.geoms):
        return "dilation"
    if is_dask(x) or is_array_api(x):
        return "masks need NumPy arrays or torch tensors"
    return None


def _padded_layout(p, shapes):
    """``(common shape, per template its slices in it)`` for mode='same': each template
    placed so that its 'same' windows start where they start on its own, or None."""
    sp = p.spec
    common = list(shapes[0])
    places = [[slice(None)] * len(s) for s in shapes]
    for c, g in zip(sp.sliding, p.geoms, strict=True):
        a = sp.w.index(c) - 1  # the templates' axis (the list is w's axis 0)
        sizes = [s[a] for s in shapes]
        lo = [axis_geometry(g.n, m, "same", g.stride).lo for m in sizes]
        for size in range(max(sizes), 3 * max(sizes) + 2):
            at = axis_geometry(g.n, size, "same", g.stride).lo
            if all(0 <= at - lo_k and at - lo_k + m <= size for lo_k, m in zip(lo, sizes)):
                break
        else:
            return None
        common[a] = size
        for k, (lo_k, m) in enumerate(zip(lo, sizes, strict=True)):
            places[k][a] = slice(at - lo_k, at - lo_k + m)
    return tuple(common), [tuple(pl) for pl in places]


def _padded_bank(bank, masks, layout, dtype):
    """The templates in their common shape and the mask that weights 0 the rest."""
    common, places = layout
    w = np.zeros((len(bank), *common), dtype)
    m = np.zeros((len(bank), *common))
    for k, (t, place) in enumerate(zip(bank, places, strict=True)):
        w[(k, *place)] = t
        m[(k, *place)] = 1 if masks is None or masks[k] is None else masks[k]
    return w, m
