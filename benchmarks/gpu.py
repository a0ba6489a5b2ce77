"""The torch/GPU benchmarks of issue #8: ours on CUDA tensors against the torch recipe a
user would write, same process, interleaved, medians (anchor time / ours).

    python benchmarks/gpu.py                       # on a machine with a CUDA device
    python benchmarks/gpu.py --device cpu --scale 0.05   # a smoke run anywhere

Workloads (``--scale`` shrinks the batch sizes):

* seed 004: SAD of 64 x 3 x 256 x 256 images against a 3 x 16 x 16 kernel, stride 2,
  against the answer's ``unfold`` recipe (bar 10x, memory O(output));
* seed 000: 500 x 1000 pairs of 96x96x3 'same', max, float32 (bar: the table in < 1.5 s
  on an H100);
* seed 002 layers, NCHW and NHWC, 3x3..7x7, stride 1 and 2, float32, against
  ``F.conv2d`` (bar 0.95x);
* seed 001's six (S, N, K) configs, float64, against the best of ``F.conv2d`` and a
  batched ``torch.fft`` convolution (bar 0.9x);
* large kernels: 16 images 16x256x256 against 128 filters 16x63x63 (bar 20x) and 5x5
  (bar 0.9x), float32, against ``F.conv2d``.

Every anchor runs with TF32 off, as ours does (the float32 contract); each workload
checks that ours agrees with its anchor first. Prints a markdown table; ``--json F``
writes the rows.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

import batchconv as bc
from batchconv.bench.harness import interleaved
from batchconv.tensors import precise


def _timed(device):
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def wrap(f):
        def run():
            f()
            sync()

        return run

    return wrap


def _agree(ours, ref, rel, what):
    err = float((ours.double() - ref.double()).abs().max())
    scale = float(ref.double().abs().max()) or 1.0
    assert err <= rel * scale, f"{what}: ours differs from the anchor by {err:.3g}"


def seed000(device, scale, rows, wrap):
    n, k = max(2, int(500 * scale)), max(2, int(1000 * scale))
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(n, 96, 96, 3, generator=g).to(device)
    w = torch.rand(k, 96, 96, 3, generator=g).to(device)
    spec = "nhwd,khwd->nk|hwd"
    plan = bc.plan(x, w, spec, mode="same", reduce="max")
    t0 = time.perf_counter()
    wrap(lambda: plan(x))()
    t = time.perf_counter() - t0
    rows.append(
        dict(
            workload=f"seed000 {n}x{k} 96x96x3 same max",
            anchor="(absolute bar)",
            anchor_ms=None,
            ours_ms=t * 1e3,
            ratio=None,
            method=plan.method,
            bar="< 1.5 s at full scale",
        )
    )


def seed002(device, scale, rows, wrap):
    layers = [
        ("3x3 64->64 56x56", 8, 56, 64, 64, 3, 1),
        ("3x3 128->128 28x28", 8, 28, 128, 128, 3, 1),
        ("7x7 stem 3->64 224x224 s2", 4, 224, 3, 64, 7, 2),
        ("7x7 32->32 64x64", 4, 64, 32, 32, 7, 1),
        ("5x5 32->64 64x64 s2", 8, 64, 32, 64, 5, 2),
    ]
    for name, N, S, ci, co, kk, s in layers:
        N = max(1, int(N * max(scale, 0.25)))
        x = torch.randn(N, ci, S, S, device=device)
        w = torch.randn(co, ci, kk, kk, device=device)
        for layout in ("NCHW", "NHWC"):
            if layout == "NCHW":
                xs, ws, spec = x, w, "nchw,ochw->nohw|hw"
            else:
                xs = x.permute(0, 2, 3, 1).contiguous()
                ws = w.permute(2, 3, 1, 0).contiguous()
                spec = "nhwc,hwco->nhwo|hw"
            xa = x if layout == "NCHW" else x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), precise(device):
                ref = F.conv2d(xa, w, stride=s)
            ours = bc.correlate(xs, ws, spec, stride=s)
            _agree(ours if layout == "NCHW" else ours.permute(0, 3, 1, 2), ref, 1e-4, name)

            def anchor(xa=xa, w=w, s=s):
                with torch.no_grad(), precise(device):
                    return F.conv2d(xa, w, stride=s)

            t = interleaved(
                {
                    "anchor": wrap(anchor),
                    "ours": wrap(
                        lambda xs=xs, ws=ws, spec=spec, s=s: bc.correlate(xs, ws, spec, stride=s)
                    ),
                },
                rounds=15,
            )
            rows.append(
                dict(
                    workload=f"seed002 {name} N={N} {layout}",
                    anchor="F.conv2d",
                    anchor_ms=t["anchor"] * 1e3,
                    ours_ms=t["ours"] * 1e3,
                    ratio=t["anchor"] / t["ours"],
                    method=bc.plan(xs, ws, spec, stride=s).method,
                    bar=">= 0.95x",
                )
            )


def _torch_fft_convolve(a, b):
    """The batched torch FFT recipe: (N, S, S) 'valid' convolution with one kernel."""
    S, K = a.shape[-1], b.shape[-1]
    n = S + K - 1
    y = torch.fft.irfft2(torch.fft.rfft2(a, s=(n, n)) * torch.fft.rfft2(b, s=(n, n)), s=(n, n))
    return y[..., K - 1 : S, K - 1 : S]


def seed001(device, scale, rows, wrap):
    for S, N, K in [
        (100, 50, 11),
        (1000, 50, 11),
        (100, 5, 11),
        (100, 500, 11),
        (100, 50, 5),
        (100, 50, 31),
    ]:
        N = max(1, int(N * max(scale, 0.1)))
        a = torch.randn(S, S, N, dtype=torch.float64, device=device)
        b = torch.randn(K, K, dtype=torch.float64, device=device)
        an = a.permute(2, 0, 1).contiguous()  # the anchors' best layout, made before timing
        bflip = torch.flip(b, (0, 1))

        def conv(an=an, bflip=bflip):
            return F.conv2d(an[:, None], bflip[None, None])[:, 0]

        def fft(an=an, b=b):
            return _torch_fft_convolve(an, b)

        ours = bc.convolve(a, b, "hwn,hw->hwn|hw")
        _agree(ours.permute(2, 0, 1), conv(), 1e-10, f"seed001 {S},{N},{K}")
        _agree(fft(), conv(), 1e-10, f"seed001 fft recipe {S},{N},{K}")
        with torch.no_grad():
            t = interleaved(
                {
                    "conv2d": wrap(conv),
                    "fft": wrap(fft),
                    "ours": wrap(lambda a=a, b=b: bc.convolve(a, b, "hwn,hw->hwn|hw")),
                },
                rounds=15,
            )
        best = min(t["conv2d"], t["fft"])
        rows.append(
            dict(
                workload=f"seed001 S={S} N={N} K={K} float64",
                anchor="best of F.conv2d, torch.fft",
                anchor_ms=best * 1e3,
                ours_ms=t["ours"] * 1e3,
                ratio=best / t["ours"],
                method=bc.plan(a, b, "hwn,hw->hwn|hw", convolve=True).method,
                bar=">= 0.9x",
            )
        )


def large_kernels(device, scale, rows, wrap):
    n = max(1, int(16 * scale))
    for kk, bar in ((63, ">= 20x"), (5, ">= 0.9x")):
        x = torch.randn(n, 16, 256, 256, device=device)
        w = torch.randn(128, 16, kk, kk, device=device)
        spec = "nchw,kchw->nkhw|hw"

        def anchor(x=x, w=w):
            with torch.no_grad(), precise(device):
                return F.conv2d(x, w)

        ours = bc.correlate(x, w, spec)
        bound = 1e-5 * kk * kk * 16 * float(x.abs().max() * w.abs().max())
        assert float((ours - anchor()).abs().max()) <= bound, f"large kernels {kk}"
        t = interleaved(
            {
                "anchor": wrap(anchor),
                "ours": wrap(lambda x=x, w=w, spec=spec: bc.correlate(x, w, spec)),
            },
            rounds=5,
        )
        rows.append(
            dict(
                workload=f"{n}x16x256x256 vs 128x16x{kk}x{kk} float32",
                anchor="F.conv2d",
                anchor_ms=t["anchor"] * 1e3,
                ours_ms=t["ours"] * 1e3,
                ratio=t["anchor"] / t["ours"],
                method=bc.plan(x, w, spec).method,
                bar=bar,
            )
        )


def _unfold_sad(image, kernel, stride):
    """Seed 004's answer (``torch.Tensor.unfold``), as SAD rather than 1 - SAD / n."""
    patched = image.unfold(-2, kernel.shape[-2], stride).unfold(-2, kernel.shape[-1], stride)
    return patched.movedim(1, -3).sub(kernel).abs().sum(dim=(-3, -2, -1))


def seed004(device, scale, rows, wrap):
    n = max(1, int(64 * scale))
    g = torch.Generator(device="cpu").manual_seed(4)
    image = torch.rand(n, 3, 256, 256, generator=g).to(device)
    kernel = torch.rand(3, 16, 16, generator=g).to(device)
    spec = "bchw,chw->bhw|hw"
    plan = bc.plan(image, kernel, spec, metric="sad", stride=2)
    ours = plan(image)
    _agree(ours, _unfold_sad(image, kernel, 2), 1e-5, "seed004")
    extra = None
    if device.startswith("cuda"):  # memory beyond the inputs and the result
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        plan(image)
        torch.cuda.synchronize()
        extra = (torch.cuda.max_memory_allocated() - base - ours.numel() * 4) / 2**20
    t = interleaved(
        {"anchor": wrap(lambda: _unfold_sad(image, kernel, 2)), "ours": wrap(lambda: plan(image))},
        rounds=15,
    )
    memory = "" if extra is None else f", {extra:.1f} MiB beyond the result"
    rows.append(
        dict(
            workload=f"seed004 SAD {n}x3x256x256 vs 3x16x16 stride 2",
            anchor="unfold",
            anchor_ms=t["anchor"] * 1e3,
            ours_ms=t["ours"] * 1e3,
            ratio=t["anchor"] / t["ours"],
            method=plan.method + memory,
            bar=">= 10x, memory O(output)",
        )
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--only", action="append")
    ap.add_argument("--json")
    a = ap.parse_args()
    rows: list[dict] = []
    wrap = _timed(a.device)
    for f in (seed004, seed002, seed001, large_kernels, seed000):
        if not a.only or f.__name__ in a.only:
            done = len(rows)
            f(a.device, a.scale, rows, wrap)
            for r in rows[done:]:  # as they come: a run cut short keeps what it measured
                print(json.dumps(r), flush=True)
            if a.json:
                with open(a.json, "w") as fh:
                    json.dump(dict(rows=rows), fh, indent=1)
    dev = torch.cuda.get_device_name(a.device) if a.device.startswith("cuda") else "CPU"
    print(
        f"device: {dev}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"batchconv {bc.__version__}; command: python benchmarks/gpu.py "
        f"--device {a.device} --scale {a.scale}\n"
    )
    print("| workload | anchor | anchor ms | ours ms | anchor / ours | bar | method |")
    print("|---|---|---:|---:|---:|---|---|")
    for r in rows:

        def f(v):
            return "" if v is None else f"{v:.2f}"

        print(
            f"| {r['workload']} | {r['anchor']} | {f(r['anchor_ms'])} | {f(r['ours_ms'])} | "
            f"{f(r['ratio'])} | {r['bar']} | {r['method']} |"
        )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(dict(device=dev, torch=torch.__version__, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
