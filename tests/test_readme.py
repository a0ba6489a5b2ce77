"""The README's Python examples (its ```python blocks with >>> prompts) run and print
what the README says."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import numpy as np

import batchconv as bc

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    text = "\n".join(b for b in blocks if ">>>" in b)
    assert text.count(">>>") >= 8
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {"np": np, "bc": bc}, "README", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} README example(s) failed"
