"""``batchconv match SCENE... --template T... --threshold X``: :func:`batchconv.match` on
image files (PNG, JPEG, TIFF, ... through Pillow: ``pip install batchconv[images]``),
the hits printed as a table, JSON or CSV, and optionally drawn on the scenes.

Images are read as grayscale in [0, 1] (``--color``: RGB, the channels summed in the
metric); each scene is matched on its own, with a bar on stderr when there are several.
An unreadable file or a template larger than a scene ends the command with a message
and exit status 2.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """The ``match`` subcommand's arguments."""
    p = sub.add_parser(
        "match",
        help="find template images in scene images (bc.match): hits as a table, JSON or "
        "CSV, optionally drawn",
        description=__doc__,
    )
    p.add_argument("scenes", nargs="+", metavar="SCENE", help="image files to search")
    p.add_argument(
        "--template", "-t", nargs="+", required=True, metavar="T", help="template image files"
    )
    p.add_argument("--threshold", type=float, required=True, help="scores beyond it are hits")
    p.add_argument("--metric", default="ncc", help="ncc (default), cosine, dot, ssd or sad")
    p.add_argument("--max-overlap", type=float, default=0.25, help="IoU allowed (0.25)")
    p.add_argument("--top", type=int, default=None, help="at most this many hits per scene")
    p.add_argument("--min-distance", type=int, default=1, help="between a map's peaks (1)")
    p.add_argument("--color", action="store_true", help="match in RGB (default grayscale)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the hits as JSON")
    out.add_argument("--csv", action="store_true", help="print the hits as CSV")
    p.add_argument(
        "--draw",
        metavar="OUT.png",
        help="write the scene with its hits drawn (several scenes: OUT-0.png, OUT-1.png...)",
    )


def run(args) -> int:
    """Run ``batchconv match``; the exit status."""
    from .match import match
    from .progress import reporter

    try:
        templates = [_read(p, args.color) for p in args.template]
        scenes = [_read(p, args.color) for p in args.scenes]
        _check_sizes(args, scenes, templates)
        if args.draw:
            _check_draw(args.draw)
    except _Unreadable as e:
        print(f"batchconv match: {e}", file=sys.stderr)
        return 2
    rows = []
    bar = reporter(True, len(scenes), "scene") if len(scenes) > 1 else None
    with bar if bar is not None else contextlib.nullcontext():
        for i, scene in enumerate(scenes):
            try:
                hits = match(
                    scene,
                    templates,
                    threshold=args.threshold,
                    metric=args.metric,
                    max_overlap=args.max_overlap,
                    top=args.top,
                    min_distance=args.min_distance,
                    labels=[Path(t).name for t in args.template],
                    channel_axis=-1 if args.color else None,
                )
            except ValueError as e:
                print(f"batchconv match: {args.scenes[i]}: {e}", file=sys.stderr)
                return 2
            rows += [_row(args.scenes[i], hits, j) for j in range(len(hits))]
            if args.draw:
                _draw(args.scenes[i], hits, _out_path(args.draw, i, len(scenes)))
            if bar is not None:
                bar.step()
    try:
        _print(rows, args)
    except BrokenPipeError:  # (| head): the reader has gone; exit quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python's own recipe
    return 0


def _check_sizes(args, scenes: list, templates: list) -> None:
    """Before any scene is matched: no template larger than a scene."""
    for path, scene in zip(args.scenes, scenes, strict=True):
        for tpath, t in zip(args.template, templates, strict=True):
            if any(a < b for a, b in zip(scene.shape[:2], t.shape[:2], strict=True)):
                raise _Unreadable(
                    f"{path}: the template {tpath} ({t.shape[0]}x{t.shape[1]}) is larger "
                    f"than the scene ({scene.shape[0]}x{scene.shape[1]})"
                )


def _check_draw(draw: str) -> None:
    """Before any scene is matched: ``--draw``'s folder exists, its suffix is an image
    format Pillow writes."""
    from PIL import Image

    out = Path(draw)
    if not out.parent.is_dir():
        raise _Unreadable(f"--draw {draw}: the folder {str(out.parent)!r} does not exist")
    if out.suffix.lower() not in Image.registered_extensions():
        raise _Unreadable(f"--draw {draw}: give an image file name (.png, .jpg, .tif...)")


class _Unreadable(Exception):
    pass


def _read(path: str, color: bool) -> np.ndarray:
    """The image at ``path`` as float32 in [0, 1]: (H, W), or (H, W, 3) with ``color``.
    8-bit images are divided by 255, 16-bit ones by 65535, float images kept as they
    are; a grayscale image with ``color`` has its gray in all three channels."""
    try:
        from PIL import Image
    except ImportError:
        raise _Unreadable(
            "reading images needs Pillow: pip install 'batchconv[images]' (or pillow)"
        ) from None
    try:
        with Image.open(path) as im:
            a = _pixels(im, color)
    except (OSError, ValueError) as e:
        raise _Unreadable(f"cannot read {path!r} as an image ({e})") from None
    return a


def _pixels(im, color: bool) -> np.ndarray:
    if im.mode.startswith(("I", "F")):  # one channel of 16 or 32 bits, or floats
        a = np.asarray(im).astype(np.float32)
        if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) <= 65535):
            a /= 65535
        elif im.mode == "I":
            a /= 2**31 - 1
        return np.repeat(a[..., None], 3, axis=-1) if color else a
    return np.asarray(im.convert("RGB" if color else "L"), dtype=np.float32) / 255


def _row(scene: str, hits, j: int) -> dict:
    (y, x), (y1, x1) = hits.start[j].tolist(), hits.stop[j].tolist()
    return {
        "scene": scene,
        "template": str(hits.label[j]),
        "score": float(hits.score[j]),
        "y": y,
        "x": x,
        "height": y1 - y,
        "width": x1 - x,
    }


def _print(rows: list[dict], args) -> None:
    fields = ["scene", "template", "score", "y", "x", "height", "width"]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.csv:
        w = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        print(f"{len(rows)} hit(s)")
        for r in rows:
            print(
                f"{r['scene']}  {r['template']}  score {r['score']:.4f}  at y={r['y']} "
                f"x={r['x']}  {r['height']}x{r['width']}"
            )


def _out_path(draw: str, i: int, n: int) -> Path:
    p = Path(draw)
    return p if n == 1 else p.with_name(f"{p.stem}-{i}{p.suffix or '.png'}")


def _draw(scene: str, hits, out: Path) -> None:
    """The scene (in colour) with each hit's box drawn in red, 2 pixels wide."""
    from PIL import Image, ImageDraw

    with Image.open(scene) as im:
        canvas = im.convert("RGB")
    pen = ImageDraw.Draw(canvas)
    for (y, x), (y1, x1) in zip(hits.start.tolist(), hits.stop.tolist(), strict=True):
        pen.rectangle([x, y, x1 - 1, y1 - 1], outline=(255, 0, 0), width=2)
    canvas.save(out)
