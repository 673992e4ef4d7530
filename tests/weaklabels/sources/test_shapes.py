"""Tests for the procedural shapes scenes and their VOC / COCO writer."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from weaklabels.errors import SchemaError
from weaklabels.sources.shapes import (
    SHAPE_NAMES, Scene, class_style, mask_polygons, render_scene, shapes_vocabulary,
    write_shapes,
)
from weaklabels.types import IGNORE, Vocabulary


def _same(a: Scene, b: Scene) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f))
               for f in ("image", "semantic", "instances", "instance_classes", "visible_instances"))


# --------------------------------------------------------------------------- vocabulary


def test_vocabulary_names_follow_shapes():
    voc = shapes_vocabulary(5)
    assert voc.names == ("background",) + SHAPE_NAMES[:5]
    assert voc.background == 0
    big = shapes_vocabulary(len(SHAPE_NAMES) + 2)
    assert big.names[len(SHAPE_NAMES) + 1] == "disc_2"
    with pytest.raises(SchemaError):
        shapes_vocabulary(0)


def test_classes_sharing_a_shape_look_different():
    n = len(SHAPE_NAMES)
    for j in range(n):
        a, b = class_style(j), class_style(j + n)
        assert a.shape == b.shape
        hue_gap = min(abs(a.hue - b.hue), 1 - abs(a.hue - b.hue))
        assert hue_gap > 0.1 and a.texture != b.texture


# --------------------------------------------------------------------------- scenes


def test_render_is_deterministic_and_order_independent():
    forward = [render_scene(7, i) for i in range(6)]
    backward = [render_scene(7, i) for i in reversed(range(6))][::-1]
    assert all(_same(a, b) for a, b in zip(forward, backward))
    assert not np.array_equal(forward[0].image, forward[1].image)


def test_different_seeds_differ():
    assert not np.array_equal(render_scene(0, 3).image, render_scene(1, 3).image)


def test_scene_shapes_and_dtypes():
    s = render_scene(0, 0, height=64, width=80)
    assert s.image.shape == (64, 80, 3) and s.image.dtype == np.uint8
    assert s.semantic.shape == s.instances.shape == (64, 80)
    assert s.semantic.dtype == s.instances.dtype == np.uint8
    assert s.instance_classes.dtype == np.int64
    with pytest.raises(ValueError):
        s.semantic[0, 0] = 1  # read-only


@pytest.mark.parametrize("boundary", [False, True])
@pytest.mark.parametrize("vocabulary", [None, Vocabulary.voc()], ids=["shapes", "voc"])
def test_semantic_and_instances_agree(boundary, vocabulary):
    voc = vocabulary or shapes_vocabulary()
    for i in range(25):
        s = render_scene(2, i, vocabulary=vocabulary, boundary=boundary)
        n = len(s.instance_classes)
        assert n >= 1
        assert set(s.instance_classes.tolist()) <= set(voc.foreground)
        inst, sem = s.instances, s.semantic
        assert np.array_equal(inst == IGNORE, sem == IGNORE)
        assert np.all(sem[inst == 0] == 0)
        for k in range(1, n + 1):
            m = inst == k
            assert m.sum() >= 1
            assert np.all(sem[m] == s.instance_classes[k - 1])
            assert (s.visible_instances == k).sum() >= 20
        assert set(np.unique(inst).tolist()) <= set(range(n + 1)) | {IGNORE}
        if boundary:
            assert np.array_equal(s.visible_instances[inst != IGNORE], inst[inst != IGNORE])
            assert np.all(s.visible_instances[inst == IGNORE] > 0)
        else:
            assert IGNORE not in sem and np.array_equal(s.visible_instances, inst)


def test_void_band_is_one_pixel_inner_boundary():
    s = render_scene(5, 1, boundary=True)
    vis, band = s.visible_instances.astype(int), s.instances == IGNORE
    # Every band pixel has a 4-neighbour with another visible label ...
    pad = np.pad(vis, 1, mode="edge")
    neighbours = [pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]]
    touches = np.any([nb != vis for nb in neighbours], axis=0)
    assert np.array_equal(band, touches & (vis > 0))
    # ... and the band never covers background.
    assert not np.any(band & (vis == 0))


def test_rejects_vocabulary_without_background():
    with pytest.raises(SchemaError):
        render_scene(0, 0, vocabulary=Vocabulary(("a", "b"), background=None))


def test_mean_colour_differs_between_classes():
    """Learnability sanity check: classes are told apart by colour, and from background."""
    voc = shapes_vocabulary(5)
    sums, counts = np.zeros((len(voc), 3)), np.zeros(len(voc))
    for i in range(40):
        s = render_scene(11, i, vocabulary=voc)
        for c in range(len(voc)):
            m = s.semantic == c
            sums[c] += s.image[m].sum(0)
            counts[c] += m.sum()
    assert np.all(counts > 0)
    means = sums / counts[:, None]
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    off = dist[~np.eye(len(voc), dtype=bool)]
    assert off.min() > 25, np.round(means)


def test_mask_polygons_keep_holes():
    pycocotools_mask = pytest.importorskip("pycocotools.mask")
    yy, xx = np.mgrid[:40, :50]
    r = np.hypot(yy - 20, xx - 20)
    m = ((r < 15) & (r > 8)) | ((yy > 5) & (yy < 9) & (xx > 40))  # ring + separate bar
    polys = mask_polygons(m)
    assert len(polys) == 2
    rle = pycocotools_mask.merge(pycocotools_mask.frPyObjects(polys, 40, 50))
    assert np.array_equal(pycocotools_mask.decode(rle).astype(bool), m)


# --------------------------------------------------------------------------- writer


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    progress = []
    root = write_shapes(out, 12, seed=4, boundary=True, on_progress=progress.append)
    return out, root, progress


def _ids(root, split):
    return (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def test_layout_and_splits(written):
    out, root, progress = written
    assert root == out / "VOCdevkit" / "VOC2012"
    assert progress == list(range(1, 13))
    ids = [f"shapes_{i:06d}" for i in range(12)]
    train, val, trainval = _ids(root, "train"), _ids(root, "val"), _ids(root, "trainval")
    assert sorted(train + val) == ids == trainval
    assert not set(train) & set(val) and len(val) == 3
    for i in ids:
        for sub, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png"),
                         ("SegmentationObject", "png"), ("Annotations", "xml")):
            assert (root / sub / f"{i}.{ext}").is_file()
    assert (root / "class_names.txt").read_text().split() == list(shapes_vocabulary().names)
    assert not list(out.rglob("*.tmp"))


def test_pngs_read_back_as_scene_indices(written):
    _, root, _ = written
    for i in range(12):
        s = render_scene(4, i, boundary=True)
        for sub, want in (("SegmentationClass", s.semantic), ("SegmentationObject", s.instances)):
            img = Image.open(root / sub / f"shapes_{i:06d}.png")
            assert img.mode == "P"
            assert np.array_equal(np.array(img), want)
        jpg = Image.open(root / "JPEGImages" / f"shapes_{i:06d}.jpg")
        assert jpg.mode == "RGB" and jpg.size == (128, 96)


def test_xml_boxes_are_one_based_inclusive(written):
    _, root, _ = written
    names = shapes_vocabulary().names
    for i in range(12):
        s = render_scene(4, i, boundary=True)
        tree = ET.parse(root / "Annotations" / f"shapes_{i:06d}.xml").getroot()
        assert tree.findtext("filename") == f"shapes_{i:06d}.jpg"
        assert (int(tree.findtext("size/width")), int(tree.findtext("size/height"))) == (128, 96)
        objs = tree.findall("object")
        assert len(objs) == len(s.instance_classes)
        for k, obj in enumerate(objs, start=1):
            assert obj.findtext("name") == names[s.instance_classes[k - 1]]
            rows, cols = np.nonzero(s.visible_instances == k)
            box = [int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
            assert box == [cols.min() + 1, rows.min() + 1, cols.max() + 1, rows.max() + 1]
            touches = cols.min() == 0 or rows.min() == 0 or cols.max() == 127 or rows.max() == 95
            assert obj.findtext("truncated") == str(int(touches))
            assert obj.findtext("difficult") == "0"


def test_coco_polygons_match_instance_masks(written):
    pycocotools_mask = pytest.importorskip("pycocotools.mask")
    out, root, _ = written
    names = shapes_vocabulary().names
    seen_images = []
    for split in ("train", "val"):
        doc = json.loads((out / "annotations" / f"instances_{split}.json").read_text())
        cat_ids = [c["id"] for c in doc["categories"]]
        assert cat_ids != list(range(1, len(cat_ids) + 1))  # non-contiguous on purpose
        cat_name = {c["id"]: c["name"] for c in doc["categories"]}
        assert sorted(cat_name.values()) == sorted(names[1:])
        file_names = [im["file_name"] for im in doc["images"]]
        assert file_names == [f"{x}.jpg" for x in _ids(root, split)]
        seen_images += file_names
        by_image = {im["id"]: im for im in doc["images"]}
        for im in doc["images"]:
            index = int(im["file_name"][len("shapes_"):-len(".jpg")])
            s = render_scene(4, index, boundary=True)
            anns = [a for a in doc["annotations"] if a["image_id"] == im["id"]]
            assert len(anns) == len(s.instance_classes)
            for k, a in enumerate(anns, start=1):
                m = s.visible_instances == k
                assert cat_name[a["category_id"]] == names[s.instance_classes[k - 1]]
                assert a["iscrowd"] == 0 and a["area"] == m.sum()
                assert all(len(p) >= 6 and len(p) % 2 == 0 for p in a["segmentation"])
                h, w = by_image[a["image_id"]]["height"], by_image[a["image_id"]]["width"]
                rle = pycocotools_mask.merge(pycocotools_mask.frPyObjects(a["segmentation"], h, w))
                d = pycocotools_mask.decode(rle).astype(bool)
                assert (d & m).sum() / (d | m).sum() > 0.8
                rows, cols = np.nonzero(m)
                assert a["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1,
                                     rows.max() - rows.min() + 1]
    assert sorted(seen_images) == [f"shapes_{i:06d}.jpg" for i in range(12)]


def test_same_seed_writes_identical_files(tmp_path, written):
    out, _, _ = written
    again = write_shapes(tmp_path, 12, seed=4, boundary=True)
    for sub, pattern in (("SegmentationClass", "*.png"), ("SegmentationObject", "*.png"),
                         ("Annotations", "*.xml")):
        for f in (again / sub).glob(pattern):
            assert f.read_bytes() == (out / "VOCdevkit" / "VOC2012" / sub / f.name).read_bytes()
    for split in ("train", "val"):
        name = f"annotations/instances_{split}.json"
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()
