#!/usr/bin/env bash
# Issue #8's checks on a machine with a CUDA GPU, in one command (fits the device tool's
# 10-minute call: 130 + 130 + 40 + 60 + 230 s at most; torch, Triton, pytest, hypothesis and
# scipy must be installed there):
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh
#
# writes config.txt (bc.show_config()), test_cuda.txt (tests/test_cuda.py: the CUDA
# matrix, metrics, measured planning), suites_cuda.txt (the core, metric and property
# suites on CUDA tensors, its own step so that a cut-off run keeps the first one's
# summary), overhead.md (benchmarks/overhead.py: the Python layer's cost per call),
# gradients.md (benchmarks/gradients.py: forward + backward against F.conv2d's) and
# gpu.md / gpu.json (benchmarks/gpu.py: every GPU bar of #8, rows printed as they are
# measured). TEST_SECONDS, SUITE_SECONDS and BENCH_SECONDS cap the parts.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# array-api-compat gives torch's array namespace (reductions, windowed metrics): where the
# machine lacks it and cannot reach an index, install it from wheels/ carried beside the
# tree (here: pip download --no-deps array-api-compat -d wheels)
python3 -c "import array_api_compat" 2>/dev/null || {
    if ls wheels/array_api_compat-*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --find-links wheels array-api-compat
    else
        echo "array-api-compat is missing: torch reductions and metrics will fail" \
            "(carry wheels/: pip download --no-deps array-api-compat -d wheels)" |
            tee "$out/missing.txt"
    fi
}
python3 -c "import batchconv as bc; bc.show_config()" 2>&1 | tee "$out/config.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$out/config.txt" 2>&1
suite=tests/test_cuda.py::test_core_metric_and_property_suites_on_cuda
timeout "${TEST_SECONDS:-130}" python3 -m pytest tests/test_cuda.py -q --maxfail=20 \
    -p no:cacheprovider --deselect "$suite" > "$out/test_cuda.txt" 2>&1
echo "tests/test_cuda.py exit status $?" | tee -a "$out/test_cuda.txt"
tail -15 "$out/test_cuda.txt"
timeout "${SUITE_SECONDS:-130}" python3 -m pytest -q -p no:cacheprovider "$suite" \
    > "$out/suites_cuda.txt" 2>&1
echo "suites on CUDA tensors exit status $?" | tee -a "$out/suites_cuda.txt"
tail -5 "$out/suites_cuda.txt"
timeout 40 python3 benchmarks/overhead.py --device cuda 2>&1 | tee "$out/overhead.md"
timeout 60 python3 benchmarks/gradients.py --device cuda 2>&1 | tee "$out/gradients.md"
timeout "${BENCH_SECONDS:-230}" python3 benchmarks/gpu.py --json "$out/gpu.json" 2>&1 \
    | tee "$out/gpu.md"
