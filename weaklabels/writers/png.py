"""Label maps to PNG bytes: palette PNGs for class maps (indices survive any
viewer), 16-bit grayscale for region maps (up to 65,535 regions)."""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image

from weaklabels.types import VOC_PALETTE


def encode_label_png(array: np.ndarray, palette: tuple[int, ...] = VOC_PALETTE) -> bytes:
    """``(H, W) uint8`` -> palette PNG bytes (index values kept exactly)."""
    first = array.flat[0] if array.size else 0
    if array.size and (array.ravel() == first).all():
        # Tags label no pixel: their maps are constant, so encode each size once.
        return _constant_png(array.shape, int(first), palette)
    return _encode(array, palette)


@functools.lru_cache(maxsize=64)
def _constant_png(shape: tuple[int, int], value: int, palette: tuple[int, ...]) -> bytes:
    return _encode(np.full(shape, value, np.uint8), palette)


def _encode(array: np.ndarray, palette: tuple[int, ...]) -> bytes:
    im = Image.fromarray(np.ascontiguousarray(array, np.uint8), "P")
    im.putpalette(palette)
    buf = io.BytesIO()
    # Level 1: label maps are mostly flat runs, so higher levels barely shrink them but cost 2-3x time.
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_regions_png(array: np.ndarray) -> bytes:
    """``(H, W)`` region ids < 65,536 -> 16-bit grayscale PNG bytes."""
    a = np.ascontiguousarray(array)
    if a.size and int(a.max()) > 65535:
        raise ValueError(f"region ids up to {int(a.max())}; a region PNG holds at most 65,535")
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint16)).save(buf, format="PNG", compress_level=1)  # mode I;16
    return buf.getvalue()
