"""Tests for the objects the point and scribble protocols annotate, and their coarse-grid interiors.

References: ``scipy.ndimage.label`` per class for the components, and an exact
nearest-outside-pixel search (``scipy.spatial.cKDTree``) for the clearance bound.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from weaklabels.synth.objects import find_objects, interior, interior_with_cells
from weaklabels.types import InstanceMasks, Sample, SemanticMask, Vocabulary

VOC = Vocabulary.voc()
EIGHT = np.ones((3, 3), bool)


@pytest.fixture(scope="module")
def real_samples(voc_masks: Path) -> list[Sample]:
    paths = sorted((voc_masks / "SegmentationClassAug").glob("*.png"))[:40]
    out = []
    for p in paths:
        m = np.array(Image.open(p))
        out.append(Sample(p.stem, m.shape[0], m.shape[1], VOC, semantic=SemanticMask(m)))
    return out


def _sample(mask: np.ndarray, instances: InstanceMasks | None = None, vocab: Vocabulary = VOC) -> Sample:
    return Sample("o", mask.shape[0], mask.shape[1], vocab, semantic=SemanticMask(mask), instances=instances)


def _full(obj, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    h, w = obj.mask.shape
    out[obj.y0:obj.y0 + h, obj.x0:obj.x0 + w] = obj.mask
    return out


def test_components_match_reference_on_real_masks(real_samples):
    for s in real_samples[:25]:
        m = s.semantic.array
        objs = find_objects(s)
        want = []
        for c in range(1, len(VOC)):
            lab, n = ndimage.label(m == c, structure=EIGHT)
            want += [(c, frozenset(np.flatnonzero(lab == k))) for k in range(1, n + 1) if (lab == k).sum() >= 10]
        got = [(o.cls, frozenset(np.flatnonzero(_full(o, m.shape)))) for o in objs]
        # same objects; classes in order (the order within a class is the labeller's scan order)
        key = lambda t: (t[0], min(t[1]))  # noqa: E731
        assert sorted(got, key=key) == sorted(want, key=key), s.image_id
        assert [o.cls for o in objs] == sorted(o.cls for o in objs)


def test_per_class_and_background_objects():
    m = np.zeros((20, 20), np.uint8)
    m[1:5, 1:5] = 3
    m[10:15, 10:15] = 3
    m[0, 19] = 7          # 1 px: under min_area
    m[15:20, 0:2] = 255
    objs = find_objects(_sample(m), per_class=True, background=True)
    assert [o.cls for o in objs] == [3, 0]
    assert (_full(objs[0], m.shape) == (m == 3)).all()   # both squares form one object
    assert objs[1].y0 == objs[1].x0 == 0 and (objs[1].mask == (m == 0)).all()
    assert [o.cls for o in find_objects(_sample(m))] == [3, 3]
    assert [o.cls for o in find_objects(_sample(m), min_area=1)] == [3, 3, 7]
    assert [o.cls for o in find_objects(_sample(m), per_class=True, min_area=1)] == [3, 7]
    no_mask = Sample("n", 4, 4, VOC)
    assert find_objects(no_mask, background=True) == []


def test_instance_objects_keep_only_their_class_pixels():
    sem = np.zeros((20, 30), np.uint8)
    masks = np.zeros((4, 20, 30), bool)
    masks[0, 2:12, 2:12] = True           # a person (15) partly covered by a dog (12)
    masks[1, 6:16, 6:16] = True
    masks[2, 0:20, 20:30] = True          # a crowd region
    masks[3, 2:4, 14:18] = True           # 8 px: under min_area
    masks[3, 6:10, 14:18] = True
    sem[masks[0]] = 15
    sem[masks[1]] = 12
    sem[masks[2]] = 15
    sem[masks[3]] = 9
    inst = InstanceMasks(masks, [15, 12, 15, 9], crowd=[False, False, True, False])
    objs = find_objects(_sample(sem, inst))
    assert [(o.cls, o.instance) for o in objs] == [(15, 0), (12, 1), (9, 3)]
    for o in objs:
        full = _full(o, sem.shape)
        assert (sem[full] == o.cls).all()               # never a pixel of another class
    assert _full(objs[0], sem.shape).sum() == 100 - 36  # the dog covers 6x6 of the person
    # a split instance keeps its largest visible piece only
    piece = np.zeros_like(masks[3])
    piece[6:10, 14:18] = True
    assert (_full(objs[2], sem.shape) == piece).all()
    # instance mode with background
    assert [o.cls for o in find_objects(_sample(sem, inst), background=True)][-1] == 0


def test_interior_stride_and_clearance_on_the_pixel_grid():
    m = np.zeros((9, 9), np.uint8)
    m[1:8, 1:8] = 4
    (obj,) = find_objects(_sample(m))
    it = interior(obj)
    assert it.stride == 1
    assert it.clearance.max() == 4.0 and it.clearance[3, 3] == 4.0  # the centre pixel, 4 from outside
    assert it.centres(np.array([[3, 3]])).tolist() == [[4.5, 4.5]]
    big = np.zeros((100, 100), np.uint8)
    big[:, :] = 4
    (obj,) = find_objects(_sample(big))
    assert interior(obj, max_cells=32).stride == 4
    assert interior(obj, max_cells=100).stride == 1


def test_thin_objects_fall_back_to_the_pixel_grid():
    m = np.zeros((80, 80), np.uint8)
    m[40, 5:75] = 6     # 1 px wide, 70 long: no 3x3 cell fits
    (obj,) = find_objects(_sample(m))
    assert not (interior(obj).clearance > 0).any()
    it = interior_with_cells(obj)
    assert it.stride == 1 and (it.clearance > 0).sum() == 70


def test_clearance_px_is_a_lower_bound_on_the_exact_distance(real_samples):
    checked = 0
    for s in real_samples[:15]:
        for obj in find_objects(s, background=True):
            it = interior_with_cells(obj)
            h, w = obj.mask.shape
            outside = np.argwhere(~np.pad(obj.mask, 1)) - 1 + 0.5        # (row, col) pixel centres
            tree = cKDTree(outside[:, ::-1])                            # (x, y)
            cells = np.argwhere(it.clearance > 0)
            if not len(cells):
                continue
            centres = it.centres(cells) - [obj.x0, obj.y0]
            exact, _ = tree.query(centres)
            bound = it.clearance_px()[cells[:, 0], cells[:, 1]]
            assert (exact >= bound - 1e-9).all(), (s.image_id, obj.cls, it.stride)
            checked += len(cells)
    assert checked > 1000
