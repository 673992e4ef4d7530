"""Dense pseudo labels: class scores -> random walk -> dense CRF -> one class per pixel.

``SPML.md`` section 6. Per training image:

* scores at 1/8 of the image:
  - ``head``: the stage-1 softmax head's probabilities, averaged with the
    flipped image, each class divided by its maximum over the image (boxes,
    scribbles, points; and tags in the second round, from the first stage-2
    classifier);
  - ``cam``: class activation maps (``cam.py``) with the background score
    ``(1 - max CAM) ** alpha`` (tags, first round);
  classes absent from the image's weak label are zeroed (background never is);
* a random walk on the stage-1 embedding's affinities (``random_walk.py``);
* upsampled to the image, normalised over classes, refined by the dense CRF
  (``crf.py``), argmax.

For boxes the scores are also zeroed outside each class's boxes (everything
outside every box is background), the same candidate sets as relation C in
stage 1: a box says where its class cannot be, and the random walk would
otherwise leak an object's score into a neighbouring box of another class.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from spml_train.pseudo.crf import CRFParams, dense_crf
from spml_train.progress import Progress
from spml_train.pseudo.random_walk import random_walk, to_grid
from weaklabels.raster import box_pixels
from weaklabels.types import Vocabulary
from weaklabels.writers.png import encode_label_png

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PseudoParams:
    """Settings of one pseudo-label pass (defaults: ``SPML.md`` section 6)."""

    source: str = "head"        # head or cam
    stride: int = 8             # the random walk's grid, in image pixels
    random_walk: bool = True
    beta: float = 5.0
    power: float = 20.0
    log2_steps: int = 6
    crf: bool = True
    crf_params: CRFParams = CRFParams()
    alpha: float = 6.0          # cam: background score (1 - max CAM) ** alpha
    box_constraint: bool = True  # boxes: a class scores zero outside its boxes

    def __post_init__(self):
        if self.source not in ("head", "cam"):
            raise ValueError(f"pseudo-label source must be 'head' or 'cam', got {self.source!r}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")


def present_classes(kind: str, tags: list[int], weak: np.ndarray, boxes: list[dict], vocab: Vocabulary) -> list[int]:
    """The classes an image's weak label allows, background included."""
    if kind == "tags":
        present = set(tags)
    elif kind == "boxes":
        present = {b["label"] for b in boxes}
    else:
        present = {int(c) for c in np.unique(weak) if c < len(vocab)}
    if vocab.background is not None:
        present.add(vocab.background)
    return sorted(present)


def box_mask(boxes: list[dict], num_classes: int, background: int | None, h: int, w: int) -> np.ndarray:
    """``(C, h, w)`` bool: class ``c`` allowed at a pixel (inside one of its boxes; background outside
    every box and, as in SPML's candidate sets, inside boxes too)."""
    allowed = np.zeros((num_classes, h, w), bool)
    if background is not None:
        allowed[background] = True
    if boxes:
        coords = np.array([[b["x0"], b["y0"], b["x1"], b["y1"]] for b in boxes])
        for (c0, r0, c1, r1), b in zip(box_pixels(coords, h, w), boxes):
            allowed[b["label"], r0:r1, c0:c1] = True
    return allowed


def weak_constraints(kind: str, row: dict, weak: np.ndarray, vocab: Vocabulary,
                     box_constraint: bool = True) -> tuple[list[int], np.ndarray | None]:
    """What one training row's weak label allows: its classes (``present_classes``) and, for boxes
    with the box constraint, where each class may be (``box_mask``; ``None`` otherwise)."""
    boxes = [b for b in row["boxes"] if not b["crowd"]]
    present = present_classes(kind, row["tags"], weak, boxes, vocab)
    allowed = box_mask(boxes, len(vocab), vocab.background, *weak.shape) if kind == "boxes" and box_constraint \
        else None
    return present, allowed


def refine(probs: torch.Tensor, rgb: np.ndarray, params: PseudoParams,
           allowed: np.ndarray | None = None) -> torch.Tensor:
    """``pseudo_probs`` after the dense CRF (when ``params.crf``), boxes' constraint kept."""
    if not params.crf:
        return probs
    probs = dense_crf(torch.from_numpy(rgb).to(probs.device), probs, params.crf_params)
    if allowed is not None:  # the CRF's smoothing must not hand a pixel a class its boxes exclude
        probs = probs * torch.from_numpy(allowed).to(probs.device)
    return probs


@torch.no_grad()
def _views(model, image: torch.Tensor) -> tuple[dict, dict]:
    out = model(torch.stack([image, image.flip(-1)]))
    return {k: v[:1] for k, v in out.items()}, {k: v[1:].flip(-1) for k, v in out.items()}


@torch.no_grad()
def pseudo_label(model, image: torch.Tensor, rgb: np.ndarray, present: list[int], params: PseudoParams, *,
                 num_classes: int, background: int | None, cam_model=None, foreground: list[int] | None = None,
                 cams: torch.Tensor | None = None, allowed: np.ndarray | None = None,
                 flip_perm: torch.Tensor | None = None, cam_scales=(1.0,)) -> np.ndarray:
    """The dense pseudo label ``(H, W)`` uint8 of one image: ``pseudo_probs`` refined by the dense CRF.

    image: ``(3, H, W)`` normalised, on the model's device; rgb: ``(H, W, 3)`` uint8;
    ``source="cam"``: ``foreground`` and either ``cam_model`` or precomputed ``cams``
    ``(len(foreground), H, W)`` (external CAMs); ``allowed`` ``(C, H, W)`` bool (boxes).
    """
    probs = pseudo_probs(model, image, present, params, num_classes=num_classes, background=background,
                         cam_model=cam_model, foreground=foreground, cams=cams, allowed=allowed,
                         flip_perm=flip_perm, cam_scales=cam_scales)
    return refine(probs, rgb, params, allowed).argmax(0).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def pseudo_probs(model, image: torch.Tensor, present: list[int], params: PseudoParams, *,
                 num_classes: int, background: int | None, cam_model=None, foreground: list[int] | None = None,
                 cams: torch.Tensor | None = None, allowed: np.ndarray | None = None,
                 flip_perm: torch.Tensor | None = None, cam_scales=(1.0,)) -> torch.Tensor:
    """The class probabilities ``(C, H, W)`` of one image before the dense CRF: scores, random walk,
    upsampled, box constraint, normalised over classes. Arguments as ``pseudo_label``."""
    model.eval()
    _, H, W = image.shape
    grid = (-(-H // params.stride), -(-W // params.stride))
    a, b = _views(model, image)
    if params.source == "head":
        logits_b = b["logits"] if flip_perm is None else b["logits"][:, flip_perm]
        probs = (a["logits"].float().softmax(1) + logits_b.float().softmax(1)) / 2
        scores = F.interpolate(probs, size=grid, mode="bilinear", align_corners=False)
        scores = scores / scores.flatten(2).amax(2).clamp(min=1e-5)[:, :, None, None]
    else:
        if cams is not None:
            c = F.interpolate(cams[None].float().to(image.device).clamp(min=0), size=grid, mode="area")
        else:
            from spml_train.pseudo.cam import image_cams  # the CAM stage's maps, same scales

            c = F.interpolate(image_cams(cam_model, image, cam_scales)[None], size=grid, mode="area")
        c = c / c.flatten(2).amax(2).clamp(min=1e-5)[:, :, None, None]
        scores = torch.zeros(1, num_classes, *grid, device=image.device)
        scores[:, foreground] = c
    keep = torch.zeros(num_classes, dtype=torch.bool, device=image.device)
    keep[present] = True
    if background is not None:
        keep[background] = False
    if params.source == "cam" and background is not None:
        scores = scores * keep[None, :, None, None]
        scores[:, background] = (1 - scores.amax(1)).clamp(min=0) ** params.alpha
    elif background is not None:
        keep[background] = True
        scores = scores * keep[None, :, None, None]
    else:
        scores = scores * keep[None, :, None, None]
    if params.random_walk:
        emb, emb_f = to_grid(a["embedding"], grid), to_grid(b["embedding"], grid)
        scores = random_walk(scores, emb, emb_f, beta=params.beta, power=params.power, log2_steps=params.log2_steps)
    scores = F.interpolate(scores, size=(H, W), mode="bilinear", align_corners=False)[0]
    if allowed is not None:
        scores = scores * torch.from_numpy(allowed).to(scores.device)
    return scores / scores.sum(0, keepdim=True).clamp(min=1e-5)


def relabel_split(src: Path, split: str, dst: Path, vocab: Vocabulary,
                  label_fn: Callable[[dict, np.ndarray, np.ndarray], np.ndarray], info: dict, *,
                  progress: bool = True, desc: str = "pseudo labels") -> dict:
    """Write ``src``'s ``split`` again into ``dst`` with ``weak_label`` replaced by ``label_fn(row, rgb,
    weak)`` (everything else unchanged); atomic (a ``.partial`` folder renamed at the end).

    Returns a summary: images, seconds, images/s, the fraction of pixels labelled and, where rows
    carry ``gt``, the labels' mIoU (``label_miou``) and pixel accuracy (``label_accuracy``) against it,
    over the labelled pixels.
    """
    from PIL import Image

    from spml_train.evaluate import confusion, scores

    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    for name in ("vocabulary.json", "README.md"):
        if (src / name).is_file():
            shutil.copy(src / name, tmp / name)
    C = len(vocab)
    conf = np.zeros((C, C), np.int64)
    n, t0 = 0, time.perf_counter()
    labelled = total = 0
    files = sorted((src / "data").glob(f"{split}-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{src}: no parquet shard for split {split!r}")
    bar = Progress(sum(pq.ParquetFile(f).metadata.num_rows for f in files), desc, enabled=progress, unit="img")
    for f in files:
        table = pq.read_table(f)
        rows = table.to_pylist()
        for row in rows:
            weak = np.array(Image.open(io.BytesIO(row["weak_label"]["bytes"])))
            rgb = np.array(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB"))
            lab = label_fn(row, rgb, weak)
            if row.get("gt"):
                gt = np.array(Image.open(io.BytesIO(row["gt"]["bytes"])))
                # unlabelled / ignore pixels of a partial label (CAM labels) are left out of the score
                gt = np.where(lab < C, gt, vocab.ignore)
                conf += confusion(lab, gt, C, vocab.ignore)
            labelled += int((lab < C).sum())
            total += lab.size
            row["weak_label"] = {"bytes": encode_label_png(lab, vocab.palette()), "path": None}
            n += 1
            bar.update(1)
        pq.write_table(type(table).from_pylist(rows, schema=table.schema), tmp / "data" / f.name)
    bar.close()
    seconds = time.perf_counter() - t0
    summary = {"images": n, "seconds": seconds, "images_per_s": n / max(seconds, 1e-9),
               "labelled_fraction": labelled / max(total, 1), **info}
    if conf.sum():
        s = scores(conf, vocab.names)
        summary["label_miou"] = s["mIoU"]
        summary["label_accuracy"] = float(np.diag(conf).sum() / conf.sum() * 100)
    (tmp / "labels.json").write_text(json.dumps(summary, indent=2) + "\n")
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return summary
