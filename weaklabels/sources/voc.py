"""PASCAL VOC devkit reader.

Layouts understood (``root`` may be the devkit, ``VOCdevkit`` or ``VOC2012``):

* ``JPEGImages/{id}.jpg``                      images (optional: masks-only mode
  takes the size from the mask)
* ``SegmentationClass/{id}.png``               palette PNG class indices, 255 = void
* ``SegmentationClassAug/{id}.png``            the SBD augmented masks (train_aug)
* ``SegmentationObject/{id}.png``              palette PNG instance ids, 255 = void
* ``Annotations/{id}.xml``                     boxes with difficult / truncated flags (and the
  ``<ignore>`` boxes ``--format voc`` writes, read as ``crowd``)
* ``ImageSets/Segmentation/{split}.txt``       split lists (also ``ImageSets/SegmentationAug``
  and ``ImageSets/{split}.txt``, as the shared SBD sample uses)
* ``class_names.txt``                          optional vocabulary (labelme's converter
  writes ``_background_`` for background and ``__ignore__`` for void)

Masks are read as palette indices, never colour-converted. XML boxes are
1-based inclusive integers; ``Boxes.from_voc_inclusive`` converts them once.
An instance's class is the majority class of its pixels in the class mask.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from weaklabels.errors import MissingFileError, SchemaError, SourceError, UnsafePathError
from weaklabels.sources.files import check_image, check_size, parse_xml, read_label_png
from weaklabels.types import Boxes, ImageRef, InstanceMasks, Sample, SemanticMask, Vocabulary

_SPLIT_DIRS = ("ImageSets/Segmentation", "ImageSets/SegmentationAug", "ImageSets/Main", "ImageSets")


def find_devkit(root: Path) -> Path:
    """The folder holding JPEGImages / Segmentation* inside ``root``."""
    for cand in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if any((cand / d).is_dir() for d in ("JPEGImages", "SegmentationClass", "SegmentationClassAug",
                                              "Annotations")):
            return cand
    if not root.exists():
        raise MissingFileError(f"VOC root {root} does not exist")
    raise MissingFileError(
        f"VOC root {root}: no JPEGImages, SegmentationClass, SegmentationClassAug or Annotations "
        f"folder in it, in VOCdevkit/VOC2012 or in VOC2012")


def read_class_names(path: Path) -> Vocabulary:
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    names = [n for n in names if n != "__ignore__"]
    try:
        return Vocabulary.from_names(names, source_ids=tuple(range(len(names))))
    except SchemaError as err:
        raise SourceError(f"{path}: {err}") from err


def _check_unique_ids(path: Path, lines: list[tuple[int, str]]) -> None:
    """An id listed twice is refused, as the COCO reader refuses a repeated image id and
    ``--format voc`` a repeated output id: repeats usually mean lists joined by mistake, which
    reading each id once would hide."""
    seen: dict[str, list[int]] = {}
    for k, iid in lines:
        seen.setdefault(iid, []).append(k)
    repeated = {i: ks for i, ks in seen.items() if len(ks) > 1}
    if repeated:
        first, where = next(iter(repeated.items()))
        raise SourceError(f"{path}: image id {first!r} is listed {len(where)} times (lines "
                          f"{', '.join(map(str, where[:5]))}{', ...' if len(where) > 5 else ''}); "
                          f"{len(repeated):,} id(s) are listed more than once; expected each id once")


class VOCSource:
    """Lazy PASCAL VOC reader. ``source[i]`` decodes item ``i`` only."""

    name = "voc"

    def __init__(self, root: str | Path, split: str = "train", *, masks: str = "auto",
                 vocabulary: Vocabulary | None = None, instances: bool = True, boxes: bool = True):
        self.root = Path(root)
        self.devkit = find_devkit(self.root)
        self.split = split
        names_file = self.devkit / "class_names.txt"
        self.vocabulary = vocabulary or (read_class_names(names_file) if names_file.exists() else Vocabulary.voc())
        self.mask_dir = self._mask_dir(masks)
        self.ids = self._read_ids(split)
        self.has_images = (self.devkit / "JPEGImages").is_dir()
        self.object_dir = self.devkit / "SegmentationObject" if instances else None
        self.xml_dir = self.devkit / "Annotations" if boxes else None
        if self.mask_dir is None and not self.has_images:
            raise MissingFileError(f"{self.devkit}: neither images nor class masks; nothing to read")

    # -- index
    def _mask_dir(self, masks: str) -> Path | None:
        if masks not in ("auto", "SegmentationClass", "SegmentationClassAug", "none"):
            raise SourceError(f"masks={masks!r}; expected auto, SegmentationClass, SegmentationClassAug or none")
        if masks == "none":
            return None
        if masks != "auto":
            d = self.devkit / masks
            if not d.is_dir():
                raise MissingFileError(f"{d} does not exist")
            return d
        plain, aug = self.devkit / "SegmentationClass", self.devkit / "SegmentationClassAug"
        if aug.is_dir() and (not plain.is_dir() or "aug" in self.split):
            return aug
        return plain if plain.is_dir() else None

    def _read_ids(self, split: str) -> list[str]:
        if split == "all":
            folder = self.mask_dir or self.devkit / "JPEGImages"
            return sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        for d in _SPLIT_DIRS:
            f = self.devkit / d / f"{split}.txt"
            if f.is_file():
                lines = [(k, ln.split()[0]) for k, ln in enumerate(f.read_text().splitlines(), 1) if ln.strip()]
                _check_unique_ids(f, lines)
                return [i for _, i in lines]
        found = sorted({p.stem for d in _SPLIT_DIRS if (self.devkit / d).is_dir()
                        for p in (self.devkit / d).glob("*.txt")})
        raise MissingFileError(
            f"{self.devkit}: no split file {split}.txt under {', '.join(_SPLIT_DIRS)}; "
            f"available splits: {', '.join(found + ['all']) }")

    def __len__(self) -> int:
        return len(self.ids)

    def image_id(self, index: int) -> str:
        return self.ids[index]

    def describe(self) -> dict:
        return {"reader": "voc", "root": str(self.root), "split": self.split,
                "masks": None if self.mask_dir is None else self.mask_dir.name}

    def inputs(self) -> list[Path]:
        return [self.root]

    def load_errors(self) -> list[tuple[str, str]]:
        return []

    # -- items
    def __getitem__(self, index: int) -> Sample:
        iid = self.ids[index]
        rec = f"image {iid!r}"
        if not iid or "/" in iid or "\\" in iid or iid in (".", ".."):
            raise UnsafePathError(f"{rec}: an image id in the split file must be a plain file name")
        image = None
        size = None
        if self.has_images:
            path = self.devkit / "JPEGImages" / f"{iid}.jpg"
            h, w, _ = check_image(path, rec)
            size = (h, w)
            image = ImageRef(path=str(path))
        semantic = None
        if self.mask_dir is not None:
            mpath = self.mask_dir / f"{iid}.png"
            arr = read_label_png(mpath, rec)
            if size is not None:
                check_size("mask", arr.shape, size, mpath, rec)
            size = arr.shape
            semantic = SemanticMask(arr, record=f"{rec} ({mpath})")
        instances = None
        if self.object_dir is not None and semantic is not None:
            opath = self.object_dir / f"{iid}.png"
            if opath.is_file():
                instances = self._instances(opath, semantic.array, rec)
        boxes, notes = None, []
        if self.xml_dir is not None:
            xpath = self.xml_dir / f"{iid}.xml"
            if xpath.is_file():
                try:
                    boxes, xml_size = self._boxes(xpath, rec)
                    size = size or xml_size
                    if size is not None:
                        boxes, note = _clip_boxes(boxes, size, xpath, rec)
                        notes += note
                except SourceError as err:
                    # with a class mask every protocol derives its labels (boxes and tags included)
                    # from the mask: a bad XML file costs only its boxes, with a note
                    if semantic is None:
                        raise
                    boxes = None
                    notes.append(f"{err}; its boxes were left out (the class mask is used)")
        if size is None:
            raise MissingFileError(f"{rec}: no image, mask or annotation file gives its size")
        return Sample(iid, int(size[0]), int(size[1]), self.vocabulary, image=image,
                      boxes=boxes, semantic=semantic, instances=instances, notes=tuple(notes))

    def _instances(self, path: Path, cls_map: np.ndarray, rec: str) -> InstanceMasks:
        obj = read_label_png(path, rec)
        check_size("object mask", obj.shape, cls_map.shape, path, rec)
        ignore = self.vocabulary.ignore
        ids = np.flatnonzero(np.bincount(obj.ravel(), minlength=256))
        ids = ids[(ids != 0) & (ids != ignore)]
        masks = obj[None] == ids[:, None, None].astype(np.uint8)
        classes = []
        for k, m in zip(ids, masks):
            votes = np.bincount(cls_map[m], minlength=256)
            votes[ignore] = 0
            if self.vocabulary.background is not None:
                votes[self.vocabulary.background] = 0
            if votes.sum() == 0:
                raise SourceError(f"{rec}: instance {int(k)} in {path} covers no foreground class pixel")
            classes.append(int(votes.argmax()))
        return InstanceMasks(masks, np.asarray(classes, np.int64), record=rec)

    def _boxes(self, path: Path, rec: str) -> tuple[Boxes, tuple[int, int] | None]:
        return read_voc_boxes(path, self.vocabulary, rec)


def _clip_boxes(boxes: Boxes, size: tuple[int, int], path: Path, rec: str) -> tuple[Boxes, list[str]]:
    """Boxes clipped to the ``(h, w)`` image (as the COCO reader does: annotation tools sometimes
    spill a pixel past the edge), with a note naming the file; a box left empty is an error."""
    h, w = size
    xyxy = boxes.xyxy.copy()
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    moved = np.flatnonzero((xyxy != boxes.xyxy).any(1))
    if not moved.size:
        return boxes, []
    empty = np.flatnonzero((xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1]))
    if empty.size:
        k = int(empty[0])
        raise SourceError(f"{rec}: {path} object {k}: box {boxes.xyxy[k].tolist()} lies outside the "
                          f"{w}x{h} image")
    note = f"{path}: boxes {moved.tolist()} went past the {w}x{h} image; clipped"
    return replace(boxes, xyxy=xyxy), [note]


def read_voc_boxes(path: Path, vocabulary: Vocabulary, rec: str) -> tuple[Boxes, tuple[int, int] | None]:
    """Boxes of a VOC XML file (1-based inclusive -> pixel edges) and its ``<size>`` (h, w) if given.
    ``<ignore>`` elements (written by ``--format voc`` for ignore boxes) are read as ``crowd`` boxes."""
    root = parse_xml(path, rec)
    size = None
    s = root.find("size")
    if s is not None and s.findtext("width") and s.findtext("height"):
        try:
            size = (int(float(s.findtext("height"))), int(float(s.findtext("width"))))
        except ValueError as err:
            raise SourceError(f"{rec}: {path}: bad <size>: {err}") from err
    coords, classes, diff, trunc, crowd = [], [], [], [], []
    # <ignore> (a child of <annotation>) is the ignore box --format voc writes: not a VOC object
    ignores = {id(e) for e in root if e.tag == "ignore"}
    for k, o in enumerate(e for e in root.iter() if e.tag == "object" or id(e) in ignores):
        name = (o.findtext("name") or "").strip()
        try:
            classes.append(vocabulary.index(name))
        except SchemaError as err:
            raise SourceError(f"{rec}: {path} {o.tag} {k}: {err}") from err
        bb = o.find("bndbox")
        try:
            coords.append([float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")])
        except (AttributeError, TypeError, ValueError) as err:
            raise SourceError(f"{rec}: {path} {o.tag} {k}: <bndbox> needs numeric xmin ymin xmax ymax") from err
        diff.append((o.findtext("difficult") or "0").strip() == "1")
        trunc.append((o.findtext("truncated") or "0").strip() == "1")
        crowd.append(o.tag == "ignore")
    try:
        b = Boxes.from_voc_inclusive(np.asarray(coords, np.float64).reshape(-1, 4), classes,
                                     difficult=diff, truncated=trunc, crowd=crowd, record=rec)
    except SchemaError as err:
        raise SourceError(f"{path}: {err}") from err
    return b, size


class VOCBoxAnnotations:
    """Human boxes from a folder of VOC XML files ``{image_id}.xml``."""

    kind = "boxes"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise MissingFileError(f"VOC annotation folder {self.folder} does not exist")

    def describe(self) -> dict:
        return {"annotations": "voc_xml", "folder": str(self.folder)}

    def inputs(self) -> list[Path]:
        return [self.folder]

    def attach(self, sample: Sample) -> Sample:
        rec = f"image {sample.image_id!r}"
        path = self.folder / f"{sample.image_id}.xml"
        boxes, _ = read_voc_boxes(path, sample.vocabulary, rec)
        boxes, notes = _clip_boxes(boxes, sample.size, path, rec)
        return sample.replace(boxes=boxes, notes=sample.notes + tuple(notes))


def read_voc(root: str | Path, split: str = "train", **kw) -> VOCSource:
    """Open a VOC devkit; see ``VOCSource``."""
    return VOCSource(root, split, **kw)
