"""Per-call cost of batchconv's Python layer on small layers: ``plan(x)`` and
``correlate(x, w)`` against ``F.conv2d`` on the same tensors, in microseconds (medians of
interleaved rounds, each round a loop of ``--calls`` calls; on CUDA each loop ends with a
synchronize). Small layers are where it shows: on a GPU, seed 002's 3x3 layers take tens
of microseconds in cuDNN.

    python benchmarks/overhead.py                 # CPU tensors
    python benchmarks/overhead.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import batchconv as bc
from batchconv.bench.harness import interleaved
from batchconv.tensors import precise

LAYERS = [
    ("1x4x8x8 3x3 4->4", (1, 4, 8, 8), (4, 4, 3, 3), 1),
    ("8x64x56x56 3x3 64->64", (8, 64, 56, 56), (64, 64, 3, 3), 1),
    ("8x32x64x64 5x5 32->64 s2", (8, 32, 64, 64), (64, 32, 5, 5), 2),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--calls", type=int, default=50)
    a = ap.parse_args()
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    spec = "nchw,kchw->nkhw|hw"
    print(
        f"device {a.device}; torch {torch.__version__}; command: python "
        f"benchmarks/overhead.py --device {a.device} --calls {a.calls}\n"
    )
    print(
        "| layer | F.conv2d us | plan(x) us | correlate us | plan - conv us | correlate - conv us |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, xs, ws, s in LAYERS:
        x, w = torch.randn(*xs, device=a.device), torch.randn(*ws, device=a.device)
        us = _per_call(x, w, s, spec, a.device, a.calls, sync)
        print(
            f"| {name} | {us['conv']:.1f} | {us['plan']:.1f} | {us['correlate']:.1f} | "
            f"{us['plan'] - us['conv']:.1f} | {us['correlate'] - us['conv']:.1f} |"
        )


def _per_call(x, w, s, spec, device, calls, sync) -> dict[str, float]:
    """Microseconds per call of F.conv2d, a plan and correlate on one layer."""
    plan = bc.plan(x, w, spec, method="torch_direct", stride=s)

    def loop(f):
        def run():
            for _ in range(calls):
                f()
            sync()

        return run

    def conv():
        with torch.no_grad(), precise(device):
            return F.conv2d(x, w, stride=s)

    t = interleaved(
        {
            "conv": loop(conv),
            "plan": loop(lambda: plan(x)),
            "correlate": loop(lambda: bc.correlate(x, w, spec, stride=s, method="torch_direct")),
        },
        rounds=15,
    )
    return {k: v / calls * 1e6 for k, v in t.items()}


if __name__ == "__main__":
    main()
