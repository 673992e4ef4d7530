from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from weaklabels.errors import SchemaError
from weaklabels.types import ImageTags, Sample, Vocabulary
from weaklabels.writers import Converted, VOCWriter


def test_masks_only_items_and_gt_lines(tmp_path):
    voc = Vocabulary(("background", "a"))
    s = Sample("x1", 4, 5, voc, tags=ImageTags([1]))
    weak = np.full((4, 5), 254, np.uint8)
    gt = np.ones((4, 5), np.uint8)
    w = VOCWriter(voc, "tags")
    partial, out = tmp_path / "p", tmp_path / "o"
    out.mkdir()
    w.write_shard(partial, "train", 0, 2, [Converted(s, "tags", weak)])
    w.write_shard(partial, "train", 1, 2, [Converted(s.replace(image_id="x2"), "tags", weak)])
    w.write_shard(partial, "val", 0, 1, [Converted(s.replace(image_id="x3"), "tags", weak, gt=gt)])
    assert w.shard_done(partial, "train", 1, 2)
    files = w.finalize(partial, out, {"train": 2, "val": 1})
    assert files == {"train": "train.txt", "val": "val.txt"}
    assert (out / "train.txt").read_text().splitlines() == ["- WeakLabels/x1.png", "- WeakLabels/x2.png"]
    assert (out / "val.txt").read_text().splitlines() == ["- WeakLabels/x3.png"]
    assert (out / "val_gt.txt").read_text().splitlines() == ["- SegmentationClass/x3.png"]
    assert not (out / "train_gt.txt").exists()
    np.testing.assert_array_equal(np.array(Image.open(out / "WeakLabels/x1.png")), weak)
    np.testing.assert_array_equal(np.array(Image.open(out / "SegmentationClass/x3.png")), gt)


def _parquet_rows(folder, split):
    import pyarrow.parquet as pq

    return [r for f in sorted((folder / "data").glob(f"{split}-*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_voc_format_boxes_round_trip_through_the_voc_xml_reader(tmp_path):
    """--format voc --to boxes writes Annotations/{id}.xml that weaklabels' own VOC reader reads
    back as the very boxes (classes, flags, ignore boxes) of the parquet output."""
    from weaklabels.cli import EXIT_OK, main
    from weaklabels.sources.voc import read_voc_boxes

    common = ["convert", "voc", "--to", "boxes", "--split", "train,val", "--quiet"]
    assert main(common + ["--format", "voc", "--out", str(tmp_path / "v")]) == EXIT_OK
    assert main(common + ["--out", str(tmp_path / "h")]) == EXIT_OK
    voc = Vocabulary.load(tmp_path / "v" / "vocabulary.json")
    crowd_seen = 0
    for split in ("train", "val"):
        rows = _parquet_rows(tmp_path / "h", split)
        assert rows
        for row in rows:
            boxes, size = read_voc_boxes(tmp_path / "v" / "Annotations" / f"{row['image_id']}.xml", voc, "test")
            want = row["boxes"]
            assert size == (row["height"], row["width"])
            assert boxes.xyxy.tolist() == [[b["x0"], b["y0"], b["x1"], b["y1"]] for b in want]
            assert boxes.classes.tolist() == [b["label"] for b in want]
            assert boxes.crowd.tolist() == [b["crowd"] for b in want]
            assert boxes.difficult.tolist() == [b["difficult"] for b in want]
            assert boxes.truncated.tolist() == [b["truncated"] for b in want]
            crowd_seen += sum(b["crowd"] for b in want)
    assert crowd_seen  # the bundled sample has ignore boxes: they travel too


def test_voc_xml_is_standard_voc_and_keeps_fractional_boxes_and_flags(tmp_path):
    import xml.etree.ElementTree as ET

    from weaklabels.sources.voc import read_voc_boxes
    from weaklabels.types import Boxes

    voc = Vocabulary(("background", "a&b <c>", "traffic light"))
    boxes = Boxes([[0.25, 1, 3, 4], [2, 0, 5, 3.5], [0, 0, 1, 1]], [1, 2, 1], difficult=[True, False, False],
                  truncated=[False, True, False], crowd=[False, False, True])
    s = Sample("im1", 4, 5, voc, tags=ImageTags([1, 2]), boxes=boxes)
    w = VOCWriter(voc, "boxes")
    partial, out = tmp_path / "p", tmp_path / "o"
    out.mkdir()
    w.write_shard(partial, "train", 0, 1, [Converted(s, "boxes", np.zeros((4, 5), np.uint8))])
    w.finalize(partial, out, {"train": 1})
    xml = out / "Annotations" / "im1.xml"
    root = ET.parse(xml).getroot()
    # what VOC tools read: <object>s with name, pose, truncated, difficult and a 1-based inclusive bndbox
    objs = root.findall("object")
    assert [o.findtext("name") for o in objs] == ["a&b <c>", "traffic light"]
    assert [o.findtext("difficult") for o in objs] == ["1", "0"]
    assert [o.findtext("truncated") for o in objs] == ["0", "1"]
    assert all(o.findtext("pose") for o in objs)
    assert [objs[1].find("bndbox").findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")] == ["3", "1", "5", "3.5"]
    assert len(root.findall("ignore")) == 1  # not an <object>: VOC tools skip it
    back, size = read_voc_boxes(xml, voc, "test")
    assert size == (4, 5)
    np.testing.assert_allclose(back.xyxy, boxes.xyxy, atol=1e-9)
    for f in ("classes", "difficult", "truncated", "crowd"):
        assert getattr(back, f).tolist() == getattr(boxes, f).tolist()
    assert json.loads((out / "train_tags.json").read_text()) == {"im1": ["a&b <c>", "traffic light"]}


def test_voc_format_writes_each_images_tags(tmp_path):
    """--format voc --to tags: the tags are in SPLIT_tags.json (the PNGs label no pixel)."""
    from weaklabels.cli import EXIT_OK, main

    common = ["convert", "voc", "--to", "tags", "--split", "train,val", "--quiet"]
    assert main(common + ["--format", "voc", "--out", str(tmp_path / "v")]) == EXIT_OK
    assert main(common + ["--out", str(tmp_path / "h")]) == EXIT_OK
    names = Vocabulary.load(tmp_path / "v" / "vocabulary.json").names
    for split in ("train", "val"):
        want = {r["image_id"]: [names[c] for c in r["tags"]] for r in _parquet_rows(tmp_path / "h", split)}
        got = json.loads((tmp_path / "v" / f"{split}_tags.json").read_text())
        assert got == want and list(got) == list(want) and any(want.values())


def test_voc_format_refuses_box_class_names_voc_xml_cannot_carry():
    voc = Vocabulary(("background", " cat", "dog\x07"))
    with pytest.raises(SchemaError, match=r"class names \[' cat', 'dog\\x07'\]: --format voc"):
        VOCWriter(voc, "boxes")
    VOCWriter(voc, "tags")  # tags go to JSON, which holds any name
