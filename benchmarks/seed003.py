"""Seed 003: b = 1000 images 64x64 against one 5x5 filter, 'valid', float64: the accepted
answer's single ``einsum`` over an ``as_strided`` view, against one batchconv call.

    python benchmarks/seed003.py
"""

from __future__ import annotations

import numpy as np
from _harness import assert_agree, interleaved, table

import batchconv as bc


def einsum_answer(x, f):
    shape = f.shape + (x.shape[0],) + tuple(np.subtract(x.shape[1:], f.shape) + 1)
    strides = (x.strides * 2)[1:]
    M = np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)
    return np.einsum("pq,pqbmn->bmn", f, M)


def run() -> list[dict]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 64, 64))
    f = rng.standard_normal((5, 5))
    spec = "bmn,mn->bmn|mn"
    ref = einsum_answer(x, f)
    contenders = {"einsum + as_strided": lambda: einsum_answer(x, f)}
    for m in ("direct", "fft", "auto"):
        contenders[f"ours {m}"] = lambda m=m: bc.correlate(x, f, spec, method=m)
        assert_agree(contenders[f"ours {m}"](), ref, 1e-12 * 25 * 16, f"seed003 {m}")
    t = interleaved(contenders, rounds=9)
    row = {f"{k} ms": v * 1e3 for k, v in t.items()}
    row["einsum / ours auto"] = t["einsum + as_strided"] / t["ours auto"]
    row["auto chose"] = bc.plan(x, f, spec).method
    return [row]


COLUMNS = ["einsum + as_strided ms", "ours direct ms", "ours fft ms", "ours auto ms",
           "auto chose", "einsum / ours auto"]

if __name__ == "__main__":
    print(table(run(), COLUMNS))
