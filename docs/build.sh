#!/usr/bin/env bash
# Build the documentation into docs/_build/html, warnings as errors, then run the pages'
# examples as tests. The gallery's examples (docs/gallery/plot_*.py) run during the
# build and their figures go into the pages.
#
#   python3 -m pip install -r docs/requirements.txt    # once
#   bash docs/build.sh            # incremental: only changed pages and examples again
#   bash docs/build.sh --clean    # from scratch, as CI does on a fresh clone
#
# Then open docs/_build/html/index.html; `python3 docs/screenshot_check.py` looks at
# three pages in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--clean" ]]; then
    shift
    rm -rf docs/_build docs/_generated docs/auto_examples docs/generated docs/sg_execution_times.rst
fi

# the gallery's figures without a display; idle thread pools sleep rather than spin
export MPLBACKEND=Agg
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"

start=$SECONDS
python3 -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
echo "docs: built docs/_build/html in $((SECONDS - start)) s"

start=$SECONDS
python3 -m pytest docs
echo "docs: examples checked in $((SECONDS - start)) s"
