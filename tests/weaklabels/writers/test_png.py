from __future__ import annotations

import io

import numpy as np
from PIL import Image

from weaklabels.types import VOC_PALETTE
from weaklabels.writers.png import encode_label_png, encode_regions_png


def test_label_png_keeps_every_index_and_the_palette():
    a = np.arange(256, dtype=np.uint8).reshape(16, 16)
    im = Image.open(io.BytesIO(encode_label_png(a)))
    assert im.mode == "P" and tuple(im.getpalette()[:768]) == VOC_PALETTE
    np.testing.assert_array_equal(np.array(im), a)


def test_regions_png_holds_16_bit_ids():
    a = np.array([[0, 1, 65535], [300, 4096, 7]], np.int64)
    back = np.array(Image.open(io.BytesIO(encode_regions_png(a))))
    np.testing.assert_array_equal(back.astype(np.int64), a)
