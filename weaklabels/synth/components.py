"""Connected components with their boxes and areas, in one pass.

OpenCV's ``connectedComponentsWithStats`` labels a binary image and returns
each component's bounding box and area together; with scipy the same needs
``label`` plus ``find_objects`` plus ``bincount``, about 1.7x the time on the
shared VOC masks (benchmarks/convert.py), which is most of the cost of the box
and scribble protocols.
"""

from __future__ import annotations

import numpy as np

try:  # OpenCV threads would fight the worker processes for the cores
    import cv2

    cv2.setNumThreads(1)
except ImportError as err:  # pragma: no cover - declared dependency
    from weaklabels.errors import MissingDependencyError

    raise MissingDependencyError("weaklabels needs OpenCV: pip install opencv-python-headless") from err


def components(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Components of ``mask (H, W) bool``.

    Returns ``labels (H, W) int32`` (0 = outside, 1..N components) and ``stats (N, 5) int``
    rows ``(x, y, width, height, area)`` for components 1..N (pixel units, x = column).
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(mask, np.uint8), connectivity=connectivity, ltype=cv2.CV_32S)
    return labels, stats[1:n]


def extents(mask: np.ndarray, values) -> dict[int, tuple[slice, slice]]:
    """Bounding slices ``(rows, cols)`` of each of ``values`` present in ``mask (H, W) uint8``.

    One OpenCV compare + boundingRect per value: about 10x faster than
    ``scipy.ndimage.find_objects`` over the whole label map.
    """
    out = {}
    for v in values:
        x, y, w, h = cv2.boundingRect(equal(mask, v))
        if w and h:
            out[int(v)] = (slice(y, y + h), slice(x, x + w))
    return out


def equal(mask: np.ndarray, value: int) -> np.ndarray:
    """``mask == value`` as ``uint8`` 0 / 255 (OpenCV's compare: faster than numpy's on uint8)."""
    if mask.size <= 16:
        # OpenCV takes arrays of up to 4 elements for scalars and then refuses the shapes
        return (mask == value).astype(np.uint8) * 255
    return cv2.compare(np.ascontiguousarray(mask), int(value), cv2.CMP_EQ)
