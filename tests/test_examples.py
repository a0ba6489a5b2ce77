"""The examples in ``examples/`` run (at a small scale) and check their own answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_dask_seed000_example():
    pytest.importorskip("distributed")
    out = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "dask_seed000.py"),
            "--images",
            "20",
            "--filters",
            "30",
            "--image-chunk",
            "10",
            "--filter-chunk",
            "15",
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "equal the in-memory result" in out.stdout
    assert "dashboard:" in out.stdout
