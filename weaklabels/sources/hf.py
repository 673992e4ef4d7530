"""HuggingFace ``datasets`` reader.

``root`` is a hub id (``user/name``, loaded with ``datasets.load_dataset``; the
hub dataset must be parquet / arrow / imagefolder: loading scripts are no
longer supported by datasets) or a local path: a ``save_to_disk`` folder, a
folder of parquet files (this library's own output included), a single parquet
file, or an imagefolder.

Image and mask columns are read as encoded bytes (``Image(decode=False)``) and
decoded here, so palette masks keep their indices. Class names come, in order,
from the ``class_names`` option, a ``vocabulary.json`` beside local data, or a
``ClassLabel`` feature (the ``classes_column`` option names it when the
dataset has several; a multi-label ``Sequence(ClassLabel)`` / ``List(ClassLabel)``
column gives its inner ``ClassLabel``'s names, and is used without the option
when no plain ``ClassLabel`` column exists); whichever it is,
``Vocabulary.from_names`` decides which class is background, as for the VOC
reader's ``class_names.txt``.

Image ids: the ``id_column`` option, else an ``image_id`` column, else the stem
of each image's file path (``train/2007_000032.jpg`` -> ``2007_000032``, as
imagefolder and datasets built from files keep it), so outputs map back to the
files; when a row has no path (bytes only), two stems are equal or a stem is not a plain
name (whitespace, a leading ``-``, ...), every id is ``{split}_{index:06d}`` instead
(``train_000000``, ...).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from weaklabels.errors import MissingDependencyError, MissingFileError, SourceError
from weaklabels.sources.files import check_image, check_size, open_image, read_label_png
from weaklabels.types import ImageRef, InstanceMasks, Sample, SemanticMask, Vocabulary, is_plain_id


log = logging.getLogger(__name__)


def _datasets():
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - dependency is declared
        raise MissingDependencyError("the hf reader needs HuggingFace datasets: pip install datasets") from err
    return datasets


def _load(root: str, split: str):
    """``_load_unchecked`` with the datasets library's own errors turned into ours (naming ``root``)."""
    try:
        return _load_unchecked(root, split)
    except (MissingFileError, SourceError):
        raise
    except FileNotFoundError as err:
        raise MissingFileError(f"{root}: no dataset found ({err})") from err
    except ConnectionError as err:
        raise MissingFileError(f"{root}: not a local path, and the hub could not be reached ({err})") from err
    except Exception as err:  # datasets / pyarrow raise many types for unreadable data
        raise SourceError(f"{root}: cannot load it as a HuggingFace dataset: {type(err).__name__}: {err}") from err


def _load_unchecked(root: str, split: str):
    ds_lib = _datasets()
    p = Path(root)
    if p.exists():
        if p.is_dir() and ((p / "state.json").exists() or (p / "dataset_dict.json").exists()):
            d = ds_lib.load_from_disk(str(p))
        elif p.is_file() and p.suffix == ".parquet":
            d = ds_lib.load_dataset("parquet", data_files={split: str(p)})
        elif p.is_dir() and list(p.rglob("*.parquet")):
            d = ds_lib.load_dataset("parquet", data_files={split: [str(f) for f in _split_files(p, split)]})
        else:
            d = ds_lib.load_dataset(str(p))
    else:
        d = ds_lib.load_dataset(root)
    if isinstance(d, ds_lib.DatasetDict):
        if split not in d:
            raise SourceError(f"{root}: no split {split!r}; available splits: {', '.join(d)}")
        d = d[split]
    return d


def _class_label(feature):
    """The ``ClassLabel`` of a column: the feature itself, or the inner one of a multi-label
    ``Sequence(ClassLabel)`` / ``List(ClassLabel)`` / ``[ClassLabel]``; ``None`` otherwise."""
    ds_lib = _datasets()
    if isinstance(feature, ds_lib.ClassLabel):
        return feature
    inner = feature[0] if isinstance(feature, list) and len(feature) == 1 else getattr(feature, "feature", None)
    return inner if isinstance(inner, ds_lib.ClassLabel) else None


def _split_files(folder: Path, split: str) -> list[Path]:
    """Parquet files of ``split`` in ``folder``: ``split.parquet``, shards ``split-NNNNN-of-NNNNN.parquet``
    or ``split-N.parquet``, or ``split/*.parquet``; a folder with no split names holds ``train``
    only (the hub convention). A split whose name extends this one (``train_aug``, ``train_2017``,
    ``test-2`` beside ``train`` / ``test``) is not matched."""
    own = re.compile(rf"{re.escape(split)}(-\d+-of-\d+|-\d+)?")
    files = sorted(f for f in folder.rglob("*.parquet") if own.fullmatch(f.stem) or f.parent.name == split)
    if files:
        return files
    splits = {f.stem.split("-")[0].split("_")[0] for f in folder.rglob("*.parquet")} & {
        "train", "validation", "val", "test"}
    if not splits and split == "train":
        return sorted(folder.rglob("*.parquet"))
    raise MissingFileError(f"{folder}: no parquet file for split {split!r}; splits seen: "
                           f"{', '.join(sorted(splits)) or 'train (no split names)'}")


class HFSource:
    name = "hf"

    def __init__(self, root: str | Path, split: str = "train", *, image_column: str = "image",
                 mask_column: str | None = "annotation", instance_column: str | None = None,
                 id_column: str | None = None, class_names: list[str] | None = None,
                 classes_column: str | None = None, vocabulary: Vocabulary | None = None):
        self.root, self.split = str(root), split
        ds_lib = _datasets()
        ds = _load(self.root, split)
        cols = list(ds.column_names)
        for what, col in (("image", image_column), ("mask", mask_column), ("instance", instance_column),
                          ("id", id_column)):
            if col is not None and col not in cols:
                raise SourceError(f"{self.root}: no {what} column {col!r}; columns: {', '.join(cols)}")
        if id_column is None and "image_id" in cols:
            id_column = "image_id"
        self.image_column, self.mask_column = image_column, mask_column
        self.instance_column, self.id_column = instance_column, id_column
        for col in (image_column, mask_column, instance_column):
            if col is not None and isinstance(ds.features[col], ds_lib.Image):
                ds = ds.cast_column(col, ds_lib.Image(decode=False))
        self.ds = ds
        self.vocabulary = vocabulary or self._vocabulary(ds, class_names, classes_column)
        self._ids = None if id_column is not None else self._path_ids()

    def _path_ids(self) -> list[str] | None:
        """Ids from the image files' name stems, or ``None`` (index ids) when a row has no path or
        two stems are equal (see the module docstring)."""
        import pyarrow.compute as pc

        col = self.image_column
        if col is None or not isinstance(self.ds.features[col], _datasets().Image):
            return None
        # Only the path field is read into Python: the image bytes stay in (memory-mapped) Arrow.
        table = self.ds.select_columns([col]).with_format("arrow")[:]
        paths = pc.struct_field(table.column(col), "path").to_pylist()
        if not paths or not all(isinstance(p, str) and p for p in paths):
            return None
        ids = [Path(p.replace("\\", "/")).stem for p in paths]
        counts = Counter(ids)
        if not all(is_plain_id(i) for i in ids):  # ids name files (--format voc) and fill list lines
            odd = next(i for i in ids if not is_plain_id(i))
            log.warning("%s split %r: image file name %r is not a plain id (whitespace, a leading '-', ...); "
                        "ids are %s_000000, ... instead of the names", self.root, self.split, odd, self.split)
            return None
        if len(counts) < len(ids) or not all(ids):
            twice = next((p for p, i in zip(paths, ids) if counts[i] > 1 or not i), "")
            log.warning("%s split %r: image file names repeat (e.g. %s); ids are %s_000000, ... instead of "
                        "the names", self.root, self.split, twice, self.split)
            return None
        return ids

    def _vocabulary(self, ds, class_names, classes_column) -> Vocabulary:
        ds_lib = _datasets()
        if class_names:
            return Vocabulary.from_names(class_names)
        p = Path(self.root)
        # our own output keeps vocabulary.json beside data/; accept the dataset folder or data/ itself
        cands = (p / "vocabulary.json",) + ((p.parent / "vocabulary.json",) if p.name == "data" else ())
        for cand in (cands if p.exists() else ()):
            if cand.is_file():
                return Vocabulary.load(cand)
        labels = {c: f for c, f in ds.features.items() if isinstance(f, ds_lib.ClassLabel)}
        multi = {c: _class_label(f) for c, f in ds.features.items() if c not in labels and _class_label(f)}
        if classes_column is not None:
            if classes_column not in labels and classes_column not in multi:
                found = list(labels) + [f"{c} (Sequence(ClassLabel))" for c in multi]
                raise SourceError(f"{self.root}: column {classes_column!r} is not a ClassLabel or "
                                  f"Sequence(ClassLabel); ClassLabel columns: {', '.join(found) or 'none'}")
            labels = {classes_column: labels[classes_column] if classes_column in labels else multi[classes_column]}
        elif not labels:  # plain ClassLabel columns first: a multi-label column only when there are none
            labels = multi
        if len(labels) == 1:
            return Vocabulary.from_names(next(iter(labels.values())).names)
        raise SourceError(
            f"{self.root}: cannot tell the class names ("
            f"{'several ClassLabel columns: ' + ', '.join(labels) if labels else 'no ClassLabel feature'}); "
            f"pass class_names (--class-names a,b,c) or a ClassLabel column (--classes-column)")

    def __len__(self) -> int:
        return len(self.ds)

    def image_id(self, index: int) -> str:
        if self.id_column is not None:
            return str(self.ds[index:index + 1][self.id_column][0])
        if self._ids is not None:
            return self._ids[index]
        return f"{self.split}_{index:06d}"

    def describe(self) -> dict:
        d = {"reader": "hf", "root": self.root, "split": self.split,
             "image_column": self.image_column, "mask_column": self.mask_column}
        # only when used: the fingerprints of conversions with index ids stay the same
        return d if self._ids is None else {**d, "ids": "image file name"}

    def inputs(self) -> list[Path]:
        # a hub id is not a local path: its cache belongs to datasets, not to any --out
        return [Path(self.root)] if Path(self.root).exists() else []

    def load_errors(self) -> list[tuple[str, str]]:
        return []

    @staticmethod
    def _bytes(cell: Any, what: str, rec: str) -> bytes | Path:
        if isinstance(cell, dict):
            if cell.get("bytes"):
                return cell["bytes"]
            if cell.get("path"):
                return Path(cell["path"])
        if isinstance(cell, (bytes, bytearray)):
            return bytes(cell)
        raise SourceError(f"{rec}: {what} cell holds {type(cell).__name__}; expected an image")

    def __getitem__(self, index: int) -> Sample:
        row = self.ds[index]
        iid = self.image_id(index)
        rec = f"image {iid!r} (row {index})"
        image = None
        if row[self.image_column] is not None:  # masks-only datasets (this library's included) have none
            img = self._bytes(row[self.image_column], "image", rec)
            if isinstance(img, Path):
                h, w, data = check_image(img, rec)
            else:
                im = open_image(img, rec)
                h, w, data = im.height, im.width, img
            image = ImageRef(data=data)
        elif self.mask_column is None:
            raise SourceError(f"{rec}: column {self.image_column!r} is empty and no mask column was given; "
                              f"expected an image or a mask")
        semantic = instances = None
        if self.mask_column is not None:
            arr = read_label_png(self._bytes(row[self.mask_column], "mask", rec), rec)
            if image is None:
                h, w = arr.shape
            check_size("mask", arr.shape, (h, w), f"column {self.mask_column!r}", rec)
            semantic = SemanticMask(arr, record=rec)
        if self.instance_column is not None and semantic is not None:
            obj = read_label_png(self._bytes(row[self.instance_column], "instance mask", rec), rec)
            check_size("instance mask", obj.shape, (h, w), f"column {self.instance_column!r}", rec)
            ids = np.flatnonzero(np.bincount(obj.ravel(), minlength=256))
            ids = ids[(ids != 0) & (ids != self.vocabulary.ignore)]
            masks = obj[None] == ids[:, None, None].astype(np.uint8)
            classes = []
            for m in masks:
                votes = np.bincount(semantic.array[m], minlength=256)[: len(self.vocabulary)]
                if self.vocabulary.background is not None:
                    votes[self.vocabulary.background] = 0
                classes.append(int(votes.argmax()))
            keep = [k for k, m in enumerate(masks) if classes[k] != self.vocabulary.background]
            instances = InstanceMasks(masks[keep], np.asarray(classes, np.int64)[keep], record=rec)
        return Sample(iid, h, w, self.vocabulary, image=image, semantic=semantic, instances=instances)


def read_hf(root: str | Path, split: str = "train", **kw) -> HFSource:
    """Open a HuggingFace dataset (hub id or local path); see ``HFSource``."""
    return HFSource(root, split, **kw)

