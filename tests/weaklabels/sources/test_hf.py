"""Tests for the HuggingFace datasets reader, on local datasets built here
(offline): save_to_disk, a parquet folder, one parquet file, an imagefolder,
and this library's own converted output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weaklabels.errors import CorruptFileError, MissingFileError, SchemaError, SourceError
from weaklabels.sources import read_hf, read_voc
from weaklabels.sources.bundled import bundled_voc

datasets = pytest.importorskip("datasets")

NAMES = ["background", "cat", "dog"]
H, W = 6, 8


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    """Keep the datasets cache inside the test's folder and never touch the network."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    datasets.disable_progress_bars()


def _masks(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``i``'s class map (cat square, dog square, a void pixel) and object map."""
    cls = np.zeros((H, W), np.uint8)
    obj = np.zeros((H, W), np.uint8)
    cls[1:3, 1 + i:4 + i] = 1
    obj[1:3, 1 + i:4 + i] = 1
    cls[4:6, 5:8] = 2
    obj[4:6, 5:8] = 2
    cls[0, 0] = 255
    return cls, obj


def _rows(kit, n: int = 3, classlabel: bool = True):
    rows = []
    for i in range(n):
        cls, obj = _masks(i)
        row = {"image_id": f"im{i}", "image": {"bytes": kit.jpeg(H, W, seed=i), "path": None},
               "annotation": {"bytes": kit.png(cls), "path": None},
               "objects": {"bytes": kit.png(obj), "path": None}}
        if classlabel:
            row["scene"] = i % 3
        rows.append(row)
    return rows


def _dataset(kit, n: int = 3, classlabel: bool = True, rows=None):
    features = {"image_id": datasets.Value("string"), "image": datasets.Image(),
                "annotation": datasets.Image(), "objects": datasets.Image()}
    if classlabel:
        features["scene"] = datasets.ClassLabel(names=NAMES)
    rows = rows or _rows(kit, n, classlabel)
    return datasets.Dataset.from_list(rows, features=datasets.Features(features))


def _check_rows(src, n: int = 3) -> None:
    assert len(src) == n
    for i in range(n):
        s = src[i]
        cls, _ = _masks(i)
        assert s.image_id == f"im{i}" and s.size == (H, W)
        assert s.image.data[:2] == b"\xff\xd8"     # the JPEG bytes themselves
        assert s.semantic.array.dtype == np.uint8 and np.array_equal(s.semantic.array, cls)


# --------------------------------------------------------------------------- layouts


def test_save_to_disk_dataset_dict(tmp_path, kit):
    out = tmp_path / "saved"
    datasets.DatasetDict({"train": _dataset(kit), "validation": _dataset(kit, 2)}).save_to_disk(str(out))
    src = read_hf(out, "train")
    assert src.vocabulary.names == tuple(NAMES) and src.vocabulary.background == 0
    _check_rows(src)
    _check_rows(read_hf(out, "validation"), 2)
    with pytest.raises(SourceError, match="'test'.*train, validation"):
        read_hf(out, "test")


def test_save_to_disk_single_dataset(tmp_path, kit):
    out = tmp_path / "saved"
    _dataset(kit).save_to_disk(str(out))
    _check_rows(read_hf(out, "train"))


def test_parquet_folder(tmp_path, kit):
    data = tmp_path / "pq" / "data"
    data.mkdir(parents=True)
    _dataset(kit).to_parquet(str(data / "train-00000-of-00001.parquet"))
    _dataset(kit, 2).to_parquet(str(data / "val-00000-of-00001.parquet"))
    _check_rows(read_hf(tmp_path / "pq", "train"))
    _check_rows(read_hf(tmp_path / "pq", "val"), 2)
    with pytest.raises(MissingFileError, match="'test'"):
        read_hf(tmp_path / "pq", "test")


def test_parquet_folder_without_split_names(tmp_path, kit):
    (tmp_path / "pq").mkdir()
    _dataset(kit).to_parquet(str(tmp_path / "pq" / "part-0.parquet"))
    _check_rows(read_hf(tmp_path / "pq", "train"))


def test_single_parquet_file(tmp_path, kit):
    path = tmp_path / "one.parquet"
    _dataset(kit).to_parquet(str(path))
    src = read_hf(path, "train")
    assert src.vocabulary.names == tuple(NAMES)
    _check_rows(src)


def test_imagefolder_with_metadata(tmp_path, kit):
    folder = tmp_path / "imf" / "train"
    folder.mkdir(parents=True)
    meta = []
    for i in range(3):
        cls, _ = _masks(i)
        (folder / f"im{i}.jpg").write_bytes(kit.jpeg(H, W, seed=i))
        (folder / f"im{i}_mask.png").write_bytes(kit.png(cls))
        meta.append({"file_name": f"im{i}.jpg", "mask_file_name": f"im{i}_mask.png", "image_id": f"im{i}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    with pytest.raises(SourceError, match="class_names"):
        read_hf(tmp_path / "imf", "train", mask_column="mask")
    src = read_hf(tmp_path / "imf", "train", mask_column="mask", class_names=NAMES)
    assert src.vocabulary.names == tuple(NAMES) and src.vocabulary.background == 0
    _check_rows(src)


# --------------------------------------------------------------------------- vocabulary and columns


def test_class_names_option_wins(tmp_path, kit):
    path = tmp_path / "one.parquet"
    _dataset(kit).to_parquet(str(path))
    src = read_hf(path, "train", class_names=["bg", "a", "b"])
    assert src.vocabulary.names == ("bg", "a", "b") and src.vocabulary.background is None


def test_no_class_names_asks_for_them(tmp_path, kit):
    path = tmp_path / "one.parquet"
    _dataset(kit, classlabel=False).to_parquet(str(path))
    with pytest.raises(SourceError, match="no ClassLabel feature.*class_names"):
        read_hf(path, "train")


def test_several_classlabels_need_a_choice(tmp_path, kit):
    ds = _dataset(kit).add_column("other", [0, 1, 0]).cast_column("other", datasets.ClassLabel(names=["x", "y"]))
    path = tmp_path / "one.parquet"
    ds.to_parquet(str(path))
    with pytest.raises(SourceError, match="several ClassLabel columns: scene, other"):
        read_hf(path, "train")
    assert read_hf(path, "train", classes_column="other").vocabulary.names == ("x", "y")
    with pytest.raises(SourceError, match="'image_id' is not a ClassLabel.*scene, other"):
        read_hf(path, "train", classes_column="image_id")


@pytest.mark.parametrize("option", ["image_column", "mask_column", "instance_column", "id_column"])
def test_unknown_column_lists_columns(tmp_path, kit, option):
    path = tmp_path / "one.parquet"
    _dataset(kit).to_parquet(str(path))
    with pytest.raises(SourceError, match="'nope'; columns: image_id, image, annotation, objects, scene"):
        read_hf(path, "train", **{option: "nope"})


def test_palette_masks_are_not_colour_converted(tmp_path, kit):
    from PIL import Image
    import io

    cls, _ = _masks(0)
    im = Image.fromarray(cls, "P")
    im.putpalette([0, 0, 0] * 256)       # every index is black: any conversion would lose them
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    rows = _rows(kit, 1)
    rows[0]["annotation"] = {"bytes": buf.getvalue(), "path": None}
    path = tmp_path / "one.parquet"
    _dataset(kit, rows=rows).to_parquet(str(path))
    assert np.array_equal(read_hf(path, "train")[0].semantic.array, cls)


def test_instance_column(tmp_path, kit):
    path = tmp_path / "one.parquet"
    _dataset(kit).to_parquet(str(path))
    src = read_hf(path, "train", instance_column="objects")
    for i in range(3):
        inst = src[i].instances
        _, obj = _masks(i)
        assert inst.classes.tolist() == [1, 2]
        assert np.array_equal(inst.masks[0], obj == 1) and np.array_equal(inst.masks[1], obj == 2)


def test_without_mask_or_id_column(tmp_path, kit):
    path = tmp_path / "one.parquet"
    _dataset(kit).remove_columns(["image_id"]).to_parquet(str(path))
    s = read_hf(path, "val", mask_column=None)[1]
    assert s.image_id == "val_000001" and s.semantic is None and s.size == (H, W)


# --------------------------------------------------------------------------- our own output


def test_reads_back_converted_output(tmp_path):
    from weaklabels.convert import ConvertOptions, convert

    sources = {split: read_voc(bundled_voc(), split) for split in ("train", "val")}
    out = tmp_path / "converted"
    convert(sources, out, ConvertOptions(kind="tags", gt="always"))
    for split, original in sources.items():
        back = read_hf(out, split, mask_column="gt")
        assert back.vocabulary == original.vocabulary
        assert len(back) == len(original)
        for i in range(len(back)):
            a, b = back[i], original[i]
            assert a.image_id == b.image_id and a.size == b.size
            assert np.array_equal(a.semantic.array, b.semantic.array)


# --------------------------------------------------------------------------- bad input


def _with(kit, tmp_path, column, data):
    rows = _rows(kit, 2)
    rows[1][column] = {"bytes": data, "path": None}
    path = tmp_path / "bad.parquet"
    _dataset(kit, rows=rows).to_parquet(str(path))
    return read_hf(path, "train")


def test_corrupt_mask_bytes(tmp_path, kit):
    src = _with(kit, tmp_path, "annotation", np.random.default_rng(0).bytes(200))
    src[0]
    with pytest.raises(CorruptFileError, match=r"image 'im1' \(row 1\)"):
        src[1]


def test_truncated_image_bytes(tmp_path, kit):
    data = kit.jpeg(H, W)
    src = _with(kit, tmp_path, "image", data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="'im1'"):
        src[1]


def test_mask_size_mismatch(tmp_path, kit):
    src = _with(kit, tmp_path, "annotation", kit.png(np.zeros((H + 1, W), np.uint8)))
    with pytest.raises(SourceError, match=r"'im1'.*'annotation' is 8x7.*8x6"):
        src[1]


def test_mask_value_outside_vocabulary(tmp_path, kit):
    m = np.zeros((H, W), np.uint8)
    m[2, 2] = 42
    src = _with(kit, tmp_path, "annotation", kit.png(m))
    with pytest.raises(SchemaError, match=r"'im1'.*\[42\]"):
        src[1]


def test_decompression_bomb_bytes(tmp_path, kit):
    src = _with(kit, tmp_path, "image", kit.bomb_png(20_000, 20_000))
    with pytest.raises(CorruptFileError, match="'im1'.*decompression-bomb"):
        src[1]


def test_reads_back_masks_only_output(tmp_path, voc_masks):
    from weaklabels.convert import ConvertOptions, convert

    original = read_voc(voc_masks, "sample")
    assert original[0].image is None
    out = tmp_path / "masks_only"
    convert({"train": original}, out, ConvertOptions(kind="tags", gt="always"))
    back = read_hf(out, "train", mask_column="gt")
    a, b = back[0], original[0]
    assert a.image is None and a.image_id == b.image_id and a.size == b.size
    assert np.array_equal(a.semantic.array, b.semantic.array)
    with pytest.raises(SourceError, match="no mask column"):
        read_hf(out, "train", mask_column=None)[0]


def test_split_names_that_extend_another_are_not_mixed_in(tmp_path, kit):
    data = tmp_path / "pq" / "data"
    data.mkdir(parents=True)
    _dataset(kit).to_parquet(str(data / "train-00000-of-00001.parquet"))
    _dataset(kit, 2).to_parquet(str(data / "train_aug-00000-of-00001.parquet"))
    _dataset(kit, 2).to_parquet(str(data / "train_2017-00000-of-00001.parquet"))
    _dataset(kit, 1).to_parquet(str(data / "val-0.parquet"))
    _dataset(kit, 2).to_parquet(str(data / "val-2-00000-of-00001.parquet"))
    _check_rows(read_hf(tmp_path / "pq", "train"))
    _check_rows(read_hf(tmp_path / "pq", "train_aug"), 2)
    _check_rows(read_hf(tmp_path / "pq", "val"), 1)  # not val-2's shard (datasets refuses '-' in split names)


@pytest.mark.parametrize("name", ["_background_", "__background__"])
def test_background_aliases_are_background_from_every_vocabulary_path(tmp_path, kit, name):
    """--class-names follows the rule of class_names.txt and of a ClassLabel (Vocabulary.from_names)."""
    path = tmp_path / "one.parquet"
    _dataset(kit).to_parquet(str(path))
    by_option = read_hf(path, "train", class_names=[name, "cat", "dog"]).vocabulary
    ds = _dataset(kit).cast_column("scene", datasets.ClassLabel(names=[name, "cat", "dog"]))
    labelled = tmp_path / "labelled.parquet"
    ds.to_parquet(str(labelled))
    by_classlabel = read_hf(labelled, "train").vocabulary
    assert by_option == by_classlabel
    assert by_option.background == 0 and by_option.names == ("background", "cat", "dog")


# --------------------------------------------------------------------------- multi-label classes, file-name ids


def test_sequence_classlabel_column_gives_the_class_names(tmp_path, kit):
    """The common multi-label layout, a Sequence(ClassLabel) column: its inner ClassLabel's names."""
    ds = _dataset(kit, classlabel=False).add_column("labels", [[1], [1, 2], []])
    ds = ds.cast_column("labels", datasets.Sequence(datasets.ClassLabel(names=["_background_", "cat", "dog"])))
    path = tmp_path / "one.parquet"
    ds.to_parquet(str(path))
    for src in (read_hf(path, "train", classes_column="labels"), read_hf(path, "train")):
        assert src.vocabulary.names == tuple(NAMES) and src.vocabulary.background == 0
        _check_rows(src)
    # a plain ClassLabel column still wins without the option; the option picks either
    both = ds.add_column("scene", [0, 1, 0]).cast_column("scene", datasets.ClassLabel(names=["x", "y"]))
    both.to_parquet(str(tmp_path / "both.parquet"))
    assert read_hf(tmp_path / "both.parquet", "train").vocabulary.names == ("x", "y")
    assert read_hf(tmp_path / "both.parquet", "train", classes_column="labels").vocabulary.names == tuple(NAMES)
    with pytest.raises(SourceError, match=r"'image_id' is not a ClassLabel.*scene, labels \(Sequence"):
        read_hf(tmp_path / "both.parquet", "train", classes_column="image_id")


def _imagefolder(tmp_path, kit, names):
    """An imagefolder without an id column: images ``names[i]`` (paths under train/)."""
    folder = tmp_path / "imf" / "train"
    meta = []
    for i, name in enumerate(names):
        cls, _ = _masks(i)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(kit.jpeg(H, W, seed=i))
        (folder / f"mask{i}.png").write_bytes(kit.png(cls))
        meta.append({"file_name": name, "mask_file_name": f"mask{i}.png"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    return tmp_path / "imf"


def test_ids_are_image_file_name_stems_when_there_is_no_id_column(tmp_path, kit):
    root = _imagefolder(tmp_path, kit, ["im0.jpg", "im1.jpg", "im2.jpg"])
    src = read_hf(root, "train", mask_column="mask", class_names=NAMES)
    assert [src.image_id(i) for i in range(3)] == ["im0", "im1", "im2"]
    _check_rows(src)
    assert src.describe()["ids"] == "image file name"  # in the fingerprint: other ids, other output


def test_ids_fall_back_to_the_index_when_file_names_repeat_or_are_missing(tmp_path, kit, caplog):
    root = _imagefolder(tmp_path, kit, ["a/im.jpg", "b/im.jpg", "c/other.jpg"])
    with caplog.at_level("WARNING"):
        src = read_hf(root, "train", mask_column="mask", class_names=NAMES)
    assert [src.image_id(i) for i in range(3)] == ["train_000000", "train_000001", "train_000002"]
    assert "im.jpg" in caplog.text and "repeat" in caplog.text
    assert src[0].image_id == "train_000000" and "ids" not in src.describe()
    path = tmp_path / "bytes.parquet"  # image bytes without a path
    _dataset(kit).remove_columns(["image_id"]).to_parquet(str(path))
    assert read_hf(path, "val").image_id(2) == "val_000002"


def test_ids_fall_back_to_the_index_when_a_file_name_is_not_a_plain_id(tmp_path, kit, caplog):
    # 'cat 1' would break --format voc's file names and list lines
    root = _imagefolder(tmp_path, kit, ["cat 1.jpg", "im1.jpg"])
    with caplog.at_level("WARNING"):
        src = read_hf(root, "train", mask_column="mask", class_names=NAMES)
    assert [src.image_id(i) for i in range(2)] == ["train_000000", "train_000001"]
    assert "'cat 1' is not a plain id" in caplog.text
