"""Seed 000: every image against every filter, 3-D 'same' correlation, max over the
result (``"nhwd,khwd->nk|hwd"``), 96x96x3 float32: the seed's full scale is 500 images x
1000 filters (``--full``: with the default budget and with ``memory="2GB"``, each in a
fresh subprocess so that its peak resident memory can be reported); ``--quick`` runs 100 x
200 pairs in process (one timed call after a warm-up).

The anchor is the seed's own code (``cdist`` with ``scipy.signal.correlate(method='fft')``
and ``max``, float64), timed pair by pair on 8 x 10 pairs in the same run (the median
pair); its answers there are checked against ours. Targets: at least 30x
per pair; the full scale in under 3 minutes within 2 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

import batchconv as bc
from batchconv.costs import flops
from batchconv.problem import make_problem

from .harness import Context, Section, plan_peak, summary_row

NAME = "seed000"
SPEC = "nhwd,khwd->nk|hwd"
SHAPE = (96, 96, 3)
COLUMNS = [
    "pairs",
    "memory",
    "budget MiB",
    "ours s",
    "ours us/pair",
    "anchor ms/pair",
    "anchor / ours per pair",
    "peak extra RSS MiB",
    "plan peak MiB",
    "max rel err (anchor pairs)",
]


def data(n: int, k: int):
    rng = np.random.default_rng(0)
    return (rng.random((n, *SHAPE), dtype=np.float32), rng.random((k, *SHAPE), dtype=np.float32))


def _ours_in_subprocess(n: int, k: int, memory) -> dict:
    """Time bc.correlate on n x k pairs in a fresh process; its peak RSS too."""
    code = f"""
import json, resource, time
import batchconv as bc
from batchconv.costs import flops
from batchconv.problem import make_problem
from batchconv.bench.seed000 import data, SPEC
x, w = data({n}, {k})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
r = bc.correlate(x, w, SPEC, mode="same", reduce="max", memory={memory!r})
t = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
p = bc.plan(x, w, SPEC, mode="same", reduce="max", memory={memory!r})
print(json.dumps(dict(seconds=t, peak_extra_mib=(peak - base) / 1024,
                      plan_peak_mib=p.peak_bytes / 2**20, budget_mib=p.memory / 2**20)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _in_process(n: int, k: int, memory) -> dict:
    x, w = data(n, k)
    bc.correlate(x[:2], w[:2], SPEC, mode="same", reduce="max")  # warm up
    t0 = time.perf_counter()
    bc.correlate(x, w, SPEC, mode="same", reduce="max", memory=memory)
    t = time.perf_counter() - t0
    p = bc.plan(x, w, SPEC, mode="same", reduce="max", memory=memory)
    return dict(
        seconds=t,
        peak_extra_mib=None,
        plan_peak_mib=p.peak_bytes / 2**20,
        budget_mib=p.memory / 2**20,
    )


def run(ctx: Context) -> Section:
    sec = Section(
        NAME,
        "seed 000: all pairs, 3-D 'same', max, 96x96x3 float32",
        "`bc.correlate(x, w, 'nhwd,khwd->nk|hwd', mode='same', reduce='max')` "
        "against the seed's `cdist` + `scipy.signal.correlate(method='fft')` + "
        "`max` (float64), timed per pair on a few pairs in the same run. The full "
        "scale runs in fresh subprocesses (peak extra RSS).",
        COLUMNS,
    )
    n, k = (100, 200) if ctx.quick else (500, 1000)
    na, ka = (3, 4) if ctx.quick else (8, 10)
    x, w = data(na, ka)
    ours_small = bc.correlate(x, w, SPEC, mode="same", reduce="max")
    try:
        from scipy.signal import correlate
        from scipy.spatial.distance import cdist

        xd, wd = x.astype(np.float64), w.astype(np.float64)

        pair_times: list[float] = []

        def xcorr(u, v):  # the seed's function, float64 as the seed's np.random.random
            t0 = time.perf_counter()
            r = np.max(correlate(u.reshape(SHAPE), v.reshape(SHAPE), mode="same", method="fft"))
            pair_times.append(time.perf_counter() - t0)
            return r

        ref = cdist(xd.reshape(na, -1), wd.reshape(ka, -1), xcorr)
        anchor = float(np.median(pair_times))  # per pair: the median over the pairs
        err = float(np.max(np.abs(ours_small - ref) / np.abs(ref)))
        assert err < 1e-5, f"seed000: ours differs from the seed's answer by {err:.3g} (rel)"
    except ImportError:
        anchor, err = None, None
        sec.notes.append("SciPy not installed: the seed's code cannot run; ours timed alone")
    plan = bc.plan(*data(2, 2), SPEC, mode="same", reduce="max")  # the method and its peak
    problem = make_problem(
        (n, *SHAPE), np.float32, (k, *SHAPE), np.float32, SPEC, mode="same", reduce="max"
    )
    flops_per_pair = flops(problem, plan.method) / (n * k)  # items' transforms shared
    for memory in (None,) if ctx.quick else (None, "2GB"):
        ctx.log(f"  {n} x {k} pairs, memory={memory or 'default'} ...")
        r = (_in_process if ctx.quick else _ours_in_subprocess)(n, k, memory)
        per_pair = r["seconds"] / (n * k)
        sec.rows.append(
            {
                "pairs": f"{n} x {k}",
                "memory": memory or "default",
                "budget MiB": r["budget_mib"],
                "ours s": r["seconds"],
                "ours us/pair": per_pair * 1e6,
                "anchor ms/pair": anchor * 1e3 if anchor else None,
                "anchor / ours per pair": anchor / per_pair if anchor else None,
                "peak extra RSS MiB": r["peak_extra_mib"],
                "plan peak MiB": r["plan_peak_mib"],
                "max rel err (anchor pairs)": err,
            }
        )
        note = f"{r['seconds']:.0f} s for {n} x {k} pairs"
        if r["peak_extra_mib"] is not None:
            note += f", {r['peak_extra_mib']:.0f} MiB extra RSS (bars: 180 s, 2 GB)"
        sec.summary.append(
            summary_row(
                NAME,
                f"{n} x {k} pairs, per pair, memory={memory or 'default'}",
                "cdist + signal.correlate" if anchor else None,
                anchor,
                per_pair,
                30.0,
                flops=flops_per_pair,
                peak=plan_peak(plan, ctx.peaks),
                note=note,
            )
        )
    return sec
