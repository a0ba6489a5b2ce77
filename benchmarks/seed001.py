"""Seed 001: a minibatch of images (S, S, N) convolved with one K x K kernel, 'valid',
float64, against SciPy's three ways (the seed's own timing table).

    python benchmarks/seed001.py            # all six configs
    python benchmarks/seed001.py --quick    # skip the 1000 x 1000 config
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _harness import assert_agree, interleaved, table

import batchconv as bc

CONFIGS = [(100, 50, 11), (1000, 50, 11), (100, 5, 11), (100, 500, 11), (100, 50, 5),
           (100, 50, 31)]
SPEC = "hwn,hw->hwn|hw"


def run(quick: bool = False) -> list[dict]:
    try:
        from scipy import ndimage, signal
    except ImportError:
        print("scipy not installed: seed001 anchors skipped", file=sys.stderr)
        return []
    rows = []
    rng = np.random.default_rng(0)
    for S, N, K in CONFIGS:
        if quick and S > 500:
            continue
        a = rng.standard_normal((S, S, N))
        b = rng.standard_normal((K, K))
        lo, hi = K // 2, S - (K - 1 - K // 2)
        anchors = {
            "fftconvolve": lambda a=a, b=b: signal.fftconvolve(a, b[..., None], "valid"),
            "ndimage": lambda a=a, b=b, lo=lo, hi=hi: ndimage.convolve(
                a, b[..., None])[lo:hi, lo:hi],
        }
        if S * S * N * K * K < 1e9:  # signal.convolve's own choice; minutes at S=1000
            anchors["signal.convolve"] = lambda a=a, b=b: signal.convolve(a, b[..., None],
                                                                          "valid")
        ours = {
            "ours fft": lambda a=a, b=b: bc.convolve(a, b, SPEC, method="fft"),
            "ours auto": lambda a=a, b=b: bc.convolve(a, b, SPEC),
        }
        ref = anchors["fftconvolve"]()
        bound = 1e-12 * K * K * np.abs(a).max() * np.abs(b).max() * 10
        for name, f in ours.items():
            assert_agree(f(), ref, bound, f"seed001 {S},{N},{K} {name}")
        t = interleaved({**anchors, **ours}, rounds=3 if S > 500 else 25)
        best_anchor = min(t[k] for k in anchors)
        row = {"S, N, K": f"{S}, {N}, {K}"}
        row.update({f"{k} ms": v * 1e3 for k, v in t.items()})
        row["fftconvolve / ours fft"] = t["fftconvolve"] / t["ours fft"]
        row["best scipy / ours auto"] = best_anchor / t["ours auto"]
        row["auto chose"] = bc.plan(a, b, SPEC, convolve=True).method
        rows.append(row)
        print(f"  seed001 {S},{N},{K}: " + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
            file=sys.stderr, flush=True)
    return rows


COLUMNS = ["S, N, K", "fftconvolve ms", "ndimage ms", "signal.convolve ms", "ours fft ms",
           "ours auto ms", "auto chose", "fftconvolve / ours fft", "best scipy / ours auto"]

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    print(table(run(ap.parse_args().quick), COLUMNS))
