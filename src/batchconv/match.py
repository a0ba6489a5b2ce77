"""Template matching end to end: ``bc.match(images, templates, threshold=...)`` gives the
table of hits (image, template, position, score, box) after suppression across
templates, as ``multi-template-matching``'s ``matchTemplates`` does, from one call.

Each group of templates of one shape is matched against every image in one
:func:`~batchconv.correlate` call with ``reduce=bc.peaks(...)`` (the maps are never held
whole); the local extrema beyond ``threshold`` of every (image, template) map become
candidate hits, boxes of the template's size at the window's position; then, per image,
the candidates are taken best first (ties by template, then position) and a candidate
whose box overlaps one already taken by more than ``max_overlap`` (intersection over
union, in any number of dimensions) is dropped, up to ``top`` hits.

>>> import numpy as np, batchconv as bc
>>> rng = np.random.default_rng(0)
>>> scene = rng.random((120, 160))
>>> templates = [scene[10:30, 40:60], scene[70:95, 100:120] + 0.05 * rng.standard_normal((25, 20))]
>>> hits = bc.match(scene, templates, threshold=0.9)  # (the second a noisy copy)
>>> hits.template.tolist(), hits.start.tolist(), hits.score.round(3).tolist()
([0, 1], [[10, 40], [70, 100]], [1.0, 0.985])
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from . import compiled
from .arrays import to_numpy
from .metrics import metric_of
from .metrics.masked import template_masks
from .peak_reduce import peaks
from .spec import FREE_LETTERS

__all__ = ["Matches", "match"]

_LETTERS = FREE_LETTERS


@dataclass(frozen=True)
class Matches:
    """The hits of :func:`match`, one row each, best first within each image.

    ``image`` (n,) the image's index; ``template`` (n,) the template's index; ``label``
    (n,) its label (the index when no labels were given); ``score`` (n,) the metric's
    value; ``start`` and ``stop`` (n, d): the box, along the image's sliding axes (for
    2-D images row then column), ``start`` also the window's position in the
    'valid' map."""

    image: np.ndarray
    template: np.ndarray
    label: np.ndarray
    score: np.ndarray
    start: np.ndarray
    stop: np.ndarray

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def __repr__(self) -> str:
        return f"Matches({len(self)} hits; fields image, template, label, score, start, stop)"

    def columns(self) -> dict[str, np.ndarray]:
        """The table's columns: image, template, label, score, then ``start{i}`` and
        ``stop{i}`` per sliding axis ``i``."""
        cols = {
            "image": self.image,
            "template": self.template,
            "label": self.label,
            "score": self.score,
        }
        for i in range(self.start.shape[1]):
            cols[f"start{i}"] = self.start[:, i]
            cols[f"stop{i}"] = self.stop[:, i]
        return cols

    def to_records(self) -> np.ndarray:
        """The table as a NumPy structured array (one record per hit)."""
        cols = self.columns()
        dtype = [(name, _field_dtype(a)) for name, a in cols.items()]
        out = np.empty(len(self), dtype=dtype)
        for name, a in cols.items():
            out[name] = a
        return out

    def to_pandas(self):
        """The table as a ``pandas.DataFrame`` (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Matches.to_pandas needs pandas (pip install pandas); to_records() gives "
                "a NumPy structured array without it"
            ) from None
        return pd.DataFrame(self.columns())


def _field_dtype(a: np.ndarray):
    if a.dtype == object:  # labels: the longest as a string
        return f"U{max((len(str(v)) for v in a), default=1)}"
    return a.dtype


def match(
    images: Any,
    templates: Any,
    *,
    threshold: float,
    metric: str = "ncc",
    max_overlap: float = 0.25,
    top: int | None = None,
    mask: Any = None,
    min_distance: int = 1,
    labels: Any = None,
    channel_axis: int | None = None,
    method: str = "auto",
    memory: int | str | None = None,
    workers: int | None = None,
) -> Matches:
    """Find ``templates`` in ``images``: every local extremum of every (image, template)
    map beyond ``threshold`` (above it for ncc, cosine and dot; below it for ssd and sad)
    as a box of the template's size, then per image the best boxes that overlap no
    better one by more than ``max_overlap`` (intersection over union), at most ``top``.

    ``images``: one image, a batch (an array with one more axis than a template), or a
    list of images of any sizes; ``templates``: a list (or tuple) of arrays of any
    shapes (each shape is one correlate call), or one array: one template (a bank array
    ``b`` is ``list(b)``). ``channel_axis=-1``: the last axis of images and templates is
    channels (the same number in both), summed in the metric; other axes are not
    accepted (move the channels last). ``min_distance``: between
    the peaks of one map (``bc.peaks``'s; 1 gives every local extremum, as
    ``peak_local_max``'s default). ``labels``: one per template. ``method``,
    ``memory``, ``workers``: as :func:`~batchconv.correlate`'s.

    >>> import numpy as np, batchconv as bc
    >>> scene = np.zeros((50, 50)); scene[10:15, 20:25] = 1; scene[30:35, 5:10] = 1
    >>> hits = bc.match(scene, [np.ones((5, 5))], metric="ssd", threshold=0.5)
    >>> hits.start.tolist(), hits.score.tolist()
    ([[10, 20], [30, 5]], [0.0, 0.0])
    """
    if not 0 <= max_overlap <= 1:
        raise ValueError(f"max_overlap is an intersection over union in [0, 1], got {max_overlap}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be None or a positive integer, got {top!r}")
    if channel_axis not in (None, -1):
        raise ValueError(f"channel_axis must be None or -1 (channels last), got {channel_axis!r}")
    bank = _templates(templates)
    if labels is None:
        names = np.arange(len(bank))
    else:
        names = np.asarray(list(labels), dtype=object)
        if names.shape != (len(bank),):
            raise ValueError(f"labels: one per template ({len(bank)}), got {len(names)}")
    channels = channel_axis is not None
    d = bank[0].ndim - channels
    if d < 1 or any(t.ndim != bank[0].ndim for t in bank):
        raise ValueError(
            "templates must all have the same number of axes, at least one sliding axis "
            f"(plus channels with channel_axis=-1); got shapes {[t.shape for t in bank]}"
        )
    scenes = _images(images, bank[0].ndim)
    if channels:
        _check_channels(bank, scenes)
    best_low = metric_of(metric).best == "min"
    masks = template_masks(
        mask, [t.shape for t in bank], _LETTERS[:d] + ("c" if channels else ""), _LETTERS[:d]
    ) or [None] * len(bank)
    options = {"metric": metric, "method": method, "memory": memory, "workers": workers}
    found = []  # (image, template, score, start) per candidate
    for shape in dict.fromkeys(t.shape for t in bank):  # one call per template shape
        index = np.array([i for i, t in enumerate(bank) if t.shape == shape])
        group = np.stack([bank[i] for i in index])
        weights = [masks[i] for i in index]
        if any(m is not None for m in weights):
            ones = np.ones(shape)
            options["mask"] = np.stack([ones if m is None else m for m in weights])
        else:
            options.pop("mask", None)
        for first, stack in scenes:
            found.append(
                _candidates(
                    stack, group, index, first, d, channels, threshold, min_distance, top, options
                )
            )
    image, template, score, start = (np.concatenate(parts) for parts in zip(*found, strict=True))
    sizes = np.array([t.shape[:d] for t in bank], np.intp).reshape(len(bank), d)
    stop = start + sizes[template]
    keep = _suppress(image, template, score, start, stop, best_low, max_overlap, top)
    return Matches(
        image[keep], template[keep], names[template[keep]], score[keep], start[keep], stop[keep]
    )


def _templates(templates) -> list[np.ndarray]:
    """The templates as a list: a list or tuple as it is, one array as one template."""
    if isinstance(templates, (list, tuple)):
        bank = [to_numpy(t, "templates")[0] for t in templates]
    else:
        bank = [to_numpy(templates, "templates")[0]]
    if not bank:
        raise ValueError("templates: give at least one")
    return bank


def _images(images, template_ndim: int) -> list[tuple[int, np.ndarray]]:
    """``(index of the first, stacked images)`` groups: one for an image or a batch, one
    per image for a list."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images: an empty list; give at least one image")
        out, first = [], 0
        for im in images:
            a = to_numpy(im, "images")[0]
            if a.ndim != template_ndim:
                raise ValueError(
                    f"images: each image of a list has the templates' {template_ndim} "
                    f"axes; got shape {a.shape}"
                )
            out.append((first, a[None]))
            first += 1
        return out
    a = to_numpy(images, "images")[0]
    if a.ndim == template_ndim:
        return [(0, a[None])]
    if a.ndim == template_ndim + 1:
        return [(0, a)]
    raise ValueError(
        f"images of shape {a.shape}: one image has the templates' {template_ndim} axes, a "
        f"batch one more"
    )


def _check_channels(bank: list[np.ndarray], scenes: list) -> None:
    """ValueError unless every template has the images' number of channels (last axis)."""
    for _, stack in scenes:
        c = stack.shape[-1]
        for t in bank:
            if t.shape[-1] != c:
                raise ValueError(
                    f"channel_axis=-1: the images' last axis holds {c} channels, but the "
                    f"last axis of a template of shape {t.shape} holds {t.shape[-1]}: "
                    f"every template needs the images' channels as its last axis"
                )


def _candidates(stack, group, index, first, d, channels, threshold, min_distance, top, options):
    """Every peak beyond ``threshold`` of the maps of ``stack`` against ``group``, as
    flat arrays: the peaks asked per map grow until no map fills them."""
    from .api import correlate

    sl = _LETTERS[:d]
    ch = "c" if channels else ""
    spec = f"n{sl}{ch},k{sl}{ch}->nk|{sl}"
    map_size = prod(
        max(s - t + 1, 0) for s, t in zip(stack.shape[1:], group.shape[1:], strict=False)
    )
    if map_size == 0:
        raise ValueError(
            f"a template of shape {group.shape[1:]} is larger than an image of shape "
            f"{stack.shape[1:]}"
        )
    k = min(max(top or 0, 256), map_size)
    while True:
        r = correlate(stack, group, spec, reduce=peaks(k, min_distance, threshold), **options)
        full = ~np.isnan(r.scores[..., -1])
        if not full.any() or k >= map_size:
            break
        k = min(4 * k, map_size)
    ok = ~np.isnan(r.scores)  # (N, K, k)
    n_idx, k_idx, _ = np.nonzero(ok)
    return (
        first + n_idx,
        index[k_idx],
        r.scores[ok].astype(np.float64),
        r.coords[ok].reshape(-1, d),
    )


def _suppress(image, template, score, start, stop, best_low, max_overlap, top) -> np.ndarray:
    """Indices of the hits kept, per image best first (ties: template, then position),
    each overlapping no better kept one by more than ``max_overlap``; at most ``top``
    per image."""
    key = score if best_low else -score
    order = np.lexsort((*start.T[::-1], template, key, image))
    kept: list[np.ndarray] = []
    for im in np.unique(image):
        idx = order[image[order] == im]
        lo, hi = start[idx], stop[idx]
        if compiled.enabled():  # the same loop, compiled
            kept.append(idx[compiled.kernels().greedy_suppression(lo, hi, max_overlap, top or 0)])
            continue
        volume = np.prod(hi - lo, axis=1)
        alive = np.ones(idx.size, bool)
        taken = []
        for j in range(idx.size):
            if not alive[j]:
                continue
            taken.append(j)
            if top is not None and len(taken) == top:
                break
            # the later candidates that this one (kept) overlaps too much
            inter = np.prod(
                np.clip(np.minimum(hi[j + 1 :], hi[j]) - np.maximum(lo[j + 1 :], lo[j]), 0, None),
                axis=1,
            )
            alive[j + 1 :] &= inter <= max_overlap * (volume[j + 1 :] + volume[j] - inter)
        kept.append(idx[taken])
    return np.concatenate(kept) if kept else np.zeros(0, np.intp)
