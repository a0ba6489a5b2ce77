"""Fit ``_COMPILED_COST`` (``src/batchconv/methods/winograd.py``): the share of the
matrix-product transforms' cost (their flops and copies) that the compiled 6 x 6
transforms pay. The Winograd model's other coefficients were fitted on the matrix
products (``fit_cost_model.py --methods winograd --small-kernels``); this times random
layers of the compiled transforms' ground (2-D, 3x3 or 5x5, 16-128 channels and
filters, NHWC or NCHW, 'valid' or 'same', float32 and float64) on reused plans, and
takes the share with the least squared log error of the estimate (the estimate is
linear in it: ``calls + GEMMs + share * (transforms + copies)``).

    python benchmarks/fit_winograd_compiled.py --n 40     # about 2 minutes, 2 cores

Needs numba. Prints each layer's time and estimates (at the current share and at the
fitted one) and the fit.
"""

from __future__ import annotations

import argparse

import numpy as np

import batchconv as bc
from batchconv import compiled
from batchconv.bench.harness import interleaved
from batchconv.methods import winograd


def _layer(rng):
    k = int(rng.choice([3, 3, 3, 5]))
    C = int(rng.choice([16, 32, 64, 128]))
    K = int(rng.choice([16, 32, 64, 128]))
    side = int(rng.choice([14, 28, 32, 56, 64, 96, 128]))
    dt = np.float32 if k == 5 or rng.random() < 0.7 else np.float64
    B = int(max(1, min(16, 4e6 // (side * side * max(C, K)))))
    mode = str(rng.choice(["valid", "valid", "same"]))
    if rng.random() < 0.75:
        return "nhwc,hwck->nhwk|hw", (B, side, side, C), (k, k, C, K), mode, dt
    return "nchw,kchw->nkhw|hw", (B, C, side, side), (K, C, k, k), mode, dt


def _parts(p) -> tuple[float, float]:
    """(fixed, scaled): the estimate is fixed + share * scaled."""
    coef = winograd.COEFFICIENTS["winograd"]
    _, feats = winograd.cost_features(p)
    share = winograd._COMPILED_COST  # the features carry it: take it out again
    fixed = coef["calls"] * feats["calls"]
    fixed += sum(coef[n] * v for n, v in feats.items() if n.startswith("gemm_flops"))
    scaled = (coef["transform_flops"] * feats["transform_flops"]) / share
    scaled += (coef["moved_bytes"] * feats["moved_bytes"]) / share
    return fixed, scaled


def main(n: int, seed: int) -> None:
    if not compiled.enabled():
        raise SystemExit("needs numba")
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < n:
        spec, xs, ws, mode, dt = _layer(rng)
        x = rng.standard_normal(xs).astype(dt)
        w = rng.standard_normal(ws).astype(dt)
        plan = bc.plan(x, w, spec, mode=mode, method="winograd")
        if plan.state.compiled_transforms is None:
            continue
        t = interleaved({"call": lambda: plan(x)})["call"]  # noqa: B023
        fixed, scaled = _parts(plan.problem)
        rows.append((t, fixed, scaled))
        print(
            f"{spec[:4]} {xs} {ws[:2] if spec[0] == 'n' and spec[1] == 'h' else ws[2:]} "
            f"{mode:5} {np.dtype(dt).name:7} {1e3 * t:8.2f} ms, estimate "
            f"{1e3 * (fixed + winograd._COMPILED_COST * scaled):8.2f} ms"
        )
    t, fixed, scaled = (np.array(c) for c in zip(*rows))
    shares = np.linspace(0.05, 1.5, 291)
    err = [np.mean(np.log((fixed + s * scaled) / t) ** 2) for s in shares]
    best = float(shares[int(np.argmin(err))])
    for s in (winograd._COMPILED_COST, best):
        r = (fixed + s * scaled) / t
        print(
            f"share {s:.3f}: estimate / time median {np.median(r):.2f}, "
            f"10-90 % {np.percentile(r, 10):.2f}-{np.percentile(r, 90):.2f}, "
            f"rms log error {np.sqrt(np.mean(np.log(r) ** 2)):.3f}"
        )
    print(f"fitted _COMPILED_COST = {best:.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.n, a.seed)
