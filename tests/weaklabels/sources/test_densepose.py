"""Tests for the DensePose-COCO reader on a small JSON written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from weaklabels.errors import SourceError
from weaklabels.sources.densepose import (
    DENSEPOSE_CLASSES, FINE_TO_COARSE, densepose_vocabulary, flip_permutation, read_densepose,
)

# DensePose's documented patch order (dp_I 1..24) and the coarse part each belongs to.
DOCUMENTED = {
    1: "torso", 2: "torso", 3: "right_hand", 4: "left_hand", 5: "left_foot", 6: "right_foot",
    7: "right_thigh", 9: "right_thigh", 8: "left_thigh", 10: "left_thigh",
    11: "right_leg", 13: "right_leg", 12: "left_leg", 14: "left_leg",
    15: "left_upper_arm", 17: "left_upper_arm", 16: "right_upper_arm", 18: "right_upper_arm",
    19: "left_forearm", 21: "left_forearm", 20: "right_forearm", 22: "right_forearm",
    23: "head", 24: "head",
}


def _rle(m: np.ndarray) -> dict:
    from pycocotools import mask

    r = mask.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}


def _write(tmp_path: Path, dp_i=(1, 3, 24), bbox=(20.0, 10.0, 64.0, 128.0), masks=True) -> Path:
    parts = []
    for k in range(14):
        m = np.zeros((256, 256), np.uint8)
        if k == 0:
            m[0:128, :] = 1            # part 1 (torso) on the upper half
        elif k == 13:
            m[128:, :128] = 1          # part 14 (head) on the lower-left quarter
        parts.append(_rle(m))
    ann = {"id": 5, "image_id": 1, "category_id": 1, "bbox": list(bbox), "iscrowd": 0, "area": 100.0,
           "dp_x": [0.0, 128.0, 255.0][:len(dp_i)], "dp_y": [0.0, 64.0, 200.0][:len(dp_i)], "dp_I": list(dp_i)}
    if masks:
        ann["dp_masks"] = parts
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 150}],
            "annotations": [ann, {"id": 6, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}],
            "categories": [{"id": 1, "name": "person"}]}
    p = tmp_path / "densepose.json"
    p.write_text(json.dumps(data))
    return p


def test_points_are_placed_in_the_box(tmp_path):
    s = read_densepose(_write(tmp_path))[0]
    bx, by, bw, bh = 20.0, 10.0, 64.0, 128.0
    want = [[bx + dx * bw / 256, by + dy * bh / 256] for dx, dy in ((0, 0), (128, 64), (255, 200))]
    assert np.allclose(s.points.xy, want)
    assert s.points.classes.tolist() == [1, 2, 14]   # torso, right hand, head
    assert s.vocabulary == densepose_vocabulary() and len(s.vocabulary) == 15


def test_fine_to_coarse_follows_the_documented_order():
    for fine, name in DOCUMENTED.items():
        assert DENSEPOSE_CLASSES[FINE_TO_COARSE[fine]] == name, fine
    assert sorted(DOCUMENTED) == list(range(1, 25))
    assert set(FINE_TO_COARSE[1:].tolist()) == set(range(1, 15))


def test_flip_swaps_left_and_right_and_is_an_involution():
    perm = flip_permutation()
    assert (perm[perm] == np.arange(15)).all()
    for i, name in enumerate(DENSEPOSE_CLASSES):
        flipped = DENSEPOSE_CLASSES[perm[i]]
        if "left" in name:
            assert flipped == name.replace("left", "right")
        elif "right" in name:
            assert flipped == name.replace("right", "left")
        else:
            assert flipped == name


def test_dp_i_out_of_range_is_an_error(tmp_path):
    for bad in ((0, 1, 2), (1, 25, 2)):
        with pytest.raises(SourceError, match=r"image '1' annotation 5.*dp_I.*1..24"):
            read_densepose(_write(tmp_path, dp_i=bad))[0]


def test_semantic_mask_is_painted_inside_the_box(tmp_path):
    s = read_densepose(_write(tmp_path))[0]
    sem = s.semantic.array
    assert sem.shape == (150, 100)
    box = np.zeros_like(sem, bool)
    box[10:138, 20:84] = True
    assert (sem[~box] == 0).all()
    assert (sem[10:74, 20:84] == 1).all()       # upper half of the box: torso
    assert (sem[74:138, 20:52] == 14).all()     # lower-left quarter: head
    assert (sem[74:138, 52:84] == 0).all()
    assert read_densepose(_write(tmp_path, masks=False))[0].semantic is None
