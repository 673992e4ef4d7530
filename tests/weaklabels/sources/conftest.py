"""Tiny dataset builders for the source tests: a VOC devkit and a COCO JSON
written from arrays in a few milliseconds, so every bad-input case gets its own
files."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weaklabels.types import VOC_PALETTE


def encode_png(a: np.ndarray) -> bytes:
    """A palette ('P') PNG of the index array ``a: (H, W) uint8``."""
    im = Image.fromarray(np.asarray(a, np.uint8), "P")
    im.putpalette(VOC_PALETTE)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(h: int, w: int, seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR claims ``width x height`` (CRC fixed so PIL accepts the header)."""
    buf = io.BytesIO()
    Image.new("1", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    # signature (8) | length (4) | b"IHDR" at 12 | width, height at 16..24 | ... | CRC at 29..33
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>&lol9;</filename></annotation>
"""


def _write(path: Path, data: bytes | str | np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, np.ndarray):
        data = encode_png(data)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)


def voc_xml(w: int, h: int, objects: list[dict]) -> str:
    """VOC annotation XML; each object ``{name, box: (xmin, ymin, xmax, ymax), difficult, truncated}``."""
    objs = "".join(
        f"<object><name>{o['name']}</name><truncated>{int(o.get('truncated', 0))}</truncated>"
        f"<difficult>{int(o.get('difficult', 0))}</difficult><bndbox>"
        + "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), o["box"]))
        + "</bndbox></object>" for o in objects)
    return (f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
            f"{objs}</annotation>\n")


@pytest.fixture
def kit():
    """The helpers above, for test modules (which cannot import this conftest by name)."""
    class Kit:
        png = staticmethod(encode_png)
        jpeg = staticmethod(encode_jpeg)
        bomb_png = staticmethod(bomb_png)
        voc_xml = staticmethod(voc_xml)
        billion_laughs = BILLION_LAUGHS
    return Kit


@pytest.fixture
def make_devkit(tmp_path):
    """``make_devkit(items, splits=..., class_names=...) -> devkit folder``.

    ``items[id]`` may hold ``image`` (JPEG bytes, or ``(h, w)`` for a random JPEG),
    ``mask`` / ``aug`` / ``object`` (index arrays or raw bytes, written to
    SegmentationClass / SegmentationClassAug / SegmentationObject) and ``xml`` (text).
    ``splits`` maps a split name to its ids (default: ``train`` = every id).
    """
    counter = iter(range(1000))

    def make(items: dict[str, dict], splits: dict[str, list[str]] | None = None,
             class_names: list[str] | None = None) -> Path:
        root = tmp_path / f"devkit{next(counter)}" / "VOC2012"
        folders = {"image": ("JPEGImages", ".jpg"), "mask": ("SegmentationClass", ".png"),
                   "aug": ("SegmentationClassAug", ".png"), "object": ("SegmentationObject", ".png"),
                   "xml": ("Annotations", ".xml")}
        for iid, files in items.items():
            for key, data in files.items():
                folder, ext = folders[key]
                if key == "image" and isinstance(data, tuple):
                    data = encode_jpeg(*data)
                _write(root / folder / f"{iid}{ext}", data)
        for name, ids in (splits or {"train": list(items)}).items():
            _write(root / "ImageSets" / "Segmentation" / f"{name}.txt", "".join(f"{i}\n" for i in ids))
        if class_names is not None:
            _write(root / "class_names.txt", "".join(f"{n}\n" for n in class_names))
        return root

    return make


@pytest.fixture
def make_coco(tmp_path):
    """``make_coco(images, annotations, categories=..., image_files=...) -> (json path, image root)``.

    ``images``: ``[{id, file_name, width, height}]``; image files are written as
    random JPEGs of the stated size unless ``image_files`` maps a file name to bytes
    (``None``: do not write it).
    """
    counter = iter(range(1000))

    def make(images: list[dict], annotations: list[dict], categories: list[dict] | None = None,
             image_files: dict[str, bytes | None] | None = None) -> tuple[Path, Path]:
        base = tmp_path / f"coco{next(counter)}"
        img_root = base / "images"
        img_root.mkdir(parents=True)
        image_files = image_files or {}
        for im in images:
            name = im["file_name"]
            data = image_files.get(name, encode_jpeg(im["height"], im["width"]))
            if data is not None and not name.startswith(("/", "..")):
                _write(img_root / name, data)
        cats = categories if categories is not None else [
            {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 90, "name": "toothbrush"}]
        path = base / "instances_test.json"
        path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
        return path, img_root

    return make
