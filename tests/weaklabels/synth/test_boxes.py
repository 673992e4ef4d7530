"""Tests for box synthesis and the ``synthesize`` dispatcher.

The component boxes are compared with an independent brute-force reference
(per-class ``scipy.ndimage.label`` over the whole image, then ``find_objects``)
on real VOC masks: regular boxes with the components of at least ``min_area``
pixels, ignore boxes with the smaller ones and the components of void. Instance
boxes are compared with the tight box of each mask. The protocol's promise is
checked end to end: no pixel the rasterised weak label calls background is
anything but background in the full mask.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from weaklabels.errors import SchemaError
from weaklabels.raster import rasterize
from weaklabels.sources.shapes import render_scene, shapes_vocabulary
from weaklabels.synth import rng_for, synthesize
from weaklabels.synth.boxes import boxes_from_components, synthesize_boxes
from weaklabels.types import (
    Boxes, ImageTags, InstanceMasks, Points, Sample, SemanticMask, Vocabulary,
)

VOC = Vocabulary.voc()
NUM_REAL = 200
FULL_8 = np.ones((3, 3), bool)
CROSS_4 = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


@pytest.fixture(scope="module")
def real_masks(voc_masks: Path) -> list[tuple[str, np.ndarray]]:
    """The first ``NUM_REAL`` real VOC masks (sorted by name), as class-index arrays."""
    paths = sorted((voc_masks / "SegmentationClassAug").glob("*.png"))[:NUM_REAL]
    assert len(paths) == NUM_REAL
    return [(p.stem, np.array(Image.open(p))) for p in paths]


def _reference(mask: np.ndarray, num_classes: int, *, min_area: int, structure: np.ndarray,
               max_area: int | None = None) -> Counter:
    """Multiset of ``(class, x0, y0, x1, y1)``: every component of every foreground class
    with ``min_area <= area`` (and ``area < max_area`` when given)."""
    out: Counter = Counter()
    for c in range(1, num_classes):
        if not (mask == c).any():
            continue
        lab, n = ndimage.label(mask == c, structure=structure)
        for k, sl in enumerate(ndimage.find_objects(lab), start=1):
            area = (lab[sl] == k).sum()
            if area >= min_area and (max_area is None or area < max_area):
                out[(c, sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)] += 1
    return out


def _void_reference(mask: np.ndarray, *, structure: np.ndarray, cls: int = 0, ignore: int = 255) -> Counter:
    """Multiset of ``(cls, x0, y0, x1, y1)``: every component of void."""
    lab, _ = ndimage.label(mask == ignore, structure=structure)
    return Counter((cls, sl[1].start, sl[0].start, sl[1].stop, sl[0].stop) for sl in ndimage.find_objects(lab))


def _as_counter(xyxy: np.ndarray, classes: np.ndarray) -> Counter:
    assert xyxy.dtype == np.float64 and classes.dtype == np.int64
    assert (xyxy == np.round(xyxy)).all()  # component boxes lie on pixel edges
    return Counter((int(c), *(int(v) for v in b)) for b, c in zip(xyxy, classes))


def _split(xyxy: np.ndarray, classes: np.ndarray, ignored: np.ndarray) -> tuple[Counter, Counter]:
    """``boxes_from_components``' output as (regular boxes, ignore boxes) multisets."""
    assert ignored.dtype == bool and ignored.shape == classes.shape
    return _as_counter(xyxy[~ignored], classes[~ignored]), _as_counter(xyxy[ignored], classes[ignored])


def _mask_sample(mask: np.ndarray, vocab: Vocabulary = VOC, image_id: str = "m") -> Sample:
    return Sample(image_id, mask.shape[0], mask.shape[1], vocab, semantic=SemanticMask(mask))


# --------------------------------------------------------------------------- component boxes


def test_component_boxes_match_brute_force_on_real_masks(real_masks):
    total = small = void = 0
    for image_id, mask in real_masks:
        regular, ignored = _split(*boxes_from_components(mask, len(VOC), 0, ignore=255))
        assert regular == _reference(mask, len(VOC), min_area=10, structure=FULL_8), image_id
        # ignore boxes: the components under min_area, and every component of void (class background)
        want_ignored = (_reference(mask, len(VOC), min_area=1, max_area=10, structure=FULL_8)
                        + _void_reference(mask, structure=FULL_8))
        assert ignored == want_ignored, image_id
        total += sum(regular.values())
        small += sum(v for k, v in ignored.items() if k[0] != 0)
        void += sum(v for k, v in ignored.items() if k[0] == 0)
    assert total > NUM_REAL  # several objects per image on average
    assert small > 0 and void > 0  # the sample exercises both kinds of ignore box


def test_component_boxes_without_ignore_value_skip_void(real_masks):
    for image_id, mask in real_masks[:40]:
        xyxy, classes, ignored = boxes_from_components(mask, len(VOC), 0)
        assert (classes != 0).all(), image_id  # no void boxes unless asked
        regular, small = _split(xyxy, classes, ignored)
        assert regular == _reference(mask, len(VOC), min_area=10, structure=FULL_8), image_id
        assert small == _reference(mask, len(VOC), min_area=1, max_area=10, structure=FULL_8), image_id


def test_component_boxes_match_brute_force_4_connected_all_sizes(real_masks):
    for image_id, mask in real_masks[:60]:
        regular, ignored = _split(*boxes_from_components(mask, len(VOC), 0, min_area=1, connectivity=4))
        assert regular == _reference(mask, len(VOC), min_area=1, structure=CROSS_4), image_id
        assert not ignored


def test_every_box_is_the_tight_box_of_its_class(real_masks):
    # Each border row and column of a box holds a pixel of the box's class (void for the
    # void boxes); a regular box holds at least min_area pixels of its class.
    for image_id, mask in real_masks[:100]:
        xyxy, classes, ignored = boxes_from_components(mask, len(VOC), 0, ignore=255)
        for (x0, y0, x1, y1), c, ig in zip(xyxy.astype(int), classes, ignored):
            inside = mask[y0:y1, x0:x1] == (255 if c == 0 else c)
            assert inside[0].any() and inside[-1].any(), (image_id, c)
            assert inside[:, 0].any() and inside[:, -1].any(), (image_id, c)
            assert c < len(VOC)
            if not ig:
                assert c != 0 and inside.sum() >= 10


def test_rasterised_boxes_call_background_only_background_on_real_masks(real_masks):
    # The protocol's promise: precision of the weak label's background is 100%.
    labelled = 0
    for image_id, mask in real_masks:
        s = _mask_sample(mask, image_id=image_id)
        weak = synthesize(s, "boxes")
        label = rasterize(weak, "boxes")
        called_bg = label == 0
        assert (mask[called_bg] == 0).all(), (image_id, np.unique(mask[called_bg]).tolist())
        # every non-background pixel of the mask is unlabelled (in a box) or ignore (void / small)
        assert np.isin(label[mask != 0], [VOC.unlabelled, VOC.ignore]).all(), image_id
        labelled += called_bg.sum()
    assert labelled > 0.3 * sum(m.size for _, m in real_masks)  # boxes still say a lot


def test_component_boxes_on_generated_masks_hold_each_object():
    vocab = shapes_vocabulary(5)
    for index in range(10):
        scene = render_scene(11, index, height=48, width=64, vocabulary=vocab, max_objects=3)
        regular, ignored = _split(*boxes_from_components(scene.semantic, len(vocab), 0, min_area=1))
        assert regular == _reference(scene.semantic, len(vocab), min_area=1, structure=FULL_8)
        assert not ignored


def test_connectivity_4_splits_diagonal_neighbours():
    mask = np.zeros((8, 8), np.uint8)
    mask[0:3, 0:3] = 1
    mask[3:6, 3:6] = 1  # touches the first block only at a corner
    xyxy, cls, ig = boxes_from_components(mask, 21, 0, min_area=1, connectivity=8)
    assert xyxy.tolist() == [[0, 0, 6, 6]] and cls.tolist() == [1] and ig.tolist() == [False]
    xyxy, cls, ig = boxes_from_components(mask, 21, 0, min_area=1, connectivity=4)
    assert sorted(xyxy.tolist()) == [[0, 0, 3, 3], [3, 3, 6, 6]] and cls.tolist() == [1, 1]
    assert not ig.any()
    with pytest.raises(SchemaError, match="connectivity=6"):
        boxes_from_components(mask, 21, 0, connectivity=6)


def test_void_separates_components_and_other_classes_do_not_merge():
    mask = np.zeros((6, 12), np.uint8)
    mask[1:5, 1:11] = 4
    mask[:, 5] = 255                    # a void line cuts the class-4 region in two
    mask[2:4, 8:10] = 7                 # a class-7 hole inside the right half
    regular, ignored = _split(*boxes_from_components(mask, 21, 0, min_area=1))
    assert regular == Counter({(4, 1, 1, 5, 5): 1, (4, 6, 1, 11, 5): 1, (7, 8, 2, 10, 4): 1})
    assert not ignored
    regular2, ignored2 = _split(*boxes_from_components(mask, 21, 0, min_area=1, ignore=255))
    assert regular2 == regular
    assert ignored2 == Counter({(0, 5, 0, 6, 6): 1})  # the void line, labelled background


def test_min_area_makes_small_components_ignore_boxes():
    mask = np.zeros((10, 10), np.uint8)
    mask[0:3, 0:3] = 2   # 9 px
    mask[5:9, 5:9] = 2   # 16 px
    regular, ignored = _split(*boxes_from_components(mask, 21, 0))
    assert regular == Counter({(2, 5, 5, 9, 9): 1})
    assert ignored == Counter({(2, 0, 0, 3, 3): 1})  # still boxed: never called background
    regular, ignored = _split(*boxes_from_components(mask, 21, 0, min_area=9))
    assert sum(regular.values()) == 2 and not ignored
    regular, ignored = _split(*boxes_from_components(mask, 21, 0, min_area=17))
    assert not regular and sum(ignored.values()) == 2


def test_empty_and_background_only_masks_give_no_boxes():
    for fill in (0, 255):
        xyxy, cls, ig = boxes_from_components(np.full((5, 5), fill, np.uint8), 21, 0)
        assert xyxy.shape == (0, 4) and cls.shape == (0,) and ig.shape == (0,)
    xyxy, cls, ig = boxes_from_components(np.zeros((5, 5), np.uint8), 21, 0, ignore=255)
    assert xyxy.shape == (0, 4)
    # an all-void mask is one ignore box of the background class
    xyxy, cls, ig = boxes_from_components(np.full((5, 5), 255, np.uint8), 21, 0, ignore=255)
    assert xyxy.tolist() == [[0, 0, 5, 5]] and cls.tolist() == [0] and ig.tolist() == [True]


def test_components_of_class_zero_when_it_is_not_background():
    mask = np.full((6, 6), 1, np.uint8)
    mask[1:4, 1:4] = 0
    regular, _ = _split(*boxes_from_components(mask, 2, None, min_area=1))
    assert (0, 1, 1, 4, 4) in regular


def test_synthesize_boxes_with_background_not_zero():
    vocab = Vocabulary(("road", "car", "sky"), background=2)
    m = np.full((6, 6), 2, np.uint8)
    m[1:3, 1:4] = 0
    m[4:6, 4:6] = 1
    b = synthesize_boxes(_mask_sample(m, vocab), min_area=1)
    assert sorted(zip(b.classes.tolist(), b.xyxy.tolist())) == [
        (0, [1.0, 1.0, 4.0, 3.0]), (1, [4.0, 4.0, 6.0, 6.0])]
    assert not b.crowd.any()
    m[0, 5] = 255  # void becomes an ignore box of the background class (2)
    b = synthesize_boxes(_mask_sample(m, vocab), min_area=1)
    assert [(c, x, cr) for c, x, cr in zip(b.classes.tolist(), b.xyxy.tolist(), b.crowd.tolist()) if cr] == [
        (2, [5.0, 0.0, 6.0, 1.0], True)]


def test_synthesize_boxes_marks_small_and_void_components_crowd():
    mask = np.zeros((12, 12), np.uint8)
    mask[1:6, 1:6] = 3        # 25 px: a regular box
    mask[8:10, 8:10] = 5      # 4 px: an ignore box
    mask[0, :] = 255          # a void band
    b = synthesize_boxes(_mask_sample(mask))
    got = sorted(zip(b.classes.tolist(), b.xyxy.tolist(), b.crowd.tolist()))
    assert got == [(0, [0.0, 0.0, 12.0, 1.0], True), (3, [1.0, 1.0, 6.0, 6.0], False),
                   (5, [8.0, 8.0, 10.0, 10.0], True)]
    label = rasterize(_mask_sample(mask).replace(boxes=b), "boxes")
    assert (label[0] == VOC.ignore).all() and (label[8:10, 8:10] == VOC.ignore).all()
    assert (label[1:6, 1:6] == VOC.unlabelled).all()
    assert (mask[label == 0] == 0).all()


# --------------------------------------------------------------------------- instances / source boxes


def _tight(mask: np.ndarray) -> list[float]:
    rows, cols = np.nonzero(mask)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def test_instance_boxes_are_tight_crowd_become_ignore_boxes_and_empty_are_skipped():
    rng = np.random.default_rng(0)
    masks = np.zeros((5, 20, 30), bool)
    for k in range(4):
        r, c = rng.integers(0, 15), rng.integers(0, 25)
        masks[k, r:r + rng.integers(1, 6), c:c + rng.integers(1, 6)] = True
        masks[k, rng.integers(0, 20), rng.integers(0, 30)] = True  # a stray pixel widens the box
    # masks[4] stays empty
    inst = InstanceMasks(masks, [3, 5, 7, 9, 11], crowd=[False, True, False, False, False])
    sem = np.zeros((20, 30), np.uint8)
    s = Sample("inst", 20, 30, VOC, instances=inst, semantic=SemanticMask(sem))
    boxes = synthesize_boxes(s)  # instances win over the (empty) class mask
    assert boxes.classes.tolist() == [3, 5, 7, 9]
    assert boxes.xyxy.tolist() == [_tight(masks[k]) for k in (0, 1, 2, 3)]
    assert boxes.crowd.tolist() == [False, True, False, False]


def test_instance_boxes_add_void_components_as_background_ignore_boxes():
    masks = np.zeros((2, 10, 12), bool)
    masks[0, 1:4, 1:4] = True
    masks[1, 5:9, 6:11] = True
    sem = np.zeros((10, 12), np.uint8)
    sem[masks[0]] = 8
    sem[masks[1]] = 12
    sem[0, 0:5] = 255       # two void components
    sem[9, 9:12] = 255
    s = Sample("iv", 10, 12, VOC, instances=InstanceMasks(masks, [8, 12]), semantic=SemanticMask(sem))
    b = synthesize_boxes(s)
    assert b.classes.tolist() == [8, 12, 0, 0]
    assert b.crowd.tolist() == [False, False, True, True]
    assert sorted(b.xyxy[2:].tolist()) == [[0, 0, 5, 1], [9, 9, 12, 10]]
    label = rasterize(s.replace(boxes=b), "boxes")
    assert (sem[label == 0] == 0).all()


def test_instance_boxes_on_generated_scene():
    scene = render_scene(2, 4, height=48, width=64, max_objects=4)
    vocab = shapes_vocabulary()
    ids = np.arange(1, len(scene.instance_classes) + 1)
    masks = scene.visible_instances[None] == ids[:, None, None]
    s = Sample("g", 48, 64, vocab, instances=InstanceMasks(masks, scene.instance_classes))
    boxes = synthesize_boxes(s)
    assert boxes.classes.tolist() == scene.instance_classes.tolist()
    assert boxes.xyxy.tolist() == [_tight(m) for m in masks]
    assert not boxes.crowd.any()


def test_source_boxes_are_returned_unchanged():
    b = Boxes([[0, 0, 2, 2], [1, 1, 3, 3], [0, 1, 4, 3]], [1, 2, 3], difficult=[True, False, False],
              crowd=[False, True, False])
    out = synthesize_boxes(Sample("s", 4, 4, VOC, boxes=b))
    assert out == b
    assert out.crowd.tolist() == [False, True, False]  # the crowd box stays an ignore box


def test_no_source_is_an_error_naming_the_image():
    with pytest.raises(SchemaError, match=r"image 'n'.*no mask"):
        synthesize_boxes(Sample("n", 3, 3, VOC, tags=ImageTags([2])))


# --------------------------------------------------------------------------- synthesize()


def _generated_samples(n: int = 12) -> list[Sample]:
    vocab = shapes_vocabulary(5)
    return [_mask_sample(render_scene(7, i, height=40, width=56, vocabulary=vocab, boundary=True).semantic,
                         vocab, image_id=f"shape_{i:03d}") for i in range(n)]


def test_synthesize_boxes_is_deterministic_and_order_independent():
    samples = _generated_samples()
    forward = {s.image_id: synthesize(s, "boxes", seed=3) for s in samples}
    backward = {s.image_id: synthesize(s, "boxes", seed=3) for s in reversed(samples)}
    again = [synthesize(s, "boxes", seed=3) for s in samples]
    for s, a in zip(samples, again):
        assert forward[s.image_id] == backward[s.image_id] == a


def test_synthesize_boxes_result():
    mask = np.zeros((12, 12), np.uint8)
    mask[2:7, 2:7] = 8
    mask[8:12, 0:12] = 15
    s = _mask_sample(mask).replace(points=Points([[1, 1]], [8]))
    out = synthesize(s, "boxes", min_area=1)
    assert out.weak_kinds() == ("tags", "boxes")  # other weak kinds are dropped
    assert out.tags.classes.tolist() == [8, 15]
    assert not out.boxes.crowd.any()  # no void, no small component
    assert _as_counter(out.boxes.xyxy, out.boxes.classes) == Counter(
        {(8, 2, 2, 7, 7): 1, (15, 0, 8, 12, 12): 1})
    assert out.semantic == s.semantic  # the full mask is kept


def test_synthesize_rejects_unknown_kinds():
    s = _mask_sample(np.zeros((3, 3), np.uint8))
    with pytest.raises(SchemaError, match="unknown weak-label kind 'polygons'") as info:
        synthesize(s, "polygons")
    for kind in ("tags", "boxes", "points", "scribbles"):
        assert kind in str(info.value)


def test_rng_for_depends_on_seed_and_id_only():
    a = rng_for(1, "2007_000032").integers(0, 2**32, 4)
    assert np.array_equal(a, rng_for(1, "2007_000032").integers(0, 2**32, 4))
    assert not np.array_equal(a, rng_for(2, "2007_000032").integers(0, 2**32, 4))
    assert not np.array_equal(a, rng_for(1, "2007_000033").integers(0, 2**32, 4))
    assert not np.array_equal(a, rng_for(1, "2007_000032", 1).integers(0, 2**32, 4))
