"""The five seed problems at small scale: each user's own slow code against one batchconv
call, checked for equality and timed. Run with ``batchconv demo``.

The slow code is the seed's own (translated to NumPy where it used TensorFlow or torch;
SciPy's ``correlate``/``convolve`` where the seed used them and SciPy is installed).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .api import convolve, correlate
from .xp import has_module


def _time(f: Callable, repeat: int = 3):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _numpy_correlate_same_3d(u, v):
    """Plain NumPy 'same' cross-correlation (scipy.signal.correlate's centring)."""
    pads = [(m // 2, (m - 1) // 2) for m in v.shape]
    up = np.pad(u, pads)
    win = np.lib.stride_tricks.sliding_window_view(up, v.shape)
    return np.einsum("ijkabc,abc->ijk", win, v)


def seed000(rng):
    """500 images x 1000 filters 96x96x3 in the seed; 12 x 16 of 24x24x3 here."""
    imgs = rng.random((12, 24, 24, 3))
    filts = rng.random((16, 24, 24, 3))
    if has_module("scipy"):
        from scipy.signal import correlate as sp_correlate
        from scipy.spatial.distance import cdist

        def xcorr(u, v):
            u = np.reshape(u, [24, 24, 3])
            v = np.reshape(v, [24, 24, 3])
            return np.max(sp_correlate(u, v, mode="same", method="fft"))

        def theirs():
            return cdist(imgs.reshape(12, -1), filts.reshape(16, -1), xcorr)

        label = "cdist + scipy.signal.correlate(fft)"
    else:

        def theirs():
            return np.array([[_numpy_correlate_same_3d(u, v).max() for v in filts] for u in imgs])

        label = "loop of numpy 'same' correlations"
    ours = lambda: correlate(imgs, filts, "nhwd,khwd->nk|hwd", mode="same", reduce="max")  # noqa: E731
    return label, theirs, ours, 1e-10


def seed001(rng):
    """Minibatch (H, W, N) and one 2-D filter, 'valid' convolution."""
    X = rng.standard_normal((64, 64, 20))
    Y = rng.standard_normal((7, 7))
    if has_module("scipy"):
        from scipy import signal

        def theirs():
            return np.stack(
                [signal.convolve(X[:, :, i], Y, "valid") for i in range(X.shape[2])], axis=-1
            )

        label = "loop of scipy.signal.convolve"
    else:

        def theirs():
            win = np.lib.stride_tricks.sliding_window_view(X, Y.shape, axis=(0, 1))
            return np.einsum("ijnab,ab->ijn", win, Y[::-1, ::-1])

        label = "numpy sliding windows"
    ours = lambda: convolve(X, Y, "hwn,hw->hwn|hw")  # noqa: E731
    return label, theirs, ours, 1e-10


def seed002(rng):
    """NHWC input, HWIO filters, stride 2: what tf.nn.conv2d(padding='VALID') does."""
    x = rng.standard_normal((2, 17, 17, 3)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 3, 8)).astype(np.float32)
    s = 2

    def theirs():  # the seed's loop, over every image (the seed's version kept only one)
        rf, nf = kernel.shape[0], kernel.shape[-1]
        h_range = (x.shape[1] - rf) // s + 1
        w_range = (x.shape[2] - rf) // s + 1
        out = np.zeros((x.shape[0], h_range, w_range, nf), np.float32)
        for i in range(x.shape[0]):
            for z in range(nf):
                for _h in range(h_range):
                    for _w in range(w_range):
                        out[i, _h, _w, z] = np.sum(
                            x[i, _h * s : _h * s + rf, _w * s : _w * s + rf, :] * kernel[:, :, :, z]
                        )
        return out

    ours = lambda: correlate(x, kernel, "nhwc,hwco->nhwo|hw", stride=s)  # noqa: E731
    return "the seed's tf-style loop", theirs, ours, 1e-4


def seed003(rng):
    """b images m x n, one p x q filter, numpy only: the accepted single-einsum answer."""
    x = rng.standard_normal((200, 32, 32))
    f = rng.standard_normal((5, 5))

    def theirs():
        shape = f.shape + (x.shape[0],) + tuple(np.subtract(x.shape[1:], f.shape) + 1)
        strides = (x.strides * 2)[1:]
        M = np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)
        return np.einsum("pq,pqbmn->bmn", f, M)

    ours = lambda: correlate(x, f, "bmn,mn->bmn|mn")  # noqa: E731
    return "as_strided + one einsum", theirs, ours, 1e-10


def seed004(rng):
    """RGB batch against an RGB kernel with stride 2: the seed's similarity
    1 - mean|patch - kernel|, by its accepted torch ``unfold`` answer (a NumPy
    ``sliding_window_view`` version of it without torch) against metric 'sad'."""
    img = rng.random((4, 3, 41, 41)).astype(np.float32)
    knl = rng.random((3, 10, 9)).astype(np.float32)
    stride = 2
    if has_module("torch"):
        import torch

        def theirs():
            t, k = torch.from_numpy(img), torch.from_numpy(knl)
            patched = t.unfold(-2, k.shape[-2], stride).unfold(-2, k.shape[-1], stride)
            patched = patched.permute(0, 2, 3, 1, 4, 5)
            diff = (patched - k[None, None, None]).abs().sum(dim=(-3, -2, -1))
            return (1 - diff / k.numel()).numpy()

        label = "torch unfold recipe (1 - mean|d|)"
    else:

        def theirs():
            win = np.lib.stride_tricks.sliding_window_view(img, knl.shape[1:], axis=(2, 3))
            win = win[:, :, ::stride, ::stride].transpose(0, 2, 3, 1, 4, 5)
            return 1 - np.abs(win - knl).sum(axis=(-3, -2, -1)) / knl.size

        label = "numpy unfold recipe (1 - mean|d|)"

    def ours():
        sad = correlate(img, knl, "bchw,chw->bhw|hw", metric="sad", stride=stride)
        return 1 - sad / knl.size

    return label, theirs, ours, 1e-5


SEEDS = {"000": seed000, "001": seed001, "002": seed002, "003": seed003, "004": seed004}


def run_demo() -> bool:
    """Compile the kernels (:func:`~batchconv.warmup.warmup`; cached for later runs),
    then run every seed; print a table; return True when every result matched."""
    from .warmup import warmup

    warmup()
    print()
    rng = np.random.default_rng(0)
    print(
        "batchconv demo: five users' problems (seeds 000-004 in the README), each user's "
        "own slow code against one batchconv call, at small scale\n"
    )
    print(
        f"{'seed':<5} {'their code':<38} {'theirs':>10} {'batchconv':>10} {'speedup':>8}  "
        f"{'max rel err':>11}  ok"
    )
    ok_all = True
    for name, make in SEEDS.items():
        label, theirs, ours, tol = make(rng)
        t_theirs, ref = _time(theirs, repeat=1 if name == "002" else 3)
        t_ours, got = _time(ours)
        ref = np.asarray(ref)
        scale = max(float(np.abs(ref).max()), 1e-300)
        err = float(np.abs(np.asarray(got, dtype=np.float64) - ref).max()) / scale
        ok = got.shape == ref.shape and err <= tol
        ok_all &= ok
        print(
            f"{name:<5} {label:<38} {t_theirs * 1e3:8.2f}ms {t_ours * 1e3:8.2f}ms "
            f"{t_theirs / t_ours:7.1f}x  {err:11.2e}  {'yes' if ok else 'NO'}"
        )
    print("\nall seeds match their slow code" if ok_all else "\nMISMATCH: see the table")
    return ok_all
