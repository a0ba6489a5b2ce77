"""Template matching end to end: ``bc.match`` against the pipeline users build by hand
(``multi-template-matching``'s: ``cv2.matchTemplate(TM_CCOEFF_NORMED)`` per template,
scikit-image's ``peak_local_max`` on each map, greedy box suppression by IoU across the
templates), on scenes cut from scikit-image's ``gravel`` texture (a random texture when
scikit-image is missing), templates of three sizes cut from the scenes with a little
noise. Both find the same hits (checked); the bar is 5x, the issue's goal against
``multi-template-matching`` with 50 templates (whose loop is this anchor's).
"""

from __future__ import annotations

import numpy as np

import batchconv as bc

from .harness import Context, Section, interleaved, summary_row

NAME = "match"
COLUMNS = ["scenes", "templates", "hits", "by hand ms", "ours ms", "by hand / ours"]


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
        "`bc.match(scenes, templates, threshold=0.6)` against `cv2.matchTemplate` per "
        "template + `peak_local_max` + box NMS (IoU 0.25); the same hits checked.",
        COLUMNS,
    )
    scenes = _scenes(n_scenes, size)
    try:
        import cv2
        from skimage.feature import peak_local_max
    except ImportError:
        cv2 = None
        sec.notes.append("OpenCV or scikit-image not installed: anchor skipped")
    for n_tpl in (10, 50):
        templates = _templates(scenes, n_tpl)

        def ours(templates=templates):
            return bc.match(scenes, templates, threshold=0.6, max_overlap=0.25)

        contenders = {"ours": ours}
        hits = ours()
        if cv2 is not None:
            contenders["by hand"] = lambda templates=templates: by_hand(
                cv2, peak_local_max, scenes, templates, 0.6, 0.25
            )
            want = set(contenders["by hand"]())
            got = {
                (int(n), int(t), int(y), int(x))
                for n, t, (y, x) in zip(hits.image, hits.template, hits.start, strict=True)
            }
            if want != got:
                raise AssertionError(f"bc.match and the pipeline by hand differ: {want ^ got}")
        t = interleaved(contenders, rounds=3 if ctx.quick else 5)
        row = {"scenes": n_scenes, "templates": n_tpl, "hits": len(hits)}
        row.update({f"{k} ms": v * 1e3 for k, v in t.items()})
        if cv2 is not None:
            row["by hand / ours"] = t["by hand"] / t["ours"]
        sec.rows.append(row)
        sec.summary.append(
            summary_row(
                NAME,
                f"{n_tpl} templates, {n_scenes} x {size}x{size}",
                "matchTemplate + peak_local_max + NMS" if cv2 is not None else None,
                t.get("by hand"),
                t["ours"],
                5.0 if n_tpl == 50 else None,
                note=f"{len(hits)} hits",
                spread=(t.spread.get("by hand"), t.spread["ours"]),
            )
        )
    return sec
