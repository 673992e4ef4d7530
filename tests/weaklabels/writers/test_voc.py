from __future__ import annotations

import numpy as np
from PIL import Image

from weaklabels.types import ImageTags, Sample, Vocabulary
from weaklabels.writers import Converted, VOCWriter


def test_masks_only_items_and_gt_lines(tmp_path):
    voc = Vocabulary(("background", "a"))
    s = Sample("x1", 4, 5, voc, tags=ImageTags([1]))
    weak = np.full((4, 5), 254, np.uint8)
    gt = np.ones((4, 5), np.uint8)
    w = VOCWriter(voc, "tags")
    partial, out = tmp_path / "p", tmp_path / "o"
    out.mkdir()
    w.write_shard(partial, "train", 0, 2, [Converted(s, "tags", weak)])
    w.write_shard(partial, "train", 1, 2, [Converted(s.replace(image_id="x2"), "tags", weak)])
    w.write_shard(partial, "val", 0, 1, [Converted(s.replace(image_id="x3"), "tags", weak, gt=gt)])
    assert w.shard_done(partial, "train", 1, 2)
    files = w.finalize(partial, out, {"train": 2, "val": 1})
    assert files == {"train": "train.txt", "val": "val.txt"}
    assert (out / "train.txt").read_text().splitlines() == ["- WeakLabels/x1.png", "- WeakLabels/x2.png"]
    assert (out / "val.txt").read_text().splitlines() == ["- WeakLabels/x3.png"]
    assert (out / "val_gt.txt").read_text().splitlines() == ["- SegmentationClass/x3.png"]
    assert not (out / "train_gt.txt").exists()
    np.testing.assert_array_equal(np.array(Image.open(out / "WeakLabels/x1.png")), weak)
    np.testing.assert_array_equal(np.array(Image.open(out / "SegmentationClass/x3.png")), gt)
