"""Independent checks of training augmentation (``spml_train/data.py``) against SPML.md section 5,
with brute-force references: datasets written as ``weaklabels convert``'s parquet shards with
images whose pixel colours encode their source position (R: x, G: y) and their label (B), so every
augmented pixel can be traced back. Also toy data preparation (generated scenes, converted by
weaklabels) and the weak-kind check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize

from spml_train import data as data_mod
from spml_train.config import register

from parquet_helpers import vocab_of, write_dataset

register()

IGNORE, UNLABELLED = 255, 254
MEAN_U8 = data_mod.MEAN.astype(np.uint8)


def _b_code(label: np.ndarray) -> np.ndarray:
    """B channel colour of a label value (classes 0..5 and unlabelled)."""
    return np.where(label == UNLABELLED, 245, 40 * label.astype(np.int64) + 10)


def _coded_image(label: np.ndarray) -> np.ndarray:
    h, w = label.shape
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([4 * xx + 2, 5 * yy + 2, _b_code(label)], -1).astype(np.uint8)


def _to_u8(image: torch.Tensor) -> np.ndarray:
    """Undo ``normalize``: (3,H,W) float -> (H,W,3) ints."""
    x = image.numpy().transpose(1, 2, 0) * data_mod.STD + data_mod.MEAN
    return np.rint(x).astype(np.int64)


def _uniform_nbhd(label: np.ndarray, r: int = 1) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood carries one label value (the map's border is excluded:
    the crop may cut through a resampled block edge)."""
    h, w = label.shape
    p = np.pad(label.astype(np.int64), r, constant_values=-1)
    ok = np.ones((h, w), bool)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            ok &= p[dy:dy + h, dx:dx + w] == label
    return ok


# Block-structured source label: 8x8 blocks over a 40x56 image, classes 0..5 and one unlabelled block.
H0, W0, BLK, NCLS = 40, 56, 8, 6


def _block_label() -> tuple[np.ndarray, np.ndarray]:
    by, bx = np.mgrid[0:H0, 0:W0] // BLK
    label = ((by + 2 * bx) % NCLS).astype(np.uint8)
    label[by * 7 + bx == 9] = UNLABELLED
    regions = (by * (W0 // BLK) + bx).astype(np.uint16)
    return label, regions


@pytest.fixture(scope="module")
def block_ds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blocks")
    label, regions = _block_label()
    write_dataset(folder, "train", vocab_of(NCLS), [
        {"image": _coded_image(label), "weak": label, "regions": regions, "gt": label}])
    return folder


def _trace(out: dict, src_label: np.ndarray):
    """Analyse one augmented item; returns dict(scale, flipped, valid_rows, valid_cols, offset)."""
    img = _to_u8(out["image"])
    lab = out["label"].numpy()
    reg = out["region"].numpy()
    c = lab.shape[0]
    assert out["image"].shape == (3, c, c) and lab.shape == (c, c) and reg.shape == (c, c)

    # 1. ignore (255) only as padding: a suffix of rows / columns, mean colour, its own region id
    pad = lab == IGNORE
    valid_rows = int((~pad).any(1).sum())
    valid_cols = int((~pad).any(0).sum())
    expected_pad = np.ones_like(pad)
    expected_pad[:valid_rows, :valid_cols] = False
    assert (pad == expected_pad).all(), "ignore must be exactly the bottom / right padding"
    if pad.any():
        assert (img[pad] == MEAN_U8).all()
        assert len(np.unique(reg[pad])) == 1 and not np.isin(reg[pad][0], reg[~pad])

    # 2. label and image colour agree wherever the label neighbourhood is uniform
    v = ~pad
    inner = _uniform_nbhd(lab) & v
    assert inner.sum() > 0.2 * v.sum()
    assert np.abs(img[..., 2][inner] - _b_code(lab[inner])).max() <= 1, "image / label misaligned"

    # 3. regions stay aligned with the label: each region (one source block) carries one label value
    for r in np.unique(reg[v]):
        assert len(np.unique(lab[v & (reg == r)])) == 1

    # 4. geometry from the colour ramps: src_x affine in column, src_y affine in row
    sx = (img[..., 0] - 2) / 4.0
    sy = (img[..., 1] - 2) / 5.0
    core = np.zeros_like(v)
    core[1:valid_rows - 1, 1:valid_cols - 1] = True  # away from the scaled image's resampled edges
    core &= inner
    rows, cols = np.nonzero(core)
    bx, ax = np.polyfit(cols, sx[core], 1)
    by_, ay = np.polyfit(rows, sy[core], 1)
    assert np.abs(sx[core] - (ax + bx * cols)).max() < 0.6
    assert np.abs(sy[core] - (ay + by_ * rows)).max() < 0.6
    assert by_ > 0, "rows are never flipped"
    flipped = bx < 0
    sc_x, sc_y = 1 / abs(bx), 1 / by_
    assert abs(sc_x - sc_y) < 0.06, "one scale for both axes"
    s = (sc_x + sc_y) / 2

    # 5. nearest-neighbour label: pixel label = source label at its traced source position
    far = core & (np.abs(((sx + 0.5) % BLK) - BLK / 2) < BLK / 2 - 0.75) \
        & (np.abs(((sy + 0.5) % BLK) - BLK / 2) < BLK / 2 - 0.75)
    ys = np.clip(np.rint(sy[far]).astype(int), 0, H0 - 1)
    xs = np.clip(np.rint(sx[far]).astype(int), 0, W0 - 1)
    assert (lab[far] == src_label[ys, xs]).all()

    # 6. padding only where the scaled image is smaller than the crop, and it is as big as the scale says
    for n_valid, n_src in ((valid_rows, H0), (valid_cols, W0)):
        if n_valid < c:
            assert abs(n_valid - n_src * s) <= 1.5
        else:
            assert n_src * s >= c - 1.5
    offset = (round(float(ay)), round(float(ax)))
    return {"scale": s, "flipped": bool(flipped), "valid": (valid_rows, valid_cols), "offset": offset}


# --------------------------------------------------------------------------- augmentation


def test_augmentation_aligns_image_label_regions_and_spans_scale_flip_crop(block_ds):
    label, _ = _block_label()
    ds = data_mod.ConvertedDataset(block_ds, "train", kind="scribbles", train=True, crop=48)
    traces = []
    for epoch in range(40):
        ds.epoch = epoch
        traces.append(_trace(ds[0], label))
    scales = [t["scale"] for t in traces]
    assert min(scales) >= 0.5 - 0.05 and max(scales) <= 1.5 + 0.05
    assert min(scales) < 0.7 and max(scales) > 1.3, "scale should span 0.5..1.5"
    n_flip = sum(t["flipped"] for t in traces)
    assert 8 <= n_flip <= 32, f"{n_flip}/40 flipped; a flip has probability 1/2"
    # both padding (scaled smaller than the crop) and real cropping happen
    assert any(t["valid"][0] < 48 for t in traces) and any(t["valid"] == (48, 48) for t in traces)
    assert len({t["offset"] for t in traces if t["valid"] == (48, 48)}) > 1, "crop position is random"


def test_padding_when_scaled_smaller_than_crop(block_ds):
    """Scale fixed at 0.5: 20 x 28 scaled into a 48 crop, padded bottom / right with ignore."""
    label, _ = _block_label()
    ds = data_mod.ConvertedDataset(block_ds, "train", kind="scribbles", train=True, crop=48,
                                   scale=(0.5, 0.5), flip=False)
    out = ds[0]
    t = _trace(out, label)
    assert t["valid"] == (20, 28) and not t["flipped"]
    lab = out["label"].numpy()
    assert (lab[20:] == IGNORE).all() and (lab[:, 28:] == IGNORE).all()
    # the scaled image is the whole source, placed at the top-left: nearest 2x downsample
    assert (lab[:20, :28] == label[1::2, 1::2]).all()


def test_no_scale_no_flip_is_a_plain_crop(block_ds):
    label, _ = _block_label()
    src = _coded_image(label)
    ds = data_mod.ConvertedDataset(block_ds, "train", kind="scribbles", train=True, crop=24,
                                   scale=(1.0, 1.0), flip=False)
    seen = set()
    for epoch in range(12):
        ds.epoch = epoch
        out = ds[0]
        img = _to_u8(out["image"])
        y0, x0 = int(img[0, 0, 1] - 2) // 5, int(img[0, 0, 0] - 2) // 4
        assert 0 <= y0 <= H0 - 24 and 0 <= x0 <= W0 - 24
        assert (img == src[y0:y0 + 24, x0:x0 + 24]).all()
        assert (out["label"].numpy() == label[y0:y0 + 24, x0:x0 + 24]).all()
        seen.add((y0, x0))
    assert len(seen) > 3


def test_flip_alone_mirrors_image_and_label(block_ds):
    label, _ = _block_label()
    src = _coded_image(label)
    ds = data_mod.ConvertedDataset(block_ds, "train", kind="scribbles", train=True, crop=40,
                                   scale=(1.0, 1.0), flip=True)
    kinds = set()
    for epoch in range(16):
        ds.epoch = epoch
        out = ds[0]
        img, lab = _to_u8(out["image"]), out["label"].numpy()
        flipped = img[0, 1, 0] < img[0, 0, 0]
        ref_img, ref_lab = (src[:, ::-1], label[:, ::-1]) if flipped else (src, label)
        # crop 40 of 40 rows: y0 = 0; find x0 by matching
        matches = [x0 for x0 in range(W0 - 40 + 1) if (img == ref_img[:, x0:x0 + 40]).all()]
        assert len(matches) == 1
        assert (lab == ref_lab[:, matches[0]:matches[0] + 40]).all()
        kinds.add(bool(flipped))
    assert kinds == {True, False}


def test_tags_come_from_the_full_uncropped_label(tmp_path):
    label = np.zeros((64, 64), np.uint8)
    label[:24, :24] = 1
    label[58:62, 58:62] = 3          # a small object, usually cropped out of a 16 crop
    label[30:34, 0:4] = UNLABELLED
    write_dataset(tmp_path, "train", vocab_of(5), [
        {"image": _coded_image(label), "weak": label, "regions": np.zeros((64, 64), np.uint16)}])
    ds = data_mod.ConvertedDataset(tmp_path, "train", kind="scribbles", train=True, crop=16)
    cropped_out = 0
    for epoch in range(20):
        ds.epoch = epoch
        out = ds[0]
        # background (0) is never a tag; 2 and 4 never appear
        assert out["tags"].tolist() == [False, True, False, True, False]
        assert out["tags"].dtype == torch.bool
        cropped_out += int(not (out["label"] == 3).any())
    assert cropped_out > 0, "test needs a crop without class 3"


def test_tags_kind_takes_the_stored_tags(tmp_path):
    label = np.full((32, 32), UNLABELLED, np.uint8)
    write_dataset(tmp_path, "train", vocab_of(5), [
        {"image": _coded_image(np.zeros((32, 32), np.uint8)), "weak": label, "tags": [2, 4],
         "regions": np.zeros((32, 32), np.uint16)}])
    ds = data_mod.ConvertedDataset(tmp_path, "train", kind="tags", train=True, crop=16)
    assert ds[0]["tags"].tolist() == [False, False, True, False, True]


def test_weak_label_items_are_dilated_like_training(tmp_path):
    """The retrieval memory reads weak labels (labels="weak"): thin labels grow by data.dilate as in
    training, or a 1-px point vanishes on the stride-4 grid."""
    label = np.full((32, 32), UNLABELLED, np.uint8)
    label[10, 10] = 2
    label[0, :] = 255
    write_dataset(tmp_path, "train", vocab_of(5), [
        {"image": _coded_image(np.zeros((32, 32), np.uint8)), "weak": label, "regions": np.zeros((32, 32), np.uint16)}])
    plain = data_mod.ConvertedDataset(tmp_path, "train", kind="points", train=False, labels="weak")
    grown = data_mod.ConvertedDataset(tmp_path, "train", kind="points", train=False, labels="weak", dilate=3)
    assert int((plain[0]["gt"] == 2).sum()) == 1
    yy, xx = np.mgrid[:32, :32]
    disc = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 9)
    assert np.array_equal(grown[0]["gt"].numpy() == 2, disc)
    assert (grown[0]["gt"][0] == 255).all()          # ignore stays ignore


def _pairs_dataset(tmp_path):
    """24 x 32: top 8 rows class 1 (unpaired), below: left half class 2, right half class 4."""
    label = np.full((24, 32), 1, np.uint8)
    label[8:, :16] = 2
    label[8:, 16:] = 4
    write_dataset(tmp_path, "train", vocab_of(6), [
        {"image": _coded_image(label), "weak": label, "regions": np.zeros((24, 32), np.uint16)}])
    return label


def test_flip_pairs_swap_left_right_classes(tmp_path):
    _pairs_dataset(tmp_path)
    perm = np.arange(256)
    perm[[2, 3, 4, 5]] = [3, 2, 5, 4]
    ds = data_mod.ConvertedDataset(tmp_path, "train", kind="points", train=True, crop=24,
                                   scale=(1.0, 1.0), flip_pairs=[[2, 3], [4, 5]])
    seen = set()
    for epoch in range(16):
        ds.epoch = epoch
        out = ds[0]
        img, lab = _to_u8(out["image"]), out["label"].numpy()
        orig = np.where(img[..., 2] == 245, UNLABELLED, (img[..., 2] - 10) // 40)  # source class by colour
        flipped = bool(img[0, 1, 0] < img[0, 0, 0])
        expected = perm[orig] if flipped else orig
        assert (lab == expected).all()
        seen.add(flipped)
    assert seen == {True, False}


def test_flip_pairs_tags_follow_the_swapped_label(tmp_path):
    _pairs_dataset(tmp_path)
    ds = data_mod.ConvertedDataset(tmp_path, "train", kind="points", train=True, crop=24,
                                   scale=(1.0, 1.0), flip_pairs=[[2, 3], [4, 5]])
    for epoch in range(16):
        ds.epoch = epoch
        out = ds[0]
        present = set(np.unique(out["label"].numpy()).tolist()) - {0, IGNORE, UNLABELLED}
        assert set(np.flatnonzero(out["tags"].numpy()).tolist()) == present


def test_determinism_and_epoch_dependence(block_ds):
    a = data_mod.ConvertedDataset(block_ds, "train", kind="scribbles", train=True, crop=32, seed=7)
    b = data_mod.ConvertedDataset(block_ds, "train", kind="scribbles", train=True, crop=32, seed=7)
    for epoch in (0, 3):
        a.epoch = b.epoch = epoch
        x, y = a[0], b[0]
        for k in ("image", "label", "region", "tags"):
            assert torch.equal(x[k], y[k]), k
        # a second read of the same item is identical too (no hidden state)
        assert torch.equal(a[0]["image"], x["image"])
    a.epoch = 0
    ref = a[0]
    diffs = 0
    for epoch in range(1, 6):
        a.epoch = epoch
        diffs += not torch.equal(a[0]["image"], ref["image"])
    assert diffs >= 4, "different epochs should give different augmentations"
    c = data_mod.ConvertedDataset(block_ds, "train", kind="scribbles", train=True, crop=32, seed=8)
    c.epoch = 0
    assert not torch.equal(c[0]["image"], ref["image"])


def test_collate_stacks_training_items(block_ds):
    ds = data_mod.ConvertedDataset(block_ds, "train", kind="scribbles", train=True, crop=32)
    batch = data_mod.collate([ds[0], ds[0]])
    assert batch["image"].shape == (2, 3, 32, 32) and batch["label"].shape == (2, 32, 32)
    assert batch["tags"].shape == (2, NCLS) and isinstance(batch["image_id"], list)


def test_eval_items_are_unaugmented(block_ds):
    label, _ = _block_label()
    ds = data_mod.ConvertedDataset(block_ds, "train", kind="scribbles", train=False)
    it = ds[0]
    assert (it["gt"].numpy() == label).all()
    assert (it["rgb"].numpy() == _coded_image(label)).all()
    assert (_to_u8(it["image"]) == _coded_image(label)).all()


# --------------------------------------------------------------------------- toy data


def _cfg(*overrides: str):
    with initialize(version_base="1.3", config_path=None):
        return compose(config_name="spml", overrides=list(overrides))


def test_toy_data_follows_its_settings(tmp_path):
    small = _cfg("recipe=toy_tags", "data.shapes.num_train=4", "data.shapes.num_val=2")
    train, val = data_mod.prepare_toy(small, tmp_path)
    assert len(data_mod.ConvertedDataset(train, "train", kind="tags", train=True)) == 4
    assert data_mod.prepare_toy(small, tmp_path) == (train, val)  # reused, not regenerated
    bigger = _cfg("recipe=toy_tags", "data.shapes.num_train=6", "data.shapes.num_val=2")
    train6, val6 = data_mod.prepare_toy(bigger, tmp_path)
    assert train6 != train and val6 != val
    assert len(data_mod.ConvertedDataset(train6, "train", kind="tags", train=True)) == 6
    assert len(data_mod.ConvertedDataset(val6, "val", kind="tags", train=False)) == 2


def test_training_on_another_weak_kind_is_refused(tmp_path):
    import pytest

    from weaklabels.errors import SchemaError

    train, _ = data_mod.prepare_toy(_cfg("recipe=toy_scribbles", "data.shapes.num_train=4",
                                         "data.shapes.num_val=2"), tmp_path)
    with pytest.raises(SchemaError, match="holds scribbles weak labels .* data.kind=boxes"):
        data_mod.ConvertedDataset(train, "train", kind="boxes", train=True)
    data_mod.ConvertedDataset(train, "train", kind="boxes", train=True, full_supervision=True)  # reads gt
    # the points recipes take SPML's one-point scribbles (--length-ratio 0), not whole scribbles
    with pytest.raises(SchemaError, match="holds full scribbles .*length_ratio=1.0.* data.kind=points"):
        data_mod.ConvertedDataset(train, "train", kind="points", train=True)
    points, _ = data_mod.prepare_toy(_cfg("recipe=toy_points", "data.shapes.num_train=4",
                                          "data.shapes.num_val=2"), tmp_path / "points")
    data_mod.ConvertedDataset(points, "train", kind="points", train=True)


def test_missing_values_with_and_without_parquet_statistics(tmp_path):
    import pyarrow.parquet as pq

    label = np.zeros((8, 8), np.uint8)
    write_dataset(tmp_path, "train", vocab_of(3), [
        {"image": _coded_image(label), "weak": label, "gt": label if k % 2 else None} for k in range(5)])
    f = next((tmp_path / "data").glob("*.parquet"))
    assert data_mod.missing_values([f], "gt") == 3 and data_mod.missing_values([f], "image") == 0
    pq.write_table(pq.read_table(f), f, write_statistics=False)   # another writer: no statistics
    assert data_mod.missing_values([f], "gt") == 3 and data_mod.missing_values([f], "image") == 0
    assert data_mod.missing_values([f], "nope") == 5              # a column the shards lack


def test_a_missing_split_or_a_voc_format_folder_is_named(tmp_path):
    import pytest

    from weaklabels.convert import ConvertOptions, convert
    from weaklabels.sources import read_voc
    from weaklabels.sources.bundled import bundled_voc

    hf = tmp_path / "hf"
    convert({"train": read_voc(bundled_voc(), "train")}, hf, ConvertOptions(kind="scribbles"))
    with pytest.raises(FileNotFoundError, match="no parquet shard for split 'val'; it has 'train'"):
        data_mod.ConvertedDataset(hf, "val", kind="scribbles", train=False)
    voc = tmp_path / "voc"
    convert({"train": read_voc(bundled_voc(), "train")}, voc, ConvertOptions(kind="scribbles", format="voc"))
    with pytest.raises(FileNotFoundError, match="written with `weaklabels convert --format voc`"):
        data_mod.ConvertedDataset(voc, "train", kind="scribbles", train=True)
