"""COCO instances reader (decoding through pycocotools).

Format (``instances_*.json``): ``images`` ``{id, file_name, width, height}``,
``annotations`` ``{id, image_id, category_id, segmentation, bbox [x, y, w, h],
iscrowd}``, ``categories`` ``{id, name}``. ``segmentation`` is a list of
polygons ``[x0, y0, x1, y1, ...]`` (pixel-edge floats), or an RLE dict
``{size: [h, w], counts}`` with ``counts`` a list (uncompressed) or a string.

Conventions:

* Category ids are non-contiguous; class ``i + 1`` is the ``i``-th category by
  ascending id, class 0 is background. ``Vocabulary.source_ids`` records the map.
* ``iscrowd = 1`` regions are mixed objects: they are ignore (255) in the
  semantic mask where no regular instance covers them, flagged ``crowd`` in
  instances and boxes, and never become a tag.
* Overlaps: instances are painted in order of decreasing area (ties: lower
  annotation id first), so a smaller object lying on a larger one stays visible.
* Polygons are checked before pycocotools sees them: at least 3 points and an
  even number of coordinates (a 4-number polygon would be taken for a box).
* Detection-only files (``bbox``, no ``segmentation``): ``masks="none"`` reads the
  boxes alone, as the VOC reader's ``masks="none"`` reads its XML boxes: samples
  have boxes (crowd ones as ignore boxes) and no mask, so they give boxes and tags,
  and no ``gt``. ``masks="auto"`` (the default) does so when the file has
  annotations and none of them has a ``segmentation`` (key absent or null).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from weaklabels.errors import CorruptFileError, MissingDependencyError, MissingFileError, SourceError
from weaklabels.sources.files import check_image, check_size, resolve_inside
from weaklabels.types import Boxes, ImageRef, InstanceMasks, Sample, SemanticMask, Vocabulary


def _mask_api():
    try:
        from pycocotools import mask
    except ImportError as err:  # pragma: no cover - dependency is declared
        raise MissingDependencyError("the COCO reader needs pycocotools: pip install pycocotools") from err
    return mask


def _check_records(records: list, key: str, fields: dict[str, type], path: Path | str) -> None:
    """Every record of ``key`` is an object with ``fields`` of the given types, ids unique."""
    seen: set = set()
    for k, r in enumerate(records):
        if not isinstance(r, dict):
            raise SourceError(f"{path}: {key}[{k}] is {type(r).__name__}; expected an object")
        for f, t in fields.items():
            v = r.get(f)
            # JSON booleans are ints to Python: refuse them as ids
            if not isinstance(v, t) or isinstance(v, bool):
                raise SourceError(f"{path}: {key}[{k}] has {f}={v!r}; expected {'an integer' if t is int else 'a string'}")
        if r["id"] in seen:
            raise SourceError(f"{path}: {key}[{k}] repeats id {r['id']}; expected unique ids")
        seen.add(r["id"])


def coco_vocabulary(categories: list[dict[str, Any]], path: Path | str) -> Vocabulary:
    _check_records(categories, "categories", {"id": int, "name": str}, path)
    cats = sorted(categories, key=lambda c: c["id"])
    names = ["background"] + [c["name"] for c in cats]
    if "background" in names[1:]:
        raise SourceError(f"{path}: a category is named 'background', which this reader reserves for class 0")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SourceError(f"{path}: category names {dup} occur more than once; expected unique names")
    return Vocabulary(tuple(names), background=0, source_ids=(None,) + tuple(c["id"] for c in cats))


class COCOSource:
    """Lazy COCO reader: the JSON index is kept, masks are decoded per item."""

    name = "coco"

    def __init__(self, annotations: str | Path, root: str | Path | None = None, *, split: str | None = None,
                 masks: str = "auto"):
        if masks not in ("auto", "none"):
            raise SourceError(f"masks={masks!r}; expected auto or none for COCO (none: the bbox fields alone)")
        self.annotations = Path(annotations)
        self.root = None if root is None else Path(root)
        self.split = split or self.annotations.stem.replace("instances_", "")
        try:
            with open(self.annotations, "rb") as f:
                data = json.load(f)
        except FileNotFoundError as err:
            raise MissingFileError(f"COCO annotations file {self.annotations} does not exist") from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CorruptFileError(f"{self.annotations}: not valid JSON: {err}") from err
        missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
        if missing:
            raise CorruptFileError(f"{self.annotations}: missing list(s) {missing}; expected a COCO instances file")
        self.vocabulary = coco_vocabulary(data["categories"], self.annotations)
        _check_records(data["images"], "images", {"id": int}, self.annotations)
        self.images = sorted(data["images"], key=lambda im: im["id"])
        known = {im["id"] for im in self.images}
        self.anns: dict[int, list[dict]] = defaultdict(list)
        self._orphans: list[tuple[str, str]] = []
        for a in data["annotations"]:
            if a.get("image_id") not in known:
                self._orphans.append((f"annotation {a.get('id')!r}",
                                      f"{self.annotations}: annotation {a.get('id')!r} refers to image_id "
                                      f"{a.get('image_id')!r}, which is not in 'images'"))
                continue
            self.anns[a["image_id"]].append(a)
        if masks == "auto":
            anns = [a for v in self.anns.values() for a in v]
            masks = "none" if anns and all(a.get("segmentation") is None for a in anns) else "auto"
        self.with_masks = masks != "none"
        del data

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int) -> str:
        return str(self.images[index]["id"])

    def describe(self) -> dict:
        d = {"reader": "coco", "annotations": str(self.annotations),
             "root": None if self.root is None else str(self.root), "split": self.split}
        # only when off: the fingerprints of existing (resumable) mask conversions stay the same
        return d if self.with_masks else {**d, "masks": "none"}

    def inputs(self) -> list[Path]:
        return [self.annotations] + ([] if self.root is None else [self.root])

    def load_errors(self) -> list[tuple[str, str]]:
        return list(self._orphans)

    def __getitem__(self, index: int) -> Sample:
        im = self.images[index]
        iid = str(im["id"])
        rec = f"image {iid!r}"
        try:
            h, w = int(im["height"]), int(im["width"])
        except (KeyError, TypeError, ValueError) as err:
            raise SourceError(f"{rec}: {self.annotations}: image record needs integer width and height") from err
        image = None
        if self.root is not None:
            name = im.get("file_name")
            if not isinstance(name, str) or not name:
                raise SourceError(f"{rec}: {self.annotations}: image record has no file_name")
            path = resolve_inside(self.root, name, rec)
            ih, iw, _ = check_image(path, rec)
            check_size("image file", (ih, iw), (h, w), path, rec, want_from="the annotations say")
            image = ImageRef(path=str(path))
        anns = sorted(self.anns.get(im["id"], []), key=lambda a: a.get("id", 0))
        masks, classes, crowd, xywh = [], [], [], []
        for a in anns:
            arec = f"{rec} annotation {a.get('id')!r}"
            try:
                classes.append(self.vocabulary.from_source_id(a.get("category_id")))
            except Exception as err:
                raise SourceError(f"{arec}: category_id {a.get('category_id')!r} is not in 'categories'") from err
            crowd.append(bool(a.get("iscrowd", 0)))
            if self.with_masks:
                masks.append(self._decode(a.get("segmentation"), h, w, arec))
            bb = a.get("bbox")
            if not (isinstance(bb, list) and len(bb) == 4):
                raise SourceError(f"{arec}: bbox {bb!r}; expected [x, y, width, height]")
            x, y, bw, bh = (float(v) for v in bb)
            # COCO boxes sometimes spill a fraction of a pixel past the image; clip, do not fail.
            x0, y0 = max(0.0, x), max(0.0, y)
            xywh.append([x0, y0, max(min(x + bw, w) - x0, 1e-3), max(min(y + bh, h) - y0, 1e-3)])
        cls = np.asarray(classes, np.int64)
        crowd_a = np.asarray(crowd, bool)
        boxes = Boxes.from_xywh(np.asarray(xywh, np.float64).reshape(-1, 4), cls, crowd=crowd_a, record=rec)
        if not self.with_masks:
            return Sample(iid, h, w, self.vocabulary, image=image, boxes=boxes)
        inst = np.stack(masks) if masks else np.zeros((0, h, w), bool)
        semantic = self._paint(inst, cls, crowd_a, anns)
        return Sample(iid, h, w, self.vocabulary, image=image, boxes=boxes,
                      semantic=SemanticMask(semantic, record=rec),
                      instances=InstanceMasks(inst, cls, crowd=crowd_a, record=rec))

    def _decode(self, seg: Any, h: int, w: int, rec: str) -> np.ndarray:
        mask = _mask_api()
        if isinstance(seg, list):
            if not seg:
                raise SourceError(f"{rec}: empty segmentation; expected polygons or an RLE dict (a detection-only "
                                  f"file converts with masks='none' / --masks none: the bbox fields alone)")
            for k, poly in enumerate(seg):
                if not isinstance(poly, list) or len(poly) % 2 or len(poly) < 6:
                    n = len(poly) if isinstance(poly, list) else type(poly).__name__
                    raise SourceError(f"{rec}: polygon {k} has {n} coordinates; expected an even count "
                                      f">= 6 (at least 3 points)")
                if not all(isinstance(v, (int, float)) and np.isfinite(v) for v in poly):
                    raise SourceError(f"{rec}: polygon {k} holds non-numeric coordinates")
            rles = mask.frPyObjects(seg, h, w)
            rle = mask.merge(rles)
        elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
            if list(seg["size"]) != [h, w]:
                raise SourceError(f"{rec}: RLE size {seg['size']}; the image is {h}x{w} (h x w)")
            rle = mask.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else \
                {"size": seg["size"], "counts": seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"]}
        elif seg is None:
            raise SourceError(f"{rec}: no segmentation; expected polygons or an RLE dict (a detection-only "
                              f"file converts with masks='none' / --masks none: the bbox fields alone)")
        else:
            raise SourceError(f"{rec}: segmentation {type(seg).__name__}; expected polygons or an RLE dict")
        try:
            return mask.decode(rle).astype(bool)
        except Exception as err:  # pycocotools raises bare errors on malformed RLE
            raise SourceError(f"{rec}: cannot decode RLE: {err}") from err

    def _paint(self, inst: np.ndarray, cls: np.ndarray, crowd: np.ndarray, anns: list[dict]) -> np.ndarray:
        h, w = inst.shape[1:]
        out = np.zeros((h, w), np.uint8)
        if self.vocabulary.background is None:  # pragma: no cover - COCO always has background here
            out[:] = self.vocabulary.ignore
        crowd_px = inst[crowd].any(0) if crowd.any() else None
        if crowd_px is not None:
            out[crowd_px] = self.vocabulary.ignore
        areas = inst.reshape(len(inst), h * w).sum(1)
        order = sorted((k for k in range(len(inst)) if not crowd[k]),
                       key=lambda k: (-int(areas[k]), anns[k].get("id", 0)))
        for k in order:
            out[inst[k]] = cls[k]
        return out


def read_coco(annotations: str | Path, root: str | Path | None = None, **kw) -> COCOSource:
    """Open a COCO instances JSON; ``root`` is the image folder (``None``: masks only)."""
    return COCOSource(annotations, root, **kw)


class COCOBoxAnnotations:
    """Human boxes from a COCO instances JSON (its ``bbox`` fields), matched to samples by
    image id or by file name stem."""

    kind = "boxes"

    def __init__(self, annotations: str | Path):
        self.path = Path(annotations)
        self._src = COCOSource(self.path)
        self._by_key: dict[str, int] = {}
        for im in self._src.images:
            self._by_key[str(im["id"])] = im["id"]
            if isinstance(im.get("file_name"), str):
                self._by_key[Path(im["file_name"]).stem] = im["id"]

    def describe(self) -> dict:
        return {"annotations": "coco_bbox", "path": str(self.path)}

    def inputs(self) -> list[Path]:
        return [self.path]

    def attach(self, sample: Sample) -> Sample:
        rec = f"image {sample.image_id!r}"
        if sample.image_id not in self._by_key:
            raise SourceError(f"{rec}: not in {self.path}")
        anns = sorted(self._src.anns.get(self._by_key[sample.image_id], []), key=lambda a: a.get("id", 0))
        voc = sample.vocabulary
        names = self._src.vocabulary.names
        xywh, cls, crowd = [], [], []
        for a in anns:
            try:
                name = names[self._src.vocabulary.from_source_id(a.get("category_id"))]
                cls.append(voc.index(name))
            except Exception as err:
                raise SourceError(f"{rec} annotation {a.get('id')!r}: category {a.get('category_id')!r}: {err}") from err
            x, y, w, h = (float(v) for v in a["bbox"])
            x0, y0 = max(0.0, x), max(0.0, y)
            xywh.append([x0, y0, max(min(x + w, sample.width) - x0, 1e-3), max(min(y + h, sample.height) - y0, 1e-3)])
            crowd.append(bool(a.get("iscrowd", 0)))
        boxes = Boxes.from_xywh(np.asarray(xywh, np.float64).reshape(-1, 4), np.asarray(cls, np.int64),
                                crowd=np.asarray(crowd, bool), record=rec)
        return sample.replace(boxes=boxes)
