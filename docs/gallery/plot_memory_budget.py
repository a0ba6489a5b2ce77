"""
The memory budget at work
=========================

``memory=`` bounds what a call allocates beyond its inputs and its result. Under a
smaller budget batchconv processes fewer items and filters per block: the answer is the
same, the peak memory follows the budget, and the time grows only when the blocks become
very small.

Here 64 images of 128x128 are correlated with 8 filters of 15x15 and each map is reduced
to its maximum (``reduce="max"``): the unreduced maps would take 32 MiB, the result is a
64 x 8 table. The peak is measured with ``tracemalloc``, which sees NumPy's allocations.
"""

import time
import tracemalloc

import matplotlib.pyplot as plt
import numpy as np

import batchconv as bc

rng = np.random.default_rng(0)
x = rng.random((64, 128, 128), dtype=np.float32)
w = rng.random((8, 15, 15), dtype=np.float32)
print(f"unreduced maps: {64 * 8 * 128 * 128 * 4 / 2**20:.0f} MiB")

bc.plan(x[:2], w, mode="same", reduce="max")(x[:2])  # warm up: the first call in a process

budgets = ["64MB", "16MB", "4MB", "2MB", "1MB"]
rows = []
reference = None
print("memory=  method  block (images x filters)  estimate MiB  measured MiB    ms  same")
for budget in budgets:
    plan = bc.plan(x, w, mode="same", reduce="max", memory=budget)
    bc.clear_plan_cache()  # free the threads' reused work buffers: measure from scratch
    tracemalloc.start()
    t = time.perf_counter()
    result = plan(x)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if reference is None:
        reference = result
    rows.append((budget, plan, peak, seconds))
    block = f"{plan.chunk[0]} x {plan.chunk[1]}"
    print(
        f"{budget:>7}  {plan.method:<6}  {block:<24}  {plan.peak_bytes / 2**20:12.2f}  "
        f"{peak / 2**20:12.2f}  {seconds * 1e3:4.0f}  {np.array_equal(result, reference)}"
    )

# %%
# ``explain()`` for the smallest budget: the block sizes each method could use, and the
# number of blocks.

print(rows[-1][1].explain())

# %%
# The measured peak stays under the budget, and close to the plan's own estimate:

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
pos = np.arange(len(rows))
mib = 2**20
ax.bar(
    pos - 0.27,
    [p.memory / mib for _, p, _, _ in rows],
    0.27,
    label="budget (memory=)",
    color="#cccccc",
)
ax.bar(
    pos,
    [p.peak_bytes / mib for _, p, _, _ in rows],
    0.27,
    label="explain()'s estimate",
    color="#1f77b4",
)
ax.bar(
    pos + 0.27, [peak / mib for _, _, peak, _ in rows], 0.27, label="measured peak", color="#e67e22"
)
ax.set_xticks(pos)
ax.set_xticklabels([f'"{b}"' for b, _, _, _ in rows])
ax.set_yscale("log")
ax.set_ylabel("MiB")
ax.set_title("memory beyond inputs and result")
ax.legend(fontsize=9)
ax2.plot(pos, [s * 1e3 for _, _, _, s in rows], "o-", color="#2ca02c")
for i, (_, p, _, s) in enumerate(rows):
    ax2.annotate(
        f"{p.chunk[0]} x {p.chunk[1]}",
        (i, s * 1e3),
        textcoords="offset points",
        xytext=(0, 8),
        ha="center",
        fontsize=9,
    )
ax2.set_xticks(pos)
ax2.set_xticklabels([f'"{b}"' for b, _, _, _ in rows])
ax2.set_ylim(0, max(s for *_, s in rows) * 1e3 * 1.25)
ax2.set_ylabel("time (ms)")
ax2.set_title("time, with the block size (images x filters)")
fig.tight_layout()
