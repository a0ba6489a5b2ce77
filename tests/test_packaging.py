"""What the package says about itself: its version, from one source."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import batchconv
from batchconv._version import __version__


def test_version_has_one_source():
    assert batchconv.__version__ == __version__
    assert metadata.version("batchconv") == __version__  # pyproject reads _version.py


def test_cli_version():
    out = subprocess.run(
        [sys.executable, "-m", "batchconv", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"batchconv {__version__}"


def test_typed_package():
    """py.typed marks the annotations as meant for type checkers (PEP 561); the wheel
    carries it (pyproject's package-data; .ci/package_check.sh checks the wheel)."""
    from pathlib import Path

    assert (Path(batchconv.__file__).parent / "py.typed").is_file()


def test_config_json(capsys):
    """``batchconv config --json``: what ``batchconv config`` prints, machine-readable."""
    import json

    from batchconv.cli import main
    from batchconv.config import config

    assert main(["config", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["batchconv"] == __version__
    assert set(got) == set(config())
    assert got["optional"].keys() == config()["optional"].keys()
