"""``method="auto"`` against the forced methods on CNN layers (``auto_grid.py`` holds
few): each method's reused plan (``bc.plan``), timed interleaved, with the cost model's
per-call estimate, the method ``auto`` picks for a reused plan, and its loss against the
fastest method (chosen time / best time, from the same timings; geometric mean and worst
over the layers).

    OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=4 python benchmarks/auto_layers.py

Layers: NHWC x HWIO float32, 'same', stride 1, 3x3 to 11x11, 16 to 128 channels and
filters, 2 to 16 images of 28x28 to 128x128 (about a minute on 2 cores). ``--torch``
adds ``torch_direct`` (oneDNN through ``torch.from_numpy``, a candidate once torch is
imported); without it, ``auto`` runs inside ``bc.use_torch(False)``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

import batchconv as bc
from batchconv.bench.harness import interleaved
from batchconv.costs import estimate, once_estimate

# (images, side, channels, filters, kernel)
LAYERS = [
    (8, 64, 64, 16, 5),
    (8, 64, 32, 32, 5),
    (4, 64, 32, 32, 7),
    (8, 32, 64, 64, 5),
    (4, 96, 16, 32, 11),
    (8, 28, 128, 128, 5),
    (4, 56, 64, 64, 7),
    (16, 32, 32, 64, 5),
    (8, 64, 16, 16, 7),
    (2, 128, 32, 32, 9),
    (8, 56, 64, 64, 3),
    (8, 28, 128, 128, 3),
    (16, 28, 32, 32, 5),
    (4, 32, 128, 64, 5),
]
SPEC = "nhwc,hwck->nhwk|hw"


def run(with_torch: bool) -> list[float]:
    rng = np.random.default_rng(0)
    methods = ["fft", "direct", "winograd"] + (["torch_direct"] if with_torch else [])
    scope = contextlib.nullcontext() if with_torch else bc.use_torch(False)
    losses = []
    print("| layer | " + " | ".join(f"{m} ms (est)" for m in methods) + " | auto | loss |")
    print("|---" * (len(methods) + 3) + "|")
    with scope:
        for n, side, c, k, t in LAYERS:
            x = rng.standard_normal((n, side, side, c), dtype=np.float32)
            w = rng.standard_normal((t, t, c, k), dtype=np.float32)
            plans = {}
            for m in methods:
                try:
                    plans[m] = bc.plan(x, w, SPEC, method=m, mode="same")
                except ValueError:  # not this method's ground (winograd: its kernels)
                    pass
            chosen = bc.plan(x, w, SPEC, mode="same").method
            if chosen not in plans:  # (a method this table does not time)
                plans[chosen] = bc.plan(x, w, SPEC, method=chosen, mode="same")
            p = next(iter(plans.values())).problem
            times = interleaved({m: (lambda q=q, x=x: q(x)) for m, q in plans.items()}, rounds=5)
            best = min(times.values())
            losses.append(times[chosen] / best)
            cells = [
                f"{times[m] * 1e3:.1f} ({(estimate(p, m) - once_estimate(p, m)) * 1e3:.1f})"
                if m in plans
                else ""
                for m in methods
            ]
            print(
                f"| {n} x {side}x{side} {c}->{k} {t}x{t} | "
                + " | ".join(cells)
                + f" | {chosen} | {losses[-1]:.2f} |",
                flush=True,
            )
    print(
        f"\n{len(LAYERS)} layers: auto's loss against the fastest method, geometric mean "
        f"{np.exp(np.mean(np.log(losses))):.3f}, worst {max(losses):.2f}; "
        f"{sum(v > 1.1 for v in losses)} losing more than 10 %"
    )
    return losses


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch", action="store_true", help="torch_direct as a candidate")
    a = ap.parse_args()
    if a.torch:
        import torch  # noqa: F401  (imported by the user's program: a candidate)
    run(a.torch)
    sys.exit(0)
