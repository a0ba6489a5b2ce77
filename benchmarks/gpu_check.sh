#!/usr/bin/env bash
# Issue #8's checks on a machine with a CUDA GPU, in one command (fits the device tool's
# 10-minute call: 270 + 60 + 230 s at most; torch, Triton, pytest, hypothesis and scipy
# must be installed there):
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh
#
# writes config.txt (bc.show_config()), test_cuda.txt (tests/test_cuda.py: the CUDA
# matrix, metrics, measured planning, and the core/metric/property suites on CUDA
# tensors), overhead.md (benchmarks/overhead.py: the Python layer's cost per call) and
# gpu.md / gpu.json (benchmarks/gpu.py: every GPU bar of #8, rows printed as they are
# measured). TEST_SECONDS and BENCH_SECONDS cap the two parts.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import batchconv as bc; bc.show_config()" 2>&1 | tee "$out/config.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$out/config.txt" 2>&1
timeout "${TEST_SECONDS:-270}" python3 -m pytest tests/test_cuda.py -q -x -p no:cacheprovider \
    > "$out/test_cuda.txt" 2>&1
echo "tests/test_cuda.py exit status $?" | tee -a "$out/test_cuda.txt"
tail -15 "$out/test_cuda.txt"
timeout 60 python3 benchmarks/overhead.py --device cuda 2>&1 | tee "$out/overhead.md"
timeout "${BENCH_SECONDS:-230}" python3 benchmarks/gpu.py --json "$out/gpu.json" 2>&1 \
    | tee "$out/gpu.md"
