"""Data: the datasets `weaklabels convert` writes, augmented as SPML trains.

A converted dataset is a folder of parquet shards (``data/SPLIT-*.parquet``)
with ``vocabulary.json`` beside them; columns are read per item, so memory
does not grow with the dataset. Training items (``SPML.md`` section 5): random
scale (bilinear image, nearest labels), horizontal flip (left / right classes
swapped by ``flip_pairs``), padding with ignore, random crop. Image tags come
from the full, uncropped annotation. Thin labels (points, scribbles) are grown
by ``dilate`` pixels into unlabelled pixels so they survive the stride-4 grid.

Toy data (``ShapesConfig``): the shapes scenes of ``weaklabels sample shapes``,
converted with weaklabels into the run directory.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from scipy import ndimage

from weaklabels.raster import box_pixels
from weaklabels.types import Vocabulary

log = logging.getLogger(__name__)

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def _png(cell: dict | None) -> np.ndarray | None:
    if cell is None:
        return None
    return np.array(Image.open(io.BytesIO(cell["bytes"])))


def _rgb(cell: dict | None, shape: tuple[int, int]) -> np.ndarray:
    if cell is None:  # masks-only data: a grey image keeps shapes consistent
        return np.full((*shape, 3), 128, np.uint8)
    return np.array(Image.open(io.BytesIO(cell["bytes"])).convert("RGB"))


def dilate_labels(label: np.ndarray, radius: float, num_classes: int, unlabelled: int) -> np.ndarray:
    """Unlabelled pixels within ``radius`` of a labelled pixel take its class (the nearest one)."""
    if radius <= 0:
        return label
    labelled = label < num_classes
    if not labelled.any():
        return label
    dist, (iy, ix) = ndimage.distance_transform_edt(~labelled, return_indices=True)
    grow = (dist <= radius) & (label == unlabelled)
    out = label.copy()
    out[grow] = label[iy[grow], ix[grow]]
    return out


def _check_kind(folder: Path, kind: str) -> None:
    """The weak labels in ``folder`` are of ``kind`` (SPML's points setting may train on one-point
    scribbles, ``--to scribbles --length-ratio 0``): another kind would silently train the wrong
    pseudo-label path."""
    import json

    from weaklabels.convert import MARKER
    from weaklabels.errors import SchemaError

    marker = folder / MARKER
    if not marker.is_file():  # written by an older weaklabels, or by hand: nothing to compare
        return
    options = json.loads(marker.read_text()).get("options", {})
    written = options.get("kind")
    if kind == "points" and written == "scribbles":
        if options.get("given") or options.get("length_ratio", 0) != 0:
            raise SchemaError(f"{folder} holds full scribbles (see {MARKER}: length_ratio="
                              f"{options.get('length_ratio')}, given={options.get('given')}) but data.kind=points "
                              f"trains on one point per scribble; convert with --to scribbles --length-ratio 0 "
                              f"(or --to points), or set data.kind=scribbles")
        return
    if written and written != kind:
        raise SchemaError(f"{folder} holds {written} weak labels (see {MARKER}) but data.kind={kind}; "
                          f"set data.kind={written} or convert the data with --to {kind}")


def missing_values(files: list[Path], column: str) -> int:
    """Rows of the parquet shards without ``column`` (an image or label struct whose bytes are
    null), from the statistics pyarrow writes in each row group, else by reading the column."""
    leaf, missing = f"{column}.bytes", 0
    for f in files:
        md = pq.ParquetFile(f).metadata
        paths = [md.schema.column(j).path for j in range(md.num_columns)]
        if leaf not in paths:
            missing += md.num_rows
            continue
        stats = [md.row_group(g).column(paths.index(leaf)).statistics for g in range(md.num_row_groups)]
        if all(s is not None and s.has_null_count for s in stats):
            missing += sum(s.null_count for s in stats)
        else:
            missing += pq.read_table(f, columns=[column]).column(column).combine_chunks().field("bytes").null_count
    return missing


class ConvertedDataset(torch.utils.data.Dataset):
    """Items of one split of a converted dataset; train mode augments and crops."""

    def __init__(self, folder: str | Path, split: str, *, kind: str, train: bool, crop: int = 512,
                 scale: tuple[float, float] = (0.5, 1.5), flip: bool = True,
                 flip_pairs: list[list[int]] | None = None, dilate: float = 0.0,
                 full_supervision: bool = False, seed: int = 0, labels: str = "auto"):
        self.folder = Path(folder)
        vocab_file = self.folder / "vocabulary.json"
        if not vocab_file.is_file():
            raise FileNotFoundError(f"{self.folder} is not a dataset written by weaklabels convert "
                                    f"(no vocabulary.json); run `weaklabels convert ... --out {self.folder}`")
        self.vocabulary = Vocabulary.load(vocab_file)
        if train and not full_supervision:
            _check_kind(self.folder, kind)
        self.files = sorted((self.folder / "data").glob(f"{split}-*.parquet"))
        if not self.files:
            if (self.folder / f"{split}.txt").is_file() and not (self.folder / "data").is_dir():
                raise FileNotFoundError(f"{self.folder} was written with `weaklabels convert --format voc` (PNGs and "
                                        f"list files); the trainer reads the parquet format: convert again "
                                        f"without --format voc (or with --format hf)")
            splits = sorted({f.name.split("-")[0] for f in (self.folder / "data").glob("*.parquet")})
            raise FileNotFoundError(f"{self.folder}: no parquet shard for split {split!r}"
                                    + (f"; it has {', '.join(map(repr, splits))}" if splits else ""))
        self.rows = [(f, r) for f in self.files for r in range(pq.ParquetFile(f).metadata.num_rows)]
        self.split = split
        self.kind, self.train, self.crop, self.scale = kind, train, crop, scale
        self.flip, self.dilate, self.full = flip, dilate, full_supervision
        self.seed = seed
        self.epoch = 0
        # evaluation items carry `gt`; labels="weak" gives them the weak label instead (retrieval memory)
        self.labels = labels
        perm = np.arange(256)
        for a, b in flip_pairs or []:
            perm[a], perm[b] = b, a
        self.flip_perm = perm.astype(np.uint8)
        self._tables: dict[Path, object] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def fingerprint(self) -> str:
        """Identifies what this split reads by content, cheaply: each shard's name, size and parquet
        footer (row counts, every column chunk's offsets, sizes and statistics: a re-conversion with
        other labels changes them), and the vocabulary. Stages trained on other data are then not
        reused, while a copy of the same files (other modification times, another node of a
        data-parallel run) gives the same fingerprint."""
        h = hashlib.sha256()
        for f in self.files:
            with open(f, "rb") as fh:
                fh.seek(-8, os.SEEK_END)
                tail = fh.read(8)          # footer length (4 bytes, little endian) + b"PAR1"
                n = int.from_bytes(tail[:4], "little")
                fh.seek(-(8 + n), os.SEEK_END)
                h.update(f"{f.name}:{f.stat().st_size};".encode() + fh.read(n))
        h.update((self.folder / "vocabulary.json").read_bytes())
        return h.hexdigest()[:16]

    def require(self, column: str, why: str) -> None:
        """Raise ``SchemaError`` unless every item of the split has ``column`` (image, gt)."""
        from weaklabels.errors import SchemaError

        missing = missing_values(self.files, column)
        if missing:
            raise SchemaError(f"{self.folder}: {missing} of {len(self)} items of split {self.split!r} have no "
                              f"{column}; {why}")

    def _row(self, index: int) -> dict:
        f, r = self.rows[index]
        if f not in self._tables:  # opened lazily in each worker process, memory-mapped
            self._tables[f] = pq.read_table(f, memory_map=True)
        return self._tables[f].slice(r, 1).to_pylist()[0]

    def __getitem__(self, index: int) -> dict:
        row = self._row(index)
        C = len(self.vocabulary)
        if self.labels == "weak":
            # thin labels grown as in training, or most points vanish on the stride-4 grid
            label = dilate_labels(_png(row["weak_label"]), self.dilate, C, self.vocabulary.unlabelled)
        elif self.full or not self.train:
            label = _png(row["gt"])
            if label is None:
                raise ValueError(f"{self.folder}: item {row['image_id']!r} has no gt; "
                                 f"full supervision and evaluation need a split converted with --gt always")
        else:
            label = _png(row["weak_label"])
        h, w = label.shape
        image = _rgb(row["image"], (h, w))
        if not self.train:
            return {"image": normalize(image), "gt": torch.from_numpy(label.astype(np.int64)),
                    "rgb": torch.from_numpy(image), "image_id": row["image_id"]}
        regions = _png(row["regions"])
        if regions is None:
            from weaklabels.regions import compute_regions

            regions = compute_regions(image)  # not stored with the dataset: compute it here
        regions = regions.astype(np.int32)
        if not self.full:
            label = dilate_labels(label, self.dilate, C, self.vocabulary.unlabelled)
        tags = np.zeros(C, bool)
        if self.kind == "tags" and not self.full:
            tags[row["tags"]] = True
        else:
            present = np.flatnonzero(np.bincount(label.ravel(), minlength=256)[:C])
            tags[present] = True
            for b in row["boxes"]:
                if not b["crowd"]:
                    tags[b["label"]] = True
        if self.vocabulary.background is not None:
            tags[self.vocabulary.background] = False
        boxes = np.array([[b["x0"], b["y0"], b["x1"], b["y1"], b["label"]] for b in row["boxes"]
                          if not b["crowd"]], np.float64).reshape(-1, 5) if self.kind == "boxes" and not self.full \
            else np.zeros((0, 5))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, label, regions, boxes, flipped = self._augment(rng, image, label, regions, boxes)
        if flipped:  # a flip swapped the paired classes (DensePose's left / right) in the label: so in the tags
            swapped = np.zeros_like(tags)
            swapped[self.flip_perm[np.flatnonzero(tags)]] = True
            tags = swapped
        return {"image": normalize(image), "label": torch.from_numpy(label.astype(np.int64)),
                "region": torch.from_numpy(regions.astype(np.int64)), "tags": torch.from_numpy(tags),
                "boxes": torch.from_numpy(boxes), "image_id": row["image_id"]}

    def _augment(self, rng, image, label, regions, boxes):
        s = rng.uniform(*self.scale)
        h, w = label.shape
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
        label = np.asarray(Image.fromarray(label).resize((nw, nh), Image.NEAREST))
        regions = np.asarray(Image.fromarray(regions).resize((nw, nh), Image.NEAREST))
        boxes = boxes.copy()
        boxes[:, [0, 2]] *= nw / w
        boxes[:, [1, 3]] *= nh / h
        flipped = self.flip and rng.random() < 0.5
        if flipped:
            image, label, regions = image[:, ::-1], self.flip_perm[label[:, ::-1]], regions[:, ::-1]
            boxes[:, [0, 2]] = nw - boxes[:, [2, 0]]
            if len(boxes):
                boxes[:, 4] = self.flip_perm[boxes[:, 4].astype(int)]
        c = self.crop
        ph, pw = max(c - nh, 0), max(c - nw, 0)
        if ph or pw:  # pad with ignore (labels) and the mean colour (image)
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)), constant_values=0)
            image[nh:, :] = MEAN.astype(np.uint8)
            image[:, nw:] = MEAN.astype(np.uint8)
            label = np.pad(label, ((0, ph), (0, pw)), constant_values=self.vocabulary.ignore)
            regions = np.pad(regions, ((0, ph), (0, pw)), constant_values=int(regions.max()) + 1)
        H, W = label.shape
        y0, x0 = int(rng.integers(0, H - c + 1)), int(rng.integers(0, W - c + 1))
        sl = (slice(y0, y0 + c), slice(x0, x0 + c))
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] - x0, 0, c)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] - y0, 0, c)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return (np.ascontiguousarray(image[sl]), np.ascontiguousarray(label[sl]),
                np.ascontiguousarray(regions[sl]), boxes[keep], flipped)


def normalize(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3) uint8`` -> ``(3, H, W) float32`` with ImageNet mean / std."""
    return torch.from_numpy(((image.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1).copy())


def collate(items: list[dict]) -> dict:
    """Stack fixed-size tensors; keep variable-size ones (boxes, evaluation images) as lists."""
    return {k: [it[k] for it in items] if k in ("boxes", "image_id", "rgb", "gt")
            else torch.stack([it[k] for it in items]) for k in items[0]}


def candidate_grid(boxes: list[torch.Tensor], num_classes: int, background: int | None, height: int,
                   width: int, stride: float) -> torch.Tensor:
    """Candidate label sets on the embedding grid, ``(B, C, height, width) bool``: inside each box
    its class and background (``weaklabels.raster.rasterize_candidates`` at stride ``stride``)."""
    out = torch.zeros((len(boxes), num_classes, height, width), dtype=torch.bool)
    for b, bx in enumerate(boxes):
        if not len(bx):
            continue
        pix = box_pixels(bx[:, :4].numpy() / stride, height, width)
        for (c0, r0, c1, r1), cls in zip(pix, bx[:, 4].long().tolist()):
            out[b, cls, r0:r1, c0:c1] = True
            if background is not None:
                out[b, background, r0:r1, c0:c1] = True
    return out


def prepare_toy(cfg, root: Path) -> tuple[Path, Path]:
    """Generate the shapes scenes and convert them with weaklabels (train: the weak labels and
    regions; val: full masks). Returns the two dataset folders; reuses them when present. They
    live under ``root/shapes-KEY``, KEY a hash of ``data.shapes``: other settings get other data."""
    import hashlib
    import json

    from omegaconf import OmegaConf

    from weaklabels.convert import ConvertOptions, convert
    from weaklabels.sources.shapes import shapes_vocabulary, write_shapes
    from weaklabels.sources.voc import read_voc

    sh = cfg.data.shapes
    key = hashlib.sha256(json.dumps(OmegaConf.to_container(sh), sort_keys=True).encode()).hexdigest()[:10]
    root = root / f"shapes-{key}"
    raw = root / "shapes"
    train_out, val_out = root / f"train_{cfg.data.kind}", root / "val"
    if (train_out / "README.md").is_file() and (val_out / "README.md").is_file():
        return train_out, val_out
    n = sh.num_train + sh.num_val
    write_shapes(raw, n, sh.seed, height=sh.height, width=sh.width,
                 vocabulary=shapes_vocabulary(sh.num_classes), val_fraction=sh.num_val / n)
    kind = cfg.data.kind
    extra = {"length_ratio": 0.0} if kind == "points" else {}
    if kind == "points":
        kind = "scribbles"  # SPML's points setting: one point per scribble, background included
    opts = ConvertOptions(kind=kind, regions="felzenszwalb", gt="always", **extra)
    convert({"train": read_voc(raw, "train")}, train_out, opts, overwrite=True)
    convert({"val": read_voc(raw, "val")}, val_out, ConvertOptions(kind="tags"), overwrite=True)
    return train_out, val_out


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode and augment; one thread each avoids oversubscription
    # Ctrl-C in a terminal reaches every process of the group: the trainer finishes its step and
    # saves a checkpoint (engine._StopAfterStep), which needs the workers alive until then
    signal.signal(signal.SIGINT, signal.SIG_IGN)

