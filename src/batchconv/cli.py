"""batchconv's command line: a demo, template matching on image files (batchconv match
--help), the compiled kernels' warm-up, the configuration, and the benchmarks
(batchconv bench --help)."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its own options: batchconv bench --help
        from .xp import QUIET_THREAD_POOLS

        missing = {k: v for k, v in QUIET_THREAD_POOLS.items() if k not in os.environ}
        if from_command_line and missing and "-h" not in argv and "--help" not in argv:
            # the thread libraries read these when loaded: start again with them set
            # (a value the user set is kept)
            os.environ.update(missing)
            os.execv(sys.executable, [sys.executable, "-m", "batchconv", *argv])
        from .bench import main as bench_main

        return bench_main(argv[1:])
    from ._version import __version__

    ap = argparse.ArgumentParser(prog="batchconv", description=__doc__)
    ap.add_argument("--version", action="version", version=f"batchconv {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "demo",
        help="five users' problems at small scale: their own code against one batchconv "
        "call, checked and timed",
    )
    sub.add_parser(
        "warmup",
        help="compile the numba kernels once and cache them, so that the first call of each "
        "kind in later processes does not wait for the compiler",
    )
    cfg = sub.add_parser("config", help="versions, FFT engine, optional packages, threads")
    cfg.add_argument("--json", action="store_true", help="print it as JSON (machine-readable)")
    sub.add_parser(
        "bench",
        help="benchmarks against SciPy, torch and OpenCV (the users' problems, CNN layers, "
        "template matching, the methods' crossover): --quick, --full, --only NAME, --json, "
        "--plot, --markdown",
    )
    from .match_cli import add_parser as add_match

    add_match(sub)
    args = ap.parse_args(argv)
    if args.command == "match":
        from .match_cli import run as run_match

        return run_match(args)
    if args.command == "demo":
        from .demo import run_demo

        return 0 if run_demo() else 1
    if args.command == "warmup":
        from .warmup import warmup

        warmup()
        return 0
    if args.json:
        import json

        from .config import config

        print(json.dumps(config(), indent=2))
        return 0
    from .config import show_config

    show_config()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
