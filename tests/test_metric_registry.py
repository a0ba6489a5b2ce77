"""The metrics are a registry of descriptions (issue 21): a metric registered from a test
file computes through every path, ``explain()`` names it, and no code outside
``methods/`` and ``metrics/`` compares a method's or a metric's name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import batchconv as bc
from batchconv.methods import METHODS
from batchconv.metrics import METRICS, Metric, metric_of, register_metric, unregister_metric

SRC = Path(bc.__file__).parent


@pytest.fixture
def zncc():
    """ncc under another name, registered for one test."""
    register_metric(
        Metric(
            "zncc",
            "zero-normalised cross-correlation",
            centred=True,
            recentre_filters=True,
            normalised=True,
            range=(-1.0, 1.0),
        )
    )
    yield "zncc"
    unregister_metric("zncc")


@pytest.mark.parametrize("method", ["auto", "direct", "fft"])
def test_a_registered_metric_computes_as_its_description(zncc, rng, method):
    x, w = rng.standard_normal((3, 2, 40)), rng.standard_normal((4, 2, 7))
    spec = "bcn,kcn->bkn|n"
    ours = bc.correlate(x, w, spec, metric=zncc, method=method, mode="same")
    ncc = bc.correlate(x, w, spec, metric="ncc", method=method, mode="same")
    np.testing.assert_array_equal(ours, ncc)
    assert "zncc: correlations of the centred x" in bc.plan(x, w, spec, metric=zncc).explain()


def test_an_unregistered_metric_is_refused_by_name(rng):
    register_metric(Metric("l1", "sad under another name", product_form=False, best="min"))
    x, w = rng.standard_normal((2, 30)), rng.standard_normal((3, 5))
    np.testing.assert_array_equal(bc.correlate(x, w, metric="l1"), bc.correlate(x, w, metric="sad"))
    with pytest.raises(ValueError, match="metric 'l1' has no 'fft' form"):
        bc.correlate(x, w, metric="l1", method="fft")
    unregister_metric("l1")
    with pytest.raises(ValueError, match="metric must be one of"):
        bc.correlate(x, w, metric="l1")


def test_metric_descriptions_are_checked():
    with pytest.raises(ValueError, match="is taken"):
        register_metric(Metric("ncc", "again"))
    with pytest.raises(ValueError, match="centred"):
        register_metric(Metric("plain_distance", "sum (a - b)^2 uncentred"))
    with pytest.raises(ValueError, match="'max' or 'min'"):
        register_metric(Metric("odd", "?", normalised=True, best="largest"))
    assert metric_of("ssd").best == "min" and metric_of("ncc").range == (-1.0, 1.0)


def _name_comparisons(names) -> list[str]:
    """Lines of src/batchconv outside methods/, metrics/ and bench/ (which loops over
    method names on purpose) that compare something with one of ``names``."""
    alt = "|".join(map(re.escape, names))
    pattern = re.compile(
        rf"(==|!=|\bin|\bnot in)\s*[(\[{{]?\s*[\"']({alt})[\"']|[\"']({alt})[\"']\s*(==|!=)"
    )
    found = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("methods/", "metrics/", "bench/")):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line.split("#")[0]):
                found.append(f"{rel}:{i}: {line.strip()}")
    return found


def test_no_code_outside_the_registries_compares_their_names():
    """ARCHITECTURE.md gives the same check as a grep command."""
    assert _name_comparisons(METHODS) == []
    assert _name_comparisons(METRICS) == []


def test_the_name_check_finds_a_comparison(tmp_path, monkeypatch):
    """(the check above would pass on an empty folder: this shows it finds what it should)"""
    bad = tmp_path / "pkg"
    bad.mkdir()
    (bad / "x.py").write_text('if p.metric == "ncc":\n    pass\nif m in ("dot", "sad"): pass\n')
    monkeypatch.setattr(f"{__name__}.SRC", bad)
    assert len(_name_comparisons(METRICS)) == 2
    assert len(_name_comparisons(METHODS)) == 0
