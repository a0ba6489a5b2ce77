"""Seed 004: a sliding similarity that is not a dot product. 8 RGB images 3x256x256
against one 3x16x16 kernel, stride 2, float32: the seed's accepted answer (torch
``unfold``, then 1 - mean |patch - kernel|) on the CPU, against
``1 - bc.correlate(img, knl, "bchw,chw->bhw|hw", metric="sad", stride=2) / knl.size``,
with the compiled kernel and with NumPy alone, and a bank of 8 kernels.

Target: at least 30x the ``unfold`` recipe. Without torch, the anchor is
the same recipe in NumPy (``sliding_window_view``).
"""

from __future__ import annotations

import numpy as np

import batchconv as bc
from batchconv import compiled

from .harness import Context, Section, assert_agree, interleaved, numpy_only, summary_row

NAME = "seed004"
COLUMNS = [
    "images",
    "anchor",
    "anchor ms",
    "ours ms",
    "ours numpy ms",
    "ours bank of 8 ms",
    "ours Gterms/s",
    "anchor / ours",
    "anchor / ours numpy",
]


def unfold_answer(torch, image, kernel, stride):
    """The seed's accepted answer, verbatim apart from names."""
    patched = image.unfold(-2, kernel.shape[-2], stride)
    patched = patched.unfold(-2, kernel.shape[-1], stride)
    patched = patched.permute(0, 2, 3, 1, 4, 5)
    diff = (patched - kernel.unsqueeze(0).unsqueeze(0).unsqueeze(0)).abs()
    return 1 - diff.sum(dim=(-3, -2, -1)) / kernel.nelement()


def numpy_answer(image, kernel, stride):
    """The same recipe in NumPy."""
    win = np.lib.stride_tricks.sliding_window_view(image, kernel.shape[1:], axis=(2, 3))
    win = win[:, :, ::stride, ::stride].transpose(0, 2, 3, 1, 4, 5)
    return 1 - np.abs(win - kernel).sum(axis=(-3, -2, -1)) / kernel.size


def ours(img, knl, stride):
    return 1 - bc.correlate(img, knl, "bchw,chw->bhw|hw", metric="sad", stride=stride) / knl.size


def ours_numpy(img, knl, stride):
    return numpy_only(lambda: ours(img, knl, stride))()


def run(ctx: Context) -> Section:
    sec = Section(
        NAME,
        "seed 004: sliding SAD with stride 2, 3x256x256 images, 3x16x16 kernel",
        "`1 - bc.correlate(img, knl, 'bchw,chw->bhw|hw', metric='sad', stride=2) / "
        "knl.size` against the seed's torch `unfold` answer on the CPU; 'ours "
        "numpy' with the compiled kernel switched off.",
        COLUMNS,
    )
    rng = np.random.default_rng(0)
    n = 2 if ctx.quick else 8
    img = rng.random((n, 3, 256, 256), dtype=np.float32)
    knl = rng.random((3, 16, 16), dtype=np.float32)
    bank = rng.random((8, 3, 16, 16), dtype=np.float32)
    contenders = {
        "ours": lambda: ours(img, knl, 2),
        "ours numpy": lambda: ours_numpy(img, knl, 2),
        "ours bank of 8": lambda: bc.correlate(
            img, bank, "bchw,kchw->bkhw|hw", metric="sad", stride=2
        ),
    }
    try:
        import torch

        ti, tk = torch.from_numpy(img), torch.from_numpy(knl)
        anchor = "torch unfold"
        contenders[anchor] = lambda: unfold_answer(torch, ti, tk, 2)
        ref = unfold_answer(torch, ti, tk, 2).numpy().astype(np.float64)
    except ImportError:
        anchor = "numpy unfold recipe"
        contenders[anchor] = lambda: numpy_answer(img, knl, 2)
        ref = numpy_answer(img, knl, 2).astype(np.float64)
        sec.notes.append("torch not installed: the anchor is the NumPy version of the recipe")
    assert_agree(ours(img, knl, 2), ref, 1e-5, "seed004 sad")
    assert_agree(ours_numpy(img, knl, 2), ref, 1e-5, "seed004 sad numpy")
    t = interleaved(contenders, rounds=5 if ctx.quick else 7)
    terms = n * 121 * 121 * 3 * 16 * 16
    sec.rows.append(
        {
            "images": n,
            "anchor": anchor,
            "anchor ms": t[anchor] * 1e3,
            "ours ms": t["ours"] * 1e3,
            "ours numpy ms": t["ours numpy"] * 1e3,
            "ours bank of 8 ms": t["ours bank of 8"] * 1e3,
            "ours Gterms/s": terms / t["ours"] / 1e9,
            "anchor / ours": t[anchor] / t["ours"],
            "anchor / ours numpy": t[anchor] / t["ours numpy"],
        }
    )
    kernel = "compiled kernel" if compiled.enabled() else "NumPy (numba not installed)"
    bar = 30.0 if anchor == "torch unfold" else None  # the target is torch's recipe
    sec.summary.append(
        summary_row(
            NAME,
            f"{n} x 3x256x256, 16x16, stride 2",
            anchor,
            t[anchor],
            t["ours"],
            bar,
            note=kernel,
            spread=(t.spread[anchor], t.spread["ours"]),
        )
    )
    sec.summary.append(
        summary_row(
            NAME,
            f"{n} x 3x256x256, NumPy alone",
            anchor,
            t[anchor],
            t["ours numpy"],
            None,
            note="compiled kernel off",
        )
    )
    return sec
