"""Seed 003: 1000 images 64x64 against one 5x5 filter, 'valid', float64, NumPy only: the
accepted answer's single ``einsum`` over an ``as_strided`` view, against one call with
the compiled kernels switched off (and, apart, with them).

Target: at least 3x faster, extra memory under 2x the output (traced with
``tracemalloc`` in a separate, untimed call).
"""

from __future__ import annotations

import tracemalloc

import numpy as np

import batchconv as bc

from .harness import Context, Section, assert_agree, interleaved, numpy_only, plan_peak, summary_row

NAME = "seed003"
SPEC = "bmn,mn->bmn|mn"
COLUMNS = [
    "einsum + as_strided ms",
    "ours direct ms",
    "ours fft ms",
    "ours auto ms",
    "auto chose",
    "einsum / ours auto",
    "extra memory / output",
    "ours auto numba ms",
    "einsum / ours auto numba",
]


def einsum_answer(x, f):
    shape = f.shape + (x.shape[0],) + tuple(np.subtract(x.shape[1:], f.shape) + 1)
    strides = (x.strides * 2)[1:]
    M = np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)
    return np.einsum("pq,pqbmn->bmn", f, M)


def run(ctx: Context) -> Section:
    sec = Section(
        NAME,
        "seed 003: 1000 images 64x64, one 5x5 filter, float64, NumPy only",
        "`bc.correlate(x, f, 'bmn,mn->bmn|mn')` against "
        "`einsum('pq,pqbmn->bmn', f, as_strided(x))`, interleaved.",
        COLUMNS,
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 64, 64))
    f = rng.standard_normal((5, 5))
    ref = einsum_answer(x, f)
    contenders = {"einsum + as_strided": lambda: einsum_answer(x, f)}
    for m in ("direct", "fft", "auto"):
        contenders[f"ours {m}"] = numpy_only(lambda m=m: bc.correlate(x, f, SPEC, method=m))
        assert_agree(contenders[f"ours {m}"](), ref, 1e-12 * 25 * 16, f"seed003 {m}")
    contenders["ours auto numba"] = lambda: bc.correlate(x, f, SPEC)
    t = interleaved(contenders, rounds=5 if ctx.quick else 9)
    bc.clear_plan_cache()
    tracemalloc.start()
    out = numpy_only(lambda: bc.correlate(x, f, SPEC))()
    extra = tracemalloc.get_traced_memory()[1] - out.nbytes
    tracemalloc.stop()
    plan = numpy_only(lambda: bc.plan(x, f, SPEC))()
    row = {f"{k} ms": v * 1e3 for k, v in t.items()}
    row.update(
        {
            "einsum / ours auto": t["einsum + as_strided"] / t["ours auto"],
            "einsum / ours auto numba": t["einsum + as_strided"] / t["ours auto numba"],
            "auto chose": plan.method,
            "extra memory / output": extra / out.nbytes,
        }
    )
    sec.rows.append(row)
    sec.summary.append(
        summary_row(
            NAME,
            "1000 x 64x64, 5x5",
            "einsum + as_strided",
            t["einsum + as_strided"],
            t["ours auto"],
            3.0,
            flops=plan.flops,
            peak=plan_peak(plan, ctx.peaks),
            note=f"NumPy only; extra memory {extra / out.nbytes:.2f}x the output (bar 2)",
            spread=(t.spread["einsum + as_strided"], t.spread["ours auto"]),
        )
    )
    sec.summary.append(
        summary_row(
            NAME,
            "1000 x 64x64, 5x5, with numba",
            "einsum + as_strided",
            t["einsum + as_strided"],
            t["ours auto numba"],
            None,
            note="compiled kernel",
            spread=(t.spread["einsum + as_strided"], t.spread["ours auto numba"]),
        )
    )
    return sec
