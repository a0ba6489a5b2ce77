"""batchconv.compat.tf: TF's SAME rule against JAX (in its own process), the other
padding forms and data formats against the core called directly."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import batchconv as bc
from batchconv.compat import tf

HERE = os.path.dirname(__file__)


def test_same_equals_jax():
    if importlib.util.find_spec("jax") is None:  # (not imported here: see below)
        pytest.skip("jax is not installed")
    run = subprocess.run(
        [sys.executable, os.path.join(HERE, "scipy_suites", "tf_vs_jax.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JAX_ENABLE_X64": "1"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "cases 72 failed 0", run.stdout


@pytest.mark.parametrize("n, k, s, d", [(16, 3, 2, 1), (15, 4, 3, 2), (17, 1, 3, 1), (5, 7, 1, 1)])
def test_same_padding_is_tfs_rule(n, k, s, d):
    total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
    assert tf.same_padding(n, k, s, d) == (total // 2, total - total // 2)


def test_formats_and_explicit_padding():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9, 10, 3))
    w = rng.standard_normal((3, 2, 3, 5))
    pads = [[0, 0], [1, 2], [0, 1], [0, 0]]
    got = tf.conv2d(x, w, strides=[1, 2, 1, 1], padding=pads)
    want = bc.correlate(x, w, "nhwc,hwco->nhwo|hw", mode=((1, 2), (0, 1)), stride=(2, 1))
    np.testing.assert_allclose(got, want, atol=1e-12)
    nchw = tf.conv2d(
        x.transpose(0, 3, 1, 2),
        w,
        strides=[1, 1, 2, 1],
        padding=[[0, 0], [0, 0], [1, 2], [0, 1]],
        data_format="NCHW",
    )
    np.testing.assert_allclose(nchw.transpose(0, 2, 3, 1), got, atol=1e-12)
    dw = tf.depthwise_conv2d(x, rng.standard_normal((3, 3, 3, 2)), padding="VALID")
    assert dw.shape == (2, 7, 8, 6)


def test_errors():
    x, w = np.ones((1, 8, 8, 3)), np.ones((3, 3, 3, 4))
    with pytest.raises(ValueError, match="data_format"):
        tf.conv2d(x, w, data_format="NWHC")
    with pytest.raises(ValueError, match="batch and channel"):
        tf.conv2d(x, w, strides=[2, 1, 1, 1])
    with pytest.raises(ValueError, match="channels"):
        tf.conv2d(x, np.ones((3, 3, 2, 4)))
    with pytest.raises(ValueError, match="padding"):
        tf.conv2d(x, w, padding="FULL")
