"""DensePose-COCO reader: sampled body-surface points as typed points.

Format: a COCO instances JSON whose person annotations carry ``dp_x``,
``dp_y`` (point coordinates scaled so the person box is 256 x 256), ``dp_I``
(fine surface patch 1..24) and ``dp_masks`` (14 part masks, RLE at 256 x 256).
A point's image position is ``x = bx + dp_x * bw / 256``, ``y = by + dp_y * bh / 256``
(pixel-edge floats, as the DensePose tools compute it).

Fine patches map to the 15 coarse classes SPML uses (DensePose's own coarse
segmentation order; see the DensePose-COCO data format):

    0 background, 1 torso (patches 1, 2), 2 right hand (3), 3 left hand (4),
    4 left foot (5), 5 right foot (6), 6 right thigh (7, 9), 7 left thigh (8, 10),
    8 right leg (11, 13), 9 left leg (12, 14), 10 left upper arm (15, 17),
    11 right upper arm (16, 18), 12 left forearm (19, 21), 13 right forearm (20, 22),
    14 head (23, 24)

``FLIP_PAIRS`` lists the classes a horizontal flip swaps. When an annotation
has ``dp_masks``, the part masks, resized to its box with nearest neighbour,
form the sample's semantic mask (later annotations paint over earlier ones).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from weaklabels.errors import SourceError
from weaklabels.sources.coco import COCOSource, _mask_api
from weaklabels.types import Points, Sample, SemanticMask, Vocabulary

DENSEPOSE_CLASSES = (
    "background", "torso", "right_hand", "left_hand", "left_foot", "right_foot", "right_thigh",
    "left_thigh", "right_leg", "left_leg", "left_upper_arm", "right_upper_arm", "left_forearm",
    "right_forearm", "head",
)
# dp_I (1..24) -> coarse class (1..14)
FINE_TO_COARSE = np.array([0, 1, 1, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 14],
                          np.int64)
FLIP_PAIRS = ((2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13))


def densepose_vocabulary() -> Vocabulary:
    return Vocabulary(DENSEPOSE_CLASSES, background=0)


def flip_permutation() -> np.ndarray:
    """``(15,)`` class index map of a horizontal flip (left and right parts swap)."""
    perm = np.arange(len(DENSEPOSE_CLASSES))
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


class DensePoseSource(COCOSource):
    """COCO-format DensePose annotations; ``sample.points`` holds the part points."""

    name = "densepose"

    def __init__(self, annotations, root=None, *, split=None):
        super().__init__(annotations, root, split=split)
        self.vocabulary = densepose_vocabulary()

    def describe(self) -> dict:
        return {**super().describe(), "reader": "densepose"}

    def __getitem__(self, index: int) -> Sample:
        base = super().__getitem__(index) if self.root is not None else None
        im = self.images[index]
        iid = str(im["id"])
        rec = f"image {iid!r}"
        h, w = int(im["height"]), int(im["width"])
        xy, cls = [], []
        sem = np.zeros((h, w), np.uint8)
        has_masks = False
        for a in sorted(self.anns.get(im["id"], []), key=lambda a: a.get("id", 0)):
            if "dp_x" not in a:
                continue
            arec = f"{rec} annotation {a.get('id')!r}"
            try:
                bx, by, bw, bh = (float(v) for v in a["bbox"])
                dx, dy = np.asarray(a["dp_x"], np.float64), np.asarray(a["dp_y"], np.float64)
                di = np.asarray(a["dp_I"], np.int64)
            except (KeyError, TypeError, ValueError) as err:
                raise SourceError(f"{arec}: needs bbox, dp_x, dp_y and dp_I") from err
            if not (dx.shape == dy.shape == di.shape):
                raise SourceError(f"{arec}: dp_x, dp_y, dp_I have lengths {dx.size}, {dy.size}, {di.size}")
            if di.size and (di.min() < 1 or di.max() > 24):
                raise SourceError(f"{arec}: dp_I values {sorted(set(di.tolist()))}; expected 1..24")
            x = np.clip(bx + dx * bw / 256.0, 0, np.nextafter(w, 0))
            y = np.clip(by + dy * bh / 256.0, 0, np.nextafter(h, 0))
            xy.append(np.stack([x, y], 1))
            cls.append(FINE_TO_COARSE[di])
            if a.get("dp_masks"):
                has_masks = True
                self._paint_parts(sem, a["dp_masks"], bx, by, bw, bh, arec)
        points = Points(np.concatenate(xy) if xy else np.zeros((0, 2)),
                        np.concatenate(cls) if cls else np.zeros(0, np.int64), record=rec)
        return Sample(iid, h, w, self.vocabulary, image=None if base is None else base.image, points=points,
                      semantic=SemanticMask(sem, record=rec) if has_masks else None)

    @staticmethod
    def _paint_parts(sem: np.ndarray, dp_masks: list, bx: float, by: float, bw: float, bh: float,
                     rec: str) -> None:
        mask = _mask_api()
        parts = np.zeros((256, 256), np.uint8)
        for k, rle in enumerate(dp_masks, start=1):
            if rle:
                try:
                    m = mask.decode(rle if isinstance(rle["counts"], bytes) else
                                    {"size": rle["size"], "counts": rle["counts"].encode()})
                except Exception as err:
                    raise SourceError(f"{rec}: dp_masks[{k - 1}] cannot be decoded: {err}") from err
                parts[m > 0] = k
        x0, y0 = int(round(bx)), int(round(by))
        x1, y1 = min(int(round(bx + bw)), sem.shape[1]), min(int(round(by + bh)), sem.shape[0])
        if x1 <= x0 or y1 <= y0:
            return
        resized = np.asarray(Image.fromarray(parts).resize((x1 - x0, y1 - y0), Image.NEAREST))
        region = sem[y0:y1, x0:x1]
        region[resized > 0] = resized[resized > 0]


def read_densepose(annotations, root=None, **kw) -> DensePoseSource:
    return DensePoseSource(annotations, root, **kw)
