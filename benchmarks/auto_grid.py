"""The planner's choice on a grid of problems: ``method="auto"`` against every forced
method (direct, fft, and winograd where it applies), 1-D to 3-D, kernels 1..64, batch
1..1000, with and without channels and banks.

For each problem the plans are made first (planning is not timed), then the methods run
interleaved; the table gives each method's median, ``auto / best`` (auto's own time over the
faster forced method's: 1.0 when auto chose the fastest, give or take run-to-run noise)
and ``chosen / best`` (the forced time of the method auto chose over the best one: the
same question without the noise of timing one plan twice). The issue's bar: auto never
more than 1.5x the best, within 1.1x in the median.

    python benchmarks/auto_grid.py              # the whole grid, a few minutes
    python benchmarks/auto_grid.py --json F     # also write the raw timings (for fitting
                                                # the cost model, see planner.py)
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import batchconv as bc
from batchconv.bench.harness import interleaved, table

# (name, spec, x shape, w shape, options, dtype)
F32, F64 = np.float32, np.float64
GRID = [
    ("1d N1000 S1000 T3", None, (1000, 1000), (3,), {}, F64),
    ("1d N1000 S1000 T64", None, (1000, 1000), (64,), {}, F64),
    ("1d N100 S10000 K8 T16", None, (100, 10000), (8, 16), {}, F32),
    ("1d N1 S100000 T5", None, (1, 100_000), (5,), {}, F64),
    ("1d N1 S100000 T64", None, (1, 100_000), (64,), {}, F64),
    ("1d N32 S4096 C8 K16 T9", "ncs,kcs->nks|s", (32, 8, 4096), (16, 8, 9), {}, F32),
    ("1d N10 S2000 K32 T32 same", None, (10, 2000), (32, 32), {"mode": "same"}, F64),
    ("1d N1000 S256 K4 T1", None, (1000, 256), (4, 1), {}, F64),
    ("1d N100 S2000 K4 T9 dil4", None, (100, 2000), (4, 9), {"dilation": 4}, F64),
    ("2d N1 512 T3", None, (1, 512, 512), (3, 3), {}, F64),
    ("2d N1 512 T31", None, (1, 512, 512), (31, 31), {}, F64),
    ("2d N100 64 T5", None, (100, 64, 64), (5, 5), {}, F64),
    ("2d N100 64 K8 T5", None, (100, 64, 64), (8, 5, 5), {}, F32),
    ("2d N16 128 K16 T15 same", None, (16, 128, 128), (16, 15, 15), {"mode": "same"}, F32),
    (
        "2d N8 64 C16 K32 T3 nhwc",
        "nhwc,hwck->nhwk|hw",
        (8, 64, 64, 16),
        (3, 3, 16, 32),
        {"mode": "same"},
        F32,
    ),
    (
        "2d N8 64 C16 K32 T7 nhwc",
        "nhwc,hwck->nhwk|hw",
        (8, 64, 64, 16),
        (7, 7, 16, 32),
        {"mode": "same"},
        F32,
    ),
    ("2d N4 128 C3 K16 T11 nchw", "nchw,kchw->nkhw|hw", (4, 3, 128, 128), (16, 3, 11, 11), {}, F32),
    ("2d N1000 32 T3", None, (1000, 32, 32), (3, 3), {}, F64),
    ("2d N1000 28 K8 T5", None, (1000, 28, 28), (8, 5, 5), {}, F32),
    ("2d N2 256 K4 T64 same", None, (2, 256, 256), (4, 64, 64), {"mode": "same"}, F32),
    ("2d N1 1024 T9", None, (1, 1024, 1024), (9, 9), {}, F64),
    ("2d N50 100 T11 (seed001)", "hwn,hw->hwn|hw", (100, 100, 50), (11, 11), {}, F64),
    ("2d N16 64 T1", None, (16, 64, 64), (1, 1), {}, F64),
    ("2d N4 256 T33 full", None, (4, 256, 256), (33, 33), {"mode": "full"}, F64),
    ("2d N8 128 K8 T7 stride2", None, (8, 128, 128), (8, 7, 7), {"stride": 2}, F32),
    ("3d N1 64 T3", None, (1, 64, 64, 64), (3, 3, 3), {}, F64),
    ("3d N1 64 T9", None, (1, 64, 64, 64), (9, 9, 9), {}, F64),
    ("3d N4 32 K8 T5", None, (4, 32, 32, 32), (8, 5, 5, 5), {}, F32),
    ("3d N4 32 T16 same", None, (4, 32, 32, 32), (16, 16, 16), {"mode": "same"}, F32),
    (
        "3d N2 48 C4 K8 T3",
        "nhwdc,hwdck->nhwdk|hwd",
        (2, 48, 48, 48, 4),
        (3, 3, 3, 4, 8),
        {"mode": "same"},
        F32,
    ),
    ("3d N100 16 K4 T3", None, (100, 16, 16, 16), (4, 3, 3, 3), {}, F64),
    ("3d N8 24 K2 T24 same", None, (8, 24, 24, 24), (2, 24, 24, 24), {"mode": "same"}, F32),
    ("3d N1 128 T5", None, (1, 128, 128, 128), (5, 5, 5), {}, F32),
]


def run(names: list[str] | None = None) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for name, spec, xs, ws, opts, dt in GRID:
        if names and not any(n in name for n in names):
            continue
        x = rng.standard_normal(xs).astype(dt)
        w = rng.standard_normal(ws).astype(dt)
        plans = {m: bc.plan(x, w, spec, method=m, **opts) for m in ("direct", "fft")}
        try:  # (on the problems it takes: 3 and 5 taps, stride 1)
            plans["winograd"] = bc.plan(x, w, spec, method="winograd", **opts)
        except ValueError:
            pass
        auto = bc.plan(x, w, spec, **opts)
        ref = plans["direct"](x)
        scale = float(np.abs(ref).max()) or 1.0
        for m in set(plans) - {"direct"}:
            assert np.abs(plans[m](x) - ref).max() <= 1e-3 * scale, (name, m)
        t = interleaved(
            {
                **{m: (lambda p=p, x=x: p(x)) for m, p in plans.items()},
                "auto": lambda a=auto, x=x: a(x),
            },
            rounds=5,
            max_seconds=8,
        )
        fastest = min(plans, key=t.get)
        estimates = {c.method: c.seconds * 1e3 for c in auto.candidates}
        row = {
            "problem": name,
            "direct ms": t["direct"] * 1e3,
            "fft ms": t["fft"] * 1e3,
            "winograd ms": t["winograd"] * 1e3 if "winograd" in t else float("nan"),
            "auto ms": t["auto"] * 1e3,
            "auto chose": auto.method,
            "best": fastest,
            "auto / best": t["auto"] / t[fastest],
            "chosen / best": t[auto.method] / t[fastest],
            "est direct ms": estimates["direct"],
            "est fft ms": estimates["fft"],
            "est winograd ms": estimates.get("winograd", float("nan")),
        }
        rows.append(row)
        print(
            f"  {name}: "
            + ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
                if k != "problem"
            ),
            file=sys.stderr,
            flush=True,
        )
    return rows


def summary(rows: list[dict]) -> str:
    r = np.array([row["auto / best"] for row in rows])
    c = np.array([row["chosen / best"] for row in rows])
    wrong = sum(row["auto chose"] != row["best"] for row in rows)
    return (
        f"{len(rows)} problems: auto / best median {np.median(r):.2f}, worst "
        f"{r.max():.2f} (auto timed on its own: includes run-to-run noise); chosen "
        f"method / best, from the same forced timings, median {np.median(c):.2f}, "
        f"worst {c.max():.2f}; auto picked the faster method in {len(rows) - wrong} "
        f"of {len(rows)}"
    )


COLUMNS = [
    "problem",
    "direct ms",
    "fft ms",
    "winograd ms",
    "auto ms",
    "auto chose",
    "best",
    "auto / best",
    "chosen / best",
    "est direct ms",
    "est fft ms",
    "est winograd ms",
]

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = run(a.only)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(table(rows, COLUMNS))
    print()
    print(summary(rows))
