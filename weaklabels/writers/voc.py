"""VOC-style writer (``--format voc``), the layout SPML's data loaders read:

* ``JPEGImages/{id}.jpg``         the source image bytes, unchanged
* ``WeakLabels/{id}.png``         palette PNG weak label map
* ``Regions/{id}.png``            16-bit region ids (when computed)
* ``SegmentationClass/{id}.png``  full mask (evaluation splits only)
* ``Annotations/{id}.xml``        boxes (``--to boxes``): PASCAL VOC XML, one ``<object>`` per box
  with ``name``, ``pose``, ``truncated``, ``difficult`` and ``bndbox`` (VOC's 1-based inclusive
  pixels: ``xmin = x0 + 1``, ``xmax = x1``, so ``read_voc_boxes`` gives back the same pixel-edge
  boxes; fractional COCO boxes are written as decimals, not rounded). Ignore boxes (``crowd``:
  COCO crowd, void, objects under ``--min-area``) are ``<ignore>`` elements of the same form:
  standard VOC tools skip them, weaklabels' reader reads them back as ``crowd`` boxes, and
  ``WeakLabels/`` marks them ignore (255)
* ``{split}.txt``                 one line per image: ``image label [regions]``, paths
  relative to the output folder (SPML's training list)
* ``{split}_gt.txt``              evaluation splits: ``image gt`` per line (SPML's evaluation list)
* ``{split}_tags.json``           every kind: each image's tags (the ``tags`` column of the hf
  format), ``{"image_id": ["class name", ...], ...}`` in list order, names as in ``vocabulary.json``
  (a JSON file rather than a list column: COCO names hold spaces)

In masks-only datasets there is no image: lines then start with ``-``.

Points and scribbles are stored only as their ``WeakLabels/`` PNG, the pixels they label: a
point's sub-pixel position and a scribble's vertices and width are not kept (the hf format keeps
them). Tags and boxes are whole: their PNG labels nothing (tags) or only background / candidate /
ignore pixels (boxes), the classes are in ``{split}_tags.json`` and ``Annotations/``.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from weaklabels.errors import SchemaError, UnsafePathError
from weaklabels.types import Sample, Vocabulary, is_plain_id
from weaklabels.writers.base import Converted
from weaklabels.writers.png import encode_label_png, encode_regions_png

_DIRS = ("JPEGImages", "WeakLabels", "Regions", "SegmentationClass", "Annotations")


def _check_unique(split: str, lists: list[Path]) -> None:
    """Two items with one id would have written the same files: the later one won silently."""
    seen = Counter(line.split()[1] for p in lists for line in p.read_text().splitlines())
    dup = sorted(Path(k).stem for k, n in seen.items() if n > 1)
    if dup:
        raise SchemaError(f"split {split!r}: image ids {dup[:5]}{' ...' if len(dup) > 5 else ''} occur more than "
                          f"once; --format voc names files by image id, so ids must be unique")


def _coord(v: float) -> str:
    # Integers as VOC writes them; other values exactly (repr round-trips a float), not rounded.
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def voc_xml(sample: Sample, image: str | None) -> bytes:
    """``sample``'s boxes as a PASCAL VOC annotation file (see the module docstring); ``image``:
    the image's path in the output, or ``None`` in masks-only datasets."""
    names = sample.vocabulary.names
    root = ET.Element("annotation")
    if image is not None:
        ET.SubElement(root, "folder").text = "JPEGImages"
        ET.SubElement(root, "filename").text = Path(image).name
    size = ET.SubElement(root, "size")
    for tag, v in (("width", sample.width), ("height", sample.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(v)
    b = sample.boxes
    for (x0, y0, x1, y1), c, d, t, cr in zip(b.xyxy.tolist(), b.classes.tolist(), b.difficult.tolist(),
                                             b.truncated.tolist(), b.crowd.tolist()):
        o = ET.SubElement(root, "ignore" if cr else "object")
        ET.SubElement(o, "name").text = names[c]
        ET.SubElement(o, "pose").text = "Unspecified"  # VOC's devkit evaluation reads it
        ET.SubElement(o, "truncated").text = str(int(t))
        ET.SubElement(o, "difficult").text = str(int(d))
        bb = ET.SubElement(o, "bndbox")
        for tag, v in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(bb, tag).text = _coord(v)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class VOCWriter:
    format = "voc"

    def __init__(self, vocabulary: Vocabulary, kind: str):
        self.vocabulary, self.kind = vocabulary, kind
        # A box's class travels as the <name> text of its XML, which VOC readers (ours included) strip
        # and which cannot hold control characters: refuse a name that would not come back as written.
        bad = [n for n in vocabulary.names if n != n.strip() or not n.isprintable()] if kind == "boxes" else []
        if bad:
            raise SchemaError(f"class names {bad[:3]}: --format voc writes each box's class as the <name> "
                              f"of a VOC XML object; expected names without leading or trailing spaces or "
                              f"control characters (the hf format keeps any name)")

    @staticmethod
    def _list(partial: Path, split: str, shard: int) -> Path:
        return partial / "lists" / f"{split}-{shard:05d}.txt"

    def check(self, item: Converted) -> None:
        """The image id names files here and fills space-separated list lines: it must be a plain
        file name (ids from HF datasets or COCO are not checked by their readers)."""
        iid = item.sample.image_id
        if not is_plain_id(iid):
            raise UnsafePathError(f"image {iid!r}: --format voc uses the image id as a file name; expected "
                                  f"a plain name (no path separator, whitespace or control character, "
                                  f"not '.' or '..', at most 200 characters)")

    def shard_done(self, partial: Path, split: str, shard: int, num_shards: int) -> bool:
        return self._list(partial, split, shard).is_file()

    def write_shard(self, partial: Path, split: str, shard: int, num_shards: int,
                    items: list[Converted]) -> None:
        palette = self.vocabulary.palette()
        for d in _DIRS + ("lists",):
            (partial / d).mkdir(parents=True, exist_ok=True)
        lines, gt_lines, tags = [], [], {}
        names = self.vocabulary.names
        for it in items:
            s = it.sample
            image = "-"
            if s.image is not None:
                ext = Path(s.image.path).suffix if s.image.path else ".jpg"
                image = f"JPEGImages/{s.image_id}{ext or '.jpg'}"
                _write(partial / image, s.image.read_bytes())
            label = f"WeakLabels/{s.image_id}.png"
            _write(partial / label, encode_label_png(it.weak_label, palette))
            parts = [image, label]
            if it.regions is not None:
                parts.append(f"Regions/{s.image_id}.png")
                _write(partial / parts[-1], encode_regions_png(it.regions))
            if it.gt is not None:
                gt = f"SegmentationClass/{s.image_id}.png"
                _write(partial / gt, encode_label_png(it.gt, palette))
                gt_lines.append(f"{image} {gt}")
            if self.kind == "boxes" and s.boxes is not None:
                _write(partial / "Annotations" / f"{s.image_id}.xml", voc_xml(s, None if image == "-" else image))
            tags[s.image_id] = [] if s.tags is None else [names[c] for c in s.tags.classes.tolist()]
            lines.append(" ".join(parts))
        # before the list file: shard_done() takes that file for the whole shard
        _write(self._list(partial, split + "_tags", shard).with_suffix(".json"), json.dumps(tags).encode())
        if gt_lines:
            _write(self._list(partial, split + "_gt", shard), ("\n".join(gt_lines) + "\n").encode())
        _write(self._list(partial, split, shard), ("\n".join(lines) + "\n" if lines else "").encode())

    def finalize(self, partial: Path, out: Path, splits: dict[str, int]) -> dict[str, str]:
        for d in _DIRS:
            src = partial / d
            if src.is_dir() and any(src.iterdir()):
                (out / d).mkdir(exist_ok=True)
                for f in src.iterdir():
                    os.replace(f, out / d / f.name)
        result = {}
        for split in splits:
            for name in (split, split + "_gt"):
                parts = sorted((partial / "lists").glob(f"{name}-[0-9]*.txt"))
                if not parts and name != split:
                    continue
                if name == split:
                    _check_unique(split, parts)
                with open(out / f"{name}.txt", "w") as dst:
                    for p in parts:
                        dst.write(p.read_text())
            tags: dict = {}
            for p in sorted((partial / "lists").glob(f"{split}_tags-[0-9]*.json")):
                tags.update(json.loads(p.read_text()))
            # one image per line: readable, and a line-oriented diff / grep finds an image
            body = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in tags.items())
            (out / f"{split}_tags.json").write_text("{\n" + body + ("\n" if body else "") + "}\n")
            result[split] = f"{split}.txt"
        shutil.rmtree(partial / "lists", ignore_errors=True)
        return result
