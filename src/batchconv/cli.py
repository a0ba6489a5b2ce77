"""The ``batchconv`` command: ``batchconv demo`` and ``batchconv config``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="batchconv", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="the five seed problems at small scale, checked and timed")
    sub.add_parser("config", help="versions, FFT engine, optional packages, threads")
    args = ap.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return 0 if run_demo() else 1
    from .config import show_config

    show_config()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
