"""Weak annotations -> weak label map ``(H, W) uint8``.

Values: class indices where the annotation labels a pixel, ``unlabelled``
where it says nothing, ``ignore`` where the pixel must take part in nothing.

* tags: every pixel unlabelled (the tags travel in their own column);
* boxes: outside every box is background; inside a box is unlabelled (its
  label is a candidate set: the box classes covering it plus background,
  which a consumer rebuilds from the ``boxes`` geometry); inside a crowd box
  not covered by a regular box is ignore;
* points: the pixel under each point (a disc of ``point_radius`` pixels
  around it when > 0) takes the point's class;
* scribbles: each polyline drawn with its width takes its class.

A pixel ``(r, c)`` is inside a box when its centre ``(c + 0.5, r + 0.5)`` is,
so a box with integer edges covers exactly the pixels between them. Later
annotations overwrite earlier ones where they overlap.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

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
    if kind == "points":
        out = np.full((h, w), voc.unlabelled, np.uint8)
        if point_radius <= 0:
            cols = np.floor(ann.xy[:, 0]).astype(np.int64)
            rows = np.floor(ann.xy[:, 1]).astype(np.int64)
            out[rows, cols] = ann.classes.astype(np.uint8)
            return out
        im = Image.fromarray(out, "L")
        draw = ImageDraw.Draw(im)
        r = point_radius
        for (x, y), c in zip(ann.xy, ann.classes):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=int(c))
        return np.asarray(im).copy()
    im = Image.new("L", (w, h), voc.unlabelled)
    draw = ImageDraw.Draw(im)
    for line, c, width in zip(ann.lines, ann.classes, ann.widths):
        # PIL draws in pixel-index space where pixel (c, r) is centred on (c, r):
        # shift our pixel-edge coordinates by half a pixel.
        pts = [(float(x) - 0.5, float(y) - 0.5) for x, y in line]
        if len(pts) == 1:
            x, y = pts[0]
            r = max(width / 2.0 - 0.5, 0.0)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=int(c))
        else:
            draw.line(pts, fill=int(c), width=max(1, int(math.ceil(width))), joint="curve")
    return np.asarray(im).copy()
