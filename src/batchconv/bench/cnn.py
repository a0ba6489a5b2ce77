"""Seed 002's ground: CNN layers, NHWC input x HWIO filters, float32, 'valid' (ours:
``bc.correlate(x, k, "nhwc,hwco->nhwo|hw", stride=s)``) against
``torch.nn.functional.conv2d`` on the CPU (oneDNN), given its own best layout (NCHW
tensors, made before timing). Both with every core.

Targets: at least 0.8x torch's speed with NumPy + SciPy alone; faster than torch
for kernels 7x7 and up. Ours is timed three ways in the same run: as a program that
imports torch gets it (oneDNN's convolution is a candidate for these NumPy arrays,
``bc.use_torch``), without torch but with the compiled (numba) kernels
(``bc.use_torch(False)``), and with NumPy + SciPy alone (``bc.use_torch(False)`` and
``bc.use_numba(False)``), the brief's bar. torch's own NHWC route (its convolution on
the channels-last view of the same NHWC array, no copy) is timed beside the NCHW anchor,
as a reference.
"""

from __future__ import annotations

import numpy as np

import batchconv as bc

from .. import compiled
from .harness import Context, Section, assert_agree, interleaved, numpy_only, summary_row

NAME = "cnn"
SPEC = "nhwc,hwco->nhwo|hw"
# (name, N, H=W, C_in, C_out, kernel, stride)
LAYERS = [
    ("3x3 64->64 56x56", 8, 56, 64, 64, 3, 1),
    ("3x3 128->128 28x28", 8, 28, 128, 128, 3, 1),
    ("7x7 stem 3->64 224x224 s2", 4, 224, 3, 64, 7, 2),
    ("7x7 32->32 64x64", 4, 64, 32, 32, 7, 1),
    ("11x11 16->32 96x96", 4, 96, 16, 32, 11, 1),
]
QUICK = {"3x3 128->128 28x28", "7x7 32->32 64x64"}
COLUMNS = [
    "layer",
    "torch ms",
    "torch NHWC ms",
    "ours ms",
    "ours cold ms",
    "method",
    "ours GFLOP/s",
    "torch / ours",
    "no torch ms",
    "no torch method",
    "torch / no torch",
    "NumPy+SciPy ms",
    "NumPy+SciPy method",
    "torch / NumPy+SciPy",
    "ours tensors ms",
    "tensors method",
    "torch / ours tensors",
]


def run(ctx: Context) -> Section:
    sec = Section(
        NAME,
        "seed 002: CNN layers, NHWC x HWIO, float32",
        "`bc.correlate(x, k, 'nhwc,hwco->nhwo|hw', stride=s)` (NumPy arrays; "
        "'ours tensors': the same call on torch CPU tensors, where the torch "
        "methods are candidates too) against "
        "`torch.nn.functional.conv2d` (CPU) on NCHW tensors made before timing; "
        "GFLOP/s count 2 flops per multiply-add. 'ours' calls `correlate` in a loop "
        "with the same filters (its plan cache keeps their spectra, as in an "
        "inference loop), with torch imported (oneDNN is a candidate); "
        "'no torch' the same inside `bc.use_torch(False)` (numba's compiled kernels "
        "on); 'NumPy+SciPy' inside `bc.use_torch(False)` and `bc.use_numba(False)` "
        "(NumPy and SciPy alone: the brief's bar); "
        "'ours cold' makes a new plan for every call; 'torch NHWC' is "
        "`F.conv2d` on the channels-last view of the NHWC array (a reference).",
        COLUMNS,
    )
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
        sec.notes.append("torch not installed: anchor skipped, ours timed alone")
    rng = np.random.default_rng(0)
    for name, N, S, ci, co, kk, s in LAYERS:
        if ctx.quick and name not in QUICK:
            continue
        x = rng.standard_normal((N, S, S, ci), dtype=np.float32)
        k = rng.standard_normal((kk, kk, ci, co), dtype=np.float32)

        def cold(x=x, k=k, s=s):  # a new plan every call (the cache, which the other
            # contenders use, left alone)
            return bc.plan(x, k, SPEC, stride=s)(x)

        def no_torch(x=x, k=k, s=s):
            with bc.use_torch(False):
                return bc.correlate(x, k, SPEC, stride=s)

        contenders = {
            "ours": lambda x=x, k=k, s=s: bc.correlate(x, k, SPEC, stride=s),
            "NumPy+SciPy": numpy_only(no_torch),
            "ours cold": cold,
        }
        if compiled.enabled():  # (else the same as NumPy+SciPy)
            contenders["no torch"] = no_torch
        ours = contenders["ours"]()
        bound = 1e-5 * kk * kk * ci * float(np.abs(x).max() * np.abs(k).max())
        for who in ("no torch", "NumPy+SciPy"):
            if who in contenders:
                assert_agree(contenders[who](), ours, bound, f"cnn {name} ({who})")
        tensors = {}
        if torch is not None:  # the same call on NHWC torch CPU tensors (target: 0.8x),
            # timed against torch apart
            xh, kh = torch.from_numpy(x), torch.from_numpy(k)
            tensors["ours tensors"] = lambda xh=xh, kh=kh, s=s: bc.correlate(xh, kh, SPEC, stride=s)
        if torch is not None:
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            kt = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
            with torch.no_grad():
                contenders["torch"] = lambda xt=xt, kt=kt, s=s: F.conv2d(xt, kt, stride=s)
                channels_last = torch.from_numpy(x).permute(0, 3, 1, 2)  # (a view)
                contenders["torch NHWC"] = lambda xl=channels_last, kt=kt, s=s: F.conv2d(
                    xl, kt, stride=s
                )
                ref = contenders["torch"]().numpy().transpose(0, 2, 3, 1)
            assert_agree(ours, ref, bound, f"cnn {name}")
        with torch.no_grad() if torch is not None else _null():
            t = interleaved(contenders, rounds=5 if ctx.quick else 9)
            if tensors:
                tensors["torch"] = contenders["torch"]
                tt = interleaved(tensors, rounds=5 if ctx.quick else 9)
        plan = bc.plan(x, k, SPEC, stride=s)
        methods = {"ours": plan.method}
        with bc.use_torch(False):
            methods["no torch"] = bc.plan(x, k, SPEC, stride=s).method
            with compiled.use_numba(False):
                methods["NumPy+SciPy"] = bc.plan(x, k, SPEC, stride=s).method
        flops = 2.0 * ours.size * kk * kk * ci
        row = {
            "layer": name,
            "ours ms": t["ours"] * 1e3,
            "ours cold ms": t["ours cold"] * 1e3,
            "method": plan.method,
            "ours GFLOP/s": flops / t["ours"] / 1e9,
        }
        for who in ("no torch", "NumPy+SciPy"):
            if who in t:
                row[f"{who} ms"] = t[who] * 1e3
                row[f"{who} method"] = methods[who]
        if "torch" in t:
            row["torch ms"] = t["torch"] * 1e3
            row["torch NHWC ms"] = t["torch NHWC"] * 1e3
            row["torch / ours"] = t["torch"] / t["ours"]
            for who in ("no torch", "NumPy+SciPy"):
                if who in t:
                    row[f"torch / {who}"] = t["torch"] / t[who]
            row["ours tensors ms"] = tt["ours tensors"] * 1e3
            row["tensors method"] = bc.plan(xh, kh, SPEC, stride=s).method
            row["torch / ours tensors"] = tt["torch"] / tt["ours tensors"]
            assert_agree(tensors["ours tensors"]().numpy(), ref, bound, f"cnn {name} (tensors)")
        sec.rows.append(row)
        bar = 1.0 if kk >= 7 else 0.8
        # the row whose settings 'ours cold' shares (torch imported, numba as installed):
        # its own, else (torch's methods not picked) the row without torch that runs numba
        ours_row = plan.method != methods["no torch"]
        cold_row = "ours" if ours_row else "no torch" if "no torch" in t else "NumPy+SciPy"
        for case, who in (
            (f"{name}, N={N}", "ours"),
            (f"{name}, N={N}, no torch (numba)", "no torch"),
            (f"{name}, N={N}, NumPy+SciPy alone", "NumPy+SciPy"),
        ):
            method = methods[who]
            if who not in t or (who == "ours" and not ours_row):
                continue  # (torch's methods not picked: the rows without torch say it)
            sec.summary.append(
                summary_row(
                    NAME,
                    case,
                    "torch conv2d (CPU)" if torch is not None else None,
                    t.get("torch"),
                    t[who],
                    bar,
                    flops=flops,
                    peak=ctx.peaks.get("gemm_float32"),
                    note=f"{method}; "
                    + (f"cold {t['ours cold'] * 1e3:.3g} ms; " if who == cold_row else "")
                    + "direct-equivalent flops, % of the GEMM peak",
                    spread=(t.spread.get("torch"), t.spread[who]),
                )
            )
        ctx.log(
            f"  {name}: ours {t['ours'] * 1e3:.3g} ms"
            + (f", torch {t['torch'] * 1e3:.3g} ms" if "torch" in t else "")
        )
    return sec


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
