"""The five seed problems: one batchconv call equals each user's own slow code."""

from __future__ import annotations

import numpy as np
import pytest

from batchconv.cli import main
from batchconv.demo import SEEDS


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_call_equals_the_users_code(name):
    label, theirs, ours, tol = SEEDS[name](np.random.default_rng(int(name)))
    ref = np.asarray(theirs())
    got = ours()
    assert got.shape == ref.shape, label
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= tol * scale, label


def test_seed000_full_shape_bookkeeping():
    """Seed 000's call at its real shapes, planned only (500 x 1000 pairs of 96x96x3)."""
    import batchconv as bc

    w = np.zeros((1000, 96, 96, 3), np.float32)
    p = bc.plan(
        ((500, 96, 96, 3), np.float32),
        w,
        "nhwd,khwd->nk|hwd",
        mode="same",
        reduce="max",
        memory="2GB",
    )
    assert p.problem.out_shape == (500, 1000)
    assert p.peak_bytes < 2e9 * 1.25
    if p.method == "fft":
        assert p.state.fft_shape[:2] == (144, 144)  # wrap-free, not 191


def test_cli_demo_and_config(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "all seeds match" in out
    assert main(["config"]) == 0
    assert "fft engine" in capsys.readouterr().out
