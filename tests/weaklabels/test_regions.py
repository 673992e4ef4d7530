from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from weaklabels.convert import ConvertOptions, convert
from weaklabels.errors import MissingFileError, SchemaError, SourceError
from weaklabels.regions import compute_regions, read_regions, renumber
from weaklabels.sources import read_voc
from weaklabels.sources.bundled import bundled_voc
from weaklabels.sources.files import read_rgb


def test_renumber_is_raster_order_and_contiguous():
    a = np.array([[7, 7, 3], [9, 3, 3]])
    np.testing.assert_array_equal(renumber(a), [[0, 0, 1], [2, 1, 1]])
    assert renumber(a).dtype == np.uint16


@pytest.mark.parametrize("method", ["felzenszwalb", "slic"])
def test_regions_of_a_real_image(method):
    src = read_voc(bundled_voc(), "train")
    s = src[src.ids.index("2011_003066")]
    rgb = read_rgb(s.image.read_bytes(), "t")
    r = compute_regions(rgb, method)
    assert r.shape == rgb.shape[:2] and r.dtype == np.uint16
    ids = np.unique(r)
    assert ids[0] == 0 and ids[-1] == len(ids) - 1 and 20 < len(ids) < 2000
    np.testing.assert_array_equal(r, compute_regions(rgb, method))  # deterministic


def test_unknown_method_and_user_region_files(tmp_path):
    with pytest.raises(SchemaError, match="felzenszwalb"):
        compute_regions(np.zeros((4, 4, 3), np.uint8), "watershed")
    Image.fromarray(np.array([[5, 5], [6, 6]], np.uint8)).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_regions(tmp_path, "a", (2, 2)), [[0, 0], [1, 1]])
    with pytest.raises(SourceError, match="image 'a'"):
        read_regions(tmp_path, "a", (3, 2))
    with pytest.raises(MissingFileError, match="image 'b'"):
        read_regions(tmp_path, "b", (2, 2))


def test_convert_stores_regions_and_refuses_masks_only(tmp_path, voc_masks):
    out = tmp_path / "o"
    convert({"val": read_voc(bundled_voc(), "val")}, out, ConvertOptions(kind="points", regions="slic"))
    for row in pq.read_table(next((out / "data").glob("*.parquet"))).to_pylist():
        reg = np.array(Image.open(io.BytesIO(row["regions"]["bytes"])))
        assert reg.shape == (row["height"], row["width"]) and reg.max() > 0
    src = read_voc(voc_masks, "sample")
    src.ids = src.ids[:2]
    with pytest.raises(SchemaError, match="masks only"):
        convert({"sample": src}, tmp_path / "m", ConvertOptions(kind="tags", regions="felzenszwalb"))
