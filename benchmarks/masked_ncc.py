"""Masked NCC (``mask=``) against OpenCV's masked ``matchTemplate`` looped, and against
the same call without a mask: what a mask costs.

    python benchmarks/masked_ncc.py [N SIZE K T]

N images of SIZE x SIZE float32 against K templates of T x T (default 4, 512, 16, 31),
ncc (TM_CCOEFF_NORMED), binary masks: one for all templates, then one per template.
Results checked against OpenCV (within 2e-4) before timing; interleaved medians.
"""

from __future__ import annotations

import sys

import numpy as np

import batchconv as bc
from batchconv.bench.harness import interleaved


def main(n: int = 4, size: int = 512, k: int = 16, t: int = 31) -> None:
    import cv2

    rng = np.random.default_rng(0)
    x = rng.random((n, size, size), dtype=np.float32)
    w = rng.random((k, t, t), dtype=np.float32)
    masks = {
        "one mask": (rng.random((t, t)) < 0.7).astype(np.float32),
        "a mask per template": (rng.random((k, t, t)) < 0.7).astype(np.float32),
    }
    print(f"{n} images {size}x{size}, {k} templates {t}x{t}, ncc, float32")
    print("| masks | OpenCV loop ms | ours ms | OpenCV / ours | ours unmasked ms |")
    print("|---|---|---|---|---|")
    for name, m in masks.items():
        per = m if m.ndim == 3 else np.broadcast_to(m, w.shape)

        def opencv(per=per):
            return np.stack(
                [
                    np.stack(
                        [
                            cv2.matchTemplate(im, w[j], cv2.TM_CCOEFF_NORMED, mask=per[j])
                            for j in range(k)
                        ]
                    )
                    for im in x
                ]
            )

        def ours(m=m):
            return bc.correlate(x, w, metric="ncc", mask=m)

        def unmasked():
            return bc.correlate(x, w, metric="ncc")

        np.testing.assert_allclose(ours(), opencv(), atol=2e-4)
        tm = interleaved({"opencv": opencv, "ours": ours, "unmasked": unmasked}, rounds=5)
        print(
            f"| {name} | {tm['opencv'] * 1e3:.0f} | {tm['ours'] * 1e3:.0f} | "
            f"{tm['opencv'] / tm['ours']:.2f} | {tm['unmasked'] * 1e3:.0f} |"
        )


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
