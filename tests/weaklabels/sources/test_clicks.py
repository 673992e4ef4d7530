"""Tests for the What's-the-Point click reader, on the real clicks of the 2,000
shared VOC masks and on small generated click files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from weaklabels.errors import CorruptFileError, MissingFileError, SourceError
from weaklabels.sources import read_voc
from weaklabels.sources.clicks import ClickAnnotations
from weaklabels.types import Sample, SemanticMask, Vocabulary

VOC = Vocabulary.voc()


@pytest.fixture(scope="module")
def real(voc_masks: Path, voc_points: Path):
    return read_voc(voc_masks, "sample"), ClickAnnotations(voc_points / "whats_the_point_clicks.json")


def test_real_clicks_attach_to_all_2000_masks(real):
    src, clicks = real
    own = total = kept = notes = dropped = 0
    for i in range(len(src)):
        s = clicks.attach(src[i])
        raw = clicks.clicks[s.image_id]
        out = [n for n in s.notes if "outside" in n]
        assert len(s.points) + len(out) == len(raw), s.image_id  # only outside clicks are dropped
        m = s.semantic.array
        v = m[s.points.xy[:, 1].astype(int), s.points.xy[:, 0].astype(int)]
        own += int((v == s.points.classes).sum())
        # every kept click off its class is reported, and nothing else
        assert len(s.notes) - len(out) == int((v != s.points.classes).sum()), s.image_id
        total += len(raw)
        kept += len(s.points)
        notes += len(s.notes)
        dropped += len(out)
    assert len(src) == 2000 and total > 5000
    # measured: 4,725 of 5,734 clicks (0.824) on their own class; 7 outside the image
    assert 0.82 <= own / total <= 0.84, own / total
    assert 0 < dropped < 50


def test_real_clicks_are_shifted_to_pixel_centres(real):
    src, clicks = real
    s = clicks.attach(src[0])
    raw = [c for c in clicks.clicks[s.image_id]
           if 0 <= c["x"] + 0.5 < s.width and 0 <= c["y"] + 0.5 < s.height]
    assert s.points.xy.tolist() == [[c["x"] + 0.5, c["y"] + 0.5] for c in raw]
    assert s.points.classes.tolist() == [c["cls"] for c in raw]


def _write(tmp_path: Path, data, name: str = "clicks.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def _mask_sample() -> Sample:
    m = np.zeros((10, 12), np.uint8)
    m[2:6, 2:6] = 15
    m[7, :] = 255
    return Sample("img", 10, 12, VOC, semantic=SemanticMask(m))


def test_outside_void_and_other_class_clicks(tmp_path):
    clicks = [
        {"x": 3, "y": 3, "cls": 15, "rank": 1},      # on its class
        {"x": 12.2, "y": 3, "cls": 15, "rank": 2},   # outside (x + 0.5 >= 12): dropped
        {"x": -0.6, "y": 1, "cls": 15, "rank": 3},   # outside: dropped
        {"x": 4, "y": 7, "cls": 15, "rank": 1},      # on void: kept
        {"x": 9, "y": 1, "cls": 8, "rank": 1},       # on background: kept
    ]
    ca = ClickAnnotations(_write(tmp_path, {"img": clicks}))
    s = ca.attach(_mask_sample())
    assert s.points.xy.tolist() == [[3.5, 3.5], [4.5, 7.5], [9.5, 1.5]]
    assert s.points.classes.tolist() == [15, 15, 8]
    assert len(s.notes) == 4
    assert "click 1" in s.notes[0] and "outside" in s.notes[0] and "dropped" in s.notes[0]
    assert "click 2" in s.notes[1] and "outside" in s.notes[1]
    assert "click 3" in s.notes[2] and "void" in s.notes[2]
    assert "click 4" in s.notes[3] and "class 0" in s.notes[3]
    # max_rank keeps the first clicks only
    s1 = ClickAnnotations(_write(tmp_path, {"img": clicks}), max_rank=1).attach(_mask_sample())
    assert s1.points.xy.tolist() == [[3.5, 3.5], [4.5, 7.5], [9.5, 1.5]]
    s0 = ClickAnnotations(_write(tmp_path, {"img": clicks[:2]}), max_rank=1).attach(_mask_sample())
    assert s0.points.xy.tolist() == [[3.5, 3.5]] and s0.notes == ()  # rank filter before the checks


def test_several_files_merge(tmp_path, voc_points: Path):
    a = _write(tmp_path, {"img": [{"x": 3, "y": 3, "cls": 15, "rank": 1}]}, "a.json")
    b = _write(tmp_path, {"img": [{"x": 0, "y": 0, "cls": 0, "rank": 1}]}, "b.json")
    s = ClickAnnotations([a, b]).attach(_mask_sample())
    assert s.points.classes.tolist() == [15, 0]


def test_errors(tmp_path):
    ca = ClickAnnotations(_write(tmp_path, {"other": []}))
    with pytest.raises(SourceError, match=r"image 'img'.*no clicks"):
        ca.attach(_mask_sample())
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        ClickAnnotations(_write(tmp_path, "{\"img\": [", "bad.json"))
    with pytest.raises(CorruptFileError, match="expected an object"):
        ClickAnnotations(_write(tmp_path, "[1, 2]", "list.json"))
    with pytest.raises(CorruptFileError, match="expected a list of clicks"):
        ClickAnnotations(_write(tmp_path, {"img": {"x": 1}}, "dict.json"))
    with pytest.raises(MissingFileError, match="does not exist"):
        ClickAnnotations(tmp_path / "absent.json")
    with pytest.raises(SourceError, match="class 21, outside the vocabulary of 21"):
        ClickAnnotations(_write(tmp_path, {"img": [{"x": 1, "y": 1, "cls": 21}]}, "c.json")).attach(_mask_sample())
    with pytest.raises(SourceError, match="click 0"):
        ClickAnnotations(_write(tmp_path, {"img": [{"x": "a", "y": 1, "cls": 1}]}, "d.json")).attach(_mask_sample())


@pytest.mark.parametrize("click", [{"x": "9000", "y": 1, "cls": 1}, {"x": 1, "y": 1, "cls": 1.5},
                                   {"x": 1, "y": 1, "cls": 1, "rank": "first"}, {"x": True, "y": 1, "cls": 1},
                                   {"y": 1, "cls": 1}, [1, 2, 3]])
def test_click_fields_of_the_wrong_type_name_the_file(tmp_path, click):
    path = _write(tmp_path, {"img": [click]}, "typed.json")
    with pytest.raises(SourceError, match=r"image 'img': click 0 .* in .*typed\.json: expected numbers x and y"):
        ClickAnnotations(path).attach(_mask_sample())
