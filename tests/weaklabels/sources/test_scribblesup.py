"""Tests for the ScribbleSup XML reader, on generated files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weaklabels.errors import CorruptFileError, MissingFileError, SourceError
from weaklabels.sources.scribblesup import ScribbleSupAnnotations
from weaklabels.types import Sample, Vocabulary

VOC = Vocabulary.voc()


def scribble_xml(polygons: list[tuple[str, list[tuple[float, float]]]]) -> str:
    body = "".join(
        f"<polygon><tag>{tag}</tag>"
        + "".join(f"<point><X>{x}</X><Y>{y}</Y></point>" for x, y in pts) + "</polygon>"
        for tag, pts in polygons)
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "scribbles"
    d.mkdir(exist_ok=True)
    for iid, text in files.items():
        (d / f"{iid}.xml").write_text(text)
    return d


def _sample(iid: str = "img", h: int = 30, w: int = 40) -> Sample:
    return Sample(iid, h, w, VOC)


def test_classes_by_name_and_pixel_centre_conversion(tmp_path):
    xml = scribble_xml([("person", [(10, 20), (12, 22), (15, 22)]), ("BG", [(0, 0), (5, 1)]),
                        ("DiningTable", [(3, 4)]), ("__background__", [(1, 1)])])
    ann = ScribbleSupAnnotations(_folder(tmp_path, {"img": xml}), width=5)
    s = ann.attach(_sample())
    assert s.scribbles.classes.tolist() == [15, 0, 11, 0]
    assert s.scribbles.lines[0].tolist() == [[10.5, 20.5], [12.5, 22.5], [15.5, 22.5]]
    assert s.scribbles.lines[2].tolist() == [[3.5, 4.5]]
    assert s.scribbles.widths.tolist() == [5.0] * 4
    assert s.notes == ()
    assert ann.describe()["width"] == 5.0


def test_vertices_outside_are_clamped_and_reported(tmp_path):
    xml = scribble_xml([("cat", [(-3, 5), (45, 35)]), ("dog", [(1, 1)]), ("cat", [])])
    s = ScribbleSupAnnotations(_folder(tmp_path, {"img": xml})).attach(_sample())
    line = s.scribbles.lines[0]
    assert line[0].tolist() == [0.0, 5.5]
    assert 39.99 < line[1, 0] < 40 and 29.99 < line[1, 1] < 30
    assert s.scribbles.classes.tolist() == [8, 12]
    assert any("polygon 0" in n and "clamped" in n for n in s.notes)
    assert any("polygon 2" in n and "no points" in n for n in s.notes)


def test_unknown_tag_lists_valid_names(tmp_path):
    ann = ScribbleSupAnnotations(_folder(tmp_path, {"img": scribble_xml([("unicorn", [(1, 1)])])}))
    with pytest.raises(SourceError, match=r"image 'img'.*tag 'unicorn' is not a class") as info:
        ann.attach(_sample())
    assert "aeroplane" in str(info.value) and "tvmonitor" in str(info.value)


def test_missing_bad_and_hostile_files(tmp_path, kit):
    folder = _folder(tmp_path, {"bad": "<annotation><polygon>", "bomb": kit.billion_laughs,
                                "nonum": scribble_xml([("cat", [("a", 1)])])})
    ann = ScribbleSupAnnotations(folder)
    with pytest.raises(MissingFileError, match="absent"):
        ann.attach(_sample("absent"))
    with pytest.raises(CorruptFileError, match="not well-formed"):
        ann.attach(_sample("bad"))
    with pytest.raises(CorruptFileError, match="entities"):
        ann.attach(_sample("bomb"))
    with pytest.raises(SourceError, match="numeric <X>/<Y>"):
        ann.attach(_sample("nonum"))
    with pytest.raises(SourceError, match="does not exist"):
        ScribbleSupAnnotations(tmp_path / "nowhere")


def test_no_polygons_gives_empty_scribbles(tmp_path):
    s = ScribbleSupAnnotations(_folder(tmp_path, {"img": "<annotation/>"})).attach(_sample())
    assert len(s.scribbles) == 0 and s.scribbles.classes.dtype == np.int64
