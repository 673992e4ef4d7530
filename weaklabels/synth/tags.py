"""Image tags: the foreground classes present in an image.

Protocol: a class is a tag when the full mask holds at least ``min_pixels`` of
its pixels (void and background never count). Without a mask, the classes of
non-crowd instances, then of non-crowd boxes, points or scribbles, are used;
a sample that already carries only tags keeps them.
"""

from __future__ import annotations

import numpy as np

from weaklabels.errors import SchemaError
from weaklabels.types import ImageTags, Sample


def synthesize_tags(sample: Sample, *, min_pixels: int = 1) -> ImageTags:
    voc = sample.vocabulary
    rec = f"image {sample.image_id!r}"
    if sample.semantic is not None:
        counts = sample.semantic.counts[: len(voc)]
        present = np.flatnonzero(counts >= max(1, min_pixels))
    elif sample.instances is not None:
        present = np.unique(sample.instances.classes[~sample.instances.crowd])
    elif sample.boxes is not None:
        present = np.unique(sample.boxes.classes[~sample.boxes.crowd])
    elif sample.points is not None:
        present = np.unique(sample.points.classes)
    elif sample.scribbles is not None:
        present = np.unique(sample.scribbles.classes)
    elif sample.tags is not None:
        return sample.tags
    else:
        raise SchemaError(f"{rec}: no mask, instances, boxes or tags to derive tags from")
    if voc.background is not None:
        present = present[present != voc.background]
    return ImageTags(present.astype(np.int64), record=rec)
