"""Fidelity of weak labels against the full masks they came from.

For each image with a full mask, the weak label map (``raster.rasterize``) is
compared with the mask:

* ``precision``: of the labelled pixels, the share whose class equals the mask
  (void counts as wrong). Synthesis guarantees 100%; human labels do not.
* ``coverage``: labelled pixels / non-void pixels.
* ``pairs_labelled``: of the (image, class) pairs present in the mask, the
  share with at least one labelled pixel (foreground classes; background
  reported apart when the protocol labels it).
* points only, against human clicks of the same images (What's-the-Point):
  ``click_distance``: for every point, the distance to the nearest human click
  of its class, divided by the square root of that class's area in the mask
  (median and mean), and ``human_on_class``: the share of human clicks that
  land on their own class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from weaklabels.raster import rasterize
from weaklabels.types import Sample


@dataclass
class Fidelity:
    images: int = 0
    labelled_px: int = 0
    correct_px: int = 0
    valid_px: int = 0
    fg_pairs: int = 0
    fg_pairs_labelled: int = 0
    bg_pairs: int = 0
    bg_pairs_labelled: int = 0
    annotations: int = 0
    click_distances: list[float] = field(default_factory=list)
    human_clicks: int = 0
    human_on_class: int = 0

    def add(self, sample: Sample, weak: Sample, kind: str, human: Sample | None = None,
            label: np.ndarray | None = None) -> None:
        """Account one image: ``sample`` holds the full mask, ``weak`` its weak annotation and
        ``label`` its weak label map when not the plain rasterisation of ``weak``."""
        voc = sample.vocabulary
        n = len(voc)
        mask = sample.semantic.array
        if label is None:
            label = rasterize(weak, kind)
        labelled = label < n
        self.images += 1
        self.labelled_px += int(labelled.sum())
        self.correct_px += int((labelled & (label == mask)).sum())
        self.valid_px += int((mask != voc.ignore).sum())
        self.annotations += len(getattr(weak, kind))
        present = np.flatnonzero(sample.semantic.counts[:n])
        got = np.bincount(label[labelled], minlength=n)[:n] > 0
        if kind in ("tags", "boxes"):
            # no pixel carries a class: a pair is labelled when the annotation names the class
            ann = getattr(weak, kind)
            cls = ann.classes if kind == "tags" else ann.classes[~ann.crowd]
            got = got | (np.bincount(cls, minlength=n)[:n] > 0)
        for c in present:
            if c == voc.background:
                self.bg_pairs += 1
                self.bg_pairs_labelled += int(got[c])
            else:
                self.fg_pairs += 1
                self.fg_pairs_labelled += int(got[c])
        if human is not None and human.points is not None:
            hp = human.points
            rows = np.floor(hp.xy[:, 1]).astype(int)
            cols = np.floor(hp.xy[:, 0]).astype(int)
            self.human_clicks += len(hp)
            self.human_on_class += int((mask[rows, cols] == hp.classes).sum())
            if kind == "points":
                for (x, y), c in zip(weak.points.xy, weak.points.classes):
                    same = hp.xy[hp.classes == c]
                    if len(same):
                        d = np.hypot(*(same - (x, y)).T).min()
                        self.click_distances.append(float(d / np.sqrt(sample.semantic.counts[c])))

    def to_dict(self) -> dict:
        def ratio(a: int, b: int) -> float | None:
            return None if b == 0 else a / b

        d = {
            "images": self.images,
            "annotations": self.annotations,
            "precision": ratio(self.correct_px, self.labelled_px),
            "coverage": ratio(self.labelled_px, self.valid_px),
            "fg_pairs_labelled": ratio(self.fg_pairs_labelled, self.fg_pairs),
            "bg_pairs_labelled": ratio(self.bg_pairs_labelled, self.bg_pairs),
        }
        if self.human_clicks:
            d["human_on_class"] = ratio(self.human_on_class, self.human_clicks)
        if self.click_distances:
            a = np.asarray(self.click_distances)
            d["click_distance_median"] = float(np.median(a))
            d["click_distance_mean"] = float(a.mean())
        return d


def measure(samples: Iterable[Sample], weak_of: Callable[[Sample], Sample], kind: str,
            human_of: Callable[[Sample], Sample] | None = None,
            label_of: Callable[[Sample, Sample], np.ndarray] | None = None) -> Fidelity:
    """Fidelity of ``weak_of(sample)`` over ``samples`` (those without a full mask are skipped);
    ``label_of(sample, weak)`` rasterises when the plain rasterisation is not what is stored."""
    f = Fidelity()
    for s in samples:
        if s.semantic is None:
            continue
        weak = weak_of(s)
        f.add(s, weak, kind, None if human_of is None else human_of(s),
              None if label_of is None else label_of(s, weak))
    return f


def table(rows: dict[str, dict]) -> str:
    """Plain-text table of ``{protocol: Fidelity.to_dict()}``."""
    cols = ["precision", "coverage", "fg_pairs_labelled", "bg_pairs_labelled", "click_distance_median",
            "human_on_class"]
    w = max([len("protocol")] + [len(k) for k in rows])
    head = f"{'protocol':<{w}}  " + "  ".join(f"{c:>21}" for c in cols)
    lines = [head]
    for name, d in rows.items():
        cells = []
        for c in cols:
            v = d.get(c)
            cells.append(f"{'-':>21}" if v is None else f"{(100 * v if c != 'click_distance_median' else v):>21.3f}")
        lines.append(f"{name:<{w}}  " + "  ".join(cells))
    return "\n".join(lines)
