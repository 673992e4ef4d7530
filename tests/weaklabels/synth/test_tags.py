"""Tests for tag synthesis: the foreground classes present in the full annotation.

Reference: ``np.unique`` of the mask minus background and void, on real VOC
masks and on generated shapes scenes. Without a mask, the classes of
instances, boxes, points or scribbles (in that order) give the tags.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weaklabels.errors import SchemaError
from weaklabels.sources.shapes import render_scene, shapes_vocabulary
from weaklabels.synth import synthesize
from weaklabels.synth.tags import synthesize_tags
from weaklabels.types import (
    Boxes, ImageTags, InstanceMasks, Points, Sample, Scribbles, SemanticMask, Vocabulary,
)

VOC = Vocabulary.voc()
NUM_REAL = 200


@pytest.fixture(scope="module")
def real_masks(voc_masks: Path) -> list[tuple[str, np.ndarray]]:
    """The first ``NUM_REAL`` real VOC masks (sorted by name), as class-index arrays."""
    paths = sorted((voc_masks / "SegmentationClassAug").glob("*.png"))[:NUM_REAL]
    assert len(paths) == NUM_REAL
    return [(p.stem, np.array(Image.open(p))) for p in paths]


def _reference_tags(mask: np.ndarray, vocab: Vocabulary) -> list[int]:
    return [int(v) for v in np.unique(mask) if v < len(vocab) and v != vocab.background]


def _mask_sample(mask: np.ndarray, vocab: Vocabulary = VOC, image_id: str = "m") -> Sample:
    return Sample(image_id, mask.shape[0], mask.shape[1], vocab, semantic=SemanticMask(mask))


def test_tags_equal_unique_classes_of_real_voc_masks(real_masks):
    seen = set()
    for image_id, mask in real_masks:
        tags = synthesize_tags(_mask_sample(mask, image_id=image_id))
        assert tags.classes.tolist() == _reference_tags(mask, VOC), image_id
        seen.update(tags.classes.tolist())
    assert len(seen) >= 15  # the sample exercises most classes


def test_tags_equal_unique_classes_of_generated_masks():
    vocab = shapes_vocabulary(6)
    for index in range(12):
        scene = render_scene(5, index, height=48, width=64, vocabulary=vocab, boundary=True,
                             max_objects=5)
        tags = synthesize_tags(_mask_sample(scene.semantic, vocab))
        assert tags.classes.tolist() == _reference_tags(scene.semantic, vocab)
        assert tags.classes.tolist() == sorted(set(scene.instance_classes.tolist()))


def test_background_and_void_are_never_tags():
    mask = np.zeros((6, 6), np.uint8)
    mask[:, :3] = 255
    assert len(synthesize_tags(_mask_sample(mask))) == 0
    mask[0, 5] = 7
    assert synthesize_tags(_mask_sample(mask)).classes.tolist() == [7]


def test_min_pixels():
    mask = np.zeros((10, 10), np.uint8)
    mask[0, :5] = 3      # 5 px
    mask[5:7, :] = 9     # 20 px
    mask[9, 9] = 12      # 1 px
    s = _mask_sample(mask)
    assert synthesize_tags(s).classes.tolist() == [3, 9, 12]
    assert synthesize_tags(s, min_pixels=0).classes.tolist() == [3, 9, 12]
    assert synthesize_tags(s, min_pixels=5).classes.tolist() == [3, 9]
    assert synthesize_tags(s, min_pixels=6).classes.tolist() == [9]
    assert synthesize_tags(s, min_pixels=21).classes.tolist() == []


def test_custom_background_index():
    vocab = Vocabulary(("road", "car", "sky"), background=2)
    mask = np.array([[0, 1], [2, 2]], np.uint8)
    assert synthesize_tags(_mask_sample(mask, vocab)).classes.tolist() == [0, 1]
    no_bg = Vocabulary(("road", "car", "sky"), background=None)
    assert synthesize_tags(_mask_sample(mask, no_bg)).classes.tolist() == [0, 1, 2]


def test_tags_fit_back_into_the_sample():
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 20
    s = _mask_sample(mask)
    out = s.replace(tags=synthesize_tags(s))
    assert out.tags.classes.tolist() == [20]


def test_fallback_to_instances_without_crowd_and_background():
    inst = InstanceMasks(np.ones((4, 3, 3), bool), [5, 2, 7, 0], crowd=[False, False, True, False])
    s = Sample("i", 3, 3, VOC, instances=inst, boxes=Boxes([[0, 0, 1, 1]], [11]))
    assert synthesize_tags(s).classes.tolist() == [2, 5]  # instances win over boxes


def test_fallback_to_boxes_without_crowd():
    boxes = Boxes([[0, 0, 1, 1], [0, 0, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3]], [4, 4, 8, 0],
                  crowd=[False, False, True, False])
    s = Sample("b", 3, 3, VOC, boxes=boxes)
    assert synthesize_tags(s).classes.tolist() == [4]


def test_mask_wins_over_instances_and_given_tags():
    mask = np.zeros((3, 3), np.uint8)
    mask[0, 0] = 6
    s = Sample("m", 3, 3, VOC, semantic=SemanticMask(mask), tags=ImageTags([1]),
               instances=InstanceMasks(np.ones((1, 3, 3), bool), [9]))
    assert synthesize_tags(s).classes.tolist() == [6]


def test_fallback_to_points_and_scribbles_without_background():
    pts = Sample("p", 3, 3, VOC, points=Points([[1, 1], [2, 2], [0.5, 0.5]], [2, 0, 2]))
    assert synthesize_tags(pts).classes.tolist() == [2]
    scr = Sample("s", 3, 3, VOC, scribbles=Scribbles(([[0.5, 0.5], [2.5, 2.5]], [[1, 1]]), [0, 17]))
    assert synthesize_tags(scr).classes.tolist() == [17]
    both = pts.replace(scribbles=scr.scribbles)
    assert synthesize_tags(both).classes.tolist() == [2]  # points come before scribbles


def test_given_tags_are_kept_and_nothing_is_an_error():
    s = Sample("t", 3, 3, VOC, tags=ImageTags([3, 1]))
    assert synthesize_tags(s) == s.tags
    with pytest.raises(SchemaError, match=r"image 'e'.*no mask"):
        synthesize_tags(Sample("e", 3, 3, VOC))


def test_synthesize_with_given_points_takes_tags_from_them():
    s = Sample("g", 4, 4, VOC, points=Points([[1, 1], [3, 3]], [0, 9]))
    out = synthesize(s, "points", given=True)
    assert out.points == s.points and out.tags.classes.tolist() == [9]


def test_synthesize_tags_drops_other_weak_kinds():
    mask = np.zeros((4, 4), np.uint8)
    mask[2, 2] = 13
    s = Sample("d", 4, 4, VOC, semantic=SemanticMask(mask), points=Points([[1, 1]], [2]),
               boxes=Boxes([[0, 0, 1, 1]], [4]))
    out = synthesize(s, "tags")
    assert out.weak_kinds() == ("tags",)
    assert out.tags.classes.tolist() == [13]
    assert out.semantic == s.semantic
