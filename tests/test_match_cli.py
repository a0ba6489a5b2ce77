"""batchconv match on image files it writes in a temporary folder: hits as a table, JSON
and CSV, boxes drawn (and read back), RGB, the errors."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from batchconv.cli import main

Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def files(tmp_path):
    """A textured scene (PNG, and TIFF of another crop), two templates cut from it."""
    rng = np.random.default_rng(0)
    base = rng.random((40, 50))
    texture = np.kron(base, np.ones((8, 8)))[:300, :380]  # blocks: a smooth-edged texture
    texture = (255 * (0.6 * texture + 0.4 * rng.random(texture.shape))).astype(np.uint8)
    paths = {"scene": tmp_path / "scene.png", "other": tmp_path / "other.tif"}
    Image.fromarray(texture).save(paths["scene"])
    Image.fromarray(texture[50:250, 100:300]).save(paths["other"])
    for name, (y, x, h, w) in {"t1": (100, 200, 30, 40), "t2": (10, 50, 20, 30)}.items():
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(texture[y : y + h, x : x + w]).save(paths[name])
    return paths


def run(capsys, *argv):
    status = main(["match", *map(str, argv)])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_json_over_two_scenes_with_a_bar(files, capsys):
    status, out, err = run(
        capsys,
        files["scene"],
        files["other"],
        "-t",
        files["t1"],
        files["t2"],
        "--threshold",
        0.95,
        "--json",
    )
    assert status == 0
    hits = {(h["scene"].rsplit("/", 1)[-1], h["template"], h["y"], h["x"]) for h in json.loads(out)}
    assert hits == {
        ("scene.png", "t1.png", 100, 200),
        ("scene.png", "t2.png", 10, 50),
        ("other.tif", "t1.png", 50, 100),  # t2 lies outside the other crop
    }
    assert "2/2 scene" in err  # the bar on stderr


def test_csv_and_table(files, capsys):
    status, out, _ = run(capsys, files["scene"], "-t", files["t1"], "--threshold", 0.95, "--csv")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["template"], r["y"], r["x"], r["height"], r["width"]) for r in rows] == [
        ("t1.png", "100", "200", "30", "40")
    ]
    assert float(rows[0]["score"]) > 0.999
    status, out, _ = run(capsys, files["scene"], "-t", files["t1"], "--threshold", 0.95)
    assert status == 0 and out.startswith("1 hit(s)") and "at y=100 x=200" in out


def test_drawn_boxes_read_back(files, tmp_path, capsys):
    drawn = tmp_path / "drawn.png"
    status, _, _ = run(
        capsys, files["scene"], "-t", files["t1"], "--threshold", 0.95, "--draw", drawn
    )
    assert status == 0
    a = np.asarray(Image.open(drawn))
    assert a.shape == (300, 380, 3)
    red = (a[..., 0] == 255) & (a[..., 1] == 0) & (a[..., 2] == 0)
    assert red[100, 200:240].all() and red[129, 200:240].all()  # top and bottom edges
    assert red[100:130, 200].all() and red[100:130, 239].all()  # left and right
    assert not red[115, 220]  # inside the box: the scene


def test_color(files, tmp_path, capsys):
    rgb = np.stack([np.asarray(Image.open(files["scene"]))] * 3, axis=-1)
    rgb[..., 1] = 255 - rgb[..., 1]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[100:130, 200:240]).save(tmp_path / "trgb.png")
    status, out, _ = run(
        capsys,
        tmp_path / "rgb.png",
        "-t",
        tmp_path / "trgb.png",
        "--threshold",
        0.95,
        "--color",
        "--json",
    )
    assert status == 0
    assert [(h["y"], h["x"]) for h in json.loads(out)] == [(100, 200)]


def test_errors(files, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    status, _, err = run(capsys, bad, "-t", files["t1"], "--threshold", 0.9)
    assert status == 2 and "cannot read" in err and "bad.png" in err
    status, _, err = run(capsys, files["t1"], "-t", files["scene"], "--threshold", 0.9)
    assert status == 2 and "larger than the scene" in err
    with pytest.raises(SystemExit):  # argparse: --threshold is required
        main(["match", str(files["scene"]), "-t", str(files["t1"])])


def test_16_bit_and_float_images(files, tmp_path, capsys):
    """16-bit PNGs are divided by 65535 and float TIFFs kept as they are (not clipped to
    8 bits): an exact crop is found with a score of 1."""
    gray = np.asarray(Image.open(files["scene"])).astype(np.float64) / 255
    for name, pixels in (
        ("s16.png", (gray * 65535).astype(np.uint16)),
        ("sf.tif", gray.astype(np.float32)),
    ):
        Image.fromarray(pixels).save(tmp_path / name)
        Image.fromarray(pixels[100:130, 200:240]).save(tmp_path / f"t-{name}")
        status, out, _ = run(
            capsys, tmp_path / name, "-t", tmp_path / f"t-{name}", "--threshold", 0.95, "--json"
        )
        hits = json.loads(out)
        assert status == 0 and [(h["y"], h["x"]) for h in hits] == [(100, 200)], name
        assert hits[0]["score"] > 0.999


def test_checked_before_any_scene_is_matched(files, tmp_path, capsys):
    """A template larger than any scene, or a --draw path that cannot be written: exit 2
    with a message, before matching (no hits printed)."""
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "tiny.png")
    status, out, err = run(
        capsys, files["scene"], tmp_path / "tiny.png", "-t", files["t1"], "--threshold", 0.9
    )
    assert status == 2 and out == "" and "larger than the scene" in err
    for draw, message in (
        (tmp_path / "no" / "o.png", "does not exist"),
        (tmp_path / "o.txt", "image file"),
    ):
        status, out, err = run(
            capsys, files["scene"], "-t", files["t1"], "--threshold", 0.9, "--draw", draw
        )
        assert status == 2 and out == "" and message in err
