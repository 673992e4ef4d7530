"""Tests for the typed values: Vocabulary, the annotation types and Sample.

Properties: every invalid value is refused with a ``SchemaError`` (also a
``ValueError``) whose message names the field or the image; arrays are copied
and read-only; VOC / COCO box conversions follow the pixel-edge convention; and
``Sample`` survives a JSON round trip unchanged.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weaklabels.errors import SchemaError, WeaklabelsError
from weaklabels.types import (
    IGNORE, SCHEMA_VERSION, UNLABELLED, VOC_CLASSES, Boxes, ImageRef, ImageTags, InstanceMasks,
    Points, Sample, Scribbles, SemanticMask, Vocabulary, tags_of,
)

VOC = Vocabulary.voc()


def _raises(match: str):
    """``SchemaError`` whose message matches ``match``; checked to be a ValueError too."""
    return pytest.raises(SchemaError, match=match)


# --------------------------------------------------------------------------- errors


def test_schema_error_is_a_value_error_and_a_weaklabels_error():
    assert issubclass(SchemaError, ValueError)
    assert issubclass(SchemaError, WeaklabelsError)
    with pytest.raises(ValueError):
        Vocabulary(())


# --------------------------------------------------------------------------- vocabulary


@pytest.mark.parametrize("kwargs, field", [
    (dict(names=()), "names"),
    (dict(names=("a", "")), "names"),
    (dict(names=("a", "  ")), "names"),
    (dict(names=("a", 3)), "names"),
    (dict(names=("a", "b", "a")), "names"),
    (dict(names=("a", "b"), ignore=7, unlabelled=7), "ignore and unlabelled"),
    (dict(names=("a", "b", "c"), ignore=2), "ignore"),
    (dict(names=("a", "b", "c"), unlabelled=0), "unlabelled"),
    (dict(names=("a", "b"), ignore=256), "ignore"),
    (dict(names=("a", "b"), unlabelled=-1), "unlabelled"),
    (dict(names=("a", "b"), background=2), "background"),
    (dict(names=("a", "b"), background=-1), "background"),
    (dict(names=("a", "b"), source_ids=(1,)), "source ids"),
    (dict(names=("a", "b"), source_ids=(1, 2, 3)), "source ids"),
    (dict(names=("a", "b"), source_ids=(4, 4)), "source ids"),
], ids=["empty", "blank", "whitespace", "not-str", "duplicate", "ignore==unlabelled",
        "ignore-collides", "unlabelled-collides", "ignore-256", "unlabelled-negative",
        "background-high", "background-negative", "too-few-source-ids", "too-many-source-ids",
        "duplicate-source-ids"])
def test_vocabulary_refuses_invalid_values_naming_the_field(kwargs, field):
    with pytest.raises(SchemaError) as info:
        Vocabulary(**kwargs)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert msg.startswith("Vocabulary")
    assert field in msg


def test_vocabulary_collision_message_names_the_class():
    with _raises(r"ignore=1 collides with class index 1 \('b'\)"):
        Vocabulary(("a", "b", "c"), ignore=1)


def test_duplicate_names_are_listed():
    with _raises(r"\['cat'\]"):
        Vocabulary(("background", "cat", "dog", "cat"))


def test_voc_vocabulary():
    voc = Vocabulary.voc()
    assert voc.names == VOC_CLASSES
    assert len(voc) == 21
    assert voc.names[0] == "background" and voc.background == 0
    assert voc.names[15] == "person" and voc.index("person") == 15
    assert voc.ignore == IGNORE == 255
    assert voc.unlabelled == UNLABELLED == 254
    assert voc.foreground == tuple(range(1, 21))
    assert all(voc.from_source_id(i) == i for i in range(21))
    assert voc.is_valid_label(20) and voc.is_valid_label(254) and voc.is_valid_label(255)
    assert not voc.is_valid_label(21) and not voc.is_valid_label(253)
    palette = voc.palette()
    assert len(palette) == 768
    assert palette[:6] == (0, 0, 0, 128, 0, 0)  # background black, aeroplane dark red
    assert palette[255 * 3:] == (224, 224, 192)  # VOC's cream void colour


def test_vocabulary_without_background_has_all_classes_foreground():
    voc = Vocabulary(("a", "b", "c"), background=None)
    assert voc.foreground == (0, 1, 2)


@pytest.mark.parametrize("name", ["background", "_background_", "__background__"])
def test_from_names_is_the_one_rule_for_background(name):
    voc = Vocabulary.from_names([name, "cat", "dog"])
    assert voc.names == ("background", "cat", "dog") and voc.background == 0
    assert Vocabulary.from_names(["cat", name]).background == 1
    assert Vocabulary.from_names(["bg", "cat"]).background is None  # no guessing beyond the known names
    with _raises("duplicate class names"):
        Vocabulary.from_names(["background", "_background_"])


def test_from_source_id_maps_non_contiguous_ids_and_lists_known_ids():
    voc = Vocabulary(("background", "person", "car"), source_ids=(None, 1, 3))
    assert voc.from_source_id(1) == 1
    assert voc.from_source_id(3) == 2
    with pytest.raises(SchemaError) as info:
        voc.from_source_id(2)
    msg = str(info.value)
    assert "2" in msg and "[1, 3]" in msg


def test_from_source_id_defaults_to_indices():
    voc = Vocabulary(("a", "b"))
    assert voc.from_source_id(1) == 1
    with _raises(r"known ids: \[0, 1\]"):
        voc.from_source_id(5)


def test_index_of_unknown_name_lists_valid_names():
    with pytest.raises(SchemaError) as info:
        VOC.index("doggo")
    msg = str(info.value)
    assert "'doggo'" in msg
    for name in VOC_CLASSES:
        assert name in msg


def test_vocabulary_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        VOC.ignore = 3  # type: ignore[misc]


def test_vocabulary_json_round_trip(tmp_path):
    voc = Vocabulary(("bg", "a", "b"), background=None, ignore=250, unlabelled=200,
                     source_ids=(None, 7, 9))
    assert Vocabulary.from_dict(json.loads(json.dumps(voc.to_dict()))) == voc
    voc.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == voc


def test_vocabulary_json_wrong_version_and_missing_key():
    d = VOC.to_dict()
    with _raises("schema_version"):
        Vocabulary.from_dict({**d, "schema_version": SCHEMA_VERSION + 1})
    del d["names"]
    with _raises("names"):
        Vocabulary.from_dict(d)


def test_vocabulary_load_names_the_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with _raises("broken.json"):
        Vocabulary.load(p)


# --------------------------------------------------------------------------- annotations


@pytest.mark.parametrize("xyxy, classes, match", [
    ([[3, 0, 3, 5]], [1], "x0 < x1"),                 # zero width
    ([[4, 0, 3, 5]], [1], "x0 < x1"),                 # x0 > x1
    ([[0, 5, 3, 5]], [1], "y0 < y1"),                 # zero height
    ([[0, 0, np.nan, 5]], [1], "NaN"),
    ([[0, 0, np.inf, 5]], [1], "infinite"),
    ([[0, 0, 3]], [1], r"shape \(1, 3\)"),
    ([0, 0, 3, 5], [1], r"shape \(4,\)"),            # a flat box is not guessed to be (1, 4)
    ([[0, 0, 3, 5], [1, 1, 2, 2]], [1], "1 values for 2 items"),
    ([[0, 0, 3, 5]], [-1], "negative class"),
    ([["a", 0, 3, 5]], [1], "cannot be read"),
])
def test_boxes_refuse_invalid_values(xyxy, classes, match):
    with _raises(match):
        Boxes(xyxy, classes, record="image 'x'")


def test_boxes_error_names_the_record():
    with _raises(r"^image '2007_000032': box 1 "):
        Boxes([[0, 0, 1, 1], [2, 2, 1, 3]], [1, 1], record="image '2007_000032'")


def test_box_flag_length_must_match():
    with _raises("box difficult: 1 values for 2 items"):
        Boxes([[0, 0, 1, 1], [0, 0, 2, 2]], [1, 2], difficult=[True])


def test_boxes_defaults_and_empty():
    b = Boxes([[0, 0, 1, 1]], [3])
    assert b.xyxy.dtype == np.float64 and b.classes.dtype == np.int64
    for flag in (b.difficult, b.truncated, b.crowd):
        assert flag.dtype == bool and flag.tolist() == [False]
    empty = Boxes([], [])
    assert len(empty) == 0 and empty.xyxy.shape == (0, 4) and empty.classes.shape == (0,)


def test_from_voc_inclusive_single_pixel_is_column_zero():
    # VOC xmin=1, xmax=1 is the single (1-based) pixel 1 = 0-based column 0 = [0, 1).
    b = Boxes.from_voc_inclusive([[1, 1, 1, 1]], [5])
    assert b.xyxy.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    b = Boxes.from_voc_inclusive([[48, 240, 195, 371], [8, 12, 352, 498]], [12, 15])
    assert b.xyxy.tolist() == [[47, 239, 195, 371], [7, 11, 352, 498]]
    # the covered width in pixels is xmax - xmin + 1
    assert (b.xyxy[:, 2] - b.xyxy[:, 0]).tolist() == [195 - 48 + 1, 352 - 8 + 1]
    assert b.classes.tolist() == [12, 15]


def test_from_voc_inclusive_passes_flags_and_validates():
    b = Boxes.from_voc_inclusive([[1, 2, 3, 4]], [1], difficult=[True])
    assert b.difficult.tolist() == [True]
    with _raises("x0 < x1"):
        Boxes.from_voc_inclusive([[5, 1, 3, 4]], [1])


def test_from_xywh():
    b = Boxes.from_xywh([[2.5, 3, 4, 5], [0, 0, 1, 1]], [1, 2])
    assert b.xyxy.tolist() == [[2.5, 3, 6.5, 8], [0, 0, 1, 1]]
    with _raises("x0 < x1"):
        Boxes.from_xywh([[2, 3, 0, 5]], [1])


@pytest.mark.parametrize("xy, classes, match", [
    ([[1, 2, 3]], [1], r"shape \(1, 3\)"),
    ([[1, np.nan]], [1], "NaN"),
    ([[1, 2]], [1, 2], "2 values for 1 items"),
    ([[1, 2]], [-3], "negative class"),
])
def test_points_refuse_invalid_values(xy, classes, match):
    with _raises(match):
        Points(xy, classes)


@pytest.mark.parametrize("lines, classes, widths, match", [
    ([np.zeros((0, 2))], [1], None, "scribble 0: no vertices"),
    ([[[1, 1]], []], [1, 2], None, "scribble 1: no vertices"),
    ([[[1, 1], [2, 2]]], [1], [0.0], "widths"),
    ([[[1, 1], [2, 2]]], [1], [-2.0], "widths"),
    ([[[1, 1], [2, 2]]], [1], [1.0, 2.0], "widths"),
    ([[[1, 1], [2, np.nan]]], [1], None, "NaN"),
    ([[[1, 1, 1]]], [1], None, r"shape \(1, 3\)"),
    ([[[1, 1]]], [1, 2], None, "2 values for 1 items"),
    ([[[1, 1]]], [-1], None, "negative class"),
])
def test_scribbles_refuse_invalid_values(lines, classes, widths, match):
    with _raises(match):
        Scribbles(tuple(np.asarray(x, float) for x in lines), classes, widths=widths)


def test_scribble_default_width_and_single_vertex():
    s = Scribbles((np.array([[1.0, 2.0]]), np.array([[0, 0], [3, 3]])), [1, 2])
    assert s.widths.tolist() == [3.0, 3.0]
    assert len(s) == 2 and s.lines[0].shape == (1, 2)


def test_image_tags_are_sorted_unique_and_non_negative():
    t = ImageTags([5, 1, 5, 3])
    assert t.classes.tolist() == [1, 3, 5] and len(t) == 3
    with _raises("negative class"):
        ImageTags([1, -2])
    assert tags_of([0, 4, 0, 2, 4], VOC).classes.tolist() == [2, 4]


def test_masks_refuse_wrong_shapes():
    with _raises(r"expected \(H, W\)"):
        SemanticMask(np.zeros((2, 3, 4), np.uint8))
    with _raises("outside 0..255"):
        SemanticMask(np.full((2, 2), 300, np.int64))
    with _raises(r"expected \(N, H, W\)"):
        InstanceMasks(np.zeros((3, 4), bool), [1])
    with _raises("1 values for 2 items"):
        InstanceMasks(np.zeros((2, 3, 4), bool), [1])


def _one_of_each():
    line = np.array([[1.0, 1.0], [2.0, 3.0]])
    return {
        "tags": (ImageTags([1, 2]), "classes"),
        "boxes": (Boxes([[0, 0, 2, 2]], [1]), "xyxy"),
        "box classes": (Boxes([[0, 0, 2, 2]], [1]), "classes"),
        "box crowd": (Boxes([[0, 0, 2, 2]], [1]), "crowd"),
        "points": (Points([[0.5, 0.5]], [1]), "xy"),
        "scribble widths": (Scribbles((line,), [1]), "widths"),
        "semantic": (SemanticMask(np.zeros((3, 3), np.uint8)), "array"),
        "instances": (InstanceMasks(np.zeros((1, 3, 3), bool), [1]), "masks"),
    }


@pytest.mark.parametrize("name", list(_one_of_each()))
def test_annotation_arrays_are_read_only(name):
    ann, attr = _one_of_each()[name]
    arr = getattr(ann, attr)
    with pytest.raises(ValueError, match="read-only"):
        arr[(0,) * arr.ndim] = arr[(0,) * arr.ndim]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(ann, attr, arr)


def test_scribble_lines_are_read_only():
    s = Scribbles((np.array([[1.0, 1.0], [2.0, 3.0]]),), [1])
    with pytest.raises(ValueError, match="read-only"):
        s.lines[0][0, 0] = 5.0


def test_annotations_copy_their_inputs():
    xyxy = np.array([[0.0, 0.0, 2.0, 2.0]])
    mask = np.zeros((3, 3), np.uint8)
    b, m = Boxes(xyxy, [1]), SemanticMask(mask)
    xyxy[0, 0] = 1.0
    mask[0, 0] = 7
    assert b.xyxy[0, 0] == 0.0 and m.array[0, 0] == 0
    assert xyxy.flags.writeable and mask.flags.writeable  # the caller's arrays stay theirs


def test_annotation_equality_is_by_value():
    assert Boxes([[0, 0, 1, 1]], [1]) == Boxes(np.array([[0.0, 0, 1, 1]]), np.array([1]))
    assert Boxes([[0, 0, 1, 1]], [1]) != Boxes([[0, 0, 1, 2]], [1])
    assert Boxes([[0, 0, 1, 1]], [1]) != Boxes([[0, 0, 1, 1]], [1], crowd=[True])
    s1 = Scribbles((np.array([[1.0, 1.0]]),), [1])
    assert s1 == Scribbles((np.array([[1.0, 1.0]]),), [1])
    assert s1 != Scribbles((np.array([[1.0, 1.5]]),), [1])


def test_annotation_equality_ignores_the_record():
    assert Boxes([[0, 0, 1, 1]], [1], record="image 'a'") == Boxes([[0, 0, 1, 1]], [1])


# --------------------------------------------------------------------------- sample


def _sample(**anns) -> Sample:
    return Sample("img_7", 10, 12, VOC, **anns)


@pytest.mark.parametrize("anns, match", [
    (dict(boxes=Boxes([[0, 0, 12.5, 4]], [1])), "box 0 .* leaves the 12x10 image"),
    (dict(boxes=Boxes([[-0.5, 0, 3, 4]], [1])), "box 0"),
    (dict(boxes=Boxes([[0, 0, 3, 4], [0, 0, 3, 10.1]], [1, 2])), "box 1"),
    (dict(points=Points([[12.0, 3.0]], [1])), "point 0 .* outside the 12x10 image"),
    (dict(points=Points([[3.0, 10.0]], [1])), "point 0"),
    (dict(points=Points([[-0.1, 3.0]], [1])), "point 0"),
    (dict(scribbles=Scribbles((np.array([[1, 1], [13, 2]], float),), [1])), "scribble 0 leaves"),
    (dict(scribbles=Scribbles((np.array([[1, -1]], float),), [1])), "scribble 0 leaves"),
    (dict(tags=ImageTags([3, 21])), "tags: class index 21 outside the vocabulary of 21"),
    (dict(boxes=Boxes([[0, 0, 1, 1]], [25])), "boxes: class index 25"),
    (dict(points=Points([[1, 1]], [21])), "points: class index 21"),
    (dict(scribbles=Scribbles((np.array([[1.0, 1.0]]),), [30])), "scribbles: class index 30"),
    (dict(instances=InstanceMasks(np.zeros((1, 10, 12), bool), [21])), "instances: class index 21"),
    (dict(tags=ImageTags([0, 3])), "background"),
    (dict(semantic=SemanticMask(np.zeros((12, 10), np.uint8))), "semantic mask is 10x12; image is 12x10"),
    (dict(instances=InstanceMasks(np.zeros((1, 10, 11), bool), [1])), "instance masks are 11x10"),
    (dict(boxes=Points([[1, 1]], [1])), "boxes: got Points"),
], ids=["box-right", "box-left", "second-box", "point-x=W", "point-y=H", "point-negative",
        "scribble-right", "scribble-above", "tag-class", "box-class", "point-class",
        "scribble-class", "instance-class", "background-tag", "semantic-size", "instance-size",
        "wrong-type"])
def test_sample_refuses_annotations_outside_image_or_vocabulary(anns, match):
    with pytest.raises(SchemaError, match=match) as info:
        _sample(**anns)
    assert "'img_7'" in str(info.value)


@pytest.mark.parametrize("value", [21, 100, 254])
def test_sample_refuses_mask_values_outside_vocabulary(value):
    a = np.zeros((10, 12), np.uint8)
    a[3, 4] = value
    a[0, 0] = 255  # void is allowed
    with pytest.raises(SchemaError, match=rf"\[{value}\]") as info:
        _sample(semantic=SemanticMask(a))
    assert "'img_7'" in str(info.value)


def test_sample_accepts_edges_and_void():
    a = np.full((10, 12), 255, np.uint8)
    a[:5] = 20
    s = _sample(
        boxes=Boxes([[0, 0, 12, 10]], [0]),
        points=Points([[11.999, 9.999], [0, 0]], [1, 2]),
        scribbles=Scribbles((np.array([[0, 0], [12, 10]], float),), [3]),
        semantic=SemanticMask(a),
        tags=ImageTags([20]),
    )
    assert s.size == (10, 12)
    assert s.weak_kinds() == ("tags", "boxes", "points", "scribbles")


@pytest.mark.parametrize("kw, match", [
    (dict(image_id=""), "image_id"),
    (dict(height=0), "height=0"),
    (dict(width=-3), "width=-3"),
    (dict(width=2.5), "width=2.5"),
])
def test_sample_refuses_bad_id_and_size(kw, match):
    args = dict(image_id="a", height=4, width=4, vocabulary=VOC) | kw
    with _raises(match):
        Sample(**args)


def test_image_ref_needs_exactly_one_source():
    with _raises("exactly one"):
        ImageRef()
    with _raises("exactly one"):
        ImageRef(path="a.jpg", data=b"x")
    assert ImageRef(data=b"\x00\xff").read_bytes() == b"\x00\xff"


# --------------------------------------------------------------------------- JSON round trip


def _assert_same_annotation(a, b):
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        if f.name == "record":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, tuple):
            assert len(x) == len(y)
            for u, v in zip(x, y):
                assert u.dtype == v.dtype and u.shape == v.shape and np.array_equal(u, v)
        else:
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f.name


def assert_same_sample(a: Sample, b: Sample) -> None:
    """Field-by-field equality that looks through annotation ``record`` strings."""
    for f in ("image_id", "height", "width", "vocabulary", "image"):
        assert getattr(a, f) == getattr(b, f), f
    for f in ("tags", "boxes", "points", "scribbles", "semantic", "instances"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            _assert_same_annotation(x, y)


def _full_sample(image: ImageRef | None) -> Sample:
    h, w = 9, 13  # odd width: instance masks are bit-packed per row
    rng = np.random.default_rng(0)
    sem = rng.integers(0, 21, (h, w)).astype(np.uint8)
    sem[0] = 255
    inst = rng.random((3, h, w)) < 0.4
    return Sample(
        "2008_000123", h, w, VOC, image=image,
        tags=ImageTags([15, 3]),
        boxes=Boxes([[0.25, 0.5, 13, 9], [1, 2, 3, 4]], [15, 3], difficult=[False, True],
                    truncated=[True, False], crowd=[False, True]),
        points=Points([[0.1, 0.2], [12.999, 8.5]], [15, 0]),
        scribbles=Scribbles((np.array([[0.0, 0.0], [13.0, 9.0], [1 / 3, 2 / 3]]),
                             np.array([[4.5, 4.5]])), [3, 0], widths=[2.5, 1.0]),
        semantic=SemanticMask(sem),
        instances=InstanceMasks(inst, [15, 3, 3], crowd=[False, False, True]),
    )


@pytest.mark.parametrize("image", [None, ImageRef(path="JPEGImages/2008_000123.jpg"),
                                   ImageRef(data=bytes(range(256)))], ids=["none", "path", "bytes"])
def test_json_round_trip_with_every_annotation_kind(image):
    s = _full_sample(image)
    back = Sample.from_json(s.to_json())
    assert_same_sample(back, s)
    assert back.semantic.array[0].tolist() == [255] * 13
    assert back.instances.masks.shape == (3, 9, 13)
    # and it is stable: a second trip gives the same JSON text
    assert back.to_json() == s.to_json()


def test_json_round_trip_sample_equality():
    s = _full_sample(ImageRef(path="a.jpg"))
    assert Sample.from_json(s.to_json()) == s


@pytest.mark.parametrize("width", [1, 7, 8, 9, 17])
def test_instance_masks_round_trip_any_width(width):
    m = np.random.default_rng(width).random((2, 3, width)) < 0.5
    m[0, :, -1] = True  # the last column must survive the bit packing
    s = Sample("w", 3, width, VOC, instances=InstanceMasks(m, [1, 2]))
    back = Sample.from_json(s.to_json())
    assert np.array_equal(back.instances.masks, m)


def test_empty_annotations_round_trip():
    s = Sample("e", 4, 5, VOC, tags=ImageTags([]), boxes=Boxes([], []), points=Points([], []),
               scribbles=Scribbles((), []), instances=InstanceMasks(np.zeros((0, 4, 5), bool), []))
    assert_same_sample(Sample.from_json(s.to_json()), s)


def test_custom_vocabulary_round_trips_with_the_sample():
    voc = Vocabulary(("sky", "road"), background=None, ignore=250, unlabelled=200, source_ids=(10, 20))
    s = Sample("c", 2, 2, voc, semantic=SemanticMask(np.array([[0, 1], [250, 1]], np.uint8)))
    back = Sample.from_json(s.to_json())
    assert back.vocabulary == voc
    assert_same_sample(back, s)


def test_json_refuses_other_schema_versions():
    d = _full_sample(None).to_dict()
    for v in (SCHEMA_VERSION + 1, 0, None):
        with _raises("schema_version"):
            Sample.from_dict({**d, "schema_version": v})
    del d["height"]
    with _raises(r"image '2008_000123'.*'height'"):
        Sample.from_dict(d)


# Coordinates drawn as floats with hypothesis; the image is at most 40 x 40.
_coord = st.floats(0, 40, allow_nan=False, allow_infinity=False)


@st.composite
def _random_sample(draw) -> Sample:
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    n_cls = len(VOC)
    cls = st.integers(0, n_cls - 1)

    def interval(size):
        a = draw(st.floats(0, size, allow_nan=False))
        b = draw(st.floats(0, size, allow_nan=False).filter(lambda v: v != a))
        return min(a, b), max(a, b)

    nb = draw(st.integers(0, 4))
    boxes = []
    for _ in range(nb):
        (x0, x1), (y0, y1) = interval(w), interval(h)
        boxes.append((x0, y0, x1, y1))
    np_ = draw(st.integers(0, 4))
    pts = [(draw(st.floats(0, w, exclude_max=True)), draw(st.floats(0, h, exclude_max=True)))
           for _ in range(np_)]
    ns = draw(st.integers(0, 3))
    lines = tuple(np.array([(draw(st.floats(0, w)), draw(st.floats(0, h)))
                            for _ in range(draw(st.integers(1, 4)))]) for _ in range(ns))
    return Sample(
        draw(st.text("abcxyz_0123456789/-", min_size=1, max_size=12)), h, w, VOC,
        boxes=Boxes(np.asarray(boxes, float).reshape(-1, 4), [draw(cls) for _ in range(nb)],
                    crowd=[draw(st.booleans()) for _ in range(nb)]),
        points=Points(np.asarray(pts, float).reshape(-1, 2), [draw(cls) for _ in range(np_)]),
        scribbles=Scribbles(lines, [draw(cls) for _ in range(ns)],
                            widths=[draw(st.floats(0.01, 20)) for _ in range(ns)]),
        tags=ImageTags(draw(st.lists(st.integers(1, n_cls - 1), max_size=5))),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_random_sample())
def test_json_round_trip_property(sample):
    back = Sample.from_json(sample.to_json())
    assert_same_sample(back, sample)
    assert back.to_json() == sample.to_json()
