"""Forward + backward through bc.correlate on torch tensors against the same layer with
``torch.nn.functional.conv2d``, interleaved medians (issue #23's bars):

    python benchmarks/gradients.py                  # CPU (2 threads here)
    python benchmarks/gradients.py --device cuda    # on a GPU (benchmarks/gpu_check.sh)

Rows: a 3x3 CNN layer (16 x 64 x 56x56, 64 filters, padding 1; goal 0.8x or better) and
a large-kernel layer (8 x 16 x 256x256, bank 32, 31x31, padding 15; goal 3x, through the
FFT), plus bc.vjp on NumPy arrays for the 3x3 layer. Each contender computes the output
and both gradients (input and filters) for a cotangent of ones. Ratio: torch time / ours.
"""

from __future__ import annotations

import argparse

import numpy as np

import batchconv as bc
from batchconv.bench.harness import interleaved

LAYERS = [  # (N, C, H, K, k)
    (16, 64, 56, 64, 3),
    (8, 16, 256, 32, 31),
]


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="the 3x3 rows only")
    args = parser.parse_args()
    dev = args.device
    F = torch.nn.functional
    print(f"device {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| layer | F.conv2d fwd+bwd | bc.correlate fwd+bwd | ratio | IQR/median (ours) |")
    print("| --- | --- | --- | --- | --- |")
    for n, c, h, k, m in LAYERS[:1] if args.small else LAYERS:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n, c, h, h, generator=gen).to(dev).requires_grad_()
        w = torch.randn(k, c, m, m, generator=gen).to(dev).requires_grad_()
        pad = m // 2

        def torch_layer(x=x, w=w, pad=pad):
            y = F.conv2d(x, w, padding=pad)
            return torch.autograd.grad(y, (x, w), torch.ones_like(y))

        def ours(x=x, w=w):
            y = bc.correlate(x, w, "nchw,kchw->nkhw|hw", mode="same")
            return torch.autograd.grad(y, (x, w), torch.ones_like(y))

        def sync(f):
            def run():
                f()
                if dev.startswith("cuda"):
                    torch.cuda.synchronize()

            return run

        big = m > 3 and dev == "cpu"  # (F.conv2d takes about half a minute here)
        t = interleaved(
            {"torch": sync(torch_layer), "ours": sync(ours)},
            rounds=3 if big else args.rounds,
            max_seconds=400,
        )
        name = f"{n} x {c} x {h}x{h}, bank {k}, {m}x{m}"
        print(
            f"| {name} | {t['torch'] * 1e3:.1f} ms | {t['ours'] * 1e3:.1f} ms | "
            f"{t['torch'] / t['ours']:.2f} | {t.spread['ours']:.2f} |",
            flush=True,
        )
    if dev == "cpu":  # bc.vjp on NumPy arrays, the 3x3 layer
        n, c, h, k, m = LAYERS[0]
        rng = np.random.default_rng(0)
        xn = rng.standard_normal((n, c, h, h), dtype=np.float32)
        wn = rng.standard_normal((k, c, m, m), dtype=np.float32)
        g = np.ones((n, k, h, h), np.float32)
        xt, wt = torch.from_numpy(xn).requires_grad_(), torch.from_numpy(wn).requires_grad_()

        def numpy_layer():
            bc.correlate(xn, wn, "nchw,kchw->nkhw|hw", mode="same")
            return bc.vjp(xn, wn, "nchw,kchw->nkhw|hw", cotangent=g, mode="same")

        def torch_layer():
            y = F.conv2d(xt, wt, padding=1)
            return torch.autograd.grad(y, (xt, wt), torch.ones_like(y))

        t = interleaved({"torch": torch_layer, "ours": numpy_layer}, rounds=args.rounds)
        print(
            f"| bc.vjp (NumPy) {n} x {c} x {h}x{h}, bank {k}, 3x3 | {t['torch'] * 1e3:.1f} ms"
            f" | {t['ours'] * 1e3:.1f} ms | {t['torch'] / t['ours']:.2f} | "
            f"{t.spread['ours']:.2f} |"
        )


if __name__ == "__main__":
    main()
