"""The compat front-ends against the same call through bc.correlate (what the front-end
adds: its checks and reshapes) and against the library they imitate, interleaved medians.

    python benchmarks/compat_speed.py

Rows: compat.ndimage.correlate (512x512 float64, 7x7, mode 'reflect') against
scipy.ndimage.correlate; compat.torch.conv2d (NumPy arrays, 8 x 16 x 64x64 float32,
32 filters 3x3, padding 1) against F.conv2d on tensors; compat.tf.conv2d ('SAME', stride
2, NHWC) against the core call (TF not installed here); compat.cv2.matchTemplate
(TM_CCOEFF_NORMED, one channel) against OpenCV; compat.scipy_signal.correlate against
scipy.signal.correlate.
"""

from __future__ import annotations

import numpy as np

import batchconv as bc
from batchconv.bench.harness import interleaved
from batchconv.compat import ndimage as bc_ndimage
from batchconv.compat import tf as bc_tf
from batchconv.compat import torch as bc_torch


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    img, k = rng.random((512, 512)), rng.random((7, 7))
    from scipy import ndimage

    rows.append(
        (
            "compat.ndimage.correlate, 512x512 f64, 7x7",
            {
                "front-end": lambda: bc_ndimage.correlate(img, k),
                "bc.correlate": lambda: bc.correlate(
                    img, k, "hw,hw->hw|hw", mode=((3, 3), (3, 3)), padding="symmetric"
                ),
                "scipy.ndimage": lambda: ndimage.correlate(img, k),
            },
        )
    )
    x = rng.random((8, 16, 64, 64), dtype=np.float32)
    w = rng.random((32, 16, 3, 3), dtype=np.float32)
    rows.append(
        (
            "compat.torch.conv2d, 8x16x64x64 f32, 32 3x3, NumPy",
            {
                "front-end": lambda: bc_torch.conv2d(x, w, padding=1),
                "bc.correlate": lambda: bc.correlate(x, w, "nchw,ochw->nohw|hw", mode=(1, 1)),
            },
        )
    )
    try:
        import torch

        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        rows[-1][1]["torch F.conv2d"] = lambda: torch.nn.functional.conv2d(xt, wt, padding=1)
    except ImportError:
        pass
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    wh = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    rows.append(
        (
            "compat.tf.conv2d SAME stride 2, NHWC f32",
            {
                "front-end": lambda: bc_tf.conv2d(xh, wh, strides=2, padding="SAME"),
                "bc.correlate": lambda: bc.correlate(
                    xh, wh, "nhwc,hwco->nhwo|hw", mode=(0, 1), stride=2
                ),
            },
        )
    )
    from batchconv.compat import cv2 as bc_cv2
    from batchconv.compat import scipy_signal as bc_signal

    scene = rng.random((480, 640), dtype=np.float32)
    tpl = scene[100:148, 200:240].copy()
    rows.append(
        (
            "compat.cv2.matchTemplate TM_CCOEFF_NORMED, 480x640 f32, 48x40",
            {
                "front-end": lambda: bc_cv2.matchTemplate(scene, tpl, bc_cv2.TM_CCOEFF_NORMED),
                "bc.correlate": lambda: bc.correlate(scene, tpl, "hw,hw->hw|hw", metric="ncc"),
            },
        )
    )
    try:
        import cv2

        rows[-1][1]["OpenCV"] = lambda: cv2.matchTemplate(scene, tpl, cv2.TM_CCOEFF_NORMED)
    except ImportError:
        pass
    sig, ker = rng.standard_normal(200_000), rng.standard_normal(301)
    from scipy import signal

    rows.append(
        (
            "compat.scipy_signal.correlate, 200000 x 301 f64, 'same'",
            {
                "front-end": lambda: bc_signal.correlate(sig, ker, mode="same"),
                "bc.correlate": lambda: bc.correlate(sig, ker, "a,a->a|a", mode="same"),
                "scipy.signal": lambda: signal.correlate(sig, ker, mode="same"),
            },
        )
    )
    print("| front-end call | front-end ms | bc.correlate ms | front-end / core | library ms |")
    print("|---|---|---|---|---|")
    for name, calls in rows:
        t = interleaved(calls, rounds=9)
        lib = [v for k, v in t.items() if k not in ("front-end", "bc.correlate")]
        lib_text = f"{lib[0] * 1e3:.2f}" if lib else "(not installed)"
        print(
            f"| {name} | {t['front-end'] * 1e3:.2f} | {t['bc.correlate'] * 1e3:.2f} | "
            f"{t['front-end'] / t['bc.correlate']:.2f} | {lib_text} |"
        )


if __name__ == "__main__":
    main()
