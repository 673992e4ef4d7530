from __future__ import annotations

import numpy as np

from weaklabels.stats import Summary
from weaklabels.types import Boxes, Sample, Vocabulary


def test_counts_and_merge(tmp_path):
    voc = Vocabulary(("background", "a", "b"))
    s = Sample("i", 2, 3, voc, boxes=Boxes([[0, 0, 1, 1], [1, 0, 3, 2], [0, 1, 1, 2]], [1, 1, 2], crowd=[0, 0, 1]))
    weak = np.array([[254, 254, 254], [0, 254, 255]], np.uint8)
    a = Summary(3)
    a.add(s, "boxes", weak)
    assert a.annotations.tolist() == [0, 2, 0]      # crowd boxes are not annotations
    assert a.images.tolist() == [1, 1, 0]
    assert a.labelled_pixels.tolist() == [1, 0, 0]
    assert (a.unlabelled_pixels, a.ignore_pixels, a.total_pixels) == (4, 1, 6)
    b = Summary.from_dict(a.to_dict()).merge(a)
    assert b.annotations.tolist() == [0, 4, 0] and b.num_images == 2
    assert "a" in b.table(voc) and "16.667%" in b.table(voc)
    b.write_csv(tmp_path / "s.csv", voc)
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "index,class,images,annotations,labelled_pixel_fraction"
