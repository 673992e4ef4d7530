"""Tests for the COCO instances reader: the real coco-tiny splits against
pycocotools' own decoding, crowd and overlap rules on generated JSON, labelme's
COCO export, and one test per kind of bad record."""

from __future__ import annotations

import contextlib
import io
import json
import pickle

import numpy as np
import pytest

from weaklabels.errors import CorruptFileError, MissingFileError, SourceError, UnsafePathError
from weaklabels.sources import read_coco
from weaklabels.types import IGNORE

mask_api = pytest.importorskip("pycocotools.mask")


def _split(coco_tiny, split):
    return coco_tiny / "annotations" / f"instances_{split}2017.json", coco_tiny / f"{split}2017"


def _square(x0, y0, x1, y1) -> list[float]:
    """A polygon (pixel-edge coordinates) covering columns x0..x1-1 and rows y0..y1-1."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _ann(id_, image_id, category_id, seg, bbox=(0, 0, 1, 1), iscrowd=0):
    return {"id": id_, "image_id": image_id, "category_id": category_id, "segmentation": seg,
            "bbox": list(bbox), "iscrowd": iscrowd, "area": 1.0}


def _image(id_=1, w=12, h=10, name=None):
    return {"id": id_, "file_name": name or f"{id_:04d}.jpg", "width": w, "height": h}


def _rle(m: np.ndarray) -> dict:
    rle = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


# --------------------------------------------------------------------------- real coco-tiny


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_tiny_index(coco_tiny, split):
    src = read_coco(*_split(coco_tiny, split))
    assert len(src) == 80
    assert src.split == f"{split}2017"
    assert src.load_errors() == []
    voc = src.vocabulary
    assert len(voc) == 81 and voc.background == 0 and voc.names[0] == "background"
    assert voc.source_ids[0] is None
    ids = list(voc.source_ids[1:])
    assert ids == sorted(ids) and ids[0] == 1 and ids[-1] == 90 and len(set(ids)) == 80
    assert voc.from_source_id(1) == 1 and voc.names[1] == "person"
    assert voc.from_source_id(90) == 80 and voc.names[80] == "toothbrush"


def test_coco_tiny_items_match_pycocotools(coco_tiny):
    from pycocotools.coco import COCO

    ann_path, img_root = _split(coco_tiny, "val")
    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCO(str(ann_path))
    src = read_coco(ann_path, img_root)
    for i in range(0, 80, 11):
        s = src[i]
        im = ref.imgs[int(s.image_id)]
        assert s.size == (im["height"], im["width"])
        assert s.image.path == str(img_root / im["file_name"])
        anns = sorted(ref.imgToAnns[int(s.image_id)], key=lambda a: a["id"])
        assert len(s.instances) == len(anns)
        for a, m, c, crowd in zip(anns, s.instances.masks, s.instances.classes, s.instances.crowd):
            assert np.array_equal(m, ref.annToMask(a).astype(bool)), a["id"]
            assert src.vocabulary.source_ids[c] == a["category_id"]
            assert crowd == bool(a["iscrowd"])


def test_coco_tiny_crowd_is_ignore(coco_tiny):
    ann_path, _ = _split(coco_tiny, "val")
    doc = json.loads(ann_path.read_text())
    crowd_images = sorted({a["image_id"] for a in doc["annotations"] if a["iscrowd"]})
    assert crowd_images
    src = read_coco(ann_path)
    index = {int(src.image_id(i)): i for i in range(len(src))}
    for image_id in crowd_images[:4]:
        s = src[index[image_id]]
        assert s.image is None
        inst = s.instances
        crowd_px = inst.masks[inst.crowd].any(0)
        solid_px = inst.masks[~inst.crowd].any(0)
        sem = s.semantic.array
        assert (sem[crowd_px & ~solid_px] == IGNORE).all()
        assert (sem[solid_px] != IGNORE).all()
        assert (sem[~crowd_px & ~solid_px] == 0).all()
        assert s.boxes.crowd.tolist() == inst.crowd.tolist()
        assert inst.crowd.any()


def test_coco_tiny_boxes(coco_tiny):
    ann_path, _ = _split(coco_tiny, "train")
    doc = json.loads(ann_path.read_text())
    src = read_coco(ann_path)
    s = src[0]
    anns = sorted((a for a in doc["annotations"] if a["image_id"] == int(s.image_id)), key=lambda a: a["id"])
    for a, box in zip(anns, s.boxes.xyxy):
        x, y, w, h = a["bbox"]
        assert np.allclose(box, [x, y, min(x + w, s.width), min(y + h, s.height)])


def test_labelme_coco(labelme_coco):
    src = read_coco(labelme_coco / "annotations.json", labelme_coco)
    assert len(src) == 3 and src.load_errors() == []
    assert src.vocabulary.names[:3] == ("background", "_background_", "aeroplane")
    total = 0
    for i in range(3):
        s = src[i]
        assert s.image.path.endswith(".jpg") and len(s.instances) > 0
        assert set(np.unique(s.semantic.array)) <= set(range(len(src.vocabulary)))
        total += len(s.instances)
    assert total == 12


def test_source_pickles(make_coco):
    path, root = make_coco([_image()], [_ann(1, 1, 3, [_square(1, 1, 5, 5)])])
    src = read_coco(path, root)
    back = pickle.loads(pickle.dumps(src))
    assert back[0].semantic == src[0].semantic


# --------------------------------------------------------------------------- rules on generated JSON


@pytest.mark.parametrize("big_id,small_id", [(1, 2), (2, 1)], ids=["big-first", "small-first"])
def test_smaller_instance_painted_on_top(make_coco, big_id, small_id):
    anns = [_ann(big_id, 1, 3, [_square(0, 0, 10, 8)]),       # cat, 80 px
            _ann(small_id, 1, 7, [_square(2, 2, 5, 5)])]      # dog, 9 px, lies on the cat
    path, root = make_coco([_image()], anns)
    s = read_coco(path, root)[0]
    voc = s.vocabulary
    cat, dog = voc.from_source_id(3), voc.from_source_id(7)
    sem = s.semantic.array
    assert (sem[2:5, 2:5] == dog).all()
    assert (sem[:8, :10] == cat).sum() == 80 - 9
    assert (sem[8:, :] == 0).all() and (sem[:, 10:] == 0).all()


def test_crowd_rle_is_ignore_except_under_instances(make_coco):
    crowd = np.zeros((10, 12), bool)
    crowd[0:6, 0:8] = True
    anns = [_ann(1, 1, 3, _rle(crowd), bbox=(0, 0, 8, 6), iscrowd=1),
            _ann(2, 1, 7, [_square(4, 3, 10, 9)], bbox=(4, 3, 6, 6))]
    path, root = make_coco([_image()], anns)
    s = read_coco(path, root)[0]
    dog = s.vocabulary.from_source_id(7)
    sem = s.semantic.array
    solid = np.zeros_like(crowd)
    solid[3:9, 4:10] = True
    assert (sem[crowd & ~solid] == IGNORE).all()
    assert (sem[solid] == dog).all()
    assert (sem[~crowd & ~solid] == 0).all()
    assert s.instances.crowd.tolist() == [True, False]
    assert s.boxes.crowd.tolist() == [True, False]
    assert np.array_equal(s.instances.masks[0], crowd)


def test_uncompressed_rle(make_coco):
    m = np.zeros((10, 12), bool)
    m[2:4, 3:7] = True
    # column-major run lengths of the mask above
    flat = m.ravel(order="F").astype(int)
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    path, root = make_coco([_image()], [_ann(1, 1, 3, {"size": [10, 12], "counts": runs}, iscrowd=1)])
    s = read_coco(path, root)[0]
    assert np.array_equal(s.instances.masks[0], m)


def test_multi_part_polygons_are_merged(make_coco):
    seg = [_square(0, 0, 2, 2), _square(6, 6, 9, 9)]
    path, root = make_coco([_image()], [_ann(1, 1, 3, seg)])
    m = read_coco(path, root)[0].instances.masks[0]
    assert m.sum() == 4 + 9 and m[0, 0] and m[8, 8]


def test_bbox_spilling_past_image_is_clipped(make_coco):
    path, root = make_coco([_image()], [_ann(1, 1, 3, [_square(8, 6, 12, 10)], bbox=(8, 6, 4.5, 4.25))])
    assert read_coco(path, root)[0].boxes.xyxy.tolist() == [[8, 6, 12, 10]]


def test_masks_only(make_coco):
    path, _ = make_coco([_image(2)], [_ann(1, 2, 90, [_square(1, 1, 4, 4)])])
    s = read_coco(path)[0]
    assert s.image is None and s.instances.classes.tolist() == [3]
    assert s.semantic.array.sum() == 9 * 3


# COCO 2017 train has about 1,000 images without any annotation; they must read as all background.
def test_image_without_annotations(make_coco):
    path, root = make_coco([_image(1), _image(2)], [_ann(1, 2, 90, [_square(1, 1, 4, 4)])])
    empty = read_coco(path, root)[0]
    assert len(empty.instances) == 0 and empty.instances.masks.shape == (0, 10, 12)
    assert (empty.semantic.array == 0).all() and len(empty.boxes) == 0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("poly,count", [([1.0, 1.0], 2), ([0, 0, 5, 0, 5, 5, 0], 7), ([1, 1, 5, 5], 4)],
                         ids=["one-point", "odd-count", "four-numbers"])
def test_bad_polygons(make_coco, poly, count):
    good = _square(0, 0, 3, 3)
    path, root = make_coco([_image(5)], [_ann(17, 5, 3, [good, poly])])
    with pytest.raises(SourceError, match=rf"image '5' annotation 17: polygon 1 has {count} coordinates"):
        read_coco(path, root)[0]


@pytest.mark.parametrize("seg", [[], "text", [[0, 0, 4, 0, "x", 4]], {"size": [9, 12], "counts": "0"}],
                         ids=["empty", "string", "non-numeric", "rle-size"])
def test_bad_segmentations(make_coco, seg):
    path, root = make_coco([_image(5)], [_ann(17, 5, 3, seg)])
    with pytest.raises(SourceError, match="image '5' annotation 17"):
        read_coco(path, root)[0]


def test_unknown_category(make_coco):
    path, root = make_coco([_image(5)], [_ann(17, 5, 4, [_square(0, 0, 3, 3)])])
    with pytest.raises(SourceError, match="image '5' annotation 17: category_id 4"):
        read_coco(path, root)[0]


def test_annotation_for_unknown_image_is_a_load_error(make_coco):
    path, root = make_coco([_image(5)], [_ann(17, 5, 3, [_square(0, 0, 3, 3)]),
                                         _ann(18, 999, 3, [_square(0, 0, 3, 3)])])
    src = read_coco(path, root)
    errors = src.load_errors()
    assert len(errors) == 1
    record, message = errors[0]
    assert record == "annotation 18" and "999" in message and str(path) in message
    assert len(src[0].instances) == 1


def test_missing_image_file(make_coco):
    path, root = make_coco([_image(5, name="gone.jpg")], [], image_files={"gone.jpg": None})
    with pytest.raises(MissingFileError, match=r"image '5'.*gone\.jpg"):
        read_coco(path, root)[0]


@pytest.mark.parametrize("name", ["../x.jpg", "sub/../../x.jpg", "/etc/hostname"])
def test_file_name_escaping_root(make_coco, name):
    path, root = make_coco([_image(5, name=name)], [])
    with pytest.raises(UnsafePathError, match="image '5'"):
        read_coco(path, root)[0]


def test_image_size_disagrees_with_json(make_coco, kit):
    path, root = make_coco([_image(5, w=12, h=10)], [], image_files={"0005.jpg": kit.jpeg(10, 13)})
    with pytest.raises(SourceError, match=r"image '5'.*0005\.jpg is 13x10.*12x10"):
        read_coco(path, root)[0]


def test_image_size_message_says_the_annotations_give_the_expected_size(make_coco, kit):
    path, root = make_coco([_image(5, w=12, h=10)], [], image_files={"0005.jpg": kit.jpeg(10, 13)})
    with pytest.raises(SourceError) as err:
        read_coco(path, root)[0]
    assert str(err.value).endswith("0005.jpg is 13x10; the annotations say 12x10")
    assert "the image is" not in str(err.value)


def test_truncated_image(make_coco, kit):
    data = kit.jpeg(10, 12)
    path, root = make_coco([_image(5)], [], image_files={"0005.jpg": data[: len(data) // 2]})
    with pytest.raises(CorruptFileError, match="image '5'"):
        read_coco(path, root)[0]


def test_decompression_bomb_image(make_coco, kit):
    path, root = make_coco([_image(5, name="bomb.png")], [], image_files={"bomb.png": kit.bomb_png(20_000, 20_000)})
    with pytest.raises(CorruptFileError, match="image '5'.*decompression-bomb"):
        read_coco(path, root)[0]


def test_bad_annotation_files(tmp_path):
    with pytest.raises(MissingFileError, match="none.json"):
        read_coco(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="bad.json"):
        read_coco(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text('{"images": []}')
    with pytest.raises(CorruptFileError, match=r"partial.json.*'annotations', 'categories'"):
        read_coco(tmp_path / "partial.json")


def test_category_named_background_is_refused(make_coco):
    path, _ = make_coco([_image()], [], categories=[{"id": 1, "name": "background"}])
    with pytest.raises(SourceError, match="background"):
        read_coco(path)


@pytest.mark.parametrize("images, categories, message", [
    ([{"file_name": "a.jpg", "width": 4, "height": 4}], None, r"images\[0\] has id=None; expected an integer"),
    ([_image(1), {**_image(2), "id": "2"}], None, r"images\[1\] has id='2'; expected an integer"),
    ([_image(1), "not a record"], None, r"images\[1\] is str; expected an object"),
    ([_image(1), _image(1)], None, r"images\[1\] repeats id 1"),
    ([_image(1)], [{"id": 3}], r"categories\[0\] has name=None; expected a string"),
    ([_image(1)], [{"id": True, "name": "cat"}], r"categories\[0\] has id=True; expected an integer"),
    ([_image(1)], [{"id": 3, "name": "cat"}, {"id": 4, "name": "cat"}], r"names \['cat'\] occur more than once"),
])
def test_malformed_records_name_the_file_and_record(tmp_path, images, categories, message):
    path = tmp_path / "instances_bad.json"
    path.write_text(json.dumps({"images": images, "annotations": [],
                                "categories": categories or [{"id": 3, "name": "cat"}]}))
    with pytest.raises(SourceError, match=message) as err:
        read_coco(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- detection-only files


def _det(id_, image_id, category_id, bbox, iscrowd=0):
    return {"id": id_, "image_id": image_id, "category_id": category_id, "bbox": list(bbox), "iscrowd": iscrowd}


def test_detection_only_file_reads_its_boxes_without_masks(make_coco):
    """bbox and no segmentation (auto), as VOC's masks='none' reads XML boxes: boxes, crowd ones as
    ignore boxes, no mask; the boxes protocol then gives them as they are, tags from them."""
    from weaklabels.synth import synthesize

    path, root = make_coco([_image(1), _image(2)], [_det(1, 1, 7, (1.5, 2, 3, 4)), _det(2, 1, 3, (0, 0, 12, 10), 1),
                                                    _det(3, 2, 90, (2, 2, 2, 2))])
    src = read_coco(path, root)
    assert not src.with_masks and src.describe()["masks"] == "none"
    s = src[0]
    assert s.semantic is None and s.instances is None and s.image is not None
    assert s.boxes.xyxy.tolist() == [[1.5, 2, 4.5, 6], [0, 0, 12, 10]]
    assert s.boxes.classes.tolist() == [2, 1] and s.boxes.crowd.tolist() == [False, True]
    weak = synthesize(s, "boxes")
    assert weak.boxes.xyxy.tolist() == s.boxes.xyxy.tolist() and weak.tags.classes.tolist() == [2]


def test_masks_none_ignores_segmentations(make_coco):
    path, root = make_coco([_image(1)], [_ann(1, 1, 3, [_square(0, 0, 3, 3)], bbox=(0, 0, 3, 3)),
                                         _ann(2, 1, 7, None, bbox=(4, 4, 2, 2))])
    with pytest.raises(SourceError, match="annotation 2: no segmentation.*masks='none'"):
        read_coco(path, root)[0]  # some annotations have masks: auto decodes them, and this one has none
    s = read_coco(path, root, masks="none")[0]
    assert s.semantic is None and s.boxes.classes.tolist() == [1, 2]
    assert "masks" not in read_coco(path, root).describe()  # mask conversions keep their fingerprint
    with pytest.raises(SourceError, match="masks='SegmentationClass'; expected auto or none"):
        read_coco(path, root, masks="SegmentationClass")
