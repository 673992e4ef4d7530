"""Per-class summary of a converted dataset: images, annotations and the
fraction of all pixels labelled with each class."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from weaklabels.types import Sample, Vocabulary


@dataclass
class Summary:
    """Counts accumulated over converted images; ``merge`` adds shards together."""

    num_classes: int
    images: np.ndarray = field(default=None)          # (C,) images where the class is annotated
    annotations: np.ndarray = field(default=None)     # (C,) tags / boxes / points / scribbles
    labelled_pixels: np.ndarray = field(default=None)  # (C,) weak-label pixels of the class
    num_images: int = 0
    total_pixels: int = 0
    unlabelled_pixels: int = 0
    ignore_pixels: int = 0
    skipped: int = 0

    def __post_init__(self) -> None:
        for name in ("images", "annotations", "labelled_pixels"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.num_classes, np.int64))

    def add(self, sample: Sample, kind: str, weak_label: np.ndarray) -> None:
        voc = sample.vocabulary
        n = self.num_classes
        first = int(weak_label.flat[0]) if weak_label.size else 0
        if kind == "tags" and (weak_label.ravel() == first).all():
            counts = np.zeros(256, np.int64)  # tags maps are constant: no need to count
            counts[first] = weak_label.size
        else:
            counts = np.bincount(weak_label.ravel(), minlength=256)
        self.labelled_pixels += counts[:n]
        self.unlabelled_pixels += int(counts[voc.unlabelled])
        self.ignore_pixels += int(counts[voc.ignore])
        self.total_pixels += int(weak_label.size)
        self.num_images += 1
        ann = getattr(sample, kind)
        classes = ann.classes if ann is not None else np.zeros(0, np.int64)
        if kind == "boxes":
            classes = classes[~ann.crowd]
        per_class = np.bincount(classes, minlength=n)[:n]
        self.annotations += per_class
        self.images += ((per_class > 0) | (counts[:n] > 0)).astype(np.int64)

    def merge(self, other: Summary) -> Summary:
        out = Summary(self.num_classes)
        for name in ("images", "annotations", "labelled_pixels"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        for name in ("num_images", "total_pixels", "unlabelled_pixels", "ignore_pixels", "skipped"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        return out

    def to_dict(self) -> dict:
        return {"num_classes": self.num_classes, "images": self.images.tolist(),
                "annotations": self.annotations.tolist(), "labelled_pixels": self.labelled_pixels.tolist(),
                "num_images": self.num_images, "total_pixels": self.total_pixels,
                "unlabelled_pixels": self.unlabelled_pixels, "ignore_pixels": self.ignore_pixels,
                "skipped": self.skipped}

    @classmethod
    def from_dict(cls, d: dict) -> Summary:
        s = cls(d["num_classes"])
        for name in ("images", "annotations", "labelled_pixels"):
            setattr(s, name, np.asarray(d[name], np.int64))
        for name in ("num_images", "total_pixels", "unlabelled_pixels", "ignore_pixels", "skipped"):
            setattr(s, name, int(d[name]))
        return s

    def rows(self, vocabulary: Vocabulary) -> list[dict]:
        tot = max(self.total_pixels, 1)
        return [{"index": i, "class": name, "images": int(self.images[i]),
                 "annotations": int(self.annotations[i]),
                 "labelled_pixel_fraction": float(self.labelled_pixels[i]) / tot}
                for i, name in enumerate(vocabulary.names)]

    def table(self, vocabulary: Vocabulary) -> str:
        """A plain-text table: one line per class with any image, then totals."""
        rows = [r for r in self.rows(vocabulary) if r["images"] or r["annotations"]]
        w = max([len("class")] + [len(r["class"]) for r in rows])
        lines = [f"{'class':<{w}}  {'images':>7}  {'annotations':>11}  {'labelled px':>11}"]
        for r in rows:
            lines.append(f"{r['class']:<{w}}  {r['images']:>7,}  {r['annotations']:>11,}  "
                         f"{100 * r['labelled_pixel_fraction']:>10.3f}%")
        tot = max(self.total_pixels, 1)
        lines.append(f"{'(all)':<{w}}  {self.num_images:>7,}  {int(self.annotations.sum()):>11,}  "
                     f"{100 * self.labelled_pixels.sum() / tot:>10.3f}%")
        lines.append(f"unlabelled {100 * self.unlabelled_pixels / tot:.2f}% of pixels, "
                     f"ignore {100 * self.ignore_pixels / tot:.2f}%; skipped {self.skipped:,} item(s)")
        return "\n".join(lines)

    def write_csv(self, path: str | Path, vocabulary: Vocabulary) -> None:
        rows = self.rows(vocabulary)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
