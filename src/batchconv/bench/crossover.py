"""Method crossover: time against kernel size and against image size for each forced
method and for ``auto`` (2-D, float32, a batch against a bank of 4 filters, 'valid'),
with a chart (``batchconv bench --plot FILE.png``, matplotlib needed).

Target: ``auto`` never more than 1.5x the best forced method (ratio best / auto
at least 0.67).
"""

from __future__ import annotations

import numpy as np

import batchconv as bc

from .harness import Context, Section, assert_agree, interleaved, summary_row

NAME = "crossover"
COLUMNS = ["sweep", "x", "direct ms", "fft ms", "auto ms", "auto chose", "best", "auto / best"]
KERNELS = [1, 2, 3, 5, 7, 9, 11, 15, 21, 31, 45]
KERNELS_QUICK = [1, 3, 7, 15, 31]
SIZES = [16, 32, 64, 128, 256, 512]
SIZES_QUICK = [32, 128, 512]


def _point(sweep: str, xval: int, x: np.ndarray, w: np.ndarray, rounds: int) -> dict:
    fs = {m: (lambda m=m: bc.correlate(x, w, method=m)) for m in ("direct", "fft", "auto")}
    ref = fs["direct"]()
    bound = 1e-5 * w[0].size * np.abs(x).max() * np.abs(w).max() * 4
    assert_agree(fs["fft"](), ref, bound, f"crossover {sweep} {xval} fft")
    t = interleaved(fs, rounds=rounds)
    best = min(("direct", "fft"), key=t.get)
    return {
        "sweep": sweep,
        "x": xval,
        "direct ms": t["direct"] * 1e3,
        "fft ms": t["fft"] * 1e3,
        "auto ms": t["auto"] * 1e3,
        "auto chose": bc.plan(x, w).method,
        "best": best,
        "auto / best": t["auto"] / t[best],
    }


def run(ctx: Context) -> Section:
    sec = Section(
        NAME,
        "method crossover: direct vs fft vs auto, 2-D float32, bank of 4",
        "Kernel sweep: 8 images 128x128 against 4 k x k filters. Image sweep: 4 "
        "images s x s against 4 filters 7x7. 'valid'; interleaved medians.",
        COLUMNS,
    )
    rng = np.random.default_rng(0)
    rounds = 3 if ctx.quick else 5
    x = rng.standard_normal((8, 128, 128), dtype=np.float32)
    for kk in KERNELS_QUICK if ctx.quick else KERNELS:
        w = rng.standard_normal((4, kk, kk), dtype=np.float32)
        sec.rows.append(_point("kernel k (128x128)", kk, x, w, rounds))
        ctx.log(f"  kernel {kk}: auto chose {sec.rows[-1]['auto chose']}")
    w = rng.standard_normal((4, 7, 7), dtype=np.float32)
    for size in SIZES_QUICK if ctx.quick else SIZES:
        xs = rng.standard_normal((4, size, size), dtype=np.float32)
        sec.rows.append(_point("image s (7x7)", size, xs, w, rounds))
        ctx.log(f"  image {size}: auto chose {sec.rows[-1]['auto chose']}")
    for sweep in ("kernel k (128x128)", "image s (7x7)"):
        rows = [r for r in sec.rows if r["sweep"] == sweep]
        worst = max(rows, key=lambda r: r["auto / best"])
        best_ms = worst[f"{worst['best']} ms"] / 1e3
        sec.summary.append(
            summary_row(
                NAME,
                f"{sweep}: worst point ({worst['x']})",
                "best forced method",
                best_ms,
                worst["auto ms"] / 1e3,
                1 / 1.5,
                note=f"auto / best median {np.median([r['auto / best'] for r in rows]):.2f}, "
                f"right method at {sum(r['auto chose'] == r['best'] for r in rows)} of "
                f"{len(rows)} points",
            )
        )
    return sec


def plot(sec: Section, path: str) -> str:
    """Draw the two sweeps (time against kernel size and image size, one line per method,
    auto's choice marked) into ``path``; returns a message."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "matplotlib not installed: no chart (pip install matplotlib)"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, sweep in zip(axes, ("kernel k (128x128)", "image s (7x7)"), strict=True):
        rows = [r for r in sec.rows if r["sweep"] == sweep]
        if not rows:
            continue
        xs = [r["x"] for r in rows]
        for m, style in (("direct", "-o"), ("fft", "-s")):
            ax.plot(xs, [r[f"{m} ms"] for r in rows], style, label=m, alpha=0.8)
        ax.plot(xs, [r["auto ms"] for r in rows], "k--", label="auto", linewidth=1)
        for r in rows:
            ax.annotate(
                r["auto chose"][0],
                (r["x"], r["auto ms"]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(sweep)
        ax.set_ylabel("ms (median)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_title("8 x 128x128 against 4 k x k filters")
    axes[1].set_title("4 x s x s against 4 7x7 filters")
    fig.suptitle("batchconv: direct vs fft, and auto's choice (d/f)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return f"chart written to {path}"
