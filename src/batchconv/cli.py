"""The ``batchconv`` command: ``batchconv demo``, ``batchconv config`` and
``batchconv bench`` (see ``batchconv bench --help``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its own options: batchconv bench --help
        from .bench import main as bench_main

        return bench_main(argv[1:])
    ap = argparse.ArgumentParser(prog="batchconv", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="the five seed problems at small scale, checked and timed")
    sub.add_parser("config", help="versions, FFT engine, optional packages, threads")
    sub.add_parser("bench", help="the brief's workloads against SciPy, torch, OpenCV: "
                                 "--quick, --full, --only NAME, --json, --plot, --markdown")
    args = ap.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return 0 if run_demo() else 1
    from .config import show_config

    show_config()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
