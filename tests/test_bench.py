"""``batchconv bench``: the command runs, writes its JSON, Markdown and chart, checks the
answers it times, and works with the optional packages missing (anchors skipped)."""

from __future__ import annotations

import json

import pytest
from test_numpy_only import _run

from batchconv.bench import WORKLOADS, main, run_bench
from batchconv.bench.harness import Context, assert_agree
from batchconv.cli import main as cli_main


def test_quick_run_writes_json_and_markdown(tmp_path, capsys):
    js, md = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["--quick", "--only", "seed003", "--json", str(js), "--markdown", str(md)]) == 0
    report = json.loads(js.read_text())
    assert report["mode"] == "quick" and set(report["peaks"]) == {
        "gemm_float32",
        "gemm_float64",
        "fft",
    }
    (sec,) = report["sections"]
    assert sec["name"] == "seed003" and sec["rows"] and sec["summary"]
    row = sec["summary"][0]
    assert row["anchor / ours"] > 0 and row["bar"] == 3.0 and row["met"] in (True, False)
    text = md.read_text()
    assert "### Summary" in text and "einsum + as_strided" in text
    assert "| seed003 |" in capsys.readouterr().out  # the summary table is printed


def test_crossover_and_chart(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "c.png"
    assert cli_main(["bench", "--quick", "--only", "crossover", "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000


def test_every_workload_has_the_interface():
    for name, mod in WORKLOADS.items():
        assert mod.NAME == name and callable(mod.run) and mod.__doc__


def test_unknown_workload():
    with pytest.raises(ValueError, match="unknown workload"):
        run_bench(only=["seed999"], log=lambda s: None)
    with pytest.raises(SystemExit):
        main(["--only", "seed999"])


def test_a_wrong_answer_cannot_win():
    with pytest.raises(AssertionError, match="differs from the anchor"):
        assert_agree([1.0, 2.0], [1.0, 2.5], 1e-3, "demo")


def test_context_is_plain():
    ctx = Context(quick=True, peaks={}, log=print)
    assert ctx.quick


def test_cnn_bar_rows_run_with_numpy_and_scipy_alone(monkeypatch):
    """The CNN section's bar is the brief's, "with NumPy + SciPy alone": that row's
    contender calls correlate with torch and numba off; with numba installed a "no torch
    (numba)" row keeps the compiled kernels' time; the cold time goes on the row that
    shares its settings only."""
    import batchconv as bc
    from batchconv import compiled
    from batchconv.bench import cnn
    from batchconv.tensors import torch_for_numpy

    layer = "3x3 16->16 20x20"
    monkeypatch.setattr(cnn, "LAYERS", [(layer, 2, 20, 16, 16, 3, 1)])
    monkeypatch.setattr(cnn, "QUICK", {layer})
    seen = set()
    real = bc.correlate

    def spy(*a, **k):
        seen.add((compiled.enabled(), torch_for_numpy()))
        return real(*a, **k)

    monkeypatch.setattr(bc, "correlate", spy)
    sec = cnn.run(Context(quick=True, peaks={}, log=lambda s: None))
    assert (False, False) in seen
    (row,) = sec.rows
    assert row["NumPy+SciPy ms"] > 0 and row["NumPy+SciPy method"]
    alone = [r for r in sec.summary if r["case"].endswith("NumPy+SciPy alone")]
    assert len(alone) == 1 and alone[0]["bar"] == 0.8
    numba_rows = [r for r in sec.summary if r["case"].endswith("no torch (numba)")]
    assert len(numba_rows) == int(compiled.enabled())
    assert ("no torch ms" in row) == compiled.enabled()
    if compiled.enabled():
        assert (True, False) in seen
        assert "cold" not in alone[0]["note"]
    assert sum("cold" in r["note"] for r in sec.summary) == 1


def test_quick_bench_without_optional_packages():
    """NumPy only: the anchors that need SciPy, OpenCV or torch are skipped with a note,
    and ours still runs (seed 004's anchor falls back to the NumPy recipe)."""
    r = _run("""
        from batchconv.bench import run_bench
        rep = run_bench(quick=True, only=["seed004", "ncc", "seed001"], log=lambda s: None)
        notes = {s["name"]: " ".join(s["notes"]) for s in rep["sections"]}
        assert "NumPy version of the recipe" in notes["seed004"], notes
        assert "OpenCV not installed" in notes["ncc"], notes
        assert "SciPy not installed" in notes["seed001"], notes
        ncc = rep["sections"][1]["summary"][0]
        assert ncc["anchor"] == "not installed" and ncc["ours ms"] > 0
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_the_command_lets_idle_threads_sleep(tmp_path):
    """``batchconv bench`` from the command line restarts itself with the thread pools
    told not to spin (a value the user set is kept), and the report says so."""
    import os
    import subprocess
    import sys

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")
    }
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    for user, expect in ((None, "OMP_WAIT_POLICY=PASSIVE"), ("ACTIVE", "OMP_WAIT_POLICY=ACTIVE")):
        md = tmp_path / f"{user}.md"
        run_env = env if user is None else {**env, "OMP_WAIT_POLICY": user}
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "batchconv",
                "bench",
                "--quick",
                "--only",
                "seed003",
                "--markdown",
                str(md),
            ],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        text = md.read_text()
        assert expect in text and "OPENBLAS_THREAD_TIMEOUT=4" in text
