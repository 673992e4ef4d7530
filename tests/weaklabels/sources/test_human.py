"""Tests for human annotations attached to a source, and the ``given`` conversion path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from weaklabels.convert import ConvertOptions, convert
from weaklabels.errors import SchemaError
from weaklabels.sources import read_voc
from weaklabels.sources.clicks import ClickAnnotations
from weaklabels.sources.coco import COCOBoxAnnotations
from weaklabels.sources.human import Annotated, human_annotations
from weaklabels.sources.scribblesup import ScribbleSupAnnotations
from weaklabels.sources.voc import VOCBoxAnnotations


def test_human_annotations_picks_the_reader(tmp_path, make_coco):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("{}")
    b.write_text("{}")
    pts = human_annotations("points", f"{a},{b}", max_rank=2)
    assert isinstance(pts, ClickAnnotations) and pts.paths == [a, b] and pts.max_rank == 2
    scr = human_annotations("scribbles", tmp_path, width=5)
    assert isinstance(scr, ScribbleSupAnnotations) and scr.width == 5.0
    assert isinstance(human_annotations("boxes", tmp_path), VOCBoxAnnotations)
    coco, _ = make_coco([{"id": 1, "file_name": "x.jpg", "width": 8, "height": 8}], [])
    assert isinstance(human_annotations("boxes", coco), COCOBoxAnnotations)
    with pytest.raises(SchemaError, match="not 'tags'"):
        human_annotations("tags", tmp_path)


def _devkit(make_devkit) -> Path:
    items = {}
    for k in range(3):
        m = np.zeros((24, 32), np.uint8)
        m[4:14, 4 + k:16 + k] = 15
        m[20, :] = 255
        items[f"im{k}"] = {"aug": m}
    return make_devkit(items)


def test_annotated_wraps_a_source(tmp_path, make_devkit):
    src = read_voc(_devkit(make_devkit), "train")
    clicks = tmp_path / "clicks.json"
    clicks.write_text(json.dumps({f"im{k}": [{"x": 8, "y": 8, "cls": 15, "rank": 1}] for k in range(3)}))
    ann = Annotated(src, ClickAnnotations(clicks))
    assert len(ann) == 3 and ann.vocabulary == src.vocabulary and ann.split == src.split
    assert ann.image_id(1) == src.image_id(1)
    assert ann.describe()["human"]["annotations"] == "whats_the_point"
    s = ann[2]
    assert s.points.xy.tolist() == [[8.5, 8.5]] and s.semantic == src[2].semantic


def test_convert_given_points_writes_clicks_and_warnings(tmp_path, make_devkit):
    src = read_voc(_devkit(make_devkit), "train")
    clicks = tmp_path / "clicks.json"
    clicks.write_text(json.dumps({
        "im0": [{"x": 8, "y": 8, "cls": 15, "rank": 1}, {"x": 40, "y": 8, "cls": 15, "rank": 1}],
        "im1": [{"x": 8, "y": 20, "cls": 15, "rank": 1}],        # on void
        "im2": [{"x": 1, "y": 1, "cls": 15, "rank": 1}],         # on background
    }))
    out = tmp_path / "out"
    convert({"train": Annotated(src, ClickAnnotations(clicks))}, out, ConvertOptions(kind="points", given=True))
    rows = {r["image_id"]: r for f in sorted((out / "data").glob("train-*.parquet"))
            for r in pq.read_table(f).to_pylist()}
    assert [(p["x"], p["y"], p["label"]) for p in rows["im0"]["points"]] == [(8.5, 8.5, 15)]
    assert [(p["x"], p["y"]) for p in rows["im1"]["points"]] == [(8.5, 20.5)]
    warnings = json.loads((out / "warnings.json").read_text())
    by_id = {w["image_id"]: w["message"] for w in warnings}
    assert len(warnings) == 3 and set(by_id) == {"im0", "im1", "im2"}
    assert "outside" in by_id["im0"] and "void" in by_id["im1"] and "class 0" in by_id["im2"]
    assert all(w["split"] == "train" for w in warnings)


def test_human_voc_boxes_past_the_image_are_clipped_with_a_note(tmp_path, make_devkit, kit):
    mask = np.zeros((6, 10), np.uint8)
    mask[1:4, 2:9] = 8
    src = read_voc(make_devkit({"a": {"image": (6, 10), "mask": mask}}), "train")
    ann_dir = tmp_path / "xml"
    ann_dir.mkdir()
    (ann_dir / "a.xml").write_text(kit.voc_xml(10, 6, [{"name": "cat", "box": (3, 2, 12, 6)}]))
    s = Annotated(src, human_annotations("boxes", ann_dir))[0]
    assert s.boxes.xyxy.tolist() == [[2, 1, 10, 6]]
    assert any("a.xml" in n and "clipped" in n for n in s.notes)
