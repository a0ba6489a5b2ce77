"""
Direct or FFT: the method crossover
===================================

Small kernels are fastest summed directly; large ones through the FFT, whose cost
hardly depends on the kernel's size. ``method="auto"`` chooses between them with a cost
model fitted on measurements. Here both methods are timed, on the machine that built
these pages, against the kernel size and against the image size, with ``auto``'s choice
marked. The timings use one thread (``workers=1``), so that they compare the methods
rather than how busy the machine's other cores were.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

import batchconv as bc

rng = np.random.default_rng(0)


def best_time(plan, x, repeat=7):
    """Best of a few runs of a plan, in milliseconds (the first run warms up)."""
    plan(x)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        plan(x)
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def sweep(problems):
    """Times of the forced methods and auto's choice for each (x, w) problem."""
    rows = []
    for x, w in problems:
        direct = best_time(bc.plan(x, w, method="direct", workers=1), x)
        fft = best_time(bc.plan(x, w, method="fft", workers=1), x)
        rows.append((direct, fft, bc.plan(x, w, workers=1).method))
    return rows


# %%
# Kernel size: 8 images of 96x96 against a bank of 4 filters k x k (float32, 'valid').

kernels = [1, 3, 5, 7, 9, 13, 17, 25, 33]
x = rng.random((8, 96, 96), dtype=np.float32)
by_kernel = sweep([(x, rng.random((4, k, k), dtype=np.float32)) for k in kernels])

# %%
# Image size: 4 images s x s against 4 filters 7x7.

sides = [16, 32, 64, 128, 256]
by_side = sweep(
    [
        (rng.random((4, s, s), dtype=np.float32), rng.random((4, 7, 7), dtype=np.float32))
        for s in sides
    ]
)

print(f"{'kernel':>6} {'direct ms':>10} {'fft ms':>8}  auto chose")
for k, (d, f, m) in zip(kernels, by_kernel):
    print(f"{k:>6} {d:>10.3f} {f:>8.3f}  {m}")
print(f"\n{'image':>6} {'direct ms':>10} {'fft ms':>8}  auto chose")
for s, (d, f, m) in zip(sides, by_side):
    print(f"{s:>6} {d:>10.3f} {f:>8.3f}  {m}")

# %%
# The faster method changes with the problem's shape, and ``auto`` follows it (near the
# crossover both methods take about the same time, so either choice is fine).

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, xs, rows, label in [
    (axes[0], kernels, by_kernel, "kernel size k (8 images 96x96, 4 filters k x k)"),
    (axes[1], sides, by_side, "image size s (4 images s x s, 4 filters 7x7)"),
]:
    direct = [r[0] for r in rows]
    fft = [r[1] for r in rows]
    ax.plot(xs, direct, "o-", label="direct", color="#1f77b4")
    ax.plot(xs, fft, "s-", label="fft", color="#e67e22")
    for xv, d, f, m in zip(xs, direct, fft, [r[2] for r in rows]):
        y = d if m == "direct" else f
        ax.annotate(
            m[0],
            (xv, y),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=9,
            weight="bold",
            color="#2ca02c",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(v) for v in xs])
    ax.set_xlabel(label)
    ax.set_ylabel("time per call (ms)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # label 2 and 5 between the powers of ten
    ax.yaxis.set_minor_formatter(
        FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else "")
    )
    ax.grid(True, which="both", alpha=0.3)
axes[0].legend(title="green letter: auto's choice", fontsize=9, title_fontsize=9)
fig.suptitle("direct vs fft, one thread, measured when these docs were built", fontsize=11)
fig.tight_layout()

# %%
# ``explain()`` shows the estimates behind a choice, here for the 13x13 kernels:

print(bc.plan(x, rng.random((4, 13, 13), dtype=np.float32), workers=1).explain())

# %%
# :doc:`/performance` has the same chart from a full benchmark run, and the times against
# SciPy, OpenCV and torch.
