"""NCC template matching: a 1000x900 float32 image against a bank of 16 templates 48x40,
and against one template, 'valid': OpenCV's ``matchTemplate(TM_CCOEFF_NORMED)`` (looped
over the bank) against ``bc.correlate(img[None], bank, metric="ncc")``.

Targets: at least 2x OpenCV for the bank; within 1.5x of it (ratio at
least 0.67) for one template. Our timings include the whole call; ``correlate`` remembers
the plans (and template spectra) of its last calls, as in a loop over frames with fixed
templates, and "cold" makes a new plan for every call (leaving that cache alone).
"""

from __future__ import annotations

import numpy as np

import batchconv as bc

from .harness import Context, Section, assert_agree, interleaved, plan_peak, summary_row

NAME = "ncc"
COLUMNS = [
    "templates",
    "image",
    "method",
    "opencv ms",
    "ours ms",
    "ours cold ms",
    "opencv / ours",
    "opencv / ours cold",
]


def run(ctx: Context) -> Section:
    shape = (500, 450) if ctx.quick else (1000, 900)
    sec = Section(
        NAME,
        f"NCC template matching, 48x40 templates on a {shape[0]}x{shape[1]} float32 image",
        "`bc.correlate(img[None], bank, metric='ncc')` against looped "
        "`cv2.matchTemplate(img, t, cv2.TM_CCOEFF_NORMED)`, checked within 2e-4.",
        COLUMNS,
    )
    rng = np.random.default_rng(0)
    img = rng.random(shape, dtype=np.float32)
    bank = np.stack(
        [
            img[y : y + 48, x : x + 40] + 0.1 * rng.random((48, 40), dtype=np.float32)
            for y, x in rng.integers(0, min(shape) - 60, size=(16, 2))
        ]
    )
    try:
        import cv2
    except ImportError:
        cv2 = None
        sec.notes.append(
            "OpenCV not installed (pip install opencv-python-headless): anchor skipped"
        )
    for n_tpl, bar in ((16, 2.0), (1, 1 / 1.5)):
        tpl = bank[:n_tpl]

        def cold(tpl=tpl):  # a new plan every call (the cache 'ours' uses left alone)
            return bc.plan(img[None], tpl, metric="ncc")(img[None])

        contenders = {
            "ours": lambda tpl=tpl: bc.correlate(img[None], tpl, metric="ncc"),
            "ours cold": cold,
        }
        if cv2 is not None:
            contenders["opencv"] = lambda tpl=tpl: [
                cv2.matchTemplate(img, t, cv2.TM_CCOEFF_NORMED) for t in tpl
            ]
            assert_agree(
                contenders["ours"]()[0], np.stack(contenders["opencv"]()), 2e-4, "ncc vs OpenCV"
            )
        t = interleaved(contenders, rounds=5 if ctx.quick else 7)
        plan = bc.plan(img[None], tpl, metric="ncc")
        row = {"templates": n_tpl, "image": f"{shape[0]}x{shape[1]}", "method": plan.method}
        row.update({f"{k} ms": v * 1e3 for k, v in t.items()})
        if cv2 is not None:
            row["opencv / ours"] = t["opencv"] / t["ours"]
            row["opencv / ours cold"] = t["opencv"] / t["ours cold"]
        sec.rows.append(row)
        sec.summary.append(
            summary_row(
                NAME,
                f"{n_tpl} template(s), {shape[0]}x{shape[1]}",
                "cv2.matchTemplate" if cv2 is not None else None,
                t.get("opencv"),
                t["ours"],
                bar,
                flops=plan.flops,
                peak=plan_peak(plan, ctx.peaks),
                note=f"cold {t['ours cold'] * 1e3:.3g} ms",
                spread=(t.spread.get("opencv"), t.spread["ours"]),
            )
        )
    return sec
