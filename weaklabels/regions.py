"""Low-level regions: the over-segmentation behind SPML's relation V.

The reference used HED contours + OWT-UCM (MATLAB only, at most 256 regions);
any good region proposal plays the same role. Methods, from scikit-image:

* ``felzenszwalb`` (``compute_regions``'s default): graph-based segmentation (``scale=100``,
  ``sigma=0.8``, ``min_size=50``), regions that follow colour edges;
* ``slic``: k-means superpixels (``n_segments=256``, ``compactness=10``), compact
  regions of similar size;
* a folder of the user's own region PNGs (``{image_id}.png``, 8- or 16-bit
  grayscale ids; e.g. HED-UCM), checked against the image size.

Region maps are ``(H, W) uint16`` with ids ``0 .. R-1`` (at most 65,536 regions),
renumbered in raster order so the same segmentation always gets the same ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from weaklabels.errors import CorruptFileError, SchemaError, SourceError

METHODS = ("felzenszwalb", "slic")
DEFAULTS = {
    "felzenszwalb": {"scale": 100.0, "sigma": 0.8, "min_size": 50},
    "slic": {"n_segments": 256, "compactness": 10.0, "start_label": 0},
}


def renumber(regions: np.ndarray) -> np.ndarray:
    """Ids ``0 .. R-1`` in order of first appearance (raster order), as ``uint16``."""
    flat = regions.ravel()
    _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # rank of each unique id by first appearance
    out = order[inverse].reshape(regions.shape)
    if out.size and out.max() > 65535:
        raise SchemaError(f"{int(out.max()) + 1} regions; a region map holds at most 65,536")
    return out.astype(np.uint16)


def compute_regions(rgb: np.ndarray, method: str = "felzenszwalb", **params) -> np.ndarray:
    """Over-segment ``rgb (H, W, 3) uint8`` into a ``(H, W) uint16`` region map."""
    if method not in METHODS:
        raise SchemaError(f"region method {method!r}; expected one of {', '.join(METHODS)} or a folder")
    from skimage import segmentation

    p = {**DEFAULTS[method], **params}
    if method == "felzenszwalb":
        lab = segmentation.felzenszwalb(rgb, **p)
    else:
        lab = segmentation.slic(rgb, channel_axis=-1, **p)
    return renumber(lab)


def read_regions(folder: str | Path, image_id: str, size: tuple[int, int]) -> np.ndarray:
    """The user's region PNG ``folder/{image_id}.png`` as ``(H, W) uint16``."""
    path = Path(folder) / f"{image_id}.png"
    rec = f"image {image_id!r}"
    from weaklabels.sources.files import open_image  # decompression-bomb guard, clear errors

    im = open_image(path, rec)
    if im.mode not in ("L", "P", "I", "I;16", "I;16B"):
        raise CorruptFileError(f"{rec}: region file {path} is mode {im.mode!r}; expected 8- or 16-bit ids")
    a = np.asarray(im)
    if a.shape != tuple(size):
        raise SourceError(f"{rec}: region file {path} is {a.shape[1]}x{a.shape[0]}; image is {size[1]}x{size[0]}")
    return renumber(a)
