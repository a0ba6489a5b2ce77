#!/usr/bin/env bash
# The package as users get it: build the sdist and the wheel (the wheel from the sdist),
# check them (twine check --strict, and what the wheel holds), install the wheel into a
# new virtual environment without the system's packages (the wheel's own dependency,
# NumPy, comes from pip) and run the README's first example and the command line there,
# outside the source tree. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "package check: building the sdist and the wheel"
if ! python3 -m build --outdir "$work/dist" . >"$work/build.log" 2>&1; then
    cat "$work/build.log"
    exit 1
fi
sdist=$(echo "$work"/dist/*.tar.gz)
wheel=$(echo "$work"/dist/*.whl)
python3 -m twine check --strict "$sdist" "$wheel"

# what they hold: the package with py.typed, its version and the LICENSE; no caches of
# compiled code
python3 - "$sdist" "$wheel" <<'PY'
import re
import sys
import tarfile
import zipfile

sdist, wheel = sys.argv[1:]
in_wheel = zipfile.ZipFile(wheel).namelist()
in_sdist = tarfile.open(sdist).getnames()
problems = []
for need in ("batchconv/__init__.py", "batchconv/py.typed", "batchconv/_version.py"):
    if need not in in_wheel:
        problems.append(f"the wheel lacks {need}")
if not any(n.endswith("src/batchconv/py.typed") for n in in_sdist):
    problems.append("the sdist lacks src/batchconv/py.typed")
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in in_wheel):
    problems.append("the wheel lacks the LICENSE file")
if not any(n.endswith("/LICENSE") for n in in_sdist):
    problems.append("the sdist lacks the LICENSE file")
for name in in_wheel + in_sdist:
    if re.search(r"__pycache__|\.(pyc|nbi|nbc)$", name):
        problems.append(f"a cache file is packaged: {name}")
if problems:
    sys.exit("package check: " + "; ".join(problems))
print(f"package check: the wheel holds {len(in_wheel)} files, the sdist {len(in_sdist)}")
PY

echo "package check: installing the wheel into a new virtual environment"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
cd "$work"  # away from the source tree: batchconv comes from the wheel
"$work/venv/bin/python" - "$root/README.md" "$wheel" <<'PY'
import doctest
import os
import re
import sys
import time
from pathlib import Path

import batchconv

readme, wheel = sys.argv[1:]
here = Path(batchconv.__file__).resolve()
if Path(sys.prefix).resolve() not in here.parents:
    sys.exit(f"package check: batchconv was imported from {here}, not from the venv")
version = os.path.basename(wheel).split("-")[1]
if batchconv.__version__ != version:
    sys.exit(f"package check: __version__ {batchconv.__version__} but the wheel is {version}")
first = next(b for b in re.findall(r"```python\n(.*?)```", Path(readme).read_text(), re.S) if ">>>" in b)
test = doctest.DocTestParser().get_doctest(first, {}, "README's first example", readme, 0)
runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
t0 = time.perf_counter()
runner.run(test)
if runner.failures:
    sys.exit("package check: the README's first example failed in the new venv")
took = time.perf_counter() - t0
print(f"package check: the README's first example ran ({took:.2f} s) with batchconv {version}")
PY
"$work/venv/bin/batchconv" --version
"$work/venv/bin/batchconv" config --json >"$work/config.json"
"$work/venv/bin/python" -c "import json, sys; json.load(open(sys.argv[1]))" "$work/config.json"
echo "package check: passed"
