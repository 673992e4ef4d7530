"""Weak annotations -> weak label map ``(H, W) uint8``.

Values: class indices where the annotation labels a pixel, ``unlabelled``
where it says nothing, ``ignore`` where the pixel must take part in nothing.

* tags: every pixel unlabelled (the tags travel in their own column);
* boxes: outside every box is background; inside a box is unlabelled (its
  label is a candidate set: the box classes covering it plus background,
  which a consumer rebuilds from the ``boxes`` geometry); inside a crowd box
  not covered by a regular box is ignore;
* points: the pixel under each point, and every pixel whose centre lies
  within ``point_radius`` of it, takes the point's class;
* scribbles: every pixel whose centre lies within ``width / 2`` of the
  polyline, and the pixel under each vertex, takes the scribble's class.

A pixel ``(r, c)`` is inside a box when its centre ``(c + 0.5, r + 0.5)`` is,
so a box with integer edges covers exactly the pixels between them. Later
annotations overwrite earlier ones where they overlap.
"""

from __future__ import annotations

import numpy as np
from weaklabels.errors import SchemaError
from weaklabels.types import Boxes, Sample


def box_pixels(xyxy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel index ranges ``(N, 4) int`` = ``(c0, r0, c1, r1)`` (exclusive ends) covered by boxes."""
    a = np.asarray(xyxy, np.float64).reshape(-1, 4)
    lo = np.ceil(a[:, :2] - 0.5).astype(np.int64)
    hi = np.ceil(a[:, 2:] - 0.5).astype(np.int64)
    lo = np.clip(lo, 0, [width, height])
    hi = np.clip(hi, 0, [width, height])
    return np.concatenate([lo, hi], axis=1)


def rasterize_boxes(boxes: Boxes, height: int, width: int, background: int | None,
                    unlabelled: int, ignore: int) -> np.ndarray:
    out = np.full((height, width), unlabelled if background is None else background, np.uint8)
    pix = box_pixels(boxes.xyxy, height, width)
    for (c0, r0, c1, r1), crowd in zip(pix, boxes.crowd):
        if crowd:
            out[r0:r1, c0:c1] = ignore
    for (c0, r0, c1, r1), crowd in zip(pix, boxes.crowd):
        if not crowd:
            out[r0:r1, c0:c1] = unlabelled
    return out


def rasterize(sample: Sample, kind: str, *, point_radius: float = 0.0) -> np.ndarray:
    """The weak label map of ``sample``'s ``kind`` annotation, ``(H, W) uint8``."""
    voc, h, w = sample.vocabulary, sample.height, sample.width
    rec = f"image {sample.image_id!r}"
    ann = getattr(sample, kind, None) if kind in ("tags", "boxes", "points", "scribbles") else None
    if ann is None:
        raise SchemaError(f"{rec}: no {kind!r} annotation to rasterise")
    if kind == "tags":
        return np.full((h, w), voc.unlabelled, np.uint8)
    if kind == "boxes":
        return rasterize_boxes(ann, h, w, voc.background, voc.unlabelled, voc.ignore)
    out = np.full((h, w), voc.unlabelled, np.uint8)
    if kind == "points":
        for (x, y), c in zip(ann.xy, ann.classes):
            paint_stroke(out, np.array([[x, y]]), point_radius, int(c))
        return out
    for line, c, width in zip(ann.lines, ann.classes, ann.widths):
        paint_stroke(out, line, width / 2.0, int(c))
    return out


def paint_stroke(out: np.ndarray, line: np.ndarray, half_width: float, value: int) -> None:
    """Set ``value`` on every pixel whose centre lies within ``half_width`` of the polyline
    ``line (M, 2)`` (a single vertex is a disc), and on the pixel under each vertex.

    Exact and symmetric (a mirrored stroke labels the mirrored pixels), unlike a
    rasteriser's rounding; each segment is handled inside its own bounding box.
    """
    h, w = out.shape
    pts = np.asarray(line, np.float64).reshape(-1, 2)
    segs = [(pts[0], pts[0])] if len(pts) == 1 else list(zip(pts[:-1], pts[1:]))
    r2 = half_width * half_width + 1e-9
    for p, q in segs:
        lo = np.minimum(p, q) - half_width
        hi = np.maximum(p, q) + half_width
        c0, r0 = max(int(np.ceil(lo[0] - 0.5)), 0), max(int(np.ceil(lo[1] - 0.5)), 0)
        c1, r1 = min(int(np.floor(hi[0] - 0.5)), w - 1), min(int(np.floor(hi[1] - 0.5)), h - 1)
        if c1 < c0 or r1 < r0:
            continue
        cx = np.arange(c0, c1 + 1) + 0.5 - p[0]
        cy = (np.arange(r0, r1 + 1) + 0.5 - p[1])[:, None]
        d = q - p
        len2 = float(d @ d)
        if len2 > 0:
            t = np.clip((cx * d[0] + cy * d[1]) / len2, 0.0, 1.0)
            ex, ey = cx - t * d[0], cy - t * d[1]
        else:
            ex, ey = cx + 0 * cy, cy + 0 * cx
        sub = out[r0:r1 + 1, c0:c1 + 1]
        sub[ex * ex + ey * ey <= r2] = value
    cols = np.clip(np.floor(pts[:, 0]).astype(np.int64), 0, w - 1)
    rows = np.clip(np.floor(pts[:, 1]).astype(np.int64), 0, h - 1)
    out[rows, cols] = value


def rasterize_candidates(sample: Sample) -> np.ndarray:
    """Per-pixel candidate label sets of a boxes annotation, ``(C, H, W) bool``.

    Inside regular boxes: the classes of the boxes covering the pixel plus background; elsewhere
    empty (outside every box the weak label already says background; ignore boxes say ignore).
    This is the ``candidates`` input of ``segsets.build_segment_sets``.
    """
    voc, h, w = sample.vocabulary, sample.height, sample.width
    if sample.boxes is None:
        raise SchemaError(f"image {sample.image_id!r}: no boxes to rasterise candidate sets from")
    out = np.zeros((len(voc), h, w), bool)
    pix = box_pixels(sample.boxes.xyxy, h, w)
    inside = np.zeros((h, w), bool)
    for (c0, r0, c1, r1), cls, crowd in zip(pix, sample.boxes.classes, sample.boxes.crowd):
        if not crowd:
            out[cls, r0:r1, c0:c1] = True
            inside[r0:r1, c0:c1] = True
    if voc.background is not None:
        out[voc.background] = inside
    return out
