"""HF parquet writer: schema metadata, lossless geometry, embedded bytes."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from weaklabels.types import Boxes, ImageRef, ImageTags, Points, Sample, Scribbles, Vocabulary
from weaklabels.writers import Converted, HFWriter, hf_features
from weaklabels.writers.hf import shard_name


def _sample() -> Sample:
    voc = Vocabulary(("background", "cat", "dog"))
    buf = io.BytesIO()
    Image.new("RGB", (7, 5), (10, 20, 30)).save(buf, format="PNG")
    return Sample("img/1", 5, 7, voc, image=ImageRef(data=buf.getvalue()),
                  tags=ImageTags([1, 2]),
                  boxes=Boxes([[0.25, 0.5, 3.125, 5.0]], [2], crowd=[True]),
                  points=Points([[1.5, 2.5], [6.9, 4.1]], [1, 0]),
                  scribbles=Scribbles(([[0.5, 0.5], [6.5, 4.5], [3.0, 1.0]],), [1], widths=[2.5]))


def test_shard_round_trips_geometry_and_maps(tmp_path):
    s = _sample()
    weak = np.full((5, 7), 254, np.uint8)
    weak[1, 2] = 1
    weak[0, 0] = 255
    gt = np.zeros((5, 7), np.uint8)
    gt[2:, 3:] = 2
    w = HFWriter(s.vocabulary, "scribbles")
    w.write_shard(tmp_path, "val", 0, 1, [Converted(s, "scribbles", weak, gt=gt)])
    assert w.shard_done(tmp_path, "val", 0, 1)
    t = pq.read_table(tmp_path / "data" / shard_name("val", 0, 1))
    assert b"huggingface" in t.schema.metadata
    r = t.to_pylist()[0]
    assert r["image_id"] == "img/1" and (r["width"], r["height"]) == (7, 5)
    assert r["tags"] == [1, 2]
    assert r["boxes"] == [{"x0": 0.25, "y0": 0.5, "x1": 3.125, "y1": 5.0, "label": 2,
                           "difficult": False, "truncated": False, "crowd": True}]
    assert r["points"] == [{"x": 1.5, "y": 2.5, "label": 1}, {"x": 6.9, "y": 4.1, "label": 0}]
    assert r["scribbles"] == [{"xy": [[0.5, 0.5], [6.5, 4.5], [3.0, 1.0]], "label": 1, "width": 2.5}]
    for col, arr in (("weak_label", weak), ("gt", gt)):
        im = Image.open(io.BytesIO(r[col]["bytes"]))
        assert im.mode == "P"
        np.testing.assert_array_equal(np.array(im), arr)
    assert r["image"]["bytes"] == s.image.data and r["regions"] is None
    assert not list(tmp_path.rglob("*.tmp"))


def test_features_use_class_labels_and_lists():
    from datasets import ClassLabel, List

    f = hf_features(Vocabulary(("background", "a")))
    assert isinstance(f["tags"], List) and isinstance(f["tags"].feature, ClassLabel)
    assert f["tags"].feature.names == ["background", "a"]
    # boxes stay a list of dicts (datasets.Sequence would turn it into a dict of lists)
    assert isinstance(f["boxes"], List) and isinstance(f["boxes"].feature, dict)


def test_hand_written_schema_equals_the_one_datasets_builds():
    from weaklabels.writers.hf import arrow_schema

    v = Vocabulary(("background", "a", "b"))
    ours, theirs = arrow_schema(v), hf_features(v).arrow_schema
    assert ours.equals(theirs, check_metadata=False)
    assert json.loads(ours.metadata[b"huggingface"]) == json.loads(theirs.metadata[b"huggingface"])
