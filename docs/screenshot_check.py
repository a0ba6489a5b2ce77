"""Look at the built documentation as a person would: open three pages in headless
Chromium, save screenshots, and fail if a page is missing or blank.

    bash docs/build.sh                      # builds docs/_build/html
    python3 docs/screenshot_check.py        # screenshots in docs/_build/screenshots/

The pages: the home page, the API page of ``correlate``, and the template-matching
example of the gallery (with its figure). A page counts as blank when almost all of its
screenshot is one colour; the gallery page must also show its figure, an image of the
example's own output that is not blank either.

Needs Chromium (Debian: ``apt-get install -y chromium``; or set ``CHROMIUM`` to the
browser's path) and Pillow (which matplotlib installs).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent

# (page, text it must contain, file name of a figure it must show or None, height in
# pixels of the screenshot: the gallery page is taken tall enough to show its figure)
PAGES = [
    ("index.html", "Batched N-dimensional correlation", None, 1400),
    ("generated/batchconv.correlate.html", "Cross-correlate every item", None, 1400),
    (
        "auto_examples/plot_template_matching.html",
        "Template matching",
        "sphx_glr_plot_template_matching_001.png",
        2600,
    ),
]


def browser() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    sys.exit("screenshot_check: no Chromium found (apt-get install -y chromium, or set CHROMIUM)")


def content_share(png: Path) -> float:
    """Share of the pixels that differ clearly from the image's most common colour."""
    img = Image.open(png).convert("L").resize((320, 400))
    counts = img.histogram()  # 256 bins of gray levels
    background = counts.index(max(counts))
    drawn = sum(n for level, n in enumerate(counts) if abs(level - background) > 24)
    return drawn / sum(counts)


def screenshot(chromium: str, page: Path, out: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",  # needed when running as root (CI)
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--allow-file-access-from-files",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=3000",  # let the theme's scripts lay the page out
            f"--screenshot={out}",
            page.as_uri(),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", type=Path, default=HERE / "_build" / "html")
    ap.add_argument("--out", type=Path, default=HERE / "_build" / "screenshots")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument(
        "--min-content",
        type=float,
        default=0.02,
        help="least share of non-background pixels for a page not to be blank",
    )
    args = ap.parse_args()

    chromium = browser()
    args.out.mkdir(parents=True, exist_ok=True)
    failures = []
    for page, text, figure, height in PAGES:
        path = args.html / page
        if not path.exists():
            failures.append(f"{page}: missing (build the docs first: bash docs/build.sh)")
            continue
        if text not in path.read_text(encoding="utf-8"):
            failures.append(f"{page}: does not contain {text!r}")
        png = args.out / (Path(page).stem + ".png")
        png.unlink(missing_ok=True)
        try:
            screenshot(chromium, path, png, args.width, height)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            failures.append(f"{page}: Chromium failed: {e}")
            continue
        if not png.exists():
            failures.append(f"{page}: no screenshot was written")
            continue
        share = content_share(png)
        print(f"{page}: {png} ({share:.1%} of the page drawn)")
        if share < args.min_content:
            failures.append(f"{page}: blank ({share:.1%} of the page drawn)")
        if figure:
            sources = re.findall(r'<img[^>]+src="([^"]+)"', path.read_text(encoding="utf-8"))
            shown = [path.parent / src for src in sources if src.endswith("/" + figure)]
            if not shown:
                failures.append(f"{page}: does not show its figure {figure}")
            elif not shown[0].exists():
                failures.append(f"{page}: its figure {shown[0]} is missing")
            elif content_share(shown[0]) < args.min_content:
                failures.append(f"{page}: its figure {figure} is blank")
    for f in failures:
        print("FAIL", f, file=sys.stderr)
    if not failures:
        print(f"screenshot_check: {len(PAGES)} pages look drawn; screenshots in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
