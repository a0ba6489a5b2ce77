"""Template matching end to end: ``bc.match`` against ``multi-template-matching``'s
``matchTemplates`` (the package users install for this; skipped when it is not
installed) and against the pipeline written by hand (``cv2.matchTemplate(
TM_CCOEFF_NORMED)`` per template, scikit-image's ``peak_local_max`` on each map, greedy
box suppression by IoU across the templates), on scenes cut from scikit-image's
``gravel`` texture (a random texture when scikit-image is missing), templates of six
shapes cut from the scenes with a little noise. All find the same hits (checked); the
bar is 5x ``multi-template-matching`` with 50 templates (the issue's goal).
"""

from __future__ import annotations

import numpy as np

import batchconv as bc

from .harness import Context, Section, interleaved, summary_row

NAME = "match"
COLUMNS = [
    "scenes",
    "templates",
    "hits",
    "MTM ms",
    "by hand ms",
    "ours ms",
    "MTM / ours",
    "by hand / ours",
]


def multi_template_matching(mtm, cv2, scenes, templates, threshold, max_overlap):
    """``MTM.matchTemplates`` per scene, its hits as ``(scene, template, row, col)``."""
    listed = [(str(i), t) for i, t in enumerate(templates)]
    found = []
    for n, scene in enumerate(scenes):
        hits = mtm.matchTemplates(
            listed, scene, cv2.TM_CCOEFF_NORMED, score_threshold=threshold, maxOverlap=max_overlap
        )
        found += [(n, int(label), box[1], box[0]) for label, box, _ in hits]
    return found


def _scenes(n: int, size: int) -> np.ndarray:
    try:
        from skimage import data

        texture = data.gravel().astype(np.float32) / 255  # 512 x 512
    except ImportError:
        texture = np.random.default_rng(1).random((512, 512), dtype=np.float32)
    reps = -(-size // texture.shape[0])
    tiled = np.tile(texture, (reps + 1, reps + 1))
    return np.stack([tiled[37 * i : 37 * i + size, 53 * i : 53 * i + size] for i in range(n)])


def _templates(scenes: np.ndarray, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    out = []
    for i in range(n):
        h, w = (16, 24, 32)[i % 3], (20, 28)[i % 2]
        s = scenes[i % len(scenes)]
        y, x = rng.integers(0, s.shape[0] - h), rng.integers(0, s.shape[1] - w)
        noise = 0.05 * rng.standard_normal((h, w)).astype(np.float32)
        out.append(np.ascontiguousarray(s[y : y + h, x : x + w] + noise))
    return out


def by_hand(cv2, peak_local_max, scenes, templates, threshold, max_overlap):
    """Per scene: matchTemplate per template, peak_local_max, then greedy box NMS."""
    found = []
    for n, scene in enumerate(scenes):
        hits = []
        for t, tpl in enumerate(templates):
            m = cv2.matchTemplate(scene, tpl, cv2.TM_CCOEFF_NORMED)
            for y, x in peak_local_max(m, threshold_abs=threshold, exclude_border=False):
                hits.append((-float(m[y, x]), t, int(y), int(x), *tpl.shape))
        hits.sort()
        kept: list[tuple] = []
        for h in hits:
            if all(_iou(h, k) <= max_overlap for k in kept):
                kept.append(h)
        found += [(n, t, y, x) for _, t, y, x, _, _ in kept]
    return found


def _iou(a, b) -> float:
    iy = max(0, min(a[2] + a[4], b[2] + b[4]) - max(a[2], b[2]))
    ix = max(0, min(a[3] + a[5], b[3] + b[5]) - max(a[3], b[3]))
    inter = iy * ix
    return inter / (a[4] * a[5] + b[4] * b[5] - inter)


def run(ctx: Context) -> Section:
    n_scenes, size = (2, 256) if ctx.quick else (4, 512)
    sec = Section(
        NAME,
        f"template matching end to end, {n_scenes} scenes of {size}x{size} float32",
        "`bc.match(scenes, templates, threshold=0.6)` against multi-template-matching's "
        "`matchTemplates` (MTM) and against `cv2.matchTemplate` per template + "
        "`peak_local_max` + box NMS (IoU 0.25) by hand; the same hits checked.",
        COLUMNS,
    )
    scenes = _scenes(n_scenes, size)
    try:
        import cv2
        from skimage.feature import peak_local_max
    except ImportError:
        cv2 = None
        sec.notes.append("OpenCV or scikit-image not installed: anchors skipped")
    try:
        import MTM as mtm
    except ImportError:
        mtm = None
        sec.notes.append("multi-template-matching not installed: its column skipped")
    for n_tpl in (10, 50):
        templates = _templates(scenes, n_tpl)

        def ours(templates=templates):
            return bc.match(scenes, templates, threshold=0.6, max_overlap=0.25)

        contenders = {"ours": ours}
        hits = ours()
        got = {
            (int(n), int(t), int(y), int(x))
            for n, t, (y, x) in zip(hits.image, hits.template, hits.start, strict=True)
        }
        if cv2 is not None:
            contenders["by hand"] = lambda templates=templates: by_hand(
                cv2, peak_local_max, scenes, templates, 0.6, 0.25
            )
            if mtm is not None:
                contenders["MTM"] = lambda templates=templates: multi_template_matching(
                    mtm, cv2, scenes, templates, 0.6, 0.25
                )
            for name, anchor in contenders.items():
                if name == "ours":
                    continue
                want = set(anchor())
                if want != got:
                    raise AssertionError(f"bc.match and {name} differ: {want ^ got}")
        t = interleaved(contenders, rounds=3 if ctx.quick else 5)
        row = {"scenes": n_scenes, "templates": n_tpl, "hits": len(hits)}
        row.update({f"{k} ms": v * 1e3 for k, v in t.items()})
        for name in ("MTM", "by hand"):
            if name in t:
                row[f"{name} / ours"] = t[name] / t["ours"]
        sec.rows.append(row)
        anchors = [("MTM", "multi-template-matching (matchTemplates)", 5.0)]
        anchors.append(("by hand", "matchTemplate + peak_local_max + NMS", None))
        for name, label, bar in anchors:
            sec.summary.append(
                summary_row(
                    NAME,
                    f"{n_tpl} templates, {n_scenes} x {size}x{size}",
                    label if name in t else None,
                    t.get(name),
                    t["ours"],
                    bar if n_tpl == 50 else None,
                    note=f"{len(hits)} hits",
                    spread=(t.spread.get(name), t.spread["ours"]),
                )
            )
    return sec
