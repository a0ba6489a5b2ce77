"""Seed 001: a minibatch of images (S, S, N) convolved with one K x K kernel, 'valid',
float64, against SciPy's three ways (the seed's own timing table).

Targets: ``method="fft"`` at least 1.5x ``fftconvolve`` and ``auto`` at least 2x the best
of the three, on every config. ``--quick`` skips S = 1000.
"""

from __future__ import annotations

import numpy as np

import batchconv as bc

from .harness import Context, Section, assert_agree, interleaved, plan_peak, summary_row

NAME = "seed001"
CONFIGS = [
    (100, 50, 11),
    (1000, 50, 11),
    (100, 5, 11),
    (100, 500, 11),
    (100, 50, 5),
    (100, 50, 31),
    (100, 40, 25),  # issue 25: a 25x25 kernel, 1.88x in an earlier measurement
]
SPEC = "hwn,hw->hwn|hw"
COLUMNS = [
    "S, N, K",
    "fftconvolve ms",
    "ndimage ms",
    "signal.convolve ms",
    "ours fft ms",
    "ours auto ms",
    "auto chose",
    "fftconvolve / ours fft",
    "best scipy / ours auto",
]


def run(ctx: Context) -> Section:
    sec = Section(
        NAME,
        "seed 001: batch x one 2-D kernel, 'valid', float64",
        "`bc.convolve(a, b, 'hwn,hw->hwn|hw')` against `scipy.signal.fftconvolve(a, "
        "b[..., None], 'valid')`, `ndimage.convolve` (cropped) and "
        "`signal.convolve`, interleaved; 25 rounds (7 with --quick, 3 for S = 1000).",
        COLUMNS,
    )
    try:
        from scipy import ndimage, signal
    except ImportError:
        signal = ndimage = None
        sec.notes.append("SciPy not installed: anchors skipped, ours timed alone")
    rng = np.random.default_rng(0)
    for S, N, K in CONFIGS:
        if ctx.quick and S > 500:
            continue
        a = rng.standard_normal((S, S, N))
        b = rng.standard_normal((K, K))
        lo, hi = K // 2, S - (K - 1 - K // 2)
        anchors = {}
        if signal is not None:
            anchors["fftconvolve"] = lambda a=a, b=b: signal.fftconvolve(a, b[..., None], "valid")
            anchors["ndimage"] = lambda a=a, b=b, lo=lo, hi=hi: ndimage.convolve(a, b[..., None])[
                lo:hi, lo:hi
            ]
            if S * S * N * K * K < 1e9:  # signal.convolve's own choice; minutes at S=1000
                anchors["signal.convolve"] = lambda a=a, b=b: signal.convolve(
                    a, b[..., None], "valid"
                )
        ours = {
            "ours fft": lambda a=a, b=b: bc.convolve(a, b, SPEC, method="fft"),
            "ours auto": lambda a=a, b=b: bc.convolve(a, b, SPEC),
        }
        if anchors:
            ref = anchors["fftconvolve"]()
            bound = 1e-12 * K * K * np.abs(a).max() * np.abs(b).max() * 10
            for name, f in ours.items():
                assert_agree(f(), ref, bound, f"seed001 {S},{N},{K} {name}")
        rounds = 3 if S > 500 else (7 if ctx.quick else 25)
        t = interleaved({**anchors, **ours}, rounds=rounds)
        plan = bc.plan(a, b, SPEC, convolve=True)
        row = {"S, N, K": f"{S}, {N}, {K}", "auto chose": plan.method}
        row.update({f"{k} ms": v * 1e3 for k, v in t.items()})
        best = min((t[k] for k in anchors), default=None)
        if anchors:
            row["fftconvolve / ours fft"] = t["fftconvolve"] / t["ours fft"]
            row["best scipy / ours auto"] = best / t["ours auto"]
        sec.rows.append(row)
        sec.summary.append(
            summary_row(
                NAME,
                f"S={S} N={N} K={K}, auto",
                "best of 3 SciPy routes" if anchors else None,
                best,
                t["ours auto"],
                2.0,
                flops=plan.flops,
                peak=plan_peak(plan, ctx.peaks),
                spread=(None, t.spread["ours auto"]),
            )
        )
        sec.summary.append(
            summary_row(
                NAME,
                f"S={S} N={N} K={K}, method='fft'",
                "fftconvolve" if anchors else None,
                t.get("fftconvolve"),
                t["ours fft"],
                1.5,
                note="fft vs fftconvolve",
                spread=(t.spread.get("fftconvolve"), t.spread["ours fft"]),
            )
        )
        ctx.log(
            f"  {S},{N},{K}: ours auto {t['ours auto'] * 1e3:.3g} ms"
            + (f", best scipy {best * 1e3:.3g} ms" if best else "")
        )
    return sec
