"""Seed 004: a sliding similarity that is not a dot product. 8 RGB images 3x256x256
against one 3x16x16 kernel, stride 2, float32: the seed's accepted answer (torch
``unfold``, then 1 - mean |patch - kernel|) on the CPU, against
``1 - bc.correlate(img, knl, "bchw,chw->bhw|hw", metric="sad", stride=2) / knl.size``.
Also the NumPy fallback (numba switched off) and a bank of 8 kernels.

    python benchmarks/seed004.py          # torch needed for the anchor
"""

from __future__ import annotations

import numpy as np
from _harness import assert_agree, interleaved, table

import batchconv as bc
from batchconv import compiled


def unfold_answer(torch, image, kernel, stride):
    """The seed's accepted answer, verbatim apart from names."""
    patched = image.unfold(-2, kernel.shape[-2], stride)
    patched = patched.unfold(-2, kernel.shape[-1], stride)
    patched = patched.permute(0, 2, 3, 1, 4, 5)
    diff = (patched - kernel.unsqueeze(0).unsqueeze(0).unsqueeze(0)).abs()
    return 1 - diff.sum(dim=(-3, -2, -1)) / kernel.nelement()


def ours(img, knl, stride):
    return 1 - bc.correlate(img, knl, "bchw,chw->bhw|hw", metric="sad", stride=stride) / knl.size


def ours_numpy(img, knl, stride):
    old = compiled.USE_NUMBA
    compiled.USE_NUMBA = False
    try:
        return ours(img, knl, stride)
    finally:
        compiled.USE_NUMBA = old


def run(quick: bool = False) -> list[dict]:
    rng = np.random.default_rng(0)
    n = 2 if quick else 8
    img = rng.random((n, 3, 256, 256), dtype=np.float32)
    knl = rng.random((3, 16, 16), dtype=np.float32)
    bank = rng.random((8, 3, 16, 16), dtype=np.float32)
    contenders = {"ours": lambda: ours(img, knl, 2),
                  "ours numpy": lambda: ours_numpy(img, knl, 2),
                  "ours bank of 8": lambda: bc.correlate(img, bank, "bchw,kchw->bkhw|hw",
                                                         metric="sad", stride=2)}
    ref = np.asarray(ours_numpy(img, knl, 2), np.float64)
    try:
        import torch

        ti, tk = torch.from_numpy(img), torch.from_numpy(knl)
        contenders["torch unfold"] = lambda: unfold_answer(torch, ti, tk, 2)
        ref = unfold_answer(torch, ti, tk, 2).numpy().astype(np.float64)
    except ImportError:
        torch = None
    assert_agree(ours(img, knl, 2), ref, 1e-5, "seed004 sad")
    assert_agree(ours_numpy(img, knl, 2), ref, 1e-5, "seed004 sad numpy")
    t = interleaved(contenders, rounds=7)
    row = {f"{k} ms": v * 1e3 for k, v in t.items()}
    row["shape"] = f"{n}x3x256x256, 3x16x16, stride 2"
    row["numba"] = "yes" if compiled.enabled() else "no"
    terms = n * 121 * 121 * 3 * 16 * 16
    row["ours Gterms/s"] = terms / t["ours"] / 1e9
    if torch is not None:
        row["unfold / ours"] = t["torch unfold"] / t["ours"]
        row["unfold / ours numpy"] = t["torch unfold"] / t["ours numpy"]
    else:
        row["unfold / ours"] = "torch not installed"
    return [row]


COLUMNS = ["shape", "numba", "torch unfold ms", "ours ms", "ours numpy ms",
           "ours bank of 8 ms", "ours Gterms/s", "unfold / ours", "unfold / ours numpy"]

if __name__ == "__main__":
    import sys

    print(table(run(quick="--quick" in sys.argv), COLUMNS))
