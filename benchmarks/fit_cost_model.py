"""Fit the cost model's coefficients (``src/batchconv/costs.py``) on this machine.

Times the forced methods (plans made first; planning is not timed) on random problems:
1-D to 3-D, batch 1..1000, banks, channels, kernels 1..64, strides, float32 and float64;
with torch installed also the torch methods on CPU tensors (``torch_direct``,
``torch_fft``). Then, per model ("fft", "gemm", "window_rows", "shift_add" (the NumPy
one-filter kernel: only timed with ``BATCHCONV_DISABLE_NUMBA=1``), "torch_conv",
"torch_fft"), fits non-negative coefficients that minimise the relative error of the
estimate, and prints a ``COEFFICIENTS`` table to paste
into costs.py. Problems used for fitting are random and separate from the grid that
``auto_grid.py`` checks.

    python benchmarks/fit_cost_model.py --n 120 --json /tmp/fit.json   # about 5 minutes
    python benchmarks/fit_cost_model.py --from-json /tmp/fit.json       # refit only
    python benchmarks/fit_cost_model.py --methods torch_direct,torch_fft --n 100  # torch only
    python benchmarks/fit_cost_model.py --methods winograd --small-kernels --n 80
    python benchmarks/fit_cost_model.py --methods torch_direct --cnn-layers --n 60
    python benchmarks/fit_cost_model.py --methods direct,fft --large-kernel-layers --n 70 \
        --json L
    python benchmarks/fit_cost_model.py --from-json R L --models fft  # R: the random draw
    python benchmarks/fit_cost_model.py --prepare --n 80 --json P  # the FFT's preparation

Each call is timed on a plan made before (as ``bc.plan`` users and the plan cache call
it), so the features left out of the fit are those of the filters' preparation (the FFT's
filter transforms: ``prepare_features``), as the planner leaves them out of a reused plan.

A method whose first item, scaled to the batch, exceeds 3 s is not timed on that problem.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import batchconv as bc
from batchconv.bench.harness import interleaved
from batchconv.costs import COEFFICIENTS, estimate, features, once_estimate
from batchconv.methods import METHODS, module_of

# costs.py's models and those the methods bring themselves (winograd's)
MODELS = {**COEFFICIENTS}
for _m in METHODS.values():
    MODELS.update(getattr(_m, "COEFFICIENTS", {}))

try:
    import torch
except ImportError:
    torch = None


def _small_kernel_problem(rng):
    """A problem of the small-kernel methods' ground (winograd): 1-D or 2-D, 3 taps (or
    5 in 1-D), stride 1, CNN-like channels and banks."""
    d = int(rng.integers(1, 3))
    T = (3,) * d if d == 2 or rng.random() < 0.6 else (5,)
    C = int(rng.choice([1, 3, 8, 16, 32, 64, 128]))
    K = int(rng.choice([1, 4, 16, 32, 64, 128]))
    per_item = 10 ** rng.uniform(2.5, 4.5) if d == 2 else 10 ** rng.uniform(2.5, 5)
    side = max(8, int(round(per_item ** (1 / d))))
    S = (side,) * d
    B = int(max(1, min(64, 3e6 // (side**d * max(C, K)))))
    dt = np.float32 if rng.random() < 0.7 else np.float64
    mode = str(rng.choice(["valid", "same", "same", "full"]))
    letters = "hw"[:d]
    spec = f"n{letters}c,{letters}ck->n{letters}k|{letters}"
    return spec, (B, *S, C), (*T, C, K), dict(mode=mode), dt


def _cnn_layer_problem(rng):
    """A CNN layer, NHWC x HWIO float32: the dense convolutions torch's oneDNN runs at
    near the machine's peak (the ``"torch_conv_dense"`` model)."""
    k = int(rng.choice([1, 3, 3, 5, 7]))
    C = int(rng.choice([3, 16, 32, 64, 128, 256]))
    K = int(rng.choice([16, 32, 64, 128, 256]))
    side = int(rng.choice([14, 28, 56, 112, 224]))
    stride = int(rng.choice([1, 1, 2]))
    B = int(max(1, min(16, 2e7 // (side * side * max(C, K)))))
    return "nhwc,hwck->nhwk|hw", (B, side, side, C), (k, k, C, K), dict(stride=stride), np.float32


def _large_kernel_layer_problem(rng):
    """A CNN layer with the FFT's kernels (3x3 to 11x11), NHWC x HWIO or NCHW x KCHW
    float32, 'same' or 'valid', stride 1 or 2, C and K up to 256: many channels give the
    FFT large per-bin channel products, which the random problems never draw."""
    k = int(rng.choice([3, 5, 5, 7, 7, 9, 11]))
    C = int(rng.choice([3, 8, 16, 32, 64, 128, 256]))
    K = int(rng.choice([8, 16, 32, 64, 128, 256]))
    side = int(rng.choice([14, 28, 32, 56, 64, 96, 112, 128]))
    opts = dict(stride=int(rng.choice([1, 1, 1, 2])), mode=str(rng.choice(["same", "valid"])))
    B = int(max(1, min(16, 1e7 // (side * side * max(C, K)))))
    if rng.random() < 0.5:
        return "nhwc,hwck->nhwk|hw", (B, side, side, C), (k, k, C, K), opts, np.float32
    return "nchw,kchw->nkhw|hw", (B, C, side, side), (K, C, k, k), opts, np.float32


def _random_problem(rng):
    d = int(rng.integers(1, 4))
    large = rng.random() < 0.25  # one or two large items: overlap-save tiles in the FFT
    n_total = 10 ** (rng.uniform(5.5, 6.5) if large else rng.uniform(3.5, 6.3))
    side = max(4, int(round(n_total ** (1 / d))))
    S = tuple(int(max(4, side * rng.uniform(0.7, 1.3))) for _ in range(d))
    tmax = min(64, min(S))
    T = tuple(int(min(tmax, max(1, round(10 ** rng.uniform(0, np.log10(tmax)))))) for _ in S)
    if rng.random() < 0.5:  # square kernels are the common case
        T = (T[0],) * d
        T = tuple(min(t, s) for t, s in zip(T, S))
    B = int(max(1, round(10 ** rng.uniform(0, 3) * 1e5 / max(prod := np.prod(S), 1e5))))
    B = int(rng.integers(1, 3)) if large else max(1, min(B, 1000, int(4e6 // prod)))
    K = int(rng.choice([1, 1, 2, 4, 8, 16, 32]))
    C = int(rng.choice([1, 1, 1, 3, 8, 16]))
    dt = np.float32 if rng.random() < 0.5 else np.float64
    mode = str(rng.choice(["valid", "valid", "same", "full"]))
    stride = int(rng.choice([1, 1, 1, 2]))
    letters = "hwd"[:d]
    if C > 1:
        spec = f"nc{letters},kc{letters}->nk{letters}|{letters}"
        xs, ws = (B, C, *S), (K, C, *T)
    else:
        spec = f"n{letters},k{letters}->nk{letters}|{letters}"
        xs, ws = (B, *S), (K, *T)
    return spec, xs, ws, dict(mode=mode, stride=stride), dt


_CAP_SECONDS = 3.0  # a method slower than this on a problem is not timed there


def _fast_enough(plan, x) -> bool:
    """One item first: a method whose single item, scaled to the batch, takes longer than
    the cap is never the answer (torch's float64 and 3-D CPU convolutions can take
    minutes on one problem), so it is not timed on the whole batch."""
    import time

    t0 = time.perf_counter()
    plan(x[:1])
    return (time.perf_counter() - t0) * x.shape[0] < _CAP_SECONDS


def collect(
    n: int,
    seed: int = 1,
    methods=("direct", "fft", "torch_direct", "torch_fft"),
    draw=_random_problem,
):
    rng = np.random.default_rng(seed)
    rows = []
    methods = [m for m in methods if torch is not None or not m.startswith("torch")]
    while len(rows) < n:
        spec, xs, ws, opts, dt = draw(rng)
        x = rng.standard_normal(xs).astype(dt)
        w = rng.standard_normal(ws).astype(dt)
        plans, xt = {}, None if torch is None else torch.from_numpy(x)
        args = {m: (xt if m.startswith("torch") else x) for m in methods}
        for m in methods:
            try:
                plans[m] = bc.plan(args[m], w, spec, method=m, **opts)
            except MemoryError:  # does not fit the default budget: never chosen
                pass
        # too slow to be the answer anyway: not timed
        plans = {
            m: p
            for m, p in plans.items()
            if estimate(p.problem, m, p.device) < 3.0 and _fast_enough(p, args[m])
        }
        # interleaved, as in auto_grid.py and in real use: the methods share the caches
        times = interleaved(
            {m: (lambda p=p, a=args[m]: p(a)) for m, p in plans.items()}, rounds=5, max_seconds=4
        )
        for method, p in plans.items():
            t = times[method]
            model, feats = _reused_features(p.problem, method)
            rows.append(
                dict(
                    problem=f"{spec} x{xs} w{ws} {opts} {np.dtype(dt).name}",
                    method=method,
                    model=model,
                    seconds=t,
                    features=feats,
                )
            )
            print(
                f"  {len(rows):4d} {model:<9} {t * 1e3:9.3f} ms  est "
                f"{(estimate(p.problem, method) - once_estimate(p.problem, method)) * 1e3:9.3f}"
                f"  {rows[-1]['problem']}",
                file=sys.stderr,
                flush=True,
            )
    return rows


def collect_prepare(n: int, seed: int = 2):
    """Rows of the FFT's filter preparation (``fft.prepare``, what a plan's first call or
    ``bc.plan`` pays once, ``costs.once_estimate``), timed alone (median of 3) on CNN
    layers of the FFT's ground and random problems, half each, with their
    ``prepare_features``."""
    import time

    from batchconv.methods import fft
    from batchconv.planner import canonical_w

    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < n:
        draw = _large_kernel_layer_problem if len(rows) % 2 else _random_problem
        spec, xs, ws, opts, dt = draw(rng)
        w = rng.standard_normal(ws).astype(dt)
        try:
            plan = bc.plan((xs, dt), w, spec, method="fft", **opts)
        except MemoryError:
            continue
        p = plan.problem
        if once_estimate(p, "fft") > 0.3:  # (up to about a second)
            continue
        wc = canonical_w(p, w)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fft.prepare(p, wc, max(plan.memory - plan.state_bytes, 0))  # (as plans do)
            times.append(time.perf_counter() - t0)
        rows.append(
            dict(
                problem=f"{spec} x{xs} w{ws} {opts} {np.dtype(dt).name}",
                method="fft",
                model="fft",
                seconds=float(np.median(times)),
                features=fft.prepare_features(p)[1],
            )
        )
        print(
            f"  {len(rows):4d} prepare {rows[-1]['seconds'] * 1e3:9.3f} ms  est "
            f"{once_estimate(p, 'fft') * 1e3:9.3f}  {rows[-1]['problem']}",
            file=sys.stderr,
            flush=True,
        )
    return rows


def fit_prepare(rows: list[dict], feature: str = "filter_spectrum_bytes") -> dict:
    """The "fft" model with the coefficient of ``feature`` (a feature of the filters'
    preparation alone) fitted on prepare ``rows`` for the smallest relative error, the
    others as they are (fitted on calls, which pay no preparation)."""
    from scipy.optimize import nnls

    coef = dict(MODELS["fft"])
    known = np.array(
        [sum(coef.get(k, 0.0) * v for k, v in r["features"].items() if k != feature) for r in rows]
    )
    t = np.array([r["seconds"] for r in rows])
    x = np.array([r["features"].get(feature, 0.0) for r in rows])
    (beta,), _ = nnls((x / t)[:, None], 1 - known / t)
    coef[feature] = float(beta)
    for name, est in (
        ("before", known + MODELS["fft"].get(feature, 0.0) * x),
        ("after", known + beta * x),
    ):
        q = est / t
        print(
            f"fft preparation, {len(rows)} problems, {name}: estimate / actual median "
            f"{np.median(q):.2f}, 10-90% {np.percentile(q, 10):.2f}-{np.percentile(q, 90):.2f}",
            file=sys.stderr,
        )
    return coef


def _reused_features(p, method):
    """The model and features of a call of a plan made before: those of ``features``
    less the filters' preparation (``prepare_features``: the FFT's filter transforms),
    which the timed calls do not pay (the planner leaves them out the same way for a
    reused plan: ``costs.once_estimate``)."""
    model, feats = features(p, method)
    prepare = getattr(module_of(method), "prepare_features", None)
    once = {} if prepare is None else prepare(p)[1]
    return model, {k: v - once.get(k, 0.0) for k, v in feats.items()}


def fit(rows: list[dict], models=None) -> dict[str, dict[str, float]]:
    """Coefficients per model of ``rows`` (``models``: only those, the others kept)."""
    from scipy.optimize import nnls

    out = {}
    for model in MODELS:
        rs = [r for r in rows if r["model"] == model and (models is None or model in models)]
        # (features no row exercises, as the filters' preparation, keep their coefficients)
        names = sorted({k for r in rs for k, v in r["features"].items() if v})
        if not rs:
            out[model] = MODELS[model]
            continue
        A = np.array([[r["features"].get(k, 0.0) / r["seconds"] for k in names] for r in rs])
        scale = np.maximum(A.max(axis=0), 1e-300)
        coef, _ = nnls(A / scale, np.ones(len(rs)))
        out[model] = {**MODELS[model], **{k: float(c / s) for k, c, s in zip(names, coef, scale)}}
        est = (A / scale) @ coef
        print(
            f"{model}: {len(rs)} problems, estimate / actual median {np.median(est):.2f}, "
            f"10-90% {np.percentile(est, 10):.2f}-{np.percentile(est, 90):.2f}",
            file=sys.stderr,
        )
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--json")
    ap.add_argument("--from-json", nargs="+", help="rows saved by --json (several: joined)")
    ap.add_argument(
        "--models",
        help="comma-separated models to refit (e.g. fft: the direct method's rows timed "
        "beside it, interleaved, keep their coefficients); default: every model timed",
    )
    ap.add_argument(
        "--methods",
        default="direct,fft,torch_direct,torch_fft",
        help="comma-separated; the models of the others keep their coefficients",
    )
    ap.add_argument(
        "--small-kernels",
        action="store_true",
        help="draw problems of winograd's ground (3x3, 1-D 3 and 5 taps, stride 1)",
    )
    ap.add_argument(
        "--cnn-layers",
        action="store_true",
        help="draw CNN layers (NHWC float32, C and K up to 256, 1x1 to 7x7, stride 1-2)",
    )
    ap.add_argument(
        "--large-kernel-layers",
        action="store_true",
        help="draw CNN layers of the FFT's ground (3x3 to 11x11, NHWC or NCHW, C and K up "
        "to 256, 'same' or 'valid', stride 1-2)",
    )
    ap.add_argument(
        "--prepare",
        action="store_true",
        help="time the FFT's filter preparation (--n problems) and fit the coefficient of "
        "its filter_spectrum_bytes feature, the other coefficients kept",
    )
    a = ap.parse_args()
    draw = (
        _small_kernel_problem
        if a.small_kernels
        else _cnn_layer_problem
        if a.cnn_layers
        else _large_kernel_layer_problem
        if a.large_kernel_layers
        else _random_problem
    )
    rows = (
        [row for name in a.from_json for row in json.load(open(name))]
        if a.from_json
        else collect_prepare(a.n)
        if a.prepare
        else collect(a.n, methods=tuple(a.methods.split(",")), draw=draw)
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    models = None if a.models is None else set(a.models.split(","))
    if models is not None and not models <= set(MODELS):
        ap.error(f"unknown model(s) {sorted(models - set(MODELS))}; known: {sorted(MODELS)}")
    # (--prepare: the "fft" model with its preparation's coefficient refitted)
    coefs = {"fft": fit_prepare(rows)} if a.prepare else fit(rows, models)
    print("COEFFICIENTS: dict[str, dict[str, float]] = {")
    for model, c in coefs.items():
        items = ", ".join(f'"{k}": {v:.3g}' for k, v in c.items())
        print(f'    "{model}": {{{items}}},')
    print("}")
