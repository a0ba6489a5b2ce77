"""NCC template matching: a 1000x900 float32 image against a bank of 16 templates 48x40,
and against one template, 'valid': OpenCV's ``matchTemplate(TM_CCOEFF_NORMED)`` (looped
over the bank) against ``bc.correlate(img[None], bank, metric="ncc")``.

Our timings include the whole call. ``bc.correlate`` remembers the plans (and template
spectra) of its last calls, as it would in a loop over frames with fixed templates; the
"cold" column clears that cache before every call, so that the templates are transformed
each time.

    python benchmarks/ncc_templates.py        # OpenCV (opencv-python-headless) needed
"""

from __future__ import annotations

import numpy as np
from _harness import assert_agree, interleaved, table

import batchconv as bc


def run(quick: bool = False) -> list[dict]:
    rng = np.random.default_rng(0)
    shape = (500, 450) if quick else (1000, 900)
    img = rng.random(shape, dtype=np.float32)
    bank = np.stack([img[y:y + 48, x:x + 40] + 0.1 * rng.random((48, 40), dtype=np.float32)
                     for y, x in rng.integers(0, min(shape) - 60, size=(16, 2))])
    try:
        import cv2
    except ImportError:
        cv2 = None
    rows = []
    for n_tpl in (16, 1):
        tpl = bank[:n_tpl]

        def cold(tpl=tpl):
            bc.clear_plan_cache()
            return bc.correlate(img[None], tpl, metric="ncc")

        contenders = {"ours": lambda tpl=tpl: bc.correlate(img[None], tpl, metric="ncc"),
                      "ours cold": cold}
        if cv2 is not None:
            contenders["opencv"] = lambda tpl=tpl: [
                cv2.matchTemplate(img, t, cv2.TM_CCOEFF_NORMED) for t in tpl]
            theirs = np.stack(contenders["opencv"]())
            assert_agree(contenders["ours"]()[0], theirs, 2e-4, "ncc vs OpenCV")
        t = interleaved(contenders, rounds=7)
        row = {"templates": n_tpl, "image": f"{shape[0]}x{shape[1]}",
               "method": bc.plan(img[None], tpl, metric="ncc").method}
        row.update({f"{k} ms": v * 1e3 for k, v in t.items()})
        if cv2 is not None:
            row["opencv / ours"] = t["opencv"] / t["ours"]
            row["opencv / ours cold"] = t["opencv"] / t["ours cold"]
        else:
            row["opencv / ours"] = "OpenCV not installed"
        rows.append(row)
    return rows


COLUMNS = ["templates", "image", "method", "opencv ms", "ours ms", "ours cold ms",
           "opencv / ours", "opencv / ours cold"]

if __name__ == "__main__":
    import sys

    print(table(run(quick="--quick" in sys.argv), COLUMNS))
