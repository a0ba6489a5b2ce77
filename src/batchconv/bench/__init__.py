"""batchconv bench: the users' problems, CNN layers, template matching and the methods'
crossover, timed against SciPy, torch and OpenCV on this machine.

Each workload module (``seed000`` ... ``crossover``) has a ``run(ctx)`` that times
batchconv and the anchor(s) interleaved in this process, checks that the answers agree,
and returns a :class:`~batchconv.bench.harness.Section`: a detailed table and lines of the
summary table (ratio anchor / ours, the bar, achieved GFLOP/s and the fraction of the
machine's peak, measured at the start). Anchors that are not installed are skipped with a
note. The workloads live in the package so that an installed ``batchconv bench`` runs them.

>>> sorted(WORKLOADS)
['cnn', 'crossover', 'match', 'ncc', 'seed000', 'seed001', 'seed003', 'seed004']
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict

import numpy as np

from . import cnn, crossover, match, ncc, seed000, seed001, seed003, seed004
from .harness import SUMMARY_COLUMNS, Context, Section, measure_peaks, table

__all__ = ["WORKLOADS", "run_bench", "main", "machine"]

WORKLOADS = {m.NAME: m for m in (seed000, seed001, cnn, seed003, seed004, ncc, match, crossover)}


def machine() -> str:
    """The CPU, cores and versions, in one line."""
    from .._version import __version__
    from ..config import config

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or cpu
    opt = config()["optional"]
    found = ", ".join(f"{k} {v}" for k, v in opt.items() if v)
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy "
        f"{np.__version__}, {found or 'no optional packages'}, batchconv {__version__}"
    )


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_bench(quick: bool = True, only: list[str] | None = None, log=_log) -> dict:
    """Run the workloads (all, or ``only``); returns the report as a dict."""
    names = only or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; choose from {sorted(WORKLOADS)}")
    log(f"batchconv bench ({'quick' if quick else 'full'}): {', '.join(names)}")
    peaks = measure_peaks(log)
    ctx = Context(quick=quick, peaks=peaks, log=log)
    sections: list[Section] = []
    t_all = time.perf_counter()
    for i, name in enumerate(names, 1):
        log(f"[{i}/{len(names)}] {name} ...")
        t0 = time.perf_counter()
        sec = WORKLOADS[name].run(ctx)
        sec.notes.append(f"ran in {time.perf_counter() - t0:.0f} s")
        sections.append(sec)
        log(f"[{i}/{len(names)}] {name} done in {time.perf_counter() - t0:.0f} s")
    from ..xp import QUIET_THREAD_POOLS

    pools = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in QUIET_THREAD_POOLS)
    return {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "mode": "quick" if quick else "full",
        "seconds": time.perf_counter() - t_all,
        "peaks": peaks,
        "thread_pools": pools,
        "sections": [asdict(s) for s in sections],
    }


def summary_table(report: dict) -> str:
    rows = [r for s in report["sections"] for r in s["summary"]]
    return table(rows, SUMMARY_COLUMNS)


def markdown(report: dict, command: str) -> str:
    """The whole report in Markdown: machine, command, peaks, the summary table, and each
    workload's detailed table."""
    peaks = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in report["peaks"].items())
    out = [
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}  ",
        f"Command: `{command}` ({report['mode']}, {report['seconds']:.0f} s)  ",
        f"Thread pools: {report.get('thread_pools', 'not recorded')}  ",
        f"Measured peaks: {peaks}",
        "",
        "### Summary",
        "",
        summary_table(report),
        "",
    ]
    for s in report["sections"]:
        out += [f"### {s['title']}", "", s["about"], "", table(s["rows"], s["columns"]), ""]
        out += [f"- {n}" for n in s["notes"]] + [""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="batchconv bench", description=" ".join(__doc__.split("\n\n")[0].split())
    )
    size = ap.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="small sizes, under 2 minutes (the default)"
    )
    size.add_argument(
        "--full",
        action="store_true",
        help="the workloads' full sizes (all pairs of 500 x 1000 images: several minutes)",
    )
    ap.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        choices=sorted(WORKLOADS),
        help="run only this workload (repeatable)",
    )
    ap.add_argument("--json", metavar="FILE", help="write the raw numbers as JSON")
    ap.add_argument(
        "--plot", metavar="FILE.png", help="draw the method crossover chart (matplotlib)"
    )
    ap.add_argument(
        "--markdown", metavar="FILE", help="write the report as Markdown (what BENCHMARKS.md holds)"
    )
    args = ap.parse_args(argv)
    for path in (args.json, args.markdown, args.plot):  # fail now, not after the run
        folder = os.path.dirname(os.path.abspath(path)) if path else None
        if folder and not os.path.isdir(folder):
            ap.error(f"cannot write {path}: folder {folder} does not exist")
    if args.plot and args.only and "crossover" not in args.only:
        ap.error("--plot draws the crossover workload: add --only crossover")
    only = list(dict.fromkeys(args.only)) if args.only else None  # each workload once
    report = run_bench(quick=not args.full, only=only)
    command = "batchconv bench " + " ".join(argv if argv is not None else sys.argv[2:])
    print()
    print(summary_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=float)
        _log(f"raw numbers written to {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(report, command.strip()))
        _log(f"report written to {args.markdown}")
    if args.plot:
        sec = next((s for s in report["sections"] if s["name"] == "crossover"), None)
        if sec is None:
            _log("no chart: the crossover workload did not run")
        else:
            _log(crossover.plot(Section(**sec), args.plot))
    return 0
