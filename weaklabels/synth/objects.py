"""The objects a point or scribble protocol annotates, and their interiors.

An *object* is what one annotator stroke or click targets:

* with instance masks: each non-crowd instance, restricted to the pixels the
  class mask gives its class (so overlapping COCO instances never lend a pixel
  to another class);
* otherwise: each connected component (8-connected) of a class in the class
  mask with at least ``min_area`` pixels;
* background: one object holding every background pixel (when asked for);
  the scribbles protocol splits it (and, without instance masks, each class)
  into its wide parts on the coarse grid, which costs a fraction of labelling
  full-resolution components of a class that covers most of the image; the
  points protocol keeps it whole;
* ``per_class=True``: all pixels of a class form one object.

Interior distances are computed on a *coarse grid* so cost does not grow with
object size: an object's bounding box is cut into ``stride x stride`` cells
(``stride = 1`` for objects up to ``max_cells`` pixels across, larger beyond),
a cell is *inside* when every pixel of it belongs to the object, and
``clearance`` is the Euclidean distance transform over inside cells. A cell
with clearance ``d`` lies at least ``(d - 0.71) * stride`` pixels from any
pixel outside the object: the bound the protocols use to stay inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from weaklabels.synth.components import components, equal, extents
from weaklabels.types import Sample

_EIGHT = np.ones((3, 3), bool)
SQRT_HALF = 0.7072  # just above 1/sqrt(2): half a cell diagonal, in cells


@dataclass(frozen=True)
class Object:
    """One object: class, crop offset ``(y0, x0)`` and ``mask (h, w) bool`` of its pixels."""

    cls: int
    y0: int
    x0: int
    mask: np.ndarray
    instance: int | None = None

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class Interior:
    """Coarse-grid interior of an object.

    ``stride``: pixels per cell side; ``clearance: (gh, gw) float`` distance in
    cells from each inside cell's centre to the nearest cell that is not inside
    (0 outside); ``centres(cells)`` maps cell indices to pixel-edge coordinates.
    """

    obj: Object
    stride: int
    clearance: np.ndarray

    def clearance_px(self) -> np.ndarray:
        """Lower bound, in pixels, from each cell centre to the centre of any pixel outside the object.

        On the pixel grid (stride 1) this is the exact distance transform; on a coarse grid an
        outside pixel may sit up to half a cell diagonal from its cell's centre.
        """
        if self.stride == 1:
            return self.clearance
        return np.maximum(self.clearance - SQRT_HALF, 0.0) * self.stride

    def centres(self, cells: np.ndarray) -> np.ndarray:
        """``cells (N, 2)`` (row, col) -> ``(N, 2)`` (x, y) pixel-edge coordinates of cell centres."""
        cells = np.asarray(cells, np.float64).reshape(-1, 2)
        s = self.stride
        x = self.obj.x0 + cells[:, 1] * s + s / 2.0
        y = self.obj.y0 + cells[:, 0] * s + s / 2.0
        return np.stack([x, y], axis=1)


def interior(obj: Object, max_cells: int = 32) -> Interior:
    h, w = obj.mask.shape
    stride = max(1, -(-max(h, w) // max_cells))
    if stride == 1:
        inside = obj.mask
    else:
        gh, gw = -(-h // stride), -(-w // stride)
        pad = np.zeros((gh * stride, gw * stride), bool)
        pad[:h, :w] = obj.mask
        inside = pad.reshape(gh, stride, gw, stride).all(axis=(1, 3))
    # Pad with outside cells so the crop border counts as the object's edge.
    clearance = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
    return Interior(obj, stride, clearance)


def interior_with_cells(obj: Object, max_cells: int = 32) -> Interior:
    """``interior``, falling back to the pixel grid for an object too thin to hold a whole cell."""
    it = interior(obj, max_cells)
    if it.stride > 1 and not (it.clearance > 0).any():
        it = interior(obj, max(obj.mask.shape))
    return it


def _components(mask: np.ndarray, cls: int, min_area: int, y0: int, x0: int) -> list[Object]:
    lab, stats = components(mask, 8)
    out = []
    for k, (x, y, w, h, area) in enumerate(stats.tolist(), start=1):
        if area >= min_area:
            out.append(Object(cls, y0 + y, x0 + x, lab[y:y + h, x:x + w] == k))
    return out


def find_objects(sample: Sample, *, min_area: int = 10, background: bool = False,
                 per_class: bool = False) -> list[Object]:
    """The objects of ``sample`` to annotate, in a fixed order (foreground, then background)."""
    voc = sample.vocabulary
    sem = None if sample.semantic is None else sample.semantic.array
    objects: list[Object] = []
    if sem is None:
        return objects
    bg = voc.background
    counts = sample.semantic.counts
    fg = [int(c) for c in np.flatnonzero(counts[: len(voc)]) if c != bg]
    ext = extents(sem, fg)
    if per_class:
        for c in fg:
            if counts[c] >= min_area:
                sl = ext[c]
                objects.append(Object(c, sl[0].start, sl[1].start, sem[sl] == c))
    elif sample.instances is not None:
        inst = sample.instances
        for k, (m, c, crowd) in enumerate(zip(inst.masks, inst.classes, inst.crowd)):
            if crowd:
                continue
            own = m & (sem == c)
            rows = np.flatnonzero(own.any(1))
            if rows.size == 0:
                continue
            cols = np.flatnonzero(own[rows[0]:rows[-1] + 1].any(0))
            sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            crop = own[sl]
            # An occluded instance can fall apart: annotate its largest visible piece.
            lab, n = ndimage.label(crop, structure=_EIGHT)
            if n > 1:
                crop = lab == (np.bincount(lab.ravel())[1:].argmax() + 1)
            if crop.sum() >= min_area:
                objects.append(Object(int(c), int(sl[0].start), int(sl[1].start), crop, instance=k))
    else:
        for c in fg:
            sl = ext[c]
            objects.extend(_components(equal(sem[sl], c), c, min_area, sl[0].start, sl[1].start))
    if background and bg is not None and counts[bg] >= min_area:
        objects.append(Object(bg, 0, 0, sem == bg))
    return objects
