"""Boxes: the tight box of each object.

Protocol:

* with instance masks (VOC ``SegmentationObject``, COCO instances): one box per
  non-crowd instance, the tight pixel-edge box of its visible pixels;
* with only a class mask: one box per connected component (8-connected by
  default) of each foreground class, void (255) separating components;
  components under ``min_area`` pixels (default 10) are dropped, because VOC
  masks hold thousands of speckles (half of the 4-connected components of the
  shared 2,000 masks are under 10 px) that no annotator would box;
* with neither: the source's own boxes.

Regions no box may call background become *ignore boxes* (``crowd=True``,
rasterised as ignore unless a regular box covers them): COCO crowd regions,
components under ``min_area``, and the connected components of void (255,
labelled with the background class). So every pixel the weak label calls
background is background in the full mask.

Implementation: each present class's (and void's) extent, then its components
and their boxes inside that extent only, all from OpenCV (``components.py``).
"""

from __future__ import annotations

import numpy as np

from weaklabels.errors import SchemaError
from weaklabels.synth.components import components, equal, extents
from weaklabels.types import Boxes, Sample



def _tight(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def boxes_from_instances(sample: Sample) -> Boxes:
    """One box per instance; crowd instances give ignore boxes (``crowd=True``)."""
    inst = sample.instances
    xyxy, cls, crowd = [], [], []
    for m, c, cr in zip(inst.masks, inst.classes, inst.crowd):
        b = _tight(m)
        if b is not None:
            xyxy.append(b)
            cls.append(int(c))
            crowd.append(bool(cr))
    return Boxes(np.asarray(xyxy, np.float64).reshape(-1, 4), np.asarray(cls, np.int64),
                 crowd=np.asarray(crowd, bool), record=f"image {sample.image_id!r}")


def boxes_from_components(mask: np.ndarray, num_classes: int, background: int | None, *,
                          min_area: int = 10, connectivity: int = 8,
                          ignore: int | None = None,
                          present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of the class components of ``mask (H, W) uint8``.

    Returns ``(xyxy (N, 4) float64, classes (N,) int64, ignored (N,) bool)``: components of at
    least ``min_area`` pixels are regular boxes; smaller ones, and (when ``ignore`` is given) the
    components of void, are ignore boxes, so no pixel of them is called background.
    ``present``: the mask's ``(256,)`` label counts when already known.
    """
    if connectivity not in (4, 8):
        raise SchemaError(f"connectivity={connectivity}; expected 4 or 8")
    xyxy, cls, ignored = [], [], []
    counts = np.bincount(mask.ravel(), minlength=256) if present is None else present
    present = np.flatnonzero(counts)
    wanted = [int(v) for v in present if v < num_classes and v != background]
    if ignore is not None and ignore in present:
        wanted.append(ignore)
    todo = [(v, sl, v if v != ignore else (-1 if background is None else background))
            for v, sl in extents(mask, wanted).items()]
    for value, sl, c in todo:
        _, stats = components(equal(mask[sl], value), connectivity)
        y0, x0 = sl[0].start, sl[1].start
        for x, y, w, h, area in stats.tolist():
            xyxy.append((x0 + x, y0 + y, x0 + x + w, y0 + y + h))
            cls.append(c)
            ignored.append(value == ignore or area < min_area)
    return (np.asarray(xyxy, np.float64).reshape(-1, 4), np.asarray(cls, np.int64),
            np.asarray(ignored, bool))


def _void_boxes(sample: Sample, connectivity: int) -> Boxes | None:
    voc = sample.vocabulary
    if sample.semantic is None or voc.background is None or not sample.semantic.counts[voc.ignore]:
        return None
    mask = sample.semantic.array
    sl = extents(mask, [voc.ignore])[voc.ignore]
    _, stats = components(equal(mask[sl], voc.ignore), connectivity)
    y0, x0 = sl[0].start, sl[1].start
    xyxy = [(x0 + x, y0 + y, x0 + x + w, y0 + y + h) for x, y, w, h, _ in stats.tolist()]
    n = len(xyxy)
    return Boxes(np.asarray(xyxy, np.float64).reshape(-1, 4), np.full(n, voc.background), crowd=np.ones(n, bool))


def _concat(a: Boxes, b: Boxes | None, rec: str) -> Boxes:
    if b is None or not len(b):
        return a
    return Boxes(np.concatenate([a.xyxy, b.xyxy]), np.concatenate([a.classes, b.classes]),
                 difficult=np.concatenate([a.difficult, b.difficult]),
                 truncated=np.concatenate([a.truncated, b.truncated]),
                 crowd=np.concatenate([a.crowd, b.crowd]), record=rec)


def synthesize_boxes(sample: Sample, *, min_area: int = 10, connectivity: int = 8) -> Boxes:
    rec = f"image {sample.image_id!r}"
    voc = sample.vocabulary
    if sample.instances is not None:
        return _concat(boxes_from_instances(sample), _void_boxes(sample, connectivity), rec)
    if sample.semantic is not None:
        has_void = voc.background is not None and bool(sample.semantic.counts[voc.ignore])
        xyxy, cls, ignored = boxes_from_components(sample.semantic.array, len(voc), voc.background,
                                                   present=sample.semantic.counts,
                                                   min_area=min_area, connectivity=connectivity,
                                                   ignore=voc.ignore if has_void else None)
        return Boxes(xyxy, cls, crowd=ignored, record=rec)
    if sample.boxes is not None:
        return sample.boxes
    raise SchemaError(f"{rec}: no mask, instances or boxes to derive boxes from")
